"""Pretrain MIRAM (or MAE, BYOL, DINO, MoCo v3, SimCLR, SwAV) with accelerate, from one CPU to many GPUs and nodes.

    accelerate launch scripts/pretrain.py                     # MIRAM on the synthetic phantom, a few CPU minutes
    accelerate launch --config_file configs/accelerate/ddp.yaml scripts/pretrain.py --model_config vit-base \\
        --dataset cbis-ddsm --data_dir /data/CBIS-DDSM --num_train_epochs 500 --per_device_train_batch_size 128
    accelerate launch scripts/pretrain.py --dataset out/cbis --streaming   # parquet from scripts/prepare_data.py
    accelerate launch scripts/pretrain.py --model_type byol --model_config resnet-50 --config_overrides momentum=0.996

The options come in three groups, as transformers' run_mae has them: the model, the data, and TrainingArguments
itself (`PretrainingTrainingArguments`), whose options this loop does not implement are refused. Its defaults are
MAE's recipe: AdamW (0.9, 0.95), weight decay 0.05 off biases and norms, linear warmup then half-cosine, gradient
clipping; its lr rule, lr = base_learning_rate x global batch / 256, with --base_learning_rate 1.5e-4 (the default
--learning_rate 2e-3 suits the small batches of a laptop run). Checkpoints every
--save_steps under output_dir/checkpoints (model, optimizer, scheduler, random states, data position); rerunning the
same command with --resume_from_checkpoint latest carries on exactly where the last one left off (past a checkpoint
that cannot be read, to the newest intact one). A NaN or infinite loss stops the run (--on_nonfinite_loss skip: the
step is dropped) and no checkpoint or model of NaN weights is written. The output folder
ends up with the model, its processor, a model card and reconstruction pictures, ready for from_pretrained or the Hub.
The joint-embedding methods learn from mammogram views (crop, flips, gamma, contrast; multi-crop for DINO and SwAV)
and also leave their backbone as a ready `...ForImageClassification` in output_dir/backbone, for scripts/finetune.py.
"""

import sys
from pathlib import Path

# Run as `python scripts/<name>.py`, this folder comes first on sys.path, and scripts/evaluate.py would shadow the
# `evaluate` library that miram_hf.metrics builds on.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

import gc
import json
import logging
import math
import time
import zlib
from dataclasses import asdict, dataclass, field, fields

import datasets
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, send_to_device, set_seed
from tqdm.auto import tqdm
from transformers import HfArgumentParser, TrainingArguments, get_scheduler

from miram_hf import add_remote_pipelines
from miram_hf.data import BUILDERS, TILE_OPTIONS, carve_validation, load_mammography, parse_dataset_options
from miram_hf.training import parameter_groups
from miram_hf.training.arguments import PretrainingTrainingArguments
from miram_hf.training.checkpointing import (
    latest_checkpoint,
    load_checkpoint,
    load_latest_checkpoint,
    run_lock,
    save_checkpoint,
    touch_lock,
)
from miram_hf.training.device_views import NativeRegionCollator, device_views
from miram_hf.training.divergence import TrainingDivergedError, finite_everywhere, is_finite, weights_are_finite
from miram_hf.training.hub import push_folder_to_hub
from miram_hf.training.methods import METHODS, pretraining_method
from miram_hf.training.model_card import render_model_card
from miram_hf.training.monitoring import (
    RepresentationProbe,
    feature_extractor,
    format_probe,
    format_ratios,
)
from miram_hf.training.presets import (
    MODEL_PRESETS,
    RESNET_PRESETS,
    VAE_PRESETS,
    default_model_config,
    fsdp_units,
    pretraining_config,
    pretraining_model,
    pretraining_processor,
)
from miram_hf.training.pretraining_data import (
    PretrainingLoader,
    batches_per_epoch,
    pretraining_dataset,
)

logger = logging.getLogger("pretrain")


