from __future__ import annotations

import importlib
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
    """``examples/train.py`` imported in-process (it imports ``engine`` and ``models`` from examples/);
    the three names leave ``sys.modules`` again afterwards."""
    monkeypatch.syspath_prepend(str(REPO_ROOT / "examples"))
    before = {name: sys.modules.get(name) for name in ("train", "engine", "models")}
    try:
        yield importlib.import_module("train")
    finally:
        for name, module in before.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
