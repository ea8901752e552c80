"""SimCC codec against per-element loop oracles, round trips, flip test and input validation."""

from __future__ import annotations

import math

import pytest
import torch

from tests.helpers import assert_close
from visattn.codecs import SimCCCodec, SimCCTargets, simcc_decode, simcc_encode, simcc_flip_back
from visattn.keypoints import COCO_KEYPOINTS

H, W = 16, 12


# ------------------------------------------------------------------------------------------------
# loop oracles (plain Python floats, one element at a time)


def oracle_encode(kp, flags, height, width, ratio, sx, sy, normalize):
    nx, ny = round(width * ratio), round(height * ratio)
    batch, num = flags.shape
    x_labels = torch.zeros(batch, num, nx, dtype=torch.float64)
    y_labels = torch.zeros(batch, num, ny, dtype=torch.float64)
    weights = torch.zeros(batch, num, dtype=torch.float64)
    for b in range(batch):
        for k in range(num):
            if int(flags[b, k]) == 0:
                continue
            mx, my = float(kp[b, k, 0]) * ratio, float(kp[b, k, 1]) * ratio
            x_out = mx + 3 * sx < 0 or mx - 3 * sx > nx - 1
            y_out = my + 3 * sy < 0 or my - 3 * sy > ny - 1
            if x_out or y_out:
                continue
            weights[b, k] = 1.0
            for i in range(nx):
                value = math.exp(-((i - mx) ** 2) / (2 * sx * sx))
                x_labels[b, k, i] = value / (sx * math.sqrt(2 * math.pi)) if normalize else value
            for j in range(ny):
                value = math.exp(-((j - my) ** 2) / (2 * sy * sy))
                y_labels[b, k, j] = value / (sy * math.sqrt(2 * math.pi)) if normalize else value
    return x_labels, y_labels, weights


def oracle_decode(x_logits, y_logits, ratio):
    batch, num = x_logits.shape[:2]
    kp = torch.zeros(batch, num, 2, dtype=torch.float64)
    scores = torch.zeros(batch, num, dtype=torch.float64)
    for b in range(batch):
        for k in range(num):
            probs = []
            for axis, logits in enumerate((x_logits[b, k].tolist(), y_logits[b, k].tolist())):
                best = 0
                for i, v in enumerate(logits):
                    if v > logits[best]:
                        best = i
                kp[b, k, axis] = best / ratio
                denom = sum(math.exp(v - logits[best]) for v in logits)
                probs.append(1.0 / denom)
            scores[b, k] = min(probs)
    return kp, scores


def oracle_flip_back(x_logits, y_logits, flip_index, shift):
    batch, num, nx = x_logits.shape
    out_x = torch.zeros_like(x_logits)
    out_y = torch.zeros_like(y_logits)
    for b in range(batch):
        for k in range(num):
            src = flip_index[k]
            for i in range(nx):
                j = i + 1 if shift and i < nx - 1 else i
                out_x[b, k, i] = x_logits[b, src, nx - 1 - j]
            for i in range(y_logits.shape[-1]):
                out_y[b, k, i] = y_logits[b, src, i]
    return out_x, out_y


def random_inputs(batch=3, num=5, *, outside=True):
    kp = torch.rand(batch, num, 2, dtype=torch.float64) * torch.tensor(
        [W - 1.0, H - 1.0], dtype=torch.float64
    )
    if outside:  # a few keypoints far outside and just outside the crop
        kp[0, 0] = torch.tensor([-40.0, 5.0])
        kp[0, 1] = torch.tensor([5.0, H + 30.0])
        kp[1, 0] = torch.tensor([-2.0, -3.0])
        kp[1, 1] = torch.tensor([W + 3.0, 5.0])
    flags = torch.randint(0, 3, (batch, num))
    flags[:2, :2] = 2
    return kp.float(), flags


# ------------------------------------------------------------------------------------------------
# encode


@pytest.mark.parametrize(
    ("ratio", "sigma", "normalize"),
    [(2.0, 6.0, True), (1.0, 2.0, False), (3.0, (2.5, 4.0), True), (1.5, 1.0, True)],
)
def test_encode_matches_loop_oracle(ratio, sigma, normalize):
    kp, flags = random_inputs()
    sx, sy = sigma if isinstance(sigma, tuple) else (sigma, sigma)
    out = simcc_encode(kp, flags, (H, W), split_ratio=ratio, sigma=sigma, normalize=normalize)
    assert isinstance(out, SimCCTargets)
    ex, ey, ew = oracle_encode(kp.double(), flags, H, W, ratio, sx, sy, normalize)
    assert out.x_labels.dtype == torch.float32
    assert_close(out.x_labels, ex.float())
    assert_close(out.y_labels, ey.float())
    assert torch.equal(out.weights, ew.float())


