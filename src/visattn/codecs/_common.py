"""Validation shared by the SimCC and heatmap codecs (private)."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["check_trailing_size"]


def check_trailing_size(name: str, value: Any, size: tuple[int, ...], spec: str, axes: str) -> None:
    """Raise ValueError when tensor ``value`` does not end in ``size`` (the codec's bins or cells).

    Non-tensors and tensors of too low a rank pass through: the codec functions called next reject
    them with their own messages.

    Example:
        >>> import torch
        >>> check_trailing_size("x_logits", torch.zeros(2, 3, 8), (8,), "(B, K, Wx)", "Wx")
    """
    if not isinstance(value, torch.Tensor) or value.dim() < len(size):
        return
    if tuple(value.shape[-len(size) :]) != tuple(size):
        want = size[0] if len(size) == 1 else tuple(size)
        raise ValueError(f"{name} must be {spec} with {axes}={want} for this codec, got {tuple(value.shape)}")
