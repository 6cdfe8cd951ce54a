"""transformers pipelines that hand mammograms to a `MammographyImageProcessor` as they are.

transformers' own `image-classification` and `image-feature-extraction` pipelines open a path with PIL and convert
the image to 8-bit RGB before the processor sees it: a DICOM file does not open, and a 16-bit image loses its depth.
These subclasses pass DICOM or PNG/TIFF paths, `Mammogram`s, arrays and PIL images straight to a
`MammographyImageProcessor` (any other processor gets transformers' behaviour), and extract features from the whole
image (no masking). `import miram_hf` registers them for both tasks.
"""

import inspect

from transformers import BatchFeature, ImageClassificationPipeline, ImageFeatureExtractionPipeline

from .processing import MammographyImageProcessor


def _mammography_inputs(pipeline, image, **processor_kwargs) -> BatchFeature | None:
    """The model inputs of one mammogram, or None when the pipeline's processor is not a mammography one."""
    if not isinstance(pipeline.image_processor, MammographyImageProcessor):
        return None
    # scale 1 only: multi-scale reconstruction targets are for pretraining
    inputs = pipeline.image_processor(image, return_tensors="pt", scales=[1], **processor_kwargs)
    return BatchFeature({"pixel_values": inputs["pixel_values"]}).to(pipeline.dtype)


class MammographyImageClassificationPipeline(ImageClassificationPipeline):
    def preprocess(self, image, timeout=None):
        inputs = _mammography_inputs(self, image)
        return inputs if inputs is not None else super().preprocess(image, timeout=timeout)


class MammographyImageFeatureExtractionPipeline(ImageFeatureExtractionPipeline):
    def preprocess(self, image, timeout=None, **image_processor_kwargs):
        inputs = _mammography_inputs(self, image, **image_processor_kwargs)
        return inputs if inputs is not None else super().preprocess(image, timeout=timeout, **image_processor_kwargs)

    def _forward(self, model_inputs):
        if "mask_ratio" in inspect.signature(self.model.forward).parameters:  # MAE-style encoders: every patch
            return self.model(**model_inputs, mask_ratio=0.0)
        return super()._forward(model_inputs)


__all__ = ["MammographyImageClassificationPipeline", "MammographyImageFeatureExtractionPipeline"]
