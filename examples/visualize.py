"""Draw predicted skeletons with visibility and the reasoner's keypoint-to-keypoint attention.

Usage::

    python examples/visualize.py --checkpoint runs/r50_visattn/best.pt \\
        --ann-file data/coco/annotations/person_keypoints_val2017.json --image-dir data/coco/val2017 \\
        --num 8 --output runs/r50_visattn/vis

Writes (PNG, matplotlib Agg backend):

- ``poses.png``: person crops with the predicted skeleton. Marker fill = *predicted* visibility
  (filled: visible, hollow: occluded); marker edge colour = *ground-truth* flag (green v = 2 visible,
  orange v = 1 occluded, grey v = 0 unlabelled), so every disagreement is visible at a glance.
- ``attention.png`` (models with the visattn layer): the reasoner's attention map of one instance
  (last block, heads averaged; ``reasoner(tokens, return_attn=True)``), keypoints regrouped as
  predicted-visible | predicted-occluded as in the paper's Figure 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from torch import nn

from engine import (
    Bound,
    CLIError,
    OneLineArgumentParser,
    add_eval_args,
    check_numbers,
    predict,
    run_cli,
    setup_eval,
    writable_dir,
)
from visattn import KeypointInfo
from visattn.codecs import HeatmapCodec, SimCCCodec
from visattn.data import IMAGENET_MEAN, IMAGENET_STD

VISIBLE_COLOUR = "#2ca02c"
OCCLUDED_COLOUR = "#ff7f0e"
UNLABELLED_COLOUR = "#7f7f7f"


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` ImageNet-normalised float tensor -> ``(H, W, 3)`` uint8 array."""
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)  # float64, as the dataset's constants
    array = image.detach().float().cpu().permute(1, 2, 0).numpy() * std + mean
    return (np.clip(array, 0, 1) * 255).round().astype(np.uint8)


def draw_pose(
    ax: Axes,
    image: np.ndarray,
    keypoints: np.ndarray,
    info: KeypointInfo,
    *,
    vis_prob: np.ndarray | None = None,
    gt_flags: np.ndarray | None = None,
    threshold: float = 0.5,
    title: str = "",
) -> None:
    """Draw one crop with its predicted skeleton.

    Args:
        ax: matplotlib axes.
        image: ``(H, W, 3)`` uint8 crop.
        keypoints: ``(K, 2)`` predicted keypoints in crop pixels.
        info: keypoint metadata (skeleton).
        vis_prob: ``(K,)`` predicted visibility probabilities (None: drawn all filled).
        gt_flags: ``(K,)`` ground-truth COCO flags 0/1/2 (edge colour), None: edge white.
        threshold: visibility threshold.
        title: axes title.
    """
    ax.imshow(image)
    for a, b in info.skeleton:
        ax.plot(keypoints[[a, b], 0], keypoints[[a, b], 1], "-", color="#1f77b4", lw=1.2, alpha=0.8)
    visible = np.ones(len(keypoints), bool) if vis_prob is None else vis_prob >= threshold
    edge_of = {0: UNLABELLED_COLOUR, 1: OCCLUDED_COLOUR, 2: VISIBLE_COLOUR}
    for k, (x, y) in enumerate(keypoints):
        edge = "white" if gt_flags is None else edge_of[int(gt_flags[k])]
        face = edge if visible[k] else "none"
        ax.scatter([x], [y], s=28, facecolors=face, edgecolors=edge, linewidths=1.5, zorder=3)
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def plot_attention(
    ax: Axes, attn: np.ndarray, visible: np.ndarray, info: KeypointInfo, *, title: str = ""
) -> None:
    """Keypoint-to-keypoint attention ``(K, K)`` (rows: queries) grouped visible | occluded.

    Args:
        ax: matplotlib axes.
        attn: ``(K, K)`` attention weights (rows sum to 1).
        visible: ``(K,)`` bool visibility used to group the keypoints.
        info: keypoint names.
        title: axes title.
    """
    order = np.concatenate([np.flatnonzero(visible), np.flatnonzero(~visible)])
    image = ax.imshow(attn[np.ix_(order, order)], cmap="viridis", vmin=0.0)
    n_vis = int(visible.sum())
    if 0 < n_vis < len(order):
        for line in (ax.axhline, ax.axvline):
            line(n_vis - 0.5, color="white", lw=1.5)
    names = [info.names[i] for i in order]
    ax.set_xticks(range(len(order)), names, rotation=90, fontsize=6)
    ax.set_yticks(range(len(order)), names, fontsize=6)
    for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
        for label, idx in zip(labels, order):
            label.set_color(VISIBLE_COLOUR if visible[idx] else OCCLUDED_COLOUR)
    ax.set_xlabel("key (visible | occluded)", fontsize=7)
    ax.set_ylabel("query", fontsize=7)
    ax.set_title(title, fontsize=8)
    plt.colorbar(image, ax=ax, fraction=0.046, pad=0.04)


