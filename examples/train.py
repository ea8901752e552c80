"""Train a top-down pose model with (or without) the visattn layer.

Usage::

    # COCO layout: <root>/annotations/person_keypoints_{train,val}2017.json + <root>/{train,val}2017/
    python examples/train.py --data-root data/coco --arch resnet50 --output runs/r50_visattn

    # the paper's settings (Tables 1-6) from a config file, CLI flags override it
    python examples/train.py --config examples/configs/coco_r50_simcc_visattn.json --data-root data/coco

    # a generated dataset, no download (small CPU net)
    python examples/train.py --synthetic 512 --arch tiny --input-size 64 48 --sigma 2 --epochs 4

    # ablations: baseline / ground-truth mask / no masking / visible-only pose loss
    python examples/train.py ... --no-reasoner
    python examples/train.py ... --mask-source ground_truth
    python examples/train.py ... --mask-source none
    python examples/train.py ... --no-reasoner --pose-keypoints visible

    # the authors' released code exactly: post-norm blocks, one shared Q/K/V, cross-entropy visibility loss
    python examples/train.py --config examples/configs/coco_r50_simcc_authors_code.json --data-root data/coco
    python examples/train.py ... --post-norm --shared-qkv --vis-loss ce      # the same as flags

    # several GPUs or CPU processes (gloo on CPU, nccl on CUDA); --batch-size is per process
    torchrun --nproc_per_node 8 examples/train.py --config ... --data-root data/coco

    # continue after an interruption (restores model, optimiser, schedule, scaler, RNG, epoch and step)
    python examples/train.py ... --output runs/r50_visattn --resume auto

Optimiser (the authors' recipe): AdamW (weight decay 0.01), lr 1e-3 for backbone, heads and VisNet,
lr 1e-4 for the reasoner with a linear warm-up (1000 iterations), then a per-iteration cosine decay
(``--schedule cosine``) or the paper text's step decay (``--schedule step --milestones 90 120``).

Outputs in ``--output``: ``last.pt`` (every epoch and every ``--save-every-steps``; written atomically),
``best.pt`` (highest val AP), ``metrics.jsonl`` / ``metrics.csv`` and TensorBoard events (if installed).
Checkpoints carry the model config (including ``--embed-dim/--depth/--num-heads``, ``--post-norm``,
``--shared-qkv``, ``--masking``, ``--mask-source``): ``evaluate.py``, ``visualize.py`` and
``export_onnx.py --checkpoint`` rebuild the model from them. ``--vis-loss`` only affects training and is
stored with the other flags under ``args``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from engine import (
    Bound,
    CLIError,
    DistInfo,
    OneLineArgumentParser,
    ShardSampler,
    autocast,
    build_codec,
    build_dataset,
    check_data_paths,
    check_numbers,
    evaluate,
    format_table,
    init_distributed,
    json_default,
    keypoint_info,
    load_checkpoint,
    load_json_config,
    plain,
    rng_state,
    run_cli,
    save_checkpoint,
    seed_everything,
    seed_worker,
    set_rng_state,
    writable_dir,
)
from models import ARCHS, HEADS, NORMS, ModelConfig, build_model
from visattn.data import AugmentConfig, make_synthetic_coco
from visattn.losses import (
    HeatmapMSELoss,
    SimCCKLLoss,
    VisibilityAwareLoss,
    VisibilityBCELoss,
    VisibilityCELoss,
    VisibilityFocalLoss,
)
from visattn.metrics import PoseEvaluator
from visattn.reasoner import MASK_MODES, MASK_SOURCES, MASKINGS

VISNET_EVIDENCE = ("features", "token")
VIS_LOSSES = ("bce", "balanced", "focal", "ce")
WARMUP_MAX_FRACTION_INV = 10  # the reasoner warm-up is capped at total_iters // 10
REASONER_ONLY = {"post_norm": "--post-norm", "shared_qkv": "--shared-qkv"}

#: Type and range of every numeric flag (command line and --config alike).
BOUNDS: dict[str, Bound] = {
    "synthetic": Bound(int, 1),
    "synthetic_val": Bound(int, 1),
    "workers": Bound(int, 0),
    "input_size": Bound(int, 1),
    "split_ratio": Bound(float, 0.0, open_low=True),
    "sigma": Bound(float, 0.0, open_low=True),
    "gt_prob": Bound(float, 0.0, 1.0),
    "visnet_context": Bound(int, 0),
    "visnet_grad_scale": Bound(float, 0.0, 1.0),
    "embed_dim": Bound(int, 1),
    "depth": Bound(int, 1),
    "num_heads": Bound(int, 1),
    "vis_weight": Bound(float, 0.0),
    "epochs": Bound(int, 1),
    "batch_size": Bound(int, 1),
    "lr": Bound(float, 0.0, open_low=True),
    "reasoner_lr": Bound(float, 0.0),
    "weight_decay": Bound(float, 0.0),
    "warmup_iters": Bound(int, 0),
    "milestones": Bound(int, 0),
    "gamma": Bound(float, 0.0, open_low=True),
    "min_lr_ratio": Bound(float, 0.0, 1.0),
    "grad_clip": Bound(float, 0.0),
    "max_steps_per_epoch": Bound(int, 0),
    "save_every_steps": Bound(int, 0),
    "seed": Bound(int, 0),
    "val_every": Bound(int, 0),
    "log_every": Bound(int, 1),
}
#: Flags that shape the learning-rate schedule: on resume the schedule is rebuilt from their current values.
SCHEDULE_FLAGS = (
    "epochs", "schedule", "milestones", "gamma", "warmup_iters", "lr", "reasoner_lr", "min_lr_ratio",
    "weight_decay",
)  # fmt: skip
#: Flags that fix where a resumed run stands in the data (step x batch): a change is refused on resume.
POSITION_FLAGS = ("batch_size", "max_steps_per_epoch", "seed", "synthetic", "synthetic_val")


def build_parser() -> argparse.ArgumentParser:
    """All flags; ``--config FILE`` (JSON ``{dest: value}``) sets defaults that the CLI overrides."""
    p = OneLineArgumentParser(
        prog="train.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", help="JSON file of flag values (examples/configs/); CLI flags override it")
    d = p.add_argument_group("data")
    d.add_argument("--data-root", help="COCO-style root (see --train-ann / --train-images)")
    d.add_argument(
        "--train-ann", default="annotations/person_keypoints_train2017.json", help="relative to root"
    )
    d.add_argument("--train-images", default="train2017", help="image dir, relative to --data-root")
    d.add_argument("--val-ann", default="annotations/person_keypoints_val2017.json", help="relative to root")
    d.add_argument("--val-images", default="val2017", help="image dir, relative to --data-root")
    d.add_argument("--synthetic", type=int, metavar="N", help="generate N synthetic train images instead")
    d.add_argument("--synthetic-val", type=int, metavar="M", help="synthetic val images (default N // 8)")
    d.add_argument("--keypoints", default="coco", choices=("coco", "crowdpose"), help="keypoint set")
    d.add_argument(
        "--augment", action=argparse.BooleanOptionalAction, default=True, help="train augmentation"
    )
    d.add_argument("--flip-prob", type=float, default=0.5, help="horizontal flip probability")
    d.add_argument("--scale-factor", type=float, default=0.3, help="random scale (0.3 R50, 0.35 HRNet)")
    d.add_argument("--rotation-factor", type=float, default=40.0, help="rotation degrees (40 R50, 45 HRNet)")
    d.add_argument("--rotation-prob", type=float, default=0.6, help="probability of rotating")
    d.add_argument("--half-body-prob", type=float, default=0.0, help="half-body crops (0.3 for HRNet)")
    d.add_argument("--workers", type=int, default=2, help="DataLoader workers per process")
    m = p.add_argument_group("model")
    m.add_argument("--arch", default="resnet50", choices=ARCHS)
    m.add_argument("--head", default="simcc", choices=HEADS, help="coordinate classification or heatmaps")
    m.add_argument("--input-size", type=int, nargs=2, default=(256, 192), metavar=("H", "W"))
    m.add_argument("--split-ratio", type=float, default=2.0, help="SimCC bins per pixel")
    m.add_argument("--sigma", type=float, help="target sigma (SimCC bins: 6 R50 / 4 HRNet; heatmap px: 2)")
    m.add_argument("--norm", default="batch", choices=NORMS, help="trunk normalisation (group: batch-free)")
    m.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under DDP (CUDA only)")
    m.add_argument("--pretrained", help="local ImageNet weights file for the trunk")
    m.add_argument(
        "--hub-pretrained", action="store_true", help="download ImageNet weights (torchvision/timm)"
    )
    r = p.add_argument_group("visattn layer (paper Tables 5/6 ablations)")
    r.add_argument("--reasoner", action=argparse.BooleanOptionalAction, default=True, help="insert the layer")
    r.add_argument("--mask-source", default="predicted", choices=MASK_SOURCES, help="which visibility masks")
    r.add_argument("--masking", default="features", choices=MASKINGS, help="how occluded tokens are masked")
    r.add_argument(
        "--visnet-evidence", default="features", choices=VISNET_EVIDENCE,
        help="what VisNet sees: the backbone features pooled at each keypoint too (default; SimCC head), or "
        "the keypoint token alone (the paper)",
    )  # fmt: skip
    r.add_argument(
        "--visnet-context", type=int, default=0, help="self-attention blocks over keypoints inside VisNet"
    )
    r.add_argument(
        "--visnet-grad-scale", type=float, default=0.01,
        help="share of the visibility gradient VisNet passes back to the backbone (0: detached, the paper)",
    )  # fmt: skip
    r.add_argument(
        "--mask-mode", default="soft", choices=MASK_MODES,
        help="soft: mask = s + (1 - s) p(visible) (default); hard: 1 / s at the threshold (the paper)",
    )  # fmt: skip
    r.add_argument("--gt-prob", type=float, default=0.5, help="P(ground truth) per sample with 'mixed'")
    r.add_argument("--embed-dim", type=int, default=512, help="reasoner width E")
    r.add_argument("--depth", type=int, default=3, help="reasoner blocks")
    r.add_argument("--num-heads", type=int, default=2, help="attention heads (must divide --embed-dim)")
    r.add_argument(
        "--post-norm",
        action="store_true",
        help="authors' code: post-norm blocks LN(x + f(x)) (norm_first=False)",
    )
    r.add_argument(
        "--shared-qkv", action="store_true", help="authors' code: one Q/K/V matrix shared by all heads"
    )
    r.add_argument(
        "--vis-loss", default="bce", choices=VIS_LOSSES,
        help="visibility loss: per-keypoint BCE (paper text), class-balanced BCE, focal, or ce (authors' "
        "code: VisibilityCELoss)",
    )  # fmt: skip
    r.add_argument("--vis-weight", type=float, default=1.0, help="lambda of L = L_pose + lambda L_vis")
    r.add_argument("--pose-keypoints", default="all", choices=("all", "visible"), help="Table 1 switch")
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int, default=140)
    o.add_argument("--batch-size", type=int, default=32, help="per process")
    o.add_argument("--lr", type=float, default=1e-3, help="backbone, heads and VisNet")
    o.add_argument("--reasoner-lr", type=float, default=1e-4, help="reasoner blocks")
    o.add_argument("--weight-decay", type=float, default=0.01)
    o.add_argument("--warmup-iters", type=int, default=1000, help="linear warm-up of the reasoner lr")
    o.add_argument("--schedule", default="cosine", choices=("cosine", "step"))
    o.add_argument("--milestones", type=int, nargs="*", default=[90, 120], help="epochs (step schedule)")
    o.add_argument("--gamma", type=float, default=0.1, help="step schedule factor")
    o.add_argument("--min-lr-ratio", type=float, default=0.01, help="cosine floor of the main groups")
    o.add_argument("--grad-clip", type=float, default=0.0, help="max grad norm (0: off)")
    o.add_argument("--max-steps-per-epoch", type=int, default=0, help="cap steps per epoch (0: full)")
    t = p.add_argument_group("runtime")
    t.add_argument("--output", default="runs/visattn", help="output directory")
    t.add_argument("--resume", help="checkpoint path or 'auto' (OUTPUT/last.pt if it exists)")
    t.add_argument("--save-every-steps", type=int, default=0, help="also checkpoint every N steps")
    t.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    t.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"), help="mixed precision")
    t.add_argument("--compile", action="store_true", help="torch.compile the model")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--deterministic", action="store_true", help="deterministic algorithms, seeded workers")
    t.add_argument("--val-every", type=int, default=1, help="validate every N epochs (0: never)")
    t.add_argument("--flip-test", action=argparse.BooleanOptionalAction, default=True)
    t.add_argument("--log-every", type=int, default=20, help="steps between log rows")
    t.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=True)
    t.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm bars")
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    pre, _ = parser.parse_known_args(argv)
    defaults: dict[str, Any] = {}
    if pre.config:
        known = {a.dest for a in parser._actions if a.dest != "help"}
        defaults = load_json_config(pre.config, known)
        for action in parser._actions:  # validate config values like CLI values
            if action.dest not in defaults:
                continue
            value = defaults[action.dest]
            flag = isinstance(action, (argparse._StoreTrueAction, argparse.BooleanOptionalAction))
            if flag and not isinstance(value, bool):
                raise CLIError(
                    f"config {pre.config}: {action.dest}={value!r} must be true or false",
                    "fix the config file",
                )
            if action.choices is not None and value not in action.choices:
                raise CLIError(
                    f"config {pre.config}: {action.dest}={value!r} is not one of {list(action.choices)}",
                    "fix the config file",
                )
        parser.set_defaults(**defaults)
    args = parser.parse_args(argv)
    check_numbers(args, BOUNDS, config=defaults, config_file=pre.config)
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    """Cross-flag checks of the model / loss flags (one-line errors); ranges are in :data:`BOUNDS`."""
    for name, size in (("input_size", 2), ("milestones", None)):
        value = getattr(args, name)
        if not isinstance(value, (list, tuple)) or (size is not None and len(value) != size):
            flag = "--" + name.replace("_", "-")
            raise CLIError(
                f"{flag} must be a list of {size or 'zero or more'} integers, got {value!r}",
                f"pass {flag} as integers (in a --config: a JSON list)",
            )
    if args.embed_dim % args.num_heads:
        raise CLIError(
            f"--embed-dim {args.embed_dim} is not divisible by --num-heads {args.num_heads}",
            "pick --embed-dim as a multiple of --num-heads",
        )
    if not 0.0 <= args.gt_prob <= 1.0:
        raise CLIError(f"--gt-prob must be in [0, 1], got {args.gt_prob}", "pass a probability")
    if not args.reasoner:
        used = [flag for dest, flag in REASONER_ONLY.items() if getattr(args, dest)]
        if args.vis_loss != "bce":
            used.append(f"--vis-loss {args.vis_loss}")
        if used:
            raise CLIError(
                f"{' / '.join(used)} configure the visattn layer but --no-reasoner removes it",
                "drop those flags, or drop --no-reasoner",
            )


def model_config(args: argparse.Namespace) -> ModelConfig:
    """The model part of the flags."""
    reasoner_kwargs = {
        "embed_dim": args.embed_dim,
        "depth": args.depth,
        "num_heads": args.num_heads,
        "norm_first": not args.post_norm,
        "shared_qkv": args.shared_qkv,
        "mask_source": args.mask_source,
        "masking": args.masking,
        "gt_prob": args.gt_prob,
        "visnet_context": args.visnet_context,
        "visnet_grad_scale": args.visnet_grad_scale,
        "mask_mode": args.mask_mode,
    }
    if args.visnet_evidence == "token":
        reasoner_kwargs["feature_channels"] = 0  # otherwise the SimCC adapter hands VisNet its features
    return ModelConfig(
        arch=args.arch,
        head=args.head,
        reasoner=args.reasoner,
        num_keypoints=keypoint_info(args.keypoints).num_keypoints,
        input_size=(args.input_size[0], args.input_size[1]),
        split_ratio=args.split_ratio,
        norm=args.norm,
        reasoner_kwargs=reasoner_kwargs if args.reasoner else {},
        pretrained=args.pretrained,
        hub_pretrained=args.hub_pretrained,
    )


# ----------------------------------------------------------------------------------------------------
# data


def augment_config(args: argparse.Namespace) -> AugmentConfig:
    """The training augmentation of the flags; ``--no-augment`` turns every random transform off."""
    if not args.augment:
        return AugmentConfig(flip_prob=0.0, half_body_prob=0.0, scale_factor=0.0, rotation_prob=0.0)
    try:
        return AugmentConfig(
            flip_prob=args.flip_prob,
            half_body_prob=args.half_body_prob,
            scale_factor=args.scale_factor,
            rotation_factor=args.rotation_factor,
            rotation_prob=args.rotation_prob,
        )
    except (TypeError, ValueError) as err:
        raise CLIError(f"bad augmentation flag: {err}", "see the data flags in --help") from None


def prepare_data(args: argparse.Namespace, info: DistInfo, output: Path) -> tuple[Path, Path, Path, Path]:
    """(train ann, train images, val ann, val images); generates the synthetic set on rank 0."""
    if args.synthetic is not None:
        if args.keypoints != "coco":
            raise CLIError("--synthetic generates COCO keypoints", "drop --keypoints crowdpose")
        root = output / "data"
        n_val = args.synthetic_val or max(8, args.synthetic // 8)
        train_ann = root / "train" / "person_keypoints_train.json"
        val_ann = root / "val" / "person_keypoints_val.json"
        spec = {"train": args.synthetic, "val": n_val, "seed": args.seed}
        spec_file = root / "synthetic.json"
        found = json.loads(spec_file.read_text()) if spec_file.is_file() else None
        if info.is_main and not (train_ann.is_file() and val_ann.is_file() and found == spec):
            if train_ann.is_file() and found != spec:
                print(
                    f"note: regenerating the synthetic set in {root} ({found or 'unknown sizes'} -> {spec})"
                )
            workers = max(0, args.workers)
            make_synthetic_coco(root / "train", args.synthetic, seed=args.seed, num_workers=workers)
            make_synthetic_coco(
                root / "val", n_val, seed=args.seed + 10_000, split_name="val", num_workers=workers
            )
            spec_file.write_text(json.dumps(spec))
        if info.enabled:
            dist.barrier()
        return train_ann, root / "train" / "images", val_ann, root / "val" / "images"
    if args.data_root is None:
        raise CLIError("no training data given", "pass --data-root DIR (COCO layout) or --synthetic N")
    root = Path(args.data_root)
    if not root.is_dir():
        raise CLIError(f"--data-root {root} is not a directory", "pass the folder holding annotations/")
    fix = (
        "pass --data-root with a COCO layout (annotations/*.json + image dirs), set --train-ann / "
        "--val-ann relative to it, or use --synthetic N"
    )
    train = check_data_paths(root / args.train_ann, root / args.train_images, "train", fix)
    val = check_data_paths(root / args.val_ann, root / args.val_images, "val", fix)
    return train[0], train[1], val[0], val[1]


class ResumableSampler(DistributedSampler):  # type: ignore[type-arg]
    """DistributedSampler that can skip the first ``start`` items of an epoch (resume mid-epoch).

    The order is a function of (seed, epoch) only, so skipping ``step * batch_size`` items replays the
    interrupted epoch exactly from the next unseen batch.
    """

    start = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start :])

    def __len__(self) -> int:
        return max(0, super().__len__() - self.start)


# ----------------------------------------------------------------------------------------------------
# optimisation


def make_vis_loss(name: str) -> nn.Module:
    """The visibility loss module of ``--vis-loss``."""
    if name == "ce":
        return VisibilityCELoss()
    if name == "focal":
        return VisibilityFocalLoss()
    return VisibilityBCELoss(balanced=name == "balanced")


def param_groups(model: nn.Module, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Two AdamW groups: everything at ``--lr`` (backbone, final conv, head, VisNet) and the reasoner
    blocks / embedding at ``--reasoner-lr``; no weight decay on biases and norm parameters."""
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_reasoner = name.startswith("reasoner.") and not name.startswith("reasoner.visnet.")
        decay = param.ndim > 1
        groups.setdefault(("reasoner" if is_reasoner else "main", decay), []).append(param)
    out = []
    for (kind, decay), params in sorted(groups.items()):
        lr = args.reasoner_lr if kind == "reasoner" else args.lr
        wd = args.weight_decay if decay else 0.0
        out.append(
            {"params": params, "lr": lr, "weight_decay": wd, "name": f"{kind}{'' if decay else '_no_wd'}"}
        )
    return out


