"""End-to-end checks of the example scripts (train / evaluate / visualize) as a user runs them.

Every script runs in a subprocess on a tiny synthetic set (16 images, 32x24 crops, the tiny demo net
with GroupNorm so that batch splitting across DDP ranks does not change the maths). One reference run
(single process, deterministic) is shared by the resume, DDP and evaluation checks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO_ROOT
from visattn.data import make_synthetic_coco

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("examples")]

EXAMPLES = REPO_ROOT / "examples"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COMMON = [
    "--arch", "tiny", "--input-size", "32", "24", "--sigma", "2", "--norm", "group",
    "--embed-dim", "32", "--depth", "1", "--epochs", "2", "--workers", "0", "--deterministic",
    "--val-every", "100", "--no-progress", "--no-tensorboard", "--no-augment", "--warmup-iters", "4",
]  # fmt: skip
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run(script: str, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(EXAMPLES / script), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=240)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def data_args(root: Path) -> list[str]:
    return [
        "--data-root", str(root),
        "--train-ann", "train/person_keypoints_train.json", "--train-images", "train/images",
        "--val-ann", "val/person_keypoints_val.json", "--val-images", "val/images",
    ]  # fmt: skip


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic_coco(root / "train", 16, seed=0)
    make_synthetic_coco(root / "val", 8, seed=1, split_name="val")
    return root


@pytest.fixture(scope="module")
def reference(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted single-process run, global batch 4."""
    out = tmp_path_factory.mktemp("reference")
    run("train.py", *data_args(data), *COMMON, "--batch-size", "4", "--output", out)
    return out


def test_train_evaluate_visualize(data: Path, reference: Path, tmp_path: Path) -> None:
    assert (reference / "last.pt").is_file()
    assert (reference / "best.pt").is_file()
    rows = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == [1, 2]
    assert "AP_occluded" in rows[-1]
    assert (reference / "metrics.csv").read_text().startswith("kind,epoch")
    state = torch.load(reference / "last.pt", map_location="cpu", weights_only=False)
    assert (state["epoch"], state["step"]) == (2, 0)
    assert state["model_config"]["name"] == "tiny"

    ann, images = data / "val" / "person_keypoints_val.json", data / "val" / "images"
    metrics_file = tmp_path / "metrics.json"
    proc = run(
        "evaluate.py", "--checkpoint", reference / "last.pt", "--ann-file", ann, "--image-dir", images,
        "--workers", "0", "--output", metrics_file,
    )  # fmt: skip
    metrics = json.loads(metrics_file.read_text())["metrics"]
    for key in ("AP", "AP50", "AP75", "APM", "APL", "AR", "AP_visible", "AP_occluded", "vis_accuracy"):
        assert key in metrics
        assert 0.0 <= metrics[key] <= 1.0
    # the table row is labelled by the checkpoint's folder; one row per keypoint subset
    for subset in ("overall", "visible", "occluded"):
        assert f"| {reference.name} | {subset} |" in proc.stdout, proc.stdout
    # the training run's final validation used the same checkpoint, data and flip test
    assert metrics["AP"] == pytest.approx(rows[-1]["AP"], abs=1e-9)

    proc = run(
        "visualize.py", "--checkpoint", reference / "last.pt", "--ann-file", ann, "--image-dir", images,
        "--num", "4", "--output", tmp_path / "vis",
    )  # fmt: skip
    for name in ("poses.png", "attention.png"):
        png = tmp_path / "vis" / name
        assert png.read_bytes()[:8] == PNG_MAGIC


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(
    data: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    cmd = [
        sys.executable, str(EXAMPLES / "train.py"), *data_args(data), *COMMON, "--batch-size", "4",
        "--output", str(out), "--save-every-steps", "2",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    deadline = time.monotonic() + 180
    while not (out / "last.pt").is_file():
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "train.py exited early"
        assert time.monotonic() < deadline, "no step checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    assert (killed_at["epoch"], killed_at["step"]) < (2, 0), "the run finished before the kill"

    resumed = run(
        "train.py", *data_args(data), *COMMON, "--batch-size", "4", "--output", out, "--resume", "auto"
    )
    assert f"epoch {killed_at['epoch']} step {killed_at['step']}" in resumed.stdout
    expected, actual = weights(reference / "last.pt"), weights(out / "last.pt")
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], atol=1e-6, rtol=0, msg=name)


