"""CrowdPose AP: pycocotools-based, checked against loop oracles and, where it imports, xtcocotools."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import CROWDPOSE_DIR, REPO_ROOT, require_shared_data
from tests.metrics.test_coco import oracle_ap, oracle_dets
from visattn.keypoints import CROWDPOSE_KEYPOINTS
from visattn.metrics import CROWDPOSE_STAT_NAMES, crowdpose_ap

NAMES = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP_easy", "AP_medium", "AP_hard")
# The CrowdPose toolkit's sigmas (crowdposetools/cocoeval.py: computeOks), written out here.
OFFICIAL_SIGMAS = np.array(
    [0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89, 0.79, 0.79]
)
OFFICIAL_SIGMAS = OFFICIAL_SIGMAS / 10.0
OKS_THRESHOLDS = np.linspace(0.5, 0.95, 10)
K = 14


# ---------------------------------------------------------------------------------------------------------
# oracles written from the definitions
# ---------------------------------------------------------------------------------------------------------


def loop_oks(det: list[float], gt: dict[str, Any]) -> float:
    """CrowdPose OKS of one detection with one ground truth that has labelled keypoints, by a loop:
    the mean over the labelled (v > 0) joints of exp(-d^2 / (2 s^2 (2 sigma)^2)), s^2 = 0.53 * w * h."""
    w, h = gt["bbox"][2], gt["bbox"][3]
    s2 = 0.53 * w * h
    total, n = 0.0, 0
    for i in range(K):
        xg, yg, vg = gt["keypoints"][3 * i : 3 * i + 3]
        if vg <= 0:
            continue
        d2 = (det[3 * i] - xg) ** 2 + (det[3 * i + 1] - yg) ** 2
        total += math.exp(-d2 / (2.0 * s2 * (2.0 * OFFICIAL_SIGMAS[i]) ** 2))
        n += 1
    return total / n


def bucket_of(crowd_index: float, easy_below: float = 0.2, medium_below: float = 0.8) -> str:
    """The toolkit's split (crowdposetools ``split``, called with 0.2 / 0.8 by its ``summarize``)."""
    if crowd_index < easy_below:
        return "easy"
    if crowd_index < medium_below:
        return "medium"
    return "hard"


def crowd_oracle(data: dict[str, Any], results: list[dict[str, Any]], images: set[int]) -> dict[str, float]:
    """The CrowdPose protocol from its definition: area 0.53 * box, ignore iscrowd or num_keypoints == 0,
    detections with all keypoint scores 0 dropped; the COCO AP loop oracle of test_coco.py on top."""
    gts = []
    for a in data["annotations"]:
        if a["image_id"] not in images:
            continue
        kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)
        gts.append(
            {
                "image_id": a["image_id"],
                "keypoints": kp,
                "counted": kp[:, 2] > 0,
                "area": a["bbox"][2] * a["bbox"][3] * 0.53,
                "bbox": a["bbox"],
                "iscrowd": bool(a["iscrowd"]),
                "ignore": bool(a["iscrowd"]) or a["num_keypoints"] == 0,
            }
        )
    dets = [d for d in oracle_dets(results) if d["image_id"] in images and (d["keypoints"][:, 2] > 0).any()]
    return oracle_ap(gts, dets, OFFICIAL_SIGMAS)


# ---------------------------------------------------------------------------------------------------------
# a synthetic CrowdPose file (no ../shared needed): crowd indices on both sides of every bucket bound
# ---------------------------------------------------------------------------------------------------------

CROWD_INDICES = (0.0, 0.1, 0.19, 0.2, 0.5, 0.79, 0.8, 0.95)


