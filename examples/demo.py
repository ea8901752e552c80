"""Demo: does the visattn layer help on occluded poses? Trains both variants on CPU in minutes.

Usage::

    make demo                       # = python examples/demo.py
    python examples/demo.py --seeds 0 1          # two seeds (about twice the time)
    python examples/demo.py --quick              # CI-sized smoke run (tens of seconds)

What it does, with no download and no GPU:

1. generates a synthetic COCO-format set of occluded stick figures (``visattn.data.make_synthetic_coco``:
   6,000 train / 600 val images of 320x240, about a quarter of the labelled keypoints occluded);
2. crops every ground-truth person box once to 64x48 with ``visattn.data.TopDownCocoDataset`` and keeps
   the crops in RAM as uint8 (CPU time goes to training, not JPEG decoding);
3. trains the small SimCC network (7 conv-BN-ReLU to stride 8, one deconv to stride 4: 16x12 keypoint
   maps, D = 192) twice with the same seed, data order and budget: plain SimCC, and SimCC + the visattn
   layer (VisNet + visibility masking + a 2-block reasoner, embed 256) trained with
   ``L = L_pose + L_vis``; Adam with a one-cycle schedule (peak lr 2e-3), batch 64;
4. evaluates both with ``visattn.metrics.PoseEvaluator`` (COCO AP overall / visible-only / occluded-only
   keypoints, visibility accuracy) and prints the comparison table;
5. writes ``demo_out/poses.png`` and ``demo_out/attention.png``.

The synthetic figures tell left from right by colour, so mirroring changes the label of a limb: the
demo uses neither flip augmentation nor the flip test (both on in ``train.py`` for real data).
Numbers are whatever this run measures; the seed-to-seed spread is about 0.005 AP, so compare
differences against it (``--seeds 0 1``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from engine import OneLineArgumentParser, format_table, json_default, person_boxes, run_cli
from models import ModelConfig, build_model
from visattn import COCO_KEYPOINTS
from visattn.codecs import SimCCCodec
from visattn.data import TopDownCocoDataset, crop_to_image, make_synthetic_coco
from visattn.losses import SimCCKLLoss, VisibilityAwareLoss
from visattn.metrics import PoseEvaluator

INPUT_SIZE = (64, 48)
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
META_KEYS = ("center", "scale", "rotation", "image_id", "ann_id", "bbox_score", "area")


@dataclass
class Crops:
    """Every instance of a split cropped once: uint8 images and float targets, all in RAM."""

    images: torch.Tensor  # (N, 3, H, W) uint8
    keypoints: torch.Tensor  # (N, K, 2) crop px
    flags: torch.Tensor  # (N, K) COCO flags 0/1/2
    meta: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return self.images.shape[0]

    def normalised(self, index: torch.Tensor) -> torch.Tensor:
        """Float ImageNet-normalised images ``(B, 3, H, W)`` of the given rows."""
        return (self.images[index].float() / 255 - MEAN) / STD


def crop_split(ann: Path, image_dir: Path, workers: int) -> Crops:
    """Run the library's dataset once (no augmentation) and keep uint8 crops."""
    dataset = TopDownCocoDataset(ann, image_dir, input_size=INPUT_SIZE, train=False)
    loader = DataLoader(dataset, batch_size=256, num_workers=workers)
    images, keypoints, flags, meta = [], [], [], {k: [] for k in META_KEYS}
    for batch in loader:
        pixels = (batch["image"] * STD + MEAN).clamp(0, 1) * 255
        images.append(pixels.round().to(torch.uint8))
        keypoints.append(batch["keypoints"].float())
        flags.append(batch["flags"])
        for key in META_KEYS:
            meta[key].append(batch[key])
    return Crops(
        torch.cat(images), torch.cat(keypoints), torch.cat(flags), {k: torch.cat(v) for k, v in meta.items()}
    )


def demo_model(reasoner: bool) -> nn.Module:
    """The small SimCC network, with or without the visattn layer."""
    config = ModelConfig(
        arch="tiny",
        head="simcc",
        reasoner=reasoner,
        input_size=INPUT_SIZE,
        reasoner_kwargs={"embed_dim": 256, "depth": 2} if reasoner else {},
    )
    return build_model(config)


def train(
    model: nn.Module, data: Crops, codec: SimCCCodec, *, steps: int, batch: int, lr: float, seed: int
) -> float:
    """Adam + one-cycle for ``steps`` steps; returns the wall time in seconds."""
    criterion = VisibilityAwareLoss(SimCCKLLoss(), vis_weight=1.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)  # same data order for both variants
    per_epoch = len(data) // batch
    order = torch.randperm(len(data), generator=generator)
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        if step % per_epoch == 0 and step:
            order = torch.randperm(len(data), generator=generator)
        index = order[(step % per_epoch) * batch : (step % per_epoch + 1) * batch]
        flags = data.flags[index]
        targets = codec.encode(data.keypoints[index], flags)
        out = model(data.normalised(index), flags)
        losses = criterion(
            (out.x_logits, out.y_logits),
            (targets.x_labels, targets.y_labels),
            targets.weights,
            flags,
            out.vis_logits,
        )
        optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == steps - 1:
            print(
                f"    step {step + 1:5d}/{steps}  loss {losses.total.item():.4f}  "
                f"(pose {losses.pose.item():.4f}, vis {losses.vis.item():.4f})",
                flush=True,
            )
    return time.perf_counter() - start


