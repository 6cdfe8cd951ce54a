import datasets
import numpy as np
import pyarrow as pa
import pytest
import torch

from miram_hf import MammographyImageProcessor
from miram_hf.data.raw_pixels import row_image, table_images, to_raw_pixels
from miram_hf.data.synthetic import phantom_crops
from miram_hf.processing.image_processing_mammography import to_array
from miram_hf.training.device_views import NativeRegionCollator, device_views, view_draws
from miram_hf.training.views import native_crop


def phantom_crops_at(sizes: list[tuple[int, int]], bits: int = 12) -> list[np.ndarray]:
    """Phantom tissue crops at `bits` bits."""
    return [crop >> (16 - bits) for crop in phantom_crops(sizes)]


def test_raw_pixels_keep_every_value_and_the_other_columns():
    images = [*phantom_crops_at([(40, 30)], bits=16), np.arange(12, dtype=np.uint8).reshape(3, 4)]
    built = datasets.Dataset.from_dict(
        {"image": images, "label": [0, 1]}, features=datasets.Features({"image": datasets.Image(),
                                                                         "label": datasets.Value("int64")})
    )  # fmt: skip
    raw = to_raw_pixels(built)
    assert raw.column_names == ["label", "pixels", "height", "width"] and raw["label"] == [0, 1]
    for row, image in zip(raw, images, strict=True):
        decoded = row_image(row)
        assert decoded.dtype == np.uint16 and np.array_equal(decoded, image)
        assert to_array(decoded)[1] == to_array(image)[1]  # the same bit depth is inferred
    floats = datasets.Dataset.from_dict({"image": [np.full((2, 2), 0.5, np.float32)]},
                                        features=datasets.Features({"image": datasets.Image()}))  # fmt: skip
    with pytest.raises(ValueError, match="Row 0: a float32 image"):
        to_raw_pixels(floats)


def test_an_arrow_batch_of_raw_pixels_collates_as_its_rows_do(tmp_path):
    """The loader's fast path reads a batch's pixels as views of the memory-mapped Arrow table; its batch is the one
    the rows give, bit depths (12 and 8 bits here) and regions cut from large images included."""
    images = [*phantom_crops_at([(40, 30), (24, 100)]), np.arange(12, dtype=np.uint8).reshape(3, 4) * 20]
    built = datasets.Dataset.from_dict({"image": images}, features=datasets.Features({"image": datasets.Image()}))
    to_raw_pixels(built).to_parquet(str(tmp_path / "raw.parquet"))
    raw = datasets.load_dataset("parquet", data_files=str(tmp_path / "raw.parquet"), split="train")
    shuffled = raw.shuffle(seed=0)  # the batch is gathered through an index mapping, one slice a row
    collator = NativeRegionCollator(region_size=32, seed=1)
    from_arrow = collator(shuffled.with_format("arrow")[[0, 1, 2]])
    from_rows = collator([shuffled[index] for index in range(3)])
    assert from_arrow.keys() == from_rows.keys()
    for key, value in from_arrow.items():
        assert torch.equal(value, from_rows[key]), key
    assert sorted(from_arrow["top_values"].tolist()) == [255, 4095, 4095]


def test_raw_pixels_that_do_not_fill_their_image_are_named_by_row():
    table = pa.table({"pixels": pa.array([bytes(range(8)), bytes(6), None], pa.binary()), "height": [2, 2, 1],
                      "width": [2, 2, 1]})  # fmt: skip
    chunked = pa.concat_tables([table.slice(0, 1), table.slice(0, 1)])  # two chunks, the second at an offset
    assert [image.tolist() for image in table_images(chunked)] == [[[256, 770], [1284, 1798]]] * 2
    large = chunked.cast(pa.schema([("pixels", pa.large_binary()), ("height", pa.int64()), ("width", pa.int64())]))
    assert [image.tolist() for image in table_images(large)] == [[[256, 770], [1284, 1798]]] * 2  # 64-bit offsets
    with pytest.raises(ValueError, match="Row 1 of the batch: 6 bytes of pixels for a 2 x 2 16-bit image"):
        table_images(table.slice(0, 2))
    with pytest.raises(ValueError, match="Row 0 of the batch: no pixels"):
        table_images(table.slice(2))


