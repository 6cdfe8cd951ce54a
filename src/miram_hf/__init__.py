"""miram_hf: self-supervised mammography models (MIRAM and the methods it is compared with) for transformers."""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForPreTraining,
)
from transformers.pipelines import PIPELINE_REGISTRY

from .modeling.miram import (
    MiramConfig,
    MiramForImageClassification,
    MiramForPreTraining,
    MiramModel,
    MiramPreTrainedModel,
)
from .pipelines import MammographyImageClassificationPipeline, MammographyImageFeatureExtractionPipeline
from .processing import MammographyImageProcessor

__version__ = "0.1.0"

# The library route: with the package imported, the Auto classes resolve "miram" to these classes.
AutoConfig.register(MiramConfig.model_type, MiramConfig, exist_ok=True)
for auto_class, model_class in (
    (AutoModel, MiramModel),
    (AutoModelForPreTraining, MiramForPreTraining),
    (AutoModelForImageClassification, MiramForImageClassification),
):
    auto_class.register(MiramConfig, model_class, exist_ok=True)
    # The remote-code route: save_pretrained copies the modeling files next to the weights.
    model_class.register_for_auto_class(auto_class.__name__)
MiramConfig.register_for_auto_class()
# One processor for every model here, whatever image-processor backend transformers looks for.
AutoImageProcessor.register(
    MiramConfig,
    image_processor_classes={"pil": MammographyImageProcessor, "torchvision": MammographyImageProcessor},
    exist_ok=True,
)
MammographyImageProcessor.register_for_auto_class("AutoImageProcessor")
# pipeline("image-classification" | "image-feature-extraction", ...) takes DICOM paths and 16-bit arrays; the task's
# entry is updated in place (register_pipeline would warn at every import) and other processors keep their behaviour
for task, pipeline_class in (
    ("image-classification", MammographyImageClassificationPipeline),
    ("image-feature-extraction", MammographyImageFeatureExtractionPipeline),
):
    PIPELINE_REGISTRY.supported_tasks[task] = {**PIPELINE_REGISTRY.supported_tasks[task], "impl": pipeline_class}

__all__ = [
    "MammographyImageClassificationPipeline",
    "MammographyImageFeatureExtractionPipeline",
    "MammographyImageProcessor",
    "MiramConfig",
    "MiramForImageClassification",
    "MiramForPreTraining",
    "MiramModel",
    "MiramPreTrainedModel",
]
