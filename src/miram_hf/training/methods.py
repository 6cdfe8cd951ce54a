"""The self-supervised methods `scripts/pretrain.py` runs, one record each. Adding a method is adding its model
classes (registered with the Auto classes, as every family here) and one `PretrainingMethod` in `METHODS`: the script
reads what is particular to a method (its views, its per-step work, what it measures, its card) from the record."""

from collections.abc import Callable
from dataclasses import dataclass, field

from transformers import PretrainedConfig, PreTrainedModel

from ..processing import MammographyImageProcessor
from .monitoring import ReconstructionMonitor, TrainingMonitor, preview_batch
from .seeding import mask_noise
from .views import MultiViewCollator, PretrainingCollator

MAE_CITATION = (
    'K. He, X. Chen, S. Xie, Y. Li, P. Dollár and R. Girshick, "Masked autoencoders are scalable vision learners", '
    "CVPR 2022."
)
# the card's block for a model whose pretraining folder is no ready encoder (the template's is MIRAM's features)
PRETRAINING_MODEL_USAGE = {"auto_class": "AutoModelForPreTraining", "pipeline_task": None}


@dataclass(frozen=True)
class Objective:
    """What a method learns from, and what that asks of the training loop: its loader's collator, work before and
    after each optimizer step, the model's inputs of each micro-batch, what to measure besides the loss, and models to
    export next to the pretrained one. The defaults do nothing."""

    def collator(
        self, processor: MammographyImageProcessor, config: PretrainedConfig, seed: int, crop_scale: list[float],
        num_local_crops: int,
    ) -> Callable[[list[dict]], dict]:  # fmt: skip
        raise NotImplementedError

    def augmentation(self, crop_scale: list[float], num_local_crops: int) -> str:
        """The card's line on the views."""
        raise NotImplementedError

    def start_step(self, model: PreTrainedModel, step: int, max_steps: int) -> None:
        """Before step `step` (1-based) of `max_steps`."""

    def inputs(
        self, batch: dict, config: PretrainedConfig, seed: int, step: int, process: int, micro_batch: int
    ) -> dict:
        """The model's inputs for micro-batch `micro_batch` of step `step` on process `process`."""
        return batch

    def end_step(self, model: PreTrainedModel) -> None:
        """After the optimizer step."""

    def monitor(self, config: PretrainedConfig, preview_rows, processor: MammographyImageProcessor) -> TrainingMonitor:
        """What the loop measures besides the loss (`preview_rows`: held-out rows to measure on)."""
        return TrainingMonitor()

    def exported_models(self, model: PreTrainedModel) -> dict[str, PreTrainedModel]:
        """Models saved next to the pretrained one, by subfolder."""
        return {}


@dataclass(frozen=True)
class WholeImages(Objective):
    """Whole images, unaugmented (the VAE, as its paper trained it)."""

    def collator(self, processor, config, seed, crop_scale, num_local_crops):
        return PretrainingCollator(processor, seed, augment=False, crop_scale=crop_scale)

    def augmentation(self, crop_scale, num_local_crops):
        return "none"


@dataclass(frozen=True)
class MaskedPatches(Objective):
    """Masked image modelling (MIRAM, MAE): MAE's random resized crop and flip, masking noise drawn per micro-batch from
    (seed, step, process, micro-batch), and each scale's reconstruction measured against the visible-mean baseline and
    drawn on held-out images."""

    def collator(self, processor, config, seed, crop_scale, num_local_crops):
        return PretrainingCollator(processor, seed, augment=True, crop_scale=crop_scale)

    def augmentation(self, crop_scale, num_local_crops):
        return f"random resized crop {crop_scale} + flip"

    def inputs(self, batch, config, seed, step, process, micro_batch):
        noise = mask_noise(batch["pixel_values"], config.patch_size, seed, step, process, micro_batch)
        return {**batch, "noise": noise}

    def monitor(self, config, preview_rows, processor):
        return ReconstructionMonitor(config, preview_batch(preview_rows, processor))


@dataclass(frozen=True)
class Views(Objective):
    """Joint embedding (BYOL, DINO, MoCo v3, SimCLR, SwAV): augmented views of each image, two global ones and, with
    `multi_crop`, local ones; the models' schedules (teacher momentum, temperatures) set before each step and their
    teachers moved after it; the backbone exported as a ready classifier for fine-tuning."""

    multi_crop: bool = False

    def collator(self, processor, config, seed, crop_scale, num_local_crops):
        patch = getattr(config, "patch_size", None) or 1  # DINO's local crops: 96 px for 224 px global ones
        local_size = max(patch, round(config.image_size * 96 / 224 / patch) * patch)
        num_local = num_local_crops if self.multi_crop else 0
        return MultiViewCollator(processor, seed, num_local=num_local, crop_scale=crop_scale, local_size=local_size)

    def augmentation(self, crop_scale, num_local_crops):
        crops = f"2 global views + {num_local_crops} local" if self.multi_crop else "2 views"
        return f"{crops}: random resized crop {crop_scale} + flips + gamma + contrast"

    def start_step(self, model, step, max_steps):
        model.start_training_step(step, max_steps)

    def end_step(self, model):
        model.update_teachers()

    def exported_models(self, model):
        return {"backbone": model.backbone_for_image_classification()}