@dataclass
class ModelArguments:
    model_type: str = field(default="miram", metadata={"help": f"one of {sorted(METHODS)}"})
    model_config: str | None = field(
        default=None,
        metadata={
            "help": f"{sorted(MODEL_PRESETS)} (default vit-demo), {sorted(RESNET_PRESETS)} (joint-embedding methods), "
            f"{sorted(VAE_PRESETS)} (vae, its default) or a config path"
        },
    )
    config_overrides: str | None = field(
        default=None, metadata={"help": "other config fields, key=value,key=value (e.g. momentum=0.996)"}
    )
    image_size: int | None = field(default=None, metadata={"help": "input side (presets: 112, as in the paper)"})
    patch_size: int | None = field(default=None, metadata={"help": "presets: 16"})
    scales: list[int] | None = field(default=None, metadata={"help": "MIRAM's reconstruction factors (default 1 2)"})
    decoder_attention: list[str] | None = field(default=None, metadata={"help": "MIRAM: one per scale"})
    mask_ratio: float | None = field(default=None, metadata={"help": "default 0.75"})
    norm_pix_loss: bool | None = field(default=None)

    def __post_init__(self):
        self.model_config = self.model_config or default_model_config(self.model_type)
        pretraining_method(self.model_type)  # an unknown method is refused here, with the known ones


@dataclass
class DataArguments:
    dataset: str = field(default="synthetic", metadata={"help": "a collection, a mixture or a parquet path"})
    data_dir: str | None = field(default=None, metadata={"help": "mixtures: name=folder,name=folder"})
    dataset_config: str = field(default="lesions", metadata={"help": "lesions, tiles or images"})
    num_images: int | None = field(default=1024, metadata={"help": "synthetic only: phantoms to draw"})
    dataset_options: str | None = field(
        default=None, metadata={"help": "the collection config's fields, key=value,key=value (e.g. tile_size=96)"}
    )
    streaming: bool = field(default=False, metadata={"help": "stream parquet files instead of loading them"})
    shuffle_buffer_size: int = field(default=1000, metadata={"help": "streaming shuffle buffer, in rows"})
    crop_scale: list[float] = field(default_factory=lambda: [0.2, 1.0], metadata={"help": "random resized crop area"})
    num_local_crops: int = field(default=6, metadata={"help": "DINO and SwAV: local views besides the 2 global ones"})
    cache_dir: str | None = field(default=None)
    augment_on_device: bool = field(
        default=False,
        metadata={"help": "MIRAM and MAE: the loader cuts fixed-size native regions, and the crop, flip and resizes "
                  "run batched on the training device (fast with --image_format raw parquet from prepare_data.py)"},
    )  # fmt: skip
    native_region_size: int = field(
        default=512, metadata={"help": "--augment_on_device: the side of the native region cut from each image"}
    )
    # what the run learned, measured on held-out labelled images
    probe_dataset: str = field(
        default="synthetic",
        metadata={"help": "the collection whose validation split (carved from train where it has none) the probe "
                  "scores and the reconstructions are measured on; none turns the probe off"},
    )  # fmt: skip
    probe_data_dir: str | None = field(default=None, metadata={"help": "default: --data_dir for the same collection"})
    probe_dataset_config: str = field(default="lesions")
    probe_label_column: str = field(default="label_pathology")


