import logging

import numpy as np
import pytest
import torch
from tiny_configs import tiny_miram_config
from transformers import (
    AutoModel,
    AutoModelForImageClassification,
    ViTMAEConfig,
    ViTMAEForPreTraining,
)

from miram_hf import MiramConfig, MiramForImageClassification, MiramForPreTraining, MiramModel
from miram_hf.modeling.miram.modeling_miram import (
    VIT_MAE_CONFIG_FIELDS,
    MiramAttention,
    MiramNystromAttention,
    duplicate_tokens,
    rename_vit_mae_key,
    sincos_position_embedding,
)

LINEAR_AND_EXACT = ["sdpa", "eager", "nystromformer", "performer", "linformer"]


def random_batch(config: MiramConfig, batch: int = 2, size: tuple[int, int] | None = None):
    height, width = size or config.image_height_width
    pixel_values = torch.randn(batch, config.num_channels, height, width)
    targets = [torch.randn(batch, config.num_channels, height * f, width * f) for f in config.scales]
    return pixel_values, targets


def smooth_batch(config: MiramConfig, batch: int = 2):
    """Learnable images: a 4x4 random field upsampled, the 2x target the same field at twice the size."""
    field = torch.randn(batch, config.num_channels, 4, 4)
    height, width = config.image_height_width
    targets = [
        torch.nn.functional.interpolate(field, size=(height * f, width * f), mode="bilinear") for f in config.scales
    ]
    return targets[config.scales.index(1)], targets


def manual_mae_loss(model, target, logits, patch_mask):
    target = model.patchify(target)
    if model.config.norm_pix_loss:
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    per_patch = ((logits - target) ** 2).mean(-1)
    return (per_patch * patch_mask).sum() / patch_mask.sum()


