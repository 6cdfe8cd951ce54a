import errno
import importlib.util
import json
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from conftest import launch_on_two_cpu_processes, run_card_code
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tiny_configs import tiny_miram_config, tiny_resnet_config, tiny_vit_mae_config
from transformers import (
    AutoConfig,
    AutoModelForImageClassification,
    AutoModelForPreTraining,
    TrainingArguments,
    ViTConfig,
    ViTMAEForPreTraining,
)

from miram_hf import MammoVaeConfig
from miram_hf.training.arguments import PretrainingTrainingArguments, gpu_precision
from miram_hf.training.checkpointing import CheckpointError, latest_checkpoint, run_lock, save_checkpoint

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "scripts" / "pretrain.py"
FSDP_CONFIG = ROOT / "configs" / "accelerate" / "fsdp.yaml"
DEEPSPEED_CONFIG = ROOT / "configs" / "accelerate" / "deepspeed.yaml"
SHARDED_ON_CPU = ROOT / "tests" / "sharded_on_cpu.py"
spec = importlib.util.spec_from_file_location("pretrain_script", SCRIPT)
pretrain = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pretrain)


def tiny_config_dir(path: Path) -> Path:
    tiny_miram_config(num_channels=1).save_pretrained(path)
    return path


def arguments(config_dir: Path, output_dir: Path, cache_dir: Path, *extra: str) -> list[str]:
    # 8 phantoms without fine-detail findings: 6 in train, about 9 lesion crops, 2 batches of 4 per epoch; 6 steps
    # cross two epoch boundaries
    return ["--model_config", str(config_dir), "--output_dir", str(output_dir), "--cache_dir", str(cache_dir),
            "--num_images", "8", "--dataset_options", "fine_detail_findings=0", "--per_device_train_batch_size", "4",
            "--max_steps", "6", "--save_steps", "3", "--logging_steps", "1", "--learning_rate", "1e-3", "--report_to",
            "none", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """Six steps in one go, checkpoints at 3 and 6."""
    root = tmp_path_factory.mktemp("pretrain")
    config_dir = tiny_config_dir(root / "config")
    state = pretrain.main(arguments(config_dir, root / "straight", root / "cache"))
    return root, state


def test_a_run_leaves_a_loadable_model_card_pictures_and_checkpoints(straight_run):
    root, state = straight_run
    output = root / "straight"
    model = AutoModelForPreTraining.from_pretrained(output)
    assert type(model).__name__ == "MiramForPreTraining" and model.config.num_channels == 1
    assert (output / "model.safetensors").exists() and (output / "preprocessor_config.json").exists()
    assert (output / "modeling_miram.py").exists()  # remote code travels with the weights
    assert (output / "reconstruction.png").stat().st_size > 0
    assert sorted(p.name for p in (output / "reconstructions").iterdir()) == ["step-3.png", "step-6.png"]
    card = (output / "README.md").read_text()
    assert "Research use only" in card and "| steps | 6 |" in card and "AdamW (0.9, 0.95)" in card
    assert latest_checkpoint(output / "checkpoints").name == "checkpoint-6"
    assert [record["step"] for record in state["log_history"]] == [1, 2, 3, 4, 5, 6]
    assert state["epoch"] >= 2 and state["processes"][0]["images"] == 24
    assert json.loads((output / "trainer_state.json").read_text())["step"] == 6


def test_the_cards_code_runs_as_written_on_a_dicom(straight_run, monkeypatch):
    root, _ = straight_run
    namespace = run_card_code(root / "straight", monkeypatch)
    assert namespace["features"].shape == (1, 17, 32)  # every patch of the 32 px input, and the CLS token


def test_resuming_at_step_3_ends_with_the_weights_of_the_straight_run(straight_run):
    root, straight = straight_run

    def run(output_dir: Path, *extra: str) -> dict:
        return pretrain.main(arguments(root / "config", output_dir, root / "cache", *extra))

    resumed = resume_from_a_copy(run, root / "straight", root / "resumed", "checkpoint-3")
    assert_same_weights(root / "resumed", root / "straight")
    assert resumed["log_history"] == straight["log_history"]
    # images/s at every log, kept apart from the history: steps 1-3 restored with the checkpoint, 4-6 timed anew
    assert [entry["step"] for entry in resumed["throughput"]] == [record["step"] for record in straight["log_history"]]
    assert all(entry["images_per_second"] > 0 for entry in resumed["throughput"])
    assert resumed["throughput"][:3] == straight["throughput"][:3]
    # the resumed run trained on steps 4-6 only
    assert resumed["processes"][0]["images"] == 12


def test_resuming_from_latest_falls_back_past_a_truncated_checkpoint_and_names_it(straight_run, caplog):
    root, straight = straight_run
    output = root / "truncated"
    for name in ("checkpoint-3", "checkpoint-6", "latest"):
        copy = shutil.copytree if name != "latest" else shutil.copy
        copy(root / "straight" / "checkpoints" / name, output / "checkpoints" / name)
    weights = output / "checkpoints" / "checkpoint-6" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])  # a copy cut short
    with caplog.at_level(logging.WARNING):
        resumed = pretrain.main(
            arguments(root / "config", output, root / "cache", "--resume_from_checkpoint", "latest")
        )
    assert "checkpoint-6 cannot be read" in caplog.text
    assert_same_weights(output, root / "straight")  # from checkpoint-3, then steps 4-6 again
    assert resumed["log_history"] == straight["log_history"] and resumed["processes"][0]["images"] == 12

    for checkpoint in ("checkpoint-3", "checkpoint-6"):
        (output / "checkpoints" / checkpoint / "progress.json").write_text("{garbled")
    with pytest.raises(CheckpointError, match="No checkpoint in .* can be read: .*checkpoint-6.*JSONDecodeError"):
        pretrain.main(arguments(root / "config", output, root / "cache", "--resume_from_checkpoint", "latest",
                                "--max_steps", "9"))  # fmt: skip


