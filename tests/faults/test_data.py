"""Fault injection on the data that enters visattn: annotation files, image files, results, API edges.

Every fault is a real file written here (truncated JPEG / PNG bytes, an EXIF-rotated JPEG, a PNG
whose header claims a huge size, malformed JSON entries); the checks pin the error class and that the
message names the file and the entry. Nothing is mocked.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tests.helpers import COCO_DIR, require_shared_data
from visattn.codecs import SimCCTargets
from visattn.compat import from_official_checkpoint, to_official_checkpoint
from visattn.data import AugmentConfig, ImageReadError, TopDownCocoDataset
from visattn.heads import SimCCHead, SimCCOutput
from visattn.losses import VisibilityAwareLoss
from visattn.metrics import PoseEvaluator, coco_keypoint_ap
from visattn.reasoner import VisibilityMaskedReasoner

K = 17
H, W = 48, 64  # stored image size (height, width)
NO_AUG = AugmentConfig(flip_prob=0.0, half_body_prob=0.0, scale_factor=0.0, rotation_prob=0.0)


def _keypoints(flag: float = 2) -> list[float]:
    return [v for k in range(K) for v in (10.0 + k, 12.0 + k, flag)]


def _image(i: int, name: str = "", height: int = H, width: int = W) -> dict[str, Any]:
    return {"id": i, "file_name": name or f"img{i}.jpg", "height": height, "width": width}


def _ann(i: int, image_id: int = 1, **fields: Any) -> dict[str, Any]:
    ann = {"id": i, "image_id": image_id, "category_id": 1, "iscrowd": 0, "keypoints": _keypoints(),
           "num_keypoints": K, "area": 500.0, "bbox": [5.0, 5.0, 40.0, 30.0]}  # fmt: skip
    ann.update(fields)
    return ann


def _coco(images: list[dict[str, Any]], anns: list[dict[str, Any]]) -> dict[str, Any]:
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}


def _pixels(height: int = H, width: int = W) -> np.ndarray:
    """A smooth BGR test picture (JPEG keeps it close), different in every row and column."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], -1).astype(
        np.uint8
    )


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """One readable JPEG ``img1.jpg`` (H x W) in ``tmp_path``."""
    assert cv2.imwrite(str(tmp_path / "img1.jpg"), _pixels())
    return tmp_path


def _dataset(folder: Path, data: dict[str, Any], **kwargs: Any) -> TopDownCocoDataset:
    ann = _write(folder / "ann.json", data)
    return TopDownCocoDataset(ann, folder, input_size=(32, 24), **kwargs)


# ----------------------------------------------------------------------------------------------------
# annotation files


def _set_value(index: int, value: Any) -> dict[str, Any]:
    kp: list[Any] = _keypoints()
    kp[index] = value
    return {"keypoints": kp}


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        (_set_value(3 * 4 + 2, 1.5), "keypoint 4 has visibility flag 1.5"),
        (_set_value(3 * 4 + 2, 3), "keypoint 4 has visibility flag 3"),
        (_set_value(3 * 2, None), "keypoints[6] (keypoint 2 x) must be a number, got None"),
        (_set_value(3 * 2 + 1, "12"), "keypoints[7] (keypoint 2 y) must be a number, got '12'"),
        (_set_value(3 * 5, float("nan")), "labelled keypoint 5 (v=2) must have finite coordinates"),
        (_set_value(3 * 5 + 2, True), "keypoints[17] (keypoint 5 v) must be a number, got True"),
        ({"bbox": [5.0, 5.0, "40", 30.0]}, "bbox must be 4 numbers"),
        ({"bbox": [5.0, 5.0, 40.0]}, "bbox must be 4 numbers"),
        ({"iscrowd": 2}, "iscrowd must be 0 or 1"),
        ({"num_keypoints": "17"}, "num_keypoints must be an integer >= 0"),
        ({"area": None}, "area must be a finite number >= 0"),
        ({"keypoints": _keypoints()[:-3]}, "has 48 keypoint values, expected 3*K=51"),
    ],
    ids=["flag-1.5", "flag-3", "null-x", "string-y", "nan-x", "bool-flag", "string-box", "short-box",
         "crowd-2", "string-num-keypoints", "null-area", "short-keypoints"],
)  # fmt: skip
def test_bad_annotation_entry_names_file_and_entry(folder: Path, fields: dict[str, Any], needle: str) -> None:
    data = _coco([_image(1)], [_ann(1), _ann(7, **fields)])
    with pytest.raises(ValueError, match=r"ann\.json") as info:
        _dataset(folder, data)
    message = str(info.value)
    assert needle in message, message
    assert "7" in message  # the annotation id


