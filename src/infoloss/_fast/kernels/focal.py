"""The focal-loss kernels: the target-probability kernel of the sparse focal and poly losses,
and the elementwise sigmoid focal loss, with their NumPy wrappers.

Every sparse loss of the form ℓ_i = a_i φ(q_{i y_i}) (focal, poly-1) needs, per row, only
log q_y and log(1 − q_y); its gradient is B_i (q_i − e_{y_i}), the sparse cross-entropy's
gradient with the row weight B_i. So one read of the logits (max pass and exp-and-sum pass, no
store) gives the loss, and the glue (:mod:`infoloss._fast.focal`) turns B into the gradient with
the sparse cross-entropy kernel (:func:`.sparse_ce.sparse_softmax_ce`, per-row weights), in one
more sweep that writes it.

log(1 − q_y) without cancellation: with S = Σ_j exp(x_j − m) and d = S − 1 (the maxima counted,
see :mod:`._rows`), a target with q_y > ½ is the row's only maximum, so the other classes sum to
exactly d and 1 − q_y = d / (1 + d): log(1 − q_y) = log d − log1p d. Where d underflows (every
other logit more than ~87 (float32) or ~745 (float64) below the target's), the log-sum-exp of the
other logits is formed in a second, scalar pass of that row around their own maximum.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from ._launch import (
    _check2d,
    _grad_buffer,
    _gs,
    _launch,
    _pool_threads,
    _rows_view,
    _scratch,
    _zero_unscaled,
)
from ._rows import _exp_sum, _finite, _row_max_span
from ._tunables import _JIT_NR, _PJIT
from ._vecmath import _like, _vexp, _vexp_nan, _vlog, _vlog1p_unit, _where

_LOG_HALF = -0.6931471805599453


@njit(**_JIT_NR)
def _others_lse(xr, y, m):
    """log Σ_{j ≠ y} exp(x_j) − m (float64, scalar), −inf when the others are all −inf."""
    c = xr.shape[0]
    m2 = -np.inf
    for j in range(c):
        if j != y:
            m2 = max(m2, np.float64(xr[j]))
    if m2 == -np.inf:
        return -np.inf
    s = 0.0
    for j in range(c):
        if j != y:
            s += math.exp(np.float64(xr[j]) - m2)
    return (m2 - m) + math.log(s)


@njit(**_PJIT)
def _k_target_logs(xf, rs, n, c, lab, skip, ii, lq, l1m):
    for i in prange(n):
        y = lab[i]
        if skip and y == ii:
            lq[i] = 0.0
            l1m[i] = 0.0
            continue
        xr = xf[i * rs : i * rs + c]
        i1 = min(np.int64(i) + 1, n - 1)
        m, lo, hi = _row_max_span(xr)
        if _finite(m):
            xn = xf[i1 * rs : i1 * rs + c]
            d = _exp_sum(xr, m, lo, hi, xn)[1]
            ls = math.log1p(d)
            m64 = np.float64(m)
            a = (np.float64(xr[y]) - m64) - ls
            lq[i] = a
            if a > _LOG_HALF:
                if d > 0.0:
                    l1m[i] = math.log(d) - ls
                else:
                    l1m[i] = _others_lse(xr, y, m64) - ls
            else:
                l1m[i] = math.log(-math.expm1(a))
        elif m == -np.inf:  # no distribution: the log-partition counts as 0 (as the generic code)
            lq[i] = -np.inf
            l1m[i] = 0.0
        else:  # a nan or +inf logit: the row is nan
            lq[i] = np.nan
            l1m[i] = np.nan


def target_logs(
    x: np.ndarray, labels: np.ndarray, ignore_index: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(log q_y, log(1 − q_y))`` per row, float64 (N,), of the softmax of ``x`` (N, C)
    float32/float64 at the labels (N,) int64 in [0, C) or ``ignore_index`` (validated by the
    caller; an ignored row gives 0, 0)."""
    _check2d(x)
    n, c = x.shape
    lq = np.zeros(n, np.float64)
    l1m = np.zeros(n, np.float64)
    if n == 0 or c == 0:
        return lq, l1m
    lab = np.array(labels, dtype=np.int64, copy=True).reshape(n)  # private: checked, then read
    skip = ignore_index is not None
    ii = 0 if ignore_index is None else int(ignore_index)
    bad = (lab < 0) | (lab >= c)
    if skip:
        bad &= lab != ii
    if bad.any():  # never index out of bounds, whatever the caller passed
        raise ValueError("labels out of range")
    xf, rs = _rows_view(x)
    _launch(_k_target_logs, n * c, xf, rs, n, c, lab, skip, ii, lq, l1m)
    return lq, l1m


