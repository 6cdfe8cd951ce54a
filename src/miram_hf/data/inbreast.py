"""INbreast as a datasets builder (restricted licence: users obtain the data themselves).

`INbreast.csv` (`;`-separated: Patient ID;Patient age;Laterality;View;Acquisition date;File Name;ACR;Bi-Rads, the
patient and age cells reading `removed`) gives one row per image; `AllDICOMs/<File Name>_<patient>_MG_<L|R>_<CC|ML>_
ANON.dcm` is the image (the patient comes from its name) and `AllXML/<File Name>.xml`, an Apple plist, outlines its
findings: `Point_px` strings "(x, y)" with x the column; ROIs of one or two points are calcifications. INbreast has
no per-lesion pathology: lesion rows carry the finding type and the image's BI-RADS, with `label_pathology` -1. There
is no official split: a patient-level split stratified by BI-RADS >= 4 and seeded is made and written into the info.
"""

import csv
import plistlib
import re
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from PIL import Image, ImageDraw

from ..processing.patches import Box, polygon_region
from .common import CollectionImage, Lesion, PatientSplitBuilder, SkipReport

# ROI names as written in the XML files, typos included -> finding type
FINDING_TYPES = {
    "mass": "mass",
    "calcification": "calcification",
    "calcifications": "calcification",
    "cluster": "calcification_cluster",
    "asymmetry": "asymmetry",
    "assymetry": "asymmetry",
    "distortion": "distortion",
    "spiculated region": "spiculated_region",
    "espiculated region": "spiculated_region",
}
POINT_RADIUS = 4  # pixels around a calcification given as a point
# Whole-image labels of the VAE paper's INbreast tasks: density from the ACR (1-4), and malignant (BI-RADS 4, 5, 6)
# against non-malignant (BI-RADS 1, 2); BI-RADS 3 and blank cells are -1.
IMAGE_LABELS = {
    "label_density": datasets.ClassLabel(names=["fatty", "scattered", "heterogeneously_dense", "extremely_dense"]),
    "label_malignant": datasets.ClassLabel(names=["nonmalignant", "malignant"]),
}


def image_labels(acr: str, birads: str) -> dict[str, int]:
    """`label_density` and `label_malignant` of an image from its ACR and BI-RADS cells."""
    density = int(acr) - 1 if acr.isdigit() and 1 <= int(acr) <= 4 else -1
    category = birads[:1]
    malignant = 1 if category in ("4", "5", "6") else 0 if category in ("1", "2") else -1
    return {"label_density": density, "label_malignant": malignant}


@dataclass
class InbreastImage:
    file_name: str
    laterality: str
    view: str
    acr: str
    birads: str
    source: str


