"""COCO keypoint AP/AR (OKS based) on all, visible-only or occluded-only keypoints.

The numbers come from pycocotools' ``COCOeval`` (``iouType="keypoints"``) so that they are the ones
every paper reports. pycocotools is an optional dependency (``pip install visattn[data]``) imported
only when an evaluation runs; ``import visattn`` never imports it.

The paper's Table 3 evaluates visible and occluded keypoints separately by changing the indicator of
the OKS formula from ``v > 0`` to ``v == 2`` (visible) or ``v == 1`` (occluded).
[`coco_keypoint_ap`][visattn.metrics.coco_keypoint_ap] implements this by editing an in-memory copy of the
ground truth (never the file) before COCOeval sees it; see its docstring for the exact rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from visattn._checks import check_choice, check_flags, check_tensor
from visattn.keypoints import KeypointInfo
from visattn.metrics._coco_files import (
    AnnotationSource,
    ResultsSource,
    check_results,
    import_pycocotools,
    infer_keypoint_info,
    load_annotations,
    load_results,
    prepare_ground_truth,
    quiet,
)
from visattn.metrics._subsets import subset_mask

__all__ = ["COCO_STAT_NAMES", "SUBSETS", "coco_keypoint_ap", "keypoint_oks"]

#: Names of the ten numbers of COCO keypoint evaluation, in ``COCOeval.stats`` order.
COCO_STAT_NAMES: tuple[str, ...] = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")

#: Keypoint subsets: ``"all"`` counts ``v > 0``, ``"visible"`` ``v == 2``, ``"occluded"`` ``v == 1``.
SUBSETS: tuple[str, ...] = ("all", "visible", "occluded")


def _stats_to_dict(stats: Sequence[float], names: Sequence[str]) -> dict[str, float]:
    """COCO API stats as floats; its ``-1`` sentinel (no ground truth) becomes NaN."""
    return {name: (math.nan if float(v) < 0 else float(v)) for name, v in zip(names, stats)}


# ----------------------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------------------


def coco_keypoint_ap(
    ann_file: AnnotationSource,
    results: ResultsSource,
    subset: str = "all",
    *,
    keypoint_info: str | KeypointInfo | None = None,
    use_area: bool = True,
    verbose: bool = False,
) -> dict[str, float]:
    """COCO keypoint AP/AR of ``results`` against ``ann_file``, optionally on one visibility subset.

    Runs pycocotools' ``COCOeval(gt, dt, "keypoints")`` with ``params.kpt_oks_sigmas`` set to the
    keypoint set's sigmas, then ``evaluate``, ``accumulate``, ``summarize`` (maxDets 20, 10 OKS
    thresholds 0.50:0.05:0.95, area ranges all / medium / large). For ``subset="all"`` the result is
    exactly what pycocotools gives when run directly on the same files.

    Subsets (COCO flags: 0 not labelled, 1 labelled but occluded, 2 visible). ``subset="visible"`` /
    ``"occluded"`` edits an in-memory copy of the ground truth before COCOeval sees it: every keypoint
    whose flag is not 2 (resp. not 1) gets ``v = 0``, so OKS averages over the ``v == 2`` (resp.
    ``v == 1``) keypoints only (the paper's indicator ``delta(v_i = 2)`` / ``delta(v_i = 1)``), and
    ``num_keypoints`` is recomputed as the number of such keypoints, so an instance without any
    becomes an *ignored* ground truth (COCOeval ignores ``num_keypoints == 0``: detections matched to it
    count neither as true nor as false positives, and it does not count for recall). Crowd
    annotations stay ignored, and areas, boxes and the detections are unchanged.

    Args:
        ann_file: COCO keypoint annotation JSON path, or the loaded dict (not modified).
        results: COCO keypoint results, a list of ``{"image_id", "category_id", "keypoints": [x, y, s] * K,
            "score"}`` dicts (not modified) or a path to such a JSON list.
        subset: ``"all"`` (flags ``v > 0``), ``"visible"`` (``v == 2``) or ``"occluded"`` (``v == 1``).
        keypoint_info: keypoint set whose OKS sigmas are used (name or
            [`KeypointInfo`][visattn.keypoints.KeypointInfo]); ``None`` infers it from K in the file (17 COCO,
            14 CrowdPose).
        use_area: use the annotations' ``area`` as OKS scale and for the area ranges (COCO). ``False``
            uses ``0.53 * bbox w * h`` instead, the CrowdPose rule for files without areas.
        verbose: let pycocotools print its progress and summary.

    Returns:
        ``{"AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL"}`` floats in [0, 1];
        a number COCOeval reports as ``-1`` (no non-ignored ground truth, e.g. no medium-sized person or
        no occluded keypoint at all) is returned as NaN.

    Raises:
        ValueError: empty results, a result with a missing key, an image or category id not in the file,
            the wrong number of keypoint values, or non-finite numbers (the message names the result).
        ImportError: pycocotools is not installed (``pip install visattn[data]``).

    Example:
        >>> kp = [10.0, 10.0, 2, 20.0, 10.0, 1] + [0.0, 0.0, 0] * 15
        >>> gt = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "person"}],
        ...       "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
        ...                        "keypoints": kp, "num_keypoints": 2, "area": 2000.0,
        ...                        "bbox": [0.0, 0.0, 40.0, 50.0]}]}
        >>> res = [{"image_id": 1, "category_id": 1, "keypoints": kp, "score": 0.9}]
        >>> round(coco_keypoint_ap(gt, res)["AP"], 6)
        1.0
        >>> round(coco_keypoint_ap(gt, res, subset="occluded")["AR"], 6)
        1.0
    """
    check_choice("subset", subset, SUBSETS)
    data = load_annotations(ann_file)
    info = infer_keypoint_info(data, keypoint_info)
    dets = load_results(results)
    check_results(dets, data, info.num_keypoints)
    gt_data = prepare_ground_truth(data, info.num_keypoints, subset, use_area=use_area)
    COCO, COCOeval = import_pycocotools()
    with quiet(verbose):
        coco_gt = COCO()
        coco_gt.dataset = gt_data
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        evaluator = COCOeval(coco_gt, coco_dt, "keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(info.sigmas, dtype=np.float64)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return _stats_to_dict(evaluator.stats, COCO_STAT_NAMES)


def keypoint_oks(
    pred: torch.Tensor,
    gt: torch.Tensor,
    areas: torch.Tensor,
    *,
    sigmas: Sequence[float] | torch.Tensor,
    flags: torch.Tensor | None = None,
    subset: str = "all",
) -> torch.Tensor:
    """Object keypoint similarity of paired instances, vectorised.

    ``OKS_n = sum_k exp(-d_nk^2 / (2 * area_n * (2 * sigma_k)^2)) * c_nk / sum_k c_nk`` with ``c_nk`` the
    subset indicator: ``v > 0`` (``"all"``), ``v == 2`` (``"visible"``) or ``v == 1`` (``"occluded"``),
    or 1 for every keypoint when ``flags`` is None. This is COCOeval's per-pair formula (``area`` is
    the ground-truth area, squared scale ``s^2``). An instance with no counted keypoint gets OKS 0
    (COCOeval instead measures the distance to a box around such an instance, which it ignores anyway).

    Args:
        pred: ``(N, K, 2)`` predicted keypoints, pixels.
        gt: ``(N, K, 2)`` ground-truth keypoints, pixels.
        areas: ``(N,)`` ground-truth areas (``s^2``), pixels squared.
        sigmas: ``(K,)`` per-keypoint OKS constants (e.g. ``COCO_KEYPOINTS.sigmas``).
        flags: ``(N, K)`` COCO flags 0/1/2 (``v = 0`` never counts), or None to count every keypoint.
        subset: ``"all"``, ``"visible"`` or ``"occluded"`` (needs ``flags``).

    Returns:
        ``(N,)`` OKS in [0, 1], in the floating dtype of ``pred``.

    Example:
        >>> from visattn.keypoints import COCO_KEYPOINTS
        >>> p = torch.zeros(1, 17, 2)
        >>> keypoint_oks(p, p, torch.tensor([100.0]), sigmas=COCO_KEYPOINTS.sigmas).tolist()
        [1.0]
    """
    check_tensor("pred", pred, "N K 2", floating=True)
    n, k = pred.shape[:2]
    check_tensor("gt", gt, "N K 2", N=n, K=k)
    check_tensor("areas", areas, "N", N=n)
    check_choice("subset", subset, SUBSETS)
    sig = torch.as_tensor(sigmas, dtype=pred.dtype, device=pred.device)
    if sig.shape != (k,):
        raise ValueError(f"sigmas must have length K={k}, got shape {tuple(sig.shape)}")
    if flags is None:
        if subset != "all":
            raise ValueError(f"subset={subset!r} needs flags (N, K) with COCO values 0/1/2")
        count = torch.ones(n, k, dtype=pred.dtype, device=pred.device)
    else:
        check_flags("flags", flags, "N K", N=n, K=k)
        count = subset_mask(flags, subset).to(pred.dtype)  # (N, K)
    d2 = (pred - gt.to(pred.dtype)).square().sum(-1)  # (N, K)
    var = (2.0 * sig).square()  # (K,)
    e = d2 / (var * (areas.to(pred.dtype)[:, None] + float(np.spacing(1))) * 2.0)  # (N, K)
    num = (torch.exp(-e) * count).sum(-1)
    den = count.sum(-1)
    return torch.where(den > 0, num / den.clamp_min(1.0), torch.zeros_like(num))
