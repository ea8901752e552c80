"""Draw predicted skeletons with visibility and the reasoner's keypoint-to-keypoint attention.

Usage::

    python examples/visualize.py --checkpoint runs/r50_visattn/best.pt \\
        --ann-file data/coco/annotations/person_keypoints_val2017.json --image-dir data/coco/val2017 \\
        --num 8 --output runs/r50_visattn/vis

Writes two PNG files, drawn with :mod:`visattn.viz`:

- ``poses.png``: person crops with the predicted skeleton (left limbs blue, right orange, centre green).
  Filled markers: *predicted* visible, hollow: predicted occluded; the white diamonds are the ground truth
  (hollow where it is occluded) with red error lines from each prediction to its ground truth.
- ``attention.png`` (models with the visattn layer): the reasoner's attention map of one instance (last
  block, heads averaged) as a ratio to uniform attention, keypoints grouped predicted-visible |
  predicted-occluded as in the paper's Figure 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from engine import add_eval_args, eval_dataset
from visattn.cli import (
    NONNEGATIVE_INT,
    POSITIVE_INT,
    CLIError,
    OneLineArgumentParser,
    parse_args,
    run_cli,
    writable_dir,
)
from visattn.data import TopDownCollate
from visattn.inference import predict_crops
from visattn.keypoints import KeypointInfo
from visattn.models import load_model
from visattn.viz import draw_attention, draw_pose, save_figure


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = OneLineArgumentParser(prog="visualize.py", description=__doc__, formatter_class=fmt)
    add_eval_args(p)
    p.add_argument("--num", type=POSITIVE_INT, default=8, help="number of instances to draw")
    p.add_argument("--start", type=NONNEGATIVE_INT, default=0, help="index of the first instance")
    p.add_argument("--output", default="vis", help="output folder for the PNG files")
    return p


def save_figures(
    model: nn.Module, crops: torch.Tensor, batch: dict[str, torch.Tensor], info: KeypointInfo, output: Path,
    *, label: str = "",
) -> list[Path]:  # fmt: skip
    """``poses.png`` (+ ``attention.png`` with a reasoner) of uint8 ``crops (B, 3, H, W)`` and their
    normalised ``batch`` (``image``, ``flags``, ``keypoints``, ``image_id``); returns the paths."""
    from matplotlib.figure import Figure

    model.eval()
    pred = predict_crops(model, batch["image"], flags=batch["flags"])
    probs = pred.vis_probs
    cols = min(len(crops), 4)
    rows = (len(crops) + cols - 1) // cols
    fig = Figure(figsize=(2.4 * cols, 3.2 * rows))
    for i in range(len(crops)):
        ax = fig.add_subplot(rows, cols, i + 1)
        draw_pose(
            crops[i].permute(1, 2, 0).numpy(), pred.keypoints[i], info, flags=batch["flags"][i],
            vis_probs=None if probs is None else probs[i], gt_keypoints=batch["keypoints"][i],
            gt_flags=batch["flags"][i], ax=ax,
        )  # fmt: skip
        ax.set_title(f"image {int(batch['image_id'][i])}", fontsize=8)
    fig.suptitle(f"{label}: filled = predicted visible, hollow = predicted occluded, diamonds = ground truth")
    paths = [save_figure(fig, output / "poses.png")]
    if getattr(model, "reasoner", None) is not None:
        with torch.no_grad():
            out = model.reason(batch["image"][:1], batch["flags"][:1], return_attn=True)  # type: ignore[operator]
        fig = Figure(figsize=(12, 5.5))
        draw_pose(crops[0].permute(1, 2, 0).numpy(), pred.keypoints[0], info,
                  vis_probs=None if probs is None else probs[0], ax=fig.add_subplot(1, 2, 1))  # fmt: skip
        draw_attention(
            out.attn[-1][0].float().mean(0), info, visible=out.visible[0], ax=fig.add_subplot(1, 2, 2),
            title=f"{label}: reasoner attention (last block, heads averaged)",
        )  # fmt: skip
        paths.append(save_figure(fig, output / "attention.png"))
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    output = writable_dir(args.output)
    _, model = load_model(args.checkpoint)
    dataset = eval_dataset(args, model)
    if args.start >= len(dataset):
        raise CLIError(f"--start {args.start} is outside 0..{len(dataset) - 1}", "pick a smaller --start")
    items = [dataset[i] for i in range(args.start, min(len(dataset), args.start + args.num))]
    crops = torch.stack([item["image"] for item in items])  # uint8
    batch = TopDownCollate()(items)  # normalised float images
    label = Path(args.checkpoint).parent.name
    for path in save_figures(model, crops, batch, dataset.keypoint_info, output, label=label):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