@dataclass(frozen=True)
class PretrainingMethod:
    """One method: `name` (`--model_type`), the transformers `model_type` of its config, what it `learns_from`
    (`WholeImages`, `MaskedPatches` or `Views`: the views, per-step work and measurements), and its model card's
    `architecture` line, `citations` and loading block (`card_usage`, the template's when empty)."""

    name: str
    model_type: str
    learns_from: Objective
    architecture: str
    citations: tuple[str, ...]
    card_usage: dict = field(default_factory=dict)

    @property
    def masked(self) -> bool:
        return isinstance(self.learns_from, MaskedPatches)


JOINT_EMBEDDING_USAGE = {
    **PRETRAINING_MODEL_USAGE,
    "usage": "classifier = model.backbone_for_image_classification(num_labels=2)  # or the backbone/ folder",
}
METHODS = {
    method.name: method
    for method in (
        PretrainingMethod(
            "miram", "miram", MaskedPatches(),
            "MIRAM: a ViT masked autoencoder with one decoder per reconstruction scale",
            ("MIRAM: Masked Image Reconstruction Across Multiple Scales for Breast Lesion Risk Prediction (cite the "
             "paper as published).", MAE_CITATION),
        ),
        PretrainingMethod(
            "mae", "vit_mae", MaskedPatches(), "MAE: transformers' ViTMAE masked autoencoder", (MAE_CITATION,),
            card_usage={"usage": "model.config.mask_ratio = 0.0  # every patch\n"
                        'features = model(**processor("mammogram.dcm")).last_hidden_state', "pipeline_task": None},
        ),
        PretrainingMethod(
            "byol", "byol", Views(),
            "BYOL: an online network regressing a moving-average target's projection of the other view",
            ('J.-B. Grill et al., "Bootstrap your own latent: a new approach to self-supervised learning", '
             "NeurIPS 2020.",),
            card_usage=JOINT_EMBEDDING_USAGE,
        ),
        PretrainingMethod(
            "dino", "dino", Views(multi_crop=True),
            "DINO: self-distillation from a moving-average teacher across multi-crop views",
            ('M. Caron et al., "Emerging properties in self-supervised vision transformers", ICCV 2021.',),
            card_usage=JOINT_EMBEDDING_USAGE,
        ),
        PretrainingMethod(
            "mocov3", "mocov3", Views(), "MoCo v3: InfoNCE between predicted queries and a momentum encoder's keys",
            ('X. Chen, S. Xie and K. He, "An empirical study of training self-supervised vision transformers", '
             "ICCV 2021.",),
            card_usage=JOINT_EMBEDDING_USAGE,
        ),
        PretrainingMethod(
            "simclr", "simclr", Views(), "SimCLR: NT-Xent between the projections of two views",
            ('T. Chen, S. Kornblith, M. Norouzi and G. Hinton, "A simple framework for contrastive learning of '
             'visual representations", ICML 2020.',),
            card_usage=JOINT_EMBEDDING_USAGE,
        ),
        PretrainingMethod(
            "swav", "swav", Views(multi_crop=True),
            "SwAV: swapped prediction of Sinkhorn-Knopp cluster codes across multi-crop views",
            ('M. Caron et al., "Unsupervised learning of visual features by contrasting cluster assignments", '
             "NeurIPS 2020.",),
            card_usage=JOINT_EMBEDDING_USAGE,
        ),
        PretrainingMethod(
            "vae", "mammo_vae", WholeImages(),
            "VAE-SSL: a convolutional VAE whose latent (mu, sigma, z) a 228-parameter classifier reads",
            ("The VAE-based self-supervised model for limited-sample mammogram classification (cite the paper as "
             "published).",),
            card_usage={**PRETRAINING_MODEL_USAGE,
                        "usage": 'outputs = model(**processor("mammogram.dcm"))  # reconstruction, mu, logvar, z\n'
                        "# AutoModelForImageClassification.from_pretrained(..., num_labels=4): the 228-parameter "
                        "classifier"},
        ),
    )
}  # fmt: skip


def pretraining_method(name: str) -> PretrainingMethod:
    """The method `--model_type name` runs."""
    if name not in METHODS:
        raise ValueError(f"Unknown model_type {name!r}; choose one of {sorted(METHODS)}.")
    return METHODS[name]


def citations_for(model_type: str) -> list[str]:
    """What to cite for a model whose config has transformers' `model_type` (a classifier of a method's family), or
    nothing for a model no method here made (a ViT or ResNet baseline)."""
    return next((list(method.citations) for method in METHODS.values() if method.model_type == model_type), [])


__all__ = [
    "METHODS",
    "MaskedPatches",
    "Objective",
    "PretrainingMethod",
    "Views",
    "WholeImages",
    "citations_for",
    "pretraining_method",
]
