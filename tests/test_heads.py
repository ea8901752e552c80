from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers import assert_close
from visattn.codecs import (
    heatmap_decode,
    heatmap_encode,
    heatmap_flip_back,
    simcc_decode,
    simcc_encode,
    simcc_flip_back,
    simcc_num_bins,
)
from visattn.heads import HeatmapHead, HeatmapOutput, PoseHead, SimCCHead, SimCCOutput
from visattn.keypoints import get_keypoint_info
from visattn.losses import heatmap_mse_loss, simcc_kl_loss


@pytest.mark.parametrize(
    ("input_size", "split_ratio", "expected"),
    [
        ((256, 192), 2.0, (384, 512)),
        ((16, 12), 1.0, (12, 16)),
        ((10, 7), 1.5, (10, 15)),
        ((8, 8), 0.5, (4, 4)),
    ],
)
def test_num_bins(input_size: tuple[int, int], split_ratio: float, expected: tuple[int, int]) -> None:
    head = SimCCHead(8, input_size, split_ratio=split_ratio)
    assert simcc_num_bins(input_size, split_ratio) == expected
    assert (head.num_x_bins, head.num_y_bins) == expected
    assert head.x_head.out_features == expected[0]
    assert head.y_head.out_features == expected[1]
    assert head.input_size == input_size
    assert head.split_ratio == split_ratio


@pytest.mark.parametrize("bias", [True, False])
def test_forward_matches_loop(bias: bool) -> None:
    head = SimCCHead(6, (4, 5), bias=bias)
    tokens = torch.randn(2, 3, 6)
    x_logits, y_logits = head(tokens)
    assert x_logits.shape == (2, 3, 10)
    assert y_logits.shape == (2, 3, 8)
    assert (head.x_head.bias is None) == (not bias)
    for b in range(2):
        for k in range(3):
            for linear, out in ((head.x_head, x_logits), (head.y_head, y_logits)):
                expected = [
                    sum(float(tokens[b, k, d]) * float(linear.weight[j, d].detach()) for d in range(6))
                    + (float(linear.bias[j].detach()) if linear.bias is not None else 0.0)
                    for j in range(linear.out_features)
                ]
                assert_close(out[b, k].detach(), torch.tensor(expected))


def test_gradients_and_empty_batch() -> None:
    head = SimCCHead(6, (4, 5))
    x_logits, y_logits = head(torch.randn(2, 3, 6))
    (x_logits.sum() + y_logits.pow(2).sum()).backward()
    for name, param in head.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
    x_logits, y_logits = head(torch.randn(0, 3, 6))
    assert x_logits.shape == (0, 3, 10)
    assert y_logits.shape == (0, 3, 8)


def test_device_dtype() -> None:
    head = SimCCHead(6, (4, 5), dtype=torch.float64, device="cpu")
    x_logits, _ = head(torch.randn(1, 2, 6, dtype=torch.float64))
    assert x_logits.dtype == torch.float64
    assert head.x_head.weight.dtype == torch.float64


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="in_dim"):
        SimCCHead(0, (4, 4))
    with pytest.raises(TypeError, match="input_size"):
        SimCCHead(4, 4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="split_ratio"):
        SimCCHead(4, (4, 4), split_ratio=-1.0)
    with pytest.raises(ValueError, match="bin"):
        SimCCHead(4, (1, 1), split_ratio=0.1)
    with pytest.raises(TypeError, match="bias"):
        SimCCHead(4, (4, 4), bias=1)  # type: ignore[arg-type]
    head = SimCCHead(4, (4, 4))
    with pytest.raises(ValueError, match=r"tokens must be \(B, K, D\) with D=4, got \(2, 3, 5\)"):
        head(torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="tokens"):
        head(torch.zeros(3, 4))
    with pytest.raises(TypeError, match="floating"):
        head(torch.zeros(2, 3, 4, dtype=torch.long))


# ----------------------------------------------------------------------------------------------------
# the head protocol: targets, decoding, flip-back and loss owned by each head kind

FLIP = get_keypoint_info("coco").flip_index


def _simcc_output(batch: int = 2, k: int = 17, bins: tuple[int, int] = (24, 32)) -> SimCCOutput:
    g = torch.Generator().manual_seed(0)
    return SimCCOutput(
        torch.randn(batch, k, bins[0], generator=g),
        torch.randn(batch, k, bins[1], generator=g),
        torch.randn(batch, k, generator=g),
        torch.rand(batch, k, generator=g),
    )


def test_heads_implement_the_protocol() -> None:
    for head in (SimCCHead(48, (16, 12)), HeatmapHead((8, 6))):
        assert isinstance(head, PoseHead)
    assert SimCCHead(48, (16, 12)).output_type is SimCCOutput
    assert HeatmapHead((8, 6)).output_type is HeatmapOutput
    assert not isinstance(nn.Linear(2, 2), PoseHead)


