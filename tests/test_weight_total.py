"""``weight_total`` (issue 15): the denominator of every loss's ``"mean"``.

For each loss family (sparse, dense-probability and sigmoid labels; cross-entropy, focal, poly,
linear) ``loss(reduction="sum") / weight_total(...) == loss(reduction="mean")`` on every execution
variant (the ``backend`` fixture) for hypothesis-drawn shapes, weights, ignored labels and
options, and the total itself equals a NumPy float64 textbook formula.
"""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import as_float64
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import infoloss

SETTINGS = settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# few shapes: JAX compiles every new one (the batch shape, then the class count)
SHAPES = st.sampled_from([(3, 4), (2, 3, 5), (4, 1)])
IGNORE = -7

SPARSE = {
    "sparse_softmax_cross_entropy": lambda x, y, **k: infoloss.sparse_softmax_cross_entropy(
        x, y, label_smoothing=0.1, z_loss=1e-3, **k
    ),
    "sparse_softmax_focal_loss": lambda x, y, **k: infoloss.sparse_softmax_focal_loss(
        x, y, gamma=2.0, **k
    ),
    "sparse_poly_cross_entropy": lambda x, y, **k: infoloss.sparse_poly_cross_entropy(
        x, y, epsilon=0.5, **k
    ),
}
DENSE = {
    "softmax_cross_entropy": lambda x, y, **k: infoloss.softmax_cross_entropy(
        x, y, label_smoothing=0.1, z_loss=1e-3, **k
    ),
    "softmax_focal_loss": lambda x, y, **k: infoloss.softmax_focal_loss(x, y, gamma=1.5, **k),
    "poly_cross_entropy": lambda x, y, **k: infoloss.poly_cross_entropy(x, y, epsilon=0.5, **k),
}
SIGMOID = {
    "sigmoid_cross_entropy": lambda x, y, **k: infoloss.sigmoid_cross_entropy(
        x, y, label_smoothing=0.1, **k
    ),
    "sigmoid_focal_loss": lambda x, y, **k: infoloss.sigmoid_focal_loss(
        x, y, alpha=0.25, gamma=2.0, **k
    ),
}
TOL = {"float32": 2e-5, "float64": 1e-12}


def _jax_float64_only(backend, dtype):
    """JAX compiles every new shape, dtype and option set eagerly (seconds per loss here):
    float64 only on JAX (float32 runs on the other variants)."""
    assume(backend.name != "jax" or dtype == "float64")


def _check_ratio(fn, x, y, total, dtype, **kw):
    s = as_float64(fn(x, y, reduction="sum", **kw))
    m = as_float64(fn(x, y, reduction="mean", **kw))
    t = float(as_float64(total))
    want = float(s) / t if t != 0 else 0.0
    assert abs(float(m) - want) <= TOL[dtype] * max(1.0, abs(want)), (float(m), want)


def _weights(data, shape, low=0.0):
    return data.draw(hnp.arrays(np.float64, shape, elements=st.floats(low, 3.0, width=32)))


@SETTINGS
@given(data=st.data(), shape=SHAPES, dtype=st.sampled_from(["float32", "float64"]))
@pytest.mark.parametrize("name", [*sorted(SPARSE), "linear_cross_entropy"])
def test_sparse_sum_over_weight_total_is_mean(backend, name, data, shape, dtype):
    _jax_float64_only(backend, dtype)
    *batch, c = shape
    batch = tuple(batch)
    x = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-20, 20, width=32)))
    y = data.draw(hnp.arrays(np.int64, batch, elements=st.integers(0, c - 1)))
    drop = data.draw(hnp.arrays(np.bool_, batch))
    y = np.where(drop, IGNORE, y)
    kw, ref = {}, np.where(drop, 0.0, 1.0)
    if data.draw(st.booleans()):
        cw = _weights(data, (c,))
        kw["class_weights"] = backend.asarray(cw, dtype)
        ref = ref * cw[np.where(drop, 0, y)]
    if data.draw(st.booleans()):
        sw = _weights(data, batch)
        kw["sample_weights"] = backend.asarray(sw, dtype)
        ref = ref * sw
    yb = backend.asarray(y, "int64")
    total = infoloss.weight_total(yb, ignore_index=IGNORE, **kw)
    assert abs(float(as_float64(total)) - float(ref.sum())) <= TOL[dtype] * max(1.0, ref.sum())
    if name == "linear_cross_entropy":
        h = backend.asarray(x.reshape(-1, c), dtype)
        w = backend.asarray(np.eye(c) + 0.5, dtype)
        yb = backend.asarray(y.reshape(-1), "int64")
        if "sample_weights" in kw:
            kw["sample_weights"] = backend.asarray(np.asarray(sw).reshape(-1), dtype)

        def fn(a, b, **k):
            return infoloss.linear_cross_entropy(a, w, b, label_smoothing=0.1, z_loss=1e-3, **k)

        _check_ratio(fn, h, yb, total, dtype, ignore_index=IGNORE, **kw)
    else:
        xb = backend.asarray(x, dtype)
        _check_ratio(SPARSE[name], xb, yb, total, dtype, ignore_index=IGNORE, **kw)


