"""The sparse softmax cross-entropy kernels: per-row code, the streaming gradient pipeline,
short rows in transposed tiles, and their NumPy wrapper."""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from numba import njit, prange

from ...errors import InfolossError
from . import _tunables
from ._launch import (
    _ONE,
    _check2d,
    _grad_buffer,
    _gs,
    _launch,
    _pool_threads,
    _ro,
    _rows_view,
    _scratch,
    _zero_unscaled,
)
from ._rows import (
    _BLK,
    _SHORT,
    _bad_max,
    _block_exp_store_sum,
    _d_plus,
    _exp_store_sum,
    _exp_sum,
    _fill,
    _finite,
    _gap_sum,
    _gap_sum_w,
    _prefetch_block,
    _row_max_span,
    _scale,
    _scale_shift,
    _scale_shift_w,
    _sub_nr,
)
from ._tunables import _JIT, _JIT_NR, _PJIT
from ._vecmath import (
    _fence,
    _fmaximum,
    _like,
    _log1p_pos64,
    _stream_copy,
    _stream_scale,
    _vexp,
    _where,
)

# --------------------------------------------------------------------------- softmax CE


@njit(**_JIT_NR)
def _ce_terms(mf, s, dm, xy, ey, gap, coef, eps, c, sumcw, z, swi, gs):
    """One row's loss and gradient coefficients from its statistics.

    ``mf`` is the row max (float64) and ``s``, ``dm`` = S, S − 1 (see :func:`_exp_sum`); a row
    whose max is not finite passes ``mf = 0``, ``s = 1``, ``dm = 0`` (the generic path's
    lse = 0). ``xy`` is the label's logit, ``ey`` the label's stored exponential, ``gap`` the
    smoothing term Σ_j w_j (m − x_j). Returns ``(loss_i, a, b, gy)``: the gradient row is
    ``a e_j − b w_j`` except the label's entry ``gy − b w_y``.
    """
    logs = math.log1p(dm)
    lse = mf + logs
    ce = coef * ((mf - xy) + logs) if coef != 0.0 else 0.0
    if eps > 0.0:
        ce += (eps / c) * (sumcw * logs + gap)
    inv = 1.0 / s
    f = swi * gs
    a = f * (coef + eps * (sumcw / c) + 2.0 * z * lse) * inv
    b = f * (eps / c)
    # label entry a e_y − b w_y − f coef, with e_y − S = (e_y − 1) − (S − 1) kept exact
    gy = f * (coef * _d_plus(ey, 1.0, -dm) + (eps * (sumcw / c) + 2.0 * z * lse) * ey) * inv
    return swi * (ce + z * lse * lse), a, b, gy


@njit(**_JIT_NR)
def _gap(xr, m, eps, cw, has_cw):
    """The label-smoothing term Σ_j w_j (m − x_j) (0 without smoothing)."""
    if eps > 0.0:
        return _gap_sum_w(xr, m, cw) if has_cw else _gap_sum(xr, m)
    return 0.0


@njit(**_JIT_NR)
def _sparse_row(i, n, xf, rs, c, opts, want_grad, gs, loss, g):
    """Row ``i`` of :func:`_k_sparse_ce`: ``loss[i]`` and (when wanted) the gradient row,
    stored in place of the exponentials. Every read of the row precedes the first store, so the
    gradient row may be the logits' row itself (``out=x``)."""
    lab, cw, has_cw, sumcw, sw, has_sw, ignore, has_ignore, eps, z = opts
    y = lab[i]
    grow = g[i] if want_grad else g[0]
    if has_ignore and y == ignore:
        loss[i] = 0.0
        if want_grad:
            _fill(grow, _like(0.0, xf[0]))
        return
    xr = xf[i * rs : i * rs + c]
    cwy = cw[y] if has_cw else 1.0
    m, lo, hi = _row_max_span(xr)
    if _bad_max(m):  # a nan or +inf logit: nan loss and gradient, whatever the options
        loss[i] = np.nan
        if want_grad:
            _fill(grow, _like(np.nan, m))
        return
    i1 = min(np.int64(i) + 1, n - 1)
    xn = xf[i1 * rs : i1 * rs + c]
    fin = _finite(m)
    mf = np.float64(m) if fin else 0.0  # no distribution (all -inf): generic lse = 0
    xy = np.float64(xr[y])
    gap = _gap(xr, _like(mf, m), eps, cw, has_cw)
    if fin:
        if want_grad:
            s, dm = _exp_store_sum(xr, m, lo, hi, grow, xn, g[i1])
        else:
            s, dm = _exp_sum(xr, m, lo, hi, xn)
    else:
        s, dm = 1.0, 0.0
        if want_grad:
            _fill(grow, _like(0.0, m))  # the exponentials exp(−inf − 0)
    li, a, b, gy = _ce_terms(
        mf,
        s,
        dm,
        xy,
        np.float64(grow[y]) if want_grad else 0.0,
        gap,
        (1.0 - eps) * cwy,  # weight of the label's own term
        eps,
        c,
        sumcw,
        z,
        sw[i] if has_sw else 1.0,
        gs,
    )
    loss[i] = li
    if want_grad:
        mode = (2 if has_cw else 1) if eps > 0.0 else 0
        _grad_from_exp(grow, _like(a, m), b, mode, cw, y, _like(gy - b * cwy, m))


