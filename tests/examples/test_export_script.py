"""``train.py`` with the authors' variant flags, then ``export_onnx.py --checkpoint``: the two-command path.

A tiny synthetic run (8 images, 2 steps, the tiny net at 32x24) with ``--post-norm --shared-qkv
--vis-loss ce --masking both`` is exported from its checkpoint; onnxruntime's outputs are compared with
the PyTorch model rebuilt here from the checkpoint and with loop oracles of the SimCC decode.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from tests.examples.test_recipes import EXAMPLES, assert_one_line_errors, data_args, run
from visattn.data import make_synthetic_coco

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("examples")]

AUTHORS_FLAGS = ["--post-norm", "--shared-qkv", "--vis-loss", "ce", "--masking", "both"]
TINY = [
    "--arch", "tiny", "--input-size", "32", "24", "--sigma", "2", "--norm", "group", "--embed-dim", "32",
    "--depth", "1", "--num-heads", "2", "--epochs", "1", "--max-steps-per-epoch", "2", "--batch-size", "4",
    "--workers", "0", "--val-every", "0", "--no-progress", "--no-tensorboard", "--no-augment",
    "--warmup-iters", "2",
]  # fmt: skip
SPLIT_RATIO = 2.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Command 1: a train.py run with the authors' variant; returns its last.pt."""
    root = tmp_path_factory.mktemp("export_data")
    make_synthetic_coco(root / "train", 8, seed=0)
    make_synthetic_coco(root / "val", 4, seed=1, split_name="val")
    out = root / "run"
    run("train.py", *data_args(root), *TINY, *AUTHORS_FLAGS, "--output", out)
    return out / "last.pt"


