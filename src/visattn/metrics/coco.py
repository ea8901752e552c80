"""COCO keypoint AP/AR (OKS based) on all, visible-only or occluded-only keypoints.

The numbers come from pycocotools' ``COCOeval`` (``iouType="keypoints"``) so that they are the ones
every paper reports. pycocotools is an optional dependency (``pip install visattn[data]``) imported
only when an evaluation runs; ``import visattn`` never imports it.

The paper's Table 3 evaluates visible and occluded keypoints separately by changing the indicator of
the OKS formula from ``v > 0`` to ``v == 2`` (visible) or ``v == 1`` (occluded). :func:`coco_keypoint_ap`
implements this by editing an in-memory copy of the ground truth (never the file) before COCOeval
sees it; see its docstring for the exact rule.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visattn._checks import check_choice, check_flags, check_tensor
from visattn._json import read_json
from visattn.keypoints import COCO_KEYPOINTS, CROWDPOSE_KEYPOINTS, KeypointInfo, get_keypoint_info

__all__ = ["COCO_STAT_NAMES", "SUBSETS", "coco_keypoint_ap", "keypoint_oks"]

#: Names of the ten numbers of COCO keypoint evaluation, in ``COCOeval.stats`` order.
COCO_STAT_NAMES: tuple[str, ...] = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")

#: Keypoint subsets: ``"all"`` counts ``v > 0``, ``"visible"`` ``v == 2``, ``"occluded"`` ``v == 1``.
SUBSETS: tuple[str, ...] = ("all", "visible", "occluded")

_SUBSET_FLAG = {"visible": 2, "occluded": 1}

AnnotationSource = str | os.PathLike[str] | Mapping[str, Any]
ResultsSource = str | os.PathLike[str] | Sequence[Mapping[str, Any]]


# ----------------------------------------------------------------------------------------------------------
# helpers shared by the metrics subpackage (private)
# ----------------------------------------------------------------------------------------------------------


def _import_pycocotools(purpose: str = "COCO keypoint evaluation") -> tuple[Any, Any]:
    """Return ``(COCO, COCOeval)`` from pycocotools, or raise an ImportError naming ``purpose``."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as err:  # pragma: no cover - exercised only without the optional dependency
        raise ImportError(
            f"{purpose} needs pycocotools; install it with `pip install visattn[data]`"
        ) from err
    return COCO, COCOeval


@contextlib.contextmanager
def _quiet(verbose: bool) -> Iterator[None]:
    """Silence the prints of the COCO API unless ``verbose``."""
    if verbose:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _load_json(name: str, source: str | os.PathLike[str]) -> Any:
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{name} file not found: {path}")
    return read_json(path, f"{name} file")


