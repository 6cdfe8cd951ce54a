"""What the collection builders share: the column schemas (so that every collection's `images` and `lesions`
configs have the same columns and a model trained on one reads another), the base config and builder.

Images are stored as `datasets.Image()`: a 2-D uint16 array becomes a 16-bit TIFF and decodes exactly (PIL mode
I;16); nothing is cut to 8 bits.
"""

import io
import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import datasets
import numpy as np
from PIL import Image

from ..processing.breast_segmentation import breast_mask
from ..processing.image_processing_mammography import to_array
from ..processing.patches import Box, lesion_crop_box, random_background_boxes

logger = logging.getLogger(__name__)

# CBIS-DDSM's lesion tasks (the MIRAM paper's): four pathology classes (BENIGN_WITHOUT_CALLBACK counts as benign) and
# the five atoms that mass-margin descriptions are made of.
PATHOLOGY_NAMES = ("benign_mass", "malignant_mass", "benign_calcification", "malignant_calcification")
MARGIN_NAMES = ("circumscribed", "ill_defined", "microlobulated", "obscured", "spiculated")

LESION_LABELS = {
    "label_pathology": datasets.ClassLabel(names=list(PATHOLOGY_NAMES)),
    "label_mass_margins": datasets.List(datasets.ClassLabel(names=list(MARGIN_NAMES))),
}

IMAGE_FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "image_id": datasets.Value("string"),
        "patient_id": datasets.Value("string"),
        "laterality": datasets.Value("string"),
        "view": datasets.Value("string"),
        "lesions": datasets.List(
            {
                "box": datasets.List(datasets.Value("int32")),  # top, left, bottom, right in the image
                "mask": datasets.Image(),  # the lesion's mask inside its box
                **LESION_LABELS,
            }
        ),
    }
)

# The whole-image label of collections whose lesions carry a pathology (CBIS-DDSM, the phantom): malignant when any
# of the image's lesions is, as the tiled-patch paper labels whole mammograms; CMMD's `label_malignant` has these names.
IMAGE_MALIGNANCY = {"label_malignant": datasets.ClassLabel(names=["benign", "malignant"])}
MALIGNANT_PATHOLOGIES = (PATHOLOGY_NAMES.index("malignant_mass"), PATHOLOGY_NAMES.index("malignant_calcification"))


def image_malignancy(lesions: list[dict]) -> int:
    """An image's `label_malignant`: 1 when one of its lesions is malignant."""
    return int(any(lesion["label_pathology"] in MALIGNANT_PATHOLOGIES for lesion in lesions))


LESION_FEATURES = datasets.Features(
    {
        "image": datasets.Image(),  # the crop, at native resolution and bit depth
        "image_id": datasets.Value("string"),
        "patient_id": datasets.Value("string"),
        "laterality": datasets.Value("string"),
        "view": datasets.Value("string"),
        "crop_box": datasets.List(datasets.Value("int32")),  # where the crop lies in the image
        "lesion_box": datasets.List(datasets.Value("int32")),  # where the lesion lies in the image
        "is_background": datasets.Value("bool"),  # a random crop of breast tissue away from the lesions
        **LESION_LABELS,  # -1 and [] on background crops
    }
)


@dataclass
class MammographyConfig(datasets.BuilderConfig):
    """What every collection's config has: `strict=False` skips an unreadable file or an inconsistent row and reports
    it at the end; `strict=True` raises at the first, naming it. `lesions` crops add `context` (a fraction of the
    lesion's size) on every side and are at least `min_crop_size` pixels; `background_crops_per_image` random crops
    of breast tissue away from the lesions are added per mammogram, flagged `is_background` (the MIRAM paper's
    pretraining uses both, after Shen et al.)."""

    strict: bool = False
    context: float = 0.2
    min_crop_size: int = 64
    background_crops_per_image: int = 0

    def validate(self) -> None:
        """Raise ValueError for inconsistent fields; collections with fields of their own extend it."""


@dataclass
class PatientSplitConfig(MammographyConfig):
    """For collections without an official split: `fractions` of the patients go to each split, stratified and
    shuffled by `split_seed` (`patient_split`)."""

    split_seed: int = 0
    fractions: dict = field(default_factory=lambda: {"train": 0.7, "validation": 0.1, "test": 0.2})

    def split_rule(self, stratified_by: str) -> str:
        """The split as written into the dataset info."""
        return f"Patient-level split stratified by {stratified_by}: {self.fractions}, seed {self.split_seed}."


class MammographyBuilder(datasets.GeneratorBasedBuilder):
    """`images` and `lesions` configs (collections with image-level labels only override BUILDER_CONFIGS). Validates
    its config up front: datasets sets the fields given to the builder after the config is made."""

    BUILDER_CONFIG_CLASS = MammographyConfig
    BUILDER_CONFIGS = [MammographyConfig(name="images"), MammographyConfig(name="lesions")]
    DEFAULT_CONFIG_NAME = "lesions"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.config.validate()


