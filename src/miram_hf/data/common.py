"""What the collection builders share: the column schemas (so that every collection's `images` and `lesions`
configs have the same columns and a model trained on one reads another), the base config and builder.

Images are stored as `datasets.Image()`: a 2-D uint16 array becomes a 16-bit TIFF and decodes exactly (PIL mode
I;16); nothing is cut to 8 bits.
"""

import io
import logging
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

from ..processing.breast_segmentation import breast_mask
from ..processing.image_processing_mammography import to_array
from ..processing.patches import Box, lesion_crop_box, random_background_boxes
from ..processing.reading import Mammogram, MammogramReadError, read_mammogram

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


def image_malignancy(lesions: list["Lesion"]) -> int:
    """An image's `label_malignant`: 1 when one of its lesions is malignant."""
    return int(any(lesion.columns["label_pathology"] in MALIGNANT_PATHOLOGIES for lesion in lesions))


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


@dataclass
class Lesion:
    """A finding on a mammogram: its `box` in the image, its `mask` inside the box, and its `columns`
    (`label_pathology`, `label_mass_margins` and the collection's own lesion columns)."""

    box: Box
    mask: np.ndarray
    columns: dict


@dataclass
class CollectionImage:
    """A mammogram a collection's reader hands to the base builder: its pixels, the columns that identify it, its
    image-level `columns` (the `images` config's own labels), its `lesions`, and whether `all_lesions_located`:
    background crops are cut only then, since a lesion without a box could lie inside one."""

    pixels: np.ndarray
    image_id: str
    patient_id: str
    laterality: str
    view: str
    columns: dict = field(default_factory=dict)
    lesions: list[Lesion] = field(default_factory=list)
    all_lesions_located: bool = True


class MammographyBuilder(datasets.GeneratorBasedBuilder):
    """One shape for every collection, as datasets' folder-based builders: class attributes say what differs, and a
    collection only reads its own files.

    - `COLLECTION` names it in messages; `LAYOUT` says what its data_dir must hold.
    - `IMAGE_COLUMNS`: the `images` rows' own columns; `LESION_COLUMNS`: each lesion's own columns, None for a
      collection with image-level labels only (its rows have no `lesions` list and it has no `lesions` config).
    - `_split_sources()` returns split -> the keyword arguments of `_read_images`, and (where, why) of the problems met
      while indexing the files (reported with the train split).
    - `_read_images(report, **source)` yields a `CollectionImage` for each usable mammogram and reports the others.

    The base writes the rows: in `images`, one per mammogram with its lesions; in `lesions`, a crop per lesion and
    the config's background crops. Its config is validated up front: datasets sets the fields given to the builder
    after the config is made."""

    BUILDER_CONFIG_CLASS = MammographyConfig
    BUILDER_CONFIGS = [MammographyConfig(name="images"), MammographyConfig(name="lesions")]
    DEFAULT_CONFIG_NAME = "lesions"
    COLLECTION: str
    LAYOUT = ""
    IMAGE_COLUMNS: dict = {}
    LESION_COLUMNS: dict | None = {}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.config.validate()

    def _info(self) -> datasets.DatasetInfo:
        if self.LESION_COLUMNS is None:
            features = {name: feature for name, feature in IMAGE_FEATURES.items() if name != "lesions"}
        else:
            features = collection_features(self.config.name, self.LESION_COLUMNS)
        if self.config.name == "images":
            features = {**features, **self.IMAGE_COLUMNS}
        return datasets.DatasetInfo(description=self._description(), features=datasets.Features(features))

    def _description(self) -> str:
        return sys.modules[type(self).__module__].__doc__

    def _split_sources(self) -> tuple[dict[str, dict], list[tuple[str, str]]]:
        raise NotImplementedError

    def _read_images(self, report: "SkipReport", **source) -> Iterator[CollectionImage]:
        raise NotImplementedError

    def data_root(self) -> Path:
        """The config's data_dir, or the error saying what it must hold."""
        root = Path(self.config.data_dir) if self.config.data_dir else None
        if root is None or not root.is_dir():
            raise self.layout_error(root)
        return root

    def layout_error(self, root: Path | None) -> ValueError:
        return ValueError(f"{self.COLLECTION} data_dir {root} must hold {self.LAYOUT}")

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        sources, problems = self._split_sources()
        reported_with = "train" if "train" in sources else next(iter(sources))
        return [
            datasets.SplitGenerator(
                name=split, gen_kwargs={**source, "problems": problems if split == reported_with else []}
            )
            for split, source in sources.items()
        ]

    def _generate_examples(self, problems: list[tuple[str, str]], **source) -> Iterator[tuple[str, dict]]:
        report = SkipReport(self.COLLECTION, strict=self.config.strict)
        for where, reason in problems:
            report.skip(where, reason)
        for image in self._read_images(report, **source):
            yield from self._rows(image)
        report.finish()

    def _rows(self, image: CollectionImage) -> Iterator[tuple[str, dict]]:
        identity = {"image_id": image.image_id, "patient_id": image.patient_id, "laterality": image.laterality,
                    "view": image.view}  # fmt: skip
        if self.config.name == "images":
            row = {"image": image.pixels, **identity, **image.columns}
            if self.LESION_COLUMNS is not None:
                row["lesions"] = [{"box": lesion.box.corners(), "mask": encode_mask(lesion.mask), **lesion.columns}
                                  for lesion in image.lesions]  # fmt: skip
            yield image.image_id, row
            return
        for index, lesion in enumerate(image.lesions):
            crop = lesion_crop_box(
                image.pixels.shape, lesion.box, self.config.context, min_size=self.config.min_crop_size
            )
            row = {"image": crop.crop(image.pixels), **identity, "crop_box": crop.corners(),
                   "lesion_box": lesion.box.corners(), "is_background": False, **lesion.columns}  # fmt: skip
            yield f"{image.image_id}_{index}", row
        if image.all_lesions_located:
            yield from self._background_rows(image, identity)

    def _background_rows(self, image: CollectionImage, identity: dict) -> Iterator[tuple[str, dict]]:
        """`background_crops_per_image` random `min_crop_size` crops inside the breast that touch no lesion, seeded
        by the image id; the lesion columns are left empty on them."""
        if not self.config.background_crops_per_image:
            return
        array, top_value = to_array(image.pixels)
        rng = np.random.default_rng(zlib.crc32(image.image_id.encode()))
        lesions = [lesion.box for lesion in image.lesions]
        boxes = random_background_boxes(breast_mask(array, top_value), self.config.min_crop_size,
                                        self.config.background_crops_per_image, lesions, rng)  # fmt: skip
        empty = {"label_pathology": -1, "label_mass_margins": []}
        for name, feature in self.LESION_COLUMNS.items():
            empty[name] = (
                [] if isinstance(feature, datasets.List) else -1 if isinstance(feature, datasets.ClassLabel) else None
            )
        for index, crop in enumerate(boxes):
            row = {"image": crop.crop(image.pixels), **identity, "crop_box": crop.corners(), "lesion_box": [],
                   "is_background": True, **empty}  # fmt: skip
            yield f"{image.image_id}_background_{index}", row


