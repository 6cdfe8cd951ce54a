import pytest
import torch

from miram_hf import MiramConfig


def tiny_miram_config(**overrides) -> MiramConfig:
    """A MIRAM small enough for CPU tests: 32x32 inputs, 8-pixel patches (4x4 tokens), 2 encoder layers."""
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


@pytest.fixture
def tiny_config() -> MiramConfig:
    return tiny_miram_config()


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
