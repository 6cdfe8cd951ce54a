"""k-fold cross-validation over a collection's patients, for the papers that report it (the tiled-patch paper on CMMD,
the VAE paper on INbreast and MIAS): every split of the collection pooled, its patients dealt into `num_folds` folds,
fold `fold` for testing, the next one for validation and the rest for training (3:1:1 for 5 folds)."""

import datasets
import numpy as np


def cross_validation_splits(
    splits: datasets.DatasetDict, num_folds: int, fold: int, seed: int = 0
) -> datasets.DatasetDict:
    """`train`, `validation` and `test` of fold `fold` (0-based) of `num_folds`. A patient's images stay in one fold;
    the patients are shuffled by `seed`, so every fold of one seed partitions the collection."""
    if num_folds < 3:
        raise ValueError(f"num_folds must be at least 3 (a test, a validation and a training fold), got {num_folds}.")
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in [0, {num_folds}), got {fold}.")
    pooled = datasets.concatenate_datasets(list(splits.values()))
    patients = sorted(set(pooled["patient_id"]))
    order = np.random.default_rng(seed).permutation(len(patients))
    fold_of = {patients[index]: rank % num_folds for rank, index in enumerate(order)}
    folds = np.array([fold_of[patient] for patient in pooled["patient_id"]])
    validation = (fold + 1) % num_folds
    return datasets.DatasetDict(
        {
            "train": pooled.select(np.flatnonzero((folds != fold) & (folds != validation))),
            "validation": pooled.select(np.flatnonzero(folds == validation)),
            "test": pooled.select(np.flatnonzero(folds == fold)),
        }
    )


__all__ = ["cross_validation_splits"]
