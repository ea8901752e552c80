"""Training throughput of SimpleBaseline-R50 SimCC with and without the visattn layer.

Compares, in one process on the same device (CUDA when available, else CPU):

- plain SimCC vs SimCC + visattn layer (VisNet + masking + 3-block reasoner): the layer's overhead;
- float32 vs bfloat16 autocast;
- eager vs ``torch.compile``.

A training step is forward + SimCC KL loss + visibility BCE + backward + AdamW step on random crops
(no data loading). Prints a markdown table of samples/s and ratios.

Usage::

    python benchmarks/bench_train.py                 # 256x192, batch 32 on CUDA / 8 on CPU
    python benchmarks/bench_train.py --quick         # 128x96, batch 4, few steps (CPU smoke run)
    python benchmarks/bench_train.py --no-compile --batch-size 64 --steps 50
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Sequence
from typing import Any

import torch

from visattn.heads import PoseHead
from visattn.losses import VisibilityAwareLoss
from visattn.models import create_model, list_models


def make_batch(
    batch: int, input_size: tuple[int, int], head: PoseHead, device: torch.device
) -> dict[str, Any]:
    """Random crops with random keypoints (flags 0/1/2) and their targets (the head's NamedTuple)."""
    g = torch.Generator().manual_seed(0)
    h, w = input_size
    keypoints = torch.rand(batch, 17, 2, generator=g) * torch.tensor([w - 1.0, h - 1.0])
    flags = torch.randint(0, 3, (batch, 17), generator=g)
    targets = head.encode(keypoints, flags)
    return {
        "image": torch.randn(batch, 3, h, w, generator=g).to(device),
        "flags": flags.to(device),
        "targets": type(targets)(*(t.to(device) for t in targets)),
    }


def time_variant(
    reasoner: bool,
    amp: str,
    compiled: bool,
    args: argparse.Namespace,
    device: torch.device,
) -> tuple[float, float]:
    """(samples/s, compile+warm-up seconds) of one variant."""
    torch.manual_seed(0)
    input_size = (args.input_size[0], args.input_size[1])
    model = create_model(args.arch, visattn=reasoner, input_size=input_size).to(device).train()
    criterion = VisibilityAwareLoss(model.head)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    step_model: Any = torch.compile(model) if compiled else model
    batch = make_batch(args.batch_size, input_size, model.head, device)
    ctx = torch.autocast(device.type, dtype=torch.bfloat16) if amp == "bf16" else contextlib.nullcontext()

    def step() -> None:
        with ctx:
            out = step_model(batch["image"], batch["flags"])
        losses = criterion(out, batch["targets"], batch["flags"])
        optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        optimizer.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    start = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync()
    warm = time.perf_counter() - start
    times = []
    for _ in range(args.repeats):
        sync()
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        sync()
        times.append(time.perf_counter() - start)
    return args.batch_size * args.steps / min(times), warm


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", default="resnet50", choices=list_models())
    parser.add_argument("--input-size", type=int, nargs=2, default=(256, 192), metavar=("H", "W"))
    parser.add_argument("--batch-size", type=int, help="default 32 on CUDA, 8 on CPU")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="best of N repeats")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (compilation happens here)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--quick", action="store_true", help="128x96, batch 4, 3 steps, 2 repeats")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.batch_size is None:
        args.batch_size = 32 if device.type == "cuda" else 8
    if args.quick:
        args.input_size, args.batch_size, args.steps, args.repeats, args.warmup = (128, 96), 4, 3, 2, 2
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    print(
        f"bench_train: SimpleBaseline-{args.arch} SimCC {tuple(args.input_size)}, batch {args.batch_size}, "
        f"{args.steps} steps x best of {args.repeats}, device {name}, torch {torch.__version__}, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}\n"
    )
    amps = ["fp32", "bf16"] if args.bf16 else ["fp32"]
    modes = [False, True] if args.compile else [False]
    rows = []
    base: dict[tuple[str, bool], float] = {}
    for amp in amps:
        for compiled in modes:
            for reasoner in (False, True):
                sps, warm = time_variant(reasoner, amp, compiled, args, device)
                if not reasoner:
                    base[(amp, compiled)] = sps
                rows.append((reasoner, amp, compiled, sps, warm))
                print(f"  done: layer={reasoner} {amp} compile={compiled}: {sps:.1f} samples/s", flush=True)
    reference = base[("fp32", False)]
    print(
        "\n| variant | precision | mode | samples/s | vs eager fp32 baseline | layer overhead (step time) |"
    )
    print("|---|---|---|---|---|---|")
    for reasoner, amp, compiled, sps, _ in rows:
        overhead = "-" if not reasoner else f"{100 * (base[(amp, compiled)] / sps - 1):+.1f}%"
        variant = "SimCC + visattn" if reasoner else "SimCC"
        mode = "compile" if compiled else "eager"
        print(f"| {variant} | {amp} | {mode} | {sps:.1f} | {sps / reference:.2f}x | {overhead} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
