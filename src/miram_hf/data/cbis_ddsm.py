"""CBIS-DDSM (TCIA, CC BY 3.0) as a datasets builder: `images` (one row per mammogram with its abnormalities) and
`lesions` (one row per abnormality crop, with the MIRAM paper's pathology and mass-margin labels).

Works on the real downloads: the four case-description CSVs and the DICOM tree
either as the current NBIA Data Retriever writes it (`<Subject>/<date>-DDSM-[NA-]<5 digits>/<n>.000000-<description>-
<5 digits>/1-1.dcm`, with `metadata.csv`) or as older downloads did (`<Subject>/<StudyUID>/<SeriesUID>/*.dcm`). The
CSV's file names do not say which ROI file is the crop and which the mask, and some rows have them swapped: the mask
is told by its content (binary, the full image's shape).
"""

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np

from ..processing.patches import mask_box
from ..processing.reading import MammogramReadError, read_mammogram
from .common import (
    IMAGE_MALIGNANCY,
    MARGIN_NAMES,
    CollectionImage,
    Lesion,
    MammographyBuilder,
    SkipReport,
    image_malignancy,
)

CSV_FILES = {
    "mass_case_description_train_set.csv": ("mass", "train"),
    "mass_case_description_test_set.csv": ("mass", "test"),
    "calc_case_description_train_set.csv": ("calcification", "train"),
    "calc_case_description_test_set.csv": ("calcification", "test"),
}


@dataclass
class Abnormality:
    patient_id: str
    subject: str  # the full image's folder, e.g. Mass-Training_P_00001_LEFT_CC
    laterality: str
    view: str
    full_path: tuple[str, str, str]  # (subject, study UID, series UID) of the full mammogram
    roi_paths: list[tuple[str, str, str]]  # the crop's and the mask's series, as the CSV gives them
    attributes: dict
    label_pathology: int
    label_mass_margins: list[int]
    source: str  # csv file and line, for reports


def _int(value: str) -> int:
    return int(value) if value.strip().lstrip("-").isdigit() else -1


def parse_case_descriptions(path: Path, kind: str) -> tuple[list[Abnormality], list[tuple[str, str]]]:
    """Rows of one case-description CSV; cells stripped (they carry stray whitespace and newlines), the density
    header in either spelling. Returns the abnormalities and (row, reason) for rows that cannot be used."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [" ".join(cell.split()).lower().replace(" ", "_") for cell in next(reader)]
        rows = [[cell.strip() for cell in row] for row in reader]
    header = ["breast_density" if name in ("breast_density", "breastdensity") else name for name in header]
    abnormalities, problems = [], []
    for line, row in enumerate(rows, start=2):
        source = f"{path.name}:{line}"
        if not any(row):
            continue
        record = dict(zip(header, row, strict=False))
        try:
            full = _split_csv_path(record["image_file_path"])
            roi = [_split_csv_path(record["cropped_image_file_path"]), _split_csv_path(record["roi_mask_file_path"])]
        except (KeyError, ValueError) as error:
            problems.append((source, f"unusable file path ({error})"))
            continue
        pathology = record.get("pathology", "").upper()
        if pathology not in ("MALIGNANT", "BENIGN", "BENIGN_WITHOUT_CALLBACK"):
            problems.append((source, f"unknown pathology {pathology!r}"))
            continue
        malignant = pathology == "MALIGNANT"
        margins_text = record.get("mass_margins", "") if kind == "mass" else ""
        atoms = [atom.lower() for atom in margins_text.split("-") if atom and atom.upper() != "N/A"]
        margins = sorted({MARGIN_NAMES.index(atom) for atom in atoms if atom in MARGIN_NAMES})
        laterality = record.get("left_or_right_breast", "").upper()[:1]
        abnormalities.append(
            Abnormality(
                patient_id=record.get("patient_id", ""),
                subject=full[0],
                laterality=laterality,
                view=record.get("image_view", "").upper(),
                full_path=full,
                roi_paths=roi,
                attributes={
                    "abnormality_id": _int(record.get("abnormality_id", "")),
                    "abnormality_type": kind,
                    "pathology": pathology,
                    "breast_density": _int(record.get("breast_density", "")),
                    "assessment": _int(record.get("assessment", "")),
                    "subtlety": _int(record.get("subtlety", "")),
                    "mass_shape": record.get("mass_shape", "") if kind == "mass" else "",
                    "mass_margins": margins_text,
                    "calc_type": record.get("calc_type", "") if kind != "mass" else "",
                    "calc_distribution": record.get("calc_distribution", "") if kind != "mass" else "",
                },
                label_pathology=(0 if kind == "mass" else 2) + int(malignant),
                label_mass_margins=margins,
                source=source,
            )
        )
    return abnormalities, problems


def _split_csv_path(value: str) -> tuple[str, str, str]:
    parts = [part for part in value.replace("\\", "/").split("/") if part]
    if len(parts) < 3:
        raise ValueError(f"expected <subject>/<study UID>/<series UID>/<file>, got {value!r}")
    return parts[0], parts[1], parts[2]


class SeriesLocator:
    """Finds a series' DICOM files under `root`, whichever way the tree was downloaded."""

    def __init__(self, root: Path):
        self.root = root
        self.by_series_uid: dict[str, Path] = {}
        for metadata in [root / "metadata.csv", *root.glob("*/metadata.csv")]:
            if metadata.is_file():
                with open(metadata, newline="", encoding="utf-8-sig") as handle:
                    for row in csv.DictReader(handle):
                        location = row.get("File Location", "").strip().replace("\\", "/")
                        if row.get("Series UID") and location:
                            self.by_series_uid[row["Series UID"].strip()] = metadata.parent / location
        self.bases = [root] + [folder for folder in root.iterdir() if folder.is_dir() and folder.name == "CBIS-DDSM"]

    def files(self, subject: str, study_uid: str, series_uid: str) -> list[Path]:
        folders = [self.by_series_uid[series_uid]] if series_uid in self.by_series_uid else []
        for base in self.bases:
            folders.append(base / subject / study_uid / series_uid)  # older downloads: the UIDs themselves
            folders.extend(base.glob(f"{subject}/*-{study_uid[-5:]}/*-{series_uid[-5:]}"))  # NBIA Data Retriever
        for folder in folders:
            found = sorted(folder.glob("*.dcm")) if folder.is_dir() else []
            if found:
                return found
        return []


