"""One prepared GPU check (run by bench/gpu_check.sh): what miram_hf gets out of the GPU it runs on.

1. `throughput`: bf16 autocast, fused AdamW, SDPA; ViT-B/16 MIRAM [1, 2] at 112 px and transformers' ViTMAE at
   224 px, batch 256: images/s, the step time against ViTMAE's, model FLOPs per image (`training_flops`, the formula
   below) and MFU against the device's dense bf16 peak (`PEAK_BF16_TFLOPS`).
2. `decoder_attention`: one 8-block, 512-wide 2x decoder at 3136 tokens (a 56 x 56 grid), batch 64, forward and
   backward in bf16, with SDPA and with Nystromformer: peak memory and seconds per iteration (the MIRAM paper's
   Table II compares 44 GB / 1.49 s with 76 GB / 1.80 s for its whole model).
3. `bf16_vs_fp32`: MIRAM's loss on one fixed batch in fp32 and under bf16 autocast.
4. `feed_rate`: `pretrain.py --augment_on_device` with raw 16-bit 512 px crops in parquet, batch 256: the loader's
   images/s (`PretrainingLoader` with `NativeRegionCollator`, batches pinned as on a GPU) in the main process on one
   core and with 4 workers, its CPU time per image, the device's images/s for the views (`device_views`, MIRAM [1, 2]
   at 112 px), and from them the loader cores that MIRAM's training rate (part 1) needs and the share of its step the
   views take. The main process reads ahead in a thread, as `pretrain.py` does on a GPU.
5. `pretraining`: `scripts/pretrain.py --augment_on_device` itself, ViT-B/16 MIRAM [1, 2] at 112 px from part 4's
   crops, batch 256, 60 steps: the median images/s of its logging windows after the first (loading, views, the step
   and its checks), and their share of the model's images/s on a fixed batch (part 1): how much of the GPU the whole
   pipeline keeps busy.

Without a GPU, `--dry-run` runs every part on the CPU at toy sizes, so that the script is known to work before a GPU
is at hand (the test suite does this); its numbers mean nothing.
"""

import argparse
import importlib.util
import json
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import torch
from loader import epoch_rate  # bench/loader.py, beside this script
from transformers import ViTMAEConfig, ViTMAEForPreTraining

from miram_hf import MammographyImageProcessor, MiramConfig, MiramForPreTraining
from miram_hf.data.raw_pixels import RAW_PIXEL_FEATURES
from miram_hf.data.synthetic import phantom_crops
from miram_hf.modeling.miram.modeling_miram import MiramLayer
from miram_hf.training.device_views import NativeRegionCollator, device_views
from miram_hf.training.pretraining_data import PretrainingLoader

# Dense bf16 tensor-core peaks (no sparsity), from the vendors' data sheets.
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0}
VIT_B = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
MAE_DECODER = dict(decoder_hidden_size=512, decoder_num_hidden_layers=8, decoder_num_attention_heads=16,
                   decoder_intermediate_size=2048)  # fmt: skip
TOY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, decoder_hidden_size=16,
           decoder_num_hidden_layers=1, decoder_num_attention_heads=2, decoder_intermediate_size=32)  # fmt: skip


def transformer_flops(tokens: int, width: int, mlp: int, layers: int) -> float:
    """Forward FLOPs of `layers` transformer blocks over `tokens` tokens: q, k, v and output projections
    (4 t w^2 multiply-adds), attention scores and their weighted sum (2 t^2 w), the MLP (2 t w m); 2 FLOPs each."""
    return 2.0 * layers * (4 * tokens * width**2 + 2 * tokens**2 * width + 2 * tokens * width * mlp)


