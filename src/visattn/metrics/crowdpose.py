"""CrowdPose AP/AR with the easy / medium / hard split by crowd index (the paper's Table 4).

Computed with pycocotools' ``COCOeval`` (``pip install visattn[data]``, imported only when an
evaluation runs) on inputs prepared to follow the CrowdPose protocol: the one of the official toolkit
(crowdposetools) and of xtcocotools' ``COCOeval(gt, dt, "keypoints_crowd", sigmas, use_area=False)``,
which MMPose reports. The rules:

- OKS with the CrowdPose sigmas and the scale ``0.53 * bbox w * h`` (CrowdPose files have no
  ``area``); the same scale places a ground truth in the area range "all".
- A ground truth is ignored iff it is a crowd region or its ``num_keypoints`` is 0 (CrowdPose counts
  the visible joints there, so an instance with only occluded joints is ignored; a file without
  ``num_keypoints`` gets the number of labelled joints).
- A detection whose keypoint scores are all 0 is dropped (xtcocotools' rule).
- AP / AR average 10 OKS thresholds 0.50:0.05:0.95 with at most 20 detections per image.

Difficulty split: an image is *easy* if ``crowdIndex < 0.2``, *medium* if ``0.2 <= crowdIndex < 0.8``,
else *hard*. These are the thresholds the official toolkit's ``summarize`` (and xtcocotools, which
adapts it) passes to its split, so they give the published AP-easy / medium / hard; the paper's text
quotes 0.1 / 0.8 (``crowd_thresholds=(0.1, 0.8)``). ``AP_easy`` etc. are the AP over the images of
that bucket.

xtcocotools is not needed: on the same inputs this module gives its numbers (the test suite compares
the two when xtcocotools imports).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
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
    is_number,
    load_annotations,
    load_results,
    prepare_ground_truth,
    quiet,
)

__all__ = ["CROWDPOSE_STAT_NAMES", "crowdpose_ap"]

#: Keys returned by [`crowdpose_ap`][visattn.metrics.crowdpose_ap], in the order of xtcocotools' CrowdPose
#: ``stats``.
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


def _check_backend(backend: str | None) -> None:
    """Accept the removed ``backend`` argument's old values with a DeprecationWarning."""
    if backend is None:
        return
    if backend == "xtcocotools":
        raise ValueError(
            "backend='xtcocotools' was removed: crowdpose_ap computes CrowdPose AP with pycocotools "
            "(the same numbers); drop the backend argument"
        )
    check_choice("backend", backend, ("auto", "pycocotools"))
    warnings.warn(
        "crowdpose_ap(backend=...) is deprecated and has no effect: CrowdPose AP is always computed "
        "with pycocotools; drop the argument",
        DeprecationWarning,
        stacklevel=3,
    )


def _check_thresholds(crowd_thresholds: Any) -> tuple[float, float]:
    """``(easy_below, medium_below)`` as floats with ``0 <= a <= b``, or a clear error."""
    if (
        not isinstance(crowd_thresholds, (tuple, list))
        or len(crowd_thresholds) != 2
        or not all(is_number(t) for t in crowd_thresholds)
    ):
        raise TypeError(
            f"crowd_thresholds must be a pair (easy_below, medium_below) of numbers, got {crowd_thresholds!r}"
        )
    low, high = (float(t) for t in crowd_thresholds)
    if not (math.isfinite(low) and math.isfinite(high) and 0.0 <= low <= high):
        raise ValueError(
            f"crowd_thresholds must be (easy_below, medium_below) with 0 <= a <= b, got {(low, high)}"
        )
    return low, high


def _split_by_crowd_index(images: list[Any], low: float, high: float) -> dict[str, list[Any]]:
    """Image ids per difficulty: ``crowdIndex < low`` easy, ``< high`` medium, else hard."""
    buckets: dict[str, list[Any]] = {"easy": [], "medium": [], "hard": []}
    for img in images:
        if not isinstance(img, Mapping) or "crowdIndex" not in img:
            image_id = img.get("id") if isinstance(img, Mapping) else None
            raise ValueError(f"ann_file image {image_id!r} has no 'crowdIndex' (CrowdPose format needed)")
        c = img["crowdIndex"]
        if not is_number(c) or not math.isfinite(float(c)):
            raise ValueError(
                f"ann_file image {img.get('id')!r} has crowdIndex {c!r}; it must be a finite number"
            )
        c = float(c)
        buckets["easy" if c < low else "medium" if c < high else "hard"].append(img["id"])
    return buckets


