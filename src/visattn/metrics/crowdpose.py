"""CrowdPose AP/AR with the easy / medium / hard split by crowd index (the paper's Table 4).

Uses xtcocotools' ``COCOeval(gt, dt, "keypoints_crowd", sigmas, use_area=False)``, the evaluation of
the CrowdPose benchmark and of MMPose: OKS with scale ``0.53 * bbox w * h`` (CrowdPose files have no
``area``), a ground truth is ignored iff its ``num_keypoints`` (CrowdPose counts visible joints only)
is 0, and a detection whose keypoint scores are all 0 is dropped. xtcocotools is an optional
dependency (``pip install visattn[crowdpose]``), imported only when an evaluation runs. Its published
wheels are built against numpy 1.x and fail to import under numpy 2; ``backend="pycocotools"`` (chosen
automatically then) runs the same protocol through pycocotools and gives the same numbers.

Difficulty split: an image is *easy* if ``crowdIndex < 0.2``, *medium* if ``crowdIndex < 0.8``, else
*hard*, the thresholds xtcocotools (and the official CrowdPose code it adapts) pass in its summary; the
paper's text quotes 0.1 / 0.8. ``AP_easy`` etc. are the AP over the images of that bucket.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from visattn._checks import check_choice
from visattn.keypoints import CROWDPOSE_KEYPOINTS, KeypointInfo
from visattn.metrics._coco_files import (
    AnnotationSource,
    ResultsSource,
    check_results,
    import_pycocotools,
    infer_keypoint_info,
    load_annotations,
    load_results,
    quiet,
)

__all__ = ["CROWDPOSE_STAT_NAMES", "crowdpose_ap", "xtcocotools_available"]

#: Keys returned by :func:`crowdpose_ap`, in the order of xtcocotools' ``stats``.
CROWDPOSE_STAT_NAMES: tuple[str, ...] = (
    "AP",
    "AP50",
    "AP75",
    "AR",
    "AR50",
    "AR75",
    "AP_easy",
    "AP_medium",
    "AP_hard",
)


def _import_xtcocotools() -> tuple[Any, Any]:
    """Return ``(COCO, COCOeval)`` from xtcocotools, or raise a helpful ImportError."""
    try:
        from xtcocotools.coco import COCO
        from xtcocotools.cocoeval import COCOeval
    except ImportError as err:
        raise ImportError(
            "CrowdPose evaluation needs xtcocotools; install it with `pip install visattn[crowdpose]` "
            "(or pass backend='pycocotools')"
        ) from err
    except ValueError as err:  # a wheel built against another numpy ABI fails with ValueError
        raise ImportError(
            f"xtcocotools is installed but cannot be imported ({err}); it was built for another numpy "
            f"version: rebuild it (`pip install --no-binary xtcocotools xtcocotools`), use numpy<2, or "
            f"pass backend='pycocotools'"
        ) from err
    return COCO, COCOeval


def xtcocotools_available() -> bool:
    """Whether xtcocotools imports in this environment (it is absent, or built for another numpy ABI).

    Example:
        >>> isinstance(xtcocotools_available(), bool)
        True
    """
    try:
        _import_xtcocotools()
    except ImportError:
        return False
    return True


def _mean_defined(values: np.ndarray) -> float:
    """Mean over the entries COCOeval filled (``> -1``); NaN if none (no ground truth to evaluate)."""
    defined = values[values > -1]
    return float(defined.mean()) if defined.size else math.nan


def _summary(evaluator: Any, *, ap: bool, iou_thr: float | None = None) -> float:
    """xtcocotools' ``_summarize`` for area range "all", maxDets 20 (NaN instead of its -1)."""
    p = evaluator.params
    values: np.ndarray = evaluator.eval["precision" if ap else "recall"]
    if iou_thr is not None:
        values = values[np.flatnonzero(np.isclose(p.iouThrs, iou_thr))]
    m = list(p.maxDets).index(20)
    a = list(p.areaRngLbl).index("all")
    values = values[:, :, :, a, m] if ap else values[:, :, a, m]
    return _mean_defined(values)