# --------------------------------------------------------------------------- sigmoid focal


@njit(**_JIT_NR, inline="always")  # a call per element would keep the loop scalar
def _soft_elem(x, y, gamma, gs):
    """(loss, dloss/dx · gs) of one element with a label y in [0, 1], unweighted, in the dtype
    of x, branch-free (docs/semantics.md). With t = exp(−|x|) and the coefficients ``big``,
    ``small`` chosen by the sign of x, 1 − p_t = (big + small·t) / (1 + t), so
    u = log(1 − p_t) = log(big + small·t) − log1p(t), and log(small·t) = −|x| where big = 0
    (a 0/1 label on the confident side): the factor (1 − p_t)^γ = exp(γu) never underflows
    early, for logits of ±1e4 too."""
    z0 = _like(0.0, x)
    one = _like(1.0, x)
    pos = x > z0
    nabs = _where(pos, z0 - x, x)  # −|x|
    t = _vexp_nan(nabs)
    l1p = _vlog1p_unit(t)
    sp_pos = _where(pos, x, z0) + l1p  # softplus(x)
    sp_neg = _where(pos, z0, z0 - x) + l1p  # softplus(−x)
    ym = one - y
    bce = _where(y != z0, y * sp_neg, z0) + _where(ym != z0, ym * sp_pos, z0)
    big = _where(pos, ym, y)
    small = _where(pos, y, ym)
    has = big > z0
    u = _where(has, _vlog(_where(has, big + small * t, one)), nabs) - l1p
    u = _where(x != x, x, u)
    f = _where(gamma == z0, one, _vexp_nan(gamma * u))  # (1 − p_t)^γ
    inv = one / (one + t)
    g0 = _where(pos, one, t) * inv - y  # σ(x) − y
    # d u/dx = (1 − 2y) σ(x) σ(−x) / (1 − p_t), at most 1 in magnitude
    fin = u > _like(-np.inf, x)
    du = _where(fin, (ym - y) * _vexp(_where(fin, (z0 - sp_pos) - sp_neg - u, z0)), z0)
    mod = _where(gamma == z0, z0, gamma * (bce * du))
    return f * bce, (f * (g0 + mod)) * gs


@njit(**_JIT_NR)
def _soft_row(xr, yr, swr, a1, a0, has_alpha, gam, gsx, tmp, gr, want_grad):
    """One row of labels in [0, 1]: weighted losses into ``tmp``, gradients into ``gr``."""
    c = xr.shape[0]
    one = _like(1.0, gam)
    if want_grad:
        for j in range(c):
            yv = yr[j]
            w = _where(has_alpha, a1 * yv + a0 * (one - yv), one) * swr[j]
            le, ge = _soft_elem(xr[j], yv, gam, gsx)
            tmp[j] = le * w
            gr[j] = ge * w
    else:
        for j in range(c):
            yv = yr[j]
            w = _where(has_alpha, a1 * yv + a0 * (one - yv), one) * swr[j]
            le, _ = _soft_elem(xr[j], yv, gam, gsx)
            tmp[j] = le * w


@njit(**_JIT_NR, inline="always")  # a call per element would keep the loop scalar (80 ns)
def _hard_elem(x, yes, gamma, gs):
    """(loss, dloss/dx · gs) of one element with a 0/1 label (``yes``: label 1), unweighted,
    in the dtype of x, branch-free: log(1 − p_t) is −softplus(±x) and the derivative of
    log(1 − p_t) is −σ(x) (label 1) or σ(−x) (label 0), so no log and one exp per element."""
    z0 = _like(0.0, x)
    one = _like(1.0, x)
    pos = x > z0
    t = _vexp_nan(_where(pos, z0 - x, x))  # exp(−|x|)
    l1p = _vlog1p_unit(t)
    sp_pos = _where(pos, x, z0) + l1p  # softplus(x)
    sp_neg = _where(pos, z0, z0 - x) + l1p  # softplus(−x)
    bce = _where(yes, sp_neg, sp_pos)
    f = _where(gamma == z0, one, _vexp_nan(gamma * (z0 - _where(yes, sp_pos, sp_neg))))
    inv = one / (one + t)
    s_pos = _where(pos, one, t) * inv  # σ(x)
    s_neg = _where(pos, t, one) * inv  # σ(−x)
    g0 = _where(yes, z0 - s_neg, s_pos)  # σ(x) − y
    du = _where(yes, z0 - s_pos, s_neg)
    return f * bce, (f * (g0 + _where(gamma == z0, z0, gamma * (bce * du)))) * gs


