from .configuration_miram import MiramConfig
from .modeling_miram import MiramForImageClassification, MiramForPreTraining, MiramModel, MiramPreTrainedModel

__all__ = ["MiramConfig", "MiramForImageClassification", "MiramForPreTraining", "MiramModel", "MiramPreTrainedModel"]
