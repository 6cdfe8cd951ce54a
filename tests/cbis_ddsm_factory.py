"""Small CBIS-DDSM trees in the real layouts, with the real quirks (the builder's docstring): both density headers,
stray whitespace and newlines in cells, crop and mask in one series of two files whose names do not match the CSV, a row
with crop and mask swapped, a mask of the wrong shape, missing files; NBIA Data Retriever folders with metadata.csv,
or the older UID folders."""

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from dicom_factory import breast_image, cbis_ddsm_dicom

HEADERS = {
    "mass": ["patient_id", "breast_density", "left or right breast", "image view", "abnormality id",
             "abnormality type", "mass shape", "mass margins", "assessment", "pathology", "subtlety",
             "image file path", "cropped image file path", "ROI mask file path"],
    "calc": ["patient_id", "breast density", "left or right breast", "image view", "abnormality id",
             "abnormality type", "calc type", "calc distribution", "assessment", "pathology", "subtlety",
             "image file path", "cropped image file path", "ROI mask file path"],
}  # fmt: skip
ROWS, COLUMNS = 64, 48


@dataclass
class Case:
    kind: str  # "mass" | "calc"
    split: str  # "train" | "test"
    patient: str
    side: str = "LEFT"
    view: str = "CC"
    abnormality_id: int = 1
    pathology: str = "MALIGNANT"
    shape_or_type: str = "IRREGULAR"
    margins_or_distribution: str = "ILL_DEFINED-SPICULATED"
    lesion_box: tuple[int, int, int, int] = (20, 10, 30, 22)  # top, left, bottom, right
    swapped: bool = False  # crop and mask in two series, the CSV giving each the other's
    wrong_mask_shape: bool = False
    missing_roi: bool = False
    uids: dict = field(default_factory=dict)

    @property
    def subject(self) -> str:
        kind = "Mass" if self.kind == "mass" else "Calc"
        return f"{kind}-{'Training' if self.split == 'train' else 'Test'}_{self.patient}_{self.side}_{self.view}"


def _uid(seed: int) -> str:
    return f"1.3.6.1.4.1.9590.100.1.2.{seed * 7919 + 104729}{seed:05d}"


def write_cbis_ddsm(root: Path, cases: list[Case], layout: str = "nbia", metadata: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    tree = root / "CBIS-DDSM" if layout == "nbia" else root
    metadata_rows, csv_rows = [], {}
    written_full = {}
    for number, case in enumerate(cases):
        full_study, full_series = written_full.get(case.subject, (_uid(3 * number + 1), _uid(3 * number + 2)))
        full_pixels = breast_image(ROWS, COLUMNS, side="L" if case.side == "LEFT" else "R", seed=number)
        if case.subject not in written_full:
            folder = _series_folder(tree, layout, case.subject, full_study, full_series, "full mammogram images", 1)
            cbis_ddsm_dicom(folder / _name(layout, 0), full_pixels, view=case.view, laterality=case.side[0])
            metadata_rows.append((full_series, folder))
            written_full[case.subject] = (full_study, full_series)
        roi_subject = f"{case.subject}_{case.abnormality_id}"
        roi_study, crop_series = _uid(1000 + 3 * number), _uid(1001 + 3 * number)
        mask_series = _uid(1002 + 3 * number) if case.swapped else crop_series
        top, left, bottom, right = case.lesion_box
        mask = np.zeros((ROWS - 4, COLUMNS) if case.wrong_mask_shape else (ROWS, COLUMNS), dtype=np.uint16)
        mask[top:bottom, left:right] = 255
        crop = full_pixels[top - 2 : bottom + 2, left - 2 : right + 2]
        if not case.missing_roi:
            crop_folder = _series_folder(tree, layout, roi_subject, roi_study, crop_series, "cropped images", 1)
            mask_folder = _series_folder(tree, layout, roi_subject, roi_study, mask_series, "ROI mask images", 2)
            # in one series the mask is written first: names do not tell which is which
            cbis_ddsm_dicom(mask_folder / _name(layout, 0), mask, view=case.view, laterality=case.side[0])
            crop_name = _name(layout, 1 if mask_folder == crop_folder else 0)
            cbis_ddsm_dicom(crop_folder / crop_name, crop, view=case.view, laterality=case.side[0])
            metadata_rows += [(crop_series, crop_folder), (mask_series, mask_folder)]
        csv_crop_series, csv_mask_series = (mask_series, crop_series) if case.swapped else (crop_series, mask_series)
        header = HEADERS[case.kind]
        csv_rows.setdefault((case.kind, case.split), [header]).append(
            [
                f" {case.patient} ",
                "3",
                case.side,
                case.view,
                str(case.abnormality_id),
                "mass" if case.kind == "mass" else "calcification",
                case.shape_or_type,
                case.margins_or_distribution,
                "4",
                case.pathology,
                "5",
                f"{case.subject}/{full_study}/{full_series}/000000.dcm\n",
                f"{roi_subject}/{roi_study}/{csv_crop_series}/000000.dcm",
                f"{roi_subject}/{roi_study}/{csv_mask_series}/000001.dcm\n",
            ]
        )
    for (kind, split), rows in csv_rows.items():
        with open(root / f"{kind}_case_description_{split}_set.csv", "w", newline="") as handle:
            csv.writer(handle).writerows(rows)
    if layout == "nbia" and metadata:
        with open(root / "metadata.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["Series UID", "Collection", "Subject ID", "Series Description", "File Location"])
            for series, folder in dict(metadata_rows).items():
                writer.writerow([series, "CBIS-DDSM", "", "", "./" + folder.relative_to(root).as_posix()])
    return root


def _series_folder(tree: Path, layout: str, subject: str, study: str, series: str, description: str, n: int) -> Path:
    if layout == "classic":
        folder = tree / subject / study / series
    else:
        folder = tree / subject / f"07-20-2016-DDSM-NA-{study[-5:]}" / f"{n}.000000-{description}-{series[-5:]}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _name(layout: str, index: int) -> str:
    return f"00000{index}.dcm" if layout == "classic" else f"1-{index + 1}.dcm"


def standard_cases() -> list[Case]:
    return [
        Case("mass", "train", "P_00001", abnormality_id=1, lesion_box=(20, 10, 30, 22)),
        Case("mass", "train", "P_00001", abnormality_id=2, pathology="BENIGN_WITHOUT_CALLBACK",
             margins_or_distribution="CIRCUMSCRIBED", lesion_box=(40, 8, 50, 20)),
        Case("calc", "train", "P_00002", side="RIGHT", view="MLO", pathology="BENIGN",
             shape_or_type="LUCENT_CENTERED", margins_or_distribution="CLUSTERED", swapped=True),
        Case("mass", "test", "P_00003", pathology="BENIGN", margins_or_distribution="", lesion_box=(10, 20, 24, 30)),
        Case("calc", "test", "P_00004", pathology="MALIGNANT", wrong_mask_shape=True),
        Case("calc", "test", "P_00005", view="MLO", pathology="MALIGNANT", missing_roi=True),
    ]  # fmt: skip
