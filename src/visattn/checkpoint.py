"""Checkpoints that lose nothing: atomic writes, ``weights_only`` reads, RNG state as plain data.

[`save_checkpoint`][visattn.checkpoint.save_checkpoint] writes a temporary file in the target folder and
renames it over the old one, so an interruption or a full disk never leaves a half-written file;
[`read_checkpoint`][visattn.checkpoint.read_checkpoint] loads with ``torch.load(weights_only=True)`` (tensors
and plain data only, never code). Failures raise [`CheckpointError`][visattn.checkpoint.CheckpointError],
whose message says what happened and whose ``fix`` says what to do.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "last.pt"
    >>> save_checkpoint(path, {"step": 3, "weights": torch.ones(2)})
    >>> read_checkpoint(path)["step"]
    3
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import re
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from visattn.cli import CLIError, one_line

__all__ = [
    "CheckpointError",
    "CheckpointState",
    "plain",
    "read_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
    "state_dict_mismatch",
]


class CheckpointError(CLIError, OSError):
    """A checkpoint cannot be written or read; ``fix`` says what to do (an ``OSError`` and a
    [`CLIError`][visattn.cli.CLIError]: a command prints it as one line)."""


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
    one-line [`CheckpointError`][visattn.checkpoint.CheckpointError] that says so.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise CheckpointError(
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
        reason = err.strerror if isinstance(err, OSError) and err.strerror else one_line(err)
        raise CheckpointError(
            f"writing checkpoint {path} failed ({reason}); {kept}",
            "free disk space or raise the file-size limit (ulimit -f), then rerun with --resume auto",
        ) from None


def read_checkpoint(path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` on CPU: tensors and plain data only, never code.

    One-line [`CheckpointError`][visattn.checkpoint.CheckpointError] for a missing or unreadable file, and for
    a file that holds other Python objects (unpickling those could run arbitrary code, so it is refused).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist",
            "pass a .pt file written by save_checkpoint (examples/train.py)",
        )
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing a file
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: (GLOBAL )?[\w.]+", str(err))
        if "Weights only load failed" not in str(err) or "Unsupported operand" in str(err):  # not a pickle
            raise CheckpointError(
                f"checkpoint {path} cannot be read (UnpicklingError)", "pass an intact .pt file"
            ) from None
        detail = f" ({found.group(0)})" if found else ""
        raise CheckpointError(
            f"checkpoint {path} holds Python objects besides tensors and plain data{detail}; it is not "
            "loaded because unpickling them can run arbitrary code",
            "pass a checkpoint of this version of examples/train.py (docs/faq.md converts an old one)",
        ) from None
    except Exception as err:  # a truncated or non-torch file
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(err).__name__})", "pass an intact .pt file"
        ) from None


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
    """Inverse of [`rng_state`][visattn.checkpoint.rng_state]."""
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
