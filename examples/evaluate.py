"""Evaluate a checkpoint: COCO AP on all / visible / occluded keypoints and visibility accuracy.

Usage::

    python examples/evaluate.py --checkpoint runs/r50_visattn/best.pt \\
        --ann-file data/coco/annotations/person_keypoints_val2017.json --image-dir data/coco/val2017 \\
        --output runs/r50_visattn/val_metrics.json

    # CrowdPose (14 keypoints, AP easy/medium/hard)
    python examples/evaluate.py --checkpoint ... --keypoints crowdpose --ann-file ... --image-dir ...

    # several processes: each evaluates a shard, the evaluator gathers the results
    torchrun --nproc_per_node 4 examples/evaluate.py --checkpoint ... --ann-file ... --image-dir ...

    # detection boxes (the paper's COCO numbers use a person detector's boxes), OKS-NMS at 0.9
    python examples/evaluate.py --checkpoint ... --det-file dets.json --nms-threshold 0.9

The model is rebuilt from the config stored in the checkpoint. Ground-truth person boxes are used by
default (the paper's ablation protocol); the flip test (average with the flipped-back prediction of the
mirrored crop) is on by default. Writes the full metrics dict as JSON and prints a
table in the layout of the paper's Tables 2/3 (rows overall / visible / occluded).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch.distributed as dist
from torch.utils.data import DataLoader

from engine import add_eval_args, amp_dtype, eval_dataset, init_distributed
from visattn.cli import (
    NONNEGATIVE_INT,
    POSITIVE_INT,
    PROBABILITY,
    CLIError,
    OneLineArgumentParser,
    parse_args,
    run_cli,
    writable_dir,
)
from visattn.data import ShardSampler, TopDownCollate
from visattn.inference import evaluate
from visattn.metrics import PoseEvaluator, format_table
from visattn.models import load_model


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = OneLineArgumentParser(prog="evaluate.py", description=__doc__, formatter_class=fmt)
    p.add_argument("--config", help=argparse.SUPPRESS)
    add_eval_args(p)
    p.add_argument("--det-file", help="person detections (COCO results JSON) instead of ground-truth boxes")
    p.add_argument("--det-score-threshold", type=PROBABILITY, default=0.0, help="minimum detection score")
    p.add_argument("--nms-threshold", type=PROBABILITY, help="OKS-NMS threshold of the results (e.g. 0.9)")
    p.add_argument("--output", help="metrics JSON path (default: next to the checkpoint)")
    p.add_argument("--results", help="also write the COCO keypoint results JSON here")
    p.add_argument("--batch-size", type=POSITIVE_INT, default=64)
    p.add_argument("--workers", type=NONNEGATIVE_INT, default=2)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    p.add_argument("--flip-test", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--name", help="row label of the printed table (default: checkpoint folder)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    info, device = init_distributed(args.device)
    out = Path(args.output) if args.output else Path(args.checkpoint).with_suffix(".metrics.json")
    if info.is_main:  # before the evaluation, not after it
        if out.is_dir():
            raise CLIError(f"--output {out} is a folder", "pass a file path, e.g. --output metrics.json")
        writable_dir(out.parent, "--output folder")
    if args.det_file is not None and not Path(args.det_file).is_file():
        raise CLIError(f"--det-file {args.det_file} does not exist", "pass a COCO detection results JSON")
    state, model = load_model(args.checkpoint)
    model = model.to(device)
    dataset = eval_dataset(args, model, det_file=args.det_file, det_score_threshold=args.det_score_threshold)
    sampler = ShardSampler(len(dataset), info.rank, info.world_size)
    loader = DataLoader(
        dataset, args.batch_size, sampler=sampler, num_workers=args.workers, collate_fn=TopDownCollate()
    )
    crowd = args.keypoints == "crowdpose"
    threshold = 0.5 if model.reasoner is None else model.reasoner.threshold
    evaluator = PoseEvaluator(
        args.ann_file, keypoint_info=args.keypoints, crowdpose=crowd, vis_threshold=threshold,
        nms_threshold=args.nms_threshold,
    )  # fmt: skip
    flip_index = dataset.keypoint_info.flip_index if args.flip_test else None
    progress = info.is_main and args.progress and sys.stderr.isatty()
    metrics = evaluate(
        model, loader, evaluator, flip_index=flip_index, amp_dtype=amp_dtype(args.amp), progress=progress
    )
    if args.results:
        evaluator.dump(args.results)
    if info.is_main:
        payload = {
            "checkpoint": str(args.checkpoint), "ann_file": str(args.ann_file), "det_file": args.det_file,
            "flip_test": args.flip_test, "model_config": state["model_config"], "metrics": metrics,
        }  # fmt: skip
        out.write_text(json.dumps(payload, indent=2))
        print(format_table({args.name or Path(args.checkpoint).parent.name or "model": metrics}))
        print(f"metrics written to {out}")
    if info.enabled:
        dist.barrier()  # every rank done with its collectives before the group goes away
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
