"""Linear-complexity approximations of softmax attention, used by MIRAM's high-resolution decoder.

Every kernel takes `query`, `key`, `value` of shape (batch, heads, tokens, head_dim) and returns the attention output
in the same shape. They compute in float32 whatever the input dtype: the pseudo-inverse and the exponentials of the
random features are not stable in bf16.
"""

import math

import torch
from torch import nn


def softmax_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Exact scaled dot-product attention, the reference the approximations are measured against."""
    scores = query @ key.transpose(-1, -2) * query.shape[-1] ** -0.5
    return scores.softmax(dim=-1) @ value


def _segment_means(x: torch.Tensor, num_segments: int, segment_length: int) -> torch.Tensor:
    """Means of consecutive segments along the token axis; the last segment may be short (zero-padded, not counted)."""
    batch, heads, tokens, dim = x.shape
    padding = num_segments * segment_length - tokens
    sums = nn.functional.pad(x, (0, 0, 0, padding)).reshape(batch, heads, num_segments, segment_length, dim).sum(-2)
    counts = torch.full((num_segments, 1), float(segment_length), device=x.device, dtype=x.dtype)
    counts[-1] = segment_length - padding
    return sums / counts


def iterative_pseudo_inverse(matrix: torch.Tensor, iterations: int = 6) -> torch.Tensor:
    """Newton-Schulz iterations of the Nystromformer paper (Xiong et al. 2021, eq. 15), started from
    `A^T / (||A||_1 ||A||_inf)` so that they converge to the Moore-Penrose pseudo-inverse."""
    identity = torch.eye(matrix.shape[-1], device=matrix.device, dtype=matrix.dtype)
    norm_1 = matrix.abs().sum(dim=-2).amax(dim=-1, keepdim=True).unsqueeze(-1)
    norm_inf = matrix.abs().sum(dim=-1).amax(dim=-1, keepdim=True).unsqueeze(-1)
    inverse = matrix.transpose(-1, -2) / (norm_1 * norm_inf)
    for _ in range(iterations):
        product = matrix @ inverse
        inverse = 0.25 * inverse @ (13 * identity - product @ (15 * identity - product @ (7 * identity - product)))
    return inverse


def nystrom_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, num_landmarks: int, pinv_iterations: int = 6
) -> torch.Tensor:
    """Nystromformer attention: softmax(QK^T) ~ softmax(Q K~^T) pinv(softmax(Q~ K~^T)) softmax(Q~ K^T), with the
    landmarks Q~, K~ the means of `num_landmarks` consecutive segments of tokens. Any number of tokens works: with
    `n` tokens the segments hold `ceil(n / num_landmarks)` tokens and the last one may be shorter."""
    dtype = value.dtype
    query, key, value = query.float(), key.float(), value.float()
    tokens = query.shape[-2]
    segment_length = math.ceil(tokens / num_landmarks)
    num_segments = math.ceil(tokens / segment_length)
    scale = query.shape[-1] ** -0.25  # split between Q and K as in the reference code
    query, key = query * scale, key * scale
    query_landmarks = _segment_means(query, num_segments, segment_length)
    key_landmarks = _segment_means(key, num_segments, segment_length)
    kernel_1 = (query @ key_landmarks.transpose(-1, -2)).softmax(dim=-1)
    kernel_2 = (query_landmarks @ key_landmarks.transpose(-1, -2)).softmax(dim=-1)
    kernel_3 = (query_landmarks @ key.transpose(-1, -2)).softmax(dim=-1)
    output = kernel_1 @ (iterative_pseudo_inverse(kernel_2, pinv_iterations) @ (kernel_3 @ value))
    return output.to(dtype)


def orthogonal_gaussian_features(num_features: int, head_dim: int, seed: int) -> torch.Tensor:
    """Random projection of FAVOR+ (Choromanski et al. 2021): stacked blocks of orthogonal rows, each row rescaled to
    the norm of a Gaussian vector so that the marginals stay Gaussian. Deterministic for a given seed."""
    generator = torch.Generator().manual_seed(seed)
    blocks = []
    for _ in range(math.ceil(num_features / head_dim)):
        q, _ = torch.linalg.qr(torch.randn(head_dim, head_dim, generator=generator))
        blocks.append(q.T)
    rows = torch.cat(blocks)[:num_features]
    norms = torch.randn(num_features, head_dim, generator=generator).norm(dim=1, keepdim=True)
    return rows * norms


def _favor_features(x: torch.Tensor, projection: torch.Tensor, is_query: bool, eps: float = 1e-4) -> torch.Tensor:
    """Positive random features phi(x) = exp(w^T x - |x|^2 / 2) / sqrt(m). The max subtracted for stability is a
    per-row constant for queries and a global one for keys: both cancel in the normalisation."""
    projected = x @ projection.T
    half_norm = (x**2).sum(dim=-1, keepdim=True) / 2
    stabiliser = projected.amax(dim=-1, keepdim=True) if is_query else projected.amax(dim=(-1, -2), keepdim=True)
    return (torch.exp(projected - half_norm - stabiliser.detach()) + eps) * projection.shape[0] ** -0.5


def favor_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, projection: torch.Tensor
) -> torch.Tensor:
    """Performer (FAVOR+) attention with the random features `projection` of shape (num_features, head_dim)."""
    dtype = value.dtype
    query, key, value, projection = query.float(), key.float(), value.float(), projection.float()
    scale = query.shape[-1] ** -0.25
    query_features = _favor_features(query * scale, projection, is_query=True)
    key_features = _favor_features(key * scale, projection, is_query=False)
    context = key_features.transpose(-1, -2) @ value  # (batch, heads, features, head_dim)
    normaliser = query_features @ key_features.sum(dim=-2).unsqueeze(-1)  # (batch, heads, tokens, 1)
    return ((query_features @ context) / normaliser).to(dtype)


def linformer_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_projection: torch.Tensor,
    value_projection: torch.Tensor,
) -> torch.Tensor:
    """Linformer attention (Wang et al. 2020): keys and values are projected along the token axis from n to k rows by
    learned (k, n) matrices before exact softmax attention."""
    key = torch.einsum("kn,bhnd->bhkd", key_projection, key)
    value = torch.einsum("kn,bhnd->bhkd", value_projection, value)
    return softmax_attention(query, key, value)


__all__ = [
    "favor_attention",
    "iterative_pseudo_inverse",
    "linformer_attention",
    "nystrom_attention",
    "orthogonal_gaussian_features",
    "softmax_attention",
]
