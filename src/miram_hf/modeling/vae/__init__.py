from .configuration_mammo_vae import MammoVaeConfig
from .modeling_mammo_vae import MammoVaeForImageClassification, MammoVaeForPreTraining, MammoVaePreTrainedModel

__all__ = ["MammoVaeConfig", "MammoVaeForImageClassification", "MammoVaeForPreTraining", "MammoVaePreTrainedModel"]
