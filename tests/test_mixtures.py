import numpy as np
import pytest
from cbis_ddsm_factory import standard_cases, write_cbis_ddsm
from cmmd_factory import write_cmmd

from miram_hf.data.mixtures import pretraining_mixture


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return {
        "cbis-ddsm": str(write_cbis_ddsm(root / "cbis", standard_cases())),
        "cmmd": str(write_cmmd(root / "cmmd")),
    }


def test_the_three_mixtures(data_dirs, tmp_path):
    cbis = pretraining_mixture("cbis-ddsm", data_dirs, cache_dir=str(tmp_path))
    assert set(cbis["source"]) == {"cbis-ddsm"} and len(cbis) == 3  # the three usable train abnormalities
    lesions = pretraining_mixture("lesions-only", data_dirs, cache_dir=str(tmp_path))
    assert set(lesions["source"]) == {"cbis-ddsm"}  # cmmd is image-level: not in lesions-only
    mixed = pretraining_mixture("mgs-and-lesions", data_dirs, cache_dir=str(tmp_path), crop_size=16, crops_per_image=3)
    sources = mixed["source"]
    assert sources.count("cbis-ddsm") == 3 and sources.count("cmmd") > 0
    for row in mixed:
        assert np.array(row["image"]).dtype == np.uint16
        if row["source"] == "cmmd":
            assert np.array(row["image"]).shape == (16, 16)
    again = pretraining_mixture("mgs-and-lesions", data_dirs, cache_dir=str(tmp_path), crop_size=16, crops_per_image=3)
    assert again["crop_box"] == mixed["crop_box"] and again["source"] == sources  # seeded


def test_mixture_arguments_are_checked(data_dirs):
    with pytest.raises(ValueError, match="Unknown mixture"):
        pretraining_mixture("everything", data_dirs)
    with pytest.raises(ValueError, match="not pretraining collections"):
        pretraining_mixture("lesions-only", {"mias2": None})
    with pytest.raises(ValueError, match="needs data_dirs\\['cbis-ddsm'\\]"):
        pretraining_mixture("cbis-ddsm", {"cmmd": data_dirs["cmmd"]})