def test_simcc_head_conventions_equal_the_codec_functions() -> None:
    head = SimCCHead(48, (16, 12), split_ratio=2.0, sigma=3.0)
    keypoints = torch.tensor([[[3.0, 5.0], [11.0, 15.0]]])
    flags = torch.tensor([[2, 1]])
    targets = head.encode(keypoints, flags)
    expected = simcc_encode(keypoints, flags, (16, 12), split_ratio=2.0, sigma=3.0)
    for got, want in zip(targets, expected):
        assert torch.equal(got, want)
    out = _simcc_output()
    kp, score = head.decode(out)
    kp_ref, score_ref = simcc_decode(out.x_logits, out.y_logits, 2.0)
    assert torch.equal(kp, kp_ref)
    assert torch.equal(score, score_ref)
    back = head.flip_back(out, FLIP)
    x_ref, y_ref = simcc_flip_back(out.x_logits, out.y_logits, FLIP, shift=True)
    assert torch.equal(back.x_logits, x_ref)
    assert torch.equal(back.y_logits, y_ref)
    for k in range(17):  # the reasoner's outputs follow the keypoints they belong to
        assert torch.equal(back.vis_logits[:, k], out.vis_logits[:, FLIP[k]])
        assert torch.equal(back.mask[:, k], out.mask[:, FLIP[k]])


def test_simcc_head_loss_uses_the_targets_weights_unless_given() -> None:
    head = SimCCHead(48, (16, 12), sigma=2.0)
    out = _simcc_output(2, 2)
    targets = head.encode(torch.tensor([[[3.0, 5.0], [11.0, 15.0]]] * 2), torch.tensor([[2, 1], [2, 0]]))
    got = head.loss(out, targets)
    want = simcc_kl_loss(out.x_logits, out.y_logits, targets.x_labels, targets.y_labels, targets.weights)
    assert_close(got, want)
    zero = head.loss(out, targets, torch.zeros(2, 2))
    assert zero.item() == 0.0
    assert not torch.equal(got, zero)


def test_heatmap_head_reshapes_tokens_and_owns_its_conventions() -> None:
    head = HeatmapHead((8, 6), (32, 24), sigma=1.5)
    tokens = torch.randn(2, 17, 48)
    heatmaps = head(tokens)
    for b in range(2):
        for k in range(17):
            for i in range(8):
                for j in range(6):
                    assert heatmaps[b, k, i, j] == tokens[b, k, i * 6 + j]
    keypoints = torch.tensor([[5.0, 9.0], [20.0, 30.0]])
    flags = torch.tensor([2, 1])
    for got, want in zip(
        head.encode(keypoints, flags), heatmap_encode(keypoints, flags, (32, 24), (8, 6), sigma=1.5)
    ):
        assert torch.equal(got, want)
    out = HeatmapOutput(heatmaps, torch.randn(2, 17), None)
    kp, score = head.decode(out)
    kp_ref, score_ref = heatmap_decode(heatmaps, (32, 24))
    assert torch.equal(kp, kp_ref)
    assert torch.equal(score, score_ref)
    back = head.flip_back(out, FLIP)
    assert torch.equal(back.heatmaps, heatmap_flip_back(heatmaps, FLIP, shift=True))
    assert back.mask is None
    assert torch.equal(back.vis_logits, out.vis_logits[:, FLIP])
    targets = head.encode(keypoints[None], flags[None])
    pred = HeatmapOutput(heatmaps[:1, :2], None, None)
    assert_close(head.loss(pred, targets), heatmap_mse_loss(pred.heatmaps, targets.heatmaps, targets.weights))


def test_heatmap_head_default_crop_is_stride_4() -> None:
    assert HeatmapHead((64, 48)).input_size == (256, 192)
    with pytest.raises(ValueError, match="tokens must be"):
        HeatmapHead((8, 6))(torch.zeros(1, 17, 47))


