"""Pictures of what a model does: MIRAM reconstructions at every scale (and MAE's at its one)."""

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import ViTMAEForPreTraining  # noqa: E402
from transformers.models.vit_mae.modeling_vit_mae import ViTMAEForPreTrainingOutput  # noqa: E402

from .modeling.miram.modeling_miram import (  # noqa: E402
    MiramForPreTraining,
    MiramForPreTrainingOutput,
    duplicate_tokens,
)


@torch.no_grad()
def save_reconstruction(
    model: MiramForPreTraining | ViTMAEForPreTraining,
    pixel_values: torch.Tensor,
    outputs: MiramForPreTrainingOutput | ViTMAEForPreTrainingOutput,
    path: str | Path,
    target_pixel_values: Sequence[torch.Tensor] | None = None,
    max_images: int = 4,
) -> Path:
    """Render, for up to `max_images` inputs, the input, the masked input and each scale's reconstruction (visible
    patches pasted back, as in MAE's demo) side by side, and save the figure as a PNG at `path`."""
    config = model.config
    grid = (pixel_values.shape[-2] // config.patch_size, pixel_values.shape[-1] // config.patch_size)
    # MIRAM, or transformers' ViTMAE: one scale, one logits tensor
    scales = getattr(config, "scales", [1])
    targets = (
        model.scale_targets(pixel_values, target_pixel_values) if hasattr(model, "scale_targets") else [pixel_values]
    )
    scale_logits = outputs.logits if isinstance(outputs.logits, (tuple, list)) else [outputs.logits]
    rows = min(max_images, pixel_values.shape[0])
    columns = 2 + len(scales)
    figure, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.4 * rows), squeeze=False)

    masked_pixels = _mask_pixels(outputs.mask, grid, config.patch_size)
    panels = [("input", pixel_values), ("masked", pixel_values.masked_fill(masked_pixels, float("nan")))]
    for scale, target, logits in zip(scales, targets, scale_logits, strict=True):
        target_patches = model.patchify(target.float())
        predicted = logits.float()
        if config.norm_pix_loss:  # the decoder predicts normalised patches: bring back each patch's mean and std
            mean = target_patches.mean(dim=-1, keepdim=True)
            std = (target_patches.var(dim=-1, keepdim=True) + 1.0e-6) ** 0.5
            predicted = predicted * std + mean
        mask = duplicate_tokens(outputs.mask.unsqueeze(-1), grid, scale)
        predicted = torch.where(mask.bool(), predicted, target_patches)
        panels.append((f"x{scale} reconstruction", model.unpatchify(predicted, target.shape[-2:])))

    for row in range(rows):
        low, high = pixel_values[row].float().min().item(), pixel_values[row].float().max().item()
        for column, (title, images) in enumerate(panels):
            axis = axes[row, column]
            axis.imshow(_to_gray(images[row]), cmap=_gray_with_masked_patches(), vmin=low, vmax=high)
            axis.set_axis_off()
            if row == 0:
                axis.set_title(title, fontsize=9)
    return _save_figure(figure, path)


def save_tile_heatmap(
    image: torch.Tensor | np.ndarray, tiles: Sequence, tile_weights: torch.Tensor | np.ndarray, path: str | Path
) -> Path:
    """Render a bag's tile weights (`MilForImageClassification`'s `tile_weights`, one per tile of `tiles` from
    `image_bag`) as a heatmap over the mammogram: each pixel shows the mean weight of the tiles that cover it. The
    image (channels, height, width) or (height, width) is shown next to the overlay; the figure is saved as a PNG."""
    gray = _to_gray(torch.as_tensor(image)) if np.ndim(image) == 3 else np.asarray(image, dtype=np.float32)
    weights = np.asarray(torch.as_tensor(tile_weights).detach().float().cpu())
    total, coverage = np.zeros(gray.shape, np.float32), np.zeros(gray.shape, np.float32)
    for tile, weight in zip(tiles, weights[: len(tiles)], strict=True):
        box = tile.box
        total[box.top : box.bottom, box.left : box.right] += weight
        coverage[box.top : box.bottom, box.left : box.right] += 1
    heat = np.where(coverage > 0, total / np.maximum(coverage, 1), np.nan)
    figure, axes = plt.subplots(1, 2, figsize=(6, 4))
    for axis, title in zip(axes, ("mammogram", "tile attention"), strict=True):
        axis.imshow(gray, cmap="gray")
        axis.set_title(title, fontsize=9)
        axis.set_axis_off()
    shown = axes[1].imshow(heat, cmap="inferno", alpha=0.5)
    figure.colorbar(shown, ax=axes[1], fraction=0.046)
    return _save_figure(figure, path)


def _save_figure(figure: matplotlib.figure.Figure, path: str | Path) -> Path:
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _mask_pixels(mask: torch.Tensor, grid: tuple[int, int], patch_size: int) -> torch.Tensor:
    """(batch, tokens) patch mask -> (batch, 1, H, W) boolean pixel mask."""
    pixel_mask = mask.reshape(mask.shape[0], 1, *grid)
    pixel_mask = pixel_mask.repeat_interleave(patch_size, dim=2).repeat_interleave(patch_size, dim=3)
    return pixel_mask.bool()


def _to_gray(image: torch.Tensor) -> np.ndarray:
    return image.float().mean(dim=0).cpu().numpy()


def _gray_with_masked_patches() -> matplotlib.colors.Colormap:
    return plt.get_cmap("gray").with_extremes(bad="#3b5b92")
