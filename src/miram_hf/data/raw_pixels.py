"""Images as raw 16-bit arrays: what `scripts/prepare_data.py --image_format raw` writes for pretraining, so that the
loader reads pixels without a PNG or TIFF decode. An `image` becomes three columns: `pixels` (the row-major uint16
values, little-endian), `height` and `width`. The values are the image's own, so the bit depth the processor infers
from them is the same."""

import datasets
import numpy as np
import pyarrow as pa

from ..processing.image_processing_mammography import to_array

RAW_PIXEL_FEATURES = {"pixels": datasets.Value("binary"), "height": datasets.Value("int32"),
                      "width": datasets.Value("int32")}  # fmt: skip


def to_raw_pixels(dataset: datasets.Dataset) -> datasets.Dataset:
    """`dataset` with its `image` column stored as raw 16-bit `pixels`, `height` and `width`; its other columns kept.
    Raises ValueError (naming the row) for an image that is not integer-valued in 0..65535."""
    if "image" not in dataset.column_names:
        raise ValueError(f"No `image` column to store as raw pixels (columns: {dataset.column_names}).")
    features = datasets.Features({**{k: v for k, v in dataset.features.items() if k != "image"}, **RAW_PIXEL_FEATURES})
    return dataset.map(_encode, with_indices=True, remove_columns=["image"], features=features)


def _encode(example: dict, index: int) -> dict:
    try:
        array, _ = to_array(example["image"])
    except ValueError as error:
        raise ValueError(f"Row {index}: {error}") from None
    if array.dtype != np.uint16:
        raise ValueError(f"Row {index}: a {array.dtype} image; raw pixels store integer images (0..65535) only.")
    height, width = array.shape
    return {"pixels": array.astype("<u2", copy=False).tobytes(), "height": height, "width": width}


def row_image(row: dict) -> np.ndarray:
    """A dataset row's image as an array: its raw `pixels` (a view of their bytes, no copy) or its decoded `image`."""
    if "pixels" in row:
        return np.frombuffer(row["pixels"], dtype="<u2").reshape(row["height"], row["width"])
    return np.asarray(row["image"])


def table_images(table: pa.Table) -> list[np.ndarray]:
    """The images of a batch of raw-pixel rows read as Arrow (`dataset.with_format("arrow")[indices]`), each a view of
    the table's buffers: no copy, and for a dataset on disk, pages of its memory map. Raises ValueError (naming the
    row of the batch) for a row whose pixels are missing or do not fill its height x width."""
    pixels = []
    for chunk in table.column("pixels").chunks:
        _, offsets, data = chunk.buffers()
        offset_type = np.int64 if pa.types.is_large_binary(chunk.type) else np.int32
        ends = np.frombuffer(offsets, offset_type)[chunk.offset : chunk.offset + len(chunk) + 1].tolist()
        values = np.frombuffer(data, np.uint8) if data is not None else np.empty(0, np.uint8)
        valid = chunk.is_valid().to_pylist() if chunk.null_count else [True] * len(chunk)
        bounds = zip(ends[:-1], ends[1:], valid, strict=True)
        pixels += [values[start:end] if is_valid else None for start, end, is_valid in bounds]
    images = []
    shapes = zip(table.column("height").to_pylist(), table.column("width").to_pylist(), strict=True)
    for index, (values, (height, width)) in enumerate(zip(pixels, shapes, strict=True)):
        if values is None or values.size != 2 * height * width:
            found = "no pixels" if values is None else f"{values.size} bytes of pixels"
            raise ValueError(f"Row {index} of the batch: {found} for a {height} x {width} 16-bit image.")
        images.append(values.view("<u2").reshape(height, width))
    return images


__all__ = ["RAW_PIXEL_FEATURES", "row_image", "table_images", "to_raw_pixels"]
