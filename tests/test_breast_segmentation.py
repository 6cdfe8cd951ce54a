import numpy as np
import pytest
import torch
from scipy import ndimage

from miram_hf import MammographyImageProcessor
from miram_hf.data import load_mammography
from miram_hf.data.synthetic import TOP, generate_phantom
from miram_hf.processing.augmentations import Compose, Gamma, RandomFlip
from miram_hf.processing.breast_segmentation import _largest_component, breast_mask, segment_breast
from miram_hf.processing.patches import random_background_boxes, tiles

SIZE = {"height": 448, "width": 448}


@pytest.fixture(scope="module")
def film_scans():
    """Two film scans of each breast and view."""
    phantoms, seed = [], 0
    while len(phantoms) < 8:
        phantom = generate_phantom(seed, 1024, 768, film_scan=True)
        if sum((p.laterality, p.view) == (phantom.laterality, phantom.view) for p in phantoms) < 2:
            phantoms.append(phantom)
        seed += 1
    return phantoms


def test_film_scan_phantoms_carry_the_artefacts(film_scans):
    for phantom in film_scans:
        outside = phantom.image[~phantom.breast_mask] / TOP
        assert 0.05 < np.median(outside) < 0.25  # a grey film base, not black
        assert (outside > 0.8).mean() > 0.005  # frame lines and the label, bright as the densest tissue
        assert np.std(outside[(outside > 0.05) & (outside < 0.3)]) > 0.01  # scanner noise
    plain = generate_phantom(0, 1024, 768)
    again = generate_phantom(0, 1024, 768, film_scan=True)
    np.testing.assert_array_equal(plain.breast_mask, again.breast_mask)  # the same breast under the artefacts


def test_film_scans_are_processed_to_the_breast_alone(film_scans):
    processor = MammographyImageProcessor(size=SIZE, do_normalize=False)
    for phantom in film_scans:
        region = segment_breast(phantom.image, TOP)
        top, bottom, left, right = region.box()
        truth = phantom.breast_mask
        assert truth[top:bottom, left:right].sum() >= 0.98 * truth.sum()  # the crop cuts no breast
        assert (region.full_resolution() & truth).sum() >= 0.98 * truth.sum()  # nor does the clearing

        inputs = processor(phantom.image, return_breast_mask=True)
        pixels, mask = inputs["pixel_values"][0, 0].numpy(), inputs["breast_mask"][0].numpy()
        components, count = ndimage.label(pixels > 0.02)
        sizes = sorted(np.bincount(components.ravel())[1:], reverse=True)
        assert count >= 1 and (count == 1 or sizes[1] <= 100), (phantom.laterality, phantom.view, sizes[:3])
        third = pixels.shape[1] // 3
        assert pixels[:, :third].mean() > pixels[:, -third:].mean()  # the chest wall on the left
        assert (pixels[~mask] > 0.02).mean() < 0.01  # what is left outside the mask is the soft edge only
        breast_area_at_output = truth[top:bottom, left:right].mean() * np.count_nonzero(pixels.any(axis=0)) * len(mask)
        assert 0.97 < mask.sum() / breast_area_at_output < 1.15


def test_a_frame_line_and_a_label_touching_the_breast_are_left_out():
    image = np.zeros((600, 450), dtype=np.uint16)
    rows, columns = np.mgrid[:600, :450]
    image[((columns / 300) ** 2 + ((rows - 300) / 250) ** 2) < 1] = 30000  # a breast against the left edge
    image[:, 440:446] = 65535  # a frame line along the right edge (digital: a collimator edge)
    image[20:26, :] = 65535  # and one along the top, crossing the breast's first rows
    image[30:70, 380:440] = 65535  # a label touching the frame line
    top, bottom, left, right = segment_breast(image, 65535).box()
    assert left == 0 and right <= 320 and 30 <= top <= 60 and 550 <= bottom <= 570, (top, bottom, left, right)

    processor = MammographyImageProcessor(size={"height": 120, "width": 90}, do_normalize=False, do_flip=False)
    label_in_box = np.zeros_like(image)
    label_in_box[image > 0] = image[image > 0]
    label_in_box[:, 440:] = label_in_box[20:26] = 0  # no frame; a label inside the breast's box, apart from it
    label_in_box[60:80, 230:280] = 65535
    cleared = processor(label_in_box)["pixel_values"][0, 0]
    kept = MammographyImageProcessor(size={"height": 120, "width": 90}, do_normalize=False, do_flip=False,
                                     do_clear_background=False)(label_in_box)["pixel_values"][0, 0]  # fmt: skip
    assert kept.max() > 0.9 and cleared.max() < 0.5  # the label's pixels (1.0) are gone, the breast's (0.46) stay
    assert (cleared > 0.4).float().mean() > 0.5


