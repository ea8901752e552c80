"""Top-down COCO-style keypoint dataset: person boxes -> affine crops -> codec targets.

Every sample is a person box (from ground truth or a detection file) warped to a fixed ``(H, W)``
crop with one ``cv2.warpAffine`` (bilinear, constant 0 border); horizontal flip, half-body, scale and
rotation augmentation are folded into that single matrix, and the keypoints are transformed with the
same matrix in one vectorised step. Randomness comes from a per-item generator
``numpy.random.default_rng([seed, epoch, index])``, so a sample depends only on ``(seed, epoch,
index)``: not on the number of DataLoader workers, their order, or a DistributedSampler's sharding.
Call [`TopDownCocoDataset.set_epoch`][visattn.data.TopDownCocoDataset.set_epoch] at the start of each epoch
(the DataLoader copies the dataset into its workers when an epoch's iterator starts; with
``persistent_workers=True`` the workers keep the epoch they started with).

Fast path for training: build the dataset with ``codec=None, image_dtype="uint8"`` and give the
DataLoader a [`visattn.data.TopDownCollate`][visattn.data.TopDownCollate] holding the codec; it encodes the
targets of the whole batch in one vectorised call and normalises the images batch-wise, producing the same
batch as the per-sample path (see `visattn.data.collate`).

Shape alphabet: K keypoints, H x W input crop, B batch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from visattn._checks import check_choice, check_size_pair
from visattn._json import read_json
from visattn.data._augment import AugmentConfig, draw_augment, half_body_box
from visattn.data._deps import require_cv2
from visattn.data._warp import crop_matrix
from visattn.data.occlusion import RandomOcclusion
from visattn.data.transforms import box_to_center_scale
from visattn.keypoints import KeypointInfo, get_keypoint_info

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageReadError",
    "KeypointCodec",
    "TopDownCocoDataset",
    "normalize_images",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_BOX_PADDING = 1.25
# uint8 -> ImageNet-normalised float32 is ``v * _NORM_MUL + _NORM_ADD`` (two float32 roundings), per RGB
# channel; every path (per sample, per batch, CPU or GPU) uses these constants and this op order.
_STD32 = np.asarray(IMAGENET_STD, dtype=np.float32)
_NORM_MUL = torch.from_numpy(1.0 / (255.0 * _STD32)).view(3, 1, 1)
_NORM_ADD = torch.from_numpy(-np.asarray(IMAGENET_MEAN, dtype=np.float32) / _STD32).view(3, 1, 1)


class ImageReadError(OSError):
    """An image file is missing or cannot be decoded; the message names the file and the sample."""


class KeypointCodec(Protocol):
    """What the dataset and [`TopDownCollate`][visattn.data.TopDownCollate] need from a codec (SimCC /
    heatmap).

    ``encode(keypoints (K, 2) crop px, flags (K,))`` (the dataset) or ``encode(keypoints (B, K, 2),
    flags (B, K))`` (the collate) returns a NamedTuple whose ``weights`` field is the per-keypoint loss
    weight; the sample / batch holds it as it is under ``targets``. A head
    ([`visattn.heads.PoseHead`][visattn.heads.PoseHead]) is a codec too.
    """

    def encode(self, keypoints: torch.Tensor, flags: torch.Tensor) -> Any: ...  # a NamedTuple with weights


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """Convert RGB uint8 images to float32 ImageNet-normalised ones: ``(v / 255 - mean) / std``.

    Computed as ``v * (1 / (255 std)) + (-mean / std)`` in float32, the same op order as
    [`TopDownCocoDataset`][visattn.data.TopDownCocoDataset] with ``image_dtype="float32"``, so both give
    bitwise equal images. On a GPU, normalising after the host-to-device copy moves 4x fewer bytes.

    Args:
        images: ``(..., 3, H, W)`` uint8 RGB, e.g. ``(B, 3, H, W)`` or ``(3, H, W)``, on any device.

    Returns:
        ``(..., 3, H, W)`` float32 on the same device.

    Raises:
        TypeError: not a uint8 tensor.
        ValueError: fewer than 3 dims or not 3 channels in dim -3.

    Example:
        >>> x = torch.full((2, 3, 4, 5), 255, dtype=torch.uint8)
        >>> y = normalize_images(x)
        >>> y.shape, y.dtype, [round(v, 4) for v in y[0, :, 0, 0].tolist()]
        (torch.Size([2, 3, 4, 5]), torch.float32, [2.2489, 2.4286, 2.64])
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a uint8 torch.Tensor (..., 3, H, W), got {type(images).__name__}")
    if images.dtype != torch.uint8:
        raise TypeError(f"images must be a uint8 tensor (..., 3, H, W), got dtype {images.dtype}")
    if images.dim() < 3 or images.shape[-3] != 3:
        raise ValueError(f"images must be (..., 3, H, W) with 3 RGB channels, got {tuple(images.shape)}")
    mul, add = _NORM_MUL.to(images.device), _NORM_ADD.to(images.device)
    return images.to(torch.float32).mul_(mul).add_(add)


