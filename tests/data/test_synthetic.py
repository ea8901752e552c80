from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from visattn.data import TopDownCocoDataset, make_synthetic_coco, render_synthetic_image
from visattn.data import synthetic as syn
from visattn.keypoints import COCO_KEYPOINTS

# Own parts of each keypoint, written out by name here (the rule of the module docstring).
_OWN_PARTS = {
    "nose": ["NOSE_DOT"],
    "left_eye": ["L_EYE_DOT"],
    "right_eye": ["R_EYE_DOT"],
    "left_ear": ["L_EAR_DOT"],
    "right_ear": ["R_EAR_DOT"],
    "left_shoulder": ["TORSO", "L_UPPER_ARM"],
    "right_shoulder": ["TORSO", "R_UPPER_ARM"],
    "left_elbow": ["L_UPPER_ARM", "L_FOREARM"],
    "right_elbow": ["R_UPPER_ARM", "R_FOREARM"],
    "left_wrist": ["L_FOREARM"],
    "right_wrist": ["R_FOREARM"],
    "left_hip": ["TORSO", "L_THIGH"],
    "right_hip": ["TORSO", "R_THIGH"],
    "left_knee": ["L_THIGH", "L_SHIN"],
    "right_knee": ["R_THIGH", "R_SHIN"],
    "left_ankle": ["L_SHIN"],
    "right_ankle": ["R_SHIN"],
}


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_flags_follow_the_owner_map() -> None:
    checked = {0: 0, 1: 0, 2: 0}
    for index in range(12):
        sample = render_synthetic_image(3, index, image_size=(120, 160), max_people=3)
        h, w = sample.owner.shape
        for n in range(len(sample.flags)):
            figure = int(sample.figures[n])
            for k, name in enumerate(COCO_KEYPOINTS.names):
                x, y = sample.keypoints[n, k]
                v = int(sample.flags[n, k])
                if not (0 <= x <= w - 1 and 0 <= y <= h - 1):
                    assert v == 0, (index, n, name)
                    checked[0] += 1
                    continue
                owner = int(sample.owner[round(y), round(x)])
                own = {1 + figure * 16 + getattr(syn, part) for part in _OWN_PARTS[name]}
                expected = 2 if owner in own else 1
                assert v == expected, (index, n, name, owner, own)
                checked[v] += 1
    assert checked[1] > 0
    assert checked[2] > 0


def test_occluded_share_is_coco_like_and_follows_occlusion_level() -> None:
    shares = []
    for level in (0.0, 1.0, 2.0):
        flags = np.concatenate(
            [render_synthetic_image(0, i, occlusion_level=level).flags.ravel() for i in range(60)]
        )
        shares.append((flags == 1).sum() / (flags > 0).sum())
    assert 0.10 <= shares[1] <= 0.30
    assert shares[0] < shares[1] < shares[2]
    assert shares[0] < 0.12


def test_written_set_is_deterministic_and_independent_of_workers(tmp_path: Path) -> None:
    a = make_synthetic_coco(tmp_path / "a", 6, seed=5, image_size=(60, 80))
    b = make_synthetic_coco(tmp_path / "b", 6, seed=5, image_size=(60, 80), num_workers=2)
    c = make_synthetic_coco(tmp_path / "c", 6, seed=6, image_size=(60, 80))
    assert _tree_digest(a.parent) == _tree_digest(b.parent)
    assert _tree_digest(a.parent) != _tree_digest(c.parent)


def test_json_matches_rendering_and_loads_with_pycocotools(tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    ann_file = make_synthetic_coco(tmp_path, 5, seed=1, split_name="val")
    assert ann_file == tmp_path / "person_keypoints_val.json"
    data = json.loads(ann_file.read_text())
    coco = COCO(str(ann_file))
    assert sorted(coco.getImgIds()) == [1, 2, 3, 4, 5]
    cat = coco.loadCats(1)[0]
    assert cat["keypoints"] == list(COCO_KEYPOINTS.names)
    assert [tuple(e) for e in cat["skeleton"]] == [(a + 1, b + 1) for a, b in COCO_KEYPOINTS.skeleton]
    assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"])
    for img in data["images"]:
        decoded = cv2.imread(str(tmp_path / "images" / img["file_name"]))
        assert decoded is not None
        assert decoded.shape == (240, 320, 3)
        sample = render_synthetic_image(1, img["id"] - 1)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
        assert len(anns) == len(sample.flags)
        for ann, kp, fl in zip(anns, sample.keypoints, sample.flags):
            values = np.asarray(ann["keypoints"]).reshape(17, 3)
            assert values[:, 2].tolist() == fl.tolist()
            assert ann["num_keypoints"] == int((fl > 0).sum())
            assert ann["iscrowd"] == 0
            labelled = fl > 0
            np.testing.assert_allclose(values[labelled, :2], kp[labelled], atol=0.006)
            assert (values[~labelled, :2] == 0).all()
            x, y, w, h = ann["bbox"]
            assert w > 0
            assert h > 0
            assert ann["area"] > 0
            assert (values[labelled, 0] >= x).all()
            assert (values[labelled, 0] <= x + w).all()
            assert (values[labelled, 1] >= y).all()
            assert (values[labelled, 1] <= y + h).all()
    dataset = TopDownCocoDataset(ann_file, tmp_path / "images", input_size=(64, 48))
    assert len(dataset) == len(data["annotations"])
    assert dataset[0]["image"].shape == (3, 64, 48)


def test_left_and_right_limbs_have_different_shades() -> None:
    sample = render_synthetic_image(0, 0)
    f = int(sample.figures[0])
    left = sample.image[sample.owner == 1 + f * 16 + syn.L_THIGH]
    right = sample.image[sample.owner == 1 + f * 16 + syn.R_THIGH]
    assert len(left)
    assert len(right)
    assert left.astype(float).mean() + 30 < right.astype(float).mean()


def test_arguments_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_images"):
        make_synthetic_coco(tmp_path, 0)
    with pytest.raises(ValueError, match="occluder_count"):
        make_synthetic_coco(tmp_path, 1, occluder_count=(3, 1))
    with pytest.raises(ValueError, match="occlusion_level"):
        render_synthetic_image(0, 0, occlusion_level=-1.0)
    with pytest.raises(ValueError, match="split_name"):
        make_synthetic_coco(tmp_path, 1, split_name="a/b")
    with pytest.raises(TypeError, match="seed"):
        render_synthetic_image(0.5, 0)  # type: ignore[arg-type]