def training_flops(config, image_size: int, scales: list[int]) -> float:
    """Model FLOPs of one training image (forward and backward, backward counted as twice the forward), as MAE
    trains: the encoder on the visible patches and the CLS token, then one decoder per scale over every token."""
    patch, channels = config.patch_size, config.num_channels
    patches = (image_size // patch) ** 2
    visible = round(patches * (1 - config.mask_ratio)) + 1
    forward = 2.0 * (visible - 1) * patch * patch * channels * config.hidden_size  # patch embedding
    forward += transformer_flops(visible, config.hidden_size, config.intermediate_size, config.num_hidden_layers)
    for scale in scales:
        tokens = patches * scale * scale + 1
        forward += 2.0 * tokens * config.hidden_size * config.decoder_hidden_size  # decoder embedding
        forward += transformer_flops(tokens, config.decoder_hidden_size, config.decoder_intermediate_size,
                                     config.decoder_num_hidden_layers)  # fmt: skip
        forward += 2.0 * tokens * config.decoder_hidden_size * patch * patch * channels  # pixel prediction
    return 3.0 * forward


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(model, pixel_values, steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per optimizer step (bf16 autocast, fused AdamW on a GPU) after `warmup` steps."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    for index in range(warmup + steps):
        if index == warmup:
            synchronize(device)
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(pixel_values).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    synchronize(device)
    return (time.perf_counter() - start) / steps


def measure_throughput(device: torch.device, dry_run: bool) -> dict:
    sizes = dict(TOY) if dry_run else dict(VIT_B, **MAE_DECODER)
    batch, steps, warmup = (2, 2, 1) if dry_run else (256, 20, 5)
    setups = {
        "vit_mae_224": (ViTMAEForPreTraining(ViTMAEConfig(image_size=224, patch_size=16, **sizes)), 224, [1]),
        "miram_[1,2]_112": (
            MiramForPreTraining(MiramConfig(image_size=112, patch_size=16, num_channels=3, scales=[1, 2], **sizes)),
            112,
            [1, 2],
        ),  # fmt: skip
    }
    peak = peak_tflops(device)
    results = {}
    for name, (model, image_size, scales) in setups.items():
        model = model.to(device).train()
        pixel_values = torch.rand(batch, 3, image_size, image_size, device=device)
        seconds = timed_steps(model, pixel_values, steps, warmup, device)
        flops = training_flops(model.config, image_size, scales)
        achieved = flops * batch / seconds
        results[name] = {"batch": batch, "step_s": round(seconds, 4), "images_per_s": round(batch / seconds, 1),
                         "gflops_per_image": round(flops / 1e9, 2), "achieved_tflops": round(achieved / 1e12, 2),
                         "mfu": round(achieved / (peak * 1e12), 3) if peak else None}  # fmt: skip
        del model
    results["miram_[1,2]_112"]["step_time_over_vit_mae_224"] = round(
        results["miram_[1,2]_112"]["step_s"] / results["vit_mae_224"]["step_s"], 3
    )
    return results


def measure_decoder_attention(device: torch.device, dry_run: bool) -> dict:
    width, heads, mlp, layers = (16, 2, 32, 1) if dry_run else (512, 16, 2048, 8)
    side, batch = (8, 2) if dry_run else (56, 64)
    config = MiramConfig(decoder_hidden_size=width, decoder_num_attention_heads=heads, decoder_intermediate_size=mlp)
    tokens = side * side + 1
    results = {}
    for attention in ("sdpa", "nystromformer"):
        blocks = torch.nn.ModuleList(MiramLayer(config, width, heads, mlp, attention, tokens) for _ in range(layers))
        blocks = blocks.to(device)
        hidden_states = torch.randn(batch, tokens, width, device=device, requires_grad=True)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for _ in range(1 if dry_run else 4):
            synchronize(device)
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16):
                states = hidden_states
                for block in blocks:
                    states = block(states)[0]
            states.float().mean().backward()
            synchronize(device)
            times.append(time.perf_counter() - start)
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        results[attention] = {"s_per_iteration": round(min(times), 4), "peak_memory_gb": peak and round(peak, 2)}
        del blocks, hidden_states
    results["tokens"], results["batch"] = tokens - 1, batch
    return results


def measure_bf16_vs_fp32(device: torch.device, dry_run: bool) -> dict:
    sizes = dict(TOY) if dry_run else dict(VIT_B, **MAE_DECODER)
    torch.manual_seed(0)
    model = MiramForPreTraining(MiramConfig(image_size=112, patch_size=16, num_channels=3, scales=[1, 2], **sizes))
    model = model.to(device).eval()
    pixel_values = torch.rand(4, 3, 112, 112, device=device)
    noise = torch.rand(4, 49, device=device)
    with torch.no_grad():
        fp32 = model(pixel_values, noise=noise).loss.item()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            bf16 = model(pixel_values, noise=noise).loss.item()
    return {"fp32": round(fp32, 6), "bf16": round(bf16, 6), "relative_difference": round(abs(bf16 - fp32) / fp32, 5)}


def raw_crops(side: int, count: int, folder: str) -> datasets.Dataset:
    """`count` raw 16-bit crops (16 phantom ones, repeated) in parquet, read back as pretrain.py reads it."""
    crops = [crop.astype("<u2").tobytes() for crop in phantom_crops([(side, side)] * 16)]
    rows = {"pixels": [crops[index % 16] for index in range(count)], "height": [side] * count, "width": [side] * count}
    path = str(Path(folder) / "crops.parquet")
    datasets.Dataset.from_dict(rows, features=datasets.Features(RAW_PIXEL_FEATURES)).to_parquet(path)
    return datasets.load_dataset("parquet", data_files=path, split="train", cache_dir=str(Path(folder) / "cache"))


def feed_sizes(dry_run: bool) -> tuple[int, int, int]:
    """Crop side, crops and batch of parts 4 and 5."""
    return (64, 32, 8) if dry_run else (512, 2048, 256)


def measure_feed_rate(device: torch.device, dry_run: bool, folder: str, training_images_per_s: float) -> dict:
    (side, count, batch), workers = feed_sizes(dry_run), 1 if dry_run else 4
    pinned = device.type == "cuda"  # pretrain.py's loader pins, and reads ahead, on a GPU
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one loader core
    dataset = raw_crops(side, count, folder)
    collator = NativeRegionCollator(side, pin_memory=pinned)
    main_rate, cpu_per_image = epoch_rate(dataset, collator, batch, 0, read_ahead=pinned)
    workers_rate, _ = epoch_rate(dataset, collator, batch, workers)
    native = next(PretrainingLoader(dataset, collator, batch).epoch(0))
    torch.set_num_threads(threads)
    if native["native_pixels"].is_pinned() != pinned:
        raise RuntimeError(f"The loader's batch is {'not ' * pinned}pinned on {device}.")
    processor = MammographyImageProcessor(size={"height": 112, "width": 112}, do_breast_crop=False, do_flip=False,
                                          keep_aspect_ratio=False, num_channels=3, scales=[1, 2])  # fmt: skip
    times = []
    for batch_index in range(3 if dry_run else 10):
        synchronize(device)
        start = time.perf_counter()
        on_device = {key: value.to(device, non_blocking=True) for key, value in native.items()}
        device_views(on_device, processor, seed=0, epoch=0, batch_index=batch_index)
        synchronize(device)
        times.append(time.perf_counter() - start)
    device_rate = batch / min(times[1:])
    return {"crop_px": side, "batch": batch, "loader_images_per_s_per_core": round(main_rate, 1),
            "loader_cpu_ms_per_image": round(1000 * cpu_per_image, 4),
            "loader_workers": workers, "loader_images_per_s_with_workers": round(workers_rate, 1),
            "device_views_images_per_s": round(device_rate, 1),
            "loader_cores_for_miram": round(training_images_per_s / main_rate, 4),
            "views_share_of_miram_step": round(training_images_per_s / device_rate, 4)}  # fmt: skip


def measure_pretraining(dry_run: bool, folder: str, training_images_per_s: float) -> dict:
    """`scripts/pretrain.py --augment_on_device` itself on part 4's crops, MIRAM [1, 2] at 112 px (ViT-B/16, one
    channel): the median images/s of its logging windows after the first (which starts the kernels), loading, views,
    finiteness checks and all, and their share of the model's images/s on a fixed batch (part 1)."""
    spec = importlib.util.spec_from_file_location("pretrain", Path(__file__).parents[1] / "scripts" / "pretrain.py")
    pretrain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pretrain)
    side, _, batch = feed_sizes(dry_run)
    steps, window = (8, 2) if dry_run else (60, 10)
    with tempfile.TemporaryDirectory() as output_dir:
        progress = pretrain.main(
            ["--model_config", "vit-micro" if dry_run else "vit-base", "--dataset", folder, "--augment_on_device",
             "--native_region_size", str(side), "--per_device_train_batch_size", str(batch), "--max_steps", str(steps),
             "--logging_steps", str(window), "--output_dir", output_dir, "--cache_dir", str(Path(folder) / "cache"),
             "--probe_dataset", "none", "--report_to", "none"]
        )  # fmt: skip
    windows = [round(entry["images_per_second"], 1) for entry in progress["throughput"]]
    rate = float(np.median(windows[1:]))
    return {"batch": batch, "steps": steps, "logging_steps": window, "window_images_per_s": windows,
            "images_per_s": round(rate, 1), "share_of_model_rate": round(rate / training_images_per_s, 4)}  # fmt: skip


