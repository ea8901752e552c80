"""Packaging: the import footprint, the single-source version, and the built wheel in a fresh venv."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import visattn
from tests.helpers import SHARED_DATA
from tests.test_docs import REPO_ROOT, python_blocks, run_block

# Third-party modules that `import visattn` must never load (optional extras or unrelated stacks).
FORBIDDEN = (
    "cv2",
    "pycocotools",
    "xtcocotools",
    "timm",
    "torchvision",
    "matplotlib",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "tqdm",
    "tensorboard",
    "mmcv",
    "mmpose",
)
# Modules whose import must stay within torch, einops and numpy (data, metrics and viz import their extras
# lazily).
CORE_MODULES = (
    "visattn",
    "visattn.visibility",
    "visattn.keypoints",
    "visattn.visnet",
    "visattn.attention",
    "visattn.reasoner",
    "visattn.heads",
    "visattn.adapters",
    "visattn.codecs",
    "visattn.losses",
    "visattn.compat",
    "visattn.export",
    "visattn.data",
    "visattn.metrics",
    "visattn.viz",
    "visattn.inference",
    "visattn.models",
    "visattn.optim",
    "visattn.checkpoint",
    "visattn.cli",
)

_FOOTPRINT = """
import importlib, json, sys
import torch, einops, numpy
seen = {name.split(".")[0] for name in sys.modules}
report = {}
for module in sys.argv[1:]:
    importlib.import_module(module)
    now = {name.split(".")[0] for name in sys.modules}
    report[module] = sorted(now - seen)
    seen = now
print(json.dumps(report))
"""


def test_import_loads_only_torch_einops_numpy() -> None:
    """Each core module, imported in turn after torch, einops and numpy, adds no third-party module."""
    result = subprocess.run(
        [sys.executable, "-c", _FOOTPRINT, *CORE_MODULES],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, list[str]] = json.loads(result.stdout.strip().splitlines()[-1])
    # Measured against `import torch, einops, numpy` (torch itself may import e.g. tqdm when present).
    forbidden = {module: sorted(set(new) & set(FORBIDDEN)) for module, new in report.items()}
    assert not any(forbidden.values()), f"optional dependencies imported: {forbidden}"
    third_party = {
        module: [
            n for n in new if n not in sys.stdlib_module_names and not n.startswith("_") and n != "visattn"
        ]
        for module, new in report.items()
    }
    assert not any(third_party.values()), f"third-party modules beyond torch, einops, numpy: {third_party}"


def test_version_has_one_source() -> None:
    version_file = REPO_ROOT / "src" / "visattn" / "_version.py"
    match = re.fullmatch(r'__version__ = "([^"]+)"\s*', version_file.read_text(encoding="utf-8"))
    assert match is not None, "src/visattn/_version.py must hold exactly one line __version__ = '...'"
    assert match.group(1) == visattn.__version__
    pyproject = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'dynamic = ["version"]' in pyproject
    assert 'path = "src/visattn/_version.py"' in pyproject
    assert re.search(r"^version\s*=", pyproject, re.MULTILINE) is None, "a literal version in pyproject.toml"
    others = [
        path.relative_to(REPO_ROOT).as_posix()
        for path in (REPO_ROOT / "src").rglob("*.py")
        if path != version_file and re.search(r"^__version__\s*=", path.read_text(encoding="utf-8"), re.M)
    ]
    assert not others, f"__version__ assigned outside _version.py: {others}"


def test_installed_metadata_matches_version() -> None:
    assert importlib.metadata.version("visattn") == visattn.__version__


def test_changelog_has_current_version() -> None:
    changelog = (REPO_ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{visattn.__version__}]" in changelog


def _torch_requirement() -> str:
    """What the fresh venv installs for torch: ``VISATTN_TEST_TORCH``, a local CPU wheel, or the running one.

    A CPU-only wheel from pip's ``--find-links`` folders installs in about 30 s (about 1 GB); the default
    CUDA build of the same release pulls several GB of CUDA libraries. Any torch >= 2.2 exercises the
    wheel's declared requirement.
    """
    if requirement := os.environ.get("VISATTN_TEST_TORCH"):
        return requirement
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    folders = os.environ.get("PIP_FIND_LINKS", "").split()
    config = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    for line in config.stdout.splitlines():  # e.g. global.find-links='/opt/wheels'
        key, _, value = line.partition("=")
        if key.endswith("find-links"):
            folders += value.strip("'\"").split()
    for folder in folders:
        for wheel in sorted(
            Path(folder.removeprefix("file://")).glob(f"torch-*+cpu-{tag}-{tag}-*.whl"), reverse=True
        ):
            major, minor = (int(part) for part in wheel.name.split("-")[1].split(".")[:2])
            if (major, minor) >= (2, 2):
                return str(wheel)
    import torch

    return f"torch=={torch.__version__.split('+')[0]}"


def _run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_wheel_installs_in_fresh_venv_and_runs_readme(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-isolation"]
    _run(
        [
            sys.executable,
            "-m",
            "build",
            "--sdist",
            "--wheel",
            "--outdir",
            str(dist),
            *isolation,
            str(REPO_ROOT),
        ],
        timeout=600,
    )
    (wheel,) = dist.glob("visattn-*.whl")
    (sdist,) = dist.glob("visattn-*.tar.gz")

    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert re.search(rf"^Version: {re.escape(visattn.__version__)}$", metadata, re.MULTILINE), metadata[:400]
    assert "visattn/py.typed" in names
    assert not any(name.startswith(("tests/", "examples/", "docs/")) for name in names), names
    requires = re.findall(r"^Requires-Dist: ([^;\n]+)$", metadata, re.MULTILINE)
    assert sorted(r.split(">")[0].split("=")[0].strip() for r in requires) == ["einops", "numpy", "torch"]
    with tarfile.open(sdist) as archive:
        members = {Path(m).relative_to(Path(m).parts[0]).as_posix() for m in archive.getnames() if "/" in m}
    assert {"pyproject.toml", "README.md", "LICENSE", "src/visattn/_version.py"} <= members

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], timeout=300)
    python = venv / "bin" / "python"
    _run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            str(wheel),
            _torch_requirement(),
        ],
        timeout=900,
    )

    workdir = tmp_path / "work"
    workdir.mkdir()
    probe = _run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m, visattn; print(visattn.__file__, m.version('visattn'))",
        ],
        cwd=workdir,
        timeout=120,
    )
    location, installed_version = probe.stdout.split()
    assert Path(location).is_relative_to(venv), location
    assert installed_version == visattn.__version__

    blocks = python_blocks(REPO_ROOT / "README.md")
    quick_start = next(b for b in blocks if not b.notest)  # torch + visattn only
    result = run_block(quick_start, python, workdir)
    assert result.returncode == 0, f"README block failed in the fresh venv\n{result.stdout}\n{result.stderr}"

    # "Predict in ten lines" with the data extra, on the real COCO sample next to the checkout
    predict = next(b for b in blocks if "TopDownPredictor" in b.source)
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA}: the predictor block needs its image")
    _run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{wheel}[data]"],
        timeout=900,
    )
    source = predict.source.replace('"../shared/', f'"{SHARED_DATA.parents[1]}/')
    result = run_block(dataclasses.replace(predict, source=source), python, workdir)
    assert result.returncode == 0, f"README predictor block failed\n{result.stdout}\n{result.stderr}"
    assert result.stdout.count("(17, 2) (17,) (17,)") == 2, result.stdout
