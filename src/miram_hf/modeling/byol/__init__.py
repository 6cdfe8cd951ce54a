from .configuration_byol import ByolConfig
from .loss_byol import ByolLoss
from .modeling_byol import ByolForPreTraining, ByolPreTrainedModel

__all__ = ["ByolConfig", "ByolForPreTraining", "ByolLoss", "ByolPreTrainedModel"]