def _is_number(value: Any) -> bool:
    """A real number (Python or NumPy), not a bool or a string."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _load_annotations(ann_file: AnnotationSource) -> dict[str, Any]:
    """Load a COCO annotation file (or take an already loaded dict) and check its top-level layout."""
    if isinstance(ann_file, Mapping):
        data: Any = ann_file
    elif isinstance(ann_file, (str, os.PathLike)):
        data = _load_json("ann_file", ann_file)
    else:
        raise TypeError(f"ann_file must be a path or a COCO annotation dict, got {type(ann_file).__name__}")
    if not isinstance(data, Mapping):
        raise ValueError(f"ann_file must hold a COCO annotation dict, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in data or not isinstance(data[key], list):
            raise ValueError(f"ann_file must have a list {key!r} (COCO keypoint format), it has none")
    return dict(data)


def _infer_keypoint_info(
    data: Mapping[str, Any], keypoint_info: str | KeypointInfo | None, default: KeypointInfo = COCO_KEYPOINTS
) -> KeypointInfo:
    """Keypoint metadata: the argument, else inferred from K in the annotations (17 COCO, 14 CrowdPose)."""
    k_file: int | None = None
    for cat in data["categories"]:
        if isinstance(cat, Mapping) and isinstance(cat.get("keypoints"), list):
            k_file = len(cat["keypoints"])
            break
    if k_file is None:
        for ann in data["annotations"]:
            if isinstance(ann, Mapping) and isinstance(ann.get("keypoints"), list):
                k_file = len(ann["keypoints"]) // 3
                break
    if keypoint_info is not None:
        info = get_keypoint_info(keypoint_info)
        if k_file is not None and k_file != info.num_keypoints:
            raise ValueError(
                f"keypoint_info {info.name!r} has K={info.num_keypoints} keypoints but the annotation file "
                f"has K={k_file}"
            )
        return info
    by_k = {
        COCO_KEYPOINTS.num_keypoints: COCO_KEYPOINTS,
        CROWDPOSE_KEYPOINTS.num_keypoints: CROWDPOSE_KEYPOINTS,
    }
    if k_file is None:
        return default
    if k_file not in by_k:
        raise ValueError(
            f"cannot infer keypoint_info for K={k_file} keypoints; pass keypoint_info=KeypointInfo(...)"
        )
    return by_k[k_file]


def _load_results(results: ResultsSource) -> list[dict[str, Any]]:
    """Results as a list of shallow-copied dicts (the COCO API writes into them; the caller's stay intact)."""
    if isinstance(results, (str, os.PathLike)):
        loaded: Any = _load_json("results", results)
    else:
        loaded = results
    if isinstance(loaded, Mapping) or not isinstance(loaded, Sequence) or isinstance(loaded, (str, bytes)):
        raise TypeError(
            f"results must be a list of COCO result dicts or a JSON path, got {type(loaded).__name__}"
        )
    out: list[dict[str, Any]] = []
    for i, r in enumerate(loaded):
        if not isinstance(r, Mapping):
            raise TypeError(f"results[{i}] must be a dict, got {type(r).__name__}")
        out.append(dict(r))
    return out


def _check_results(results: list[dict[str, Any]], data: Mapping[str, Any], num_keypoints: int) -> None:
    """Raise ValueError naming the first bad result (missing key, unknown id, wrong K, non-finite)."""
    if not results:
        raise ValueError("results is empty: nothing to evaluate (need at least one COCO result dict)")
    image_ids = {img["id"] for img in data["images"]}
    cat_ids = {cat["id"] for cat in data["categories"]}
    n_values = 3 * num_keypoints
    for i, r in enumerate(results):
        for key in ("image_id", "category_id", "keypoints", "score"):
            if key not in r:
                raise ValueError(
                    f"results[{i}] has no {key!r} (need image_id, category_id, keypoints, score)"
                )
        if r["image_id"] not in image_ids:
            raise ValueError(f"results[{i}]: image_id {r['image_id']!r} not in annotation file")
        if r["category_id"] not in cat_ids:
            raise ValueError(
                f"results[{i}]: category_id {r['category_id']!r} not in annotation file {sorted(cat_ids)}"
            )
        kp = r["keypoints"]
        if not isinstance(kp, (list, tuple, np.ndarray)):
            raise ValueError(
                f"results[{i}]['keypoints'] must be a list [x, y, s] * K, got {type(kp).__name__}"
            )
        if len(kp) != n_values:
            raise ValueError(
                f"results[{i}] has {len(kp)} keypoint values, expected 3*{num_keypoints}={n_values} "
                f"([x, y, score] per keypoint)"
            )
        if isinstance(kp, np.ndarray):
            if kp.dtype.kind not in "iuf":
                raise ValueError(
                    f"results[{i}]['keypoints'] must hold numbers, got an array of dtype {kp.dtype}"
                )
        elif not all(_is_number(v) for v in kp):
            j = next(j for j, v in enumerate(kp) if not _is_number(v))
            raise ValueError(
                f"results[{i}]['keypoints'][{j}] must be a number, got {type(kp[j]).__name__} {kp[j]!r}"
            )
        if not _is_number(r["score"]):
            raise ValueError(
                f"results[{i}]['score'] must be a number, got {type(r['score']).__name__} {r['score']!r}"
            )
    try:
        values = np.asarray([r["keypoints"] for r in results], dtype=np.float64)  # (N, 3K)
        scores = np.asarray([r["score"] for r in results], dtype=np.float64)  # (N,)
    except (TypeError, ValueError) as err:
        raise ValueError(f"results keypoints and scores must be numbers: {err}") from err
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"results[{i}] has non-finite keypoint values (NaN or inf)")
    bad = ~np.isfinite(scores)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"results[{i}] has a non-finite score {scores[i]}")


