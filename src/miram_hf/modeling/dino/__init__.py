from .configuration_dino import DinoConfig
from .loss_dino import DinoLoss
from .modeling_dino import DinoForPreTraining, DinoHead, DinoPreTrainedModel

__all__ = ["DinoConfig", "DinoForPreTraining", "DinoHead", "DinoLoss", "DinoPreTrainedModel"]