def fail_while_saving(monkeypatch, checkpoint: str, error: BaseException) -> None:
    """accelerate's save_state writes half a weights file of `checkpoint`, then raises `error`."""
    save_state = Accelerator.save_state

    def write_half_then_fail(self, output_dir=None, **kwargs):
        if output_dir.endswith(checkpoint):
            Path(output_dir, "model.safetensors").write_bytes(b"half a file")
            raise error
        return save_state(self, output_dir, **kwargs)

    monkeypatch.setattr(Accelerator, "save_state", write_half_then_fail)


def test_a_full_disk_while_saving_names_the_checkpoint_and_keeps_latest(straight_run, monkeypatch):
    root, _ = straight_run
    output = root / "full-disk"
    fail_while_saving(monkeypatch, "checkpoint-6", OSError(errno.ENOSPC, "No space left on device", "optimizer.bin"))
    with pytest.raises(CheckpointError, match=r"Could not write .*checkpoint-6 .*No space left on device"):
        pretrain.main(arguments(root / "config", output, root / "cache"))
    assert latest_checkpoint(output / "checkpoints").name == "checkpoint-3"
    assert not list((output / "checkpoints").glob(".partial-*"))


def test_a_second_run_on_the_same_output_dir_is_refused_and_a_gone_runs_lock_is_taken_over(
    straight_run, tmp_path, caplog
):
    root, _ = straight_run
    output = tmp_path / "shared"
    lock = output / ".run.lock"
    output.mkdir()
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": "a minute ago"}))
    with pytest.raises(RuntimeError, match=f"in use by another run \\(process {os.getpid()} on"):
        pretrain.main(arguments(root / "config", output, root / "cache"))
    assert lock.exists() and not (output / "checkpoints").exists()

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": int(finished.stdout), "started": "then"}))
    with caplog.at_level(logging.WARNING):
        assert pretrain.main(arguments(root / "config", output, root / "cache"))["step"] == 6
    assert "Taking over" in caplog.text and not lock.exists()  # released at the end

    elsewhere = {"host": "another-node", "pid": 1, "started": "then"}
    lock.write_text(json.dumps(elsewhere))  # touched just now: that run may be alive
    with pytest.raises(RuntimeError, match="in use by another run"), run_lock(output):
        pass
    an_hour_ago = time.time() - 3600
    os.utime(lock, (an_hour_ago, an_hour_ago))  # no checkpoint for an hour: gone
    with run_lock(output):
        assert json.loads(lock.read_text())["pid"] == os.getpid()


