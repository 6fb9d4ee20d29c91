"""The softmax KL divergence kernel and its NumPy wrapper."""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from . import _tunables
from ._launch import _check2d, _grad_buffer, _gs, _launch, _pool_threads, _rows_view, _scratch
from ._rows import (
    _BLK,
    _bad_max,
    _d_plus,
    _fill,
    _finite,
    _key_max,
    _key_range,
    _row_range_span,
)
from ._tunables import _JIT, _JIT_NR, _PJIT
from ._vecmath import (
    _exp64_neg,
    _exp64_neg_short,
    _fence,
    _fkey,
    _funkey,
    _like,
    _stream_copy,
    _where,
)
from .kl_float32 import _kl_fast_row, _q_minus_p_big

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
#
# Float32 rows first try the float32 route (:mod:`.kl_float32`, "float32 rows"); this module
# holds the float64 route, which every row it does not keep takes.


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
    af,
    ars,
    bf,
    brs,
    n,
    c,
    want_grad,
    gs,
    lp_min,
    kl,
    ga,
    gb,
    sx,
    sx32,
    tmp,
    stream,
    short,
    route,
    grp,
):
    # Rows in groups of ``grp`` consecutive rows (a function of N only: the routes, and so the
    # values, do not depend on the number of threads): after a row whose value the float32 exps
    # could not keep, the rest of its group goes straight to the float64 exps (rows alike, such
    # as p ≈ q in distillation, would each pay for a float32 pass they cannot use).
    for gi in prange((n + grp - 1) // grp):
        try32 = short
        for i in range(gi * grp, min(n, gi * grp + grp)):
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
            if try32 and nmin != np.inf:  # float32, no masked class in `b` (so b is finite)
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
                try32 = keep_v
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


#: Rows per group of :func:`_k_kl` (the float32 route's give-up unit), from N = 16 groups up
_KL_GROUP = 16

# log of half the smallest subnormal: exp(x) of the input dtype is > 0 exactly above it
_LP_MIN = {np.dtype(np.float32): -150 * math.log(2.0), np.dtype(np.float64): -1075 * math.log(2.0)}


def softmax_kl_rows(
    a: np.ndarray, b: np.ndarray, grad_scale: float | None, route: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """KL(softmax(a) ‖ softmax(b)) per row in nats, float64 (N,), clipped at 0, with gradients.

    Returns ``(kl, d/da · grad_scale, d/db · grad_scale)`` (gradients None when ``grad_scale``
    is None). Float32 rows without a masked class in `b` are first computed with float32 exps
    under an error estimate (:mod:`.kl_float32`); a row whose estimate is too large, and
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
            _KL_GROUP if n >= 16 * _KL_GROUP else 1,
        )
    if not want_grad:
        return kl, None, None
    return kl, ga, gb
