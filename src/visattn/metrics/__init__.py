"""Evaluation metrics: COCO keypoint AP (all / visible / occluded), PCK, visibility, CrowdPose.

The COCO and CrowdPose evaluations use the optional dependency pycocotools
(``pip install visattn[data]``), imported only when an evaluation runs.
"""

from visattn.metrics.coco import COCO_STAT_NAMES, SUBSETS, coco_keypoint_ap, keypoint_oks
from visattn.metrics.crowdpose import CROWDPOSE_STAT_NAMES, crowdpose_ap
from visattn.metrics.evaluator import PoseEvaluator, instance_scores, oks_nms
from visattn.metrics.pck import pck, pck_by_subset, pck_counts
from visattn.metrics.table import format_table
from visattn.metrics.visibility import (
    calibrate_visibility_threshold,
    visibility_confusion,
    visibility_metrics,
    visibility_ranking_metrics,
)

__all__ = [
    "COCO_STAT_NAMES",
    "CROWDPOSE_STAT_NAMES",
    "SUBSETS",
    "PoseEvaluator",
    "calibrate_visibility_threshold",
    "coco_keypoint_ap",
    "crowdpose_ap",
    "format_table",
    "instance_scores",
    "keypoint_oks",
    "oks_nms",
    "pck",
    "pck_by_subset",
    "pck_counts",
    "visibility_confusion",
    "visibility_metrics",
    "visibility_ranking_metrics",
]