@dataclass
class LRFactor:
    """Per-iteration lr multiplier (a picklable ``LambdaLR`` lambda).

    cosine: ``floor + (1 - floor) * (1 + cos(pi * it / total)) / 2``; step: ``gamma ** #milestones passed``;
    times a linear warm-up over ``warmup`` iterations (reasoner group).
    """

    total: int
    iters_per_epoch: int
    schedule: str
    milestones: tuple[int, ...]
    gamma: float
    floor: float
    warmup: int

    def __call__(self, it: int) -> float:
        if self.schedule == "cosine":
            progress = min(it / max(1, self.total), 1.0)
            factor = self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress))
        else:
            epoch = it // max(1, self.iters_per_epoch)
            factor = self.gamma ** sum(epoch >= m for m in self.milestones)
        if self.warmup > 0:
            factor *= min(1.0, (it + 1) / self.warmup)
        return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, args: argparse.Namespace, iters_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    total = args.epochs * iters_per_epoch
    common = {
        "total": total,
        "iters_per_epoch": iters_per_epoch,
        "schedule": args.schedule,
        "milestones": tuple(args.milestones),
        "gamma": args.gamma,
    }
    factors = []
    # the warm-up never takes more than a tenth of the run (a 1,000-iteration warm-up in a short run would
    # leave the reasoner at a fraction of its learning rate throughout)
    warmup = min(args.warmup_iters, total // WARMUP_MAX_FRACTION_INV)
    for group in optimizer.param_groups:
        if group["name"].startswith("reasoner"):
            factors.append(LRFactor(floor=0.0, warmup=warmup, **common))
        else:
            factors.append(LRFactor(floor=args.min_lr_ratio, warmup=0, **common))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)


