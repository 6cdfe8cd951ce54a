"""Mammograms per second from a 16-bit 3328x4084 DICOM file to a model-ready tensor, against the bare decode
`pydicom.dcmread(path).pixel_array` of the same files (what reading them costs with pydicom's defaults).

    python bench/processing.py --files 6 --rounds 7

Measured for uncompressed files (CBIS-DDSM) and JPEG 2000 lossless ones (as many archives store them), interleaved
(each round times the bare decode and then the pipeline on every file), reported as medians over rounds; the goal is
a full pipeline at most 1.5x the bare decode. `read_mammogram` alone is measured the same way.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import torch
from pydicom.uid import JPEG2000Lossless

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from dicom_factory import write_dicom  # noqa: E402

from miram_hf import MammographyImageProcessor  # noqa: E402
from miram_hf.processing import read_mammogram  # noqa: E402

FORMATS = ["uncompressed", "jpeg2000_lossless"]


def synthetic_mammogram(rows: int, columns: int, seed: int) -> np.ndarray:
    """14-bit breast-like image: a half-ellipse of textured tissue on a dark background, and a bright label."""
    rng = np.random.default_rng(seed)
    y, x = np.ogrid[0:rows, 0:columns]
    inside = (x / (0.75 * columns)) ** 2 + ((y - rows / 2) / (0.45 * rows)) ** 2 < 1
    texture = rng.integers(6000, 12000, size=(rows // 16 + 1, columns // 16 + 1), dtype=np.uint16)
    texture = np.kron(texture, np.ones((16, 16), dtype=np.uint16))[:rows, :columns]
    image = np.where(inside, texture, rng.integers(50, 200, size=(rows, columns)).astype(np.uint16))
    image[100:180, columns - 400 : columns - 100] = 16383
    return image.astype(np.uint16)


def bare_decode(path: Path) -> np.ndarray:
    return pydicom.dcmread(path).pixel_array


def interleaved(paths: list[Path], step: Callable[[Path], object], rounds: int) -> dict:
    """Each round times the bare decode, then `step`, on every file. Returns medians over rounds of the files per
    second and of the ratio of the two times, taken within each round, so that the machine's drift cancels."""
    for path in paths[:2]:  # warm-up: imports, allocator, page cache
        bare_decode(path)
        step(path)
    bare, candidate = [], []
    for _ in range(rounds):
        for function, seconds in ((bare_decode, bare), (step, candidate)):
            start = time.perf_counter()
            for path in paths:
                function(path)
            seconds.append((time.perf_counter() - start) / len(paths))
    return {
        "bare_decode_per_s": round(1 / statistics.median(bare), 2),
        "per_s": round(1 / statistics.median(candidate), 2),
        "over_bare": round(statistics.median(c / b for c, b in zip(candidate, bare, strict=True)), 3),
    }


def measure(paths: list[Path], processor: MammographyImageProcessor, rounds: int) -> dict:
    return {
        "pipeline": interleaved(paths, lambda path: processor(path, return_tensors="pt"), rounds),
        "read_mammogram": interleaved(paths, read_mammogram, rounds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=4084)
    parser.add_argument("--columns", type=int, default=3328)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=FORMATS)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "processing_cpu.json")
    args = parser.parse_args()
    processor = MammographyImageProcessor(size={"height": args.size, "width": args.size})
    report = {
        "image": f"{args.rows}x{args.columns}, 14 of 16 bits stored",
        "output": f"1x{args.size}x{args.size}",
        "threads": torch.get_num_threads(),
    }
    with tempfile.TemporaryDirectory() as folder:
        paths = [
            write_dicom(Path(folder) / f"{i}.dcm", synthetic_mammogram(args.rows, args.columns, i), bits_stored=14)
            for i in range(args.files)
        ]
        if "uncompressed" in args.formats:
            report["uncompressed"] = measure(paths, processor, args.rounds)
        if "jpeg2000_lossless" in args.formats:
            for path in paths:
                dataset = pydicom.dcmread(path)
                dataset.compress(JPEG2000Lossless)
                dataset.save_as(path)
            report["jpeg2000_lossless"] = measure(paths, processor, args.rounds)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
