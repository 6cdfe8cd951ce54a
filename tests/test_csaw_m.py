import logging

import numpy as np
import pytest
from dicom_factory import breast_image
from PIL import Image

from miram_hf.data import load_mammography

HEADER = (
    "Filename;Label;Expert_1;Expert_2;Expert_3;Expert_4;Expert_5;If_cancer;If_interval_cancer;"
    "If_large_invasive_cancer;If_composite;Dicom_image_laterality;Dicom_window_center;Dicom_window_width;"
    "Dicom_photometric_interpretation;Libra_percent_density;Libra_dense_area;Libra_breast_area"
)


@pytest.fixture
def csaw_m(tmp_path):
    root = tmp_path / "CSAW-M"
    (root / "labels").mkdir(parents=True)
    train = [
        "00001_20990909_L_1.png;3;;;;;;0;0;0;0;L;2047;4095;MONOCHROME2;12.5;30.1;240.2",
        "00002_20990909_R_1.png;8;;;;;;1;1;0;0;R;2047;4095;MONOCHROME2;40.0;90.1;225.0",
        "00003_20990909_R_1.png;9;;;;;;0;0;0;0;R;2047;4095;MONOCHROME2;10.0;20.0;200.0",  # no such level
    ]
    test = [
        "00004_20990909_L_1.png;5;4;5;5;6;5;0;0;0;0;L;2047;4095;MONOCHROME2;22.0;40.0;181.8",
        "00005_20990909_L_1.png;2;2;2;1;2;3;0;0;0;0;L;2047;4095;MONOCHROME2;8.0;10.0;125.0",
    ]  # no PNG
    (root / "labels" / "CSAW-M_train.csv").write_text(
        "\n".join([HEADER.replace(";Expert_1;Expert_2;Expert_3;Expert_4;Expert_5", ";;;;;"), *train]) + "\n"
    )
    (root / "labels" / "CSAW-M_test.csv").write_text("\n".join([HEADER, *test]) + "\n")
    for split, names in (("train", ["00001", "00002", "00003"]), ("test", ["00004"])):
        folder = root / "images" / "preprocessed" / split
        folder.mkdir(parents=True)
        for name in names:
            side = "L" if name in ("00001", "00004") else "R"
            Image.fromarray((breast_image(64, 48, side=side) >> 8).astype(np.uint8)).save(
                folder / f"{name}_20990909_{side}_1.png"
            )
    return root


def test_masking_levels_with_the_official_split(csaw_m, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        dataset = load_mammography("csaw-m", data_dir=str(csaw_m), cache_dir=str(tmp_path))
    train, test = {r["image_id"]: r for r in dataset["train"]}, {r["image_id"]: r for r in dataset["test"]}
    assert set(train) == {"00001_20990909_L_1", "00002_20990909_R_1"} and set(test) == {"00004_20990909_L_1"}
    names = dataset["train"].features["label_masking"].names
    assert names[train["00002_20990909_R_1"]["label_masking"]] == "8"
    assert train["00002_20990909_R_1"]["if_interval_cancer"] == 1 and train["00001_20990909_L_1"]["expert_labels"] == []
    assert test["00004_20990909_L_1"]["expert_labels"] == [4, 5, 5, 6, 5]
    assert abs(test["00004_20990909_L_1"]["libra_percent_density"] - 22.0) < 1e-6
    assert np.array(train["00001_20990909_L_1"]["image"]).shape == (64, 48)
    assert "CSAW-M_train.csv:4: no file name or masking level" in caplog.text
    assert "00005_20990909_L_1.png: no such file" in caplog.text
