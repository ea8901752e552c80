"""Prediction: crops to keypoints through the model's head, with the flip test.

:func:`predict_crops` runs a model on a batch of crops, optionally averages it with the flipped-back
output of the mirrored crops (the flip test of SimpleBaseline / SimCC), and decodes through
``model.head`` (:class:`visattn.heads.PoseHead`), whatever the head kind. Evaluation
(:meth:`visattn.metrics.PoseEvaluator.update_from_batch`), export and the recipes use it.

Shape alphabet: B batch, K keypoints, H x W input crop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn

from visattn._checks import check_flag_tensor, check_tensor

if TYPE_CHECKING:
    from visattn.metrics import PoseEvaluator

__all__ = ["Prediction", "average_outputs", "evaluate", "predict_crops", "unwrap_model"]


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

    With ``flip_index`` (:attr:`visattn.keypoints.KeypointInfo.flip_index`) the model also runs on the
    mirrored crops; that output is brought back by ``head.flip_back`` and averaged with the first
    (coordinates, heatmaps and visibility logits alike) before decoding. The model's training flag is
    left as it is: call ``model.eval()`` first.

    Args:
        model: a :class:`~visattn.adapters.SimCCAdapter` / :class:`~visattn.adapters.HeatmapAdapter` (or
            one wrapped by DDP / ``torch.compile``), or any module whose unwrapped form has a ``head``
            implementing :class:`visattn.heads.PoseHead`.
        images: ``(B, 3, H, W)`` normalised crops.
        flags: optional ``(B, K)`` COCO flags 0/1/2, read only by a reasoner with a ground-truth mask
            source.
        flip_index: left/right permutation of the K keypoints for the flip test, or ``None`` for none.

    Returns:
        :class:`Prediction` with float32 keypoints in crop pixels.

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
        index = torch.as_tensor(list(flip_index) if not isinstance(flip_index, torch.Tensor) else flip_index)
        flipped_flags = None if flags is None else flags[:, index.to(flags.device)]
        mirrored = head.flip_back(model(images.flip(-1), flipped_flags), flip_index)
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
    """Predict every batch of a :class:`~visattn.data.TopDownCocoDataset` loader and compute the metrics.

    Puts the model in eval mode, resets ``evaluator``, runs :func:`predict_crops` (with the flip test when
    ``flip_index`` is given) on each batch, adds it with
    :meth:`~visattn.metrics.PoseEvaluator.update_from_batch` and returns ``evaluator.compute()``. Under
    ``torch.distributed`` each rank evaluates its shard and ``compute`` gathers the results.

    Args:
        model: the adapter (possibly wrapped by DDP / ``torch.compile``).
        loader: batches with ``image`` and the dataset's meta fields.
        evaluator: the :class:`~visattn.metrics.PoseEvaluator` of the split.
        flip_index: left/right permutation of the keypoints for the flip test, or ``None``.
        device: where the model runs (default: the device of its first parameter).
        amp_dtype: ``torch.bfloat16`` / ``torch.float16`` to run under autocast, or ``None``.
        progress: show a tqdm bar (tqdm must be installed).

    Returns:
        the metrics dict of :meth:`~visattn.metrics.PoseEvaluator.compute`.
    """
    if device is None:
        param = next(unwrap_model(model).parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    device = torch.device(device)
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
