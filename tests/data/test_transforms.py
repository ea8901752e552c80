from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.helpers import assert_close
from visattn.data.transforms import (
    apply_affine,
    box_to_center_scale,
    crop_to_image,
    flip_images,
    flip_keypoints,
    get_affine_matrix,
)
from visattn.keypoints import COCO_KEYPOINTS


def _oracle_matrix(center: list[float], scale_w: float, rot: float, size: tuple[int, int]) -> np.ndarray:
    """SimpleBaseline get_affine_transform: the matrix mapping three point pairs."""
    out_h, out_w = size
    r = math.radians(rot)

    def rotate(p: tuple[float, float]) -> np.ndarray:
        return np.array([p[0] * math.cos(r) - p[1] * math.sin(r), p[0] * math.sin(r) + p[1] * math.cos(r)])

    c = np.array(center, dtype=np.float64)
    src_dir = rotate((0.0, -0.5 * scale_w))
    dst_dir = np.array([0.0, -0.5 * out_w])
    src = np.zeros((3, 2))
    dst = np.zeros((3, 2))
    src[0], src[1] = c, c + src_dir
    dst[0], dst[1] = (out_w * 0.5, out_h * 0.5), np.array([out_w * 0.5, out_h * 0.5]) + dst_dir

    def third(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d = a - b
        return b + np.array([-d[1], d[0]])

    src[2], dst[2] = third(src[0], src[1]), third(dst[0], dst[1])
    # what cv2.getAffineTransform computes, solved in float64: [src, 1] @ M.T = dst
    return np.linalg.solve(np.concatenate([src, np.ones((3, 1))], 1), dst).T


def _random_geometry(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    center = torch.rand(n, 2, generator=g, dtype=torch.float64) * 500
    scale = torch.rand(n, 2, generator=g, dtype=torch.float64) * 300 + 20
    rot = (torch.rand(n, generator=g, dtype=torch.float64) - 0.5) * 160
    return center, scale, rot


def test_box_to_center_scale_matches_loop() -> None:
    boxes = torch.tensor([[10.0, 20.0, 30.0, 80.0], [0.0, 0.0, 100.0, 40.0], [5.0, 5.0, 12.0, 16.0]])
    center, scale = box_to_center_scale(boxes, 0.75, 1.25)
    for i, (x, y, w, h) in enumerate(boxes.tolist()):
        if w > 0.75 * h:
            h = w / 0.75
        else:
            w = h * 0.75
        assert center[i].tolist() == pytest.approx([x + boxes[i, 2].item() / 2, y + boxes[i, 3].item() / 2])
        assert scale[i].tolist() == pytest.approx([w * 1.25, h * 1.25])
    assert torch.allclose(scale[:, 0] / scale[:, 1], torch.full((3,), 0.75))


@pytest.mark.parametrize("size", [(256, 192), (64, 48), (17, 31)])
def test_affine_matrix_matches_cv2_three_point_oracle(size: tuple[int, int]) -> None:
    center, scale, rot = _random_geometry(6)
    matrix = get_affine_matrix(center, scale, rot, size)
    assert matrix.shape == (6, 2, 3)
    for i in range(6):
        expected = _oracle_matrix(center[i].tolist(), float(scale[i, 0]), float(rot[i]), size)
        np.testing.assert_allclose(matrix[i].numpy(), expected, atol=1e-9)


def test_inverse_matrix_composes_to_identity() -> None:
    center, scale, rot = _random_geometry(5, seed=1)
    fwd = get_affine_matrix(center, scale, rot, (256, 192))
    inv = get_affine_matrix(center, scale, rot, (256, 192), inverse=True)
    pad = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(5, 1, 3)
    product = torch.cat((inv, pad), 1) @ torch.cat((fwd, pad), 1)
    assert_close(product, torch.eye(3, dtype=torch.float64).expand(5, 3, 3).contiguous())


def test_apply_affine_matches_loop() -> None:
    g = torch.Generator().manual_seed(2)
    points = torch.randn(3, 4, 2, generator=g)
    matrix = torch.randn(3, 2, 3, generator=g)
    out = apply_affine(points, matrix)
    expected = torch.zeros_like(points)
    for b in range(3):
        for k in range(4):
            x, y = points[b, k].tolist()
            m = matrix[b].tolist()
            expected[b, k, 0] = m[0][0] * x + m[0][1] * y + m[0][2]
            expected[b, k, 1] = m[1][0] * x + m[1][1] * y + m[1][2]
    assert_close(out, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_crop_to_image_inverts_the_crop_warp(dtype: torch.dtype) -> None:
    center, scale, rot = _random_geometry(8, seed=3)
    image_points = torch.rand(8, 17, 2, dtype=torch.float64) * 640
    crop_points = torch.zeros_like(image_points)
    for b in range(8):  # forward with the independent cv2 oracle
        m = _oracle_matrix(center[b].tolist(), float(scale[b, 0]), float(rot[b]), (256, 192))
        for k in range(17):
            crop_points[b, k] = torch.from_numpy(m[:, :2] @ image_points[b, k].numpy() + m[:, 2])
    back = crop_to_image(crop_points.to(dtype), center.to(dtype), scale.to(dtype), rot.to(dtype), (256, 192))
    assert back.dtype == dtype
    assert (back.double() - image_points).abs().max() < 1e-3


def test_flip_keypoints_matches_loop_and_is_an_involution() -> None:
    g = torch.Generator().manual_seed(4)
    kp = torch.rand(2, 17, 2, generator=g) * 100
    flags = torch.randint(0, 3, (2, 17), generator=g)
    out_kp, out_flags = flip_keypoints(kp, flags, 120, COCO_KEYPOINTS.flip_index)
    for b in range(2):
        for k in range(17):
            src = COCO_KEYPOINTS.flip_index[k]
            assert out_kp[b, k].tolist() == pytest.approx([119 - kp[b, src, 0].item(), kp[b, src, 1].item()])
            assert out_flags[b, k] == flags[b, src]
    again_kp, again_flags = flip_keypoints(
        out_kp, out_flags, torch.tensor([120.0, 120.0]), COCO_KEYPOINTS.flip_index
    )
    assert_close(again_kp, kp)
    assert torch.equal(again_flags, flags)


def test_flip_images_and_validation() -> None:
    images = torch.arange(24.0).view(2, 3, 2, 2)
    assert torch.equal(flip_images(images)[..., 0], images[..., 1])
    with pytest.raises(ValueError, match="boxes"):
        box_to_center_scale(torch.zeros(3, 3), 0.75)
    with pytest.raises(ValueError, match="flip_index"):
        flip_keypoints(torch.zeros(1, 3, 2), torch.zeros(1, 3, dtype=torch.long), 10, (0, 0, 1))
    with pytest.raises(ValueError, match="output_size"):
        get_affine_matrix(torch.zeros(1, 2), torch.ones(1, 2), torch.zeros(1), (0, 4))
    with pytest.raises(ValueError, match="COCO flags"):
        flip_keypoints(torch.zeros(1, 2, 2), torch.full((1, 2), 3), 10, (1, 0))
    empty = get_affine_matrix(torch.zeros(0, 2), torch.ones(0, 2), torch.zeros(0), (8, 6))
    assert empty.shape == (0, 2, 3)


def test_geometry_validation_names_the_argument() -> None:
    kp, center, scale = torch.zeros(2, 3, 2), torch.zeros(2, 2), torch.ones(2, 2)
    with pytest.raises(TypeError, match="scale"):
        crop_to_image(kp, center, [[1.0, 1.0]] * 2, torch.zeros(2), (8, 6))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rotation"):
        crop_to_image(kp, center, scale, torch.zeros(3), (8, 6))
    flags = torch.full((2, 3), 2)
    with pytest.raises(TypeError, match="flip_index"):
        flip_keypoints(kp, flags, 10, [0.0, 2.0, 1.0])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="flip_index"):
        flip_keypoints(kp, flags, 10, [0, 0, 1])
    with pytest.raises(ValueError, match="image_width"):
        flip_keypoints(kp, flags, torch.tensor([10.0, 12.0, 14.0]), [0, 2, 1])
    with pytest.raises(TypeError, match="image_width"):
        flip_keypoints(kp, flags, "10", [0, 2, 1])  # type: ignore[arg-type]


def test_half_body_lower_half_uses_the_sets_lower_body() -> None:
    """A whole-body set's face and hands are neither half: the lower crop spans the legs only."""
    import numpy as np

    from visattn.data import AugmentConfig
    from visattn.data._augment import half_body_box

    keypoints = np.array([[0, 0], [2, 0], [4, 0], [10, 50], [12, 60], [14, 70], [100, 100]], dtype=float)
    flags = np.full(7, 2)
    upper = np.array([1, 1, 1, 0, 0, 0, 0], dtype=bool)
    lower = np.array([0, 0, 0, 1, 1, 1, 0], dtype=bool)  # keypoint 6: a hand, in neither half
    config = AugmentConfig(half_body_min_keypoints=3)
    centre, _ = half_body_box(keypoints, flags, upper, False, config, 0.75, lower)
    assert centre.tolist() == [12.0, 60.0]  # the mean of the three leg keypoints
    centre, _ = half_body_box(keypoints, flags, upper, False, config, 0.75)  # complement of upper
    assert centre.tolist() == pytest.approx([34.0, 70.0])  # the hand pulls it when it counts as lower
