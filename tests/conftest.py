from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest
import torch

from tests.helpers import REPO_ROOT


@pytest.fixture(autouse=True)
def _seed_and_threads() -> None:
    """Every test starts from the same RNG state."""
    torch.manual_seed(0)


@pytest.fixture
def scripts(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """``examples/train.py`` imported in-process (it imports ``engine`` from examples/); both names
    leave ``sys.modules`` again afterwards."""
    monkeypatch.syspath_prepend(str(REPO_ROOT / "examples"))
    before = {name: sys.modules.get(name) for name in ("train", "engine")}
    try:
        yield importlib.import_module("train")
    finally:
        for name, module in before.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _calls_shared_data(func: object) -> bool:
    try:
        return "require_shared_data(" in inspect.getsource(func)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that reads the real samples in ../shared (directly or through a fixture) with
    ``shared_data``: ``-m "not shared_data"`` runs the rest, and a clone without ../shared skips only them."""
    for item in items:
        func = getattr(item, "function", None)
        fixtures = getattr(item, "_fixtureinfo", None)
        defs = (
            []
            if fixtures is None
            else [d for name in item.fixturenames for d in fixtures.name2fixturedefs.get(name, ())]
        )
        if _calls_shared_data(func) or any(_calls_shared_data(d.func) for d in defs):
            item.add_marker(pytest.mark.shared_data)


@pytest.fixture(params=["cpu", *(["cuda"] if torch.cuda.is_available() else [])])
def device(request: pytest.FixtureRequest) -> torch.device:
    """Every device the tests can run on: CPU always, CUDA when present; ``TORCH_DEVICE=cuda`` (or
    ``cpu``) keeps one of them."""
    wanted = os.environ.get("TORCH_DEVICE")
    if wanted and not request.param.startswith(wanted):
        pytest.skip(f"TORCH_DEVICE={wanted}")
    return torch.device(request.param)
