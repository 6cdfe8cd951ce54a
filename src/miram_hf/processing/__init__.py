"""Mammogram reading and processing: DICOM or image files in, model-ready tensors out."""

from .image_processing_mammography import MammographyImageProcessor
from .reading import Mammogram, MammogramReadError, read_mammogram

__all__ = ["Mammogram", "MammogramReadError", "MammographyImageProcessor", "read_mammogram"]
