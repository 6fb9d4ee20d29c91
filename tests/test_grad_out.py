"""``value_and_grad(f)(..., out=buf)``: the gradient written into a caller's buffer.

Every case compares against the call without ``out`` (the fresh gradient), on the fused path and
on the generic path, and checks that ``out`` is the array returned.
"""

from __future__ import annotations

import numpy as np
import pytest

import infoloss
from infoloss.errors import InfolossError, InfolossTypeError

vg = infoloss.value_and_grad
RNG = np.random.default_rng(7)
N, C = 37, 41


def _x(dtype=np.float32):
    return (RNG.standard_normal((N, C)) * 3).astype(dtype)


def _cases():
    lab = RNG.integers(0, C, N)
    lab[3] = -100
    dense = RNG.random((N, C))
    dense /= dense.sum(axis=1, keepdims=True)
    multi = (RNG.random((N, C)) < 0.3).astype(np.float64)
    return [
        ("sparse", infoloss.sparse_softmax_cross_entropy, lab, {"ignore_index": -100}),
        (
            "sparse-smooth",
            infoloss.sparse_softmax_cross_entropy,
            np.where(lab < 0, 0, lab),
            {"label_smoothing": 0.1, "z_loss": 1e-3},
        ),
        ("dense", infoloss.softmax_cross_entropy, dense, {"class_weights": RNG.random(C)}),
        ("sigmoid", infoloss.sigmoid_cross_entropy, multi, {"pos_weight": RNG.random(C) + 0.5}),
    ]


CASES = _cases()
IDS = [c[0] for c in CASES]


# every test runs on the fused and on the generic NumPy path (the ``backend`` fixture)
pytestmark = pytest.mark.variants(
    "numpy-fast", "numpy-generic", reason="`out=` is for NumPy logits (other libraries: an error)"
)


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_out_buffer_equals_fresh_gradient(case, reduction, dtype, backend):
    _, fn, labels, kw = case
    x = _x(dtype)
    v0, g0 = vg(fn)(x, labels, reduction=reduction, **kw)
    buf = np.full_like(x, np.nan)
    v1, g1 = vg(fn)(x, labels, reduction=reduction, out=buf, **kw)
    assert g1 is buf
    np.testing.assert_array_equal(v1, v0)
    np.testing.assert_array_equal(buf, g0)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_out_may_be_the_logits(case, backend):
    """The logits overwritten by their own gradient: same numbers as a fresh gradient."""
    _, fn, labels, kw = case
    x = _x()
    v0, g0 = vg(fn)(x, labels, reduction="mean", **kw)
    xx = x.copy()
    v1, g1 = vg(fn)(xx, labels, reduction="mean", out=xx, **kw)
    assert g1 is xx
    # another kernel may take the in-place call: equal up to a few float32 roundings (its sums
    # in another order; seen on an Intel Xeon, not on an AMD EPYC)
    tiny = 8 * np.finfo(g0.dtype).eps
    np.testing.assert_allclose(v1, v0, rtol=tiny)
    np.testing.assert_allclose(xx, g0, rtol=tiny, atol=tiny * float(np.max(np.abs(g0))))


def test_out_logits_in_place_large_rows_match(backend):
    """Rows longer than one block (several prefetch/scratch blocks, a tie for the maximum in
    two blocks) in place, against the fresh gradient."""
    x = RNG.standard_normal((9, 1500)).astype(np.float32)
    x[2, 10] = x[2, 1400] = 9.0  # the maximum twice, in the first and the last block
    lab = RNG.integers(0, 1500, 9)
    _, g0 = vg(infoloss.sparse_softmax_cross_entropy)(x, lab)
    xx = x.copy()
    vg(infoloss.sparse_softmax_cross_entropy)(xx, lab, out=xx)
    np.testing.assert_array_equal(xx, g0)


@pytest.mark.parametrize("order", ["F", "strided"])
def test_out_of_another_layout_receives_a_copy(order, backend):
    x = _x()
    lab = RNG.integers(0, C, N)
    _, g0 = vg(infoloss.sparse_softmax_cross_entropy)(x, lab)
    if order == "F":
        buf = np.empty_like(x, order="F")
    else:
        buf = np.empty((N, 2 * C), np.float32)[:, ::2]
    _, g1 = vg(infoloss.sparse_softmax_cross_entropy)(x, lab, out=buf)
    assert g1 is buf
    np.testing.assert_array_equal(buf, g0)


def test_out_with_non_last_axis_and_float16(backend):
    x = RNG.standard_normal((4, C, 5))
    lab = RNG.integers(0, C, (4, 5))
    _, g0 = vg(infoloss.sparse_softmax_cross_entropy)(x, lab, axis=1)
    buf = np.empty_like(x)
    _, g1 = vg(infoloss.sparse_softmax_cross_entropy)(x, lab, axis=1, out=buf)
    np.testing.assert_array_equal(g1, g0)
    h = x.astype(np.float16)
    _, h0 = vg(infoloss.sparse_softmax_cross_entropy)(h, lab, axis=1)
    hb = np.empty_like(h)
    _, h1 = vg(infoloss.sparse_softmax_cross_entropy)(h, lab, axis=1, out=hb)
    assert h1 is hb and hb.dtype == np.float16
    np.testing.assert_array_equal(hb, h0)


def test_out_overlapping_labels_is_not_corrupted(backend):
    """``out`` aliasing the dense targets: the targets are read after the exponentials are
    stored, so the kernel must not write there directly; the result is still right."""
    x = _x(np.float64)
    t = RNG.random((N, C))
    t /= t.sum(axis=1, keepdims=True)
    _, g0 = vg(infoloss.softmax_cross_entropy)(x, t.copy())
    _, g1 = vg(infoloss.softmax_cross_entropy)(x, t, out=t)
    np.testing.assert_array_equal(g1, g0)


def test_out_errors_name_the_argument(backend):
    x = _x()
    lab = RNG.integers(0, C, N)
    f = vg(infoloss.sparse_softmax_cross_entropy)
    with pytest.raises(
        InfolossError, match=r"`out` must have the logits' shape \(37, 41\).*got shape \(3, 3\)"
    ):
        f(x, lab, out=np.empty((3, 3), np.float32))
    with pytest.raises(InfolossError, match=r"dtype float32; got shape .* dtype float64"):
        f(x, lab, out=np.empty((N, C)))
    with pytest.raises(InfolossTypeError, match="`out` must be a NumPy array; got list"):
        f(x, lab, out=[0.0])
    ro = np.empty_like(x)
    ro.flags.writeable = False
    with pytest.raises(InfolossError, match="writeable"):
        f(x, lab, out=ro)
    with pytest.raises(InfolossError, match="not for softmax_entropy"):
        vg(infoloss.softmax_entropy)(x, out=np.empty_like(x))


@pytest.mark.parametrize("lib", ["torch", "jax.numpy", "array_api_strict"])
def test_out_rejects_non_numpy_logits(lib):
    """Every other array library gets a clear error (``out`` is a NumPy feature)."""
    xp = pytest.importorskip(lib)
    x = xp.asarray(np.zeros((3, 4), np.float32))
    y = xp.asarray(np.array([0, 1, 2]))
    with pytest.raises(InfolossTypeError, match="`out` is supported for NumPy logits only"):
        vg(infoloss.sparse_softmax_cross_entropy)(x, y, out=np.empty((3, 4), np.float32))
