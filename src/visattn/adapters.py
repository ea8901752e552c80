"""Adapters that plug the visibility-masked reasoner into a pose model.

Two routes, as in the paper:

- [`SimCCAdapter`][visattn.adapters.SimCCAdapter] wraps a *backbone* that maps an image crop to a feature map
  ``(B, C, Hf, Wf)``. A final convolution gives one map per keypoint ``(B, K, Hf, Wf)``, flattened to keypoint
  tokens ``(B, K, D)`` with ``D = Hf * Wf``; the reasoner refines the tokens and a
  [`SimCCHead`][visattn.heads.SimCCHead] classifies x and y coordinates. With ``reasoner=None`` it is the
  plain SimCC baseline.
- [`HeatmapAdapter`][visattn.adapters.HeatmapAdapter] wraps a complete heatmap *pose model*
  ``(B, 3, H, W) -> (B, K, Hf, Wf)``; the heatmaps are flattened to tokens, refined and reshaped back by a
  [`HeatmapHead`][visattn.heads.HeatmapHead].

The reasoner is injected as a factory (``reasoner=partial(VisibilityMaskedReasoner, embed_dim=256)``),
called as ``reasoner(D, K, feature_channels=C, device=..., dtype=...)``; ``None`` leaves it out. Each
adapter's ``head`` owns the head kind's conventions (targets, decoding, flip test, pose loss; see
[`visattn.heads.PoseHead`][visattn.heads.PoseHead]), so training and prediction code holds ``model.head`` and
never asks which kind of model it has.

Model output conventions (both adapters): the wrapped model may return a tensor, or a list/tuple/dict of
tensors together with ``feature_index`` naming the one to use (a position, or a key of the dict). A
container with more than one tensor and no ``feature_index`` is an error: the adapter never guesses
(timm's ``features_only`` models return every stage, the highest resolution first).

Shape alphabet: B batch, K keypoints, D token dim, H x W input crop, C backbone channels,
Hf x Wf feature map / heatmap, Wx / Hy SimCC bins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from visattn._checks import (
    check_flag_tensor,
    check_matches_parameters,
    check_positive_int,
    check_size_pair,
    check_tensor,
)
from visattn.heads import HeatmapHead, HeatmapOutput, SimCCHead, SimCCOutput
from visattn.reasoner import ReasonerOutput, VisibilityMaskedReasoner

__all__ = [
    "HeatmapAdapter",
    "HeatmapOutput",
    "ReasonerFactory",
    "SimCCAdapter",
    "SimCCOutput",
    "eval_mode",
    "select_feature_map",
]

#: ``reasoner(in_dim, num_keypoints, *, feature_channels, device, dtype) -> VisibilityMaskedReasoner``.
ReasonerFactory = Callable[..., VisibilityMaskedReasoner]


def select_feature_map(
    output: Any, feature_index: int | str | None = None, name: str = "backbone output"
) -> torch.Tensor:
    """Pick the feature map from a model's output.

    A tensor is returned as is. A list/tuple or dict (any mapping) gives the element ``feature_index``
    (a position, negative counting from the end, or a dict key); a container of one tensor needs no
    index.

    Args:
        output: what the wrapped model returned.
        feature_index: which element of a list/tuple/dict to use.
        name: name used in error messages.

    Returns:
        the selected tensor (not shape-checked here).

    Raises:
        TypeError: the output (or the selected element) is not a tensor, or the container is empty.
        ValueError: several tensors and no ``feature_index``, or an index that is not there.

    Example:
        >>> a, b = torch.zeros(1, 2, 4, 4), torch.ones(1, 8, 2, 2)
        >>> select_feature_map([a, b], 0).shape
        torch.Size([1, 2, 4, 4])
        >>> select_feature_map({"c4": a, "c5": b}, "c5").shape
        torch.Size([1, 8, 2, 2])
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        items = list(output.items())
    elif isinstance(output, Sequence) and not isinstance(output, (str, bytes)):
        items = list(enumerate(output))
    else:
        raise TypeError(
            f"{name} must be a tensor (B, C, Hf, Wf), or a list/tuple/dict of them with feature_index, "
            f"got {type(output).__name__}"
        )
    if not items:
        raise TypeError(f"{name} is an empty {type(output).__name__}; expected a tensor (B, C, Hf, Wf)")

    def shapes() -> dict[Any, Any]:  # for the error messages only
        return {key: tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__ for key, v in items}

    if isinstance(feature_index, bool):
        raise TypeError(f"feature_index must be an int position or a dict key, got {feature_index!r}")
    if feature_index is None:
        if len(items) > 1:
            raise ValueError(
                f"{name} is a {type(output).__name__} of {len(items)} feature maps {shapes()}; pass "
                "feature_index (a position or key) to say which one the adapter uses"
            )
        feature_index = items[0][0]
        selected = items[0][1]
    else:
        try:
            selected = output[feature_index]
        except (IndexError, KeyError, TypeError):
            raise ValueError(
                f"feature_index {feature_index!r} is not in {name}, which holds {shapes()}"
            ) from None
    if not isinstance(selected, torch.Tensor):
        raise TypeError(f"{name}[{feature_index!r}] must be a tensor, got {type(selected).__name__}")
    return selected


