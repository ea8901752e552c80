"""Prediction: images and person boxes to poses; crops to keypoints through the model's head.

[`TopDownPredictor`][visattn.inference.TopDownPredictor] takes an image and person boxes and returns every
person's keypoints in image pixels, keypoint scores and visibility probabilities.
[`predict_crops`][visattn.inference.predict_crops] runs a model on a batch of crops, optionally averages it
with the flipped-back output of the mirrored crops (the flip test of SimpleBaseline / SimCC), and decodes
through ``model.head`` ([`visattn.heads.PoseHead`][visattn.heads.PoseHead]), whatever the head kind.
Evaluation
([`visattn.metrics.PoseEvaluator.update_from_batch`][visattn.metrics.PoseEvaluator.update_from_batch]) and the
recipes use it.

Shape alphabet: B batch, K keypoints, H x W input crop.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch import nn

from visattn._checks import check_choice, check_flag_tensor, check_positive_int, check_tensor
from visattn.codecs._inputs import flip_index_tensor
from visattn.data._warp import crop_matrix
from visattn.data.dataset import decode_image, normalize_images
from visattn.data.transforms import box_to_center_scale, crop_to_image
from visattn.keypoints import KeypointInfo, get_keypoint_info

if TYPE_CHECKING:
    from visattn.metrics import PoseEvaluator

__all__ = [
    "BOX_FORMATS",
    "PersonPose",
    "Prediction",
    "TopDownPredictor",
    "average_outputs",
    "evaluate",
    "predict_crops",
    "read_rgb",
    "unwrap_model",
]


class Prediction(NamedTuple):
    """Decoded predictions of a batch of crops.

    Attributes:
        keypoints: ``(B, K, 2)`` float32 keypoints in crop pixels.
        scores: ``(B, K)`` float32 keypoint confidences (the head's decode scores).
        vis_logits: ``(B, K)`` float32 visibility logits, ``None`` without a reasoner.
    """

    keypoints: torch.Tensor
    scores: torch.Tensor
    vis_logits: torch.Tensor | None

    @property
    def vis_probs(self) -> torch.Tensor | None:
        """``(B, K)`` visibility probabilities ``sigmoid(vis_logits)``, ``None`` without a reasoner."""
        return None if self.vis_logits is None else torch.sigmoid(self.vis_logits)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The adapter inside ``DistributedDataParallel`` / ``torch.compile`` wrappers.

    Example:
        >>> net = nn.Linear(2, 2)
        >>> unwrap_model(torch.nn.DataParallel(net)) is net
        True
    """
    model = getattr(model, "module", model)
    inner: nn.Module = getattr(model, "_orig_mod", model)
    return inner


def _model_device(model: nn.Module) -> torch.device:
    """Where the model's first parameter is (CPU for a model without parameters)."""
    param = next(unwrap_model(model).parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def average_outputs(first: Any, second: Any) -> Any:
    """Field-wise mean of two model outputs of the same NamedTuple type (``None`` fields stay ``None``).

    Tensors are averaged in float32.

    Example:
        >>> from visattn.heads import HeatmapOutput
        >>> a = HeatmapOutput(torch.zeros(1, 1, 2, 2), None, None)
        >>> b = HeatmapOutput(torch.ones(1, 1, 2, 2), None, None)
        >>> average_outputs(a, b).heatmaps.mean().item()
        0.5
    """
    if type(first) is not type(second):
        raise TypeError(
            f"outputs must be of one type, got {type(first).__name__} and {type(second).__name__}"
        )
    fields = [None if a is None else (a.float() + b.float()) / 2 for a, b in zip(first, second, strict=True)]
    return type(first)(*fields)


@torch.no_grad()
def predict_crops(
    model: nn.Module,
    images: torch.Tensor,
    *,
    flags: torch.Tensor | None = None,
    flip_index: Sequence[int] | torch.Tensor | None = None,
) -> Prediction:
    """Predict keypoints on crops: forward, optional flip test, decode through ``model.head``.

    With ``flip_index``
    ([`visattn.keypoints.KeypointInfo.flip_index`][visattn.keypoints.KeypointInfo.flip_index]) the model also
    runs on the mirrored crops; that output is brought back by ``head.flip_back`` and averaged with the first
    (coordinates, heatmaps and visibility logits alike) before decoding. The model's training flag is left as
    it is: call ``model.eval()`` first.

    Args:
        model: a [`SimCCAdapter`][visattn.adapters.SimCCAdapter] /
            [`HeatmapAdapter`][visattn.adapters.HeatmapAdapter] (or one wrapped by DDP / ``torch.compile``),
            or any module whose unwrapped form has a ``head`` implementing
            [`visattn.heads.PoseHead`][visattn.heads.PoseHead].
        images: ``(B, 3, H, W)`` normalised crops.
        flags: optional ``(B, K)`` COCO flags 0/1/2, read only by a reasoner with a ground-truth mask
            source.
        flip_index: left/right permutation of the K keypoints for the flip test, or ``None`` for none.

    Returns:
        [`Prediction`][visattn.inference.Prediction] with float32 keypoints in crop pixels.

    Example:
        >>> from functools import partial
        >>> from visattn import SimCCAdapter, VisibilityMaskedReasoner, get_keypoint_info
        >>> backbone = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        >>> model = SimCCAdapter(backbone, 8, 17, (32, 24),
        ...                      reasoner=partial(VisibilityMaskedReasoner, embed_dim=16, depth=1)).eval()
        >>> flip_index = get_keypoint_info("coco").flip_index
        >>> pred = predict_crops(model, torch.zeros(2, 3, 32, 24), flip_index=flip_index)
        >>> tuple(pred.keypoints.shape), tuple(pred.vis_probs.shape)
        ((2, 17, 2), (2, 17))
    """
    head = getattr(unwrap_model(model), "head", None)
    if head is None or not callable(getattr(head, "decode", None)):
        raise TypeError(
            f"model must have a head with decode/flip_back (a visattn adapter), got {type(model).__name__}"
        )
    check_tensor("images", images, "B C H W", floating=True, C=3)
    if flags is not None:
        check_flag_tensor("flags", flags, "B K", B=images.shape[0])
    out = model(images, flags)
    if flip_index is not None:
        index = flip_index_tensor(flip_index, out[0].shape[1], images.device)  # every head's (B, K, ...)
        flipped_flags = None if flags is None else flags[:, index.to(flags.device)]
        mirrored = head.flip_back(model(images.flip(-1), flipped_flags), index)
        out = average_outputs(out, mirrored)
    keypoints, scores = head.decode(out)
    vis = out.vis_logits
    return Prediction(keypoints.float(), scores.float(), None if vis is None else vis.float())


def evaluate(
    model: nn.Module,
    loader: Iterable[Mapping[str, Any]],
    evaluator: PoseEvaluator,
    *,
    flip_index: Sequence[int] | torch.Tensor | None = None,
    device: torch.device | str | None = None,
    amp_dtype: torch.dtype | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Predict every batch of a [`TopDownCocoDataset`][visattn.data.TopDownCocoDataset] loader and compute the
    metrics.

    Puts the model in eval mode, resets ``evaluator``, runs [`predict_crops`][visattn.inference.predict_crops]
    (with the flip test when ``flip_index`` is given) on each batch, adds it with
    [`update_from_batch`][visattn.metrics.PoseEvaluator.update_from_batch] and returns
    ``evaluator.compute()``. Under ``torch.distributed`` each rank evaluates its shard and ``compute`` gathers
    the results.

    Args:
        model: the adapter (possibly wrapped by DDP / ``torch.compile``).
        loader: batches with ``image`` and the dataset's meta fields.
        evaluator: the [`PoseEvaluator`][visattn.metrics.PoseEvaluator] of the split.
        flip_index: left/right permutation of the keypoints for the flip test, or ``None``.
        device: where the model runs (default: the device of its first parameter).
        amp_dtype: ``torch.bfloat16`` / ``torch.float16`` to run under autocast, or ``None``.
        progress: show a tqdm bar (tqdm must be installed).

    Returns:
        the metrics dict of [`compute`][visattn.metrics.PoseEvaluator.compute].
    """
    device = _model_device(model) if device is None else torch.device(device)
    head: Any = unwrap_model(model).head
    input_size: tuple[int, int] = head.input_size
    model.eval()
    evaluator.reset()
    batches: Iterable[Mapping[str, Any]] = loader
    if progress:
        from tqdm import tqdm

        batches = tqdm(loader, desc="eval", leave=False, dynamic_ncols=True)
    for batch in batches:
        images = batch["image"].to(device, non_blocking=True)
        flags = batch["flags"].to(device)
        autocast: Any = (
            contextlib.nullcontext() if amp_dtype is None else torch.autocast(device.type, dtype=amp_dtype)
        )
        with autocast:
            prediction = predict_crops(model, images, flags=flags, flip_index=flip_index)
        evaluator.update_from_batch(batch, prediction, input_size)
    return evaluator.compute()


class PersonPose(NamedTuple):
    """The pose of one person, in image pixels.

    Attributes:
        keypoints: ``(K, 2)`` float32 ``(x, y)`` image pixels.
        scores: ``(K,)`` float32 keypoint confidences.
        vis_probs: ``(K,)`` float32 visibility probabilities, ``None`` without a reasoner.
        box: ``(4,)`` float32 person box ``(x1, y1, x2, y2)`` the crop was made from.
        box_score: the box's detection score (1.0 when none was given).
    """

    keypoints: torch.Tensor
    scores: torch.Tensor
    vis_probs: torch.Tensor | None
    box: torch.Tensor
    box_score: float


BOX_FORMATS = ("xyxy", "xywh")


class TopDownPredictor:
    """Keypoints and visibility for the people in an image, given their boxes (top-down).

    Each box becomes a crop of the model's ``input_size`` exactly as
    [`TopDownCocoDataset`][visattn.data.TopDownCocoDataset] makes its evaluation crops (aspect ratio fixed to
    the crop's, padded by 1.25, one affine warp), the crops of all boxes (and images) run through
    [`predict_crops`][visattn.inference.predict_crops] in batches of ``batch_size`` (with the flip test by
    default), and the keypoints are mapped back to image pixels. No gradient is recorded; the model is put in
    eval mode.

    Args:
        model: a [`SimCCAdapter`][visattn.adapters.SimCCAdapter] /
            [`HeatmapAdapter`][visattn.adapters.HeatmapAdapter].
        keypoint_info: the model's keypoint set (name or [`KeypointInfo`][visattn.keypoints.KeypointInfo]):
            flip test.
        flip_test: average with the flipped-back prediction of the mirrored crop.
        device: where the model runs (default: where its parameters are).
        batch_size: crops per forward pass.

    Example:
        >>> from visattn.models import create_model
        >>> predictor = TopDownPredictor(create_model("tiny", input_size=(64, 48)))
        >>> image = np.zeros((120, 160, 3), dtype=np.uint8)  # RGB, H x W x 3
        >>> people = predictor(image, [[20, 10, 80, 110], [90, 30, 150, 115]])  # xyxy boxes
        >>> len(people), tuple(people[0].keypoints.shape), tuple(people[0].vis_probs.shape)
        (2, (17, 2), (17,))
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        keypoint_info: str | KeypointInfo = "coco",
        flip_test: bool = True,
        device: torch.device | str | None = None,
        batch_size: int = 64,
    ) -> None:
        head = getattr(unwrap_model(model), "head", None)
        if head is None or not callable(getattr(head, "decode", None)):
            raise TypeError(f"model must be a visattn adapter (with a head), got {type(model).__name__}")
        self.keypoint_info = get_keypoint_info(keypoint_info)
        k = getattr(unwrap_model(model), "num_keypoints", self.keypoint_info.num_keypoints)
        if k != self.keypoint_info.num_keypoints:
            raise ValueError(
                f"keypoint_info {self.keypoint_info.name!r} has K={self.keypoint_info.num_keypoints} but the "
                f"model predicts K={k}"
            )
        if not isinstance(flip_test, bool):
            raise TypeError(f"flip_test must be a bool, got {type(flip_test).__name__}")
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.device = _model_device(model) if device is None else torch.device(device)
        self.model = model.to(self.device).eval()
        self.input_size: tuple[int, int] = tuple(head.input_size)  # type: ignore[assignment]
        self.flip_test = flip_test

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike[str], *, keypoint_info: str | KeypointInfo | None = None, **kwargs: Any
    ) -> TopDownPredictor:
        """A predictor for a checkpoint of ``examples/train.py`` (``model`` weights + ``model_config``, the
        arguments of [`visattn.models.create_model`][visattn.models.create_model]), read with
        ``weights_only=True``.

        ``keypoint_info`` defaults to the checkpoint's ``--keypoints`` (else COCO); other keyword arguments
        go to the constructor.
        """
        from visattn.models import load_model

        state, model = load_model(os.fspath(path))
        saved = state.get("args", {}).get("keypoints") if isinstance(state.get("args"), dict) else None
        return cls(model, keypoint_info=keypoint_info or saved or "coco", **kwargs)

    def __call__(
        self,
        image: str | os.PathLike[str] | np.ndarray | torch.Tensor,
        boxes: Any,
        *,
        box_format: str = "xyxy",
        box_scores: Sequence[float] | torch.Tensor | None = None,
    ) -> list[PersonPose]:
        """Poses of the people in ``boxes`` of one image.

        Args:
            image: a file path (read with OpenCV), an ``(H, W, 3)`` RGB uint8 array, or a ``(3, H, W)``
                RGB uint8 tensor.
            boxes: ``(N, 4)`` person boxes (sequence, array or tensor), ``xyxy`` or ``xywh`` image pixels.
            box_format: ``"xyxy" | "xywh"``.
            box_scores: ``(N,)`` detection scores (default 1).

        Returns:
            one [`PersonPose`][visattn.inference.PersonPose] per box, in the order of ``boxes``.
        """
        return self.predict_many([image], [boxes], box_format=box_format, box_scores=[box_scores])[0]

    def predict_many(
        self,
        images: Sequence[str | os.PathLike[str] | np.ndarray | torch.Tensor],
        boxes: Sequence[Any],
        *,
        box_format: str = "xyxy",
        box_scores: Sequence[Sequence[float] | torch.Tensor | None] | None = None,
    ) -> list[list[PersonPose]]:
        """`__call__` for several images, batched over all their persons."""
        check_choice("box_format", box_format, BOX_FORMATS)
        if len(images) != len(boxes):
            raise ValueError(f"boxes must hold one entry per image ({len(images)}), got {len(boxes)}")
        scores_per_image = box_scores if box_scores is not None else [None] * len(images)
        crops, meta, owners = [], [], []
        for i, (source, image_boxes, scores) in enumerate(zip(images, boxes, scores_per_image)):
            rgb = read_rgb(source, name=f"images[{i}]")
            xywh = _boxes_xywh(image_boxes, box_format, f"boxes[{i}]")
            score = _box_scores(scores, len(xywh), f"box_scores[{i}]")
            for j in range(len(xywh)):
                crop, center, scale = _crop(rgb, xywh[j], self.input_size)
                crops.append(crop)
                meta.append((center, scale, xywh[j], float(score[j])))
                owners.append(i)
        results: list[list[PersonPose]] = [[] for _ in images]
        flip = self.keypoint_info.flip_index if self.flip_test else None
        for start in range(0, len(crops), self.batch_size):
            chunk = torch.stack(crops[start : start + self.batch_size]).to(self.device)  # (B, 3, H, W) uint8
            pred = predict_crops(self.model, normalize_images(chunk), flip_index=flip)
            center = torch.stack([torch.as_tensor(m[0]) for m in meta[start : start + len(chunk)]]).float()
            scale = torch.stack([torch.as_tensor(m[1]) for m in meta[start : start + len(chunk)]]).float()
            rotation = torch.zeros(len(chunk))
            keypoints = crop_to_image(pred.keypoints.cpu(), center, scale, rotation, self.input_size)
            probs = pred.vis_probs
            for b in range(len(chunk)):
                _, _, (x, y, w, h), box_score = meta[start + b]
                results[owners[start + b]].append(
                    PersonPose(
                        keypoints[b], pred.scores[b].cpu(), None if probs is None else probs[b].cpu(),
                        torch.tensor([x, y, x + w, y + h], dtype=torch.float32), box_score,
                    )
                )  # fmt: skip
        return results


def read_rgb(
    source: str | os.PathLike[str] | np.ndarray | torch.Tensor, *, name: str = "image"
) -> np.ndarray:
    """An image as an ``(H, W, 3)`` RGB uint8 array: decoded from a file as
    [`TopDownCocoDataset`][visattn.data.TopDownCocoDataset] decodes it (stored pixel orientation, EXIF
    ignored; a missing, truncated or undecodable file is an
    [`ImageReadError`][visattn.data.ImageReadError]), or checked and converted.

    Example:
        >>> read_rgb(torch.zeros(3, 4, 5, dtype=torch.uint8)).shape
        (4, 5, 3)
    """
    if isinstance(source, (str, os.PathLike)):  # the dataset's decoder: same pixels as its crops
        return np.ascontiguousarray(decode_image(os.fspath(source))[:, :, ::-1])
    if isinstance(source, torch.Tensor):
        if source.dim() != 3 or source.shape[0] != 3 or source.dtype != torch.uint8:
            raise ValueError(
                f"{name} must be a (3, H, W) uint8 RGB tensor, got {source.dtype} {tuple(source.shape)}"
            )
        return np.ascontiguousarray(source.permute(1, 2, 0).cpu().numpy())
    if isinstance(source, np.ndarray):
        if source.ndim != 3 or source.shape[2] != 3 or source.dtype != np.uint8:
            raise ValueError(
                f"{name} must be an (H, W, 3) uint8 RGB array, got {source.dtype} {source.shape}"
            )
        return np.ascontiguousarray(source)
    raise TypeError(f"{name} must be a path, an (H, W, 3) uint8 array or a (3, H, W) uint8 tensor")


def _boxes_xywh(boxes: Any, box_format: str, name: str) -> np.ndarray:
    try:
        array = np.asarray(boxes.cpu() if isinstance(boxes, torch.Tensor) else boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be (N, 4) numbers, got {type(boxes).__name__} {boxes!r:.60}") from None
    if array.size == 0:
        return np.zeros((0, 4))
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 4 or not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite (N, 4) {box_format} boxes, got shape {array.shape}")
    if box_format == "xyxy":
        array = np.concatenate([array[:, :2], array[:, 2:] - array[:, :2]], axis=1)
    if (array[:, 2:] <= 0).any():
        raise ValueError(f"{name} must have a positive width and height, got {array.tolist()}")
    return array


def _box_scores(scores: Any, n: int, name: str) -> np.ndarray:
    if scores is None:
        return np.ones(n)
    try:
        array = np.asarray(scores.cpu() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be (N,) numbers, got {type(scores).__name__} {scores!r:.60}") from None
    array = array.reshape(-1)
    if array.shape != (n,):
        raise ValueError(f"{name} must hold one score per box ({n}), got {array.shape}")
    return array


def _crop(rgb: np.ndarray, xywh: np.ndarray, input_size: tuple[int, int]) -> tuple[torch.Tensor, Any, Any]:
    """The ``(3, H, W)`` uint8 crop of one box, as the dataset's evaluation crop, and its centre / scale."""
    from visattn.data._deps import require_cv2

    cv2 = require_cv2()
    height, width = input_size
    center, scale = box_to_center_scale(torch.from_numpy(xywh[None]), width / height)
    center_np, scale_np = center[0].numpy(), scale[0].numpy()
    matrix = crop_matrix(center_np, float(scale_np[0]), 0.0, input_size)
    crop = cv2.warpAffine(
        rgb, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    return torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))), center_np, scale_np
