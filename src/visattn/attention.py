"""Multi-head self-attention over keypoint tokens.

Two paths compute the same attention inside
[`KeypointAttention.forward`][visattn.attention.KeypointAttention.forward]:

* fused: `torch.nn.functional.scaled_dot_product_attention` (flash / memory-efficient kernels where
  the device has them);
* reference: the explicit ``softmax(Q K^T / sqrt(Dh) + bias) V`` of
  [`reference_attention`][visattn.attention.reference_attention], which can also return the attention maps.

Which path a module takes is the per-instance bool ``fused_attn``, initialised from
[`visattn.use_fused_attn`][visattn.use_fused_attn] (environment variable ``VISATTN_FUSED_ATTN``) when the
module is built.

Shape alphabet: B batch, K keypoints, E embed dim, Hh heads, Dh head dim (``E = Hh * Dh``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from visattn._checks import check_positive_int, check_probability, check_tensor
from visattn._config import use_fused_attn

__all__ = ["KeypointAttention", "occlusion_attn_bias", "reference_attention"]


def reference_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_bias: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Explicit scaled dot-product attention, ``softmax(q k^T / sqrt(Dh) + attn_bias) v``.

    Args:
        q: ``(B, Hh, K, Dh)`` queries.
        k: ``(B, Hh, K, Dh)`` keys.
        v: ``(B, Hh, K, Dh)`` values.
        attn_bias: optional float additive bias broadcastable to ``(B, Hh, K, K)`` (rows are queries,
            columns keys).

    Returns:
        ``(out (B, Hh, K, Dh), attn (B, Hh, K, K))``; every row of ``attn`` sums to 1.

    Example:
        >>> q = k = v = torch.randn(1, 2, 3, 4)
        >>> out, attn = reference_attention(q, k, v)
        >>> tuple(out.shape), tuple(attn.shape)
        ((1, 2, 3, 4), (1, 2, 3, 3))
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    logits = (q * scale) @ k.transpose(-2, -1)  # (B, Hh, K, K)
    if attn_bias is not None:
        logits = logits + attn_bias.to(logits.dtype)
    attn = logits.softmax(dim=-1)  # (B, Hh, K, K)
    return attn @ v, attn


def occlusion_attn_bias(
    visible: torch.Tensor, occluded_scale: float = 0.01, *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Additive attention bias that scales the attention paid to occluded keys by ``occluded_scale``.

    Adding ``log(occluded_scale)`` to the logits of an occluded key multiplies its unnormalised
    attention weight by ``occluded_scale`` before the softmax renormalises. The bias is finite for
    every mask: a sample whose keypoints are all occluded gets a constant row shift, i.e. plain
    attention.

    Args:
        visible: ``(B, K)`` bool, True for visible keypoints (see
            [`visattn.visibility.flags_to_visible`][visattn.visibility.flags_to_visible] to convert COCO flags
            0/1/2).
        occluded_scale: factor in (0, 1] applied to the attention weight of occluded keys.
        dtype: dtype of the bias.

    Returns:
        ``(B, 1, K, K)`` bias (an expanded view, identical for every query row and head).

    Example:
        >>> bias = occlusion_attn_bias(torch.tensor([[True, False]]), 0.5)
        >>> bias.shape, bool(bias[0, 0, 0, 1] < 0), float(bias[0, 0, 1, 0])
        (torch.Size([1, 1, 2, 2]), True, 0.0)
    """
    check_tensor("visible", visible, "B K")
    if visible.dtype != torch.bool:
        raise TypeError(f"visible must be a bool tensor (B, K), got dtype {visible.dtype}")
    scale = check_probability("occluded_scale", occluded_scale, low_open=True)
    zero = torch.zeros((), dtype=dtype, device=visible.device)
    per_key = torch.where(visible, zero, zero + math.log(scale))  # (B, K)
    batch, num_keypoints = visible.shape
    return per_key[:, None, None, :].expand(batch, 1, num_keypoints, num_keypoints)  # (B, 1, K, K)


