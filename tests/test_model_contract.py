"""The contract transformers' own models keep, checked on every model class here (tiny configs): tuples with
`return_dict=False`, `output_loading_info=True`, weights fixed by design still fixed after `from_pretrained`,
gradient checkpointing claimed only where the backbone has it, input embeddings, gradients reaching every trainable
parameter, loading and running in bfloat16, each image's logits independent of its batch, and for MIRAM a
whole-graph compile and the processor's full output accepted."""

import numpy as np
import pytest
import torch
from conftest import tiny_miram_config, tiny_resnet_config, tiny_vit_config
from transformers import AutoModel, Dinov2Config

from miram_hf import (
    ByolConfig,
    ByolForPreTraining,
    DinoConfig,
    DinoForPreTraining,
    MammographyImageProcessor,
    MiramForImageClassification,
    MiramForPreTraining,
    MiramModel,
    MocoV3Config,
    MocoV3ForPreTraining,
    SimclrConfig,
    SimclrForPreTraining,
    SwavConfig,
    SwavForPreTraining,
)
from miram_hf.modeling.mil import MilConfig, MilForImageClassification
from miram_hf.modeling.roi import RoiAttentionConfig, RoiAttentionForImageClassification
from miram_hf.modeling.vae import MammoVaeConfig, MammoVaeForImageClassification, MammoVaeForPreTraining


def dinov2() -> Dinov2Config:
    return Dinov2Config(image_size=16, patch_size=8, num_channels=1, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64)  # fmt: skip


def images(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(0))


HEADS = dict(projection_hidden_size=32, projection_size=16)
JOINT = {
    ByolForPreTraining: ByolConfig(backbone_config=tiny_vit_config(16), **HEADS),
    MocoV3ForPreTraining: MocoV3Config(backbone_config=tiny_vit_config(16), **HEADS),
    SimclrForPreTraining: SimclrConfig(backbone_config=tiny_resnet_config(), **HEADS),
    DinoForPreTraining: DinoConfig(
        backbone_config=tiny_vit_config(16), head_hidden_size=32, head_bottleneck_size=16, head_output_size=64
    ),  # fmt: skip
    SwavForPreTraining: SwavConfig(
        backbone_config=tiny_vit_config(16), num_prototypes=20, freeze_prototypes_steps=0, **HEADS
    ),
}
MIRAM = tiny_miram_config(num_channels=1)
CASES = {  # name: (model class, config, inputs)
    "miram": (MiramModel, MIRAM, {"pixel_values": images(2, 1, 32, 32)}),
    "miram-pretraining": (
        MiramForPreTraining,
        MIRAM,
        {"pixel_values": images(2, 1, 32, 32), "target_pixel_values": [images(2, 1, 32, 32), images(2, 1, 64, 64)]},
    ),  # fmt: skip
    "miram-classifier": (
        MiramForImageClassification,
        tiny_miram_config(num_channels=1, num_labels=3),
        {"pixel_values": images(2, 1, 32, 32), "labels": torch.tensor([0, 2])},
    ),  # fmt: skip
    **{
        model_class.__name__: (
            model_class,
            config,
            {"pixel_values": images(2, 2, 1, 16, 16)}
            | (
                {"local_pixel_values": images(2, 2, 1, 8, 8)}
                if model_class in (DinoForPreTraining, SwavForPreTraining)
                else {}
            ),
        )  # fmt: skip
        for model_class, config in JOINT.items()
    },
    "mil-vit": (
        MilForImageClassification,
        MilConfig(backbone_config=tiny_vit_config(16), attention_hidden_size=8, tile_size=16, num_labels=2),
        {"pixel_values": images(2, 3, 1, 16, 16), "labels": torch.tensor([0, 1])},
    ),  # fmt: skip
    "mil-resnet": (
        MilForImageClassification,
        MilConfig(backbone_config=tiny_resnet_config(), attention_hidden_size=8, tile_size=16, num_labels=2),
        {"pixel_values": images(2, 3, 1, 16, 16)},
    ),  # fmt: skip
    "roi": (
        RoiAttentionForImageClassification,
        RoiAttentionConfig(backbone_config=dinov2(), num_attention_heads=2, num_labels=2),
        {
            "pixel_values": images(2, 3, 1, 16, 16),
            "anchor_pixel_values": images(2, 1, 16, 16),
            "region_centers": images(2, 3, 2),
        },
    ),  # fmt: skip
    "vae": (
        MammoVaeForPreTraining,
        MammoVaeConfig(image_size=[32, 40], encoder_channels=[4, 4, 2], latent_size=16),
        {"pixel_values": images(2, 1, 32, 40)},
    ),  # fmt: skip
    "vae-classifier": (
        MammoVaeForImageClassification,
        MammoVaeConfig(image_size=[32, 40], encoder_channels=[4, 4, 2], latent_size=16, num_labels=2),
        {"pixel_values": images(2, 1, 32, 40)},
    ),  # fmt: skip
}


def build(name: str):
    model_class, config, inputs = CASES[name]
    torch.manual_seed(0)
    model = model_class(config).eval()
    if hasattr(model, "start_training_step"):
        model.start_training_step(1, 10)
    return model, inputs


