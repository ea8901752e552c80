"""Vectorised geometry for top-down pose crops: boxes, affine warps, flips.

Every function works on a batch at once (no per-sample Python loops) and on any floating dtype
(use ``float64`` when you need sub-millipixel round trips on large images).

Conventions (the same as SimpleBaseline / MMPose ``get_affine_transform``):

- a box is ``(x, y, w, h)`` in image pixels; it becomes a ``center (B, 2)`` and a ``scale (B, 2)``
  = the padded box size ``(w, h)`` in pixels with the aspect ratio ``W / H`` of the crop;
- the crop of size ``(H, W)`` maps ``center`` to ``(W / 2, H / 2)`` with the isotropic factor
  ``W / scale_w``, after rotating the image by ``rotation`` degrees about ``center`` (with ``y``
  pointing down, a positive ``rotation`` turns the content counter-clockwise on screen);
- a horizontal flip of an image of width ``w`` maps ``x -> w - 1 - x`` (pixel indices) and swaps left
  and right keypoints through ``flip_index`` (``flipped[k] = original[flip_index[k]]``).

Shapes use the package alphabet: B batch, K keypoints, H x W crop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from visattn._checks import check_flags, check_positive_float, check_size_pair, check_tensor

__all__ = [
    "apply_affine",
    "box_to_center_scale",
    "crop_to_image",
    "flip_images",
    "flip_keypoints",
    "get_affine_matrix",
]


def box_to_center_scale(
    boxes: torch.Tensor, aspect_ratio: float, padding: float = 1.25
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn ``(x, y, w, h)`` boxes into crop centres and padded sizes with a fixed aspect ratio.

    The shorter side (relative to ``aspect_ratio = W / H``) is enlarged so that ``w / h ==
    aspect_ratio``, then both sides are multiplied by ``padding`` (MMPose ``bbox_xyxy2cs`` followed by
    ``_fix_aspect_ratio``).

    Args:
        boxes: ``(N, 4)`` floating boxes ``(x, y, w, h)`` in image pixels.
        aspect_ratio: crop width / crop height, e.g. ``192 / 256``.
        padding: factor applied to both sides after the aspect fix.

    Returns:
        ``center (N, 2)`` and ``scale (N, 2)`` = padded ``(w, h)`` in pixels.

    Example:
        >>> c, s = box_to_center_scale(torch.tensor([[10.0, 20.0, 30.0, 80.0]]), 0.75)
        >>> c.tolist(), s.tolist()
        ([[25.0, 60.0]], [[75.0, 100.0]])
    """
    check_tensor("boxes", boxes, "N 4", floating=True)
    aspect_ratio = check_positive_float("aspect_ratio", aspect_ratio)
    padding = check_positive_float("padding", padding)
    x, y, w, h = boxes.unbind(-1)
    center = torch.stack((x + w * 0.5, y + h * 0.5), dim=-1)  # (N, 2)
    wider = w > aspect_ratio * h
    new_w = torch.where(wider, w, h * aspect_ratio)
    new_h = torch.where(wider, w / aspect_ratio, h)
    scale = torch.stack((new_w, new_h), dim=-1) * padding  # (N, 2)
    return center, scale


