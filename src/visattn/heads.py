"""The SimCC coordinate-classification head.

SimCC (Li et al., ECCV 2022) predicts a keypoint's x and y coordinates as two independent
classifications over ``split_ratio`` bins per input pixel. Per keypoint token ``(B, K, D)`` one Linear
layer gives ``Wx = round(W * split_ratio)`` x logits and another ``Hy = round(H * split_ratio)`` y
logits; :func:`visattn.codecs.simcc_decode` turns them into crop-pixel coordinates.

Shape alphabet: B batch, K keypoints, D token dim, H x W input crop, Wx / Hy SimCC bins.
"""

from __future__ import annotations

import torch
from torch import nn

from visattn._checks import check_positive_float, check_positive_int, check_size_pair, check_tensor

__all__ = ["SimCCHead", "simcc_num_bins"]


def simcc_num_bins(input_size: tuple[int, int], split_ratio: float = 2.0) -> tuple[int, int]:
    """Number of SimCC bins ``(Wx, Hy)`` for an input crop of ``input_size = (H, W)``.

    Args:
        input_size: ``(H, W)`` input crop size in pixels.
        split_ratio: bins per pixel.

    Returns:
        ``(Wx, Hy) = (round(W * split_ratio), round(H * split_ratio))``.

    Example:
        >>> simcc_num_bins((256, 192), 2.0)
        (384, 512)
    """
    height, width = check_size_pair("input_size", input_size)
    ratio = check_positive_float("split_ratio", split_ratio)
    num_x, num_y = round(width * ratio), round(height * ratio)
    if num_x < 1 or num_y < 1:
        raise ValueError(
            f"input_size * split_ratio must give at least one bin per axis, got input_size "
            f"{(height, width)} and split_ratio {ratio} -> (Wx, Hy) = {(num_x, num_y)}"
        )
    return num_x, num_y


class SimCCHead(nn.Module):
    """Two Linear coordinate classifiers on keypoint tokens.

    Args:
        in_dim: token dim ``D``.
        input_size: ``(H, W)`` input crop size in pixels.
        split_ratio: SimCC bins per pixel (2.0 in the paper).
        bias: add a bias to both classifiers. The authors' code uses no bias after the reasoner and a
            bias in the plain SimCC baseline.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Attributes:
        x_head: ``Linear(D, Wx)``.
        y_head: ``Linear(D, Hy)``.
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
    """

    def __init__(
        self,
        in_dim: int,
        input_size: tuple[int, int],
        *,
        split_ratio: float = 2.0,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_dim = check_positive_int("in_dim", in_dim)
        self.input_size = check_size_pair("input_size", input_size)
        self.split_ratio = check_positive_float("split_ratio", split_ratio)
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be a bool, got {type(bias).__name__} {bias!r}")
        self.num_x_bins, self.num_y_bins = simcc_num_bins(self.input_size, self.split_ratio)
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

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, input_size={self.input_size}, split_ratio={self.split_ratio}, "
            f"num_x_bins={self.num_x_bins}, num_y_bins={self.num_y_bins}"
        )
