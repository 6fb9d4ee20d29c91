"""Tests of the numba kernels (``infoloss._fast.kernels``) against float64 textbook references.

The references below are written from docs/semantics.md with NumPy/SciPy in float64 and never
call infoloss. float32 kernels are compared with the float64 reference evaluated on the same
(float32) numbers, with rtol 2e-6; float64 kernels with rtol 1e-12. Because values such as
``q − 1`` or ``lse − x`` cancel, each comparison also allows an absolute error of rtol times the
magnitude of the quantity (the largest |reference| of the row): |got − ref| ≤ rtol (|ref| + scale).
Non-finite values must match exactly (same infinities, nan only where the reference has nan).
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import scipy.special as sp

pytest.importorskip("numba")
from _helpers import assert_close
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infoloss._fast import kernels as K

RTOL = {np.float32: 2e-6, np.float64: 1e-12}
DTYPES = [np.float32, np.float64]


# --------------------------------------------------------------------------- helpers


def assert_kernel_close(got, ref, dtype, *, scale="row", what=""):
    """|got − ref| ≤ rtol (|ref| + scale), scale = largest finite |ref| of the row by default
    (``_helpers.assert_close`` with atol = rtol of the kernel's dtype, against a float64 ref)."""
    rtol = RTOL[dtype]
    assert_close(got, ref, rtol=rtol, atol=rtol, scale=scale, check_type=False, err_msg=what)


def _lse(x):
    """float64 log-sum-exp per row: −inf for an all −inf row, +inf if any +inf."""
    x = np.asarray(x, np.float64)
    m = np.max(x, axis=-1, keepdims=True)
    m0 = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        s = np.sum(np.exp(x - m0), axis=-1, keepdims=True)
        out = np.where(s > 0, m0 + np.log(np.where(s > 0, s, 1.0)), -np.inf)
    return out[..., 0]


def _fz(v):
    return np.where(np.isfinite(v), v, 0.0)


def _log_softmax64(x):
    """(lse_u, log q) in float64 with lse_u = finite_or_zero(lse) and log q = x − lse_u computed as
    −((m − x) + log1p(Σ_{j ≠ argmax} e^{x_j − m})), so that log q ≈ 0 keeps its relative
    accuracy."""
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    lse = _lse(x)
    fin = np.isfinite(lse)
    m = np.max(x, axis=-1, keepdims=True)
    m0 = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(x - m0)
        e[np.arange(n), np.argmax(x, axis=-1)] = 0.0
        l1 = np.log1p(e.sum(axis=-1, keepdims=True))
        logq = np.where(fin[:, None], -((m0 - x) + l1), x)
        lse_u = np.where(fin, m0[:, 0] + l1[:, 0], 0.0)
    return lse_u, logq


def ref_softmax_ce(x, y, cw=None, sw=None, eps=0.0, z=0.0, valid=None, magnitude=False):
    """(loss_i, d Σ loss / dx) for dense targets, float64, from docs/semantics.md."""
    x = np.asarray(x, np.float64)
    c = x.shape[1]
    t = (1 - eps) * y + eps / c
    wt = t if cw is None else t * cw[None, :]
    lse, logq = _log_softmax64(x)
    lse = lse[:, None]
    with np.errstate(invalid="ignore", over="ignore"):
        terms = np.where(wt != 0, wt * -np.where(wt != 0, logq, 0.0), 0.0)  # wt (lse − x)
        ce = terms.sum(axis=1)
        loss = ce + z * lse[:, 0] * lse[:, 0] if z else ce
        q = np.exp(logq)
        # rowf q − wt, written as (rowf − wt) q + wt (q − 1) with q − 1 = expm1(log q)
        rowf = wt.sum(axis=1, keepdims=True) + 2 * z * lse
        g = (rowf - wt) * q + np.where(wt != 0, wt * np.expm1(logq), 0.0)
        # size of the terms that cancel in the gradient, per row (the comparison's scale)
        mag = np.max(np.abs(rowf) * q + np.abs(wt), axis=1, keepdims=True)
    if sw is not None:
        loss, g, mag = loss * sw, g * sw[:, None], mag * sw[:, None]
    if valid is not None:
        loss = np.where(valid, loss, 0.0)
        g = np.where(valid[:, None], g, 0.0)
    return (loss, g, mag) if magnitude else (loss, g)


def ref_sparse_ce(x, labels, cw=None, sw=None, ignore=None, eps=0.0, z=0.0, magnitude=False):
    n, c = x.shape
    valid = None if ignore is None else labels != ignore
    safe = labels if ignore is None else np.where(valid, labels, 0)
    y = np.zeros((n, c))
    y[np.arange(n), safe] = 1.0
    return ref_softmax_ce(x, y, cw, sw, eps, z, valid, magnitude)


def ref_sigmoid_ce(x, y, pw=None, sw=None, eps=0.0, magnitude=False):
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    yp = y * (1 - eps) + eps / 2
    a = yp if pw is None else pw[None, :] * yp
    b = 1 - yp
    with np.errstate(invalid="ignore", over="ignore"):
        sp_pos = np.logaddexp(0.0, x)
        sp_neg = np.logaddexp(0.0, -x)
        loss = np.where(a != 0, a * sp_neg, 0.0) + np.where(b != 0, b * sp_pos, 0.0)
        g = (a + b) * sp.expit(x) - a
    mag = np.abs(a) + np.abs(b)  # size of the terms that cancel in the gradient, elementwise
    if sw is not None:
        loss, g, mag = loss * sw, g * sw, mag * np.abs(sw)
    return (loss, g, mag) if magnitude else (loss, g)


def ref_entropy(x, magnitude=False):
    """(H, dH/dx); with magnitude=True also max_j q_j (|log q_j| + H) per row (the size of the
    terms that cancel in the gradient)."""
    x = np.asarray(x, np.float64)
    _, logq = _log_softmax64(x)
    with np.errstate(invalid="ignore", over="ignore"):
        q = np.exp(logq)
        lq = np.where(q > 0, logq, 0.0)
        h = -np.sum(q * lq, axis=1)
        g = -q * (lq + h[:, None])
        mag = np.max(q * (np.abs(lq) + h[:, None]), axis=1, keepdims=True)
    return (h, g, mag) if magnitude else (h, g)


def ref_kl(a, b):
    lp = _log_softmax64(a)[1]
    lq = _log_softmax64(b)[1]
    with np.errstate(invalid="ignore", over="ignore"):
        p, q = np.exp(lp), np.exp(lq)
        d = np.where(p > 0, lp, 0.0) - np.where(p > 0, lq, 0.0)
        raw = np.sum(p * d, axis=1)
        ga = p * (d - raw[:, None])
        gb = q - p
    return np.maximum(raw, 0.0), ga, gb


def kl_magnitudes(a, b):
    """Sizes of the terms that cancel in the KL gradients, per row: max p (|log p| + |log q|)
    for d/da, max (p + q) for d/db."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        lp = a - _fz(_lse(a))[:, None]
        lq = b - _fz(_lse(b))[:, None]
        p, q = np.exp(lp), np.exp(lq)
        ma = np.max(np.where(p > 0, p * (np.abs(lp) + np.abs(lq) + 1), 0.0), axis=1, keepdims=True)
    return ma, np.max(p + q, axis=1, keepdims=True)


def _logits(rng, n, c, dtype, scale=3.0):
    return (rng.standard_normal((n, c)) * scale).astype(dtype)


def _variants(x):
    """x itself and non-contiguous views with the same values (in place or copied by the kernel)."""
    n, c = x.shape
    big = np.zeros((2 * n, c + 3), x.dtype)
    big[::2, 1 : c + 1] = x
    ft = np.asfortranarray(x)
    wide = np.zeros((n, 2 * c), x.dtype)
    wide[:, ::2] = x
    return {"c": x, "rowstride": big[::2, 1 : c + 1], "fortran": ft, "classstride": wide[:, ::2]}


# --------------------------------------------------------------------------- activations


@pytest.mark.parametrize("dtype", DTYPES)
def test_activations_values(dtype):
    rng = np.random.default_rng(0)
    x = _logits(rng, 17, 37, dtype)
    x[3, 5] = -np.inf
    x[4, :] = -np.inf  # no distribution
    x[5, :] = 0.0
    x[6, 2] = 1e30 if dtype == np.float32 else 1e300
    x[7, :] = -1e30 if dtype == np.float32 else -1e300
    x[7, 3] = 1e30 if dtype == np.float32 else 1e300
    for name, xv in _variants(x).items():
        lse = _lse(x)
        got = K.logsumexp_rows(xv)
        assert got.dtype == dtype and got.shape == (17,)
        assert_kernel_close(got, lse, dtype, scale=0.0, what=f"lse {name}")
        ls = K.log_softmax_rows(xv)
        assert ls.dtype == dtype
        ref_ls = np.asarray(x, np.float64) - _fz(lse)[:, None]
        assert_kernel_close(ls, ref_ls, dtype, what=f"log_softmax {name}")
        sm = K.softmax_rows(xv)
        ref_sm = np.exp(ref_ls)
        assert_kernel_close(sm, ref_sm, dtype, what=f"softmax {name}")
    assert K.logsumexp_rows(x)[4] == -np.inf
    assert np.all(K.softmax_rows(x)[4] == 0) and np.all(K.log_softmax_rows(x)[4] == -np.inf)
    np.testing.assert_allclose(K.softmax_rows(x).sum(axis=1)[np.arange(17) != 4], 1.0, rtol=1e-5)


def test_activations_known_values():
    x = np.array([[0.0, np.log(3.0)], [1000.0, 1000.0], [-np.inf, -np.inf]])
    np.testing.assert_allclose(
        K.logsumexp_rows(x)[:2], [np.log(4.0), 1000 + np.log(2.0)], rtol=1e-15
    )
    np.testing.assert_allclose(K.softmax_rows(x)[:2], [[0.25, 0.75], [0.5, 0.5]], rtol=1e-15)
    x32 = np.array([[1e30, 0.0], [-1e30, 1e30]], np.float32)
    np.testing.assert_array_equal(
        K.log_softmax_rows(x32), np.array([[0, -1e30], [-2e30, 0]], np.float32)
    )
    np.testing.assert_array_equal(K.softmax_rows(x32), [[1, 0], [0, 1]])


# --------------------------------------------------------------------------- softmax CE

_GRID = list(
    itertools.product(
        [False, True],  # class weights
        [False, True],  # sample weights
        [0.0, 0.1],  # label smoothing
        [0.0, 1e-3],  # z-loss
        [None, 1.0, 0.25],  # grad scale
    )
)


def _weights(rng, n, c, use_cw, use_sw):
    cw = rng.uniform(0.2, 2.0, c) if use_cw else None
    if cw is not None:
        cw[1] = 0.0  # a zero class weight
    sw = rng.uniform(0.0, 2.0, n) if use_sw else None
    return cw, sw


def _special_rows(x, labels):
    """−inf logits: masked class, −inf on the target, all −inf row; ±1e30 logits."""
    big = 1e30 if x.dtype == np.float32 else 1e300
    x[0, (labels[0] + 1) % x.shape[1]] = -np.inf  # masked non-target class
    x[1, labels[1]] = -np.inf  # target on a −inf logit: +inf loss (if its weight > 0)
    x[2, :] = -np.inf  # no distribution
    x[3, labels[3]] = big
    x[3, (labels[3] + 2) % x.shape[1]] = -big
    return x


# (150, 10): short rows, the tiled kernel (two full tiles of 64 rows and a partial one);
# "streamed": the sizes above which the gradient kernel splits the rows between threads and
# writes with streaming stores are lowered to 0, so this small case takes that route.
@pytest.mark.parametrize(
    ("shape", "streamed"),
    [((23, 41), False), ((23, 41), True), ((150, 10), False)],
    ids=["long", "long-streamed", "short"],
)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("use_cw", "use_sw", "eps", "z", "gs"), _GRID)
def test_sparse_softmax_ce_grid(dtype, use_cw, use_sw, eps, z, gs, shape, streamed, monkeypatch):
    if streamed:
        monkeypatch.setattr(K._tunables, "_STREAM_MIN_BYTES", 0)
        monkeypatch.setattr(K._tunables, "_PARALLEL_MIN_ELEMENTS", 0)
    rng = np.random.default_rng(1)
    n, c = shape
    x = _logits(rng, n, c, dtype)
    labels = rng.integers(0, c, n)
    labels[5] = 1  # a class with zero weight (when class weights are on)
    cw, sw = _weights(rng, n, c, use_cw, use_sw)
    for ignore in (None, 7):
        if ignore is not None:
            labels[[4, 9]] = ignore
        for special in (False, True):
            xs = _special_rows(x.copy(), labels) if special else x
            ref_l, ref_g, mag = ref_sparse_ce(xs, labels, cw, sw, ignore, eps, z, magnitude=True)
            for name, xv in _variants(xs).items() if not special else [("c", xs)]:
                loss, g = K.sparse_softmax_ce(xv, labels, cw, sw, ignore, eps, z, gs)
                assert loss.dtype == np.float64 and loss.shape == (n,)
                assert_kernel_close(
                    loss,
                    ref_l,
                    dtype,
                    scale=np.max(np.abs(ref_l[np.isfinite(ref_l)])),
                    what=f"loss {name}",
                )
                if gs is None:
                    assert g is None
                else:
                    assert g.dtype == dtype and g.shape == (n, c)
                    assert_kernel_close(g, ref_g * gs, dtype, scale=mag * gs, what=f"grad {name}")
                    if ignore is not None:
                        assert np.all(g[labels == ignore] == 0)
                    if name == "c":  # the logits turned into their gradient
                        xi = xv.copy()
                        loss_i, gi = K.sparse_softmax_ce(
                            xi, labels, cw, sw, ignore, eps, z, gs, out=xi
                        )
                        assert gi is xi
                        # another kernel may take the call: equal up to a few roundings (where
                        # LLVM fused a multiply-add differently), far tighter than the reference
                        tiny = 8 * np.finfo(dtype).eps
                        np.testing.assert_allclose(gi, g, rtol=0, atol=tiny * np.max(mag) * gs)
                        # (the float32 kernels' sums may differ in order: seen on an Intel Xeon)
                        np.testing.assert_allclose(loss_i, loss, rtol=tiny)
            if ignore is not None:
                assert np.all(loss[labels == ignore] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("use_cw", "use_sw", "eps", "z", "gs"), _GRID)
def test_softmax_ce_grid(dtype, use_cw, use_sw, eps, z, gs):
    rng = np.random.default_rng(2)
    n, c = 19, 33
    x = _logits(rng, n, c, dtype)
    y = rng.dirichlet(np.full(c, 0.3), n)
    y[:, 4] = 0.0
    y /= y.sum(axis=1, keepdims=True)
    y[6] = np.eye(c)[3]
    y = y.astype(dtype)
    cw, sw = _weights(rng, n, c, use_cw, use_sw)
    x[0, 4] = -np.inf  # no target mass there: contributes 0 unless smoothing is on
    x[1, :] = -np.inf
    x[2, 7] = -np.inf  # target mass on −inf: +inf
    x[3, 3] = 1e30 if dtype == np.float32 else 1e300
    ref_l, ref_g, mag = ref_softmax_ce(x, y.astype(np.float64), cw, sw, eps, z, magnitude=True)
    for name, xv in _variants(x).items():
        yv = _variants(y)[name]
        loss, g = K.softmax_ce(xv, yv, cw, sw, eps, z, gs)
        assert loss.dtype == np.float64
        assert_kernel_close(
            loss, ref_l, dtype, scale=np.max(np.abs(ref_l[np.isfinite(ref_l)])), what=f"loss {name}"
        )
        if gs is None:
            assert g is None
        else:
            assert g.dtype == dtype
            assert_kernel_close(g, ref_g * gs, dtype, scale=mag * gs, what=f"grad {name}")
    if eps == 0 and (sw is None or sw[0] > 0):
        assert np.isfinite(loss[0])
    assert loss[2] == np.inf or (sw is not None and sw[2] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_one_hot_equals_sparse(dtype):
    rng = np.random.default_rng(3)
    n, c = 31, 12
    x = _logits(rng, n, c, dtype)
    labels = rng.integers(0, c, n)
    cw, sw = rng.uniform(0.5, 2, c), rng.uniform(0, 2, n)
    y = np.eye(c, dtype=dtype)[labels]
    ls, gs_ = K.sparse_softmax_ce(x, labels, cw, sw, None, 0.2, 1e-2, 0.5)
    ld, gd = K.softmax_ce(x, y, cw, sw, 0.2, 1e-2, 0.5)
    assert_kernel_close(ls, ld, dtype, scale=np.abs(ld).max())
    assert_kernel_close(gs_, gd, dtype)


def test_sparse_ce_extreme_float32():
    """±1e30 logits in float32: finite losses and gradients, exact where the answer is exact."""
    x = np.array([[1e30, -1e30, 0.0], [-1e30, 1e30, 0.0], [0.0, 0.0, 0.0]], np.float32)
    labels = np.array([0, 0, 2])
    loss, g = K.sparse_softmax_ce(x, labels, None, None, None, 0.0, 0.0, 1.0)
    np.testing.assert_allclose(loss, [0.0, 2e30, np.log(3.0)], rtol=1e-7)
    np.testing.assert_allclose(
        g, [[0, 0, 0], [-1, 1, 0], [1 / 3, 1 / 3, -2 / 3]], rtol=1e-6, atol=1e-7
    )


def test_ignored_all_inf_and_zero_weight_rows():
    x = np.full((3, 4), -np.inf)
    x[1] = [0.0, 1.0, -np.inf, 2.0]
    labels = np.array([-100, 2, 1])
    loss, g = K.sparse_softmax_ce(x, labels, None, None, -100, 0.0, 0.1, 1.0)
    assert loss[0] == 0 and np.all(g[0] == 0)  # ignored all −inf row: nothing at all
    assert loss[1] == np.inf and loss[2] == np.inf
    assert not np.isnan(g).any()
    cw = np.array([1.0, 1.0, 0.0, 1.0])  # zero weight on the −inf target: contributes 0, not nan
    loss, g = K.sparse_softmax_ce(x[1:2], labels[1:2], cw, None, None, 0.0, 0.0, 1.0)
    assert loss[0] == 0.0 and np.all(g == 0)


# --------------------------------------------------------------------------- sigmoid CE


def _sw_variants(rng, n, c):
    return {
        "none": None,
        "full": rng.uniform(0, 2, (n, c)),
        "row": np.broadcast_to(rng.uniform(0, 2, (n, 1)), (n, c)),
        "class": np.broadcast_to(rng.uniform(0, 2, c), (n, c)),
        "scalar": np.broadcast_to(np.float64(0.7), (n, c)),
        "transposed": np.ascontiguousarray(rng.uniform(0, 2, (c, n))).T,
    }


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("use_pw", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("gs", [None, 1.0, 0.1])
def test_sigmoid_ce_grid(dtype, use_pw, eps, gs):
    rng = np.random.default_rng(4)
    n, c = 13, 29
    x = _logits(rng, n, c, dtype, scale=6.0)
    big = 1e30 if dtype == np.float32 else 1e300
    x[0, :4] = [np.inf, -np.inf, big, -big]
    x[1, :3] = [-40.0, 40.0, 0.0]
    y = (rng.uniform(size=(n, c)) < 0.4).astype(dtype)
    y[2] = rng.uniform(size=c).astype(dtype)  # soft labels
    y[0, :4] = [1, 0, 1, 0]  # infinite logits on the easy side: loss 0 (without smoothing)
    pw = rng.uniform(0.5, 3.0, c) if use_pw else None
    for swname, sw in _sw_variants(rng, n, c).items():
        ref_l, ref_g, mag = ref_sigmoid_ce(x, y, pw, sw, eps, magnitude=True)
        for name, xv in _variants(x).items():
            yv = _variants(y)[name]
            le, g = K.sigmoid_ce(xv, yv, pw, sw, eps, gs, True)
            assert le.dtype == dtype and le.shape == (n, c)
            assert_kernel_close(le, ref_l, dtype, what=f"elementwise {swname} {name}")
            ls, g2 = K.sigmoid_ce(xv, yv, pw, sw, eps, gs, False)
            assert ls.dtype == np.float64 and ls.shape == (n,)
            ref_rows = ref_l.sum(axis=1)
            assert_kernel_close(
                ls, ref_rows, dtype, scale=np.abs(ref_l).max(), what=f"rows {swname} {name}"
            )
            if gs is None:
                assert g is None and g2 is None
            else:
                assert g.dtype == dtype
                assert_kernel_close(
                    g, ref_g * gs, dtype, scale=mag * gs, what=f"grad {swname} {name}"
                )
                np.testing.assert_array_equal(g, g2)
    if eps == 0:
        le, _ = K.sigmoid_ce(x, y, pw, None, eps, None, True)
        np.testing.assert_array_equal(le[0, :4], [0, 0, 0, 0])


def test_sigmoid_ce_known_values():
    x = np.array([[0.0, 2.0, -3.0]])
    y = np.array([[1.0, 0.0, 1.0]])
    le, g = K.sigmoid_ce(x, y, None, None, 0.0, 1.0, True)
    np.testing.assert_allclose(
        le, [[np.log(2), np.log1p(np.exp(2)), np.log1p(np.exp(3))]], rtol=1e-15
    )
    np.testing.assert_allclose(g, sp.expit(x) - y, rtol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("y0", [0.0, 1.0])
def test_sigmoid_ce_nan_logits_give_nan(dtype, y0):
    # both NaN signs: x86's "default NaN" from an invalid operation (0 * inf) has the sign bit
    # set, np.nan has not; the vector exp's flush mask must not turn either into a number
    nan_neg = -np.abs(np.float64(np.nan))
    x = np.array([[np.nan, nan_neg, 1.0, -1.0] * 5], dtype)
    assert np.signbit(x[0, 1]) and not np.signbit(x[0, 0])
    y = np.full_like(x, y0)
    le, g = K.sigmoid_ce(x, y, None, None, 0.0, 1.0, True)
    nan_at = np.isnan(x)
    assert np.isnan(le[nan_at]).all() and np.isnan(g[nan_at]).all()
    assert np.isfinite(le[~nan_at]).all() and np.isfinite(g[~nan_at]).all()


# --------------------------------------------------------------------------- entropy and KL


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gs", [None, 1.0, 1 / np.log(2)])
def test_softmax_entropy(dtype, gs):
    rng = np.random.default_rng(5)
    x = _logits(rng, 21, 35, dtype)
    x[0, 3] = -np.inf
    x[1, :] = -np.inf
    x[2, :] = 0.0  # uniform: log C
    x[3, 0] = 1e30 if dtype == np.float32 else 1e300  # one-hot: 0
    ref_h, ref_g, mag = ref_entropy(x, magnitude=True)
    for name, xv in _variants(x).items():
        h, g = K.softmax_entropy_rows(xv, gs)
        assert h.dtype == np.float64
        assert_kernel_close(h, ref_h, dtype, scale=np.log(35), what=f"entropy {name}")
        if gs is None:
            assert g is None
        else:
            assert g.dtype == dtype
            assert_kernel_close(g, ref_g * gs, dtype, scale=mag * gs, what=f"grad {name}")
    assert h[1] == 0.0 and h[3] == 0.0
    np.testing.assert_allclose(h[2], np.log(35), rtol=RTOL[dtype])
    ok = np.arange(21) != 1  # SciPy cross-check (scipy warns on the all −inf row)
    np.testing.assert_allclose(
        h[ok],
        sp.entr(sp.softmax(np.asarray(x[ok], np.float64), axis=1)).sum(axis=1),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gs", [None, 1.0, 0.5])
def test_softmax_kl(dtype, gs):
    rng = np.random.default_rng(6)
    n, c = 17, 30
    a = _logits(rng, n, c, dtype)
    b = _logits(rng, n, c, dtype)
    b[0] = a[0]  # KL(p, p) = 0
    b[1] = (a[1] + 1e-3 * rng.standard_normal(c)).astype(dtype)  # p ≈ q
    a[2, 5] = -np.inf  # p = 0 there: contributes 0
    b[3, 5] = -np.inf  # q = 0 where p > 0: +inf
    a[4, :] = -np.inf  # no distribution in a: 0
    ref_kl_, ref_ga, ref_gb = ref_kl(a, b)
    mag_a, mag_b = kl_magnitudes(a, b)
    np.testing.assert_allclose(
        ref_kl_[:2],
        sp.rel_entr(
            sp.softmax(a[:2].astype(np.float64), axis=1),
            sp.softmax(b[:2].astype(np.float64), axis=1),
        ).sum(axis=1),
        rtol=1e-6,
        atol=1e-15,
    )
    for name, av in _variants(a).items():
        bv = _variants(b)[name]
        kl, ga, gb = K.softmax_kl_rows(av, bv, gs)
        assert kl.dtype == np.float64 and np.all(kl >= 0)
        # KL is a difference of log-probabilities of size ~1: absolute accuracy rtol * 1
        assert_kernel_close(kl, ref_kl_, dtype, scale=1.0, what=f"kl {name}")
        if gs is None:
            assert ga is None and gb is None
        else:
            assert ga.dtype == dtype and gb.dtype == dtype
            fin = np.isfinite(ref_kl_)
            assert_kernel_close(
                ga[fin], ref_ga[fin] * gs, dtype, scale=mag_a[fin] * gs, what=f"grad a {name}"
            )
            assert_kernel_close(gb, ref_gb * gs, dtype, scale=mag_b * gs, what=f"grad b {name}")
    assert kl[0] == 0.0 and kl[3] == np.inf and kl[4] == 0.0
    np.testing.assert_allclose(kl[1], ref_kl_[1], rtol=1e-6 if dtype == np.float64 else 2e-3)


# --------------------------------------------------------------------------- finite differences


def _fd(f, x, h=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        g[idx] = (f(xp) - f(xm)) / (2 * h)
    return g


def test_gradients_finite_differences():
    rng = np.random.default_rng(7)
    n, c = 4, 6
    x = rng.standard_normal((n, c))
    labels = np.array([0, 3, 5, 2])
    cw, sw = rng.uniform(0.5, 2, c), rng.uniform(0.5, 2, n)
    y = rng.dirichlet(np.ones(c), n)
    b = rng.standard_normal((n, c))
    yb = rng.uniform(size=(n, c))
    pw = rng.uniform(0.5, 2, c)
    cases = [
        (
            lambda v: K.sparse_softmax_ce(v, labels, cw, sw, 3, 0.1, 0.01, None)[0].sum(),
            lambda v: K.sparse_softmax_ce(v, labels, cw, sw, 3, 0.1, 0.01, 1.0)[1],
        ),
        (
            lambda v: K.softmax_ce(v, y, cw, sw, 0.1, 0.01, None)[0].sum(),
            lambda v: K.softmax_ce(v, y, cw, sw, 0.1, 0.01, 1.0)[1],
        ),
        (
            lambda v: K.sigmoid_ce(
                v, yb, pw, np.broadcast_to(sw[:, None], (n, c)), 0.1, None, False
            )[0].sum(),
            lambda v: K.sigmoid_ce(
                v, yb, pw, np.broadcast_to(sw[:, None], (n, c)), 0.1, 1.0, False
            )[1],
        ),
        (
            lambda v: K.softmax_entropy_rows(v, None)[0].sum(),
            lambda v: K.softmax_entropy_rows(v, 1.0)[1],
        ),
        (
            lambda v: K.softmax_kl_rows(v, b, None)[0].sum(),
            lambda v: K.softmax_kl_rows(v, b, 1.0)[1],
        ),
        (
            lambda v: K.softmax_kl_rows(b, v, None)[0].sum(),
            lambda v: K.softmax_kl_rows(b, v, 1.0)[2],
        ),
    ]
    for i, (f, grad) in enumerate(cases):
        np.testing.assert_allclose(grad(x), _fd(f, x), rtol=1e-6, atol=1e-8, err_msg=f"case {i}")


# --------------------------------------------------------------------------- hypothesis


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 9),
    c=st.integers(1, 70),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**32 - 1),
    eps=st.sampled_from([0.0, 0.3]),
    z=st.sampled_from([0.0, 0.05]),
    weighted=st.booleans(),
)
def test_hypothesis_shapes(n, c, dtype, seed, eps, z, weighted):
    rng = np.random.default_rng(seed)
    x = _logits(rng, n, c, dtype, scale=float(rng.uniform(0.1, 20)))
    labels = rng.integers(0, c, n)
    cw = rng.uniform(0.1, 2, c) if weighted else None
    sw = rng.uniform(0.1, 2, n) if weighted else None
    ref_l, ref_g, mag = ref_sparse_ce(x, labels, cw, sw, None, eps, z, magnitude=True)
    loss, g = K.sparse_softmax_ce(x, labels, cw, sw, None, eps, z, 1.0)
    assert_kernel_close(loss, ref_l, dtype, scale=np.abs(ref_l).max())
    assert_kernel_close(g, ref_g, dtype, scale=mag)
    y = rng.uniform(size=(n, c)).astype(dtype)
    ref_l, ref_g, mag = ref_sigmoid_ce(x, y, None, None, eps, magnitude=True)
    le, g = K.sigmoid_ce(x, y, None, None, eps, 1.0, True)
    assert_kernel_close(le, ref_l, dtype, scale=0.0)
    assert_kernel_close(g, ref_g, dtype, scale=mag)
    # lse = m + log S: its rounding is that of m and log S, so a result near 0 from their
    # cancellation has an absolute error of a few ulps of max |x| (relative error unbounded)
    assert_kernel_close(K.logsumexp_rows(x), _lse(x), dtype, scale=np.abs(x).max(axis=-1))
    h, g = K.softmax_entropy_rows(x, 1.0)
    rh, rg, mag = ref_entropy(x, magnitude=True)
    assert_kernel_close(h, rh, dtype, scale=np.log(c) + 1e-300)
    assert_kernel_close(g, rg, dtype, scale=mag)


def test_no_warnings_and_empty():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = np.full((2, 3), -np.inf, np.float32)
        K.sparse_softmax_ce(x, np.array([0, 1]), None, None, None, 0.1, 0.1, 1.0)
        K.softmax_entropy_rows(x, 1.0)
        K.softmax_kl_rows(x, x, 1.0)
        K.sigmoid_ce(x, np.zeros_like(x), None, None, 0.0, 1.0, True)
        loss, g = K.sparse_softmax_ce(
            np.zeros((0, 4)), np.zeros(0, np.int64), None, None, None, 0.0, 0.0, 1.0
        )
        assert loss.shape == (0,) and g.shape == (0, 4)
        assert K.logsumexp_rows(np.zeros((0, 3))).shape == (0,)


def test_sigmoid_kernel_concurrent_calls_from_python_threads():
    """Each call has its own per-thread scratch blocks: concurrent calls (one OpenMP team per
    calling thread, with overlapping thread ids) must not share them."""
    from _helpers import run_in_threads

    rng = np.random.default_rng(11)
    data = [
        (
            rng.standard_normal((300, 700)).astype(np.float32),
            (rng.random((300, 700)) < 0.3).astype(np.float32),
        )
        for _ in range(4)
    ]
    refs = [K.sigmoid_ce(x, y, None, None, 0.0, 1.0, False) for x, y in data]
    bad: list[int] = []

    def work(i: int) -> None:
        x, y = data[i]
        for _ in range(25):
            loss, g = K.sigmoid_ce(x, y, None, None, 0.0, 1.0, False)
            if not (np.array_equal(loss, refs[i][0]) and np.array_equal(g, refs[i][1])):
                bad.append(i)
                return

    run_in_threads(work, len(data))
    assert not bad


def test_streaming_sparse_kernel_concurrent_calls_from_python_threads(monkeypatch):
    """The streaming gradient kernel (forced on for small arrays) called from several Python
    threads at once: each call has its own scratch rows; results equal the sequential ones."""
    from _helpers import run_in_threads

    monkeypatch.setattr(K._tunables, "_STREAM_MIN_BYTES", 0)
    monkeypatch.setattr(K._tunables, "_PARALLEL_MIN_ELEMENTS", 0)
    rng = np.random.default_rng(12)
    data = [
        (rng.standard_normal((301, 517)).astype(np.float32), rng.integers(0, 517, 301))
        for _ in range(4)
    ]
    refs = [K.sparse_softmax_ce(x, y, None, None, None, 0.0, 0.0, 1.0) for x, y in data]
    refs = [(loss, g.copy()) for loss, g in refs]
    bad: list[int] = []

    def work(i: int) -> None:
        x, y = data[i]
        for _ in range(25):
            loss, g = K.sparse_softmax_ce(x, y, None, None, None, 0.0, 0.0, 1.0)
            if not (np.array_equal(loss, refs[i][0]) and np.array_equal(g, refs[i][1])):
                bad.append(i)
                return

    run_in_threads(work, len(data))
    assert not bad


def test_log1p_pos64_against_math_log1p():
    """The branch-free float64 log1p used by the short-row kernel, over [0, 1] (series) and
    (1, 1e6] (exponent bits + series), including tiny arguments (full relative accuracy)."""
    from numba import njit

    @njit
    def run(d, out):
        for i in range(d.shape[0]):
            out[i] = K._vecmath._log1p_pos64(d[i])

    d = np.concatenate(
        [
            [0.0, 5e-324, 1e-300, 1e-17, 1e-9, 0.5, 1.0, np.nextafter(1.0, 2.0), 2.0, 15.0],
            np.geomspace(1e-12, 1e6, 20001),
        ]
    )
    out = np.empty_like(d)
    run(d, out)
    ref = np.log1p(d)
    normal = ref >= np.finfo(np.float64).tiny  # subnormal d: s = d / (2 + d) underflows
    assert np.all(np.abs(out[~normal] - ref[~normal]) <= 1e-323)
    rel = np.abs(out[normal] - ref[normal]) / ref[normal]
    assert rel.max() < 4e-16, rel.max()


@pytest.mark.parametrize("dtype", DTYPES)
def test_streaming_copy_and_scale_every_offset_and_length(dtype):
    """The streaming-store intrinsics: plain stores before the first 32-byte boundary of the
    destination and after the last, vector stores in between; every value lands once."""
    from numba import njit

    @njit
    def run(src, dst, a, scaled):
        if scaled:
            K._vecmath._stream_scale(src, dst, a)
        else:
            K._vecmath._stream_copy(src, dst)
        K._vecmath._fence()

    rng = np.random.default_rng(0)
    base = rng.standard_normal(200).astype(dtype)
    a = dtype(0.75)
    for scaled in (False, True):
        for d0 in range(9):  # destination offsets: every alignment phase
            for s0 in (0, 3):
                for n in [*range(20), 31, 32, 33, 64, 100]:
                    dst = np.full(140, -7.0, dtype)
                    src = base[s0 : s0 + n]
                    run(src, dst[d0 : d0 + n], a, scaled)
                    expect = src * a if scaled else src
                    np.testing.assert_array_equal(dst[d0 : d0 + n], expect)
                    assert np.all(dst[:d0] == -7.0) and np.all(dst[d0 + n :] == -7.0)


def test_scratch_is_cache_line_aligned():
    for shape, dtype in [((3, 1001), np.float32), ((2, 5, 7), np.float64), ((0, 4), np.float32)]:
        a = K._launch._scratch(shape, dtype)
        assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
        assert a.ctypes.data % 64 == 0 or a.size == 0
        a[...] = 1  # writeable, and exactly the requested size
        assert a.nbytes == np.prod(shape) * np.dtype(dtype).itemsize


def test_vector_exp_accuracy_and_flush():
    """The documented accuracy of the polynomial exps (float32 ≤ 1.05 ulp, float64 ≤ 1 ulp,
    against an 80-bit reference), exact exp(0) = 1, and the flush to +0 of tiny results and of
    exp(−inf)."""
    from numba import njit

    @njit
    def run32(x, out):
        for i in range(x.shape[0]):
            out[i] = K._vecmath._exp32(x[i])

    @njit
    def run64(x, out):
        for i in range(x.shape[0]):
            out[i] = K._vecmath._exp64_neg(x[i])

    for run, dtype, lo, bound in (
        (run32, np.float32, -86.0, 1.05),
        (run64, np.float64, -700.0, 1.0),
    ):
        x = np.concatenate([np.linspace(lo, 0.0, 2_000_001), -np.geomspace(1e-30, 1.0, 10001)])
        x = x.astype(dtype)
        out = np.empty_like(x)
        run(x, out)
        ref = np.exp(x.astype(np.longdouble))
        ulp = np.spacing(ref.astype(dtype)).astype(np.longdouble)
        err = np.abs(out.astype(np.longdouble) - ref) / ulp
        assert float(err.max()) <= bound, (dtype, float(err.max()))
        special = np.array([0.0, -0.0, -np.inf, -200.0, -1e4], dtype)
        out = np.empty_like(special)
        run(special, out)
        np.testing.assert_array_equal(
            out, [1.0, 1.0, 0.0, 0.0 if dtype == np.float32 else np.exp(-200.0), 0.0]
        )
        assert not np.signbit(out).any()


def test_short_float64_exp_accuracy_and_flush():
    """The softmax KL kernel's exp for float32 rows (``_exp64_neg_short``): relative error
    ≤ 2e-14 against an 80-bit reference, float64's range (flush below 2^-1021.5 as the full
    polynomial), exact exp(0) = 1; on float32 logit differences its results round to the same
    float32 numbers as the full polynomial's but for rare ties."""
    from numba import njit

    @njit
    def run(x, out, short):
        for i in range(x.shape[0]):
            out[i] = K._vecmath._exp64_neg_short(x[i]) if short else K._vecmath._exp64_neg(x[i])

    x = np.concatenate([np.linspace(-700.0, 0.0, 2_000_001), -np.geomspace(1e-30, 1.0, 10001)])
    out = np.empty_like(x)
    run(x, out, True)
    ref = np.exp(x.astype(np.longdouble))
    rel = np.abs(out.astype(np.longdouble) - ref) / ref
    assert 1e-16 < float(rel.max()) <= 2e-14, float(rel.max())
    special = np.array([0.0, -0.0, -np.inf, -200.0, -1e4, -708.0, -709.0])
    got = np.empty_like(special)
    full = np.empty_like(special)
    run(special, got, True)
    run(special, full, False)
    assert got[0] == got[1] == 1.0 and got[2] == 0.0 and got[4] == 0.0
    np.testing.assert_array_equal(got == 0.0, full == 0.0)  # the same flush
    live = full > 0.0
    np.testing.assert_allclose(got[live], np.exp(special[live]), rtol=2e-14)
    assert not np.signbit(got).any()
    d = (np.random.default_rng(0).standard_normal(100_000) * 20).astype(np.float32)
    d = -np.abs(d).astype(np.float64)
    a, b = np.empty_like(d), np.empty_like(d)
    run(d, a, True)
    run(d, b, False)
    assert np.mean(a.astype(np.float32) != b.astype(np.float32)) < 1e-4


