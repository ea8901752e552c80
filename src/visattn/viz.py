"""Drawing poses and keypoint-to-keypoint attention maps with matplotlib.

Needs the ``viz`` extra (``pip install "visattn[viz]"``); matplotlib is imported when a function runs,
so ``import visattn.viz`` itself loads only torch and numpy.

Shapes: K keypoints, N persons, H x W image. Keypoints are image pixels ``(x, y)``: ``(K, 2)`` for one
person, ``(N, K, 2)`` or a list of N ``(K, 2)`` arrays for several; per-keypoint values (flags,
probabilities, scores) are ``(K,)``, resp. ``(N, K)``. Every array argument (``ArrayOrTensor`` in the
signatures) is a numpy array, a nested list or a torch tensor (any device, any real dtype, ``bfloat16``
included). Images are ``(H, W, 3)`` uint8 RGB. A keypoint set (``KeypointSet``) is a
[`KeypointInfo`][visattn.keypoints.KeypointInfo], a registered name such as ``"coco"`` or a keypoint set file.

What a pose drawing shows:

- **colour**: the body side of a keypoint and of a skeleton edge, [`SIDE_COLOURS`][visattn.viz.SIDE_COLOURS]
  (left, right, centre; [`keypoint_sides`][visattn.viz.keypoint_sides] says how the side is found). An edge
  from the centre to one side takes that side's colour; an edge joining left and right is a centre edge.
- **fill**: filled marker = visible, hollow marker = occluded. Edges that touch an occluded keypoint
  are dashed. With COCO flags (``flags``: 0 unlabelled, 1 occluded, 2 visible) unlabelled keypoints
  are not drawn; with predicted visibility probabilities (``vis_probs``) a keypoint is visible iff
  ``p >= threshold``.
- **ground truth** (``gt_keypoints``): white diamonds (hollow when ``gt_flags`` says occluded) on a thin
  dashed white skeleton, and a red error line from each predicted keypoint to its labelled ground truth.

Functions create a new `matplotlib.figure.Figure` when no ``ax=`` is given; that figure is not
registered with pyplot (no global state changes, nothing to close); write it with
[`save_figure`][visattn.viz.save_figure]. To show it in a pyplot session, draw into ``ax=plt.subplots()[1]``
instead.

Example:
    >>> import numpy as np
    >>> from visattn.viz import draw_attention, draw_pose
    >>> ax = draw_pose(None, np.random.default_rng(0).uniform(0, 50, (17, 2)), "coco")
    >>> ax = draw_attention(np.full((17, 17), 1 / 17), "coco", title="uniform")
    >>> ax.images[0].colorbar is not None
    True
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import torch

from visattn._checks import check_positive_float, check_probability
from visattn.keypoints import KeypointInfo, get_keypoint_info

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "SIDE_COLOURS",
    "draw_attention",
    "draw_pose",
    "keypoint_sides",
    "save_figure",
]

Side: TypeAlias = Literal["left", "right", "centre"]
ArrayOrTensor: TypeAlias = "npt.ArrayLike | torch.Tensor"
KeypointSet: TypeAlias = "KeypointInfo | str | os.PathLike[str]"

SIDE_COLOURS: Mapping[str, str] = MappingProxyType(
    {"left": "#1f9bff", "right": "#ff8c1a", "centre": "#2ecc71"}
)
"""Colours of the body sides (left azure, right orange, centre green), legible on dark and bright images."""

_GT_COLOUR = "#ffffff"
_ERROR_COLOUR = "#ff2a2a"
_OUTLINE = "#000000"
_INSTALL_HINT = 'pip install "visattn[viz]"'


def _require_matplotlib() -> None:
    """Import matplotlib or raise an ImportError that says how to install it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"visattn.viz draws with matplotlib, which is not installed: {_INSTALL_HINT}"
        ) from error


# ------------------------------------------------------------------ sides


def _name_side(name: str) -> Side | None:
    """``"left"`` / ``"right"`` when the name says so (``left_eye``, ``L_Eye``, ``hand_right``), else None."""
    lower = name.lower()
    tokens = [t for t in re.split(r"[^a-z0-9]+", lower) if t]
    left = lower.startswith("left") or "left" in tokens or (bool(tokens) and tokens[0] == "l")
    right = lower.startswith("right") or "right" in tokens or (bool(tokens) and tokens[0] == "r")
    if left == right:
        return None
    return "left" if left else "right"


