"""Pose-model builders for the visattn recipes: a few lines per model.

Every builder returns a complete top-down pose model ``(B, 3, H, W) -> SimCCOutput | HeatmapOutput``.
The visattn layer is one argument: ``reasoner=True`` inserts the visibility-masked reasoner between
the per-keypoint feature maps and the output head; ``reasoner=False`` is the plain baseline.

Models (paper section 5):

- ``simple_baseline(depth=50)``: torchvision ResNet trunk + 3 x [ConvTranspose2d(k4, s2, p1, no bias)
  + BN + ReLU] with 256 channels (stride 4) + final conv to K maps.
- ``hrnet_w32()``: timm ``hrnet_w32`` highest-resolution branch (32 channels, stride 4) + final 7x7 conv.
- ``tiny_net()``: the CPU demo network (7 conv-BN-ReLU to stride 8, one deconv to stride 4, 64 channels;
  a 64x48 crop gives 16x12 keypoint maps, token dim D = 192).

Usage::

    from models import ModelConfig, build_model

    model = build_model(ModelConfig(arch="resnet50", head="simcc", reasoner=True))

``pretrained`` is a local file with ImageNet weights for the trunk (torchvision / timm state dict);
weights are downloaded from the hub only with ``hub_pretrained=True`` (``--hub-pretrained``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visattn import HeatmapAdapter, SimCCAdapter

__all__ = [
    "ARCHS",
    "HEADS",
    "NORMS",
    "REASONER_DEFAULTS",
    "ModelConfig",
    "build_model",
    "hrnet_w32",
    "make_norm",
    "simple_baseline",
    "tiny_net",
]

ARCHS = ("tiny", "resnet18", "resnet50", "hrnet_w32")
HEADS = ("simcc", "heatmap")
NORMS = ("batch", "group")
NormFactory = Callable[[int], nn.Module]
#: ``VisibilityMaskedReasoner`` defaults of the keyword arguments the recipes set (train.py flags).
REASONER_DEFAULTS: dict[str, Any] = {
    "embed_dim": 512,
    "depth": 3,
    "num_heads": 2,
    "norm_first": True,
    "shared_qkv": False,
    "mask_source": "predicted",
    "masking": "features",
    "gt_prob": 0.5,
}


def make_norm(kind: str) -> NormFactory:
    """``"batch"`` -> BatchNorm2d, ``"group"`` -> GroupNorm with 8 groups (batch-size independent)."""
    if kind == "batch":
        return nn.BatchNorm2d
    if kind == "group":
        return lambda channels: nn.GroupNorm(min(8, channels), channels)
    raise ValueError(f"norm must be one of {list(NORMS)}, got {kind!r}")


def _conv_bn_relu(cin: int, cout: int, stride: int, norm: NormFactory) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), norm(cout), nn.ReLU(inplace=True)]


def _deconv_bn_relu(cin: int, cout: int, norm: NormFactory) -> list[nn.Module]:
    return [
        nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False),
        norm(cout),
        nn.ReLU(inplace=True),
    ]


def tiny_net(width: int = 64, *, norm: str = "batch") -> nn.Sequential:
    """The CPU demo trunk: 7 conv-BN-ReLU (stride 8) + 1 deconv (stride 4), ``width`` output channels."""
    n = make_norm(norm)
    half = width // 2
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
    missing, unexpected = module.load_state_dict(dict(state), strict=False)
    unexpected = [k for k in unexpected if not k.startswith(("fc.", "classifier.", "head"))]
    if missing or unexpected:
        raise ValueError(
            f"pretrained weights {path} do not fit the trunk: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}"
        )


def simple_baseline(
    depth: int = 50,
    *,
    norm: str = "batch",
    pretrained: str | Path | None = None,
    hub_pretrained: bool = False,
) -> nn.Sequential:
    """SimpleBaseline trunk: ResNet-``depth`` (stride 32) + 3 deconv layers (256 ch, stride 4)."""
    import torchvision

    builders = {18: torchvision.models.resnet18, 50: torchvision.models.resnet50}
    if depth not in builders:
        raise ValueError(f"depth must be one of {sorted(builders)}, got {depth}")
    weights = "IMAGENET1K_V1" if hub_pretrained else None
    resnet = builders[depth](weights=weights, norm_layer=make_norm(norm))
    if pretrained is not None:
        _load_local(resnet, pretrained)
    trunk = nn.Sequential(*list(resnet.children())[:-2])  # drop avgpool + fc -> (B, C, H/32, W/32)
    channels = resnet.fc.in_features
    n = make_norm(norm)
    deconvs = [
        *_deconv_bn_relu(channels, 256, n),
        *_deconv_bn_relu(256, 256, n),
        *_deconv_bn_relu(256, 256, n),
    ]
    return nn.Sequential(trunk, *deconvs)


def hrnet_w32(*, pretrained: str | Path | None = None, hub_pretrained: bool = False) -> nn.Module:
    """HRNet-W32 trunk from timm: the raw highest-resolution branch (32 channels, stride 4).

    ``features_only=True, feature_location='', out_indices=(1,)`` returns the final stage's branch 1
    (stride 4) without timm's classification "incre" modules. The final stage's fuse layers for the
    three lower-resolution outputs are dropped: nothing reads them (this also keeps DDP free of unused
    parameters).
    """
    import timm

    kwargs: dict[str, Any] = {"features_only": True, "feature_location": "", "out_indices": (1,)}
    if pretrained is not None:
        kwargs["pretrained_cfg_overlay"] = {"file": str(pretrained)}
    model = timm.create_model("hrnet_w32", pretrained=hub_pretrained or pretrained is not None, **kwargs)
    last = model.stage4[-1]
    last.fuse_layers = last.fuse_layers[:1]
    return model


@dataclass
class ModelConfig:
    """Everything needed to rebuild a recipe model (stored in every checkpoint).

    Attributes:
        arch: ``"tiny" | "resnet18" | "resnet50" | "hrnet_w32"``.
        head: ``"simcc"`` (coordinate classification) or ``"heatmap"``.
        reasoner: insert the visattn layer (VisNet + masking + reasoner).
        num_keypoints: K (17 COCO, 14 CrowdPose).
        input_size: ``(H, W)`` crop size.
        split_ratio: SimCC bins per pixel.
        norm: ``"batch"`` or ``"group"`` normalisation in the conv trunk (tiny / ResNet).
        reasoner_kwargs: keyword arguments of ``VisibilityMaskedReasoner`` (embed_dim, depth,
            num_heads, norm_first, shared_qkv, mask_source, masking, gt_prob).
        pretrained: local ImageNet weights for the trunk (not part of the architecture).
        hub_pretrained: download ImageNet weights from the torchvision / timm hub.
    """

    arch: str = "resnet50"
    head: str = "simcc"
    reasoner: bool = True
    num_keypoints: int = 17
    input_size: tuple[int, int] = (256, 192)
    split_ratio: float = 2.0
    norm: str = "batch"
    reasoner_kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None
    hub_pretrained: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (what checkpoints store)."""
        out = dataclasses.asdict(self)
        out["input_size"] = list(self.input_size)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}")
        values = dict(data)
        if "input_size" in values:
            values["input_size"] = tuple(values["input_size"])
        return cls(**values)

    def architecture(self) -> dict[str, Any]:
        """The fields that decide the model (compared when resuming a checkpoint).

        Reasoner keyword arguments a checkpoint does not name count as their defaults
        (:data:`REASONER_DEFAULTS`), so checkpoints written before a flag existed still resume.
        """
        out = self.to_dict()
        for key in ("pretrained", "hub_pretrained"):
            out.pop(key)
        if self.reasoner:
            out["reasoner_kwargs"] = {**REASONER_DEFAULTS, **out["reasoner_kwargs"]}
        return out

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """``(Hf, Wf)`` of every recipe trunk: stride 4."""
        return self.input_size[0] // 4, self.input_size[1] // 4


