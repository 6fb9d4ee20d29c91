"""Distillation from logits (issue 16): temperature on the softmax KL divergence and the softmax
cross-entropy, the KL divergence's weights, mask and reductions, the generalized Jensen–Shannon
divergence from logits and on probabilities.

References: PyTorch's ``F.kl_div(log_target=True)``, SciPy (``rel_entr``,
``scipy.spatial.distance.jensenshannon``), float64 textbook formulas written here, torch autograd
of those formulas, and float64 finite differences.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special as sp
from _helpers import ON_NUMPY, assert_close, expect, finite_difference, to_numpy
from hypothesis import given, settings
from hypothesis import strategies as st

import infoloss as il
from infoloss import InfolossError, InfolossTypeError, value_and_grad

AUTODIFF = pytest.mark.variants(
    "torch-fast", "torch-generic", "jax", reason="the library's own autodiff through the function"
)
RNG = np.random.default_rng(16)
A = RNG.normal(size=(5, 7)) * 2.0
B = RNG.normal(size=(5, 7)) * 2.0
W = np.array([1.0, 0.5, 2.0, 0.0, 3.0])
MASK = np.array([True, True, False, True, True])


# --------------------------------------------------------------------------- references


def ref_kl_rows(a, b, t=1.0):
    p, q = sp.softmax(a / t, axis=-1), sp.softmax(b / t, axis=-1)
    return sp.rel_entr(p, q).sum(-1)


def ref_js_rows(a, b, beta=0.5, t=1.0):
    p, q = sp.softmax(a / t, axis=-1), sp.softmax(b / t, axis=-1)
    m = beta * p + (1 - beta) * q
    return beta * sp.rel_entr(p, m).sum(-1) + (1 - beta) * sp.rel_entr(q, m).sum(-1)


def ref_reduce(rows, w, mask, reduction, scale=1.0):
    w = np.ones_like(rows) if w is None else np.asarray(w, np.float64)
    if mask is not None:
        w = np.where(mask, w, 0.0)
        rows = np.where(mask, rows, 0.0)
    v = rows * scale * w
    if reduction == "none":
        return v
    if reduction == "sum":
        return v.sum()
    return v.sum() / w.sum() if w.sum() else 0.0


def torch_kl_div_rows(a, b, t=1.0):
    """PyTorch's own forward KL: F.kl_div(input=log q, target=log p, log_target=True)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    ta = torch.tensor(a, dtype=torch.float64)
    tb = torch.tensor(b, dtype=torch.float64)
    out = F.kl_div(
        F.log_softmax(tb / t, -1), F.log_softmax(ta / t, -1), log_target=True, reduction="none"
    ).sum(-1)
    return out.numpy()


# --------------------------------------------------------------------------- KL with options


@pytest.mark.parametrize("t", [1.0, 0.5, 3.0])
@pytest.mark.parametrize("t2", [False, True])
def test_softmax_kl_temperature_matches_torch_kl_div(backend, t, t2):
    a, b = backend.asarray(A, "float64"), backend.asarray(B, "float64")
    got = il.softmax_kl_divergence(a, b, temperature=t, scale_by_temperature_squared=t2)
    want = torch_kl_div_rows(A, B, t) * (t * t if t2 else 1.0)
    assert_close(got, expect(backend, want))
    assert_close(got, expect(backend, ref_kl_rows(A, B, t) * (t * t if t2 else 1.0)))


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softmax_kl_weights_mask_reduction(backend, reduction, dtype):
    a, b = backend.asarray(A, dtype), backend.asarray(B, dtype)
    sw, mk = backend.asarray(W, dtype), backend.asarray(MASK, "bool")
    got = il.softmax_kl_divergence(
        a,
        b,
        temperature=2.0,
        scale_by_temperature_squared=True,
        sample_weights=sw,
        mask=mk,
        reduction=reduction,
    )
    want = ref_reduce(ref_kl_rows(A, B, 2.0), W, MASK, reduction, scale=4.0)
    assert_close(got, expect(backend, want, like=a))


