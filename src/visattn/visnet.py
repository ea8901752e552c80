"""VisNet: the per-keypoint visibility classifier.

A small MLP shared over keypoints predicts one visibility logit per keypoint
(``sigmoid(logit) >= threshold`` means visible, see
[`visattn.visibility.predicted_visible`][visattn.visibility.predicted_visible]). The authors implement it as
kernel-1 ``Conv1d`` layers over the keypoint axis; ``Linear`` layers on the last axis compute the same thing
([`visattn.compat`][visattn.compat] converts the weights).

What VisNet sees (its *evidence*) is a choice:

* the keypoint token alone (the paper: one ``Hf x Wf`` map per keypoint, ``D = Hf * Wf`` numbers);
* plus, with ``feature_channels = C``, the backbone's ``C``-channel features *where the keypoint is*:
  the feature map pooled with the keypoint's own map as attention weights
  ([`keypoint_evidence`][visattn.visnet.keypoint_evidence]), with the peak and normalised entropy of those
  weights (how sure the map is of one location);
* plus, with ``context_depth > 0``, the other keypoints: self-attention blocks over the K hidden
  vectors (occlusion is spatially coherent: an occluder hides neighbouring joints together).

Shape alphabet: B batch, K keypoints, D token dim, C backbone channels, Hf x Wf feature map.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from visattn._checks import check_nonnegative_int, check_positive_int, check_tensor
from visattn.attention import KeypointAttention

__all__ = ["VisNet", "keypoint_evidence"]


def keypoint_evidence(tokens: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Backbone features at each keypoint: the feature map pooled with the keypoint map as weights.

    With ``a = softmax(tokens)`` over the ``D = Hf * Wf`` positions of each keypoint's map,
    ``pooled[b, k, c] = sum_d a[b, k, d] * features[b, c, d]``; two more numbers say how peaked ``a`` is:
    its maximum and its entropy divided by ``log D`` (1 for a uniform map, 0 for one position).

    Args:
        tokens: ``(B, K, D)`` keypoint maps, flattened (``D = Hf * Wf``).
        features: ``(B, C, Hf, Wf)`` backbone feature map of the same spatial size.

    Returns:
        ``(B, K, C + 2)`` float32 evidence: ``[pooled (C), peak, entropy]``.

    Example:
        >>> tokens = torch.full((1, 2, 4), -1e4)
        >>> tokens[0, 0, 1] = tokens[0, 1, 3] = 0.0  # keypoint 0 at position 1, keypoint 1 at position 3
        >>> features = torch.arange(8.0).view(1, 2, 2, 2)  # C = 2 channels over Hf x Wf = 2 x 2
        >>> keypoint_evidence(tokens, features)[0, :, :2].tolist()  # the features at those positions
        [[1.0, 5.0], [3.0, 7.0]]
    """
    d = tokens.shape[-1]
    flat = features.flatten(2).float()  # (B, C, D)
    weights = torch.softmax(tokens.float(), dim=-1)  # (B, K, D)
    pooled = torch.einsum("bkd,bcd->bkc", weights, flat)  # (B, K, C)
    peak = weights.amax(-1, keepdim=True)  # (B, K, 1)
    entropy = -(weights * weights.clamp_min(1e-12).log()).sum(-1, keepdim=True)  # (B, K, 1)
    norm = math.log(d) if d > 1 else 1.0
    return torch.cat([pooled, peak, entropy / norm], dim=-1)  # (B, K, C + 2)


