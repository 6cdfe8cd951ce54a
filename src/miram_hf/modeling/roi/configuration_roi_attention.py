"""RoI token reduction configuration."""

from transformers import PretrainedConfig

from .backbone import BackboneConfigMixin, backbone_config_from

ROI_POOLINGS = ("anchor", "attention", "mean", "cls")


class RoiAttentionConfig(BackboneConfigMixin, PretrainedConfig):
    r"""
    Configuration of RoI token reduction ("Attend what matters"): a mammogram becomes a few region tokens (each
    region encoded by a DINOv2 backbone) plus a full-breast anchor token; transformer layers with 2-D rotary position
    encoding of the region centres attend between them; the pooled token is classified, and a repulsive contrastive
    loss pushes apart the regions of differently labelled images.

    Args:
        backbone_config (`PretrainedConfig` or `dict`, *optional*): the region encoder, DINOv2 by default (any
            backbone of `backbone.py` works).
        num_attention_layers (`int`, defaults to 1): transformer layers between the tokens.
        num_attention_heads (`int`, defaults to 8): their heads; the head size must divide by 4 (2-D rotary).
        pooling (`str`, defaults to `"anchor"`): the classified token: the anchor's output, an `"attention"`-weighted
            sum of the tokens, their `"mean"`, or a learned `"cls"` token's output.
        rope_theta (`float`, defaults to 100.0): base of the rotary frequencies.
        rope_scale (`float`, defaults to 32.0): region centres, in [0, 1] of the image, are multiplied by it into
            rotary positions (a 32-step grid over the image).
        contrastive_weight (`float`, defaults to 0.3): weight of the repulsive contrastive loss in the total loss.
        contrastive_margin (`float`, defaults to 0.0): cosine similarity under which dissimilar regions cost nothing.
        num_regions (`int`, defaults to 8): regions the built-in bright-blob proposer gives each image, when
            fine-tuning and evaluation find them (`miram_hf.training.regions.IntensityBlobProposer`).
        region_fraction (`float`, defaults to 0.2): side of those regions, as a fraction of the image's short side.

    Example:

    ```python
    >>> from transformers import Dinov2Config
    >>> from miram_hf import RoiAttentionConfig, RoiAttentionForImageClassification
    >>> config = RoiAttentionConfig(backbone_config=Dinov2Config(num_channels=1, image_size=112), num_labels=2)
    >>> model = RoiAttentionForImageClassification(config)
    ```
    """

    model_type = "roi_attention"
    # Trainer's predictions are the logits; the loss parts and region embeddings stay out of them
    keys_to_ignore_at_inference = ["classification_loss", "contrastive_loss", "region_embeddings"]

    def __init__(
        self,
        backbone_config=None,
        num_attention_layers: int = 1,
        num_attention_heads: int = 8,
        pooling: str = "anchor",
        rope_theta: float = 100.0,
        rope_scale: float = 32.0,
        contrastive_weight: float = 0.3,
        contrastive_margin: float = 0.0,
        num_regions: int = 8,
        region_fraction: float = 0.2,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        if pooling not in ROI_POOLINGS:
            raise ValueError(f"pooling must be one of {ROI_POOLINGS}, got {pooling!r}.")
        self.backbone_config = backbone_config_from(backbone_config, "dinov2")
        self.num_attention_layers = num_attention_layers
        self.num_attention_heads = num_attention_heads
        self.pooling = pooling
        self.rope_theta = rope_theta
        self.rope_scale = rope_scale
        self.contrastive_weight = contrastive_weight
        self.contrastive_margin = contrastive_margin
        self.num_regions = num_regions
        self.region_fraction = region_fraction
        self.initializer_range = initializer_range
        super().__init__(**kwargs)
        hidden = self.backbone_hidden_size
        if hidden % num_attention_heads or (hidden // num_attention_heads) % 4:
            raise ValueError(
                f"The region features ({hidden} wide) split into {num_attention_heads} heads must give a head size "
                "divisible by 4 (half of it rotates with the row, half with the column): change num_attention_heads."
            )

    @property
    def image_size(self) -> int:
        """Side of each region crop and of the anchor image."""
        return getattr(self.backbone_config, "image_size", 224)


__all__ = ["ROI_POOLINGS", "RoiAttentionConfig"]
