"""bench/gpu_check.sh: its dry run on the CPU (what CI can run) and its FLOPs formula."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import ViTMAEConfig

SCRIPT = Path(__file__).parents[1] / "bench" / "gpu_check.sh"
sys.path.insert(0, str(SCRIPT.parent))  # as when run: the bench scripts import each other
spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT.with_suffix(".py"))
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the script runs the real check, not a dry run")
def test_without_a_gpu_the_check_says_so_and_dry_runs_every_part(tmp_path):
    result = subprocess.run(["bash", str(SCRIPT), "--output", str(tmp_path)], capture_output=True, text=True,
                            env={**os.environ, "PYTHON": sys.executable}, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "No GPU here" in result.stdout and "| bf16 vs fp32 loss, relative difference |" in result.stdout
    report = json.loads((tmp_path / "gpu_dry_run.json").read_text())
    assert set(report["throughput"]) == {"vit_mae_224", "miram_[1,2]_112"}
    assert all(row["images_per_s"] > 0 and row["mfu"] is None for row in report["throughput"].values())
    assert set(report["decoder_attention"]) >= {"sdpa", "nystromformer"}
    assert report["bf16_vs_fp32"]["relative_difference"] < 0.05
    feed = report["feed_rate"]
    assert feed["loader_images_per_s_per_core"] > 0 and feed["device_views_images_per_s"] > 0
    assert feed["loader_images_per_s_with_workers"] > 0 and feed["loader_cpu_ms_per_image"] > 0
    miram_rate = report["throughput"]["miram_[1,2]_112"]["images_per_s"]
    cores = miram_rate / feed["loader_images_per_s_per_core"]
    assert feed["loader_cores_for_miram"] == pytest.approx(cores, abs=1e-3) and "loader cores MIRAM" in result.stdout
    run = report["pretraining"]
    assert len(run["window_images_per_s"]) == 4 and min(run["window_images_per_s"]) > 0
    assert run["images_per_s"] == pytest.approx(sorted(run["window_images_per_s"][1:])[1], abs=0.1)
    assert "| pretrain.py --augment_on_device, batch 8: images/s" in result.stdout


def test_the_flops_formula_counts_maes_vit_b_by_hand():
    config = ViTMAEConfig()  # ViT-B/16 at 224 px, MAE's 512-wide 8-block decoder, 75% masked
    encoder = 12 * (4 * 50 * 768**2 + 2 * 50**2 * 768 + 2 * 50 * 768 * 3072)  # 49 visible patches + CLS
    decoder = 8 * (4 * 197 * 512**2 + 2 * 197**2 * 512 + 2 * 197 * 512 * 2048)
    embeddings = 49 * 768 * 768 + 197 * 768 * 512 + 197 * 512 * 768  # patches in, decoder in, pixels out
    expected = 3 * 2 * (encoder + decoder + embeddings)
    assert gpu_check.training_flops(config, 224, [1]) == pytest.approx(expected)
    assert 55e9 < expected < 62e9  # about 58.5 GFLOPs a training image
