"""The dense-label softmax cross-entropy kernel and its NumPy wrapper."""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from . import _tunables
from ._launch import (
    _ONE,
    _check2d,
    _grad_buffer,
    _gs,
    _launch,
    _ro,
    _rows_view,
    _scratch,
    _zero_unscaled,
)
from ._rows import (
    _BLK,
    _bad_max,
    _block_exp_store_sum,
    _count_bad,
    _d_plus,
    _exp_store_sum,
    _exp_sum,
    _fill,
    _finite,
    _prefetch_block,
    _row_max_span,
)
from ._tunables import _JIT, _JIT_NR, _PJIT
from ._vecmath import _fence, _like, _stream_copy, _where

_F64_MAX = np.finfo(np.float64).max  # a label above it is +inf


@njit(**_JIT)
def _target_stats(xr, yr, m, onem, epsc, cw, has_cw):
    """mass = Σ_j wt_j and gap = Σ_{wt_j ≠ 0} wt_j (m − x_j), wt_j = cw_j ((1−ε) y_j + ε/C), and
    the number of labels that are negative or +inf, for the caller's range check (counted in
    the same loop, so that the check costs no pass of its own)."""
    mass = 0.0
    gap = 0.0
    nbad = 0.0
    mm = np.float64(m)
    if has_cw:
        for j in range(xr.shape[0]):
            yv = np.float64(yr[j])
            nbad += _where((yv < 0.0) | (yv > _F64_MAX), 1.0, 0.0)
            wt = (onem * yv + epsc) * cw[j]
            mass += wt
            gap += _where(wt != 0.0, wt * (mm - np.float64(xr[j])), 0.0)
    else:
        for j in range(xr.shape[0]):
            yv = np.float64(yr[j])
            nbad += _where((yv < 0.0) | (yv > _F64_MAX), 1.0, 0.0)
            wt = onem * yv + epsc
            mass += wt
            gap += _where(wt != 0.0, wt * (mm - np.float64(xr[j])), 0.0)
    return mass, gap, nbad


@njit(**_JIT_NR)  # no `reassoc`: keep the order of the terms
def _dense_grad(grow, yr, f, rowf, inv, dm, onem, epsc, cw, has_cw):
    """g_j = f (rowf q_j − wt_j) = f ((rowf e_j − wt_j) − (S − 1) wt_j) / S, in float64 so that
    q_j − t_j ≈ 0 for a confident one-hot target keeps its relative accuracy."""
    for j in range(grow.shape[0]):
        wt = onem * np.float64(yr[j]) + epsc
        if has_cw:
            wt *= cw[j]
        grow[j] = f * (((rowf * np.float64(grow[j]) - wt) - dm * wt) * inv)


@njit(**_PJIT)
def _k_dense_ce(xf, rs, yf, yrs, n, c, cw, has_cw, sw, has_sw, eps, z, want_grad, gs, loss, g, yb):
    onem = 1.0 - eps
    epsc = eps / c
    for i in prange(n):
        xr = xf[i * rs : i * rs + c]
        yr = yf[i * yrs : i * yrs + c]
        grow = g[i] if want_grad else g[0]
        swi = sw[i] if has_sw else 1.0
        m, lo, hi = _row_max_span(xr)
        i1 = min(np.int64(i) + 1, n - 1)
        xn = xf[i1 * rs : i1 * rs + c]
        if _finite(m):
            if want_grad:
                s, dm = _exp_store_sum(xr, m, lo, hi, grow, xn, g[i1])
            else:
                s, dm = _exp_sum(xr, m, lo, hi, xn)
            logs = math.log1p(dm)
            lse = np.float64(m) + logs
            mass, gap, nbad = _target_stats(xr, yr, m, onem, epsc, cw, has_cw)
            ce = mass * logs + gap
            inv = 1.0 / s
        elif _bad_max(m):  # a nan or +inf logit: nan loss and gradient row (below)
            lse = 0.0
            mass = gap = ce = inv = dm = np.nan
            nbad = _count_bad(yr, _F64_MAX)
            if want_grad:
                _fill(grow, _like(np.nan, m))
        else:  # no distribution (all −inf): lse = 0
            lse = 0.0
            mass, gap, nbad = _target_stats(xr, yr, _like(0.0, m), onem, epsc, cw, has_cw)
            ce = gap
            if want_grad:
                _fill(grow, _like(0.0, m))  # the exponentials exp(−inf − 0)
            inv = 1.0
            dm = 0.0
        loss[i] = swi * (ce + z * lse * lse)
        yb[i] = nbad  # the caller checks the labels' range
        if want_grad:  # (a nan row: every entry f (nan ...) = nan)
            f = swi * gs
            _dense_grad(grow, yr, f, mass + 2.0 * z * lse, inv, dm, onem, epsc, cw, has_cw)


