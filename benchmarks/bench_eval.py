"""Time the evaluation of a COCO-val-sized results file (5,000 images) with visattn.metrics.

A synthetic ground-truth JSON (numpy, no images) and seeded perturbed predictions are generated in a
temporary folder; then COCO keypoint AP for the subsets all / visible / occluded, PCK, the visibility
metrics and a full ``PoseEvaluator.compute()`` are timed, and the vectorised paired OKS
(``keypoint_oks``) is compared with a naive per-keypoint Python loop.

Run: ``python benchmarks/bench_eval.py`` (``--quick`` for 500 images).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visattn import COCO_KEYPOINTS
from visattn.metrics import (
    PoseEvaluator,
    coco_keypoint_ap,
    keypoint_oks,
    pck_by_subset,
    visibility_metrics,
)

K = COCO_KEYPOINTS.num_keypoints


def make_dataset(num_images: int, seed: int = 0) -> dict[str, Any]:
    """Synthetic COCO keypoint ground truth plus per-instance arrays for the predictions."""
    rng = np.random.default_rng(seed)
    per_image = rng.choice([0, 1, 1, 1, 2, 2, 3, 4], size=num_images)  # ~1.8 persons per image
    n = int(per_image.sum())
    image_ids = np.repeat(np.arange(1, num_images + 1), per_image)
    w = rng.uniform(20, 300, n)
    h = w * rng.uniform(1.2, 2.5, n)
    x0 = rng.uniform(0, 400, n)
    y0 = rng.uniform(0, 300, n)
    kp = np.stack(
        [
            x0[:, None] + rng.uniform(0, 1, (n, K)) * w[:, None],
            y0[:, None] + rng.uniform(0, 1, (n, K)) * h[:, None],
        ],
        -1,
    )
    flags = rng.choice([0, 1, 2], p=[0.37, 0.06, 0.57], size=(n, K))
    flags[rng.uniform(size=n) < 0.03] = 0  # a few persons without labelled keypoints
    gt_kp = np.concatenate([np.where(flags[..., None] > 0, kp, 0.0), flags[..., None]], -1)  # (N, K, 3)
    area = w * h * 0.6
    anns = [
        {
            "id": i + 1,
            "image_id": int(image_ids[i]),
            "category_id": 1,
            "iscrowd": 0,
            "keypoints": gt_kp[i].ravel().tolist(),
            "num_keypoints": int((flags[i] > 0).sum()),
            "area": float(area[i]),
            "bbox": [float(x0[i]), float(y0[i]), float(w[i]), float(h[i])],
        }
        for i in range(n)
    ]
    data = {
        "images": [{"id": i, "width": 640, "height": 480} for i in range(1, num_images + 1)],
        "annotations": anns,
        "categories": [{"id": 1, "name": "person", "keypoints": list(COCO_KEYPOINTS.names)}],
    }
    noise = (
        rng.normal(0, 1, (n, K, 2)) * (0.05 * np.sqrt(area))[:, None, None] * rng.uniform(0.2, 2.0, (n, 1, 1))
    )
    pred = kp + noise
    return {
        "data": data,
        "image_ids": image_ids,
        "ann_ids": np.arange(1, n + 1),
        "pred": pred,
        "gt": kp,
        "flags": flags,
        "boxes": np.stack([x0, y0, w, h], 1),
        "area": area,
        "kpt_scores": rng.uniform(0.05, 1.0, (n, K)),
        "bbox_scores": rng.uniform(0.5, 1.0, n),
        "vis_logits": np.where(flags == 2, 1.5, -1.5) + rng.normal(0, 1.5, (n, K)),
    }


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def naive_oks(pred: np.ndarray, gt: np.ndarray, flags: np.ndarray, area: np.ndarray) -> list[float]:
    """Per-instance, per-keypoint Python loop (the shape of pycocotools' inner computation)."""
    sigmas = COCO_KEYPOINTS.sigmas
    out = []
    for i in range(len(pred)):
        total, count = 0.0, 0
        for k in range(K):
            if flags[i, k] > 0:
                d2 = (pred[i, k, 0] - gt[i, k, 0]) ** 2 + (pred[i, k, 1] - gt[i, k, 1]) ** 2
                total += math.exp(-d2 / ((2 * sigmas[k]) ** 2) / (area[i] + np.spacing(1)) / 2)
                count += 1
        out.append(total / count if count else 0.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="500 images, one repeat")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: stable timings)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    num_images = args.images or (500 if args.quick else 5000)
    repeat = 1 if args.quick else 2
    ds = make_dataset(num_images)
    n = len(ds["pred"])
    with tempfile.TemporaryDirectory() as tmp:
        ann_path = Path(tmp) / "gt.json"
        ann_path.write_text(json.dumps(ds["data"]))
        ev = PoseEvaluator(ann_path)
        t = {key: torch.from_numpy(np.ascontiguousarray(v)) for key, v in ds.items() if key != "data"}
        for s in range(0, n, 256):
            sl = slice(s, s + 256)
            ev.update(
                t["image_ids"][sl],
                t["pred"][sl],
                t["kpt_scores"][sl],
                bbox_scores=t["bbox_scores"][sl],
                vis_logits=t["vis_logits"][sl],
                flags=t["flags"][sl],
                boxes=t["boxes"][sl],
                gt_keypoints=t["gt"][sl],
                instance_ids=t["ann_ids"][sl],
            )
        results = ev.results()
        res_path = Path(tmp) / "results.json"
        res_path.write_text(json.dumps(results))

        rows: list[tuple[str, float, str]] = []
        for subset in ("all", "visible", "occluded"):
            sec, out = timed(lambda s=subset: coco_keypoint_ap(ann_path, res_path, s), repeat)
            rows.append((f"coco_keypoint_ap subset={subset}", sec, f"AP {out['AP']:.3f}"))
        sec, out = timed(
            lambda: pck_by_subset(t["pred"], t["gt"], t["flags"], t["boxes"]),
            repeat,
        )
        rows.append(("pck_by_subset (3 subsets)", sec, f"PCK_all {out['PCK_all']:.3f}"))
        sec, out = timed(lambda: visibility_metrics(t["vis_logits"], t["flags"]), repeat)
        rows.append(("visibility_metrics", sec, f"accuracy {out['accuracy']:.3f}"))
        sec, out = timed(ev.compute, 1)
        rows.append(("PoseEvaluator.compute (all of the above)", sec, f"{len(out)} keys"))

        areas = t["area"]
        sec_vec, vec = timed(
            lambda: keypoint_oks(t["pred"], t["gt"], areas, sigmas=COCO_KEYPOINTS.sigmas, flags=t["flags"]),
            repeat,
        )
        sec_loop, loop = timed(lambda: naive_oks(ds["pred"], ds["gt"], ds["flags"], ds["area"]), 1)
        assert np.allclose(vec.numpy(), np.asarray(loop), atol=1e-9)
        rows.append((f"paired OKS, naive Python loop ({n} pairs)", sec_loop, "1.0x"))
        rows.append((f"paired OKS, keypoint_oks ({n} pairs)", sec_vec, f"{sec_loop / sec_vec:.0f}x faster"))

    print(
        f"\n{num_images} images, {n} instances, {len(results)} results, K={K}, "
        f"torch {torch.__version__}, {args.threads} thread(s)\n"
    )
    print("| step | seconds | note |")
    print("|---|---:|---|")
    for name, sec, note in rows:
        print(f"| {name} | {sec:.3f} | {note} |")


if __name__ == "__main__":
    main()
