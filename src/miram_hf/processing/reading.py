"""Reading mammograms: DICOM (any transfer syntax pydicom's plugins decode) and PNG / TIFF / PGM, into one `Mammogram`.

Imports only numpy, PIL and pydicom, so that the image processor that uses it stays Hub-portable.
"""

import importlib.util
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.encaps import generate_fragments
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut

# Larger than any detector (about 4k x 5k); refused before the pixel data is allocated.
MAX_SIDE = 16384
MAX_PIXELS = 100_000_000
# A deflated dataset is inflated up to this many bytes (the largest image at 16 bits, and room for its header).
MAX_INFLATED = 2 * MAX_PIXELS + 2**24
DEFLATED = "1.2.840.10008.1.2.1.99"

# Which pydicom plugin package decodes which compressed transfer syntax, and the module it installs.
DECODER_MODULES = {"pylibjpeg-openjpeg": "openjpeg", "pylibjpeg-libjpeg": "libjpeg", "pydicom (built in)": "pydicom"}
DECODER_PACKAGES = {
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg",  # JPEG 2000
    "1.2.840.10008.1.2.4.201": "pylibjpeg-openjpeg",  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202": "pylibjpeg-openjpeg",  # HTJ2K lossless RPCL
    "1.2.840.10008.1.2.4.203": "pylibjpeg-openjpeg",  # HTJ2K
    "1.2.840.10008.1.2.4.50": "pylibjpeg-libjpeg",  # JPEG baseline
    "1.2.840.10008.1.2.4.51": "pylibjpeg-libjpeg",  # JPEG extended
    "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg",  # JPEG lossless
    "1.2.840.10008.1.2.4.70": "pylibjpeg-libjpeg",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80": "pylibjpeg-libjpeg",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": "pylibjpeg-libjpeg",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.5": "pydicom (built in)",  # RLE lossless
}

# ViewCodeSequence code values (SNOMED CT) of the mammography views.
VIEW_CODES = {
    "399162004": "CC",
    "399368009": "MLO",
    "399260004": "ML",
    "399352003": "LM",
    "399099002": "XCCL",
    "399192003": "FB",
}
KNOWN_VIEWS = {"CC", "MLO", "ML", "LM", "XCCL", "XCCM", "FB", "SIO", "LMO", "AT"}


