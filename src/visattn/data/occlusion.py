"""Occlusion augmentation that produces visibility labels: occluders pasted over person crops.

[`occlude_batch`][visattn.data.occlude_batch] pastes random occluders over a batch of top-down crops and
updates the COCO visibility flags (0 unlabelled, 1 labelled but occluded, 2 labelled and visible; a keypoint
is visible iff v == 2): a labelled keypoint (v in {1, 2}) that an occluder covers becomes v = 1, v = 0 stays
0, and keypoint coordinates are never changed. [`RandomOcclusion`][visattn.data.RandomOcclusion] holds the
hyper-parameters, calls the function on batches and offers a per-sample numpy path for
[`TopDownCocoDataset`][visattn.data.TopDownCocoDataset].

It serves as augmentation (``label_mode="update"``: the true flags, covered -> 1) and as the only source
of visibility labels for a set without flags (``label_mode="coverage"``: every labelled keypoint becomes
2 except the covered ones, which become 1).

Covered rule: keypoint ``k`` of sample ``b`` is covered iff it is labelled (v > 0), its rounded pixel
``(round(x), round(y))`` (half to even, as ``torch.round``) lies inside the crop (``0 <= x' < W``,
``0 <= y' < H``) and ``coverage[b, y', x']`` is True. Pixel ``(x', y')`` is the pixel whose centre is
at crop coordinate ``(x', y')``, the convention of the crop warp.

Occluders (per sample: with probability ``prob``, ``count`` of them, painted in order):

- ``"rectangle"``, ``"ellipse"``: rotated, filled with a random flat, striped or checkered two-colour
  texture (colours uniform in ``[0, 255]`` for uint8 crops, in the batch's per-channel value range for
  float crops, so normalised crops work too);
- ``"bar"``: an elongated rotated capsule (length / width 3 to 6) in the colour of the crop at the
  keypoint it is placed on, with a darker rim: a limb-like occluder that can be confused with a limb;
- ``"patch"``: a rectangle or ellipse filled with pixels cut from another crop of the batch (a random
  cyclic permutation, so never the sample itself), around that crop's own anchor keypoint (a body part
  of another person); with B = 1 it falls back to a textured rectangle or ellipse. In the per-sample
  path the patch comes from another region of the same crop or from a given patch source.

Size: an occluder's area is ``(s * sqrt(H * W))**2`` with ``s`` uniform in ``scale``, i.e. relative to
the crop, which is the person box padded x1.25. Each occluder is centred near a random labelled keypoint
inside the crop (offset uniformly by up to half its extent), so occluders do cover keypoints; a sample
without one gets occluders at uniform positions.

Speed (CPU, one thread, uint8, default settings, median of 20 calls): about 3-4 ms per batch of
B = 64 at 64 x 48 and about 17-26 ms per batch of B = 32 at 256 x 192 (a few dozen elementwise ops on
the crops' pixels per occluder slot, vectorised over the batch, and one gather); the per-sample path
of [`RandomOcclusion`][visattn.data.RandomOcclusion] costs about 1 ms per 64 x 48 crop and 2 ms per 256 x 192
crop.

Shape alphabet: B batch, K keypoints, H x W input crop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from visattn._checks import check_choice, check_flags, check_probability

__all__ = ["OCCLUDER_KINDS", "OcclusionResult", "RandomOcclusion", "occlude_batch"]

OCCLUDER_KINDS = ("rectangle", "ellipse", "bar", "patch")
LABEL_MODES = ("update", "coverage")
# uniforms drawn per occluder slot (always all of them: the stream does not depend on the kinds drawn)
_KIND, _ANCHOR, _JX, _JY, _SIZE, _ASPECT, _ANGLE, _TEX, _PERIOD, _PHASE, _SHAPE, _SX, _SY = range(13)
_C1, _C2 = slice(13, 16), slice(16, 19)
_DRAWS = 19
_BAR_ASPECT = (3.0, 6.0)  # bar length / width
_BAR_RIM = 0.6  # |v| / half-width beyond which a bar is drawn in its darker rim colour
_BAR_DARKEN = 0.35  # rim colour = colour moved this far towards the low end of the value range


class OcclusionResult(NamedTuple):
    """Output of [`occlude_batch`][visattn.data.occlude_batch].

    Attributes:
        images: ``(B, 3, H, W)`` occluded crops, the input dtype (a new tensor).
        flags: ``(B, K)`` updated COCO flags, the input dtype (covered labelled keypoints are 1).
        covered: ``(B, K)`` bool, a labelled keypoint under an occluder (the covered rule).
        coverage: ``(B, H, W)`` bool, the pixels an occluder was painted on.
    """

    images: torch.Tensor
    flags: torch.Tensor
    covered: torch.Tensor
    coverage: torch.Tensor


def _check_range(name: str, value: Any, *, integer: bool, low: float, high: float | None) -> tuple[Any, Any]:
    """``(lo, hi)`` with ``low <= lo <= hi (<= high)``, ints or finite numbers."""
    kind = "ints" if integer else "numbers"
    bound = f"{low} <= lo <= hi" + ("" if high is None else f" <= {high}")
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise TypeError(f"{name} must be a pair (lo, hi) of {kind} with {bound}, got {value!r}")
    for v in value:
        bad_type = isinstance(v, bool) or not isinstance(v, int if integer else (int, float))
        if bad_type:
            raise TypeError(f"{name} must be a pair (lo, hi) of {kind} with {bound}, got {tuple(value)!r}")
    lo, hi = value
    ok = math.isfinite(lo) and math.isfinite(hi) and low <= lo <= hi and (high is None or hi <= high)
    if not ok:
        raise ValueError(f"{name} must be a pair (lo, hi) of {kind} with {bound}, got {tuple(value)!r}")
    return (int(lo), int(hi)) if integer else (float(lo), float(hi))


def _check_scale(value: Any) -> tuple[float, float]:
    lo, hi = _check_range("scale", value, integer=False, low=0.0, high=1.0)
    if lo <= 0:
        raise ValueError(
            f"scale must be a pair (lo, hi) of numbers with 0 < lo <= hi <= 1, got {tuple(value)!r}"
        )
    return lo, hi


def _check_kinds(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) == 0:
        raise TypeError(f"kinds must be a non-empty sequence of {list(OCCLUDER_KINDS)}, got {value!r}")
    for kind in value:
        check_choice("kinds", kind, OCCLUDER_KINDS)
    if len(set(value)) != len(value):
        raise ValueError(f"kinds must not repeat a kind, got {list(value)!r}")
    return tuple(str(k) for k in value)


def _check_inputs(images: Any, keypoints: Any, flags: Any, generator: Any) -> None:
    """Validate the batch arguments of [`occlude_batch`][visattn.data.occlude_batch] (types, shapes, dtypes,
    devices, flags)."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor (B, 3, H, W), got {type(images).__name__}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise TypeError(
            f"images must be a uint8 or floating-point tensor (B, 3, H, W), got dtype {images.dtype}"
        )
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W) with 3 channels, got {tuple(images.shape)}")
    b = images.shape[0]
    if not isinstance(keypoints, torch.Tensor):
        raise TypeError(f"keypoints must be a torch.Tensor (B, K, 2), got {type(keypoints).__name__}")
    if not keypoints.is_floating_point():
        raise TypeError(f"keypoints must be a floating-point tensor (B, K, 2), got dtype {keypoints.dtype}")
    if keypoints.dim() != 3 or keypoints.shape[0] != b or keypoints.shape[2] != 2:
        raise ValueError(f"keypoints must be (B, K, 2) with B={b}, got {tuple(keypoints.shape)}")
    k = keypoints.shape[1]
    if not isinstance(flags, torch.Tensor):
        raise TypeError(
            f"flags must be a torch.Tensor (B, K) of COCO flags 0/1/2, got {type(flags).__name__}"
        )
    if flags.dtype == torch.bool or flags.is_floating_point() or flags.is_complex():
        raise TypeError(
            f"flags must be an integer tensor (B, K) of COCO flags 0/1/2 (not bool visibility), "
            f"got dtype {flags.dtype}"
        )
    if flags.dim() != 2 or tuple(flags.shape) != (b, k):
        raise ValueError(f"flags must be (B, K) with B={b}, K={k} (from keypoints), got {tuple(flags.shape)}")
    check_flags("flags", flags)
    for name, t in (("keypoints", keypoints), ("flags", flags)):
        if t.device != images.device:
            raise ValueError(f"{name} must be on the device of images ({images.device}), got {t.device}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def occlude_batch(
    images: torch.Tensor,
    keypoints: torch.Tensor,
    flags: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    prob: float = 0.5,
    count: Sequence[int] = (1, 3),
    scale: Sequence[float] = (0.15, 0.35),
    kinds: Sequence[str] = OCCLUDER_KINDS,
    label_mode: str = "update",
) -> OcclusionResult:
    """Paste random occluders over a batch of person crops and update the visibility flags.

    A labelled keypoint (v in {1, 2}) that an occluder covers becomes v = 1; v = 0 stays 0; keypoint
    coordinates are never changed. Covered rule: the keypoint is labelled, its rounded pixel
    ``(round(x), round(y))`` lies inside the crop and the coverage mask is set there. The inputs are not
    modified. All random numbers come from ``generator`` (on CPU; the work runs on the device of
    ``images``): the same seed gives the same output. Channel order (RGB / BGR) does not matter.

    Args:
        images: ``(B, 3, H, W)`` uint8 or float crops (any value range for float).
        keypoints: ``(B, K, 2)`` float crop px ``(x, y)``.
        flags: ``(B, K)`` integer COCO flags (0 unlabelled, 1 occluded, 2 visible; visible iff v == 2).
        generator: CPU ``torch.Generator`` for the draws (``None``: torch's default generator).
        prob: probability that a sample gets occluders.
        count: ``(lo, hi)`` occluders per occluded sample, inclusive (``0 <= lo <= hi``, ``hi >= 1``).
        scale: ``(lo, hi)`` occluder size ``s``: its area is ``(s * sqrt(H * W))**2`` (relative to the
            crop, i.e. to the person box padded x1.25); ``0 < lo <= hi <= 1``.
        kinds: occluder kinds drawn uniformly: ``"rectangle"``, ``"ellipse"``, ``"bar"``, ``"patch"``.
        label_mode: ``"update"`` (the given flags, covered -> 1) or ``"coverage"`` (labelled keypoints
            -> 2, covered -> 1: visibility labels from the occlusion alone).

    Returns:
        [`OcclusionResult`][visattn.data.OcclusionResult] ``(images, flags, covered, coverage)``.

    Raises:
        TypeError: a non-tensor, a wrong dtype (bool or float flags, integer keypoints) or a bad setting type.
        ValueError: wrong shapes (``B`` or ``K`` mismatch), flags outside {0, 1, 2}, settings out of range.

    Speed (CPU, one thread, uint8, defaults): about 3-4 ms for B = 64 at 64 x 48, about 17-26 ms for
    B = 32 at 256 x 192.

    Example:
        >>> images = torch.randint(0, 256, (64, 3, 64, 48), dtype=torch.uint8)
        >>> keypoints = torch.rand(64, 17, 2) * torch.tensor([48.0, 64.0])
        >>> flags = torch.full((64, 17), 2)
        >>> step = 7  # e.g. the training step: one seeded generator per step
        >>> out = occlude_batch(images, keypoints, flags, generator=torch.Generator().manual_seed(step))
        >>> out.images.shape, out.images.dtype, out.flags.shape, out.coverage.shape
        (torch.Size([64, 3, 64, 48]), torch.uint8, torch.Size([64, 17]), torch.Size([64, 64, 48]))
        >>> bool((out.flags[out.covered] == 1).all()), bool((out.flags[~out.covered] == 2).all())
        (True, True)
    """
    _check_inputs(images, keypoints, flags, generator)
    settings = _Settings(
        prob=check_probability("prob", prob),
        count_range=_check_range("count", count, integer=True, low=0, high=None),
        scale=_check_scale(scale),
        kinds=_check_kinds(kinds),
        label_mode=check_choice("label_mode", label_mode, LABEL_MODES),
    )
    if settings.count_range[1] < 1:
        raise ValueError(
            f"count must be a pair (lo, hi) of ints with 0 <= lo <= hi and hi >= 1, got {count!r}"
        )
    return _occlude(images, keypoints, flags, generator, settings, source=None)


