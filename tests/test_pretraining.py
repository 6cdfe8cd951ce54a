import itertools
import os
import threading
import time

import datasets
import numpy as np
import pytest
import torch
from datasets.distributed import split_dataset_by_node
from tiny_configs import tiny_vit_mae_config
from transformers import AutoConfig, AutoModelForPreTraining, ViTMAEConfig, ViTMAEForPreTraining
from transformers.models.vit_mae.modeling_vit_mae import ViTMAEEmbeddings

from miram_hf import MammographyImageProcessor, MiramConfig
from miram_hf.data.raw_pixels import RAW_PIXEL_FEATURES
from miram_hf.training import device_views
from miram_hf.training.methods import METHODS, MaskedPatches, Views, WholeImages, citations_for, pretraining_method
from miram_hf.training.presets import initialize_vit_mae, pretraining_config
from miram_hf.training.pretraining_data import PretrainingLoader, pretraining_dataset
from miram_hf.training.seeding import derived_seed, mask_noise
from miram_hf.training.views import MultiViewCollator, PretrainingCollator


def numbered_rows(count: int) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"row": list(range(count))})


class RowCollator:
    """Stands in for PretrainingCollator: a batch is the row numbers it holds."""

    seed, epoch = 3, 0

    def __call__(self, rows: list[dict]) -> list[int]:
        return [row["row"] for row in rows]


def rows_of(batches) -> list[int]:
    return [row for batch in batches for row in batch]


def test_presets_and_their_errors():
    config = pretraining_config("miram", "vit-small", scales=[1, 2, 4], image_size=None)
    assert isinstance(config, MiramConfig) and config.hidden_size == 384 and config.num_channels == 1
    assert config.image_size == 112 and config.patch_size == 16 and config.scales == [1, 2, 4]
    assert isinstance(pretraining_config("mae", "vit-base"), ViTMAEConfig)
    with pytest.raises(ValueError, match=r"\['scales'\] are not options of model_type mae"):
        pretraining_config("mae", "vit-tiny", scales=[1, 2])
    with pytest.raises(ValueError, match="Unknown model_type"):
        pretraining_config("ijepa", "vit-tiny")
    # the joint-embedding methods: the preset is their backbone, --config_overrides reaches their own fields
    dino = pretraining_config("dino", "vit-small", "momentum=0.99,head_output_size=4096", image_size=96)
    assert dino.backbone_config.model_type == "vit" and dino.backbone_config.hidden_size == 384
    assert dino.image_size == dino.backbone_config.image_size == 96 and dino.patch_size == 16
    assert dino.momentum == 0.99 and dino.head_output_size == 4096
    assert not hasattr(dino.backbone_config, "decoder_hidden_size")
    byol = pretraining_config("byol", "resnet-50")
    assert byol.backbone_config.hidden_sizes[-1] == byol.backbone_hidden_size == 2048
    assert byol.num_channels == 1 and byol.image_size == 112
    with pytest.raises(ValueError, match="not options of model_type simclr"):
        pretraining_config("simclr", "vit-tiny", mask_ratio=0.5)
    with pytest.raises(ValueError, match="ResNet backbone"):
        pretraining_config("miram", "resnet-18")


def test_vit_mae_gets_maes_initialisation():
    config = tiny_vit_mae_config(num_channels=3, num_hidden_layers=1, num_attention_heads=2)
    model = ViTMAEForPreTraining(config)
    assert model.vit.embeddings.position_embeddings.abs().sum() == 0  # transformers' fresh init (5.x)
    initialize_vit_mae(model)
    reference = ViTMAEEmbeddings(config)  # outside a PreTrainedModel: its own initialize_weights runs in full
    reference.initialize_weights()
    torch.testing.assert_close(model.vit.embeddings.position_embeddings, reference.position_embeddings)
    assert model.decoder.decoder_pos_embed[0, 1:].abs().sum() > 0 and model.decoder.mask_token.std() > 0