class MammogramReadError(Exception):
    """A file that cannot be read as a mammogram; says which file and why."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass
class Mammogram:
    """A mammogram's pixels (2-D; uint16 for integer data, float32 after a fractional rescale or windowing; higher
    always means denser) and the non-identifying attributes the models and builders use. Nothing else of the file is
    kept: no names, IDs, dates or institutions. `pixel_array` may be a read-only view of the file's bytes (uncompressed
    data that needed no change): copy it to change it in place."""

    pixel_array: np.ndarray
    source_path: str
    laterality: str | None = None  # "L" | "R"
    view: str | None = None  # "CC", "MLO", ...
    photometric_interpretation: str | None = None  # as stored; the pixels are already MONOCHROME2-like
    bits_stored: int | None = None
    pixel_spacing: tuple[float, float] | None = None  # (row, column) in mm
    manufacturer: str | None = None
    presentation_intent: str | None = None  # "FOR PRESENTATION" | "FOR PROCESSING"

    @property
    def max_value(self) -> float:
        """The largest value the pixels can take: 2**bits_stored - 1 for integer data, the maximum otherwise (1 when
        nothing is above 0: a blank image, taken as it is)."""
        if self.pixel_array.dtype == np.uint16 and self.bits_stored:
            return float(2**self.bits_stored - 1)
        top = float(self.pixel_array.max()) if self.pixel_array.size else 0.0
        return top if top > 0 else 1.0


def read_mammogram(path: str | Path, frame: int | None = None, apply_window: bool = False) -> Mammogram:
    """Read a mammogram from a DICOM file or a PNG / TIFF / PGM image.

    DICOM: the modality LUT (rescale slope / intercept or LUT sequence) is applied, MONOCHROME1 is inverted so that
    higher always means denser, padding pixels (PixelPaddingValue) become 0. With `apply_window`, the first VOI window
    (or the VOI LUT sequence) is applied as well. `frame` picks one frame of a multi-frame file (tomosynthesis).

    Raises `MammogramReadError` (and nothing else) for a file that cannot be read, naming the file and the reason.
    """
    path = Path(path)
    try:
        if not path.exists():
            raise MammogramReadError(path, "no such file")
        if not path.is_file():
            raise MammogramReadError(path, f"not a regular file ({_file_kind(path)})")
        if path.stat().st_size == 0:
            raise MammogramReadError(path, "empty file")
        _check_inflated_size(path)
        try:
            dataset = pydicom.dcmread(path)
        except InvalidDicomError:
            pixels = _open_image(path)
            if pixels is not None:
                return _image_mammogram(path, pixels)
            dataset = _read_dicom_without_preamble(path)
        return _read_dicom(path, dataset, frame, apply_window)
    except MammogramReadError:
        raise
    except Exception as error:  # a reader's own exception types must not escape: say what failed, and where
        raise MammogramReadError(path, f"unreadable ({type(error).__name__}: {error})") from error


def _file_kind(path: Path) -> str:
    mode = path.stat().st_mode
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))  # fmt: skip
    return next((kind for test, kind in kinds if test(mode)), "not a file")


def _check_inflated_size(path: Path) -> None:
    """A deflated DICOM dataset (Deflated Explicit VR Little Endian) is inflated here first, counting, and refused
    once past MAX_INFLATED: pydicom would inflate it whole into memory, however large it claims to be."""
    try:
        syntax = pydicom.filereader.read_file_meta_info(path).get("TransferSyntaxUID")
    except Exception:  # no file meta: pydicom decides below what this is
        return
    if syntax != DEFLATED:
        return
    with open(path, "rb") as file:
        head = file.read(144)  # preamble, DICM, then (0002,0000) group length: the dataset starts after the group
        if head[128:136] != b"DICM\x02\x00\x00\x00":
            return
        file.seek(144 + struct.unpack("<I", head[140:144])[0])
        inflater, inflated = zlib.decompressobj(-zlib.MAX_WBITS), 0
        while chunk := file.read(2**20):
            while chunk:
                inflated += len(inflater.decompress(chunk, 2**24))
                if inflated > MAX_INFLATED:
                    raise MammogramReadError(path, f"the deflated dataset inflates to more than {MAX_INFLATED} "
                                                   "bytes; refusing to inflate it")  # fmt: skip
                chunk = inflater.unconsumed_tail


def _read_dicom_without_preamble(path: Path) -> pydicom.Dataset:
    """Old files may lack the 128-byte preamble and 'DICM' marker; accept them only if they parse to an image."""
    try:
        dataset = pydicom.dcmread(path, force=True)
        if "Rows" in dataset and "Columns" in dataset:
            return dataset
    except Exception:
        pass
    raise MammogramReadError(path, "neither a DICOM file nor a readable image (png, tiff, pgm)")


def _open_image(path: Path) -> np.ndarray | None:
    """The pixels of a PNG / TIFF / PGM file (a palette image through its palette), or None when PIL does not
    recognise the file."""
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(image.convert("RGBA" if "transparency" in image.info else "RGB")
                              if image.mode == "P" else image)  # fmt: skip
    except Exception:
        return None


def _image_mammogram(path: Path, pixels: np.ndarray) -> Mammogram:
    if pixels.ndim == 3:
        if pixels.shape[-1] in (3, 4) and np.array_equal(pixels[..., 0], pixels[..., 1]):
            pixels = pixels[..., 0]  # gray saved as RGB
        else:
            raise MammogramReadError(path, f"colour image ({pixels.shape[-1]} channels); mammograms are single-channel")
    _check_size(path, *pixels.shape)
    if pixels.dtype == np.uint8:
        bits = 8
    elif pixels.dtype in (np.uint16, np.int32, np.int16):  # PIL opens 16-bit PNG as I;16 or I
        if pixels.min() < 0 or pixels.max() > 65535:
            raise MammogramReadError(path, "pixel values outside 0..65535")
        bits = 16
    elif pixels.dtype == bool:
        bits = 1
    else:
        if not np.isfinite(pixels).all():
            raise MammogramReadError(path, "NaN or infinite pixel values")
        return Mammogram(pixels.astype(np.float32), str(path), photometric_interpretation="MONOCHROME2")
    return Mammogram(pixels.astype(np.uint16), str(path), photometric_interpretation="MONOCHROME2", bits_stored=bits)


def _check_size(path: Path, rows: int, columns: int, frames: int = 1) -> None:
    if rows == 0 or columns == 0:
        raise MammogramReadError(path, f"zero size ({rows} x {columns})")
    if rows > MAX_SIDE or columns > MAX_SIDE or rows * columns * frames > MAX_PIXELS:
        raise MammogramReadError(path, f"absurd dimensions ({frames} x {rows} x {columns}); refusing to allocate")


def _read_dicom(path: Path, dataset: pydicom.Dataset, frame: int | None, apply_window: bool) -> Mammogram:
    if "PixelData" not in dataset and "FloatPixelData" not in dataset:
        raise MammogramReadError(path, "no pixel data")
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if int(dataset.get("SamplesPerPixel", 1)) != 1 or not photometric.startswith("MONOCHROME"):
        raise MammogramReadError(path, f"colour image ({photometric}); mammograms are single-channel")
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    rows, columns = int(dataset.get("Rows", 0)), int(dataset.get("Columns", 0))
    _check_size(path, rows, columns, frames)
    if frames > 1 and frame is None:
        raise MammogramReadError(path, f"multi-frame image ({frames} frames, tomosynthesis?): pass frame=<index>")
    if frame is not None and not 0 <= frame < frames:
        raise MammogramReadError(path, f"frame {frame} does not exist ({frames} frames)")

    file_meta = getattr(dataset, "file_meta", None)
    syntax = str(file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2")) if file_meta is not None else None
    if syntax in UNCOMPRESSED_SYNTAXES and "PixelData" in dataset:
        expected = rows * columns * frames * int(dataset.get("BitsAllocated", 16)) // 8
        if len(dataset.PixelData) < expected:
            raise MammogramReadError(path, f"truncated pixel data ({len(dataset.PixelData)} of {expected} bytes)")
    if syntax in DECODER_PACKAGES and "PixelData" in dataset:  # before the decoder allocates what the stream claims
        claimed = _codestream_size(next(_image_fragments(dataset.PixelData), b""))
        if claimed is not None and claimed != (rows, columns):
            raise MammogramReadError(path, f"the compressed image claims {claimed[0]} x {claimed[1]} pixels, the "
                                           f"header {rows} x {columns}")  # fmt: skip
    slope = dataset.get("RescaleSlope")
    if slope is not None and not float(slope) > 0:  # NaN, 0 or negative: no mammogram's modality LUT
        raise MammogramReadError(path, f"RescaleSlope {slope} is not a positive number")
    bits = int(dataset.get("BitsStored", 16))
    if not 1 <= bits <= int(dataset.get("BitsAllocated", 16)):
        raise MammogramReadError(path, f"BitsStored {bits} is not in 1..BitsAllocated")
    try:
        raw = _stored_values(dataset, syntax, bits, frame)
    except Exception as error:
        raise MammogramReadError(path, _decode_failure(syntax, error)) from error
    if raw.shape != (rows, columns):  # e.g. more than one frame's worth of data where the header says one frame
        raise MammogramReadError(path, f"the pixel data decodes to shape {raw.shape}, not the one {rows} x {columns} "
                                       f"frame of the header (NumberOfFrames {frames})")  # fmt: skip
    padding = dataset.get("PixelPaddingValue")
    is_padding = raw == padding if padding is not None else None

    pixels = _modality_values(raw, dataset)
    if apply_window:
        pixels = apply_voi_lut(pixels, dataset, index=0)
    pixels = _to_storage_dtype(pixels)
    if pixels.dtype.kind == "f" and not np.isfinite(pixels).all():  # in float32, as the models will see them
        raise MammogramReadError(path, "NaN or infinite pixel values after the modality LUT (RescaleSlope "
                                       f"{slope}, RescaleIntercept {dataset.get('RescaleIntercept')})")  # fmt: skip
    if not pixels.flags.writeable and (photometric == "MONOCHROME1" or is_padding is not None):
        pixels = pixels.copy()  # the file's bytes, changed below
    if photometric == "MONOCHROME1":
        pixels = _invert(pixels, bits)
    if is_padding is not None:
        pixels[is_padding] = 0  # the padding is outside the breast: background after any inversion

    return Mammogram(
        pixel_array=pixels,
        source_path=str(path),
        laterality=_laterality(dataset),
        view=_view(dataset),
        photometric_interpretation=photometric,
        bits_stored=bits,
        pixel_spacing=_pixel_spacing(dataset),
        manufacturer=str(dataset.get("Manufacturer", "")).strip() or None,
        presentation_intent=str(dataset.get("PresentationIntentType", "")).strip() or None,
    )


UNCOMPRESSED_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"}


def _decode_failure(syntax: str | None, error: Exception) -> str:
    message = f"{type(error).__name__}: {error}"
    if syntax in DECODER_PACKAGES:
        package = DECODER_PACKAGES[syntax]
        if importlib.util.find_spec(DECODER_MODULES[package]) is None:
            return f"cannot decode transfer syntax {syntax}: install {package} ({message})"
        return f"{package} could not decode this transfer syntax {syntax} ({message})"
    if syntax not in UNCOMPRESSED_SYNTAXES:
        return f"unsupported transfer syntax {syntax} ({message})"
    return f"cannot decode the pixel data ({message})"


def _image_fragments(pixel_data: bytes):
    """The encapsulated pixel data's fragments after the basic offset table (the first frame's come first)."""
    fragments = generate_fragments(pixel_data)
    next(fragments, None)
    return fragments


def _codestream_size(codestream: bytes) -> tuple[int, int] | None:
    """(rows, columns) that a JPEG 2000 (SIZ) or JPEG / JPEG-LS (SOF) codestream says it holds, or None where it says
    nothing this parser knows. A JPEG frame header may give 0 rows (defined later by a DNL marker): returned as 0."""
    if codestream[:4] == b"\xff\x4f\xff\x51" and len(codestream) >= 24:  # SOC, SIZ: Xsiz, Ysiz, XOsiz, YOsiz
        width, height, left, top = struct.unpack(">IIII", codestream[8:24])
        return height - top, width - left
    if codestream[:2] != b"\xff\xd8":
        return None
    position = 2
    while position + 9 <= len(codestream) and codestream[position] == 0xFF:
        marker = codestream[position + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) or marker == 0xF7:  # SOFn, JPEG-LS SOF55
            return struct.unpack(">HH", codestream[position + 5 : position + 9])
        if marker == 0xDA:  # start of scan without a frame header
            return None
        position += 2 + struct.unpack(">H", codestream[position + 2 : position + 4])[0]
    return None


def _stored_values(dataset: pydicom.Dataset, syntax: str | None, bits_stored: int, frame: int | None) -> np.ndarray:
    """The decoded pixel values of the image (or of `frame` alone), with the bits above BitsStored cleared (PS3.5
    8.1.1: they may hold anything).

    Uncompressed unsigned data is read as a view of the file's bytes: when nothing lies above BitsStored (one read
    pass to check) the view is returned as it is (read-only), else it is masked in one pass. pydicom's own correction
    copies the array and then shifts it twice, three passes over a 27 MB mammogram."""
    unsigned_integers = "PixelData" in dataset and int(dataset.get("PixelRepresentation", 0)) == 0
    if syntax not in UNCOMPRESSED_SYNTAXES or not unsigned_integers:
        dataset.pixel_array_options(index=frame)
        return dataset.pixel_array  # a fresh array; signed values need pydicom's sign extension, floats no mask
    dataset.pixel_array_options(index=frame, view_only=True, correct_unused_bits=False)
    view = dataset.pixel_array
    top = (1 << min(bits_stored, 8 * view.dtype.itemsize)) - 1
    whole = 2 * view.nbytes > len(dataset.PixelData)  # a frame's view would keep the whole volume alive
    if whole and view.dtype.isnative and view.size and int(view.max()) <= top:
        return view
    return np.bitwise_and(view, top)


def _modality_values(raw: np.ndarray, dataset: pydicom.Dataset) -> np.ndarray:
    """The modality LUT's output. pydicom turns any rescale, the identity included, into float64; skipped then."""
    slope, intercept = dataset.get("RescaleSlope"), dataset.get("RescaleIntercept")
    rescales = slope is not None and intercept is not None and (float(slope), float(intercept)) != (1, 0)
    if not rescales and not dataset.get("ModalityLUTSequence"):
        return raw
    return apply_modality_lut(raw, dataset)