def test_float32_exp_of_a_difference_accuracy_and_flush():
    """The softmax KL kernel's float32 exp of x − m (``_exp32_diff``): the rounding of x − m is
    carried into the reduced argument, so exp(x − m) is within 1.1 float32 ulps of the 80-bit
    reference for every x <= m (exp(fl(x − m)) is off by up to |x − m| · 2^-24 relative: tens
    of ulps at x − m ≈ −80), exp(0) = 1 exactly, −inf and far-below arguments give +0 as the
    float32 exp's flush."""
    from numba import njit

    @njit
    def run(x, m, out, plain):
        for i in range(x.shape[0]):
            out[i] = K._vecmath._exp32_diff(x[i], m[i])
            plain[i] = K._vecmath._exp32(x[i] - m[i])

    rng = np.random.default_rng(0)
    n = 1_000_000
    m = (rng.standard_normal(n) * 30).astype(np.float32)
    x = np.minimum(m - np.abs(rng.standard_normal(n) * rng.choice([1.0, 10.0, 40.0], n)), m)
    x = x.astype(np.float32)
    out, plain = np.empty(n, np.float32), np.empty(n, np.float32)
    run(x, m, out, plain)
    ref = np.exp(x.astype(np.longdouble) - m.astype(np.longdouble))
    live = ref > 2.0**-125
    ulp = np.spacing(ref[live].astype(np.float32)).astype(np.longdouble)
    ulps = np.abs(out[live].astype(np.longdouble) - ref[live]) / ulp
    plain_ulps = np.abs(plain[live].astype(np.longdouble) - ref[live]) / ulp
    assert float(ulps.max()) <= 1.1, float(ulps.max())
    assert float(plain_ulps.max()) > 10.0  # what the two-sum is for
    special_x = np.array([3.0, -np.inf, -1e30, -100.0, 1.5], np.float32)
    special_m = np.array([3.0, 1.0, 2.0, 0.0, 1.5], np.float32)
    got = np.empty(5, np.float32)
    run(special_x, special_m, got, np.empty(5, np.float32))
    np.testing.assert_array_equal(got, [1.0, 0.0, 0.0, 0.0, 1.0])
    assert not np.signbit(got).any()
