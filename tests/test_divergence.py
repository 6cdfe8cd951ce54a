import pytest
import torch
from transformers import Trainer, TrainingArguments

from miram_hf.training.divergence import StopOnNonFiniteGradients, TrainingDivergedError


class FiniteLossNanGradients(torch.nn.Module):
    """A loss of 0 whose gradient is NaN from the second step on (sqrt at 0): what an overflow looks like."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.calls = 0

    def forward(self, inputs, labels=None):
        self.calls += 1
        scale = 1.0 if self.calls == 1 else 0.0
        return {"loss": torch.sqrt((self.weight * inputs * scale).abs()).sum() * 0 + (self.weight * scale).sum()}


def test_a_trainer_stops_before_an_update_with_non_finite_gradients(tmp_path):
    model = FiniteLossNanGradients()
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=1, report_to=[],
                             save_strategy="no", use_cpu=True, learning_rate=0.1)  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=[{"inputs": torch.ones(1)}] * 8)
    trainer.add_callback(StopOnNonFiniteGradients(trainer.accelerator))
    with pytest.raises(TrainingDivergedError, match="Step 2: the gradients are NaN or infinite"):
        trainer.train()
    assert model.calls == 2 and torch.isfinite(model.weight).all()  # the first update applied, the NaN one not
    assert model.weight.item() != 1.0
