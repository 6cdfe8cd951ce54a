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
from .common import CollectionImage, Lesion, MammographyBuilder, SkipReport

STRUCTURES = (
    "cancer", "calcifications", "axillary_lymph_nodes", "thick_vessels", "foreign_object", "skin", "nipple", "text",
    "non-mammary_tissue", "pectoral_muscle", "mammary_gland",
)  # fmt: skip
LESION_STRUCTURES = ("cancer", "calcifications")


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
    COLLECTION = "CSAW-S"
    LAYOUT = ("anonymized_dataset/<patient>/<id>_<n>.png images with their masks <id>_<n>_<structure>.png (and the "
              "test set's annotator_1 .. annotator_3 folders).")  # fmt: skip
    LESION_COLUMNS = {"structure": datasets.Value("string")}

    def _split_sources(self) -> tuple[dict[str, dict], list[tuple[str, str]]]:
        root = self.data_root()
        entries = index_files(root)
        if not any(entry["image"] for entry in entries.values()):
            raise self.layout_error(root)
        splits = sorted({entry.get("split", "train") for entry in entries.values() if entry["image"]})
        # masks whose image is missing have no split: reported with train
        sources = {split: {"entries": {k: e for k, e in entries.items() if e.get("split", "train") == split}}
                   for split in splits}  # fmt: skip
        return sources, []

    def _read_images(self, report: SkipReport, entries: dict):
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
                    box = mask_box(mask)
                    columns = {"structure": structure, "label_pathology": -1, "label_mass_margins": []}
                    lesions.append(Lesion(box, box.crop(mask), columns))
            yield CollectionImage(pixels, stem, entry["patient"], "", "", lesions=lesions)


__all__ = ["CsawS", "index_files"]
