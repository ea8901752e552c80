"""Shared machinery of the example scripts (train / evaluate / visualize / demo).

The scripts are one file per task; this module holds what they share: one-line CLI errors, data and
codec construction, flip-test prediction, evaluation through :class:`visattn.metrics.PoseEvaluator`,
atomic checkpoints, torch.distributed set-up and the paper-style results table. It imports only the
public visattn API.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pickle
import random
import re
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from models import ModelConfig, build_model
from visattn import KeypointInfo, get_keypoint_info
from visattn.codecs import HeatmapCodec, SimCCCodec, heatmap_flip_back, simcc_flip_back
from visattn.data import AugmentConfig, ImageReadError, TopDownCocoDataset, crop_to_image
from visattn.metrics import PoseEvaluator

__all__ = [
    "Bound",
    "CLIError",
    "CheckpointState",
    "DistInfo",
    "EvalSetup",
    "OneLineArgumentParser",
    "Prediction",
    "ShardSampler",
    "add_eval_args",
    "autocast",
    "build_codec",
    "build_dataset",
    "check_data_paths",
    "check_keypoints",
    "check_numbers",
    "evaluate",
    "format_table",
    "init_distributed",
    "json_default",
    "keypoint_info",
    "load_checkpoint",
    "load_json_config",
    "load_model",
    "person_boxes",
    "plain",
    "predict",
    "read_checkpoint",
    "resolve_device",
    "rng_state",
    "run_cli",
    "save_checkpoint",
    "seed_everything",
    "seed_worker",
    "set_rng_state",
    "setup_eval",
    "state_dict_mismatch",
    "writable_dir",
]

PAPER_ROWS = ("all", "visible", "occluded")
TABLE_COLUMNS = ("AP", "AP50", "AP75", "APM", "APL", "AR")


class CLIError(Exception):
    """A user error: printed as one line ``error: <what> fix: <how>`` and exit status 2."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix

    def line(self) -> str:
        return " ".join(f"error: {self} fix: {self.fix}".split())  # one line, whatever the message holds


