"""Occlusion ablation: does the visattn layer help, and does its predicted mask recover the oracle's gain?

The paper's Tables 5 and 6 on visattn's synthetic occluded-pose set, runnable on a CPU::

    python benchmarks/bench_ablation.py                       # every variant, seeds 0 1 2
    python benchmarks/bench_ablation.py --variants plain none predicted ground_truth --seeds 0
    python benchmarks/bench_ablation.py --quick               # smoke run (tens of seconds)

Every variant (``examples/ablation.py``: ``VARIANTS``) trains the demo's network on the same data with
the same budget and, for one seed, the same initialisation and data order, so differences between
variants of one seed are *paired*. Per variant it reports the mean and sample standard deviation over
seeds of COCO AP, AP50, AP75, AP on visible-only and on occluded-only keypoints, and the visibility
metrics of VisNet (accuracy, balanced accuracy, ROC AUC, average precision of the occluded class,
occluded recall and precision at the operating threshold, beside the majority-class accuracy), the paired
AP differences against plain SimCC and against the reasoner without a mask, and the headline figure

    oracle gain recovered = (AP variant - AP no-mask) / (AP ground-truth mask - AP no-mask)

per seed, then averaged. Rows ``X+calibrated`` are the same trained model as ``X`` evaluated with the
operating threshold chosen on the held-out calibration split (balanced accuracy).

Writes ``ablation.json`` (every seed's metrics, the aggregates, machine and time), ``ablation.md`` (the
tables) and ``ablation.png`` (AP and AP occluded with error bars) to ``--output``, and prints the tables.
Jobs (variant x seed) run in ``--jobs`` processes of ``--threads`` torch threads each; each job's rows
are saved under ``--output/runs/`` as it finishes, and a rerun with the same data sizes and budget reuses
them (so a killed run resumes, and more seeds or variants can be added later; delete ``runs/`` to start
afresh).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from ablation import QUICK, VARIANTS, Budget, Data, mean_std, prepare_data, run_variant, variant_options

POSE_KEYS = ("AP", "AP50", "AP75", "AP_visible", "AP_occluded")
VIS_KEYS = (
    "vis_accuracy",
    "vis_balanced_accuracy",
    "vis_roc_auc",
    "vis_occluded_ap",
    "vis_occluded_recall",
    "vis_occluded_precision",
    "vis_majority_accuracy",
    "vis_threshold",
)
_DATA: Data | None = None  # set before the worker processes fork


def _run_path(runs: Path, name: str, seed: int, budget: Budget) -> Path:
    return runs / f"{name}_seed{seed}_{budget.steps}x{budget.batch_size}_lr{budget.lr:g}.json"


def _job(args: tuple[str, int, Budget, int, Path]) -> tuple[str, int, dict[str, dict[str, float]]]:
    """Train and evaluate one (variant, seed); its rows are saved to ``runs/`` so a rerun skips it."""
    name, seed, budget, threads, runs = args
    path = _run_path(runs, name, seed, budget)
    if path.exists():
        rows: dict[str, dict[str, float]] = json.loads(path.read_text())
        print(f"  reused {path.name}", flush=True)
        return name, seed, rows
    torch.set_num_threads(threads)
    assert _DATA is not None
    _, rows = run_variant(VARIANTS[name], seed, _DATA, budget)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=1))
    tmp.replace(path)
    print(
        f"  done {name} seed {seed}: AP {100 * rows[name]['AP']:.1f} in {rows[name]['train_seconds']:.0f} s",
        flush=True,
    )
    return name, seed, rows


def aggregate(per_seed: dict[str, dict[int, dict[str, float]]]) -> dict[str, dict[str, Any]]:
    """Mean / std over seeds, paired differences and the oracle gain recovered, per row."""
    out: dict[str, dict[str, Any]] = {}
    for row, seeds in per_seed.items():
        keys = sorted({k for metrics in seeds.values() for k in metrics})
        summary: dict[str, Any] = {"seeds": sorted(seeds)}
        for key in keys:
            values = [seeds[s][key] for s in sorted(seeds) if key in seeds[s]]
            summary[key] = mean_std(values)
        for base in ("plain", "none"):
            if base in per_seed and row != base:
                common = sorted(set(seeds) & set(per_seed[base]))
                if common:
                    diffs = [seeds[s]["AP"] - per_seed[base][s]["AP"] for s in common]
                    occ = [seeds[s]["AP_occluded"] - per_seed[base][s]["AP_occluded"] for s in common]
                    summary[f"dAP_vs_{base}"] = mean_std(diffs)
                    summary[f"dAP_occluded_vs_{base}"] = mean_std(occ)
        if "none" in per_seed and "ground_truth" in per_seed and row not in ("none", "plain"):
            common = sorted(set(seeds) & set(per_seed["none"]) & set(per_seed["ground_truth"]))
            recovered = []
            for s in common:
                gap = per_seed["ground_truth"][s]["AP"] - per_seed["none"][s]["AP"]
                recovered.append((seeds[s]["AP"] - per_seed["none"][s]["AP"]) / gap if gap else float("nan"))
            if recovered:
                summary["oracle_gain_recovered"] = mean_std(recovered)
        out[row] = summary
    return out


def _pm(
    value: tuple[float, float] | None, scale: float = 100.0, digits: int = 1, signed: bool = False
) -> str:
    if value is None:
        return "-"
    mean, std = value
    sign = "+" if signed else ""
    return f"{scale * mean:{sign}.{digits}f} ± {scale * std:.{digits}f}"


def markdown(summary: dict[str, dict[str, Any]], order: Sequence[str]) -> str:
    """The pose table and the visibility table."""
    lines = [
        "| variant | seeds | AP | AP50 | AP75 | AP vis | AP occ | ΔAP vs plain | ΔAP occ vs plain "
        "| ΔAP vs no-mask | oracle gain recovered |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in order:
        s = summary[row]
        cells = [str(len(s["seeds"]))] + [_pm(s.get(k)) for k in POSE_KEYS]
        cells += [
            _pm(s.get(k), signed=True) for k in ("dAP_vs_plain", "dAP_occluded_vs_plain", "dAP_vs_none")
        ]
        recovered = s.get("oracle_gain_recovered")
        cells.append("-" if recovered is None else f"{_pm(recovered, digits=0)}%")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| variant | vis acc | balanced acc | ROC AUC | occluded AP | occluded recall | occluded precision "
        "| majority acc | threshold |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in order:
        s = summary[row]
        if "vis_accuracy" not in s or row.startswith(("none", "ground_truth")):
            continue
        cells = [_pm(s.get(k)) for k in VIS_KEYS[:-2]]
        cells += [_pm(s.get("vis_majority_accuracy")), _pm(s.get("vis_threshold"), scale=1.0, digits=2)]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def chart(summary: dict[str, dict[str, Any]], order: Sequence[str], path: Path) -> None:
    """Bar chart of AP and AP occluded (mean ± std over seeds) per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(8.0, 0.6 * len(order)), 4.5))
    xs = range(len(order))
    for offset, key, colour in ((-0.2, "AP", "#3b6ea5"), (0.2, "AP_occluded", "#d9822b")):
        means = [100 * summary[r][key][0] for r in order]
        stds = [100 * summary[r][key][1] for r in order]
        ax.bar([x + offset for x in xs], means, 0.4, yerr=stds, capsize=3, color=colour, label=key)
    if "none" in summary:
        ax.axhline(100 * summary["none"]["AP"][0], color="#3b6ea5", lw=0.8, ls="--", label="AP no-mask")
    if "ground_truth" in summary:
        ax.axhline(
            100 * summary["ground_truth"]["AP"][0], color="k", lw=0.8, ls=":", label="AP ground-truth mask"
        )
    ax.set_xticks(list(xs))
    ax.set_xticklabels(order, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("COCO keypoint AP (%)")
    seeds = summary[order[0]]["seeds"]
    ax.set_title(
        f"visattn occlusion ablation, synthetic set, up to seeds {seeds} (mean ± std; see the table)"
    )
    low = min(100 * summary[r]["AP_occluded"][0] for r in order)
    ax.set_ylim(max(0.0, low - 10), None)
    ax.legend(fontsize=8, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=Budget.steps)
    p.add_argument("--batch-size", type=int, default=Budget.batch_size)
    p.add_argument("--lr", type=float, default=Budget.lr)
    p.add_argument("--train-images", type=int, default=6000)
    p.add_argument("--val-images", type=int, default=600)
    p.add_argument("--calib-images", type=int, default=300)
    p.add_argument("--jobs", type=int, default=2, help="parallel training processes")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--output", type=Path, default=Path("bench_out/ablation"))
    p.add_argument("--data", type=Path, default=None, help="data folder (default: OUTPUT/data)")
    p.add_argument("--quick", action="store_true", help="smoke run: 96/32/32 images, 20 steps, seed 0")
    p.add_argument(
        "--report-only", action="store_true",
        help="train nothing: tabulate the saved runs of these variants and seeds (missing ones are left out)",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.quick:
        vars(args).update(QUICK)
        args.seeds = args.seeds[:1]
    for name in ("steps", "batch_size", "jobs", "threads", "train_images", "val_images", "calib_images"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    start = time.perf_counter()
    args.output.mkdir(parents=True, exist_ok=True)
    machine = {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "jobs": args.jobs,
        "threads_per_job": args.threads,
    }
    print(f"bench_ablation: {machine}")
    budget = Budget(steps=args.steps, batch_size=args.batch_size, lr=args.lr)
    global _DATA
    torch.set_num_threads(max(1, args.jobs * args.threads))
    _DATA = prepare_data(
        args.data or args.output / "data",
        train_images=args.train_images,
        val_images=args.val_images,
        calib_images=args.calib_images,
        workers=2,
    )
    stats = _DATA.stats
    print(
        f"data: {len(_DATA.train)} train / {len(_DATA.val)} val / {len(_DATA.calib)} calibration instances; "
        + "; ".join(
            f"{split}: {100 * s['occluded_share']:.1f}% occluded (objects {100 * s['object_share']:.0f}%, "
            f"people {100 * s['person_share']:.0f}%, self {100 * s['self_share']:.0f}%)"
            for split, s in stats.items()
        )
    )
    print(
        f"budget: {budget.steps} steps x batch {budget.batch_size}, peak lr {budget.lr}; seeds {args.seeds}"
    )
    runs = args.output / "runs" / f"data_{args.train_images}_{args.val_images}_{args.calib_images}"
    runs.mkdir(parents=True, exist_ok=True)
    jobs = [(name, seed, budget, args.threads, runs) for seed in args.seeds for name in args.variants]
    if args.report_only:
        jobs = [job for job in jobs if _run_path(job[4], job[0], job[1], budget).exists()]
    per_seed: dict[str, dict[int, dict[str, float]]] = {}
    if args.jobs == 1 or args.report_only:
        done = [_job(job) for job in jobs]
    else:
        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            done = pool.map(_job, jobs, chunksize=1)
    for _, seed, rows in done:
        for row, metrics in rows.items():
            per_seed.setdefault(row, {})[seed] = metrics
    order = [r for name in args.variants for r in (name, f"{name}+calibrated") if r in per_seed]
    summary = aggregate(per_seed)
    table = markdown(summary, order)
    seconds = time.perf_counter() - start
    result = {
        "machine": machine,
        "budget": dataclasses.asdict(budget),
        "data": stats,
        "variants": {name: variant_options(VARIANTS[name]) for name in args.variants},
        "per_seed": per_seed,
        "summary": summary,
        "seconds": seconds,
        "command": " ".join(
            ["python", "benchmarks/bench_ablation.py", *(argv if argv is not None else sys.argv[1:])]
        ),
    }
    (args.output / "ablation.json").write_text(json.dumps(result, indent=2))
    header = (
        f"Seeds {args.seeds}; mean ± sample std over seeds; Δ columns are paired (same seed); AP in percent. "
        f"{budget.steps} steps x {budget.batch_size}; CPU capability {machine['cpu_capability']}; "
        f"total {seconds / 60:.1f} min with {args.jobs} x {args.threads} threads.\n\n"
    )
    (args.output / "ablation.md").write_text(header + table)
    chart(summary, order, args.output / "ablation.png")
    print()
    print(header + table)
    for name in args.variants:
        print(f"  {name}: {variant_options(VARIANTS[name])}")
    print(f"\nwrote {args.output / 'ablation.json'}, ablation.md, ablation.png; total {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
