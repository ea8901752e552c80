"""``PoseEvaluator``: accumulate top-down predictions in a validation loop, compute every metric at once.

Per instance (one person box) the loop passes image-space keypoints and their scores, optionally the
box score, ground-truth keypoints, boxes and flags (for PCK) and VisNet logits (for visibility).
[`PoseEvaluator.compute`][visattn.metrics.PoseEvaluator.compute] returns one flat dict of floats:

- ``AP, AP50, AP75, APM, APL, AR, AR50, AR75, ARM, ARL`` (all labelled keypoints) and the same keys
  with the suffix ``_visible`` / ``_occluded`` (OKS over ``v == 2`` / ``v == 1`` keypoints only, see
  [`coco_keypoint_ap`][visattn.metrics.coco_keypoint_ap]), when an annotation file is given. With
  ``crowdpose=True`` the unsuffixed keys are the CrowdPose protocol's ``AP, AP50, AP75, AR, AR50,
  AR75, AP_easy, AP_medium, AP_hard`` ([`crowdpose_ap`][visattn.metrics.crowdpose_ap]) and the suffixed subset
  keys use ``use_area=False`` (0.53 * box area as scale, as CrowdPose files have no area).
- ``PCK_all, PCK_visible, PCK_occluded`` when ``gt_keypoints``, ``boxes`` and ``flags`` are given
  (pooled over keypoints, or MMPose's mean per keypoint type with ``pck_mode="per_keypoint"``).
- ``vis_accuracy, vis_precision, vis_recall, vis_f1, vis_visible_share`` (over all keypoints, ``v = 0``
  counted as occluded, the paper's convention) and ``vis_balanced_accuracy, vis_roc_auc,
  vis_occluded_ap, vis_occluded_precision, vis_occluded_recall, vis_majority_accuracy`` (over the
  labelled keypoints: does VisNet find the ``v = 1`` ones? see
  [`visibility_ranking_metrics`][visattn.metrics.visibility_ranking_metrics]) when ``vis_logits`` and
  ``flags`` are given.

Instance score of a COCO result (the usual top-down rescoring of MMPose / SimpleBaseline):
``bbox_score * mean(keypoint scores > kpt_score_threshold)``, 0 when no keypoint score passes.
OKS-NMS is off by default (with ground-truth boxes every instance has its own box and NMS only removes
true positives); ``nms_threshold=0.9`` enables MMPose's greedy per-image OKS-NMS (needs ``areas``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from visattn._checks import check_flags, check_positive_float, check_probability, check_tensor
from visattn._json import write_json
from visattn.data.transforms import crop_to_image
from visattn.inference import Prediction
from visattn.keypoints import KeypointInfo, get_keypoint_info
from visattn.metrics._coco_files import AnnotationSource, infer_keypoint_info, load_annotations
from visattn.metrics.coco import coco_keypoint_ap, keypoint_oks
from visattn.metrics.crowdpose import crowdpose_ap
from visattn.metrics.pck import check_pck_mode, pck_by_subset
from visattn.metrics.visibility import visibility_metrics, visibility_ranking_metrics

__all__ = ["PoseEvaluator", "instance_scores", "oks_nms"]

_OPTIONAL = ("bbox_scores", "areas", "vis_logits", "flags", "boxes", "gt_keypoints", "instance_ids")
_NMS_CHUNK = 1 << 22  # elements of one (G, M, M, K) pairwise block


def instance_scores(
    keypoint_scores: torch.Tensor, bbox_scores: torch.Tensor | None = None, *, threshold: float = 0.2
) -> torch.Tensor:
    """Top-down instance score: ``bbox_score * mean(keypoint scores > threshold)``.

    The mean runs over the keypoints whose score exceeds ``threshold``; an instance without such a
    keypoint scores 0 (MMPose's ``CocoMetric`` rescoring).

    Args:
        keypoint_scores: ``(N, K)`` keypoint confidences.
        bbox_scores: ``(N,)`` detector box scores; None means 1 (ground-truth boxes).
        threshold: keypoint score threshold, in [0, 1).

    Returns:
        ``(N,)`` instance scores (float of ``keypoint_scores``' dtype).

    Example:
        >>> kpt_scores = torch.tensor([[0.9, 0.5, 0.1], [0.1, 0.1, 0.1]])
        >>> instance_scores(kpt_scores, torch.tensor([0.5, 1.0])).tolist()
        [0.3499999940395355, 0.0]
    """
    check_tensor("keypoint_scores", keypoint_scores, "N K", floating=True)
    n = keypoint_scores.shape[0]
    check_probability("threshold", threshold, high_open=True)
    valid = keypoint_scores > threshold  # (N, K)
    total = torch.where(valid, keypoint_scores, torch.zeros_like(keypoint_scores)).sum(-1)
    count = valid.sum(-1)
    score = torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(total))
    if bbox_scores is not None:
        check_tensor("bbox_scores", bbox_scores, "N", floating=True, N=n)
        score = score * bbox_scores.to(score.dtype)
    return score


def oks_nms(
    keypoints: torch.Tensor,
    scores: torch.Tensor,
    areas: torch.Tensor,
    image_ids: torch.Tensor,
    *,
    sigmas: Sequence[float] | torch.Tensor,
    threshold: float = 0.9,
) -> torch.Tensor:
    """Greedy OKS non-maximum suppression per image, vectorised over images.

    Within an image, instances are visited by descending score (stable); an instance is removed when
    an already kept instance has OKS > ``threshold`` with it. The OKS of a pair counts every keypoint
    and uses the mean of the two areas as scale (MMPose's ``oks_nms``).

    Args:
        keypoints: ``(N, K, 2)`` image-space keypoints.
        scores: ``(N,)`` instance scores.
        areas: ``(N,)`` instance areas (e.g. box w * h), pixels squared.
        image_ids: ``(N,)`` integer image ids; NMS never compares instances of different images.
        sigmas: ``(K,)`` OKS constants.
        threshold: OKS above which the lower-scored instance is suppressed.

    Returns:
        ``(N,)`` bool keep mask.

    Example:
        >>> kp = torch.tensor([[[0.0, 0.0], [10.0, 10.0]], [[0.0, 0.0], [10.0, 11.0]],
        ...                    [[0.0, 0.0], [10.0, 10.0]]])
        >>> oks_nms(kp, torch.tensor([0.5, 0.9, 0.7]), torch.full((3,), 1000.0), torch.tensor([1, 1, 2]),
        ...         sigmas=[0.1, 0.1]).tolist()
        [False, True, True]
    """
    check_tensor("keypoints", keypoints, "N K 2", floating=True)
    n, k = keypoints.shape[:2]
    check_tensor("scores", scores, "N", floating=True, N=n)
    check_tensor("areas", areas, "N", N=n)
    check_tensor("image_ids", image_ids, "N", N=n)
    check_probability("threshold", threshold)
    keep = torch.zeros(n, dtype=torch.bool, device=keypoints.device)
    if n == 0:
        return keep
    by_score = torch.argsort(-scores, stable=True)
    order = by_score[torch.argsort(image_ids[by_score], stable=True)]  # image-major, score-descending
    _, counts = torch.unique_consecutive(image_ids[order], return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    # Process groups in chunks of similar size so the (G, M, M, K) pairwise block stays small.
    by_size = torch.argsort(counts, descending=True, stable=True)
    i = 0
    num_groups = int(counts.numel())
    while i < num_groups:
        m = int(counts[by_size[i]])
        g = max(1, min(num_groups - i, _NMS_CHUNK // max(1, m * m * k)))
        groups = by_size[i : i + g]
        i += g
        rank = torch.arange(m, device=keypoints.device)
        valid = rank[None, :] < counts[groups][:, None]  # (G, M)
        index = order[(starts[groups][:, None] + rank[None, :]).clamp_max(n - 1)]  # (G, M)
        kp = keypoints[index]  # (G, M, K, 2)
        ar = areas[index].to(keypoints.dtype)  # (G, M)
        pairs_pred = kp[:, :, None].expand(g, m, m, k, 2).reshape(-1, k, 2)  # (G*M*M, K, 2)
        pairs_gt = kp[:, None, :].expand(g, m, m, k, 2).reshape(-1, k, 2)  # (G*M*M, K, 2)
        pair_area = ((ar[:, :, None] + ar[:, None, :]) / 2).reshape(-1)  # (G*M*M,)
        oks = keypoint_oks(pairs_pred, pairs_gt, pair_area, sigmas=sigmas).reshape(g, m, m)
        kept = torch.zeros(g, m, dtype=torch.bool, device=keypoints.device)
        kept[:, 0] = valid[:, 0]
        for j in range(1, m):
            suppressed = (kept[:, :j] & (oks[:, :j, j] > threshold)).any(dim=1)
            kept[:, j] = valid[:, j] & ~suppressed
        keep[index[valid]] = kept[valid]
    return keep


def _as_numpy(name: str, value: torch.Tensor | Sequence[int], dtype: type) -> np.ndarray:
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(
                f"{name} must be a tensor or a sequence of numbers, got {type(value).__name__}"
            ) from err
    return np.asarray(value.detach().cpu().numpy(), dtype=dtype)


class PoseEvaluator:
    """Collects per-instance predictions and computes COCO AP (all/visible/occluded), PCK and visibility.

    Works unchanged under ``torch.distributed``: [`compute`][visattn.metrics.PoseEvaluator.compute],
    [`results`][visattn.metrics.PoseEvaluator.results] and [`dump`][visattn.metrics.PoseEvaluator.dump] gather
    every rank's instances (``all_gather_object``, so any backend and device works) and return the same values
    on every rank; they are collective calls that every rank must make. A ``DistributedSampler`` pads the last
    batch with repeated samples: pass ``instance_ids`` (the annotation id or the dataset index) and duplicates
    of ``(image_id, instance_id)`` are dropped (first kept); instances are then ordered by
    ``(image_id, instance_id)`` so the numbers do not depend on the number of ranks, even for score ties.

    Args:
        ann_file: COCO (or CrowdPose) annotation JSON path or loaded dict, or None to compute only PCK
            and visibility metrics.
        keypoint_info: keypoint set (name or [`KeypointInfo`][visattn.keypoints.KeypointInfo]): K and OKS
            sigmas.
        crowdpose: report the CrowdPose protocol (AP_easy/medium/hard) instead of COCO's.
        pck_alpha: PCK threshold as a fraction of ``max(box w, h)``.
        pck_mode: ``"pooled"`` (all counted keypoints together) or ``"per_keypoint"`` (MMPose's mean
            of the per-keypoint accuracies); see `pck`.
        vis_threshold: probability threshold of the visibility prediction.
        kpt_score_threshold: keypoint score threshold of the instance rescoring.
        nms_threshold: OKS threshold of per-image OKS-NMS on the COCO results, None (default) for no NMS.

    Example:
        >>> ev = PoseEvaluator(None)
        >>> gt = torch.zeros(1, 17, 2)
        >>> ev.update(torch.tensor([7]), gt + 1.0, torch.ones(1, 17), flags=torch.full((1, 17), 2),
        ...           boxes=torch.tensor([[0.0, 0.0, 50.0, 80.0]]), gt_keypoints=gt,
        ...           vis_logits=torch.full((1, 17), 4.0))
        >>> out = ev.compute()
        >>> out["PCK_all"], out["PCK_occluded"], out["vis_accuracy"]
        (1.0, nan, 1.0)
    """

    def __init__(
        self,
        ann_file: AnnotationSource | None,
        *,
        keypoint_info: str | KeypointInfo = "coco",
        crowdpose: bool = False,
        pck_alpha: float = 0.05,
        pck_mode: str = "pooled",
        vis_threshold: float = 0.5,
        kpt_score_threshold: float = 0.2,
        nms_threshold: float | None = None,
    ) -> None:
        self.keypoint_info = get_keypoint_info(keypoint_info)
        self.crowdpose = bool(crowdpose)
        self.pck_alpha = check_positive_float("pck_alpha", pck_alpha)
        self.pck_mode = check_pck_mode("pck_mode", pck_mode)
        self.vis_threshold = check_probability("vis_threshold", vis_threshold, low_open=True, high_open=True)
        self.kpt_score_threshold = check_probability(
            "kpt_score_threshold", kpt_score_threshold, high_open=True
        )
        self.nms_threshold = (
            None if nms_threshold is None else check_probability("nms_threshold", nms_threshold)
        )
        self._data: dict[str, Any] | None = None
        self._category_id: int = 1
        if ann_file is not None:
            self._data = load_annotations(ann_file)
            infer_keypoint_info(self._data, self.keypoint_info)
            cats = self._data["categories"]
            if not cats:
                raise ValueError("ann_file has no category")
            person = [c for c in cats if c.get("name") == "person"]
            self._category_id = int((person or cats)[0]["id"])
        if crowdpose and self._data is None:
            raise ValueError("crowdpose=True needs an ann_file (CrowdPose annotation JSON)")
        self._fields: frozenset[str] | None = None
        self._state: dict[str, list[np.ndarray]] = {}

    def reset(self) -> None:
        """Drop every accumulated instance (e.g. before the next validation epoch)."""
        self._fields = None
        self._state = {}

    def __len__(self) -> int:
        """Number of instances accumulated on this rank."""
        return sum(len(a) for a in self._state.get("image_ids", []))

    def update(
        self,
        image_ids: torch.Tensor | Sequence[int],
        keypoints: torch.Tensor,
        scores: torch.Tensor,
        *,
        bbox_scores: torch.Tensor | None = None,
        areas: torch.Tensor | None = None,
        vis_logits: torch.Tensor | None = None,
        flags: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        gt_keypoints: torch.Tensor | None = None,
        instance_ids: torch.Tensor | Sequence[int] | None = None,
    ) -> None:
        """Add a batch of B instances (tensors on any device; copied to CPU).

        Every call must pass the same set of optional arguments.

        Args:
            image_ids: ``(B,)`` integer COCO image ids.
            keypoints: ``(B, K, 2)`` predicted keypoints in image pixels.
            scores: ``(B, K)`` keypoint confidences.
            bbox_scores: ``(B,)`` detector box scores (None: 1).
            areas: ``(B,)`` instance areas for OKS-NMS (needed when ``nms_threshold`` is set).
            vis_logits: ``(B, K)`` VisNet logits, for the visibility metrics.
            flags: ``(B, K)`` ground-truth COCO flags 0/1/2 (visible iff ``v == 2``; ``v = 0`` counts as
                occluded for visibility and is not counted by PCK). A bool ``visible`` tensor is accepted
                for the visibility metrics only.
            boxes: ``(B, 4)`` person boxes ``(x, y, w, h)`` in image pixels, the PCK scale.
            gt_keypoints: ``(B, K, 2)`` ground-truth keypoints in image pixels, for PCK.
            instance_ids: ``(B,)`` integer id of each instance within the dataset (annotation id or
                dataset index), used to drop samples a distributed sampler repeated.
        """
        k = self.keypoint_info.num_keypoints
        check_tensor("keypoints", keypoints, "B K D", floating=True, K=k, D=2)
        b = keypoints.shape[0]
        ids = _as_numpy("image_ids", image_ids, np.int64)
        if ids.shape != (b,):
            raise ValueError(f"image_ids must be (B,) with B={b}, got {ids.shape}")
        check_tensor("scores", scores, "B K", floating=True, B=b, K=k)
        if not bool(torch.isfinite(keypoints).all()) or not bool(torch.isfinite(scores).all()):
            raise ValueError("keypoints and scores must be finite (found NaN or inf)")
        given: dict[str, torch.Tensor | Sequence[int] | None] = {
            "bbox_scores": bbox_scores,
            "areas": areas,
            "vis_logits": vis_logits,
            "flags": flags,
            "boxes": boxes,
            "gt_keypoints": gt_keypoints,
            "instance_ids": instance_ids,
        }
        fields = frozenset(name for name, v in given.items() if v is not None)
        if self._fields is not None and fields != self._fields:
            raise ValueError(
                f"every update must pass the same optional arguments: first {sorted(self._fields)}, "
                f"now {sorted(fields)}"
            )
        if bbox_scores is not None:
            check_tensor("bbox_scores", bbox_scores, "B", floating=True, B=b)
        if areas is not None:
            check_tensor("areas", areas, "B", B=b)
        if vis_logits is not None:
            check_tensor("vis_logits", vis_logits, "B K", floating=True, B=b, K=k)
            if flags is None:
                raise ValueError("vis_logits needs flags (B, K) (the ground-truth visibility)")
        if flags is not None:
            check_flags("flags", flags, "B K", B=b, K=k)
        if boxes is not None:
            check_tensor("boxes", boxes, "B D", floating=True, B=b, D=4)
        if gt_keypoints is not None:
            check_tensor("gt_keypoints", gt_keypoints, "B K D", floating=True, B=b, K=k, D=2)
            if boxes is None or flags is None:
                raise ValueError("gt_keypoints (PCK) needs boxes (B, 4) and flags (B, K) too")
            if flags.dtype == torch.bool:
                raise TypeError("flags must be COCO flags 0/1/2 for PCK (bools cannot tell v=0 from v=1)")
        if self.nms_threshold is not None and areas is None:
            raise ValueError("nms_threshold is set: update needs areas (B,) for OKS-NMS")
        self._fields = fields
        batch: dict[str, np.ndarray] = {
            "image_ids": ids,
            "keypoints": _as_numpy("keypoints", keypoints, np.float64),
            "scores": _as_numpy("scores", scores, np.float64),
        }
        for name in fields:
            value = given[name]
            assert value is not None
            dtype: type = np.int64 if name == "instance_ids" else np.float64
            if name == "flags" and isinstance(value, torch.Tensor) and value.dtype == torch.bool:
                value = value.to(torch.int64) * 2  # bool visible -> flags 2 / 0
            batch[name] = _as_numpy(name, value, dtype)
        if "instance_ids" in batch and batch["instance_ids"].shape != (b,):
            raise ValueError(f"instance_ids must be (B,) with B={b}, got {batch['instance_ids'].shape}")
        for name, arr in batch.items():
            self._state.setdefault(name, []).append(arr)

    def update_from_batch(
        self, batch: Mapping[str, Any], prediction: Prediction, input_size: Sequence[int]
    ) -> None:
        """Add a batch of a [`TopDownCocoDataset`][visattn.data.TopDownCocoDataset] and its predictions.

        Maps the predicted (and the ground-truth) keypoints from crop pixels back to image pixels with
        the batch's ``center``, ``scale`` and ``rotation``
        ([`visattn.data.crop_to_image`][visattn.data.crop_to_image]), and passes the batch's ``image_id``,
        ``bbox_score``, ``area``, ``flags``, ``bbox`` (the PCK scale) and ``index`` (the instance id that
        drops the samples a distributed sampler repeats) with the prediction's scores and visibility logits to
        [`update`][visattn.metrics.PoseEvaluator.update].

        Args:
            batch: a collated dataset batch (tensors on any device).
            prediction: [`visattn.inference.predict_crops`][visattn.inference.predict_crops] of the batch's
                images.
            input_size: ``(H, W)`` of the crops (``model.input_size``).

        Example:
            >>> import tempfile
            >>> from pathlib import Path
            >>> from torch.utils.data import DataLoader
            >>> from visattn.data import TopDownCocoDataset, make_synthetic_coco
            >>> from visattn.inference import Prediction
            >>> root = Path(tempfile.mkdtemp())
            >>> ann = make_synthetic_coco(root, 2, image_size=(60, 80))
            >>> batch = next(iter(DataLoader(TopDownCocoDataset(ann, root / "images", input_size=(64, 48)),
            ...                              batch_size=4)))
            >>> perfect = Prediction(batch["keypoints"], torch.ones(batch["flags"].shape), None)
            >>> ev = PoseEvaluator(ann)
            >>> ev.update_from_batch(batch, perfect, (64, 48))
            >>> ev.compute()["AP"]
            1.0
        """
        center, scale, rotation = (
            batch[key].detach().cpu().float() for key in ("center", "scale", "rotation")
        )
        pred = prediction.keypoints.detach().cpu().float()
        keypoints = crop_to_image(pred, center, scale, rotation, input_size)
        gt_keypoints = crop_to_image(
            batch["keypoints"].detach().cpu().float(), center, scale, rotation, input_size
        )
        vis = prediction.vis_logits
        self.update(
            batch["image_id"],
            keypoints,
            prediction.scores.detach().cpu(),
            bbox_scores=batch["bbox_score"],
            areas=batch["area"],
            vis_logits=None if vis is None else vis.detach().cpu(),
            flags=batch["flags"],
            gt_keypoints=gt_keypoints,
            boxes=batch["bbox"],
            instance_ids=batch["index"],
        )

    def _gathered(self) -> dict[str, np.ndarray]:
        """All ranks' instances, deduplicated and in a rank-independent order."""
        local: dict[str, np.ndarray] = {name: np.concatenate(parts) for name, parts in self._state.items()}
        parts_all: list[Any] = [(self._fields, local)]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts_all = [None] * dist.get_world_size()
            dist.all_gather_object(parts_all, (self._fields, local))
        filled = [(f, s) for f, s in parts_all if f is not None]
        if not filled:
            raise ValueError("no predictions: call update() before compute() / results()")
        fields = filled[0][0]
        if any(f != fields for f, _ in filled):
            raise ValueError("ranks passed different optional arguments to update()")
        state = {name: np.concatenate([s[name] for _, s in filled]) for name in filled[0][1]}
        if "instance_ids" in state:
            keys = np.stack([state["image_ids"], state["instance_ids"]], axis=1)  # (N, 2)
            _, first = np.unique(keys, axis=0, return_index=True)  # sorted by (image_id, instance_id)
            state = {name: arr[first] for name, arr in state.items()}
        return state

    def _results_from(self, state: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        kp = torch.from_numpy(state["keypoints"])
        kpt_scores = torch.from_numpy(state["scores"])
        bbox = torch.from_numpy(state["bbox_scores"]) if "bbox_scores" in state else None
        score = instance_scores(kpt_scores, bbox, threshold=self.kpt_score_threshold)
        keep = np.ones(len(score), dtype=bool)
        if self.nms_threshold is not None:
            keep = oks_nms(
                kp,
                score,
                torch.from_numpy(state["areas"]),
                torch.from_numpy(state["image_ids"]),
                sigmas=self.keypoint_info.sigmas,
                threshold=self.nms_threshold,
            ).numpy()
        values = np.concatenate([state["keypoints"], state["scores"][..., None]], axis=-1)  # (N, K, 3)
        values = values.reshape(len(values), -1)[keep]  # (N, 3K)
        ids = state["image_ids"][keep].tolist()
        return [
            {"image_id": i, "category_id": self._category_id, "keypoints": v, "score": s}
            for i, v, s in zip(ids, values.tolist(), score.numpy()[keep].tolist())
        ]

    def results(self) -> list[dict[str, Any]]:
        """COCO keypoint results of every instance (rescored, NMS applied if enabled). Collective.

        Example:
            >>> ev = PoseEvaluator(None)
            >>> ev.update([5], torch.zeros(1, 17, 2), torch.full((1, 17), 0.5))
            >>> r = ev.results()[0]
            >>> r["image_id"], r["score"], len(r["keypoints"])
            (5, 0.5, 51)
        """
        return self._results_from(self._gathered())

    def dump(self, path: str | os.PathLike[str]) -> Path:
        """Write [`results`][visattn.metrics.PoseEvaluator.results] as JSON, atomically (temp file +
        ``os.replace``). Collective.

        Under ``torch.distributed`` every rank must call it and only rank 0 writes.

        Returns:
            The path written.
        """
        results = self.results()
        target = Path(path)
        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return target
        return write_json(target, results)

    def compute(self) -> dict[str, float]:
        """Every metric the accumulated inputs allow, as one flat dict of floats. Collective.

        Undefined numbers (no ground truth in a subset or area range) are NaN.
        """
        state = self._gathered()
        out: dict[str, float] = {}
        if self._data is not None:
            results = self._results_from(state)
            info = self.keypoint_info
            if self.crowdpose:
                out.update(crowdpose_ap(self._data, results, keypoint_info=info))
            else:
                out.update(coco_keypoint_ap(self._data, results, "all", keypoint_info=info))
            for subset in ("visible", "occluded"):
                sub = coco_keypoint_ap(
                    self._data, results, subset, keypoint_info=info, use_area=not self.crowdpose
                )
                out.update({f"{name}_{subset}": v for name, v in sub.items()})
        if "gt_keypoints" in state:
            out.update(
                pck_by_subset(
                    torch.from_numpy(state["keypoints"]),
                    torch.from_numpy(state["gt_keypoints"]),
                    torch.from_numpy(state["flags"]).to(torch.int64),
                    torch.from_numpy(state["boxes"]),
                    alpha=self.pck_alpha,
                    mode=self.pck_mode,
                )
            )
        if "vis_logits" in state:
            logits = torch.from_numpy(state["vis_logits"])
            flags = torch.from_numpy(state["flags"]).to(torch.int64)
            vis = visibility_metrics(logits, flags, threshold=self.vis_threshold)
            out.update({f"vis_{name}": v for name, v in vis.items()})
            labelled = (
                flags > 0
            )  # ranking metrics over labelled keypoints: occluded (v = 1) vs visible (v = 2)
            ranking = visibility_ranking_metrics(
                logits[labelled][None], flags[labelled][None], threshold=self.vis_threshold
            )
            out.update({f"vis_{name}": v for name, v in ranking.items()})
        return {name: float(v) for name, v in out.items()}
