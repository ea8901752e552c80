"""Demo: does the visattn layer help on occluded poses? Trains three variants on CPU in minutes.

Usage::

    make demo                                    # = python examples/demo.py
    python examples/demo.py --seeds 0 1 2        # three seeds (three times the time)
    python examples/demo.py --quick              # CI-sized smoke run (tens of seconds)

What it does, with no download and no GPU (the engine is ``examples/ablation.py``, the benchmark
``benchmarks/bench_ablation.py`` runs every variant):

1. generates the synthetic occluded-pose set (``visattn.data.make_synthetic_coco``: 6,000 train /
   600 val / 300 calibration images of 320x240, about 23% of the labelled keypoints occluded by
   objects, other people or the person's own body);
2. crops every person box once to 64x48 with ``visattn.data.TopDownCocoDataset`` and keeps the crops in
   RAM as uint8;
3. trains the small SimCC network (7 conv-BN-ReLU to stride 8, one deconv to stride 4: 16x12 keypoint
   maps, D = 192, 64 channels) three times with the same seed, data order and budget (1,100 steps x
   batch 64, Adam one-cycle with peak lr 2e-3):

   * ``plain``: SimCC without the layer;
   * ``visattn``: SimCC + the visattn layer as ``SimCCAdapter`` builds it by default (VisNet sees the
     backbone features at each keypoint, 1% of its gradient reaching the backbone, soft masks; its
     threshold calibrated on the calibration split after training; 2-block reasoner, embed 256);
   * ``oracle``: the same layer masked with the ground-truth flags in training and evaluation, the
     ceiling a perfect visibility predictor would reach;

4. evaluates them with ``visattn.metrics.PoseEvaluator`` (COCO AP overall / visible-only /
   occluded-only keypoints) and ``visattn.metrics.visibility_ranking_metrics`` and prints the table and
   what it says;
5. writes ``demo_out/metrics.json``, ``demo_out/poses.png`` and ``demo_out/attention.png``.

The synthetic figures tell left from right by colour, so mirroring changes the label of a limb: the
demo uses neither flip augmentation nor the flip test (both on in ``train.py`` for real data). The
numbers are whatever this run measures; with one seed, compare differences with the seed-to-seed
spread that ``benchmarks/bench_ablation.py`` measures (docs: "Does it help?").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from ablation import INPUT_SIZE, QUICK, VARIANTS, Budget, mean_std, prepare_data, run_variant
from visattn import COCO_KEYPOINTS
from visattn.cli import (
    NONNEGATIVE_INT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    OneLineArgumentParser,
    parse_args,
    run_cli,
)

#: The three rows of the demo: (label, benchmark variant).
ROWS = (("plain", "plain"), ("visattn", "best"), ("oracle", "ground_truth"))
_COLUMNS = (
    ("AP", "AP"),
    ("AP vis", "AP_visible"),
    ("AP occ", "AP_occluded"),
    ("vis acc", "vis_accuracy"),
    ("bal acc", "vis_balanced_accuracy"),
    ("AUC", "vis_roc_auc"),
    ("occ recall", "vis_occluded_recall"),
    ("occ prec", "vis_occluded_precision"),
    ("majority", "vis_majority_accuracy"),
)


def _table(results: dict[str, dict[str, float]]) -> str:
    width = max(len(label) for label in results) + 2
    head = "variant".ljust(width) + "".join(f"{name:>11}" for name, _ in _COLUMNS)
    lines = [head, "-" * len(head)]
    for label, metrics in results.items():
        cells = "".join(
            f"{100 * metrics[key]:11.1f}" if key in metrics else f"{'-':>11}" for _, key in _COLUMNS
        )
        lines.append(label.ljust(width) + cells)
    return "\n".join(lines)


def _reading(results: dict[str, dict[str, float]], seeds: Sequence[int]) -> list[str]:
    """What the table says, in words, from the numbers of this run."""
    out = []
    for seed in seeds:
        plain, layer, oracle = (results[f"{label} (seed {seed})"] for label, _ in ROWS)
        gain = layer["AP"] - plain["AP"]
        ceiling = oracle["AP"] - plain["AP"]
        share = f"{100 * gain / ceiling:.0f}%" if ceiling > 0 else "n/a (the oracle does not beat plain)"
        out.append(
            f"seed {seed}: the layer changes AP by {100 * gain:+.1f} (AP occluded "
            f"{100 * (layer['AP_occluded'] - plain['AP_occluded']):+.1f}) over plain SimCC; a perfect "
            "visibility "
            f"mask gives {100 * ceiling:+.1f}, so the predicted mask reaches {share} of that. VisNet ranks "
            f"occluded below visible keypoints with ROC AUC {layer['vis_roc_auc']:.2f} and finds "
            f"{100 * layer['vis_occluded_recall']:.0f}% of the occluded ones at "
            f"{100 * layer['vis_occluded_precision']:.0f}% precision (answering 'visible' everywhere would "
            f"score {100 * layer['vis_majority_accuracy']:.0f}% accuracy)."
        )
    if len(seeds) > 1:
        diffs = [results[f"visattn (seed {s})"]["AP"] - results[f"plain (seed {s})"]["AP"] for s in seeds]
        mean, std = mean_std(diffs)
        out.append(
            f"over seeds {list(seeds)}: layer - plain = {100 * mean:+.1f} ± {100 * std:.1f} AP (paired)."
        )
    else:
        out.append(
            "one seed: a difference is real only well above the seed-to-seed spread (about 0.5-1 AP here; "
            "run --seeds 0 1 2, or benchmarks/bench_ablation.py for every variant with paired differences)."
        )
    return out


def build_parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(
        prog="demo.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--output", default="demo_out", help="folder for the data, metrics and figures")
    p.add_argument(
        "--seeds", type=NONNEGATIVE_INT, nargs="+", default=[0], help="training seeds (each trains every row)"
    )
    p.add_argument("--steps", type=POSITIVE_INT, default=Budget.steps, help="training steps per variant")
    p.add_argument("--batch-size", type=POSITIVE_INT, default=Budget.batch_size)
    p.add_argument("--lr", type=POSITIVE_FLOAT, default=Budget.lr, help="one-cycle peak learning rate")
    p.add_argument("--train-images", type=POSITIVE_INT, default=6000)
    p.add_argument("--val-images", type=POSITIVE_INT, default=600)
    p.add_argument("--calib-images", type=POSITIVE_INT, default=300)
    p.add_argument("--threads", type=NONNEGATIVE_INT, default=0, help="torch threads (0: torch default)")
    p.add_argument("--quick", action="store_true", help="smoke run: 96/32/32 images, 20 steps")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    if args.quick:
        vars(args).update(QUICK)
    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    out = Path(args.output)
    budget = Budget(steps=args.steps, batch_size=args.batch_size, lr=args.lr)
    print(
        f"visattn demo: {args.train_images} train / {args.val_images} val / {args.calib_images} calibration "
        f"synthetic images, crops {INPUT_SIZE}, {budget.steps} steps x batch {budget.batch_size} per "
        f"variant, seeds {args.seeds}, {torch.get_num_threads()} threads, "
        f"CPU {torch.backends.cpu.get_cpu_capability()}"
    )
    t0 = time.perf_counter()
    data = prepare_data(
        out / "data",
        train_images=args.train_images,
        val_images=args.val_images,
        calib_images=args.calib_images,
    )
    stats = data.stats["train"]
    print(
        f"[1/3] data ready in {time.perf_counter() - t0:.0f} s: {len(data.train)} train / "
        f"{len(data.val)} val "
        f"instances; {100 * stats['occluded_share']:.0f}% of labelled train keypoints occluded (objects "
        f"{100 * stats['object_share']:.0f}%, other people {100 * stats['person_share']:.0f}%, self "
        f"{100 * stats['self_share']:.0f}%)"
    )
    results: dict[str, dict[str, float]] = {}
    shown = None
    for seed in args.seeds:
        for label, name in ROWS:
            variant = VARIANTS[name]
            print(f"[2/3] training {label} (seed {seed}): {variant.name} variant", flush=True)
            model, rows = run_variant(variant, seed, data, budget, log_every=max(1, budget.steps // 5))
            final = rows.get(f"{name}+calibrated", rows[name])  # the calibrated threshold when there is one
            results[f"{label} (seed {seed})"] = final
            print(f"      {label}: AP {100 * final['AP']:.1f} in {final['train_seconds']:.0f} s", flush=True)
            if label == "visattn" and shown is None:
                shown = model
    print(
        "[3/3] results on the synthetic val set "
        "(COCO keypoint AP and VisNet metrics over labelled keypoints, %)\n"
    )
    print(_table(results))
    print()
    for line in _reading(results, args.seeds):
        print(line)
    (out / "metrics.json").write_text(json.dumps(results, indent=2))
    from visualize import save_figures

    assert shown is not None
    show = torch.arange(min(8, len(data.val)))
    crops = data.val.images[show]
    batch = {
        "image": data.val.normalised(crops),
        "flags": data.val.flags[show],
        "keypoints": data.val.keypoints[show],
        "image_id": data.val.meta["image_id"][show],
    }
    paths = save_figures(shown, crops, batch, COCO_KEYPOINTS, out, label="SimCC + visattn")
    print(f"\nbudget: {budget.steps} steps x batch {budget.batch_size} per variant, seeds {args.seeds}")
    print(f"wrote {out / 'metrics.json'}, {', '.join(str(p) for p in paths)}")
    print(f"total wall time {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
