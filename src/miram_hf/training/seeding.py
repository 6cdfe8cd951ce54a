"""Every random draw of pretraining comes from a seed mixed from what identifies it (run seed, epoch, step, process,
image), not from the global random state: a resumed run, or one with more loader workers, repeats a straight one
exactly."""

import numpy as np
import torch


def derived_seed(*values: int) -> int:
    """A 64-bit seed mixed from several integers (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([int(value) for value in values]).generate_state(1, np.uint64)[0])


def mask_noise(
    pixel_values: torch.Tensor, patch_size: int, seed: int, step: int, process_index: int = 0, micro_batch: int = 0
) -> torch.Tensor:
    """MAE's masking noise (batch, num_patches) for one micro-batch, drawn from (seed, step, process, micro-batch)."""
    batch, _, height, width = pixel_values.shape
    generator = torch.Generator().manual_seed(derived_seed(seed, step, process_index, micro_batch))
    noise = torch.rand(batch, (height // patch_size) * (width // patch_size), generator=generator)
    return noise.to(pixel_values.device, non_blocking=True)  # a blocking copy would wait for the device's queue


__all__ = ["derived_seed", "mask_noise"]
