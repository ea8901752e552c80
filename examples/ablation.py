"""Occlusion ablation on the synthetic set: every variant on the same data, budget and data order.

The engine of ``examples/demo.py`` and ``benchmarks/bench_ablation.py``. One *variant* is one way of
building and training the small SimCC network of the demo (7 conv-BN-ReLU to stride 8, one deconv to
stride 4: 16x12 keypoint maps, D = 192, 64 backbone channels; reasoner embed 256, depth 2):

- where the reasoner's mask comes from (``mask_source``: none, predicted, ground truth, mixed; with
  scheduled teacher forcing);
- what VisNet sees (the keypoint token, the paper; or also the backbone features pooled at the
  keypoint and the other keypoints) and how it is trained (BCE, class-balanced BCE, focal; detached
  or not), hard or soft masks, and whether the threshold is calibrated on a held-out split;
- occlusion augmentation (:func:`visattn.data.occlude_batch`) as augmentation, or as the only source of
  visibility labels.

Design, fixed before any variant was tuned: ``make_synthetic_coco`` 6,000 train (seed 1) / 600 val
(seed 2) / 300 calibration (seed 3) images at its defaults, every person box cropped once to 64x48 and
kept in RAM as uint8, 1,100 steps x batch 64, Adam with a one-cycle schedule (peak 2e-3), no flip (the
figures tell left from right by colour), training seed = initialisation seed = data-order seed, so two
variants with the same seed see the same batches in the same order. Evaluation: COCO keypoint AP on the
val set (all / visible-only / occluded-only keypoints) and visibility metrics over its labelled
keypoints (v > 0) against the true flags.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from visattn import SimCCAdapter, VisibilityMaskedReasoner
from visattn.data import (
    TopDownCocoDataset,
    crop_to_image,
    make_synthetic_coco,
    normalize_images,
    occlude_batch,
    occlusion_statistics,
)
from visattn.inference import predict_crops
from visattn.losses import (
    VisibilityAwareLoss,
    VisibilityBCELoss,
    VisibilityFocalLoss,
)
from visattn.metrics import PoseEvaluator
from visattn.metrics.visibility import visibility_metrics, visibility_ranking_metrics
from visattn.models import tiny_net
from visattn.visibility import teacher_forcing_prob

__all__ = [
    "INPUT_SIZE",
    "QUICK",
    "VARIANTS",
    "Budget",
    "Crops",
    "Data",
    "Variant",
    "build_model",
    "evaluate",
    "prepare_data",
    "run_variant",
    "train",
]

INPUT_SIZE = (64, 48)
SIGMA = 2.0  # SimCC target sigma in bins at this crop size
#: ``--quick`` sizes of the demo and the benchmark (a smoke run: tens of seconds).
QUICK = {"train_images": 96, "val_images": 32, "calib_images": 32, "steps": 20, "batch_size": 32}
_META_KEYS = ("center", "scale", "rotation", "image_id", "ann_id", "bbox_score", "area")


@dataclass(frozen=True)
class Variant:
    """One way of building and training the demo network (see the module docstring).

    Attributes:
        name: short key.
        reasoner: add the visattn layer (False: plain SimCC).
        mask_source: the reasoner's mask source.
        features: VisNet also sees the backbone features pooled at each keypoint.
        context: self-attention blocks over keypoints inside VisNet.
        grad_scale: share of the visibility gradient VisNet passes back to the backbone (0: detached,
            the paper).
        mask_mode: ``"hard"`` or ``"soft"``.
        vis_loss: ``"bce"``, ``"balanced"`` (class-balanced BCE) or ``"focal"``.
        teacher_forcing: ``mask_source="mixed"`` with the ground-truth share falling from 1 to 0.
        occlusion: ``"off"``, ``"augment"`` (occluders pasted on training crops, true flags updated) or
            ``"labels"`` (occluders pasted and the flags replaced by the coverage: the only visibility
            labels the model sees).
        calibrate: also evaluate with the threshold calibrated on the calibration split.
    """

    name: str
    reasoner: bool = True
    mask_source: str = "predicted"
    features: bool = False
    context: int = 0
    grad_scale: float = 0.0
    mask_mode: str = "hard"
    vis_loss: str = "bce"
    teacher_forcing: bool = False
    occlusion: str = "off"
    calibrate: bool = False

    @property
    def uses_prediction(self) -> bool:
        """The evaluation mask comes from VisNet."""
        return self.reasoner and self.mask_source in ("predicted", "mixed")


#: The library's default layer (``SimCCAdapter`` with its default reasoner): chosen from the seed-0
#: screening of every option (pooled features + a 1% visibility gradient gave the best AUC at no AP cost,
#: soft masks the best AP), then measured with every seed.
_BEST: dict[str, Any] = {"features": True, "grad_scale": 0.01, "mask_mode": "soft", "calibrate": True}

#: Every variant of the benchmark, in table order.
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("plain", reasoner=False),
        Variant("none", mask_source="none"),
        Variant("predicted", calibrate=True),
        Variant("ground_truth", mask_source="ground_truth"),
        Variant("mixed", mask_source="mixed"),
        Variant("balanced", vis_loss="balanced", calibrate=True),
        Variant("focal", vis_loss="focal", calibrate=True),
        Variant("features", features=True, calibrate=True),
        Variant("features_context", features=True, context=1, calibrate=True),
        Variant("undetached", features=True, grad_scale=1.0, calibrate=True),
        Variant("features_grad0.1", features=True, grad_scale=0.1, calibrate=True),
        Variant("features_grad0.01", features=True, grad_scale=0.01, calibrate=True),
        Variant("soft", mask_mode="soft"),
        Variant("teacher_forcing", mask_source="mixed", teacher_forcing=True, calibrate=True),
        Variant("best", **_BEST),
        Variant("plain_occlusion_aug", reasoner=False, occlusion="augment"),
        Variant("best_occlusion_aug", occlusion="augment", **_BEST),
        Variant("best_occlusion_labels", occlusion="labels", **{**_BEST, "calibrate": False}),
    )
}


@dataclass(frozen=True)
class Budget:
    """The training budget shared by every variant."""

    steps: int = 1100
    batch_size: int = 64
    lr: float = 2e-3


@dataclass
class Crops:
    """Every instance of a split cropped once: uint8 images and float targets, all in RAM."""

    images: torch.Tensor  # (N, 3, H, W) uint8
    keypoints: torch.Tensor  # (N, K, 2) crop px
    flags: torch.Tensor  # (N, K) COCO flags 0/1/2
    meta: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return self.images.shape[0]

    @staticmethod
    def normalised(images: torch.Tensor) -> torch.Tensor:
        """Float ImageNet-normalised ``(B, 3, H, W)`` images from uint8 crops."""
        return normalize_images(images)


@dataclass
class Data:
    """The three splits and what evaluation needs."""

    train: Crops
    val: Crops
    calib: Crops
    val_ann: Path
    stats: dict[str, dict[str, float]]


def _crop_split(ann: Path, image_dir: Path, workers: int) -> Crops:
    """Run the library's dataset once (no augmentation) and keep uint8 crops."""
    dataset = TopDownCocoDataset(ann, image_dir, input_size=INPUT_SIZE, train=False, image_dtype="uint8")
    loader = DataLoader(dataset, batch_size=256, num_workers=workers)
    images, keypoints, flags, meta = [], [], [], {k: [] for k in _META_KEYS}
    for batch in loader:
        images.append(batch["image"])
        keypoints.append(batch["keypoints"].float())
        flags.append(batch["flags"])
        for key in _META_KEYS:
            meta[key].append(batch[key])
    return Crops(
        torch.cat(images), torch.cat(keypoints), torch.cat(flags), {k: torch.cat(v) for k, v in meta.items()}
    )