class _Settings(NamedTuple):
    prob: float
    count_range: tuple[int, int]
    scale: tuple[float, float]
    kinds: tuple[str, ...]
    label_mode: str


def _occlude(
    images: torch.Tensor,
    keypoints: torch.Tensor,
    flags: torch.Tensor,
    generator: torch.Generator | None,
    settings: _Settings,
    *,
    source: torch.Tensor | None,
) -> OcclusionResult:
    """The validated core. ``source``: None (patches from other crops of the batch), ``images`` itself
    (B = 1, patches from another region of the same crop) or ``(M, 3, H, W)`` patch source crops."""
    b, _, h, w = images.shape
    device = images.device
    n = settings.count_range[1]  # occluder slots per sample
    gen_device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(b, 2 + n * _DRAWS, generator=generator, dtype=torch.float64, device=gen_device)
    if source is None and b >= 2:  # donor[perm[i]] = perm[i + 1]: a random cycle, never the sample itself
        perm = torch.randperm(b, generator=generator, device=gen_device)
        cycle = torch.empty_like(perm)
        cycle[perm] = perm.roll(-1)
        donor: torch.Tensor | None = cycle
    elif source is not None:
        donor = torch.zeros(b, dtype=torch.int64) if source.shape[0] == 1 else None
        if donor is None:
            donor = torch.randint(source.shape[0], (b,), generator=generator, device=gen_device)
    else:
        donor = None
    u = u.to(device)
    apply = u[:, 0] < settings.prob  # (B,)
    lo, hi = settings.count_range
    num = (lo + (u[:, 1] * (hi - lo + 1)).floor().clamp_max(hi - lo)).long() * apply  # (B,)
    d = u[:, 2:].view(b, n, _DRAWS)  # (B, N, R)

    # anchors: a random labelled keypoint inside the crop (uniform position when a sample has none)
    kp = keypoints.to(device=device, dtype=torch.float64)
    rx, ry = kp[..., 0].round(), kp[..., 1].round()
    labelled = flags > 0  # (B, K)
    inside = (rx >= 0) & (rx < w) & (ry >= 0) & (ry < h)  # (B, K)
    pickable = labelled & inside
    n_pick = pickable.sum(1, keepdim=True)  # (B, 1)
    rank = (d[..., _ANCHOR] * n_pick).floor()  # (B, N)
    pick = (pickable.cumsum(1).unsqueeze(1) > rank.unsqueeze(2)).int().argmax(2)  # (B, N) first k past rank
    anchor = kp.gather(1, pick.unsqueeze(2).expand(b, n, 2))  # (B, N, 2)
    uniform = torch.stack((d[..., _SX] * w, d[..., _SY] * h), 2)  # (B, N, 2)
    has = (n_pick > 0).unsqueeze(2)  # (B, 1, 1)
    anchor = torch.where(has, anchor, uniform)

    kind = (d[..., _KIND] * len(settings.kinds)).floor().long().clamp_max(len(settings.kinds) - 1)
    kind_names = torch.tensor([OCCLUDER_KINDS.index(k) for k in settings.kinds], device=device)
    kind = kind_names[kind]  # (B, N) index into OCCLUDER_KINDS
    is_patch = kind == 3
    can_patch = donor is not None
    is_bar = kind == 2
    # a patch is a rectangle or an ellipse; without a donor it is drawn textured
    is_rect = (kind == 0) | (is_patch & (d[..., _SHAPE] < 0.5))
    if not can_patch:
        is_patch = torch.zeros_like(is_patch)

    s_lo, s_hi = settings.scale
    side = (s_lo + (s_hi - s_lo) * d[..., _SIZE]) * math.sqrt(h * w)  # (B, N) sqrt of the area
    aspect = torch.where(
        is_bar,
        _BAR_ASPECT[0] + (_BAR_ASPECT[1] - _BAR_ASPECT[0]) * d[..., _ASPECT],
        torch.exp(math.log(2.0) * (2.0 * d[..., _ASPECT] - 1.0)),
    )  # width / height (length / width for bars)
    half_w, half_h = 0.5 * side * aspect.sqrt(), 0.5 * side / aspect.sqrt()
    center_x = anchor[..., 0] + (d[..., _JX] - 0.5) * half_w
    center_y = anchor[..., 1] + (d[..., _JY] - 0.5) * half_h
    angle = d[..., _ANGLE] * math.pi
    cos, sin = angle.cos(), angle.sin()
    # capsule for bars: distance along u beyond the straight part, normalised by the half-width
    straight = torch.where(is_bar, half_w - half_h, torch.zeros_like(half_w))
    norm_u = torch.where(is_bar, half_h, half_w)
    period = ((0.15 + 0.35 * d[..., _PERIOD]) * torch.minimum(half_w, half_h) * 2).clamp_min(2.0)
    texture = (d[..., _TEX] * 3).floor()  # 0 flat, 1 stripes, 2 checkers

    # colours: uniform in the value range; bars take the crop's colour at the anchor pixel
    if images.dtype == torch.uint8:
        v_lo = torch.zeros(3, dtype=torch.float64, device=device)
        v_hi = torch.full((3,), 255.0, dtype=torch.float64, device=device)
    else:
        v_lo = images.detach().amin(dim=(0, 2, 3)).double() if b else torch.zeros(3, device=device)
        v_hi = images.detach().amax(dim=(0, 2, 3)).double() if b else torch.ones(3, device=device)
    c1 = v_lo + (v_hi - v_lo) * d[..., _C1]  # (B, N, 3)
    c2 = v_lo + (v_hi - v_lo) * d[..., _C2]
    ax = anchor[..., 0].round().clamp(0, w - 1).long()
    ay = anchor[..., 1].round().clamp(0, h - 1).long()
    flat = images.reshape(b, 3, h * w)
    at_anchor = (
        flat.gather(2, (ay * w + ax).unsqueeze(1).expand(b, 3, n)).permute(0, 2, 1).double()
    )  # (B, N, 3)
    c1 = torch.where(is_bar.unsqueeze(2), at_anchor, c1)
    c2 = torch.where(is_bar.unsqueeze(2), at_anchor + _BAR_DARKEN * (v_lo - at_anchor), c2)
    if images.dtype == torch.uint8:
        c1, c2 = c1.round(), c2.round()
    palette = torch.stack((c1, c2), 2).to(images.dtype).view(b, 2 * n, 3).transpose(1, 2)  # (B, 3, 2N)

    # where patches are cut from: the donor's own anchor (batch), another region (self) or anywhere
    if source is None:
        src_center = anchor[donor] if donor is not None else anchor  # (B, N, 2)
    elif source is images:
        shift = torch.stack(((0.25 + 0.5 * d[..., _SX]) * w, (0.25 + 0.5 * d[..., _SY]) * h), 2)
        src_center = torch.stack((center_x, center_y), 2) + shift
        src_center = torch.stack((src_center[..., 0] % w, src_center[..., 1] % h), 2)
    else:
        src_center = uniform

    # Every output pixel is one gather from a per-sample value table [own pixels | donor pixels |
    # palette]: occluder slots only write table indices (cheap int maps), painted in slot order.
    hw = h * w
    tables = [flat]
    if donor is not None:
        src = images if source is None else source
        tables.append(src.to(device=device, dtype=images.dtype).reshape(-1, 3, hw)[donor.to(device)])
    palette_base = hw * len(tables)
    tables.append(palette)
    table = torch.cat(tables, 2)  # (B, 3, L)
    # indices are kept in float (exact below 2**24), where the elementwise ops are fastest
    fdtype = torch.float32 if table.shape[2] < 2**24 else torch.float64
    index = torch.arange(hw, device=device, dtype=fdtype).view(1, h, w).repeat(b, 1, 1)  # (B, H, W) own

    # per-slot parameters as columns: (B, N, P)
    textured = (texture > 0) & ~is_bar
    params = torch.stack(
        (center_x, center_y, cos, sin, straight, 1.0 / norm_u, 1.0 / half_h, 0.5 / period,
         0.5 * d[..., _PHASE], (texture == 2).double(), textured.double(), is_bar.double(),
         (~is_rect).double(), is_patch.double(), src_center[..., 0] - center_x,
         src_center[..., 1] - center_y),
        2,
    ).to(fdtype)  # fmt: skip
    grid_y = torch.arange(h, device=device, dtype=fdtype).view(1, h, 1)
    grid_x = torch.arange(w, device=device, dtype=fdtype).view(1, 1, w)
    active = torch.arange(n, device=device).view(1, n) < num.view(b, 1)  # (B, N)
    for j in range(n):  # occluder slots (a handful), each vectorised over its samples and their pixels
        rows = active[:, j].nonzero().squeeze(1)
        r = len(rows)
        if r == 0:
            continue
        cols = params[rows, j].view(r, -1, 1, 1).unbind(1)  # each (R, 1, 1)
        cx, cy, cj, sj, st, inv_u, inv_h, half_inv_per, half_phase, checker, tex, bar, rnd, patchy, ox, oy = (
            cols
        )
        dx, dy = grid_x - cx, grid_y - cy  # (R, 1, W), (R, H, 1)
        pu = dx * cj + dy * sj  # (R, H, W) along the occluder's long axis
        pv = dy * cj - dx * sj
        p = pu.abs().sub_(st).clamp_min_(0).mul_(inv_u)
        q = pv.abs().mul_(inv_h)
        # inside iff max(p^2 + rnd * q^2, q) < 1: the rectangle (rnd = 0) or the ellipse / capsule
        t = torch.maximum(torch.addcmul(p * p, q * rnd, q), q)
        in_shape = t.neg_().add_(1).clamp_min_(0).ceil_()  # 1.0 inside, 0.0 outside
        # second colour: parity of the stripe (+ checker row) number, or a bar's rim
        z = torch.addcmul(
            pu.mul_(half_inv_per).add_(half_phase), pv.mul_(2 * half_inv_per).floor_(), 0.5 * checker
        )
        second = z.sub_(z.floor()).mul_(2).floor_().mul_(tex)
        second.addcmul_(q.sub_(_BAR_RIM).clamp_(0, 1).ceil_(), bar)
        value = second.add_(palette_base + 2 * j)
        if donor is not None:
            sx = (grid_x + ox).round_().clamp_(0, w - 1)  # (R, 1, W) donor column
            sy = (grid_y + oy).round_().clamp_(0, h - 1)  # (R, H, 1) donor row
            patch = sy.mul_(w).add_(hw) + sx  # (R, H, W) donor pixel index in the table
            value.addcmul_(patch.sub_(value), patchy)
        old = index[rows]
        index[rows] = old.addcmul_(value.sub_(old), in_shape)
    coverage = index >= hw  # (B, H, W)
    out = table.gather(2, index.view(b, 1, hw).long().expand(b, 3, hw)).view(b, 3, h, w)

    ix = rx.clamp(0, w - 1).long()
    iy = ry.clamp(0, h - 1).long()
    hit = coverage.view(b, h * w).gather(1, iy * w + ix)  # (B, K)
    covered = labelled & inside & hit
    if settings.label_mode == "update":
        new_flags = torch.where(covered, torch.ones_like(flags), flags)
    else:
        new_flags = torch.where(labelled, torch.where(covered, 1, 2), 0).to(flags.dtype)
    return OcclusionResult(out, new_flags, covered, coverage)


