from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

import visattn.adapters as adapters
import visattn.heads as heads
from tests.helpers import assert_close
from visattn.adapters import (
    HeatmapAdapter,
    HeatmapOutput,
    SimCCAdapter,
    SimCCOutput,
    eval_mode,
    factory_kwargs,
    select_feature_map,
)
from visattn.codecs import heatmap_decode, simcc_decode
from visattn.heads import HeatmapHead, PoseHead, SimCCHead
from visattn.losses import heatmap_mse_loss, simcc_kl_loss
from visattn.reasoner import VisibilityMaskedReasoner

INPUT = (32, 24)  # (H, W): stride-4 backbone -> (Hf, Wf) = (8, 6), D = 48
SMALL = {"embed_dim": 16, "depth": 1, "num_heads": 2}
CPU32 = {"device": torch.device("cpu"), "dtype": torch.float32}


def _small(**kwargs: Any) -> Any:
    """A small reasoner factory: ``partial(VisibilityMaskedReasoner, embed_dim=16, depth=1, ...)``."""
    return partial(VisibilityMaskedReasoner, **{**SMALL, **kwargs})


def _built(reasoner: VisibilityMaskedReasoner) -> Any:
    """The documented way to inject a reasoner that is already built."""
    return lambda *args, **kwargs: reasoner


class TinyBackbone(nn.Module):
    """Two stride-2 conv + BN + ReLU stages: (B, 3, H, W) -> (B, C, H / 4, W / 4).

    ``output`` chooses the container: "tensor" (the last map), "list" / "tuple" / "dict" (both stages,
    the low-level map first, keys "low" / "high"), or "list1" / "tuple1" / "dict1" (the last map alone).
    """

    def __init__(self, channels: int = 8, output: str = "tensor") -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.stage = nn.Sequential(
            nn.Conv2d(4, channels, 3, stride=2, padding=1), nn.BatchNorm2d(channels), nn.ReLU()
        )
        self.output = output

    def forward(self, images: torch.Tensor) -> Any:
        low = self.stem(images)
        high = self.stage(low)
        containers = {
            "list": [low, high],
            "tuple": (low, high),
            "dict": {"low": low, "high": high},
            "list1": [high],
            "tuple1": (high,),
            "dict1": {"high": high},
        }
        return containers.get(self.output, high)


class ConstantOutput(nn.Module):
    """A 'backbone' that returns a fixed object whatever the input (for bad-output tests)."""

    def __init__(self, output: Any) -> None:
        super().__init__()
        self.output = output

    def forward(self, images: torch.Tensor) -> Any:
        return self.output


class ValueReads(TorchFunctionMode):
    """Records every call that reads a tensor's values back to Python (a device sync on an accelerator)."""

    READS = (
        torch.Tensor.item,
        torch.Tensor.tolist,
        torch.Tensor.numpy,
        torch.Tensor.__bool__,
        torch.Tensor.__int__,
        torch.Tensor.__float__,
        torch.Tensor.__index__,
        torch.is_nonzero,
    )

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in self.READS:
            self.seen.append(getattr(func, "__name__", repr(func)))
        return func(*args, **(kwargs or {}))


def _simcc(**kwargs: Any) -> SimCCAdapter:
    kwargs.setdefault("reasoner", _small())
    return SimCCAdapter(TinyBackbone(8), 8, 5, INPUT, **kwargs)


def _heat(**kwargs: Any) -> HeatmapAdapter:
    kwargs.setdefault("reasoner", _small())
    kwargs.setdefault("heatmap_size", (8, 6))
    return HeatmapAdapter(nn.Conv2d(3, 5, 3, stride=4, padding=1), 5, **kwargs)


def _flatten_loop(maps: torch.Tensor) -> torch.Tensor:
    """Oracle: row-major flatten of (B, K, Hf, Wf) -> (B, K, Hf * Wf) with explicit loops."""
    batch, keypoints, height, width = maps.shape
    out = torch.empty(batch, keypoints, height * width, dtype=maps.dtype)
    for b in range(batch):
        for k in range(keypoints):
            for i in range(height):
                for j in range(width):
                    out[b, k, i * width + j] = maps[b, k, i, j]
    return out


@pytest.mark.parametrize(
    ("kwargs", "bins"),
    [
        ({}, (48, 64)),
        ({"reasoner": None}, (48, 64)),
        ({"split_ratio": 1.0, "final_kernel_size": 3}, (24, 32)),
        ({"split_ratio": 1.5, "final_kernel_size": 7, "reasoner": None}, (36, 48)),
        ({"heatmap_size": (8, 6)}, (48, 64)),
    ],
)
def test_simcc_shapes(kwargs: dict[str, Any], bins: tuple[int, int]) -> None:
    model = _simcc(**kwargs)
    assert model.heatmap_size == (8, 6)
    assert not hasattr(model, "feature_size")  # one name for (Hf, Wf): heatmap_size
    assert model.token_dim == 48
    assert model.num_keypoints == 5
    assert model.input_size == INPUT
    assert isinstance(model.head, SimCCHead)
    out = model(torch.randn(3, 3, *INPUT))
    assert isinstance(out, SimCCOutput)
    assert out.x_logits.shape == (3, 5, bins[0])
    assert out.y_logits.shape == (3, 5, bins[1])
    if model.reasoner is None:
        assert out.vis_logits is None
        assert out.mask is None
    else:
        assert out.vis_logits is not None
        assert out.mask is not None
        assert out.vis_logits.shape == (3, 5)
        assert out.vis_logits.dtype == torch.float32
        assert out.mask.shape == (3, 5)


