"""Command-line conventions of visattn's tools: one-line errors, checked numeric flags, JSON configs.

A user error in a visattn command (``visattn-predict``, the recipes in ``examples/``) is printed as one
line ``error: <what> fix: <how>`` on stderr with exit status 2, never as a traceback:
[`run_cli`][visattn.cli.run_cli] turns [`CLIError`][visattn.cli.CLIError],
[`visattn.data.ImageReadError`][visattn.data.ImageReadError] (also from a DataLoader worker), any other
``OSError`` and [`visattn.checkpoint.CheckpointError`][visattn.checkpoint.CheckpointError] (a ``CLIError``)
into that line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "NONNEGATIVE_FLOAT",
    "NONNEGATIVE_INT",
    "POSITIVE_FLOAT",
    "POSITIVE_INT",
    "PROBABILITY",
    "Bound",
    "CLIError",
    "OneLineArgumentParser",
    "amp_warning",
    "check_numbers",
    "load_json_config",
    "one_line",
    "parse_args",
    "run_cli",
    "writable_dir",
]


class CLIError(Exception):
    """A user error: printed as one line ``error: <what> fix: <how>`` and exit status 2."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix

    def line(self) -> str:
        return " ".join(f"error: {self} fix: {self.fix}".split())  # one line, whatever the message holds


class OneLineArgumentParser(argparse.ArgumentParser):
    """``argparse`` that reports bad flags/values in one line (no usage dump) and exits with 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} fix: see `{self.prog} --help`\n")


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line; a DataLoader worker's re-raised error gives its original line."""
    text = str(err)
    if "Original Traceback" in text:  # torch's ExceptionWrapper: "Caught X in DataLoader worker ..."
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = re.sub(r"^[\w.]+: ", "", last.strip())
    return " ".join(text.split())


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> NoReturn:
    """Run a script's ``main``; user errors become one line ``error: ... fix: ...`` on stderr, exit status 2.

    Besides [`CLIError`][visattn.cli.CLIError] this covers an unreadable image
    ([`visattn.data.ImageReadError`][visattn.data.ImageReadError], also from a DataLoader worker), any other
    ``OSError`` (a missing, unreadable or unwritable path). A
    [`visattn.checkpoint.CheckpointError`][visattn.checkpoint.CheckpointError] is a ``CLIError``.
    """
    from visattn.data import ImageReadError

    try:
        code = main(argv)
    except CLIError as err:
        print(err.line(), file=sys.stderr)
        code = 2
    except ImageReadError as err:
        fix = (
            "replace or remove that image (TopDownCocoDataset(...).find_unreadable_images(decode=True) "
            "lists every bad file)"
        )
        print(CLIError(one_line(err), fix).line(), file=sys.stderr)
        code = 2
    except OSError as err:
        fix = (
            "check the path in the message: it must exist and be readable, its folder writable, the disk free"
        )
        print(CLIError(one_line(err), fix).line(), file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("error: interrupted fix: rerun with --resume auto to continue", file=sys.stderr)
        code = 130
    sys.exit(code)


@dataclass(frozen=True)
class Bound:
    """Allowed values of a numeric flag: ``kind`` int or float, ``low <= v <= high`` (``low < v`` if open).

    Floats must also be finite. A flag with ``nargs`` is checked element by element; ``None`` (an
    optional flag not given) is not checked. A bound is also an argparse ``type``
    (``add_argument("--epochs", type=POSITIVE_INT)``): it converts the text with ``kind``, and
    [`parse_args`][visattn.cli.parse_args] checks the range of every such flag, from the command line or a
    config file alike.

    Example:
        >>> POSITIVE_INT.describe(), PROBABILITY.accepts(1.5), POSITIVE_INT("3")
        ('a positive integer', False, 3)
    """

    kind: type
    low: float | None = None
    high: float | None = None
    open_low: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "__name__", self.kind.__name__)  # argparse: "invalid int value: 'x'"

    def __call__(self, text: str) -> Any:
        return self.kind(text)

    def describe(self) -> str:
        if self.kind is int and self.low == 1 and self.high is None and not self.open_low:
            return "a positive integer"
        what = "an integer" if self.kind is int else "a finite number"
        if self.low is not None and self.high is not None:
            return f"{what} in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f"{what} {'>' if self.open_low else '>='} {self.low:g}"
        return what

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind is int and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or value <= self.high


#: Common bounds, usable as argparse types.
POSITIVE_INT = Bound(int, 1)
NONNEGATIVE_INT = Bound(int, 0)
POSITIVE_FLOAT = Bound(float, 0.0, open_low=True)
NONNEGATIVE_FLOAT = Bound(float, 0.0)
PROBABILITY = Bound(float, 0.0, 1.0)


