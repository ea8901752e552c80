"""Procedural occluded-pose images in COCO ``person_keypoints`` format.

[`make_synthetic_coco`][visattn.data.make_synthetic_coco] writes ``num_images`` JPEG files and one COCO
annotation file::

    root/person_keypoints_<split_name>.json
    root/images/<split_name>_<index:06d>.jpg

so several splits can share one ``root`` (the dataset's ``image_root`` is ``root / "images"``).
Each image holds 1 to ``max_people`` articulated figures with the 17 COCO keypoints (plausible limb
lengths and joint angles, random lean, a head disc with eye / nose / ear dots, the person's left limbs
darker than the right ones so that left and right are learnable), on a textured background with
clutter lines, plus occluders placed near random keypoints: textured rectangles / ellipses and
limb-like bars (a limb's width, drawn in the shades the figures' limbs use), so that an occluder can be
mistaken for a limb. With ``crowd=True`` the figures of an image stand close together and overlap
(CrowdPose-like crowding).

Visibility flags come from the rendering itself. While drawing in painter's order an owner map
``(H, W) int32`` records who painted each pixel last: ``0`` background (and clutter),
``owner_id(f, part) = 1 + f * PARTS_PER_FIGURE + part`` for part ``part`` of figure ``f``, and
``-(j + 1)`` for occluder ``j``. Each keypoint ``k`` has a fixed set of own parts
(`KEYPOINT_PARTS`: the limbs meeting at a joint, the torso for shoulders and hips, its dot for a
face keypoint). With ``(x, y)`` the keypoint and ``(round(x), round(y))`` its pixel:

- ``v = 0`` iff the keypoint lies outside the image (``x < 0`` or ``x > W - 1``, same for ``y``);
  as in COCO its coordinates are written as ``0, 0``;
- ``v = 2`` iff it is inside and the owner of its pixel is one of its own figure's own parts;
- ``v = 1`` otherwise: labelled but covered by an occluder, another figure, or one of its own figure's
  other parts (self-occlusion: an arm across the torso, the far ear behind the head).

The cause of each ``v = 1`` is recorded from the same owner map (`OCCLUSION_CAUSES`): ``1`` an object
(an occluder), ``2`` another person, ``3`` the person's own body; ``0`` for keypoints that are not
occluded. The annotation file stores it per keypoint in the extra field ``occlusion_cause`` (COCO tools
ignore it) and [`occlusion_statistics`][visattn.data.occlusion_statistics] counts it.

Every image is rendered from its own generator ``numpy.random.default_rng([seed, index])``, so the
files do not depend on ``num_workers`` and two runs with the same arguments write identical bytes.
"""

from __future__ import annotations

import functools
import json
import math
import multiprocessing
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from visattn._checks import check_positive_int, check_size_pair
from visattn.data._deps import require_cv2
from visattn.keypoints import COCO_KEYPOINTS

__all__ = [
    "KEYPOINT_PARTS",
    "OCCLUSION_CAUSES",
    "PARTS_PER_FIGURE",
    "SyntheticImage",
    "make_synthetic_coco",
    "make_synthetic_splits",
    "occlusion_statistics",
    "owner_id",
    "render_synthetic_image",
]

#: Names of the occlusion-cause codes stored per keypoint (``0``: not occluded).
OCCLUSION_CAUSES: tuple[str, ...] = ("none", "object", "person", "self")
_LIMB_OCCLUDER_PROB = 0.4  # share of occluders drawn as limb-like bars

# Body parts of one figure (indices into the per-figure owner id block).
TORSO, HEAD, NECK = 0, 1, 2
L_UPPER_ARM, L_FOREARM, R_UPPER_ARM, R_FOREARM = 3, 4, 5, 6
L_THIGH, L_SHIN, R_THIGH, R_SHIN = 7, 8, 9, 10
NOSE_DOT, L_EYE_DOT, R_EYE_DOT, L_EAR_DOT, R_EAR_DOT = 11, 12, 13, 14, 15
PARTS_PER_FIGURE = 16

#: Own parts of each COCO keypoint: the keypoint is visible iff its pixel belongs to one of them.
KEYPOINT_PARTS: tuple[tuple[int, ...], ...] = (
    (NOSE_DOT,),
    (L_EYE_DOT,),
    (R_EYE_DOT,),
    (L_EAR_DOT,),
    (R_EAR_DOT,),
    (TORSO, L_UPPER_ARM),
    (TORSO, R_UPPER_ARM),
    (L_UPPER_ARM, L_FOREARM),
    (R_UPPER_ARM, R_FOREARM),
    (L_FOREARM,),
    (R_FOREARM,),
    (TORSO, L_THIGH),
    (TORSO, R_THIGH),
    (L_THIGH, L_SHIN),
    (R_THIGH, R_SHIN),
    (L_SHIN,),
    (R_SHIN,),
)

