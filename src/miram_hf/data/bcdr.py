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
from .common import CollectionImage, Lesion, PatientSplitBuilder, SkipReport

VIEWS = {"1": ("R", "CC"), "2": ("L", "CC"), "3": ("R", "MLO"), "4": ("L", "MLO")}


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
    COLLECTION = "BCDR"
    LAYOUT = ("one or more sets, each with bcdr_<set>_outlines.csv and its images "
              "patient_<p>/study_<s>/img_<p>_<s>_<series>_<view>.tif.")  # fmt: skip
    STRATIFIED_BY = "malignancy"
    IMAGE_COLUMNS = {"density": datasets.Value("string")}  # breast density as BCDR gives it
    LESION_COLUMNS = {"bcdr_set": datasets.Value("string"), "classification": datasets.Value("string")}

    def _split_sources(self) -> tuple[dict[str, dict], list[tuple[str, str]]]:
        root = self.data_root()
        csvs = sorted(root.rglob("bcdr_*_outlines.csv"))
        if not csvs:
            raise self.layout_error(root)
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
        sources = {split: {"outlines": [o for o in outlines if o["patient"] in members]}
                   for split, members in self.split_patients(malignant).items()}  # fmt: skip
        return sources, problems

    def _read_images(self, report: SkipReport, outlines: list[dict]):
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
            lesions = [
                Lesion(*polygon_region(outline["columns"], outline["rows"], pixels.shape),
                       {"label_pathology": outline["label_pathology"], "label_mass_margins": [],
                        "bcdr_set": outline["bcdr_set"], "classification": outline["classification"]})
                for outline in group
            ]  # fmt: skip
            yield CollectionImage(pixels, f"{first['bcdr_set']}/{filename}", first["patient"], laterality, view,
                                  {"density": first["row"].get("density", "")}, lesions)  # fmt: skip


__all__ = ["Bcdr", "read_outlines"]
