"""datasets builders for the mammography collections, the synthetic phantom and the pretraining mixtures."""

import datasets

from .cbis_ddsm import CbisDdsm
from .common import IMAGE_FEATURES, LESION_FEATURES, MARGIN_NAMES, PATHOLOGY_NAMES, MammographyBuildError
from .inbreast import Inbreast
from .mias import Mias
from .synthetic import SyntheticMammography, generate_phantom

# Collection name -> builder. The other public collections (cmmd, vindr-mammo, csaw-m, csaw-s, bcdr)
# join here as their builders land.
BUILDERS = {"cbis-ddsm": CbisDdsm, "inbreast": Inbreast, "mias": Mias, "synthetic": SyntheticMammography}


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
    config's own fields (e.g. `num_images=16` for `synthetic`). A `DatasetDict` of every non-empty split when `split`
    is None.
    """
    if name not in BUILDERS:
        raise ValueError(f"Unknown collection {name!r}; available now: {sorted(BUILDERS)}.")
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
    "BUILDERS",
    "CbisDdsm",
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
]
