"""PCK's two averaging conventions: visattn's pooled share and MMPose's mean over keypoint types."""

from __future__ import annotations

import math

import pytest
import torch

from tests.metrics.test_pck import loop_pck, make
from visattn.metrics import PoseEvaluator, pck, pck_by_subset
from visattn.metrics.pck import PCK_MODES

SUBSET_RULE = {"all": lambda v: v > 0, "visible": lambda v: v == 2, "occluded": lambda v: v == 1}


def loop_pck_per_keypoint(pred, gt, flags, boxes, alpha, subset):  # type: ignore[no-untyped-def]
    """MMPose's definition: per keypoint type, correct / counted over instances; mean over present types."""
    accuracies = []
    for k in range(pred.shape[1]):
        correct = counted = 0
        for n in range(pred.shape[0]):
            scale = max(float(boxes[n, 2]), float(boxes[n, 3]))
            if scale <= 0 or not SUBSET_RULE[subset](int(flags[n, k])):
                continue
            counted += 1
            dist = math.hypot(float(pred[n, k, 0] - gt[n, k, 0]), float(pred[n, k, 1] - gt[n, k, 1]))
            correct += dist < alpha * scale
        if counted:
            accuracies.append(correct / counted)
    return sum(accuracies) / len(accuracies) if accuracies else math.nan


def uneven(n: int = 40, k: int = 6, seed: int = 3) -> tuple[torch.Tensor, ...]:
    """Keypoint types labelled at different rates, the rare ones less accurate: the modes differ."""
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(n, k, 2, generator=g) * 200
    spread = torch.linspace(2.0, 12.0, k)  # (K,)
    pred = gt + torch.randn(n, k, 2, generator=g) * spread[None, :, None]
    rate = torch.linspace(1.0, 0.15, k)
    labelled = torch.rand(n, k, generator=g) < rate
    flags = torch.where(
        labelled, torch.randint(1, 3, (n, k), generator=g), torch.zeros(n, k, dtype=torch.long)
    )
    boxes = torch.cat([torch.zeros(n, 2), torch.rand(n, 2, generator=g) * 100 + 80], 1)
    return pred, gt, flags, boxes


@pytest.mark.parametrize("subset", ["all", "visible", "occluded"])
@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_per_keypoint_equals_loop(subset: str, alpha: float) -> None:
    for pred, gt, flags, boxes in (make(), uneven()):
        expected = loop_pck_per_keypoint(pred, gt, flags, boxes, alpha, subset)
        got = pck(pred, gt, flags, boxes, alpha=alpha, subset=subset, mode="per_keypoint")
        assert got == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("subset", ["all", "visible", "occluded"])
def test_pooled_is_the_default_and_equals_loop(subset: str) -> None:
    pred, gt, flags, boxes = uneven()
    correct, counted = loop_pck(pred, gt, flags, boxes, 0.05, subset)
    assert pck(pred, gt, flags, boxes, subset=subset) == pytest.approx(correct / counted, abs=1e-12)
    assert pck(pred, gt, flags, boxes, subset=subset, mode="pooled") == pck(
        pred, gt, flags, boxes, subset=subset
    )


def test_modes_differ_when_types_are_counted_unevenly() -> None:
    pred, gt, flags, boxes = uneven()
    pooled = pck(pred, gt, flags, boxes, alpha=0.1)
    per_type = pck(pred, gt, flags, boxes, alpha=0.1, mode="per_keypoint")
    # the frequent, accurate types dominate the pooled share
    assert pooled > per_type + 0.02


def test_modes_agree_when_every_type_is_counted_equally() -> None:
    pred, gt, _, boxes = uneven()
    flags = torch.full(pred.shape[:2], 2)
    assert pck(pred, gt, flags, boxes, mode="per_keypoint") == pytest.approx(pck(pred, gt, flags, boxes))


def test_type_without_counted_instance_is_left_out_not_zero() -> None:
    gt = torch.zeros(3, 3, 2)
    pred = torch.zeros(3, 3, 2)
    pred[1:, 0, 0] = 9.0  # type 0 missed twice (threshold 5 px)
    flags = torch.tensor([[2, 1, 0], [2, 0, 0], [2, 0, 0]])  # type 1 labelled once, type 2 never
    boxes = torch.tensor([[0.0, 0.0, 100.0, 50.0]] * 3)
    # type 0: 1 of 3, type 1: 1 of 1, type 2 left out -> (1/3 + 1) / 2; pooled: 2 of 4
    assert pck(pred, gt, flags, boxes, mode="per_keypoint") == pytest.approx(2 / 3, abs=1e-15)
    assert pck(pred, gt, flags, boxes) == 0.5
    assert pck(pred, gt, flags, boxes, subset="occluded", mode="per_keypoint") == 1.0  # type 1 only
    # a degenerate box removes its instance from every type
    boxes[1, 2:] = 0.0
    assert pck(pred, gt, flags, boxes, mode="per_keypoint") == pytest.approx((1 / 2 + 1) / 2, abs=1e-15)


def test_nothing_counted_is_nan_in_both_modes() -> None:
    pred, gt, _, boxes = make(n=3)
    flags = torch.full((3, 17), 2)
    for mode in PCK_MODES:
        assert math.isnan(pck(pred, gt, flags, boxes, subset="occluded", mode=mode))
        assert math.isnan(pck(pred[:0], gt[:0], flags[:0], boxes[:0], mode=mode))


def test_by_subset_passes_the_mode() -> None:
    pred, gt, flags, boxes = uneven()
    out = pck_by_subset(pred, gt, flags, boxes, mode="per_keypoint")
    for s in ("all", "visible", "occluded"):
        assert out[f"PCK_{s}"] == pck(pred, gt, flags, boxes, subset=s, mode="per_keypoint")
    assert pck_by_subset(pred, gt, flags, boxes) == pck_by_subset(pred, gt, flags, boxes, mode="pooled")


def test_bad_mode_raises() -> None:
    pred, gt, flags, boxes = make(n=2)
    with pytest.raises(ValueError, match=r"mode must be one of \['pooled', 'per_keypoint'\]"):
        pck(pred, gt, flags, boxes, mode="mean")
    with pytest.raises(TypeError, match="mode must be a str"):
        pck(pred, gt, flags, boxes, mode=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode must be one of"):
        pck_by_subset(pred, gt, flags, boxes, mode="per-keypoint")


def test_evaluator_pck_mode() -> None:
    pred, gt, flags, boxes = uneven(k=17)
    results = {}
    for mode in (None, "pooled", "per_keypoint"):
        ev = PoseEvaluator(None) if mode is None else PoseEvaluator(None, pck_mode=mode)
        ev.update(
            torch.arange(len(pred)),
            pred,
            torch.ones(pred.shape[:2]),
            flags=flags,
            boxes=boxes,
            gt_keypoints=gt,
        )
        results[mode] = ev.compute()
    assert results[None] == results["pooled"]
    assert results["per_keypoint"]["PCK_all"] != results["pooled"]["PCK_all"]
    for s in ("all", "visible", "occluded"):
        assert results["pooled"][f"PCK_{s}"] == pytest.approx(pck(pred, gt, flags, boxes, subset=s))
        expected = loop_pck_per_keypoint(pred, gt, flags, boxes, 0.05, s)
        assert results["per_keypoint"][f"PCK_{s}"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="pck_mode must be one of"):
        PoseEvaluator(None, pck_mode="mmpose")
    with pytest.raises(TypeError, match="pck_mode must be a str"):
        PoseEvaluator(None, pck_mode=1)  # type: ignore[arg-type]