def crowdpose_ap(
    ann_file: AnnotationSource,
    results: ResultsSource,
    *,
    keypoint_info: str | KeypointInfo | None = None,
    crowd_thresholds: tuple[float, float] = (0.2, 0.8),
    backend: str = "auto",
    verbose: bool = False,
) -> dict[str, float]:
    """CrowdPose keypoint AP/AR and AP per crowd-index difficulty.

    Args:
        ann_file: CrowdPose annotation JSON path or loaded dict (not modified); every image needs a
            ``crowdIndex``.
        results: COCO-format keypoint results (list of ``{"image_id", "category_id", "keypoints",
            "score"}`` dicts, not modified) or a path to such a JSON list.
        keypoint_info: keypoint set whose OKS sigmas are used; ``None`` infers it from K (14 CrowdPose).
        crowd_thresholds: ``(easy_below, medium_below)`` crowd-index bounds of the buckets.
        backend: ``"xtcocotools"``; ``"pycocotools"``, which runs pycocotools' ``COCOeval`` on inputs
            prepared to follow the same protocol (ground-truth ``area := 0.53 * bbox w * h``, detections
            with all keypoint scores 0 dropped, ground-truth ids renumbered from 1 so that an id 0 cannot
            read as "unmatched"), for environments where xtcocotools does not import; or ``"auto"``
            (default): xtcocotools when it imports (:func:`xtcocotools_available`), else pycocotools.
        verbose: let the COCO API print its progress.

    Returns:
        ``{"AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP_easy", "AP_medium", "AP_hard"}`` floats in
        [0, 1]. A number without ground truth to evaluate (e.g. no image in the hard bucket) is NaN;
        xtcocotools itself reports -1 there and rounds the bucket APs to 4 decimals, which this
        function does not.

    Raises:
        ValueError: bad results (see :func:`~visattn.metrics.coco_keypoint_ap`), or an image without
            ``crowdIndex``.
        ImportError: ``backend="xtcocotools"`` and xtcocotools is not installed
            (``pip install visattn[crowdpose]``) or does not import; pycocotools missing for the
            ``"pycocotools"`` backend (``pip install visattn[data]``).

    Example:
        >>> kp = [10.0, 10.0, 2, 20.0, 10.0, 1] + [0.0, 0.0, 0] * 12
        >>> gt = {"images": [{"id": 1, "crowdIndex": 0.5}], "categories": [{"id": 1, "name": "person"}],
        ...       "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
        ...                        "keypoints": kp, "num_keypoints": 1, "bbox": [0.0, 0.0, 40.0, 50.0]}]}
        >>> out = crowdpose_ap(gt, [{"image_id": 1, "category_id": 1, "keypoints": kp, "score": 0.9}])
        >>> round(out["AP"], 6), round(out["AP_medium"], 6), out["AP_hard"]
        (1.0, 1.0, nan)
    """
    data = load_annotations(ann_file)
    info = infer_keypoint_info(data, keypoint_info, CROWDPOSE_KEYPOINTS)
    dets = load_results(results)
    check_results(dets, data, info.num_keypoints)
    low, high = crowd_thresholds
    if not 0.0 <= low <= high:
        raise ValueError(
            f"crowd_thresholds must be (easy_below, medium_below) with 0 <= a <= b, got {(low, high)}"
        )
    buckets: dict[str, list[Any]] = {"easy": [], "medium": [], "hard": []}
    for img in data["images"]:
        if "crowdIndex" not in img:
            raise ValueError(
                f"ann_file image {img.get('id')!r} has no 'crowdIndex' (CrowdPose format needed)"
            )
        c = float(img["crowdIndex"])
        buckets["easy" if c < low else "medium" if c < high else "hard"].append(img["id"])
    check_choice("backend", backend, ("auto", "xtcocotools", "pycocotools"))
    if backend == "auto":
        backend = "xtcocotools" if xtcocotools_available() else "pycocotools"
    sigmas = np.asarray(info.sigmas, dtype=np.float64)
    gt_data = dict(data)
    gt_data["annotations"] = [dict(a) for a in data["annotations"]]
    out: dict[str, float] = {}
    with quiet(verbose):
        if backend == "xtcocotools":
            COCO, COCOeval = _import_xtcocotools()
            coco_gt = COCO()
            coco_gt.dataset = gt_data
            coco_gt.createIndex()
            coco_dt = coco_gt.loadRes(dets)
            evaluator = COCOeval(coco_gt, coco_dt, "keypoints_crowd", sigmas, use_area=False)
        else:
            COCO, COCOeval = import_pycocotools()
            for new_id, ann in enumerate(gt_data["annotations"], start=1):
                ann["id"] = new_id
                ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3]) * 0.53
                ann.setdefault("iscrowd", 0)
            coco_gt = COCO()
            coco_gt.dataset = gt_data
            coco_gt.createIndex()
            coco_dt = coco_gt.loadRes(dets)
            scores = np.asarray(
                [d["keypoints"][2::3] for d in coco_dt.dataset["annotations"]], dtype=np.float64
            )
            keep = [bool(v) for v in np.asarray((scores > 0).any(axis=1)).ravel().tolist()]
            coco_dt.dataset["annotations"] = [d for d, k in zip(coco_dt.dataset["annotations"], keep) if k]
            coco_dt.createIndex()
            evaluator = COCOeval(coco_gt, coco_dt, "keypoints")
            evaluator.params.kpt_oks_sigmas = sigmas
        evaluator.evaluate()
        evaluator.accumulate()
        out["AP"] = _summary(evaluator, ap=True)
        out["AP50"] = _summary(evaluator, ap=True, iou_thr=0.5)
        out["AP75"] = _summary(evaluator, ap=True, iou_thr=0.75)
        out["AR"] = _summary(evaluator, ap=False)
        out["AR50"] = _summary(evaluator, ap=False, iou_thr=0.5)
        out["AR75"] = _summary(evaluator, ap=False, iou_thr=0.75)
        for name, image_ids in buckets.items():
            if not image_ids:
                out[f"AP_{name}"] = math.nan
                continue
            evaluator.params.imgIds = image_ids
            evaluator.evaluate()
            evaluator.accumulate()
            out[f"AP_{name}"] = _mean_defined(evaluator.eval["precision"][:, :, :, 0, :])
    return out