def test_softmax_kl_mask_hides_nonfinite_rows(backend):
    a = A.copy()
    b = B.copy()
    a[2, 3] = np.nan
    b[2, 0] = np.inf
    va, vb = backend.asarray(a, "float64"), backend.asarray(b, "float64")
    mk = backend.asarray(MASK, "bool")
    for fn in (il.softmax_kl_divergence, il.softmax_js_divergence):
        value, (ga, gb) = value_and_grad(fn)(va, vb, mask=mk, reduction="mean")
        rows = ref_kl_rows(A, B) if fn is il.softmax_kl_divergence else ref_js_rows(A, B)
        assert_close(value, expect(backend, ref_reduce(rows, None, MASK, "mean")))
        assert np.all(np.isfinite(to_numpy(ga))) and np.all(np.isfinite(to_numpy(gb)))
        assert np.all(to_numpy(ga)[2] == 0) and np.all(to_numpy(gb)[2] == 0)
        # without the mask the row is nan: nan in, nan out
        none = to_numpy(fn(va, vb))
        assert np.isnan(none[2]) and np.all(np.isfinite(np.delete(none, 2)))


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_softmax_kl_options_gradient_finite_differences(backend, reduction):
    t = 1.7
    a, b = backend.asarray(A, "float64"), backend.asarray(B, "float64")
    opts = dict(
        temperature=t,
        scale_by_temperature_squared=True,
        sample_weights=backend.asarray(W, "float64"),
        mask=backend.asarray(MASK, "bool"),
        reduction=reduction,
    )
    _, (ga, gb) = value_and_grad(il.softmax_kl_divergence)(a, b, **opts)

    def f_a(x):
        return ref_reduce(ref_kl_rows(x, B, t), W, MASK, reduction, t * t)

    def f_b(x):
        return ref_reduce(ref_kl_rows(A, x, t), W, MASK, reduction, t * t)

    assert_close(ga, expect(backend, finite_difference(f_a, A)), rtol=1e-6, atol=1e-8)
    assert_close(gb, expect(backend, finite_difference(f_b, B)), rtol=1e-6, atol=1e-8)


@ON_NUMPY
def test_softmax_kl_defaults_unchanged(backend):
    """The options at their defaults give exactly the former call (the plain fast kernel)."""
    a, b = A.astype(np.float32), B.astype(np.float32)
    plain = il.softmax_kl_divergence(a, b)
    opts = il.softmax_kl_divergence(a, b, temperature=1.0, reduction="none", keepdims=False)
    np.testing.assert_array_equal(plain, opts)
    assert plain.dtype == np.float32 and plain.shape == (5,)


def test_softmax_kl_axis_and_keepdims(backend):
    a = backend.asarray(np.moveaxis(A, -1, 0), "float64")
    b = backend.asarray(np.moveaxis(B, -1, 0), "float64")
    got = il.softmax_kl_divergence(a, b, axis=0, temperature=2.0, keepdims=True)
    assert_close(got, expect(backend, ref_kl_rows(A, B, 2.0)[None, :]))


# --------------------------------------------------------------------------- CE with temperature


@pytest.mark.parametrize("t2", [False, True])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_softmax_ce_temperature(backend, t2, reduction):
    t = 2.5
    target = sp.softmax(B / t, axis=-1)
    x, y = backend.asarray(A, "float64"), backend.asarray(target, "float64")
    k = t * t if t2 else 1.0
    value, grad = value_and_grad(il.softmax_cross_entropy)(
        x, y, temperature=t, scale_by_temperature_squared=t2, reduction=reduction
    )

    def f(z):
        rows = -(target * sp.log_softmax(z / t, axis=-1)).sum(-1) * k
        return rows if reduction == "none" else rows.mean()

    assert_close(value, expect(backend, f(A)))
    assert_close(grad, expect(backend, finite_difference(f, A)), rtol=1e-6, atol=1e-8)
    # the soft-target CE at T is the KL at T plus the teacher's entropy at T (times k)
    kl = il.softmax_kl_divergence(
        backend.asarray(B, "float64"), x, temperature=t, scale_by_temperature_squared=t2
    )
    ent = sp.entr(target).sum(-1) * k
    if reduction == "none":
        assert_close(value, kl + expect(backend, ent))


