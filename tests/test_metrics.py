import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from miram_hf.metrics import F1, Accuracy, AveragePrecision, RocAuc, bootstrap_over_seeds


@pytest.fixture
def single_label():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 200)
    scores = rng.normal(size=(200, 4)) + 1.5 * np.eye(4)[labels]  # informative logits
    return scores, labels


def test_single_label_values_match_sklearn(single_label, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # local modules: nothing is fetched
    scores, labels = single_label
    probabilities = np.exp(scores) / np.exp(scores).sum(1, keepdims=True)
    auc = RocAuc("single_label").compute(predictions=scores, references=labels, n_bootstrap=200)
    assert auc["roc_auc"] == pytest.approx(roc_auc_score(labels, probabilities, multi_class="ovr", average="macro"))
    assert auc["roc_auc_ci_low"] < auc["roc_auc"] < auc["roc_auc_ci_high"]
    ap = AveragePrecision("single_label").compute(predictions=scores, references=labels, n_bootstrap=50)
    expected = average_precision_score(np.eye(4)[labels], probabilities, average="macro")
    assert ap["average_precision"] == pytest.approx(expected)
    accuracy = Accuracy("single_label").compute(predictions=scores, references=labels, n_bootstrap=50)
    assert accuracy["accuracy"] == pytest.approx((scores.argmax(1) == labels).mean())
    assert 0.25 < F1("single_label").compute(predictions=scores, references=labels, n_bootstrap=10)["f1"] <= 1


def test_multi_label_macro_over_labels():
    rng = np.random.default_rng(1)
    labels = (rng.random((120, 5)) < 0.3).astype(int)
    scores = rng.random((120, 5)) * 0.6 + 0.4 * labels  # probabilities
    auc = RocAuc("multi_label").compute(predictions=scores, references=labels, n_bootstrap=50)
    assert auc["roc_auc"] == pytest.approx(roc_auc_score(labels, scores, average="macro"))
    ap = AveragePrecision("multi_label").compute(predictions=scores, references=labels, n_bootstrap=50)
    assert ap["average_precision"] == pytest.approx(average_precision_score(labels, scores, average="macro"))
    exact = Accuracy("multi_label").compute(predictions=scores, references=labels, n_bootstrap=10)["accuracy"]
    assert exact == pytest.approx(((scores > 0.5) == labels).all(1).mean())


def test_interval_narrows_with_more_data_and_is_seeded():
    rng = np.random.default_rng(2)

    def width(n):
        labels = rng.integers(0, 2, n)
        scores = np.stack([1 - labels, labels], 1) + rng.normal(0, 0.8, (n, 2))
        result = RocAuc("single_label").compute(predictions=scores, references=labels, n_bootstrap=100)
        return result["roc_auc_ci_high"] - result["roc_auc_ci_low"]

    assert width(1000) < width(40)
    labels, scores = (
        np.array([0, 1, 0, 1, 1, 0]),
        np.array([[0.7, 0.3], [0.4, 0.6], [0.6, 0.4], [0.2, 0.8], [0.55, 0.45], [0.5, 0.5]]),
    )
    first = RocAuc("single_label").compute(predictions=scores, references=labels, seed=3, n_bootstrap=100)
    assert first == RocAuc("single_label").compute(predictions=scores, references=labels, seed=3, n_bootstrap=100)


def test_unknown_task_is_refused():
    with pytest.raises(ValueError, match="config_name must be one of"):
        RocAuc("regression")


def test_multi_label_averages_over_the_labels_that_occur():
    labels = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    scores = np.array([[0.9, 0.2, 0.1], [0.1, 0.8, 0.3], [0.7, 0.6, 0.2], [0.2, 0.1, 0.4]])
    auc = RocAuc("multi_label").compute(predictions=scores, references=labels, n_bootstrap=10)["roc_auc"]
    assert auc == pytest.approx(roc_auc_score(labels[:, :2], scores[:, :2], average="macro"))


def seed_runs(quality: list[float], rows: int = 300, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """One (scores, labels) run per training seed on the same test rows, each as informative as `quality` says."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, rows)
    return [(np.stack([1 - labels, labels], 1) * q + rng.normal(0, 1, (rows, 2)), labels) for q in quality]


def test_the_seed_bootstrap_reports_the_mean_over_seeds_and_widens_with_the_seeds_spread():
    accuracy = Accuracy("single_label")
    steady, spread = seed_runs([1.0, 1.0, 1.0]), seed_runs([0.2, 1.0, 3.0])
    result = bootstrap_over_seeds(accuracy, spread, n_bootstrap=300)
    per_seed = [accuracy.score(scores, labels) for scores, labels in spread]
    assert result["accuracy"] == pytest.approx(np.mean(per_seed))
    assert result["accuracy_ci_low"] < result["accuracy"] < result["accuracy_ci_high"]
    steady_result = bootstrap_over_seeds(accuracy, steady, n_bootstrap=300)
    width = result["accuracy_ci_high"] - result["accuracy_ci_low"]
    assert width > 2 * (steady_result["accuracy_ci_high"] - steady_result["accuracy_ci_low"])


def test_the_paired_difference_is_zero_for_the_same_model_and_positive_for_a_better_one():
    auc = RocAuc("single_label")
    model = seed_runs([0.5, 0.7, 0.6])
    same = bootstrap_over_seeds(auc, model, model, n_bootstrap=100)
    assert same == {"roc_auc_difference": 0.0, "roc_auc_difference_ci_low": 0.0, "roc_auc_difference_ci_high": 0.0}
    better = bootstrap_over_seeds(auc, seed_runs([1.5, 1.7, 1.6]), model, n_bootstrap=200)
    assert better["roc_auc_difference_ci_low"] > 0 and better["roc_auc_difference"] > 0.1
    other_rows = seed_runs([0.5, 0.7, 0.6], seed=1)
    with pytest.raises(ValueError, match="same rows"):
        bootstrap_over_seeds(auc, other_rows, model)
