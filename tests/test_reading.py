import importlib.util
import os
from dataclasses import fields
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from dicom_factory import PHI, breast_image, cbis_ddsm_dicom, cmmd_dicom, vindr_dicom, write_dicom
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from miram_hf.processing import Mammogram, MammogramReadError, read_mammogram, reading


def test_cbis_ddsm_secondary_capture(tmp_path):
    pixels = breast_image(side="R")
    mammogram = read_mammogram(cbis_ddsm_dicom(tmp_path / "1-1.dcm", pixels, view="MLO", laterality="R"))
    assert mammogram.pixel_array.dtype == np.uint16
    np.testing.assert_array_equal(mammogram.pixel_array, pixels)
    assert (mammogram.laterality, mammogram.view, mammogram.bits_stored) == ("R", "MLO", 16)
    assert mammogram.photometric_interpretation == "MONOCHROME2"


def test_cmmd_view_from_view_code_sequence(tmp_path):
    mammogram = read_mammogram(cmmd_dicom(tmp_path / "1-1.dcm", view="MLO", laterality="R"))
    assert (mammogram.laterality, mammogram.view, mammogram.bits_stored) == ("R", "MLO", 8)
    assert mammogram.pixel_array.max() <= 255 and mammogram.pixel_array.dtype == np.uint16
    assert mammogram.pixel_spacing == (0.094, 0.094)
    assert mammogram.manufacturer == "GE MEDICAL SYSTEMS"


def test_vindr_monochrome1_is_inverted_and_padding_is_background(tmp_path):
    mammogram = read_mammogram(vindr_dicom(tmp_path / "image.dicom"))
    expected = breast_image(bits=12)
    np.testing.assert_array_equal(mammogram.pixel_array[:, :-4], expected[:, :-4])  # denser is higher again
    assert (mammogram.pixel_array[:, -4:] == 0).all()
    assert mammogram.photometric_interpretation == "MONOCHROME1"
    assert mammogram.pixel_spacing == (0.085, 0.085) and mammogram.presentation_intent == "FOR PRESENTATION"


def test_vindr_first_window_on_request(tmp_path):
    path = vindr_dicom(tmp_path / "image.dicom")
    windowed = read_mammogram(path, apply_window=True)
    raw = read_mammogram(path)
    assert windowed.pixel_array.dtype == np.float32
    # the first window (centre 2047, width 4096) spans the 12-bit range: nearly the identity, still inverted
    breast = raw.pixel_array[:, :-4] > 1000
    assert np.corrcoef(windowed.pixel_array[:, :-4][breast], raw.pixel_array[:, :-4][breast])[0, 1] > 0.99


def test_rescale_slope_and_intercept(tmp_path):
    pixels = breast_image(bits=12)
    path = write_dicom(tmp_path / "x.dcm", pixels, bits_stored=12, RescaleSlope=2, RescaleIntercept=10)
    np.testing.assert_array_equal(read_mammogram(path).pixel_array, pixels.astype(np.int64) * 2 + 10)
    identity = read_mammogram(write_dicom(tmp_path / "i.dcm", pixels, RescaleSlope=1, RescaleIntercept=0))
    assert identity.pixel_array.dtype == np.uint16
    np.testing.assert_array_equal(identity.pixel_array, pixels)
    fractional = write_dicom(tmp_path / "y.dcm", pixels, bits_stored=12, RescaleSlope=0.5, RescaleIntercept=0)
    mammogram = read_mammogram(fractional)
    assert mammogram.pixel_array.dtype == np.float32
    np.testing.assert_allclose(mammogram.pixel_array, pixels * 0.5)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian, RLELossless])
