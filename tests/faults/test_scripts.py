"""Fault injection on the example scripts, run as a user runs them (subprocesses, real files).

Malicious pickles passed as checkpoints, resumes with changed flags, a weights-only ``best.pt`` passed
to ``--resume``, stale synthetic sets, unwritable ``--output`` folders (a path below a regular file; a
read-only folder where permissions apply), a size-limited checkpoint write (``RLIMIT_FSIZE``), bad
numeric flags from the CLI and from JSON configs, and a truncated image inside the data. Every user
error must be one ``error: ... fix: ...`` line with exit status 2.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import resource
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from tests.examples.test_recipes import ENV, EXAMPLES, assert_one_line_errors, data_args, run
from visattn.data import make_synthetic_coco

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("examples")]

TINY = [
    "--arch", "tiny", "--input-size", "32", "24", "--sigma", "2", "--norm", "group", "--embed-dim", "32",
    "--depth", "1", "--workers", "0", "--deterministic", "--no-progress", "--no-tensorboard",
    "--no-augment", "--warmup-iters", "2", "--batch-size", "4", "--log-every", "1",
]  # fmt: skip
LR, MIN_LR_RATIO = 1e-3, 0.01  # train.py defaults


class Payload:
    """Unpickling it creates ``marker`` (``open(marker, "w")``): code that runs on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def _malicious(path: Path, marker: Path, *, zip_format: bool) -> Path:
    state = {"model": {"evil": Payload(marker)}, "model_config": {}, "optimizer": {}}
    if zip_format:
        torch.save(state, path)
    else:
        with path.open("wb") as handle:
            pickle.dump(state, handle, protocol=2)  # torch's legacy (non-zip) format
    return path


def _run_umask(*args: str | Path, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(EXAMPLES / "train.py"), *map(str, args)]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=ENV, timeout=240, preexec_fn=lambda: os.umask(umask)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fault_data")
    make_synthetic_coco(root / "train", 16, seed=0)
    make_synthetic_coco(root / "val", 8, seed=1, split_name="val")
    return root


