"""Where the breast is on a mammogram: one segmentation for the processor's crop and background clearing, the tiles,
the background crops and the region proposers, so that "background" means the same everywhere.

Imports only numpy, so that a saved processor loads with `trust_remote_code=True`. It works on a copy of the image
taken every `step` pixels (at most MASK_SIDE on its longer side), which costs a small fraction of the decode:
1. smooth (3 x 3 means: film grain and scanner noise) and keep what is brighter than the background level by
   `threshold` of the range above it. The background level is the most common level near the image's border (black on
   digital mammograms, the grey film base on film scans): a breast of even brightness may cover more of the image
   than the background does, but it touches one side only;
2. open (erode, then dilate) by OPENING_FRACTION of the short side: thin structures go, such as the scanner frame
   lines along the film's edges, the strokes of burned-in labels and tape edges, and with them the bridges they made
   between the breast and the labels;
3. keep the largest component, fill what it encloses along both rows and columns (fatty regions darker than the
   threshold) and widen it by one step, so that it errs outwards.
"""

import math
from dataclasses import dataclass

import numpy as np

# The breast is found on a copy at most this many pixels on its longer side: enough to tell a frame line 1% of the
# film wide from the breast, and about a millisecond from a 4k image (bench/processing.py).
MASK_SIDE = 192
# Structures thinner than about twice this fraction of the short side are not breast (frame lines, label strokes;
# the smoothing widens each by a pixel of the copy on either side).
OPENING_FRACTION = 0.025
# The background level is the most common of this many levels between the darkest and the brightest pixel, in a
# border this fraction of the short side wide.
HISTOGRAM_BINS = 64
BORDER_FRACTION = 0.1


@dataclass(frozen=True)
class BreastRegion:
    """The breast of an image of `shape`: `mask` is True on the breast in the copy taken every `step` pixels;
    `level` is the threshold it was found with, as a fraction of the image's top value."""

    mask: np.ndarray
    step: int
    shape: tuple[int, int]
    level: float

    def box(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) in native pixels, bottom and right exclusive."""
        top, bottom, left, right = self._extent()
        height, width = self.shape
        return top * self.step, min(height, bottom * self.step), left * self.step, min(width, right * self.step)

    def mask_in_box(self) -> np.ndarray:
        """The mask cut to `box()`: the native box is exactly these mask pixels, each `step` native pixels a side
        (the last row and column may be shorter)."""
        top, bottom, left, right = self._extent()
        return self.mask[top:bottom, left:right]

    def _extent(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) of the breast in mask pixels."""
        rows, columns = np.flatnonzero(self.mask.any(axis=1)), np.flatnonzero(self.mask.any(axis=0))
        return int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1

    def full_resolution(self) -> np.ndarray:
        """The mask at the native size (each mask pixel repeated over the `step` x `step` pixels it stands for)."""
        repeated = self.mask.repeat(self.step, axis=0).repeat(self.step, axis=1)
        return repeated[: self.shape[0], : self.shape[1]]


def segment_breast(array: np.ndarray, top_value: float, threshold: float = 0.1) -> BreastRegion | None:
    """The breast of a 2-D image whose values run to `top_value` (see the module's description); None when nothing
    stands out of the background (a blank image)."""
    step = max(1, math.ceil(max(array.shape) / MASK_SIDE))
    small = _box_filter(array[::step, ::step].astype(np.float32) / top_value)
    low, high = float(small.min()), float(small.max())
    if not high - low >= 1e-6:
        return None
    width = max(1, round(BORDER_FRACTION * min(small.shape)))
    border = np.concatenate([small[:width].ravel(), small[-width:].ravel(), small[:, :width].ravel(),
                             small[:, -width:].ravel()])  # fmt: skip
    bins = ((border - low) * ((HISTOGRAM_BINS - 1e-3) / (high - low))).astype(np.intp)
    background = low + (high - low) * np.bincount(bins, minlength=HISTOGRAM_BINS).argmax() / HISTOGRAM_BINS
    level = background + threshold * (high - background)
    bright = small > level
    radius = max(1, round(OPENING_FRACTION * min(small.shape)))
    opened = _dilate(_erode(bright, radius), radius)
    if not opened.any():  # nothing thicker than a frame line: keep the largest bright structure as it is
        opened = bright
    breast = _fill_holes(_largest_component(opened))
    return BreastRegion(_dilate(breast, 1), step, tuple(array.shape), level)


