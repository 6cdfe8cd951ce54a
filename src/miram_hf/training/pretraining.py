"""The data side of `scripts/pretrain.py`: the training images, the views cut from their native pixels, the masking
noise, and each process's batches of each epoch, all drawn from seeds rather than from the global random state so that
a resumed run repeats a straight one exactly. The models are built in `presets.py`."""

import zlib
from collections.abc import Iterator
from pathlib import Path

import datasets
import numpy as np
import torch
from datasets.distributed import split_dataset_by_node
from torch.utils.data import DataLoader
from transformers import BatchFeature

from ..data import BUILDERS, load_mammography, pretraining_mixture
from ..data.mixtures import MIXTURES
from ..data.raw_pixels import RAW_PIXEL_FEATURES, row_image
from ..processing import MammographyImageProcessor
from ..processing.augmentations import random_crop_regions


def derived_seed(*values: int) -> int:
    """A 64-bit seed mixed from several integers (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([int(value) for value in values]).generate_state(1, np.uint64)[0])


def mask_noise(
    pixel_values: torch.Tensor, patch_size: int, seed: int, step: int, process_index: int = 0, micro_batch: int = 0
) -> torch.Tensor:
    """MAE's masking noise (batch, num_patches) for one micro-batch, drawn from (seed, step, process, micro-batch)."""
    batch, _, height, width = pixel_values.shape
    generator = torch.Generator().manual_seed(derived_seed(seed, step, process_index, micro_batch))
    noise = torch.rand(batch, (height // patch_size) * (width // patch_size), generator=generator)
    return noise.to(pixel_values.device)


class PretrainingCollator:
    """Rows with an `image` (a crop or a tile at any bit depth) -> the model's inputs, through `processor`.

    With `augment`, each image goes through MAE's augmentation first: a random resized crop (`crop_scale` of the area,
    aspect 3/4 to 4/3) and a horizontal flip, cut from the native pixels before the processor resizes them, so that
    MIRAM's finer targets keep the native detail. The draws are seeded by (seed, epoch, image content), which gives a
    resumed run the views of a straight one whatever the number of loader workers. Set `epoch` before each epoch.
    """

    def __init__(
        self,
        processor: MammographyImageProcessor,
        seed: int = 0,
        augment: bool = True,
        crop_scale: tuple[float, float] = (0.2, 1.0),
    ):
        self.processor, self.seed, self.augment, self.crop_scale = processor, seed, augment, tuple(crop_scale)
        self.epoch = 0

    def __call__(self, rows: list[dict]) -> BatchFeature:
        images = [row_image(row) for row in rows]
        if self.augment:
            images = [self.random_view(image) for image in images]
        return self.processor(images, return_tensors="pt")

    def random_view(self, image: np.ndarray) -> np.ndarray:
        generator = torch.Generator().manual_seed(derived_seed(self.seed, self.epoch, zlib.crc32(image.tobytes())))
        region = [value.item() for value in random_crop_regions(1, self.crop_scale, generator=generator)]
        return native_crop(image, *region, flip=torch.rand(1, generator=generator).item() < 0.5)


def native_crop(
    image: np.ndarray, width: float, height: float, centre_x: float, centre_y: float, flip: bool
) -> np.ndarray:
    """The whole pixels of `image` in a `random_crop_regions` region (sides as fractions of the image's, centre in
    [-1, 1]), flipped left-right when `flip`."""
    rows, columns = image.shape[:2]
    crop_rows, crop_columns = max(1, round(height * rows)), max(1, round(width * columns))
    top = min(max(0, round((centre_y + 1) / 2 * rows - crop_rows / 2)), rows - crop_rows)
    left = min(max(0, round((centre_x + 1) / 2 * columns - crop_columns / 2)), columns - crop_columns)
    view = image[top : top + crop_rows, left : left + crop_columns]
    return np.ascontiguousarray(view[:, ::-1] if flip else view)


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
    collator: PretrainingCollator,
    batch_size: int,
    epoch: int,
    process_index: int = 0,
    num_processes: int = 1,
    skip: int = 0,
    shuffle_buffer_size: int = 1000,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[BatchFeature]:
    """This process's batches of `epoch`, the first `skip` left out: the dataset shuffled by (seed, epoch) and split
    across processes (`split_dataset_by_node`). A map-style dataset gives every process the same number of full
    batches; a streamed one gives each process its part of the stream (whole shards when they divide evenly)."""
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
    loader = DataLoader(shard, batch_size=batch_size, collate_fn=collator, num_workers=num_workers, drop_last=True,
                        pin_memory=pin_memory)  # fmt: skip
    return iter(loader)


__all__ = [
    "PretrainingCollator",
    "batches_per_epoch",
    "derived_seed",
    "epoch_batches",
    "mask_noise",
    "native_crop",
    "pretraining_dataset",
]
