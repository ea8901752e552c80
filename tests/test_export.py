from __future__ import annotations

import math
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests.helpers import assert_close
from visattn.adapters import HeatmapAdapter, SimCCAdapter
from visattn.codecs import heatmap_decode, simcc_decode
from visattn.export import DeploymentModel, export_onnx, export_program
from visattn.reasoner import VisibilityMaskedReasoner

INPUT = (32, 24)  # (H, W); stride-4 models -> (Hf, Wf) = (8, 6)
SMALL = {"embed_dim": 16, "depth": 1, "num_heads": 2}
K = 5


def _backbone() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 8, 3, stride=2, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
    )


def _small(**kwargs: Any) -> Any:
    """A small reasoner factory."""
    return partial(VisibilityMaskedReasoner, **{**SMALL, **kwargs})


def _simcc(reasoner: bool = True) -> SimCCAdapter:
    return SimCCAdapter(_backbone(), 8, K, INPUT, reasoner=_small() if reasoner else None)


def _heatmap(reasoner: bool = True, **kwargs: Any) -> HeatmapAdapter:
    pose_model = nn.Sequential(_backbone(), nn.Conv2d(8, K, 1))
    return HeatmapAdapter(
        pose_model, K, heatmap_size=(8, 6), reasoner=_small() if reasoner else None, **kwargs
    )


def _heatmap_64x48(reasoner: bool = True) -> HeatmapAdapter:
    """A stride-8 heatmap model for 64 x 48 crops: (Hf, Wf) = (8, 6), built with that input_size."""
    pose_model = nn.Sequential(_backbone(), nn.Conv2d(8, K, 3, stride=2, padding=1))
    return HeatmapAdapter(
        pose_model, K, heatmap_size=(8, 6), input_size=(64, 48), reasoner=_small() if reasoner else None
    )


def _simcc_decode_loop(x_logits: torch.Tensor, y_logits: torch.Tensor, ratio: float) -> tuple[list, list]:
    """Oracle: per keypoint argmax / ratio and min of the two max softmax probabilities."""
    keypoints, scores = [], []
    for b in range(x_logits.shape[0]):
        kp_row, score_row = [], []
        for k in range(x_logits.shape[1]):
            xs, ys = x_logits[b, k].tolist(), y_logits[b, k].tolist()
            ix, iy = xs.index(max(xs)), ys.index(max(ys))
            px = math.exp(xs[ix]) / sum(math.exp(v) for v in xs)
            py = math.exp(ys[iy]) / sum(math.exp(v) for v in ys)
            kp_row.append([ix / ratio, iy / ratio])
            score_row.append(min(px, py))
        keypoints.append(kp_row)
        scores.append(score_row)
    return keypoints, scores


def _heatmap_decode_loop(heatmaps: torch.Tensor, input_size: tuple[int, int]) -> tuple[list, list]:
    """Oracle: argmax cell, quarter shift toward the higher neighbour, scale to crop pixels."""
    height, width = input_size
    keypoints, scores = [], []
    for b in range(heatmaps.shape[0]):
        kp_row, score_row = [], []
        for k in range(heatmaps.shape[1]):
            h = heatmaps[b, k].tolist()
            rows, cols = len(h), len(h[0])
            best, bi, bj = -math.inf, 0, 0
            for i in range(rows):
                for j in range(cols):
                    if h[i][j] > best:
                        best, bi, bj = h[i][j], i, j
            x, y = float(bj), float(bi)
            if 0 < bj < cols - 1:
                x += 0.25 * ((h[bi][bj + 1] > h[bi][bj - 1]) - (h[bi][bj + 1] < h[bi][bj - 1]))
            if 0 < bi < rows - 1:
                y += 0.25 * ((h[bi + 1][bj] > h[bi - 1][bj]) - (h[bi + 1][bj] < h[bi - 1][bj]))
            kp_row.append([x * width / cols, y * height / rows])
            score_row.append(best)
        keypoints.append(kp_row)
        scores.append(score_row)
    return keypoints, scores


