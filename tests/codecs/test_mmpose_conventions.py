"""Where visattn's codecs meet other code's conventions: the border rules, maps without a positive
maximum, and the keypoint-weight band near the crop edge (docs/differences.md, "The field's
conventions"). The other rules are written out here as loops from their documented definitions."""

from __future__ import annotations

import pytest
import torch

from visattn.codecs import heatmap_decode, heatmap_encode, simcc_decode, simcc_encode

HF, WF = 8, 6
INPUT = (32, 24)  # stride 4


def peak_map(i: int, j: int, *, base: float = 0.0) -> torch.Tensor:
    """``(1, 1, HF, WF)`` map with its maximum at ``(i, j)``, a larger right and lower neighbour."""
    h = torch.full((1, 1, HF, WF), base - 1.0)
    h[0, 0, i, j] = base + 1.0
    if j + 1 < WF:
        h[0, 0, i, j + 1] = base + 0.5
    if j - 1 >= 0:
        h[0, 0, i, j - 1] = base + 0.2
    if i + 1 < HF:
        h[0, 0, i + 1, j] = base + 0.5
    if i - 1 >= 0:
        h[0, 0, i - 1, j] = base + 0.2
    return h


def visattn_shift(i: int, j: int) -> tuple[float, float]:
    """visattn's rule: each axis shifts when the argmax has both neighbours on that axis."""
    return (0.25 if 0 < j < WF - 1 else 0.0), (0.25 if 0 < i < HF - 1 else 0.0)


def mmpose_shift(i: int, j: int) -> tuple[float, float]:
    """MMPose's refine_keypoints as documented: x if 1 < j < W-1 and i > 0; y if 1 < i < H-1 and j > 0."""
    return (0.25 if 1 < j < WF - 1 and i > 0 else 0.0), (0.25 if 1 < i < HF - 1 and j > 0 else 0.0)


def simplebaseline_shift(i: int, j: int) -> tuple[float, float]:
    """SimpleBaseline: both axes, only when 1 < j < W-1 and 1 < i < H-1."""
    inside = 1 < j < WF - 1 and 1 < i < HF - 1
    return (0.25, 0.25) if inside else (0.0, 0.0)


@pytest.mark.parametrize("j", [0, 1, WF - 2, WF - 1])
def test_quarter_offset_at_border_columns(j: int) -> None:
    kp, score = heatmap_decode(peak_map(3, j), INPUT)
    dx, dy = visattn_shift(3, j)
    assert kp[0, 0].tolist() == [(j + dx) * 4.0, (3 + dy) * 4.0]
    assert score.item() == 1.0
    assert dx == (0.0 if j in (0, WF - 1) else 0.25)  # column 1 and Wf - 2 shift, the ends do not


@pytest.mark.parametrize("i", [0, 1, HF - 2, HF - 1])
def test_quarter_offset_at_border_rows(i: int) -> None:
    kp, _ = heatmap_decode(peak_map(i, 2), INPUT)
    dx, dy = visattn_shift(i, 2)
    assert kp[0, 0].tolist() == [(2 + dx) * 4.0, (i + dy) * 4.0]
    assert dy == (0.0 if i in (0, HF - 1) else 0.25)


def test_quarter_offset_differs_from_mmpose_and_simplebaseline_only_near_the_border() -> None:
    for i in range(HF):
        for j in range(WF):
            kp, _ = heatmap_decode(peak_map(i, j), INPUT)
            got = (kp[0, 0, 0].item() / 4.0 - j, kp[0, 0, 1].item() / 4.0 - i)
            assert got == visattn_shift(i, j)
            if i > 1 and j > 1:
                assert got == mmpose_shift(i, j), (i, j)
            if 1 < i < HF - 1 and 1 < j < WF - 1:
                assert got == simplebaseline_shift(i, j), (i, j)
    # the documented differences, one cell each
    assert visattn_shift(3, 1) != mmpose_shift(3, 1)  # column 1
    assert visattn_shift(0, 3) != mmpose_shift(0, 3)  # row 0: MMPose does not shift x either
    assert visattn_shift(3, WF - 1) != simplebaseline_shift(3, WF - 1)  # last column: no y shift there


@pytest.mark.parametrize("refinement", ["quarter", "dark"])
def test_all_zero_map_decodes_to_the_first_cell_with_score_zero(refinement: str) -> None:
    kp, score = heatmap_decode(torch.zeros(2, 3, HF, WF), INPUT, refinement=refinement)
    assert kp.tolist() == [[[0.0, 0.0]] * 3] * 2
    assert score.tolist() == [[0.0] * 3] * 2


def test_negative_map_decodes_its_argmax_and_keeps_the_negative_score() -> None:
    h = peak_map(4, 3, base=-5.0)  # every value < 0, maximum -4 at (4, 3)
    kp, score = heatmap_decode(h, INPUT)
    assert kp[0, 0].tolist() == [3.25 * 4.0, 4.25 * 4.0]
    assert score.item() == -4.0
    # MMPose's marker, from the score, as docs/differences.md shows
    kp[score <= 0] = -1.0
    assert kp[0, 0].tolist() == [-1.0, -1.0]


