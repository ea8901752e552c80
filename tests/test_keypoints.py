"""Keypoint metadata: COCO-17 and CrowdPose-14 tables, flip index, validation."""

from __future__ import annotations

import pytest
import torch

from visattn.keypoints import COCO_KEYPOINTS, CROWDPOSE_KEYPOINTS, KeypointInfo, get_keypoint_info

# OKS sigmas as published with the COCO keypoint evaluation (cocoapi) and the CrowdPose benchmark.
COCO_SIGMAS = [
    0.26,
    0.25,
    0.25,
    0.35,
    0.35,
    0.79,
    0.79,
    0.72,
    0.72,
    0.62,
    0.62,
    1.07,
    1.07,
    0.87,
    0.87,
    0.89,
    0.89,
]
CROWDPOSE_SIGMAS = [.79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89, .79, .79]  # fmt: skip


@pytest.mark.parametrize(
    ("info", "k", "sigmas"), [(COCO_KEYPOINTS, 17, COCO_SIGMAS), (CROWDPOSE_KEYPOINTS, 14, CROWDPOSE_SIGMAS)]
)
def test_tables(info: KeypointInfo, k: int, sigmas: list[float]) -> None:
    assert info.num_keypoints == k == len(info.names) == len(info.sigmas)
    assert [round(10 * s, 4) for s in info.sigmas] == [round(s, 4) for s in sigmas]  # cocoapi stores s / 10
    assert info.sigmas_tensor().shape == (k,)
    flip = info.flip_index
    assert sorted(flip) == list(range(k))
    assert all(flip[flip[i]] == i for i in range(k))  # an involution
    for a, b in info.flip_pairs:
        assert info.names[a].startswith("left")
        assert info.names[b].startswith("right")
        assert info.names[a].removeprefix("left") == info.names[b].removeprefix("right")
    for i, name in enumerate(info.names):  # unpaired keypoints map to themselves
        if not name.startswith(("left", "right")):
            assert flip[i] == i
    assert torch.equal(info.flip_index_tensor(), torch.tensor(flip))
    assert get_keypoint_info(info.name) is info
    assert get_keypoint_info(info) is info


def test_custom_set_and_errors() -> None:
    info = KeypointInfo("toy", ("a", "l", "r"), ((1, 2),), ((0, 1),), (0.1, 0.1, 0.1), (0,))
    assert info.flip_index == (0, 2, 1)
    with pytest.raises(ValueError, match="sigmas must have length K=3, got 2"):
        KeypointInfo("toy", ("a", "l", "r"), (), (), (0.1, 0.1), ())
    with pytest.raises(ValueError, match=r"out of range for K=3"):
        KeypointInfo("toy", ("a", "l", "r"), ((1, 3),), (), (0.1,) * 3, ())
    with pytest.raises(ValueError, match="disjoint"):
        KeypointInfo("toy", ("a", "l", "r"), ((1, 2), (2, 0)), (), (0.1,) * 3, ())
    with pytest.raises(ValueError, match="at least one keypoint"):
        KeypointInfo("toy", (), (), (), (), ())
    with pytest.raises((ValueError, KeyError), match="mpii"):
        get_keypoint_info("mpii")
