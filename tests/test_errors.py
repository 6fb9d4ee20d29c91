"""Every bad input of issue 2 raises a library exception whose message names the argument."""

from __future__ import annotations

import re

import numpy as np
import pytest
from _helpers import as_float64

import infoloss
from infoloss import InfolossError, InfolossTypeError

X = np.zeros((2, 3))
Y = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
LAB = np.array([0, 2])

LOSSES = {
    "softmax_cross_entropy": (infoloss.softmax_cross_entropy, Y),
    "sparse_softmax_cross_entropy": (infoloss.sparse_softmax_cross_entropy, LAB),
    "sigmoid_cross_entropy": (infoloss.sigmoid_cross_entropy, Y),
}
SOFTMAX_LOSSES = ["softmax_cross_entropy", "sparse_softmax_cross_entropy"]


def test_error_hierarchy():
    assert issubclass(InfolossError, ValueError)
    assert issubclass(InfolossTypeError, TypeError)
    assert issubclass(InfolossTypeError, InfolossError)


# -- mismatched shapes ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "sigmoid_cross_entropy"])
def test_dense_labels_shape_mismatch(name):
    fn, _ = LOSSES[name]
    with pytest.raises(InfolossError, match=r"`labels`[\s\S]*\(2, 4\)|\(2, 4\)[\s\S]*`labels`"):
        fn(X, np.zeros((2, 4)))


def test_sparse_labels_shape_mismatch():
    with pytest.raises(InfolossError, match=r"`labels`"):
        infoloss.sparse_softmax_cross_entropy(X, np.array([0, 1, 2]))
    with pytest.raises(InfolossError, match=r"`labels`"):
        # dense labels given to the sparse loss
        infoloss.sparse_softmax_cross_entropy(X, np.zeros((2, 3), dtype=np.int64))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_sample_weights_shape_mismatch(name):
    fn, lab = LOSSES[name]
    with pytest.raises(InfolossError, match=r"`sample_weights`"):
        fn(X, lab, sample_weights=np.ones(5))


def test_pos_weight_shape_mismatch():
    with pytest.raises(InfolossError, match=r"`pos_weight`"):
        infoloss.sigmoid_cross_entropy(X, Y, pos_weight=np.ones(4))


@pytest.mark.parametrize("name", ["cross_entropy", "kl_divergence", "js_divergence"])
def test_measure_shapes_do_not_broadcast(name):
    with pytest.raises(InfolossError, match=r"`p`|`q`"):
        getattr(infoloss, name)(np.full(3, 1 / 3), np.full(4, 1 / 4))


def test_softmax_kl_shapes_mismatch():
    with pytest.raises(InfolossError, match=r"`p_logits`|`q_logits`"):
        infoloss.softmax_kl_divergence(np.zeros((2, 3)), np.zeros((2, 4)))


@pytest.mark.parametrize("name", SOFTMAX_LOSSES)
def test_class_weights_wrong_length(name):
    fn, lab = LOSSES[name]
    with pytest.raises(InfolossError, match=r"`class_weights`[\s\S]*4|4[\s\S]*`class_weights`"):
        fn(X, lab, class_weights=np.ones(4))
    with pytest.raises(InfolossError, match=r"`class_weights`"):
        fn(X, lab, class_weights=np.ones((1, 3)))


# -- label values ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [3, -1, 100])
def test_sparse_label_out_of_range(backend, bad):
    x = backend.asarray(X)
    labels = backend.asarray([0, bad], "int64")
    with pytest.raises(InfolossError, match=rf"`labels`[\s\S]*{bad}"):
        infoloss.sparse_softmax_cross_entropy(x, labels)


def test_sparse_label_out_of_range_with_other_ignore_index(backend):
    x = backend.asarray(X)
    with pytest.raises(InfolossError, match=r"`labels`[\s\S]*-1"):
        infoloss.sparse_softmax_cross_entropy(
            x, backend.asarray([-100, -1], "int64"), ignore_index=-100
        )


def test_sparse_ignore_index_is_not_out_of_range(backend):
    x = backend.asarray(X)
    out = infoloss.sparse_softmax_cross_entropy(
        x, backend.asarray([-1, 2], "int64"), ignore_index=-1
    )
    np.testing.assert_allclose(as_float64(out), [0.0, np.log(3)], rtol=1e-12)


