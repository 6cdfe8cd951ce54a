"""transformers pipelines on mammograms: DICOM paths and 16-bit arrays go to the processor as they are."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import WITHOUT_MIRAM_HF
from dicom_factory import breast_image, cbis_ddsm_dicom
from safetensors.torch import save_file
from tiny_configs import tiny_miram_config
from transformers import ViTConfig, ViTForImageClassification, pipeline

from miram_hf import (
    MammographyImageClassificationPipeline,
    MammographyImageFeatureExtractionPipeline,
    MammographyImageProcessor,
    MiramForImageClassification,
    MiramForPreTraining,
    MiramModel,
    add_remote_pipelines,
)


@pytest.fixture
def mammograms(tmp_path):
    return [str(cbis_ddsm_dicom(tmp_path / "1-1.dcm")), breast_image(seed=1)]


def save_with_processor(model, path):
    model.save_pretrained(path)
    MammographyImageProcessor(size={"height": 32, "width": 32}, scales=[1, 2]).save_pretrained(path)
    return path


def test_image_classification_on_dicom_paths_and_arrays(tmp_path, mammograms):
    config = tiny_miram_config(num_channels=1, num_labels=2, id2label={0: "benign", 1: "malignant"})
    folder = save_with_processor(MiramForImageClassification(config).eval(), tmp_path / "classifier")
    classifier = pipeline("image-classification", model=str(folder))
    assert isinstance(classifier, MammographyImageClassificationPipeline)
    results = classifier(mammograms)
    assert [sorted(r["label"] for r in result) for result in results] == [["benign", "malignant"]] * 2
    assert all(sum(r["score"] for r in result) == pytest.approx(1.0) for result in results)
    # the DICOM result is the model on the processor's output for that file
    pixel_values = classifier.image_processor(mammograms[0], scales=[1])["pixel_values"]
    expected = classifier.model(pixel_values).logits.softmax(-1)
    top = max(results[0], key=lambda r: r["score"])
    assert top["score"] == pytest.approx(expected.max().item(), abs=1e-5)


def test_image_feature_extraction_sees_every_patch(tmp_path, mammograms):
    folder = save_with_processor(MiramForPreTraining(tiny_miram_config(num_channels=1)), tmp_path / "pretrained")
    extractor = pipeline("image-feature-extraction", model=str(folder))
    assert isinstance(extractor, MammographyImageFeatureExtractionPipeline)
    assert isinstance(extractor.model, MiramModel)
    features = extractor(mammograms[0], return_tensors=True)
    assert features.shape == (1, 17, 32)  # CLS + all 16 patches: no masking
    pixel_values = extractor.image_processor(mammograms[0], scales=[1])["pixel_values"]
    with torch.no_grad():
        expected = extractor.model(pixel_values, mask_ratio=0.0).last_hidden_state
    torch.testing.assert_close(features, expected)
    assert torch.tensor(extractor(mammograms[1])).shape == (1, 17, 32)


CHILD = WITHOUT_MIRAM_HF + textwrap.dedent(
    """
    hide_miram_hf()

    import torch
    from safetensors.torch import load_file
    from transformers import pipeline

    folder, dicom, expected = sys.argv[1], sys.argv[2], load_file(sys.argv[3])
    classifier = pipeline("image-classification", model=folder, trust_remote_code=True)
    assert type(classifier).__name__ == "MammographyImageClassificationPipeline", type(classifier)
    assert type(classifier).__module__.startswith("transformers_modules"), type(classifier).__module__
    top = classifier(dicom)[0]
    torch.testing.assert_close(torch.tensor(top["score"]), expected["probabilities"].max(), atol=1e-5, rtol=0)
    extractor = pipeline("image-feature-extraction", model=folder, trust_remote_code=True)
    features = extractor(dicom, return_tensors=True)
    torch.testing.assert_close(features, expected["features"], atol=1e-5, rtol=0)
    print("pipelines OK")
    """
)


def test_pipelines_run_from_a_saved_folder_without_the_package(tmp_path, mammograms):
    config = tiny_miram_config(num_channels=1, num_labels=2, id2label={0: "benign", 1: "malignant"})
    model = MiramForImageClassification(config).eval()
    folder = save_with_processor(model, tmp_path / "classifier")
    assert add_remote_pipelines(folder) == ["image-classification", "image-feature-extraction"]
    assert (folder / "pipeline_mammography.py").exists()
    pipelines = json.loads((folder / "config.json").read_text())["custom_pipelines"]
    assert pipelines["image-classification"] == {
        "impl": "pipeline_mammography.MammographyImageClassificationPipeline",
        "pt": ["AutoModelForImageClassification"],
    }
    processor = MammographyImageProcessor.from_pretrained(folder)
    pixel_values = processor(mammograms[0], scales=[1])["pixel_values"]
    with torch.no_grad():
        expected = {"probabilities": model(pixel_values).logits.softmax(-1)[0],
                    "features": model.miram(pixel_values, mask_ratio=0.0).last_hidden_state}  # fmt: skip
    save_file(expected, tmp_path / "expected.safetensors")
    environment = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder), mammograms[0], str(tmp_path / "expected.safetensors")],
        capture_output=True, text=True, env=environment, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pipelines OK" in result.stdout
    # with the package too, a folder that carries its pipelines runs them only with trust_remote_code=True
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        pipeline("image-classification", model=str(folder))
    assert isinstance(
        pipeline("image-classification", model=str(folder), trust_remote_code=True).model, torch.nn.Module
    )


def test_an_exported_vit_backbone_gets_the_pipelines_too(tmp_path):
    backbone = ViTConfig(image_size=32, patch_size=8, num_channels=1, hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64)  # fmt: skip
    ViTForImageClassification(backbone).save_pretrained(tmp_path)
    assert add_remote_pipelines(tmp_path) == ["image-classification", "image-feature-extraction"]
    (tmp_path / "ssl").mkdir()
    (tmp_path / "ssl" / "config.json").write_text(json.dumps({"model_type": "byol", "auto_map": {
        "AutoModelForPreTraining": "modeling_byol.ByolForPreTraining"}}))  # fmt: skip
    assert add_remote_pipelines(tmp_path / "ssl") == []  # a pretraining head serves neither task
