"""The softmax entropy kernels and their NumPy wrapper."""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from . import _tunables
from ._launch import _check2d, _grad_buffer, _gs, _launch, _rows_view, _scratch
from ._rows import (
    _BLK,
    _SHORT,
    _d_plus,
    _fill,
    _finite,
    _prefetch_block,
    _row_max_span,
    _sub_nr,
)
from ._tunables import _JIT, _JIT_NR, _PJIT
from ._vecmath import (
    _fence,
    _like,
    _stream_copy,
    _vexp,
    _where,
)

# --------------------------------------------------------------------------- measures from logits


@njit(**_JIT, inline="always")
def _ent_block(xr, b0, b1, m, count, grow, want_grad):
    """One block of :func:`_ent_sum`: (Σ (e_j − [x_j = m]), Σ [x_j = m], Σ e_j (m − x_j)), all
    three in the row's dtype (every term of the last is ≥ 0: no cancellation; the caller adds
    the blocks in float64); the maxima are counted only when ``count`` (the blocks that can
    hold one, see :func:`_row_max_span`). x_j − m is clamped at ``_ENT_LO`` before the exp:
    where that changes it the exponential is 0 anyway (flushed), and e_j (m − x_j) is then 0
    without a select (also for x_j = −inf, where the gap is +inf)."""
    z0 = _like(0.0, m)
    lim = _like(_ENT_LO32, m) if xr.itemsize == 4 else _like(_ENT_LO64, m)
    t = z0
    k = z0
    u = z0
    if count:  # (four loops: a loop-invariant branch inside one could keep it scalar)
        if want_grad:
            for j in range(np.uint64(b0), np.uint64(b1)):
                v = xr[j]
                d = _where(v - m > lim, v - m, lim)
                e = _vexp(d)
                grow[j] = e
                top = _like(v == m, m)
                t += _sub_nr(e, top)
                k += top
                u -= e * d
        else:
            for j in range(np.uint64(b0), np.uint64(b1)):
                v = xr[j]
                d = _where(v - m > lim, v - m, lim)
                e = _vexp(d)
                top = _like(v == m, m)
                t += _sub_nr(e, top)
                k += top
                u -= e * d
    elif want_grad:
        for j in range(np.uint64(b0), np.uint64(b1)):
            v = xr[j]
            d = _where(v - m > lim, v - m, lim)
            e = _vexp(d)
            grow[j] = e
            t += e
            u -= e * d
    else:
        for j in range(np.uint64(b0), np.uint64(b1)):
            v = xr[j]
            d = _where(v - m > lim, v - m, lim)
            e = _vexp(d)
            t += e
            u -= e * d
    return t, k, u


# x − m below this gives an exponential that is flushed to 0 (float32: below −87.4; float64:
# below −708.4)
_ENT_LO32 = -200.0
_ENT_LO64 = -800.0


@njit(**_JIT_NR)
def _ent_emit(xp, buf, prow, b0, b1, pm, pinv, pubar, pmode):
    """Block [b0, b1) of the pending row's gradient, from its exponentials in ``buf`` and its
    logits ``xp`` (pmode 0), or the constant ``pinv`` (1), written to ``prow`` with streaming
    stores."""
    if pmode == 0:
        z0 = _like(0.0, pm)
        for j in range(np.uint64(b0), np.uint64(b1)):
            e = buf[j]
            gj = (e * pinv) * ((pm - xp[j]) - pubar)
            buf[j] = _where(e > z0, gj, z0)  # select: the loop vectorizes
        _stream_copy(buf[b0:b1], prow[b0:b1])
    else:
        _fill(prow[b0:b1], pinv)


@njit(**_JIT)
def _ent_sum(xr, grow, m, lo, hi, want_grad, xn, emit, xp, prow, pm, pinv, pubar, pmode):
    """(S, S − 1, U): S and S − 1 as in :func:`_exp_sum`, U = Σ_{e_j>0} e_j (m − x_j);
    e_j = exp(x_j − m) is stored into ``grow`` when the gradient is wanted. The next row
    ``xn`` is prefetched; when ``emit``, the pending row's gradient is written block by block
    first (:func:`_ent_emit`: ``grow`` is then the scratch row holding its exponentials)."""
    n = xr.shape[0]
    s = 0.0
    cnt = 0.0
    u = 0.0
    b = 0
    for b0 in range(0, n, _BLK):
        b1 = min(b0 + _BLK, n)
        if n > _SHORT:
            _prefetch_block(xn, xn, b0, b1, False)
        if emit:
            _ent_emit(xp, grow, prow, b0, b1, pm, pinv, pubar, pmode)
        t, k, ub = _ent_block(xr, b0, b1, m, lo <= b <= hi, grow, want_grad)
        s += t
        cnt += k
        u += np.float64(ub)
        b += 1
    return cnt + s, _d_plus(cnt, 1.0, s), u