def _box_filter(image: np.ndarray) -> np.ndarray:
    """Means over 3 x 3 squares, the edge pixels repeated outwards."""
    padded = np.pad(image, 1, mode="edge")
    rows = padded[:-2] + padded[1:-1] + padded[2:]
    return (rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]) / 9


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a (2 radius + 1)^2 square, nothing beyond the border."""
    for axis in (0, 1):
        padded = np.pad(mask, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)])
        length = mask.shape[axis]
        grown = np.zeros_like(mask)
        for offset in range(2 * radius + 1):
            grown |= padded[offset : offset + length] if axis == 0 else padded[:, offset : offset + length]
        mask = grown
    return mask


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion by a (2 radius + 1)^2 square; beyond the border counts as background, so that a frame line
    along the film's edge goes too."""
    return ~_dilate(~np.pad(mask, radius), radius)[radius:-radius, radius:-radius]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of a boolean mask. Its runs of True along the rows are joined (union-find)
    where they overlap a run of the next row: a clean mask has a few runs a row, so this takes well under a
    millisecond at MASK_SIDE."""
    height, width = mask.shape
    change = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    rows, starts = np.nonzero(change == 1)
    ends = np.nonzero(change == -1)[1]  # exclusive; runs in the same (row-major) order as their starts
    parent = list(range(len(rows)))

    def root(run: int) -> int:
        while parent[run] != run:
            parent[run] = parent[parent[run]]
            run = parent[run]
        return run

    first_run = np.searchsorted(rows, np.arange(height + 1)).tolist()
    starts_list, ends_list = starts.tolist(), ends.tolist()
    for row in range(height - 1):
        upper, lower = first_run[row], first_run[row + 1]
        upper_end, lower_end = lower, first_run[row + 2]
        while upper < upper_end and lower < lower_end:  # the two rows' runs in order, as in a merge
            if starts_list[upper] < ends_list[lower] and starts_list[lower] < ends_list[upper]:
                parent[root(upper)] = root(lower)
            if ends_list[upper] < ends_list[lower]:
                upper += 1
            else:
                lower += 1
    roots = np.array([root(run) for run in range(len(rows))])
    largest = roots == np.bincount(roots, weights=ends - starts).argmax()
    marks = np.zeros((height, width + 1), dtype=np.int8)
    marks[rows[largest], starts[largest]] = 1
    marks[rows[largest], ends[largest]] = -1
    return marks.cumsum(axis=1, dtype=np.int8)[:, :width] > 0


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with the background it encloses along both its row and its column (fatty tissue darker than the
    threshold inside the breast)."""
    return mask | (_between_first_and_last(mask) & _between_first_and_last(mask.T).T)


def _between_first_and_last(mask: np.ndarray) -> np.ndarray:
    """True from the first to the last True of each row."""
    width = mask.shape[1]
    first, last = mask.argmax(axis=1), width - 1 - mask[:, ::-1].argmax(axis=1)
    columns = np.arange(width)
    return (columns >= first[:, None]) & (columns <= last[:, None]) & mask.any(axis=1, keepdims=True)


def breast_mask(array: np.ndarray, top_value: float, threshold: float = 0.1) -> np.ndarray:
    """The breast at the native size, pixel-exact at its edge (the coarse mask, which errs outwards by up to a step,
    and the threshold on each pixel), for the breast fraction of tiles and background crops; all False on a blank
    image."""
    region = segment_breast(array, top_value, threshold)
    if region is None:
        return np.zeros(array.shape, dtype=bool)
    return region.full_resolution() & (array > region.level * top_value)


__all__ = ["BreastRegion", "breast_mask", "segment_breast"]