def test_sparse_label_out_of_range_value_and_grad():
    with pytest.raises(InfolossError, match=r"`labels`"):
        infoloss.value_and_grad(infoloss.sparse_softmax_cross_entropy)(X, np.array([0, 3]))


def test_label_range_not_checked_under_jit():
    # semantics.md: checks that read data are skipped while tracing; no exception, and JAX's
    # gather fills the out-of-range label's logit with nan, so that example's loss is nan
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    f = jax.jit(lambda x, y: infoloss.sparse_softmax_cross_entropy(x, y))
    out = f(jnp.zeros((2, 3)), jnp.asarray([0, 7]))
    assert out.shape == (2,)
    assert float(out[0]) == pytest.approx(np.log(3))
    assert bool(jnp.isnan(out[1]))
    with pytest.raises(InfolossError, match=r"found 7 at position \(1,\)"):
        infoloss.sparse_softmax_cross_entropy(jnp.zeros((2, 3)), jnp.asarray([0, 7]))


@pytest.mark.parametrize("dtype", ["float64", "float32", "bool"])
def test_sparse_labels_must_be_integers(dtype):
    with pytest.raises(InfolossTypeError, match=r"`labels`"):
        infoloss.sparse_softmax_cross_entropy(X, LAB.astype(dtype))


def test_sparse_labels_must_be_integers_torch():
    torch = pytest.importorskip("torch")
    with pytest.raises(InfolossTypeError, match=r"`labels`[\s\S]*float"):
        infoloss.sparse_softmax_cross_entropy(torch.zeros(2, 3), torch.tensor([0.0, 2.0]))


# -- dtypes of logits -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("dtype", ["int64", "int32", "bool"])
def test_logits_must_be_floating(name, dtype):
    fn, lab = LOSSES[name]
    with pytest.raises(InfolossTypeError, match=r"`logits`"):
        fn(X.astype(dtype), lab)


def test_logits_must_be_floating_other_backends(backend):
    x = backend.asarray([[1, 2, 3]], "int64")
    with pytest.raises(InfolossTypeError, match=r"`logits`[\s\S]*int"):
        infoloss.sparse_softmax_cross_entropy(x, backend.asarray([0], "int64"))
    with pytest.raises(InfolossTypeError, match=r"`logits`"):
        infoloss.softmax_entropy(x)


def test_logit_measures_must_be_floating():
    with pytest.raises(InfolossTypeError, match=r"`logits`"):
        infoloss.softmax_entropy(np.array([1, 2, 3]))
    with pytest.raises(InfolossTypeError, match=r"`p_logits`"):
        infoloss.softmax_kl_divergence(np.array([1, 2, 3]), np.zeros(3))
    with pytest.raises(InfolossTypeError, match=r"`q_logits`"):
        infoloss.softmax_kl_divergence(np.zeros(3), np.array([1, 2, 3]))


def test_value_and_grad_validates_too():
    with pytest.raises(InfolossTypeError, match=r"`logits`"):
        infoloss.value_and_grad(infoloss.softmax_cross_entropy)(X.astype(int), Y)


# -- options --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("bad", ["avg", "MEAN", "elementwise_mean", ""])
def test_unknown_reduction(name, bad):
    fn, lab = LOSSES[name]
    with pytest.raises(InfolossError, match=rf"`reduction`[\s\S]*{re.escape(bad)}"):
        fn(X, lab, reduction=bad)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_reduction_not_a_string(name):
    fn, lab = LOSSES[name]
    with pytest.raises(InfolossError, match=r"`reduction`"):
        fn(X, lab, reduction=None)


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), float("inf")])
def test_label_smoothing_out_of_range(name, bad):
    fn, lab = LOSSES[name]
    with pytest.raises(InfolossError, match=r"`label_smoothing`"):
        fn(X, lab, label_smoothing=bad)


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("ok", [0.0, 1.0, 0])
def test_label_smoothing_bounds_are_allowed(name, ok):
    fn, lab = LOSSES[name]
    fn(X, lab, label_smoothing=ok)


