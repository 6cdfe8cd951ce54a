"""VinDr-Mammo (PhysioNet, credentialed access) as a datasets builder.

`breast-level_annotations.csv` has one row per image (study_id, series_id, image_id, laterality, view_position,
height, width, breast_birads, breast_density, split: training | test, the official split) and
`finding_annotations.csv` one row per finding, with `finding_categories` a Python-list string such as
"['Mass', 'Skin Retraction']", `finding_birads` and a box (xmin, ymin, xmax, ymax; empty for No Finding). Images are
`images/<study_id>/<image_id>.dicom` (MONOCHROME1 and 2, multi-valued windows, padding: `read_mammogram` handles
them). Findings carry BI-RADS, not pathology: `label_pathology` is -1. Columns are read by name.
"""

import ast
import csv
from pathlib import Path

import datasets
import numpy as np

from ..processing.patches import Box
from .common import CollectionImage, Lesion, MammographyBuilder, SkipReport

SPLITS = {"training": "train", "test": "test"}


def _read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return [{key.strip(): (value or "").strip() for key, value in row.items()} for row in csv.DictReader(handle)]


def parse_findings(rows: list[dict], source: str) -> tuple[dict[str, list[Lesion]], list[tuple[str, str]]]:
    """image_id -> its findings with a box (the mask: all of it), and (row, reason) for rows that cannot be used."""
    findings, problems = {}, []
    for line, row in enumerate(rows, start=2):
        try:
            categories = [str(c).strip() for c in ast.literal_eval(row.get("finding_categories") or "[]")]
        except (ValueError, SyntaxError):
            problems.append((f"{source}:{line}", f"unreadable finding_categories {row.get('finding_categories')!r}"))
            continue
        if categories == ["No Finding"] or not row.get("xmin"):
            continue
        try:
            xmin, ymin, xmax, ymax = (float(row[key]) for key in ("xmin", "ymin", "xmax", "ymax"))
        except (KeyError, ValueError):
            problems.append((f"{source}:{line}", "unreadable box"))
            continue
        box = Box(int(np.floor(ymin)), int(np.floor(xmin)), int(np.ceil(ymax)), int(np.ceil(xmax)))
        if box.height <= 0 or box.width <= 0:
            problems.append(
                (f"{source}:{line}", f"empty box {row['xmin']}, {row['ymin']}, {row['xmax']}, {row['ymax']}")
            )
            continue
        columns = {"finding_categories": categories, "finding_birads": row.get("finding_birads", ""),
                   "label_pathology": -1, "label_mass_margins": []}  # fmt: skip
        findings.setdefault(row["image_id"], []).append(Lesion(box, np.ones((box.height, box.width), bool), columns))
    return findings, problems


class VindrMammo(MammographyBuilder):
    """VinDr-Mammo with its official training / test split."""

    COLLECTION = "VinDr-Mammo"
    ANNOTATIONS = ("breast-level_annotations.csv", "finding_annotations.csv")
    LAYOUT = f"{', '.join(ANNOTATIONS)} and images/<study_id>/<image_id>.dicom."
    IMAGE_COLUMNS = {"breast_birads": datasets.Value("string"), "breast_density": datasets.Value("string")}
    LESION_COLUMNS = {
        "finding_categories": datasets.List(datasets.Value("string")),
        "finding_birads": datasets.Value("string"),
    }

    def _split_sources(self) -> tuple[dict[str, dict], list[tuple[str, str]]]:
        root = self.data_root()
        if not all((root / name).is_file() for name in self.ANNOTATIONS) or not (root / "images").is_dir():
            raise self.layout_error(root)
        images = _read_rows(root / "breast-level_annotations.csv")
        findings, problems = parse_findings(_read_rows(root / "finding_annotations.csv"), "finding_annotations.csv")
        by_split = {}
        for line, row in enumerate(images, start=2):
            split = SPLITS.get(row.get("split", "").lower())
            if split is None:
                problems.append((f"breast-level_annotations.csv:{line}", f"unknown split {row.get('split')!r}"))
                continue
            by_split.setdefault(split, []).append(row)
        sources = {split: {"images": rows, "findings": findings, "root": root}
                   for split, rows in sorted(by_split.items())}  # fmt: skip
        return sources, problems

    def _read_images(self, report: SkipReport, images: list[dict], findings: dict, root: Path):
        for row in images:
            mammogram = report.read(root / "images" / row["study_id"] / f"{row['image_id']}.dicom")
            if mammogram is None:
                continue
            columns = {"breast_birads": row.get("breast_birads", ""), "breast_density": row.get("breast_density", "")}
            yield CollectionImage(
                mammogram.pixel_array,
                row["image_id"],
                row["study_id"],  # VinDr-Mammo identifies exams, not women
                row.get("laterality", "").upper()[:1],
                row.get("view_position", "").upper(),
                columns,
                findings.get(row["image_id"], []),
            )


__all__ = ["VindrMammo", "parse_findings"]
