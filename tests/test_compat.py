from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from visattn.compat import from_official_checkpoint, to_official_checkpoint
from visattn.heads import SimCCHead
from visattn.reasoner import VisibilityMaskedReasoner

D, E, DH, DEPTH, FFN = 24, 8, 4, 2, 16  # token dim, embed dim, head dim (2 heads), blocks, MLP width
WX, HY = 12, 16  # SimCC bins: input (H, W) = (8, 6) at split ratio 2


def _authors_state(prefix: str = "module.", seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """A random checkpoint in the authors' released layout, tiny sizes."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, std: float = 0.3) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std

    tr = {"embedding_layer.embed.0.weight": rnd(E, D), "embedding_layer.embed.0.bias": rnd(E)}
    for i in range(DEPTH):
        for name in ("query", "key", "value"):
            tr[f"layers.{i}.attention.{name}_matrix.weight"] = rnd(DH, DH, std=0.6)
        tr[f"layers.{i}.attention.out.weight"] = rnd(E, E)
        tr[f"layers.{i}.attention.out.bias"] = rnd(E)
        for norm in ("norm1", "norm2"):
            tr[f"layers.{i}.{norm}.weight"] = 1 + rnd(E, std=0.1)
            tr[f"layers.{i}.{norm}.bias"] = rnd(E, std=0.1)
        tr[f"layers.{i}.feed_forward.0.weight"] = rnd(FFN, E)
        tr[f"layers.{i}.feed_forward.0.bias"] = rnd(FFN)
        tr[f"layers.{i}.feed_forward.2.weight"] = rnd(E, FFN)
        tr[f"layers.{i}.feed_forward.2.bias"] = rnd(E)
    tr["fc.weight"], tr["fc.bias"] = rnd(D, E), rnd(D)
    out = {"mlp_head_x.weight": rnd(WX, D), "mlp_head_y.weight": rnd(HY, D)}
    vis = {"conv1.weight": rnd(6, D, 1), "conv1.bias": rnd(6), "conv2.weight": rnd(5, 6, 1)}
    vis |= {"conv2.bias": rnd(5), "conv3.weight": rnd(1, 5, 1, std=1.0), "conv3.bias": torch.zeros(1)}
    return {
        "model_state_dict": {prefix + "backbone.weight": rnd(3)},
        "transformer_state_dict": {prefix + k: v for k, v in tr.items()},
        "output_state_dict": {prefix + k: v for k, v in out.items()},
        "visibility_state_dict": {prefix + k: v for k, v in vis.items()},
    }


def _authors_forward(
    ckpt: dict[str, dict[str, torch.Tensor]], x: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Independent re-implementation of the authors' modules, with plain ops and loops.

    Returns (visibility probabilities, refined tokens, x logits, y logits). ``mask`` (B, K) of 1 / 0.01
    overrides the predicted one.
    """
    tr = {k.removeprefix("module."): v for k, v in ckpt["transformer_state_dict"].items()}
    out = {k.removeprefix("module."): v for k, v in ckpt["output_state_dict"].items()}
    vis = {k.removeprefix("module."): v for k, v in ckpt["visibility_state_dict"].items()}

    # VisNet: kernel-1 Conv1d over the keypoint axis (channels = token dim), ReLU, sigmoid.
    h = x.transpose(1, 2)  # (B, D, K)
    h = F.relu(F.conv1d(h, vis["conv1.weight"], vis["conv1.bias"]))
    h = F.relu(F.conv1d(h, vis["conv2.weight"], vis["conv2.bias"]))
    prob = torch.sigmoid(F.conv1d(h, vis["conv3.weight"], vis["conv3.bias"]))[:, 0]  # (B, K)
    if mask is None:
        mask = torch.where(prob >= 0.5, 1.0, 0.01)

    t = F.relu(
        (x * mask[..., None]) @ tr["embedding_layer.embed.0.weight"].T + tr["embedding_layer.embed.0.bias"]
    )
    for i in range(DEPTH):
        p = f"layers.{i}."
        wq, wk, wv = (tr[p + f"attention.{n}_matrix.weight"] for n in ("query", "key", "value"))
        heads = []
        for c in range(E // DH):
            chunk = t[..., c * DH : (c + 1) * DH]
            q, k, v = chunk @ wq.T, chunk @ wk.T, chunk @ wv.T
            att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(DH), dim=-1)
            heads.append(att @ v)
        a = torch.cat(heads, -1) @ tr[p + "attention.out.weight"].T + tr[p + "attention.out.bias"]
        t = F.layer_norm(t + a, (E,), tr[p + "norm1.weight"], tr[p + "norm1.bias"], eps=1e-5)
        f = F.silu(t @ tr[p + "feed_forward.0.weight"].T + tr[p + "feed_forward.0.bias"])
        f = f @ tr[p + "feed_forward.2.weight"].T + tr[p + "feed_forward.2.bias"]
        t = F.layer_norm(t + f, (E,), tr[p + "norm2.weight"], tr[p + "norm2.bias"], eps=1e-5)
    y = t @ tr["fc.weight"].T + tr["fc.bias"] + x
    return prob, y, y @ out["mlp_head_x.weight"].T, y @ out["mlp_head_y.weight"].T


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, atol=2e-6, rtol=2e-6)