_OWN = np.zeros((17, PARTS_PER_FIGURE), dtype=bool)
for _k, _parts in enumerate(KEYPOINT_PARTS):
    _OWN[_k, list(_parts)] = True

_SHIFT = 4  # cv2 sub-pixel drawing: coordinates are multiplied by 2**_SHIFT
_ONE = float(1 << _SHIFT)


def owner_id(figure: int, part: int) -> int:
    """Owner-map value of ``part`` of figure ``figure`` (see the module docstring).

    Example:
        >>> owner_id(1, TORSO)
        17
    """
    return 1 + figure * PARTS_PER_FIGURE + part


class SyntheticImage(NamedTuple):
    """One rendered image and its ground truth (N figures).

    Attributes:
        image: ``(H, W, 3)`` uint8 BGR image (as written to JPEG, before compression).
        owner: ``(H, W)`` int32 owner map (0 background, `owner_id` parts, ``-(j + 1)`` occluders).
        keypoints: ``(N, 17, 2)`` float64 true keypoint positions (also outside the image).
        flags: ``(N, 17)`` int64 COCO flags derived from ``owner`` (0 outside, 1 covered, 2 visible).
        boxes: ``(N, 4)`` float64 ``(x, y, w, h)`` boxes around the labelled keypoints, padded.
        figures: ``(N,)`` int64 figure index ``f`` of each annotation (for `owner_id`).
        causes: ``(N, 17)`` int64 occlusion cause of each keypoint (`OCCLUSION_CAUSES`: 0 not
            occluded, 1 object, 2 another person, 3 self); non-zero exactly where ``flags == 1``.
    """

    image: np.ndarray
    owner: np.ndarray
    keypoints: np.ndarray
    flags: np.ndarray
    boxes: np.ndarray
    figures: np.ndarray
    causes: np.ndarray


