"""Offline `evaluate.Metric` modules: accuracy, ROC AUC, average precision and F1 with bootstrap intervals."""

from .classification import (
    F1,
    Accuracy,
    AveragePrecision,
    ClassificationMetric,
    RocAuc,
    bootstrap_over_seeds,
    classification_metrics,
)

__all__ = [
    "Accuracy",
    "AveragePrecision",
    "ClassificationMetric",
    "F1",
    "RocAuc",
    "bootstrap_over_seeds",
    "classification_metrics",
]
