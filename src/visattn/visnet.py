"""VisNet: the per-keypoint visibility classifier.

A small MLP shared over keypoints predicts one visibility logit per keypoint token
(``sigmoid(logit) >= threshold`` means visible, see :func:`visattn.visibility.predicted_visible`).
The authors implement it as kernel-1 ``Conv1d`` layers over the keypoint axis; ``Linear`` layers on the
last axis compute the same thing (:mod:`visattn.compat` converts the weights).

Shape alphabet: B batch, K keypoints, D token dim.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from torch import nn

from visattn._checks import check_positive_int, check_tensor

__all__ = ["VisNet"]


class VisNet(nn.Module):
    """Per-keypoint MLP ``D -> hidden[0] -> ... -> 1`` giving one visibility logit per keypoint.

    The input is **not** detached here: :class:`visattn.reasoner.VisibilityMaskedReasoner` detaches
    the tokens it feeds to VisNet so that the visibility loss does not train the backbone.

    Initialisation: Xavier-uniform weights and zero biases (PyTorch's default Kaiming-uniform with
    ``a=sqrt(5)`` gives the 3072-wide first layer a needlessly small output scale).

    Args:
        in_dim: token dim ``D``.
        hidden: widths of the hidden layers (``(64, 32)`` in the paper; may be empty for a linear probe).
        act_layer: activation class placed after every hidden layer.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Attributes:
        layers: ``ModuleList`` of the ``Linear`` layers, the last one ``Linear(hidden[-1], 1)``.

    Shapes:
        tokens: ``(B, K, D)`` -> logits ``(B, K)``.

    Example:
        >>> net = VisNet(3072)
        >>> sum(p.numel() for p in net.parameters())
        198785
        >>> net(torch.randn(2, 17, 3072)).shape
        torch.Size([2, 17])
    """

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int] = (64, 32),
        *,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_dim = check_positive_int("in_dim", in_dim)
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
            raise TypeError(f"hidden must be a sequence of positive ints, got {type(hidden).__name__}")
        self.hidden = tuple(check_positive_int(f"hidden[{i}]", h) for i, h in enumerate(hidden))
        widths = (self.in_dim, *self.hidden, 1)
        self.layers = nn.ModuleList(
            nn.Linear(w_in, w_out, device=device, dtype=dtype) for w_in, w_out in itertools.pairwise(widths)
        )
        self.act = act_layer()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform weights, zero biases."""
        for layer in self.layers:
            assert isinstance(layer, nn.Linear)
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Visibility logits.

        Args:
            tokens: ``(B, K, D)`` keypoint tokens.

        Returns:
            ``(B, K)`` logits (visible iff ``sigmoid(logit) >= threshold``).
        """
        check_tensor("tokens", tokens, "B K D", floating=True, D=self.in_dim)
        x = tokens
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x.squeeze(-1)  # (B, K)

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, hidden={self.hidden}"