def get_affine_matrix(
    center: torch.Tensor,
    scale: torch.Tensor,
    rotation: torch.Tensor,
    output_size: Sequence[int],
    *,
    inverse: bool = False,
) -> torch.Tensor:
    """Affine matrices that warp image pixels into a ``(H, W)`` crop (or back).

    ``crop = s * R(-rotation) @ (p - center) + (W / 2, H / 2)`` with ``s = W / scale_w``; the result
    equals ``cv2.getAffineTransform`` on the three points of MMPose ``get_warp_matrix``.

    Args:
        center: ``(B, 2)`` crop centres in image pixels.
        scale: ``(B, 2)`` crop sizes ``(w, h)`` in image pixels (only ``w`` sets the factor).
        rotation: ``(B,)`` rotation in degrees.
        output_size: crop size ``(H, W)``.
        inverse: return the crop -> image matrices instead.

    Returns:
        ``(B, 2, 3)`` matrices in the dtype of ``center``.

    Example:
        >>> m = get_affine_matrix(torch.tensor([[50.0, 40.0]]), torch.tensor([[96.0, 128.0]]),
        ...                       torch.zeros(1), (256, 192))
        >>> (m[0] + 0.0).tolist()
        [[2.0, 0.0, -4.0], [0.0, 2.0, 48.0]]
    """
    check_tensor("center", center, "B 2", floating=True)
    b = center.shape[0]
    check_tensor("scale", scale, "B 2", floating=True, B=b)
    check_tensor("rotation", rotation, "B", B=b)
    out_h, out_w = check_size_pair("output_size", output_size)
    dtype = center.dtype
    theta = rotation.to(dtype) * (math.pi / 180.0)
    cos, sin = torch.cos(theta), torch.sin(theta)
    half = torch.tensor([out_w * 0.5, out_h * 0.5], dtype=dtype, device=center.device)
    if not inverse:
        s = out_w / scale[:, 0].to(dtype)
        lin = torch.stack((torch.stack((cos, sin), -1), torch.stack((-sin, cos), -1)), -2)  # (B, 2, 2)
        lin = lin * s[:, None, None]
        shift = half - (lin @ center.unsqueeze(-1)).squeeze(-1)  # (B, 2)
    else:
        s = scale[:, 0].to(dtype) / out_w
        lin = torch.stack((torch.stack((cos, -sin), -1), torch.stack((sin, cos), -1)), -2)  # (B, 2, 2)
        lin = lin * s[:, None, None]
        shift = center - (lin @ half.unsqueeze(-1)).squeeze(-1)  # (B, 2)
    return torch.cat((lin, shift.unsqueeze(-1)), dim=-1)  # (B, 2, 3)


