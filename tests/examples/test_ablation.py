"""The ablation benchmark and the demo, run as a user runs them (``--quick``), and the demo's variants."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ablation")]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
VARIANTS = ["plain", "none", "predicted", "ground_truth", "best_occlusion_labels"]


def _run(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, str(path), *args], capture_output=True, text=True, env=ENV, timeout=400
    )
    if proc.returncode != 0:
        raise AssertionError(f"{path.name} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_bench_ablation_quick_writes_paired_tables_and_resumes(tmp_path: Path) -> None:
    script = REPO_ROOT / "benchmarks" / "bench_ablation.py"
    args = ["--quick", "--jobs", "2", "--output", str(tmp_path), "--variants", *VARIANTS]
    first = _run(script, *args)
    assert "cpu_capability" in first.stdout
    result = json.loads((tmp_path / "ablation.json").read_text())
    per_seed, summary = result["per_seed"], result["summary"]
    assert set(VARIANTS) <= set(per_seed)
    assert "predicted+calibrated" in per_seed  # the same model at the calibrated threshold
    seed = "0"
    ap = {row: per_seed[row][seed]["AP"] for row in per_seed}
    # the headline figure and the paired differences, recomputed by hand from the per-seed metrics
    gap = ap["ground_truth"] - ap["none"]
    if gap:
        expected = (ap["predicted"] - ap["none"]) / gap
        assert summary["predicted"]["oracle_gain_recovered"][0] == pytest.approx(expected)
    assert summary["predicted"]["dAP_vs_plain"][0] == pytest.approx(ap["predicted"] - ap["plain"])
    assert summary["none"]["dAP_vs_plain"][0] == pytest.approx(ap["none"] - ap["plain"])
    assert "dAP_vs_plain" not in summary["plain"]
    for key in ("vis_roc_auc", "vis_occluded_recall", "vis_majority_accuracy", "vis_balanced_accuracy"):
        assert key in per_seed["predicted"][seed]
    assert "vis_accuracy" not in per_seed["plain"][seed]  # no VisNet without the layer
    assert 0.0 <= per_seed["predicted"][seed]["vis_roc_auc"] <= 1.0
    assert (tmp_path / "ablation.png").read_bytes()[:8] == PNG_MAGIC
    table = (tmp_path / "ablation.md").read_text()
    for row in VARIANTS:
        assert f"| {row} |" in table
    again = _run(script, *args)  # every run was saved: nothing is trained again
    assert again.stdout.count("reused") == len(VARIANTS)
    assert json.loads((tmp_path / "ablation.json").read_text())["per_seed"] == per_seed


def test_demo_quick_prints_the_three_rows_and_the_reading(tmp_path: Path) -> None:
    proc = _run(REPO_ROOT / "examples" / "demo.py", "--quick", "--output", str(tmp_path))
    for row in ("plain (seed 0)", "visattn (seed 0)", "oracle (seed 0)"):
        assert row in proc.stdout
    assert "predicted mask reaches" in proc.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) == {"plain (seed 0)", "visattn (seed 0)", "oracle (seed 0)"}
    assert "vis_roc_auc" in metrics["visattn (seed 0)"]
    assert (tmp_path / "poses.png").read_bytes()[:8] == PNG_MAGIC
    assert (tmp_path / "attention.png").read_bytes()[:8] == PNG_MAGIC


def test_the_demo_layer_is_the_library_default() -> None:
    """The demo's ``visattn`` row builds the reasoner exactly as ``SimCCAdapter`` does by default."""
    sys.path.insert(0, str(REPO_ROOT / "examples"))
    try:
        import ablation
    finally:
        sys.path.pop(0)
    from functools import partial

    from visattn import SimCCAdapter, VisibilityMaskedReasoner
    from visattn.models import tiny_net

    best = ablation.build_model(ablation.VARIANTS["best"], seed=0)
    torch.manual_seed(0)
    factory = partial(VisibilityMaskedReasoner, embed_dim=256, depth=2)
    default = SimCCAdapter(tiny_net(64), 64, 17, ablation.INPUT_SIZE, reasoner=factory)
    assert best.reasoner is not None
    assert default.reasoner is not None
    assert repr(best.reasoner) == repr(default.reasoner)
    assert best.reasoner.visnet_grad_scale == default.reasoner.visnet_grad_scale
    shapes = {k: tuple(v.shape) for k, v in best.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in default.state_dict().items()}
    from visattn.losses import VisibilityAwareLoss, VisibilityBCELoss

    default_loss = VisibilityAwareLoss(default.head).vis_loss  # what the demo's layer is trained with
    assert isinstance(default_loss, VisibilityBCELoss)
    assert ablation.VARIANTS["best"].vis_loss == ("balanced" if default_loss.balanced else "bce")
