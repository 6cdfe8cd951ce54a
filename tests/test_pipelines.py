"""transformers pipelines on mammograms: DICOM paths and 16-bit arrays go to the processor as they are."""

import pytest
import torch
from conftest import tiny_miram_config
from dicom_factory import breast_image, cbis_ddsm_dicom
from transformers import pipeline

from miram_hf import (
    MammographyImageClassificationPipeline,
    MammographyImageFeatureExtractionPipeline,
    MammographyImageProcessor,
    MiramForImageClassification,
    MiramForPreTraining,
    MiramModel,
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
