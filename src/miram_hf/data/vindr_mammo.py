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
from ..processing.reading import MammogramReadError, read_mammogram
from .common import (
    MammographyBuilder,
    SkipReport,
    background_crop_rows,
    collection_features,
    encode_mask,
    lesion_crop_row,
)

SPLITS = {"training": "train", "test": "test"}
EXTRA_COLUMNS = {
    "finding_categories": datasets.List(datasets.Value("string")),
    "finding_birads": datasets.Value("string"),
}


def _read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return [{key.strip(): (value or "").strip() for key, value in row.items()} for row in csv.DictReader(handle)]


def parse_findings(rows: list[dict], source: str) -> tuple[dict[str, list[dict]], list[tuple[str, str]]]:
    """image_id -> its findings with a box, and (row, reason) for rows that cannot be used."""
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
        findings.setdefault(row["image_id"], []).append(
            {"box": box, "finding_categories": categories, "finding_birads": row.get("finding_birads", "")}
        )
    return findings, problems


class VindrMammo(MammographyBuilder):
    """VinDr-Mammo with its official training / test split."""

    def _info(self) -> datasets.DatasetInfo:
        features = collection_features(self.config.name, EXTRA_COLUMNS)
        if self.config.name == "images":
            features["breast_birads"] = datasets.Value("string")
            features["breast_density"] = datasets.Value("string")
        return datasets.DatasetInfo(description=__doc__, features=features)

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        root = Path(self.config.data_dir) if self.config.data_dir else None
        needed = ("breast-level_annotations.csv", "finding_annotations.csv")
        if root is None or not all((root / name).is_file() for name in needed) or not (root / "images").is_dir():
            raise ValueError(
                f"VinDr-Mammo data_dir {root} must hold {', '.join(needed)} and images/<study_id>/<image_id>.dicom."
            )
        images = _read_rows(root / "breast-level_annotations.csv")
        findings, problems = parse_findings(_read_rows(root / "finding_annotations.csv"), "finding_annotations.csv")
        by_split = {}
        for line, row in enumerate(images, start=2):
            split = SPLITS.get(row.get("split", "").lower())
            if split is None:
                problems.append((f"breast-level_annotations.csv:{line}", f"unknown split {row.get('split')!r}"))
                continue
            by_split.setdefault(split, []).append(row)
        return [
            datasets.SplitGenerator(
                name=split,
                gen_kwargs={
                    "images": rows,
                    "findings": findings,
                    "root": root,
                    "problems": problems if split == "train" else [],
                },
            )
            for split, rows in sorted(by_split.items())
        ]

    def _generate_examples(self, images: list[dict], findings: dict, root: Path, problems: list):
        report = SkipReport("VinDr-Mammo", strict=self.config.strict)
        for where, reason in problems:
            report.skip(where, reason)
        for row in images:
            path = root / "images" / row["study_id"] / f"{row['image_id']}.dicom"
            try:
                pixels = read_mammogram(path).pixel_array
            except MammogramReadError as error:
                report.skip(path, error.reason)
                continue
            common = {
                "image_id": row["image_id"],
                "patient_id": row["study_id"],  # VinDr-Mammo identifies exams, not women
                "laterality": row.get("laterality", "").upper()[:1],
                "view": row.get("view_position", "").upper(),
            }
            located = findings.get(row["image_id"], [])
            labels = {"label_pathology": -1, "label_mass_margins": []}
            if self.config.name == "images":
                yield (
                    row["image_id"],
                    {
                        "image": pixels,
                        **common,
                        "breast_birads": row.get("breast_birads", ""),
                        "breast_density": row.get("breast_density", ""),
                        "lesions": [
                            {
                                "box": [f["box"].top, f["box"].left, f["box"].bottom, f["box"].right],
                                "mask": encode_mask(np.ones((f["box"].height, f["box"].width), dtype=bool)),
                                "finding_categories": f["finding_categories"],
                                "finding_birads": f["finding_birads"],
                                **labels,
                            }
                            for f in located
                        ],
                    },
                )
                continue
            for index, finding in enumerate(located):
                yield (
                    f"{row['image_id']}_{index}",
                    lesion_crop_row(
                        pixels,
                        finding["box"],
                        self.config.context,
                        self.config.min_crop_size,
                        **common,
                        finding_categories=finding["finding_categories"],
                        finding_birads=finding["finding_birads"],
                        **labels,
                    ),
                )
            yield from background_crop_rows(pixels, [f["box"] for f in located], self.config, EXTRA_COLUMNS, **common)
        report.finish()


__all__ = ["VindrMammo", "parse_findings"]
