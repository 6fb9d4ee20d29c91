"""The softmax Jensen–Shannon divergence kernel (generalized, weight β) and its NumPy wrapper.

The generic path's formulas (:func:`infoloss._generic.measures._softmax_js_generic`): with
p = softmax(a), q = softmax(b), log m = logaddexp(log β + log p, log(1 − β) + log q),
d^P = log p − log m and d^Q = log q − log m (0 where p, resp. q, is 0),

    JSD_β = β KL(P‖M) + (1 − β) KL(Q‖M),   KL(P‖M) = d^P_* + Σ p (d^P − d^P_*)   (Σ p = 1)
    ∂/∂a_j = β p_j ((d^P_j − d^P_*) − Σ p (d^P − d^P_*))

with * the first maximum of `a` (for Q, of `b`), so the dominant class's gradient does not
cancel. Everything is float64 for both dtypes (the exponentials by the float64 polynomial,
log m by its log1p series, both vectorized).

Per row: a max pass over each row, one pass that evaluates and stores the two exponentials and
sums them, one pass that forms log m, the two sums and stores d − d* (per-thread float64 scratch
rows, four of them), and, for the gradient, a last in-cache pass.

Special values as the generic path: a nan or +inf logit in either row gives a nan value and nan
gradient rows; −inf is a masked class (0 contribution, 0 gradient); a row of `a` without a
distribution (all −inf) gives (1 − β) log(1/(1 − β)) (and of `b`, β log(1/β); both, 0) with zero
gradients.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from ._launch import _check2d, _grad_buffer, _gs, _launch, _pool_threads, _rows_view, _scratch
from ._rows import _bad_max, _fill, _finite, _row_max
from ._tunables import _JIT, _JIT_NR, _PJIT
from ._vecmath import _exp64_neg, _fmaximum, _like, _log1p_unit64, _where
from .kl import _first_max

__all__ = ["softmax_js_rows"]

_NINF = -np.inf


@njit(**_JIT_NR, inline="always")
def _log_m(lp, lq, lb, l1b):
    """log(β p + (1 − β) q) from log p, log q: max + log1p(exp(−|u − v|)); −inf when both are."""
    u = lp + lb
    v = lq + l1b
    hi = _fmaximum(u, v)
    lo = -_fmaximum(-u, -v)  # the smaller one (−inf when one is −inf)
    none = hi == _NINF
    gap = _where(none, 0.0, lo - hi)  # ≤ 0, −inf where one side is −inf
    return _where(none, _NINF, hi + _log1p_unit64(_exp64_neg(gap)))


@njit(**_JIT)
def _js_exp_sums(ar, br, oa, ob, sx, t):
    """(Σ e^a, Σ e^b) in float64, e^a_j = exp(a_j − oa) and e^b_j stored into sx[t, 0], sx[t, 1]."""
    ea = sx[t, 0]
    eb = sx[t, 1]
    sa = 0.0
    sb = 0.0
    for j in range(ar.shape[0]):
        x = _exp64_neg(np.float64(ar[j]) - oa)
        y = _exp64_neg(np.float64(br[j]) - ob)
        ea[j] = x
        eb[j] = y
        sa += x
        sb += y
    return sa, sb


@njit(**_JIT)
def _js_terms(ar, br, oa, ob, lsa, lsb, inva, invb, lb, l1b, ja, jb, dps, dqs, sx, t):
    """(Σ p (d^P − d^P_*), Σ q (d^Q − d^Q_*)); d − d* stored into sx[t, 2], sx[t, 3]. At the
    classes * (``ja``, ``jb``) d − d* is set to exactly 0: recomputed in the loop (compiled
    with contractions) it could differ from ``dps`` by an ulp, which would swamp the tiny
    true gradient of a confident row."""
    ea = sx[t, 0]
    eb = sx[t, 1]
    ddp = sx[t, 2]
    ddq = sx[t, 3]
    rp = 0.0
    rq = 0.0
    for j in range(ar.shape[0]):
        p = ea[j] * inva
        q = eb[j] * invb
        lp = (np.float64(ar[j]) - oa) - lsa
        lq = (np.float64(br[j]) - ob) - lsb
        lm = _log_m(lp, lq, lb, l1b)
        dp = _where((p > 0.0) & (j != ja), (lp - lm) - dps, 0.0)
        dq = _where((q > 0.0) & (j != jb), (lq - lm) - dqs, 0.0)
        ddp[j] = dp
        ddq[j] = dq
        rp += p * dp
        rq += q * dq
    return rp, rq


@njit(**_JIT_NR)
def _js_grad(sx, t, inva, invb, rp, rq, wa, wb, ga, gb, i, ref):
    """∂/∂a_j = wa p_j ((d^P_j − d^P_*) − rp), ∂/∂b_j = wb q_j ((d^Q_j − d^Q_*) − rq)."""
    ea = sx[t, 0]
    eb = sx[t, 1]
    ddp = sx[t, 2]
    ddq = sx[t, 3]
    gar = ga[i]
    gbr = gb[i]
    for j in range(gar.shape[0]):
        p = ea[j] * inva
        q = eb[j] * invb
        gar[j] = _like(wa * p * (ddp[j] - rp) + 0.0, ref)
        gbr[j] = _like(wb * q * (ddq[j] - rq) + 0.0, ref)


@njit(**_PJIT)
def _k_js(af, ars, bf, brs, n, c, beta, want_grad, gs, js, ga, gb, sx):
    lb = math.log(beta)
    l1b = math.log1p(-beta)
    for i in prange(n):
        ar = af[i * ars : i * ars + c]
        br = bf[i * brs : i * brs + c]
        ma = _row_max(ar)
        mb = _row_max(br)
        if _bad_max(ma) or _bad_max(mb):  # a nan or +inf logit in either row: nan row
            js[i] = np.nan
            if want_grad:
                _fill(ga[i], _like(np.nan, ma))
                _fill(gb[i], _like(np.nan, ma))
            continue
        fa = _finite(ma)
        fb = _finite(mb)
        if not (fa and fb):  # P or Q (or both) without a distribution: constant, zero gradients
            js[i] = (-(1.0 - beta) * l1b if fb else 0.0) if not fa else -beta * lb
            if want_grad:
                _fill(ga[i], _like(0.0, ma))
                _fill(gb[i], _like(0.0, ma))
            continue
        oa = np.float64(ma)
        ob = np.float64(mb)
        t = numba.get_thread_id()
        sa, sb = _js_exp_sums(ar, br, oa, ob, sx, t)
        inva = 1.0 / sa
        invb = 1.0 / sb
        lsa = math.log(sa)
        lsb = math.log(sb)
        ja = _first_max(ar, ma, 0)
        jb = _first_max(br, mb, 0)
        # d^P at * (a_* = max a) and d^Q at its own *, with the loop's formula
        lps = -lsa
        dps = lps - _log_m(lps, (np.float64(br[ja]) - ob) - lsb, lb, l1b)
        lqs = -lsb
        dqs = lqs - _log_m((np.float64(ar[jb]) - oa) - lsa, lqs, lb, l1b)
        rp, rq = _js_terms(ar, br, oa, ob, lsa, lsb, inva, invb, lb, l1b, ja, jb, dps, dqs, sx, t)
        v = beta * (dps + rp) + (1.0 - beta) * (dqs + rq)
        js[i] = v if v > 0.0 else 0.0  # rounding only
        if want_grad:
            _js_grad(sx, t, inva, invb, rp, rq, beta * gs, (1.0 - beta) * gs, ga, gb, i, ma)


def softmax_js_rows(
    a: np.ndarray, b: np.ndarray, beta: float, grad_scale: float | None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """JSD_β(softmax(a) ‖ softmax(b)) per row in nats, float64 (N,), clipped at 0, and the
    gradients ``(d/da · grad_scale, d/db · grad_scale)`` (None when ``grad_scale`` is None).

    ``beta`` in (0, 1). Special values as the generic path (module docstring).
    """
    _check2d(a)
    _check2d(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        raise ValueError("`a` and `b` must have the same shape and dtype")
    if not 0.0 < beta < 1.0:
        raise ValueError("`beta` must be in (0, 1)")
    n, c = a.shape
    js = np.zeros(n, np.float64)
    want_grad = grad_scale is not None
    ga = _grad_buffer(a, want_grad, None)
    gb = _grad_buffer(a, want_grad, None)
    if n and c:
        af, ars = _rows_view(a)
        bf, brs = _rows_view(b)
        # per-thread float64 rows: e^a, e^b, d^P − d^P_*, d^Q − d^Q_* (on cache lines)
        sx = _scratch((_pool_threads(), 4, -(-c // 8) * 8), np.float64)
        _launch(
            _k_js,
            n * c,
            af,
            ars,
            bf,
            brs,
            n,
            c,
            float(beta),
            want_grad,
            _gs(grad_scale),
            js,
            ga,
            gb,
            sx,
        )
    if not want_grad:
        return js, None, None
    return js, ga, gb
