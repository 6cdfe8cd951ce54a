"""PyTorch MIRAM: masked image reconstruction across multiple scales.

A ViT masked autoencoder (He et al. 2022) with one decoder per reconstruction scale (Nguyen et al., "MIRAM: Masked
Image Reconstruction Across Multiple Scales for Breast Lesion Risk Prediction"). The decoder of scale f duplicates each
token of the encoder grid into an f x f block, so the copies differ only by the decoder's position embedding, and
predicts the image at f times the input size.

This file imports only torch, transformers and its siblings so that a saved model loads with `trust_remote_code=True`.
"""

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import ImageClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs, can_return_tuple, logging

try:  # transformers 5.2 and later
    from transformers.utils.output_capturing import OutputRecorder, capture_outputs
except ImportError:  # 5.0 and 5.1: the same capture, in the decorator that also merged config defaults
    from transformers.utils.generic import OutputRecorder
    from transformers.utils.generic import check_model_inputs as capture_outputs

from .configuration_miram import LINEAR_ATTENTIONS, MiramConfig
from .linear_attention_miram import (
    favor_attention,
    linformer_attention,
    nystrom_attention,
    orthogonal_gaussian_features,
)

logger = logging.get_logger(__name__)


@dataclass
class MiramModelOutput(ModelOutput):
    """
    last_hidden_state: (batch, 1 + visible tokens, hidden_size), CLS token first.
    mask: (batch, tokens), 1 where the patch was masked, 0 where it was kept.
    ids_restore: (batch, tokens), the permutation that puts the shuffled tokens back in grid order.
    """

    last_hidden_state: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    ids_restore: torch.LongTensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class MiramForPreTrainingOutput(ModelOutput):
    """
    loss: weighted mean of `scale_losses`.
    scale_losses: (num_scales,), the masked-patch MSE of each scale.
    logits: one tensor per scale, (batch, (f * rows) * (f * columns), patch_size**2 * num_channels).
    mask, ids_restore: as in `MiramModelOutput`, at the encoder's grid.
    """

    loss: torch.Tensor | None = None
    scale_losses: torch.Tensor | None = None
    logits: tuple[torch.Tensor, ...] | None = None
    mask: torch.Tensor | None = None
    ids_restore: torch.LongTensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


def sincos_position_embedding(grid_height: int, grid_width: int, dim: int) -> torch.Tensor:
    """2-D sin-cos position embedding of a token grid, with a zero row for the CLS token: (1 + h * w, dim).

    The channels are laid out [sin(col) | cos(col) | sin(row) | cos(row)]: the original MAE swapped h and w in its
    meshgrid and its checkpoints (and transformers' ViTMAE) depend on that layout.
    """
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    rows, cols = torch.meshgrid(
        torch.arange(grid_height, dtype=torch.float64), torch.arange(grid_width, dtype=torch.float64), indexing="ij"
    )
    col_angles, row_angles = cols.flatten().outer(omega), rows.flatten().outer(omega)
    embedding = torch.cat([col_angles.sin(), col_angles.cos(), row_angles.sin(), row_angles.cos()], dim=1)
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), embedding]).float()


def interpolate_position_embedding(
    position_embedding: torch.Tensor, grid: tuple[int, int], new_grid: tuple[int, int]
) -> torch.Tensor:
    """Resample (1, 1 + h * w, dim) position embeddings to another token grid (bicubic, as transformers' ViTMAE)."""
    if tuple(grid) == tuple(new_grid):
        return position_embedding
    cls_embedding, patch_embedding = position_embedding[:, :1], position_embedding[:, 1:]
    dim = position_embedding.shape[-1]
    patch_embedding = patch_embedding.reshape(1, *grid, dim).permute(0, 3, 1, 2)
    patch_embedding = nn.functional.interpolate(patch_embedding, size=new_grid, mode="bicubic", align_corners=False)
    return torch.cat([cls_embedding, patch_embedding.permute(0, 2, 3, 1).reshape(1, -1, dim)], dim=1)


