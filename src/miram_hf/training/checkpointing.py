"""Training checkpoints that a crash cannot break.

A checkpoint is `accelerator.save_state` (model weights as safetensors, optimizer, registered objects such as the
scheduler, every process's random states) plus `progress.json` (step, epoch, position in the epoch, log history). It
is written to a hidden folder, renamed into place once complete, and only then named in `latest`; so `latest`
always names a complete checkpoint, and a crash while saving loses at most the checkpoint being written. The folders
are meant for a filesystem that every process sees. Optimizer and random states are pickles: resume only from
checkpoints you wrote.
"""

import json
import os
import re
import shutil
from pathlib import Path

from accelerate import Accelerator

LATEST = "latest"
PROGRESS = "progress.json"
_NAME = re.compile(r"checkpoint-(\d+)")


def save_checkpoint(
    accelerator: Accelerator, checkpoints_dir: str | Path, step: int, progress: dict, total_limit: int | None = None
) -> Path:
    """Save the training state of `step` to `checkpoints_dir/checkpoint-<step>`, point `latest` at it and keep the
    newest `total_limit` checkpoints. Every process must call it."""
    checkpoints_dir = Path(checkpoints_dir)
    final, partial = checkpoints_dir / f"checkpoint-{step}", checkpoints_dir / f".partial-checkpoint-{step}"
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)  # what a crash while saving left
        partial.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()  # every process writes its own files (random states, shards) before the rename
    if accelerator.is_main_process:
        _write_atomically(partial / PROGRESS, json.dumps(progress, indent=1))
        if final.exists():  # a checkpoint of an earlier run of this step: replaced as a whole
            stale = checkpoints_dir / f".stale-checkpoint-{step}"
            os.replace(final, stale)
            shutil.rmtree(stale)
        os.replace(partial, final)
        _write_atomically(checkpoints_dir / LATEST, final.name)
        for old in complete_checkpoints(checkpoints_dir)[: -total_limit if total_limit else 0]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Accelerator, checkpoint: str | Path) -> dict:
    """Restore the training state saved in `checkpoint`; returns its progress."""
    checkpoint = Path(checkpoint)
    if not (checkpoint / PROGRESS).is_file():
        raise FileNotFoundError(f"{checkpoint} is not a training checkpoint: it has no {PROGRESS}.")
    accelerator.load_state(str(checkpoint))
    return json.loads((checkpoint / PROGRESS).read_text())


def complete_checkpoints(checkpoints_dir: str | Path) -> list[Path]:
    """The complete checkpoints in `checkpoints_dir`, oldest step first."""
    checkpoints_dir = Path(checkpoints_dir)
    if not checkpoints_dir.is_dir():
        return []
    found = [
        (int(match.group(1)), path)
        for path in checkpoints_dir.iterdir()
        if (match := _NAME.fullmatch(path.name)) and (path / PROGRESS).is_file()
    ]
    return [path for _, path in sorted(found)]


def latest_checkpoint(checkpoints_dir: str | Path) -> Path | None:
    """The checkpoint `latest` names, else (a crash between renaming and pointing) the newest complete one."""
    pointer = Path(checkpoints_dir) / LATEST
    if pointer.is_file():
        named = pointer.parent / pointer.read_text().strip()
        if (named / PROGRESS).is_file():
            return named
    complete = complete_checkpoints(checkpoints_dir)
    return complete[-1] if complete else None


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


__all__ = ["complete_checkpoints", "latest_checkpoint", "load_checkpoint", "save_checkpoint"]
