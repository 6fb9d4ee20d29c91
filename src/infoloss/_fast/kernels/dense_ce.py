"""The dense-label softmax cross-entropy kernel and its NumPy wrapper."""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._launch import _ONE, _check2d, _grad_buffer, _gs, _launch, _ro, _rows_view, _zero_unscaled
from ._rows import (
    _BLK,
    _SHORT,
    _bad_max,
    _count_bad,
    _exp_store_sum,
    _exp_sum,
    _fill,
    _finite,
    _row_max_span,
)
from ._tunables import _JIT, _JIT_NR, _PJIT
from ._vecmath import _like, _prefetch_read, _where

_F64_MAX = np.finfo(np.float64).max  # a label above it is +inf


@njit(**_JIT, inline="always")
def _ts_block32(xr, yr, b0, b1, m, smooth):
    """One block of :func:`_target_stats32`, summed in float32 (16 lanes of a zmm register):
    (Σ y_j, Σ_{y_j ≠ 0} y_j (m − x_j), Σ (m − x_j) when ``smooth`` else 0, the number of
    labels that are negative or +inf). Unsigned indices, as in ``_rows``. Written in the row's
    dtype (only float32 rows call it; a float64 row also compiles it, untaken)."""
    zero = _like(0.0, m)
    one = _like(1.0, m)
    inf = _like(np.inf, m)
    sy = zero
    gy = zero
    sd = zero
    nb = zero
    if smooth:
        for j in range(np.uint64(b0), np.uint64(b1)):
            yv = yr[j]
            d = m - xr[j]
            nb += _where((yv < zero) | (yv == inf), one, zero)
            sy += yv
            gy += _where(yv != zero, yv * d, zero)
            sd += d
    else:
        for j in range(np.uint64(b0), np.uint64(b1)):
            yv = yr[j]
            nb += _where((yv < zero) | (yv == inf), one, zero)
            sy += yv
            gy += _where(yv != zero, yv * (m - xr[j]), zero)
    return sy, gy, sd, nb


@njit(**_JIT)
def _target_stats32(xr, yr, m, onem, epsc, yn):
    """:func:`_target_stats` for float32 rows without class weights: the sums of the labels,
    of y_j (m − x_j) and of (m − x_j) are formed per block of _BLK in float32 (every term is
    ≥ 0 for valid labels: no cancellation inside a block) and added in float64 across blocks;
    mass = (1−ε) Σ y + ε and gap = (1−ε) Σ y (m − x) + (ε/C) Σ (m − x)."""
    n = xr.shape[0]
    smooth = epsc != 0.0
    sy = 0.0
    gy = 0.0
    sd = 0.0
    nbad = 0.0
    for b0 in range(0, n, _BLK):
        b1 = min(b0 + _BLK, n)
        for j in range(b0, b1, 16):  # the next row's labels: one 64-byte line is 16 float32
            _prefetch_read(yn, j)
        a, g, d, k = _ts_block32(xr, yr, b0, b1, m, smooth)
        sy += np.float64(a)
        gy += np.float64(g)
        sd += np.float64(d)
        nbad += np.float64(k)
    mass = onem * sy + epsc * n
    gap = (onem * gy if onem != 0.0 else 0.0) + (epsc * sd if smooth else 0.0)
    return mass, gap, nbad


@njit(**_JIT)
def _target_stats(xr, yr, m, onem, epsc, cw, has_cw, yn):
    """mass = Σ_j wt_j and gap = Σ_{wt_j ≠ 0} wt_j (m − x_j), wt_j = cw_j ((1−ε) y_j + ε/C), and
    the number of labels that are negative or +inf, for the caller's range check (counted in
    the same loop, so that the check costs no pass of its own). Float32 rows without class
    weights take :func:`_target_stats32`, which also prefetches ``yn``, the next row's labels."""
    if xr.itemsize == 4 and not has_cw and xr.shape[0] > _SHORT:
        return _target_stats32(xr, yr, m, onem, epsc, yn)
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
        yn = yf[i1 * yrs : i1 * yrs + c]
        if _finite(m):
            if want_grad:
                s, dm = _exp_store_sum(xr, m, lo, hi, grow, xn, g[i1])
            else:
                s, dm = _exp_sum(xr, m, lo, hi, xn)
            logs = math.log1p(dm)
            lse = np.float64(m) + logs
            mass, gap, nbad = _target_stats(xr, yr, m, onem, epsc, cw, has_cw, yn)
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
            mass, gap, nbad = _target_stats(xr, yr, _like(0.0, m), onem, epsc, cw, has_cw, yn)
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
