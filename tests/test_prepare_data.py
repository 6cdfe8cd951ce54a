import importlib.util
from pathlib import Path

import numpy as np
from datasets import load_dataset

from miram_hf.data import load_mammography

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
