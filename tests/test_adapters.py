from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from tests.helpers import assert_close
from visattn.adapters import HeatmapAdapter, HeatmapOutput, SimCCAdapter, SimCCOutput, select_feature_map
from visattn.heads import SimCCHead
from visattn.reasoner import VisibilityMaskedReasoner

INPUT = (32, 24)  # (H, W): stride-4 backbone -> (Hf, Wf) = (8, 6), D = 48
SMALL = {"embed_dim": 16, "depth": 1, "num_heads": 2}


class TinyBackbone(nn.Module):
    """Two stride-2 conv + BN + ReLU stages: (B, 3, H, W) -> (B, C, H / 4, W / 4)."""

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
        if self.output == "list":
            return [low, high]
        if self.output == "tuple":
            return (low, high)
        if self.output == "dict":
            return {"low": low, "high": high}
        return high


class ConstantOutput(nn.Module):
    """A 'backbone' that returns a fixed object whatever the input (for bad-output tests)."""

    def __init__(self, output: Any) -> None:
        super().__init__()
        self.output = output

    def forward(self, images: torch.Tensor) -> Any:
        return self.output


def _simcc(**kwargs: Any) -> SimCCAdapter:
    kwargs.setdefault("reasoner_kwargs", dict(SMALL) if kwargs.get("reasoner", True) is True else None)
    return SimCCAdapter(TinyBackbone(8), 8, 5, INPUT, **kwargs)


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
        ({"reasoner": False}, (48, 64)),
        ({"split_ratio": 1.0, "final_kernel_size": 3}, (24, 32)),
        ({"split_ratio": 1.5, "final_kernel_size": 7, "reasoner": False}, (36, 48)),
        ({"feature_size": (8, 6)}, (48, 64)),
    ],
)
def test_simcc_shapes(kwargs: dict[str, Any], bins: tuple[int, int]) -> None:
    model = _simcc(**kwargs)
    assert model.feature_size == (8, 6)
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


@pytest.mark.parametrize("output", ["tensor", "list", "tuple", "dict"])
def test_backbone_output_containers_use_last_map(output: str) -> None:
    torch.manual_seed(0)
    model = SimCCAdapter(TinyBackbone(8, output), 8, 5, INPUT, reasoner=False)
    assert model.feature_size == (8, 6)
    images = torch.randn(2, 3, *INPUT)
    with torch.no_grad():
        high = model.backbone.stage(model.backbone.stem(images))
        maps = model.final_layer(high)
        tokens = model.forward_features(images)
    assert tokens.shape == (2, 5, 48)
    assert_close(tokens, _flatten_loop(maps))


def test_select_feature_map_errors() -> None:
    with pytest.raises(TypeError, match="empty"):
        select_feature_map([])
    with pytest.raises(TypeError, match="empty"):
        select_feature_map({})
    with pytest.raises(TypeError, match="backbone output must be a tensor"):
        select_feature_map("features")
    with pytest.raises(TypeError, match="of int"):
        select_feature_map([torch.zeros(1), 3])


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
    assert _simcc(reasoner=False).head.x_head.bias is not None
    assert _simcc(head_bias=True).head.y_head.bias is not None
    assert _simcc(reasoner=False, head_bias=False).head.y_head.bias is None


def test_probe_keeps_training_flags_and_bn_stats() -> None:
    backbone = TinyBackbone(8)
    backbone.stem[1].eval()  # a frozen BN inside a training backbone must stay frozen
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    SimCCAdapter(backbone, 8, 5, INPUT, reasoner=False)
    assert backbone.training
    assert backbone.stage.training
    assert not backbone.stem[1].training
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_reasoner_module_and_kwargs() -> None:
    reasoner = VisibilityMaskedReasoner(48, 5, **SMALL)
    model = SimCCAdapter(TinyBackbone(8), 8, 5, INPUT, reasoner=reasoner)
    assert model.reasoner is reasoner
    model = _simcc(reasoner_kwargs={**SMALL, "occluded_scale": 0.1})
    assert isinstance(model.reasoner, VisibilityMaskedReasoner)
    assert model.reasoner.occluded_scale == 0.1
    assert model.reasoner.embed_dim == 16


