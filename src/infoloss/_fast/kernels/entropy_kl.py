"""The softmax entropy and softmax KL divergence kernels and their NumPy wrappers."""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from ._launch import _check2d, _grad_buffer, _gs, _launch, _pool_threads, _rows_view, _scratch
from ._rows import _BLK, _bad_max, _d_plus, _fill, _finite, _row_max, _sub_nr
from ._tunables import _JIT, _JIT_NR, _PJIT
from ._vecmath import _exp64_neg, _fmaximum, _like, _vexp, _where

# --------------------------------------------------------------------------- measures from logits


@njit(**_JIT)
def _ent_block(xr, b0, b1, m, grow, want_grad):
    """One block of :func:`_ent_sum`: (Σ (e_j − [x_j = m]), Σ [x_j = m], Σ e_j (m − x_j)), all
    three in the row's dtype (every term of the last is ≥ 0: no cancellation; the caller adds
    the blocks in float64)."""
    z0 = _like(0.0, m)
    t = z0
    k = z0
    u = z0
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
            u += _where(e > z0, e * (m - v), z0)
    else:
        for j in range(b0, b1):
            v = xr[j]
            e = _vexp(v - m)
            top = _like(v == m, m)
            t += _sub_nr(e, top)
            k += top
            u += _where(e > z0, e * (m - v), z0)
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
        u += np.float64(ub)
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
                # in the row's dtype: the per-row factors are rounded to it once
                z0 = _like(0.0, m)
                inv_t = _like(inv * gs, m)
                ubar_t = _like(ubar, m)
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


# --------------------------------------------------------------------------- softmax KL
#
# The generic path's formulas (:func:`infoloss._generic.measures._softmax_kl_generic`): with
# p = softmax(a), q = softmax(b), d = log p − log q and * the first maximum of `a` (the most
# probable class of p), KL = d* + Σ p (d − d*) (as Σ p = 1) and
# ∂KL/∂a = p ((d − d*) − Σ p (d − d*)), where d_c − d* = (a_c − a*) − (b_c − b*) is formed from
# logit differences, never from log-probabilities: d* − d* is exactly 0, and the dominant
# class's gradient keeps its digits.
# (The former p (d − KL) with d = (a − max a) − (b − max b) − c0 kept, for the dominant class,
# p ≈ 1 and d ≈ KL, only the rounding of terms of the size of the logit spread: in float64 at
# spread 1e4 ~1e6 ulps of the row's largest gradient.) Everything is float64 for both dtypes.
#
# Per row: a max pass over each row (−min too for `b`: does it mask classes?), the search for *,
# one pass that evaluates the two exponentials, sums them and forms Σ e^a (d − d*) (storing the
# exponentials in a per-thread float64 scratch when the gradient is wanted), and the gradient
# pass, which reads them back. The sums leave class * out: Σ_{j≠*} e^a_j is S_a − 1 itself
# (e^a* = 1), so log S_a = log1p(S_a − 1) and p* − 1 = −(S_a − 1)/S_a keep full relative
# accuracy for a confident p, and so do those of `b` when b's maximum is at * too (the only
# case where q − p can cancel between two probabilities near 1, see :func:`_q_minus_p_big`).
# With a = b the two sides are computed alike: KL and both gradients are exactly 0.
#
# Special values (docs/semantics.md "Special values", as the generic path): a nan or +inf logit
# in `a` or `b` gives a nan value and nan gradient rows; −inf is a masked class. A class with
# p_c > 0 and b_c = −inf makes KL = +inf: the row's `a` gradient is nan (∞ − ∞), its `b`
# gradient q − p. "p_c > 0" is decided as the generic path decides it, in the input dtype:
# log p_c above the log of half the dtype's smallest subnormal (the float64 exp used here would
# keep p_c > 0 far below float32's range). A row of `a` without a distribution (all −inf) has
# KL = 0, a zero `a` gradient and the `b` gradient q.


