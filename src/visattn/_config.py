"""Package-wide switch between the fused and the reference attention path.

The switch is read when a module is constructed and stored on the instance, so flipping it later does
not change modules that already exist; tests and users can also set the per-instance flag directly.
"""

from __future__ import annotations

import os

__all__ = ["set_fused_attn", "use_fused_attn"]

_ENV = "VISATTN_FUSED_ATTN"


def _from_env() -> bool:
    raw = os.environ.get(_ENV, "1").strip()
    if raw not in ("0", "1"):
        raise ValueError(f"environment variable {_ENV} must be '0' or '1', got {raw!r}")
    return raw == "1"


_FUSED_ATTN = _from_env()


def use_fused_attn() -> bool:
    """Whether newly constructed modules use the fused attention path.

    Defaults to ``True``; the environment variable ``VISATTN_FUSED_ATTN`` (``1`` fused, ``0``
    reference) sets it at import time and [`set_fused_attn`][visattn.set_fused_attn] changes it afterwards.

    Example:
        >>> isinstance(use_fused_attn(), bool)
        True
    """
    return _FUSED_ATTN


def set_fused_attn(enabled: bool) -> None:
    """Select the attention path for modules constructed from now on.

    Args:
        enabled: ``True`` for ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels),
            ``False`` for the explicit ``softmax(QK^T)V`` reference path, which can also return the
            attention maps.

    Example:
        >>> previous = use_fused_attn()
        >>> set_fused_attn(False)
        >>> use_fused_attn()
        False
        >>> set_fused_attn(previous)
    """
    global _FUSED_ATTN
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {type(enabled).__name__}")
    _FUSED_ATTN = enabled