def prepare_data(
    root: Path, *, train_images: int = 6000, val_images: int = 600, calib_images: int = 300, workers: int = 2
) -> Data:
    """Generate (or reuse, when the same sizes were generated before) the three splits and crop them."""
    splits = {"train": (train_images, 1), "val": (val_images, 2), "calib": (calib_images, 3)}
    crops: dict[str, Crops] = {}
    stats: dict[str, dict[str, float]] = {}
    anns: dict[str, Path] = {}
    for split, (count, seed) in splits.items():
        folder = root / f"{split}_{count}_seed{seed}"
        ann = folder / f"person_keypoints_{split}.json"
        if not ann.exists():
            ann = make_synthetic_coco(folder, count, seed=seed, split_name=split, num_workers=workers)
        anns[split] = ann
        stats[split] = occlusion_statistics(ann)
        crops[split] = _crop_split(ann, folder / "images", workers)
    return Data(crops["train"], crops["val"], crops["calib"], anns["val"], stats)


def build_model(variant: Variant, seed: int) -> SimCCAdapter:
    """The demo network for ``variant``, initialised from ``seed``."""
    torch.manual_seed(seed)
    if not variant.reasoner:
        return SimCCAdapter(tiny_net(64), 64, 17, INPUT_SIZE, sigma=SIGMA, reasoner=None)
    reasoner = partial(
        VisibilityMaskedReasoner,
        embed_dim=256,
        depth=2,
        mask_source="mixed" if variant.teacher_forcing else variant.mask_source,
        visnet_evidence="features" if variant.features else "token",
        visnet_context=variant.context,
        visnet_grad_scale=variant.grad_scale,
        mask_mode=variant.mask_mode,
    )
    return SimCCAdapter(tiny_net(64), 64, 17, INPUT_SIZE, sigma=SIGMA, reasoner=reasoner)


