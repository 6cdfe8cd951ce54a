"""SimCLR configuration."""

from .joint_embedding import JointEmbeddingConfig


class SimclrConfig(JointEmbeddingConfig):
    r"""
    Configuration of SimCLR (Chen et al. 2020): a backbone and a projection MLP trained with NT-Xent between two views
    of each image. The defaults are the paper's (ResNet-50, 2048-wide hidden layer, 128-d output, temperature 0.1).

    Args:
        backbone_config (`PretrainedConfig` or `dict`, *optional*): ViT, ResNet (default) or MIRAM.
        projection_hidden_size (`int`, defaults to 2048): hidden width of the projection MLP.
        projection_size (`int`, defaults to 128): output width of the projection MLP.
        loss_temperature (`float`, defaults to 0.1):
            NT-Xent temperature (0.1 to 0.5 in the paper; `temperature` is a generation field in transformers).

    Example:

    ```python
    >>> from transformers import ResNetConfig
    >>> from miram_hf import SimclrConfig, SimclrForPreTraining
    >>> model = SimclrForPreTraining(SimclrConfig(backbone_config=ResNetConfig(num_channels=1)))
    ```
    """

    model_type = "simclr"
    default_backbone_type = "resnet"

    def __init__(
        self,
        backbone_config=None,
        projection_hidden_size: int = 2048,
        projection_size: int = 128,
        loss_temperature: float = 0.1,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        self.projection_hidden_size = projection_hidden_size
        self.projection_size = projection_size
        self.loss_temperature = loss_temperature
        self.initializer_range = initializer_range
        super().__init__(backbone_config, **kwargs)


__all__ = ["SimclrConfig"]
