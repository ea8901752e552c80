"""Heatmap codec against per-element loop oracles, round trips, flip test and input validation."""

from __future__ import annotations

import math

import pytest
import torch

from tests.helpers import assert_close
from visattn.codecs import HeatmapCodec, HeatmapTargets, heatmap_decode, heatmap_encode, heatmap_flip_back
from visattn.keypoints import COCO_KEYPOINTS

H, W = 32, 24  # input crop
HF, WF = 8, 6  # heatmap, stride 4


# ------------------------------------------------------------------------------------------------
# loop oracles


def oracle_encode(kp, flags, sigma):
    batch, num = flags.shape
    heatmaps = torch.zeros(batch, num, HF, WF, dtype=torch.float64)
    weights = torch.zeros(batch, num, dtype=torch.float64)
    for b in range(batch):
        for k in range(num):
            if int(flags[b, k]) == 0:
                continue
            mx = float(kp[b, k, 0]) * WF / W
            my = float(kp[b, k, 1]) * HF / H
            if mx + 3 * sigma < 0 or mx - 3 * sigma > WF - 1 or my + 3 * sigma < 0 or my - 3 * sigma > HF - 1:
                continue
            weights[b, k] = 1.0
            for i in range(HF):
                for j in range(WF):
                    heatmaps[b, k, i, j] = math.exp(-((j - mx) ** 2 + (i - my) ** 2) / (2 * sigma**2))
    return heatmaps, weights


def oracle_decode(heatmaps):
    batch, num, hf, wf = heatmaps.shape
    kp = torch.zeros(batch, num, 2, dtype=torch.float64)
    scores = torch.zeros(batch, num, dtype=torch.float64)
    for b in range(batch):
        for k in range(num):
            h = heatmaps[b, k].tolist()
            bi, bj = 0, 0
            for i in range(hf):
                for j in range(wf):
                    if h[i][j] > h[bi][bj]:
                        bi, bj = i, j
            x, y = float(bj), float(bi)
            if 0 < bj < wf - 1:
                diff = h[bi][bj + 1] - h[bi][bj - 1]
                x += 0.25 if diff > 0 else (-0.25 if diff < 0 else 0.0)
            if 0 < bi < hf - 1:
                diff = h[bi + 1][bj] - h[bi - 1][bj]
                y += 0.25 if diff > 0 else (-0.25 if diff < 0 else 0.0)
            kp[b, k, 0] = x * W / wf
            kp[b, k, 1] = y * H / hf
            scores[b, k] = h[bi][bj]
    return kp, scores


def oracle_flip_back(heatmaps, flip_index, shift):
    out = torch.zeros_like(heatmaps)
    batch, num, hf, wf = heatmaps.shape
    for b in range(batch):
        for k in range(num):
            for i in range(hf):
                for j in range(wf):
                    src = j - 1 if shift and j > 0 else j
                    out[b, k, i, j] = heatmaps[b, flip_index[k], i, wf - 1 - src]
    return out


def random_inputs(batch=3, num=5):
    kp = torch.rand(batch, num, 2) * torch.tensor([W - 1.0, H - 1.0])
    kp[0, 0] = torch.tensor([-40.0, 5.0])  # far outside: weight 0
    kp[0, 1] = torch.tensor([-6.0, 5.0])  # outside the crop but the window overlaps: weight 1
    kp[1, 0] = torch.tensor([5.0, H + 40.0])
    flags = torch.randint(0, 3, (batch, num))
    flags[:2, :2] = 1
    return kp, flags


# ------------------------------------------------------------------------------------------------
# encode


@pytest.mark.parametrize("sigma", [2.0, 1.0, 0.7])
def test_encode_matches_loop_oracle(sigma):
    kp, flags = random_inputs()
    out = heatmap_encode(kp, flags, (H, W), (HF, WF), sigma=sigma)
    assert isinstance(out, HeatmapTargets)
    eh, ew = oracle_encode(kp.double(), flags, sigma)
    assert_close(out.heatmaps, eh.float())
    assert torch.equal(out.weights, ew.float())
    assert out.weights[0, 0] == 0
    assert out.weights[0, 1] == 1
    assert out.weights[1, 0] == 0


def test_encode_peak_is_one_on_grid():
    out = heatmap_encode(torch.tensor([[[8.0, 12.0]]]), torch.tensor([[2]]), (H, W), (HF, WF))
    assert out.heatmaps[0, 0, 3, 2].item() == 1.0
    assert out.heatmaps.max().item() == 1.0