def check_numbers(
    args: argparse.Namespace,
    bounds: Mapping[str, Bound],
    *,
    config: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
) -> None:
    """Type- and range-check numeric flags, from the command line or a JSON ``--config`` alike.

    ``config`` holds the values read from ``config_file``; a bad value that came from there is
    reported as the config key, otherwise as the flag.
    """
    for dest, bound in bounds.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        if all(bound.accepts(v) for v in values):
            continue
        flag = "--" + dest.replace("_", "-")
        if config is not None and dest in config and config[dest] == value:
            raise CLIError(
                f"config {config_file}: {dest} must be {bound.describe()}, got {value!r}",
                f"fix {dest} in the config file (or override it with {flag})",
            )
        raise CLIError(
            f"{flag} must be {bound.describe()}, got {value!r}", f"pass {flag} as {bound.describe()}"
        )


def writable_dir(path: str | Path, flag: str = "--output") -> Path:
    """Create ``path`` (parents too) and check that a file can be written in it; one-line error if not."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise CLIError(
            f"{flag} {folder} is not a writable folder ({err.strerror or type(err).__name__})",
            f"pass a {flag} folder you can write to",
        ) from None
    return folder


def load_json_config(path: str | Path, known: set[str]) -> dict[str, Any]:
    """Read a JSON config file of ``{flag_dest: value}``; keys must be known argparse dests."""
    file = Path(path)
    if not file.is_file():
        raise CLIError(f"config file {file} does not exist", "pass an existing file, e.g. examples/configs/")
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise CLIError(f"config file {file} is not valid JSON ({err})", "fix the JSON syntax") from None
    if not isinstance(data, dict):
        raise CLIError(f"config file {file} must hold a JSON object", 'write {"flag": value, ...}')
    data = {k: v for k, v in data.items() if not k.startswith("_")}  # "_comment", "_paper" keys
    unknown = sorted(set(data) - known)
    if unknown:
        raise CLIError(f"config file {file} has unknown keys {unknown}", "use the flag names of --help")
    return data


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv`` with defaults from a JSON ``--config FILE`` (flags override it), all values checked.

    A parser without a ``--config`` flag only gets the range checks. Config keys are flag names
    (argparse dests); each value is checked like a command-line value: booleans for switches,
    ``choices``, lists for ``nargs`` flags, and the ranges of flags whose ``type`` is a
    [`Bound`][visattn.cli.Bound] (reported as the config key when the bad value came from the file).
    """
    pre, _ = parser.parse_known_args(argv)
    config_file = getattr(pre, "config", None)
    defaults: dict[str, Any] = {}
    if config_file:
        actions = [a for a in parser._actions if a.dest != "help"]
        defaults = load_json_config(config_file, {a.dest for a in actions})
        for action in actions:
            if action.dest not in defaults:
                continue
            value = defaults[action.dest]
            if action.nargs not in (None, "?", 0):
                size = action.nargs if isinstance(action.nargs, int) else None
                if not isinstance(value, list) or (size is not None and len(value) != size):
                    flag = action.option_strings[0]
                    integers = action.type is int or (
                        isinstance(action.type, Bound) and action.type.kind is int
                    )
                    what = "integers" if integers else "values"
                    raise CLIError(
                        f"{flag} must be a list of {size or 'zero or more'} {what}, got {value!r}",
                        f"write {action.dest} as a JSON list in the config file",
                    )
            switch = isinstance(action, (argparse._StoreTrueAction, argparse.BooleanOptionalAction))
            if switch and not isinstance(value, bool):
                raise CLIError(
                    f"config {config_file}: {action.dest}={value!r} must be true or false",
                    "fix the config file",
                )
            if action.choices is not None and value not in action.choices:
                raise CLIError(
                    f"config {config_file}: {action.dest}={value!r} is not one of {list(action.choices)}",
                    "fix the config file",
                )
        parser.set_defaults(**defaults)
    args = parser.parse_args(argv)
    typed = {a.dest: a.type for a in parser._actions if isinstance(a.type, Bound)}
    check_numbers(args, typed, config=defaults, config_file=config_file)
    return args


def amp_warning(amp: str, device_type: str, cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> str | None:
    """A warning for ``--amp bf16`` on a CPU without native bf16 (AVX512-BF16 or AMX), else ``None``.

    There autocast emulates bf16 and the layer runs about ten times slower than in float32. The CPU's
    flags are read from ``cpuinfo`` (no warning where that file does not exist).

    Example:
        >>> amp_warning("none", "cpu") is None
        True
    """
    if amp != "bf16" or device_type != "cpu":
        return None
    try:
        flags = Path(cpuinfo).read_text()
    except OSError:
        return None
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        return None
    return (
        "warning: this CPU has no native bf16 (AVX512-BF16 / AMX): --amp bf16 runs several times slower "
        "than float32 here; drop --amp or use a GPU"
    )