def test_encode_window_rule_and_zero_rows():
    sigma = 2.0
    # bin coordinates: mu_x = 2x; window [mu - 6, mu + 6] vs [0, 23]
    kp = torch.tensor([[[-3.0, 4.0], [-3.1, 4.0], [14.5, 4.0], [14.6, 4.0], [4.0, -3.1], [4.0, 18.6]]])
    flags = torch.full((1, 6), 1)
    out = simcc_encode(kp, flags, (H, W), sigma=sigma)
    assert out.weights.tolist() == [[1.0, 0.0, 1.0, 0.0, 0.0, 0.0]]
    dead = out.weights[0] == 0
    assert out.x_labels[0, dead].abs().sum() == 0
    assert out.y_labels[0, dead].abs().sum() == 0


def test_encode_flag_zero_allows_nan_keypoints():
    kp = torch.tensor([[float("nan"), float("nan")], [3.0, 4.0]])
    out = simcc_encode(kp, torch.tensor([0, 2]), (H, W))
    assert out.weights.tolist() == [0.0, 1.0]
    assert torch.isfinite(out.x_labels).all()
    assert torch.isfinite(out.y_labels).all()


def test_encode_unbatched_equals_batched():
    kp, flags = random_inputs()
    batched = simcc_encode(kp, flags, (H, W))
    single = simcc_encode(kp[1], flags[1], (H, W))
    assert single.x_labels.shape == (5, 2 * W)
    assert single.weights.shape == (5,)
    for a, b in zip(single, batched):
        assert torch.equal(a, b[1])


def test_encode_float64_stays_float64():
    kp, flags = random_inputs()
    out = simcc_encode(kp.double(), flags, (H, W))
    assert out.x_labels.dtype == torch.float64
    ex, _, _ = oracle_encode(kp.double(), flags, H, W, 2.0, 6.0, 6.0, True)
    assert_close(out.x_labels, ex)


@pytest.mark.parametrize("batch", [0, 1, 4])
def test_encode_edge_batch_sizes(batch):
    kp = torch.rand(batch, 1, 2) * 5
    out = simcc_encode(kp, torch.full((batch, 1), 2), (H, W))
    assert out.x_labels.shape == (batch, 1, 2 * W)
    assert out.y_labels.shape == (batch, 1, 2 * H)
    assert out.weights.shape == (batch, 1)


def test_encode_all_weights_zero():
    out = simcc_encode(torch.rand(2, 3, 2), torch.zeros(2, 3, dtype=torch.long), (H, W))
    assert out.weights.sum() == 0
    assert out.x_labels.abs().sum() == 0
    assert out.y_labels.abs().sum() == 0


def test_normalized_labels_sum_to_one_inside():
    out = simcc_encode(torch.tensor([[96.0, 128.0]]), torch.tensor([2]), (256, 192), sigma=6.0)
    assert abs(out.x_labels.sum().item() - 1.0) < 1e-4
    assert abs(out.y_labels.sum().item() - 1.0) < 1e-4


# ------------------------------------------------------------------------------------------------
# decode and round trip


@pytest.mark.parametrize("ratio", [1.0, 2.0, 3.0])
def test_round_trip_within_half_bin(ratio):
    codec = SimCCCodec((H, W), split_ratio=ratio, sigma=2.0)
    kp = torch.rand(4, 17, 2) * torch.tensor([W - 1.0, H - 1.0])
    flags = torch.full((4, 17), 2)
    targets = codec.encode(kp, flags)
    decoded, scores = codec.decode(targets.x_labels, targets.y_labels)
    assert (decoded - kp).abs().max() <= 0.5 / ratio + 1e-5
    assert ((scores > 0) & (scores <= 1)).all()


def test_decode_matches_loop_oracle():
    x = torch.randn(3, 4, 2 * W) * 3
    y = torch.randn(3, 4, 2 * H) * 3
    x[0, 0, 5] = x[0, 0, 9] = 100.0  # tie: first index wins
    kp, scores = simcc_decode(x, y, 2.0)
    ek, es = oracle_decode(x.double(), y.double(), 2.0)
    assert_close(kp, ek.float())
    assert_close(scores, es.float())
    assert kp[0, 0, 0].item() == 2.5
    assert scores.dtype == torch.float32


def test_decode_scores_are_probabilities_for_large_logits():
    x = torch.zeros(1, 2, 8)
    x[0, 0, 3] = 50.0  # raw logit far above 1: score must still be <= 1
    _kp, scores = simcc_decode(x, torch.zeros(1, 2, 6), 2.0)
    assert (scores <= 1).all()
    assert (scores > 0).all()
    assert abs(scores[0, 1].item() - 1 / 8) < 1e-6  # uniform x: 1/8 < uniform y 1/6