def test_reasoner_errors() -> None:
    with pytest.raises(ValueError, match=r"\(in_dim, num_keypoints\) = \(48, 5\).*got \(40, 5\)"):
        SimCCAdapter(TinyBackbone(8), 8, 5, INPUT, reasoner=VisibilityMaskedReasoner(40, 5, **SMALL))
    with pytest.raises(ValueError, match=r"got \(48, 4\)"):
        SimCCAdapter(TinyBackbone(8), 8, 5, INPUT, reasoner=VisibilityMaskedReasoner(48, 4, **SMALL))
    with pytest.raises(ValueError, match="reasoner_kwargs"):
        SimCCAdapter(TinyBackbone(8), 8, 5, INPUT, reasoner=False, reasoner_kwargs=SMALL)
    with pytest.raises(TypeError, match="reasoner must be"):
        SimCCAdapter(TinyBackbone(8), 8, 5, INPUT, reasoner=nn.Identity())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(in_dim, num_keypoints\)"):
        HeatmapAdapter(nn.Conv2d(3, 5, 1), 5, heatmap_size=(4, 4), reasoner=VisibilityMaskedReasoner(48, 5))


def test_visible_passthrough_ground_truth() -> None:
    model = _simcc(reasoner_kwargs={**SMALL, "mask_source": "ground_truth"})
    flags = torch.tensor([[0, 1, 2, 2, 1], [2, 2, 2, 0, 0]])
    out = model(torch.randn(2, 3, *INPUT), flags)
    assert out.mask is not None
    expected = torch.tensor([[1.0 if v == 2 else 0.01 for v in row] for row in flags.tolist()])
    assert_close(out.mask, expected)
    with pytest.raises(ValueError, match="visible"):
        model(torch.randn(2, 3, *INPUT))
    heat = HeatmapAdapter(
        nn.Conv2d(3, 5, 3, stride=4, padding=1),
        5,
        heatmap_size=(8, 6),
        reasoner_kwargs={**SMALL, "mask_source": "ground_truth"},
    )
    out_h = heat(torch.randn(2, 3, *INPUT), flags == 2)
    assert out_h.mask is not None
    assert_close(out_h.mask, expected)
    # the plain baseline does not use visible
    plain = _simcc(reasoner=False)
    assert plain(torch.randn(2, 3, *INPUT), flags).mask is None


@pytest.mark.parametrize("reasoner", [True, False])
def test_visible_is_validated_with_and_without_reasoner(reasoner: bool) -> None:
    images = torch.randn(2, 3, *INPUT)
    heat = HeatmapAdapter(
        nn.Conv2d(3, 5, 3, stride=4, padding=1),
        5,
        heatmap_size=(8, 6),
        reasoner=reasoner,
        reasoner_kwargs=SMALL if reasoner else None,
    )
    for model in (_simcc(reasoner=reasoner), heat):
        with pytest.raises(ValueError, match=r"visible must be \(B, K\) with B=2, K=5, got \(2, 4\)"):
            model(images, torch.full((2, 4), 2))
        with pytest.raises(ValueError, match=r"visible must hold COCO flags in \{0, 1, 2\}"):
            model(images, torch.full((2, 5), 3))


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
    heat = HeatmapAdapter(nn.Conv2d(3, 5, 3, stride=4, padding=1), 5, heatmap_size=(8, 6), reasoner=False)
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
    with pytest.raises(TypeError, match=r"backbone must be an nn\.Module"):
        SimCCAdapter(lambda x: x, 8, 5, INPUT)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="final_kernel_size must be odd"):
        SimCCAdapter(TinyBackbone(8), 8, 5, INPUT, final_kernel_size=2)
    with pytest.raises(ValueError, match="num_keypoints"):
        SimCCAdapter(TinyBackbone(8), 8, 0, INPUT)