def test_the_largest_component_is_the_largest_four_connected_region():
    rng = np.random.default_rng(0)
    spiral = np.zeros((15, 15), dtype=bool)  # one region whose paths take many turns
    spiral[1, 1:14] = spiral[1:14, 13] = spiral[13, 1:14] = spiral[3:14, 1] = spiral[3, 1:12] = spiral[3:12, 11] = True
    for mask in [spiral, *(rng.random((40, 30)) < 0.55 for _ in range(20))]:
        labels, count = ndimage.label(mask)  # 4-connected by default
        largest = labels == np.bincount(labels.ravel(), minlength=count + 1)[1:].argmax() + 1
        assert np.array_equal(_largest_component(mask), largest)


def test_a_blank_image_has_no_breast_and_is_processed_whole():
    blank = np.full((64, 48), 1000, dtype=np.uint16)
    assert segment_breast(blank, 65535) is None and not breast_mask(blank, 65535).any()
    inputs = MammographyImageProcessor(size={"height": 64, "width": 48}, do_normalize=False)(
        blank, return_breast_mask=True
    )
    torch.testing.assert_close(inputs["pixel_values"], torch.full((1, 1, 64, 48), 1000 / 1023))  # 10 bits hold 1000
    assert not inputs["breast_mask"].any()


def test_the_breast_mask_follows_the_flip_the_padding_and_every_scale(film_scans):
    right = next(phantom for phantom in film_scans if phantom.laterality == "R")
    processor = MammographyImageProcessor(size={"height": 64, "width": 64}, scales=[1, 2], do_normalize=False)
    inputs = processor(right.image, return_breast_mask=True, return_tensors="np")
    mask, pixels = inputs["breast_mask"][0], inputs["pixel_values"][0, 0]
    assert mask.shape == (64, 64) and mask.dtype == bool
    assert mask[:, 0].mean() > 0.5 and not mask[:, -1].any()  # flipped with the image; padded on the right
    assert (pixels[~mask] > 0.02).mean() < 0.02
    fine = inputs["target_pixel_values"][1][0, 0]  # cleared at 2x too
    upsampled = mask.repeat(2, axis=0).repeat(2, axis=1)
    assert (fine[~upsampled] > 0.02).mean() < 0.02
    assert "breast_mask" not in processor(right.image)  # only on request


def test_masks_move_with_the_geometric_augmentations_only():
    images = torch.rand(4, 1, 8, 8)
    masks = torch.zeros(4, 8, 8, dtype=torch.bool)
    masks[:, :, :3] = True
    augment = Compose([RandomFlip(horizontal=0.5), Gamma(p=1.0)])
    moved_images, moved_masks = augment.with_masks(images, masks, torch.Generator().manual_seed(0))
    flipped = moved_masks[:, 0, -1]  # a flipped mask has its breast on the right
    assert 0 < flipped.sum() < 4
    for image, moved, mask, was_flipped in zip(images, moved_images, moved_masks, flipped, strict=True):
        assert torch.equal(mask, masks[0].flip(-1) if was_flipped else masks[0])
        assert not torch.equal(moved, image)  # gamma changed the image
    again_images = augment(images, torch.Generator().manual_seed(0))
    torch.testing.assert_close(again_images, moved_images)  # the same draws as without masks


def test_tiles_and_background_crops_stay_inside_the_breast_of_a_film_scan(film_scans):
    for phantom in film_scans:
        mask = breast_mask(phantom.image, TOP)
        truth = phantom.breast_mask
        for box in random_background_boxes(mask, 96, 8, rng=np.random.default_rng(0)):
            assert box.crop(truth).mean() >= 0.85
        for tile in tiles(mask, 128, max_background=0.2):
            assert tile.box.crop(truth).mean() >= 0.7


def test_the_synthetic_builder_makes_film_scans_on_request(tmp_path):
    splits = load_mammography("synthetic", None, "images", cache_dir=str(tmp_path), num_images=4, film_scan=True)
    image = np.array(splits["train"][0]["image"])
    assert np.median(image[:, -20:]) > 0.05 * TOP  # the film base, where the plain phantom is black
