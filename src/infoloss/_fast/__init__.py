"""Everything that exists only for speed: the numba kernels and the NumPy glue around them.

The glue modules (:mod:`.losses`, :mod:`.activations`, :mod:`.measures`, :mod:`.linear`) turn a
validated spec (:mod:`infoloss._specs`) of NumPy arrays into kernel calls and back; the kernels
(:mod:`.kernels`) take 2-D ``(rows, classes)`` arrays. :mod:`infoloss._router` decides when this
path runs; nothing here decides again. The kernels are imported on first use.
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType

import numpy as np

__all__ = ["get_kernels", "rows", "softcap", "unrows"]

_kernels: ModuleType | None = None
_tried = False


def _check_num_threads_env() -> None:
    """Raise :class:`~infoloss.InfolossError` for a ``NUMBA_NUM_THREADS`` that is set but not a
    positive integer (numba reads it once, at its import: it would warn and ignore a non-number,
    and fail with a traceback for 0 or a negative count)."""
    value = os.environ.get("NUMBA_NUM_THREADS")
    if value is None:
        return
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        from ..errors import InfolossError

        raise InfolossError(
            "the environment variable `NUMBA_NUM_THREADS` (the size of numba's thread pool) must "
            f"be a positive integer; got {value!r}"
        )


def get_kernels() -> ModuleType | None:
    """The kernel package, imported on first use (which starts numba's thread pool on a fork-
    and thread-safe layer, see :mod:`.kernels._launch`); ``None`` when numba is unavailable (a
    single :class:`RuntimeWarning` says so).

    Raises :class:`~infoloss.InfolossError` for an invalid ``NUMBA_NUM_THREADS`` (on every call
    until it is fixed, since numba reads it at import).
    """
    global _kernels, _tried
    if not _tried:
        _check_num_threads_env()
        _tried = True
        try:
            import numba  # noqa: F401
        except ImportError as e:
            warnings.warn(
                f"infoloss: numba could not be imported ({e}); the slower generic NumPy path is used",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        from . import kernels as k

        _kernels = k
    return _kernels


def rows(x: np.ndarray, axis: int) -> np.ndarray:
    """``x`` with ``axis`` moved last, as a 2-D (rows, classes) array.

    A view when ``axis`` is already last and ``x`` is C-contiguous; otherwise NumPy copies once
    (documented cost: a non-last class axis costs one copy of the input).
    """
    if axis != x.ndim - 1:
        x = np.moveaxis(x, axis, -1)
    c = x.shape[-1] if x.ndim else 1
    n = int(np.prod(x.shape[:-1])) if x.ndim > 1 else 1
    return np.ascontiguousarray(x).reshape(n, c)


def unrows(x2: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray:
    """Inverse of :func:`rows`: back to ``shape`` (the moved-axis order undone, as a view)."""
    moved = shape[:axis] + shape[axis + 1 :] + (shape[axis],)
    out = x2.reshape(moved)
    if axis != len(shape) - 1:
        out = np.moveaxis(out, -1, axis)
    return out


def softcap(x: np.ndarray, c: float, out: np.ndarray | None = None) -> np.ndarray:
    """Soft-cap ``x`` → ``c·tanh(x/c)`` into ``out`` (may be ``x`` itself; ±inf kept) and return
    the derivative ``1 − tanh²(x/c) = 4e / (1 + e)²``, ``e = exp(−2|x|/c)``, as a new array.

    The same definition as :func:`infoloss._generic.activations.softcap`, in NumPy for the glue.
    """
    z = x / c
    d = np.abs(z)
    d *= -2.0
    np.exp(d, out=d)  # e
    pos, neg = np.isposinf(x), np.isneginf(x)  # before ``out`` (maybe ``x``) is written
    if out is None:
        out = np.empty_like(x)
    np.tanh(z, out=out)
    out *= c
    out[pos] = np.inf
    out[neg] = -np.inf
    np.add(d, 1.0, out=z)  # 1 + e
    z *= z
    d *= 4.0
    d /= z
    return d
