"""Classification metrics as local `evaluate.Metric`s (evaluate's own live on the Hub and fail offline), computed
with scikit-learn, each with a bootstrap 95% confidence interval.

The MIRAM paper reports accuracy, AUC and AP: one-vs-rest macro averages for the single-label pathology task and
macro averages over the labels for the multi-label mass-margin task; both over the classes or labels that have
positive and negative examples (AUC and AP are undefined for the others, as in a small validation split).
Predictions are class scores (probabilities, or logits: single-label ones go through a softmax) of shape
(n, classes); references are class indices (`single_label`) or multi-hot rows (`multi_label`).

    >>> metric = RocAuc("single_label")
    >>> metric.compute(predictions=[[0.8, 0.2], [0.3, 0.7]], references=[0, 1])
    {'roc_auc': 1.0, 'roc_auc_ci_low': ..., 'roc_auc_ci_high': ...}
"""

import warnings
from collections.abc import Callable

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score

TASKS = ("single_label", "multi_label")


class ClassificationMetric(evaluate.Metric):
    """A metric of class scores against labels, with a percentile bootstrap interval (`n_bootstrap` resamples of the
    examples, seeded; resamples where the metric is undefined, e.g. one class only, are left out)."""

    name = ""

    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in TASKS:
            raise ValueError(f"config_name must be one of {TASKS}, got {self.config_name!r}.")
        references = (
            datasets.Value("int32")
            if self.config_name == "single_label"
            else datasets.Sequence(datasets.Value("int32"))
        )
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description="predictions: class scores (n, classes); references: class indices or multi-hot rows",
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float32")), "references": references}
            ),
        )

    def score(self, scores: np.ndarray, labels: np.ndarray) -> float:
        raise NotImplementedError

    def _compute(self, predictions, references, n_bootstrap: int = 1000, seed: int = 0, confidence: float = 0.95):
        scores, labels = np.asarray(predictions, dtype=np.float64), np.asarray(references)
        value = self.score(scores, labels)

        def resampled(rng: np.random.Generator) -> float:
            index = rng.integers(0, len(labels), len(labels))
            return self.score(scores[index], labels[index])

        low, high = bootstrap_interval(resampled, n_bootstrap, seed, confidence)
        return {self.name: float(value), f"{self.name}_ci_low": low, f"{self.name}_ci_high": high}

    def _one_vs_rest(self, scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(binary label matrix, per-class scores): one-hot classes and softmax probabilities for single-label."""
        if self.config_name == "single_label":
            return np.eye(scores.shape[1], dtype=int)[labels], _softmax_if_logits(scores)
        return labels, scores

    def _decisions(self, scores: np.ndarray) -> np.ndarray:
        if self.config_name == "single_label":
            return scores.argmax(axis=1)
        # multi-label scores may be probabilities or logits: 0.5 for the former, 0 for the latter
        threshold = 0.5 if scores.min() >= 0 and scores.max() <= 1 else 0.0
        return (scores > threshold).astype(int)


class Accuracy(ClassificationMetric):
    """Top-1 accuracy (single-label) or exact-match ratio (multi-label)."""

    name = "accuracy"

    def score(self, scores, labels):
        return accuracy_score(labels, self._decisions(scores))


class RocAuc(ClassificationMetric):
    """ROC AUC: one-vs-rest macro (single-label; the same as scikit-learn's `multi_class="ovr"`), macro over labels
    (multi-label)."""

    name = "roc_auc"

    def score(self, scores, labels):
        one_hot, scores = self._one_vs_rest(scores, labels)
        present = _present_labels(one_hot)
        return roc_auc_score(one_hot[:, present], scores[:, present], average="macro")


class AveragePrecision(ClassificationMetric):
    """Average precision (area under the precision-recall curve): one-vs-rest macro or macro over labels."""

    name = "average_precision"

    def score(self, scores, labels):
        one_hot, scores = self._one_vs_rest(scores, labels)
        present = _present_labels(one_hot)
        return average_precision_score(one_hot[:, present], scores[:, present], average="macro")


class F1(ClassificationMetric):
    """Macro F1 of the decisions (argmax, or a 0.5 / 0 threshold per label)."""

    name = "f1"

    def score(self, scores, labels):
        return f1_score(labels, self._decisions(scores), average="macro", zero_division=0)


def _present_labels(labels: np.ndarray) -> np.ndarray:
    """AUC and AP average over the classes (labels) that occur and are not everywhere: the others are undefined."""
    counts = labels.sum(axis=0)
    present = (counts > 0) & (counts < len(labels))
    if not present.any():
        raise ValueError("no label has both positive and negative examples")
    return present


def _softmax_if_logits(scores: np.ndarray) -> np.ndarray:
    """roc_auc_score's one-vs-rest mode wants rows that sum to 1."""
    if (scores >= 0).all() and np.allclose(scores.sum(axis=1), 1.0):
        return scores
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def bootstrap_interval(
    statistic: Callable[[np.random.Generator], float], n_bootstrap: int, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float]:
    """The percentile interval of `statistic(rng)`, each call a statistic of one resample drawn from `rng` (seeded);
    resamples where it is undefined (a ValueError, e.g. one class only, or not finite) are left out."""
    rng = np.random.default_rng(seed)
    samples = []
    with warnings.catch_warnings():  # sklearn warns on each resample that lacks a class
        warnings.simplefilter("ignore")
        for _ in range(n_bootstrap):
            try:
                sample = statistic(rng)
            except ValueError:
                continue
            if np.isfinite(sample):
                samples.append(sample)
    if not samples:
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_over_seeds(
    metric: ClassificationMetric,
    runs: list[tuple[np.ndarray, np.ndarray]],
    reference_runs: list[tuple[np.ndarray, np.ndarray]] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, float]:
    """`metric`'s mean over training seeds, each run the (scores, labels) of one seed's model on the same test rows,
    with a two-level percentile bootstrap interval: seeds drawn with replacement, then rows within each. With
    `reference_runs` (another model, the same seeds and rows), the paired difference runs minus reference, both
    resampled alike, so that the interval holds the variation of seeds and of test rows, not of the test set's
    draw between models."""
    paired = reference_runs is not None
    if paired and [labels.tolist() for _, labels in runs] != [labels.tolist() for _, labels in reference_runs]:
        raise ValueError("A paired comparison needs both models' predictions on the same rows, seed by seed.")

    def value(seeds: np.ndarray, rows: list[np.ndarray]) -> float:
        total = 0.0
        for index, row in zip(seeds, rows, strict=True):
            scores, labels = runs[index]
            total += metric.score(scores[row], labels[row])
            if paired:
                total -= metric.score(reference_runs[index][0][row], labels[row])
        return total / len(seeds)

    def resampled(rng: np.random.Generator) -> float:
        seeds = rng.integers(0, len(runs), len(runs))
        return value(seeds, [rng.integers(0, len(runs[index][1]), len(runs[index][1])) for index in seeds])

    try:
        estimate = value(np.arange(len(runs)), [np.arange(len(labels)) for _, labels in runs])
    except ValueError:  # e.g. test rows of one class: the metric is undefined
        estimate = float("nan")
    low, high = bootstrap_interval(resampled, n_bootstrap, seed, confidence)
    name = metric.name + ("_difference" if paired else "")
    return {name: float(estimate), f"{name}_ci_low": low, f"{name}_ci_high": high}


def classification_metrics(
    predictions: list, references: list, task: str, n_bootstrap: int = 1000
) -> tuple[dict[str, float], dict[str, str]]:
    """Accuracy, ROC AUC, average precision and F1 with their intervals, and, for those undefined on these references
    (e.g. AUC where no label has both outcomes), the reason, by metric name."""
    results, undefined = {}, {}
    for metric in (Accuracy(task), RocAuc(task), AveragePrecision(task), F1(task)):
        try:
            results.update(metric.compute(predictions=predictions, references=references, n_bootstrap=n_bootstrap))
        except ValueError as error:
            undefined[metric.name] = str(error)
    return results, undefined


__all__ = [
    "Accuracy",
    "AveragePrecision",
    "ClassificationMetric",
    "F1",
    "RocAuc",
    "bootstrap_interval",
    "bootstrap_over_seeds",
    "classification_metrics",
]
