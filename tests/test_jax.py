"""infoloss on JAX (issue 6): the generic path under ``jax.jit``, ``jax.vmap`` and ``jax.grad``.

JAX arrays always take the generic array-API code (compiled by XLA under ``jit``); the numba
kernels are not bound for JAX (measured slower through ``jax.pure_callback``; docs/torch.md).
References are the float64 NumPy/SciPy formulas of ``_helpers`` and their analytic gradients.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sp
from _helpers import (
    ref_sigmoid_ce,
    ref_softmax_ce,
    ref_softmax_entropy,
    ref_softmax_kl,
    ref_sparse_ce,
)

jax = pytest.importorskip("jax")
jnp = jax.numpy

import infoloss  # noqa: E402

RNG = np.random.default_rng(0)
B, N, C = 3, 5, 6
X = 2 * RNG.standard_normal((B, N, C))
X2 = 2 * RNG.standard_normal((B, N, C))
P = sp.softmax(RNG.standard_normal((B, N, C)), axis=-1)
Y = RNG.integers(0, C, (B, N))
Y[:, 0] = -100
YB = (RNG.random((B, N, C)) > 0.5).astype(np.float64)
CW = RNG.random(C) + 0.5
SW = RNG.random((B, N)) + 0.5
PW = RNG.random(C) * 3
TOL = dict(rtol=1e-10, atol=1e-12)


def _sparse(x, y, red="mean"):
    return infoloss.sparse_softmax_cross_entropy(
        x,
        y,
        class_weights=jnp.asarray(CW),
        ignore_index=-100,
        label_smoothing=0.1,
        z_loss=0.01,
        reduction=red,
    )


def _dense(x, p, red="mean"):
    return infoloss.softmax_cross_entropy(
        x, p, class_weights=jnp.asarray(CW), label_smoothing=0.1, z_loss=0.01, reduction=red
    )


def _sigmoid(x, y, red="mean"):
    return infoloss.sigmoid_cross_entropy(
        x, y, pos_weight=jnp.asarray(PW), label_smoothing=0.1, reduction=red
    )


def _ref_sparse(x, y, red="mean"):
    return ref_sparse_ce(
        x, y, class_weights=CW, ignore_index=-100, label_smoothing=0.1, z_loss=0.01, reduction=red
    )


def _ref_dense(x, p, red="mean"):
    return ref_softmax_ce(x, p, class_weights=CW, label_smoothing=0.1, z_loss=0.01, reduction=red)


def _ref_sigmoid(x, y, red="mean"):
    return ref_sigmoid_ce(x, y, pos_weight=PW, label_smoothing=0.1, reduction=red)


# analytic gradients of the references (docs/semantics.md), float64 NumPy


def _ref_grad_softmax(x, t_weighted, w_total, lse, keep=None):
    q = sp.softmax(x, axis=-1)
    g = t_weighted.sum(-1, keepdims=True) * q - t_weighted + 2 * 0.01 * lse[..., None] * q
    if keep is not None:
        g = np.where(keep[..., None], g, 0.0)
    return g / w_total


def _ref_grad_sparse(x, y):
    keep = y != -100
    oh = (np.where(keep, y, 0)[..., None] == np.arange(C)).astype(float)
    wt = CW * (0.9 * oh + 0.1 / C)
    w_total = np.sum(np.where(keep, CW[np.where(keep, y, 0)], 0.0))
    return _ref_grad_softmax(x, wt, w_total, sp.logsumexp(x, -1), keep)


def _ref_grad_dense(x, p):
    wt = CW * (0.9 * p + 0.1 / C)
    return _ref_grad_softmax(x, wt, np.sum(p @ CW), sp.logsumexp(x, -1))


def _ref_grad_sigmoid(x, y):
    yp = 0.9 * y + 0.05
    return ((PW * yp + 1 - yp) * sp.expit(x) - PW * yp) / x.size


PUBLIC = {
    "sparse": (
        infoloss.sparse_softmax_cross_entropy,
        dict(class_weights=jnp.asarray(CW), ignore_index=-100, label_smoothing=0.1, z_loss=0.01),
    ),
    "dense": (
        infoloss.softmax_cross_entropy,
        dict(class_weights=jnp.asarray(CW), label_smoothing=0.1, z_loss=0.01),
    ),
    "sigmoid": (
        infoloss.sigmoid_cross_entropy,
        dict(pos_weight=jnp.asarray(PW), label_smoothing=0.1),
    ),
}
CASES = {
    "sparse": (_sparse, _ref_sparse, lambda: jnp.asarray(Y), Y, _ref_grad_sparse),
    "dense": (_dense, _ref_dense, lambda: jnp.asarray(P), P, _ref_grad_dense),
    "sigmoid": (_sigmoid, _ref_sigmoid, lambda: jnp.asarray(YB), YB, _ref_grad_sigmoid),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_jit_value_and_grad(name):
    fn, ref, lab, lab_np, ref_grad = CASES[name]
    v, g = jax.jit(jax.value_and_grad(fn))(jnp.asarray(X), lab())
    assert isinstance(g, jax.Array) and g.dtype == jnp.float64
    np.testing.assert_allclose(float(v), ref(X, lab_np), **TOL)
    np.testing.assert_allclose(np.asarray(g), ref_grad(X, lab_np), **TOL)
    # and jax.grad equals infoloss's own analytic gradient
    public, kw = PUBLIC[name]
    _, g2 = infoloss.value_and_grad(public)(jnp.asarray(X), lab(), reduction="mean", **kw)
    np.testing.assert_allclose(np.asarray(g2), np.asarray(g), **TOL)


@pytest.mark.parametrize("name", sorted(CASES))
def test_vmap_over_a_leading_batch(name):
    fn, ref, lab, lab_np, _ = CASES[name]
    got = jax.vmap(fn)(jnp.asarray(X), lab())
    np.testing.assert_allclose(np.asarray(got), [ref(X[b], lab_np[b]) for b in range(B)], **TOL)
    got = jax.jit(jax.vmap(jax.grad(fn)))(jnp.asarray(X), lab())
    assert got.shape == X.shape


@pytest.mark.parametrize("name", sorted(CASES))
def test_jit_none_reduction(name):
    fn, ref, lab, lab_np, _ = CASES[name]
    got = jax.jit(lambda x, y: fn(x, y, "none"))(jnp.asarray(X), lab())
    np.testing.assert_allclose(np.asarray(got), ref(X, lab_np, "none"), **TOL)


def test_measures_from_logits_jit_vmap_grad():
    x, x2 = jnp.asarray(X), jnp.asarray(X2)
    h = jax.jit(infoloss.softmax_entropy)(x)
    np.testing.assert_allclose(np.asarray(h), ref_softmax_entropy(X), **TOL)
    kl = jax.jit(infoloss.softmax_kl_divergence)(x, x2)
    np.testing.assert_allclose(np.asarray(kl), ref_softmax_kl(X, X2), **TOL)
    np.testing.assert_allclose(
        np.asarray(jax.vmap(infoloss.softmax_entropy)(x)), ref_softmax_entropy(X), **TOL
    )
    np.testing.assert_allclose(
        np.asarray(jax.vmap(infoloss.softmax_kl_divergence)(x, x2)), ref_softmax_kl(X, X2), **TOL
    )
    # gradients: dH/dx = -q (log q + H); dKL/da = p((log p - log q) - KL), dKL/db = q - p
    q = sp.softmax(X, -1)
    logq = sp.log_softmax(X, -1)
    hh = ref_softmax_entropy(X)[..., None]
    gh = jax.jit(jax.grad(lambda t: jnp.sum(infoloss.softmax_entropy(t))))(x)
    np.testing.assert_allclose(np.asarray(gh), -q * (logq + hh), **TOL)
    ga, gb = jax.jit(
        jax.grad(lambda a, b: jnp.sum(infoloss.softmax_kl_divergence(a, b)), argnums=(0, 1))
    )(x, x2)
    q2, logq2 = sp.softmax(X2, -1), sp.log_softmax(X2, -1)
    klr = ref_softmax_kl(X, X2)[..., None]
    np.testing.assert_allclose(np.asarray(ga), q * ((logq - logq2) - klr), **TOL)
    np.testing.assert_allclose(np.asarray(gb), q2 - q, **TOL)


def test_float32_under_jit_stays_float32_and_is_finite_for_huge_logits():
    x = jnp.asarray(np.array([[1e30, -1e30, 0.0]], np.float32))
    v, g = jax.jit(
        jax.value_and_grad(
            lambda t: infoloss.sparse_softmax_cross_entropy(t, jnp.asarray([1]), reduction="sum")
        )
    )(x)
    assert v.dtype == jnp.float32 and bool(jnp.isfinite(v)) and bool(jnp.all(jnp.isfinite(g)))
    np.testing.assert_allclose(float(v), 2e30, rtol=1e-6)


@pytest.mark.parametrize("wrap", ["eager", "jit"])
def test_losses_inside_shard_map(wrap):
    """Inside a ``shard_map`` body (one device here) each custom-VJP route gives the value of the
    NumPy path: eagerly JAX cannot run a custom VJP with symbolic zeros there, and the router
    falls back to the definition; under ``jit`` the adapter runs. ``grad`` through it equals
    ``grad`` of the same call outside ``shard_map``."""
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 6))
    q = rng.normal(size=(4, 6))
    y = rng.integers(0, 6, size=4)
    b = (rng.random((4, 6)) < 0.5).astype(np.float64)
    h = rng.normal(size=(4, 3))
    w = rng.normal(size=(6, 3))
    calls = {
        "sparse": (lambda a, m: infoloss.sparse_softmax_cross_entropy(a, m(y), reduction="sum"), x),
        "sigmoid": (lambda a, m: infoloss.sigmoid_cross_entropy(a, m(b), reduction="sum"), x),
        "kl": (lambda a, m: infoloss.softmax_kl_divergence(m(q), a).sum(), x),
        "linear": (lambda a, m: infoloss.linear_cross_entropy(a, m(w), m(y), reduction="sum"), h),
    }
    mesh = Mesh(np.array(jax.devices()[:1]), ("dp",))
    for name, (fn, arg) in calls.items():

        def body(a, fn=fn):
            return jax.lax.psum(fn(a, jnp.asarray), "dp")

        f = jax.shard_map(body, mesh=mesh, in_specs=(P(),), out_specs=P())
        f = jax.jit(f) if wrap == "jit" else f
        a = jnp.asarray(arg)
        got = float(f(a))
        g = np.asarray(jax.grad(f)(a))
        ref = float(fn(arg, np.asarray))
        ref_g = np.asarray(jax.grad(lambda t, fn=fn: fn(t, jnp.asarray))(a))  # outside shard_map
        np.testing.assert_allclose(got, ref, rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(g, ref_g, rtol=1e-10, atol=1e-12, err_msg=name)