def test_renamed_and_removed_keywords() -> None:
    with pytest.raises(TypeError, match="feature_size"):
        SimCCAdapter(TinyBackbone(8), 8, 5, INPUT, feature_size=(8, 6))  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="reasoner_kwargs"):
        SimCCAdapter(TinyBackbone(8), 8, 5, INPUT, reasoner_kwargs=SMALL)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="reasoner_kwargs"):
        HeatmapAdapter(nn.Identity(), 5, reasoner_kwargs=SMALL)  # type: ignore[call-arg]


@pytest.mark.parametrize("output", ["tensor", "list1", "tuple1", "dict1"])
def test_a_single_map_needs_no_feature_index(output: str) -> None:
    model = SimCCAdapter(TinyBackbone(8, output), 8, 5, INPUT, reasoner=None)
    assert model.heatmap_size == (8, 6)
    images = torch.randn(2, 3, *INPUT)
    with torch.no_grad():
        high = model.backbone.stage(model.backbone.stem(images))
        maps = model.final_layer(high)
        tokens = model.forward_features(images)
    assert tokens.shape == (2, 5, 48)
    assert_close(tokens, _flatten_loop(maps))


@pytest.mark.parametrize("output", ["list", "tuple", "dict"])
def test_several_maps_without_feature_index_are_an_error(output: str) -> None:
    """The adapters never silently take the last map of a multi-output backbone."""
    with pytest.raises(ValueError, match=r"of 2 feature maps.*pass feature_index"):
        SimCCAdapter(TinyBackbone(8, output), 8, 5, INPUT, reasoner=None)
    # with heatmap_size there is no probe: the same error comes at forward
    model = SimCCAdapter(TinyBackbone(8, output), 8, 5, INPUT, heatmap_size=(8, 6), reasoner=None)
    with pytest.raises(ValueError, match=r"backbone output is a \w+ of 2 feature maps.*pass feature_index"):
        model(torch.randn(1, 3, *INPUT))


@pytest.mark.parametrize(
    ("output", "index", "stage"),
    [
        ("list", 1, "high"),
        ("list", -1, "high"),
        ("tuple", -1, "high"),
        ("dict", "high", "high"),
        ("list", 0, "low"),
        ("tuple", -2, "low"),
        ("dict", "low", "low"),
    ],
)
def test_feature_index_picks_that_map(output: str, index: int | str, stage: str) -> None:
    channels, size = (8, (8, 6)) if stage == "high" else (4, (16, 12))
    model = SimCCAdapter(TinyBackbone(8, output), channels, 5, INPUT, feature_index=index, reasoner=None)
    assert model.feature_index == index
    assert model.heatmap_size == size
    assert model.token_dim == size[0] * size[1]
    images = torch.randn(2, 3, *INPUT)
    with torch.no_grad():
        low = model.backbone.stem(images)
        feature = model.backbone.stage(low) if stage == "high" else low
        tokens = model.forward_features(images)
        out = model(images)
    assert_close(tokens, _flatten_loop(model.final_layer(feature)))
    assert out.x_logits.shape == (2, 5, 48)


def test_heatmap_adapter_feature_index() -> None:
    first, second = torch.randn(2, 5, 8, 6), torch.randn(2, 5, 8, 6)
    images = torch.randn(2, 3, *INPUT)
    for output, index, expected in (
        ([first, second], 0, first),
        ((first, second), -1, second),
        ({"a": first, "b": second}, "b", second),
    ):
        pose_model = ConstantOutput(output)
        with pytest.raises(ValueError, match=r"pose_model output is a \w+ of 2 feature maps.*feature_index"):
            HeatmapAdapter(pose_model, 5, heatmap_size=(8, 6), reasoner=None)(images)
        model = HeatmapAdapter(pose_model, 5, heatmap_size=(8, 6), feature_index=index, reasoner=None)
        assert torch.equal(model(images).heatmaps, expected)
    bad = HeatmapAdapter(
        ConstantOutput([first, second]), 5, heatmap_size=(8, 6), feature_index=2, reasoner=None
    )
    with pytest.raises(ValueError, match=r"feature_index 2 is not in pose_model output"):
        bad(images)


def test_select_feature_map() -> None:
    a, b = torch.zeros(1, 2, 4, 4), torch.ones(1, 8, 2, 2)
    assert select_feature_map(a) is a
    assert select_feature_map(a, 3) is a  # a tensor is returned as is
    assert select_feature_map([a]) is a
    assert select_feature_map((a,)) is a
    assert select_feature_map({"only": a}) is a
    assert select_feature_map([a, b], 0) is a
    assert select_feature_map([a, b], -1) is b
    assert select_feature_map((a, b), 1) is b
    assert select_feature_map({"c4": a, "c5": b}, "c5") is b
    assert select_feature_map({"c4": a, "c5": b}, feature_index="c4") is a
    with pytest.raises(ValueError, match=r"backbone output is a list of 2 feature maps.*pass feature_index"):
        select_feature_map([a, b])
    with pytest.raises(ValueError, match=r"pass feature_index"):
        select_feature_map({"c4": a, "c5": b})
    with pytest.raises(ValueError, match=r"feature_index 2 is not in backbone output"):
        select_feature_map([a, b], 2)
    with pytest.raises(ValueError, match=r"feature_index 'c3' is not in backbone output"):
        select_feature_map({"c4": a, "c5": b}, "c3")
    with pytest.raises(ValueError, match=r"feature_index 'c5' is not in"):
        select_feature_map([a, b], "c5")
    # the name is the third argument now
    with pytest.raises(ValueError, match=r"^pose_model output is a list of 2"):
        select_feature_map([a, b], None, "pose_model output")
    with pytest.raises(TypeError, match=r"^heatmaps must be a tensor"):
        select_feature_map("features", None, "heatmaps")


def test_select_feature_map_errors() -> None:
    with pytest.raises(TypeError, match="empty"):
        select_feature_map([])
    with pytest.raises(TypeError, match="empty"):
        select_feature_map({})
    with pytest.raises(TypeError, match="backbone output must be a tensor"):
        select_feature_map("features")
    with pytest.raises(TypeError, match="must be a tensor, got int"):
        select_feature_map([torch.zeros(1), 3], 1)
    with pytest.raises(TypeError, match="must be a tensor, got int"):
        select_feature_map([3])


