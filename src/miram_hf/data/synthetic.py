"""A procedural mammogram phantom: the built-in data when no collection is given.

Reproducible from a seed: a breast-shaped region of power-law (1/f^beta, beta about 3) anatomical texture, an
optional pectoral muscle (MLO), masses with circumscribed, microlobulated, ill-defined or spiculated margins, and
clusters of microcalcifications, benign (few, round, regular) or malignant (many, fine, pleomorphic, linear). The
labels follow CBIS-DDSM's lesion tasks: four pathology classes and the five mass-margin atoms.

Each phantom also holds fine-detail findings, a task for MIRAM's question (does reconstructing finer scales teach
finer detail?): a cluster of specks one native pixel across, either dots or short lines of three pixels with the same
brightness in all (`label_fine_detail`). Once a crop is shrunk to a model's input by about 3x the two look alike;
at twice that size they differ. They carry no pathology (-1) and stay out of the four-class task.

With `film_scan=True` a phantom looks like a digitised film (CBIS-DDSM, MIAS): a grey film base with a gradient and
scanner noise, a dark film edge, scanner frame lines along one to three edges of the film that touch the breast, a
burned-in view label (rotated, sometimes mirrored) and tape marks. These are what the processor's breast
segmentation must leave out; the breast mask stays the true one.
"""

from dataclasses import dataclass, field

import datasets
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..processing.patches import Box
from .common import (
    IMAGE_MALIGNANCY,
    MARGIN_NAMES,
    PATHOLOGY_NAMES,
    CollectionImage,
    Lesion,
    MammographyBuilder,
    MammographyConfig,
    SkipReport,
    image_malignancy,
)

BITS_STORED = 16
TOP = 2**BITS_STORED - 1
FINE_DETAIL_NAMES = ("dotted", "linear")
FINE_DETAIL_LABEL = {"label_fine_detail": datasets.ClassLabel(names=list(FINE_DETAIL_NAMES))}


@dataclass
class PhantomLesion:
    box: tuple[int, int, int, int]  # (top, left, bottom, right), bottom and right exclusive
    mask: np.ndarray  # boolean, the size of the box
    pathology: int  # index into PATHOLOGY_NAMES; -1 for a fine-detail finding
    mass_margins: list[int] = field(default_factory=list)  # indices into MARGIN_NAMES; empty for calcifications
    fine_detail: int = -1  # index into FINE_DETAIL_NAMES for a fine-detail finding, -1 for the others


@dataclass
class Phantom:
    image: np.ndarray  # (height, width) uint16, denser is brighter
    breast_mask: np.ndarray  # boolean
    laterality: str  # "L": chest wall on the left of the image; "R": on the right
    view: str  # "CC" | "MLO"
    lesions: list[PhantomLesion]


