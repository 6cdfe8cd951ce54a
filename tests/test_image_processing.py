import numpy as np
import pytest
import torch
from dicom_factory import breast_image, cbis_ddsm_dicom
from PIL import Image
from transformers import AutoImageProcessor

from miram_hf import MammographyImageProcessor, MiramConfig
from miram_hf.data.synthetic import generate_phantom
from miram_hf.processing import image_processing_mammography, read_mammogram
from miram_hf.processing.image_processing_mammography import (
    BOX_MEAN_CHUNK_BYTES,
    box_mean,
    reduction_factor,
    resample,
    to_array,
)

PLAIN = dict(do_breast_crop=False, do_flip=False, do_normalize=False)


def test_every_input_type_single_or_batched(tmp_path):
    pixels = breast_image(rows=96, columns=64)
    path = cbis_ddsm_dicom(tmp_path / "1-1.dcm", pixels)
    inputs = [
        path,
        str(path),
        read_mammogram(path),
        pixels,
        torch.from_numpy(pixels.astype(np.int32)),
        Image.fromarray(pixels),
    ]
    processor = MammographyImageProcessor(size={"height": 48, "width": 32})
    batch = processor(inputs, return_tensors="pt")["pixel_values"]
    assert batch.shape == (6, 1, 48, 32) and batch.dtype == torch.float32
    for row in batch[1:]:
        torch.testing.assert_close(row, batch[0])
    single = processor(path, return_tensors="np")["pixel_values"]
    assert isinstance(single, np.ndarray) and single.shape == (1, 1, 48, 32)


def test_sixteen_bit_precision_end_to_end():
    ramp = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16 + 3  # 16-bit values one LSB apart
    processor = MammographyImageProcessor(size={"height": 64, "width": 64}, **PLAIN)
    out = processor(ramp)["pixel_values"][0, 0].double() * 65535
    np.testing.assert_allclose(out.numpy(), ramp, atol=0.01)
    halved = MammographyImageProcessor(size={"height": 32, "width": 32}, **PLAIN)(ramp)["pixel_values"][0, 0]
    assert len(torch.unique(halved)) == 32 * 32  # no 8-bit quantisation on the way


def test_intensities_scale_by_the_real_bit_depth():
    twelve_bit = np.array([[0, 4095], [2048, 1024]], dtype=np.uint16)
    assert to_array(twelve_bit)[1] == 4095  # 12 bits: the smallest depth that holds 4095
    eight_bit = np.array([[0, 255]], dtype=np.uint8)
    assert to_array(eight_bit)[1] == 255
    out = MammographyImageProcessor(size={"height": 1, "width": 2}, **PLAIN)(eight_bit)["pixel_values"]
    torch.testing.assert_close(out, torch.tensor([[[[0.0, 1.0]]]]))


def test_flip_puts_the_chest_wall_on_the_left():
    right_breast = breast_image(rows=64, columns=64, side="R")
    processor = MammographyImageProcessor(size={"height": 64, "width": 64}, do_breast_crop=False, do_normalize=False)
    out = processor(right_breast)["pixel_values"][0, 0]
    assert out[:, :32].sum() > out[:, 32:].sum()
    array, top_value = to_array(right_breast)
    torch.testing.assert_close(out, torch.from_numpy(array / top_value).float().flip(-1))


def test_keep_aspect_ratio_pads_with_background_away_from_the_chest_wall():
    tall = np.full((200, 100), 40000, dtype=np.uint16)
    processor = MammographyImageProcessor(size={"height": 100, "width": 100}, **PLAIN)
    out = processor(tall)["pixel_values"][0, 0]
    assert torch.all(out[:, 50:] == 0) and torch.allclose(out[:, :50], torch.tensor(40000 / 65535))
    stretched = MammographyImageProcessor(size={"height": 100, "width": 100}, keep_aspect_ratio=False, **PLAIN)
    assert torch.allclose(stretched(tall)["pixel_values"], torch.tensor(40000 / 65535))


def test_multi_scale_targets_come_from_the_native_resolution():
    checkerboard = ((np.indices((128, 128)).sum(0) % 2) * 60000 + 1000).astype(np.uint16)  # detail at 1 pixel
    processor = MammographyImageProcessor(size={"height": 64, "width": 64}, scales=[1, 2], **PLAIN)
    inputs = processor(checkerboard)
    base, (same, fine) = inputs["pixel_values"], inputs["target_pixel_values"]
    torch.testing.assert_close(same, base)
    assert fine.shape == (1, 1, 128, 128)
    np.testing.assert_allclose(fine[0, 0].numpy() * 65535, checkerboard, atol=0.05)  # the native detail
    upsampled = torch.nn.functional.interpolate(base, scale_factor=2, mode="bilinear")
    assert (fine - upsampled).abs().mean() > 0.3  # an upsampled copy would hold none of it