@pytest.fixture(scope="module")
def run1(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 1-epoch cosine run (validated, so it has best.pt), written under umask 022."""
    out = tmp_path_factory.mktemp("run1")
    _run_umask(*data_args(data), *TINY, "--epochs", "1", "--val-every", "1", "--output", out)
    return out


def _copy_run(run1: Path, dest: Path) -> Path:
    shutil.copytree(run1, dest)
    return dest


# ----------------------------------------------------------------------------------------------------
# checkpoints are data, not code


def test_payload_is_real(tmp_path: Path) -> None:
    """The fixture really runs code when unpickled without weights_only (what the scripts used to do)."""
    marker = tmp_path / "ran"
    torch.load(_malicious(tmp_path / "evil.pt", marker, zip_format=True), weights_only=False)
    assert marker.exists()


def test_malicious_checkpoint_runs_nothing_in_any_script(data: Path, tmp_path: Path) -> None:
    val = ["--ann-file", data / "val" / "person_keypoints_val.json", "--image-dir", data / "val" / "images"]
    cases, markers = [], []
    for zip_format in (True, False):
        for script in ("train.py", "evaluate.py", "export_onnx.py"):
            marker = tmp_path / f"ran_{script}_{zip_format}"
            evil = _malicious(tmp_path / f"evil_{script}_{zip_format}.pt", marker, zip_format=zip_format)
            markers.append(marker)
            if script == "train.py":
                cases.append((script, *data_args(data), *TINY, "--output", tmp_path / "o", "--resume", evil))
            elif script == "evaluate.py":
                cases.append((script, "--checkpoint", evil, *val))
            else:
                cases.append((script, "--checkpoint", evil, "--output", tmp_path / "x.onnx"))
    assert_one_line_errors(cases, ["it is not loaded because unpickling them can run arbitrary code"] * 6)
    assert not [m for m in markers if m.exists()]


def test_checkpoints_load_with_weights_only_and_get_the_umask(run1: Path) -> None:
    for name in ("last.pt", "best.pt"):
        state = torch.load(run1 / name, map_location="cpu", weights_only=True)
        assert state["model_config"]["name"] == "tiny"
        assert stat.S_IMODE((run1 / name).stat().st_mode) == 0o644, name  # 0o666 & ~0o022, not 0o600
    state = torch.load(run1 / "last.pt", map_location="cpu", weights_only=True)
    assert isinstance(state["args"], dict)
    assert isinstance(state["rng"][0]["numpy"]["key"], torch.Tensor)


# ----------------------------------------------------------------------------------------------------
# resume obeys the flags or refuses


def _main_lr(step: int, total: int) -> float:
    """Oracle: the cosine schedule of the main group at global step ``step`` (no warm-up)."""
    progress = min(step / total, 1.0)
    return LR * (MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5 * (1 + math.cos(math.pi * progress)))


def test_resume_with_more_epochs_follows_the_new_schedule(data: Path, run1: Path, tmp_path: Path) -> None:
    out = _copy_run(run1, tmp_path / "more")
    iters = torch.load(out / "last.pt", weights_only=True)["global_step"]  # steps of one epoch
    rows = (out / "metrics.jsonl").read_text().splitlines()
    stale = {**json.loads(rows[-2]), "global_step": iters + 1, "step": 1, "epoch": 1}  # logged, then killed
    (out / "metrics.jsonl").write_text("\n".join([*rows, json.dumps(stale)]) + "\n")

    proc = run("train.py", *data_args(data), *TINY, "--epochs", "3", "--val-every", "0", "--output", out,
               "--resume", "auto")  # fmt: skip
    assert "--epochs 1 -> 3" in proc.stdout
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in logged if r["kind"] == "train"]
    assert [r["global_step"] for r in train] == list(range(1, 3 * iters + 1))  # no duplicates
    for r in train[iters:]:
        assert r["lr"] == pytest.approx(_main_lr(r["global_step"], 3 * iters), rel=1e-9), r
    assert train[iters]["lr"] > 10 * LR * MIN_LR_RATIO  # not stuck at the 1-epoch floor


def test_resume_of_a_finished_run_has_nothing_to_do(data: Path, run1: Path, tmp_path: Path) -> None:
    out = _copy_run(run1, tmp_path / "done")
    before = (out / "last.pt").read_bytes()
    proc = run("train.py", *data_args(data), *TINY, "--epochs", "1", "--output", out, "--resume", "auto")
    assert "nothing to train" in proc.stdout
    assert (out / "last.pt").read_bytes() == before


def test_resume_refusals_are_one_line(data: Path, run1: Path, tmp_path: Path) -> None:
    base = [*data_args(data), *TINY]
    cases = [
        ("train.py", *base, "--epochs", "2", "--output", tmp_path / "a", "--resume", run1 / "best.pt"),
        ("train.py", *base, "--epochs", "2", "--batch-size", "2", "--output", tmp_path / "b",
         "--resume", run1 / "last.pt"),
        ("train.py", *base, "--epochs", "2", "--seed", "3", "--output", tmp_path / "c",
         "--resume", run1 / "last.pt"),
    ]  # fmt: skip
    expected = ["has no training state", "--batch-size changed since", "--seed changed since"]
    assert_one_line_errors(cases, expected)


def test_failed_checkpoint_write_keeps_the_previous_one(data: Path, run1: Path, tmp_path: Path) -> None:
    """RLIMIT_FSIZE below the checkpoint size: the write fails with EFBIG, last.pt stays as it was."""
    out = _copy_run(run1, tmp_path / "limited")
    before = (out / "last.pt").read_bytes()
    limit = len(before) // 2
    cmd = [sys.executable, str(EXAMPLES / "train.py"), *data_args(data), *TINY, "--epochs", "2",
           "--val-every", "0", "--output", str(out), "--resume", "auto"]  # fmt: skip

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=ENV, timeout=240, preexec_fn=limit_file_size
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"writing checkpoint {out / 'last.pt'} failed" in lines[0], lines[0]
    assert "the previous last.pt is kept" in lines[0]
    assert (out / "last.pt").read_bytes() == before
    assert not list(out.glob(".last.pt.*.tmp"))


# ----------------------------------------------------------------------------------------------------
# data


def test_synthetic_set_of_another_size_is_regenerated(tmp_path: Path) -> None:
    out = tmp_path / "syn"
    flags = [*TINY, "--epochs", "1", "--max-steps-per-epoch", "1", "--val-every", "0", "--output", out]
    run("train.py", "--synthetic", "8", *flags)
    ann = out / "data" / "train" / "person_keypoints_train.json"
    assert len(json.loads(ann.read_text())["images"]) == 8
    proc = run("train.py", "--synthetic", "12", *flags)
    assert "regenerating the synthetic set" in proc.stdout
    assert len(json.loads(ann.read_text())["images"]) == 12


@pytest.mark.parametrize("workers", ["0", "1"])
def test_truncated_image_in_a_script_is_one_line(
    run1: Path, data: Path, tmp_path: Path, workers: str
) -> None:
    val = shutil.copytree(data / "val", tmp_path / "val")
    target = sorted((val / "images").glob("*.jpg"))[0]
    blob = target.read_bytes()
    target.write_bytes(blob[: len(blob) // 2])
    ann = val / "person_keypoints_val.json"
    flags = ["--workers", workers, "--no-progress", "--output", tmp_path / "m.json"]
    cases = [
        (
            "evaluate.py",
            "--checkpoint",
            run1 / "last.pt",
            "--ann-file",
            ann,
            "--image-dir",
            val / "images",
            *flags,
        )
    ]
    assert_one_line_errors(cases, [f"{target.name}: JPEG data ends before its end-of-image marker"])


# ----------------------------------------------------------------------------------------------------
# output folders


def test_unwritable_outputs_are_one_line(data: Path, run1: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    val = ["--ann-file", data / "val" / "person_keypoints_val.json", "--image-dir", data / "val" / "images"]
    folder = tmp_path / "existing_folder"
    folder.mkdir()
    cases = [
        ("train.py", *data_args(data), *TINY, "--epochs", "1", "--output", blocker / "run"),
        ("evaluate.py", "--checkpoint", run1 / "last.pt", *val, "--output", blocker / "m.json"),
        ("visualize.py", "--checkpoint", run1 / "last.pt", *val, "--output", blocker / "vis"),
        ("export_onnx.py", "--output", blocker / "x.onnx"),
        ("evaluate.py", "--checkpoint", run1 / "last.pt", *val, "--output", folder),
    ]
    expected = [
        f"--output {blocker / 'run'} is not a writable folder (Not a directory)",
        f"--output folder {blocker} is not a writable folder",
        f"--output {blocker / 'vis'} is not a writable folder",
        f"--output folder {blocker} is not a writable folder",
        f"--output {folder} is a folder",
    ]
    assert_one_line_errors(cases, expected)


def test_read_only_output_folder_is_one_line(data: Path, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root bypasses permission bits (CAP_DAC_OVERRIDE); the Not-a-directory case covers it")
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        cases = [("train.py", *data_args(data), *TINY, "--epochs", "1", "--output", folder / "run")]
        assert_one_line_errors(cases, ["is not a writable folder (Permission denied)"])
    finally:
        folder.chmod(0o755)


# ----------------------------------------------------------------------------------------------------
# numeric flags, CLI and config alike


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--epochs", "0"], "--epochs must be a positive integer, got 0"),
        (["--batch-size", "0"], "--batch-size must be a positive integer, got 0"),
        (["--workers", "-1"], "--workers must be an integer >= 0, got -1"),
        (["--log-every", "0"], "--log-every must be a positive integer, got 0"),
        (["--save-every-steps", "-2"], "--save-every-steps must be an integer >= 0"),
        (["--lr", "nan"], "--lr must be a finite number > 0, got nan"),
        (["--lr", "0"], "--lr must be a finite number > 0, got 0.0"),
        (["--sigma", "0"], "--sigma must be a finite number > 0"),
        (["--split-ratio", "-1"], "--split-ratio must be a finite number > 0"),
        (["--warmup-iters", "-1"], "--warmup-iters must be an integer >= 0"),
        (["--min-lr-ratio", "1.5"], "--min-lr-ratio must be a finite number in [0, 1]"),
        (["--input-size", "0", "24"], "--input-size must be a positive integer, got [0, 24]"),
        (["--milestones", "-1"], "--milestones must be an integer >= 0"),
        (["--seed", "-1"], "--seed must be an integer >= 0"),
        (["--synthetic-val", "0"], "--synthetic-val must be a positive integer"),
        (["--config", "{batch_size: 1.5}"], "batch_size must be a positive integer, got 1.5"),
        (["--config", "{epochs: true}"], "epochs must be a positive integer, got True"),
        (["--config", "{lr: -0.1}"], "lr must be a finite number > 0, got -0.1"),
        (["--config", "{input_size: 64}"], "--input-size must be a list of 2 integers, got 64"),
        (["--config", "{milestones: 90}"], "--milestones must be a list of zero or more integers, got 90"),
    ],
)
def test_train_numeric_flags_are_checked(
    scripts: ModuleType, tmp_path: Path, argv: list[str], needle: str
) -> None:
    if argv[0] == "--config":
        key, _, value = argv[1].strip("{}").partition(": ")
        config = tmp_path / "config.json"
        config.write_text(json.dumps({key: json.loads(value)}))
        argv = ["--config", str(config)]
    with pytest.raises(scripts.CLIError) as info:
        scripts.parse_flags([*argv, "--synthetic", "8"])
    assert needle in str(info.value)
    if argv[0] == "--config" and "list of" not in needle:
        assert str(tmp_path / "config.json") in str(info.value)


def test_numeric_flag_errors_of_every_script_are_one_line(data: Path, run1: Path, tmp_path: Path) -> None:
    val = ["--ann-file", data / "val" / "person_keypoints_val.json", "--image-dir", data / "val" / "images"]
    ckpt = ["--checkpoint", run1 / "last.pt"]
    cases = [
        ("train.py", "--synthetic", "8", "--epochs", "0"),
        ("evaluate.py", *ckpt, *val, "--batch-size", "0"),
        ("evaluate.py", *ckpt, *val, "--workers", "-2"),
        ("visualize.py", *ckpt, *val, "--num", "0"),
        ("export_onnx.py", "--keypoints", "0"),
        ("export_onnx.py", "--opset", "17"),
    ]
    expected = [
        "--epochs must be a positive integer", "--batch-size must be a positive integer",
        "--workers must be an integer >= 0", "--num must be a positive integer",
        "--keypoints must be a positive integer", "--opset must be an integer >= 18",
    ]  # fmt: skip
    assert_one_line_errors(cases, expected)
