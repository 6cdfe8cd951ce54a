"""RoI token reduction ("Attend what matters"): region tokens from a DINOv2 backbone, a full-breast anchor token,
attention between them with 2-D rotary position encoding (RoFormer, Su et al.) of the region centres, a pooled token
classified, and a repulsive contrastive loss between the regions of differently labelled images."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, can_return_tuple

from .backbone import BackboneModelMixin, backbone_from_config, pooled_features
from .configuration_roi_attention import RoiAttentionConfig


@dataclass
class RoiAttentionClassifierOutput(ModelOutput):
    """
    loss: classification loss + contrastive_weight x contrastive_loss, when labels are given.
    classification_loss, contrastive_loss: its two parts.
    logits: (batch, num_labels).
    region_embeddings: (batch, regions, hidden), the region tokens after the attention layers.
    """

    loss: torch.Tensor | None = None
    classification_loss: torch.Tensor | None = None
    contrastive_loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    region_embeddings: torch.Tensor | None = None


def rotate_2d(states: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """2-D rotary position encoding of (batch, heads, tokens, head_size) at positions (batch, tokens, 2): the first
    half of each head rotates with the row position, the second half with the column (RoFormer's rotation per axis)."""
    half = states.shape[-1] // 2
    frequencies = theta ** (-torch.arange(0, half, 2, device=states.device, dtype=torch.float32) / half)
    rotated = []
    for axis, part in enumerate(states.split(half, dim=-1)):
        angles = positions[..., axis, None].float() * frequencies  # (batch, tokens, half / 2)
        cos, sin = angles.cos()[:, None], angles.sin()[:, None]
        even, odd = part[..., 0::2], part[..., 1::2]
        rotated.append(torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2))
    return torch.cat(rotated, dim=-1).to(states.dtype)


class RoiAttentionLayer(nn.Module):
    """A pre-norm transformer layer whose queries and keys are rotated by their token's 2-D position."""

    def __init__(self, config: RoiAttentionConfig):
        super().__init__()
        hidden = config.backbone_hidden_size
        self.num_heads, self.theta = config.num_attention_heads, config.rope_theta
        self.norm = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.output = nn.Linear(hidden, hidden)
        self.mlp_norm = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, hidden))

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = tokens.shape
        query, key, value = (
            self.qkv(self.norm(tokens)).view(batch, length, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        )
        query, key = rotate_2d(query, positions, self.theta), rotate_2d(key, positions, self.theta)
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=token_mask[:, None, None, :])
        tokens = tokens + self.output(attended.transpose(1, 2).reshape(batch, length, hidden))
        return tokens + self.mlp(self.mlp_norm(tokens))


def repulsive_contrastive_loss(
    embeddings: torch.Tensor, region_mask: torch.Tensor, labels: torch.Tensor, margin: float = 0.0
) -> torch.Tensor:
    """The mean over pairs of regions from differently labelled images of max(0, cos(a, b) - margin): the hardest
    negatives (the most alike) cost most. Zero when the batch holds a single label."""
    regions = F.normalize(embeddings[region_mask.bool()], dim=-1)  # (regions in the batch, hidden)
    image_of_region = torch.arange(len(embeddings), device=embeddings.device).repeat_interleave(region_mask.sum(1))
    region_labels = labels[image_of_region]
    if region_labels.ndim == 1:
        dissimilar = region_labels[:, None] != region_labels[None, :]
    else:  # multi-hot labels: dissimilar when the label sets differ
        dissimilar = (region_labels[:, None] != region_labels[None, :]).any(-1)
    if not dissimilar.any():
        return embeddings.new_zeros(())
    similarity = regions @ regions.T
    return F.relu(similarity[dissimilar] - margin).mean()


class RoiAttentionPreTrainedModel(BackboneModelMixin, PreTrainedModel):
    config_class = RoiAttentionConfig
    config: RoiAttentionConfig
    base_model_prefix = "backbone"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, RoiAttentionForImageClassification) and module.cls_token is not None:
            init.normal_(module.cls_token, std=self.config.initializer_range)


