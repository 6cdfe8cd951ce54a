"""The training data of `scripts/pretrain.py` and each process's batches of each epoch: the images of a collection,
a mixture or parquet files, sharded across processes and shuffled from seeds, so that a resumed run repeats a straight
one exactly. The views are made by the collators of `views.py`; the models are built in `presets.py`."""

import itertools
import logging
import queue
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import datasets
import numpy as np
import torch
from datasets.distributed import split_dataset_by_node
from torch.utils.data import DataLoader
from transformers import BatchFeature

from ..data import BUILDERS, load_mammography, pretraining_mixture
from ..data.mixtures import MIXTURES
from ..data.raw_pixels import RAW_PIXEL_FEATURES
from .device_views import NativeRegionCollator
from .seeding import derived_seed

logger = logging.getLogger(__name__)


def pretraining_dataset(
    dataset: str,
    data_dir: str | None = None,
    config_name: str = "lesions",
    streaming: bool = False,
    cache_dir: str | None = None,
    **config_kwargs,
) -> datasets.Dataset | datasets.IterableDataset:
    """The training images of `dataset`, as an `image` column (or the raw `pixels`, `height` and `width` of
    `prepare_data.py --image_format raw`):

    - a collection (`synthetic`, `cbis-ddsm`, ...): the train split of its `config_name` (`lesions`, `tiles`, ...)
      built from `data_dir`, with `config_kwargs` (e.g. `num_images` for synthetic);
    - a mixture of the MIRAM paper (`lesions-only`, `mgs-and-lesions`; the `cbis-ddsm` set is the collection's
      `lesions`): `data_dir` names each collection's folder, `cbis-ddsm=/data/CBIS-DDSM,inbreast=/data/INbreast`;
    - anything else: parquet files, a file, a glob or a folder (its `train-*.parquet` shards when it has some, as
      `scripts/prepare_data.py` writes them), streamed with `streaming=True` so that data larger than memory trains.
    """
    if dataset in BUILDERS:
        rows = load_mammography(dataset, data_dir, config_name, "train", cache_dir, **config_kwargs)
    elif dataset in MIXTURES:
        if not data_dir:
            raise ValueError(f"The {dataset} mixture needs --data_dir name=folder,name=folder (e.g. inbreast=/data).")
        items = [item.split("=", 1) for item in data_dir.split(",")]
        if any(len(item) != 2 for item in items):
            raise ValueError(f"--data_dir for a mixture is name=folder,name=folder; got {data_dir!r}.")
        folders = dict(items)
        rows = pretraining_mixture(dataset, folders, cache_dir=cache_dir)
    else:
        files = dataset
        if Path(dataset).is_dir():  # prepare_data.py's folder holds every split: train on the train shards
            pattern = "train-*.parquet" if any(Path(dataset).glob("train-*.parquet")) else "*.parquet"
            files = str(Path(dataset) / pattern)
        rows = datasets.load_dataset("parquet", data_files={"train": files}, split="train", streaming=streaming)
    for columns in (["image"], list(RAW_PIXEL_FEATURES)):
        if set(columns) <= set(rows.column_names):
            return rows.select_columns(columns)
    raise ValueError(f"{dataset} has no `image` column, nor raw `pixels` (columns: {rows.column_names}).")


def batches_per_epoch(dataset: datasets.Dataset, batch_size: int, num_processes: int) -> int:
    """Full batches each process gets from one epoch of a map-style dataset (the same number on every process)."""
    count = len(dataset) // num_processes // batch_size
    if count == 0:
        raise ValueError(
            f"{len(dataset)} training rows are fewer than one batch of {batch_size} for each of {num_processes} "
            "processes: lower --per_device_train_batch_size or add data."
        )
    return count


class CollatedBatches(torch.utils.data.Dataset):
    """A map-style dataset's batches, each collated where it is read (a loader worker or the main process), keyed by
    (epoch, row indices): the epoch reaches the collator's draws in workers that persist across epochs.
    `NativeRegionCollator` gets raw pixels as one zero-copy Arrow slice of the memory-mapped rows a batch."""

    def __init__(self, rows: datasets.Dataset, collator: Callable):
        self.collator = collator
        raw_pixels = set(RAW_PIXEL_FEATURES) <= set(rows.column_names)
        self.as_arrow = isinstance(collator, NativeRegionCollator) and raw_pixels
        self.rows = rows.with_format("arrow") if self.as_arrow else rows

    def __getitem__(self, key: tuple[int, list[int]]) -> dict:
        epoch, indices = key
        self.collator.epoch = epoch
        batch = self.rows[indices]
        if self.as_arrow:
            return self.collator(batch)
        return self.collator([dict(zip(batch, row, strict=True)) for row in zip(*batch.values(), strict=True)])


def as_collated(batch: dict) -> dict:
    """The loader's collate_fn: `CollatedBatches` returns batches already collated."""
    return batch


