"""The fused dense-label focal and poly kernels (``_fast/kernels/dense_focal.py``): agreement with
the generic definition on both launch paths (serial twin, prange), float32 and float64, every
option; the extremes (±1e4 logits, −inf masked classes, all −inf rows, nan and +inf rows) on every
backend; γ = 0 is the dense cross-entropy exactly; bad labels and ``out=``."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sp
from _helpers import as_float64, assert_close

import infoloss
from infoloss import (
    _config,
    poly_cross_entropy,
    softmax_cross_entropy,
    softmax_focal_loss,
    value_and_grad,
)

GAMMAS = [0.0, 0.5, 2.0, 5.0]


def _both(fn, x, y, **kw):
    with _config.always_fast():
        fast = value_and_grad(fn)(x, y, **kw)
    with _config.generic_only():
        generic = value_and_grad(fn)(x, y, **kw)
    return fast, generic


def _data(shape, dtype, seed=3):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=shape) * 8).astype(dtype)
    t = rng.dirichlet(np.ones(shape[-1]), shape[:-1]).astype(dtype)
    x[0, ..., 1] = 60.0  # a confident row: q ≈ 1 for class 1
    t[0, ...] = 0.0
    t[0, ..., 1] = 1.0
    x[1, ..., 0] = -np.inf  # a masked class without target mass
    t[1, ..., 0] = 0.0
    t[1] /= t[1].sum(-1, keepdims=True)
    cw = rng.random(shape[-1]) + 0.1
    sw = rng.random(shape[:-1])
    return x, t, cw, sw


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(7, 3), (300, 700), (3, 4, 40)], ids=["serial", "prange", "3d"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_fused_dense_kernels_agree_with_generic(dtype, shape, reduction):
    x, t, cw, sw = _data(shape, dtype)
    tol = dict(rtol=2e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-10, atol=1e-12)
    for fn, kw in (
        (softmax_focal_loss, {"gamma": 2.0}),
        (softmax_focal_loss, {"gamma": 0.5}),
        (softmax_focal_loss, {"gamma": 5.0}),
        (poly_cross_entropy, {"epsilon": 1.0}),
        (poly_cross_entropy, {"epsilon": -0.5}),
    ):
        for opts in ({}, {"class_weights": cw, "sample_weights": sw}):
            (v1, g1), (v2, g2) = _both(fn, x, t, reduction=reduction, **kw, **opts)
            assert v1.dtype == g1.dtype == np.dtype(dtype)
            assert_close(v1, v2, **tol, scale="all" if reduction == "none" else None)
            assert_close(g1, g2, **tol, scale="all")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_dense_kernel_class_axis_and_strided_rows(dtype):
    x, t, _, _ = _data((6, 9, 5), dtype)
    cw = np.linspace(0.5, 1.5, 9)
    (v1, g1), (v2, g2) = _both(softmax_focal_loss, x, t, axis=1, gamma=2.0, class_weights=cw)
    tol = dict(rtol=2e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-10, atol=1e-12)
    assert_close(v1, v2, **tol, scale="all")
    assert_close(g1, g2, **tol, scale="all")
    xs, ts = x[:, ::2, :].reshape(6, -1)[:, ::3], t[:, ::2, :].reshape(6, -1)[:, ::3]
    (v1, g1), (v2, g2) = _both(poly_cross_entropy, xs, ts, epsilon=2.0)
    assert_close(v1, v2, **tol, scale="all")
    assert_close(g1, g2, **tol, scale="all")


EXTREME = np.array(
    [
        [1e4, -1e4, 0.0, 1e4 - 1],
        [-1e4, 1e4, 50.0, -50.0],
        [100.0, -100.0, 0.0, 3.0],
        [2000.0, 0.0, -np.inf, 1.0],  # every other class more than 745 below the maximum
        [3.0, -np.inf, 1.0, 2.0],  # a masked class without target mass
    ]
)
EXTREME_T = np.array(
    [
        [0.5, 0.1, 0.2, 0.2],
        [0.0, 1.0, 0.0, 0.0],
        [0.25, 0.25, 0.25, 0.25],
        [0.7, 0.3, 0.0, 0.0],
        [0.1, 0.0, 0.6, 0.3],
    ]
)


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("scale", [1.0, -1.0])
def test_dense_extremes_finite_on_every_backend(backend, gamma, scale):
    """Logits of ±1e4 and ±100, −inf masked classes: finite values and gradients (float32 and
    float64), equal to the float64 generic definition."""
    x64 = np.where(np.isinf(EXTREME), EXTREME, EXTREME * scale)  # −inf stays a masked class
    t = EXTREME_T if scale > 0 else EXTREME_T[:, ::-1].copy()
    masked = np.isinf(x64) & (t > 0)
    t = np.where(masked, 0.0, t)
    t = t / t.sum(-1, keepdims=True)
    with _config.generic_only():
        refs = [
            value_and_grad(softmax_focal_loss)(x64, t, gamma=gamma),
            value_and_grad(poly_cross_entropy)(x64, t, epsilon=gamma),
        ]
    for dtype in ("float32", "float64"):
        x = backend.asarray(x64, dtype)
        y = backend.asarray(t, dtype)
        for (fn, kw), (rv, rg) in zip(
            ((softmax_focal_loss, {"gamma": gamma}), (poly_cross_entropy, {"epsilon": gamma})),
            refs,
            strict=True,
        ):
            v, g = value_and_grad(fn)(x, y, **kw)
            assert np.isfinite(as_float64(v)).all() and np.isfinite(as_float64(g)).all()
            tol = {} if dtype == "float64" else dict(rtol=2e-5, atol=1e-5)
            assert_close(as_float64(v), rv, scale="all", **tol)
            assert_close(as_float64(g), rg, scale="all", **tol)


def test_dense_extremes_exact_in_log_space():
    # 1 − q of the target is e^-2000 (the other logits' log-sum-exp, formed around their own
    # maximum): the poly term is 0 and the focal loss underflows to 0, the gradient is finite;
    # with logits [30, 0] the focal loss is (1 − q) (−log q) = e^-30 log1p(e^-30)
    with _config.always_fast():
        x = np.array([[30.0, 0.0]], np.float32)
        got = float(softmax_focal_loss(x, np.array([[1.0, 0.0]], np.float32), gamma=1.0)[0])
        ref = float(np.exp(-30.0) * np.log1p(np.exp(-30.0)))
        assert abs(got - ref) <= 1e-6 * ref
        x = np.array([[1e4, -1e4, 0.0]], np.float32)
        t = np.array([[0.0, 0.0, 1.0]], np.float32)
        assert float(softmax_focal_loss(x, t, gamma=5.0)[0]) == 1e4


def test_dense_nan_inf_and_all_masked_rows(backend):
    """nan in, nan out (a nan or +inf logit, a nan label: that row only); an all −inf row is 0
    without target mass and +inf with it."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 5)) * 3
    t = rng.dirichlet(np.ones(5), 6)
    x[0, 2] = np.nan
    x[1, 4] = np.inf
    x[2] = -np.inf
    t[3, 1] = np.nan
    for fn, kw in ((softmax_focal_loss, {"gamma": 2.0}), (poly_cross_entropy, {"epsilon": 1.0})):
        v, g = value_and_grad(fn)(backend.asarray(x), backend.asarray(t), **kw)
        v, g = as_float64(v), as_float64(g)
        assert np.isnan(v[[0, 1, 3]]).all() and np.isfinite(v[4:]).all()
        assert np.isnan(g[[0, 1, 3]]).all() and np.isfinite(g[4:]).all()
        assert v[2] == np.inf
        with _config.generic_only():
            v0, g0 = value_and_grad(fn)(x, t, **kw)
        assert_close(v, v0, scale="all")
        assert_close(g, g0, scale="all")
        t0 = t.copy()
        t0[2] = 0.0  # no target mass on the all −inf row: 0, with a zero gradient
        v, g = value_and_grad(fn)(backend.asarray(x), backend.asarray(t0), **kw)
        assert as_float64(v)[2] == 0.0 and (as_float64(g)[2] == 0.0).all()


