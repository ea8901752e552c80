"""The visibility-masked keypoint reasoner (the paper's plug-in block).

Data flow for tokens ``x (B, K, D)`` (one token per keypoint, e.g. a flattened ``Hf x Wf`` map):

1. ``vis_logits = VisNet(x.detach(), features.detach())`` in float32 with autocast disabled, so the
   mask never differs from a float32 run and the visibility loss does not train the backbone (VisNet
   sees the backbone ``features`` only when built with ``feature_channels``; ``visnet_grad_scale > 0``
   lets a scaled share of the visibility gradient through);
2. ``visible`` from the mask source (predicted ``sigmoid >= vis_threshold``, ground-truth flags, none, or
   a per-sample mix: [`visattn.visibility.select_visible`][visattn.visibility.select_visible]), ``mask = 1``
   visible / ``occluded_scale`` occluded
   ([`visattn.visibility.visibility_mask`][visattn.visibility.visibility_mask]), or with ``mask_mode="soft"``
   ``occluded_scale + (1 - occluded_scale) * p(visible)``
   ([`visattn.visibility.soft_visibility_mask`][visattn.visibility.soft_visibility_mask]);
3. ``t = ReLU(embed(mask * x))``, ``depth`` [`ReasonerBlock`][visattn.reasoner.ReasonerBlock] s over the K
   tokens;
4. ``y = proj(t) + x``: the residual adds the **unmasked** tokens.

Shape alphabet: B batch, K keypoints, D token dim, E embed dim, Hh heads, Dh head dim, C backbone
channels, Hf x Wf feature map.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from visattn._checks import (
    check_choice,
    check_flag_tensor,
    check_matches_parameters,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
    check_probability,
    check_tensor,
)
from visattn.attention import KeypointAttention, occlusion_attn_bias
from visattn.visibility import (
    MASK_SOURCES,
    flags_to_visible,
    predicted_visible,
    select_visible,
    soft_visibility_mask,
    visibility_mask,
)
from visattn.visnet import VisNet

__all__ = [
    "MASKINGS",
    "MASK_MODES",
    "MASK_SOURCES",
    "VISNET_EVIDENCE",
    "ReasonerBlock",
    "ReasonerOutput",
    "VisibilityMaskedReasoner",
]

MASKINGS = ("features", "attention", "both")
MASK_MODES = ("hard", "soft")
#: What VisNet sees (``visnet_evidence``): the pooled backbone features too, or the keypoint token alone.
VISNET_EVIDENCE = ("features", "token")


def _init_linear(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` in the forward pass; ``scale`` times its gradient in the backward pass (0: detached)."""
    if scale == 0.0:
        return x.detach()
    if scale == 1.0:
        return x
    return x * scale + x.detach() * (1.0 - scale)


