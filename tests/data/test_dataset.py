from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from tests.helpers import COCO_DIR, CROWDPOSE_DIR, require_shared_data
from visattn.codecs import HeatmapCodec, SimCCCodec, SimCCTargets
from visattn.data import AugmentConfig, ImageReadError, TopDownCocoDataset, crop_to_image, make_synthetic_coco
from visattn.keypoints import COCO_KEYPOINTS

COCO_ANN = COCO_DIR / "test_coco.json"
COCO_DET = COCO_DIR / "test_coco_det_AP_H_56.json"
NO_AUG = AugmentConfig(flip_prob=0.0, half_body_prob=0.0, scale_factor=0.0, rotation_prob=0.0)


@pytest.fixture(scope="module")
def coco() -> dict[str, object]:
    require_shared_data()
    return json.loads(COCO_ANN.read_text())


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("syn")
    return make_synthetic_coco(root, 4, seed=2, image_size=(96, 128))


def _oracle_crop_matrix(box: list[float], size: tuple[int, int]) -> np.ndarray:
    """xywh box -> padded 3:4 centre/scale -> three-point affine (SimpleBaseline), no rotation."""
    x, y, w, h = box
    out_h, out_w = size
    aspect = out_w / out_h
    cx, cy = x + w * 0.5, y + h * 0.5
    if w > aspect * h:
        h = w / aspect
    else:
        w = h * aspect
    w *= 1.25
    src = np.array([[cx, cy], [cx, cy - 0.5 * w], [cx - 0.5 * w, cy - 0.5 * w]])
    dst = np.array([[out_w / 2, out_h / 2], [out_w / 2, out_h / 2 - out_w / 2], [0.0, out_h / 2 - out_w / 2]])
    return np.linalg.solve(np.concatenate([src, np.ones((3, 1))], 1), dst).T


def _clipped_box(ann: dict, img: dict) -> list[float]:
    x, y, w, h = ann["bbox"]
    x1, y1 = min(max(x, 0), img["width"] - 1), min(max(y, 0), img["height"] - 1)
    x2, y2 = min(max(x + w, 0), img["width"] - 1), min(max(y + h, 0), img["height"] - 1)
    return [x1, y1, x2 - x1, y2 - y1]


def test_coco_ground_truth_and_detection_counts(coco: dict) -> None:
    gt = TopDownCocoDataset(COCO_ANN, COCO_DIR)
    assert len(gt) == 12
    assert gt.stats["no_keypoints"] == 2
    assert gt.stats["samples"] == 12
    det = TopDownCocoDataset(COCO_ANN, COCO_DIR, det_file=COCO_DET, det_score_threshold=0.0)
    assert len(det) == 118
    dets = json.loads(COCO_DET.read_text())
    kept = sum(1 for d in dets if d["score"] >= 0.5)
    det_half = TopDownCocoDataset(COCO_ANN, COCO_DIR, det_file=COCO_DET, det_score_threshold=0.5)
    assert len(det_half) == kept
    assert det_half.stats["below_threshold"] == 118 - kept
    item = det[0]
    assert item["ann_id"] == -1
    assert item["bbox_score"] == pytest.approx(dets[0]["score"])
    assert (item["flags"] == 0).all()
    assert (item["keypoints"] == 0).all()
    assert (item["weights"] == 0).all()


def test_unaugmented_sample_matches_json_and_an_oracle_warp(coco: dict) -> None:
    ds = TopDownCocoDataset(COCO_ANN, COCO_DIR, input_size=(256, 192))
    images = {img["id"]: img for img in coco["images"]}
    anns = [a for a in coco["annotations"] if a["num_keypoints"] > 0]
    for i in (0, 3, 7):
        item = ds[i]
        ann = next(a for a in anns if a["id"] == int(item["ann_id"]))
        img = images[ann["image_id"]]
        raw = np.asarray(ann["keypoints"], dtype=np.float64).reshape(17, 3)
        assert item["flags"].tolist() == raw[:, 2].astype(int).tolist()
        assert item["image"].shape == (3, 256, 192)
        assert item["image"].dtype == torch.float32
        m = _oracle_crop_matrix(_clipped_box(ann, img), (256, 192))
        for k in range(17):
            if raw[k, 2] > 0:
                expected = m[:, :2] @ raw[k, :2] + m[:, 2]
                np.testing.assert_allclose(item["keypoints"][k].numpy(), expected, atol=1e-3)
                inside = 0 <= expected[0] < 192 and 0 <= expected[1] < 256
                assert item["weights"][k] == float(inside)
            else:
                assert item["weights"][k] == 0
        bgr = cv2.imread(str(COCO_DIR / img["file_name"]))
        assert bgr.shape == (img["height"], img["width"], 3)
        crop = cv2.warpAffine(bgr[:, :, ::-1].copy(), m, (192, 256), flags=cv2.INTER_LINEAR)
        mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
        expected_image = ((crop / 255.0 - mean) / std).transpose(2, 0, 1)
        # the oracle matrix differs from the dataset's in the last float bits: allow one grey level
        diff = np.abs(item["image"].numpy() - expected_image)
        assert np.median(diff) < 1e-4
        assert diff.max() < 0.1
        assert item["area"] == pytest.approx(ann["area"], rel=1e-6)


