"""BCDR (Breast Cancer Digital Repository) as a datasets builder.

Each set (bcdr_d01, bcdr_f01, ...) has `bcdr_<set>_outlines.csv`, separated by comma and space: patient_id,
study_id, series, lesion_id, segmentation_id, image_view, image_filename, lw_x_points, lw_y_points (space-separated
outline coordinates), the finding flags mammography_nodule / _calcification / _microcalcification / ..., age,
density and classification (with a leading space: " Benign", " Malign"). image_view 1-4 reads RCC, LCC, RO, LO
(inferred, not documented). Images are TIFF files at `image_filename` next to the CSV
(`patient_<p>/study_<s>/img_<p>_<s>_<series>_<view>.tif`). The pathology classes: a nodule is a mass, a
(micro)calcification a calcification; other findings get -1. There is no official split: a patient-level split
stratified by malignancy and seeded is made.
"""

import csv
from pathlib import Path

import datasets
import numpy as np

from ..processing.patches import polygon_region
from ..processing.reading import MammogramReadError, read_mammogram
from .common import (
    PatientSplitBuilder,
    SkipReport,
    background_crop_rows,
    collection_features,
    encode_mask,
    lesion_crop_row,
    patient_split,
)

VIEWS = {"1": ("R", "CC"), "2": ("L", "CC"), "3": ("R", "MLO"), "4": ("L", "MLO")}
EXTRA_COLUMNS = {"bcdr_set": datasets.Value("string"), "classification": datasets.Value("string")}


def _flag(row: dict, name: str) -> bool:
    return row.get(name, "").strip() in ("1", "1.0", "True", "true")


def read_outlines(path: Path) -> tuple[list[dict], list[tuple[str, str]]]:
    """The outline rows of one set's CSV, with their pathology label, and (row, reason) for unusable ones."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = [
            {k.strip(): (v or "").strip() for k, v in row.items()}
            for row in csv.DictReader(handle, skipinitialspace=True)
        ]
    outlines, problems = [], []
    for line, row in enumerate(rows, start=2):
        where = f"{path.name}:{line}"
        try:
            columns = [float(value) for value in row.get("lw_x_points", "").split()]
            rows_ = [float(value) for value in row.get("lw_y_points", "").split()]
        except ValueError:
            problems.append((where, "unreadable outline points"))
            continue
        if len(columns) < 3 or len(columns) != len(rows_):
            problems.append(
                (where, f"an outline needs 3 or more (x, y) points, got {len(columns)} x and {len(rows_)} y")
            )
            continue
        classification = row.get("classification", "").lower()
        malignant = classification.startswith("malign")
        if _flag(row, "mammography_nodule"):
            label = int(malignant)
        elif _flag(row, "mammography_calcification") or _flag(row, "mammography_microcalcification"):
            label = 2 + int(malignant)
        else:
            label = -1
        outlines.append(
            {"row": row, "columns": np.array(columns), "rows": np.array(rows_), "label_pathology": label,
             "classification": classification.capitalize(), "source": where}
        )  # fmt: skip
    return outlines, problems


class Bcdr(PatientSplitBuilder):
    def _info(self) -> datasets.DatasetInfo:
        features = collection_features(self.config.name, EXTRA_COLUMNS)
        if self.config.name == "images":
            features["density"] = datasets.Value("string")  # breast density as BCDR gives it
        rule = self.config.split_rule("malignancy")
        return datasets.DatasetInfo(description=f"{__doc__}\n{rule}", features=features)

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        root = Path(self.config.data_dir) if self.config.data_dir else None
        csvs = sorted(root.rglob("bcdr_*_outlines.csv")) if root and root.is_dir() else []
        if not csvs:
            raise ValueError(
                f"BCDR data_dir {root} must hold one or more sets, each with bcdr_<set>_outlines.csv and its images "
                "patient_<p>/study_<s>/img_<p>_<s>_<series>_<view>.tif."
            )
        outlines, problems = [], []
        for path in csvs:
            rows, bad = read_outlines(path)
            bcdr_set = path.name.removeprefix("bcdr_").removesuffix("_outlines.csv")
            outlines += [dict(outline, folder=path.parent, bcdr_set=bcdr_set) for outline in rows]
            problems += bad
        malignant = {}
        for outline in outlines:
            patient = f"{outline['bcdr_set']}_{outline['row'].get('patient_id', '')}"
            outline["patient"] = patient
            malignant[patient] = max(malignant.get(patient, 0), int(outline["classification"] == "Malign"))
        assignment = patient_split(malignant, self.config.fractions, self.config.split_seed)
        return [
            datasets.SplitGenerator(
                name=split,
                gen_kwargs={
                    "outlines": [o for o in outlines if assignment[o["patient"]] == split],
                    "problems": problems if split == "train" else [],
                },
            )
            for split in self.config.fractions
        ]

    def _generate_examples(self, outlines: list[dict], problems: list):
        report = SkipReport("BCDR", strict=self.config.strict)
        for where, reason in problems:
            report.skip(where, reason)
        by_image = {}
        for outline in outlines:
            by_image.setdefault((outline["folder"], outline["row"].get("image_filename", "")), []).append(outline)
        for (folder, filename), group in sorted(by_image.items(), key=lambda item: str(item[0])):
            try:
                pixels = read_mammogram(folder / filename).pixel_array
            except MammogramReadError as error:
                for outline in group:
                    report.skip(outline["source"], str(error))
                continue
            first = group[0]
            laterality, view = VIEWS.get(first["row"].get("image_view", ""), ("", ""))
            common = {
                "image_id": f"{first['bcdr_set']}/{filename}",
                "patient_id": first["patient"],
                "laterality": laterality,
                "view": view,
            }
            regions = [polygon_region(o["columns"], o["rows"], pixels.shape) for o in group]
            if self.config.name == "images":
                yield (
                    common["image_id"],
                    {
                        "image": pixels,
                        **common,
                        "density": first["row"].get("density", ""),
                        "lesions": [
                            {
                                "box": [box.top, box.left, box.bottom, box.right],
                                "mask": encode_mask(mask),
                                "label_pathology": outline["label_pathology"],
                                "label_mass_margins": [],
                                "bcdr_set": outline["bcdr_set"],
                                "classification": outline["classification"],
                            }
                            for outline, (box, mask) in zip(group, regions, strict=True)
                        ],
                    },
                )
                continue
            for index, (outline, (box, _)) in enumerate(zip(group, regions, strict=True)):
                yield (
                    f"{common['image_id']}_{index}",
                    lesion_crop_row(
                        pixels,
                        box,
                        self.config.context,
                        self.config.min_crop_size,
                        **common,
                        label_pathology=outline["label_pathology"],
                        label_mass_margins=[],
                        bcdr_set=outline["bcdr_set"],
                        classification=outline["classification"],
                    ),
                )
            yield from background_crop_rows(pixels, [box for box, _ in regions], self.config, EXTRA_COLUMNS, **common)
        report.finish()


__all__ = ["Bcdr", "read_outlines"]
