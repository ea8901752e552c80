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


def test_occlusion_causes_follow_the_owner_map() -> None:
    seen = {1: 0, 2: 0, 3: 0}
    for index in range(20):
        sample = render_synthetic_image(5, index, image_size=(120, 160), max_people=3)
        for n in range(len(sample.flags)):
            first = 1 + int(sample.figures[n]) * 16
            for k in range(17):
                cause = int(sample.causes[n, k])
                if sample.flags[n, k] != 1:
                    assert cause == 0
                    continue
                x, y = sample.keypoints[n, k]
                owner = int(sample.owner[round(y), round(x)])
                if owner < 0:
                    expected = 1  # an occluder
                elif owner > 0 and not first <= owner < first + 16:
                    expected = 2  # another figure
                else:
                    expected = 3  # its own body (or the background just off its own part)
                assert cause == expected, (index, n, k, owner)
                seen[cause] += 1
    assert all(count > 0 for count in seen.values()), seen


def test_statistics_count_the_three_causes_and_crowding_adds_person_occlusion(tmp_path: Path) -> None:
    plain = syn.occlusion_statistics(
        make_synthetic_coco(tmp_path / "plain", 80, seed=4, image_size=(120, 160))
    )
    crowd_ann = make_synthetic_coco(
        tmp_path / "crowd", 80, seed=4, image_size=(120, 160), crowd=True, max_people=3
    )
    crowd = syn.occlusion_statistics(crowd_ann)
    data = json.loads(crowd_ann.read_text())
    flags = np.array([a["keypoints"][2::3] for a in data["annotations"]])
    causes = np.array([a["occlusion_cause"] for a in data["annotations"]])
    assert crowd["occluded"] == (flags == 1).sum() == (causes > 0).sum()
    assert crowd["person_share"] == pytest.approx((causes == 2).sum() / (causes > 0).sum())
    assert 0.15 <= plain["occluded_share"] <= 0.32
    for stats in (plain, crowd):
        assert min(stats["object_share"], stats["person_share"], stats["self_share"]) > 0
    assert crowd["person_share"] > 2 * plain["person_share"]
    per_image = np.bincount([a["image_id"] for a in data["annotations"]])[1:]
    assert np.mean(per_image) > 1.5
    with pytest.raises(ValueError, match="max_people"):
        make_synthetic_coco(tmp_path / "bad", 1, crowd=True, max_people=1)
    with pytest.raises(ValueError, match="occlusion_cause"):
        syn.occlusion_statistics({"annotations": [{"id": 1, "keypoints": [1, 1, 1]}]})


def test_limb_like_occluders_use_limb_widths_and_shades() -> None:
    # Some occluders are bars whose width matches a limb's: find occluder pixels whose colour is a limb shade.
    bars = 0
    for index in range(30):
        sample = render_synthetic_image(6, index, image_size=(120, 160))
        occluder = sample.owner < 0
        if not occluder.any():
            continue
        pixels = sample.image[occluder].astype(np.int64)
        # a bar is one flat colour: many occluder pixels share the most common colour
        _, counts = np.unique(pixels, axis=0, return_counts=True)
        bars += int(counts.max() > 0.5 * occluder.sum())
    assert bars > 0


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
