"""Regions of interest for `RoiAttentionForImageClassification`: pluggable proposers (ground-truth boxes, a bright-blob
finder, or a transformers zero-shot object detector such as Grounding DINO) and the model inputs built from them."""

import numpy as np
import torch
from PIL import Image

from ..processing import MammographyImageProcessor
from ..processing.augmentations import gaussian_blur
from ..processing.breast_segmentation import breast_mask, segment_breast
from ..processing.patches import Box, lesion_crop_box


def unit_image(image: np.ndarray) -> np.ndarray:
    """An (H, W) image of any bit depth as float32 in [0, 1] of its own range."""
    image = np.asarray(image, dtype=np.float32)
    low, high = float(image.min()), float(image.max())
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def ground_truth_boxes(lesions: list[dict]) -> list[Box]:
    """The regions an `images` row's annotations give: the box of each item of its `lesions` column."""
    return [Box(*lesion["box"]) for lesion in lesions]


class IntensityBlobProposer:
    """The `num_regions` brightest blobs of the breast: the image smoothed by a Gaussian (sigma a fraction of its
    short side), then maxima taken one by one inside the breast (`breast_mask`: burned-in labels and markers are
    often the brightest pixels), each suppressing a square of `region_fraction` of the short side around it. Dense
    masses and calcification clusters are the bright blobs of a mammogram."""

    def __init__(self, num_regions: int = 8, region_fraction: float = 0.2, sigma_fraction: float = 0.02):
        self.num_regions, self.region_fraction, self.sigma_fraction = num_regions, region_fraction, sigma_fraction

    def __call__(self, image: np.ndarray) -> list[Box]:
        unit = torch.from_numpy(unit_image(image))
        side = max(1, round(self.region_fraction * min(unit.shape)))
        sigma = torch.tensor([max(0.5, self.sigma_fraction * min(unit.shape))])
        smooth = gaussian_blur(unit[None, None], sigma)[0, 0]
        breast = torch.from_numpy(breast_mask(np.asarray(image), float(np.max(image)) or 1.0))
        if breast.any():  # a blank image: anywhere
            smooth[~breast] = float("-inf")
        boxes = []
        for _ in range(self.num_regions):
            index = int(smooth.argmax())
            if smooth.flatten()[index] == float("-inf"):
                break
            row, column = divmod(index, unit.shape[1])  # a `side` square around the maximum, moved inside the image
            box = lesion_crop_box(tuple(unit.shape), Box(row, column, row + 1, column + 1), context=0, min_size=side)
            smooth[box.top : box.bottom, box.left : box.right] = float("-inf")
            boxes.append(box)
        return boxes


class ZeroShotDetectionProposer:
    """Regions from a transformers zero-shot object detector, e.g.
    `pipeline("zero-shot-object-detection", model="IDEA-Research/grounding-dino-tiny")` when its weights are at hand:
    the `num_regions` best-scoring boxes for `labels`."""

    def __init__(self, detector, labels: tuple[str, ...] = ("a mass", "calcifications"), num_regions: int = 8,
                 threshold: float = 0.1):  # fmt: skip
        self.detector, self.labels, self.num_regions, self.threshold = detector, list(labels), num_regions, threshold

    def __call__(self, image: np.ndarray) -> list[Box]:
        picture = Image.fromarray((unit_image(image) * 255).astype(np.uint8)).convert("RGB")
        detections = self.detector(picture, candidate_labels=self.labels, threshold=self.threshold)
        detections = sorted(detections, key=lambda detection: detection["score"], reverse=True)[: self.num_regions]
        height, width = np.shape(image)[:2]
        boxes = []
        for detection in detections:
            box = detection["box"]
            top, left = max(0, int(box["ymin"])), max(0, int(box["xmin"]))
            bottom, right = min(height, int(box["ymax"])), min(width, int(box["xmax"]))
            if bottom > top and right > left:
                boxes.append(Box(top, left, bottom, right))
        return boxes


def roi_inputs(image: np.ndarray, boxes: list[Box], processor: MammographyImageProcessor) -> dict:
    """One image's inputs: `pixel_values` (regions, channels, size, size) of the region crops, `anchor_pixel_values`
    (channels, size, size) of the breast, `region_centers` (regions, 2) in [0, 1] of the breast's box. `processor`
    should neither crop nor flip (`do_breast_crop=False, do_flip=False`): the centres are measured here."""
    if not boxes:
        raise ValueError("No region to classify: the proposer found none (give the whole breast as a box).")
    image = np.asarray(image)
    region = segment_breast(image, float(image.max()) or 1.0)
    top, bottom, left, right = (0, image.shape[0], 0, image.shape[1]) if region is None else region.box()
    centers = torch.tensor([[(box.top + box.bottom) / 2, (box.left + box.right) / 2] for box in boxes])
    centers = ((centers - torch.tensor([top, left])) / torch.tensor([bottom - top, right - left])).clamp(0, 1)
    breast = image[top:bottom, left:right]
    if region is not None:  # labels and frame lines inside the box stay out of the anchor
        breast = np.where(region.full_resolution()[top:bottom, left:right], breast, 0)
    anchor = processor(breast, return_tensors="pt")["pixel_values"][0]
    crops = processor([box.crop(image) for box in boxes], return_tensors="pt")["pixel_values"]
    return {"pixel_values": crops, "anchor_pixel_values": anchor, "region_centers": centers.float()}


def collate_roi(rows: list[dict]) -> dict:
    """Images' `roi_inputs` (with their `labels`, if any) padded to the most regions, with a `region_mask`."""
    most = max(len(row["pixel_values"]) for row in rows)
    pixel_values = rows[0]["pixel_values"].new_zeros(len(rows), most, *rows[0]["pixel_values"].shape[1:])
    centers, region_mask = torch.zeros(len(rows), most, 2), torch.zeros(len(rows), most, dtype=torch.bool)
    for index, row in enumerate(rows):
        count = len(row["pixel_values"])
        pixel_values[index, :count], centers[index, :count], region_mask[index, :count] = (
            row["pixel_values"], row["region_centers"], True
        )  # fmt: skip
    anchors = torch.stack([row["anchor_pixel_values"] for row in rows])
    batch = {"pixel_values": pixel_values, "anchor_pixel_values": anchors, "region_centers": centers,
             "region_mask": region_mask}  # fmt: skip
    if "labels" in rows[0]:
        batch["labels"] = torch.as_tensor(np.array([row["labels"] for row in rows]))
    return batch


__all__ = [
    "IntensityBlobProposer",
    "ground_truth_boxes",
    "ZeroShotDetectionProposer",
    "collate_roi",
    "roi_inputs",
]
