"""The visibility convention and the mask rule.

visattn speaks COCO flags at its boundary and bools inside: ``v = 0`` not labelled, ``v = 1`` labelled
but occluded, ``v = 2`` labelled and visible. A keypoint is *visible* iff ``v == 2``; ``v = 0`` counts
as occluded for visibility (the paper's footnote 1). [`flags_to_visible`][visattn.visibility.flags_to_visible]
is the one conversion.
"""

from __future__ import annotations

import torch

from visattn._checks import (
    check_nonnegative_int,
    check_positive_int,
    check_probability,
    check_tensor,
)

__all__ = [
    "MASK_SOURCES",
    "flags_to_visible",
    "predicted_visible",
    "select_visible",
    "soft_visibility_mask",
    "teacher_forcing_prob",
    "visibility_mask",
]

#: Where the visibility used for masking comes from (see
#: [`select_visible`][visattn.visibility.select_visible]).
MASK_SOURCES = ("predicted", "ground_truth", "none", "mixed")


def flags_to_visible(flags: torch.Tensor, *, name: str = "flags") -> torch.Tensor:
    """Turn COCO flags or a bool tensor into a bool ``visible`` tensor of the same shape.

    Only the dtype is checked, never the values (reading them would synchronise the device in every
    forward pass): flag values are checked where they enter the package (datasets, codecs, metrics).
    Callers check the shape.

    Args:
        flags: ``(B, K)`` (any shape) COCO flags in {0, 1, 2} of any integer or float dtype, or a
            bool tensor that already says visible (True) / occluded (False).
        name: argument name used in error messages.

    Returns:
        bool tensor, True iff the flag is 2 (or the input is True).

    Example:
        >>> flags_to_visible(torch.tensor([[0, 1, 2]])).tolist()
        [[False, False, True]]
    """
    if not isinstance(flags, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of COCO flags 0/1/2 or bools, got {type(flags).__name__}"
        )
    if flags.is_complex():
        raise TypeError(f"{name} must hold COCO flags 0/1/2 or bools, got dtype {flags.dtype}")
    if flags.dtype == torch.bool:
        return flags
    return flags == 2


def predicted_visible(vis_logits: torch.Tensor, threshold: float | torch.Tensor = 0.5) -> torch.Tensor:
    """Predicted visibility: ``sigmoid(logit) >= threshold``, computed in float32.

    The comparison is done on float32 logits so that autocast never flips a decision compared with
    a float32 run.

    Args:
        vis_logits: ``(B, K)`` VisNet logits.
        threshold: probability threshold in (0, 1): a float (checked), or a scalar tensor such as the
            calibrated ``vis_threshold`` buffer of
            [`VisibilityMaskedReasoner`][visattn.reasoner.VisibilityMaskedReasoner] (not read on the host, so
            no device synchronisation).

    Returns:
        ``(B, K)`` bool tensor.

    Example:
        >>> predicted_visible(torch.tensor([[-1.0, 0.0, 2.0]])).tolist()
        [[False, True, True]]
        >>> predicted_visible(torch.tensor([[-1.0, 0.0, 2.0]]), torch.tensor(0.2)).tolist()
        [[True, True, True]]
    """
    check_tensor("vis_logits", vis_logits, "B K", floating=True)
    if isinstance(threshold, torch.Tensor):
        check_tensor("threshold", threshold, "", floating=True)
    else:
        check_probability("threshold", threshold, low_open=True, high_open=True)
    return torch.sigmoid(vis_logits.float()) >= threshold


