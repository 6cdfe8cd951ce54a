"""BYOL, DINO, MoCo v3, SimCLR and SwAV as transformers models: views in, loss out, over ViT, ResNet and MIRAM
backbones; teachers, schedules, saving, Auto classes, the exported backbone and the remote-code route."""

import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import WITHOUT_MIRAM_HF
from safetensors.torch import save_file
from tiny_configs import (
    JOINT_EMBEDDING_HEADS,
    tiny_joint_embedding_config,
    tiny_miram_config,
    tiny_resnet_config,
    tiny_vit_config,
)
from transformers import (
    AutoModelForPreTraining,
    ResNetForImageClassification,
    Trainer,
    TrainingArguments,
    ViTConfig,
    ViTForImageClassification,
)

from miram_hf import (
    ByolConfig,
    ByolForPreTraining,
    DinoConfig,
    DinoForPreTraining,
    MiramForImageClassification,
    MocoV3Config,
    SimclrConfig,
    SwavConfig,
)
from miram_hf.training.callbacks import JointEmbeddingCallback


def tiny_vit() -> ViTConfig:
    return tiny_vit_config(num_hidden_layers=2)


BACKBONES = {"vit": tiny_vit, "resnet": tiny_resnet_config}
METHODS = list(JOINT_EMBEDDING_HEADS)
MULTI_CROP = (DinoConfig, SwavConfig)


def tiny_model(config_class, backbone: str = "vit", **overrides):
    config = tiny_joint_embedding_config(config_class, BACKBONES[backbone](), **overrides)
    return AutoModelForPreTraining.from_config(config)


def views(config_class, batch: int = 4, seed: int = 0) -> dict:
    """Two 32 px views of each image, plus two 16 px local ones for the multi-crop methods."""
    generator = torch.Generator().manual_seed(seed)
    inputs = {"pixel_values": torch.rand(batch, 2, 1, 32, 32, generator=generator)}
    if config_class in MULTI_CROP:
        inputs["local_pixel_values"] = torch.rand(batch, 2, 1, 16, 16, generator=generator)
    return inputs


@pytest.mark.parametrize("backbone", list(BACKBONES))
@pytest.mark.parametrize("config_class", METHODS, ids=lambda c: c.model_type)
def test_views_in_loss_out(config_class, backbone):
    model = tiny_model(config_class, backbone)
    assert type(model).__name__ == config_class.__name__.replace("Config", "ForPreTraining")
    inputs = views(config_class)
    model.start_training_step(1, 10)
    outputs = model(**inputs)
    crops = 4 if config_class in MULTI_CROP else 2
    assert outputs.loss.ndim == 0 and torch.isfinite(outputs.loss)
    assert outputs.embeddings.shape[0] == crops * 4
    outputs.loss.backward()
    assert all(parameter.grad is not None for parameter in model.backbone.parameters() if parameter.requires_grad)


@pytest.mark.parametrize("config_class", METHODS, ids=lambda c: c.model_type)
def test_a_few_steps_on_a_fixed_batch_lower_the_loss(config_class):
    torch.manual_seed(0)
    # DINO's centring raises its loss at first (it flattens the teacher's targets by design); held at zero here, the
    # loss shows the student learning to match the teacher
    overrides = {"center_momentum": 1.0} if config_class is DinoConfig else {}
    model = tiny_model(config_class, **overrides).train()
    inputs = views(config_class, batch=8)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for step in range(1, 16):
        model.start_training_step(step, 15)
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        model.update_teachers()
        losses.append(loss.item())
    assert sum(losses[-3:]) < 0.7 * sum(losses[:3]), losses


def test_teacher_starts_as_the_student_and_follows_it_along_the_cosine_momentum():
    model = tiny_model(ByolConfig, momentum=0.9)
    for teacher, student in model.teacher_pairs():
        for key, value in student.state_dict().items():
            torch.testing.assert_close(teacher.state_dict()[key], value)
    with torch.no_grad():  # what the first optimizer step did to the student
        for parameter in model.backbone.parameters():
            parameter.add_(1.0)
    student = [p.clone() for p in model.backbone.parameters()]
    teacher = [p.clone() for p in model.teacher_backbone.parameters()]
    model.start_training_step(1, 10)
    model.update_teachers()  # after optimizer step 1: the base momentum, as the references start
    for updated, old, new in zip(model.teacher_backbone.parameters(), teacher, student, strict=True):
        torch.testing.assert_close(updated, 0.9 * old + 0.1 * new)
    # BYOL: tau = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2 at step index k
    assert model.teacher_momentum(6) == pytest.approx(1 - 0.1 * (math.cos(math.pi * 5 / 10) + 1) / 2)
    assert model.teacher_momentum(10) < model.teacher_momentum(11) == pytest.approx(1.0)


