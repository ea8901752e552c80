"""Evaluate a checkpoint: COCO AP on all / visible / occluded keypoints and visibility accuracy.

Usage::

    python examples/evaluate.py --checkpoint runs/r50_visattn/best.pt \\
        --ann-file data/coco/annotations/person_keypoints_val2017.json --image-dir data/coco/val2017 \\
        --output runs/r50_visattn/val_metrics.json

    # CrowdPose (14 keypoints, AP easy/medium/hard)
    python examples/evaluate.py --checkpoint ... --keypoints crowdpose --ann-file ... --image-dir ...

    # several processes: each evaluates a shard, the evaluator gathers the results
    torchrun --nproc_per_node 4 examples/evaluate.py --checkpoint ... --ann-file ... --image-dir ...

The model is rebuilt from the config stored in the checkpoint. Ground-truth person boxes are used
(the paper's protocol); the flip test (average with the flipped-back prediction of the mirrored
crop, x logits shifted by one bin) is on by default. Writes the full metrics dict as JSON and prints a
table in the layout of the paper's Tables 2/3 (rows overall / visible / occluded).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from engine import (
    Bound,
    CLIError,
    OneLineArgumentParser,
    ShardSampler,
    add_eval_args,
    check_numbers,
    evaluate,
    format_table,
    init_distributed,
    json_default,
    run_cli,
    setup_eval,
    writable_dir,
)
from visattn.metrics import PoseEvaluator

BOUNDS = {"batch_size": Bound(int, 1), "workers": Bound(int, 0), "sigma": Bound(float, 0.0, open_low=True)}


def build_parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(
        prog="evaluate.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_eval_args(p)
    p.add_argument("--output", help="metrics JSON path (default: next to the checkpoint)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    p.add_argument("--flip-test", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--sigma", type=float, help="codec sigma (only the decode matters here)")
    p.add_argument("--name", help="row label of the printed table (default: checkpoint name)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_numbers(args, BOUNDS)
    info, device = init_distributed(args.device)
    out = Path(args.output) if args.output else Path(args.checkpoint).with_suffix(".metrics.json")
    if info.is_main:  # before the evaluation, not after it
        if out.is_dir():
            raise CLIError(f"--output {out} is a folder", "pass a file path, e.g. --output metrics.json")
        writable_dir(out.parent, "--output folder")
    setup = setup_eval(args, device, "evaluation", sigma=args.sigma)
    ann, dataset = setup.ann_file, setup.dataset
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        sampler=ShardSampler(len(dataset), info.rank, info.world_size),
        num_workers=args.workers,
    )
    evaluator = PoseEvaluator(ann, keypoint_info=args.keypoints, crowdpose=args.keypoints == "crowdpose")
    metrics = evaluate(
        setup.model, loader, evaluator, setup.codec, setup.keypoint_info, device,
        amp=args.amp, flip_test=args.flip_test, progress=info.is_main and args.progress,
    )  # fmt: skip
    if info.is_main:
        payload = {
            "checkpoint": str(args.checkpoint),
            "ann_file": str(ann),
            "flip_test": args.flip_test,
            "model_config": setup.state["model_config"],
            "metrics": metrics,
        }
        out.write_text(json.dumps(payload, indent=2, default=json_default))
        name = args.name or Path(args.checkpoint).parent.name or "model"
        print(format_table({name: metrics}))
        print(f"metrics written to {out}")
    if info.enabled:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    run_cli(main, sys.argv[1:])