@ON_NUMPY
def test_softmax_ce_temperature_into_out_buffer(backend):
    x = A.astype(np.float32)
    y = sp.softmax(B, axis=-1).astype(np.float32)
    buf = np.empty_like(x)
    v1, g1 = value_and_grad(il.softmax_cross_entropy)(
        x, y, temperature=2.0, scale_by_temperature_squared=True, out=buf
    )
    v2, g2 = value_and_grad(il.softmax_cross_entropy)(
        x, y, temperature=2.0, scale_by_temperature_squared=True
    )
    assert g1 is buf
    np.testing.assert_allclose(g1, g2, rtol=1e-6)
    np.testing.assert_array_equal(v1, v2)
    # and T = 1 is exactly the call without a temperature
    np.testing.assert_array_equal(
        il.softmax_cross_entropy(x, y, temperature=1.0), il.softmax_cross_entropy(x, y)
    )


@AUTODIFF
def test_softmax_ce_temperature_autodiff(backend):
    t = 2.0
    target = sp.softmax(B / t, axis=-1)
    y = backend.asarray(target, "float64")
    _, want = value_and_grad(il.softmax_cross_entropy)(
        backend.asarray(A, "float64"), y, temperature=t, scale_by_temperature_squared=True
    )
    got = _autodiff(
        backend,
        lambda x: il.softmax_cross_entropy(x, y, temperature=t, scale_by_temperature_squared=True),
        A,
    )
    assert_close(got, want)


# --------------------------------------------------------------------------- JS from logits


