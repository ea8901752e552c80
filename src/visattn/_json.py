"""JSON files: reading with errors that name the file, writing atomically (datasets, metrics, predict)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["read_json", "write_json"]


def read_json(path: Path, what: str) -> Any:
    """``json.load`` of ``path``; a parse or encoding error is a ``ValueError`` naming ``what`` and the file.

    Args:
        path: the file.
        what: how the error names it, e.g. ``"ann_file"`` or ``"results file"``.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{what} {path} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} {path} is not UTF-8 JSON text ({err.reason} at byte {err.start})") from None


def write_json(path: str | os.PathLike[str], payload: Any) -> Path:
    """Write ``payload`` as JSON atomically: a temporary file in the target folder, then ``os.replace``
    (the folder is created; a failed write leaves any previous file as it was)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
