"""SimCC codec: keypoints <-> 1-D Gaussian coordinate-classification labels.

SimCC (Li et al., ECCV 2022) predicts, per keypoint, one distribution over ``Wx`` horizontal bins and
one over ``Hy`` vertical bins. With split ratio ``r``, ``Wx = round(W * r)`` and ``Hy = round(H * r)``
for an ``H x W`` input crop.

Coordinate convention (shared by encode, decode and flip-back): crop pixel coordinates have pixel
centres at integers (``x = 0`` is the centre of the first column); bin ``i`` has its centre at bin
coordinate ``i``, and crop ``x`` maps to bin coordinate ``x * r``. Decoding divides the bin index by
``r``, so encode -> decode recovers a keypoint to within ``0.5 / r`` pixels.

Visibility flags are COCO flags at this boundary: ``v = 0`` not labelled, ``v = 1`` labelled but
occluded, ``v = 2`` labelled and visible (see
[`visattn.visibility.flags_to_visible`][visattn.visibility.flags_to_visible] for the bool ``visible`` used
inside the package). Both labelled kinds get weight 1 here.

Shape alphabet: B batch, K keypoints, Wx / Hy SimCC bins, H x W input crop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from visattn._checks import check_positive_float, check_size_pair, check_tensor
from visattn.codecs._gaussian import gaussian_1d, window_inside
from visattn.codecs._inputs import (
    batch_keypoints,
    check_trailing_size,
    flip_index_tensor,
    labelled_keypoints,
)

__all__ = [
    "SimCCCodec",
    "SimCCTargets",
    "simcc_decode",
    "simcc_encode",
    "simcc_flip_back",
    "simcc_num_bins",
]


def simcc_num_bins(input_size: tuple[int, int], split_ratio: float = 2.0) -> tuple[int, int]:
    """Number of SimCC bins ``(Wx, Hy)`` for an input crop of ``input_size = (H, W)``.

    Args:
        input_size: ``(H, W)`` input crop size in pixels.
        split_ratio: bins per pixel.

    Returns:
        ``(Wx, Hy) = (round(W * split_ratio), round(H * split_ratio))``.

    Example:
        >>> simcc_num_bins((256, 192), 2.0)
        (384, 512)
    """
    height, width = check_size_pair("input_size", input_size)
    ratio = check_positive_float("split_ratio", split_ratio)
    num_x, num_y = round(width * ratio), round(height * ratio)
    if num_x < 1 or num_y < 1:
        raise ValueError(
            f"input_size * split_ratio must give at least one bin per axis, got input_size "
            f"{(height, width)} and split_ratio {ratio} -> (Wx, Hy) = {(num_x, num_y)}"
        )
    return num_x, num_y


class SimCCTargets(NamedTuple):
    """Training targets produced by [`simcc_encode`][visattn.codecs.simcc_encode].

    Attributes:
        x_labels: ``(B, K, Wx)`` horizontal labels (all zero where the weight is 0).
        y_labels: ``(B, K, Hy)`` vertical labels (all zero where the weight is 0).
        weights: ``(B, K)`` keypoint weights, 1.0 or 0.0.
    """

    x_labels: torch.Tensor
    y_labels: torch.Tensor
    weights: torch.Tensor


# ---------------------------------------------------------------------------------------------------
# helpers shared with the heatmap codec (private)


def _sigma_pair(name: str, sigma: Any) -> tuple[float, float]:
    """``sigma`` as ``(sigma_x, sigma_y)``; a number means the same value for both axes."""
    if isinstance(sigma, (tuple, list)):
        if len(sigma) != 2:
            raise ValueError(f"{name} must be a number or a pair (sigma_x, sigma_y), got {sigma!r}")
        return check_positive_float(f"{name}[0]", sigma[0]), check_positive_float(f"{name}[1]", sigma[1])
    value = check_positive_float(name, sigma)
    return value, value


# ---------------------------------------------------------------------------------------------------
# functions


def simcc_encode(
    keypoints: torch.Tensor,
    flags: torch.Tensor,
    input_size: tuple[int, int] | Sequence[int],
    *,
    split_ratio: float = 2.0,
    sigma: float | tuple[float, float] = 6.0,
    normalize: bool = True,
) -> SimCCTargets:
    """Encode keypoints into SimCC 1-D Gaussian labels and keypoint weights.

    For keypoint ``k`` with bin centre ``mu = (x * r, y * r)`` (``r = split_ratio``) the labels are
    ``x_labels[..., i] = exp(-(i - mu_x)^2 / (2 sigma_x^2))`` over bins ``i = 0 .. Wx-1`` (same for
    y), divided by ``sigma * sqrt(2 pi)`` when ``normalize`` is set (the authors' targets). The
    Gaussian is sub-pixel (not rounded to a bin) and evaluated on every bin (not truncated).

    The weight is 1.0 iff the keypoint is labelled (``v`` in {1, 2}) **and** its 3-sigma windows
    overlap the crop on both axes, i.e. ``[mu_x - 3 sigma_x, mu_x + 3 sigma_x]`` intersects
    ``[0, Wx - 1]`` and ``[mu_y - 3 sigma_y, mu_y + 3 sigma_y]`` intersects ``[0, Hy - 1]``
    (touching the end counts as overlap). Otherwise the weight is 0.0 and both label rows are zero.
    This band differs slightly from MMPose's ``SimCCLabel`` (centre rounded to a bin, band
    ``-3 sigma - 1 <= round(mu) < Wx + 3 sigma``) and from the authors' code (which measures the
    3-sigma window of ``sigma`` bins in crop pixels, a band twice as wide at split ratio 2); the
    Differences page of the documentation compares the three rules.

    MMPose's ``SimCCLabel(smoothing_type="gaussian")`` rounds ``mu`` to the nearest bin; the labels
    here are the authors' sub-pixel ones and equal MMPose's only where ``x * r`` is a whole bin.

    Args:
        keypoints: ``(B, K, 2)`` or ``(K, 2)`` ``(x, y)`` in input-crop pixels (floating). Unlabelled
            keypoints may hold any value, NaN included.
        flags: ``(B, K)`` or ``(K,)`` COCO visibility flags 0/1/2 (``v = 0`` not labelled, ``v = 1``
            occluded, ``v = 2`` visible); bool tensors are rejected because they cannot tell
            ``v = 0`` from ``v = 1``.
        input_size: crop size ``(H, W)``.
        split_ratio: bins per pixel ``r`` (> 0).
        sigma: Gaussian standard deviation in bins, one number or ``(sigma_x, sigma_y)``.
        normalize: divide by ``sigma * sqrt(2 pi)`` (peak ``1 / (sigma sqrt(2 pi))``) instead of a
            peak of 1.

    Returns:
        [`SimCCTargets`][visattn.codecs.SimCCTargets]
        ``(x_labels (B, K, Wx), y_labels (B, K, Hy), weights (B, K))`` in float32 (float64 for float64
        keypoints); unbatched input gives unbatched output.

    Raises:
        TypeError: non-tensor or non-floating keypoints, bool flags, bad hyper-parameter types.
        ValueError: wrong ranks, mismatched K, flags outside {0, 1, 2}, non-finite labelled keypoints,
            non-positive sizes, split ratio or sigma.

    Example:
        >>> kp = torch.tensor([[[10.0, 20.0], [0.0, 0.0]]])
        >>> t = simcc_encode(kp, torch.tensor([[2, 0]]), (64, 48))
        >>> t.x_labels.shape, t.y_labels.shape, t.weights.tolist()
        (torch.Size([1, 2, 96]), torch.Size([1, 2, 128]), [[1.0, 0.0]])
        >>> int(t.x_labels[0, 0].argmax()), int(t.y_labels[0, 0].argmax())
        (20, 40)
    """
    num_bins = simcc_num_bins(check_size_pair("input_size", input_size), split_ratio)
    ratio = check_positive_float("split_ratio", split_ratio)
    sigma_x, sigma_y = _sigma_pair("sigma", sigma)
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")
    return _simcc_encode(keypoints, flags, num_bins, ratio, (sigma_x, sigma_y), normalize)


def _simcc_encode(
    keypoints: torch.Tensor,
    flags: torch.Tensor,
    num_bins: tuple[int, int],
    ratio: float,
    sigma: tuple[float, float],
    normalize: bool,
) -> SimCCTargets:
    """[`simcc_encode`][visattn.codecs.simcc_encode] with validated hyper-parameters
    (``num_bins = (Wx, Hy)``)."""
    kp, fl, unbatched = batch_keypoints(keypoints, flags)
    (num_x, num_y), (sigma_x, sigma_y) = num_bins, sigma
    labelled, mu = labelled_keypoints(kp, fl)
    mu = mu * ratio  # (B, K, 2)
    mu_x, mu_y = mu.unbind(-1)  # (B, K) each
    keep = labelled & window_inside(mu_x, num_x, sigma_x) & window_inside(mu_y, num_y, sigma_y)  # (B, K)
    weights = keep.to(mu.dtype)
    x_labels = gaussian_1d(mu_x, num_x, sigma_x, normalize=normalize, weights=weights)  # (B, K, Wx)
    y_labels = gaussian_1d(mu_y, num_y, sigma_y, normalize=normalize, weights=weights)  # (B, K, Hy)
    if unbatched:
        return SimCCTargets(x_labels[0], y_labels[0], weights[0])
    return SimCCTargets(x_labels, y_labels, weights)


def _check_logit_pair(x_logits: Any, y_logits: Any) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Validate ``(B, K, Wx)``/``(B, K, Hy)`` (or unbatched) logits and return them batched."""
    if not isinstance(x_logits, torch.Tensor):
        raise TypeError(f"x_logits must be a torch.Tensor (B, K, Wx), got {type(x_logits).__name__}")
    if x_logits.dim() == 2:
        x = check_tensor("x_logits", x_logits, "K Wx", floating=True).unsqueeze(0)
        y = check_tensor("y_logits", y_logits, "K Hy", floating=True, K=x.shape[1]).unsqueeze(0)
        unbatched = True
    elif x_logits.dim() == 3:
        x = check_tensor("x_logits", x_logits, "B K Wx", floating=True)
        y = check_tensor("y_logits", y_logits, "B K Hy", floating=True, B=x.shape[0], K=x.shape[1])
        unbatched = False
    else:
        raise ValueError(f"x_logits must be (B, K, Wx) or (K, Wx), got {tuple(x_logits.shape)}")
    if x.shape[-1] == 0 or y.shape[-1] == 0:
        raise ValueError(f"x_logits and y_logits need at least one bin, got {x.shape[-1]} and {y.shape[-1]}")
    return x, y, unbatched


