"""Kernels of the vocabulary-parallel cross-entropy on one shard (``docs/distributed.md``).

The per-row statistics of :func:`infoloss._generic.sharded.shard_stats` and the shard's
gradient of :func:`infoloss._generic.sharded.shard_grad`, each in one parallel sweep over the
shard's ``(N, V_local)`` logits (two passes over a row in cache: the max, then the exponentials),
instead of the seven or so array operations of the definition. The combination across shards
(the all-reduces and the O(N) per-row arithmetic) stays in the definition.

Statistics, per row: the local maximum ``m`` (+inf for a row with a nan or +inf, −inf for an
all −inf row), ``k = 1`` and ``r = d = (count of the maxima − 1) + Σ_{x < m} e^{x − m}`` (the
definition's ``k`` and ``r`` up to how they are split: only ``k + r`` and ``(k − 1) + r`` are
used, and they are equal), the target logit and its class weight where this shard owns the target,
and with label smoothing ``T = Σ_c w_c (m − x_c)`` (a zero weight times a −inf logit is 0).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._launch import _check2d, _launch, _rows_view
from ._rows import _exp_sum, _finite, _gap_sum, _gap_sum_w, _row_max_span
from ._tunables import _JIT, _PJIT
from ._vecmath import _like, _vexp

__all__ = ["shard_grad", "shard_stats"]


@njit(**_PJIT)
def _k_stats(xf, rs, n, c, idx, w, has_w, smooth, out):
    # out (6, n) float64: m_loc, m_ref, k, r, x_y, T; idx[i] the local target column or -1
    for i in prange(n):
        xr = xf[i * rs : i * rs + c]
        i1 = min(np.int64(i) + 1, n - 1)
        m, lo, hi = _row_max_span(xr)
        mref = 0.0
        if _finite(m):
            mref = np.float64(m)
            xn = xf[i1 * rs : i1 * rs + c]
            out[0, i] = mref
            out[2, i] = 1.0
            out[3, i] = _exp_sum(xr, m, lo, hi, xn)[1]
        else:  # all −inf: no entry counts; nan / +inf: +inf for the MAX (the row becomes nan)
            out[0, i] = -np.inf if m == -np.inf else np.inf
            out[2, i] = 0.0
            out[3, i] = 0.0
        out[1, i] = mref
        j = idx[i]
        out[4, i] = np.float64(xr[j]) if j >= 0 else 0.0
        if smooth:
            mm = _like(mref, xr[0])
            out[5, i] = _gap_sum_w(xr, mm, w) if has_w else _gap_sum(xr, mm)


@njit(**_JIT)
def _grad_row(xr, orow, m, ls, a, b, w, has_w):
    """orow = a · exp((x − m) − ls) − b · w (b · 1 without weights), in the row's dtype."""
    ml = _like(m, xr[0])
    ll = _like(ls, xr[0])
    al = _like(a, xr[0])
    if has_w:
        for j in range(xr.shape[0]):
            orow[j] = al * _vexp((xr[j] - ml) - ll) - _like(b * w[j], al)
    else:
        bl = _like(b, xr[0])
        for j in range(xr.shape[0]):
            orow[j] = al * _vexp((xr[j] - ml) - ll) - bl


@njit(**_PJIT)
def _k_grad(xf, rs, n, c, idx, m, ls, a, b, gy, keep, w, has_w, out):
    for i in prange(n):
        orow = out[i]
        if not keep[i]:
            for j in range(c):
                orow[j] = 0.0
            continue
        xr = xf[i * rs : i * rs + c]
        _grad_row(xr, orow, m[i], ls[i], a[i], b[i], w, has_w)
        j = idx[i]
        if j >= 0:
            wj = w[j] if has_w else 1.0
            orow[j] = _like(gy[i] - b[i] * wj, orow[j])
        if not math.isfinite(m[i]):  # a nan row (global maximum nan): nan everywhere
            for j2 in range(c):
                orow[j2] = _like(np.nan, orow[j2])


def shard_stats(x: np.ndarray, idx: np.ndarray, w: np.ndarray | None, smooth: bool) -> np.ndarray:
    """``(6, N)`` float64: ``m_loc, m_ref, k, r, x_y, T`` of the rows of ``x`` ``(N, V_local)``
    (float32/float64, ``V_local > 0``); ``idx`` the local target column or −1 (int64);
    ``w`` this shard's class weights (float64) or None."""
    _check2d(x)
    n, c = x.shape
    out = np.zeros((6, n), np.float64)
    if n:
        xf, rs = _rows_view(x)
        wv = np.zeros(1) if w is None else w
        _launch(_k_stats, n * c, xf, rs, n, c, idx, wv, w is not None, smooth, out)
    return out


def shard_grad(
    x: np.ndarray,
    idx: np.ndarray,
    m: np.ndarray,
    ls: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    gy: np.ndarray,
    keep: np.ndarray,
    w: np.ndarray | None,
) -> np.ndarray:
    """The shard's gradient ``(N, V_local)`` in ``x``'s dtype: ``a_i exp(x_ic − m_i − ls_i) −
    b_i w_c``, ``gy_i − b_i w_{y_i}`` at the owned target, 0 on rows where ``keep`` is False
    (float64 row vectors; int64 ``idx`` as in :func:`shard_stats`)."""
    _check2d(x)
    n, c = x.shape
    out = np.empty((n, c), x.dtype)
    if n and c:
        xf, rs = _rows_view(x)
        wv = np.zeros(1) if w is None else w
        _launch(_k_grad, n * c, xf, rs, n, c, idx, m, ls, a, b, gy, keep, wv, w is not None, out)
    return out
