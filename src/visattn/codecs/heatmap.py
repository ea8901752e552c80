"""Heatmap codec: keypoints <-> 2-D Gaussian heatmaps (SimpleBaseline / HRNet style).

Coordinate convention (shared by encode, decode and flip-back): crop pixel coordinates have pixel
centres at integers, and heatmap cell ``(i, j)`` (row, column) stands for the crop point
``(x, y) = (j * W / Wf, i * H / Hf)``; a keypoint at crop ``(x, y)`` is encoded at heatmap coordinate
``(x * Wf / W, y * Hf / H)``. This is the SimpleBaseline convention (stride ``s = W / Wf``, cell ``j``
at ``x = j s``), not the area-aligned ``(x + 0.5) / s - 0.5``; pretrained heatmap models and the
flip-test shift assume it.

Visibility flags are COCO flags at this boundary: ``v = 0`` not labelled, ``v = 1`` labelled but
occluded, ``v = 2`` labelled and visible (see
[`visattn.visibility.flags_to_visible`][visattn.visibility.flags_to_visible]).

Shape alphabet: B batch, K keypoints, Hf x Wf heatmap, H x W input crop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from visattn._checks import (
    check_choice,
    check_nonnegative_int,
    check_positive_float,
    check_size_pair,
    check_tensor,
)
from visattn.codecs._gaussian import gaussian_1d, window_inside
from visattn.codecs._inputs import (
    batch_keypoints,
    check_trailing_size,
    flip_index_tensor,
    labelled_keypoints,
)

__all__ = [
    "REFINEMENTS",
    "HeatmapCodec",
    "HeatmapTargets",
    "heatmap_decode",
    "heatmap_encode",
    "heatmap_flip_back",
]


#: Sub-pixel refinements of [`heatmap_decode`][visattn.codecs.heatmap_decode].
REFINEMENTS = ("quarter", "dark")


class HeatmapTargets(NamedTuple):
    """Training targets produced by [`heatmap_encode`][visattn.codecs.heatmap_encode].

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
    the heatmap is all zero. (MMPose's ``MSRAHeatmap`` and SimpleBaseline round the centre to a cell
    first and keep a slightly wider band, ``-8.5 < mu < Wf + 5.5`` at sigma 2; the Differences page
    of the documentation compares the rules.)

    The targets equal MMPose's ``MSRAHeatmap(unbiased=True)`` (sub-pixel, whole map) to float
    rounding; its default ``unbiased=False`` rounds the centre to a cell and cuts the Gaussian at the
    3-sigma window.

    Args:
        keypoints: ``(B, K, 2)`` or ``(K, 2)`` ``(x, y)`` in input-crop pixels (floating).
        flags: ``(B, K)`` or ``(K,)`` COCO flags 0/1/2 (``v = 0`` not labelled, ``v = 1`` occluded,
            ``v = 2`` visible); bool tensors are rejected.
        input_size: crop size ``(H, W)``.
        heatmap_size: heatmap size ``(Hf, Wf)``.
        sigma: Gaussian standard deviation in heatmap cells (2 at 64x48).

    Returns:
        [`HeatmapTargets`][visattn.codecs.HeatmapTargets] ``(heatmaps (B, K, Hf, Wf), weights (B, K))`` in
        float32 (float64 for float64 keypoints); unbatched input gives unbatched output.

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
    """[`heatmap_encode`][visattn.codecs.heatmap_encode] with validated hyper-parameters."""
    kp, fl, unbatched = batch_keypoints(keypoints, flags)
    (height, width), (hm_h, hm_w) = input_size, heatmap_size
    labelled, mu = labelled_keypoints(kp, fl)
    stride = torch.tensor([hm_w / width, hm_h / height], dtype=mu.dtype, device=mu.device)
    mu_x, mu_y = (mu * stride).unbind(-1)  # (B, K) each
    keep = labelled & window_inside(mu_x, hm_w, sigma) & window_inside(mu_y, hm_h, sigma)  # (B, K)
    weights = keep.to(mu.dtype)
    gx = gaussian_1d(mu_x, hm_w, sigma, normalize=False, weights=weights)  # (B, K, Wf)
    gy = gaussian_1d(mu_y, hm_h, sigma, normalize=False)  # (B, K, Hf)
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
    heatmaps: torch.Tensor,
    input_size: tuple[int, int] | Sequence[int],
    *,
    refinement: str = "quarter",
    blur_kernel_size: int = 11,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode heatmaps: argmax, a sub-pixel refinement, scale to crop pixels.

    Refinements (``refinement``):

    * ``"quarter"`` (SimpleBaseline): for the argmax cell ``(i, j)`` the column moves by
      ``0.25 * sign(h[i, j+1] - h[i, j-1])`` when both neighbours exist (``0 < j < Wf - 1``), the row
      likewise, each axis on its own: columns ``0`` and ``Wf - 1`` (rows ``0`` and ``Hf - 1``) are
      never shifted, column ``1`` and ``Wf - 2`` are. Other code is stricter at the border:
      SimpleBaseline shifts both axes only when ``1 < j < Wf - 1`` **and** ``1 < i < Hf - 1``, and
      MMPose's ``refine_keypoints`` shifts the column when ``1 < j < Wf - 1`` and ``i > 0``, the row
      when ``1 < i < Hf - 1`` and ``j > 0``; so an argmax in row or column 0 or 1 (for
      SimpleBaseline also the last row or column) may decode 0.25 cells apart from theirs,
      elsewhere they agree. An interior keypoint of a clean Gaussian comes
      back within ``0.25`` cells per axis, one whose nearest cell is on the border within ``0.5``
      cells.
    * ``"dark"`` (distribution-aware decoding, Zhang et al., CVPR 2020, MMPose's ``MSRAHeatmap``
      with ``unbiased=True``): the map is smoothed by a Gaussian of ``blur_kernel_size`` (OpenCV's
      sigma rule ``0.3 ((k - 1) / 2 - 1) + 0.8``; ``0`` or ``1``: no smoothing), its logarithm is
      expanded to second order at the argmax (central differences) and the argmax moves by
      ``-H^-1 g``, as MMPose does it: the smoothing pads the map with zeros, and an argmax within two
      cells of the border (outside ``1 < j < Wf - 2``, ``1 < i < Hf - 2``) or with a singular Hessian
      is not moved. A clean sub-pixel Gaussian decodes to about 1e-3 px at 256 x 192 (64 x 48 maps,
      sigma 2) once its argmax is 7 cells from the border, to a few hundredths of a pixel at 4 to 7
      cells, and within 0.5 cells at the border.

    Then ``x = j' * W / Wf`` and ``y = i' * H / Hf``. Ties pick the first cell in row-major order.
    Scores are the maximum heatmap values (not probabilities). Computed in float32 (DARK's smoothing and
    Taylor step in float64).

    A map whose maximum is ``<= 0`` (an empty or negative prediction) decodes like any other: its
    argmax cell, refined, with that maximum as the score. MMPose's ``get_heatmap_maximum`` returns the
    location ``-1`` there and SimpleBaseline ``(0, 0)``; their scores are the same maximum, so
    ``keypoints[scores <= 0] = -1`` gives MMPose's marker if a pipeline expects it.

    Args:
        heatmaps: ``(B, K, Hf, Wf)`` or ``(K, Hf, Wf)``.
        input_size: crop size ``(H, W)`` the heatmaps refer to.
        refinement: ``"quarter" | "dark"``.
        blur_kernel_size: odd smoothing kernel of ``"dark"`` (11 in MMPose for sigma 2), or 0.

    Returns:
        ``keypoints (B, K, 2)`` crop pixels and ``scores (B, K)``, both float32; unbatched input gives
        unbatched output.

    Example:
        >>> h = torch.zeros(1, 1, 8, 6); h[0, 0, 2, 3] = 1.0; h[0, 0, 2, 4] = 0.5
        >>> kp, score = heatmap_decode(h, (32, 24))
        >>> kp.tolist(), score.tolist()
        ([[[13.0, 8.0]]], [[1.0]])
        >>> g = heatmap_encode(torch.tensor([[100.3, 60.7]]), torch.tensor([2]), (256, 192), (64, 48))
        >>> kp, _ = heatmap_decode(g.heatmaps, (256, 192), refinement="dark")
        >>> [round(v, 2) for v in kp.tolist()[0]]
        [100.3, 60.7]
    """
    height, width = check_size_pair("input_size", input_size)
    check_choice("refinement", refinement, REFINEMENTS)
    kernel = _check_blur_kernel(blur_kernel_size)
    hm, unbatched = _check_heatmaps(heatmaps)
    b, k, hm_h, hm_w = hm.shape
    if hm_h == 0 or hm_w == 0:
        raise ValueError(f"heatmaps must have at least one cell, got {tuple(hm.shape)}")
    flat = hm.float().reshape(b, k, hm_h * hm_w)  # (B, K, Hf*Wf)
    scores, index = flat.max(dim=-1)  # (B, K)
    row = torch.div(index, hm_w, rounding_mode="floor")  # (B, K)
    col = index - row * hm_w  # (B, K)
    if refinement == "dark":
        dx, dy = _dark_offsets(hm.float(), row, col, kernel)
    else:
        last = hm_h * hm_w - 1

        def neighbour_diff(step: int, inside: torch.Tensor) -> torch.Tensor:
            after = flat.gather(-1, (index + step).clamp(0, last).unsqueeze(-1)).squeeze(-1)
            before = flat.gather(-1, (index - step).clamp(0, last).unsqueeze(-1)).squeeze(-1)
            return torch.where(inside, torch.sign(after - before), torch.zeros_like(after))

        dx = 0.25 * neighbour_diff(1, (col > 0) & (col < hm_w - 1))
        dy = 0.25 * neighbour_diff(hm_w, (row > 0) & (row < hm_h - 1))
    x = (col.float() + dx) * (width / hm_w)
    y = (row.float() + dy) * (height / hm_h)
    keypoints = torch.stack((x, y), dim=-1)  # (B, K, 2)
    if unbatched:
        return keypoints[0], scores[0]
    return keypoints, scores


def _check_blur_kernel(size: object) -> int:
    value = check_nonnegative_int("blur_kernel_size", size)
    if value > 1 and value % 2 == 0:
        raise ValueError(f"blur_kernel_size must be odd (or 0 for no smoothing), got {value}")
    return value


def _gaussian_blur(hm: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian smoothing of ``(B, K, Hf, Wf)`` maps, zero-padded (MMPose's ``gaussian_blur``)."""
    b, k, hm_h, hm_w = hm.shape
    sigma = 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8
    taps = torch.arange(kernel_size, dtype=hm.dtype, device=hm.device) - kernel_size // 2
    weights = torch.exp(-(taps**2) / (2 * sigma**2))
    weights = weights / weights.sum()  # (k,)
    pad = kernel_size // 2
    x = torch.nn.functional.pad(hm.reshape(b * k, 1, hm_h, hm_w), (pad, pad, pad, pad))  # zeros, as MMPose
    x = torch.nn.functional.conv2d(x, weights.view(1, 1, 1, -1))  # (B*K, 1, Hf + 2 pad, Wf)
    x = torch.nn.functional.conv2d(x, weights.view(1, 1, -1, 1))  # (B*K, 1, Hf, Wf)
    return x.reshape(b, k, hm_h, hm_w)


