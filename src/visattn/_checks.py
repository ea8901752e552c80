"""Input validation shared by every public entry point.

Public functions and modules validate their arguments with these helpers so that bad input fails
early with a message that names the argument, what was expected and what came, instead of a shape
error from deep inside torch. Shapes are spelled in the package's alphabet (``"B K D"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

__all__ = [
    "check_choice",
    "check_flag_tensor",
    "check_flags",
    "check_matches_parameters",
    "check_nonnegative_int",
    "check_positive_float",
    "check_positive_int",
    "check_probability",
    "check_size_pair",
    "check_tensor",
]


def check_tensor(
    name: str,
    value: Any,
    spec: str,
    *,
    floating: bool = False,
    **sizes: int | None,
) -> torch.Tensor:
    """Check that ``value`` is a tensor shaped like ``spec`` and return it.

    Args:
        name: argument name used in the error message.
        value: the object to check.
        spec: space-separated dimension names of the package's shape alphabet, e.g. ``"B K D"``, or
            literal sizes (``"B K 2"``).
        floating: require a floating-point dtype.
        **sizes: required sizes for some of the names (``None`` means any).

    Raises:
        TypeError: ``value`` is not a tensor, or not floating when ``floating`` is set.
        ValueError: rank or a constrained size differs.

    Example:
        >>> import torch
        >>> check_tensor("tokens", torch.zeros(2, 17, 8), "B K D", K=17).shape
        torch.Size([2, 17, 8])
    """
    dims = spec.split()
    fixed = {k: v for k, v in sizes.items() if v is not None}
    fixed |= {d: int(d) for d in dims if d.isdigit()}  # literal sizes: "B K 2"
    expected = "(" + ", ".join(dims) + ")"
    named = {k: v for k, v in fixed.items() if not k.isdigit()}
    if named:
        expected += " with " + ", ".join(f"{k}={v}" for k, v in named.items())
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor {expected}, got {type(value).__name__}")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor {expected}, got dtype {value.dtype}")
    shape = tuple(value.shape)
    bad = value.dim() != len(dims) or any(shape[dims.index(k)] != v for k, v in fixed.items() if k in dims)
    if bad:
        raise ValueError(f"{name} must be {expected}, got {shape}")
    tensor: torch.Tensor = value
    return tensor


def check_flags(name: str, value: Any, spec: str = "B K", **sizes: int | None) -> torch.Tensor:
    """Check COCO visibility flags: a bool tensor, or integer/float values in {0, 1, 2}.

    Example:
        >>> import torch
        >>> check_flags("visible", torch.tensor([[0, 1, 2]]), K=3).tolist()
        [[0, 1, 2]]
    """
    tensor = check_tensor(name, value, spec, **sizes)  # type: ignore[arg-type]
    if tensor.dtype == torch.bool:
        return tensor
    if tensor.is_complex():
        raise TypeError(f"{name} must hold COCO flags 0/1/2 or bools, got dtype {tensor.dtype}")
    if tensor.numel() and not bool(((tensor == 0) | (tensor == 1) | (tensor == 2)).all()):
        found = sorted({float(v) for v in tensor.unique().tolist()} - {0.0, 1.0, 2.0})[:5]
        raise ValueError(f"{name} must hold COCO flags in {{0, 1, 2}} (or bools), got values {found}")
    return tensor


def check_flag_tensor(name: str, value: Any, spec: str = "B K", **sizes: int | None) -> torch.Tensor:
    """Check the shape and dtype of COCO visibility flags (integer or floating 0/1/2), never their values.

    For forward passes and losses: reading the values would be a device synchronisation on every call.
    The values are checked where flags enter the package (datasets, codecs, metrics:
    `check_flags`). A bool tensor is refused: it cannot tell ``v = 0`` from ``v = 1``, and one
    type at the boundary keeps callers from mixing the two conventions.

    Example:
        >>> import torch
        >>> check_flag_tensor("flags", torch.tensor([[0, 1, 2]]), K=3).dtype
        torch.int64
    """
    tensor = check_tensor(name, value, spec, **sizes)  # type: ignore[arg-type]
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise TypeError(
            f"{name} must hold COCO flags 0/1/2 (v = 0 not labelled, 1 occluded, 2 visible) as an integer or "
            f"float tensor, got dtype {tensor.dtype}"
            + (
                "; convert a bool visible tensor with visible.long() * 2"
                if tensor.dtype == torch.bool
                else ""
            )
        )
    return tensor


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` if it is a positive ``int``, else raise.

    Example:
        >>> check_positive_int("depth", 3)
        3
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__} {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return value


def check_nonnegative_int(name: str, value: Any) -> int:
    """Return ``value`` if it is an ``int >= 0``, else raise.

    Example:
        >>> check_nonnegative_int("context_depth", 0)
        0
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 0, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value}")
    return value


def check_positive_float(name: str, value: Any) -> float:
    """Return ``value`` as a float if it is a finite number > 0, else raise.

    Example:
        >>> check_positive_float("sigma", 2)
        2.0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return float(value)


def check_probability(name: str, value: Any, *, low_open: bool = False, high_open: bool = False) -> float:
    """Return ``value`` as a float if it lies in [0, 1] (ends optionally open), else raise.

    Example:
        >>> check_probability("occluded_scale", 0.01, low_open=True)
        0.01
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number in [0, 1], got {type(value).__name__} {value!r}")
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    ok = (value > 0 if low_open else value >= 0) and (value < 1 if high_open else value <= 1)
    if not ok or not math.isfinite(value):
        raise ValueError(f"{name} must be in {lo}0, 1{hi}, got {value}")
    return float(value)


def check_size_pair(name: str, value: Any) -> tuple[int, int]:
    """Return ``value`` as ``(H, W)`` if it is a pair of positive ints, else raise.

    Example:
        >>> check_size_pair("input_size", [256, 192])
        (256, 192)
    """
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise TypeError(f"{name} must be a pair (H, W) of positive ints, got {value!r}")
    h, w = value
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name} must be a pair (H, W) of positive ints, got {tuple(value)!r}")
    return int(h), int(w)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise.

    Example:
        >>> check_choice("pose_keypoints", "all", ("all", "visible"))
        'all'
    """
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return str(value)


def check_matches_parameters(name: str, value: torch.Tensor, parameter: torch.Tensor, owner: str) -> None:
    """Raise visattn's error when ``value`` is on another device than ``parameter``, or of another
    floating dtype while autocast is off (instead of torch's ``mat1 and mat2`` message deep inside).

    Args:
        name: argument name used in the message.
        value: the input tensor.
        parameter: a parameter of the module that consumes it.
        owner: the module's name for the message.
    """
    if value.device != parameter.device:
        raise ValueError(
            f"{name} is on {value.device} but the {owner}'s parameters are on {parameter.device}; "
            f"move one of them, e.g. {name}.to({str(parameter.device)!r}) or model.to({str(value.device)!r})"
        )
    if (
        value.is_floating_point()
        and value.dtype != parameter.dtype
        and not torch.is_autocast_enabled(value.device.type)
    ):
        raise TypeError(
            f"{name} has dtype {value.dtype} but the {owner}'s parameters are {parameter.dtype}; convert one "
            f"of them (e.g. {name}.to({parameter.dtype})) or run under torch.autocast"
        )