@pytest.mark.parametrize("prefix", ["module.", ""])
def test_matches_authors_modules_with_predicted_mask(prefix: str) -> None:
    ckpt = _authors_state(prefix)
    reasoner, head = from_official_checkpoint(ckpt, num_keypoints=5)
    x = torch.randn(3, 5, D)
    prob, y, x_logits, y_logits = _authors_forward(ckpt, x)
    out = reasoner(x)
    assert 0 < int(out.visible.sum()) < 15, "test needs both visible and occluded keypoints"
    assert torch.equal(out.visible, prob >= 0.5)
    _close(torch.sigmoid(out.vis_logits), prob)
    _close(out.tokens, y)
    got_x, got_y = head(out.tokens)
    _close(got_x, x_logits)
    _close(got_y, y_logits)


def test_matches_authors_modules_with_ground_truth_mask() -> None:
    ckpt = _authors_state()
    reasoner, head = from_official_checkpoint(ckpt, num_keypoints=5)
    reasoner.mask_source = "ground_truth"
    x = torch.randn(2, 5, D)
    flags = torch.tensor([[2, 1, 0, 2, 2], [1, 2, 1, 0, 2]])
    _, y, x_logits, y_logits = _authors_forward(ckpt, x, torch.where(flags == 2, 1.0, 0.01))
    out = reasoner(x, flags)
    _close(out.tokens, y)
    _close(head(out.tokens)[0], x_logits)
    _close(head(out.tokens)[1], y_logits)