class ReasonerBlock(nn.Module):
    """One transformer block over keypoint tokens: self-attention then a feed-forward MLP.

    * ``norm_first=True`` (pre-norm, the paper's text): ``h = x + attn(norm1(x))``,
      ``y = h + mlp(norm2(h))``;
    * ``norm_first=False`` (post-norm, the authors' code): ``h = norm1(x + attn(x))``,
      ``y = norm2(h + mlp(h))``.

    The MLP is ``Linear(E, E * mlp_ratio) -> act -> Linear(E * mlp_ratio, E)``. With
    ``shared_qkv=True`` the attention uses the authors' bias-free ``Dh x Dh`` Q/K/V matrices shared by
    the heads (see [`visattn.attention.KeypointAttention`][visattn.attention.KeypointAttention]); otherwise a
    dense projection with bias. Linear weights are truncated-normal (std 0.02), biases zero, norms at their
    defaults.

    Args:
        dim: embed dim ``E``.
        num_heads: number of heads ``Hh`` (divides ``E``).
        mlp_ratio: hidden width of the MLP relative to ``E``.
        norm_first: pre-norm (True) or post-norm (False).
        shared_qkv: the authors' shared per-head Q/K/V parameterisation.
        act_layer: activation class of the MLP.
        norm_layer: normalisation class, called as ``norm_layer(E, device=..., dtype=...)``.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Attributes:
        dim: embed dim ``E``.
        norm1, attn, norm2, mlp: the sub-modules (``mlp`` is ``Sequential(Linear, act, Linear)``).

    Shapes:
        x: ``(B, K, E)`` -> ``(B, K, E)``; attention maps ``(B, Hh, K, K)``.

    Example:
        >>> block = ReasonerBlock(8, 2, norm_first=False, shared_qkv=True)
        >>> y, maps = block(torch.randn(2, 5, 8), return_attn=True)
        >>> tuple(y.shape), tuple(maps.shape)
        ((2, 5, 8), (2, 2, 5, 5))
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float = 2.0,
        norm_first: bool = True,
        shared_qkv: bool = False,
        act_layer: Callable[[], nn.Module] = nn.SiLU,
        norm_layer: Callable[..., nn.Module] = nn.LayerNorm,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        ratio = check_positive_float("mlp_ratio", mlp_ratio)
        hidden = int(dim * ratio)
        if hidden < 1:
            raise ValueError(f"dim * mlp_ratio must be >= 1, got dim={dim} and mlp_ratio={mlp_ratio}")
        if not isinstance(norm_first, bool):
            raise TypeError(f"norm_first must be a bool, got {type(norm_first).__name__} {norm_first!r}")
        self.norm_first = norm_first
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.norm1 = norm_layer(dim, **factory)
        self.attn = KeypointAttention(
            dim, num_heads, qkv_bias=not shared_qkv, shared_qkv=shared_qkv, **factory
        )
        self.norm2 = norm_layer(dim, **factory)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden, **factory), act_layer(), nn.Linear(hidden, dim, **factory)
        )
        self.mlp.apply(_init_linear)

    def forward(
        self, x: torch.Tensor, attn_bias: torch.Tensor | None = None, *, return_attn: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Apply the block.

        Args:
            x: ``(B, K, E)`` tokens.
            attn_bias: optional ``(B, 1 | Hh, K, K)`` float bias added to the attention logits.
            return_attn: also return the attention maps (forces the reference attention path).

        Returns:
            ``(y (B, K, E), attn (B, Hh, K, K) or None)``.
        """
        check_tensor("x", x, "B K E", floating=True, E=self.dim)
        if attn_bias is not None:
            self.attn._check_bias(attn_bias, x.shape[0], x.shape[1])
        return self._forward(x, attn_bias, return_attn)

    def _forward(
        self, x: torch.Tensor, attn_bias: torch.Tensor | None, return_attn: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[`forward`][visattn.reasoner.ReasonerBlock.forward] without the input checks (the reasoner calls it
        with checked inputs)."""
        if self.norm_first:
            h, attn = self.attn._forward(self.norm1(x), attn_bias, return_attn)
            x = x + h
            return x + self.mlp(self.norm2(x)), attn
        h, attn = self.attn._forward(x, attn_bias, return_attn)
        x = self.norm1(x + h)
        return self.norm2(x + self.mlp(x)), attn


class ReasonerOutput(NamedTuple):
    """What [`VisibilityMaskedReasoner`][visattn.reasoner.VisibilityMaskedReasoner] returns.

    Attributes:
        tokens: ``(B, K, D)`` refined tokens (same dtype as the input under no autocast).
        vis_logits: ``(B, K)`` float32 VisNet logits (train them with the visibility loss).
        mask: ``(B, K)`` feature mask actually applied: 1.0 visible / ``occluded_scale`` occluded; all
            ones when ``mask_source="none"`` or ``masking="attention"``.
        visible: ``(B, K)`` bool visibility used for masking (all True for ``mask_source="none"``).
        attn: tuple of ``depth`` attention maps ``(B, Hh, K, K)`` when ``return_attn=True``, else None.
    """

    tokens: torch.Tensor
    vis_logits: torch.Tensor
    mask: torch.Tensor
    visible: torch.Tensor
    attn: tuple[torch.Tensor, ...] | None


class VisibilityMaskedReasoner(nn.Module):
    """VisNet + visibility masking + a small transformer over keypoint tokens, with a residual.

    See the module docstring for the data flow. The defaults are the paper's sizes with a modern pre-norm
    block and dense Q/K/V, and the visibility predictor measured best on visattn's occlusion benchmark
    (soft masks, ``visnet_grad_scale=0.01``; docs: "Does it help?"). ``norm_first=False,
    shared_qkv=True, mask_mode="hard", visnet_grad_scale=0`` reproduces the authors' block exactly
    ([`visattn.compat.from_official_checkpoint`][visattn.compat.from_official_checkpoint] builds it that way).
    The pre-norm variant ends with a final ``norm_layer(E)`` before ``proj`` (``Identity`` for post-norm).

    Mask sources (``mask_source``):

    * ``"predicted"``: ``sigmoid(vis_logits) >= threshold`` (the paper);
    * ``"ground_truth"``: the ``flags`` argument (required);
    * ``"none"``: no masking (the paper's "reasoner without masking" ablation);
    * ``"mixed"``: in training, each sample uses its ground truth with probability ``gt_prob`` and
      the prediction otherwise (``flags`` required in training); in eval, the prediction. Lowering
      ``gt_prob`` from 1 to 0 during training is scheduled teacher forcing
      ([`visattn.visibility.teacher_forcing_prob`][visattn.visibility.teacher_forcing_prob]).

    Mask modes (``mask_mode``): ``"hard"`` (the paper) scales predicted-occluded tokens by
    ``occluded_scale``; ``"soft"`` scales every predicted token by
    ``occluded_scale + (1 - occluded_scale) * sigmoid(vis_logits)`` (no threshold; the probability is
    detached, so only the visibility loss trains VisNet). Ground-truth masks are always hard.

    The operating threshold is the float32 buffer ``vis_threshold`` (saved in the state dict, exported
    with the model): set it from held-out data with
    [`calibrate_threshold`][visattn.reasoner.VisibilityMaskedReasoner.calibrate_threshold].

    Masking (``masking``): ``"features"`` scales the occluded tokens by ``occluded_scale`` before the
    embedding (the paper); ``"attention"`` instead adds ``log(occluded_scale)`` to the attention logits of
    occluded keys in every block; ``"both"`` does both.

    Initialisation: truncated-normal (std 0.02) Linear weights and zero biases in the embedding, blocks
    and output projection; VisNet as documented there.

    Args:
        in_dim: token dim ``D``.
        num_keypoints: ``K``; inputs must have exactly K tokens.
        embed_dim: transformer width ``E``.
        depth: number of [`ReasonerBlock`][visattn.reasoner.ReasonerBlock].
        num_heads: attention heads ``Hh`` (divides ``E``).
        mlp_ratio: MLP width relative to ``E``.
        occluded_scale: mask value of occluded keypoints, in (0, 1].
        threshold: initial value of the ``vis_threshold`` buffer, the probability threshold of the
            predicted visibility, in (0, 1).
        norm_first: pre-norm (True) or the authors' post-norm (False) blocks.
        shared_qkv: the authors' shared per-head Q/K/V matrices.
        mask_source: ``"predicted" | "ground_truth" | "none" | "mixed"``.
        gt_prob: probability of using the ground truth per sample for ``"mixed"``, in [0, 1].
        masking: ``"features" | "attention" | "both"``.
        visnet_hidden: hidden widths of [`visattn.visnet.VisNet`][visattn.visnet.VisNet].
        feature_channels: ``C`` of the backbone features that ``forward`` receives (0: none);
            [`SimCCAdapter`][visattn.adapters.SimCCAdapter] passes its backbone's channels.
        visnet_evidence: ``"features"``: VisNet pools the backbone features at each keypoint
            ([`visattn.visnet.keypoint_evidence`][visattn.visnet.keypoint_evidence]) when
            ``feature_channels > 0``; ``"token"``: VisNet sees the keypoint token alone (the paper).
        visnet_context: self-attention blocks over keypoints inside VisNet (0: none, the paper).
        visnet_grad_scale: share of the visibility loss's gradient that flows from VisNet back into its
            inputs (the tokens and backbone features), in [0, 1]: ``0`` detaches them (the paper: the
            visibility loss does not train the backbone), ``1`` passes it whole; in between it is scaled
            (the forward values never change).
        mask_mode: ``"hard" | "soft"``.
        act_layer: activation class of the block MLPs.
        norm_layer: normalisation class of the blocks.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Attributes:
        in_dim, num_keypoints: as given.
        visnet: [`visattn.visnet.VisNet`][visattn.visnet.VisNet].
        vis_threshold: float32 scalar buffer, the operating threshold of the predicted visibility.
        embed: ``Linear(D, E)`` followed by ``ReLU``.
        blocks: ``ModuleList`` of [`ReasonerBlock`][visattn.reasoner.ReasonerBlock].
        norm: final norm (pre-norm) or ``Identity``.
        proj: ``Linear(E, D)``.

    Shapes:
        tokens: ``(B, K, D)``; visible: ``(B, K)`` -> [`ReasonerOutput`][visattn.reasoner.ReasonerOutput].

    Example:
        >>> reasoner = VisibilityMaskedReasoner(48, 17, embed_dim=16, depth=2, num_heads=2)
        >>> out = reasoner(torch.randn(4, 17, 48))
        >>> tuple(out.tokens.shape), tuple(out.vis_logits.shape), out.visible.dtype
        ((4, 17, 48), (4, 17), torch.bool)
        >>> flags = torch.randint(0, 3, (4, 17))  # COCO flags: visible iff v == 2
        >>> gt = VisibilityMaskedReasoner(48, 17, embed_dim=16, mask_source="ground_truth")
        >>> bool((gt(torch.randn(4, 17, 48), flags).visible == (flags == 2)).all())
        True
    """

    def __init__(
        self,
        in_dim: int,
        num_keypoints: int,
        *,
        embed_dim: int = 512,
        depth: int = 3,
        num_heads: int = 2,
        mlp_ratio: float = 2.0,
        occluded_scale: float = 0.01,
        threshold: float = 0.5,
        norm_first: bool = True,
        shared_qkv: bool = False,
        mask_source: str = "predicted",
        gt_prob: float = 0.5,
        masking: str = "features",
        visnet_hidden: Sequence[int] = (64, 32),
        feature_channels: int = 0,
        visnet_evidence: str = "features",
        visnet_context: int = 0,
        visnet_grad_scale: float = 0.01,
        mask_mode: str = "soft",
        act_layer: Callable[[], nn.Module] = nn.SiLU,
        norm_layer: Callable[..., nn.Module] = nn.LayerNorm,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_dim = check_positive_int("in_dim", in_dim)
        self.num_keypoints = check_positive_int("num_keypoints", num_keypoints)
        self.embed_dim = check_positive_int("embed_dim", embed_dim)
        self.depth = check_positive_int("depth", depth)
        self.num_heads = check_positive_int("num_heads", num_heads)
        if embed_dim % num_heads:
            raise ValueError(
                "embed_dim must be divisible by num_heads, "
                f"got embed_dim={embed_dim} and num_heads={num_heads}"
            )
        self.occluded_scale = check_probability("occluded_scale", occluded_scale, low_open=True)
        check_probability("threshold", threshold, low_open=True, high_open=True)
        self.mask_source = check_choice("mask_source", mask_source, MASK_SOURCES)
        self.gt_prob = check_probability("gt_prob", gt_prob)
        self.masking = check_choice("masking", masking, MASKINGS)
        self.mask_mode = check_choice("mask_mode", mask_mode, MASK_MODES)
        self.visnet_grad_scale = check_probability("visnet_grad_scale", visnet_grad_scale)
        if isinstance(visnet_hidden, (str, bytes)) or not isinstance(visnet_hidden, Sequence):
            raise TypeError(
                f"visnet_hidden must be a sequence of positive ints, got {type(visnet_hidden).__name__}"
            )
        hidden = tuple(check_positive_int(f"visnet_hidden[{i}]", h) for i, h in enumerate(visnet_hidden))
        self.visnet_evidence = check_choice("visnet_evidence", visnet_evidence, VISNET_EVIDENCE)
        check_nonnegative_int("feature_channels", feature_channels)
        factory: dict[str, Any] = {"device": device, "dtype": dtype}

        channels = feature_channels if visnet_evidence == "features" else 0
        self.visnet = VisNet(
            in_dim, hidden, feature_channels=channels, context_depth=visnet_context, **factory
        )
        self.register_buffer(
            "vis_threshold", torch.tensor(float(threshold), dtype=torch.float32, device=device)
        )
        self.embed = nn.Linear(in_dim, embed_dim, **factory)
        self.embed_act = nn.ReLU()
        self.blocks = nn.ModuleList(
            ReasonerBlock(
                embed_dim,
                num_heads,
                mlp_ratio=mlp_ratio,
                norm_first=norm_first,
                shared_qkv=shared_qkv,
                act_layer=act_layer,
                norm_layer=norm_layer,
                **factory,
            )
            for _ in range(depth)
        )
        self.norm = norm_layer(embed_dim, **factory) if norm_first else nn.Identity()
        self.proj = nn.Linear(embed_dim, in_dim, **factory)
        _init_linear(self.embed)
        _init_linear(self.proj)

    vis_threshold: torch.Tensor

    @property
    def threshold(self) -> float:
        """The operating threshold as a Python float (reads the ``vis_threshold`` buffer)."""
        return float(self.vis_threshold)

    @property
    def feature_channels(self) -> int:
        """``C`` of the backbone features VisNet needs in ``forward`` (0: none)."""
        return self.visnet.feature_channels

    def set_threshold(self, threshold: float) -> None:
        """Set the operating threshold (the ``vis_threshold`` buffer), a probability in (0, 1)."""
        value = check_probability("threshold", threshold, low_open=True, high_open=True)
        self.vis_threshold.fill_(value)

    @torch.no_grad()
    def calibrate_threshold(
        self, vis_logits: torch.Tensor, visible: torch.Tensor, *, criterion: str = "balanced_accuracy"
    ) -> float:
        """Choose and store the operating threshold from held-out VisNet logits and ground truth.

        Args:
            vis_logits: ``(N, K)`` VisNet logits on held-out data (not the training batches).
            visible: ``(N, K)`` COCO flags 0/1/2 (visible iff ``v == 2``) or bools.
            criterion: what the threshold maximises, see
                [`visattn.metrics.calibrate_visibility_threshold`][visattn.metrics.calibrate_visibility_threshold].

        Returns:
            the threshold now stored in ``vis_threshold``.
        """
        from visattn.metrics.visibility import calibrate_visibility_threshold

        threshold = calibrate_visibility_threshold(vis_logits, visible, criterion=criterion)
        self.set_threshold(threshold)
        return threshold

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # State dicts written before the threshold became a buffer keep the module's current threshold.
        state_dict.setdefault(prefix + "vis_threshold", self.vis_threshold.detach().clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _visnet_logits(self, tokens: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        """VisNet on (detached) tokens with autocast off, in VisNet's parameter dtype (float32 by default)."""
        param_dtype = next(self.visnet.parameters()).dtype
        tokens = _scale_grad(tokens, self.visnet_grad_scale)
        features = None if features is None else _scale_grad(features, self.visnet_grad_scale)
        device_type = tokens.device.type  # e.g. "meta" has no autocast to turn off
        off = (
            torch.autocast(device_type, enabled=False)
            if torch.amp.is_autocast_available(device_type)
            else None
        )
        with off or contextlib.nullcontext():
            logits: torch.Tensor = self.visnet._forward(
                tokens.to(param_dtype), None if features is None else features.to(param_dtype)
            )  # (B, K)
        return logits

    def forward(
        self,
        tokens: torch.Tensor,
        flags: torch.Tensor | None = None,
        *,
        features: torch.Tensor | None = None,
        return_attn: bool = False,
    ) -> ReasonerOutput:
        """Refine keypoint tokens.

        Args:
            tokens: ``(B, K, D)`` keypoint tokens.
            flags: optional ``(B, K)`` ground-truth COCO flags 0/1/2 (visible iff ``v == 2``; ``v = 0``
                counts as occluded), used by ``mask_source`` ``"ground_truth"`` and ``"mixed"``.
            features: ``(B, C, Hf, Wf)`` backbone features (``Hf * Wf = D``), required iff VisNet uses
                them (``feature_channels > 0`` and ``visnet_evidence="features"``).
            return_attn: also return every block's attention maps (reference attention path).

        Returns:
            [`ReasonerOutput`][visattn.reasoner.ReasonerOutput] ``(tokens, vis_logits, mask, visible, attn)``.
        """
        check_tensor("tokens", tokens, "B K D", floating=True, K=self.num_keypoints, D=self.in_dim)
        check_matches_parameters("tokens", tokens, self.embed.weight, "reasoner")
        if flags is not None:
            check_flag_tensor("flags", flags, "B K", B=tokens.shape[0], K=self.num_keypoints)
        channels = self.feature_channels
        if channels and features is None:
            raise ValueError(
                f"features (B, C, Hf, Wf) with C={channels} are required by a reasoner whose VisNet pools "
                "backbone features, got None"
            )
        if channels:
            check_tensor("features", features, "B C Hf Wf", floating=True, B=tokens.shape[0], C=channels)
            assert features is not None
            if features.shape[2] * features.shape[3] != self.in_dim:
                raise ValueError(
                    f"features must be (B, C, Hf, Wf) with Hf * Wf = D = {self.in_dim}, "
                    f"got {tuple(features.shape)}"
                )
        return self._refine(tokens, flags, features if channels else None, return_attn)

    def _refine(
        self,
        tokens: torch.Tensor,
        flags: torch.Tensor | None,
        features: torch.Tensor | None,
        return_attn: bool = False,
    ) -> ReasonerOutput:
        """[`forward`][visattn.reasoner.VisibilityMaskedReasoner.forward] without the input checks (the
        adapters call it with checked inputs)."""
        gt_visible = None if flags is None else flags_to_visible(flags).to(tokens.device)  # (B, K) bool
        vis_logits = self._visnet_logits(tokens, features)  # (B, K)
        predicted = predicted_visible(vis_logits, self.vis_threshold)  # (B, K) bool
        used, from_gt = select_visible(
            self.mask_source, predicted, gt_visible, training=self.training, gt_prob=self.gt_prob
        )  # (B, K), (B, 1)
        masks_features = self.mask_source != "none" and self.masking in ("features", "both")
        masks_attention = self.mask_source != "none" and self.masking in ("attention", "both")
        scale = self.occluded_scale if masks_features else 1.0
        mask = visibility_mask(used, scale, dtype=tokens.dtype)  # (B, K)
        if masks_features and self.mask_mode == "soft":
            soft = soft_visibility_mask(torch.sigmoid(vis_logits.detach()), scale, dtype=tokens.dtype)
            mask = torch.where(from_gt, mask, soft)  # ground-truth rows stay hard
        attn_bias = occlusion_attn_bias(used, self.occluded_scale) if masks_attention else None

        x = self.embed_act(self.embed(tokens * mask[..., None]))  # (B, K, E)
        maps: list[torch.Tensor] = []
        for block in self.blocks:
            assert isinstance(block, ReasonerBlock)
            x, attn = block._forward(x, attn_bias, return_attn)
            if attn is not None:
                maps.append(attn)
        refined = self.proj(self.norm(x)) + tokens  # (B, K, D)
        return ReasonerOutput(
            tokens=refined,
            vis_logits=vis_logits.float(),
            mask=mask,
            visible=used,
            attn=tuple(maps) if return_attn else None,
        )

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, num_keypoints={self.num_keypoints}, "
            f"occluded_scale={self.occluded_scale}, "
            f"mask_source={self.mask_source!r}, masking={self.masking!r}, mask_mode={self.mask_mode!r}"
        )
