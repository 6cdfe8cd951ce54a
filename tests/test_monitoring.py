"""What pretraining reports about what it learned: the visible-mean baseline of each reconstruction scale and the
representation probe."""

import datasets
import numpy as np
import pytest
import torch
from tiny_configs import tiny_miram_config, tiny_resnet_config, tiny_vit_mae_config
from transformers import ViTMAEConfig, ViTMAEForPreTraining

from miram_hf import (
    ByolConfig,
    ByolForPreTraining,
    MammographyImageProcessor,
    MammoVaeConfig,
    MammoVaeForPreTraining,
    MiramForPreTraining,
)
from miram_hf.training.monitoring import (
    ReconstructionMonitor,
    RepresentationProbe,
    feature_extractor,
    visible_mean_losses,
)


def direct_visible_mean_loss(target: torch.Tensor, mask: torch.Tensor, patch: int, scale: int) -> torch.Tensor:
    """The baseline, image by image and patch by patch: every masked patch of the scale-`scale` target predicted as
    the mean of the pixels of its visible patches."""
    total, count = 0.0, 0
    columns = target.shape[-1] // patch  # patches per row of the target
    grid_columns = columns // scale
    for image, image_mask in zip(target, mask, strict=True):
        patches = [image[:, r * patch : (r + 1) * patch, c * patch : (c + 1) * patch]
                   for r in range(target.shape[-2] // patch) for c in range(columns)]  # fmt: skip
        masked = [bool(image_mask[(index // columns // scale) * grid_columns + (index % columns) // scale])
                  for index in range(len(patches))]  # fmt: skip
        mean = torch.cat([p.flatten() for p, m in zip(patches, masked, strict=True) if not m]).mean()
        for p, m in zip(patches, masked, strict=True):
            if m:
                total += ((p - mean) ** 2).mean()
                count += 1
    return total / count


def test_the_visible_mean_baseline_matches_a_patch_by_patch_transcription_at_every_scale():
    config = tiny_miram_config(num_channels=1)  # 32 px, 8 px patches, scales 1 and 2
    pixel_values = torch.rand(3, 1, 32, 32)
    targets = [pixel_values, torch.rand(3, 1, 64, 64)]
    mask = (torch.rand(3, 16) < 0.75).float()
    mask[:, 0] = 0  # at least one visible patch
    baseline = visible_mean_losses(config, pixel_values, targets, mask)
    for index, scale in enumerate(config.scales):
        expected = direct_visible_mean_loss(targets[index], mask, config.patch_size, scale)
        torch.testing.assert_close(baseline[index], expected)
    constant = torch.full((2, 1, 32, 32), 0.3)  # nothing to predict beyond the brightness: no loss
    assert (
        visible_mean_losses(config, constant, [constant, torch.full((2, 1, 64, 64), 0.3)], mask[:2]).abs().max() < 1e-6
    )


def test_mae_has_one_scale_and_a_model_that_predicts_the_visible_mean_sits_at_ratio_one():
    config = ViTMAEConfig(image_size=32, patch_size=8, num_channels=1, norm_pix_loss=True)
    pixel_values = torch.rand(2, 1, 32, 32)
    mask = torch.zeros(2, 16)
    mask[:, 4:] = 1
    (baseline,) = visible_mean_losses(config, pixel_values, None, mask)
    assert baseline > 0.9  # normalised patches: predicting their visible mean (about 0) leaves their variance

    class Outputs:  # a decoder that learned nothing but the visible mean
        def __init__(self, loss):
            self.loss, self.mask = loss, mask

    monitor = ReconstructionMonitor(config)
    monitor.update({"pixel_values": pixel_values}, Outputs(baseline))
    monitor.update({"pixel_values": pixel_values}, Outputs(baseline / 2))
    summary = monitor.summary()
    assert set(summary) == {"loss_scale_1", "baseline_scale_1", "ratio_scale_1"}
    assert summary["ratio_scale_1"] == pytest.approx(0.75)  # the window's mean loss over its mean baseline
    assert monitor.losses == [] and monitor.baselines == []  # the next window starts empty


def probe_rows(count: int, informative: bool) -> datasets.Dataset:
    """`count` images of 20 patients, two labels; bright images are label 1 when `informative`."""
    rng = np.random.default_rng(0)
    labels = np.arange(count) % 2
    brightness = np.where(labels == 1, 0.7, 0.3) if informative else np.full(count, 0.5)
    images = [np.clip(rng.normal(level, 0.05, (16, 16)), 0, 1).astype(np.float32) for level in brightness]
    return datasets.Dataset.from_dict({
        "image": images, "label": labels.tolist(), "patient_id": [f"P{i % 20}" for i in range(count)],
    }).cast_column("label", datasets.ClassLabel(names=["a", "b"]))  # fmt: skip


class MeanEncoder(torch.nn.Module):
    """An 'encoder' whose one feature is the mean intensity."""

    def forward(self, pixel_values):
        return type("Outputs", (), {"logits": pixel_values.mean((1, 2, 3))[:, None]})

    def parameters(self):
        return iter([torch.zeros(1)])


def test_the_probe_scores_informative_features_high_and_uninformative_ones_at_chance():
    processor = MammographyImageProcessor(size={"height": 16, "width": 16}, do_breast_crop=False, do_flip=False)
    informative = RepresentationProbe(probe_rows(80, True), "label", processor, n_bootstrap=50)(MeanEncoder())
    assert informative["linear_accuracy"] > 0.95 and informative["knn_roc_auc"] > 0.95
    assert informative["linear_accuracy_ci_low"] <= informative["linear_accuracy"] <= 1
    chance = RepresentationProbe(probe_rows(80, False), "label", processor, n_bootstrap=50)(MeanEncoder())
    assert chance["linear_accuracy"] < 0.65 and chance["linear_accuracy_ci_low"] < 0.5  # no better than a coin
    with pytest.raises(ValueError, match="too few"):
        RepresentationProbe(probe_rows(6, True), "label", processor)
    smallest = RepresentationProbe(probe_rows(10, True), "label", processor, n_bootstrap=10)(MeanEncoder())
    assert smallest["knn_accuracy"] > 0.8  # 8 rows to fit each fold: k-NN asks for no more neighbours than that


def test_the_probe_reads_what_a_fine_tuning_head_would_read():
    miram = MiramForPreTraining(tiny_miram_config(num_channels=1)).eval()
    pixel_values = torch.rand(2, 1, 32, 32)
    features = feature_extractor(miram)(pixel_values=pixel_values).logits
    encoded = miram.miram(pixel_values, mask_ratio=0.0).last_hidden_state
    expected = torch.nn.functional.layer_norm(encoded[:, 1:].mean(1), (encoded.shape[-1],), eps=1e-12)
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=1e-4)  # MAE's mean-pooled, normalised tokens

    mae = ViTMAEForPreTraining(tiny_vit_mae_config())
    assert type(feature_extractor(mae)).__name__ == "MiramForImageClassification"
    backbone = tiny_resnet_config()
    byol = ByolForPreTraining(ByolConfig(backbone_config=backbone, projection_hidden_size=16, projection_size=8))
    assert feature_extractor(byol)(pixel_values=pixel_values).logits.shape == (2, 16)  # the pooled last stage
    with pytest.raises(ValueError, match="no pooled-feature encoder"):
        feature_extractor(MammoVaeForPreTraining(MammoVaeConfig(image_size=[32, 32], latent_size=8)))


def test_pictures_go_to_every_tracker_that_takes_them_each_in_its_own_way(tmp_path, monkeypatch):
    import sys
    import types

    from PIL import Image

    from miram_hf.training.monitoring import log_picture

    path = tmp_path / "reconstruction.png"
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(path)
    calls = []

    class Tracker:  # accelerate's trackers, as far as log_picture uses them
        def __init__(self, name: str):
            self.name = name

        def log_images(self, values, step, **kwargs):
            calls.append((self.name, "log_images", values, step, kwargs))

        def log(self, values, step, **kwargs):
            calls.append((self.name, "log", values, step, kwargs))

    trackio = types.ModuleType("trackio")
    trackio.Image = lambda source: ("trackio.Image", source)
    monkeypatch.setitem(sys.modules, "trackio", trackio)
    log_picture([Tracker(name) for name in ("tensorboard", "wandb", "trackio", "csv")], "reconstruction", path, 7)
    tensorboard, wandb, trackio_call = calls  # nothing for CSV
    assert tensorboard[2]["reconstruction"].shape == (1, 4, 6, 3) and tensorboard[4] == {"dataformats": "NHWC"}
    assert wandb[1] == "log_images" and wandb[2]["reconstruction"][0].shape == (4, 6, 3) and wandb[4] == {}
    assert trackio_call[1:4] == ("log", {"reconstruction": ("trackio.Image", str(path))}, 7)
