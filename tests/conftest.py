from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads() -> None:
    """Every test starts from the same RNG state."""
    torch.manual_seed(0)
