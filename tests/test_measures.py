"""Probability measures and measures from logits (issue 2, docs/semantics.md)."""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np
import pytest
import scipy.special as sp
import scipy.stats
from _helpers import (
    ON_NUMPY,
    as_float64,
    assert_close,
    dtype_name,
    expect,
    finite_difference,
    ref_cross_entropy,
    ref_entropy,
    ref_gen_kl,
    ref_js,
    ref_softmax_entropy,
    ref_softmax_kl,
)

import infoloss

RNG = np.random.default_rng(7)


def _probs(shape, axis=-1, zeros=False, rng=RNG):
    a = rng.random(shape) + 0.05
    if zeros:
        a = np.where(rng.random(shape) < 0.3, 0.0, a)
        # keep at least one positive entry per distribution
        first = np.zeros(shape, bool)
        np.moveaxis(first, axis, 0)[0] = True
        a = np.where(first & (a.sum(axis=axis, keepdims=True) == 0), 1.0, a)
    return a / a.sum(axis=axis, keepdims=True)


P2 = _probs((4, 5))
Q2 = _probs((4, 5))
L3 = RNG.normal(size=(3, 4, 5)) * 3
M3 = RNG.normal(size=(3, 4, 5)) * 3


PAIR_MEASURES = {
    "cross_entropy": ref_cross_entropy,
    "kl_divergence": ref_gen_kl,
    "js_divergence": ref_js,
}
ALL_MEASURES = {"entropy": ref_entropy, **PAIR_MEASURES}


def _call(name, b, p, q, **kw):
    fn = getattr(infoloss, name)
    if name == "entropy":
        return fn(p, **kw)
    return fn(p, q, **kw)


def _ref(name, p, q, **kw):
    fn = ALL_MEASURES[name]
    if name == "entropy":
        return fn(p, **kw)
    return fn(p, q, **kw)


# ------------------------------------------------------------------------------------------------
# information
# ------------------------------------------------------------------------------------------------


def test_information(backend):
    p = backend.asarray([1.0, 0.5, 0.25, 1e-300, 0.0])
    ref = [0.0, np.log(2), np.log(4), -np.log(1e-300), np.inf]
    assert_close(infoloss.information(p), expect(backend, ref, like=p))


def test_information_bits(backend):
    p = backend.asarray([[1.0, 0.5], [0.125, 0.0]], "float32")
    assert_close(infoloss.information(p, base=2), expect(backend, [[0, 1], [3, np.inf]], like=p))


def test_information_base_e_and_10(backend):
    p = backend.asarray([0.01, 0.3])
    assert_close(infoloss.information(p, base=10), expect(backend, -np.log10([0.01, 0.3]), like=p))
    assert_close(infoloss.information(p, base=np.e), expect(backend, -np.log([0.01, 0.3]), like=p))


@ON_NUMPY
def test_information_scalar_is_numpy(backend):
    out = infoloss.information(0.5)
    assert isinstance(out, (np.ndarray, np.generic))
    np.testing.assert_allclose(out, np.log(2), rtol=1e-14)


# ------------------------------------------------------------------------------------------------
# entropy / cross_entropy / kl_divergence / js_divergence: the template
# ------------------------------------------------------------------------------------------------


def test_entropy_against_scipy(backend):
    p = backend.asarray(P2)
    assert_close(infoloss.entropy(p), expect(backend, scipy.stats.entropy(P2, axis=-1), like=p))
    assert_close(
        infoloss.entropy(p, base=2),
        expect(backend, scipy.stats.entropy(P2, axis=-1, base=2), like=p),
    )


def test_entropy_1d_known(backend):
    p = backend.asarray([0.5, 0.25, 0.25])
    assert_close(infoloss.entropy(p), expect(backend, 1.5 * np.log(2), like=p))
    assert_close(infoloss.entropy(p, base=2), expect(backend, 1.5, like=p))