def test_gamma_zero_is_dense_cross_entropy_exactly(backend):
    x, t, cw, sw = _data((5, 7), "float64")
    x, t = backend.asarray(x), backend.asarray(t)
    for red in ("none", "mean"):
        kw = dict(class_weights=backend.asarray(cw), sample_weights=backend.asarray(sw))
        a = value_and_grad(softmax_focal_loss)(x, t, gamma=0.0, reduction=red, **kw)
        b = value_and_grad(poly_cross_entropy)(x, t, epsilon=0.0, reduction=red, **kw)
        c = value_and_grad(softmax_cross_entropy)(x, t, reduction=red, **kw)
        for u in (a, b):
            assert_close(u[0], c[0], rtol=0.0, atol=0.0)
            assert_close(u[1], c[1], rtol=0.0, atol=0.0)


@pytest.mark.parametrize("gamma", GAMMAS[1:])
def test_dense_kernel_matches_keras_formula_in_float64(gamma):
    """−Σ y (1 − q)^γ log q in float64 (Keras CategoricalFocalCrossentropy written out)."""
    x, t, cw, _ = _data((300, 700), "float64", seed=11)
    x[1, 0] = 0.0
    with _config.always_fast():
        got = softmax_focal_loss(x, t, gamma=gamma, class_weights=cw)
    q = sp.softmax(x, -1)
    ref = -np.sum(cw * t * (1 - q) ** gamma * sp.log_softmax(x, -1), -1)
    assert_close(got[1:], ref[1:], rtol=1e-11, atol=1e-300)
    # the confident one-hot row 0 (1 − q cancels in the formula): 1 − q from the other logits
    d = np.exp(sp.logsumexp(np.delete(x[0], 1)) - x[0, 1])  # 1/q − 1
    ref0 = cw[1] * (d / (1 + d)) ** gamma * np.log1p(d)
    assert_close(got[0], ref0, rtol=1e-11, atol=0)


