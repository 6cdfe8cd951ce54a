"""SimCLR (Chen et al. 2020): two views of each image, one encoder, NT-Xent between their projections."""

import torch
from transformers.utils import can_return_tuple

from .backbone import backbone_from_config, pooled_features
from .configuration_simclr import SimclrConfig
from .joint_embedding import (
    JointEmbeddingOutput,
    JointEmbeddingPreTrainedModel,
    projection_mlp,
    views_first,
)
from .loss_simclr import NTXentLoss


class SimclrPreTrainedModel(JointEmbeddingPreTrainedModel):
    config_class = SimclrConfig
    config: SimclrConfig


class SimclrForPreTraining(SimclrPreTrainedModel):
    def __init__(self, config: SimclrConfig):
        super().__init__(config)
        self.backbone = backbone_from_config(config.backbone_config)
        self.projector = projection_mlp(
            [config.backbone_hidden_size, config.projection_hidden_size, config.projection_size]
        )
        self.criterion = NTXentLoss(config.loss_temperature)
        self.post_init()

    @can_return_tuple
    def forward(self, pixel_values: torch.Tensor, **kwargs) -> JointEmbeddingOutput:
        """pixel_values: (batch, 2, channels, height, width), two views of each image."""
        embeddings = self.projector(pooled_features(self.backbone, views_first(pixel_values)))  # (2 * batch, dim)
        return JointEmbeddingOutput(loss=self.criterion(*embeddings.chunk(2)), embeddings=embeddings)


__all__ = ["SimclrForPreTraining", "SimclrPreTrainedModel"]
