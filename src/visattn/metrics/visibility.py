"""Visibility classification metrics for VisNet predictions.

"Positive" means *visible*. Following the paper's footnote 1, the ground truth is visible iff the COCO
flag is ``v == 2``; unlabelled keypoints (``v = 0``) count as occluded, like labelled occluded ones
(``v = 1``). The conversion is :func:`visattn.visibility.flags_to_visible`.
"""

from __future__ import annotations

import math

import torch

from visattn._checks import check_flags, check_probability, check_tensor
from visattn.visibility import flags_to_visible

__all__ = ["visibility_confusion", "visibility_metrics"]


def visibility_confusion(
    vis: torch.Tensor, flags: torch.Tensor, *, threshold: float = 0.5, from_logits: bool = True
) -> tuple[int, int, int, int]:
    """Confusion counts ``(tp, fp, fn, tn)`` of visibility predictions, positive = visible.

    Args:
        vis: ``(N, K)`` VisNet logits (``from_logits=True``) or probabilities in [0, 1].
        flags: ``(N, K)`` COCO flags 0/1/2 (visible iff ``v == 2``; ``v = 0`` counts as occluded) or
            a bool ``visible`` tensor.
        threshold: a keypoint is predicted visible when its probability is ``>= threshold`` (the rule of
            :func:`visattn.visibility.predicted_visible`).
        from_logits: ``vis`` holds logits (sigmoid applied here, in float32) rather than probabilities.

    Returns:
        ``(tp, fp, fn, tn)`` python ints.

    Example:
        >>> visibility_confusion(torch.tensor([[3.0, -3.0, 3.0, -3.0]]), torch.tensor([[2, 2, 0, 1]]))
        (1, 1, 1, 1)
    """
    check_tensor("vis", vis, "N K", floating=True)
    n, k = vis.shape
    check_flags("flags", flags, "N K", N=n, K=k)
    check_probability("threshold", threshold, low_open=True, high_open=True)
    prob = vis.float()
    if from_logits:
        prob = torch.sigmoid(prob)
    elif prob.numel() and not bool(((prob >= 0) & (prob <= 1)).all()):
        raise ValueError("vis must hold probabilities in [0, 1] when from_logits=False (got values outside)")
    predicted = prob >= threshold  # (N, K)
    target = flags_to_visible(flags)  # (N, K)
    tp = int((predicted & target).sum())
    fp = int((predicted & ~target).sum())
    fn = int((~predicted & target).sum())
    tn = int((~predicted & ~target).sum())
    return tp, fp, fn, tn


def _metrics_from_confusion(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    total = tp + fp + fn + tn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": (tp + tn) / total if total else math.nan,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "visible_share": (tp + fn) / total if total else math.nan,
    }


def visibility_metrics(
    vis: torch.Tensor, flags: torch.Tensor, *, threshold: float = 0.5, from_logits: bool = True
) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of visibility predictions (positive = visible).

    Zero division: ``precision`` (no keypoint predicted visible), ``recall`` (no visible keypoint in
    the ground truth) and ``f1`` (precision + recall = 0) are 0.0, the ``zero_division=0`` convention
    of scikit-learn. ``accuracy`` and ``visible_share`` are NaN when there is no keypoint at all
    (``N * K = 0``).

    Args:
        vis: ``(N, K)`` VisNet logits (``from_logits=True``) or probabilities in [0, 1].
        flags: ``(N, K)`` COCO flags 0/1/2 (visible iff ``v == 2``; ``v = 0`` counts as occluded, the
            paper's footnote 1) or a bool ``visible`` tensor.
        threshold: predicted visible iff probability ``>= threshold``.
        from_logits: ``vis`` holds logits rather than probabilities.

    Returns:
        ``{"accuracy", "precision", "recall", "f1", "visible_share"}`` where ``visible_share`` is the
        share of ground-truth visible keypoints (57.2% on COCO val, footnote 1).

    Example:
        >>> out = visibility_metrics(torch.tensor([[3.0, -3.0, 3.0, -3.0]]), torch.tensor([[2, 2, 0, 1]]))
        >>> out["accuracy"], out["precision"], out["recall"], out["visible_share"]
        (0.5, 0.5, 0.5, 0.5)
    """
    return _metrics_from_confusion(
        *visibility_confusion(vis, flags, threshold=threshold, from_logits=from_logits)
    )