def test_cross_entropy_against_textbook(backend):
    p, q = backend.asarray(P2), backend.asarray(Q2)
    ref = -(P2 * np.log(Q2)).sum(-1)
    assert_close(infoloss.cross_entropy(p, q), expect(backend, ref, like=p))
    assert_close(infoloss.cross_entropy(p, q, base=2), expect(backend, ref / np.log(2), like=p))


def test_kl_against_scipy(backend):
    p, q = backend.asarray(P2), backend.asarray(Q2)
    ref = sp.rel_entr(P2, Q2).sum(-1)
    assert_close(infoloss.kl_divergence(p, q), expect(backend, ref, like=p))
    assert_close(
        infoloss.kl_divergence(p, q), expect(backend, scipy.stats.entropy(P2, Q2, axis=-1), like=p)
    )
    assert_close(
        infoloss.kl_divergence(p, q, base=2),
        expect(backend, scipy.stats.entropy(P2, Q2, axis=-1, base=2), like=p),
    )


def test_js_against_textbook(backend):
    p, q = backend.asarray(P2), backend.asarray(Q2)
    m = (P2 + Q2) / 2
    ref = 0.5 * (P2 * np.log(P2 / m)).sum(-1) + 0.5 * (Q2 * np.log(Q2 / m)).sum(-1)
    assert_close(infoloss.js_divergence(p, q), expect(backend, ref, like=p))
    assert_close(infoloss.js_divergence(p, q, base=2), expect(backend, ref / np.log(2), like=p))
    # scipy's jensenshannon is the square root of the divergence
    from scipy.spatial.distance import jensenshannon

    assert_close(
        infoloss.js_divergence(p, q), expect(backend, jensenshannon(P2, Q2, axis=-1) ** 2, like=p)
    )


def _pq_along(axis):
    """Distributions normalised along ``axis`` of a (3, 4, 5) array."""
    rng = np.random.default_rng(axis + 10)
    return _probs((3, 4, 5), axis=axis, rng=rng), _probs((3, 4, 5), axis=axis, rng=rng)


@pytest.mark.parametrize("name", sorted(ALL_MEASURES))
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, -3])
def test_axis_equals_moveaxis(backend, name, axis):
    P, Q = _pq_along(axis)
    p, q = backend.asarray(P), backend.asarray(Q)
    got = _call(name, backend, p, q, axis=axis)
    moved = _call(
        name,
        backend,
        backend.asarray(np.moveaxis(P, axis, -1)),
        backend.asarray(np.moveaxis(Q, axis, -1)),
    )
    assert_close(got, moved)
    assert_close(got, expect(backend, _ref(name, P, Q, axis=axis), like=p))


@pytest.mark.parametrize("name", sorted(ALL_MEASURES))
@pytest.mark.parametrize("axis", [0, -1])
def test_keepdims(backend, name, axis):
    P, Q = _pq_along(axis)
    p, q = backend.asarray(P), backend.asarray(Q)
    got = _call(name, backend, p, q, axis=axis, keepdims=True)
    ref = np.expand_dims(_ref(name, P, Q, axis=axis), axis)
    assert_close(got, expect(backend, ref, like=p))


@pytest.mark.parametrize("name", sorted(ALL_MEASURES))
def test_1d_gives_0d(backend, name):
    p, q = backend.asarray(P2[0]), backend.asarray(Q2[0])
    got = _call(name, backend, p, q)
    assert_close(got, expect(backend, _ref(name, P2[0], Q2[0]), like=p))


@pytest.mark.parametrize("name", sorted(PAIR_MEASURES))
def test_broadcasting(backend, name):
    p = backend.asarray(P2[0])  # (C,)
    q = backend.asarray(Q2)  # (N, C)
    got = getattr(infoloss, name)(p, q)
    assert_close(got, expect(backend, _ref(name, np.broadcast_to(P2[0], Q2.shape), Q2), like=p))
    P0, Q0 = _pq_along(0)
    got = getattr(infoloss, name)(backend.asarray(P0), backend.asarray(Q0[:, :1]), axis=0)
    ref = _ref(name, P0, np.broadcast_to(Q0[:, :1], P0.shape), axis=0)
    assert_close(got, expect(backend, ref, like=p))


