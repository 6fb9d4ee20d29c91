"""Row primitives shared by the kernel families: max passes, blocked exp-and-sum, scaling, gaps."""

from __future__ import annotations

import numpy as np
from numba import njit

from ._tunables import _FP, _JIT, _JIT_NR
from ._vecmath import (
    _fkey,
    _fmaximum,
    _funkey,
    _like,
    _prefetch_read,
    _prefetch_write,
    _vexp,
    _where,
)

# --------------------------------------------------------------------------- row helpers
# `xr` is one row (1-D, C-contiguous). Each helper is one vectorizable inner loop.


# Maxima are taken over integer keys (:func:`_fkey`: the float's bits, ordered like the float),
# whose max/min reductions vectorize; a NaN shows as a key above that of +inf or below that of
# −inf, so the result is the same as a NaN-propagating maximum (llvm.maximum), which as a
# reduction ran at 0.35 ns per element in cache against 0.05 for the keys.


@njit(**_JIT, inline="always")
def _key_range(xr, b0, b1, kmax, kmin):
    """(max, min) of the keys of xr[b0:b1] and of ``kmax``, ``kmin`` (unsigned indices: numba
    then emits no negative-index wraparound, which keeps a loop over a range scalar)."""
    for j in range(np.uint64(b0), np.uint64(b1)):
        k = _fkey(xr[j])
        kmax = _where(k > kmax, k, kmax)
        kmin = _where(k < kmin, k, kmin)
    return kmax, kmin


@njit(**_JIT_NR)
def _key_max(kmax, kmin, ref):
    """The maximum from the keys' max and min: NaN when either shows a NaN."""
    nan = (kmax > _fkey(_like(np.inf, ref))) | (kmin < _fkey(_like(-np.inf, ref)))
    return _where(nan, _like(np.nan, ref), _funkey(kmax))


@njit(**_JIT)
def _row_max(xr):
    """The row's maximum (NaN if any element is NaN)."""
    k0 = _fkey(xr[0])
    kmax, kmin = _key_range(xr, 0, xr.shape[0], k0, k0)
    return _key_max(kmax, kmin, xr[0])


# Sums of exponentials S = Σ_j exp(x_j − m). Blocks of _BLK elements are summed in the row's
# dtype (8 float32 lanes, a few interleaved accumulators, so each partial sum has only a few
# dozen terms) and the block sums are added in float64; this keeps the loop at the full float32
# vector width. The maxima (x_j == m, whose exponential is exactly 1) are counted instead of
# summed, so that d = S − 1 = (count − 1) + Σ_{x_j < m} e_j is accurate even when it is tiny
# (a confident prediction: loss = log1p(d) keeps full relative accuracy in float32). Counting
# costs four vector operations per element, so it is done only in the blocks that can hold a
# maximum: the max pass also returns the first and last block whose own maximum equals the
# row's (every other block is summed plainly; the results are identical, since there the
# indicator is 0).
_BLK = 512
# Rows this short never reach the vector loops (16 float32 per iteration); they take a plain
# scalar loop (18% less time per row at C = 10).
_SHORT = 16


@njit(**_JIT)
def _row_max_span(xr):
    """(m, lo, hi): the row's maximum (NaN if any element is NaN) and the first and last block
    (of _BLK elements) whose maximum equals m."""
    m, _, lo, hi = _row_range_span(xr)
    return m, lo, hi


@njit(**_JIT, inline="always")
def _row_range_span(xr):
    """:func:`_row_max_span` with the row's minimum: (m, min, lo, hi), both NaN if any element
    is NaN."""
    n = xr.shape[0]
    m = xr[0]
    if n <= _SHORT:
        lo_v = xr[0]
        for j in range(n):
            m = _fmaximum(m, xr[j])
            lo_v = _where(xr[j] < lo_v, xr[j], lo_v)
        return m, _where(m != m, m, lo_v), 0, 0
    kall = _fkey(xr[0])
    kmin = kall
    lo = 0
    hi = 0
    b = 0
    for b0 in range(0, n, _BLK):
        kb = _fkey(xr[b0])
        kb, kmin = _key_range(xr, b0, min(b0 + _BLK, n), kb, kmin)
        kall = _where(kb > kall, kb, kall)
        mb = _funkey(kb)
        if b == 0 or mb > m:
            m = mb
            lo = b
            hi = b
        elif mb == m:
            hi = b
        b += 1
    mx = _where(_key_max(kall, kmin, m) != m, _like(np.nan, m), m)
    return mx, _where(mx != mx, mx, _funkey(kmin)), lo, hi


