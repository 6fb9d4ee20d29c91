"""Helpers shared by the ``infoloss`` subcommands: errors, option types, figures, formatting."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "INSTALL_HINT",
    "MAX_SEED",
    "CLIError",
    "check_output_path",
    "dumps_json",
    "float_in",
    "fmt",
    "fmt_array",
    "int_in",
    "require",
    "save_figure",
    "unit_name",
]

#: The command a user runs to get every optional dependency of the command line.
INSTALL_HINT = 'pip install "infoloss[cli]"'

#: The largest ``--seed`` (seeds are in [0, 2**32 - 1], the range scikit-learn's splits accept).
MAX_SEED = 2**32 - 1


class CLIError(Exception):
    """A problem with the user's input, reported as one line and exit code 2."""


def require(module: str, *, package: str | None = None, purpose: str) -> Any:
    """Import an optional dependency or raise a :class:`CLIError` that says how to get it.

    Examples
    --------
    >>> require("json", purpose="testing").__name__
    'json'
    >>> try:
    ...     require("no_such_module_xyz", package="xyz", purpose="--plot")
    ... except CLIError as e:
    ...     print(e)
    --plot needs xyz, which is not installed; install it with: pip install "infoloss[cli]"
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        name = package or module
        raise CLIError(
            f"{purpose} needs {name}, which is not installed; install it with: {INSTALL_HINT}"
        ) from None


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``[low, high]``, checked while the options are parsed.

    Examples
    --------
    >>> int_in(0, 4096)("64")
    64
    >>> try:
    ...     int_in(0, 4096)("2000000000")
    ... except argparse.ArgumentTypeError as e:
    ...     print(e)
    must be an integer in [0, 4096]; got 2000000000
    """

    def parse(text: str) -> int:
        value = int(text)  # a ValueError here: argparse says "invalid int value: 'x'"
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer in [{low}, {high}]; got {value}")
        return value

    parse.__name__ = "int"
    return parse


def float_in(
    low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> Callable[[str], float]:
    """An argparse ``type``: a finite number in an interval (``low_open``: ``low`` excluded).

    Examples
    --------
    >>> float_in(0, 1, low_open=True, high_open=True)("0.25")
    0.25
    >>> try:
    ...     float_in(0, 1, low_open=True)("nan")
    ... except argparse.ArgumentTypeError as e:
    ...     print(e)
    must be a number in (0, 1]; got nan
    """
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def parse(text: str) -> float:
        value = float(text)  # a ValueError here: argparse says "invalid float value: 'x'"
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        if not (math.isfinite(value) and above and below):
            raise argparse.ArgumentTypeError(f"must be a number in {interval}; got {text}")
        return value

    parse.__name__ = "float"
    return parse


def check_output_path(path: str, *, option: str = "--plot") -> Path:
    """Check, before any work, that a figure can be written to ``path``.

    The suffix picks the format (``.png``, ``.svg``, ``.pdf``, ...); no suffix means PNG. A
    symbolic link is followed: the figure replaces the file it points to.
    """
    out = Path(path)
    real = Path(os.path.realpath(out))
    if out.is_dir():
        raise CLIError(f"{option} {path}: is a directory, not a file name")
    suffix = out.suffix.lower().lstrip(".")
    if suffix and suffix not in _IMAGE_FORMATS:
        raise CLIError(
            f"{option} {path}: unknown image format {suffix!r}; "
            f"use one of {', '.join(sorted(_IMAGE_FORMATS))}"
        )
    if real.exists() and not real.is_file():  # a device or a pipe: written in place
        if not os.access(real, os.W_OK):
            raise CLIError(f"{option} {path}: is not writable")
        return out
    parent = real.parent
    if not parent.is_dir():
        raise CLIError(f"{option} {path}: directory {str(out.parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"{option} {path}: directory {str(out.parent)!r} is not writable")
    if real.exists() and not os.access(real, os.W_OK):
        raise CLIError(f"{option} {path}: the file exists and is not writable")
    return out


_IMAGE_FORMATS = {"png", "svg", "pdf", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp"}


def _new_file_mode(existing: Path) -> int:
    """The permissions the figure gets: those of the file it replaces, else 0o666 less umask."""
    try:
        return stat.S_IMODE(existing.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0o022)
        os.umask(umask)
        return 0o666 & ~umask


def save_figure(fig: Any, path: Path, *, option: str = "--plot") -> None:
    """Save a matplotlib figure to ``path`` atomically; PNG when the name has no suffix.

    The figure is written to a temporary file in the target's directory, flushed to disk and
    then renamed onto the target with :func:`os.replace`, so an interrupted or failing save
    (Ctrl-C, a full disk, an error in matplotlib) leaves any file already at ``path`` untouched;
    the temporary is removed on every failure, KeyboardInterrupt included. A target that exists
    but is not a regular file (``/dev/null``, a named pipe) is written in place. An OSError is
    reported as a :class:`CLIError` naming the file; anything else propagates.
    """
    fmt_ = path.suffix.lower().lstrip(".") or "png"
    real = Path(os.path.realpath(path))
    try:
        if real.exists() and not real.is_file():
            with open(real, "wb") as fh:
                fig.savefig(fh, format=fmt_, dpi=120, bbox_inches="tight")
            return
        mode = _new_file_mode(real)
        fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fig.savefig(fh, format=fmt_, dpi=120, bbox_inches="tight")
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, real)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as e:
        raise CLIError(f"{option} {path}: cannot write ({e.strerror or e})") from None


def unit_name(base: float | None) -> str:
    """The name of the information unit for a logarithm base.

    Examples
    --------
    >>> unit_name(2), unit_name(None), unit_name(10), unit_name(3)
    ('bits', 'nats', 'hartleys', 'base-3 units')
    """
    if base is None or base == math.e:
        return "nats"
    if base == 2:
        return "bits"
    if base == 10:
        return "hartleys"
    return f"base-{base:g} units"


def fmt(x: float, digits: int = 6) -> str:
    """Format one number for the terminal: ``digits`` significant digits, ``inf`` kept.

    Examples
    --------
    >>> fmt(0.1234567891), fmt(1.5e-9), fmt(float("inf")), fmt(2.0)
    ('0.123457', '1.5e-09', 'inf', '2')
    """
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}g}"


def fmt_array(a: Any, digits: int = 6) -> str:
    """Format a small array the way NumPy prints it, with ``digits`` significant digits.

    Examples
    --------
    >>> fmt_array([[1.0, 0.25, -3.5]])
    '[[ 1.    0.25 -3.5 ]]'
    """
    arr = np.asarray(a, dtype=np.float64)
    return np.array2string(
        arr, precision=digits, suppress_small=False, floatmode="maxprec", max_line_width=100
    )


def _jsonable(obj: Any) -> Any:
    """Turn NumPy values into JSON values; non-finite floats become the strings "inf"/"nan"."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def dumps_json(obj: Any) -> str:
    """Serialise to strict JSON (non-finite floats written as the strings "inf", "-inf", "nan").

    Examples
    --------
    >>> json.loads(dumps_json({"kl": float("inf"), "h": np.float64(0.5), "x": np.arange(2)}))
    {'kl': 'inf', 'h': 0.5, 'x': [0, 1]}
    """
    return json.dumps(_jsonable(obj), indent=2, allow_nan=False)
