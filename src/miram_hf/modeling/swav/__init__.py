from .configuration_swav import SwavConfig
from .loss_swav import SwavLoss, sinkhorn_knopp
from .modeling_swav import SwavForPreTraining, SwavPreTrainedModel

__all__ = ["SwavConfig", "SwavForPreTraining", "SwavLoss", "SwavPreTrainedModel", "sinkhorn_knopp"]
