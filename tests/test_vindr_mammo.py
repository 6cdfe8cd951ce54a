import csv
import logging

import numpy as np
import pytest
from dicom_factory import vindr_dicom

from miram_hf.data import load_mammography

IMAGES = [
    # study_id, series_id, image_id, laterality, view_position, height, width, breast_birads, breast_density, split
    ["a" * 32, "s1", "1" * 32, "L", "CC", "96", "64", "BI-RADS 4", "DENSITY C", "training"],
    ["a" * 32, "s1", "2" * 32, "L", "MLO", "96", "64", "BI-RADS 1", "DENSITY C", "training"],
    ["b" * 32, "s2", "3" * 32, "R", "CC", "96", "64", "BI-RADS 2", "DENSITY B", "test"],
    ["b" * 32, "s2", "4" * 32, "R", "MLO", "96", "64", "BI-RADS 2", "DENSITY B", "test"],  # its file is missing
]
FINDINGS = [
    ["a" * 32, "s1", "1" * 32, "['Mass', 'Skin Retraction']", "BI-RADS 4", "10.5", "20.2", "30.9", "40"],
    ["a" * 32, "s1", "1" * 32, "['Suspicious Calcification']", "BI-RADS 4", "5", "5", "15", "12"],
    ["a" * 32, "s1", "2" * 32, "['No Finding']", "", "", "", "", ""],
    ["b" * 32, "s2", "3" * 32, "['Mass'", "BI-RADS 2", "1", "1", "9", "9"],  # a broken list
]


@pytest.fixture
def vindr(tmp_path):
    root = tmp_path / "vindr"
    columns = ["study_id", "series_id", "image_id", "laterality", "view_position", "height", "width"]
    finding_columns = columns[:3] + ["finding_categories", "finding_birads", "xmin", "ymin", "xmax", "ymax"]
    for name, header, rows in (
        ("breast-level_annotations.csv", columns + ["breast_birads", "breast_density", "split"], IMAGES),
        ("finding_annotations.csv", finding_columns, FINDINGS),
    ):
        root.mkdir(exist_ok=True)
        with open(root / name, "w", newline="") as handle:
            csv.writer(handle).writerows([header, *rows])
    for study, _, image, *_ in IMAGES[:3]:
        vindr_dicom(root / "images" / study / f"{image}.dicom")
    return root


def test_findings_by_name_with_the_official_split(vindr, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        lesions = load_mammography("vindr-mammo", data_dir=str(vindr), config_name="lesions", cache_dir=str(tmp_path))
    assert set(lesions) == {"train"}  # the test image with a finding has a broken list: reported, no rows
    rows = list(lesions["train"])
    assert [row["finding_categories"] for row in rows] == [["Mass", "Skin Retraction"], ["Suspicious Calcification"]]
    assert rows[0]["lesion_box"] == [20, 10, 40, 31] and rows[0]["label_pathology"] == -1
    assert rows[0]["patient_id"] == "a" * 32 and rows[0]["view"] == "CC"
    assert np.array(rows[0]["image"]).dtype == np.uint16
    assert "unreadable finding_categories" in caplog.text and f"{'4' * 32}.dicom" in caplog.text


def test_images_keep_breast_labels(vindr, tmp_path):
    images = load_mammography("vindr-mammo", data_dir=str(vindr), config_name="images", cache_dir=str(tmp_path))
    rows = {row["image_id"]: row for split in images.values() for row in split}
    assert set(rows) == {"1" * 32, "2" * 32, "3" * 32}
    assert rows["1" * 32]["breast_birads"] == "BI-RADS 4" and len(rows["1" * 32]["lesions"]) == 2
    assert rows["2" * 32]["lesions"] == []  # No Finding
    pixels = np.array(rows["1" * 32]["image"])
    assert pixels[:, -4:].max() == 0  # padding became background; MONOCHROME1 inverted by the reader


def test_data_dir_is_checked(tmp_path):
    with pytest.raises(ValueError, match="breast-level_annotations.csv"):
        load_mammography("vindr-mammo", data_dir=str(tmp_path), cache_dir=str(tmp_path / "c"))
