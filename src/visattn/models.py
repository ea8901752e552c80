"""Ready-made top-down pose models with (or without) the visattn layer.

[`create_model`][visattn.models.create_model] builds the paper's models in one call (timm-style), each a
complete top-down pose model ``(B, 3, H, W) -> SimCCOutput | HeatmapOutput`` with its head (`model.head`):

- ``resnet18`` / ``resnet50`` / ``resnet101`` / ``resnet152``: SimpleBaseline, a torchvision ResNet
  trunk + 3 x [ConvTranspose2d(k4, s2, p1, no bias) + BN + ReLU] with 256 channels (stride 4) + a 1x1
  final conv to K maps;
- ``hrnet_w32`` / ``hrnet_w48``: timm HRNet, its highest-resolution branch (32 / 48 channels,
  stride 4, picked by ``feature_index``, never by position in a list) + a 7x7 final conv;
- ``tiny``: the CPU demo network (7 conv-BN-ReLU to stride 8, one deconv to stride 4, 64 channels; a
  64x48 crop gives 16x12 keypoint maps, token dim D = 192). Needs no optional dependency.

torchvision and timm are optional (``pip install "visattn[models]"``) and imported only by the models
that need them. Nothing is downloaded unless ``hub_pretrained=True``; ``pretrained_backbone`` is a local
ImageNet state dict for the trunk.

Shape alphabet: B batch, K keypoints, H x W input crop, C backbone channels, Hf x Wf feature map.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visattn._checks import check_choice, check_positive_int, check_size_pair
from visattn.adapters import HeatmapAdapter, ReasonerFactory, SimCCAdapter
from visattn.reasoner import VisibilityMaskedReasoner

__all__ = ["HEADS", "NORMS", "create_model", "list_models", "load_model", "tiny_net"]

#: Head kinds of [`create_model`][visattn.models.create_model].
HEADS = ("simcc", "heatmap")
#: Trunk normalisations of [`create_model`][visattn.models.create_model]: BatchNorm, or GroupNorm (8 groups,
#: batch-size free).
NORMS = ("batch", "group")

_STRIDE = 4  # every model here gives stride-4 keypoint maps

NormFactory = Callable[[int], nn.Module]


def _norm(kind: str) -> NormFactory:
    if kind == "batch":
        return nn.BatchNorm2d
    return lambda channels: nn.GroupNorm(min(8, channels), channels)


def _conv_bn_relu(cin: int, cout: int, stride: int, norm: NormFactory) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), norm(cout), nn.ReLU(inplace=True)]


def _deconv_bn_relu(cin: int, cout: int, norm: NormFactory) -> list[nn.Module]:
    return [
        nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False),
        norm(cout),
        nn.ReLU(inplace=True),
    ]


def tiny_net(width: int = 64, *, norm: str = "batch") -> nn.Sequential:
    """The CPU demo trunk: 7 conv-BN-ReLU (stride 8) + 1 deconv (stride 4), ``width`` output channels.

    Example:
        >>> tiny_net()(torch.zeros(1, 3, 64, 48)).shape
        torch.Size([1, 64, 16, 12])
    """
    check_positive_int("width", width)
    n = _norm(check_choice("norm", norm, NORMS))
    half = max(1, width // 2)
    layers = [
        *_conv_bn_relu(3, half, 2, n),
        *_conv_bn_relu(half, half, 1, n),
        *_conv_bn_relu(half, width, 2, n),
        *_conv_bn_relu(width, width, 1, n),
        *_conv_bn_relu(width, width, 2, n),
        *_conv_bn_relu(width, width, 1, n),
        *_conv_bn_relu(width, width, 1, n),
        *_deconv_bn_relu(width, width, n),
    ]
    return nn.Sequential(*layers)


def _load_local(module: nn.Module, path: str | Path) -> None:
    """Load a local ImageNet state dict into ``module``, ignoring the classifier keys."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    try:
        missing, unexpected = module.load_state_dict(dict(state), strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"pretrained_backbone {path} does not fit the trunk: {err}") from None
    unexpected = [k for k in unexpected if not k.startswith(("fc.", "classifier.", "head"))]
    if missing or unexpected:
        raise ValueError(
            f"pretrained_backbone {path} does not fit the trunk: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}"
        )


def _simple_baseline(depth: int, norm: str, pretrained: str | Path | None, hub: bool) -> nn.Module:
    import torchvision

    builder = getattr(torchvision.models, f"resnet{depth}")
    resnet = builder(weights="IMAGENET1K_V1" if hub else None, norm_layer=_norm(norm))
    if pretrained is not None:
        _load_local(resnet, pretrained)
    trunk = nn.Sequential(*list(resnet.children())[:-2])  # drop avgpool + fc -> (B, C, H/32, W/32)
    n = _norm(norm)
    channels = resnet.fc.in_features
    deconvs = [
        *_deconv_bn_relu(channels, 256, n),
        *_deconv_bn_relu(256, 256, n),
        *_deconv_bn_relu(256, 256, n),
    ]
    return nn.Sequential(trunk, *deconvs)


