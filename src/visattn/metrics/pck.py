"""PCK (percentage of correct keypoints) on all, visible or occluded keypoints (the paper's Table 1).

Normalisation: a keypoint is correct when ``||pred - gt||_2 < alpha * max(box_w, box_h)`` with
``alpha = 0.05`` by default. This is MMPose's ``PCKAccuracy(norm_item="bbox")`` convention: it is
defined for every instance (a torso length is not, when hips or shoulders are unlabelled), independent
of the input resolution of the model, and close to the accuracy SimpleBaseline-style code reports
during training (distance normalised by the crop size, threshold 0.05 of it), the kind of number
Table 1 shows. ``alpha`` is a parameter.

Subsets use COCO flags: ``"all"`` counts labelled keypoints (``v > 0``), ``"visible"`` ``v == 2`` and
``"occluded"`` ``v == 1``, the same split as the visible/occluded OKS of :mod:`visattn.metrics.coco`.
"""

from __future__ import annotations

import math

import torch

from visattn._checks import check_choice, check_flags, check_positive_float, check_tensor
from visattn.metrics._subsets import subset_mask
from visattn.metrics.coco import SUBSETS

__all__ = ["pck", "pck_by_subset", "pck_counts"]


def pck_counts(
    pred: torch.Tensor,
    gt: torch.Tensor,
    flags: torch.Tensor,
    boxes: torch.Tensor,
    *,
    alpha: float = 0.05,
    subset: str = "all",
) -> tuple[int, int]:
    """Number of correct and of counted keypoints, the two sums behind :func:`pck`.

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
    check_tensor("pred", pred, "N K D", floating=True, D=2)
    n, k = pred.shape[:2]
    check_tensor("gt", gt, "N K D", floating=True, N=n, K=k, D=2)
    check_flags("flags", flags, "N K", N=n, K=k)
    check_tensor("boxes", boxes, "N D", floating=True, N=n, D=4)
    alpha = check_positive_float("alpha", alpha)
    check_choice("subset", subset, SUBSETS)
    if not bool(torch.isfinite(pred).all()) or not bool(torch.isfinite(gt).all()):
        raise ValueError("pred and gt must be finite (found NaN or inf)")
    scale = boxes[:, 2:].to(torch.float64).amax(dim=1)  # (N,)
    counted = subset_mask(flags, subset) & (scale > 0)[:, None]  # (N, K); rejects bool flags
    dist = torch.linalg.vector_norm(pred.to(torch.float64) - gt.to(torch.float64), dim=-1)  # (N, K)
    correct = (dist < alpha * scale[:, None]) & counted
    return int(correct.sum()), int(counted.sum())


def pck(
    pred: torch.Tensor,
    gt: torch.Tensor,
    flags: torch.Tensor,
    boxes: torch.Tensor,
    *,
    alpha: float = 0.05,
    subset: str = "all",
) -> float:
    """PCK: the share of counted keypoints with ``||pred - gt|| < alpha * max(box_w, box_h)``.

    Args:
        pred: ``(N, K, 2)`` predicted keypoints, pixels.
        gt: ``(N, K, 2)`` ground-truth keypoints, pixels.
        flags: ``(N, K)`` COCO flags 0/1/2 (0 not labelled, 1 occluded, 2 visible; bools rejected).
        boxes: ``(N, 4)`` person boxes ``(x, y, w, h)``, pixels.
        alpha: threshold as a fraction of ``max(w, h)`` (0.05, MMPose's default).
        subset: ``"all"`` (``v > 0``), ``"visible"`` (``v == 2``) or ``"occluded"`` (``v == 1``).

    Returns:
        PCK in [0, 1]; NaN when no keypoint is counted (empty subset or ``N = 0``).

    Example:
        >>> pred = torch.tensor([[[0.0, 0.0], [9.0, 0.0]]])
        >>> flags = torch.tensor([[2, 1]])
        >>> box = torch.tensor([[0.0, 0.0, 100.0, 50.0]])
        >>> gt = torch.zeros(1, 2, 2)
        >>> pck(pred, gt, flags, box), pck(pred, gt, flags, box, alpha=0.1)
        (0.5, 1.0)
    """
    correct, counted = pck_counts(pred, gt, flags, boxes, alpha=alpha, subset=subset)
    return correct / counted if counted else math.nan


def pck_by_subset(
    pred: torch.Tensor,
    gt: torch.Tensor,
    flags: torch.Tensor,
    boxes: torch.Tensor,
    *,
    alpha: float = 0.05,
) -> dict[str, float]:
    """:func:`pck` for every subset: ``{"PCK_all", "PCK_visible", "PCK_occluded"}``.

    Args:
        pred: ``(N, K, 2)`` predicted keypoints, pixels.
        gt: ``(N, K, 2)`` ground-truth keypoints, pixels.
        flags: ``(N, K)`` COCO flags 0/1/2 (bools rejected).
        boxes: ``(N, 4)`` person boxes ``(x, y, w, h)``, pixels.
        alpha: threshold as a fraction of ``max(w, h)``.

    Example:
        >>> pred = torch.tensor([[[0.0, 0.0], [9.0, 0.0], [50.0, 0.0]]])
        >>> out = pck_by_subset(pred, torch.zeros(1, 3, 2), torch.tensor([[2, 1, 0]]),
        ...                     torch.tensor([[0.0, 0.0, 100.0, 50.0]]))
        >>> out
        {'PCK_all': 0.5, 'PCK_visible': 1.0, 'PCK_occluded': 0.0}
    """
    return {f"PCK_{s}": pck(pred, gt, flags, boxes, alpha=alpha, subset=s) for s in SUBSETS}
