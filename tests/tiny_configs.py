"""One tiny config per model family, small enough for CPU tests: one-channel inputs of 16 to 40 pixels, 8-pixel
patches, one or two layers. Every test that builds a model starts from these."""

from transformers import Dinov2Config, ResNetConfig, ViTConfig, ViTMAEConfig

from miram_hf import ByolConfig, DinoConfig, MiramConfig, MocoV3Config, SimclrConfig, SwavConfig
from miram_hf.modeling.mil import MilConfig
from miram_hf.modeling.roi import RoiAttentionConfig
from miram_hf.modeling.vae import MammoVaeConfig


def tiny_vit_config(image_size: int = 32, num_hidden_layers: int = 1) -> ViTConfig:
    return ViTConfig(image_size=image_size, patch_size=8, num_channels=1, hidden_size=32,
                     num_hidden_layers=num_hidden_layers, num_attention_heads=2, intermediate_size=64)  # fmt: skip


def tiny_vit_mae_config(**overrides) -> ViTMAEConfig:
    """transformers' ViTMAE with MIRAM's tiny sizes: 32x32 inputs, 2 encoder layers, a 1-layer decoder."""
    fields = dict(image_size=32, patch_size=8, num_channels=1, hidden_size=32, num_hidden_layers=2,
                  num_attention_heads=4, intermediate_size=64, decoder_hidden_size=16, decoder_num_hidden_layers=1,
                  decoder_num_attention_heads=2, decoder_intermediate_size=32)  # fmt: skip
    return ViTMAEConfig(**{**fields, **overrides})


def tiny_resnet_config() -> ResNetConfig:
    return ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")


def tiny_dinov2_config(**overrides) -> Dinov2Config:
    fields = dict(image_size=16, patch_size=8, num_channels=1, hidden_size=32, num_hidden_layers=1,
                  num_attention_heads=2, intermediate_size=64)  # fmt: skip
    return Dinov2Config(**{**fields, **overrides})


def tiny_miram_config(**overrides) -> MiramConfig:
    """32x32 inputs, 8-pixel patches (4x4 tokens), 2 encoder layers, two 2-layer decoders (1x and 2x)."""
    fields = dict(
        image_size=32,
        patch_size=8,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        decoder_hidden_size=16,
        decoder_num_hidden_layers=2,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
        scales=[1, 2],
        num_landmarks=8,
        performer_features=32,
        linformer_k=16,
        nystrom_conv_kernel_size=3,
    )
    fields.update(overrides)
    return MiramConfig(**fields)


# the joint-embedding methods' heads, small
JOINT_EMBEDDING_HEADS = {
    SimclrConfig: dict(projection_hidden_size=32, projection_size=16),
    ByolConfig: dict(projection_hidden_size=32, projection_size=16),
    MocoV3Config: dict(projection_hidden_size=32, projection_size=16),
    DinoConfig: dict(head_hidden_size=32, head_bottleneck_size=16, head_output_size=64),
    SwavConfig: dict(projection_hidden_size=32, projection_size=16, num_prototypes=20, freeze_prototypes_steps=0),
}


def tiny_joint_embedding_config(config_class, backbone_config=None, **overrides):
    """BYOL, DINO, MoCo v3, SimCLR or SwAV with tiny heads around `backbone_config` (a 16 px ViT by default)."""
    backbone_config = backbone_config if backbone_config is not None else tiny_vit_config(16)
    return config_class(backbone_config=backbone_config, **{**JOINT_EMBEDDING_HEADS[config_class], **overrides})


def tiny_mil_config(backbone_config=None, **overrides) -> MilConfig:
    backbone_config = backbone_config if backbone_config is not None else tiny_vit_config(16)
    fields = dict(attention_hidden_size=8, num_attention_heads=2, tile_size=16, num_labels=2)
    return MilConfig(backbone_config=backbone_config, **{**fields, **overrides})


def tiny_roi_config(**overrides) -> RoiAttentionConfig:
    return RoiAttentionConfig(backbone_config=tiny_dinov2_config(), **{"num_attention_heads": 2, "num_labels": 2,
                                                                       **overrides})  # fmt: skip


def tiny_vae_config(**overrides) -> MammoVaeConfig:
    """32x40 inputs (three poolings), a 16-value latent."""
    return MammoVaeConfig(**{"image_size": [32, 40], "encoder_channels": [4, 4, 2], "latent_size": 16, **overrides})
