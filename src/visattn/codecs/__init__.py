"""Target codecs: keypoints <-> SimCC labels and keypoints <-> Gaussian heatmaps.

Both codecs take keypoints in input-crop pixels with COCO visibility flags 0/1/2 (``v = 0`` not
labelled, ``v = 1`` occluded, ``v = 2`` visible), batched ``(B, K, 2)`` / ``(B, K)`` or unbatched
``(K, 2)`` / ``(K,)``, and decode back to crop pixels with per-keypoint scores.
"""

from __future__ import annotations

from visattn.codecs.heatmap import (
    HeatmapCodec,
    HeatmapTargets,
    heatmap_decode,
    heatmap_encode,
    heatmap_flip_back,
)
from visattn.codecs.simcc import (
    SimCCCodec,
    SimCCTargets,
    simcc_decode,
    simcc_encode,
    simcc_flip_back,
    simcc_num_bins,
)

__all__ = [
    "HeatmapCodec",
    "HeatmapTargets",
    "SimCCCodec",
    "SimCCTargets",
    "heatmap_decode",
    "heatmap_encode",
    "heatmap_flip_back",
    "simcc_decode",
    "simcc_encode",
    "simcc_flip_back",
    "simcc_num_bins",
]
