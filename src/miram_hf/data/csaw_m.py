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

from ..processing.reading import MammogramReadError, read_mammogram
from .common import MammographyBuilder, MammographyConfig, SkipReport

FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "image_id": datasets.Value("string"),
        "patient_id": datasets.Value("string"),
        "laterality": datasets.Value("string"),
        "view": datasets.Value("string"),
        "label_masking": datasets.ClassLabel(names=[str(level) for level in range(1, 9)]),
        "expert_labels": datasets.List(datasets.Value("int32")),
        "if_cancer": datasets.Value("int32"),
        "if_interval_cancer": datasets.Value("int32"),
        "if_large_invasive_cancer": datasets.Value("int32"),
        "if_composite": datasets.Value("int32"),
        "libra_percent_density": datasets.Value("float32"),
    }
)


def _number(value: str, kind=int):
    try:
        return kind(float(value))
    except (TypeError, ValueError):
        return None


class CsawM(MammographyBuilder):
    BUILDER_CONFIGS = [MammographyConfig(name="images")]  # image-level labels only
    DEFAULT_CONFIG_NAME = "images"

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(description=__doc__, features=FEATURES)

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        root = Path(self.config.data_dir) if self.config.data_dir else None
        labels = {split: root / "labels" / f"CSAW-M_{split}.csv" for split in ("train", "test")} if root else {}
        present = {split: path for split, path in labels.items() if path.is_file()}
        if not present:
            raise ValueError(
                f"CSAW-M data_dir {root} must hold labels/CSAW-M_train.csv and/or labels/CSAW-M_test.csv and the PNGs "
                "in images/preprocessed/{train,test}/."
            )
        return [
            datasets.SplitGenerator(
                name=split, gen_kwargs={"labels": path, "images": root / "images" / "preprocessed" / split}
            )
            for split, path in sorted(present.items())
        ]

    def _generate_examples(self, labels: Path, images: Path):
        report = SkipReport("CSAW-M", strict=self.config.strict)
        with open(labels, newline="", encoding="utf-8-sig") as handle:
            rows = [
                {k.strip(): (v or "").strip() for k, v in row.items()} for row in csv.DictReader(handle, delimiter=";")
            ]
        for line, row in enumerate(rows, start=2):
            level = _number(row.get("Label"))
            if not row.get("Filename") or level not in range(1, 9):
                report.skip(f"{labels.name}:{line}", f"no file name or masking level in {row}")
                continue
            try:
                pixels = read_mammogram(images / row["Filename"]).pixel_array
            except MammogramReadError as error:
                report.skip(f"{labels.name}:{line}", str(error))
                continue
            image_id = Path(row["Filename"]).stem
            experts = [_number(row[f"Expert_{i}"]) for i in range(1, 6) if row.get(f"Expert_{i}")]
            yield image_id, {
                "image": pixels,
                "image_id": image_id,
                "patient_id": image_id,
                "laterality": row.get("Dicom_image_laterality", "").upper()[:1],
                "view": "",
                "label_masking": level - 1,
                "expert_labels": [e for e in experts if e is not None],
                **{key.lower(): _number(row.get(key)) for key in ("If_cancer", "If_interval_cancer",
                                                                  "If_large_invasive_cancer", "If_composite")},
                "libra_percent_density": _number(row.get("Libra_percent_density"), float),
            }  # fmt: skip
        report.finish()


__all__ = ["CsawM"]
