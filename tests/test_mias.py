import logging

import numpy as np
import pytest
from PIL import Image

from miram_hf.data import load_mammography
from miram_hf.data.common import patient_split
from miram_hf.data.mias import parse_info

INFO = """REFNUM BG CLASS SEVERITY X Y RADIUS
mdb001 G CIRC B 535 425 197
mdb002 G CIRC B 522 280 69
mdb003 D NORM \nmdb004 D NORM
mdb005 F CIRC B 477 133 30
mdb005 F CIRC B 500 168 26
mdb006 F NORM\x20
mdb007 G NORM
mdb008 G NORM
mdb009 F SPIC M 300 700 40
mdb010 F NORM
mdb011 F CALC M
mdb012 F CALC B 600 600 20
mdb013 G ARCH M 400 500 50
mdb014 G MISC B 200 300 30
mdb015 D NORM
mdb016 D NORM
mdb017 G ASYM B 100 100 abc
mdb018 G NORM
mdb019 G NORM
mdb020 G NORM
"""


@pytest.fixture
def mias(tmp_path):
    root = tmp_path / "mias"
    (root / "images").mkdir(parents=True)
    (root / "Info.txt").write_text(INFO)
    rng = np.random.default_rng(0)
    for number in range(1, 21):
        if number == 20:
            continue  # a missing image
        Image.fromarray(rng.integers(0, 255, (1024, 1024), dtype=np.uint8)).save(
            root / "images" / f"mdb{number:03d}.pgm"
        )
    return root


def test_info_lines_with_their_quirks(tmp_path):
    (tmp_path / "Info.txt").write_text(INFO)
    findings, problems = parse_info(tmp_path / "Info.txt")
    assert findings["mdb001"][0].centre == (1024 - 425, 535) and findings["mdb001"][0].radius == 197
    assert len(findings["mdb005"]) == 2  # a reference repeats for each abnormality
    assert findings["mdb003"][0].mias_class == "NORM" and findings["mdb006"][0].severity == ""
    assert findings["mdb011"][0].centre is None and findings["mdb011"][0].label_pathology == 3
    assert findings["mdb009"][0].label_mass_margins == [4] and findings["mdb014"][0].label_mass_margins == [1]
    assert findings["mdb013"][0].label_pathology == -1  # architectural distortion: none of the four classes
    assert problems == [("Info.txt:19", "unreadable coordinates ['100', '100', 'abc']")]


def test_patient_split_is_disjoint_stratified_and_seeded():
    labels = {f"p{i}": i % 3 for i in range(60)}
    split = patient_split(labels, {"train": 0.7, "validation": 0.1, "test": 0.2}, seed=0)
    assert split == patient_split(labels, {"train": 0.7, "validation": 0.1, "test": 0.2}, seed=0)
    assert split != patient_split(labels, {"train": 0.7, "validation": 0.1, "test": 0.2}, seed=1)
    for label in range(3):
        members = [split[p] for p, value in labels.items() if value == label]
        assert (members.count("train"), members.count("validation"), members.count("test")) == (14, 2, 4)


def test_lesion_crops_and_reports(mias, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        dataset = load_mammography("mias", data_dir=str(mias), config_name="lesions", cache_dir=str(tmp_path / "c"))
    rows = [row for split in dataset.values() for row in split]
    assert sorted(row["image_id"] for row in rows) == sorted(
        ["mdb001", "mdb002", "mdb005", "mdb005", "mdb009", "mdb012", "mdb013", "mdb014"]
    )
    row = next(row for row in rows if row["image_id"] == "mdb009")
    assert row["lesion_box"] == [1024 - 700 - 40, 260, 1024 - 700 + 40, 340]
    assert (row["label_pathology"], row["mias_class"], row["laterality"]) == (1, "SPIC", "R")
    assert "mdb011: CALC finding without coordinates" in caplog.text
    assert "mdb020: image file not found" in caplog.text and "unreadable coordinates" in caplog.text
    patients = [{row["patient_id"] for row in rows} for rows in dataset.values()]
    assert sum(len(group) for group in patients) == len(set().union(*patients))  # no patient in two splits
    assert "Patient-level split" in dataset["train"].info.description


def test_images_keep_normal_mammograms(mias, tmp_path):
    dataset = load_mammography("mias", data_dir=str(mias), config_name="images", cache_dir=str(tmp_path / "c"))
    rows = {row["image_id"]: row for split in dataset.values() for row in split}
    assert len(rows) == 19
    assert rows["mdb003"]["image_label"] == "normal" and rows["mdb003"]["lesions"] == []
    assert rows["mdb002"]["laterality"] == "L" and rows["mdb001"]["patient_id"] == rows["mdb002"]["patient_id"]
    assert rows["mdb011"]["image_label"] == "malignant"  # known from the label even without a box
    # the VAE paper's labels as class columns: worst finding, benign vs malignant (normal: -1), background tissue
    labels = [(rows[name]["label_class"], rows[name]["label_malignant"], rows[name]["label_density"])
              for name in ("mdb003", "mdb001", "mdb011")]  # fmt: skip
    assert labels == [(0, -1, 2), (1, 0, 1), (2, 1, 0)]
    lesion = rows["mdb005"]["lesions"][0]
    mask = np.array(lesion["mask"]) > 0
    assert mask.shape == (60, 60) and mask[30, 30] and not mask[0, 0]
    assert np.array(rows["mdb001"]["image"]).shape == (1024, 1024)


def test_missing_info_file_is_explained(tmp_path):
    with pytest.raises(ValueError, match="Info.txt"):
        load_mammography("mias", data_dir=str(tmp_path), cache_dir=str(tmp_path / "c"))
