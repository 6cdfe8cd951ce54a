"""Mutation fuzzing of `read_mammogram` and `MammographyImageProcessor`: seeded mutations (bit flips, truncation,
header edits, both at once) of small mammograms in every transfer syntax this machine encodes, in JPEG baseline
(encoded by PIL and encapsulated here), in JPEG-LS and JPEG extended (pydicom's own test files: nothing here encodes
them) and in PNG / TIFF.
Every file must end as processed, finite pixels or a `MammogramReadError` naming the file and the problem: any other
exception (a processor's ValueError on a file included), a file slower than `--max_seconds` or non-finite pixels is a
failure. Prints a JSON
summary (outcomes by format and by class, the slowest file, the peak memory of the process).

    python tests/fuzz_reading.py --mutations 300            # per format: what the test suite runs (tests/test_fuzz.py)
    python tests/fuzz_reading.py --mutations 5000 --seed 1  # a longer campaign
"""

import argparse
import io
import json
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pydicom
import torch
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
)

sys.path.insert(0, str(Path(__file__).parent))
from dicom_factory import breast_image, write_dicom  # noqa: E402

from miram_hf.processing import MammogramReadError, MammographyImageProcessor  # noqa: E402

DICOM_SYNTAXES = {
    "explicit-le": ExplicitVRLittleEndian,
    "implicit-le": ImplicitVRLittleEndian,
    "big-endian": ExplicitVRBigEndian,
    "deflated": DeflatedExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpeg2000": JPEG2000Lossless,
}
# header fields and the values that broke readers before: zero, huge, negative, NaN, wrong kinds
HEADER_EDITS = {
    "Rows": [0, 1, 7, 65535], "Columns": [0, 1, 5, 65535], "BitsStored": [0, 1, 12, 17, 32],
    "BitsAllocated": [1, 8, 32], "HighBit": [0, 31], "NumberOfFrames": [0, 1, 2, 100000],
    "RescaleSlope": ["NaN", -1, 0, 1e308, 0.5], "RescaleIntercept": [-1e5, 1e308, "inf", 3],
    "PhotometricInterpretation": ["MONOCHROME1", "RGB", "PALETTE COLOR", ""], "SamplesPerPixel": [0, 3],
    "PixelRepresentation": [1, 2], "PixelPaddingValue": [0, 65535], "WindowCenter": ["NaN", 0],
}  # fmt: skip


