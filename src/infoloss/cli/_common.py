"""Helpers shared by the ``infoloss`` subcommands: errors, optional imports, formatting."""

from __future__ import annotations

import importlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CLIError",
    "check_output_path",
    "dumps_json",
    "fmt",
    "fmt_array",
    "require",
    "unit_name",
]

#: The command a user runs to get every optional dependency of the command line.
INSTALL_HINT = 'pip install "infoloss[cli]"'


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


def check_output_path(path: str, *, option: str = "--plot") -> Path:
    """Check, before any work, that a figure can be written to ``path``.

    The suffix picks the format (``.png``, ``.svg``, ``.pdf``, ...); no suffix means PNG.
    """
    out = Path(path)
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise CLIError(f"{option} {path}: is a directory, not a file name")
    if not parent.is_dir():
        raise CLIError(f"{option} {path}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise CLIError(f"{option} {path}: directory {str(parent)!r} is not writable")
    suffix = out.suffix.lower().lstrip(".")
    supported = {"png", "svg", "pdf", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp"}
    if suffix and suffix not in supported:
        raise CLIError(
            f"{option} {path}: unknown image format {suffix!r}; "
            f"use one of {', '.join(sorted(supported))}"
        )
    return out


def save_figure(fig: Any, path: Path) -> None:
    """Save a matplotlib figure; PNG when the name has no suffix."""
    fmt_ = path.suffix.lower().lstrip(".") or "png"
    fig.savefig(path, format=fmt_, dpi=120, bbox_inches="tight")


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
