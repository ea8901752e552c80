"""PCK (percentage of correct keypoints) on all, visible or occluded keypoints (the paper's Table 1).

Normalisation: a keypoint is correct when ``||pred - gt||_2 < alpha * max(box_w, box_h)`` with
``alpha = 0.05`` by default, the normalisation of MMPose's ``PCKAccuracy(norm_item="bbox")`` (same
threshold, same scale): it is defined for every instance (a torso length is not, when hips or
shoulders are unlabelled) and independent of the input resolution of the model. ``alpha`` is a
parameter.

Two ways to average the correct keypoints, chosen by ``mode`` (see
`PCK_MODES`):

* ``"pooled"`` (visattn's default): all counted keypoints of all instances together,
  ``sum(correct) / sum(counted)``. Every keypoint has the same weight, so a keypoint type that is
  rarely labelled (or rarely occluded) weighs little.
* ``"per_keypoint"`` (MMPose's ``keypoint_pck_accuracy``, the number ``PCKAccuracy`` reports): the
  accuracy of each keypoint type over the instances that count it, then the mean over the keypoint
  types that have at least one counted instance. Every keypoint *type* has the same weight.

The two agree when every keypoint type is counted equally often (e.g. subset ``"all"`` with every
keypoint labelled); they differ most on the ``"occluded"`` subset, where a few keypoint types hold
most occluded labels.

Subsets use COCO flags: ``"all"`` counts labelled keypoints (``v > 0``), ``"visible"`` ``v == 2`` and
``"occluded"`` ``v == 1``, the same split as the visible/occluded OKS of `visattn.metrics.coco`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from visattn._checks import check_choice, check_flags, check_positive_float, check_tensor
from visattn.metrics._subsets import subset_mask
from visattn.metrics.coco import SUBSETS

__all__ = ["PCK_MODES", "pck", "pck_by_subset", "pck_counts"]

#: Averaging conventions of `pck`: visattn's pooled share and MMPose's mean per keypoint type.
PCK_MODES = ("pooled", "per_keypoint")


def check_pck_mode(name: str, mode: Any) -> str:
    """Return ``mode`` if it is one of `PCK_MODES`; TypeError for a non-string, ValueError else."""
    if not isinstance(mode, str):
        raise TypeError(f"{name} must be a str, one of {list(PCK_MODES)}, got {type(mode).__name__} {mode!r}")
    return check_choice(name, mode, PCK_MODES)


def _pck_masks(
    pred: torch.Tensor,
    gt: torch.Tensor,
    flags: torch.Tensor,
    boxes: torch.Tensor,
    alpha: float,
    subset: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated ``(correct, counted)`` bool masks ``(N, K)`` (``alpha`` already checked by the caller)."""
    check_tensor("pred", pred, "N K 2", floating=True)
    n, k = pred.shape[:2]
    check_tensor("gt", gt, "N K 2", floating=True, N=n, K=k)
    check_flags("flags", flags, "N K", N=n, K=k)
    check_tensor("boxes", boxes, "N 4", floating=True, N=n)
    check_choice("subset", subset, SUBSETS)
    if not bool(torch.isfinite(pred).all()) or not bool(torch.isfinite(gt).all()):
        raise ValueError("pred and gt must be finite (found NaN or inf)")
    scale = boxes[:, 2:].to(torch.float64).amax(dim=1)  # (N,)
    counted = subset_mask(flags, subset) & (scale > 0)[:, None]  # (N, K); rejects bool flags
    dist = torch.linalg.vector_norm(pred.to(torch.float64) - gt.to(torch.float64), dim=-1)  # (N, K)
    correct = (dist < alpha * scale[:, None]) & counted
    return correct, counted


def pck_counts(
    pred: torch.Tensor,
    gt: torch.Tensor,
    flags: torch.Tensor,
    boxes: torch.Tensor,
    *,
    alpha: float = 0.05,
    subset: str = "all",
) -> tuple[int, int]:
    """Number of correct and of counted keypoints, the two sums behind the pooled `pck`.

    Keypoints of an instance whose box has ``max(w, h) <= 0`` are not counted (no scale).

    Args:
        pred: ``(N, K, 2)`` predicted keypoints, pixels.
        gt: ``(N, K, 2)`` ground-truth keypoints, pixels (same frame as ``pred``).
        flags: ``(N, K)`` COCO flags 0/1/2 (0 not labelled, 1 occluded, 2 visible); a bool
            ``visible`` tensor is rejected because it cannot tell ``v = 0`` from ``v = 1``.
        boxes: ``(N, 4)`` person boxes ``(x, y, w, h)``, pixels.
        alpha: threshold as a fraction of ``max(w, h)``.
        subset: ``"all"`` (``v > 0``), ``"visible"`` (``v == 2``) or ``"occluded"`` (``v == 1``).

    Returns:
        ``(correct, counted)`` python ints.

    Example:
        >>> pred = torch.tensor([[[0.0, 0.0], [9.0, 0.0]]])
        >>> gt = torch.zeros(1, 2, 2)
        >>> pck_counts(pred, gt, torch.tensor([[2, 1]]), torch.tensor([[0.0, 0.0, 100.0, 50.0]]))
        (1, 2)
    """
    alpha = check_positive_float("alpha", alpha)
    correct, counted = _pck_masks(pred, gt, flags, boxes, alpha, subset)
    return int(correct.sum()), int(counted.sum())