@njit(**_JIT_NR)
def _grad_from_exp(e, a, b, mode, cw, y, gyv):
    """Turn a block of stored exponentials ``e`` into the gradient, in place: ``a e_j``
    (mode 0), ``a e_j − b`` (1), ``a e_j − b w_j`` (2, ``cw`` = this block's weights) or the
    constant ``a`` (3: 0 for an ignored row, nan for a row with a nan or +inf logit); then the
    label's entry ``gyv`` at ``y`` when ``0 ≤ y < len(e)``."""
    if mode == 0:
        _scale(e, a)
    elif mode == 1:
        _scale_shift(e, a, _like(b, a))
    elif mode == 2:
        _scale_shift_w(e, a, b, cw)
    else:
        _fill(e, a)
    if 0 <= y < e.shape[0]:
        e[y] = gyv


@njit(**_JIT_NR)
def _emit_block(buf, prow, b0, b1, a, b, mode, cw, y, gyv, stream):
    """Block [b0, b1) of a finished row: its exponentials (``buf``, scratch) become the
    gradient (:func:`_grad_from_exp`), which is copied to the row's output ``prow``, with
    streaming stores when ``stream``."""
    blk = buf[b0:b1]
    dst = prow[b0:b1]
    if stream and mode == 0:  # the common case in one pass: dst = a·e, then the label's entry
        yb = y - b0
        if 0 <= yb < b1 - b0:
            _stream_scale(blk[:yb], dst[:yb], a)
            dst[yb] = gyv
            _stream_scale(blk[yb + 1 :], dst[yb + 1 :], a)
        else:
            _stream_scale(blk, dst, a)
        return
    _grad_from_exp(blk, a, b, mode, cw[b0:b1] if mode == 2 else cw, y - b0, gyv)
    if stream:
        _stream_copy(blk, dst)
    else:
        for j in range(b1 - b0):
            dst[j] = blk[j]


@njit(**_JIT)
def _exp_store_sum_emit(xr, m, lo, hi, buf, xn, emit, prow, a, b, mode, cw, y, gyv, stream):
    """:func:`_exp_store_sum` into ``buf``, which (when ``emit``) still holds the previous row's
    exponentials: block by block, those are first written out as that row's gradient
    (:func:`_emit_block` into ``prow``), then replaced by this row's. The output's stores are
    thus spread over this row's exp pass, which is compute-bound, instead of coming in one
    burst, and one scratch row serves both rows."""
    n = xr.shape[0]
    s = 0.0
    cnt = 0.0
    blk = 0
    for b0 in range(0, n, _BLK):
        b1 = min(b0 + _BLK, n)
        _prefetch_block(xn, xn, b0, b1, False)
        if emit:
            _emit_block(buf, prow, b0, b1, a, b, mode, cw, y, gyv, stream)
        t, k = _block_exp_store_sum(xr, b0, b1, m, lo <= blk <= hi, buf)
        s += t
        cnt += k
        blk += 1
    return cnt + s, _d_plus(cnt, 1.0, s)


@njit(**_PJIT)
def _k_sparse_ce(xf, rs, n, c, opts, want_grad, gs, loss, g):
    for i in prange(n):
        _sparse_row(i, n, xf, rs, c, opts, want_grad, gs, loss, g)


# The gradient kernel. A row's gradient can only be written once its sum S is known, i.e. after
# the exp pass; writing it straight into the output costs 1.5× the output's size in memory
# traffic (each line is read before it is written) and comes in one burst per row, while the
# exp pass itself leaves the memory bus idle. So each thread works through a contiguous range of
# rows as a two-stage pipeline around one scratch row per thread (cache resident): during row i's
# exp pass, block by block, the scratch still holding row i−1's exponentials is turned into
# row i−1's gradient and copied to the output with streaming stores (no read of the
# destination), then overwritten by row i's exponentials. Row
# i−1's output may be row i−1 of the logits themselves (``out=x``): it is written only after
# that row has been read. Rows that are ignored or whose max is not finite flush the previous
# row at once.


