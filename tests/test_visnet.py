from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tests.helpers import assert_close
from visattn.visnet import VisNet, keypoint_evidence


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


def _evidence_loop(tokens: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Oracle for keypoint_evidence: softmax weights and pooled features one keypoint at a time."""
    b_, k_, d_ = tokens.shape
    c_ = features.shape[1]
    flat = features.reshape(b_, c_, d_)
    out = torch.empty(b_, k_, c_ + 2, dtype=torch.float64)
    for b in range(b_):
        for k in range(k_):
            logits = [float(v) for v in tokens[b, k]]
            top = max(logits)
            exps = [math.exp(v - top) for v in logits]
            total = sum(exps)
            weights = [e / total for e in exps]
            for c in range(c_):
                out[b, k, c] = sum(w * float(flat[b, c, d]) for d, w in enumerate(weights))
            out[b, k, c_] = max(weights)
            out[b, k, c_ + 1] = -sum(w * math.log(w) for w in weights if w > 0) / math.log(d_)
    return out


def test_keypoint_evidence_matches_loop_oracle() -> None:
    tokens = torch.randn(2, 3, 12) * 3
    features = torch.randn(2, 5, 3, 4)
    got = keypoint_evidence(tokens, features)
    assert got.shape == (2, 3, 7)
    torch.testing.assert_close(got.double(), _evidence_loop(tokens, features), atol=1e-5, rtol=1e-5)


def test_keypoint_evidence_of_a_one_hot_map_is_the_feature_there() -> None:
    tokens = torch.full((1, 1, 6), -1e4)
    tokens[0, 0, 4] = 0.0
    features = torch.randn(1, 3, 2, 3)
    out = keypoint_evidence(tokens, features)
    assert_close(out[0, 0, :3], features.flatten(2)[0, :, 4])
    assert out[0, 0, 3].item() == pytest.approx(1.0)  # peak
    assert out[0, 0, 4].item() == pytest.approx(0.0, abs=1e-6)  # entropy of one position
    uniform = keypoint_evidence(torch.zeros(1, 1, 6), features)
    assert_close(uniform[0, 0, :3], features.flatten(2)[0].mean(-1))
    assert uniform[0, 0, 4].item() == pytest.approx(1.0)  # entropy / log D of a uniform map


def test_feature_visnet_matches_mlp_on_concatenated_evidence() -> None:
    net = VisNet(12, (6, 4), feature_channels=5)
    for p in net.parameters():
        nn.init.normal_(p, std=0.3)
    tokens, features = torch.randn(2, 3, 12), torch.randn(2, 5, 3, 4)
    evidence = torch.cat([tokens, keypoint_evidence(tokens, features)], -1)  # (B, K, D + C + 2)
    assert net.evidence_dim == 12 + 5 + 2
    assert_close(net(tokens, features), _loop_visnet(net, evidence, nn.ReLU()))


def test_context_lets_keypoints_see_each_other() -> None:
    torch.manual_seed(0)
    plain, ctx = VisNet(12, (8, 4)), VisNet(12, (8, 4), context_depth=1)
    tokens = torch.randn(1, 5, 12)
    changed = tokens.clone()
    changed[0, 4] += 3.0  # change keypoint 4 only
    # without context the other keypoints' logits do not move; with context they do
    assert_close(plain(tokens)[0, :4], plain(changed)[0, :4])
    assert not torch.allclose(ctx(tokens)[0, :4], ctx(changed)[0, :4])
    ctx(tokens).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in ctx.parameters())


def test_rich_visnet_errors() -> None:
    net = VisNet(12, feature_channels=5)
    with pytest.raises(ValueError, match=r"features .* required"):
        net(torch.randn(2, 3, 12))
    with pytest.raises(ValueError, match="C=5"):
        net(torch.randn(2, 3, 12), torch.randn(2, 4, 3, 4))
    with pytest.raises(ValueError, match=r"Hf \* Wf = D = 12"):
        net(torch.randn(2, 3, 12), torch.randn(2, 5, 2, 4))
    with pytest.raises(ValueError, match="features must be"):
        net(torch.randn(2, 3, 12), torch.randn(3, 5, 3, 4))
    with pytest.raises(ValueError, match="feature_channels"):
        VisNet(12, feature_channels=-1)
    with pytest.raises(TypeError, match="context_depth"):
        VisNet(12, context_depth=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hidden layer"):
        VisNet(12, (), context_depth=1)
    with pytest.raises(ValueError, match="context_heads"):
        VisNet(12, (7,), context_depth=1, context_heads=2)
