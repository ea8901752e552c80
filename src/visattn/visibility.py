"""The visibility convention and the mask rule.

visattn speaks COCO flags at its boundary and bools inside: ``v = 0`` not labelled, ``v = 1`` labelled
but occluded, ``v = 2`` labelled and visible. A keypoint is *visible* iff ``v == 2``; ``v = 0`` counts
as occluded for visibility (the paper's footnote 1). :func:`flags_to_visible` is the one conversion.
"""

from __future__ import annotations

import torch

from visattn._checks import check_flags, check_probability, check_tensor

__all__ = ["flags_to_visible", "predicted_visible", "visibility_mask"]


def flags_to_visible(flags: torch.Tensor, *, name: str = "flags") -> torch.Tensor:
    """Turn COCO flags or a bool tensor into a bool ``visible`` tensor of the same shape.

    The values are checked to lie in {0, 1, 2} (skipped while ``torch.compile`` traces, where the
    check would need a host sync); callers check the shape.

    Args:
        flags: ``(B, K)`` (any shape) COCO flags in {0, 1, 2} of any integer or float dtype, or a
            bool tensor that already says visible (True) / occluded (False).
        name: argument name used in error messages.

    Returns:
        bool tensor, True iff the flag is 2 (or the input is True).

    Example:
        >>> flags_to_visible(torch.tensor([[0, 1, 2]])).tolist()
        [[False, False, True]]
    """
    if not isinstance(flags, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of COCO flags 0/1/2 or bools, got {type(flags).__name__}"
        )
    if not torch.compiler.is_compiling():
        check_flags(name, flags, " ".join(f"d{i}" for i in range(flags.dim())))
    if flags.dtype == torch.bool:
        return flags
    return flags == 2


def predicted_visible(vis_logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Predicted visibility: ``sigmoid(logit) >= threshold``, computed in float32.

    The comparison is done on float32 logits so that autocast never flips a decision compared with
    a float32 run.

    Args:
        vis_logits: ``(B, K)`` VisNet logits.
        threshold: probability threshold in (0, 1).

    Returns:
        ``(B, K)`` bool tensor.

    Example:
        >>> predicted_visible(torch.tensor([[-1.0, 0.0, 2.0]])).tolist()
        [[False, True, True]]
    """
    check_tensor("vis_logits", vis_logits, "B K", floating=True)
    check_probability("threshold", threshold, low_open=True, high_open=True)
    return torch.sigmoid(vis_logits.float()) >= threshold


def visibility_mask(
    visible: torch.Tensor, occluded_scale: float = 0.01, *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The feature mask: 1.0 for visible keypoints, ``occluded_scale`` for occluded ones.

    Args:
        visible: ``(B, K)`` bool tensor (see :func:`flags_to_visible`).
        occluded_scale: factor applied to occluded keypoint features, in (0, 1].
        dtype: dtype of the returned mask.

    Returns:
        ``(B, K)`` mask.

    Example:
        >>> visibility_mask(torch.tensor([[True, False]])).tolist()
        [[1.0, 0.009999999776482582]]
    """
    check_tensor("visible", visible, "B K")
    if visible.dtype != torch.bool:
        raise TypeError(f"visible must be a bool tensor (B, K), got dtype {visible.dtype}")
    check_probability("occluded_scale", occluded_scale, low_open=True)
    one = torch.ones((), dtype=dtype, device=visible.device)
    return torch.where(visible, one, one * occluded_scale)
