"""Evaluate an image-classification checkpoint on a collection's split: the metrics table (accuracy, ROC AUC, average
precision, F1 with bootstrap 95% intervals), ROC and precision-recall curves and, for single-label tasks, the
confusion matrix as PNGs, and everything as JSON.

    python scripts/evaluate.py --model_path out/finetuned --dataset cbis-ddsm --data_dir /data/CBIS-DDSM \\
        --label_column label_pathology --split test --output_dir out/eval

`--label_column label_mass_margins` evaluates the multi-label mass-margin task (masses only). Rows without a label
(background crops, -1) are left out and counted.
"""

import sys
from pathlib import Path

# Run as `python scripts/<name>.py`, this folder comes first on sys.path, and scripts/evaluate.py would shadow the
# `evaluate` library that miram_hf.metrics builds on.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import logging

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay
from transformers import AutoImageProcessor, AutoModelForImageClassification

import miram_hf  # noqa: F401  (registers the models and the processor)
from miram_hf.data import finetuning_splits, load_mammography, parse_dataset_options
from miram_hf.metrics import classification_metrics
from miram_hf.training.classification import (
    carries_label,
    classification_inputs,
    collate_classification,
    label_targets,
    label_task,
)

logger = logging.getLogger("evaluate")


def labelled_rows(dataset, label_column: str):
    """(rows, labels, task, class names) of the rows that carry the label (`carries_label`)."""
    multi_label, names = label_task(dataset.features[label_column])
    columns = dataset.select_columns([label_column, "label_pathology"] if multi_label else [label_column])
    keep, values = [], []
    for i, row in enumerate(columns):  # one pass over the label columns
        if carries_label(row, label_column, multi_label):
            keep.append(i)
            values.append(row[label_column])
    labels = np.array(label_targets(values, len(names), multi_label)).astype(int)
    return dataset.select(keep), labels, "multi_label" if multi_label else "single_label", names


@torch.no_grad()
def predict(model, processor, dataset, batch_size: int) -> np.ndarray:
    model.eval()
    scores = []
    for start in range(0, len(dataset), batch_size):
        images = [np.array(image) for image in dataset[start : start + batch_size]["image"]]
        logits = model(**collate_classification(classification_inputs(model.config, processor, images))).logits
        scores.append(
            logits.softmax(-1) if model.config.problem_type != "multi_label_classification" else logits.sigmoid()
        )
    return torch.cat(scores).numpy()


def plot_curves(scores: np.ndarray, labels: np.ndarray, task: str, names: list[str], output_dir: Path) -> list[str]:
    one_hot = np.eye(len(names), dtype=int)[labels] if task == "single_label" else labels
    files = []
    for display, title in ((RocCurveDisplay, "roc"), (PrecisionRecallDisplay, "precision_recall")):
        figure, axis = plt.subplots(figsize=(5, 5))
        for index, name in enumerate(names):
            if 0 < one_hot[:, index].sum() < len(one_hot):  # a curve needs both outcomes
                display.from_predictions(one_hot[:, index], scores[:, index], name=name, ax=axis)
        axis.set_title(title.replace("_", "-"))
        figure.savefig(output_dir / f"{title}_curves.png", dpi=100, bbox_inches="tight")
        plt.close(figure)
        files.append(f"{title}_curves.png")
    if task == "single_label":
        figure, axis = plt.subplots(figsize=(6, 6))
        ConfusionMatrixDisplay.from_predictions(
            labels, scores.argmax(1), labels=range(len(names)), display_labels=names, ax=axis, xticks_rotation=45
        )
        figure.savefig(output_dir / "confusion_matrix.png", dpi=100, bbox_inches="tight")
        plt.close(figure)
        files.append("confusion_matrix.png")
    return files


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--config", default="lesions")
    parser.add_argument("--split", default="test")
    parser.add_argument("--label_column", default="label_pathology")
    parser.add_argument("--output_dir", required=True, type=Path)
    parser.add_argument("--cache_dir", default=None)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--n_bootstrap", type=int, default=1000)
    parser.add_argument("--num_images", type=int, default=None, help="synthetic only")
    parser.add_argument("--dataset_options", default=None, help="finetune.py's, key=value,key=value")
    parser.add_argument("--num_folds", type=int, default=None, help="k-fold cross-validation over the patients")
    parser.add_argument("--view", default=None, help="only the images of this view (CC or MLO)")
    parser.add_argument("--fold", type=int, default=0, help="with --num_folds: the fold to test on")
    parser.add_argument("--validation_fraction", type=float, default=0.1, help="finetune.py's, for --split validation")
    parser.add_argument("--seed", type=int, default=42, help="finetune.py's --seed (folds, a carved validation split)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    extra = {"num_images": args.num_images} if args.num_images is not None else {}
    extra |= parse_dataset_options(args.dataset_options)
    # the splits as finetune.py made them (same seed): a cross-validation's folds, a carved validation split
    splits = load_mammography(args.dataset, args.data_dir, args.config, None, args.cache_dir, **extra)
    splits, _ = finetuning_splits(
        splits, args.label_column, args.num_folds, args.fold, args.validation_fraction, args.seed
    )
    dataset = splits[args.split]
    if args.view:
        dataset = dataset.filter(lambda row: row["view"] == args.view)
    rows, labels, task, names = labelled_rows(dataset, args.label_column)
    logger.info("%d of %d rows carry %s", len(rows), len(dataset), args.label_column)
    model = AutoModelForImageClassification.from_pretrained(args.model_path)
    processor = AutoImageProcessor.from_pretrained(args.model_path)
    scores = predict(model, processor, rows, args.batch_size)

    references = labels.tolist()
    metrics, undefined = classification_metrics(scores.tolist(), references, task, args.n_bootstrap)
    for name, reason in undefined.items():
        logger.warning("%s is undefined on this split: %s", name, reason)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    figures = plot_curves(scores, labels, task, names, args.output_dir)
    results = {
        "model": args.model_path,
        "dataset": args.dataset,
        "split": args.split,
        "label_column": args.label_column,
        "task": task,
        "examples": len(rows),
        "left_out_without_label": len(dataset) - len(rows),
        "metrics": metrics,
        "undefined_metrics": undefined,
        "figures": figures,
    }
    (args.output_dir / "results.json").write_text(json.dumps(results, indent=2))
    # every row's scores, for intervals and paired comparisons over several runs (scripts/reproduce.py)
    predictions = {"image_ids": list(rows["image_id"]), "labels": references, "scores": scores.tolist()}
    (args.output_dir / "predictions.json").write_text(json.dumps(predictions))
    width = max(len(name) for name in metrics)
    for name, value in metrics.items():
        logger.info("%s %.4f", name.ljust(width), value)
    return results


if __name__ == "__main__":
    main()
