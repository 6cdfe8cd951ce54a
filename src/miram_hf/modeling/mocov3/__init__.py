from .configuration_mocov3 import MocoV3Config
from .loss_mocov3 import MocoV3Loss
from .modeling_mocov3 import MocoV3ForPreTraining, MocoV3PreTrainedModel

__all__ = ["MocoV3Config", "MocoV3ForPreTraining", "MocoV3Loss", "MocoV3PreTrainedModel"]
