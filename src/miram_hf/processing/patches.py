"""Regions of a mammogram: lesion crops, random background crops inside the breast, and tiled patches.

Boxes are (top, left, bottom, right) in pixels, bottom and right exclusive. Everything works on the array as read
(`Mammogram.pixel_array`), so crops keep the native resolution and bit depth.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw


@dataclass(frozen=True)
class Box:
    top: int
    left: int
    bottom: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    def intersects(self, other: "Box") -> bool:
        return (
            self.top < other.bottom and other.top < self.bottom and self.left < other.right and other.left < self.right
        )

    def crop(self, array: np.ndarray) -> np.ndarray:
        return array[self.top : self.bottom, self.left : self.right]

    def corners(self) -> list[int]:
        """[top, left, bottom, right], as the datasets' box columns hold it."""
        return [self.top, self.left, self.bottom, self.right]


@dataclass(frozen=True)
class Tile:
    """A tile of the grid: its box and its (row, column) in the grid, to put tile features back on the image."""

    box: Box
    row: int
    column: int
    background_fraction: float


def mask_box(mask: np.ndarray) -> Box:
    """The bounding box of the non-zero pixels of a lesion mask."""
    rows, columns = np.nonzero(mask)
    if rows.size == 0:
        raise ValueError("The lesion mask is empty.")
    return Box(int(rows.min()), int(columns.min()), int(rows.max()) + 1, int(columns.max()) + 1)


def polygon_region(columns: np.ndarray, rows: np.ndarray, image_shape: tuple[int, int]) -> tuple[Box, np.ndarray]:
    """The box (clipped to the image) and the filled mask inside it of an outline given as column and row
    coordinates."""
    columns, rows = np.asarray(columns, dtype=float), np.asarray(rows, dtype=float)
    top, left = max(0, int(np.floor(rows.min()))), max(0, int(np.floor(columns.min())))
    bottom = min(image_shape[0], int(np.ceil(rows.max())) + 1)
    right = min(image_shape[1], int(np.ceil(columns.max())) + 1)
    canvas = Image.new("1", (max(1, right - left), max(1, bottom - top)))
    ImageDraw.Draw(canvas).polygon(list(zip(columns - left, rows - top, strict=True)), fill=1, outline=1)
    return Box(top, left, bottom, right), np.array(canvas, dtype=bool)


def lesion_crop_box(
    image_shape: tuple[int, int], lesion: Box, context: float = 0.2, square: bool = True, min_size: int = 0
) -> Box:
    """A crop around `lesion` with `context` (a fraction of the lesion's size) added on every side, squared around the
    lesion's centre when `square`, at least `min_size` pixels a side, moved inside the image where it fits there and
    clipped at the border where it does not."""
    if not 0 <= context:
        raise ValueError(f"context must be non-negative, got {context}.")
    height = max(min_size, round(lesion.height * (1 + 2 * context)))
    width = max(min_size, round(lesion.width * (1 + 2 * context)))
    if square:
        height = width = max(height, width)
    centre_row, centre_column = (lesion.top + lesion.bottom) / 2, (lesion.left + lesion.right) / 2
    top = _shift_inside(round(centre_row - height / 2), height, image_shape[0])
    left = _shift_inside(round(centre_column - width / 2), width, image_shape[1])
    return Box(max(0, top), max(0, left), min(image_shape[0], top + height), min(image_shape[1], left + width))


def _shift_inside(start: int, length: int, limit: int) -> int:
    if length >= limit:
        return 0
    return min(max(start, 0), limit - length)


def _box_sums(mask: np.ndarray) -> np.ndarray:
    """Summed-area table with a zero row and column in front: the sum over a box is four look-ups."""
    table = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    table[1:, 1:] = mask.cumsum(axis=0).cumsum(axis=1)
    return table


def _fraction(table: np.ndarray, box: Box) -> float:
    total = table[box.bottom, box.right] - table[box.top, box.right] - table[box.bottom, box.left]
    total += table[box.top, box.left]
    return float(total) / (box.height * box.width)


def random_background_boxes(
    mask: np.ndarray,
    size: int,
    count: int,
    avoid: list[Box] = (),
    rng: np.random.Generator | None = None,
    min_breast_fraction: float = 0.9,
    max_tries: int = 1000,
) -> list[Box]:
    """Up to `count` random `size` x `size` boxes inside the breast (`mask`: at least `min_breast_fraction` of each box)
    that touch none of the `avoid` boxes (the lesions): the background crops of SSL pretraining. Fewer come back when
    the breast has no more room within `max_tries` draws."""
    rng = rng if rng is not None else np.random.default_rng()
    height, width = mask.shape
    if size > height or size > width:
        return []
    table = _box_sums(mask)
    boxes: list[Box] = []
    for _ in range(max_tries):
        if len(boxes) == count:
            break
        top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
        box = Box(top, left, top + size, left + size)
        if _fraction(table, box) >= min_breast_fraction and not any(box.intersects(lesion) for lesion in avoid):
            boxes.append(box)
    return boxes


def tile_boxes(image_shape: tuple[int, int], tile_size: int, overlap: float = 0.5) -> list[tuple[int, int, Box]]:
    """The (row, column, box) of a grid of `tile_size` tiles overlapping by `overlap` (a fraction of the tile), the
    last row and column flush with the image border so that every pixel is covered."""
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}.")
    stride = max(1, round(tile_size * (1 - overlap)))

    def starts(length: int) -> list[int]:
        if length <= tile_size:
            return [0]
        positions = list(range(0, length - tile_size + 1, stride))
        return positions if positions[-1] == length - tile_size else [*positions, length - tile_size]

    return [
        (row, column, Box(top, left, min(top + tile_size, image_shape[0]), min(left + tile_size, image_shape[1])))
        for row, top in enumerate(starts(image_shape[0]))
        for column, left in enumerate(starts(image_shape[1]))
    ]


def tiles(mask: np.ndarray, tile_size: int, overlap: float = 0.5, max_background: float = 0.2) -> list[Tile]:
    """The tiles of the grid over the breast `mask` with at most `max_background` of background (the tiled-patch
    paper: 50% overlap, drop tiles with more than 20% background)."""
    table = _box_sums(mask)
    kept = []
    for row, column, box in tile_boxes(mask.shape, tile_size, overlap):
        background = 1.0 - _fraction(table, box)
        if background <= max_background:
            kept.append(Tile(box, row, column, background))
    return kept


__all__ = [
    "Box",
    "Tile",
    "lesion_crop_box",
    "mask_box",
    "polygon_region",
    "random_background_boxes",
    "tile_boxes",
    "tiles",
]
