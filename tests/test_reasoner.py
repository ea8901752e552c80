from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from tests.helpers import assert_close
from visattn.metrics.visibility import calibrate_visibility_threshold
from visattn.reasoner import ReasonerBlock, ReasonerOutput, VisibilityMaskedReasoner

# ----------------------------------------------------------------------------------------------------------
# Oracle: the whole reasoner written with plain ops, one head at a time, from the module's weights.


def _layer_norm(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias  # type: ignore[operator]


def _oracle_attention(block: ReasonerBlock, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
    attn = block.attn
    heads, dh, dim = attn.num_heads, attn.head_dim, attn.dim
    w = attn.qkv.weight
    b = attn.qkv.bias if attn.qkv.bias is not None else torch.zeros(w.shape[0], dtype=x.dtype)
    outs = []
    for h in range(heads):
        cols = slice(h * dh, (h + 1) * dh)
        if attn.shared_qkv:
            inp, idx = x[..., cols], [slice(0, dh), slice(dh, 2 * dh), slice(2 * dh, 3 * dh)]
        else:
            inp = x
            idx = [slice(h * dh, (h + 1) * dh), slice(dim + h * dh, dim + (h + 1) * dh)]
            idx.append(slice(2 * dim + h * dh, 2 * dim + (h + 1) * dh))
        q, k, v = (inp @ w[i].T + b[i] for i in idx)
        scores = q @ k.transpose(1, 2) / math.sqrt(dh) + key_bias[:, None, :]
        weights = torch.exp(scores - scores.amax(-1, keepdim=True))
        outs.append(weights / weights.sum(-1, keepdim=True) @ v)
    return torch.cat(outs, -1) @ attn.proj.weight.T + attn.proj.bias


def _oracle_mlp(block: ReasonerBlock, x: torch.Tensor) -> torch.Tensor:
    fc1, fc2 = block.mlp[0], block.mlp[2]
    h = x @ fc1.weight.T + fc1.bias
    return (h * torch.sigmoid(h)) @ fc2.weight.T + fc2.bias  # SiLU


def _oracle_block(block: ReasonerBlock, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
    if block.norm_first:
        x = x + _oracle_attention(block, _layer_norm(x, block.norm1), key_bias)
        return x + _oracle_mlp(block, _layer_norm(x, block.norm2))
    x = _layer_norm(x + _oracle_attention(block, x, key_bias), block.norm1)
    return _layer_norm(x + _oracle_mlp(block, x), block.norm2)


def _oracle_logits(r: VisibilityMaskedReasoner, tokens: torch.Tensor) -> torch.Tensor:
    """VisNet (Linear + ReLU, last layer linear), one keypoint at a time."""
    layers = list(r.visnet.layers)
    logits = torch.empty(tokens.shape[:2], dtype=torch.float64)
    with torch.no_grad():
        for b in range(tokens.shape[0]):
            for k in range(tokens.shape[1]):
                h = tokens[b, k]
                for i, layer in enumerate(layers):
                    h = layer.weight @ h + layer.bias  # type: ignore[operator]
                    if i < len(layers) - 1:
                        h = h.clamp_min(0.0)
                logits[b, k] = float(h[0])
    return logits


def _oracle_visible(r: VisibilityMaskedReasoner, tokens: torch.Tensor) -> torch.Tensor:
    """The threshold rule ``sigmoid(logit) >= threshold`` on the oracle logits."""
    return 1.0 / (1.0 + torch.exp(-_oracle_logits(r, tokens))) >= r.threshold


def _oracle(r: VisibilityMaskedReasoner, tokens: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    scale = r.occluded_scale
    features = r.masking in ("features", "both") and r.mask_source != "none"
    attention = r.masking in ("attention", "both") and r.mask_source != "none"
    mask = torch.where(visible, 1.0, scale) if features else torch.ones(visible.shape)
    key_bias = torch.where(visible, 0.0, math.log(scale)) if attention else torch.zeros(visible.shape)
    x = torch.relu((tokens * mask[..., None]) @ r.embed.weight.T + r.embed.bias)
    for block in r.blocks:
        x = _oracle_block(block, x, key_bias)  # type: ignore[arg-type]
    if isinstance(r.norm, nn.LayerNorm):
        x = _layer_norm(x, r.norm)
    return x @ r.proj.weight.T + r.proj.bias + tokens


def _randomise(module: nn.Module, std: float = 0.2) -> None:
    for name, p in module.named_parameters():
        if "norm" in name and name.endswith("weight"):
            nn.init.normal_(p, mean=1.0, std=0.1)
        else:
            nn.init.normal_(p, std=std)


def _small(**kwargs: Any) -> VisibilityMaskedReasoner:
    # the paper's mask (hard threshold, detached VisNet) unless a test asks for another one
    defaults: dict[str, Any] = {
        "embed_dim": 8, "depth": 2, "num_heads": 2, "visnet_hidden": (6,), "mask_mode": "hard",
        "visnet_grad_scale": 0.0,
    }  # fmt: skip
    return VisibilityMaskedReasoner(12, 5, **{**defaults, **kwargs})


# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("batch", "kp", "dim", "embed", "heads"), [(2, 17, 24, 8, 2), (3, 5, 7, 12, 3), (1, 2, 4, 4, 4)]
)
def test_shapes(batch: int, kp: int, dim: int, embed: int, heads: int) -> None:
    r = VisibilityMaskedReasoner(dim, kp, embed_dim=embed, depth=2, num_heads=heads)
    out = r(torch.randn(batch, kp, dim), return_attn=True)
    assert isinstance(out, ReasonerOutput)
    assert out.tokens.shape == (batch, kp, dim)
    assert out.vis_logits.shape == out.mask.shape == out.visible.shape == (batch, kp)
    assert out.vis_logits.dtype == torch.float32
    assert out.visible.dtype == torch.bool
    assert out.attn is not None
    assert len(out.attn) == 2
    assert all(a.shape == (batch, heads, kp, kp) for a in out.attn)


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("shared_qkv", [False, True])
@pytest.mark.parametrize("masking", ["features", "attention", "both"])
def test_matches_oracle(norm_first: bool, shared_qkv: bool, masking: str) -> None:
    r = _small(norm_first=norm_first, shared_qkv=shared_qkv, masking=masking, occluded_scale=0.1)
    _randomise(r)
    tokens = torch.randn(3, 5, 12)
    with torch.no_grad():  # centre the logits so that both decisions occur
        r.visnet.layers[-1].bias -= float(_oracle_logits(r, tokens).median()) + 1e-3  # type: ignore[operator]
    out = r(tokens)
    expected_visible = _oracle_visible(r, tokens)
    assert torch.equal(out.visible, expected_visible)
    assert 0 < int(expected_visible.sum()) < expected_visible.numel(), "need visible and occluded keypoints"
    assert_close(out.tokens, _oracle(r, tokens, expected_visible))


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("shared_qkv", [False, True])
def test_block_matches_oracle(norm_first: bool, shared_qkv: bool) -> None:
    block = ReasonerBlock(8, 2, norm_first=norm_first, shared_qkv=shared_qkv)
    _randomise(block)
    x = torch.randn(2, 4, 8)
    key_bias = torch.where(torch.rand(2, 4) < 0.5, 0.0, math.log(0.1))
    bias = key_bias[:, None, None, :].expand(2, 1, 4, 4)  # (B, 1, K, K)
    assert_close(block(x)[0], _oracle_block(block, x, torch.zeros(2, 4)))
    assert_close(block(x, bias)[0], _oracle_block(block, x, key_bias))


def test_block_bad_input() -> None:
    with pytest.raises(ValueError, match="dim must be a positive int, got 0"):
        ReasonerBlock(0, 2)
    with pytest.raises(ValueError, match="num_heads must be a positive int, got 0"):
        ReasonerBlock(8, 0)
    with pytest.raises(ValueError, match="mlp_ratio must be a finite number > 0"):
        ReasonerBlock(8, 2, mlp_ratio=-1.0)
    with pytest.raises(TypeError, match="norm_first must be a bool"):
        ReasonerBlock(8, 2, norm_first=1)  # type: ignore[arg-type]
    block = ReasonerBlock(8, 2)
    with pytest.raises(ValueError, match=r"x must be \(B, K, E\) with E=8, got \(2, 3, 6\)"):
        block(torch.randn(2, 3, 6))
    with pytest.raises(ValueError, match=r"x must be \(B, K, E\)"):
        block(torch.randn(3, 8))
    with pytest.raises(TypeError, match="x must be a floating-point"):
        block(torch.ones(2, 3, 8, dtype=torch.long))


@pytest.mark.parametrize("masking", ["features", "both"])
def test_fused_equals_reference(masking: str) -> None:
    r = _small(masking=masking, mask_source="ground_truth", shared_qkv=True, norm_first=False)
    _randomise(r)
    tokens = torch.randn(4, 5, 12, requires_grad=True)
    flags = torch.randint(0, 3, (4, 5))
    weight = torch.randn(4, 5, 12)
    results = []
    for fused in (True, False):
        for block in r.blocks:
            block.attn.fused_attn = fused
        r.zero_grad()
        tokens.grad = None
        out = r(tokens, flags)
        (out.tokens * weight).sum().backward()
        grads = {n: p.grad.clone() for n, p in r.named_parameters() if p.grad is not None}
        results.append((out.tokens.detach(), tokens.grad.clone(), grads))  # type: ignore[union-attr]
    (out_f, gx_f, g_f), (out_r, gx_r, g_r) = results
    assert_close(out_f, out_r)
    assert_close(gx_f, gx_r)
    assert g_f.keys() == g_r.keys()
    for name in g_f:
        assert_close(g_f[name], g_r[name])


@pytest.mark.parametrize("fused", [True, False])
def test_gradcheck(fused: bool) -> None:
    r = VisibilityMaskedReasoner(
        4,
        3,
        embed_dim=4,
        depth=1,
        num_heads=2,
        masking="both",
        mask_source="ground_truth",
        dtype=torch.float64,
    )
    _randomise(r, std=0.5)
    r.blocks[0].attn.fused_attn = fused  # type: ignore[union-attr]
    flags = torch.tensor([[2, 1, 2], [0, 2, 2]])
    tokens = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: r(t, flags).tokens, (tokens,))


def test_every_parameter_gets_a_finite_gradient() -> None:
    r = _small(masking="both")
    tokens = torch.randn(3, 5, 12, requires_grad=True)
    out = r(tokens)
    ((out.tokens * torch.randn_like(out.tokens)).sum() + out.vis_logits.sum()).backward()
    for name, p in r.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_visnet_input_is_detached() -> None:
    r = _small()
    tokens = torch.randn(3, 5, 12, requires_grad=True)
    out = r(tokens)
    (grad,) = torch.autograd.grad(out.vis_logits.sum(), tokens, allow_unused=True)
    assert grad is None
    out.vis_logits.sum().backward()
    assert all(p.grad is not None for p in r.visnet.parameters())


def test_residual_adds_unmasked_tokens_and_features_are_masked() -> None:
    r = _small(mask_source="ground_truth", occluded_scale=0.25)
    nn.init.zeros_(r.proj.weight)
    nn.init.zeros_(r.proj.bias)
    seen: list[torch.Tensor] = []
    r.embed.register_forward_hook(lambda _m, args, _o: seen.append(args[0]))
    tokens = torch.randn(2, 5, 12)
    flags = torch.tensor([[2, 1, 0, 2, 2], [1, 1, 1, 1, 1]])
    out = r(tokens, flags)
    assert torch.equal(out.tokens, tokens)
    expected_mask = torch.tensor([[1, 0.25, 0.25, 1, 1], [0.25] * 5])
    assert torch.equal(out.mask, expected_mask)
    assert_close(seen[0], tokens * expected_mask[..., None])


def test_mask_sources() -> None:
    torch.manual_seed(1)
    tokens = torch.randn(6, 5, 12)
    flags = torch.randint(0, 3, (6, 5))
    states = _small().state_dict()

    def build(**kwargs: Any) -> VisibilityMaskedReasoner:
        r = _small(**kwargs)
        r.load_state_dict(states)
        return r

    predicted, gt = build(), build(mask_source="ground_truth")
    out_p, out_gt = predicted(tokens, flags), gt(tokens, flags)
    assert torch.equal(out_gt.visible, flags == 2)
    assert torch.equal(out_gt.mask, torch.where(flags == 2, 1.0, 0.01))
    assert torch.equal(out_p.visible, torch.sigmoid(out_p.vis_logits) >= 0.5)
    with pytest.raises(TypeError, match="flags must hold COCO flags"):  # one type at the boundary
        gt(tokens, flags == 2)

    none = build(mask_source="none")(tokens, flags)
    assert torch.equal(none.mask, torch.ones(6, 5))
    assert none.visible.all()
    attention_only = build(masking="attention")(tokens)
    assert torch.equal(attention_only.mask, torch.ones(6, 5))

    mixed = build(mask_source="mixed", gt_prob=1.0)
    assert torch.equal(mixed.eval()(tokens, flags).tokens, out_p.tokens)
    assert torch.equal(mixed.eval()(tokens).tokens, out_p.tokens)  # eval needs no flags
    assert torch.equal(mixed.train()(tokens, flags).tokens, out_gt.tokens)
    never = build(mask_source="mixed", gt_prob=0.0).train()
    assert torch.equal(never(tokens, flags).tokens, out_p.tokens)
    half = build(mask_source="mixed", gt_prob=0.5).train()
    used = half(tokens, flags).visible
    per_sample = [
        bool(torch.equal(used[i], out_gt.visible[i]) or torch.equal(used[i], out_p.visible[i]))
        for i in range(6)
    ]
    assert all(per_sample)


def test_ground_truth_needs_visible() -> None:
    with pytest.raises(ValueError, match=r"visible .* required when mask_source='ground_truth'"):
        _small(mask_source="ground_truth")(torch.randn(2, 5, 12))
    with pytest.raises(ValueError, match=r"visible .* required when mask_source='mixed' in training"):
        _small(mask_source="mixed").train()(torch.randn(2, 5, 12))


def test_threshold_is_inclusive() -> None:
    r = _small()
    last = r.visnet.layers[-1]
    nn.init.zeros_(last.weight)  # logits exactly 0 -> probability 0.5
    nn.init.zeros_(last.bias)
    assert r(torch.randn(2, 5, 12)).visible.all()
    r_high = _small(threshold=0.6)
    # a state dict without the threshold buffer (written before it existed) keeps the module's threshold
    r_high.load_state_dict({k: v for k, v in r.state_dict().items() if k != "vis_threshold"})
    assert r_high.threshold == pytest.approx(0.6)
    assert not r_high(torch.randn(2, 5, 12)).visible.any()


def test_autocast_bf16_keeps_fp32_mask() -> None:
    dim = 256
    r = VisibilityMaskedReasoner(dim, 17, embed_dim=16, depth=1, visnet_hidden=())
    probe = r.visnet.layers[0]
    with torch.no_grad():
        nn.init.normal_(probe.weight)
        nn.init.zeros_(probe.bias)
    w = probe.weight.detach()[0].double()
    # tokens whose fp32 logits are tiny (|logit| ~ 1e-3) although w.x has terms of size ~1
    raw = torch.randn(4, 17, dim, dtype=torch.float64)
    target = torch.randn(4, 17, dtype=torch.float64) * 1e-3
    tokens = (raw - ((raw @ w - target) / (w @ w))[..., None] * w).float()
    reference = r(tokens)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lowp = r(tokens)
        direct = r.visnet(tokens)  # what VisNet would give if it ran under autocast
    assert direct.dtype == torch.bfloat16
    flips = (torch.sigmoid(direct.float()) >= 0.5) != reference.visible
    assert flips.any(), "test not sensitive: bf16 VisNet flips no decision"
    assert lowp.vis_logits.dtype == torch.float32
    assert torch.equal(lowp.vis_logits, reference.vis_logits)
    assert torch.equal(lowp.visible, reference.visible)
    assert torch.equal(lowp.mask, reference.mask)
    assert_close(lowp.tokens.float(), reference.tokens, dtype=torch.bfloat16)


@pytest.mark.parametrize("case", ["empty", "single", "all_occluded", "all_visible"])
@pytest.mark.parametrize("masking", ["features", "attention", "both"])
def test_edge_cases(case: str, masking: str) -> None:
    batch, kp = {"empty": (0, 5), "single": (3, 1)}.get(case, (3, 5))
    r = VisibilityMaskedReasoner(12, kp, embed_dim=8, depth=2, masking=masking, mask_source="ground_truth")
    flags = torch.full((batch, kp), 1 if case == "all_occluded" else 2)
    if case == "single":
        flags = torch.tensor([[2], [1], [0]])
    tokens = torch.randn(batch, kp, 12, requires_grad=True)
    out = r(tokens, flags, return_attn=True)
    assert out.tokens.shape == (batch, kp, 12)
    assert torch.isfinite(out.tokens).all()
    assert torch.equal(out.visible, flags == 2)
    ((out.tokens * torch.randn_like(out.tokens)).sum() + out.vis_logits.sum()).backward()
    assert tokens.grad is not None
    assert torch.isfinite(tokens.grad).all()
    for p in r.parameters():
        assert p.grad is not None
        assert torch.isfinite(p.grad).all()


def test_all_occluded_attention_masking_equals_plain_attention() -> None:
    r = _small(masking="attention", mask_source="ground_truth")
    plain = _small(mask_source="none")
    plain.load_state_dict(r.state_dict())
    tokens = torch.randn(2, 5, 12)
    assert_close(r(tokens, torch.ones(2, 5)).tokens, plain(tokens).tokens)


def test_return_attn() -> None:
    r = _small(depth=3)
    out = r(torch.randn(4, 5, 12), return_attn=True)
    assert out.attn is not None
    assert len(out.attn) == 3
    for maps in out.attn:
        assert maps.shape == (4, 2, 5, 5)
        assert_close(maps.sum(-1), torch.ones(4, 2, 5))
    assert r(torch.randn(4, 5, 12)).attn is None


def test_flags_are_shape_and_dtype_checked_for_every_source_but_never_read() -> None:
    for source in ("predicted", "none", "ground_truth", "mixed"):
        r = _small(mask_source=source)
        with pytest.raises(ValueError, match=r"flags must be \(B, K\) with B=2, K=5, got \(2, 4\)"):
            r(torch.randn(2, 5, 12), torch.ones(2, 4))
        with pytest.raises(TypeError, match=r"flags must hold COCO flags 0/1/2 .* got dtype torch.bool"):
            r(torch.randn(2, 5, 12), torch.ones(2, 5, dtype=torch.bool))
        # a forward never reads flag values (that would be a device sync per call): a 3 is not visible
        out = r(torch.randn(2, 5, 12), torch.full((2, 5), 3))
        assert out.tokens.shape == (2, 5, 12)
    gt = _small(mask_source="ground_truth")
    assert not gt(torch.randn(2, 5, 12), torch.full((2, 5), 3)).visible.any()


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"in_dim": 0}, ValueError, "in_dim must be a positive int, got 0"),
        ({"num_keypoints": -1}, ValueError, "num_keypoints must be a positive int, got -1"),
        ({"embed_dim": 0}, ValueError, "embed_dim must be a positive int, got 0"),
        ({"depth": 0}, ValueError, "depth must be a positive int, got 0"),
        ({"num_heads": 0}, ValueError, "num_heads must be a positive int, got 0"),
        ({"embed_dim": 10, "num_heads": 3}, ValueError, "embed_dim must be divisible by num_heads"),
        ({"occluded_scale": 0.0}, ValueError, r"occluded_scale must be in \(0, 1\], got 0.0"),
        ({"occluded_scale": 1.5}, ValueError, r"occluded_scale must be in \(0, 1\], got 1.5"),
        ({"threshold": 1.0}, ValueError, r"threshold must be in \(0, 1\), got 1.0"),
        ({"threshold": 0}, ValueError, r"threshold must be in \(0, 1\), got 0"),
        ({"mask_source": "gt"}, ValueError, "mask_source must be one of .*, got 'gt'"),
        ({"masking": "keys"}, ValueError, "masking must be one of .*, got 'keys'"),
        ({"gt_prob": 1.5}, ValueError, r"gt_prob must be in \[0, 1\], got 1.5"),
        ({"mlp_ratio": 0.0}, ValueError, "mlp_ratio must be a finite number > 0, got 0.0"),
        ({"visnet_hidden": (4, 0)}, ValueError, r"visnet_hidden\[1\] must be a positive int, got 0"),
        ({"depth": 2.0}, TypeError, "depth must be a positive int, got float"),
    ],
)
def test_bad_constructor_arguments(kwargs: dict[str, Any], error: type[Exception], pattern: str) -> None:
    args: dict[str, Any] = {"in_dim": 12, "num_keypoints": 5, "embed_dim": 8, **kwargs}
    with pytest.raises(error, match=pattern):
        VisibilityMaskedReasoner(args.pop("in_dim"), args.pop("num_keypoints"), **args)