def parse_arguments(
    argv: list[str] | None = None,
) -> tuple[ModelArguments, DataArguments, PretrainingTrainingArguments]:
    """The three groups of arguments, with the checks that span them made before any data or model is loaded."""
    parser = HfArgumentParser((ModelArguments, DataArguments, PretrainingTrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    given = {token[2:].split("=")[0] for token in (sys.argv[1:] if argv is None else argv) if token.startswith("--")}
    training_options = {option.name for option in fields(TrainingArguments)}
    for name in sorted(given):
        option = name if name in training_options else name.removeprefix("no_")  # --no_<flag> for a default True
        if option in training_options and option not in PretrainingTrainingArguments.IMPLEMENTED:
            raise ValueError(f"--{name} is a TrainingArguments option that pretrain.py does not implement.")
    if data_args.streaming and training_args.max_steps <= 0:
        raise ValueError("A streamed dataset has no length: give --max_steps.")
    if data_args.augment_on_device and not pretraining_method(model_args.model_type).masked:
        raise ValueError(f"--augment_on_device makes the views of MIRAM and MAE; {model_args.model_type}'s are made in "
                         "the loader.")  # fmt: skip
    return model_args, data_args, training_args


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, training_args = parse_arguments(argv)
    accelerator = Accelerator(
        cpu=training_args.use_cpu,
        gradient_accumulation_steps=training_args.gradient_accumulation_steps,
        mixed_precision=training_args.mixed_precision,
        dynamo_backend=training_args.torch_compile_backend if training_args.torch_compile else None,
        log_with=training_args.report_to or None,
        project_dir=str(Path(training_args.output_dir) / "runs"),
    )
    with run_lock(training_args.output_dir, holder=accelerator.is_main_process):  # one run at a time in output_dir
        progress = pretrain(model_args, data_args, training_args, accelerator)
    # The DDP wrapper's reducer holds the process group too. Freed last, inside the reducer's deallocation (which holds
    # the GIL), the gloo group waits for its worker threads while one of them waits for the GIL to free a tensor of the
    # last collective: a deadlock in about 1 run of 15. Freed first, the group goes with destroy_process_group, which
    # releases the GIL while it waits.
    accelerator.free_memory()
    gc.collect()
    accelerator.end_training()
    return progress


def pretrain(
    model_args: ModelArguments, data_args: DataArguments, training_args: PretrainingTrainingArguments,
    accelerator: Accelerator,
) -> dict:  # fmt: skip
    """The run the arguments describe, from the data to the model folder; returns its progress
    (trainer_state.json)."""
    output_dir = Path(training_args.output_dir)
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING, format="%(message)s")
    method = pretraining_method(model_args.model_type)
    objective = method.learns_from
    seed = training_args.seed
    set_seed(seed)

    # data
    extra = {"num_images": data_args.num_images} if data_args.dataset == "synthetic" and data_args.num_images else {}
    extra |= parse_dataset_options(data_args.dataset_options)
    with accelerator.main_process_first():  # one process builds the dataset cache, the others read it
        dataset = pretraining_dataset(
            data_args.dataset,
            data_args.data_dir,
            data_args.dataset_config,
            data_args.streaming,
            data_args.cache_dir,
            **extra,
        )
        held_out = held_out_rows(data_args, extra, seed)
    streamed = isinstance(dataset, datasets.IterableDataset)
    batch_size, accumulation = training_args.per_device_train_batch_size, training_args.gradient_accumulation_steps
    global_batch = batch_size * accumulation * accelerator.num_processes
    if training_args.max_steps > 0:
        max_steps = training_args.max_steps
    else:
        per_epoch = batches_per_epoch(dataset, batch_size, accelerator.num_processes) // accumulation
        # 0 epochs: the initialised model as it is (the randomly initialised encoder of a comparison)
        max_steps = math.ceil(training_args.num_train_epochs * max(1, per_epoch))
    checkpoint = training_args.resume_from_checkpoint
    checkpoints_dir = output_dir / "checkpoints"
    if checkpoint == "latest":
        checkpoint = latest_checkpoint(checkpoints_dir)
        if checkpoint is None:
            logger.info("No checkpoint in %s yet: starting from scratch.", checkpoints_dir)
    finished = output_dir / "trainer_state.json"
    if (
        training_args.resume_from_checkpoint
        and finished.exists()
        and json.loads(finished.read_text())["step"] == max_steps
    ):
        if checkpoint is None or Path(checkpoint).name == f"checkpoint-{max_steps}":
            logger.info("%s holds the model of all %d steps already: nothing to resume.", output_dir, max_steps)
            return json.loads(finished.read_text())

    # model, processor, optimizer, schedule
    config = pretraining_config(
        model_args.model_type, model_args.model_config, model_args.config_overrides, image_size=model_args.image_size,
        patch_size=model_args.patch_size, scales=model_args.scales, decoder_attention=model_args.decoder_attention,
        mask_ratio=model_args.mask_ratio, norm_pix_loss=model_args.norm_pix_loss,
    )  # fmt: skip
    model = pretraining_model(config)
    processor = pretraining_processor(config)
    on_gpu = accelerator.device.type == "cuda"
    if data_args.augment_on_device:
        collator = NativeRegionCollator(data_args.native_region_size, seed, pin_memory=on_gpu)
    else:
        collator = objective.collator(processor, config, seed, data_args.crop_scale, data_args.num_local_crops)
    learning_rate = training_args.learning_rate
    if training_args.base_learning_rate is not None:
        learning_rate = training_args.base_learning_rate * global_batch / 256
    if training_args.activation_checkpointing:  # transformers 5's name for gradient checkpointing (either flag sets it)
        getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
    optimizer = torch.optim.AdamW(
        parameter_groups(model, learning_rate, training_args.weight_decay), fused=on_gpu,
        betas=(training_args.adam_beta1, training_args.adam_beta2), eps=training_args.adam_epsilon,
    )  # fmt: skip
    if accelerator.is_main_process:
        arguments = {**asdict(model_args), **asdict(data_args), **training_args.to_sanitized_dict()}
        accelerator.init_trackers(
            "pretrain", config={k: str(v) for k, v in arguments.items()} | {"learning_rate_used": learning_rate}
        )
    # the randomly initialised encoder's probe: the reference for what pretraining adds
    probe = None
    if accelerator.is_main_process:
        probe = representation_probe(data_args.probe_label_column, seed, held_out, model, processor)
    progress = {"step": 0, "epoch": 0, "batches_in_epoch": 0, "log_history": [], "probe_history": [],
                "held_out_history": [], "probe_seconds": 0.0, "train_seconds": 0.0, "throughput": []}  # fmt: skip
    if probe is not None and not checkpoint:
        run_probe(probe, model, progress, 0, accelerator)
        logger.info("Probe of the randomly initialised encoder: %s", format_probe(progress["probe_history"][0]))
    scheduler = get_scheduler(training_args.lr_scheduler_type, optimizer, training_args.get_warmup_steps(max_steps),
                              max_steps, scheduler_specific_kwargs=training_args.lr_scheduler_kwargs)  # fmt: skip
    logging_steps, save_steps = (steps_of(value, max_steps) for value in (training_args.logging_steps,
                                                                        training_args.save_steps))  # fmt: skip
    fsdp_plugin = accelerator.state.fsdp_plugin if accelerator.distributed_type == DistributedType.FSDP else None
    if fsdp_plugin is not None and fsdp_plugin.transformer_cls_names_to_wrap is None:
        fsdp_plugin.transformer_cls_names_to_wrap = fsdp_units(model)
    if accelerator.distributed_type == DistributedType.DEEPSPEED:  # no dataloader goes through prepare: say it here
        accelerator.state.deepspeed_plugin.deepspeed_config.update(
            train_micro_batch_size_per_gpu=batch_size,
            train_batch_size=global_batch,
            gradient_accumulation_steps=accumulation,
            gradient_clipping=training_args.max_grad_norm,
        )
    # stepped here once per optimizer step, not through accelerate (which steps a prepared one once per process)
    # (its state is saved in progress.json, not registered with accelerate, which would pickle it)
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)

    # resume: from --resume_from_checkpoint latest, the newest checkpoint that can be read
    if checkpoint:
        if training_args.resume_from_checkpoint == "latest":
            checkpoint, restored = load_latest_checkpoint(accelerator, checkpoints_dir)
        else:
            restored = load_checkpoint(accelerator, checkpoint)
        progress = {**progress, **restored}
        scheduler.load_state_dict(progress["scheduler"])
        positions = progress.get("process_positions", [])
        if len(positions) == accelerator.num_processes:  # this process's own place in the data
            progress["epoch"], progress["batches_in_epoch"] = positions[accelerator.process_index]
        logger.info("Resumed from %s at step %d.", checkpoint, progress["step"])

    # what is measured besides the loss, on held-out images (the training images' first without a probe)
    monitor = objective.monitor(config, held_out if held_out is not None else dataset, processor)
    logger.info(
        "%s (%s, %.1fM parameters): %d steps of %d images (%d per process x %d accumulation x %d processes), lr %.2e",
        model_args.model_type, model_args.model_config, unwrapped.num_parameters() / 1e6, max_steps, global_batch,
        batch_size, accumulation, accelerator.num_processes, learning_rate,
    )  # fmt: skip

    # what this process trained on in this run, a check of the sharding: an image count and a crc32 of the first pixel
    # row of every image (a few hundred bytes an image, not the batch)
    seen = {"images": 0, "pixel_crc32": 0}

    loader = PretrainingLoader(dataset, collator, batch_size, accelerator.process_index, accelerator.num_processes,
                               data_args.shuffle_buffer_size, training_args.dataloader_num_workers, pin_memory=on_gpu,
                               read_ahead=on_gpu)  # fmt: skip

    def batches():
        """Micro-batches from the saved position on, epoch after epoch; the position is tracked in `progress`."""
        for epoch, batch_index, batch in loader.batches(progress["epoch"], progress["batches_in_epoch"]):
            progress["epoch"], progress["batches_in_epoch"] = epoch, batch_index + 1
            pixels = batch["native_pixels"][:, :1] if data_args.augment_on_device else batch["pixel_values"][:, :, 0]
            seen["images"] += len(pixels)
            seen["pixel_crc32"] = zlib.crc32(pixels.numpy().tobytes(), seen["pixel_crc32"])
            # device_views reads the extents on the CPU
            batch = send_to_device(batch, accelerator.device, non_blocking=True, skip_keys=["native_extent"])
            if data_args.augment_on_device:
                batch = device_views(batch, processor, seed, epoch, batch_index, accelerator.process_index,
                                     tuple(data_args.crop_scale))  # fmt: skip
            yield batch

    stream = batches()
    model.train()
    started = time.perf_counter() - progress["train_seconds"]
    window = (time.perf_counter(), progress["step"])  # images/s since the last log: (start, step)
    bar = tqdm(total=max_steps, initial=progress["step"], disable=not accelerator.is_local_main_process)
    while progress["step"] < max_steps:
        step = progress["step"] + 1
        losses, diverged = [], False
        objective.start_step(unwrapped, step, max_steps)
        for micro_batch in range(accumulation):
            batch = objective.inputs(next(stream), config, seed, step, accelerator.process_index, micro_batch)
            # gradients are averaged across processes, and the optimizer steps, on the last micro-batch only; a
            # non-finite loss on any process drops the whole step everywhere (or stops the run)
            with accelerator.accumulate(model):
                if not diverged:
                    outputs = model(**batch)
                    diverged = not finite_everywhere(accelerator, outputs.loss)
                if not diverged:
                    accelerator.backward(outputs.loss)
                    if accelerator.sync_gradients and training_args.max_grad_norm > 0:
                        # the norm of the all-reduced gradients, the same on every process
                        diverged = not is_finite(
                            accelerator.clip_grad_norm_(model.parameters(), training_args.max_grad_norm)
                        )
                    if not diverged:
                        optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            if not diverged:
                losses.append(outputs.loss.detach())
                monitor.update(batch, outputs)
        if diverged:
            skip_or_stop(training_args.on_nonfinite_loss, progress, step, checkpoints_dir)
        scheduler.step()
        objective.end_step(unwrapped)
        progress["step"] = step
        bar.update(1)

        if (step % logging_steps == 0 or step == max_steps) and losses:
            loss = accelerator.reduce(torch.stack(losses).mean(), reduction="mean").item()
            # timed once the loss is on the CPU, when the device has finished the window's steps; kept apart from
            # log_history, which a resumed run repeats exactly
            now = time.perf_counter()
            images_per_second = global_batch * (step - window[1]) / (now - window[0])
            window = (now, step)
            progress["throughput"].append({"step": step, "images_per_second": images_per_second})
            record = {
                "step": step,
                "epoch": progress["epoch"],
                "loss": loss,
                "learning_rate": scheduler.get_last_lr()[0],
            }
            record |= monitor.summary(lambda tensor: accelerator.reduce(tensor, reduction="mean"))
            progress["log_history"].append(record)
            accelerator.log({f"train/{key}": value for key, value in record.items() if key not in ("step", "epoch")}
                            | {"train/images_per_second": images_per_second}, step=step)  # fmt: skip
            bar.set_postfix(loss=f"{loss:.4f}", **({"ratio": ratios} if (ratios := format_ratios(record)) else {}))
        if step % save_steps == 0 or step == max_steps:
            # every process's (epoch, batch) place: the parts of a stream can differ in length across processes
            position = torch.tensor([[progress["epoch"], progress["batches_in_epoch"]]], device=accelerator.device)
            progress["process_positions"] = accelerator.gather(position).tolist()
            progress["scheduler"] = scheduler.state_dict()
            if not weights_are_finite(accelerator, model):  # never a checkpoint of NaN weights behind `latest`
                raise TrainingDivergedError(divergence_message(step, "the weights hold NaN or infinite values",
                                                               checkpoints_dir))  # fmt: skip
            save_checkpoint(accelerator, checkpoints_dir, step, progress, training_args.save_total_limit)
            touch_lock(output_dir)
            monitor.at_checkpoint(accelerator, model, output_dir / "reconstructions" / f"step-{step}.png", seed,
                                  step, progress)  # fmt: skip
        # the last step's probe is the saved model's, below (FSDP leaves no whole model to probe here)
        sharded = accelerator.distributed_type == DistributedType.FSDP
        if probe is not None and step % training_args.probe_steps == 0 and step < max_steps and not sharded:
            run_probe(probe, unwrapped, progress, step, accelerator)
    bar.close()
    stream.close()  # the loader's thread and workers, and their pinned batches, are let go of before the model is saved
    progress["train_seconds"] = time.perf_counter() - started

    # the model folder: weights, config, remote code, processor, card, last reconstruction
    accelerator.wait_for_everyone()
    per_process = accelerator.gather(torch.tensor([[seen["images"], seen["pixel_crc32"]]], device=accelerator.device))
    progress["processes"] = [{"images": images, "pixel_crc32": crc} for images, crc in per_process.tolist()]
    state_dict = accelerator.get_state_dict(model)  # every process: FSDP gathers the shards
    # a compiled model's weights are named under torch.compile's wrapper
    state_dict = {name.removeprefix("_orig_mod."): weight for name, weight in state_dict.items()}
    monitor.at_checkpoint(accelerator, model, output_dir / "reconstruction.png", seed, max_steps, progress)
    if accelerator.is_main_process:
        # saved from a fresh model: FSDP leaves shards in the trained one and changes its class (save_pretrained would
        # then name torch's FSDP class in config.json and copy its modules as the remote code)
        trained = pretraining_model(config)
        trained.load_state_dict(state_dict)
        if probe is not None and progress["probe_history"][-1]["step"] != max_steps:
            run_probe(probe, trained, progress, max_steps, accelerator)
        trained.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)
        add_remote_pipelines(output_dir)
        for folder, exported in objective.exported_models(trained).items():  # e.g. the backbone for finetune.py
            exported.save_pretrained(output_dir / folder)
            processor.save_pretrained(output_dir / folder)
            add_remote_pipelines(output_dir / folder)
        rows = None if streamed else len(dataset)
        learned = what_it_learned(data_args, progress, held_out)
        for what, value in learned:
            logger.info("%s: %s", what, value)
        probe = progress["probe_history"][-1] if progress["probe_history"] else None
        write_card(model_args, data_args, training_args, config, rows, global_batch, learning_rate, max_steps, learned,
                   probe, held_out)  # fmt: skip
        (output_dir / "trainer_state.json").write_text(json.dumps(progress, indent=1))
        if training_args.push_to_hub:
            push_folder_to_hub(output_dir, training_args.hub_model_id, commit_message=f"Pretrained {max_steps} steps")
    accelerator.wait_for_everyone()  # tearing the process group down while the main process still saves can hang
    return progress