def simcc_decode(
    x_logits: torch.Tensor, y_logits: torch.Tensor, split_ratio: float = 2.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode SimCC logits to keypoints (argmax / split ratio) and normalised scores.

    The score of a keypoint is ``min(max softmax(x_logits), max softmax(y_logits))``, a probability in
    (0, 1]: unlike raw maximum logits it can be thresholded the same way for every model. Computed in
    float32 (``exp(max - logsumexp)``), so bf16/fp16 logits are fine. Ties in argmax pick the first
    bin.

    Locations are MMPose's ``get_simcc_maximum`` (argmax / split ratio) and scores its
    ``apply_softmax=True`` values. MMPose's default scores are the raw ``min(max x, max y)`` logits,
    and it marks a keypoint whose raw score is ``<= 0`` with the location ``-1``. On logits that
    threshold means nothing (adding a constant to every logit crosses it without changing the
    distribution) and a probability is never ``<= 0``, so the argmax is always returned here.

    Args:
        x_logits: ``(B, K, Wx)`` or ``(K, Wx)`` horizontal logits.
        y_logits: ``(B, K, Hy)`` or ``(K, Hy)`` vertical logits.
        split_ratio: bins per pixel used by the encoder.

    Returns:
        ``keypoints (B, K, 2)`` crop pixels (float32) and ``scores (B, K)`` (float32); unbatched input
        gives ``(K, 2)`` and ``(K,)``.

    Example:
        >>> x = torch.full((1, 1, 8), -10.0); x[0, 0, 5] = 10.0
        >>> y = torch.full((1, 1, 6), -10.0); y[0, 0, 2] = 10.0
        >>> kp, score = simcc_decode(x, y, 2.0)
        >>> kp.tolist(), bool(0.99 < score.item() <= 1.0)
        ([[[2.5, 1.0]]], True)
    """
    ratio = check_positive_float("split_ratio", split_ratio)
    x, y, unbatched = _check_logit_pair(x_logits, y_logits)
    xf, yf = x.float(), y.float()
    max_x, arg_x = xf.max(dim=-1)  # (B, K)
    max_y, arg_y = yf.max(dim=-1)  # (B, K)
    prob_x = torch.exp(max_x - torch.logsumexp(xf, dim=-1))
    prob_y = torch.exp(max_y - torch.logsumexp(yf, dim=-1))
    scores = torch.minimum(prob_x, prob_y)  # (B, K)
    keypoints = torch.stack((arg_x, arg_y), dim=-1).float() / ratio  # (B, K, 2)
    if unbatched:
        return keypoints[0], scores[0]
    return keypoints, scores


def simcc_flip_back(
    x_logits: torch.Tensor,
    y_logits: torch.Tensor,
    flip_index: Sequence[int] | torch.Tensor,
    *,
    shift: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bring logits predicted on a horizontally flipped crop back to the original crop.

    Flips the x bins (bin ``i`` <- bin ``Wx - 1 - i``) and permutes keypoints by ``flip_index``
    (``out[:, k] = in[:, flip_index[k]]``, e.g.
    [`visattn.keypoints.KeypointInfo.flip_index`][visattn.keypoints.KeypointInfo.flip_index]); y logits are
    only permuted.

    ``shift=False`` is MMPose's ``flip_vectors`` (its SimCC flip test has no shift). ``shift=True``
    reproduces the authors' flip test: the flipped-back x logits move **one bin toward bin 0**
    (``out[..., i] = out[..., i + 1]`` for ``i < Wx - 1``; the last bin keeps its value). The image
    flip maps crop ``x`` to ``W - 1 - x``, i.e. bin coordinate ``x r`` to ``Wx - r - x r``, and
    reversing the bins puts it back at ``x r + (r - 1)``: with ``r = 2`` that is exactly one bin too
    far right.

    Without shift the operation is an involution (for an involutive ``flip_index`` such as every left/
    right swap). With shift, applying it twice (second time without shift) gives the input moved one
    bin toward larger x: ``out[..., 1:] == in[..., :-1]`` and ``out[..., 0] == in[..., 0]``.

    Args:
        x_logits: ``(B, K, Wx)`` or ``(K, Wx)`` logits of the flipped crop.
        y_logits: ``(B, K, Hy)`` or ``(K, Hy)`` logits of the flipped crop.
        flip_index: permutation of ``range(K)`` (sequence of ints or 1-D integer tensor).
        shift: apply the one-bin shift described above.

    Returns:
        ``(x_logits, y_logits)`` in the original crop's frame, same shapes and dtypes.

    Example:
        >>> x = torch.arange(8.0).reshape(2, 4)
        >>> fx, fy = simcc_flip_back(x, torch.zeros(2, 3), [1, 0], shift=False)
        >>> fx.tolist()
        [[7.0, 6.0, 5.0, 4.0], [3.0, 2.0, 1.0, 0.0]]
        >>> simcc_flip_back(x, torch.zeros(2, 3), [1, 0])[0].tolist()
        [[6.0, 5.0, 4.0, 4.0], [2.0, 1.0, 0.0, 0.0]]
    """
    if not isinstance(shift, bool):
        raise TypeError(f"shift must be a bool, got {type(shift).__name__}")
    x, y, unbatched = _check_logit_pair(x_logits, y_logits)
    index = flip_index_tensor(flip_index, x.shape[1], x.device)
    out_x = x.flip(-1).index_select(1, index)  # (B, K, Wx)
    out_y = y.index_select(1, index)  # (B, K, Hy)
    if shift and out_x.shape[-1] > 1:
        out_x = torch.cat((out_x[..., 1:], out_x[..., -1:]), dim=-1)  # (B, K, Wx)
    if unbatched:
        return out_x[0], out_y[0]
    return out_x, out_y


# ---------------------------------------------------------------------------------------------------
# module-like holder


class SimCCCodec:
    """SimCC encoder/decoder holding the hyper-parameters; calls the functions of this module.

    Args:
        input_size: crop size ``(H, W)`` in pixels.
        split_ratio: bins per pixel; ``Wx = round(W * split_ratio)``, ``Hy = round(H * split_ratio)``.
        sigma: label standard deviation in bins, a number or ``(sigma_x, sigma_y)`` (6 for the
            ResNet-50 recipe, 4 for HRNet).
        normalize: divide labels by ``sigma * sqrt(2 pi)`` as the authors do.

    Attributes:
        input_size: ``(H, W)``.
        split_ratio: float.
        sigma: ``(sigma_x, sigma_y)``.
        normalize: bool.
        num_x_bins: ``Wx``.
        num_y_bins: ``Hy``.

    Example:
        >>> codec = SimCCCodec((256, 192))
        >>> codec.num_x_bins, codec.num_y_bins
        (384, 512)
        >>> t = codec.encode(torch.tensor([[96.0, 128.0]]), torch.tensor([2]))
        >>> kp, score = codec.decode(t.x_labels, t.y_labels)
        >>> kp.tolist()
        [[96.0, 128.0]]
    """

    def __init__(
        self,
        input_size: tuple[int, int] | Sequence[int] = (256, 192),
        *,
        split_ratio: float = 2.0,
        sigma: float | tuple[float, float] = 6.0,
        normalize: bool = True,
    ) -> None:
        self.input_size = check_size_pair("input_size", input_size)
        self.split_ratio = check_positive_float("split_ratio", split_ratio)
        self.sigma = _sigma_pair("sigma", sigma)
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")
        self.normalize = normalize
        self.num_x_bins, self.num_y_bins = simcc_num_bins(self.input_size, self.split_ratio)

    def __repr__(self) -> str:
        return (
            f"SimCCCodec(input_size={self.input_size}, split_ratio={self.split_ratio}, "
            f"sigma={self.sigma}, normalize={self.normalize})"
        )

    def encode(self, keypoints: torch.Tensor, flags: torch.Tensor) -> SimCCTargets:
        """Encode crop-px ``keypoints (B, K, 2)`` + COCO ``flags (B, K)``; see
        [`simcc_encode`][visattn.codecs.simcc_encode].

        Example:
            >>> SimCCCodec((4, 3)).encode(torch.zeros(1, 2), torch.tensor([1])).x_labels.shape
            torch.Size([1, 6])
        """
        bins = (self.num_x_bins, self.num_y_bins)
        return _simcc_encode(keypoints, flags, bins, self.split_ratio, self.sigma, self.normalize)

    def _check_bins(self, x_logits: torch.Tensor, y_logits: torch.Tensor) -> None:
        check_trailing_size("x_logits", x_logits, (self.num_x_bins,), "(B, K, Wx)", "Wx")
        check_trailing_size("y_logits", y_logits, (self.num_y_bins,), "(B, K, Hy)", "Hy")

    def decode(self, x_logits: torch.Tensor, y_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode ``(B, K, Wx)``/``(B, K, Hy)`` logits (or unbatched); see
        [`simcc_decode`][visattn.codecs.simcc_decode].

        Example:
            >>> codec = SimCCCodec((4, 3))
            >>> kp, score = codec.decode(torch.zeros(2, 6), torch.zeros(2, 8))
            >>> kp.shape, score.shape
            (torch.Size([2, 2]), torch.Size([2]))
        """
        self._check_bins(x_logits, y_logits)
        return simcc_decode(x_logits, y_logits, self.split_ratio)

    def flip_back(
        self,
        x_logits: torch.Tensor,
        y_logits: torch.Tensor,
        flip_index: Sequence[int] | torch.Tensor,
        *,
        shift: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Flip-test helper checking the bin counts; see [`simcc_flip_back`][visattn.codecs.simcc_flip_back].

        Example:
            >>> fx, fy = SimCCCodec((4, 3)).flip_back(torch.zeros(2, 6), torch.zeros(2, 8), [1, 0])
            >>> fx.shape
            torch.Size([2, 6])
        """
        self._check_bins(x_logits, y_logits)
        return simcc_flip_back(x_logits, y_logits, flip_index, shift=shift)