def test_inferred_configuration() -> None:
    reasoner, head = from_official_checkpoint(_authors_state())
    assert reasoner.in_dim == D
    assert reasoner.num_keypoints == 17
    assert len(reasoner.blocks) == DEPTH
    block = reasoner.blocks[0]
    assert block.attn.num_heads == E // DH  # type: ignore[union-attr]
    assert block.attn.shared_qkv  # type: ignore[union-attr]
    assert not block.norm_first
    assert isinstance(block.mlp[1], torch.nn.SiLU)  # type: ignore[index]
    assert reasoner.visnet.hidden == (6, 5)
    assert reasoner.occluded_scale == 0.01
    assert reasoner.mask_source == "predicted"
    assert head.input_size == (HY // 2, WX // 2)
    assert head.x_head.bias is None
    assert head.y_head.bias is None


def test_paper_sized_checkpoint() -> None:
    reasoner = VisibilityMaskedReasoner(3072, 17, norm_first=False, shared_qkv=True, mask_mode="hard")
    ckpt = to_official_checkpoint(reasoner, SimCCHead(3072, (256, 192), bias=False))
    tr = ckpt["transformer_state_dict"]
    assert tr["module.layers.0.attention.query_matrix.weight"].shape == (256, 256)
    assert tr["module.embedding_layer.embed.0.weight"].shape == (512, 3072)
    assert ckpt["visibility_state_dict"]["module.conv1.weight"].shape == (64, 3072, 1)
    loaded, head = from_official_checkpoint(ckpt)
    assert loaded.blocks[0].attn.num_heads == 2  # type: ignore[union-attr]
    assert head.input_size == (256, 192)
    assert (head.num_x_bins, head.num_y_bins) == (384, 512)
    assert sum(p.numel() for p in loaded.visnet.parameters()) == 198_785


def test_round_trip_and_path(tmp_path: Path) -> None:
    ckpt = _authors_state()
    path = tmp_path / "ckpt.pth"
    torch.save(ckpt, path)
    for source in (path, str(path)):
        reasoner, head = from_official_checkpoint(source, num_keypoints=5)
        back = to_official_checkpoint(reasoner, head)
        for section, state in back.items():
            assert state.keys() == ckpt[section].keys()
            for key, value in state.items():
                assert torch.equal(value, ckpt[section][key]), key


def test_missing_and_unexpected_keys_are_listed() -> None:
    ckpt = _authors_state()
    del ckpt["transformer_state_dict"]["module.layers.1.norm2.bias"]
    ckpt["output_state_dict"]["module.mlp_head_x.bias"] = torch.zeros(WX)
    with pytest.raises(ValueError, match=r"missing keys \['layers.1.norm2.bias'\]") as info:
        from_official_checkpoint(ckpt)
    assert "unexpected keys ['mlp_head_x.bias']" in str(info.value)


def test_gap_in_layers_is_reported() -> None:
    ckpt = _authors_state()
    tr = ckpt["transformer_state_dict"]
    for key in [k for k in tr if k.startswith("module.layers.1.")]:
        tr[key.replace("layers.1.", "layers.2.")] = tr.pop(key)
    with pytest.raises(ValueError, match=r"missing keys .*layers\.1\.attention\.key_matrix\.weight"):
        from_official_checkpoint(ckpt)


def test_bad_checkpoints() -> None:
    ckpt = _authors_state()
    ckpt["transformer_state_dict"]["module.fc.bias"] = torch.zeros(D + 1)
    with pytest.raises(ValueError, match=r"fc.bias: expected \(24,\), got \(25,\)"):
        from_official_checkpoint(ckpt)
    ckpt = _authors_state()
    del ckpt["visibility_state_dict"]
    with pytest.raises(ValueError, match=r"missing \['visibility_state_dict'\]"):
        from_official_checkpoint(ckpt)
    ckpt = _authors_state()
    del ckpt["output_state_dict"]["module.mlp_head_y.weight"]
    with pytest.raises(ValueError, match=r"missing keys needed .*output_state_dict:mlp_head_y\.weight"):
        from_official_checkpoint(ckpt)
    with pytest.raises(TypeError, match="ckpt must be a mapping or a path"):
        from_official_checkpoint(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_keypoints must be a positive int"):
        from_official_checkpoint(_authors_state(), num_keypoints=0)


def test_to_official_rejects_other_parameterisations() -> None:
    pre = VisibilityMaskedReasoner(D, 5, embed_dim=E)
    with pytest.raises(ValueError, match="pre-norm"):
        to_official_checkpoint(pre, SimCCHead(D, (8, 6), bias=False))
    post = VisibilityMaskedReasoner(D, 5, embed_dim=E, norm_first=False, shared_qkv=True, mask_mode="hard")
    with pytest.raises(ValueError, match="head has a bias"):
        to_official_checkpoint(post, SimCCHead(D, (8, 6)))
