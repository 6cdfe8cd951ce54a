"""SwAV configuration."""

from .joint_embedding import JointEmbeddingConfig


class SwavConfig(JointEmbeddingConfig):
    r"""
    Configuration of SwAV (Caron et al. 2020): multi-crop views whose L2-normalised projections are scored against
    learnable prototypes; each global crop's Sinkhorn-Knopp codes are predicted from the other crops. Defaults are the
    paper's (ResNet-50, projection 2048 -> 128, 3000 prototypes, temperature 0.1, epsilon 0.05, 3 iterations,
    prototypes frozen for the first 313 iterations).

    Args:
        backbone_config (`PretrainedConfig` or `dict`, *optional*): ViT, ResNet (default) or MIRAM.
        projection_hidden_size (`int`, defaults to 2048): hidden width of the projection MLP.
        projection_size (`int`, defaults to 128): width of the normalised embedding.
        num_prototypes (`int`, defaults to 3000): prototypes (K).
        loss_temperature (`float`, defaults to 0.1):
            softmax temperature of the predictions (`temperature` is a generation field in transformers).
        sinkhorn_epsilon (`float`, defaults to 0.05): entropy regularisation of the codes.
        sinkhorn_iterations (`int`, defaults to 3): Sinkhorn-Knopp iterations.
        crops_for_assign (`list[int]`, defaults to `[0, 1]`): the crops whose codes are predicted.
        freeze_prototypes_steps (`int`, defaults to 313): steps during which the prototypes get no update.
        queue_length (`int`, defaults to 0): embeddings of earlier batches per assigned crop and per process that
            join the Sinkhorn batch, for small batches (SwAV: 3840 over all processes, so 3840 / processes here);
            0 turns the queue off.
        queue_start_step (`int`, defaults to 0): first step that uses the queue (SwAV: epoch 15).

    Example:

    ```python
    >>> from transformers import ResNetConfig
    >>> from miram_hf import SwavConfig, SwavForPreTraining
    >>> model = SwavForPreTraining(SwavConfig(backbone_config=ResNetConfig(num_channels=1)))
    ```
    """

    model_type = "swav"
    default_backbone_type = "resnet"

    def __init__(
        self,
        backbone_config=None,
        projection_hidden_size: int = 2048,
        projection_size: int = 128,
        num_prototypes: int = 3000,
        loss_temperature: float = 0.1,
        sinkhorn_epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        crops_for_assign: list[int] | None = None,
        freeze_prototypes_steps: int = 313,
        queue_length: int = 0,
        queue_start_step: int = 0,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        self.projection_hidden_size = projection_hidden_size
        self.projection_size = projection_size
        self.num_prototypes = num_prototypes
        self.loss_temperature = loss_temperature
        self.sinkhorn_epsilon = sinkhorn_epsilon
        self.sinkhorn_iterations = sinkhorn_iterations
        self.crops_for_assign = list(crops_for_assign) if crops_for_assign is not None else [0, 1]
        self.freeze_prototypes_steps = freeze_prototypes_steps
        self.queue_length = queue_length
        self.queue_start_step = queue_start_step
        self.initializer_range = initializer_range
        super().__init__(backbone_config, **kwargs)


__all__ = ["SwavConfig"]