@SETTINGS
@given(data=st.data(), shape=SHAPES, dtype=st.sampled_from(["float32", "float64"]))
@pytest.mark.parametrize("name", sorted(DENSE))
def test_dense_sum_over_weight_total_is_mean(backend, name, data, shape, dtype):
    _jax_float64_only(backend, dtype)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-20, 20, width=32)))
    raw = _weights(data, shape) + 1e-3
    t = raw / raw.sum(axis=axis, keepdims=True)
    if data.draw(st.booleans()):  # unnormalised soft targets count as they are
        t = t * _weights(data, shape, low=0.125)
    batch = tuple(int(n) for n in np.delete(np.array(shape), axis % len(shape)))
    kw, ref = {}, np.ones(batch)
    if data.draw(st.booleans()):
        cw = _weights(data, (shape[axis],))
        kw["class_weights"] = backend.asarray(cw, dtype)
        ref = np.moveaxis(t, axis, -1) @ cw
    if data.draw(st.booleans()):
        sw = _weights(data, batch)
        kw["sample_weights"] = backend.asarray(sw, dtype)
        ref = ref * sw
    tb = backend.asarray(t, dtype)
    total = infoloss.weight_total(tb, kind="softmax", axis=axis, **kw)
    assert abs(float(as_float64(total)) - float(ref.sum())) <= TOL[dtype] * max(1.0, ref.sum())
    _check_ratio(DENSE[name], backend.asarray(x, dtype), tb, total, dtype, axis=axis, **kw)


@SETTINGS
@given(data=st.data(), shape=SHAPES, dtype=st.sampled_from(["float32", "float64"]))
@pytest.mark.parametrize("name", sorted(SIGMOID))
def test_sigmoid_sum_over_weight_total_is_mean(backend, name, data, shape, dtype):
    _jax_float64_only(backend, dtype)
    x = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-20, 20, width=32)))
    y = data.draw(hnp.arrays(np.float64, shape, elements=st.sampled_from([0.0, 0.3, 1.0])))
    kw, ref = {}, np.ones(shape)
    if data.draw(st.booleans()):  # per example (..., 1) or per element
        sshape = data.draw(st.sampled_from([shape, (*shape[:-1], 1)]))
        sw = _weights(data, sshape)
        kw["sample_weights"] = backend.asarray(sw, dtype)
        ref = np.broadcast_to(sw, shape)
    yb = backend.asarray(y, dtype)
    total = infoloss.weight_total(yb, kind="sigmoid", **kw)
    assert abs(float(as_float64(total)) - float(ref.sum())) <= TOL[dtype] * max(1.0, ref.sum())
    _check_ratio(SIGMOID[name], backend.asarray(x, dtype), yb, total, dtype, **kw)


def test_weight_total_bad_input():
    y = np.array([[0.2, 0.8], [1.0, 0.0]])
    with pytest.raises(infoloss.InfolossTypeError, match='pass kind="softmax" or "sigmoid"'):
        infoloss.weight_total(y)
    with pytest.raises(
        infoloss.InfolossTypeError, match=r"integer class indices; got dtype float64$"
    ):
        infoloss.weight_total(y, kind="sparse")
    with pytest.raises(infoloss.InfolossError, match=r"`kind` must be one of 'sparse', "):
        infoloss.weight_total(y, kind="dense")
    with pytest.raises(infoloss.InfolossError, match="`ignore_index` applies to integer labels"):
        infoloss.weight_total(y, kind="softmax", ignore_index=-100)
    with pytest.raises(infoloss.InfolossError, match="`class_weights` do not enter the sigmoid"):
        infoloss.weight_total(y, kind="sigmoid", class_weights=np.ones(2))
    with pytest.raises(infoloss.InfolossError, match=r"`class_weights` must have shape \(2,\)"):
        infoloss.weight_total(y, kind="softmax", class_weights=np.ones(3))
    with pytest.raises(
        infoloss.InfolossError, match=r"`sample_weights` must broadcast to the batch"
    ):
        infoloss.weight_total(y, kind="softmax", sample_weights=np.ones(3))
    with pytest.raises(infoloss.InfolossError, match=r"`axis` must be in \[-2, 2\)"):
        infoloss.weight_total(y, kind="softmax", axis=2)
    with pytest.raises(infoloss.InfolossError, match="non-negative"):
        infoloss.weight_total(y, kind="sigmoid", sample_weights=-np.ones(2))
