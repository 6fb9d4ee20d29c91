"""Logit soft-capping (Gemma 2), per-token weights on linear_cross_entropy and ``return_aux``
(issue 16): against float64 textbook formulas, torch autograd and the backends' autodiff."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sp
from _helpers import ON_NUMPY, as_float64, assert_close, expect, installed, one_hot

import infoloss
from infoloss import (
    CrossEntropyAux,
    linear_cross_entropy,
    sigmoid_cross_entropy,
    softmax_cross_entropy,
    sparse_softmax_cross_entropy,
    value_and_grad,
)

RNG = np.random.default_rng(1616)
C = 6
X = RNG.normal(size=(2, 4, C)) * 20  # large enough for the cap to matter
LABELS = np.array([[0, 5, 2, 3], [1, 1, 4, 0]])
SOFT = RNG.random((2, 4, C))
SOFT /= SOFT.sum(-1, keepdims=True)
SIG_Y = (RNG.random((2, 4, C)) < 0.4) * 1.0
SW = np.array([[1.0, 0.5, 2.0, 0.0], [1.5, 3.0, 1.0, 0.25]])
CAP = 15.0

H = RNG.normal(size=(3, 5, 8))
W = RNG.normal(size=(C, 8)) * 3
BIAS = RNG.normal(size=C)
LIN_Y = np.array([[0, 1, 2, 3, 4], [5, -100, 1, 2, 0], [3, 3, -100, 1, 5]])
LIN_SW = RNG.random((3, 5)) * 2


def ref_cap(x, c=CAP):
    return c * np.tanh(np.asarray(x, np.float64) / c)


def ref_ce(x, y, sw=None, z=0.0, ignore=None):
    """Sparse CE (+ z-loss) per example, float64: the textbook formula on given logits."""
    x = np.asarray(x, np.float64)
    lse = sp.logsumexp(x, axis=-1)
    valid = np.ones(y.shape, bool) if ignore is None else (y != ignore)
    safe = np.where(valid, y, 0)
    loss = lse - np.take_along_axis(x, safe[..., None], -1)[..., 0] + z * lse**2
    if sw is not None:
        loss = loss * sw
    return np.where(valid, loss, 0.0)


def _reduce(loss, w, reduction):
    return {"none": loss, "sum": loss.sum(), "mean": loss.sum() / w.sum()}[reduction]


# ------------------------------------------------------------------------------------------------
# softcap on the three cross-entropies
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_softcap_values(backend, reduction):
    x = backend.asarray(X)
    xc = ref_cap(X)
    got = sparse_softmax_cross_entropy(
        x,
        backend.asarray(LABELS),
        softcap=CAP,
        sample_weights=backend.asarray(SW),
        reduction=reduction,
    )
    assert_close(got, expect(backend, _reduce(ref_ce(xc, LABELS, SW), SW, reduction)))
    got = softmax_cross_entropy(x, backend.asarray(SOFT), softcap=CAP, reduction=reduction)
    ref = -np.sum(SOFT * sp.log_softmax(xc, -1), -1)
    assert_close(got, expect(backend, _reduce(ref, np.ones(ref.shape), reduction)))
    got = sigmoid_cross_entropy(x, backend.asarray(SIG_Y), softcap=CAP, reduction=reduction)
    ref = np.logaddexp(0, xc) - SIG_Y * xc
    assert_close(got, expect(backend, _reduce(ref, np.ones(ref.shape), reduction)))


@pytest.mark.skipif(not installed("torch"), reason="torch not installed")
@pytest.mark.parametrize("axis", [-1, 1])
def test_softcap_gradients_match_torch_autograd(backend, axis):
    import torch

    def grad_of(f, x):
        t = torch.tensor(x, requires_grad=True)
        f(t).sum().backward()
        return t.grad.numpy()

    def capped(t):
        return CAP * torch.tanh(t / CAP)

    xm = np.moveaxis(X, -1, axis)
    soft = np.moveaxis(SOFT, -1, axis)
    x = backend.asarray(xm)
    _, g = value_and_grad(sparse_softmax_cross_entropy)(
        x, backend.asarray(LABELS), softcap=CAP, z_loss=1e-3, axis=axis
    )
    ref = grad_of(
        lambda t: (
            torch.nn.functional.cross_entropy(capped(t), torch.tensor(LABELS), reduction="none")
            + 1e-3 * torch.logsumexp(capped(t), 1) ** 2
        ),
        np.moveaxis(X, -1, 1),
    )
    assert_close(g, expect(backend, np.moveaxis(ref, 1, axis)), scale="all")
    _, g = value_and_grad(softmax_cross_entropy)(x, backend.asarray(soft), softcap=CAP, axis=axis)
    ref = grad_of(
        lambda t: -(torch.tensor(soft) * torch.log_softmax(capped(t), axis)).sum(axis), xm
    )
    assert_close(g, expect(backend, ref), scale="all")
    sig_y = np.moveaxis(SIG_Y, -1, axis)
    _, g = value_and_grad(sigmoid_cross_entropy)(x, backend.asarray(sig_y), softcap=CAP)
    ref = grad_of(
        lambda t: torch.nn.functional.binary_cross_entropy_with_logits(
            capped(t), torch.tensor(sig_y), reduction="none"
        ),
        xm,
    )
    assert_close(g, expect(backend, ref), scale="all")


def test_softcap_autodiff_agrees(backend):
    if not backend.autodiff:
        pytest.skip("autodiff backends only")
    x, y = backend.asarray(X), backend.asarray(LABELS)
    _, g = value_and_grad(sparse_softmax_cross_entropy)(x, y, softcap=CAP, reduction="mean")
    if backend.name == "torch":
        t = x.clone().requires_grad_(True)
        sparse_softmax_cross_entropy(t, y, softcap=CAP, reduction="mean").backward()
        ref = t.grad
    else:
        import jax

        ref = jax.grad(lambda u: sparse_softmax_cross_entropy(u, y, softcap=CAP, reduction="mean"))(
            x
        )
    assert_close(g, ref, rtol=1e-9, atol=1e-12)


@ON_NUMPY
def test_softcap_finite_differences(backend):
    for fn, y in (
        (sparse_softmax_cross_entropy, LABELS),
        (softmax_cross_entropy, SOFT),
        (sigmoid_cross_entropy, SIG_Y),
    ):
        _, g = value_and_grad(fn)(X, y, softcap=CAP, reduction="sum")
        fd = np.zeros_like(X)
        for i in np.ndindex(X.shape):
            e = np.zeros_like(X)
            e[i] = 1e-6
            fd[i] = (
                float(fn(X + e, y, softcap=CAP, reduction="sum"))
                - float(fn(X - e, y, softcap=CAP, reduction="sum"))
            ) / 2e-6
        assert_close(g, fd, rtol=1e-6, atol=1e-7, err_msg=fn.__name__)


def test_softcap_keeps_masked_classes_and_is_finite(backend):
    x = np.array([[1e4, -np.inf, 0.0, -1e4], [-np.inf, 3.0, 1e30, 2.0]])
    xb = backend.asarray(x, "float32")
    v, g = value_and_grad(sparse_softmax_cross_entropy)(
        xb, backend.asarray(np.array([0, 2])), softcap=30.0
    )
    ref = ref_ce(np.where(np.isinf(x), x, ref_cap(x, 30.0)), np.array([0, 2]))
    assert_close(v, expect(backend, ref, like=xb))
    g = as_float64(g)
    assert np.isfinite(g).all() and g[0, 1] == 0 and g[1, 0] == 0


def test_softcap_out_buffer_in_place():
    x = X.reshape(-1, C).copy()
    y = LABELS.reshape(-1)
    _, ref = value_and_grad(sparse_softmax_cross_entropy)(x, y, softcap=CAP)
    buf = x.copy()
    _, g = value_and_grad(sparse_softmax_cross_entropy)(buf, y, softcap=CAP, out=buf)
    assert g is buf
    np.testing.assert_allclose(buf, ref, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan"), "3", True])
def test_softcap_errors(bad):
    for fn, y in (
        (sparse_softmax_cross_entropy, LABELS),
        (softmax_cross_entropy, SOFT),
        (sigmoid_cross_entropy, SIG_Y),
    ):
        with pytest.raises(infoloss.InfolossError, match="`softcap`"):
            fn(X, y, softcap=bad)
    with pytest.raises(infoloss.InfolossError, match="`softcap`"):
        linear_cross_entropy(H, W, np.abs(LIN_Y) % C, softcap=bad)


# ------------------------------------------------------------------------------------------------
# return_aux
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("cap", [None, CAP])
def test_return_aux_softmax(backend, reduction, cap):
    labels = np.where(LABELS == 5, -100, LABELS)
    valid = labels != -100
    z = 1e-3
    xc = X if cap is None else ref_cap(X)
    x = backend.asarray(X)
    out = sparse_softmax_cross_entropy(
        x,
        backend.asarray(labels),
        ignore_index=-100,
        sample_weights=backend.asarray(SW),
        z_loss=z,
        softcap=cap,
        reduction=reduction,
        return_aux=True,
    )
    assert isinstance(out, CrossEntropyAux)
    lse = sp.logsumexp(xc, -1)
    w = np.where(valid, SW, 0.0)
    assert_close(out.loss, expect(backend, _reduce(ref_ce(xc, labels, SW, z, -100), w, reduction)))
    assert_close(
        out.z_loss, expect(backend, _reduce(np.where(valid, z * lse**2 * SW, 0), w, reduction))
    )
    assert_close(out.lse, expect(backend, np.where(valid, lse, 0.0)))
    plain = sparse_softmax_cross_entropy(
        x,
        backend.asarray(labels),
        ignore_index=-100,
        sample_weights=backend.asarray(SW),
        softcap=cap,
        reduction=reduction,
    )
    assert_close(as_float64(out.loss) - as_float64(out.z_loss), as_float64(plain), check_type=False)
    dense = softmax_cross_entropy(
        x, backend.asarray(SOFT), z_loss=z, softcap=cap, reduction=reduction, return_aux=True
    )
    ones = np.ones(lse.shape)
    assert_close(dense.z_loss, expect(backend, _reduce(z * lse**2, ones, reduction)))
    assert_close(dense.lse, expect(backend, lse))


def test_return_aux_with_value_and_grad():
    v, g = value_and_grad(sparse_softmax_cross_entropy)(X, LABELS, z_loss=1e-2, return_aux=True)
    _, g0 = value_and_grad(sparse_softmax_cross_entropy)(X, LABELS, z_loss=1e-2)
    assert isinstance(v, CrossEntropyAux)
    np.testing.assert_array_equal(g, g0)
    with pytest.raises(infoloss.InfolossError, match="`return_aux`"):
        sparse_softmax_cross_entropy(X, LABELS, return_aux="yes")


# ------------------------------------------------------------------------------------------------
# linear_cross_entropy: sample_weights, softcap, return_aux
# ------------------------------------------------------------------------------------------------


def _lin_ref(reduction, cap=None, z=0.0, sw=LIN_SW, bias=True):
    logits = H @ W.T + (BIAS if bias else 0.0)
    if cap is not None:
        logits = ref_cap(logits, cap)
    valid = LIN_Y != -100
    loss = ref_ce(logits, LIN_Y, sw, z, -100)
    w = np.where(valid, 1.0 if sw is None else sw, 0.0)
    lse = np.where(valid, sp.logsumexp(logits, -1), 0.0)
    return _reduce(loss, w, reduction), lse, w


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("cap", [None, 10.0])
def test_linear_sample_weights_softcap_aux(backend, reduction, cap):
    h, w, b = backend.asarray(H), backend.asarray(W), backend.asarray(BIAS)
    y, sw = backend.asarray(LIN_Y), backend.asarray(LIN_SW)
    z = 1e-3
    out = linear_cross_entropy(
        h,
        w,
        y,
        bias=b,
        ignore_index=-100,
        sample_weights=sw,
        softcap=cap,
        z_loss=z,
        reduction=reduction,
        chunk_size=4,
        return_aux=True,
    )
    ref, lse, wts = _lin_ref(reduction, cap, z)
    assert_close(out.loss, expect(backend, ref))
    assert_close(out.lse, expect(backend, lse))
    zt = np.where(LIN_Y != -100, z * lse**2 * LIN_SW, 0.0)
    assert_close(out.z_loss, expect(backend, _reduce(zt, wts, reduction)))


@pytest.mark.skipif(not installed("torch"), reason="torch not installed")
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("cap", [None, 10.0])
def test_linear_gradients_match_torch_autograd(backend, reduction, cap):
    import torch

    ht, wt, bt = (torch.tensor(a, requires_grad=True) for a in (H, W, BIAS))
    logits = ht @ wt.T + bt
    if cap is not None:
        logits = cap * torch.tanh(logits / cap)
    per = torch.nn.functional.cross_entropy(
        logits.reshape(-1, C), torch.tensor(LIN_Y.reshape(-1)), ignore_index=-100, reduction="none"
    ) * torch.tensor(LIN_SW.reshape(-1))
    valid = torch.tensor((LIN_Y != -100).reshape(-1))
    total = (
        per.sum()
        if reduction == "sum"
        else per.sum() / (torch.tensor(LIN_SW.reshape(-1)) * valid).sum()
    )
    total.backward()
    args = [backend.asarray(a) for a in (H, W, LIN_Y)]
    _, (dh, dw, db) = value_and_grad(linear_cross_entropy)(
        *args,
        bias=backend.asarray(BIAS),
        ignore_index=-100,
        sample_weights=backend.asarray(LIN_SW),
        softcap=cap,
        reduction=reduction,
        chunk_size=4,
    )
    assert_close(dh, expect(backend, ht.grad.numpy()), scale="all")
    assert_close(dw, expect(backend, wt.grad.numpy()), scale="all")
    assert_close(db, expect(backend, bt.grad.numpy()), scale="all")


@pytest.mark.skipif(not installed("torch"), reason="torch not installed")
def test_linear_torch_autograd_with_sample_weights(backend):
    if backend.name != "torch":
        pytest.skip("torch tensors")
    import torch

    h = torch.tensor(H, requires_grad=True)
    w = torch.tensor(W, requires_grad=True)
    y, sw = torch.tensor(LIN_Y), torch.tensor(LIN_SW)
    out = linear_cross_entropy(
        h, w, y, ignore_index=-100, sample_weights=sw, softcap=10.0, return_aux=True
    )
    out.loss.backward()
    _, (dh, dw, _) = value_and_grad(linear_cross_entropy)(
        h.detach(), w.detach(), y, ignore_index=-100, sample_weights=sw, softcap=10.0
    )
    assert_close(h.grad, dh, rtol=1e-9, atol=1e-12)
    assert_close(w.grad, dw, rtol=1e-9, atol=1e-12)
    ref, lse, _ = _lin_ref("mean", 10.0, bias=False)
    assert_close(out.loss, expect(backend, ref))
    assert_close(out.lse, expect(backend, lse))


def test_linear_sample_weights_errors():
    with pytest.raises(infoloss.InfolossError, match="`sample_weights`"):
        linear_cross_entropy(H, W, np.abs(LIN_Y) % C, sample_weights=np.ones(4))
    with pytest.raises(infoloss.InfolossError, match="`sample_weights`"):
        linear_cross_entropy(H, W, np.abs(LIN_Y) % C, sample_weights=-LIN_SW)
    with pytest.raises(infoloss.InfolossError, match="`return_aux`"):
        linear_cross_entropy(H, W, np.abs(LIN_Y) % C, return_aux=1)


def test_dense_one_hot_equals_sparse_with_softcap(backend):
    x = backend.asarray(X)
    a = sparse_softmax_cross_entropy(x, backend.asarray(LABELS), softcap=CAP)
    b = softmax_cross_entropy(x, backend.asarray(one_hot(LABELS, C)), softcap=CAP)
    assert_close(a, b)