def toy_crowdpose(seed: int = 0, crowd_indices: tuple[float, ...] = CROWD_INDICES) -> dict[str, Any]:
    """Images with the given crowd indices and 3 persons each; ids start at 0 (an id 0 ground truth)."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i, c in enumerate(crowd_indices):
        image_id = 100 + i
        images.append(
            {"id": image_id, "file_name": f"{image_id}.jpg", "height": 480, "width": 640, "crowdIndex": c}
        )
        for j in range(3):
            w, h = float(rng.uniform(60, 200)), float(rng.uniform(120, 300))
            x, y = float(rng.uniform(0, 400)) + 30.0 * j, float(rng.uniform(0, 150))
            kp = np.stack(
                [x + rng.uniform(0, w, K), y + rng.uniform(0, h, K), rng.choice([0, 1, 2, 2], size=K)], axis=1
            )
            if j == 2 and i % 4 == 1:  # only occluded joints: CrowdPose's num_keypoints is 0, ignored
                kp[:, 2] = np.where(kp[:, 2] > 0, 1, 0)
            kp[0, 2] = max(kp[0, 2], 1)  # at least one labelled joint
            anns.append(
                {
                    "id": len(anns),
                    "image_id": image_id,
                    "category_id": 1,
                    "iscrowd": 0,
                    "keypoints": kp.ravel().tolist(),
                    "num_keypoints": int((kp[:, 2] == 2).sum()),  # CrowdPose counts visible joints
                    "bbox": [x, y, w, h],
                }
            )
    categories = [{"id": 1, "name": "person", "keypoints": list(CROWDPOSE_KEYPOINTS.names)}]
    return {"images": images, "annotations": anns, "categories": categories}


def perfect(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": list(a["keypoints"]), "score": 1.0}
        for a in data["annotations"]
    ]


def perturbed(
    data: dict[str, Any], seed: int, noises: tuple[float, ...] = (6.0, 14.0)
) -> list[dict[str, Any]]:
    """A noisy detection per ground truth and noise level, a false positive per image, one all-zero-score."""
    rng = np.random.default_rng(seed)
    out = []
    for a in data["annotations"]:
        for noise in noises:
            kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)
            kp[:, :2] += rng.normal(0.0, noise, size=(len(kp), 2))
            kp[:, 2] = rng.uniform(0.1, 1.0, size=len(kp))
            out.append(
                {
                    "image_id": a["image_id"],
                    "category_id": 1,
                    "keypoints": kp.ravel().tolist(),
                    "score": float(rng.uniform()),
                }
            )
    for img in data["images"]:
        kp = np.stack([rng.uniform(0, 640, K), rng.uniform(0, 480, K), rng.uniform(0.1, 1.0, K)], axis=1)
        out.append(
            {
                "image_id": img["id"],
                "category_id": 1,
                "keypoints": kp.ravel().tolist(),
                "score": float(rng.uniform()),
            }
        )
    out[0]["keypoints"][2::3] = [0.0] * K  # all keypoint scores 0: dropped by the protocol
    return out


def assert_equals_oracle(
    data: dict[str, Any], results: list[dict[str, Any]], **kwargs: Any
) -> dict[str, float]:
    out = crowdpose_ap(data, results, **kwargs)
    assert tuple(out) == NAMES == CROWDPOSE_STAT_NAMES
    everything = crowd_oracle(data, results, {img["id"] for img in data["images"]})
    for name in ("AP", "AP50", "AP75", "AR"):
        assert out[name] == pytest.approx(everything[name], abs=1e-12), name
    bounds = kwargs.get("crowd_thresholds", (0.2, 0.8))
    for bucket in ("easy", "medium", "hard"):
        ids = {img["id"] for img in data["images"] if bucket_of(img["crowdIndex"], *bounds) == bucket}
        if ids:
            expected = crowd_oracle(data, results, ids)["AP"]
            assert out[f"AP_{bucket}"] == pytest.approx(expected, abs=1e-12), bucket
        else:
            assert math.isnan(out[f"AP_{bucket}"]), bucket
    return out


# ---------------------------------------------------------------------------------------------------------
# tests without ../shared and without xtcocotools
# ---------------------------------------------------------------------------------------------------------


def test_sigmas_are_the_toolkits() -> None:
    np.testing.assert_allclose(CROWDPOSE_KEYPOINTS.sigmas, OFFICIAL_SIGMAS, rtol=0, atol=1e-12)


@pytest.mark.parametrize("noise", [3.0, 9.0, 20.0])
def test_one_instance_ap_counts_the_thresholds_below_its_oks(noise: float) -> None:
    """One ground truth, one detection: AP = the share of the 10 OKS thresholds its loop OKS reaches."""
    data = toy_crowdpose(1, (0.5,))
    data["annotations"] = data["annotations"][:1]
    gt = data["annotations"][0]
    rng = np.random.default_rng(int(noise))
    det = np.asarray(gt["keypoints"], dtype=np.float64).reshape(-1, 3)
    det[:, :2] += rng.normal(0.0, noise, size=(K, 2))
    det[:, 2] = 0.9
    det_list = det.ravel().tolist()
    oks = loop_oks(det_list, gt)
    assert np.abs(OKS_THRESHOLDS - oks).min() > 1e-6  # not on a threshold
    out = crowdpose_ap(
        data, [{"image_id": gt["image_id"], "category_id": 1, "keypoints": det_list, "score": 0.7}]
    )
    expected = float((oks >= OKS_THRESHOLDS).mean())
    assert out["AP"] == pytest.approx(expected, abs=1e-12)
    assert out["AR"] == pytest.approx(expected, abs=1e-12)
    assert out["AP50"] == pytest.approx(float(oks >= 0.5), abs=1e-12)
    assert out["AP75"] == pytest.approx(float(oks >= 0.75), abs=1e-12)
    assert out["AP_medium"] == pytest.approx(expected, abs=1e-12)
    assert math.isnan(out["AP_easy"])
    assert math.isnan(out["AP_hard"])


def test_oks_scale_is_053_box_area() -> None:
    """Every labelled joint shifted so that its OKS term is 0.57 with the scale 0.53 * w * h: AP 0.2
    (thresholds 0.50 and 0.55). With w * h as scale the OKS would be 0.57 ** 0.53 = 0.74, AP 0.5."""
    data = toy_crowdpose(2, (0.5,))
    data["annotations"] = data["annotations"][:1]
    gt = data["annotations"][0]
    w, h = gt["bbox"][2], gt["bbox"][3]
    det = np.asarray(gt["keypoints"], dtype=np.float64).reshape(-1, 3)
    d = np.sqrt(-math.log(0.57) * 2 * 0.53 * w * h * (2 * OFFICIAL_SIGMAS) ** 2)  # (K,)
    det[:, 0] += np.where(det[:, 2] > 0, d, 0.0)
    det[:, 2] = 0.9
    det_list = det.ravel().tolist()
    assert loop_oks(det_list, gt) == pytest.approx(0.57, abs=1e-9)
    out = crowdpose_ap(
        data, [{"image_id": gt["image_id"], "category_id": 1, "keypoints": det_list, "score": 1.0}]
    )
    assert out["AP50"] == pytest.approx(1.0, abs=1e-12)
    assert out["AP75"] == 0.0
    assert out["AP"] == pytest.approx(0.2, abs=1e-12)


def test_perfect_predictions_give_one() -> None:
    data = toy_crowdpose(0)
    out = crowdpose_ap(data, perfect(data))
    for name in NAMES:
        assert out[name] == pytest.approx(1.0, abs=1e-12), name


def test_perturbed_predictions_lower_ap_and_equal_the_loop_oracle() -> None:
    data = toy_crowdpose(0)
    small = assert_equals_oracle(data, perturbed(data, 0, noises=(2.0,)))
    large = assert_equals_oracle(data, perturbed(data, 0, noises=(12.0,)))
    assert 0.0 < large["AP"] < small["AP"] < 1.0
    assert large["AR"] < small["AR"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_loop_oracle(seed: int) -> None:
    data = toy_crowdpose(seed)
    assert_equals_oracle(data, perturbed(data, seed))


def test_split_by_crowd_index() -> None:
    """Perfect on easy images, one person found per medium image, nothing right on hard ones: AP_easy 1,
    AP_hard 0 and AP_medium the oracle's, so an image on the wrong side of a bound changes a number."""
    data = toy_crowdpose(3)
    expected = {img["id"]: bucket_of(img["crowdIndex"]) for img in data["images"]}
    assert [bucket_of(c) for c in CROWD_INDICES] == ["easy"] * 3 + ["medium"] * 3 + ["hard"] * 2
    rng = np.random.default_rng(0)
    results = []
    seen: set[int] = set()
    for r in perfect(data):
        bucket = expected[r["image_id"]]
        if bucket == "hard" or (bucket == "medium" and r["image_id"] in seen):
            kp = np.asarray(r["keypoints"]).reshape(-1, 3)
            kp[:, :2] = np.stack([rng.uniform(0, 640, K), rng.uniform(0, 480, K)], axis=1)
            kp[:, 2] = 0.5
            r["keypoints"] = kp.ravel().tolist()
        seen.add(r["image_id"])
        results.append(r)
    out = assert_equals_oracle(data, results)
    assert out["AP_easy"] == pytest.approx(1.0, abs=1e-12)
    assert out["AP_hard"] == 0.0
    assert 0.0 < out["AP_medium"] < 1.0
    # the paper's text bounds (0.1 / 0.8) move the images at 0.1 and 0.19 to medium
    assert_equals_oracle(data, results, crowd_thresholds=(0.1, 0.8))
    everything_hard = crowdpose_ap(data, results, crowd_thresholds=(0.0, 0.0))
    assert math.isnan(everything_hard["AP_easy"])
    assert math.isnan(everything_hard["AP_medium"])
    assert everything_hard["AP_hard"] == pytest.approx(everything_hard["AP"], abs=1e-12)