BASE_FUNCS = {
    "information": lambda b: infoloss.information(np.array([0.5]), base=b),
    "entropy": lambda b: infoloss.entropy(np.array([0.5, 0.5]), base=b),
    "cross_entropy": lambda b: infoloss.cross_entropy(
        np.array([0.5, 0.5]), np.array([0.5, 0.5]), base=b
    ),
    "kl_divergence": lambda b: infoloss.kl_divergence(
        np.array([0.5, 0.5]), np.array([0.5, 0.5]), base=b
    ),
    "js_divergence": lambda b: infoloss.js_divergence(
        np.array([0.5, 0.5]), np.array([0.5, 0.5]), base=b
    ),
    "softmax_entropy": lambda b: infoloss.softmax_entropy(np.zeros(3), base=b),
    "softmax_kl_divergence": lambda b: infoloss.softmax_kl_divergence(
        np.zeros(3), np.zeros(3), base=b
    ),
}


@pytest.mark.parametrize("name", sorted(BASE_FUNCS))
@pytest.mark.parametrize("bad", [0, -2.0, 1, 1.0])
def test_bad_base(name, bad):
    with pytest.raises(InfolossError, match=rf"`base`[\s\S]*{bad}"):
        BASE_FUNCS[name](bad)


@pytest.mark.parametrize("name", ["entropy", "kl_divergence"])
def test_good_bases(name):
    for b in (2, 2.0, 10, np.e, 0.5):
        BASE_FUNCS[name](b)


# -- axis -----------------------------------------------------------------------------------------

AXIS_CALLS = {
    "entropy": lambda a: infoloss.entropy(np.full((2, 3), 1 / 3), axis=a),
    "kl_divergence": lambda a: infoloss.kl_divergence(
        np.full((2, 3), 1 / 3), np.full((2, 3), 1 / 3), axis=a
    ),
    "logsumexp": lambda a: infoloss.logsumexp(np.zeros((2, 3)), axis=a),
    "softmax": lambda a: infoloss.softmax(np.zeros((2, 3)), axis=a),
    "log_softmax": lambda a: infoloss.log_softmax(np.zeros((2, 3)), axis=a),
    "softmax_entropy": lambda a: infoloss.softmax_entropy(np.zeros((2, 3)), axis=a),
    "softmax_kl_divergence": lambda a: infoloss.softmax_kl_divergence(
        np.zeros((2, 3)), np.zeros((2, 3)), axis=a
    ),
    "softmax_cross_entropy": lambda a: infoloss.softmax_cross_entropy(X, Y, axis=a),
    "sparse_softmax_cross_entropy": lambda a: infoloss.sparse_softmax_cross_entropy(X, LAB, axis=a),
}


@pytest.mark.parametrize("name", sorted(AXIS_CALLS))
@pytest.mark.parametrize("bad", [2, -3, 5])
def test_axis_out_of_range(name, bad):
    with pytest.raises(InfolossError, match=rf"`axis`[\s\S]*{bad}"):
        AXIS_CALLS[name](bad)


# -- mixing libraries -----------------------------------------------------------------------------


def test_two_libraries_torch_numpy():
    torch = pytest.importorskip("torch")
    with pytest.raises(InfolossError, match=r"`logits`|`labels`"):
        infoloss.softmax_cross_entropy(torch.zeros(2, 3, dtype=torch.float64), Y)
    with pytest.raises(InfolossError, match=r"`logits`|`labels`"):
        infoloss.sparse_softmax_cross_entropy(X, torch.tensor([0, 2]))


def test_two_libraries_jax_torch():
    torch = pytest.importorskip("torch")
    jnp = pytest.importorskip("jax.numpy")
    with pytest.raises(InfolossError, match=r"`logits`|`labels`"):
        infoloss.sigmoid_cross_entropy(jnp.zeros((2, 3)), torch.zeros(2, 3))


def test_two_libraries_in_weights():
    torch = pytest.importorskip("torch")
    with pytest.raises(InfolossError, match=r"`class_weights`|`logits`"):
        infoloss.sparse_softmax_cross_entropy(
            torch.zeros(2, 3, dtype=torch.float64), torch.tensor([0, 2]), class_weights=np.ones(3)
        )


def test_two_libraries_measures():
    torch = pytest.importorskip("torch")
    with pytest.raises(InfolossError, match=r"`p`|`q`"):
        infoloss.kl_divergence(torch.full((3,), 1 / 3, dtype=torch.float64), np.full(3, 1 / 3))


def test_two_libraries_strict_numpy():
    xs = pytest.importorskip("array_api_strict")
    with pytest.raises(InfolossError, match=r"`logits`|`labels`"):
        infoloss.softmax_cross_entropy(xs.zeros((2, 3), dtype=xs.float64), Y)
