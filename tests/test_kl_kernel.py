"""The softmax KL kernel (``infoloss._fast.kernels.softmax_kl_rows``) and the fast route of
``infoloss.softmax_kl_divergence`` against high-precision references and the generic path.

References: short rows in mpmath (60 digits) and long rows in x87 extended precision
(``np.longdouble``, 64-bit mantissa), both written with identities that are exact in real
arithmetic and never cancel: d_c − d* = (a_c − a*) − (b_c − b*) from the logits (* the first
maximum of `a`), KL = d* + Σ p (d − d*), ∂KL/∂a = p ((d − d*) − Σ p (d − d*)), and 1 − p* as the
sum of the other probabilities. Gradients must be within a few ulps of the row's largest
gradient, values within a few ulps of max(|KL|, 1 + log C) (d* is a difference of
log-partitions of size up to log C).

Against the generic path (``_generic.measures._softmax_kl_generic``, the definition): the
documented tolerances, rtol 1e-12 (float64) / 2e-6 (float32), with the absolute part relative to
the row (:func:`_assert_agree`), and the same special values. float32 results are compared with
the generic definition evaluated in float64 on the same float32 numbers: the generic float32
path itself rounds log-probabilities of the size of the logit spread (and subnormal p) and is
farther than 2e-6 from the exact result in the tail of these batches, while the kernel computes
in float64. Special values are compared in the input dtype (whether p_c > 0, which decides a
+inf KL, depends on it).

The former kernel formed p (d − KL) with d = (a − max a) − (b − max b) − c0: in float64 at logit
spread 1e4 the dominant class kept ~1e-12 absolute error (9.4e5 ulps of the row's largest
gradient, the value 108 ulps off), and a row with KL = +inf gave [-inf, nan, -inf].
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import scipy.special as sp

pytest.importorskip("numba")
import mpmath
from _helpers import assert_close

import infoloss as il
from infoloss import _config
from infoloss._fast import kernels as K

INF, NAN = np.inf, np.nan
DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 2e-6, np.float64: 1e-12}
SPREADS = [1.0, 1e2, 1e4]
ULPS = 8  # accuracy bound against the references, in ulps of the row's magnitude

vg_kl = il.value_and_grad(il.softmax_kl_divergence)


# --------------------------------------------------------------------------- references


def _ref_rows_mp(a, b, dps=60):
    """(KL, ∂/∂a, ∂/∂b) per row in mpmath at ``dps`` digits, as float64 arrays. Rows must hold
    finite or −inf logits; KL = +inf (a class with a_c > −inf = b_c) gives a nan a-gradient."""
    kl, ga, gb = [], [], []
    ninf = mpmath.mpf("-inf")
    with mpmath.workdps(dps):
        for x, y in zip(a, b, strict=True):
            xs = [mpmath.mpf(float(v)) for v in x]
            ys = [mpmath.mpf(float(v)) for v in y]
            n = len(xs)
            mx, my = max(xs), max(ys)
            ea = [mpmath.exp(v - mx) if v > ninf else mpmath.mpf(0) for v in xs]
            eb = [mpmath.exp(v - my) if v > ninf else mpmath.mpf(0) for v in ys]
            sa = mpmath.fsum(ea) if mx > ninf else mpmath.mpf(1)
            sb = mpmath.fsum(eb) if my > ninf else mpmath.mpf(1)
            p = [e / sa for e in ea]
            q = [e / sb for e in eb]
            # q_c - p_c as (q_c - 1) - (p_c - 1) for the classes near 1, with 1 - p_c summed
            big = [max(p[c], q[c]) >= 0.5 for c in range(n)]
            pm1 = [-mpmath.fsum(ea[:c] + ea[c + 1 :]) / sa if mx > ninf else -1 for c in range(n)]
            qm1 = [-mpmath.fsum(eb[:c] + eb[c + 1 :]) / sb if my > ninf else -1 for c in range(n)]
            gb.append([float(qm1[c] - pm1[c] if big[c] else q[c] - p[c]) for c in range(n)])
            if mx == ninf:  # no distribution in a
                kl.append(0.0)
                ga.append([0.0] * n)
                continue
            if any(u > ninf and v == ninf for u, v in zip(xs, ys, strict=True)):
                kl.append(INF)
                ga.append([NAN] * n)
                continue
            js = xs.index(mx)
            e = [
                (u - xs[js]) - (v - ys[js]) if u > ninf else 0 for u, v in zip(xs, ys, strict=True)
            ]
            rest = mpmath.fsum(pc * ec for pc, ec in zip(p, e, strict=True))
            d_star = -mpmath.log(sa) - ((ys[js] - my) - mpmath.log(sb))
            kl.append(float(d_star + rest))
            ga.append([float(pc * (ec - rest)) for pc, ec in zip(p, e, strict=True)])
    return np.array(kl), np.array(ga), np.array(gb)


def _ref_rows_ld(a, b):
    """The references of :func:`_ref_rows_mp` in ``np.longdouble`` for long rows of finite or
    masked logits (no row without a distribution, no +inf KL)."""
    x = np.asarray(a).astype(np.longdouble)
    y = np.asarray(b).astype(np.longdouble)
    rows = np.arange(x.shape[0])
    js = np.argmax(x, axis=1)
    jb = np.argmax(y, axis=1)
    mx = x[rows, js][:, None]
    my = y[rows, jb][:, None]
    ea = np.exp(x - mx)
    eb = np.exp(y - my)
    sa = ea.sum(axis=1, keepdims=True)
    sb = eb.sum(axis=1, keepdims=True)
    p, q = ea / sa, eb / sb
    live = p > 0
    assert not np.any(live & (y == -INF)), "the longdouble reference has no +inf rows"
    with np.errstate(invalid="ignore"):
        e = np.where(live, (x - mx) - (y - y[rows, js][:, None]), 0)
    rest = (p * e).sum(axis=1, keepdims=True)
    d_star = -np.log(sa) - ((y[rows, js][:, None] - my) - np.log(sb))
    kl = (d_star + rest)[:, 0]
    ga = p * (e - rest)
    gb = q - p
    # at the maxima q − p = (q − 1) − (p − 1), with 1 − p* = (S − 1)/S: no rounding of p* ≈ 1
    for j in (js, jb):
        pm1 = np.where(j == js, -(sa[:, 0] - 1) / sa[:, 0], p[rows, j] - 1)
        qm1 = np.where(j == jb, -(sb[:, 0] - 1) / sb[:, 0], q[rows, j] - 1)
        gb[rows, j] = qm1 - pm1
    return kl.astype(np.float64), ga.astype(np.float64), gb.astype(np.float64)


def _spread_rows(spread, dtype, n, c, seed, masked=False, near=4):
    """Rows of independent logits uniform over ``spread`` with ``near`` classes within 15 of each
    row's maximum (so that p has several live classes); ``masked``: −inf in both a and b (a
    masked class) or in a only (p = 0 there), never in b alone."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-0.5, 0.5, (n, c)) * spread
    b = rng.uniform(-0.5, 0.5, (n, c)) * spread
    for i in range(n):
        k = rng.choice(c, min(near, c), replace=False)
        a[i, k] = a[i].max() - rng.uniform(0, 15, k.size)
    if masked:
        both = rng.random((n, c)) < 0.2
        a_only = (rng.random((n, c)) < 0.2) & ~both
        both[np.arange(n), np.argmax(a, axis=1)] = False  # keep a distribution in every row
        a_only[np.arange(n), np.argmax(a, axis=1)] = False
        a[both | a_only] = -INF
        b[both] = -INF
    return a.astype(dtype), b.astype(dtype)


