"""Correct at the edges (issue 11): label gradients at exact zeros, non-finite logits, small terms,
scale-free weighted means, validated inputs and options, traced calls.

Every test runs on every execution path it concerns (the ``backend`` fixture of conftest.py: NumPy
and torch with the fused kernels and with the generic code, array-api-strict, JAX); references are
float64 textbook formulas, SciPy, or a framework's own autodiff of the textbook formula.
"""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
import scipy.special as sp
from _helpers import (
    ON_NUMPY,
    ON_TORCH,
    as_float64,
    ref_sigmoid_ce,
    ref_softmax_ce,
    ref_sparse_ce,
    to_numpy,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import infoloss as il
from infoloss import InfolossError, InfolossTypeError

NAN, INF = float("nan"), float("inf")


def f64(backend, data):
    return backend.asarray(np.asarray(data, dtype=np.float64), "float64")


def ints(backend, data):
    return backend.asarray(np.asarray(data, dtype=np.int64), "int64")


# --------------------------------------------------------------------------- 1. label gradients


def test_soft_label_gradient_at_zero_torch(torch):
    """dL/dt = -log_softmax(x) also where t is exactly 0 (the issue's example)."""
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    t = torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64, requires_grad=True)
    il.softmax_cross_entropy(x, t).backward()
    np.testing.assert_allclose(t.grad.numpy(), -torch.log_softmax(x, -1).numpy(), rtol=1e-14)
    np.testing.assert_allclose(t.grad.numpy(), [3.4401897, 2.4401897, 1.4401897, 0.4401897], 1e-7)


@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
def test_soft_label_and_class_weight_gradients_torch(torch, eps, weighted):
    """Gradients w.r.t. labels and class weights (both with exact zeros) equal torch autograd of
    the textbook formula -Σ w t log_softmax(x)."""
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(3, 4)) * 3)
    y0 = np.array([[0, 0, 1, 0], [0.5, 0, 0.5, 0], [0, 0, 0, 1.0]])
    w0 = np.array([1.0, 0.0, 2.0, 0.5]) if weighted else np.ones(4)

    def grads(fn):
        y = torch.tensor(y0, requires_grad=True)
        w = torch.tensor(w0, requires_grad=True)
        fn(y, w).sum().backward()
        return y.grad.numpy(), w.grad.numpy()

    def textbook(y, w):
        t = (1 - eps) * y + eps / 4
        return -(w * t * torch.log_softmax(x, -1)).sum(-1)

    got = grads(lambda y, w: il.softmax_cross_entropy(x, y, class_weights=w, label_smoothing=eps))
    want = grads(textbook)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-13, atol=1e-14)


def test_sigmoid_label_gradient_at_hard_labels_torch(torch):
    """d/dy of y·softplus(-x) + (1-y)·softplus(x) is -x, also at y = 0 and y = 1."""
    x = torch.tensor([[1.5, -2.0, 3.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=torch.float64, requires_grad=True)
    il.sigmoid_cross_entropy(x, y).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), -x.numpy(), rtol=1e-15, atol=1e-15)


def test_label_gradients_jax(jax_mod):
    jnp = jax_mod.numpy
    x = jnp.array([1.0, 2.0, 3.0, 4.0])
    g = jax_mod.grad(lambda t: il.softmax_cross_entropy(x, t))(jnp.array([0.0, 0.0, 1.0, 0.0]))
    np.testing.assert_allclose(np.asarray(g), -np.asarray(jax_mod.nn.log_softmax(x)), rtol=1e-14)
    xs = jnp.array([1.5, -2.0, 3.0])
    gs = jax_mod.grad(lambda y: il.sigmoid_cross_entropy(xs, y).sum())(jnp.array([0.0, 1.0, 1.0]))
    np.testing.assert_allclose(np.asarray(gs), -np.asarray(xs), rtol=1e-15)


