"""Fit a small MIRAM (scales 1 and 2) to a fixed batch of textured images on the CPU, save the model folder and the
reconstruction picture before and after.

Stands in for the main job until `scripts/pretrain.py` (accelerate pretraining on the synthetic phantom) exists.

    python scripts/demo_reconstruction.py --output_dir outputs/demo
"""

import argparse
import logging
from pathlib import Path

import torch

from miram_hf import MammographyImageProcessor, MiramConfig, MiramForPreTraining
from miram_hf.training import parameter_groups
from miram_hf.visualization import save_reconstruction

logger = logging.getLogger("demo")


def power_law_images(batch: int, size: int, beta: float = 3.0, seed: int = 0) -> torch.Tensor:
    """Gray images with a 1/f^beta power spectrum, the statistics of breast parenchyma (beta about 3), in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    frequencies = torch.fft.fftfreq(size)
    radius = (frequencies[:, None] ** 2 + frequencies[None, :] ** 2).sqrt().clamp(min=1.0 / size)
    spectrum = torch.randn(batch, size, size, dtype=torch.complex64, generator=generator) * radius ** (-beta / 2)
    images = torch.fft.ifft2(spectrum).real
    low = images.amin(dim=(-1, -2), keepdim=True)
    high = images.amax(dim=(-1, -2), keepdim=True)
    return ((images - low) / (high - low)).unsqueeze(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/demo")
    parser.add_argument("--max_steps", type=int, default=150)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(args.seed)
    output_dir = Path(args.output_dir)

    config = MiramConfig(
        image_size=64,
        patch_size=8,
        num_channels=1,
        hidden_size=96,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=384,
        decoder_hidden_size=64,
        decoder_num_hidden_layers=2,
        decoder_num_attention_heads=4,
        decoder_intermediate_size=256,
        scales=[1, 2],
        decoder_attention=["sdpa", "nystromformer"],
        num_landmarks=32,
    )
    model = MiramForPreTraining(config)
    # 16-bit "native" images at 128 px: the processor makes the 64 px input and cuts the 2x target from the native
    # pixels, as it does from a DICOM file
    native = (power_law_images(8, 128, seed=args.seed)[:, 0] * 65535).round().to(torch.int32)
    processor = MammographyImageProcessor(
        size={"height": 64, "width": 64}, scales=config.scales, do_breast_crop=False, do_flip=False
    )
    inputs = processor(list(native.numpy().astype("uint16")), return_tensors="pt")
    pixel_values, target_pixel_values = inputs["pixel_values"], inputs["target_pixel_values"]
    noise = torch.rand(pixel_values.shape[0], 64, generator=torch.Generator().manual_seed(args.seed))

    def reconstruct(name: str) -> float:
        model.eval()
        with torch.no_grad():
            outputs = model(pixel_values, target_pixel_values=target_pixel_values, noise=noise)
        path = save_reconstruction(model, pixel_values, outputs, output_dir / name, target_pixel_values)
        logger.info("loss %.4f (per scale %s) -> %s", outputs.loss, outputs.scale_losses.tolist(), path)
        return outputs.loss.item()

    reconstruct("reconstruction_before.png")
    optimizer = torch.optim.AdamW(parameter_groups(model, args.learning_rate, 0.05), betas=(0.9, 0.95))
    model.train()
    for step in range(1, args.max_steps + 1):
        loss = model(pixel_values, target_pixel_values=target_pixel_values).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 25 == 0:
            logger.info("step %d loss %.4f", step, loss.item())
    reconstruct("reconstruction_after.png")
    model.save_pretrained(output_dir / "model")
    processor.save_pretrained(output_dir / "model")
    logger.info("model saved to %s", output_dir / "model")


if __name__ == "__main__":
    main()