def test_torchrun_two_processes_matches_single_process(data: Path, reference: Path, tmp_path: Path) -> None:
    """2 ranks x batch 2 (gloo) == 1 process x batch 4: same samples per step, GroupNorm, mean losses.

    The only difference is the order of floating-point sums (DDP averages the two ranks' gradients),
    so weights agree to float32 rounding and the metrics to the last digit.
    """
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(EXAMPLES / "train.py"), *data_args(data), *COMMON, "--batch-size", "2", "--output", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected, actual = weights(reference / "last.pt"), weights(out / "last.pt")
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], atol=2e-5, rtol=1e-4, msg=name)
    last = lambda run_dir: [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()][-1]  # noqa: E731
    ref_metrics, ddp_metrics = last(reference), last(out)
    for key in ("AP", "AP_visible", "AP_occluded", "AR", "PCK_all", "vis_accuracy"):
        assert ddp_metrics[key] == pytest.approx(ref_metrics[key], abs=1e-6), key


def assert_one_line_errors(cases: Sequence[Sequence[str | Path]], expected: Sequence[str]) -> None:
    """Each script call exits 2 with one ``error: ... fix: ...`` line containing its expected text."""
    for proc, needle in zip(_errors(cases), expected, strict=True):
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("error: ")
        assert " fix: " in lines[0]
        assert needle in lines[0], lines[0]
        assert len(lines[0]) < 500, lines[0]  # key lists are capped (first 5 + a count)


def _errors(cases: Sequence[Sequence[str | Path]]) -> list[subprocess.CompletedProcess[str]]:
    procs = [
        subprocess.Popen(
            [sys.executable, str(EXAMPLES / c[0]), *map(str, c[1:])],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for c in cases
    ]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


def test_user_errors_are_one_line_exit_2(data: Path, reference: Path, tmp_path: Path) -> None:
    # a checkpoint whose config lost the reasoner: every reasoner weight is an unexpected key
    mismatched = tmp_path / "mismatched.pt"
    state = torch.load(reference / "last.pt", map_location="cpu", weights_only=False)
    state["model_config"] = {**state["model_config"], "visattn": False}
    torch.save(state, mismatched)
    val = ["--ann-file", data / "val" / "person_keypoints_val.json", "--image-dir", data / "val" / "images"]
    cases = [
        ("train.py", "--data-root", tmp_path / "missing", "--arch", "tiny", "--output", tmp_path / "a"),
        ("train.py", *data_args(data), *COMMON, "--no-reasoner", "--output", tmp_path / "b",
         "--resume", reference / "last.pt"),
        ("train.py", "--synthetic", "8", "--mask-source", "oracle"),
        ("evaluate.py", "--checkpoint", data / "val" / "person_keypoints_val.json",
         "--ann-file", data / "val" / "person_keypoints_val.json", "--image-dir", data / "val" / "images"),
        ("evaluate.py", "--checkpoint", mismatched, *val),
        ("evaluate.py", "--checkpoint", reference / "last.pt", "--ann-file", tmp_path / "missing.json",
         "--image-dir", data / "val" / "images"),
        ("visualize.py", "--checkpoint", reference / "last.pt", *val, "--keypoints", "crowdpose"),
    ]  # fmt: skip
    expected = [
        "is not a directory", "different model config", "invalid choice", "cannot be read",
        "unexpected keys", "annotation file", "K=17",
    ]  # fmt: skip
    assert_one_line_errors(cases, expected)