def test_decode_bf16_and_unbatched():
    x = torch.randn(2, 3, 2 * W)
    y = torch.randn(2, 3, 2 * H)
    kp16, s16 = simcc_decode(x.bfloat16(), y.bfloat16(), 2.0)
    ek, es = oracle_decode(x.bfloat16().double(), y.bfloat16().double(), 2.0)
    assert kp16.dtype == torch.float32
    assert_close(kp16, ek.float())
    assert_close(s16, es.float())
    kp1, s1 = simcc_decode(x[1], y[1], 2.0)
    assert kp1.shape == (3, 2)
    assert s1.shape == (3,)
    full = simcc_decode(x, y, 2.0)
    assert torch.equal(kp1, full[0][1])
    assert torch.equal(s1, full[1][1])


def test_decode_empty_batch():
    kp, scores = simcc_decode(torch.zeros(0, 17, 8), torch.zeros(0, 17, 6), 2.0)
    assert kp.shape == (0, 17, 2)
    assert scores.shape == (0, 17)


# ------------------------------------------------------------------------------------------------
# flip back


@pytest.mark.parametrize("shift", [True, False])
def test_flip_back_matches_loop_oracle(shift):
    flip = list(COCO_KEYPOINTS.flip_index)
    x = torch.randn(2, 17, 10)
    y = torch.randn(2, 17, 7)
    fx, fy = simcc_flip_back(x, y, flip, shift=shift)
    ex, ey = oracle_flip_back(x, y, flip, shift)
    assert torch.equal(fx, ex)
    assert torch.equal(fy, ey)
    tx, ty = simcc_flip_back(x, y, COCO_KEYPOINTS.flip_index_tensor(), shift=shift)
    assert torch.equal(tx, fx)
    assert torch.equal(ty, fy)


def test_flip_back_involution_and_shift_relation():
    flip = COCO_KEYPOINTS.flip_index
    x = torch.randn(3, 17, 10)
    y = torch.randn(3, 17, 7)
    twice = simcc_flip_back(*simcc_flip_back(x, y, flip, shift=False), flip, shift=False)
    assert torch.equal(twice[0], x)
    assert torch.equal(twice[1], y)
    # with shift: involution up to a one-bin move toward larger x (bin 0 keeps its value)
    sx, sy = simcc_flip_back(*simcc_flip_back(x, y, flip, shift=True), flip, shift=False)
    assert torch.equal(sx[..., 1:], x[..., :-1])
    assert torch.equal(sx[..., 0], x[..., 0])
    assert torch.equal(sy, y)


def test_flip_test_with_shift_recovers_integer_keypoints():
    """Simulate the flip test: the flipped crop has x' = W - 1 - x and swapped left/right labels."""
    codec = SimCCCodec((H, W), split_ratio=2.0, sigma=1.5)
    flip = COCO_KEYPOINTS.flip_index
    kp = torch.randint(0, W, (2, 17, 2)).float()
    kp[..., 1] = torch.randint(0, H, (2, 17)).float()
    flags = torch.full((2, 17), 2)
    flipped_kp = kp[:, list(flip)].clone()
    flipped_kp[..., 0] = W - 1 - flipped_kp[..., 0]
    t = codec.encode(flipped_kp, flags)  # what a perfect model predicts on the flipped crop
    back = codec.decode(*codec.flip_back(t.x_labels, t.y_labels, flip, shift=True))[0]
    assert torch.equal(back, kp)
    no_shift = codec.decode(*codec.flip_back(t.x_labels, t.y_labels, flip, shift=False))[0]
    assert torch.allclose(no_shift[..., 0], kp[..., 0] + 0.5)  # one bin to the right


def test_flip_back_unbatched_and_k1():
    x, y = torch.randn(1, 6), torch.randn(1, 4)
    fx, fy = simcc_flip_back(x, y, [0], shift=False)
    assert torch.equal(fx, x.flip(-1))
    assert torch.equal(fy, y)


# ------------------------------------------------------------------------------------------------
# codec object and validation


