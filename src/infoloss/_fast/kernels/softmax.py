"""Kernels of logsumexp, softmax and log_softmax along rows."""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._launch import _check2d, _launch, _rows_view
from ._rows import _exp_store_sum, _exp_sum, _fill, _finite, _row_max_span, _scale
from ._tunables import _PJIT
from ._vecmath import _like

# --------------------------------------------------------------------------- activations


@njit(**_PJIT)
def _k_lse(xf, rs, n, c, out):
    for i in prange(n):
        xr = xf[i * rs : i * rs + c]
        i1 = min(np.int64(i) + 1, n - 1)
        m, lo, hi = _row_max_span(xr)
        if _finite(m):
            xn = xf[i1 * rs : i1 * rs + c]
            out[i] = np.float64(m) + math.log1p(_exp_sum(xr, m, lo, hi, xn)[1])
        else:
            # the max itself: nan if the row has a nan (llvm.maximum propagates it), else +inf
            # if it has a +inf, else (all −inf) −inf
            out[i] = np.float64(m)


@njit(**_PJIT)
def _k_softmax(xf, rs, n, c, log, out):
    for i in prange(n):
        xr = xf[i * rs : i * rs + c]
        orow = out[i]
        i1 = min(np.int64(i) + 1, n - 1)
        xn = xf[i1 * rs : i1 * rs + c]
        m, lo, hi = _row_max_span(xr)
        if _finite(m):
            if log:
                ls = _like(math.log1p(_exp_sum(xr, m, lo, hi, xn)[1]), m)
                for j in range(c):
                    orow[j] = (xr[j] - m) - ls  # both terms ≤ 0: no cancellation
            else:
                s, _ = _exp_store_sum(xr, m, lo, hi, orow, xn, out[i1])
                _scale(orow, _like(1.0 / s, m))
        elif m == -np.inf:  # all −inf: no distribution (log_softmax −inf, softmax 0)
            _fill(orow, _like(-np.inf if log else 0.0, m))
        else:  # a NaN (m is NaN: llvm.maximum propagates it) or a +inf logit: the row is NaN
            _fill(orow, _like(np.nan, m))


def logsumexp_rows(x: np.ndarray) -> np.ndarray:
    """log Σ_c exp(x_ic) per row, (N,) of ``x.dtype``; −inf for an all −inf row."""
    _check2d(x)
    n, c = x.shape
    out = np.empty(n, np.float64)
    if n and c:
        xf, rs = _rows_view(x)
        _launch(_k_lse, n * c, xf, rs, n, c, out)
    else:
        out.fill(-np.inf)
    return out.astype(x.dtype)


def log_softmax_rows(x: np.ndarray) -> np.ndarray:
    """x − logsumexp(x) per row, (N, C) of ``x.dtype``; an all −inf row gives −inf."""
    _check2d(x)
    n, c = x.shape
    out = np.empty((n, c), x.dtype)
    if n and c:
        xf, rs = _rows_view(x)
        _launch(_k_softmax, n * c, xf, rs, n, c, True, out)
    return out


def softmax_rows(x: np.ndarray) -> np.ndarray:
    """softmax per row, (N, C) of ``x.dtype``; an all −inf row gives zeros."""
    _check2d(x)
    n, c = x.shape
    out = np.empty((n, c), x.dtype)
    if n and c:
        xf, rs = _rows_view(x)
        _launch(_k_softmax, n * c, xf, rs, n, c, False, out)
    return out