def test_output_names() -> None:
    assert DeploymentModel(_simcc()).output_names == ("x_logits", "y_logits", "vis_probs")
    assert DeploymentModel(_simcc(False), decode=True).output_names == (
        "x_logits",
        "y_logits",
        "keypoints",
        "scores",
    )
    assert DeploymentModel(_heatmap(), decode=True).output_names == (
        "heatmaps",
        "vis_probs",
        "keypoints",
        "scores",
    )
    assert DeploymentModel(_heatmap(False)).output_names == ("heatmaps",)
    assert DeploymentModel(_heatmap()).input_size == (32, 24)
    assert DeploymentModel(_heatmap(), input_size=(32, 24)).input_size == (32, 24)
    assert DeploymentModel(_simcc(), input_size=[32, 24]).input_size == (32, 24)
    assert DeploymentModel(_heatmap_64x48()).input_size == (64, 48)
    assert DeploymentModel(_heatmap_64x48(), input_size=(64, 48)).input_size == (64, 48)
    assert DeploymentModel(_heatmap_64x48(False), decode=True).output_names == (
        "heatmaps",
        "keypoints",
        "scores",
    )


def test_output_names_come_from_the_head_output_type() -> None:
    for model in (_simcc(), _simcc(False), _heatmap(), _heatmap(False)):
        raw = tuple(name for name in model.head.output_type._fields if name not in ("vis_logits", "mask"))
        extra = ("vis_probs",) if model.reasoner is not None else ()
        assert DeploymentModel(model).output_names == raw + extra
        assert DeploymentModel(model, decode=True).output_names == raw + extra + ("keypoints", "scores")


def test_simcc_deployment_outputs_match_oracles() -> None:
    model = _simcc().eval()
    deploy = DeploymentModel(model, decode=True)
    images = torch.randn(2, 3, *INPUT)
    with torch.no_grad():
        x_logits, y_logits, vis_probs, keypoints, scores = deploy(images)
        out = model(images)
    assert out.vis_logits is not None
    assert_close(x_logits, out.x_logits)
    assert_close(y_logits, out.y_logits)
    assert_close(
        vis_probs, torch.tensor([[1 / (1 + math.exp(-v)) for v in row] for row in out.vis_logits.tolist()])
    )
    expected_kp, expected_scores = _simcc_decode_loop(out.x_logits, out.y_logits, 2.0)
    assert_close(keypoints, torch.tensor(expected_kp))
    assert_close(scores, torch.tensor(expected_scores))
    assert bool((scores > 0).all() and (scores <= 1).all())
    codec_kp, codec_scores = simcc_decode(out.x_logits, out.y_logits, 2.0)
    assert torch.equal(keypoints, codec_kp)
    assert torch.equal(scores, codec_scores)
    head_kp, head_scores = model.head.decode(out)
    assert torch.equal(keypoints, head_kp)
    assert torch.equal(scores, head_scores)


def test_heatmap_deployment_outputs_match_oracles() -> None:
    model = _heatmap().eval()
    deploy = DeploymentModel(model, decode=True)
    images = torch.randn(2, 3, *INPUT)
    with torch.no_grad():
        heatmaps, vis_probs, keypoints, scores = deploy(images)
        out = model(images)
    assert out.vis_logits is not None
    assert_close(heatmaps, out.heatmaps)
    assert_close(vis_probs, torch.sigmoid(out.vis_logits))
    expected_kp, expected_scores = _heatmap_decode_loop(out.heatmaps, INPUT)
    assert_close(keypoints, torch.tensor(expected_kp))
    assert_close(scores, torch.tensor(expected_scores))
    codec_kp, codec_scores = heatmap_decode(out.heatmaps, INPUT)
    assert torch.equal(keypoints, codec_kp)
    assert torch.equal(scores, codec_scores)
    head_kp, head_scores = model.head.decode(out)
    assert torch.equal(keypoints, head_kp)
    assert torch.equal(scores, head_scores)


def test_heatmap_deployment_decodes_in_the_crop_of_the_adapter_input_size() -> None:
    """HeatmapAdapter(input_size=(64, 48)): 8 x 6 heatmaps decode to 64 x 48 crop pixels."""
    model = _heatmap_64x48().eval()
    deploy = DeploymentModel(model, decode=True)
    assert deploy.input_size == (64, 48)
    images = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        heatmaps, vis_probs, keypoints, scores = deploy(images)
        out = model(images)
    assert out.heatmaps.shape == (2, K, 8, 6)
    assert out.vis_logits is not None
    assert_close(heatmaps, out.heatmaps)
    assert_close(vis_probs, torch.sigmoid(out.vis_logits))
    expected_kp, expected_scores = _heatmap_decode_loop(out.heatmaps, (64, 48))
    assert_close(keypoints, torch.tensor(expected_kp))
    assert_close(scores, torch.tensor(expected_scores))
    codec_kp, codec_scores = heatmap_decode(out.heatmaps, (64, 48))
    assert torch.equal(keypoints, codec_kp)
    assert torch.equal(scores, codec_scores)
    assert_close(keypoints, 2 * heatmap_decode(out.heatmaps, INPUT)[0])  # not the stride-4 default crop
    assert float(keypoints[..., 0].max()) > 24 or float(keypoints[..., 1].max()) > 32
    with pytest.raises(ValueError, match=r"images must be \(B, C, H, W\) with C=3, H=64, W=48"):
        deploy(torch.randn(1, 3, *INPUT))
    program = export_program(model, decode=True)
    batch = torch.randn(3, 3, 64, 48)
    with torch.no_grad():
        _assert_outputs_close(program.module()(batch), deploy(batch), 1e-5)


