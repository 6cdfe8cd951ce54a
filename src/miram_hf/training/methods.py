"""The self-supervised methods `scripts/pretrain.py` runs, one record each. Adding a method is adding its model
classes (registered with the Auto classes, as every family here) and one `PretrainingMethod` in `METHODS`: the script
reads what is particular to a method (its views, its per-step schedule, its card) from the record."""

from dataclasses import dataclass, field

from transformers import PreTrainedModel

MAE_CITATION = (
    'K. He, X. Chen, S. Xie, Y. Li, P. Dollár and R. Girshick, "Masked autoencoders are scalable vision learners", '
    "CVPR 2022."
)
# the card's block for a model whose pretraining folder is no ready encoder (the template's is MIRAM's features)
PRETRAINING_MODEL_USAGE = {"auto_class": "AutoModelForPreTraining", "pipeline_task": None}


@dataclass(frozen=True)
class PretrainingMethod:
    """One method: `name` (`--model_type`), the transformers `model_type` of its config, what it `learns_from` —
    "masked patches" (masking noise drawn per step, reconstructions drawn and measured), "views" (augmented views of
    each image, with the teacher and temperature schedules of the joint-embedding models) or "whole images"
    (unaugmented) — whether its views are `multi_crop` (2 global and local ones), and its model card's
    `architecture` line, `citations` and loading block (`card_usage`, the template's when empty)."""

    name: str
    model_type: str
    learns_from: str
    architecture: str
    citations: tuple[str, ...]
    multi_crop: bool = False
    card_usage: dict = field(default_factory=dict)

    @property
    def masked(self) -> bool:
        return self.learns_from == "masked patches"

    @property
    def joint_embedding(self) -> bool:
        return self.learns_from == "views"

    def start_step(self, model: PreTrainedModel, step: int, max_steps: int) -> None:
        """Before step `step`: the joint-embedding models set their schedules (teacher momentum, temperatures)."""
        if self.joint_embedding:
            model.start_training_step(step, max_steps)

    def end_step(self, model: PreTrainedModel) -> None:
        """After the optimizer step: the joint-embedding models move their teachers."""
        if self.joint_embedding:
            model.update_teachers()

    def augmentation(self, crop_scale: list[float], num_local_crops: int) -> str:
        """The card's line on the views."""
        if self.masked:
            return f"random resized crop {crop_scale} + flip"
        if not self.joint_embedding:
            return "none"
        crops = f"2 global views + {num_local_crops} local" if self.multi_crop else "2 views"
        return f"{crops}: random resized crop {crop_scale} + flips + gamma + contrast"


JOINT_EMBEDDING_USAGE = {
    **PRETRAINING_MODEL_USAGE,
    "usage": "classifier = model.backbone_for_image_classification(num_labels=2)  # or the backbone/ folder",
}
METHODS = {
    method.name: method
    for method in (
        PretrainingMethod(
            "miram", "miram", "masked patches",
            "MIRAM: a ViT masked autoencoder with one decoder per reconstruction scale",
            ("MIRAM: Masked Image Reconstruction Across Multiple Scales for Breast Lesion Risk Prediction (cite the "
             "paper as published).", MAE_CITATION),
        ),
        PretrainingMethod(
            "mae", "vit_mae", "masked patches", "MAE: transformers' ViTMAE masked autoencoder", (MAE_CITATION,),
            card_usage={"usage": "model.config.mask_ratio = 0.0  # every patch\n"
                        'features = model(**processor("mammogram.dcm")).last_hidden_state', "pipeline_task": None},
        ),
        PretrainingMethod(
            "byol", "byol", "views",
            "BYOL: an online network regressing a moving-average target's projection of the other view",
            ('J.-B. Grill et al., "Bootstrap your own latent: a new approach to self-supervised learning", '
             "NeurIPS 2020.",),
            card_usage=JOINT_EMBEDDING_USAGE,
        ),
        PretrainingMethod(
            "dino", "dino", "views", "DINO: self-distillation from a moving-average teacher across multi-crop views",
            ('M. Caron et al., "Emerging properties in self-supervised vision transformers", ICCV 2021.',),
            multi_crop=True, card_usage=JOINT_EMBEDDING_USAGE,
        ),
        PretrainingMethod(
            "mocov3", "mocov3", "views", "MoCo v3: InfoNCE between predicted queries and a momentum encoder's keys",
            ('X. Chen, S. Xie and K. He, "An empirical study of training self-supervised vision transformers", '
             "ICCV 2021.",),
            card_usage=JOINT_EMBEDDING_USAGE,
        ),
        PretrainingMethod(
            "simclr", "simclr", "views", "SimCLR: NT-Xent between the projections of two views",
            ('T. Chen, S. Kornblith, M. Norouzi and G. Hinton, "A simple framework for contrastive learning of '
             'visual representations", ICML 2020.',),
            card_usage=JOINT_EMBEDDING_USAGE,
        ),
        PretrainingMethod(
            "swav", "swav", "views",
            "SwAV: swapped prediction of Sinkhorn-Knopp cluster codes across multi-crop views",
            ('M. Caron et al., "Unsupervised learning of visual features by contrasting cluster assignments", '
             "NeurIPS 2020.",),
            multi_crop=True, card_usage=JOINT_EMBEDDING_USAGE,
        ),
        PretrainingMethod(
            "vae", "mammo_vae", "whole images",
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


__all__ = ["METHODS", "PretrainingMethod", "citations_for", "pretraining_method"]