class PatientSplitBuilder(MammographyBuilder):
    """A collection without an official split (`PatientSplitConfig`): its patients are split by
    `split_patients`, stratified by what `STRATIFIED_BY` says, and the rule is written into the info."""

    BUILDER_CONFIG_CLASS = PatientSplitConfig
    BUILDER_CONFIGS = [PatientSplitConfig(name="images"), PatientSplitConfig(name="lesions")]
    STRATIFIED_BY: str

    def _description(self) -> str:
        return f"{super()._description()}\n{self.config.split_rule(self.STRATIFIED_BY)}"

    def split_patients(self, strata: dict[str, int]) -> dict[str, set[str]]:
        """Split -> its patients, from each patient's stratum (`patient_split`)."""
        assignment = patient_split(strata, self.config.fractions, self.config.split_seed)
        return {split: {patient for patient, chosen in assignment.items() if chosen == split}
                for split in self.config.fractions}  # fmt: skip


def collection_features(config_name: str, extras: dict) -> datasets.Features:
    """The shared schema of `images` or `lesions` plus a collection's own lesion attributes (`extras`): columns of a
    lesion row, and fields of each item of an image row's `lesions` list."""
    if config_name == "images":
        features = dict(IMAGE_FEATURES)
        features["lesions"] = datasets.List({**IMAGE_FEATURES["lesions"].feature, **extras})
        return datasets.Features(features)
    return datasets.Features({**LESION_FEATURES, **extras})


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

    def read(self, path: Path, where=None) -> Mammogram | None:
        """The mammogram at `path`, or None when it cannot be read: then skipped under the file and the reason, or under
        `where` (e.g. a CSV line) and a reason that names the file."""
        try:
            return read_mammogram(path)
        except MammogramReadError as error:
            self.skip(where or path, error.reason if where is None else str(error))
            return None

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
