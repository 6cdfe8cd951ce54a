"""MoCo v3's contrastive loss."""

import torch
import torch.nn.functional as F
from torch import nn

from .joint_embedding import gather, process_rank


class MocoV3Loss(nn.Module):
    """InfoNCE between queries and the momentum encoder's keys of the other view, scaled by 2 x temperature (MoCo v3,
    Chen, Xie and He 2021, "An Empirical Study of Training Self-Supervised Vision Transformers", Algorithm 1): each
    query's positive is its own image's key, the negatives are the keys of every other image on every process. The
    keys get no gradient. MoCo v3 symmetrises it by adding the loss with the views swapped.

    Example:

    ```python
    >>> criterion = MocoV3Loss(temperature=0.2)
    >>> loss = criterion(query_0, key_1) + criterion(query_1, key_0)
    ```
    """

    def __init__(self, temperature: float = 0.2):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive (MoCo v3: 0.2 for ViT, 1.0 for ResNet), got {temperature}.")
        self.temperature = temperature

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """query, key: (batch, dim), the predictor's output for one view and the momentum encoder's for the other."""
        query = F.normalize(query, dim=-1)
        keys = gather(F.normalize(key.detach(), dim=-1))  # (processes * batch, dim)
        logits = query @ keys.T / self.temperature
        labels = torch.arange(query.shape[0], device=query.device) + process_rank() * query.shape[0]
        return F.cross_entropy(logits, labels) * (2 * self.temperature)


__all__ = ["MocoV3Loss"]