def _rot(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([v[0] * c - v[1] * s, v[0] * s + v[1] * c])


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random ``(h, w, 3)`` uint8 texture: stripes, checkers or smooth blobs in two colours."""
    cv2 = require_cv2()
    c1 = rng.uniform(0, 255, 3)
    c2 = rng.uniform(0, 255, 3)
    kind = int(rng.integers(3))
    profile = np.linspace(0.0, 1.0, 256)
    if kind == 0:  # stripes: the phase index wraps around in uint8 arithmetic (period 256 units)
        angle = rng.uniform(0, 2 * math.pi)
        step = 256.0 / rng.uniform(4, 24)
        ix = np.round(np.arange(w) * (math.cos(angle) * step)).astype(np.int64).astype(np.uint8)
        iy = np.round(np.arange(h) * (math.sin(angle) * step)).astype(np.int64).astype(np.uint8)
        mix = iy[:, None] + ix[None, :]  # (h, w) uint8, wraps mod 256
        profile = 0.5 + 0.5 * np.sin(np.arange(256) * (2 * math.pi / 256))
    elif kind == 1:
        cell = int(rng.integers(4, 20))
        cx = ((np.arange(w) // cell) % 2).astype(np.uint8)
        cy = ((np.arange(h) // cell) % 2).astype(np.uint8)
        mix = (cy[:, None] ^ cx[None, :]) * np.uint8(255)  # (h, w)
    else:
        gh, gw = max(2, h // int(rng.integers(6, 24))), max(2, w // int(rng.integers(6, 24)))
        small = rng.integers(0, 256, (gh, gw), dtype=np.uint8)
        mix = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    lut = np.clip(c1 + profile[:, None] * (c2 - c1), 0, 255).astype(np.uint8).reshape(1, 256, 3)
    out: np.ndarray = cv2.LUT(cv2.merge((mix, mix, mix)), lut)
    return out


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    cv2 = require_cv2()
    gh, gw = int(rng.integers(2, 6)), int(rng.integers(2, 6))
    small = rng.integers(0, 256, (gh, gw, 3), dtype=np.uint8)
    field = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    alpha = rng.uniform(0.2, 0.6)
    image: np.ndarray = cv2.addWeighted(field, 1.0 - alpha, _texture(rng, h, w), alpha, 0.0)
    for _ in range(int(rng.integers(4, 14))):
        p0 = (int(rng.uniform(-0.1, 1.1) * w * _ONE), int(rng.uniform(-0.1, 1.1) * h * _ONE))
        p1 = (int(rng.uniform(-0.1, 1.1) * w * _ONE), int(rng.uniform(-0.1, 1.1) * h * _ONE))
        colour = tuple(float(c) for c in rng.integers(0, 256, 3))
        cv2.line(image, p0, p1, colour, int(rng.integers(1, 5)), cv2.LINE_AA, _SHIFT)
    return image


class _Figure(NamedTuple):
    keypoints: np.ndarray  # (17, 2)
    ops: list[tuple[str, int, Any, tuple[float, ...]]]  # (kind, part, geometry, colour) painter's order
    torso: float


def _sample_figure(rng: np.random.Generator, h: int, w: int, near: _Figure | None = None) -> _Figure:
    t = rng.uniform(0.11, 0.22) * h  # torso length; the figure is about 3.4 t tall
    lean = float(np.clip(rng.normal(0.0, 0.2), -0.5, 0.5))
    hip = np.array([rng.uniform(0.08, 0.92) * w, rng.uniform(0.42, 0.72) * h])
    if near is not None:  # crowding: stand beside the given figure, close enough to overlap it
        anchor = near.keypoints[11:13].mean(0)  # its hip centre
        offset = rng.uniform(0.35, 0.9) * near.torso * (1.0 if rng.random() < 0.5 else -1.0)
        hip = np.array([np.clip(anchor[0] + offset, 0.05 * w, 0.95 * w), anchor[1] + rng.normal(0, 0.1) * t])
    up = np.array([math.sin(lean), -math.cos(lean)])
    side = np.array([math.cos(lean), math.sin(lean)])  # towards the person's left (+x facing the camera)
    width = rng.uniform(0.65, 1.0)
    neck = hip + up * t
    l_sh, r_sh = neck + side * (0.42 * t * width), neck - side * (0.42 * t * width)
    l_hip, r_hip = hip + side * (0.27 * t * width), hip - side * (0.27 * t * width)

    def limb(start: np.ndarray, sign: float, a1: float, a2: float, l1: float, l2: float) -> list[np.ndarray]:
        down = -up
        d1 = _rot(down, -sign * a1)
        mid = start + d1 * l1 * rng.uniform(0.9, 1.1)
        d2 = _rot(down, -sign * (a1 + a2))
        return [mid, mid + d2 * l2 * rng.uniform(0.9, 1.1)]

    arms, legs = [], []
    for sign, sh, hp in ((1.0, l_sh, l_hip), (-1.0, r_sh, r_hip)):
        arms.append(limb(sh, sign, rng.uniform(-0.5, 2.6), rng.uniform(-2.2, 0.6), 0.62 * t, 0.55 * t))
        legs.append(limb(hp, sign, rng.uniform(-0.25, 0.7), rng.uniform(-0.6, 0.5), 0.85 * t, 0.8 * t))

    r = t * rng.uniform(0.24, 0.3)
    tilt = lean + rng.normal(0.0, 0.15)
    h_up = np.array([math.sin(tilt), -math.cos(tilt)])
    h_side = np.array([math.cos(tilt), math.sin(tilt)])
    head = neck + up * (0.12 * t) + h_up * r
    yaw = float(np.clip(rng.normal(0.0, 0.4), -1.2, 1.2))

    def face(azimuth: float, height: float, out: float) -> tuple[np.ndarray, bool]:
        pos = head + h_side * (out * r * math.sin(azimuth + yaw)) + h_up * (height * r)
        return pos, math.cos(azimuth + yaw) > -0.25

    nose, _ = face(0.0, -0.1, 0.9)
    l_eye, _ = face(0.5, 0.22, 0.85)
    r_eye, _ = face(-0.5, 0.22, 0.85)
    l_ear, l_ear_front = face(math.pi / 2, 0.05, 0.95)
    r_ear, r_ear_front = face(-math.pi / 2, 0.05, 0.95)

    face_and_arms = [
        nose,
        l_eye,
        r_eye,
        l_ear,
        r_ear,
        l_sh,
        r_sh,
        arms[0][0],
        arms[1][0],
        arms[0][1],
        arms[1][1],
    ]
    kps = np.stack([*face_and_arms, l_hip, r_hip, legs[0][0], legs[1][0], legs[0][1], legs[1][1]])

    base = rng.uniform(50, 210, 3)
    dark = tuple(float(c) for c in base * 0.45)
    light = tuple(float(c) for c in base * 0.45 + 0.5 * 255)
    torso_c = tuple(float(c) for c in base)
    skin = tuple(float(c) for c in rng.uniform(90, 230, 3))
    arm_w, leg_w = max(3.0, 0.13 * t), max(4.0, 0.17 * t)
    dot = max(1.5, 0.16 * r)

    def side_ops(left: bool) -> tuple[list[Any], list[Any]]:
        i = 0 if left else 1
        colour = dark if left else light
        sh, hp = (l_sh, l_hip) if left else (r_sh, r_hip)
        parts = (
            (L_UPPER_ARM, L_FOREARM, L_THIGH, L_SHIN) if left else (R_UPPER_ARM, R_FOREARM, R_THIGH, R_SHIN)
        )
        leg = [
            ("line", parts[2], (hp, legs[i][0], leg_w), colour),
            ("line", parts[3], (legs[i][0], legs[i][1], leg_w * 0.85), colour),
        ]
        arm = [
            ("line", parts[0], (sh, arms[i][0], arm_w), colour),
            ("line", parts[1], (arms[i][0], arms[i][1], arm_w * 0.85), colour),
        ]
        return leg, arm

    far_left = bool(rng.random() < 0.5)
    far_leg, far_arm = side_ops(far_left)
    near_leg, near_arm = side_ops(not far_left)
    dots = [
        ("circle", NOSE_DOT, (nose, dot), (60.0, 60.0, 210.0), True),
        ("circle", L_EYE_DOT, (l_eye, dot), (40.0, 20.0, 20.0), True),
        ("circle", R_EYE_DOT, (r_eye, dot), (20.0, 20.0, 40.0), True),
        ("circle", L_EAR_DOT, (l_ear, dot * 1.2), dark, l_ear_front),
        ("circle", R_EAR_DOT, (r_ear, dot * 1.2), light, r_ear_front),
    ]
    ops: list[tuple[str, int, Any, tuple[float, ...]]] = [*far_leg, *far_arm]
    ops.append(("poly", TORSO, np.stack([l_sh, r_sh, r_hip, l_hip]), torso_c))
    ops.append(("line", NECK, (neck, head, max(2.0, 0.12 * t)), skin))
    ops += [d[:4] for d in dots if not d[4]]  # far side of the head: drawn first, hidden by the disc
    ops.append(("circle", HEAD, (head, r), skin))
    ops += [d[:4] for d in dots if d[4]]
    ops += [*near_leg, *near_arm]
    return _Figure(kps, ops, t)


def _pt(p: np.ndarray) -> tuple[int, int]:
    return round(float(p[0]) * _ONE), round(float(p[1]) * _ONE)


def _draw(image: np.ndarray, owner: np.ndarray, fig: _Figure, f: int) -> None:
    cv2 = require_cv2()
    for kind, part, geo, colour in fig.ops:
        oid = (float(owner_id(f, part)),)
        for target, value in ((image, colour), (owner, oid)):
            if kind == "line":
                p0, p1, thick = geo
                cv2.line(target, _pt(p0), _pt(p1), value, max(1, round(thick)), cv2.LINE_8, _SHIFT)
            elif kind == "circle":
                c, rad = geo
                cv2.circle(target, _pt(c), round(float(rad) * _ONE), value, -1, cv2.LINE_8, _SHIFT)
            else:
                poly = np.round(geo * _ONE).astype(np.int32)
                cv2.fillPoly(target, [poly], value, cv2.LINE_8, _SHIFT)


def _draw_limb_occluder(
    rng: np.random.Generator, image: np.ndarray, owner: np.ndarray, centre: np.ndarray, torso: float, j: int
) -> None:
    """A bar of a limb's length and width in a limb shade (as the figures use) through ``centre``."""
    cv2 = require_cv2()
    length = torso * rng.uniform(0.5, 0.9)
    width = max(3.0, torso * rng.uniform(0.12, 0.18))
    angle = rng.uniform(0, math.pi)
    along = rng.uniform(-0.4, 0.4)
    direction = np.array([math.cos(angle), math.sin(angle)])
    p0 = centre + direction * length * (along - 0.5)
    p1 = centre + direction * length * (along + 0.5)
    base = rng.uniform(50, 210, 3)
    colour = base * 0.45 + (0.5 * 255 if rng.random() < 0.5 else 0.0)
    for target, value in ((image, tuple(float(c) for c in colour)), (owner, (float(-(j + 1)),))):
        cv2.line(target, _pt(p0), _pt(p1), value, max(1, round(width)), cv2.LINE_8, _SHIFT)


def _draw_occluder(
    rng: np.random.Generator, image: np.ndarray, owner: np.ndarray, centre: np.ndarray, size: float, j: int
) -> None:
    cv2 = require_cv2()
    h, w = owner.shape
    a, b = size * rng.uniform(0.5, 1.0), size * rng.uniform(0.5, 1.0)
    c = centre + rng.uniform(-0.5, 0.5, 2) * np.array([a, b])
    angle = rng.uniform(0, 180)
    reach = math.hypot(a, b) + 2
    x0, y0 = max(0, int(c[0] - reach)), max(0, int(c[1] - reach))
    x1, y1 = min(w, int(c[0] + reach) + 1), min(h, int(c[1] + reach) + 1)
    texture_seed = rng.integers(2**31)  # drawn even when the occluder is off-image (stable streams)
    ellipse = bool(rng.random() < 0.5)
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    local = c - np.array([x0, y0])
    if ellipse:
        axes = (round(float(a) * _ONE), round(float(b) * _ONE))
        cv2.ellipse(mask, _pt(local), axes, angle, 0, 360, (1,), -1, cv2.LINE_8, _SHIFT)
    else:
        corners = np.array([[-a, -b], [a, -b], [a, b], [-a, b]])
        th = math.radians(angle)
        rotm = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
        poly = np.round((corners @ rotm.T + local) * _ONE).astype(np.int32)
        cv2.fillPoly(mask, [poly], (1,), cv2.LINE_8, _SHIFT)
    sel = mask.astype(bool)
    tex = _texture(np.random.default_rng(texture_seed), y1 - y0, x1 - x0)
    image[y0:y1, x0:x1][sel] = tex[sel]
    owner[y0:y1, x0:x1][sel] = -(j + 1)


def _flags(owner: np.ndarray, keypoints: np.ndarray, figure: int) -> np.ndarray:
    """COCO flags of one figure's ``(17, 2)`` keypoints from the owner map (vectorised)."""
    h, w = owner.shape
    x, y = keypoints[:, 0], keypoints[:, 1]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    rx = np.clip(np.rint(x), 0, w - 1).astype(np.int64)
    ry = np.clip(np.rint(y), 0, h - 1).astype(np.int64)
    part = owner[ry, rx].astype(np.int64) - owner_id(figure, 0)  # (17,)
    ok = (part >= 0) & (part < PARTS_PER_FIGURE)
    own = ok & _OWN[np.arange(17), np.clip(part, 0, PARTS_PER_FIGURE - 1)]
    return np.where(inside, np.where(own, 2, 1), 0).astype(np.int64)


def _causes(owner: np.ndarray, keypoints: np.ndarray, flags: np.ndarray, figure: int) -> np.ndarray:
    """Occlusion cause of each of one figure's ``(17,)`` keypoints (`OCCLUSION_CAUSES`)."""
    h, w = owner.shape
    rx = np.clip(np.rint(keypoints[:, 0]), 0, w - 1).astype(np.int64)
    ry = np.clip(np.rint(keypoints[:, 1]), 0, h - 1).astype(np.int64)
    who = owner[ry, rx].astype(np.int64)  # (17,)
    first = owner_id(figure, 0)
    own_figure = (who >= first) & (who < first + PARTS_PER_FIGURE)
    # an occluded keypoint on the background (a joint just off its own drawn part) counts as self
    cause = np.where(who < 0, 1, np.where((who > 0) & ~own_figure, 2, 3))
    return np.where(flags == 1, cause, 0).astype(np.int64)


def _box(keypoints: np.ndarray, flags: np.ndarray, h: int, w: int) -> np.ndarray:
    pts = keypoints[flags > 0]
    lo, hi = pts.min(0), pts.max(0)
    pad = 0.08 * float((hi - lo).max()) + 3.0
    lo = np.maximum(lo - pad, 0.0)
    hi = np.minimum(hi + pad, np.array([w, h], dtype=np.float64))
    return np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]])


