"""A saved MIRAM folder must load for someone who has only transformers (trust_remote_code=True)."""

import os
import subprocess
import sys
import textwrap

import torch
from conftest import WITHOUT_MIRAM_HF
from safetensors.torch import save_file
from tiny_configs import tiny_miram_config

from miram_hf import MammographyImageProcessor, MiramForPreTraining

CHILD = WITHOUT_MIRAM_HF + textwrap.dedent(
    """
    hide_miram_hf()

    import torch
    from safetensors.torch import load_file
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoModel,
        AutoModelForImageClassification,
        AutoModelForPreTraining,
    )

    folder, expected_file = sys.argv[1], sys.argv[2]
    expected = load_file(expected_file)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    assert config.__class__.__module__.startswith("transformers_modules"), config.__class__.__module__

    pretraining = AutoModelForPreTraining.from_pretrained(folder, trust_remote_code=True).eval()
    assert type(pretraining).__name__ == "MiramForPreTraining"
    assert type(pretraining).__module__.startswith("transformers_modules")
    with torch.no_grad():
        targets = [expected["target_1"], expected["target_2"]]
        outputs = pretraining(expected["pixel_values"], target_pixel_values=targets, noise=expected["noise"])
    torch.testing.assert_close(outputs.loss, expected["loss"])

    encoder = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    assert type(encoder).__name__ == "MiramModel"
    with torch.no_grad():
        features = encoder(expected["pixel_values"], noise=expected["noise"]).last_hidden_state
    torch.testing.assert_close(features, expected["features"])

    classifier = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True, num_labels=3)
    assert type(classifier).__name__ == "MiramForImageClassification"
    assert classifier(expected["pixel_values"]).logits.shape == (2, 3)
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    assert type(processor).__module__.startswith("transformers_modules"), type(processor).__module__
    inputs = processor(expected["raw_image"].numpy())
    torch.testing.assert_close(inputs["pixel_values"], expected["processed"])
    assert [t.shape[-1] for t in inputs["target_pixel_values"]] == [32, 64]
    print("remote code OK")
    """
)


def test_saved_folder_loads_without_the_package(tmp_path):
    config = tiny_miram_config(decoder_attention=["sdpa", "nystromformer"])
    model = MiramForPreTraining(config).eval()
    folder = tmp_path / "miram"
    model.save_pretrained(folder)
    processor = MammographyImageProcessor(size={"height": 32, "width": 32}, scales=[1, 2], num_channels=3)
    processor.save_pretrained(folder)
    raw_image = torch.randint(0, 4096, (40, 30), dtype=torch.int32)

    pixel_values = torch.randn(2, 3, 32, 32)
    targets = [torch.randn(2, 3, 32, 32), torch.randn(2, 3, 64, 64)]
    noise = torch.rand(2, 16)
    with torch.no_grad():
        loss = model(pixel_values, target_pixel_values=targets, noise=noise).loss
        features = model.miram(pixel_values, noise=noise).last_hidden_state
    expected = dict(pixel_values=pixel_values, target_1=targets[0], target_2=targets[1], noise=noise)
    processed = processor(raw_image.numpy())["pixel_values"]
    outputs = {**expected, "loss": loss, "features": features, "raw_image": raw_image, "processed": processed}
    save_file(outputs, tmp_path / "expected.safetensors")

    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder), str(tmp_path / "expected.safetensors")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "remote code OK" in result.stdout