def test_heatmap_deployment_decodes_with_the_head_refinement() -> None:
    model = _heatmap(refinement="dark").eval()
    deploy = DeploymentModel(model, decode=True)
    images = torch.randn(2, 3, *INPUT)
    with torch.no_grad():
        *_, keypoints, scores = deploy(images)
        out = model(images)
    dark_kp, dark_scores = heatmap_decode(out.heatmaps, INPUT, refinement="dark")
    assert torch.equal(keypoints, dark_kp)
    assert torch.equal(scores, dark_scores)
    assert not torch.equal(keypoints, heatmap_decode(out.heatmaps, INPUT)[0])  # not the quarter offset


@pytest.mark.parametrize("kind", ["simcc", "heatmap"])
def test_deployment_decodes_through_the_head(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = (_simcc() if kind == "simcc" else _heatmap()).eval()
    seen: list[Any] = []
    keypoints, scores = torch.full((2, K, 2), 7.0), torch.full((2, K), 0.25)

    def decode(output: Any) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(output)
        return keypoints, scores

    monkeypatch.setattr(model.head, "decode", decode)
    with torch.no_grad():
        got = DeploymentModel(model, decode=True)(torch.randn(2, 3, *INPUT))
    assert len(seen) == 1
    assert isinstance(seen[0], model.head.output_type)
    assert got[-2] is keypoints
    assert got[-1] is scores


def test_deployment_errors() -> None:
    with pytest.raises(TypeError, match="SimCCAdapter or a HeatmapAdapter"):
        DeploymentModel(nn.Identity())  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"input_size must equal the model's input_size \(32, 24\).*got \(64, 48\)"
    ):
        DeploymentModel(_simcc(), input_size=(64, 48))
    with pytest.raises(ValueError, match=r"input_size must equal the model's input_size \(32, 24\)"):
        DeploymentModel(_heatmap(), input_size=(64, 48))  # a heatmap crop is set on the HeatmapAdapter
    with pytest.raises(ValueError, match=r"input_size must equal the model's input_size \(64, 48\)"):
        DeploymentModel(_heatmap_64x48(), input_size=(32, 24))
    with pytest.raises(ValueError, match=r"input_size must equal the model's input_size"):
        export_program(_heatmap(), input_size=(64, 48))
    with pytest.raises(ValueError, match=r"input_size must equal the model's input_size"):
        export_onnx(_simcc(), "unused.onnx", input_size=(16, 12))
    with pytest.raises(TypeError, match="input_size"):
        DeploymentModel(_simcc(), input_size=32)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="decode"):
        DeploymentModel(_simcc(), decode=1)  # type: ignore[arg-type]
    gt = SimCCAdapter(_backbone(), 8, K, INPUT, reasoner=_small(mask_source="ground_truth"))
    with pytest.raises(ValueError, match="ground_truth"):
        DeploymentModel(gt)
    with pytest.raises(ValueError, match="ground_truth"):
        DeploymentModel(
            HeatmapAdapter(_backbone(), K, heatmap_size=(8, 6), reasoner=_small(mask_source="ground_truth"))
        )
    with pytest.raises(ValueError, match=r"images must be \(B, C, H, W\) with C=3, H=32, W=24"):
        DeploymentModel(_heatmap())(torch.randn(1, 3, 64, 48))
    with pytest.raises(ValueError, match="example_batch must be >= 2"):
        export_program(_simcc(), example_batch=1)
    with pytest.raises(ValueError, match="opset"):
        export_onnx(_simcc(), "unused.onnx", opset=13)