def test_encode_unbatched_edge_batches_and_zero_weights():
    kp, flags = random_inputs()
    full = heatmap_encode(kp, flags, (H, W), (HF, WF))
    single = heatmap_encode(kp[2], flags[2], (H, W), (HF, WF))
    assert torch.equal(single.heatmaps, full.heatmaps[2])
    assert torch.equal(single.weights, full.weights[2])
    empty = heatmap_encode(torch.zeros(0, 17, 2), torch.zeros(0, 17), (H, W), (HF, WF))
    assert empty.heatmaps.shape == (0, 17, HF, WF)
    assert empty.weights.shape == (0, 17)
    zero = heatmap_encode(torch.rand(2, 1, 2), torch.zeros(2, 1), (H, W), (HF, WF))
    assert zero.heatmaps.abs().sum() == 0
    assert zero.weights.sum() == 0


# ------------------------------------------------------------------------------------------------
# decode and round trip


def test_decode_matches_loop_oracle():
    heatmaps = torch.rand(3, 4, HF, WF)
    heatmaps[0, 0] = 0.0
    heatmaps[0, 0, 0, 3] = 1.0  # border row: no vertical shift
    heatmaps[0, 1] = 0.0
    heatmaps[0, 1, 4, 2] = heatmaps[0, 1, 5, 4] = 2.0  # tie: first in row-major order
    heatmaps[0, 2] = 0.5  # flat: argmax 0, no shift
    kp, scores = heatmap_decode(heatmaps, (H, W))
    ek, es = oracle_decode(heatmaps.double())
    assert_close(kp, ek.float())
    assert_close(scores, es.float())
    assert kp[0, 1].tolist() == [8.0, 16.0]


def test_decode_bf16_and_unbatched():
    heatmaps = torch.rand(2, 3, HF, WF).bfloat16()
    kp, scores = heatmap_decode(heatmaps, (H, W))
    ek, es = oracle_decode(heatmaps.double())
    assert kp.dtype == torch.float32
    assert_close(kp, ek.float())
    assert_close(scores, es.float())
    kp1, s1 = heatmap_decode(heatmaps[1], (H, W))
    assert torch.equal(kp1, kp[1])
    assert torch.equal(s1, scores[1])


def test_round_trip_tolerance():
    """Interior keypoints come back within 0.25 cells per axis, border ones within 0.5 cells."""
    codec = HeatmapCodec((H, W), (HF, WF), sigma=1.5)
    kp = torch.rand(6, 17, 2) * torch.tensor([W - 4.0, H - 4.0])
    targets = codec.encode(kp, torch.full((6, 17), 2))
    decoded, scores = codec.decode(targets.heatmaps)
    stride = torch.tensor([W / WF, H / HF])
    cells = kp / stride
    nearest = cells.round()
    interior = (nearest > 0) & (nearest < torch.tensor([WF - 1.0, HF - 1.0]))
    err = (decoded - kp).abs() / stride
    assert err[interior].max() <= 0.25 + 1e-4
    assert err.max() <= 0.5 + 1e-4
    assert (scores > 0.5).all()
    assert (scores <= 1).all()


def test_decode_empty_batch():
    kp, scores = heatmap_decode(torch.zeros(0, 3, HF, WF), (H, W))
    assert kp.shape == (0, 3, 2)
    assert scores.shape == (0, 3)


# ------------------------------------------------------------------------------------------------
# flip back


@pytest.mark.parametrize("shift", [True, False])
def test_flip_back_matches_loop_oracle(shift):
    flip = list(COCO_KEYPOINTS.flip_index)
    heatmaps = torch.randn(2, 17, 3, 5)
    out = heatmap_flip_back(heatmaps, flip, shift=shift)
    assert torch.equal(out, oracle_flip_back(heatmaps, flip, shift))
    assert torch.equal(heatmap_flip_back(heatmaps[1], flip, shift=shift), out[1])


def test_flip_back_involution_and_shift_relation():
    flip = COCO_KEYPOINTS.flip_index
    heatmaps = torch.randn(2, 17, 3, 5)
    twice = heatmap_flip_back(heatmap_flip_back(heatmaps, flip, shift=False), flip, shift=False)
    assert torch.equal(twice, heatmaps)
    moved = heatmap_flip_back(heatmap_flip_back(heatmaps, flip, shift=True), flip, shift=False)
    assert torch.equal(moved[..., :-1], heatmaps[..., 1:])
    assert torch.equal(moved[..., -1], heatmaps[..., -1])


