from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.helpers import COCO_DIR, require_shared_data
from tests.metrics.test_coco import pycocotools_direct
from tests.metrics.test_pck import loop_pck
from visattn.keypoints import COCO_KEYPOINTS
from visattn.metrics import PoseEvaluator, instance_scores, oks_nms

ANN = COCO_DIR / "test_coco.json"


def instances(seed: int | None) -> dict[str, torch.Tensor]:
    """The 12 labelled COCO sample instances; predictions perturbed with seeded noise (None: exact GT)."""
    require_shared_data()
    data = json.loads(ANN.read_text())
    anns = [a for a in data["annotations"] if a["num_keypoints"] > 0]
    kp = torch.tensor([a["keypoints"] for a in anns], dtype=torch.float64).reshape(len(anns), 17, 3)
    out = {
        "image_ids": torch.tensor([a["image_id"] for a in anns]),
        "instance_ids": torch.tensor([a["id"] for a in anns]),
        "gt_keypoints": kp[..., :2].float(),
        "flags": kp[..., 2].long(),
        "boxes": torch.tensor([a["bbox"] for a in anns], dtype=torch.float32),
        "areas": torch.tensor([a["area"] for a in anns], dtype=torch.float32),
    }
    g = torch.Generator().manual_seed(seed or 0)
    scale = out["areas"].sqrt()[:, None, None]
    noise = torch.randn(len(anns), 17, 2, generator=g) * 0.06 * scale
    out["keypoints"] = out["gt_keypoints"] + (0 if seed is None else noise)
    out["scores"] = torch.ones(len(anns), 17) if seed is None else torch.rand(len(anns), 17, generator=g)
    out["bbox_scores"] = (
        torch.ones(len(anns)) if seed is None else torch.rand(len(anns), generator=g) * 0.5 + 0.5
    )
    out["vis_logits"] = torch.where(out["flags"] == 2, 3.0, -3.0)
    if seed is not None:
        out["vis_logits"] = out["vis_logits"] + torch.randn(len(anns), 17, generator=g) * 3
    return out


def feed(ev: PoseEvaluator, inst: dict[str, torch.Tensor], index: list[int], batch: int = 5) -> None:
    for start in range(0, len(index), batch):
        idx = torch.tensor(index[start : start + batch], dtype=torch.long)
        ev.update(
            inst["image_ids"][idx],
            inst["keypoints"][idx],
            inst["scores"][idx],
            bbox_scores=inst["bbox_scores"][idx],
            vis_logits=inst["vis_logits"][idx],
            flags=inst["flags"][idx],
            boxes=inst["boxes"][idx],
            gt_keypoints=inst["gt_keypoints"][idx],
            instance_ids=inst["instance_ids"][idx],
        )


def test_ground_truth_fed_back() -> None:
    inst = instances(None)
    ev = PoseEvaluator(ANN)
    feed(ev, inst, list(range(12)))
    out = ev.compute()
    for name in ("AP", "AP50", "AP75", "APM", "APL", "AR", "AP_visible", "AR_visible", "AR_occluded"):
        assert out[name] == pytest.approx(1.0, abs=1e-12), name
    for name in (
        "PCK_all",
        "PCK_visible",
        "PCK_occluded",
        "vis_accuracy",
        "vis_precision",
        "vis_recall",
        "vis_f1",
    ):
        assert out[name] == 1.0, name
    for name in ("vis_balanced_accuracy", "vis_roc_auc", "vis_occluded_recall", "vis_occluded_precision"):
        assert out[name] == 1.0, name
    flags = inst["flags"]
    labelled = flags[flags > 0]
    share = max(int((labelled == 2).sum()), int((labelled == 1).sum())) / labelled.numel()
    assert out["vis_majority_accuracy"] == pytest.approx(share)  # over the labelled keypoints only
    assert all(isinstance(v, float) for v in out.values())


