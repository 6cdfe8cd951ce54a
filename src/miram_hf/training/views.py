"""The views the joint-embedding methods (BYOL, DINO, MoCo v3, SimCLR, SwAV) learn from, made by the mammogram
augmentations in [0, 1] intensities between the processor's output and its normalisation."""

import zlib

import numpy as np
import torch
from transformers import BatchFeature

from ..processing import MammographyImageProcessor
from ..processing.augmentations import MultiCrop, mammogram_ssl_views
from .pretraining import derived_seed


def normalization_statistics(processor: MammographyImageProcessor) -> tuple[float, float]:
    """The (mean, std) that `processor` normalises [0, 1] intensities with: augment `pixels * std + mean`, then
    normalise back. (0, 1) when it does not normalise."""
    if not processor.do_normalize:
        return 0.0, 1.0
    return float(np.mean(processor.image_mean)), float(np.mean(processor.image_std))


class MultiViewCollator:
    """Rows with an `image` -> `pixel_values` (batch, global views, channels, height, width) and, with local views,
    `local_pixel_values` (batch, local views, channels, local_size, local_size).

    Each view is a random resized crop of the processor's image (`crop_scale` of the area for the global views,
    `local_crop_scale` for the local ones), flips, gamma and contrast: the tiled-patch paper's best mammogram views.
    Two global views suit BYOL, MoCo v3 and SimCLR; DINO and SwAV add local ones (multi-crop). The draws are seeded
    by (seed, epoch, batch content), so a resumed run sees the views of a straight one. Set `epoch` before each epoch.
    """

    def __init__(
        self,
        processor: MammographyImageProcessor,
        seed: int = 0,
        num_global: int = 2,
        num_local: int = 0,
        crop_scale: tuple[float, float] = (0.2, 1.0),
        local_size: int | None = None,
        local_crop_scale: tuple[float, float] = (0.05, 0.4),
    ):
        if num_local and not local_size:
            raise ValueError("Local views need a local_size (DINO: 96 px for 224 px global views).")
        self.processor, self.seed, self.epoch = processor, seed, 0
        self.num_global, self.num_local = num_global, num_local
        size = (processor.size["height"], processor.size["width"])
        global_views = mammogram_ssl_views(size, scale=tuple(crop_scale))
        local_views = (
            mammogram_ssl_views((local_size, local_size), scale=tuple(local_crop_scale)) if num_local else None
        )
        self.views = MultiCrop(global_views, local_views, num_global, num_local)

    def __call__(self, rows: list[dict]) -> BatchFeature:
        pixels = self.processor([np.asarray(row["image"]) for row in rows], return_tensors="pt")["pixel_values"]
        generator = torch.Generator().manual_seed(
            derived_seed(self.seed, self.epoch, zlib.crc32(pixels.numpy().tobytes()))
        )
        mean, std = normalization_statistics(self.processor)
        views = [(view - mean) / std for view in self.views(pixels * std + mean, generator)]
        batch = {"pixel_values": torch.stack(views[: self.num_global], 1)}
        if self.num_local:
            batch["local_pixel_values"] = torch.stack(views[self.num_global :], 1)
        return BatchFeature(batch)


__all__ = ["MultiViewCollator", "normalization_statistics"]