def test_mask_noise_depends_on_step_and_process_only():
    pixels = torch.zeros(2, 1, 32, 32)
    assert mask_noise(pixels, 8, 0, 5).shape == (2, 16)
    torch.testing.assert_close(mask_noise(pixels, 8, 0, 5, 1), mask_noise(pixels, 8, 0, 5, 1))
    assert not torch.equal(mask_noise(pixels, 8, 0, 5, 0), mask_noise(pixels, 8, 0, 5, 1))
    assert not torch.equal(mask_noise(pixels, 8, 0, 5), mask_noise(pixels, 8, 0, 6))


def test_views_are_reproducible_per_epoch_and_differ_across_epochs():
    image = (np.random.default_rng(0).random((64, 48)) * 65535).astype(np.uint16)
    processor = MammographyImageProcessor(size={"height": 16, "width": 16}, do_breast_crop=False, do_flip=False,
                                          keep_aspect_ratio=False, scales=[1, 2])  # fmt: skip
    collator = PretrainingCollator(processor, seed=0, crop_scale=(0.2, 0.5))
    first = collator([{"image": image}])
    again = collator([{"image": image}])
    torch.testing.assert_close(first["pixel_values"], again["pixel_values"])
    collator.epoch = 1
    assert not torch.equal(collator([{"image": image}])["pixel_values"], first["pixel_values"])
    view = collator.random_view(image)
    assert view.dtype == np.uint16 and 0.2 * image.size * 0.9 <= view.size <= 0.5 * image.size * 1.1
    assert [target.shape[-1] for target in first["target_pixel_values"]] == [16, 32]


def epoch_rows(
    dataset,
    collator,
    batch_size: int,
    epoch: int,
    process_index: int = 0,
    num_processes: int = 1,
    skip: int = 0,
    **loading,
) -> list:
    loader = PretrainingLoader(dataset, collator, batch_size, process_index, num_processes, **loading)
    return rows_of(loader.epoch(epoch, skip))


def test_processes_get_disjoint_equal_shards_and_skipping_resumes_the_order():
    collator = RowCollator()
    dataset = numbered_rows(21)  # 10 per process, 2 full batches of 4 each, every epoch
    shards = [epoch_rows(dataset, collator, 4, epoch=0, process_index=i, num_processes=2) for i in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 8 and not set(shards[0]) & set(shards[1])
    assert epoch_rows(dataset, collator, 4, epoch=0, process_index=1, num_processes=2, skip=1) == shards[1][4:]
    # a checkpoint saved right after the epoch's last batch resumes with nothing left of that epoch
    assert epoch_rows(dataset, collator, 4, epoch=0, process_index=1, num_processes=2, skip=2) == []
    assert epoch_rows(dataset, collator, 4, epoch=1, process_index=0, num_processes=2) != shards[0]
    # the order is datasets' own: shuffle(seed), whole batches, split_dataset_by_node
    shuffled = dataset.shuffle(seed=derived_seed(RowCollator.seed, 1)).select(range(16))
    assert (
        epoch_rows(dataset, collator, 4, epoch=1, process_index=1, num_processes=2)
        == (split_dataset_by_node(shuffled, 1, 2)["row"])
    )


class WorkerCollator(RowCollator):
    """A batch says which process collated it, in which epoch."""

    def __call__(self, rows: list[dict]) -> dict:
        return {"rows": super().__call__(rows), "epoch": self.epoch, "process": os.getpid()}


def test_loader_workers_persist_across_epochs_and_collate_each_with_its_epoch():
    dataset = numbered_rows(16)
    reference = PretrainingLoader(dataset, WorkerCollator(), 4)
    loader = PretrainingLoader(dataset, WorkerCollator(), 4, num_workers=2)
    processes = set()
    for epoch in range(3):
        expected = list(reference.epoch(epoch, skip=epoch % 2))
        batches = list(loader.epoch(epoch, skip=epoch % 2))
        assert [batch["rows"] for batch in batches] == [batch["rows"] for batch in expected] and batches
        assert {batch["epoch"] for batch in batches} == {epoch} and os.getpid() not in processes
        processes |= {batch["process"] for batch in batches}
    assert len(processes) == 2  # the same two workers served all three epochs


class CountingCollator(WorkerCollator):
    """Counts the batches it has collated; raises `failure` on a batch holding row 0."""

    def __init__(self, failure: BaseException | None = None):
        self.collated, self.failure = 0, failure

    def __call__(self, rows: list[dict]) -> dict:
        self.collated += 1
        if self.failure is not None and any(row["row"] == 0 for row in rows):
            raise self.failure
        return super().__call__(rows)


def read_ahead_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "read_ahead"]


