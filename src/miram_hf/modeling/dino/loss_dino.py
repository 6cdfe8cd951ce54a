"""DINO's self-distillation loss."""

import torch
import torch.nn.functional as F
from torch import nn

from .joint_embedding import all_reduce_sum, is_distributed


class DinoLoss(nn.Module):
    """Cross-entropy between the centred, sharpened teacher distribution of each global crop and the student's
    distribution of every other crop (DINO, Caron et al. 2021, "Emerging Properties in Self-Supervised Vision
    Transformers", Algorithm 1 and the reference `DINOLoss`). The centre is a running mean of the teacher's outputs
    over every process, updated after each training call.

    Example:

    ```python
    >>> criterion = DinoLoss(output_size=65536)
    >>> loss = criterion(student_output, teacher_output, teacher_temperature=0.04, num_global_crops=2)
    ```
    """

    def __init__(self, output_size: int, student_temperature: float = 0.1, center_momentum: float = 0.9):
        super().__init__()
        if student_temperature <= 0:
            raise ValueError(f"student_temperature must be positive (DINO: 0.1), got {student_temperature}.")
        self.student_temperature = student_temperature
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, output_size))

    def forward(
        self,
        student_output: torch.Tensor,
        teacher_output: torch.Tensor,
        teacher_temperature: float = 0.04,
        num_global_crops: int = 2,
    ) -> torch.Tensor:
        """student_output: (crops * batch, K), every crop, crop-major, the global ones first;
        teacher_output: (num_global_crops * batch, K), the global crops in the same order."""
        batch = teacher_output.shape[0] // num_global_crops
        student = (student_output / self.student_temperature).split(batch)
        teacher = F.softmax((teacher_output.detach() - self.center) / teacher_temperature, dim=-1)
        teacher = teacher.chunk(num_global_crops)
        losses = [
            torch.sum(-target * F.log_softmax(student[view], dim=-1), dim=-1).mean()
            for crop, target in enumerate(teacher)
            for view in range(len(student))
            if view != crop
        ]
        if self.training:
            self.update_center(teacher_output)
        return torch.stack(losses).mean()

    @torch.no_grad()
    def update_center(self, teacher_output: torch.Tensor) -> None:
        batch_center = all_reduce_sum(teacher_output.detach().sum(0, keepdim=True))
        processes = torch.distributed.get_world_size() if is_distributed() else 1
        batch_center = batch_center / (teacher_output.shape[0] * processes)
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)


__all__ = ["DinoLoss"]
