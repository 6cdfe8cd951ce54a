"""BYOL's regression loss."""

import torch
import torch.nn.functional as F
from torch import nn


class ByolLoss(nn.Module):
    """2 - 2 cos(prediction, target), averaged over the batch (BYOL, Grill et al. 2020, "Bootstrap Your Own Latent",
    eq. 2): the mean squared error between the L2-normalised online prediction and target projection. The target
    gets no gradient. BYOL symmetrises it by adding the loss with the views swapped.

    Example:

    ```python
    >>> criterion = ByolLoss()
    >>> loss = criterion(prediction_0, target_1) + criterion(prediction_1, target_0)
    ```
    """

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """prediction, target: (batch, dim)."""
        return (2 - 2 * F.cosine_similarity(prediction, target.detach(), dim=-1)).mean()


__all__ = ["ByolLoss"]