def keypoint_sides(keypoint_info: KeypointSet) -> tuple[Side, ...]:
    """The body side of each keypoint: ``"left"``, ``"right"`` or ``"centre"``.

    A name that says its side decides (``left_*`` / ``right_*`` anywhere as a word, or an ``l_`` / ``r_``
    prefix, any case). Keypoints whose names do not say so but that belong to a flip pair are sided by
    the pair: ``KeypointInfo.flip_pairs`` lists pairs as ``(left, right)``, and a keypoint paired with a
    named side takes the other one. Everything else (nose, neck, unpaired points) is ``"centre"``.

    Args:
        keypoint_info: a [`KeypointInfo`][visattn.keypoints.KeypointInfo], a registered name or a keypoint set
            file (as [`get_keypoint_info`][visattn.keypoints.get_keypoint_info] takes).

    Returns:
        a tuple of length K.

    Example:
        >>> from visattn.viz import keypoint_sides
        >>> keypoint_sides("coco")[:4]
        ('centre', 'left', 'right', 'left')
        >>> keypoint_sides("mpii")[6:10]
        ('centre', 'centre', 'centre', 'centre')
    """
    info = get_keypoint_info(keypoint_info)
    sides: list[Side | None] = [_name_side(n) for n in info.names]
    for a, b in info.flip_pairs:
        if sides[a] is None and sides[b] is None:
            sides[a], sides[b] = "left", "right"
        elif sides[a] is None:
            sides[a] = "left" if sides[b] == "right" else "right"
        elif sides[b] is None:
            sides[b] = "left" if sides[a] == "right" else "right"
    return tuple(s if s is not None else "centre" for s in sides)


def _edge_side(sides: Sequence[Side], a: int, b: int) -> Side:
    """An edge's side: its ends' common side, the side of its non-centre end, centre for left-right."""
    sa, sb = sides[a], sides[b]
    if sa == sb:
        return sa
    if sa == "centre":
        return sb
    if sb == "centre":
        return sa
    return "centre"


# ------------------------------------------------------------------ input checks


