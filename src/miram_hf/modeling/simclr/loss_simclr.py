"""SimCLR's NT-Xent loss."""

import torch
import torch.nn.functional as F
from torch import nn

from .joint_embedding import gather, process_rank


class NTXentLoss(nn.Module):
    """Normalised temperature-scaled cross entropy (SimCLR, Chen et al. 2020, "A Simple Framework for Contrastive
    Learning of Visual Representations", eq. 1): each view's positive is the other view of its image, the negatives
    are the other 2N - 2 views of the batch, gathered from every process.

    Example:

    ```python
    >>> criterion = NTXentLoss(temperature=0.1)
    >>> loss = criterion(projector(backbone(view_0)), projector(backbone(view_1)))
    ```
    """

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive (SimCLR uses 0.1 to 0.5), got {temperature}.")
        self.temperature = temperature

    def forward(self, embeddings_0: torch.Tensor, embeddings_1: torch.Tensor) -> torch.Tensor:
        """embeddings_0, embeddings_1: (batch, dim), the two views of each image, in the same order."""
        batch = embeddings_0.shape[0]
        embeddings_0, embeddings_1 = F.normalize(embeddings_0, dim=-1), F.normalize(embeddings_1, dim=-1)
        all_0, all_1 = gather(embeddings_0), gather(embeddings_1)
        # this process's views against every view; a view is not its own negative
        positions = torch.arange(batch, device=embeddings_0.device) + process_rank() * batch
        self_similarity = F.one_hot(positions, all_0.shape[0]).bool()
        logits_00 = (embeddings_0 @ all_0.T / self.temperature).masked_fill(self_similarity, float("-inf"))
        logits_11 = (embeddings_1 @ all_1.T / self.temperature).masked_fill(self_similarity, float("-inf"))
        logits_01 = embeddings_0 @ all_1.T / self.temperature
        logits_10 = embeddings_1 @ all_0.T / self.temperature
        logits = torch.cat([torch.cat([logits_01, logits_00], 1), torch.cat([logits_10, logits_11], 1)])
        return F.cross_entropy(logits, positions.repeat(2))


__all__ = ["NTXentLoss"]