@pytest.mark.parametrize("beta", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("t", [1.0, 2.0])
def test_softmax_js_vs_textbook(backend, beta, t):
    a, b = backend.asarray(A, "float64"), backend.asarray(B, "float64")
    got = il.softmax_js_divergence(a, b, beta=beta, temperature=t)
    assert_close(got, expect(backend, ref_js_rows(A, B, beta, t)))
    if beta == 0.5:
        from scipy.spatial.distance import jensenshannon

        p, q = sp.softmax(A / t, axis=-1), sp.softmax(B / t, axis=-1)
        assert_close(got, expect(backend, jensenshannon(p, q, axis=-1) ** 2))
    # the same as the measure on probabilities
    probs = il.js_divergence(il.softmax(a / t), il.softmax(b / t), beta=beta)
    assert_close(got, probs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_js_reductions_and_base(backend, dtype):
    a, b = backend.asarray(A, dtype), backend.asarray(B, dtype)
    sw, mk = backend.asarray(W, dtype), backend.asarray(MASK, "bool")
    for reduction in ("none", "sum", "mean"):
        got = il.softmax_js_divergence(
            a, b, beta=0.3, sample_weights=sw, mask=mk, reduction=reduction, base=2
        )
        want = ref_reduce(ref_js_rows(A, B, 0.3), W, MASK, reduction) / math.log(2)
        assert_close(got, expect(backend, want, like=a))


def _torch_js(ta, tb, beta, t):
    import torch

    lp, lq = torch.log_softmax(ta / t, -1), torch.log_softmax(tb / t, -1)
    p, q = lp.exp(), lq.exp()
    m = beta * p + (1 - beta) * q
    return (beta * (p * (lp - m.log())).sum(-1) + (1 - beta) * (q * (lq - m.log())).sum(-1)).sum()


@pytest.mark.parametrize("beta", [0.2, 0.5, 0.8])
def test_softmax_js_gradients_vs_torch_autograd_and_fd(backend, beta):
    torch = pytest.importorskip("torch")
    t = 1.5
    a, b = backend.asarray(A, "float64"), backend.asarray(B, "float64")
    _, (ga, gb) = value_and_grad(il.softmax_js_divergence)(a, b, beta=beta, temperature=t)
    ta = torch.tensor(A, requires_grad=True)
    tb = torch.tensor(B, requires_grad=True)
    _torch_js(ta, tb, beta, t).backward()
    assert_close(ga, expect(backend, ta.grad.numpy()), atol=1e-12, scale="all")
    assert_close(gb, expect(backend, tb.grad.numpy()), atol=1e-12, scale="all")
    fd_a = finite_difference(lambda x: ref_js_rows(x, B, beta, t), A)
    fd_b = finite_difference(lambda x: ref_js_rows(A, x, beta, t), B)
    assert_close(ga, expect(backend, fd_a), rtol=1e-6, atol=1e-8)
    assert_close(gb, expect(backend, fd_b), rtol=1e-6, atol=1e-8)


def _autodiff(backend, f, x0, argnum=0, *others):
    """The gradient of ``sum(f(x))`` by the backend's own autodiff (torch or JAX)."""
    if backend.name == "torch":
        import torch

        x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
        f(x).sum().backward()
        return x.grad
    import jax
    import jax.numpy as jnp

    return jax.grad(lambda x: jnp.sum(f(x)))(jnp.asarray(x0))


@AUTODIFF
def test_softmax_js_autodiff_matches_analytic(backend):
    a0 = A.copy()
    a0[:, 2] = -np.inf  # a masked teacher vocabulary entry
    b = backend.asarray(B, "float64")
    _, (want, _) = value_and_grad(il.softmax_js_divergence)(
        backend.asarray(a0, "float64"), b, beta=0.3, temperature=2.0
    )
    got = _autodiff(
        backend, lambda x: il.softmax_js_divergence(x, b, beta=0.3, temperature=2.0), a0
    )
    assert np.all(np.isfinite(to_numpy(got)))
    assert_close(got, want, atol=1e-12, scale="all")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_masked_teacher_vocabulary_is_finite(backend, dtype):
    """A teacher with -inf logits (masked vocabulary), also where the student masks the same
    class, and logits of ±1e4: finite values and finite gradients for JS; KL finite where the
    student covers the teacher's support."""
    a = np.array([[3.0, -np.inf, 0.0, -np.inf], [1e4, -1e4, -np.inf, 0.0]])
    b = np.array([[0.0, 1.0, -1.0, -np.inf], [-1e4, 1e4, 0.0, 5.0]])
    va, vb = backend.asarray(a, dtype), backend.asarray(b, dtype)
    for beta in (0.1, 0.5, 0.9):
        value, (ga, gb) = value_and_grad(il.softmax_js_divergence)(
            va, vb, beta=beta, temperature=2.0
        )
        for arr in (value, ga, gb):
            assert np.all(np.isfinite(to_numpy(arr))), (beta, arr)
        assert_close(value, expect(backend, ref_js_rows(a, b, beta, 2.0), like=va), atol=1e-5)
        assert np.all(to_numpy(ga)[0, [1, 3]] == 0) and np.all(to_numpy(gb)[0, 3] == 0)
    kl, (ka, kb) = value_and_grad(il.softmax_kl_divergence)(
        va[:1, ...], vb[:1, ...], temperature=2.0
    )
    for arr in (kl, ka, kb):
        assert np.all(np.isfinite(to_numpy(arr)))
    assert_close(kl, expect(backend, ref_kl_rows(a[:1], b[:1], 2.0), like=va))


# --------------------------------------------------------------------------- JS on probabilities


P = sp.softmax(A, axis=-1)
Q = sp.softmax(B, axis=-1)


@pytest.mark.parametrize("beta", [0.25, 0.5, 0.75])
def test_js_divergence_beta_value_and_gradient(backend, beta):
    p, q = backend.asarray(P, "float64"), backend.asarray(Q, "float64")
    value, (gp, gq) = value_and_grad(il.js_divergence)(p, q, beta=beta)

    def f(pp, qq):
        m = beta * pp + (1 - beta) * qq
        return beta * sp.kl_div(pp, m).sum(-1) + (1 - beta) * sp.kl_div(qq, m).sum(-1)

    assert_close(value, expect(backend, f(P, Q)))
    assert_close(il.js_divergence(p, q, beta=beta), value)
    assert_close(gp, expect(backend, finite_difference(lambda x: f(x, Q), P)), rtol=1e-6, atol=1e-8)
    assert_close(gq, expect(backend, finite_difference(lambda x: f(P, x), Q)), rtol=1e-6, atol=1e-8)


@AUTODIFF
def test_js_divergence_gradient_matches_autodiff_at_zeros(backend):
    p0 = np.array([[0.5, 0.5, 0.0, 0.0], [0.2, 0.0, 0.8, 0.0]])
    q0 = np.array([[0.25, 0.25, 0.5, 0.0], [0.1, 0.3, 0.0, 0.6]])
    q = backend.asarray(q0, "float64")
    _, (want, _) = value_and_grad(il.js_divergence)(backend.asarray(p0, "float64"), q, beta=0.3)
    got = _autodiff(backend, lambda x: il.js_divergence(x, q, beta=0.3), p0)
    assert_close(got, want)


def test_js_divergence_gradient_broadcast(backend):
    p = backend.asarray(P, "float64")
    q = backend.asarray(Q[:1], "float64")  # one Q row for every P row
    _, (gp, gq) = value_and_grad(il.js_divergence)(p, q, beta=0.4)
    assert tuple(gp.shape) == P.shape and tuple(gq.shape) == (1, 7)

    def f(qq):
        m = 0.4 * P + 0.6 * qq
        return 0.4 * sp.kl_div(P, m).sum(-1) + 0.6 * sp.kl_div(qq, m).sum(-1)

    assert_close(gq, expect(backend, finite_difference(f, Q[:1])), rtol=1e-6, atol=1e-8)


def test_js_divergence_default_beta_unchanged():
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    np.testing.assert_array_equal(il.js_divergence(p, q), il.js_divergence(p, q, beta=0.5))
    assert float(il.js_divergence(p, q, beta=0.5)) == pytest.approx(
        0.5 * sp.rel_entr(p, (p + q) / 2).sum() + 0.5 * sp.rel_entr(q, (p + q) / 2).sum(),
        rel=1e-14,
    )


# --------------------------------------------------------------------------- properties


def _rows(draw, c):
    return np.array(
        draw(
            st.lists(
                st.floats(-30, 30, allow_nan=False, allow_infinity=False), min_size=c, max_size=c
            )
        )
    )


@settings(max_examples=60, deadline=None)
@given(st.data(), st.integers(1, 9), st.floats(0.01, 0.99))
def test_js_properties(data, c, beta):
    a, b = _rows(data.draw, c), _rows(data.draw, c)
    js = float(il.softmax_js_divergence(a, b, beta=beta))
    h_beta = -(beta * math.log(beta) + (1 - beta) * math.log1p(-beta))
    assert 0.0 <= js <= h_beta * (1 + 1e-12) + 1e-15
    swapped = float(il.softmax_js_divergence(b, a, beta=1 - beta))
    assert swapped == pytest.approx(js, rel=1e-9, abs=1e-15)
    sym = float(il.softmax_js_divergence(a, b))
    assert sym == pytest.approx(float(il.softmax_js_divergence(b, a)), rel=1e-9, abs=1e-15)
    assert 0.0 <= sym <= math.log(2) * (1 + 1e-12)
    pa, pb = sp.softmax(a), sp.softmax(b)
    assert float(il.js_divergence(pa, pb, beta=beta)) == pytest.approx(js, rel=1e-6, abs=1e-12)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"temperature": 0.0}, "`temperature` must be a finite positive number; got 0.0"),
        ({"temperature": -1}, "`temperature` must be a finite positive number; got -1"),
        ({"temperature": float("nan")}, "`temperature` must be a finite positive"),
        ({"temperature": float("inf")}, "`temperature` must be a finite positive"),
        ({"temperature": "2"}, "`temperature` must be a positive number; got '2'"),
        ({"scale_by_temperature_squared": 1}, "`scale_by_temperature_squared` must be True or"),
        ({"reduction": "avg"}, "`reduction` must be one of"),
        ({"keepdims": True, "reduction": "mean"}, "`keepdims=True` needs reduction='none'"),
        ({"mask": np.ones(5)}, "`mask` must be a boolean array"),
        ({"mask": np.ones(4, bool)}, r"`mask` must broadcast to the batch shape \(5,\)"),
        ({"sample_weights": -W}, "`sample_weights` must hold non-negative weights"),
        ({"sample_weights": np.ones(3)}, "`sample_weights` must broadcast to the batch shape"),
    ],
)
def test_divergence_errors(kwargs, match):
    for fn in (il.softmax_kl_divergence, il.softmax_js_divergence):
        with pytest.raises(InfolossError, match=match):
            fn(A, B, **kwargs)


@pytest.mark.parametrize("beta", [0.0, 1.0, -0.5, 2, float("nan"), "0.5", True])
def test_beta_errors(beta):
    with pytest.raises(InfolossError, match="`beta` must be"):
        il.softmax_js_divergence(A, B, beta=beta)
    with pytest.raises(InfolossError, match="`beta` must be"):
        il.js_divergence(P, Q, beta=beta)


def test_ce_temperature_errors():
    y = sp.softmax(B, axis=-1)
    with pytest.raises(InfolossError, match="`temperature` must be a finite positive number"):
        il.softmax_cross_entropy(A, y, temperature=0)
    with pytest.raises(InfolossTypeError, match="`mask` must be a boolean array"):
        il.softmax_kl_divergence(A, B, mask=np.zeros(5, np.int8))
