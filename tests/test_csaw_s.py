import logging

import numpy as np
import pytest
from dicom_factory import breast_image
from PIL import Image

from miram_hf.data import load_mammography


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def csaw_s(tmp_path):
    root = tmp_path / "CSAW-S"
    image = (breast_image(64, 48) >> 8).astype(np.uint8)
    cancer = np.zeros((64, 48), dtype=np.uint8)
    cancer[10:20, 5:15] = 255
    train = root / "CsawS" / "anonymized_dataset" / "000"
    save(train / "000_0.png", image)
    save(train / "000_0_cancer.png", cancer)
    save(train / "000_0_calcifications.png", np.zeros((64, 48), dtype=np.uint8))  # empty: no lesion
    save(train / "000_0_skin.png", cancer)  # not a lesion structure
    save(train / "001_1_cancer.png", cancer)  # its image is missing
    test = root / "CsawS" / "test_data"
    save(test / "anonymized_dataset" / "100" / "100_0.png", image)
    for annotator, box in ((1, (30, 40, 20, 30)), (2, (0, 5, 0, 5))):
        mask = np.zeros((64, 48), dtype=np.uint8)
        mask[box[0] : box[1], box[2] : box[3]] = 255
        save(test / f"annotator_{annotator}" / "100" / "100_0_calcifications.png", mask)
    return root


def test_cancer_and_calcification_masks_become_lesions(csaw_s, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        dataset = load_mammography("csaw-s", data_dir=str(csaw_s), config_name="lesions", cache_dir=str(tmp_path))
    train, test = list(dataset["train"]), list(dataset["test"])
    assert [(r["image_id"], r["structure"], r["lesion_box"]) for r in train] == [("000_0", "cancer", [10, 5, 20, 15])]
    assert [(r["structure"], r["lesion_box"]) for r in test] == [("calcifications", [30, 20, 40, 30])]  # annotator 1
    assert train[0]["patient_id"] == "000" and train[0]["label_pathology"] == -1
    assert "001_1_cancer.png: masks without their image" in caplog.text


def test_images_config(csaw_s, tmp_path):
    dataset = load_mammography("csaw-s", data_dir=str(csaw_s), config_name="images", cache_dir=str(tmp_path))
    row = dataset["train"][0]
    assert row["image_id"] == "000_0" and [lesion["structure"] for lesion in row["lesions"]] == ["cancer"]
    assert np.array(row["lesions"][0]["mask"]).all()