@njit(cache=True, fastmath=_FP, error_model="numpy")
def _d_plus(a, b, c):
    """(a − b) + c in exactly this order: compiled without `reassoc`, so LLVM cannot rewrite
    (count − 1) + Σ into (count + Σ) − 1, which would lose the digits of a tiny Σ."""
    return (a - b) + c


@njit(cache=True, fastmath=_FP, error_model="numpy")
def _sub_nr(a, b):
    """a − b, compiled without `reassoc`, so that a reduction Σ (e_j − [x_j = m]) is never split
    into Σ e_j − Σ [x_j = m] (which would put the 1.0 of the maximum back into the sum)."""
    return a - b


# The loops below are written branch-free (the indicator [x_j = m] as a number) so that LLVM
# vectorizes them; a conditional inside a reduction would keep them scalar.
#
# Prefetching: while one row is summed (compute-bound: one exp per element), the same block of
# the *next* row (`xn`, and its gradient row `gn`) is prefetched, so that the next row's max pass
# reads from cache instead of waiting for memory (prange hands each thread a contiguous range
# of rows, so the next row is almost always the same thread's).


@njit(**_JIT, inline="always")
def _prefetch_block(xn, gn, b0, b1, want_grad):
    for j in range(b0, b1, 16):  # one 64-byte line holds 16 float32 (8 float64: every other)
        _prefetch_read(xn, j)
    if want_grad:
        for j in range(b0, b1, 16):
            _prefetch_write(gn, j)
    if xn.itemsize == 8:
        for j in range(b0 + 8, b1, 16):
            _prefetch_read(xn, j)
        if want_grad:
            for j in range(b0 + 8, b1, 16):
                _prefetch_write(gn, j)


@njit(**_JIT, inline="always")
def _block_exp_sum(xr, b0, b1, m, count):
    """One block xr[b0:b1]: (Σ (e_j − [x_j = m]), Σ [x_j = m]) when ``count``, else (Σ e_j, 0),
    with e_j = exp(x_j − m) summed in the block's dtype. Inlined, with unsigned indices: a
    call per block on a slice cost about as much as the block's exponentials (0.18 against
    0.10 ns per element in cache)."""
    t = _like(0.0, m)
    k = _like(0.0, m)
    if count:
        for j in range(np.uint64(b0), np.uint64(b1)):
            v = xr[j]
            top = _like(v == m, m)
            t += _sub_nr(_vexp(v - m), top)  # the maxima contribute exp(0) − 1 = 0
            k += top
    else:
        for j in range(np.uint64(b0), np.uint64(b1)):
            t += _vexp(xr[j] - m)
    return t, k


@njit(**_JIT, inline="always")
def _block_exp_store_sum(xr, b0, b1, m, count, out):
    """:func:`_block_exp_sum`, also storing e_j into ``out[j]`` (``out`` must not overlap
    ``xr``: LLVM keeps a loop over overlapping arrays scalar)."""
    t = _like(0.0, m)
    k = _like(0.0, m)
    if count:
        for j in range(np.uint64(b0), np.uint64(b1)):
            v = xr[j]
            e = _vexp(v - m)
            out[j] = e
            top = _like(v == m, m)
            t += _sub_nr(e, top)
            k += top
    else:
        for j in range(np.uint64(b0), np.uint64(b1)):
            e = _vexp(xr[j] - m)
            out[j] = e
            t += e
    return t, k