@njit(**_JIT_NR)  # no `reassoc`: keep the order of the terms
def _dense_grad_emit(buf, yr, prow, b0, b1, f, rowf, inv, dm, onem, epsc, cw, has_cw):
    """Block [b0, b1) of :func:`_dense_grad` from the exponentials in the scratch row ``buf``
    (overwritten by the gradient), copied to ``prow`` with streaming stores."""
    for j in range(np.uint64(b0), np.uint64(b1)):
        wt = onem * np.float64(yr[j]) + epsc
        if has_cw:
            wt *= cw[j]
        buf[j] = f * (((rowf * np.float64(buf[j]) - wt) - dm * wt) * inv)
    _stream_copy(buf[b0:b1], prow[b0:b1])


@njit(**_JIT)
def _dense_exp_emit(
    xr, m, lo, hi, buf, xn, yn, emit, yp, prow, pf, prowf, pinv, pdm, onem, epsc, cw, has_cw
):
    """(S, S − 1) of row ``xr``, its exponentials stored into the scratch row ``buf``; block by
    block, the pending row's gradient is first written out from ``buf`` (when ``emit``), and the
    next row's logits and targets are prefetched."""
    n = xr.shape[0]
    s = 0.0
    cnt = 0.0
    blk = 0
    for b0 in range(0, n, _BLK):
        b1 = min(b0 + _BLK, n)
        _prefetch_block(xn, xn, b0, b1, False)
        _prefetch_block(yn, yn, b0, b1, False)
        if emit:
            _dense_grad_emit(buf, yp, prow, b0, b1, pf, prowf, pinv, pdm, onem, epsc, cw, has_cw)
        t, k = _block_exp_store_sum(xr, b0, b1, m, lo <= blk <= hi, buf)
        s += t
        cnt += k
        blk += 1
    return cnt + s, _d_plus(cnt, 1.0, s)


@njit(**_PJIT)
def _k_dense_ce_stream(
    xf, rs, yf, yrs, n, c, cw, has_cw, sw, has_sw, eps, z, gs, loss, g, yb, scratch
):
    """:func:`_k_dense_ce` with the gradient, for large gradients: the sparse kernel's pipeline
    (one scratch row per chunk of rows; row i−1's gradient is written with streaming stores
    during row i's exp pass, while row i+1 is prefetched)."""
    onem = 1.0 - eps
    epsc = eps / c
    nch = scratch.shape[0]
    per = (n + nch - 1) // nch
    for t in prange(nch):
        r0 = t * per
        r1 = min(n, r0 + per)
        buf = scratch[t]
        p = np.int64(-1)  # the pending row: g = pf (prowf q − wt), from buf
        pf = prowf = pinv = pdm = 0.0
        for i in range(r0, r1):
            xr = xf[i * rs : i * rs + c]
            yr = yf[i * yrs : i * yrs + c]
            q = max(p, 0)
            yp = yf[q * yrs : q * yrs + c]
            prow = g[q]
            emit = p >= 0
            swi = sw[i] if has_sw else 1.0
            m, lo, hi = _row_max_span(xr)
            if _finite(m):
                i1 = min(i + 1, r1 - 1)
                xn = xf[i1 * rs : i1 * rs + c]
                yn = yf[i1 * yrs : i1 * yrs + c]
                s, dm = _dense_exp_emit(
                    xr,
                    m,
                    lo,
                    hi,
                    buf,
                    xn,
                    yn,
                    emit,
                    yp,
                    prow,
                    pf,
                    prowf,
                    pinv,
                    pdm,
                    onem,
                    epsc,
                    cw,
                    has_cw,
                )
                logs = math.log1p(dm)
                lse = np.float64(m) + logs
                mass, gap, nbad = _target_stats(xr, yr, m, onem, epsc, cw, has_cw)
                ce = mass * logs + gap
                inv = 1.0 / s
            else:
                if emit:
                    _dense_grad_emit(
                        buf, yp, prow, 0, c, pf, prowf, pinv, pdm, onem, epsc, cw, has_cw
                    )
                if _bad_max(m):  # a nan or +inf logit: nan loss and gradient row
                    lse = 0.0
                    mass = gap = ce = inv = dm = np.nan
                    nbad = _count_bad(yr, _F64_MAX)
                    _fill(buf[:c], _like(np.nan, m))
                else:  # no distribution (all −inf): lse = 0
                    lse = 0.0
                    mass, gap, nbad = _target_stats(xr, yr, _like(0.0, m), onem, epsc, cw, has_cw)
                    ce = gap
                    _fill(buf[:c], _like(0.0, m))  # the exponentials exp(−inf − 0)
                    inv = 1.0
                    dm = 0.0
            loss[i] = swi * (ce + z * lse * lse)
            yb[i] = nbad  # the caller checks the labels' range
            pf, prowf, pinv, pdm = swi * gs, mass + 2.0 * z * lse, inv, dm
            p = i
        if p >= 0:
            yp = yf[p * yrs : p * yrs + c]
            _dense_grad_emit(buf, yp, g[p], 0, c, pf, prowf, pinv, pdm, onem, epsc, cw, has_cw)
        _fence()  # the streaming stores are complete before the kernel returns


