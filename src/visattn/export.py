"""Deployment export: ONNX files and ``torch.export`` programs with optional in-graph decoding.

[`DeploymentModel`][visattn.export.DeploymentModel] wraps a [`SimCCAdapter`][visattn.adapters.SimCCAdapter] or
[`HeatmapAdapter`][visattn.adapters.HeatmapAdapter] and returns a tuple of plain tensors, named by its
``output_names``:

=============== ============================ ==================================================
name            shape                        meaning
=============== ============================ ==================================================
``x_logits``    ``(B, K, Wx)``               SimCC x logits (SimCC models)
``y_logits``    ``(B, K, Hy)``               SimCC y logits (SimCC models)
``heatmaps``    ``(B, K, Hf, Wf)``           (refined) heatmaps (heatmap models)
``vis_probs``   ``(B, K)``                   ``sigmoid(vis_logits)``: probability that each
                                             keypoint is visible (models with a reasoner only)
``keypoints``   ``(B, K, 2)``                decoded ``(x, y)`` in input-crop pixels
                                             (``decode=True``)
``scores``      ``(B, K)``                   decoded keypoint scores (``decode=True``)
=============== ============================ ==================================================

Models without a reasoner have no ``vis_probs`` output (there is no visibility prediction).
Decoding runs inside the graph through the model's head (``model.head.decode``, the functions of
[`visattn.codecs`][visattn.codecs]), so an exported model gives the same keypoints as PyTorch:

- SimCC: ``argmax / split_ratio`` per axis; score ``min(max softmax(x), max softmax(y))`` in (0, 1].
- Heatmaps: argmax with the head's sub-pixel refinement (quarter-cell shift or DARK), scaled by
  ``input_size / heatmap_size``; score = maximum heatmap value (as
  [`visattn.codecs.heatmap_decode`][visattn.codecs.heatmap_decode]).

[`export_onnx`][visattn.export.export_onnx] uses the dynamo-based ONNX exporter
(``torch.onnx.export(..., dynamo=True)``, which goes through ``torch.export``) with a symbolic batch axis
named ``batch``; it needs the optional dependencies ``onnx`` and ``onnxscript``
(``pip install "visattn[export]"``; ``onnxruntime`` to run the file).
[`export_program`][visattn.export.export_program] needs only torch.

Shape alphabet: B batch, K keypoints, H x W input crop, Hf x Wf heatmap, Wx / Hy SimCC bins.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visattn._checks import check_positive_int, check_size_pair, check_tensor
from visattn.adapters import HeatmapAdapter, SimCCAdapter, eval_mode, factory_kwargs
from visattn.heads import PoseHead

__all__ = ["DeploymentModel", "export_onnx", "export_program"]

# Output fields that come from the reasoner, not the head (exported as ``vis_probs``).
_REASONER_FIELDS = ("vis_logits", "mask")


class DeploymentModel(nn.Module):
    """Inference wrapper returning a tuple of plain tensors (no ``None``), ready for export.

    Args:
        model: a [`SimCCAdapter`][visattn.adapters.SimCCAdapter] or
            [`HeatmapAdapter`][visattn.adapters.HeatmapAdapter]. Its reasoner must not need ground-truth
            visibility (``mask_source`` "ground_truth").
        decode: append decoded ``keypoints (B, K, 2)`` (crop px) and ``scores (B, K)``.
        input_size: ``(H, W)`` input crop size: defaults to (and must equal) ``model.input_size`` (a
            heatmap model's is set with ``HeatmapAdapter(input_size=...)``, default stride 4).

    Attributes:
        model: the wrapped adapter.
        decode: as given.
        input_size: ``(H, W)``.
        output_names: names of the returned tensors, in order (see the module docstring).

    Example:
        >>> from visattn.adapters import SimCCAdapter
        >>> backbone = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        >>> from functools import partial
        >>> from visattn.reasoner import VisibilityMaskedReasoner
        >>> reasoner = partial(VisibilityMaskedReasoner, embed_dim=16, depth=1)
        >>> model = SimCCAdapter(backbone, 8, 17, (32, 24), reasoner=reasoner)
        >>> deploy = DeploymentModel(model, decode=True).eval()
        >>> deploy.output_names
        ('x_logits', 'y_logits', 'vis_probs', 'keypoints', 'scores')
        >>> [tuple(t.shape) for t in deploy(torch.zeros(2, 3, 32, 24))]
        [(2, 17, 48), (2, 17, 64), (2, 17), (2, 17, 2), (2, 17)]
    """

    def __init__(
        self,
        model: SimCCAdapter | HeatmapAdapter,
        *,
        decode: bool = False,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(getattr(model, "head", None), PoseHead) or not hasattr(model, "reasoner"):
            raise TypeError(
                "model must be a SimCCAdapter or a HeatmapAdapter (a module with a PoseHead head and a "
                f"reasoner attribute), got {type(model).__name__}"
            )
        if not isinstance(decode, bool):
            raise TypeError(f"decode must be a bool, got {type(decode).__name__} {decode!r}")
        if model.reasoner is not None and model.reasoner.mask_source == "ground_truth":
            raise ValueError(
                "model.reasoner.mask_source must not be 'ground_truth' for deployment (there are no "
                "ground-truth flags at inference), got 'ground_truth'; set it to 'predicted' before export"
            )
        if input_size is not None and check_size_pair("input_size", input_size) != model.input_size:
            raise ValueError(
                f"input_size must equal the model's input_size {model.input_size} (build the adapter with "
                f"the crop size it is deployed at), got {input_size}"
            )
        self.input_size = model.input_size
        names = [name for name in model.head.output_type._fields if name not in _REASONER_FIELDS]
        self.model = model
        self.decode = decode
        self._num_raw = len(names)
        if model.reasoner is not None:
            names.append("vis_probs")
        if decode:
            names += ["keypoints", "scores"]
        self.output_names: tuple[str, ...] = tuple(names)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run the model and return the tensors named by ``output_names``.

        Args:
            images: ``(B, 3, H, W)`` crops of ``input_size``.

        Returns:
            tuple of tensors in the order of ``output_names``.
        """
        height, width = self.input_size
        check_tensor("images", images, "B C H W", floating=True, C=3, H=height, W=width)
        out = self.model(images)
        outputs: list[torch.Tensor] = [getattr(out, name) for name in self.output_names[: self._num_raw]]
        vis_logits = out.vis_logits
        decoded = self.model.head.decode(out) if self.decode else None
        if vis_logits is not None:
            outputs.append(torch.sigmoid(vis_logits))  # (B, K)
        if decoded is not None:
            outputs += list(decoded)  # keypoints (B, K, 2), scores (B, K)
        return tuple(outputs)


def _example_images(deploy: DeploymentModel, batch: int) -> torch.Tensor:
    """A random example batch on the device/dtype of the model's first floating parameter or buffer."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    images = torch.randn(batch, 3, *deploy.input_size, generator=generator)
    return images.to(**factory_kwargs(deploy))


def _dynamic_shapes(dynamic_batch: bool, example_batch: int) -> tuple[dict[int, Any]] | None:
    if not isinstance(dynamic_batch, bool):
        raise TypeError(f"dynamic_batch must be a bool, got {type(dynamic_batch).__name__}")
    check_positive_int("example_batch", example_batch)
    if not dynamic_batch:
        return None
    if example_batch < 2:
        raise ValueError(
            f"example_batch must be >= 2 with dynamic_batch=True (torch.export specialises sizes 0 and 1), "
            f"got {example_batch}"
        )
    return ({0: torch.export.Dim("batch")},)


def export_program(
    model: SimCCAdapter | HeatmapAdapter,
    *,
    decode: bool = False,
    dynamic_batch: bool = True,
    example_batch: int = 2,
    input_size: tuple[int, int] | None = None,
) -> torch.export.ExportedProgram:
    """Export an adapter (eval mode) with `torch.export.export`.

    The program takes ``images (B, 3, H, W)`` and returns the tuple of
    [`DeploymentModel`][visattn.export.DeploymentModel]
    (``DeploymentModel(model, decode=decode).output_names``). The model's training flags are restored
    afterwards.

    Args:
        model: a [`SimCCAdapter`][visattn.adapters.SimCCAdapter] or
            [`HeatmapAdapter`][visattn.adapters.HeatmapAdapter].
        decode: also return decoded ``keypoints (B, K, 2)`` and ``scores (B, K)``.
        dynamic_batch: make the batch axis symbolic (any ``B >= 1`` at run time).
        example_batch: batch size of the example input used for tracing (>= 2 with a dynamic batch).
        input_size: see [`DeploymentModel`][visattn.export.DeploymentModel] (``model.input_size``).

    Returns:
        the `torch.export.ExportedProgram`; call ``program.module()(images)``.

    Example:
        >>> from visattn.adapters import SimCCAdapter
        >>> model = SimCCAdapter(nn.Conv2d(3, 8, 3, stride=4, padding=1), 8, 17, (32, 24), reasoner=None)
        >>> program = export_program(model, decode=True)
        >>> [tuple(t.shape) for t in program.module()(torch.zeros(3, 3, 32, 24))]
        [(3, 17, 48), (3, 17, 64), (3, 17, 2), (3, 17)]
    """
    deploy = DeploymentModel(model, decode=decode, input_size=input_size)
    dynamic_shapes = _dynamic_shapes(dynamic_batch, example_batch)
    with eval_mode(deploy), torch.no_grad():
        return torch.export.export(
            deploy, (_example_images(deploy, example_batch),), dynamic_shapes=dynamic_shapes
        )


def _require_onnx_exporter() -> None:
    missing = []
    for name in ("onnx", "onnxscript"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(
            f"export_onnx needs the optional dependencies {', '.join(missing)}: "
            f'pip install "visattn[export]" (onnx, onnxscript, onnxruntime)'
        )


def export_onnx(
    model: SimCCAdapter | HeatmapAdapter,
    path: str | os.PathLike[str],
    *,
    decode: bool = False,
    opset: int = 18,
    dynamic_batch: bool = True,
    example_batch: int = 2,
    input_size: tuple[int, int] | None = None,
    external_data: bool = False,
) -> Path:
    """Export an adapter (eval mode) to an ONNX file with the dynamo-based exporter.

    The graph has one input ``images (B, 3, H, W)`` and the outputs named by
    ``DeploymentModel(model, decode=decode).output_names`` (``x_logits``, ``y_logits`` or ``heatmaps``,
    ``vis_probs`` with a reasoner, ``keypoints`` and ``scores`` with ``decode=True``; see the module
    docstring). With ``dynamic_batch`` the batch axis is symbolic (``batch``). The model's training flags
    are restored afterwards.

    Args:
        model: a [`SimCCAdapter`][visattn.adapters.SimCCAdapter] or
            [`HeatmapAdapter`][visattn.adapters.HeatmapAdapter].
        path: output ``.onnx`` file (parent directories are created).
        decode: decode keypoints and scores inside the graph.
        opset: ONNX opset version (18 or newer).
        dynamic_batch: symbolic batch axis.
        example_batch: batch size of the example input used for tracing (>= 2 with a dynamic batch).
        input_size: see [`DeploymentModel`][visattn.export.DeploymentModel] (``model.input_size``).
        external_data: store the weights in a ``<path>.data`` file beside the graph (needed above 2 GB).

    Returns:
        the path of the written file.

    Raises:
        ImportError: ``onnx`` or ``onnxscript`` is not installed.
    """
    check_positive_int("opset", opset)
    if opset < 18:
        raise ValueError(f"opset must be >= 18 for the dynamo-based ONNX exporter, got {opset}")
    if not isinstance(external_data, bool):
        raise TypeError(f"external_data must be a bool, got {type(external_data).__name__}")
    deploy = DeploymentModel(model, decode=decode, input_size=input_size)
    dynamic_shapes = _dynamic_shapes(dynamic_batch, example_batch)
    _require_onnx_exporter()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with eval_mode(deploy), torch.no_grad():
        torch.onnx.export(
            deploy,
            (_example_images(deploy, example_batch),),
            str(out),
            dynamo=True,
            opset_version=opset,
            input_names=["images"],
            output_names=list(deploy.output_names),
            dynamic_shapes=dynamic_shapes,
            external_data=external_data,
            verbose=False,
        )
    return out
