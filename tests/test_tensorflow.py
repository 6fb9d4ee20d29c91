"""TensorFlow tensors: the namespace shim op by op, values and GradientTape gradients against
``tf.nn`` and float64 textbook formulas, ``tf.function`` with and without XLA, dtypes, errors."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from _helpers import assert_close, to_numpy  # noqa: E402

import infoloss as il  # noqa: E402
from infoloss import _tf_namespace  # noqa: E402
from infoloss.errors import InfolossError, InfolossTypeError  # noqa: E402

F64 = tf.float64
RNG = np.random.default_rng(14)
XP = _tf_namespace.xp


def t64(a):
    return tf.constant(np.asarray(a, dtype=np.float64))


def logits_labels(n=5, c=4, seed=0):
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, c)) * 2
    y = r.dirichlet(np.ones(c), size=n)
    idx = r.integers(0, c, size=n)
    return t64(x), t64(y), tf.constant(idx)


def tape_grad(fn, *xs):
    with tf.GradientTape() as t:
        for x in xs:
            t.watch(x)
        v = fn(*xs)
    gs = [tf.convert_to_tensor(g) for g in t.gradient(v, xs)]  # IndexedSlices from tf.gather
    return v, (gs if len(xs) > 1 else gs[0])


# --------------------------------------------------------------------------- import cost


def test_import_does_not_import_tensorflow():
    code = "import sys, infoloss; print('tensorflow' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- the shim, op by op


def test_namespace_creation_and_dtypes():
    x = t64([[1.0, -2.0], [3.0, 0.5]])
    assert XP.isdtype(F64, "real floating") and not XP.isdtype(tf.int32, "real floating")
    assert XP.isdtype(tf.int32, "integral") and XP.isdtype(tf.bool, "bool")
    assert XP.isdtype(tf.float32, ("integral", "real floating"))
    assert XP.finfo(tf.float16).bits == 16 and XP.finfo(F64).max == np.finfo(np.float64).max
    assert XP.iinfo(tf.int32).min == -(2**31)
    with pytest.raises(TypeError):
        XP.finfo(tf.int32)
    assert XP.result_type(x, tf.constant([1.0], tf.float32)) == F64
    assert XP.result_type(tf.float16, tf.bfloat16) == tf.float32
    assert XP.result_type(tf.int32, tf.int64) == tf.int64
    np.testing.assert_array_equal(XP.arange(3).numpy(), np.arange(3))
    assert XP.arange(3).dtype == tf.int64
    np.testing.assert_array_equal(XP.full_like(x, np.nan).numpy(), np.full((2, 2), np.nan))
    np.testing.assert_array_equal(XP.full((2,), 3.0, dtype=F64).numpy(), [3.0, 3.0])
    np.testing.assert_array_equal(XP.ones((2,), dtype=F64).numpy(), [1.0, 1.0])
    assert XP.astype(x, tf.float32).dtype == tf.float32
    v = tf.Variable([1.0, 2.0])
    assert isinstance(XP.asarray(v), tf.Tensor) and XP.asarray([1, 2]).dtype == tf.int32


def test_namespace_math_reductions_and_indexing():
    a = RNG.normal(size=(3, 4, 5))
    x = t64(a)
    np.testing.assert_allclose(XP.log2(t64([1.0, 8.0, 0.5])).numpy(), [0.0, 3.0, -1.0])
    np.testing.assert_allclose(XP.pow(t64([2.0]), t64([10.0])).numpy(), [1024.0])
    np.testing.assert_allclose(XP.sum(x, axis=1, keepdims=True).numpy(), a.sum(1, keepdims=True))
    assert int(XP.sum(tf.constant([True, True, False]))) == 2
    np.testing.assert_allclose(XP.max(x, axis=-1).numpy(), a.max(-1))
    np.testing.assert_array_equal(XP.any(x > 2, axis=0).numpy(), (a > 2).any(0))
    np.testing.assert_array_equal(
        XP.argmax(x, axis=1, keepdims=True).numpy(), np.argmax(a, 1)[:, None, :]
    )
    assert int(XP.argmax(x)) == int(np.argmax(a))
    mask = a > 1
    for got, want in zip(XP.nonzero(tf.constant(mask)), np.nonzero(mask), strict=True):
        np.testing.assert_array_equal(got.numpy(), want)
    np.testing.assert_array_equal(XP.moveaxis(x, 0, -1).numpy(), np.moveaxis(a, 0, -1))
    np.testing.assert_array_equal(XP.moveaxis(x, -1, 1).numpy(), np.moveaxis(a, -1, 1))
    for src, dst in [((0, 1), (-2, -1)), ((2, 0), (0, 1)), ((1, 2), (-2, -1)), ((0, 2), (2, 0))]:
        np.testing.assert_array_equal(
            XP.moveaxis(x, src, dst).numpy(), np.moveaxis(a, src, dst), err_msg=str((src, dst))
        )
    np.testing.assert_array_equal(XP.matrix_transpose(x).numpy(), np.swapaxes(a, -1, -2))
    np.testing.assert_array_equal(XP.squeeze(x[:, :1], axis=1).numpy(), a[:, 0])
    np.testing.assert_array_equal(XP.concat([x, x], axis=0).numpy(), np.concatenate([a, a]))
    idx = RNG.integers(0, 5, size=(3, 4, 1))
    np.testing.assert_array_equal(
        XP.take_along_axis(x, tf.constant(idx), axis=-1).numpy(),
        np.take_along_axis(a, idx, axis=-1),
    )
    np.testing.assert_array_equal(
        XP.take(t64([1.0, 2.0, 3.0]), tf.constant([2, 0])).numpy(), [3.0, 1.0]
    )
    np.testing.assert_array_equal(
        XP.where(x > 0, x, XP.zeros_like(x)).numpy(), np.where(a > 0, a, 0)
    )
    np.testing.assert_array_equal(XP.broadcast_to(t64([1.0, 2.0]), (3, 2)).numpy(), [[1, 2]] * 3)
    with pytest.raises(ValueError):
        XP.broadcast_to(t64([1.0, 2.0]), (3, 4))
    p, q = XP.broadcast_arrays(t64([[1.0], [2.0]]), t64([1.0, 2.0, 3.0]))
    assert tuple(p.shape) == tuple(q.shape) == (2, 3)
    with pytest.raises(ValueError):
        XP.broadcast_arrays(t64([1.0, 2.0]), t64([1.0, 2.0, 3.0]))
    for f, g in [
        (XP.exp, np.exp),
        (lambda t: XP.log1p(XP.abs(t)), lambda t: np.log1p(np.abs(t))),
        (XP.expm1, np.expm1),
        (XP.abs, np.abs),
        (XP.floor, np.floor),
    ]:
        np.testing.assert_allclose(f(x).numpy(), g(a), rtol=1e-15)
    np.testing.assert_array_equal(XP.isnan(t64([np.nan, 1.0])).numpy(), [True, False])
    special = t64([np.nan, np.inf, -np.inf, 1.0, -2.0])
    np.testing.assert_array_equal(XP.isinf(special).numpy(), [False, True, True, False, False])
    np.testing.assert_allclose(XP.tanh(x).numpy(), np.tanh(a), rtol=1e-15)
    other = t64([1.0, np.nan, 0.0, np.inf, -3.0])
    sp, op = (
        np.array([np.nan, np.inf, -np.inf, 1.0, -2.0]),
        np.array([1.0, np.nan, 0.0, np.inf, -3.0]),
    )
    np.testing.assert_array_equal(XP.maximum(special, other).numpy(), np.maximum(sp, op))
    np.testing.assert_array_equal(XP.minimum(special, other).numpy(), np.minimum(sp, op))
    np.testing.assert_array_equal(XP.maximum(special, 0.0).numpy(), np.maximum(sp, 0.0))
    np.testing.assert_array_equal(XP.stack([x, x], axis=1).numpy(), np.stack([a, a], axis=1))
    np.testing.assert_array_equal(XP.expand_dims(x, axis=-1).numpy(), a[..., None])
    z = XP.zeros((2, 3), dtype=tf.float64)
    assert z.dtype == tf.float64 and z.numpy().tolist() == [[0.0] * 3] * 2


# --------------------------------------------------------------------------- array type in, out


def test_variable_in_tensor_out_on_its_device():
    x = tf.Variable([[2.0, 1.0, 0.1]])
    out = il.sparse_softmax_cross_entropy(x, [2])
    assert isinstance(out, tf.Tensor) and out.dtype == tf.float32
    assert out.device == tf.convert_to_tensor(x).device
    # NumPy labels and weights are converted, as tf.nn converts them
    out2 = il.softmax_cross_entropy(x, np.array([[0.0, 0.0, 1.0]], np.float32))
    assert_close(out2, out)


def test_mixing_libraries_is_an_error():
    torch = pytest.importorskip("torch")
    with pytest.raises(InfolossTypeError, match="one array library"):
        il.sparse_softmax_cross_entropy(tf.zeros((2, 3)), torch.tensor([0, 1]))


# --------------------------------------------------------------------------- tf.nn references


@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_ce_equals_tf_nn(axis):
    x, y, _ = logits_labels()
    if axis == 0:
        x, y = tf.transpose(x), tf.transpose(y)
    v, g = tape_grad(lambda a: il.softmax_cross_entropy(a, y, axis=axis), x)
    w, h = tape_grad(
        lambda a: tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=a, axis=axis), x
    )
    assert_close(v, w)
    assert_close(g, h)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_sparse_softmax_ce_equals_tf_nn(reduction):
    x, _, idx = logits_labels()
    red = {"none": lambda t: t, "sum": tf.reduce_sum, "mean": tf.reduce_mean}[reduction]
    v, g = tape_grad(lambda a: il.sparse_softmax_cross_entropy(a, idx, reduction=reduction), x)
    w, h = tape_grad(
        lambda a: red(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=idx, logits=a)), x
    )
    assert_close(v, w)
    assert_close(g, h)


def test_sigmoid_ce_equals_tf_nn_and_weighted():
    x = t64(RNG.normal(size=(4, 3)) * 3)
    y = t64(RNG.uniform(size=(4, 3)))
    pw = t64([0.5, 2.0, 3.0])
    v, g = tape_grad(lambda a: il.sigmoid_cross_entropy(a, y), x)
    w, h = tape_grad(lambda a: tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=a), x)
    assert_close(v, w)
    assert_close(g, h)
    v, g = tape_grad(lambda a: il.sigmoid_cross_entropy(a, y, pos_weight=pw, reduction="sum"), x)
    w, h = tape_grad(
        lambda a: tf.reduce_sum(tf.nn.weighted_cross_entropy_with_logits(y, a, pos_weight=pw)), x
    )
    assert_close(v, w)
    assert_close(g, h)


def test_activations_equal_tf():
    x = t64(RNG.normal(size=(3, 5)) * 4)
    pairs = [
        (il.logsumexp(x, axis=-1), tf.reduce_logsumexp(x, axis=-1)),
        (il.softmax(x, axis=0), tf.nn.softmax(x, axis=0)),
        (il.log_softmax(x), tf.nn.log_softmax(x)),
        (il.sigmoid(x), tf.sigmoid(x)),
        (il.log_sigmoid(x), tf.math.log_sigmoid(x)),
    ]
    for got, want in pairs:
        assert_close(got, want)
    _, g = tape_grad(lambda a: tf.reduce_sum(il.logsumexp(a) * t64([1.0, 2.0, 3.0])), x)
    _, h = tape_grad(lambda a: tf.reduce_sum(tf.reduce_logsumexp(a, -1) * t64([1, 2, 3])), x)
    assert_close(g, h)


# --------------------------------------------------------------------------- infoloss's options


def _textbook_sparse(x, idx, cw, sw, eps, z):
    """Σᵢ sᵢ [ (1-ε) w_y (lse - x_y) + ε/C Σ_c w_c (lse - x_c) + z lse² ] / Σ sᵢ w_yᵢ."""
    c = x.shape[-1]
    lse = tf.reduce_logsumexp(x, -1)
    nll = lse[:, None] - x
    wy = tf.gather(cw, idx)
    ce = (1 - eps) * wy * tf.gather(nll, idx, batch_dims=1) + eps / c * tf.reduce_sum(cw * nll, -1)
    loss = sw * (ce + z * lse**2)
    return tf.reduce_sum(loss) / tf.reduce_sum(sw * wy)


def test_sparse_options_equal_textbook_formula_with_autodiff_gradient():
    x, _, idx = logits_labels(n=6, c=4, seed=3)
    cw, sw = t64([1.0, 2.0, 0.5, 3.0]), t64([1.0, 0.0, 2.0, 1.0, 1.0, 0.5])
    opts = dict(class_weights=cw, sample_weights=sw, label_smoothing=0.2, z_loss=1e-2)
    v, g = tape_grad(lambda a: il.sparse_softmax_cross_entropy(a, idx, reduction="mean", **opts), x)
    w, h = tape_grad(lambda a: _textbook_sparse(a, idx, cw, sw, 0.2, 1e-2), x)
    assert_close(v, w)
    assert_close(g, h)
    # dense one-hot labels give the same numbers
    onehot = tf.one_hot(idx, 4, dtype=F64)
    v2, g2 = tape_grad(lambda a: il.softmax_cross_entropy(a, onehot, reduction="mean", **opts), x)
    assert_close(v2, w)
    assert_close(g2, h)


def test_ignore_index_and_label_smoothing_sigmoid():
    x, _, _ = logits_labels(n=4, c=3, seed=5)
    idx = tf.constant([0, -100, 2, 1])
    v, g = tape_grad(
        lambda a: il.sparse_softmax_cross_entropy(a, idx, ignore_index=-100, reduction="mean"), x
    )
    keep = [0, 2, 3]
    w, h = tape_grad(
        lambda a: tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.gather(idx, keep), logits=tf.gather(a, keep)
            )
        ),
        x,
    )
    assert_close(v, w)
    assert_close(g, h)
    y = t64([[0.0, 1.0, 1.0]] * 4)
    v, g = tape_grad(lambda a: il.sigmoid_cross_entropy(a, y, label_smoothing=0.1), x)
    w, h = tape_grad(
        lambda a: tf.nn.sigmoid_cross_entropy_with_logits(labels=y * 0.9 + 0.05, logits=a), x
    )
    assert_close(v, w)
    assert_close(g, h)


def test_measures_and_kl_gradients():
    a, _, _ = logits_labels(seed=7)
    b, _, _ = logits_labels(seed=8)
    v, (ga, gb) = tape_grad(lambda p, q: tf.reduce_sum(il.softmax_kl_divergence(p, q)), a, b)

    def textbook(p, q):
        lp, lq = tf.nn.log_softmax(p), tf.nn.log_softmax(q)
        return tf.reduce_sum(tf.exp(lp) * (lp - lq))

    w, (ha, hb) = tape_grad(textbook, a, b)
    assert_close(v, w)
    assert_close(ga, ha)
    assert_close(gb, hb)
    v, g = tape_grad(lambda p: tf.reduce_sum(il.softmax_entropy(p, base=2)), a)
    w, h = tape_grad(
        lambda p: -tf.reduce_sum(tf.nn.softmax(p) * tf.nn.log_softmax(p)) / np.log(2.0), a
    )
    assert_close(v, w)
    assert_close(g, h)
    p, q = tf.nn.softmax(a), tf.nn.softmax(b)
    pn, qn = p.numpy(), q.numpy()
    for f in (il.cross_entropy, il.kl_divergence, il.js_divergence):
        assert_close(f(p, q), tf.constant(to_numpy(f(pn, qn))))
    assert_close(il.entropy(p), tf.constant(to_numpy(il.entropy(pn))))
    assert_close(il.information(p), -tf.math.log(p))


def test_linear_cross_entropy_gradients():
    h = t64(RNG.normal(size=(7, 3)))
    w = t64(RNG.normal(size=(5, 3)))
    b = t64(RNG.normal(size=(5,)))
    y = tf.constant([0, 4, 2, 1, 1, 3, 0])

    def ref(h_, w_, b_):
        logits = tf.matmul(h_, w_, transpose_b=True) + b_
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))

    v, gs = tape_grad(
        lambda h_, w_, b_: il.linear_cross_entropy(h_, w_, y, bias=b_, chunk_size=3), h, w, b
    )
    r, hs = tape_grad(ref, h, w, b)
    assert_close(v, r)
    for g1, g2 in zip(gs, hs, strict=True):
        assert_close(g1, g2)
    # "none": TensorFlow differentiates the chunks (no custom gradient for per-row upstreams)
    v, g = tape_grad(
        lambda h_: tf.reduce_sum(il.linear_cross_entropy(h_, w, y, reduction="none") * 2.0), h
    )
    r, gr = tape_grad(lambda h_: 14.0 * ref(h_, w, tf.zeros_like(b)), h)
    assert_close(v, r)
    assert_close(g, gr)


def test_value_and_grad_returns_tensors():
    x, _, idx = logits_labels()
    v, g = il.value_and_grad(il.sparse_softmax_cross_entropy)(x, idx, reduction="mean")
    w, h = tape_grad(lambda a: il.sparse_softmax_cross_entropy(a, idx, reduction="mean"), x)
    assert isinstance(g, tf.Tensor)
    assert_close(v, w)
    assert_close(g, h)


def test_gradient_is_the_analytic_one_at_extreme_logits():
    """Logits of ±1e300 overflow a formula differentiated op by op; the custom gradient is
    softmax − onehot, finite."""
    x = t64([[1e300, -1e300, 0.0]])
    v, g = tape_grad(lambda a: il.sparse_softmax_cross_entropy(a, [1], reduction="sum"), x)
    assert np.isfinite(v.numpy()) and np.all(np.isfinite(g.numpy()))
    np.testing.assert_allclose(g.numpy(), [[1.0, -1.0, 0.0]])


def test_second_order_through_a_persistent_tape():
    x, _, idx = logits_labels(n=2, c=3)
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            v = il.sparse_softmax_cross_entropy(x, idx, reduction="sum")
        g = inner.gradient(v, x)
        s = tf.reduce_sum(g * g)
    hh = outer.gradient(s, x)
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            w = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(idx, x))
        s2 = tf.reduce_sum(inner.gradient(w, x) ** 2)
    assert_close(hh, outer.gradient(s2, x))


# --------------------------------------------------------------------------- tf.function, XLA


@pytest.mark.parametrize("jit", [False, True])
def test_tf_function_with_and_without_xla(jit):
    x, y, idx = logits_labels()
    xs = t64(RNG.normal(size=(5, 4)))
    ys = t64(RNG.uniform(size=(5, 4)))

    @tf.function(jit_compile=jit)
    def step(x, y, idx, xs, ys):
        with tf.GradientTape() as t:
            t.watch([x, xs])
            a = il.softmax_cross_entropy(x, y, reduction="mean", label_smoothing=0.1)
            b = il.sparse_softmax_cross_entropy(x, idx, reduction="sum", z_loss=1e-3)
            c = il.sigmoid_cross_entropy(xs, ys, reduction="mean", sample_weights=ys)
            d = tf.reduce_sum(il.softmax_kl_divergence(x, xs))
            total = a + b + c + d
        return total, t.gradient(total, [x, xs])

    def eager(x, y, idx, xs, ys):
        with tf.GradientTape() as t:
            t.watch([x, xs])
            a = il.softmax_cross_entropy(x, y, reduction="mean", label_smoothing=0.1)
            b = il.sparse_softmax_cross_entropy(x, idx, reduction="sum", z_loss=1e-3)
            c = il.sigmoid_cross_entropy(xs, ys, reduction="mean", sample_weights=ys)
            d = tf.reduce_sum(il.softmax_kl_divergence(x, xs))
            total = a + b + c + d
        return total, t.gradient(total, [x, xs])

    (v, g), (w, h) = step(x, y, idx, xs, ys), eager(x, y, idx, xs, ys)
    assert_close(v, w)
    assert_close(g[0], h[0])
    assert_close(g[1], h[1])


def test_label_checks_run_eagerly_and_are_skipped_while_tracing():
    x = tf.zeros((2, 3))
    with pytest.raises(InfolossError, match=r"class indices in \[0, 3\); found 7"):
        il.sparse_softmax_cross_entropy(x, tf.constant([0, 7]))
    with pytest.raises(InfolossError, match="targets in"):
        il.sigmoid_cross_entropy(x, x + 2.0)
    with pytest.raises(InfolossError, match="non-negative"):
        il.softmax_cross_entropy(x, x - 1.0)

    @tf.function
    def traced(y):
        return il.sparse_softmax_cross_entropy(x, y, ignore_index=-1)

    out = traced(tf.constant([0, -1]))  # traced: no data read, valid labels work
    assert_close(out, tf.constant([np.log(3.0), 0.0], tf.float32))


def test_unknown_batch_dimension_in_tf_function():
    spec = [tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None, 3], tf.float32)]

    @tf.function(input_signature=spec)
    def f(x, y):
        return il.sigmoid_cross_entropy(x, y, reduction="mean")

    x = tf.constant([[0.5, -1.0, 2.0]])
    y = tf.constant([[1.0, 0.0, 1.0]])
    assert_close(f(x, y), tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(y, x)))


# --------------------------------------------------------------------------- low precision


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_is_computed_in_float32(dtype):
    x32 = tf.constant(RNG.normal(size=(4, 6)), tf.float32)
    x = tf.cast(x32, dtype)
    idx = tf.constant([0, 5, 2, 3])
    v, g = tape_grad(lambda a: il.sparse_softmax_cross_entropy(a, idx, reduction="mean"), x)
    assert v.dtype == x.dtype and g.dtype == x.dtype
    w, h = tape_grad(
        lambda a: tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(idx, a)),
        tf.cast(x, tf.float32),
    )
    assert_close(v, tf.cast(w, dtype))
    assert_close(g, tf.cast(h, dtype))


# --------------------------------------------------------------------------- the docs


def test_docs_tensorflow_examples_run(tmp_path):
    """docs/tensorflow.md's Python blocks run as written, in order (their asserts check the
    tutorial's numbers against tf.nn), the Keras one included."""
    import re
    import runpy
    from pathlib import Path

    pytest.importorskip("keras")
    text = (Path(__file__).resolve().parents[1] / "docs" / "tensorflow.md").read_text("utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3
    script = tmp_path / "tensorflow_md.py"  # a real file: AutoGraph reads the functions' source
    script.write_text("\n".join(blocks), encoding="utf-8")
    scope = runpy.run_path(str(script))
    assert_close(scope["reference"], tf.constant([6.8376627], tf.float32))
    assert len(scope["history"].history["loss"]) == 2


def test_special_values_agree_with_the_numpy_path():
    """nan/+inf rows give nan, a -inf (masked) class is harmless, an all -inf row and logits of
    ±1e30 as on the NumPy path; the tape's gradient is value_and_grad's NumPy gradient."""
    inf = np.inf
    a = np.array(
        [[np.nan, 1, 2], [-inf, 0, 1], [-inf, -inf, -inf], [inf, 0, 1], [1e30, -1e30, 0]],
        np.float32,
    )
    y = np.array([1, 2, 0, 1, 0])
    v, g = tape_grad(lambda t: il.sparse_softmax_cross_entropy(t, tf.constant(y)), tf.constant(a))
    nv, ng = il.value_and_grad(il.sparse_softmax_cross_entropy)(a, y)
    assert_close(v, tf.constant(nv))
    assert_close(g, tf.constant(ng))
    b = np.array([[-inf, 0.0, inf], [3.0, -40.0, 0.0]], np.float32)
    yb = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.5]], np.float32)
    v, g = tape_grad(lambda t: il.sigmoid_cross_entropy(t, tf.constant(yb)), tf.constant(b))
    nv, ng = il.value_and_grad(il.sigmoid_cross_entropy)(b, yb)
    assert_close(v, tf.constant(nv))
    assert_close(g, tf.constant(ng))