class Payload:
    """What a crafted pickle runs when it is loaded without weights_only: here, it creates a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("crafted_file", ["random_states_0.pkl", "custom_checkpoint_0.pkl"])
def test_resuming_from_someone_elses_checkpoint_runs_none_of_its_code(crafted_file, straight_run, tmp_path):
    root, _ = straight_run
    checkpoint = root / "straight" / "checkpoints" / "checkpoint-6"
    assert not list(checkpoint.glob("custom_checkpoint_*"))  # accelerate would unpickle these with weights_only=False
    assert json.loads((checkpoint / "progress.json").read_text())["scheduler"]["last_epoch"] == 6  # JSON instead

    crafted = tmp_path / "crafted"
    shutil.copytree(checkpoint, crafted / "checkpoints" / "checkpoint-6")
    marker = tmp_path / "ran"
    torch.save(Payload(marker), crafted / "checkpoints" / "checkpoint-6" / crafted_file)
    # refused: the random states are read with weights_only=True, and nothing is registered to read a custom one
    with pytest.raises(CheckpointError, match="checkpoint-6 cannot be read: (UnpicklingError|RuntimeError)"):
        pretrain.main(arguments(root / "config", crafted, root / "cache", "--resume_from_checkpoint", "latest",
                                "--max_steps", "9"))  # fmt: skip
    assert not marker.exists()


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_a_diverging_run_stops_or_skips_and_never_saves_nan_weights(policy, straight_run, tmp_path):
    root, _ = straight_run
    output = tmp_path / "diverged"
    # lr 1e3 without warmup: the first update blows the weights up, the second step's loss is NaN
    run = arguments(root / "config", output, root / "cache", "--learning_rate", "1e3", "--warmup_steps", "0",
                    "--save_steps", "1", "--on_nonfinite_loss", policy)  # fmt: skip
    if policy == "stop":
        with pytest.raises(pretrain.TrainingDivergedError, match="Step 2: the loss or the gradients are NaN"):
            pretrain.main(run)
        assert not (output / "model.safetensors").exists()
        assert latest_checkpoint(output / "checkpoints").name == "checkpoint-1"
    else:
        state = pretrain.main(run)
        assert state["skipped_steps"] == [2, 3, 4, 5, 6] and state["step"] == 6
    for weights in [*output.glob("model.safetensors"), *output.glob("checkpoints/*/model.safetensors")]:
        assert all(torch.isfinite(weight).all() for weight in load_file(weights).values()), weights


def test_a_crash_while_saving_keeps_latest_on_the_last_complete_checkpoint(straight_run, monkeypatch):
    root, _ = straight_run
    output = root / "crashed"
    fail_while_saving(monkeypatch, "checkpoint-6", KeyboardInterrupt("killed while saving"))
    with pytest.raises(KeyboardInterrupt):
        pretrain.main(arguments(root / "config", output, root / "cache"))
    assert latest_checkpoint(output / "checkpoints").name == "checkpoint-3"
    monkeypatch.undo()
    state = pretrain.main(arguments(root / "config", output, root / "cache", "--resume_from_checkpoint", "latest"))
    assert state["step"] == 6 and latest_checkpoint(output / "checkpoints").name == "checkpoint-6"
    assert not list((output / "checkpoints").glob(".partial-*"))


def assert_same_weights(folder: Path, reference: Path, atol: float = 0.0) -> None:
    """The model.safetensors of two run folders agree within `atol` (bit for bit by default)."""
    weights, reference_weights = load_file(folder / "model.safetensors"), load_file(reference / "model.safetensors")
    assert weights.keys() == reference_weights.keys()
    for name, weight in weights.items():
        torch.testing.assert_close(weight, reference_weights[name], atol=atol, rtol=10 * atol, msg=name)


def resume_from_a_copy(run, straight: Path, resumed: Path, checkpoint: str):
    """`run(resumed, ...)` resumed from a copy of the straight run's `checkpoint`, as if that run had died there."""
    shutil.copytree(straight / "checkpoints" / checkpoint, resumed / "checkpoints" / checkpoint)
    return run(resumed, "--resume_from_checkpoint", "latest")


def test_every_process_has_written_its_files_before_a_checkpoint_is_renamed_into_place(tmp_path):
    partial = tmp_path / ".partial-checkpoint-1"

    class MainProcess:  # records what it is asked to do, and whether the checkpoint was still being written
        is_main_process = True
        events = []

        def save_state(self, folder: str) -> None:
            self.events.append("save_state")

        def wait_for_everyone(self) -> None:
            self.events.append("barrier while writing" if partial.exists() else "barrier")

    accelerator = MainProcess()
    save_checkpoint(accelerator, tmp_path, 1, {"step": 1})
    assert accelerator.events == ["barrier while writing", "save_state", "barrier while writing", "barrier"]
    assert latest_checkpoint(tmp_path).name == "checkpoint-1"