def test_dino_teacher_temperature_warms_up_then_holds():
    model = tiny_model(DinoConfig, warmup_teacher_temperature=0.04, teacher_temperature=0.07,
                       teacher_temperature_warmup_fraction=0.5)  # fmt: skip
    temperatures = []
    for step in range(1, 11):
        model.start_training_step(step, 10)
        temperatures.append(model.teacher_temperature())
    assert temperatures[0] == pytest.approx(0.04) and temperatures[4] == pytest.approx(0.07)
    assert temperatures[5:] == pytest.approx([0.07] * 5)
    assert all(a < b for a, b in zip(temperatures[:4], temperatures[1:5], strict=True))
    model.step = None  # outside training: the final temperature
    assert model.teacher_temperature() == pytest.approx(0.07)


def test_dino_last_layer_is_weight_normalised_and_frozen_for_its_first_steps():
    model = tiny_model(DinoConfig, freeze_last_layer_steps=1)
    with torch.no_grad():
        model.head.last_layer.weight.mul_(5.0)  # the output does not depend on the rows' norms
    features = torch.randn(3, 32)
    expected = (
        torch.nn.functional.normalize(model.head.mlp(features), dim=-1)
        @ torch.nn.functional.normalize(model.head.last_layer.weight, dim=-1).T
    )
    torch.testing.assert_close(model.head(features), expected)
    inputs = views(DinoConfig)
    for step, frozen in ((1, True), (2, False)):
        model.zero_grad()
        model.start_training_step(step, 10)
        model(**inputs).loss.backward()
        assert (model.head.last_layer.weight.grad.abs().sum() == 0) == frozen
        assert model.head.mlp[0].weight.grad.abs().sum() > 0


def test_swav_normalises_its_prototypes_and_freezes_them_for_its_first_steps():
    model = tiny_model(SwavConfig, freeze_prototypes_steps=1).train()
    with torch.no_grad():
        model.prototypes.weight.mul_(3.0)
    inputs = views(SwavConfig)
    for step, frozen in ((1, True), (2, False)):
        model.zero_grad()
        model.start_training_step(step, 10)
        model(**inputs).loss.backward()
        torch.testing.assert_close(model.prototypes.weight.norm(dim=1), torch.ones(20))
        assert (model.prototypes.weight.grad.abs().sum() == 0) == frozen


def test_swav_queue_joins_the_sinkhorn_batch_once_filled():
    model = tiny_model(SwavConfig, queue_length=8, queue_start_step=2).train()
    model.start_training_step(1, 10)
    model(**views(SwavConfig, batch=4))
    assert model.queue is None  # not started yet
    for step, seed in ((2, 0), (3, 1), (4, 2)):
        model.start_training_step(step, 10)
        outputs = model(**views(SwavConfig, batch=4, seed=seed))
    # the last batch's first two crops went in first, the batch before behind them
    assert model.queue.shape == (2, 8, 16)
    torch.testing.assert_close(model.queue[0, :4], outputs.embeddings[:4])
    torch.testing.assert_close(model.queue[1, :4], outputs.embeddings[4:8])
    scores = model.queue_scores(outputs.embeddings, 4)
    assert scores[0].shape == (8, 20)
    short = tiny_model(SwavConfig, queue_length=2).train()
    short.start_training_step(1, 10)
    with pytest.raises(ValueError, match="shorter than a batch of 4"):
        short(**views(SwavConfig, batch=4))


@pytest.mark.parametrize(
    "backbone_config, classifier_class",
    [(tiny_vit(), ViTForImageClassification), (tiny_resnet_config(), ResNetForImageClassification)],
)
def test_the_backbone_exports_as_a_ready_image_classifier(backbone_config, classifier_class, tmp_path):
    model = ByolForPreTraining(tiny_joint_embedding_config(ByolConfig, backbone_config))
    classifier = model.backbone_for_image_classification(num_labels=3, id2label={0: "a", 1: "b", 2: "c"})
    assert type(classifier) is classifier_class and classifier.config.num_labels == 3
    for key, value in model.backbone.state_dict().items():
        torch.testing.assert_close(classifier.base_model.state_dict()[key], value)
    classifier.save_pretrained(tmp_path)
    reloaded = classifier_class.from_pretrained(tmp_path)
    assert reloaded(torch.rand(2, 1, 32, 32)).logits.shape == (2, 3)


