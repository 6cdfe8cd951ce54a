import numpy as np

from miram_hf.data import load_mammography
from miram_hf.data.synthetic import TOP, generate_phantom
from miram_hf.processing.breast_segmentation import breast_mask
from miram_hf.processing.patches import Box


def test_tiles_of_the_phantoms(tmp_path):
    tiles = load_mammography(
        "synthetic", config_name="tiles", split="train", cache_dir=str(tmp_path), num_images=5, height=256,
        width=192, tile_size=64, overlap=0.5, max_background=0.2,
    )  # fmt: skip
    assert len(tiles) > 0 and set(tiles["image_id"]) <= {f"synthetic_{seed}" for seed in range(5)}
    for row in tiles.select(range(0, len(tiles), 7)):
        phantom = generate_phantom(int(row["image_id"].removeprefix("synthetic_")), 256, 192)
        box = Box(*row["tile_box"])
        pixels = np.array(row["image"])
        assert pixels.dtype == np.uint16 and pixels.shape == (64, 64)
        np.testing.assert_array_equal(pixels, box.crop(phantom.image))
        assert row["background_fraction"] <= 0.2
        assert box.top == row["tile_row"] * 32 or box.bottom == 256  # 50% overlap: a stride of 32
        assert box.crop(breast_mask(phantom.image, TOP)).mean() >= 0.8 - 1e-6
