"""1-D Gaussians of the codecs' targets, and the dtype they are computed in."""

from __future__ import annotations

import math

import torch

__all__ = ["gaussian_1d", "window_inside", "work_dtype"]


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other floating dtype is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def gaussian_1d(
    mu: torch.Tensor, num_bins: int, sigma: float, *, normalize: bool, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """``exp(-(i - mu)^2 / (2 sigma^2))`` for bins ``i = 0 .. num_bins-1``; ``mu (B, K)`` -> ``(B, K, n)``.

    ``normalize`` divides by ``sigma * sqrt(2 pi)``; ``weights (B, K)`` (0/1) multiplies each row.

    Example:
        >>> gaussian_1d(torch.tensor([[1.0]]), 3, 1.0, normalize=False).tolist()
        [[[0.6065306663513184, 1.0, 0.6065306663513184]]]
    """
    bins = torch.arange(num_bins, dtype=mu.dtype, device=mu.device)
    out = torch.exp((bins - mu.unsqueeze(-1)).square() * (-0.5 / sigma**2))  # (B, K, n)
    if normalize:
        out = out / (sigma * math.sqrt(2.0 * math.pi))
    if weights is not None:
        out = out * weights.unsqueeze(-1)
    return out


def window_inside(mu: torch.Tensor, num_bins: int, sigma: float) -> torch.Tensor:
    """True where ``[mu - 3 sigma, mu + 3 sigma]`` overlaps ``[0, num_bins - 1]``."""
    return (mu + 3.0 * sigma >= 0) & (mu - 3.0 * sigma <= num_bins - 1)