@pytest.mark.parametrize("name", list(CASES))
def test_return_dict_false_gives_the_same_values_as_a_tuple(name):
    model, inputs = build(name)
    with torch.no_grad():
        torch.manual_seed(0)  # the same masks (MIRAM) and samples (VAE) in both calls
        as_dict = model(**inputs)
        torch.manual_seed(0)
        as_tuple = model(**inputs, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == len(as_dict.to_tuple())
    for ours, theirs in zip(as_tuple, as_dict.to_tuple(), strict=True):
        if torch.is_tensor(ours):
            torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("name", list(CASES))
def test_loading_keeps_fixed_weights_fixed_and_reports_its_info(name, tmp_path):
    model, _ = build(name)
    model.save_pretrained(tmp_path)
    loaded, info = type(model).from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    trainable = {name: weight.requires_grad for name, weight in model.named_parameters()}
    assert {name: weight.requires_grad for name, weight in loaded.named_parameters()} == trainable
    assert isinstance(loaded.get_input_embeddings(), torch.nn.Module)


@pytest.mark.parametrize("name", list(CASES))
def test_gradient_checkpointing_is_claimed_only_where_it_works(name):
    model, inputs = build(name)
    if not model.supports_gradient_checkpointing:
        assert name in ("mil-resnet", "SimclrForPreTraining", "vae", "vae-classifier")  # ResNet / VAE: none
        with pytest.raises(ValueError, match="does not support (gradient|activation) checkpointing"):
            model.gradient_checkpointing_enable()
        return
    checkpointed, _ = build(name)  # a twin: forward passes change state (DINO's centre)
    checkpointed.gradient_checkpointing_enable()
    outputs = []
    for each in (model, checkpointed):
        torch.manual_seed(0)
        outputs.append(each.train()(**inputs).to_tuple()[0])
    torch.testing.assert_close(outputs[1], outputs[0])


def test_miram_pretraining_compiles_as_one_graph():
    model, inputs = build("miram-pretraining")
    noise = images(2, 16)
    compiled = torch.compile(model, backend="eager", fullgraph=True)  # a graph break raises here
    torch.testing.assert_close(compiled(**inputs, noise=noise).loss, model(**inputs, noise=noise).loss)
    everything = torch.compile(model, backend="eager", fullgraph=True)(**inputs, noise=torch.zeros(2, 16))
    assert torch.isfinite(everything.loss)
    assert MiramForPreTraining._can_compile_fullgraph


def test_an_encoder_loads_quietly_from_pretraining_weights_and_takes_the_processors_output(tmp_path, caplog):
    model, _ = build("miram-pretraining")
    model.save_pretrained(tmp_path)
    encoder, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert isinstance(encoder, MiramModel) and not info["unexpected_keys"]  # the decoders, expected to stay out
    classifier = MiramForImageClassification.from_pretrained(tmp_path, num_labels=2)
    trainable = [name for name, weight in classifier.named_parameters() if weight.requires_grad]
    assert trainable and not any(name.endswith(("position_embeddings", "decoder_pos_embed")) for name in trainable)
    processor = MammographyImageProcessor(size={"height": 32, "width": 32}, scales=[1, 2])
    inputs = processor(np.random.default_rng(0).random((40, 30)))
    assert "target_pixel_values" in inputs
    assert encoder(**inputs, mask_ratio=0.0).last_hidden_state.shape == (1, 17, 32)
    assert classifier(**inputs).logits.shape == (1, 2)


def first_tensor(outputs) -> torch.Tensor:
    return next(value for value in outputs.to_tuple() if torch.is_tensor(value))


@pytest.mark.parametrize("name", list(CASES))
def test_gradients_reach_every_trainable_parameter(name):
    model, inputs = build(name)
    outputs = model.train()(**inputs)
    loss = outputs.loss if getattr(outputs, "loss", None) is not None else first_tensor(outputs).float().sum()
    loss.backward()
    unreached = [name for name, weight in model.named_parameters() if weight.requires_grad and weight.grad is None]
    assert not unreached, unreached


@pytest.mark.parametrize("name", ["miram-classifier", "mil-vit", "mil-resnet", "roi", "vae-classifier"])
def test_each_image_of_a_batch_gets_the_logits_it_gets_alone(name):
    model, inputs = build(name)
    batched = {key: value for key, value in inputs.items() if key != "labels"}
    with torch.no_grad():
        together = model(**batched).logits
        alone = [model(**{key: value[i : i + 1] for key, value in batched.items()}).logits for i in range(2)]
    torch.testing.assert_close(together, torch.cat(alone), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", list(CASES))
def test_a_model_loads_and_runs_in_bfloat16(name, tmp_path):
    model, inputs = build(name)
    model.save_pretrained(tmp_path)
    loaded = type(model).from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    assert {weight.dtype for weight in loaded.parameters()} == {torch.bfloat16}
    cast = {key: value.to(torch.bfloat16) if torch.is_floating_point(value) else value
            for key, value in inputs.items() if torch.is_tensor(value)}  # fmt: skip
    if "target_pixel_values" in inputs:
        cast["target_pixel_values"] = [target.to(torch.bfloat16) for target in inputs["target_pixel_values"]]
    with torch.no_grad():
        assert torch.isfinite(first_tensor(loaded(**cast)).float()).all()
