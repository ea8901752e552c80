"""Heatmap codec: keypoints <-> 2-D Gaussian heatmaps (SimpleBaseline / HRNet style).

Coordinate convention (shared by encode, decode and flip-back): crop pixel coordinates have pixel
centres at integers, and heatmap cell ``(i, j)`` (row, column) stands for the crop point
``(x, y) = (j * W / Wf, i * H / Hf)``; a keypoint at crop ``(x, y)`` is encoded at heatmap coordinate
``(x * Wf / W, y * Hf / H)``. This is the SimpleBaseline convention (stride ``s = W / Wf``, cell ``j``
at ``x = j s``), not the area-aligned ``(x + 0.5) / s - 0.5``; pretrained heatmap models and the
flip-test shift assume it.

Visibility flags are COCO flags at this boundary: ``v = 0`` not labelled, ``v = 1`` labelled but
occluded, ``v = 2`` labelled and visible (see :func:`visattn.visibility.flags_to_visible`).

Shape alphabet: B batch, K keypoints, Hf x Wf heatmap, H x W input crop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from visattn._checks import check_positive_float, check_size_pair, check_tensor
from visattn.codecs._common import (
    _batch_keypoints,
    _flip_index_tensor,
    _gaussian_1d,
    _labelled_mu,
    _window_inside,
    check_trailing_size,
)

__all__ = [
    "HeatmapCodec",
    "HeatmapTargets",
    "heatmap_decode",
    "heatmap_encode",
    "heatmap_flip_back",
]


class HeatmapTargets(NamedTuple):
    """Training targets produced by :func:`heatmap_encode`.

    Attributes:
        heatmaps: ``(B, K, Hf, Wf)`` Gaussian heatmaps with peak value 1 (all zero where weight is 0).
        weights: ``(B, K)`` keypoint weights, 1.0 or 0.0.
    """

    heatmaps: torch.Tensor
    weights: torch.Tensor


def heatmap_encode(
    keypoints: torch.Tensor,
    flags: torch.Tensor,
    input_size: tuple[int, int] | Sequence[int],
    heatmap_size: tuple[int, int] | Sequence[int],
    *,
    sigma: float = 2.0,
) -> HeatmapTargets:
    """Encode keypoints into unnormalised 2-D Gaussian heatmaps (peak 1) and keypoint weights.

    With ``mu = (x * Wf / W, y * Hf / H)`` the target is
    ``exp(-((j - mu_x)^2 + (i - mu_y)^2) / (2 sigma^2))`` at cell ``(i, j)``, sub-pixel (not rounded to
    a cell) and evaluated on the whole map (not truncated to the 3-sigma window).

    The weight is 1.0 iff the keypoint is labelled (``v`` in {1, 2}) and its 3-sigma window overlaps
    the heatmap on both axes: ``[mu_x - 3 sigma, mu_x + 3 sigma]`` intersects ``[0, Wf - 1]`` and
    ``[mu_y - 3 sigma, mu_y + 3 sigma]`` intersects ``[0, Hf - 1]``. Otherwise the weight is 0.0 and
    the heatmap is all zero.

    Args:
        keypoints: ``(B, K, 2)`` or ``(K, 2)`` ``(x, y)`` in input-crop pixels (floating).
        flags: ``(B, K)`` or ``(K,)`` COCO flags 0/1/2 (``v = 0`` not labelled, ``v = 1`` occluded,
            ``v = 2`` visible); bool tensors are rejected.
        input_size: crop size ``(H, W)``.
        heatmap_size: heatmap size ``(Hf, Wf)``.
        sigma: Gaussian standard deviation in heatmap cells (2 at 64x48).

    Returns:
        :class:`HeatmapTargets` ``(heatmaps (B, K, Hf, Wf), weights (B, K))`` in float32 (float64 for
        float64 keypoints); unbatched input gives unbatched output.

    Example:
        >>> t = heatmap_encode(torch.tensor([[8.0, 4.0]]), torch.tensor([2]), (32, 24), (8, 6))
        >>> t.heatmaps.shape, t.weights.tolist()
        (torch.Size([1, 8, 6]), [1.0])
        >>> float(t.heatmaps[0, 1, 2])
        1.0
    """
    height, width = check_size_pair("input_size", input_size)
    hm_h, hm_w = check_size_pair("heatmap_size", heatmap_size)
    sig = check_positive_float("sigma", sigma)
    return _heatmap_encode(keypoints, flags, (height, width), (hm_h, hm_w), sig)


def _heatmap_encode(
    keypoints: torch.Tensor,
    flags: torch.Tensor,
    input_size: tuple[int, int],
    heatmap_size: tuple[int, int],
    sigma: float,
) -> HeatmapTargets:
    """:func:`heatmap_encode` with validated hyper-parameters."""
    kp, fl, unbatched = _batch_keypoints(keypoints, flags)
    (height, width), (hm_h, hm_w) = input_size, heatmap_size
    labelled, mu = _labelled_mu(kp, fl)
    stride = torch.tensor([hm_w / width, hm_h / height], dtype=mu.dtype, device=mu.device)
    mu_x, mu_y = (mu * stride).unbind(-1)  # (B, K) each
    keep = labelled & _window_inside(mu_x, hm_w, sigma) & _window_inside(mu_y, hm_h, sigma)  # (B, K)
    weights = keep.to(mu.dtype)
    gx = _gaussian_1d(mu_x, hm_w, sigma, normalize=False, weights=weights)  # (B, K, Wf)
    gy = _gaussian_1d(mu_y, hm_h, sigma, normalize=False)  # (B, K, Hf)
    heatmaps = gy.unsqueeze(-1) * gx.unsqueeze(-2)  # (B, K, Hf, Wf)
    if unbatched:
        return HeatmapTargets(heatmaps[0], weights[0])
    return HeatmapTargets(heatmaps, weights)


def _check_heatmaps(heatmaps: object) -> tuple[torch.Tensor, bool]:
    if not isinstance(heatmaps, torch.Tensor):
        raise TypeError(f"heatmaps must be a torch.Tensor (B, K, Hf, Wf), got {type(heatmaps).__name__}")
    if heatmaps.dim() == 3:
        return check_tensor("heatmaps", heatmaps, "K Hf Wf", floating=True).unsqueeze(0), True
    if heatmaps.dim() == 4:
        return check_tensor("heatmaps", heatmaps, "B K Hf Wf", floating=True), False
    raise ValueError(f"heatmaps must be (B, K, Hf, Wf) or (K, Hf, Wf), got {tuple(heatmaps.shape)}")


def heatmap_decode(
    heatmaps: torch.Tensor, input_size: tuple[int, int] | Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode heatmaps: argmax, quarter-cell shift toward the higher neighbour, scale to crop pixels.

    For the argmax cell ``(i, j)`` the column moves by ``0.25 * sign(h[i, j+1] - h[i, j-1])`` when both
    neighbours exist (``0 < j < Wf - 1``), the row likewise; then ``x = j' * W / Wf`` and
    ``y = i' * H / Hf``. (SimpleBaseline writes the condition as ``1 < j < Wf - 1``, skipping the
    shift at ``j = 1``; here every cell with two neighbours is shifted.) Ties pick the first cell in
    row-major order. Scores are the maximum heatmap values (not probabilities). Computed in float32.

    Encode -> decode tolerance: the argmax is the cell nearest ``mu``, ``|mu - j| <= 0.5``; the shift
    moves toward ``mu``, so an interior keypoint comes back within ``0.25`` cells (``0.25 W / Wf``
    crop px) per axis, a keypoint whose nearest cell is on the border within ``0.5`` cells.

    Args:
        heatmaps: ``(B, K, Hf, Wf)`` or ``(K, Hf, Wf)``.
        input_size: crop size ``(H, W)`` the heatmaps refer to.

    Returns:
        ``keypoints (B, K, 2)`` crop pixels and ``scores (B, K)``, both float32; unbatched input gives
        unbatched output.

    Example:
        >>> h = torch.zeros(1, 1, 8, 6); h[0, 0, 2, 3] = 1.0; h[0, 0, 2, 4] = 0.5
        >>> kp, score = heatmap_decode(h, (32, 24))
        >>> kp.tolist(), score.tolist()
        ([[[13.0, 8.0]]], [[1.0]])
    """
    height, width = check_size_pair("input_size", input_size)
    hm, unbatched = _check_heatmaps(heatmaps)
    b, k, hm_h, hm_w = hm.shape
    if hm_h == 0 or hm_w == 0:
        raise ValueError(f"heatmaps must have at least one cell, got {tuple(hm.shape)}")
    flat = hm.float().reshape(b, k, hm_h * hm_w)  # (B, K, Hf*Wf)
    scores, index = flat.max(dim=-1)  # (B, K)
    row = torch.div(index, hm_w, rounding_mode="floor")  # (B, K)
    col = index - row * hm_w  # (B, K)
    last = hm_h * hm_w - 1

    def neighbour_diff(step: int, inside: torch.Tensor) -> torch.Tensor:
        after = flat.gather(-1, (index + step).clamp(0, last).unsqueeze(-1)).squeeze(-1)
        before = flat.gather(-1, (index - step).clamp(0, last).unsqueeze(-1)).squeeze(-1)
        return torch.where(inside, torch.sign(after - before), torch.zeros_like(after))

    dx = neighbour_diff(1, (col > 0) & (col < hm_w - 1))
    dy = neighbour_diff(hm_w, (row > 0) & (row < hm_h - 1))
    x = (col.float() + 0.25 * dx) * (width / hm_w)
    y = (row.float() + 0.25 * dy) * (height / hm_h)
    keypoints = torch.stack((x, y), dim=-1)  # (B, K, 2)
    if unbatched:
        return keypoints[0], scores[0]
    return keypoints, scores


