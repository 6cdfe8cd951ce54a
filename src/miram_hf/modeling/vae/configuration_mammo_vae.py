"""Configuration of the VAE-based self-supervised model for small mammogram sets."""

from transformers import PretrainedConfig


class MammoVaeConfig(PretrainedConfig):
    r"""
    Configuration of the VAE-SSL model (a convolutional VAE pretext network and a 228-parameter classifier over its
    latent space). Defaults are the paper's: 640 x 800 single-channel mammograms, three 3 x 3 conv + 2 x 2 max-pool
    layers, a 640-d latent with mean and log-variance, a transposed-conv decoder, L1 1e-5 and L2 1e-4 on the dense
    layers; the classifier is Conv1D(16 filters, kernel 3) -> global average pool -> dense over (mu, sigma, z).

    Args:
        image_size (`list[int]`, defaults to `[640, 800]`): (height, width); both must divide by 8.
        num_channels (`int`, defaults to 1): image channels.
        encoder_channels (`list[int]`, defaults to `[32, 16, 8]`): filters of the three conv layers (the decoder
            mirrors them).
        latent_size (`int`, defaults to 640): size of mu, sigma and z.
        l1_regularization (`float`, defaults to 1e-5): L1 weight on the dense layers' weights.
        l2_regularization (`float`, defaults to 1e-4): L2 weight on the dense layers' weights.
        classifier_filters (`int`, defaults to 16): Conv1D filters of the classifier.
        classifier_kernel_size (`int`, defaults to 3): Conv1D kernel of the classifier.

    Example:

    ```python
    >>> from miram_hf import MammoVaeConfig, MammoVaeForImageClassification
    >>> model = MammoVaeForImageClassification(MammoVaeConfig(num_labels=4))
    >>> sum(p.numel() for p in model.parameters() if p.requires_grad)
    228
    ```
    """

    model_type = "mammo_vae"

    def __init__(
        self,
        image_size: list[int] | None = None,
        num_channels: int = 1,
        encoder_channels: list[int] | None = None,
        latent_size: int = 640,
        l1_regularization: float = 1e-5,
        l2_regularization: float = 1e-4,
        classifier_filters: int = 16,
        classifier_kernel_size: int = 3,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        self.image_size = list(image_size) if image_size is not None else [640, 800]
        if len(self.image_size) != 2 or any(side % 8 for side in self.image_size):
            raise ValueError(
                f"image_size is (height, width), each divisible by 8 (three 2x poolings); got {image_size}."
            )
        self.num_channels = num_channels
        self.encoder_channels = list(encoder_channels) if encoder_channels is not None else [32, 16, 8]
        if len(self.encoder_channels) != 3:
            raise ValueError(f"encoder_channels lists the filters of the 3 conv layers, got {self.encoder_channels}.")
        self.latent_size = latent_size
        self.l1_regularization = l1_regularization
        self.l2_regularization = l2_regularization
        self.classifier_filters = classifier_filters
        self.classifier_kernel_size = classifier_kernel_size
        self.initializer_range = initializer_range
        super().__init__(**kwargs)

    @property
    def bottleneck_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) after the three poolings."""
        height, width = self.image_size
        return self.encoder_channels[-1], height // 8, width // 8


__all__ = ["MammoVaeConfig"]
