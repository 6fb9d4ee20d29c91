"""The softmax entropy and softmax KL divergence kernels and their NumPy wrappers."""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._launch import _check2d, _grad_buffer, _gs, _launch, _rows_view
from ._rows import _BLK, _bad_max, _d_plus, _fill, _finite, _row_max, _sub_nr
from ._tunables import _JIT, _JIT_NR, _PJIT
from ._vecmath import _exp64_neg, _like, _vexp, _where

# --------------------------------------------------------------------------- measures from logits


@njit(**_JIT)
def _ent_block(xr, b0, b1, m, grow, want_grad):
    """One block of :func:`_ent_sum`: (Σ (e_j − [x_j = m]), Σ [x_j = m], Σ e_j (m − x_j))."""
    z0 = _like(0.0, m)
    t = z0
    k = z0
    u = 0.0
    mm = np.float64(m)
    if want_grad:
        for j in range(b0, b1):
            v = xr[j]
            e = _vexp(v - m)
            grow[j] = e
            top = _like(v == m, m)
            t += _sub_nr(e, top)
            k += top
            # e = 0 (also for x = −inf, where the gap is +inf) contributes 0; a select, not a
            # branch, so that the loop vectorizes
            u += _where(e > z0, np.float64(e) * (mm - np.float64(v)), 0.0)
    else:
        for j in range(b0, b1):
            v = xr[j]
            e = _vexp(v - m)
            top = _like(v == m, m)
            t += _sub_nr(e, top)
            k += top
            u += _where(e > z0, np.float64(e) * (mm - np.float64(v)), 0.0)
    return t, k, u


@njit(**_JIT)
def _ent_sum(xr, grow, m, want_grad):
    """(S, S − 1, U): S and S − 1 as in :func:`_exp_sum`, U = Σ_{e_j>0} e_j (m − x_j);
    e_j = exp(x_j − m) is stored into ``grow`` when the gradient is wanted."""
    n = xr.shape[0]
    s = 0.0
    cnt = 0.0
    u = 0.0
    for b0 in range(0, n, _BLK):
        t, k, ub = _ent_block(xr, b0, min(b0 + _BLK, n), m, grow, want_grad)
        s += t
        cnt += k
        u += ub
    return cnt + s, _d_plus(cnt, 1.0, s), u


@njit(**_PJIT)
def _k_entropy(xf, rs, n, c, want_grad, gs, h, g):
    for i in prange(n):
        xr = xf[i * rs : i * rs + c]
        grow = g[i] if want_grad else g[0]
        m = _row_max(xr)
        if _finite(m):
            s, dm, u = _ent_sum(xr, grow, m, want_grad)
            inv = 1.0 / s
            ubar = u * inv
            h[i] = math.log1p(dm) + ubar  # lse − Σ q x = log S + Σ q (m − x): both ≥ 0
            if want_grad:  # dH/dx_j = −q_j (log q_j + H) = q_j ((m − x_j) − Ū)
                mm = np.float64(m)
                z0 = _like(0.0, m)
                for j in range(c):
                    e = grow[j]
                    gj = (np.float64(e) * inv) * ((mm - np.float64(xr[j])) - ubar) * gs
                    grow[j] = _where(e > z0, _like(gj, m), z0)  # select: the loop vectorizes
        elif m == -np.inf:  # no distribution: H = 0, zero gradient
            h[i] = 0.0
            if want_grad:
                _fill(grow, _like(0.0, m))
        else:  # a nan or +inf logit (m is nan or +inf): nan entropy and gradient row
            h[i] = np.nan
            if want_grad:
                _fill(grow, _like(np.nan, m))


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
        _launch(
            _k_entropy,
            n * c,
            xf,
            rs,
            n,
            c,
            want_grad,
            _gs(grad_scale),
            h,
            g,
        )
    return h, (g if want_grad else None)


@njit(**_JIT)
def _offsets(xr):
    """(off, S, m): log-probabilities are (x_j − off) − log S, probabilities exp(x_j − off)/S,
    m is the row's max (nan if it has a nan). A float64 exp for both dtypes (accuracy of KL when
    p ≈ q). A row without a finite max gets off = 0, S = 1 (the generic path's
    x − finite_or_zero(lse))."""
    m = _row_max(xr)
    if not _finite(m):
        return 0.0, 1.0, m
    mm = np.float64(m)
    s = 0.0
    for j in range(xr.shape[0]):
        s += _exp64_neg(np.float64(xr[j]) - mm)
    return mm, s, m