def test_crowdpose_loads_with_its_keypoint_set() -> None:
    require_shared_data()
    data = json.loads((CROWDPOSE_DIR / "test_crowdpose.json").read_text())
    ds = TopDownCocoDataset(
        CROWDPOSE_DIR / "test_crowdpose.json", CROWDPOSE_DIR, keypoint_info="crowdpose", input_size=(64, 48)
    )
    labelled = [a for a in data["annotations"] if any(v > 0 for v in a["keypoints"][2::3])]
    assert len(ds) == len(labelled)
    for i, ann in enumerate(labelled):
        item = ds[i]
        assert item["keypoints"].shape == (14, 2)
        assert item["image"].shape == (3, 64, 48)
        assert item["flags"].tolist() == ann["keypoints"][2::3]
    with pytest.raises(ValueError, match="keypoint values"):
        TopDownCocoDataset(COCO_ANN, COCO_DIR, keypoint_info="crowdpose")


def test_codec_targets_are_added(synthetic: Path) -> None:
    images = synthetic.parent / "images"
    simcc = TopDownCocoDataset(synthetic, images, input_size=(64, 48), codec=SimCCCodec((64, 48), sigma=2.0))
    item = simcc[1]
    assert isinstance(item["targets"], SimCCTargets)
    assert item["targets"].x_labels.shape == (17, 96)
    assert item["targets"].y_labels.shape == (17, 128)
    assert item["weights"].shape == (17,)
    assert torch.equal(item["weights"], item["targets"].weights)
    assert (item["weights"][item["flags"] == 0] == 0).all()
    heat = TopDownCocoDataset(synthetic, images, input_size=(64, 48), codec=HeatmapCodec((64, 48), (16, 12)))
    assert heat[1]["targets"].heatmaps.shape == (17, 16, 12)
    batch = next(iter(DataLoader(simcc, batch_size=2)))  # the default collation batches it field by field
    assert isinstance(batch["targets"], SimCCTargets)
    assert batch["targets"].x_labels.shape == (2, 17, 96)


def test_augmented_keypoints_map_back_to_the_image(coco: dict) -> None:
    images = {img["id"]: img for img in coco["images"]}
    raw_by_ann = {
        a["id"]: np.asarray(a["keypoints"], dtype=np.float64).reshape(17, 3) for a in coco["annotations"]
    }
    ds = TopDownCocoDataset(COCO_ANN, COCO_DIR, input_size=(64, 48), train=True, seed=3)
    seen_rot = seen_flip = 0
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            raw = raw_by_ann[int(item["ann_id"])]
            width = images[int(item["image_id"])]["width"]
            back = crop_to_image(
                item["keypoints"][None].double(),
                item["center"][None].double(),
                item["scale"][None].double(),
                item["rotation"][None].double(),
                (64, 48),
            )[0].numpy()
            expected, flags = raw[:, :2].copy(), raw[:, 2]
            if item["flipped"]:
                expected[:, 0] = width - 1 - expected[:, 0]
                expected, flags = (
                    expected[list(COCO_KEYPOINTS.flip_index)],
                    flags[list(COCO_KEYPOINTS.flip_index)],
                )
            assert item["flags"].tolist() == flags.astype(int).tolist()
            labelled = flags > 0
            # float32 sample meta: allow 1e-2 px on 640 px images
            np.testing.assert_allclose(back[labelled], expected[labelled], atol=1e-2)
            seen_rot += bool(item["rotation"] != 0)
            seen_flip += bool(item["flipped"])
    assert seen_rot > 0
    assert seen_flip > 0


def test_flipped_sample_equals_original_through_flip_pairs(synthetic: Path) -> None:
    images = synthetic.parent / "images"
    plain = TopDownCocoDataset(synthetic, images, input_size=(64, 48), train=True, augment=NO_AUG)
    flip = AugmentConfig(flip_prob=1.0, half_body_prob=0.0, scale_factor=0.0, rotation_prob=0.0)
    mirrored = TopDownCocoDataset(synthetic, images, input_size=(64, 48), train=True, augment=flip)
    for i in range(len(plain)):
        a, b = plain[i], mirrored[i]
        assert bool(b["flipped"])
        assert not bool(a["flipped"])
        for k in range(17):
            src = COCO_KEYPOINTS.flip_index[k]
            assert b["flags"][k] == a["flags"][src]
            if a["flags"][src] > 0:
                # the crop of the mirrored image is the mirror of the crop about x = W / 2
                assert b["keypoints"][k, 0].item() == pytest.approx(
                    48 - a["keypoints"][src, 0].item(), abs=1e-3
                )
                assert b["keypoints"][k, 1].item() == pytest.approx(a["keypoints"][src, 1].item(), abs=1e-3)