def test_flip_test_shift_brings_peak_back():
    """Keypoints on cell centres: after flip-back with shift the decoded point is 1 px off, 3 px without."""
    height, width, hf, wf = 64, 48, 16, 12
    codec = HeatmapCodec((height, width), (hf, wf), sigma=1.0)
    flip = COCO_KEYPOINTS.flip_index
    # cells at least 2 from the border: column 0 is replicated by the shift, which can tie the peak
    kp = torch.stack(
        (torch.randint(2, wf - 2, (2, 17)).float() * 4, torch.randint(2, hf - 2, (2, 17)).float() * 4), dim=-1
    )
    flipped = kp[:, list(flip)].clone()
    flipped[..., 0] = width - 1 - flipped[..., 0]
    hm = codec.encode(flipped, torch.full((2, 17), 2)).heatmaps
    with_shift = codec.decode(codec.flip_back(hm, flip, shift=True))[0]
    without = codec.decode(codec.flip_back(hm, flip, shift=False))[0]
    assert torch.allclose(with_shift[..., 0], kp[..., 0] + 1.0)
    assert torch.allclose(without[..., 0], kp[..., 0] - 3.0)
    assert torch.equal(with_shift[..., 1], kp[..., 1])


# ------------------------------------------------------------------------------------------------
# validation


def test_codec_matches_functions():
    codec = HeatmapCodec((H, W), (HF, WF), sigma=1.5)
    kp, flags = random_inputs()
    a = codec.encode(kp, flags)
    b = heatmap_encode(kp, flags, (H, W), (HF, WF), sigma=1.5)
    assert torch.equal(a.heatmaps, b.heatmaps)
    assert torch.equal(a.weights, b.weights)
    assert torch.equal(codec.decode(a.heatmaps)[0], heatmap_decode(a.heatmaps, (H, W))[0])
    assert "HeatmapCodec" in repr(codec)


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        (((0, 24), (8, 6)), {}, ValueError, "input_size"),
        (((32, 24), (8, -6)), {}, ValueError, "heatmap_size"),
        (((32, 24), (8,)), {}, TypeError, "heatmap_size"),
        (((32, 24), (8, 6)), {"sigma": 0.0}, ValueError, "sigma"),
        (((32, 24), (8, 6)), {"sigma": -2.0}, ValueError, "sigma"),
    ],
)
def test_codec_rejects_bad_hyper_parameters(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        HeatmapCodec(*args, **kwargs)


@pytest.mark.parametrize(
    ("kp", "flags", "exc", "match"),
    [
        (torch.zeros(2, 3, 2, 1), torch.ones(2, 3), ValueError, "keypoints"),
        (torch.zeros(2, 3, 2), torch.ones(2, 4), ValueError, "flags"),
        (torch.zeros(2, 3, 2), torch.full((2, 3), 5), ValueError, "flags"),
        (torch.zeros(2, 3, 2), torch.ones(2, 3, dtype=torch.bool), TypeError, "flags"),
    ],
)
def test_encode_rejects_bad_inputs(kp, flags, exc, match):
    with pytest.raises(exc, match=match):
        HeatmapCodec((H, W), (HF, WF)).encode(kp, flags)


@pytest.mark.parametrize(
    ("heatmaps", "exc"),
    [
        (torch.zeros(2, 3, HF, WF + 1), ValueError),
        (torch.zeros(2, HF, WF, 1, 1), ValueError),
        (torch.zeros(2, 3, HF, WF, dtype=torch.long), TypeError),
        ("heatmaps", TypeError),
    ],
)
def test_decode_and_flip_reject_bad_heatmaps(heatmaps, exc):
    codec = HeatmapCodec((H, W), (HF, WF))
    with pytest.raises(exc, match="heatmaps"):
        codec.decode(heatmaps)
    with pytest.raises(exc, match="heatmaps"):
        codec.flip_back(heatmaps, [0, 1, 2])


def test_flip_back_rejects_bad_flip_index():
    with pytest.raises(ValueError, match="flip_index"):
        heatmap_flip_back(torch.zeros(1, 3, 2, 2), [0, 1])
