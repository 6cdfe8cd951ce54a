"""Training-step cost of MIRAM against transformers' ViTMAE, measured in one process.

Three measurements (see bench/README.md for results and how to read them):

1. `ratio`: one optimizer step (forward, backward, AdamW) of ViTMAE and of MIRAM with scales [1] and [1, 2] (each
   attention on the high-resolution decoder), interleaved round by round so that machine noise hits all models alike;
   the median step time of each model divided by ViTMAE's. Peak memory per model: CUDA's allocator peak on a GPU, or
   the peak resident set of a fresh subprocess on the CPU (`--cpu-memory`).
2. `scaling`: forward + backward of one decoder block (MAE's decoder width) with each attention at 196, 784 and 3136
   tokens (14x14, 28x28 and 56x56 grids), to show how each variant's cost grows with the token count.
3. `throughput` (GPU only): bf16 autocast training images/s of ViT-B/16 at 224 px for ViTMAE and MIRAM.
4. `compile`: the optimizer step of `torch.compile(model)` (inductor) against the same model eager, for ViTMAE and
   MIRAM [1, 2], interleaved round by round, and how long the first (compiling) step took.

    python bench/model_step.py --preset vit-small --batch-size 8 --rounds 10           # CPU
    python bench/model_step.py --preset vit-base --batch-size 64 --rounds 20 --device cuda
"""

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from transformers import ViTMAEConfig, ViTMAEForPreTraining

from miram_hf import MiramConfig, MiramForPreTraining
from miram_hf.modeling.miram.modeling_miram import MiramLayer

PRESETS = {
    "vit-tiny": dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768),
    "vit-small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
    "vit-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}
ATTENTIONS = ("sdpa", "eager", "nystromformer", "performer", "linformer")


def build(name: str, preset: str, image_size: int) -> torch.nn.Module:
    fields = dict(PRESETS[preset], image_size=image_size, patch_size=16, num_channels=3)
    if name == "vit_mae":
        return ViTMAEForPreTraining(ViTMAEConfig(**fields))
    scales, high_res_attention = name.split(":")  # e.g. "miram[1,2]:nystromformer"
    scales = json.loads(scales.removeprefix("miram"))
    attention = ["sdpa"] + [high_res_attention] * (len(scales) - 1)
    return MiramForPreTraining(MiramConfig(**fields, scales=scales, decoder_attention=attention))


