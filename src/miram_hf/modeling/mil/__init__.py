from .configuration_mil import POOLINGS, MilConfig
from .modeling_mil import MilForImageClassification, MilImageClassifierOutput, MilPreTrainedModel

__all__ = ["POOLINGS", "MilConfig", "MilForImageClassification", "MilImageClassifierOutput", "MilPreTrainedModel"]
