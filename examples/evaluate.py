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
    OneLineArgumentParser,
    ShardSampler,
    build_codec,
    build_dataset,
    check_data_paths,
    check_keypoints,
    evaluate,
    format_table,
    init_distributed,
    json_default,
    keypoint_info,
    load_checkpoint,
    load_model,
    run_cli,
)
from visattn.metrics import PoseEvaluator


def build_parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(
        prog="evaluate.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", required=True, help="last.pt / best.pt written by train.py")
    p.add_argument("--ann-file", required=True, help="COCO keypoint annotation JSON of the split")
    p.add_argument("--image-dir", required=True, help="image folder of the split")
    p.add_argument("--keypoints", default="coco", choices=("coco", "crowdpose"))
    p.add_argument("--output", help="metrics JSON path (default: next to the checkpoint)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    p.add_argument("--flip-test", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--sigma", type=float, help="codec sigma (only the decode matters here)")
    p.add_argument("--name", help="row label of the printed table (default: checkpoint name)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    info, device = init_distributed(args.device)
    ann, images = check_data_paths(args.ann_file, args.image_dir, "evaluation")
    kp_info = keypoint_info(args.keypoints)
    state = load_checkpoint(args.checkpoint)
    model, config = load_model(state, device)
    check_keypoints(config, kp_info)
    codec = build_codec(config, args.sigma)
    dataset = build_dataset(ann, images, config, codec, keypoints=args.keypoints, train=False)
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        sampler=ShardSampler(len(dataset), info.rank, info.world_size),
        num_workers=args.workers,
    )
    evaluator = PoseEvaluator(ann, keypoint_info=args.keypoints, crowdpose=args.keypoints == "crowdpose")
    metrics = evaluate(
        model, loader, evaluator, codec, kp_info, device, amp=args.amp, flip_test=args.flip_test,
        progress=info.is_main,
    )  # fmt: skip
    if info.is_main:
        out = Path(args.output) if args.output else Path(args.checkpoint).with_suffix(".metrics.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "checkpoint": str(args.checkpoint),
            "ann_file": str(ann),
            "flip_test": args.flip_test,
            "model_config": state["model_config"],
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