def _mean_defined(values: np.ndarray) -> float:
    """Mean over the entries COCOeval filled (``> -1``); NaN if none (no ground truth to evaluate)."""
    defined = values[values > -1]
    return float(defined.mean()) if defined.size else math.nan


def _summary(evaluator: Any, *, ap: bool, iou_thr: float | None = None) -> float:
    """The toolkit's ``_summarize`` for area range "all", maxDets 20 (NaN instead of its -1)."""
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
    verbose: bool = False,
    backend: str | None = None,
) -> dict[str, float]:
    """CrowdPose keypoint AP/AR and AP per crowd-index difficulty, computed with pycocotools.

    Runs pycocotools' ``COCOeval(gt, dt, "keypoints")`` on an in-memory copy of the inputs prepared to
    follow the CrowdPose protocol (see the module docstring): ground-truth ``area := 0.53 * bbox w * h``,
    detections with all keypoint scores 0 dropped, ground-truth ids renumbered from 1 so that an id 0
    cannot read as "unmatched"; then once over all images and once per difficulty bucket.

    Args:
        ann_file: CrowdPose annotation JSON path or loaded dict (not modified); every image needs a
            ``crowdIndex``.
        results: COCO-format keypoint results (list of ``{"image_id", "category_id", "keypoints",
            "score"}`` dicts, not modified) or a path to such a JSON list.
        keypoint_info: keypoint set whose OKS sigmas are used; ``None`` infers it from K (14 CrowdPose).
        crowd_thresholds: ``(easy_below, medium_below)`` crowd-index bounds of the buckets; the default
            ``(0.2, 0.8)`` is the official toolkit's.
        verbose: let pycocotools print its progress.
        backend: deprecated and ignored (CrowdPose AP no longer uses xtcocotools); ``"auto"`` and
            ``"pycocotools"`` are accepted with a DeprecationWarning, ``"xtcocotools"`` is a ValueError.

    Returns:
        ``{"AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP_easy", "AP_medium", "AP_hard"}`` floats in
        [0, 1]. A number without ground truth to evaluate (e.g. no image in the hard bucket) is NaN;
        the toolkit and xtcocotools report -1 there and round the bucket APs to 4 decimals, which this
        function does not.

    Raises:
        ValueError: bad results (see [`coco_keypoint_ap`][visattn.metrics.coco_keypoint_ap]), an image without
            a finite numeric ``crowdIndex``, an annotation without ``keypoints`` / ``bbox``, thresholds
            out of order, or ``backend="xtcocotools"``.
        TypeError: ``crowd_thresholds`` is not a pair of numbers, or ``ann_file`` / ``results`` have the
            wrong type.
        ImportError: pycocotools is not installed (``pip install visattn[data]``).

    Example:
        >>> kp = [10.0, 10.0, 2, 20.0, 10.0, 1] + [0.0, 0.0, 0] * 12
        >>> gt = {"images": [{"id": 1, "crowdIndex": 0.5}], "categories": [{"id": 1, "name": "person"}],
        ...       "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
        ...                        "keypoints": kp, "num_keypoints": 1, "bbox": [0.0, 0.0, 40.0, 50.0]}]}
        >>> out = crowdpose_ap(gt, [{"image_id": 1, "category_id": 1, "keypoints": kp, "score": 0.9}])
        >>> round(out["AP"], 6), round(out["AP_medium"], 6), out["AP_hard"]
        (1.0, 1.0, nan)
    """
    _check_backend(backend)
    low, high = _check_thresholds(crowd_thresholds)
    data = load_annotations(ann_file)
    info = infer_keypoint_info(data, keypoint_info, CROWDPOSE_KEYPOINTS)
    dets = load_results(results)
    check_results(dets, data, info.num_keypoints)
    buckets = _split_by_crowd_index(data["images"], low, high)
    gt_data = prepare_ground_truth(data, info.num_keypoints, "all", use_area=False)
    for new_id, ann in enumerate(gt_data["annotations"], start=1):
        ann["id"] = new_id
    COCO, COCOeval = import_pycocotools("CrowdPose evaluation")
    out: dict[str, float] = {}
    with quiet(verbose):
        coco_gt = COCO()
        coco_gt.dataset = gt_data
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        scores = np.asarray([d["keypoints"][2::3] for d in coco_dt.dataset["annotations"]], dtype=np.float64)
        keep: list[bool] = np.any(scores > 0, axis=1).tolist()  # (N,) a positive keypoint score
        coco_dt.dataset["annotations"] = [d for d, k in zip(coco_dt.dataset["annotations"], keep) if k]
        coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, "keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(info.sigmas, dtype=np.float64)
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