def test_native_regions_hold_each_image_top_left_and_cut_large_ones_per_epoch():
    small, wide = phantom_crops_at([(20, 30), (24, 100)])
    collator = NativeRegionCollator(region_size=32, seed=3)
    batch = collator([{"image": small}, {"image": wide}])
    native = batch["native_pixels"].numpy()
    assert native.shape == (2, 32, 32) and native.dtype == np.uint16
    assert batch["native_extent"].tolist() == [[20, 30], [24, 32]] and batch["top_values"].tolist() == [4095] * 2
    assert np.array_equal(native[0, :20, :30], small) and not native[0, 20:].any() and not native[0, :, 30:].any()
    # the wide image's region: 32 of its columns, the same within an epoch, at other places in other epochs
    assert np.array_equal(collator([{"image": wide}])["native_pixels"][0].numpy(), native[1])
    lefts = set()
    for epoch in range(6):
        collator.epoch = epoch
        region = collator([{"image": wide}])["native_pixels"][0, :24].numpy()
        lefts.add(next(left for left in range(69) if np.array_equal(wide[:, left : left + 32], region)))
    assert len(lefts) > 1


def test_device_views_are_the_cpu_views_of_the_same_draws():
    """The device path resamples the continuous crop in one batched grid sample; the CPU path cuts it on whole pixels
    and resizes it with torch's antialiased bilinear. On phantom tissue they agree to about 1% of the range."""
    crops = phantom_crops_at([(200, 160), (180, 200), (120, 90), (256, 256)])
    processor = MammographyImageProcessor(size={"height": 32, "width": 32}, do_breast_crop=False, do_flip=False,
                                          keep_aspect_ratio=False, num_channels=1, scales=[1, 2])  # fmt: skip
    batch = NativeRegionCollator(region_size=256)([{"image": crop} for crop in crops])
    views = device_views(batch, processor, seed=0, epoch=2, batch_index=5)
    assert views["pixel_values"].shape == (4, 1, 32, 32)
    assert [tuple(target.shape) for target in views["target_pixel_values"]] == [(4, 1, 32, 32), (4, 1, 64, 64)]
    assert torch.equal(views["target_pixel_values"][0], views["pixel_values"])
    width, height, centre_x, centre_y, flip = view_draws(4, seed=0, epoch=2, batch_index=5)
    cpu_views = [native_crop(crop, *(float(v[i]) for v in (width, height, centre_x, centre_y)), bool(flip[i]))
                 for i, crop in enumerate(crops)]  # fmt: skip
    expected = processor(cpu_views)
    for device, cpu in zip(views["target_pixel_values"], expected["target_pixel_values"], strict=True):
        difference = (device - cpu).abs() / 2  # normalised by std 0.5: the [0, 1] range spans 2
        assert difference.mean() < 0.01 and difference.max() < 0.1, (difference.mean(), difference.max())
    assert flip.any() and not flip.all()  # both directions were compared


def test_device_views_are_drawn_from_seed_epoch_process_and_batch():
    crops = phantom_crops_at([(64, 64)] * 3)
    processor = MammographyImageProcessor(size={"height": 16, "width": 16}, do_breast_crop=False, do_flip=False,
                                          keep_aspect_ratio=False, num_channels=3)  # fmt: skip
    batch = NativeRegionCollator(region_size=64)([{"image": crop} for crop in crops])

    def views(**place) -> torch.Tensor:
        return device_views(batch, processor, **{"seed": 0, "epoch": 0, "batch_index": 0, **place})["pixel_values"]

    first = views()
    assert first.shape == (3, 3, 16, 16) and "target_pixel_values" not in device_views(batch, processor, 0, 0, 0)
    assert torch.equal(views(), first)
    for place in ({"seed": 1}, {"epoch": 1}, {"batch_index": 1}, {"process_index": 1}):
        assert not torch.equal(views(**place), first), place
    assert -1 <= first.min() and first.max() <= 1  # normalised [0, 1] intensities


def test_scales_must_divide_the_largest():
    processor = MammographyImageProcessor(size={"height": 8, "width": 8}, scales=[1, 2, 3])
    batch = NativeRegionCollator(region_size=16)([{"image": np.ones((16, 16), np.uint16)}])
    with pytest.raises(ValueError, match="must divide the largest"):
        device_views(batch, processor, 0, 0, 0)


def test_16_bit_values_above_the_signed_range_keep_their_intensity():
    processor = MammographyImageProcessor(size={"height": 8, "width": 8}, do_normalize=False)
    image = np.full((16, 16), 40000, np.uint16)
    image[0, 0] = 65535  # 16 bits: the scale is 65535
    views = device_views(NativeRegionCollator(region_size=16)([{"image": image}]), processor, 0, 0, 0)
    assert torch.allclose(views["pixel_values"].median(), torch.tensor(40000 / 65535))
