"""The softmax entropy and softmax KL divergence kernels and their NumPy wrappers."""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from . import _tunables
from ._launch import _check2d, _grad_buffer, _gs, _launch, _pool_threads, _rows_view, _scratch
from ._rows import (
    _BLK,
    _SHORT,
    _bad_max,
    _d_plus,
    _fill,
    _finite,
    _key_max,
    _key_range,
    _prefetch_block,
    _row_max_span,
    _row_range_span,
    _sub_nr,
)
from ._tunables import _JIT, _JIT_NR, _PJIT
from ._vecmath import (
    _exp32_diff,
    _exp64_neg,
    _exp64_neg_short,
    _fence,
    _fkey,
    _fmaximum,
    _funkey,
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
# spread 1e4 ~1e6 ulps of the row's largest gradient.) Everything is float64 for both dtypes
# (float32 rows take the shorter float64 exp, :func:`_kl_exp`).
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


# The per-row calls that write take whole arrays and a row index (the scratch row ``sx[t]`` of
# thread t, the gradient rows ``ga[i]``, ``gb[i]``) rather than slices: each slice handed to such
# a call (which LLVM does not inline) costs ~12 ns (measured: its reference counting), which
# was most of the time of a row of 8 classes.


_FIND = 256  # block of the first-maximum search


@njit(**_JIT)
def _first_max(xr, m, lo):
    """The first index j with xr[j] == m (m is the row's finite maximum), searched from block
    ``lo`` of _BLK elements (the first that holds it, :func:`_row_range_span`; 0 when not
    known). Long rows: blocks of _FIND elements are tested with a vectorized count (over a
    slice, from 0: see :func:`_kl_sums`), the first one that holds m is scanned."""
    n = xr.shape[0]
    j0 = lo * _BLK
    if n - j0 > _FIND:
        z0 = _like(0.0, m)
        for b0 in range(j0, n, _FIND):
            xb = xr[b0 : min(b0 + _FIND, n)]
            k = z0
            for j in range(xb.shape[0]):
                k += _like(xb[j] == m, m)
            if k > z0:
                for j in range(xb.shape[0]):
                    if xb[j] == m:
                        return b0 + j
    for j in range(j0, n):
        if xr[j] == m:
            return j
    return 0


@njit(**_JIT)
def _max_negmin(xr):
    """(max, −min) of a row in one pass (NaN if it holds a NaN); −min = +inf flags a −inf."""
    k0 = _fkey(xr[0])
    kmax, kmin = _key_range(xr, 0, xr.shape[0], k0, k0)
    m = _key_max(kmax, kmin, xr[0])
    return m, _where(m != m, m, -_funkey(kmin))


@njit(**_JIT, inline="always")
def _kl_pass(ar, br, js, oa, ob, bs, sx, t, store, short):
    """The loop of :func:`_kl_sums` with one of the two exps (``short`` and ``store`` are
    constants of each of its four call sites: no branch inside the loop)."""
    ta = 0.0
    tb = 0.0
    u = 0.0
    for j in range(ar.shape[0]):
        bv = np.float64(br[j])
        da = np.float64(ar[j]) - oa
        if short:
            ea = _exp64_neg_short(da)
            eb = _exp64_neg_short(bv - ob)
        else:
            ea = _exp64_neg(da)
            eb = _exp64_neg(bv - ob)
        if store:
            sx[t, 0, j] = ea
            sx[t, 1, j] = eb
        other = j != js
        ta += _where(other, ea, 0.0)
        tb += _where(other, eb, 0.0)
        u += _where(ea > 0.0, ea * (da - (bv - bs)), 0.0)
    return ta, tb, u


@njit(**_JIT)
def _kl_sums(ar, br, js, oa, ob, bs, sx, t, store, short):
    """One pass over a row pair: (Σ_{j≠js} e^a_j, Σ_{j≠js} e^b_j, U = Σ_{e^a_j>0} e^a_j
    ((a_j − oa) − (b_j − bs))), with e^a_j = exp(a_j − oa), e^b_j = exp(b_j − ob) in float64
    (:func:`_kl_exp`), stored into ``sx[t, 0]``, ``sx[t, 1]`` when ``store``. A term of U with
    b_j = −inf is +inf (see :func:`_u_masked`). Selects, not branches, and indices from 0 (with
    ``range(j0, j1)`` numba's negative-index wraparound keeps the stores scalar, 9× slower):
    the loop vectorizes."""
    if short:
        if store:
            return _kl_pass(ar, br, js, oa, ob, bs, sx, t, True, True)
        return _kl_pass(ar, br, js, oa, ob, bs, sx, t, False, True)
    if store:
        return _kl_pass(ar, br, js, oa, ob, bs, sx, t, True, False)
    return _kl_pass(ar, br, js, oa, ob, bs, sx, t, False, False)


@njit(**_JIT_NR, inline="always")
def _kl_exp(x, short):
    """exp(x) for x <= 0 in float64: :func:`_exp64_neg` (float64 inputs), or its shorter
    polynomial :func:`_exp64_neg_short` (float32 inputs: relative error <= 2e-14)."""
    return _exp64_neg_short(x) if short else _exp64_neg(x)


@njit(**_JIT)
def _masked_live(ar, br, oa, lsa, lp_min):
    """The number of classes with b_j = −inf and log p_j = (a_j − oa) − log S_a > lp_min."""
    ninf = _like(-np.inf, br[0])
    k = 0.0
    for j in range(ar.shape[0]):
        k += _like((br[j] == ninf) & (((np.float64(ar[j]) - oa) - lsa) > lp_min), 0.0)
    return k


@njit(**_JIT)
def _u_masked(ar, br, oa, bs, sx, t, stored, short):
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
            ea = _kl_exp(da, short)
            u += _where((ea > 0.0) & (bv != ninf), ea * (da - (np.float64(bv) - bs)), 0.0)
    return u


@njit(**_JIT_NR)
def _kl_grad(ar, br, sx, t, oa, bs, inva, invb, rest, gs, ga, gb, i, amode, js, gbjs, tmp, stream):
    """Row i of ∂KL/∂a = p ((d − d*) − rest) (``amode`` 0; 1: a nan row, KL = +inf) and
    ∂KL/∂b = q − p (with ``gbjs`` at class ``js`` when 0 ≤ js), times gs, from the exponentials
    stored by :func:`_kl_sums` (d − d* is taken as 0 where p = 0 or b = −inf, as in the generic
    path). Blocks of _BLK are formed in the per-thread ``tmp[t]`` (the gradients' dtype) and
    copied out, with streaming stores when ``stream``."""
    ninf = _like(-np.inf, br[0])
    c = ar.shape[0]
    gar = ga[i]
    gbr = gb[i]
    tma = tmp[t, 0]
    tmb = tmp[t, 1]
    for b0 in range(0, c, _BLK):
        b1 = min(b0 + _BLK, c)
        ub0 = np.uint64(b0)
        if amode == 0:
            for j in range(ub0, np.uint64(b1)):
                bv = br[j]
                ea = sx[t, 0, j]
                eb = sx[t, 1, j]
                # p and q through a select each, so that q − p is not contracted to
                # fma(e^b, 1/S_b, −p) (which is not 0 for a = b)
                p = _where(ea > 0.0, ea * inva, 0.0)
                q = _where(eb > 0.0, eb * invb, 0.0)
                dd = _where(
                    (ea > 0.0) & (bv != ninf), (np.float64(ar[j]) - oa) - (np.float64(bv) - bs), 0.0
                )
                tma[j - ub0] = (p * (dd - rest)) * gs
                tmb[j - ub0] = (q - p) * gs
        else:
            for j in range(ub0, np.uint64(b1)):
                ea = sx[t, 0, j]
                eb = sx[t, 1, j]
                p = _where(ea > 0.0, ea * inva, 0.0)
                q = _where(eb > 0.0, eb * invb, 0.0)
                tmb[j - ub0] = (q - p) * gs
        if b0 <= js < b1:
            tmb[js - b0] = gbjs
        n = b1 - b0
        if stream:
            if amode == 0:
                _stream_copy(tma[:n], gar[b0:b1])
            else:
                _fill(gar[b0:b1], _like(np.nan, tma[0]))
            _stream_copy(tmb[:n], gbr[b0:b1])
        else:
            for j in range(n):
                gar[b0 + j] = tma[j] if amode == 0 else np.nan
                gbr[b0 + j] = tmb[j]
    if stream:
        _fence()  # the row's streaming stores are complete before the kernel returns


# --- float32 rows: float32 exponentials under an error estimate
#
# A float32 row pair without a masked class in `b` is first computed with float32 exps
# (:func:`_exp32_diff`: < 1.1 ulp, the rounding of x − max carried into the reduced argument)
# summed in float32 blocks of _BLK (the block sums added in float64), twice as fast as the
# float64 exps. The float64 exps are kept where they are needed: KL is d* + Σ p (d − d*), two
# terms of the size of the logit differences that cancel when p ≈ q, and ∂KL/∂b = q − p cancels
# to the rounding of p and q.
# - Value: its error is estimated, in float32 epsilons, as 2 + 2 ((S_a − 1)/S_a + (S_b − 1)/S_b)
#   + 4 W/S_a, with W = Σ e^a_j (|a_j − a*| + |b_j − b*|) (the terms' rounding). The row is
#   recomputed with the float64 exps unless that is at most _KL_VALUE_ULPS of the value's scale
#   max(KL, 1 + log C) (the tests hold every path to 8 ulps of it) and at most _KL_VALUE_REL of
#   KL itself (4 significant digits at least: a small KL, p ≈ q, takes the float64 exps, which
#   keep its relative accuracy).
# - Gradients: formed in float64 from the float32 exponentials, with the row's maxima
#   G_a = max |∂KL/∂a|, G_b = max |q − p| and M = max (p + q) (without class * where its q − p
#   is formed apart, :func:`_q_minus_p_big`). Their errors are estimated as 2 W/S_a · max p / G_a
#   (the rounding of Σ p (d − d*)) and 2.5 M / G_b ulps of the row's largest gradient. The
#   row's gradients are recomputed with the float64 exps (the value is kept) unless both are at
#   most _KL_GRAD_ULPS and neither row spans more than 86 (max − min, a −inf included): the
#   float32 exps flush exp(−86) and below to 0, where the float64 exps keep gradient entries
#   that float32 holds as subnormals.
# Calibration (independent, near and confident rows, C from 24 to 32000, logit scales 0.1 to
# 30, against x87 extended precision with the estimates switched off): value errors ≤ 1.3 ulps
# of the scale, gradient errors ≤ 1.9 (0.5 + the a estimate) and ≤ 1.8 × the b estimate.
_KL_VALUE_ULPS = 4.0
_KL_VALUE_REL = 1e-4
_KL_GRAD_ULPS = 4.0
_EPS32 = 2.0**-23


@njit(**_JIT, inline="always")
def _kl_block32(ar, br, b0, b1, ujs, ma, mb, bs, sx, t):
    """One block of :func:`_kl_sums32`, in float32: (Σ_{j≠*} e^a_j, Σ_{j≠*} e^b_j,
    Σ e^a_j ((a_j − a*) − (b_j − b*)), Σ e^a_j (|a_j − a*| + |b_j − b*|)), storing the
    exponentials into ``sx[t]`` (also for the value alone: one loop, vectorized one way, gives
    the value bit for bit the same with or without the gradients)."""
    z = np.float32(0.0)
    sa = z
    sb = z
    su = z
    sw = z
    for j in range(np.uint64(b0), np.uint64(b1)):
        av = ar[j]
        bv = br[j]
        ea = _exp32_diff(av, ma)
        eb = _exp32_diff(bv, mb)
        sx[t, 0, j] = ea
        sx[t, 1, j] = eb
        other = j != ujs
        sa += _where(other, ea, z)
        sb += _where(other, eb, z)
        da = av - ma
        db = bv - bs
        live = ea > z
        su += _where(live, ea * (da - db), z)
        sw += _where(live, ea * (abs(da) + abs(db)), z)
    return sa, sb, su, sw


@njit(**_JIT)
def _kl_sums32(ar, br, xa, xb, js, ma, mb, bs, sx, t):
    """(S_a − 1, S_b − 1, U, W) of a float32 row pair (:func:`_kl_block32`, block sums in
    float64), the next rows ``xa``, ``xb`` prefetched block by block."""
    n = ar.shape[0]
    ujs = np.uint64(js)
    ta = 0.0
    tb = 0.0
    u = 0.0
    w = 0.0
    for b0 in range(0, n, _BLK):
        b1 = min(b0 + _BLK, n)
        if n > _SHORT:
            _prefetch_block(xa, xa, b0, b1, False)
            _prefetch_block(xb, xb, b0, b1, False)
        sa, sb, su, sw = _kl_block32(ar, br, b0, b1, ujs, ma, mb, bs, sx, t)
        ta += np.float64(sa)
        tb += np.float64(sb)
        u += np.float64(su)
        w += np.float64(sw)
    return ta, tb, u, w


@njit(**_JIT, inline="always")
def _kl_emit_block(
    ap, bp, sx, t, b0, b1, oa, bs, inva, invb, rest, gs, gap, gbp, js, ujs, gbjs, tmp, stream
):
    """Block [b0, b1) of a row's gradients (:func:`_kl_grad32`) from the float32 exponentials in
    ``sx[t]``, formed in ``tmp[t]`` and copied to the gradient rows ``gap``, ``gbp`` (streaming
    stores when ``stream``); returns the block's (G_a, G_b, M)."""
    tma = tmp[t, 0]
    tmb = tmp[t, 1]
    g_a = 0.0
    g_b = 0.0
    mpq = 0.0
    ub0 = np.uint64(b0)
    for j in range(ub0, np.uint64(b1)):
        ea = np.float64(sx[t, 0, j])
        eb = np.float64(sx[t, 1, j])
        p = _where(ea > 0.0, ea * inva, 0.0)
        q = _where(eb > 0.0, eb * invb, 0.0)
        dd = _where(ea > 0.0, (np.float64(ap[j]) - oa) - (np.float64(bp[j]) - bs), 0.0)
        va = (p * (dd - rest)) * gs
        vb = (q - p) * gs
        g_a = _fmaximum(g_a, abs(va))
        g_b = _fmaximum(g_b, abs(vb))
        mpq = _fmaximum(mpq, _where(j != ujs, p + q, 0.0))
        tma[j - ub0] = va
        tmb[j - ub0] = vb
    if b0 <= js < b1:
        tmb[js - b0] = gbjs
    n = b1 - b0
    if stream:
        _stream_copy(tma[:n], gap[b0:b1])
        _stream_copy(tmb[:n], gbp[b0:b1])
    else:
        for j in range(n):
            gap[b0 + j] = tma[j]
            gbp[b0 + j] = tmb[j]
    return g_a, g_b, mpq


@njit(**_JIT)
def _kl_grad32(ar, br, sx, t, oa, bs, inva, invb, rest, gs, ga, gb, i, js, gbjs, tmp, stream):
    """:func:`_kl_grad` (a row without masked classes in `b`, KL finite) from the float32
    exponentials of :func:`_kl_sums32`, in float64; returns (G_a, G_b, M) (see above), G_a and
    G_b of the gradients times gs."""
    c = ar.shape[0]
    gar = ga[i]
    gbr = gb[i]
    g_a = 0.0
    g_b = abs(gbjs)
    mpq = 0.0
    ujs = np.uint64(js if js >= 0 else c)  # (class * when its q − p is formed apart)
    for b0 in range(0, c, _BLK):
        b1 = min(b0 + _BLK, c)
        ka, kb, km = _kl_emit_block(
            ar,
            br,
            sx,
            t,
            b0,
            b1,
            oa,
            bs,
            inva,
            invb,
            rest,
            gs,
            gar,
            gbr,
            js,
            ujs,
            gbjs,
            tmp,
            stream,
        )
        g_a = max(g_a, ka)
        g_b = max(g_b, kb)
        mpq = max(mpq, km)
    if stream:
        _fence()
    return g_a, g_b, mpq


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


@njit(**_JIT_NR)
def _kl_value32(ta, tb, u, w, bv, ma, mb, c, gs):
    """From the sums of :func:`_kl_sums32`: (kept, KL, 1/S_a, 1/S_b, Σ p (d − d*), js fix, its
    ∂KL/∂b) — kept: the value's error estimate passes (see above)."""
    bs = np.float64(bv)
    eb = np.float64(_exp32_diff(bv, mb))  # e^b*
    tb = _d_plus(eb, 1.0, tb)
    inva = 1.0 / (1.0 + ta)
    invb = 1.0 / (1.0 + tb)
    rest = u * inva
    v = -math.log1p(ta) - ((bs - np.float64(mb)) - math.log1p(tb)) + rest
    v = 0.0 if v < 0.0 else v
    est = 2.0 + 2.0 * (ta * inva + tb * invb) + 4.0 * w * inva
    kept = est <= _KL_VALUE_ULPS * max(v, 1.0 + math.log(c)) and est * _EPS32 <= _KL_VALUE_REL * v
    fix = inva >= 0.5 or eb * invb >= 0.5
    gbjs = _q_minus_p_big(eb, inva, invb, ta, tb, gs) if fix else 0.0
    return kept, v, inva, invb, rest, fix, gbjs


@njit(**_JIT_NR)
def _kl_grads_ok(g_a, g_b, mpq, w, inva, gs):
    """The gradients' error estimates (see above) pass."""
    ags = abs(gs)
    return 2.0 * w * inva * inva * ags <= _KL_GRAD_ULPS * g_a and 2.5 * mpq * ags <= (
        _KL_GRAD_ULPS * g_b
    )


@njit(**_JIT_NR)
def _kl_fast_row32(ar, br, xa, xb, js, ma, mb, want_grad, gs, kl, ga, gb, i, sx32, t, tmp, stream):
    """Row i of a float32 pair without masked classes in `b` through the float32 exps (see
    above): (value kept, gradients kept); what is not kept is left to the float64 path."""
    bv = br[js]
    ta, tb, u, w = _kl_sums32(ar, br, xa, xb, js, ma, mb, bv, sx32, t)
    kept, v, inva, invb, rest, fix, gbjs = _kl_value32(ta, tb, u, w, bv, ma, mb, ar.shape[0], gs)
    if not kept:
        return False, False
    kl[i] = v
    if not want_grad:
        return True, True
    g_a, g_b, mpq = _kl_grad32(
        ar,
        br,
        sx32,
        t,
        np.float64(ma),
        np.float64(bv),
        inva,
        invb,
        rest,
        gs,
        ga,
        gb,
        i,
        js if fix else -1,
        gbjs,
        tmp,
        stream,
    )
    return True, _kl_grads_ok(g_a, g_b, mpq, w, inva, gs)


def _kl_fast_row(ar, br, xa, xb, js, ma, mb, want_grad, gs, kl, ga, gb, i, sx32, t, tmp, stream):
    """:func:`_kl_fast_row32` for float32 rows; (False, False) for float64 rows (which only the
    float64 path computes), chosen at compile time."""
    raise NotImplementedError  # pragma: no cover - replaced by the overload


@overload(_kl_fast_row, jit_options={"fastmath": _JIT_NR["fastmath"], "error_model": "numpy"})
def _kl_fast_row_ov(ar, br, xa, xb, js, ma, mb, want_grad, gs, kl, ga, gb, i, sx32, t, tmp, stream):
    if ma == types.float32:
        return (
            lambda ar, br, xa, xb, js, ma, mb, want_grad, gs, kl, ga, gb, i, sx32, t, tmp, stream: (
                _kl_fast_row32(
                    ar, br, xa, xb, js, ma, mb, want_grad, gs, kl, ga, gb, i, sx32, t, tmp, stream
                )
            )
        )
    return lambda ar, br, xa, xb, js, ma, mb, want_grad, gs, kl, ga, gb, i, sx32, t, tmp, stream: (
        False,
        False,
    )


@njit(**_JIT_NR, inline="always")
def _kl_row_start(ar, br, want_grad, gs, kl, ga, gb, i, sx, t, tmp, stream, short):
    """The max passes of row i, and the rows they settle: a nan or +inf logit (nan value and
    gradient rows), no distribution in `a` (KL = 0, p = 0, ∂KL/∂b = q). Returns (settled, max a,
    max b, −min a, −min b, the first block of `a` that holds its maximum)."""
    ma, mina, lo, _ = _row_range_span(ar)
    mb, nmin = _max_negmin(br)
    nmin_a = -np.float64(mina)
    if _bad_max(ma) or _bad_max(mb):
        kl[i] = np.nan
        if want_grad:
            _fill(ga[i], _like(np.nan, ma))
            _fill(gb[i], _like(np.nan, ma))
        return True, ma, mb, nmin_a, nmin, lo
    if not _finite(ma):
        kl[i] = 0.0
        if want_grad:
            fb = _finite(mb)
            ob = np.float64(mb) if fb else 0.0
            _, sb, _ = _kl_sums(ar, br, -1, 0.0, ob, 0.0, sx, t, True, short)
            invb = 1.0 / sb if fb else 1.0
            _kl_grad(
                ar, br, sx, t, 0.0, 0.0, 1.0, invb, 0.0, gs, ga, gb, i, 0, -1, 0.0, tmp, stream
            )
        return True, ma, mb, nmin_a, nmin, lo
    return False, ma, mb, nmin_a, nmin, lo


@njit(**_JIT_NR, inline="always")
def _kl_wide(ma, nmin_a, mb, nmin):
    """A row spans more than 86 (a −inf in `a` included): the float32 exps, which flush exp(−86)
    and below, could lose gradient entries that float32 holds as subnormals."""
    return np.float64(ma) + np.float64(nmin_a) > 86.0 or np.float64(mb) + nmin > 86.0


@njit(**_JIT_NR, inline="always")
def _kl_row64(
    ar,
    br,
    js,
    ma,
    mb,
    nmin,
    want_grad,
    gs,
    lp_min,
    kl,
    ga,
    gb,
    i,
    sx,
    t,
    tmp,
    stream,
    short,
    keep_v,
):
    """Row i (a distribution in `a`, no nan or +inf) with the float64 exps; the value is not
    written when ``keep_v`` (the float32 exps' value, kept: see above)."""
    fb = _finite(mb)
    oa = np.float64(ma)
    ob = np.float64(mb) if fb else 0.0
    bv = br[js]
    inf_row = bv == -np.inf  # q* = 0 < p*
    bs = 0.0 if inf_row else np.float64(bv)  # b* (not used when −inf)
    # the sums leave * out (U gets 0 from it)
    ta, tb, u = _kl_sums(ar, br, js, oa, ob, bs, sx, t, want_grad, short)  # S_a − 1, …
    eb = _kl_exp(np.float64(bv) - ob, short)  # e^b*
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
            u = _u_masked(ar, br, oa, bs, sx, t, want_grad, short)
    if inf_row:
        v = np.inf
    else:
        rest = u * inva  # Σ p (d − d*)
        d_star = -lsa - ((bs - ob) - math.log1p(tb))  # log p* − log q*
        v = d_star + rest
        v = 0.0 if v < 0.0 else v  # clipped at 0 (rounding only)
    if not keep_v:
        kl[i] = v
    if want_grad:
        fix = fb and (inva >= 0.5 or eb * invb >= 0.5)
        _kl_grad(
            ar,
            br,
            sx,
            t,
            oa,
            bs,
            inva,
            invb,
            rest,
            gs,
            ga,
            gb,
            i,
            1 if inf_row else 0,
            js if fix else -1,
            _q_minus_p_big(eb, inva, invb, ta, tb, gs) if fix else 0.0,
            tmp,
            stream,
        )


@njit(**_PJIT)
def _k_kl(
    af, ars, bf, brs, n, c, want_grad, gs, lp_min, kl, ga, gb, sx, sx32, tmp, stream, short, route
):
    for i in prange(n):
        route[i] = 0
        ar = af[i * ars : i * ars + c]
        br = bf[i * brs : i * brs + c]
        t = numba.get_thread_id()
        settled, ma, mb, nmin_a, nmin, lo = _kl_row_start(
            ar, br, want_grad, gs, kl, ga, gb, i, sx, t, tmp, stream, short
        )
        if settled:
            continue
        js = _first_max(ar, ma, lo)
        keep_v = False
        if short and nmin != np.inf:  # float32, no masked class in `b` (so b is finite)
            i1 = min(np.int64(i) + 1, n - 1)
            wide = _kl_wide(ma, nmin_a, mb, nmin)
            keep_v, keep_g = _kl_fast_row(
                ar,
                br,
                af[i1 * ars : i1 * ars + c],
                bf[i1 * brs : i1 * brs + c],
                js,
                ma,
                mb,
                want_grad and not wide,
                gs,
                kl,
                ga,
                gb,
                i,
                sx32,
                t,
                tmp,
                stream,
            )
            keep_g = keep_g and not (want_grad and wide)
            route[i] = np.int8(keep_v) + np.int8(keep_v and keep_g)
            if keep_v and keep_g:
                continue
        _kl_row64(
            ar,
            br,
            js,
            ma,
            mb,
            nmin,
            want_grad,
            gs,
            lp_min,
            kl,
            ga,
            gb,
            i,
            sx,
            t,
            tmp,
            stream,
            short,
            keep_v,
        )


# log of half the smallest subnormal: exp(x) of the input dtype is > 0 exactly above it
_LP_MIN = {np.dtype(np.float32): -150 * math.log(2.0), np.dtype(np.float64): -1075 * math.log(2.0)}


def softmax_kl_rows(
    a: np.ndarray, b: np.ndarray, grad_scale: float | None, route: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """KL(softmax(a) ‖ softmax(b)) per row in nats, float64 (N,), clipped at 0, with gradients.

    Returns ``(kl, d/da · grad_scale, d/db · grad_scale)`` (gradients None when ``grad_scale``
    is None). Float32 rows without a masked class in `b` are first computed with float32 exps
    under an error estimate (see "float32 rows" above); a row whose estimate is too large, and
    every float64 row, takes a float64 exp (accuracy when p ≈ q): for float32 one of relative
    error ≤ 2e-14 (:func:`_exp64_neg_short`), far below float32's ulp. ``route``, an int8 (N,)
    array, receives each row's route: 0 the float64 exps, 1 the float32 exps for the value and
    the float64 exps for the gradients, 2 the float32 exps for everything. Special values
    as the generic path: nan/+inf logits give nan rows (value and both gradients); a class with
    p_c > 0 and b_c = −inf gives KL = +inf, a nan `a` gradient row and the `b` gradient q − p.
    """
    _check2d(a)
    _check2d(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        raise ValueError("`a` and `b` must have the same shape and dtype")
    n, c = a.shape
    if route is not None and (route.dtype != np.int8 or route.shape != (n,)):
        raise ValueError(f"`route` must be an int8 array of shape ({n},)")
    kl = np.zeros(n, np.float64)
    want_grad = grad_scale is not None
    ga = _grad_buffer(a, want_grad, None)
    gb = _grad_buffer(a, want_grad, None)
    if n and c:
        af, ars = _rows_view(a)
        bf, brs = _rows_view(b)
        # per-thread float64 rows for the exponentials of a and b (on cache lines), and blocks
        # of the two gradients
        shape = (_pool_threads(), 2, -(-c // 8) * 8) if want_grad else (1, 2, 8)
        tshape = (_pool_threads(), 2, _BLK) if want_grad else (1, 2, 16)
        sx = _scratch(shape, np.float64)
        sx32 = _scratch(
            (_pool_threads(), 2, -(-c // 16) * 16) if a.dtype == np.float32 else (1, 2, 16),
            np.float32,
        )
        tmp = _scratch(tshape, a.dtype)
        rt = np.zeros(n, np.int8) if route is None else route
        stream = want_grad and ga.nbytes >= _tunables._STREAM_MIN_BYTES
        gs = _gs(grad_scale)
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
            gs,
            _LP_MIN[a.dtype],
            kl,
            ga,
            gb,
            sx,
            sx32,
            tmp,
            stream,
            a.dtype == np.float32,
            rt,
        )
    if not want_grad:
        return kl, None, None
    return kl, ga, gb