def test_simcc_forward_wiring() -> None:
    """forward == head(reasoner(flatten(final_layer(backbone(images)))))."""
    model = _simcc().eval()
    images = torch.randn(2, 3, *INPUT)
    with torch.no_grad():
        out = model(images)
        features = model.backbone(images)
        tokens = _flatten_loop(model.final_layer(features))
        assert model.reasoner is not None
        assert model.reasoner.feature_channels == features.shape[1]  # VisNet sees the backbone features
        refined = model.reasoner(tokens, features=features)
        x_logits, y_logits = model.head(refined.tokens)
    assert_close(out.x_logits, x_logits)
    assert_close(out.y_logits, y_logits)
    assert out.vis_logits is not None
    assert out.mask is not None
    assert_close(out.vis_logits, refined.vis_logits)
    assert_close(out.mask, refined.mask)


def test_head_bias_defaults() -> None:
    assert _simcc().head.x_head.bias is None
    assert _simcc(reasoner=None).head.x_head.bias is not None
    assert _simcc(head_bias=True).head.y_head.bias is not None
    assert _simcc(reasoner=None, head_bias=False).head.y_head.bias is None


def test_probe_keeps_training_flags_and_bn_stats() -> None:
    backbone = TinyBackbone(8)
    backbone.stem[1].eval()  # a frozen BN inside a training backbone must stay frozen
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    SimCCAdapter(backbone, 8, 5, INPUT, reasoner=None)
    assert backbone.training
    assert backbone.stage.training
    assert not backbone.stem[1].training
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_eval_mode_and_factory_kwargs_are_public() -> None:
    assert "eval_mode" in adapters.__all__
    assert not hasattr(adapters, "_eval_mode")
    assert not hasattr(adapters, "_factory_kwargs")
    net = nn.Sequential(nn.BatchNorm2d(3), nn.Dropout()).train()
    net[1].eval()
    inside: list[bool] = []

    def fail_in_eval_mode() -> None:
        with eval_mode(net):
            inside.extend(m.training for m in net.modules())
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_in_eval_mode()
    assert inside == [False, False, False]
    assert net.training
    assert net[0].training
    assert not net[1].training  # every flag restored, also after an exception
    assert factory_kwargs(nn.Conv2d(3, 4, 1)) == CPU32
    assert factory_kwargs(nn.Conv2d(3, 4, 1).double()) == {
        "device": torch.device("cpu"),
        "dtype": torch.float64,
    }
    assert factory_kwargs(nn.ReLU()) == {"device": None, "dtype": None}


def test_reasoner_factory_contract() -> None:
    """The factory is called as factory(D, K, feature_channels=C, device=..., dtype=...)."""
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def factory(*args: Any, **kwargs: Any) -> VisibilityMaskedReasoner:
        calls.append((args, kwargs))
        return VisibilityMaskedReasoner(*args, **SMALL, **kwargs)

    model = SimCCAdapter(TinyBackbone(8), 8, 5, INPUT, reasoner=factory)
    assert calls == [((48, 5), {"feature_channels": 8, **CPU32})]
    assert isinstance(model.reasoner, VisibilityMaskedReasoner)
    assert model.reasoner.feature_channels == 8
    calls.clear()
    heat = HeatmapAdapter(
        nn.Conv2d(3, 5, 3, stride=4, padding=1).double(), 5, heatmap_size=(8, 6), reasoner=factory
    )
    assert calls == [
        ((48, 5), {"feature_channels": 0, "device": torch.device("cpu"), "dtype": torch.float64})
    ]
    assert heat.reasoner is not None
    assert heat.reasoner.feature_channels == 0
    assert heat.reasoner.embed.weight.dtype == torch.float64
    calls.clear()
    HeatmapAdapter(ConstantOutput(None), 5, heatmap_size=(4, 4), reasoner=factory)  # no parameters
    assert calls == [((16, 5), {"feature_channels": 0, "device": None, "dtype": None})]


def test_reasoner_factory_kwargs_reach_the_reasoner() -> None:
    model = _simcc(reasoner=_small(occluded_scale=0.1, mask_source="none", threshold=0.3))
    assert isinstance(model.reasoner, VisibilityMaskedReasoner)
    assert model.reasoner.occluded_scale == 0.1
    assert model.reasoner.mask_source == "none"
    assert model.reasoner.threshold == pytest.approx(0.3)
    assert model.reasoner.embed_dim == 16
    assert model.reasoner.depth == 1
    assert len(model.reasoner.blocks) == 1
    heat = _heat(reasoner=_small(depth=2, mask_mode="hard"))
    assert heat.reasoner is not None
    assert len(heat.reasoner.blocks) == 2
    assert heat.reasoner.mask_mode == "hard"


def test_default_reasoner_is_the_papers_size() -> None:
    model = SimCCAdapter(TinyBackbone(8), 8, 5, INPUT)
    assert type(model.reasoner) is VisibilityMaskedReasoner
    assert (model.reasoner.embed_dim, model.reasoner.depth) == (512, 3)
    assert model.reasoner.feature_channels == 8
    heat = HeatmapAdapter(nn.Conv2d(3, 5, 3, stride=4, padding=1), 5, heatmap_size=(8, 6))
    assert type(heat.reasoner) is VisibilityMaskedReasoner
    assert heat.reasoner.embed_dim == 512
    assert _simcc(reasoner=None).reasoner is None
    assert _heat(reasoner=None).reasoner is None