def divergence_message(step: int, what: str, checkpoints_dir: Path) -> str:
    last = latest_checkpoint(checkpoints_dir)
    where = (f"the last checkpoint, {last}, is from before: resume from it with a lower --learning_rate" if last
             else "no checkpoint was written yet: rerun with a lower --learning_rate")  # fmt: skip
    return f"Step {step}: {what}, the run diverged. No model was saved; {where}, or use --on_nonfinite_loss skip."


def steps_of(interval: float, max_steps: int) -> int:
    """A logging or saving interval in steps, from a number of steps or, below 1, a fraction of `max_steps` (as
    TrainingArguments reads them)."""
    return max(1, math.ceil(interval * max_steps)) if interval < 1 else int(interval)


def skip_or_stop(on_nonfinite_loss: str, progress: dict, step: int, checkpoints_dir: Path) -> None:
    """A step whose loss or gradient norm is NaN or infinite, its update already dropped: with --on_nonfinite_loss
    skip, count it and go on; otherwise stop, saying where the last checkpoint is."""
    if on_nonfinite_loss == "stop":
        raise TrainingDivergedError(divergence_message(step, "the loss or the gradients are NaN or infinite",
                                                       checkpoints_dir))  # fmt: skip
    progress.setdefault("skipped_steps", []).append(step)
    logger.warning("Step %d: the loss or the gradients are NaN or infinite; its update is skipped (%d so far).", step,
                   len(progress["skipped_steps"]))  # fmt: skip