def test_bad_tokens() -> None:
    r = _small()
    with pytest.raises(ValueError, match=r"tokens must be \(B, K, D\) with K=5, D=12, got \(2, 4, 12\)"):
        r(torch.randn(2, 4, 12))
    with pytest.raises(ValueError, match=r"tokens must be \(B, K, D\) with K=5, D=12, got \(2, 5, 11\)"):
        r(torch.randn(2, 5, 11))
    with pytest.raises(ValueError, match="tokens must be"):
        r(torch.randn(5, 12))
    with pytest.raises(TypeError, match="tokens must be a floating-point"):
        r(torch.ones(2, 5, 12, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"tokens must be a torch\.Tensor"):
        r([[0.0]])  # type: ignore[arg-type]


def test_export_eval_matches_eager() -> None:
    r = _small(masking="both").eval()
    tokens = torch.randn(3, 5, 12)
    exported = torch.export.export(r, (tokens,))
    got = exported.module()(tokens)
    expected = r(tokens)
    assert_close(got.tokens, expected.tokens)
    assert torch.equal(got.visible, expected.visible)


@pytest.mark.slow
def test_compile_fullgraph_matches_eager() -> None:
    torch._dynamo.reset()
    r = _small(masking="both", shared_qkv=True, norm_first=False)
    _randomise(r)
    tokens = torch.randn(3, 5, 12)
    flags = torch.randint(0, 3, (3, 5))
    compiled = torch.compile(r, fullgraph=True)
    got, expected = compiled(tokens, flags), r(tokens, flags)
    assert_close(got.tokens, expected.tokens)
    assert_close(got.vis_logits, expected.vis_logits)
    assert torch.equal(got.visible, expected.visible)


# ----------------------------------------------------------------------------------------------------------
# visibility-predictor options: soft masks, the threshold buffer, backbone evidence, detaching


def _oracle_with_mask(r: VisibilityMaskedReasoner, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The reasoner's data flow for a given feature mask (features masking only)."""
    x = torch.relu((tokens * mask[..., None]) @ r.embed.weight.T + r.embed.bias)
    for block in r.blocks:
        x = _oracle_block(block, x, torch.zeros(mask.shape))  # type: ignore[arg-type]
    if isinstance(r.norm, nn.LayerNorm):
        x = _layer_norm(x, r.norm)
    return x @ r.proj.weight.T + r.proj.bias + tokens


def test_soft_mask_follows_the_probability() -> None:
    r = _small(mask_source="predicted", mask_mode="soft", occluded_scale=0.1)
    _randomise(r)
    tokens = torch.randn(3, 5, 12)
    out = r(tokens)
    prob = 1.0 / (1.0 + torch.exp(-_oracle_logits(r, tokens)))
    expected_mask = (0.1 + 0.9 * prob).float()
    assert_close(out.mask, expected_mask)
    assert_close(out.tokens, _oracle_with_mask(r, tokens, expected_mask))
    assert torch.equal(out.visible, _oracle_visible(r, tokens))  # the thresholded decision is still reported


def test_soft_mask_keeps_ground_truth_rows_hard_in_mixed_training() -> None:
    r = _small(mask_source="mixed", mask_mode="soft", gt_prob=1.0).train()
    flags = torch.randint(0, 3, (4, 5))
    out = r(torch.randn(4, 5, 12), flags)
    assert_close(out.mask, torch.where(flags == 2, 1.0, r.occluded_scale))
    r.gt_prob = 0.0
    out = r(torch.randn(4, 5, 12), flags)
    assert_close(out.mask, r.occluded_scale + (1 - r.occluded_scale) * torch.sigmoid(out.vis_logits))


def test_threshold_buffer_round_trips_and_calibrates() -> None:
    r = _small(threshold=0.3)
    state = r.state_dict()
    assert state["vis_threshold"].dtype == torch.float32
    assert state["vis_threshold"].item() == pytest.approx(0.3)
    other = _small()
    other.load_state_dict(state)
    assert other.threshold == pytest.approx(0.3)
    tokens = torch.randn(6, 5, 12)
    assert torch.equal(other(tokens).visible, _oracle_visible(other, tokens))
    other.set_threshold(0.7)
    assert other.vis_threshold.item() == pytest.approx(0.7)
    assert torch.equal(other(tokens).visible, _oracle_visible(other, tokens))
    logits, flags = torch.randn(40, 5), torch.randint(0, 3, (40, 5))
    chosen = other.calibrate_threshold(logits, flags)
    assert chosen == pytest.approx(calibrate_visibility_threshold(logits, flags))
    assert other.threshold == pytest.approx(chosen, abs=1e-6)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="threshold"):
            other.set_threshold(bad)


def test_visnet_sees_backbone_features_when_asked() -> None:
    r = _small(feature_channels=4)
    tokens, features = torch.randn(2, 5, 12), torch.randn(2, 4, 3, 4)
    out = r(tokens, features=features)
    assert_close(out.vis_logits, r.visnet(tokens, features))
    assert r.feature_channels == 4
    with pytest.raises(ValueError, match="features"):
        r(tokens)


@pytest.mark.parametrize("scale", [0.0, 0.25, 1.0])
def test_visnet_grad_scale_sets_how_much_visibility_gradient_reaches_the_inputs(scale: float) -> None:
    torch.manual_seed(0)
    r = _small(feature_channels=4, visnet_grad_scale=scale)
    full = _small(feature_channels=4, visnet_grad_scale=1.0)
    full.load_state_dict(r.state_dict())
    grads = []
    for module in (r, full):
        tokens = torch.randn(2, 5, 12, generator=torch.Generator().manual_seed(1)).requires_grad_()
        features = torch.randn(2, 4, 3, 4, generator=torch.Generator().manual_seed(2)).requires_grad_()
        out = module(tokens, features=features)
        out.vis_logits.sum().backward()
        grads.append([torch.zeros_like(t) if t.grad is None else t.grad for t in (tokens, features)])
        assert_close(out.vis_logits, full(tokens, features=features).vis_logits)  # values never change
    for scaled, whole in zip(*grads):
        assert whole.abs().sum() > 0
        assert_close(scaled, scale * whole)


def test_bad_predictor_options() -> None:
    with pytest.raises(ValueError, match="mask_mode"):
        _small(mask_mode="fuzzy")
    with pytest.raises(ValueError, match="visnet_grad_scale"):
        _small(visnet_grad_scale=1.5)
    with pytest.raises(ValueError, match="feature_channels"):
        _small(feature_channels=-2)


def test_defaults_are_the_measured_best_configuration() -> None:
    """Soft masks and a 1% visibility gradient by default (docs: Does it help?)."""
    r = VisibilityMaskedReasoner(12, 5, embed_dim=8)
    assert r.mask_mode == "soft"
    assert r.visnet_grad_scale == 0.01
    assert r.feature_channels == 0  # a bare reasoner has no backbone features; SimCCAdapter passes them
    assert r.threshold == 0.5


def test_dtype_and_device_mismatches_get_visattn_errors() -> None:
    r = _small()
    with pytest.raises(
        TypeError, match=r"tokens has dtype torch.float64 but the reasoner's parameters are torch.float32"
    ):
        r(torch.randn(2, 5, 12, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"tokens is on meta but the reasoner's parameters are on cpu"):
        r(torch.randn(2, 5, 12, device="meta"))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast handles a dtype difference itself
        assert r(torch.randn(2, 5, 12).bfloat16()).tokens.shape == (2, 5, 12)
