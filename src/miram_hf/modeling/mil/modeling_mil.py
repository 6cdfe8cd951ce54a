"""Whole-mammogram classification from a bag of tiled patches: a backbone per tile, then global average, gated
attention (Ilse, Tomczak and Welling 2018, "Attention-based Deep Multiple Instance Learning", eq. 9) or
self-attention pooling, then a linear classifier."""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, can_return_tuple

from .backbone import BackboneModelMixin, backbone_from_config, pooled_features
from .configuration_mil import MilConfig


@dataclass
class MilImageClassifierOutput(ModelOutput):
    """
    loss: classification loss, when labels are given.
    logits: (batch, num_labels).
    tile_weights: (batch, tiles), each tile's share of the pooled feature (0 on padding; sums to 1 per image), with
        `output_attentions=True`.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    tile_weights: torch.Tensor | None = None


class MilMeanPooling(nn.Module):
    def __init__(self, config: MilConfig):
        super().__init__()

    def forward(self, features: torch.Tensor, tile_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = tile_mask / tile_mask.sum(1, keepdim=True)
        return (weights.unsqueeze(-1) * features).sum(1), weights


class MilGatedAttentionPooling(nn.Module):
    """a_k = softmax_k(w^T (tanh(V h_k) * sigmoid(U h_k))), pooled z = sum_k a_k h_k."""

    def __init__(self, config: MilConfig):
        super().__init__()
        self.attention_v = nn.Linear(config.backbone_hidden_size, config.attention_hidden_size)
        self.attention_u = nn.Linear(config.backbone_hidden_size, config.attention_hidden_size)
        self.attention_w = nn.Linear(config.attention_hidden_size, 1)

    def forward(self, features: torch.Tensor, tile_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gates = torch.tanh(self.attention_v(features)) * torch.sigmoid(self.attention_u(features))
        scores = self.attention_w(gates).squeeze(-1).masked_fill(~tile_mask.bool(), float("-inf"))
        weights = scores.softmax(dim=1)  # (batch, tiles)
        return (weights.unsqueeze(-1) * features).sum(1), weights


class MilMultiheadAttention(nn.Module):
    """`nn.MultiheadAttention`'s self-attention with its weight names (saved weights load as they are), each weight
    used by its own module: under accelerate's disk offload a child's weight is loaded only when the child is called,
    which `nn.MultiheadAttention` never does for its output projection. Returns the output and the attention weights
    averaged over the heads."""

    def __init__(self, hidden: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * hidden, hidden))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * hidden))
        self.out_proj = nn.Linear(hidden, hidden)

    def forward(self, tokens: torch.Tensor, key_padding_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, length, hidden = tokens.shape
        projected = F.linear(tokens, self.in_proj_weight, self.in_proj_bias)
        query, key, value = projected.view(batch, length, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
        weights = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf")).softmax(-1)
        attended = (weights @ value).transpose(1, 2).reshape(batch, length, hidden)
        return self.out_proj(attended), weights.mean(1)


class MilSelfAttentionPooling(nn.Module):
    """A pre-norm transformer layer over [CLS, tiles]; the CLS output is the pooled feature and its attention to the
    tiles (averaged over heads, renormalised over the tiles) the tile weights."""

    def __init__(self, config: MilConfig):
        super().__init__()
        hidden = config.backbone_hidden_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, hidden))
        self.norm = nn.LayerNorm(hidden)
        self.attention = MilMultiheadAttention(hidden, config.num_attention_heads)
        self.mlp_norm = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, hidden))

    def forward(self, features: torch.Tensor, tile_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = torch.cat([self.cls_token.expand(len(features), -1, -1), features], dim=1)
        padding = torch.cat([tile_mask.new_zeros(len(features), 1), ~tile_mask.bool()], dim=1).bool()
        normed = self.norm(tokens)
        attended, weights = self.attention(normed, key_padding_mask=padding)
        tokens = tokens + attended
        tokens = tokens + self.mlp(self.mlp_norm(tokens))
        tile_weights = weights[:, 0, 1:]  # the CLS's attention to the tiles, less what it pays itself
        return tokens[:, 0], tile_weights / tile_weights.sum(1, keepdim=True)


POOLING_CLASSES = {"gap": MilMeanPooling, "gated_attention": MilGatedAttentionPooling,
                   "self_attention": MilSelfAttentionPooling}  # fmt: skip


class MilPreTrainedModel(BackboneModelMixin, PreTrainedModel):
    config_class = MilConfig
    config: MilConfig
    base_model_prefix = "backbone"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, MilSelfAttentionPooling):
            init.normal_(module.cls_token, std=self.config.initializer_range)
        elif isinstance(module, MilMultiheadAttention):  # as nn.MultiheadAttention initialises itself
            init.xavier_uniform_(module.in_proj_weight)
            init.zeros_(module.in_proj_bias)
            init.zeros_(module.out_proj.bias)


class MilForImageClassification(MilPreTrainedModel):
    def __init__(self, config: MilConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.backbone = backbone_from_config(config.backbone_config)
        self.pooling = POOLING_CLASSES[config.pooling](config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.backbone_hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        tile_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> MilImageClassifierOutput:
        """pixel_values: (batch, tiles, channels, tile_size, tile_size), each image's bag, padded to the longest;
        tile_mask: (batch, tiles), 1 for a tile and 0 for padding (all tiles when None)."""
        batch, tiles = pixel_values.shape[:2]
        if tile_mask is None:
            tile_mask = pixel_values.new_ones(batch, tiles, dtype=torch.bool)
        tile_mask = tile_mask.bool()
        # only the real tiles go through the backbone: padding would shift BatchNorm's batch statistics in training
        real = pooled_features(self.backbone, pixel_values[tile_mask])  # (tiles in the batch, hidden)
        features = real.new_zeros(batch, tiles, real.shape[-1]).masked_scatter(tile_mask[..., None], real)
        pooled, weights = self.pooling(features, tile_mask.to(features.dtype))
        logits = self.classifier(self.dropout(pooled))
        loss = self.loss_function(labels, logits, self.config) if labels is not None else None
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        return MilImageClassifierOutput(loss=loss, logits=logits, tile_weights=weights if output_attentions else None)


__all__ = ["MilForImageClassification", "MilImageClassifierOutput", "MilPreTrainedModel"]
