import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from miram_hf.data import load_mammography
from miram_hf.data.synthetic import MARGIN_NAMES, PATHOLOGY_NAMES, generate_phantom, power_law_texture
from miram_hf.processing import MammographyImageProcessor
from miram_hf.processing.image_processing_mammography import resample
from miram_hf.processing.patches import Box, lesion_crop_box


def test_same_seed_same_phantom():
    first, again, other = generate_phantom(3), generate_phantom(3), generate_phantom(4)
    np.testing.assert_array_equal(first.image, again.image)
    assert [lesion.box for lesion in first.lesions] == [lesion.box for lesion in again.lesions]
    assert not np.array_equal(first.image, other.image)


@pytest.mark.parametrize("seed", range(6))
def test_sixteen_bit_breast_against_the_chest_wall_of_its_side(seed):
    phantom = generate_phantom(seed, height=256, width=192)
    assert phantom.image.dtype == np.uint16 and phantom.image.max() > 40000
    chest_wall = 0 if phantom.laterality == "L" else -1
    assert phantom.breast_mask[:, chest_wall].mean() > 0.5 and not phantom.breast_mask[:, -1 - chest_wall].any()
    breast, background = phantom.image[phantom.breast_mask], phantom.image[~phantom.breast_mask]
    assert np.median(breast) > 10 * np.median(background)
    for lesion in phantom.lesions:
        top, left, bottom, right = lesion.box
        assert 0 <= top < bottom <= 256 and 0 <= left < right <= 192
        assert lesion.mask.shape == (bottom - top, right - left) and lesion.mask.any()
        assert phantom.breast_mask[(top + bottom) // 2, (left + right) // 2]
        if lesion.fine_detail >= 0:  # a fine-detail finding: no pathology, no margins
            assert lesion.pathology == -1 and lesion.mass_margins == [] and lesion.fine_detail in (0, 1)
            continue
        is_mass = PATHOLOGY_NAMES[lesion.pathology].endswith("mass")
        assert len(lesion.mass_margins) == (1 if is_mass else 0)
        assert all(0 <= margin < len(MARGIN_NAMES) for margin in lesion.mass_margins)


def test_texture_has_a_power_law_spectrum():
    texture = power_law_texture((256, 256), beta=3.0, rng=np.random.default_rng(0))
    power = np.abs(np.fft.fft2(texture)) ** 2
    frequency = np.hypot(*np.meshgrid(np.fft.fftfreq(256), np.fft.fftfreq(256), indexing="ij"))
    bands = np.geomspace(4 / 256, 0.4, 12)
    centres = np.sqrt(bands[:-1] * bands[1:])
    means = [power[(frequency >= lo) & (frequency < hi)].mean() for lo, hi in zip(bands[:-1], bands[1:], strict=True)]
    slope = np.polyfit(np.log(centres), np.log(means), 1)[0]
    assert -3.3 < slope < -2.7


def test_malignant_calcifications_are_more_numerous_and_finer():
    counts = {2: [], 3: []}
    sizes = {2: [], 3: []}
    for seed in range(80):
        for lesion in generate_phantom(seed, height=256, width=192).lesions:
            if lesion.pathology in counts:
                labels, count = ndimage.label(lesion.mask)
                counts[lesion.pathology].append(count)
                sizes[lesion.pathology].append(lesion.mask.sum() / count)
    assert np.mean(counts[3]) > 2 * np.mean(counts[2])
    assert np.mean(sizes[3]) < np.mean(sizes[2])


def test_a_small_classifier_learns_the_pathology_of_lesion_crops():
    features, labels = [], []
    for seed in range(160):
        phantom = generate_phantom(seed, height=256, width=192, max_lesions=1, fine_detail_findings=0)
        for lesion in phantom.lesions:
            box = lesion_crop_box(phantom.image.shape, Box(*lesion.box), context=0.5, min_size=24)
            crop = torch.from_numpy(box.crop(phantom.image).astype(np.float32))
            pixels = resample(crop, 24, 24).numpy().ravel()
            features.append((pixels - pixels.mean()) / pixels.std())
            labels.append(lesion.pathology)
    features, labels = np.array(features), np.array(labels)
    assert np.bincount(labels, minlength=4).min() >= 20  # every class is there
    split = len(labels) * 3 // 4
    classifier = LogisticRegression(max_iter=2000, C=0.1).fit(features[:split], labels[:split])
    accuracy = classifier.score(features[split:], labels[split:])
    assert accuracy > 0.5, accuracy  # chance is 0.25


def speck_features(images: torch.Tensor) -> np.ndarray:
    """Translation-invariant features of the specks: the brightest values of the image less its 3 x 3 local mean
    (relative to the brightest) and the radial power spectrum of that residual."""
    pixels = images[:, 0]
    residual = pixels - torch.nn.functional.avg_pool2d(pixels[:, None], 3, 1, 1, count_include_pad=False)[:, 0]
    residual = residual[:, 2:-2, 2:-2]
    brightest = residual.flatten(1).sort(1, descending=True).values[:, :32]
    power = torch.fft.rfft2(residual).abs() ** 2
    radius = (torch.fft.fftfreq(residual.shape[-2])[:, None] ** 2 + torch.fft.rfftfreq(residual.shape[-1]) ** 2).sqrt()
    bands = (radius * 16).long().clamp(max=7)
    radial = torch.stack([power[:, bands == band].mean(1) for band in range(8)], 1).log()
    return torch.cat([brightest / brightest[:, :1].clamp(min=1e-6), brightest[:, :1], radial], 1).numpy()


def test_the_fine_detail_label_is_learnable_at_2x_and_much_less_at_1x(tmp_path):
    """MIRAM's question needs a finding whose deciding detail a 1x input loses and a 2x target keeps: dots vs lines
    of three native pixels, through the real pipeline (crops of about 100 px to a 32 px input and its 64 px
    target)."""
    splits = load_mammography("synthetic", config_name="lesions", num_images=200, cache_dir=str(tmp_path))
    rows = [row for split in splits.values() for row in split if row["label_fine_detail"] >= 0]
    labels = np.array([row["label_fine_detail"] for row in rows])
    assert len(rows) == 200 and 0.35 < labels.mean() < 0.65  # one finding a phantom, dots and lines alike
    processor = MammographyImageProcessor(size={"height": 32, "width": 32}, do_breast_crop=False, do_flip=False,
                                          keep_aspect_ratio=False, num_channels=1, scales=[1, 2])  # fmt: skip
    inputs = processor([np.array(row["image"]) for row in rows], return_tensors="pt")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    accuracy = {
        name: cross_val_score(probe, speck_features(images), labels, cv=5).mean()
        for name, images in (("1x", inputs["pixel_values"]), ("2x", inputs["target_pixel_values"][1]))
    }
    assert accuracy["2x"] > 0.8 and accuracy["1x"] < 0.7 and accuracy["2x"] - accuracy["1x"] > 0.2, accuracy