def test_built_reasoner_through_a_lambda() -> None:
    reasoner = VisibilityMaskedReasoner(48, 5, **SMALL)
    model = SimCCAdapter(TinyBackbone(8), 8, 5, INPUT, reasoner=_built(reasoner))
    assert model.reasoner is reasoner
    assert model.reasoner.feature_channels == 0  # a token-only reasoner fits any adapter
    assert model(torch.randn(2, 3, *INPUT)).vis_logits is not None
    heat_reasoner = VisibilityMaskedReasoner(48, 5, **SMALL)
    heat = _heat(reasoner=_built(heat_reasoner))
    assert heat.reasoner is heat_reasoner


@pytest.mark.parametrize("bad", [True, False, 1, "VisibilityMaskedReasoner", SMALL])
def test_reasoner_must_be_a_factory(bad: Any) -> None:
    with pytest.raises(TypeError, match="reasoner must be a factory"):
        _simcc(reasoner=bad)
    with pytest.raises(TypeError, match="reasoner must be a factory"):
        _heat(reasoner=bad)


def test_a_module_is_not_a_factory() -> None:
    built = VisibilityMaskedReasoner(48, 5, **SMALL)
    for module in (built, nn.Identity()):
        with pytest.raises(TypeError, match=r"(?s)reasoner must be a factory.*pass `lambda"):
            _simcc(reasoner=module)
        with pytest.raises(TypeError, match=r"(?s)reasoner must be a factory.*pass `lambda"):
            _heat(reasoner=module)


def test_reasoner_errors() -> None:
    with pytest.raises(TypeError, match="must return a VisibilityMaskedReasoner, got Identity"):
        _simcc(reasoner=lambda *args, **kwargs: nn.Identity())
    with pytest.raises(TypeError, match="must return a VisibilityMaskedReasoner, got NoneType"):
        _heat(reasoner=lambda *args, **kwargs: None)
    with pytest.raises(ValueError, match=r"\(in_dim, num_keypoints\) = \(48, 5\).*got \(40, 5\)"):
        _simcc(reasoner=_built(VisibilityMaskedReasoner(40, 5, **SMALL)))
    with pytest.raises(ValueError, match=r"the reasoner must have \(in_dim, num_keypoints\).*got \(48, 4\)"):
        _simcc(reasoner=_built(VisibilityMaskedReasoner(48, 4, **SMALL)))
    with pytest.raises(ValueError, match=r"the reasoner must have \(in_dim, num_keypoints\) = \(16, 5\)"):
        HeatmapAdapter(
            nn.Conv2d(3, 5, 1),
            5,
            heatmap_size=(4, 4),
            reasoner=_built(VisibilityMaskedReasoner(48, 5, **SMALL)),
        )


def test_flags_passthrough_ground_truth() -> None:
    model = _simcc(reasoner=_small(mask_source="ground_truth"))
    flags = torch.tensor([[0, 1, 2, 2, 1], [2, 2, 2, 0, 0]])
    images = torch.randn(2, 3, *INPUT)
    out = model(images, flags)
    assert out.mask is not None
    expected = torch.tensor([[1.0 if v == 2 else 0.01 for v in row] for row in flags.tolist()])
    assert_close(out.mask, expected)
    out_kw = model(images, flags=flags.float())  # keyword `flags`; float flags are fine
    assert out_kw.mask is not None
    assert_close(out_kw.mask, expected)
    reasoned = model.reason(images, flags=flags)
    assert torch.equal(reasoned.visible, flags == 2)
    with pytest.raises(ValueError, match="required"):
        model(images)
    with pytest.raises(ValueError, match="required"):
        model.reason(images)
    heat = _heat(reasoner=_small(mask_source="ground_truth"))
    out_h = heat(images, flags)
    assert out_h.mask is not None
    assert_close(out_h.mask, expected)
    assert torch.equal(heat.reason(images, flags).visible, flags == 2)
    with pytest.raises(ValueError, match="required"):
        heat(images)
    # the plain baseline does not use flags
    plain = _simcc(reasoner=None)
    assert plain(images, flags).mask is None
    assert _heat(reasoner=None)(images, flags=flags).mask is None


@pytest.mark.parametrize("reasoner", [True, False], ids=["reasoner", "plain"])
def test_flags_are_shape_and_dtype_checked_with_and_without_reasoner(reasoner: bool) -> None:
    images = torch.randn(2, 3, *INPUT)
    factory = _small() if reasoner else None
    for model in (_simcc(reasoner=factory), _heat(reasoner=factory)):
        with pytest.raises(ValueError, match=r"flags must be \(B, K\) with B=2, K=5, got \(2, 4\)"):
            model(images, torch.full((2, 4), 2))
        with pytest.raises(ValueError, match=r"flags must be \(B, K\) with B=2, K=5, got \(3, 5\)"):
            model(images, flags=torch.full((3, 5), 2))
        with pytest.raises(TypeError, match=r"flags must hold COCO flags 0/1/2.*got dtype torch\.bool"):
            model(images, torch.ones(2, 5, dtype=torch.bool))
        with pytest.raises(TypeError, match=r"flags must hold COCO flags 0/1/2.*got dtype torch\.bool"):
            model(images, flags=torch.ones(2, 5, dtype=torch.bool))
        if reasoner:
            with pytest.raises(ValueError, match=r"flags must be \(B, K\) with B=2, K=5, got \(2, 4\)"):
                model.reason(images, torch.full((2, 4), 2))
            with pytest.raises(TypeError, match=r"flags must hold COCO flags.*torch\.bool"):
                model.reason(images, torch.zeros(2, 5, dtype=torch.bool), return_attn=True)