def test_simcc_decode_with_negative_logits_keeps_the_argmax_and_a_probability() -> None:
    x = torch.full((1, 1, 8), -30.0)
    x[0, 0, 5] = -10.0
    y = torch.full((1, 1, 6), -30.0)
    y[0, 0, 1] = -20.0
    kp, score = simcc_decode(x, y, 2.0)
    assert kp.tolist() == [[[2.5, 0.5]]]
    assert 0.9 < score.item() <= 1.0  # min of the two max probabilities, not the raw logits


# ---------------------------------------------------------------------------------------------------
# keypoint weights near the crop edge: the worked example of docs/differences.md


def visattn_keep(mu: float, num: int, sigma: float) -> bool:
    """visattn: the 3-sigma window [mu - 3s, mu + 3s] overlaps [0, num - 1]."""
    return mu + 3 * sigma >= 0 and mu - 3 * sigma <= num - 1


def msra_keep(mu: float, num: int, sigma: float) -> bool:
    """MMPose MSRAHeatmap and SimpleBaseline: centre int(mu + 0.5) (toward zero), window [m - 3s, m + 3s]."""
    m = int(mu + 0.5)
    return not (int(m - 3 * sigma) >= num or int(m + 3 * sigma + 1) < 0)


def unbiased_keep(mu: float, num: int, sigma: float) -> bool:
    """MMPose MSRAHeatmap(unbiased=True): the same window around the unrounded centre."""
    return not (mu - 3 * sigma >= num or mu + 3 * sigma + 1 < 0)


def simcc_label_keep(mu: float, num: int, sigma: float) -> bool:
    """MMPose SimCCLabel: centre rounded half to even (numpy's around), window [m - 3s, m + 3s + 1)."""
    m = round(mu)
    return not (m - 3 * sigma >= num or m + 3 * sigma + 1 < 0)


def authors_simcc_keep(x_px: float, size_px: int, sigma_bins: float) -> bool:
    """The authors' SimCC rule: a window of 3 sigma (sigma in bins) around the keypoint in crop pixels."""
    return not (int(x_px - 3 * sigma_bins) >= size_px or int(x_px + 3 * sigma_bins + 1) < 0)


# The worked example of docs/differences.md: x in crop pixels of a 256x192 crop ->
# (SimCC split 2, sigma 6 bins: visattn, MMPose SimCCLabel, authors;
#  heatmap 64x48 (stride 4), sigma 2: visattn, MMPose MSRAHeatmap = SimpleBaseline, MMPose unbiased)
WEIGHT_TABLE = {
    -34.0: (0, 0, 0, 0, 0, 0),
    -30.0: (0, 0, 0, 0, 1, 0),
    -26.0: (0, 0, 0, 0, 1, 1),
    -12.0: (0, 0, 1, 1, 1, 1),
    -9.5: (0, 1, 1, 1, 1, 1),
    -9.0: (1, 1, 1, 1, 1, 1),
    200.6: (0, 1, 1, 1, 1, 1),
    205.0: (0, 0, 1, 1, 1, 1),
    212.0: (0, 0, 0, 1, 1, 1),
    213.0: (0, 0, 0, 0, 1, 1),
    214.0: (0, 0, 0, 0, 0, 1),
    216.0: (0, 0, 0, 0, 0, 0),
}


def test_weight_bands_worked_example() -> None:
    xs = torch.tensor(list(WEIGHT_TABLE), dtype=torch.float64)
    kp = torch.stack((xs, torch.full_like(xs, 128.0)), dim=-1)
    flags = torch.full((len(xs),), 2)
    simcc = simcc_encode(kp, flags, (256, 192), split_ratio=2.0, sigma=6.0).weights.tolist()
    heat = heatmap_encode(kp, flags, (256, 192), (64, 48), sigma=2.0).weights.tolist()
    for (x, row), ws, wh in zip(WEIGHT_TABLE.items(), simcc, heat):
        ours, mmpose, authors, ours_hm, msra, unbiased = row
        assert (ws, wh) == (ours, ours_hm), x
        assert visattn_keep(2 * x, 384, 6.0) == bool(ours), x
        assert simcc_label_keep(2 * x, 384, 6.0) == bool(mmpose), x
        assert authors_simcc_keep(x, 192, 6.0) == bool(authors), x
        assert visattn_keep(x / 4, 48, 2.0) == bool(ours_hm), x
        assert msra_keep(x / 4, 48, 2.0) == bool(msra), x
        assert unbiased_keep(x / 4, 48, 2.0) == bool(unbiased), x


@pytest.mark.parametrize("codec", ["simcc", "heatmap"])
def test_encoders_follow_the_visattn_band_on_a_dense_sweep(codec: str) -> None:
    xs = torch.arange(-40.0, 240.0, 0.25, dtype=torch.float64)
    kp = torch.stack((xs, torch.full_like(xs, 128.0)), dim=-1)
    flags = torch.full((len(xs),), 2)
    if codec == "simcc":
        weights = simcc_encode(kp, flags, (256, 192), split_ratio=2.0, sigma=6.0).weights
        expected = [visattn_keep(2 * x, 384, 6.0) for x in xs.tolist()]
    else:
        weights = heatmap_encode(kp, flags, (256, 192), (64, 48), sigma=2.0).weights
        expected = [visattn_keep(x / 4, 48, 2.0) for x in xs.tolist()]
    assert weights.tolist() == [float(e) for e in expected]