def test_null_coordinate_of_an_unlabelled_keypoint_is_a_type_error_too(folder: Path) -> None:
    kp: list[Any] = _keypoints()
    kp[0:3] = [None, None, 0]
    with pytest.raises(ValueError, match=r"annotation id 3 .*keypoints\[0\]"):
        _dataset(folder, _coco([_image(1)], [_ann(3, keypoints=kp)]))


def test_unlabelled_coordinates_are_zeroed(folder: Path) -> None:
    kp = _keypoints()
    kp[0:3] = [float("nan"), 1e30, 0]  # v = 0: the coordinates mean nothing
    ds = _dataset(folder, _coco([_image(1)], [_ann(1, keypoints=kp, num_keypoints=K - 1)]))
    item = ds[0]
    assert torch.isfinite(item["keypoints"]).all()
    assert item["keypoints"][0].tolist() == [0.0, 0.0]
    assert int(item["flags"][0]) == 0


def test_duplicate_image_ids_are_refused(folder: Path) -> None:
    assert cv2.imwrite(str(folder / "other.jpg"), _pixels()[::-1].copy())
    data = _coco([_image(1), _image(1, "other.jpg")], [_ann(1)])
    with pytest.raises(
        ValueError, match=r"ann\.json: image id 1 \(images\[1\]\) has the same id as images\[0\]"
    ):
        _dataset(folder, data)


def test_duplicate_annotation_ids_are_refused(folder: Path) -> None:
    with pytest.raises(ValueError, match=r"annotation id 4 .* repeats an annotation id"):
        _dataset(folder, _coco([_image(1)], [_ann(4), _ann(4)]))


@pytest.mark.parametrize(
    ("image", "needle"),
    [
        ({"id": "1", "file_name": "img1.jpg"}, "images[0] must have an integer 'id', got '1'"),
        ({"id": 1, "file_name": 5}, "must have a non-empty string 'file_name', got 5"),
        ({"id": 1, "file_name": "img1.jpg", "height": 4.5}, "height must be an integer >= 0"),
        ({"id": 1, "file_name": "img1.jpg", "width": -3}, "width must be an integer >= 0"),
    ],
)
def test_bad_image_entry_names_file_and_entry(folder: Path, image: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match=r"ann\.json") as info:
        _dataset(folder, _coco([image], [_ann(1)]))
    assert needle in str(info.value)


def test_annotation_for_unknown_image_names_it(folder: Path) -> None:
    with pytest.raises(ValueError, match=r"annotation 2 in .*ann\.json refers to image_id 9"):
        _dataset(folder, _coco([_image(1)], [_ann(1), _ann(2, image_id=9)]))


def test_num_keypoints_mismatch_is_counted_and_the_flags_decide(folder: Path) -> None:
    """CrowdPose files count num_keypoints without head and neck: the flags decide, stats count it."""
    ds = _dataset(folder, _coco([_image(1)], [_ann(1, num_keypoints=5), _ann(2)]))
    assert ds.stats["num_keypoints_mismatch"] == 1
    assert len(ds) == 2
    assert (ds[0]["flags"] == 2).all()


def test_skipped_entries_are_counted_by_reason(folder: Path) -> None:
    anns = [
        _ann(1),
        _ann(2, iscrowd=1),
        _ann(3, keypoints=_keypoints(0), num_keypoints=0),
        _ann(4, bbox=[100.0, 100.0, 5.0, 5.0]),  # outside the 64 x 48 image: empty once clipped
        _ann(5, category_id=2),
    ]
    ds = _dataset(folder, _coco([_image(1)], anns))
    expected = {"crowd": 1, "no_keypoints": 1, "empty_box": 1, "other_category": 1, "samples": 1}
    assert {key: ds.stats[key] for key in expected} == expected


@pytest.mark.parametrize("text", ['{"images": [', "not json", '{"images": [{"id": 1,}]}'])
def test_unparsable_annotation_json_names_the_file(tmp_path: Path, text: str) -> None:
    ann = tmp_path / "broken_ann.json"
    ann.write_text(text)
    with pytest.raises(ValueError, match=r"ann_file .*broken_ann\.json is not valid JSON: .* line 1"):
        TopDownCocoDataset(ann, tmp_path)