def test_bad_backbone_output_at_forward() -> None:
    # feature_size given: no probe, the mismatch shows at forward
    model = SimCCAdapter(TinyBackbone(8), 8, 5, INPUT, feature_size=(4, 3), reasoner=False)
    assert model.token_dim == 12
    with pytest.raises(ValueError, match=r"backbone output must be \(B, C, Hf, Wf\) with C=8, Hf=4, Wf=3"):
        model(torch.randn(1, 3, *INPUT))
    model = SimCCAdapter(
        ConstantOutput(torch.zeros(2, 8, 8, 6)), 8, 5, INPUT, feature_size=(8, 6), reasoner=False
    )
    with pytest.raises(ValueError, match="batch size 3"):
        model(torch.randn(3, 3, *INPUT))


def test_heatmap_adapter() -> None:
    pose_model = nn.Sequential(nn.Conv2d(3, 5, 3, stride=4, padding=1), nn.BatchNorm2d(5))
    model = HeatmapAdapter(pose_model, 5, heatmap_size=(8, 6), reasoner_kwargs=SMALL).eval()
    assert model.token_dim == 48
    assert model.heatmap_size == (8, 6)
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

    plain = HeatmapAdapter(pose_model, 5, heatmap_size=(8, 6), reasoner=False).eval()
    with torch.no_grad():
        out_plain = plain(images)
    assert out_plain.vis_logits is None
    assert out_plain.mask is None
    assert torch.equal(out_plain.heatmaps, raw)


def test_heatmap_adapter_bad_output() -> None:
    model = HeatmapAdapter(nn.Conv2d(3, 5, 3, stride=4, padding=1), 5, heatmap_size=(16, 12), reasoner=False)
    with pytest.raises(
        ValueError, match=r"pose_model output must be \(B, K, Hf, Wf\) with K=5, Hf=16, Wf=12"
    ):
        model(torch.randn(1, 3, *INPUT))
    model = HeatmapAdapter(nn.Conv2d(3, 4, 3, stride=4, padding=1), 5, heatmap_size=(8, 6), reasoner=False)
    with pytest.raises(ValueError, match=r"got \(1, 4, 8, 6\)"):
        model(torch.randn(1, 3, *INPUT))
    model = HeatmapAdapter(ConstantOutput([torch.zeros(2, 5, 8, 6)]), 5, heatmap_size=(8, 6), reasoner=False)
    with pytest.raises(ValueError, match="batch size 1"):
        model(torch.randn(1, 3, *INPUT))
    with pytest.raises(TypeError, match="pose_model output must be a tensor"):
        HeatmapAdapter(ConstantOutput(None), 5, heatmap_size=(8, 6))(torch.randn(1, 3, *INPUT))
    with pytest.raises(TypeError, match="heatmap_size"):
        HeatmapAdapter(nn.Identity(), 5, heatmap_size=8)  # type: ignore[arg-type]


@pytest.mark.parametrize("reasoner", [True, False])
def test_every_parameter_gets_a_gradient(reasoner: bool) -> None:
    model = _simcc(reasoner=reasoner).train()
    out = model(torch.randn(2, 3, *INPUT))
    loss = out.x_logits.pow(2).mean() + out.y_logits.pow(2).mean()
    if out.vis_logits is not None:
        loss = loss + out.vis_logits.pow(2).mean()
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name

    heat = HeatmapAdapter(
        nn.Conv2d(3, 5, 3, stride=4, padding=1), 5, heatmap_size=(8, 6), reasoner_kwargs=SMALL
    )
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
    heat = HeatmapAdapter(
        nn.Conv2d(3, 5, 3, stride=4, padding=1), 5, heatmap_size=(8, 6), reasoner_kwargs=SMALL
    )
    assert heat(torch.randn(0, 3, *INPUT)).heatmaps.shape == (0, 5, 8, 6)


