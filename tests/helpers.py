"""Shared test utilities: tolerance table and paths to the real sample data."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "mmpose-testdata"
COCO_DIR = SHARED_DATA / "coco"
CROWDPOSE_DIR = SHARED_DATA / "crowdpose"

# One tolerance table per dtype (absolute, relative).
TOL: dict[torch.dtype, dict[str, float]] = {
    torch.float64: {"atol": 1e-10, "rtol": 1e-10},
    torch.float32: {"atol": 1e-5, "rtol": 1e-5},
    torch.bfloat16: {"atol": 1e-2, "rtol": 1e-2},
    torch.float16: {"atol": 1e-2, "rtol": 1e-2},
}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None) -> None:
    """``torch.testing.assert_close`` with the package tolerance for ``dtype`` (default: actual's)."""
    tol = TOL[dtype or actual.dtype]
    torch.testing.assert_close(actual, expected, atol=tol["atol"], rtol=tol["rtol"])


def require_shared_data() -> Path:
    """Path of the real COCO/CrowdPose samples; skip when the checkout has no ../shared beside it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA}")
    return SHARED_DATA


def flat_fields(sample: dict) -> dict[str, torch.Tensor]:
    """A sample / batch with its ``targets`` NamedTuple spread into ``targets.<field>`` tensors."""
    out = {k: v for k, v in sample.items() if k != "targets"}
    if "targets" in sample:
        assert hasattr(sample["targets"], "_fields"), "targets must be the codec's NamedTuple"
        out |= {f"targets.{name}": value for name, value in sample["targets"]._asdict().items()}
    return out


def load_docs_tool(name: str) -> ModuleType:
    """Import the script ``docs/tools/<name>.py`` (not a package) as the module ``docs_tools_<name>``."""
    spec = importlib.util.spec_from_file_location(
        f"docs_tools_{name}", REPO_ROOT / "docs" / "tools" / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # registered first: dataclasses look their module up
    spec.loader.exec_module(module)
    return module