class PatientSplitBuilder(MammographyBuilder):
    """A collection without an official split (`PatientSplitConfig`)."""

    BUILDER_CONFIG_CLASS = PatientSplitConfig
    BUILDER_CONFIGS = [PatientSplitConfig(name="images"), PatientSplitConfig(name="lesions")]


def collection_features(config_name: str, extras: dict) -> datasets.Features:
    """The shared schema of `images` or `lesions` plus a collection's own lesion attributes (`extras`): columns of a
    lesion row, and fields of each item of an image row's `lesions` list."""
    if config_name == "images":
        features = dict(IMAGE_FEATURES)
        features["lesions"] = datasets.List({**IMAGE_FEATURES["lesions"].feature, **extras})
        return datasets.Features(features)
    return datasets.Features({**LESION_FEATURES, **extras})


def lesion_crop_row(pixels: np.ndarray, lesion: Box, context: float, min_size: int, **fields) -> dict:
    """A `lesions` row: the crop around `lesion` (with `context`, at least `min_size` pixels) and its boxes."""
    crop = lesion_crop_box(pixels.shape, lesion, context, min_size=min_size)
    return {
        "image": crop.crop(pixels),
        "crop_box": [crop.top, crop.left, crop.bottom, crop.right],
        "lesion_box": [lesion.top, lesion.left, lesion.bottom, lesion.right],
        "is_background": False,
        **fields,
    }


def background_crop_rows(
    pixels: np.ndarray, lesions: list[Box], config: "MammographyConfig", extra_columns: dict, **fields
) -> Iterator[tuple[str, dict]]:
    """(key, row) of `config.background_crops_per_image` random `min_crop_size` crops inside the breast that touch no
    lesion, seeded by the image id; the collection's `extra_columns` are left empty on them."""
    if not config.background_crops_per_image:
        return
    array, top_value = to_array(pixels)
    rng = np.random.default_rng(zlib.crc32(fields["image_id"].encode()))
    mask = breast_mask(array, top_value)
    boxes = random_background_boxes(mask, config.min_crop_size, config.background_crops_per_image, lesions, rng)
    empty = {name: [] if isinstance(feature, datasets.List) else None for name, feature in extra_columns.items()}
    for index, crop in enumerate(boxes):
        yield (
            f"{fields['image_id']}_background_{index}",
            {
                "image": crop.crop(pixels),
                **fields,
                "crop_box": [crop.top, crop.left, crop.bottom, crop.right],
                "lesion_box": [],
                "is_background": True,
                "label_pathology": -1,
                "label_mass_margins": [],
                **empty,
            },
        )


def patient_split(patient_labels: dict[str, int], fractions: dict[str, float], seed: int) -> dict[str, str]:
    """Patient -> split for a collection without an official one: no patient in two splits, each label (the
    patient's stratum, e.g. any malignant finding) spread over the splits in the given fractions, shuffled by `seed`."""
    if abs(sum(fractions.values()) - 1) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {fractions}.")
    rng = np.random.default_rng(seed)
    assignment = {}
    for label in sorted(set(patient_labels.values())):
        patients = sorted(p for p, value in patient_labels.items() if value == label)
        rng.shuffle(patients)
        edges = np.round(np.cumsum([0, *fractions.values()]) * len(patients)).astype(int)
        for name, start, end in zip(fractions, edges[:-1], edges[1:], strict=True):
            assignment.update(dict.fromkeys(patients[start:end], name))
    return assignment


class MammographyBuildError(ValueError):
    """A file or row a strict build cannot use; the message names it and says why."""


class SkipReport:
    """What a build skipped: with `strict`, the first problem raises `MammographyBuildError`; otherwise each one is
    counted and `finish()` logs them all (which file or row, why). Nothing is dropped silently."""

    def __init__(self, collection: str, strict: bool):
        self.collection, self.strict = collection, strict
        self.skipped: list[tuple[str, str]] = []

    def skip(self, where, reason: str) -> None:
        if self.strict:
            raise MammographyBuildError(f"{self.collection}: {where}: {reason}")
        self.skipped.append((str(where), reason))

    def finish(self) -> None:
        if self.skipped:
            lines = "\n".join(f"  {where}: {reason}" for where, reason in self.skipped)
            logger.warning("%s: skipped %d item(s):\n%s", self.collection, len(self.skipped), lines)


def encode_mask(mask: np.ndarray) -> dict:
    """A boolean mask as 8-bit PNG bytes (0 / 255). Arrays nested in a list of dicts reach datasets as Python lists
    and come back as 32-bit images; encoded bytes keep the mask a mask."""
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}
