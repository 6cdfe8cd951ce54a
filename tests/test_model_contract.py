"""The contract transformers' own models keep, checked on every model class here (tests/tiny_configs.py): the same
outputs after saving and loading through the Auto classes, with the remote code beside the weights; deterministic
outputs; a fixed slice of outputs against recorded numbers; tuples with `return_dict=False`, `output_loading_info=True`;
weights fixed by design still fixed after `from_pretrained`; gradient checkpointing claimed only where the backbone has
it, and then the same gradients; input embeddings; gradients reaching every trainable parameter; loading and running in
bfloat16; each image's logits independent of its batch; hidden states and attentions counted by layer; and for MIRAM a
whole-graph compile and the processor's full output accepted. Family tests keep only what is particular to a family."""

import numpy as np
import pytest
import torch
from tiny_configs import (
    tiny_joint_embedding_config,
    tiny_mil_config,
    tiny_miram_config,
    tiny_resnet_config,
    tiny_roi_config,
    tiny_vae_config,
)
from transformers import AutoConfig, AutoModel, AutoModelForImageClassification, AutoModelForPreTraining

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
from miram_hf.modeling.mil import MilForImageClassification
from miram_hf.modeling.roi import RoiAttentionForImageClassification
from miram_hf.modeling.vae import MammoVaeForImageClassification, MammoVaeForPreTraining


def images(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(0))


