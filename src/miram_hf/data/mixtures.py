"""The MIRAM paper's pretraining sets (Table I): `cbis-ddsm` (ground-truth lesion crops of CBIS-DDSM),
`lesions-only` (lesion crops of every lesion-level collection) and `mgs-and-lesions` (those, plus random crops of the
mammograms of the image-level collections, which may or may not hold a lesion).

Sampling rule: every crop appears once per epoch; the crops of all collections are concatenated and shuffled with
`seed`, so each collection weighs by its number of crops, as when the paper pools the datasets.
"""

import zlib

import datasets
import numpy as np

from ..processing.breast_segmentation import breast_mask
from ..processing.image_processing_mammography import to_array
from ..processing.patches import random_background_boxes

LESION_LEVEL = ("cbis-ddsm", "inbreast", "bcdr", "csaw-s", "synthetic")  # synthetic: the built-in stand-in
IMAGE_LEVEL = ("csaw-m", "cmmd")
MIXTURES = ("cbis-ddsm", "lesions-only", "mgs-and-lesions")
IMAGE = datasets.Image()
MIXTURE_FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "image_id": datasets.Value("string"),
        "patient_id": datasets.Value("string"),
        "source": datasets.Value("string"),  # the collection
        "crop_box": datasets.List(datasets.Value("int32")),
    }
)


def random_crops(images: datasets.Dataset, source: str, size: int, per_image: int, seed: int) -> datasets.Dataset:
    """`per_image` random `size` x `size` crops inside the breast of each mammogram, seeded by the image's id."""

    def crop(batch: dict) -> dict:
        rows = {name: [] for name in MIXTURE_FEATURES}
        for image, image_id, patient_id in zip(batch["image"], batch["image_id"], batch["patient_id"], strict=True):
            pixels, top_value = to_array(np.array(image))
            rng = np.random.default_rng([seed, zlib.crc32(image_id.encode())])
            for box in random_background_boxes(breast_mask(pixels, top_value), size, per_image, rng=rng):
                rows["image"].append(IMAGE.encode_example(np.ascontiguousarray(box.crop(pixels))))
                rows["image_id"].append(image_id)
                rows["patient_id"].append(patient_id)
                rows["source"].append(source)
                rows["crop_box"].append(box.corners())
        return rows

    return images.map(crop, batched=True, batch_size=8, remove_columns=images.column_names, features=MIXTURE_FEATURES)


def pretraining_mixture(
    name: str,
    data_dirs: dict[str, str | None],
    split: str = "train",
    cache_dir: str | None = None,
    crop_size: int = 256,
    crops_per_image: int = 4,
    seed: int = 0,
) -> datasets.Dataset:
    """One of the paper's pretraining sets from the collections in `data_dirs` (collection name -> folder; None for
    `synthetic`): a shuffled Dataset of crops with their source collection."""
    from . import load_mammography

    if name not in MIXTURES:
        raise ValueError(f"Unknown mixture {name!r}; choose one of {MIXTURES}.")
    unknown = sorted(set(data_dirs) - set(LESION_LEVEL) - set(IMAGE_LEVEL))
    if unknown:
        raise ValueError(f"{unknown} are not pretraining collections; lesion-level: {LESION_LEVEL}, image-level: "
                         f"{IMAGE_LEVEL}.")  # fmt: skip
    if name == "cbis-ddsm":
        if "cbis-ddsm" not in data_dirs:
            raise ValueError("The cbis-ddsm mixture needs data_dirs['cbis-ddsm'].")
        lesion_level, image_level = ["cbis-ddsm"], []
    else:
        lesion_level = [c for c in data_dirs if c in LESION_LEVEL]
        image_level = [c for c in data_dirs if c in IMAGE_LEVEL] if name == "mgs-and-lesions" else []
    if not lesion_level:
        raise ValueError(f"The {name} mixture needs at least one lesion-level collection of {LESION_LEVEL}.")
    parts = []
    for collection in lesion_level:
        lesions = load_mammography(collection, data_dirs[collection], "lesions", split, cache_dir)
        lesions = lesions.filter(lambda is_background: not is_background, input_columns="is_background")
        lesions = lesions.select_columns(["image", "image_id", "patient_id", "crop_box"])
        parts.append(lesions.add_column("source", [collection] * len(lesions)).cast(MIXTURE_FEATURES))
    for collection in image_level:
        images = load_mammography(collection, data_dirs[collection], "images", split, cache_dir)
        parts.append(random_crops(images, collection, crop_size, crops_per_image, seed))
    return datasets.concatenate_datasets(parts).shuffle(seed=seed)
