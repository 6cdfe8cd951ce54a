import logging
import plistlib

import numpy as np
import pytest
from dicom_factory import breast_image, write_dicom

from miram_hf.data import load_mammography
from miram_hf.data.inbreast import read_csv

PATIENTS = ["0a1b2c3d4e5f6071", "1b2c3d4e5f607182", "2c3d4e5f60718293", "3d4e5f6071829304"]
CSV_ROWS = [
    # Patient ID;Patient age;Laterality;View;Acquisition date;File Name;ACR;Bi-Rads
    ["removed", "removed", "L", "CC", "201001", "20586908", "2", "4a", 0],
    ["removed", "removed", "L", "MLO", "201001", "20586934", "2", "4a", 0],
    ["removed", "removed", "R", "CC", "201002", "22678622", "  ", "1", 1],  # a blank ACR padded with spaces
    ["removed", "removed", "R", "FB", "201002", "22678646", "3", "2", 1],  # the one FB view
    ["removed", "removed", "L", "CC", "201003", "24055274", "4", "5", 2],
    ["removed", "removed", "L", "CC", "201004", "24065530", "1", "1", 3],
    ["removed", "removed", "L", "MLO", "201004", "24065584", "1", "3", 3],  # no DICOM file
]


def roi(name, points):
    return {"Name": name, "NumberOfPoints": len(points), "Point_px": [f"({x}, {y})" for x, y in points], "Area": 1.0}


@pytest.fixture
def inbreast(tmp_path):
    root = tmp_path / "INbreast"
    (root / "AllDICOMs").mkdir(parents=True)
    (root / "AllXML").mkdir()
    lines = ["Patient ID;Patient age;Laterality;View;Acquisition date;File Name;ACR;Bi-Rads"]
    for *cells, patient in CSV_ROWS:
        lines.append(";".join(cells))
        name, side, view = cells[5], cells[2], "ML" if cells[3] == "MLO" else cells[3]
        if name != "24065584":
            write_dicom(
                root / "AllDICOMs" / f"{name}_{PATIENTS[patient]}_MG_{side}_{view}_ANON.dcm",
                breast_image(80, 60, bits=14, side=side),
                bits_stored=14,
                ImageLaterality=side,
            )
    (root / "INbreast.csv").write_text("\n".join(lines) + "\n")
    plist = {
        "Images": [
            {
                "ImageIndex": 0,
                "NumberOfROIs": 3,
                "ROIs": [
                    roi("Mass", [(10, 20), (30, 20), (30, 40), (10, 40)]),  # x is the column
                    roi("Calcifications", [(45.5, 60.2)]),
                    roi("Espiculated Region", [(5, 5), (20, 5), (12, 15)]),
                ],
            }
        ]
    }
    with open(root / "AllXML" / "20586908.xml", "wb") as handle:
        plistlib.dump(plist, handle)
    (root / "AllXML" / "24055274.xml").write_bytes(b"not a plist")
    return root


def test_csv_quirks(inbreast):
    images, problems = read_csv(inbreast / "INbreast.csv")
    assert len(images) == 7 and problems == []
    assert images[1].view == "MLO" and images[3].view == "FB" and images[2].acr == "" and images[0].birads == "4a"


def test_findings_become_lesion_crops(inbreast, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        dataset = load_mammography("inbreast", data_dir=str(inbreast), config_name="lesions", cache_dir=str(tmp_path))
    rows = {(row["image_id"], row["finding_type"]): row for split in dataset.values() for row in split}
    assert set(rows) == {
        ("20586908", "mass"),
        ("20586908", "calcification"),
        ("20586908", "spiculated_region"),
    }
    mass = rows["20586908", "mass"]
    assert mass["lesion_box"] == [20, 10, 41, 31]  # rows from y, columns from x
    assert mass["patient_id"] == PATIENTS[0] and mass["birads"] == "4a" and mass["label_pathology"] == -1
    calcification = rows["20586908", "calcification"]["lesion_box"]
    assert calcification[0] <= 60 <= calcification[2] and calcification[1] <= 45 <= calcification[3]
    assert "no AllDICOMs/24065584_*.dcm" in caplog.text and "24055274.xml: unreadable XML" in caplog.text


def test_images_with_split_by_patient(inbreast, tmp_path):
    dataset = load_mammography("inbreast", data_dir=str(inbreast), config_name="images", cache_dir=str(tmp_path))
    rows = {row["image_id"]: row for split in dataset.values() for row in split}
    # 24055274's XML is damaged and 24065584 has no DICOM: both reported, not silently dropped
    assert set(rows) == {"20586908", "20586934", "22678622", "22678646", "24065530"}
    mass = rows["20586908"]["lesions"][0]
    assert mass["finding_type"] == "mass" and np.array(mass["mask"]).shape == (21, 21)
    assert rows["22678622"]["lesions"] == [] and rows["22678622"]["acr"] == ""
    # the VAE paper's labels: density from the ACR (blank: -1), malignant from BI-RADS 4-6, non-malignant from 1-2
    assert (rows["22678622"]["label_density"], rows["22678622"]["label_malignant"]) == (-1, 0)
    assert (rows["20586908"]["label_density"], rows["20586908"]["label_malignant"]) == (1, 1)  # ACR 2, BI-RADS 4a
    assert np.array(rows["20586908"]["image"]).dtype == np.uint16
    by_split = {split: {row["patient_id"] for row in rows} for split, rows in dataset.items()}
    assert sum(len(group) for group in by_split.values()) == len(set().union(*by_split.values()))
    assert "stratified by BI-RADS" in next(iter(dataset.values())).info.description


def test_data_dir_is_checked(tmp_path):
    with pytest.raises(ValueError, match="INbreast.csv, AllDICOMs/"):
        load_mammography("inbreast", data_dir=str(tmp_path), cache_dir=str(tmp_path / "c"))
