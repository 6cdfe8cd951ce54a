import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from miram_hf.metrics import F1, Accuracy, AveragePrecision, RocAuc


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
