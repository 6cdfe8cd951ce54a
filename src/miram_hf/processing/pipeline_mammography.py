"""transformers pipelines that hand mammograms to a `MammographyImageProcessor` as they are.

transformers' own `image-classification` and `image-feature-extraction` pipelines open a path with PIL and convert
the image to 8-bit RGB before the processor sees it: a DICOM file does not open, and a 16-bit image loses its depth.
These subclasses pass DICOM or PNG/TIFF paths, `Mammogram`s, arrays and PIL images straight to a
`MammographyImageProcessor` (any other processor gets transformers' behaviour), and extract features from the whole
image (no masking). `import miram_hf` registers them for both tasks.

Hub-portable (transformers and its sibling processor file only): `add_remote_pipelines` copies it next to a model's
weights and names it in the config's `custom_pipelines`, so that `pipeline(task, model=..., trust_remote_code=True)`
runs these classes for someone who has only transformers.
"""

import inspect
import json
from pathlib import Path

from transformers import BatchFeature, ImageClassificationPipeline, ImageFeatureExtractionPipeline
from transformers.dynamic_module_utils import custom_object_save
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES, MODEL_MAPPING_NAMES

from .image_processing_mammography import MammographyImageProcessor


def _mammography_inputs(pipeline, image, **processor_kwargs) -> BatchFeature | None:
    """The model inputs of one mammogram, or None when the pipeline's processor is not a mammography one."""
    # by name: through remote code the processor and this file may be two loads of the same module
    if not any(cls.__name__ == MammographyImageProcessor.__name__ for cls in type(pipeline.image_processor).__mro__):
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


# task -> (pipeline class, the Auto class that loads its model, the model types transformers itself maps to it)
PIPELINE_TASKS = {
    "image-classification": (
        MammographyImageClassificationPipeline,
        "AutoModelForImageClassification",
        MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
    ),
    "image-feature-extraction": (MammographyImageFeatureExtractionPipeline, "AutoModel", MODEL_MAPPING_NAMES),
}


# classifiers of bags of tiles (MIL) or of regions (RoI attention): the pipelines give one image tensor
MULTI_INPUT_MODEL_TYPES = ("mil", "roi_attention")


def add_remote_pipelines(folder: str | Path) -> list[str]:
    """Make the pipelines of this file part of a saved model folder (remote code): copy the file (and the processor
    file it imports) next to the weights and list, in config.json's `custom_pipelines`, the tasks whose model the folder
    holds (a remote-code head in its auto_map, or one of transformers' own, a ViT or ResNet classifier). Returns those
    tasks. transformers then runs these pipelines for
    `pipeline(task, model=folder, trust_remote_code=True)`, and asks for `trust_remote_code=True` whenever the task is
    one of them, with or without the package."""
    folder = Path(folder)
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text())
    auto_map = config.get("auto_map", {})
    tasks = {
        task: {"impl": f"{pipeline_class.__module__.rsplit('.', 1)[-1]}.{pipeline_class.__name__}", "pt": [auto_class]}
        for task, (pipeline_class, auto_class, native_types) in PIPELINE_TASKS.items()
        if (auto_class in auto_map or config.get("model_type") in native_types)
        and config.get("model_type") not in MULTI_INPUT_MODEL_TYPES
    }
    if tasks:
        custom_object_save(MammographyImageClassificationPipeline, folder)
        config["custom_pipelines"] = tasks
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return sorted(tasks)


__all__ = [
    "PIPELINE_TASKS",
    "MammographyImageClassificationPipeline",
    "MammographyImageFeatureExtractionPipeline",
    "add_remote_pipelines",
]
