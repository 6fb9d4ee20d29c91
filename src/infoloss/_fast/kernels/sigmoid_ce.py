"""The sigmoid cross-entropy kernel and its NumPy wrapper."""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from ._launch import (
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
from ._rows import _BLK, _count_bad
from ._tunables import _JIT, _JIT_NR, _PJIT
from ._vecmath import _like, _vexp_nan, _vlog1p_unit, _where

# --------------------------------------------------------------------------- sigmoid CE


@njit(**_JIT_NR)
def _sig_elem(x, yv, pwj, o, e2):
    """(loss, dloss/dx) of one element, unweighted, in the dtype of x (branch-free)."""
    z0 = _like(0.0, x)
    one = _like(1.0, x)
    yp = yv * o + e2
    a = pwj * yp  # coefficient of softplus(-x)
    b = one - yp  # coefficient of softplus(x)
    pos = x > z0
    t = _vexp_nan(_where(pos, z0 - x, x))  # exp(-|x|)
    l1p = _vlog1p_unit(t)
    sp_pos = _where(pos, x, z0) + l1p  # softplus(x)
    sp_neg = _where(pos, z0, z0 - x) + l1p  # softplus(-x)
    # each product is 0 where its coefficient is 0 (also against an infinite softplus); where
    # both are 0 (y' = 1, pos_weight 0) a nan x must still give nan: l1p · 0 is 0 for every x
    # but nan (l1p = log1p(exp(−|x|)) is finite unless x is nan)
    loss = _where(a != z0, a * sp_neg, l1p * z0) + _where(b != z0, b * sp_pos, z0)
    # (a + b) σ(x) − a with σ = 1/(1+t) (x > 0) or t/(1+t): written as (b − a t)/(1+t) or
    # (b t − a)/(1+t), so the rounding of σ ≈ 1 does not leak into a small result
    num = _where(pos, b - a * t, b * t - a)
    return loss, num / (one + t)


@njit(**_JIT)
def _sig_block(xb, yb, pb, sb, per_elem, rw, fg, o, e2, want_grad, lb, gb):
    """One block of a row: weighted losses into ``lb`` and gradients into ``gb``.

    Weights: ``sb[j]`` (``per_elem``) or the row weight ``rw``; the gradient factor ``fg`` is
    ``gs`` (per element, times ``sb[j]``) or ``rw · gs``. Four loops, so that no branch sits
    inside a loop (each one vectorizes).
    """
    w = xb.shape[0]
    if per_elem:
        if want_grad:
            for j in range(w):
                le, g = _sig_elem(xb[j], yb[j], pb[j], o, e2)
                wj = sb[j]
                lb[j] = le * wj
                gb[j] = g * (wj * fg)
        else:
            for j in range(w):
                le, _ = _sig_elem(xb[j], yb[j], pb[j], o, e2)
                lb[j] = le * sb[j]
    elif want_grad:
        for j in range(w):
            le, g = _sig_elem(xb[j], yb[j], pb[j], o, e2)
            lb[j] = le * rw
            gb[j] = g * fg
    else:
        for j in range(w):
            le, _ = _sig_elem(xb[j], yb[j], pb[j], o, e2)
            lb[j] = le * rw


@njit(**_JIT)
def _sig_row(xr, yr, pw, swr, per_elem, rw, fg, o, e2, want_grad, elementwise, lrow, grow, tmp):
    """One row, block by block: the weighted losses stored into ``lrow`` (``elementwise``) or
    summed in float64 (returned). A reduction inside the element loop kept it from vectorizing,
    so losses go through an L1-resident scratch block ``tmp`` (the calling thread's) and are
    summed by a separate loop."""
    n = xr.shape[0]
    acc = 0.0
    for b0 in range(0, n, _BLK):
        b1 = min(b0 + _BLK, n)
        lb = lrow[b0:b1] if elementwise else tmp[: b1 - b0]
        gb = grow[b0:b1] if want_grad else grow
        sb = swr[b0:b1] if per_elem else swr
        _sig_block(xr[b0:b1], yr[b0:b1], pw[b0:b1], sb, per_elem, rw, fg, o, e2, want_grad, lb, gb)
        if not elementwise:
            for j in range(b1 - b0):
                acc += np.float64(tmp[j])
    return acc


@njit(**_PJIT)
def _k_sigmoid_ce(
    xf,
    rs,
    yf,
    yrs,
    n,
    c,
    pw,
    swf,
    srs,
    sw_per_row,
    eps,
    want_grad,
    gs,
    elementwise,
    lsum,
    lel,
    g,
    scratch,
    yb,
):
    # scratch: (threads, _BLK), one row per thread of this call (numba.get_thread_id()).
    # pw: (C,) and the weights in the dtype of x (pw ones when absent); per-element weights are
    # read from swf[i*srs : i*srs + C], or one weight per row swf[i*srs] when sw_per_row.
    o = _like(1.0 - eps, xf[0])
    e2 = _like(eps / 2.0, xf[0])
    for i in prange(n):
        xr = xf[i * rs : i * rs + c]
        yr = yf[i * yrs : i * yrs + c]
        if sw_per_row:
            swr = swf[i * srs : i * srs + 1]
            rw = swf[i * srs]
            fg = _like(np.float64(rw) * gs, rw)
        else:
            swr = swf[i * srs : i * srs + c]
            rw = _like(1.0, o)
            fg = _like(gs, o)
        lsum[i] = _sig_row(
            xr,
            yr,
            pw,
            swr,
            not sw_per_row,
            rw,
            fg,
            o,
            e2,
            want_grad,
            elementwise,
            lel[i] if elementwise else lel[0],
            g[i] if want_grad else g[0],
            scratch[numba.get_thread_id()],
        )
        yb[i] = _count_bad(yr, 1.0)  # the caller checks the labels' range (the row is in cache)


def sigmoid_ce(
    x: np.ndarray,
    y: np.ndarray,
    pos_weight: np.ndarray | None,
    sample_weights: np.ndarray | None,
    label_smoothing: float,
    grad_scale: float | None,
    elementwise: bool,
    out: np.ndarray | None = None,
    bad_labels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Sigmoid (binary) cross-entropy, elementwise, and its gradient.

    ``x``, ``y`` (N, C); ``pos_weight`` (C,) float64 or None; ``sample_weights`` None or (N, C)
    (a ``np.broadcast_to`` view with zero strides is read in place: per-row weights of shape
    (N, 1) or a scalar broadcast are used as one weight per row; class-wise (C,) broadcasts and
    full arrays are read per element; other stride patterns are copied once).
    Returns ``(loss, grad)``: loss (N, C) of ``x.dtype`` (sample weights included) when
    ``elementwise``, else per-row sums in float64 (N,). ``out`` as in :func:`softmax_ce`
    (an ``out`` overlapping ``x`` gives the right numbers, but LLVM then runs scalar code).
    ``bad_labels`` as in :func:`softmax_ce`: each row's number of targets outside [0, 1].
    """
    _check2d(x)
    n, c = x.shape
    want_grad = grad_scale is not None
    g = _grad_buffer(x, want_grad, out)
    lel = np.empty((n, c) if elementwise else (1, 1), x.dtype)
    lsum = np.zeros(n, np.float64)
    if n == 0 or c == 0:
        if bad_labels is not None:
            bad_labels[:] = 0.0
        return (lel if elementwise else lsum), (g if want_grad else None)
    yb = np.empty(n, np.float64) if bad_labels is None else bad_labels
    xf, rs = _rows_view(x)
    yf, yrs = _rows_view(np.asarray(y, dtype=x.dtype).reshape(n, c))
    if pos_weight is not None:
        pw = _ro(np.ascontiguousarray(pos_weight, dtype=np.float64).reshape(c).astype(x.dtype))
    else:
        pw = _ro(np.ones(c, x.dtype))
    sw_per_row = True
    swf, srs = _ro(np.ones(1, x.dtype)), 0  # no weights: the row weight 1
    if sample_weights is not None:
        sw = np.broadcast_to(np.asarray(sample_weights, dtype=x.dtype), (n, c))
        s0, s1 = sw.strides
        isz = x.itemsize
        if (s1 == 0 or c == 1) and ((s0 >= 0 and s0 % isz == 0) or n == 1):  # one per row
            srs = s0 // isz if n > 1 else 0
            swf = np.lib.stride_tricks.as_strided(
                sw, shape=((n - 1) * srs + 1,), strides=(isz,), writeable=False
            )
        else:
            sw_per_row = False
            swf, srs = _rows_view(sw)
    _launch(
        _k_sigmoid_ce,
        n * c,
        xf,
        rs,
        yf,
        yrs,
        n,
        c,
        pw,
        swf,
        srs,
        sw_per_row,
        float(label_smoothing),
        want_grad,
        _gs(grad_scale),
        bool(elementwise),
        lsum,
        lel,
        g,
        _scratch((_pool_threads(), _BLK), x.dtype),
        yb,
    )
    return (lel if elementwise else lsum), _zero_unscaled(g if want_grad else None, grad_scale)