def originals(folder: Path) -> dict[str, Path]:
    """One small mammogram (48 x 40, 12 bits) per format."""
    pixels = breast_image(rows=48, columns=40, bits=12)
    files = {}
    for name, syntax in DICOM_SYNTAXES.items():
        path = files[name] = write_dicom(folder / f"{name}.dcm", pixels, bits_stored=12)
        dataset = pydicom.dcmread(path)
        if syntax in (RLELossless, JPEG2000Lossless):
            dataset.compress(syntax)
            dataset.save_as(path)
        elif syntax != ExplicitVRLittleEndian:
            if syntax == ExplicitVRBigEndian:
                dataset.PixelData = pixels.astype(">u2").tobytes()
            dataset.file_meta.TransferSyntaxUID = syntax
            dcmwrite(path, dataset, implicit_vr=syntax == ImplicitVRLittleEndian,
                     little_endian=syntax != ExplicitVRBigEndian)  # fmt: skip
    files["jpeg-baseline"] = jpeg_baseline_dicom(folder / "jpeg-baseline.dcm", (pixels >> 4).astype(np.uint8))
    files["jpeg-ls"] = Path(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"))  # 64 x 64, 16 bits
    files["jpeg-extended"] = Path(get_testdata_file("JPGExtended.dcm"))  # 1024 x 256, 12 bits
    Image.fromarray(pixels).save(folder / "png.png")
    Image.fromarray(pixels).save(folder / "tiff.tiff")
    return files | {"png": folder / "png.png", "tiff": folder / "tiff.tiff"}


def jpeg_baseline_dicom(path: Path, pixels: np.ndarray) -> Path:
    """An 8-bit image as a JPEG baseline DICOM: PIL's codestream, encapsulated."""
    codestream = io.BytesIO()
    Image.fromarray(pixels).save(codestream, format="JPEG", quality=90)
    dataset = pydicom.dcmread(write_dicom(path, pixels.astype(np.uint16), bits_stored=8))
    dataset.BitsAllocated, dataset.HighBit = 8, 7
    dataset.PixelData = encapsulate([codestream.getvalue()])
    dataset["PixelData"].VR, dataset["PixelData"].is_undefined_length = "OB", True
    dataset.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    dataset.save_as(path)
    return path


def mutate(original: Path, target: Path, rng: np.random.Generator) -> str:
    """Write a mutation of `original` to `target`; returns its kind."""
    data = bytearray(original.read_bytes())
    kind = ("bit flips", "truncation", "header edit", "header edit + bit flips")[int(rng.integers(4))]
    if "header edit" in kind and original.suffix == ".dcm":
        dataset = pydicom.dcmread(original)
        for _ in range(int(rng.integers(1, 3))):
            keyword = list(HEADER_EDITS)[int(rng.integers(len(HEADER_EDITS)))]
            values = HEADER_EDITS[keyword]
            setattr(dataset, keyword, values[int(rng.integers(len(values)))])
            if keyword == "PixelPaddingValue":  # US or SS by the pixel representation: pydicom wants it said
                dataset[keyword].VR = "US"
        dataset.save_as(target)
        data = bytearray(target.read_bytes())
    if "bit flips" in kind or ("header edit" in kind and original.suffix != ".dcm"):
        header_only = "header" in kind or rng.random() < 0.5
        for _ in range(int(rng.integers(1, 9))):
            position = int(rng.integers(min(len(data), 1024) if header_only else len(data)))
            data[position] ^= 1 << int(rng.integers(8))
    if kind == "truncation":
        data = data[: int(rng.integers(len(data)))]
    target.write_bytes(bytes(data))
    return kind


def outcome(path: Path, processor: MammographyImageProcessor) -> str:
    try:
        inputs = processor([path], return_tensors="pt")
    except MammogramReadError:
        return "read error"
    except Exception as error:  # what the fuzzing looks for: a file's problem must be a read error naming the file
        return f"FAILURE {type(error).__name__}: {error}"[:300]
    tensors = [inputs["pixel_values"], *inputs.get("target_pixel_values", [])]
    if not all(torch.isfinite(tensor).all() for tensor in tensors):
        return "FAILURE non-finite pixels"
    return "processed"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mutations", type=int, default=300, help="per format")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_seconds", type=float, default=5.0, help="a slower file is a failure")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # pydicom rightly warns about every malformed file
    processor = MammographyImageProcessor(size={"height": 64, "width": 64}, scales=[1, 2])
    summary = {"mutations": 0, "by_format": {}, "by_class": {}, "failures": [], "slowest": (0.0, "")}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for name, original in originals(folder).items():
            rng = np.random.default_rng([args.seed, len(name), sum(name.encode())])
            counts = summary["by_format"].setdefault(name, {})
            for index in range(args.mutations):
                target = folder / f"mutated-{name}-{index}{original.suffix}"
                kind = mutate(original, target, rng)
                started = time.perf_counter()
                result = outcome(target, processor)
                seconds = time.perf_counter() - started
                if seconds > summary["slowest"][0]:
                    summary["slowest"] = (seconds, f"{name} #{index} ({kind})")
                if seconds > args.max_seconds:
                    result = f"FAILURE slow ({seconds:.1f} s)"
                if result.startswith("FAILURE"):
                    summary["failures"].append(f"{name} #{index} ({kind}): {result}")
                    result = "failure"
                counts[result] = counts.get(result, 0) + 1
                summary["by_class"][result] = summary["by_class"].get(result, 0) + 1
                summary["mutations"] += 1
                target.unlink()
    summary["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    sys.exit(1 if main()["failures"] else 0)
