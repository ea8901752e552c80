"""Reading JSON files with errors that name the file (shared by the datasets and the metrics)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["read_json"]


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