def test_unparsable_detection_json_names_the_file(folder: Path) -> None:
    ann = _write(folder / "ann.json", _coco([_image(1)], [_ann(1)]))
    dets = folder / "dets.json"
    dets.write_text('[{"image_id": 1, "bbox": [1, 2, 3')
    with pytest.raises(ValueError, match=r"det_file .*dets\.json is not valid JSON"):
        TopDownCocoDataset(ann, folder, det_file=dets)


@pytest.mark.parametrize("name", ["../img1.jpg", "sub/../../img1.jpg", "/etc/hostname"])
def test_file_name_outside_the_image_root_is_refused(folder: Path, name: str) -> None:
    root = folder / "images"
    root.mkdir()
    data = _coco([_image(1, name)], [_ann(1)])
    with pytest.raises(
        ValueError, match=r"image id 1 has file_name .* outside image_root .*allow_outside_root"
    ):
        TopDownCocoDataset(_write(folder / "ann.json", data), root, input_size=(32, 24))


def test_file_name_outside_the_root_loads_when_allowed(folder: Path) -> None:
    root = folder / "images"
    root.mkdir()
    data = _coco([_image(1, "../img1.jpg")], [_ann(1)])
    ann = _write(folder / "ann.json", data)
    ds = TopDownCocoDataset(ann, root, input_size=(32, 24), allow_outside_root=True)
    inside = TopDownCocoDataset(_write(folder / "ann2.json", _coco([_image(1)], [_ann(1)])), folder,
                                input_size=(32, 24))  # fmt: skip
    assert torch.equal(ds[0]["image"], inside[0]["image"])
    with pytest.raises(TypeError, match="allow_outside_root"):
        TopDownCocoDataset(ann, root, allow_outside_root="yes")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------
# image files


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return (
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    )


