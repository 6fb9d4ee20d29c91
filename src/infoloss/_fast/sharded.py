"""NumPy glue of the vocabulary-parallel kernels (``kernels/sharded_ce.py``): one shard's
per-row statistics and gradient (the definition: :mod:`infoloss._generic.sharded`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import get_kernels

__all__ = ["available", "shard_grad", "shard_stats"]


def available() -> bool:
    """Whether the kernels can run (numba importable)."""
    return get_kernels() is not None


def _weights(w: Any) -> np.ndarray | None:
    return None if w is None else np.ascontiguousarray(w, dtype=np.float64)


def shard_stats(x: np.ndarray, idx: np.ndarray, w: Any, smooth: bool) -> np.ndarray:
    """``(6, N)`` float64 rows ``m_loc, m_ref, k, r, x_y, T`` of the shard ``x`` ``(N, V_local)``
    (``idx``: the local target column, −1 where the shard does not own a kept target; ``w``:
    this shard's class weights or None; ``T`` only with ``smooth``)."""
    k = get_kernels()
    assert k is not None
    return k.shard_stats(x, np.ascontiguousarray(idx, dtype=np.int64), _weights(w), smooth)


def shard_grad(
    x: np.ndarray,
    idx: np.ndarray,
    rows: tuple[np.ndarray, ...],
    keep: np.ndarray,
    w: Any,
) -> np.ndarray:
    """The shard's gradient from the per-row ``rows = (m, ls, a, b, g_y)`` (see
    :func:`infoloss._fast.kernels.sharded_ce.shard_grad`), zero on rows not ``keep`` t."""
    k = get_kernels()
    assert k is not None
    m, ls, a, b, gy = (np.ascontiguousarray(r, dtype=np.float64) for r in rows)
    return k.shard_grad(
        x,
        np.ascontiguousarray(idx, dtype=np.int64),
        m,
        ls,
        a,
        b,
        gy,
        np.ascontiguousarray(keep, dtype=np.bool_),
        _weights(w),
    )
