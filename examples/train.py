"""Train a top-down pose model with (or without) the visattn layer.

Usage::

    python examples/train.py --data-root data/coco --arch resnet50 --output runs/r50_visattn
    python examples/train.py --config examples/configs/coco_r50_simcc_visattn.json --data-root data/coco
    python examples/train.py --synthetic 512 --arch tiny --input-size 64 48 --sigma 2 --epochs 4
    python examples/train.py ... --no-reasoner | --mask-source ground_truth | --mask-source none
    torchrun --nproc_per_node 8 examples/train.py --config ... --data-root data/coco
    python examples/train.py ... --output runs/r50_visattn --resume auto

``--data-root`` holds the COCO layout (annotations/person_keypoints_{train,val}2017.json + {train,val}2017/);
a config file sets flag defaults that command-line flags override (examples/configs/: the paper's tables and
the authors' code). The optimiser is the authors' recipe: AdamW (weight decay 0.01), lr 1e-3 for backbone,
heads and VisNet, 1e-4 for the reasoner with a linear warm-up (at most a tenth of the run), then a
per-iteration cosine decay or the paper text's step decay (``--schedule step --milestones 90 120``).

Outputs in ``--output``: ``last.pt`` (every epoch and every ``--save-every-steps``, written atomically;
``--resume auto`` continues from it exactly), ``best.pt`` (highest val AP), ``metrics.jsonl`` /
``metrics.csv``, ``train.log`` and TensorBoard events. Checkpoints carry the
:func:`visattn.models.create_model` arguments, from which evaluate.py / visualize.py / export_onnx.py rebuild.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from engine import DistInfo, amp_dtype, init_distributed, keypoint_info, seed_everything, seed_worker
from visattn import VisibilityMaskedReasoner, list_keypoint_sets
from visattn.checkpoint import plain, read_checkpoint, rng_state, save_checkpoint, set_rng_state
from visattn.cli import NONNEGATIVE_FLOAT as NNF
from visattn.cli import NONNEGATIVE_INT as NNI
from visattn.cli import POSITIVE_FLOAT as PF
from visattn.cli import POSITIVE_INT as PI
from visattn.cli import PROBABILITY as PROB
from visattn.cli import CLIError, OneLineArgumentParser, amp_warning, parse_args, run_cli, writable_dir
from visattn.data import (
    AugmentConfig,
    ResumableSampler,
    ShardSampler,
    TopDownCocoDataset,
    TopDownCollate,
    make_synthetic_splits,
)
from visattn.inference import evaluate
from visattn.losses import VisibilityAwareLoss, VisibilityBCELoss, VisibilityCELoss, VisibilityFocalLoss
from visattn.metrics import PoseEvaluator, format_table
from visattn.models import HEADS, NORMS, create_model, list_models
from visattn.optim import SCHEDULES, lr_lambdas, param_groups
from visattn.reasoner import MASK_MODES, MASK_SOURCES, MASKINGS, VISNET_EVIDENCE

VIS_LOSSES = {"bce": VisibilityBCELoss, "focal": VisibilityFocalLoss, "ce": VisibilityCELoss}
VIS_LOSSES["balanced"] = lambda: VisibilityBCELoss(balanced=True)
LAYER = {k: p.default for k, p in inspect.signature(VisibilityMaskedReasoner).parameters.items()}
AUGMENT = AugmentConfig()
#: Flags named like the VisibilityMaskedReasoner arguments they set.
LAYER_FLAGS = ("embed_dim", "depth", "num_heads", "mask_source", "masking", "gt_prob", "visnet_evidence")
LAYER_FLAGS += ("visnet_context", "visnet_grad_scale", "mask_mode")
#: Flags that shape the learning-rate schedule: on resume the schedule is rebuilt from their current values.
SCHEDULE_FLAGS = ("schedule", "warmup_iters", "min_lr_ratio", "milestones", "gamma")
RESUME_NOTED = ("epochs", *SCHEDULE_FLAGS, "lr", "reasoner_lr", "weight_decay")
#: Flags that fix where a resumed run stands in the data (step x batch): a change is refused on resume.
POSITION_FLAGS = ("batch_size", "max_steps_per_epoch", "seed", "synthetic", "synthetic_val")


def build_parser() -> argparse.ArgumentParser:
    """All flags; ``--config FILE`` (JSON ``{dest: value}``) sets defaults that the CLI overrides."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = OneLineArgumentParser(prog="train.py", description=__doc__, formatter_class=fmt)
    switch = argparse.BooleanOptionalAction
    p.add_argument("--config", help="JSON file of flag values (examples/configs/); CLI flags override it")
    d = p.add_argument_group("data")
    d.add_argument("--data-root", help="COCO-style root (see --train-ann / --train-images)")
    d.add_argument("--train-ann", default="annotations/person_keypoints_train2017.json", help="under root")
    d.add_argument("--train-images", default="train2017", help="image dir, relative to --data-root")
    d.add_argument("--val-ann", default="annotations/person_keypoints_val2017.json", help="under root")
    d.add_argument("--val-images", default="val2017", help="image dir, relative to --data-root")
    d.add_argument("--synthetic", type=PI, metavar="N", help="generate N synthetic train images instead")
    d.add_argument("--synthetic-val", type=PI, metavar="M", help="synthetic val images (default N // 8)")
    d.add_argument("--keypoints", default="coco", choices=list_keypoint_sets(), help="keypoint set")
    d.add_argument("--augment", action=switch, default=True, help="train augmentation")
    d.add_argument("--flip-prob", type=PROB, default=AUGMENT.flip_prob, help="horizontal flips")
    d.add_argument("--scale-factor", type=NNF, default=AUGMENT.scale_factor, help="0.35 for HRNet")
    d.add_argument("--rotation-factor", type=NNF, default=AUGMENT.rotation_factor, help="degrees")
    d.add_argument("--rotation-prob", type=PROB, default=AUGMENT.rotation_prob, help="P(rotation)")
    d.add_argument("--half-body-prob", type=PROB, default=AUGMENT.half_body_prob, help="half-body crops")
    d.add_argument("--workers", type=NNI, default=2, help="DataLoader workers per process")
    m = p.add_argument_group("model")
    m.add_argument("--arch", default="resnet50", choices=list_models())
    m.add_argument("--head", default="simcc", choices=HEADS, help="coordinate classification or heatmaps")
    m.add_argument("--input-size", type=PI, nargs=2, default=(256, 192), metavar=("H", "W"))
    m.add_argument("--split-ratio", type=PF, default=2.0, help="SimCC bins per pixel")
    m.add_argument("--sigma", type=PF, help="target sigma (SimCC bins: 6 R50 / 4 HRNet; heatmap: 2)")
    m.add_argument("--norm", default="batch", choices=NORMS, help="trunk normalisation (group: batch-free)")
    m.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under DDP (CUDA only)")
    m.add_argument("--pretrained", help="local ImageNet weights file for the trunk")
    m.add_argument("--hub-pretrained", action="store_true", help="download ImageNet weights")
    r = p.add_argument_group("visattn layer (VisibilityMaskedReasoner arguments; paper Tables 5/6)")
    r.add_argument("--reasoner", action=switch, default=True, help="insert the layer")
    r.add_argument("--mask-source", default=LAYER["mask_source"], choices=MASK_SOURCES)
    r.add_argument("--masking", default=LAYER["masking"], choices=MASKINGS)
    r.add_argument("--visnet-evidence", default=LAYER["visnet_evidence"], choices=VISNET_EVIDENCE)
    r.add_argument("--visnet-context", type=NNI, default=LAYER["visnet_context"], help="VisNet blocks")
    r.add_argument("--visnet-grad-scale", type=PROB, default=LAYER["visnet_grad_scale"], help="0: detach")
    r.add_argument("--mask-mode", default=LAYER["mask_mode"], choices=MASK_MODES, help="hard: the paper")
    r.add_argument("--gt-prob", type=PROB, default=LAYER["gt_prob"], help="P(ground truth) with 'mixed'")
    r.add_argument("--embed-dim", type=PI, default=LAYER["embed_dim"], help="reasoner width E")
    r.add_argument("--depth", type=PI, default=LAYER["depth"], help="reasoner blocks")
    r.add_argument("--num-heads", type=PI, default=LAYER["num_heads"], help="attention heads")
    r.add_argument("--post-norm", action="store_true", help="authors' code: post-norm blocks")
    r.add_argument("--shared-qkv", action="store_true", help="authors' code: one Q/K/V for all heads")
    r.add_argument("--vis-loss", default="bce", choices=VIS_LOSSES, help="ce: the authors' code")
    r.add_argument("--vis-weight", type=NNF, default=1.0, help="lambda of L = L_pose + lambda L_vis")
    r.add_argument("--pose-keypoints", default="all", choices=("all", "visible"), help="Table 1 switch")
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=PI, default=140)
    o.add_argument("--batch-size", type=PI, default=32, help="per process")
    o.add_argument("--lr", type=PF, default=1e-3, help="backbone, heads and VisNet")
    o.add_argument("--reasoner-lr", type=NNF, default=1e-4, help="reasoner blocks")
    o.add_argument("--weight-decay", type=NNF, default=0.01)
    o.add_argument("--warmup-iters", type=NNI, default=1000, help="reasoner warm-up (<= a tenth of the run)")
    o.add_argument("--schedule", default="cosine", choices=SCHEDULES)
    o.add_argument("--milestones", type=NNI, nargs="*", default=[90, 120], help="epochs (step schedule)")
    o.add_argument("--gamma", type=PF, default=0.1, help="step schedule factor")
    o.add_argument("--min-lr-ratio", type=PROB, default=0.01, help="cosine floor of the main groups")
    o.add_argument("--grad-clip", type=NNF, default=0.0, help="max grad norm (0: off)")
    o.add_argument("--max-steps-per-epoch", type=NNI, default=0, help="cap steps per epoch (0: full)")
    t = p.add_argument_group("runtime")
    t.add_argument("--output", default="runs/visattn", help="output directory")
    t.add_argument("--resume", help="checkpoint path or 'auto' (OUTPUT/last.pt if it exists)")
    t.add_argument("--save-every-steps", type=NNI, default=0, help="also checkpoint every N steps")
    t.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    t.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"), help="mixed precision")
    t.add_argument("--compile", action="store_true", help="torch.compile the model")
    t.add_argument("--seed", type=NNI, default=0)
    t.add_argument("--deterministic", action="store_true", help="deterministic algorithms")
    t.add_argument("--val-every", type=NNI, default=1, help="validate every N epochs (0: never)")
    t.add_argument("--flip-test", action=switch, default=True)
    t.add_argument("--log-every", type=PI, default=20, help="steps between log rows")
    t.add_argument("--tensorboard", action=switch, default=True)
    t.add_argument("--progress", action=switch, default=True, help="tqdm bars (on a terminal)")
    return p