def test_bits_above_bits_stored_are_cleared(tmp_path, syntax):
    """PS3.5 8.1.1: the bits above BitsStored may hold anything (old modalities kept overlays there)."""
    pixels = breast_image(rows=64, columns=48, bits=12)
    path = write_dicom(tmp_path / "x.dcm", pixels | 0xB000, bits_stored=12)
    dataset = pydicom.dcmread(path)
    if syntax == RLELossless:
        dataset.compress(syntax)
    elif syntax == ExplicitVRBigEndian:
        dataset.PixelData = (pixels | 0xB000).astype(">u2").tobytes()
    dataset.file_meta.TransferSyntaxUID = syntax
    dcmwrite(path, dataset, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=syntax != ExplicitVRBigEndian)
    mammogram = read_mammogram(path)
    np.testing.assert_array_equal(mammogram.pixel_array, pixels)
    assert mammogram.pixel_array.flags.writeable and mammogram.pixel_array.dtype == np.uint16
    clean = write_dicom(tmp_path / "clean.dcm", pixels, bits_stored=12)  # nothing above BitsStored: no copy made
    assert not read_mammogram(clean).pixel_array.flags.writeable
    np.testing.assert_array_equal(read_mammogram(clean).pixel_array, pixels)
    inverted = read_mammogram(write_dicom(tmp_path / "m1.dcm", pixels, bits_stored=12, photometric="MONOCHROME1"))
    np.testing.assert_array_equal(inverted.pixel_array, 4095 - pixels)  # changed: on a copy of the file's bytes


def test_float_pixel_data_stays_float(tmp_path):
    values = np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(64, 48)
    dataset = pydicom.dcmread(write_dicom(tmp_path / "x.dcm", np.zeros((64, 48))))
    del dataset.PixelData, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation
    dataset.BitsAllocated = 32
    dataset.FloatPixelData = values.tobytes()
    dataset.save_as(tmp_path / "x.dcm")
    mammogram = read_mammogram(tmp_path / "x.dcm")
    assert mammogram.pixel_array.dtype == np.float32
    np.testing.assert_array_equal(mammogram.pixel_array, values)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_compressed_transfer_syntaxes_decode_losslessly(tmp_path, syntax):
    pixels = breast_image(rows=64, columns=48, bits=14)
    path = write_dicom(tmp_path / "raw.dcm", pixels, bits_stored=14, ImageLaterality="L", ViewPosition="MLO")
    dataset = pydicom.dcmread(path)
    dataset.compress(syntax)
    dataset.save_as(tmp_path / "compressed.dcm")
    mammogram = read_mammogram(tmp_path / "compressed.dcm")
    np.testing.assert_array_equal(mammogram.pixel_array, pixels)
    assert mammogram.view == "MLO"


def test_no_identifying_attribute_is_kept(tmp_path):
    mammogram = read_mammogram(cbis_ddsm_dicom(tmp_path / "1-1.dcm"))
    kept = {field.name for field in fields(Mammogram)}
    assert kept == {
        "pixel_array",
        "source_path",
        "laterality",
        "view",
        "photometric_interpretation",
        "bits_stored",
        "pixel_spacing",
        "manufacturer",
        "presentation_intent",
    }
    values = " ".join(str(getattr(mammogram, name)) for name in kept - {"pixel_array", "source_path"})
    assert not any(str(value) in values for value in PHI.values())


@pytest.mark.parametrize("bits", [8, 16])
def test_png_and_pgm_share_the_path(tmp_path, bits):
    pixels = breast_image(bits=bits)
    image = Image.fromarray(pixels.astype(np.uint8) if bits == 8 else pixels)
    for suffix in (".png", ".pgm", ".tif") if bits == 8 else (".png", ".tif"):
        path = tmp_path / f"image{suffix}"
        image.save(path)
        mammogram = read_mammogram(path)
        assert mammogram.pixel_array.dtype == np.uint16 and mammogram.bits_stored == bits
        np.testing.assert_array_equal(mammogram.pixel_array, pixels)