def read_csv(path: Path) -> tuple[list[InbreastImage], list[tuple[str, str]]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    header = [cell.strip() for cell in rows[0]]
    images, problems = [], []
    for line, row in enumerate(rows[1:], start=2):
        record = dict(zip(header, (cell.strip() for cell in row), strict=False))
        if not record.get("File Name", "").isdigit():
            problems.append((f"{path.name}:{line}", f"no file name in {row}"))
            continue
        view = record.get("View", "").upper()
        images.append(
            InbreastImage(
                file_name=record["File Name"],
                laterality=record.get("Laterality", "").upper(),
                view="MLO" if view == "ML" else view,
                acr=record.get("ACR", ""),
                birads=record.get("Bi-Rads", "").lower(),
                source=f"{path.name}:{line}",
            )
        )
    return images, problems


def _point(text: str) -> tuple[float, float]:
    x, y = (float(value) for value in re.findall(r"[-\d.]+", text)[:2])
    return x, y


def read_findings(path: Path, shape: tuple[int, int]) -> list[Lesion]:
    """The outlined findings of one image's XML plist: boxes, masks and `finding_type`."""
    with open(path, "rb") as handle:
        plist = plistlib.load(handle)
    findings = []
    for image in plist.get("Images", []):
        for roi in image.get("ROIs", []):
            points = [_point(point) for point in roi.get("Point_px", [])]
            if not points:
                continue
            name = str(roi.get("Name", "")).strip().lower()
            finding_type = FINDING_TYPES.get(name, name.replace(" ", "_") or "unknown")
            columns, rows = np.array([p[0] for p in points]), np.array([p[1] for p in points])
            if len(points) > 2:
                findings.append(Lesion(*polygon_region(columns, rows, shape), {"finding_type": finding_type}))
                continue
            # a calcification given as one or two points: a small disc around each (a stroke between two)
            top = int(max(0, np.floor(rows.min()) - POINT_RADIUS))
            left = int(max(0, np.floor(columns.min()) - POINT_RADIUS))
            bottom = int(min(shape[0], np.ceil(rows.max()) + POINT_RADIUS + 1))
            right = int(min(shape[1], np.ceil(columns.max()) + POINT_RADIUS + 1))
            canvas = Image.new("1", (right - left, bottom - top))
            local = [(x - left, y - top) for x, y in points]
            if len(points) == 2:
                ImageDraw.Draw(canvas).line(local, fill=1, width=2 * POINT_RADIUS)
            for x, y in local:
                ImageDraw.Draw(canvas).ellipse(
                    [x - POINT_RADIUS, y - POINT_RADIUS, x + POINT_RADIUS, y + POINT_RADIUS], fill=1
                )
            box, mask = Box(top, left, bottom, right), np.array(canvas, dtype=bool)
            findings.append(Lesion(box, mask, {"finding_type": finding_type}))
    return findings


class Inbreast(PatientSplitBuilder):
    COLLECTION = "INbreast"
    LAYOUT = "INbreast.csv, AllDICOMs/ (<File Name>_<patient>_MG_<L|R>_<CC|ML>_ANON.dcm) and AllXML/ (<File Name>.xml)."
    STRATIFIED_BY = "BI-RADS >= 4"
    IMAGE_COLUMNS = {"birads": datasets.Value("string"), "acr": datasets.Value("string"), **IMAGE_LABELS}
    LESION_COLUMNS = {"finding_type": datasets.Value("string"), "birads": datasets.Value("string")}

    def _split_sources(self) -> tuple[dict[str, dict], list[tuple[str, str]]]:
        root = self.data_root()
        if not (root / "INbreast.csv").is_file() or not (root / "AllDICOMs").is_dir():
            raise self.layout_error(root)
        images, problems = read_csv(root / "INbreast.csv")
        dicoms = {path.name.split("_")[0]: path for path in (root / "AllDICOMs").glob("*.dcm")}
        patients = {image.file_name: _patient(dicoms.get(image.file_name)) for image in images}
        suspicious = {}
        for image in images:
            patient = patients[image.file_name]
            suspicious[patient] = max(suspicious.get(patient, 0), int(image.birads[:1] in ("4", "5", "6")))
        sources = {
            split: {"images": [i for i in images if patients[i.file_name] in members], "dicoms": dicoms,
                    "xml_dir": root / "AllXML"}
            for split, members in self.split_patients(suspicious).items()
        }  # fmt: skip
        return sources, problems

    def _read_images(self, report: SkipReport, images: list[InbreastImage], dicoms: dict, xml_dir: Path):
        for image in images:
            if image.file_name not in dicoms:
                report.skip(image.source, f"no AllDICOMs/{image.file_name}_*.dcm")
                continue
            mammogram = report.read(dicoms[image.file_name], where=image.source)
            if mammogram is None:
                continue
            xml = xml_dir / f"{image.file_name}.xml"
            try:
                lesions = read_findings(xml, mammogram.pixel_array.shape) if xml.is_file() else []
            except Exception as error:  # a damaged plist: report it, keep going
                report.skip(xml, f"unreadable XML ({type(error).__name__}: {error})")
                continue
            for lesion in lesions:
                lesion.columns |= {"label_pathology": -1, "label_mass_margins": [], "birads": image.birads}
            columns = {"birads": image.birads, "acr": image.acr, **image_labels(image.acr, image.birads)}
            yield CollectionImage(mammogram.pixel_array, image.file_name, _patient(dicoms[image.file_name]),
                                  image.laterality, image.view, columns, lesions)  # fmt: skip


def _patient(dicom: Path | None) -> str:
    """The 16-hex patient id of the file name (the CSV's Patient ID reads `removed`)."""
    parts = dicom.name.split("_") if dicom is not None else []
    return parts[1] if len(parts) > 1 else "unknown"


__all__ = ["Inbreast", "read_csv", "read_findings"]