def parse_flags(argv: Sequence[str] | None) -> argparse.Namespace:
    """The flags (``--config`` defaults, types and ranges checked by :func:`visattn.cli.parse_args`) and
    the cross-flag checks, as one-line errors."""
    args = parse_args(build_parser(), argv)
    if args.embed_dim % args.num_heads:
        fix = "pick --embed-dim as a multiple of --num-heads"
        raise CLIError(f"--embed-dim {args.embed_dim} is not divisible by --num-heads {args.num_heads}", fix)
    used = [flag for flag in ("--post-norm", "--shared-qkv") if getattr(args, flag[2:].replace("-", "_"))]
    used += [f"--vis-loss {args.vis_loss}"] if args.vis_loss != "bce" else []
    if not args.reasoner and used:
        fix = "drop those flags, or drop --no-reasoner"
        raise CLIError(f"{' / '.join(used)} configure the visattn layer but --no-reasoner removes it", fix)
    if args.sync_bn and args.device == "cpu":
        raise CLIError("--sync-bn needs CUDA (SyncBatchNorm has no CPU kernel)", "use --norm group on CPU")
    return args


def model_config(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`visattn.models.create_model` (stored in every checkpoint)."""
    layer = {key: getattr(args, key) for key in LAYER_FLAGS}
    layer.update(norm_first=not args.post_norm, shared_qkv=args.shared_qkv)
    return {
        "name": args.arch,
        "num_keypoints": keypoint_info(args.keypoints).num_keypoints,
        "head": args.head,
        "visattn": layer if args.reasoner else False,
        "input_size": list(args.input_size),
        "split_ratio": args.split_ratio,
        "sigma": args.sigma,
        "norm": args.norm,
    }


def datasets(args: argparse.Namespace, info: DistInfo, output: Path, input_size: Any) -> tuple[Any, Any]:
    """(train, val) datasets of a COCO layout under --data-root, or of a synthetic set made on rank 0.

    The fast path of docs/data.md: uint8 crops, normalised and encoded batch-wise by TopDownCollate.
    """
    if args.synthetic is not None:
        if args.keypoints != "coco":
            raise CLIError(
                "--synthetic generates COCO keypoints", "drop --keypoints or pass --keypoints coco"
            )
        n_val = args.synthetic_val or max(8, args.synthetic // 8)
        synthetic = partial(make_synthetic_splits, output / "data", args.synthetic, n_val, seed=args.seed)
        if info.is_main:
            synthetic(num_workers=args.workers, on_regenerate=print)
        if info.enabled:
            dist.barrier()
        splits = synthetic()  # every rank: the files rank 0 has written
        paths = [*splits["train"], *splits["val"]]
    elif args.data_root is None:
        raise CLIError("no training data given", "pass --data-root DIR (COCO layout) or --synthetic N")
    elif not Path(args.data_root).is_dir():
        raise CLIError(
            f"--data-root {args.data_root} is not a directory", "pass the folder holding annotations/"
        )
    else:
        names = (args.train_ann, args.train_images, args.val_ann, args.val_images)
        paths = [Path(args.data_root) / name for name in names]
    for path, is_file in zip(paths, (True, False, True, False)):
        if not (path.is_file() if is_file else path.is_dir()):
            what = "annotation file" if is_file else "image directory"
            fix = "pass --data-root with a COCO layout (--train-ann / --val-ann under it), or --synthetic N"
            raise CLIError(f"{what} {path} does not exist", fix)
    common = {"keypoint_info": args.keypoints, "input_size": input_size, "image_dtype": "uint8"}
    try:
        train = TopDownCocoDataset(
            *paths[:2], train=True, augment=augment_config(args), seed=args.seed, **common
        )
        val = TopDownCocoDataset(*paths[2:], **common)
    except (ValueError, KeyError) as err:
        raise CLIError(f"cannot read the dataset: {err}", "pass a COCO keypoint annotation file") from None
    if len(train) < args.batch_size * info.world_size:
        fix = "lower --batch-size or add data"
        raise CLIError(
            f"{len(train)} training instances < one global batch ({args.batch_size} x {info.world_size})", fix
        )
    return train, val


def augment_config(args: argparse.Namespace) -> AugmentConfig:
    """The training augmentation of the flags; ``--no-augment`` turns every random transform off."""
    names = ("flip_prob", "half_body_prob", "scale_factor", "rotation_factor", "rotation_prob")
    values = {name: getattr(args, name) if args.augment else 0.0 for name in names}
    return AugmentConfig(**values)


def check_resume(state: dict[str, Any], path: Path, args: argparse.Namespace, config: dict[str, Any]) -> None:
    """A resumable checkpoint of this model, and flags that keep the run's position in the data."""
    missing = [k for k in ("optimizer", "scaler", "rng", "epoch", "step", "global_step") if k not in state]
    if missing:
        raise CLIError(
            f"{path} has no training state ({', '.join(missing)} missing): it holds weights only (best.pt)",
            "resume from the run's last.pt (--resume auto), or pass it to evaluate.py instead",
        )
    saved_config = state.get("model_config", {})
    if saved_config != config:
        diff = {k: (saved_config.get(k), v) for k, v in config.items() if saved_config.get(k) != v}
        raise CLIError(
            f"checkpoint {path} was trained with a different model config (checkpoint vs now: {diff})",
            "pass the flags/--config of that run, or a new --output without --resume",
        )
    saved, now = state.get("args", {}), plain(vars(args))
    for dest in (d for d in POSITION_FLAGS if d in saved and saved[d] != now[d]):
        flag = "--" + dest.replace("_", "-")
        raise CLIError(
            f"{flag} changed since {path} was written (checkpoint {saved[dest]!r}, now {now[dest]!r}); the "
            "resumed step position depends on it",
            f"resume with {flag} {saved[dest]!r}, or start a new run in a new --output without --resume",
        )
    if state["epoch"] > args.epochs or (state["epoch"] == args.epochs and state["step"] > 0):
        raise CLIError(
            f"--epochs {args.epochs} but {path} is already at epoch {state['epoch']} step {state['step']}",
            f"pass --epochs > {state['epoch']} to train further, or evaluate the checkpoint",
        )
    changed = [
        f"--{d.replace('_', '-')} {saved[d]!r} -> {now[d]!r}"
        for d in RESUME_NOTED
        if saved.get(d, now[d]) != now[d]
    ]
    if changed:
        print(
            f"note: resuming with changed schedule flags ({', '.join(changed)}); the lr schedule is rebuilt"
        )


class Logger:
    """``train.log`` (the printed lines), ``metrics.jsonl`` (every row), ``metrics.csv`` (epoch rows) and
    TensorBoard, on rank 0; rows of an interrupted run past ``global_step`` are dropped on resume."""

    def __init__(self, output: Path, info: DistInfo, tensorboard: bool, global_step: int, tty: bool) -> None:
        self.enabled, self.output, self.world_size, self.writer = info.is_main, output, info.world_size, None
        self.tty = tty and sys.stderr.isatty()  # progress bars on a terminal, plain rows otherwise
        jsonl = output / "metrics.jsonl"
        if self.enabled and jsonl.is_file():
            rows = [r for r in jsonl.read_text().splitlines() if r.strip()]
            jsonl.write_text(
                "".join(r + "\n" for r in rows if json.loads(r).get("global_step", 0) <= global_step)
            )
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                pass
            else:
                self.writer = SummaryWriter(str(output / "tb"), purge_step=global_step or None)

    def print(self, line: str) -> None:
        if self.enabled and line:
            print(line, flush=True)
            with (self.output / "train.log").open("a") as handle:
                handle.write(line + "\n")

    def log(self, row: dict[str, Any], step: int) -> None:
        if not self.enabled:
            return
        with (self.output / "metrics.jsonl").open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        for key, value in row.items():
            if self.writer is not None and isinstance(value, (int, float)) and key not in ("epoch", "step"):
                self.writer.add_scalar(f"{row['kind']}/{key}", value, step)
        if row["kind"] == "epoch":
            lines = (self.output / "metrics.jsonl").read_text().splitlines()
            rows = [r for r in map(json.loads, lines) if r.get("kind") == "epoch"]
            with (self.output / "metrics.csv").open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
                writer.writeheader()
                writer.writerows(rows)


@dataclass
class Run:
    """What a training step needs besides the batch."""

    model: nn.Module  # the adapter inside DDP / torch.compile wrappers
    criterion: VisibilityAwareLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    device: torch.device
    global_step: int = 0


def train_one_epoch(run: Run, loader: DataLoader, args: argparse.Namespace, epoch: int, skip: int,
                    steps: int, log: Logger, checkpoint: Any) -> float:  # fmt: skip
    """Steps ``skip .. steps - 1`` of an epoch; returns the mean logged loss."""
    run.model.train()
    bar = tqdm(total=steps, initial=skip, desc=f"epoch {epoch}") if log.enabled and log.tty else None
    logged, t0 = [], time.perf_counter()
    for step, batch in zip(range(skip, steps), loader):
        images, flags = batch["image"].to(run.device, non_blocking=True), batch["flags"].to(run.device)
        targets = type(batch["targets"])(*(t.to(run.device, non_blocking=True) for t in batch["targets"]))
        with torch.autocast(run.device.type, dtype=amp_dtype(args.amp), enabled=args.amp != "none"):
            out = run.model(images, flags)
        losses = run.criterion(out, targets, flags)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(losses.total).backward()
        if args.grad_clip > 0:
            run.scaler.unscale_(run.optimizer)
            nn.utils.clip_grad_norm_(run.model.parameters(), args.grad_clip)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.scheduler.step()
        run.global_step += 1
        if bar is not None:
            bar.update(1)
        last = step == steps - 1
        if run.global_step % args.log_every == 0 or last:  # one device sync per log row, not per step
            loss = float(losses.total.detach())
            if not math.isfinite(loss):
                raise CLIError(
                    f"loss became {loss} at epoch {epoch} step {step}", "lower --lr or use --amp bf16"
                )
            logged.append(loss)
            rate = (step + 1 - skip) * len(images) * log.world_size / max(time.perf_counter() - t0, 1e-9)
            lr = {g["name"]: g["lr"] for g in run.optimizer.param_groups}
            row = {"kind": "train", "epoch": epoch, "step": step + 1, "global_step": run.global_step}
            row |= {
                "loss": loss,
                "pose_loss": float(losses.pose.detach()),
                "vis_loss": float(losses.vis.detach()),
            }
            row |= {"lr": lr["main"], "reasoner_lr": lr.get("reasoner", 0.0), "samples_per_s": rate}
            log.log(row, run.global_step)
            text = f"loss {loss:.4f} lr {lr['main']:.2e} {rate:.0f} samples/s"
            if bar is not None:
                bar.set_postfix_str(text)
            else:  # batch jobs: a plain row every --log-every steps
                log.print(f"epoch {epoch} step {step + 1}/{steps} {text}")
        if args.save_every_steps and run.global_step % args.save_every_steps == 0 and not last:
            checkpoint(epoch, step + 1)
    if bar is not None:
        bar.close()
    return sum(logged) / max(1, len(logged))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_flags(argv)
    info, device = init_distributed(args.device)
    output = writable_dir(args.output) if info.is_main else Path(args.output)
    config = model_config(args)
    resume = output / "last.pt" if args.resume == "auto" else args.resume and Path(args.resume)
    state = read_checkpoint(resume) if resume and (args.resume != "auto" or resume.is_file()) else None
    if state is not None:
        check_resume(state, resume, args, config)
        if state["epoch"] >= args.epochs:
            print(f"{resume} already holds all {args.epochs} epochs: nothing to train")
            return 0

    seed_everything(args.seed, deterministic=args.deterministic)  # the same initialisation on every rank
    try:
        model = create_model(
            **config, pretrained_backbone=args.pretrained, hub_pretrained=args.hub_pretrained
        )
    except (TypeError, ValueError) as err:
        raise CLIError(f"cannot build the model: {err}", "fix the model flags (see --help)") from None
    model = (nn.SyncBatchNorm.convert_sync_batchnorm(model) if args.sync_bn else model).to(device)
    train_set, val_set = datasets(args, info, output, model.input_size)
    sampler = ResumableSampler(
        train_set, num_replicas=info.world_size, rank=info.rank, seed=args.seed, drop_last=True
    )
    steps = len(sampler) // args.batch_size
    steps = min(steps, args.max_steps_per_epoch) if args.max_steps_per_epoch else steps
    groups = param_groups(model, lr=args.lr, reasoner_lr=args.reasoner_lr, weight_decay=args.weight_decay)
    optimizer = torch.optim.AdamW(groups)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")
    epoch0, step0, global_step, best = 0, 0, 0, {"AP": -1.0, "epoch": 0}
    if state is not None:  # the moments from the checkpoint; lr, weight decay and schedule from the flags
        model.load_state_dict(state["model"])
        epoch0, step0, global_step, best = state["epoch"], state["step"], state["global_step"], state["best"]
        fresh = [(g["weight_decay"], g["lr"]) for g in optimizer.param_groups]
        optimizer.load_state_dict(state["optimizer"])
        for group, (decay, base_lr) in zip(optimizer.param_groups, fresh):
            group["weight_decay"], group["initial_lr"] = decay, base_lr
        scaler.load_state_dict(state["scaler"])
        if len(state["rng"]) == info.world_size:
            set_rng_state(state["rng"][info.rank])
    else:
        seed_everything(args.seed + info.rank, deterministic=args.deterministic)  # per-rank randomness
    schedule = {key: getattr(args, key) for key in SCHEDULE_FLAGS}
    lambdas = lr_lambdas(optimizer.param_groups, args.epochs * steps, iters_per_epoch=steps, **schedule)
    # built from the flags, at the saved step when resuming
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas, last_epoch=global_step - 1)
    wrapped: nn.Module = model
    if info.enabled:
        wrapped = nn.parallel.DistributedDataParallel(
            model, [device.index] if device.type == "cuda" else None
        )
    vis_loss = VIS_LOSSES[args.vis_loss]()
    criterion = VisibilityAwareLoss(model.head, args.vis_weight, args.pose_keypoints, vis_loss=vis_loss)
    compiled = torch.compile(wrapped) if args.compile else wrapped
    run = Run(compiled, criterion, optimizer, scheduler, scaler, device, global_step)
    loader_kw = {"collate_fn": TopDownCollate(model.head.codec), "num_workers": args.workers}
    loader_kw |= {"pin_memory": device.type == "cuda", "worker_init_fn": seed_worker}
    shard = ShardSampler(len(val_set), info.rank, info.world_size)
    val_loader = DataLoader(val_set, args.batch_size, sampler=shard, **loader_kw)
    threshold = 0.5 if model.reasoner is None else model.reasoner.threshold
    crowd = args.keypoints == "crowdpose"
    evaluator = PoseEvaluator(
        val_set.ann_file, keypoint_info=args.keypoints, crowdpose=crowd, vis_threshold=threshold
    )
    log = Logger(output, info, args.tensorboard and info.is_main, global_step, tty=args.progress)
    if state is not None:
        log.print(f"resumed from {resume}: epoch {epoch0} step {step0} (global {global_step})")
    log.print(f"model {args.arch}/{args.head} reasoner={args.reasoner} "
              f"params={sum(p.numel() for p in model.parameters()) / 1e6:.2f}M | {len(train_set)} train / "
              f"{len(val_set)} val instances | {info.world_size} process(es) x batch {args.batch_size} | "
              f"{steps} it/epoch x {args.epochs} epochs | device {device} | seed {args.seed}")  # fmt: skip
    log.print(amp_warning(args.amp, device.type) or "")

    def weights() -> dict[str, Any]:
        return {"model": model.state_dict(), "model_config": config, "args": plain(vars(args))}

    def checkpoint(epoch: int, step: int, metrics: dict[str, float] | None = None) -> None:
        rngs: list[Any] = [rng_state()]
        if info.enabled:
            rngs = [None] * info.world_size
            dist.all_gather_object(rngs, rng_state())
        if info.is_main:
            training = {"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "rng": rngs}
            position = {"epoch": epoch, "step": step, "global_step": run.global_step, "best": best}
            save_checkpoint(output / "last.pt", {**weights(), **training, **position, "metrics": metrics})

    for epoch in range(epoch0, args.epochs):
        skip = step0 if epoch == epoch0 else 0
        sampler.set_epoch(epoch)
        sampler.start = skip * args.batch_size
        train_set.set_epoch(epoch)
        generator = torch.Generator().manual_seed(args.seed * 1000 + epoch * 10 + info.rank)
        loader = DataLoader(train_set, args.batch_size, sampler=sampler, generator=generator, **loader_kw)
        train_loss = train_one_epoch(run, loader, args, epoch, skip, steps, log, checkpoint)
        metrics: dict[str, float] = {}
        if args.val_every and ((epoch + 1) % args.val_every == 0 or epoch + 1 == args.epochs):
            flip_index = val_set.keypoint_info.flip_index if args.flip_test else None
            metrics = evaluate(
                model, val_loader, evaluator, flip_index=flip_index, amp_dtype=amp_dtype(args.amp)
            )
            if metrics.get("AP", -1.0) > best["AP"]:
                best = {"AP": metrics["AP"], "epoch": epoch + 1}
                if info.is_main:
                    save_checkpoint(output / "best.pt", {**weights(), "epoch": epoch + 1, "metrics": metrics})
        row = {"kind": "epoch", "epoch": epoch + 1, "global_step": run.global_step, "train_loss": train_loss}
        log.log(row | metrics, run.global_step)
        checkpoint(epoch + 1, 0, metrics)
        log.print(format_table({f"epoch {epoch + 1}": metrics}) if metrics else "")
    summary = (
        f"best AP {100 * best['AP']:.1f} at epoch {best['epoch']}" if best["AP"] >= 0 else "no validation"
    )
    log.print(f"done: {args.epochs} epochs, {summary}; checkpoints in {output}")
    if info.enabled:
        dist.barrier()  # every rank done with its collectives before the group goes away
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
