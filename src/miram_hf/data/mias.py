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
from ..processing.reading import MammogramReadError, read_mammogram
from .common import (
    MARGIN_NAMES,
    PatientSplitBuilder,
    SkipReport,
    background_crop_rows,
    collection_features,
    encode_mask,
    lesion_crop_row,
    patient_split,
)

SIZE = 1024
MARGINS = {"CIRC": "circumscribed", "SPIC": "spiculated", "MISC": "ill_defined"}  # MISC: "other, ill-defined masses"
EXTRA_COLUMNS = {"mias_class": datasets.Value("string"), "severity": datasets.Value("string")}
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
    def _info(self) -> datasets.DatasetInfo:
        features = collection_features(self.config.name, EXTRA_COLUMNS)
        if self.config.name == "images":
            features["background_tissue"] = datasets.Value("string")
            features["image_label"] = datasets.Value("string")  # normal | benign | malignant
            features.update(IMAGE_LABELS)
        rule = self.config.split_rule("the worst finding (normal, benign, malignant)")
        return datasets.DatasetInfo(description=f"{__doc__}\n{rule}", features=features)

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        root = Path(self.config.data_dir) if self.config.data_dir else None
        info = next(iter(sorted(root.rglob("Info.txt"))), None) if root and root.is_dir() else None
        if info is None:
            raise ValueError(
                f"MIAS data_dir {root} must hold Info.txt and the images mdb001.pgm ... mdb322.pgm (in the same folder "
                "or below it)."
            )
        findings, problems = parse_info(info)
        worst = {}
        for reference, items in findings.items():
            worst[_patient(reference)] = max(worst.get(_patient(reference), 0), worst_finding(items))
        assignment = patient_split(worst, self.config.fractions, self.config.split_seed)
        images = {path.stem: path for path in root.rglob("mdb*.pgm")}
        return [
            datasets.SplitGenerator(
                name=split,
                gen_kwargs={
                    "findings": {r: f for r, f in findings.items() if assignment[_patient(r)] == split},
                    "images": images,
                    "problems": problems if split == "train" else [],
                },
            )
            for split in self.config.fractions
        ]

    def _generate_examples(self, findings: dict, images: dict, problems: list):
        report = SkipReport("MIAS", strict=self.config.strict)
        for where, reason in problems:
            report.skip(where, reason)
        for reference, items in sorted(findings.items()):
            if reference not in images:
                report.skip(reference, "image file not found")
                continue
            try:
                pixels = read_mammogram(images[reference]).pixel_array
            except MammogramReadError as error:
                report.skip(reference, str(error))
                continue
            common = {
                "image_id": reference,
                "patient_id": _patient(reference),
                "laterality": "L" if int(reference[3:]) % 2 == 0 else "R",
                "view": "MLO",
            }
            located = [(item, item.box()) for item in items if item.mias_class != "NORM"]
            for item, box in located:
                if box is None:
                    report.skip(reference, f"{item.mias_class} finding without coordinates: no crop or box")
            located = [(item, box) for item, box in located if box is not None]
            if self.config.name == "images":
                yield (
                    reference,
                    {
                        "image": pixels,
                        **common,
                        "background_tissue": items[0].background,
                        "image_label": IMAGE_CLASSES[worst_finding(items)],
                        "label_class": worst_finding(items),
                        "label_malignant": worst_finding(items) - 1,  # normal: -1
                        "label_density": DENSITIES.get(items[0].background, -1),
                        "lesions": [_lesion_item(item, box) for item, box in located],
                    },
                )
                continue
            for index, (item, box) in enumerate(located):
                yield (
                    f"{reference}_{index}",
                    lesion_crop_row(
                        pixels,
                        box,
                        self.config.context,
                        self.config.min_crop_size,
                        **common,
                        label_pathology=item.label_pathology,
                        label_mass_margins=item.label_mass_margins,
                        mias_class=item.mias_class,
                        severity=item.severity,
                    ),
                )
            if all(item.centre is not None for item in items if item.mias_class != "NORM"):  # every lesion located
                yield from background_crop_rows(
                    pixels, [box for _, box in located], self.config, EXTRA_COLUMNS, **common
                )
        report.finish()


def _patient(reference: str) -> str:
    return f"MIAS_{(int(reference[3:]) + 1) // 2:03d}"


def _lesion_item(item: MiasFinding, box: Box) -> dict:
    (row, column), radius = item.centre, item.radius
    rows, columns = np.ogrid[box.top : box.bottom, box.left : box.right]
    disc = (rows - row) ** 2 + (columns - column) ** 2 <= radius**2
    return {
        "box": [box.top, box.left, box.bottom, box.right],
        "mask": encode_mask(disc),
        "label_pathology": item.label_pathology,
        "label_mass_margins": item.label_mass_margins,
        "mias_class": item.mias_class,
        "severity": item.severity,
    }


__all__ = ["Mias", "parse_info"]