def held_out_rows(data_args: DataArguments, dataset_options: dict, seed: int) -> datasets.Dataset | None:
    """The labelled held-out images of the probe and the reconstruction measurements: --probe_dataset's validation
    split (carved from its training patients where it has none, as finetune.py carves it). Built with the training
    data's options when it is the same collection: for the phantom, the validation split of the same draw as the
    training phantoms, which pretraining never sees."""
    if data_args.probe_dataset == "none":
        return None
    same_collection = data_args.probe_dataset == data_args.dataset
    data_dir = data_args.probe_data_dir or (data_args.data_dir if same_collection else None)
    options = dict(dataset_options) if same_collection else {}
    if data_args.probe_dataset == "synthetic" and data_args.num_images:
        options["num_images"] = data_args.num_images
    if data_args.probe_dataset_config != "tiles":  # a tiles config's own options do not apply to the probe's
        options = {key: value for key, value in options.items() if key not in TILE_OPTIONS}
    splits = load_mammography(data_args.probe_dataset, data_dir, data_args.probe_dataset_config,
                              cache_dir=data_args.cache_dir, **options)  # fmt: skip
    splits, source = carve_validation(splits, data_args.probe_label_column, seed=seed)
    logger.info("Held-out images: %d rows of %s (%s).", len(splits["validation"]), data_args.probe_dataset, source)
    return splits["validation"]


