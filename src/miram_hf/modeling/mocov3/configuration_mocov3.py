"""MoCo v3 configuration."""

from .joint_embedding import JointEmbeddingConfig


class MocoV3Config(JointEmbeddingConfig):
    r"""
    Configuration of MoCo v3 (Chen, Xie and He 2021): backbone + projector + predictor queries against the keys of a
    momentum encoder (backbone + projector), InfoNCE scaled by 2 x temperature. Defaults are the paper's ViT recipe
    (3-layer projector and 2-layer predictor, 4096 hidden, 256 out, BatchNorm, no biases; temperature 0.2; momentum
    0.99 rising to 1 along a cosine).

    Args:
        backbone_config (`PretrainedConfig` or `dict`, *optional*): ViT (default), ResNet or MIRAM.
        projection_layers (`int`, defaults to 3): linear layers of the projector (MoCo v3: 3 for ViT, 2 for ResNet).
        projection_hidden_size (`int`, defaults to 4096): hidden width of the projector and the predictor.
        projection_size (`int`, defaults to 256): output width of the projector and the predictor.
        loss_temperature (`float`, defaults to 0.2):
            InfoNCE temperature (0.2 for ViT, 1.0 for ResNet; `temperature` is a generation field in transformers).
        momentum (`float`, defaults to 0.99): the momentum encoder's momentum at the first step.

    Example:

    ```python
    >>> from transformers import ViTConfig
    >>> from miram_hf import MocoV3Config, MocoV3ForPreTraining
    >>> model = MocoV3ForPreTraining(MocoV3Config(backbone_config=ViTConfig(num_channels=1, image_size=112)))
    ```
    """

    model_type = "mocov3"
    default_backbone_type = "vit"

    def __init__(
        self,
        backbone_config=None,
        projection_layers: int = 3,
        projection_hidden_size: int = 4096,
        projection_size: int = 256,
        loss_temperature: float = 0.2,
        momentum: float = 0.99,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        if projection_layers < 2:
            raise ValueError(f"projection_layers must be at least 2 (MoCo v3: 3 for ViT), got {projection_layers}.")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1] (MoCo v3: 0.99), got {momentum}.")
        self.projection_layers = projection_layers
        self.projection_hidden_size = projection_hidden_size
        self.projection_size = projection_size
        self.loss_temperature = loss_temperature
        self.momentum = momentum
        self.initializer_range = initializer_range
        super().__init__(backbone_config, **kwargs)


__all__ = ["MocoV3Config"]