def batch_rows(batches, count: int) -> list[tuple[int, int, list[int]]]:
    return [(epoch, index, batch["rows"]) for epoch, index, batch in itertools.islice(batches, count)]


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_run_on_across_epochs_and_reading_them_ahead_gives_the_same(workers):
    dataset, stream = numbered_rows(24), numbered_rows(24).to_iterable_dataset(num_shards=2)
    for data in (dataset, stream):
        straight = PretrainingLoader(data, WorkerCollator(), 4, num_workers=workers)
        # epoch 1 from its third batch, then epochs 2 and 3 whole: what each epoch gives, in order
        expected = [(epoch, index, batch["rows"]) for epoch, skip in [(1, 2), (2, 0), (3, 0)]
                    for index, batch in enumerate(straight.epoch(epoch, skip), start=skip)]  # fmt: skip
        assert batch_rows(straight.batches(1, skip=2), 16) == expected and len(expected) == 16
        ahead = PretrainingLoader(data, WorkerCollator(), 4, num_workers=workers, read_ahead=True)
        reader = ahead.batches(1, skip=2)
        # workers read ahead by themselves: the thread is for the main process's loading
        assert batch_rows(reader, 16) == expected and len(read_ahead_threads()) == (workers == 0)
        reader.close()  # batches that run on without end stop when closed, their thread too
        assert not read_ahead_threads()
        # batches left unread end when new ones are asked for (their thread first): they share the loader
        first_of_epoch_0 = batch_rows(straight.batches(0), 1)
        for loader in (straight, ahead):
            left = loader.batches(0)
            assert batch_rows(left, 1) == first_of_epoch_0
            assert len(read_ahead_threads()) == (loader is ahead and workers == 0)
            again = loader.batches(1, skip=2)
            assert not read_ahead_threads() and next(left, None) is None
            assert batch_rows(again, 16) == expected
            again.close()
            assert not read_ahead_threads()


def test_reading_ahead_loads_while_the_caller_waits_and_raises_its_errors_in_the_caller():
    collator = CountingCollator()
    batches = PretrainingLoader(numbered_rows(40), collator, 4, read_ahead=True).batches()
    next(batches)
    waited = 0.0
    while collator.collated < 4 and waited < 10:  # the one handed over, two waiting, one more being handed over
        time.sleep(0.01)
        waited += 0.01
    assert collator.collated == 4 and len(read_ahead_threads()) == 1
    batches.close()
    assert not read_ahead_threads() and collator.collated == 4
    # batches their caller lets go of without closing them stop reading as well: the loader does not keep them
    batches = PretrainingLoader(numbered_rows(40), collator, 4, read_ahead=True).batches()
    next(batches)
    del batches
    assert not read_ahead_threads()
    for failure in (OSError("row 0 is unreadable"), SystemExit("the loading thread was told to exit")):
        failing = PretrainingLoader(numbered_rows(40), CountingCollator(failure), 4, read_ahead=True)
        with pytest.raises(type(failure), match=str(failure)):
            list(itertools.islice(failing.batches(), 20))
        assert not read_ahead_threads()