def table(report: dict) -> str:
    """The results as a Markdown table for bench/README.md."""
    lines = ["| measurement | value |", "| --- | --- |"]
    for name, row in report["throughput"].items():
        lines.append(f"| {name}: images/s, MFU | {row['images_per_s']}, {row['mfu']} |")
    ratio = report["throughput"]["miram_[1,2]_112"]["step_time_over_vit_mae_224"]
    lines.append(f"| MIRAM [1, 2] 112 px step / ViTMAE 224 px step | {ratio} |")
    for attention in ("sdpa", "nystromformer"):
        row = report["decoder_attention"][attention]
        lines.append(f"| 2x decoder, {attention}: s/iteration, peak GB | {row['s_per_iteration']}, "
                     f"{row['peak_memory_gb']} |")  # fmt: skip
    lines.append(f"| bf16 vs fp32 loss, relative difference | {report['bf16_vs_fp32']['relative_difference']} |")
    feed = report["feed_rate"]
    lines.append(f"| --augment_on_device, {feed['crop_px']} px raw crops, batch {feed['batch']}: loader images/s in "
                 f"the main process, CPU ms an image | {feed['loader_images_per_s_per_core']}, "
                 f"{feed['loader_cpu_ms_per_image']} |")  # fmt: skip
    lines.append(f"| loader images/s with {feed['loader_workers']} workers; device views images/s | "
                 f"{feed['loader_images_per_s_with_workers']}; {feed['device_views_images_per_s']} |")  # fmt: skip
    lines.append(f"| loader cores MIRAM needs; views' share of its step | {feed['loader_cores_for_miram']}; "
                 f"{feed['views_share_of_miram_step']} |")  # fmt: skip
    run = report["pretraining"]
    lines.append(f"| pretrain.py --augment_on_device, batch {run['batch']}: images/s, share of the fixed-batch "
                 f"rate | {run['images_per_s']}, {run['share_of_model_rate']} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="every part on the CPU at toy sizes")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    device = torch.device("cpu" if args.dry_run else "cuda")
    report = {
        "device": "cpu (dry run)" if args.dry_run else torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "throughput": measure_throughput(device, args.dry_run),
        "decoder_attention": measure_decoder_attention(device, args.dry_run),
        "bf16_vs_fp32": measure_bf16_vs_fp32(device, args.dry_run),
    }
    miram_rate = report["throughput"]["miram_[1,2]_112"]["images_per_s"]
    with tempfile.TemporaryDirectory() as folder:
        report["feed_rate"] = measure_feed_rate(device, args.dry_run, folder, miram_rate)
        report["pretraining"] = measure_pretraining(args.dry_run, folder, miram_rate)
    args.output.mkdir(parents=True, exist_ok=True)
    name = "gpu_dry_run.json" if args.dry_run else f"gpu_{report['device'].replace(' ', '_')}.json"
    (args.output / name).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(table(report))


if __name__ == "__main__":
    main()