@njit(**_PJIT)
def _k_sparse_ce_grad(xf, rs, n, c, opts, gs, loss, g, scratch, stream):
    lab, cw, has_cw, sumcw, sw, has_sw, ignore, has_ignore, eps, z = opts
    # scratch: (chunks, ≥ C) in the logits' dtype, one scratch row per chunk of rows
    nch = scratch.shape[0]
    per = (n + nch - 1) // nch
    mode = (2 if has_cw else 1) if eps > 0.0 else 0
    for t in prange(nch):
        r0 = t * per
        r1 = min(n, r0 + per)
        zero = _like(0.0, xf[0])
        # the previous row p's pending gradient: a e_j − b w_j (mode), label entry gyv at y
        p = np.int64(-1)
        pa = zero
        pb = 0.0
        pmode = 0
        py = np.int64(-1)
        pgy = zero
        for i in range(r0, r1):
            buf = scratch[t]  # row i's exponentials replace row p's, block by block
            prow = g[max(p, 0)]
            emit = p >= 0
            y = lab[i]
            xr = xf[i * rs : i * rs + c]
            if has_ignore and y == ignore:
                loss[i] = 0.0
                if emit:
                    _emit_block(buf, prow, 0, c, pa, pb, pmode, cw, py, pgy, stream)
                pa, pb, pmode, py, pgy = zero, 0.0, 3, np.int64(-1), zero
                p = i
                continue
            cwy = cw[y] if has_cw else 1.0
            m, lo, hi = _row_max_span(xr)
            if _finite(m):
                mf = np.float64(m)
                i1 = min(i + 1, r1 - 1)
                xn = xf[i1 * rs : i1 * rs + c]
                s, dm = _exp_store_sum_emit(
                    xr, m, lo, hi, buf, xn, emit, prow, pa, pb, pmode, cw, py, pgy, stream
                )
            else:  # a nan or +inf logit (nan row), or no distribution (all -inf: lse = 0)
                if emit:
                    _emit_block(buf, prow, 0, c, pa, pb, pmode, cw, py, pgy, stream)
                if _bad_max(m):  # pending: a fill (mode 3) with nan
                    loss[i] = np.nan
                    pa, pb, pmode, py, pgy = _like(np.nan, zero), 0.0, 3, np.int64(-1), zero
                    p = i
                    continue
                mf, s, dm = 0.0, 1.0, 0.0
                _fill(buf[:c], zero)  # the exponentials exp(−inf − 0)
            li, a, b, gy = _ce_terms(
                mf,
                s,
                dm,
                np.float64(xr[y]),
                np.float64(buf[y]),
                _gap(xr, _like(mf, m), eps, cw, has_cw),
                (1.0 - eps) * cwy,
                eps,
                c,
                sumcw,
                z,
                sw[i] if has_sw else 1.0,
                gs,
            )
            loss[i] = li
            pa, pb, pmode, py, pgy = _like(a, zero), b, mode, y, _like(gy - b * cwy, zero)
            p = i
        if p >= 0:
            _emit_block(scratch[t], g[p], 0, c, pa, pb, pmode, cw, py, pgy, stream)
        _fence()  # the streaming stores are complete before the kernel returns


# Short rows (C ≤ _SHORT): one row per loop iteration leaves the vector units idle (C = 10 is
# shorter than one unrolled vector iteration) and pays the per-row bookkeeping C-fold. Instead a
# tile of _TILE rows is transposed into a per-thread scratch (classes × rows) and every step —
# max, exp and sums, log1p, gradient — runs as a vector loop *across rows*. Rows whose max is not
# finite, and ignored rows, go through the row-by-row code (:func:`_sparse_row`).
_TILE = 64