class RoiAttentionForImageClassification(RoiAttentionPreTrainedModel):
    def __init__(self, config: RoiAttentionConfig):
        super().__init__(config)
        hidden = config.backbone_hidden_size
        self.num_labels = config.num_labels
        self.backbone = backbone_from_config(config.backbone_config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, hidden)) if config.pooling == "cls" else None
        self.layers = nn.ModuleList(RoiAttentionLayer(config) for _ in range(config.num_attention_layers))
        # not `layernorm`: transformers would take it for the backbone's own when loading (base_model_prefix)
        self.final_norm = nn.LayerNorm(hidden)
        self.attention_score = nn.Linear(hidden, 1) if config.pooling == "attention" else None
        self.classifier = nn.Linear(hidden, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        anchor_pixel_values: torch.Tensor,
        region_centers: torch.Tensor,
        region_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> RoiAttentionClassifierOutput:
        """pixel_values: (batch, regions, channels, size, size), each image's region crops padded to the most;
        anchor_pixel_values: (batch, channels, size, size), the whole breast; region_centers: (batch, regions, 2),
        (row, column) of each region's centre in [0, 1] of the image; region_mask: (batch, regions), 1 on regions."""
        batch, regions = pixel_values.shape[:2]
        if region_mask is None:
            region_mask = torch.ones(batch, regions, dtype=torch.bool, device=pixel_values.device)
        region_mask = region_mask.bool()
        # only the real regions go through the backbone: padding would shift BatchNorm's batch statistics in training
        real = pooled_features(self.backbone, pixel_values[region_mask])  # (regions in the batch, hidden)
        region_tokens = real.new_zeros(batch, regions, real.shape[-1]).masked_scatter(region_mask[..., None], real)
        anchor = pooled_features(self.backbone, anchor_pixel_values)[:, None]  # (batch, 1, hidden)
        # the anchor sits at the centre of the image, a CLS token (position 0) in front of everything
        positions = torch.cat([region_centers.new_full((batch, 1, 2), 0.5), region_centers], dim=1)
        tokens = torch.cat([anchor, region_tokens], dim=1)
        token_mask = torch.cat([torch.ones_like(region_mask[:, :1]), region_mask], dim=1)
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(batch, -1, -1), tokens], dim=1)
            positions = torch.cat([positions.new_zeros(batch, 1, 2), positions], dim=1)
            token_mask = torch.cat([token_mask[:, :1], token_mask], dim=1)
        positions = positions * self.config.rope_scale
        for layer in self.layers:
            tokens = layer(tokens, positions, token_mask)
        tokens = self.final_norm(tokens)
        pooled = self.pool(tokens, token_mask)
        logits = self.classifier(pooled)
        region_embeddings = tokens[:, -regions:]

        loss = classification_loss = contrastive_loss = None
        if labels is not None:
            classification_loss = self.loss_function(labels, logits, self.config)
            contrastive_loss = repulsive_contrastive_loss(
                region_embeddings, region_mask, labels, self.config.contrastive_margin
            )
            loss = classification_loss + self.config.contrastive_weight * contrastive_loss
        return RoiAttentionClassifierOutput(
            loss=loss,
            classification_loss=classification_loss,
            contrastive_loss=contrastive_loss,
            logits=logits,
            region_embeddings=region_embeddings,
        )

    def pool(self, tokens: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        pooling = self.config.pooling
        if pooling in ("cls", "anchor"):  # the first token: the CLS token when there is one, else the anchor
            return tokens[:, 0]
        weights = token_mask.to(tokens.dtype)
        if pooling == "attention":
            weights = self.attention_score(tokens).squeeze(-1).masked_fill(~token_mask, float("-inf")).softmax(-1)
        else:
            weights = weights / weights.sum(1, keepdim=True)
        return (weights.unsqueeze(-1) * tokens).sum(1)


__all__ = ["RoiAttentionClassifierOutput", "RoiAttentionForImageClassification", "RoiAttentionPreTrainedModel"]
