"""The views the pretraining methods learn from, as collators (rows -> the model's inputs): MAE's random resized crop
and flip cut from the native pixels (MIRAM, MAE; unaugmented for the VAE), and the joint-embedding methods' views
(BYOL, DINO, MoCo v3, SimCLR, SwAV), made by the mammogram augmentations in [0, 1] intensities between the
processor's output and its normalisation. Each draw is seeded (`seeding.py`)."""

import zlib

import numpy as np
import torch
from transformers import BatchFeature

from ..data.raw_pixels import row_image
from ..processing import MammographyImageProcessor
from ..processing.augmentations import MultiCrop, mammogram_ssl_views, random_crop_regions
from .seeding import derived_seed


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


class PretrainingCollator:
    """Rows with an `image` (a crop or a tile at any bit depth) -> the model's inputs, through `processor`.

    With `augment`, each image goes through MAE's augmentation first: a random resized crop (`crop_scale` of the area,
    aspect 3/4 to 4/3) and a horizontal flip, cut from the native pixels before the processor resizes them, so that
    MIRAM's finer targets keep the native detail. The draws are seeded by (seed, epoch, image content), which gives a
    resumed run the views of a straight one whatever the number of loader workers. Set `epoch` before each epoch.
    """

    def __init__(
        self,
        processor: MammographyImageProcessor,
        seed: int = 0,
        augment: bool = True,
        crop_scale: tuple[float, float] = (0.2, 1.0),
    ):
        self.processor, self.seed, self.augment, self.crop_scale = processor, seed, augment, tuple(crop_scale)
        self.epoch = 0

    def __call__(self, rows: list[dict]) -> BatchFeature:
        images = [row_image(row) for row in rows]
        if self.augment:
            images = [self.random_view(image) for image in images]
        return self.processor(images, return_tensors="pt")

    def random_view(self, image: np.ndarray) -> np.ndarray:
        generator = torch.Generator().manual_seed(derived_seed(self.seed, self.epoch, zlib.crc32(image.tobytes())))
        region = [value.item() for value in random_crop_regions(1, self.crop_scale, generator=generator)]
        return native_crop(image, *region, flip=torch.rand(1, generator=generator).item() < 0.5)


def native_crop(
    image: np.ndarray, width: float, height: float, centre_x: float, centre_y: float, flip: bool
) -> np.ndarray:
    """The whole pixels of `image` in a `random_crop_regions` region (sides as fractions of the image's, centre in
    [-1, 1]), flipped left-right when `flip`."""
    rows, columns = image.shape[:2]
    crop_rows, crop_columns = max(1, round(height * rows)), max(1, round(width * columns))
    top = min(max(0, round((centre_y + 1) / 2 * rows - crop_rows / 2)), rows - crop_rows)
    left = min(max(0, round((centre_x + 1) / 2 * columns - crop_columns / 2)), columns - crop_columns)
    view = image[top : top + crop_rows, left : left + crop_columns]
    return np.ascontiguousarray(view[:, ::-1] if flip else view)


__all__ = ["MultiViewCollator", "PretrainingCollator", "native_crop", "normalization_statistics"]
