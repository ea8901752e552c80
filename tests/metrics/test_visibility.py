from __future__ import annotations

import math

import pytest
import torch

from visattn.metrics import visibility_confusion, visibility_metrics


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
