"""Input validation and batching shared by the SimCC and heatmap codecs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from visattn._checks import check_flags, check_tensor
from visattn.codecs._gaussian import work_dtype

__all__ = [
    "batch_keypoints",
    "check_codec_flags",
    "check_trailing_size",
    "flip_index_tensor",
    "labelled_keypoints",
]


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


def check_codec_flags(flags: torch.Tensor, spec: str, **sizes: int | None) -> torch.Tensor:
    """COCO flags for the encoders: 0/1/2 (integer or float), not bool.

    Integer flags are range-checked with one ``aminmax`` (the encoders run once per sample in a
    DataLoader, so the per-call op count matters); other dtypes go through the full
    `check_flags`, which also builds the error messages.
    """
    fl = check_tensor("flags", flags, spec, **sizes)  # type: ignore[arg-type]
    if fl.dtype == torch.bool:
        raise TypeError(
            "flags must be COCO flags 0/1/2 (integer or float), got a bool tensor: the codec needs to "
            "tell unlabelled (v = 0) from occluded (v = 1) keypoints"
        )
    if fl.numel() and not (fl.is_floating_point() or fl.is_complex()):
        low, high = torch.aminmax(fl)
        if int(low) >= 0 and int(high) <= 2:
            return fl
    return check_flags("flags", fl, spec, **sizes)


def batch_keypoints(keypoints: Any, flags: Any) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Validate keypoints/flags and return them batched as ``(B, K, 2)``, ``(B, K)`` + unbatched flag.

    Finiteness of the labelled keypoints is checked by `labelled_keypoints`.
    """
    if not isinstance(keypoints, torch.Tensor):
        raise TypeError(
            f"keypoints must be a torch.Tensor (B, K, 2) or (K, 2), got {type(keypoints).__name__}"
        )
    if not isinstance(flags, torch.Tensor):
        raise TypeError(f"flags must be a torch.Tensor (B, K) or (K,), got {type(flags).__name__}")
    if keypoints.dim() == 2:
        kp = check_tensor("keypoints", keypoints, "K 2", floating=True)
        fl = check_codec_flags(flags, "K", K=kp.shape[0])
        return kp.unsqueeze(0), fl.unsqueeze(0), True
    if keypoints.dim() == 3:
        kp = check_tensor("keypoints", keypoints, "B K 2", floating=True)
        fl = check_codec_flags(flags, "B K", B=kp.shape[0], K=kp.shape[1])
        return kp, fl, False
    raise ValueError(f"keypoints must be (B, K, 2) or (K, 2), got {tuple(keypoints.shape)}")


def labelled_keypoints(kp: torch.Tensor, fl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``labelled (B, K)`` bool and the keypoints ``(B, K, 2)`` in the work dtype, 0 where unlabelled.

    Raises ValueError when a labelled keypoint is not finite (unlabelled ones may hold NaN).
    """
    labelled = fl > 0  # (B, K)
    mu = torch.where(labelled.unsqueeze(-1), kp.to(work_dtype(kp.dtype)), 0.0)  # (B, K, 2)
    if not bool(torch.isfinite(mu).all()):
        raise ValueError("keypoints must be finite for every labelled keypoint (flag 1 or 2)")
    return labelled, mu


def flip_index_tensor(flip_index: Any, num_keypoints: int, device: torch.device) -> torch.Tensor:
    """Validate a flip permutation of length K and return it as a ``long`` tensor on ``device``."""
    if isinstance(flip_index, torch.Tensor):
        if flip_index.dim() != 1 or flip_index.is_floating_point() or flip_index.dtype == torch.bool:
            raise TypeError(
                f"flip_index must be a 1-D integer tensor or a sequence of ints, got "
                f"{flip_index.dtype} tensor of shape {tuple(flip_index.shape)}"
            )
        values = [int(v) for v in flip_index.tolist()]
    elif isinstance(flip_index, Sequence) and not isinstance(flip_index, str):
        if any(isinstance(v, bool) or not isinstance(v, int) for v in flip_index):
            raise TypeError(f"flip_index must hold ints, got {list(flip_index)!r}")
        values = [int(v) for v in flip_index]
    else:
        raise TypeError(
            f"flip_index must be a sequence of ints or a 1-D tensor, got {type(flip_index).__name__}"
        )
    if sorted(values) != list(range(num_keypoints)):
        raise ValueError(f"flip_index must be a permutation of range(K) with K={num_keypoints}, got {values}")
    return torch.tensor(values, dtype=torch.long, device=device)
