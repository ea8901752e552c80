from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.helpers import COCO_DIR, assert_close, require_shared_data
from visattn.keypoints import COCO_KEYPOINTS
from visattn.metrics import coco_keypoint_ap, keypoint_oks

NAMES = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")


# ---------------------------------------------------------------------------------------------------------
# slow, obviously-correct oracle of COCO keypoint AP (area range "all", maxDets 20), written from the
# COCO definition; also used by test_crowdpose.py
# ---------------------------------------------------------------------------------------------------------


def oracle_oks(det_kp: np.ndarray, gt: dict[str, Any], sigmas: np.ndarray) -> float:
    """OKS of one detection (K, 3) with one ground truth (keypoints (K, 3), counted (K,), area, bbox)."""
    k = len(sigmas)
    total, n = 0.0, 0
    if gt["counted"].any():
        for i in range(k):
            if not gt["counted"][i]:
                continue
            dx = det_kp[i, 0] - gt["keypoints"][i, 0]
            dy = det_kp[i, 1] - gt["keypoints"][i, 1]
            e = (dx**2 + dy**2) / ((2 * sigmas[i]) ** 2) / (gt["area"] + np.spacing(1)) / 2
            total += math.exp(-e)
            n += 1
    else:  # distance to the box doubled around the instance
        x, y, w, h = gt["bbox"]
        for i in range(k):
            dx = max(0.0, x - w - det_kp[i, 0]) + max(0.0, det_kp[i, 0] - (x + 2 * w))
            dy = max(0.0, y - h - det_kp[i, 1]) + max(0.0, det_kp[i, 1] - (y + 2 * h))
            e = (dx**2 + dy**2) / ((2 * sigmas[i]) ** 2) / (gt["area"] + np.spacing(1)) / 2
            total += math.exp(-e)
            n += 1
    return total / n


def oracle_ap(
    gts: list[dict[str, Any]], dets: list[dict[str, Any]], sigmas: np.ndarray, max_dets: int = 20
) -> dict[str, float]:
    """AP/AR over 10 OKS thresholds, 101-point interpolated, greedy matching by score (COCO rules)."""
    thresholds = np.linspace(0.5, 0.95, 10)
    rec_thrs = np.linspace(0.0, 1.0, 101)
    num_pos = sum(1 for g in gts if not g["ignore"])
    entries: list[list[tuple[float, str]]] = [[] for _ in thresholds]
    images = sorted({g["image_id"] for g in gts} | {d["image_id"] for d in dets})
    for img in images:
        g_img = [g for g in gts if g["image_id"] == img]
        g_img = [g for g in g_img if not g["ignore"]] + [g for g in g_img if g["ignore"]]
        d_img = sorted([d for d in dets if d["image_id"] == img], key=lambda d: -d["score"])[:max_dets]
        oks = [[oracle_oks(d["keypoints"], g, sigmas) for g in g_img] for d in d_img]
        for ti, t in enumerate(thresholds):
            matched = [False] * len(g_img)
            for di, d in enumerate(d_img):
                best, best_oks = -1, min(t, 1 - 1e-10)
                for gi, g in enumerate(g_img):
                    if matched[gi] and not g["iscrowd"]:
                        continue
                    if best > -1 and not g_img[best]["ignore"] and g["ignore"]:
                        break
                    if oks[di][gi] < best_oks:
                        continue
                    best, best_oks = gi, oks[di][gi]
                if best == -1:
                    entries[ti].append((d["score"], "fp"))
                else:
                    matched[best] = True
                    entries[ti].append((d["score"], "ignored" if g_img[best]["ignore"] else "tp"))
    ap_t, ar_t = [], []
    for ti in range(len(thresholds)):
        ordered = sorted(entries[ti], key=lambda e: -e[0])  # stable, like COCO's mergesort
        kinds = [kind for _, kind in ordered if kind != "ignored"]
        tp = fp = 0
        rc: list[float] = []
        pr: list[float] = []
        for kind in kinds:
            tp += kind == "tp"
            fp += kind == "fp"
            rc.append(tp / num_pos)
            pr.append(tp / (tp + fp + np.spacing(1)))
        for i in range(len(pr) - 1, 0, -1):
            pr[i - 1] = max(pr[i - 1], pr[i])
        q = []
        for r in rec_thrs:
            hits = [i for i, v in enumerate(rc) if v >= r]
            q.append(pr[hits[0]] if hits else 0.0)
        ap_t.append(float(np.mean(q)))
        ar_t.append(rc[-1] if rc else 0.0)
    return {"AP": float(np.mean(ap_t)), "AP50": ap_t[0], "AP75": ap_t[5], "AR": float(np.mean(ar_t))}


