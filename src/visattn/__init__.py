"""visattn: visibility-aware occluded pose reasoning for 2D human pose models.

The core (this namespace) needs only torch, einops and numpy. Optional subpackages:
``visattn.data`` (datasets, synthetic occluded-pose generator; extra ``data``), ``visattn.metrics``
(COCO / CrowdPose AP split by visibility, PCK, visibility accuracy; extras ``data``/``crowdpose``) and
``visattn.export`` (ONNX and ``torch.export``; extra ``export``).

Example:
    >>> import torch
    >>> from torch import nn
    >>> import visattn
    >>> backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU())
    >>> from functools import partial
    >>> reasoner = partial(visattn.VisibilityMaskedReasoner, embed_dim=16, depth=1)
    >>> model = visattn.SimCCAdapter(backbone, 8, 17, (32, 24), reasoner=reasoner)
    >>> out = model(torch.zeros(2, 3, 32, 24))
    >>> tuple(out.x_logits.shape), tuple(out.y_logits.shape), tuple(out.vis_logits.shape)
    ((2, 17, 48), (2, 17, 64), (2, 17))
"""

from visattn import compat
from visattn._config import set_fused_attn, use_fused_attn
from visattn._version import __version__
from visattn.adapters import HeatmapAdapter, HeatmapOutput, SimCCAdapter, SimCCOutput
from visattn.attention import KeypointAttention
from visattn.codecs import HeatmapCodec, HeatmapTargets, SimCCCodec, SimCCTargets
from visattn.compat import from_official_checkpoint, to_official_checkpoint
from visattn.heads import HeatmapHead, PoseHead, SimCCHead
from visattn.inference import Prediction, predict_crops
from visattn.keypoints import (
    COCO_KEYPOINTS,
    CROWDPOSE_KEYPOINTS,
    KeypointInfo,
    get_keypoint_info,
    list_keypoint_sets,
    load_keypoint_info,
)
from visattn.losses import (
    HeatmapMSELoss,
    LossOutput,
    SimCCKLLoss,
    VisibilityAwareLoss,
    VisibilityBCELoss,
    VisibilityCELoss,
)
from visattn.reasoner import ReasonerBlock, ReasonerOutput, VisibilityMaskedReasoner
from visattn.visibility import flags_to_visible, predicted_visible, visibility_mask
from visattn.visnet import VisNet

__all__ = [
    "COCO_KEYPOINTS",
    "CROWDPOSE_KEYPOINTS",
    "HeatmapAdapter",
    "HeatmapCodec",
    "HeatmapHead",
    "HeatmapMSELoss",
    "HeatmapOutput",
    "HeatmapTargets",
    "KeypointAttention",
    "KeypointInfo",
    "LossOutput",
    "PoseHead",
    "Prediction",
    "ReasonerBlock",
    "ReasonerOutput",
    "SimCCAdapter",
    "SimCCCodec",
    "SimCCHead",
    "SimCCKLLoss",
    "SimCCOutput",
    "SimCCTargets",
    "VisNet",
    "VisibilityAwareLoss",
    "VisibilityBCELoss",
    "VisibilityCELoss",
    "VisibilityMaskedReasoner",
    "__version__",
    "compat",
    "flags_to_visible",
    "from_official_checkpoint",
    "get_keypoint_info",
    "list_keypoint_sets",
    "load_keypoint_info",
    "predict_crops",
    "predicted_visible",
    "set_fused_attn",
    "to_official_checkpoint",
    "use_fused_attn",
    "visibility_mask",
]