@pytest.mark.parametrize("mask_source", ["predicted", "ground_truth", "mixed"])
def test_flag_values_are_not_scanned_in_forward(mask_source: str) -> None:
    """Forward checks the flags' shape and dtype only: it reads no tensor value back (no device sync), so
    out-of-range values pass (they are range-checked where flags enter: datasets, codecs, metrics)."""
    images = torch.randn(2, 3, *INPUT)
    odd = torch.tensor([[7, 3, -1, 2, 0], [2, 9, 2, 2, 1]])
    for model in (
        _simcc(reasoner=_small(mask_source=mask_source)),
        _heat(reasoner=_small(mask_source=mask_source)),
    ):
        reads = ValueReads()
        with reads:
            out = model(images, odd)
            model.reason(images, odd.double(), return_attn=True)
        assert reads.seen == []
        assert out.vis_logits is not None
        if mask_source == "ground_truth":  # visible iff v == 2, whatever the other values are
            assert out.mask is not None
            assert_close(out.mask, torch.where(odd == 2, 1.0, 0.01))
    plain = _simcc(reasoner=None)
    reads = ValueReads()
    with reads:
        plain(images, odd)
    assert reads.seen == []
    reads = ValueReads()
    with reads:
        assert bool(torch.ones(1))  # the recorder sees a value read
    assert reads.seen == ["__bool__"]
    model = _simcc().eval()
    with torch.no_grad():
        assert_close(model(images, odd).x_logits, model(images).x_logits)  # predicted masks ignore flags


def test_bad_images() -> None:
    model = _simcc()
    with pytest.raises(
        ValueError, match=r"images must be \(B, C, H, W\) with C=3, H=32, W=24, got \(2, 3, 32, 32\)"
    ):
        model(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"images must be \(B, C, H, W\).*got \(2, 1, 32, 24\)"):
        model(torch.randn(2, 1, *INPUT))
    with pytest.raises(ValueError, match="images"):
        model(torch.randn(3, *INPUT))
    with pytest.raises(TypeError, match="images"):
        model(torch.zeros(2, 3, *INPUT, dtype=torch.uint8))
    heat = _heat(reasoner=None)
    with pytest.raises(ValueError, match=r"images must be \(B, C, H, W\) with C=3"):
        heat(torch.randn(2, 4, *INPUT))


def test_bad_backbone_output_at_construction() -> None:
    with pytest.raises(
        ValueError, match=r"backbone output must be \(B, C, Hf, Wf\) with B=1, C=16, got \(1, 8, 8, 6\)"
    ):
        SimCCAdapter(TinyBackbone(8), 16, 5, INPUT)
    with pytest.raises(ValueError, match=r"backbone output must be \(B, C, Hf, Wf\).*got \(1, 8, 48\)"):
        SimCCAdapter(nn.Sequential(TinyBackbone(8), nn.Flatten(2)), 8, 5, INPUT)
    with pytest.raises(TypeError, match="backbone output must be a tensor"):
        SimCCAdapter(ConstantOutput("not a tensor"), 8, 5, INPUT)
    with pytest.raises(ValueError, match="pass feature_index"):
        SimCCAdapter(TinyBackbone(8, "list"), 8, 5, INPUT)
    with pytest.raises(ValueError, match="feature_index 'c5' is not in backbone output"):
        SimCCAdapter(TinyBackbone(8, "dict"), 8, 5, INPUT, feature_index="c5")
    with pytest.raises(
        ValueError, match=r"backbone output must be \(B, C, Hf, Wf\) with B=1, C=8, got \(1, 4, "
    ):
        SimCCAdapter(TinyBackbone(8, "list"), 8, 5, INPUT, feature_index=0)  # the low map has 4 channels
    with pytest.raises(TypeError, match=r"backbone must be an nn\.Module"):
        SimCCAdapter(lambda x: x, 8, 5, INPUT)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="final_kernel_size must be odd"):
        SimCCAdapter(TinyBackbone(8), 8, 5, INPUT, final_kernel_size=2)
    with pytest.raises(ValueError, match="num_keypoints"):
        SimCCAdapter(TinyBackbone(8), 8, 0, INPUT)


def test_bad_backbone_output_at_forward() -> None:
    # heatmap_size given: no probe, the mismatch shows at forward
    model = SimCCAdapter(TinyBackbone(8), 8, 5, INPUT, heatmap_size=(4, 3), reasoner=None)
    assert model.heatmap_size == (4, 3)
    assert model.token_dim == 12
    with pytest.raises(
        ValueError,
        match=r"backbone output must be \(B, C, Hf, Wf\) with B=1, C=8, Hf=4, Wf=3, got \(1, 8, 8, 6\)",
    ):
        model(torch.randn(1, 3, *INPUT))
    model = SimCCAdapter(
        ConstantOutput(torch.zeros(2, 8, 8, 6)), 8, 5, INPUT, heatmap_size=(8, 6), reasoner=None
    )
    with pytest.raises(ValueError, match=r"with B=3, C=8, Hf=8, Wf=6, got \(2, 8, 8, 6\)"):
        model(torch.randn(3, 3, *INPUT))


def test_heatmap_adapter() -> None:
    pose_model = nn.Sequential(nn.Conv2d(3, 5, 3, stride=4, padding=1), nn.BatchNorm2d(5))
    model = HeatmapAdapter(pose_model, 5, heatmap_size=(8, 6), reasoner=_small()).eval()
    assert model.token_dim == 48
    assert model.heatmap_size == (8, 6)
    assert model.input_size == (32, 24)  # default: stride 4
    images = torch.randn(2, 3, *INPUT)
    with torch.no_grad():
        out = model(images)
        raw = pose_model(images)
        assert model.reasoner is not None
        refined = model.reasoner(_flatten_loop(raw)).tokens
    assert isinstance(out, HeatmapOutput)
    assert out.heatmaps.shape == (2, 5, 8, 6)
    expected = torch.empty(2, 5, 8, 6)
    for b in range(2):
        for k in range(5):
            for i in range(8):
                for j in range(6):
                    expected[b, k, i, j] = refined[b, k, i * 6 + j]
    assert_close(out.heatmaps, expected)
    assert out.vis_logits is not None
    assert out.vis_logits.shape == (2, 5)

    plain = HeatmapAdapter(pose_model, 5, heatmap_size=(8, 6), reasoner=None).eval()
    with torch.no_grad():
        out_plain = plain(images)
    assert out_plain.vis_logits is None
    assert out_plain.mask is None
    assert torch.equal(out_plain.heatmaps, raw)


