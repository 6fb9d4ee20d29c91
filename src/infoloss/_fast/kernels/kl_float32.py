"""The softmax KL kernel's float32 route: float32 exponentials under a per-row error estimate
(used by :mod:`.kl`, which holds the float64 route, the kernel and its wrapper)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from ._rows import (
    _BLK,
    _SHORT,
    _d_plus,
    _prefetch_block,
)
from ._tunables import _JIT, _JIT_NR
from ._vecmath import (
    _exp32_diff,
    _fence,
    _fmaximum,
    _stream_copy,
    _where,
)

# --------------------------------------------------------------------------- float32 rows
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
