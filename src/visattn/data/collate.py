"""Batch collation for top-down samples, with codec targets encoded once per batch.

The recommended fast training path: build [`TopDownCocoDataset`][visattn.data.TopDownCocoDataset] with
``codec=None`` and ``image_dtype="uint8"``, and pass ``collate_fn=TopDownCollate(codec)`` to the
DataLoader. Each sample then carries only the crop, keypoints, flags and meta; the collate stacks them
(``default_collate`` semantics for every key), normalises the uint8 images of the whole batch at once and
encodes the targets of the whole batch in one vectorised ``codec.encode(keypoints (B, K, 2), flags (B,
K))`` call, instead of ~20 small torch ops per sample. The batch equals the one of the per-sample path
(dataset with the codec and ``image_dtype="float32"`` + ``default_collate``) to float rounding.

The collate runs inside the DataLoader workers. To also cut the worker -> main-process traffic (4x for
uint8 images) and move the work to the GPU, use ``TopDownCollate(None, normalize=False)`` and finish
the batch after the transfer::

    batch = {k: v.cuda(non_blocking=True) for k, v in batch.items()}
    batch["image"] = normalize_images(batch["image"])
    targets = codec.encode(batch["keypoints"], batch["flags"])

Shape alphabet: B batch, K keypoints, H x W input crop, Wx / Hy SimCC bins, Hf x Wf heatmap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import default_collate

from visattn.data.dataset import KeypointCodec, normalize_images

__all__ = ["TopDownCollate"]


class TopDownCollate:
    """Collate top-down samples into a batch; optionally normalise images and encode targets batch-wise.

    Every key is stacked with ``torch.utils.data.default_collate`` semantics, except:

    - ``image``: when ``normalize`` is set and the samples hold uint8 RGB crops ``(3, H, W)``
      (``image_dtype="uint8"``), the batch is converted to float32 ImageNet-normalised ``(B, 3, H, W)``
      with [`normalize_images`][visattn.data.normalize_images] arithmetic, bitwise equal to the dataset's
      float32 images; float images are stacked unchanged;
    - with a ``codec``: ``codec.encode(batch["keypoints"] (B, K, 2), batch["flags"] (B, K))`` (COCO
      flags 0/1/2: v == 2 visible, v == 1 occluded, v == 0 unlabelled) runs once for the batch; the
      targets NamedTuple it returns is ``batch["targets"]`` as it is (e.g.
      [`SimCCTargets`][visattn.codecs.SimCCTargets]
      ``(x_labels (B, K, Wx), y_labels (B, K, Hy), weights (B, K))``) and its ``weights`` (as float32) replace
      the dataset's codec-free weights. The samples must not already hold targets (build the dataset with
      ``codec=None``). A head (``model.head``) is a codec.

    The result equals the per-sample path (dataset with the same codec, ``image_dtype="float32"``,
    default collate) to float rounding (the codecs are elementwise, so batching changes no formula).
    An instance holds no state besides its settings and can be pickled into DataLoader workers.

    Args:
        codec: ``None`` or a codec with a batched ``encode(keypoints (B, K, 2), flags (B, K))``
            ([`SimCCCodec`][visattn.codecs.SimCCCodec], [`HeatmapCodec`][visattn.codecs.HeatmapCodec]).
        normalize: convert uint8 images to float32 ImageNet-normalised ones (``False`` keeps uint8,
            e.g. to normalise on the GPU with [`normalize_images`][visattn.data.normalize_images]).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from torch.utils.data import DataLoader
        >>> from visattn.codecs import SimCCCodec
        >>> from visattn.data import TopDownCocoDataset, make_synthetic_coco
        >>> root = Path(tempfile.mkdtemp())
        >>> ann = make_synthetic_coco(root, 2, image_size=(60, 80))
        >>> ds = TopDownCocoDataset(ann, root / "images", input_size=(64, 48), image_dtype="uint8")
        >>> loader = DataLoader(ds, batch_size=2, collate_fn=TopDownCollate(SimCCCodec((64, 48))))
        >>> batch = next(iter(loader))
        >>> batch["image"].dtype, tuple(batch["targets"].x_labels.shape), tuple(batch["weights"].shape)
        (torch.float32, (2, 17, 96), (2, 17))
    """

    def __init__(self, codec: KeypointCodec | None = None, *, normalize: bool = True) -> None:
        if codec is not None and not callable(getattr(codec, "encode", None)):
            raise TypeError(f"codec must be None or have an encode(keypoints, flags) method, got {codec!r}")
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")
        self.codec = codec
        self.normalize = normalize

    def __repr__(self) -> str:
        return f"TopDownCollate(codec={self.codec!r}, normalize={self.normalize})"

    def __call__(self, samples: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, Any]:
        """Collate a list of samples (dicts of tensors) into one batch dict."""
        if not isinstance(samples, Sequence) or len(samples) == 0:
            raise ValueError(f"samples must be a non-empty list of sample dicts, got {samples!r}")
        if not all(isinstance(s, Mapping) for s in samples):
            kinds = sorted({type(s).__name__ for s in samples})
            raise TypeError(f"samples must be dicts of tensors (dataset items), got {kinds}")
        images = [s.get("image") for s in samples]
        convert = self.normalize and all(
            isinstance(im, torch.Tensor) and im.dtype == torch.uint8 for im in images
        )
        if convert:
            shapes = {tuple(im.shape) for im in images if isinstance(im, torch.Tensor)}
            if len(shapes) != 1 or len(next(iter(shapes))) != 3 or next(iter(shapes))[0] != 3:
                raise ValueError(
                    f"sample images must all be (3, H, W) of one size, got shapes {sorted(shapes)}"
                )
            rest: list[Mapping[str, Any]] = [{k: v for k, v in s.items() if k != "image"} for s in samples]
        else:
            rest = list(samples)
        stacked: dict[str, Any] = default_collate(rest)
        batch: dict[str, Any] = {}
        if convert:
            batch["image"] = normalize_images(
                torch.stack([im for im in images if isinstance(im, torch.Tensor)])
            )
        batch.update(stacked)
        if self.codec is not None:
            _encode_batch(self.codec, batch)
        return batch


def _encode_batch(codec: KeypointCodec, batch: dict[str, Any]) -> None:
    """Add the codec targets of the whole batch to ``batch`` (in place) under ``targets``."""
    for key in ("keypoints", "flags"):
        if not isinstance(batch.get(key), torch.Tensor):
            raise ValueError(f"samples need a {key!r} tensor for the codec, got keys {sorted(batch)}")
    if "targets" in batch:
        raise ValueError(
            "samples already hold codec targets: build the dataset with codec=None when TopDownCollate "
            "encodes the targets"
        )
    targets = codec.encode(batch["keypoints"], batch["flags"])  # one call for the batch
    weights = getattr(targets, "weights", None)
    if not isinstance(weights, torch.Tensor):
        raise ValueError(f"codec.encode must return a NamedTuple with a 'weights' field, got {targets!r:.80}")
    batch["targets"] = targets
    batch["weights"] = weights.float()
