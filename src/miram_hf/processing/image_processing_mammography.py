"""MammographyImageProcessor: DICOM paths, `Mammogram`s, arrays, tensors or PIL images in; model-ready tensors out.

Imports only numpy, torch, PIL, pydicom, transformers and its sibling, so that a saved processor loads with
`trust_remote_code=True`. Resampling is in float32 (block means, then torch's antialiased bilinear): a 16-bit
mammogram never passes through 8-bit PIL.
"""

import copy
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

from .breast_segmentation import segment_breast
from .reading import Mammogram, MammogramReadError, read_mammogram

# A large reduction starts with block means (`box_mean`) down to at least this many times the output size; the
# antialiased bilinear resize does the rest. With PIL's `reducing_gap` of 3 the result "is indistinguishable from
# fair resampling in most cases"; tested against the direct resize.
REDUCING_GAP = 3
# `box_mean` sums the columns of this many bytes of float32 rows at a time: half of a common L2 cache, so that they
# are still there (a third faster on a 3712x2496 breast than summing all rows, then all columns).
BOX_MEAN_CHUNK_BYTES = 512 * 1024


class MammographyImageProcessor(BaseImageProcessor):
    r"""
    Turns mammograms into `pixel_values` (and, for MIRAM, `target_pixel_values` at each reconstruction scale).

    Steps, each switchable:
    1. read (`read_mammogram` for paths) and scale the intensities to [0, 1] from the real bit depth; a
       'FOR PROCESSING' (raw detector) image goes through a log and an inversion first, so that denser is higher;
    2. `do_breast_crop`: crop to the box of the breast (`segment_breast`: bright by `breast_threshold` of the
       range above the background level, thin structures such as scanner frame lines and label strokes left out,
       the largest component) and, with `do_clear_background`, set what lies outside the breast to 0: burned-in
       labels, frame lines, tape and the film base inside the box do not reach the model;
    3. `do_flip`: flip horizontally so that the chest wall (the side with more tissue) is on the left;
    4. `do_resize`: to `size` = {"height", "width"}, keeping the aspect ratio and padding with background
       (`keep_aspect_ratio`) or stretching; float32 bilinear with antialiasing, after block means
       (`box_mean`) when the image is more than 2 x REDUCING_GAP times larger than the output;
    5. `do_normalize`: `(x - image_mean) / image_std`;
    6. `num_channels` 1, or 3 (repeated) for ImageNet-initialised backbones.

    With `scales` (e.g. `[1, 2]`), `target_pixel_values[k]` is the same native-resolution region resized to
    `scales[k]` times `size`: the finer targets hold real detail, not an upsampled copy of `pixel_values`.

    Example:

    ```python
    >>> processor = MammographyImageProcessor(size={"height": 112, "width": 112}, scales=[1, 2])
    >>> inputs = processor(["1-1.dcm", "1-2.dcm"], return_tensors="pt")
    >>> inputs["pixel_values"].shape, [t.shape for t in inputs["target_pixel_values"]]
    ```
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        size: dict[str, int] | None = None,
        do_breast_crop: bool = True,
        breast_threshold: float = 0.1,
        do_clear_background: bool = True,
        do_flip: bool = True,
        do_resize: bool = True,
        keep_aspect_ratio: bool = True,
        do_normalize: bool = True,
        image_mean: float | list[float] = 0.5,
        image_std: float | list[float] = 0.5,
        num_channels: int = 1,
        scales: list[int] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.size = dict(size) if size is not None else {"height": 224, "width": 224}
        self.do_breast_crop = do_breast_crop
        self.breast_threshold = breast_threshold
        self.do_clear_background = do_clear_background
        self.do_flip = do_flip
        self.do_resize = do_resize
        self.keep_aspect_ratio = keep_aspect_ratio
        self.do_normalize = do_normalize
        self.image_mean = image_mean
        self.image_std = image_std
        self.num_channels = num_channels
        self.scales = list(scales) if scales is not None else None
        self.validate()

    def validate(self) -> None:
        if set(self.size) != {"height", "width"}:
            raise ValueError(f"size must be {{'height': H, 'width': W}}, got {self.size}.")
        if self.num_channels not in (1, 3):
            raise ValueError(f"num_channels must be 1 or 3, got {self.num_channels}.")

    def __call__(self, images, **kwargs) -> BatchFeature:
        return self.preprocess(images, **kwargs)

    def preprocess(
        self,
        images,
        return_tensors: str | None = "pt",
        scales: list[int] | None = None,
        return_breast_mask: bool = False,
        device: str | torch.device | None = None,
        **overrides,
    ) -> BatchFeature:
        """Process one image, a list of them (paths, `Mammogram`s, arrays, tensors, PIL images) or a 4-D batch.

        Any setting of the processor can be changed for this call (`size=...`, `do_normalize=False`, ...), as with
        transformers' image processors. With `return_breast_mask`, `breast_mask` (batch, height, width) is True on the
        breast in `pixel_values` (all False for a blank image). `device` runs the resizes there (and returns the
        tensors there); the decode and the breast search stay on the CPU."""
        if overrides:
            unknown = sorted(set(overrides) - set(self.to_dict()) - {"scales"})
            if unknown:
                raise TypeError(f"Unknown processor settings {unknown}; the settings are {sorted(self.to_dict())}.")
            for_this_call = copy.copy(self)
            for name, value in overrides.items():
                setattr(for_this_call, name, dict(value) if name == "size" else value)
            for_this_call.validate()
            return for_this_call.preprocess(images, return_tensors, scales, return_breast_mask, device)
        scales = scales if scales is not None else self.scales
        if scales and 1 not in scales:
            raise ValueError(f"scales {scales} must include 1: pixel_values are the scale-1 image.")
        if scales and scales != [1] and not self.do_resize:
            raise ValueError("Multi-scale targets are resized to scale x size: they need do_resize=True.")
        if (isinstance(images, np.ndarray) or torch.is_tensor(images)) and images.ndim == 4:
            images = list(images)  # a batch (batch, channels, height, width)
        elif not isinstance(images, (list, tuple)):
            images = [images]
        if not images:
            raise ValueError("No images given.")
        outputs = [self.process_one(image, scales or [1], return_breast_mask, device) for image in images]
        per_scale = [torch.stack([pixels[k] for pixels, _ in outputs]) for k in range(len(scales or [1]))]
        if scales:
            data = {"pixel_values": per_scale[scales.index(1)], "target_pixel_values": per_scale}
        else:
            data = {"pixel_values": per_scale[0]}
        if return_breast_mask:
            data["breast_mask"] = torch.stack([mask for _, mask in outputs])
        if return_tensors in (None, "np"):
            data = {k: v.cpu().numpy() if torch.is_tensor(v) else [t.cpu().numpy() for t in v] for k, v in data.items()}
        elif return_tensors != "pt":
            raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}.")
        return BatchFeature(data=data)

    def process_one(
        self, image, scales: list[int], return_breast_mask: bool = False, device: str | torch.device | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """One image -> (one (channels, f * height, f * width) tensor per scale factor f, the breast mask at scale 1
        when `return_breast_mask`)."""
        array, top_value = to_array(image)
        needs_region = self.do_breast_crop or return_breast_mask
        region = segment_breast(array, top_value, self.breast_threshold) if needs_region else None
        breast = None if region is None else region.mask  # the breast over `array`, a pixel per region.step
        if self.do_breast_crop and region is not None:  # on the integer array: only the breast is converted to float
            top, bottom, left, right = region.box()
            array, breast = array[top:bottom, left:right], region.mask_in_box()
        clear = self.do_breast_crop and self.do_clear_background and breast is not None
        sizes = [(self.size["height"] * scale, self.size["width"] * scale) for scale in scales]
        fitted = [self.fitted_size(array.shape, *size) if self.keep_aspect_ratio else size for size in sizes]
        # float32 in the native range, block-averaged first when the resize reduces a lot; the scaling to [0, 1]
        # waits for the (smaller) resized image
        pixels = box_mean(array, reduction_factor(array.shape, fitted) if self.do_resize else 1).to(device)
        flip = None
        results, masks = [], []
        for (height, width), fitted_size in zip(sizes, fitted, strict=True):
            resized = resample(pixels, *fitted_size) if self.do_resize else pixels
            resized = (resized * (1.0 / top_value)).clamp_(0, 1)
            mask = None
            if clear or (return_breast_mask and breast is not None):
                mask = _mask_at(breast, region.step, array.shape, tuple(resized.shape)).to(resized.device)
            if clear:
                resized *= mask
            if flip is None:  # decided once, on the first (smallest) output: cheaper than on the native image
                flip = self.do_flip and chest_wall_on_right(resized)
            if flip:
                resized = resized.flip(-1)
                mask = mask.flip(-1) if mask is not None else None
            if self.do_resize and tuple(resized.shape) != (height, width):
                resized = _pad_away_from_chest_wall(resized, height, width)
                mask = _pad_away_from_chest_wall(mask, height, width) if mask is not None else None
            if self.do_normalize:
                resized = (resized - _scalar(self.image_mean)) / _scalar(self.image_std)
            results.append(resized.unsqueeze(0).expand(self.num_channels, -1, -1).contiguous())
            masks.append(mask > 0.5 if mask is not None else resized.new_zeros(resized.shape, dtype=torch.bool))
        return results, masks[scales.index(1)] if return_breast_mask else None

    @staticmethod
    def fitted_size(shape: tuple[int, int], height: int, width: int) -> tuple[int, int]:
        """The largest size of the same aspect ratio as `shape` that fits in (height, width)."""
        ratio = min(height / shape[0], width / shape[1])
        return min(height, max(1, round(shape[0] * ratio))), min(width, max(1, round(shape[1] * ratio)))


def _pad_away_from_chest_wall(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Background (0) on the right, away from the chest wall, and equally above and below."""
    canvas = pixels.new_zeros(height, width)
    top = (height - pixels.shape[0]) // 2
    canvas[top : top + pixels.shape[0], : pixels.shape[1]] = pixels
    return canvas


