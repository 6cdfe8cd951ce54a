"""A small CMMD download: the clinical sheet (with a patient without images and an incomplete row) and the NBIA
tree, one series per patient whose files say their breast and view only in their tags."""

from pathlib import Path

import openpyxl
from dicom_factory import breast_image, cmmd_dicom, write_dicom


def write_cmmd(root: Path) -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["ID1", "LeftRight", "Age", "number", "abnormality", "classification", "subtype"])
    sheet.append(["D1-0001", "R", 44, 1, "calcification", "Benign", None])
    sheet.append(["D1-0002", "L", 61, None, "both", "Malignant", "Luminal A"])
    sheet.append(["D2-0003", "L", 50, 2, "mass", "Malignant", "triple negative"])
    sheet.append(["D2-0004", "R", 39, 1, "mass", "Benign", None])  # no image folder
    sheet.append(["D2-0005", None, 39, 1, "mass", "Benign", None])  # incomplete
    root.mkdir(parents=True)
    workbook.save(root / "CMMD_clinicaldata_revision.xlsx")
    for patient, images in {
        "D1-0001": [("R", "CC"), ("R", "MLO"), ("L", "CC"), ("L", "MLO")],
        "D1-0002": [("L", "CC"), ("L", "MLO")],
        "D2-0003": [("L", "CC"), ("L", "MLO")],
    }.items():
        series = root / "CMMD" / patient / "07-18-2010-NA-NA-79377" / "1.000000-NA-70244"
        for k, (side, view) in enumerate(images, start=1):
            cmmd_dicom(series / f"1-{k}.dcm", view=view, laterality=side)
    # a file whose tags do not say which breast it is
    write_dicom(root / "CMMD" / "D2-0003" / "07-18-2010-NA-NA-79377" / "1.000000-NA-70244" / "1-9.dcm", breast_image())
    return root