def _dark_offsets(
    hm: torch.Tensor, row: torch.Tensor, col: torch.Tensor, kernel_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """DARK's ``-H^-1 g`` of ``log(blur(hm))`` at the argmax ``(row, col)``: ``(dx, dy)`` ``(B, K)`` cells."""
    b, k, hm_h, hm_w = hm.shape
    hm = hm.double()
    if kernel_size > 1:
        hm = _gaussian_blur(hm, kernel_size)
    log = hm.clamp_min(1e-10).log()
    padded = torch.nn.functional.pad(log.reshape(b * k, 1, hm_h, hm_w), (2, 2, 2, 2), mode="replicate")
    padded = padded.reshape(b, k, -1)  # (B, K, (Hf + 4) * (Wf + 4))
    stride = hm_w + 4

    def at(dr: int, dc: int) -> torch.Tensor:
        index = (row + 2 + dr) * stride + (col + 2 + dc)  # (B, K)
        return padded.gather(-1, index.unsqueeze(-1)).squeeze(-1)

    centre = at(0, 0)
    gx = 0.5 * (at(0, 1) - at(0, -1))
    gy = 0.5 * (at(1, 0) - at(-1, 0))
    hxx = 0.25 * (at(0, 2) - 2 * centre + at(0, -2))
    hyy = 0.25 * (at(2, 0) - 2 * centre + at(-2, 0))
    hxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    det = hxx * hyy - hxy * hxy
    inside = (col > 1) & (col < hm_w - 2) & (row > 1) & (row < hm_h - 2)  # MMPose refines only there
    ok = (det != 0) & inside
    safe = torch.where(ok, det, torch.ones_like(det))
    dx = torch.where(ok, -(hyy * gx - hxy * gy) / safe, torch.zeros_like(det))
    dy = torch.where(ok, -(hxx * gy - hxy * gx) / safe, torch.zeros_like(det))
    return dx.float(), dy.float()


def heatmap_flip_back(
    heatmaps: torch.Tensor, flip_index: Sequence[int] | torch.Tensor, *, shift: bool = True
) -> torch.Tensor:
    """Bring heatmaps predicted on a horizontally flipped crop back to the original crop.

    Flips the width axis (column ``j`` <- column ``Wf - 1 - j``) and permutes keypoints by
    ``flip_index`` (``out[:, k] = in[:, flip_index[k]]``).

    ``shift=True`` reproduces SimpleBaseline's flip test (and MMPose's ``flip_heatmaps`` with
    ``shift_heatmap=True``): the flipped-back maps move **one column toward larger x**
    (``out[..., j] = out[..., j - 1]`` for ``j >= 1``; column 0 keeps its value).
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
    index = flip_index_tensor(flip_index, hm.shape[1], hm.device)
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
        refinement: sub-pixel refinement of [`decode`][visattn.codecs.HeatmapCodec.decode],
            ``"quarter" | "dark"`` (see [`heatmap_decode`][visattn.codecs.heatmap_decode]).
        blur_kernel_size: smoothing kernel of ``"dark"`` (odd, or 0).

    Attributes:
        input_size: ``(H, W)``.
        heatmap_size: ``(Hf, Wf)``.
        sigma: float.
        refinement: str.
        blur_kernel_size: int.

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
        refinement: str = "quarter",
        blur_kernel_size: int = 11,
    ) -> None:
        self.input_size = check_size_pair("input_size", input_size)
        self.heatmap_size = check_size_pair("heatmap_size", heatmap_size)
        self.sigma = check_positive_float("sigma", sigma)
        self.refinement = check_choice("refinement", refinement, REFINEMENTS)
        self.blur_kernel_size = _check_blur_kernel(blur_kernel_size)

    def __repr__(self) -> str:
        return (
            f"HeatmapCodec(input_size={self.input_size}, heatmap_size={self.heatmap_size}, "
            f"sigma={self.sigma}, refinement={self.refinement!r})"
        )

    def encode(self, keypoints: torch.Tensor, flags: torch.Tensor) -> HeatmapTargets:
        """Encode crop-px ``keypoints (B, K, 2)`` + COCO ``flags (B, K)``; see
        [`heatmap_encode`][visattn.codecs.heatmap_encode].

        Example:
            >>> HeatmapCodec((8, 8), (4, 4)).encode(torch.zeros(3, 2), torch.ones(3)).heatmaps.shape
            torch.Size([3, 4, 4])
        """
        return _heatmap_encode(keypoints, flags, self.input_size, self.heatmap_size, self.sigma)

    def _check_size(self, heatmaps: torch.Tensor) -> None:
        check_trailing_size("heatmaps", heatmaps, self.heatmap_size, "(B, K, Hf, Wf)", "(Hf, Wf)")

    def decode(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode ``(B, K, Hf, Wf)`` (or unbatched) heatmaps; see
        [`heatmap_decode`][visattn.codecs.heatmap_decode].

        Example:
            >>> kp, score = HeatmapCodec((8, 8), (4, 4)).decode(torch.rand(2, 3, 4, 4))
            >>> kp.shape, score.shape
            (torch.Size([2, 3, 2]), torch.Size([2, 3]))
        """
        self._check_size(heatmaps)
        return heatmap_decode(
            heatmaps, self.input_size, refinement=self.refinement, blur_kernel_size=self.blur_kernel_size
        )

    def flip_back(
        self, heatmaps: torch.Tensor, flip_index: Sequence[int] | torch.Tensor, *, shift: bool = True
    ) -> torch.Tensor:
        """Flip-test helper checking the heatmap size; see
        [`heatmap_flip_back`][visattn.codecs.heatmap_flip_back].

        Example:
            >>> HeatmapCodec((8, 8), (4, 4)).flip_back(torch.rand(2, 4, 4), [1, 0]).shape
            torch.Size([2, 4, 4])
        """
        self._check_size(heatmaps)
        return heatmap_flip_back(heatmaps, flip_index, shift=shift)
