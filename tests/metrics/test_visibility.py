from __future__ import annotations

import math

import pytest
import torch

from visattn.metrics import visibility_confusion, visibility_metrics
from visattn.metrics.visibility import calibrate_visibility_threshold, visibility_ranking_metrics


def loop_metrics(probs, flags, threshold):  # type: ignore[no-untyped-def]
    tp = fp = fn = tn = 0
    for n in range(probs.shape[0]):
        for k in range(probs.shape[1]):
            pred = float(probs[n, k]) >= threshold
            true = int(flags[n, k]) == 2  # v = 0 and v = 1 are occluded
            tp += pred and true
            fp += pred and not true
            fn += (not pred) and true
            tn += (not pred) and not true
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {
        "accuracy": (tp + tn) / (tp + fp + fn + tn),
        "precision": p,
        "recall": r,
        "f1": 2 * p * r / (p + r) if p + r else 0.0,
        "visible_share": (tp + fn) / (tp + fp + fn + tn),
    }


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_equals_loop(threshold: float) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 17, generator=g) * 2
    flags = torch.randint(0, 3, (8, 17), generator=g)
    expected = loop_metrics(torch.sigmoid(logits), flags, threshold)
    out = visibility_metrics(logits, flags, threshold=threshold)
    assert out == pytest.approx(expected)
    assert visibility_metrics(torch.sigmoid(logits), flags, threshold=threshold, from_logits=False) == (
        pytest.approx(expected)
    )
    assert visibility_metrics(logits, flags == 2, threshold=threshold) == pytest.approx(expected)


def test_zero_division() -> None:
    flags = torch.tensor([[0, 1, 1]])
    out = visibility_metrics(torch.full((1, 3), -5.0), flags)  # all predicted and truly occluded
    assert out == {"accuracy": 1.0, "precision": 0.0, "recall": 0.0, "f1": 0.0, "visible_share": 0.0}
    empty = visibility_metrics(torch.zeros(0, 17), torch.zeros(0, 17, dtype=torch.long))
    assert math.isnan(empty["accuracy"])
    assert math.isnan(empty["visible_share"])
    assert empty["f1"] == 0.0


def test_confusion_and_bf16() -> None:
    logits = torch.tensor([[3.0, -3.0, 3.0, -3.0]])
    flags = torch.tensor([[2, 2, 0, 1]])
    assert visibility_confusion(logits.bfloat16(), flags) == (1, 1, 1, 1)


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="probabilities in"):
        visibility_metrics(torch.tensor([[1.5]]), torch.tensor([[2]]), from_logits=False)
    with pytest.raises(ValueError, match="flags must be"):
        visibility_metrics(torch.zeros(2, 3), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="threshold must be in"):
        visibility_metrics(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long), threshold=1.0)
    with pytest.raises(TypeError, match="floating-point"):
        visibility_metrics(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))


def _auc_pairs(probs: list[float], visible: list[bool]) -> float:
    """Oracle: the share of (visible, occluded) pairs ranked correctly, ties counted half."""
    pos = [p for p, v in zip(probs, visible) if v]
    neg = [p for p, v in zip(probs, visible) if not v]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def _ap_loop(scores: list[float], positive: list[bool]) -> float:
    """Oracle: precision at each distinct score cut, weighted by the recall gained there."""
    total = sum(positive)
    ap, previous_recall = 0.0, 0.0
    for cut in sorted(set(scores), reverse=True):
        chosen = [p for s, p in zip(scores, positive) if s >= cut]
        recall = sum(chosen) / total
        ap += (recall - previous_recall) * (sum(chosen) / len(chosen))
        previous_recall = recall
    return ap


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranking_metrics_equal_loop_oracles(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(5, 9, generator=gen) * 2).round(decimals=1)  # rounding makes ties
    flags = torch.randint(0, 3, (5, 9), generator=gen)
    out = visibility_ranking_metrics(logits, flags, threshold=0.4)
    probs = torch.sigmoid(logits).flatten().tolist()
    visible = (flags == 2).flatten().tolist()
    occluded = [not v for v in visible]
    assert out["roc_auc"] == pytest.approx(_auc_pairs(probs, visible), abs=1e-9)
    assert out["occluded_ap"] == pytest.approx(_ap_loop([1 - p for p in probs], occluded), abs=1e-6)
    pred_occ = [p < 0.4 for p in probs]
    tp_occ = sum(a and b for a, b in zip(pred_occ, occluded))
    assert out["occluded_recall"] == pytest.approx(tp_occ / sum(occluded))
    assert out["occluded_precision"] == pytest.approx(tp_occ / sum(pred_occ))
    recall_vis = sum(not a and b for a, b in zip(pred_occ, visible)) / sum(visible)
    assert out["balanced_accuracy"] == pytest.approx((recall_vis + tp_occ / sum(occluded)) / 2)
    assert out["majority_accuracy"] == pytest.approx(max(sum(visible), sum(occluded)) / len(visible))
    probabilities = visibility_ranking_metrics(torch.sigmoid(logits), flags, threshold=0.4, from_logits=False)
    assert probabilities == pytest.approx(out)


