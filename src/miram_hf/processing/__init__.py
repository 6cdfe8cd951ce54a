"""Mammogram reading and processing: DICOM or image files in, model-ready tensors out."""

from .reading import Mammogram, MammogramReadError, read_mammogram

__all__ = ["Mammogram", "MammogramReadError", "read_mammogram"]
