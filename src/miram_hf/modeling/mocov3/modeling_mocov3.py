"""MoCo v3 (Chen, Xie and He 2021): queries of one view against a momentum encoder's keys of the other."""

import copy

import torch
from torch import nn
from transformers.utils import can_return_tuple

from .backbone import backbone_from_config
from .configuration_mocov3 import MocoV3Config
from .joint_embedding import (
    JointEmbeddingOutput,
    JointEmbeddingPreTrainedModel,
    cross_view_prediction,
    projection_mlp,
)
from .loss_mocov3 import MocoV3Loss


class MocoV3PreTrainedModel(JointEmbeddingPreTrainedModel):
    config_class = MocoV3Config
    config: MocoV3Config


class MocoV3ForPreTraining(MocoV3PreTrainedModel):
    def __init__(self, config: MocoV3Config):
        super().__init__(config)
        hidden, size = config.projection_hidden_size, config.projection_size
        self.backbone = backbone_from_config(config.backbone_config)
        # the reference's _build_mlp: linear layers without biases, an affine-free BatchNorm after the projector only
        projector_dims = [config.backbone_hidden_size] + [hidden] * (config.projection_layers - 1) + [size]
        self.projector = projection_mlp(projector_dims, bias=False, last_batch_norm=True)
        self.predictor = projection_mlp([size, hidden, size], bias=False)
        self.teacher_backbone = copy.deepcopy(self.backbone)
        self.teacher_projector = copy.deepcopy(self.projector)
        self.criterion = MocoV3Loss(config.loss_temperature)
        self.post_init()

    def teacher_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.teacher_backbone, self.backbone), (self.teacher_projector, self.projector)]

    @can_return_tuple
    def forward(self, pixel_values: torch.Tensor, **kwargs) -> JointEmbeddingOutput:
        """pixel_values: (batch, 2, channels, height, width), two views of each image."""
        return cross_view_prediction(self, pixel_values)


__all__ = ["MocoV3ForPreTraining", "MocoV3PreTrainedModel"]