def render_synthetic_image(
    seed: int,
    index: int,
    *,
    image_size: Sequence[int] = (240, 320),
    max_people: int = 2,
    occluder_count: Sequence[int] = (1, 4),
    occlusion_level: float = 1.0,
    crowd: bool = False,
) -> SyntheticImage:
    """Render image ``index`` of the synthetic set with seed ``seed`` (no files written).

    Args:
        seed: non-negative dataset seed.
        index: non-negative image index; the generator is ``default_rng([seed, index])``.
        image_size: ``(H, W)``.
        max_people: figures per image are drawn uniformly from ``1 .. max_people``.
        occluder_count: ``(low, high)`` occluders per image before scaling by ``occlusion_level``.
        occlusion_level: scales the occluder count and size; ``0`` leaves only self- and
            figure-figure occlusion.
        crowd: CrowdPose-like crowding: 2 to ``max_people`` figures (``max_people >= 2``), each placed
            beside the previous one so that neighbours overlap.

    Returns:
        a [`SyntheticImage`][visattn.data.SyntheticImage]; its ``flags`` follow the owner-map rule of the
        module docstring.

    Example:
        >>> s = render_synthetic_image(0, 0, image_size=(60, 80))
        >>> s.image.shape, s.owner.shape, s.keypoints.shape[1:], s.flags.shape[1:]
        ((60, 80, 3), (60, 80), (17, 2), (17,))
    """
    _check_int("seed", seed, 0)
    _check_int("index", index, 0)
    h, w = check_size_pair("image_size", image_size)
    _check_int("max_people", max_people, 1)
    lo, hi = _check_range("occluder_count", occluder_count)
    level = _check_level(occlusion_level)
    if not isinstance(crowd, bool):
        raise TypeError(f"crowd must be a bool, got {type(crowd).__name__} {crowd!r}")
    if crowd and max_people < 2:
        raise ValueError(f"crowd=True needs max_people >= 2, got max_people={max_people}")

    rng = np.random.default_rng([seed, index])
    image = _background(rng, h, w)
    owner = np.zeros((h, w), np.int32)
    n_people = int(rng.integers(2 if crowd else 1, max_people + 1))
    figures: list[_Figure] = []
    for _ in range(n_people):
        figures.append(_sample_figure(rng, h, w, figures[-1] if crowd and figures else None))
    for f, fig in enumerate(figures):
        _draw(image, owner, fig, f)
    n_occ = round(int(rng.integers(lo, hi + 1)) * level)
    for j in range(n_occ):
        f = int(rng.integers(n_people))
        k = int(rng.integers(17))
        centre = figures[f].keypoints[k]
        if rng.random() < _LIMB_OCCLUDER_PROB:
            _draw_limb_occluder(rng, image, owner, centre, figures[f].torso * math.sqrt(level), j)
            continue
        size = figures[f].torso * rng.uniform(0.25, 0.6) * math.sqrt(level)
        _draw_occluder(rng, image, owner, centre, max(size, 2.0), j)

    kps, flags, boxes, figs, causes = [], [], [], [], []
    for f, fig in enumerate(figures):
        fl = _flags(owner, fig.keypoints, f)
        if not fl.any():
            continue
        kps.append(fig.keypoints)
        flags.append(fl)
        boxes.append(_box(fig.keypoints, fl, h, w))
        figs.append(f)
        causes.append(_causes(owner, fig.keypoints, fl, f))
    n = len(kps)
    return SyntheticImage(
        image=image,
        owner=owner,
        keypoints=np.stack(kps) if n else np.zeros((0, 17, 2)),
        flags=np.stack(flags) if n else np.zeros((0, 17), np.int64),
        boxes=np.stack(boxes) if n else np.zeros((0, 4)),
        figures=np.array(figs, dtype=np.int64),
        causes=np.stack(causes) if n else np.zeros((0, 17), np.int64),
    )


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def _check_range(name: str, value: Any) -> tuple[int, int]:
    if not isinstance(value, Sequence) or len(value) != 2:
        raise TypeError(f"{name} must be a pair (low, high) of ints, got {value!r}")
    lo, hi = _check_int(name, value[0], 0), _check_int(name, value[1], 0)
    if hi < lo:
        raise ValueError(f"{name} must satisfy low <= high, got {tuple(value)!r}")
    return lo, hi