def test_ranking_metrics_edges() -> None:
    one_class = visibility_ranking_metrics(torch.zeros(2, 3), torch.full((2, 3), 2))
    assert math.isnan(one_class["roc_auc"])
    assert math.isnan(one_class["occluded_ap"])
    assert one_class["occluded_recall"] == 0.0
    assert one_class["majority_accuracy"] == 1.0
    perfect = visibility_ranking_metrics(torch.tensor([[5.0, -5.0]]), torch.tensor([[2, 1]]))
    assert perfect["roc_auc"] == 1.0
    assert perfect["occluded_ap"] == 1.0
    assert perfect["balanced_accuracy"] == 1.0
    with pytest.raises(ValueError, match="probabilities"):
        visibility_ranking_metrics(torch.tensor([[1.5]]), torch.tensor([[2]]), from_logits=False)
    with pytest.raises(ValueError, match="flags"):
        visibility_ranking_metrics(torch.zeros(2, 3), torch.zeros(2, 4))


def _balanced_accuracy(probs: list[float], visible: list[bool], t: float) -> float:
    vis = [p >= t for p, v in zip(probs, visible) if v]
    occ = [p < t for p, v in zip(probs, visible) if not v]
    return (sum(vis) / len(vis) + sum(occ) / len(occ)) / 2


@pytest.mark.parametrize("criterion", ["balanced_accuracy", "accuracy", "occluded_f1"])
def test_calibrated_threshold_is_the_best_of_a_fine_grid(criterion: str) -> None:
    gen = torch.Generator().manual_seed(3)
    flags = torch.randint(1, 3, (40, 6), generator=gen)
    logits = torch.randn(40, 6, generator=gen) + (flags == 2).float()  # visible keypoints score higher
    threshold = calibrate_visibility_threshold(logits, flags, criterion=criterion)
    probs = torch.sigmoid(logits).flatten().tolist()
    visible = (flags == 2).flatten().tolist()

    def score(t: float) -> float:
        if criterion == "balanced_accuracy":
            return _balanced_accuracy(probs, visible, t)
        if criterion == "accuracy":
            return sum((p >= t) == v for p, v in zip(probs, visible)) / len(probs)
        tp = sum(p < t and not v for p, v in zip(probs, visible))
        return 2 * tp / (sum(p < t for p in probs) + sum(not v for v in visible))

    best_on_grid = max(score(i / 2000) for i in range(1, 2000))
    assert 0 < threshold < 1
    assert score(threshold) >= best_on_grid - 1e-12


def test_calibration_edges_and_errors() -> None:
    assert calibrate_visibility_threshold(torch.randn(3, 4), torch.full((3, 4), 2)) == 0.5  # one class
    separable = calibrate_visibility_threshold(torch.tensor([[3.0, 2.0, -2.0]]), torch.tensor([[2, 2, 1]]))
    assert torch.sigmoid(torch.tensor(-2.0)) < separable < torch.sigmoid(torch.tensor(2.0))
    with pytest.raises(ValueError, match="criterion"):
        calibrate_visibility_threshold(torch.randn(3, 4), torch.full((3, 4), 2), criterion="f2")
