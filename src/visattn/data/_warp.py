"""The image -> crop warp matrix shared by the dataset and the predictor (NumPy, float64)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["crop_matrix"]


def crop_matrix(center: np.ndarray, scale_w: float, rotation: float, size: tuple[int, int]) -> np.ndarray:
    """The ``(2, 3)`` image -> crop matrix of
    [`visattn.data.transforms.get_affine_matrix`][visattn.data.transforms.get_affine_matrix].

    Example:
        >>> crop_matrix(np.array([50.0, 40.0]), 96.0, 0.0, (256, 192)).round(3).tolist()
        [[2.0, 0.0, -4.0], [-0.0, 2.0, 48.0]]
    """
    out_h, out_w = size
    s = out_w / scale_w
    theta = math.radians(rotation)
    c, sn = math.cos(theta) * s, math.sin(theta) * s
    cx, cy = float(center[0]), float(center[1])
    return np.array(
        [[c, sn, out_w * 0.5 - (c * cx + sn * cy)], [-sn, c, out_h * 0.5 - (-sn * cx + c * cy)]],
        dtype=np.float64,
    )