@njit(**_JIT_NR)
def _ent_terms(m, s, dm, u, gs):
    """(H, 1/S · gs and Ū in the row's dtype) from a row's sums."""
    inv = 1.0 / s
    ubar = u * inv
    # lse − Σ q x = log S + Σ q (m − x): both ≥ 0; dH/dx_j = −q_j (log q_j + H) =
    # q_j ((m − x_j) − Ū), in the row's dtype: the per-row factors are rounded to it once
    return math.log1p(dm) + ubar, _like(inv * gs, m), _like(ubar, m)


@njit(**_PJIT)
def _k_entropy(xf, rs, n, c, want_grad, gs, h, g):
    for i in prange(n):
        xr = xf[i * rs : i * rs + c]
        grow = g[i] if want_grad else g[0]
        i1 = min(np.int64(i) + 1, n - 1)
        xn = xf[i1 * rs : i1 * rs + c]
        m, lo, hi = _row_max_span(xr)
        if _finite(m):
            s, dm, u = _ent_sum(xr, grow, m, lo, hi, want_grad, xn, False, xr, grow, m, m, m, 0)
            hi_, inv_t, ubar_t = _ent_terms(m, s, dm, u, gs)
            h[i] = hi_
            if want_grad:
                z0 = _like(0.0, m)
                for j in range(c):
                    e = grow[j]
                    gj = (e * inv_t) * ((m - xr[j]) - ubar_t)
                    grow[j] = _where(e > z0, gj, z0)  # select: the loop vectorizes
        elif m == -np.inf:  # no distribution: H = 0, zero gradient
            h[i] = 0.0
            if want_grad:
                _fill(grow, _like(0.0, m))
        else:  # a nan or +inf logit (m is nan or +inf): nan entropy and gradient row
            h[i] = np.nan
            if want_grad:
                _fill(grow, _like(np.nan, m))


@njit(**_PJIT)
def _k_entropy_stream(xf, rs, n, c, gs, h, g, scratch):
    """:func:`_k_entropy` with the gradient, through the streaming pipeline of
    :func:`~._launch` large gradients (one scratch row per chunk of rows; row i−1's gradient is
    written with streaming stores during row i's exp pass)."""
    nch = scratch.shape[0]
    per = (n + nch - 1) // nch
    for t in prange(nch):
        r0 = t * per
        r1 = min(n, r0 + per)
        buf = scratch[t]
        zero = _like(0.0, xf[0])
        p = np.int64(-1)
        pm = zero
        pinv = zero
        pubar = zero
        pmode = 0
        for i in range(r0, r1):
            xr = xf[i * rs : i * rs + c]
            q = max(p, 0)
            xp = xf[q * rs : q * rs + c]
            prow = g[q]
            emit = p >= 0
            m, lo, hi = _row_max_span(xr)
            if _finite(m):
                i1 = min(i + 1, r1 - 1)
                xn = xf[i1 * rs : i1 * rs + c]
                s, dm, u = _ent_sum(
                    xr, buf, m, lo, hi, True, xn, emit, xp, prow, pm, pinv, pubar, pmode
                )
                hv, pinv, pubar = _ent_terms(m, s, dm, u, gs)
                h[i] = hv
                pm, pmode = m, 0
            else:
                if emit:
                    _ent_emit(xp, buf, prow, 0, c, pm, pinv, pubar, pmode)
                # no distribution: H = 0, zero gradient; a nan or +inf logit: nan row
                h[i] = 0.0 if m == -np.inf else np.nan
                pm, pinv, pubar, pmode = zero, _like(0.0 if m == -np.inf else np.nan, zero), zero, 1
            p = i
        if p >= 0:
            _ent_emit(xf[p * rs : p * rs + c], buf, g[p], 0, c, pm, pinv, pubar, pmode)
        _fence()  # the streaming stores are complete before the kernel returns


def softmax_entropy_rows(
    x: np.ndarray, grad_scale: float | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """H(softmax(x)) per row in nats, float64 (N,), and ``dH/dx · grad_scale`` or None.

    An all −inf row has entropy 0 and a zero gradient.
    """
    _check2d(x)
    n, c = x.shape
    h = np.zeros(n, np.float64)
    want_grad = grad_scale is not None
    g = _grad_buffer(x, want_grad, None)
    if n and c:
        xf, rs = _rows_view(x)
        if want_grad and g.nbytes >= _tunables._STREAM_MIN_BYTES:
            scratch = _scratch((min(n, numba.get_num_threads()), -(-c // 16) * 16), x.dtype)
            _launch(_k_entropy_stream, n * c, xf, rs, n, c, _gs(grad_scale), h, g, scratch)
        else:
            _launch(_k_entropy, n * c, xf, rs, n, c, want_grad, _gs(grad_scale), h, g)
    return h, (g if want_grad else None)
