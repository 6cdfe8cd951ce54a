"""What `scripts/pretrain.py` builds: the model from a preset, the views cut from native pixels, the masking noise,
and each process's batches of each epoch, all drawn from seeds rather than from the global random state so that a
resumed run repeats a straight one exactly."""

import zlib
from collections.abc import Iterator
from pathlib import Path

import datasets
import numpy as np
import torch
from datasets.distributed import split_dataset_by_node
from torch import nn
from torch.utils.data import DataLoader
from transformers import AutoConfig, AutoModelForPreTraining, BatchFeature, PretrainedConfig, PreTrainedModel

from ..data import BUILDERS, load_mammography, pretraining_mixture
from ..data.mixtures import MIXTURES
from ..data.raw_pixels import RAW_PIXEL_FEATURES, row_image
from ..modeling.miram.modeling_miram import sincos_position_embedding
from ..processing import MammographyImageProcessor
from ..processing.augmentations import random_crop_regions
from .methods import pretraining_method

# Encoders of DeiT's tiny / small and ViT's base sizes; MAE's decoder (512 wide, 8 deep) for base, narrower ones below.
# One channel, 112 x 112 inputs in 16-pixel patches, as in the MIRAM paper. `vit-demo`, the default, is what two CPU
# cores pretrain in minutes to a reconstruction well below the visible-mean baseline (README: the demo's figures):
# DeiT-tiny's width at half its depth, 2-layer decoders, 64 x 64 inputs in 8-pixel patches. `vit-micro` is the
# phantom study's (docs/phantom_study.md), small enough for its dozens of runs on two CPU cores: a 4-layer, 128-wide
# encoder and 2-layer, 64-wide decoders over 32 x 32 inputs in 4-pixel patches.
PRESET_INPUT = dict(num_channels=1, image_size=112, patch_size=16)
MODEL_PRESETS = {
    "vit-demo": dict(
        image_size=64, patch_size=8, hidden_size=192, num_hidden_layers=6, num_attention_heads=3,
        intermediate_size=768, decoder_hidden_size=128, decoder_num_hidden_layers=2, decoder_num_attention_heads=4,
        decoder_intermediate_size=512,
    ),
    "vit-micro": dict(
        image_size=32, patch_size=4, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=512, decoder_hidden_size=64, decoder_num_hidden_layers=2, decoder_num_attention_heads=4,
        decoder_intermediate_size=256,
    ),
    "vit-tiny": dict(
        hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768,
        decoder_hidden_size=128, decoder_num_hidden_layers=4, decoder_num_attention_heads=4,
        decoder_intermediate_size=512,
    ),
    "vit-small": dict(
        hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
        decoder_hidden_size=256, decoder_num_hidden_layers=4, decoder_num_attention_heads=8,
        decoder_intermediate_size=1024,
    ),
    "vit-base": dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
        decoder_hidden_size=512, decoder_num_hidden_layers=8, decoder_num_attention_heads=16,
        decoder_intermediate_size=2048,
    ),
}  # fmt: skip
# ResNet backbones of the joint-embedding methods (the tiled-patch paper's SimCLR, BYOL and SwAV use ResNet-50)
RESNET_PRESETS = {
    "resnet-18": dict(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512]),
    "resnet-50": dict(layer_type="bottleneck", depths=[3, 4, 6, 3], hidden_sizes=[256, 512, 1024, 2048]),
    # the tiled-patch paper's bigger encoders: deeper, and twice as wide (every stage's channels doubled)
    "resnet-152": dict(layer_type="bottleneck", depths=[3, 8, 36, 3], hidden_sizes=[256, 512, 1024, 2048]),
    "resnet-50-2x": dict(layer_type="bottleneck", depths=[3, 4, 6, 3], hidden_sizes=[512, 1024, 2048, 4096]),
}
# the VAE-SSL paper's model: 640 x 800 mammograms
VAE_PRESETS = {"vae-640x800": dict(image_size=[640, 800])}
MIRAM_ONLY = ("scales", "decoder_attention")
MASKING_ONLY = ("mask_ratio", "norm_pix_loss")


