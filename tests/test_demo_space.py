"""The demo Space (spaces/miram-demo/app.py): its functions on a DICOM for each kind of model, and its HTTP API
through gradio_client against the app launched here."""

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from dicom_factory import cbis_ddsm_dicom
from tiny_configs import tiny_miram_config
from transformers import ViTConfig

from miram_hf import MammographyImageProcessor, MiramForImageClassification, MiramForPreTraining
from miram_hf.modeling.mil import MilConfig, MilForImageClassification

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
gradio_client = pytest.importorskip("gradio_client")
APP = Path(__file__).parents[1] / "spaces" / "miram-demo" / "app.py"
spec = importlib.util.spec_from_file_location("space_app", APP)
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)


def saved(model, folder: Path, size: int, **processor_options) -> Path:
    model.save_pretrained(folder)
    MammographyImageProcessor(size={"height": size, "width": size}, **processor_options).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("space")
    torch.manual_seed(0)
    labels = {"id2label": {0: "benign", 1: "malignant"}, "label2id": {"benign": 0, "malignant": 1}}
    vit = ViTConfig(image_size=16, patch_size=8, num_channels=1, hidden_size=32, num_hidden_layers=1,
                    num_attention_heads=2, intermediate_size=64)  # fmt: skip
    mil = MilForImageClassification(MilConfig(backbone_config=vit, attention_hidden_size=8, tile_size=16, **labels))
    return {
        "pretraining": saved(
            MiramForPreTraining(tiny_miram_config(num_channels=1)), root / "pretrain", 32, scales=[1, 2]
        ),  # fmt: skip
        "classifier": saved(
            MiramForImageClassification(tiny_miram_config(num_channels=1, **labels)), root / "classifier", 32
        ),  # fmt: skip
        "mil": saved(mil, root / "mil", 64),
        "dicom": cbis_ddsm_dicom(root / "mammogram.dcm"),
    }


def test_a_pretraining_folder_shows_the_masked_input_and_every_scales_reconstruction(folders):
    demo = app.load(str(folders["pretraining"]))
    processed, reconstructions, probabilities, heatmap = app.analyse(str(folders["dicom"]), demo)
    assert demo.kind == "pretraining" and processed.size == (32, 32) and processed.mode == "L"
    assert reconstructions.size[0] > 3 * reconstructions.size[1]  # input | masked | x1 | x2 side by side
    assert probabilities is None and heatmap is None


def test_a_classifier_shows_its_probabilities_and_a_mil_model_its_tile_attention(folders):
    _, _, probabilities, heatmap = app.analyse(str(folders["dicom"]), app.load(str(folders["classifier"])))
    assert set(probabilities) == {"benign", "malignant"} and sum(probabilities.values()) == pytest.approx(1)
    assert heatmap is None
    demo = app.load(str(folders["mil"]))
    _, _, probabilities, heatmap = app.analyse(str(folders["dicom"]), demo)
    assert demo.kind == "mil" and sum(probabilities.values()) == pytest.approx(1) and heatmap.size[0] > 100


def test_the_apps_http_api_answers_through_gradio_client(folders):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    interface = app.interface(app.load(str(folders["classifier"])))
    interface.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
        processed, reconstructions, label, heatmap = client.predict(
            gradio_client.handle_file(str(folders["dicom"])), api_name="/predict"
        )
        assert Path(processed).is_file() and reconstructions is None and heatmap is None
        assert label["label"] in ("benign", "malignant")
        assert {item["label"] for item in label["confidences"]} == {"benign", "malignant"}
    finally:
        interface.close()


def test_the_space_folder_with_make_spaces_wheel_installs_miram_hf_without_pypi(tmp_path):
    """miram_hf is not on PyPI: the Space's requirements.txt finds the wheel `make space` puts next to app.py."""
    space = tmp_path / "space"
    shutil.copytree(APP.parent, space, ignore=shutil.ignore_patterns("*.whl", "*.png"))
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", str(space),
                    str(APP.parents[2])], check=True, capture_output=True, timeout=300)  # fmt: skip
    lines = (space / "requirements.txt").read_text().splitlines()
    (space / "offline.txt").write_text("\n".join(line for line in lines if not line.startswith("gradio")))
    install = [*pip, "install", "--dry-run", "--ignore-installed", "--no-deps", "--no-index", "-r", "offline.txt"]
    result = subprocess.run(install, cwd=space, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Would install miram_hf-" in result.stdout