_FIND = 256  # block of the first-maximum search

# The per-row calls that write take whole arrays and a row index (the scratch row ``sx[t]`` of
# thread t, the gradient rows ``ga[i]``, ``gb[i]``) rather than slices: each slice handed to such
# a call (which LLVM does not inline) costs ~12 ns (measured: its reference counting), which
# was most of the time of a row of 8 classes.


@njit(**_JIT)
def _first_max(xr, m):
    """The first index j with xr[j] == m (m is the row's finite maximum). Long rows: blocks of
    _FIND elements are tested with a vectorized count (over a slice, from 0: see
    :func:`_kl_sums`), the first one that holds m is scanned."""
    n = xr.shape[0]
    if n > _FIND:
        z0 = _like(0.0, m)
        for b0 in range(0, n, _FIND):
            xb = xr[b0 : min(b0 + _FIND, n)]
            k = z0
            for j in range(xb.shape[0]):
                k += _like(xb[j] == m, m)
            if k > z0:
                for j in range(xb.shape[0]):
                    if xb[j] == m:
                        return b0 + j
    for j in range(n):
        if xr[j] == m:
            return j
    return 0


@njit(**_JIT)
def _max_negmin(xr):
    """(max, −min) of a row in one pass (NaN if it holds a NaN); −min = +inf flags a −inf."""
    m = xr[0]
    nm = -xr[0]
    for j in range(xr.shape[0]):
        v = xr[j]
        m = _fmaximum(m, v)
        nm = _fmaximum(nm, -v)
    return m, nm


@njit(**_JIT)
def _kl_sums(ar, br, js, oa, ob, bs, sx, t, store):
    """One pass over a row pair: (Σ_{j≠js} e^a_j, Σ_{j≠js} e^b_j, U = Σ_{e^a_j>0} e^a_j
    ((a_j − oa) − (b_j − bs))), with e^a_j = exp(a_j − oa), e^b_j = exp(b_j − ob) in float64,
    stored into ``sx[t, 0]``, ``sx[t, 1]`` when ``store``. A term of U with b_j = −inf is +inf
    (see :func:`_u_masked`). Selects, not branches, and indices from 0 (with ``range(j0, j1)``
    numba's negative-index wraparound keeps the stores scalar, 9× slower): the loop
    vectorizes."""
    ta = 0.0
    tb = 0.0
    u = 0.0
    if store:
        for j in range(ar.shape[0]):
            bv = np.float64(br[j])
            da = np.float64(ar[j]) - oa
            ea = _exp64_neg(da)
            eb = _exp64_neg(bv - ob)
            sx[t, 0, j] = ea
            sx[t, 1, j] = eb
            other = j != js
            ta += _where(other, ea, 0.0)
            tb += _where(other, eb, 0.0)
            u += _where(ea > 0.0, ea * (da - (bv - bs)), 0.0)
    else:
        for j in range(ar.shape[0]):
            bv = np.float64(br[j])
            da = np.float64(ar[j]) - oa
            ea = _exp64_neg(da)
            eb = _exp64_neg(bv - ob)
            other = j != js
            ta += _where(other, ea, 0.0)
            tb += _where(other, eb, 0.0)
            u += _where(ea > 0.0, ea * (da - (bv - bs)), 0.0)
    return ta, tb, u


@njit(**_JIT)
def _masked_live(ar, br, oa, lsa, lp_min):
    """The number of classes with b_j = −inf and log p_j = (a_j − oa) − log S_a > lp_min."""
    ninf = _like(-np.inf, br[0])
    k = 0.0
    for j in range(ar.shape[0]):
        k += _like((br[j] == ninf) & (((np.float64(ar[j]) - oa) - lsa) > lp_min), 0.0)
    return k


