"""Images per second of the pretraining data path, per CPU core: prepared parquet of 16-bit crops, read by a
`DataLoader` with 0, 1 or 2 workers, through each method's collator (what `scripts/pretrain.py` builds):

- `miram`: MAE's random resized crop and flip from the native pixels, then 112 px and the 224 px target (MIRAM [1, 2]);
- `two_views`: the processor to 224 px, then two augmented views (BYOL, MoCo v3, SimCLR);
- `multi_crop`: two 224 px views and six 96 px ones (DINO, SwAV).

The crops are phantom breast tissue at 256, 512 and 1024 px (16-bit PNG in parquet, as prepare_data.py writes them).
Per core = images/s divided by the processes busy (the main one with 0 workers, the workers otherwise). Next to a
model's training images/s (bench/model_step.py, bench/gpu_check.sh) the cores needed to feed a GPU follow.

    python bench/loader.py --images 64 --batch-size 16
"""

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader

from miram_hf import MammographyImageProcessor
from miram_hf.data.synthetic import generate_phantom
from miram_hf.training.pretraining import PretrainingCollator
from miram_hf.training.views import MultiViewCollator


def crops(side: int, count: int) -> list[np.ndarray]:
    """`count` 16-bit `side` x `side` crops of phantom breast tissue (cut from phantoms twice that size)."""
    images = []
    for seed in range(count):
        phantom = generate_phantom(seed, 2 * side, 2 * side, max_lesions=1, fine_detail_findings=0)
        images.append(phantom.image[side // 2 : side // 2 + side, :side].copy())
    return images


def collators() -> dict:
    """Each method's collator, as scripts/pretrain.py configures it."""

    def processor(size: int, scales=None) -> MammographyImageProcessor:
        return MammographyImageProcessor(size={"height": size, "width": size}, do_breast_crop=False, do_flip=False,
                                         keep_aspect_ratio=False, scales=scales)  # fmt: skip

    return {
        "miram": PretrainingCollator(processor(112, [1, 2])),
        "two_views": MultiViewCollator(processor(224)),
        "multi_crop": MultiViewCollator(processor(224), num_local=6, local_size=96),
    }


def images_per_second(dataset, collator, batch_size: int, workers: int) -> float:
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collator, num_workers=workers, drop_last=True,
                        persistent_workers=False)  # fmt: skip
    iterator = iter(loader)
    next(iterator)  # workers started, caches warm
    start, count = time.perf_counter(), 0
    for batch in iterator:
        count += len(batch["pixel_values"])
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64, help="crops per size")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "loader_cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core a process: per-core figures
    report = {"cpu": platform.processor() or "cpu", "torch": torch.__version__, "batch_size": args.batch_size,
              "images_per_s_per_core": {}}  # fmt: skip
    features = datasets.Features({"image": datasets.Image()})
    with tempfile.TemporaryDirectory() as folder:
        for side in args.sizes:
            path = Path(folder) / f"crops-{side}.parquet"
            datasets.Dataset.from_dict({"image": crops(side, args.images)}, features=features).to_parquet(str(path))
            dataset = datasets.load_dataset("parquet", data_files=str(path), split="train").cast(features)
            for name, collator in collators().items():
                for workers in args.workers:
                    rate = images_per_second(dataset, collator, args.batch_size, workers)
                    per_core = rate / max(1, workers)
                    report["images_per_s_per_core"][f"{side} px, {name}, {workers} workers"] = round(per_core, 1)
                    print(f"{side:5d} px  {name:10s}  {workers} workers: {rate:7.1f} images/s, {per_core:7.1f} a core")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
