"""Conversion from and to the authors' checkpoint layout (``pengzhansun/Occluded-Pose-Reasoning``).

The authors save a dict with ``model_state_dict`` (the pose backbone), ``transformer_state_dict``,
``output_state_dict`` (SimCC head) and ``visibility_state_dict`` (VisNet), every key prefixed
``module.`` (DataParallel). [`from_official_checkpoint`][visattn.compat.from_official_checkpoint] builds a
[`VisibilityMaskedReasoner`][visattn.reasoner.VisibilityMaskedReasoner] and a
[`SimCCHead`][visattn.heads.SimCCHead] configured like their code (post-norm blocks, one bias-free ``Dh x Dh``
Q/K/V matrix shared by the heads, ReLU embedding, SiLU MLP, bias-free SimCC head, predicted mask ``1 / 0.01``
at threshold 0.5) and loads the weights; all sizes are inferred from the tensor shapes.
[`to_official_checkpoint`][visattn.compat.to_official_checkpoint] goes back. The backbone
(``model_state_dict``) is not converted.

Key mapping (authors' -> visattn, ``i`` the block index):

| authors' key | visattn key |
|---|---|
| ``embedding_layer.embed.0.{weight,bias}`` | ``reasoner.embed.{weight,bias}`` |
| ``layers.i.attention.{query,key,value}_matrix`` | ``reasoner.blocks.i.attn.qkv.weight`` (stacked) |
| ``layers.i.attention.out.{weight,bias}`` | ``reasoner.blocks.i.attn.proj.{weight,bias}`` |
| ``layers.i.norm{1,2}.{weight,bias}`` | ``reasoner.blocks.i.norm{1,2}.{weight,bias}`` |
| ``layers.i.feed_forward.{0,2}.{weight,bias}`` | ``reasoner.blocks.i.mlp.{0,2}.{weight,bias}`` |
| ``fc.{weight,bias}`` | ``reasoner.proj.{weight,bias}`` |
| ``conv{j+1}.weight [out, in, 1]``, ``.bias`` | ``reasoner.visnet.layers.j.{weight,bias}`` |
| ``mlp_head_x.weight``, ``mlp_head_y.weight`` | ``head.x_head.weight``, ``head.y_head.weight`` |
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from visattn._checks import check_positive_float, check_positive_int
from visattn.heads import SimCCHead
from visattn.reasoner import ReasonerBlock, VisibilityMaskedReasoner

__all__ = ["from_official_checkpoint", "to_official_checkpoint"]

_SECTIONS = ("transformer_state_dict", "output_state_dict", "visibility_state_dict")
_PREFIX = "module."
_QKV = ("query", "key", "value")
StateDict = dict[str, torch.Tensor]


def _strip(section: str, state: Any) -> StateDict:
    if not isinstance(state, Mapping):
        raise TypeError(f"ckpt[{section!r}] must be a state dict (mapping), got {type(state).__name__}")
    out: StateDict = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"ckpt[{section!r}][{key!r}] must be a tensor, got {type(value).__name__}")
        out[key.removeprefix(_PREFIX)] = value
    return out


def _load_sections(ckpt: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, StateDict]:
    if isinstance(ckpt, (str, os.PathLike)):
        path = ckpt
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as err:  # truncated zip, not a torch file, or objects weights_only refuses
            reason = " ".join(str(err).split())[:200]
            raise ValueError(
                f"ckpt {os.fspath(path)!r} cannot be read as a checkpoint of tensors (truncated or not a "
                f"torch file?): {type(err).__name__}: {reason}"
            ) from err
    if not isinstance(ckpt, Mapping):
        raise TypeError(f"ckpt must be a mapping or a path to a .pth file, got {type(ckpt).__name__}")
    missing = [s for s in _SECTIONS if s not in ckpt]
    if missing:
        raise ValueError(f"ckpt must contain {list(_SECTIONS)}, missing {missing}; got keys {sorted(ckpt)}")
    return {s: _strip(s, ckpt[s]) for s in _SECTIONS}


def _require(sections: dict[str, StateDict], wanted: dict[str, list[str]]) -> None:
    missing = [f"{s}:{k}" for s, keys in wanted.items() for k in keys if k not in sections[s]]
    if missing:
        raise ValueError(f"checkpoint is missing keys needed to infer the configuration: {missing}")


def _count(keys: Any, pattern: str, start: int) -> int:
    """Number of numbered items (``start``-based) given the largest index matching ``pattern``.

    Gaps are reported later as missing keys by the full key comparison.
    """
    found = [int(m.group(1)) for k in keys if (m := re.fullmatch(pattern, k))]
    return max(found) + 1 - start if found else 0


def _infer(
    sections: dict[str, StateDict], num_keypoints: int, split_ratio: float
) -> tuple[VisibilityMaskedReasoner, SimCCHead]:
    """Build (untrained) modules whose shapes fit the checkpoint."""
    tr, out, vis = (sections[s] for s in _SECTIONS)
    _require(
        sections,
        {
            "transformer_state_dict": [
                "embedding_layer.embed.0.weight",
                "layers.0.attention.query_matrix.weight",
                "layers.0.feed_forward.0.weight",
            ],
            "output_state_dict": ["mlp_head_x.weight", "mlp_head_y.weight"],
            "visibility_state_dict": ["conv1.weight"],
        },
    )
    embed_dim, in_dim = tr["embedding_layer.embed.0.weight"].shape
    head_dim = tr["layers.0.attention.query_matrix.weight"].shape[0]
    ffn_dim = tr["layers.0.feed_forward.0.weight"].shape[0]
    if head_dim == 0 or embed_dim % head_dim:
        raise ValueError(
            f"query_matrix must be (Dh, Dh) with Dh dividing the embed dim {embed_dim}, got Dh={head_dim}"
        )
    mlp_ratio = ffn_dim / embed_dim
    if int(embed_dim * mlp_ratio) != ffn_dim:
        raise ValueError(f"feed-forward width {ffn_dim} is not representable as embed_dim * mlp_ratio")
    depth = _count(tr, r"layers\.(\d+)\..*", start=0)
    num_convs = _count(vis, r"conv(\d+)\.weight", start=1)
    _require(sections, {"visibility_state_dict": [f"conv{j}.weight" for j in range(1, num_convs + 1)]})
    visnet_hidden = tuple(int(vis[f"conv{j}.weight"].shape[0]) for j in range(1, num_convs))

    num_x, num_y = out["mlp_head_x.weight"].shape[0], out["mlp_head_y.weight"].shape[0]
    width, height = round(num_x / split_ratio), round(num_y / split_ratio)
    if round(width * split_ratio) != num_x or round(height * split_ratio) != num_y:
        raise ValueError(
            f"SimCC head sizes (Wx, Hy) = {(num_x, num_y)} are not an input size (W, H) times "
            f"split_ratio {split_ratio}"
        )
    reasoner = VisibilityMaskedReasoner(
        int(in_dim),
        num_keypoints,
        embed_dim=int(embed_dim),
        depth=depth,
        num_heads=int(embed_dim // head_dim),
        mlp_ratio=mlp_ratio,
        occluded_scale=0.01,
        threshold=0.5,
        norm_first=False,
        shared_qkv=True,
        mask_source="predicted",
        masking="features",
        mask_mode="hard",
        visnet_hidden=visnet_hidden,
        feature_channels=0,
        visnet_context=0,
        visnet_grad_scale=0.0,
        act_layer=nn.SiLU,
        norm_layer=nn.LayerNorm,
    )
    head = SimCCHead(int(in_dim), (height, width), split_ratio=split_ratio, bias=False)
    return reasoner, head


def _check_authors_layout(reasoner: VisibilityMaskedReasoner, head: SimCCHead) -> None:
    problems = []
    for i, block in enumerate(reasoner.blocks):
        assert isinstance(block, ReasonerBlock)
        if block.norm_first:
            problems.append(f"blocks[{i}] is pre-norm (need norm_first=False)")
        if not block.attn.shared_qkv or block.attn.qkv.bias is not None:
            problems.append(f"blocks[{i}].attn is not shared_qkv without bias")
        if not (isinstance(block.norm1, nn.LayerNorm) and isinstance(block.norm2, nn.LayerNorm)):
            problems.append(f"blocks[{i}] norms are not LayerNorm")
    if reasoner.feature_channels or reasoner.visnet.context_depth:
        problems.append(
            "VisNet sees backbone features or keypoint context (need feature_channels=0, visnet_context=0)"
        )
    if reasoner.mask_mode != "hard":
        problems.append(
            f"mask_mode is {reasoner.mask_mode!r} (need 'hard': the authors' mask is thresholded)"
        )
    if head.x_head.bias is not None or head.y_head.bias is not None:
        problems.append("head has a bias (need bias=False)")
    if head.in_dim != reasoner.in_dim:
        problems.append(f"head.in_dim {head.in_dim} != reasoner.in_dim {reasoner.in_dim}")
    if problems:
        raise ValueError("modules do not have the authors' parameterisation: " + "; ".join(problems))


def _shared_keys(depth: int) -> list[tuple[str, str]]:
    """``(authors' key, reasoner key)`` of every transformer tensor copied unchanged (both directions)."""
    pairs = []
    for name in ("weight", "bias"):
        pairs += [(f"embedding_layer.embed.0.{name}", f"embed.{name}"), (f"fc.{name}", f"proj.{name}")]
        for i in range(depth):
            theirs, mine = f"layers.{i}.", f"blocks.{i}."
            pairs += [
                (f"{theirs}attention.out.{name}", f"{mine}attn.proj.{name}"),
                (f"{theirs}norm1.{name}", f"{mine}norm1.{name}"),
                (f"{theirs}norm2.{name}", f"{mine}norm2.{name}"),
                (f"{theirs}feed_forward.0.{name}", f"{mine}mlp.0.{name}"),
                (f"{theirs}feed_forward.2.{name}", f"{mine}mlp.2.{name}"),
            ]
    return pairs


def to_official_checkpoint(
    reasoner: VisibilityMaskedReasoner, head: SimCCHead, *, prefix: str = "module."
) -> dict[str, StateDict]:
    """State dicts in the authors' layout (inverse of
    [`from_official_checkpoint`][visattn.compat.from_official_checkpoint]).

    Args:
        reasoner: a reasoner with the authors' parameterisation (``norm_first=False``,
            ``shared_qkv=True``, ``nn.LayerNorm``).
        head: a bias-free [`SimCCHead`][visattn.heads.SimCCHead] on the same token dim.
        prefix: prepended to every key (``"module."`` as in the authors' files, ``""`` for none).

    Returns:
        ``{"transformer_state_dict": ..., "output_state_dict": ..., "visibility_state_dict": ...}``
        with detached tensors (Conv1d weights ``(out, in, 1)`` for VisNet). Add a
        ``model_state_dict`` for the backbone to get a complete file for ``torch.save``.

    Example:
        >>> authors = {"norm_first": False, "shared_qkv": True, "mask_mode": "hard"}
        >>> reasoner = VisibilityMaskedReasoner(12, 17, embed_dim=8, **authors)
        >>> ckpt = to_official_checkpoint(reasoner, SimCCHead(12, (8, 6), bias=False))
        >>> ckpt["transformer_state_dict"]["module.layers.0.attention.query_matrix.weight"].shape
        torch.Size([4, 4])
        >>> isinstance(from_official_checkpoint(ckpt)[0], VisibilityMaskedReasoner)
        True
    """
    if not isinstance(reasoner, VisibilityMaskedReasoner):
        raise TypeError(f"reasoner must be a VisibilityMaskedReasoner, got {type(reasoner).__name__}")
    if not isinstance(head, SimCCHead):
        raise TypeError(f"head must be a SimCCHead, got {type(head).__name__}")
    _check_authors_layout(reasoner, head)
    ours = {k: v.detach() for k, v in reasoner.state_dict().items()}
    depth, num_convs = len(reasoner.blocks), len(reasoner.visnet.layers)
    tr: StateDict = {theirs: ours[mine] for theirs, mine in _shared_keys(depth)}
    for i in range(depth):
        q, k, v = ours[f"blocks.{i}.attn.qkv.weight"].chunk(3, dim=0)  # each (Dh, Dh)
        for name, weight in zip(_QKV, (q, k, v)):
            tr[f"layers.{i}.attention.{name}_matrix.weight"] = weight
    vis: StateDict = {}
    for j in range(num_convs):
        vis[f"conv{j + 1}.weight"] = ours[f"visnet.layers.{j}.weight"][..., None]  # (out, in, 1)
        vis[f"conv{j + 1}.bias"] = ours[f"visnet.layers.{j}.bias"]
    out = {"mlp_head_x.weight": head.x_head.weight.detach(), "mlp_head_y.weight": head.y_head.weight.detach()}
    return {
        section: {prefix + k: v for k, v in state.items()}
        for section, state in zip(_SECTIONS, (tr, out, vis))
    }


def _to_ours(sections: dict[str, StateDict], depth: int, num_convs: int) -> tuple[StateDict, StateDict]:
    tr, out, vis = (sections[s] for s in _SECTIONS)
    ours: StateDict = {mine: tr[theirs] for theirs, mine in _shared_keys(depth)}
    for i in range(depth):
        qkv = [tr[f"layers.{i}.attention.{name}_matrix.weight"] for name in _QKV]  # each (Dh, Dh)
        ours[f"blocks.{i}.attn.qkv.weight"] = torch.cat(qkv)  # (3 Dh, Dh)
    for j in range(num_convs):
        ours[f"visnet.layers.{j}.weight"] = vis[f"conv{j + 1}.weight"].squeeze(-1)  # (out, in)
        ours[f"visnet.layers.{j}.bias"] = vis[f"conv{j + 1}.bias"]
    head = {"x_head.weight": out["mlp_head_x.weight"], "y_head.weight": out["mlp_head_y.weight"]}
    return ours, head


def from_official_checkpoint(
    ckpt: Mapping[str, Any] | str | os.PathLike[str], *, num_keypoints: int = 17, split_ratio: float = 2.0
) -> tuple[VisibilityMaskedReasoner, SimCCHead]:
    """Build the reasoner and SimCC head of an authors' checkpoint and load its weights.

    Sizes come from the tensor shapes: ``in_dim`` and ``embed_dim`` from the embedding, ``num_heads =
    embed_dim / Dh`` from the ``(Dh, Dh)`` query matrix, ``depth`` from the layer indices, the MLP
    ratio from ``feed_forward.0``, VisNet's hidden widths from its convs, and the SimCC input size
    ``(H, W) = (Hy, Wx) / split_ratio``. The checkpoint does not store ``K``; pass ``num_keypoints``
    (17 for COCO, 14 for CrowdPose).

    Args:
        ckpt: the loaded dict, or a path read with ``torch.load(path, map_location="cpu",
            weights_only=True)``. Keys may carry the ``module.`` prefix or not.
        num_keypoints: ``K`` of the returned reasoner.
        split_ratio: SimCC bins per pixel used by the checkpoint.

    Returns:
        ``(reasoner, head)``: a post-norm, shared-Q/K/V
        [`VisibilityMaskedReasoner`][visattn.reasoner.VisibilityMaskedReasoner] (predicted mask 1 / 0.01 at
        threshold 0.5) and a bias-free [`SimCCHead`][visattn.heads.SimCCHead], on CPU in float32.

    Raises:
        ValueError: a section is missing, keys are missing or unexpected (all listed), or a tensor
            shape does not fit the inferred configuration.
        TypeError: ``ckpt`` is neither a mapping nor a path.

    Example:
        >>> authors = {"norm_first": False, "shared_qkv": True, "mask_mode": "hard"}
        >>> reasoner = VisibilityMaskedReasoner(12, 17, embed_dim=8, **authors)
        >>> ckpt = to_official_checkpoint(reasoner, SimCCHead(12, (8, 6), bias=False))
        >>> loaded, head = from_official_checkpoint(ckpt)
        >>> head.input_size, loaded.blocks[0].attn.num_heads
        ((8, 6), 2)
    """
    num_keypoints = check_positive_int("num_keypoints", num_keypoints)
    split_ratio = check_positive_float("split_ratio", split_ratio)
    sections = _load_sections(ckpt)
    reasoner, head = _infer(sections, num_keypoints, split_ratio)

    expected = to_official_checkpoint(reasoner, head, prefix="")
    problems = []
    for section in _SECTIONS:
        want, got = expected[section], sections[section]
        missing = sorted(set(want) - set(got))
        unexpected = sorted(set(got) - set(want))
        if missing:
            problems.append(f"{section} missing keys {missing}")
        if unexpected:
            problems.append(f"{section} unexpected keys {unexpected}")
        wrong = [
            f"{k}: expected {tuple(want[k].shape)}, got {tuple(got[k].shape)}"
            for k in sorted(set(want) & set(got))
            if want[k].shape != got[k].shape
        ]
        if wrong:
            problems.append(f"{section} shape mismatches {wrong}")
    if problems:
        raise ValueError("checkpoint does not match the authors' layout: " + "; ".join(problems))

    ours, head_state = _to_ours(sections, len(reasoner.blocks), len(reasoner.visnet.layers))
    reasoner.load_state_dict(ours, strict=True)
    head.load_state_dict(head_state, strict=True)
    return reasoner, head
