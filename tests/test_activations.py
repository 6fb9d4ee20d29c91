"""Stable activations: logsumexp, softmax, log_softmax, sigmoid, log_sigmoid (issue 2)."""

from __future__ import annotations

import warnings

import mpmath
import numpy as np
import pytest
import scipy.special as sp
from _helpers import ON_NUMPY, as_float64, assert_close, dtype_name, expect

import infoloss

RNG = np.random.default_rng(20240601)
X2 = RNG.normal(size=(4, 5)) * 3
X3 = RNG.normal(size=(3, 4, 5)) * 3


# ------------------------------------------------------------------------------------------------
# logsumexp
# ------------------------------------------------------------------------------------------------


def test_logsumexp_1d(backend):
    x = backend.asarray([1.0, 2.0, 3.0])
    assert_close(infoloss.logsumexp(x), expect(backend, sp.logsumexp([1.0, 2.0, 3.0]), like=x))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_logsumexp_batched(backend, dtype):
    x = backend.asarray(X2, dtype)
    ref = sp.logsumexp(X2.astype(dtype).astype(np.float64), axis=-1)
    assert_close(infoloss.logsumexp(x), expect(backend, ref, like=x))


@pytest.mark.parametrize("axis", [0, 1, -1, -2])
def test_logsumexp_axis_equals_moveaxis(backend, axis):
    x = backend.asarray(X3)
    moved = backend.asarray(np.moveaxis(X3, axis, -1))
    assert_close(infoloss.logsumexp(x, axis=axis), infoloss.logsumexp(moved))
    assert_close(
        infoloss.logsumexp(x, axis=axis), expect(backend, sp.logsumexp(X3, axis=axis), like=x)
    )


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_logsumexp_keepdims(backend, axis):
    x = backend.asarray(X3)
    ref = sp.logsumexp(X3, axis=axis, keepdims=True)
    assert_close(infoloss.logsumexp(x, axis=axis, keepdims=True), expect(backend, ref, like=x))


def test_logsumexp_extreme_float32(backend):
    data = [[1e30, -1e30, 0.0], [-1e30, -1e30, -1e30], [3e38, 3e38, -3e38]]
    x = backend.asarray(data, "float32")
    out = infoloss.logsumexp(x)
    # mpmath reference on the exact float32 inputs
    x64 = np.asarray(data, np.float32).astype(np.float64)
    with mpmath.workdps(50):
        ref = [float(mpmath.log(sum(mpmath.exp(mpmath.mpf(v)) for v in row))) for row in x64]
    assert np.all(np.isfinite(as_float64(out)))
    assert_close(out, expect(backend, ref, like=x))


def test_logsumexp_near_dtype_max_float64(backend):
    x = backend.asarray([[1e308, 1e308], [-1e308, 1e308]])
    out = infoloss.logsumexp(x)
    assert_close(out, expect(backend, [1e308 + np.log(2.0), 1e308], like=x))