def oracle_gts(data: dict[str, Any], subset: str) -> list[dict[str, Any]]:
    out = []
    for a in data["annotations"]:
        kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)
        v = kp[:, 2]
        counted = v > 0 if subset == "all" else v == (2 if subset == "visible" else 1)
        n_kpt = a["num_keypoints"] if subset == "all" else int(counted.sum())
        out.append(
            {
                "image_id": a["image_id"],
                "keypoints": kp,
                "counted": counted,
                "area": a["area"],
                "bbox": a["bbox"],
                "iscrowd": bool(a.get("iscrowd", 0)),
                "ignore": bool(a.get("iscrowd", 0)) or n_kpt == 0,
            }
        )
    return out


def oracle_dets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "image_id": r["image_id"],
            "keypoints": np.asarray(r["keypoints"]).reshape(-1, 3),
            "score": r["score"],
        }
        for r in results
    ]


# ---------------------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def coco_data() -> dict[str, Any]:
    require_shared_data()
    with (COCO_DIR / "test_coco.json").open() as f:
        data: dict[str, Any] = json.load(f)
    return data


def gt_as_results(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The 12 labelled instances fed back as predictions (MMPose's check)."""
    return [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "keypoints": list(a["keypoints"]),
            "score": 1.0,
        }
        for a in data["annotations"]
        if a["num_keypoints"] > 0
    ]


def perturbed_results(data: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Seeded noise proportional to the person scale, two predictions per instance, plus a stray one."""
    rng = np.random.default_rng(seed)
    out = []
    for a in data["annotations"]:
        if a["num_keypoints"] == 0:
            continue
        kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)
        scale = math.sqrt(a["area"])
        for noise in (0.04, 0.12):
            pred = kp.copy()
            pred[:, :2] += rng.normal(0.0, noise * scale, size=(len(kp), 2))
            pred[:, 2] = rng.uniform(0.1, 1.0, size=len(kp))
            out.append(
                {
                    "image_id": a["image_id"],
                    "category_id": 1,
                    "keypoints": pred.ravel().tolist(),
                    "score": float(rng.uniform(0.05, 1.0)),
                }
            )
    stray = rng.uniform(0, 300, size=(17, 3))
    out.append({"image_id": 785, "category_id": 1, "keypoints": stray.ravel().tolist(), "score": 0.99})
    return out


def pycocotools_direct(ann_path: Path, results: list[dict[str, Any]]) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_path))
        dt = gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(COCO_KEYPOINTS.sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def assert_matches_stats(out: dict[str, float], stats: np.ndarray) -> None:
    assert list(out) == list(NAMES)
    for name, ref in zip(NAMES, stats):
        if ref < 0:
            assert math.isnan(out[name]), name
        else:
            assert out[name] == pytest.approx(float(ref), abs=1e-12), name


# ---------------------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("subset", ["all", "visible"])
def test_ground_truth_fed_back_is_perfect(coco_data: dict[str, Any], subset: str) -> None:
    out = coco_keypoint_ap(COCO_DIR / "test_coco.json", gt_as_results(coco_data), subset)
    for name in NAMES:  # COCOeval's precision is tp / (tp + fp + eps): 1 - 2e-16 at best
        assert out[name] == pytest.approx(1.0, abs=1e-12), (name, out)


def test_ground_truth_fed_back_occluded(coco_data: dict[str, Any]) -> None:
    """Every occluded GT is found (AR 1), but AP < 1 is correct COCO behaviour here: with 1-3 occluded
    keypoints per person, another person's prediction of equal score can claim the match first."""
    results = gt_as_results(coco_data)
    out = coco_keypoint_ap(COCO_DIR / "test_coco.json", results, "occluded")
    assert out["AR"] == pytest.approx(1.0, abs=1e-12)
    ref = oracle_ap(
        oracle_gts(coco_data, "occluded"), oracle_dets(results), np.asarray(COCO_KEYPOINTS.sigmas)
    )
    assert out["AP"] == pytest.approx(ref["AP"], abs=1e-12)
    assert out["AP"] < 0.99


@pytest.mark.parametrize("seed", [0, 1])
def test_perturbed_equals_pycocotools_direct(coco_data: dict[str, Any], seed: int) -> None:
    results = perturbed_results(coco_data, seed)
    before = copy.deepcopy(results)
    out = coco_keypoint_ap(COCO_DIR / "test_coco.json", results)
    assert results == before  # the caller's dicts are not modified
    assert_matches_stats(out, pycocotools_direct(COCO_DIR / "test_coco.json", results))
    assert 0.1 < out["AP"] < 0.95  # a non-trivial case


def test_results_from_json_path(coco_data: dict[str, Any], tmp_path: Path) -> None:
    results = perturbed_results(coco_data, 3)
    path = tmp_path / "res.json"
    path.write_text(json.dumps(results))
    assert coco_keypoint_ap(coco_data, path) == coco_keypoint_ap(coco_data, results)


@pytest.mark.parametrize("subset", ["all", "visible", "occluded"])
@pytest.mark.parametrize("seed", [0, 2])
def test_subsets_equal_loop_oracle(coco_data: dict[str, Any], subset: str, seed: int) -> None:
    results = perturbed_results(coco_data, seed)
    out = coco_keypoint_ap(coco_data, results, subset)
    ref = oracle_ap(oracle_gts(coco_data, subset), oracle_dets(results), np.asarray(COCO_KEYPOINTS.sigmas))
    for name, value in ref.items():
        assert out[name] == pytest.approx(value, abs=1e-12), name


def test_subsets_differ_and_restricted_file_agrees(coco_data: dict[str, Any], tmp_path: Path) -> None:
    """The occluded run equals plain pycocotools on a GT file written with only the v == 1 keypoints."""
    results = perturbed_results(coco_data, 4)
    restricted = copy.deepcopy(coco_data)
    for a in restricted["annotations"]:
        kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)
        kp[kp[:, 2] != 1, 2] = 0
        a["keypoints"] = kp.ravel().tolist()
        a["num_keypoints"] = int((kp[:, 2] == 1).sum())
    path = tmp_path / "occluded_gt.json"
    path.write_text(json.dumps(restricted))
    occluded = coco_keypoint_ap(coco_data, results, "occluded")
    assert_matches_stats(occluded, pycocotools_direct(path, results))
    assert occluded != coco_keypoint_ap(coco_data, results, "all")


def test_use_area_false_matches_area_rule(coco_data: dict[str, Any]) -> None:
    results = perturbed_results(coco_data, 5)
    edited = copy.deepcopy(coco_data)
    for a in edited["annotations"]:
        a["area"] = a["bbox"][2] * a["bbox"][3] * 0.53
    assert coco_keypoint_ap(coco_data, results, use_area=False) == coco_keypoint_ap(edited, results)


def _toy_gt() -> dict[str, Any]:
    kp = [10.0, 10.0, 2, 20.0, 10.0, 1] + [0.0, 0.0, 0] * 15
    return {
        "images": [{"id": 1}, {"id": 2}],
        "categories": [{"id": 1, "name": "person"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "keypoints": kp,
                "num_keypoints": 2,
                "area": 2000.0,
                "bbox": [0.0, 0.0, 40.0, 50.0],
            }
        ],
    }


def _toy_result(**override: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"image_id": 1, "category_id": 1, "keypoints": [1.0] * 51, "score": 0.5}
    r.update(override)
    return r


@pytest.mark.parametrize(
    ("results", "message"),
    [
        ([], "results is empty"),
        ([_toy_result()] * 3 + [_toy_result(keypoints=[1.0] * 50)], r"results\[3\] has 50 keypoint values"),
        ([_toy_result(keypoints=[1.0] * 42)], r"expected 3\*17=51"),
        ([_toy_result(image_id=12345)], "image_id 12345 not in annotation file"),
        ([_toy_result(category_id=7)], "category_id 7 not in annotation file"),
        ([_toy_result(), _toy_result(keypoints=[math.nan] * 51)], r"results\[1\] has non-finite"),
        ([_toy_result(score=math.inf)], r"results\[0\] has a non-finite score"),
        ([{"image_id": 1, "keypoints": [1.0] * 51, "score": 1.0}], "has no 'category_id'"),
    ],
)
def test_bad_results_raise(results: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        coco_keypoint_ap(_toy_gt(), results)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="subset must be one of"):
        coco_keypoint_ap(_toy_gt(), [_toy_result()], "hidden")
    with pytest.raises(TypeError, match="results must be a list"):
        coco_keypoint_ap(_toy_gt(), {"image_id": 1})  # type: ignore[arg-type]
    no_area = _toy_gt()
    del no_area["annotations"][0]["area"]
    with pytest.raises(ValueError, match="use_area=False"):
        coco_keypoint_ap(no_area, [_toy_result()])
    with pytest.raises(ValueError, match="K=14 keypoints but the annotation file has K=17"):
        coco_keypoint_ap(_toy_gt(), [_toy_result()], keypoint_info="crowdpose")
    with pytest.raises(FileNotFoundError):
        coco_keypoint_ap("/nonexistent/ann.json", [_toy_result()])


def test_undefined_numbers_are_nan() -> None:
    out = coco_keypoint_ap(_toy_gt(), [_toy_result()])
    assert math.isnan(out["APL"])
    assert math.isnan(out["ARL"])
    assert out["AP"] == 0.0  # a defined, bad prediction


def test_import_visattn_does_not_import_cocotools() -> None:
    code = "import sys, visattn, visattn.metrics; print(sorted(m for m in sys.modules if 'cocotools' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_verbose_prints_and_quiet_does_not(capsys: pytest.CaptureFixture[str]) -> None:
    coco_keypoint_ap(_toy_gt(), [_toy_result()])
    assert capsys.readouterr().out == ""
    coco_keypoint_ap(_toy_gt(), [_toy_result()], verbose=True)
    assert "Average Precision" in capsys.readouterr().out


@pytest.mark.parametrize("subset", ["all", "visible", "occluded"])
def test_keypoint_oks_equals_loop(subset: str) -> None:
    g = torch.Generator().manual_seed(0)
    n, k = 6, 17
    gt = torch.rand(n, k, 2, generator=g, dtype=torch.float64) * 100
    pred = gt + torch.randn(n, k, 2, generator=g, dtype=torch.float64) * 5
    flags = torch.randint(0, 3, (n, k), generator=g)
    flags[0] = 0  # nothing counted -> 0
    areas = torch.rand(n, generator=g, dtype=torch.float64) * 5000 + 100
    sigmas = np.asarray(COCO_KEYPOINTS.sigmas)
    out = keypoint_oks(pred, gt, areas, sigmas=COCO_KEYPOINTS.sigmas, flags=flags, subset=subset)
    expected = torch.zeros(n, dtype=torch.float64)
    for i in range(n):
        counted = [
            j
            for j in range(k)
            if (flags[i, j] > 0 if subset == "all" else flags[i, j] == (2 if subset == "visible" else 1))
        ]
        if counted:
            vals = []
            for j in counted:
                d2 = float(((pred[i, j] - gt[i, j]) ** 2).sum())
                vals.append(math.exp(-d2 / ((2 * sigmas[j]) ** 2) / (float(areas[i]) + np.spacing(1)) / 2))
            expected[i] = sum(vals) / len(vals)
    assert_close(out, expected)


def test_keypoint_oks_checks() -> None:
    p = torch.zeros(2, 17, 2)
    with pytest.raises(ValueError, match="needs flags"):
        keypoint_oks(p, p, torch.ones(2), sigmas=COCO_KEYPOINTS.sigmas, subset="visible")
    with pytest.raises(ValueError, match="sigmas must have length K=17"):
        keypoint_oks(p, p, torch.ones(2), sigmas=[0.1])
    with pytest.raises(ValueError, match="gt must be"):
        keypoint_oks(p, p[:1], torch.ones(2), sigmas=COCO_KEYPOINTS.sigmas)
    assert keypoint_oks(p[:0], p[:0], torch.ones(0), sigmas=COCO_KEYPOINTS.sigmas).shape == (0,)