def softmax_ce(
    x: np.ndarray,
    y: np.ndarray,
    class_weights: np.ndarray | None,
    sample_weights: np.ndarray | None,
    label_smoothing: float,
    z_loss: float,
    grad_scale: float | None,
    out: np.ndarray | None = None,
    bad_labels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Softmax cross-entropy with dense targets ``y`` (N, C) per row, and its gradient.

    Same conventions as :func:`sparse_softmax_ce`, except that ``out`` must not overlap ``x``
    or ``y`` (the targets are read again after the exponentials are stored). ``bad_labels``,
    a float64 ``(N,)`` array, receives each row's number of negative or +inf targets (nan
    passes), counted in the same sweep, so that the caller checks the labels' range at no
    extra pass.
    """
    _check2d(x)
    n, c = x.shape
    loss = np.empty(n, np.float64)
    want_grad = grad_scale is not None
    g = _grad_buffer(x, want_grad, out)
    if n == 0 or c == 0:
        loss.fill(0.0)
        if bad_labels is not None:
            bad_labels[:] = 0.0
        return loss, (g if want_grad else None)
    yb = np.empty(n, np.float64) if bad_labels is None else bad_labels
    xf, rs = _rows_view(x)
    yf, yrs = _rows_view(np.asarray(y, dtype=x.dtype).reshape(n, c))
    has_cw = class_weights is not None
    cw = _ro(np.ascontiguousarray(class_weights, dtype=np.float64).reshape(c)) if has_cw else _ONE
    has_sw = sample_weights is not None
    sw = _ro(np.ascontiguousarray(sample_weights, dtype=np.float64).reshape(n)) if has_sw else _ONE
    if want_grad and g.nbytes >= _tunables._STREAM_MIN_BYTES:
        scratch = _scratch((min(n, numba.get_num_threads()), -(-c // 16) * 16), x.dtype)
        _launch(
            _k_dense_ce_stream,
            n * c,
            xf,
            rs,
            yf,
            yrs,
            n,
            c,
            cw,
            has_cw,
            sw,
            has_sw,
            float(label_smoothing),
            float(z_loss),
            _gs(grad_scale),
            loss,
            g,
            yb,
            scratch,
        )
        return loss, _zero_unscaled(g, grad_scale)
    _launch(
        _k_dense_ce,
        n * c,
        xf,
        rs,
        yf,
        yrs,
        n,
        c,
        cw,
        has_cw,
        sw,
        has_sw,
        float(label_smoothing),
        float(z_loss),
        want_grad,
        _gs(grad_scale),
        loss,
        g,
        yb,
    )
    return loss, _zero_unscaled(g if want_grad else None, grad_scale)
