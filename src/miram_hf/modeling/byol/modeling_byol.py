"""BYOL (Grill et al. 2020): an online network predicts a moving-average target network's projection of the other
view; no negatives."""

import copy

import torch
from torch import nn
from transformers.utils import can_return_tuple

from .backbone import backbone_from_config
from .configuration_byol import ByolConfig
from .joint_embedding import (
    JointEmbeddingOutput,
    JointEmbeddingPreTrainedModel,
    cross_view_prediction,
    projection_mlp,
)
from .loss_byol import ByolLoss


class ByolPreTrainedModel(JointEmbeddingPreTrainedModel):
    config_class = ByolConfig
    config: ByolConfig


class ByolForPreTraining(ByolPreTrainedModel):
    def __init__(self, config: ByolConfig):
        super().__init__(config)
        hidden, size = config.projection_hidden_size, config.projection_size
        self.backbone = backbone_from_config(config.backbone_config)
        self.projector = projection_mlp([config.backbone_hidden_size, hidden, size])
        self.predictor = projection_mlp([size, hidden, size])
        self.teacher_backbone = copy.deepcopy(self.backbone)
        self.teacher_projector = copy.deepcopy(self.projector)
        self.criterion = ByolLoss()
        self.post_init()

    def teacher_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.teacher_backbone, self.backbone), (self.teacher_projector, self.projector)]

    @can_return_tuple
    def forward(self, pixel_values: torch.Tensor, **kwargs) -> JointEmbeddingOutput:
        """pixel_values: (batch, 2, channels, height, width), two views of each image."""
        return cross_view_prediction(self, pixel_values)


__all__ = ["ByolForPreTraining", "ByolPreTrainedModel"]