def pck(
    pred: torch.Tensor,
    gt: torch.Tensor,
    flags: torch.Tensor,
    boxes: torch.Tensor,
    *,
    alpha: float = 0.05,
    subset: str = "all",
    mode: str = "pooled",
) -> float:
    """PCK: the share of keypoints with ``||pred - gt|| < alpha * max(box_w, box_h)``.

    ``mode="pooled"`` divides the correct keypoints by the counted keypoints, all keypoint types
    together. ``mode="per_keypoint"`` is MMPose's ``keypoint_pck_accuracy``: for each keypoint type
    ``k`` the share ``correct_k / counted_k`` over the instances that count it, then the mean over
    the keypoint types with ``counted_k > 0`` (types without a counted instance are left out, not
    counted as 0).

    Args:
        pred: ``(N, K, 2)`` predicted keypoints, pixels.
        gt: ``(N, K, 2)`` ground-truth keypoints, pixels.
        flags: ``(N, K)`` COCO flags 0/1/2 (0 not labelled, 1 occluded, 2 visible; bools rejected).
        boxes: ``(N, 4)`` person boxes ``(x, y, w, h)``, pixels.
        alpha: threshold as a fraction of ``max(w, h)`` (0.05, MMPose's default).
        subset: ``"all"`` (``v > 0``), ``"visible"`` (``v == 2``) or ``"occluded"`` (``v == 1``).
        mode: ``"pooled" | "per_keypoint"`` (see `PCK_MODES`).

    Returns:
        PCK in [0, 1]; NaN when no keypoint is counted (empty subset or ``N = 0``; MMPose reports 0
        there).

    Example:
        >>> pred = torch.tensor([[[0.0, 0.0], [9.0, 0.0]]])
        >>> flags = torch.tensor([[2, 1]])
        >>> box = torch.tensor([[0.0, 0.0, 100.0, 50.0]])
        >>> gt = torch.zeros(1, 2, 2)
        >>> pck(pred, gt, flags, box), pck(pred, gt, flags, box, alpha=0.1)
        (0.5, 1.0)
        >>> pred = torch.tensor([[[0.0, 0.0], [9.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
        >>> flags = torch.tensor([[2, 2], [2, 0]])  # keypoint 1 is labelled once, and missed
        >>> boxes = box.repeat(2, 1)
        >>> pck(pred, torch.zeros(2, 2, 2), flags, boxes)  # 2 of 3 keypoints
        0.6666666666666666
        >>> pck(pred, torch.zeros(2, 2, 2), flags, boxes, mode="per_keypoint")  # (2/2 + 0/1) / 2
        0.5
    """
    alpha = check_positive_float("alpha", alpha)
    mode = check_pck_mode("mode", mode)
    correct, counted = _pck_masks(pred, gt, flags, boxes, alpha, subset)
    if mode == "pooled":
        total = int(counted.sum())
        return int(correct.sum()) / total if total else math.nan
    per_type = counted.sum(dim=0)  # (K,)
    present = per_type > 0
    if not bool(present.any()):
        return math.nan
    accuracy = correct.sum(dim=0)[present].to(torch.float64) / per_type[present].to(torch.float64)
    return float(accuracy.mean())


def pck_by_subset(
    pred: torch.Tensor,
    gt: torch.Tensor,
    flags: torch.Tensor,
    boxes: torch.Tensor,
    *,
    alpha: float = 0.05,
    mode: str = "pooled",
) -> dict[str, float]:
    """`pck` for every subset: ``{"PCK_all", "PCK_visible", "PCK_occluded"}``.

    Args:
        pred: ``(N, K, 2)`` predicted keypoints, pixels.
        gt: ``(N, K, 2)`` ground-truth keypoints, pixels.
        flags: ``(N, K)`` COCO flags 0/1/2 (bools rejected).
        boxes: ``(N, 4)`` person boxes ``(x, y, w, h)``, pixels.
        alpha: threshold as a fraction of ``max(w, h)``.
        mode: ``"pooled" | "per_keypoint"`` (see `pck`), the same for every subset.

    Example:
        >>> pred = torch.tensor([[[0.0, 0.0], [9.0, 0.0], [50.0, 0.0]]])
        >>> out = pck_by_subset(pred, torch.zeros(1, 3, 2), torch.tensor([[2, 1, 0]]),
        ...                     torch.tensor([[0.0, 0.0, 100.0, 50.0]]))
        >>> out
        {'PCK_all': 0.5, 'PCK_visible': 1.0, 'PCK_occluded': 0.0}
    """
    mode = check_pck_mode("mode", mode)
    return {f"PCK_{s}": pck(pred, gt, flags, boxes, alpha=alpha, subset=s, mode=mode) for s in SUBSETS}
