import importlib.util
from pathlib import Path

import numpy as np
import pytest
from datasets import load_dataset
from huggingface_hub import DatasetCard

from miram_hf.data import load_mammography
from miram_hf.data.raw_pixels import row_image

spec = importlib.util.spec_from_file_location("prepare_data", Path(__file__).parents[1] / "scripts" / "prepare_data.py")
prepare_data = importlib.util.module_from_spec(spec)
spec.loader.exec_module(prepare_data)


def test_sharded_parquet_streams_back_the_same_rows(tmp_path):
    arguments = ["--dataset", "synthetic", "--config", "lesions", "--num_images", "10", "--rows_per_shard", "4"]
    summary = prepare_data.main([*arguments, "--output_dir", str(tmp_path / "out"), "--cache_dir", str(tmp_path / "c")])
    assert len(summary["files"]["train"]) == -(-summary["rows"]["train"] // 4)  # ceil: every shard holds <= 4 rows
    built = load_mammography(
        "synthetic", config_name="lesions", split="train", cache_dir=str(tmp_path / "c"), num_images=10
    )
    streamed = load_dataset(
        "parquet", data_files={"train": str(tmp_path / "out" / "train-*.parquet")}, split="train", streaming=True
    )
    rows = list(streamed)
    assert len(rows) == len(built)
    assert streamed.features["label_pathology"].names == built.features["label_pathology"].names
    for row, expected in zip(rows, built, strict=True):
        assert row["image"].mode == "I;16"
        np.testing.assert_array_equal(np.array(row["image"]), np.array(expected["image"]))
        assert row["label_pathology"] == expected["label_pathology"]


def test_raw_pixels_are_the_built_images_values_with_the_labels_and_a_card_that_says_how_to_read_them(tmp_path):
    output = tmp_path / "raw"
    prepare_data.main(["--dataset", "synthetic", "--num_images", "6", "--image_format", "raw", "--output_dir",
                       str(output), "--cache_dir", str(tmp_path / "c")])  # fmt: skip
    built = load_mammography("synthetic", config_name="lesions", split="train", cache_dir=str(tmp_path / "c"),
                             num_images=6)  # fmt: skip
    loaded = load_dataset(str(output), split="train")
    assert loaded.features["pixels"].dtype == "binary" and "image" not in loaded.column_names
    assert loaded.features["label_pathology"] == built.features["label_pathology"] and len(loaded) == len(built)
    for row, expected in zip(loaded, built, strict=True):
        np.testing.assert_array_equal(row_image(row), np.array(expected["image"]))
        assert row["label_pathology"] == expected["label_pathology"]
    assert "`pixels` holds the row-major uint16 values" in (output / "README.md").read_text()


def test_a_prepared_phantom_is_pushed_with_a_dataset_card_and_loads_back(tmp_path, fake_hub):
    output = tmp_path / "out"
    prepare_data.main(["--dataset", "synthetic", "--config", "images", "--num_images", "6", "--output_dir",
                       str(output), "--cache_dir", str(tmp_path / "c"), "--dataset_options", "film_scan=true",
                       "--push_to_hub", "--hub_dataset_id", "org/phantom-images"])  # fmt: skip
    (commit,) = fake_hub
    assert commit["repo_id"] == "org/phantom-images"
    assert {"README.md", "prepare_data.json"} <= set(commit["files"])
    assert any(name.startswith("train-") and name.endswith(".parquet") for name in commit["files"])
    card = DatasetCard(commit["files"]["README.md"].decode())
    assert card.data.license == "cc0-1.0" and "mammography" in card.data.tags
    assert {"split": "train", "path": "train-*.parquet"} in card.data.configs[0]["data_files"]
    assert "`film_scan=True`" in card.text and "## Skipped during the build" in card.text
    assert 'load_dataset("org/phantom-images", streaming=True)' in card.text
    # the pushed layout, as a Hub repository holds it, loads back from its card's configs alone
    pushed = tmp_path / "pushed"
    pushed.mkdir()
    for name, content in commit["files"].items():
        (pushed / name).write_bytes(content)
    loaded = load_dataset(str(pushed))
    built = load_mammography("synthetic", config_name="images", cache_dir=str(tmp_path / "c"), num_images=6,
                             film_scan=True)  # fmt: skip
    assert {split: len(rows) for split, rows in loaded.items()} == {split: len(rows) for split, rows in built.items()}
    assert loaded["train"].features["label_malignant"] == built["train"].features["label_malignant"]
    np.testing.assert_array_equal(np.array(loaded["train"][0]["image"]), np.array(built["train"][0]["image"]))


def test_a_real_collection_is_pushed_only_by_someone_with_the_right_to_share_it(tmp_path, fake_hub, capsys):
    with pytest.raises(SystemExit):
        prepare_data.main(["--dataset", "cbis-ddsm", "--data_dir", str(tmp_path), "--output_dir", str(tmp_path / "o"),
                           "--push_to_hub", "--hub_dataset_id", "org/cbis"])  # fmt: skip
    assert "--i_have_the_right_to_share" in capsys.readouterr().err and not fake_hub
    with pytest.raises(SystemExit):
        prepare_data.main(["--dataset", "synthetic", "--output_dir", str(tmp_path / "o"), "--push_to_hub"])
    assert "--hub_dataset_id" in capsys.readouterr().err
