"""Runtime set-up shared by the example scripts: devices, torch.distributed, seeding, the evaluation split.

Everything else the scripts share (prediction, the flip test, evaluation, checkpoints, one-line errors)
is in the package: :mod:`visattn.inference`, :mod:`visattn.metrics`, :mod:`visattn.checkpoint`,
:mod:`visattn.cli`.
"""

from __future__ import annotations

import argparse
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from visattn import KeypointInfo, get_keypoint_info, list_keypoint_sets
from visattn.cli import CLIError
from visattn.data import TopDownCocoDataset


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when available, else ``cpu``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise CLIError("--device cuda requested but no CUDA device is available", "use --device cpu")
        return torch.device("cuda", local_rank)
    return torch.device(name)


def amp_dtype(amp: str) -> torch.dtype | None:
    """The autocast dtype of ``--amp bf16|fp16|none``."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch; optionally force deterministic algorithms."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (global RNG used by third-party code)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: derive NumPy / Python seeds from the worker's torch seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)  # noqa: NPY002 (global RNG used by third-party code)
    random.seed(seed)


@dataclass
class DistInfo:
    """Process-group facts of this process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_name: str) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(device_name, info.local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return info, device


def keypoint_info(name: str) -> KeypointInfo:
    """``get_keypoint_info`` with a one-line error."""
    try:
        return get_keypoint_info(name)
    except (KeyError, ValueError):
        raise CLIError(
            f"unknown keypoint set {name!r}", f"use --keypoints {' | '.join(list_keypoint_sets())}"
        ) from None


def add_eval_args(parser: argparse.ArgumentParser) -> None:
    """The flags of a script that reads a checkpoint and a COCO-style split (evaluate / visualize)."""
    parser.add_argument("--checkpoint", required=True, help="last.pt / best.pt written by train.py")
    parser.add_argument("--ann-file", required=True, help="COCO keypoint annotation JSON of the split")
    parser.add_argument("--image-dir", required=True, help="image folder of the split")
    parser.add_argument("--keypoints", default="coco", choices=list_keypoint_sets())


def eval_dataset(args: argparse.Namespace, model: nn.Module, **kwargs: Any) -> TopDownCocoDataset:
    """The unaugmented dataset of ``--ann-file/--image-dir`` for ``model`` (one-line errors): uint8 crops
    without targets, for a loader with ``collate_fn=TopDownCollate()``."""
    ann, images = Path(args.ann_file), Path(args.image_dir)
    if not ann.is_file():
        raise CLIError(f"annotation file {ann} does not exist", "pass --ann-file of the split")
    if not images.is_dir():
        raise CLIError(f"image directory {images} does not exist", "pass the image folder of the split")
    info = keypoint_info(args.keypoints)
    k = model.num_keypoints
    if k != info.num_keypoints:
        raise CLIError(
            f"the checkpoint predicts K={k} keypoints but --keypoints {info.name} has K={info.num_keypoints}",
            "pass the --keypoints set the model was trained on",
        )
    try:
        return TopDownCocoDataset(
            ann, images, keypoint_info=info, input_size=model.input_size, image_dtype="uint8", **kwargs
        )
    except (ValueError, KeyError) as err:
        raise CLIError(f"cannot read {ann}: {err}", "pass a COCO keypoint annotation file") from None