def test_dino_exports_its_teacher_and_takes_a_miram_backbone():
    config = tiny_joint_embedding_config(DinoConfig, tiny_miram_config(num_channels=1).to_dict())
    model = DinoForPreTraining(config)
    assert type(model.backbone).__name__ == "MiramModel"
    with torch.no_grad():
        model.teacher_backbone.layernorm.weight.fill_(2.0)
    outputs = model(**views(DinoConfig))  # every patch encoded (mask_ratio 0) at 32 and, interpolated, 16 px
    assert torch.isfinite(outputs.loss)
    classifier = model.backbone_for_image_classification(num_labels=2)
    assert type(classifier) is MiramForImageClassification
    assert torch.equal(classifier.miram.layernorm.weight, torch.full((32,), 2.0))


def test_a_backbone_transformers_does_not_know_is_a_clear_error():
    with pytest.raises(ValueError, match="model_type 'not-a-model'"):
        SimclrConfig(backbone_config={"model_type": "not-a-model"})
    assert SimclrConfig().backbone_config.model_type == "resnet"  # the paper's default
    assert DinoConfig().backbone_config.model_type == "vit"


CHILD = WITHOUT_MIRAM_HF + textwrap.dedent(
    """
    hide_miram_hf()

    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForPreTraining

    folder, expected = sys.argv[1], load_file(sys.argv[2])
    model = AutoModelForPreTraining.from_pretrained(folder, trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    with torch.no_grad():
        loss = model(**{name: tensor for name, tensor in expected.items() if name != "loss"}).loss
    torch.testing.assert_close(loss, expected["loss"])
    print("remote code OK", type(model).__name__)
    """
)


@pytest.mark.parametrize("config_class", METHODS, ids=lambda c: c.model_type)
def test_a_saved_folder_loads_without_the_package(config_class, tmp_path):
    model = tiny_model(config_class).eval()  # the loss file and the shared files travel with the modeling file
    model.save_pretrained(tmp_path / "model")
    assert {"backbone.py", "joint_embedding.py"} <= {path.name for path in (tmp_path / "model").iterdir()}
    inputs = views(config_class)
    with torch.no_grad():
        loss = model(**inputs).loss
    save_file({**inputs, "loss": loss}, tmp_path / "expected.safetensors")
    environment = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "model"), str(tmp_path / "expected.safetensors")],
        capture_output=True, text=True, env=environment, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"remote code OK {type(model).__name__}" in result.stdout


def test_trainer_drives_the_schedules_and_teachers_through_the_callback(tmp_path):
    model = tiny_model(ByolConfig)
    initial = [p.clone() for p in model.teacher_backbone.parameters()]
    views_of_images = [{"pixel_values": views(ByolConfig, batch=1, seed=seed)["pixel_values"][0]} for seed in range(8)]
    arguments = TrainingArguments(
        output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4, report_to=[], use_cpu=True,
        remove_unused_columns=False, save_strategy="no",
    )  # fmt: skip
    Trainer(model=model, args=arguments, train_dataset=views_of_images, callbacks=[JointEmbeddingCallback()]).train()
    assert (model.step, model.max_steps) == (3, 3)
    assert not all(torch.equal(a, b) for a, b in zip(model.teacher_backbone.parameters(), initial, strict=True))
    assert not any(p.requires_grad for p in model.teacher_backbone.parameters())


@pytest.mark.parametrize("config_class", [ByolConfig, MocoV3Config], ids=lambda c: c.model_type)
def test_each_view_has_its_own_forward_pass_as_in_the_reference_code(config_class):
    model = tiny_model(config_class, "resnet").train()  # BatchNorm everywhere: batch statistics per forward pass
    inputs = views(config_class)
    torch.manual_seed(0)
    outputs = model(**inputs)
    first_view_alone = model.predictor(
        model.projector(model.backbone(inputs["pixel_values"][:, 0]).pooler_output.flatten(1))
    )
    torch.testing.assert_close(outputs.embeddings[:4], first_view_alone)


@pytest.mark.parametrize(("config_class", "offloaded"), [(DinoConfig, "head"), (SwavConfig, "prototypes")],
                         ids=["dino", "swav"])  # fmt: skip
def test_a_head_offloaded_to_disk_computes_as_in_memory(config_class, offloaded, tmp_path):
    """accelerate loads an offloaded module's weights when the module is called: DINO's last layer and SwAV's
    prototypes are modules that read their weights in their own forward."""
    model = tiny_model(config_class).eval()
    model.save_pretrained(tmp_path / "model")
    device_map = {name: "cpu" for name, _ in model.named_children()} | {offloaded: "disk"}
    loaded = type(model).from_pretrained(tmp_path / "model", device_map=device_map,
                                         offload_folder=str(tmp_path / "offload")).eval()  # fmt: skip
    for each in (model, loaded):
        each.start_training_step(1, 10)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**views(config_class)).loss, model(**views(config_class)).loss)