def _trunk(config: ModelConfig) -> tuple[nn.Module, int, int]:
    """(trunk, channels, final conv kernel size) of ``config.arch``."""
    weights = {"pretrained": config.pretrained, "hub_pretrained": config.hub_pretrained}
    if config.arch == "tiny":
        if config.pretrained is not None or config.hub_pretrained:
            raise ValueError("arch 'tiny' has no ImageNet weights; drop --pretrained / --hub-pretrained")
        return tiny_net(64, norm=config.norm), 64, 1
    if config.arch in ("resnet18", "resnet50"):
        return simple_baseline(int(config.arch[6:]), norm=config.norm, **weights), 256, 1
    if config.arch == "hrnet_w32":
        if config.norm != "batch":
            raise ValueError("arch 'hrnet_w32' supports only norm 'batch'")
        return hrnet_w32(**weights), 32, 7
    raise ValueError(f"arch must be one of {list(ARCHS)}, got {config.arch!r}")


def build_model(config: ModelConfig) -> SimCCAdapter | HeatmapAdapter:
    """Build the pose model described by ``config``.

    Example:
        >>> model = build_model(ModelConfig(arch="tiny", input_size=(64, 48)))
        >>> model.token_dim
        192
    """
    if config.head not in HEADS:
        raise ValueError(f"head must be one of {list(HEADS)}, got {config.head!r}")
    trunk, channels, kernel = _trunk(config)
    reasoner_kwargs = dict(config.reasoner_kwargs) if config.reasoner else None
    if config.head == "simcc":
        return SimCCAdapter(
            trunk,
            channels,
            config.num_keypoints,
            config.input_size,
            split_ratio=config.split_ratio,
            final_kernel_size=kernel,
            feature_size=config.heatmap_size,
            reasoner=config.reasoner,
            reasoner_kwargs=reasoner_kwargs,
        )
    final = nn.Conv2d(channels, config.num_keypoints, kernel, padding=kernel // 2)
    return HeatmapAdapter(
        nn.Sequential(trunk, final) if config.arch != "hrnet_w32" else _HRNetHeatmaps(trunk, final),
        config.num_keypoints,
        heatmap_size=config.heatmap_size,
        reasoner=config.reasoner,
        reasoner_kwargs=reasoner_kwargs,
    )


class _HRNetHeatmaps(nn.Module):
    """timm HRNet features (a one-element list) -> final conv -> heatmaps."""

    def __init__(self, trunk: nn.Module, final: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk
        self.final = final

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.final(self.trunk(images)[-1])  # (B, K, Hf, Wf)
