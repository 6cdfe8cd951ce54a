"""miram_hf: self-supervised mammography models (MIRAM and the methods it is compared with) for transformers."""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForPreTraining,
)
from transformers.pipelines import PIPELINE_REGISTRY

from .modeling.byol import ByolConfig, ByolForPreTraining
from .modeling.dino import DinoConfig, DinoForPreTraining
from .modeling.mil import MilConfig, MilForImageClassification
from .modeling.miram import (
    MiramConfig,
    MiramForImageClassification,
    MiramForPreTraining,
    MiramModel,
    MiramPreTrainedModel,
)
from .modeling.mocov3 import MocoV3Config, MocoV3ForPreTraining
from .modeling.roi import RoiAttentionConfig, RoiAttentionForImageClassification
from .modeling.simclr import SimclrConfig, SimclrForPreTraining
from .modeling.swav import SwavConfig, SwavForPreTraining
from .modeling.vae import MammoVaeConfig, MammoVaeForImageClassification, MammoVaeForPreTraining
from .processing import MammographyImageProcessor
from .processing.pipeline_mammography import (
    MammographyImageClassificationPipeline,
    MammographyImageFeatureExtractionPipeline,
    add_remote_pipelines,
)

__version__ = "0.1.0"

# The library route: with the package imported, the Auto classes resolve each model_type to these classes; the
# remote-code route: save_pretrained copies the modeling files next to the weights and writes their auto_map.
MODEL_CLASSES = {
    MiramConfig: {
        AutoModel: MiramModel,
        AutoModelForPreTraining: MiramForPreTraining,
        AutoModelForImageClassification: MiramForImageClassification,
    },
    ByolConfig: {AutoModelForPreTraining: ByolForPreTraining},
    DinoConfig: {AutoModelForPreTraining: DinoForPreTraining},
    MilConfig: {AutoModelForImageClassification: MilForImageClassification},
    MammoVaeConfig: {
        AutoModelForPreTraining: MammoVaeForPreTraining,
        AutoModelForImageClassification: MammoVaeForImageClassification,
    },
    MocoV3Config: {AutoModelForPreTraining: MocoV3ForPreTraining},
    RoiAttentionConfig: {AutoModelForImageClassification: RoiAttentionForImageClassification},
    SimclrConfig: {AutoModelForPreTraining: SimclrForPreTraining},
    SwavConfig: {AutoModelForPreTraining: SwavForPreTraining},
}
for config_class, auto_classes in MODEL_CLASSES.items():
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    config_class.register_for_auto_class()
    for auto_class, model_class in auto_classes.items():
        auto_class.register(config_class, model_class, exist_ok=True)
        model_class.register_for_auto_class(auto_class.__name__)
    # one processor for every model here, whatever image-processor backend transformers looks for
    AutoImageProcessor.register(
        config_class,
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
    "ByolConfig",
    "ByolForPreTraining",
    "DinoConfig",
    "DinoForPreTraining",
    "MammoVaeConfig",
    "MammoVaeForImageClassification",
    "MammoVaeForPreTraining",
    "MammographyImageClassificationPipeline",
    "MammographyImageFeatureExtractionPipeline",
    "MammographyImageProcessor",
    "MilConfig",
    "MilForImageClassification",
    "MiramConfig",
    "MiramForImageClassification",
    "MiramForPreTraining",
    "MiramModel",
    "MiramPreTrainedModel",
    "MocoV3Config",
    "MocoV3ForPreTraining",
    "RoiAttentionConfig",
    "RoiAttentionForImageClassification",
    "SimclrConfig",
    "SimclrForPreTraining",
    "SwavConfig",
    "SwavForPreTraining",
    "add_remote_pipelines",
]
