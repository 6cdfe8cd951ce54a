"""CMMD (The Chinese Mammography Database, TCIA) as a datasets builder: image-level labels only (`images`, and the
`tiles` cut from them).

`CMMD_clinicaldata_revision.xlsx` has one row per labelled breast (ID1, LeftRight, Age, number, abnormality,
classification, subtype); the tree is `CMMD/<ID1>/<date>-NA-NA-<5 digits>/<n>.000000-NA-<5 digits>/1-<k>.dcm`, one
series per patient of 2 or 4 images whose breast and view are only in their tags (ImageLaterality, and the view in
ViewCodeSequence). Many images show the unlabelled other breast: they are kept with `label_malignant` -1, for
pretraining. There is no official split: a patient-level split stratified by malignancy and seeded is made.
"""

from pathlib import Path

import datasets

from .common import CollectionImage, PatientSplitBuilder, PatientSplitConfig, SkipReport

CLINICAL_SHEET = "CMMD_clinicaldata_revision.xlsx"
UNLABELLED = {"label_malignant": -1, "abnormality": "", "subtype": "", "number": None, "age": None}


def read_clinical_sheet(path: Path) -> tuple[dict[tuple[str, str], dict], list[tuple[str, str]]]:
    """(patient, "L" | "R") -> the breast's clinical row, and (row, reason) for rows that cannot be used."""
    import openpyxl

    sheet = openpyxl.load_workbook(path, read_only=True).active
    rows = sheet.iter_rows(values_only=True)
    header = [str(cell).strip() if cell is not None else "" for cell in next(rows)]
    breasts, problems = {}, []
    for number, row in enumerate(rows, start=2):
        record = {name: ("" if value is None else str(value).strip()) for name, value in zip(header, row, strict=False)}
        side = record.get("LeftRight", "").upper()[:1]
        classification = record.get("classification", "").lower()
        if not record.get("ID1") or side not in ("L", "R") or classification not in ("benign", "malignant"):
            problems.append((f"{path.name}:{number}", f"incomplete row {record}"))
            continue
        breasts[record["ID1"], side] = {
            "label_malignant": int(classification == "malignant"),
            "abnormality": record.get("abnormality", "").lower(),
            "subtype": record.get("subtype", ""),
            "number": int(float(record["number"])) if record.get("number") else None,
            "age": int(float(record["Age"])) if record.get("Age") else None,
        }
    return breasts, problems


class Cmmd(PatientSplitBuilder):
    COLLECTION = "CMMD"
    LAYOUT = (f"{CLINICAL_SHEET} and the DICOM tree CMMD/<ID1>/<study>/<series>/1-<k>.dcm (as the NBIA Data Retriever "
              "writes it).")  # fmt: skip
    BUILDER_CONFIGS = [PatientSplitConfig(name="images")]  # image-level labels only
    DEFAULT_CONFIG_NAME = "images"
    STRATIFIED_BY = "malignancy"
    IMAGE_COLUMNS = {
        "label_malignant": datasets.ClassLabel(names=["benign", "malignant"]),  # -1: the unlabelled breast
        "abnormality": datasets.Value("string"),  # mass | calcification | both | "" (unlabelled)
        "subtype": datasets.Value("string"),
        "number": datasets.Value("int32"),  # undocumented by the collection; None when blank
        "age": datasets.Value("int32"),
    }
    LESION_COLUMNS = None

    def _split_sources(self) -> tuple[dict[str, dict], list[tuple[str, str]]]:
        root = self.data_root()
        sheet = next(iter(sorted(root.rglob(CLINICAL_SHEET))), None)
        if sheet is None:
            raise self.layout_error(root)
        breasts, problems = read_clinical_sheet(sheet)
        patient_folders = {
            folder.name: folder
            for base in (root, root / "CMMD")
            if base.is_dir()
            for folder in base.iterdir()
            if folder.is_dir() and folder.name[:3] in ("D1-", "D2-")
        }
        malignant = {}
        for (patient, _), breast in breasts.items():
            malignant[patient] = max(malignant.get(patient, 0), breast["label_malignant"])
        for patient in patient_folders:
            malignant.setdefault(patient, 0)
        sources = {split: {"patients": sorted(members), "folders": patient_folders, "breasts": breasts}
                   for split, members in self.split_patients(malignant).items()}  # fmt: skip
        return sources, problems

    def _read_images(self, report: SkipReport, patients: list[str], folders: dict, breasts: dict):
        for patient in patients:
            if patient not in folders:
                report.skip(patient, "in the clinical sheet but no image folder")
                continue
            seen = set()
            for path in sorted(folders[patient].rglob("*.dcm")):
                mammogram = report.read(path)
                if mammogram is None:
                    continue
                if mammogram.laterality is None or mammogram.view is None:
                    report.skip(path, "no laterality or view in the tags: cannot tell which breast it shows")
                    continue
                image_id = f"{patient}_{mammogram.laterality}_{mammogram.view}"
                if image_id in seen:
                    report.skip(path, f"a second {mammogram.laterality} {mammogram.view} image of {patient}")
                    continue
                seen.add(image_id)
                yield CollectionImage(
                    mammogram.pixel_array, image_id, patient, mammogram.laterality, mammogram.view,
                    columns=breasts.get((patient, mammogram.laterality), UNLABELLED),
                )  # fmt: skip


__all__ = ["Cmmd", "read_clinical_sheet"]
