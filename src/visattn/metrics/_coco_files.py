"""Reading and checking COCO-style annotation and results files, shared by the COCO and CrowdPose metrics."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from visattn._json import read_json
from visattn.keypoints import COCO_KEYPOINTS, CROWDPOSE_KEYPOINTS, KeypointInfo, get_keypoint_info
from visattn.metrics._subsets import SUBSET_FLAG

__all__ = [
    "AnnotationSource",
    "ResultsSource",
    "check_results",
    "import_pycocotools",
    "infer_keypoint_info",
    "is_number",
    "load_annotations",
    "load_results",
    "prepare_ground_truth",
    "quiet",
]

AnnotationSource = str | os.PathLike[str] | Mapping[str, Any]
ResultsSource = str | os.PathLike[str] | Sequence[Mapping[str, Any]]


def import_pycocotools(purpose: str = "COCO keypoint evaluation") -> tuple[Any, Any]:
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
def quiet(verbose: bool) -> Iterator[None]:
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


def is_number(value: Any) -> bool:
    """A real number (Python or NumPy), not a bool or a string."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def load_annotations(ann_file: AnnotationSource) -> dict[str, Any]:
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


def infer_keypoint_info(
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


def load_results(results: ResultsSource) -> list[dict[str, Any]]:
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


def check_results(results: list[dict[str, Any]], data: Mapping[str, Any], num_keypoints: int) -> None:
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
        elif not all(is_number(v) for v in kp):
            j = next(j for j, v in enumerate(kp) if not is_number(v))
            raise ValueError(
                f"results[{i}]['keypoints'][{j}] must be a number, got {type(kp[j]).__name__} {kp[j]!r}"
            )
        if not is_number(r["score"]):
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


def prepare_ground_truth(
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
        keep = kpts[..., 2] == SUBSET_FLAG[subset]  # (N, K)
        kpts[..., 2] = np.where(keep, kpts[..., 2], 0.0)
        counts = keep.sum(axis=1)
        for a, kp, n in zip(anns, kpts.reshape(len(anns), -1).tolist(), counts.tolist()):
            a["keypoints"] = kp
            a["num_keypoints"] = int(n)
    out = dict(data)
    out["annotations"] = anns
    return out