def unreadable_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    cases = {}
    (tmp_path / "empty.dcm").write_bytes(b"")
    cases["empty"] = (tmp_path / "empty.dcm", "empty file")
    (tmp_path / "notes.txt").write_text("not an image")
    cases["not dicom"] = (tmp_path / "notes.txt", "neither a DICOM file nor a readable image")
    cases["missing"] = (tmp_path / "missing.dcm", "no such file")

    no_pixels = pydicom.dcmread(write_dicom(tmp_path / "a.dcm", breast_image()))
    del no_pixels.PixelData
    no_pixels.save_as(tmp_path / "no_pixels.dcm")
    cases["no pixel data"] = (tmp_path / "no_pixels.dcm", "no pixel data")

    truncated = pydicom.dcmread(tmp_path / "a.dcm")
    truncated.PixelData = truncated.PixelData[:1000]
    truncated.save_as(tmp_path / "truncated.dcm")
    cases["truncated"] = (tmp_path / "truncated.dcm", "truncated pixel data")

    colour = pydicom.dcmread(tmp_path / "a.dcm")
    colour.SamplesPerPixel = 3
    colour.PhotometricInterpretation = "RGB"
    colour.save_as(tmp_path / "colour.dcm")
    cases["colour"] = (tmp_path / "colour.dcm", "colour image")

    zero = pydicom.dcmread(tmp_path / "a.dcm")
    zero.Rows = 0
    zero.save_as(tmp_path / "zero.dcm")
    cases["zero size"] = (tmp_path / "zero.dcm", "zero size")

    huge = pydicom.dcmread(tmp_path / "a.dcm")
    huge.Rows, huge.Columns = 60000, 60000
    huge.save_as(tmp_path / "huge.dcm")
    cases["absurd"] = (tmp_path / "huge.dcm", "absurd dimensions")

    frames = np.stack([breast_image(), breast_image(seed=1)])
    cases["multi-frame"] = (write_dicom(tmp_path / "tomo.dcm", frames), "multi-frame image (2 frames")

    unknown = pydicom.dcmread(tmp_path / "a.dcm")
    unknown.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG-2
    unknown.PixelData = encapsulate([b"\x00" * 64])
    unknown.save_as(tmp_path / "mpeg.dcm", enforce_file_format=True)
    cases["unsupported syntax"] = (tmp_path / "mpeg.dcm", "unsupported transfer syntax 1.2.840.10008.1.2.4.100")

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "c.png")
    cases["colour png"] = (tmp_path / "c.png", "colour image")
    return cases


def test_every_unreadable_file_raises_a_typed_error_naming_it(tmp_path):
    for case, (path, reason) in unreadable_files(tmp_path).items():
        with pytest.raises(MammogramReadError) as error:
            read_mammogram(path)
        assert str(path) in str(error.value), case
        assert reason in error.value.reason, (case, error.value.reason)


def test_a_frame_of_a_multi_frame_file(tmp_path):
    frames = np.stack([breast_image(), breast_image(seed=1)])
    path = write_dicom(tmp_path / "tomo.dcm", frames)
    pixels = read_mammogram(path, frame=1).pixel_array
    np.testing.assert_array_equal(pixels, frames[1])
    assert pixels.flags.owndata  # the frame alone, not a view that keeps the whole volume
    with pytest.raises(MammogramReadError, match="frame 2 does not exist"):
        read_mammogram(path, frame=2)


def test_missing_decoder_names_the_package(tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "openjpeg" else real_find_spec(name))
    pixels = breast_image(rows=32, columns=32)
    dataset = pydicom.dcmread(write_dicom(tmp_path / "raw.dcm", pixels))
    dataset.compress(JPEG2000Lossless)
    dataset.save_as(tmp_path / "j2k.dcm")

    def no_plugin(self, *args, **kwargs):
        raise RuntimeError("Unable to decode as there are no pixel data plugins available")

    monkeypatch.setattr(pydicom.Dataset, "pixel_array", property(no_plugin))
    with pytest.raises(MammogramReadError, match="install pylibjpeg-openjpeg"):
        read_mammogram(tmp_path / "j2k.dcm")


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the malformed test files, as it should
def test_pydicom_bundled_files_yield_a_mammogram_or_a_read_error():
    files = sorted((Path(pydicom.__file__).parent / "data" / "test_files").rglob("*.dcm"))
    assert len(files) > 20
    outcomes = {"read": 0, "refused": 0}
    for path in files:
        try:
            mammogram = read_mammogram(path)
        except MammogramReadError as error:
            assert error.path == str(path)
            outcomes["refused"] += 1
        else:
            assert mammogram.pixel_array.ndim == 2 and mammogram.pixel_array.dtype in (np.uint16, np.float32)
            outcomes["read"] += 1
    assert outcomes["read"] > 5 and outcomes["refused"] > 5, outcomes


