"""The splits fine-tuning and evaluation use. k-fold cross-validation over a collection's patients, for the papers
that report it (the tiled-patch paper on CMMD, the VAE paper on INbreast and MIAS): every split of the collection
pooled, its patients dealt into `num_folds` folds, fold `fold` for testing, the next one for validation and the rest for
training (3:1:1 for 5 folds). Otherwise a validation split carved from the training patients where a collection has
none (CBIS-DDSM, CSAW-M, VinDr-Mammo): the test split is for the final evaluation only."""

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


def patient_strata(dataset: datasets.Dataset, label_column: str) -> dict[str, int]:
    """Each patient's stratum for a stratified split: the highest class among its rows (background rows, -1, count
    only when a patient has nothing else); for a multi-label column, the lowest atom of each row."""
    strata: dict[str, int] = {}
    for patient, value in zip(dataset["patient_id"], dataset[label_column], strict=True):
        if isinstance(value, list):
            value = min(value) if value else -1
        strata[patient] = max(strata.get(patient, -1), value)
    return strata


def carve_validation(
    splits: datasets.DatasetDict, label_column: str, fraction: float = 0.1, seed: int = 0
) -> tuple[datasets.DatasetDict, str]:
    """`splits` with a validation split, and a sentence saying where it comes from. A collection's own validation
    split is kept; otherwise `fraction` of the training patients become one (at least one patient, no patient in
    both), stratified by `label_column` and shuffled by `seed`, so that checkpoint choice and early stopping never
    see the test split."""
    if "validation" in splits:
        return splits, "the collection's own validation split"
    if not 0 < fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1) to carve a validation split, got {fraction}.")
    train = splits["train"]
    strata = patient_strata(train, label_column)
    if len(strata) < 2:
        raise ValueError(f"The training split has {len(strata)} patient(s): too few to carve a validation split.")
    rng = np.random.default_rng(seed)
    by_stratum = [sorted(patient for patient, value in strata.items() if value == stratum)
                  for stratum in sorted(set(strata.values()))]  # fmt: skip
    for patients in by_stratum:
        rng.shuffle(patients)
    counts = [round(fraction * len(patients)) for patients in by_stratum]
    if sum(counts) == 0:  # a small collection: one patient of its largest stratum
        counts[int(np.argmax([len(patients) for patients in by_stratum]))] = 1
    chosen = {patient for patients, count in zip(by_stratum, counts, strict=True) for patient in patients[:count]}
    is_validation = np.array([patient in chosen for patient in train["patient_id"]])
    carved = datasets.DatasetDict(splits)
    carved["train"] = train.select(np.flatnonzero(~is_validation))
    carved["validation"] = train.select(np.flatnonzero(is_validation))
    note = (f"carved from the training split: {len(chosen)} of {len(strata)} patients ({fraction:.0%}), stratified "
            f"by {label_column}, seed {seed}")  # fmt: skip
    return carved, note


def finetuning_splits(
    splits: datasets.DatasetDict,
    label_column: str,
    num_folds: int | None = None,
    fold: int = 0,
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[datasets.DatasetDict, str]:
    """`train`, `validation` and `test` as fine-tuning and evaluation both make them from a collection's splits: the
    folds of a cross-validation (`num_folds`), each with its own validation fold, or the collection's splits with a
    validation split carved from `train` where it has none (`carve_validation`). With the sentence that says where
    the validation rows come from."""
    if num_folds:
        return cross_validation_splits(splits, num_folds, fold, seed), f"fold {(fold + 1) % num_folds} of {num_folds}"
    return carve_validation(splits, label_column, validation_fraction, seed)


__all__ = ["carve_validation", "cross_validation_splits", "finetuning_splits", "patient_strata"]
