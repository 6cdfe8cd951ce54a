"""MilForImageClassification: a whole image as a bag of tiles, pooled by mean, gated attention or self-attention."""

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_configs import tiny_mil_config, tiny_resnet_config

from miram_hf import MilConfig, MilForImageClassification
from miram_hf.training.bags import image_bag, pad_bags
from miram_hf.visualization import save_tile_heatmap


def tiny_mil(pooling: str, **overrides) -> MilForImageClassification:
    return MilForImageClassification(tiny_mil_config(pooling=pooling, num_labels=3, **overrides)).eval()


def bag(tiles: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, tiles, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_gated_attention_is_ilse_equation_9():
    model = tiny_mil("gated_attention")
    pixel_values = bag()
    with torch.no_grad():
        outputs = model(pixel_values, output_attentions=True)
        h = model.backbone(pixel_values[0]).last_hidden_state[:, 0]  # (tiles, 32), the CLS of every tile
        pooling = model.pooling
        v, u, w = pooling.attention_v, pooling.attention_u, pooling.attention_w
        scores = torch.stack([w.weight[0] @ (torch.tanh(v(h_k)) * torch.sigmoid(u(h_k))) + w.bias[0] for h_k in h])
        a = torch.exp(scores) / torch.exp(scores).sum()
        z = (a[:, None] * h).sum(0)
    torch.testing.assert_close(outputs.tile_weights[0], a)
    torch.testing.assert_close(outputs.logits[0], model.classifier(z))


@pytest.mark.parametrize("pooling", ["gap", "gated_attention", "self_attention"])
def test_padding_tiles_change_nothing(pooling):
    model = tiny_mil(pooling)
    pixel_values, tile_mask = pad_bags([bag(3)[0], bag(5, seed=1)[0]])
    assert pixel_values.shape == (2, 5, 1, 16, 16) and tile_mask.sum(1).tolist() == [3, 5]
    with torch.no_grad():
        padded = model(pixel_values, tile_mask=tile_mask, output_attentions=True)
        alone = model(bag(3), output_attentions=True)
    torch.testing.assert_close(padded.logits[0], alone.logits[0], atol=1e-5, rtol=1e-5)
    assert torch.all(padded.tile_weights[0, 3:] == 0)
    torch.testing.assert_close(padded.tile_weights.sum(1), torch.ones(2))
    assert model(bag(3)).tile_weights is None  # weights are an optional output, as attentions are in transformers


def test_gap_is_the_mean_of_the_tile_features():
    model = tiny_mil("gap")
    with torch.no_grad():
        h = model.backbone(bag()[0]).last_hidden_state[:, 0]
        torch.testing.assert_close(model(bag()).logits[0], model.classifier(h.mean(0)))


def test_the_loss_reaches_the_self_attention_pooling_token():
    model = tiny_mil("self_attention")
    outputs = model(bag(), labels=torch.tensor([2]))
    outputs.loss.backward()
    assert outputs.loss > 0 and model.pooling.cls_token.grad is not None


def test_resnet_tiles_and_configuration_errors():
    backbone = tiny_resnet_config()
    model = MilForImageClassification(tiny_mil_config(backbone))
    assert model(bag()).logits.shape == (1, 2)
    with pytest.raises(ValueError, match="pooling must be one of"):
        MilConfig(pooling="max")
    with pytest.raises(ValueError, match="num_attention_heads that divides"):
        MilConfig(backbone_config=backbone, pooling="self_attention", num_attention_heads=3)


def test_a_bag_keeps_the_breast_tiles_and_the_heatmap_covers_them(tmp_path):
    image = torch.zeros(1, 64, 64)
    image[:, :, :32] = 0.8  # breast on the left half, background on the right
    tiles_of_bag, tiles = image_bag(image, image[0] > 0, tile_size=16, overlap=0.5, max_background=0.2)
    # a 7 x 7 grid of 16 px tiles at stride 8; the columns starting at 0, 8 and 16 lie in the breast
    assert len(tiles) == 7 * 3 and tiles_of_bag.shape == (21, 1, 16, 16)
    assert all(tile.box.right <= 32 for tile in tiles) and torch.all(tiles_of_bag == 0.8)
    empty = torch.zeros(1, 64, 64)
    assert len(image_bag(empty, empty[0] > 0, tile_size=16)[1]) == 1  # no breast: still a bag of one tile
    with pytest.raises(ValueError, match="smaller than one 16 px tile"):
        image_bag(torch.zeros(1, 8, 8), torch.zeros(8, 8, dtype=torch.bool), tile_size=16)

    weights = torch.zeros(21)
    weights[0] = 1.0
    path = save_tile_heatmap(image, tiles, weights, tmp_path / "heatmap.png")
    picture = np.asarray(Image.open(path))
    assert picture.ndim == 3 and picture.shape[0] > 100


def test_padding_never_reaches_the_backbone_so_batchnorm_ignores_it():
    model = MilForImageClassification(tiny_mil_config(tiny_resnet_config())).train()
    pixel_values, tile_mask = pad_bags([bag(3)[0], bag(5, seed=1)[0]])
    other_padding = pixel_values.clone()
    other_padding[0, 3:] = torch.rand(2, 1, 16, 16)  # only what the mask hides changes
    torch.testing.assert_close(model(pixel_values, tile_mask).logits, model(other_padding, tile_mask).logits)


def test_self_attention_pooling_computes_as_torchs_multihead_attention_and_survives_disk_offload(tmp_path):
    from miram_hf.modeling.mil.modeling_mil import MilMultiheadAttention

    reference = torch.nn.MultiheadAttention(32, 4, batch_first=True)
    ours = MilMultiheadAttention(32, 4)
    ours.load_state_dict(reference.state_dict())  # the same weight names
    tokens = torch.randn(2, 6, 32)
    padding = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    expected, expected_weights = reference(tokens, tokens, tokens, key_padding_mask=padding, need_weights=True)
    output, weights = ours(tokens, key_padding_mask=padding)
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(weights, expected_weights)

    model = tiny_mil("self_attention")
    model.save_pretrained(tmp_path / "mil")
    offloaded = MilForImageClassification.from_pretrained(
        tmp_path / "mil", device_map={"backbone": "cpu", "pooling": "disk", "dropout": "cpu", "classifier": "cpu"},
        offload_folder=str(tmp_path / "offload"),
    )  # fmt: skip
    with torch.no_grad():
        torch.testing.assert_close(offloaded(bag()).logits, model(bag()).logits)
