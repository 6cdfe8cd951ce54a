"""Mammogram augmentations as batched torch ops, on any device.

Every transform takes a float tensor (batch, channels, height, width) whose intensities lie in [0, `max_value`]
(1 after the processor's scaling; 65535 or 4095 for raw 16- or 12-bit data) and draws one set of parameters per
image, from `generator` when one is given, so that a seeded generator reproduces the same views. The tiled-patch
paper (Table 1) found crop + resize essential and gamma and contrast shifts the most useful.
"""

import math

import torch
from torch.nn import functional


def _uniform(batch: int, low: float, high: float, generator: torch.Generator | None, device) -> torch.Tensor:
    return (torch.rand(batch, generator=generator) * (high - low) + low).to(device)


class Augmentation:
    """Applies `transform` to each image with probability `p`. `moves_pixels`: a geometric transform, which a mask of
    the image must follow (`Compose.with_masks`)."""

    moves_pixels = False

    def __init__(self, p: float = 1.0, max_value: float = 1.0):
        self.p = p
        self.max_value = max_value

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if images.ndim != 4 or not images.is_floating_point():
            raise ValueError(
                f"Expected a float tensor (batch, channels, height, width), got {images.dtype} {tuple(images.shape)}."
            )
        applied = self.transform(images, generator)
        if self.p >= 1.0:
            return applied
        chosen = _uniform(images.shape[0], 0, 1, generator, images.device) < self.p
        return torch.where(chosen[:, None, None, None], applied, images)

    def transform(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError


def _sample_grid(images: torch.Tensor, theta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    grid = functional.affine_grid(theta, (images.shape[0], images.shape[1], *size), align_corners=False)
    return functional.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_crop_regions(
    batch: int, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), generator: torch.Generator | None = None, device=None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random regions of `scale` (fraction of the area) and `ratio` (width / height), as (width, height, centre_x,
    centre_y) per image: sides as fractions of the image's, centres in [-1, 1] image coordinates (`affine_grid`'s).
    The draws depend on `batch` only, so one seed gives the same regions of an image at any resolution."""
    area = _uniform(batch, *scale, generator, device)
    log_ratio = _uniform(batch, math.log(ratio[0]), math.log(ratio[1]), generator, device)
    width = (area * log_ratio.exp()).sqrt().clamp(max=1.0)
    height = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
    centre_x = (1 - width) * (2 * _uniform(batch, 0, 1, generator, device) - 1)  # in [-1 + w, 1 - w]
    centre_y = (1 - height) * (2 * _uniform(batch, 0, 1, generator, device) - 1)
    return width, height, centre_x, centre_y


class RandomResizedCrop(Augmentation):
    """A random region of `scale` (fraction of the area) and `ratio` (width / height) resized to `size`."""

    moves_pixels = True

    def __init__(self, size: tuple[int, int], scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), max_value: float = 1.0):
        super().__init__(1.0, max_value)  # it sets the output size: always applied
        self.size, self.scale, self.ratio = tuple(size), scale, ratio

    def transform(self, images, generator):
        batch, device = images.shape[0], images.device
        width, height, centre_x, centre_y = random_crop_regions(batch, self.scale, self.ratio, generator, device)
        theta = torch.zeros(batch, 2, 3, device=device, dtype=images.dtype)
        theta[:, 0, 0], theta[:, 0, 2] = width, centre_x
        theta[:, 1, 1], theta[:, 1, 2] = height, centre_y
        return _sample_grid(images, theta, self.size)


class RandomFlip(Augmentation):
    """Horizontal flip with probability `horizontal`, vertical with probability `vertical`."""

    moves_pixels = True

    def __init__(self, horizontal: float = 0.5, vertical: float = 0.0, max_value: float = 1.0):
        super().__init__(1.0, max_value)
        self.horizontal, self.vertical = horizontal, vertical

    def transform(self, images, generator):
        batch = images.shape[0]
        flip_x = _uniform(batch, 0, 1, generator, images.device) < self.horizontal
        flip_y = _uniform(batch, 0, 1, generator, images.device) < self.vertical
        images = torch.where(flip_x[:, None, None, None], images.flip(-1), images)
        return torch.where(flip_y[:, None, None, None], images.flip(-2), images)


class RandomRotation(Augmentation):
    """Rotation by an angle in [-degrees, degrees]; corners filled with background (0)."""

    moves_pixels = True

    def __init__(self, degrees: float = 10.0, p: float = 1.0, max_value: float = 1.0):
        super().__init__(p, max_value)
        self.degrees = degrees

    def transform(self, images, generator):
        angle = _uniform(images.shape[0], -self.degrees, self.degrees, generator, images.device).deg2rad()
        theta = torch.zeros(images.shape[0], 2, 3, device=images.device, dtype=images.dtype)
        theta[:, 0, 0], theta[:, 0, 1] = angle.cos(), -angle.sin()
        theta[:, 1, 0], theta[:, 1, 1] = angle.sin(), angle.cos()
        return _sample_grid(images, theta, tuple(images.shape[-2:]))


class Brightness(Augmentation):
    """Adds a shift in [-delta, delta] x max_value."""

    def __init__(self, delta: float = 0.1, p: float = 1.0, max_value: float = 1.0):
        super().__init__(p, max_value)
        self.delta = delta

    def transform(self, images, generator):
        shift = _uniform(images.shape[0], -self.delta, self.delta, generator, images.device) * self.max_value
        return (images + shift[:, None, None, None]).clamp(0, self.max_value)


class Contrast(Augmentation):
    """Scales the deviations from each image's mean by a factor in `factor`."""

    def __init__(self, factor=(0.7, 1.3), p: float = 1.0, max_value: float = 1.0):
        super().__init__(p, max_value)
        self.factor = factor

    def transform(self, images, generator):
        factor = _uniform(images.shape[0], *self.factor, generator, images.device)[:, None, None, None]
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        return ((images - mean) * factor + mean).clamp(0, self.max_value)


class Gamma(Augmentation):
    """max_value * (x / max_value) ** gamma, gamma log-uniform in `gamma`."""

    def __init__(self, gamma=(0.7, 1.5), p: float = 1.0, max_value: float = 1.0):
        super().__init__(p, max_value)
        self.gamma = gamma

    def transform(self, images, generator):
        log_gamma = _uniform(
            images.shape[0], math.log(self.gamma[0]), math.log(self.gamma[1]), generator, images.device
        )
        unit = (images / self.max_value).clamp(0, 1)
        return unit.pow(log_gamma.exp()[:, None, None, None]) * self.max_value


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per image (reflect padding)."""
    batch, channels, height, width = images.shape
    radius = max(1, math.ceil(3 * float(sigma.max())))
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernels = torch.exp(-(offsets[None] ** 2) / (2 * sigma[:, None].to(images.dtype) ** 2))
    kernels = (kernels / kernels.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)  # (batch * channels, k)
    flat = functional.pad(images.reshape(1, batch * channels, height, width), (radius,) * 4, mode="reflect")
    flat = functional.conv2d(flat, kernels[:, None, None, :], groups=batch * channels)
    flat = functional.conv2d(flat, kernels[:, None, :, None], groups=batch * channels)
    return flat.reshape(batch, channels, height, width)


class GaussianBlur(Augmentation):
    def __init__(self, sigma=(0.1, 2.0), p: float = 1.0, max_value: float = 1.0):
        super().__init__(p, max_value)
        self.sigma = sigma

    def transform(self, images, generator):
        return gaussian_blur(images, _uniform(images.shape[0], *self.sigma, generator, images.device))


class Sharpen(Augmentation):
    """Unsharp masking: x + amount * (x - blur(x))."""

    def __init__(self, amount=(0.5, 2.0), sigma: float = 1.0, p: float = 1.0, max_value: float = 1.0):
        super().__init__(p, max_value)
        self.amount, self.sigma = amount, sigma

    def transform(self, images, generator):
        amount = _uniform(images.shape[0], *self.amount, generator, images.device)[:, None, None, None]
        blurred = gaussian_blur(images, torch.full((images.shape[0],), self.sigma, device=images.device))
        return (images + amount * (images - blurred)).clamp(0, self.max_value)


class HighPass(Augmentation):
    """Keeps the detail above a Gaussian of sigma in `sigma`, around each image's mean intensity."""

    def __init__(self, sigma=(2.0, 8.0), p: float = 1.0, max_value: float = 1.0):
        super().__init__(p, max_value)
        self.sigma = sigma

    def transform(self, images, generator):
        blurred = gaussian_blur(images, _uniform(images.shape[0], *self.sigma, generator, images.device))
        return (images - blurred + images.mean(dim=(1, 2, 3), keepdim=True)).clamp(0, self.max_value)


class HistogramEqualization(Augmentation):
    """Maps each image through its own cumulative histogram, so that its intensities become uniform."""

    def transform(self, images, generator):
        flat = images.reshape(images.shape[0], -1)
        ordered = flat.sort(dim=1).values
        ranks = torch.searchsorted(ordered.contiguous(), flat.contiguous(), right=True)
        return (ranks.to(images.dtype) / flat.shape[1] * self.max_value).reshape(images.shape)


class Compose:
    def __init__(self, transforms: list):
        self.transforms = list(transforms)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for transform in self.transforms:
            images = transform(images, generator)
        return images

    def with_masks(
        self, images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The augmented images, and their boolean (batch, height, width) masks moved as the images are moved: each
        geometric transform sees the mask as one more channel; the others leave it alone."""
        masks = masks[:, None].to(images.dtype)
        for transform in self.transforms:
            if getattr(transform, "moves_pixels", False):
                moved = transform(torch.cat([images, masks], dim=1), generator)
                images, masks = moved[:, :-1], moved[:, -1:]
            else:
                images = transform(images, generator)
        return images, masks[:, 0] > 0.5


class TwoViews:
    """Two independent augmentations of each image, for BYOL, SimCLR and MoCo v3."""

    def __init__(self, transform, second_transform=None):
        self.transform, self.second_transform = transform, second_transform or transform

    def __call__(self, images, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(images, generator), self.second_transform(images, generator)


class MultiCrop:
    """`num_global` large and `num_local` small views of each image, for DINO and SwAV."""

    def __init__(self, global_transform, local_transform, num_global: int = 2, num_local: int = 6):
        self.global_transform, self.local_transform = global_transform, local_transform
        self.num_global, self.num_local = num_global, num_local

    def __call__(self, images, generator=None) -> list[torch.Tensor]:
        views = [self.global_transform(images, generator) for _ in range(self.num_global)]
        return views + [self.local_transform(images, generator) for _ in range(self.num_local)]


def mammogram_ssl_views(size: tuple[int, int], max_value: float = 1.0, scale=(0.2, 1.0)) -> Compose:
    """Crop + gamma + contrast, the tiled-patch paper's choice for SSL views, plus flips."""
    return Compose(
        [
            RandomResizedCrop(size, scale=scale, max_value=max_value),
            RandomFlip(horizontal=0.5, vertical=0.5, max_value=max_value),
            Gamma(max_value=max_value, p=0.8),
            Contrast(max_value=max_value, p=0.8),
        ]
    )


__all__ = [
    "Augmentation",
    "Brightness",
    "Compose",
    "Contrast",
    "Gamma",
    "GaussianBlur",
    "HighPass",
    "HistogramEqualization",
    "MultiCrop",
    "RandomFlip",
    "RandomResizedCrop",
    "RandomRotation",
    "Sharpen",
    "TwoViews",
    "gaussian_blur",
    "mammogram_ssl_views",
    "random_crop_regions",
]