# ----------------------------------------------------------------------------------------------------
# annotation validation and image reading (once, where the data enters)

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers (not DHT/JPG/DAC)
_NUMBER_TYPES = (int, float)


def _is_int(value: Any) -> bool:
    return type(value) is int


def _finite(value: Any) -> float:
    """A JSON number as a finite float (bools and strings are not numbers)."""
    if type(value) not in _NUMBER_TYPES:
        raise TypeError(f"expected a number, got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


def _inside(path: str, root: Path) -> bool:
    """Whether ``path`` lies in ``root`` after resolving ``..`` and absolute names (symlinks are kept)."""
    base = os.path.normpath(os.path.abspath(root))
    target = os.path.normpath(os.path.abspath(path))
    return target == base or target.startswith(base.rstrip(os.sep) + os.sep)


def _check_image_entry(
    file: Path, i: int, img: Any, seen: dict[int, int], root: Path
) -> tuple[int, str, tuple[int, int]]:
    """``(id, path, (height, width))`` of ``images[i]``; 0 means a size the file does not give."""
    if not isinstance(img, dict):
        raise ValueError(f"ann_file {file}: images[{i}] must be a dict, got {type(img).__name__}")
    img_id = img.get("id")
    if not isinstance(img_id, int) or isinstance(img_id, bool):
        raise ValueError(f"ann_file {file}: images[{i}] must have an integer 'id', got {img_id!r}")
    where = f"ann_file {file}: image id {img_id} (images[{i}])"
    if img_id in seen:
        raise ValueError(
            f"{where} has the same id as images[{seen[img_id]}]; image ids must be unique (annotations "
            f"would crop from the wrong file)"
        )
    name = img.get("file_name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where} must have a non-empty string 'file_name', got {name!r}")
    size = []
    for key in ("height", "width"):
        value = img.get(key)
        if value is None:
            value = 0
        if type(value) not in _NUMBER_TYPES or not float(value).is_integer() or value < 0:
            raise ValueError(f"{where}: {key} must be an integer >= 0 (0 or missing: unknown), got {value!r}")
        size.append(int(value))
    return img_id, str(root / name), (size[0], size[1])


def _annotation_where(file: Path, ann: dict[str, Any]) -> str:
    return f"ann_file {file}: annotation id {ann.get('id')!r} (image id {ann.get('image_id')!r})"


def _check_annotation(
    file: Path,
    i: int,
    ann: Any,
    k: int,
    keypoint_set: str,
    seen: set[int],
    image_pos: dict[int, int],
) -> tuple[np.ndarray, bool, bool] | None:
    """Validate ``annotations[i]``: None for another category, else ``(raw (K, 3), crowd, num_keypoints
    differs from the number of flags > 0)``. Unlabelled coordinates are zeroed."""
    if not isinstance(ann, dict):
        raise ValueError(f"ann_file {file}: annotations[{i}] must be a dict, got {type(ann).__name__}")
    ann_id = ann.get("id")
    if not isinstance(ann_id, int) or isinstance(ann_id, bool):
        raise ValueError(f"ann_file {file}: annotations[{i}] must have an integer 'id', got {ann_id!r}")
    where = _annotation_where(file, ann)
    if ann_id in seen:
        raise ValueError(f"{where} repeats an annotation id; annotation ids must be unique")
    seen.add(ann_id)
    if ann.get("category_id", 1) != 1:
        return None
    image_id = ann.get("image_id")
    if not _is_int(image_id) or image_id not in image_pos:
        raise ValueError(
            f"annotation {ann_id} in {file} refers to image_id {image_id!r}, which is not in its "
            "'images' list"
        )
    values = ann.get("keypoints", [])
    if not isinstance(values, list):
        raise ValueError(f"{where}: keypoints must be a list [x, y, v] * K, got {type(values).__name__}")
    if len(values) != 3 * k:
        raise ValueError(
            f"annotation {ann_id} in {file} has {len(values)} keypoint values, expected 3*K={3 * k} for "
            f"keypoint set {keypoint_set!r}"
        )
    if not set(map(type, values)) <= set(_NUMBER_TYPES):
        j = next(j for j, v in enumerate(values) if type(v) not in _NUMBER_TYPES)
        raise ValueError(
            f"{where}: keypoints[{j}] (keypoint {j // 3} {'xyv'[j % 3]}) must be a number, got {values[j]!r}"
        )
    raw = np.asarray(values, dtype=np.float64).reshape(k, 3)
    flags = raw[:, 2]
    bad = np.flatnonzero(~np.isin(flags, (0.0, 1.0, 2.0)))
    if bad.size:
        j = int(bad[0])
        raise ValueError(
            f"{where}: keypoint {j} has visibility flag {flags[j]:g}, expected 0 (not labelled), "
            f"1 (labelled, occluded) or 2 (visible)"
        )
    labelled = flags > 0
    bad = np.flatnonzero(labelled & ~np.isfinite(raw[:, :2]).all(axis=1))
    if bad.size:
        j = int(bad[0])
        raise ValueError(
            f"{where}: labelled keypoint {j} (v={flags[j]:g}) must have finite coordinates, got "
            f"({raw[j, 0]}, {raw[j, 1]})"
        )
    raw[~labelled, :2] = 0.0
    crowd = ann.get("iscrowd", 0)
    if type(crowd) not in (int, bool) or crowd not in (0, 1):
        raise ValueError(f"{where}: iscrowd must be 0 or 1, got {crowd!r}")
    count = ann.get("num_keypoints")
    if count is not None and (not _is_int(count) or count < 0):
        raise ValueError(f"{where}: num_keypoints must be an integer >= 0, got {count!r}")
    mismatch = count is not None and count != int(labelled.sum())
    return raw, bool(crowd), mismatch


def _check_box(file: Path, ann: dict[str, Any]) -> tuple[float, float, float, float]:
    """The annotation's ``bbox`` as four finite floats (its ``area`` too must be a finite number >= 0)."""
    box = ann.get("bbox")
    if not isinstance(box, list) or len(box) != 4 or any(type(v) not in _NUMBER_TYPES for v in box):
        raise ValueError(f"{_annotation_where(file, ann)}: bbox must be 4 numbers [x, y, w, h], got {box!r}")
    if not all(math.isfinite(v) for v in box):
        raise ValueError(f"{_annotation_where(file, ann)}: bbox must be finite, got {box!r}")
    area = ann.get("area", 0.0)
    if type(area) not in _NUMBER_TYPES or not math.isfinite(area) or area < 0:
        raise ValueError(f"{_annotation_where(file, ann)}: area must be a finite number >= 0, got {area!r}")
    return float(box[0]), float(box[1]), float(box[2]), float(box[3])


def _header_size(data: bytes) -> tuple[int, int] | None:
    """``(height, width)`` from a PNG IHDR or a JPEG start-of-frame header, None for other data."""
    if data[:8] == _PNG_MAGIC and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        return height, width
    if data[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(data)
    while i + 4 <= n and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
        elif marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        elif marker in _JPEG_SOF:
            if i + 9 > n:
                return None
            return int.from_bytes(data[i + 5 : i + 7], "big"), int.from_bytes(data[i + 7 : i + 9], "big")
        else:
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def _truncation(data: bytes) -> str | None:
    """Why ``data`` is a cut-off JPEG / PNG (no end-of-image marker after the last scan, no IEND)."""
    if data[:2] == b"\xff\xd8":
        if data.rfind(b"\xff\xd9") < max(2, data.rfind(b"\xff\xda")):
            return "JPEG data ends before its end-of-image marker (truncated file)"
    elif data[:8] == _PNG_MAGIC and data.rfind(b"IEND") < 8:
        return "PNG data has no IEND chunk (truncated file)"
    return None


def decode_image(path: str, expected: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Decode ``path`` to BGR uint8 in its stored pixel orientation (EXIF orientation is ignored).

    Used by the dataset and by [`visattn.inference.read_rgb`][visattn.inference.read_rgb]. Every failure is
    an [`ImageReadError`][visattn.data.ImageReadError] naming the file: missing or
    unreadable, truncated JPEG / PNG, an OpenCV decode error (e.g. a header claiming a huge size), or a size
    that differs from ``expected`` ``(height, width)`` of the annotation file (0: not checked).
    """
    cv2 = require_cv2()
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as err:
        raise ImageReadError(f"image file not found or unreadable: {path} ({err.strerror})") from None
    problem = _truncation(data)
    if problem is not None:
        raise ImageReadError(f"could not decode image file {path}: {problem}")

    def check_size(size: tuple[int, int], what: str) -> None:
        if all(expected) and size != expected:
            raise ImageReadError(
                f"image file {path} {what} {size[0]}x{size[1]} (height x width) but the annotation file "
                f"gives height={expected[0]} width={expected[1]}; annotations must be in the stored pixel "
                f"orientation (EXIF orientation is ignored)"
            )

    header = _header_size(data)
    if header is not None:
        check_size(header, "has a header of")
    try:
        image = cv2.imdecode(
            np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
        )
    except cv2.error as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        claims = "" if header is None else f" (its header claims {header[0]}x{header[1]} pixels)"
        raise ImageReadError(f"could not decode image file {path}{claims}: OpenCV: {reason}") from None
    if image is None:
        raise ImageReadError(f"could not decode image file {path}")
    check_size(image.shape[:2], "decodes to")
    result: np.ndarray = image
    return result


class TopDownCocoDataset(Dataset[dict[str, torch.Tensor]]):
    """Top-down person crops from a COCO ``person_keypoints`` file (any keypoint set).

    Person boxes come from the ground truth (annotations that are crowd, have no labelled keypoint,
    or whose box clipped to the image has zero area are skipped and counted in `stats`) or from a
    detection-results file (``[{"image_id", "bbox", "score", "category_id"}]``; boxes with
    ``score >= det_score_threshold`` are kept, ``ann_id`` is -1 and keypoints / flags are zeros). A box
    ``(x, y, w, h)`` becomes ``center`` and ``scale`` (aspect ratio ``W / H`` of ``input_size``,
    padding 1.25).

    Each item is a dict of tensors:

    - ``image (3, H, W)`` float32, RGB, ImageNet-normalised (``image_dtype="float32"``), or the raw
      RGB crop as uint8 (``image_dtype="uint8"``: normalise it batch-wise with
      [`TopDownCollate`][visattn.data.TopDownCollate] or [`normalize_images`][visattn.data.normalize_images],
      e.g. on the GPU);
    - ``keypoints (K, 2)`` crop px (zeros where the flag is 0);
    - ``flags (K,)`` int64 original COCO flags (0 unlabelled, 1 occluded, 2 visible; a keypoint is
      visible iff v == 2), permuted with the keypoints on flip and never changed by the crop: a labelled
      keypoint that falls outside the crop keeps its flag and gets weight 0;
    - ``weights (K,)`` float32: the codec's weights, or without a codec ``v > 0`` and inside the crop
      (``0 <= x < W``, ``0 <= y < H``);
    - ``targets``: what the codec's ``encode`` returns, as it is (a NamedTuple such as
      [`SimCCTargets`][visattn.codecs.SimCCTargets]; the DataLoader's default collation batches it field by
      field), only with a codec (or a head: ``codec=model.head``);
    - meta: ``image_id``, ``ann_id`` (-1 for detections), ``index`` (the sample's index in the dataset:
      unique per instance, also for detections), ``center (2,)``, ``scale (2,)`` (crop size ``(w, h)``
      in image px), ``bbox (4,)`` (the person box ``(x, y, w, h)`` in image px, as annotated or
      detected and clipped to the image: the box the crop is made from, and the PCK scale),
      ``rotation ()`` degrees, ``flipped ()`` bool (``center`` is then in the mirrored image,
      ``x' = w_img - 1 - x``), ``bbox_score ()``, ``area ()``, ``replaced ()`` bool (True when this
      index's image was unreadable and ``on_error="skip"`` substituted another sample).

    Map predictions back with
    [`visattn.data.transforms.crop_to_image`][visattn.data.transforms.crop_to_image].

    Errors: with ``on_error="raise"`` a missing or undecodable image raises
    [`ImageReadError`][visattn.data.ImageReadError] naming the file, the sample index, image id and annotation
    id (inside a DataLoader worker the re-raised error carries the same text). With ``on_error="skip"`` the
    sample is replaced by the next readable index (``index + 1, index + 2, ...`` modulo the length:
    deterministic), ``replaced`` is set and `skipped` counts the unreadable files. DataLoader workers hold
    copies of the dataset, so their `skipped` never reaches the main process: count
    ``batch["replaced"].sum()`` over the epoch, and list the files with
    [`find_unreadable_images`][visattn.data.TopDownCocoDataset.find_unreadable_images] in the main process.

    ``cache_images=True`` keeps every decoded image (BGR uint8) in a per-process dict: each DataLoader
    worker builds its own cache (memory grows with the number of workers, and the caches are dropped
    after each epoch unless ``persistent_workers=True``).

    Args:
        ann_file: COCO keypoint annotation JSON.
        image_root: folder that ``images[].file_name`` is relative to.
        keypoint_info: ``"coco"``, ``"crowdpose"`` or a [`KeypointInfo`][visattn.keypoints.KeypointInfo].
        input_size: crop size ``(H, W)``.
        codec: ``None`` or an object with ``encode(keypoints (K, 2), flags (K,))`` (SimCC / heatmap codec).
            Faster: ``None`` here and the codec in a [`TopDownCollate`][visattn.data.TopDownCollate].
        train: apply ``augment`` (otherwise crops are deterministic and unaugmented).
        det_file: detection-results JSON, or None for ground-truth boxes.
        det_score_threshold: minimum detection score kept.
        augment: augmentation settings (default [`AugmentConfig()`][visattn.data.AugmentConfig] when
            ``train``).
        seed: base seed of the per-item generators.
        on_error: ``"raise"`` or ``"skip"`` for unreadable images.
        cache_images: keep decoded images in memory.
        image_dtype: ``"float32"`` (normalised) or ``"uint8"`` (raw RGB crop, 4x less memory and IPC).
        occlusion: a [`RandomOcclusion`][visattn.data.RandomOcclusion] applied to the warped crop when
            ``train`` (before target encoding, per-sample randomness): ``flags`` are then the updated ones and
            the sample gains ``covered (K,)`` bool; ``None`` (default) changes nothing.
        allow_outside_root: accept ``file_name`` entries that resolve outside ``image_root`` (absolute
            paths or ``..``); refused by default.

    Example:
        >>> import tempfile
        >>> from visattn.data import make_synthetic_coco
        >>> root = Path(tempfile.mkdtemp())
        >>> ann = make_synthetic_coco(root, 2, image_size=(60, 80))
        >>> ds = TopDownCocoDataset(ann, root / "images", input_size=(64, 48), train=True)
        >>> item = ds[0]
        >>> item["image"].shape, item["keypoints"].shape, item["flags"].dtype
        (torch.Size([3, 64, 48]), torch.Size([17, 2]), torch.int64)
    """

    def __init__(
        self,
        ann_file: str | os.PathLike[str],
        image_root: str | os.PathLike[str],
        *,
        keypoint_info: str | KeypointInfo = "coco",
        input_size: Sequence[int] = (256, 192),
        codec: KeypointCodec | None = None,
        train: bool = False,
        det_file: str | os.PathLike[str] | None = None,
        det_score_threshold: float = 0.0,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        on_error: str = "raise",
        cache_images: bool = False,
        image_dtype: str = "float32",
        occlusion: RandomOcclusion | None = None,
        allow_outside_root: bool = False,
    ) -> None:
        super().__init__()
        for name, path in (("ann_file", ann_file), ("image_root", image_root), ("det_file", det_file)):
            if not (isinstance(path, (str, os.PathLike)) or (name == "det_file" and path is None)):
                kind = "a path (str or os.PathLike)" + (" or None" if name == "det_file" else "")
                raise TypeError(f"{name} must be {kind}, got {type(path).__name__} {path!r}")
        for name, flag in (
            ("train", train),
            ("cache_images", cache_images),
            ("allow_outside_root", allow_outside_root),
        ):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__} {flag!r}")
        self.keypoint_info = get_keypoint_info(keypoint_info)
        self.input_size = check_size_pair("input_size", input_size)
        if codec is not None and not callable(getattr(codec, "encode", None)):
            raise TypeError(f"codec must be None or have an encode(keypoints, flags) method, got {codec!r}")
        self.codec = codec
        self.train = bool(train)
        if augment is not None and not isinstance(augment, AugmentConfig):
            raise TypeError(f"augment must be an AugmentConfig or None, got {type(augment).__name__}")
        self.augment = augment if augment is not None else AugmentConfig()
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int >= 0, got {type(seed).__name__} {seed!r}")
        if seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        self.seed = seed
        self.epoch = 0
        self.on_error = check_choice("on_error", on_error, ("raise", "skip"))
        self.cache_images = bool(cache_images)
        self.image_dtype = check_choice("image_dtype", image_dtype, ("float32", "uint8"))
        if occlusion is not None and not isinstance(occlusion, RandomOcclusion):
            raise TypeError(f"occlusion must be a RandomOcclusion or None, got {type(occlusion).__name__}")
        self.occlusion = occlusion
        if isinstance(det_score_threshold, bool) or not isinstance(det_score_threshold, (int, float)):
            raise TypeError(
                f"det_score_threshold must be a finite number, got {type(det_score_threshold).__name__} "
                f"{det_score_threshold!r}"
            )
        if not math.isfinite(det_score_threshold):
            raise ValueError(f"det_score_threshold must be a finite number, got {det_score_threshold!r}")
        self.ann_file = Path(ann_file)
        self.image_root = Path(image_root)
        self.det_file = None if det_file is None else Path(det_file)
        self.skipped: dict[str, int] = {}
        self._cache: dict[str, np.ndarray] = {}
        self._bad: set[str] = set()
        self.allow_outside_root = allow_outside_root

        k = self.keypoint_info.num_keypoints
        self._flip_index = np.asarray(self.keypoint_info.flip_index, dtype=np.int64)
        self._upper = np.zeros(k, dtype=bool)
        self._upper[list(self.keypoint_info.upper_body)] = True
        self._lower: np.ndarray | None = None  # the complement of the upper body unless the set names it
        if self.keypoint_info.lower_body:
            self._lower = np.zeros(k, dtype=bool)
            self._lower[list(self.keypoint_info.lower_body)] = True
        self._load(float(det_score_threshold))

        h, w = self.input_size
        boxes = torch.from_numpy(self._boxes) if len(self._boxes) else torch.zeros(0, 4, dtype=torch.float64)
        center, scale = box_to_center_scale(boxes, w / h, _BOX_PADDING)
        self._center = center.numpy()
        self._scale = scale.numpy()
        self._bbox = np.asarray(self._boxes, dtype=np.float32).reshape(-1, 4)
        # per-sample meta as 0-d numpy arrays of the output dtype: torch.from_numpy of them is cheap
        self._meta_image_id = np.asarray(self.image_ids, dtype=np.int64).reshape(-1)[self._image_index]
        self._meta_score = self._scores.astype(np.float32)
        self._meta_area = self._areas.astype(np.float32)

    # ------------------------------------------------------------------ loading
    def _load(self, det_score_threshold: float) -> None:
        """Read and validate the annotation (and detection) file once; see `_check_annotation`."""
        k = self.keypoint_info.num_keypoints
        file = self.ann_file
        data = read_json(file, "ann_file")
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            raise ValueError(f"ann_file {file} is not a COCO annotation file (no 'images' list)")
        annotations = data.get("annotations", [])
        if not isinstance(annotations, list):
            raise ValueError(
                f"ann_file {file}: 'annotations' must be a list, got {type(annotations).__name__}"
            )
        images = data["images"]
        image_pos: dict[int, int] = {}
        self.image_files = []
        self.image_ids = []
        sizes: list[tuple[int, int]] = []
        for i, img in enumerate(images):
            img_id, path, size = _check_image_entry(file, i, img, image_pos, self.image_root)
            if not self.allow_outside_root and not _inside(path, self.image_root):
                raise ValueError(
                    f"ann_file {file}: image id {img_id} has file_name {img['file_name']!r}, which resolves "
                    f"outside image_root {self.image_root}; pass allow_outside_root=True if that is intended"
                )
            image_pos[img_id] = i
            self.image_files.append(path)
            self.image_ids.append(img_id)
            sizes.append(size)
        self._sizes = sizes

        stats = {"annotations": len(annotations), "crowd": 0, "no_keypoints": 0}
        stats.update({"empty_box": 0, "other_category": 0, "detections": 0, "below_threshold": 0})
        stats["num_keypoints_mismatch"] = 0
        rows: list[tuple[int, list[float], np.ndarray, int, float, float]] = []
        ann_ids: set[int] = set()
        for i, ann in enumerate(annotations):
            checked = _check_annotation(file, i, ann, k, self.keypoint_info.name, ann_ids, image_pos)
            if checked is None:
                stats["other_category"] += int(self.det_file is None)
                continue
            raw, crowd, mismatch = checked
            stats["num_keypoints_mismatch"] += int(mismatch)
            if self.det_file is not None:
                continue
            if crowd:
                stats["crowd"] += 1
                continue
            if not (raw[:, 2] > 0).any():
                stats["no_keypoints"] += 1
                continue
            pos = image_pos[ann["image_id"]]
            img_h, img_w = sizes[pos]
            x, y, bw, bh = _check_box(file, ann)
            if img_w > 0 and img_h > 0:  # clip to the image as MMPose does
                x1, y1 = min(max(x, 0.0), img_w - 1.0), min(max(y, 0.0), img_h - 1.0)
                x2, y2 = min(max(x + bw, 0.0), img_w - 1.0), min(max(y + bh, 0.0), img_h - 1.0)
                x, y, bw, bh = x1, y1, x2 - x1, y2 - y1
            if bw <= 0 or bh <= 0:
                stats["empty_box"] += 1
                continue
            area = float(ann.get("area", bw * bh))
            rows.append((pos, [x, y, bw, bh], raw, int(ann["id"]), 1.0, area))
        if self.det_file is not None:
            dets = read_json(self.det_file, "det_file")
            if not isinstance(dets, list):
                raise ValueError(
                    f"det_file {self.det_file} must hold a list of detections, got {type(dets).__name__}"
                )
            zeros = np.zeros((k, 3))
            for i, det in enumerate(dets):
                if not isinstance(det, dict):
                    raise ValueError(f"det_file {self.det_file}: entry {i} must be a dict, got {det!r}")
                if det.get("category_id", 1) != 1:
                    stats["other_category"] += 1
                    continue
                stats["detections"] += 1
                try:
                    score = _finite(det["score"])
                    x, y, bw, bh = (_finite(v) for v in det["bbox"])
                    image_id = det["image_id"]
                except (KeyError, TypeError, ValueError) as error:
                    raise ValueError(
                        f"det_file {self.det_file}: entry {i} must have image_id, a numeric score and "
                        f"bbox [x, y, w, h], got {det!r} ({type(error).__name__}: {error})"
                    ) from error
                if score < det_score_threshold:
                    stats["below_threshold"] += 1
                    continue
                if image_id not in image_pos:
                    raise ValueError(
                        f"det_file {self.det_file}: entry {i} is for image_id {image_id!r}, which is not "
                        f"in {file}"
                    )
                if bw <= 0 or bh <= 0:
                    stats["empty_box"] += 1
                    continue
                rows.append((image_pos[det["image_id"]], [x, y, bw, bh], zeros, -1, score, bw * bh))
        stats["samples"] = len(rows)
        self.stats: dict[str, int] = stats

        n = len(rows)
        self._image_index = np.array([r[0] for r in rows], dtype=np.int64)
        self._boxes = np.array([r[1] for r in rows], dtype=np.float64).reshape(n, 4)
        raw_all = np.stack([r[2] for r in rows]) if n else np.zeros((0, k, 3))
        self._keypoints = np.ascontiguousarray(raw_all[:, :, :2])
        self._flags = raw_all[:, :, 2].astype(np.int64)
        self._ann_ids = np.array([r[3] for r in rows], dtype=np.int64)
        self._scores = np.array([r[4] for r in rows], dtype=np.float64)
        self._areas = np.array([r[5] for r in rows], dtype=np.float64)

    # ------------------------------------------------------------------ public helpers
    def __len__(self) -> int:
        return len(self._image_index)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch`` (call before each epoch's DataLoader loop)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        self.epoch = epoch

    def image_path(self, index: int) -> str:
        """Path of the image that sample ``index`` is cropped from."""
        return self.image_files[int(self._image_index[index])]

    def instance(self, index: int) -> tuple[int, str, tuple[float, float, float, float], float]:
        """``(image_id, image path, box (x, y, w, h), box score)`` of sample ``index`` without reading its
        image: the box as validated and clipped when the file was loaded (a detection's score, 1 for a
        ground-truth box). ``visattn-predict`` takes its boxes from here.

        Example:
            >>> import tempfile
            >>> from visattn.data import make_synthetic_coco
            >>> root = Path(tempfile.mkdtemp())
            >>> ds = TopDownCocoDataset(make_synthetic_coco(root, 1, image_size=(60, 80)), root / "images")
            >>> image_id, path, box, score = ds.instance(0)
            >>> image_id, Path(path).name, len(box), score
            (1, 'train_000000.jpg', 4, 1.0)
        """
        x, y, w, h = (float(v) for v in self._boxes[index])
        return (
            int(self._meta_image_id[index]),
            self.image_path(index),
            (x, y, w, h),
            float(self._scores[index]),
        )

    def find_unreadable_images(self, *, decode: bool = False) -> list[str]:
        """Image files of this dataset that are missing or, with ``decode``, fail the checks of reading.

        ``decode=True`` reads every file as an item would: truncated JPEG / PNG data, OpenCV decode
        errors and sizes that differ from the annotation file's ``height`` / ``width`` count as unreadable.
        """
        bad = []
        for pos in sorted(set(self._image_index.tolist())):
            path = self.image_files[pos]
            if not os.path.isfile(path):
                bad.append(path)
                continue
            if decode:
                try:
                    decode_image(path, self._sizes[pos])
                except ImageReadError:
                    bad.append(path)
        return bad

    # ------------------------------------------------------------------ items
    def _read(self, index: int) -> np.ndarray:
        path = self.image_path(index)
        cached = self._cache.get(path)
        if cached is not None:
            return cached
        pos = int(self._image_index[index])
        where = f"(sample {index}, image_id {self.image_ids[pos]}, ann_id {self._ann_ids[index]})"
        if path in self._bad:
            raise ImageReadError(f"image file not found or unreadable: {path} {where}")
        try:
            image = decode_image(path, self._sizes[pos])
        except ImageReadError as err:
            raise ImageReadError(f"{err} {where}") from None
        if self.cache_images:
            self._cache[path] = image
        return image

    def _to_tensor(self, crop: np.ndarray) -> torch.Tensor:
        """``(3, H, W)`` RGB image (float32 normalised or uint8) from the ``(H, W, 3)`` BGR uint8 crop."""
        cv2 = require_cv2()
        h, w = crop.shape[:2]
        rgb = np.empty((3, h, w), dtype=np.uint8)
        planes = cv2.split(crop, [rgb[2], rgb[1], rgb[0]])  # BGR -> RGB planes, written in place
        if not np.may_share_memory(planes[0], rgb):  # an OpenCV that returned new arrays instead
            rgb = np.stack(planes[::-1])
        image = torch.from_numpy(rgb)  # (3, H, W) uint8
        if self.image_dtype == "uint8":
            return image
        return torch.empty(3, h, w).copy_(image).mul_(_NORM_MUL).add_(_NORM_ADD)  # as normalize_images

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} samples")
        index %= n
        if self.on_error == "raise":
            return self._sample(index, replaced=False)
        for step in range(n):
            j = (index + step) % n
            try:
                return self._sample(j, replaced=step > 0)
            except ImageReadError:
                path = self.image_path(j)
                self._bad.add(path)
                self.skipped[path] = self.skipped.get(path, 0) + 1
        raise ImageReadError(f"no readable image in the dataset ({n} samples; e.g. {self.image_path(index)})")

    def _sample(self, index: int, *, replaced: bool) -> dict[str, torch.Tensor]:
        cv2 = require_cv2()
        image = self._read(index)
        img_w = image.shape[1]
        out_h, out_w = self.input_size
        keypoints = self._keypoints[index]
        flags = self._flags[index]
        center = self._center[index]
        scale = self._scale[index]
        rotation, flipped = 0.0, False
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            draw = draw_augment(rng, self.augment)
            if draw.flip:
                flipped = True
                keypoints = np.stack((img_w - 1 - keypoints[:, 0], keypoints[:, 1]), axis=1)[self._flip_index]
                flags = flags[self._flip_index]
                center = np.array([img_w - 1 - center[0], center[1]])
            if draw.half_body:
                half = half_body_box(
                    keypoints, flags, self._upper, draw.prefer_upper, self.augment, out_w / out_h, self._lower
                )
                if half is not None:
                    center, scale = half
            scale = scale * draw.scale
            rotation = draw.rotation
        matrix = crop_matrix(center, float(scale[0]), rotation, self.input_size)
        warp = matrix
        if flipped:  # fold the mirror x -> w - 1 - x into the warp: one resampling of the image
            warp = matrix.copy()
            warp[:, 0] = -matrix[:, 0]
            warp[:, 2] = matrix[:, 2] + matrix[:, 0] * (img_w - 1)
        crop = cv2.warpAffine(
            image, warp, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )
        kp = keypoints @ matrix[:, :2].T + matrix[:, 2]  # (K, 2)
        kp[flags == 0] = 0.0
        covered = None
        if self.train and self.occlusion is not None:  # same per-item rng, after the augment draws
            crop, flags, covered = self.occlusion.occlude_sample(crop, kp, flags, rng)
        kp_t = torch.from_numpy(kp.astype(np.float32))
        flags_t = torch.from_numpy(np.ascontiguousarray(flags, dtype=np.int64))
        sample: dict[str, torch.Tensor] = {
            "image": self._to_tensor(crop),
            "keypoints": kp_t,
            "flags": flags_t,
        }
        if self.codec is None:
            inside = (kp[:, 0] >= 0) & (kp[:, 0] < out_w) & (kp[:, 1] >= 0) & (kp[:, 1] < out_h)
            sample["weights"] = torch.from_numpy(((flags > 0) & inside).astype(np.float32))
        else:
            targets = self.codec.encode(kp_t, flags_t)
            sample["targets"] = targets
            sample["weights"] = targets.weights.float()
        # 0-d / 1-d meta straight from numpy (torch.tensor(python value) costs a few us each)
        sample["image_id"] = torch.from_numpy(np.array(self._meta_image_id[index]))
        sample["ann_id"] = torch.from_numpy(np.array(self._ann_ids[index]))
        sample["index"] = torch.from_numpy(np.array(index, dtype=np.int64))
        sample["center"] = torch.from_numpy(center.astype(np.float32))
        sample["scale"] = torch.from_numpy(scale.astype(np.float32))
        sample["rotation"] = torch.from_numpy(np.array(rotation, dtype=np.float32))
        sample["flipped"] = torch.from_numpy(np.array(flipped))
        sample["bbox_score"] = torch.from_numpy(np.array(self._meta_score[index]))
        sample["area"] = torch.from_numpy(np.array(self._meta_area[index]))
        sample["bbox"] = torch.from_numpy(self._bbox[index].copy())
        sample["replaced"] = torch.from_numpy(np.array(replaced))
        if covered is not None:
            sample["covered"] = torch.from_numpy(covered)
        return sample