def test_logsumexp_all_neg_inf_row_no_warning(backend):
    x = backend.asarray([[-np.inf, -np.inf, -np.inf], [0.0, -np.inf, -np.inf]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = infoloss.logsumexp(x)
    assert_close(out, expect(backend, [-np.inf, 0.0], like=x))


def test_logsumexp_pos_inf_gives_inf(backend):
    x = backend.asarray([[np.inf, 0.0, 1.0], [np.inf, -np.inf, 2.0]])
    assert_close(infoloss.logsumexp(x), expect(backend, [np.inf, np.inf], like=x))


@ON_NUMPY
def test_logsumexp_list_input_is_numpy(backend):
    out = infoloss.logsumexp([1.0, 2.0, 3.0])
    assert isinstance(out, (np.ndarray, np.generic))
    np.testing.assert_allclose(out, sp.logsumexp([1.0, 2.0, 3.0]), rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_logsumexp_low_precision(backend, dtype):
    if not backend.supports(dtype):
        pytest.skip(f"{backend.name} has no {dtype}")
    x = backend.asarray(X2, dtype)
    out = infoloss.logsumexp(x)
    assert dtype_name(out) == dtype
    ref = sp.logsumexp(as_float64(x), axis=-1)
    assert_close(out, expect(backend, ref, like=x))
    # large values that overflow exp in half precision
    x = backend.asarray([[60000.0, 0.0]] if dtype == "float16" else [[1e38, 0.0]], dtype)
    out = infoloss.logsumexp(x)
    assert_close(out, expect(backend, as_float64(x)[:, 0], like=x))


# ------------------------------------------------------------------------------------------------
# softmax / log_softmax
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_batched(backend, dtype):
    x = backend.asarray(X2, dtype)
    ref = sp.softmax(X2.astype(dtype).astype(np.float64), axis=-1)
    out = infoloss.softmax(x)
    assert_close(out, expect(backend, ref, like=x))
    assert_close(backend.xp.sum(out, axis=-1), expect(backend, np.ones(4), like=x))


def test_softmax_1d(backend):
    x = backend.asarray([0.0, np.log(3.0)])
    assert_close(infoloss.softmax(x), expect(backend, [0.25, 0.75], like=x))


@pytest.mark.parametrize("axis", [0, 1, -1, -3])
def test_softmax_axis_equals_moveaxis(backend, axis):
    x = backend.asarray(X3)
    got = infoloss.softmax(x, axis=axis)
    assert_close(got, expect(backend, sp.softmax(X3, axis=axis), like=x))
    moved = infoloss.softmax(backend.asarray(np.moveaxis(X3, axis, -1)))
    assert_close(got, expect(backend, np.moveaxis(as_float64(moved), -1, axis), like=x))


@pytest.mark.parametrize("axis", [0, -1])
def test_log_softmax_axis(backend, axis):
    x = backend.asarray(X3)
    assert_close(
        infoloss.log_softmax(x, axis=axis), expect(backend, sp.log_softmax(X3, axis=axis), like=x)
    )


def test_log_softmax_1d(backend):
    x = backend.asarray([1.0, 2.0, 3.0])
    assert_close(infoloss.log_softmax(x), expect(backend, sp.log_softmax([1.0, 2.0, 3.0]), like=x))


def test_softmax_extreme_float32(backend):
    x = backend.asarray([[1e30, -1e30, 0.0], [-1e30, 1e30, 1e30]], "float32")
    assert_close(infoloss.softmax(x), expect(backend, [[1, 0, 0], [0, 0.5, 0.5]], like=x))
    # log_softmax keeps the (huge, finite) gaps exactly
    ls = infoloss.log_softmax(x)
    x64 = as_float64(x)
    ref = [
        [0.0, x64[0, 1] - x64[0, 0], -x64[0, 0]],
        [x64[1, 0] - x64[1, 1], -np.log(2.0), -np.log(2.0)],
    ]
    assert np.all(np.isfinite(as_float64(ls)))
    assert_close(ls, expect(backend, ref, like=x))


def test_softmax_masked_neg_inf(backend):
    x = backend.asarray([[0.0, -np.inf, 0.0], [-np.inf, 5.0, -np.inf]])
    assert_close(infoloss.softmax(x), expect(backend, [[0.5, 0, 0.5], [0, 1, 0]], like=x), atol=0)
    assert_close(
        infoloss.log_softmax(x),
        expect(backend, [[-np.log(2), -np.inf, -np.log(2)], [-np.inf, 0, -np.inf]], like=x),
    )


def test_softmax_all_neg_inf_row(backend):
    # semantics.md: an all -inf row has no distribution; softmax gives zeros there and log_softmax
    # gives -inf (never nan, no warnings)
    x = backend.asarray([[-np.inf, -np.inf], [0.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = infoloss.softmax(x)
        ls = infoloss.log_softmax(x)
    assert_close(s, expect(backend, [[0.0, 0.0], [0.5, 0.5]], like=x), atol=0)
    assert_close(ls, expect(backend, [[-np.inf, -np.inf], [-np.log(2), -np.log(2)]], like=x))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_softmax_low_precision(backend, dtype):
    if not backend.supports(dtype):
        pytest.skip(f"{backend.name} has no {dtype}")
    x = backend.asarray(X2, dtype)
    ref = sp.softmax(as_float64(x), axis=-1)
    assert_close(infoloss.softmax(x), expect(backend, ref, like=x))
    assert_close(infoloss.log_softmax(x), expect(backend, np.log(ref), like=x))


# ------------------------------------------------------------------------------------------------
# sigmoid / log_sigmoid
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_matches_expit(backend, dtype):
    x = backend.asarray(X3, dtype)
    assert_close(infoloss.sigmoid(x), expect(backend, sp.expit(as_float64(x)), like=x))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_log_sigmoid_matches_textbook(backend, dtype):
    x = backend.asarray(X3, dtype)
    ref = -np.logaddexp(0.0, -as_float64(x))
    assert_close(infoloss.log_sigmoid(x), expect(backend, ref, like=x))


def test_sigmoid_scalar_and_0d(backend):
    x = backend.asarray(0.0)
    assert_close(infoloss.sigmoid(x), expect(backend, 0.5, like=x))
    assert_close(infoloss.log_sigmoid(x), expect(backend, -np.log(2.0), like=x))


@ON_NUMPY
def test_sigmoid_python_scalar_is_numpy(backend):
    out = infoloss.sigmoid(0.0)
    assert isinstance(out, (np.ndarray, np.generic))
    assert float(out) == 0.5


def test_sigmoid_extreme(backend):
    data = [1e30, -1e30, np.inf, -np.inf, 100.0, -100.0]
    x = backend.asarray(data, "float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = infoloss.sigmoid(x)
        ls = infoloss.log_sigmoid(x)
    x64 = as_float64(x)
    assert_close(s, expect(backend, sp.expit(x64), like=x))
    ref_ls = [0.0, x64[1], 0.0, -np.inf, -np.exp(-100.0), -100.0]
    assert_close(ls, expect(backend, ref_ls, like=x), atol=1e-40)


# mpmath known values: log_sigmoid must keep relative accuracy where log(sigmoid(x)) rounds to 0
LOG_SIGMOID_TABLE = [-800.0, -40.0, -1.0, 0.0, 1e-10, 1.0, 40.0, 700.0]


@pytest.mark.parametrize("v", LOG_SIGMOID_TABLE)
def test_log_sigmoid_known_values(backend, v):
    with mpmath.workdps(50):
        ref = -mpmath.log1p(mpmath.exp(-mpmath.mpf(v)))
    x = backend.asarray([v])
    assert_close(infoloss.log_sigmoid(x), expect(backend, [float(ref)], like=x), rtol=1e-13, atol=0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_sigmoid_low_precision(backend, dtype):
    if not backend.supports(dtype):
        pytest.skip(f"{backend.name} has no {dtype}")
    x = backend.asarray([-100.0, -3.0, 0.0, 2.5, 100.0], dtype)
    x64 = as_float64(x)
    assert_close(infoloss.sigmoid(x), expect(backend, sp.expit(x64), like=x))
    assert_close(infoloss.log_sigmoid(x), expect(backend, -np.logaddexp(0, -x64), like=x))


@pytest.mark.parametrize("fn", ["logsumexp", "softmax", "log_softmax", "sigmoid", "log_sigmoid"])
def test_returns_caller_array_type(backend, fn):
    x = backend.asarray(X2, "float32")
    out = getattr(infoloss, fn)(x)
    assert backend.is_native(out), type(out)
    assert dtype_name(out) == "float32"
