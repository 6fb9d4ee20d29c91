"""Everything that exists only for speed: the numba kernels and the NumPy glue around them.

The glue modules (:mod:`.losses`, :mod:`.activations`, :mod:`.measures`, :mod:`.linear`) turn a
validated spec (:mod:`infoloss._specs`) of NumPy arrays into kernel calls and back; the kernels
(:mod:`.kernels`) take 2-D ``(rows, classes)`` arrays. :mod:`infoloss._router` decides when this
path runs; nothing here decides again. The kernels are imported on first use.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

__all__ = ["kernels", "rows", "unrows"]


def kernels() -> ModuleType | None:
    """The kernel module, imported (and its thread pool configured) on first use; ``None``
    when numba is unavailable (a single :class:`RuntimeWarning` says so)."""
    from .. import _dispatch  # TODO(merge): the kernels move into this package

    return _dispatch.kernels()


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
