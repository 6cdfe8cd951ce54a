import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.linear_model import LogisticRegression

from miram_hf.data.synthetic import MARGIN_NAMES, PATHOLOGY_NAMES, generate_phantom, power_law_texture
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
        phantom = generate_phantom(seed, height=256, width=192, max_lesions=1)
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