def test_perturbed_equals_direct_computations() -> None:
    inst = instances(7)
    ev = PoseEvaluator(ANN)
    feed(ev, inst, list(range(12)))
    out = ev.compute()
    results = ev.results()
    # rescoring: bbox score * mean of keypoint scores > 0.2 (loop oracle)
    for r, i in zip(results, range(12)):
        valid = [float(s) for s in inst["scores"][i] if s > 0.2]
        expected = float(inst["bbox_scores"][i]) * (sum(valid) / len(valid) if valid else 0.0)
        assert r["score"] == pytest.approx(expected, rel=1e-6)
        assert r["image_id"] == int(inst["image_ids"][i])
    stats = pycocotools_direct(ANN, results)
    names = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")
    for name, ref in zip(names, stats):
        assert out[name] == pytest.approx(float(ref), abs=1e-12), name
    assert 0.2 < out["AP"] < 0.95
    for subset in ("all", "visible", "occluded"):
        c, n = loop_pck(inst["keypoints"], inst["gt_keypoints"], inst["flags"], inst["boxes"], 0.05, subset)
        assert out[f"PCK_{subset}"] == pytest.approx(c / n)
    tp = int(((inst["vis_logits"] >= 0) & (inst["flags"] == 2)).sum())
    assert out["vis_recall"] == pytest.approx(tp / int((inst["flags"] == 2).sum()))
    suffixes = {k.rsplit("_", 1)[1] for k in out if k.startswith("AP") and "_" in k}
    assert suffixes == {"visible", "occluded"}


def test_duplicates_are_dropped_and_order_is_canonical() -> None:
    inst = instances(3)
    ref = PoseEvaluator(ANN)
    feed(ref, inst, list(range(12)))
    ev = PoseEvaluator(ANN)
    feed(ev, inst, [11, 3, 0, 5, 3, 7, 1, 2, 4, 6, 8, 9, 10, 11, 0])
    assert len(ev) == 15
    assert ev.results() == ref.results()
    assert ev.compute() == ref.compute()


def test_dump_is_atomic_json(tmp_path: Path) -> None:
    inst = instances(1)
    ev = PoseEvaluator(ANN)
    feed(ev, inst, list(range(12)))
    path = ev.dump(tmp_path / "sub" / "results.json")
    assert json.loads(path.read_text()) == ev.results()
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.json"]


def test_reset_and_errors() -> None:
    inst = instances(2)
    ev = PoseEvaluator(ANN)
    with pytest.raises(ValueError, match="no predictions"):
        ev.compute()
    feed(ev, inst, [0, 1])
    with pytest.raises(ValueError, match="same optional arguments"):
        ev.update(inst["image_ids"][:1], inst["keypoints"][:1], inst["scores"][:1])
    ev.reset()
    assert len(ev) == 0
    with pytest.raises(ValueError, match="keypoints must be"):
        ev.update(inst["image_ids"][:1], inst["keypoints"][:1, :14], inst["scores"][:1])
    with pytest.raises(ValueError, match="vis_logits needs flags"):
        ev.update(
            inst["image_ids"][:1], inst["keypoints"][:1], inst["scores"][:1], vis_logits=torch.zeros(1, 17)
        )
    with pytest.raises(ValueError, match="finite"):
        ev.update(inst["image_ids"][:1], inst["keypoints"][:1] * math.nan, inst["scores"][:1])
    ev.update(torch.tensor([424242]), inst["keypoints"][:1], inst["scores"][:1])
    with pytest.raises(ValueError, match="image_id 424242 not in annotation file"):
        ev.compute()
    with pytest.raises(ValueError, match="needs areas"):
        PoseEvaluator(ANN, nms_threshold=0.9).update(
            inst["image_ids"][:1], inst["keypoints"][:1], inst["scores"][:1]
        )


def test_instance_scores_equals_loop() -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(6, 17, generator=g)
    scores[0] = 0.1  # none above the threshold -> 0
    bbox = torch.rand(6, generator=g)
    out = instance_scores(scores, bbox, threshold=0.3)
    for i in range(6):
        valid = [float(s) for s in scores[i] if s > 0.3]
        expected = float(bbox[i]) * (sum(valid) / len(valid) if valid else 0.0)
        assert float(out[i]) == pytest.approx(expected, rel=1e-6)