def test_half_body_crops_the_chosen_half(synthetic: Path) -> None:
    half = AugmentConfig(flip_prob=0.0, half_body_prob=1.0, scale_factor=0.0, rotation_prob=0.0)
    images = synthetic.parent / "images"
    ds = TopDownCocoDataset(synthetic, images, input_size=(64, 48), train=True, augment=half)
    full = TopDownCocoDataset(synthetic, images, input_size=(64, 48))
    changed = 0
    for i in range(len(ds)):
        item, ref = ds[i], full[i]
        n_labelled = int((ref["flags"] > 0).sum())
        if n_labelled < 9:
            assert torch.equal(item["center"], ref["center"])
            continue
        changed += not torch.equal(item["center"], ref["center"])
        assert item["scale"][0] / item["scale"][1] == pytest.approx(0.75, rel=1e-5)
    assert changed > 0


def test_determinism_across_workers_and_epochs(synthetic: Path) -> None:
    ds = TopDownCocoDataset(synthetic, synthetic.parent / "images", input_size=(32, 24), train=True, seed=7)

    def batches(workers: int) -> list[dict[str, torch.Tensor]]:
        loader = DataLoader(ds, batch_size=4, num_workers=workers, shuffle=False)
        return list(loader)

    serial, parallel = batches(0), batches(2)
    assert len(serial) == len(parallel) == math.ceil(len(ds) / 4) > 1
    for a, b in zip(serial, parallel):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
    again = ds[3]
    ds.set_epoch(1)
    other = ds[3]
    ds.set_epoch(0)
    assert torch.equal(ds[3]["image"], again["image"])
    assert not torch.equal(other["image"], again["image"])


def test_distributed_sampler_shards_cover_the_dataset(synthetic: Path) -> None:
    ds = TopDownCocoDataset(synthetic, synthetic.parent / "images", input_size=(32, 24), train=True, seed=1)
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        for batch, indices in zip(DataLoader(ds, batch_size=3, sampler=sampler), _chunks(list(sampler), 3)):
            for j, index in enumerate(indices):
                assert torch.equal(batch["image"][j], ds[index]["image"])
                seen.append(index)
    assert sorted(set(seen)) == list(range(len(ds)))
    assert len(seen) == 2 * math.ceil(len(ds) / 2)  # the sampler pads to a multiple of the ranks


def _chunks(values: list[int], n: int) -> list[list[int]]:
    return [values[i : i + n] for i in range(0, len(values), n)]


def test_missing_image_error_names_the_file(synthetic: Path, tmp_path: Path) -> None:
    ds = TopDownCocoDataset(synthetic, tmp_path, input_size=(32, 24))  # images are not in tmp_path
    with pytest.raises(ImageReadError, match=r"train_000000\.jpg") as info:
        ds[0]
    assert "sample 0" in str(info.value)
    with pytest.raises(Exception, match=r"train_000000\.jpg"):
        next(iter(DataLoader(ds, batch_size=2, num_workers=1)))
    assert str(tmp_path / "train_000000.jpg") in ds.find_unreadable_images()


def test_corrupt_image_raise_and_skip(synthetic: Path) -> None:
    root = synthetic.parent
    images = root / "images"
    target = sorted(images.glob("*.jpg"))[0]
    original = target.read_bytes()
    try:
        target.write_bytes(b"not a jpeg at all")
        strict = TopDownCocoDataset(synthetic, images, input_size=(32, 24))
        bad = [i for i in range(len(strict)) if strict.image_path(i) == str(target)]
        assert bad
        with pytest.raises(ImageReadError, match=target.name):
            strict[bad[0]]
        lenient = TopDownCocoDataset(synthetic, images, input_size=(32, 24), on_error="skip")
        replacement = next(i for i in range(bad[0], len(lenient)) if i not in bad)
        item = lenient[bad[0]]
        assert bool(item["replaced"])
        assert torch.equal(item["image"], lenient[replacement]["image"])
        assert not bool(lenient[replacement]["replaced"])
        assert lenient.skipped == {str(target): 1}
        for i in bad[1:]:
            lenient[i]
        assert lenient.skipped[str(target)] == len(bad)
        replaced = sum(int(b["replaced"].sum()) for b in DataLoader(lenient, batch_size=2, num_workers=0))
        assert replaced == len(bad)
        assert lenient.find_unreadable_images(decode=True) == [str(target)]
    finally:
        target.write_bytes(original)


