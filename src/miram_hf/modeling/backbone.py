"""The backbone that the comparison families (BYOL, DINO, MoCo v3, SimCLR, SwAV, MIL, RoI attention) build from a
`backbone_config`: any transformers ViT, ResNet, DINOv2 or a MIRAM encoder, and its pooled image feature.

Written here only: each of those family folders holds a copy (`utils/fix_copies.py` writes them, the tests check
them), so the family's files import it with a single dot and `save_pretrained` copies it next to the weights, which
keeps every family folder Hub-portable (`trust_remote_code=True` with only transformers installed).
"""

import torch
from torch import nn
from transformers import AutoModel, PretrainedConfig, PreTrainedModel, ViTModel
from transformers.models.auto.configuration_auto import CONFIG_MAPPING


def backbone_config_from(value: PretrainedConfig | dict | None, default_model_type: str) -> PretrainedConfig:
    """A backbone config from a config, its dict (saved configs hold dicts) or None (`default_model_type` with its
    transformers defaults)."""
    if isinstance(value, PretrainedConfig):
        return value
    fields = dict(value or {})
    model_type = fields.pop("model_type", default_model_type)
    if model_type not in CONFIG_MAPPING:
        raise ValueError(
            f"backbone_config has model_type {model_type!r}, which transformers does not know; "
            "a MIRAM backbone needs `import miram_hf` first."
        )
    return CONFIG_MAPPING[model_type](**fields)


def backbone_hidden_size(config: PretrainedConfig) -> int:
    """Width of the pooled feature: a ResNet's last stage, or the ViT / DINOv2 / MIRAM hidden size."""
    return config.hidden_sizes[-1] if config.model_type == "resnet" else config.hidden_size


class BackboneConfigMixin:
    """What a config holding a `backbone_config` tells about its input and its pooled feature."""

    @property
    def num_channels(self) -> int:
        return self.backbone_config.num_channels

    @property
    def backbone_hidden_size(self) -> int:
        return backbone_hidden_size(self.backbone_config)


def backbone_from_config(config: PretrainedConfig) -> PreTrainedModel:
    """The bare backbone of `config`, laid out as `...ForImageClassification` holds it (a ViT without its pooler),
    so that its weights move into a classifier as they are."""
    if config.model_type == "vit":
        return ViTModel(config, add_pooling_layer=False)
    return AutoModel.from_config(config)


class BackboneModelMixin:
    """What every model holding a `backbone` shares (placed before `PreTrainedModel` among the bases): the backbone's
    input embeddings, gradient checkpointing where the backbone supports it (transformers' ViT, DINOv2 and MIRAM do,
    its ResNet does not), and weights that stay frozen (`freeze_fixed_weights`) after `post_init` and after
    `from_pretrained`, whose loader makes every floating-point weight it loads trainable."""

    def get_input_embeddings(self) -> nn.Module:
        return input_embeddings(self.backbone)

    @property
    def supports_gradient_checkpointing(self) -> bool:
        return "backbone" in self._modules and self.backbone.supports_gradient_checkpointing

    def freeze_fixed_weights(self) -> None:
        """A DINOv2 backbone's mask token serves masked image modelling only: DDP must not wait for its gradient."""
        if self.backbone.config.model_type == "dinov2":
            self.backbone.embeddings.mask_token.requires_grad_(False)

    def post_init(self) -> None:
        super().post_init()
        self.freeze_fixed_weights()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        loaded = super().from_pretrained(*args, **kwargs)  # (model, info) with output_loading_info=True
        (loaded[0] if isinstance(loaded, tuple) else loaded).freeze_fixed_weights()
        return loaded


def input_embeddings(backbone: PreTrainedModel) -> nn.Module:
    """The module that embeds the pixels: a ViT's / DINOv2's / MIRAM's patch embedding, a ResNet's stem (which
    transformers does not name, though accelerate's FSDP asks every model for its input embeddings)."""
    if backbone.config.model_type == "resnet":
        return backbone.embedder
    return backbone.get_input_embeddings()


def pooled_features(backbone: PreTrainedModel, pixel_values: torch.Tensor) -> torch.Tensor:
    """(batch, hidden): a ResNet's globally averaged last stage, or the CLS token after a ViT's / DINOv2's / MIRAM's
    final norm (every patch kept). Images of another size than the position table interpolate it."""
    model_type = backbone.config.model_type
    if model_type == "resnet":
        return backbone(pixel_values).pooler_output.flatten(1)
    options = {
        "vit": {"interpolate_pos_encoding": True},
        "miram": {"interpolate_pos_encoding": True, "mask_ratio": 0.0},
    }
    return backbone(pixel_values, **options.get(model_type, {})).last_hidden_state[:, 0]


__all__ = [
    "BackboneConfigMixin",
    "BackboneModelMixin",
    "backbone_config_from",
    "backbone_from_config",
    "backbone_hidden_size",
    "input_embeddings",
    "pooled_features",
]
