"""Export a SimCC pose model with the visattn reasoner to ONNX, decoding keypoints inside the graph.

Builds a small SimCC adapter (a stride-4 conv backbone + final conv + VisibilityMaskedReasoner + SimCC
head), optionally loads its weights from a checkpoint (a ``state_dict`` saved with
``torch.save(model.state_dict(), path)``, or a dict holding it under ``"state_dict"``), exports it with a
dynamic batch axis and prints the ONNX outputs. The exported graph returns ``x_logits``, ``y_logits``,
``vis_probs`` (per-keypoint probability of being visible) and, with ``--decode``, ``keypoints`` (crop
pixels) and ``scores`` (in (0, 1]). If onnxruntime is installed the file is run once and compared with
PyTorch.

Usage:
    python examples/export_onnx.py --output simcc.onnx --decode
    python examples/export_onnx.py --checkpoint model.pth --output simcc.onnx --input-size 256 192

Needs ``pip install "visattn[export]"``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from visattn import SimCCAdapter
from visattn.export import DeploymentModel, export_onnx


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


def build_model(args: argparse.Namespace) -> SimCCAdapter:
    """The adapter described by the command line, with checkpoint weights if one is given."""
    channels = 64
    model = SimCCAdapter(
        build_backbone(channels),
        channels,
        args.keypoints,
        tuple(args.input_size),
        reasoner=not args.no_reasoner,
        reasoner_kwargs=None if args.no_reasoner else {"embed_dim": args.embed_dim, "depth": args.depth},
    )
    if args.checkpoint is not None:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        model.load_state_dict(state)
        print(f"loaded weights from {args.checkpoint}")
    return model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, default=None, help="state_dict of the same adapter")
    parser.add_argument("--output", type=Path, default=Path("simcc_visattn.onnx"))
    parser.add_argument("--input-size", type=int, nargs=2, default=(64, 48), metavar=("H", "W"))
    parser.add_argument("--keypoints", type=int, default=17)
    parser.add_argument("--embed-dim", type=int, default=64)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--no-reasoner", action="store_true", help="plain SimCC (no vis_probs output)")
    parser.add_argument("--decode", action="store_true", help="add keypoints and scores outputs")
    parser.add_argument("--opset", type=int, default=18)
    args = parser.parse_args()

    model = build_model(args)
    path = export_onnx(model, args.output, decode=args.decode, opset=args.opset)
    print(f"\nwrote {path} ({path.stat().st_size / 1e6:.2f} MB)")

    deploy = DeploymentModel(model, decode=args.decode).eval()
    images = torch.randn(2, 3, *args.input_size)
    with torch.no_grad():
        expected = deploy(images)
    print("input  images (batch, 3, H, W):", ["batch", 3, *args.input_size])
    for name, tensor in zip(deploy.output_names, expected):
        print(f"output {name:10s}", ["batch", *tensor.shape[1:]])

    try:
        import onnxruntime
    except ImportError:
        print("onnxruntime not installed: skipping the check against PyTorch")
        return
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": images.numpy()})
    for name, a, e in zip(deploy.output_names, got, expected):
        print(
            f"onnxruntime vs PyTorch {name:10s} max abs diff {abs(torch.from_numpy(a) - e).max().item():.2e}"
        )


if __name__ == "__main__":
    main()
