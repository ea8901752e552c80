from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from visattn.cli import (
    NONNEGATIVE_INT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    PROBABILITY,
    Bound,
    CLIError,
    amp_warning,
    parse_args,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t")
    p.add_argument("--config")
    p.add_argument("--epochs", type=POSITIVE_INT, default=3)
    p.add_argument("--lr", type=POSITIVE_FLOAT, default=0.1)
    p.add_argument("--prob", type=PROBABILITY, default=0.5)
    p.add_argument("--size", type=POSITIVE_INT, nargs=2, default=(4, 3))
    p.add_argument("--steps", type=NONNEGATIVE_INT, nargs="*", default=[])
    p.add_argument("--mode", choices=("a", "b"), default="a")
    p.add_argument("--flag", action="store_true")
    return p


def test_bounds_are_argparse_types_checked_after_parsing() -> None:
    args = parse_args(_parser(), ["--epochs", "5", "--lr", "0.5", "--size", "8", "6"])
    assert (args.epochs, args.lr, args.size) == (5, 0.5, [8, 6])
    for argv, message in [
        (["--epochs", "0"], "--epochs must be a positive integer, got 0"),
        (["--lr", "nan"], "--lr must be a finite number > 0, got nan"),
        (["--prob", "1.5"], r"--prob must be a finite number in \[0, 1\], got 1.5"),
        (["--size", "0", "3"], r"--size must be a positive integer, got \[0, 3\]"),
        (["--steps", "1", "-1"], r"--steps must be an integer >= 0"),
    ]:
        with pytest.raises(CLIError, match=message):
            parse_args(_parser(), argv)
    with pytest.raises(SystemExit):  # not a number at all: argparse's own message
        parse_args(_parser(), ["--epochs", "x"])
    assert Bound(int, 18).describe() == "an integer >= 18"


def test_config_values_are_checked_like_flags(tmp_path: Path) -> None:
    def config(**values: object) -> list[str]:
        path = tmp_path / "c.json"
        path.write_text(json.dumps(values))
        return ["--config", str(path)]

    args = parse_args(_parser(), [*config(epochs=7, size=[2, 2], mode="b"), "--epochs", "9"])
    assert (args.epochs, args.size, args.mode) == (9, [2, 2], "b")  # the command line wins
    for values, message in [
        ({"epochs": 0}, "config .*: epochs must be a positive integer, got 0"),
        ({"epochs": True}, "epochs must be a positive integer, got True"),
        ({"size": 4}, "--size must be a list of 2 integers, got 4"),
        ({"size": [1, 2, 3]}, "--size must be a list of 2 integers"),
        ({"steps": 5}, "--steps must be a list of zero or more integers, got 5"),
        ({"mode": "c"}, r"mode='c' is not one of \['a', 'b'\]"),
        ({"flag": "yes"}, "flag='yes' must be true or false"),
        ({"unknown": 1}, r"unknown keys \['unknown'\]"),
    ]:
        with pytest.raises(CLIError, match=message):
            parse_args(_parser(), config(**values))


def test_parsers_without_config_get_the_range_checks() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=POSITIVE_INT, default=1)
    with pytest.raises(CLIError, match="--n must be a positive integer"):
        parse_args(p, ["--n", "-3"])


def test_amp_warning_names_the_slow_case(tmp_path: Path) -> None:
    assert amp_warning("none", "cpu") is None
    assert amp_warning("bf16", "cuda") is None
    assert amp_warning("fp16", "cpu") is None
    slow, fast = tmp_path / "avx2", tmp_path / "bf16"
    slow.write_text("flags\t\t: fpu sse avx2 avx512f\n")
    fast.write_text("flags\t\t: fpu sse avx2 avx512f avx512_bf16\n")
    warning = amp_warning("bf16", "cpu", slow)
    assert warning is not None
    assert "no native bf16" in warning
    assert amp_warning("bf16", "cpu", fast) is None
    assert amp_warning("bf16", "cpu", tmp_path / "missing") is None  # no cpuinfo: no guess
