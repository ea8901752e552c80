"""The visibility convention (COCO flags -> bool) and the mask rule, against element-wise loops."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from visattn.visibility import (
    flags_to_visible,
    predicted_visible,
    select_visible,
    soft_visibility_mask,
    teacher_forcing_prob,
    visibility_mask,
)


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.float32])
def test_flags_to_visible_matches_loop(dtype: torch.dtype) -> None:
    flags = torch.randint(0, 3, (4, 7)).to(dtype)
    got = flags_to_visible(flags)
    assert got.dtype == torch.bool
    assert got.shape == flags.shape
    for b in range(4):
        for k in range(7):
            assert bool(got[b, k]) == (int(flags[b, k]) == 2)  # v = 0 and v = 1 count as occluded


def test_flags_to_visible_passes_bools_and_any_shape() -> None:
    visible = torch.rand(3, 5) > 0.5
    assert torch.equal(flags_to_visible(visible), visible)
    assert flags_to_visible(torch.tensor([2, 0, 1])).tolist() == [True, False, False]
    assert flags_to_visible(torch.zeros(0, 17, dtype=torch.long)).shape == (0, 17)


def test_flags_to_visible_checks_the_type_never_the_values() -> None:
    # reading values would synchronise the device in every forward: they are checked where flags enter
    assert flags_to_visible(torch.tensor([[0, 3, 2]])).tolist() == [[False, False, True]]
    with pytest.raises(TypeError, match=r"visible must hold COCO flags 0/1/2 or bools, got dtype"):
        flags_to_visible(torch.zeros(1, 2, dtype=torch.complex64), name="visible")
    with pytest.raises(TypeError, match=r"visible must be a torch\.Tensor"):
        flags_to_visible([[0, 2]], name="visible")  # type: ignore[arg-type]


@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.9])
def test_predicted_visible_matches_loop(threshold: float) -> None:
    logits = torch.randn(3, 6) * 3
    logits[0, 0] = math.log(threshold / (1 - threshold))  # exactly at the threshold: visible
    got = predicted_visible(logits, threshold)
    assert got.dtype == torch.bool
    for b in range(3):
        for k in range(6):
            p = 1.0 / (1.0 + math.exp(-float(logits[b, k])))
            if abs(p - threshold) > 1e-6:
                assert bool(got[b, k]) == (p >= threshold)
    assert bool(got[0, 0])


def test_predicted_visible_decides_in_float32() -> None:
    logits = torch.tensor([[-1e-3, 1e-3]], dtype=torch.bfloat16)
    assert predicted_visible(logits).tolist() == [[False, True]]


@pytest.mark.parametrize("scale", [0.01, 0.5, 1.0])
def test_visibility_mask_matches_loop(scale: float) -> None:
    visible = torch.rand(4, 5) > 0.5
    mask = visibility_mask(visible, scale)
    assert mask.dtype == torch.float32
    for b in range(4):
        for k in range(5):
            expected = 1.0 if visible[b, k] else scale
            assert abs(float(mask[b, k]) - expected) < 1e-7
    assert visibility_mask(visible, scale, dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize("shape", [(0, 5), (3, 1)])
def test_edge_shapes(shape: tuple[int, int]) -> None:
    visible = torch.ones(shape, dtype=torch.bool)
    assert visibility_mask(visible).shape == shape
    assert predicted_visible(torch.zeros(shape)).shape == shape
    assert bool((visibility_mask(~visible) == torch.tensor(0.01)).all())


def test_bad_input() -> None:
    with pytest.raises(TypeError, match=r"visible must be a bool tensor \(B, K\), got dtype torch.int64"):
        visibility_mask(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"visible must be \(B, K\), got \(6,\)"):
        visibility_mask(torch.ones(6, dtype=torch.bool))
    for scale in (0.0, -0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match=r"occluded_scale must be in \(0, 1\]"):
            visibility_mask(torch.ones(1, 2, dtype=torch.bool), scale)
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\), got 1.0"):
        predicted_visible(torch.zeros(1, 2), 1.0)
    with pytest.raises(TypeError, match="vis_logits must be a floating-point"):
        predicted_visible(torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"vis_logits must be \(B, K\)"):
        predicted_visible(torch.zeros(1, 2, 3))


def test_select_visible_per_source() -> None:
    predicted = torch.rand(6, 5) > 0.5
    truth = torch.rand(6, 5) > 0.5
    for training in (True, False):
        used, from_gt = select_visible("none", predicted, truth, training=training)
        assert used.all()
        assert not from_gt.any()
        used, from_gt = select_visible("predicted", predicted, None, training=training)
        assert torch.equal(used, predicted)
        assert not from_gt.any()
        used, from_gt = select_visible("ground_truth", predicted, truth, training=training)
        assert torch.equal(used, truth)
        assert from_gt.all()
    used, _ = select_visible(
        "mixed", predicted, None, training=False
    )  # eval: the prediction, no truth needed
    assert torch.equal(used, predicted)
    for source in ("ground_truth", "mixed"):
        with pytest.raises(ValueError, match="visible"):
            select_visible(source, predicted, None, training=True)


def test_mixed_draws_one_coin_per_sample() -> None:
    """Each sample takes all of its keypoints from one source, and samples differ from each other."""
    batch, kp = 4000, 6
    predicted = torch.zeros(batch, kp, dtype=torch.bool)  # prediction: all occluded
    truth = torch.ones(batch, kp, dtype=torch.bool)  # truth: all visible
    gen = torch.Generator().manual_seed(0)
    used, from_gt = select_visible("mixed", predicted, truth, training=True, gt_prob=0.3, generator=gen)
    for b in range(batch):
        row = used[b].tolist()
        assert row in ([True] * kp, [False] * kp)  # never a mix inside one sample
        assert row[0] == bool(from_gt[b, 0])
    share = from_gt.float().mean().item()
    assert abs(share - 0.3) < 4 * math.sqrt(0.3 * 0.7 / batch)  # per-sample Bernoulli(0.3)
    _, again = select_visible(
        "mixed", predicted, truth, training=True, gt_prob=0.3, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(again, from_gt)


def test_soft_mask_matches_formula_loop() -> None:
    prob = torch.rand(3, 4)
    mask = soft_visibility_mask(prob, 0.05)
    for b in range(3):
        for k in range(4):
            assert mask[b, k].item() == pytest.approx(0.05 + 0.95 * prob[b, k].item(), abs=1e-6)
    assert soft_visibility_mask(torch.ones(1, 2)).tolist() == [[1.0, 1.0]]
    assert soft_visibility_mask(torch.zeros(1, 1), 0.2, dtype=torch.float64).dtype == torch.float64
    with pytest.raises(ValueError, match="occluded_scale"):
        soft_visibility_mask(prob, 0.0)
    with pytest.raises(ValueError, match="vis_prob"):
        soft_visibility_mask(torch.rand(3), 0.1)


def test_teacher_forcing_schedule() -> None:
    total = 200
    values = [teacher_forcing_prob(s, total) for s in range(total)]
    assert values[0] == 1.0
    assert all(a >= b for a, b in itertools.pairwise(values))  # never rises
    assert values[150] == 0.0
    assert values[-1] == 0.0
    assert teacher_forcing_prob(50, total) == pytest.approx(1 - 50 / 150)
    assert teacher_forcing_prob(0, total, start=0.5, until=1.0) == 0.5
    with pytest.raises(ValueError, match="step"):
        teacher_forcing_prob(-1, total)
    with pytest.raises(ValueError, match="until"):
        teacher_forcing_prob(0, total, until=0.0)


def test_predicted_visible_with_a_tensor_threshold() -> None:
    logits = torch.randn(4, 6)
    for value in (0.2, 0.5, 0.8):
        assert torch.equal(predicted_visible(logits, torch.tensor(value)), predicted_visible(logits, value))
    with pytest.raises(ValueError, match="threshold"):
        predicted_visible(logits, torch.tensor([0.5, 0.5]))
