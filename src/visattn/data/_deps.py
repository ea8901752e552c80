"""Lazy imports of the optional data dependencies (``pip install visattn[data]``)."""

from __future__ import annotations

from typing import Any

__all__ = ["require_cv2"]


def require_cv2() -> Any:
    """Import and return ``cv2``, or raise an ImportError that says how to install it.

    Example:
        >>> require_cv2().__name__
        'cv2'
    """
    try:
        import cv2
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "visattn.data needs OpenCV (opencv-python-headless) for image decoding and drawing; "
            "install the data extras with `pip install visattn[data]`"
        ) from err
    return cv2