class PretrainingLoader:
    """This process's batches (`batches(epoch, skip)`, epoch after epoch, or `epoch(epoch, skip)`, one epoch's):
    the dataset shuffled by (the collator's seed, epoch), split across processes and collated (`views.py`'s
    collators, or `NativeRegionCollator`; the collator's `epoch` is set for its draws).

    A map-style dataset gives every process the same number of full batches, and one DataLoader reads it for the
    whole run: its workers persist across epochs, so that a small dataset trained for many epochs does not wait for
    new workers every epoch. A streamed one gives each process its part of the stream (whole shards when they divide
    evenly), read by a new DataLoader each epoch.

    With `read_ahead` (training on a GPU) and no workers, a thread reads the next `batches` while the caller trains on
    this one: a training step waits on the device (for its loss and gradient norm checks), and the loading would
    otherwise add to every step's time. Workers read ahead by themselves (and are better not forked from a thread)."""

    def __init__(
        self,
        dataset: datasets.Dataset | datasets.IterableDataset,
        collator: Callable[[list[dict]], dict],
        batch_size: int,
        process_index: int = 0,
        num_processes: int = 1,
        shuffle_buffer_size: int = 1000,
        num_workers: int = 0,
        pin_memory: bool = False,
        read_ahead: bool = False,
    ):
        self.dataset, self.collator, self.batch_size = dataset, collator, batch_size
        self.read_ahead = read_ahead and num_workers == 0
        self.reader = None  # a weak reference to the batches last asked for: their caller owns them
        self.process_index, self.num_processes = process_index, num_processes
        self.shuffle_buffer_size = shuffle_buffer_size
        self.loading = {"num_workers": num_workers, "pin_memory": pin_memory}
        if isinstance(dataset, datasets.Dataset):
            self.keys: list[tuple[int, list[int]]] = []  # this epoch's batches: the loader iterates it anew each epoch
            self.loader = DataLoader(CollatedBatches(dataset, collator), sampler=self.keys, batch_size=None,
                                     collate_fn=as_collated, persistent_workers=num_workers > 0,
                                     **self.loading)  # fmt: skip

    def batches(self, epoch: int = 0, skip: int = 0) -> Iterator[tuple[int, int, BatchFeature]]:
        """(epoch, index in the epoch, batch) of every batch from `epoch`'s after the first `skip` (those a resumed run
        has trained on), epoch after epoch without end; with `read_ahead`, read ahead across epochs too. The batches
        asked for before end here: they share the loader (and a thread reading them must let go of it first)."""
        if self.reader is not None and (reader := self.reader()) is not None:
            reader.close()
        batches = self.batches_from(epoch, skip)
        if self.read_ahead:
            batches = read_ahead(batches)
        self.reader = weakref.ref(batches)
        return batches

    def batches_from(self, epoch: int, skip: int) -> Iterator[tuple[int, int, BatchFeature]]:
        while True:
            produced = False
            for index, batch in enumerate(self.epoch(epoch, skip), start=skip):
                produced = True
                yield epoch, index, batch
            if not produced and skip == 0:
                raise ValueError(
                    f"Process {self.process_index} got no batch of {self.batch_size} in epoch {epoch}: its part of the "
                    "data holds fewer rows than a batch."
                )
            epoch, skip = epoch + 1, 0

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[BatchFeature]:
        """The batches of `epoch`, the first `skip` left out."""
        seed = self.collator.seed
        if isinstance(self.dataset, datasets.IterableDataset):
            shuffled = self.dataset.shuffle(seed=seed, buffer_size=self.shuffle_buffer_size)
            # datasets shares a skip out among the loader workers, whose batches the loader then takes in turns: with
            # workers, the batches a resumed run has trained on are read again and left out
            batches_to_skip = skip if self.loading["num_workers"] else 0
            if batches_to_skip:
                logger.warning("Resuming a stream read by loader workers: the %d batches of epoch %d trained on are "
                               "read again and left out.", batches_to_skip, epoch)  # fmt: skip
            rows_to_skip = (skip - batches_to_skip) * self.batch_size
            if shuffled.num_shards % self.num_processes:  # split row by row: datasets skips rows of the whole stream
                rows_to_skip *= self.num_processes
            shard = split_dataset_by_node(shuffled, self.process_index, self.num_processes).skip(rows_to_skip)
            shard.set_epoch(epoch)
            self.collator.epoch = epoch
            loader = DataLoader(shard, batch_size=self.batch_size, collate_fn=self.collator, drop_last=True,
                                **self.loading)  # fmt: skip
            return itertools.islice(loader, batches_to_skip, None)
        # datasets' `shuffle(seed)` order, cut to whole batches and split into contiguous blocks as
        # `split_dataset_by_node` splits a map-style dataset
        per_process = batches_per_epoch(self.dataset, self.batch_size, self.num_processes) * self.batch_size
        order = np.random.default_rng(derived_seed(seed, epoch)).permutation(len(self.dataset))
        shard = order[self.process_index * per_process : (self.process_index + 1) * per_process].tolist()
        self.keys[:] = [(epoch, shard[start : start + self.batch_size])
                        for start in range(skip * self.batch_size, per_process, self.batch_size)]  # fmt: skip
        return iter(self.loader)


def read_ahead(batches: Iterator, depth: int = 2) -> Iterator:
    """`batches`, up to `depth` of them read ahead by a thread. The loading overlaps what the caller does while it
    waits with the GIL released (a GPU's steps); numpy's and torch's copies release it too. The thread works on the
    caller's accelerator device, where pinned memory is allocated; an error in it is raised in the caller, and the
    thread stops once the caller stops iterating (or closes the iterator)."""
    device = torch.accelerator.current_device_index() if torch.accelerator.is_available() else None
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stopped, end = threading.Event(), object()

    def hand_over(item) -> bool:
        while not stopped.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def load() -> None:
        try:
            if device is not None:
                torch.accelerator.set_device_index(device)
            for batch in batches:
                if not hand_over(batch):
                    return
            hand_over(end)
        except BaseException as error:  # whatever ends the thread ends the caller's loop, never leaves it waiting
            hand_over(error)

    thread = threading.Thread(target=load, name="read_ahead", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stopped.set()
        thread.join()
        if hasattr(batches, "close"):  # lets go of the loader's iterator now, not when collected
            batches.close()


__all__ = ["PretrainingLoader", "batches_per_epoch", "pretraining_dataset"]