def power_law_texture(shape: tuple[int, int], beta: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise whose power spectrum falls as 1/f^beta (breast parenchyma: beta about 3), zero mean, unit std."""
    rows = np.fft.fftfreq(shape[0])[:, None]
    columns = np.fft.rfftfreq(shape[1])[None, :]
    frequency = np.sqrt(rows**2 + columns**2)
    frequency[0, 0] = 1.0 / max(shape)
    spectrum = (rng.standard_normal(frequency.shape) + 1j * rng.standard_normal(frequency.shape)) * frequency ** (
        -beta / 2
    )
    spectrum[0, 0] = 0
    texture = np.fft.irfft2(spectrum, s=shape)
    return (texture - texture.mean()) / texture.std()


def _breast_region(
    height: int, width: int, view: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(breast mask, tissue thickness in [0, 1], pectoral muscle mask) with the chest wall on the left."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    depth = rng.uniform(0.7, 0.9) * width
    half_height = rng.uniform(0.38, 0.46) * height
    centre = height * rng.uniform(0.45, 0.55)
    radius = (x / depth) ** 2 + ((y - centre) / half_height) ** 2
    mask = radius < 1
    thickness = np.clip(1 - radius, 0, 1) ** 0.35  # compressed breast: thin only near the skin line
    pectoral = (x < 0.25 * width * (1 - y / (0.6 * height))) & (y < 0.6 * height) & (view == "MLO")
    return mask | pectoral, thickness, pectoral


def _place(height: int, width: int, size: int, mask: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of a size x size box whose centre lies well inside the breast."""
    for _ in range(200):
        top, left = int(rng.integers(0, height - size)), int(rng.integers(0, width - size))
        if mask[top + size // 2, left + size // 2] and mask[top, left + size // 2] and mask[top + size - 1, left]:
            return top, left
    return (height - size) // 2, 0


def _mass(size: int, malignant: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(added density, mask, margin labels) of a mass in a size x size box."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) - (size - 1) / 2
    angle, distance = np.arctan2(y, x), np.hypot(x, y)
    radius = size * rng.uniform(0.18, 0.24)
    if malignant and rng.random() < 0.6:  # spiculated: an irregular core with thin radiating spicules
        core = radius * (1 + 0.15 * np.sin(3 * angle + rng.uniform(0, 6.28)))
        density = np.clip((core - distance) / 2, 0, 1)
        for spicule in rng.uniform(0, 2 * np.pi, int(rng.integers(8, 16))):
            along = x * np.cos(spicule) + y * np.sin(spicule)
            across = np.abs(-x * np.sin(spicule) + y * np.cos(spicule))
            length = radius * rng.uniform(1.6, 2.3)
            density = np.maximum(density, ((along > 0) & (along < length) & (across < 1.0)) * (1 - along / length))
        margins = [MARGIN_NAMES.index("spiculated")]
    elif malignant:  # ill-defined: a soft, blurred edge
        density = np.clip(1.2 - distance / (1.4 * radius), 0, 1) ** 1.5
        margins = [MARGIN_NAMES.index("ill_defined")]
    elif rng.random() < 0.6:  # circumscribed: a sharp, smooth oval
        stretch = rng.uniform(0.75, 1.0)
        density = np.clip((radius - np.hypot(x, y / stretch)) / 0.8, 0, 1)
        margins = [MARGIN_NAMES.index("circumscribed")]
    else:  # microlobulated: small undulations on a sharp edge
        lobes = radius * (1 + 0.12 * np.sin(int(rng.integers(5, 9)) * angle))
        density = np.clip((lobes - distance) / 0.8, 0, 1)
        margins = [MARGIN_NAMES.index("microlobulated")]
    return density, density > 0.05, margins


def _calcifications(size: int, malignant: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(added density, mask) of a cluster: benign = a few round, even, coarse specks; malignant = many fine ones of
    varied size and shape, some linear."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    density = np.zeros((size, size), dtype=np.float32)
    count = int(rng.integers(10, 22)) if malignant else int(rng.integers(3, 7))
    spread = size * (0.2 if malignant else 0.22)  # standard deviation of the speck positions
    for _ in range(count):
        cy, cx = np.clip(rng.normal(size / 2, spread, 2), 3, size - 4)
        if malignant:
            radius = rng.uniform(0.4, 0.9)
            elongation, angle = rng.uniform(1, 2.5), rng.uniform(0, np.pi)
            u = (x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)
            v = -(x - cx) * np.sin(angle) + (y - cy) * np.cos(angle)
            speck = np.exp(-((u / elongation) ** 2 + v**2) / (2 * radius**2))
        else:
            radius = rng.uniform(1.8, 2.4)
            speck = np.clip(radius + 0.5 - np.hypot(x - cx, y - cy), 0, 1)
        density = np.maximum(density, speck)
    return density, density > 0.5


def _fine_detail_finding(size: int, linear: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(added density, mask) of a cluster of specks one native pixel wide spread over a size x size box: dots, or
    lines three pixels long in a random one of four directions, each speck the same total brightness. The count is
    drawn alike for both kinds: only the shape, finer than a pixel of a 3x smaller image, tells them apart."""
    density = np.zeros((size, size), dtype=np.float32)
    margin = max(2, size // 10)
    for _ in range(int(rng.integers(10, 17))):
        row, column = (int(value) for value in rng.integers(margin, size - margin, 2))
        if linear:
            step_row, step_column = ((0, 1), (1, 0), (1, 1), (1, -1))[int(rng.integers(4))]
            for offset in (-1, 0, 1):
                density[row + offset * step_row, column + offset * step_column] += 1 / 3
        else:
            density[row, column] += 1.0
    return density, density > 0


def _frame_lines(intensity: np.ndarray, mask: np.ndarray, chest_wall: int, rng: np.random.Generator) -> None:
    """Bright scanner frame lines, 0.6-2% of the short side thick, along one to three edges of the film: the
    chest-wall edge (through the breast), the top and bottom edges (across the breast's first or last rows) or the
    far edge (near the film's border). At least one touches the breast."""
    height, width = intensity.shape
    rows = np.flatnonzero(mask.any(axis=1))
    edges = list(rng.choice(["chest_wall", "top", "bottom", "far"], size=int(rng.integers(1, 4)), replace=False))
    if edges == ["far"]:
        edges = ["chest_wall"]
    for edge in edges:
        thickness = max(2, round(rng.uniform(0.006, 0.02) * min(height, width)))
        offset = int(rng.integers(0, max(1, round(0.02 * min(height, width)))))
        brightness = rng.uniform(0.85, 1.0)
        if edge == "top":
            start = max(0, int(rows[0]) - thickness // 2)
            intensity[start : start + thickness] = brightness
        elif edge == "bottom":
            end = min(height, int(rows[-1]) + thickness // 2 + 1)
            intensity[end - thickness : end] = brightness
        else:
            near_chest_wall = (edge == "chest_wall") == (chest_wall == 0)
            start = offset if near_chest_wall else width - offset - thickness
            intensity[:, start : start + thickness] = brightness


def _label_text(text: str, height: int, rng: np.random.Generator) -> np.ndarray:
    """Burned-in text `height` pixels tall as a boolean mask: rotated by a quarter turn or none plus up to 10
    degrees, mirrored half the time (a label read through the film's back)."""
    font = ImageFont.load_default(size=height)
    left, top, right, bottom = font.getbbox(text)
    canvas = Image.new("L", (right - left + 4, bottom - top + 4))
    ImageDraw.Draw(canvas).text((2 - left, 2 - top), text, fill=255, font=font)
    if rng.random() < 0.5:
        canvas = canvas.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    angle = 90 * int(rng.integers(4)) + rng.uniform(-10, 10)
    return np.asarray(canvas.rotate(angle, expand=True, resample=Image.Resampling.BILINEAR)) > 127


def _place_outside(mask: np.ndarray, shape: tuple[int, int], rng: np.random.Generator, margin: int) -> tuple | None:
    """The top-left corner of a `shape` box at least `margin` pixels from the breast, or None when none is found."""
    height, width = mask.shape
    if shape[0] >= height or shape[1] >= width:
        return None
    for _ in range(200):
        top, left = int(rng.integers(0, height - shape[0])), int(rng.integers(0, width - shape[1]))
        around = mask[max(0, top - margin) : top + shape[0] + margin, max(0, left - margin) : left + shape[1] + margin]
        if not around.any():
            return top, left
    return None


def _film_scan(
    intensity: np.ndarray, mask: np.ndarray, laterality: str, view: str, rng: np.random.Generator
) -> np.ndarray:
    """`intensity` (chest wall on the `laterality` side, in [0, 1]) as a digitised film (see the module's
    description)."""
    height, width = intensity.shape
    chest_wall = 0 if laterality == "L" else width - 1
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(0.08, 0.2) + rng.uniform(-0.03, 0.03) * (x / width + y / height - 1)  # film base, uneven
    film = base + (1 - base) * intensity
    margin = max(1, round(0.01 * min(height, width)))
    for _ in range(int(rng.integers(1, 3))):  # translucent tape, kept off the breast
        strip = np.full((round(rng.uniform(0.15, 0.3) * height), round(rng.uniform(0.04, 0.07) * width)), 255, np.uint8)
        tape = np.asarray(Image.fromarray(strip).rotate(rng.uniform(-30, 30), expand=True)) > 127
        corner = _place_outside(mask, tape.shape, rng, margin)
        if corner is not None:
            region = film[corner[0] : corner[0] + tape.shape[0], corner[1] : corner[1] + tape.shape[1]]
            region[tape] += rng.uniform(0.15, 0.3)
    label = _label_text(f"{laterality}{view}", max(8, round(rng.uniform(0.04, 0.07) * height)), rng)
    corner = _place_outside(mask, label.shape, rng, margin)
    if corner is not None:
        film[corner[0] : corner[0] + label.shape[0], corner[1] : corner[1] + label.shape[1]][label] = rng.uniform(
            0.9, 1.0
        )
    _frame_lines(film, mask, chest_wall, rng)
    film += rng.normal(0, rng.uniform(0.01, 0.025), film.shape)  # scanner noise
    edge = round(rng.uniform(0.005, 0.03) * height)  # beyond the film's top or bottom edge: black
    rows = slice(0, edge) if rng.random() < 0.5 else slice(height - edge, height)
    film[rows][~mask[rows]] = 0
    return np.clip(film, 0, 1)


def generate_phantom(
    seed: int,
    height: int = 512,
    width: int = 384,
    max_lesions: int = 2,
    fine_detail_findings: int = 1,
    film_scan: bool = False,
) -> Phantom:
    """One phantom mammogram from `seed` (same seed, same image), with `fine_detail_findings` fine-detail clusters
    besides its lesions (drawn from a generator of their own, so that the rest of the phantom does not depend on
    their number), as a digitised film with `film_scan` (artefacts from a generator of their own too)."""
    rng = np.random.default_rng(seed)
    laterality, view = ("L", "R")[int(rng.integers(2))], ("CC", "MLO")[int(rng.integers(2))]
    mask, thickness, pectoral = _breast_region(height, width, view, rng)
    texture = power_law_texture((height, width), beta=rng.uniform(2.8, 3.2), rng=rng)
    density = 0.55 * thickness + 0.12 * texture * thickness + 0.2 * pectoral

    lesions = []
    for _ in range(int(rng.integers(1, max_lesions + 1))):
        pathology = int(rng.integers(len(PATHOLOGY_NAMES)))
        malignant = pathology in (1, 3)
        size = int(min(height, width) * rng.uniform(0.14, 0.2))
        top, left = _place(height, width, size, mask, rng)
        if pathology < 2:
            added, lesion_mask, margins = _mass(size, malignant, rng)
            density[top : top + size, left : left + size] += 0.25 * added
        else:
            added, lesion_mask = _calcifications(size, malignant, rng)
            margins = []
            density[top : top + size, left : left + size] += 0.45 * added
        rows, columns = np.nonzero(lesion_mask)
        box = (
            top + int(rows.min()),
            left + int(columns.min()),
            top + int(rows.max()) + 1,
            left + int(columns.max()) + 1,
        )
        local = lesion_mask[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
        lesions.append(PhantomLesion(box, local, pathology, margins))
    fine_rng = np.random.default_rng([seed, 1])
    for _ in range(fine_detail_findings):
        linear = int(fine_rng.integers(2))
        size = int(min(height, width) * 0.25)
        top, left = _place(height, width, size, mask, fine_rng)
        added, lesion_mask = _fine_detail_finding(size, bool(linear), fine_rng)
        density[top : top + size, left : left + size] += 0.3 * added
        rows, columns = np.nonzero(lesion_mask)
        box = (top + int(rows.min()), left + int(columns.min()), top + int(rows.max()) + 1,
               left + int(columns.max()) + 1)  # fmt: skip
        local = lesion_mask[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
        lesions.append(PhantomLesion(box, local, -1, [], fine_detail=linear))

    density = np.where(mask, density, 0.0) + rng.normal(0, 0.004, (height, width))  # quantum noise everywhere
    intensity = np.clip(0.005 + density, 0, 1)
    if laterality == "R":
        intensity, mask = intensity[:, ::-1].copy(), mask[:, ::-1].copy()
        lesions = [_mirror(lesion, width) for lesion in lesions]
    if film_scan:
        intensity = _film_scan(intensity, mask, laterality, view, np.random.default_rng([seed, 2]))
    return Phantom((intensity * TOP).round().astype(np.uint16), mask, laterality, view, lesions)


def phantom_crops(sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    """16-bit crops of phantom tissue, one of each (rows, columns) size, each from the phantom of its index (seed) at
    twice its size: breast tissue with some of the breast's edge and background, as the loader benchmarks and the
    augmentation tests take them."""
    crops = []
    for seed, (rows, columns) in enumerate(sizes):
        image = generate_phantom(seed, 2 * rows, 2 * columns, max_lesions=1, fine_detail_findings=0).image
        crops.append(image[rows // 2 : rows // 2 + rows, :columns].copy())
    return crops


def _mirror(lesion: PhantomLesion, width: int) -> PhantomLesion:
    top, left, bottom, right = lesion.box
    return PhantomLesion(
        (top, width - right, bottom, width - left),
        lesion.mask[:, ::-1].copy(),
        lesion.pathology,
        lesion.mass_margins,
        lesion.fine_detail,
    )


@dataclass
class SyntheticConfig(MammographyConfig):
    """`images` or `lesions` of `num_images` phantoms (one patient each) drawn from `seed`; `validation_fraction` and
    `test_fraction` of the patients go to those splits. Each phantom holds `fine_detail_findings` fine-detail
    clusters (`label_fine_detail`) besides at most `max_lesions` lesions, and with `film_scan` the artefacts of a
    digitised film (frame lines, a burned-in label, tape, a grey noisy film base). Lesion crops add `context` of the
    lesion's size on every side and are at least `min_crop_size` pixels (see `MammographyConfig`)."""

    num_images: int = 64
    seed: int = 0
    height: int = 512
    width: int = 384
    max_lesions: int = 2
    fine_detail_findings: int = 1
    film_scan: bool = False
    validation_fraction: float = 0.125
    test_fraction: float = 0.125

    def validate(self) -> None:
        if self.num_images < 3:
            raise ValueError(f"num_images must be at least 3 (one per split), got {self.num_images}.")
        if not 0 <= self.validation_fraction + self.test_fraction < 1:
            raise ValueError("validation_fraction + test_fraction must be in [0, 1).")


class SyntheticMammography(MammographyBuilder):
    """The synthetic phantom with CBIS-DDSM's configs and label columns: what runs when no data is given."""

    BUILDER_CONFIG_CLASS = SyntheticConfig
    BUILDER_CONFIGS = [SyntheticConfig(name="images"), SyntheticConfig(name="lesions")]
    DEFAULT_CONFIG_NAME = "lesions"

    COLLECTION = "synthetic"
    IMAGE_COLUMNS = IMAGE_MALIGNANCY
    LESION_COLUMNS = FINE_DETAIL_LABEL

    def _split_sources(self) -> tuple[dict[str, dict], list[tuple[str, str]]]:
        config = self.config
        seeds = [config.seed * 1_000_003 + i for i in range(config.num_images)]
        n_test = max(1, round(config.test_fraction * len(seeds)))
        n_validation = max(1, round(config.validation_fraction * len(seeds)))
        splits = {
            "test": seeds[:n_test],
            "validation": seeds[n_test : n_test + n_validation],
            "train": seeds[n_test + n_validation :],
        }
        return {name: {"seeds": chunk} for name, chunk in splits.items()}, []

    def _read_images(self, report: SkipReport, seeds: list[int]):
        config = self.config
        for seed in seeds:
            phantom = generate_phantom(
                seed, config.height, config.width, config.max_lesions, config.fine_detail_findings, config.film_scan
            )
            lesions = [
                Lesion(Box(*lesion.box), lesion.mask, {"label_pathology": lesion.pathology,
                       "label_mass_margins": lesion.mass_margins, "label_fine_detail": lesion.fine_detail})
                for lesion in phantom.lesions
            ]  # fmt: skip
            yield CollectionImage(phantom.image, f"synthetic_{seed}", f"SYN_{seed}", phantom.laterality, phantom.view,
                                  {"label_malignant": image_malignancy(lesions)}, lesions)  # fmt: skip


__all__ = [
    "FINE_DETAIL_NAMES",
    "Phantom",
    "PhantomLesion",
    "SyntheticConfig",
    "SyntheticMammography",
    "generate_phantom",
    "phantom_crops",
    "power_law_texture",
]