def test_heatmap_adapter_head_options() -> None:
    model = _heat()
    head = model.head
    assert isinstance(head, HeatmapHead)
    assert head.output_type is HeatmapOutput
    assert list(head.parameters()) == []  # the head has no parameters of its own
    assert {n for n, _ in model.named_parameters()} == {
        *(f"pose_model.{n}" for n, _ in model.pose_model.named_parameters()),
        *(f"reasoner.{n}" for n, _ in model.reasoner.named_parameters()),  # type: ignore[union-attr]
    }
    assert (head.heatmap_size, head.input_size) == ((8, 6), (32, 24))
    assert (head.codec.sigma, head.codec.refinement) == (2.0, "quarter")
    custom = _heat(heatmap_size=(16, 12), input_size=(128, 96), sigma=3.0, refinement="dark", reasoner=None)
    assert custom.input_size == (128, 96)
    assert custom.heatmap_size == (16, 12)
    assert custom.token_dim == 192
    assert (custom.head.input_size, custom.head.heatmap_size) == ((128, 96), (16, 12))
    assert (custom.head.codec.input_size, custom.head.codec.heatmap_size) == ((128, 96), (16, 12))
    assert (custom.head.codec.sigma, custom.head.codec.refinement) == (3.0, "dark")
    assert _heat(heatmap_size=(16, 12)).input_size == (64, 48)
    with pytest.raises(ValueError, match="refinement"):
        _heat(refinement="argmax")
    with pytest.raises(TypeError, match="input_size"):
        _heat(input_size=64)


def test_heads_implement_the_pose_head_protocol() -> None:
    simcc, heat = _simcc(), _heat()
    assert isinstance(simcc.head, PoseHead)
    assert isinstance(heat.head, PoseHead)
    assert simcc.head.output_type is SimCCOutput
    assert heat.head.output_type is HeatmapOutput
    assert simcc.head.input_size == simcc.input_size == INPUT
    assert heat.head.input_size == heat.input_size == INPUT
    assert simcc.head.split_ratio == simcc.split_ratio == 2.0
    # SimCCOutput / HeatmapOutput are the heads' types, re-exported by the adapters
    assert adapters.SimCCOutput is heads.SimCCOutput
    assert adapters.HeatmapOutput is heads.HeatmapOutput


@pytest.mark.parametrize("refinement", ["quarter", "dark"])
@pytest.mark.parametrize("input_size", [None, (64, 48)])
def test_heatmap_head_decode_is_heatmap_decode(refinement: str, input_size: tuple[int, int] | None) -> None:
    model = _heat(refinement=refinement, input_size=input_size).eval()
    crop = input_size or INPUT
    if input_size is not None:  # a stride-8 model: 64x48 crops -> 8x6 heatmaps
        model.pose_model = nn.Sequential(nn.AvgPool2d(2), model.pose_model)
    with torch.no_grad():
        out = model(torch.randn(2, 3, *crop))
    keypoints, scores = model.head.decode(out)
    expected_kp, expected_scores = heatmap_decode(out.heatmaps, crop, refinement=refinement)
    assert keypoints.shape == (2, 5, 2)
    assert torch.equal(keypoints, expected_kp)
    assert torch.equal(scores, expected_scores)
    if input_size is not None:  # decoded in the pixels of the adapter's input_size
        assert_close(keypoints, 2 * heatmap_decode(out.heatmaps, INPUT, refinement=refinement)[0])
    other = "dark" if refinement == "quarter" else "quarter"
    assert not torch.equal(keypoints, heatmap_decode(out.heatmaps, crop, refinement=other)[0])


def test_simcc_head_decode_flip_and_loss() -> None:
    model = _simcc().eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *INPUT))
    keypoints, scores = model.head.decode(out)
    expected_kp, expected_scores = simcc_decode(out.x_logits, out.y_logits, 2.0)
    assert torch.equal(keypoints, expected_kp)
    assert torch.equal(scores, expected_scores)
    flip_index = [1, 0, 2, 4, 3]
    flipped = model.head.flip_back(out, flip_index)
    assert isinstance(flipped, SimCCOutput)
    assert out.vis_logits is not None
    assert flipped.vis_logits is not None
    assert torch.equal(flipped.vis_logits, out.vis_logits[:, flip_index])
    target_kp = torch.tensor([[[3.0, 4.0], [10.5, 20.0], [0.0, 0.0], [23.0, 31.0], [12.0, 16.0]]] * 2)
    flags = torch.tensor([[2, 1, 0, 2, 2], [2, 2, 2, 0, 1]])
    targets = model.head.encode(target_kp, flags)
    assert torch.equal(targets.weights, (flags > 0).float())
    loss = model.head.loss(out, targets)
    expected = simcc_kl_loss(out.x_logits, out.y_logits, targets.x_labels, targets.y_labels, targets.weights)
    assert_close(loss, expected)
    ones = torch.ones(2, 5)
    assert_close(
        model.head.loss(out, targets, ones),
        simcc_kl_loss(out.x_logits, out.y_logits, targets.x_labels, targets.y_labels, ones),
    )