def test_protocol_rules() -> None:
    """An all-zero-score detection is dropped, num_keypoints == 0 ground truths are ignored, id 0 works."""
    data = toy_crowdpose(4, (0.5,))
    assert data["annotations"][0]["id"] == 0
    results = perfect(data)
    stray = {"image_id": 100, "category_id": 1, "keypoints": [300.0, 200.0, 0.0] * K, "score": 5.0}
    assert crowdpose_ap(data, [*results, stray])["AP"] == pytest.approx(1.0, abs=1e-12)
    stray["keypoints"][2] = 0.01  # one positive keypoint score: a kept, top-scored false positive
    assert crowdpose_ap(data, [*results, stray])["AP"] < 1.0
    ignored = copy.deepcopy(data)
    ignored["annotations"][1]["num_keypoints"] = 0  # labelled joints, but none visible
    without_it = [r for r in results if r["keypoints"] != ignored["annotations"][1]["keypoints"]]
    out = crowdpose_ap(ignored, without_it)
    assert out["AP"] == pytest.approx(1.0, abs=1e-12)  # nothing to find there: no recall lost
    assert out["AR"] == pytest.approx(1.0, abs=1e-12)


def test_inputs_are_not_modified() -> None:
    data = toy_crowdpose(5)
    results = perturbed(data, 5)
    before = (copy.deepcopy(data), copy.deepcopy(results))
    crowdpose_ap(data, results)
    assert (data, results) == before


