"""The masked autoencoders' pretraining views made on the training device (`scripts/pretrain.py --augment_on_device`).

The CPU path (`PretrainingCollator`) cuts MAE's random resized crop from the native pixels and resizes it to every
scale in the loader, about 2 ms an image for a 512 px crop: a GPU would need a dozen loader cores. Here the loader
only cuts a fixed-size native region of each image (`NativeRegionCollator`, a copy of the pixels), and
`device_views` draws the crop and flip, resamples the whole batch at once and scales and normalises it as the
processor does, on whatever device the batch is on. The draws come from a CPU generator seeded by (seed, epoch,
process, batch), so a resumed run sees the views of a straight one on any device and with any number of workers.
"""

import math
import zlib

import numpy as np
import pyarrow as pa
import torch
from torch.nn import functional
from torch.utils.data import get_worker_info

from ..data.raw_pixels import row_image, table_images
from ..processing import MammographyImageProcessor
from ..processing.augmentations import random_crop_regions
from ..processing.image_processing_mammography import integer_top_value, to_array
from .seeding import derived_seed
from .views import normalization_statistics

# Most supersampling of a crop (per side) before the box filter that antialiases a reducing resample.
MAX_SUPERSAMPLING = 4


class NativeRegionCollator:
    """Rows with an `image` (or raw `pixels`), or an Arrow batch of raw-pixel rows -> `native_pixels` (batch, size,
    size) uint16 holding each image's pixels from the top-left corner, zero beyond; `native_extent` (batch, 2), the
    rows and columns each image fills; `top_values` (batch,), the 2**bits - 1 of each image's bit depth that the
    processor scales by.

    An image larger than `region_size` gives a `region_size` region of it, at a place drawn from (seed, epoch, the
    image's content), so that the epochs see all of it. Set `epoch` before each epoch.

    An Arrow batch (what `PretrainingLoader` reads from a map-style dataset of raw pixels) is copied straight from the
    dataset's memory map, without Python bytes per row. With `pin_memory` (training on a GPU) the batch is written
    into pinned memory from CUDA's caching host allocator: its blocks are reused, so that the loader neither touches
    new pages for every batch (most of its cost otherwise) nor copies the batch again to pin it.
    """

    def __init__(self, region_size: int = 512, seed: int = 0, pin_memory: bool = False):
        self.region_size, self.seed, self.epoch, self.pin_memory = region_size, seed, 0, pin_memory

    def __call__(self, rows: list[dict] | pa.Table) -> dict:
        if isinstance(rows, pa.Table):  # raw pixels by schema: 16-bit, whatever their bit depth
            images = [(image, integer_top_value(int(image.max()))) for image in table_images(rows)]
        else:
            images = [to_array(row_image(row)) for row in rows]
        native = batch_tensor((len(images), self.region_size, self.region_size), torch.uint16, self.pin_memory)
        extent = torch.empty(len(images), 2, dtype=torch.int64)
        top_values = torch.tensor([top_value for _, top_value in images], dtype=torch.float32)
        pixels = native.numpy()
        for index, (array, _) in enumerate(images):
            if array.dtype != np.uint16:
                raise ValueError(f"A {array.dtype} image: the device path takes integer images (0..65535).")
            region = self.region_of(array)
            rows_filled, columns_filled = region.shape
            extent[index] = torch.tensor(region.shape)
            pixels[index, :rows_filled, :columns_filled] = region
            pixels[index, rows_filled:] = 0
            pixels[index, :rows_filled, columns_filled:] = 0
        return {"native_pixels": native, "native_extent": extent, "top_values": top_values}

    def region_of(self, array: np.ndarray) -> np.ndarray:
        rows, columns = array.shape
        if rows <= self.region_size and columns <= self.region_size:
            return array
        # a few rows of the image identify it: a full crc32 would cost as much as the copy
        sample = np.ascontiguousarray(array[:: max(1, rows // 16)]).tobytes()
        generator = np.random.default_rng(derived_seed(self.seed, self.epoch, zlib.crc32(sample)))
        top = int(generator.integers(0, max(0, rows - self.region_size) + 1))
        left = int(generator.integers(0, max(0, columns - self.region_size) + 1))
        return array[top : top + self.region_size, left : left + self.region_size]


def view_draws(
    count: int, seed: int, epoch: int, batch_index: int, process_index: int = 0, crop_scale=(0.2, 1.0)
) -> tuple[torch.Tensor, ...]:
    """A batch's crops (`random_crop_regions`: width, height, centre x, centre y) and flips (bool), drawn on the CPU
    from (seed, epoch, process, batch)."""
    generator = torch.Generator().manual_seed(derived_seed(seed, epoch, process_index, batch_index))
    regions = random_crop_regions(count, crop_scale, generator=generator)
    return *regions, torch.rand(count, generator=generator) < 0.5


def batch_tensor(shape: tuple[int, ...], dtype: torch.dtype, pin_memory: bool = False) -> torch.Tensor:
    """An uninitialised tensor for a batch: in shared memory inside a loader worker, where the main process then maps
    it instead of the worker copying it there (what `default_collate` does for its batches); else pinned if asked."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype, pin_memory=pin_memory)
    storage = torch.UntypedStorage._new_shared(math.prod(shape) * dtype.itemsize)
    return torch.tensor([], dtype=dtype).set_(storage).view(shape)


def device_views(
    batch: dict,
    processor: MammographyImageProcessor,
    seed: int,
    epoch: int,
    batch_index: int,
    process_index: int = 0,
    crop_scale: tuple[float, float] = (0.2, 1.0),
) -> dict:
    """A `NativeRegionCollator` batch (on any device) -> the model's inputs, as `PretrainingCollator` makes them: MAE's
    random resized crop (`crop_scale` of the area, aspect 3/4 to 4/3) and a horizontal flip of each image, resized to
    `processor.size` (`pixel_values`) and, for MIRAM, to every scale (`target_pixel_values`), scaled to [0, 1] and
    normalised. Resizes that reduce are antialiased by supersampling and a box filter; the scales below the largest
    are its block means."""
    scales = processor.scales or [1]
    largest = max(scales)
    if any(largest % scale for scale in scales):
        raise ValueError(f"scales {scales}: each must divide the largest, whose block means make the others.")
    native = batch["native_pixels"]
    count, region_size = native.shape[0], native.shape[-1]
    width, height, centre_x, centre_y, flip = view_draws(count, seed, epoch, batch_index, process_index, crop_scale)
    out_height, out_width = processor.size["height"] * largest, processor.size["width"] * largest
    # the few numbers drawn and computed on the CPU reach the device without waiting for it: a blocking copy
    # (or `native_extent` read back from the device) would wait for the step before this one to end
    extent = batch["native_extent"].cpu().float()
    # the crop in the region's coordinates (affine_grid's [-1, 1]), where the image fills the top-left `extent`
    rows, columns = extent[:, 0] / region_size, extent[:, 1] / region_size
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0] = torch.where(flip, -width, width) * columns
    theta[:, 0, 2] = (centre_x + 1) * columns - 1
    theta[:, 1, 1] = height * rows
    theta[:, 1, 2] = (centre_y + 1) * rows - 1
    reduction = max((width * extent[:, 1]).max() / out_width, (height * extent[:, 0]).max() / out_height).item()
    factor = min(MAX_SUPERSAMPLING, max(1, math.ceil(reduction)))
    # the sampling grid is built where it is used: on a GPU it is the largest tensor here
    size = [count, 1, out_height * factor, out_width * factor]
    grid = functional.affine_grid(theta.to(native.device, non_blocking=True), size, align_corners=False)
    # no sample beyond the centre of an image's last pixel: the zeros past its extent would darken its edges
    centre_of_last = ((2 * extent - 1) / region_size - 1).flip(-1).to(native.device, non_blocking=True)
    grid = grid.clamp_(min=1 / region_size - 1)
    grid = torch.minimum(grid, centre_of_last[:, None, None, :])
    # read as int16 and widened: casts from uint16, a type with little kernel support, are left to no device
    pixels = (native.view(torch.int16).to(torch.int32) & 0xFFFF).to(torch.float32).unsqueeze(1)
    pixels = pixels / batch["top_values"].to(native.device, torch.float32)[:, None, None, None]
    resampled = functional.grid_sample(pixels, grid, mode="bilinear", padding_mode="border", align_corners=False)
    resampled = functional.avg_pool2d(resampled, factor).clamp_(0, 1)
    mean, std = normalization_statistics(processor)
    per_scale = [
        ((functional.avg_pool2d(resampled, largest // scale) - mean) / std).expand(-1, processor.num_channels, -1, -1)
        for scale in scales
    ]
    inputs = {"pixel_values": per_scale[scales.index(1)].contiguous()}
    if processor.scales:
        inputs["target_pixel_values"] = [pixels.contiguous() for pixels in per_scale]
    return inputs


__all__ = ["NativeRegionCollator", "device_views", "view_draws"]