def test_heatmap_head_flip_and_loss() -> None:
    model = _heat().eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *INPUT))
    flip_index = [1, 0, 2, 4, 3]
    flipped = model.head.flip_back(out, flip_index)
    assert isinstance(flipped, HeatmapOutput)
    assert flipped.heatmaps.shape == out.heatmaps.shape
    assert out.mask is not None
    assert flipped.mask is not None
    assert torch.equal(flipped.mask, out.mask[:, flip_index])
    # the heatmaps are mirrored and permuted (SimpleBaseline's one-column shift leaves column 0 alone)
    assert torch.equal(flipped.heatmaps[..., 1:], out.heatmaps[:, flip_index].flip(-1)[..., :-1])
    target_kp = torch.tensor([[[3.0, 4.0], [10.5, 20.0], [0.0, 0.0], [23.0, 31.0], [12.0, 16.0]]] * 2)
    flags = torch.tensor([[2, 1, 0, 2, 2], [2, 2, 2, 0, 1]])
    targets = model.head.encode(target_kp, flags)
    assert targets.heatmaps.shape == (2, 5, 8, 6)
    assert_close(
        model.head.loss(out, targets), heatmap_mse_loss(out.heatmaps, targets.heatmaps, targets.weights)
    )


def test_heatmap_adapter_bad_output() -> None:
    model = _heat(heatmap_size=(16, 12), input_size=INPUT, reasoner=None)
    with pytest.raises(
        ValueError,
        match=r"pose_model output must be \(B, K, Hf, Wf\) with B=1, K=5, Hf=16, Wf=12, got \(1, 5, 8, 6\)",
    ):
        model(torch.randn(1, 3, *INPUT))
    with pytest.raises(
        ValueError, match=r"images must be \(B, C, H, W\) with C=3, H=32, W=24, got \(1, 3, 64, 48\)"
    ):
        _heat(reasoner=None)(torch.randn(1, 3, 64, 48))  # the crop size is checked: keypoints decode in it
    model = HeatmapAdapter(nn.Conv2d(3, 4, 3, stride=4, padding=1), 5, heatmap_size=(8, 6), reasoner=None)
    with pytest.raises(ValueError, match=r"got \(1, 4, 8, 6\)"):
        model(torch.randn(1, 3, *INPUT))
    model = HeatmapAdapter(ConstantOutput([torch.zeros(2, 5, 8, 6)]), 5, heatmap_size=(8, 6), reasoner=None)
    with pytest.raises(ValueError, match=r"with B=1, K=5, Hf=8, Wf=6, got \(2, 5, 8, 6\)"):
        model(torch.randn(1, 3, *INPUT))
    with pytest.raises(TypeError, match="pose_model output must be a tensor"):
        HeatmapAdapter(ConstantOutput(None), 5, heatmap_size=(8, 6))(torch.randn(1, 3, *INPUT))
    with pytest.raises(TypeError, match="heatmap_size"):
        HeatmapAdapter(nn.Identity(), 5, heatmap_size=8)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"pose_model must be an nn\.Module"):
        HeatmapAdapter(lambda x: x, 5)  # type: ignore[arg-type]


@pytest.mark.parametrize("reasoner", [True, False], ids=["reasoner", "plain"])
def test_every_parameter_gets_a_gradient(reasoner: bool) -> None:
    model = _simcc(reasoner=_small() if reasoner else None).train()
    out = model(torch.randn(2, 3, *INPUT))
    loss = out.x_logits.pow(2).mean() + out.y_logits.pow(2).mean()
    if out.vis_logits is not None:
        loss = loss + out.vis_logits.pow(2).mean()
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name

    heat = _heat()
    out_h = heat(torch.randn(2, 3, *INPUT))
    assert out_h.vis_logits is not None
    (out_h.heatmaps.pow(2).mean() + out_h.vis_logits.pow(2).mean()).backward()
    for name, param in heat.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name


def test_empty_batch() -> None:
    """B = 0 works in eval mode (BatchNorm in training mode cannot normalise an empty batch)."""
    model = _simcc().eval()
    out = model(torch.randn(0, 3, *INPUT))
    assert out.x_logits.shape == (0, 5, 48)
    assert out.y_logits.shape == (0, 5, 64)
    assert out.vis_logits is not None
    assert out.vis_logits.shape == (0, 5)
    assert _heat()(torch.randn(0, 3, *INPUT)).heatmaps.shape == (0, 5, 8, 6)
    assert model(torch.randn(0, 3, *INPUT), torch.zeros(0, 5)).x_logits.shape == (0, 5, 48)


def test_float64_follows_backbone() -> None:
    model = SimCCAdapter(TinyBackbone(8).double(), 8, 5, INPUT, reasoner=_small())
    assert model.final_layer.weight.dtype == torch.float64
    assert model.head.x_head.weight.dtype == torch.float64
    assert model.reasoner is not None
    assert model.reasoner.proj.weight.dtype == torch.float64
    out = model(torch.randn(2, 3, *INPUT, dtype=torch.float64))
    assert out.x_logits.dtype == torch.float64


def test_torchvision_resnet18_trunk() -> None:
    torchvision = pytest.importorskip("torchvision")
    resnet = torchvision.models.resnet18(weights=None)
    trunk = nn.Sequential(*list(resnet.children())[:-2])  # stride 32, 512 channels
    model = SimCCAdapter(
        trunk, 512, 17, (64, 64), reasoner=partial(VisibilityMaskedReasoner, embed_dim=32, depth=1)
    )
    model.eval()
    assert model.heatmap_size == (2, 2)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.x_logits.shape == (2, 17, 128)
    assert out.y_logits.shape == (2, 17, 128)


def _export_and_compare(model: nn.Module, batch_sizes: tuple[int, int]) -> None:
    model.eval()
    example = torch.randn(2, 3, *INPUT)
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    for size in batch_sizes:
        images = torch.randn(size, 3, *INPUT)
        with torch.no_grad():
            expected = model(images)
            got = program.module()(images)
        assert len(got) == len(expected)
        for a, e in zip(got, expected):
            if e is None:
                assert a is None
            else:
                assert_close(a, e)


