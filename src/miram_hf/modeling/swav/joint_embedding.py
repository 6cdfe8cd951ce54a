# Copied from src/miram_hf/modeling/joint_embedding.py by utils/fix_copies.py: edit that file, then run it.
"""What the joint-embedding methods (BYOL, DINO, MoCo v3, SimCLR, SwAV) share: a config holding a backbone config,
projection MLPs, the teachers' moving average and its cosine schedule, and the collectives across processes.

Copied into each of those family folders by `utils/fix_copies.py`, as `backbone.py` is, and for the same reason (see
there).
"""

import copy
import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as distributed_functional
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForImageClassification, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from .backbone import BackboneConfigMixin, BackboneModelMixin, backbone_config_from, pooled_features


class JointEmbeddingConfig(BackboneConfigMixin, PretrainedConfig):
    r"""
    Base of the joint-embedding configs.

    Args:
        backbone_config (`PretrainedConfig` or `dict`, *optional*):
            The backbone: a transformers `ViTConfig`, `ResNetConfig` or a `MiramConfig` (MIRAM backbones need
            `import miram_hf`), as a config or its dict. Defaults to the family's `default_backbone_type` with its
            transformers defaults.
        image_size (`int`, *optional*): side of the global views; defaults to the backbone's `image_size` (ViT,
            MIRAM) or 224.
    """

    default_backbone_type = "vit"

    def __init__(self, backbone_config: PretrainedConfig | dict | None = None, image_size: int | None = None, **kwargs):
        backbone_config = backbone_config_from(backbone_config, self.default_backbone_type)
        self.backbone_config = backbone_config
        self.image_size = image_size or getattr(backbone_config, "image_size", 224)
        super().__init__(**kwargs)

    # what the training and processing code asks of any pretraining config, read from the backbone
    @property
    def patch_size(self) -> int | None:
        return getattr(self.backbone_config, "patch_size", None)


@dataclass
class JointEmbeddingOutput(ModelOutput):
    """
    loss: the method's loss over the views of the batch.
    embeddings: (views * batch, dim), the student's outputs, views first (all of view 0, then all of view 1, ...).
    """

    loss: torch.Tensor | None = None
    embeddings: torch.Tensor | None = None


def views_first(pixel_values: torch.Tensor) -> torch.Tensor:
    """(batch, views, channels, height, width) -> (views * batch, channels, height, width), all of view 0 first, as
    the reference implementations concatenate their crops."""
    return pixel_values.transpose(0, 1).flatten(0, 1)


def projection_mlp(
    dims: list[int],
    batch_norm: bool = True,
    activation: type[nn.Module] = nn.ReLU,
    bias: bool = True,
    last_batch_norm: bool = False,
) -> nn.Sequential:
    """Linear layers through `dims` (input, hidden..., output); each hidden layer is followed by BatchNorm (when
    `batch_norm`) and `activation`; `last_batch_norm` ends with MoCo v3's BatchNorm without affine parameters."""
    layers = []
    for index, (in_features, out_features) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        layers.append(nn.Linear(in_features, out_features, bias=bias))
        if index < len(dims) - 2:
            layers += [nn.BatchNorm1d(out_features)] if batch_norm else []
            layers.append(activation())
        elif last_batch_norm:
            layers.append(nn.BatchNorm1d(out_features, affine=False))
    return nn.Sequential(*layers)


def cosine_schedule(step: int, max_steps: int, start: float, end: float = 1.0) -> float:
    """`start` at step 0 rising to `end` at `max_steps` along a half-cosine: the momentum schedule of BYOL, MoCo v3
    and DINO (1 - (1 - start) (cos(pi k / K) + 1) / 2 for end = 1)."""
    return end - (end - start) * (math.cos(math.pi * min(step, max_steps) / max_steps) + 1) / 2


