from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from tests.helpers import REPO_ROOT, assert_close
from visattn._config import set_fused_attn, use_fused_attn
from visattn.attention import KeypointAttention, occlusion_attn_bias, reference_attention


def _loop_attention(
    module: KeypointAttention, x: torch.Tensor, bias: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Oracle: per sample, head and query, with the projection weights sliced by hand."""
    batch, num_kp, dim = x.shape
    heads, dh = module.num_heads, module.head_dim
    w = module.qkv.weight
    b = module.qkv.bias if module.qkv.bias is not None else torch.zeros(w.shape[0], dtype=x.dtype)
    rows = dh if module.shared_qkv else dim  # size of each of the q / k / v blocks of the weight
    out = torch.zeros(batch, num_kp, dim, dtype=x.dtype)
    maps = torch.zeros(batch, heads, num_kp, num_kp, dtype=x.dtype)
    for n in range(batch):
        for h in range(heads):
            cols = slice(h * dh, (h + 1) * dh)
            if module.shared_qkv:
                inp = x[n, :, cols]  # this head's chunk, projected by the one shared matrix
                wq, wk, wv = w[:rows], w[rows : 2 * rows], w[2 * rows :]
                bq, bk, bv = b[:rows], b[rows : 2 * rows], b[2 * rows :]
            else:
                inp = x[n]
                wq, wk, wv = w[cols], w[dim:][cols], w[2 * dim :][cols]
                bq, bk, bv = b[cols], b[dim:][cols], b[2 * dim :][cols]
            q, k, v = inp @ wq.T + bq, inp @ wk.T + bk, inp @ wv.T + bv
            for i in range(num_kp):
                scores = torch.stack([q[i] @ k[j] / math.sqrt(dh) for j in range(num_kp)])
                if bias is not None:
                    scores = scores + bias[n, min(h, bias.shape[1] - 1), i]
                weights = torch.exp(scores - scores.max())
                weights = weights / weights.sum()
                maps[n, h, i] = weights
                out[n, i, cols] = sum(weights[j] * v[j] for j in range(num_kp))  # type: ignore[assignment]
    return out @ module.proj.weight.T + module.proj.bias, maps


def _randomise(module: torch.nn.Module) -> None:
    for p in module.parameters():
        torch.nn.init.normal_(p, std=0.4)


@pytest.mark.parametrize("shared_qkv", [False, True])
@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("bias_heads", [None, 1, 2])
def test_matches_loop_oracle(shared_qkv: bool, fused: bool, bias_heads: int | None) -> None:
    attn = KeypointAttention(8, 2, shared_qkv=shared_qkv)
    _randomise(attn)
    attn.fused_attn = fused
    x = torch.randn(3, 5, 8)
    bias = None if bias_heads is None else torch.randn(3, bias_heads, 5, 5)
    out, maps = attn(x, bias, return_attn=not fused)
    expected, expected_maps = _loop_attention(attn, x, bias)
    assert_close(out, expected)
    if not fused:
        assert maps is not None
        assert_close(maps, expected_maps)


@pytest.mark.parametrize("shared_qkv", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_fused_equals_reference_outputs_and_grads(shared_qkv: bool, with_bias: bool) -> None:
    attn = KeypointAttention(16, 4, shared_qkv=shared_qkv)
    _randomise(attn)
    x = torch.randn(4, 7, 16, requires_grad=True)
    visible = torch.rand(4, 7) > 0.5
    bias = occlusion_attn_bias(visible, 0.05) if with_bias else None
    weight = torch.randn(4, 7, 16)
    results = []
    for fused in (True, False):
        attn.fused_attn = fused
        attn.zero_grad()
        x.grad = None
        out, _ = attn(x, bias)
        (out * weight).sum().backward()
        grads = {n: p.grad.clone() for n, p in attn.named_parameters()}  # type: ignore[union-attr]
        results.append((out.detach(), x.grad.clone(), grads))  # type: ignore[union-attr]
    (out_f, gx_f, g_f), (out_r, gx_r, g_r) = results
    assert_close(out_f, out_r)
    assert_close(gx_f, gx_r)
    for name in g_f:
        assert_close(g_f[name], g_r[name])


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("shared_qkv", [False, True])
def test_gradcheck(fused: bool, shared_qkv: bool) -> None:
    attn = KeypointAttention(4, 2, shared_qkv=shared_qkv, dtype=torch.float64)
    _randomise(attn)
    attn.fused_attn = fused
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: attn(a, b)[0], (x, bias))


def test_return_attn_forces_reference_and_rows_sum_to_one() -> None:
    attn = KeypointAttention(8, 2)
    attn.fused_attn = True
    _, maps = attn(torch.randn(3, 6, 8), return_attn=True)
    assert maps is not None
    assert maps.shape == (3, 2, 6, 6)
    assert_close(maps.sum(-1), torch.ones(3, 2, 6))
    assert (maps >= 0).all()
    for fused in (True, False):
        attn.fused_attn = fused
        assert attn(torch.randn(3, 6, 8))[1] is None


def test_shared_qkv_parameter_shapes() -> None:
    attn = KeypointAttention(12, 3, qkv_bias=False, shared_qkv=True)
    assert attn.qkv.weight.shape == (12, 4)  # (3 Dh, Dh)
    assert attn.qkv.bias is None
    assert KeypointAttention(12, 3).qkv.weight.shape == (36, 12)


def test_reference_attention_function() -> None:
    q, k, v = torch.randn(3, 2, 1, 5, 4).unbind(0)
    out, maps = reference_attention(q, k, v)
    assert_close(torch.nn.functional.scaled_dot_product_attention(q, k, v), out)
    assert_close(maps.sum(-1), torch.ones(2, 1, 5))


def test_occlusion_bias_scales_attention_to_occluded_keys() -> None:
    q, k, v = torch.randn(3, 2, 2, 5, 4).unbind(0)
    visible = torch.tensor([[True, False, True, False, True], [False] * 5])
    scale = 0.1
    bias = occlusion_attn_bias(visible, scale)
    assert bias.shape == (2, 1, 5, 5)
    assert torch.isfinite(bias).all()
    _, plain = reference_attention(q, k, v)
    _, biased = reference_attention(q, k, v, bias)
    factor = torch.where(visible, 1.0, scale)[:, None, None, :]  # (B, 1, 1, K)
    expected = plain * factor
    expected = expected / expected.sum(-1, keepdim=True)
    assert_close(biased, expected)
    assert_close(biased[1], plain[1])  # every key occluded: plain attention


def test_edge_sizes() -> None:
    attn = KeypointAttention(8, 2)
    for fused in (True, False):
        attn.fused_attn = fused
        empty = torch.randn(0, 5, 8, requires_grad=True)
        out, _ = attn(empty, torch.zeros(0, 1, 5, 5))
        assert out.shape == (0, 5, 8)
        out.sum().backward()
        # K = 1: attention is the identity on the values
        x = torch.randn(2, 1, 8)
        value = x @ attn.qkv.weight[16:].T + attn.qkv.bias[16:]  # type: ignore[index]
        assert_close(attn(x)[0], value @ attn.proj.weight.T + attn.proj.bias)


def test_fused_flag_read_at_construction() -> None:
    previous = use_fused_attn()
    try:
        set_fused_attn(False)
        before = KeypointAttention(4, 1)
        set_fused_attn(True)
        after = KeypointAttention(4, 1)
        assert before.fused_attn is False
        assert after.fused_attn is True
    finally:
        set_fused_attn(previous)


def test_env_var_sets_default() -> None:
    # the default is fused, so the subprocess checks the non-default value (one torch import is ~2 s)
    code = "from visattn.attention import KeypointAttention; print(KeypointAttention(4, 1).fused_attn)"
    env = {**os.environ, "VISATTN_FUSED_ATTN": "0"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert result.stdout.strip() == "False"


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="dim must be divisible by num_heads, got dim=10 and num_heads=3"):
        KeypointAttention(10, 3)
    with pytest.raises(ValueError, match="num_heads must be a positive int, got 0"):
        KeypointAttention(8, 0)
    with pytest.raises(ValueError, match="dim must be a positive int, got -8"):
        KeypointAttention(-8, 2)
    with pytest.raises(TypeError, match="shared_qkv must be a bool"):
        KeypointAttention(8, 2, shared_qkv=1)  # type: ignore[arg-type]
    attn = KeypointAttention(8, 2)
    with pytest.raises(ValueError, match=r"x must be \(B, K, E\) with E=8, got \(2, 3, 6\)"):
        attn(torch.randn(2, 3, 6))
    with pytest.raises(ValueError, match="x must be"):
        attn(torch.randn(3, 8))
    with pytest.raises(ValueError, match=r"attn_bias must be \(B, 1 \| Hh, K, K\)"):
        attn(torch.randn(2, 3, 8), torch.zeros(2, 3, 3, 3))
    with pytest.raises(ValueError, match=r"attn_bias must be \(B, 1 \| Hh, K, K\)"):
        attn(torch.randn(2, 3, 8), torch.zeros(2, 1, 3))
    with pytest.raises(TypeError, match="attn_bias must be a floating-point"):
        attn(torch.randn(2, 3, 8), torch.zeros(2, 1, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"occluded_scale must be in \(0, 1\], got 0"):
        occlusion_attn_bias(torch.ones(1, 2, dtype=torch.bool), 0.0)
    with pytest.raises(TypeError, match="visible must be a bool tensor"):
        occlusion_attn_bias(torch.ones(1, 2), 0.5)