def apply_affine(points: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply ``(B, 2, 3)`` affine matrices to ``(B, K, 2)`` points.

    Args:
        points: ``(B, K, 2)`` floating points.
        matrix: ``(B, 2, 3)`` matrices, e.g. from [`get_affine_matrix`][visattn.data.get_affine_matrix].

    Returns:
        ``(B, K, 2)`` transformed points in the promoted dtype.

    Example:
        >>> m = torch.tensor([[[2.0, 0.0, 1.0], [0.0, 3.0, -1.0]]])
        >>> apply_affine(torch.tensor([[[1.0, 1.0]]]), m).tolist()
        [[[3.0, 2.0]]]
    """
    check_tensor("points", points, "B K 2", floating=True)
    check_tensor("matrix", matrix, "B 2 3", floating=True, B=points.shape[0])
    return points @ matrix[:, :, :2].transpose(1, 2) + matrix[:, None, :, 2]  # (B, K, 2)


def crop_to_image(
    keypoints: torch.Tensor,
    center: torch.Tensor,
    scale: torch.Tensor,
    rotation: torch.Tensor,
    input_size: Sequence[int],
) -> torch.Tensor:
    """Map keypoints from crop pixels back to image pixels (the inverse of the crop warp).

    Args:
        keypoints: ``(B, K, 2)`` keypoints in crop pixels of a ``(H, W)`` crop.
        center: ``(B, 2)`` crop centres (image px), as returned by the dataset.
        scale: ``(B, 2)`` crop sizes ``(w, h)`` (image px).
        rotation: ``(B,)`` degrees.
        input_size: crop size ``(H, W)``.

    Returns:
        ``(B, K, 2)`` keypoints in image pixels (dtype of ``keypoints``).

    Example:
        >>> crop_to_image(torch.tensor([[[96.0, 128.0]]]), torch.tensor([[50.0, 40.0]]),
        ...               torch.tensor([[96.0, 128.0]]), torch.zeros(1), (256, 192)).tolist()
        [[[50.0, 40.0]]]
    """
    check_tensor("keypoints", keypoints, "B K 2", floating=True)
    b = keypoints.shape[0]
    check_tensor("center", center, "B 2", floating=True, B=b)
    check_tensor("scale", scale, "B 2", floating=True, B=b)
    check_tensor("rotation", rotation, "B", B=b)
    matrix = get_affine_matrix(center.double(), scale.double(), rotation.double(), input_size, inverse=True)
    return apply_affine(keypoints.double(), matrix).to(keypoints.dtype)


def flip_keypoints(
    keypoints: torch.Tensor,
    flags: torch.Tensor,
    image_width: float | torch.Tensor,
    flip_index: Sequence[int] | torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror keypoints horizontally and swap left/right keypoints together with their flags.

    Args:
        keypoints: ``(B, K, 2)`` floating keypoints in pixels.
        flags: ``(B, K)`` COCO visibility flags (0 unlabelled, 1 occluded, 2 visible; True iff
            visible for bool input); they are permuted with the keypoints, never changed.
        image_width: width ``w`` of the image (float or ``(B,)``); ``x -> w - 1 - x``.
        flip_index: ``(K,)`` permutation, e.g. ``COCO_KEYPOINTS.flip_index``.

    Returns:
        flipped ``keypoints (B, K, 2)`` and ``flags (B, K)``.

    Example:
        >>> kp, fl = flip_keypoints(torch.tensor([[[1.0, 2.0], [5.0, 6.0]]]), torch.tensor([[2, 1]]),
        ...                         10, (1, 0))
        >>> kp.tolist(), fl.tolist()
        ([[[4.0, 6.0], [8.0, 2.0]]], [[1, 2]])
    """
    check_tensor("keypoints", keypoints, "B K 2", floating=True)
    b, k = keypoints.shape[:2]
    check_flags("flags", flags, "B K", B=b, K=k)
    if isinstance(flip_index, torch.Tensor):
        if flip_index.is_floating_point() or flip_index.is_complex() or flip_index.dtype == torch.bool:
            raise TypeError(
                f"flip_index must be an integer tensor or a sequence of ints, got {flip_index.dtype}"
            )
    elif not isinstance(flip_index, Sequence) or any(
        isinstance(v, bool) or not isinstance(v, int) for v in flip_index
    ):
        raise TypeError(f"flip_index must be a sequence of ints or an integer tensor, got {flip_index!r}")
    index = torch.as_tensor(flip_index, dtype=torch.long, device=keypoints.device)
    if index.shape != (k,) or not torch.equal(index.sort().values, torch.arange(k, device=index.device)):
        raise ValueError(f"flip_index must be a permutation of range(K={k}), got {index.tolist()}")
    if isinstance(image_width, torch.Tensor):
        if image_width.dim() > 1 or (image_width.dim() == 1 and image_width.shape[0] != b):
            raise ValueError(
                f"image_width must be a number or a (B,) tensor with B={b}, "
                f"got shape {tuple(image_width.shape)}"
            )
    elif isinstance(image_width, bool) or not isinstance(image_width, (int, float)):
        raise TypeError(
            f"image_width must be a number or a (B,) tensor, got {type(image_width).__name__} {image_width!r}"
        )
    width = torch.as_tensor(image_width, dtype=keypoints.dtype, device=keypoints.device)
    if width.dim() == 1:
        width = width[:, None]  # (B, 1)
    x = width - 1 - keypoints[..., 0]
    flipped = torch.stack((x, keypoints[..., 1]), dim=-1)  # (B, K, 2)
    return flipped[:, index], flags[:, index]


def flip_images(images: torch.Tensor) -> torch.Tensor:
    """Mirror a batch of images horizontally (the flip test input).

    Args:
        images: ``(B, C, H, W)`` images.

    Returns:
        ``(B, C, H, W)`` images with the last axis reversed.

    Example:
        >>> flip_images(torch.arange(3.0).view(1, 1, 1, 3)).flatten().tolist()
        [2.0, 1.0, 0.0]
    """
    check_tensor("images", images, "B C H W")
    return torch.flip(images, dims=(-1,))
