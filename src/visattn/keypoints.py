"""Keypoint metadata: names, flip pairs, skeleton edges, OKS sigmas and body halves.

Indices are 0-based. ``KeypointInfo`` describes any keypoint set; presets for the common public sets
are registered by name ([`list_keypoint_sets`][visattn.keypoints.list_keypoint_sets]), and a custom set is one
constructor call or one JSON / YAML file ([`load_keypoint_info`][visattn.keypoints.load_keypoint_info]).
[`get_keypoint_info`][visattn.keypoints.get_keypoint_info] takes any of the three.

The tables follow the MMPose dataset metadata (``configs/_base_/datasets/<name>.py``); OKS sigmas
come from each dataset's own evaluation code where it has one; the table says where they come from:

| registry name | K | OKS sigmas |
|---|---|---|
| `coco` | 17 | COCO keypoint evaluation (cocoapi) |
| `coco_wholebody` | 133 | COCO-WholeBody evaluation (body, foot, face, hand tables) |
| `crowdpose` | 14 | CrowdPose evaluation (crowdposetools) |
| `mpii` | 16 | none official (MPII uses PCKh); MMPose's COCO-derived values |
| `aic` | 14 | AI Challenger evaluation (its ``delta`` / 2) |
| `halpe` | 136 | Halpe-FullBody evaluation (halpecocotools) |
| `halpe26` | 26 | none official; MMPose's values (``halpe26.py``) |
| `ochuman` | 17 | COCO's (OCHuman is evaluated with the COCO tools) |
| `onehand10k` | 21 | none official (PCK / AUC); COCO-WholeBody hand sigmas |
| `coco_wholebody_hand` | 21 | COCO-WholeBody evaluation, hand table |
| `ap10k` | 17 | none official; MMPose's values adapted from COCO |
| `300w` | 68 | none official (NME); COCO-WholeBody face sigmas (same layout) |
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "AIC_KEYPOINTS",
    "AP10K_KEYPOINTS",
    "COCO_KEYPOINTS",
    "COCO_WHOLEBODY_HAND_KEYPOINTS",
    "COCO_WHOLEBODY_KEYPOINTS",
    "CROWDPOSE_KEYPOINTS",
    "FACE300W_KEYPOINTS",
    "HALPE26_KEYPOINTS",
    "HALPE_KEYPOINTS",
    "MPII_KEYPOINTS",
    "OCHUMAN_KEYPOINTS",
    "ONEHAND10K_KEYPOINTS",
    "KeypointInfo",
    "get_keypoint_info",
    "list_keypoint_sets",
    "load_keypoint_info",
]


@dataclass(frozen=True)
class KeypointInfo:
    """Metadata of a keypoint set.

    Attributes:
        name: dataset name, e.g. ``"coco"``.
        names: keypoint names, length K, all distinct.
        flip_pairs: pairs ``(left, right)`` swapped by a horizontal flip.
        skeleton: edges ``(a, b)`` drawn between keypoints.
        sigmas: per-keypoint OKS falloff constants ``k_i`` (length K).
        upper_body: indices counted as upper body by half-body augmentation.
        lower_body: indices counted as lower body (disjoint from ``upper_body``; sets such as hands
            and faces leave both empty).

    Example:
        >>> info = KeypointInfo("toy", ("l", "r"), ((0, 1),), ((0, 1),), (0.1, 0.1), (0, 1))
        >>> info.flip_index, info.lower_body
        ((1, 0), ())
    """

    name: str
    names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]
    upper_body: tuple[int, ...]
    lower_body: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        k = len(self.names)
        if k == 0:
            raise ValueError("names must list at least one keypoint, got 0")
        if len(set(self.names)) != k:
            duplicates = sorted({n for n in self.names if self.names.count(n) > 1})
            raise ValueError(f"names must be distinct, got duplicates {duplicates}")
        if len(self.sigmas) != k:
            raise ValueError(f"sigmas must have length K={k}, got {len(self.sigmas)}")
        seen: set[int] = set()
        for a, b in (*self.flip_pairs, *self.skeleton):
            if not (0 <= a < k and 0 <= b < k):
                raise ValueError(f"keypoint index pair {(a, b)} out of range for K={k}")
        for a, b in self.flip_pairs:
            if a in seen or b in seen or a == b:
                raise ValueError(f"flip_pairs must be disjoint pairs of distinct indices, got {(a, b)}")
            seen.update((a, b))
        for field_name in ("upper_body", "lower_body"):
            indices = getattr(self, field_name)
            if any(not 0 <= i < k for i in indices):
                raise ValueError(f"{field_name} indices must lie in [0, {k}), got {indices}")
        both = sorted(set(self.upper_body) & set(self.lower_body))
        if both:
            raise ValueError(f"upper_body and lower_body must be disjoint, both contain {both}")

    @property
    def num_keypoints(self) -> int:
        """K, the number of keypoints."""
        return len(self.names)

    @property
    def flip_index(self) -> tuple[int, ...]:
        """Permutation ``p`` such that ``flipped[k] = original[p[k]]`` (an involution)."""
        index = list(range(self.num_keypoints))
        for a, b in self.flip_pairs:
            index[a], index[b] = b, a
        return tuple(index)

    def flip_index_tensor(self, device: torch.device | str | None = None) -> torch.Tensor:
        """[`flip_index`][visattn.keypoints.KeypointInfo.flip_index] as a ``long`` tensor of shape
        ``(K,)``."""
        return torch.tensor(self.flip_index, dtype=torch.long, device=device)

    def sigmas_tensor(self, device: torch.device | str | None = None) -> torch.Tensor:
        """`sigmas` as a ``float32`` tensor of shape ``(K,)``."""
        return torch.tensor(self.sigmas, dtype=torch.float32, device=device)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> KeypointInfo:
        """Read a keypoint set from a JSON (or, with PyYAML installed, YAML) file.

        Same as [`load_keypoint_info`][visattn.keypoints.load_keypoint_info], which documents the format.
        """
        return load_keypoint_info(path)


def _left_right_pairs(
    names: Sequence[str], left: str = "left_", right: str = "right_"
) -> tuple[tuple[int, int], ...]:
    """Flip pairs ``(i, j)`` of every ``names[i] = left + x`` whose mirror ``right + x`` exists."""
    index = {n: i for i, n in enumerate(names)}
    return tuple(
        (i, index[right + n[len(left) :]])
        for i, n in enumerate(names)
        if n.startswith(left) and right + n[len(left) :] in index
    )


def _shift(pairs: Iterable[tuple[int, int]], offset: int) -> tuple[tuple[int, int], ...]:
    return tuple((a + offset, b + offset) for a, b in pairs)


# fmt: off
# ------------------------------------------------------------------ COCO family
_COCO_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
_COCO_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
    (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)
# cocoapi ``COCOeval`` keypoint sigmas (its table stores 10 * sigma).
_COCO_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
    0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)

COCO_KEYPOINTS = KeypointInfo(
    name="coco",
    names=_COCO_NAMES,
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    skeleton=_COCO_SKELETON,
    sigmas=_COCO_SIGMAS,
    upper_body=tuple(range(11)),
    lower_body=tuple(range(11, 17)),
)

OCHUMAN_KEYPOINTS = replace(COCO_KEYPOINTS, name="ochuman")

# Hands: the 21-point layout of COCO-WholeBody and OneHand10K (root, then 4 joints per finger).
_FINGERS = ("thumb", "forefinger", "middle_finger", "ring_finger", "pinky_finger")
_HAND_JOINTS = tuple(f"{finger}{j}" for finger in _FINGERS for j in range(1, 5))
_HAND_SKELETON = tuple(  # root -> first joint, then along each finger
    edge for f in range(5) for edge in ((0, 1 + 4 * f), *((1 + 4 * f + j, 2 + 4 * f + j) for j in range(3)))
)
# COCO-WholeBody evaluation (``myeval_wholebody.py``), the same table for both hands.
_HAND_SIGMAS = (
    0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035, 0.018, 0.024,
    0.022, 0.026, 0.017, 0.021, 0.021, 0.032, 0.020, 0.019, 0.022, 0.031,
)

# Faces: the 68-point iBUG / 300W markup (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67).
_FACE68_FLIP_PAIRS = (
    *((i, 16 - i) for i in range(8)),              # jaw line
    *((17 + i, 26 - i) for i in range(5)),         # eyebrows
    (31, 35), (32, 34),                            # nostrils
    (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),  # eyes
    (48, 54), (49, 53), (50, 52), (55, 59), (56, 58),            # outer lip
    (60, 64), (61, 63), (65, 67),                                # inner lip
)
# COCO-WholeBody evaluation (``myeval_wholebody.py``), face table.
_FACE68_SIGMAS = (
    0.042, 0.043, 0.044, 0.043, 0.040, 0.035, 0.031, 0.025, 0.020, 0.023, 0.029, 0.032, 0.037, 0.038,
    0.043, 0.041, 0.045, 0.013, 0.012, 0.011, 0.011, 0.012, 0.012, 0.011, 0.011, 0.013, 0.015, 0.009,
    0.007, 0.007, 0.007, 0.012, 0.009, 0.008, 0.016, 0.010, 0.017, 0.011, 0.009, 0.011, 0.009, 0.007,
    0.013, 0.008, 0.011, 0.012, 0.010, 0.034, 0.008, 0.008, 0.009, 0.008, 0.008, 0.007, 0.010, 0.008,
    0.009, 0.009, 0.009, 0.007, 0.007, 0.008, 0.011, 0.008, 0.008, 0.008, 0.010, 0.008,
)

# COCO-WholeBody: 17 body, 6 foot, 68 face, 21 left hand, 21 right hand (the order of its evaluation).
_FOOT_NAMES = (
    "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel",
)
_WHOLEBODY_NAMES = (
    *_COCO_NAMES,
    *_FOOT_NAMES,
    *(f"face-{i}" for i in range(68)),
    *(f"left_{n}" for n in ("hand_root", *_HAND_JOINTS)),
    *(f"right_{n}" for n in ("hand_root", *_HAND_JOINTS)),
)
COCO_WHOLEBODY_KEYPOINTS = KeypointInfo(
    name="coco_wholebody",
    names=_WHOLEBODY_NAMES,
    flip_pairs=_left_right_pairs(_WHOLEBODY_NAMES) + _shift(_FACE68_FLIP_PAIRS, 23),
    skeleton=(
        *_COCO_SKELETON,
        (15, 17), (15, 18), (15, 19), (16, 20), (16, 21), (16, 22),   # ankles -> feet
        *_shift(_HAND_SKELETON, 91),
        *_shift(_HAND_SKELETON, 112),
    ),
    sigmas=(
        *_COCO_SIGMAS,
        0.068, 0.066, 0.066, 0.092, 0.094, 0.094,  # foot
        *_FACE68_SIGMAS,
        *_HAND_SIGMAS,
        *_HAND_SIGMAS,
    ),
    upper_body=tuple(range(11)),      # as MMPose: face and hands belong to neither half
    lower_body=tuple(range(11, 23)),
)

COCO_WHOLEBODY_HAND_KEYPOINTS = KeypointInfo(
    name="coco_wholebody_hand",
    names=("wrist", *_HAND_JOINTS),
    flip_pairs=(),  # one hand per crop: a flip turns a left hand into a right one, same points
    skeleton=_HAND_SKELETON,
    sigmas=_HAND_SIGMAS,
    upper_body=(),
)

# OneHand10K publishes no OKS sigmas (it is evaluated by PCK, AUC and EPE); the COCO-WholeBody hand
# sigmas are used for the same 21-point layout.
ONEHAND10K_KEYPOINTS = replace(COCO_WHOLEBODY_HAND_KEYPOINTS, name="onehand10k")

# 300W publishes no OKS sigmas (it is evaluated by NME); COCO-WholeBody annotates faces with the same
# 68-point markup, so its face sigmas are used. MMPose names the points kpt-0 ... kpt-67 and draws no
# skeleton.
FACE300W_KEYPOINTS = KeypointInfo(
    name="300w",
    names=tuple(f"kpt-{i}" for i in range(68)),
    flip_pairs=_FACE68_FLIP_PAIRS,
    skeleton=(),
    sigmas=_FACE68_SIGMAS,
    upper_body=(),
)

# ------------------------------------------------------------------ other body sets
CROWDPOSE_KEYPOINTS = KeypointInfo(
    name="crowdpose",
    names=(
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "head", "neck",
    ),
    flip_pairs=((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)),
    skeleton=(
        (12, 13), (13, 0), (13, 1), (0, 2), (2, 4), (1, 3), (3, 5), (0, 6), (1, 7), (6, 7),
        (6, 8), (8, 10), (7, 9), (9, 11), (0, 1),
    ),
    # CrowdPose evaluation (crowdposetools ``cocoeval.py``).
    sigmas=(0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089, 0.079, 0.079),
    upper_body=(0, 1, 2, 3, 4, 5, 12, 13),
    lower_body=(6, 7, 8, 9, 10, 11),
)

_MPII_NAMES = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis", "thorax",
    "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder", "left_shoulder",
    "left_elbow", "left_wrist",
)
# MPII has no OKS (it is evaluated by PCKh); these are MMPose's values adapted from COCO (mpii.py).
MPII_KEYPOINTS = KeypointInfo(
    name="mpii",
    names=_MPII_NAMES,
    flip_pairs=_left_right_pairs(_MPII_NAMES),
    skeleton=(
        (0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9), (8, 12), (12, 11),
        (11, 10), (8, 13), (13, 14), (14, 15),
    ),
    sigmas=(
        0.089, 0.083, 0.107, 0.107, 0.083, 0.089, 0.026, 0.026, 0.026, 0.026, 0.062, 0.072, 0.179,
        0.179, 0.072, 0.062,
    ),
    upper_body=(7, 8, 9, 10, 11, 12, 13, 14, 15),
    lower_body=(0, 1, 2, 3, 4, 5, 6),
)

_AIC_NAMES = (
    "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "head_top", "neck",
)
AIC_KEYPOINTS = KeypointInfo(
    name="aic",
    names=_AIC_NAMES,
    flip_pairs=_left_right_pairs(_AIC_NAMES),
    skeleton=(
        (2, 1), (1, 0), (0, 13), (13, 3), (3, 4), (4, 5), (8, 7), (7, 6), (6, 9), (9, 10), (10, 11),
        (12, 13), (0, 6), (3, 9),
    ),
    # AI Challenger evaluation (``keypoint_eval.py``) uses delta = 2 * sigma with these sigmas.
    sigmas=(
        0.01388152, 0.01515228, 0.01057665, 0.01417709, 0.01497891, 0.01402144, 0.03909642,
        0.03686941, 0.01981803, 0.03843971, 0.03412318, 0.02415081, 0.01291456, 0.01236173,
    ),
    upper_body=(0, 1, 2, 3, 4, 5, 12, 13),
    lower_body=(6, 7, 8, 9, 10, 11),
)

# Halpe-FullBody: 20 body (COCO's 17, head, neck, hip), 6 foot, 68 face, 21 left and 21 right hand.
_HALPE26_NAMES = (
    *_COCO_NAMES, "head", "neck", "hip", "left_big_toe", "right_big_toe", "left_small_toe",
    "right_small_toe", "left_heel", "right_heel",
)
_HALPE26_SKELETON = (
    (15, 13), (13, 11), (11, 19), (16, 14), (14, 12), (12, 19), (17, 18), (18, 19), (18, 5), (5, 7),
    (7, 9), (18, 6), (6, 8), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
    (15, 20), (15, 22), (15, 24), (16, 21), (16, 23), (16, 25),
)
_HALPE_UPPER = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 17, 18)
_HALPE_LOWER = (11, 12, 13, 14, 15, 16, 19, 20, 21, 22, 23, 24, 25)
_HALPE_NAMES = (
    *_HALPE26_NAMES,
    *(f"face-{i}" for i in range(68)),
    *(f"left_{n}" for n in ("hand_root", *_HAND_JOINTS)),
    *(f"right_{n}" for n in ("hand_root", *_HAND_JOINTS)),
)


def _hand_from_wrist(wrist: int, root: int) -> tuple[tuple[int, int], ...]:
    """Halpe draws each finger from the body wrist; its hand root point has no edge."""
    return tuple((wrist if a == 0 else a + root, b + root) for a, b in _HAND_SKELETON)


HALPE_KEYPOINTS = KeypointInfo(
    name="halpe",
    names=_HALPE_NAMES,
    flip_pairs=_left_right_pairs(_HALPE_NAMES) + _shift(_FACE68_FLIP_PAIRS, 26),
    skeleton=(*_HALPE26_SKELETON, *_hand_from_wrist(9, 94), *_hand_from_wrist(10, 115)),
    # Halpe-FullBody evaluation (halpecocotools ``cocoeval.py``): COCO's body, 0.08 head / neck / hip,
    # 0.089 foot, 0.015 for every face and hand point.
    sigmas=(*_COCO_SIGMAS, 0.08, 0.08, 0.08, *(0.089,) * 6, *(0.015,) * 110),
    upper_body=_HALPE_UPPER,
    lower_body=_HALPE_LOWER,
)

# The 26 body + foot points of Halpe (MMPose's halpe26.py). Its sigmas are MMPose's, not those of the
# Halpe-FullBody evaluation (which has 0.08 for head / neck / hip and 0.089 for the feet).
HALPE26_KEYPOINTS = KeypointInfo(
    name="halpe26",
    names=_HALPE26_NAMES,
    flip_pairs=_left_right_pairs(_HALPE26_NAMES),
    skeleton=_HALPE26_SKELETON,
    sigmas=(*_COCO_SIGMAS, 0.026, 0.026, 0.066, *(0.079,) * 6),
    upper_body=_HALPE_UPPER,
    lower_body=_HALPE_LOWER,
)

# AP-10K animals. Names as the dataset's annotation files spell them (MMPose abbreviates them, L_Eye ...).
_AP10K_NAMES = (
    "left_eye", "right_eye", "nose", "neck", "root_of_tail", "left_shoulder", "left_elbow",
    "left_front_paw", "right_shoulder", "right_elbow", "right_front_paw", "left_hip", "left_knee",
    "left_back_paw", "right_hip", "right_knee", "right_back_paw",
)
AP10K_KEYPOINTS = KeypointInfo(
    name="ap10k",
    names=_AP10K_NAMES,
    flip_pairs=_left_right_pairs(_AP10K_NAMES),
    skeleton=(
        (0, 1), (0, 2), (1, 2), (2, 3), (3, 4), (3, 5), (5, 6), (6, 7), (3, 8), (8, 9), (9, 10),
        (4, 11), (11, 12), (12, 13), (4, 14), (14, 15), (15, 16),
    ),
    # AP-10K publishes no OKS sigmas; these are MMPose's (ap10k.py), adapted from COCO's.
    sigmas=(
        0.025, 0.025, 0.026, 0.035, 0.035, 0.079, 0.072, 0.062, 0.079, 0.072, 0.062, 0.107, 0.087,
        0.089, 0.107, 0.087, 0.089,
    ),
    # MMPose (and the AP-10K repository's copy of its config) types right_front_paw as lower body and
    # left_front_paw as upper; both front paws are upper body here so that a flip keeps each half.
    upper_body=(0, 1, 2, 3, 5, 6, 7, 8, 9, 10),
    lower_body=(4, 11, 12, 13, 14, 15, 16),
)
# fmt: on

_PRESETS = (
    COCO_KEYPOINTS,
    COCO_WHOLEBODY_KEYPOINTS,
    CROWDPOSE_KEYPOINTS,
    MPII_KEYPOINTS,
    AIC_KEYPOINTS,
    HALPE_KEYPOINTS,
    HALPE26_KEYPOINTS,
    OCHUMAN_KEYPOINTS,
    ONEHAND10K_KEYPOINTS,
    COCO_WHOLEBODY_HAND_KEYPOINTS,
    AP10K_KEYPOINTS,
    FACE300W_KEYPOINTS,
)
_REGISTRY = {info.name: info for info in _PRESETS}
_FILE_SUFFIXES = (".json", ".yaml", ".yml")


def list_keypoint_sets() -> list[str]:
    """Registry names accepted by [`get_keypoint_info`][visattn.keypoints.get_keypoint_info], sorted.

    Example:
        >>> "coco" in list_keypoint_sets() and "ap10k" in list_keypoint_sets()
        True
    """
    return sorted(_REGISTRY)


def get_keypoint_info(name: str | os.PathLike[str] | KeypointInfo) -> KeypointInfo:
    """Return a keypoint set: a registered name, a JSON / YAML file, or a
    [`KeypointInfo`][visattn.keypoints.KeypointInfo].

    Names are matched case-insensitively, with ``-`` read as ``_`` (``"COCO-WholeBody"`` is
    ``"coco_wholebody"``); [`list_keypoint_sets`][visattn.keypoints.list_keypoint_sets] lists them. A path (an
    ``os.PathLike``, or a string ending in ``.json`` / ``.yaml`` / ``.yml``) is read with
    [`load_keypoint_info`][visattn.keypoints.load_keypoint_info].

    Example:
        >>> get_keypoint_info("coco").num_keypoints, get_keypoint_info("MPII").num_keypoints
        (17, 16)
    """
    if isinstance(name, KeypointInfo):
        return name
    if isinstance(name, os.PathLike):
        return load_keypoint_info(name)
    if not isinstance(name, str):
        raise TypeError(
            f"keypoint set must be a name, a path or a KeypointInfo, got {type(name).__name__} {name!r}"
        )
    key = name.strip().lower().replace("-", "_")
    if key in _REGISTRY:
        return _REGISTRY[key]
    if key.endswith(_FILE_SUFFIXES):
        return load_keypoint_info(name)
    raise ValueError(
        f"keypoint set must be one of {list_keypoint_sets()}, a .json / .yaml file or a KeypointInfo, "
        f"got {name!r}"
    )


# ------------------------------------------------------------------ files
_REQUIRED = ("names", "sigmas")
_OPTIONAL = ("name", "flip_pairs", "skeleton", "upper_body", "lower_body")


def load_keypoint_info(path: str | os.PathLike[str]) -> KeypointInfo:
    """Read a custom keypoint set from a JSON file (or YAML, when PyYAML is installed).

    The file holds one mapping. ``names`` (K strings) and ``sigmas`` (K positive numbers) are
    required; ``name`` (default: the file's stem), ``flip_pairs`` and ``skeleton`` (lists of pairs),
    ``upper_body`` and ``lower_body`` (lists) are optional and default to empty. A keypoint in a pair
    or a body list is either its index or its name. Other keys are an error (they are usually typos).
    Every error is a ``ValueError`` (``TypeError`` for a wrong kind of value) that names the file
    and the field.

    Example:
        >>> import json, tempfile
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "pair.json"
        >>> _ = path.write_text(json.dumps({"names": ["left_tip", "right_tip", "base"],
        ...     "flip_pairs": [["left_tip", "right_tip"]], "skeleton": [[0, 2], [1, 2]],
        ...     "sigmas": [0.05, 0.05, 0.1], "upper_body": ["left_tip", "right_tip"]}))
        >>> info = load_keypoint_info(path)
        >>> info.name, info.flip_index, info.upper_body
        ('pair', (1, 0, 2), (0, 1))
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__} {path!r}")
    file = Path(path)
    data = _read_mapping(file)
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise ValueError(
            f"keypoint set file {file}: unknown field(s) {unknown}; expected {[*_REQUIRED, *_OPTIONAL]}"
        )
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise ValueError(f"keypoint set file {file}: missing required field(s) {missing}")

    def fail(field: str, expected: str, got: object, kind: type[Exception] = ValueError) -> Exception:
        return kind(f"keypoint set file {file}: field {field!r} must be {expected}, got {got!r}")

    name = data.get("name", file.stem)
    if not isinstance(name, str) or not name:
        raise fail("name", "a non-empty string", name, TypeError)
    names = data["names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise fail("names", "a non-empty list of non-empty strings", names, TypeError)
    k = len(names)
    index = {n: i for i, n in enumerate(names)}
    if len(index) != k:
        duplicates = sorted({n for n in names if names.count(n) > 1})
        raise fail("names", "distinct keypoint names", f"duplicates {duplicates}")

    def keypoint(field: str, value: object) -> int:
        if isinstance(value, str):
            if value not in index:
                raise fail(field, f"keypoint names from 'names' or indices in [0, {k})", value)
            return index[value]
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(field, "keypoint indices (int) or names (str)", value, TypeError)
        if not 0 <= value < k:
            raise fail(field, f"keypoint indices in [0, {k}) for K={k}", value)
        return value

    def pairs(field: str) -> tuple[tuple[int, int], ...]:
        value = data.get(field, [])
        if not isinstance(value, list):
            raise fail(field, "a list of [a, b] pairs", value, TypeError)
        out = []
        for pair in value:
            if not isinstance(pair, list) or len(pair) != 2:
                raise fail(field, "a list of [a, b] pairs", pair, TypeError)
            out.append((keypoint(field, pair[0]), keypoint(field, pair[1])))
        return tuple(out)

    def indices(field: str) -> tuple[int, ...]:
        value = data.get(field, [])
        if not isinstance(value, list):
            raise fail(field, "a list of keypoint indices or names", value, TypeError)
        return tuple(keypoint(field, v) for v in value)

    sigmas = data["sigmas"]
    if not isinstance(sigmas, list) or not all(
        isinstance(s, (int, float)) and not isinstance(s, bool) for s in sigmas
    ):
        raise fail("sigmas", f"a list of K={k} positive numbers", sigmas, TypeError)
    if len(sigmas) != k or not all(0 < s < float("inf") for s in sigmas):
        raise fail("sigmas", f"a list of K={k} positive numbers", sigmas)
    flip_pairs, skeleton = pairs("flip_pairs"), pairs("skeleton")
    upper_body, lower_body = indices("upper_body"), indices("lower_body")
    try:  # what only the whole set can check (disjoint pairs, disjoint halves)
        return KeypointInfo(
            name, tuple(names), flip_pairs, skeleton, tuple(float(s) for s in sigmas), upper_body, lower_body
        )
    except ValueError as error:
        raise ValueError(f"keypoint set file {file}: {error}") from error


def _read_mapping(file: Path) -> Mapping[str, Any]:
    """The top-level mapping of a JSON or YAML file, with errors that name the file."""
    suffix = file.suffix.lower()
    if suffix not in _FILE_SUFFIXES:
        raise ValueError(f"keypoint set file {file} must end in .json, .yaml or .yml, got {suffix!r}")
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"keypoint set file {file} cannot be read: {error}") from error
    data: object
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"keypoint set file {file} is not valid JSON: {error}") from error
    else:
        try:
            import yaml
        except ImportError as error:
            raise ImportError(
                f"reading the YAML keypoint set file {file} needs PyYAML (pip install pyyaml); "
                "or write it as JSON"
            ) from error
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"keypoint set file {file} is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(
            f"keypoint set file {file} must hold one mapping of fields, got {type(data).__name__}"
        )
    return data
