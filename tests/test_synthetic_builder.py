import numpy as np
import pytest

from miram_hf.data import PATHOLOGY_NAMES, load_mammography
from miram_hf.data.synthetic import TOP, generate_phantom
from miram_hf.processing.breast_segmentation import breast_mask
from miram_hf.processing.patches import Box

SMALL = dict(num_images=8, height=256, width=192)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return load_mammography("synthetic", config_name="images", cache_dir=str(tmp_path_factory.mktemp("c")), **SMALL)


@pytest.fixture(scope="module")
def lesions(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("c"))
    return load_mammography("synthetic", config_name="lesions", cache_dir=cache, background_crops_per_image=2, **SMALL)


def test_images_are_the_phantoms_exactly(images):
    assert {split: len(rows) for split, rows in images.items()} == {"test": 1, "validation": 1, "train": 6}
    for row in images["train"]:
        seed = int(row["image_id"].removeprefix("synthetic_"))
        phantom = generate_phantom(seed, 256, 192)
        pixels = np.array(row["image"])
        assert row["image"].mode == "I;16" and pixels.dtype == np.uint16
        np.testing.assert_array_equal(pixels, phantom.image)
        assert (row["laterality"], row["view"]) == (phantom.laterality, phantom.view)
        assert [lesion["box"] for lesion in row["lesions"]] == [list(lesion.box) for lesion in phantom.lesions]
        for stored, lesion in zip(row["lesions"], phantom.lesions, strict=True):
            np.testing.assert_array_equal(np.array(stored["mask"]) > 0, lesion.mask)
            assert stored["label_pathology"] == lesion.pathology
            assert stored["label_mass_margins"] == lesion.mass_margins
        malignant = any(lesion.pathology in (1, 3) for lesion in phantom.lesions)  # a malignant mass or calcification
        assert row["label_malignant"] == int(malignant)


def test_splits_are_patient_disjoint(images):
    patients = {split: set(rows["patient_id"]) for split, rows in images.items()}
    assert not patients["train"] & patients["test"] and not patients["train"] & patients["validation"]
    assert not patients["validation"] & patients["test"]


def test_lesion_crops_carry_labels_and_backgrounds_are_flagged(lesions):
    train = lesions["train"]
    assert train.features["label_pathology"].names == list(PATHOLOGY_NAMES)
    lesion_rows = [row for row in train if not row["is_background"]]
    background_rows = [row for row in train if row["is_background"]]
    assert lesion_rows and background_rows
    for row in lesion_rows:
        seed = int(row["image_id"].removeprefix("synthetic_"))
        phantom = generate_phantom(seed, 256, 192)
        crop = Box(*row["crop_box"])
        np.testing.assert_array_equal(np.array(row["image"]), crop.crop(phantom.image))
        lesion = Box(*row["lesion_box"])
        assert crop.top <= lesion.top and lesion.bottom <= crop.bottom  # the crop holds the lesion
        if row["label_fine_detail"] >= 0:  # the fine-detail finding: no pathology
            assert row["label_pathology"] == -1 and row["label_mass_margins"] == []
            continue
        assert 0 <= row["label_pathology"] < 4 and row["label_fine_detail"] == -1
        assert (row["label_mass_margins"] != []) == PATHOLOGY_NAMES[row["label_pathology"]].endswith("mass")
    for row in background_rows:
        seed = int(row["image_id"].removeprefix("synthetic_"))
        phantom = generate_phantom(seed, 256, 192)
        crop = Box(*row["crop_box"])
        assert row["label_pathology"] == -1 and row["label_mass_margins"] == [] and row["label_fine_detail"] == -1
        assert not any(crop.intersects(Box(*lesion.box)) for lesion in phantom.lesions)
        assert breast_mask(phantom.image, TOP)[crop.top : crop.bottom, crop.left : crop.right].mean() >= 0.9


def test_a_rebuild_gives_the_same_rows(tmp_path, lesions):
    again = load_mammography(
        "synthetic", config_name="lesions", split="test", cache_dir=str(tmp_path), background_crops_per_image=2, **SMALL
    )
    assert again["crop_box"] == lesions["test"]["crop_box"]
    assert again["label_pathology"] == lesions["test"]["label_pathology"]


def test_unknown_collection_and_bad_config_are_refused(tmp_path):
    with pytest.raises(ValueError, match="Unknown collection 'ddsm'"):
        load_mammography("ddsm")
    with pytest.raises(ValueError, match="num_images must be at least 3"):
        load_mammography("synthetic", cache_dir=str(tmp_path), num_images=2)
