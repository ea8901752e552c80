from __future__ import annotations

import math

import pytest
import torch

from visattn.metrics import pck, pck_by_subset, pck_counts


def loop_pck(pred, gt, flags, boxes, alpha, subset):  # type: ignore[no-untyped-def]
    correct = counted = 0
    for n in range(pred.shape[0]):
        scale = max(float(boxes[n, 2]), float(boxes[n, 3]))
        if scale <= 0:
            continue
        for k in range(pred.shape[1]):
            v = int(flags[n, k])
            if not {"all": v > 0, "visible": v == 2, "occluded": v == 1}[subset]:
                continue
            counted += 1
            dist = math.hypot(float(pred[n, k, 0] - gt[n, k, 0]), float(pred[n, k, 1] - gt[n, k, 1]))
            correct += dist < alpha * scale
    return correct, counted


def make(n: int = 9, k: int = 17, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(n, k, 2, generator=g) * 200
    pred = gt + torch.randn(n, k, 2, generator=g) * 8
    flags = torch.randint(0, 3, (n, k), generator=g)
    boxes = torch.cat([torch.rand(n, 2, generator=g) * 50, torch.rand(n, 2, generator=g) * 150 + 20], 1)
    boxes[0, 2:] = 0.0  # degenerate box: its keypoints are not counted
    return pred, gt, flags, boxes


@pytest.mark.parametrize("subset", ["all", "visible", "occluded"])
@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_pck_equals_loop(subset: str, alpha: float) -> None:
    pred, gt, flags, boxes = make()
    correct, counted = loop_pck(pred, gt, flags, boxes, alpha, subset)
    assert pck_counts(pred, gt, flags, boxes, alpha=alpha, subset=subset) == (correct, counted)
    assert pck(pred, gt, flags, boxes, alpha=alpha, subset=subset) == pytest.approx(correct / counted)
    assert 0 < correct < counted  # a non-trivial case


def test_by_subset_and_float64() -> None:
    pred, gt, flags, boxes = make(seed=1)
    out = pck_by_subset(pred.double(), gt.double(), flags, boxes.double(), alpha=0.07)
    assert list(out) == ["PCK_all", "PCK_visible", "PCK_occluded"]
    for s in ("all", "visible", "occluded"):
        c, n = loop_pck(pred, gt, flags, boxes, 0.07, s)
        assert out[f"PCK_{s}"] == pytest.approx(c / n)


def test_threshold_is_strict() -> None:
    gt = torch.zeros(1, 1, 2)
    pred = torch.tensor([[[5.0, 0.0]]])
    box = torch.tensor([[0.0, 0.0, 100.0, 40.0]])
    assert pck(pred, gt, torch.tensor([[2]]), box) == 0.0  # distance == 0.05 * 100
    assert pck(pred * 0.99, gt, torch.tensor([[2]]), box) == 1.0


def test_empty_subset_is_nan() -> None:
    pred, gt, _, boxes = make(n=3)
    flags = torch.full((3, 17), 2)
    assert math.isnan(pck(pred, gt, flags, boxes, subset="occluded"))
    assert math.isnan(pck(pred[:0], gt[:0], flags[:0], boxes[:0]))


def test_bad_input_raises() -> None:
    pred, gt, flags, boxes = make(n=2)
    with pytest.raises(TypeError, match="bool visibility tensor cannot tell"):
        pck(pred, gt, flags == 2, boxes)
    with pytest.raises(ValueError, match="boxes must be"):
        pck(pred, gt, flags, boxes[:, :2])
    with pytest.raises(ValueError, match="flags must hold COCO flags"):
        pck(pred, gt, flags + 5, boxes)
    with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
        pck(pred, gt, flags, boxes, alpha=0.0)
    with pytest.raises(ValueError, match="subset must be one of"):
        pck(pred, gt, flags, boxes, subset="hidden")
    with pytest.raises(ValueError, match="finite"):
        pck(pred * math.nan, gt, flags, boxes)
