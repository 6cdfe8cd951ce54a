"""Noticing a diverging run: a NaN or infinite loss, gradient norm or weight, agreed on by every process so that
they all stop (or skip) together instead of some waiting forever for the others' gradients."""

import torch
from accelerate import Accelerator


class TrainingDivergedError(RuntimeError):
    """The loss, the gradients or the weights became NaN or infinite: the run stopped there and saved no model."""


def is_finite(value: torch.Tensor | None) -> bool:
    """Whether a loss or gradient norm is finite (a DTensor under FSDP; None where DeepSpeed clips by itself)."""
    if value is None:
        return True
    if hasattr(value, "full_tensor"):
        value = value.full_tensor()
    return bool(torch.isfinite(value).all())


def finite_everywhere(accelerator: Accelerator, loss: torch.Tensor) -> bool:
    """Whether `loss` is finite on every process."""
    return bool(accelerator.gather(torch.isfinite(loss.detach()).all()[None]).all())


def weights_are_finite(accelerator: Accelerator, model: torch.nn.Module) -> bool:
    """Whether every process's weights (its shards under FSDP) are finite."""
    local = all(is_finite(getattr(weight, "to_local", weight.detach)()) for weight in model.parameters())
    return bool(accelerator.gather(torch.tensor([local], device=accelerator.device)).all())


__all__ = ["TrainingDivergedError", "finite_everywhere", "is_finite", "weights_are_finite"]
