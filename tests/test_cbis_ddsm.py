import logging

import numpy as np
import pytest
from cbis_ddsm_factory import standard_cases, write_cbis_ddsm

from miram_hf.data import MammographyBuildError, load_mammography
from miram_hf.data.cbis_ddsm import parse_case_descriptions


def lesions_by_patient(dataset):
    return {(row["patient_id"], row["abnormality_id"]): row for row in dataset}


@pytest.fixture
def nbia(tmp_path):
    return write_cbis_ddsm(tmp_path / "nbia", standard_cases(), layout="nbia")


def load(root, tmp_path, **kwargs):
    return load_mammography("cbis-ddsm", data_dir=str(root), cache_dir=str(tmp_path / "cache"), **kwargs)


def test_lesions_keep_the_official_split_and_the_paper_labels(nbia, tmp_path):
    dataset = load(nbia, tmp_path, config_name="lesions")
    assert set(dataset) == {"train", "test"}
    train, test = lesions_by_patient(dataset["train"]), lesions_by_patient(dataset["test"])
    assert set(train) == {("P_00001", 1), ("P_00001", 2), ("P_00002", 1)}
    assert set(test) == {("P_00003", 1)}  # P_00004 (mask of the wrong shape) and P_00005 (no ROI files) dropped
    names = dataset["train"].features["label_pathology"].names
    assert names[train["P_00001", 1]["label_pathology"]] == "malignant_mass"
    assert names[train["P_00001", 2]["label_pathology"]] == "benign_mass"  # BENIGN_WITHOUT_CALLBACK
    assert names[train["P_00002", 1]["label_pathology"]] == "benign_calcification"
    margins = dataset["train"].features["label_mass_margins"].feature.names
    assert [margins[i] for i in train["P_00001", 1]["label_mass_margins"]] == ["ill_defined", "spiculated"]
    assert [margins[i] for i in train["P_00001", 2]["label_mass_margins"]] == ["circumscribed"]
    assert train["P_00002", 1]["label_mass_margins"] == [] and test["P_00003", 1]["label_mass_margins"] == []
    assert train["P_00002", 1]["calc_type"] == "LUCENT_CENTERED" and train["P_00001", 1]["mass_shape"] == "IRREGULAR"
    assert train["P_00001", 1]["breast_density"] == 3 and test["P_00003", 1]["breast_density"] == 3  # both headers


def test_masks_are_told_by_content_even_when_the_csv_swaps_them(nbia, tmp_path):
    train = lesions_by_patient(load(nbia, tmp_path, config_name="lesions", split="train"))
    assert train["P_00001", 1]["lesion_box"] == [20, 10, 30, 22]
    assert train["P_00002", 1]["lesion_box"] == [20, 10, 30, 22]  # the swapped row, repaired
    row = train["P_00001", 2]
    assert row["lesion_box"] == [40, 8, 50, 20]
    top, left, bottom, right = row["crop_box"]
    assert top <= 40 and left <= 8 and bottom >= 50 and right >= 20
    crop = np.array(row["image"])
    assert crop.dtype == np.uint16 and crop.shape == (bottom - top, right - left)


def test_both_disk_layouts_give_the_same_rows(tmp_path):
    classic = write_cbis_ddsm(tmp_path / "classic", standard_cases(), layout="classic")
    no_metadata = write_cbis_ddsm(tmp_path / "bare", standard_cases(), layout="nbia", metadata=False)
    nbia = write_cbis_ddsm(tmp_path / "nbia", standard_cases(), layout="nbia")
    results = []
    for index, root in enumerate((nbia, classic, no_metadata)):
        dataset = load_mammography(
            "cbis-ddsm", data_dir=str(root), config_name="lesions", split="train", cache_dir=str(tmp_path / f"c{index}")
        )
        results.append(sorted((r["patient_id"], r["abnormality_id"], tuple(r["lesion_box"])) for r in dataset))
    assert results[0] == results[1] == results[2] and len(results[0]) == 3


def test_dropped_abnormalities_are_reported(nbia, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        load(nbia, tmp_path, config_name="lesions", split="test")
    assert "skipped 2 item(s)" in caplog.text
    assert "differs from the full image's (64, 48)" in caplog.text and "Calc-Test_P_00004" in caplog.text
    assert "no ROI files" in caplog.text and "calc_case_description_test_set.csv" in caplog.text


def test_strict_raises_at_the_first_problem_naming_it(nbia, tmp_path):
    with pytest.raises(MammographyBuildError, match="Calc-Test_P_00004.*differs from the full image"):
        load(nbia, tmp_path, config_name="lesions", strict=True)


def test_images_group_the_abnormalities_of_a_mammogram(nbia, tmp_path):
    images = {row["image_id"]: row for row in load(nbia, tmp_path, config_name="images", split="train")}
    assert set(images) == {"Mass-Training_P_00001_LEFT_CC", "Calc-Training_P_00002_RIGHT_MLO"}
    row = images["Mass-Training_P_00001_LEFT_CC"]
    assert np.array(row["image"]).shape == (64, 48) and np.array(row["image"]).dtype == np.uint16
    assert [lesion["box"] for lesion in row["lesions"]] == [[20, 10, 30, 22], [40, 8, 50, 20]]
    assert np.array(row["lesions"][0]["mask"]).shape == (10, 12)
    assert (row["laterality"], row["view"], row["breast_density"]) == ("L", "CC", 3)
    # the whole image's label: malignant when one of its lesions is (a malignant mass beside a benign one here)
    assert row["label_malignant"] == 1 and images["Calc-Training_P_00002_RIGHT_MLO"]["label_malignant"] == 0


def test_no_identifying_dicom_attribute_reaches_a_row(nbia, tmp_path):
    for config in ("images", "lesions"):
        for split in load(nbia, tmp_path / config, config_name=config).values():
            text = str([{k: v for k, v in row.items() if k != "image"} for row in split])
            assert "DOE^JANE" not in text and "General Hospital" not in text and "19600101" not in text


def test_data_dir_is_checked_first(tmp_path):
    with pytest.raises(ValueError, match="mass_case_description_train_set.csv"):
        load_mammography("cbis-ddsm", data_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"))


def test_csv_cells_are_stripped_and_bad_rows_reported(nbia):
    path = nbia / "mass_case_description_train_set.csv"
    rows, problems = parse_case_descriptions(path, "mass")
    assert rows[0].patient_id == "P_00001" and rows[0].full_path[0] == "Mass-Training_P_00001_LEFT_CC"
    assert problems == []
    text = path.read_text().replace("MALIGNANT", "MAYBE", 1)
    path.write_text(text)
    _, problems = parse_case_descriptions(path, "mass")
    assert problems == [("mass_case_description_train_set.csv:2", "unknown pathology 'MAYBE'")]


def test_background_crops_avoid_the_lesions(nbia, tmp_path):
    from miram_hf.processing.patches import Box

    rows = list(
        load(nbia, tmp_path, config_name="lesions", split="train", background_crops_per_image=2, min_crop_size=8)
    )
    backgrounds = [row for row in rows if row["is_background"]]
    lesions = [row for row in rows if not row["is_background"]]
    assert len(lesions) == 3 and backgrounds
    for row in backgrounds:
        assert row["label_pathology"] == -1 and row["abnormality_id"] is None and row["lesion_box"] == []
        crop = Box(*row["crop_box"])
        same_image = [Box(*lesion["lesion_box"]) for lesion in lesions if lesion["image_id"] == row["image_id"]]
        assert same_image and not any(crop.intersects(box) for box in same_image)
        assert np.array(row["image"]).shape == (8, 8)
