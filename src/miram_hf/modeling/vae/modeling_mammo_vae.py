"""The VAE-based self-supervised model for small mammogram sets: a convolutional VAE learns a 640-d latent space by
reconstructing mammograms; a tiny 1-D CNN classifies the frozen encoder's (mu, sigma, z)."""

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput, can_return_tuple

from .configuration_mammo_vae import MammoVaeConfig


@dataclass
class MammoVaeForPreTrainingOutput(ModelOutput):
    """
    loss: reconstruction + KL + the L1/L2 penalty of the dense layers.
    reconstruction_loss: squared error summed over the pixels, averaged over the batch.
    kl_loss: KL(q(z|x) || N(0, I)) summed over the latent, averaged over the batch.
    reconstruction: (batch, channels, height, width).
    mu, logvar, z: (batch, latent_size).
    """

    loss: torch.Tensor | None = None
    reconstruction_loss: torch.Tensor | None = None
    kl_loss: torch.Tensor | None = None
    reconstruction: torch.Tensor | None = None
    mu: torch.Tensor | None = None
    logvar: torch.Tensor | None = None
    z: torch.Tensor | None = None


@dataclass
class MammoVaeImageClassifierOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


class MammoVaeDense(nn.Linear):
    """A dense layer with Keras' `kernel_regularizer`, as the paper used: `penalty` is the L1 and L2 of its weight,
    computed in its own forward where the weight is used, so that accelerate's offloading hooks (which load a
    module's weights when it is called) see it."""

    def __init__(self, in_features: int, out_features: int, config: MammoVaeConfig):
        super().__init__(in_features, out_features)
        self.l1, self.l2 = config.l1_regularization, config.l2_regularization
        self.penalty: torch.Tensor | None = None

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        self.penalty = self.l1 * self.weight.abs().sum() + self.l2 * self.weight.pow(2).sum()
        return super().forward(inputs)


class MammoVaeEncoder(nn.Module):
    """Three (3 x 3 conv, ReLU, 2 x 2 max-pool) layers, flatten, a latent dense layer, then mu and log-variance."""

    def __init__(self, config: MammoVaeConfig):
        super().__init__()
        layers, channels = [], config.num_channels
        for out_channels in config.encoder_channels:
            layers += [nn.Conv2d(channels, out_channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels = out_channels
        self.convolutions = nn.Sequential(*layers)
        self.latent = MammoVaeDense(math.prod(config.bottleneck_shape), config.latent_size, config)
        self.mu = MammoVaeDense(config.latent_size, config.latent_size, config)
        self.logvar = MammoVaeDense(config.latent_size, config.latent_size, config)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = torch.relu(self.latent(self.convolutions(pixel_values).flatten(1)))
        return self.mu(hidden), self.logvar(hidden)


class MammoVaeDecoder(nn.Module):
    """A dense layer back to the bottleneck, then three (2 x upsampling, 3 x 3 transposed conv) layers mirroring the
    encoder, the last one linear, to the image."""

    def __init__(self, config: MammoVaeConfig):
        super().__init__()
        self.bottleneck_shape = config.bottleneck_shape
        self.dense = MammoVaeDense(config.latent_size, math.prod(config.bottleneck_shape), config)
        channels = [*reversed(config.encoder_channels), config.num_channels]
        layers = []
        for index, (in_channels, out_channels) in enumerate(zip(channels[:-1], channels[1:], strict=True)):
            layers += [nn.Upsample(scale_factor=2), nn.ConvTranspose2d(in_channels, out_channels, 3, padding=1)]
            layers += [nn.ReLU()] if index < len(channels) - 2 else []
        self.deconvolutions = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.dense(z)).view(len(z), *self.bottleneck_shape)
        return self.deconvolutions(hidden)


class MammoVaePreTrainedModel(PreTrainedModel):
    config_class = MammoVaeConfig
    config: MammoVaeConfig
    base_model_prefix = "encoder"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    def get_input_embeddings(self) -> nn.Module:
        """The first convolution: accelerate's FSDP asks every model for its input embeddings."""
        return self.encoder.convolutions[0]


def sample_latent(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * epsilon, epsilon ~ N(0, I) (the reparameterisation trick)."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


class MammoVaeForPreTraining(MammoVaePreTrainedModel):
    def __init__(self, config: MammoVaeConfig):
        super().__init__(config)
        self.encoder = MammoVaeEncoder(config)
        self.decoder = MammoVaeDecoder(config)
        self.post_init()

    def dense_penalty(self) -> torch.Tensor:
        """L1 and L2 on the weights of the dense layers, as their last forward computed it."""
        return sum(layer.penalty for layer in self.modules() if isinstance(layer, MammoVaeDense))

    @can_return_tuple
    def forward(self, pixel_values: torch.Tensor, **kwargs) -> MammoVaeForPreTrainingOutput:
        mu, logvar = self.encoder(pixel_values)
        z = sample_latent(mu, logvar)
        reconstruction = self.decoder(z)
        reconstruction_loss = (reconstruction - pixel_values).pow(2).flatten(1).sum(1).mean()
        kl_loss = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
        return MammoVaeForPreTrainingOutput(
            loss=reconstruction_loss + kl_loss + self.dense_penalty(),
            reconstruction_loss=reconstruction_loss,
            kl_loss=kl_loss,
            reconstruction=reconstruction,
            mu=mu,
            logvar=logvar,
            z=z,
        )


class MammoVaeForImageClassification(MammoVaePreTrainedModel):
    """The frozen encoder's (mu, sigma, z) as a (3, latent_size) sequence -> Conv1D -> ReLU -> global average pool ->
    dense. Loaded from a `MammoVaeForPreTraining` checkpoint, it keeps the encoder and drops the decoder. z is
    sampled in training and is mu in evaluation, so that predictions are deterministic."""

    def __init__(self, config: MammoVaeConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.encoder = MammoVaeEncoder(config)
        self.convolution = nn.Conv1d(3, config.classifier_filters, config.classifier_kernel_size)
        self.classifier = nn.Linear(config.classifier_filters, config.num_labels)
        self.post_init()
        self.encoder.requires_grad_(False)

    @classmethod
    def from_pretrained(cls, *args, **kwargs) -> "MammoVaeForImageClassification":
        loaded = super().from_pretrained(*args, **kwargs)  # (model, info) with output_loading_info=True
        (loaded[0] if isinstance(loaded, tuple) else loaded).encoder.requires_grad_(False)  # loading unfreezes it
        return loaded

    @can_return_tuple
    def forward(
        self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, **kwargs
    ) -> MammoVaeImageClassifierOutput:
        with torch.no_grad():
            mu, logvar = self.encoder(pixel_values)
            z = sample_latent(mu, logvar) if self.training else mu
        sequence = torch.stack([mu, torch.exp(0.5 * logvar), z], dim=1)  # (batch, 3, latent_size)
        pooled = torch.relu(self.convolution(sequence)).mean(-1)
        logits = self.classifier(pooled)
        loss = self.loss_function(labels, logits, self.config) if labels is not None else None
        return MammoVaeImageClassifierOutput(loss=loss, logits=logits)


__all__ = [
    "MammoVaeForImageClassification",
    "MammoVaeForPreTraining",
    "MammoVaeForPreTrainingOutput",
    "MammoVaePreTrainedModel",
    "sample_latent",
]
