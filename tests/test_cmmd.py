import logging

import numpy as np
import pytest
from cmmd_factory import write_cmmd

from miram_hf.data import load_mammography


@pytest.fixture
def cmmd(tmp_path):
    return write_cmmd(tmp_path / "manifest")


def test_breasts_by_tags_with_clinical_labels(cmmd, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        dataset = load_mammography("cmmd", data_dir=str(cmmd), cache_dir=str(tmp_path / "c"))
    rows = {row["image_id"]: row for split in dataset.values() for row in split}
    assert set(rows) == {
        "D1-0001_R_CC", "D1-0001_R_MLO", "D1-0001_L_CC", "D1-0001_L_MLO",
        "D1-0002_L_CC", "D1-0002_L_MLO", "D2-0003_L_CC", "D2-0003_L_MLO",
    }  # fmt: skip
    assert rows["D1-0001_R_MLO"]["label_malignant"] == 0 and rows["D1-0001_R_MLO"]["abnormality"] == "calcification"
    assert rows["D1-0001_L_CC"]["label_malignant"] == -1  # the unlabelled other breast, kept for pretraining
    assert rows["D1-0002_L_CC"]["label_malignant"] == 1 and rows["D1-0002_L_CC"]["number"] is None
    assert rows["D2-0003_L_MLO"]["subtype"] == "triple negative" and rows["D2-0003_L_MLO"]["number"] == 2
    assert np.array(rows["D1-0001_R_CC"]["image"]).dtype == np.uint16
    assert "D2-0004: in the clinical sheet but no image folder" in caplog.text
    assert "incomplete row" in caplog.text and "1-9.dcm: no laterality or view" in caplog.text


def test_tiles_from_cmmd(cmmd, tmp_path):
    tiles = load_mammography(
        "cmmd", data_dir=str(cmmd), config_name="tiles", cache_dir=str(tmp_path / "c"), tile_size=32, max_background=0.5
    )
    rows = [row for split in tiles.values() for row in split]
    assert rows and all(np.array(row["image"]).shape == (32, 32) for row in rows)


def test_missing_sheet_is_explained(tmp_path):
    with pytest.raises(ValueError, match="CMMD_clinicaldata_revision.xlsx"):
        load_mammography("cmmd", data_dir=str(tmp_path), cache_dir=str(tmp_path / "c"))