def representation_probe(
    label_column: str, seed: int, held_out: datasets.Dataset | None, model, processor
) -> RepresentationProbe | None:
    """The probe of `label_column` on the held-out rows, or None (and why) where there is nothing to probe."""
    if held_out is None:
        return None
    try:
        feature_extractor(model)
        return RepresentationProbe(held_out, label_column, processor, seed=seed)
    except ValueError as error:  # a model without an encoder (the VAE), a held-out set too small to fit a probe
        logger.warning("No representation probe: %s", error)
        return None


def run_probe(probe: RepresentationProbe, model, progress: dict, step: int, accelerator: Accelerator) -> None:
    """Probe `model`'s encoder and add the result to `progress` and the trackers; the training's random state is
    left as it was (the feature extractor's fresh head draws from it)."""
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        results = probe(feature_extractor(model))
    progress["probe_seconds"] += time.perf_counter() - started
    progress["probe_history"].append({"step": step, **results})
    accelerator.log({f"probe/{key}": value for key, value in results.items()}, step=step)


def what_it_learned(
    data_args: DataArguments, progress: dict, held_out: datasets.Dataset | None
) -> list[tuple[str, str]]:
    """(what, value) rows for the final summary and the card: each scale's loss / visible-mean baseline on the
    held-out images and on the last training window, and the probe of the random and of the trained encoder."""
    rows = []
    where = f"{data_args.probe_dataset} validation" if held_out is not None else "the first training images"
    if progress["held_out_history"]:
        last = progress["held_out_history"][-1]
        rows.append((f"Reconstruction loss / visible-mean baseline, {where} (step {last['step']})",
                     format_ratios(last)))  # fmt: skip
    if progress["log_history"] and format_ratios(progress["log_history"][-1]):
        rows.append(("Reconstruction loss / visible-mean baseline, last training batches",
                     format_ratios(progress["log_history"][-1])))  # fmt: skip
    if progress["probe_history"]:
        task = f"`{data_args.probe_label_column}`, {where}"
        first, last = progress["probe_history"][0], progress["probe_history"][-1]
        if first["step"] == 0:
            rows.append((f"Probe ({task}), randomly initialised encoder", format_probe(first)))
        rows.append((f"Probe ({task}), encoder after step {last['step']}", format_probe(last)))
        share = progress["probe_seconds"] / max(progress["train_seconds"] + progress["probe_seconds"], 1e-9)
        rows.append(("Probe cost", f"{progress['probe_seconds']:.1f} s, {share:.1%} of the run"))
    return rows


