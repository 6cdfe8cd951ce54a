"""DINO configuration."""

from .joint_embedding import JointEmbeddingConfig


class DinoConfig(JointEmbeddingConfig):
    r"""
    Configuration of DINO (Caron et al. 2021): self-distillation from a moving-average teacher that sees the global
    crops to a student that sees every crop. Defaults are the paper's (ViT, a 3-layer GELU head 2048 wide with a
    256-d L2-normalised bottleneck and a weight-normalised last layer of 65536 outputs; student temperature 0.1,
    teacher 0.04, centre momentum 0.9, teacher momentum 0.996 rising to 1 along a cosine).

    Args:
        backbone_config (`PretrainedConfig` or `dict`, *optional*): ViT (default), ResNet or MIRAM.
        head_layers (`int`, defaults to 3): linear layers of the head before its bottleneck.
        head_hidden_size (`int`, defaults to 2048): hidden width of the head.
        head_bottleneck_size (`int`, defaults to 256): width of the normalised bottleneck.
        head_output_size (`int`, defaults to 65536): outputs of the weight-normalised last layer (K).
        student_temperature (`float`, defaults to 0.1): student softmax temperature.
        teacher_temperature (`float`, defaults to 0.04): teacher temperature after the warmup (0.07 in the
            improved recipe, with a warmup from 0.04).
        warmup_teacher_temperature (`float`, defaults to 0.04): teacher temperature at the first step.
        teacher_temperature_warmup_fraction (`float`, defaults to 0.0): fraction of the steps over which the teacher
            temperature rises linearly to `teacher_temperature` (DINO: 30 of 300 epochs, 0.1).
        center_momentum (`float`, defaults to 0.9): momentum of the teacher's running centre.
        momentum (`float`, defaults to 0.996): the teacher's momentum at the first step.
        freeze_last_layer_steps (`int`, defaults to 0): steps during which the last layer gets no update (DINO:
            the first epoch).

    Example:

    ```python
    >>> from transformers import ViTConfig
    >>> from miram_hf import DinoConfig, DinoForPreTraining
    >>> model = DinoForPreTraining(DinoConfig(backbone_config=ViTConfig(num_channels=1, image_size=112)))
    ```
    """

    model_type = "dino"
    default_backbone_type = "vit"

    def __init__(
        self,
        backbone_config=None,
        head_layers: int = 3,
        head_hidden_size: int = 2048,
        head_bottleneck_size: int = 256,
        head_output_size: int = 65536,
        student_temperature: float = 0.1,
        teacher_temperature: float = 0.04,
        warmup_teacher_temperature: float = 0.04,
        teacher_temperature_warmup_fraction: float = 0.0,
        center_momentum: float = 0.9,
        momentum: float = 0.996,
        freeze_last_layer_steps: int = 0,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        if head_layers < 1:
            raise ValueError(f"head_layers must be at least 1 (DINO: 3), got {head_layers}.")
        if not 0.0 <= teacher_temperature_warmup_fraction <= 1.0:
            raise ValueError(f"teacher_temperature_warmup_fraction must be in [0, 1], got "
                             f"{teacher_temperature_warmup_fraction}.")  # fmt: skip
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1] (DINO: 0.996), got {momentum}.")
        self.head_layers = head_layers
        self.head_hidden_size = head_hidden_size
        self.head_bottleneck_size = head_bottleneck_size
        self.head_output_size = head_output_size
        self.student_temperature = student_temperature
        self.teacher_temperature = teacher_temperature
        self.warmup_teacher_temperature = warmup_teacher_temperature
        self.teacher_temperature_warmup_fraction = teacher_temperature_warmup_fraction
        self.center_momentum = center_momentum
        self.momentum = momentum
        self.freeze_last_layer_steps = freeze_last_layer_steps
        self.initializer_range = initializer_range
        super().__init__(backbone_config, **kwargs)


__all__ = ["DinoConfig"]