@dataclass(frozen=True)
class RandomOcclusion:
    """Occlusion augmentation settings; calls [`occlude_batch`][visattn.data.occlude_batch] and offers a
    per-sample numpy path.

    ``RandomOcclusion(...)(images, keypoints, flags, generator=g)`` equals ``occlude_batch(images,
    keypoints, flags, generator=g, **settings)``.
    [`occlude_sample`][visattn.data.RandomOcclusion.occlude_sample] is the path of
    [`TopDownCocoDataset`][visattn.data.TopDownCocoDataset] (``occlusion=``): one ``(H, W, 3)`` uint8 crop and
    a ``numpy.random.Generator``, patches cut from another region of the same crop or from ``patch_source``.
    Flags are COCO flags (visible iff v == 2); see `visattn.data.occlusion` for the covered rule and the
    occluder kinds.

    Attributes:
        prob: probability that a sample gets occluders.
        count: ``(lo, hi)`` occluders per occluded sample, inclusive.
        scale: ``(lo, hi)`` occluder size relative to the crop (area ``(s * sqrt(H * W))**2``).
        kinds: occluder kinds drawn uniformly (subset of `OCCLUDER_KINDS`).
        label_mode: ``"update"`` (covered -> 1) or ``"coverage"`` (labelled -> 2, covered -> 1).

    Example:
        >>> occ = RandomOcclusion(prob=1.0, label_mode="coverage")
        >>> images = torch.zeros(2, 3, 64, 48, dtype=torch.uint8)
        >>> out = occ(images, torch.full((2, 17, 2), 20.0), torch.ones(2, 17, dtype=torch.int64),
        ...           generator=torch.Generator().manual_seed(0))
        >>> sorted(set(out.flags.flatten().tolist())) in ([1], [2], [1, 2])
        True
        >>> crop, flags, covered = occ.occlude_sample(
        ...     np.zeros((64, 48, 3), np.uint8), np.full((17, 2), 20.0), np.full(17, 2),
        ...     np.random.default_rng(0))
        >>> crop.shape, flags.dtype, covered.dtype
        ((64, 48, 3), dtype('int64'), dtype('bool'))
    """

    prob: float = 0.5
    count: tuple[int, int] = (1, 3)
    scale: tuple[float, float] = (0.15, 0.35)
    kinds: tuple[str, ...] = OCCLUDER_KINDS
    label_mode: str = "update"

    def __post_init__(self) -> None:
        check_probability("prob", self.prob)
        lo_hi = _check_range("count", self.count, integer=True, low=0, high=None)
        if lo_hi[1] < 1:
            raise ValueError(
                f"count must be a pair (lo, hi) of ints with 0 <= lo <= hi and hi >= 1, got {self.count!r}"
            )
        object.__setattr__(self, "count", lo_hi)
        object.__setattr__(self, "scale", _check_scale(self.scale))
        object.__setattr__(self, "kinds", _check_kinds(self.kinds))
        check_choice("label_mode", self.label_mode, LABEL_MODES)

    def _settings(self) -> _Settings:
        return _Settings(float(self.prob), self.count, self.scale, self.kinds, self.label_mode)

    def __call__(
        self,
        images: torch.Tensor,
        keypoints: torch.Tensor,
        flags: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> OcclusionResult:
        """Occlude a batch: [`occlude_batch`][visattn.data.occlude_batch] with these settings."""
        _check_inputs(images, keypoints, flags, generator)
        return _occlude(images, keypoints, flags, generator, self._settings(), source=None)

    def occlude_sample(
        self,
        image: np.ndarray,
        keypoints: np.ndarray,
        flags: np.ndarray,
        rng: np.random.Generator,
        *,
        patch_source: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Occlude one crop (numpy): the same occluders as a batch of one, patches from elsewhere.

        Draws one seed from ``rng`` and runs the batch code on it, so the result depends only on the
        state of ``rng`` (in the dataset: on ``(seed, epoch, index)``).

        Args:
            image: ``(H, W, 3)`` uint8 crop (RGB or BGR).
            keypoints: ``(K, 2)`` crop px ``(x, y)``.
            flags: ``(K,)`` integer COCO flags 0/1/2.
            rng: the sample's ``numpy.random.Generator``.
            patch_source: ``None`` (``"patch"`` occluders cut from another region of the same crop) or
                ``(M, H, W, 3)`` uint8 crops of the same size to cut patches from.

        Returns:
            ``(image (H, W, 3) uint8, flags (K,) int64, covered (K,) bool)``, new arrays.
        """
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            got = f"dtype {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
            raise TypeError(f"image must be a uint8 numpy array (H, W, 3), got {got}")
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be (H, W, 3), got {image.shape}")
        for name, arr in (("keypoints", keypoints), ("flags", flags)):
            if not isinstance(arr, np.ndarray):
                raise TypeError(f"{name} must be a numpy array, got {type(arr).__name__}")
        source = None
        if patch_source is not None:
            if not isinstance(patch_source, np.ndarray) or patch_source.dtype != np.uint8:
                raise TypeError(
                    f"patch_source must be a uint8 numpy array (M, H, W, 3) or None, got {patch_source!r:.80}"
                )
            if patch_source.ndim != 4 or patch_source.shape[0] == 0 or patch_source.shape[1:] != image.shape:
                raise ValueError(
                    f"patch_source must be (M, H, W, 3) with M >= 1, (H, W)={image.shape[:2]}, "
                    f"got {patch_source.shape}"
                )
            source = torch.from_numpy(np.ascontiguousarray(patch_source)).permute(0, 3, 1, 2)  # (M, 3, H, W)
        img_t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0)  # (1, 3, H, W)
        kp_t = torch.from_numpy(np.asarray(keypoints, dtype=np.float64)).unsqueeze(0)
        if kp_t.shape[-1:] != (2,) or kp_t.dim() != 3:
            raise ValueError(f"keypoints must be (K, 2), got {keypoints.shape}")
        if flags.dtype == np.bool_ or not np.issubdtype(flags.dtype, np.integer):
            raise TypeError(
                f"flags must be an integer array (K,) of COCO flags 0/1/2, got dtype {flags.dtype}"
            )
        fl_t = torch.from_numpy(flags.astype(np.int64)).unsqueeze(0)
        _check_inputs(img_t, kp_t, fl_t, None)
        generator = torch.Generator().manual_seed(int(rng.integers(2**63)))
        out = _occlude(
            img_t, kp_t, fl_t, generator, self._settings(), source=img_t if source is None else source
        )
        crop = np.ascontiguousarray(out.images[0].permute(1, 2, 0).numpy())
        return crop, out.flags[0].numpy(), out.covered[0].numpy()
