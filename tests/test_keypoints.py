"""Keypoint metadata: the preset tables, flip index, validation, registry and keypoint set files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import require_shared_data
from visattn.keypoints import (
    AIC_KEYPOINTS,
    AP10K_KEYPOINTS,
    COCO_KEYPOINTS,
    COCO_WHOLEBODY_HAND_KEYPOINTS,
    COCO_WHOLEBODY_KEYPOINTS,
    CROWDPOSE_KEYPOINTS,
    FACE300W_KEYPOINTS,
    HALPE26_KEYPOINTS,
    HALPE_KEYPOINTS,
    MPII_KEYPOINTS,
    OCHUMAN_KEYPOINTS,
    ONEHAND10K_KEYPOINTS,
    KeypointInfo,
    get_keypoint_info,
    list_keypoint_sets,
    load_keypoint_info,
)

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
    with pytest.raises(ValueError, match=r"one of \[.*'mpii'.*\].*got 'mpi'"):
        get_keypoint_info("mpi")


# ---------------------------------------------------------------------------- presets
# Facts per set, counted by hand from the MMPose dataset configs (configs/_base_/datasets/<set>.py):
# K, the number of `swap` pairs in keypoint_info and the number of skeleton_info links.
PRESET_FACTS = {
    "coco": (17, 8, 19),
    "coco_wholebody": (133, 61, 65),  # 17 body + 6 foot + 68 face + 21 + 21 hands
    "crowdpose": (14, 6, 15),
    "mpii": (16, 6, 15),
    "aic": (14, 6, 14),
    "halpe": (136, 61, 67),  # Halpe-FullBody: 26 body and foot + 68 face + 21 + 21 hands
    "halpe26": (26, 11, 27),
    "ochuman": (17, 8, 19),
    "onehand10k": (21, 0, 20),
    "coco_wholebody_hand": (21, 0, 20),
    "ap10k": (17, 7, 17),
    "300w": (68, 29, 0),
}
ALL_PRESETS = sorted(PRESET_FACTS)
# Published sigma tables that are not mirror-symmetric: AI Challenger's (measured per joint), and
# COCO-WholeBody's foot and face tables (which 300W borrows).
ASYMMETRIC_SIGMAS = {"aic", "coco_wholebody", "300w"}


def _is_face(info: KeypointInfo, i: int) -> bool:
    return info.name == "300w" or info.names[i].startswith("face-")


def _side(name: str) -> tuple[str, str] | None:
    """("left" | "right", rest) for names such as left_eye / right_eye."""
    for side in ("left_", "right_"):
        if name.startswith(side):
            return side[:-1], name[len(side) :]
    return None


def test_registry_lists_every_preset() -> None:
    assert list_keypoint_sets() == ALL_PRESETS
    assert get_keypoint_info("coco") is COCO_KEYPOINTS
    assert get_keypoint_info("ochuman") is OCHUMAN_KEYPOINTS
    assert get_keypoint_info("coco_wholebody") is COCO_WHOLEBODY_KEYPOINTS


@pytest.mark.parametrize("name", ALL_PRESETS)
def test_preset_structure(name: str) -> None:
    info = get_keypoint_info(name)
    k, n_pairs, n_edges = PRESET_FACTS[name]
    assert info.name == name
    assert info.num_keypoints == k == len(info.names) == len(set(info.names)) == len(info.sigmas)
    assert len(info.flip_pairs) == n_pairs
    assert len(info.skeleton) == n_edges
    assert all(0 <= a < k and 0 <= b < k and a != b for a, b in info.skeleton)
    assert len({frozenset(e) for e in info.skeleton}) == n_edges  # no edge twice
    flip = info.flip_index
    assert sorted(flip) == list(range(k))
    assert all(flip[flip[i]] == i for i in range(k))
    assert all(0 < s < 0.2 for s in info.sigmas)
    mirrored = [info.sigmas[i] == info.sigmas[flip[i]] for i in range(k)]
    if name in ASYMMETRIC_SIGMAS:  # as published; the check fails if a table became symmetric
        assert not all(mirrored)
    else:
        assert all(mirrored)
    upper, lower = set(info.upper_body), set(info.lower_body)
    assert not upper & lower
    assert {flip[i] for i in upper} == upper  # a flip keeps each half
    assert {flip[i] for i in lower} == lower
    assert (not upper) == (not lower) == (name in {"onehand10k", "coco_wholebody_hand", "300w"})


@pytest.mark.parametrize("name", ALL_PRESETS)
def test_flip_pairs_follow_the_names(name: str) -> None:
    info = get_keypoint_info(name)
    flip = info.flip_index
    for i, keypoint in enumerate(info.names):
        side = _side(keypoint)
        if side is not None:  # left_x <-> right_x, and every left_/right_ point has its mirror
            mirror = ("right_" if side[0] == "left" else "left_") + side[1]
            assert info.names[flip[i]] == mirror, (keypoint, info.names[flip[i]])
        elif not _is_face(info, i):
            assert flip[i] == i, keypoint  # nose, neck, head, wrist of a single hand ...


def test_face_flip_pairs_mirror_the_68_point_markup() -> None:
    # iBUG 68-point markup: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67
    flip = FACE300W_KEYPOINTS.flip_index
    assert [flip[i] for i in range(17)] == list(range(16, -1, -1))  # jaw line
    assert [flip[i] for i in range(17, 27)] == list(range(26, 16, -1))  # brows
    assert [flip[i] for i in range(27, 31)] == list(range(27, 31))  # nose bridge on the midline
    assert (flip[36], flip[39], flip[42], flip[45]) == (45, 42, 39, 36)  # eye corners
    assert (flip[48], flip[51], flip[54], flip[57], flip[62], flip[66]) == (54, 51, 48, 57, 62, 66)
    wholebody_face = [(a - 23, b - 23) for a, b in COCO_WHOLEBODY_KEYPOINTS.flip_pairs if 23 <= a < 91]
    assert sorted(wholebody_face) == sorted(FACE300W_KEYPOINTS.flip_pairs)
    halpe_face = [(a - 26, b - 26) for a, b in HALPE_KEYPOINTS.flip_pairs if 26 <= a < 94]
    assert sorted(halpe_face) == sorted(FACE300W_KEYPOINTS.flip_pairs)


def test_named_layout_facts() -> None:
    mpii = MPII_KEYPOINTS.names
    assert (mpii[0], mpii[6], mpii[7], mpii[9], mpii[15]) == (
        "right_ankle", "pelvis", "thorax", "head_top", "left_wrist"
    )  # fmt: skip
    assert AIC_KEYPOINTS.names[0] == "right_shoulder"
    assert AIC_KEYPOINTS.names[12:] == ("head_top", "neck")
    wb = COCO_WHOLEBODY_KEYPOINTS.names
    assert wb[:17] == COCO_KEYPOINTS.names
    assert (wb[17], wb[20], wb[23], wb[90], wb[91], wb[112]) == (
        "left_big_toe", "right_big_toe", "face-0", "face-67", "left_hand_root", "right_hand_root"
    )  # fmt: skip
    halpe = HALPE_KEYPOINTS.names
    assert halpe[:26] == HALPE26_KEYPOINTS.names
    assert halpe[17:20] == ("head", "neck", "hip")
    assert (halpe[26], halpe[94], halpe[115]) == ("face-0", "left_hand_root", "right_hand_root")
    assert OCHUMAN_KEYPOINTS.names == COCO_KEYPOINTS.names
    assert OCHUMAN_KEYPOINTS.sigmas == COCO_KEYPOINTS.sigmas
    hand = ONEHAND10K_KEYPOINTS.names
    assert hand == COCO_WHOLEBODY_HAND_KEYPOINTS.names
    assert (hand[0], hand[4], hand[20]) == ("wrist", "thumb4", "pinky_finger4")
    assert all(a == 0 or b == a + 1 for a, b in ONEHAND10K_KEYPOINTS.skeleton)  # root or along a finger
    assert AP10K_KEYPOINTS.names[4] == "root_of_tail"


def test_sigmas_from_the_evaluation_tools() -> None:
    # COCO-WholeBody evaluation: foot table, and one hand table used for both hands
    wb = COCO_WHOLEBODY_KEYPOINTS.sigmas
    assert wb[:17] == COCO_KEYPOINTS.sigmas
    assert wb[17:23] == (0.068, 0.066, 0.066, 0.092, 0.094, 0.094)
    assert wb[91:112] == wb[112:133] == COCO_WHOLEBODY_HAND_KEYPOINTS.sigmas == ONEHAND10K_KEYPOINTS.sigmas
    assert (wb[23], wb[39], wb[70]) == (0.042, 0.045, 0.034)  # face: jaw ends and the one 0.034
    assert FACE300W_KEYPOINTS.sigmas == wb[23:91]  # 300W borrows the COCO-WholeBody face table
    flip = COCO_WHOLEBODY_KEYPOINTS.flip_index
    assert all(wb[i] == wb[flip[i]] for i in (*range(17), *range(91, 133)))  # body and hands mirror
    # Halpe-FullBody evaluation: /10 of .8 (head, neck, hip), .89 (feet), .15 (face and hands)
    halpe = HALPE_KEYPOINTS.sigmas
    assert halpe[:17] == COCO_KEYPOINTS.sigmas
    assert halpe[17:20] == (0.08,) * 3
    assert halpe[20:26] == (0.089,) * 6
    assert set(halpe[26:]) == {0.015}
    # AI Challenger keypoint_eval.py: delta = 2 * [0.01388152, ...]
    assert AIC_KEYPOINTS.sigmas[0] == 0.01388152
    assert AIC_KEYPOINTS.sigmas[-1] == 0.01236173


@pytest.mark.parametrize("spelling", ["COCO-WholeBody", " coco_wholebody ", "Coco_WholeBody"])
def test_names_are_case_insensitive(spelling: str) -> None:
    assert get_keypoint_info(spelling) is COCO_WHOLEBODY_KEYPOINTS


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="got 'h36m'") as info:
        get_keypoint_info("h36m")
    assert all(repr(name) in str(info.value) for name in ALL_PRESETS)
    with pytest.raises(TypeError, match="got int 17"):
        get_keypoint_info(17)  # type: ignore[arg-type]


def test_lower_body_field() -> None:
    assert COCO_KEYPOINTS.lower_body == tuple(range(11, 17))
    assert CROWDPOSE_KEYPOINTS.lower_body == tuple(range(6, 12))
    positional = KeypointInfo("toy", ("a", "b"), (), (), (0.1, 0.1), (0,), (1,))
    assert positional.lower_body == (1,)
    with pytest.raises(ValueError, match=r"lower_body indices must lie in \[0, 2\)"):
        KeypointInfo("toy", ("a", "b"), (), (), (0.1, 0.1), (0,), (2,))
    with pytest.raises(ValueError, match=r"disjoint, both contain \[0\]"):
        KeypointInfo("toy", ("a", "b"), (), (), (0.1, 0.1), (0,), (0, 1))
    with pytest.raises(ValueError, match=r"distinct, got duplicates \['a'\]"):
        KeypointInfo("toy", ("a", "a"), (), (), (0.1, 0.1), ())


# ---------------------------------------------------------------------------- keypoint set files
TRIANGLE = {
    "name": "triangle",
    "names": ["left_tip", "right_tip", "base"],
    "flip_pairs": [["left_tip", "right_tip"]],
    "skeleton": [[0, 2], ["right_tip", "base"]],
    "sigmas": [0.05, 0.05, 0.1],
    "upper_body": ["left_tip", 1],
    "lower_body": [2],
}


def _write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data) if path.suffix == ".json" else str(data), encoding="utf-8")
    return path


def test_json_file_round_trip(tmp_path: Path) -> None:
    path = _write(tmp_path / "tri.json", TRIANGLE)
    info = load_keypoint_info(path)
    assert info == KeypointInfo(
        "triangle",
        ("left_tip", "right_tip", "base"),
        ((0, 1),),
        ((0, 2), (1, 2)),
        (0.05, 0.05, 0.1),
        (0, 1),
        (2,),
    )
    assert KeypointInfo.from_file(path) == info
    assert get_keypoint_info(path) == info  # os.PathLike
    assert get_keypoint_info(str(path)) == info  # a string ending in .json
    minimal = load_keypoint_info(_write(tmp_path / "two.json", {"names": ["a", "b"], "sigmas": [0.1, 0.2]}))
    assert (minimal.name, minimal.flip_pairs, minimal.skeleton, minimal.upper_body) == ("two", (), (), ())


def test_yaml_file(tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    path = tmp_path / "tri.yaml"
    path.write_text(yaml.safe_dump(TRIANGLE), encoding="utf-8")
    assert load_keypoint_info(path) == load_keypoint_info(_write(tmp_path / "tri.json", TRIANGLE))
    assert get_keypoint_info(str(path)).name == "triangle"
    (tmp_path / "list.yml").write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"list\.yml must hold one mapping of fields, got list"):
        load_keypoint_info(tmp_path / "list.yml")
    (tmp_path / "bad.yaml").write_text("names: [a, b\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.yaml is not valid YAML"):
        load_keypoint_info(tmp_path / "bad.yaml")


def test_yaml_without_pyyaml_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)  # makes `import yaml` fail as if not installed
    (tmp_path / "tri.yaml").write_text("names: [a]\nsigmas: [0.1]\n", encoding="utf-8")
    with pytest.raises(ImportError, match=r"tri\.yaml needs PyYAML"):
        load_keypoint_info(tmp_path / "tri.yaml")


BAD_FILES = [
    ({**TRIANGLE, "sigma": [0.1]}, ValueError, r"unknown field\(s\) \['sigma'\]"),
    ({"names": ["a"]}, ValueError, r"missing required field\(s\) \['sigmas'\]"),
    ({**TRIANGLE, "names": "abc"}, TypeError, r"field 'names' must be a non-empty list"),
    (
        {**TRIANGLE, "names": ["a", "a", "b"]},
        ValueError,
        r"field 'names' must be distinct keypoint names, got \"duplicates \['a'\]",
    ),
    ({**TRIANGLE, "sigmas": [0.1, 0.1]}, ValueError, r"field 'sigmas' must be a list of K=3 positive"),
    ({**TRIANGLE, "sigmas": [0.1, 0.1, -1]}, ValueError, r"field 'sigmas' must be a list of K=3 positive"),
    ({**TRIANGLE, "sigmas": [0.1, 0.1, "x"]}, TypeError, r"field 'sigmas'"),
    (
        {**TRIANGLE, "flip_pairs": [["left_tip", "nose"]]},
        ValueError,
        r"field 'flip_pairs' must be keypoint names",
    ),
    (
        {**TRIANGLE, "flip_pairs": [[0, 1, 2]]},
        TypeError,
        r"field 'flip_pairs' must be a list of \[a, b\] pairs",
    ),
    (
        {**TRIANGLE, "skeleton": [[0, 3]]},
        ValueError,
        r"field 'skeleton' must be keypoint indices in \[0, 3\)",
    ),
    ({**TRIANGLE, "skeleton": [[True, 1]]}, TypeError, r"field 'skeleton' must be keypoint indices \(int\)"),
    ({**TRIANGLE, "upper_body": 0}, TypeError, r"field 'upper_body' must be a list"),
    ({**TRIANGLE, "lower_body": [0]}, ValueError, r"upper_body and lower_body must be disjoint"),
    ({**TRIANGLE, "flip_pairs": [[0, 1], [1, 2]]}, ValueError, r"flip_pairs must be disjoint pairs"),
    ({**TRIANGLE, "name": ""}, TypeError, r"field 'name' must be a non-empty string"),
    ([TRIANGLE], ValueError, r"must hold one mapping of fields, got list"),
]


@pytest.mark.parametrize(("data", "error", "message"), BAD_FILES)
def test_bad_json_files_name_the_file_and_the_field(
    tmp_path: Path, data: object, error: type[Exception], message: str
) -> None:
    path = _write(tmp_path / "custom_set.json", data)
    with pytest.raises(error, match=message) as info:
        load_keypoint_info(path)
    assert str(path) in str(info.value)


def test_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('{"names": ["a"],', encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.json is not valid JSON"):
        load_keypoint_info(tmp_path / "broken.json")
    with pytest.raises(ValueError, match=r"missing\.json cannot be read"):
        get_keypoint_info(str(tmp_path / "missing.json"))
    (tmp_path / "set.txt").write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match=r"must end in \.json, \.yaml or \.yml, got '\.txt'"):
        get_keypoint_info(tmp_path / "set.txt")
    with pytest.raises(TypeError, match=r"path must be a str or os\.PathLike, got int"):
        load_keypoint_info(3)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- real samples
# COCO-format sample files of mmpose-testdata (see its README): (preset, annotation file, image folder).
COCO_FORMAT_SAMPLES = [
    ("coco", "coco/test_coco.json", "coco"),
    ("crowdpose", "crowdpose/test_crowdpose.json", "crowdpose"),
    ("aic", "aic/test_aic.json", "aic"),
    ("halpe", "halpe/test_halpe.json", "coco"),  # Halpe's samples are the COCO images
    ("ochuman", "ochuman/test_ochuman.json", "ochuman"),
    ("onehand10k", "onehand10k/test_onehand10k.json", "onehand10k"),
    ("ap10k", "ap10k/test_ap10k.json", "ap10k"),
    ("300w", "300w/test_300w.json", "300w"),
]
NO_AUG = {"flip_prob": 0.0, "half_body_prob": 0.0, "scale_factor": 0.0, "rotation_prob": 0.0}


def _snake(name: str) -> str:
    """AI Challenger's files spell names "Right Shoulder", "Head top"."""
    return name.strip().lower().replace(" ", "_")