@torch.no_grad()
def reasoner_attention(model: nn.Module, images: torch.Tensor, flags: torch.Tensor | None):  # type: ignore[no-untyped-def]
    """The reasoner's output with ``return_attn=True`` for a batch, or None without a reasoner."""
    if getattr(model, "reasoner", None) is None:
        return None
    return model.reason(images, flags, return_attn=True)  # type: ignore[operator]


def save_figures(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    codec: SimCCCodec | HeatmapCodec,
    info: KeypointInfo,
    output: Path,
    *,
    label: str = "",
    attention_index: int = 0,
) -> list[Path]:
    """Write ``poses.png`` (+ ``attention.png`` with a reasoner) for one batch; returns the paths."""
    model.eval()
    images, flags = batch["image"], batch["flags"]
    pred = predict(model, images, flags, codec, info, flip_test=False)
    vis_prob = None if pred.vis_logits is None else torch.sigmoid(pred.vis_logits).numpy()
    n = images.shape[0]
    cols = min(n, 8)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 2.3 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        draw_pose(
            ax, to_uint8(images[i]), pred.keypoints[i].numpy(), info,
            vis_prob=None if vis_prob is None else vis_prob[i], gt_flags=batch["flags"][i].numpy(),
            title=f"img {int(batch['image_id'][i])}",
        )  # fmt: skip
    fig.suptitle(
        f"{label} fill: predicted visible / hollow: predicted occluded; "
        "edge: GT green v=2, orange v=1, grey v=0",
        fontsize=7,
    )
    output.mkdir(parents=True, exist_ok=True)
    paths = [output / "poses.png"]
    fig.savefig(paths[0], dpi=130, bbox_inches="tight")
    plt.close(fig)
    out = reasoner_attention(
        model, images[attention_index : attention_index + 1], flags[attention_index : attention_index + 1]
    )
    if out is not None and out.attn:
        attn = out.attn[-1][0].float().mean(0).numpy()  # (K, K), heads averaged
        fig, (ax_img, ax_att) = plt.subplots(1, 2, figsize=(9, 4.2), gridspec_kw={"width_ratios": [1, 2.2]})
        draw_pose(
            ax_img, to_uint8(images[attention_index]), pred.keypoints[attention_index].numpy(), info,
            vis_prob=None if vis_prob is None else vis_prob[attention_index],
            gt_flags=batch["flags"][attention_index].numpy(), title="instance",
        )  # fmt: skip
        plot_attention(
            ax_att, attn, out.visible[0].numpy(), info,
            title=f"{label} reasoner attention (last block, heads averaged)",
        )  # fmt: skip
        paths.append(output / "attention.png")
        fig.savefig(paths[-1], dpi=130, bbox_inches="tight")
        plt.close(fig)
    return paths


def build_parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(
        prog="visualize.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_eval_args(p)
    p.add_argument("--num", type=int, default=8, help="number of instances to draw")
    p.add_argument("--start", type=int, default=0, help="index of the first instance")
    p.add_argument("--output", default="vis", help="output folder for the PNG files")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_numbers(args, {"num": Bound(int, 1), "start": Bound(int, 0)})
    output = writable_dir(args.output)
    setup = setup_eval(args, torch.device("cpu"), "visualisation")
    model, codec, info, dataset = setup.model, setup.codec, setup.keypoint_info, setup.dataset
    if args.start >= len(dataset):
        raise CLIError(
            f"--start {args.start} / --num {args.num} outside 0..{len(dataset) - 1}", "pick a range"
        )
    items = [dataset[i] for i in range(args.start, min(len(dataset), args.start + args.num))]
    batch = {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in ("image", "flags", "image_id")}
    paths = save_figures(model, batch, codec, info, output, label=Path(args.checkpoint).parent.name)
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
