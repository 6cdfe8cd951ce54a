"""The models a pretraining run builds: the presets (ViT encoders with MAE-style decoders, ResNet backbones, the VAE
paper's model), a method's config from a preset or a file, a fresh model (with MAE's initialisation for ViTMAE), its
processor, and the modules FSDP shards."""

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForPreTraining, PretrainedConfig, PreTrainedModel

from ..modeling.miram.modeling_miram import sincos_position_embedding
from ..processing import MammographyImageProcessor
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


__all__ = [
    "MODEL_PRESETS",
    "RESNET_PRESETS",
    "VAE_PRESETS",
    "backbone_preset_config",
    "default_model_config",
    "fsdp_units",
    "initialize_vit_mae",
    "is_backbone_preset",
    "pretraining_config",
    "pretraining_model",
    "pretraining_processor",
]
