import subprocess
import sys
from pathlib import Path

import torch
from transformers import AutoImageProcessor, AutoModelForPreTraining

import miram_hf  # noqa: F401  (registers MIRAM with the Auto classes)

SCRIPT = Path(__file__).parents[1] / "scripts" / "demo_reconstruction.py"


def test_demo_runs_and_leaves_a_loadable_model(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--output_dir", str(tmp_path), "--max_steps", "3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "reconstruction_before.png").stat().st_size > 0
    assert (tmp_path / "reconstruction_after.png").stat().st_size > 0
    processor = AutoImageProcessor.from_pretrained(tmp_path / "model")
    assert processor.scales == [1, 2]
    model = AutoModelForPreTraining.from_pretrained(tmp_path / "model")
    assert model.config.scales == [1, 2]
    outputs = model(torch.rand(1, 1, 64, 64))
    assert torch.isfinite(outputs.loss)
