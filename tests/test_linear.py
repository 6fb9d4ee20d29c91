"""linear_cross_entropy: equal to the unfused computation, for values and all three gradients.

Tests without an explicit fast/generic parameter run on both variants of their library (the
``backend`` fixture, ``ON_NUMPY`` / ``ON_TORCH``).
"""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest
from _helpers import ON_NUMPY, ON_TORCH

import infoloss
import infoloss.torch
from infoloss import _config, linear_cross_entropy, value_and_grad

torch = pytest.importorskip("torch")
F = torch.nn.functional

N, H, V = 23, 6, 37  # V deliberately prime
RNG = np.random.default_rng(42)
HID = RNG.normal(size=(N, H))
W = RNG.normal(size=(V, H)) / np.sqrt(H)
B = RNG.normal(size=V)
Y = RNG.integers(0, V, N)
Y_IGN = Y.copy()
Y_IGN[[0, 5, 6, 7, 8, 9, 10, 22]] = -100  # rows 5..10 fill whole chunks of 3
CW = RNG.uniform(0.2, 2.0, V)

vg = value_and_grad(linear_cross_entropy)


def torch_reference(h, w, y, *, bias, class_weights, ignore_index, eps, z, reduction):
    """PyTorch autograd of F.linear + infoloss' generic sparse CE (for z-loss) or F.cross_entropy."""
    ht = torch.tensor(h, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = None if bias is None else torch.tensor(bias, requires_grad=True)
    logits = F.linear(ht, wt, bt)
    yt = torch.tensor(y)
    if z == 0:
        loss = F.cross_entropy(
            logits,
            yt,
            weight=None if class_weights is None else torch.tensor(class_weights),
            ignore_index=-100 if ignore_index is None else ignore_index,
            label_smoothing=eps,
            reduction=reduction,
        )
        if (
            reduction == "mean"
            and class_weights is None
            and ignore_index is not None
            and bool((yt == ignore_index).all())
        ):
            loss = loss.nan_to_num()
    else:
        loss = infoloss.sparse_softmax_cross_entropy(
            logits,
            yt,
            class_weights=None if class_weights is None else torch.tensor(class_weights),
            ignore_index=ignore_index,
            label_smoothing=eps,
            z_loss=z,
            reduction=reduction,
        )
    params = [ht, wt] + ([] if bt is None else [bt])
    grads = torch.autograd.grad(loss.sum(), params)
    gb = None if bt is None else grads[2].numpy()
    return loss.detach().numpy(), grads[0].numpy(), grads[1].numpy(), gb


GRID = list(
    itertools.product(
        ["none", "sum", "mean"],  # reduction
        [None, 1, 3, 7, 64],  # chunk_size (3 and 7 do not divide 23; 64 > N)
        [False, True],  # bias
        [False, True],  # class weights
        [False, True],  # ignore_index
        [(0.0, 0.0), (0.1, 1e-3)],  # (label_smoothing, z_loss)
    )
)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "generic"])
@pytest.mark.parametrize(("reduction", "chunk", "bias", "cw", "ign", "opts"), GRID)
def test_matches_torch_autograd(fast, reduction, chunk, bias, cw, ign, opts):
    eps, z = opts
    kw = dict(
        bias=B if bias else None,
        class_weights=CW if cw else None,
        ignore_index=-100 if ign else None,
        label_smoothing=eps,
        z_loss=z,
        reduction=reduction,
    )
    y = Y_IGN if ign else Y
    ref = torch_reference(
        HID,
        W,
        y,
        bias=kw["bias"],
        class_weights=kw["class_weights"],
        ignore_index=kw["ignore_index"],
        eps=eps,
        z=z,
        reduction=reduction,
    )
    if fast:
        value, (dh, dw, db) = vg(HID, W, y, chunk_size=chunk, **kw)
    else:
        with _config.generic_only():
            value, (dh, dw, db) = vg(HID, W, y, chunk_size=chunk, **kw)
    np.testing.assert_allclose(value, ref[0], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dh, ref[1], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(dw, ref[2], rtol=1e-10, atol=1e-13)
    if bias:
        np.testing.assert_allclose(db, ref[3], rtol=1e-10, atol=1e-13)
    else:
        assert db is None
    assert isinstance(value, np.ndarray) and value.shape == ((N,) if reduction == "none" else ())
    # the value alone equals the value of value_and_grad
    np.testing.assert_allclose(
        linear_cross_entropy(HID, W, y, chunk_size=chunk, **kw), value, rtol=1e-13
    )


@ON_NUMPY
def test_equals_unfused_infoloss_float32(backend):
    h, w = HID.astype(np.float32), W.astype(np.float32)
    logits = h @ w.T
    ref, g = value_and_grad(infoloss.sparse_softmax_cross_entropy)(logits, Y, reduction="mean")
    value, (dh, dw, _) = vg(h, w, Y, chunk_size=5)
    assert value.dtype == np.float32 and dh.dtype == np.float32 and dw.dtype == np.float32
    np.testing.assert_allclose(value, ref, rtol=2e-6)
    np.testing.assert_allclose(dh, g @ w, rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(dw, g.T @ h, rtol=2e-5, atol=1e-7)


@ON_NUMPY
def test_all_ignored_mean_is_zero_with_zero_gradients(backend):
    y = np.full(N, -100)
    value, (dh, dw, db) = vg(HID, W, y, bias=B, ignore_index=-100, chunk_size=4)
    assert float(value) == 0.0
    assert not dh.any() and not dw.any() and not db.any()


@ON_NUMPY
def test_batched_hidden_and_labels(backend):
    h3 = HID[:20].reshape(4, 5, H)
    y2 = Y[:20].reshape(4, 5)
    value, (dh, dw, _) = vg(h3, W, y2, reduction="none", chunk_size=6)
    ref, (dh2, dw2, _) = vg(HID[:20], W, Y[:20], reduction="none")
    assert value.shape == (4, 5) and dh.shape == (4, 5, H)
    np.testing.assert_allclose(value.reshape(-1), ref, rtol=1e-13)
    np.testing.assert_allclose(dh.reshape(20, H), dh2, rtol=1e-12)
    np.testing.assert_allclose(dw, dw2, rtol=1e-12)


@ON_NUMPY
def test_float16_accumulates_in_float32(backend):
    h16, w16 = HID.astype(np.float16), W.astype(np.float16)
    value, (dh, dw, _) = vg(h16, w16, Y)
    assert value.dtype == np.float16 and dh.dtype == np.float16 and dw.dtype == np.float16
    h32, w32 = h16.astype(np.float32), w16.astype(np.float32)
    ref, (_, rdw, _) = vg(h32, w32, Y)
    np.testing.assert_allclose(value.astype(np.float32), ref, rtol=2e-3)
    np.testing.assert_allclose(dw.astype(np.float32), rdw, rtol=5e-3, atol=1e-4)


@pytest.mark.parametrize("fast", [True, False], ids=["fused", "generic"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_autograd(fast, reduction, dtype):
    """CPU tensors: the fused path under autograd ("none" and generic: differentiable code)."""
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=2e-5, atol=1e-6)
    dt = getattr(torch, dtype)
    kw = dict(label_smoothing=0.1, z_loss=1e-3, ignore_index=-100, class_weights=torch.tensor(CW))
    ht = torch.tensor(HID, dtype=dt, requires_grad=True)
    wt = torch.tensor(W, dtype=dt, requires_grad=True)
    bt = torch.tensor(B, dtype=dt, requires_grad=True)
    yt = torch.tensor(Y_IGN)
    if fast:
        assert infoloss.torch.uses_fast_path(ht)
        loss = linear_cross_entropy(ht, wt, yt, bias=bt, reduction=reduction, chunk_size=4, **kw)
    else:
        with _config.generic_only():
            loss = linear_cross_entropy(
                ht, wt, yt, bias=bt, reduction=reduction, chunk_size=4, **kw
            )
    assert isinstance(loss, torch.Tensor) and loss.dtype == dt
    (3.0 * loss.sum()).backward()
    h2 = HID.astype(dtype)
    w2 = W.astype(dtype)
    ref, (dh, dw, db) = vg(
        h2, w2, Y_IGN, bias=B.astype(dtype), reduction=reduction, **kw | {"class_weights": CW}
    )
    np.testing.assert_allclose(loss.detach().numpy(), ref, **tol)
    np.testing.assert_allclose(ht.grad.numpy(), 3 * dh, **tol)
    np.testing.assert_allclose(wt.grad.numpy(), 3 * dw, **tol)
    np.testing.assert_allclose(bt.grad.numpy(), 3 * db, **tol)


@ON_TORCH
def test_torch_value_and_grad_returns_tensors(backend):
    ht, wt = torch.tensor(HID), torch.tensor(W)
    value, (dh, dw, db) = vg(ht, wt, torch.tensor(Y))
    assert all(isinstance(t, torch.Tensor) for t in (value, dh, dw)) and db is None
    _, (rdh, rdw, _) = vg(HID, W, Y)
    np.testing.assert_allclose(dh.numpy(), rdh, rtol=1e-12)
    np.testing.assert_allclose(dw.numpy(), rdw, rtol=1e-12)


def test_torch_fused_double_backward_raises_clearly():
    ht = torch.tensor(HID, requires_grad=True)
    wt = torch.tensor(W, requires_grad=True)
    loss = linear_cross_entropy(ht, wt, torch.tensor(Y))
    (gh,) = torch.autograd.grad(loss, ht, create_graph=True)
    with pytest.raises(RuntimeError, match=r"once_differentiable|does not require grad"):
        gh.sum().backward()


def test_jax_grad_matches():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy

    def f(h, w):
        return linear_cross_entropy(h, w, jnp.asarray(Y), z_loss=1e-2, chunk_size=8)

    gh, gw = jax.grad(f, argnums=(0, 1))(jnp.asarray(HID), jnp.asarray(W))
    _, (dh, dw, _) = vg(HID, W, Y, z_loss=1e-2)
    np.testing.assert_allclose(np.asarray(gh), dh, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(gw), dw, rtol=1e-10)


@ON_NUMPY
def test_memory_stays_within_one_chunk(backend):
    n, h, v, chunk = 1024, 32, 4096, 128
    rng = np.random.default_rng(0)
    hid = rng.standard_normal((n, h), dtype=np.float32)
    w = rng.standard_normal((v, h), dtype=np.float32)
    y = rng.integers(0, v, n)
    vg(hid, w, y, chunk_size=chunk)  # compile and load every kernel outside the measurement

    def peak(fn):
        tracemalloc.start()
        fn()
        _, p = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return p

    def unfused():
        logits = hid @ w.T
        _, g = value_and_grad(infoloss.sparse_softmax_cross_entropy)(logits, y, reduction="mean")
        return g @ w, g.T @ hid

    fused_peak = peak(lambda: vg(hid, w, y, chunk_size=chunk))
    unfused_peak = peak(unfused)
    logits_and_grad = 2 * n * v * 4
    outputs = (n * h + v * h) * 4
    assert unfused_peak >= logits_and_grad
    block = chunk * v * 4
    if backend.fast:
        # one chunk buffer (turned into the chunk's gradient in place), the outputs, small change
        assert fused_peak <= block + outputs + 2**20, (fused_peak, unfused_peak)
        assert fused_peak <= logits_and_grad / 8
    else:
        # the generic code has no in-place update: a few chunk-sized temporaries (~6.8 blocks
        # measured, growing with the chunk, not with N), never the whole logits
        assert fused_peak <= 8 * block + outputs + 2**20, (fused_peak / block, unfused_peak)
        assert fused_peak <= unfused_peak / 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(weight=np.zeros((V, H + 1))), "`hidden` must have shape"),
        (dict(weight=np.zeros(V)), "`weight` must have shape"),
        (dict(labels=Y[:-1]), "`labels` must have shape"),
        (dict(labels=Y.astype(float)), "`labels` must hold integer"),
        (dict(labels=np.full(N, V)), r"`labels` must hold class indices in \[0, 37\)"),
        (dict(bias=np.zeros(V + 1)), "`bias` must have shape"),
        (dict(chunk_size=0), "`chunk_size` must be a positive integer"),
        (dict(class_weights=np.ones(3)), "`class_weights` must have shape"),
        (dict(reduction="avg"), "`reduction` must be one of"),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(hidden=HID, weight=W, labels=Y) | kwargs
    with pytest.raises(infoloss.InfolossError, match=match):
        linear_cross_entropy(args.pop("hidden"), args.pop("weight"), args.pop("labels"), **args)
