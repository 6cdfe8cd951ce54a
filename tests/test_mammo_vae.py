"""The VAE-SSL model: a convolutional VAE pretext network and the 228-parameter classifier over its latent space."""

import pytest
import torch
from tiny_configs import tiny_vae_config
from transformers import AutoModelForImageClassification, AutoModelForPreTraining

from miram_hf import MammoVaeConfig, MammoVaeForImageClassification, MammoVaeForPreTraining


def images(batch: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 1, 32, 40, generator=torch.Generator().manual_seed(seed))


def trainable(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


def test_the_classifier_has_228_trainable_parameters_for_4_classes_as_in_the_paper():
    # Conv1D over (mu, sigma, z): 3 x 16 x 3 + 16 = 160; dense 16 -> 4: 68. The paper's 640 x 800 model.
    assert trainable(MammoVaeForImageClassification(MammoVaeConfig(num_labels=4))) == 228
    assert trainable(MammoVaeForImageClassification(tiny_vae_config(num_labels=3))) == 160 + 17 * 3


def test_the_paper_sized_decoder_has_the_papers_41_million_parameters():
    decoder = MammoVaeForPreTraining(MammoVaeConfig()).decoder
    assert sum(p.numel() for p in decoder.parameters()) == pytest.approx(41.03e6, rel=1e-3)


def test_the_loss_is_reconstruction_plus_kl_plus_the_dense_penalty():
    model = MammoVaeForPreTraining(tiny_vae_config())
    torch.manual_seed(0)
    outputs = model(images())
    mu, logvar = outputs.mu, outputs.logvar
    sigma2 = logvar.exp()
    kl = (0.5 * (sigma2 + mu**2 - 1 - torch.log(sigma2)).sum(1)).mean()  # KL(N(mu, sigma) || N(0, 1))
    reconstruction = ((outputs.reconstruction - images()) ** 2).sum((1, 2, 3)).mean()
    dense = [model.encoder.latent, model.encoder.mu, model.encoder.logvar, model.decoder.dense]
    penalty = sum(1e-5 * layer.weight.abs().sum() + 1e-4 * (layer.weight**2).sum() for layer in dense)
    torch.testing.assert_close(outputs.kl_loss, kl)
    torch.testing.assert_close(outputs.reconstruction_loss, reconstruction)
    torch.testing.assert_close(outputs.loss, reconstruction + kl + penalty)
    assert outputs.reconstruction.shape == (3, 1, 32, 40) and outputs.z.shape == (3, 16)


def test_a_few_steps_on_a_fixed_batch_lower_the_loss():
    torch.manual_seed(0)
    model = MammoVaeForPreTraining(tiny_vae_config())
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3)  # the paper's optimizer
    losses = []
    for _ in range(30):
        loss = model(images(8)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert sum(losses[-3:]) < 0.85 * sum(losses[:3]), losses  # random pixels: only their mean and spread are learnable


def test_the_classifier_reads_a_pretrained_encoder_frozen(tmp_path):
    pretrained = MammoVaeForPreTraining(tiny_vae_config())
    pretrained.save_pretrained(tmp_path)
    assert type(AutoModelForPreTraining.from_pretrained(tmp_path)) is MammoVaeForPreTraining
    classifier = AutoModelForImageClassification.from_pretrained(tmp_path, num_labels=4)
    assert type(classifier) is MammoVaeForImageClassification
    for key, value in pretrained.encoder.state_dict().items():
        torch.testing.assert_close(classifier.encoder.state_dict()[key], value)
    assert trainable(classifier) == 160 + 17 * 4  # the encoder stays frozen after loading
    classifier.eval()
    torch.testing.assert_close(classifier(images()).logits, classifier(images()).logits)  # z = mu in evaluation
    outputs = classifier.train()(images(), labels=torch.tensor([0, 1, 3]))
    outputs.loss.backward()
    assert classifier.convolution.weight.grad is not None
    assert all(parameter.grad is None for parameter in classifier.encoder.parameters())


def test_sizes_that_do_not_pool_three_times_are_refused():
    with pytest.raises(ValueError, match="divisible by 8"):
        MammoVaeConfig(image_size=[30, 40])
    with pytest.raises(ValueError, match="3 conv layers"):
        MammoVaeConfig(encoder_channels=[4, 4])


def test_the_loss_with_the_dense_layers_offloaded_to_disk_is_the_in_memory_loss(tmp_path):
    model = MammoVaeForPreTraining(tiny_vae_config()).eval()
    model.save_pretrained(tmp_path / "vae")
    offloaded = MammoVaeForPreTraining.from_pretrained(
        tmp_path / "vae", device_map={"encoder": "disk", "decoder": "cpu"}, offload_folder=str(tmp_path / "offload")
    )  # fmt: skip
    with torch.no_grad():
        torch.manual_seed(0)
        expected = model(images()).loss
        torch.manual_seed(0)
        torch.testing.assert_close(offloaded(images()).loss, expected)
