from .configuration_simclr import SimclrConfig
from .loss_simclr import NTXentLoss
from .modeling_simclr import SimclrForPreTraining, SimclrPreTrainedModel

__all__ = ["NTXentLoss", "SimclrConfig", "SimclrForPreTraining", "SimclrPreTrainedModel"]
