"""mini-MIAS as a datasets builder: 322 MLO mammograms, 1024x1024 8-bit PGM, with `Info.txt`.

`Info.txt` lines read `mdb001 G CIRC B 535 425 197`: reference, background tissue (F, G, D), class (CALC, CIRC,
SPIC, MISC, ARCH, ASYM, NORM), severity (B, M), and the centre (x, y, origin bottom-left) and radius of the
abnormality. NORM lines stop after the class; some CALC lines give a severity but no centre; a reference repeats for
each of its abnormalities; some copies start with a header line. Consecutive images (mdb001 and mdb002, ...) are the
two breasts of one woman, even numbers the left one. There is no official split: a patient-level split, stratified by
the worst finding and seeded, is made and written into the dataset info.
"""

from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np

from ..processing.patches import Box
from .common import MARGIN_NAMES, CollectionImage, Lesion, PatientSplitBuilder, SkipReport

SIZE = 1024
MARGINS = {"CIRC": "circumscribed", "SPIC": "spiculated", "MISC": "ill_defined"}  # MISC: "other, ill-defined masses"
# Whole-image labels of the VAE paper's MIAS tasks: the worst finding (normal, benign, malignant), benign against
# malignant among the abnormal images (normal ones -1), and the background tissue as density.
IMAGE_CLASSES = ("normal", "benign", "malignant")
DENSITIES = {"F": 0, "G": 1, "D": 2}
IMAGE_LABELS = {
    "label_class": datasets.ClassLabel(names=list(IMAGE_CLASSES)),
    "label_malignant": datasets.ClassLabel(names=["benign", "malignant"]),
    "label_density": datasets.ClassLabel(names=["fatty", "fatty_glandular", "dense_glandular"]),
}


@dataclass
class MiasFinding:
    background: str  # F (fatty), G (fatty-glandular), D (dense-glandular)
    mias_class: str
    severity: str  # "B" | "M" | "" (normal)
    centre: tuple[int, int] | None  # (row, column) from the top-left, None when Info.txt gives none
    radius: int | None

    @property
    def label_pathology(self) -> int:
        """The four CBIS-DDSM classes where they apply; -1 for normal, asymmetry and architectural distortion."""
        malignant = int(self.severity == "M")
        if self.mias_class == "CALC":
            return 2 + malignant
        return malignant if self.mias_class in MARGINS else -1

    @property
    def label_mass_margins(self) -> list[int]:
        return [MARGIN_NAMES.index(MARGINS[self.mias_class])] if self.mias_class in MARGINS else []

    def box(self) -> Box | None:
        if self.centre is None:
            return None
        (row, column), radius = self.centre, self.radius
        return Box(max(0, row - radius), max(0, column - radius), min(SIZE, row + radius), min(SIZE, column + radius))


def parse_info(path: Path) -> tuple[dict[str, list[MiasFinding]], list[tuple[str, str]]]:
    """Reference -> findings, and (line, reason) for lines that cannot be used."""
    findings: dict[str, list[MiasFinding]] = {}
    problems = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        tokens = line.split()
        if not tokens or tokens[0].upper() == "REFNUM":
            continue
        where = f"{path.name}:{number}"
        if len(tokens) < 3 or not tokens[0].startswith("mdb"):
            problems.append((where, f"not a MIAS line: {line.strip()!r}"))
            continue
        reference, mias_class = tokens[0], tokens[2].upper()
        severity = tokens[3].upper() if len(tokens) > 3 else ""
        centre = radius = None
        if len(tokens) >= 7:
            try:
                x, y, radius = int(tokens[4]), int(tokens[5]), int(float(tokens[6]))
                centre = (SIZE - y, x)  # Info.txt counts y from the bottom
            except ValueError:
                problems.append((where, f"unreadable coordinates {tokens[4:7]}"))
        findings.setdefault(reference, []).append(MiasFinding(tokens[1].upper(), mias_class, severity, centre, radius))
    return findings, problems


def worst_finding(findings: list[MiasFinding]) -> int:
    """0 normal, 1 benign, 2 malignant."""
    return max(("", "B", "M").index(f.severity) if f.severity in ("B", "M") else 0 for f in findings)


class Mias(PatientSplitBuilder):
    COLLECTION = "MIAS"
    LAYOUT = "Info.txt and the images mdb001.pgm ... mdb322.pgm (in the same folder or below it)."
    STRATIFIED_BY = "the worst finding (normal, benign, malignant)"
    IMAGE_COLUMNS = {
        "background_tissue": datasets.Value("string"),
        "image_label": datasets.Value("string"),  # normal | benign | malignant
        **IMAGE_LABELS,
    }
    LESION_COLUMNS = {"mias_class": datasets.Value("string"), "severity": datasets.Value("string")}

    def _split_sources(self) -> tuple[dict[str, dict], list[tuple[str, str]]]:
        root = self.data_root()
        info = next(iter(sorted(root.rglob("Info.txt"))), None)
        if info is None:
            raise self.layout_error(root)
        findings, problems = parse_info(info)
        worst = {}
        for reference, items in findings.items():
            worst[_patient(reference)] = max(worst.get(_patient(reference), 0), worst_finding(items))
        images = {path.stem: path for path in root.rglob("mdb*.pgm")}
        sources = {
            split: {"findings": {r: f for r, f in findings.items() if _patient(r) in members}, "images": images}
            for split, members in self.split_patients(worst).items()
        }
        return sources, problems

    def _read_images(self, report: SkipReport, findings: dict, images: dict):
        for reference, items in sorted(findings.items()):
            if reference not in images:
                report.skip(reference, "image file not found")
                continue
            mammogram = report.read(images[reference], where=reference)
            if mammogram is None:
                continue
            abnormal = [item for item in items if item.mias_class != "NORM"]
            for item in abnormal:
                if item.centre is None:
                    report.skip(reference, f"{item.mias_class} finding without coordinates: no crop or box")
            lesions = [_lesion(item) for item in abnormal if item.centre is not None]
            worst = worst_finding(items)
            columns = {
                "background_tissue": items[0].background,
                "image_label": IMAGE_CLASSES[worst],
                "label_class": worst,
                "label_malignant": worst - 1,  # normal: -1
                "label_density": DENSITIES.get(items[0].background, -1),
            }
            laterality = "L" if int(reference[3:]) % 2 == 0 else "R"
            yield CollectionImage(mammogram.pixel_array, reference, _patient(reference), laterality, "MLO", columns,
                                  lesions, all_lesions_located=len(lesions) == len(abnormal))  # fmt: skip


def _patient(reference: str) -> str:
    return f"MIAS_{(int(reference[3:]) + 1) // 2:03d}"


def _lesion(item: MiasFinding) -> Lesion:
    """A located finding: the box around its circle, the disc inside the box."""
    box = item.box()
    (row, column), radius = item.centre, item.radius
    rows, columns = np.ogrid[box.top : box.bottom, box.left : box.right]
    disc = (rows - row) ** 2 + (columns - column) ** 2 <= radius**2
    return Lesion(box, disc, {"label_pathology": item.label_pathology, "label_mass_margins": item.label_mass_margins,
                              "mias_class": item.mias_class, "severity": item.severity})  # fmt: skip


__all__ = ["Mias", "parse_info"]
