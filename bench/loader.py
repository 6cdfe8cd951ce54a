"""Images per second of the pretraining data path, and its CPU time per image: prepared parquet of 16-bit crops,
read by `PretrainingLoader` (the loader of `scripts/pretrain.py`) with 0, 1 or 2 workers, through each method's
collator:

- `miram`: MAE's random resized crop and flip from the native pixels, then 112 px and the 224 px target (MIRAM [1, 2]);
- `two_views`: the processor to 224 px, then two augmented views (BYOL, MoCo v3, SimCLR);
- `multi_crop`: two 224 px views and six 96 px ones (DINO, SwAV);
- `miram_raw`: `miram` from raw 16-bit pixels (`prepare_data.py --image_format raw`): no PNG decode;
- `miram_device`: the loader's part of `pretrain.py --augment_on_device`, from raw pixels: a native region of each crop
  (`NativeRegionCollator`, regions the crops' size, read as Arrow slices). The crop, flip and resizes then run on the
  training device (`device_views`); their cost on this CPU is reported apart ("device part"), as a GPU does it. How
  much of a stand-in GPU step's time the main process's reading ahead fills with loading is measured too
  (`read_ahead_gain`).

The crops are phantom breast tissue at 256, 512 and 1024 px (16-bit PNG in parquet, as prepare_data.py writes them by
default, or raw).
Each figure is the second epoch's (workers started, memory maps and caches warm): images/s divided by the processes
working (the main one with 0 workers, the workers otherwise), and the CPU time of all the processes (the main one's
and its workers') per image. Next to a model's training images/s (bench/model_step.py,
bench/gpu_check.sh) the cores needed to feed a GPU follow.

    python bench/loader.py --images 64 --batch-size 16
"""

import argparse
import gc
import itertools
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import torch

from miram_hf import MammographyImageProcessor
from miram_hf.data.raw_pixels import to_raw_pixels
from miram_hf.data.synthetic import phantom_crops
from miram_hf.training.device_views import NativeRegionCollator, device_views
from miram_hf.training.pretraining_data import PretrainingLoader
from miram_hf.training.views import MultiViewCollator, PretrainingCollator


def processor(size: int, scales=None) -> MammographyImageProcessor:
    return MammographyImageProcessor(size={"height": size, "width": size}, do_breast_crop=False, do_flip=False,
                                     keep_aspect_ratio=False, scales=scales)  # fmt: skip


def collators(side: int) -> dict:
    """Each method's collator, as scripts/pretrain.py configures it, with the stored format it reads."""
    return {
        "miram": (PretrainingCollator(processor(112, [1, 2])), "png"),
        "two_views": (MultiViewCollator(processor(224)), "png"),
        "multi_crop": (MultiViewCollator(processor(224), num_local=6, local_size=96), "png"),
        "miram_raw": (PretrainingCollator(processor(112, [1, 2])), "raw"),
        "miram_device": (NativeRegionCollator(region_size=side), "raw"),
    }


def device_part_seconds(dataset, side: int, batch_size: int, rounds: int = 5) -> float:
    """Seconds an image of `device_views` (MIRAM [1, 2] at 112 px) on this CPU, one thread."""
    batch = NativeRegionCollator(region_size=side)([dataset[index] for index in range(batch_size)])
    timings = []
    for batch_index in range(rounds):
        start = time.perf_counter()
        device_views(batch, processor(112, [1, 2]), seed=0, epoch=0, batch_index=batch_index)
        timings.append(time.perf_counter() - start)
    return float(np.median(timings)) / batch_size


def workers_cpu_seconds() -> float:
    """CPU time of this process's children that have ended (a loader's workers, once joined)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


def epoch_rate(
    dataset, collator, batch_size: int, workers: int, read_ahead: bool = False, step_seconds: float = 0.0
) -> tuple[float, float]:
    """(images/s, CPU seconds an image) of the second epoch of `PretrainingLoader.batches`: workers started, memory
    maps and caches warm, as through most of a long run. The CPU time is the main process's in that epoch (all its
    threads) and its workers': these are counted once they have ended, so theirs is that of a loader run for two
    epochs less that of one run for the first alone. With `step_seconds`, each batch is followed by a wait that stands
    for a GPU's training step: it releases the GIL, as a wait on the device does."""
    per_epoch, workers_cpu = len(dataset) // batch_size, []
    for epochs in (1, 2):
        workers_start = workers_cpu_seconds()
        loader = PretrainingLoader(dataset, collator, batch_size, num_workers=workers, read_ahead=read_ahead)
        batches = loader.batches()
        for _ in range(epochs):
            start, main_start, count = time.perf_counter(), time.process_time(), 0
            for _, _, batch in itertools.islice(batches, per_epoch):
                count += len(next(iter(batch.values())))
                time.sleep(step_seconds)
            seconds, main_cpu = time.perf_counter() - start, time.process_time() - main_start
        batches.close()
        del loader, batches
        gc.collect()  # the loader's workers end
        workers_cpu.append(workers_cpu_seconds() - workers_start)
    return count / seconds, (main_cpu + workers_cpu[1] - workers_cpu[0]) / count


