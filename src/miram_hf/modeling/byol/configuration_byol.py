"""BYOL configuration."""

from .joint_embedding import JointEmbeddingConfig


class ByolConfig(JointEmbeddingConfig):
    r"""
    Configuration of BYOL (Grill et al. 2020): an online network (backbone, projector, predictor) regresses the
    projection of a moving-average target network on the other view. Defaults are the paper's (ResNet-50, MLPs
    4096 -> 256); the target momentum rises from `momentum` to 1 along a cosine (BYOL: 0.996; 0.99 for small batches).

    Args:
        backbone_config (`PretrainedConfig` or `dict`, *optional*): ViT, ResNet (default) or MIRAM.
        projection_hidden_size (`int`, defaults to 4096): hidden width of the projector and the predictor.
        projection_size (`int`, defaults to 256): output width of the projector and the predictor.
        momentum (`float`, defaults to 0.99): the target's momentum at the first step.

    Example:

    ```python
    >>> from transformers import ResNetConfig
    >>> from miram_hf import ByolConfig, ByolForPreTraining
    >>> model = ByolForPreTraining(ByolConfig(backbone_config=ResNetConfig(num_channels=1)))
    ```
    """

    model_type = "byol"
    default_backbone_type = "resnet"

    def __init__(
        self,
        backbone_config=None,
        projection_hidden_size: int = 4096,
        projection_size: int = 256,
        momentum: float = 0.99,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1] (BYOL: 0.99 to 0.996), got {momentum}.")
        self.projection_hidden_size = projection_hidden_size
        self.projection_size = projection_size
        self.momentum = momentum
        self.initializer_range = initializer_range
        super().__init__(backbone_config, **kwargs)


__all__ = ["ByolConfig"]