def _dark_oracle(heatmap: np.ndarray, kernel: int) -> tuple[float, float]:
    """DARK by hand for one (Hf, Wf) map: zero-padded blur, log, Taylor step at an interior argmax."""
    hm_h, hm_w = heatmap.shape
    h = heatmap.astype(np.float64)
    if kernel > 1:
        sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
        taps = [math.exp(-((t - kernel // 2) ** 2) / (2 * sigma**2)) for t in range(kernel)]
        taps = [t / sum(taps) for t in taps]
        pad = kernel // 2

        def value(i: int, j: int) -> float:  # zero outside the map (MMPose's padding)
            return float(h[i, j]) if 0 <= i < hm_h and 0 <= j < hm_w else 0.0

        rows = np.zeros((hm_h + 2 * pad, hm_w))
        for i in range(-pad, hm_h + pad):
            for j in range(hm_w):
                rows[i + pad, j] = sum(taps[t] * value(i, j + t - pad) for t in range(kernel))
        blurred = np.zeros_like(h)
        for i in range(hm_h):
            for j in range(hm_w):
                blurred[i, j] = sum(taps[t] * rows[i + t, j] for t in range(kernel))
        h = blurred
    i0, j0 = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    log = np.log(np.maximum(h, 1e-10))

    def at(di: int, dj: int) -> float:
        return float(log[min(max(i0 + di, 0), hm_h - 1), min(max(j0 + dj, 0), hm_w - 1)])

    gx, gy = 0.5 * (at(0, 1) - at(0, -1)), 0.5 * (at(1, 0) - at(-1, 0))
    hxx = 0.25 * (at(0, 2) - 2 * at(0, 0) + at(0, -2))
    hyy = 0.25 * (at(2, 0) - 2 * at(0, 0) + at(-2, 0))
    hxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    hessian = np.array([[hxx, hxy], [hxy, hyy]])
    if np.linalg.det(hessian) == 0 or not (1 < j0 < hm_w - 2 and 1 < i0 < hm_h - 2):
        return float(j0), float(i0)  # MMPose leaves the border (and a flat peak) unrefined
    dx, dy = -np.linalg.solve(hessian, np.array([gx, gy]))
    return float(j0 + dx), float(i0 + dy)


@pytest.mark.parametrize("kernel", [0, 11])
def test_dark_decoding_matches_a_loop_oracle(kernel: int) -> None:
    g = torch.Generator().manual_seed(3)
    centres = torch.rand(1, 6, 2, generator=g) * torch.tensor([36.0, 44.0])  # peaks anywhere, borders too
    heatmaps = heatmap_encode(centres, torch.full((1, 6), 2), (48, 40), (12, 10), sigma=1.5).heatmaps
    heatmaps = (heatmaps + 0.05 * torch.rand(1, 6, 12, 10, generator=g)).view(2, 3, 12, 10)  # not clean
    kp, _ = heatmap_decode(heatmaps, (48, 40), refinement="dark", blur_kernel_size=kernel)
    for b in range(2):
        for k in range(3):
            x, y = _dark_oracle(heatmaps[b, k].numpy(), kernel)
            assert kp[b, k, 0].item() == pytest.approx(x * 4, abs=1e-3)
            assert kp[b, k, 1].item() == pytest.approx(y * 4, abs=1e-3)


def test_dark_recovers_sub_pixel_gaussians_where_the_quarter_rule_is_off_by_a_pixel() -> None:
    g = torch.Generator().manual_seed(0)
    keypoints = torch.rand(1, 200, 2, generator=g) * torch.tensor([150.0, 200.0]) + torch.tensor([20.0, 28.0])
    flags = torch.full((1, 200), 2)
    heatmaps = heatmap_encode(keypoints, flags, (256, 192), (64, 48)).heatmaps
    dark = HeatmapHead((64, 48), refinement="dark").decode(HeatmapOutput(heatmaps, None, None))[0]
    quarter = HeatmapHead((64, 48)).decode(HeatmapOutput(heatmaps, None, None))[0]
    unsmoothed = HeatmapHead((64, 48), refinement="dark", blur_kernel_size=0)
    exact = unsmoothed.decode(HeatmapOutput(heatmaps, None, None))[0]
    assert (exact - keypoints).abs().max().item() < 1e-3  # crop pixels: log of a Gaussian is quadratic
    assert (dark - keypoints).abs().median().item() < 2e-3  # MMPose's default 11x11 smoothing
    assert (quarter - keypoints).abs().median().item() > 0.3  # the quarter rule: up to 1 px


def test_simcc_head_loss_carries_rtmpose_kl_settings() -> None:
    head = SimCCHead(48, (16, 12), sigma=2.0, beta=10.0, label_softmax=True)
    out = _simcc_output(2, 2)
    targets = head.encode(torch.tensor([[[3.0, 5.0], [11.0, 15.0]]] * 2), torch.tensor([[2, 1], [2, 0]]))
    x, y, tx, ty, w = out.x_logits, out.y_logits, *targets
    want = simcc_kl_loss(x, y, tx, ty, w, beta=10.0, label_softmax=True)
    assert_close(head.loss(out, targets), want)
    assert not torch.allclose(want, simcc_kl_loss(x, y, tx, ty, w))
    with pytest.raises((TypeError, ValueError), match="beta"):
        SimCCHead(48, (16, 12), beta=-1.0)