@ON_TORCH
def test_masked_class_with_zero_label_stays_finite(torch, backend):
    """A -inf logit with no target mass: value finite, logits gradient 0 there, no nan."""
    x = torch.tensor([[0.0, -INF, 1.0]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    loss = il.softmax_cross_entropy(x, y)
    loss.sum().backward()
    assert math.isclose(float(loss.detach()), math.log1p(math.e), rel_tol=1e-15)
    assert x.grad[0, 1] == 0 and torch.isfinite(x.grad).all()


# --------------------------------------------------------------------------- 2. non-finite logits


def _value_and_grad(fn, *args, **kw):
    v, g = il.value_and_grad(fn)(*args, **kw)
    return as_float64(v), as_float64(g)


def test_nan_logit_gives_nan(backend):
    x = f64(backend, [[NAN, 1.0], [0.5, 1.0]])
    v, g = _value_and_grad(il.sparse_softmax_cross_entropy, x, ints(backend, [1, 1]))
    assert np.isnan(v[0]) and np.isnan(g[0]).all()
    np.testing.assert_allclose(v[1], ref_sparse_ce([[0.5, 1.0]], [1])[0], rtol=1e-14)
    assert np.isfinite(g[1]).all()


def test_inf_logit_gives_nan(backend):
    x = f64(backend, [[INF, 0.0], [1.0, INF], [0.0, 1.0]])
    y = f64(backend, [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    v, g = _value_and_grad(il.softmax_cross_entropy, x, y)
    assert np.isnan(v[:2]).all() and np.isnan(g[:2]).all()
    np.testing.assert_allclose(v[2], ref_softmax_ce([[0.0, 1.0]], [[1.0, 0.0]])[0], rtol=1e-14)


@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"label_smoothing": 0.1},
        {"z_loss": 1e-3},
        {"class_weights": [0.0, 1.0, 2.0]},
        {"sample_weights": [1.0, 0.0]},
        {"reduction": "mean"},
    ],
    ids=lambda o: ",".join(o) or "plain",
)
def test_non_finite_rows_every_option(backend, opts):
    """nan or +inf anywhere in a row (target or not, weight 0 or not) makes that row nan."""
    opts = {k: (f64(backend, v) if isinstance(v, list) else v) for k, v in opts.items()}
    for bad in (NAN, INF):
        for col in range(3):
            row = [0.5, -1.0, 2.0]
            row[col] = bad
            x = f64(backend, [row, [0.1, 0.2, 0.3]])
            v, g = _value_and_grad(
                il.sparse_softmax_cross_entropy, x, ints(backend, [1, 0]), **opts
            )
            assert np.isnan(v).any() and np.isnan(g[0]).all(), (bad, col)
            if opts.get("reduction") is None:
                assert np.isnan(v[0])
                assert np.isfinite(v[1])


def test_ignored_row_is_zero_whatever_its_logits(backend):
    x = f64(backend, [[NAN, INF], [0.0, 1.0]])
    v, g = _value_and_grad(
        il.sparse_softmax_cross_entropy, x, ints(backend, [-100, 1]), ignore_index=-100
    )
    assert v[0] == 0 and (g[0] == 0).all()
    assert np.isfinite(v[1])


def test_activations_non_finite(backend):
    assert np.isnan(as_float64(il.softmax(f64(backend, [NAN, 1.0])))).all()
    assert np.isnan(as_float64(il.softmax(f64(backend, [INF, 1.0])))).all()
    assert np.isnan(as_float64(il.log_softmax(f64(backend, [1.0, INF])))).all()
    assert np.isnan(as_float64(il.logsumexp(f64(backend, [NAN]))))
    assert np.isnan(as_float64(il.logsumexp(f64(backend, [NAN, INF]))))
    assert as_float64(il.logsumexp(f64(backend, [INF, 0.0]))) == INF
    assert as_float64(il.logsumexp(f64(backend, [-INF, -INF]))) == -INF
    np.testing.assert_array_equal(as_float64(il.softmax(f64(backend, [-INF, -INF]))), [0.0, 0.0])
    np.testing.assert_array_equal(
        as_float64(il.log_softmax(f64(backend, [0.0, -INF]))), [0.0, -INF]
    )


def test_sigmoid_non_finite(backend):
    x = f64(backend, [[NAN, INF, INF, -INF, -INF]])
    y = f64(backend, [[1.0, 1.0, 0.0, 0.0, 1.0]])
    v, g = _value_and_grad(il.sigmoid_cross_entropy, x, y)
    assert np.isnan(v[0, 0]) and np.isnan(g[0, 0])
    np.testing.assert_array_equal(v[0, 1:], [0.0, INF, 0.0, INF])
    np.testing.assert_array_equal(g[0, 1:], [0.0, 1.0, 0.0, -1.0])


_finite = st.one_of(
    st.floats(-50, 50, allow_nan=False),
    st.sampled_from([1e300, -1e300, 1e30, -1e30, 5e-324, -5e-324, 2.2e-308]),  # huge, subnormal
)
_special = st.sampled_from([NAN, INF, -INF])


@st.composite
def _rows(draw):
    n, c = draw(st.integers(1, 5)), draw(st.integers(1, 7))
    x = np.array(draw(st.lists(_finite, min_size=n * c, max_size=n * c))).reshape(n, c)
    for _ in range(draw(st.integers(0, 4))):
        x[draw(st.integers(0, n - 1)), draw(st.integers(0, c - 1))] = draw(_special)
    y = np.array(draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    return x, y


@settings(max_examples=60, deadline=None)
@given(_rows())
def test_property_nan_in_nan_out_numpy(data):
    """nan in → nan out; finite rows → finite loss and gradient; fast == generic."""
    from infoloss import _config

    x, y = data
    for disabled in (False, True):
        if disabled:
            with _config.generic_only():
                v, g = il.value_and_grad(il.sparse_softmax_cross_entropy)(x, y)
        else:
            v, g = il.value_and_grad(il.sparse_softmax_cross_entropy)(x, y)
        bad = np.isnan(x).any(1) | (x == INF).any(1)
        assert np.isnan(v[bad]).all() and np.isnan(g[bad]).all()
        masked_target = x[np.arange(len(y)), y] == -INF
        ok = ~bad & ~masked_target
        assert np.isfinite(v[ok]).all() and np.isfinite(g[ok]).all()
        assert (v[~bad & masked_target] == INF).all()
        xs = np.where(bad[:, None], 0.0, x)
        m = np.max(xs, axis=-1, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        # float64, max taken out: (m - x_y) + log Σ e^(x-m); an all -inf row (a masked target,
        # not compared) gives inf - inf there
        with np.errstate(divide="ignore", invalid="ignore"):
            ref = (m[:, 0] - xs[np.arange(len(y)), y]) + np.log(np.sum(np.exp(xs - m), axis=-1))
        np.testing.assert_allclose(v[ok], ref[ok], rtol=1e-12, atol=1e-13)


# --------------------------------------------------------------------------- 3. small terms


def test_small_terms_kept(backend):
    np.testing.assert_allclose(
        as_float64(il.logsumexp(f64(backend, [0.0, -40.0]))), 4.248354255291589e-18, rtol=1e-14
    )
    x = f64(backend, [[40.0, 0.0]])
    tiny = math.log1p(math.exp(-40.0))
    for fn, y in (
        (il.sparse_softmax_cross_entropy, ints(backend, [0])),
        (il.softmax_cross_entropy, f64(backend, [[1.0, 0.0]])),
    ):
        v, g = _value_and_grad(fn, x, y)
        np.testing.assert_allclose(v, [tiny], rtol=1e-14)
        np.testing.assert_allclose(g, [[-tiny, tiny]], rtol=1e-13)


# --------------------------------------------------------------------------- 4. weighted means


@pytest.mark.parametrize("scale", [1e308, 5e-324, 1e-300])
def test_weighted_means_are_scale_free(backend, scale):
    if backend.name == "jax" and scale < 1e-307:
        pytest.skip("XLA on the CPU flushes subnormal numbers to zero: the weights are 0 there")
    rng = np.random.default_rng(1)
    xn, yn = rng.normal(size=(4, 3)), np.array([0, 1, 2, 0])
    x, y = f64(backend, xn), ints(backend, yn)
    plain = float(ref_sparse_ce(xn, yn, reduction="mean"))
    w4, w3 = f64(backend, np.full(4, scale)), f64(backend, np.full(3, scale))
    for kw in (
        {"sample_weights": w4},
        {"class_weights": w3},
        {"class_weights": w3, "sample_weights": w4},
    ):
        v, g = _value_and_grad(il.sparse_softmax_cross_entropy, x, y, reduction="mean", **kw)
        np.testing.assert_allclose(v, plain, rtol=1e-14)
        _, g0 = _value_and_grad(il.sparse_softmax_cross_entropy, x, y, reduction="mean")
        np.testing.assert_allclose(g, g0, rtol=1e-13, atol=1e-16)
        vd = as_float64(
            il.softmax_cross_entropy(x, f64(backend, np.eye(3)[yn]), reduction="mean", **kw)
        )
        np.testing.assert_allclose(vd, plain, rtol=1e-14)
    # the z-loss keeps its weight relative to the class-weighted terms: mean(k·w, z) = mean(w, z/k)
    w = np.array([0.25, 1.0, 0.5])
    vz = as_float64(
        il.sparse_softmax_cross_entropy(
            x, y, class_weights=f64(backend, w * scale), z_loss=0.01, reduction="mean"
        )
    )
    ref = ref_sparse_ce(xn, yn, class_weights=w, z_loss=0.01 / scale, reduction="mean")
    np.testing.assert_allclose(vz, float(ref), rtol=1e-13)
    sig = as_float64(
        il.sigmoid_cross_entropy(
            x,
            f64(backend, xn > 0),
            sample_weights=f64(backend, np.full((4, 1), scale)),
            reduction="mean",
        )
    )
    np.testing.assert_allclose(sig, float(ref_sigmoid_ce(xn, xn > 0, reduction="mean")), rtol=1e-14)


def test_class_weight_scale_with_z_loss(backend):
    """mean(k·w, z) with z-loss: the class-weighted mean, computed without overflow, equals the
    float64 textbook value computed at a scale where nothing overflows."""
    rng = np.random.default_rng(2)
    xn, yn = rng.normal(size=(5, 3)), np.array([0, 1, 2, 0, 1])
    w = np.array([1.0, 2.0, 0.5])
    ref = float(ref_sparse_ce(xn, yn, class_weights=w, z_loss=0.05, reduction="mean"))
    got = as_float64(
        il.sparse_softmax_cross_entropy(
            f64(backend, xn),
            ints(backend, yn),
            class_weights=f64(backend, w),
            z_loss=0.05,
            reduction="mean",
        )
    )
    np.testing.assert_allclose(got, ref, rtol=1e-13)


# --------------------------------------------------------------------------- 6. validation


def _raises(match, fn, *a, **kw):
    with pytest.raises(InfolossError, match=match):
        fn(*a, **kw)


def test_bad_labels_and_weights(backend):
    x = f64(backend, [[0.0, 1.0], [1.0, 0.0]])
    _raises(
        r"`labels` must hold finite non-negative target masses; found -0.5 at position \(0, 1\)",
        il.softmax_cross_entropy,
        x,
        f64(backend, [[1.5, -0.5], [0.0, 1.0]]),
    )
    _raises(
        r"`labels` must hold targets in \[0, 1\]; found 1.5 at position \(0, 0\)",
        il.sigmoid_cross_entropy,
        x,
        f64(backend, [[1.5, 0.0], [0.0, 1.0]]),
    )
    _raises(
        r"`class_weights` must hold non-negative weights; found -1.0 at position \(1,\)",
        il.sparse_softmax_cross_entropy,
        x,
        ints(backend, [0, 1]),
        class_weights=f64(backend, [1.0, -1.0]),
    )
    _raises(
        r"`sample_weights` must hold non-negative weights; found -2.0",
        il.sparse_softmax_cross_entropy,
        x,
        ints(backend, [0, 1]),
        sample_weights=f64(backend, [1.0, -2.0]),
    )
    _raises(
        r"`pos_weight` must hold non-negative weights; found -3.0",
        il.sigmoid_cross_entropy,
        x,
        x,
        pos_weight=f64(backend, [1.0, -3.0]),
    )


@pytest.mark.parametrize("shape", [(3, 5), (160, 1000)], ids=["serial", "threaded"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    ("fn", "bad", "what"),
    [
        ("softmax_cross_entropy", INF, "finite non-negative target masses"),
        ("softmax_cross_entropy", -1e-30, "finite non-negative target masses"),
        ("sigmoid_cross_entropy", 1.0 + 1e-6, r"targets in \[0, 1\]"),
        ("sigmoid_cross_entropy", -INF, r"targets in \[0, 1\]"),
    ],
)
def test_label_range_found_anywhere(backend, shape, dtype, fn, bad, what):
    """The range check sees one bad label at the last position of any row (the fused kernels
    count bad labels in their sweep, also on a nan-logit row and with the gradient), names it
    and its position; -0.0, nan, 0 and 1 (and +inf-free masses above 1) pass."""
    rng = np.random.default_rng(3)
    n, c = shape
    x = rng.standard_normal(shape)
    y = rng.random(shape)
    y[0, 0], y[0, 1], y[1, 0] = -0.0, NAN, 1.0
    if fn == "softmax_cross_entropy":
        y[1, 1] = 7.0
    x[n - 1, 0] = NAN  # the kernels' nan-row branch counts its labels too
    f = getattr(il, fn)
    xs = backend.asarray(x.astype(dtype))
    f(xs, backend.asarray(y.astype(dtype)))  # valid: no error
    for r in (0, n // 2, n - 1):
        yb = y.copy()
        yb[r, c - 1] = bad
        ya = backend.asarray(yb.astype(dtype))
        shown = float(np.asarray(bad, dtype=dtype))
        found = re.escape(repr(shown))
        msg = rf"`labels` must hold {what}; found {found} at position \({r}, {c - 1}\)"
        _raises(msg, f, xs, ya)
        _raises(msg, il.value_and_grad(f), xs, ya, reduction="mean")


def test_nan_labels_and_weights_give_nan(backend):
    x = f64(backend, [[0.0, 1.0], [1.0, 0.0]])
    v = as_float64(il.softmax_cross_entropy(x, f64(backend, [[NAN, 1.0], [0.0, 1.0]])))
    assert np.isnan(v[0]) and np.isfinite(v[1])
    v = as_float64(
        il.sparse_softmax_cross_entropy(
            x, ints(backend, [0, 1]), sample_weights=f64(backend, [NAN, 1.0])
        )
    )
    assert np.isnan(v[0]) and np.isfinite(v[1])


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"label_smoothing": True}, "`label_smoothing` must be a number in \\[0, 1\\]; got True"),
        ({"label_smoothing": "0.1"}, "`label_smoothing` must be a number in \\[0, 1\\]; got '0.1'"),
        ({"z_loss": "1e-4"}, "`z_loss` must be a non-negative number; got '1e-4'"),
        ({"z_loss": np.array([0.1])}, "`z_loss` must be a non-negative number"),
        ({"ignore_index": 2**70}, "`ignore_index` must fit in 64 bits"),
        ({"ignore_index": 1.0}, "`ignore_index` must be an integer or None; got 1.0"),
        ({"ignore_index": True}, "`ignore_index` must be an integer or None; got True"),
    ],
)
def test_option_types(kw, match):
    x, y = np.zeros((2, 3)), np.array([0, 1])
    _raises(match, il.sparse_softmax_cross_entropy, x, y, **kw)


def test_numpy_scalar_options_accepted():
    x, y = np.zeros((2, 3)), np.array([0, 2])
    a = il.sparse_softmax_cross_entropy(
        x, y, ignore_index=np.int32(2), label_smoothing=np.float32(0.5)
    )
    b = il.sparse_softmax_cross_entropy(x, y, ignore_index=2, label_smoothing=0.5)
    np.testing.assert_array_equal(a, b)
    h, w = np.ones((4, 2)), np.ones((3, 2))
    lc = il.linear_cross_entropy(
        h, w, np.array([0, 1, 2, 0]), chunk_size=np.int64(3), ignore_index=np.int64(0)
    )
    np.testing.assert_allclose(lc, math.log(3.0), rtol=1e-14)


@ON_NUMPY
def test_ignore_index_outside_label_dtype(backend):
    """An ignore_index no int32 label can equal means: nothing is ignored."""
    x, y = np.zeros((2, 3)), np.array([0, 1], dtype=np.int32)
    np.testing.assert_array_equal(
        il.sparse_softmax_cross_entropy(x, y, ignore_index=2**40),
        il.sparse_softmax_cross_entropy(x, y),
    )


def test_keepdims_must_be_bool():
    with pytest.raises(InfolossError, match="`keepdims` must be True or False; got 2"):
        il.logsumexp(np.zeros(3), keepdims=2)
    assert il.logsumexp(np.zeros((2, 3)), keepdims=np.bool_(True)).shape == (2, 1)


# --------------------------------------------------------------------------- 9. errors


def test_none_arrays():
    with pytest.raises(InfolossTypeError, match="`x` must be an array; got None"):
        il.softmax(None)
    with pytest.raises(InfolossTypeError, match="`labels` must be an array; got None"):
        il.sparse_softmax_cross_entropy(np.zeros((2, 3)), None)
    with pytest.raises(InfolossTypeError, match="`logits` must be an array; got None"):
        il.sigmoid_cross_entropy(None, np.zeros(3))


def test_axis_none_refused(backend):
    for fn in (il.logsumexp, il.softmax, il.log_softmax):
        with pytest.raises(InfolossError, match="`axis` must be an integer; got None"):
            fn(f64(backend, [1.0, 2.0]), axis=None)
        with pytest.raises(InfolossError, match=r"`axis` must be an integer; got \(0, 1\)"):
            fn(f64(backend, [[1.0, 2.0]]), axis=(0, 1))


def test_logsumexp_empty_axis(backend):
    out = il.logsumexp(backend.asarray(np.zeros((2, 0)), "float64"), axis=1)
    np.testing.assert_array_equal(as_float64(out), [-INF, -INF])
    np.testing.assert_array_equal(as_float64(sp.logsumexp(np.zeros((2, 0)), axis=1)), [-INF, -INF])


def test_torch_devices_mismatch(torch):
    x = torch.zeros(2, 3)
    y = torch.zeros(2, dtype=torch.int64, device="meta")
    with pytest.raises(
        InfolossError,
        match="all tensors must be on one device; `logits` is on cpu and `labels` on meta",
    ):
        il.sparse_softmax_cross_entropy(x, y)


@ON_NUMPY
def test_numpy_bfloat16_input(backend):
    ml = pytest.importorskip("ml_dtypes")
    x = np.array([[1.0, 2.0, 3.0]], dtype=ml.bfloat16)
    out = il.softmax(x)
    assert out.dtype == x.dtype
    np.testing.assert_allclose(
        out.astype(np.float64), sp.softmax([[1.0, 2.0, 3.0]], axis=-1), rtol=1e-2
    )
    v = il.sparse_softmax_cross_entropy(x, np.array([2]))
    np.testing.assert_allclose(
        v.astype(np.float64), ref_sparse_ce([[1.0, 2.0, 3.0]], [2]), rtol=1e-2
    )


# --------------------------------------------------------------------------- 12. traced calls


def test_jit_with_labels_captured_by_closure(jax_mod):
    jnp = jax_mod.numpy
    y = jnp.array([0, 2])
    x = jnp.array([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]])
    f = jax_mod.jit(lambda x: il.sparse_softmax_cross_entropy(x, y, reduction="mean"))
    np.testing.assert_allclose(
        float(f(x)), float(ref_sparse_ce(np.asarray(x), [0, 2], reduction="mean")), rtol=1e-14
    )
    w = jnp.array([1.0, 2.0])
    g = jax_mod.jit(
        lambda x: il.sigmoid_cross_entropy(x, jnp.ones((2, 3)), sample_weights=w[:, None]).sum()
    )
    assert np.isfinite(float(g(x)))
    d = jax_mod.jit(lambda x: il.softmax_cross_entropy(x, jnp.eye(3)[y]))
    np.testing.assert_allclose(np.asarray(d(x)), ref_sparse_ce(np.asarray(x), [0, 2]), rtol=1e-14)


# --------------------------------------------------------------------------- small


def test_zero_d_results_are_arrays_on_both_numpy_paths():
    from infoloss import _config

    x, y = np.array([[0.0, 1.0]]), np.array([1])
    for ctx in (False, True):
        with _config.generic_only() if ctx else warnings.catch_warnings():
            for out in (
                il.logsumexp(np.array([0.0, 1.0])),
                il.sparse_softmax_cross_entropy(x, y, reduction="mean"),
                il.softmax_cross_entropy(x, np.array([[0.0, 1.0]]), reduction="sum"),
                il.sigmoid_cross_entropy(x, x, reduction="mean"),
            ):
                assert type(out) is np.ndarray and out.shape == (), (ctx, type(out))


def test_no_warnings_on_infinite_logits(backend):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_numpy(il.softmax_cross_entropy(f64(backend, [[INF, 0.0]]), f64(backend, [[1.0, 0.0]])))
        to_numpy(il.sigmoid_cross_entropy(f64(backend, [[INF, -INF]]), f64(backend, [[1.0, 0.0]])))
        to_numpy(il.softmax(f64(backend, [[INF, -INF]])))