# ---------------------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(image_size=30), "not a multiple of patch_size"),
        (dict(scales=[1, 0]), "positive ints"),
        (dict(scales=[1, 1]), "must not repeat"),
        (dict(decoder_attention=["sdpa"]), "one entry per scale"),
        (dict(scale_loss_weights=[1.0, 1.0, 1.0]), "one entry per scale"),
        (dict(scale_loss_weights=[-1.0, 2.0]), "non-negative"),
        (dict(mask_ratio=1.0), "mask_ratio"),
        (dict(hidden_size=30), "divisible"),
    ],
)
def test_config_rejects_inconsistent_fields(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_miram_config(**overrides)


def test_config_defaults_follow_the_paper():
    config = MiramConfig()
    assert config.scales == [1, 2]
    assert config.decoder_attention == ["sdpa", "sdpa"]
    assert config.scale_loss_weights == [1.0, 1.0]
    assert (config.hidden_size, config.num_hidden_layers, config.patch_size) == (768, 12, 16)  # ViT-B/16
    assert config.mask_ratio == 0.75


def test_unknown_attention_is_rejected_when_building():
    with pytest.raises(ValueError, match="Unknown attention 'softmaxish'"):
        MiramForPreTraining(tiny_miram_config(decoder_attention=["sdpa", "softmaxish"]))


# ------------------------------------------------------------------------------------------------ building blocks


def mae_get_2d_sincos_pos_embed(embed_dim: int, grid_size: int) -> np.ndarray:
    """facebookresearch/mae util/pos_embed.py, transcribed: the layout MAE checkpoints were trained with."""

    def get_1d(dim, pos):
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid = np.meshgrid(np.arange(grid_size, dtype=np.float32), np.arange(grid_size, dtype=np.float32))  # w goes first
    grid = np.stack(grid, axis=0).reshape([2, 1, grid_size, grid_size])
    embedding = np.concatenate([get_1d(embed_dim // 2, grid[0]), get_1d(embed_dim // 2, grid[1])], axis=1)
    return np.concatenate([np.zeros([1, embed_dim]), embedding], axis=0)


def test_sincos_matches_the_original_mae_layout():
    expected = torch.from_numpy(mae_get_2d_sincos_pos_embed(32, 4)).float()
    torch.testing.assert_close(sincos_position_embedding(4, 4, 32), expected)


def test_sincos_first_half_encodes_the_column():
    embedding = sincos_position_embedding(3, 5, 16)[1:].reshape(3, 5, 16)
    torch.testing.assert_close(embedding[0, :, :8], embedding[2, :, :8])  # same column, other row: same first half
    torch.testing.assert_close(embedding[:, 0, 8:], embedding[:, 4, 8:])  # same row, other column: same second half


def test_duplicate_tokens_copies_each_token_into_a_block():
    tokens = torch.arange(6.0).reshape(1, 6, 1)  # a 2x3 grid
    duplicated = duplicate_tokens(tokens, (2, 3), 2).reshape(4, 6)
    expected = torch.tensor([[0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2], [3, 3, 4, 4, 5, 5], [3, 3, 4, 4, 5, 5]])
    torch.testing.assert_close(duplicated, expected.float())


# ------------------------------------------------------------------------------------------------ pretraining


@pytest.mark.parametrize("size", [(32, 32), (32, 48)])
def test_pretraining_shapes_per_scale(size):
    config = tiny_miram_config(image_size=list(size))
    model = MiramForPreTraining(config)
    pixel_values, targets = random_batch(config)
    outputs = model(pixel_values, target_pixel_values=targets)
    tokens = (size[0] // 8) * (size[1] // 8)
    assert outputs.mask.shape == (2, tokens) and outputs.mask.sum(1).tolist() == [tokens - int(tokens * 0.25)] * 2
    assert [logits.shape for logits in outputs.logits] == [(2, tokens, 192), (2, 4 * tokens, 192)]
    assert outputs.scale_losses.shape == (2,)
    torch.testing.assert_close(outputs.loss, outputs.scale_losses.mean())


def test_loss_is_weighted_mean_of_mae_losses_with_duplicated_mask():
    config = tiny_miram_config(scales=[1, 2, 4], decoder_attention=["sdpa"] * 3, scale_loss_weights=[1.0, 2.0, 1.0])
    config.norm_pix_loss = True
    model = MiramForPreTraining(config)
    pixel_values, targets = random_batch(config)
    outputs = model(pixel_values, target_pixel_values=targets)
    losses = []
    for k, scale in enumerate(config.scales):
        # patch (r, c) of the scale-f grid is masked when patch (r // f, c // f) of the input grid is
        grid_mask = outputs.mask.reshape(2, 4, 4)
        fine_mask = grid_mask.repeat_interleave(scale, 1).repeat_interleave(scale, 2).reshape(2, -1)
        losses.append(manual_mae_loss(model, targets[k], outputs.logits[k], fine_mask))
    torch.testing.assert_close(outputs.scale_losses, torch.stack(losses))
    torch.testing.assert_close(outputs.loss, (losses[0] + 2 * losses[1] + losses[2]) / 4)


def test_duplicated_tokens_differ_only_by_position_embedding():
    config = tiny_miram_config(scales=[2], decoder_attention=["sdpa"])
    model = MiramForPreTraining(config).eval()
    seen = {}
    model.decoders[0].decoder_layers[0].register_forward_hook(lambda m, args, out: seen.update(inputs=args[0]))
    model(random_batch(config)[0])
    decoder = model.decoders[0]
    tokens = (seen["inputs"] - decoder.decoder_pos_embed)[:, 1:].reshape(2, 8, 8, -1)
    blocks = tokens.reshape(2, 4, 2, 4, 2, -1)  # (batch, row, dy, column, dx, dim)
    torch.testing.assert_close(blocks, blocks[:, :, :1, :, :1].expand_as(blocks))
    assert not torch.allclose(seen["inputs"][:, 1], seen["inputs"][:, 2])  # the position embedding tells them apart


def test_fixed_noise_gives_fixed_mask_and_output():
    model = MiramForPreTraining(tiny_miram_config()).eval()
    pixel_values, targets = random_batch(model.config)
    noise = torch.rand(2, 16)
    first = model(pixel_values, target_pixel_values=targets, noise=noise)
    second = model(pixel_values, target_pixel_values=targets, noise=noise)
    torch.testing.assert_close(first.mask, second.mask)
    torch.testing.assert_close(first.loss, second.loss)
    keep = noise.argsort(dim=1)[:, :4]  # the 25% lowest noise values are kept
    assert torch.equal(first.mask.gather(1, keep), torch.zeros(2, 4))


def test_a_seeded_model_gives_the_recorded_numbers():
    """A numeric regression check, as transformers' integration tests pin an output slice: seed 0's tiny MIRAM on a
    fixed batch. The numbers were recorded from the code before the encoder moved to transformers' output capture;
    a change that alters them must say why and record new ones."""
    torch.manual_seed(0)
    model = MiramForPreTraining(tiny_miram_config()).eval()
    generator = torch.Generator().manual_seed(1)
    pixel_values = torch.rand(2, 3, 32, 32, generator=generator)
    targets = [pixel_values, torch.nn.functional.interpolate(pixel_values, scale_factor=2, mode="bilinear")]
    noise = torch.rand(2, 16, generator=generator)
    with torch.no_grad():
        outputs = model(pixel_values, target_pixel_values=targets, noise=noise)
    expected_1x = [[0.022844, -0.204588, -0.378718, 0.400621], [0.124855, -0.270615, -0.533966, 0.354139],
                   [0.057319, -0.258727, -0.532222, 0.284581]]  # fmt: skip
    expected_2x = [[-0.178220, 0.261124, 0.427456, 0.688351], [-0.439226, 0.269411, 0.428127, 0.560378],
                   [-0.595387, 0.232212, 0.526282, 0.624765]]  # fmt: skip
    torch.testing.assert_close(outputs.scale_losses, torch.tensor([0.479125, 0.367271]), atol=1e-5, rtol=0)
    torch.testing.assert_close(outputs.loss, torch.tensor(0.423198), atol=1e-5, rtol=0)
    torch.testing.assert_close(outputs.logits[0][0, :3, :4], torch.tensor(expected_1x), atol=1e-5, rtol=0)
    torch.testing.assert_close(outputs.logits[1][1, -3:, -4:], torch.tensor(expected_2x), atol=1e-5, rtol=0)


def test_missing_targets_use_upsampled_input_and_warn_once(caplog):
    model = MiramForPreTraining(tiny_miram_config())
    pixel_values, _ = random_batch(model.config)
    noise = torch.rand(2, 16)
    logging.Logger.warning_once.cache_clear()  # transformers' warning_once remembers what earlier tests emitted
    with caplog.at_level(logging.WARNING):
        outputs = model(pixel_values, noise=noise)
        model(pixel_values, noise=noise)
    assert caplog.text.count("no target_pixel_values") == 1
    upsampled = torch.nn.functional.interpolate(pixel_values, scale_factor=2, mode="bicubic", align_corners=False)
    explicit = model(pixel_values, target_pixel_values=[pixel_values, upsampled], noise=noise)
    torch.testing.assert_close(outputs.loss, explicit.loss)


def test_wrong_targets_raise():
    model = MiramForPreTraining(tiny_miram_config())
    pixel_values, targets = random_batch(model.config)
    with pytest.raises(ValueError, match="pass one image per scale"):
        model(pixel_values, target_pixel_values=targets[:1])
    with pytest.raises(ValueError, match=r"scale 2 has shape \(2, 3, 32, 32\), expected \(2, 3, 64, 64\)"):
        model(pixel_values, target_pixel_values=[targets[0], targets[0]])


def test_other_input_size_needs_interpolate_pos_encoding():
    config = tiny_miram_config()
    model = MiramForPreTraining(config)
    pixel_values, targets = random_batch(config, size=(48, 40))
    with pytest.raises(ValueError, match="interpolate_pos_encoding=True"):
        model(pixel_values, target_pixel_values=targets)
    outputs = model(pixel_values, target_pixel_values=targets, interpolate_pos_encoding=True)
    assert [logits.shape[1] for logits in outputs.logits] == [30, 120]
    assert torch.isfinite(outputs.loss)


@pytest.mark.parametrize("attention", LINEAR_AND_EXACT)
def test_every_attention_trains_on_a_fixed_batch(attention):
    config = tiny_miram_config(decoder_attention=["sdpa", attention])
    model = MiramForPreTraining(config)
    noise = torch.rand(2, 16)
    pixel_values, targets = smooth_batch(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(30):
        loss = model(pixel_values, target_pixel_values=targets, noise=noise).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


def test_linformer_decoder_refuses_another_input_size():
    config = tiny_miram_config(decoder_attention=["sdpa", "linformer"])
    model = MiramForPreTraining(config)
    pixel_values, targets = random_batch(config, size=(48, 48))
    with pytest.raises(ValueError, match="built for 65 tokens but got 145"):
        model(pixel_values, target_pixel_values=targets, interpolate_pos_encoding=True)


def test_performer_features_survive_save_and_load_and_redraw_on_request(tmp_path):
    model = MiramForPreTraining(tiny_miram_config(decoder_attention=["sdpa", "performer"], performer_seed=7))
    attention = model.decoders[1].decoder_layers[1].attention
    model.save_pretrained(tmp_path)
    reloaded = MiramForPreTraining.from_pretrained(tmp_path)
    torch.testing.assert_close(reloaded.decoders[1].decoder_layers[1].attention.projection, attention.projection)
    before = attention.projection.clone()
    attention.redraw_features()
    assert not torch.equal(before, attention.projection)
    assert attention.projection.shape == before.shape
    fresh = MiramForPreTraining(tiny_miram_config(decoder_attention=["sdpa", "performer"], performer_seed=7))
    torch.testing.assert_close(fresh.decoders[1].decoder_layers[1].attention.projection, before)  # seeded


def test_nystrom_module_with_all_landmarks_equals_exact_attention_module():
    config = tiny_miram_config(num_landmarks=17, nystrom_pinv_iterations=40, nystrom_conv_kernel_size=0)
    exact = MiramAttention(config, 32, 4, "eager")
    nystrom = MiramNystromAttention(config, 32, 4)
    nystrom.load_state_dict(exact.state_dict())
    hidden_states = torch.randn(2, 17, 32)
    torch.testing.assert_close(nystrom(hidden_states)[0], exact(hidden_states)[0], atol=1e-4, rtol=1e-4)


def test_sdpa_and_eager_agree_and_eager_returns_attentions():
    config = tiny_miram_config()
    model = MiramModel(config).eval()
    pixel_values = torch.randn(2, 3, 32, 32)
    noise = torch.rand(2, 16)
    sdpa = model(pixel_values, noise=noise)
    with_attentions = model(pixel_values, noise=noise, output_attentions=True, output_hidden_states=True)
    torch.testing.assert_close(sdpa.last_hidden_state, with_attentions.last_hidden_state, atol=1e-5, rtol=1e-5)
    assert len(with_attentions.attentions) == 2 and with_attentions.attentions[0].shape == (2, 4, 5, 5)
    assert len(with_attentions.hidden_states) == 3


def test_hidden_states_are_captured_from_the_encoder_blocks_only_and_follow_the_config():
    """transformers' output capture: the embeddings and every encoder block's output (before the final norm), through
    the wrappers and from `config.output_hidden_states`; the decoders' blocks are not the encoder's."""
    config = tiny_miram_config(output_hidden_states=True)
    model = MiramForPreTraining(config).eval()
    pixel_values, noise = torch.randn(2, 3, 32, 32), torch.rand(2, 16)
    outputs = model(pixel_values, noise=noise)
    encoder = model.miram
    expected = [encoder.embeddings(pixel_values, config.mask_ratio, noise=noise)[0]]
    for layer in encoder.layers:
        expected.append(layer(expected[-1])[0])
    assert len(outputs.hidden_states) == config.num_hidden_layers + 1
    for captured, manual in zip(outputs.hidden_states, expected, strict=True):
        torch.testing.assert_close(captured, manual)
    as_tuple = model(pixel_values, noise=noise, return_dict=False)
    for captured, manual in zip(as_tuple[list(outputs.keys()).index("hidden_states")], expected, strict=True):
        torch.testing.assert_close(captured, manual)
    assert model(pixel_values, noise=noise, output_hidden_states=False).hidden_states is None
    classifier = MiramForImageClassification(tiny_miram_config(num_labels=2)).eval()
    assert classifier(pixel_values).hidden_states is None
    assert len(classifier(pixel_values, output_attentions=True).attentions) == 2


def test_mask_ratio_zero_gives_every_token_in_grid_order():
    config = tiny_miram_config(mask_ratio=0.0)
    model = MiramModel(config).eval()
    pixel_values = torch.randn(2, 3, 32, 32)
    outputs = model(pixel_values)
    assert outputs.last_hidden_state.shape == (2, 17, 32)
    assert torch.isfinite(outputs.last_hidden_state).all() and outputs.mask.sum() == 0
    # grid order: the same as the masking model's output when its noise keeps tokens in order
    masked_model = MiramModel(tiny_miram_config(mask_ratio=0.5)).eval()
    masked_model.load_state_dict(model.state_dict())
    in_order = masked_model(pixel_values, mask_ratio=0.0)
    torch.testing.assert_close(in_order.last_hidden_state, outputs.last_hidden_state)
    pretraining = MiramForPreTraining(config)
    assert torch.isfinite(pretraining(pixel_values).loss)


def test_checkpointing_reaches_the_decoders_and_their_linear_attention_with_the_same_gradients():
    config = tiny_miram_config(decoder_attention=["sdpa", "nystromformer"])
    model = MiramForPreTraining(config)
    pixel_values, targets = random_batch(config)
    noise = torch.rand(2, 16)
    model(pixel_values, target_pixel_values=targets, noise=noise).loss.backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.activation_checkpointing_enable()
    assert model.miram.layers[0].gradient_checkpointing and model.decoders[1].decoder_layers[0].gradient_checkpointing
    model(pixel_values, target_pixel_values=targets, noise=noise).loss.backward()
    for name, parameter in model.named_parameters():
        if name in expected:
            torch.testing.assert_close(parameter.grad, expected[name], atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("attention", LINEAR_AND_EXACT)
def test_bf16_autocast_on_cpu(attention):
    config = tiny_miram_config(decoder_attention=["sdpa", attention])
    model = MiramForPreTraining(config)
    pixel_values, targets = random_batch(config)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(pixel_values, target_pixel_values=targets)
    assert outputs.logits[0].dtype == torch.bfloat16
    assert torch.isfinite(outputs.loss)
    outputs.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ------------------------------------------------------------------------------------------------ ViTMAE


def tiny_vit_mae(norm_pix_loss: bool = False) -> ViTMAEForPreTraining:
    """The transformers twin of the tiny MIRAM: the same ViTMAE fields."""
    miram_config = tiny_miram_config(norm_pix_loss=norm_pix_loss)
    config = ViTMAEConfig(**{name: getattr(miram_config, name) for name in VIT_MAE_CONFIG_FIELDS})
    return ViTMAEForPreTraining(config).eval()


@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_from_vit_mae_reproduces_vit_mae(norm_pix_loss):
    vit_mae = tiny_vit_mae(norm_pix_loss)
    miram = MiramForPreTraining.from_vit_mae(vit_mae, scales=[1]).eval()
    pixel_values = torch.randn(3, 3, 32, 32)
    noise = torch.rand(3, 16)
    with torch.no_grad():
        expected = vit_mae(pixel_values, noise=noise)
        outputs = miram(pixel_values, noise=noise)
    torch.testing.assert_close(outputs.mask, expected.mask)
    torch.testing.assert_close(outputs.ids_restore, expected.ids_restore)
    torch.testing.assert_close(outputs.logits[0], expected.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outputs.loss, expected.loss, atol=1e-5, rtol=1e-5)


def test_from_vit_mae_path_adds_a_fresh_high_resolution_decoder(tmp_path):
    vit_mae = tiny_vit_mae()
    vit_mae.save_pretrained(tmp_path)
    miram = MiramForPreTraining.from_vit_mae(str(tmp_path), scales=[2, 1], decoder_attention=["performer", "sdpa"])
    pixel_values = torch.randn(2, 3, 32, 32)
    noise = torch.rand(2, 16)
    with torch.no_grad():
        expected = vit_mae(pixel_values, noise=noise)
        outputs = miram.eval()(pixel_values, noise=noise)
    torch.testing.assert_close(outputs.logits[1], expected.logits, atol=1e-5, rtol=1e-5)
    assert outputs.logits[0].shape == (2, 64, 192)


def test_from_vit_mae_at_another_image_size_keeps_its_own_position_tables():
    miram = MiramForPreTraining.from_vit_mae(tiny_vit_mae(), image_size=48)
    torch.testing.assert_close(miram.miram.embeddings.position_embeddings[0], sincos_position_embedding(6, 6, 32))
    torch.testing.assert_close(miram.decoders[1].decoder_pos_embed[0], sincos_position_embedding(12, 12, 16))


def test_vit_mae_model_encoder_only():
    vit_mae = tiny_vit_mae()
    miram = MiramForPreTraining.from_vit_mae(vit_mae.vit, scales=[1])
    torch.testing.assert_close(miram.miram.layers[1].mlp.fc2.weight, vit_mae.vit.layers[1].mlp.fc2.weight)


@pytest.mark.parametrize(
    "old, new",
    [
        ("encoder.layer.3.attention.attention.query.weight", "layers.3.attention.q_proj.weight"),
        ("encoder.layer.0.attention.output.dense.bias", "layers.0.attention.o_proj.bias"),
        ("encoder.layer.11.intermediate.dense.weight", "layers.11.mlp.fc1.weight"),
        ("encoder.layer.11.output.dense.weight", "layers.11.mlp.fc2.weight"),
        ("decoder_layers.2.attention.attention.value.bias", "decoder_layers.2.attention.v_proj.bias"),
        ("decoder_layers.2.output.dense.bias", "decoder_layers.2.mlp.fc2.bias"),
        ("layers.1.attention.k_proj.weight", "layers.1.attention.k_proj.weight"),
    ],
)
def test_rename_handles_transformers_4_and_5_key_names(old, new):
    assert rename_vit_mae_key(old) == new


# ------------------------------------------------------------------------------------------------ classification


def test_classification_single_and_multi_label():
    config = tiny_miram_config(num_labels=4)
    model = MiramForImageClassification(config)
    pixel_values = torch.randn(3, 3, 32, 32)
    labels = torch.tensor([0, 3, 1])
    outputs = model(pixel_values, labels=labels)
    assert outputs.logits.shape == (3, 4) and model.config.problem_type == "single_label_classification"
    torch.testing.assert_close(outputs.loss, torch.nn.functional.cross_entropy(outputs.logits, labels))

    config = tiny_miram_config(num_labels=5, problem_type="multi_label_classification")
    model = MiramForImageClassification(config)
    labels = torch.tensor([[1, 0, 0, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]]).float()
    outputs = model(pixel_values, labels=labels)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(outputs.logits, labels)
    torch.testing.assert_close(outputs.loss, expected)


def test_classification_never_masks_and_pools_as_configured():
    pixel_values = torch.randn(2, 3, 32, 32)
    for use_mean_pooling in (True, False):
        model = MiramForImageClassification(tiny_miram_config(num_labels=2, use_mean_pooling=use_mean_pooling)).eval()
        features = model.miram(pixel_values, mask_ratio=0.0).last_hidden_state
        pooled = model.fc_norm(features[:, 1:].mean(1)) if use_mean_pooling else features[:, 0]
        torch.testing.assert_close(model(pixel_values).logits, model.classifier(pooled))
        torch.testing.assert_close(model(pixel_values).logits, model(pixel_values).logits)  # no random masking


def test_classifier_from_pretraining_checkpoint_keeps_the_encoder(tmp_path):
    pretrained = MiramForPreTraining(tiny_miram_config())
    pretrained.save_pretrained(tmp_path)
    classifier = MiramForImageClassification.from_pretrained(tmp_path, num_labels=3)
    torch.testing.assert_close(
        classifier.miram.layers[1].attention.q_proj.weight, pretrained.miram.layers[1].attention.q_proj.weight
    )
    assert classifier.classifier.weight.abs().max() < 1e-3  # MAE fine-tuning starts the head near zero


# ------------------------------------------------------------------------------------------------ save / load / Auto


def test_a_linear_attention_decoder_saves_its_code_and_the_encoder_loads_alone(tmp_path):
    config = tiny_miram_config(decoder_attention=["sdpa", "nystromformer"])
    model = MiramForPreTraining(config).eval()
    model.save_pretrained(tmp_path)
    assert "linear_attention_miram.py" in {path.name for path in tmp_path.iterdir()}
    pixel_values, _ = random_batch(config)
    noise = torch.rand(2, 16)
    encoder = AutoModel.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(
        encoder(pixel_values, noise=noise).last_hidden_state, model.miram(pixel_values, noise=noise).last_hidden_state
    )
    assert type(AutoModelForImageClassification.from_pretrained(tmp_path, num_labels=2)) is MiramForImageClassification


def test_fresh_model_has_sincos_tables_and_random_tokens():
    # transformers 5.23's ViTMAE leaves these at zero on a fresh init (its initialize_weights returns early once the
    # patch projection is flagged as initialised); MIRAM must not
    model = MiramForPreTraining(tiny_miram_config())
    torch.testing.assert_close(model.miram.embeddings.position_embeddings[0], sincos_position_embedding(4, 4, 32))
    torch.testing.assert_close(model.decoders[1].decoder_pos_embed[0], sincos_position_embedding(8, 8, 16))
    assert 0.01 < model.miram.embeddings.cls_token.std() < 0.04
    assert 0.01 < model.decoders[0].mask_token.std() < 0.04
    assert not model.miram.embeddings.position_embeddings.requires_grad
