"""k-fold cross-validation over patients."""

import datasets
import pytest

from miram_hf.data import carve_validation, cross_validation_splits, finetuning_splits


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


def labelled_collection() -> datasets.DatasetDict:
    """40 training patients (a quarter with a malignant row, some with background rows, -1) and a test split."""
    rows = [{"patient_id": f"P{patient:02d}", "label": label}
            for patient in range(40) for label in ([1 if patient % 4 == 0 else 0] + [-1] * (patient % 2))]  # fmt: skip
    test = [{"patient_id": f"T{patient}", "label": 0} for patient in range(5)]
    return datasets.DatasetDict({"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(test)})


def test_a_validation_split_is_carved_from_training_patients_stratified_and_seeded():
    splits = labelled_collection()
    carved, note = carve_validation(splits, "label", fraction=0.2, seed=1)
    train, validation = set(carved["train"]["patient_id"]), set(carved["validation"]["patient_id"])
    assert not train & validation and train | validation == set(splits["train"]["patient_id"])
    assert len(validation) == 8 and sum(int(p[1:]) % 4 == 0 for p in validation) == 2  # 20% of each stratum
    assert len(carved["train"]) + len(carved["validation"]) == len(splits["train"])  # a patient's rows move together
    assert carved["test"]["patient_id"] == splits["test"]["patient_id"]  # the test split is left alone
    assert "8 of 40 patients" in note and "seed 1" in note
    assert set(carve_validation(splits, "label", 0.2, seed=1)[0]["validation"]["patient_id"]) == validation
    assert set(carve_validation(splits, "label", 0.2, seed=2)[0]["validation"]["patient_id"]) != validation


def test_a_collections_own_validation_split_is_kept_and_a_tiny_one_still_gets_one():
    splits = labelled_collection()
    with_validation = datasets.DatasetDict({**splits, "validation": splits["test"]})
    kept, note = carve_validation(with_validation, "label")
    assert kept["validation"] is with_validation["validation"] and note == "the collection's own validation split"
    tiny = datasets.DatasetDict({"train": splits["train"].select(range(3))})  # two patients
    carved, _ = carve_validation(tiny, "label", fraction=0.1)
    assert len(set(carved["validation"]["patient_id"])) == 1 and len(set(carved["train"]["patient_id"])) == 1
    with pytest.raises(ValueError, match="validation_fraction"):
        carve_validation(splits, "label", fraction=0)
    folds, note = finetuning_splits(collection(), "image_id", num_folds=5, fold=4)
    assert note == "fold 0 of 5" and set(folds) == {"train", "validation", "test"}