def _huge_png(height: int = 100_000, width: int = 100_000) -> bytes:
    """A well-formed PNG whose IHDR claims ``height x width`` RGB pixels (10^10 by default)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + body + _png_chunk(b"IEND", b"")


def _exif_app1(orientation: int) -> bytes:
    """A JPEG APP1 segment holding a one-entry EXIF IFD0 with the Orientation tag (0x0112)."""
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1)
    tiff += struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    body = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def _jpeg_bytes(pixels: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return encoded.tobytes()


@pytest.mark.parametrize("kind", ["jpg", "png"])
def test_truncated_image_is_an_image_read_error_and_skippable(tmp_path: Path, kind: str) -> None:
    assert cv2.imwrite(str(tmp_path / f"good.{kind}"), _pixels())
    assert cv2.imwrite(str(tmp_path / f"cut.{kind}"), _pixels()[::-1].copy())
    data = (tmp_path / f"cut.{kind}").read_bytes()
    (tmp_path / f"cut.{kind}").write_bytes(data[: len(data) * 2 // 3])  # the tail is lost
    anns = [_ann(1, image_id=1), _ann(2, image_id=2)]
    coco = _coco([_image(1, f"cut.{kind}"), _image(2, f"good.{kind}")], anns)
    strict = _dataset(tmp_path, coco)
    with pytest.raises(ImageReadError, match=rf"cut\.{kind}.*truncated file.*sample 0, image_id 1, ann_id 1"):
        strict[0]
    assert strict.find_unreadable_images() == []  # the file exists
    assert strict.find_unreadable_images(decode=True) == [str(tmp_path / f"cut.{kind}")]
    lenient = _dataset(tmp_path, coco, on_error="skip")
    item = lenient[0]
    assert bool(item["replaced"])
    assert torch.equal(item["image"], strict[1]["image"])
    assert lenient.skipped == {str(tmp_path / f"cut.{kind}"): 1}


def test_truncated_jpeg_from_a_dataloader_worker_names_the_file(tmp_path: Path) -> None:
    data = _jpeg_bytes(_pixels())
    (tmp_path / "img1.jpg").write_bytes(data[: len(data) // 2])
    ds = _dataset(tmp_path, _coco([_image(1)], [_ann(1)]))
    with pytest.raises(ImageReadError, match=r"img1\.jpg.*truncated"):
        next(iter(DataLoader(ds, batch_size=1, num_workers=1)))


def test_exif_rotated_jpeg_is_read_in_stored_orientation(tmp_path: Path) -> None:
    """Orientation 6 (display rotated 90 degrees): crops use the stored pixels, as COCO annotations do."""
    plain = _jpeg_bytes(_pixels())
    rotated = plain[:2] + _exif_app1(6) + plain[2:]
    (tmp_path / "plain.jpg").write_bytes(plain)
    (tmp_path / "rotated.jpg").write_bytes(rotated)
    # the EXIF tag is real: a decoder that applies it returns the transposed size
    assert cv2.imread(str(tmp_path / "rotated.jpg")).shape[:2] == (W, H)
    assert cv2.imread(str(tmp_path / "plain.jpg")).shape[:2] == (H, W)
    coco = _coco(
        [_image(1, "rotated.jpg"), _image(2, "plain.jpg")], [_ann(1, image_id=1), _ann(2, image_id=2)]
    )
    ds = _dataset(tmp_path, coco)
    assert torch.equal(ds[0]["image"], ds[1]["image"])  # same stored pixels, same box
    assert torch.equal(ds[0]["keypoints"], ds[1]["keypoints"])


def test_size_that_disagrees_with_the_annotation_raises(tmp_path: Path) -> None:
    """An annotation in display orientation (width and height swapped) is noticed, not cropped wrongly."""
    plain = _jpeg_bytes(_pixels())
    (tmp_path / "rotated.jpg").write_bytes(plain[:2] + _exif_app1(6) + plain[2:])
    coco = _coco([_image(1, "rotated.jpg", height=W, width=H)], [_ann(1)])
    ds = _dataset(tmp_path, coco)
    with pytest.raises(
        ImageReadError, match=rf"rotated\.jpg has a header of {H}x{W} .*height={W} width={H}.*EXIF"
    ):
        ds[0]
    assert ds.find_unreadable_images(decode=True) == [str(tmp_path / "rotated.jpg")]


def test_decoded_size_is_checked_for_formats_without_a_parsed_header(tmp_path: Path) -> None:
    assert cv2.imwrite(str(tmp_path / "img1.bmp"), _pixels())
    ds = _dataset(tmp_path, _coco([_image(1, "img1.bmp", width=W + 1)], [_ann(1)]))
    with pytest.raises(ImageReadError, match=rf"img1\.bmp decodes to {H}x{W} .*width={W + 1}"):
        ds[0]


@pytest.mark.parametrize("known_size", [False, True])
def test_png_with_a_huge_header_is_an_image_read_error_and_skippable(
    tmp_path: Path, known_size: bool
) -> None:
    (tmp_path / "huge.png").write_bytes(_huge_png())
    assert cv2.imwrite(str(tmp_path / "good.jpg"), _pixels())
    size = {} if known_size else {"height": 0, "width": 0}
    coco = _coco([_image(1, "huge.png", **size), _image(2, "good.jpg")], [_ann(1), _ann(2, image_id=2)])
    strict = _dataset(tmp_path, coco)
    needle = "has a header of 100000x100000" if known_size else "header claims 100000x100000 pixels.*OpenCV"
    with pytest.raises(ImageReadError, match=rf"huge\.png.*{needle}"):
        strict[0]
    lenient = _dataset(tmp_path, coco, on_error="skip")
    assert bool(lenient[0]["replaced"])
    assert lenient.find_unreadable_images(decode=True) == [str(tmp_path / "huge.png")]


def test_not_an_image_is_an_image_read_error(tmp_path: Path) -> None:
    (tmp_path / "img1.jpg").write_bytes(b"\xff\xd8" + b"\x00" * 64 + b"\xff\xda\xff\xd9")
    ds = _dataset(tmp_path, _coco([_image(1)], [_ann(1)]))
    with pytest.raises(ImageReadError, match=r"could not decode image file .*img1\.jpg"):
        ds[0]


def test_real_coco_images_pass_every_read_check() -> None:
    require_shared_data()
    ds = TopDownCocoDataset(COCO_DIR / "test_coco.json", COCO_DIR, input_size=(64, 48))
    assert ds.find_unreadable_images(decode=True) == []
    assert ds.stats["num_keypoints_mismatch"] == 0


# ----------------------------------------------------------------------------------------------------
# metrics inputs


def _gt() -> dict[str, Any]:
    kp = [10.0, 10.0, 2, 20.0, 10.0, 1] + [0.0, 0.0, 0] * 15
    ann = {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "keypoints": kp, "num_keypoints": 2,
           "area": 2000.0, "bbox": [0.0, 0.0, 40.0, 50.0]}  # fmt: skip
    return {"images": [{"id": 1}], "categories": [{"id": 1, "name": "person"}], "annotations": [ann]}


KP = [11.0, 10.0, 0.9, 20.0, 12.0, 0.8] + [0.0, 0.0, 0.1] * 15


def _result(**fields: Any) -> dict[str, Any]:
    return {"image_id": 1, "category_id": 1, "keypoints": list(KP), "score": 0.9, **fields}


@pytest.mark.parametrize(
    ("result", "needle"),
    [
        (_result(keypoints=["11.0", *KP[1:]]), r"results\[0\]\['keypoints'\]\[0\] must be a number, got str"),
        (_result(keypoints=[True, *KP[1:]]), r"results\[0\]\['keypoints'\]\[0\] must be a number, got bool"),
        (_result(keypoints=np.array(["1"] * 51)), r"results\[0\]\['keypoints'\] must hold numbers"),
        (_result(score="0.9"), r"results\[0\]\['score'\] must be a number, got str"),
        (_result(score=float("inf")), r"results\[0\] has a non-finite score"),
    ],
    ids=["string-value", "bool-value", "string-array", "string-score", "inf-score"],
)  # fmt: skip
def test_bad_result_values_are_named(result: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        coco_keypoint_ap(_gt(), [result])


def test_ground_truth_without_num_keypoints_gets_it_from_the_flags() -> None:
    """Oracle: the same file with num_keypoints written out; every subset agrees."""
    gt = _gt()
    missing = json.loads(json.dumps(gt))
    del missing["annotations"][0]["num_keypoints"]
    for subset in ("all", "visible", "occluded"):
        expected = coco_keypoint_ap(gt, [_result()], subset)
        got = coco_keypoint_ap(missing, [_result()], subset)
        assert got == pytest.approx(expected, nan_ok=True), subset
    assert "num_keypoints" not in missing["annotations"][0]  # the caller's dict is untouched


def test_unparsable_results_and_annotation_files_are_named(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text('[{"image_id": 1,')
    with pytest.raises(ValueError, match=r"results file .*results\.json is not valid JSON"):
        coco_keypoint_ap(_gt(), results)
    ann = tmp_path / "gt.json"
    ann.write_text("{'images': []}")
    with pytest.raises(ValueError, match=r"ann_file file .*gt\.json is not valid JSON"):
        PoseEvaluator(ann)


# ----------------------------------------------------------------------------------------------------
# API edges


def test_loss_names_the_weights_when_they_disagree_with_the_prediction() -> None:
    """B and K come from the prediction: wrong weights are named, not the (correct) flags."""
    loss = VisibilityAwareLoss(SimCCHead(8, (3, 4)))
    x, y = torch.zeros(2, K, 8), torch.zeros(2, K, 6)
    out = SimCCOutput(x, y, None, None)
    flags = torch.full((2, K), 2)

    def targets(weights: torch.Tensor) -> SimCCTargets:
        return SimCCTargets(x.softmax(-1), y.softmax(-1), weights)

    with pytest.raises(ValueError, match=r"^targets.weights .*B=2"):
        loss(out, targets(torch.ones(3, K)), flags)
    with pytest.raises(ValueError, match=r"^targets.weights .*K=17"):
        loss(out, targets(torch.ones(2, K - 1)), flags[:, :-1])
    with pytest.raises(ValueError, match=r"^flags "):
        loss(out, targets(torch.ones(2, K)), flags[:1])


def test_truncated_official_checkpoint_names_its_path(tmp_path: Path) -> None:
    reasoner = VisibilityMaskedReasoner(
        12, K, embed_dim=8, norm_first=False, shared_qkv=True, mask_mode="hard"
    )
    path = tmp_path / "official.pth"
    torch.save(to_official_checkpoint(reasoner, SimCCHead(12, (8, 6), bias=False)), path)
    from_official_checkpoint(path)  # intact: loads
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"official\.pth.*cannot be read"):
        from_official_checkpoint(path)