@torch.no_grad()
def evaluate(model: nn.Module, data: Crops, codec: SimCCCodec, evaluator: PoseEvaluator) -> dict[str, float]:
    """Predict every val crop (no flip test, see the module docstring) and compute the metrics."""
    model.eval()
    evaluator.reset()
    for chunk in torch.arange(len(data)).split(256):
        out = model(data.normalised(chunk))
        keypoints, scores = codec.decode(out.x_logits, out.y_logits)
        meta = data.meta
        image_kp = crop_to_image(
            keypoints, meta["center"][chunk], meta["scale"][chunk], meta["rotation"][chunk], INPUT_SIZE
        )
        gt = crop_to_image(
            data.keypoints[chunk],
            meta["center"][chunk],
            meta["scale"][chunk],
            meta["rotation"][chunk],
            INPUT_SIZE,
        )
        evaluator.update(
            meta["image_id"][chunk], image_kp, scores, bbox_scores=meta["bbox_score"][chunk],
            areas=meta["area"][chunk], instance_ids=meta["ann_id"][chunk],
            boxes=person_boxes(meta_of(meta, chunk)),
            vis_logits=out.vis_logits, flags=data.flags[chunk], gt_keypoints=gt,
        )  # fmt: skip
    return evaluator.compute()


def meta_of(meta: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """The meta tensors of some rows."""
    return {k: v[rows] for k, v in meta.items()}


def build_parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(
        prog="demo.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--output", default="demo_out", help="folder for the data, metrics and figures")
    p.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="training seeds (each trains both variants)"
    )
    p.add_argument("--steps", type=int, default=1100, help="training steps per variant")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3, help="one-cycle peak learning rate")
    p.add_argument("--train-images", type=int, default=6000)
    p.add_argument("--val-images", type=int, default=600)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--quick", action="store_true", help="smoke run: 96/32 images, 30 steps")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.train_images, args.val_images, args.steps, args.batch_size = 96, 32, 30, 32
    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    out = Path(args.output)
    print(
        f"visattn demo: {args.train_images} train / {args.val_images} val synthetic images, "
        f"crops {INPUT_SIZE}, "
        f"{args.steps} steps x batch {args.batch_size} per variant, seeds {args.seeds}, "
        f"{torch.get_num_threads()} threads"
    )
    data_dir = out / f"data_{args.train_images}_{args.val_images}"
    t0 = time.perf_counter()
    train_ann = make_synthetic_coco(data_dir / "train", args.train_images, seed=1, num_workers=2)
    val_ann = make_synthetic_coco(data_dir / "val", args.val_images, seed=2, split_name="val", num_workers=2)
    print(f"[1/4] generated data in {data_dir} ({time.perf_counter() - t0:.0f} s)")
    t0 = time.perf_counter()
    train_set = crop_split(train_ann, data_dir / "train" / "images", workers=2)
    val_set = crop_split(val_ann, data_dir / "val" / "images", workers=2)
    occluded = (train_set.flags == 1).sum() / (train_set.flags > 0).sum()
    print(
        f"[2/4] cropped {len(train_set)} train / {len(val_set)} val instances to uint8 in RAM "
        f"({time.perf_counter() - t0:.0f} s; {100 * occluded:.0f}% of labelled train keypoints occluded)"
    )
    codec = SimCCCodec(INPUT_SIZE, split_ratio=2.0, sigma=2.0)
    evaluator = PoseEvaluator(val_ann, keypoint_info="coco")
    results: dict[str, dict[str, float]] = {}
    models: dict[str, nn.Module] = {}
    for seed in args.seeds:
        for name, reasoner in (("SimCC", False), ("SimCC + visattn", True)):
            label = f"{name} (seed {seed})"
            torch.manual_seed(seed)
            model = demo_model(reasoner)
            print(f"[3/4] training {label}: {sum(p.numel() for p in model.parameters()) / 1e3:.0f}k params")
            seconds = train(
                model, train_set, codec, steps=args.steps, batch=args.batch_size, lr=args.lr, seed=seed
            )
            metrics = evaluate(model, val_set, codec, evaluator)
            metrics["train_seconds"] = seconds
            metrics["steps_per_s"] = args.steps / seconds
            results[label] = metrics
            models[name] = model
            print(
                f"      {label}: AP {metrics['AP']:.3f} in {seconds:.0f} s "
                f"({args.steps / seconds:.1f} steps/s)"
            )
    print("[4/4] results (COCO keypoint AP on the synthetic val set, percent)\n")
    print(format_table(results))
    if len(args.seeds) > 1:
        for name in ("SimCC", "SimCC + visattn"):
            aps = torch.tensor([results[f"{name} (seed {s})"]["AP"] for s in args.seeds])
            print(f"{name}: mean AP {100 * aps.mean():.1f} +- {100 * aps.std():.1f} over seeds {args.seeds}")
    (out / "metrics.json").write_text(json.dumps(results, indent=2, default=json_default))
    from visualize import save_figures

    show = torch.arange(min(8, len(val_set)))
    batch = {
        "image": val_set.normalised(show),
        "flags": val_set.flags[show],
        "image_id": val_set.meta["image_id"][show],
    }
    paths = save_figures(
        models["SimCC + visattn"], batch, codec, COCO_KEYPOINTS, out, label="SimCC + visattn"
    )
    print(f"\nbudget: {args.steps} steps x batch {args.batch_size} per variant, seeds {args.seeds}")
    print(f"wrote {out / 'metrics.json'}, {', '.join(str(p) for p in paths)}")
    print(f"total wall time {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