class KeypointAttention(nn.Module):
    """Multi-head self-attention over the K keypoint tokens (no positional encoding).

    Two parameterisations of the Q/K/V projections:

    * ``shared_qkv=False``: the usual dense ``Linear(E, 3E)``;
    * ``shared_qkv=True``: the authors' one ``Dh x Dh`` Q, one K and one V matrix applied to every
      head's ``Dh``-wide chunk (a block-diagonal ``E x E`` projection with identical blocks). It is
      computed as a reshape to ``(B, K, Hh, Dh)`` and one ``Linear(Dh, 3 Dh)``, so it costs ``Hh`` times
      fewer FLOPs than the dense projection. The authors use no bias there (``qkv_bias=False``).

    The output projection ``proj`` is a dense ``Linear(E, E)`` with bias. Linear weights are
    initialised truncated-normal (std 0.02, the ViT convention), biases to zero.

    Args:
        dim: embed dim ``E``.
        num_heads: number of heads ``Hh``; must divide ``E``.
        qkv_bias: add a bias to the Q/K/V projections.
        shared_qkv: share one ``Dh x Dh`` Q/K/V matrix between heads (see above).
        device: device of the parameters.
        dtype: dtype of the parameters.

    Attributes:
        fused_attn: bool, use ``scaled_dot_product_attention`` (True) or the reference path (False).
            Initialised from [`visattn.use_fused_attn`][visattn.use_fused_attn]; may be set per instance.
        qkv: ``Linear(E, 3E)`` (dense) or ``Linear(Dh, 3 Dh)`` (shared), output laid out as
            ``(q, k, v)``.
        proj: ``Linear(E, E)`` output projection.

    Shapes:
        x: ``(B, K, E)``; attn_bias: ``(B, 1 | Hh, K, K)`` float, added to the attention logits;
        output ``(B, K, E)``; attention maps ``(B, Hh, K, K)``.

    Example:
        >>> attn = KeypointAttention(8, 2)
        >>> out, maps = attn(torch.randn(3, 5, 8), return_attn=True)
        >>> tuple(out.shape), tuple(maps.shape)
        ((3, 5, 8), (3, 2, 5, 5))
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        qkv_bias: bool = True,
        shared_qkv: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        self.num_heads = check_positive_int("num_heads", num_heads)
        if dim % num_heads:
            raise ValueError(f"dim must be divisible by num_heads, got dim={dim} and num_heads={num_heads}")
        for name, flag in (("qkv_bias", qkv_bias), ("shared_qkv", shared_qkv)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__} {flag!r}")
        self.head_dim = dim // num_heads
        self.shared_qkv = shared_qkv
        self.fused_attn = use_fused_attn()
        qkv_in = self.head_dim if shared_qkv else dim
        self.qkv = nn.Linear(qkv_in, 3 * qkv_in, bias=qkv_bias, device=device, dtype=dtype)
        self.proj = nn.Linear(dim, dim, device=device, dtype=dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Truncated-normal (std 0.02) weights, zero biases."""
        for layer in (self.qkv, self.proj):
            nn.init.trunc_normal_(layer.weight, std=0.02)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)

    def _check_bias(self, attn_bias: torch.Tensor, batch: int, num_keypoints: int) -> None:
        if not isinstance(attn_bias, torch.Tensor):
            raise TypeError(
                f"attn_bias must be None or a float tensor (B, 1 | Hh, K, K), got {type(attn_bias).__name__}"
            )
        if not attn_bias.is_floating_point():
            raise TypeError(f"attn_bias must be a floating-point additive bias, got dtype {attn_bias.dtype}")
        shape = tuple(attn_bias.shape)
        ok = attn_bias.dim() == 4 and shape[0] == batch and shape[1] in (1, self.num_heads)
        if not ok or shape[2:] != (num_keypoints, num_keypoints):
            raise ValueError(
                f"attn_bias must be (B, 1 | Hh, K, K) = ({batch}, 1 | {self.num_heads}, "
                f"{num_keypoints}, {num_keypoints}), got {shape}"
            )

    def forward(
        self, x: torch.Tensor, attn_bias: torch.Tensor | None = None, *, return_attn: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Self-attention over keypoints.

        Args:
            x: ``(B, K, E)`` tokens.
            attn_bias: optional ``(B, 1 | Hh, K, K)`` float bias added to the logits (rows queries,
                columns keys), e.g. from [`occlusion_attn_bias`][visattn.attention.occlusion_attn_bias].
            return_attn: also return the attention maps; forces the reference path.

        Returns:
            ``(out (B, K, E), attn (B, Hh, K, K) or None)``.
        """
        check_tensor("x", x, "B K E", floating=True, E=self.dim)
        if attn_bias is not None:
            self._check_bias(attn_bias, x.shape[0], x.shape[1])
        return self._forward(x, attn_bias, return_attn)

    def _forward(
        self, x: torch.Tensor, attn_bias: torch.Tensor | None, return_attn: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[`forward`][visattn.attention.KeypointAttention.forward] without the input checks (the reasoner
        calls it with checked inputs)."""
        if self.shared_qkv:
            chunks = rearrange(x, "b k (hh dh) -> b k hh dh", hh=self.num_heads)  # (B, K, Hh, Dh)
            qkv = rearrange(self.qkv(chunks), "b k hh (three dh) -> three b hh k dh", three=3)
        else:
            qkv = rearrange(self.qkv(x), "b k (three hh dh) -> three b hh k dh", three=3, hh=self.num_heads)
        q, k, v = qkv.unbind(0)  # each (B, Hh, K, Dh)

        attn: torch.Tensor | None = None
        if self.fused_attn and not return_attn:
            bias = None if attn_bias is None else attn_bias.to(q.dtype)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, Hh, K, Dh)
        else:
            out, maps = reference_attention(q, k, v, attn_bias)  # (B, Hh, K, Dh), (B, Hh, K, K)
            attn = maps if return_attn else None
        out = rearrange(out, "b hh k dh -> b k (hh dh)")  # (B, K, E)
        return self.proj(out), attn

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, num_heads={self.num_heads}, shared_qkv={self.shared_qkv}, "
            f"fused_attn={self.fused_attn}"
        )
