"""CSAW-S (segmentation of mammograms) as a datasets builder.

Images are `anonymized_dataset/<patient>/<id>_<n>.png`, each with one binary PNG mask per structure,
`<id>_<n>_<structure>.png` (cancer, calcifications, axillary_lymph_nodes, thick_vessels, foreign_object, skin,
nipple, text, non-mammary_tissue, pectoral_muscle, mammary_gland). The test images are annotated by three
radiologists in `annotator_1` .. `annotator_3` folders: annotator 1's masks are used. A file under a folder whose
name starts with `test` belongs to the test split, any other to train. The lesions are the cancer and calcification
masks (one lesion per mask, its bounding box); their pathology type is not given, so `label_pathology` is -1 and
the `structure` column says which mask it was.
"""

from pathlib import Path

import datasets

from ..processing.patches import mask_box
from ..processing.reading import MammogramReadError, read_mammogram
from .common import (
    MammographyBuilder,
    SkipReport,
    background_crop_rows,
    collection_features,
    encode_mask,
    lesion_crop_row,
)

STRUCTURES = (
    "cancer", "calcifications", "axillary_lymph_nodes", "thick_vessels", "foreign_object", "skin", "nipple", "text",
    "non-mammary_tissue", "pectoral_muscle", "mammary_gland",
)  # fmt: skip
LESION_STRUCTURES = ("cancer", "calcifications")
EXTRA_COLUMNS = {"structure": datasets.Value("string")}


def index_files(root: Path) -> dict[str, dict]:
    """Image stem -> {"image": path, "masks": {structure: path}}; annotator 1's masks where annotators differ."""
    entries: dict[str, dict] = {}
    for path in sorted(root.rglob("*.png")):
        parts = path.relative_to(root).parts
        annotator = next((part for part in parts if part.startswith("annotator_")), None)
        if annotator not in (None, "annotator_1"):
            continue
        structure = next((s for s in STRUCTURES if path.stem.endswith(f"_{s}")), None)
        stem = path.stem.removesuffix(f"_{structure}") if structure else path.stem
        entry = entries.setdefault(stem, {"image": None, "masks": {}, "patient": None})
        if structure is None:
            entry["image"] = path
            entry["patient"] = path.parent.name
            entry["split"] = "test" if any(part.lower().startswith("test") for part in parts) else "train"
        else:
            entry["masks"].setdefault(structure, path)
    return entries


class CsawS(MammographyBuilder):
    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(description=__doc__, features=collection_features(self.config.name, EXTRA_COLUMNS))

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        root = Path(self.config.data_dir) if self.config.data_dir else None
        entries = index_files(root) if root and root.is_dir() else {}
        if not any(entry["image"] for entry in entries.values()):
            raise ValueError(
                f"CSAW-S data_dir {root} must hold anonymized_dataset/<patient>/<id>_<n>.png images with their masks "
                "<id>_<n>_<structure>.png (and the test set's annotator_1 .. annotator_3 folders)."
            )
        splits = sorted({entry.get("split", "train") for entry in entries.values() if entry["image"]})
        return [
            datasets.SplitGenerator(
                name=split,
                # masks whose image is missing have no split: reported with train
                gen_kwargs={"entries": {k: e for k, e in entries.items() if e.get("split", "train") == split}},
            )
            for split in splits
        ]

    def _generate_examples(self, entries: dict):
        report = SkipReport("CSAW-S", strict=self.config.strict)
        for stem, entry in sorted(entries.items()):
            if entry["image"] is None:
                report.skip(next(iter(entry["masks"].values())), "masks without their image")
                continue
            try:
                pixels = read_mammogram(entry["image"]).pixel_array
                masks = {s: read_mammogram(entry["masks"][s]).pixel_array > 0 for s in LESION_STRUCTURES
                         if s in entry["masks"]}  # fmt: skip
            except MammogramReadError as error:
                report.skip(entry["image"], str(error))
                continue
            lesions = []
            for structure, mask in masks.items():
                if mask.shape != pixels.shape:
                    report.skip(
                        entry["masks"][structure], f"mask shape {mask.shape} differs from the image's {pixels.shape}"
                    )
                elif mask.any():
                    lesions.append((structure, mask_box(mask), mask))
            common = {"image_id": stem, "patient_id": entry["patient"], "laterality": "", "view": ""}
            labels = {"label_pathology": -1, "label_mass_margins": []}
            if self.config.name == "images":
                yield stem, {
                    "image": pixels,
                    **common,
                    "lesions": [
                        {"box": [box.top, box.left, box.bottom, box.right], "mask": encode_mask(box.crop(mask)),
                         "structure": structure, **labels}
                        for structure, box, mask in lesions
                    ],
                }  # fmt: skip
                continue
            for structure, box, _ in lesions:
                yield (
                    f"{stem}_{structure}",
                    lesion_crop_row(
                        pixels,
                        box,
                        self.config.context,
                        self.config.min_crop_size,
                        **common,
                        structure=structure,
                        **labels,
                    ),
                )
            yield from background_crop_rows(
                pixels, [box for _, box, _ in lesions], self.config, EXTRA_COLUMNS, **common
            )
        report.finish()


__all__ = ["CsawS", "index_files"]