def _numpy(name: str, value: object) -> npt.NDArray[Any]:
    """``value`` (array, tensor, nested list, list of arrays / tensors) as a numpy array."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        if tensor.is_complex():
            raise TypeError(f"{name} must hold real numbers, got dtype {tensor.dtype}")
        if tensor.is_floating_point():
            tensor = tensor.to(torch.float64)  # bfloat16 / float16 have no (or no exact) numpy dtype
        return tensor.numpy()
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(v, (torch.Tensor, np.ndarray)) for v in value)
    ):
        parts = [_numpy(f"{name}[{i}]", v) for i, v in enumerate(value)]
        shapes = sorted({p.shape for p in parts})
        if len(shapes) > 1:
            raise ValueError(f"{name} must list arrays of one shape, got shapes {shapes}")
        return np.stack(parts)
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{name} must be an array or a tensor, got {type(value).__name__} ({error})"
        ) from None
    return array


def _real(name: str, array: npt.NDArray[Any], expected: str, *, allow_bool: bool = False) -> None:
    kinds = "biuf" if allow_bool else "iuf"
    if array.dtype.kind not in kinds:
        raise TypeError(f"{name} must be {expected} of real numbers, got dtype {array.dtype}")


def _spec(dims: str, k: int) -> str:
    return f"({dims}) with K={k}"


def _keypoints(name: str, value: object, k: int) -> tuple[npt.NDArray[np.float64], bool]:
    """``(N, K, 2)`` float64 keypoints and whether the input held several persons."""
    if isinstance(value, (list, tuple)) and len(value) == 0:
        return np.zeros((0, k, 2)), True
    array = _numpy(name, value)
    expected = f"{_spec('K, 2', k)} for one person or {_spec('N, K, 2', k)} (a list of (K, 2)) for N"
    _real(name, array, "an array")
    if array.ndim not in (2, 3) or array.shape[-2:] != (k, 2):
        raise ValueError(f"{name} must be {expected}, got {tuple(array.shape)}")
    multi = array.ndim == 3
    return array.reshape(-1, k, 2).astype(np.float64), multi


def _per_keypoint(name: str, value: object, n: int, k: int, multi: bool) -> npt.NDArray[Any]:
    """A per-keypoint argument as an ``(N, K)`` array, shaped like the keypoints it belongs to."""
    array = _numpy(name, value) if not (isinstance(value, (list, tuple)) and len(value) == 0) else None
    expected = _spec("N, K", k) + f", N={n}" if multi else _spec("K,", k)
    if array is None:
        if multi and n == 0:
            return np.zeros((0, k))
        raise ValueError(f"{name} must be {expected}, got an empty list")
    shape = (n, k) if multi else (k,)
    if array.shape != shape:
        raise ValueError(f"{name} must be {expected} like the keypoints, got {tuple(array.shape)}")
    return array.reshape(n, k)


def _flags(name: str, value: object, n: int, k: int, multi: bool) -> npt.NDArray[np.int64]:
    """COCO flags 0/1/2 (or a bool visible mask, read as 2 / 1) as int64 ``(N, K)``."""
    array = _per_keypoint(name, value, n, k, multi)
    _real(name, array, "COCO flags 0/1/2 (or bools)", allow_bool=True)
    if array.dtype == np.bool_:
        return np.where(array, 2, 1).astype(np.int64)
    bad = ~np.isin(array, (0, 1, 2))
    if bad.any():
        found = sorted({float(v) for v in array[bad]})[:5]
        raise ValueError(f"{name} must hold COCO flags in {{0, 1, 2}} (or bools), got values {found}")
    return array.astype(np.int64)


def _probs(name: str, value: object, n: int, k: int, multi: bool) -> npt.NDArray[np.float64]:
    array = _per_keypoint(name, value, n, k, multi)
    _real(name, array, "probabilities")
    array = array.astype(np.float64)
    if array.size and not (np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1):
        raise ValueError(
            f"{name} must hold probabilities in [0, 1] (e.g. torch.sigmoid(vis_logits)), got values in "
            f"[{np.nanmin(array):.4g}, {np.nanmax(array):.4g}]"
        )
    return array


def _image(value: object) -> npt.NDArray[np.uint8] | None:
    if value is None:
        return None
    # the dtype as given: _numpy widens floating tensors to float64
    dtype = value.dtype if isinstance(value, torch.Tensor) else None
    array = _numpy("image", value)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        raise ValueError(
            f"image must be (H, W, 3) channels-last RGB, got {tuple(array.shape)} (channels first?); "
            "pass image.transpose(1, 2, 0) (numpy) or image.permute(1, 2, 0) (torch)"
        )
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB or None, got {tuple(array.shape)}")
    if array.dtype != np.uint8:
        raise TypeError(
            f"image must be (H, W, 3) uint8 RGB, got dtype {dtype or array.dtype}; convert a [0, 1] float "
            "image with (image * 255).round().astype(np.uint8)"
        )
    return array


def _new_axes(figsize: tuple[float, float]) -> Axes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig.add_subplot()


def _root_figure(artist: Figure | Axes) -> Figure:
    """The top-level figure of an axes or figure (through any subfigures)."""
    from matplotlib.figure import Figure

    figure: Any = artist if isinstance(artist, Figure) else artist.figure
    while not isinstance(figure, Figure):  # a SubFigure
        figure = figure.figure
    return figure


def _check_axes(ax: object) -> Axes:
    from matplotlib.axes import Axes

    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
    return ax


# ------------------------------------------------------------------ poses


_LINE_WIDTH = 2.2
_MARKER_SIZE = 44.0  # points^2


def _outline(width: float, alpha: float = 0.7) -> list[Any]:
    """A dark stroke under a line or marker edge, so that it stays legible on bright and dark images."""
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=width, foreground=_OUTLINE, alpha=alpha)]


def _add_lines(ax: Axes, segments: list[npt.NDArray[Any]], gid: str, **style: Any) -> None:
    """One LineCollection of ``(2, 2)`` segments (nothing when there are none)."""
    from matplotlib.collections import LineCollection

    if segments:
        ax.add_collection(LineCollection(segments, gid=gid, **style), autolim=True)


def _add_skeleton(
    ax: Axes,
    skeleton: Sequence[tuple[int, int]],
    sides: Sequence[Side],
    kp: npt.NDArray[np.float64],
    drawn: npt.NDArray[np.bool_],
    visible: npt.NDArray[np.bool_],
) -> None:
    """Edges between drawn keypoints, side-coloured; dashed where an end is occluded."""
    segments: dict[bool, list[npt.NDArray[Any]]] = {True: [], False: []}
    colours: dict[bool, list[str]] = {True: [], False: []}
    for p in range(kp.shape[0]):
        for a, b in skeleton:
            if drawn[p, a] and drawn[p, b]:
                solid = bool(visible[p, a] and visible[p, b])
                segments[solid].append(kp[p, [a, b]])
                colours[solid].append(SIDE_COLOURS[_edge_side(sides, a, b)])
    style: dict[str, Any] = {
        "linewidths": _LINE_WIDTH,
        "path_effects": _outline(_LINE_WIDTH + 1.6),
        "zorder": 3,
    }
    _add_lines(ax, segments[True], "skeleton", colors=colours[True], **style)
    _add_lines(
        ax, segments[False], "skeleton-occluded", colors=colours[False], linestyles=(0, (3.0, 1.5)), **style
    )


def _add_ground_truth(
    ax: Axes,
    skeleton: Sequence[tuple[int, int]],
    kp: npt.NDArray[np.float64],
    drawn: npt.NDArray[np.bool_],
    gt: npt.NDArray[np.float64],
    gt_drawn: npt.NDArray[np.bool_],
    gt_visible: npt.NDArray[np.bool_],
) -> None:
    """Ground-truth skeleton and diamonds; an error line from each drawn prediction to its ground truth."""
    edges = [
        gt[p, [a, b]] for p in range(gt.shape[0]) for a, b in skeleton if gt_drawn[p, a] and gt_drawn[p, b]
    ]
    _add_lines(
        ax,
        edges,
        "gt-skeleton",
        colors=_GT_COLOUR,
        linewidths=1.0,
        linestyles=(0, (2.0, 2.0)),
        alpha=0.8,
        zorder=2,
    )
    errors = [np.stack([kp[p, i], gt[p, i]]) for p, i in zip(*np.nonzero(drawn & gt_drawn))]
    _add_lines(ax, errors, "error-lines", colors=_ERROR_COLOUR, linewidths=1.3, zorder=3.5)
    filled, hollow = gt_drawn & gt_visible, gt_drawn & ~gt_visible
    style: dict[str, Any] = {"s": 0.7 * _MARKER_SIZE, "marker": "D", "zorder": 4}
    if filled.any():
        ax.scatter(
            gt[filled][:, 0],
            gt[filled][:, 1],
            facecolors=_GT_COLOUR,
            edgecolors=_OUTLINE,
            linewidths=0.9,
            gid="gt-keypoints-visible",
            **style,
        )
    if hollow.any():
        ax.scatter(
            gt[hollow][:, 0],
            gt[hollow][:, 1],
            facecolors="none",
            edgecolors=_GT_COLOUR,
            linewidths=1.5,
            gid="gt-keypoints-occluded",
            path_effects=_outline(3.0, 0.8),
            **style,
        )


def _add_markers(
    ax: Axes,
    kp: npt.NDArray[np.float64],
    drawn: npt.NDArray[np.bool_],
    visible: npt.NDArray[np.bool_],
    colours: npt.NDArray[Any],
) -> None:
    """Side-coloured markers: filled with a dark edge (visible), hollow with a dark halo (occluded)."""
    filled, hollow = drawn & visible, drawn & ~visible
    if filled.any():
        ax.scatter(
            kp[filled][:, 0],
            kp[filled][:, 1],
            s=_MARKER_SIZE,
            marker="o",
            facecolors=colours[filled].tolist(),
            edgecolors=_OUTLINE,
            linewidths=1.0,
            gid="keypoints-visible",
            zorder=5,
        )
    if hollow.any():
        ax.scatter(
            kp[hollow][:, 0],
            kp[hollow][:, 1],
            s=_MARKER_SIZE,
            marker="o",
            facecolors="none",
            edgecolors=colours[hollow].tolist(),
            linewidths=1.8,
            gid="keypoints-occluded",
            zorder=5,
            path_effects=_outline(3.4, 0.8),
        )


def _add_text(
    ax: Axes,
    kp: npt.NDArray[np.float64],
    drawn: npt.NDArray[np.bool_],
    scores: npt.NDArray[np.float64] | None,
    probs: npt.NDArray[np.float64] | None,
) -> None:
    """``0.91 v=0.83`` (score, visibility probability) beside each drawn keypoint."""
    for p, i in zip(*np.nonzero(drawn)):
        parts = [] if scores is None else [f"{scores[p, i]:.2f}"]
        if probs is not None:
            parts.append(f"v={probs[p, i]:.2f}")
        ax.annotate(
            " ".join(parts),
            (kp[p, i, 0], kp[p, i, 1]),
            xytext=(5, 3),
            textcoords="offset points",
            fontsize=6,
            color="white",
            gid="keypoint-text",
            zorder=6,
            annotation_clip=True,
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "black", "alpha": 0.55, "linewidth": 0},
        )


def _add_legend(ax: Axes, sides: Sequence[Side], *, ground_truth: bool) -> None:
    from matplotlib.lines import Line2D

    present = [s for s in ("left", "right", "centre") if s in sides]
    handles = [Line2D([], [], color=SIDE_COLOURS[s], lw=_LINE_WIDTH, label=s) for s in present]
    handles += [
        Line2D([], [], ls="", marker="o", ms=6, mfc="0.6", mec=_OUTLINE, label="visible"),
        Line2D([], [], ls="", marker="o", ms=6, mfc="none", mec="0.4", mew=1.8, label="occluded"),
    ]
    if ground_truth:
        handles += [
            Line2D([], [], ls="", marker="D", ms=5, mfc=_GT_COLOUR, mec=_OUTLINE, label="ground truth"),
            Line2D([], [], color=_ERROR_COLOUR, lw=1.3, label="error"),
        ]
    ax.legend(handles=handles, loc="best", fontsize=7, framealpha=0.8).set_zorder(10)


def draw_pose(
    image: ArrayOrTensor | None,
    keypoints: ArrayOrTensor | Sequence[ArrayOrTensor],
    keypoint_info: KeypointSet,
    *,
    flags: ArrayOrTensor | None = None,
    vis_probs: ArrayOrTensor | None = None,
    scores: ArrayOrTensor | None = None,
    gt_keypoints: ArrayOrTensor | Sequence[ArrayOrTensor] | None = None,
    gt_flags: ArrayOrTensor | None = None,
    threshold: float = 0.5,
    score_text: bool | None = None,
    legend: bool = False,
    ax: Axes | None = None,
) -> Axes:
    """Draw the skeletons of one or several persons, visible keypoints filled and occluded ones hollow.

    Which keypoints are drawn: those with finite coordinates and, when ``flags`` is given, a flag
    ``v > 0``. Which are drawn as visible (filled): ``vis_probs >= threshold`` when ``vis_probs`` is
    given, else ``flags == 2`` when ``flags`` is given, else all. Colours follow the body side
    ([`SIDE_COLOURS`][visattn.viz.SIDE_COLOURS], [`keypoint_sides`][visattn.viz.keypoint_sides]); edges
    touching an occluded keypoint are dashed.

    Args:
        image: ``(H, W, 3)`` uint8 RGB image (the axes then span it and hide their frame), or None
            (equal-aspect axes in pixel units, y pointing down as in an image).
        keypoints: ``(K, 2)`` keypoints ``(x, y)`` in image pixels for one person, or ``(N, K, 2)`` /
            a list of N ``(K, 2)`` for several.
        keypoint_info: the keypoint set: a [`KeypointInfo`][visattn.keypoints.KeypointInfo], a registered name
            (``"coco"``) or a keypoint set file.
        flags: COCO flags of ``keypoints``, ``(K,)`` / ``(N, K)``: 0 unlabelled (not drawn), 1 occluded
            (hollow), 2 visible (filled); a bool visible mask reads as 2 (True) / 1 (False).
        vis_probs: predicted visibility probabilities ``(K,)`` / ``(N, K)`` in [0, 1]; they decide the
            fill (visible iff ``p >= threshold``) and take precedence over ``flags`` for it.
        scores: per-keypoint confidences ``(K,)`` / ``(N, K)``, written as text.
        gt_keypoints: ground truth shaped like ``keypoints``: drawn as white diamonds on a dashed white
            skeleton, with a red error line from each drawn prediction to its labelled ground truth.
        gt_flags: COCO flags of ``gt_keypoints`` (0: no ground truth there, 1: hollow diamond, 2: filled).
        threshold: visibility threshold on ``vis_probs``, in [0, 1].
        score_text: write ``scores`` (as ``0.91``) and ``vis_probs`` (as ``v=0.83``) next to each drawn
            keypoint. None (default): write them when ``scores`` is given.
        legend: add a legend of the encoding (sides, visible / occluded, ground truth, error).
        ax: axes to draw into; None creates a new figure (``ax.figure``).

    Returns:
        The axes drawn into. Artists carry gids: ``"skeleton"``, ``"skeleton-occluded"`` (dashed),
        ``"keypoints-visible"``, ``"keypoints-occluded"``, ``"gt-skeleton"``, ``"gt-keypoints-visible"``,
        ``"gt-keypoints-occluded"``, ``"error-lines"``, ``"keypoint-text"``; an artist with nothing to
        draw is not added.

    Raises:
        ValueError: an argument of the wrong shape or with values out of range (the message names it).
        TypeError: an argument of the wrong kind or dtype.
        ImportError: matplotlib is missing (``pip install "visattn[viz]"``).

    Example:
        >>> import numpy as np
        >>> from visattn.viz import draw_pose
        >>> keypoints = np.random.default_rng(0).uniform(10, 90, (17, 2))
        >>> flags = np.full(17, 2)
        >>> flags[0], flags[[9, 10]] = 0, 1  # nose unlabelled, both wrists occluded
        >>> ax = draw_pose(np.zeros((100, 100, 3), np.uint8), keypoints, "coco", flags=flags)
        >>> {c.get_gid(): len(c.get_offsets()) for c in ax.collections if "keypoints" in c.get_gid()}
        {'keypoints-visible': 14, 'keypoints-occluded': 2}
    """
    _require_matplotlib()
    info = get_keypoint_info(keypoint_info)
    k = info.num_keypoints
    kp, multi = _keypoints("keypoints", keypoints, k)
    n = kp.shape[0]
    flag_arr = None if flags is None else _flags("flags", flags, n, k, multi)
    prob_arr = None if vis_probs is None else _probs("vis_probs", vis_probs, n, k, multi)
    score_arr = None
    if scores is not None:
        score_arr = _per_keypoint("scores", scores, n, k, multi)
        _real("scores", score_arr, "an array")
        score_arr = score_arr.astype(np.float64)
    gt = None
    if gt_keypoints is not None:
        gt, gt_multi = _keypoints("gt_keypoints", gt_keypoints, k)
        if gt.shape != kp.shape or gt_multi != multi:
            raise ValueError(
                f"gt_keypoints must be shaped like keypoints {tuple(_numpy('keypoints', keypoints).shape)}, "
                f"got {tuple(_numpy('gt_keypoints', gt_keypoints).shape)}"
            )
    if gt_flags is not None and gt is None:
        raise ValueError(
            "gt_flags needs gt_keypoints (the ground truth they belong to), got gt_keypoints=None"
        )
    gt_flag_arr = None if gt_flags is None else _flags("gt_flags", gt_flags, n, k, multi)
    threshold = check_probability("threshold", threshold)
    if score_text is not None and not isinstance(score_text, bool):
        raise TypeError(f"score_text must be a bool or None, got {type(score_text).__name__} {score_text!r}")
    if not isinstance(legend, bool):
        raise TypeError(f"legend must be a bool, got {type(legend).__name__} {legend!r}")
    write_text = score_arr is not None if score_text is None else score_text
    if write_text and score_arr is None and prob_arr is None:
        raise ValueError("score_text=True needs scores or vis_probs to write, got neither")
    img = _image(image)
    if ax is None:
        if img is None:
            figsize = (5.0, 5.0)
        else:
            h, w = img.shape[:2]
            scale = 6.0 / max(h, w)
            figsize = (max(2.0, w * scale), max(2.0, h * scale))
        ax = _new_axes(figsize)
    else:
        ax = _check_axes(ax)

    sides = keypoint_sides(info)
    colours = np.array([SIDE_COLOURS[s] for s in sides])
    drawn = np.isfinite(kp[..., 0]) & np.isfinite(kp[..., 1])  # (N, K)
    if flag_arr is not None:
        drawn &= flag_arr > 0
    if prob_arr is not None:
        visible = prob_arr >= threshold
    elif flag_arr is not None:
        visible = flag_arr == 2
    else:
        visible = np.ones((n, k), dtype=bool)

    if img is not None:
        ax.imshow(img, zorder=0)
    _add_skeleton(ax, info.skeleton, sides, kp, drawn, visible)
    if gt is not None:
        gt_drawn = np.isfinite(gt[..., 0]) & np.isfinite(gt[..., 1])
        if gt_flag_arr is not None:
            gt_drawn &= gt_flag_arr > 0
        gt_visible = np.ones((n, k), dtype=bool) if gt_flag_arr is None else gt_flag_arr == 2
        _add_ground_truth(ax, info.skeleton, kp, drawn, gt, gt_drawn, gt_visible)
    _add_markers(ax, kp, drawn, visible, np.broadcast_to(colours, (n, k)))
    if write_text:
        _add_text(ax, kp, drawn, score_arr, prob_arr)
    if img is not None:
        h, w = img.shape[:2]
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.set_axis_off()
    else:
        ax.set_aspect("equal", adjustable="datalim")
        ax.autoscale_view()
        if not ax.yaxis_inverted():
            ax.invert_yaxis()
    if legend:
        _add_legend(ax, sides, ground_truth=gt is not None)
    return ax


# ------------------------------------------------------------------ attention


def _ratio_limit(ratio: npt.NDArray[np.float64], k: int) -> float:
    """Symmetric log-range ``m`` (colours span ``[1/m, m]``): a power of two covering the data, in [2, K]."""
    positive = ratio[ratio > 0]
    spread = max(float(positive.max()), 1.0 / float(positive.min())) if positive.size else 1.0
    top = 2.0 ** math.ceil(math.log2(max(k, 2)))
    return float(min(top, max(2.0, 2.0 ** math.ceil(math.log2(max(spread, 1.0)) - 1e-9))))


def _ratio_label(value: float) -> str:
    return f"{value:g}" if value >= 1 else f"1/{1 / value:g}"


def draw_attention(
    attn: ArrayOrTensor,
    keypoint_info: KeypointSet,
    *,
    visible: ArrayOrTensor | None = None,
    ratio_limit: float | None = None,
    title: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Draw a keypoint-to-keypoint attention map relative to uniform attention, with a colourbar.

    The map shows ``K * attn``, the ratio of each weight to uniform attention ``1/K``, on a logarithmic
    diverging scale centred at 1: white is uniform, red attends more than uniform, blue less (the
    colours span ``[1/m, m]`` for ``m = ratio_limit``; ratios beyond it, exact zeros of a hard mask
    included, take the end colours, and the colourbar shows an arrow). Rows are queries, columns keys;
    tick labels are the keypoint names, coloured by body side.

    Args:
        attn: ``(K, K)`` attention weights (rows = queries, each row non-negative and summing to 1), e.g.
            one instance of ``ReasonerOutput.attn[-1]`` averaged over its heads:
            ``out.attn[-1][0].mean(0)``.
        keypoint_info: the keypoint set (a [`KeypointInfo`][visattn.keypoints.KeypointInfo], a name or a
            file).
        visible: optional ``(K,)`` visibility (bools, or COCO flags 0/1/2: visible iff ``v == 2``):
            keypoints are regrouped visible | occluded (each group in keypoint order) and the groups
            separated by lines, as the paper's attention figure.
        ratio_limit: ``m > 1``; None picks the smallest power of two covering the map's ratios, at least
            2 and at most the power of two at or above K. Fix it to compare panels on one scale.
        title: axes title.
        ax: axes to draw into; None creates a new figure (``ax.figure``).

    Returns:
        The axes; the image (gid ``"attention"``) is ``ax.images[0]``, its colourbar
        ``ax.images[0].colorbar``.

    Raises:
        ValueError: ``attn`` is not ``(K, K)`` attention weights, ``visible`` not ``(K,)``, or
            ``ratio_limit <= 1``.
        TypeError: an argument of the wrong kind or dtype.
        ImportError: matplotlib is missing (``pip install "visattn[viz]"``).

    Example:
        >>> import torch
        >>> from visattn.viz import draw_attention
        >>> attn = torch.softmax(torch.randn(17, 17), dim=-1)
        >>> ax = draw_attention(attn, "coco", title="block 3")
        >>> ax.get_ylabel(), ax.get_xticklabels()[0].get_text()
        ('query', 'nose')
    """
    _require_matplotlib()
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm

    info = get_keypoint_info(keypoint_info)
    k = info.num_keypoints
    array = _numpy("attn", attn)
    _real("attn", array, "a (K, K) array")
    if array.shape != (k, k):
        hint = " (average the heads first, e.g. attn.mean(0))" if array.ndim > 2 else ""
        raise ValueError(f"attn must be {_spec('K, K', k)}, got {tuple(array.shape)}{hint}")
    weights = array.astype(np.float64)
    if not np.isfinite(weights).all():
        raise ValueError("attn must hold finite attention weights, got NaN or inf")
    rows = weights.sum(-1)
    if weights.min() < 0 or not np.allclose(rows, 1.0, atol=2e-2):
        raise ValueError(
            "attn must hold attention weights (non-negative, each row summing to 1; softmax the scores), "
            f"got values in [{weights.min():.4g}, {weights.max():.4g}] and row sums in "
            f"[{rows.min():.4g}, {rows.max():.4g}]"
        )
    order = np.arange(k)
    n_visible = k
    if visible is not None:
        vis = _flags("visible", visible, 1, k, False)[0] == 2
        order = np.concatenate([np.flatnonzero(vis), np.flatnonzero(~vis)])
        n_visible = int(vis.sum())
    ratio = k * weights[np.ix_(order, order)]  # (K, K), 1 = uniform
    if ratio_limit is None:
        limit = _ratio_limit(ratio, k)
    else:
        limit = check_positive_float("ratio_limit", ratio_limit)
        if limit <= 1:
            raise ValueError(f"ratio_limit must be > 1 (colours span [1/m, m]), got {ratio_limit}")
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None, got {type(title).__name__}")
    if ax is None:
        side = float(np.clip(3.0 + 0.2 * k, 5.0, 16.0))
        ax = _new_axes((side * 1.15, side))
    else:
        ax = _check_axes(ax)

    # An odd number of colours puts ratio 1 in the middle of one bin, so uniform is exactly the centre colour.
    cmap = colormaps["RdBu_r"].resampled(255)
    norm = LogNorm(vmin=1.0 / limit, vmax=limit)
    image = ax.imshow(
        np.maximum(ratio, np.finfo(np.float64).tiny),
        cmap=cmap,
        norm=norm,
        interpolation="nearest",
        gid="attention",
    )
    low, high = bool((ratio < 1.0 / limit).any()), bool((ratio > limit).any())
    extend = {(False, False): "neither", (True, False): "min", (False, True): "max", (True, True): "both"}
    colourbar = ax.figure.colorbar(image, ax=ax, extend=extend[low, high], fraction=0.046, pad=0.03)
    exponent = math.floor(math.log2(limit) + 1e-9)
    step = 1 if exponent <= 5 else 2  # at most 11 ticks at each power of two or four
    ticks = [2.0 ** (step * e) for e in range(-(exponent // step), exponent // step + 1)]
    colourbar.set_ticks(ticks, labels=[_ratio_label(t) for t in ticks])
    colourbar.minorticks_off()
    colourbar.set_label("attention × K  (1 = uniform, 1/K)")

    height_pt = ax.get_position().height * _root_figure(ax).get_figheight() * 72.0
    fontsize = float(np.clip(0.7 * height_pt / k, 3.0, 8.0))
    names = [info.names[i] for i in order]
    ax.set_xticks(range(k), names, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(k), names, fontsize=fontsize)
    sides = keypoint_sides(info)
    text_colours = {"left": "#0b6fc2", "right": "#c85f00", "centre": "#222222"}
    for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
        for label, index in zip(labels, order):
            label.set_color(text_colours[sides[index]])
    if 0 < n_visible < k:
        for line in (ax.axhline, ax.axvline):
            line(n_visible - 0.5, color="black", linewidth=1.5)
        ax.set_xlabel("key (visible | occluded)")
        ax.set_ylabel("query (visible | occluded)")
    else:
        ax.set_xlabel("key")
        ax.set_ylabel("query")
    if title is not None:
        ax.set_title(title)
    return ax


# ------------------------------------------------------------------ files


def save_figure(fig: Figure | Axes, path: str | os.PathLike[str], *, dpi: float = 150) -> Path:
    """Write a figure atomically (temporary file in the same folder, then ``os.replace``).

    The format follows the suffix (``.png``, ``.pdf``, ``.svg``, ...); the image is the figure's size
    times ``dpi`` (no cropping). Missing parent folders are created. A reader never sees a partial
    file, and a failed write leaves an existing file untouched.

    Args:
        fig: the figure, or an axes of it (``draw_pose`` / ``draw_attention`` return axes).
        path: the file to write.
        dpi: dots per inch.

    Returns:
        The path written.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from visattn.keypoints import KeypointInfo
        >>> from visattn.viz import draw_attention, save_figure
        >>> pair = KeypointInfo("pair", ("a", "b"), (), ((0, 1),), (0.1, 0.1), ())
        >>> ax = draw_attention([[0.5, 0.5], [0.9, 0.1]], pair)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     save_figure(ax, Path(tmp) / "attention.png").stat().st_size > 0
        True
    """
    _require_matplotlib()
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    if not isinstance(fig, (Figure, Axes)):
        raise TypeError(f"fig must be a matplotlib Figure or Axes, got {type(fig).__name__}")
    figure = _root_figure(fig)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__} {path!r}")
    dpi = check_positive_float("dpi", dpi)
    target = Path(path)
    formats = sorted(figure.canvas.get_supported_filetypes())
    suffix = target.suffix.lower().lstrip(".")
    if suffix not in formats:
        raise ValueError(
            f"path must end in a figure format ({', '.join('.' + f for f in formats)}), got {target.name!r}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            figure.savefig(f, format=suffix, dpi=dpi)
        os.chmod(tmp, 0o644)  # mkstemp creates the file private to its owner
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