def duplicate_tokens(tokens: torch.Tensor, grid: tuple[int, int], factor: int) -> torch.Tensor:
    """Duplicate interpolation: (batch, h * w, dim) -> (batch, (f * h) * (f * w), dim), each token copied to an f x f
    block of the finer grid (row-major)."""
    if factor == 1:
        return tokens
    batch, _, dim = tokens.shape
    tokens = tokens.reshape(batch, *grid, dim)
    tokens = tokens.repeat_interleave(factor, dim=1).repeat_interleave(factor, dim=2)
    return tokens.reshape(batch, -1, dim)


def patchify(pixel_values: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(batch, channels, H, W) -> (batch, (H/p) * (W/p), p * p * channels), pixels of a patch channel-last (ViTMAE's
    order)."""
    batch, channels, height, width = pixel_values.shape
    p = patch_size
    patches = pixel_values.reshape(batch, channels, height // p, p, width // p, p)
    return patches.permute(0, 2, 4, 3, 5, 1).reshape(batch, (height // p) * (width // p), p * p * channels)


def patch_targets(pixel_values: torch.Tensor, patch_size: int, norm_pix_loss: bool) -> torch.Tensor:
    """What MAE's decoder predicts: the patches of `pixel_values`, each normalised by its mean and variance with
    `norm_pix_loss`."""
    target = patchify(pixel_values, patch_size)
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.0e-6) ** 0.5
    return target


def drop_path(hidden_states: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample (Huang et al. 2016), as in the MAE fine-tuning recipe."""
    if drop_prob == 0.0 or not training:
        return hidden_states
    keep_prob = 1 - drop_prob
    shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
    keep = hidden_states.new_empty(shape).bernoulli_(keep_prob)
    return hidden_states * keep / keep_prob


class MiramPatchEmbeddings(nn.Module):
    """(batch, channels, height, width) -> (batch, rows * columns, hidden_size), patches in row-major order."""

    def __init__(self, config: MiramConfig):
        super().__init__()
        self.patch_size = config.patch_size
        self.num_channels = config.num_channels
        self.projection = nn.Conv2d(
            config.num_channels, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_size
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        channels, height, width = pixel_values.shape[1:]
        if channels != self.num_channels:
            raise ValueError(f"pixel_values have {channels} channels but the model was built for {self.num_channels}.")
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"pixel_values of size {height}x{width} do not divide into {self.patch_size}-pixel patches."
            )
        return self.projection(pixel_values).flatten(2).transpose(1, 2)


class MiramEmbeddings(nn.Module):
    """CLS token, patch embeddings and fixed sin-cos position embeddings, with MAE's random masking."""

    def __init__(self, config: MiramConfig):
        super().__init__()
        self.config = config
        self.grid = config.patch_grid
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.patch_embeddings = MiramPatchEmbeddings(config)
        # fixed sin-cos, as in MAE: a buffer, because transformers' loader makes every weight it loads trainable
        self.register_buffer("position_embeddings", torch.zeros(1, 1 + self.grid[0] * self.grid[1], config.hidden_size))

    def random_masking(
        self, sequence: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.LongTensor]:
        """Keep the `(1 - mask_ratio)` share of tokens with the smallest `noise` (uniform when not given)."""
        batch, tokens, dim = sequence.shape
        if mask_ratio == 0.0:
            # no shuffling: the features stay in grid order for feature extraction and classification
            ids_restore = torch.arange(tokens, device=sequence.device).expand(batch, -1)
            return sequence, sequence.new_zeros(batch, tokens), ids_restore
        len_keep = int(tokens * (1 - mask_ratio))
        if noise is None:
            noise = torch.rand(batch, tokens, device=sequence.device)
        ids_shuffle = torch.argsort(noise, dim=1).to(sequence.device)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        sequence_kept = torch.gather(sequence, dim=1, index=ids_keep.unsqueeze(-1).expand(-1, -1, dim))
        mask = torch.ones(batch, tokens, device=sequence.device)
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, dim=1, index=ids_restore)
        return sequence_kept, mask, ids_restore

    def forward(
        self,
        pixel_values: torch.Tensor,
        mask_ratio: float,
        noise: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.LongTensor]:
        height, width = pixel_values.shape[-2:]
        embeddings = self.patch_embeddings(pixel_values)
        grid = (height // self.config.patch_size, width // self.config.patch_size)
        if grid != self.grid and not interpolate_pos_encoding:
            expected = self.config.image_height_width
            raise ValueError(
                f"Input image size ({height}x{width}) doesn't match the model ({expected[0]}x{expected[1]}): "
                "resize the input or pass interpolate_pos_encoding=True."
            )
        position_embeddings = interpolate_position_embedding(self.position_embeddings, self.grid, grid)
        embeddings = embeddings + position_embeddings[:, 1:]
        embeddings, mask, ids_restore = self.random_masking(embeddings, mask_ratio, noise)
        cls_tokens = (self.cls_token + position_embeddings[:, :1]).expand(embeddings.shape[0], -1, -1)
        return torch.cat([cls_tokens, embeddings], dim=1), mask, ids_restore


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


class MiramAttention(nn.Module):
    """Multi-head self-attention with exact softmax attention through transformers' attention interface
    (`implementation` is "sdpa", "eager", "flash_attention_2", ...; None follows `config._attn_implementation`, as
    the encoder does). The linear variants below override `attend`."""

    def __init__(self, config: MiramConfig, hidden_size: int, num_heads: int, implementation: str | None):
        super().__init__()
        self.config = config
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scaling = self.head_dim**-0.5
        self.dropout = config.attention_probs_dropout_prob
        self.implementation = implementation
        self.is_causal = False
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=config.qkv_bias)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=config.qkv_bias)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=config.qkv_bias)
        self.o_proj = nn.Linear(hidden_size, hidden_size)

    def attend(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, output_attentions: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(batch, heads, tokens, head_dim) x3 -> (batch, tokens, heads, head_dim), attention weights or None."""
        # only the eager path materialises the weights, so asking for them selects it
        implementation = "eager" if output_attentions else self.implementation or self.config._attn_implementation
        interface = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        dropout = self.dropout if self.training else 0.0
        return interface(self, query, key, value, None, dropout=dropout, scaling=self.scaling)

    def forward(
        self, hidden_states: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, tokens, _ = hidden_states.shape
        heads_shape = (batch, tokens, self.num_heads, self.head_dim)
        query = self.q_proj(hidden_states).view(heads_shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(heads_shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(heads_shape).transpose(1, 2)
        output, weights = self.attend(query, key, value, output_attentions)
        return self.o_proj(output.reshape(batch, tokens, -1)), weights


class MiramNystromAttention(MiramAttention):
    """Nystromformer (Xiong et al. 2021): segment-mean landmarks, iterative pseudo-inverse, and the reference code's
    depthwise convolution over the values as a skip connection."""

    def __init__(self, config: MiramConfig, hidden_size: int, num_heads: int):
        super().__init__(config, hidden_size, num_heads, "nystromformer")
        self.num_landmarks = config.num_landmarks
        self.pinv_iterations = config.nystrom_pinv_iterations
        kernel = config.nystrom_conv_kernel_size
        self.value_conv = (
            nn.Conv2d(num_heads, num_heads, (kernel, 1), padding=(kernel // 2, 0), groups=num_heads, bias=False)
            if kernel
            else None
        )

    def attend(self, query, key, value, output_attentions):
        output = nystrom_attention(query, key, value, self.num_landmarks, self.pinv_iterations)
        if self.value_conv is not None:
            output = output + self.value_conv(value)
        return output.transpose(1, 2), None


class MiramPerformerAttention(MiramAttention):
    """Performer (Choromanski et al. 2021) with FAVOR+ positive orthogonal random features. The features are drawn
    from `seed` and stored with the weights; `redraw_features()` draws new ones."""

    def __init__(self, config: MiramConfig, hidden_size: int, num_heads: int, seed: int = 0):
        super().__init__(config, hidden_size, num_heads, "performer")
        self.seed = seed
        self.register_buffer("projection", torch.empty(config.performer_features, self.head_dim))

    @torch.no_grad()
    def redraw_features(self, seed: int | None = None) -> None:
        self.seed = self.seed + 1 if seed is None else seed
        features = orthogonal_gaussian_features(self.projection.shape[0], self.head_dim, self.seed)
        self.projection.copy_(features)

    def attend(self, query, key, value, output_attentions):
        return favor_attention(query, key, value, self.projection).transpose(1, 2), None


class MiramLinformerAttention(MiramAttention):
    """Linformer (Wang et al. 2020): learned (k, n) projections of keys and values along the tokens, shared across
    heads. They tie the layer to one token count n."""

    def __init__(self, config: MiramConfig, hidden_size: int, num_heads: int, num_tokens: int):
        super().__init__(config, hidden_size, num_heads, "linformer")
        self.num_tokens = num_tokens
        self.key_projection = nn.Parameter(torch.empty(config.linformer_k, num_tokens))
        self.value_projection = nn.Parameter(torch.empty(config.linformer_k, num_tokens))

    def attend(self, query, key, value, output_attentions):
        if query.shape[-2] != self.num_tokens:
            raise ValueError(
                f"Linformer attention was built for {self.num_tokens} tokens but got {query.shape[-2]}: its learned "
                "projections tie it to one input size. Feed images of the configured image_size, or pick another "
                "decoder_attention for this scale."
            )
        output = linformer_attention(query, key, value, self.key_projection, self.value_projection)
        return output.transpose(1, 2), None


class MiramMLP(nn.Module):
    def __init__(self, config: MiramConfig, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.activation_fn = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(intermediate_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_fn(self.fc1(hidden_states)))


def build_attention(
    config: MiramConfig, hidden_size: int, num_heads: int, attention: str | None, num_tokens: int, layer_idx: int
) -> MiramAttention:
    if attention == "nystromformer":
        return MiramNystromAttention(config, hidden_size, num_heads)
    if attention == "performer":
        return MiramPerformerAttention(config, hidden_size, num_heads, seed=config.performer_seed + layer_idx)
    if attention == "linformer":
        return MiramLinformerAttention(config, hidden_size, num_heads, num_tokens)
    if attention not in (None, "eager") and attention not in ALL_ATTENTION_FUNCTIONS:
        known = ["eager", *ALL_ATTENTION_FUNCTIONS.keys(), *LINEAR_ATTENTIONS]
        raise ValueError(f"Unknown attention {attention!r}; choose one of {known}.")
    return MiramAttention(config, hidden_size, num_heads, attention)


class MiramLayer(GradientCheckpointingLayer):
    """Pre-norm transformer block, as ViTMAE's, with optional stochastic depth."""

    def __init__(
        self,
        config: MiramConfig,
        hidden_size: int,
        num_heads: int,
        intermediate_size: int,
        attention: str | None,
        num_tokens: int,
        layer_idx: int = 0,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.attention = build_attention(config, hidden_size, num_heads, attention, num_tokens, layer_idx)
        self.layernorm_after = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.mlp = MiramMLP(config, hidden_size, intermediate_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.drop_path_rate = drop_path_rate

    def forward(
        self, hidden_states: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attention_output, weights = self.attention(self.layernorm_before(hidden_states), output_attentions)
        hidden_states = hidden_states + drop_path(self.dropout(attention_output), self.drop_path_rate, self.training)
        mlp_output = self.mlp(self.layernorm_after(hidden_states))
        hidden_states = hidden_states + drop_path(self.dropout(mlp_output), self.drop_path_rate, self.training)
        return hidden_states, weights


class MiramDecoder(nn.Module):
    """The decoder of one reconstruction scale f: embed the visible tokens, fill in mask tokens, unshuffle, duplicate
    the grid f times in each direction, add the decoder position embedding of the finer grid, run the blocks and
    predict the pixels of each (f x finer) patch."""

    def __init__(self, config: MiramConfig, scale: int, attention: str):
        super().__init__()
        self.scale = scale
        self.grid = (config.patch_grid[0] * scale, config.patch_grid[1] * scale)
        num_tokens = 1 + self.grid[0] * self.grid[1]
        self.decoder_embed = nn.Linear(config.hidden_size, config.decoder_hidden_size)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.decoder_hidden_size))
        self.register_buffer("decoder_pos_embed", torch.zeros(1, num_tokens, config.decoder_hidden_size))  # fixed
        self.decoder_layers = nn.ModuleList(
            MiramLayer(
                config,
                config.decoder_hidden_size,
                config.decoder_num_attention_heads,
                config.decoder_intermediate_size,
                attention,
                num_tokens,
                layer_idx=i,
            )
            for i in range(config.decoder_num_hidden_layers)
        )
        self.decoder_norm = nn.LayerNorm(config.decoder_hidden_size, eps=config.layer_norm_eps)
        self.decoder_pred = nn.Linear(config.decoder_hidden_size, config.patch_size**2 * config.num_channels)

    def forward(
        self, hidden_states: torch.Tensor, ids_restore: torch.LongTensor, grid: tuple[int, int]
    ) -> torch.Tensor:
        hidden_states = self.decoder_embed(hidden_states)  # (batch, 1 + visible, decoder_dim)
        batch, _, dim = hidden_states.shape
        mask_tokens = self.mask_token.expand(batch, ids_restore.shape[1] + 1 - hidden_states.shape[1], -1)
        patch_tokens = torch.cat([hidden_states[:, 1:], mask_tokens], dim=1)
        patch_tokens = torch.gather(patch_tokens, dim=1, index=ids_restore.unsqueeze(-1).expand(-1, -1, dim))
        patch_tokens = duplicate_tokens(patch_tokens, grid, self.scale)  # (batch, f*h * f*w, decoder_dim)
        hidden_states = torch.cat([hidden_states[:, :1], patch_tokens], dim=1)
        fine_grid = (grid[0] * self.scale, grid[1] * self.scale)
        hidden_states = hidden_states + interpolate_position_embedding(self.decoder_pos_embed, self.grid, fine_grid)
        for layer in self.decoder_layers:
            hidden_states, _ = layer(hidden_states)
        logits = self.decoder_pred(self.decoder_norm(hidden_states))
        return logits[:, 1:]  # (batch, f*h * f*w, patch_size**2 * channels)


class MiramPreTrainedModel(PreTrainedModel):
    config_class = MiramConfig
    config: MiramConfig
    base_model_prefix = "miram"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["MiramEmbeddings", "MiramLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            # MAE initialises its linear layers with xavier_uniform (models_mae.py), not normal(std)
            init.xavier_uniform_(module.weight)
        elif isinstance(module, MiramEmbeddings):
            init.copy_(
                module.position_embeddings, sincos_position_embedding(*module.grid, self.config.hidden_size)[None]
            )
            weight = module.patch_embeddings.projection.weight
            if not getattr(weight, "_is_hf_initialized", False):
                # like nn.Linear, as MAE does; a view loses the loaded-weight flag, hence the explicit check
                init.xavier_uniform_(weight.view(weight.shape[0], -1))
            init.normal_(module.cls_token, std=std)
        elif isinstance(module, MiramDecoder):
            embedding = sincos_position_embedding(*module.grid, self.config.decoder_hidden_size)
            init.copy_(module.decoder_pos_embed, embedding[None])
            init.normal_(module.mask_token, std=std)
        elif isinstance(module, MiramPerformerAttention):
            init.copy_(module.projection, orthogonal_gaussian_features(*module.projection.shape, module.seed))
        elif isinstance(module, MiramLinformerAttention):
            bound = module.key_projection.shape[0] ** -0.5
            init.uniform_(module.key_projection, -bound, bound)
            init.uniform_(module.value_projection, -bound, bound)


class MiramModel(MiramPreTrainedModel):
    """The MIRAM encoder: a ViT over the visible (unmasked) patches. With `mask_ratio=0` (in the config or the call)
    it encodes every patch, in grid order."""

    _keys_to_ignore_on_load_unexpected = [r"^decoders\."]  # loaded from pretraining weights: the decoders stay out
    # transformers' output capture: the input of the first block and every block's output, every attention's weights
    _can_record_outputs = {"hidden_states": MiramLayer, "attentions": OutputRecorder(MiramAttention, index=1)}

    def __init__(self, config: MiramConfig):
        super().__init__(config)
        self.embeddings = MiramEmbeddings(config)
        num_tokens = 1 + config.patch_grid[0] * config.patch_grid[1]
        drop_rates = torch.linspace(0, config.drop_path_rate, config.num_hidden_layers).tolist()
        self.layers = nn.ModuleList(
            MiramLayer(
                config,
                config.hidden_size,
                config.num_attention_heads,
                config.intermediate_size,
                None,
                num_tokens,
                layer_idx=i,
                drop_path_rate=drop_rates[i],
            )
            for i in range(config.num_hidden_layers)
        )
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> MiramPatchEmbeddings:
        return self.embeddings.patch_embeddings

    @capture_outputs(tie_last_hidden_states=False)  # hidden_states end with the last block's, before the norm
    def forward(
        self,
        pixel_values: torch.Tensor,
        noise: torch.Tensor | None = None,
        mask_ratio: float | None = None,
        interpolate_pos_encoding: bool = False,
        target_pixel_values: Sequence[torch.Tensor] | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MiramModelOutput:
        r"""
        target_pixel_values: a pretraining processor's reconstruction targets, ignored here, so that
            `model(**processor(images))` works with the processor saved next to pretrained weights.
        """
        # attention weights exist only on the eager path: asking for them selects it, whatever the implementation
        output_attentions = kwargs.get("output_attentions")
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        mask_ratio = self.config.mask_ratio if mask_ratio is None else mask_ratio
        hidden_states, mask, ids_restore = self.embeddings(
            pixel_values, mask_ratio, noise=noise, interpolate_pos_encoding=interpolate_pos_encoding
        )
        for layer in self.layers:
            hidden_states, _ = layer(hidden_states, output_attentions)
        return MiramModelOutput(last_hidden_state=self.layernorm(hidden_states), mask=mask, ids_restore=ids_restore)


class MiramForPreTraining(MiramPreTrainedModel):
    """MIRAM encoder with one decoder per scale in `config.scales`; the loss is the weighted mean of each scale's MAE
    loss on its masked patches."""

    def __init__(self, config: MiramConfig):
        super().__init__(config)
        self.miram = MiramModel(config)
        self.decoders = nn.ModuleList(
            MiramDecoder(config, scale, attention)
            for scale, attention in zip(config.scales, config.decoder_attention, strict=True)
        )
        self.post_init()

    def get_input_embeddings(self) -> MiramPatchEmbeddings:
        return self.miram.embeddings.patch_embeddings

    def patchify(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(batch, channels, H, W) -> (batch, (H/p) * (W/p), p * p * channels), pixels of a patch channel-last."""
        return patchify(pixel_values, self.config.patch_size)

    def unpatchify(self, patches: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Inverse of `patchify` for an image of `image_size` (height, width)."""
        p, channels = self.config.patch_size, self.config.num_channels
        rows, cols = image_size[0] // p, image_size[1] // p
        pixels = patches.reshape(patches.shape[0], rows, cols, p, p, channels).permute(0, 5, 1, 3, 2, 4)
        return pixels.reshape(patches.shape[0], channels, rows * p, cols * p)

    def reconstruction_loss(self, target: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """MAE loss: per-patch MSE (targets optionally normalised per patch), averaged over the masked patches."""
        target = patch_targets(target, self.config.patch_size, self.config.norm_pix_loss)
        loss = ((logits - target) ** 2).mean(dim=-1)
        masked = mask.sum()  # none (mask_ratio=0): plain auto-encoding of every patch; no Python branch, for compile
        return torch.where(masked > 0, (loss * mask).sum() / masked.clamp(min=1), loss.mean())

    def scale_targets(
        self, pixel_values: torch.Tensor, target_pixel_values: Sequence[torch.Tensor] | None
    ) -> list[torch.Tensor]:
        batch, channels, height, width = pixel_values.shape
        if target_pixel_values is None:
            if any(scale != 1 for scale in self.config.scales):
                logger.warning_once(
                    "MiramForPreTraining got no target_pixel_values: the higher scales reconstruct an upsampled copy "
                    "of the input, which holds no finer detail. Pass the processor's target_pixel_values, cut from "
                    "the native resolution."
                )
            return [
                pixel_values
                if scale == 1
                else nn.functional.interpolate(pixel_values, scale_factor=scale, mode="bicubic", align_corners=False)
                for scale in self.config.scales
            ]
        if len(target_pixel_values) != len(self.config.scales):
            raise ValueError(
                f"target_pixel_values has {len(target_pixel_values)} entries but the model has scales "
                f"{self.config.scales}: pass one image per scale."
            )
        for scale, target in zip(self.config.scales, target_pixel_values, strict=True):
            expected = (batch, channels, height * scale, width * scale)
            if tuple(target.shape) != expected:
                raise ValueError(
                    f"target_pixel_values for scale {scale} has shape {tuple(target.shape)}, expected {expected} "
                    f"({scale} times the input size)."
                )
        return list(target_pixel_values)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        target_pixel_values: Sequence[torch.Tensor] | None = None,
        noise: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MiramForPreTrainingOutput:
        outputs = self.miram(
            pixel_values, return_dict=True, noise=noise, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs
        )
        grid = (pixel_values.shape[-2] // self.config.patch_size, pixel_values.shape[-1] // self.config.patch_size)
        targets = self.scale_targets(pixel_values, target_pixel_values)
        all_logits, scale_losses = [], []
        for decoder, target in zip(self.decoders, targets, strict=True):
            logits = decoder(outputs.last_hidden_state, outputs.ids_restore, grid)
            mask = duplicate_tokens(outputs.mask.unsqueeze(-1), grid, decoder.scale).squeeze(-1)
            scale_losses.append(self.reconstruction_loss(target, logits, mask))
            all_logits.append(logits)
        scale_losses = torch.stack(scale_losses)
        weights = torch.tensor(self.config.scale_loss_weights, device=scale_losses.device, dtype=scale_losses.dtype)
        return MiramForPreTrainingOutput(
            loss=(weights * scale_losses).sum() / weights.sum(),
            scale_losses=scale_losses,
            logits=tuple(all_logits),
            mask=outputs.mask,
            ids_restore=outputs.ids_restore,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )

    def backbone_for_image_classification(self, **config_kwargs) -> "MiramForImageClassification":
        """The encoder in a new `MiramForImageClassification` with a fresh head, where MAE's fine-tuning starts;
        `config_kwargs` (`num_labels`, `id2label`, `problem_type`, `drop_path_rate`, ...) go to its config. With
        `num_labels=0` there is no head, and the logits are the pooled features a head would read."""
        config = copy.deepcopy(self.config)
        config.update(config_kwargs)
        classifier = MiramForImageClassification(config)
        classifier.miram.load_state_dict(self.miram.state_dict())
        return classifier

    @classmethod
    def from_vit_mae(cls, model_or_path: "PreTrainedModel | str", **config_overrides) -> "MiramForPreTraining":
        """Start MIRAM from a transformers `ViTMAEForPreTraining` or `ViTMAEModel` (a model, a local folder or a Hub
        id): the encoder and the scale-1 decoder take its weights, the other decoders start fresh. `config_overrides`
        set MiramConfig fields (`scales`, `decoder_attention`, ...). With `scales=[1]` the result reproduces ViTMAE."""
        if isinstance(model_or_path, str):
            from transformers import ViTMAEForPreTraining

            model_or_path = ViTMAEForPreTraining.from_pretrained(model_or_path)
        fields = {name: getattr(model_or_path.config, name) for name in VIT_MAE_CONFIG_FIELDS}
        config = MiramConfig(**{**fields, **config_overrides})
        model = cls(config)
        encoder = getattr(model_or_path, "vit", model_or_path)
        state_dict = {f"miram.{rename_vit_mae_key(k)}": v for k, v in encoder.state_dict().items()}
        loaded_prefixes = ("miram.",)
        decoder = getattr(model_or_path, "decoder", None)
        if decoder is not None and 1 in config.scales:
            prefix = f"decoders.{config.scales.index(1)}."
            state_dict.update({prefix + rename_vit_mae_key(k): v for k, v in decoder.state_dict().items()})
            loaded_prefixes += (prefix,)
        # fixed sin-cos tables: at another image size MIRAM keeps its own, made for its grid
        own_shapes = {k: v.shape for k, v in model.state_dict().items()}
        state_dict = {
            k: v
            for k, v in state_dict.items()
            if k not in own_shapes or v.shape == own_shapes[k] or not k.endswith(POSITION_EMBEDDINGS)
        }
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
        # what may stay fresh: the other decoders, extras of linear attention that ViTMAE does not have, and the
        # position tables left out above
        not_loaded = [
            k
            for k in missing
            if k.startswith(loaded_prefixes) and not k.endswith(LINEAR_ATTENTION_EXTRAS + POSITION_EMBEDDINGS)
        ]
        if unexpected or not_loaded:
            raise ValueError(
                f"ViTMAE and MIRAM weights do not match: no MIRAM counterpart for {unexpected}, "
                f"not found in the ViTMAE weights: {not_loaded}."
            )
        return model


# ViTMAEConfig fields that MiramConfig shares, copied by `from_vit_mae`.
VIT_MAE_CONFIG_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "initializer_range",
    "layer_norm_eps",
    "image_size",
    "patch_size",
    "num_channels",
    "qkv_bias",
    "decoder_num_attention_heads",
    "decoder_hidden_size",
    "decoder_num_hidden_layers",
    "decoder_intermediate_size",
    "mask_ratio",
    "norm_pix_loss",
)
POSITION_EMBEDDINGS = ("position_embeddings", "decoder_pos_embed")
LINEAR_ATTENTION_EXTRAS = ("value_conv.weight", "projection", "key_projection", "value_projection")

# ViTMAE module names across transformers versions -> MIRAM's. transformers 5 already names its modules as MIRAM does
# (layers.N.attention.q_proj, mlp.fc1, ...); 4.x used encoder.layer.N.attention.attention.query and friends.
VIT_MAE_KEY_RENAMES = (
    (r"^encoder\.layer\.", "layers."),
    (r"attention\.attention\.query\.", "attention.q_proj."),
    (r"attention\.attention\.key\.", "attention.k_proj."),
    (r"attention\.attention\.value\.", "attention.v_proj."),
    (r"attention\.output\.dense\.", "attention.o_proj."),
    (r"intermediate\.dense\.", "mlp.fc1."),
    (r"(layers\.\d+)\.output\.dense\.", r"\1.mlp.fc2."),
)


def rename_vit_mae_key(key: str) -> str:
    for pattern, replacement in VIT_MAE_KEY_RENAMES:
        key = re.sub(pattern, replacement, key)
    return key


class MiramForImageClassification(MiramPreTrainedModel):
    """MIRAM encoder with a linear head on the mean of the patch tokens (MAE fine-tuning, `use_mean_pooling=True`) or
    on the CLS token. Never masks. `problem_type` "single_label_classification" or "multi_label_classification"
    (or "regression"); inferred from the labels when unset, as in transformers."""

    _keys_to_ignore_on_load_unexpected = [r"^decoders\."]  # loaded from pretraining weights: the decoders stay out

    def __init__(self, config: MiramConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.miram = MiramModel(config)
        self.fc_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.use_mean_pooling else None
        self.classifier = nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if module is getattr(self, "classifier", None) and isinstance(module, nn.Linear):
            init.normal_(module.weight, std=2e-5)  # MAE fine-tuning starts the head near zero (main_finetune.py)

    def get_input_embeddings(self) -> MiramPatchEmbeddings:
        return self.miram.embeddings.patch_embeddings

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        target_pixel_values: Sequence[torch.Tensor] | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> ImageClassifierOutput:
        r"""
        target_pixel_values: a pretraining processor's reconstruction targets, ignored (see `MiramModel.forward`).
        """
        outputs = self.miram(
            pixel_values, return_dict=True, mask_ratio=0.0, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs
        )
        sequence_output = outputs.last_hidden_state
        if self.fc_norm is not None:
            pooled = self.fc_norm(sequence_output[:, 1:].mean(dim=1))
        else:
            pooled = sequence_output[:, 0]
        logits = self.classifier(pooled)
        loss = self.loss_function(labels, logits, self.config) if labels is not None else None
        return ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


__all__ = ["MiramForImageClassification", "MiramForPreTraining", "MiramModel", "MiramPreTrainedModel"]
