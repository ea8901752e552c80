"""Visibility classification metrics for VisNet predictions.

"Positive" means *visible*. Following the paper's footnote 1, the ground truth is visible iff the COCO
flag is ``v == 2``; unlabelled keypoints (``v = 0``) count as occluded, like labelled occluded ones
(``v = 1``). The conversion is [`visattn.visibility.flags_to_visible`][visattn.visibility.flags_to_visible].
"""

from __future__ import annotations

import math

import torch

from visattn._checks import check_choice, check_flags, check_probability, check_tensor
from visattn.visibility import flags_to_visible

__all__ = [
    "VISIBILITY_CRITERIA",
    "calibrate_visibility_threshold",
    "visibility_confusion",
    "visibility_metrics",
    "visibility_ranking_metrics",
]

#: What [`calibrate_visibility_threshold`][visattn.metrics.calibrate_visibility_threshold] can maximise.
VISIBILITY_CRITERIA = ("balanced_accuracy", "accuracy", "occluded_f1")


def visibility_confusion(
    vis: torch.Tensor, flags: torch.Tensor, *, threshold: float = 0.5, from_logits: bool = True
) -> tuple[int, int, int, int]:
    """Confusion counts ``(tp, fp, fn, tn)`` of visibility predictions, positive = visible.

    Args:
        vis: ``(N, K)`` VisNet logits (``from_logits=True``) or probabilities in [0, 1].
        flags: ``(N, K)`` COCO flags 0/1/2 (visible iff ``v == 2``; ``v = 0`` counts as occluded) or
            a bool ``visible`` tensor.
        threshold: a keypoint is predicted visible when its probability is ``>= threshold`` (the rule of
            [`visattn.visibility.predicted_visible`][visattn.visibility.predicted_visible]).
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


def _scores_and_labels(vis: torch.Tensor, flags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    check_tensor("vis", vis, "N K", floating=True)
    n, k = vis.shape
    check_flags("flags", flags, "N K", N=n, K=k)
    return torch.sigmoid(vis.detach().float()).flatten().cpu(), flags_to_visible(flags).flatten().cpu()


def _roc_auc(prob: torch.Tensor, visible: torch.Tensor) -> float:
    """Mann-Whitney ROC AUC of ``prob`` for the visible class, ties counted half."""
    pos, neg = int(visible.sum()), int((~visible).sum())
    if pos == 0 or neg == 0:
        return math.nan
    _, inverse, counts = torch.unique(prob.double(), return_inverse=True, return_counts=True)  # sorted
    # 1-based rank of each distinct value; tied values share the mean of their ranks
    mean_rank = torch.cumsum(counts, 0).double() - (counts.double() - 1) / 2
    ranks = mean_rank[inverse]
    return float((ranks[visible].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _average_precision(score: torch.Tensor, positive: torch.Tensor) -> float:
    """Average precision (area under the step precision-recall curve, scikit-learn's definition)."""
    total = int(positive.sum())
    if total == 0:
        return math.nan
    values, inverse = torch.unique(score.double(), return_inverse=True)
    # sweep thresholds from the highest score down: cumulative positives / predictions at each distinct value
    tp_at = torch.bincount(inverse, weights=positive.double(), minlength=values.numel()).flip(0)
    n_at = torch.bincount(inverse, minlength=values.numel()).double().flip(0)
    tp, n = torch.cumsum(tp_at, 0), torch.cumsum(n_at, 0)
    precision, recall = tp / n, tp / total
    previous = torch.cat([recall.new_zeros(1), recall[:-1]])
    return float(((recall - previous) * precision).sum())


def visibility_ranking_metrics(
    vis: torch.Tensor, flags: torch.Tensor, *, threshold: float = 0.5, from_logits: bool = True
) -> dict[str, float]:
    """Threshold-free and occluded-class metrics of visibility predictions.

    Occluded keypoints are the minority (about 11-25% of labelled ones), so accuracy alone rewards a
    VisNet that answers "visible" everywhere; these say whether it finds the occluded ones.

    Args:
        vis: ``(N, K)`` VisNet logits (``from_logits=True``) or probabilities in [0, 1].
        flags: ``(N, K)`` COCO flags 0/1/2 (visible iff ``v == 2``; ``v = 0`` counts as occluded) or
            a bool ``visible`` tensor.
        threshold: the operating threshold (predicted visible iff probability ``>= threshold``).
        from_logits: ``vis`` holds logits rather than probabilities.

    Returns:
        ``{"balanced_accuracy", "roc_auc", "occluded_ap", "occluded_precision", "occluded_recall",
        "majority_accuracy"}``: the mean of the visible and occluded recalls at the threshold; the ROC
        AUC of the probabilities (NaN with one class only); the average precision of the *occluded*
        class ranked by ``1 - p``; the occluded class's precision and recall at the threshold (0 when
        undefined); and the accuracy of always answering the majority class.

    Example:
        >>> logits, flags = torch.tensor([[3.0, 1.0, -1.0, 2.0]]), torch.tensor([[2, 2, 1, 1]])
        >>> out = visibility_ranking_metrics(logits, flags)
        >>> out["roc_auc"], out["occluded_recall"], out["majority_accuracy"]
        (0.75, 0.5, 0.5)
    """
    check_probability("threshold", threshold, low_open=True, high_open=True)
    if from_logits:
        prob, visible = _scores_and_labels(vis, flags)
    else:
        check_tensor("vis", vis, "N K", floating=True)
        check_flags("flags", flags, "N K", N=vis.shape[0], K=vis.shape[1])
        prob, visible = vis.detach().float().flatten().cpu(), flags_to_visible(flags).flatten().cpu()
        if prob.numel() and not bool(((prob >= 0) & (prob <= 1)).all()):
            raise ValueError(
                "vis must hold probabilities in [0, 1] when from_logits=False (got values outside)"
            )
    predicted = prob >= threshold
    occluded = ~visible
    n_vis, n_occ = int(visible.sum()), int(occluded.sum())
    tp_occ = int((~predicted & occluded).sum())
    pred_occ = int((~predicted).sum())
    recall_vis = int((predicted & visible).sum()) / n_vis if n_vis else math.nan
    recall_occ = tp_occ / n_occ if n_occ else math.nan
    total = n_vis + n_occ
    return {
        "balanced_accuracy": (recall_vis + recall_occ) / 2,
        "roc_auc": _roc_auc(prob, visible),
        "occluded_ap": _average_precision(1.0 - prob, occluded),
        "occluded_precision": tp_occ / pred_occ if pred_occ else 0.0,
        "occluded_recall": recall_occ if n_occ else 0.0,
        "majority_accuracy": max(n_vis, n_occ) / total if total else math.nan,
    }


def calibrate_visibility_threshold(
    vis_logits: torch.Tensor, flags: torch.Tensor, *, criterion: str = "balanced_accuracy"
) -> float:
    """The operating threshold that maximises ``criterion`` on held-out predictions.

    Every midpoint between consecutive distinct probabilities is a candidate (plus the extremes); ties
    go to the candidate closest to 0.5.

    Args:
        vis_logits: ``(N, K)`` VisNet logits on held-out data.
        flags: ``(N, K)`` COCO flags 0/1/2 (visible iff ``v == 2``) or bools.
        criterion: ``"balanced_accuracy"`` (mean of the two recalls; the default, robust to the class
            imbalance), ``"accuracy"`` or ``"occluded_f1"`` (F1 of the occluded class).

    Returns:
        a threshold in (0, 1); 0.5 when the data hold one class only.

    Example:
        >>> logits = torch.tensor([[2.0, 1.5, 1.0, -1.0]])  # the occluded ones score 1.0 and -1.0
        >>> round(calibrate_visibility_threshold(logits, torch.tensor([[2, 2, 1, 1]])), 3)
        0.774
    """
    check_choice("criterion", criterion, VISIBILITY_CRITERIA)
    prob, visible = _scores_and_labels(vis_logits, flags)
    n_vis, n_occ = int(visible.sum()), int((~visible).sum())
    if n_vis == 0 or n_occ == 0:
        return 0.5
    values = torch.unique(prob.double())  # sorted
    eps = 1e-6
    candidates = torch.cat(
        [values.new_tensor([eps]), (values[1:] + values[:-1]) / 2, values.new_tensor([1 - eps])]
    ).clamp(eps, 1 - eps)
    predicted = prob.double()[None, :] >= candidates[:, None]  # (T, N*K)
    tp_vis = (predicted & visible).sum(1).double()
    tp_occ = (~predicted & ~visible).sum(1).double()
    if criterion == "balanced_accuracy":
        score = (tp_vis / n_vis + tp_occ / n_occ) / 2
    elif criterion == "accuracy":
        score = (tp_vis + tp_occ) / (n_vis + n_occ)
    else:
        pred_occ = (~predicted).sum(1).double()
        score = 2 * tp_occ / (pred_occ + n_occ)
    best = score.max()
    tied = torch.nonzero(score >= best - 1e-12).flatten()
    pick = tied[torch.argmin((candidates[tied] - 0.5).abs())]
    return float(candidates[pick])