@njit(**_PJIT)
def _k_sparse_ce_short(xf, rs, n, c, opts, want_grad, gs, loss, g, sx, sd):
    lab, cw, has_cw, sumcw, sw, has_sw, ignore, has_ignore, eps, z = opts
    # sx: (threads, 2C + 3, _TILE) in the logits' dtype: logits^T, exp^T (then gradient^T), and
    # the rows' max, Σ(e − [x = m]) and count of maxima; sd: (threads, 6, _TILE) float64:
    # S − 1, log S, gap, "row done elsewhere" flag, gradient scale a, shift b, label entry.
    ntiles = (n + _TILE - 1) // _TILE
    for t in prange(ntiles):
        tid = numba.get_thread_id()
        X = sx[tid]
        D = sd[tid]
        r0 = t * _TILE
        nr = min(_TILE, n - r0)
        for r in range(nr):
            base = (r0 + r) * rs
            for j in range(c):
                X[j, r] = xf[base + j]
        M = X[2 * c]
        A = X[2 * c + 1]
        K = X[2 * c + 2]
        T0 = X[0]
        for r in range(nr):
            M[r] = T0[r]
        for j in range(1, c):
            tj = X[j]
            for r in range(nr):
                M[r] = _fmaximum(M[r], tj[r])
        z0 = _like(0.0, T0[0])
        for r in range(nr):
            A[r] = z0
            K[r] = z0
        for j in range(c):
            tj = X[j]
            ej = X[c + j]
            for r in range(nr):
                v = tj[r]
                mr = M[r]
                e = _vexp(v - mr)
                ej[r] = e
                top = _like(v == mr, mr)
                A[r] += _sub_nr(e, top)
                K[r] += top
        DM = D[0]
        LG = D[1]
        GP = D[2]
        for r in range(nr):
            DM[r] = _d_plus(np.float64(K[r]), 1.0, np.float64(A[r]))
        for r in range(nr):
            LG[r] = _log1p_pos64(_where(DM[r] >= 0.0, DM[r], 0.0))  # (non-finite rows: redone)
        if eps > 0.0:
            for r in range(nr):
                GP[r] = 0.0
            for j in range(c):
                tj = X[j]
                wj = cw[j] if has_cw else 1.0
                for r in range(nr):
                    gv = wj * (np.float64(M[r]) - np.float64(tj[r]))
                    GP[r] += _where(wj != 0.0, gv, 0.0)
        for r in range(nr):
            i = r0 + r
            y = lab[i]
            m = M[r]
            if (has_ignore and y == ignore) or not _finite(m):
                _sparse_row(i, n, xf, rs, c, opts, want_grad, gs, loss, g)
                D[3, r] = 1.0
                continue
            D[3, r] = 0.0
            swi = sw[i] if has_sw else 1.0
            cwy = cw[y] if has_cw else 1.0
            coef = (1.0 - eps) * cwy
            xy = np.float64(X[y, r])
            dm = DM[r]
            logs = LG[r]
            lse = np.float64(m) + logs
            ce = coef * ((np.float64(m) - xy) + logs) if coef != 0.0 else 0.0
            if eps > 0.0:
                ce += (eps / c) * (sumcw * logs + GP[r])
            loss[i] = swi * (ce + z * lse * lse)
            if want_grad:
                inv = 1.0 / (np.float64(K[r]) + np.float64(A[r]))
                f = swi * gs
                b = f * (eps / c)
                ey = np.float64(X[c + y, r])
                D[4, r] = f * (coef + eps * (sumcw / c) + 2.0 * z * lse) * inv
                D[5, r] = b
                gy = f * (coef * _d_plus(ey, 1.0, -dm) + (eps * (sumcw / c) + 2.0 * z * lse) * ey)
                A[r] = _like(gy * inv - b * cwy, m)  # the label's entry (A is free now)
        if want_grad:
            for j in range(c):
                ej = X[c + j]
                if eps > 0.0:
                    wj = cw[j] if has_cw else 1.0
                    for r in range(nr):
                        ej[r] = ej[r] * _like(D[4, r], z0) - _like(D[5, r] * wj, z0)
                else:
                    for r in range(nr):
                        ej[r] = ej[r] * _like(D[4, r], z0)
            for r in range(nr):
                if D[3, r] != 0.0:
                    continue
                i = r0 + r
                grow = g[i]
                for j in range(c):
                    grow[j] = X[c + j, r]
                grow[lab[i]] = A[r]