def test_paths_and_dicts_agree(tmp_path: Path) -> None:
    data = toy_crowdpose(6)
    results = perturbed(data, 6)
    (tmp_path / "gt.json").write_text(json.dumps(data))
    (tmp_path / "res.json").write_text(json.dumps(results))
    assert crowdpose_ap(tmp_path / "gt.json", str(tmp_path / "res.json")) == crowdpose_ap(data, results)


def test_backend_argument_is_deprecated() -> None:
    data = toy_crowdpose(7)
    results = perturbed(data, 7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reference = crowdpose_ap(data, results)
    for backend in ("auto", "pycocotools"):
        with pytest.warns(DeprecationWarning, match="backend=.*deprecated"):
            assert crowdpose_ap(data, results, backend=backend) == reference
    with pytest.raises(ValueError, match="backend='xtcocotools' was removed"):
        crowdpose_ap(data, results, backend="xtcocotools")
    with pytest.raises(ValueError, match="backend must be one of"):
        crowdpose_ap(data, results, backend="mmpose")


def test_bad_input_raises() -> None:
    data = toy_crowdpose(8, (0.3,))
    good = [{"image_id": 100, "category_id": 1, "keypoints": [1.0] * 42, "score": 1.0}]
    with pytest.raises(ValueError, match=r"expected 3\*14=42"):
        crowdpose_ap(data, [{**good[0], "keypoints": [1.0] * 51}])
    with pytest.raises(ValueError, match="image_id 5 not in annotation file"):
        crowdpose_ap(data, [{**good[0], "image_id": 5}])
    with pytest.raises(ValueError, match="results is empty"):
        crowdpose_ap(data, [])
    no_index = copy.deepcopy(data)
    del no_index["images"][0]["crowdIndex"]
    with pytest.raises(ValueError, match="image 100 has no 'crowdIndex'"):
        crowdpose_ap(no_index, good)
    for bad in ("high", math.nan, None):
        bad_index = copy.deepcopy(data)
        bad_index["images"][0]["crowdIndex"] = bad
        with pytest.raises(ValueError, match=r"crowdIndex .* must be a finite number"):
            crowdpose_ap(bad_index, good)
    no_box = copy.deepcopy(data)
    del no_box["annotations"][0]["bbox"]
    with pytest.raises(ValueError, match="must have 'keypoints' and 'bbox'"):
        crowdpose_ap(no_box, good)
    with pytest.raises(ValueError, match="0 <= a <= b"):
        crowdpose_ap(data, good, crowd_thresholds=(0.8, 0.2))
    with pytest.raises(ValueError, match="0 <= a <= b"):
        crowdpose_ap(data, good, crowd_thresholds=(-0.1, 0.8))
    for bad_pair in (0.2, (0.2,), ("0.2", 0.8), (0.1, 0.5, 0.8)):
        with pytest.raises(TypeError, match="crowd_thresholds must be a pair"):
            crowdpose_ap(data, good, crowd_thresholds=bad_pair)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="K=17 keypoints but the annotation file has K=14"):
        crowdpose_ap(data, good, keypoint_info="coco")
    with pytest.raises(TypeError, match="ann_file must be a path"):
        crowdpose_ap(42, good)  # type: ignore[arg-type]


