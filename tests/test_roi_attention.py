"""RoiAttentionForImageClassification: region tokens from DINOv2, an anchor, 2-D rotary attention, pooling and the
repulsive contrastive loss; the region proposers and the inputs built from them."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_configs import tiny_roi_config
from transformers import AutoModelForImageClassification, Dinov2Config

from miram_hf import MammographyImageProcessor, RoiAttentionConfig, RoiAttentionForImageClassification
from miram_hf.data import load_mammography
from miram_hf.modeling.roi import repulsive_contrastive_loss, rotate_2d
from miram_hf.processing.patches import Box
from miram_hf.training.regions import (
    IntensityBlobProposer,
    ZeroShotDetectionProposer,
    collate_roi,
    ground_truth_boxes,
    roi_inputs,
)


def tiny_roi(pooling: str = "anchor", **overrides) -> RoiAttentionForImageClassification:
    return RoiAttentionForImageClassification(tiny_roi_config(pooling=pooling, **overrides)).eval()


def batch(regions=(3, 2), seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    rows = [
        {"pixel_values": torch.rand(count, 1, 16, 16, generator=generator),
         "anchor_pixel_values": torch.rand(1, 16, 16, generator=generator),
         "region_centers": torch.rand(count, 2, generator=generator), "labels": label}
        for label, count in enumerate(regions)
    ]  # fmt: skip
    return collate_roi(rows)


def test_rotary_attention_scores_depend_only_on_the_offset_between_positions():
    query, key = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(query_position, key_position) -> torch.Tensor:
        rotated_query = rotate_2d(query, torch.tensor([[query_position]], dtype=torch.float32), theta=100.0)
        rotated_key = rotate_2d(key, torch.tensor([[key_position]], dtype=torch.float32), theta=100.0)
        return (rotated_query * rotated_key).sum()

    torch.testing.assert_close(score([3.0, 5.0], [1.0, 2.0]), score([12.0, 7.0], [10.0, 4.0]))
    assert not torch.allclose(score([3.0, 5.0], [1.0, 2.0]), score([3.0, 5.0], [2.0, 1.0]))  # rows and columns differ
    torch.testing.assert_close(rotate_2d(query, torch.zeros(1, 1, 2), 100.0), query)  # position 0 turns nothing
    torch.testing.assert_close(rotate_2d(query, torch.full((1, 1, 2), 7.0), 100.0).norm(), query.norm())


def test_the_repulsive_loss_is_the_mean_hinge_over_regions_of_differently_labelled_images():
    embeddings, mask = torch.randn(2, 3, 8), torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    regions = [(image, embeddings[image, region]) for image in range(2) for region in range(3) if mask[image, region]]
    hinges = [F.relu(F.cosine_similarity(a, b, dim=0) - 0.1) for i, a in regions for j, b in regions if i != j]
    expected = torch.stack(hinges).mean()  # 5 regions: 3 x 2 pairs across the images, both ways
    assert len(hinges) == 12
    torch.testing.assert_close(repulsive_contrastive_loss(embeddings, mask, torch.tensor([0, 1]), margin=0.1), expected)
    assert repulsive_contrastive_loss(embeddings, mask, torch.tensor([1, 1])) == 0  # one label: nothing to push apart


@pytest.mark.parametrize("pooling", ["anchor", "attention", "mean", "cls"])
def test_padding_regions_change_nothing_and_the_loss_adds_the_weighted_contrastive_term(pooling):
    model = tiny_roi(pooling)
    inputs = batch()
    with torch.no_grad():
        outputs = model(**inputs)
        second_image = {key: value[1:] for key, value in inputs.items()}
        alone = model(**second_image | {key: second_image[key][:, :2] for key in ("pixel_values", "region_centers",
                                                                                    "region_mask")})  # fmt: skip
    torch.testing.assert_close(outputs.logits[1], alone.logits[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outputs.loss, outputs.classification_loss + 0.3 * outputs.contrastive_loss)
    assert outputs.contrastive_loss > 0 and outputs.region_embeddings.shape == (2, 3, 32)


def test_region_positions_matter_and_the_model_learns_a_fixed_batch(tmp_path):
    torch.manual_seed(0)
    model = tiny_roi().train()
    inputs = batch()
    moved = dict(inputs, region_centers=inputs["region_centers"].flip(-1))
    assert not torch.allclose(model(**inputs).logits, model(**moved).logits)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    model.save_pretrained(tmp_path)
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is RoiAttentionForImageClassification and type(loaded.backbone).__name__ == "Dinov2Model"
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model.eval()(**inputs).logits)


def test_configuration_errors_say_what_to_change():
    with pytest.raises(ValueError, match="pooling must be one of"):
        RoiAttentionConfig(pooling="max")
    with pytest.raises(ValueError, match="divisible by 4"):
        RoiAttentionConfig(backbone_config=Dinov2Config(hidden_size=48, num_attention_heads=4), num_attention_heads=8)
    assert RoiAttentionConfig().backbone_config.model_type == "dinov2"
    # DINOv2's mask token (masked image modelling) gets no gradient here: DDP must not wait for one
    assert not tiny_roi().backbone.embeddings.mask_token.requires_grad


def phantom() -> np.ndarray:
    """A 200 x 160 image: a breast of intensity 1000 with two bright blobs, and a brighter burned-in label apart."""
    image = np.zeros((200, 160), dtype=np.uint16)
    image[20:180, :120] = 1000
    rows, columns = np.mgrid[:200, :160]
    for row, column in ((60, 40), (140, 90)):
        image += (3000 * np.exp(-((rows - row) ** 2 + (columns - column) ** 2) / 50)).astype(np.uint16)
    image[185:195, 135:155] = 6000
    return image


def test_the_blob_proposer_finds_the_breasts_bright_blobs_first_and_not_the_label():
    boxes = IntensityBlobProposer(num_regions=3, region_fraction=0.2)(phantom())
    centres = [((box.top + box.bottom) / 2, (box.left + box.right) / 2) for box in boxes]
    assert len(boxes) == 3 and all(box.height == box.width == 32 for box in boxes)
    assert sorted(centres[:2]) == [(60, 40), (140, 90)]


def test_a_zero_shot_detector_proposes_its_best_boxes_inside_the_image():
    calls = []

    def detector(picture, candidate_labels, threshold):  # a transformers zero-shot-object-detection pipeline's answer
        calls.append((picture.mode, picture.size, candidate_labels))
        return [
            {"score": 0.2, "label": "a mass", "box": {"xmin": 10, "ymin": 5, "xmax": 40, "ymax": 30}},
            {"score": 0.9, "label": "a mass", "box": {"xmin": -5, "ymin": 150, "xmax": 60, "ymax": 260}},
        ]

    boxes = ZeroShotDetectionProposer(detector, num_regions=1)(phantom())
    assert boxes == [Box(150, 0, 200, 60)] and calls == [("RGB", (160, 200), ["a mass", "calcifications"])]


def test_inputs_from_proposed_regions_feed_the_model():
    processor = MammographyImageProcessor(size={"height": 16, "width": 16}, do_breast_crop=False, do_flip=False)
    image = phantom()
    rows = [roi_inputs(image, IntensityBlobProposer(num_regions=count)(image), processor) | {"labels": label}
            for label, count in ((0, 2), (1, 3))]  # fmt: skip
    assert rows[0]["pixel_values"].shape == (2, 1, 16, 16) and rows[0]["anchor_pixel_values"].shape == (1, 16, 16)
    # centres in the breast's box (rows 20-180, columns 0-120): the (60, 40) blob sits at (0.25, 0.33)
    torch.testing.assert_close(rows[0]["region_centers"][0], torch.tensor([0.25, 40 / 120]), atol=0.02, rtol=0)
    inputs = collate_roi(rows)
    assert inputs["region_mask"].tolist() == [[True, True, False], [True, True, True]]
    assert tiny_roi()(**inputs).loss > 0
    with pytest.raises(ValueError, match="No region"):
        roi_inputs(image, [], processor)


def test_ground_truth_boxes_of_an_images_row_feed_the_model(tmp_path):
    row = load_mammography("synthetic", config_name="images", split="train", cache_dir=str(tmp_path), num_images=8)[0]
    boxes = ground_truth_boxes(row["lesions"])
    assert [[box.top, box.left, box.bottom, box.right] for box in boxes] == [lesion["box"] for lesion in row["lesions"]]
    processor = MammographyImageProcessor(size={"height": 16, "width": 16}, do_breast_crop=False, do_flip=False)
    inputs = collate_roi([roi_inputs(np.array(row["image"]), boxes, processor) | {"labels": row["label_malignant"]}])
    assert inputs["pixel_values"].shape[1] == len(boxes) and tiny_roi()(**inputs).logits.shape == (1, 2)
