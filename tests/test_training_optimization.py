import pytest
import torch
from tiny_configs import tiny_miram_config
from transformers import ViTConfig, ViTForImageClassification

from miram_hf import MiramForImageClassification, MiramForPreTraining
from miram_hf.training import parameter_groups
from miram_hf.training.optimization import layer_id


def group_of(groups, parameter):
    (group,) = [g for g in groups if any(p is parameter for p in g["params"])]
    return group


def test_layer_decay_scales_learning_rate_by_depth():
    model = MiramForImageClassification(tiny_miram_config(num_labels=3))  # 2 layers: depths 0..3
    groups = parameter_groups(model, learning_rate=1.0, weight_decay=0.05, layer_decay=0.5)
    assert group_of(groups, model.miram.embeddings.cls_token)["lr"] == 0.5**3
    assert group_of(groups, model.miram.embeddings.patch_embeddings.projection.weight)["lr"] == 0.5**3
    assert group_of(groups, model.miram.layers[0].attention.q_proj.weight)["lr"] == 0.5**2
    assert group_of(groups, model.miram.layers[1].mlp.fc1.weight)["lr"] == 0.5
    assert group_of(groups, model.classifier.weight)["lr"] == 1.0
    assert group_of(groups, model.fc_norm.weight)["lr"] == 1.0


def test_weight_decay_spares_biases_norms_and_tokens():
    model = MiramForPreTraining(tiny_miram_config())
    groups = parameter_groups(model, learning_rate=1e-3, weight_decay=0.05)
    assert group_of(groups, model.miram.layers[0].attention.q_proj.weight)["weight_decay"] == 0.05
    assert group_of(groups, model.decoders[1].decoder_pred.weight)["weight_decay"] == 0.05
    for parameter in (
        model.miram.layers[0].attention.q_proj.bias,
        model.miram.layernorm.weight,
        model.miram.embeddings.cls_token,
        model.decoders[0].mask_token,
    ):
        assert group_of(groups, parameter)["weight_decay"] == 0.0
    grouped = [p for g in groups for p in g["params"]]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(grouped) == len(trainable) and {id(p) for p in grouped} == {id(p) for p in trainable}
    assert not any(p is model.miram.embeddings.position_embeddings for p in grouped)  # frozen sin-cos
    torch.optim.AdamW(groups)  # a valid optimizer spec


@pytest.mark.parametrize(
    "name, depth",
    [
        ("vit.embeddings.cls_token", 0),
        ("vit.embeddings.patch_embeddings.projection.weight", 0),
        ("vit.encoder.layer.2.output.dense.weight", 3),  # transformers 4.x names
        ("vit.layers.2.mlp.fc2.weight", 3),  # transformers 5.x names
        ("miram.layers.0.attention.q_proj.bias", 1),
        ("vit.layernorm.weight", 4),
        ("classifier.weight", 4),
        ("decoders.1.decoder_layers.0.mlp.fc1.weight", 4),
    ],
)
def test_layer_ids(name, depth):
    assert layer_id(name, 3) == depth


def test_transformers_vit_gets_every_depth():
    model = ViTForImageClassification(
        ViTConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64, image_size=32)
    )
    groups = parameter_groups(model, learning_rate=1.0, weight_decay=0.05, layer_decay=0.5)
    assert sorted({g["lr"] for g in groups}) == [0.5**4, 0.5**3, 0.5**2, 0.5, 1.0]


def test_layer_decay_must_be_a_fraction():
    with pytest.raises(ValueError, match="layer_decay"):
        parameter_groups(MiramForImageClassification(tiny_miram_config()), 1e-3, 0.05, layer_decay=1.5)
