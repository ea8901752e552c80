"""Output heads: each head kind owns everything that varies with it.

A pose model's head decides the shape of its output and, with it, how targets are built, how the output
is decoded to keypoints, how a flip-test output is brought back and which pose loss trains it. Every
head here implements the [`PoseHead`][visattn.heads.PoseHead] protocol, so the adapters, the losses
([`VisibilityAwareLoss`][visattn.losses.VisibilityAwareLoss]), prediction
([`visattn.inference`][visattn.inference]) and export hold the head object and never ask which kind it is:

- [`SimCCHead`][visattn.heads.SimCCHead] (Li et al., ECCV 2022): two Linear classifiers give
  ``Wx = round(W * r)`` x logits and ``Hy = round(H * r)`` y logits per keypoint token; SimCC KL loss, argmax
  decoding.
- [`HeatmapHead`][visattn.heads.HeatmapHead] (SimpleBaseline / HRNet): the keypoint tokens are the flattened
  heatmaps and are reshaped back; heatmap MSE loss, argmax + quarter-offset or DARK decoding.

Adding a head kind means one class here (and its codec in [`visattn.codecs`][visattn.codecs]).

Shape alphabet: B batch, K keypoints, D token dim, H x W input crop, Hf x Wf feature map / heatmap,
Wx / Hy SimCC bins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from torch import nn

from visattn._checks import check_positive_float, check_positive_int, check_size_pair, check_tensor
from visattn.codecs import HeatmapCodec, HeatmapTargets, SimCCCodec, SimCCTargets
from visattn.codecs._inputs import flip_index_tensor
from visattn.losses import SimCCKLLoss, heatmap_mse_loss

__all__ = ["HeatmapHead", "HeatmapOutput", "PoseHead", "SimCCHead", "SimCCOutput"]


class SimCCOutput(NamedTuple):
    """Output of a model with a [`SimCCHead`][visattn.heads.SimCCHead]
    ([`SimCCAdapter`][visattn.adapters.SimCCAdapter]).

    Attributes:
        x_logits: ``(B, K, Wx)`` x-coordinate logits.
        y_logits: ``(B, K, Hy)`` y-coordinate logits.
        vis_logits: ``(B, K)`` float32 visibility logits (sigmoid > 0.5 means visible), ``None``
            without a reasoner.
        mask: ``(B, K)`` feature mask the reasoner applied (1.0 visible, ``occluded_scale``
            occluded), ``None`` without a reasoner.
    """

    x_logits: torch.Tensor
    y_logits: torch.Tensor
    vis_logits: torch.Tensor | None
    mask: torch.Tensor | None


class HeatmapOutput(NamedTuple):
    """Output of a model with a [`HeatmapHead`][visattn.heads.HeatmapHead]
    ([`HeatmapAdapter`][visattn.adapters.HeatmapAdapter]).

    Attributes:
        heatmaps: ``(B, K, Hf, Wf)`` (refined) heatmaps.
        vis_logits: ``(B, K)`` float32 visibility logits, ``None`` without a reasoner.
        mask: ``(B, K)`` feature mask the reasoner applied, ``None`` without a reasoner.
    """

    heatmaps: torch.Tensor
    vis_logits: torch.Tensor | None
    mask: torch.Tensor | None


@runtime_checkable
class PoseHead(Protocol):
    """What every head kind provides besides its ``forward``.

    ``output`` is the model's output NamedTuple ([`SimCCOutput`][visattn.heads.SimCCOutput],
    [`HeatmapOutput`][visattn.heads.HeatmapOutput]), ``targets`` the NamedTuple the head's
    [`encode`][visattn.heads.PoseHead.encode] returns (it always has ``weights (B, K)``), batched by the
    DataLoader as it is.
    """

    input_size: tuple[int, int]
    #: The model output NamedTuple of this head kind (its fields besides ``vis_logits`` and ``mask`` are
    #: the head's raw outputs, e.g. the names of the exported tensors).
    output_type: type

    def encode(self, keypoints: torch.Tensor, flags: torch.Tensor) -> Any:
        """Training targets of crop-pixel ``keypoints (B, K, 2)`` (or ``(K, 2)``) and COCO ``flags``."""
        ...

    def decode(self, output: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``keypoints (B, K, 2)`` in crop pixels and ``scores (B, K)``, float32."""
        ...

    def flip_back(self, output: Any, flip_index: Sequence[int] | torch.Tensor) -> Any:
        """The output of a horizontally mirrored crop, brought back to the original crop's frame."""
        ...

    def loss(self, output: Any, targets: Any, weights: torch.Tensor | None = None) -> torch.Tensor:
        """The float32 pose loss; ``weights (B, K)`` replaces ``targets.weights`` when given."""
        ...


