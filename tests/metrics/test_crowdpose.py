from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import CROWDPOSE_DIR, require_shared_data
from tests.metrics.test_coco import oracle_ap, oracle_dets
from visattn.keypoints import CROWDPOSE_KEYPOINTS
from visattn.metrics import crowdpose_ap, xtcocotools_available

NAMES = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP_easy", "AP_medium", "AP_hard")
SIGMAS = np.asarray(CROWDPOSE_KEYPOINTS.sigmas)


@pytest.fixture(scope="module")
def crowd_data() -> dict[str, Any]:
    require_shared_data()
    with (CROWDPOSE_DIR / "test_crowdpose.json").open() as f:
        data: dict[str, Any] = json.load(f)
    return data


def perturbed(data: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for a in data["annotations"]:
        for noise in (6.0, 14.0):
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
    out[0]["keypoints"][2::3] = [0.0] * 14  # all keypoint scores 0: dropped by the protocol
    return out


def crowd_oracle(data: dict[str, Any], results: list[dict[str, Any]], images: set[int]) -> dict[str, float]:
    """The CrowdPose protocol from its definition: area 0.53 * box, ignore num_keypoints == 0, and
    detections with all keypoint scores 0 dropped."""
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
    return oracle_ap(gts, dets, SIGMAS)


def with_buckets(data: dict[str, Any]) -> dict[str, Any]:
    """Move the two images to the easy and hard buckets."""
    edited = copy.deepcopy(data)
    edited["images"][0]["crowdIndex"] = 0.05
    edited["images"][1]["crowdIndex"] = 0.9
    return edited


@pytest.mark.parametrize("backend", ["auto", "pycocotools"])
def test_ground_truth_fed_back(crowd_data: dict[str, Any], backend: str) -> None:
    if backend == "auto" and not xtcocotools_available():
        backend = "pycocotools"
    results = [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
        for a in crowd_data["annotations"]
    ]
    out = crowdpose_ap(CROWDPOSE_DIR / "test_crowdpose.json", results, backend=backend)
    assert list(out) == list(NAMES)
    for name in ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP_medium"):
        assert out[name] == pytest.approx(1.0, abs=1e-12), name
    assert math.isnan(out["AP_easy"])
    assert math.isnan(out["AP_hard"])


@pytest.mark.parametrize("seed", [0, 1])
def test_pycocotools_backend_equals_oracle(crowd_data: dict[str, Any], seed: int) -> None:
    data = with_buckets(crowd_data)
    results = perturbed(data, seed)
    out = crowdpose_ap(data, results, backend="pycocotools")
    everything = crowd_oracle(data, results, {img["id"] for img in data["images"]})
    for name in ("AP", "AP50", "AP75", "AR"):
        assert out[name] == pytest.approx(everything[name], abs=1e-12), name
    easy = crowd_oracle(data, results, {data["images"][0]["id"]})
    hard = crowd_oracle(data, results, {data["images"][1]["id"]})
    assert out["AP_easy"] == pytest.approx(easy["AP"], abs=1e-12)
    assert out["AP_hard"] == pytest.approx(hard["AP"], abs=1e-12)
    assert math.isnan(out["AP_medium"])
    assert 0.2 < out["AP"] < 0.95


@pytest.mark.skipif(not xtcocotools_available(), reason="xtcocotools missing or built for another numpy ABI")
@pytest.mark.parametrize("backend", ["xtcocotools", "pycocotools"])
def test_equals_direct_xtcocotools(crowd_data: dict[str, Any], tmp_path: Path, backend: str) -> None:
    from xtcocotools.coco import COCO
    from xtcocotools.cocoeval import COCOeval

    data = with_buckets(crowd_data)
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(data))
    results = perturbed(data, 3)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        ev = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), "keypoints_crowd", SIGMAS, use_area=False)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    out = crowdpose_ap(gt_path, results, backend=backend)
    for name, ref in zip(NAMES, ev.stats):
        if ref < 0:
            assert math.isnan(out[name]), name
        else:  # xtcocotools rounds the difficulty APs to 4 decimals
            assert out[name] == pytest.approx(
                float(ref), abs=5e-5 if name in ("AP_easy", "AP_medium", "AP_hard") else 1e-12
            ), name


def test_xtcocotools_backend_error_is_clear() -> None:
    """Without xtcocotools (made unimportable in a fresh interpreter), the error says what to install."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["xtcocotools"] = None  # import of the package now raises ImportError
        from visattn.metrics import crowdpose_ap, xtcocotools_available
        assert not xtcocotools_available()
        data = {"images": [{"id": 1, "crowdIndex": 0.1}], "annotations": [], "categories": [{"id": 1}]}
        results = [{"image_id": 1, "category_id": 1, "keypoints": [1.0] * 42, "score": 1.0}]
        try:
            crowdpose_ap(data, results, backend="xtcocotools")
        except ImportError as error:
            print(error)
        else:
            raise SystemExit("no ImportError")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"visattn\[crowdpose\]", proc.stdout), proc.stdout


def test_bad_input_raises(crowd_data: dict[str, Any]) -> None:
    good = [{"image_id": 106848, "category_id": 1, "keypoints": [1.0] * 42, "score": 1.0}]
    with pytest.raises(ValueError, match=r"expected 3\*14=42"):
        crowdpose_ap(crowd_data, [{**good[0], "keypoints": [1.0] * 51}])
    with pytest.raises(ValueError, match="image_id 5 not in annotation file"):
        crowdpose_ap(crowd_data, [{**good[0], "image_id": 5}])
    no_index = copy.deepcopy(crowd_data)
    del no_index["images"][0]["crowdIndex"]
    with pytest.raises(ValueError, match="crowdIndex"):
        crowdpose_ap(no_index, good)
    with pytest.raises(ValueError, match="backend must be one of"):
        crowdpose_ap(crowd_data, good, backend="mmpose")