def pretraining_config(
    model_type: str, model_config: str | None = None, config_overrides: str | None = None, **overrides
) -> PretrainedConfig:
    """The config of a model to pretrain. `model_config` is a preset (MODEL_PRESETS with PRESET_INPUT, RESNET_PRESETS
    for the joint-embedding methods, whose backbone the preset then gives, VAE_PRESETS; by default vit-demo, or
    vae-640x800 for the VAE) or a config file or folder; `overrides`
    set its input and masking fields (image_size, patch_size, scales, ...; None leaves a field alone) and
    `config_overrides` any other, as `key=value,key=value` (transformers' `update_from_string`)."""
    method = pretraining_method(model_type)
    overrides = {key: value for key, value in overrides.items() if value is not None}
    wrong = set(overrides) & set(MIRAM_ONLY if model_type != "miram" else ())
    wrong |= set(overrides) & set(MASKING_ONLY if not method.masked else ())
    if wrong:
        raise ValueError(f"{sorted(wrong)} are not options of model_type {model_type}.")
    model_config = model_config or default_model_config(model_type)
    if is_backbone_preset(model_config) or model_config in VAE_PRESETS:
        config = preset_config(model_type, model_config, overrides)
    else:
        config = AutoConfig.from_pretrained(model_config, **overrides)
        if config.model_type != method.model_type:
            raise ValueError(f"{model_config} is a {config.model_type} config, not one for model_type {model_type}.")
    if config_overrides:
        config.update_from_string(config_overrides)
    return config


def default_model_config(model_type: str) -> str:
    """The preset a method pretrains without --model_config: the demo's ViT, or the VAE paper's model."""
    return "vae-640x800" if model_type == "vae" else "vit-demo"


def preset_config(model_type: str, preset: str, overrides: dict) -> PretrainedConfig:
    """A preset's config: the masked autoencoders' own, the VAE's, or a joint-embedding config around the preset
    backbone."""
    if (model_type == "vae") != (preset in VAE_PRESETS):
        raise ValueError(f"{preset} is not a preset of model_type {model_type}.")
    if model_type == "vae":
        size = overrides.get("image_size")
        return AutoConfig.for_model(
            "mammo_vae", **{**VAE_PRESETS[preset], **({"image_size": [size, size]} if size else {})}
        )
    method = pretraining_method(model_type)
    if method.masked:
        if preset in RESNET_PRESETS:
            raise ValueError(f"{preset} is a ResNet backbone; {model_type} pretrains a ViT ({sorted(MODEL_PRESETS)}).")
        return AutoConfig.for_model(method.model_type, **{**PRESET_INPUT, **MODEL_PRESETS[preset], **overrides})
    backbone = backbone_preset_config(preset, **overrides)
    # a ViT's own input size (its preset's, or the override); ResNet configs have none
    image_size = getattr(backbone, "image_size", overrides.get("image_size", PRESET_INPUT["image_size"]))
    return AutoConfig.for_model(method.model_type, backbone_config=backbone, image_size=image_size)


def is_backbone_preset(name: str) -> bool:
    """Whether `name` is a ViT or ResNet preset rather than a checkpoint."""
    return name in MODEL_PRESETS or name in RESNET_PRESETS


def backbone_preset_config(preset: str, **overrides) -> PretrainedConfig:
    """The transformers ViT (MODEL_PRESETS' encoder, PRESET_INPUT) or ResNet (RESNET_PRESETS, one channel) config of a
    preset: the backbone of the joint-embedding methods, and the papers' randomly initialised baselines."""
    if preset in RESNET_PRESETS:
        channels = overrides.get("num_channels", PRESET_INPUT["num_channels"])
        first_stage, layer_type = RESNET_PRESETS[preset]["hidden_sizes"][0], RESNET_PRESETS[preset]["layer_type"]
        width = first_stage // 4 if layer_type == "bottleneck" else first_stage  # the stem: 64, or 128 for 2x
        return AutoConfig.for_model("resnet", num_channels=channels, embedding_size=width, **RESNET_PRESETS[preset])
    if preset not in MODEL_PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {sorted(MODEL_PRESETS) + sorted(RESNET_PRESETS)}.")
    encoder = {key: value for key, value in MODEL_PRESETS[preset].items() if not key.startswith("decoder")}
    return AutoConfig.for_model("vit", **{**PRESET_INPUT, **encoder, **overrides})