def _private_labels(labels: Any, n: int, c: int, ignore_index: int | None) -> np.ndarray:
    """A private, read-only int64 copy of ``labels`` (N,), checked: every entry is in [0, C) or
    ``ignore_index``. The sparse kernels index with it and do not check bounds.

    The caller validated its own array, but another thread may change that array during the
    call; the kernels only ever see this copy, checked after it was taken, so such a race
    gives an :class:`~infoloss.InfolossError` (or the other value for a changed row), never an
    out-of-bounds access. Costs about 3 µs at N = 4096 (two reductions; three passes when
    ``ignore_index`` lies outside [0, C)).
    """
    lab = np.array(labels, dtype=np.int64).reshape(n)  # np.array copies
    if n == 0:
        return _ro(lab)
    if ignore_index is None or 0 <= ignore_index < c:
        ok = bool(lab.min() >= 0 and lab.max() < c)
    else:  # out of range (as unsigned: negatives too) only where the label is ignore_index
        out_of_range = np.count_nonzero(lab.view(np.uint64) >= c)
        ok = out_of_range == np.count_nonzero(lab == ignore_index)
    if not ok:
        bad = (lab < 0) | (lab >= c)
        if ignore_index is not None:
            bad &= lab != ignore_index
        i = int(np.flatnonzero(bad)[0])
        also = "" if ignore_index is None else f" or ignore_index ({ignore_index})"
        raise InfolossError(
            f"`labels` must hold class indices in [0, {c}){also}; found {lab[i]} at position "
            f"({i},) when the kernel read them (were they changed during the call?)"
        )
    return _ro(lab)


def sparse_softmax_ce(
    x: np.ndarray,
    labels: np.ndarray,
    class_weights: np.ndarray | None,
    sample_weights: np.ndarray | None,
    ignore_index: int | None,
    label_smoothing: float,
    z_loss: float,
    grad_scale: float | None,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Sparse softmax cross-entropy per row (``loss_i`` of docs/semantics.md) and its gradient.

    ``x`` (N, C) float32/float64; ``labels`` (N,) integers in [0, C) or ``ignore_index``
    (validated by the caller; the kernels use a private copy, checked again: see
    :func:`_private_labels`); ``class_weights`` (C,), ``sample_weights`` (N,) float64 or None.
    Returns ``(loss_rows float64 (N,), grad (N, C) x.dtype or None)``; the gradient is
    ``d(Σ_i loss_i)/dx · grad_scale``. Ignored rows: loss 0 and zero gradient. ``out``, a
    C-contiguous (N, C) array of ``x.dtype``, receives the gradient; it may be ``x`` itself
    (the logits are then overwritten by their gradient, with no N × C allocation).
    """
    _check2d(x)
    n, c = x.shape
    loss = np.empty(n, np.float64)
    want_grad = grad_scale is not None
    g = _grad_buffer(x, want_grad, out)
    in_place = False
    if want_grad and out is not None and np.may_share_memory(out, x):
        in_place = (
            out.__array_interface__["data"][0] == x.__array_interface__["data"][0]
            and out.strides == x.strides
        )
        if not in_place:
            raise ValueError("`out` overlaps `x` without being the same array")
    if n == 0 or c == 0:
        loss.fill(0.0)
        return loss, (g if want_grad else None)
    xf, rs = _rows_view(x)
    lab = _private_labels(labels, n, c, ignore_index)
    has_cw = class_weights is not None
    cw = _ro(np.ascontiguousarray(class_weights, dtype=np.float64).reshape(c)) if has_cw else _ONE
    sumcw = float(np.sum(cw)) if has_cw else float(c)
    has_sw = sample_weights is not None
    sw = _ro(np.ascontiguousarray(sample_weights, dtype=np.float64).reshape(n)) if has_sw else _ONE
    # the row options, one tuple for every sparse kernel (unpacked inside)
    opts = (
        lab,
        cw,
        has_cw,
        sumcw,
        sw,
        has_sw,
        0 if ignore_index is None else int(ignore_index),
        ignore_index is not None,
        float(label_smoothing),
        float(z_loss),
    )
    gs = _gs(grad_scale)
    stream = want_grad and g.nbytes >= _tunables._STREAM_MIN_BYTES
    if c > _SHORT and (stream or in_place):  # (in cache, a direct store is faster)
        chunks = min(n, 1 if n * c < _tunables._PARALLEL_MIN_ELEMENTS else numba.get_num_threads())
        scratch = _scratch((chunks, -(-c // 16) * 16), x.dtype)  # rows on cache lines too
        _launch(_k_sparse_ce_grad, n * c, xf, rs, n, c, opts, gs, loss, g, scratch, stream)
    elif c <= _SHORT:  # short rows: tiles vectorized across rows
        threads = _pool_threads()
        sx = _scratch((threads, 2 * c + 3, _TILE), x.dtype)
        sd = _scratch((threads, 6, _TILE), np.float64)
        _launch(_k_sparse_ce_short, n * c, xf, rs, n, c, opts, want_grad, gs, loss, g, sx, sd)
    else:
        _launch(_k_sparse_ce, n * c, xf, rs, n, c, opts, want_grad, gs, loss, g)
    return loss, _zero_unscaled(g if want_grad else None, grad_scale)
