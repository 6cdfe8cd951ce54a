import pytest
import torch

from miram_hf.processing.augmentations import (
    Brightness,
    Contrast,
    Gamma,
    GaussianBlur,
    HighPass,
    HistogramEqualization,
    MultiCrop,
    RandomFlip,
    RandomResizedCrop,
    RandomRotation,
    Sharpen,
    TwoViews,
    gaussian_blur,
    mammogram_ssl_views,
)


def images(batch=4, size=32, max_value=1.0, seed=0):
    return torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(seed)) * max_value


ALL = [
    lambda m: RandomResizedCrop((24, 24), max_value=m),
    lambda m: RandomFlip(0.5, 0.5, max_value=m),
    lambda m: RandomRotation(25, max_value=m),
    lambda m: Brightness(0.2, max_value=m),
    lambda m: Contrast(max_value=m),
    lambda m: Gamma(max_value=m),
    lambda m: GaussianBlur(max_value=m),
    lambda m: Sharpen(max_value=m),
    lambda m: HighPass(max_value=m),
    lambda m: HistogramEqualization(max_value=m),
]


@pytest.mark.parametrize("make", ALL)
@pytest.mark.parametrize("max_value", [1.0, 4095.0, 65535.0])
def test_seeded_reproducible_and_in_range(make, max_value):
    transform = make(max_value)
    x = images(max_value=max_value)
    first = transform(x, torch.Generator().manual_seed(1))
    again = transform(x, torch.Generator().manual_seed(1))
    torch.testing.assert_close(first, again)
    assert first.min() >= 0 and first.max() <= max_value * (1 + 1e-6)
    assert first.dtype == x.dtype


@pytest.mark.parametrize("make", ALL[2:6] + ALL[6:9])
def test_parameters_are_drawn_per_image(make):
    x = images(batch=1).expand(4, -1, -1, -1).clone()  # four copies of one image
    out = make(1.0)(x, torch.Generator().manual_seed(0))
    assert not torch.allclose(out[0], out[1])


@pytest.mark.parametrize(
    "transform",
    [
        RandomResizedCrop((32, 32), scale=(1.0, 1.0), ratio=(1.0, 1.0)),
        RandomFlip(0.0, 0.0),
        RandomRotation(0.0),
        Brightness(0.0),
        Contrast((1.0, 1.0)),
        Gamma((1.0, 1.0)),
        Sharpen((0.0, 0.0)),
    ],
)
def test_neutral_parameters_are_the_identity(transform):
    x = images()
    torch.testing.assert_close(transform(x), x, atol=1e-5, rtol=1e-5)


def test_probability_zero_is_the_identity():
    x = images()
    torch.testing.assert_close(Gamma(p=0.0)(x), x)


def test_flip_and_crop_geometry():
    x = images()
    torch.testing.assert_close(RandomFlip(1.0, 0.0)(x), x.flip(-1))
    torch.testing.assert_close(RandomFlip(0.0, 1.0)(x), x.flip(-2))
    assert RandomResizedCrop((16, 24))(x).shape == (4, 1, 16, 24)


def test_gaussian_blur_matches_a_direct_2d_convolution():
    x = images(batch=2, size=20)
    sigma = torch.tensor([1.0, 2.0])
    out = gaussian_blur(x, sigma)
    for i, s in enumerate(sigma.tolist()):
        radius = 6  # ceil(3 x the largest sigma)
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel_1d = torch.exp(-(offsets**2) / (2 * s**2))
        kernel = torch.outer(kernel_1d, kernel_1d) / kernel_1d.sum() ** 2
        padded = torch.nn.functional.pad(x[i : i + 1], (radius,) * 4, mode="reflect")
        expected = torch.nn.functional.conv2d(padded, kernel[None, None])
        torch.testing.assert_close(out[i : i + 1], expected, atol=1e-5, rtol=1e-5)
    constant = torch.full((1, 1, 16, 16), 0.3)
    torch.testing.assert_close(gaussian_blur(constant, torch.tensor([1.5])), constant)


def test_histogram_equalisation_makes_intensities_uniform():
    x = images(batch=2, size=16) ** 3  # skewed
    out = HistogramEqualization()(x)
    expected = torch.arange(1, 257, dtype=torch.float32) / 256
    for image in out:
        torch.testing.assert_close(image.flatten().sort().values, expected)


def test_high_pass_removes_the_low_frequencies():
    ramp = torch.linspace(0, 1, 32).expand(1, 1, 32, 32).contiguous()
    out = HighPass(sigma=(3.0, 3.0))(ramp)
    centre = out[..., 8:24, 8:24]
    assert centre.std() < 0.1 * ramp[..., 8:24, 8:24].std()


def test_view_generators():
    x = images()
    views = TwoViews(mammogram_ssl_views((24, 24)))(x, torch.Generator().manual_seed(0))
    assert views[0].shape == views[1].shape == (4, 1, 24, 24)
    assert not torch.allclose(views[0], views[1])
    crops = MultiCrop(RandomResizedCrop((24, 24), (0.4, 1.0)), RandomResizedCrop((8, 8), (0.05, 0.4)))(x)
    assert [tuple(v.shape[-2:]) for v in crops] == [(24, 24)] * 2 + [(8, 8)] * 6


def test_rejects_integer_or_unbatched_input():
    with pytest.raises(ValueError, match="float tensor"):
        Gamma()(torch.zeros(1, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="float tensor"):
        Gamma()(torch.zeros(8, 8))
