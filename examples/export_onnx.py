"""Export a pose model with the visattn reasoner to ONNX, optionally decoding keypoints inside the graph.

With ``--checkpoint`` a ``last.pt`` / ``best.pt`` written by ``examples/train.py`` is exported: the model
is rebuilt from the config stored in the checkpoint (``visattn.models.create_model``, so ``--post-norm``,
``--shared-qkv``, ``--masking``, ... of the training run are kept) and its weights are loaded. A plain
``state_dict`` of the built-in demo adapter (below) is accepted too.

Without ``--checkpoint`` a small untrained SimCC adapter is exported (a stride-4 conv backbone + final
conv + VisibilityMaskedReasoner + SimCC head; ``--input-size``, ``--keypoints``, ``--embed-dim``,
``--depth``, ``--no-reasoner`` describe it).

The exported graph has a dynamic batch axis and returns ``x_logits``, ``y_logits`` (SimCC) or
``heatmaps``, ``vis_probs`` (per-keypoint probability of being visible; models with the layer) and,
with ``--decode``, ``keypoints`` (crop pixels) and ``scores``. The script prints the output names and
shapes and, if onnxruntime is installed, runs the file once and prints the largest absolute difference
to PyTorch per output.

Usage:
    python examples/train.py --synthetic 512 --arch tiny --input-size 64 48 --sigma 2 --output runs/synth
    python examples/export_onnx.py --checkpoint runs/synth/best.pt --decode   # -> runs/synth/best.onnx

    python examples/export_onnx.py --output simcc.onnx --decode               # untrained demo adapter

Needs ``pip install "visattn[export]"`` (onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visattn import HeatmapAdapter, SimCCAdapter, VisibilityMaskedReasoner
from visattn.checkpoint import read_checkpoint, state_dict_mismatch
from visattn.cli import (
    POSITIVE_INT,
    Bound,
    CLIError,
    OneLineArgumentParser,
    parse_args,
    run_cli,
    writable_dir,
)
from visattn.export import DeploymentModel, export_onnx
from visattn.models import load_model

#: Flags that describe the built-in demo adapter; a train.py checkpoint fixes them itself.
DEMO_DEFAULTS: dict[str, Any] = {
    "input_size": (64, 48),
    "keypoints": 17,
    "embed_dim": 64,
    "depth": 2,
    "no_reasoner": False,
}


def build_backbone(channels: int) -> nn.Module:
    """A small stride-4 conv backbone: (B, 3, H, W) -> (B, channels, H / 4, W / 4)."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(inplace=True),
        nn.Conv2d(32, channels, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
    )


def build_demo_model(args: argparse.Namespace) -> SimCCAdapter:
    """The small adapter described by ``--input-size/--keypoints/--embed-dim/--depth/--no-reasoner``."""
    channels = 64
    try:
        return SimCCAdapter(
            build_backbone(channels),
            channels,
            args.keypoints,
            tuple(args.input_size),
            reasoner=None
            if args.no_reasoner
            else partial(VisibilityMaskedReasoner, embed_dim=args.embed_dim, depth=args.depth),
        )
    except (TypeError, ValueError) as err:
        raise CLIError(f"cannot build the demo model: {err}", "fix the model flags (see --help)") from None


def build_model(args: argparse.Namespace) -> tuple[SimCCAdapter | HeatmapAdapter, str]:
    """(model in eval mode, description) from ``--checkpoint`` or the demo flags."""
    given = [k for k, v in DEMO_DEFAULTS.items() if getattr(args, k) is not None]
    if args.checkpoint is None:
        for key, value in DEMO_DEFAULTS.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
        return build_demo_model(args).eval(), "untrained demo adapter"

    state = read_checkpoint(args.checkpoint)
    if isinstance(state, Mapping) and "model_config" in state and "model" in state:
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise CLIError(
                f"{flags} describe the demo model, but {args.checkpoint} stores its own model config",
                "drop those flags when exporting a train.py checkpoint",
            )
        _, model = load_model(args.checkpoint)
        config = state["model_config"]
        if model.reasoner is not None and model.reasoner.mask_source == "ground_truth":
            # no flags at inference: the exported graph masks with VisNet's prediction instead
            model.reasoner.mask_source = "predicted"
            print("note: mask_source 'ground_truth' has no flags at inference; exporting with 'predicted'")
        return model.eval(), f"{config['name']}/{config.get('head', 'simcc')} from {args.checkpoint}"

    # a plain state_dict of the demo adapter (the behaviour before train.py checkpoints were accepted)
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CLIError(
            f"{args.checkpoint} is neither a train.py checkpoint nor a state_dict",
            "pass the last.pt / best.pt written by examples/train.py",
        )
    for key, value in DEMO_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    model = build_demo_model(args)
    mismatch = state_dict_mismatch(model, state)
    if mismatch:
        raise CLIError(
            f"{args.checkpoint} does not fit the demo adapter: {mismatch}",
            "pass a train.py checkpoint, or the --input-size/--keypoints/--embed-dim/--depth of the file",
        )
    model.load_state_dict(dict(state))
    return model.eval(), f"demo adapter with weights from {args.checkpoint}"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(
        prog="export_onnx.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", type=Path, help="last.pt / best.pt of examples/train.py (or a state_dict)")
    p.add_argument("--output", type=Path, help="ONNX file (default: CHECKPOINT.onnx or simcc_visattn.onnx)")
    p.add_argument("--decode", action="store_true", help="add keypoints and scores outputs")
    p.add_argument("--opset", type=Bound(int, 18), default=18, help="ONNX opset (>= 18: the dynamo exporter)")
    p.add_argument("--batch", type=POSITIVE_INT, default=2, help="batch size of the onnxruntime check")
    demo = p.add_argument_group("demo adapter (without a train.py checkpoint)")
    demo.add_argument("--input-size", type=POSITIVE_INT, nargs=2, metavar=("H", "W"), help="default 64 48")
    demo.add_argument("--keypoints", type=POSITIVE_INT, help="K (default 17)")
    demo.add_argument("--embed-dim", type=POSITIVE_INT, help="reasoner width (default 64)")
    demo.add_argument("--depth", type=POSITIVE_INT, help="reasoner blocks (default 2)")
    demo.add_argument(
        "--no-reasoner", action="store_true", default=None, help="plain SimCC (no vis_probs output)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    output = args.output
    if output is None:
        output = args.checkpoint.with_suffix(".onnx") if args.checkpoint else Path("simcc_visattn.onnx")
    writable_dir(output.parent, "--output folder")
    model, what = build_model(args)
    try:
        path = export_onnx(model, output, decode=args.decode, opset=args.opset)
    except ImportError as err:
        raise CLIError(
            f"ONNX export needs onnx and onnxscript ({err})", 'pip install "visattn[export]"'
        ) from None
    print(f"exported {what}")
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")

    deploy = DeploymentModel(model, decode=args.decode).eval()
    height, width = deploy.input_size
    images = torch.randn(args.batch, 3, height, width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = deploy(images)
    print(f"input  {'images':10s} ['batch', 3, {height}, {width}]")
    for name, tensor in zip(deploy.output_names, expected):
        print(f"output {name:10s}", ["batch", *tensor.shape[1:]])

    try:
        import onnxruntime
    except ImportError:
        print("onnxruntime not installed: skipping the check against PyTorch")
        return 0
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": images.numpy()})
    for name, a, e in zip(deploy.output_names, got, expected):
        diff = (torch.from_numpy(a).to(e.dtype) - e).abs().max().item()
        print(f"onnxruntime vs PyTorch {name:10s} max abs diff {diff:.2e}")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