def _vis_loss(variant: Variant) -> nn.Module:
    if variant.vis_loss == "focal":
        return VisibilityFocalLoss()
    return VisibilityBCELoss(balanced=variant.vis_loss == "balanced")


def train(
    model: SimCCAdapter, variant: Variant, data: Crops, budget: Budget, seed: int, *, log_every: int = 0
) -> float:
    """Adam + one-cycle for ``budget.steps`` steps; returns the wall time in seconds."""
    criterion = VisibilityAwareLoss(model.head, vis_weight=1.0, vis_loss=_vis_loss(variant))
    optimizer = torch.optim.Adam(model.parameters(), lr=budget.lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=budget.lr, total_steps=budget.steps)
    order_gen = torch.Generator().manual_seed(seed)  # the same data order for every variant
    per_epoch = len(data) // budget.batch_size
    order = torch.randperm(len(data), generator=order_gen)
    model.train()
    start = time.perf_counter()
    for step in range(budget.steps):
        if step % per_epoch == 0 and step:
            order = torch.randperm(len(data), generator=order_gen)
        rows = order[(step % per_epoch) * budget.batch_size : (step % per_epoch + 1) * budget.batch_size]
        images, keypoints, flags = data.images[rows], data.keypoints[rows], data.flags[rows]
        if variant.occlusion != "off":
            occluded = occlude_batch(
                images, keypoints, flags,
                generator=torch.Generator().manual_seed(seed * 1_000_003 + step),
                prob=1.0 if variant.occlusion == "labels" else 0.5,  # labels: every crop gets occluders
                label_mode="coverage" if variant.occlusion == "labels" else "update",
            )  # fmt: skip
            images, flags = occluded.images, occluded.flags
        if variant.teacher_forcing and model.reasoner is not None:
            model.reasoner.gt_prob = teacher_forcing_prob(step, budget.steps)
        targets = model.head.encode(keypoints, flags)
        losses = criterion(model(data.normalised(images), flags), targets, flags)
        optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        optimizer.step()
        schedule.step()
        if log_every and (step % log_every == 0 or step == budget.steps - 1):
            print(
                f"    step {step + 1:5d}/{budget.steps}  loss {losses.total.item():.4f}  "
                f"(pose {losses.pose.item():.4f}, vis {losses.vis.item():.4f})",
                flush=True,
            )
    return time.perf_counter() - start


