"""Optimizer parameter groups: weight decay off biases, norms and tokens; optional layer-wise lr decay (BEiT / MAE)."""

import re

from torch import nn

_LAYER_INDEX = re.compile(r"\.layers?\.(\d+)\.")
_NO_DECAY_NAMES = ("cls_token", "mask_token", "position_embeddings", "pos_embed")


def layer_id(name: str, num_layers: int) -> int:
    """Depth of a ViT-style parameter for layer-wise lr decay: 0 for the embeddings, i + 1 for block i, and
    num_layers + 1 for what follows the blocks (final norm, pooling norm, head). Decoders (pretraining only) count
    as the top."""
    if "decoder" in name:
        return num_layers + 1
    if "embeddings" in name or name.split(".")[-1] in _NO_DECAY_NAMES:
        return 0
    match = _LAYER_INDEX.search(name)
    return int(match.group(1)) + 1 if match else num_layers + 1


def parameter_groups(
    model: nn.Module, learning_rate: float, weight_decay: float, layer_decay: float | None = None
) -> list[dict]:
    """Parameter groups for `torch.optim.AdamW(groups)`.

    Biases, norm weights (every 1-D parameter), the CLS / mask tokens and position embeddings get no weight decay, as
    in MAE. With `layer_decay` (0.65-0.75 for MAE fine-tuning), block i's learning rate is
    `learning_rate * layer_decay ** (num_layers + 1 - layer_id)`: the head keeps the full rate and the embeddings the
    smallest. Frozen parameters are left out. Works for any model whose blocks are named `...layer(s).<i>...` and
    whose config has `num_hidden_layers` (MIRAM, ViT, ViTMAE, DINOv2).

    Each group carries its `lr`, so a scheduler (LambdaLR) scales every group by the same factor.
    """
    if layer_decay is not None and not 0 < layer_decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}.")
    num_layers = model.config.num_hidden_layers if layer_decay is not None else 0
    groups: dict[tuple[int, bool], dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        decay = parameter.ndim > 1 and name.split(".")[-1] not in _NO_DECAY_NAMES
        depth = layer_id(name, num_layers) if layer_decay is not None else num_layers + 1
        scale = layer_decay ** (num_layers + 1 - depth) if layer_decay is not None else 1.0
        group = groups.setdefault(
            (depth, decay), {"params": [], "lr": learning_rate * scale, "weight_decay": weight_decay if decay else 0.0}
        )
        group["params"].append(parameter)
    return list(groups.values())
