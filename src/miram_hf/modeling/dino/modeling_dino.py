"""DINO (Caron et al. 2021): a student matches a moving-average teacher's centred, sharpened distribution over
K outputs, across multi-crop views (the teacher sees the global crops only)."""

import copy

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import can_return_tuple

from .backbone import backbone_from_config, pooled_features
from .configuration_dino import DinoConfig
from .joint_embedding import (
    JointEmbeddingOutput,
    JointEmbeddingPreTrainedModel,
    PrototypeLinear,
    projection_mlp,
    views_first,
)
from .loss_dino import DinoLoss


class DinoHead(nn.Module):
    """The reference `DINOHead`: a GELU MLP to an L2-normalised bottleneck, then a weight-normalised linear layer
    whose norm is fixed to 1 (`weight_norm` with g frozen at 1 is this row-normalised weight)."""

    def __init__(self, config: DinoConfig):
        super().__init__()
        dims = [config.backbone_hidden_size] + [config.head_hidden_size] * (config.head_layers - 1)
        self.mlp = projection_mlp(dims + [config.head_bottleneck_size], batch_norm=False, activation=nn.GELU)
        self.last_layer = PrototypeLinear(config.head_bottleneck_size, config.head_output_size, normalize_rows=True)

    def forward(self, features: torch.Tensor, freeze_last_layer: bool = False) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(features), dim=-1), frozen=freeze_last_layer)


class DinoPreTrainedModel(JointEmbeddingPreTrainedModel):
    config_class = DinoConfig
    config: DinoConfig


class DinoForPreTraining(DinoPreTrainedModel):
    # DINO evaluates (and exports) the teacher, the better of the two
    export_teacher = True

    def __init__(self, config: DinoConfig):
        super().__init__(config)
        self.backbone = backbone_from_config(config.backbone_config)
        self.head = DinoHead(config)
        self.teacher_backbone = copy.deepcopy(self.backbone)
        self.teacher_head = copy.deepcopy(self.head)
        self.criterion = DinoLoss(config.head_output_size, config.student_temperature, config.center_momentum)
        self.post_init()

    def teacher_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.teacher_backbone, self.backbone), (self.teacher_head, self.head)]

    def teacher_temperature(self) -> float:
        """Linear warmup from `warmup_teacher_temperature` over the first steps, then `teacher_temperature`."""
        config = self.config
        warmup_steps = round(config.teacher_temperature_warmup_fraction * self.max_steps) if self.step else 0
        if self.step is None or self.step > warmup_steps:
            return config.teacher_temperature
        progress = (self.step - 1) / max(1, warmup_steps - 1)
        return config.warmup_teacher_temperature + progress * (
            config.teacher_temperature - config.warmup_teacher_temperature
        )

    @can_return_tuple
    def forward(
        self, pixel_values: torch.Tensor, local_pixel_values: torch.Tensor | None = None, **kwargs
    ) -> JointEmbeddingOutput:
        """pixel_values: (batch, global crops, channels, height, width), seen by student and teacher;
        local_pixel_values: (batch, local crops, channels, height', width'), seen by the student only."""
        freeze_last_layer = self.step is not None and self.step <= self.config.freeze_last_layer_steps
        global_views = views_first(pixel_values)
        student = self.head(pooled_features(self.backbone, global_views), freeze_last_layer)
        if local_pixel_values is not None:
            local_views = views_first(local_pixel_values)
            student = torch.cat([student, self.head(pooled_features(self.backbone, local_views), freeze_last_layer)])
        with torch.no_grad():
            teacher = self.teacher_head(pooled_features(self.teacher_backbone, global_views))
        loss = self.criterion(student, teacher, self.teacher_temperature(), num_global_crops=pixel_values.shape[1])
        return JointEmbeddingOutput(loss=loss, embeddings=student)


__all__ = ["DinoForPreTraining", "DinoHead", "DinoPreTrainedModel"]
