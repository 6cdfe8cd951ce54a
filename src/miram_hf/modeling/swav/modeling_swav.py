"""SwAV (Caron et al. 2020): swapped prediction of online cluster codes across multi-crop views."""

import torch
import torch.nn.functional as F
from transformers.utils import can_return_tuple

from .backbone import backbone_from_config, pooled_features
from .configuration_swav import SwavConfig
from .joint_embedding import (
    JointEmbeddingOutput,
    JointEmbeddingPreTrainedModel,
    PrototypeLinear,
    projection_mlp,
    views_first,
)
from .loss_swav import SwavLoss


class SwavPreTrainedModel(JointEmbeddingPreTrainedModel):
    config_class = SwavConfig
    config: SwavConfig


class SwavForPreTraining(SwavPreTrainedModel):
    def __init__(self, config: SwavConfig):
        super().__init__(config)
        self.backbone = backbone_from_config(config.backbone_config)
        self.projector = projection_mlp(
            [config.backbone_hidden_size, config.projection_hidden_size, config.projection_size]
        )
        self.prototypes = PrototypeLinear(config.projection_size, config.num_prototypes)
        self.criterion = SwavLoss(
            config.loss_temperature, config.sinkhorn_epsilon, config.sinkhorn_iterations, config.crops_for_assign
        )
        # this process's recent embeddings of each assigned crop; kept per process, as the reference does, so they
        # are neither reduced by DDP nor saved with the weights (a resumed run refills them)
        self.queue: torch.Tensor | None = None
        self.post_init()

    @can_return_tuple
    def forward(
        self, pixel_values: torch.Tensor, local_pixel_values: torch.Tensor | None = None, **kwargs
    ) -> JointEmbeddingOutput:
        """pixel_values: (batch, global crops, channels, height, width); local_pixel_values: (batch, local crops,
        channels, height', width'), or None."""
        if self.training:  # the reference normalises the prototypes before every step
            with torch.no_grad():
                self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        features = pooled_features(self.backbone, views_first(pixel_values))
        if local_pixel_values is not None:
            features = torch.cat([features, pooled_features(self.backbone, views_first(local_pixel_values))])
        embeddings = F.normalize(self.projector(features), dim=1)  # (crops * batch, dim)
        frozen = self.step is not None and self.step <= self.config.freeze_prototypes_steps
        scores = self.prototypes(embeddings, frozen=frozen)
        batch = pixel_values.shape[0]
        loss = self.criterion(list(scores.split(batch)), self.queue_scores(embeddings, batch))
        return JointEmbeddingOutput(loss=loss, embeddings=embeddings)

    @torch.no_grad()
    def queue_scores(self, embeddings: torch.Tensor, batch: int) -> list[torch.Tensor | None] | None:
        """The queued embeddings' prototype scores of each assigned crop (None while the queue still fills), then the
        queue takes this batch's embeddings in place of its oldest."""
        config = self.config
        if not (self.training and config.queue_length and self.step and self.step >= config.queue_start_step):
            return None
        if config.queue_length < batch:
            raise ValueError(f"queue_length {config.queue_length} is shorter than a batch of {batch} on this process: "
                             "make it a multiple of the batch (SwAV: 3840 over every process).")  # fmt: skip
        if self.queue is None:
            self.queue = embeddings.new_zeros(len(config.crops_for_assign), config.queue_length, embeddings.shape[1])
        queue_scores = [None if torch.all(queue[-1] == 0) else self.prototypes(queue) for queue in self.queue]
        for index, crop in enumerate(config.crops_for_assign):
            self.queue[index, batch:] = self.queue[index, :-batch].clone()
            self.queue[index, :batch] = embeddings[crop * batch : (crop + 1) * batch].detach()
        return queue_scores


__all__ = ["SwavForPreTraining", "SwavPreTrainedModel"]