def factory_kwargs(module: nn.Module) -> dict[str, Any]:
    """Device and floating dtype of a module's first floating parameter or buffer (default: CPU float32)."""
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return {"device": tensor.device, "dtype": tensor.dtype}
    return {"device": None, "dtype": None}


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Put ``module`` in eval mode and restore every submodule's training flag afterwards.

    Eval mode keeps BatchNorm running statistics (and dropout) untouched; no copy of the module is made.

    Example:
        >>> net = nn.Sequential(nn.BatchNorm2d(3)).train()
        >>> with eval_mode(net):
        ...     net.training
        False
        >>> net.training
        True
    """
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


def _build_reasoner(
    reasoner: ReasonerFactory | None,
    in_dim: int,
    num_keypoints: int,
    feature_channels: int,
    factory: dict[str, Any],
) -> VisibilityMaskedReasoner | None:
    """Call the injected factory (``None``: no reasoner) and check what it built."""
    if reasoner is None:
        return None
    if isinstance(reasoner, (bool, nn.Module)) or not callable(reasoner):
        raise TypeError(
            "reasoner must be a factory such as VisibilityMaskedReasoner or "
            "functools.partial(VisibilityMaskedReasoner, embed_dim=256), or None for no reasoner, got "
            f"{type(reasoner).__name__}"
            + ("; to use a reasoner you built, pass `lambda *args, **kwargs: reasoner`"
               if isinstance(reasoner, nn.Module) else "")
        )  # fmt: skip
    built = reasoner(in_dim, num_keypoints, feature_channels=feature_channels, **factory)
    if not isinstance(built, VisibilityMaskedReasoner):
        raise TypeError(
            f"the reasoner factory must return a VisibilityMaskedReasoner, got {type(built).__name__}"
        )
    got = (built.in_dim, built.num_keypoints)
    if got != (in_dim, num_keypoints):
        raise ValueError(
            f"the reasoner must have (in_dim, num_keypoints) = {(in_dim, num_keypoints)} (D = Hf * Wf tokens "
            f"of K keypoints), got {got}"
        )
    if built.feature_channels not in (0, feature_channels):
        available = (
            f"0 or the backbone's C={feature_channels}"
            if feature_channels
            else "0: a heatmap model hands VisNet no backbone features"
        )
        raise ValueError(f"the reasoner's feature_channels must be {available}, got {built.feature_channels}")
    return built


def _check_flags_arg(flags: torch.Tensor | None, batch: int, num_keypoints: int) -> None:
    if flags is not None:
        check_flag_tensor("flags", flags, "B K", B=batch, K=num_keypoints)


class SimCCAdapter(nn.Module):
    """A backbone + final conv + (optional) visibility-masked reasoner + SimCC head.

    ``images (B, 3, H, W) -> backbone -> (B, C, Hf, Wf) -> final conv -> (B, K, Hf, Wf) -> tokens
    (B, K, D = Hf * Wf) -> reasoner -> SimCC head -> (B, K, Wx), (B, K, Hy)``.

    The map size ``(Hf, Wf)`` is inferred at construction by running the backbone once on a zero
    tensor ``(1, 3, H, W)`` in eval mode under ``torch.no_grad`` (every submodule's training flag is
    restored afterwards, BatchNorm statistics are not touched), unless ``heatmap_size`` is given. See the
    module docstring for what the backbone may return.

    Args:
        backbone: module mapping ``(B, 3, H, W)`` images to a ``(B, C, Hf, Wf)`` feature map.
        in_channels: ``C``, the backbone's output channels.
        num_keypoints: ``K``.
        input_size: ``(H, W)`` input crop size; images must have exactly this size.
        split_ratio: SimCC bins per pixel.
        sigma: SimCC target standard deviation in bins (6 for ResNet recipes, 4 for HRNet).
        final_kernel_size: odd kernel size of the final ``Conv2d(C, K)`` (1 for SimpleBaseline, 7 for
            HRNet in the paper), padded to keep ``(Hf, Wf)``.
        heatmap_size: ``(Hf, Wf)`` to skip the probe run (the backbone output is still checked in
            ``forward``).
        feature_index: which element of a list/tuple/dict backbone output to use (see
            [`select_feature_map`][visattn.adapters.select_feature_map]).
        reasoner: factory of the reasoner, called as ``reasoner(D, K, feature_channels=C, device=...,
            dtype=...)`` (VisNet pools the backbone's ``C``-channel features at each keypoint unless the
            factory sets ``visnet_evidence="token"``, the paper's token-only VisNet); ``None`` gives the
            plain SimCC baseline.
        head_bias: bias of the SimCC classifiers; default ``False`` with a reasoner (authors' code),
            ``True`` without (plain SimCC).

    Attributes:
        backbone: the wrapped backbone.
        final_layer: ``Conv2d(C, K)`` producing one map per keypoint.
        reasoner: the [`VisibilityMaskedReasoner`][visattn.reasoner.VisibilityMaskedReasoner], or ``None``.
        head: the [`SimCCHead`][visattn.heads.SimCCHead] (targets, decoding, flip test, loss).
        num_keypoints: K.
        input_size: ``(H, W)`` of the input crops.
        heatmap_size: ``(Hf, Wf)`` of the keypoint maps.
        token_dim: D = Hf * Wf.
        split_ratio: SimCC bins per pixel.

    Example:
        >>> from functools import partial
        >>> backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU())
        >>> model = SimCCAdapter(backbone, 8, 17, (32, 24),
        ...                      reasoner=partial(VisibilityMaskedReasoner, embed_dim=16, depth=1))
        >>> model.heatmap_size, model.token_dim
        ((8, 6), 48)
        >>> out = model(torch.zeros(2, 3, 32, 24))
        >>> tuple(out.x_logits.shape), tuple(out.y_logits.shape), tuple(out.vis_logits.shape)
        ((2, 17, 48), (2, 17, 64), (2, 17))
    """

    def __init__(
        self,
        backbone: nn.Module,
        in_channels: int,
        num_keypoints: int,
        input_size: tuple[int, int],
        *,
        split_ratio: float = 2.0,
        sigma: float | tuple[float, float] = 6.0,
        final_kernel_size: int = 1,
        heatmap_size: tuple[int, int] | None = None,
        feature_index: int | str | None = None,
        reasoner: ReasonerFactory | None = VisibilityMaskedReasoner,
        head_bias: bool | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be an nn.Module, got {type(backbone).__name__}")
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.num_keypoints = check_positive_int("num_keypoints", num_keypoints)
        self.input_size = check_size_pair("input_size", input_size)
        check_positive_int("final_kernel_size", final_kernel_size)
        if final_kernel_size % 2 == 0:
            raise ValueError(f"final_kernel_size must be odd (to keep Hf x Wf), got {final_kernel_size}")
        if head_bias is not None and not isinstance(head_bias, bool):
            raise TypeError(f"head_bias must be a bool or None, got {type(head_bias).__name__} {head_bias!r}")
        self.feature_index = feature_index
        factory = factory_kwargs(backbone)
        if heatmap_size is None:
            probe = torch.zeros(1, 3, *self.input_size, **factory)
            with eval_mode(backbone), torch.no_grad():
                feature = select_feature_map(backbone(probe), feature_index)
            check_tensor("backbone output", feature, "B C Hf Wf", floating=True, B=1, C=self.in_channels)
            heatmap_size = (int(feature.shape[2]), int(feature.shape[3]))
            if feature.numel() == 0:
                raise ValueError(
                    f"backbone output must have a non-empty (Hf, Wf), got {tuple(feature.shape)}"
                )
        self.heatmap_size = check_size_pair("heatmap_size", heatmap_size)
        self.token_dim = self.heatmap_size[0] * self.heatmap_size[1]
        self.backbone = backbone
        self.final_layer = nn.Conv2d(
            in_channels, num_keypoints, final_kernel_size, padding=final_kernel_size // 2, **factory
        )
        self.reasoner = _build_reasoner(reasoner, self.token_dim, num_keypoints, self.in_channels, factory)
        bias = self.reasoner is None if head_bias is None else head_bias
        self.head = SimCCHead(
            self.token_dim, self.input_size, split_ratio=split_ratio, sigma=sigma, bias=bias, **factory
        )
        self.split_ratio = self.head.split_ratio

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Keypoint tokens before the reasoner.

        Args:
            images: ``(B, 3, H, W)`` crops of exactly ``input_size``.

        Returns:
            ``(B, K, D)`` tokens, ``D = Hf * Wf``.
        """
        return self._features_and_tokens(images)[1]

    def _features_and_tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone features ``(B, C, Hf, Wf)`` and keypoint tokens ``(B, K, D)`` of checked images."""
        height, width = self.input_size
        check_tensor("images", images, "B C H W", floating=True, C=3, H=height, W=width)
        check_matches_parameters("images", images, self.final_layer.weight, "model")
        feature = select_feature_map(self.backbone(images), self.feature_index)
        height, width = self.heatmap_size
        check_tensor(
            "backbone output", feature, "B C Hf Wf", floating=True, B=images.shape[0], C=self.in_channels,
            Hf=height, Wf=width,
        )  # fmt: skip
        maps: torch.Tensor = self.final_layer(feature)  # (B, K, Hf, Wf)
        return feature, maps.flatten(2)  # (B, C, Hf, Wf), (B, K, D)

    def reason(
        self, images: torch.Tensor, flags: torch.Tensor | None = None, *, return_attn: bool = False
    ) -> ReasonerOutput:
        """The reasoner's whole output for a batch (refined tokens, visibility, mask, attention maps).

        Args:
            images: ``(B, 3, H, W)`` crops of exactly ``input_size``.
            flags: optional ``(B, K)`` COCO flags 0/1/2 (visible iff ``v == 2``).
            return_attn: also return every block's attention maps ``(B, Hh, K, K)``.

        Returns:
            [`ReasonerOutput`][visattn.reasoner.ReasonerOutput].

        Raises:
            ValueError: the adapter has no reasoner.
        """
        if self.reasoner is None:
            raise ValueError("reason() needs a reasoner; this SimCCAdapter was built with reasoner=None")
        feature, tokens = self._features_and_tokens(images)
        _check_flags_arg(flags, tokens.shape[0], self.num_keypoints)
        features = feature if self.reasoner.feature_channels else None
        return self.reasoner._refine(tokens, flags, features, return_attn)

    def forward(self, images: torch.Tensor, flags: torch.Tensor | None = None) -> SimCCOutput:
        """Predict SimCC logits (and visibility with a reasoner).

        Args:
            images: ``(B, 3, H, W)`` crops of exactly ``input_size``.
            flags: optional ``(B, K)`` COCO flags 0/1/2 (visible iff ``v == 2``), passed to the reasoner
                (used with its ``mask_source`` "ground_truth" / "mixed"); shape-checked but unused
                without a reasoner.

        Returns:
            [`SimCCOutput`][visattn.heads.SimCCOutput] ``(x_logits (B, K, Wx), y_logits (B, K, Hy),
            vis_logits (B, K) | None, mask (B, K) | None)``.
        """
        feature, tokens = self._features_and_tokens(images)
        _check_flags_arg(flags, tokens.shape[0], self.num_keypoints)
        if self.reasoner is None:
            x_logits, y_logits = self.head.x_head(tokens), self.head.y_head(tokens)
            return SimCCOutput(x_logits, y_logits, None, None)
        features = feature if self.reasoner.feature_channels else None
        refined = self.reasoner._refine(tokens, flags, features)
        x_logits, y_logits = self.head.x_head(refined.tokens), self.head.y_head(refined.tokens)
        return SimCCOutput(x_logits, y_logits, refined.vis_logits, refined.mask)


class HeatmapAdapter(nn.Module):
    """A heatmap pose model + (optional) visibility-masked reasoner on its heatmaps.

    ``images -> pose_model -> (B, K, Hf, Wf) -> tokens (B, K, D = Hf * Wf) -> reasoner -> (B, K, Hf, Wf)``.
    The pose model's output is checked in ``forward`` (see the module docstring for accepted output
    containers).

    Args:
        pose_model: module mapping ``(B, 3, H, W)`` images to ``(B, K, Hf, Wf)`` heatmaps.
        num_keypoints: ``K``.
        heatmap_size: ``(Hf, Wf)`` of the heatmaps (64 x 48 for 256 x 192 crops).
        input_size: ``(H, W)`` of the input crops (default: stride 4, ``4 * heatmap_size``); images must
            have this size, and decoded keypoints are in its pixels.
        sigma: heatmap target standard deviation in cells.
        refinement: sub-pixel refinement of the decoding, ``"quarter"`` or ``"dark"``
            ([`HeatmapHead`][visattn.heads.HeatmapHead]).
        feature_index: which element of a list/tuple/dict model output to use.
        reasoner: factory of the reasoner (called as ``reasoner(D, K, feature_channels=0, device=...,
            dtype=...)``), or ``None`` to pass the heatmaps through.

    Attributes:
        pose_model: the wrapped heatmap model.
        reasoner: the [`VisibilityMaskedReasoner`][visattn.reasoner.VisibilityMaskedReasoner], or ``None``.
        head: the [`HeatmapHead`][visattn.heads.HeatmapHead] (targets, decoding, flip test, loss).
        num_keypoints: K.
        input_size: ``(H, W)``.
        heatmap_size: ``(Hf, Wf)`` of the heatmaps.
        token_dim: D = Hf * Wf.

    Example:
        >>> from functools import partial
        >>> pose_model = nn.Conv2d(3, 17, 3, stride=4, padding=1)
        >>> model = HeatmapAdapter(pose_model, 17, heatmap_size=(8, 6),
        ...                        reasoner=partial(VisibilityMaskedReasoner, embed_dim=16, depth=1))
        >>> out = model(torch.zeros(2, 3, 32, 24))
        >>> tuple(out.heatmaps.shape), tuple(out.vis_logits.shape)
        ((2, 17, 8, 6), (2, 17))
    """

    def __init__(
        self,
        pose_model: nn.Module,
        num_keypoints: int,
        *,
        heatmap_size: tuple[int, int] = (64, 48),
        input_size: tuple[int, int] | None = None,
        sigma: float = 2.0,
        refinement: str = "quarter",
        feature_index: int | str | None = None,
        reasoner: ReasonerFactory | None = VisibilityMaskedReasoner,
    ) -> None:
        super().__init__()
        if not isinstance(pose_model, nn.Module):
            raise TypeError(f"pose_model must be an nn.Module, got {type(pose_model).__name__}")
        self.num_keypoints = check_positive_int("num_keypoints", num_keypoints)
        self.head = HeatmapHead(heatmap_size, input_size, sigma=sigma, refinement=refinement)
        self.heatmap_size = self.head.heatmap_size
        self.input_size = self.head.input_size
        self.token_dim = self.heatmap_size[0] * self.heatmap_size[1]
        self.feature_index = feature_index
        self.pose_model = pose_model
        factory = factory_kwargs(pose_model)
        self.reasoner = _build_reasoner(reasoner, self.token_dim, num_keypoints, 0, factory)

    def _heatmaps(self, images: torch.Tensor) -> torch.Tensor:
        """The wrapped model's checked ``(B, K, Hf, Wf)`` heatmaps."""
        height, width = self.input_size
        check_tensor("images", images, "B C H W", floating=True, C=3, H=height, W=width)
        parameter = next(self.pose_model.parameters(), None)
        if parameter is not None:
            check_matches_parameters("images", images, parameter, "pose model")
        heatmaps = select_feature_map(self.pose_model(images), self.feature_index, "pose_model output")
        height, width = self.heatmap_size
        check_tensor(
            "pose_model output", heatmaps, "B K Hf Wf", B=images.shape[0], K=self.num_keypoints, Hf=height,
            Wf=width,
        )  # fmt: skip
        return heatmaps

    def reason(
        self, images: torch.Tensor, flags: torch.Tensor | None = None, *, return_attn: bool = False
    ) -> ReasonerOutput:
        """The reasoner's whole output for a batch (see
        [`SimCCAdapter.reason`][visattn.adapters.SimCCAdapter.reason]); tokens are the flattened heatmaps
        ``(B, K, Hf * Wf)``.

        Raises:
            ValueError: the adapter has no reasoner.
        """
        if self.reasoner is None:
            raise ValueError("reason() needs a reasoner; this HeatmapAdapter was built with reasoner=None")
        heatmaps = self._heatmaps(images)
        _check_flags_arg(flags, heatmaps.shape[0], self.num_keypoints)
        return self.reasoner._refine(heatmaps.flatten(2), flags, None, return_attn)

    def forward(self, images: torch.Tensor, flags: torch.Tensor | None = None) -> HeatmapOutput:
        """Predict (refined) heatmaps and visibility.

        Args:
            images: ``(B, 3, H, W)`` crops of exactly ``input_size``.
            flags: optional ``(B, K)`` COCO flags 0/1/2 (visible iff ``v == 2``) for the reasoner's
                ground-truth mask source; shape-checked but unused without a reasoner.

        Returns:
            [`HeatmapOutput`][visattn.heads.HeatmapOutput]
            ``(heatmaps (B, K, Hf, Wf), vis_logits (B, K) | None, mask (B, K) | None)``.
        """
        heatmaps = self._heatmaps(images)
        _check_flags_arg(flags, heatmaps.shape[0], self.num_keypoints)
        if self.reasoner is None:
            return HeatmapOutput(heatmaps, None, None)
        refined = self.reasoner._refine(heatmaps.flatten(2), flags, None)  # tokens (B, K, D)
        out = refined.tokens.unflatten(2, self.heatmap_size)  # (B, K, Hf, Wf)
        return HeatmapOutput(out, refined.vis_logits, refined.mask)
