"""The softmax JS kernel (``infoloss._fast.kernels.softmax_js_rows``) and the fast route of
``softmax_js_divergence`` (and of ``softmax_kl_divergence`` with options) against the generic
definition.

The kernel computes in float64 for both dtypes; float32 results are compared with the generic
definition evaluated in float64 on the same float32 numbers (as tests/test_kl_kernel.py does).
Values: rtol 1e-12 (float64) / 2e-6 (float32) with an absolute part of a few ulps of the logit
spread (log-probabilities of that size carry that absolute error on either path); gradients: the
same relative to the row's largest gradient. Special values must match exactly (nan rows, masked
classes, rows without a distribution).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sp

pytest.importorskip("numba")

import infoloss as il
from infoloss import _config, value_and_grad

kernels = pytest.importorskip("infoloss._fast.kernels")


def _generic(a, b, **kw):
    with _config.generic_only():
        return value_and_grad(il.softmax_js_divergence)(
            a.astype(np.float64), b.astype(np.float64), **kw
        )


def _batch(rng, n, c, spread, dtype):
    a = (rng.normal(size=(n, c)) * spread).astype(dtype)
    b = (rng.normal(size=(n, c)) * spread).astype(dtype)
    return a, b


def _grad_bound(x, beta):
    """The rounding bound of a gradient row on either path: d^P_j = log p_j − log m_j carries
    the absolute rounding of log-probabilities (a few ulps of |log p_j| + |log q_j|), so
    ∂/∂a_j = β p_j ((d_j − d_*) − Σ p (d − d_*)) is known to β p_j (|log p_j| + |log q_j| + S)
    ulps, S the p-mean of the same (a row whose true gradient cancels far below that, e.g. a P
    far from Q on every class it covers, keeps only this absolute accuracy)."""
    a, b = (np.asarray(v, np.float64) for v in x)
    with np.errstate(divide="ignore", invalid="ignore"):
        lp, lq = sp.log_softmax(a, axis=-1), sp.log_softmax(b, axis=-1)
        p, q = np.exp(lp), np.exp(lq)
        size = np.nan_to_num(np.abs(lp) + np.abs(lq), posinf=0.0) + 3.0
    bounds = []
    for w, pr in ((beta, p), (1 - beta, q)):
        s = np.sum(pr * size, axis=-1, keepdims=True)
        bounds.append(32 * 2.0**-52 * w * pr * (size + s))
    return bounds


def _assert_agree(got, want, dtype, spread, x=None, beta=0.5):
    eps = np.finfo(dtype).eps if dtype == np.float32 else 1e-12 / 4
    rtol = 2e-6 if dtype == np.float32 else 1e-12
    v, (ga, gb) = got
    w, (wa, wb) = want
    assert v.dtype == dtype and ga.dtype == dtype and gb.dtype == dtype
    np.testing.assert_array_equal(np.isnan(v), np.isnan(w))
    np.testing.assert_allclose(v, w, rtol=rtol, atol=8 * eps * max(1.0, spread), equal_nan=True)
    extra = _grad_bound(x, beta) if x is not None else (0.0, 0.0)
    for g, r, e in ((ga, wa, extra[0]), (gb, wb, extra[1])):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(r))
        err = np.abs(np.where(np.isnan(r), 0, g - r))
        # float32 results round, and the float64 reference may be below float32's range; the
        # kernel's exp flushes results below 2^-1021.5 to 0 (float64 gradients of 1e-307)
        floor = np.finfo(np.float32).tiny if dtype == np.float32 else 2.0**-960
        bound = rtol * np.abs(np.nan_to_num(r)) + np.nan_to_num(e) + floor
        assert np.all(err <= bound), np.max(err / bound)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (3, 2), (17, 10), (64, 300), (8, 5000)])
@pytest.mark.parametrize("beta", [0.1, 0.5, 0.9])
def test_js_kernel_agrees_with_generic(dtype, shape, beta):
    rng = np.random.default_rng(sum(shape))
    for spread in (1.0, 30.0, 1e3):
        a, b = _batch(rng, *shape, spread, dtype)
        got = value_and_grad(il.softmax_js_divergence)(a, b, beta=beta)
        _assert_agree(got, _generic(a, b, beta=beta), dtype, spread, (a, b), beta)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_js_kernel_special_values(dtype):
    rng = np.random.default_rng(7)
    a, b = _batch(rng, 9, 12, 3.0, dtype)
    a[0, :5] = -np.inf  # masked teacher classes
    b[0, 3:8] = -np.inf  # and student classes, overlapping
    a[1] = -np.inf  # P without a distribution
    b[2] = -np.inf  # Q without one
    a[3] = -np.inf
    b[3] = -np.inf  # neither
    a[4, 2] = np.nan
    b[5, 1] = np.inf
    a[6, 0] = np.inf
    a[7] = b[7]  # P = Q
    a[8, 0], b[8, 0] = 1e4, -1e4
    for beta in (0.2, 0.5, 0.8):
        got = value_and_grad(il.softmax_js_divergence)(a, b, beta=beta)
        want = _generic(a, b, beta=beta)
        _assert_agree(got, want, dtype, 1e4, (a, b), beta)
        v, (ga, gb) = got
        assert np.isnan(v[[4, 5, 6]]).all() and np.isnan(ga[[4, 5, 6]]).all()
        assert np.isfinite(v[[0, 1, 2, 3, 7, 8]]).all()
        assert (
            np.isfinite(ga[[0, 1, 2, 3, 7, 8]]).all() and np.isfinite(gb[[0, 1, 2, 3, 7, 8]]).all()
        )
        # P = Q: 0 up to the rounding of log m (a few ulps of 1)
        assert abs(v[7]) <= 8 * np.finfo(dtype).eps
        assert np.abs(ga[7]).max() <= 8 * np.finfo(dtype).eps
        assert v[1] == pytest.approx(-(1 - beta) * np.log1p(-beta), rel=1e-6)
        assert v[2] == pytest.approx(-beta * np.log(beta), rel=1e-6) and v[3] == 0
        assert np.all(ga[0, :5] == 0) and np.all(gb[0, 3:5] == 0)


def test_js_kernel_wrapper_direct():
    rng = np.random.default_rng(3)
    a, b = _batch(rng, 5, 7, 2.0, np.float64)
    js, ga, _gb = kernels.softmax_js_rows(a, b, 0.3, 2.0)
    p, q = sp.softmax(a, axis=-1), sp.softmax(b, axis=-1)
    m = 0.3 * p + 0.7 * q
    want = 0.3 * sp.rel_entr(p, m).sum(-1) + 0.7 * sp.rel_entr(q, m).sum(-1)
    np.testing.assert_allclose(js, want, rtol=1e-13)
    _, gref, _ = kernels.softmax_js_rows(a, b, 0.3, 1.0)
    np.testing.assert_allclose(ga, 2 * gref, rtol=1e-15)
    js_only, none_a, none_b = kernels.softmax_js_rows(a, b, 0.3, None)
    assert none_a is None and none_b is None
    np.testing.assert_array_equal(js_only, js)
    with pytest.raises(ValueError, match="beta"):
        kernels.softmax_js_rows(a, b, 1.0, None)
    with pytest.raises(ValueError, match="same shape"):
        kernels.softmax_js_rows(a, b[:2], 0.5, None)
    # strided rows (every other row, a column slice) are read in place
    big = rng.normal(size=(10, 9))
    js_s, _, _ = kernels.softmax_js_rows(big[::2, :7], big[1::2, :7], 0.5, None)
    js_c, _, _ = kernels.softmax_js_rows(
        np.ascontiguousarray(big[::2, :7]), np.ascontiguousarray(big[1::2, :7]), 0.5, None
    )
    np.testing.assert_array_equal(js_s, js_c)


@pytest.mark.parametrize("fn", [il.softmax_js_divergence, il.softmax_kl_divergence])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_route_with_options_agrees(fn, reduction, dtype):
    """Temperature, weights, mask, reduction, base and a class axis in the middle: the fast glue
    (kernel + in-place row factors) against the generic definition."""
    rng = np.random.default_rng(11)
    a = (rng.normal(size=(4, 6, 3)) * 4).astype(dtype)
    b = (rng.normal(size=(4, 6, 3)) * 4).astype(dtype)
    a[1, 2, 0] = np.nan  # in a masked row
    sw = rng.uniform(0, 2, size=(4, 3)).astype(dtype)
    mk = np.ones((4, 3), bool)
    mk[1, 0] = False
    mk[2, 1] = False
    kw = dict(
        axis=1,
        temperature=1.5,
        scale_by_temperature_squared=True,
        sample_weights=sw,
        mask=mk,
        reduction=reduction,
        base=2,
    )
    v, (ga, gb) = value_and_grad(fn)(a, b, **kw)
    with _config.generic_only():
        w, (wa, wb) = value_and_grad(fn)(a.astype(np.float64), b.astype(np.float64), **kw)
    rtol = 2e-6 if dtype == np.float32 else 1e-12
    assert v.dtype == dtype and v.shape == w.shape
    np.testing.assert_allclose(v, w, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(ga, wa, rtol=rtol, atol=rtol * np.abs(wa).max())
    np.testing.assert_allclose(gb, wb, rtol=rtol, atol=rtol * np.abs(wb).max())
    assert np.all(ga[1, :, 0] == 0) and np.all(gb[2, :, 1] == 0)