@njit(**_JIT)
def _exp_sum(xr, m, lo, hi, xn):
    """(S, S − 1) for one row with a finite max m (``lo``, ``hi`` from :func:`_row_max_span`)."""
    n = xr.shape[0]
    if n <= _SHORT:  # one block, no prefetching
        t, k = _block_exp_sum(xr, 0, n, m, True)
        return np.float64(k) + np.float64(t), _d_plus(np.float64(k), 1.0, np.float64(t))
    s = 0.0
    cnt = 0.0
    b = 0
    for b0 in range(0, n, _BLK):
        b1 = min(b0 + _BLK, n)
        _prefetch_block(xn, xn, b0, b1, False)
        t, k = _block_exp_sum(xr, b0, b1, m, lo <= b <= hi)
        s += t
        cnt += k
        b += 1
    return cnt + s, _d_plus(cnt, 1.0, s)


@njit(**_JIT)
def _exp_store_sum(xr, m, lo, hi, out, xn, gn):
    """Like :func:`_exp_sum`, also storing exp(x_j − m) into ``out``."""
    n = xr.shape[0]
    if n <= _SHORT:
        t, k = _block_exp_store_sum(xr, 0, n, m, True, out)
        return np.float64(k) + np.float64(t), _d_plus(np.float64(k), 1.0, np.float64(t))
    s = 0.0
    cnt = 0.0
    b = 0
    for b0 in range(0, n, _BLK):
        b1 = min(b0 + _BLK, n)
        _prefetch_block(xn, gn, b0, b1, True)
        t, k = _block_exp_store_sum(xr, b0, b1, m, lo <= b <= hi, out)
        s += t
        cnt += k
        b += 1
    return cnt + s, _d_plus(cnt, 1.0, s)


@njit(**_JIT_NR)
def _scale(out, a):
    for j in range(out.shape[0]):
        out[j] = out[j] * a


@njit(**_JIT_NR)
def _scale_shift(out, a, b):
    for j in range(out.shape[0]):
        out[j] = out[j] * a - b


@njit(**_JIT_NR)
def _scale_shift_w(out, a, b, w):
    # out = a*out - b*w, w float64 (C,) class weights
    for j in range(out.shape[0]):
        out[j] = out[j] * a - _like(b * w[j], a)


@njit(**_JIT)
def _gap_sum(xr, m):
    """Σ_j (m − x_j) in float64 (each term ≥ 0; +inf for a −inf logit)."""
    s = 0.0
    mm = np.float64(m)
    for j in range(xr.shape[0]):
        s += mm - np.float64(xr[j])
    return s


@njit(**_JIT)
def _gap_sum_w(xr, m, w):
    """Σ_{w_j ≠ 0} w_j (m − x_j) in float64 (a zero weight times a −inf logit is 0)."""
    s = 0.0
    mm = np.float64(m)
    for j in range(xr.shape[0]):
        wj = w[j]
        s += wj * (mm - np.float64(xr[j])) if wj != 0.0 else 0.0
    return s


@njit(**_JIT_NR)
def _fill(out, v):
    for j in range(out.shape[0]):
        out[j] = v


@njit(**_JIT_NR)
def _finite(m):
    return m > -np.inf and m < np.inf


# Non-finite logits. The max pass uses llvm.maximum, which propagates NaN, so a row's max is NaN
# if the row holds a NaN, else +inf if it holds a +inf, else −inf for an all −inf row (and finite
# otherwise): the vector loops never test for non-finite values. A NaN or +inf max sends the row
# to a NaN fill in the per-row scalar code (value and gradient row); only an all −inf row (no
# distribution) keeps a meaning of its own.
@njit(**_JIT_NR)
def _bad_max(m):
    """True for a NaN or +inf row max: the row has a NaN or a +inf logit."""
    return m != m or m == np.inf


@njit(**_JIT)
def _count_bad(yr, top):
    """How many labels of a row lie outside ``[0, top]`` (nan counts as inside): the dense
    kernels' label-range check, one pass over a row in cache. A count is a sum, which vectorizes
    (a select-based min/max reduction does not without `nnan`)."""
    nbad = 0.0
    for j in range(yr.shape[0]):
        yv = np.float64(yr[j])
        nbad += _where((yv < 0.0) | (yv > top), 1.0, 0.0)
    return nbad