def _oracle_decode(x_logits: torch.Tensor, y_logits: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Loop oracle: argmax bin / split ratio per axis, score = min of the two max softmax probabilities."""
    batch, num_kpts = x_logits.shape[:2]
    keypoints = np.zeros((batch, num_kpts, 2), dtype=np.float64)
    scores = np.zeros((batch, num_kpts), dtype=np.float64)
    for b in range(batch):
        for k in range(num_kpts):
            xs, ys = x_logits[b, k].tolist(), y_logits[b, k].tolist()
            keypoints[b, k] = (xs.index(max(xs)) / SPLIT_RATIO, ys.index(max(ys)) / SPLIT_RATIO)
            px = math.exp(max(xs)) / sum(math.exp(v) for v in xs)
            py = math.exp(max(ys)) / sum(math.exp(v) for v in ys)
            scores[b, k] = min(px, py)
    return keypoints, scores


def test_train_then_export_checkpoint_matches_pytorch(
    trained: Path, tmp_path: Path, scripts: ModuleType
) -> None:
    ort = pytest.importorskip("onnxruntime")
    state = torch.load(trained, map_location="cpu", weights_only=False)
    kwargs = state["model_config"]["visattn"]
    assert (kwargs["norm_first"], kwargs["shared_qkv"], kwargs["masking"]) == (False, True, "both")
    assert state["args"]["vis_loss"] == "ce"

    onnx_file = tmp_path / "pose.onnx"
    proc = run("export_onnx.py", "--checkpoint", trained, "--decode", "--output", onnx_file)  # command 2
    for name in ("x_logits", "y_logits", "vis_probs", "keypoints", "scores"):
        assert f"output {name}" in proc.stdout
        assert f"onnxruntime vs PyTorch {name}" in proc.stdout

    from visattn.models import create_model

    model = create_model(**state["model_config"])
    model.load_state_dict(state["model"])  # strict: the shared Q/K/V layout must match
    model.eval()
    assert model.reasoner.blocks[0].norm_first is False

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert names == ["x_logits", "y_logits", "vis_probs", "keypoints", "scores"]
    for batch in (1, 3):  # dynamic batch axis
        images = torch.randn(batch, 3, 32, 24, generator=torch.Generator().manual_seed(batch))
        got = dict(zip(names, session.run(None, {"images": images.numpy()})))
        with torch.no_grad():
            ref = model(images)
        np.testing.assert_allclose(got["x_logits"], ref.x_logits.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(got["y_logits"], ref.y_logits.numpy(), atol=1e-4, rtol=0)
        vis_probs = 1.0 / (1.0 + np.exp(-ref.vis_logits.double().numpy()))
        np.testing.assert_allclose(got["vis_probs"], vis_probs, atol=1e-4, rtol=0)
        keypoints, scores = _oracle_decode(ref.x_logits.double(), ref.y_logits.double())
        np.testing.assert_allclose(got["keypoints"], keypoints, atol=1e-4, rtol=0)
        np.testing.assert_allclose(got["scores"], scores, atol=1e-4, rtol=0)


def test_authors_config_sets_the_variant(scripts: ModuleType) -> None:
    authors = EXAMPLES / "configs" / "coco_r50_simcc_authors_code.json"
    paper = json.loads(authors.read_text())["_paper"]
    assert (paper["AP"], paper["visible"]["AP"], paper["occluded"]["AP"]) == (73.6, 78.7, 65.5)
    args = scripts.parse_flags(["--config", str(authors), "--synthetic", "8"])
    assert (args.post_norm, args.shared_qkv, args.vis_loss, args.schedule) == (True, True, "ce", "cosine")
    kwargs = scripts.model_config(args)["visattn"]
    assert (kwargs["norm_first"], kwargs["shared_qkv"], kwargs["embed_dim"], kwargs["depth"]) == (
        False, True, 512, 3,
    )  # fmt: skip
    default = scripts.model_config(scripts.parse_flags(["--synthetic", "8"]))["visattn"]
    assert (default["norm_first"], default["shared_qkv"]) == (True, False)


@pytest.mark.parametrize("config", sorted(p.name for p in (EXAMPLES / "configs").glob("*.json")))
def test_every_config_parses_and_cites_the_paper(scripts: ModuleType, config: str) -> None:
    """Each shipped config holds only known flags with valid values and the paper's numbers."""
    path = EXAMPLES / "configs" / config
    assert "_paper" in json.loads(path.read_text()), f"{config} lacks the paper's expected numbers"
    args = scripts.parse_flags(["--config", str(path), "--synthetic", "8"])
    assert args.keypoints == ("crowdpose" if config.startswith("crowdpose") else "coco")
    assert args.arch == ("hrnet_w32" if "hrnet" in config else "resnet50")
    assert args.reasoner == (
        "visattn" in config or "authors" in config or "gtmask" in config or "reasoner" in config
    )


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--embed-dim", "30", "--num-heads", "4"], "not divisible by --num-heads 4"),
        (["--depth", "0"], "--depth must be a positive integer"),
        (["--config", "{bad}"], "post_norm='yes' must be true or false"),
        # the authors' config sets all three switches, which --no-reasoner contradicts
        (["--config", "{authors}", "--no-reasoner"], "--post-norm / --shared-qkv / --vis-loss ce configure"),
    ],
)
def test_train_flag_errors(scripts: ModuleType, tmp_path: Path, argv: list[str], needle: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"post_norm": "yes"}))
    authors = EXAMPLES / "configs" / "coco_r50_simcc_authors_code.json"
    argv = [a.format(bad=bad, authors=authors) for a in argv]
    with pytest.raises(scripts.CLIError, match=re.escape(needle)):
        scripts.parse_flags([*argv, "--synthetic", "8"])


def test_export_errors_are_one_line_exit_2(trained: Path, tmp_path: Path) -> None:
    not_torch = tmp_path / "notes.json"
    not_torch.write_text("{}")
    cases = [
        ("export_onnx.py", "--checkpoint", tmp_path / "missing.pt"),
        ("export_onnx.py", "--checkpoint", not_torch),
        ("export_onnx.py", "--checkpoint", trained, "--embed-dim", "8", "--output", tmp_path / "x.onnx"),
    ]
    expected = ["does not exist", "cannot be read", "stores its own model config"]
    assert_one_line_errors(cases, expected)