def _expected_samples(data: dict) -> list[dict]:
    """Annotations the top-down dataset keeps: category 1, not crowd, >= 1 labelled keypoint, a box."""
    return [
        ann
        for ann in data["annotations"]
        if ann.get("category_id", 1) == 1
        and not ann.get("iscrowd", 0)
        and any(v > 0 for v in ann["keypoints"][2::3])
        and ann["bbox"][2] > 0
        and ann["bbox"][3] > 0
    ]


@pytest.mark.parametrize(("preset", "ann_file", "image_dir"), COCO_FORMAT_SAMPLES)
def test_real_samples_load_with_the_preset(preset: str, ann_file: str, image_dir: str) -> None:
    root = require_shared_data()
    pytest.importorskip("cv2")
    from visattn.data import AugmentConfig, TopDownCocoDataset

    info = get_keypoint_info(preset)
    data = json.loads((root / ann_file).read_text())
    assert {len(ann["keypoints"]) // 3 for ann in data["annotations"]} == {info.num_keypoints}
    for category in data["categories"]:
        if category.get("keypoints"):  # halpe and 300w list none
            assert [_snake(n) for n in category["keypoints"]] == list(info.names)

    dataset = TopDownCocoDataset(root / ann_file, root / image_dir, keypoint_info=preset, input_size=(64, 48))
    expected = _expected_samples(data)
    assert len(dataset) == len(expected) > 0
    item = dataset[0]
    ann = next(a for a in expected if a["id"] == int(item["ann_id"]))
    assert item["keypoints"].shape == (info.num_keypoints, 2)
    assert item["flags"].tolist() == [int(v) for v in ann["keypoints"][2::3]]

    flipping = TopDownCocoDataset(
        root / ann_file,
        root / image_dir,
        keypoint_info=preset,
        input_size=(64, 48),
        train=True,
        augment=AugmentConfig(**{**NO_AUG, "flip_prob": 1.0}),
    )
    flipped = flipping[0]
    assert bool(flipped["flipped"])
    assert flipped["flags"].tolist() == [int(ann["keypoints"][3 * j + 2]) for j in info.flip_index]


def test_real_coco_wholebody_sample(tmp_path: Path) -> None:
    """COCO-WholeBody keeps the body in `keypoints` and each other part in its own field; joined in
    the order of its evaluation they are the 133 keypoints of the preset."""
    root = require_shared_data()
    pytest.importorskip("cv2")
    from visattn.data import TopDownCocoDataset

    parts = ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")
    data = json.loads((root / "coco" / "test_coco_wholebody.json").read_text())
    assert data["categories"][0]["keypoints"] == list(COCO_WHOLEBODY_KEYPOINTS.names[:17])
    for ann in data["annotations"]:
        assert [len(ann[p]) // 3 for p in parts] == [17, 6, 68, 21, 21]
        joined_values = [value for p in parts for value in ann[p]]
        # the face / hand / foot fields store a confidence as third value; like MMPose's loader, a
        # positive one counts as labelled (here: visible, v = 2) and 0 as not labelled
        joined_values[2::3] = [v if float(v).is_integer() and v in (0, 1, 2) else (2 if v > 0 else 0)
                               for v in joined_values[2::3]]  # fmt: skip
        ann["keypoints"] = joined_values
    joined = tmp_path / "wholebody_joined.json"
    joined.write_text(json.dumps(data))
    dataset = TopDownCocoDataset(joined, root / "coco", keypoint_info="coco_wholebody", input_size=(64, 48))
    expected = _expected_samples(data)
    assert len(dataset) == len(expected) > 0
    item = dataset[0]
    ann = next(a for a in expected if a["id"] == int(item["ann_id"]))
    assert item["flags"].shape == (133,)
    assert item["flags"].tolist() == [int(v) for v in ann["keypoints"][2::3]]


def test_real_mpii_sample_has_16_joints() -> None:
    """MPII's sample is its own converted format (image, center, scale, joints, joints_vis), not COCO:
    only K and the visibility flags can be checked against the preset."""
    root = require_shared_data()
    entries = json.loads((root / "mpii" / "test_mpii.json").read_text())
    assert entries
    for entry in entries:
        assert len(entry["joints"]) == len(entry["joints_vis"]) == MPII_KEYPOINTS.num_keypoints
        assert all(len(joint) == 2 for joint in entry["joints"])
        assert set(entry["joints_vis"]) <= {0, 1}
