from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from tests.helpers import flat_fields
from visattn.codecs import HeatmapCodec, SimCCCodec
from visattn.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
    TopDownCocoDataset,
    TopDownCollate,
    make_synthetic_coco,
    normalize_images,
)

SIZE = (64, 48)
# every augmentation on, and often, so flips / half-body / rotations all occur in a few samples
AUG = AugmentConfig(flip_prob=0.5, half_body_prob=0.5, rotation_prob=0.8)


@pytest.fixture(scope="module")
def ann(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_coco(tmp_path_factory.mktemp("collate"), 6, seed=3, image_size=(96, 128))


def _datasets(ann: Path, codec: object) -> tuple[TopDownCocoDataset, TopDownCocoDataset]:
    kw = {"input_size": SIZE, "train": True, "augment": AUG, "seed": 5}
    per_sample = TopDownCocoDataset(ann, ann.parent / "images", codec=codec, **kw)  # type: ignore[arg-type]
    fast = TopDownCocoDataset(ann, ann.parent / "images", image_dtype="uint8", **kw)  # type: ignore[arg-type]
    return per_sample, fast


def _assert_same_batch(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert type(a.get("targets")) is type(b.get("targets"))  # the codec's NamedTuple, handed through
    a, b = flat_fields(a), flat_fields(b)
    assert set(a) == set(b)
    for key in a:
        assert a[key].shape == b[key].shape, key
        assert a[key].dtype == b[key].dtype, key
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


def _oracle_normalize(u8: np.ndarray) -> np.ndarray:
    """(..., 3, H, W) uint8 -> (v / 255 - mean) / std, channel by channel in float64."""
    out = np.empty(u8.shape, dtype=np.float64)
    for c in range(3):
        out[..., c, :, :] = (u8[..., c, :, :] / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
    return out


@pytest.mark.parametrize(
    "codec", [SimCCCodec(SIZE, sigma=2.0), HeatmapCodec(SIZE, (16, 12), sigma=1.0)], ids=["simcc", "heatmap"]
)
def test_batched_targets_equal_the_per_sample_path(ann: Path, codec: object) -> None:
    per_sample, fast = _datasets(ann, codec)
    collate = TopDownCollate(codec)  # type: ignore[arg-type]
    flips = rotations = 0
    for epoch in range(2):
        per_sample.set_epoch(epoch)
        fast.set_epoch(epoch)
        indices = list(range(len(fast)))
        expected = default_collate([per_sample[i] for i in indices])
        got = collate([fast[i] for i in indices])
        _assert_same_batch(got, expected)
        assert got["image"].dtype == torch.float32
        assert float(got["weights"].sum()) > 0
        flips += int(got["flipped"].sum())
        rotations += int((got["rotation"] != 0).sum())
    assert flips > 0
    assert rotations > 0


def test_batched_path_through_a_dataloader_with_workers(ann: Path) -> None:
    codec = SimCCCodec(SIZE, sigma=2.0)
    per_sample, fast = _datasets(ann, codec)
    expected = list(DataLoader(per_sample, batch_size=4, num_workers=0))
    got = list(DataLoader(fast, batch_size=4, num_workers=2, collate_fn=TopDownCollate(codec)))
    assert len(got) == len(expected) >= 2
    for a, b in zip(got, expected):
        _assert_same_batch(a, b)


def test_uint8_images_match_the_float_images_and_an_oracle(ann: Path) -> None:
    floats = TopDownCocoDataset(ann, ann.parent / "images", input_size=SIZE, train=True, augment=AUG)
    raw = TopDownCocoDataset(
        ann, ann.parent / "images", input_size=SIZE, train=True, augment=AUG, image_dtype="uint8"
    )
    for i in range(len(raw)):
        a, b = floats[i], raw[i]
        assert b["image"].dtype == torch.uint8
        assert b["image"].shape == (3, *SIZE)
        oracle = _oracle_normalize(b["image"].numpy())
        np.testing.assert_allclose(a["image"].numpy(), oracle, rtol=0, atol=2e-6)
        torch.testing.assert_close(normalize_images(b["image"]), a["image"], rtol=0, atol=1e-6)
        for key in a.keys() - {"image"}:
            assert torch.equal(a[key], b[key]), key
    # the collate leaves float images alone and keeps uint8 ones without normalize
    batch = TopDownCollate(normalize=False)([raw[0], raw[1]])
    assert batch["image"].dtype == torch.uint8
    assert torch.equal(
        TopDownCollate()([floats[0], floats[1]])["image"], default_collate([floats[0], floats[1]])["image"]
    )


def test_normalize_images_against_an_oracle_and_validation() -> None:
    g = torch.Generator().manual_seed(0)
    u8 = torch.randint(0, 256, (5, 3, 7, 9), generator=g, dtype=torch.uint8)
    np.testing.assert_allclose(normalize_images(u8).numpy(), _oracle_normalize(u8.numpy()), rtol=0, atol=2e-6)
    assert normalize_images(u8[0]).shape == (3, 7, 9)
    with pytest.raises(TypeError, match="uint8"):
        normalize_images(u8.float())
    with pytest.raises(ValueError, match="3 RGB channels"):
        normalize_images(u8[:, :2])
    with pytest.raises(TypeError, match="images"):
        normalize_images(np.zeros((3, 2, 2), np.uint8))  # type: ignore[arg-type]


def test_collate_validation(ann: Path) -> None:
    codec = SimCCCodec(SIZE)
    with pytest.raises(TypeError, match="codec"):
        TopDownCollate(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="normalize"):
        TopDownCollate(normalize=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="samples"):
        TopDownCollate(codec)([])
    with_targets = TopDownCocoDataset(ann, ann.parent / "images", input_size=SIZE, codec=codec)
    with pytest.raises(ValueError, match="codec=None"):
        TopDownCollate(codec)([with_targets[0], with_targets[1]])
    with pytest.raises(ValueError, match="keypoints"):
        TopDownCollate(codec)([{"image": torch.zeros(3, 2, 2)}])
    assert "SimCCCodec" in repr(TopDownCollate(codec))
