"""Whether pretraining learned anything: each reconstruction scale's loss against a trivial predictor on the same
masks, and a probe of the encoder's features on a labelled held-out set against the randomly initialised encoder."""

from collections.abc import Callable
from pathlib import Path

import datasets
import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import send_to_device
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from transformers import PretrainedConfig, PreTrainedModel

from ..metrics import Accuracy, RocAuc
from ..modeling.miram.modeling_miram import MiramForPreTraining, duplicate_tokens, patch_targets
from ..processing import MammographyImageProcessor
from ..visualization import save_reconstruction
from .seeding import mask_noise
from .views import PretrainingCollator


@torch.no_grad()
def visible_mean_losses(
    config: PretrainedConfig,
    pixel_values: torch.Tensor,
    target_pixel_values: list[torch.Tensor] | None,
    mask: torch.Tensor,
) -> torch.Tensor:
    """(num_scales,): the masked-patch loss, per scale, of predicting every masked patch as the mean of the image's
    visible target pixels, on the masks a model drew (`mask`, 1 = masked, at the encoder's grid). A reconstruction
    loss near this baseline means the decoder learned no more than each image's brightness.

    Works for MIRAM (`config.scales`, one target per scale) and for MAE (one scale, the input itself); targets are
    normalised per patch as the model's loss normalises them (`norm_pix_loss`)."""
    scales = getattr(config, "scales", None) or [1]
    targets = target_pixel_values if target_pixel_values is not None else [pixel_values]
    if len(targets) != len(scales):
        raise ValueError(f"{len(targets)} target images for scales {scales}: pass one per scale.")
    grid = (pixel_values.shape[-2] // config.patch_size, pixel_values.shape[-1] // config.patch_size)
    losses = []
    for scale, target in zip(scales, targets, strict=True):
        patches = patch_targets(target.float(), config.patch_size, config.norm_pix_loss)  # (batch, patches, pixels)
        masked = duplicate_tokens(mask.float().unsqueeze(-1), grid, scale)  # (batch, patches, 1)
        visible = 1 - masked
        mean = (patches * visible).sum((1, 2)) / (visible.sum((1, 2)) * patches.shape[-1]).clamp(min=1)
        error = ((patches - mean[:, None, None]) ** 2).mean(-1, keepdim=True)
        losses.append((error * masked).sum() / masked.sum().clamp(min=1))
    return torch.stack(losses)


def scale_losses(outputs) -> torch.Tensor:
    """(num_scales,): MIRAM's per-scale losses, or MAE's one loss."""
    losses = getattr(outputs, "scale_losses", None)
    return losses if losses is not None else outputs.loss.reshape(1)


class TrainingMonitor:
    """What the pretraining loop measures besides the loss, fed each micro-batch's outputs, summarised at each log
    step and run at each checkpoint: nothing, for a method without a measure of its own."""

    def update(self, batch: dict, outputs) -> None:
        """After a micro-batch's forward pass."""

    def summary(self, reduce: Callable[[torch.Tensor], torch.Tensor] = lambda tensor: tensor) -> dict[str, float]:
        """At a log step: what to log with the loss, each value averaged by `reduce` (e.g. across processes)."""
        return {}

    def at_checkpoint(self, accelerator: Accelerator, model, path: Path, seed: int, step: int, progress: dict) -> None:
        """At a checkpoint and at the end: measurements on held-out images, and their picture at `path`."""


class ReconstructionMonitor(TrainingMonitor):
    """Each scale's masked-patch loss next to the visible-mean baseline's (`visible_mean_losses`) on the same masks,
    averaged over the micro-batches since the last `summary()`: the ratio tells whether the decoder learned more than
    each image's brightness (near 1: nothing). With a `preview` batch (`preview_batch`), each checkpoint measures the
    same on it with fixed masks and draws its reconstructions."""

    def __init__(self, config: PretrainedConfig, preview: dict | None = None):
        self.config, self.preview = config, preview
        self.scales = getattr(config, "scales", None) or [1]
        self.losses, self.baselines = [], []

    def update(self, batch: dict, outputs) -> None:
        self.losses.append(scale_losses(outputs).detach().float())
        self.baselines.append(visible_mean_losses(self.config, batch["pixel_values"],
                                                  batch.get("target_pixel_values"), outputs.mask))  # fmt: skip

    def summary(self, reduce=lambda tensor: tensor) -> dict[str, float]:
        """`loss_scale_<f>`, `baseline_scale_<f>`, `ratio_scale_<f>` over the window, each averaged by `reduce`
        (e.g. across processes); the window starts again."""
        losses, baselines = (reduce(torch.stack(values).mean(0)) for values in (self.losses, self.baselines))
        self.losses, self.baselines = [], []
        results = {}
        for scale, loss, baseline in zip(self.scales, losses.tolist(), baselines.tolist(), strict=True):
            results |= {f"loss_scale_{scale}": loss, f"baseline_scale_{scale}": baseline,
                        f"ratio_scale_{scale}": loss / baseline if baseline > 0 else float("nan")}  # fmt: skip
        return results

    @torch.no_grad()
    def at_checkpoint(self, accelerator: Accelerator, model, path: Path, seed: int, step: int, progress: dict) -> None:
        """Measure each scale's loss against the visible-mean baseline on the preview batch (masks drawn from `seed`
        alone), add it to `progress["held_out_history"]` and the trackers, and save the reconstructions of its first
        images at `path`. Every process runs the forward pass (with FSDP each holds a shard of the weights); the main
        process draws."""
        if self.preview is None:
            return
        unwrapped = accelerator.unwrap_model(model)
        model.eval()
        preview = send_to_device(self.preview, accelerator.device)
        outputs = model(**preview, noise=mask_noise(preview["pixel_values"], self.config.patch_size, seed, step=0))
        model.train()
        measuring = ReconstructionMonitor(self.config)
        measuring.update(preview, outputs)
        measured = measuring.summary()
        history = progress["held_out_history"]
        if history[-1:] and history[-1]["step"] == step:
            history.pop()  # measured again at the end of the run
        history.append({"step": step, **measured})
        accelerator.log({f"held_out/{key}": value for key, value in measured.items()}, step=step)
        if accelerator.is_main_process:
            save_reconstruction(unwrapped, preview["pixel_values"], outputs, path, preview.get("target_pixel_values"))
            log_picture(accelerator.trackers, "reconstruction", path, step)


def preview_batch(rows: datasets.Dataset | datasets.IterableDataset, processor: MammographyImageProcessor,
                  size: int = 64) -> dict:  # fmt: skip
    """The first `size` rows, unaugmented: what the reconstructions are measured on at every checkpoint (the first
    four are drawn)."""
    if isinstance(rows, datasets.IterableDataset):
        rows = list(rows.take(size))
    else:
        rows = rows.select(range(min(size, len(rows))))
    return PretrainingCollator(processor, augment=False)(list(rows))


def format_ratios(results: dict[str, float]) -> str:
    """`1x 0.42, 2x 0.37`: the loss / baseline ratio of each scale."""
    return ", ".join(f"{key.removeprefix('ratio_scale_')}x {value:.2f}" for key, value in results.items()
                     if key.startswith("ratio_scale_"))  # fmt: skip


def feature_extractor(model: PreTrainedModel) -> PreTrainedModel:
    """What a probe of a pretraining model scores: the classifier that fine-tuning starts from
    (`backbone_for_image_classification`: MIRAM's encoder, a joint-embedding method's exported backbone) with no
    head, so that its logits are the pooled features a head would read. transformers' ViTMAE is fine-tuned here as
    MIRAM's classifier, so it is probed as one."""
    if model.config.model_type == "vit_mae":
        model = MiramForPreTraining.from_vit_mae(model, scales=[1], decoder_attention=["sdpa"])
    if not hasattr(model, "backbone_for_image_classification"):
        raise ValueError(f"A {model.config.model_type} model has no pooled-feature encoder to probe.")
    return model.backbone_for_image_classification(num_labels=0).eval()


class RepresentationProbe:
    """Scores an encoder's features on a labelled held-out set: a k-NN classifier and a logistic-regression linear
    probe (scikit-learn, on standardised features), cross-fitted over the set's patients (`folds` folds, stratified
    by the label, seeded: each row is scored by a probe fitted on the other folds), as accuracy and macro ROC AUC
    over every row with bootstrap 95% intervals.

    The images are processed once, unaugmented, at the model's input (`processor`); each call runs the encoder over
    them with nothing masked. Call it on the randomly initialised encoder for the reference.

        probe = RepresentationProbe(rows, "label_pathology", processor)
        probe(feature_extractor(model))  # {"linear_accuracy": ..., "linear_accuracy_ci_low": ..., "knn_roc_auc": ...}
    """

    def __init__(
        self,
        rows: datasets.Dataset,
        label_column: str,
        processor: MammographyImageProcessor,
        folds: int = 5,
        seed: int = 0,
        neighbours: int = 10,
        n_bootstrap: int = 200,
        batch_size: int = 64,
    ):
        rows = rows.filter(lambda label: label >= 0, input_columns=label_column)  # background crops carry -1
        self.labels = np.array(rows[label_column])
        self.num_classes = rows.features[label_column].num_classes
        counts = np.bincount(self.labels, minlength=self.num_classes)
        if (counts > 0).sum() < 2 or counts[counts > 0].min() < folds:
            raise ValueError(f"{len(rows)} labelled rows ({counts.tolist()} by class of {label_column}) are too few "
                             f"for a {folds}-fold probe: give the held-out set more rows.")  # fmt: skip
        splitter = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
        self.folds = list(splitter.split(self.labels, self.labels, groups=rows["patient_id"]))
        self.neighbours, self.n_bootstrap, self.batch_size = neighbours, n_bootstrap, batch_size
        images = [np.asarray(image) for image in rows["image"]]
        self.pixel_values = processor(images, scales=[1], return_tensors="pt")["pixel_values"]

    def __len__(self) -> int:
        return len(self.labels)

    @torch.no_grad()
    def features(self, encoder: PreTrainedModel) -> np.ndarray:
        device = next(encoder.parameters()).device
        batches = self.pixel_values.split(self.batch_size)
        return torch.cat([encoder(pixel_values=batch.to(device)).logits.float().cpu() for batch in batches]).numpy()

    def __call__(self, encoder: PreTrainedModel) -> dict[str, float]:
        features = self.features(encoder)
        fewest_fitted = min(len(fit) for fit, _ in self.folds)  # a small held-out set fits fewer than `neighbours`
        classifiers = {
            "knn": KNeighborsClassifier(min(self.neighbours, fewest_fitted), weights="distance"),
            "linear": LogisticRegression(max_iter=2000),
        }
        results = {}
        for name, classifier in classifiers.items():
            scores = np.zeros((len(features), self.num_classes))
            for fit, held_out in self.folds:
                probe = make_pipeline(StandardScaler(), classifier).fit(features[fit], self.labels[fit])
                scores[np.ix_(held_out, probe.classes_)] = probe.predict_proba(features[held_out])
            for metric in (Accuracy("single_label"), RocAuc("single_label")):
                for key, value in metric.compute(predictions=scores.tolist(), references=self.labels.tolist(),
                                                 n_bootstrap=self.n_bootstrap).items():  # fmt: skip
                    results[f"{name}_{key}"] = value
        return results


def format_probe(results: dict[str, float]) -> str:
    """`linear accuracy 0.62 [0.51, 0.72], ...`: a probe's results on one line."""
    parts = []
    for name in ("linear_accuracy", "linear_roc_auc", "knn_accuracy", "knn_roc_auc"):
        if name in results:
            interval = f" [{results[name + '_ci_low']:.3f}, {results[name + '_ci_high']:.3f}]"
            parts.append(f"{name.replace('_', ' ', 1)} {results[name]:.3f}{interval}")
    return ", ".join(parts)


def log_picture(trackers: list, name: str, path: str | Path, step: int) -> None:
    """Log the PNG at `path` as `name` to every tracker that takes pictures, each in its own way: TensorBoard's and
    wandb's `log_images` (TensorBoard with the layout said, wandb wrapping each array itself), trackio's `log` of a
    `trackio.Image`. Trackers without pictures (e.g. CSV) are left out."""
    picture = np.array(Image.open(path).convert("RGB"))
    for tracker in trackers:
        if tracker.name == "tensorboard":
            tracker.log_images({name: picture[None]}, step=step, dataformats="NHWC")
        elif tracker.name == "wandb":
            tracker.log_images({name: [picture]}, step=step)
        elif tracker.name == "trackio":
            import trackio  # present whenever accelerate made a trackio tracker

            tracker.log({name: trackio.Image(str(path))}, step=step)


__all__ = [
    "ReconstructionMonitor",
    "RepresentationProbe",
    "TrainingMonitor",
    "feature_extractor",
    "format_probe",
    "format_ratios",
    "log_picture",
    "preview_batch",
    "scale_losses",
    "visible_mean_losses",
]