@torch.no_grad()
def _predict(model: SimCCAdapter, data: Crops, gt_flags: bool) -> dict[str, torch.Tensor]:
    """Image-space keypoints, scores and VisNet logits of every crop (eval mode, no flip test)."""
    model.eval()
    keypoints, scores, vis_logits = [], [], []
    for chunk in torch.arange(len(data)).split(256):
        flags = data.flags[chunk] if gt_flags else None
        out = predict_crops(model, data.normalised(data.images[chunk]), flags=flags)
        crop_kp, crop_scores = out.keypoints, out.scores
        meta = {k: v[chunk] for k, v in data.meta.items()}
        keypoints.append(crop_to_image(crop_kp, meta["center"], meta["scale"], meta["rotation"], INPUT_SIZE))
        scores.append(crop_scores)
        if out.vis_logits is not None:
            vis_logits.append(out.vis_logits)
    result = {"keypoints": torch.cat(keypoints), "scores": torch.cat(scores)}
    if vis_logits:
        result["vis_logits"] = torch.cat(vis_logits)
    return result


def _pose_metrics(pred: dict[str, torch.Tensor], data: Crops, evaluator: PoseEvaluator) -> dict[str, float]:
    evaluator.reset()
    meta = data.meta
    evaluator.update(
        meta["image_id"], pred["keypoints"], pred["scores"], bbox_scores=meta["bbox_score"],
        areas=meta["area"], instance_ids=meta["ann_id"],
    )  # fmt: skip
    out = evaluator.compute()
    keys = ("AP", "AP50", "AP75", "AP_visible", "AP_occluded")
    return {k: float(out[k]) for k in keys}


def _vis_metrics(vis_logits: torch.Tensor, flags: torch.Tensor, threshold: float) -> dict[str, float]:
    """Visibility metrics over the labelled keypoints (v > 0) against the true flags."""
    labelled = flags > 0
    logits, truth = vis_logits[labelled][None], flags[labelled][None]  # (1, M)
    basic = visibility_metrics(logits, truth, threshold=threshold)
    ranking = visibility_ranking_metrics(logits, truth, threshold=threshold)
    return {
        "vis_accuracy": basic["accuracy"],
        "vis_threshold": threshold,
        **{f"vis_{k}": v for k, v in ranking.items()},
    }


def evaluate(
    model: SimCCAdapter, variant: Variant, data: Data, evaluator: PoseEvaluator
) -> dict[str, dict[str, float]]:
    """Metrics of a trained model: ``{variant.name: ...}`` and, with ``calibrate``, a calibrated row."""
    gt_flags = variant.reasoner and variant.mask_source == "ground_truth"
    pred = _predict(model, data.val, gt_flags)
    rows = {variant.name: _pose_metrics(pred, data.val, evaluator)}
    reasoner = model.reasoner
    if reasoner is None:
        return rows
    rows[variant.name].update(_vis_metrics(pred["vis_logits"], data.val.flags, reasoner.threshold))
    if variant.calibrate and variant.uses_prediction:
        calib = _predict(model, data.calib, gt_flags=False)
        labelled = data.calib.flags > 0
        threshold = reasoner.calibrate_threshold(
            calib["vis_logits"][labelled][None], data.calib.flags[labelled][None]
        )
        pred = _predict(model, data.val, gt_flags=False)
        name = f"{variant.name}+calibrated"
        rows[name] = _pose_metrics(pred, data.val, evaluator)
        rows[name].update(_vis_metrics(pred["vis_logits"], data.val.flags, threshold))
    return rows


def run_variant(
    variant: Variant, seed: int, data: Data, budget: Budget, *, log_every: int = 0
) -> tuple[SimCCAdapter, dict[str, dict[str, float]]]:
    """Build, train and evaluate one variant with one seed; every row gets ``train_seconds``."""
    evaluator = PoseEvaluator(data.val_ann, keypoint_info="coco")
    model = build_model(variant, seed)
    seconds = train(model, variant, data.train, budget, seed, log_every=log_every)
    rows = evaluate(model, variant, data, evaluator)
    for row in rows.values():
        row["train_seconds"] = seconds
        row["steps_per_s"] = budget.steps / seconds
    return model, rows


def variant_options(variant: Variant) -> str:
    """The variant's non-default settings, for tables."""
    default = Variant(variant.name)
    changed = [
        f"{f.name}={getattr(variant, f.name)}"
        for f in dataclasses.fields(Variant)
        if f.name != "name" and getattr(variant, f.name) != getattr(default, f.name)
    ]
    return ", ".join(changed) or "paper VisNet (token, BCE, 0.5)"


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std