@torch.no_grad()
def update_moving_average(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher <- momentum x teacher + (1 - momentum) x student, parameter by parameter."""
    for teacher_parameter, student_parameter in zip(teacher.parameters(), student.parameters(), strict=True):
        teacher_parameter.lerp_(student_parameter.detach(), 1.0 - momentum)


def zero_gradient(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor`'s value with a zero gradient: a parameter frozen for a step yet still in the graph, which DDP needs
    from every parameter it reduces (a detached one would stall its reducer)."""
    return tensor.detach() + 0.0 * tensor


class PrototypeLinear(nn.Linear):
    """A bias-free linear layer onto prototypes (SwAV) or DINO's output dimensions, its rows L2-normalised in the
    product with `normalize_rows` (DINO's weight-normalised last layer), its gradient held at zero on `frozen` steps
    (DINO's frozen last layer, SwAV's frozen prototypes). The weight is read in the layer's own forward, so that
    accelerate's offloading hooks, which load a module's weights when it is called, see it."""

    def __init__(self, in_features: int, out_features: int, normalize_rows: bool = False):
        super().__init__(in_features, out_features, bias=False)
        self.normalize_rows = normalize_rows

    def forward(self, inputs: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        weight = zero_gradient(self.weight) if frozen else self.weight
        return F.linear(inputs, F.normalize(weight, dim=-1) if self.normalize_rows else weight)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def process_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` from every process, concatenated along dim 0 in process order. Gradients flow back to each process's
    own part (summed over every process's loss), as SimCLR's and MoCo v3's large-batch losses need."""
    if not is_distributed():
        return tensor
    return torch.cat(distributed_functional.all_gather(tensor))


@torch.no_grad()
def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of `tensor` over every process (a new tensor; `tensor` itself is left alone)."""
    if not is_distributed():
        return tensor
    total = tensor.clone()
    dist.all_reduce(total)
    return total


def cross_view_prediction(model: "JointEmbeddingPreTrainedModel", pixel_values: torch.Tensor) -> JointEmbeddingOutput:
    """BYOL's and MoCo v3's step, on (batch, 2, channels, height, width): the online network's predictions
    (`backbone` -> `projector` -> `predictor`) of each view against the teacher's projections (`teacher_backbone` ->
    `teacher_projector`) of the other view, through `model.criterion`, both ways. Each view is its own forward pass,
    as in the reference code, so that BatchNorm normalises over one view's batch."""
    view_0, view_1 = pixel_values.unbind(1)
    prediction_0, prediction_1 = (model.predictor(model.projector(pooled_features(model.backbone, view)))
                                  for view in (view_0, view_1))  # fmt: skip
    with torch.no_grad():
        target_0, target_1 = (model.teacher_projector(pooled_features(model.teacher_backbone, view))
                              for view in (view_0, view_1))  # fmt: skip
    loss = model.criterion(prediction_0, target_1) + model.criterion(prediction_1, target_0)
    return JointEmbeddingOutput(loss=loss, embeddings=torch.cat([prediction_0, prediction_1]))


class JointEmbeddingPreTrainedModel(BackboneModelMixin, PreTrainedModel):
    """Base of the joint-embedding models: a student `backbone` (the base model every method exports), its heads,
    and for BYOL, MoCo v3 and DINO a teacher that follows the student by moving average.

    The training loop calls `start_training_step(step, max_steps)` before each optimizer step's forward passes (DINO's
    teacher temperature and frozen last layer, SwAV's frozen prototypes and queue follow it) and `update_teachers()`
    after the optimizer step (the teachers' moving average, along the cosine momentum schedule).
    """

    base_model_prefix = "backbone"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    # the teacher's backbone when the method evaluates it (DINO), the student's otherwise
    export_teacher = False

    def __init__(self, config: JointEmbeddingConfig):
        super().__init__(config)
        self.step: int | None = None
        self.max_steps: int | None = None

    def teacher_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(teacher, student) module pairs of the methods with a moving-average teacher."""
        return []

    def post_init(self) -> None:
        super().post_init()
        with torch.no_grad():  # every teacher starts as a copy of its student
            for teacher, student in self.teacher_pairs():
                teacher.load_state_dict(student.state_dict())

    def freeze_fixed_weights(self) -> None:
        """Teachers follow the student by moving average only; DDP must not wait for gradients of theirs."""
        super().freeze_fixed_weights()
        for teacher, _ in self.teacher_pairs():
            teacher.requires_grad_(False)

    def teacher_momentum(self, step: int) -> float:
        """The momentum after optimizer step `step` (counted from 1): `momentum` after the first, rising to 1 along a
        half-cosine (DINO's `momentum_schedule[it]`, BYOL's tau at k = it)."""
        return cosine_schedule(step - 1, self.max_steps, self.config.momentum)

    def start_training_step(self, step: int, max_steps: int) -> None:
        """Before optimizer step `step` (counted from 1) of `max_steps`: the schedules that the forward pass reads."""
        self.step, self.max_steps = step, max_steps

    def update_teachers(self) -> None:
        """After the optimizer step: the teachers take a share of the student's new weights, at this step's momentum
        (the reference implementations' update after each optimizer step)."""
        for teacher, student in self.teacher_pairs():
            update_moving_average(teacher, student, self.teacher_momentum(self.step))

    def backbone_for_image_classification(self, **config_kwargs) -> PreTrainedModel:
        """The trained backbone in a new `...ForImageClassification` of its kind (ViT, ResNet or MIRAM) with a fresh
        classifier; `config_kwargs` (`num_labels`, `id2label`, `problem_type`, ...) go to the classifier's config."""
        config = copy.deepcopy(self.config.backbone_config)
        config.update(config_kwargs)
        classifier = AutoModelForImageClassification.from_config(config)
        backbone = self.teacher_backbone if self.export_teacher else self.backbone
        classifier.base_model.load_state_dict(backbone.state_dict())
        return classifier


__all__ = [
    "JointEmbeddingConfig",
    "JointEmbeddingOutput",
    "JointEmbeddingPreTrainedModel",
    "all_reduce_sum",
    "cosine_schedule",
    "cross_view_prediction",
    "gather",
    "is_distributed",
    "process_rank",
    "projection_mlp",
    "update_moving_average",
    "views_first",
    "zero_gradient",
]