class OneLineArgumentParser(argparse.ArgumentParser):
    """``argparse`` that reports bad flags/values in one line (no usage dump) and exits with 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} fix: see `{self.prog} --help`\n")


def _one_line(err: BaseException) -> str:
    """The message of ``err`` on one line; a DataLoader worker's re-raised error gives its original line."""
    text = str(err)
    if "Original Traceback" in text:  # torch's ExceptionWrapper: "Caught X in DataLoader worker ..."
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = re.sub(r"^[\w.]+: ", "", last.strip())
    return " ".join(text.split())


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> NoReturn:
    """Run a script's ``main``; user errors become one line ``error: ... fix: ...`` on stderr, exit status 2.

    Besides :class:`CLIError` this covers an unreadable image (:class:`visattn.data.ImageReadError`,
    also from a DataLoader worker) and any other ``OSError`` (a missing, unreadable or unwritable path).
    """
    try:
        code = main(argv)
    except CLIError as err:
        print(err.line(), file=sys.stderr)
        code = 2
    except ImageReadError as err:
        fix = (
            "replace or remove that image (TopDownCocoDataset(...).find_unreadable_images(decode=True) "
            "lists every bad file)"
        )
        print(CLIError(_one_line(err), fix).line(), file=sys.stderr)
        code = 2
    except OSError as err:
        fix = (
            "check the path in the message: it must exist and be readable, its folder writable, the disk free"
        )
        print(CLIError(_one_line(err), fix).line(), file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("error: interrupted fix: rerun with --resume auto to continue", file=sys.stderr)
        code = 130
    sys.exit(code)


@dataclass(frozen=True)
class Bound:
    """Allowed values of a numeric flag: ``kind`` int or float, ``low <= v <= high`` (``low < v`` if open).

    Floats must also be finite. A flag with ``nargs`` is checked element by element; ``None`` (an
    optional flag not given) is not checked.
    """

    kind: type
    low: float | None = None
    high: float | None = None
    open_low: bool = False

    def describe(self) -> str:
        if self.kind is int and self.low == 1 and self.high is None and not self.open_low:
            return "a positive integer"
        what = "an integer" if self.kind is int else "a finite number"
        if self.low is not None and self.high is not None:
            return f"{what} in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f"{what} {'>' if self.open_low else '>='} {self.low:g}"
        return what

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind is int and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or value <= self.high


def check_numbers(
    args: argparse.Namespace,
    bounds: Mapping[str, Bound],
    *,
    config: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
) -> None:
    """Type- and range-check numeric flags, from the command line or a JSON ``--config`` alike.

    ``config`` holds the values read from ``config_file``; a bad value that came from there is
    reported as the config key, otherwise as the flag.
    """
    for dest, bound in bounds.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        if all(bound.accepts(v) for v in values):
            continue
        flag = "--" + dest.replace("_", "-")
        if config is not None and dest in config and config[dest] == value:
            raise CLIError(
                f"config {config_file}: {dest} must be {bound.describe()}, got {value!r}",
                f"fix {dest} in the config file (or override it with {flag})",
            )
        raise CLIError(
            f"{flag} must be {bound.describe()}, got {value!r}", f"pass {flag} as {bound.describe()}"
        )


def writable_dir(path: str | Path, flag: str = "--output") -> Path:
    """Create ``path`` (parents too) and check that a file can be written in it; one-line error if not."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise CLIError(
            f"{flag} {folder} is not a writable folder ({err.strerror or type(err).__name__})",
            f"pass a {flag} folder you can write to",
        ) from None
    return folder


def load_json_config(path: str | Path, known: set[str]) -> dict[str, Any]:
    """Read a JSON config file of ``{flag_dest: value}``; keys must be known argparse dests."""
    file = Path(path)
    if not file.is_file():
        raise CLIError(f"config file {file} does not exist", "pass an existing file, e.g. examples/configs/")
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise CLIError(f"config file {file} is not valid JSON ({err})", "fix the JSON syntax") from None
    if not isinstance(data, dict):
        raise CLIError(f"config file {file} must hold a JSON object", 'write {"flag": value, ...}')
    data = {k: v for k, v in data.items() if not k.startswith("_")}  # "_comment", "_paper" keys
    unknown = sorted(set(data) - known)
    if unknown:
        raise CLIError(f"config file {file} has unknown keys {unknown}", "use the flag names of --help")
    return data


# ----------------------------------------------------------------------------------------------------
# runtime


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when available, else ``cpu``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise CLIError("--device cuda requested but no CUDA device is available", "use --device cpu")
        return torch.device("cuda", local_rank)
    return torch.device(name)


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager[Any]:
    """Autocast context for ``--amp bf16|fp16|none``."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


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


class ShardSampler(Sampler[int]):
    """Evaluation sampler: rank ``r`` reads items ``r, r + world, ...`` (no padding, no duplicates)."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, length, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


# ----------------------------------------------------------------------------------------------------
# data


def check_data_paths(
    ann_file: str | Path,
    image_dir: str | Path,
    what: str,
    fix: str = "pass --ann-file / --image-dir of the split",
) -> tuple[Path, Path]:
    """Both paths must exist; otherwise a one-line error that says which and how to fix it."""
    ann, images = Path(ann_file), Path(image_dir)
    if not ann.is_file():
        raise CLIError(f"{what} annotation file {ann} does not exist", fix)
    if not images.is_dir():
        raise CLIError(
            f"{what} image directory {images} does not exist", "pass the image folder of the split"
        )
    return ann, images


def build_codec(config: ModelConfig, sigma: float | None = None) -> SimCCCodec | HeatmapCodec:
    """The codec of the model's head: SimCC (sigma in bins) or heatmap (sigma in heatmap px)."""
    if config.head == "simcc":
        return SimCCCodec(config.input_size, split_ratio=config.split_ratio, sigma=sigma or 6.0)
    return HeatmapCodec(config.input_size, config.heatmap_size, sigma=sigma or 2.0)


def build_dataset(
    ann_file: Path,
    image_dir: Path,
    config: ModelConfig,
    codec: SimCCCodec | HeatmapCodec,
    *,
    keypoints: str,
    train: bool,
    augment: AugmentConfig | None = None,
    seed: int = 0,
) -> TopDownCocoDataset:
    """A :class:`visattn.data.TopDownCocoDataset` for ``config`` (ground-truth boxes).

    ``augment`` is the training augmentation (None: the dataset default); evaluation sets use none.
    """
    kwargs: dict[str, Any] = {} if augment is None or not train else {"augment": augment}
    try:
        return TopDownCocoDataset(
            ann_file,
            image_dir,
            keypoint_info=keypoints,
            input_size=config.input_size,
            codec=codec,
            train=train,
            seed=seed,
            **kwargs,
        )
    except (ValueError, KeyError) as err:
        raise CLIError(f"cannot read {ann_file}: {err}", "pass a COCO keypoint annotation file") from None


def add_eval_args(parser: argparse.ArgumentParser) -> None:
    """The flags of a script that reads a checkpoint and a COCO-style split (evaluate / visualize)."""
    parser.add_argument("--checkpoint", required=True, help="last.pt / best.pt written by train.py")
    parser.add_argument("--ann-file", required=True, help="COCO keypoint annotation JSON of the split")
    parser.add_argument("--image-dir", required=True, help="image folder of the split")
    parser.add_argument("--keypoints", default="coco", choices=("coco", "crowdpose"))


@dataclass
class EvalSetup:
    """What :func:`setup_eval` builds from ``--checkpoint/--ann-file/--image-dir/--keypoints``."""

    ann_file: Path
    state: CheckpointState
    model: nn.Module
    config: ModelConfig
    keypoint_info: KeypointInfo
    codec: SimCCCodec | HeatmapCodec
    dataset: TopDownCocoDataset


def setup_eval(
    args: argparse.Namespace, device: torch.device, what: str, *, sigma: float | None = None
) -> EvalSetup:
    """Check the paths, load the checkpoint's model, and build its codec and the (unaugmented) dataset.

    Every user error (missing path, foreign checkpoint, wrong keypoint set) is a one-line
    :class:`CLIError`.
    """
    ann, images = check_data_paths(args.ann_file, args.image_dir, what)
    info = keypoint_info(args.keypoints)
    state = load_checkpoint(args.checkpoint)
    model, config = load_model(state, device)
    check_keypoints(config, info)
    codec = build_codec(config, sigma)
    dataset = build_dataset(ann, images, config, codec, keypoints=args.keypoints, train=False)
    return EvalSetup(ann, state, model, config, info, codec, dataset)


# ----------------------------------------------------------------------------------------------------
# prediction and evaluation


@dataclass
class Prediction:
    """Decoded predictions of one batch (crop pixels)."""

    keypoints: torch.Tensor  # (B, K, 2)
    scores: torch.Tensor  # (B, K)
    vis_logits: torch.Tensor | None  # (B, K)


def _raw(model: nn.Module) -> nn.Module:
    """The plain model inside DDP / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


@torch.no_grad()
def predict(
    model: nn.Module,
    images: torch.Tensor,
    flags: torch.Tensor | None,
    codec: SimCCCodec | HeatmapCodec,
    keypoint_info: KeypointInfo,
    *,
    flip_test: bool = True,
) -> Prediction:
    """Forward (+ flip test: average with the flipped-back output of the mirrored crop) and decode.

    ``flags`` are the COCO flags 0/1/2 of the crop (visible iff ``v == 2``); only a reasoner with
    mask_source ``"ground_truth"`` reads them.
    """
    out = model(images, flags)
    vis = out.vis_logits
    flip_index = list(keypoint_info.flip_index)
    if flip_test:
        flipped_flags = None if flags is None else flags[:, flip_index]
        out_f = model(images.flip(-1), flipped_flags)
        if vis is not None and out_f.vis_logits is not None:
            vis = (vis + out_f.vis_logits[:, flip_index]) / 2
    if isinstance(codec, SimCCCodec):
        x, y = out.x_logits.float(), out.y_logits.float()
        if flip_test:
            xf, yf = simcc_flip_back(out_f.x_logits.float(), out_f.y_logits.float(), flip_index, shift=True)
            x, y = (x + xf) / 2, (y + yf) / 2
        keypoints, scores = codec.decode(x, y)
    else:
        heatmaps = out.heatmaps.float()
        if flip_test:
            heatmaps = (heatmaps + heatmap_flip_back(out_f.heatmaps.float(), flip_index, shift=True)) / 2
        keypoints, scores = codec.decode(heatmaps)
    return Prediction(keypoints, scores, None if vis is None else vis.float())


def evaluate(
    model: nn.Module,
    loader: Iterable[Mapping[str, torch.Tensor]],
    evaluator: PoseEvaluator,
    codec: SimCCCodec | HeatmapCodec,
    keypoint_info: KeypointInfo,
    device: torch.device,
    *,
    amp: str = "none",
    flip_test: bool = True,
    progress: bool = False,
) -> dict[str, float]:
    """Predict every batch, map crops back to image pixels and return ``evaluator.compute()``.

    Under torch.distributed every rank evaluates its shard and ``compute`` gathers the results.
    """
    model.eval()
    evaluator.reset()
    input_size = _raw(model).input_size if hasattr(_raw(model), "input_size") else codec.input_size
    batches: Iterable[Mapping[str, torch.Tensor]] = loader
    if progress:
        from tqdm import tqdm

        batches = tqdm(loader, desc="eval", leave=False, dynamic_ncols=True)
    for batch in batches:
        images = batch["image"].to(device, non_blocking=True)
        flags = batch["flags"].to(device)
        with autocast(device, amp):
            pred = predict(model, images, flags, codec, keypoint_info, flip_test=flip_test)
        meta = [batch[k].float() for k in ("center", "scale", "rotation")]
        keypoints = crop_to_image(pred.keypoints.cpu(), *meta, input_size)
        gt_keypoints = crop_to_image(batch["keypoints"].float(), *meta, input_size)
        evaluator.update(
            batch["image_id"],
            keypoints,
            pred.scores.cpu(),
            bbox_scores=batch["bbox_score"],
            areas=batch["area"],
            vis_logits=None if pred.vis_logits is None else pred.vis_logits.cpu(),
            flags=batch["flags"],
            gt_keypoints=gt_keypoints,
            boxes=person_boxes(batch),
            instance_ids=batch["ann_id"],
        )
    return evaluator.compute()


def person_boxes(batch: Mapping[str, torch.Tensor], padding: float = 1.25) -> torch.Tensor:
    """``(B, 4)`` person boxes ``(x, y, w, h)`` in image px (the PCK scale).

    Uses the dataset's ``bbox`` when it returns one, else the crop box ``center, scale`` with the
    ``padding`` factor removed.
    """
    if "bbox" in batch:
        return batch["bbox"].float()
    center, size = batch["center"].float(), batch["scale"].float() / padding
    return torch.cat([center - size / 2, size], dim=1)


def format_table(results: Mapping[str, Mapping[str, float]], *, title: str = "") -> str:
    """Markdown table in the layout of the paper's Tables 2/3: one row per model x keypoint subset.

    ``results`` maps a model name to a flat metrics dict from :class:`PoseEvaluator` (``AP``,
    ``AP_visible``, ``AP50_occluded``, ..., ``vis_accuracy``). Values are printed in percent.
    """
    head = ["model", "keypoints", *TABLE_COLUMNS, "vis acc"]
    lines = [f"### {title}", ""] if title else []
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    names = {"all": "overall", "visible": "visible", "occluded": "occluded"}
    for name, metrics in results.items():
        for subset in PAPER_ROWS:
            cells = [name, names[subset]]
            for col in TABLE_COLUMNS:
                key = col if subset == "all" else f"{col}_{subset}"
                value = metrics.get(key)
                cells.append("-" if value is None else f"{100 * value:.1f}")
            vis = metrics.get("vis_accuracy") if subset == "all" else None
            cells.append("-" if vis is None or vis != vis else f"{100 * vis:.1f}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# checkpoints


CheckpointState = dict[str, Any]


def plain(value: Any) -> Any:
    """``value`` as plain data for a checkpoint: dicts, lists, str, numbers, bool, None (paths -> str).

    Checkpoints hold only tensors and plain data, so that ``torch.load(weights_only=True)`` reads them.
    """
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_checkpoint(path: str | Path, state: CheckpointState) -> None:
    """Write ``state`` atomically: a temporary file in the same folder, then ``os.replace``.

    The file gets the user's umask (``0o666 & ~umask``), like any file the user writes. A failed write
    (disk full, file-size limit) removes the temporary file, keeps the previous checkpoint and raises a
    one-line :class:`CLIError` that says so.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise CLIError(
            f"cannot write checkpoint {path} ({err.strerror or type(err).__name__})",
            "pass an --output folder you can write to",
        ) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if not isinstance(err, (OSError, RuntimeError)):
            raise
        kept = f"the previous {path.name} is kept" if path.is_file() else f"no {path.name} was written"
        reason = err.strerror if isinstance(err, OSError) and err.strerror else _one_line(err)
        raise CLIError(
            f"writing checkpoint {path} failed ({reason}); {kept}",
            "free disk space or raise the file-size limit (ulimit -f), then rerun with --resume auto",
        ) from None


def read_checkpoint(path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` on CPU: tensors and plain data only, never code.

    One-line :class:`CLIError` for a missing or unreadable file, and for a file that holds other Python
    objects (unpickling those could run arbitrary code, so it is refused).
    """
    path = Path(path)
    if not path.is_file():
        raise CLIError(f"checkpoint {path} does not exist", "pass the .pt file written by examples/train.py")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing a file
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: (GLOBAL )?[\w.]+", str(err))
        if "Weights only load failed" not in str(err) or "Unsupported operand" in str(err):  # not a pickle
            raise CLIError(
                f"checkpoint {path} cannot be read (UnpicklingError)", "pass an intact .pt file"
            ) from None
        detail = f" ({found.group(0)})" if found else ""
        raise CLIError(
            f"checkpoint {path} holds Python objects besides tensors and plain data{detail}; it is not "
            "loaded because unpickling them can run arbitrary code",
            "pass a checkpoint of this version of examples/train.py (docs/faq.md converts an old one)",
        ) from None
    except Exception as err:  # a truncated or non-torch file
        raise CLIError(
            f"checkpoint {path} cannot be read ({type(err).__name__})", "pass an intact .pt file"
        ) from None


def load_checkpoint(path: str | Path) -> CheckpointState:
    """Read a recipe checkpoint (CPU tensors); one-line errors for a missing or foreign file."""
    state = read_checkpoint(path)
    if not isinstance(state, dict) or "model" not in state or "model_config" not in state:
        raise CLIError(
            f"{path} is not a visattn recipe checkpoint (no 'model' / 'model_config')",
            "pass a checkpoint written by examples/train.py",
        )
    return state


def state_dict_mismatch(model: nn.Module, state_dict: Mapping[str, Any], *, limit: int = 5) -> str:
    """Short description of why ``state_dict`` does not fit ``model`` (at most ``limit`` keys per kind).

    Returns ``""`` when the keys and shapes agree. Used for one-line errors: a checkpoint of another
    configuration can miss hundreds of keys, so only the first ``limit`` are named, plus a count.
    """
    expected = model.state_dict()

    def names(keys: list[str]) -> str:
        more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
        return ", ".join(keys[:limit]) + more

    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and isinstance(state_dict[k], torch.Tensor) and state_dict[k].shape != v.shape
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys ({names(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys ({names(unexpected)})")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches ({names(shapes)})")
    return "; ".join(parts)


def load_model(state: CheckpointState, device: torch.device) -> tuple[nn.Module, ModelConfig]:
    """Rebuild the model from the config stored in a checkpoint and load its weights.

    A config this version cannot build, or weights that do not fit it, give a one-line
    :class:`CLIError` (at most five key names, see :func:`state_dict_mismatch`).
    """
    try:
        config = ModelConfig.from_dict(state["model_config"])
        config.pretrained, config.hub_pretrained = None, False  # the checkpoint holds the weights
        model = build_model(config)
    except (TypeError, ValueError, KeyError) as err:
        raise CLIError(
            f"cannot rebuild the model from the checkpoint's config: {err}",
            "pass a checkpoint written by this version of examples/train.py",
        ) from None
    mismatch = state_dict_mismatch(model, state["model"])
    if mismatch:
        raise CLIError(
            f"checkpoint weights do not fit its config: {mismatch}", "retrain or pass another file"
        )
    model.load_state_dict(state["model"])
    return model.to(device), config


def check_keypoints(config: ModelConfig, info: KeypointInfo) -> None:
    """The model's K must match the dataset's keypoint set."""
    if config.num_keypoints != info.num_keypoints:
        raise CLIError(
            f"the checkpoint predicts K={config.num_keypoints} keypoints but --keypoints {info.name} has "
            f"K={info.num_keypoints}",
            "pass the --keypoints set the model was trained on",
        )


def keypoint_info(name: str) -> KeypointInfo:
    """``get_keypoint_info`` with a one-line error."""
    try:
        return get_keypoint_info(name)
    except (KeyError, ValueError):
        raise CLIError(f"unknown keypoint set {name!r}", "use --keypoints coco or crowdpose") from None


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU + CUDA) RNG states, as tensors and plain values (``weights_only``)."""
    version, internal, gauss = random.getstate()
    bit_generator, key, pos, has_gauss, cached = np.random.get_state(legacy=True)  # noqa: NPY002
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "bit_generator": str(bit_generator),
            "key": torch.from_numpy(np.asarray(key, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(  # noqa: NPY002 (global RNG used by third-party code)
        (npy["bit_generator"], npy["key"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
         npy["cached_gaussian"])
    )  # fmt: skip
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def json_default(value: Any) -> Any:
    """``json.dumps`` fallback for tensors / NumPy scalars / paths."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")