def heatmap_flip_back(
    heatmaps: torch.Tensor, flip_index: Sequence[int] | torch.Tensor, *, shift: bool = True
) -> torch.Tensor:
    """Bring heatmaps predicted on a horizontally flipped crop back to the original crop.

    Flips the width axis (column ``j`` <- column ``Wf - 1 - j``) and permutes keypoints by
    ``flip_index`` (``out[:, k] = in[:, flip_index[k]]``).

    ``shift=True`` reproduces SimpleBaseline's flip test: the flipped-back maps move **one column
    toward larger x** (``out[..., j] = out[..., j - 1]`` for ``j >= 1``; column 0 keeps its value).
    The image flip maps crop ``x`` to ``W - 1 - x``; with stride ``s = W / Wf`` reversing the columns
    lands at ``mu - 1 + 1 / s``, i.e. 0.75 cells too far left at stride 4. (The SimCC flip shift goes
    the other way because there a bin is finer than a pixel.)

    Without shift the operation is an involution (for an involutive ``flip_index``). With shift,
    applying it twice (second time without shift) gives the input moved one column toward smaller x:
    ``out[..., :-1] == in[..., 1:]`` and ``out[..., -1] == in[..., -1]``.

    Args:
        heatmaps: ``(B, K, Hf, Wf)`` or ``(K, Hf, Wf)`` heatmaps of the flipped crop.
        flip_index: permutation of ``range(K)`` (sequence of ints or 1-D integer tensor).
        shift: apply the one-column shift described above.

    Returns:
        Heatmaps in the original crop's frame, same shape and dtype.

    Example:
        >>> h = torch.arange(6.0).reshape(2, 1, 3)
        >>> heatmap_flip_back(h, [1, 0], shift=False).tolist()
        [[[5.0, 4.0, 3.0]], [[2.0, 1.0, 0.0]]]
        >>> heatmap_flip_back(h, [1, 0]).tolist()
        [[[5.0, 5.0, 4.0]], [[2.0, 2.0, 1.0]]]
    """
    if not isinstance(shift, bool):
        raise TypeError(f"shift must be a bool, got {type(shift).__name__}")
    hm, unbatched = _check_heatmaps(heatmaps)
    index = _flip_index_tensor(flip_index, hm.shape[1], hm.device)
    out = hm.flip(-1).index_select(1, index)  # (B, K, Hf, Wf)
    if shift and out.shape[-1] > 1:
        out = torch.cat((out[..., :1], out[..., :-1]), dim=-1)  # (B, K, Hf, Wf)
    return out[0] if unbatched else out


