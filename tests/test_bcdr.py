import logging

import numpy as np
import pytest
from dicom_factory import breast_image
from PIL import Image

from miram_hf.data import load_mammography

HEADER = (
    "patient_id, study_id, series, lesion_id, segmentation_id, image_view, image_filename, lw_x_points, lw_y_points, "
    "mammography_type, mammography_nodule, mammography_calcification, mammography_microcalcification, "
    "mammography_axillary_adenopathy, mammography_architectural_distortion, mammography_stroma_distortion, age, "
    "density, classification"
)


def row(patient, view, xs, ys, nodule, calc, classification):
    name = f"patient_{patient}/study_{patient}/img_{patient}_{patient}_1_{view}.tif"
    return (f"{patient}, {patient}, 1, 1, 1, {view}, {name}, {xs}, {ys}, 0, {nodule}, {calc}, 0, 0, 0, 0, 55, 2, "
            f"{classification}")  # fmt: skip


@pytest.fixture
def bcdr(tmp_path):
    root = tmp_path / "BCDR-D01_dataset"
    lines = [
        HEADER,
        row(3, 2, "10 30 30 10", "20 20 40 40", 1, 0, " Malign"),
        row(3, 2, "5 9 7", "50 50 58", 0, 1, " Benign"),  # a second finding on the same image
        row(5, 1, "4 20 12", "4 4 20", 0, 0, " Benign"),  # neither nodule nor calcification: label -1
        row(7, 3, "1 2", "1 2", 1, 0, " Benign"),  # too few points
        row(9, 4, "1 20 20", "1 1 20", 1, 0, " Benign"),  # image missing
    ]
    root.mkdir()
    (root / "bcdr_d01_outlines.csv").write_text("\n".join(lines) + "\n")
    for patient, view in ((3, 2), (5, 1), (7, 3)):
        folder = root / f"patient_{patient}" / f"study_{patient}"
        folder.mkdir(parents=True)
        Image.fromarray(breast_image(80, 60, bits=8).astype(np.uint8)).save(
            folder / f"img_{patient}_{patient}_1_{view}.tif"
        )
    return root


def test_outlines_become_lesions(bcdr, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        dataset = load_mammography("bcdr", data_dir=str(tmp_path), config_name="lesions", cache_dir=str(tmp_path / "c"))
    rows = sorted((r for split in dataset.values() for r in split), key=lambda r: (r["image_id"], r["lesion_box"]))
    assert [(r["label_pathology"], r["lesion_box"]) for r in rows] == [
        (1, [20, 10, 41, 31]),  # malignant mass: rows from y, columns from x
        (2, [50, 5, 59, 10]),  # benign calcification
        (-1, [4, 4, 21, 21]),
    ]
    assert rows[0]["classification"] == "Malign" and (rows[0]["laterality"], rows[0]["view"]) == ("L", "CC")
    assert rows[0]["bcdr_set"] == "d01" and rows[0]["patient_id"] == "d01_3"
    assert "an outline needs 3 or more" in caplog.text and "img_9_9_1_4.tif: no such file" in caplog.text


def test_images_with_masks(bcdr, tmp_path):
    dataset = load_mammography("bcdr", data_dir=str(bcdr), config_name="images", cache_dir=str(tmp_path / "c"))
    rows = {r["image_id"]: r for split in dataset.values() for r in split}
    image = rows["d01/patient_3/study_3/img_3_3_1_2.tif"]
    assert len(image["lesions"]) == 2 and image["density"] == "2"
    mask = np.array(image["lesions"][0]["mask"]) > 0
    assert mask.shape == (21, 21) and mask.all()  # an axis-aligned square outline fills its box