def recompressed_with(path: Path, codestream: bytes, syntax: str) -> Path:
    """The DICOM at `path` with its pixel data replaced by one encapsulated `codestream` in `syntax`."""
    dataset = pydicom.dcmread(path)
    dataset.file_meta.TransferSyntaxUID = syntax
    dataset.PixelData = encapsulate([codestream])
    dataset["PixelData"].VR = "OB"
    dataset.save_as(path, enforce_file_format=True)
    return path


def test_a_codestream_claiming_other_dimensions_than_the_header_is_refused_before_decoding(tmp_path):
    pixels = breast_image(rows=48, columns=64)
    dataset = pydicom.dcmread(write_dicom(tmp_path / "raw.dcm", pixels))
    dataset.compress(JPEG2000Lossless)
    codestream = bytearray(next(iter(reading._image_fragments(dataset.PixelData))))
    assert reading._codestream_size(bytes(codestream)) == (48, 64)
    codestream[8:16] = (40000).to_bytes(4, "big") * 2  # SIZ: Xsiz, Ysiz
    dataset.save_as(tmp_path / "j2k.dcm")
    with pytest.raises(MammogramReadError, match="claims 40000 x 40000 pixels, the header 48 x 64"):
        read_mammogram(recompressed_with(tmp_path / "j2k.dcm", bytes(codestream), JPEG2000Lossless))
    # a JPEG-LS frame header of 0 rows (defined later, by a DNL marker) and 65535 columns
    jpeg_ls = b"\xff\xd8\xff\xf7\x00\x0b\x10\x00\x00\xff\xff\x01\x01\x11\x00" + bytes(64)
    assert reading._codestream_size(jpeg_ls) == (0, 65535)
    with pytest.raises(MammogramReadError, match="claims 0 x 65535 pixels"):
        read_mammogram(recompressed_with(write_dicom(tmp_path / "ls.dcm", pixels), jpeg_ls, JPEGLSLossless))


def test_excess_pixel_data_never_changes_the_shape(tmp_path):
    pixels = breast_image(rows=11, columns=7)
    path = write_dicom(tmp_path / "excess.dcm", pixels)
    dataset = pydicom.dcmread(path)
    dataset.PixelData = np.concatenate([pixels.ravel()] * 3).tobytes()  # three frames' worth, NumberOfFrames absent
    dataset.save_as(path)
    try:
        mammogram = read_mammogram(path)
    except MammogramReadError as error:
        assert "not the one 11 x 7 frame" in str(error)
    else:
        np.testing.assert_array_equal(mammogram.pixel_array, pixels)  # the one frame the header describes


@pytest.mark.parametrize(
    "attributes, reason",
    [
        (dict(RescaleSlope="NaN", RescaleIntercept=0), "RescaleSlope NaN is not a positive number"),
        (dict(RescaleSlope=-1, RescaleIntercept=0), "RescaleSlope -1"),
        (dict(RescaleSlope=0, RescaleIntercept=0), "RescaleSlope 0"),
        (dict(RescaleSlope=1e308, RescaleIntercept=1e308), "NaN or infinite pixel values after the modality LUT"),
    ],
)
def test_non_finite_or_degenerate_rescales_are_refused_with_the_reason(tmp_path, attributes, reason):
    path = write_dicom(tmp_path / "rescaled.dcm", breast_image(rows=16, columns=16), **attributes)
    with pytest.raises(MammogramReadError, match=reason):
        read_mammogram(path)


