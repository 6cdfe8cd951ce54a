"""Inputs of the image classifiers here, shared by fine-tuning and evaluation: a batch of processed images, or, for
`MilForImageClassification`, each image's bag of tiles (padded into a batch by `collate_classification`)."""

import torch
from transformers import PretrainedConfig, default_data_collator

from ..processing import MammographyImageProcessor
from .bags import image_bag, pad_bags
from .views import normalization_statistics


def classification_inputs(
    config: PretrainedConfig, processor: MammographyImageProcessor, images: list, augment=None
) -> list[torch.Tensor]:
    """Each image's model input: the processed image (channels, height, width), augmented in [0, 1] intensities by
    `augment` when given, or for a MIL classifier its bag of tiles (tiles, channels, tile_size, tile_size)."""
    pixels = processor(images, return_tensors="pt")["pixel_values"]
    mean, std = normalization_statistics(processor)
    if augment is not None:
        pixels = (augment(pixels * std + mean) - mean) / std
    if config.model_type != "mil":
        return list(pixels)
    bags = [image_bag(image * std + mean, config.tile_size, config.tile_overlap, config.max_background)[0]
            for image in pixels]  # fmt: skip
    return [(bag - mean) / std for bag in bags]


def collate_classification(rows: list[dict]) -> dict:
    """Trainer's default collation, with bags of tiles padded into `pixel_values` and a `tile_mask`."""
    if rows[0]["pixel_values"].ndim < 4:
        return default_data_collator(rows)
    pixel_values, tile_mask = pad_bags([row["pixel_values"] for row in rows])
    batch = default_data_collator([{key: value for key, value in row.items() if key != "pixel_values"} for row in rows])
    return {**batch, "pixel_values": pixel_values, "tile_mask": tile_mask}


__all__ = ["classification_inputs", "collate_classification"]