@njit(**_JIT)
def _kl_sum(ar, br, oa, ob, c0):
    """Σ_{p_j>0} e^(a_j − oa) ((a_j − oa) − (b_j − ob) − c0), row of `a` with a finite max."""
    u = 0.0
    for j in range(ar.shape[0]):
        da = np.float64(ar[j]) - oa
        ea = _exp64_neg(da)
        u += ea * ((da - (np.float64(br[j]) - ob)) - c0) if ea > 0.0 else 0.0
    return u


@njit(**_JIT)
def _kl_sum_slow(ar, br, oa, ob, c0):
    u = 0.0
    for j in range(ar.shape[0]):
        da = np.float64(ar[j]) - oa
        ea = np.exp(da)
        u += ea * ((da - (np.float64(br[j]) - ob)) - c0) if ea > 0.0 else 0.0
    return u


@njit(**_JIT_NR)
def _kl_grad(ar, br, oa, ob, c0, inva, invb, raw, gs, gar, gbr):
    for j in range(ar.shape[0]):
        da = np.float64(ar[j]) - oa
        db = np.float64(br[j]) - ob
        p = _exp64_neg(da) * inva
        q = _exp64_neg(db) * invb
        d = (da - db) - c0 if p > 0.0 else 0.0
        gar[j] = p * (d - raw) * gs
        gbr[j] = (q - p) * gs


@njit(**_JIT_NR)
def _kl_grad_slow(ar, br, oa, ob, c0, inva, invb, raw, gs, gar, gbr):
    for j in range(ar.shape[0]):
        da = np.float64(ar[j]) - oa
        db = np.float64(br[j]) - ob
        p = np.exp(da) * inva
        q = np.exp(db) * invb
        d = (da - db) - c0 if p > 0.0 else 0.0
        gar[j] = p * (d - raw) * gs
        gbr[j] = (q - p) * gs


@njit(**_PJIT)
def _k_kl(af, ars, bf, brs, n, c, want_grad, gs, kl, ga, gb):
    for i in prange(n):
        ar = af[i * ars : i * ars + c]
        br = bf[i * brs : i * brs + c]
        oa, sa, ma = _offsets(ar)
        ob, sb, mb = _offsets(br)
        if _bad_max(ma) or _bad_max(mb):  # a nan or +inf logit in either row: nan row
            kl[i] = np.nan
            if want_grad:
                _fill(ga[i], _like(np.nan, ma))
                _fill(gb[i], _like(np.nan, ma))
            continue
        fa = _finite(ma)
        fb = _finite(mb)
        c0 = math.log(sa) - math.log(sb)
        inva = 1.0 / sa
        if fa:
            raw = _kl_sum(ar, br, oa, ob, c0) * inva
        else:  # rare: no distribution in `a` (libm exp, scalar)
            raw = _kl_sum_slow(ar, br, oa, ob, c0) * inva
        kl[i] = 0.0 if raw < 0.0 else raw  # (clipped at 0; a nan stays nan)
        if want_grad:
            if fa and fb:
                _kl_grad(ar, br, oa, ob, c0, inva, 1.0 / sb, raw, gs, ga[i], gb[i])
            else:
                _kl_grad_slow(ar, br, oa, ob, c0, inva, 1.0 / sb, raw, gs, ga[i], gb[i])


def softmax_kl_rows(
    a: np.ndarray, b: np.ndarray, grad_scale: float | None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """KL(softmax(a) ‖ softmax(b)) per row in nats, float64 (N,), clipped at 0, with gradients.

    Returns ``(kl, d/da · grad_scale, d/db · grad_scale)`` (gradients None when ``grad_scale``
    is None). Computed with a float64 exp for both dtypes (accuracy when p ≈ q).
    """
    _check2d(a)
    _check2d(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        raise ValueError("`a` and `b` must have the same shape and dtype")
    n, c = a.shape
    kl = np.zeros(n, np.float64)
    want_grad = grad_scale is not None
    ga = _grad_buffer(a, want_grad, None)
    gb = _grad_buffer(a, want_grad, None)
    if n and c:
        af, ars = _rows_view(a)
        bf, brs = _rows_view(b)
        _launch(
            _k_kl,
            n * c,
            af,
            ars,
            bf,
            brs,
            n,
            c,
            want_grad,
            _gs(grad_scale),
            kl,
            ga,
            gb,
        )
    if not want_grad:
        return kl, None, None
    return kl, ga, gb
