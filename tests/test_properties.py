"""Property tests (hypothesis) over shapes, axes, dtypes and execution variants (issue 2)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from _helpers import Backend, as_float64, available_backends, available_variants, one_hot
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import infoloss

# no shrinking phase: a failure reports the first falsifying example, which keeps the runtime
# bounded when the implementation is broken
SETTINGS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
# Each example draws one execution variant (numpy/torch with the fused kernels and with the
# generic code, array-api-strict), so the 30 examples of a test cover the variants without
# multiplying the run time. JAX compiles every new shape eagerly (~0.1 s each), so the hypothesis
# runs leave it out; JAX is covered by the parametrised tests of the other files.
VARIANTS = st.sampled_from([v for v in available_variants() if v != "jax"])
TORCH_VARIANTS = ["torch-fast", "torch-generic"]
DTYPES = st.sampled_from(["float32", "float64"])
TOL = {"float32": (2e-4, 1e-5), "float64": (1e-9, 1e-12)}


@st.composite
def shape_and_axis(draw, max_dims=3):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=max_dims, min_side=1, max_side=5))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    return shape, axis


@st.composite
def distributions(draw, shape, axis, zeros=True):
    """Probabilities normalised along ``axis`` (float64), possibly with zero entries."""
    raw = draw(hnp.arrays(np.float64, shape, elements=st.floats(0.0, 1.0, width=32)))
    if not zeros:
        raw = raw + 1e-3
    # keep at least one positive entry per distribution
    first = np.zeros(shape, bool)
    np.moveaxis(first, axis, 0)[0] = True
    raw = np.where(first & (raw.sum(axis=axis, keepdims=True) == 0), 1.0, raw)
    return raw / raw.sum(axis=axis, keepdims=True)


def logits_of(shape, wide=False):
    bound = 1e4 if wide else 30.0
    return hnp.arrays(np.float64, shape, elements=st.floats(-bound, bound, width=32))


def _cast(b: Backend, a, dtype):
    return b.asarray(a, dtype)


@contextlib.contextmanager
def _on(variant):
    """The ``Backend`` of ``variant``, its switch on (generic variants: ``generic_only()``)."""
    b = Backend.of(variant)
    with b.context():
        yield b


@SETTINGS
@given(data=st.data(), sa=shape_and_axis(), variant=VARIANTS, dtype=DTYPES)
def test_entropy_nonnegative(data, sa, variant, dtype):
    shape, axis = sa
    with _on(variant) as b:
        p = data.draw(distributions(shape, axis))
        h = as_float64(infoloss.entropy(_cast(b, p, dtype), axis=axis))
        assert h.shape == tuple(int(n) for n in np.delete(shape, axis % len(shape)))
        assert np.all(h >= 0)
        assert np.all(h <= np.log(shape[axis]) * (1 + 1e-5) + 1e-6)
        x = data.draw(logits_of(shape, wide=True))
        hs = as_float64(infoloss.softmax_entropy(_cast(b, x, dtype), axis=axis))
        assert np.all(hs >= 0) and np.all(np.isfinite(hs))
        assert np.all(hs <= np.log(shape[axis]) * (1 + 1e-5) + 1e-5)


@SETTINGS
@given(data=st.data(), sa=shape_and_axis(), variant=VARIANTS, dtype=DTYPES)
def test_kl_nonnegative_and_zero_on_diagonal(data, sa, variant, dtype):
    shape, axis = sa
    with _on(variant) as b:
        p = data.draw(distributions(shape, axis))
        q = data.draw(distributions(shape, axis))
        pb, qb = _cast(b, p, dtype), _cast(b, q, dtype)
        kl = as_float64(infoloss.kl_divergence(pb, qb, axis=axis))
        assert np.all(kl >= 0)  # +inf allowed where q has zeros under p's support
        assert np.all(as_float64(infoloss.kl_divergence(pb, pb, axis=axis)) == 0)
        js = as_float64(infoloss.js_divergence(pb, qb, axis=axis))
        assert np.all(js >= 0) and np.all(js <= np.log(2) * (1 + 1e-6))
        x = data.draw(logits_of(shape))
        y = data.draw(logits_of(shape))
        xb, yb = _cast(b, x, dtype), _cast(b, y, dtype)
        assert np.all(as_float64(infoloss.softmax_kl_divergence(xb, yb, axis=axis)) >= 0)
        self_kl = as_float64(infoloss.softmax_kl_divergence(xb, xb, axis=axis))
        assert np.all(self_kl >= 0) and np.all(self_kl <= TOL[dtype][1])


@SETTINGS
@given(data=st.data(), sa=shape_and_axis(), variant=VARIANTS, dtype=DTYPES)
def test_cross_entropy_is_entropy_plus_kl(data, sa, variant, dtype):
    shape, axis = sa
    with _on(variant) as b:
        p = data.draw(distributions(shape, axis))
        q = data.draw(distributions(shape, axis, zeros=False))
        pb, qb = _cast(b, p, dtype), _cast(b, q, dtype)
        ce = as_float64(infoloss.cross_entropy(pb, qb, axis=axis))
        h = as_float64(infoloss.entropy(pb, axis=axis))
        kl = as_float64(infoloss.kl_divergence(pb, qb, axis=axis))
        rtol, atol = TOL[dtype]
        np.testing.assert_allclose(ce, h + kl, rtol=rtol, atol=atol * 10)


@SETTINGS
@given(data=st.data(), sa=shape_and_axis(), variant=VARIANTS, dtype=DTYPES)
def test_softmax_sums_to_one(data, sa, variant, dtype):
    shape, axis = sa
    with _on(variant) as b:
        x = data.draw(logits_of(shape, wide=True))
        s = as_float64(infoloss.softmax(_cast(b, x, dtype), axis=axis))
        assert np.all(s >= 0) and np.all(s <= 1)
        rtol, _ = TOL[dtype]
        np.testing.assert_allclose(s.sum(axis=axis), 1.0, rtol=10 * rtol)
        ls = as_float64(infoloss.log_softmax(_cast(b, x, dtype), axis=axis))
        assert np.all(ls <= 0)
        np.testing.assert_allclose(np.exp(ls).sum(axis=axis), 1.0, rtol=10 * rtol)


@SETTINGS
@given(
    data=st.data(),
    sa=shape_and_axis(),
    variant=VARIANTS,
    dtype=DTYPES,
    eps=st.sampled_from([0.0, 0.1, 1.0]),
    z=st.sampled_from([0.0, 1e-3]),
    reduction=st.sampled_from(["none", "sum", "mean"]),
    cw=st.booleans(),
    sw=st.booleans(),
    ignore=st.booleans(),
)
def test_dense_one_hot_equals_sparse(data, sa, variant, dtype, eps, z, reduction, cw, sw, ignore):
    shape, axis = sa
    with _on(variant) as b:
        C = shape[axis]
        batch = tuple(int(n) for n in np.delete(shape, axis % len(shape)))
        x = data.draw(logits_of(shape))
        labels = data.draw(hnp.arrays(np.int64, batch, elements=st.integers(0, C - 1)))
        keep = np.ones(batch, bool)
        kw, dense_kw = {}, {}
        if ignore:
            keep = data.draw(hnp.arrays(np.bool_, batch))
            kw["ignore_index"] = -1
        sparse_labels = np.where(keep, labels, -1)
        if cw:
            w = data.draw(hnp.arrays(np.float64, (C,), elements=st.floats(0.0, 3.0, width=32)))
            kw["class_weights"] = dense_kw["class_weights"] = b.asarray(w, dtype)
        s = np.ones(batch)
        if sw:
            s = data.draw(hnp.arrays(np.float64, batch, elements=st.floats(0.0, 3.0, width=32)))
            kw["sample_weights"] = b.asarray(s, dtype)
        if sw or ignore:
            dense_kw["sample_weights"] = b.asarray(s * keep, dtype)
        xb = b.asarray(x, dtype)
        common = dict(axis=axis, label_smoothing=eps, z_loss=z, reduction=reduction)
        sparse = infoloss.sparse_softmax_cross_entropy(
            xb, b.asarray(sparse_labels, "int64"), **common, **kw
        )
        dense = infoloss.softmax_cross_entropy(
            xb, b.asarray(one_hot(labels, C, axis=axis), dtype), **common, **dense_kw
        )
        rtol, atol = TOL[dtype]
        a, d = as_float64(sparse), as_float64(dense)
        assert a.shape == d.shape
        np.testing.assert_allclose(
            a, d, rtol=rtol, atol=atol * max(1.0, float(np.max(np.abs(d), initial=0)))
        )
        assert np.all(np.isfinite(a))
        if reduction == "mean":
            assert np.all(a >= 0)


@SETTINGS
@given(data=st.data(), sa=shape_and_axis(), variant=VARIANTS)
def test_sigmoid_log_sigmoid_consistent(data, sa, variant):
    shape, _ = sa
    with _on(variant) as b:
        x = data.draw(logits_of(shape, wide=True))
        s = as_float64(infoloss.sigmoid(b.asarray(x)))
        ls = as_float64(infoloss.log_sigmoid(b.asarray(x)))
        assert np.all((s >= 0) & (s <= 1)) and np.all(ls <= 0) and np.all(np.isfinite(ls))
        np.testing.assert_allclose(np.exp(ls), s, rtol=1e-12, atol=1e-300)
        y = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(0, 1)))
        loss = as_float64(infoloss.sigmoid_cross_entropy(b.asarray(x), b.asarray(y)))
        assert np.all(loss >= 0) and np.all(np.isfinite(loss))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@SETTINGS
@given(data=st.data(), sa=shape_and_axis(max_dims=2), variant=st.sampled_from(TORCH_VARIANTS))
def test_low_precision_softmax_entropy_bounds(dtype, data, sa, variant):
    shape, axis = sa
    if "torch" not in available_backends():
        return
    with _on(variant) as b:
        x = data.draw(logits_of(shape, wide=True))
        out = infoloss.softmax_entropy(b.asarray(x, dtype), axis=axis)
        assert str(out.dtype).endswith(dtype)
        h = as_float64(out)
        assert np.all(np.isfinite(h)) and np.all(h >= 0)
        assert np.all(h <= np.log(shape[axis]) * 1.02 + 1e-2)
