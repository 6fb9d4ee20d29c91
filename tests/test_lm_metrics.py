"""Evaluation measures of language models (issue 16): perplexity, bits per byte and the
streaming ``CrossEntropyMeter``.

References: float64 textbook formulas (SciPy's log-softmax), PyTorch's
``exp(F.cross_entropy(ignore_index=...))``, float64 finite differences and the libraries' own
autodiff; properties with hypothesis (uniform logits give C, a meter fed in pieces equals one
fed the whole).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.special as sp
from _helpers import assert_close, expect, finite_difference, to_numpy
from hypothesis import given, settings
from hypothesis import strategies as st

import infoloss as il
from infoloss import InfolossError, InfolossTypeError, value_and_grad
from infoloss.metrics import CrossEntropyMeter

RNG = np.random.default_rng(1616)
N, C = 12, 9
X = RNG.normal(size=(N, C)) * 3.0
Y = RNG.integers(0, C, size=N)
Y[[2, 7]] = -100
S = RNG.uniform(0.5, 2.0, size=N)
NB = RNG.integers(1, 6, size=N).astype(np.float64)


def ref_token_ce(x, y):
    lq = sp.log_softmax(x, axis=-1)
    safe = np.where(y < 0, 0, y)
    return np.where(y < 0, 0.0, -np.take_along_axis(lq, safe[:, None], axis=-1)[:, 0])


def ref_ppl(x, y, s=None):
    s = np.ones(len(y)) if s is None else s
    w = np.where(y >= 0, s, 0.0)
    return math.exp(np.sum(w * ref_token_ce(x, y)) / np.sum(w))


def ref_bpb(x, y, nb, s=None):
    s = np.ones(len(y)) if s is None else s
    w = np.where(y >= 0, s, 0.0)
    return np.sum(w * ref_token_ce(x, y)) / (math.log(2) * np.sum(w * nb))


# --------------------------------------------------------------------------- perplexity


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("weighted", [False, True])
def test_perplexity_vs_textbook(backend, dtype, weighted):
    x, y = backend.asarray(X, dtype), backend.asarray(Y, "int64")
    s = backend.asarray(S, dtype) if weighted else None
    got = il.perplexity(x, y, ignore_index=-100, sample_weights=s)
    assert_close(got, expect(backend, ref_ppl(X, Y, S if weighted else None), like=x))


def test_perplexity_matches_torch_cross_entropy():
    torch = pytest.importorskip("torch")
    tx, ty = torch.tensor(X), torch.tensor(Y)
    want = torch.exp(torch.nn.functional.cross_entropy(tx, ty, ignore_index=-100))
    got = il.perplexity(tx, ty, ignore_index=-100)
    assert_close(got, want)


def test_perplexity_axis(backend):
    x = backend.asarray(np.moveaxis(X.reshape(3, 4, C), -1, 1), "float64")
    y = backend.asarray(Y.reshape(3, 4), "int64")
    got = il.perplexity(x, y, ignore_index=-100, axis=1)
    assert_close(got, expect(backend, ref_ppl(X, Y)))


def test_perplexity_gradient(backend):
    x, y = backend.asarray(X, "float64"), backend.asarray(Y, "int64")
    s = backend.asarray(S, "float64")
    value, grad = value_and_grad(il.perplexity)(x, y, ignore_index=-100, sample_weights=s)
    assert_close(value, expect(backend, ref_ppl(X, Y, S)))
    # exp(mean CE) of about 200: the differences of f carry ~1e-12 of rounding, hence h = 1e-4
    fd = finite_difference(lambda z: ref_ppl(z, Y, S), X, h=1e-4)
    assert_close(grad, expect(backend, fd), rtol=1e-5, atol=1e-7, scale="all")
    # exactly PPL times the gradient of the weighted mean cross-entropy
    ce, g_ce = value_and_grad(il.sparse_softmax_cross_entropy)(
        x, y, ignore_index=-100, sample_weights=s, reduction="mean"
    )
    assert_close(grad, g_ce * expect(backend, math.exp(float(ce))))
    assert np.all(to_numpy(grad)[[2, 7]] == 0)


@pytest.mark.variants("torch-fast", "torch-generic", "jax", reason="the library's autodiff")
def test_perplexity_autodiff(backend):
    y = backend.asarray(Y, "int64")
    _, want = value_and_grad(il.perplexity)(backend.asarray(X, "float64"), y, ignore_index=-100)
    if backend.name == "torch":
        import torch

        x = torch.tensor(X, requires_grad=True)
        il.perplexity(x, y, ignore_index=-100).backward()
        got = x.grad
    else:
        import jax

        got = jax.grad(lambda z: il.perplexity(z, y, ignore_index=-100))(backend.asarray(X))
    assert_close(got, want)


def test_perplexity_edges(backend):
    y = backend.asarray(np.full(4, -100), "int64")
    assert float(il.perplexity(backend.asarray(X[:4], "float64"), y, ignore_index=-100)) == 1.0
    # a masked vocabulary entry that is never the label is harmless
    x = X.copy()
    x[:, 0] = -np.inf
    y2 = np.where(Y == 0, 1, Y)
    got = il.perplexity(
        backend.asarray(x, "float64"), backend.asarray(y2, "int64"), ignore_index=-100
    )
    assert_close(got, expect(backend, ref_ppl(x, y2)))


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 64),
    st.integers(1, 40),
    st.floats(-1e4, 1e4, allow_nan=False),
    st.data(),
)
def test_perplexity_of_uniform_logits_is_c(c, n, level, data):
    labels = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    for dtype in (np.float64, np.float32):
        logits = np.full((n, c), level, dtype=dtype)
        got = float(il.perplexity(logits, labels))
        assert got == pytest.approx(c, rel=1e-12 if dtype == np.float64 else 1e-5)


# --------------------------------------------------------------------------- bits per byte


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_bits_per_byte_vs_textbook(backend, dtype):
    x, y = backend.asarray(X, dtype), backend.asarray(Y, "int64")
    nb = backend.asarray(NB, "int64")
    got = il.bits_per_byte(x, y, nb, ignore_index=-100)
    assert_close(got, expect(backend, ref_bpb(X, Y, NB), like=x))
    s = backend.asarray(S, dtype)
    got = il.bits_per_byte(x, y, nb, ignore_index=-100, sample_weights=s)
    assert_close(got, expect(backend, ref_bpb(X, Y, NB, S), like=x))


def test_bits_per_byte_gradient(backend):
    x, y = backend.asarray(X, "float64"), backend.asarray(Y, "int64")
    nb = backend.asarray(NB, "float64")
    value, grad = value_and_grad(il.bits_per_byte)(x, y, nb, ignore_index=-100)
    assert_close(value, expect(backend, ref_bpb(X, Y, NB)))
    fd = finite_difference(lambda z: ref_bpb(z, Y, NB), X)
    assert_close(grad, expect(backend, fd), rtol=1e-6, atol=1e-8)


def test_bits_per_byte_relations(backend):
    """One byte per token: bits per byte = bits per token = log2(perplexity); no bytes: 0."""
    x, y = backend.asarray(X, "float64"), backend.asarray(Y, "int64")
    bpb = il.bits_per_byte(x, y, 1, ignore_index=-100)
    ppl = il.perplexity(x, y, ignore_index=-100)
    assert float(bpb) == pytest.approx(math.log2(float(ppl)), rel=1e-12)
    assert float(il.bits_per_byte(x, y, 0, ignore_index=-100)) == 0.0


@pytest.mark.parametrize(
    "args, kwargs, err, match",
    [
        ((X, Y.astype(float), NB), {}, InfolossTypeError, "`labels` must hold integer class"),
        ((X, Y, -NB), {"ignore_index": -100}, InfolossError, "`num_bytes` must hold non-negative"),
        ((X, Y, NB[:3]), {"ignore_index": -100}, InfolossError, "`num_bytes` must broadcast to"),
        ((X, Y, None), {"ignore_index": -100}, InfolossTypeError, "`num_bytes` must be an array"),
        ((X, Y, NB), {}, InfolossError, r"`labels` must hold class indices in \[0, 9\)"),
    ],
)
def test_bits_per_byte_errors(args, kwargs, err, match):
    with pytest.raises(err, match=match):
        il.bits_per_byte(*args, **kwargs)


def test_perplexity_errors():
    with pytest.raises(InfolossError, match=r"`labels` must hold class indices in \[0, 9\)"):
        il.perplexity(X, Y)
    with pytest.raises(InfolossError, match="`sample_weights` must broadcast"):
        il.perplexity(X, Y, ignore_index=-100, sample_weights=np.ones(5))


# --------------------------------------------------------------------------- the meter


def test_meter_reports(backend):
    x, y = backend.asarray(X, "float64"), backend.asarray(Y, "int64")
    s, nb = backend.asarray(S, "float64"), backend.asarray(NB, "float64")
    m = CrossEntropyMeter().update(x, y, num_bytes=nb, ignore_index=-100, sample_weights=s)
    w = np.where(Y >= 0, S, 0.0)
    loss = np.sum(w * ref_token_ce(X, Y))
    assert m.tokens == N - 2
    assert m.loss_sum == pytest.approx(loss, rel=1e-12)
    assert m.weight == pytest.approx(w.sum(), rel=1e-12)
    assert m.num_bytes == pytest.approx(np.sum(w * NB), rel=1e-12)
    assert m.mean_loss == pytest.approx(loss / w.sum(), rel=1e-12)
    assert m.perplexity == pytest.approx(ref_ppl(X, Y, S), rel=1e-12)
    assert m.bits_per_token == pytest.approx(loss / w.sum() / math.log(2), rel=1e-12)
    assert m.bits_per_byte == pytest.approx(ref_bpb(X, Y, NB, S), rel=1e-12)
    assert float(il.perplexity(x, y, ignore_index=-100, sample_weights=s)) == pytest.approx(
        m.perplexity, rel=1e-12
    )


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, N), min_size=0, max_size=4), st.booleans())
def test_meter_merge_equals_one_big_batch(cuts, weighted):
    edges = [0, *sorted(cuts), N]
    s = S if weighted else None
    whole = CrossEntropyMeter().update(X, Y, num_bytes=NB, ignore_index=-100, sample_weights=s)
    merged = CrossEntropyMeter()
    states = []
    for lo, hi in itertools.pairwise(edges):
        part = CrossEntropyMeter().update(
            X[lo:hi],
            Y[lo:hi],
            num_bytes=NB[lo:hi],
            ignore_index=-100,
            sample_weights=None if s is None else s[lo:hi],
        )
        states.append(part.state())
        merged.merge(part)
    reduced = CrossEntropyMeter.from_state(np.sum(states, axis=0))  # what an all-reduce gives
    for m in (merged, reduced):
        assert m.tokens == whole.tokens
        np.testing.assert_allclose(m.state(), whole.state(), rtol=1e-12, atol=1e-12)
        assert m.perplexity == pytest.approx(whole.perplexity, rel=1e-12)
        assert m.bits_per_byte == pytest.approx(whole.bits_per_byte, rel=1e-12)


def test_meter_state_through_torch_and_add():
    torch = pytest.importorskip("torch")
    m = CrossEntropyMeter().update(
        torch.tensor(X, requires_grad=True),
        torch.tensor(Y),
        ignore_index=-100,
        num_bytes=torch.tensor(NB),
    )
    t = torch.as_tensor(m.state())
    back = CrossEntropyMeter.from_state(t + t)  # two ranks with the same shard
    assert back.tokens == 2 * m.tokens
    assert back.perplexity == pytest.approx(m.perplexity, rel=1e-12)
    other = CrossEntropyMeter().add(m.loss_sum, m.weight, num_bytes=m.num_bytes, tokens=m.tokens)
    np.testing.assert_array_equal(other.state(), m.state())
    assert "tokens=10" in repr(m)
    m.reset()
    assert m.tokens == 0 and m.perplexity == 1.0 and m.bits_per_byte == 0.0


def test_meter_errors():
    m = CrossEntropyMeter()
    with pytest.raises(InfolossError, match="`state` must have shape"):
        CrossEntropyMeter.from_state(np.zeros(3))
    with pytest.raises(InfolossError, match="`other` must be a CrossEntropyMeter"):
        m.merge(np.zeros(4))
    with pytest.raises(InfolossError, match="`loss_sum` must be a finite non-negative"):
        m.add(-1.0, 1.0)
    with pytest.raises(InfolossError, match="`tokens` must be a non-negative integer"):
        m.add(1.0, 1.0, tokens=1.5)
    with pytest.raises(InfolossError, match=r"`labels` must hold class indices"):
        m.update(X, Y)
