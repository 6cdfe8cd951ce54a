"""Training checkpoints that a crash cannot break.

A checkpoint is `accelerator.save_state` (model weights as safetensors, the optimizer's state and every process's
random states as torch files that accelerate reads with `weights_only=True`) plus `progress.json` (step, epoch,
position in the epoch, log history, the scheduler's few numbers): nothing in it runs code when read. It is written to a
hidden folder, flushed to disk, renamed into place once complete, and only then named in `latest`; so `latest` always
names a complete checkpoint, and a crash, a power cut or a full disk while saving loses at most the checkpoint being
written. Resuming from `latest` falls back to the newest intact checkpoint, with a warning, when a newer one cannot be
read. The folders are meant for a filesystem that every process sees.
"""

import json
import logging
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import load
from accelerate.utils.constants import RNG_STATE_NAME

logger = logging.getLogger(__name__)

LATEST = "latest"
PROGRESS = "progress.json"
LOCK = ".run.lock"
_NAME = re.compile(r"checkpoint-(\d+)")


def save_checkpoint(
    accelerator: Accelerator, checkpoints_dir: str | Path, step: int, progress: dict, total_limit: int | None = None
) -> Path:
    """Save the training state of `step` to `checkpoints_dir/checkpoint-<step>`, point `latest` at it and keep the
    newest `total_limit` checkpoints. Every process must call it."""
    checkpoints_dir = Path(checkpoints_dir)
    final, partial = checkpoints_dir / f"checkpoint-{step}", checkpoints_dir / f".partial-checkpoint-{step}"
    if accelerator.is_main_process:
        for left_over in checkpoints_dir.glob(".partial-checkpoint-*"):  # what a crash while saving left
            shutil.rmtree(left_over, ignore_errors=True)
        partial.mkdir(parents=True)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(partial))
    except (OSError, RuntimeError) as error:  # a full disk, a lost mount: the last checkpoint stays as it was
        shutil.rmtree(partial, ignore_errors=True)
        raise CheckpointError(f"Could not write {final} ({error}); {checkpoints_dir / LATEST} still names the last "
                              "complete checkpoint.") from error  # fmt: skip
    accelerator.wait_for_everyone()  # every process writes its own files (random states, shards) before the rename
    if accelerator.is_main_process:
        try:
            _write_atomically(partial / PROGRESS, json.dumps(progress, indent=1))
            _flush_to_disk(partial)
        except OSError as error:
            shutil.rmtree(partial, ignore_errors=True)
            raise CheckpointError(f"Could not write {final} ({error}); {checkpoints_dir / LATEST} still names the "
                                  "last complete checkpoint.") from error  # fmt: skip
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


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written or read, named in the message with the reason."""


def load_checkpoint(accelerator: Accelerator, checkpoint: str | Path) -> dict:
    """Restore the training state saved in `checkpoint`; returns its progress. A checkpoint that cannot be read (a
    truncated or garbled file) raises CheckpointError naming it and the reason."""
    checkpoint = Path(checkpoint)
    if not (checkpoint / PROGRESS).is_file():
        raise CheckpointError(f"{checkpoint} is not a training checkpoint: it has no {PROGRESS}.")
    try:
        progress = json.loads((checkpoint / PROGRESS).read_text())
        # read first as accelerate reads it (weights_only): accelerate itself skips random states it cannot read, and
        # the resumed run would then silently differ from a straight one
        load(checkpoint / f"{RNG_STATE_NAME}_{accelerator.process_index}.pkl")
        accelerator.load_state(str(checkpoint))
    except Exception as error:  # whatever a damaged file makes safetensors, torch or json raise
        raise CheckpointError(f"{checkpoint} cannot be read: {type(error).__name__}: {error}") from error
    return progress


def load_latest_checkpoint(accelerator: Accelerator, checkpoints_dir: str | Path) -> tuple[Path | None, dict]:
    """Restore the newest checkpoint in `checkpoints_dir` that can be read, newest first from the one `latest` names;
    each one that cannot be read is skipped with a warning that names it. Returns (checkpoint, progress), or
    (None, {}) where there is none; raises CheckpointError when every checkpoint there is broken."""
    named = latest_checkpoint(checkpoints_dir)
    candidates = [named] if named is not None else []
    candidates += [path for path in reversed(complete_checkpoints(checkpoints_dir)) if path != named]
    broken = []
    for checkpoint in candidates:
        try:
            return checkpoint, load_checkpoint(accelerator, checkpoint)
        except CheckpointError as error:
            broken.append(str(error))
            logger.warning("%s; trying the checkpoint before it.", error)
    if broken:
        raise CheckpointError(f"No checkpoint in {checkpoints_dir} can be read: " + "; ".join(broken))
    return None, {}


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


@contextmanager
def run_lock(output_dir: str | Path, holder: bool = True, stale_after: float = 600.0) -> Iterator[None]:
    """One run at a time in `output_dir`: the run that holds `output_dir/.run.lock` (the main process: `holder`)
    writes there; a second one is refused with a message naming the first. A lock whose run is gone is taken over
    with a warning: on this host when its process no longer exists, from another host when it was last touched
    (`touch_lock`, at every checkpoint) `stale_after` seconds ago."""
    lock = Path(output_dir) / LOCK
    if not holder:
        yield
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    # written whole, then linked into place: the link fails if the lock exists, and a lock is never seen half written
    claim = lock.with_name(f"{LOCK}.{owner['host']}.{owner['pid']}")
    claim.write_text(json.dumps(owner))
    try:
        while True:
            try:
                os.link(claim, lock)
                break
            except FileExistsError:
                other = _lock_owner(lock)
                if other is not None and _still_running(other, lock, stale_after):
                    raise RuntimeError(f"{output_dir} is in use by another run (process {other['pid']} on "
                                       f"{other['host']}, started {other['started']}): give this run another "
                                       "--output_dir, or wait for that one to end.") from None  # fmt: skip
                logger.warning("Taking over %s, left by a run that no longer runs (%s).", lock, other)
                lock.unlink(missing_ok=True)
    finally:
        claim.unlink(missing_ok=True)
    try:
        yield
    finally:
        if _lock_owner(lock) == owner:
            lock.unlink(missing_ok=True)


def touch_lock(output_dir: str | Path) -> None:
    """Mark the run holding `output_dir`'s lock as alive (for runs on other hosts, which cannot see its process)."""
    lock = Path(output_dir) / LOCK
    if lock.exists():
        os.utime(lock)


def _lock_owner(lock: Path) -> dict | None:
    try:
        return json.loads(lock.read_text())
    except (OSError, ValueError):  # gone meanwhile, or garbled
        return None


def _still_running(owner: dict, lock: Path, stale_after: float) -> bool:
    if owner.get("host") == socket.gethostname():
        try:
            os.kill(int(owner["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # someone else's process
            return True
        return True
    try:
        return time.time() - lock.stat().st_mtime < stale_after
    except OSError:
        return False


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    _flush_to_disk(path.parent, files=False)


def _flush_to_disk(folder: Path, files: bool = True) -> None:
    """fsync `folder`'s files (with `files`) and the folder itself: a rename after this cannot put a name in front of
    data that a power cut would lose."""
    if files:
        for path in folder.rglob("*"):
            if path.is_file():
                with open(path, "rb") as file:
                    os.fsync(file.fileno())
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


__all__ = [
    "CheckpointError",
    "complete_checkpoints",
    "latest_checkpoint",
    "load_checkpoint",
    "load_latest_checkpoint",
    "run_lock",
    "save_checkpoint",
    "touch_lock",
]