def _row_ulps(got, ref, dtype):
    """max |got − ref| / max |ref| per row (nan positions and infinities must match), in ulps."""
    got = np.asarray(got, np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(got[np.isinf(ref)], ref[np.isinf(ref)])
    fin = np.isfinite(ref)
    scale = np.maximum(
        np.abs(np.where(fin, ref, 0)).max(axis=1, keepdims=True), np.finfo(dtype).tiny
    )
    err = np.abs(np.where(fin, got, 0) - np.where(fin, ref, 0)) / scale
    return float(err.max()) / np.finfo(dtype).eps


def _value_ulps(got, ref, dtype, c):
    """max |got − ref| / max(|ref|, 1 + log c) in ulps (equal infinities count as exact): KL is
    d* + Σ p (d − d*) with d* a difference of log-partitions of size up to log c."""
    got = np.asarray(got, np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(got[np.isinf(ref)], ref[np.isinf(ref)])
    fin = np.isfinite(ref)
    err = np.abs(got[fin] - ref[fin]) / np.maximum(np.abs(ref[fin]), 1.0 + math.log(c))
    return float(err.max(initial=0.0)) / np.finfo(dtype).eps


def _kernel(a, b, gs=1.0):
    return K.softmax_kl_rows(a, b, gs)


def _public_fast_and_generic(a, b, generic_dtype=None):
    """(value, ga, gb) of the public function on the fast path, and on the generic path with the
    inputs cast to ``generic_dtype`` (default: their own)."""
    vf, (gaf, gbf) = vg_kl(a, b)
    dt = a.dtype if generic_dtype is None else generic_dtype
    with _config.generic_only():
        vg, (gag, gbg) = vg_kl(a.astype(dt), b.astype(dt))
    return (vf, gaf, gbf), (vg, gag, gbg)


def _magnitudes(a, b):
    """Per row, the sizes of the terms that cancel in the gradients (as tests/test_numba_kernels
    .py): max p (|log p| + |log q| + 1) for ∂/∂a, max (p + q) for ∂/∂b."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    lp = a - sp.logsumexp(a, axis=1, keepdims=True)
    lq = b - sp.logsumexp(b, axis=1, keepdims=True)
    p, q = np.exp(lp), np.exp(lq)
    with np.errstate(invalid="ignore"):
        ma = np.where(p > 0, p * (np.abs(lp) + np.abs(lq) + 1), 0.0)
    return np.max(ma, axis=1, keepdims=True), np.max(p + q, axis=1, keepdims=True)


def _assert_agree(fast, generic, a, b, what="", magnitudes=False):
    """Fast and generic results agree: the fast results have the input dtype, the same nan
    positions and infinities, and |f − g| ≤ rtol (|g| + 1) for values, ≤ rtol (|g| + S) + F for
    gradients, with rtol that of the input dtype, S the row's largest |g| (or, with
    ``magnitudes``, the size of the terms that cancel, :func:`_magnitudes`) and F the gradient
    that a probability below the dtype's smallest normal number can give, tiny · (1 + the row's
    largest |a| + |b|): the kernels' exp flushes results below 2^-1021.5 to 0 (docs of
    infoloss._fast.kernels), and the generic float32 path rounds subnormal p."""
    dtype = a.dtype.type
    rtol = RTOL[dtype]
    fa = np.where(np.isfinite(a), np.abs(a), 0).astype(np.float64).max(axis=1, keepdims=True)
    fb = np.where(np.isfinite(b), np.abs(b), 0).astype(np.float64).max(axis=1, keepdims=True)
    floor = np.finfo(dtype).tiny * (1 + fa + fb)
    mags = _magnitudes(a, b) if magnitudes else (None, None)
    for k, name in enumerate(("value", "grad a", "grad b")):
        f = fast[k]
        g = np.asarray(generic[k], np.float64)
        assert f.dtype == dtype, (name, f.dtype)
        f = np.asarray(f, np.float64)
        np.testing.assert_array_equal(np.isnan(f), np.isnan(g), err_msg=f"{what} {name}: nan")
        inf = np.isinf(g)
        np.testing.assert_array_equal(f[inf], g[inf], err_msg=f"{what} {name}: infinities")
        fin = np.isfinite(g)
        g0 = np.where(fin, g, 0.0)
        if k == 0:
            bound = rtol * (np.abs(g0) + 1)
        else:
            scale = mags[k - 1] if magnitudes else np.abs(g0).max(axis=1, keepdims=True)
            bound = rtol * (np.abs(g0) + scale) + floor
        err = np.abs(np.where(fin, f, 0.0) - g0)
        bad = fin & ~(err <= bound)
        assert not bad.any(), (
            f"{what} {name}: {int(bad.sum())} of {bad.size} off; worst excess "
            f"{np.max(np.where(bad, err / bound, 0)):.3g}× at {np.argwhere(bad)[0]}"
        )


# --------------------------------------------------------------------------- accuracy


@functools.cache
def _short_case(spread, dtype, masked):
    seed = int(math.log10(spread)) + 7 * masked
    a, b = _spread_rows(spread, dtype, 12, 24, seed=seed, masked=masked)
    return a, b, _ref_rows_mp(a, b)


@pytest.mark.parametrize("masked", [False, True], ids=["plain", "masked"])
@pytest.mark.parametrize("spread", SPREADS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_against_mpmath(dtype, spread, masked):
    a, b, (rk, rga, rgb) = _short_case(spread, dtype, masked)
    kl, ga, gb = _kernel(a, b)
    assert kl.dtype == np.float64 and ga.dtype == gb.dtype == dtype
    # the kernel returns float64 values: rounded to the input dtype they are within a few ulps
    assert _value_ulps(kl.astype(dtype), rk, dtype, a.shape[1]) <= ULPS
    assert _row_ulps(ga, rga, dtype) <= ULPS, _row_ulps(ga, rga, dtype)
    assert _row_ulps(gb, rgb, dtype) <= ULPS, _row_ulps(gb, rgb, dtype)
    kl0, ga0, gb0 = K.softmax_kl_rows(a, b, None)
    assert ga0 is None and gb0 is None
    np.testing.assert_array_equal(kl0, kl)


def test_float64_spread_1e4_dominant_class():
    """The case of the report: float64 logits spread over 1e4, the dominant class's gradient
    (p ≈ 1, d ≈ KL) was 9.4e5 ulps of the row's largest gradient off."""
    a, b, (rk, rga, _) = _short_case(1e4, np.float64, False)
    kl, ga, _ = _kernel(a, b)
    star = np.argmax(a, axis=1)
    rows = np.arange(a.shape[0])
    scale = np.abs(rga).max(axis=1)
    assert np.all(np.abs(ga[rows, star] - rga[rows, star]) <= 4 * np.finfo(np.float64).eps * scale)
    assert _value_ulps(kl, rk, np.float64, a.shape[1]) <= 4