@njit(**_JIT_NR)
def _hard_row(xr, yr, swr, a1, a0, gam, gsx, tmp, gr, want_grad):
    """One row of 0/1 labels: weighted losses into ``tmp``, gradients into ``gr``."""
    c = xr.shape[0]
    if want_grad:
        for j in range(c):
            yes = yr[j] != 0
            w = _where(yes, a1, a0) * swr[j]
            le, ge = _hard_elem(xr[j], yes, gam, gsx)
            tmp[j] = le * w
            gr[j] = ge * w
    else:
        for j in range(c):
            yes = yr[j] != 0
            w = _where(yes, a1, a0) * swr[j]
            le, _ = _hard_elem(xr[j], yes, gam, gsx)
            tmp[j] = le * w


@njit(**_PJIT)
def _k_sigmoid_focal(
    x, y, sw, has_sw, alpha, has_alpha, gamma, want_grad, gs, elementwise, lel, lsum, g, scratch
):
    n, c = x.shape
    a1 = _like(alpha if has_alpha else 1.0, x[0, 0])
    a0 = _like(1.0 - alpha if has_alpha else 1.0, x[0, 0])
    gam = _like(gamma, x[0, 0])
    gsx = _like(gs, x[0, 0])
    for i in prange(n):
        xr, yr = x[i], y[i]
        swr = sw[i] if has_sw else sw[0]
        tmp = scratch[numba.get_thread_id()]
        soft = 0
        for j in range(c):
            v = yr[j]
            soft += _where((v == 0) | (v == 1), 0, 1)
        if soft == 0:  # 0/1 labels: the vectorizable loop
            _hard_row(xr, yr, swr, a1, a0, gam, gsx, tmp, g[i] if want_grad else g[0], want_grad)
        else:  # labels in [0, 1]: the log-space loop (one log more per element)
            gr = g[i] if want_grad else g[0]
            _soft_row(xr, yr, swr, a1, a0, has_alpha, gam, gsx, tmp, gr, want_grad)
        if elementwise:
            for j in range(c):
                lel[i, j] = tmp[j]
        else:
            acc = 0.0
            for j in range(c):
                acc += np.float64(tmp[j])
            lsum[i] = acc


def sigmoid_focal(
    x: np.ndarray,
    y: np.ndarray,
    sample_weights: np.ndarray | None,
    alpha: float | None,
    gamma: float,
    grad_scale: float | None,
    elementwise: bool,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Sigmoid focal loss, elementwise, and its gradient.

    ``x``, ``y`` (N, C) (``y`` in [0, 1], checked by the caller); ``sample_weights`` None or
    (N, C). A row whose labels are all 0 or 1 takes a branch-free vectorized loop in the dtype
    of ``x`` (no log, one exp per element); other rows take a vectorized loop in the same
    dtype that computes log(1 − p_t) in log space (:func:`_soft_elem`).
    Returns ``(loss, grad)``: loss (N, C) float64 when ``elementwise``, else
    per-row sums (N,); the gradient ``d(Σ loss)/dx · grad_scale`` of ``x.dtype``, into ``out``
    (C-contiguous, not overlapping ``y``) when given.
    """
    _check2d(x)
    n, c = x.shape
    want_grad = grad_scale is not None
    g = _grad_buffer(x, want_grad, out)
    lel = np.empty((n, c) if elementwise else (1, 1), np.float64)
    lsum = np.zeros(n, np.float64)
    if n == 0 or c == 0:
        return (lel if elementwise else lsum), (g if want_grad else None)
    yv = np.asarray(y, dtype=x.dtype).reshape(n, c)
    has_sw = sample_weights is not None
    sw = np.ascontiguousarray(sample_weights, dtype=x.dtype) if has_sw else np.ones((1, c), x.dtype)
    _launch(
        _k_sigmoid_focal,
        n * c,
        x,
        yv,
        sw,
        has_sw,
        0.0 if alpha is None else float(alpha),
        alpha is not None,
        float(gamma),
        want_grad,
        _gs(grad_scale),
        bool(elementwise),
        lel,
        lsum,
        g,
        _scratch((_pool_threads(), c), x.dtype),
    )
    return (lel if elementwise else lsum), _zero_unscaled(g if want_grad else None, grad_scale)
