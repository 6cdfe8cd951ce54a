"""Offline `evaluate.Metric` modules: accuracy, ROC AUC, average precision and F1 with bootstrap intervals."""

from .classification import F1, Accuracy, AveragePrecision, ClassificationMetric, RocAuc, classification_metrics

__all__ = ["Accuracy", "AveragePrecision", "ClassificationMetric", "F1", "RocAuc", "classification_metrics"]
