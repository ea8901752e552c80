"""The keypoint subsets of the paper's metrics (all / visible / occluded) as flag masks."""

from __future__ import annotations

import torch

__all__ = ["SUBSET_FLAG", "subset_mask"]

#: The flag each subset but "all" counts.
SUBSET_FLAG = {"visible": 2, "occluded": 1}


def subset_mask(flags: torch.Tensor, subset: str) -> torch.Tensor:
    """``(N, K)`` bool: the keypoints a subset counts (``v > 0``, ``v == 2`` or ``v == 1``).

    ``flags`` must already be shape-checked COCO flags; a bool tensor is rejected because it cannot tell
    ``v = 0`` from ``v = 1``.
    """
    if flags.dtype == torch.bool:
        raise TypeError("flags must be COCO flags 0/1/2 (a bool visibility tensor cannot tell v=0 from v=1)")
    return flags > 0 if subset == "all" else flags == SUBSET_FLAG[subset]
