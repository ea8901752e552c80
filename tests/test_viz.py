"""visattn.viz: poses and attention maps rendered with Agg, read back from the artists they create."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

import matplotlib.image as mpimg
from matplotlib.axes import Axes
from matplotlib.collections import Collection, LineCollection, PathCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from visattn.keypoints import COCO_KEYPOINTS, KeypointInfo
from visattn.viz import SIDE_COLOURS, draw_attention, draw_pose, keypoint_sides, save_figure

K = COCO_KEYPOINTS.num_keypoints
NAMES = COCO_KEYPOINTS.names


def _person(offset: float = 0.0) -> np.ndarray:
    """A distinct, exactly representable (K, 2) pose in a 100 x 120 image."""
    index = np.arange(K, dtype=np.float64)
    return np.stack([10.0 + 4.0 * index + offset, 20.0 + 5.0 * index], axis=-1)


def _artist(ax: Axes, gid: str) -> Any:
    found = [a for a in [*ax.collections, *ax.texts] if a.get_gid() == gid]
    assert len(found) <= 1, f"{len(found)} artists with gid {gid!r}"
    return found[0] if found else None


def _points(ax: Axes, gid: str) -> set[tuple[float, float]]:
    artist = _artist(ax, gid)
    return set() if artist is None else {tuple(p) for p in np.asarray(artist.get_offsets()).tolist()}


def _segments(ax: Axes, gid: str) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    artist = _artist(ax, gid)
    if artist is None:
        return []
    return [(tuple(s[0]), tuple(s[1])) for s in (np.asarray(seg).tolist() for seg in artist.get_segments())]


def _all_marker_points(ax: Axes) -> set[tuple[float, float]]:
    return _points(ax, "keypoints-visible") | _points(ax, "keypoints-occluded")


def _edge_colours(ax: Axes, kp: np.ndarray) -> dict[tuple[str, str], tuple[float, ...]]:
    """Colour of each drawn skeleton edge, keyed by keypoint names (either line style)."""
    lookup = {tuple(p): NAMES[i] for i, p in enumerate(kp.tolist())}
    out = {}
    for gid in ("skeleton", "skeleton-occluded"):
        artist: LineCollection | None = _artist(ax, gid)
        if artist is None:
            continue
        colours = artist.get_colors()
        for i, seg in enumerate(artist.get_segments()):
            a, b = (lookup[tuple(p)] for p in np.asarray(seg).tolist())
            out[a, b] = tuple(colours[i % len(colours)])
    return out


# ------------------------------------------------------------------ visibility


def test_flags_decide_fill_and_unlabelled_are_not_drawn() -> None:
    kp = _person()
    flags = np.full(K, 2)
    flags[[0, 13]] = 0  # nose, left_knee unlabelled
    flags[[9, 15]] = 1  # left_wrist, left_ankle occluded
    ax = draw_pose(np.zeros((120, 100, 3), np.uint8), kp, COCO_KEYPOINTS, flags=flags)

    visible: PathCollection = _artist(ax, "keypoints-visible")
    occluded: PathCollection = _artist(ax, "keypoints-occluded")
    assert _points(ax, "keypoints-visible") == {tuple(kp[i]) for i in range(K) if flags[i] == 2}
    assert _points(ax, "keypoints-occluded") == {tuple(kp[9]), tuple(kp[15])}
    # filled: opaque face colours of the keypoints' sides; hollow: no face at all, side-coloured edges
    assert visible.get_facecolors().shape == (13, 4)
    assert np.all(visible.get_facecolors()[:, 3] == 1.0)
    assert len(occluded.get_facecolors()) == 0 or np.all(occluded.get_facecolors()[:, 3] == 0.0)
    assert np.allclose(occluded.get_edgecolors(), to_rgba(SIDE_COLOURS["left"]))

    unlabelled = {tuple(kp[0]), tuple(kp[13])}
    assert not unlabelled & _all_marker_points(ax)
    ends = {p for gid in ("skeleton", "skeleton-occluded") for seg in _segments(ax, gid) for p in seg}
    assert ends
    assert not unlabelled & ends
    # edges touching an occluded keypoint are the dashed ones
    dashed = {frozenset(seg) for seg in _segments(ax, "skeleton-occluded")}
    assert frozenset({tuple(kp[7]), tuple(kp[9])}) in dashed  # left_elbow - left_wrist
    assert frozenset({tuple(kp[5]), tuple(kp[7])}) not in dashed  # left_shoulder - left_elbow
    assert len(_segments(ax, "skeleton")) + len(dashed) == sum(
        flags[a] > 0 and flags[b] > 0 for a, b in COCO_KEYPOINTS.skeleton
    )


def test_vis_probs_threshold_decides_fill_over_flags() -> None:
    kp = _person()
    probs = np.full(K, 0.9)
    probs[3] = 0.5  # exactly at the threshold: visible
    probs[4] = 0.49
    flags = np.full(K, 2)
    flags[5] = 1  # flags say occluded, the probability says visible
    flags[6] = 0  # unlabelled stays undrawn whatever the probability
    ax = draw_pose(None, torch.tensor(kp), "coco", flags=flags, vis_probs=torch.tensor(probs), threshold=0.5)
    assert _points(ax, "keypoints-occluded") == {tuple(kp[4])}
    assert tuple(kp[3]) in _points(ax, "keypoints-visible")
    assert tuple(kp[5]) in _points(ax, "keypoints-visible")
    assert tuple(kp[6]) not in _all_marker_points(ax)
    assert len(_all_marker_points(ax)) == K - 1


def test_no_visibility_draws_all_filled_and_skips_non_finite() -> None:
    kp = _person()
    kp[2] = np.nan
    ax = draw_pose(None, kp, "coco")
    assert _artist(ax, "keypoints-occluded") is None
    assert _points(ax, "keypoints-visible") == {tuple(kp[i]) for i in range(K) if i != 2}
    assert ax.yaxis_inverted()
    assert ax.get_aspect() == 1.0


# ------------------------------------------------------------------ sides and colours


def test_left_and_right_limbs_get_different_colours() -> None:
    kp = _person()
    ax = draw_pose(None, kp, COCO_KEYPOINTS)
    colours = _edge_colours(ax, kp)
    left, right, centre = (to_rgba(SIDE_COLOURS[s]) for s in ("left", "right", "centre"))
    assert len({left, right, centre}) == 3
    assert colours["left_ankle", "left_knee"] == left
    assert colours["left_elbow", "left_wrist"] == left
    assert colours["right_ankle", "right_knee"] == right
    assert colours["right_elbow", "right_wrist"] == right
    assert colours["left_shoulder", "right_shoulder"] == centre  # joins left and right
    assert colours["left_hip", "right_hip"] == centre
    assert colours["nose", "left_eye"] == left  # centre -> side takes the side
    marker_colours = {
        tuple(p): tuple(c)
        for p, c in zip(
            _artist(ax, "keypoints-visible").get_offsets(), _artist(ax, "keypoints-visible").get_facecolors()
        )
    }
    assert marker_colours[tuple(kp[0])] == centre
    assert marker_colours[tuple(kp[1])] == left
    assert marker_colours[tuple(kp[2])] == right


def test_keypoint_sides_from_names_prefixes_and_flip_pairs() -> None:
    assert keypoint_sides("coco") == ("centre",) + ("left", "right") * 8
    crowdpose = keypoint_sides("crowdpose")
    assert crowdpose[:2] == ("left", "right")
    assert crowdpose[12:] == ("centre", "centre")
    mpii = keypoint_sides("mpii")
    assert mpii[0] == "right"
    assert mpii[5] == "left"
    assert mpii[6] == "centre"
    custom = KeypointInfo(
        "custom",
        ("L_Eye", "R_Eye", "tip_a", "tip_b", "hand_left", "x", "y", "spine", "lefthand", "upright"),
        ((2, 3), (0, 5), (6, 4)),
        (),
        (0.1,) * 10,
        (),
    )
    # prefixes and words; unnamed flip pairs by their (left, right) order; a partner of a named side
    # takes the other side; "lefthand" starts with left; "upright" is not "right"
    assert keypoint_sides(custom) == (
        "left", "right", "left", "right", "left", "right", "right", "centre", "left", "centre",
    )  # fmt: skip


# ------------------------------------------------------------------ ground truth


def test_error_lines_connect_exactly_pred_to_labelled_gt() -> None:
    pred = _person()
    gt = pred + np.array([3.0, -2.0])
    gt_flags = np.full(K, 2)
    gt_flags[[4, 8]] = 0  # no ground truth there
    gt_flags[[10, 11]] = 1  # occluded ground truth
    pred[12] = np.nan  # no prediction
    ax = draw_pose(None, pred, COCO_KEYPOINTS, gt_keypoints=gt, gt_flags=gt_flags)

    expected = {(tuple(pred[i]), tuple(gt[i])) for i in range(K) if gt_flags[i] > 0 and i != 12}
    segments = _segments(ax, "error-lines")
    assert len(segments) == len(expected) == K - 3
    assert set(segments) == expected
    assert _points(ax, "gt-keypoints-occluded") == {tuple(gt[10]), tuple(gt[11])}
    assert tuple(gt[4]) not in _points(ax, "gt-keypoints-visible") | _points(ax, "gt-keypoints-occluded")
    gt_hollow: PathCollection = _artist(ax, "gt-keypoints-occluded")
    assert len(gt_hollow.get_facecolors()) == 0 or np.all(gt_hollow.get_facecolors()[:, 3] == 0.0)
    gt_ends = {p for seg in _segments(ax, "gt-skeleton") for p in seg}
    assert tuple(gt[4]) not in gt_ends
    assert tuple(gt[0]) in gt_ends


def test_several_persons_as_list_of_tensors_any_float_dtype() -> None:
    a, b = _person(), _person(offset=1.0)
    persons = [torch.tensor(a, dtype=torch.bfloat16), torch.tensor(b, dtype=torch.float16)]
    probs = torch.full((2, K), 0.8, dtype=torch.bfloat16)
    probs[1, 0] = 0.1
    ax = draw_pose(None, persons, "coco", vis_probs=probs, gt_keypoints=np.stack([a, b]))
    expected_b = torch.tensor(b, dtype=torch.float16).double().numpy()
    assert _points(ax, "keypoints-occluded") == {tuple(expected_b[0])}
    assert len(_points(ax, "keypoints-visible")) == 2 * K - 1
    assert len(_segments(ax, "error-lines")) == 2 * K
    assert len(_segments(ax, "skeleton")) + len(_segments(ax, "skeleton-occluded")) == 2 * len(
        COCO_KEYPOINTS.skeleton
    )


def test_image_axes_span_the_image_and_draw_into_given_ax() -> None:
    image = np.zeros((120, 100, 3), np.uint8)
    image[..., 0] = 200
    fig = Figure()
    axes = fig.subplots(1, 2)
    returned = draw_pose(torch.from_numpy(image), _person(), "coco", ax=axes[1], legend=True)
    assert returned is axes[1]
    assert not axes[0].has_data()
    assert np.array_equal(np.asarray(returned.images[0].get_array()), image)
    assert returned.get_xlim() == (-0.5, 99.5)
    assert returned.get_ylim() == (119.5, -0.5)
    assert not returned.axison
    labels = [t.get_text() for t in returned.get_legend().get_texts()]
    assert labels == ["left", "right", "centre", "visible", "occluded"]


def test_score_text() -> None:
    kp = _person()
    scores = np.linspace(0.0, 1.0, K)
    flags = np.full(K, 2)
    flags[1] = 0
    ax = draw_pose(None, kp, "coco", flags=flags, scores=scores)  # text by default when scores given
    texts = [t.get_text() for t in ax.texts if t.get_gid() == "keypoint-text"]
    assert texts == [f"{scores[i]:.2f}" for i in range(K) if i != 1]
    ax = draw_pose(None, kp, "coco", vis_probs=np.full(K, 0.25), scores=scores, score_text=True)
    assert ax.texts[0].get_text() == "0.00 v=0.25"
    assert ax.texts[0].xy == tuple(kp[0])
    assert not draw_pose(None, kp, "coco", scores=scores, score_text=False).texts
    with pytest.raises(ValueError, match="score_text=True needs scores or vis_probs"):
        draw_pose(None, kp, "coco", score_text=True)


# ------------------------------------------------------------------ attention


def test_uniform_attention_maps_to_the_centre_colour_of_a_log_scale() -> None:
    ax = draw_attention(torch.full((K, K), 1.0 / K, dtype=torch.bfloat16), COCO_KEYPOINTS)
    image = ax.images[0]
    assert image.get_gid() == "attention"
    norm = image.norm
    assert norm.vmin == pytest.approx(1.0 / norm.vmax)
    assert norm.vmax > 1
    assert float(norm(1.0)) == pytest.approx(0.5)
    assert norm(norm.vmin / 4) < 0
    assert norm(norm.vmax * 4) > 1
    rgba = image.to_rgba(np.asarray(image.get_array()))
    centre = image.cmap(0.5)
    assert np.allclose(rgba, centre)
    assert min(centre[:3]) > 0.9  # the centre of the diverging map is (near) white
    colourbar = image.colorbar
    assert colourbar is not None
    assert "uniform" in colourbar.ax.get_ylabel()
    tick_labels = [t.get_text() for t in colourbar.ax.get_yticklabels()]
    assert "1" in tick_labels
    assert "1/2" in tick_labels
    assert "2" in tick_labels
    assert [t.get_text() for t in ax.get_xticklabels()] == list(NAMES)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(NAMES)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("key", "query")


def test_attention_above_and_below_uniform_get_opposite_colours() -> None:
    attn = np.full((K, K), 1.0 / K)
    attn[0] = 0.0
    attn[0, 3] = 1.0  # query 0 attends only to key 3 (K times uniform), not at all elsewhere
    ax = draw_attention(attn, "coco", title="peaked")
    image = ax.images[0]
    rgba = image.to_rgba(np.asarray(image.get_array()))
    red, _green, blue = rgba[0, 3, :3]
    assert red > 0.4
    assert red > blue + 0.3
    assert rgba[0, 0, 2] > rgba[0, 0, 0] + 0.3  # zero attention: blue end
    assert np.allclose(rgba[1, 1], image.cmap(0.5))
    assert image.norm.vmax == 32.0  # the power of two at or above K
    assert image.colorbar.extend == "min"  # zeros lie below the range
    assert ax.get_title() == "peaked"


def test_attention_grouped_by_visibility_and_fixed_ratio_limit() -> None:
    flags = np.full(K, 2)
    flags[[1, 4]] = 1
    attn = torch.softmax(torch.randn(K, K), dim=-1)
    ax = draw_attention(attn, "coco", visible=flags, ratio_limit=4)
    order = [i for i in range(K) if flags[i] == 2] + [1, 4]
    assert [t.get_text() for t in ax.get_yticklabels()] == [NAMES[i] for i in order]
    shown = np.asarray(ax.images[0].get_array())
    assert np.allclose(shown, K * attn.double().numpy()[np.ix_(order, order)])
    assert len(ax.lines) == 2
    assert ax.lines[0].get_ydata()[0] == K - 2.5
    assert ax.images[0].norm.vmax == 4.0
    assert "visible | occluded" in ax.get_xlabel()


@pytest.mark.parametrize(
    ("attn", "match"),
    [
        (np.full((2, K, K), 1.0 / K), r"attn must be \(K, K\) with K=17, got \(2, 17, 17\).*mean\(0\)"),
        (np.full((16, 16), 1.0 / 16), r"attn must be \(K, K\) with K=17, got \(16, 16\)"),
        (np.ones((K, K)), r"attn must hold attention weights.*row sums in \[17, 17\]"),
        (np.full((K, K), np.nan), "attn must hold finite"),
    ],
)
def test_attention_bad_input(attn: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        draw_attention(attn, "coco")


def test_attention_bad_options() -> None:
    uniform = np.full((K, K), 1.0 / K)
    with pytest.raises(ValueError, match=r"ratio_limit must be > 1"):
        draw_attention(uniform, "coco", ratio_limit=1.0)
    with pytest.raises(ValueError, match=r"visible must be \(K,\) with K=17.*got \(16,\)"):
        draw_attention(uniform, "coco", visible=np.ones(16, bool))
    with pytest.raises(TypeError, match=r"attn must be .* real numbers"):
        draw_attention(np.full((K, K), "a"), "coco")


# ------------------------------------------------------------------ bad pose input


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"keypoints": np.zeros((16, 2))},
            ValueError,
            r"keypoints must be \(K, 2\) with K=17.*got \(16, 2\)",
        ),
        ({"keypoints": np.zeros((K, 3))}, ValueError, r"keypoints must be .*got \(17, 3\)"),
        (
            {"keypoints": np.zeros((K, 2), bool)},
            TypeError,
            "keypoints must be .* real numbers, got dtype bool",
        ),
        (
            {"flags": np.full(16, 2)},
            ValueError,
            r"flags must be \(K,\) with K=17 like the keypoints, got \(16,\)",
        ),
        ({"flags": np.full(K, 3)}, ValueError, r"flags must hold COCO flags in \{0, 1, 2\}.*\[3.0\]"),
        (
            {"vis_probs": np.full(K, 2.5)},
            ValueError,
            r"vis_probs must hold probabilities in \[0, 1\].*sigmoid",
        ),
        ({"scores": np.ones((2, K))}, ValueError, r"scores must be \(K,\) with K=17"),
        ({"gt_keypoints": np.zeros((2, K, 2))}, ValueError, r"gt_keypoints must be shaped like keypoints"),
        ({"gt_flags": np.full(K, 2)}, ValueError, "gt_flags needs gt_keypoints"),
        ({"threshold": 1.5}, ValueError, r"threshold must be in \[0, 1\], got 1.5"),
        (
            {"image": np.zeros((3, 120, 100), np.uint8)},
            ValueError,
            r"image must be \(H, W, 3\).*channels first",
        ),
        ({"image": np.zeros((120, 100, 3), np.float32)}, TypeError, "image must be .* uint8.*float32"),
        ({"image": torch.zeros(120, 100, 3)}, TypeError, r"image must be .* uint8.*torch\.float32"),
        (
            {"image": np.zeros((120, 100), np.uint8)},
            ValueError,
            r"image must be \(H, W, 3\).*got \(120, 100\)",
        ),
        ({"ax": "axes"}, TypeError, "ax must be a matplotlib Axes"),
        ({"keypoint_info": "no_such_set"}, ValueError, "keypoint set must be one of"),
    ],
)
def test_draw_pose_bad_input_names_the_argument(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    arguments: dict[str, Any] = {"image": None, "keypoints": _person(), "keypoint_info": "coco", **kwargs}
    with pytest.raises(error, match=match):
        draw_pose(
            arguments.pop("image"), arguments.pop("keypoints"), arguments.pop("keypoint_info"), **arguments
        )


def test_several_persons_need_per_person_arrays() -> None:
    with pytest.raises(
        ValueError, match=r"flags must be \(N, K\) with K=17, N=2 like the keypoints, got \(17,\)"
    ):
        draw_pose(None, [_person(), _person(1.0)], "coco", flags=np.full(K, 2))
    with pytest.raises(ValueError, match="keypoints must list arrays of one shape"):
        draw_pose(None, [_person(), _person()[:16]], "coco")


# ------------------------------------------------------------------ files and the extra


def test_save_figure_writes_a_png_of_the_figure_size(tmp_path: Path) -> None:
    ax = draw_pose(
        np.zeros((60, 80, 3), np.uint8), _person() / 3, "coco", ax=Figure(figsize=(4, 3)).add_subplot()
    )
    target = tmp_path / "nested" / "pose.png"
    assert save_figure(ax, target, dpi=50) == target  # an Axes is accepted, parents are created
    decoded = mpimg.imread(target)
    assert decoded.shape[:2] == (150, 200)
    assert sorted(p.name for p in target.parent.iterdir()) == ["pose.png"]  # no temporary file left
    save_figure(ax.figure, target, dpi=20)  # overwrites
    assert mpimg.imread(target).shape[:2] == (60, 80)


def test_save_figure_is_atomic_and_checks_its_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fig = Figure(figsize=(2, 2))
    target = tmp_path / "fig.png"
    target.write_bytes(b"old")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        save_figure(fig, target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["fig.png"]
    with pytest.raises(ValueError, match=r"path must end in a figure format .*got 'fig\.xyz'"):
        save_figure(Figure(), tmp_path / "fig.xyz")
    with pytest.raises(TypeError, match="fig must be a matplotlib Figure or Axes"):
        save_figure("figure", target)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dpi must be a finite number > 0"):
        save_figure(Figure(), target, dpi=0)


def test_missing_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    for call in (
        lambda: draw_pose(None, _person(), "coco"),
        lambda: draw_attention(np.full((K, K), 1.0 / K), "coco"),
        lambda: save_figure(object(), "x.png"),  # type: ignore[arg-type]
    ):
        with pytest.raises(ImportError, match=r'pip install "visattn\[viz\]"'):
            call()


def test_collections_are_plain_matplotlib_artists() -> None:
    ax = draw_pose(None, _person(), "coco", gt_keypoints=_person(2.0))
    gids = {c.get_gid() for c in ax.collections}
    assert gids == {"skeleton", "keypoints-visible", "gt-skeleton", "gt-keypoints-visible", "error-lines"}
    assert all(isinstance(c, Collection) for c in ax.collections)
