"""The image classifiers that fine-tuning starts from, and their inputs, shared by fine-tuning and evaluation: a
processed image, or, for `MilForImageClassification`, its bag of tiles, or, for `RoiAttentionForImageClassification`,
its regions (batched by `collate_classification`)."""

import copy

import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    PretrainedConfig,
    PreTrainedModel,
    default_data_collator,
)

from ..modeling.mil import MilConfig, MilForImageClassification
from ..modeling.miram import MiramForPreTraining
from ..modeling.roi import RoiAttentionConfig, RoiAttentionForImageClassification
from ..processing import MammographyImageProcessor
from ..processing.augmentations import Compose
from .bags import image_bag, pad_bags
from .presets import MODEL_PRESETS, backbone_preset_config, is_backbone_preset
from .regions import IntensityBlobProposer, collate_roi, roi_inputs
from .views import normalization_statistics


def image_classifier(
    name_or_path: str,
    labelling: dict,
    drop_path_rate: float = 0.0,
    image_size: int | None = None,
    mil_pooling: str | None = None,
    tile_size: int = 224,
    roi_pooling: str | None = None,
) -> PreTrainedModel:
    """The classifier to fine-tune, with a fresh head set by `labelling` (num_labels, id2label, problem_type):

    - a preset (`vit-base`, `resnet-50`, ...): a ViT or ResNet from random weights (the papers' supervised baselines;
      `image_size` sets a ViT's input);
    - a ViTMAE checkpoint (MAE pretraining here, or facebook/vit-mae-*): its encoder with MAE's fine-tuning head, the
      mean of the patch tokens, as a `MiramForImageClassification`;
    - any other checkpoint its `AutoModelForImageClassification` (MIRAM, ViT, ResNet, DINOv2, the VAE, ...).

    With `mil_pooling`, the classifier's encoder becomes the tile encoder of a `MilForImageClassification`; with
    `roi_pooling`, the region encoder of a `RoiAttentionForImageClassification` (a DINOv2 one in the paper). Stochastic
    depth (`drop_path_rate`) applies where the encoder has it (MIRAM).
    """
    if mil_pooling and roi_pooling:
        raise ValueError("Choose MIL pooling over tiles or RoI attention over regions, not both.")
    if is_backbone_preset(name_or_path):
        vit_size = {"image_size": image_size} if image_size and name_or_path in MODEL_PRESETS else {}
        config = backbone_preset_config(name_or_path, **vit_size)
        config.update(labelling)
        model = AutoModelForImageClassification.from_config(config)
    elif (config := AutoConfig.from_pretrained(name_or_path)).model_type == "vit_mae":
        mae = MiramForPreTraining.from_vit_mae(name_or_path, scales=[1], decoder_attention=["sdpa"])
        model = mae.backbone_for_image_classification(**labelling, drop_path_rate=drop_path_rate)
    else:
        drop_path = {"drop_path_rate": drop_path_rate} if hasattr(config, "drop_path_rate") else {}
        model = AutoModelForImageClassification.from_pretrained(
            name_or_path, ignore_mismatched_sizes=True, **labelling, **drop_path
        )
    if mil_pooling:
        wrapper = MilForImageClassification(
            MilConfig(backbone_config=model.config, pooling=mil_pooling, tile_size=tile_size, **labelling)
        )
    elif roi_pooling:
        wrapper = RoiAttentionForImageClassification(
            RoiAttentionConfig(backbone_config=model.config, pooling=roi_pooling, **labelling)
        )
    else:
        return model
    wrapper.backbone.load_state_dict(model.base_model.state_dict())
    return wrapper


LORA_PROJECTIONS = ("q_proj", "v_proj", "query", "value")  # attention's query and value: LoRA's default targets


def with_lora(
    model: PreTrainedModel, rank: int, alpha: float, dropout: float = 0.0, target_modules: list[str] | None = None
):
    """`model` with LoRA adapters (PEFT, `pip install miram_hf[lora]`) on its backbone's `target_modules` (by default
    the attention's query and value projections: `q_proj`/`v_proj` in MIRAM and transformers 5's ViT and DINOv2),
    and everything outside the backbone (the head, MIL / RoI pooling) trained whole and saved with the adapters."""
    from peft import LoraConfig, get_peft_model

    backbone = model.base_model
    if target_modules is None:
        linear = [name for name, module in backbone.named_modules() if isinstance(module, torch.nn.Linear)]
        target_modules = sorted({name.rsplit(".", 1)[-1] for name in linear if name.endswith(LORA_PROJECTIONS)})
        if not target_modules:
            raise ValueError(
                f"No attention projections ({', '.join(LORA_PROJECTIONS)}) in the {model.config.model_type} backbone "
                "for LoRA: name the layers to adapt with --lora_target_modules."
            )
    heads = [name for name, child in model.named_children() if child is not backbone]
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules,
                        modules_to_save=heads)  # fmt: skip
    return get_peft_model(model, config)


def label_task(feature) -> tuple[bool, list[str]]:
    """Whether a label column's feature is multi-label (a list of classes, as `label_mass_margins`), and its class
    names."""
    multi_label = hasattr(feature, "feature")
    return multi_label, list(feature.feature.names if multi_label else feature.names)


