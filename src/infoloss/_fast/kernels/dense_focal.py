"""The dense-label (probability targets) softmax focal and poly-1 kernel and its NumPy wrapper.

ℓ_i = s_i Σ_c a_c φ(q_c), a_c = w_c t_c, q = softmax(x_i); the gradient (``_generic/focal.py``)
is s_i (b_j − q_j Σ_c b_c) with b_c = −a_c D(q_c):

- focal: φ = (1 − q)^γ (−log q), D = (1 − q)^γ (1 + γ q h), h = −log q / (1 − q);
- poly-1: φ = −log q + ε (1 − q), D = 1 + ε q.

Per row, as the dense cross-entropy kernel: a max pass and an exp-and-sum pass (maxima counted,
so that d = S − 1 is exact for confident rows), then one vectorized pass over the classes in
the logits' dtype that forms −log q_c = (m − x_c) + log S, q_c, log(1 − q_c) (log1p of −q_c for
q_c ≤ ½, every class but at most one), the factor (1 − q_c)^γ = exp(γ log(1 − q_c)) and the loss
and Σ_c b_c in float64; with the gradient it stores b_c in the gradient row and q_c in a scratch
row, and one last in-cache pass turns them into the gradient. The one class with q > ½ (the row's
unique maximum; it exists iff d < 1) takes log(1 − q) = log d − log1p d and its gradient
b_j (1 − q_j) − q_j Σ_{c≠j} b_c, both exact when 1 − q_j is tiny; where d underflows (every
other logit more than ~87 (float32) or ~745 (float64) below), the other logits' log-sum-exp is
formed around their own maximum (:func:`.focal._others_lse`).
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
    _ro,
    _rows_view,
    _scratch,
    _zero_unscaled,
)
from ._rows import _bad_max, _count_bad, _exp_sum, _fill, _finite, _row_max_span
from ._tunables import _JIT, _JIT_NR, _PJIT
from ._vecmath import _like, _vexp, _vexp_nan, _vlog1p_unit, _where
from .focal import _others_lse

_F64_MAX = np.finfo(np.float64).max  # a label above it is +inf


@njit(**_JIT_NR, inline="always")
def _elem(x, a, m, ls, near, l1m_n, s_n, poly, p):
    """(loss term a φ(q), b = −a D(q), q, near-class flag) of one class, in the dtype of x."""
    z0 = _like(0.0, x)
    one = _like(1.0, x)
    nl = (m - x) + ls  # −log q ≥ 0 (+inf for a −inf logit)
    q = _vexp(z0 - nl)
    isn = near & (x == m)
    l1m = _where(isn, l1m_n, _vlog1p_unit(z0 - _where(isn, z0, q)))  # log(1 − q)
    s = _where(isn, s_n, one - q)  # 1 − q
    fin = nl < _like(np.inf, x)
    nlh = _where(fin, nl, z0)  # the −inf logit: q h = 0 (the definition's convention)
    if poly:
        phi = nl + p * s
        d = one + p * q
    else:
        f = _vexp_nan(p * l1m)  # (1 − q)^γ
        phi = f * nl
        h = _where(s > z0, nlh / _where(s > z0, s, one), one)
        d = f * (one + p * (q * h))
    nz = a != z0
    return _where(nz, a * phi, z0), _where(nz, z0 - a * d, z0), q, isn


@njit(**_JIT)
def _terms(xr, yr, cw, m, ls, near, l1m_n, s_n, poly, p, want_grad, br, qr):
    """Σ_c a_c φ(q_c) and Σ_c b_c (float64), the near class's index and the labels' range
    count in one vectorized pass; with ``want_grad`` b_c into ``br`` and q_c into ``qr``."""
    c = xr.shape[0]
    loss = 0.0
    bsum = 0.0
    nbad = 0.0
    jn = 0
    for j in range(c):
        yv = yr[j]
        y64 = np.float64(yv)
        nbad += _where((y64 < 0.0) | (y64 > _F64_MAX), 1.0, 0.0)
        a = yv * cw[j]  # (ones without class weights)
        le, b, q, isn = _elem(xr[j], a, m, ls, near, l1m_n, s_n, poly, p)
        loss += np.float64(le)
        bsum += np.float64(b)
        jn += _where(isn, j, 0)
        if want_grad:
            br[j] = b
            qr[j] = q
    return loss, bsum, jn, nbad


@njit(**_JIT_NR)
def _grad_row(gr, qr, bsum, f):
    """g_c = f (b_c − q_c Σ b) in place of b_c."""
    bs = _like(bsum, gr[0])
    fx = _like(f, gr[0])
    for j in range(gr.shape[0]):
        gr[j] = fx * (gr[j] - qr[j] * bs)


@njit(**_PJIT)
def _k_dense_focal(
    xf, rs, yf, yrs, n, c, cw, sw, has_sw, poly, p, want_grad, gs, loss, g, yb, scratch
):
    for i in prange(n):
        xr = xf[i * rs : i * rs + c]
        yr = yf[i * yrs : i * yrs + c]
        grow = g[i] if want_grad else g[0]
        qr = scratch[numba.get_thread_id()]
        swi = sw[i] if has_sw else 1.0
        m, lo, hi = _row_max_span(xr)
        if _bad_max(m):  # a nan or +inf logit: nan loss and gradient row
            loss[i] = np.nan
            yb[i] = _count_bad(yr, _F64_MAX)
            if want_grad:
                _fill(grow, _like(np.nan, m))
            continue
        ls = 0.0
        d = 1.0
        if _finite(m):
            i1 = min(np.int64(i) + 1, n - 1)
            d = _exp_sum(xr, m, lo, hi, xf[i1 * rs : i1 * rs + c])[1]
            ls = math.log1p(d)
        else:  # all −inf: no distribution, the log-partition counts as 0 (as the definition)
            m = _like(0.0, m)
        near = d < 1.0  # the maximum is unique and has q > ½
        l1m_n = 0.0
        s_n = 0.0
        if near:
            if d > 0.0:
                l1m_n = math.log(d) - ls
                s_n = d / (1.0 + d)
            else:
                jm = 0
                while xr[jm] != m:
                    jm += 1
                l1m_n = _others_lse(xr, jm, np.float64(m)) - ls
                s_n = math.exp(l1m_n)
        lsx = _like(ls, m)
        pa = _like(p, m)
        tot, bsum, jn, nbad = _terms(
            xr,
            yr,
            cw,
            m,
            lsx,
            near,
            _like(l1m_n, m),
            _like(s_n, m),
            poly,
            pa,
            want_grad,
            grow,
            qr,
        )
        loss[i] = swi * tot
        yb[i] = nbad
        if want_grad:
            f = swi * gs
            bn = np.float64(grow[jn])
            _grad_row(grow, qr, bsum, f)
            if near:  # b_j (1 − q_j) − q_j Σ_{c≠j} b_c, with 1 − q_j exact
                grow[jn] = f * (bn * s_n - np.float64(qr[jn]) * (bsum - bn))


def dense_focal(
    x: np.ndarray,
    y: np.ndarray,
    class_weights: np.ndarray | None,
    sample_weights: np.ndarray | None,
    kind: str,
    param: float,
    grad_scale: float | None,
    out: np.ndarray | None = None,
    bad_labels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Softmax focal (``kind`` "focal", ``param`` γ > 0) or poly-1 (``kind`` "poly", ``param``
    ε) loss with dense targets ``y`` (N, C), per row (float64 (N,)), and the gradient
    ``d(Σ loss)/dx · grad_scale`` of ``x.dtype`` (into ``out``, C-contiguous and not
    overlapping ``x`` or ``y``, when given). ``class_weights`` (C,) and ``sample_weights``
    (N,) or None. ``bad_labels`` (float64 (N,)) receives each row's number of negative or
    +inf targets, counted in the same sweep (the caller checks the labels' range)."""
    _check2d(x)
    n, c = x.shape
    loss = np.empty(n, np.float64)
    want_grad = grad_scale is not None
    g = _grad_buffer(x, want_grad, out)
    yb = np.empty(n, np.float64) if bad_labels is None else bad_labels
    if n == 0 or c == 0:
        loss.fill(0.0)
        yb[:] = 0.0
        return loss, (g if want_grad else None)
    xf, rs = _rows_view(x)
    yf, yrs = _rows_view(np.asarray(y, dtype=x.dtype).reshape(n, c))
    cw = np.ones(c, x.dtype)  # the kernel multiplies by ones rather than branch
    if class_weights is not None:
        cw = _ro(np.ascontiguousarray(class_weights, dtype=x.dtype).reshape(c))
    has_sw = sample_weights is not None
    sw = np.ones(1)
    if has_sw:
        sw = _ro(np.ascontiguousarray(sample_weights, dtype=np.float64).reshape(n))
    _launch(
        _k_dense_focal,
        n * c,
        xf,
        rs,
        yf,
        yrs,
        n,
        c,
        cw,
        sw,
        has_sw,
        kind == "poly",
        float(param),
        want_grad,
        _gs(grad_scale),
        loss,
        g,
        yb,
        _scratch((_pool_threads(), c if want_grad else 1), x.dtype),
    )
    return loss, _zero_unscaled(g if want_grad else None, grad_scale)