@njit(**_JIT)
def _u_masked(ar, br, oa, bs, sx, t, stored):
    """U of :func:`_kl_sums` without the classes with b_j = −inf (whose p_j is 0 in the input
    dtype), from the exponentials stored in ``sx[t, 0]`` when ``stored``."""
    ninf = _like(-np.inf, br[0])
    u = 0.0
    if stored:
        for j in range(ar.shape[0]):
            bv = br[j]
            ea = sx[t, 0, j]
            dd = (np.float64(ar[j]) - oa) - (np.float64(bv) - bs)
            u += _where((ea > 0.0) & (bv != ninf), ea * dd, 0.0)
    else:
        for j in range(ar.shape[0]):
            bv = br[j]
            da = np.float64(ar[j]) - oa
            ea = _exp64_neg(da)
            u += _where((ea > 0.0) & (bv != ninf), ea * (da - (np.float64(bv) - bs)), 0.0)
    return u


@njit(**_JIT_NR)
def _kl_grad(ar, br, sx, t, oa, bs, inva, invb, rest, gs, ga, gb, i):
    """Row i of ∂KL/∂a = p ((d − d*) − rest) and ∂KL/∂b = q − p, times gs, from the
    exponentials stored by :func:`_kl_sums` (d − d* is taken as 0 where p = 0 or b = −inf, as
    in the generic path)."""
    ninf = _like(-np.inf, br[0])
    for j in range(ar.shape[0]):
        bv = br[j]
        ea = sx[t, 0, j]
        eb = sx[t, 1, j]
        # p and q through a select each, so that q − p is not contracted to fma(e^b, 1/S_b, −p)
        # (which is not 0 for a = b)
        p = _where(ea > 0.0, ea * inva, 0.0)
        q = _where(eb > 0.0, eb * invb, 0.0)
        dd = _where(
            (ea > 0.0) & (bv != ninf), (np.float64(ar[j]) - oa) - (np.float64(bv) - bs), 0.0
        )
        ga[i, j] = (p * (dd - rest)) * gs
        gb[i, j] = (q - p) * gs


@njit(**_JIT_NR)
def _kl_grad_b(sx, t, inva, invb, gs, gb, i):
    """Row i of ∂KL/∂b = q − p alone (rows whose KL is +inf)."""
    for j in range(gb.shape[1]):
        ea = sx[t, 0, j]
        eb = sx[t, 1, j]
        gb[i, j] = (_where(eb > 0.0, eb * invb, 0.0) - _where(ea > 0.0, ea * inva, 0.0)) * gs


@njit(**_JIT_NR)
def _q_minus_p_big(eb, inva, invb, ta, tb, gs):
    """∂KL/∂b at class * as ((q* − 1) − (p* − 1)) gs, with p* − 1 = −(S_a − 1)/S_a and
    q* − 1 = ((e^b* − 1) − (S_b − 1))/S_b, for p* or q* ≥ 1/2, where q − p would cancel to the
    rounding of p and q (the generic path's expm1(log q) − expm1(log p)). A class with p ≥ 1/2
    is *, and one with q ≥ 1/2 elsewhere has p < 1/2, where q − p does not cancel. (The
    selects keep the products out of an fma, as in :func:`_kl_grad`.)"""
    qm1 = _where(invb > 0.0, ((eb - 1.0) - tb) * invb, 0.0)
    pm1 = _where(inva > 0.0, -ta * inva, 0.0)
    return (qm1 - pm1) * gs