def fast_forward(scheduler: torch.optim.lr_scheduler.LambdaLR, global_step: int) -> None:
    """Put a freshly built schedule at ``global_step`` (its groups' lr = base lr x factor(step)).

    With unchanged flags this is exactly the state the interrupted run had; with changed schedule
    flags it is the new schedule at the same step.
    """
    scheduler.last_epoch = global_step
    groups = scheduler.optimizer.param_groups
    for group, base_lr, factor in zip(groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base_lr * factor(global_step)
    scheduler._last_lr = [group["lr"] for group in groups]  # what get_last_lr() reports


def check_resume(state: dict[str, Any], path: Path, args: argparse.Namespace) -> None:
    """A resumable checkpoint, and flags that keep the run's position in the data (one-line errors).

    Changed :data:`POSITION_FLAGS` are refused; changed :data:`SCHEDULE_FLAGS` are reported and the
    schedule is rebuilt from them.
    """
    needed = ("optimizer", "scaler", "rng", "epoch", "step", "global_step")
    missing = [key for key in needed if key not in state]
    if missing:
        raise CLIError(
            f"{path} has no training state ({', '.join(missing)} missing): it holds weights only, "
            "like best.pt",
            "resume from the run's last.pt (--resume auto), or pass it to evaluate.py instead",
        )
    saved = state.get("args")
    if not isinstance(saved, dict):
        return
    now = plain(vars(args))
    for dest in POSITION_FLAGS:
        if dest in saved and saved[dest] != now[dest]:
            flag = "--" + dest.replace("_", "-")
            raise CLIError(
                f"{flag} changed since {path} was written (checkpoint {saved[dest]!r}, now {now[dest]!r}); "
                "the resumed step position depends on it",
                f"resume with {flag} {saved[dest]!r}, or start a new run in a new --output without --resume",
            )
    if state["epoch"] > args.epochs or (state["epoch"] == args.epochs and state["step"] > 0):
        raise CLIError(
            f"--epochs {args.epochs} but {path} is already at epoch {state['epoch']} step {state['step']}",
            f"pass --epochs > {state['epoch']} to train further, or evaluate the checkpoint",
        )
    changed = [
        f"--{dest.replace('_', '-')} {saved[dest]!r} -> {now[dest]!r}"
        for dest in SCHEDULE_FLAGS
        if dest in saved and saved[dest] != now[dest]
    ]
    if changed:
        print(
            f"note: resuming with changed schedule flags ({', '.join(changed)}); the lr schedule is rebuilt"
        )


# ----------------------------------------------------------------------------------------------------
# logging


class Logger:
    """metrics.jsonl (every row), metrics.csv (epoch rows) and TensorBoard; rank 0 only."""

    def __init__(self, output: Path, enabled: bool, tensorboard: bool, *, global_step: int = 0) -> None:
        """``global_step``: where the run starts; logged rows past it (of an interrupted run) are dropped."""
        self.enabled = enabled
        self.jsonl = output / "metrics.jsonl"
        self.csv = output / "metrics.csv"
        self.writer: Any = None
        if enabled and self.jsonl.is_file():
            lines = self.jsonl.read_text().splitlines()
            kept = [
                line
                for line in lines
                if line.strip() and json.loads(line).get("global_step", 0) <= global_step
            ]
            if len(kept) != len(lines):
                self.jsonl.write_text("".join(line + "\n" for line in kept))
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                self.writer = None
            else:
                self.writer = SummaryWriter(str(output / "tb"), purge_step=global_step or None)

    def log(self, row: dict[str, Any], step: int) -> None:
        if not self.enabled:
            return
        with self.jsonl.open("a") as handle:
            handle.write(json.dumps(row, default=json_default) + "\n")
        if self.writer is not None:
            prefix = row.get("kind", "train")
            for key, value in row.items():
                if isinstance(value, (int, float)) and key not in ("epoch", "step", "global_step"):
                    self.writer.add_scalar(f"{prefix}/{key}", value, step)
        if row.get("kind") == "epoch":
            rows = [json.loads(line) for line in self.jsonl.read_text().splitlines()]
            rows = [r for r in rows if r.get("kind") == "epoch"]
            fields: list[str] = []
            for r in rows:
                fields += [k for k in r if k not in fields]
            with self.csv.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# ----------------------------------------------------------------------------------------------------
# main


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info, device = init_distributed(args.device)
    output = writable_dir(args.output) if info.is_main else Path(args.output)
    kp_info = keypoint_info(args.keypoints)
    config = model_config(args)

    resume_path: Path | None = None
    if args.resume == "auto":
        resume_path = output / "last.pt" if (output / "last.pt").is_file() else None
    elif args.resume:
        resume_path = Path(args.resume)
    state = load_checkpoint(resume_path) if resume_path is not None else None
    if state is not None:
        saved = ModelConfig.from_dict(state["model_config"]).architecture()
        if saved != config.architecture():
            diff = {k: (saved[k], v) for k, v in config.architecture().items() if saved.get(k) != v}
            raise CLIError(
                f"checkpoint {resume_path} was trained with a different model config "
                f"(checkpoint vs now: {diff})",
                "pass the flags/--config of that run, or a new --output without --resume",
            )
        check_resume(state, resume_path, args)
        if state["epoch"] >= args.epochs:
            if info.is_main:
                print(f"{resume_path} already holds all {args.epochs} epochs: nothing to train")
            if info.enabled:
                dist.destroy_process_group()
            return 0
    if args.sync_bn and device.type != "cuda":
        raise CLIError("--sync-bn needs CUDA (SyncBatchNorm has no CPU kernel)", "use --norm group on CPU")

    seed_everything(args.seed, deterministic=args.deterministic)  # same init on every rank
    train_ann, train_images, val_ann, val_images = prepare_data(args, info, output)
    codec = build_codec(config, args.sigma)
    train_set = build_dataset(
        train_ann, train_images, config, codec, keypoints=args.keypoints, train=True,
        augment=augment_config(args), seed=args.seed,
    )  # fmt: skip
    val_set = build_dataset(val_ann, val_images, config, codec, keypoints=args.keypoints, train=False)
    if len(train_set) < args.batch_size * info.world_size:
        raise CLIError(
            f"{len(train_set)} training instances < one global batch ({args.batch_size} x {info.world_size})",
            "lower --batch-size or add data",
        )

    try:
        model = build_model(config).to(device)
    except (TypeError, ValueError) as err:
        raise CLIError(f"cannot build the model: {err}", "fix the model flags (see --help)") from None
    if args.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    raw_model = model
    optimizer = torch.optim.AdamW(param_groups(model, args), lr=args.lr, weight_decay=args.weight_decay)

    sampler = ResumableSampler(
        train_set, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=args.seed, drop_last=True
    )
    loader_kwargs: dict[str, Any] = {
        "num_workers": args.workers,
        "pin_memory": device.type == "cuda",
        "worker_init_fn": seed_worker,
        "persistent_workers": False,
    }
    iters_per_epoch = len(sampler) // args.batch_size
    if args.max_steps_per_epoch > 0:
        iters_per_epoch = min(iters_per_epoch, args.max_steps_per_epoch)
    scheduler = build_scheduler(optimizer, args, iters_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")

    start_epoch, start_step, global_step, best_ap = 0, 0, 0, -1.0
    if state is not None:
        raw_model.load_state_dict(state["model"])
        start_epoch, start_step = state["epoch"], state["step"]
        global_step, best_ap = state["global_step"], state.get("best_ap", -1.0)
        # the moments come from the checkpoint; lr, weight decay and the schedule from the current flags
        fresh = [(g["weight_decay"], g["initial_lr"]) for g in optimizer.param_groups]
        optimizer.load_state_dict(state["optimizer"])
        for group, (weight_decay, base_lr) in zip(optimizer.param_groups, fresh):
            group["weight_decay"], group["initial_lr"] = weight_decay, base_lr
        fast_forward(scheduler, global_step)
        scaler.load_state_dict(state["scaler"])
        rngs = state["rng"]
        if len(rngs) == info.world_size:
            set_rng_state(rngs[info.rank])
        if info.is_main:
            print(f"resumed from {resume_path}: epoch {start_epoch} step {start_step} (global {global_step})")
    else:
        seed_everything(args.seed + info.rank, deterministic=args.deterministic)  # per-rank randomness

    if info.enabled:
        ddp_kwargs: dict[str, Any] = {"device_ids": [device.index]} if device.type == "cuda" else {}
        model = nn.parallel.DistributedDataParallel(model, **ddp_kwargs)
    train_model: nn.Module = torch.compile(model) if args.compile else model

    pose_loss: nn.Module = SimCCKLLoss() if config.head == "simcc" else HeatmapMSELoss()
    vis_loss = make_vis_loss(args.vis_loss)
    criterion = VisibilityAwareLoss(
        pose_loss, vis_weight=args.vis_weight, pose_keypoints=args.pose_keypoints, vis_loss=vis_loss
    )
    val_sampler = ShardSampler(len(val_set), info.rank, info.world_size)
    val_loader = DataLoader(val_set, batch_size=args.batch_size, sampler=val_sampler, **loader_kwargs)
    reasoner = getattr(raw_model, "reasoner", None)
    evaluator = PoseEvaluator(
        val_ann, keypoint_info=args.keypoints, crowdpose=args.keypoints == "crowdpose",
        vis_threshold=0.5 if reasoner is None else reasoner.threshold,
    )  # fmt: skip
    logger = Logger(output, info.is_main, args.tensorboard, global_step=global_step)
    if info.is_main:
        n_params = sum(p.numel() for p in raw_model.parameters())
        layer = ""
        if config.reasoner:
            kw = config.reasoner_kwargs
            layer = (
                f" (E={kw['embed_dim']} depth={kw['depth']} heads={kw['num_heads']} "
                f"{'pre' if kw['norm_first'] else 'post'}-norm{' shared-qkv' if kw['shared_qkv'] else ''} "
                f"mask={kw['mask_source']}/{kw['masking']} vis-loss={args.vis_loss})"
            )
        print(
            f"model {config.arch}/{config.head} reasoner={config.reasoner}{layer} "
            f"params={n_params / 1e6:.2f}M | "
            f"{len(train_set)} train / {len(val_set)} val instances | {info.world_size} process(es) x batch "
            f"{args.batch_size} | {iters_per_epoch} it/epoch x {args.epochs} epochs | device {device} | "
            f"seed {args.seed}"
        )

    def checkpoint(epoch: int, step: int, metrics: dict[str, float] | None = None) -> None:
        rngs: list[Any] = [rng_state()]
        if info.enabled:
            rngs = [None] * info.world_size
            dist.all_gather_object(rngs, rng_state())
        if not info.is_main:
            return
        payload = {
            "model": raw_model.state_dict(),
            "model_config": config.to_dict(),
            "args": plain(vars(args)),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": rngs,
            "epoch": epoch,
            "step": step,
            "global_step": global_step,
            "best_ap": best_ap,
            "metrics": metrics,
        }
        save_checkpoint(output / "last.pt", payload)

    for epoch in range(start_epoch, args.epochs):
        sampler.set_epoch(epoch)
        skip = start_step if epoch == start_epoch else 0
        sampler.start = skip * args.batch_size
        generator = torch.Generator().manual_seed(args.seed * 1000 + epoch * 10 + info.rank)
        loader = DataLoader(
            train_set, batch_size=args.batch_size, sampler=sampler, drop_last=True, generator=generator,
            **loader_kwargs,
        )  # fmt: skip
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        model.train()
        steps = range(skip, iters_per_epoch)
        bar = None
        if info.is_main and args.progress:
            from tqdm import tqdm

            bar = tqdm(total=iters_per_epoch, initial=skip, desc=f"epoch {epoch}", dynamic_ncols=True)
        running, t0, seen = 0.0, time.perf_counter(), 0
        batches = iter(loader)
        for step in steps:
            batch = next(batches)
            images = batch["image"].to(device, non_blocking=True)
            flags = batch["flags"].to(device)
            weights = batch["weights"].to(device)
            with autocast(device, args.amp):
                out = train_model(images, flags)
            if config.head == "simcc":
                pred: Any = (out.x_logits.float(), out.y_logits.float())
                target: Any = (batch["x_labels"].to(device), batch["y_labels"].to(device))
            else:
                pred, target = out.heatmaps.float(), batch["heatmaps"].to(device)
            losses = criterion(pred, target, weights, flags, out.vis_logits)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(losses.total).backward()
            if args.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            global_step += 1
            loss = float(losses.total.detach())
            if not math.isfinite(loss):
                raise CLIError(
                    f"loss became {loss} at epoch {epoch} step {step}", "lower --lr or use --amp bf16"
                )
            running += loss
            seen += images.shape[0] * info.world_size
            rate = seen / max(time.perf_counter() - t0, 1e-9)
            lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
            if bar is not None:
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lrs.get('main', args.lr):.2e}", sps=f"{rate:.0f}")
                bar.update(1)
            if info.is_main and (global_step % args.log_every == 0 or step == iters_per_epoch - 1):
                row = {
                    "kind": "train", "epoch": epoch, "step": step + 1, "global_step": global_step,
                    "loss": loss, "pose_loss": float(losses.pose.detach()),
                    "vis_loss": float(losses.vis.detach()),
                    "lr": lrs.get("main", 0.0), "reasoner_lr": lrs.get("reasoner", 0.0),
                    "samples_per_s": rate,
                }  # fmt: skip
                logger.log(row, global_step)
            if (
                args.save_every_steps
                and global_step % args.save_every_steps == 0
                and step + 1 < iters_per_epoch
            ):
                checkpoint(epoch, step + 1)
        if bar is not None:
            bar.close()
        metrics: dict[str, float] = {}
        if args.val_every and ((epoch + 1) % args.val_every == 0 or epoch + 1 == args.epochs):
            metrics = evaluate(
                raw_model,
                val_loader,
                evaluator,
                codec,
                kp_info,
                device,
                amp=args.amp,
                flip_test=args.flip_test,
            )
            if metrics.get("AP", -1.0) > best_ap:
                best_ap = metrics["AP"]
                if info.is_main:
                    save_checkpoint(
                        output / "best.pt",
                        {
                            "model": raw_model.state_dict(),
                            "model_config": config.to_dict(),
                            "args": plain(vars(args)),
                            "epoch": epoch + 1,
                            "metrics": metrics,
                        },
                    )
        n_steps = max(1, iters_per_epoch - skip)
        row = {
            "kind": "epoch",
            "epoch": epoch + 1,
            "global_step": global_step,
            "train_loss": running / n_steps,
        }
        row.update(metrics)
        logger.log(row, global_step)
        checkpoint(epoch + 1, 0, metrics)
        if info.is_main and metrics:
            print(format_table({f"epoch {epoch + 1}": metrics}))
    logger.close()
    if info.enabled:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