@pytest.mark.parametrize("name", sorted(ALL_MEASURES))
def test_float32(backend, name):
    p, q = backend.asarray(P2, "float32"), backend.asarray(Q2, "float32")
    got = _call(name, backend, p, q)
    assert_close(
        got, expect(backend, _ref(name, as_float64(p), as_float64(q)), like=p), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", sorted(ALL_MEASURES))
def test_low_precision(backend, name, dtype):
    if not backend.supports(dtype):
        pytest.skip(f"{backend.name} has no {dtype}")
    p, q = backend.asarray(P2, dtype), backend.asarray(Q2, dtype)
    got = _call(name, backend, p, q)
    assert dtype_name(got) == dtype
    ref = _ref(name, as_float64(p), as_float64(q))
    assert_close(got, expect(backend, ref, like=p))


@pytest.mark.parametrize("name", sorted(ALL_MEASURES))
def test_returns_caller_array_type(backend, name):
    p, q = backend.asarray(P2, "float32"), backend.asarray(Q2, "float32")
    got = _call(name, backend, p, q)
    assert backend.is_native(got), type(got)


@pytest.mark.parametrize("name", sorted(ALL_MEASURES))
@ON_NUMPY
def test_lists_are_numpy(name, backend):
    got = _call(name, None, [0.5, 0.5], [0.25, 0.75])
    assert isinstance(got, (np.ndarray, np.generic)), type(got)
    np.testing.assert_allclose(got, _ref(name, [0.5, 0.5], [0.25, 0.75]), rtol=1e-12)


# ------------------------------------------------------------------------------------------------
# zero probabilities and infinities
# ------------------------------------------------------------------------------------------------


def test_entropy_zero_probabilities(backend):
    p = backend.asarray([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 0.0]])
    assert_close(infoloss.entropy(p), expect(backend, [0.0, np.log(2), 0.0], like=p))


def test_entropy_not_renormalised(backend):
    p = backend.asarray([0.5, 0.25])
    ref = -(0.5 * np.log(0.5) + 0.25 * np.log(0.25))
    assert_close(infoloss.entropy(p), expect(backend, ref, like=p))
    # scipy.stats.entropy would renormalise: a different number
    assert not np.isclose(ref, scipy.stats.entropy([0.5, 0.25]))