def test_a_process_whose_part_of_a_stream_holds_no_batch_is_told_so():
    stream = numbered_rows(3).to_iterable_dataset(num_shards=1)
    with pytest.raises(ValueError, match="Process 1 got no batch of 4 in epoch 5"):
        next(PretrainingLoader(stream, RowCollator(), 4, process_index=1, num_processes=2).batches(5))


def test_the_device_path_reads_raw_pixels_as_arrow_batches_in_the_order_of_the_rows(tmp_path, monkeypatch):
    """`NativeRegionCollator` gets a map-style dataset of raw pixels one Arrow slice a batch (never a row), in the
    order, shards and resumed places of the rows, with or without loader workers."""
    count = 21
    pixels = [np.full((2, 3), row, "<u2").tobytes() for row in range(count)]
    features = datasets.Features({"row": datasets.Value("int64"), **RAW_PIXEL_FEATURES})
    columns = {"row": list(range(count)), "pixels": pixels, "height": [2] * count, "width": [3] * count}
    datasets.Dataset.from_dict(columns, features=features).to_parquet(str(tmp_path / "raw.parquet"))
    raw = datasets.load_dataset("parquet", data_files=str(tmp_path / "raw.parquet"), split="train")
    monkeypatch.setattr(device_views, "row_image", lambda row: pytest.fail("a row reached the collator"))
    collator = device_views.NativeRegionCollator(region_size=4, seed=RowCollator.seed)
    for workers in (0, 2):
        for process in (0, 1):
            expected = epoch_rows(raw, RowCollator(), 4, epoch=1, process_index=process, num_processes=2, skip=1)
            loader = PretrainingLoader(raw, collator, 4, process_index=process, num_processes=2, num_workers=workers)
            batches = list(loader.epoch(1, skip=1))
            rows = [int(row) for batch in batches for row in batch["native_pixels"][:, 0, 0]]
            assert len(expected) == 4 and rows == expected
            assert all(batch["native_extent"].tolist() == [[2, 3]] * 4 for batch in batches)


def test_a_stream_is_split_across_processes_and_skipping_resumes_it(caplog):
    collator = RowCollator()
    stream = numbered_rows(24).to_iterable_dataset(num_shards=4)
    shards = [
        epoch_rows(stream, collator, 4, epoch=0, process_index=i, num_processes=2, shuffle_buffer_size=8)
        for i in (0, 1)
    ]
    assert sorted(shards[0] + shards[1]) == list(range(24)) and len(shards[0]) == 12
    resumed = epoch_rows(stream, collator, 4, epoch=0, process_index=0, num_processes=2, skip=2, shuffle_buffer_size=8)
    assert resumed == shards[0][8:]
    # read by loader workers, which datasets gives the shards in turns (sharing a skip out among them)
    whole = list(PretrainingLoader(stream, WorkerCollator(), 4, num_workers=2).epoch(1))
    assert len({batch["process"] for batch in whole}) == 2 and len(whole) == 6
    for skip in (1, 2, 3):
        resumed = list(PretrainingLoader(stream, WorkerCollator(), 4, num_workers=2).epoch(1, skip))
        assert [batch["rows"] for batch in resumed] == [batch["rows"] for batch in whole[skip:]]
        assert f"the {skip} batches of epoch 1 trained on are read again" in caplog.text


def test_a_mixture_needs_named_folders():
    with pytest.raises(ValueError, match="name=folder"):
        pretraining_dataset("lesions-only", "/data/INbreast")


