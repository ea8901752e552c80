from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.helpers import assert_close
from visattn.visnet import VisNet


def _loop_visnet(net: VisNet, tokens: torch.Tensor, act: nn.Module) -> torch.Tensor:
    """Oracle: the MLP applied to one keypoint token at a time with plain matrix-vector products."""
    weights = [(layer.weight, layer.bias) for layer in net.layers]  # type: ignore[union-attr]
    out = torch.empty(tokens.shape[:2], dtype=tokens.dtype)
    for b in range(tokens.shape[0]):
        for k in range(tokens.shape[1]):
            h = tokens[b, k]
            for i, (w, bias) in enumerate(weights):
                h = w @ h + bias
                if i < len(weights) - 1:
                    h = act(h)
            out[b, k] = h[0]
    return out


def test_param_count_matches_paper() -> None:
    assert sum(p.numel() for p in VisNet(3072).parameters()) == 198_785


@pytest.mark.parametrize(("hidden", "act"), [((64, 32), nn.ReLU), ((5,), nn.Tanh), ((), nn.ReLU)])
def test_matches_loop_oracle(hidden: tuple[int, ...], act: type[nn.Module]) -> None:
    net = VisNet(24, hidden, act_layer=act)
    for p in net.parameters():  # non-zero biases so that they are exercised
        nn.init.normal_(p, std=0.3)
    tokens = torch.randn(3, 5, 24)
    logits = net(tokens)
    assert logits.shape == (3, 5)
    assert_close(logits, _loop_visnet(net, tokens, act()))


def test_input_is_not_detached() -> None:
    tokens = torch.randn(2, 4, 16, requires_grad=True)
    VisNet(16, (8,))(tokens).sum().backward()
    assert tokens.grad is not None
    assert tokens.grad.abs().sum() > 0


@pytest.mark.parametrize("shape", [(0, 17, 16), (1, 1, 16)])
def test_edge_sizes(shape: tuple[int, int, int]) -> None:
    net = VisNet(16)
    tokens = torch.randn(shape, requires_grad=True)
    logits = net(tokens)
    assert logits.shape == shape[:2]
    logits.sum().backward()
    for p in net.parameters():
        assert p.grad is not None
        assert torch.isfinite(p.grad).all()


def test_init_zero_bias_and_dtype() -> None:
    net = VisNet(16, dtype=torch.float64)
    assert all(layer.bias.abs().sum() == 0 for layer in net.layers)  # type: ignore[union-attr]
    assert net(torch.randn(2, 3, 16, dtype=torch.float64)).dtype == torch.float64


def test_bad_input() -> None:
    net = VisNet(16)
    with pytest.raises(ValueError, match=r"tokens must be \(B, K, D\) with D=16, got \(2, 3, 15\)"):
        net(torch.randn(2, 3, 15))
    with pytest.raises(ValueError, match="tokens must be"):
        net(torch.randn(3, 16))
    with pytest.raises(TypeError, match="tokens must be a floating-point"):
        net(torch.ones(2, 3, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="in_dim must be a positive int, got 0"):
        VisNet(0)
    with pytest.raises(ValueError, match=r"hidden\[1\] must be a positive int, got -3"):
        VisNet(8, (4, -3))
    with pytest.raises(TypeError, match="hidden must be a sequence"):
        VisNet(8, "64")  # type: ignore[arg-type]