# --------------------------------------------------------------------------- the rest of the family


def _family_cases():
    r = np.random.default_rng(16)
    x = r.normal(size=(6, 5)) * 3
    q = r.normal(size=(6, 5)) * 2
    q[:, 0] = -np.inf  # a teacher's masked class
    t = r.dirichlet(np.ones(5), size=6)
    y = r.integers(0, 5, size=6)
    b = (r.random((6, 5)) < 0.4).astype(np.float64)
    nb = r.integers(1, 5, size=6).astype(np.float64)
    return x, [
        ("sigmoid_focal_loss", lambda X, m: il.sigmoid_focal_loss(X, m(b), reduction="mean")),
        ("softmax_focal_loss", lambda X, m: il.softmax_focal_loss(X, m(t), gamma=2.0)),
        (
            "sparse_softmax_focal_loss",
            lambda X, m: il.sparse_softmax_focal_loss(X, m(y), gamma=0.5, reduction="mean"),
        ),
        ("poly_cross_entropy", lambda X, m: il.poly_cross_entropy(X, m(t), epsilon=2.0)),
        ("sparse_poly_cross_entropy", lambda X, m: il.sparse_poly_cross_entropy(X, m(y))),
        (
            "softmax_kl_divergence T",
            lambda X, m: il.softmax_kl_divergence(
                m(q), X, temperature=2.0, scale_by_temperature_squared=True, reduction="mean"
            ),
        ),
        ("softmax_js_divergence", lambda X, m: il.softmax_js_divergence(m(q), X, beta=0.3)),
        (
            "softmax_cross_entropy T",
            lambda X, m: il.softmax_cross_entropy(X, m(t), temperature=3.0, reduction="sum"),
        ),
        ("softcap", lambda X, m: il.sparse_softmax_cross_entropy(X, m(y), softcap=2.0)),
        ("perplexity", lambda X, m: il.perplexity(X, m(y))),
        ("bits_per_byte", lambda X, m: il.bits_per_byte(X, m(y), m(nb))),
        (
            "mutual_information",
            lambda X, m: il.mutual_information(m(t / 6.0)) + 0.0 * X[0, 0],
        ),
        (
            "conditional_entropy",
            lambda X, m: il.conditional_entropy(m(t / 6.0), given=1) + 0.0 * X[0, 0],
        ),
    ]


