"""SwAV's swapped-prediction loss and its Sinkhorn-Knopp codes."""

import torch
import torch.nn.functional as F
from torch import nn

from .joint_embedding import all_reduce_sum, is_distributed


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Soft codes (batch, K) for prototype scores (batch, K): the reference `distributed_sinkhorn`, equipartitioning
    the samples of every process over the prototypes. Each row of the result sums to 1."""
    codes = torch.exp(scores / epsilon).T  # (K, batch), as the paper writes Q
    processes = torch.distributed.get_world_size() if is_distributed() else 1
    samples, prototypes = codes.shape[1] * processes, codes.shape[0]
    codes /= all_reduce_sum(codes.sum())
    for _ in range(iterations):
        codes /= all_reduce_sum(codes.sum(dim=1, keepdim=True))  # every prototype gets 1 / K of the mass
        codes /= prototypes
        codes /= codes.sum(dim=0, keepdim=True)  # every sample gets 1 / B
        codes /= samples
    return (codes * samples).T


class SwavLoss(nn.Module):
    """Swapped prediction (SwAV, Caron et al. 2020, "Unsupervised Learning of Visual Features by Contrasting Cluster
    Assignments", eq. 3 and the reference `main_swav.py`): the Sinkhorn-Knopp codes of each assigned crop are
    predicted from every other crop's prototype scores.

    Example:

    ```python
    >>> criterion = SwavLoss()
    >>> loss = criterion(scores.split(batch))  # one (batch, K) tensor per crop, the global ones first
    ```
    """

    def __init__(
        self,
        temperature: float = 0.1,
        sinkhorn_epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        crops_for_assign: tuple[int, ...] = (0, 1),
    ):
        super().__init__()
        if temperature <= 0 or sinkhorn_epsilon <= 0:
            raise ValueError(f"temperature ({temperature}) and sinkhorn_epsilon ({sinkhorn_epsilon}) must be positive "
                             "(SwAV: 0.1 and 0.05).")  # fmt: skip
        self.temperature, self.sinkhorn_epsilon, self.sinkhorn_iterations = (
            temperature, sinkhorn_epsilon, sinkhorn_iterations
        )  # fmt: skip
        self.crops_for_assign = tuple(crops_for_assign)

    def forward(
        self, crop_scores: list[torch.Tensor], queue_scores: list[torch.Tensor | None] | None = None
    ) -> torch.Tensor:
        """crop_scores: one (batch, K) tensor of prototype scores per crop; queue_scores: for each assigned crop,
        the scores of its queued embeddings (queue, K) to join the Sinkhorn batch, or None."""
        loss = 0.0
        for index, crop in enumerate(self.crops_for_assign):
            scores = crop_scores[crop].detach()
            queued = queue_scores[index] if queue_scores is not None else None
            if queued is not None:
                scores = torch.cat([queued, scores])
            codes = sinkhorn_knopp(scores, self.sinkhorn_epsilon, self.sinkhorn_iterations)[-len(crop_scores[crop]) :]
            others = [view for view in range(len(crop_scores)) if view != crop]
            loss = loss + sum(
                -torch.sum(codes * F.log_softmax(crop_scores[view] / self.temperature, dim=1), dim=1).mean()
                for view in others
            ) / len(others)
        return loss / len(self.crops_for_assign)


__all__ = ["SwavLoss", "sinkhorn_knopp"]
