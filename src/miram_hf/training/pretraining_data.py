"""The training data of `scripts/pretrain.py` and each process's batches of each epoch: the images of a collection,
a mixture or parquet files, sharded across processes and shuffled from seeds, so that a resumed run repeats a straight
one exactly. The views are made by the collators of `views.py`; the models are built in `presets.py`."""

from collections.abc import Callable, Iterator
from pathlib import Path

import datasets
from datasets.distributed import split_dataset_by_node
from torch.utils.data import BatchSampler, DataLoader
from transformers import BatchFeature

from ..data import BUILDERS, load_mammography, pretraining_mixture
from ..data.mixtures import MIXTURES
from ..data.raw_pixels import RAW_PIXEL_FEATURES
from .device_views import NativeRegionCollator
from .seeding import derived_seed


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


def epoch_batches(
    dataset: datasets.Dataset | datasets.IterableDataset,
    collator: Callable[[list[dict]], dict],
    batch_size: int,
    epoch: int,
    process_index: int = 0,
    num_processes: int = 1,
    skip: int = 0,
    shuffle_buffer_size: int = 1000,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[BatchFeature]:
    """This process's batches of `epoch`, the first `skip` left out: the dataset shuffled by (the collator's seed,
    epoch), split across processes (`split_dataset_by_node`) and collated (`views.py`'s collators, or
    `NativeRegionCollator`; the collator's `epoch` is set for its draws). A map-style dataset gives every process the
    same number of full batches; a streamed one gives each process its part of the stream (whole shards when they
    divide evenly). `NativeRegionCollator` gets a map-style dataset's raw pixels as one Arrow slice a batch."""
    seed = collator.seed
    if isinstance(dataset, datasets.IterableDataset):
        shuffled = dataset.shuffle(seed=seed, buffer_size=shuffle_buffer_size)
        rows_to_skip = skip * batch_size
        if shuffled.num_shards % num_processes:  # split row by row: datasets then skips rows of the whole stream
            rows_to_skip *= num_processes
        shard = split_dataset_by_node(shuffled, process_index, num_processes).skip(rows_to_skip)
        shard.set_epoch(epoch)
    else:
        count = batches_per_epoch(dataset, batch_size, num_processes)
        if skip >= count:  # saved right at the end of the epoch: nothing of it is left
            return iter(())
        shuffled = dataset.shuffle(seed=derived_seed(seed, epoch))
        shard = split_dataset_by_node(shuffled.select(range(count * batch_size * num_processes)), process_index,
                                      num_processes)  # fmt: skip
        shard = shard.select(range(skip * batch_size, count * batch_size))
    collator.epoch = epoch
    batching = {"batch_size": batch_size, "drop_last": True}
    raw_pixels = set(RAW_PIXEL_FEATURES) <= set(shard.column_names)
    if isinstance(collator, NativeRegionCollator) and isinstance(shard, datasets.Dataset) and raw_pixels:
        # the loader fetches each batch's rows at once, as zero-copy Arrow slices of the memory-mapped dataset
        shard, batching = shard.with_format("arrow"), {"sampler": BatchSampler(range(len(shard)), **batching),
                                                       "batch_size": None}  # fmt: skip
    loader = DataLoader(shard, collate_fn=collator, num_workers=num_workers, pin_memory=pin_memory, **batching)
    return iter(loader)


__all__ = ["batches_per_epoch", "epoch_batches", "pretraining_dataset"]