def loop_oks_nms(
    kp: np.ndarray, scores: np.ndarray, areas: np.ndarray, ids: np.ndarray, thr: float
) -> set[int]:
    """MMPose-style greedy OKS-NMS, one image at a time."""
    sigmas = np.asarray(COCO_KEYPOINTS.sigmas)
    keep: set[int] = set()
    for img in set(ids.tolist()):
        order = [i for i in sorted(range(len(ids)), key=lambda i: -scores[i]) if ids[i] == img]
        while order:
            i = order.pop(0)
            keep.add(i)
            rest = []
            for j in order:
                e = (
                    ((kp[i] - kp[j]) ** 2).sum(-1)
                    / (2 * sigmas) ** 2
                    / ((areas[i] + areas[j]) / 2 + np.spacing(1))
                    / 2
                )
                if np.exp(-e).mean() <= thr:
                    rest.append(j)
            order = rest
    return keep


@pytest.mark.parametrize("thr", [0.5, 0.9])
def test_oks_nms_equals_loop(thr: float) -> None:
    g = torch.Generator().manual_seed(0)
    n = 40
    base = torch.rand(n // 4, 17, 2, generator=g) * 200
    kp = base.repeat(4, 1, 1) + torch.randn(n, 17, 2, generator=g) * 1.5  # clusters of near-duplicates
    scores = torch.rand(n, generator=g)
    areas = torch.rand(n, generator=g) * 3000 + 2000
    ids = torch.randint(0, 4, (n,), generator=g)
    keep = oks_nms(
        kp.double(), scores.double(), areas.double(), ids, sigmas=COCO_KEYPOINTS.sigmas, threshold=thr
    )
    expected = loop_oks_nms(kp.double().numpy(), scores.numpy(), areas.double().numpy(), ids.numpy(), thr)
    assert set(torch.nonzero(keep).flatten().tolist()) == expected
    assert 0 < len(expected) < n


def test_nms_in_evaluator_removes_duplicates() -> None:
    inst = instances(4)
    ev = PoseEvaluator(ANN, nms_threshold=0.9)
    kp = torch.cat([inst["keypoints"], inst["keypoints"] + 0.5])  # each prediction twice
    ev.update(
        torch.cat([inst["image_ids"]] * 2),
        kp,
        torch.cat([inst["scores"]] * 2),
        areas=torch.cat([inst["areas"]] * 2),
    )
    assert len(ev.results()) == 12


def _worker(rank: int, store: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        inst = instances(5)
        index = [*range(11), 0]  # 11 samples padded to 12 like DistributedSampler
        ev = PoseEvaluator(ANN)
        feed(ev, inst, index[rank::2], batch=4)
        out = ev.compute()
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(out))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_gloo_equals_one_process(tmp_path: Path) -> None:
    require_shared_data()
    mp.spawn(_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    single = PoseEvaluator(ANN)
    feed(single, instances(5), list(range(11)))
    expected = single.compute()
    for rank in range(2):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got.keys() == expected.keys()
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, abs=1e-12, nan_ok=True), (rank, name)


def test_crowdpose_mode_keys_and_values() -> None:
    from tests.helpers import CROWDPOSE_DIR
    from visattn.metrics import crowdpose_ap

    require_shared_data()
    ann = CROWDPOSE_DIR / "test_crowdpose.json"
    anns = [a for a in json.loads(ann.read_text())["annotations"] if a["num_keypoints"] > 0]
    kp = torch.tensor([a["keypoints"] for a in anns], dtype=torch.float64).reshape(-1, 14, 3)
    g = torch.Generator().manual_seed(0)
    ev = PoseEvaluator(ann, keypoint_info="crowdpose", crowdpose=True)
    ev.update(
        [a["image_id"] for a in anns],
        kp[..., :2] + torch.randn(len(anns), 14, 2, generator=g, dtype=torch.float64) * 8,
        torch.rand(len(anns), 14, generator=g, dtype=torch.float64),
    )
    out = ev.compute()
    expected = crowdpose_ap(ann, ev.results())
    assert {k: out[k] for k in expected} == pytest.approx(expected, nan_ok=True)
    assert {"AP_easy", "AP_medium", "AP_hard", "AP_visible", "AR_occluded"} <= out.keys()
    assert "APM" not in out
