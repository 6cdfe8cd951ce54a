"""datasets builders for the mammography collections, the synthetic phantom and the pretraining mixtures."""

import datasets
import yaml

from .bcdr import Bcdr
from .cbis_ddsm import CbisDdsm
from .cmmd import Cmmd
from .common import IMAGE_FEATURES, LESION_FEATURES, MARGIN_NAMES, PATHOLOGY_NAMES, MammographyBuildError
from .csaw_m import CsawM
from .csaw_s import CsawS
from .folds import carve_validation, cross_validation_splits, finetuning_splits
from .inbreast import Inbreast
from .mias import Mias
from .mixtures import pretraining_mixture
from .synthetic import SyntheticMammography, generate_phantom
from .tiles import tile_images
from .vindr_mammo import VindrMammo

TILE_OPTIONS = ("tile_size", "overlap", "max_background")
# Collection name -> builder.
BUILDERS = {
    "bcdr": Bcdr,
    "cbis-ddsm": CbisDdsm,
    "cmmd": Cmmd,
    "csaw-m": CsawM,
    "csaw-s": CsawS,
    "inbreast": Inbreast,
    "mias": Mias,
    "synthetic": SyntheticMammography,
    "vindr-mammo": VindrMammo,
}


def parse_dataset_options(text: str | None) -> dict:
    """The scripts' `--dataset_options key=value,key=value` as a collection config's fields, values read as YAML
    (`tile_size=96,background_crops_per_image=2` -> {"tile_size": 96, "background_crops_per_image": 2})."""
    items = [item.split("=", 1) for item in (text or "").split(",") if item]
    if any(len(item) != 2 for item in items):
        raise ValueError(f"--dataset_options is key=value,key=value; got {text!r}.")
    return {key.strip(): yaml.safe_load(value) for key, value in items}


def load_mammography(
    name: str,
    data_dir: str | None = None,
    config_name: str | None = None,
    split: str | None = None,
    cache_dir: str | None = None,
    strict: bool = False,
    **config_kwargs,
) -> datasets.Dataset | datasets.DatasetDict:
    """Build (once; later calls read the cache) and load a collection's `images`, `lesions` or `tiles` config.

    `data_dir` is the folder the collection was downloaded to (none for `synthetic`); `config_kwargs` set the
    config's own fields (e.g. `num_images=16` for `synthetic`; `tile_size`, `overlap`, `max_background` for `tiles`,
    which are cut from the `images` config). A `DatasetDict` of every non-empty split when `split` is None.
    """
    if name not in BUILDERS:
        raise ValueError(f"Unknown collection {name!r}; available now: {sorted(BUILDERS)}.")
    if config_name == "tiles":
        tile_options = {key: config_kwargs.pop(key) for key in TILE_OPTIONS if key in config_kwargs}
        images = load_mammography(name, data_dir, "images", split, cache_dir, strict, **config_kwargs)
        if isinstance(images, datasets.DatasetDict):
            return datasets.DatasetDict({key: tile_images(value, **tile_options) for key, value in images.items()})
        return tile_images(images, **tile_options)
    builder = BUILDERS[name](
        config_name=config_name, data_dir=data_dir, cache_dir=cache_dir, strict=strict, **config_kwargs
    )
    try:
        builder.download_and_prepare()
    except datasets.exceptions.DatasetGenerationError as error:
        if isinstance(error.__cause__, MammographyBuildError):  # strict mode: surface the file and the reason
            raise error.__cause__ from None
        raise
    if split is not None:
        return builder.as_dataset(split=split)
    # a small collection can leave a split empty (no lesion among its patients): datasets cannot load those
    return datasets.DatasetDict(
        {name: builder.as_dataset(split=name) for name, info in builder.info.splits.items() if info.num_examples}
    )


__all__ = [
    "TILE_OPTIONS",
    "carve_validation",
    "cross_validation_splits",
    "finetuning_splits",
    "BUILDERS",
    "Bcdr",
    "CbisDdsm",
    "Cmmd",
    "CsawM",
    "CsawS",
    "Inbreast",
    "MammographyBuildError",
    "Mias",
    "IMAGE_FEATURES",
    "LESION_FEATURES",
    "MARGIN_NAMES",
    "PATHOLOGY_NAMES",
    "SyntheticMammography",
    "generate_phantom",
    "load_mammography",
    "parse_dataset_options",
    "pretraining_mixture",
    "tile_images",
    "VindrMammo",
]