def test_views_are_seeded_mammogram_augmentations_of_the_processed_image():
    processor = MammographyImageProcessor(size={"height": 32, "width": 32}, do_breast_crop=False, do_flip=False,
                                          keep_aspect_ratio=False)  # fmt: skip
    rows = [{"image": np.random.default_rng(i).integers(0, 4096, (50, 40), dtype=np.uint16)} for i in range(3)]
    collator = MultiViewCollator(processor, seed=1, num_local=3, local_size=16)
    batch = collator(rows)
    assert batch["pixel_values"].shape == (3, 2, 1, 32, 32)
    assert batch["local_pixel_values"].shape == (3, 3, 1, 16, 16)
    # normalised as the processor normalises: [0, 1] intensities to [-1, 1]
    assert -1.0 <= batch["pixel_values"].min() and batch["pixel_values"].max() <= 1.0
    assert not torch.equal(batch["pixel_values"][:, 0], batch["pixel_values"][:, 1])  # two different views
    torch.testing.assert_close(MultiViewCollator(processor, seed=1, num_local=3, local_size=16)(rows), batch)
    collator.epoch = 1
    assert not torch.equal(collator(rows)["pixel_values"], batch["pixel_values"])
    two_views = MultiViewCollator(processor)(rows)
    assert set(two_views) == {"pixel_values"}
    with pytest.raises(ValueError, match="local_size"):
        MultiViewCollator(processor, num_local=2)


def test_each_objective_gives_its_views_inputs_and_exports():
    processor = MammographyImageProcessor(size={"height": 32, "width": 32}, do_breast_crop=False, do_flip=False,
                                          keep_aspect_ratio=False)  # fmt: skip
    rows = [{"image": np.random.default_rng(i).integers(0, 4096, (50, 40), dtype=np.uint16)} for i in range(4)]
    config = pretraining_config("miram", "vit-tiny", image_size=32, patch_size=8)
    masked = MaskedPatches().collator(processor, config, 0, [0.2, 1.0], 6)(rows)
    assert not torch.equal(masked["pixel_values"], WholeImages().collator(processor, config, 0, [0.2, 1.0], 6)(rows)
                            ["pixel_values"])  # fmt: skip
    inputs = MaskedPatches().inputs(dict(masked), config, 0, step=3, process=1, micro_batch=2)
    torch.testing.assert_close(inputs["noise"], mask_noise(masked["pixel_values"], 8, 0, 3, 1, 2))
    assert "noise" not in Views().inputs(dict(masked), config, 0, 3, 1, 2)
    dino = AutoConfig.for_model("dino", backbone_config=tiny_vit_mae_config(image_size=224, patch_size=16),
                                image_size=224)  # fmt: skip
    views = Views(multi_crop=True).collator(processor, dino, 0, [0.4, 1.0], 2)(rows)
    assert views["local_pixel_values"].shape[1:3] == (2, 1) and views["local_pixel_values"].shape[-1] == 96
    assert "local_pixel_values" not in Views().collator(processor, dino, 0, [0.4, 1.0], 2)(rows)
    assert MaskedPatches().exported_models(None) == {} and Views().augmentation([0.4, 1.0], 2).startswith("2 views")


def test_every_method_is_one_record_with_registered_models_a_card_and_citations():
    for name, method in METHODS.items():
        config = AutoConfig.for_model(method.model_type)  # registered with the Auto classes
        assert type(AutoModelForPreTraining.from_config(config)).__name__.endswith("ForPreTraining"), name
        assert method.citations and method.architecture and pretraining_method(name) is method
        assert type(method.learns_from) in (MaskedPatches, Views, WholeImages), name
    learn_from = {type(method.learns_from).__name__: [] for method in METHODS.values()}
    for name, method in METHODS.items():
        learn_from[type(method.learns_from).__name__].append(name)
    assert learn_from == {"MaskedPatches": ["miram", "mae"], "Views": ["byol", "dino", "mocov3", "simclr", "swav"],
                          "WholeImages": ["vae"]}  # fmt: skip
    assert sorted(name for name, method in METHODS.items() if getattr(method.learns_from, "multi_crop", False)) == [
        "dino", "swav"
    ]  # fmt: skip
    assert citations_for("mammo_vae") == list(METHODS["vae"].citations) and citations_for("vit") == []
    with pytest.raises(ValueError, match="Unknown model_type 'jepa'; choose one of"):
        pretraining_method("jepa")