def _hrnet(width: int, norm: str, pretrained: str | Path | None, hub: bool) -> nn.Module:
    """timm HRNet's raw highest-resolution branch (stride 4) of the final stage, as a one-element list.

    ``features_only=True, feature_location='', out_indices=(1,)`` returns the final stage's branch 1
    without timm's classification "incre" modules; the final stage's fuse layers for the three
    lower-resolution outputs are dropped (nothing reads them, which also keeps DDP free of unused
    parameters).
    """
    if norm != "batch":
        raise ValueError(f"norm must be 'batch' for the HRNet models, got {norm!r}")
    import timm

    kwargs: dict[str, Any] = {"features_only": True, "feature_location": "", "out_indices": (1,)}
    if pretrained is not None:
        kwargs["pretrained_cfg_overlay"] = {"file": str(pretrained)}
    model: Any = timm.create_model(f"hrnet_w{width}", pretrained=hub or pretrained is not None, **kwargs)
    last = model.stage4[-1]
    last.fuse_layers = last.fuse_layers[:1]
    trunk: nn.Module = model
    return trunk


def _tiny(norm: str, pretrained: str | Path | None, hub: bool) -> nn.Module:
    if pretrained is not None or hub:
        raise ValueError("model 'tiny' has no ImageNet weights; drop pretrained_backbone / hub_pretrained")
    return tiny_net(64, norm=norm)


# name -> (trunk builder (norm, pretrained, hub), channels C, final kernel size)
_MODELS: dict[str, tuple[Callable[[str, str | Path | None, bool], nn.Module], int, int]] = {
    "tiny": (_tiny, 64, 1),
    **{f"resnet{d}": (partial(_simple_baseline, d), 256, 1) for d in (18, 50, 101, 152)},
    **{f"hrnet_w{w}": (partial(_hrnet, w), w, 7) for w in (32, 48)},
}


def list_models() -> list[str]:
    """Names [`create_model`][visattn.models.create_model] accepts.

    Example:
        >>> list_models()
        ['hrnet_w32', 'hrnet_w48', 'resnet101', 'resnet152', 'resnet18', 'resnet50', 'tiny']
    """
    return sorted(_MODELS)


def _reasoner_factory(visattn: Any) -> ReasonerFactory | None:
    if visattn is True:
        return VisibilityMaskedReasoner
    if visattn is False or visattn is None:
        return None
    if isinstance(visattn, Mapping):
        return partial(VisibilityMaskedReasoner, **dict(visattn))
    if callable(visattn) and not isinstance(visattn, nn.Module):
        factory: ReasonerFactory = visattn
        return factory
    raise TypeError(
        "visattn must be True, False, a dict of VisibilityMaskedReasoner keyword arguments or a reasoner "
        f"factory, got {type(visattn).__name__}"
    )