@pytest.mark.parametrize("model_type", ["miram", "byol"])
def test_a_run_measures_what_it_learned_against_the_random_encoder_and_the_visible_mean(model_type, tmp_path):
    # 48 small phantoms, half of them held out: 24 fine-detail findings of two kinds for a 5-fold probe
    config_dir = (tiny_config_dir if model_type == "miram" else lambda path: joint_embedding_config_dir(path, "byol"))(
        tmp_path / "config"
    )
    output = tmp_path / "out"
    state = pretrain.main(
        ["--model_type", model_type, "--model_config", str(config_dir), "--output_dir", str(output), "--cache_dir",
         str(tmp_path / "cache"), "--num_images", "48", "--dataset_options", "height=192,width=144,"
         "validation_fraction=0.5", "--probe_label_column", "label_fine_detail", "--probe_steps", "2",
         "--per_device_train_batch_size", "4", "--max_steps", "4", "--logging_steps", "2", "--report_to",
         "tensorboard"]
    )  # fmt: skip
    assert [record["step"] for record in state["probe_history"]] == [0, 2, 4]  # the random encoder first
    for record in state["probe_history"]:
        for name in ("linear_accuracy", "linear_roc_auc", "knn_accuracy", "knn_roc_auc"):
            assert 0 <= record[f"{name}_ci_low"] <= record[name] <= record[f"{name}_ci_high"] <= 1, (name, record)
    card = (output / "README.md").read_text()
    assert "randomly initialised encoder" in card and "encoder after step 4" in card and "Probe cost" in card
    events = EventAccumulator(str(next((output / "runs").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    assert [event.step for event in events.Scalars("probe/linear_accuracy")] == [0, 2, 4]
    if model_type == "miram":  # each scale's loss against the visible-mean baseline, trained and held out
        assert {"ratio_scale_1", "ratio_scale_2", "baseline_scale_2"} <= set(state["log_history"][-1])
        assert state["held_out_history"][-1]["step"] == 4 and "visible-mean baseline" in card
        assert {"train/ratio_scale_2", "held_out/ratio_scale_1"} <= set(events.Tags()["scalars"])


def test_mae_pretrains_as_transformers_vit_mae(tmp_path, monkeypatch):
    config = tiny_vit_mae_config()
    config.save_pretrained(tmp_path / "config")
    state = pretrain.main(
        ["--model_type", "mae", "--model_config", str(tmp_path / "config"), "--output_dir", str(tmp_path / "mae"),
         "--cache_dir", str(tmp_path / "cache"), "--num_images", "8", "--per_device_train_batch_size", "4",
         "--max_steps", "2", "--gradient_accumulation_steps", "2", "--base_learning_rate", "0.0256",
         "--warmup_steps", "1", "--logging_steps", "1", "--report_to", "none"]
    )  # fmt: skip
    assert state["step"] == 2 and state["processes"][0]["images"] == 16  # 2 steps x 2 micro-batches x 4
    # MAE's rule: 0.0256 x 8 images per step / 256, reached after one warmup step, then the half-cosine down to 0
    assert [record["learning_rate"] for record in state["log_history"]] == pytest.approx([8e-4, 0.0])
    model = AutoModelForPreTraining.from_pretrained(tmp_path / "mae")
    assert isinstance(model, ViTMAEForPreTraining)
    assert model.vit.embeddings.position_embeddings.abs().sum() > 0  # not transformers' all-zero fresh init
    assert (tmp_path / "mae" / "reconstruction.png").exists()
    assert "ViTMAE" in (tmp_path / "mae" / "README.md").read_text()
    assert run_card_code(tmp_path / "mae", monkeypatch)["features"].shape == (1, 17, 32)  # every patch, and CLS


def test_gradient_checkpointing_trains_as_the_plain_run(straight_run):
    root, straight = straight_run
    flags = ["--activation_checkpointing", "true"]
    state = pretrain.main(arguments(root / "config", root / "checkpointed", root / "cache", *flags))
    assert_same_weights(root / "checkpointed", root / "straight", atol=1e-6)
    assert [record["loss"] for record in state["log_history"]] == pytest.approx(
        [record["loss"] for record in straight["log_history"]], rel=1e-5
    )


def test_mixed_precision_is_bf16_on_a_gpu_unless_the_flags_or_accelerate_say_otherwise(monkeypatch):
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    precision = lambda *flags: pretrain.parse_arguments(list(flags))[2].mixed_precision  # noqa: E731
    assert precision() == "no" and precision("--bf16", "true", "--use_cpu", "true") == "bf16"
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")  # accelerate launch's setting
    assert precision() == "fp16"
    # on a GPU (faked: TrainingArguments itself would set the device up), what nothing chose becomes bf16
    assert gpu_precision("no") == "no"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert gpu_precision("no") == "bf16" and gpu_precision("fp16") == "fp16"


def test_training_arguments_reuse_transformers_and_refuse_what_the_loop_does_not_implement():
    model_args, _, training_args = pretrain.parse_arguments(["--warmup_steps", "0.25", "--logging_steps", "0.5"])
    assert isinstance(training_args, TrainingArguments) and model_args.model_config == "vit-demo"
    assert training_args.get_warmup_steps(10) == 3 and pretrain.steps_of(training_args.logging_steps, 10) == 5
    assert (training_args.weight_decay, training_args.adam_beta2, training_args.adam_epsilon) == (0.05, 0.95, 1e-8)
    help_text = PretrainingTrainingArguments.__dataclass_fields__["learning_rate"].metadata["help"]
    assert help_text.startswith("The initial learning rate") and "base_learning_rate" in help_text
    for flags in (["--eval_strategy", "steps"], ["--optim", "sgd"], ["--label_smoothing_factor", "0.1"]):
        with pytest.raises(ValueError, match=f"{flags[0]} is a TrainingArguments option that pretrain.py does not"):
            pretrain.parse_arguments(flags)


def parquet_shards(folder: Path, num_images: int, rows_per_shard: int, *extra: str) -> Path:
    """prepare_data.py's parquet shards of `num_images` phantoms without fine-detail findings."""
    spec = importlib.util.spec_from_file_location("prepare_data_script", ROOT / "scripts" / "prepare_data.py")
    prepare_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare_data)
    prepare_data.main(["--dataset", "synthetic", "--output_dir", str(folder), "--num_images", str(num_images),
                       "--rows_per_shard", str(rows_per_shard), "--dataset_options", "fine_detail_findings=0",
                       "--cache_dir", str(folder.parent / "cache"), *extra])  # fmt: skip
    return folder


def test_streamed_parquet_pretrains(tmp_path):
    parquet_shards(tmp_path / "parquet", num_images=8, rows_per_shard=4)
    state = pretrain.main(
        ["--model_config", str(tiny_config_dir(tmp_path / "config")), "--dataset", str(tmp_path / "parquet"),
         "--streaming", "--shuffle_buffer_size", "4", "--output_dir", str(tmp_path / "out"),
         "--per_device_train_batch_size", "4", "--max_steps", "4", "--report_to", "none"]
    )  # fmt: skip
    assert state["step"] == 4 and state["processes"][0]["images"] == 16
    assert state["epoch"] >= 1  # the train shards alone (about 10 rows) ran out and the stream started again
    assert "streamed" in (tmp_path / "out" / "README.md").read_text()


@pytest.mark.parametrize(
    "num_images, rows_per_shard, positions_at_step_5",
    [
        # 9 rows in 5 shards, split row by row: 5 rows for one process, 4 for the other; after 5 steps of one image
        # the first process is at the end of epoch 0, the second 1 batch into epoch 1
        (7, 2, [[0, 5], [1, 1]]),
        (8, 3, [[0, 5], [0, 5]]),  # 4 shards: 2 whole shards for each process
    ],
)
def test_a_stream_over_two_processes_resumes_exactly(num_images, rows_per_shard, positions_at_step_5, tmp_path):
    parquet = parquet_shards(tmp_path / "parquet", num_images, rows_per_shard)
    config_dir = tiny_config_dir(tmp_path / "config")

    def run(output_dir: Path, *extra: str) -> None:
        launch_on_two_cpu_processes(
            SCRIPT,
            *["--model_config", str(config_dir), "--dataset", str(parquet), "--streaming", "--shuffle_buffer_size", "4",
              "--output_dir", str(output_dir), "--per_device_train_batch_size", "1", "--max_steps", "7",
              "--save_steps", "5", "--learning_rate", "1e-3", "--report_to", "none", *extra],
        )  # fmt: skip

    run(tmp_path / "straight")
    progress = json.loads((tmp_path / "straight" / "checkpoints" / "checkpoint-5" / "progress.json").read_text())
    assert progress["process_positions"] == positions_at_step_5
    resume_from_a_copy(run, tmp_path / "straight", tmp_path / "resumed", "checkpoint-5")
    assert_same_weights(tmp_path / "resumed", tmp_path / "straight")


def test_a_stream_read_by_loader_workers_resumes_exactly(tmp_path):
    """datasets shares a stream's skip out among the loader workers, whose batches come in turns; a run resumed
    mid-epoch with two workers still ends with the weights of a straight one."""
    parquet = parquet_shards(tmp_path / "parquet", num_images=8, rows_per_shard=3)
    config_dir = tiny_config_dir(tmp_path / "config")

    def run(output_dir: Path, *extra: str) -> dict:
        return pretrain.main(
            ["--model_config", str(config_dir), "--dataset", str(parquet), "--streaming", "--shuffle_buffer_size", "4",
             "--dataloader_num_workers", "2", "--output_dir", str(output_dir), "--cache_dir", str(tmp_path / "cache"),
             "--per_device_train_batch_size", "2", "--max_steps", "5", "--save_steps", "3", "--learning_rate", "1e-3",
             "--report_to", "none", *extra]
        )  # fmt: skip

    straight = run(tmp_path / "straight")
    progress = json.loads((tmp_path / "straight" / "checkpoints" / "checkpoint-3" / "progress.json").read_text())
    assert progress["process_positions"] == [[0, 3]] and straight["epoch"] == 1  # resumed mid-epoch, into the next
    resume_from_a_copy(run, tmp_path / "straight", tmp_path / "resumed", "checkpoint-3")
    assert_same_weights(tmp_path / "resumed", tmp_path / "straight")


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory) -> tuple[Path, Path]:
    """Three steps on two CPU processes through `accelerate launch` (DDP), checkpoints at 2 and 3."""
    root = tmp_path_factory.mktemp("two_processes")
    tiny_config_dir(root / "config")
    launch_on_two_cpu_processes(SCRIPT, *two_process_arguments(root, root / "ddp"))
    return root, root / "ddp"


def two_process_arguments(root: Path, output_dir: Path, *extra: str) -> list[str]:
    return [*arguments(root / "config", output_dir, root / "cache"), "--max_steps", "3", "--save_steps", "2", *extra]


def test_two_processes_train_on_different_data_through_accelerate_launch(two_process_run):
    _, output = two_process_run
    state = json.loads((output / "trainer_state.json").read_text())
    first, second = state["processes"]
    assert first["images"] == second["images"] == 12  # 3 steps x 4 images on each process
    assert first["pixel_crc32"] != second["pixel_crc32"]  # ... and not the same images
    model = AutoModelForPreTraining.from_pretrained(output)
    assert type(model).__name__ == "MiramForPreTraining"
    assert sorted(p.name for p in (output / "checkpoints" / "checkpoint-2").glob("random_states_*")) == [
        "random_states_0.pkl",
        "random_states_1.pkl",
    ]


def sharded_run_as_ddp_with_exact_resume(two_process_run, tmp_path: Path, config_file: Path, atol: float) -> Path:
    """The two-process run under `config_file` (tests/sharded_on_cpu.py): weights as DDP's within `atol`, and a
    resume from its step-2 checkpoint ends on the same weights, bit for bit. Returns the straight run's folder."""
    root, ddp = two_process_run

    def run(output_dir: Path, *extra: str) -> None:
        arguments = two_process_arguments(root, output_dir, *extra)
        launch_on_two_cpu_processes(SHARDED_ON_CPU, str(SCRIPT), *arguments, config_file=config_file)

    run(tmp_path / "straight")
    assert_same_weights(tmp_path / "straight", ddp, atol)
    resume_from_a_copy(run, tmp_path / "straight", tmp_path / "resumed", "checkpoint-2")
    assert_same_weights(tmp_path / "resumed", tmp_path / "straight")
    return tmp_path / "straight"


def test_fsdp_shards_trains_as_ddp_and_resumes_exactly(two_process_run, tmp_path):
    """configs/accelerate/fsdp.yaml on two CPU processes: FSDP2 over gloo, as on GPUs over NCCL."""
    output = sharded_run_as_ddp_with_exact_resume(two_process_run, tmp_path, FSDP_CONFIG, atol=1e-5)
    assert (output / "checkpoints" / "checkpoint-2" / "pytorch_model_fsdp_0").is_dir()  # sharded
    auto_map = json.loads((output / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForPreTraining"] == "modeling_miram.MiramForPreTraining"  # not torch's FSDP class
    assert (output / "modeling_miram.py").is_file() and not list(output.glob("_fsdp*.py"))


def test_deepspeed_zero_2_trains_as_ddp_and_resumes(two_process_run, tmp_path):
    """configs/accelerate/deepspeed.yaml on two CPU processes (DeepSpeed's CPU accelerator, gloo); runs where
    deepspeed is installed (not a dependency: CI skips it)."""
    pytest.importorskip("deepspeed")
    output = sharded_run_as_ddp_with_exact_resume(two_process_run, tmp_path, DEEPSPEED_CONFIG, atol=1e-4)
    assert (output / "checkpoints" / "checkpoint-2" / "zero_to_fp32.py").is_file()


def test_fsdp_pretrains_a_joint_embedding_method_with_batch_norm_heads(tmp_path):
    config_dir = joint_embedding_config_dir(tmp_path / "config", "byol")  # ResNet backbone, BatchNorm in the heads
    arguments = ["--model_type", "byol", "--model_config", str(config_dir), "--output_dir", str(tmp_path / "out"),
                 "--cache_dir", str(tmp_path / "cache"), "--num_images", "8", "--per_device_train_batch_size", "4",
                 "--max_steps", "2", "--report_to", "none"]  # fmt: skip
    launch_on_two_cpu_processes(SHARDED_ON_CPU, str(SCRIPT), *arguments, config_file=FSDP_CONFIG)
    model = AutoModelForPreTraining.from_pretrained(tmp_path / "out")
    assert type(model).__name__ == "ByolForPreTraining"
    assert type(AutoModelForImageClassification.from_pretrained(tmp_path / "out" / "backbone")).__name__ == (
        "ResNetForImageClassification"
    )


def joint_embedding_config_dir(path: Path, model_type: str) -> Path:
    """A tiny config of `model_type`: a 2-layer ViT on 32 px (ResNet for BYOL, as in the tiled-patch paper)."""
    vit = ViTConfig(image_size=32, patch_size=8, num_channels=1, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=2, intermediate_size=64)  # fmt: skip
    resnet = tiny_resnet_config()
    heads = {
        "byol": dict(projection_hidden_size=32, projection_size=16),
        "dino": dict(head_hidden_size=32, head_bottleneck_size=16, head_output_size=64),
        "mocov3": dict(projection_hidden_size=32, projection_size=16),
        "simclr": dict(projection_hidden_size=32, projection_size=16),
        "swav": dict(projection_hidden_size=32, projection_size=16, num_prototypes=20, freeze_prototypes_steps=1),
    }[model_type]
    backbone = resnet if model_type == "byol" else vit
    AutoConfig.for_model(model_type, backbone_config=backbone, image_size=32, **heads).save_pretrained(path)
    return path


@pytest.mark.parametrize("model_type", ["byol", "dino", "mocov3", "simclr", "swav"])
def test_joint_embedding_methods_pretrain_and_leave_a_ready_backbone(model_type, tmp_path, monkeypatch):
    config_dir = joint_embedding_config_dir(tmp_path / "config", model_type)
    output = tmp_path / "out"
    state = pretrain.main(
        ["--model_type", model_type, "--model_config", str(config_dir), "--output_dir", str(output), "--cache_dir",
         str(tmp_path / "cache"), "--num_images", "8", "--per_device_train_batch_size", "4", "--max_steps", "2",
         "--num_local_crops", "2", "--logging_steps", "1", "--report_to", "none"]
    )  # fmt: skip
    assert state["step"] == 2 and all(math.isfinite(record["loss"]) for record in state["log_history"])
    model = AutoModelForPreTraining.from_pretrained(output)
    assert model.config.model_type == model_type
    backbone = AutoModelForImageClassification.from_pretrained(output / "backbone")
    assert backbone.config.model_type == model.config.backbone_config.model_type
    exported = model.teacher_backbone if model_type == "dino" else model.backbone
    for key, value in exported.state_dict().items():
        torch.testing.assert_close(backbone.base_model.state_dict()[key], value)
    assert (output / "backbone" / "preprocessor_config.json").exists()
    card = (output / "README.md").read_text()
    assert model_type in card and "views" in card
    assert "AutoModelForPreTraining.from_pretrained" in card and "backbone_for_image_classification" in card
    assert {"byol": "Bootstrap your own latent", "dino": "Emerging properties", "mocov3": "An empirical study",
            "simclr": "A simple framework", "swav": "contrasting cluster assignments"}[model_type] in card  # fmt: skip
    assert not (output / "reconstruction.png").exists()
    classifier = run_card_code(output, monkeypatch)["classifier"]  # the card's code, as written
    assert classifier.config.num_labels == 2


def test_dino_resumes_exactly_teacher_centre_and_views_included(tmp_path):
    config_dir = joint_embedding_config_dir(tmp_path / "config", "dino")

    def run(output: Path, *extra: str) -> dict:
        return pretrain.main(
            ["--model_type", "dino", "--model_config", str(config_dir), "--output_dir", str(output), "--cache_dir",
             str(tmp_path / "cache"), "--num_images", "8", "--per_device_train_batch_size", "4", "--max_steps", "4",
             "--save_steps", "2", "--num_local_crops", "2", "--logging_steps", "1", "--report_to", "none", *extra]
        )  # fmt: skip

    straight = run(tmp_path / "straight")
    resumed = resume_from_a_copy(run, tmp_path / "straight", tmp_path / "resumed", "checkpoint-2")
    assert resumed["log_history"] == straight["log_history"]
    weights = load_file(tmp_path / "straight" / "model.safetensors")
    assert "criterion.center" in weights and any(key.startswith("teacher_head") for key in weights)
    assert_same_weights(tmp_path / "resumed", tmp_path / "straight")


def test_simclr_gathers_negatives_across_two_processes_through_accelerate_launch(tmp_path):
    config_dir = joint_embedding_config_dir(tmp_path / "config", "simclr")
    launch_on_two_cpu_processes(
        SCRIPT, "--model_type", "simclr", "--model_config", str(config_dir), "--output_dir", str(tmp_path / "out"),
        "--cache_dir", str(tmp_path / "cache"), "--num_images", "8", "--per_device_train_batch_size", "2",
        "--max_steps", "2", "--logging_steps", "1", "--report_to", "none",
    )  # fmt: skip
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    first, second = state["processes"]
    assert first["images"] == second["images"] == 4 and first["pixel_crc32"] != second["pixel_crc32"]
    assert type(AutoModelForPreTraining.from_pretrained(tmp_path / "out")).__name__ == "SimclrForPreTraining"


def test_the_vae_pretrains_on_whole_images_and_its_folder_loads_as_the_228_parameter_classifier(tmp_path, monkeypatch):
    output = tmp_path / "vae"
    MammoVaeConfig(image_size=[32, 40], encoder_channels=[4, 4, 2]).save_pretrained(tmp_path / "config")
    state = pretrain.main(
        ["--model_type", "vae", "--model_config", str(tmp_path / "config"), "--config_overrides", "latent_size=16",
         "--dataset_config", "images", "--output_dir", str(output), "--cache_dir", str(tmp_path / "cache"),
         "--num_images", "8", "--per_device_train_batch_size", "2", "--max_steps", "2", "--report_to", "none"]
    )  # fmt: skip
    assert state["step"] == 2 and state["processes"][0]["images"] == 4
    classifier = AutoModelForImageClassification.from_pretrained(output, num_labels=4)
    assert type(classifier).__name__ == "MammoVaeForImageClassification"
    assert sum(p.numel() for p in classifier.parameters() if p.requires_grad) == 228
    assert "VAE-SSL" in (output / "README.md").read_text()
    assert run_card_code(output, monkeypatch)["outputs"].reconstruction.shape == (1, 1, 32, 40)


def test_byol_pretrains_on_tiled_patches_of_a_chosen_size(tmp_path):
    config_dir = joint_embedding_config_dir(tmp_path / "config", "byol")
    state = pretrain.main(
        ["--model_type", "byol", "--model_config", str(config_dir), "--dataset_config", "tiles", "--dataset_options",
         "tile_size=48,max_background=0.5", "--output_dir", str(tmp_path / "out"), "--cache_dir",
         str(tmp_path / "cache"), "--num_images", "4", "--per_device_train_batch_size", "4", "--max_steps", "1",
         "--report_to", "none"]
    )  # fmt: skip
    assert state["step"] == 1 and state["processes"][0]["images"] == 4
    assert "`tiles`" in (tmp_path / "out" / "README.md").read_text()


def test_a_compiled_run_trains_as_the_eager_one_and_resumes(straight_run, monkeypatch):
    root, straight = straight_run
    compiled = ["--torch_compile", "true", "--torch_compile_backend", "eager"]  # dynamo's tracing, no C++ build
    compile_calls = []
    compile_model = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **options: compile_calls.append(options) or compile_model(
        model, **options))  # fmt: skip

    def run(output_dir: Path, *extra: str) -> dict:
        return pretrain.main(arguments(root / "config", output_dir, root / "cache", *compiled, *extra))

    state = run(root / "compiled")
    assert [options["backend"] for options in compile_calls] == ["eager"]  # compiled, not run eagerly
    assert_same_weights(root / "compiled", root / "straight")
    assert state["log_history"] == straight["log_history"]
    assert not any("_orig_mod" in key for key in load_file(root / "compiled" / "model.safetensors"))
    resume_from_a_copy(run, root / "straight", root / "compiled-resumed", "checkpoint-3")
    assert_same_weights(root / "compiled-resumed", root / "straight")


def test_two_loader_workers_train_and_resume_as_the_main_process_does(straight_run):
    """Views are drawn from (seed, epoch, image) and masks from (seed, step, process): not from a worker's state."""
    root, straight = straight_run
    workers = ["--dataloader_num_workers", "2"]

    def run(output_dir: Path, *extra: str) -> dict:
        return pretrain.main(arguments(root / "config", output_dir, root / "cache", *workers, *extra))

    state = run(root / "workers")
    assert_same_weights(root / "workers", root / "straight")
    assert state["log_history"] == straight["log_history"]
    resume_from_a_copy(run, root / "straight", root / "workers-resumed", "checkpoint-3")
    assert_same_weights(root / "workers-resumed", root / "straight")


def test_views_made_on_the_device_from_raw_pixels_train_and_resume_exactly_with_loader_workers(tmp_path):
    """--augment_on_device draws each batch's views from (seed, epoch, process, batch): a run resumed with two loader
    workers ends with the weights of a straight one without."""
    parquet_shards(tmp_path / "raw", 8, 4, "--image_format", "raw")
    config_dir = tiny_config_dir(tmp_path / "config")

    def run(output_dir: Path, *extra: str) -> dict:
        return pretrain.main(
            ["--model_config", str(config_dir), "--dataset", str(tmp_path / "raw"), "--augment_on_device",
             "--native_region_size", "64", "--output_dir", str(output_dir), "--cache_dir", str(tmp_path / "cache"),
             "--per_device_train_batch_size", "4", "--max_steps", "6", "--save_steps", "3", "--logging_steps", "1",
             "--learning_rate", "1e-3", "--report_to", "none", *extra]
        )  # fmt: skip

    straight = run(tmp_path / "straight")
    assert straight["epoch"] >= 2 and straight["processes"][0]["images"] == 24
    resumed = resume_from_a_copy(
        lambda output_dir, *extra: run(output_dir, "--dataloader_num_workers", "2", *extra),
        tmp_path / "straight", tmp_path / "resumed", "checkpoint-3",
    )  # fmt: skip
    assert_same_weights(tmp_path / "resumed", tmp_path / "straight")
    assert resumed["log_history"] == straight["log_history"]
    assert (tmp_path / "straight" / "reconstruction.png").stat().st_size > 0


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--model_type", "simclr", "--augment_on_device"], "makes the views of MIRAM and MAE; simclr"),
        (["--push_to_hub"], "--push_to_hub needs --hub_model_id"),
        (["--streaming"], "A streamed dataset has no length"),
        (["--on_nonfinite_loss", "retry"], "--on_nonfinite_loss is stop or skip"),
        (["--model_type", "jepa"], "Unknown model_type 'jepa'"),
        (["--lr_scheduler_type", "reduce_lr_on_plateau", "--eval_strategy", "epoch"], "--eval_strategy is a"),
    ],
)
def test_contradicting_flags_are_refused_as_they_are_parsed(flags, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        pretrain.main([*flags, "--output_dir", str(tmp_path / "out"), "--report_to", "none"])
    assert not (tmp_path / "out").exists()  # nothing was started