def read_ahead_gain(dataset, collator, batch_size: int) -> dict:
    """Images/s of the main process's loading followed by a stand-in GPU step as long as the loading, each batch
    loaded after the step (straight) or by `read_ahead`'s thread during it: 0.5 and 1 times the loading's own rate
    if nothing, or all, of the loading is hidden."""
    loading_rate, _ = epoch_rate(dataset, collator, batch_size, 0)
    step_seconds = batch_size / loading_rate
    rates = {"loading_alone": loading_rate, "step_ms": 1000 * step_seconds}
    for read_ahead in (False, True):
        rate, cpu_per_image = epoch_rate(dataset, collator, batch_size, 0, read_ahead, step_seconds)
        rates["read_ahead" if read_ahead else "straight"] = rate
        rates[f"{'read_ahead' if read_ahead else 'straight'}_cpu_ms_per_image"] = 1000 * cpu_per_image
    print(
        f"  a step as long as the loading ({rates['step_ms']:.1f} ms a batch): loading alone "
        f"{loading_rate:.0f} images/s, straight {rates['straight']:.0f}, read ahead {rates['read_ahead']:.0f} "
        f"({rates['read_ahead_cpu_ms_per_image']:.3f} CPU ms an image)"
    )
    return {key: round(value, 3) for key, value in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64, help="crops per size")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--paths", nargs="+", default=None, help="some of the collators (default: all)")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "loader_cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core a process: per-core figures
    report = {"cpu": platform.processor() or "cpu", "torch": torch.__version__, "batch_size": args.batch_size,
              "images_per_s_per_core": {}, "cpu_ms_per_image": {}}  # fmt: skip
    report["device_part_ms_per_image_on_this_cpu"] = {}
    features = datasets.Features({"image": datasets.Image()})
    with tempfile.TemporaryDirectory() as folder:
        for side in args.sizes:
            path = Path(folder) / f"crops-{side}.parquet"
            images = phantom_crops([(side, side)] * args.images)
            datasets.Dataset.from_dict({"image": images}, features=features).to_parquet(str(path))
            # datasets' cache (the Arrow copies, the cast, the raw pixels) goes with the crops, not to ~/.cache
            stored = {"png": datasets.load_dataset("parquet", data_files=str(path), split="train",
                                                   cache_dir=folder).cast(features)}  # fmt: skip
            to_raw_pixels(stored["png"]).to_parquet(str(path.with_suffix(".raw.parquet")))
            stored["raw"] = datasets.load_dataset("parquet", data_files=str(path.with_suffix(".raw.parquet")),
                                                  split="train", cache_dir=folder)  # fmt: skip
            for name, (collator, image_format) in collators(side).items():
                if args.paths and name not in args.paths:
                    continue
                for workers in args.workers:
                    rate, cpu_per_image = epoch_rate(stored[image_format], collator, args.batch_size, workers)
                    per_core, key = rate / max(1, workers), f"{side} px, {name}, {workers} workers"
                    report["images_per_s_per_core"][key] = round(per_core, 1)
                    report["cpu_ms_per_image"][key] = round(1000 * cpu_per_image, 3)
                    print(
                        f"{side:5d} px  {name:12s}  {workers} workers: {rate:7.1f} images/s, {per_core:7.1f} a core, "
                        f"{1000 * cpu_per_image:.3f} CPU ms an image"
                    )
                if name == "miram_device":
                    report.setdefault("read_ahead", {})[f"{side} px"] = read_ahead_gain(
                        stored[image_format], collator, args.batch_size
                    )
            device_ms = 1000 * device_part_seconds(stored["raw"], side, args.batch_size)
            report["device_part_ms_per_image_on_this_cpu"][f"{side} px"] = round(device_ms, 3)
            print(f"{side:5d} px  device part (device_views, MIRAM [1, 2] at 112 px) on this CPU: {device_ms:.2f} ms")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
