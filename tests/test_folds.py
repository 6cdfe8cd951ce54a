"""k-fold cross-validation over patients."""

import datasets
import pytest

from miram_hf.data import cross_validation_splits


def collection() -> datasets.DatasetDict:
    """20 patients with 1 to 3 images each, spread over the collection's own splits."""
    rows = [{"patient_id": f"P{patient:02d}", "image_id": f"P{patient:02d}_{image}"}
            for patient in range(20) for image in range(1 + patient % 3)]  # fmt: skip
    return datasets.DatasetDict({
        "train": datasets.Dataset.from_list(rows[:30]), "test": datasets.Dataset.from_list(rows[30:])
    })  # fmt: skip


def test_the_folds_partition_the_patients_three_to_one_to_one():
    splits = collection()
    tested = []
    for fold in range(5):
        parts = cross_validation_splits(splits, 5, fold, seed=3)
        patients = {name: set(part["patient_id"]) for name, part in parts.items()}
        assert len(patients["train"]) == 12 and len(patients["validation"]) == len(patients["test"]) == 4
        assert not (patients["train"] & patients["validation"] or patients["train"] & patients["test"]
                    or patients["validation"] & patients["test"])  # fmt: skip
        assert sum(len(part) for part in parts.values()) == 39  # every image, once
        assert patients["validation"] == set(cross_validation_splits(splits, 5, (fold + 1) % 5, seed=3)["test"]
                                             ["patient_id"])  # fmt: skip
        tested += parts["test"]["image_id"]
    assert sorted(tested) == sorted(image for split in splits.values() for image in split["image_id"])
    first_fold = set(cross_validation_splits(splits, 5, 0, seed=3)["test"]["patient_id"])
    assert set(cross_validation_splits(splits, 5, 0, seed=4)["test"]["patient_id"]) != first_fold  # seeded


def test_bad_folds_are_refused():
    with pytest.raises(ValueError, match="at least 3"):
        cross_validation_splits(collection(), 2, 0)
    with pytest.raises(ValueError, match=r"fold must be in \[0, 5\)"):
        cross_validation_splits(collection(), 5, 5)