JOINT = {
    ByolForPreTraining: tiny_joint_embedding_config(ByolConfig),
    MocoV3ForPreTraining: tiny_joint_embedding_config(MocoV3Config),
    SimclrForPreTraining: tiny_joint_embedding_config(SimclrConfig, tiny_resnet_config()),
    DinoForPreTraining: tiny_joint_embedding_config(DinoConfig),
    SwavForPreTraining: tiny_joint_embedding_config(SwavConfig),
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
        tiny_mil_config(),
        {"pixel_values": images(2, 3, 1, 16, 16), "labels": torch.tensor([0, 1])},
    ),  # fmt: skip
    "mil-resnet": (
        MilForImageClassification,
        tiny_mil_config(tiny_resnet_config()),
        {"pixel_values": images(2, 3, 1, 16, 16)},
    ),  # fmt: skip
    "roi": (
        RoiAttentionForImageClassification,
        tiny_roi_config(),
        {
            "pixel_values": images(2, 3, 1, 16, 16),
            "anchor_pixel_values": images(2, 1, 16, 16),
            "region_centers": images(2, 3, 2),
        },
    ),  # fmt: skip
    "vae": (
        MammoVaeForPreTraining,
        tiny_vae_config(),
        {"pixel_values": images(2, 1, 32, 40)},
    ),  # fmt: skip
    "vae-classifier": (
        MammoVaeForImageClassification,
        tiny_vae_config(num_labels=2),
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


def first_tensor(outputs) -> torch.Tensor:
    return next(value for value in outputs.to_tuple() if torch.is_tensor(value))


def seeded_outputs(model, inputs: dict, **options):
    """Outputs under a fixed seed: the same masks (MIRAM) and samples (VAE) in every call."""
    with torch.no_grad():
        torch.manual_seed(0)
        return model(**inputs, **options)


def auto_class(model_class: type) -> type:
    if model_class.__name__.endswith("ForPreTraining"):
        return AutoModelForPreTraining
    if model_class.__name__.endswith("ForImageClassification"):
        return AutoModelForImageClassification
    return AutoModel


@pytest.mark.parametrize("name", list(CASES))
def test_outputs_are_deterministic_and_survive_saving_and_loading_through_the_auto_classes(name, tmp_path):
    model, inputs = build(name)
    expected = seeded_outputs(model, inputs)
    for ours, again in zip(expected.to_tuple(), seeded_outputs(model, inputs).to_tuple(), strict=True):
        torch.testing.assert_close(again, ours, rtol=0, atol=0)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    auto_map = AutoConfig.from_pretrained(tmp_path).auto_map  # the remote code travels with the weights
    assert all((tmp_path / f"{reference.split('.')[0]}.py").exists() for reference in auto_map.values())
    assert type(AutoConfig.from_pretrained(tmp_path)) is type(model.config)
    loaded = auto_class(type(model)).from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    if hasattr(loaded, "start_training_step"):
        loaded.start_training_step(1, 10)
    for ours, theirs in zip(expected.to_tuple(), seeded_outputs(loaded, inputs).to_tuple(), strict=True):
        torch.testing.assert_close(theirs, ours)


# `output_slice` of each class's outputs on the inputs above (seed 0), recorded from the code of the commit that added
# this test: a change that alters them must say why and record new ones.
RECORDED = {
    "miram": [-0.724556, 0.92498, 0.907171, 0.434835, 1, 1, 0, 0],
    "miram-pretraining": [0.662461, 0.651022, 0.6739],
    "miram-classifier": [1.09863, 0.000155597, 6.02938e-05, -0.000120354, 0.000151335],
    "ByolForPreTraining": [4.23383, 1.83981e-05, -4.0943e-06, -1.38034e-06, -3.24616e-05],
    "MocoV3ForPreTraining": [0.553687, 6.60847e-06, -3.85859e-06, -8.72274e-07, 1.25514e-06],
    "SimclrForPreTraining": [1.07179, 0.000224879, 0.000308101, -0.0002458, 0.000686598],
    "DinoForPreTraining": [1.96819, 0.0994202, 0.0569019, -0.384652, -0.00276341],
    "SwavForPreTraining": [3.01053, 0.155755, 0.156714, 0.417219, -0.152914],
    "mil-vit": [0.694647, 0.0101856, 0.0405694, 0.0117583, 0.0365276],
    "mil-resnet": [0.00314515, -0.00523653, 0.00312125, -0.00474885],
    "roi": [-0.00491324, -0.158518, -0.0171633, -0.157185, -0.18798, -1.02306, -1.39381, -0.839138],
    "vae": [422.875, 422.874],
    "vae-classifier": [-0.000339074, 0.000925648, -0.000339074, 0.000925647],
}  # fmt: skip


def output_slice(outputs) -> torch.Tensor:
    """The first four values of each of the first two tensors of `outputs` (e.g. the loss, then the logits)."""
    tensors = [value for value in outputs.to_tuple() if torch.is_tensor(value)][:2]
    return torch.cat([tensor.detach().float().flatten()[:4] for tensor in tensors])


@pytest.mark.parametrize("name", list(CASES))
def test_a_seeded_model_gives_the_recorded_numbers(name):
    model, inputs = build(name)
    recorded = torch.tensor(RECORDED[name])
    torch.testing.assert_close(output_slice(seeded_outputs(model, inputs)), recorded, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["miram", "miram-pretraining", "miram-classifier"])
def test_hidden_states_and_attentions_come_one_per_layer(name):
    model, inputs = build(name)
    outputs = seeded_outputs(model, inputs, output_hidden_states=True, output_attentions=True)
    layers = model.config.num_hidden_layers
    assert len(outputs.hidden_states) == layers + 1 and len(outputs.attentions) == layers
    tokens = outputs.hidden_states[-1].shape[1]
    assert {attention.shape for attention in outputs.attentions} == {(2, model.config.num_attention_heads, tokens,
                                                                      tokens)}  # fmt: skip


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
            model.activation_checkpointing_enable()
        return
    checkpointed, _ = build(name)  # a twin: forward passes change state (DINO's centre)
    checkpointed.activation_checkpointing_enable()
    outputs, gradients = [], []
    for each in (model, checkpointed):
        torch.manual_seed(0)
        output = first_tensor(each.train()(**inputs))
        output.float().sum().backward()
        outputs.append(output)
        gradients.append({name: weight.grad for name, weight in each.named_parameters() if weight.grad is not None})
    torch.testing.assert_close(outputs[1], outputs[0])
    assert gradients[1].keys() == gradients[0].keys()
    for name, gradient in gradients[0].items():
        torch.testing.assert_close(gradients[1][name], gradient, atol=1e-6, rtol=1e-4, msg=name)


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