class _ContextBlock(nn.Module):
    """Pre-norm self-attention + MLP over the K hidden vectors of VisNet."""

    def __init__(self, dim: int, num_heads: int, *, factory: dict[str, object]) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, **factory)  # type: ignore[arg-type]
        self.attn = KeypointAttention(dim, num_heads, **factory)  # type: ignore[arg-type]
        self.norm2 = nn.LayerNorm(dim, **factory)  # type: ignore[arg-type]
        self.mlp = nn.Sequential(
            nn.Linear(dim, 2 * dim, **factory),  # type: ignore[arg-type]
            nn.GELU(),
            nn.Linear(2 * dim, dim, **factory),  # type: ignore[arg-type]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.attn._forward(self.norm1(x), None, False)
        x = x + h  # (B, K, E)
        out: torch.Tensor = x + self.mlp(self.norm2(x))
        return out


class VisNet(nn.Module):
    """Per-keypoint MLP ``evidence -> hidden[0] -> ... -> 1`` giving one visibility logit per keypoint.

    The evidence is the keypoint token (``D``), plus the pooled backbone features (``C + 2``, see
    [`keypoint_evidence`][visattn.visnet.keypoint_evidence]) when ``feature_channels`` is set; with
    ``context_depth > 0`` that many self-attention blocks over the K keypoints follow the first hidden layer.
    ``VisNet(D)`` is the paper's network (``D -> 64 -> 32 -> 1``, token only).

    The input is **not** detached here:
    [`visattn.reasoner.VisibilityMaskedReasoner`][visattn.reasoner.VisibilityMaskedReasoner] detaches what it
    feeds to VisNet (by default) so that the visibility loss does not train the backbone.

    Initialisation: Xavier-uniform weights and zero biases (PyTorch's default Kaiming-uniform with
    ``a=sqrt(5)`` gives the 3072-wide first layer a needlessly small output scale); the context blocks
    keep PyTorch's defaults.

    Args:
        in_dim: token dim ``D``.
        hidden: widths of the hidden layers (``(64, 32)`` in the paper; may be empty for a linear probe,
            then ``context_depth`` must be 0).
        feature_channels: ``C`` of the backbone feature map pooled into the evidence; ``0`` (default)
            uses the token alone.
        context_depth: self-attention blocks over keypoints after the first hidden layer.
        context_heads: heads of those blocks (divides ``hidden[0]``).
        act_layer: activation class placed after every hidden layer.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Attributes:
        layers: ``ModuleList`` of the ``Linear`` layers, the last one ``Linear(hidden[-1], 1)``.
        context: ``ModuleList`` of the context blocks (empty by default).
        evidence_dim: width of the evidence vector, ``D`` or ``D + C + 2``.

    Shapes:
        tokens: ``(B, K, D)``, features: ``(B, C, Hf, Wf)`` -> logits ``(B, K)``.

    Example:
        >>> net = VisNet(3072)
        >>> sum(p.numel() for p in net.parameters())
        198785
        >>> net(torch.randn(2, 17, 3072)).shape
        torch.Size([2, 17])
        >>> rich = VisNet(12, feature_channels=8, context_depth=1)
        >>> rich(torch.randn(2, 17, 12), torch.randn(2, 8, 3, 4)).shape
        torch.Size([2, 17])
    """

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int] = (64, 32),
        *,
        feature_channels: int = 0,
        context_depth: int = 0,
        context_heads: int = 2,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_dim = check_positive_int("in_dim", in_dim)
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
            raise TypeError(f"hidden must be a sequence of positive ints, got {type(hidden).__name__}")
        self.hidden = tuple(check_positive_int(f"hidden[{i}]", h) for i, h in enumerate(hidden))
        self.feature_channels = check_nonnegative_int("feature_channels", feature_channels)
        self.context_depth = check_nonnegative_int("context_depth", context_depth)
        if self.context_depth and not self.hidden:
            raise ValueError("context_depth > 0 needs at least one hidden layer, got hidden=()")
        if self.context_depth and self.hidden[0] % check_positive_int("context_heads", context_heads):
            raise ValueError(
                f"hidden[0] must be divisible by context_heads, got {self.hidden[0]} and {context_heads}"
            )
        self.evidence_dim = self.in_dim + (self.feature_channels + 2 if self.feature_channels else 0)
        factory: dict[str, object] = {"device": device, "dtype": dtype}
        widths = (self.evidence_dim, *self.hidden, 1)
        self.layers = nn.ModuleList(
            nn.Linear(w_in, w_out, device=device, dtype=dtype) for w_in, w_out in itertools.pairwise(widths)
        )
        self.context = nn.ModuleList(
            _ContextBlock(self.hidden[0], context_heads, factory=factory) for _ in range(self.context_depth)
        )
        self.act = act_layer()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform weights, zero biases (of the MLP layers)."""
        for layer in self.layers:
            assert isinstance(layer, nn.Linear)
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, tokens: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Visibility logits.

        Args:
            tokens: ``(B, K, D)`` keypoint tokens.
            features: ``(B, C, Hf, Wf)`` backbone features with ``Hf * Wf = D``; required iff
                ``feature_channels > 0``.

        Returns:
            ``(B, K)`` logits (visible iff ``sigmoid(logit) >= threshold``).
        """
        check_tensor("tokens", tokens, "B K D", floating=True, D=self.in_dim)
        if self.feature_channels:
            if features is None:
                raise ValueError(
                    f"features (B, C, Hf, Wf) with C={self.feature_channels} are required by a VisNet with "
                    "feature_channels > 0, got None"
                )
            check_tensor("features", features, "B C Hf Wf", floating=True, B=tokens.shape[0])
            if (
                features.shape[1] != self.feature_channels
                or features.shape[2] * features.shape[3] != self.in_dim
            ):
                raise ValueError(
                    f"features must be (B, C, Hf, Wf) with C={self.feature_channels} and Hf * Wf = D = "
                    f"{self.in_dim}, got {tuple(features.shape)}"
                )
        return self._forward(tokens, features)

    def _forward(self, tokens: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        """[`forward`][visattn.visnet.VisNet.forward] without the input checks (the reasoner calls it with
        checked inputs)."""
        x = tokens
        if self.feature_channels and features is not None:
            x = torch.cat([tokens, keypoint_evidence(tokens, features).to(tokens.dtype)], dim=-1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
            if i == 0:
                for block in self.context:
                    x = block(x)  # (B, K, hidden[0])
        return x.squeeze(-1)  # (B, K)

    def extra_repr(self) -> str:
        extra = f", feature_channels={self.feature_channels}" if self.feature_channels else ""
        extra += f", context_depth={self.context_depth}" if self.context_depth else ""
        return f"in_dim={self.in_dim}, hidden={self.hidden}{extra}"