class CbisDdsm(MammographyBuilder):
    """CBIS-DDSM with its official train / test split (the CSV files)."""

    COLLECTION = "CBIS-DDSM"
    LAYOUT = (
        f"the case-description CSVs ({', '.join(CSV_FILES)}) and the DICOM tree from TCIA: either "
        "CBIS-DDSM/<Subject>/<date>-DDSM-.../<n>.000000-<description>-.../1-1.dcm with metadata.csv (NBIA Data "
        "Retriever) or <Subject>/<StudyUID>/<SeriesUID>/*.dcm."
    )
    IMAGE_COLUMNS = {"breast_density": datasets.Value("int32"), **IMAGE_MALIGNANCY}
    LESION_COLUMNS = {
        "abnormality_id": datasets.Value("int32"),
        "abnormality_type": datasets.Value("string"),
        "pathology": datasets.Value("string"),
        "breast_density": datasets.Value("int32"),
        "assessment": datasets.Value("int32"),
        "subtlety": datasets.Value("int32"),
        "mass_shape": datasets.Value("string"),
        "mass_margins": datasets.Value("string"),
        "calc_type": datasets.Value("string"),
        "calc_distribution": datasets.Value("string"),
    }

    def _split_sources(self) -> tuple[dict[str, dict], list[tuple[str, str]]]:
        root = self.data_root()
        present = {name: root / name for name in CSV_FILES if (root / name).is_file()}
        if not present:
            raise self.layout_error(root)
        by_split = defaultdict(list)
        for name, path in present.items():
            kind, split = CSV_FILES[name]
            by_split[split].append((path, kind))
        return {split: {"root": root, "csv_files": files} for split, files in sorted(by_split.items())}, []

    def _read_images(self, report: SkipReport, root: Path, csv_files: list[tuple[Path, str]]):
        abnormalities = []
        for path, kind in csv_files:
            rows, problems = parse_case_descriptions(path, kind)
            abnormalities.extend(rows)
            for source, reason in problems:
                report.skip(source, reason)
        locator = SeriesLocator(root)
        by_image = defaultdict(list)
        for abnormality in abnormalities:
            by_image[abnormality.full_path].append(abnormality)
        for full_path, group in by_image.items():
            files = locator.files(*full_path)
            if len(files) != 1:
                for abnormality in group:
                    report.skip(abnormality.source, f"{len(files)} full-mammogram files for {'/'.join(full_path)}")
                continue
            try:
                image = read_mammogram(files[0])
            except MammogramReadError as error:
                for abnormality in group:
                    report.skip(abnormality.source, str(error))
                continue
            lesions = []
            for abnormality in group:
                mask = self._find_mask(abnormality, image.pixel_array.shape, locator, report)
                if mask is not None:
                    box = mask_box(mask)
                    labels = {"label_pathology": abnormality.label_pathology,
                              "label_mass_margins": abnormality.label_mass_margins}  # fmt: skip
                    lesions.append(Lesion(box, box.crop(mask), {**labels, **abnormality.attributes}))
            if not lesions:
                continue
            first = group[0]
            columns = {
                "breast_density": first.attributes["breast_density"],
                "label_malignant": image_malignancy(lesions),
            }
            yield CollectionImage(
                image.pixel_array,
                first.subject,
                first.patient_id,
                first.laterality,
                first.view,
                columns,
                lesions,
                all_lesions_located=len(lesions) == len(group),
            )

    def _find_mask(self, abnormality: Abnormality, shape: tuple[int, int], locator, report) -> np.ndarray | None:
        """The abnormality's mask among the files of its crop and mask series: binary, with the full image's shape."""
        candidates = []
        for series in dict.fromkeys(abnormality.roi_paths):
            candidates.extend(locator.files(*series))
        if not candidates:
            report.skip(abnormality.source, f"no ROI files for {'/'.join(abnormality.roi_paths[1])}")
            return None
        wrong_shape = None
        for path in dict.fromkeys(candidates):
            try:
                pixels = read_mammogram(path).pixel_array
            except MammogramReadError as error:
                report.skip(abnormality.source, str(error))
                return None
            top = pixels.max()
            if top == 0 or np.count_nonzero((pixels != 0) & (pixels != top)):
                continue  # not binary: the crop
            if pixels.shape == shape:
                return pixels > 0
            wrong_shape = (path, pixels.shape)
        if wrong_shape is not None:
            report.skip(wrong_shape[0], f"mask shape {wrong_shape[1]} differs from the full image's {shape}")
        else:
            report.skip(abnormality.source, "no binary ROI mask among " + ", ".join(str(p) for p in candidates))
        return None


__all__ = ["CbisDdsm", "parse_case_descriptions"]