def test_missing_onnx_dependency(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # makes `import onnxscript` raise ImportError
    with pytest.raises(ImportError, match=r"visattn\[export\]"):
        export_onnx(_simcc(), tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def _assert_outputs_close(got: Any, expected: Any, atol: float) -> None:
    assert len(got) == len(expected)
    for a, e in zip(got, expected):
        a = torch.as_tensor(a)
        assert a.shape == e.shape
        torch.testing.assert_close(a, e, atol=atol, rtol=atol)


@pytest.mark.parametrize("kind", ["simcc", "heatmap"])
def test_export_program_matches_eager(kind: str) -> None:
    model = _simcc() if kind == "simcc" else _heatmap()
    assert model.training
    program = export_program(model, decode=True)
    assert model.training  # flags restored
    deploy = DeploymentModel(model, decode=True).eval()
    for batch in (1, 3):
        images = torch.randn(batch, 3, *INPUT)
        with torch.no_grad():
            _assert_outputs_close(program.module()(images), deploy(images), 1e-5)


def test_export_program_static_batch() -> None:
    program = export_program(_simcc(False), dynamic_batch=False, example_batch=1)
    assert [tuple(t.shape) for t in program.module()(torch.randn(1, 3, *INPUT))] == [(1, K, 48), (1, K, 64)]


@pytest.mark.parametrize(
    ("kind", "decode"),
    [("simcc", False), ("simcc", True), ("heatmap", False), ("heatmap", True), ("heatmap_64x48", True)],
)
def test_onnx_matches_pytorch(kind: str, decode: bool, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = {"simcc": _simcc, "heatmap": _heatmap, "heatmap_64x48": _heatmap_64x48}[kind]()
    path = export_onnx(model, tmp_path / "sub" / "model.onnx", decode=decode)
    assert path == tmp_path / "sub" / "model.onnx"
    assert path.is_file()
    assert model.training  # flags restored
    deploy = DeploymentModel(model, decode=decode).eval()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(deploy.output_names)
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert isinstance(session.get_inputs()[0].shape[0], str)  # symbolic batch axis
    assert session.get_inputs()[0].shape[1:] == [3, *model.input_size]
    for batch in (1, 3):
        images = torch.randn(batch, 3, *model.input_size)
        got = session.run(None, {"images": images.numpy()})
        with torch.no_grad():
            expected = deploy(images)
        _assert_outputs_close(got, expected, 1e-4)


def test_onnx_without_reasoner_has_no_vis_probs(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path = export_onnx(
        _heatmap(False), tmp_path / "plain.onnx", decode=True, dynamic_batch=False, example_batch=1
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["heatmaps", "keypoints", "scores"]
    assert session.get_inputs()[0].shape == [1, 3, 32, 24]


@pytest.mark.parametrize("fmt", ["program", "onnx"])
def test_exported_graph_keeps_the_calibrated_threshold_and_rich_visnet(fmt: str, tmp_path: Path) -> None:
    """The vis_threshold buffer and VisNet's backbone evidence / keypoint context travel with the export."""
    torch.manual_seed(0)
    reasoner = _small(visnet_context=1, mask_mode="hard")  # hard masks: the threshold decides
    model = SimCCAdapter(_backbone(), 8, K, INPUT, reasoner=reasoner)
    assert model.reasoner is not None
    assert model.reasoner.feature_channels == 8
    images = torch.randn(3, 3, *INPUT)
    model.eval()
    with torch.no_grad():
        probs = torch.sigmoid(model(images).vis_logits).flatten().sort().values
    middle = len(probs) // 2  # between two probabilities near the median: some keypoints flip, none ties
    model.reasoner.set_threshold(float(probs[middle - 1] + probs[middle]) / 2)
    deploy = DeploymentModel(model, decode=False).eval()
    with torch.no_grad():
        expected = deploy(images)
        at_half = DeploymentModel(_copy_with_threshold(model, 0.5), decode=False).eval()(images)
    assert not torch.allclose(expected[0], at_half[0])  # the threshold matters for these images
    if fmt == "program":
        got = export_program(model).module()(images)
    else:
        ort = pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
        path = export_onnx(model, tmp_path / "model.onnx")
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {"images": images.numpy()})
    _assert_outputs_close(got, expected, 1e-4)


def _copy_with_threshold(model: SimCCAdapter, threshold: float) -> SimCCAdapter:
    import copy

    other = copy.deepcopy(model)
    assert other.reasoner is not None
    other.reasoner.set_threshold(threshold)
    return other
