"""Kernels of logsumexp, softmax and log_softmax along rows."""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from .. import pool as _pool
from . import _tunables
from ._launch import _check2d, _launch, _rows_view, _scratch
from ._rows import (
    _BLK,
    _block_exp_store_sum,
    _block_exp_sum,
    _d_plus,
    _exp_store_sum,
    _exp_sum,
    _fill,
    _finite,
    _prefetch_block,
    _row_max_span,
    _scale,
)
from ._tunables import _JIT, _JIT_NR, _PJIT
from ._vecmath import _fence, _like, _stream_scale, _stream_shift

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


# Large outputs (≥ _STREAM_MIN_BYTES) take the sparse cross-entropy kernel's pipeline: each thread
# works through a contiguous range of rows with one scratch row; during row i's exp pass, block
# by block, row i−1's output is written with streaming stores (softmax: its exponentials, still
# in the scratch block, times 1/S; log_softmax: (x − m) − log S from its logits, still in cache),
# then the block is overwritten by row i's exponentials (softmax only: log_softmax stores none).
# A normal store reads each output line before writing it; the streaming ones do not, and they
# are spread over the compute-bound exp pass instead of coming in one burst per row.


@njit(**_JIT_NR)
def _sm_emit(xp, buf, prow, b0, b1, pm, pa, pmode):
    """Block [b0, b1) of the pending row's output ``prow``: ``buf · pa`` (pmode 0, softmax),
    ``(xp − pm) − pa`` (1, log_softmax) or the constant ``pa`` (2: a row without a finite max)."""
    if pmode == 0:
        _stream_scale(buf[b0:b1], prow[b0:b1], pa)
    elif pmode == 1:
        _stream_shift(xp[b0:b1], prow[b0:b1], pm, pa)
    else:
        _fill(prow[b0:b1], pa)


@njit(**_JIT)
def _sm_exp_emit(xr, m, lo, hi, buf, xn, emit, xp, prow, pm, pa, pmode, store):
    """(S, S − 1) of row ``xr`` (storing its exponentials into ``buf`` when ``store``), writing
    the pending row's output block by block first (:func:`_sm_emit`, when ``emit``)."""
    n = xr.shape[0]
    s = 0.0
    cnt = 0.0
    blk = 0
    for b0 in range(0, n, _BLK):
        b1 = min(b0 + _BLK, n)
        _prefetch_block(xn, xn, b0, b1, False)
        if emit:
            _sm_emit(xp, buf, prow, b0, b1, pm, pa, pmode)
        if store:
            t, k = _block_exp_store_sum(xr, b0, b1, m, lo <= blk <= hi, buf)
        else:
            t, k = _block_exp_sum(xr, b0, b1, m, lo <= blk <= hi)
        s += t
        cnt += k
        blk += 1
    return cnt + s, _d_plus(cnt, 1.0, s)


@njit(**_PJIT)
def _k_softmax_stream(xf, rs, n, c, log, out, scratch):
    nch = scratch.shape[0]
    per = (n + nch - 1) // nch
    for t in prange(nch):
        r0 = t * per
        r1 = min(n, r0 + per)
        buf = scratch[t]
        zero = _like(0.0, xf[0])
        p = np.int64(-1)  # the pending row: its output is written during the next row's exp pass
        pm = zero
        pa = zero
        pmode = 0
        for i in range(r0, r1):
            xr = xf[i * rs : i * rs + c]
            q = max(p, 0)
            xp = xf[q * rs : q * rs + c]
            prow = out[q]
            emit = p >= 0
            m, lo, hi = _row_max_span(xr)
            if _finite(m):
                i1 = min(i + 1, r1 - 1)
                xn = xf[i1 * rs : i1 * rs + c]
                s, dm = _sm_exp_emit(xr, m, lo, hi, buf, xn, emit, xp, prow, pm, pa, pmode, not log)
                if log:
                    pm, pa, pmode = m, _like(math.log1p(dm), m), 1
                else:
                    pm, pa, pmode = m, _like(1.0 / s, m), 0
            else:
                if emit:
                    _sm_emit(xp, buf, prow, 0, c, pm, pa, pmode)
                # all −inf: no distribution (log_softmax −inf, softmax 0); else (a NaN or a
                # +inf logit) the row is NaN
                pm = zero
                pa = _like((-np.inf if log else 0.0) if m == -np.inf else np.nan, zero)
                pmode = 2
            p = i
        if p >= 0:
            _sm_emit(xf[p * rs : p * rs + c], buf, out[p], 0, c, pm, pa, pmode)
        _fence()  # the streaming stores are complete before the kernel returns


def _softmax_launch(x: np.ndarray, log: bool) -> np.ndarray:
    n, c = x.shape
    # large outputs reuse a cached buffer, as the gradients do (infoloss._fast.pool): a fresh
    # 524 MB array costs the first-touch mapping of its pages, about a copy's time again
    out = _pool.empty((n, c), x.dtype)
    if n and c:
        xf, rs = _rows_view(x)
        if out.nbytes >= _tunables._STREAM_MIN_BYTES:
            chunks = min(n, numba.get_num_threads())
            scratch = _scratch((chunks, -(-c // 16) * 16), x.dtype)
            _launch(_k_softmax_stream, n * c, xf, rs, n, c, log, out, scratch)
        else:
            _launch(_k_softmax, n * c, xf, rs, n, c, log, out)
    return out


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
    return _softmax_launch(x, True)


def softmax_rows(x: np.ndarray) -> np.ndarray:
    """softmax per row, (N, C) of ``x.dtype``; an all −inf row gives zeros."""
    _check2d(x)
    return _softmax_launch(x, False)
