"""CSAW-M (masking of cancer in mammography) as a datasets builder: image-level labels only (`images`, and the
`tiles` cut from them).

`labels/CSAW-M_{train,test}.csv` are `;`-separated: Filename; Label (masking level 1-8); Expert_1..Expert_5 (their
presence in the train file is unverified: read when there); If_cancer; If_interval_cancer; If_large_invasive_cancer;
If_composite; Dicom_image_laterality; Dicom_window_center; Dicom_window_width; Dicom_photometric_interpretation;
Libra_percent_density; Libra_dense_area; Libra_breast_area. Images are 8-bit PNGs in
`images/preprocessed/{train,test}/`. The file is the official split. CSAW-M gives no patient identifier: each image
stands for its own patient.
"""

import csv
from pathlib import Path

import datasets

from .common import CollectionImage, MammographyBuilder, MammographyConfig, SkipReport


def _number(value: str, kind=int):
    try:
        return kind(float(value))
    except (TypeError, ValueError):
        return None


class CsawM(MammographyBuilder):
    COLLECTION = "CSAW-M"
    LAYOUT = ("labels/CSAW-M_train.csv and/or labels/CSAW-M_test.csv and the PNGs in "
              "images/preprocessed/{train,test}/.")  # fmt: skip
    BUILDER_CONFIGS = [MammographyConfig(name="images")]  # image-level labels only
    DEFAULT_CONFIG_NAME = "images"
    IMAGE_COLUMNS = {
        "label_masking": datasets.ClassLabel(names=[str(level) for level in range(1, 9)]),
        "expert_labels": datasets.List(datasets.Value("int32")),
        "if_cancer": datasets.Value("int32"),
        "if_interval_cancer": datasets.Value("int32"),
        "if_large_invasive_cancer": datasets.Value("int32"),
        "if_composite": datasets.Value("int32"),
        "libra_percent_density": datasets.Value("float32"),
    }
    LESION_COLUMNS = None

    def _split_sources(self) -> tuple[dict[str, dict], list[tuple[str, str]]]:
        root = self.data_root()
        labels = {split: root / "labels" / f"CSAW-M_{split}.csv" for split in ("train", "test")}
        present = {split: path for split, path in labels.items() if path.is_file()}
        if not present:
            raise self.layout_error(root)
        sources = {split: {"labels": path, "images": root / "images" / "preprocessed" / split}
                   for split, path in sorted(present.items())}  # fmt: skip
        return sources, []

    def _read_images(self, report: SkipReport, labels: Path, images: Path):
        with open(labels, newline="", encoding="utf-8-sig") as handle:
            rows = [
                {k.strip(): (v or "").strip() for k, v in row.items()} for row in csv.DictReader(handle, delimiter=";")
            ]
        for line, row in enumerate(rows, start=2):
            level = _number(row.get("Label"))
            if not row.get("Filename") or level not in range(1, 9):
                report.skip(f"{labels.name}:{line}", f"no file name or masking level in {row}")
                continue
            mammogram = report.read(images / row["Filename"], where=f"{labels.name}:{line}")
            if mammogram is None:
                continue
            image_id = Path(row["Filename"]).stem
            experts = [_number(row[f"Expert_{i}"]) for i in range(1, 6) if row.get(f"Expert_{i}")]
            columns = {
                "label_masking": level - 1,
                "expert_labels": [e for e in experts if e is not None],
                **{key.lower(): _number(row.get(key)) for key in ("If_cancer", "If_interval_cancer",
                                                                  "If_large_invasive_cancer", "If_composite")},
                "libra_percent_density": _number(row.get("Libra_percent_density"), float),
            }  # fmt: skip
            laterality = row.get("Dicom_image_laterality", "").upper()[:1]
            yield CollectionImage(mammogram.pixel_array, image_id, image_id, laterality, "", columns=columns)


__all__ = ["CsawM"]