def _mask_at(mask: np.ndarray, step: int, shape: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """A breast mask taken every `step` pixels of an image of `shape`, resized as the image is resized to `size`:
    float in [0, 1], soft at the edges. The mask's last row and column may stand for fewer than `step` pixels, so it
    is resized as the image padded to whole steps, then cut."""
    sides = zip(size, mask.shape, shape, strict=True)
    padded_size = [round(out * cells * step / native) for out, cells, native in sides]
    resized = resample(torch.from_numpy(mask.astype(np.float32)), *padded_size)
    return resized[: size[0], : size[1]]


def _scalar(value: float | list[float]) -> float:
    """Mean and std are one value for gray images; a list (as transformers' configs write it) must repeat it."""
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ValueError(f"Mammograms are gray: one mean / std for every channel, got {value}.")
        return float(value[0])
    return float(value)


def resample(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Float32 bilinear resampling, antialiased when reducing."""
    if tuple(pixels.shape) == (height, width):
        return pixels
    resized = torch.nn.functional.interpolate(
        pixels[None, None], size=(height, width), mode="bilinear", align_corners=False, antialias=True
    )
    return resized[0, 0]


def reduction_factor(shape: tuple[int, int], sizes: list[tuple[int, int]]) -> int:
    """The largest block size for `box_mean` that leaves every resize to `sizes` a reduction of at least
    REDUCING_GAP: the antialiased resize then still shapes the result, as with PIL's `reducing_gap`."""
    smallest_reduction = min(min(shape[0] / height, shape[1] / width) for height, width in sizes)
    return max(1, int(smallest_reduction // REDUCING_GAP))


def box_mean(array: np.ndarray, factor: int) -> torch.Tensor:
    """(H, W) array -> float32 tensor of the means of its factor x factor blocks (the blocks at the bottom and right
    edges average the pixels they hold). The native image is read once and never converted to float32 as a whole
    (that would cost more than the resize): each block of rows is summed into one float32 row, and the columns of
    those rows are summed a chunk at a time, while the chunk is still in the CPU's cache."""
    if factor == 1:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    height, width = array.shape
    sums = np.zeros((-(-height // factor), -(-width // factor)), dtype=np.float32)
    chunk_rows = max(1, BOX_MEAN_CHUNK_BYTES // (4 * width))
    row_sums = np.empty((chunk_rows, width), dtype=np.float32)
    for first in range(0, len(sums), chunk_rows):
        rows = array[first * factor : (first + chunk_rows) * factor]
        chunk_sums, full_blocks = row_sums[: -(-len(rows) // factor)], len(rows) // factor
        blocks = rows[: full_blocks * factor].reshape(full_blocks, factor, width)
        np.sum(blocks, axis=1, dtype=np.float32, out=chunk_sums[:full_blocks])
        if full_blocks < len(chunk_sums):
            chunk_sums[-1] = rows[full_blocks * factor :].sum(axis=0, dtype=np.float32)
        chunk = sums[first : first + chunk_rows]
        for offset in range(min(factor, width)):  # strided columns cost less than a reshape's short last axis
            strided = chunk_sums[:, offset::factor]
            chunk[:, : strided.shape[1]] += strided
    row_counts = np.minimum(factor, height - factor * np.arange(sums.shape[0], dtype=np.float32))
    column_counts = np.minimum(factor, width - factor * np.arange(sums.shape[1], dtype=np.float32))
    sums /= np.outer(row_counts, column_counts)
    return torch.from_numpy(sums)


def integer_top_value(largest: int) -> float:
    """2**bits - 1 for the smallest of 8, 10, 12, 14 and 16 bits that holds `largest` (0..65535): the value an integer
    image without a stored bit depth is scaled by."""
    return float(2 ** next(bits for bits in (8, 10, 12, 14, 16) if largest < 2**bits) - 1)


def to_array(image) -> tuple[np.ndarray, float]:
    """Any supported input -> (2-D array, the value that maps to 1). Integer data keeps its type; its top value is
    2**bits - 1 for the real bit depth (BitsStored for DICOM; else the smallest of 8, 10, 12, 14, 16 bits that holds
    the largest value). Float data is taken as [0, 1], or stretched to it when it goes beyond."""
    if isinstance(image, (str, Path)):
        image = read_mammogram(image)
    if isinstance(image, Mammogram):
        if image.presentation_intent == "FOR PROCESSING":
            if image.pixel_array.size and image.pixel_array.min() < 0:  # the log below needs detector counts
                raise MammogramReadError(image.source_path, "FOR PROCESSING pixel values below 0: not detector "
                                                            "signal")  # fmt: skip
            return for_processing_to_attenuation(image.pixel_array, image.max_value), 1.0
        return image.pixel_array, image.max_value
    if isinstance(image, Image.Image):
        image = np.asarray(image)
    if torch.is_tensor(image):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise ValueError(f"Unsupported image type {type(image).__name__}: pass a path, Mammogram, array or PIL image.")
    array = _to_2d(image)
    if array.size == 0:
        raise ValueError(f"Empty image of shape {image.shape}.")
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        low, top = int(array.min()), int(array.max())
        if low < 0 or top > 65535:
            raise ValueError(f"Integer image values must lie in 0..65535, got {low}..{top}.")
        return array.astype(np.uint16, copy=False), integer_top_value(top)
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise ValueError("Image contains NaN or infinite values.")
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 1:  # float data of unknown range: stretch it
        return (array - low) / (high - low) if high > low else np.zeros_like(array), 1.0
    return array, 1.0


def for_processing_to_attenuation(pixels: np.ndarray, top_value: float) -> np.ndarray:
    """A 'FOR PROCESSING' image is raw detector signal, proportional to the X-rays that went through: high behind
    air, low behind dense tissue. Its log (Beer-Lambert) is linear in attenuation; flipped, denser is higher, as in a
    'FOR PRESENTATION' image. Returns float32 in [0, 1]."""
    return (1.0 - np.log1p(pixels.astype(np.float32)) / np.log1p(top_value)).astype(np.float32)


def _to_2d(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        return array
    if array.ndim != 3:
        raise ValueError(f"An image must be (H, W), (C, H, W) or (H, W, C); got shape {array.shape}.")
    channel_axis = 0 if array.shape[0] <= 4 else -1
    channels = array.shape[channel_axis]
    if channels > 4:
        raise ValueError(f"Image has more than 4 channels (shape {array.shape}); mammograms are gray.")
    colour = np.take(array, range(channels - 1 if channels in (2, 4) else channels), axis=channel_axis)  # no alpha
    first = np.take(colour, 0, axis=channel_axis)
    if all(np.array_equal(first, np.take(colour, c, axis=channel_axis)) for c in range(colour.shape[channel_axis])):
        return first  # gray stored as colour: keep the integer type and so the bit depth
    return colour.astype(np.float32).mean(axis=channel_axis)


def chest_wall_on_right(pixels: torch.Tensor) -> bool:
    """The chest wall is on the side that holds more tissue."""
    half = pixels.shape[1] // 2
    return bool(pixels[:, half:].sum() > pixels[:, : pixels.shape[1] - half].sum())


__all__ = ["MammographyImageProcessor"]