def pretraining_model(config: PretrainedConfig) -> PreTrainedModel:
    """A freshly initialised model for `config` (MIRAM or ViTMAE) with its pretraining decoder(s)."""
    model = AutoModelForPreTraining.from_config(config)
    if config.model_type == "vit_mae":
        initialize_vit_mae(model)
    return model


def fsdp_units(model: PreTrainedModel) -> list[str]:
    """The module classes that FSDP shards one unit each: the model's `_no_split_modules` (its transformer blocks,
    embeddings) less those around its input embeddings. accelerate's FSDP2 makes the input embeddings a unit of their
    own, which fails once a unit around them (ViTMAEEmbeddings, MiramEmbeddings) holds their parameters."""
    try:
        embeddings = model.get_input_embeddings()
    except NotImplementedError:
        embeddings = None
    present = {type(module).__name__ for module in model.modules()}
    around_embeddings = {
        type(module).__name__ for module in model.modules() if any(sub is embeddings for sub in module.modules())
    }
    return sorted(name for name in model._no_split_modules or [] if name in present and name not in around_embeddings)


@torch.no_grad()
def initialize_vit_mae(model: PreTrainedModel) -> None:
    """MAE's initialisation of what `ViTMAEForPreTraining(config)` leaves at zero in transformers 5.x (its
    `initialize_weights` returns early once the patch projection is flagged initialised, and `_init_weights` zeroes
    the decoder's): the fixed sin-cos position embeddings of encoder and decoder, the CLS and the mask token. Without
    it a ViTMAE pretrained from scratch never sees where its patches are."""
    embeddings, decoder, config = model.vit.embeddings, model.decoder, model.config
    side = int(embeddings.patch_embeddings.num_patches**0.5)
    embeddings.position_embeddings.copy_(sincos_position_embedding(side, side, config.hidden_size)[None])
    decoder.decoder_pos_embed.copy_(sincos_position_embedding(side, side, config.decoder_hidden_size)[None])
    nn.init.normal_(embeddings.cls_token, std=config.initializer_range)
    nn.init.normal_(decoder.mask_token, std=config.initializer_range)


def pretraining_processor(config: PretrainedConfig) -> MammographyImageProcessor:
    """The processor of a pretraining run: crops and tiles stretched to the model's input (MAE's random resized crop
    sets the aspect), [0, 1] intensities normalised to mean 0.5 / std 0.5, and MIRAM's targets at every scale."""
    height, width = (config.image_size,) * 2 if isinstance(config.image_size, int) else config.image_size
    return MammographyImageProcessor(
        size={"height": height, "width": width},
        do_breast_crop=False,  # crops and tiles lie inside the breast already
        do_flip=False,
        keep_aspect_ratio=False,
        num_channels=config.num_channels,
        scales=getattr(config, "scales", None),
    )


