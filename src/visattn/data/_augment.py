"""Top-down training augmentation settings and the per-sample random draws."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from visattn._checks import check_positive_float, check_positive_int, check_probability

__all__ = ["AugmentConfig", "AugmentDraw", "draw_augment", "half_body_box"]


@dataclass(frozen=True)
class AugmentConfig:
    """Random top-down augmentation (SimpleBaseline / MMPose recipe).

    Attributes:
        flip_prob: probability of a horizontal flip (keypoints and flags swapped by ``flip_index``).
        half_body_prob: probability of cropping the upper or lower body only.
        half_body_min_keypoints: half-body needs at least this many labelled (v > 0) keypoints
            (MMPose: ``min_total_keypoints=9``, i.e. more than 8).
        upper_body_prob: probability of preferring the upper half (MMPose 0.7); the upper half needs
            2 labelled keypoints, the lower half 3.
        half_body_padding: box padding of the half-body crop.
        scale_factor: ``sf``; the crop size is multiplied by ``clip(1 + sf * N(0, 1), 1 - sf, 1 + sf)``.
        rotation_factor: ``rf`` in degrees; rotation ``clip(rf * N(0, 1), -2 rf, 2 rf)``.
        rotation_prob: probability of rotating at all.

    Example:
        >>> AugmentConfig(scale_factor=0.35, rotation_factor=45.0).flip_prob
        0.5
    """

    flip_prob: float = 0.5
    half_body_prob: float = 0.3
    half_body_min_keypoints: int = 9
    upper_body_prob: float = 0.7
    half_body_padding: float = 1.5
    scale_factor: float = 0.3
    rotation_factor: float = 40.0
    rotation_prob: float = 0.6

    def __post_init__(self) -> None:
        for name in ("flip_prob", "half_body_prob", "upper_body_prob", "rotation_prob"):
            check_probability(name, getattr(self, name))
        check_positive_int("half_body_min_keypoints", self.half_body_min_keypoints)
        check_positive_float("half_body_padding", self.half_body_padding)
        sf = self.scale_factor
        if isinstance(sf, bool) or not isinstance(sf, (int, float)) or not 0 <= sf < 1:
            raise ValueError(f"scale_factor must be a number in [0, 1), got {sf!r}")
        rf = self.rotation_factor
        if isinstance(rf, bool) or not isinstance(rf, (int, float)) or not (math.isfinite(rf) and rf >= 0):
            raise ValueError(f"rotation_factor must be a finite number >= 0 (degrees), got {rf!r}")


class AugmentDraw(NamedTuple):
    """The random decisions of one sample."""

    flip: bool
    half_body: bool
    prefer_upper: bool
    scale: float
    rotation: float


def draw_augment(rng: np.random.Generator, config: AugmentConfig) -> AugmentDraw:
    """Draw one sample's augmentation; always consumes the same six numbers from ``rng``.

    Example:
        >>> d = draw_augment(np.random.default_rng(0), AugmentConfig())
        >>> 0.7 <= d.scale <= 1.3 and abs(d.rotation) <= 80
        True
    """
    u = rng.random(4)
    n = rng.standard_normal(2)
    sf, rf = config.scale_factor, config.rotation_factor
    scale = float(np.clip(1.0 + sf * n[0], 1.0 - sf, 1.0 + sf))
    rotation = float(np.clip(rf * n[1], -2.0 * rf, 2.0 * rf)) if u[3] < config.rotation_prob else 0.0
    return AugmentDraw(
        flip=bool(u[0] < config.flip_prob),
        half_body=bool(u[1] < config.half_body_prob),
        prefer_upper=bool(u[2] < config.upper_body_prob),
        scale=scale,
        rotation=rotation,
    )


def half_body_box(
    keypoints: np.ndarray,
    flags: np.ndarray,
    upper_mask: np.ndarray,
    prefer_upper: bool,
    config: AugmentConfig,
    aspect_ratio: float,
    lower_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Centre and scale of a half-body crop, or None when the rule does not apply (MMPose 1.x).

    Args:
        keypoints: ``(K, 2)`` image px; flags: ``(K,)`` COCO flags; upper_mask: ``(K,)`` bool.
        lower_mask: ``(K,)`` bool lower-body keypoints (`visattn.keypoints.KeypointInfo.lower_body`);
            ``None``: every keypoint that is not upper body. Keypoints in neither (a whole-body set's
            face and hands) are in no half.

    Example:
        >>> kp = np.stack([np.arange(10.0), np.arange(10.0) * 2], 1)
        >>> c, s = half_body_box(kp, np.full(10, 2), np.arange(10) < 5, True, AugmentConfig(), 0.75)
        >>> c.tolist(), s.tolist()
        ([2.0, 4.0], [9.0, 12.0])
    """
    labelled = flags > 0
    if int(labelled.sum()) < config.half_body_min_keypoints:
        return None
    upper = labelled & upper_mask
    lower = labelled & (~upper_mask if lower_mask is None else lower_mask)
    ok_upper, ok_lower = int(upper.sum()) >= 2, int(lower.sum()) >= 3
    if not (ok_upper or ok_lower):
        return None
    chosen = upper if (ok_upper and (prefer_upper or not ok_lower)) else lower
    pts = keypoints[chosen]
    center = pts.mean(axis=0)
    w, h = pts.max(axis=0) - pts.min(axis=0)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    return center, np.array([w, h]) * config.half_body_padding
