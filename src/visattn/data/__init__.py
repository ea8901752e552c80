"""Data pipeline: synthetic occluded-pose sets, top-down COCO datasets, batch collation, crop geometry,
occlusion augmentation that produces visibility labels ([`occlude_batch`][visattn.data.occlude_batch],
[`RandomOcclusion`][visattn.data.RandomOcclusion]).

Fast training path: ``TopDownCocoDataset(..., codec=None, image_dtype="uint8")`` with
``DataLoader(..., collate_fn=TopDownCollate(codec))`` (targets encoded once per batch, images
normalised batch-wise; the same batch as the per-sample path).

Needs the optional dependencies OpenCV and pycocotools (``pip install visattn[data]``); they are
imported lazily, so ``import visattn.data`` works without them and only the functions that decode
or draw images raise an ImportError that says how to install them.
"""

from __future__ import annotations

from visattn.data._augment import AugmentConfig
from visattn.data.collate import TopDownCollate
from visattn.data.dataset import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageReadError,
    TopDownCocoDataset,
    normalize_images,
)
from visattn.data.occlusion import OCCLUDER_KINDS, OcclusionResult, RandomOcclusion, occlude_batch
from visattn.data.sampler import ResumableSampler, ShardSampler
from visattn.data.synthetic import (
    OCCLUSION_CAUSES,
    SyntheticImage,
    make_synthetic_coco,
    make_synthetic_splits,
    occlusion_statistics,
    render_synthetic_image,
)
from visattn.data.transforms import (
    apply_affine,
    box_to_center_scale,
    crop_to_image,
    flip_images,
    flip_keypoints,
    get_affine_matrix,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "OCCLUDER_KINDS",
    "OCCLUSION_CAUSES",
    "AugmentConfig",
    "ImageReadError",
    "OcclusionResult",
    "RandomOcclusion",
    "ResumableSampler",
    "ShardSampler",
    "SyntheticImage",
    "TopDownCocoDataset",
    "TopDownCollate",
    "apply_affine",
    "box_to_center_scale",
    "crop_to_image",
    "flip_images",
    "flip_keypoints",
    "get_affine_matrix",
    "make_synthetic_coco",
    "make_synthetic_splits",
    "normalize_images",
    "occlude_batch",
    "occlusion_statistics",
    "render_synthetic_image",
]