def _to_storage_dtype(pixels: np.ndarray) -> np.ndarray:
    """uint16 when the values are integers in 0..65535, float32 otherwise (fractional rescale, windowing)."""
    if pixels.dtype == np.uint16:
        return pixels
    if np.issubdtype(pixels.dtype, np.integer) or np.array_equal(pixels, np.round(pixels)):
        low, high = (pixels.min(), pixels.max()) if pixels.size else (0, 0)
        if low >= 0 and high <= 65535:
            return pixels.astype(np.uint16)
    return pixels.astype(np.float32)


def _invert(pixels: np.ndarray, bits: int) -> np.ndarray:
    if pixels.dtype == np.uint16:
        top = max(2**bits - 1, int(pixels.max()))
        return np.subtract(top, pixels, out=pixels)  # in place: the array is this reader's own
    return (pixels.max() + pixels.min() - pixels).astype(np.float32)


def _laterality(dataset: pydicom.Dataset) -> str | None:
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(dataset.get(keyword, "")).strip().upper()
        if value in ("L", "R"):
            return value
    return None


def _view(dataset: pydicom.Dataset) -> str | None:
    value = str(dataset.get("ViewPosition", "")).strip().upper()
    if value:
        return value
    sequence = dataset.get("ViewCodeSequence")
    if sequence:
        code = str(sequence[0].get("CodeValue", "")).strip()
        if code in VIEW_CODES:
            return VIEW_CODES[code]
    orientation = dataset.get("PatientOrientation")
    if orientation:  # CBIS-DDSM writes the view here ('CC', 'MLO') instead of the usual ['A', 'R']
        values = [orientation] if isinstance(orientation, str) else list(orientation)
        for value in values:
            if str(value).strip().upper() in KNOWN_VIEWS:
                return str(value).strip().upper()
    return None


def _pixel_spacing(dataset: pydicom.Dataset) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = dataset.get(keyword)
        if value is not None and len(value) == 2:
            return float(value[0]), float(value[1])
    return None
