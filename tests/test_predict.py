"""``visattn-predict``: results JSON equal to the predictor's, pictures, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from visattn.checkpoint import save_checkpoint
from visattn.data import make_synthetic_coco
from visattn.inference import TopDownPredictor
from visattn.models import create_model
from visattn.predict import results_json

CONFIG = {"name": "tiny", "input_size": [32, 24], "visattn": {"embed_dim": 16, "depth": 1}}


def _run(*argv: object) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "visattn.predict", *map(str, argv)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, torch.nn.Module]:
    root = tmp_path_factory.mktemp("predict")
    ann = make_synthetic_coco(root, 3, image_size=(60, 80), seed=1)
    torch.manual_seed(0)
    model = create_model(**CONFIG)
    save_checkpoint(root / "m.pt", {"model": model.state_dict(), "model_config": CONFIG})
    return root, ann, model


def test_split_results_equal_the_predictor(setup: tuple[Path, Path, torch.nn.Module]) -> None:
    root, ann, model = setup
    proc = _run("--checkpoint", root / "m.pt", "--ann-file", ann, "--image-dir", root / "images",
                "--output", root / "out.json", "--draw", root / "pictures")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = json.loads((root / "out.json").read_text())
    data = json.loads(ann.read_text())
    predictor = TopDownPredictor(model)
    sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}

    def clipped(box: list[float], image_id: int) -> list[float]:  # as the dataset (and evaluation) clips
        (x, y, w, h), (iw, ih) = box, sizes[image_id]
        x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + w, iw - 1), min(y + h, ih - 1)
        return [x1, y1, x2 - x1, y2 - y1]

    expected = []
    for image in data["images"]:
        boxes = [
            clipped(a["bbox"], image["id"])
            for a in data["annotations"]
            if a["image_id"] == image["id"] and a["num_keypoints"]
        ]
        people = predictor(root / "images" / image["file_name"], boxes, box_format="xywh")
        expected += results_json(image["id"], people)
    assert len(got) == len(expected) > 0
    for a, b in zip(got, expected):
        assert a["image_id"] == b["image_id"]
        assert a["keypoints"] == pytest.approx(b["keypoints"], abs=2e-3)
        assert a["vis_probs"] == pytest.approx(b["vis_probs"], abs=2e-4)
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)
    pictures = sorted((root / "pictures").glob("*.png"))
    assert len(pictures) == len(data["images"])
    assert pictures[0].read_bytes()[:4] == b"\x89PNG"


def test_one_image_and_one_line_errors(setup: tuple[Path, Path, torch.nn.Module]) -> None:
    root, _, _ = setup
    image = next((root / "images").glob("*.jpg"))
    ok = _run(
        "--checkpoint", root / "m.pt", "--image", image, "--box", 5, 5, 40, 55, "--output", root / "one.json"
    )
    assert ok.returncode == 0, ok.stderr
    assert len(json.loads((root / "one.json").read_text())) == 1
    for argv, needle in [
        (["--checkpoint", root / "missing.pt", "--image", image, "--box", 1, 2, 30, 40], "does not exist"),
        (["--checkpoint", root / "m.pt", "--image", image], "needs at least one --box"),
        (["--checkpoint", root / "m.pt"], "no input given"),
        (
            ["--checkpoint", root / "m.pt", "--image", root / "nope.jpg", "--box", 1, 2, 30, 40],
            "not found or unreadable",
        ),
        (["--checkpoint", root / "m.pt", "--image", image, "--box", 9, 9, 3, 3], "positive width and height"),
    ]:
        proc = _run(*argv, "--output", root / "x.json")
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, proc.stderr
        assert len(lines) == 1, proc.stderr
        assert needle in lines[0]
        assert lines[0].startswith("error: ")
        assert " fix: " in lines[0]