def test_float64_follows_backbone() -> None:
    model = SimCCAdapter(TinyBackbone(8).double(), 8, 5, INPUT, reasoner_kwargs=SMALL)
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
    model = SimCCAdapter(trunk, 512, 17, (64, 64), reasoner_kwargs={"embed_dim": 32, "depth": 1}).eval()
    assert model.feature_size == (2, 2)
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


@pytest.mark.parametrize("reasoner", [True, False])
def test_torch_export_simcc(reasoner: bool) -> None:
    _export_and_compare(_simcc(reasoner=reasoner), (1, 3))


def test_torch_export_heatmap() -> None:
    pose_model = nn.Sequential(nn.Conv2d(3, 5, 3, stride=4, padding=1), nn.BatchNorm2d(5))
    _export_and_compare(HeatmapAdapter(pose_model, 5, heatmap_size=(8, 6), reasoner_kwargs=SMALL), (1, 3))


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
    assert default.reasoner.feature_channels == default.in_channels
    paper = _simcc(reasoner_kwargs={"embed_dim": 16, "depth": 1, "feature_channels": 0})
    assert paper.reasoner is not None
    assert paper.reasoner.feature_channels == 0
    assert paper.reasoner.visnet.evidence_dim == paper.token_dim  # the keypoint token alone
    out = paper(torch.randn(2, 3, *INPUT))
    assert out.vis_logits is not None
    assert out.vis_logits.shape == (2, paper.num_keypoints)


def test_feature_channels_must_fit_the_adapter() -> None:
    with pytest.raises(ValueError, match="backbone's C="):
        _simcc(reasoner_kwargs={"embed_dim": 16, "depth": 1, "feature_channels": 3})
    pose_model = nn.Conv2d(3, 17, 3, stride=4, padding=1)
    with pytest.raises(ValueError, match="heatmap model returns heatmaps only"):
        HeatmapAdapter(
            pose_model, 17, heatmap_size=(8, 6), reasoner_kwargs={"embed_dim": 16, "feature_channels": 4}
        )
    rich = VisibilityMaskedReasoner(48, 17, embed_dim=16, feature_channels=4)
    with pytest.raises(ValueError, match="heatmap model returns heatmaps only"):
        HeatmapAdapter(pose_model, 17, heatmap_size=(8, 6), reasoner=rich)


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
    heatmap = HeatmapAdapter(nn.Conv2d(3, 17, 3, stride=4, padding=1), 17, heatmap_size=(8, 6),
                             reasoner_kwargs={"embed_dim": 16, "depth": 1})  # fmt: skip
    hm_out = heatmap(torch.randn(2, 3, 32, 24))
    assert heatmap.reason(torch.randn(2, 3, 32, 24)).tokens.shape == (2, 17, 48)
    assert hm_out.heatmaps.shape == (2, 17, 8, 6)
    with pytest.raises(ValueError, match="reasoner=False"):
        _simcc(reasoner=False).reason(images)


def test_images_of_another_dtype_or_device_get_visattn_errors() -> None:
    model = _simcc()
    with pytest.raises(TypeError, match=r"images has dtype torch.float64 but the model's parameters"):
        model(torch.randn(2, 3, *INPUT, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"images is on meta but the model's parameters are on cpu"):
        model(torch.randn(2, 3, *INPUT, device="meta"))
    heatmap = HeatmapAdapter(nn.Conv2d(3, 17, 3, stride=4, padding=1), 17, heatmap_size=(8, 6),
                             reasoner_kwargs={"embed_dim": 16, "depth": 1})  # fmt: skip
    with pytest.raises(TypeError, match=r"images has dtype torch.float64 but the pose model's parameters"):
        heatmap(torch.randn(2, 3, 32, 24, dtype=torch.float64))