class _ListHead(nn.Module):
    """``trunk(images)`` (a one-element list of features) -> final conv -> heatmaps."""

    def __init__(self, trunk: nn.Module, final: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk
        self.final = final

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.trunk(images)
        out: torch.Tensor = self.final(features[0] if isinstance(features, (list, tuple)) else features)
        return out  # (B, K, Hf, Wf)


def create_model(
    name: str,
    *,
    num_keypoints: int = 17,
    head: str = "simcc",
    visattn: bool | Mapping[str, Any] | ReasonerFactory | None = True,
    input_size: tuple[int, int] = (256, 192),
    split_ratio: float = 2.0,
    sigma: float | None = None,
    refinement: str = "quarter",
    norm: str = "batch",
    pretrained_backbone: str | Path | None = None,
    hub_pretrained: bool = False,
) -> SimCCAdapter | HeatmapAdapter:
    """Build a top-down pose model by name.

    Args:
        name: one of [`list_models`][visattn.models.list_models].
        num_keypoints: ``K`` (17 COCO, 14 CrowdPose; see
            [`visattn.keypoints.list_keypoint_sets`][visattn.keypoints.list_keypoint_sets]).
        head: ``"simcc"`` (coordinate classification, [`SimCCAdapter`][visattn.adapters.SimCCAdapter]) or
            ``"heatmap"`` ([`HeatmapAdapter`][visattn.adapters.HeatmapAdapter]).
        visattn: ``True`` inserts the visibility-masked reasoner with its defaults, a dict sets its
            keyword arguments (``{"embed_dim": 256, "mask_source": "ground_truth"}``), a factory is used
            as it is; ``False`` / ``None`` gives the plain baseline.
        input_size: ``(H, W)`` crop size (multiples of 32 for the ResNets and HRNets, of 4 for ``tiny``).
        split_ratio: SimCC bins per pixel.
        sigma: target standard deviation (SimCC bins, default 6; heatmap cells, default 2).
        refinement: heatmap decoding refinement, ``"quarter"`` or ``"dark"``.
        norm: ``"batch"`` or ``"group"`` normalisation of the trunk (``tiny`` and the ResNets).
        pretrained_backbone: local ImageNet weights of the trunk (a torchvision / timm state dict).
        hub_pretrained: download ImageNet weights from the torchvision / timm hub.

    Returns:
        the adapter; ``model.head`` holds its targets, decoding, flip test and loss.

    Example:
        >>> model = create_model("tiny", input_size=(64, 48), visattn={"embed_dim": 64, "depth": 1})
        >>> model.heatmap_size, model.token_dim, type(model.head).__name__
        ((16, 12), 192, 'SimCCHead')
    """
    if name not in _MODELS:
        raise ValueError(f"name must be one of {list_models()}, got {name!r}")
    check_choice("head", head, HEADS)
    check_choice("norm", norm, NORMS)
    k = check_positive_int("num_keypoints", num_keypoints)
    height, width = check_size_pair("input_size", input_size)
    multiple = _STRIDE if name == "tiny" else 32  # the ResNet / HRNet trunks go down to stride 32
    if height % multiple or width % multiple:
        raise ValueError(f"input_size of {name!r} must be multiples of {multiple}, got {(height, width)}")
    if not isinstance(hub_pretrained, bool):
        raise TypeError(f"hub_pretrained must be a bool, got {type(hub_pretrained).__name__}")
    reasoner = _reasoner_factory(visattn)
    build, channels, kernel = _MODELS[name]
    trunk = build(norm, pretrained_backbone, hub_pretrained)
    heatmap_size = (height // _STRIDE, width // _STRIDE)
    if head == "simcc":
        return SimCCAdapter(
            trunk, channels, k, (height, width), split_ratio=split_ratio,
            sigma=6.0 if sigma is None else sigma, final_kernel_size=kernel, heatmap_size=heatmap_size,
            feature_index=0 if name.startswith("hrnet") else None, reasoner=reasoner,
        )  # fmt: skip
    final = nn.Conv2d(channels, k, kernel, padding=kernel // 2)
    return HeatmapAdapter(
        _ListHead(trunk, final), k, heatmap_size=heatmap_size, input_size=(height, width),
        sigma=2.0 if sigma is None else sigma, refinement=refinement, reasoner=reasoner,
    )  # fmt: skip


def load_model(path: str | Path) -> tuple[dict[str, Any], SimCCAdapter | HeatmapAdapter]:
    """A checkpoint holding ``model`` weights and ``model_config`` (the
    [`create_model`][visattn.models.create_model] keyword arguments, as ``examples/train.py`` writes
    them) and the model rebuilt from it, weights loaded.

    Read with ``weights_only=True``
    ([`visattn.checkpoint.read_checkpoint`][visattn.checkpoint.read_checkpoint]); no ImageNet weights are
    fetched. Every failure is a
    [`CheckpointError`][visattn.checkpoint.CheckpointError] saying what does not fit.

    Returns:
        ``(state, model)``: the checkpoint dict and the model (on the CPU, in training mode).

    Example:
        >>> import tempfile
        >>> from visattn.checkpoint import save_checkpoint
        >>> config = {"name": "tiny", "input_size": [32, 24], "visattn": False}
        >>> path = Path(tempfile.mkdtemp()) / "m.pt"
        >>> save_checkpoint(path, {"model": create_model(**config).state_dict(), "model_config": config})
        >>> type(load_model(path)[1]).__name__
        'SimCCAdapter'
    """
    from visattn.checkpoint import CheckpointError, read_checkpoint, state_dict_mismatch

    state = read_checkpoint(path)
    if not isinstance(state, dict) or "model" not in state or not isinstance(state.get("model_config"), dict):
        raise CheckpointError(
            f"{path} is not a visattn checkpoint (no 'model' / 'model_config')",
            "pass a checkpoint written by examples/train.py",
        )
    try:
        model = create_model(
            **{**state["model_config"], "pretrained_backbone": None, "hub_pretrained": False}
        )
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"cannot rebuild the model from the checkpoint's config: {err}",
            "pass a checkpoint written by this version of examples/train.py",
        ) from None
    mismatch = state_dict_mismatch(model, state["model"])
    if mismatch:
        raise CheckpointError(
            f"checkpoint weights do not fit its config: {mismatch}", "retrain or pass another file"
        )
    model.load_state_dict(state["model"])
    return state, model
