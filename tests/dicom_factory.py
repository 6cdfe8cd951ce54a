"""Synthetic DICOM files that mimic the headers of the public mammography collections (each builder's docstring in
src/miram_hf/data/ describes its collection's files). No real image can be downloaded here, so tests write these."""

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
MAMMOGRAPHY_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
PHI = dict(
    PatientName="DOE^JANE",
    PatientID="P_00001",
    PatientBirthDate="19600101",
    InstitutionName="General Hospital",
    AccessionNumber="A123",
    StudyDate="20160720",
)


def breast_image(rows: int = 96, columns: int = 64, bits: int = 16, seed: int = 0, side: str = "L") -> np.ndarray:
    """A bright half-disc (the breast) against the chest wall on `side`, on a dark background, with texture."""
    rng = np.random.default_rng(seed)
    top = 2**bits - 1
    y, x = np.mgrid[0:rows, 0:columns]
    chest_x = 0 if side == "L" else columns - 1
    inside = ((x - chest_x) / (0.8 * columns)) ** 2 + ((y - rows / 2) / (0.45 * rows)) ** 2 < 1
    image = np.where(inside, 0.55 * top + 0.2 * top * rng.random((rows, columns)), 0.02 * top)
    return image.astype(np.uint16)


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    sop_class: str = MAMMOGRAPHY_FOR_PRESENTATION,
    transfer_syntax: str = ExplicitVRLittleEndian,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 16,
    **attributes,
) -> Path:
    """Write `pixels` (2-D, or 3-D for multi-frame) as a DICOM file with the given attributes."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    dataset = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID = sop_class
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = "MG"
    dataset.update(PHI)
    if pixels.ndim == 3:
        dataset.NumberOfFrames = pixels.shape[0]
    dataset.Rows, dataset.Columns = pixels.shape[-2:]
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = photometric
    dataset.BitsAllocated = 16
    dataset.BitsStored = bits_stored
    dataset.HighBit = bits_stored - 1
    dataset.PixelRepresentation = 0
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    dataset.PixelData = pixels.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)
    return path


def cbis_ddsm_dicom(path: Path, pixels: np.ndarray | None = None, view: str = "CC", laterality: str = "L") -> Path:
    """CBIS-DDSM: Secondary Capture, Implicit VR, laterality in Laterality, the view in PatientOrientation."""
    pixels = breast_image(side=laterality) if pixels is None else pixels
    return write_dicom(
        path,
        pixels,
        sop_class=SECONDARY_CAPTURE,
        transfer_syntax=ImplicitVRLittleEndian,
        Laterality=laterality,
        PatientOrientation=view,
    )


def cmmd_dicom(path: Path, view: str = "MLO", laterality: str = "R") -> Path:
    """CMMD: 8 bits stored, ImageLaterality set, ViewPosition empty, the view only in ViewCodeSequence."""
    code = pydicom.Dataset()
    code.CodeValue = {"CC": "399162004", "MLO": "399368009"}[view]
    code.CodingSchemeDesignator = "SCT"
    return write_dicom(
        path,
        breast_image(bits=8, side=laterality),
        bits_stored=8,
        ImageLaterality=laterality,
        ViewPosition="",
        ViewCodeSequence=Sequence([code]),
        PixelSpacing=[0.094, 0.094],
        Manufacturer="GE MEDICAL SYSTEMS",
    )


def vindr_dicom(path: Path, padding_value: int = 4095) -> Path:
    """VinDr-Mammo: MONOCHROME1 (bright = fat), multi-valued windows, a pixel padding value, a whitelist of tags."""
    pixels = breast_image(bits=12)
    inverted = (4095 - pixels).astype(np.uint16)
    inverted[:, -4:] = padding_value  # a padded strip
    return write_dicom(
        path,
        inverted,
        photometric="MONOCHROME1",
        bits_stored=12,
        ImageLaterality="L",
        ViewPosition="CC",
        WindowCenter=[2047, 1800],
        WindowWidth=[4096, 2000],
        PixelPaddingValue=padding_value,
        PresentationIntentType="FOR PRESENTATION",
        ImagerPixelSpacing=[0.085, 0.085],
    )
