"""Multiple-instance (tiled-patch) classification configuration."""

from transformers import PretrainedConfig

from .backbone import BackboneConfigMixin, backbone_config_from

POOLINGS = ("gap", "gated_attention", "self_attention")


class MilConfig(BackboneConfigMixin, PretrainedConfig):
    r"""
    Configuration of a whole-mammogram classifier over a bag of tiled patches: every tile goes through the backbone,
    the tile features are pooled into one image feature, a linear layer classifies it (the tiled-patch paper's
    patch-to-image conversion).

    Args:
        backbone_config (`PretrainedConfig` or `dict`, *optional*): the tile encoder: ViT, ResNet (default, the
            paper's ResNet-50), DINOv2 or MIRAM (with `import miram_hf`).
        pooling (`str`, defaults to `"gated_attention"`): `"gap"` (the mean of the tile features),
            `"gated_attention"` (Ilse et al. 2018: a_k = softmax(w^T (tanh(V h_k) * sigmoid(U h_k)))) or
            `"self_attention"` (a transformer layer over a CLS token and the tiles; the CLS output is pooled).
        attention_hidden_size (`int`, defaults to 512): n, the width of V and U in gated attention.
        num_attention_heads (`int`, defaults to 8): heads of the self-attention pooling.
        tile_size (`int`, defaults to 224): side of the tiles (the paper found 96 best for BYOL).
        tile_overlap (`float`, defaults to 0.5): overlap of neighbouring tiles, as a fraction of a tile.
        max_background (`float`, defaults to 0.2): tiles with more background than this are left out of the bag.
        classifier_dropout (`float`, defaults to 0.0): dropout on the pooled feature.

    Example:

    ```python
    >>> from transformers import ResNetConfig
    >>> from miram_hf import MilConfig, MilForImageClassification
    >>> config = MilConfig(backbone_config=ResNetConfig(num_channels=1), tile_size=96, num_labels=2)
    >>> model = MilForImageClassification(config)
    ```
    """

    model_type = "mil"

    def __init__(
        self,
        backbone_config=None,
        pooling: str = "gated_attention",
        attention_hidden_size: int = 512,
        num_attention_heads: int = 8,
        tile_size: int = 224,
        tile_overlap: float = 0.5,
        max_background: float = 0.2,
        classifier_dropout: float = 0.0,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
        self.backbone_config = backbone_config_from(backbone_config, "resnet")
        self.pooling = pooling
        self.attention_hidden_size = attention_hidden_size
        self.num_attention_heads = num_attention_heads
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self.max_background = max_background
        self.classifier_dropout = classifier_dropout
        self.initializer_range = initializer_range
        super().__init__(**kwargs)
        if pooling == "self_attention" and self.backbone_hidden_size % num_attention_heads:
            raise ValueError(
                f"The tile features ({self.backbone_hidden_size} wide) do not split into {num_attention_heads} "
                "attention heads: choose num_attention_heads that divides it."
            )


__all__ = ["MilConfig", "POOLINGS"]