def test_non_finite_image_pixels_are_refused(tmp_path):
    pixels = np.ones((16, 16), np.float32)
    pixels[3, 4] = np.nan
    Image.fromarray(pixels).save(tmp_path / "nan.tiff")
    with pytest.raises(MammogramReadError, match="NaN or infinite pixel values"):
        read_mammogram(tmp_path / "nan.tiff")


def test_a_palette_png_is_read_through_its_palette(tmp_path):
    gray = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)[::-1].copy()).convert("P")
    gray.putpalette([255 - level for level in range(256) for _ in range(3)])  # index i shows gray 255 - i
    gray.save(tmp_path / "palette.png")
    expected = 255 - np.asarray(Image.open(tmp_path / "palette.png"))  # the indices, through the palette
    np.testing.assert_array_equal(read_mammogram(tmp_path / "palette.png").pixel_array, expected)
    colour = Image.new("P", (8, 8))
    colour.putpalette([255, 0, 0] * 256)
    colour.save(tmp_path / "red.png")
    with pytest.raises(MammogramReadError, match="colour image"):
        read_mammogram(tmp_path / "red.png")


def test_what_is_not_a_regular_file_is_named(tmp_path):
    with pytest.raises(MammogramReadError, match="not a regular file \\(a directory\\)"):
        read_mammogram(tmp_path)
    fifo = tmp_path / "pipe.dcm"
    os.mkfifo(fifo)
    with pytest.raises(MammogramReadError, match="not a regular file \\(a named pipe\\)"):
        read_mammogram(fifo)  # and does not wait for a writer
    with pytest.raises(MammogramReadError, match="no such file"):
        read_mammogram(tmp_path / "absent.dcm")


def test_a_deflated_dataset_is_inflated_within_a_bound(tmp_path, monkeypatch):
    pixels = np.zeros((128, 128), np.uint16)  # 32 KB of pixels that deflate to almost nothing
    path = write_dicom(tmp_path / "deflated.dcm", pixels, transfer_syntax=DeflatedExplicitVRLittleEndian)
    assert path.stat().st_size < 4096
    np.testing.assert_array_equal(read_mammogram(path).pixel_array, pixels)
    monkeypatch.setattr(reading, "MAX_INFLATED", 16_384)
    with pytest.raises(MammogramReadError, match="inflates to more than 16384 bytes"):
        read_mammogram(path)


def test_blank_images_are_processed_whole_and_impossible_ones_refused(tmp_path):
    from miram_hf.processing import MammographyImageProcessor

    processor = MammographyImageProcessor(size={"height": 32, "width": 32}, scales=[1, 2])
    blank = write_dicom(tmp_path / "blank.dcm", np.full((48, 40), 1000, np.uint16))  # nothing stands out: no crop
    inputs = processor([blank], return_tensors="pt")
    assert inputs["pixel_values"].shape == (1, 1, 32, 32) and all(
        torch.isfinite(tensor).all() for tensor in [inputs["pixel_values"], *inputs["target_pixel_values"]]
    )
    nothing_above_zero = write_dicom(tmp_path / "signed.dcm", np.full((48, 40), 1, np.uint16), BitsStored=1,
                                     HighBit=0, PixelRepresentation=1)  # fmt: skip
    assert read_mammogram(nothing_above_zero).pixel_array.max() <= 0  # one signed bit: -1 everywhere
    values = processor([nothing_above_zero], return_tensors="pt")["pixel_values"]
    assert torch.isfinite(values).all() and values.unique().numel() == 1  # blank, as it is
    raw_signal = write_dicom(tmp_path / "raw.dcm", breast_image(rows=16, columns=16), RescaleIntercept=-70000,
                             RescaleSlope=1, PresentationIntentType="FOR PROCESSING")  # fmt: skip
    with pytest.raises(MammogramReadError, match="FOR PROCESSING pixel values below 0"):
        processor([raw_signal], return_tensors="pt")
    with pytest.raises(MammogramReadError, match="BitsStored 0 is not in 1..BitsAllocated"):
        read_mammogram(write_dicom(tmp_path / "bits.dcm", breast_image(rows=16, columns=16), BitsStored=0))