def _check_level(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"occlusion_level must be a finite number >= 0, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"occlusion_level must be a finite number >= 0, got {value!r}")
    return float(value)


def _write_one(
    index: int,
    *,
    seed: int,
    image_dir: Path,
    split_name: str,
    image_size: tuple[int, int],
    max_people: int,
    occluder_count: tuple[int, int],
    occlusion_level: float,
    crowd: bool,
    jpeg_quality: int,
) -> tuple[str, list[dict[str, Any]]]:
    cv2 = require_cv2()
    sample = render_synthetic_image(
        seed,
        index,
        image_size=image_size,
        max_people=max_people,
        occluder_count=occluder_count,
        occlusion_level=occlusion_level,
        crowd=crowd,
    )
    name = f"{split_name}_{index:06d}.jpg"
    ok, buf = cv2.imencode(".jpg", sample.image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:  # pragma: no cover - cv2 failure
        raise OSError(f"cv2.imencode failed for synthetic image {name}")
    (image_dir / name).write_bytes(buf.tobytes())
    anns = []
    for kp, fl, box, cause in zip(sample.keypoints, sample.flags, sample.boxes, sample.causes):
        kp = np.where(fl[:, None] > 0, kp, 0.0)
        flat = np.concatenate([np.round(kp, 2), fl[:, None].astype(np.float64)], axis=1).reshape(-1)
        values: list[float | int] = [float(v) for v in flat]
        values[2::3] = [int(v) for v in fl]
        bw, bh = round(float(box[2]), 2), round(float(box[3]), 2)
        anns.append(
            {
                "category_id": 1,
                "keypoints": values,
                "num_keypoints": int((fl > 0).sum()),
                "bbox": [round(float(box[0]), 2), round(float(box[1]), 2), bw, bh],
                "area": round(0.5 * bw * bh, 2),
                "iscrowd": 0,
                "occlusion_cause": [int(c) for c in cause],
            }
        )
    return name, anns


def make_synthetic_coco(
    root: str | Path,
    num_images: int,
    *,
    seed: int = 0,
    image_size: Sequence[int] = (240, 320),
    max_people: int = 2,
    occluder_count: Sequence[int] = (1, 4),
    occlusion_level: float = 1.0,
    crowd: bool = False,
    jpeg_quality: int = 90,
    split_name: str = "train",
    num_workers: int = 0,
) -> Path:
    """Write a synthetic occluded-pose set in COCO ``person_keypoints`` format.

    Layout: ``root/person_keypoints_<split_name>.json`` and ``root/images/<split_name>_<index:06d>.jpg``
    (image ids are ``index + 1``, annotation ids count from 1 in image order). Keypoints hold
    ``[x, y, v] * 17`` with the COCO flags 0 / 1 / 2 derived from the rendering (module docstring);
    ``bbox`` surrounds the labelled keypoints with a small margin, ``area`` is half the box area (a
    stand-in for the segmentation area COCO uses as the OKS scale). The file loads with
    ``pycocotools.coco.COCO`` and [`TopDownCocoDataset`][visattn.data.TopDownCocoDataset]. With the defaults
    about 20-30% of labelled keypoints are occluded (v = 1), by objects, other people and the person's own
    body ([`occlusion_statistics`][visattn.data.occlusion_statistics] counts them from the ``occlusion_cause``
    field of each annotation).

    Args:
        root: output folder (created).
        num_images: number of images.
        seed: non-negative seed; the same arguments always write the same bytes.
        image_size: ``(H, W)`` of the images.
        max_people: at most this many figures per image (at least one).
        occluder_count: ``(low, high)`` occluders per image, scaled by ``occlusion_level``.
        occlusion_level: scales occluder count and size (``0``: no occluders).
        crowd: CrowdPose-like crowding (see [`render_synthetic_image`][visattn.data.render_synthetic_image]).
        jpeg_quality: JPEG quality 1-100.
        split_name: prefix of the JSON and image names.
        num_workers: processes to render with (0: in this process); output does not depend on it.

    Returns:
        path of the annotation JSON.

    Example:
        >>> import json, tempfile
        >>> tmp = tempfile.mkdtemp()
        >>> ann = make_synthetic_coco(tmp, 2, image_size=(48, 64))
        >>> data = json.loads(ann.read_text())
        >>> ann.name, len(data["images"]), data["categories"][0]["keypoints"][0]
        ('person_keypoints_train.json', 2, 'nose')
    """
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path (str or os.PathLike), got {type(root).__name__} {root!r}")
    n = _check_int("num_images", num_images, 1)
    seed = _check_int("seed", seed, 0)
    size = check_size_pair("image_size", image_size)
    max_people = _check_int("max_people", max_people, 1)
    occ = _check_range("occluder_count", occluder_count)
    level = _check_level(occlusion_level)
    if not isinstance(crowd, bool):
        raise TypeError(f"crowd must be a bool, got {type(crowd).__name__} {crowd!r}")
    if crowd and max_people < 2:
        raise ValueError(f"crowd=True needs max_people >= 2, got max_people={max_people}")
    quality = _check_int("jpeg_quality", jpeg_quality, 1)
    if quality > 100:
        raise ValueError(f"jpeg_quality must be in [1, 100], got {quality}")
    workers = _check_int("num_workers", num_workers, 0)
    if not isinstance(split_name, str):
        raise TypeError(f"split_name must be a non-empty file-name-safe str, got {type(split_name).__name__}")
    if not split_name or any(c in split_name for c in "/\\"):
        raise ValueError(f"split_name must be a non-empty file-name-safe string, got {split_name!r}")
    require_cv2()

    root = Path(root)
    image_dir = root / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    job = functools.partial(
        _write_one,
        seed=seed,
        image_dir=image_dir,
        split_name=split_name,
        image_size=size,
        max_people=max_people,
        occluder_count=occ,
        occlusion_level=level,
        crowd=crowd,
        jpeg_quality=quality,
    )
    if workers == 0:
        results = [job(i) for i in range(n)]
    else:
        with multiprocessing.get_context().Pool(workers) as pool:
            results = pool.map(job, range(n), chunksize=max(1, min(64, n // (4 * workers))))

    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for i, (name, anns) in enumerate(results):
        images.append({"id": i + 1, "file_name": name, "height": size[0], "width": size[1]})
        for ann in anns:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, **ann})
    info = COCO_KEYPOINTS
    category = {
        "id": 1,
        "name": "person",
        "supercategory": "person",
        "keypoints": list(info.names),
        "skeleton": [[a + 1, b + 1] for a, b in info.skeleton],
    }
    data = {
        "info": {"description": f"visattn synthetic occluded poses (seed {seed})", "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [category],
    }
    ann_file = root / f"person_keypoints_{split_name}.json"
    ann_file.write_text(json.dumps(data, separators=(",", ":")))
    return ann_file


def occlusion_statistics(annotations: str | os.PathLike[str] | dict[str, Any]) -> dict[str, float]:
    """Occlusion statistics of a synthetic annotation file (or its loaded JSON dict).

    Args:
        annotations: path of a file written by [`make_synthetic_coco`][visattn.data.make_synthetic_coco], or
            its parsed content.

    Returns:
        ``{"instances", "labelled", "occluded", "occluded_share", "object_share", "person_share",
        "self_share"}``: counts of instances, labelled keypoints (v > 0) and occluded ones (v = 1), the
        occluded share of the labelled keypoints, and each cause's share of the occluded keypoints.

    Raises:
        ValueError: an annotation lacks the ``occlusion_cause`` field or it disagrees with the flags.

    Example:
        >>> import tempfile
        >>> stats = occlusion_statistics(make_synthetic_coco(tempfile.mkdtemp(), 4, image_size=(96, 128)))
        >>> round(stats["object_share"] + stats["person_share"] + stats["self_share"], 6)
        1.0
    """
    if isinstance(annotations, dict):
        data = annotations
    elif isinstance(annotations, (str, os.PathLike)):
        data = json.loads(Path(annotations).read_text())
    else:
        raise TypeError(
            f"annotations must be a path or a dict, got {type(annotations).__name__} {annotations!r}"
        )
    counts = np.zeros(len(OCCLUSION_CAUSES), dtype=np.int64)
    labelled = instances = 0
    for ann in data.get("annotations", []):
        flags = np.asarray(ann["keypoints"][2::3], dtype=np.int64)
        if "occlusion_cause" not in ann:
            raise ValueError(
                f"annotation {ann.get('id')!r} has no occlusion_cause field (not a synthetic set?)"
            )
        cause = np.asarray(ann["occlusion_cause"], dtype=np.int64)
        if cause.shape != flags.shape or not np.array_equal(cause > 0, flags == 1):
            raise ValueError(
                f"annotation {ann.get('id')!r}: occlusion_cause must be non-zero exactly where v == 1, "
                f"got causes {cause.tolist()} for flags {flags.tolist()}"
            )
        counts += np.bincount(cause, minlength=len(OCCLUSION_CAUSES))
        labelled += int((flags > 0).sum())
        instances += 1
    occluded = int(counts[1:].sum())
    share = lambda n: n / occluded if occluded else float("nan")  # noqa: E731
    return {
        "instances": float(instances),
        "labelled": float(labelled),
        "occluded": float(occluded),
        "occluded_share": occluded / labelled if labelled else float("nan"),
        "object_share": share(int(counts[1])),
        "person_share": share(int(counts[2])),
        "self_share": share(int(counts[3])),
    }


def make_synthetic_splits(
    root: str | os.PathLike[str],
    train: int,
    val: int,
    *,
    seed: int = 0,
    num_workers: int = 0,
    on_regenerate: Callable[[str], None] | None = None,
) -> dict[str, tuple[Path, Path]]:
    """A synthetic train and val split under ``root``, generated only when missing or of other sizes.

    ``root/train`` holds ``train`` images of seed ``seed``, ``root/val`` ``val`` images of seed
    ``seed + 10000``; ``root/synthetic.json`` records ``{"train", "val", "seed"}``, so a second call with
    the same arguments reuses the files and one with other arguments regenerates them.

    Args:
        root: output folder.
        train: number of training images (>= 1).
        val: number of validation images (>= 1).
        seed: seed of the training split.
        num_workers: rendering processes (the files do not depend on it).
        on_regenerate: called with a one-line note when an existing set of other sizes is replaced
            (e.g. ``print``).

    Returns:
        ``{"train": (annotation file, image folder), "val": (...)}``.

    Example:
        >>> import tempfile
        >>> splits = make_synthetic_splits(tempfile.mkdtemp(), 2, 1)
        >>> sorted(splits), splits["val"][0].name
        (['train', 'val'], 'person_keypoints_val.json')
    """
    folder = Path(root)
    spec = {"train": check_positive_int("train", train), "val": check_positive_int("val", val), "seed": seed}
    splits = ("train", "val")
    out = {
        name: (folder / name / f"person_keypoints_{name}.json", folder / name / "images") for name in splits
    }
    spec_file = folder / "synthetic.json"
    found = json.loads(spec_file.read_text()) if spec_file.is_file() else None
    if found is not None and found != spec and on_regenerate is not None:
        on_regenerate(f"note: regenerating the synthetic set in {folder} ({found} -> {spec})")
    if found != spec or not all(ann.is_file() for ann, _ in out.values()):
        make_synthetic_coco(folder / "train", train, seed=seed, num_workers=num_workers)
        make_synthetic_coco(
            folder / "val", val, seed=seed + 10_000, split_name="val", num_workers=num_workers
        )
        spec_file.write_text(json.dumps(spec))
    return out