def test_runs_without_xtcocotools() -> None:
    """With xtcocotools made unimportable in a fresh interpreter, CrowdPose AP works and never asks for it."""
    data = toy_crowdpose(9)
    code = textwrap.dedent(
        """
        import json, sys
        sys.modules["xtcocotools"] = None  # any import of the package now raises ImportError
        from visattn.metrics import crowdpose_ap
        data, results = json.loads(sys.stdin.read())
        out = crowdpose_ap(data, results)
        assert not any(m.startswith("xtcocotools") and sys.modules[m] is not None for m in sys.modules)
        print(json.dumps(out))
        """
    )
    payload = json.dumps([data, perfect(data)])
    proc = subprocess.run(
        [sys.executable, "-c", code],
        input=payload,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == pytest.approx(dict.fromkeys(NAMES, 1.0), abs=1e-12)


# ---------------------------------------------------------------------------------------------------------
# the real CrowdPose samples (../shared)
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crowd_data() -> dict[str, Any]:
    require_shared_data()
    with (CROWDPOSE_DIR / "test_crowdpose.json").open() as f:
        data: dict[str, Any] = json.load(f)
    return data


def with_crowd_indices(data: dict[str, Any], indices: tuple[float, ...] | None) -> dict[str, Any]:
    """A copy with the images' crowd indices replaced (None: as in the file, both medium)."""
    edited = copy.deepcopy(data)
    if indices is not None:
        for img, c in zip(edited["images"], indices):
            img["crowdIndex"] = c
    return edited


def test_samples_ground_truth_fed_back(crowd_data: dict[str, Any]) -> None:
    out = crowdpose_ap(CROWDPOSE_DIR / "test_crowdpose.json", perfect(crowd_data))
    assert list(out) == list(NAMES)
    for name in ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP_medium"):
        assert out[name] == pytest.approx(1.0, abs=1e-12), name
    assert math.isnan(out["AP_easy"])
    assert math.isnan(out["AP_hard"])


@pytest.mark.parametrize("indices", [None, (0.05, 0.9), (0.2, 0.8)])
@pytest.mark.parametrize("seed", [0, 1])
def test_samples_equal_loop_oracle(
    crowd_data: dict[str, Any], indices: tuple[float, ...] | None, seed: int
) -> None:
    data = with_crowd_indices(crowd_data, indices)
    out = assert_equals_oracle(data, perturbed(data, seed))
    assert 0.1 < out["AP"] < 0.95


# ---------------------------------------------------------------------------------------------------------
# xtcocotools as an oracle, where it imports (its published wheels need numpy 1.x; skipped otherwise)
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xtcocotools() -> tuple[Any, Any]:
    try:
        from xtcocotools.coco import COCO
        from xtcocotools.cocoeval import COCOeval
    except (ImportError, ValueError) as err:  # absent, or a wheel built against another numpy ABI
        pytest.skip(f"xtcocotools does not import here ({type(err).__name__}: {err})")
    return COCO, COCOeval


def xtcocotools_stats(
    modules: tuple[Any, Any], data: dict[str, Any], results: list[dict[str, Any]], tmp_path: Path
) -> np.ndarray:
    """xtcocotools' own CrowdPose evaluation, run as MMPose runs it (it reads the split from the file)."""
    COCO, COCOeval = modules
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(data))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        ev = COCOeval(
            gt, gt.loadRes(copy.deepcopy(results)), "keypoints_crowd", OFFICIAL_SIGMAS, use_area=False
        )
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats, dtype=np.float64)