def model_names() -> list[str]:
    return ["vit_mae", "miram[1]:sdpa"] + [f"miram[1,2]:{attention}" for attention in ATTENTIONS]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_step(model, optimizer, pixel_values, noise, autocast_dtype) -> None:
    with torch.autocast(pixel_values.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        loss = model(pixel_values, noise=noise).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def interleaved_step_times(setups: dict, pixel_values, noise, rounds: int, device: torch.device) -> dict:
    """Seconds of each optimizer step of every (model, optimizer) in `setups`, interleaved: each round times every
    model once, so that machine noise hits all alike."""
    times = {key: [] for key in setups}
    for _ in range(rounds):
        for key, (model, optimizer) in setups.items():
            synchronize(device)
            start = time.perf_counter()
            train_step(model, optimizer, pixel_values, noise, None)
            synchronize(device)
            times[key].append(time.perf_counter() - start)
    return times


def measure_ratio(args, device: torch.device) -> dict:
    torch.manual_seed(0)
    pixel_values = torch.rand(args.batch_size, 3, args.image_size, args.image_size, device=device)
    noise = torch.rand(args.batch_size, (args.image_size // 16) ** 2, device=device)
    setups = {}
    for name in model_names():
        model = build(name, args.preset, args.image_size).to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        for _ in range(args.warmup):
            train_step(model, optimizer, pixel_values, noise, None)
        setups[name] = (model, optimizer)
    times = interleaved_step_times(setups, pixel_values, noise, args.rounds, device)
    reference = statistics.median(times["vit_mae"])
    results = {}
    for name, samples in times.items():
        median = statistics.median(samples)
        results[name] = {"step_ms": round(1000 * median, 2), "time_ratio": round(median / reference, 3)}
    if device.type == "cuda":
        for name, (model, optimizer) in setups.items():
            torch.cuda.reset_peak_memory_stats()
            train_step(model, optimizer, pixel_values, noise, None)
            results[name]["peak_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    elif args.cpu_memory:
        for name in setups:
            results[name]["peak_memory_mb"] = cpu_peak_memory_mb(name, args)
    if "peak_memory_mb" in results["vit_mae"]:
        for name in results:
            results[name]["memory_ratio"] = round(
                results[name]["peak_memory_mb"] / results["vit_mae"]["peak_memory_mb"], 3
            )
    return results


def cpu_peak_memory_mb(name: str, args) -> float:
    """Peak resident memory of two training steps in a fresh process, above the resident memory of the built model.
    Linux only: writing 5 to /proc/self/clear_refs resets the high-water mark (VmHWM) after the model is built, so
    the transient peak of building it does not count."""
    code = f"""
import re, sys, torch
sys.path.insert(0, {str(Path(__file__).parent)!r})
from model_step import build, train_step
status = lambda key: int(re.search(key + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1))
model = build({name!r}, {args.preset!r}, {args.image_size}).train()
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
pixel_values = torch.rand({args.batch_size}, 3, {args.image_size}, {args.image_size})
noise = torch.rand({args.batch_size}, {(args.image_size // 16) ** 2})
open("/proc/self/clear_refs", "w").write("5")
base = status("VmRSS")
for _ in range(2):
    train_step(model, optimizer, pixel_values, noise, None)
print((status("VmHWM") - base) / 1024)
"""
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return round(float(output.strip().splitlines()[-1]))


def measure_scaling(args, device: torch.device) -> dict:
    config = MiramConfig(decoder_hidden_size=512, decoder_num_attention_heads=16, decoder_intermediate_size=2048)
    results = {}
    for side in (14, 28, 56):
        tokens = side * side
        hidden_states = torch.randn(args.scaling_batch_size, tokens + 1, 512, device=device)
        row = {}
        for attention in ATTENTIONS:
            layer = MiramLayer(config, 512, 16, 2048, attention, tokens + 1).to(device)
            if attention == "linformer":
                torch.nn.init.normal_(layer.attention.key_projection, std=tokens**-0.5)
                torch.nn.init.normal_(layer.attention.value_projection, std=tokens**-0.5)
            samples = []
            for i in range(args.warmup + args.rounds):
                synchronize(device)
                start = time.perf_counter()
                layer(hidden_states.requires_grad_())[0].sum().backward()
                synchronize(device)
                if i >= args.warmup:
                    samples.append(time.perf_counter() - start)
            row[attention] = round(1000 * statistics.median(samples), 2)
        results[f"{tokens} tokens"] = {
            attention: {"ms": ms, "ratio_to_sdpa": round(ms / row["sdpa"], 3)} for attention, ms in row.items()
        }
    return results


def measure_throughput(args, device: torch.device) -> dict:
    """bf16 autocast training images/s of ViT-B/16 at 224 px."""
    pixel_values = torch.rand(args.batch_size, 3, 224, 224, device=device)
    noise = torch.rand(args.batch_size, 196, device=device)
    results = {}
    for name in ("vit_mae", "miram[1]:sdpa", "miram[1,2]:sdpa", "miram[1,2]:nystromformer"):
        model = build(name, "vit-base", 224).to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        for _ in range(args.warmup):
            train_step(model, optimizer, pixel_values, noise, torch.bfloat16)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(args.rounds):
            train_step(model, optimizer, pixel_values, noise, torch.bfloat16)
        synchronize(device)
        results[name] = round(args.batch_size * args.rounds / (time.perf_counter() - start), 1)
        del model, optimizer
    return results


def measure_compile(args, device: torch.device) -> dict:
    torch.manual_seed(0)
    pixel_values = torch.rand(args.batch_size, 3, args.image_size, args.image_size, device=device)
    noise = torch.rand(args.batch_size, (args.image_size // 16) ** 2, device=device)
    setups, results = {}, {}
    for name in ("vit_mae", "miram[1,2]:sdpa"):
        for compiled in (False, True):
            model = build(name, args.preset, args.image_size).to(device).train()
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            start = time.perf_counter()
            step_model = torch.compile(model) if compiled else model
            train_step(step_model, optimizer, pixel_values, noise, None)
            if compiled:
                results[name] = {"first_compiled_step_s": round(time.perf_counter() - start, 1)}
            for _ in range(args.warmup):
                train_step(step_model, optimizer, pixel_values, noise, None)
            setups[name, compiled] = (step_model, optimizer)
    times = interleaved_step_times(setups, pixel_values, noise, args.rounds, device)
    for name in results:
        eager, compiled = statistics.median(times[name, False]), statistics.median(times[name, True])
        results[name] |= {"eager_ms": round(1000 * eager, 2), "compiled_ms": round(1000 * compiled, 2),
                          "compiled_over_eager": round(compiled / eager, 3)}  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="vit-small")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--scaling-batch-size", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cpu-memory", action="store_true", help="peak RSS per model in subprocesses (CPU only)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["ratio", "scaling", "throughput", "compile"])
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    device = torch.device(args.device)
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    if "ratio" not in args.skip:
        report["ratio"] = measure_ratio(args, device)
    if "scaling" not in args.skip:
        report["scaling"] = measure_scaling(args, device)
    if device.type == "cuda" and "throughput" not in args.skip:
        report["throughput_images_per_s_bf16"] = measure_throughput(args, device)
    if "compile" not in args.skip:
        report["compile"] = measure_compile(args, device)
    args.output.mkdir(parents=True, exist_ok=True)
    measured = [key for key in ("ratio", "scaling", "compile") if key in report]
    suffix = "" if len(measured) == 3 else "_" + "_".join(measured)  # a partial run keeps the full one's file
    path = args.output / f"model_step_{device.type}_{args.preset}{suffix}.json"
    path.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