def test_cross_entropy_zero_probabilities(backend):
    p = backend.asarray([[0.0, 0.5, 0.5], [0.0, 1.0, 0.0], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    q = backend.asarray([[0.0, 0.5, 0.5], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [1.0, 0.0, 0.0]])
    ref = [np.log(2), np.log(2), np.inf, 0.0]
    assert_close(infoloss.cross_entropy(p, q), expect(backend, ref, like=p))


def test_kl_zero_probabilities(backend):
    p = backend.asarray([[0.0, 0.5, 0.5], [0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    q = backend.asarray([[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.25, 0.25, 0.5], [0.5, 0.5, 0.0]])
    ref = [0.0, np.inf, np.log(2), np.log(2)]
    assert_close(infoloss.kl_divergence(p, q), expect(backend, ref, like=p))


def test_js_zero_probabilities_finite_and_bounded(backend):
    p = backend.asarray([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    q = backend.asarray([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    ref = ref_js(as_float64(p), as_float64(q))
    assert np.isclose(ref[0], np.log(2))
    got = infoloss.js_divergence(p, q)
    assert_close(got, expect(backend, ref, like=p))
    assert_close(infoloss.js_divergence(p, q, base=2), expect(backend, ref / np.log(2), like=p))


@pytest.mark.parametrize("name", sorted(PAIR_MEASURES))
def test_measures_differentiable_by_autodiff(name):
    # the generic path is differentiable: finite d/dq where p has zeros, equal across libraries
    torch = pytest.importorskip("torch")
    jax = pytest.importorskip("jax")
    p = np.array([[0.0, 0.5, 0.5]])
    q = np.array([[0.2, 0.3, 0.5]])
    qt = torch.tensor(q, requires_grad=True)
    getattr(infoloss, name)(torch.tensor(p), qt).sum().backward()
    gj = jax.grad(lambda v: getattr(infoloss, name)(jax.numpy.asarray(p), v).sum())(
        jax.numpy.asarray(q)
    )
    assert np.all(np.isfinite(qt.grad.numpy()))
    np.testing.assert_allclose(np.asarray(gj), qt.grad.numpy(), rtol=1e-12)
    fd = finite_difference(lambda v: PAIR_MEASURES[name](p, v), q)
    np.testing.assert_allclose(qt.grad.numpy(), fd, rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------------------------------------
# identities
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("zeros", [False, True])
def test_cross_entropy_equals_entropy_plus_kl(backend, zeros):
    Pz = _probs((6, 5), zeros=zeros)
    p, q = backend.asarray(Pz), backend.asarray(Q2[:1])
    ce = as_float64(infoloss.cross_entropy(p, q))
    h = as_float64(infoloss.entropy(p))
    kl = as_float64(infoloss.kl_divergence(p, q))
    np.testing.assert_allclose(ce, h + kl, rtol=1e-12, atol=1e-14)


def test_kl_self_is_zero_and_nonnegative(backend):
    p = backend.asarray(_probs((5, 7), zeros=True))
    kl = as_float64(infoloss.kl_divergence(p, p))
    assert np.all(kl == 0.0), kl
    q = backend.asarray(_probs((5, 7)))
    assert np.all(as_float64(infoloss.kl_divergence(p, q)) >= 0)


def test_kl_never_negative_for_rounding(backend):
    # p and q differ only by rounding; the exact value is ~1e-33, computed sums may round below 0
    base = _probs((50, 7))
    q = base * (1 + 1e-16 * RNG.standard_normal(base.shape))
    got = as_float64(infoloss.kl_divergence(backend.asarray(base), backend.asarray(q)))
    assert np.all(got >= 0), got.min()
    got = as_float64(infoloss.softmax_kl_divergence(backend.asarray(L3), backend.asarray(L3 + 0.0)))
    assert np.all(got >= 0)


def test_js_symmetric_and_bounded(backend):
    p, q = backend.asarray(_probs((6, 5), zeros=True)), backend.asarray(_probs((6, 5), zeros=True))
    a = as_float64(infoloss.js_divergence(p, q))
    b = as_float64(infoloss.js_divergence(q, p))
    np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-16)
    assert np.all(a <= np.log(2) + 1e-15) and np.all(a >= 0)
    assert np.all(as_float64(infoloss.js_divergence(p, q, base=2)) <= 1 + 1e-15)


# ------------------------------------------------------------------------------------------------
# KL accuracy when p ~= q (mpmath on the exact float64 inputs)
# ------------------------------------------------------------------------------------------------


def _mp_kl(p, q):
    with mpmath.workdps(60):
        return float(
            sum(
                mpmath.mpf(a) * mpmath.log(mpmath.mpf(a) / mpmath.mpf(b))
                for a, b in zip(p, q, strict=True)
                if a != 0
            )
        )


def _mp_gen_kl(p, q):
    """Generalized KL Σ p log(p/q) − p + q of the exact float64 values (= KL when both sum to 1)."""
    with mpmath.workdps(60):
        total = mpmath.mpf(0)
        for a, b in zip(p, q, strict=True):
            a, b = mpmath.mpf(a), mpmath.mpf(b)
            total += (a * mpmath.log(a / b) if a != 0 else 0) - a + b
        return float(total)


def _exact_pair(rng, C, delta_exp):
    """p, q exactly normalised in float64: dyadic p, q = p + d with sum(d) == 0 exactly."""
    k = rng.multinomial(1024 - C, np.ones(C) / C) + 1
    p = k / 1024.0
    m = rng.integers(-50, 51, size=C)
    m[-1] -= m.sum()
    q = p + m * 2.0**delta_exp
    assert sum(Fraction(v) for v in p) == 1 and sum(Fraction(v) for v in q) == 1
    assert np.all(q > 0)
    return p, q


@pytest.mark.parametrize("delta_exp", [-30, -33, -36])
def test_kl_accuracy_p_close_to_q(backend, delta_exp):
    rng = np.random.default_rng(abs(delta_exp))
    pairs = [_exact_pair(rng, 6, delta_exp) for _ in range(4)]
    p = np.stack([a for a, _ in pairs])
    q = np.stack([b for _, b in pairs])
    ref = np.array([_mp_kl(a, b) for a, b in pairs])
    # the naive formula loses (almost) all digits on these inputs
    naive = (p * np.log(p / q)).sum(-1)
    assert np.max(np.abs(naive - ref) / ref) > 1e-4
    got = infoloss.kl_divergence(backend.asarray(p), backend.asarray(q))
    assert_close(got, expect(backend, ref), rtol=1e-6, atol=0)


def test_kl_accuracy_renormalised_perturbation(backend):
    # q = p (1 + 1e-6 noise) renormalised; reference is mpmath on the exact float64 values. The
    # masses differ from 1 by a few ulps, which the generalized KL's -p + q terms account for
    # (the plain Σ p log(p/q) of these numbers differs from it by Σq - Σp ~ 1e-16, 1e-3 relative)
    rng = np.random.default_rng(3)
    p = _probs((5, 8), rng=rng)
    q = p * (1 + 1e-6 * rng.standard_normal(p.shape))
    q = q / q.sum(-1, keepdims=True)
    ref = np.array([_mp_gen_kl(a, b) for a, b in zip(p, q, strict=True)])
    got = infoloss.kl_divergence(backend.asarray(p), backend.asarray(q))
    assert_close(got, expect(backend, ref), rtol=1e-6, atol=0)


# ------------------------------------------------------------------------------------------------
# measures from logits
# ------------------------------------------------------------------------------------------------


def test_softmax_entropy_1d(backend):
    x = backend.asarray([0.0, 0.0, 0.0, 0.0])
    assert_close(infoloss.softmax_entropy(x), expect(backend, np.log(4), like=x))
    assert_close(infoloss.softmax_entropy(x, base=2), expect(backend, 2.0, like=x))


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2])
def test_softmax_entropy_axis(backend, axis):
    x = backend.asarray(L3)
    got = infoloss.softmax_entropy(x, axis=axis)
    assert_close(got, expect(backend, ref_softmax_entropy(L3, axis=axis), like=x))
    assert_close(got, infoloss.softmax_entropy(backend.asarray(np.moveaxis(L3, axis, -1))))


def test_softmax_entropy_equals_entropy_of_softmax(backend):
    x = backend.asarray(L3)
    p = infoloss.softmax(x)
    assert_close(infoloss.softmax_entropy(x), infoloss.entropy(p))
    assert_close(infoloss.softmax_entropy(x, base=2), infoloss.entropy(p, base=2))


def test_softmax_entropy_extreme_and_masked(backend):
    x = backend.asarray(
        [[1e30, -1e30, 0.0], [0.0, -np.inf, 0.0], [-np.inf, 3.0, -np.inf], [1e30, 1e30, -1e30]],
        "float32",
    )
    got = infoloss.softmax_entropy(x)
    assert np.all(np.isfinite(as_float64(got)))
    assert_close(got, expect(backend, [0.0, np.log(2), 0.0, np.log(2)], like=x))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_softmax_entropy_low_precision(backend, dtype):
    if not backend.supports(dtype):
        pytest.skip(f"{backend.name} has no {dtype}")
    x = backend.asarray(L3, dtype)
    got = infoloss.softmax_entropy(x)
    assert_close(got, expect(backend, ref_softmax_entropy(as_float64(x)), like=x))


def test_softmax_kl_against_scipy(backend):
    a, b = backend.asarray(L3), backend.asarray(M3)
    assert_close(infoloss.softmax_kl_divergence(a, b), expect(backend, ref_softmax_kl(L3, M3)))
    assert_close(
        infoloss.softmax_kl_divergence(a, b, base=2),
        expect(backend, ref_softmax_kl(L3, M3) / np.log(2)),
    )


def test_softmax_kl_keywords_and_1d(backend):
    a, b = backend.asarray(L3[0, 0]), backend.asarray(M3[0, 0])
    got = infoloss.softmax_kl_divergence(p_logits=a, q_logits=b)
    assert_close(got, expect(backend, ref_softmax_kl(L3[0, 0], M3[0, 0])))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_kl_axis(backend, axis):
    a, b = backend.asarray(L3), backend.asarray(M3)
    got = infoloss.softmax_kl_divergence(a, b, axis=axis)
    assert_close(got, expect(backend, ref_softmax_kl(L3, M3, axis=axis)))
    moved = infoloss.softmax_kl_divergence(
        backend.asarray(np.moveaxis(L3, axis, -1)), backend.asarray(np.moveaxis(M3, axis, -1))
    )
    assert_close(got, moved)


def test_softmax_kl_identities(backend):
    a, b = backend.asarray(L3), backend.asarray(M3)
    # zero to rounding (the numba path may reassociate sums)
    np.testing.assert_array_less(as_float64(infoloss.softmax_kl_divergence(a, a)), 1e-15)
    # shift invariance
    assert_close(
        infoloss.softmax_kl_divergence(a, b),
        infoloss.softmax_kl_divergence(a, backend.asarray(M3 + 100.0)),
        rtol=1e-9,
        atol=1e-11,
    )
    assert_close(
        infoloss.softmax_kl_divergence(a, b),
        infoloss.kl_divergence(infoloss.softmax(a), infoloss.softmax(b)),
        rtol=1e-9,
    )


def test_softmax_kl_masked_and_extreme(backend):
    a = backend.asarray([[0.0, -np.inf, 0.0], [0.0, 0.0, 0.0], [1e30, -1e30, 0.0]], "float32")
    b = backend.asarray([[0.0, 0.0, 0.0], [0.0, -np.inf, 0.0], [1e30, 0.0, -1e30]], "float32")
    got = infoloss.softmax_kl_divergence(a, b)
    # row 0: p=(.5,0,.5), q uniform -> log(3/2); row 1: p uniform, q has a zero -> inf;
    # row 2: p=q=(1,0,0) -> 0
    assert_close(got, expect(backend, [np.log(1.5), np.inf, 0.0], like=a))


def test_softmax_kl_accuracy_mpmath(backend):
    rng = np.random.default_rng(11)
    a = rng.normal(size=(3, 6))
    b = a + 1e-2 * rng.normal(size=a.shape)

    def mp_ref(x, y):
        with mpmath.workdps(50):
            x = [mpmath.mpf(v) for v in x]
            y = [mpmath.mpf(v) for v in y]
            lx = mpmath.log(sum(mpmath.exp(v) for v in x))
            ly = mpmath.log(sum(mpmath.exp(v) for v in y))
            terms = (mpmath.exp(u - lx) * ((u - lx) - (v - ly)) for u, v in zip(x, y, strict=True))
            return float(sum(terms))

    ref = [mp_ref(x, y) for x, y in zip(a, b, strict=True)]
    got = infoloss.softmax_kl_divergence(backend.asarray(a), backend.asarray(b))
    assert_close(got, expect(backend, ref), rtol=1e-8, atol=0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_softmax_kl_low_precision(backend, dtype):
    if not backend.supports(dtype):
        pytest.skip(f"{backend.name} has no {dtype}")
    a, b = backend.asarray(L3, dtype), backend.asarray(M3, dtype)
    got = infoloss.softmax_kl_divergence(a, b)
    assert_close(got, expect(backend, ref_softmax_kl(as_float64(a), as_float64(b)), like=a))


@pytest.mark.parametrize("fn", ["softmax_entropy", "softmax_kl_divergence"])
def test_logit_measures_return_caller_type(backend, fn):
    x = backend.asarray(L3, "float32")
    got = (
        infoloss.softmax_entropy(x)
        if fn == "softmax_entropy"
        else infoloss.softmax_kl_divergence(x, x)
    )
    assert backend.is_native(got)
    assert dtype_name(got) == "float32"