@njit(**_PJIT)
def _k_kl(af, ars, bf, brs, n, c, want_grad, gs, lp_min, kl, ga, gb, sx):
    for i in prange(n):
        ar = af[i * ars : i * ars + c]
        br = bf[i * brs : i * brs + c]
        ma = _row_max(ar)
        mb, nmin = _max_negmin(br)
        if _bad_max(ma) or _bad_max(mb):  # a nan or +inf logit in either row: nan row
            kl[i] = np.nan
            if want_grad:
                _fill(ga[i], _like(np.nan, ma))
                _fill(gb[i], _like(np.nan, ma))
            continue
        fa = _finite(ma)
        fb = _finite(mb)
        oa = np.float64(ma) if fa else 0.0
        ob = np.float64(mb) if fb else 0.0
        t = numba.get_thread_id() if want_grad else 0
        if not fa:  # no distribution in `a`: KL = 0, p = 0, ∂KL/∂b = q
            kl[i] = 0.0
            if want_grad:
                _, sb, _ = _kl_sums(ar, br, -1, oa, ob, 0.0, sx, t, True)
                invb = 1.0 / sb if fb else 1.0
                _kl_grad(ar, br, sx, t, oa, 0.0, 1.0, invb, 0.0, gs, ga, gb, i)
            continue
        js = _first_max(ar, ma)
        bv = br[js]
        inf_row = bv == -np.inf  # q* = 0 < p*
        bs = 0.0 if inf_row else np.float64(bv)  # b* (not used when −inf)
        # the sums leave * out (U gets 0 from it)
        ta, tb, u = _kl_sums(ar, br, js, oa, ob, bs, sx, t, want_grad)  # S_a − 1, …
        eb = _exp64_neg(np.float64(bv) - ob)  # e^b*
        tb = _d_plus(eb, 1.0, tb) if fb else 0.0  # S_b − 1 (S_b = 1 without a distribution)
        inva = 1.0 / (1.0 + ta)
        invb = 1.0 / (1.0 + tb)
        lsa = math.log1p(ta)
        rest = 0.0
        # a class with b_j = −inf whose p_j is > 0 in the input dtype makes KL = +inf; one whose
        # p_j is 0 there contributes 0 (and may have made U = +inf)
        if not inf_row and nmin == np.inf:
            inf_row = _masked_live(ar, br, oa, lsa, lp_min) > 0.0
            if not inf_row and u == np.inf:
                u = _u_masked(ar, br, oa, bs, sx, t, want_grad)
        if inf_row:
            kl[i] = np.inf
        else:
            rest = u * inva  # Σ p (d − d*)
            d_star = -lsa - ((bs - ob) - math.log1p(tb))  # log p* − log q*
            v = d_star + rest
            kl[i] = 0.0 if v < 0.0 else v  # clipped at 0 (rounding only)
        if want_grad:
            if inf_row:
                _fill(ga[i], _like(np.nan, ma))
                _kl_grad_b(sx, t, inva, invb, gs, gb, i)
            else:
                _kl_grad(ar, br, sx, t, oa, bs, inva, invb, rest, gs, ga, gb, i)
            if fb and (inva >= 0.5 or eb * invb >= 0.5):
                gb[i, js] = _q_minus_p_big(eb, inva, invb, ta, tb, gs)


# log of half the smallest subnormal: exp(x) of the input dtype is > 0 exactly above it
_LP_MIN = {np.dtype(np.float32): -150 * math.log(2.0), np.dtype(np.float64): -1075 * math.log(2.0)}


def softmax_kl_rows(
    a: np.ndarray, b: np.ndarray, grad_scale: float | None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """KL(softmax(a) ‖ softmax(b)) per row in nats, float64 (N,), clipped at 0, with gradients.

    Returns ``(kl, d/da · grad_scale, d/db · grad_scale)`` (gradients None when ``grad_scale``
    is None). Computed with a float64 exp for both dtypes (accuracy when p ≈ q). Special values
    as the generic path: nan/+inf logits give nan rows (value and both gradients); a class with
    p_c > 0 and b_c = −inf gives KL = +inf, a nan `a` gradient row and the `b` gradient q − p.
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
        # per-thread float64 rows for the exponentials of a and b (on cache lines)
        shape = (_pool_threads(), 2, -(-c // 8) * 8) if want_grad else (1, 2, 8)
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
            _LP_MIN[a.dtype],
            kl,
            ga,
            gb,
            _scratch(shape, np.float64),
        )
    if not want_grad:
        return kl, None, None
    return kl, ga, gb