def test_codec_attributes_and_functions_agree():
    codec = SimCCCodec((256, 192), split_ratio=2.0, sigma=(6.0, 4.0))
    assert (codec.num_x_bins, codec.num_y_bins) == (384, 512)
    assert codec.sigma == (6.0, 4.0)
    kp, flags = random_inputs()
    a = codec.encode(kp * 10, flags)
    b = simcc_encode(kp * 10, flags, (256, 192), split_ratio=2.0, sigma=(6.0, 4.0))
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    assert "SimCCCodec" in repr(codec)
    assert SimCCCodec((255, 191), split_ratio=1.5).num_x_bins == round(191 * 1.5)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"input_size": (0, 12)}, ValueError, "input_size"),
        ({"input_size": (16,)}, TypeError, "input_size"),
        ({"split_ratio": 0.0}, ValueError, "split_ratio"),
        ({"split_ratio": -1.0}, ValueError, "split_ratio"),
        ({"sigma": 0.0}, ValueError, "sigma"),
        ({"sigma": (2.0, -1.0)}, ValueError, "sigma"),
        ({"sigma": (1.0, 2.0, 3.0)}, ValueError, "sigma"),
        ({"sigma": "6"}, TypeError, "sigma"),
        ({"normalize": 1}, TypeError, "normalize"),
    ],
)
def test_codec_rejects_bad_hyper_parameters(kwargs, exc, match):
    args = {"input_size": (H, W), **kwargs}
    size = args.pop("input_size")
    with pytest.raises(exc, match=match):
        SimCCCodec(size, **args)
    with pytest.raises(exc, match=match):
        simcc_encode(torch.zeros(1, 2), torch.ones(1), size, **args)


@pytest.mark.parametrize(
    ("kp", "flags", "exc", "match"),
    [
        (torch.zeros(2, 3, 2, 1), torch.ones(2, 3), ValueError, "keypoints"),
        (torch.zeros(3), torch.ones(3), ValueError, "keypoints"),
        (torch.zeros(2, 3, 3), torch.ones(2, 3), ValueError, "keypoints"),
        (torch.zeros(2, 3, 2), torch.ones(2, 4), ValueError, "flags"),
        (torch.zeros(2, 3, 2), torch.ones(3), ValueError, "flags"),
        (torch.zeros(3, 2), torch.ones(4), ValueError, "flags"),
        (torch.zeros(2, 3, 2), torch.full((2, 3), 3), ValueError, "flags"),
        (torch.zeros(2, 3, 2), torch.full((2, 3), -1), ValueError, "flags"),
        (torch.zeros(2, 3, 2), torch.ones(2, 3, dtype=torch.bool), TypeError, "flags"),
        (torch.zeros(2, 3, 2, dtype=torch.long), torch.ones(2, 3), TypeError, "keypoints"),
        ([[0.0, 0.0]], torch.ones(1), TypeError, "keypoints"),
        (torch.zeros(1, 2), [1], TypeError, "flags"),
        (torch.full((1, 2), float("nan")), torch.ones(1), ValueError, "keypoints"),
    ],
)
def test_encode_rejects_bad_inputs(kp, flags, exc, match):
    with pytest.raises(exc, match=match):
        SimCCCodec((H, W)).encode(kp, flags)


@pytest.mark.parametrize(
    ("x", "y", "exc", "match"),
    [
        (torch.zeros(2, 3, 25), torch.zeros(2, 3, 32), ValueError, r"x_logits.*Wx=24"),
        (torch.zeros(2, 3, 24), torch.zeros(2, 3, 31), ValueError, "y_logits"),
        (torch.zeros(2, 3, 24), torch.zeros(2, 4, 32), ValueError, "y_logits"),
        (torch.zeros(2, 3, 24), torch.zeros(3, 3, 32), ValueError, "y_logits"),
        (torch.zeros(2, 3, 4, 24), torch.zeros(2, 3, 32), ValueError, "x_logits"),
        (torch.zeros(2, 3, 24, dtype=torch.long), torch.zeros(2, 3, 32), TypeError, "x_logits"),
        (torch.zeros(2, 3, 24), None, TypeError, "y_logits"),
    ],
)
def test_decode_rejects_bad_logits(x, y, exc, match):
    with pytest.raises(exc, match=match):
        SimCCCodec((H, W)).decode(x, y)


@pytest.mark.parametrize(
    ("flip", "exc"),
    [
        ([0, 1], ValueError),
        ([0, 0, 1], ValueError),
        ([0.0, 1.0, 2.0], TypeError),
        (torch.zeros(3), TypeError),
        (3, TypeError),
    ],
)
def test_flip_back_rejects_bad_flip_index(flip, exc):
    with pytest.raises(exc, match="flip_index"):
        simcc_flip_back(torch.zeros(1, 3, 4), torch.zeros(1, 3, 5), flip)


def test_flip_back_rejects_non_bool_shift():
    with pytest.raises(TypeError, match="shift"):
        simcc_flip_back(torch.zeros(1, 1, 4), torch.zeros(1, 1, 5), [0], shift=1)
