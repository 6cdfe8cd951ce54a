"""The image classifiers that fine-tuning starts from, and their inputs, shared by fine-tuning and evaluation: a
batch of processed images, or, for `MilForImageClassification`, each image's bag of tiles (padded into a batch by
`collate_classification`)."""

import copy

import torch
from transformers import (
    AutoConfig,
    AutoModelForImageClassification,
    PretrainedConfig,
    PreTrainedModel,
    default_data_collator,
)

from ..modeling.mil import MilConfig, MilForImageClassification
from ..modeling.miram import MiramForImageClassification, MiramForPreTraining
from ..processing import MammographyImageProcessor
from .bags import image_bag, pad_bags
from .pretraining import MODEL_PRESETS, RESNET_PRESETS, backbone_preset_config
from .views import normalization_statistics


def image_classifier(
    name_or_path: str,
    labelling: dict,
    drop_path_rate: float = 0.0,
    image_size: int | None = None,
    mil_pooling: str | None = None,
    tile_size: int = 224,
) -> PreTrainedModel:
    """The classifier to fine-tune, with a fresh head set by `labelling` (num_labels, id2label, problem_type):

    - a preset (`vit-base`, `resnet-50`, ...): a ViT or ResNet from random weights (the papers' supervised baselines;
      `image_size` sets a ViT's input);
    - a ViTMAE checkpoint (MAE pretraining here, or facebook/vit-mae-*): its encoder with MAE's fine-tuning head, the
      mean of the patch tokens, as a `MiramForImageClassification`;
    - any other checkpoint its `AutoModelForImageClassification` (MIRAM, ViT, ResNet, DINOv2, the VAE, ...).

    With `mil_pooling`, the classifier's encoder becomes the tile encoder of a `MilForImageClassification`. Stochastic
    depth (`drop_path_rate`) applies where the encoder has it (MIRAM).
    """
    if name_or_path in MODEL_PRESETS or name_or_path in RESNET_PRESETS:
        vit_size = {"image_size": image_size} if image_size and name_or_path in MODEL_PRESETS else {}
        config = backbone_preset_config(name_or_path, **vit_size)
        config.update(labelling)
        model = AutoModelForImageClassification.from_config(config)
    elif AutoConfig.from_pretrained(name_or_path).model_type == "vit_mae":
        encoder = MiramForPreTraining.from_vit_mae(name_or_path, scales=[1], decoder_attention=["sdpa"]).miram
        config = copy.deepcopy(encoder.config)
        config.update({**labelling, "drop_path_rate": drop_path_rate})
        model = MiramForImageClassification(config)
        model.miram.load_state_dict(encoder.state_dict())
    else:
        drop_path = {"drop_path_rate": drop_path_rate} if hasattr(AutoConfig.from_pretrained(name_or_path),
                                                                  "drop_path_rate") else {}  # fmt: skip
        model = AutoModelForImageClassification.from_pretrained(
            name_or_path, ignore_mismatched_sizes=True, **labelling, **drop_path
        )
    if mil_pooling:
        mil = MilConfig(backbone_config=model.config, pooling=mil_pooling, tile_size=tile_size, **labelling)
        encoder, model = model.base_model, MilForImageClassification(mil)
        model.backbone.load_state_dict(encoder.state_dict())
    return model


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


__all__ = ["classification_inputs", "collate_classification", "image_classifier"]