def test_dense_bad_labels_and_out_buffer():
    x, t, _, _ = _data((300, 700), "float32")
    bad = t.copy()
    bad[4, 7] = -0.5
    with _config.always_fast():
        with pytest.raises(infoloss.InfolossError, match="`labels`"):
            softmax_focal_loss(x, bad, gamma=2.0)
        bad[4, 7] = np.inf
        with pytest.raises(infoloss.InfolossError, match="`labels`"):
            value_and_grad(poly_cross_entropy)(x, bad)
        buf = np.empty_like(x)
        _, g = value_and_grad(softmax_focal_loss)(x, t, gamma=2.0, out=buf)
        _, ref = value_and_grad(softmax_focal_loss)(x, t, gamma=2.0)
    assert g is buf
    np.testing.assert_array_equal(buf, ref)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_vector_log_within_two_ulp(dtype):
    """``_vecmath._vlog`` (the soft-label sigmoid focal loop's log) against np.log in float64:
    normal and subnormal arguments, both sides of 1, up to the largest float."""
    from numba import njit

    from infoloss._fast.kernels._vecmath import _vlog

    @njit
    def run(a, out):
        for i in range(a.shape[0]):
            out[i] = _vlog(a[i])

    dt = np.dtype(dtype)
    rng = np.random.default_rng(0)
    lo = -300 if dt == np.float64 else -44
    a = np.concatenate(
        [
            rng.random(20000),
            1 - rng.random(1000) * 1e-6,
            1 + rng.random(1000) * 1e-6,
            10.0 ** rng.uniform(lo, 30, 5000),
            [1.0, 0.5, 2.0, np.finfo(dt).tiny, np.finfo(dt).tiny / 7, np.finfo(dt).max],
        ]
    ).astype(dt)
    a = a[a > 0]
    out = np.empty_like(a)
    run(a, out)
    ref = np.log(a.astype(np.float64)) if dt == np.float32 else np.log(a)
    ulp = np.spacing(np.abs(ref).astype(dt)).astype(np.float64)
    err = np.abs(out.astype(np.float64) - ref)
    assert np.all(err <= 2 * ulp + (ref == 0)), float(np.max(err / ulp))
    assert out[np.nonzero(a == 1)[0][0]] == 0.0