def derived_seed(*values: int) -> int:
    """A 64-bit seed mixed from several integers (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([int(value) for value in values]).generate_state(1, np.uint64)[0])


def mask_noise(
    pixel_values: torch.Tensor, patch_size: int, seed: int, step: int, process_index: int = 0, micro_batch: int = 0
) -> torch.Tensor:
    """MAE's masking noise (batch, num_patches) for one micro-batch, drawn from (seed, step, process, micro-batch)."""
    batch, _, height, width = pixel_values.shape
    generator = torch.Generator().manual_seed(derived_seed(seed, step, process_index, micro_batch))
    noise = torch.rand(batch, (height // patch_size) * (width // patch_size), generator=generator)
    return noise.to(pixel_values.device)


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


def pretraining_dataset(
    dataset: str,
    data_dir: str | None = None,
    config_name: str = "lesions",
    streaming: bool = False,
    cache_dir: str | None = None,
    **config_kwargs,
) -> datasets.Dataset | datasets.IterableDataset:
    """The training images of `dataset`, as an `image` column (or the raw `pixels`, `height` and `width` of
    `prepare_data.py --image_format raw`):

    - a collection (`synthetic`, `cbis-ddsm`, ...): the train split of its `config_name` (`lesions`, `tiles`, ...)
      built from `data_dir`, with `config_kwargs` (e.g. `num_images` for synthetic);
    - a mixture of the MIRAM paper (`lesions-only`, `mgs-and-lesions`; the `cbis-ddsm` set is the collection's
      `lesions`): `data_dir` names each collection's folder, `cbis-ddsm=/data/CBIS-DDSM,inbreast=/data/INbreast`;
    - anything else: parquet files, a file, a glob or a folder (its `train-*.parquet` shards when it has some, as
      `scripts/prepare_data.py` writes them), streamed with `streaming=True` so that data larger than memory trains.
    """
    if dataset in BUILDERS:
        rows = load_mammography(dataset, data_dir, config_name, "train", cache_dir, **config_kwargs)
    elif dataset in MIXTURES:
        if not data_dir:
            raise ValueError(f"The {dataset} mixture needs --data_dir name=folder,name=folder (e.g. inbreast=/data).")
        items = [item.split("=", 1) for item in data_dir.split(",")]
        if any(len(item) != 2 for item in items):
            raise ValueError(f"--data_dir for a mixture is name=folder,name=folder; got {data_dir!r}.")
        folders = dict(items)
        rows = pretraining_mixture(dataset, folders, cache_dir=cache_dir)
    else:
        files = dataset
        if Path(dataset).is_dir():  # prepare_data.py's folder holds every split: train on the train shards
            pattern = "train-*.parquet" if any(Path(dataset).glob("train-*.parquet")) else "*.parquet"
            files = str(Path(dataset) / pattern)
        rows = datasets.load_dataset("parquet", data_files={"train": files}, split="train", streaming=streaming)
    for columns in (["image"], list(RAW_PIXEL_FEATURES)):
        if set(columns) <= set(rows.column_names):
            return rows.select_columns(columns)
    raise ValueError(f"{dataset} has no `image` column, nor raw `pixels` (columns: {rows.column_names}).")


def batches_per_epoch(dataset: datasets.Dataset, batch_size: int, num_processes: int) -> int:
    """Full batches each process gets from one epoch of a map-style dataset (the same number on every process)."""
    count = len(dataset) // num_processes // batch_size
    if count == 0:
        raise ValueError(
            f"{len(dataset)} training rows are fewer than one batch of {batch_size} for each of {num_processes} "
            "processes: lower --per_device_train_batch_size or add data."
        )
    return count


def epoch_batches(
    dataset: datasets.Dataset | datasets.IterableDataset,
    collator: PretrainingCollator,
    batch_size: int,
    epoch: int,
    process_index: int = 0,
    num_processes: int = 1,
    skip: int = 0,
    shuffle_buffer_size: int = 1000,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[BatchFeature]:
    """This process's batches of `epoch`, the first `skip` left out: the dataset shuffled by (seed, epoch) and split
    across processes (`split_dataset_by_node`). A map-style dataset gives every process the same number of full
    batches; a streamed one gives each process its part of the stream (whole shards when they divide evenly)."""
    seed = collator.seed
    if isinstance(dataset, datasets.IterableDataset):
        shuffled = dataset.shuffle(seed=seed, buffer_size=shuffle_buffer_size)
        rows_to_skip = skip * batch_size
        if shuffled.num_shards % num_processes:  # split row by row: datasets then skips rows of the whole stream
            rows_to_skip *= num_processes
        shard = split_dataset_by_node(shuffled, process_index, num_processes).skip(rows_to_skip)
        shard.set_epoch(epoch)
    else:
        count = batches_per_epoch(dataset, batch_size, num_processes)
        if skip >= count:  # saved right at the end of the epoch: nothing of it is left
            return iter(())
        shuffled = dataset.shuffle(seed=derived_seed(seed, epoch))
        shard = split_dataset_by_node(shuffled.select(range(count * batch_size * num_processes)), process_index,
                                      num_processes)  # fmt: skip
        shard = shard.select(range(skip * batch_size, count * batch_size))
    collator.epoch = epoch
    loader = DataLoader(shard, batch_size=batch_size, collate_fn=collator, num_workers=num_workers, drop_last=True,
                        pin_memory=pin_memory)  # fmt: skip
    return iter(loader)


__all__ = [
    "MODEL_PRESETS",
    "RESNET_PRESETS",
    "VAE_PRESETS",
    "PretrainingCollator",
    "backbone_preset_config",
    "batches_per_epoch",
    "default_model_config",
    "derived_seed",
    "epoch_batches",
    "fsdp_units",
    "initialize_vit_mae",
    "is_backbone_preset",
    "mask_noise",
    "native_crop",
    "pretraining_config",
    "pretraining_dataset",
    "pretraining_model",
    "pretraining_processor",
]
