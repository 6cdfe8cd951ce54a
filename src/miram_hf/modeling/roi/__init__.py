from .configuration_roi_attention import ROI_POOLINGS, RoiAttentionConfig
from .modeling_roi_attention import (
    RoiAttentionClassifierOutput,
    RoiAttentionForImageClassification,
    RoiAttentionPreTrainedModel,
    repulsive_contrastive_loss,
    rotate_2d,
)

__all__ = [
    "ROI_POOLINGS",
    "RoiAttentionClassifierOutput",
    "RoiAttentionConfig",
    "RoiAttentionForImageClassification",
    "RoiAttentionPreTrainedModel",
    "repulsive_contrastive_loss",
    "rotate_2d",
]
