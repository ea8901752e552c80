"""Training losses: SimCC KL, heatmap MSE, visibility BCE, and their visibility-aware combination.

Every loss is a plain function plus an ``nn.Module`` that stores the hyper-parameters and calls it.
All of them compute in float32 whatever the input dtype (so they are safe under bf16/fp16 autocast),
are vectorised over batch and keypoints, and return a zero **that still has a graph**
(``pred.sum() * 0``) for an empty batch (``B = 0``) or a batch without labelled keypoints.

Visibility flags are COCO flags at this boundary: ``v = 0`` not labelled, ``v = 1`` labelled but
occluded, ``v = 2`` labelled and visible; a keypoint is *visible* iff ``v == 2`` and ``v = 0`` counts
as occluded (converted by [`visattn.visibility.flags_to_visible`][visattn.visibility.flags_to_visible]).
Losses check shapes and dtypes only; they never read tensor values to validate them (no device
synchronisation): flag values are checked where they enter (datasets, codecs, metrics).

Shape alphabet: B batch, K keypoints, Wx / Hy SimCC bins, Hf x Wf heatmap.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from visattn._checks import (
    check_choice,
    check_flag_tensor,
    check_positive_float,
    check_probability,
    check_tensor,
)
from visattn.visibility import flags_to_visible

__all__ = [
    "HeatmapMSELoss",
    "LossOutput",
    "SimCCKLLoss",
    "VisibilityAwareLoss",
    "VisibilityBCELoss",
    "VisibilityCELoss",
    "VisibilityFocalLoss",
    "heatmap_mse_loss",
    "simcc_kl_loss",
    "visibility_bce_loss",
    "visibility_ce_loss",
    "visibility_focal_loss",
]


class LossOutput(NamedTuple):
    """Scalars returned by [`VisibilityAwareLoss`][visattn.losses.VisibilityAwareLoss].

    Attributes:
        total: ``pose + vis_weight * vis``; call ``backward()`` on this.
        pose: the pose term.
        vis: the (unweighted) visibility term; a zero with a graph when no visibility logits are given.
    """

    total: torch.Tensor
    pose: torch.Tensor
    vis: torch.Tensor


def _weights(weights: Any, batch: int, num_keypoints: int) -> torch.Tensor:
    """Validate keypoint weights ``(B, K)`` and return them as float32."""
    w = check_tensor("weights", weights, "B K", B=batch, K=num_keypoints)
    if w.is_complex():
        raise TypeError(f"weights must be a real tensor (B, K), got dtype {w.dtype}")
    return w.float()


def _zero_like_graph(*tensors: torch.Tensor) -> torch.Tensor:
    """A float32 scalar zero connected to the graph of every tensor that requires grad."""
    zero = torch.zeros((), dtype=torch.float32, device=tensors[0].device)
    for t in tensors:
        if t.requires_grad:
            zero = zero + t.float().sum() * 0.0
    return zero


def _axis_kl(
    logits: torch.Tensor, labels: torch.Tensor, beta: float = 1.0, label_beta: float | None = None
) -> torch.Tensor:
    """Per-row KL(t || softmax(beta * logits)) averaged over bins, ``(B, K, n) -> (B, K)``, float32.

    ``t`` is the labels, or ``softmax(label_beta * labels)`` when ``label_beta`` is given.
    ``F.kl_div`` defines ``0 log 0 = 0``.
    """
    p = logits.float()
    if beta != 1.0:
        p = p * beta
    t = labels.float()
    if label_beta is not None:
        t = torch.softmax(t * label_beta, dim=-1)
    row = F.kl_div(torch.log_softmax(p, dim=-1), t, reduction="none").sum(dim=-1)  # (B, K)
    return row / p.shape[-1]


def _check_kl_settings(beta: Any, label_softmax: Any, label_beta: Any) -> tuple[float, float | None]:
    """Validated ``(beta, label_beta)`` of the SimCC KL loss; ``label_beta`` is None without label softmax."""
    beta = check_positive_float("beta", beta)
    if not isinstance(label_softmax, bool):
        raise TypeError(f"label_softmax must be a bool, got {type(label_softmax).__name__} {label_softmax!r}")
    if label_beta is not None:
        label_beta = check_positive_float("label_beta", label_beta)
    if not label_softmax:
        if label_beta is not None:
            raise ValueError("label_beta is only used with label_softmax=True")
        return beta, None
    return beta, beta if label_beta is None else label_beta


def simcc_kl_loss(
    x_logits: torch.Tensor,
    y_logits: torch.Tensor,
    x_labels: torch.Tensor,
    y_labels: torch.Tensor,
    weights: torch.Tensor,
    *,
    beta: float = 1.0,
    label_softmax: bool = False,
    label_beta: float | None = None,
) -> torch.Tensor:
    """SimCC KL loss exactly as the authors define it (their ``KLDiscretLoss``), vectorised.

    Per keypoint and axis: ``KL(t || softmax(p)) = sum_i t_i (log t_i - log_softmax(p)_i)`` with
    ``0 log 0 = 0``, divided by the number of bins; multiplied by the keypoint weight; averaged over
    the batch; the x and y terms are summed; the result is averaged over keypoints. Equivalently
    ``mean_{b,k} w_bk (KL_x / Wx + KL_y / Hy)``. Weight-0 keypoints count in the average (they add
    zero). Computed in float32.

    RTMPose's settings (MMPose ``KLDiscretLoss(beta=10., label_softmax=True)``): the logits are
    multiplied by ``beta`` before the log-softmax, and with ``label_softmax`` the targets become
    ``softmax(label_beta * t)`` over the bins (``label_beta`` defaults to ``beta``, as in MMPose
    before 1.3; MMPose 1.3 and later default it to 10 whatever ``beta`` is, which is the same for
    RTMPose's ``beta=10``). The defaults (``beta=1``, no label softmax) are the authors' loss.

    Reduction relative to MMPose: MMPose sums over batch and keypoints and divides by ``K`` only,
    so with the same settings ``MMPose = B * simcc_kl_loss`` (``B`` the batch size).

    Args:
        x_logits: ``(B, K, Wx)`` predicted horizontal logits.
        y_logits: ``(B, K, Hy)`` predicted vertical logits.
        x_labels: ``(B, K, Wx)`` target labels (see
            [`visattn.codecs.simcc_encode`][visattn.codecs.simcc_encode]).
        y_labels: ``(B, K, Hy)`` target labels.
        weights: ``(B, K)`` keypoint weights.
        beta: temperature multiplying the logits (> 0; RTMPose: 10).
        label_softmax: replace the targets by ``softmax(label_beta * labels)`` (RTMPose: True).
        label_beta: temperature of the label softmax (> 0), None for ``beta``; only with
            ``label_softmax=True``.

    Returns:
        float32 scalar; a zero with a graph when ``B = 0`` or ``K = 0``.

    Example:
        >>> x = torch.zeros(2, 3, 8, requires_grad=True)
        >>> t = torch.full((2, 3, 8), 1 / 8)
        >>> loss = simcc_kl_loss(x, torch.zeros(2, 3, 4), t, torch.full((2, 3, 4), 0.25), torch.ones(2, 3))
        >>> abs(loss.item()) < 1e-6
        True
        >>> rtm = simcc_kl_loss(x, torch.zeros(2, 3, 4), t, torch.full((2, 3, 4), 0.25), torch.ones(2, 3),
        ...                     beta=10.0, label_softmax=True)
        >>> abs(rtm.item()) < 1e-6  # softmax of constant labels is uniform, like the zero logits
        True
    """
    beta, label_beta = _check_kl_settings(beta, label_softmax, label_beta)
    x = check_tensor("x_logits", x_logits, "B K Wx", floating=True)
    b, k, wx = x.shape
    y = check_tensor("y_logits", y_logits, "B K Hy", floating=True, B=b, K=k)
    tx = check_tensor("x_labels", x_labels, "B K Wx", floating=True, B=b, K=k, Wx=wx)
    ty = check_tensor("y_labels", y_labels, "B K Hy", floating=True, B=b, K=k, Hy=y.shape[-1])
    w = _weights(weights, b, k)
    if b * k == 0 or wx == 0 or y.shape[-1] == 0:
        return _zero_like_graph(x, y, tx, ty)
    per_keypoint = _axis_kl(x, tx, beta, label_beta) + _axis_kl(y, ty, beta, label_beta)  # (B, K)
    return (per_keypoint * w).mean()


def heatmap_mse_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Heatmap MSE loss as SimpleBaseline's ``JointsMSELoss(use_target_weight=True)``, vectorised.

    ``0.5 * mean_{b,k} mean_{pixels} (w_bk * (pred - target))^2``. As in SimpleBaseline the weight
    multiplies the difference, so it enters squared; for the usual 0/1 weights that is the same as
    weighting the squared error. Weight-0 keypoints count in the average (they add zero). Computed in
    float32.

    Args:
        pred: ``(B, K, Hf, Wf)`` predicted heatmaps.
        target: ``(B, K, Hf, Wf)`` target heatmaps (see
            [`visattn.codecs.heatmap_encode`][visattn.codecs.heatmap_encode]).
        weights: ``(B, K)`` keypoint weights.

    Returns:
        float32 scalar; a zero with a graph when ``B = 0`` or ``K = 0``.

    Example:
        >>> pred = torch.ones(1, 2, 4, 4, requires_grad=True)
        >>> heatmap_mse_loss(pred, torch.zeros(1, 2, 4, 4), torch.tensor([[1.0, 0.0]])).item()
        0.25
    """
    p = check_tensor("pred", pred, "B K Hf Wf", floating=True)
    b, k, hf, wf = p.shape
    t = check_tensor("target", target, "B K Hf Wf", floating=True, B=b, K=k, Hf=hf, Wf=wf)
    w = _weights(weights, b, k)
    if p.numel() == 0:
        return _zero_like_graph(p, t)
    per_keypoint = F.mse_loss(p.float(), t.float(), reduction="none").mean(dim=(-2, -1))  # (B, K)
    return 0.5 * (per_keypoint * w.square()).mean()


def _visibility_inputs(vis_logits: torch.Tensor, flags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked float32 ``(B, K)`` logits and visibility targets (1 iff ``v == 2``) of a visibility loss.

    Shapes and dtypes only: the flag values were checked where they entered (dataset, codec).
    """
    logits = check_tensor("vis_logits", vis_logits, "B K", floating=True)
    check_flag_tensor("flags", flags, "B K", B=logits.shape[0], K=logits.shape[1])
    return logits.float(), flags_to_visible(flags).float()


def _check_focal(gamma: Any, alpha: Any) -> None:
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0 <= gamma < float("inf"):
        raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}")
    if alpha is not None:
        check_probability("alpha", alpha)


def _class_balance_weights(target: torch.Tensor) -> torch.Tensor:
    """``(B, K)`` weights giving each class (visible, occluded) half of the total, summing to 1.

    Tensor operations only (no host synchronisation); a class absent from the batch gets no weight and
    the other one all of it.
    """
    n_vis = target.sum()
    n_occ = target.numel() - n_vis
    weights = torch.where(target > 0.5, 0.5 / n_vis.clamp_min(1.0), 0.5 / n_occ.clamp_min(1.0))  # (B, K)
    return weights / weights.sum()


def visibility_bce_loss(
    vis_logits: torch.Tensor, flags: torch.Tensor, *, balanced: bool = False
) -> torch.Tensor:
    """Per-keypoint visibility BCE-with-logits, target 1 iff ``v == 2``, mean over ``B * K``.

    ``v = 0`` (not labelled) and ``v = 1`` (occluded) are both targets 0, as in the paper. Computed in
    float32. With ``balanced=True`` the visible and the occluded keypoints of the batch each carry half
    of the loss (class-balanced BCE: occluded keypoints are the minority).

    Args:
        vis_logits: ``(B, K)`` VisNet logits.
        flags: ``(B, K)`` COCO flags 0/1/2 (``v = 0`` not labelled, ``v = 1`` occluded, ``v = 2``
            visible).
        balanced: weight the two classes equally instead of every keypoint equally.

    Returns:
        float32 scalar; a zero with a graph when ``B = 0``.

    Example:
        >>> logits = torch.zeros(1, 3, requires_grad=True)
        >>> round(visibility_bce_loss(logits, torch.tensor([[0, 1, 2]])).item(), 4)
        0.6931
        >>> confident = torch.tensor([[4.0, 4.0, 4.0]])  # "visible" everywhere; the last one is occluded
        >>> round(visibility_bce_loss(confident, torch.tensor([[2, 2, 1]]), balanced=True).item(), 4)
        2.0181
    """
    logits, target = _visibility_inputs(vis_logits, flags)  # (B, K) float32 each
    if logits.numel() == 0:
        return _zero_like_graph(logits)
    if not balanced:
        return F.binary_cross_entropy_with_logits(logits, target)
    per_keypoint = F.binary_cross_entropy_with_logits(logits, target, reduction="none")  # (B, K)
    return (per_keypoint * _class_balance_weights(target)).sum()


def visibility_focal_loss(
    vis_logits: torch.Tensor, flags: torch.Tensor, *, gamma: float = 2.0, alpha: float | None = 0.25
) -> torch.Tensor:
    """Focal visibility loss (Lin et al., 2017), target 1 iff ``v == 2``, mean over ``B * K``.

    ``loss = a_t * (1 - p_t) ** gamma * BCE`` where ``p_t`` is the probability of the true class and
    ``a_t = alpha`` for visible, ``1 - alpha`` for occluded keypoints (torchvision's
    ``sigmoid_focal_loss`` convention; the default 0.25 gives the occluded minority three times the
    weight of the visible ones). Computed in float32.

    Args:
        vis_logits: ``(B, K)`` VisNet logits.
        flags: ``(B, K)`` COCO flags 0/1/2 (visible iff ``v == 2``).
        gamma: focusing exponent ``>= 0`` (0 with ``alpha=None`` is the plain BCE).
        alpha: weight of the visible class in [0, 1], or ``None`` for no class weighting.

    Returns:
        float32 scalar; a zero with a graph when ``B = 0``.

    Example:
        >>> logits, flags = torch.zeros(1, 2), torch.tensor([[2, 1]])
        >>> round(visibility_focal_loss(logits, flags, gamma=0.0, alpha=None).item(), 4)  # = BCE
        0.6931
    """
    _check_focal(gamma, alpha)
    logits, target = _visibility_inputs(vis_logits, flags)  # (B, K) float32 each
    if logits.numel() == 0:
        return _zero_like_graph(logits)
    x = logits
    bce = F.binary_cross_entropy_with_logits(x, target, reduction="none")  # (B, K)
    p = torch.sigmoid(x)
    p_t = p * target + (1 - p) * (1 - target)
    loss = bce * (1 - p_t) ** gamma
    if alpha is not None:
        loss = loss * (alpha * target + (1 - alpha) * (1 - target))
    return loss.mean()


def visibility_ce_loss(vis_logits: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """The authors' visibility loss, for reproducing their code (not the paper's BCE).

    Their training script applies ``CrossEntropyLoss`` across the K keypoints of each instance to the
    **sigmoid probabilities** of VisNet, with the 0/1 visibility (1 iff ``v == 2``) as a soft target:
    ``mean_b -sum_k t_bk log_softmax_k(sigmoid(logits))_bk``. It is not a per-keypoint binary loss
    and it never reaches 0; use [`visibility_bce_loss`][visattn.losses.visibility_bce_loss] for new work.
    Computed in float32.

    Args:
        vis_logits: ``(B, K)`` VisNet logits (before the sigmoid).
        flags: ``(B, K)`` COCO flags 0/1/2 (``v = 0`` not labelled, ``v = 1`` occluded, ``v = 2``
            visible).

    Returns:
        float32 scalar; a zero with a graph when ``B = 0``.

    Example:
        >>> logits = torch.zeros(1, 2, requires_grad=True)
        >>> round(visibility_ce_loss(logits, torch.tensor([[2, 2]])).item(), 4)
        1.3863
    """
    logits, target = _visibility_inputs(vis_logits, flags)  # (B, K) float32 each
    if logits.numel() == 0:
        return _zero_like_graph(logits)
    return F.cross_entropy(torch.sigmoid(logits), target)


class SimCCKLLoss(nn.Module):
    """Module form of [`simcc_kl_loss`][visattn.losses.simcc_kl_loss] with the shared pose-loss signature.

    Args:
        beta: temperature multiplying the logits (RTMPose: 10).
        label_softmax: use ``softmax(label_beta * labels)`` as targets (RTMPose: True).
        label_beta: temperature of the label softmax, None for ``beta``.

    Example:
        >>> loss = SimCCKLLoss()
        >>> pred = (torch.zeros(2, 3, 8), torch.zeros(2, 3, 4))
        >>> target = (torch.full((2, 3, 8), 1 / 8), torch.full((2, 3, 4), 0.25))
        >>> abs(loss(pred, target, torch.ones(2, 3)).item()) < 1e-6
        True
        >>> SimCCKLLoss(beta=10.0, label_softmax=True)  # RTMPose's settings
        SimCCKLLoss(beta=10.0, label_softmax=True, label_beta=10.0)
    """

    def __init__(self, *, beta: float = 1.0, label_softmax: bool = False, label_beta: float | None = None):
        super().__init__()
        self.beta, checked = _check_kl_settings(beta, label_softmax, label_beta)
        self.label_softmax = label_softmax
        self.label_beta = checked

    def extra_repr(self) -> str:
        if not self.label_softmax and self.beta == 1.0:
            return ""
        return f"beta={self.beta}, label_softmax={self.label_softmax}, label_beta={self.label_beta}"

    def forward(
        self,
        pred: tuple[torch.Tensor, torch.Tensor],
        target: tuple[torch.Tensor, torch.Tensor],
        weights: torch.Tensor,
    ) -> torch.Tensor:
        """``pred = (x_logits (B, K, Wx), y_logits (B, K, Hy))``, ``target = (x_labels, y_labels)``,
        ``weights (B, K)`` -> float32 scalar."""
        for name, value in (("pred", pred), ("target", target)):
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise TypeError(
                    f"{name} must be a pair (x, y) of tensors for SimCC, got {type(value).__name__}"
                )
        return simcc_kl_loss(
            pred[0],
            pred[1],
            target[0],
            target[1],
            weights,
            beta=self.beta,
            label_softmax=self.label_softmax,
            label_beta=self.label_beta if self.label_softmax else None,
        )


class HeatmapMSELoss(nn.Module):
    """Module form of [`heatmap_mse_loss`][visattn.losses.heatmap_mse_loss] with the shared pose-loss
    signature.

    Example:
        >>> HeatmapMSELoss()(torch.ones(1, 2, 4, 4), torch.zeros(1, 2, 4, 4), torch.ones(1, 2)).item()
        0.5
    """

    def forward(self, pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``pred``, ``target`` ``(B, K, Hf, Wf)``, ``weights (B, K)`` -> float32 scalar."""
        return heatmap_mse_loss(pred, target, weights)


class VisibilityBCELoss(nn.Module):
    """Module form of [`visibility_bce_loss`][visattn.losses.visibility_bce_loss].

    Args:
        balanced: class-balanced BCE (each class carries half of the loss).

    Example:
        >>> round(VisibilityBCELoss()(torch.zeros(1, 2), torch.tensor([[2, 1]])).item(), 4)
        0.6931
    """

    def __init__(self, *, balanced: bool = False) -> None:
        super().__init__()
        if not isinstance(balanced, bool):
            raise TypeError(f"balanced must be a bool, got {type(balanced).__name__} {balanced!r}")
        self.balanced = balanced

    def forward(self, vis_logits: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
        """``vis_logits (B, K)``, COCO ``flags (B, K)`` -> float32 scalar."""
        return visibility_bce_loss(vis_logits, flags, balanced=self.balanced)

    def extra_repr(self) -> str:
        return f"balanced={self.balanced}"


class VisibilityFocalLoss(nn.Module):
    """Module form of [`visibility_focal_loss`][visattn.losses.visibility_focal_loss].

    Args:
        gamma: focusing exponent ``>= 0``.
        alpha: weight of the visible class in [0, 1], or ``None``.

    Example:
        >>> loss = VisibilityFocalLoss()
        >>> loss(torch.zeros(1, 2), torch.tensor([[2, 1]])).item() < 0.6931 / 4
        True
    """

    def __init__(self, gamma: float = 2.0, alpha: float | None = 0.25) -> None:
        super().__init__()
        _check_focal(gamma, alpha)
        self.gamma = float(gamma)
        self.alpha = alpha

    def forward(self, vis_logits: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
        """``vis_logits (B, K)``, COCO ``flags (B, K)`` -> float32 scalar."""
        return visibility_focal_loss(vis_logits, flags, gamma=self.gamma, alpha=self.alpha)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}"


class VisibilityCELoss(nn.Module):
    """Module form of [`visibility_ce_loss`][visattn.losses.visibility_ce_loss] (the authors' visibility loss,
    for reproduction).

    Example:
        >>> round(VisibilityCELoss()(torch.zeros(1, 2), torch.tensor([[2, 2]])).item(), 4)
        1.3863
    """

    def forward(self, vis_logits: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
        """``vis_logits (B, K)``, COCO ``flags (B, K)`` -> float32 scalar."""
        return visibility_ce_loss(vis_logits, flags)


class VisibilityAwareLoss(nn.Module):
    """``L = L_pose + vis_weight * L_vis``, optionally training the pose only on visible keypoints.

    The pose term comes from the model's head ([`visattn.heads.PoseHead`][visattn.heads.PoseHead]: SimCC KL
    for a [`SimCCHead`][visattn.heads.SimCCHead], heatmap MSE for a
    [`HeatmapHead`][visattn.heads.HeatmapHead]), which takes the model output and the targets NamedTuple as
    they come.

    Args:
        head: the model's head (``model.head``), or any object with
            ``loss(output, targets, weights=None)``.
        vis_weight: lambda >= 0 (1 in the paper).
        pose_keypoints: ``"all"`` uses the targets' weights; ``"visible"`` also zeroes the pose weight of
            every keypoint with ``v != 2`` (the paper's Table 1 "visible-only" training).
        vis_loss: visibility loss module ``(vis_logits, flags) -> scalar``; default
            [`VisibilityBCELoss`][visattn.losses.VisibilityBCELoss] (pass
            [`VisibilityCELoss`][visattn.losses.VisibilityCELoss] to reproduce the authors' code).

    Example:
        >>> from visattn.heads import HeatmapHead, HeatmapOutput
        >>> head = HeatmapHead((4, 4))
        >>> crit = VisibilityAwareLoss(head, pose_keypoints="visible")
        >>> targets = head.encode(torch.tensor([[[4.0, 4.0], [8.0, 8.0]]]), torch.tensor([[2, 1]]))
        >>> out = HeatmapOutput(torch.zeros(1, 2, 4, 4, requires_grad=True), torch.zeros(1, 2), None)
        >>> losses = crit(out, targets, torch.tensor([[2, 1]]))
        >>> round(losses.vis.item(), 4)
        0.6931
        >>> losses.total.backward()
    """

    def __init__(
        self,
        head: Any,
        vis_weight: float = 1.0,
        pose_keypoints: str = "all",
        *,
        vis_loss: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if not callable(getattr(head, "loss", None)):
            raise TypeError(
                "head must be the model's head (e.g. model.head: SimCCHead or HeatmapHead) with a "
                f"loss(output, targets, weights) method, got {type(head).__name__}"
            )
        if isinstance(vis_weight, bool) or not isinstance(vis_weight, (int, float)):
            raise TypeError(
                f"vis_weight must be a number >= 0, got {type(vis_weight).__name__} {vis_weight!r}"
            )
        if not vis_weight >= 0 or vis_weight == float("inf"):
            raise ValueError(f"vis_weight must be a finite number >= 0, got {vis_weight}")
        if vis_loss is not None and not isinstance(vis_loss, nn.Module):
            raise TypeError(f"vis_loss must be an nn.Module or None, got {type(vis_loss).__name__}")
        self.head = head
        self.vis_loss = vis_loss if vis_loss is not None else VisibilityBCELoss()
        self.vis_weight = float(vis_weight)
        self.pose_keypoints = check_choice("pose_keypoints", pose_keypoints, ("all", "visible"))

    def extra_repr(self) -> str:
        return f"vis_weight={self.vis_weight}, pose_keypoints={self.pose_keypoints!r}"

    def forward(self, output: Any, targets: Any, flags: torch.Tensor) -> LossOutput:
        """Compute the combined loss.

        Args:
            output: the model output ([`SimCCOutput`][visattn.heads.SimCCOutput] or
                [`HeatmapOutput`][visattn.heads.HeatmapOutput]), with ``vis_logits (B, K)`` or ``None`` (then
                the visibility term is a zero connected to the pose graph).
            targets: the targets NamedTuple of the head's ``encode`` (``batch["targets"]``), with
                ``weights (B, K)``.
            flags: ``(B, K)`` COCO flags 0/1/2 (``v = 0`` not labelled, ``v = 1`` occluded, ``v = 2``
                visible).

        Returns:
            [`LossOutput`][visattn.losses.LossOutput] ``(total, pose, vis)`` of float32 scalars.
        """
        if not isinstance(output, tuple) or not hasattr(output, "vis_logits"):
            raise TypeError(
                "output must be the model's output NamedTuple (SimCCOutput, HeatmapOutput), got "
                f"{type(output).__name__}"
            )
        first = output[0] if output else None  # every head's (B, K, ...)
        sizes = first.shape[:2] if isinstance(first, torch.Tensor) and first.dim() >= 2 else (None, None)
        w = check_tensor("targets.weights", getattr(targets, "weights", None), "B K", B=sizes[0], K=sizes[1])
        check_flag_tensor("flags", flags, "B K", B=w.shape[0], K=w.shape[1])
        weights = None
        if self.pose_keypoints == "visible":
            weights = w.float() * flags_to_visible(flags).float()
        pose = self.head.loss(output, targets, weights)
        vis_logits = output.vis_logits
        vis = pose * 0.0 if vis_logits is None else self.vis_loss(vis_logits, flags)
        total = pose + self.vis_weight * vis
        return LossOutput(total, pose, vis)
