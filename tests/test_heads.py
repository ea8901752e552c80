from __future__ import annotations

import pytest
import torch

from tests.helpers import assert_close
from visattn.heads import SimCCHead, simcc_num_bins


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