def test_cache_images_gives_the_same_samples(synthetic: Path) -> None:
    images = synthetic.parent / "images"
    cached = TopDownCocoDataset(synthetic, images, input_size=(32, 24), train=True, cache_images=True)
    plain = TopDownCocoDataset(synthetic, images, input_size=(32, 24), train=True)
    for i in range(len(plain)):
        assert torch.equal(cached[i]["image"], plain[i]["image"])
        assert torch.equal(cached[i]["image"], plain[i]["image"])  # second read from the cache
    assert len(cached._cache) == len(set(cached.image_files))


def test_augmentation_ranges_and_validation(synthetic: Path) -> None:
    images = synthetic.parent / "images"
    ds = TopDownCocoDataset(synthetic, images, input_size=(32, 24), train=True, augment=AugmentConfig())
    base = TopDownCocoDataset(synthetic, images, input_size=(32, 24))
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            assert abs(float(item["rotation"])) <= 80.0 + 1e-4
            if not math.isclose(float(item["scale"][0]), float(base[i]["scale"][0]), rel_tol=0.31):
                assert not torch.equal(item["center"], base[i]["center"])  # only half-body moves it so far
    with pytest.raises(ValueError, match="on_error"):
        TopDownCocoDataset(synthetic, images, on_error="ignore")
    with pytest.raises(ValueError, match="input_size"):
        TopDownCocoDataset(synthetic, images, input_size=(0, 10))
    with pytest.raises(ValueError, match="scale_factor"):
        AugmentConfig(scale_factor=1.5)
    with pytest.raises(ValueError, match="epoch"):
        ds.set_epoch(-1)


def test_image_dtype_option(synthetic: Path) -> None:
    images = synthetic.parent / "images"
    ds = TopDownCocoDataset(synthetic, images, input_size=(32, 24), image_dtype="uint8")
    item = ds[0]
    assert item["image"].dtype == torch.uint8
    assert item["image"].shape == (3, 32, 24)
    # the raw crop is the BGR warp of the image with the channels reversed
    bgr = cv2.imread(ds.image_path(0))
    m = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    c, s = item["center"].double().numpy(), float(item["scale"][0])
    m[0, 0] = m[1, 1] = 24 / s
    m[0, 2], m[1, 2] = 12 - m[0, 0] * c[0], 16 - m[1, 1] * c[1]
    crop = cv2.warpAffine(bgr, m, (24, 32), flags=cv2.INTER_LINEAR)
    diff = np.abs(item["image"].numpy().astype(int) - crop[:, :, ::-1].transpose(2, 0, 1).astype(int))
    assert np.median(diff) == 0  # float32 meta vs float64 matrix: allow one grey level here and there
    assert diff.max() <= 2
    with pytest.raises(ValueError, match="image_dtype"):
        TopDownCocoDataset(synthetic, images, image_dtype="float16")


def test_constructor_rejects_bad_arguments_by_name(synthetic: Path, tmp_path: Path) -> None:
    images = synthetic.parent / "images"
    with pytest.raises(TypeError, match="ann_file"):
        TopDownCocoDataset(3, images)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="det_file"):
        TopDownCocoDataset(synthetic, images, det_file=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="train"):
        TopDownCocoDataset(synthetic, images, train="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="det_score_threshold"):
        TopDownCocoDataset(synthetic, images, det_score_threshold="0.5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="det_score_threshold"):
        TopDownCocoDataset(synthetic, images, det_score_threshold=float("nan"))
    with pytest.raises(TypeError, match="seed"):
        TopDownCocoDataset(synthetic, images, seed=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="keypoint set"):
        TopDownCocoDataset(synthetic, images, keypoint_info="hands")
    data = json.loads(synthetic.read_text())
    data["annotations"][0]["image_id"] = 10_000
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="image_id 10000"):
        TopDownCocoDataset(broken, images)


@pytest.mark.parametrize(
    "entry",
    [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},  # no score
        {"image_id": 1, "category_id": 1, "score": 0.9, "bbox": [0, 0, 10]},  # 3 numbers
        {"image_id": 1, "category_id": 1, "score": "high", "bbox": [0, 0, 10, 10]},
        [1, 2, 3],
    ],
)
def test_malformed_detection_names_file_and_entry(synthetic: Path, tmp_path: Path, entry: object) -> None:
    good = {"image_id": 1, "category_id": 1, "score": 0.9, "bbox": [0, 0, 10, 10]}
    det_file = tmp_path / "dets.json"
    det_file.write_text(json.dumps([good, entry]))
    with pytest.raises(ValueError, match=r"dets\.json: entry 1 must"):
        TopDownCocoDataset(synthetic, synthetic.parent / "images", det_file=det_file)
