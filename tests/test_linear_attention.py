import math

import pytest
import torch

from miram_hf.modeling.miram.linear_attention_miram import (
    _segment_means,
    favor_attention,
    iterative_pseudo_inverse,
    linformer_attention,
    nystrom_attention,
    orthogonal_gaussian_features,
    softmax_attention,
)


def qkv(tokens: int, head_dim: int = 16, scale: float = 1.0, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, tokens, head_dim, generator=generator) * scale for _ in range(3)]


def test_softmax_attention_matches_torch_sdpa():
    query, key, value = qkv(20)
    expected = torch.nn.functional.scaled_dot_product_attention(query, key, value)
    torch.testing.assert_close(softmax_attention(query, key, value), expected, atol=1e-5, rtol=1e-5)


def test_segment_means_ignore_padding():
    x = torch.arange(7.0).reshape(1, 1, 7, 1)
    means = _segment_means(x, num_segments=3, segment_length=3)
    torch.testing.assert_close(means.flatten(), torch.tensor([1.0, 4.0, 6.0]))


def test_iterative_pseudo_inverse_converges():
    matrix = torch.softmax(torch.randn(4, 10, 10) * 3, dim=-1)
    inverse = iterative_pseudo_inverse(matrix, iterations=40)
    torch.testing.assert_close(matrix @ inverse, torch.eye(10).expand(4, -1, -1), atol=1e-4, rtol=0)


def test_nystrom_with_one_landmark_per_token_is_exact():
    # landmarks = the tokens themselves: the Nystrom factorisation A pinv(A) A collapses to A
    query, key, value = qkv(24, scale=1.5)
    output = nystrom_attention(query, key, value, num_landmarks=24, pinv_iterations=40)
    torch.testing.assert_close(output, softmax_attention(query, key, value), atol=1e-4, rtol=1e-4)


def smooth_qkv(tokens: int, seed: int = 0):
    """Queries, keys and values that vary smoothly along the tokens, as neighbouring image patches do."""
    generator = torch.Generator().manual_seed(seed)
    position = torch.linspace(0, 1, tokens)
    basis = torch.stack([torch.cos(math.pi * frequency * position) for frequency in range(4)], dim=-1)
    return [basis @ torch.randn(2, 3, 4, 16, generator=generator) for _ in range(3)]


@pytest.mark.parametrize("tokens", [17, 65, 197])
def test_nystrom_any_sequence_length_improves_with_landmarks(tokens):
    query, key, value = smooth_qkv(tokens)
    exact = softmax_attention(query, key, value)
    errors = []
    for landmarks in (4, 8, 16):  # 17 and 197 tokens do not divide into segments: the last one is short
        output = nystrom_attention(query, key, value, num_landmarks=landmarks, pinv_iterations=20)
        assert output.shape == value.shape
        errors.append(((output - exact).abs().mean() / exact.abs().mean()).item())
    assert errors == sorted(errors, reverse=True), errors
    assert errors[-1] < 0.02


def test_nystrom_keeps_dtype_and_computes_in_float32():
    query, key, value = (t.bfloat16() for t in qkv(33))
    output = nystrom_attention(query, key, value, num_landmarks=8)
    assert output.dtype == torch.bfloat16 and torch.isfinite(output.float()).all()


def test_orthogonal_features_are_seeded_and_blockwise_orthogonal():
    features = orthogonal_gaussian_features(40, 16, seed=3)
    torch.testing.assert_close(features, orthogonal_gaussian_features(40, 16, seed=3))
    assert not torch.equal(features, orthogonal_gaussian_features(40, 16, seed=4))
    block = features[:16] / features[:16].norm(dim=1, keepdim=True)
    torch.testing.assert_close(block @ block.T, torch.eye(16), atol=1e-5, rtol=0)


def test_performer_approaches_exact_attention_as_features_grow():
    query, key, value = qkv(64, scale=0.7)
    exact = softmax_attention(query, key, value)

    def mean_error(num_features: int) -> float:
        errors = [
            (favor_attention(query, key, value, orthogonal_gaussian_features(num_features, 16, seed)) - exact)
            .abs()
            .mean()
            for seed in range(5)
        ]
        return torch.stack(errors).mean().item()

    errors = [mean_error(m) for m in (4, 32, 256, 2048)]
    assert errors == sorted(errors, reverse=True), errors
    assert errors[-1] < 0.25 * errors[0]


def test_linformer_with_identity_projections_is_exact():
    query, key, value = qkv(12)
    identity = torch.eye(12)
    output = linformer_attention(query, key, value, identity, identity)
    torch.testing.assert_close(output, softmax_attention(query, key, value))
