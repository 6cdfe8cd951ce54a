"""Noticing a diverging run: a NaN or infinite loss, gradient norm or weight, agreed on by every process so that
they all stop (or skip) together instead of some waiting forever for the others' gradients."""

import torch
from accelerate import Accelerator
from transformers import TrainerCallback


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
    return _finite_on_every_process(accelerator, model.parameters())


def gradients_are_finite(accelerator: Accelerator, model: torch.nn.Module) -> bool:
    """Whether every process's gradients (their shards under FSDP) are finite."""
    return _finite_on_every_process(accelerator, (weight.grad for weight in model.parameters()))


def _finite_on_every_process(accelerator: Accelerator, tensors) -> bool:
    local = all(is_finite(getattr(tensor, "to_local", tensor.detach)()) for tensor in tensors if tensor is not None)
    return bool(accelerator.gather(torch.tensor([local], device=accelerator.device)).all())


class StopOnNonFiniteGradients(TrainerCallback):
    """Stops a Trainer before an update with NaN or infinite gradients. The loss can be finite while the gradients
    overflow; clipping then turns them all into NaN, and the update would write NaN into every weight."""

    def __init__(self, accelerator: Accelerator):
        self.accelerator = accelerator

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if not gradients_are_finite(self.accelerator, model):
            raise TrainingDivergedError(
                f"Step {state.global_step + 1}: the gradients are NaN or infinite, training diverged. The "
                f"checkpoints in {args.output_dir} are from before it; rerun with a lower --learning_rate."
            )


__all__ = [
    "StopOnNonFiniteGradients",
    "TrainingDivergedError",
    "finite_everywhere",
    "gradients_are_finite",
    "is_finite",
    "weights_are_finite",
]
