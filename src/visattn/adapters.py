"""Adapters that plug the visibility-masked reasoner into a pose model.

Two routes, as in the paper:

- :class:`SimCCAdapter` wraps a *backbone* that maps an image crop to a feature map ``(B, C, Hf, Wf)``.
  A final convolution gives one map per keypoint ``(B, K, Hf, Wf)``, flattened to keypoint tokens
  ``(B, K, D)`` with ``D = Hf * Wf``; the reasoner refines the tokens and a :class:`~visattn.heads.SimCCHead`
  classifies x and y coordinates. With ``reasoner=False`` it is the plain SimCC baseline.
- :class:`HeatmapAdapter` wraps a complete heatmap *pose model* ``(B, 3, H, W) -> (B, K, Hf, Wf)``;
  the heatmaps are flattened to tokens, refined and reshaped back to heatmaps.

Model output conventions (both adapters): the wrapped model may return a tensor, a list/tuple of
tensors (the **last** one is used: the deepest stage of a multi-stage backbone) or a dict of tensors
(the **last value in insertion order** is used, as returned by
``torchvision.models.feature_extraction.create_feature_extractor`` for the last requested node). Wrap the
model in a small ``nn.Module`` to pick a different output.

Shape alphabet: B batch, K keypoints, D token dim, H x W input crop, C backbone channels,
Hf x Wf feature map / heatmap, Wx / Hy SimCC bins.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
from torch import nn

from visattn._checks import (
    check_flags,
    check_matches_parameters,
    check_positive_int,
    check_size_pair,
    check_tensor,
)
from visattn.heads import SimCCHead
from visattn.reasoner import ReasonerOutput, VisibilityMaskedReasoner

__all__ = ["HeatmapAdapter", "HeatmapOutput", "SimCCAdapter", "SimCCOutput", "select_feature_map"]


class SimCCOutput(NamedTuple):
    """Output of :class:`SimCCAdapter`.

    Attributes:
        x_logits: ``(B, K, Wx)`` x-coordinate logits.
        y_logits: ``(B, K, Hy)`` y-coordinate logits.
        vis_logits: ``(B, K)`` float32 visibility logits (sigmoid > 0.5 means visible), ``None``
            without a reasoner.
        mask: ``(B, K)`` feature mask the reasoner applied (1.0 visible, ``occluded_scale``
            occluded), ``None`` without a reasoner.
    """

    x_logits: torch.Tensor
    y_logits: torch.Tensor
    vis_logits: torch.Tensor | None
    mask: torch.Tensor | None


class HeatmapOutput(NamedTuple):
    """Output of :class:`HeatmapAdapter`.

    Attributes:
        heatmaps: ``(B, K, Hf, Wf)`` (refined) heatmaps.
        vis_logits: ``(B, K)`` float32 visibility logits, ``None`` without a reasoner.
        mask: ``(B, K)`` feature mask the reasoner applied, ``None`` without a reasoner.
    """

    heatmaps: torch.Tensor
    vis_logits: torch.Tensor | None
    mask: torch.Tensor | None


def select_feature_map(output: Any, name: str = "backbone output") -> torch.Tensor:
    """Pick the feature map from a model's output.

    A tensor is returned as is, a list/tuple gives its last element and a dict (any mapping) its
    last value in insertion order.

    Args:
        output: what the wrapped model returned.
        name: name used in error messages.

    Returns:
        the selected tensor (not shape-checked here).

    Raises:
        TypeError: the output (or the selected element) is not a tensor, or the container is empty.

    Example:
        >>> a, b = torch.zeros(1, 2, 4, 4), torch.ones(1, 8, 2, 2)
        >>> select_feature_map([a, b]).shape
        torch.Size([1, 8, 2, 2])
        >>> select_feature_map({"c4": a, "c5": b}).shape
        torch.Size([1, 8, 2, 2])
    """
    selected = output
    if isinstance(output, Mapping):
        if not output:
            raise TypeError(f"{name} is an empty dict; expected a tensor (B, C, Hf, Wf)")
        selected = list(output.values())[-1]
    elif isinstance(output, Sequence) and not isinstance(output, (str, bytes)):
        if len(output) == 0:
            raise TypeError(f"{name} is an empty {type(output).__name__}; expected a tensor (B, C, Hf, Wf)")
        selected = output[-1]
    if not isinstance(selected, torch.Tensor):
        raise TypeError(
            f"{name} must be a tensor, a list/tuple of tensors (last used) or a dict of tensors (last value "
            f"used), got {type(output).__name__}"
            + ("" if selected is output else f" of {type(selected).__name__}")
        )
    return selected


def _factory_kwargs(module: nn.Module) -> dict[str, Any]:
    """Device and floating dtype of a module's first floating parameter or buffer (default: CPU float32)."""
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return {"device": tensor.device, "dtype": tensor.dtype}
    return {"device": None, "dtype": None}


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Put ``module`` in eval mode and restore every submodule's training flag afterwards.

    Eval mode keeps BatchNorm running statistics (and dropout) untouched; no copy of the module is made.
    """
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


def _check_ignored_visible(visible: torch.Tensor | None, batch: int, num_keypoints: int) -> None:
    """Validate ``visible`` (B, K) COCO flags or bools even where no reasoner uses them."""
    if visible is not None:
        check_flags("visible", visible, "B K", B=batch, K=num_keypoints)


def _build_reasoner(
    reasoner: bool | VisibilityMaskedReasoner,
    reasoner_kwargs: Mapping[str, Any] | None,
    in_dim: int,
    num_keypoints: int,
    factory: dict[str, Any],
    feature_channels: int,
) -> VisibilityMaskedReasoner | None:
    """``True`` -> new reasoner, ``False`` -> ``None``, a reasoner -> itself after checking its sizes.

    ``feature_channels`` is the ``C`` of the backbone features the adapter can hand to VisNet (0: none);
    a new reasoner uses them unless ``reasoner_kwargs`` says otherwise.
    """
    if reasoner_kwargs is not None and reasoner is not True:
        raise ValueError(
            "reasoner_kwargs is only used with reasoner=True, got reasoner_kwargs with a module/False"
        )
    if reasoner is True:
        kwargs = dict(reasoner_kwargs or {})
        for key in ("device", "dtype"):
            kwargs.setdefault(key, factory[key])
        kwargs.setdefault("feature_channels", feature_channels)
        if kwargs["feature_channels"] not in (0, feature_channels):
            raise ValueError(_feature_channels_message(feature_channels, kwargs["feature_channels"]))
        return VisibilityMaskedReasoner(in_dim, num_keypoints, **kwargs)
    if reasoner is False:
        return None
    if not isinstance(reasoner, VisibilityMaskedReasoner):
        raise TypeError(
            f"reasoner must be True, False or a VisibilityMaskedReasoner, got {type(reasoner).__name__}"
        )
    got = (reasoner.in_dim, reasoner.num_keypoints)
    if got != (in_dim, num_keypoints):
        raise ValueError(
            f"reasoner must have (in_dim, num_keypoints) = {(in_dim, num_keypoints)} (D = Hf * Wf tokens of "
            f"K keypoints), got {got}"
        )
    if reasoner.feature_channels not in (0, feature_channels):
        raise ValueError(_feature_channels_message(feature_channels, reasoner.feature_channels))
    return reasoner


def _feature_channels_message(available: int, got: int) -> str:
    if available == 0:
        return (
            "the reasoner's VisNet needs backbone features (feature_channels > 0) but this adapter has none "
            f"to give (a heatmap model returns heatmaps only); use feature_channels=0, got {got}"
        )
    return f"the reasoner's feature_channels must be 0 or the backbone's C={available}, got {got}"


class SimCCAdapter(nn.Module):
    """A backbone + final conv + (optional) visibility-masked reasoner + SimCC head.

    ``images (B, 3, H, W) -> backbone -> (B, C, Hf, Wf) -> final conv -> (B, K, Hf, Wf) -> tokens
    (B, K, D = Hf * Wf) -> reasoner -> SimCC head -> (B, K, Wx), (B, K, Hy)``.

    The feature size ``(Hf, Wf)`` is inferred at construction by running the backbone once on a zero
    tensor ``(1, 3, H, W)`` in eval mode under ``torch.no_grad`` (every submodule's training flag is
    restored afterwards, BatchNorm statistics are not touched), unless ``feature_size`` is given. See the
    module docstring for what the backbone may return (tensor, list/tuple -> last, dict -> last value).

    Args:
        backbone: module mapping ``(B, 3, H, W)`` images to a ``(B, C, Hf, Wf)`` feature map.
        in_channels: ``C``, the backbone's output channels.
        num_keypoints: ``K``.
        input_size: ``(H, W)`` input crop size; images must have exactly this size.
        split_ratio: SimCC bins per pixel.
        final_kernel_size: odd kernel size of the final ``Conv2d(C, K)`` (1 for SimpleBaseline, 7 for
            HRNet in the paper), padded to keep ``(Hf, Wf)``.
        feature_size: ``(Hf, Wf)`` to skip the probe run (the backbone output is still checked in
            ``forward``).
        reasoner: ``True`` builds ``VisibilityMaskedReasoner(D, K, feature_channels=C,
            **reasoner_kwargs)`` (VisNet pools the backbone's ``C``-channel features at each keypoint;
            ``reasoner_kwargs={"feature_channels": 0}`` gives the paper's token-only VisNet), a
            :class:`~visattn.reasoner.VisibilityMaskedReasoner` is used as is (its ``in_dim`` and
            ``num_keypoints`` must be ``D`` and ``K``, its ``feature_channels`` 0 or ``C``), ``False``
            gives the plain SimCC baseline.
        head_bias: bias of the SimCC classifiers; default ``False`` with a reasoner (authors' code),
            ``True`` without (plain SimCC).
        reasoner_kwargs: keyword arguments for the reasoner built with ``reasoner=True``.

    Attributes:
        backbone: the wrapped backbone.
        final_layer: ``Conv2d(C, K)`` producing one map per keypoint.
        reasoner: the :class:`~visattn.reasoner.VisibilityMaskedReasoner`, or ``None``.
        head: the :class:`SimCCHead`.
        num_keypoints: K.
        input_size: ``(H, W)`` of the input crops.
        feature_size: ``(Hf, Wf)`` of the keypoint maps.
        token_dim: D = Hf * Wf.
        split_ratio: SimCC bins per pixel.

    Example:
        >>> backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU())
        >>> model = SimCCAdapter(backbone, 8, 17, (32, 24), reasoner_kwargs={"embed_dim": 16, "depth": 1})
        >>> model.feature_size, model.token_dim
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
        final_kernel_size: int = 1,
        feature_size: tuple[int, int] | None = None,
        reasoner: bool | VisibilityMaskedReasoner = True,
        head_bias: bool | None = None,
        reasoner_kwargs: Mapping[str, Any] | None = None,
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
        factory = _factory_kwargs(backbone)
        if feature_size is None:
            probe = torch.zeros(1, 3, *self.input_size, **factory)
            with _eval_mode(backbone), torch.no_grad():
                feature = select_feature_map(backbone(probe), "backbone output")
            check_tensor("backbone output", feature, "B C Hf Wf", floating=True, B=1, C=self.in_channels)
            feature_size = (int(feature.shape[2]), int(feature.shape[3]))
            if feature.numel() == 0:
                raise ValueError(
                    f"backbone output must have a non-empty (Hf, Wf), got {tuple(feature.shape)}"
                )
        self.feature_size = check_size_pair("feature_size", feature_size)
        self.token_dim = self.feature_size[0] * self.feature_size[1]
        self.backbone = backbone
        self.final_layer = nn.Conv2d(
            in_channels, num_keypoints, final_kernel_size, padding=final_kernel_size // 2, **factory
        )
        self.reasoner = _build_reasoner(
            reasoner, reasoner_kwargs, self.token_dim, num_keypoints, factory, self.in_channels
        )
        bias = self.reasoner is None if head_bias is None else head_bias
        self.head = SimCCHead(self.token_dim, self.input_size, split_ratio=split_ratio, bias=bias, **factory)
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
        """Backbone features ``(B, C, Hf, Wf)`` and keypoint tokens ``(B, K, D)``."""
        height, width = self.input_size
        check_tensor("images", images, "B C H W", floating=True, C=3, H=height, W=width)
        check_matches_parameters("images", images, self.final_layer.weight, "model")
        feature = select_feature_map(self.backbone(images), "backbone output")
        height, width = self.feature_size
        check_tensor(
            "backbone output", feature, "B C Hf Wf", floating=True, C=self.in_channels, Hf=height, Wf=width
        )
        if feature.shape[0] != images.shape[0]:
            raise ValueError(
                f"backbone output must keep the batch size {images.shape[0]}, got {tuple(feature.shape)}"
            )
        maps: torch.Tensor = self.final_layer(feature)  # (B, K, Hf, Wf)
        return feature, maps.flatten(2)  # (B, C, Hf, Wf), (B, K, D)

    def reason(
        self, images: torch.Tensor, visible: torch.Tensor | None = None, *, return_attn: bool = False
    ) -> ReasonerOutput:
        """The reasoner's whole output for a batch (refined tokens, visibility, mask, attention maps).

        Args:
            images: ``(B, 3, H, W)`` crops of exactly ``input_size``.
            visible: optional ``(B, K)`` COCO flags 0/1/2 (visible iff ``v == 2``) or bools.
            return_attn: also return every block's attention maps ``(B, Hh, K, K)``.

        Returns:
            :class:`~visattn.reasoner.ReasonerOutput`.

        Raises:
            ValueError: the adapter has no reasoner.
        """
        if self.reasoner is None:
            raise ValueError("reason() needs a reasoner; this SimCCAdapter was built with reasoner=False")
        feature, tokens = self._features_and_tokens(images)
        features = feature if self.reasoner.feature_channels else None
        out: ReasonerOutput = self.reasoner(tokens, visible, features=features, return_attn=return_attn)
        return out

    def forward(self, images: torch.Tensor, visible: torch.Tensor | None = None) -> SimCCOutput:
        """Predict SimCC logits (and visibility with a reasoner).

        Args:
            images: ``(B, 3, H, W)`` crops of exactly ``input_size``.
            visible: optional ``(B, K)`` COCO flags 0/1/2 (visible iff ``v == 2``) or bools, passed to
                the reasoner (used with its ``mask_source`` "ground_truth" / "mixed"); validated but
                unused without a reasoner.

        Returns:
            :class:`SimCCOutput` ``(x_logits (B, K, Wx), y_logits (B, K, Hy), vis_logits (B, K) | None,
            mask (B, K) | None)``.
        """
        feature, tokens = self._features_and_tokens(images)
        if self.reasoner is None:
            _check_ignored_visible(visible, tokens.shape[0], self.num_keypoints)
            x_logits, y_logits = self.head(tokens)
            return SimCCOutput(x_logits, y_logits, None, None)
        refined = self.reasoner(tokens, visible, features=feature if self.reasoner.feature_channels else None)
        x_logits, y_logits = self.head(refined.tokens)
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
        reasoner: ``True`` builds ``VisibilityMaskedReasoner(D, K, **reasoner_kwargs)``, a reasoner
            module is used as is (sizes checked), ``False`` passes the heatmaps through.
        reasoner_kwargs: keyword arguments for the reasoner built with ``reasoner=True``.

    Attributes:
        pose_model: the wrapped heatmap model.
        reasoner: the :class:`~visattn.reasoner.VisibilityMaskedReasoner`, or ``None``.
        num_keypoints: K.
        heatmap_size: ``(Hf, Wf)`` of the heatmaps.
        token_dim: D = Hf * Wf.

    Example:
        >>> pose_model = nn.Conv2d(3, 17, 3, stride=4, padding=1)
        >>> model = HeatmapAdapter(pose_model, 17, heatmap_size=(8, 6),
        ...                        reasoner_kwargs={"embed_dim": 16, "depth": 1})
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
        reasoner: bool | VisibilityMaskedReasoner = True,
        reasoner_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(pose_model, nn.Module):
            raise TypeError(f"pose_model must be an nn.Module, got {type(pose_model).__name__}")
        self.num_keypoints = check_positive_int("num_keypoints", num_keypoints)
        self.heatmap_size = check_size_pair("heatmap_size", heatmap_size)
        self.token_dim = self.heatmap_size[0] * self.heatmap_size[1]
        self.pose_model = pose_model
        factory = _factory_kwargs(pose_model)
        self.reasoner = _build_reasoner(reasoner, reasoner_kwargs, self.token_dim, num_keypoints, factory, 0)

    def reason(
        self, images: torch.Tensor, visible: torch.Tensor | None = None, *, return_attn: bool = False
    ) -> ReasonerOutput:
        """The reasoner's whole output for a batch (see :meth:`SimCCAdapter.reason`); tokens are the
        flattened heatmaps ``(B, K, Hf * Wf)``.

        Raises:
            ValueError: the adapter has no reasoner.
        """
        if self.reasoner is None:
            raise ValueError("reason() needs a reasoner; this HeatmapAdapter was built with reasoner=False")
        heatmaps = self._heatmaps(images)
        out: ReasonerOutput = self.reasoner(heatmaps.flatten(2), visible, return_attn=return_attn)
        return out

    def _heatmaps(self, images: torch.Tensor) -> torch.Tensor:
        """The wrapped model's checked ``(B, K, Hf, Wf)`` heatmaps."""
        check_tensor("images", images, "B C H W", floating=True, C=3)
        parameter = next(self.pose_model.parameters(), None)
        if parameter is not None:
            check_matches_parameters("images", images, parameter, "pose model")
        heatmaps = select_feature_map(self.pose_model(images), "pose_model output")
        height, width = self.heatmap_size
        check_tensor("pose_model output", heatmaps, "B K Hf Wf", K=self.num_keypoints, Hf=height, Wf=width)
        if heatmaps.shape[0] != images.shape[0]:
            raise ValueError(
                f"pose_model output must keep the batch size {images.shape[0]}, got {tuple(heatmaps.shape)}"
            )
        return heatmaps

    def forward(self, images: torch.Tensor, visible: torch.Tensor | None = None) -> HeatmapOutput:
        """Predict (refined) heatmaps and visibility.

        Args:
            images: ``(B, 3, H, W)`` crops.
            visible: optional ``(B, K)`` COCO flags 0/1/2 (visible iff ``v == 2``) or bools for the
                reasoner's ground-truth mask source; validated but unused without a reasoner.

        Returns:
            :class:`HeatmapOutput` ``(heatmaps (B, K, Hf, Wf), vis_logits (B, K) | None,
            mask (B, K) | None)``.
        """
        heatmaps = self._heatmaps(images)
        height, width = self.heatmap_size
        if self.reasoner is None:
            _check_ignored_visible(visible, heatmaps.shape[0], self.num_keypoints)
            return HeatmapOutput(heatmaps, None, None)
        refined = self.reasoner(heatmaps.flatten(2), visible)  # tokens (B, K, D)
        out = refined.tokens.unflatten(2, (height, width))  # (B, K, Hf, Wf)
        return HeatmapOutput(out, refined.vis_logits, refined.mask)