def carries_label(row: dict, label_column: str, multi_label: bool) -> bool:
    """Whether a row takes part in its task: a mass (pathology 0 or 1) for the multi-label mass margins, a label of
    0 or more otherwise (no background crop, no -1 for "not given")."""
    return row["label_pathology"] in (0, 1) if multi_label else row[label_column] >= 0


def label_targets(values: list, num_classes: int, multi_label: bool) -> list:
    """A label column's values as targets: the class indices, or for a multi-label column (lists of classes, as the
    mass-margin atoms) multi-hot float rows."""
    if not multi_label:
        return values
    return [np.isin(np.arange(num_classes), classes).astype(np.float32) for classes in values]


def class_weights(targets: np.ndarray, num_classes: int, multi_label: bool) -> torch.Tensor:
    """Weights against class imbalance from the training targets: n / (classes x count) per class for cross-entropy;
    for multi-label targets, each label's negatives / positives (binary cross-entropy's `pos_weight`)."""
    counts = targets.sum(0) if multi_label else np.bincount(targets, minlength=num_classes)
    weights = (len(targets) - counts) if multi_label else len(targets) / num_classes
    return torch.tensor(weights / np.maximum(counts, 1), dtype=torch.float32)


def classification_processor(
    model_name_or_path: str, config: PretrainedConfig, image_size: int | None = None, whole_mammograms: bool = True
) -> MammographyImageProcessor:
    """The processor a classifier fine-tunes with: the checkpoint's own when it saved a `MammographyImageProcessor`,
    else a new one keeping the checkpoint processor's normalisation (an ImageNet ViT's) at the model's input size. At
    `image_size` when given (whole images several tiles wide for MIL), with the model's channels and scale 1 only; it
    crops to the breast and flips it to one side only for `whole_mammograms` (crops and tiles are breast already)."""
    processor = None  # a preset has none (and is no Hub id to look one up under)
    if not is_backbone_preset(model_name_or_path):
        try:
            processor = AutoImageProcessor.from_pretrained(model_name_or_path)
        except OSError:  # a checkpoint without a processor
            pass
    if not isinstance(processor, MammographyImageProcessor):
        size = getattr(config, "image_size", 224)
        statistics = {"image_mean": processor.image_mean, "image_std": processor.image_std} if processor else {}
        processor = MammographyImageProcessor(size={"height": size, "width": size}, **statistics)
    if image_size:
        processor.size = {"height": image_size, "width": image_size}
    processor.num_channels = config.num_channels
    processor.scales = None  # a pretraining processor's finer targets: classification takes scale 1 only
    processor.do_breast_crop = processor.do_flip = whole_mammograms
    return processor


def classification_inputs(
    config: PretrainedConfig, processor: MammographyImageProcessor, images: list, augment: Compose | None = None
) -> list[dict[str, torch.Tensor]]:
    """Each image's model inputs: its processed image `pixel_values` (channels, height, width), augmented in [0, 1]
    intensities by `augment` when given; for a MIL classifier its bag of tiles instead (tiles, channels, tile_size,
    tile_size); for RoI attention the regions of the built-in bright-blob proposer (`roi_inputs`, unaugmented)."""
    if config.model_type == "roi_attention":
        region_processor = copy.deepcopy(processor)
        region_processor.do_breast_crop = region_processor.do_flip = False  # roi_inputs measures the regions itself
        proposer = IntensityBlobProposer(config.num_regions, config.region_fraction)
        return [roi_inputs(image, proposer(image), region_processor) for image in images]
    mil = config.model_type == "mil"
    inputs = processor(images, return_tensors="pt", return_breast_mask=mil)
    pixels = inputs["pixel_values"]
    if augment is not None:
        mean, std = normalization_statistics(processor)
        if mil:  # the tiles are chosen on the augmented image: its breast mask moves with it
            pixels, inputs["breast_mask"] = augment.with_masks(pixels * std + mean, inputs["breast_mask"])
        else:
            pixels = augment(pixels * std + mean)
        pixels = (pixels - mean) / std
    if not mil:
        return [{"pixel_values": image} for image in pixels]
    return [{"pixel_values": image_bag(image, mask, config.tile_size, config.tile_overlap, config.max_background)[0]}
            for image, mask in zip(pixels, inputs["breast_mask"], strict=True)]  # fmt: skip


def collate_classification(rows: list[dict]) -> dict:
    """Trainer's default collation; bags of tiles padded into `pixel_values` and a `tile_mask`, regions by
    `collate_roi`."""
    if "anchor_pixel_values" in rows[0]:
        return collate_roi(rows)
    if rows[0]["pixel_values"].ndim < 4:
        return default_data_collator(rows)
    pixel_values, tile_mask = pad_bags([row["pixel_values"] for row in rows])
    batch = default_data_collator([{key: value for key, value in row.items() if key != "pixel_values"} for row in rows])
    return {**batch, "pixel_values": pixel_values, "tile_mask": tile_mask}


__all__ = [
    "LORA_PROJECTIONS",
    "carries_label",
    "class_weights",
    "classification_inputs",
    "classification_processor",
    "collate_classification",
    "image_classifier",
    "label_targets",
    "label_task",
    "with_lora",
]
