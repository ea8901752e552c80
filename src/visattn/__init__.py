"""visattn: visibility-aware occluded pose reasoning for 2D human pose models."""

from visattn._config import set_fused_attn, use_fused_attn
from visattn._version import __version__
from visattn.keypoints import COCO_KEYPOINTS, CROWDPOSE_KEYPOINTS, KeypointInfo, get_keypoint_info
from visattn.visibility import flags_to_visible, predicted_visible, visibility_mask

__all__ = [
    "COCO_KEYPOINTS",
    "CROWDPOSE_KEYPOINTS",
    "KeypointInfo",
    "__version__",
    "flags_to_visible",
    "get_keypoint_info",
    "predicted_visible",
    "set_fused_attn",
    "use_fused_attn",
    "visibility_mask",
]