def select_visible(
    source: str,
    predicted: torch.Tensor,
    ground_truth: torch.Tensor | None,
    *,
    training: bool,
    gt_prob: float = 0.5,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The visibility policy: which keypoints count as visible for masking, per mask source.

    * ``"predicted"``: the prediction (the paper);
    * ``"ground_truth"``: the ground truth (required), in training and evaluation;
    * ``"none"``: every keypoint visible (no masking);
    * ``"mixed"``: in training each **sample** independently takes its ground truth with probability
      ``gt_prob`` and the prediction otherwise (scheduled teacher forcing lowers ``gt_prob`` over
      training); in evaluation, the prediction.

    Args:
        source: one of `MASK_SOURCES`.
        predicted: ``(B, K)`` bool predicted visibility.
        ground_truth: ``(B, K)`` bool ground-truth visibility, or ``None`` where the source needs none.
        training: training mode (only ``"mixed"`` depends on it).
        gt_prob: per-sample probability of the ground truth for ``"mixed"``, in [0, 1].
        generator: optional random generator for the per-sample draw.

    Returns:
        ``(visible (B, K) bool, from_gt (B, 1) bool)``: the visibility used, and which samples took it from
        the ground truth.

    Raises:
        ValueError: the source needs ``ground_truth`` and got ``None``.

    Example:
        >>> pred = torch.tensor([[True, True], [True, True]])
        >>> gt = torch.tensor([[True, False], [False, False]])
        >>> select_visible("ground_truth", pred, gt, training=False)[0].tolist()
        [[True, False], [False, False]]
        >>> select_visible("mixed", pred, gt, training=True, gt_prob=1.0)[1].tolist()
        [[True], [True]]
    """
    batch = predicted.shape[0]
    never = torch.zeros(batch, 1, dtype=torch.bool, device=predicted.device)
    if source == "none":
        return torch.ones_like(predicted), never
    if source == "predicted" or (source == "mixed" and not training):
        return predicted, never
    if ground_truth is None:
        when = " in training" if source == "mixed" else ""
        raise ValueError(
            f"visible (B, K) COCO flags or bools are required when mask_source={source!r}{when}, got None"
        )
    if source == "ground_truth":
        return ground_truth, ~never
    if source != "mixed":
        raise ValueError(f"source must be one of {MASK_SOURCES}, got {source!r}")
    draw = torch.rand(batch, 1, device=predicted.device, generator=generator)  # (B, 1)
    from_gt = draw < gt_prob
    return torch.where(from_gt, ground_truth, predicted), from_gt


def soft_visibility_mask(
    vis_prob: torch.Tensor, occluded_scale: float = 0.01, *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The soft feature mask ``occluded_scale + (1 - occluded_scale) * p(visible)``.

    An alternative to the hard [`visibility_mask`][visattn.visibility.visibility_mask]: a keypoint VisNet is
    unsure about is scaled half-way instead of all or nothing, and no threshold is needed.

    Args:
        vis_prob: ``(B, K)`` visibility probabilities in [0, 1] (``sigmoid(vis_logits)``).
        occluded_scale: the mask value at ``p = 0``, in (0, 1].
        dtype: dtype of the returned mask.

    Returns:
        ``(B, K)`` mask in ``[occluded_scale, 1]``.

    Example:
        >>> soft_visibility_mask(torch.tensor([[1.0, 0.5, 0.0]]), 0.2).tolist()
        [[1.0, 0.6000000238418579, 0.20000000298023224]]
    """
    check_tensor("vis_prob", vis_prob, "B K", floating=True)
    check_probability("occluded_scale", occluded_scale, low_open=True)
    return (occluded_scale + (1.0 - occluded_scale) * vis_prob.float()).to(dtype)


def visibility_mask(
    visible: torch.Tensor, occluded_scale: float = 0.01, *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The feature mask: 1.0 for visible keypoints, ``occluded_scale`` for occluded ones.

    Args:
        visible: ``(B, K)`` bool tensor (see [`flags_to_visible`][visattn.visibility.flags_to_visible]).
        occluded_scale: factor applied to occluded keypoint features, in (0, 1].
        dtype: dtype of the returned mask.

    Returns:
        ``(B, K)`` mask.

    Example:
        >>> visibility_mask(torch.tensor([[True, False]])).tolist()
        [[1.0, 0.009999999776482582]]
    """
    check_tensor("visible", visible, "B K")
    if visible.dtype != torch.bool:
        raise TypeError(f"visible must be a bool tensor (B, K), got dtype {visible.dtype}")
    check_probability("occluded_scale", occluded_scale, low_open=True)
    one = torch.ones((), dtype=dtype, device=visible.device)
    return torch.where(visible, one, one * occluded_scale)


def teacher_forcing_prob(step: int, total_steps: int, *, start: float = 1.0, until: float = 0.75) -> float:
    """Scheduled teacher forcing: the ground-truth probability of ``mask_source="mixed"`` at a step.

    Falls linearly from ``start`` at step 0 to 0 at ``until * total_steps`` and stays 0 after, so the
    reasoner first learns with ground-truth masks and ends on the predicted masks it will see in
    evaluation. Set it each step: ``reasoner.gt_prob = teacher_forcing_prob(step, total_steps)``.

    Args:
        step: current step, ``0 <= step``.
        total_steps: steps of the run, ``>= 1``.
        start: probability at step 0, in [0, 1].
        until: fraction of the run after which only predicted masks are used, in (0, 1].

    Returns:
        the probability in [0, start].

    Example:
        >>> [round(teacher_forcing_prob(s, 100), 3) for s in (0, 30, 75, 90)]
        [1.0, 0.6, 0.0, 0.0]
    """
    check_nonnegative_int("step", step)
    check_positive_int("total_steps", total_steps)
    check_probability("start", start)
    check_probability("until", until, low_open=True)
    end_step = until * total_steps
    return start * max(0.0, 1.0 - step / end_step)