def _permuted(value: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor | None:
    """``value[:, index]`` for a ``(B, K)`` tensor, or ``None``."""
    return None if value is None else value.index_select(1, index)


class SimCCHead(nn.Module):
    """Two Linear coordinate classifiers on keypoint tokens, with SimCC's targets, decoding and loss.

    Args:
        in_dim: token dim ``D``.
        input_size: ``(H, W)`` input crop size in pixels.
        split_ratio: SimCC bins per pixel (2.0 in the paper).
        sigma: target standard deviation in bins, a number or ``(sigma_x, sigma_y)`` (6 for the
            ResNet recipes, 4 for HRNet).
        normalize: divide the targets by ``sigma * sqrt(2 pi)`` (the authors' targets).
        bias: add a bias to both classifiers. The authors' code uses no bias after the reasoner and a
            bias in the plain SimCC baseline.
        beta: logit temperature of the KL loss (RTMPose: 10; see
            [`visattn.losses.simcc_kl_loss`][visattn.losses.simcc_kl_loss]).
        label_softmax: softmax the targets in the KL loss (RTMPose: True).
        label_beta: temperature of that softmax (``None``: ``beta``).
        device: device of the parameters.
        dtype: dtype of the parameters.

    Attributes:
        x_head: ``Linear(D, Wx)``.
        y_head: ``Linear(D, Hy)``.
        codec: the [`SimCCCodec`][visattn.codecs.SimCCCodec] of the targets and decoding.
        num_x_bins: ``Wx = round(W * split_ratio)``.
        num_y_bins: ``Hy = round(H * split_ratio)``.
        input_size: ``(H, W)``.
        split_ratio: bins per pixel.

    Shapes:
        tokens: ``(B, K, D)`` -> x_logits ``(B, K, Wx)``, y_logits ``(B, K, Hy)``.

    Example:
        >>> head = SimCCHead(48, (16, 12))
        >>> x_logits, y_logits = head(torch.zeros(2, 17, 48))
        >>> tuple(x_logits.shape), tuple(y_logits.shape)
        ((2, 17, 24), (2, 17, 32))
        >>> keypoints, scores = head.decode(SimCCOutput(x_logits, y_logits, None, None))
        >>> tuple(keypoints.shape)
        (2, 17, 2)
    """

    def __init__(
        self,
        in_dim: int,
        input_size: tuple[int, int],
        *,
        split_ratio: float = 2.0,
        sigma: float | tuple[float, float] = 6.0,
        normalize: bool = True,
        bias: bool = True,
        beta: float = 1.0,
        label_softmax: bool = False,
        label_beta: float | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_dim = check_positive_int("in_dim", in_dim)
        self.kl_loss = SimCCKLLoss(beta=beta, label_softmax=label_softmax, label_beta=label_beta)
        self.input_size = check_size_pair("input_size", input_size)
        self.split_ratio = check_positive_float("split_ratio", split_ratio)
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be a bool, got {type(bias).__name__} {bias!r}")
        self.codec = SimCCCodec(
            self.input_size, split_ratio=self.split_ratio, sigma=sigma, normalize=normalize
        )
        self.num_x_bins, self.num_y_bins = self.codec.num_x_bins, self.codec.num_y_bins
        self.output_type = SimCCOutput
        factory = {"device": device, "dtype": dtype}
        self.x_head = nn.Linear(in_dim, self.num_x_bins, bias=bias, **factory)
        self.y_head = nn.Linear(in_dim, self.num_y_bins, bias=bias, **factory)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Classify x and y coordinates.

        Args:
            tokens: ``(B, K, D)`` keypoint tokens.

        Returns:
            ``(x_logits (B, K, Wx), y_logits (B, K, Hy))``.
        """
        check_tensor("tokens", tokens, "B K D", floating=True, D=self.in_dim)
        return self.x_head(tokens), self.y_head(tokens)

    def encode(self, keypoints: torch.Tensor, flags: torch.Tensor) -> SimCCTargets:
        """SimCC targets of crop-pixel ``keypoints`` and COCO ``flags``; see
        [`visattn.codecs.simcc_encode`][visattn.codecs.simcc_encode]."""
        return self.codec.encode(keypoints, flags)

    def decode(self, output: SimCCOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """Argmax decoding of ``output``'s logits to crop pixels; see
        [`visattn.codecs.simcc_decode`][visattn.codecs.simcc_decode]."""
        return self.codec.decode(output.x_logits, output.y_logits)

    def flip_back(self, output: SimCCOutput, flip_index: Sequence[int] | torch.Tensor) -> SimCCOutput:
        """Logits of a mirrored crop in the original frame (the authors' one-bin shift,
        [`visattn.codecs.simcc_flip_back`][visattn.codecs.simcc_flip_back]); ``vis_logits`` and ``mask`` are
        permuted."""
        x, y = self.codec.flip_back(output.x_logits, output.y_logits, flip_index, shift=True)
        index = flip_index_tensor(flip_index, x.shape[1], x.device)
        return SimCCOutput(x, y, _permuted(output.vis_logits, index), _permuted(output.mask, index))

    def loss(
        self, output: SimCCOutput, targets: SimCCTargets, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """SimCC KL loss ([`visattn.losses.simcc_kl_loss`][visattn.losses.simcc_kl_loss]) with
        ``targets.weights`` or ``weights``."""
        w = targets.weights if weights is None else weights
        pred, target = (output.x_logits, output.y_logits), (targets.x_labels, targets.y_labels)
        loss: torch.Tensor = self.kl_loss(pred, target, w)
        return loss

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, input_size={self.input_size}, split_ratio={self.split_ratio}, "
            f"num_x_bins={self.num_x_bins}, num_y_bins={self.num_y_bins}, sigma={self.codec.sigma}"
        )


class HeatmapHead(nn.Module):
    """Heatmaps as keypoint tokens, with their Gaussian targets, decoding and MSE loss (no parameters).

    ``forward`` reshapes ``(B, K, D = Hf * Wf)`` tokens to ``(B, K, Hf, Wf)`` heatmaps.

    Args:
        heatmap_size: ``(Hf, Wf)`` (64 x 48 for 256 x 192 crops).
        input_size: ``(H, W)`` crop size the heatmaps refer to (default: stride 4, ``4 * heatmap_size``).
        sigma: target standard deviation in heatmap cells (2 at 64 x 48).
        refinement: sub-pixel refinement of the decoding, ``"quarter"`` (SimpleBaseline) or
            ``"dark"`` (distribution-aware; see
            [`visattn.codecs.heatmap_decode`][visattn.codecs.heatmap_decode]).
        blur_kernel_size: smoothing kernel of ``"dark"`` (odd, or 0).

    Attributes:
        codec: the [`HeatmapCodec`][visattn.codecs.HeatmapCodec] of the targets and decoding.
        heatmap_size: ``(Hf, Wf)``.
        input_size: ``(H, W)``.

    Example:
        >>> head = HeatmapHead((8, 6), refinement="dark")
        >>> heatmaps = head(torch.zeros(2, 17, 48))
        >>> tuple(heatmaps.shape), head.input_size
        ((2, 17, 8, 6), (32, 24))
    """

    def __init__(
        self,
        heatmap_size: tuple[int, int],
        input_size: tuple[int, int] | None = None,
        *,
        sigma: float = 2.0,
        refinement: str = "quarter",
        blur_kernel_size: int = 11,
    ) -> None:
        super().__init__()
        self.heatmap_size = check_size_pair("heatmap_size", heatmap_size)
        if input_size is None:
            input_size = (4 * self.heatmap_size[0], 4 * self.heatmap_size[1])
        self.input_size = check_size_pair("input_size", input_size)
        self.output_type = HeatmapOutput
        self.codec = HeatmapCodec(
            self.input_size,
            self.heatmap_size,
            sigma=sigma,
            refinement=refinement,
            blur_kernel_size=blur_kernel_size,
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, K, Hf * Wf)`` tokens -> ``(B, K, Hf, Wf)`` heatmaps."""
        height, width = self.heatmap_size
        check_tensor("tokens", tokens, "B K D", floating=True, D=height * width)
        heatmaps: torch.Tensor = tokens.unflatten(2, (height, width))  # (B, K, Hf, Wf)
        return heatmaps

    def encode(self, keypoints: torch.Tensor, flags: torch.Tensor) -> HeatmapTargets:
        """Gaussian heatmap targets; see [`visattn.codecs.heatmap_encode`][visattn.codecs.heatmap_encode]."""
        return self.codec.encode(keypoints, flags)

    def decode(self, output: HeatmapOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode ``output.heatmaps`` to crop pixels; see
        [`visattn.codecs.heatmap_decode`][visattn.codecs.heatmap_decode]."""
        return self.codec.decode(output.heatmaps)

    def flip_back(self, output: HeatmapOutput, flip_index: Sequence[int] | torch.Tensor) -> HeatmapOutput:
        """Heatmaps of a mirrored crop in the original frame (SimpleBaseline's one-column shift,
        [`visattn.codecs.heatmap_flip_back`][visattn.codecs.heatmap_flip_back]); ``vis_logits`` and ``mask``
        are permuted."""
        heatmaps = self.codec.flip_back(output.heatmaps, flip_index, shift=True)
        index = flip_index_tensor(flip_index, heatmaps.shape[1], heatmaps.device)
        return HeatmapOutput(heatmaps, _permuted(output.vis_logits, index), _permuted(output.mask, index))

    def loss(
        self, output: HeatmapOutput, targets: HeatmapTargets, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Heatmap MSE loss ([`visattn.losses.heatmap_mse_loss`][visattn.losses.heatmap_mse_loss]),
        ``targets.weights`` or ``weights``."""
        w = targets.weights if weights is None else weights
        return heatmap_mse_loss(output.heatmaps, targets.heatmaps, w)

    def extra_repr(self) -> str:
        return (
            f"heatmap_size={self.heatmap_size}, input_size={self.input_size}, sigma={self.codec.sigma}, "
            f"refinement={self.codec.refinement!r}"
        )