@pytest.mark.parametrize("chunk_bytes", [BOX_MEAN_CHUNK_BYTES, 2 * 4 * 7, 1])  # one chunk; 2 rows (4 chunks); 1 row
def test_box_mean_averages_blocks_and_the_shorter_blocks_at_the_edges(monkeypatch, chunk_bytes):
    monkeypatch.setattr(image_processing_mammography, "BOX_MEAN_CHUNK_BYTES", chunk_bytes)
    array = np.random.default_rng(0).integers(0, 65535, size=(23, 7), dtype=np.uint16)
    expected = [[array[r : r + 3, c : c + 3].mean() for c in range(0, 7, 3)] for r in range(0, 23, 3)]
    np.testing.assert_allclose(box_mean(array, 3).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(box_mean(array.astype(np.float32), 3).numpy(), expected, rtol=1e-6)
    torch.testing.assert_close(box_mean(array, 1), torch.from_numpy(array.astype(np.float32)))


def test_large_reductions_start_with_block_means_and_match_the_direct_resize():
    image = generate_phantom(0, height=2048, width=1536).image
    assert reduction_factor(image.shape, [(64, 48)]) == 10  # leaves the antialiased resize a reduction of 3.2
    assert reduction_factor(image.shape, [(64, 48), (640, 480)]) == 1  # the largest output decides
    processor = MammographyImageProcessor(size={"height": 64, "width": 48}, **PLAIN)
    direct = resample(torch.from_numpy(image.astype(np.float32)), 64, 48) / 65535
    difference = (processor(image)["pixel_values"][0, 0] - direct).abs()
    assert difference.mean() < 2e-3 and difference.max() < 0.05, (difference.mean(), difference.max())


def test_normalisation_and_three_channels():
    processor = MammographyImageProcessor(
        size={"height": 8, "width": 8},
        image_mean=[0.25] * 3,
        image_std=[0.5] * 3,
        num_channels=3,
        **PLAIN | {"do_normalize": True},
    )
    out = processor(np.full((8, 8), 255, dtype=np.uint8))["pixel_values"]
    assert out.shape == (1, 3, 8, 8)
    torch.testing.assert_close(out, torch.full((1, 3, 8, 8), 1.5))


@pytest.mark.parametrize(
    "array, message",
    [
        (np.full((8, 8), np.nan, dtype=np.float32), "NaN or infinite"),
        (np.zeros((0, 8), dtype=np.uint16), "Empty image"),
        (np.zeros(8, dtype=np.uint16), "must be \\(H, W\\)"),
        (np.zeros((8, 8, 5), dtype=np.uint8), "more than 4 channels"),
        (np.array([[-5, 3]], dtype=np.int32), "0..65535"),
    ],
)
def test_bad_arrays_raise_clear_errors(array, message):
    with pytest.raises(ValueError, match=message):
        MammographyImageProcessor()(array)


def test_save_and_load_through_auto_image_processor(tmp_path):
    processor = MammographyImageProcessor(size={"height": 112, "width": 96}, scales=[1, 2], do_flip=False)
    processor.save_pretrained(tmp_path)
    MiramConfig(image_size=[112, 96], patch_size=16).save_pretrained(tmp_path)
    assert {"image_processing_mammography.py", "reading.py"} <= {p.name for p in tmp_path.iterdir()}
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(loaded) is MammographyImageProcessor
    assert (loaded.size, loaded.scales, loaded.do_flip) == ({"height": 112, "width": 96}, [1, 2], False)


def test_a_four_dimensional_batch_is_split_into_images():
    batch = torch.randint(0, 4096, (3, 1, 40, 30), dtype=torch.int32)
    out = MammographyImageProcessor(size={"height": 20, "width": 16}, **PLAIN)(batch)["pixel_values"]
    assert out.shape == (3, 1, 20, 16)
    torch.testing.assert_close(
        out[1], MammographyImageProcessor(size={"height": 20, "width": 16}, **PLAIN)(batch[1])["pixel_values"][0]
    )


def test_processor_output_feeds_miram_pretraining(tmp_path):
    from tiny_configs import tiny_miram_config

    from miram_hf import MiramForPreTraining

    path = cbis_ddsm_dicom(tmp_path / "1-1.dcm", breast_image(rows=300, columns=200))
    processor = MammographyImageProcessor(size={"height": 32, "width": 32}, scales=[1, 2], num_channels=3)
    inputs = processor([path, path], return_tensors="pt")
    model = MiramForPreTraining(tiny_miram_config())
    outputs = model(**inputs)
    assert torch.isfinite(outputs.loss) and outputs.logits[1].shape == (2, 64, 192)


def test_for_processing_images_become_attenuation(tmp_path):
    from dicom_factory import write_dicom

    raw = np.full((64, 64), 15000, dtype=np.uint16)  # detector signal: high behind air
    raw[16:48, :40] = 3000  # low behind the breast
    path = write_dicom(tmp_path / "raw.dcm", raw, bits_stored=14, PresentationIntentType="FOR PROCESSING")
    out = MammographyImageProcessor(size={"height": 64, "width": 64}, do_normalize=False, do_flip=False)(path)
    pixels = out["pixel_values"][0, 0]
    assert pixels[32, 10] > pixels[5, 60]  # the breast is brighter than the background after the log
    expected = 1 - np.log1p(3000) / np.log1p(2**14 - 1)
    assert abs(pixels[32, 10].item() - expected) < 1e-3


def test_any_setting_can_be_changed_for_one_call():
    image = breast_image(rows=96, columns=64)
    processor = MammographyImageProcessor(size={"height": 48, "width": 32})
    once = processor(image, size={"height": 24, "width": 16}, do_normalize=False, do_flip=False)["pixel_values"]
    built = MammographyImageProcessor(size={"height": 24, "width": 16}, do_normalize=False, do_flip=False)
    torch.testing.assert_close(once, built(image)["pixel_values"])
    assert processor.size == {"height": 48, "width": 32} and processor.do_normalize  # unchanged for later calls
    torch.testing.assert_close(processor(image, device="cpu")["pixel_values"], processor(image)["pixel_values"])
    with pytest.raises(TypeError, match=r"Unknown processor settings \['do_sharpen'\]"):
        processor(image, do_sharpen=True)
    with pytest.raises(ValueError, match="num_channels must be 1 or 3"):
        processor(image, num_channels=2)