def write_card(
    model_args: ModelArguments, data_args: DataArguments, training_args: PretrainingTrainingArguments, config,
    rows: int | None, global_batch: int, learning_rate: float, steps: int, learned: list[tuple[str, str]],
    probe: dict | None, held_out: datasets.Dataset | None,
) -> None:  # fmt: skip
    """The model card: what was trained, on what data, with which recipe, and what it learned (the last probe as
    model-index results)."""
    method, output_dir = pretraining_method(model_args.model_type), Path(training_args.output_dir)
    data = f"`{data_args.dataset}`" + (f" (`{data_args.dataset_config}`)" if data_args.dataset in BUILDERS else "")
    data += f": {rows} training images" if rows is not None else ", streamed"
    recipe = {
        "model": f"{model_args.model_type} ({model_args.model_config}, image {config.image_size}, "
        f"patch {getattr(config, 'patch_size', None)})",
        "steps": steps, "global batch": global_batch, "learning rate": f"{learning_rate:.3e}",
        "optimizer": f"AdamW ({training_args.adam_beta1}, {training_args.adam_beta2}), weight decay "
                     f"{training_args.weight_decay}",
        "schedule": f"linear warmup + {training_args.lr_scheduler_type.value}", "seed": training_args.seed,
        "augmentation": method.learns_from.augmentation(data_args.crop_scale, data_args.num_local_crops),
    }  # fmt: skip
    backbone = getattr(config, "backbone_config", None)
    architecture = method.architecture + (f", {backbone.model_type} backbone" if backbone is not None else "")
    probe_split = "validation" if held_out is not None else "train (first images)"
    results = [
        {"dataset_name": f"{data_args.probe_dataset} `{data_args.probe_label_column}` (encoder probe)",
         "dataset_type": data_args.probe_dataset, "dataset_split": probe_split, "metric_type": metric,
         "metric_value": probe[metric], "task_type": "image-classification"}
        for metric in ("linear_accuracy", "linear_roc_auc", "knn_accuracy", "knn_roc_auc")
        if probe is not None and metric in probe
    ]  # fmt: skip
    card = render_model_card(
        training_args.hub_model_id or output_dir.name, "pretraining", data, recipe, architecture=architecture,
        method=model_args.model_type, citations=list(method.citations), learned=learned, results=results,
        datasets=[Path(data_args.dataset).name if Path(data_args.dataset).exists() else data_args.dataset],
        **method.card_usage,
    )  # fmt: skip
    card.save(output_dir / "README.md")


if __name__ == "__main__":
    main()
