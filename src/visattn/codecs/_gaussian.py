"""1-D Gaussians of the codecs' targets, and the dtype they are computed in."""

from __future__ import annotations

import math

import torch

__all__ = ["gaussian_1d", "window_inside", "work_dtype"]


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other floating dtype is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


_EXP_FLOOR = {torch.float32: -87.0, torch.float64: -708.0}
# 2 exp(floor): well above exp(floor) whatever the rounding of a vectorised or scalar exp
_EXP_FLUSH = {torch.float32: 2.0 * math.exp(-87.0), torch.float64: 2.0 * math.exp(-708.0)}


def gaussian_1d(
    mu: torch.Tensor, num_bins: int, sigma: float, *, normalize: bool, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """``exp(-(i - mu)^2 / (2 sigma^2))`` for bins ``i = 0 .. num_bins-1``; ``mu (B, K)`` -> ``(B, K, n)``.

    ``normalize`` divides by ``sigma * sqrt(2 pi)``; ``weights (B, K)`` (0/1) multiplies each row. The
    big ``(B, K, n)`` tensor is allocated once and updated in place (fresh allocations of that size
    cost page faults on CPU); the result is bitwise the same as the out-of-place formula.
    """
    bins = torch.arange(num_bins, dtype=mu.dtype, device=mu.device)
    out = bins - mu.unsqueeze(-1)  # (B, K, n)
    out.square_().mul_(-0.5 / sigma**2)
    # exp of large negative arguments takes a slow (denormal) path on CPU: clamp the exponent to the
    # floor, then set every value below 2 exp(floor) (~3.3e-38 in float32, ~6.7e-308 in float64: at most
    # a few smallest-normal floats) to exactly 0. One threshold pass instead of a mask + masked_fill.
    floor = _EXP_FLOOR[mu.dtype]
    torch.threshold_(out.clamp_(min=floor).exp_(), _EXP_FLUSH[mu.dtype], 0.0)
    factor = 1.0 / (sigma * math.sqrt(2.0 * math.pi)) if normalize else 1.0
    if weights is not None:  # weights are 0 / 1, so (out * factor) * w == out * (w * factor) exactly
        out.mul_((weights * factor if normalize else weights).unsqueeze(-1))
    elif normalize:
        out.mul_(factor)
    return out


def window_inside(mu: torch.Tensor, num_bins: int, sigma: float) -> torch.Tensor:
    """True where ``[mu - 3 sigma, mu + 3 sigma]`` overlaps ``[0, num_bins - 1]``."""
    return (mu + 3.0 * sigma >= 0) & (mu - 3.0 * sigma <= num_bins - 1)