@pytest.mark.parametrize("dtype", DTYPES)
def test_confident_rows_against_mpmath(dtype):
    """p and q near 1 on the same class (tiny gradients, q* − p* from S − 1 without cancellation),
    or on different classes."""
    rng = np.random.default_rng(11)
    n, c = 12, 16
    a = rng.normal(0, 1, (n, c))
    b = rng.normal(0, 1, (n, c))
    k = rng.integers(0, c, n)
    rows = np.arange(n)
    a[rows, k] += rng.uniform(20, 45, n)
    b[rows, np.where(rows % 2 == 0, k, (k + 1) % c)] += rng.uniform(20, 45, n)
    a, b = a.astype(dtype), b.astype(dtype)
    rk, rga, rgb = _ref_rows_mp(a, b, dps=80)
    kl, ga, gb = _kernel(a, b)
    assert _value_ulps(kl.astype(dtype), rk, dtype, a.shape[1]) <= ULPS
    assert _row_ulps(ga, rga, dtype) <= 2 * ULPS
    assert _row_ulps(gb, rgb, dtype) <= ULPS
    _assert_agree(*_public_fast_and_generic(a, b, np.float64), a, b, "confident")


@pytest.mark.parametrize("masked", [False, True], ids=["plain", "masked"])
@pytest.mark.parametrize("spread", SPREADS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_long_rows_parallel_against_longdouble(dtype, spread, masked):
    """40 × 5000 = 2e5 elements (≥ 2^17: the threaded kernel) against the longdouble reference."""
    if np.finfo(np.longdouble).eps > 1e-18:
        pytest.skip("np.longdouble is not the x87 extended type here")
    a, b = _spread_rows(spread, dtype, 40, 5000, seed=5, masked=masked, near=12)
    assert a.size >= 1 << 17
    rk, rga, rgb = _ref_rows_ld(a, b)
    kl, ga, gb = _kernel(a, b)
    assert _value_ulps(kl.astype(dtype), rk, dtype, a.shape[1]) <= ULPS
    assert _row_ulps(ga, rga, dtype) <= ULPS
    assert _row_ulps(gb, rgb, dtype) <= ULPS
    # the first rows alone take the serial kernel: bit for bit the same results
    k2, ga2, gb2 = _kernel(a[:3], b[:3])
    np.testing.assert_array_equal(k2, kl[:3])
    np.testing.assert_array_equal(ga2, ga[:3])
    np.testing.assert_array_equal(gb2, gb[:3])


# --------------------------------------------------------------------------- against generic


@pytest.mark.parametrize("shape", [(12, 8), (40, 5000), (20000, 8)], ids=["short", "long", "many"])
@pytest.mark.parametrize("masked", [False, True], ids=["plain", "masked"])
@pytest.mark.parametrize("spread", SPREADS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_public_fast_agrees_with_generic(dtype, spread, masked, shape):
    n, c = shape
    a, b = _spread_rows(spread, dtype, n, c, seed=n + c, masked=masked, near=min(4, c - 1))
    fast, generic = _public_fast_and_generic(a, b, np.float64)
    _assert_agree(fast, generic, a, b, f"{shape}")
    # the public function took the kernel (the glue only casts its float64 values)
    kl, ga, gb = _kernel(a, b)
    np.testing.assert_array_equal(fast[0], kl.astype(dtype))
    np.testing.assert_array_equal(fast[1], ga)
    np.testing.assert_array_equal(fast[2], gb)


@pytest.mark.parametrize("dtype", DTYPES)
def test_near_distributions_agree_with_generic(dtype):
    """p ≈ q (b = a + 1e-3 noise): KL ~ 1e-7 and gradients ~ 1e-3 p, all from differences of
    nearly equal quantities; both paths keep the documented agreement."""
    rng = np.random.default_rng(4)
    for spread in SPREADS:
        a = rng.uniform(-0.5, 0.5, (30, 64)) * spread
        b = a + rng.normal(0, 1e-3, a.shape)
        a32, b32 = a.astype(dtype), b.astype(dtype)
        fast, generic = _public_fast_and_generic(a32, b32, np.float64)
        _assert_agree(fast, generic, a32, b32, f"spread {spread}", magnitudes=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_equal_logits_give_exact_zeros(dtype):
    """KL(p ‖ p) = 0 with exactly zero gradients (both sides of q − p computed alike)."""
    rng = np.random.default_rng(2)
    for n, c in ((5, 3), (7, 1000), (40, 5000)):
        a = (rng.standard_normal((n, c)) * 30).astype(dtype)
        a[0, : c // 3] = -INF
        kl, ga, gb = _kernel(a, a.copy())
        assert not kl.any() and not ga.any() and not gb.any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_scale_and_ties(dtype):
    a = np.array([[2.0, 1.0, 2.0, -1.0], [3.0, 3.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]], dtype)
    b = np.array([[0.0, 1.0, -3.0, 2.0], [1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 2.0, 3.0]], dtype)
    rk, rga, rgb = _ref_rows_mp(a, b)
    kl, ga, gb = _kernel(a, b, 0.5)
    assert _value_ulps(kl.astype(dtype), rk, dtype, a.shape[1]) <= ULPS
    assert _row_ulps(2 * ga.astype(np.float64), rga, dtype) <= ULPS
    assert _row_ulps(2 * gb.astype(np.float64), rgb, dtype) <= ULPS
    _assert_agree(*_public_fast_and_generic(a, b, np.float64), a, b, "ties")
    # log base 2: values and gradients divided by log 2
    v2, (ga2, gb2) = il.value_and_grad(il.softmax_kl_divergence)(a, b, base=2)
    rtol = RTOL[dtype]
    assert_close(v2, (rk / math.log(2)).astype(dtype), rtol=rtol, atol=rtol, scale="all")
    assert_close(ga2, (rga / math.log(2)).astype(dtype), rtol=rtol, atol=rtol, scale="row")
    assert_close(gb2, (rgb / math.log(2)).astype(dtype), rtol=rtol, atol=rtol, scale="row")


# --------------------------------------------------------------------------- special values

# (a row, b row) pairs; the generic path is the reference for each
SPECIAL = {
    "kl +inf": ([0.0, 1.0, 2.0], [0.0, -INF, 2.0]),
    "kl +inf, b* masked": ([0.0, 1.0, 2.0], [0.0, 1.0, -INF]),
    "kl +inf, tie in a": ([2.0, 1.0, 2.0], [0.0, 1.0, -INF]),
    "no distribution in b": ([0.0, 1.0, 2.0], [-INF, -INF, -INF]),
    "no distribution in a": ([-INF, -INF, -INF], [0.0, 1.0, 2.0]),
    "no distribution": ([-INF, -INF, -INF], [-INF, -INF, -INF]),
    "masked in both": ([0.0, -INF, 2.0], [1.0, -INF, 0.0]),
    "masked in a": ([0.0, -INF, 2.0], [0.0, 5.0, 2.0]),
    "nan in a": ([NAN, 1.0, 2.0], [0.0, 1.0, 2.0]),
    "nan in b": ([0.0, 1.0, 2.0], [0.0, NAN, 2.0]),
    "+inf in a": ([INF, 1.0, 2.0], [0.0, 1.0, 2.0]),
    "+inf in b": ([0.0, 1.0, 2.0], [0.0, 1.0, INF]),
    "nan and kl +inf": ([0.0, 1.0, NAN], [0.0, -INF, 2.0]),
    "+inf in a, no distribution in b": ([INF, 1.0, 2.0], [-INF, -INF, -INF]),
    "nan in b, no distribution in a": ([-INF, -INF, -INF], [0.0, NAN, 2.0]),
    "+inf and -inf": ([-INF, INF, 0.0], [0.0, 0.0, 0.0]),
    # p_1 = e^-200: 0 in float32 (no +inf), > 0 in float64 (+inf), as on the generic path
    "p underflows in float32": ([0.0, -200.0, 0.0], [0.0, -INF, 0.0]),
    # p_1 = e^-730: subnormal in float64 (+inf); e^-800: 0 in float64 too
    "p subnormal in float64": ([0.0, -730.0, 0.0], [0.0, -INF, 0.0]),
    "p underflows in float64": ([0.0, -800.0, 0.0], [0.0, -INF, 0.0]),
    "confident": ([40.0, 0.0, 0.0], [38.0, 0.0, 0.0]),
    "finite": ([0.0, 1.0, 2.0], [2.0, 1.0, 0.0]),
}
BAD = {"nan in a", "nan in b", "+inf in a", "+inf in b", "nan and kl +inf", "+inf and -inf"}
BAD |= {"+inf in a, no distribution in b", "nan in b, no distribution in a"}


def _special_arrays(dtype, width=3):
    """The SPECIAL rows, each padded on the right with −inf classes up to ``width``."""
    a = np.full((len(SPECIAL), width), -INF)
    b = np.full((len(SPECIAL), width), -INF)
    for i, (x, y) in enumerate(SPECIAL.values()):
        a[i, :3], b[i, :3] = x, y
    return a.astype(dtype), b.astype(dtype)


@pytest.mark.parametrize("width", [3, 9000], ids=["short", "long"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_special_values_as_generic(dtype, width):
    a, b = _special_arrays(dtype, width)
    with np.errstate(all="ignore"):
        fast, generic = _public_fast_and_generic(a, b)  # (p_c > 0 is decided in the dtype)
    _assert_agree(fast, generic, a, b, f"width {width}")
    kl, ga, gb = fast
    names = list(SPECIAL)
    for i, name in enumerate(names):
        if name in BAD:  # nan value, nan gradient rows
            assert np.isnan(kl[i]) and np.isnan(ga[i]).all() and np.isnan(gb[i]).all(), name
    # p_c > 0 is decided in the input dtype: e^-200 and e^-730 are 0 in float32
    tiny_p = ["p underflows in float32", "p subnormal in float64"]
    infinite = ["kl +inf", "kl +inf, b* masked", "kl +inf, tie in a", "no distribution in b"]
    finite = ["p underflows in float64"]
    if dtype == np.float64:
        infinite += tiny_p
    else:
        finite += tiny_p
    for name in infinite:  # +inf, nan a-gradient, b-gradient q − p
        i = names.index(name)
        assert kl[i] == INF and np.isnan(ga[i]).all() and not np.isnan(gb[i]).any(), name
        p = np.exp(a[i].astype(np.float64) - a[i].max())
        p /= p.sum()
        e = np.exp(b[i].astype(np.float64) - b[i].max()) if np.isfinite(b[i].max()) else 0 * p
        q = e / max(e.sum(), 1.0)
        np.testing.assert_allclose(gb[i], q - p, rtol=RTOL[dtype], atol=RTOL[dtype], err_msg=name)
    for name in finite:
        i = names.index(name)
        assert np.isfinite(kl[i]) and np.isfinite(ga[i]).all(), name
    i = names.index("no distribution in a")  # KL 0, zero a-gradient, b-gradient q
    assert kl[i] == 0 and not ga[i].any()
    i = names.index("no distribution")
    assert kl[i] == 0 and not ga[i].any() and not gb[i].any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_special_rows_in_a_parallel_batch(dtype):
    """Special rows spread through a 64 × 3000 batch (threaded kernel): each special row as on
    the generic path, and every other row bit for bit as in the batch without them."""
    rng = np.random.default_rng(9)
    n, c = 64, 3000
    a = (rng.standard_normal((n, c)) * 5).astype(dtype)
    b = (rng.standard_normal((n, c)) * 5).astype(dtype)
    clean = K.softmax_kl_rows(a, b, 1.0)
    sa, sb = _special_arrays(dtype, c)
    spots = rng.choice(n, len(SPECIAL), replace=False)
    a2, b2 = a.copy(), b.copy()
    a2[spots], b2[spots] = sa, sb
    with np.errstate(all="ignore"):
        got = K.softmax_kl_rows(a2, b2, 1.0)
        fast, generic = _public_fast_and_generic(a2, b2)
    _assert_agree(fast, generic, a2, b2, "batch")
    others = np.setdiff1d(np.arange(n), spots)
    for g, c0 in zip(got, clean, strict=True):
        np.testing.assert_array_equal(g[others], c0[others])


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_rows(dtype):
    """Rows with a stride (no copy) give the results of their contiguous copy."""
    a, b = _spread_rows(1e2, dtype, 40, 2 * 3000, seed=1, masked=True)
    av, bv = a[::2, 1::2], b[1::2, ::2]  # class stride 2: copied; a[::2] alone: a row stride
    for x, y in ((a[::2], b[1::2]), (av, bv)):
        got = K.softmax_kl_rows(x, y, 1.0)
        ref = K.softmax_kl_rows(np.ascontiguousarray(x), np.ascontiguousarray(y), 1.0)
        for g, r in zip(got, ref, strict=True):
            np.testing.assert_array_equal(g, r)


# --------------------------------------------------------------------------- float32 exps


def _regime_rows(kind, n, c, scale, seed):
    """Float32 row pairs: independent normal logits of standard deviation ``scale``; ``near``
    (b = a plus noise of 1e-3 · scale: p ≈ q); ``confident`` (one class of `a` raised by 15 ·
    scale); ``masked`` (independent, a −inf in every row of `b` where p is 0)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, c)) * scale
    b = rng.standard_normal((n, c)) * scale
    rows = np.arange(n)
    if kind == "near":
        b = a + rng.standard_normal((n, c)) * 1e-3 * scale
    elif kind == "confident":
        a[rows, rng.integers(0, c, n)] += 15 * scale
    elif kind == "masked":
        k = rng.integers(0, c, n)
        a[rows, k] = -INF
        b[rows, k] = -INF
    return a.astype(np.float32), b.astype(np.float32)


@pytest.mark.parametrize("c", [24, 300, 5000])
@pytest.mark.parametrize("kind", ["independent", "near", "confident", "masked"])
def test_float32_exps_route_against_longdouble(kind, c):
    """Float32 rows first try float32 exponentials under an error estimate, and fall back to
    the float64 exps row by row: whichever route a row takes, its value is within 4 ulps of
    max(KL, 1 + log C) and 1e-4 of KL, its gradients within 6 ulps of the row's largest (4 for
    the estimate, the rounding to float32 on top), the value the same bit for bit with or
    without the gradients; the route is the expected one in each regime."""
    n = max(8, 24000 // c)
    for scale in (0.1, 1.0, 3.0, 10.0):
        a, b = _regime_rows(kind, n, c, scale, seed=c + int(10 * scale))
        route = np.full(n, -1, np.int8)
        kl, ga, gb = K.softmax_kl_rows(a, b, 1.0, route)
        route_v = np.full(n, -1, np.int8)
        kl_v, _, _ = K.softmax_kl_rows(a, b, None, route_v)
        np.testing.assert_array_equal(kl_v, kl)
        np.testing.assert_array_equal(route > 0, route_v > 0)  # the same value route
        rk, rga, rgb = _ref_rows_ld(a, b)
        what = f"{kind} scale {scale}: routes {np.bincount(route, minlength=3)}"
        assert _value_ulps(kl.astype(np.float32), rk, np.float32, c) <= 4, what
        fin = rk > 0
        assert np.all(np.abs(kl[fin] - rk[fin]) <= 1e-4 * rk[fin]), what
        assert _row_ulps(ga, rga, np.float32) <= 6, what
        assert _row_ulps(gb, rgb, np.float32) <= 6, what
        if kind in ("near", "masked"):  # p ≈ q (KL ~ 1e-7); a masked class in b
            assert np.all(route == 0), what
        if kind == "independent" and scale == 1.0:  # most rows: float32 exps throughout
            # (C = 24: a value fallback now and then sends the rest of its group of 16 rows to
            # the float64 exps)
            assert np.mean(route == 2) >= (0.5 if c >= 300 else 0.4), what
        if kind == "confident" and scale == 10.0:  # a spans > 86: float64 gradients
            assert np.all(route <= 1), what


def test_float32_exps_route_of_the_benchmark_rows():
    """The rows of ``infoloss bench --only bounds`` (independent standard normal logits, C =
    32000) take the float32 exps for the value and both gradients."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((16, 32000), dtype=np.float32)
    b = rng.standard_normal((16, 32000), dtype=np.float32)
    route = np.full(16, -1, np.int8)
    K.softmax_kl_rows(a, b, 1.0, route)
    assert np.all(route == 2), route
    with pytest.raises(ValueError, match="route"):
        K.softmax_kl_rows(a, b, 1.0, np.zeros(16, np.int64))


def test_float32_exps_route_with_streaming_stores(monkeypatch):
    """Large gradients are written with streaming stores: the same values, gradients and
    routes bit for bit."""
    from infoloss._fast.kernels import _tunables

    a, b = _regime_rows("independent", 64, 3000, 1.0, seed=1)
    a[::3], b[::3] = _regime_rows("near", 22, 3000, 1.0, seed=2)
    r0 = np.full(64, -1, np.int8)
    kl0, ga0, gb0 = K.softmax_kl_rows(a, b, 0.5, r0)
    monkeypatch.setattr(_tunables, "_STREAM_MIN_BYTES", 0)
    r1 = np.full(64, -1, np.int8)
    kl1, ga1, gb1 = K.softmax_kl_rows(a, b, 0.5, r1)
    assert set(np.unique(r1)) >= {0, 2}
    for x, y in ((r0, r1), (kl0, kl1), (ga0, ga1), (gb0, gb1)):
        np.testing.assert_array_equal(x, y)


def test_float32_exps_routes_do_not_depend_on_the_threads():
    """Rows go in groups of consecutive rows (after a row whose value falls back to the float64
    exps, the rest of its group goes there directly): the groups depend on N only, so routes,
    values and gradients are the same bit for bit on one thread and on all of them."""
    import numba

    a, b = _regime_rows("independent", 512, 200, 1.0, seed=3)
    a[100:300], b[100:300] = _regime_rows("near", 200, 200, 1.0, seed=4)
    res = []
    n_threads = numba.get_num_threads()
    for threads in (1, n_threads):
        numba.set_num_threads(threads)
        try:
            r = np.full(512, -1, np.int8)
            res.append((r, *K.softmax_kl_rows(a, b, 1.0, r)))
        finally:
            numba.set_num_threads(n_threads)
    for x, y in zip(res[0], res[1], strict=True):
        np.testing.assert_array_equal(x, y)
    r = res[0][0]
    assert np.all(r[112:288] == 0) and np.mean(r[:96] == 2) >= 0.5, np.bincount(r)


def test_float32_exps_route_masked_a_and_zero_grad_scale():
    """A −inf in `a` only (p = 0 there): the value may take the float32 exps, the gradients take
    the float64 exps (the row spans more than 86); both against longdouble. ``grad_scale = 0``
    on rows that take the float32 exps throughout gives exact zero gradients."""
    a, b = _regime_rows("independent", 64, 3000, 1.0, seed=5)
    a[::2, 7] = -INF
    route = np.full(64, -1, np.int8)
    kl, ga, gb = K.softmax_kl_rows(a, b, 1.0, route)
    rk, rga, rgb = _ref_rows_ld(a, b)
    assert np.all(route[::2] <= 1) and np.any(route[::2] == 1), route
    assert _value_ulps(kl.astype(np.float32), rk, np.float32, 3000) <= 4
    assert _row_ulps(ga, rga, np.float32) <= 6 and _row_ulps(gb, rgb, np.float32) <= 6
    assert np.all(ga[::2, 7] == 0.0)
    route0 = np.full(64, -1, np.int8)
    kl0, ga0, gb0 = K.softmax_kl_rows(a, b, 0.0, route0)
    np.testing.assert_array_equal(kl0, kl)
    assert np.any(route0 == 2)
    assert not np.any(ga0) and not np.any(gb0)  # (±0, as on the float64 route)
