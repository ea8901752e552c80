"""Validation helpers: the error names the argument, the expectation and what came."""

from __future__ import annotations

import math

import pytest
import torch

from visattn._checks import (
    check_choice,
    check_flags,
    check_positive_float,
    check_positive_int,
    check_probability,
    check_size_pair,
    check_tensor,
)


def test_check_tensor() -> None:
    x = torch.zeros(2, 17, 8)
    assert check_tensor("tokens", x, "B K D", floating=True, K=17, D=None) is x
    with pytest.raises(ValueError, match=r"^tokens must be \(B, K, D\) with K=16, got \(2, 17, 8\)$"):
        check_tensor("tokens", x, "B K D", K=16)
    with pytest.raises(ValueError, match=r"^tokens must be \(B, K\), got \(2, 17, 8\)$"):
        check_tensor("tokens", x, "B K")
    with pytest.raises(TypeError, match=r"^tokens must be a torch.Tensor \(B, K, D\), got list$"):
        check_tensor("tokens", [1.0], "B K D")
    with pytest.raises(TypeError, match=r"tokens must be a floating-point tensor .*got dtype torch.int64"):
        check_tensor("tokens", torch.zeros(2, 3, 4, dtype=torch.long), "B K D", floating=True)


def test_check_flags() -> None:
    assert check_flags("flags", torch.tensor([[0.0, 1.0, 2.0]])).dtype == torch.float32
    assert check_flags("flags", torch.zeros(0, 3, dtype=torch.long), K=3).shape == (0, 3)
    with pytest.raises(
        ValueError, match=r"flags must hold COCO flags in \{0, 1, 2\} \(or bools\), got values \[-1.0, 3.0\]"
    ):
        check_flags("flags", torch.tensor([[-1, 3, 2]]))
    with pytest.raises(TypeError, match="complex"):
        check_flags("flags", torch.zeros(1, 2, dtype=torch.complex64))
    with pytest.raises(ValueError, match=r"flags must be \(B, K\) with K=4, got \(1, 3\)"):
        check_flags("flags", torch.zeros(1, 3), K=4)


@pytest.mark.parametrize(
    ("func", "value", "error", "pattern"),
    [
        (check_positive_int, 0, ValueError, "depth must be a positive int, got 0"),
        (check_positive_int, True, TypeError, "depth must be a positive int, got bool True"),
        (check_positive_int, 2.0, TypeError, "depth must be a positive int, got float 2.0"),
        (check_positive_float, -1, ValueError, "depth must be a finite number > 0, got -1"),
        (check_positive_float, math.inf, ValueError, "depth must be a finite number > 0, got inf"),
        (check_positive_float, "1", TypeError, "depth must be a positive number, got str '1'"),
        (
            check_size_pair,
            (4, 0),
            ValueError,
            r"depth must be a pair \(H, W\) of positive ints, got \(4, 0\)",
        ),
        (check_size_pair, 4, TypeError, r"depth must be a pair \(H, W\) of positive ints, got 4"),
        (check_size_pair, "ab", TypeError, r"depth must be a pair \(H, W\)"),
    ],
)
def test_scalar_checks(func: object, value: object, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        func("depth", value)  # type: ignore[operator]


def test_check_probability_ends() -> None:
    assert check_probability("p", 0) == 0.0
    assert check_probability("p", 1) == 1.0
    with pytest.raises(ValueError, match=r"p must be in \(0, 1\], got 0"):
        check_probability("p", 0, low_open=True)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\), got 1"):
        check_probability("p", 1, high_open=True)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\], got nan"):
        check_probability("p", math.nan)
    assert check_size_pair("s", [3, 2]) == (3, 2)
    assert check_choice("c", "a", ("a", "b")) == "a"
    with pytest.raises(ValueError, match=r"c must be one of \['a', 'b'\], got 'x'"):
        check_choice("c", "x", ("a", "b"))