def _prepare_ground_truth(
    data: Mapping[str, Any], num_keypoints: int, subset: str, *, use_area: bool
) -> dict[str, Any]:
    """In-memory GT for COCOeval: copied annotations, subset restriction and the area rule applied."""
    anns: list[dict[str, Any]] = []
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, Mapping) or "keypoints" not in ann or "bbox" not in ann:
            raise ValueError(f"ann_file annotations[{i}] must have 'keypoints' and 'bbox'")
        if len(ann["keypoints"]) != 3 * num_keypoints:
            raise ValueError(
                f"ann_file annotations[{i}] has {len(ann['keypoints'])} keypoint values, "
                f"expected 3*{num_keypoints}={3 * num_keypoints}"
            )
        copy = dict(ann)
        copy.setdefault("iscrowd", 0)
        if "num_keypoints" not in copy:  # COCOeval ignores instances by it: recompute it from the flags
            try:
                flags = np.asarray(ann["keypoints"][2::3], dtype=np.float64)
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"ann_file annotations[{i}] (id {ann.get('id')}) has no 'num_keypoints' and its keypoint "
                    f"flags are not numbers ({err})"
                ) from None
            copy["num_keypoints"] = int((flags > 0).sum())
        if use_area:
            if "area" not in ann:
                raise ValueError(
                    f"ann_file annotations[{i}] (id {ann.get('id')}) has no 'area'; pass use_area=False "
                    f"to use 0.53 * bbox w * h instead (the CrowdPose convention)"
                )
        else:
            copy["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3]) * 0.53
        anns.append(copy)
    if subset != "all" and anns:
        kpts = np.asarray([a["keypoints"] for a in anns], dtype=np.float64).reshape(
            len(anns), num_keypoints, 3
        )
        keep = kpts[..., 2] == _SUBSET_FLAG[subset]  # (N, K)
        kpts[..., 2] = np.where(keep, kpts[..., 2], 0.0)
        counts = keep.sum(axis=1)
        for a, kp, n in zip(anns, kpts.reshape(len(anns), -1).tolist(), counts.tolist()):
            a["keypoints"] = kp
            a["num_keypoints"] = int(n)
    out = dict(data)
    out["annotations"] = anns
    return out


def _subset_mask(flags: torch.Tensor, subset: str) -> torch.Tensor:
    """``(N, K)`` bool: the keypoints a subset counts (``v > 0``, ``v == 2`` or ``v == 1``).

    ``flags`` must already be shape-checked COCO flags; a bool tensor is rejected because it cannot tell
    ``v = 0`` from ``v = 1``.
    """
    if flags.dtype == torch.bool:
        raise TypeError("flags must be COCO flags 0/1/2 (a bool visibility tensor cannot tell v=0 from v=1)")
    return flags > 0 if subset == "all" else flags == _SUBSET_FLAG[subset]


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
            :class:`~visattn.keypoints.KeypointInfo`); ``None`` infers it from K in the file (17 COCO,
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
    data = _load_annotations(ann_file)
    info = _infer_keypoint_info(data, keypoint_info)
    dets = _load_results(results)
    _check_results(dets, data, info.num_keypoints)
    gt_data = _prepare_ground_truth(data, info.num_keypoints, subset, use_area=use_area)
    COCO, COCOeval = _import_pycocotools()
    with _quiet(verbose):
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
    check_tensor("pred", pred, "N K D", floating=True, D=2)
    n, k = pred.shape[:2]
    check_tensor("gt", gt, "N K D", N=n, K=k, D=2)
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
        count = _subset_mask(flags, subset).to(pred.dtype)  # (N, K)
    d2 = (pred - gt.to(pred.dtype)).square().sum(-1)  # (N, K)
    var = (2.0 * sig).square()  # (K,)
    e = d2 / (var * (areas.to(pred.dtype)[:, None] + float(np.spacing(1))) * 2.0)  # (N, K)
    num = (torch.exp(-e) * count).sum(-1)
    den = count.sum(-1)
    return torch.where(den > 0, num / den.clamp_min(1.0), torch.zeros_like(num))