class HeatmapCodec:
    """Heatmap encoder/decoder holding the hyper-parameters; calls the functions of this module.

    Args:
        input_size: crop size ``(H, W)``.
        heatmap_size: heatmap size ``(Hf, Wf)`` (``(64, 48)`` for 256x192 crops).
        sigma: Gaussian standard deviation in heatmap cells.

    Attributes:
        input_size: ``(H, W)``.
        heatmap_size: ``(Hf, Wf)``.
        sigma: float.

    Example:
        >>> codec = HeatmapCodec((256, 192), (64, 48))
        >>> t = codec.encode(torch.tensor([[[100.0, 60.0]]]), torch.tensor([[1]]))
        >>> kp, score = codec.decode(t.heatmaps)
        >>> kp.tolist(), score.tolist()
        ([[[100.0, 60.0]]], [[1.0]])
    """

    def __init__(
        self,
        input_size: tuple[int, int] | Sequence[int] = (256, 192),
        heatmap_size: tuple[int, int] | Sequence[int] = (64, 48),
        *,
        sigma: float = 2.0,
    ) -> None:
        self.input_size = check_size_pair("input_size", input_size)
        self.heatmap_size = check_size_pair("heatmap_size", heatmap_size)
        self.sigma = check_positive_float("sigma", sigma)

    def __repr__(self) -> str:
        return (
            f"HeatmapCodec(input_size={self.input_size}, heatmap_size={self.heatmap_size}, "
            f"sigma={self.sigma})"
        )

    def encode(self, keypoints: torch.Tensor, flags: torch.Tensor) -> HeatmapTargets:
        """Encode crop-px ``keypoints (B, K, 2)`` + COCO ``flags (B, K)``; see :func:`heatmap_encode`.

        Example:
            >>> HeatmapCodec((8, 8), (4, 4)).encode(torch.zeros(3, 2), torch.ones(3)).heatmaps.shape
            torch.Size([3, 4, 4])
        """
        return _heatmap_encode(keypoints, flags, self.input_size, self.heatmap_size, self.sigma)

    def _check_size(self, heatmaps: torch.Tensor) -> None:
        check_trailing_size("heatmaps", heatmaps, self.heatmap_size, "(B, K, Hf, Wf)", "(Hf, Wf)")

    def decode(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode ``(B, K, Hf, Wf)`` (or unbatched) heatmaps; see :func:`heatmap_decode`.

        Example:
            >>> kp, score = HeatmapCodec((8, 8), (4, 4)).decode(torch.rand(2, 3, 4, 4))
            >>> kp.shape, score.shape
            (torch.Size([2, 3, 2]), torch.Size([2, 3]))
        """
        self._check_size(heatmaps)
        return heatmap_decode(heatmaps, self.input_size)

    def flip_back(
        self, heatmaps: torch.Tensor, flip_index: Sequence[int] | torch.Tensor, *, shift: bool = True
    ) -> torch.Tensor:
        """Flip-test helper checking the heatmap size; see :func:`heatmap_flip_back`.

        Example:
            >>> HeatmapCodec((8, 8), (4, 4)).flip_back(torch.rand(2, 4, 4), [1, 0]).shape
            torch.Size([2, 4, 4])
        """
        self._check_size(heatmaps)
        return heatmap_flip_back(heatmaps, flip_index, shift=shift)