_X, _FAMILY = _family_cases()


@pytest.mark.parametrize("case", range(len(_FAMILY)), ids=[c[0] for c in _FAMILY])
def test_loss_family_values_and_tape_gradients(case):
    """The focal, poly, distillation, soft-capped and evaluation losses take TensorFlow tensors:
    a tf.Tensor comes back with the NumPy path's value, and GradientTape's gradient (float64)
    equals torch autograd through the same function on torch tensors (an independent autodiff)."""
    torch = pytest.importorskip("torch")
    _, fn = _FAMILY[case]
    x_tf = t64(_X)
    v, g = tape_grad(lambda X: tf.reduce_sum(fn(X, t64_or_int)), x_tf)
    assert isinstance(v, tf.Tensor)
    ref = fn(_X, np.asarray)
    assert_close(np.asarray(float(v)), np.asarray(float(np.sum(ref))), rtol=1e-12)
    xt = torch.tensor(_X, dtype=torch.float64, requires_grad=True)
    vt = fn(xt, lambda a: torch.as_tensor(np.asarray(a))).sum()
    (gt,) = torch.autograd.grad(vt, xt)
    assert_close(g.numpy(), gt.numpy(), rtol=1e-10, atol=1e-12)
    assert np.isfinite(g.numpy()).all()


def test_meter_takes_tf_tensors():
    x, y = t64(RNG.normal(size=(5, 4))), tf.constant(RNG.integers(0, 4, size=5))
    m = il.CrossEntropyMeter()
    m.update(x, y)
    ref = il.CrossEntropyMeter()
    ref.update(x.numpy(), y.numpy())
    assert_close(np.asarray(m.perplexity), np.asarray(ref.perplexity), rtol=1e-12)


def t64_or_int(a):
    a = np.asarray(a)
    return tf.constant(a) if a.dtype.kind in "iu" else t64(a)