def assert_matches_xtcocotools(out: dict[str, float], stats: np.ndarray) -> None:
    for name, ref in zip(NAMES, stats.tolist()):
        if ref < 0:
            assert math.isnan(out[name]), name
        else:  # xtcocotools rounds the difficulty APs to 4 decimals
            tol = 5e-5 if name.startswith("AP_") else 1e-12
            assert out[name] == pytest.approx(ref, abs=tol), name


@pytest.mark.parametrize("indices", [None, (0.05, 0.9), (0.2, 0.8), (0.19, 0.79)])
@pytest.mark.parametrize("seed", [0, 3])
def test_samples_equal_xtcocotools(
    xtcocotools: tuple[Any, Any],
    crowd_data: dict[str, Any],
    tmp_path: Path,
    indices: tuple[float, ...] | None,
    seed: int,
) -> None:
    data = with_crowd_indices(crowd_data, indices)
    results = perturbed(data, seed)
    assert_matches_xtcocotools(
        crowdpose_ap(data, results), xtcocotools_stats(xtcocotools, data, results, tmp_path)
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_synthetic_equals_xtcocotools(xtcocotools: tuple[Any, Any], tmp_path: Path, seed: int) -> None:
    """Crowd indices on both sides of 0.2 and 0.8: the split is the one xtcocotools applies."""
    data = toy_crowdpose(seed)
    results = perturbed(data, seed)
    assert_matches_xtcocotools(
        crowdpose_ap(data, results), xtcocotools_stats(xtcocotools, data, results, tmp_path)
    )
