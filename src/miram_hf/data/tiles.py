"""The `tiles` config of every collection: tiled patches of its whole mammograms, unlabelled, for pretraining (the
tiled-patch paper: 50% overlap, tiles with more than 20% background dropped). Made from the `images` config, so
every collection that has one has tiles too."""

import datasets
import numpy as np

from ..processing.breast_segmentation import breast_mask
from ..processing.image_processing_mammography import to_array
from ..processing.patches import tiles

IMAGE = datasets.Image()
TILE_FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "image_id": datasets.Value("string"),
        "patient_id": datasets.Value("string"),
        "laterality": datasets.Value("string"),
        "view": datasets.Value("string"),
        "tile_box": datasets.List(datasets.Value("int32")),  # top, left, bottom, right in the mammogram
        "tile_row": datasets.Value("int32"),  # the tile's place in the grid, to put tile features back on the image
        "tile_column": datasets.Value("int32"),
        "background_fraction": datasets.Value("float32"),
    }
)


def tile_images(
    images: datasets.Dataset, tile_size: int = 224, overlap: float = 0.5, max_background: float = 0.2
) -> datasets.Dataset:
    """One row per kept tile of every mammogram of an `images` dataset, at native resolution and bit depth."""

    def to_tiles(batch: dict) -> dict:
        rows = {name: [] for name in TILE_FEATURES}
        for index, image in enumerate(batch["image"]):
            pixels, top_value = to_array(np.array(image))
            for tile in tiles(breast_mask(pixels, top_value), tile_size, overlap, max_background):
                box = tile.box
                # encoded here: an array that goes through a batched map comes back as a list of Python ints
                rows["image"].append(IMAGE.encode_example(np.ascontiguousarray(box.crop(pixels))))
                for name in ("image_id", "patient_id", "laterality", "view"):
                    rows[name].append(batch[name][index])
                rows["tile_box"].append(box.corners())
                rows["tile_row"].append(tile.row)
                rows["tile_column"].append(tile.column)
                rows["background_fraction"].append(tile.background_fraction)
        return rows

    return images.map(to_tiles, batched=True, batch_size=8, remove_columns=images.column_names, features=TILE_FEATURES)