@pytest.mark.parametrize("reasoner", [True, False], ids=["reasoner", "plain"])
def test_torch_export_simcc(reasoner: bool) -> None:
    _export_and_compare(_simcc(reasoner=_small() if reasoner else None), (1, 3))


def test_torch_export_heatmap() -> None:
    pose_model = nn.Sequential(nn.Conv2d(3, 5, 3, stride=4, padding=1), nn.BatchNorm2d(5))
    _export_and_compare(HeatmapAdapter(pose_model, 5, heatmap_size=(8, 6), reasoner=_small()), (1, 3))


@pytest.mark.slow
def test_torch_compile_fullgraph_matches_eager() -> None:
    model = _simcc().eval()
    compiled = torch.compile(model, fullgraph=True, backend="inductor")
    images = torch.randn(2, 3, *INPUT)
    with torch.no_grad():
        expected = model(images)
        got = compiled(images)
    for a, e in zip(got, expected):
        assert a is not None
        assert e is not None
        torch.testing.assert_close(a, e, atol=1e-4, rtol=1e-4)


def test_visnet_evidence_defaults_and_the_paper_switch() -> None:
    default = _simcc()
    assert default.reasoner is not None
    assert default.reasoner.visnet_evidence == "features"
    assert default.reasoner.feature_channels == default.in_channels
    assert default.reasoner.visnet.evidence_dim == default.token_dim + default.in_channels + 2
    paper = _simcc(reasoner=_small(visnet_evidence="token"))
    assert paper.reasoner is not None
    assert paper.reasoner.feature_channels == 0
    assert paper.reasoner.visnet.evidence_dim == paper.token_dim  # the keypoint token alone
    images = torch.randn(2, 3, *INPUT)
    out = paper(images)
    assert out.vis_logits is not None
    assert out.vis_logits.shape == (2, paper.num_keypoints)
    paper.eval()
    with torch.no_grad():  # VisNet sees the token alone: its logits are VisNet(tokens)
        tokens = paper.forward_features(images)
        assert_close(paper(images).vis_logits, paper.reasoner.visnet(tokens))  # type: ignore[arg-type]
    heat = _heat(reasoner=_small(visnet_evidence="token"))
    assert heat.reasoner is not None
    assert heat.reasoner.feature_channels == 0


def test_feature_channels_must_fit_the_adapter() -> None:
    def forcing(channels: int) -> Any:
        def factory(*args: Any, **kwargs: Any) -> VisibilityMaskedReasoner:
            return VisibilityMaskedReasoner(*args, **SMALL, **{**kwargs, "feature_channels": channels})

        return factory

    with pytest.raises(ValueError, match=r"feature_channels must be 0 or the backbone's C=8, got 3"):
        _simcc(reasoner=forcing(3))
    assert _simcc(reasoner=forcing(8)).reasoner.feature_channels == 8  # type: ignore[union-attr]
    assert _simcc(reasoner=forcing(0)).reasoner.feature_channels == 0  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=r"feature_channels must be 0.*got 4"):
        _heat(reasoner=forcing(4))
    rich = VisibilityMaskedReasoner(48, 5, **SMALL, feature_channels=4)
    with pytest.raises(ValueError, match=r"feature_channels must be 0.*got 4"):
        _heat(reasoner=_built(rich))
    # a token-only VisNet has feature_channels 0 whatever it was built with: it fits
    token_only = VisibilityMaskedReasoner(48, 5, **SMALL, feature_channels=4, visnet_evidence="token")
    assert _heat(reasoner=_built(token_only)).reasoner is token_only
    assert _simcc(reasoner=_built(token_only)).reasoner is token_only


def test_reason_returns_the_reasoner_output_of_forward() -> None:
    model = _simcc().eval()
    images, flags = torch.randn(2, 3, *INPUT), torch.randint(0, 3, (2, 5))
    with torch.no_grad():
        out = model(images, flags)
        reasoned = model.reason(images, flags, return_attn=True)
    assert_close(reasoned.vis_logits, out.vis_logits)
    assert reasoned.attn is not None
    assert len(reasoned.attn) == 1
    assert_close(model.head(reasoned.tokens)[0], out.x_logits)
    assert model.reason(images, flags).attn is None
    heatmap = HeatmapAdapter(
        nn.Conv2d(3, 17, 3, stride=4, padding=1),
        17,
        heatmap_size=(8, 6),
        reasoner=partial(VisibilityMaskedReasoner, embed_dim=16, depth=1),
    ).eval()
    hm_images = torch.randn(2, 3, 32, 24)
    with torch.no_grad():
        hm_out = heatmap(hm_images)
        hm_reasoned = heatmap.reason(hm_images, return_attn=True)
    assert hm_reasoned.tokens.shape == (2, 17, 48)
    assert hm_out.heatmaps.shape == (2, 17, 8, 6)
    assert_close(hm_reasoned.tokens.unflatten(2, (8, 6)), hm_out.heatmaps)
    assert hm_reasoned.attn is not None
    with pytest.raises(ValueError, match="reasoner=None"):
        _simcc(reasoner=None).reason(images)
    with pytest.raises(ValueError, match="reasoner=None"):
        _heat(reasoner=None).reason(images)


def test_images_of_another_dtype_or_device_get_visattn_errors() -> None:
    model = _simcc()
    with pytest.raises(TypeError, match=r"images has dtype torch.float64 but the model's parameters"):
        model(torch.randn(2, 3, *INPUT, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"images is on meta but the model's parameters are on cpu"):
        model(torch.randn(2, 3, *INPUT, device="meta"))
    heatmap = HeatmapAdapter(
        nn.Conv2d(3, 17, 3, stride=4, padding=1), 17, heatmap_size=(8, 6), reasoner=_small()
    )
    with pytest.raises(TypeError, match=r"images has dtype torch.float64 but the pose model's parameters"):
        heatmap(torch.randn(2, 3, 32, 24, dtype=torch.float64))
