import numpy as np
import pytest
from dicom_factory import breast_image

from miram_hf.processing.breast_segmentation import breast_mask
from miram_hf.processing.patches import (
    Box,
    lesion_crop_box,
    mask_box,
    random_background_boxes,
    tile_boxes,
    tiles,
)


def test_mask_box_and_empty_mask():
    mask = np.zeros((50, 40), dtype=np.uint8)
    mask[10:20, 5:9] = 255
    assert mask_box(mask) == Box(10, 5, 20, 9)
    with pytest.raises(ValueError, match="empty"):
        mask_box(np.zeros((5, 5)))


def test_lesion_crop_is_centred_with_context_and_square():
    crop = lesion_crop_box((1000, 800), Box(400, 300, 440, 320), context=0.5)
    assert (crop.height, crop.width) == (80, 80)  # 40 x (1 + 2 x 0.5), squared
    assert ((crop.top + crop.bottom) / 2, (crop.left + crop.right) / 2) == (420, 310)
    assert lesion_crop_box((1000, 800), Box(400, 300, 410, 305), context=0, min_size=64).height == 64


def test_lesion_crop_moves_inside_then_clips_at_the_border():
    near_corner = lesion_crop_box((100, 100), Box(0, 90, 10, 100), context=1.0)
    assert near_corner == Box(0, 70, 30, 100)  # moved inside: same size, lesion still in it
    too_big = lesion_crop_box((50, 100), Box(10, 10, 40, 90), context=0.5)
    assert too_big == Box(0, 0, 50, 100)  # larger than the image: clipped


def test_breast_mask_leaves_out_background_and_labels():
    image = breast_image(rows=200, columns=120)
    image[5:15, 100:115] = 65535  # a label apart from the breast
    mask = breast_mask(image, 65535)
    assert mask.shape == image.shape
    assert not mask[5:15, 100:115].any()
    assert mask[100, 5] and not mask[100, 119]


def test_background_boxes_lie_in_the_breast_and_avoid_lesions():
    mask = np.zeros((300, 200), dtype=bool)
    mask[20:280, 0:150] = True
    lesion = Box(100, 20, 160, 80)
    boxes = random_background_boxes(mask, 40, 10, avoid=[lesion], rng=np.random.default_rng(0))
    assert len(boxes) == 10
    for box in boxes:
        assert (box.height, box.width) == (40, 40)
        assert mask[box.top : box.bottom, box.left : box.right].mean() >= 0.9
        assert not box.intersects(lesion)
    again = random_background_boxes(mask, 40, 10, avoid=[lesion], rng=np.random.default_rng(0))
    assert again == boxes  # seeded
    assert random_background_boxes(mask, 400, 3) == []  # larger than the image


def test_tile_grid_overlaps_by_half_and_covers_the_image():
    grid = tile_boxes((250, 200), 100, overlap=0.5)
    tops = sorted({box.top for _, _, box in grid})
    lefts = sorted({box.left for _, _, box in grid})
    assert tops == [0, 50, 100, 150] and lefts == [0, 50, 100]
    covered = np.zeros((250, 200), dtype=bool)
    for _, _, box in grid:
        covered[box.top : box.bottom, box.left : box.right] = True
    assert covered.all()
    assert {(row, column) for row, column, _ in grid} == {(r, c) for r in range(4) for c in range(3)}


def test_tiles_drop_those_with_too_much_background():
    mask = np.zeros((200, 200), dtype=bool)
    mask[:, :100] = True  # breast on the left half
    kept = tiles(mask, 50, overlap=0.5, max_background=0.2)
    assert all(tile.box.right <= 100 for tile in kept)  # the tile at 75..125 is half background: dropped
    assert all(tile.background_fraction == 0.0 for tile in kept)
    assert {tile.column for tile in kept} == {0, 1, 2} and len(kept) == 3 * 7
    assert len(tiles(mask, 50, max_background=1.0)) == len(tile_boxes((200, 200), 50))
