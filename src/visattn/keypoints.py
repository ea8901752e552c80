"""Keypoint metadata: names, flip pairs, skeleton edges and OKS sigmas.

Indices are 0-based. ``KeypointInfo`` describes any keypoint set; ``COCO_KEYPOINTS`` (17) and
``CROWDPOSE_KEYPOINTS`` (14) are provided. A custom set is one constructor call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["COCO_KEYPOINTS", "CROWDPOSE_KEYPOINTS", "KeypointInfo", "get_keypoint_info"]


@dataclass(frozen=True)
class KeypointInfo:
    """Metadata of a keypoint set.

    Attributes:
        name: dataset name, e.g. ``"coco"``.
        names: keypoint names, length K.
        flip_pairs: pairs ``(left, right)`` swapped by a horizontal flip.
        skeleton: edges ``(a, b)`` drawn between keypoints.
        sigmas: per-keypoint OKS falloff constants ``k_i`` (length K).
        upper_body: indices counted as upper body by half-body augmentation.

    Example:
        >>> info = KeypointInfo("toy", ("l", "r"), ((0, 1),), ((0, 1),), (0.1, 0.1), (0, 1))
        >>> info.flip_index
        (1, 0)
    """

    name: str
    names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]
    upper_body: tuple[int, ...]

    def __post_init__(self) -> None:
        k = len(self.names)
        if k == 0:
            raise ValueError("names must list at least one keypoint, got 0")
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
        if any(not 0 <= i < k for i in self.upper_body):
            raise ValueError(f"upper_body indices must lie in [0, {k}), got {self.upper_body}")

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
        """:attr:`flip_index` as a ``long`` tensor of shape ``(K,)``."""
        return torch.tensor(self.flip_index, dtype=torch.long, device=device)

    def sigmas_tensor(self, device: torch.device | str | None = None) -> torch.Tensor:
        """:attr:`sigmas` as a ``float32`` tensor of shape ``(K,)``."""
        return torch.tensor(self.sigmas, dtype=torch.float32, device=device)


# fmt: off
COCO_KEYPOINTS = KeypointInfo(
    name="coco",
    names=(
        "nose",
        "left_eye",
        "right_eye",
        "left_ear",
        "right_ear",
        "left_shoulder",
        "right_shoulder",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
        "left_hip",
        "right_hip",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
    ),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    skeleton=(
        (15, 13),
        (13, 11),
        (16, 14),
        (14, 12),
        (11, 12),
        (5, 11),
        (6, 12),
        (5, 6),
        (5, 7),
        (6, 8),
        (7, 9),
        (8, 10),
        (1, 2),
        (0, 1),
        (0, 2),
        (1, 3),
        (2, 4),
        (3, 5),
        (4, 6),
    ),
    sigmas=(
        0.026,
        0.025,
        0.025,
        0.035,
        0.035,
        0.079,
        0.079,
        0.072,
        0.072,
        0.062,
        0.062,
        0.107,
        0.107,
        0.087,
        0.087,
        0.089,
        0.089,
    ),
    upper_body=tuple(range(11)),
)

CROWDPOSE_KEYPOINTS = KeypointInfo(
    name="crowdpose",
    names=(
        "left_shoulder",
        "right_shoulder",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
        "left_hip",
        "right_hip",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
        "head",
        "neck",
    ),
    flip_pairs=((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)),
    skeleton=(
        (12, 13),
        (13, 0),
        (13, 1),
        (0, 2),
        (2, 4),
        (1, 3),
        (3, 5),
        (0, 6),
        (1, 7),
        (6, 7),
        (6, 8),
        (8, 10),
        (7, 9),
        (9, 11),
    ),
    sigmas=(0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089, 0.079, 0.079),
    upper_body=(0, 1, 2, 3, 4, 5, 12, 13),
)

# fmt: on

_REGISTRY = {"coco": COCO_KEYPOINTS, "crowdpose": CROWDPOSE_KEYPOINTS}


def get_keypoint_info(name: str | KeypointInfo) -> KeypointInfo:
    """Return the metadata registered under ``name`` (``"coco"`` or ``"crowdpose"``).

    Example:
        >>> get_keypoint_info("coco").num_keypoints
        17
    """
    if isinstance(name, KeypointInfo):
        return name
    if name not in _REGISTRY:
        raise ValueError(f"keypoint set must be one of {sorted(_REGISTRY)} or a KeypointInfo, got {name!r}")
    return _REGISTRY[name]
