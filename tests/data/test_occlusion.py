from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tests.helpers import flat_fields
from visattn.codecs import SimCCCodec
from visattn.data import (
    OCCLUDER_KINDS,
    AugmentConfig,
    OcclusionResult,
    RandomOcclusion,
    TopDownCocoDataset,
    TopDownCollate,
    make_synthetic_coco,
    occlude_batch,
)

H, W = 64, 48
ALWAYS = {"prob": 1.0, "count": (2, 3)}


def _batch(
    b: int = 8, k: int = 17, *, seed: int = 0, dtype: torch.dtype = torch.uint8
) -> tuple[torch.Tensor, ...]:
    """Random-noise crops, keypoints partly outside the crop, flags with every value."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (b, 3, H, W), generator=g, dtype=torch.uint8)
    if dtype != torch.uint8:
        images = (images.to(dtype) / 255 - 0.45) / 0.225
    keypoints = torch.rand(b, k, 2, generator=g) * torch.tensor([W + 8.0, H + 8.0]) - 4.0
    flags = torch.randint(0, 3, (b, k), generator=g)
    return images, keypoints, flags


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _oracle_flags(
    keypoints: torch.Tensor, flags: torch.Tensor, coverage: torch.Tensor, mode: str
) -> tuple[list[list[int]], list[list[bool]]]:
    """The covered rule and both label modes, one keypoint at a time."""
    h, w = coverage.shape[1:]
    new, covered = [], []
    for b in range(flags.shape[0]):
        row_f, row_c = [], []
        for k in range(flags.shape[1]):
            v = int(flags[b, k])
            x, y = round(float(keypoints[b, k, 0])), round(float(keypoints[b, k, 1]))
            hit = v > 0 and 0 <= x < w and 0 <= y < h and bool(coverage[b, y, x])
            row_c.append(hit)
            if v == 0:
                row_f.append(0)
            elif hit:
                row_f.append(1)
            else:
                row_f.append(v if mode == "update" else 2)
        new.append(row_f)
        covered.append(row_c)
    return new, covered


@pytest.mark.parametrize("mode", ["update", "coverage"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_flags_follow_the_coverage_mask(mode: str, dtype: torch.dtype) -> None:
    images, keypoints, flags = _batch(16, dtype=dtype)
    copies = [t.clone() for t in (images, keypoints, flags)]
    out = occlude_batch(images, keypoints, flags, generator=_gen(1), label_mode=mode, **ALWAYS)  # type: ignore[arg-type]
    assert isinstance(out, OcclusionResult)
    for before, after in zip(copies, (images, keypoints, flags)):
        assert torch.equal(before, after)  # nothing modified in place, coordinates untouched
    assert out.images.dtype == dtype
    assert out.images.shape == images.shape
    assert out.flags.dtype == flags.dtype
    assert out.covered.dtype == torch.bool
    assert out.coverage.shape == (16, H, W)
    assert out.coverage.dtype == torch.bool
    expected_flags, expected_covered = _oracle_flags(keypoints, flags, out.coverage, mode)
    assert out.flags.tolist() == expected_flags
    assert out.covered.tolist() == expected_covered
    assert out.covered.any()
    assert (~out.covered & (flags > 0)).any()
    # pixels outside the coverage mask are unchanged
    outside = ~out.coverage.unsqueeze(1).expand_as(images)
    assert torch.equal(out.images[outside], images[outside])


@pytest.mark.parametrize("kinds", [("rectangle",), ("ellipse",), ("rectangle", "ellipse"), ("patch",)])
def test_shapes_change_every_pixel_they_cover(kinds: tuple[str, ...]) -> None:
    images, keypoints, flags = _batch(1 if kinds == ("patch",) else 8)  # B = 1: patches fall back to shapes
    out = occlude_batch(images, keypoints, flags, generator=_gen(2), kinds=kinds, **ALWAYS)  # type: ignore[arg-type]
    assert out.coverage.any()
    changed = (out.images != images).any(1)  # (B, H, W)
    assert torch.equal(changed, out.coverage)  # random colours over noise: no pixel keeps its value


def test_bars_change_almost_every_pixel_they_cover() -> None:
    # a bar takes the crop's colour at its keypoint, so that pixel (and rare equal ones) may keep its value
    images, keypoints, flags = _batch(8)
    out = occlude_batch(images, keypoints, flags, generator=_gen(3), kinds=("bar",), **ALWAYS)  # type: ignore[arg-type]
    changed = (out.images != images).any(1)
    assert not (changed & ~out.coverage).any()
    assert changed[out.coverage].float().mean() > 0.97


def test_patches_come_from_other_crops_of_the_batch() -> None:
    b = 6
    _, keypoints, flags = _batch(b)
    colours = torch.arange(b, dtype=torch.uint8).mul(40).add(10)  # crop i is constant 10 + 40 i
    images = colours.view(b, 1, 1, 1).expand(b, 3, H, W).clone()
    out = occlude_batch(images, keypoints, flags, generator=_gen(4), kinds=("patch",), **ALWAYS)  # type: ignore[arg-type]
    assert out.coverage.any(dim=(1, 2)).all()
    for i in range(b):
        values = set(out.images[i, 0][out.coverage[i]].tolist())
        assert values
        assert values <= set(colours.tolist()) - {int(colours[i])}
        assert len(values) == 1  # one donor per crop


def test_probability_zero_and_one() -> None:
    images, keypoints, flags = _batch(8)
    none = occlude_batch(images, keypoints, flags, generator=_gen(0), prob=0.0)
    assert torch.equal(none.images, images)
    assert torch.equal(none.flags, flags)
    assert not none.coverage.any()
    assert not none.covered.any()
    labels = occlude_batch(images, keypoints, flags, generator=_gen(0), prob=0.0, label_mode="coverage")
    assert torch.equal(labels.flags, (flags > 0).long() * 2)
    every = occlude_batch(images, keypoints, flags, generator=_gen(0), prob=1.0, count=(1, 1))
    assert every.coverage.any(dim=(1, 2)).all()


def test_occluders_are_placed_on_labelled_keypoints() -> None:
    images, keypoints, flags = _batch(64)
    out = occlude_batch(images, keypoints, flags, generator=_gen(5), prob=1.0, count=(1, 1))
    # with one occluder per crop near one of its labelled keypoints, most crops get a keypoint covered
    has_labelled = (
        (flags > 0) & (keypoints >= 0).all(2) & (keypoints[..., 0] < W) & (keypoints[..., 1] < H)
    ).any(1)
    assert out.covered.any(1)[has_labelled].float().mean() > 0.8


def test_determinism_and_class_equals_function() -> None:
    images, keypoints, flags = _batch(8)
    a = occlude_batch(images, keypoints, flags, generator=_gen(7))
    b = occlude_batch(images, keypoints, flags, generator=_gen(7))
    c = occlude_batch(images, keypoints, flags, generator=_gen(8))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a.images, c.images)
    settings: dict[str, Any] = {"prob": 0.7, "count": (1, 2), "scale": (0.2, 0.3), "kinds": ("bar", "patch")}
    occ = RandomOcclusion(**settings, label_mode="coverage")
    for x, y in zip(
        occ(images, keypoints, flags, generator=_gen(9)),
        occlude_batch(images, keypoints, flags, generator=_gen(9), label_mode="coverage", **settings),
    ):
        assert torch.equal(x, y)


def test_float_images_keep_their_value_range() -> None:
    images, keypoints, flags = _batch(8, dtype=torch.float64)
    out = occlude_batch(images, keypoints, flags, generator=_gen(1), kinds=("rectangle", "ellipse"), **ALWAYS)  # type: ignore[arg-type]
    assert out.images.dtype == torch.float64
    lo, hi = images.amin(dim=(0, 2, 3)), images.amax(dim=(0, 2, 3))
    assert (out.images >= lo.view(1, 3, 1, 1)).all()
    assert (out.images <= hi.view(1, 3, 1, 1)).all()


def test_edge_cases_empty_batch_one_keypoint_no_labels() -> None:
    images, keypoints, flags = _batch(0)
    out = occlude_batch(images, keypoints, flags, generator=_gen(0), **ALWAYS)  # type: ignore[arg-type]
    assert out.images.shape == (0, 3, H, W)
    assert out.flags.shape == (0, 17)
    assert out.coverage.shape == (0, H, W)
    images, keypoints, flags = _batch(4, k=1)
    out = occlude_batch(images, keypoints, flags, generator=_gen(0), **ALWAYS)  # type: ignore[arg-type]
    assert out.flags.shape == (4, 1)
    assert out.flags.tolist() == _oracle_flags(keypoints, flags, out.coverage, "update")[0]
    images, keypoints, _ = _batch(4)
    zeros = torch.zeros(4, 17, dtype=torch.int64)
    out = occlude_batch(images, keypoints, zeros, generator=_gen(0), label_mode="coverage", **ALWAYS)  # type: ignore[arg-type]
    assert out.coverage.any()
    assert not out.flags.any()
    assert not out.covered.any()


def _sample_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    keypoints = rng.random((17, 2)) * [W, H]
    flags = rng.integers(0, 3, 17)
    return image, keypoints, flags


@pytest.mark.parametrize("mode", ["update", "coverage"])
def test_per_sample_path(mode: str) -> None:
    image, keypoints, flags = _sample_inputs()
    image_before = image.copy()
    occ = RandomOcclusion(prob=1.0, count=(3, 3), label_mode=mode)
    crop, new_flags, covered = occ.occlude_sample(image, keypoints, flags, np.random.default_rng(3))
    assert np.array_equal(image, image_before)
    assert crop.shape == image.shape
    assert crop.dtype == np.uint8
    changed = (crop != image).any(2)
    assert changed.any()
    for k in range(17):
        x, y = round(keypoints[k, 0]), round(keypoints[k, 1])
        if flags[k] == 0:
            assert new_flags[k] == 0
            assert not covered[k]
        elif covered[k]:
            assert new_flags[k] == 1
        else:
            assert new_flags[k] == (flags[k] if mode == "update" else 2)
            assert not changed[y, x]  # a pixel that changed is under an occluder
    again = occ.occlude_sample(image, keypoints, flags, np.random.default_rng(3))
    other = occ.occlude_sample(image, keypoints, flags, np.random.default_rng(4))
    assert all(np.array_equal(x, y) for x, y in zip((crop, new_flags, covered), again))
    assert not np.array_equal(crop, other[0])


def test_per_sample_patches_from_the_crop_and_from_a_source() -> None:
    image = np.zeros((H, W, 3), np.uint8)
    image[:, : W // 2] = 50  # two flat halves: a self-patch shows the colours of the crop only
    image[:, W // 2 :] = 200
    keypoints = np.full((17, 2), [W / 4, H / 2])
    flags = np.full(17, 2)
    occ = RandomOcclusion(prob=1.0, count=(3, 3), kinds=("patch",))
    crop, _, covered = occ.occlude_sample(image, keypoints, flags, np.random.default_rng(0))
    assert set(np.unique(crop).tolist()) <= {50, 200}
    assert covered.all()
    source = np.full((2, H, W, 3), 123, np.uint8)
    crop, _, _ = occ.occlude_sample(image, keypoints, flags, np.random.default_rng(0), patch_source=source)
    assert 123 in crop
    assert set(np.unique(crop).tolist()) <= {50, 200, 123}


def _bad(**overrides: Any) -> dict[str, Any]:
    images, keypoints, flags = _batch(2)
    args: dict[str, Any] = {"images": images, "keypoints": keypoints, "flags": flags}
    args.update(overrides)
    return args


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"images": np.zeros((2, 3, H, W))}, TypeError, "images must be a torch.Tensor"),
        (
            {"images": torch.zeros(2, 3, H, W, dtype=torch.int32)},
            TypeError,
            "images must be a uint8 or floating",
        ),
        (
            {"images": torch.zeros(2, 4, H, W, dtype=torch.uint8)},
            ValueError,
            r"images must be \(B, 3, H, W\)",
        ),
        ({"images": torch.zeros(3, H, W, dtype=torch.uint8)}, ValueError, r"got \(3, 64, 48\)"),
        ({"keypoints": torch.zeros(2, 17, 2, dtype=torch.int64)}, TypeError, "keypoints must be a floating"),
        ({"keypoints": torch.zeros(3, 17, 2)}, ValueError, r"keypoints must be \(B, K, 2\) with B=2"),
        ({"keypoints": torch.zeros(2, 17, 3)}, ValueError, r"got \(2, 17, 3\)"),
        ({"flags": torch.ones(2, 17, dtype=torch.bool)}, TypeError, "flags must be an integer.*torch.bool"),
        ({"flags": torch.ones(2, 17)}, TypeError, "flags must be an integer.*torch.float32"),
        ({"flags": torch.ones(2, 16, dtype=torch.int64)}, ValueError, r"K=17.*got \(2, 16\)"),
        ({"flags": torch.full((2, 17), 3)}, ValueError, r"flags must hold COCO flags.*\[3.0\]"),
        ({"generator": np.random.default_rng(0)}, TypeError, "generator must be a torch.Generator"),
        ({"prob": 1.5}, ValueError, r"prob must be in \[0, 1\], got 1.5"),
        ({"prob": -0.1}, ValueError, "prob must be in"),
        ({"prob": "half"}, TypeError, "prob must be a number"),
        ({"count": (3, 1)}, ValueError, r"count must be a pair.*got \(3, 1\)"),
        ({"count": (0, 0)}, ValueError, "count must be .*hi >= 1"),
        ({"count": (1.0, 2)}, TypeError, "count must be a pair"),
        ({"count": 2}, TypeError, "count must be a pair"),
        ({"scale": (0.0, 0.2)}, ValueError, r"scale must be .*0 < lo"),
        ({"scale": (0.2, 1.5)}, ValueError, r"scale must be .*got \(0.2, 1.5\)"),
        ({"kinds": "bar"}, TypeError, "kinds must be a non-empty sequence"),
        ({"kinds": ()}, TypeError, "kinds must be a non-empty sequence"),
        ({"kinds": ("bar", "star")}, ValueError, r"kinds must be one of .*'star'"),
        ({"kinds": ("bar", "bar")}, ValueError, "kinds must not repeat"),
        ({"label_mode": "visible"}, ValueError, r"label_mode must be one of \['update', 'coverage'\]"),
    ],
)
def test_bad_input_names_the_argument(overrides: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        occlude_batch(**_bad(**overrides))


def test_class_validates_settings_and_sample_inputs() -> None:
    with pytest.raises(ValueError, match="prob must be in"):
        RandomOcclusion(prob=2.0)
    with pytest.raises(ValueError, match="kinds must be one of"):
        RandomOcclusion(kinds=("cloud",))
    assert RandomOcclusion(kinds=["bar"]).kinds == ("bar",)  # type: ignore[arg-type]
    assert set(RandomOcclusion().kinds) == set(OCCLUDER_KINDS)
    occ = RandomOcclusion()
    image, keypoints, flags = _sample_inputs()
    rng = np.random.default_rng(0)
    with pytest.raises(TypeError, match=r"rng must be a numpy\.random\.Generator"):
        occ.occlude_sample(image, keypoints, flags, 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="image must be a uint8 numpy array"):
        occ.occlude_sample(image.astype(np.float32), keypoints, flags, rng)
    with pytest.raises(ValueError, match=r"image must be \(H, W, 3\)"):
        occ.occlude_sample(image[..., :2], keypoints, flags, rng)
    with pytest.raises(TypeError, match="flags must be an integer array"):
        occ.occlude_sample(image, keypoints, flags > 0, rng)
    with pytest.raises(ValueError, match=r"keypoints must be \(K, 2\)"):
        occ.occlude_sample(image, keypoints[:, :1], flags, rng)
    with pytest.raises(ValueError, match=r"flags must be \(B, K\) with B=1, K=17"):
        occ.occlude_sample(image, keypoints, flags[:5], rng)
    with pytest.raises(ValueError, match="patch_source must be"):
        occ.occlude_sample(image, keypoints, flags, rng, patch_source=image[None, :10])


# ---------------------------------------------------------------- dataset switch
SIZE = (64, 48)
AUG = AugmentConfig(flip_prob=0.5, half_body_prob=0.5, rotation_prob=0.8)


@pytest.fixture(scope="module")
def ann(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_coco(tmp_path_factory.mktemp("occlusion"), 6, seed=4, image_size=(96, 128))


def _dataset(ann: Path, **kw: Any) -> TopDownCocoDataset:
    base: dict[str, Any] = {"input_size": SIZE, "train": True, "augment": AUG, "seed": 3}
    base.update(kw)
    return TopDownCocoDataset(ann, ann.parent / "images", **base)


@pytest.mark.parametrize("mode", ["update", "coverage"])
def test_dataset_switch_updates_flags_only(ann: Path, mode: str) -> None:
    plain = _dataset(ann, image_dtype="uint8")
    occ = _dataset(
        ann, image_dtype="uint8", occlusion=RandomOcclusion(prob=1.0, count=(2, 3), label_mode=mode)
    )
    n_covered = 0
    for i in range(len(plain)):
        a, b = plain[i], occ[i]
        assert set(b) == set(a) | {"covered"}
        assert b["covered"].dtype == torch.bool
        for key in a:
            if key not in ("image", "flags"):
                assert torch.equal(a[key], b[key]), key  # coordinates, weights and meta untouched
        expected = torch.where(
            a["flags"] > 0, a["flags"] if mode == "update" else torch.full_like(a["flags"], 2), 0
        )
        expected = torch.where(b["covered"], 1, expected)
        assert torch.equal(b["flags"], expected)
        assert not (b["covered"] & (a["flags"] == 0)).any()
        n_covered += int(b["covered"].sum())
        assert not torch.equal(a["image"], b["image"])
    assert n_covered > 0


def test_dataset_switch_off_and_eval_change_nothing(ann: Path) -> None:
    occ = RandomOcclusion(prob=1.0)
    for train in (True, False):
        plain = _dataset(ann, train=train)[2]
        off = _dataset(ann, train=train, occlusion=None)[2]
        assert set(plain) == set(off)
        assert all(torch.equal(plain[k], off[k]) for k in plain)
    evaluation = _dataset(ann, train=False, occlusion=occ)[2]
    plain = _dataset(ann, train=False)[2]
    assert set(evaluation) == set(plain)
    assert all(torch.equal(plain[k], evaluation[k]) for k in plain)
    with pytest.raises(TypeError, match="occlusion must be a RandomOcclusion or None, got dict"):
        _dataset(ann, occlusion={"prob": 1.0})


def test_dataset_codec_sees_the_updated_flags(ann: Path) -> None:
    codec = SimCCCodec(SIZE)
    ds = _dataset(ann, codec=codec, occlusion=RandomOcclusion(prob=1.0, label_mode="coverage"))
    item = ds[1]
    targets = codec.encode(item["keypoints"], item["flags"])
    assert torch.equal(item["targets"].x_labels, targets.x_labels)
    assert torch.equal(item["weights"], targets.weights.float())


def test_dataset_determinism_across_workers_with_the_collate(ann: Path) -> None:
    ds = _dataset(ann, image_dtype="uint8", occlusion=RandomOcclusion(prob=0.8, count=(1, 3)))
    ds.set_epoch(2)
    batches = {}
    for workers in (0, 2):
        loader = DataLoader(
            ds, batch_size=3, num_workers=workers, collate_fn=TopDownCollate(SimCCCodec(SIZE))
        )
        batches[workers] = list(loader)
    for a, b in zip(batches[0], batches[2]):
        a, b = flat_fields(a), flat_fields(b)
        assert set(a) == set(b)
        assert "covered" in a
        assert a["covered"].shape == a["flags"].shape
        for key in a:
            assert torch.equal(a[key], b[key]), key
    single = ds[len(ds) - 1]
    assert torch.equal(single["covered"], batches[0][-1]["covered"][-1])
    ds.set_epoch(3)
    assert not torch.equal(ds[len(ds) - 1]["image"], single["image"])
