"""--push_to_hub pushes a complete repository, and what it pushed loads by its Hub id from an offline cache, with the
package and, in a process that cannot import it, through the remote code."""

import hashlib
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import WITHOUT_MIRAM_HF, record_hub_commits
from tiny_configs import tiny_miram_config

SCRIPT = Path(__file__).parents[1] / "scripts" / "pretrain.py"
spec = importlib.util.spec_from_file_location("pretrain_script_for_hub", SCRIPT)
pretrain = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pretrain)

REPO_ID = "org/miram-vitb"
LOAD = WITHOUT_MIRAM_HF + textwrap.dedent(
    """
    remote = sys.argv[1] == "remote"
    if remote:
        hide_miram_hf()
    else:
        import miram_hf  # noqa: F401

    import numpy as np
    import torch
    from safetensors.torch import load_file
    from transformers import AutoImageProcessor, AutoModel, AutoModelForPreTraining
    from huggingface_hub import hf_hub_download

    options = {"trust_remote_code": True} if remote else {}
    model = AutoModel.from_pretrained("org/miram-vitb", **options).eval()
    pretraining = AutoModelForPreTraining.from_pretrained("org/miram-vitb", **options)
    processor = AutoImageProcessor.from_pretrained("org/miram-vitb", **options)
    print(type(model).__name__, type(model).__module__.split(".")[0], type(processor).__name__)
    pushed = load_file(hf_hub_download("org/miram-vitb", "model.safetensors"))
    assert torch.equal(model.layers[0].mlp.fc1.weight, pushed["miram.layers.0.mlp.fc1.weight"])
    assert torch.equal(pretraining.decoders[1].decoder_pred.weight, pushed["decoders.1.decoder_pred.weight"])
    image = np.random.default_rng(0).integers(0, 4096, (80, 60)).astype(np.uint16)
    with torch.no_grad():
        features = model(**{"pixel_values": processor(image)["pixel_values"]}, mask_ratio=0.0).last_hidden_state
    assert features.shape == (1, 17, 32) and torch.isfinite(features).all()
    print("loaded OK")
    """
)


def lay_out_hub_cache(hf_home: Path, repo_id: str, files: dict[str, bytes], commit: str = "c" * 40) -> None:
    """The cache huggingface_hub writes on download: blobs by sha256, a snapshot of links, refs/main."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    for name, content in files.items():
        digest = hashlib.sha256(content).hexdigest()
        blob = repo / "blobs" / digest
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        link = repo / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    tiny_miram_config(num_channels=1, decoder_attention=["sdpa", "nystromformer"]).save_pretrained(root / "config")
    with pytest.MonkeyPatch.context() as patch:
        commits = record_hub_commits(patch)
        pretrain.main(
            ["--model_config", str(root / "config"), "--output_dir", str(root / "out"), "--cache_dir",
             str(root / "cache"), "--num_images", "8", "--per_device_train_batch_size", "4", "--max_steps", "2",
             "--report_to", "none", "--push_to_hub", "--hub_model_id", REPO_ID]
        )  # fmt: skip
    return root, commits


def test_push_uploads_weights_config_processor_remote_code_and_card(pushed):
    _, commits = pushed
    assert len(commits) == 1 and commits[0]["repo_id"] == REPO_ID
    files = commits[0]["files"]
    assert {
        "model.safetensors", "config.json", "preprocessor_config.json", "README.md", "reconstruction.png",
        "configuration_miram.py", "modeling_miram.py", "linear_attention_miram.py",
        "image_processing_mammography.py", "reading.py",
    } <= set(files)  # fmt: skip
    assert not [name for name in files if name.startswith(("checkpoints/", "runs/")) or name.endswith(".bin")]
    assert b"model-index" not in files["README.md"] and b"Research use only" in files["README.md"]
    assert b"org/miram-vitb" in files["README.md"]


@pytest.mark.parametrize("route", ["package", "remote"])
def test_the_pushed_repository_loads_by_id_offline(pushed, tmp_path, route):
    _, commits = pushed
    lay_out_hub_cache(tmp_path / "hf_home", REPO_ID, commits[0]["files"])
    environment = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", LOAD, route], capture_output=True, text=True, env=environment, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected_module = "transformers_modules" if route == "remote" else "miram_hf"
    assert f"MiramModel {expected_module} MammographyImageProcessor" in result.stdout
    assert "loaded OK" in result.stdout
