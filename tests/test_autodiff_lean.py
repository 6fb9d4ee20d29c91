"""Lean autodiff (issue 13): the torch autograd Functions of ``_frameworks/torch_lean.py`` (what
CUDA/MPS run; on CPU with the fast path off) and the ``jax.custom_vjp`` functions of
``_frameworks/jax.py``.

References: each framework's own autodiff of the textbook formula, written here in torch / jax in
float64 (``docs/semantics.md``); ``torch.autograd.gradcheck``/``gradgradcheck`` (finite
differences); and, for memory, ``F.cross_entropy``'s peak RSS and optax's XLA temporaries measured
in child processes.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _helpers import assert_close, installed

import infoloss
from infoloss import _config

N, C, IGN = 10, 6, -100
TOL = dict(rtol=1e-10, atol=1e-12, scale="all")
REDS = ["none", "sum", "mean"]


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = 3 * rng.standard_normal((N, C))
    x[1, 2] = -np.inf  # a masked class (not the target: labels below avoid it)
    y = rng.integers(0, C, N)
    y[1] = 0
    yi = y.copy()
    yi[::4] = IGN
    p = rng.dirichlet(np.ones(C), N)
    p[1, 2] = 0.0  # no target mass on the masked class
    yb = (rng.random((N, C)) > 0.5).astype(np.float64)
    cw = rng.random(C) + 0.5
    sw = rng.random(N) + 0.5
    pw = rng.random(C) * 3
    b = 2 * rng.standard_normal((N, C))
    return dict(x=x, y=y, yi=yi, p=p, yb=yb, cw=cw, sw=sw, pw=pw, b=b)


# ------------------------------------------------------------------------------------------------
# textbook formulas, written once for an ``ops`` namespace (torch or jax.numpy)
# ------------------------------------------------------------------------------------------------


def _lse(ops, x):
    if ops.__name__ == "torch":
        return ops.logsumexp(x, -1)
    import jax

    return jax.scipy.special.logsumexp(x, axis=-1)


def _reduce(ops, loss, w, red):
    if red == "none":
        return loss
    if red == "sum":
        return loss.sum()
    return loss.sum() / w.sum()


def _where0(ops, cond, v):
    return ops.where(cond, v, ops.zeros_like(v))


def text_softmax_ce(ops, x, t_raw, *, sparse, cw=None, sw=None, eps=0.0, z=0.0, red, valid=None):
    """Σ_c w_c t_c (lse − x_c) + z lse², t = (1−ε) y + ε/C; classes with no mass count 0."""
    c = x.shape[-1]
    lse = _lse(ops, x)
    t = (1 - eps) * t_raw + eps / c
    wt = t if cw is None else t * cw
    terms = _where0(ops, wt > 0, wt * (lse[..., None] - x))
    loss = terms.sum(-1) + z * lse * lse
    if sparse:
        w = ops.ones_like(lse) if cw is None else (t_raw * cw).sum(-1)
    else:
        w = ops.ones_like(lse) if cw is None else (t_raw * cw).sum(-1)
    if sw is not None:
        loss, w = loss * sw, w * sw
    if valid is not None:
        loss, w = _where0(ops, valid, loss), _where0(ops, valid, w)
    return _reduce(ops, loss, w, red)


def text_sigmoid_ce(ops, x, y, *, pw=None, sw=None, eps=0.0, red):
    yp = y * (1 - eps) + eps / 2
    a = yp if pw is None else pw * yp
    sp = (lambda v: ops.logaddexp(ops.zeros_like(v), v)) if ops.__name__ == "torch" else None
    if sp is None:
        import jax

        sp = jax.nn.softplus
    loss = a * sp(-x) + (1 - yp) * sp(x)
    w = ops.ones_like(loss)
    if sw is not None:
        loss, w = loss * sw[:, None], w * sw[:, None]
    return _reduce(ops, loss, w, red)


def text_entropy(ops, x):
    logq = x - _lse(ops, x)[..., None]
    q = ops.exp(logq)
    return -_where0(ops, q > 0, q * logq).sum(-1)


def text_kl(ops, a, b):
    lp = a - _lse(ops, a)[..., None]
    lq = b - _lse(ops, b)[..., None]
    p = ops.exp(lp)
    return _where0(ops, p > 0, p * (lp - lq)).sum(-1)


def _sparse_target(ops, y, c, valid):
    idx = ops.where(valid, y, ops.zeros_like(y)) if valid is not None else y
    return (idx[..., None] == ops.arange(c)) * 1.0


# ------------------------------------------------------------------------------------------------
# PyTorch: the lean Functions (fast path off) and the fused path (on) against autograd
# ------------------------------------------------------------------------------------------------

torch_cases = pytest.mark.skipif(not installed("torch"), reason="torch not installed")

OPTION_GRID = list(itertools.product([False, True], [False, True], [0.0, 0.1], [0.0, 0.05], REDS))


def _torch_args(d, dtype="float64"):
    import torch

    return {k: torch.tensor(v) for k, v in d.items()}


def _calls(torch, t, weighted, sampled, eps, z, red):
    """(infoloss call, textbook call) pairs of the three cross-entropies for one option set."""
    cw = t["cw"] if weighted else None
    sw = t["sw"] if sampled else None
    valid = t["yi"] != IGN
    tgt = _sparse_target(torch, t["yi"], C, valid).double()
    return [
        (
            lambda x: infoloss.sparse_softmax_cross_entropy(
                x,
                t["yi"],
                class_weights=cw,
                sample_weights=sw,
                ignore_index=IGN,
                label_smoothing=eps,
                z_loss=z,
                reduction=red,
            ),
            lambda x: text_softmax_ce(
                torch, x, tgt, sparse=True, cw=cw, sw=sw, eps=eps, z=z, red=red, valid=valid
            ),
        ),
        (
            lambda x: infoloss.softmax_cross_entropy(
                x,
                t["p"],
                class_weights=cw,
                sample_weights=sw,
                label_smoothing=eps,
                z_loss=z,
                reduction=red,
            ),
            lambda x: text_softmax_ce(
                torch, x, t["p"], sparse=False, cw=cw, sw=sw, eps=eps, z=z, red=red
            ),
        ),
        (
            lambda x: infoloss.sigmoid_cross_entropy(
                x,
                t["yb"],
                pos_weight=t["pw"] if weighted else None,
                sample_weights=None if sw is None else sw[:, None].expand(N, C),
                label_smoothing=eps,
                reduction=red,
            ),
            lambda x: text_sigmoid_ce(
                torch, x, t["yb"], pw=t["pw"] if weighted else None, sw=sw, eps=eps, red=red
            ),
        ),
    ]


def _torch_vg(fn, x, seed=5):
    import torch

    x = x.detach().clone().requires_grad_()
    v = fn(x)
    r = torch.rand(v.shape, generator=torch.Generator().manual_seed(seed), dtype=v.dtype) + 0.5
    (g,) = torch.autograd.grad(v, x, r)
    return v.detach(), g


@torch_cases
@pytest.mark.parametrize("fast", [False, True], ids=["lean", "fused"])
@pytest.mark.parametrize("weighted, sampled, eps, z, red", OPTION_GRID)
def test_torch_losses_equal_autograd_of_the_textbook(fast, weighted, sampled, eps, z, red):
    import torch

    d = _data()
    if eps > 0:  # smoothing puts mass on the masked class: +inf there; keep the masks for eps=0
        d["x"][1, 2] = 0.0
    t = _torch_args(d)
    for mine, text in _calls(torch, t, weighted, sampled, eps, z, red):
        with _config.generic_only() if not fast else _nullcontext():
            v, g = _torch_vg(mine, t["x"])
            x = t["x"].detach().clone().requires_grad_()
            if not fast:
                assert type(mine(x).grad_fn).__name__ == "_SavedGradBackward"
        v0, g0 = _torch_vg(text, t["x"])
        assert_close(v, v0, **TOL)
        assert_close(g, g0, **TOL)


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


@torch_cases
@pytest.mark.parametrize("fast", [False, True], ids=["lean", "fused"])
@pytest.mark.parametrize("keepdims, base", [(False, None), (True, 2.0)])
def test_torch_measures_equal_autograd_of_the_textbook(fast, keepdims, base):
    import torch

    d = _data()
    d["x"][1, 2] = 0.0  # the textbook's q log q has a nan derivative at q = 0
    t = _torch_args(d)
    lb = 1.0 if base is None else math.log(base)
    with _config.generic_only() if not fast else _nullcontext():
        a = t["x"].clone().requires_grad_()
        b = t["b"].clone().requires_grad_()
        h = infoloss.softmax_entropy(a, base=base, keepdims=keepdims)
        kl = infoloss.softmax_kl_divergence(a, b, base=base, keepdims=keepdims)
        r = torch.rand(h.shape, dtype=h.dtype) + 0.5
        gh = torch.autograd.grad(h, a, r)
        gk = torch.autograd.grad(kl, (a, b), r)
    a0 = t["x"].clone().requires_grad_()
    b0 = t["b"].clone().requires_grad_()
    h0 = text_entropy(torch, a0) / lb
    kl0 = text_kl(torch, a0, b0) / lb
    if keepdims:
        h0, kl0 = h0[:, None], kl0[:, None]
    assert_close(h.detach(), h0.detach(), **TOL)
    assert_close(kl.detach(), kl0.detach(), **TOL)
    assert_close(gh[0], torch.autograd.grad(h0, a0, r)[0], **TOL)
    for g, g0 in zip(gk, torch.autograd.grad(kl0, (a0, b0), r), strict=True):
        assert_close(g, g0, **TOL)


@torch_cases
@pytest.mark.parametrize("axis", [0, 1])
def test_torch_lean_class_axis_and_nd(axis):
    import torch

    rng = np.random.default_rng(3)
    x = torch.tensor(2 * rng.standard_normal((4, 5, 3)))
    y = torch.tensor(
        rng.integers(0, x.shape[axis], [s for i, s in enumerate(x.shape) if i != axis])
    )
    for fast in (False, True):
        with _config.generic_only() if not fast else _nullcontext():
            v, g = _torch_vg(
                lambda t: infoloss.sparse_softmax_cross_entropy(
                    t, y, axis=axis, label_smoothing=0.2
                ),
                x,
            )

        v0, g0 = _torch_vg(
            lambda t: text_softmax_ce(
                torch,
                t.movedim(axis, -1),
                _sparse_target(torch, y, x.shape[axis], None).double(),
                sparse=True,
                eps=0.2,
                red="none",
            ),
            x,
        )
        assert_close(v, v0, **TOL)
        assert_close(g, g0, **TOL)


@torch_cases
def test_torch_labels_and_weights_requiring_grad_fall_back_to_the_definition():
    """Soft labels, class weights and the KL's second argument that require grad: every gradient
    equals autograd of the textbook (the router sends such calls to the generic definition)."""
    import torch

    t = _torch_args(_data())
    x = t["x"].clone().requires_grad_()
    p = t["p"].clone().requires_grad_()
    cw = t["cw"].clone().requires_grad_()
    with _config.generic_only():
        v = infoloss.softmax_cross_entropy(
            x, p, class_weights=cw, label_smoothing=0.1, reduction="mean"
        )
        gs = torch.autograd.grad(v, (x, p, cw))
    x0, p0, cw0 = (u.detach().clone().requires_grad_() for u in (t["x"], t["p"], t["cw"]))
    v0 = text_softmax_ce(torch, x0, p0, sparse=False, cw=cw0, eps=0.1, red="mean")
    for g, g0 in zip(gs, torch.autograd.grad(v0, (x0, p0, cw0)), strict=True):
        assert_close(g, g0, **TOL)


@torch_cases
@pytest.mark.parametrize("red", ["none", "mean"])
def test_torch_lean_gradcheck_and_gradgradcheck(red):
    import torch

    t = _torch_args(_data())
    x = t["x"].clone()
    x[1, 2] = 0.0  # finite differences need finite logits
    x.requires_grad_()
    b = t["b"].clone().requires_grad_()
    fns = [
        lambda u: infoloss.sparse_softmax_cross_entropy(
            u,
            t["yi"],
            class_weights=t["cw"],
            ignore_index=IGN,
            label_smoothing=0.1,
            z_loss=0.05,
            reduction=red,
        ),
        lambda u: infoloss.softmax_cross_entropy(u, t["p"], label_smoothing=0.1, reduction=red),
        lambda u: infoloss.sigmoid_cross_entropy(u, t["yb"], pos_weight=t["pw"], reduction=red),
        lambda u: infoloss.softmax_entropy(u),
    ]
    with _config.generic_only():
        for fn in fns:
            assert torch.autograd.gradcheck(fn, (x,))
            assert torch.autograd.gradgradcheck(fn, (x,))
        kl = lambda u, w: infoloss.softmax_kl_divergence(u, w)  # noqa: E731
        assert torch.autograd.gradcheck(kl, (x, b))
        assert torch.autograd.gradgradcheck(kl, (x, b))


@torch_cases
def test_torch_lean_special_rows_take_the_definition():
    """nan, +inf, all −inf rows, a −inf target and ignored rows holding nan: the lean Function gives
    the generic definition's values and gradients (here: the definition under torch.func, which
    the router leaves to the generic code)."""
    import torch

    x = torch.tensor(np.random.default_rng(4).standard_normal((7, 5)))
    x[0, 1] = float("nan")
    x[1, 3] = float("inf")
    x[2] = float("-inf")
    x[3, 0] = float("-inf")  # the target of row 3
    x[4] = float("nan")  # ignored below
    x[5] = torch.tensor([50.0, -30.0, -40.0, -45.0, -60.0])  # a confident row: tiny loss
    y = torch.tensor([0, 0, 1, 0, IGN, 0, 2])
    kw = dict(ignore_index=IGN, reduction="none")
    with _config.generic_only():
        xg = x.clone().requires_grad_()
        v = infoloss.sparse_softmax_cross_entropy(xg, y, **kw)
        v.sum().backward()
        # the definition's analytic value and gradient (NumPy arrays on the generic code)
        v0, g0 = infoloss.value_and_grad(infoloss.sparse_softmax_cross_entropy)(
            x.numpy(), y.numpy(), **kw
        )
    v, g = v.detach(), xg.grad
    assert_close(v, torch.from_numpy(v0), rtol=1e-14, atol=0)
    assert_close(g, torch.from_numpy(g0), rtol=1e-12, atol=1e-300)
    assert 0 < float(v[5]) < 1e-30  # relative accuracy kept for the confident row
    assert_close(v[5], torch.tensor(np.logaddexp.reduce([0.0, -80.0, -90.0, -95.0, -110.0])))


@torch_cases
def test_torch_lean_value_and_grad_and_retained_backward():

    t = _torch_args(_data())
    x = t["x"].clone().requires_grad_()
    vg = infoloss.value_and_grad(infoloss.sparse_softmax_cross_entropy)
    with _config.generic_only():
        v, g = vg(x, t["yi"], ignore_index=IGN, label_smoothing=0.1, reduction="mean")
        loss = infoloss.sparse_softmax_cross_entropy(
            x, t["yi"], ignore_index=IGN, label_smoothing=0.1, reduction="mean"
        )
    loss.backward(retain_graph=True)
    g1 = x.grad.clone()
    loss.backward()
    assert_close(g1, g, **TOL)
    assert_close(x.grad, 2 * g, **TOL)
    v.backward()  # the value handed out by value_and_grad is differentiable as well
    assert_close(x.grad, 3 * g, **TOL)


_MEM_CHILD = textwrap.dedent(
    """
    import sys, torch, infoloss
    import torch.nn.functional as F
    from infoloss import _config
    n, c = 512, 32000
    x = torch.randn(n, c).requires_grad_()
    y = torch.randint(0, c, (n,))
    small = torch.randn(4, 7, requires_grad=True)
    with _config.generic_only():  # warm up both paths on a small case
        infoloss.sparse_softmax_cross_entropy(small, y[:4] % 7, reduction="mean").backward()
    F.cross_entropy(small, y[:4] % 7).backward()
    def hwm():  # this process's high-water mark (ru_maxrss is inherited across fork+exec)
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
    base = hwm()
    if sys.argv[1] == "torch":
        F.cross_entropy(x, y, label_smoothing=0.1).backward()
    else:
        with _config.generic_only():
            infoloss.sparse_softmax_cross_entropy(
                x, y, label_smoothing=0.1, reduction="mean"
            ).backward()
    print(hwm() - base)
    """
)


@torch_cases
def test_torch_lean_peak_memory_in_a_child_process():
    """fwd+bwd of the sparse CE (512 × 32000 float32): peak RSS above the inputs is the gradient
    (one N × C buffer, handed to ``.grad``) and no more than ``F.cross_entropy``'s."""
    peaks = {}
    for who in ("torch", "infoloss"):
        out = subprocess.run(
            [sys.executable, "-c", _MEM_CHILD, who], capture_output=True, text=True, check=True
        )
        peaks[who] = int(out.stdout.split()[-1])
    nc = 512 * 32000 * 4
    assert peaks["infoloss"] <= peaks["torch"]
    assert peaks["infoloss"] <= 1.15 * nc, peaks


# ------------------------------------------------------------------------------------------------
# JAX: the custom VJPs under jit / grad / vmap against jax.grad of the textbook
# ------------------------------------------------------------------------------------------------

jax_cases = pytest.mark.skipif(not installed("jax"), reason="jax not installed")


def _jax_calls(jnp, d, weighted, sampled, eps, z, red):
    cw = jnp.asarray(d["cw"]) if weighted else None
    sw = jnp.asarray(d["sw"]) if sampled else None
    yi = jnp.asarray(d["yi"])
    valid = yi != IGN
    tgt = _sparse_target(jnp, yi, C, valid)
    p, yb, pw = jnp.asarray(d["p"]), jnp.asarray(d["yb"]), jnp.asarray(d["pw"])
    return [
        (
            lambda x: infoloss.sparse_softmax_cross_entropy(
                x,
                yi,
                class_weights=cw,
                sample_weights=sw,
                ignore_index=IGN,
                label_smoothing=eps,
                z_loss=z,
                reduction=red,
            ),
            lambda x: text_softmax_ce(
                jnp, x, tgt, sparse=True, cw=cw, sw=sw, eps=eps, z=z, red=red, valid=valid
            ),
        ),
        (
            lambda x: infoloss.softmax_cross_entropy(
                x,
                p,
                class_weights=cw,
                sample_weights=sw,
                label_smoothing=eps,
                z_loss=z,
                reduction=red,
            ),
            lambda x: text_softmax_ce(jnp, x, p, sparse=False, cw=cw, sw=sw, eps=eps, z=z, red=red),
        ),
        (
            lambda x: infoloss.sigmoid_cross_entropy(
                x,
                yb,
                pos_weight=pw if weighted else None,
                sample_weights=None if sw is None else jnp.broadcast_to(sw[:, None], (N, C)),
                label_smoothing=eps,
                reduction=red,
            ),
            lambda x: text_sigmoid_ce(
                jnp, x, yb, pw=pw if weighted else None, sw=sw, eps=eps, red=red
            ),
        ),
        (lambda x: infoloss.softmax_entropy(x), lambda x: text_entropy(jnp, x)),
        (
            lambda x: infoloss.softmax_kl_divergence(x, 0.5 * x[::-1]),
            lambda x: text_kl(jnp, x, 0.5 * x[::-1]),
        ),
    ]


def _jax_vg(jax, fn, x, jit):
    jnp = jax.numpy
    r = jnp.asarray(np.random.default_rng(6).random(np.shape(fn(x))) + 0.5)

    def f(u):
        return jnp.sum(fn(u) * r)

    vg = jax.value_and_grad(f)
    if jit:
        vg = jax.jit(vg)
    return vg(x)


@jax_cases
@pytest.mark.filterwarnings("ignore:Explicitly requested dtype")
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize(
    "weighted, sampled, eps, z, red",
    [
        (True, True, 0.1, 0.05, "mean"),
        (False, False, 0.0, 0.0, "none"),
        (True, False, 0.1, 0.05, "sum"),
        (False, True, 0.0, 0.05, "mean"),
    ],
)
def test_jax_losses_equal_jax_grad_of_the_textbook(jit, weighted, sampled, eps, z, red):
    import jax

    jnp = jax.numpy
    d = _data()
    if eps > 0:
        d["x"][1, 2] = 0.0
    x = jnp.asarray(d["x"])
    xf = x.at[1, 2].set(0.0)  # the textbook's q log q has a nan derivative at q = 0
    for k, (mine, text) in enumerate(_jax_calls(jnp, d, weighted, sampled, eps, z, red)):
        x = x if k < 3 else xf
        assert "custom_vjp" in str(jax.make_jaxpr(mine)(x))
        v, g = _jax_vg(jax, mine, x, jit)
        v0, g0 = _jax_vg(jax, text, x, False)
        assert_close(v, v0, **TOL)
        assert_close(g, g0, **TOL)


@jax_cases
@pytest.mark.filterwarnings("ignore:Explicitly requested dtype")
def test_jax_vmap_of_grad_and_grad_of_vmap():
    import jax

    jnp = jax.numpy
    d = _data()
    x = jnp.asarray(np.stack([d["x"], d["b"]]))
    y = jnp.asarray(np.stack([d["y"], d["y"][::-1]]))

    def mine(u, v):
        return infoloss.sparse_softmax_cross_entropy(u, v, label_smoothing=0.1, reduction="mean")

    def text(u, v):
        return text_softmax_ce(
            jnp, u, _sparse_target(jnp, v, C, None), sparse=True, eps=0.1, red="mean"
        )

    for f in (mine, text):
        assert f is mine or True
    g1 = jax.jit(jax.vmap(jax.grad(mine)))(x, y)
    g0 = jax.vmap(jax.grad(text))(x, y)
    assert_close(g1, g0, **TOL)
    g2 = jax.grad(lambda u: jax.vmap(mine)(u, y).sum())(x)
    assert_close(g2, g0, **TOL)


@jax_cases
@pytest.mark.filterwarnings("ignore:Explicitly requested dtype")
def test_jax_labels_weights_and_q_logits_differentiated():
    """Soft labels, class weights and the KL's second argument under ``jax.grad``: the custom VJP
    falls back to the definition's VJP for the call, every cotangent equals the textbook's."""
    import jax

    jnp = jax.numpy
    d = _data()
    d["x"][1, 2] = 0.0  # smoothing gives the masked class mass: +inf there
    x, p, cw, b = (jnp.asarray(d[k]) for k in ("x", "p", "cw", "b"))

    def mine(x, p, cw):
        return infoloss.softmax_cross_entropy(
            x, p, class_weights=cw, label_smoothing=0.1, z_loss=0.01, reduction="mean"
        )

    def text(x, p, cw):
        return text_softmax_ce(jnp, x, p, sparse=False, cw=cw, eps=0.1, z=0.01, red="mean")

    for jit in (False, True):
        gm = jax.grad(mine, argnums=(0, 1, 2))
        gm = jax.jit(gm) if jit else gm
        for g, g0 in zip(gm(x, p, cw), jax.grad(text, argnums=(0, 1, 2))(x, p, cw), strict=True):
            assert_close(g, g0, **TOL)
    ka = jax.grad(lambda u, w: infoloss.softmax_kl_divergence(u, w).sum(), argnums=(0, 1))(x, b)
    k0 = jax.grad(lambda u, w: text_kl(jnp, u, w).sum(), argnums=(0, 1))(x, b)
    for g, g0 in zip(ka, k0, strict=True):
        assert_close(g, g0, **TOL)


_XLA_CHILD = textwrap.dedent(
    """
    import warnings, jax, jax.numpy as jnp, optax, infoloss
    warnings.simplefilter("ignore")
    n, c = 512, 32000
    x = jnp.zeros((n, c), jnp.float32)
    y = jnp.zeros((n,), jnp.int32)
    def ours(x, y):
        return infoloss.sparse_softmax_cross_entropy(x, y, label_smoothing=0.1, reduction="mean")
    def theirs(x, y):
        t = optax.smooth_labels(jax.nn.one_hot(y, c), 0.1)
        return optax.softmax_cross_entropy(x, t).mean()
    for f in (ours, theirs):
        m = jax.jit(jax.value_and_grad(f)).lower(x, y).compile().memory_analysis()
        print(m.temp_size_in_bytes)
    """
)


@jax_cases
@pytest.mark.skipif(not installed("optax"), reason="optax not installed")
def test_jax_xla_temporaries_at_most_optax_in_a_child_process():
    out = subprocess.run(
        [sys.executable, "-c", _XLA_CHILD], capture_output=True, text=True, check=True
    )
    ours, theirs = (int(v) for v in out.stdout.split())
    assert ours <= theirs + 64 * 512 * 8, (ours, theirs)  # + O(N)


# ------------------------------------------------------------------------------------------------
# linear_cross_entropy under loss.backward() on the lean torch path
# ------------------------------------------------------------------------------------------------


@torch_cases
@pytest.mark.parametrize("red", ["sum", "mean"])
@pytest.mark.parametrize("bias", [False, True])
def test_torch_lean_linear_equals_autograd_of_the_unfused_textbook(red, bias):
    import torch

    rng = np.random.default_rng(7)
    h = torch.tensor(rng.standard_normal((37, 8)), requires_grad=True)
    w = torch.tensor(rng.standard_normal((11, 8)), requires_grad=True)
    b = torch.tensor(rng.standard_normal(11), requires_grad=True) if bias else None
    y = torch.tensor(rng.integers(0, 11, 37))
    y[::5] = IGN
    cw = torch.tensor(rng.random(11) + 0.5)
    ins = (h, w) if b is None else (h, w, b)
    with _config.generic_only():
        v = infoloss.linear_cross_entropy(
            h,
            w,
            y,
            bias=b,
            class_weights=cw,
            ignore_index=IGN,
            label_smoothing=0.1,
            z_loss=0.01,
            reduction=red,
            chunk_size=8,
        )
        assert type(v.grad_fn).__name__ == "_SavedGradBackward"
        gs = torch.autograd.grad(1.7 * v, ins)
    logits = h @ w.T if b is None else h @ w.T + b
    valid = y != IGN
    v0 = text_softmax_ce(
        torch,
        logits,
        _sparse_target(torch, y, 11, valid).double(),
        sparse=True,
        cw=cw,
        eps=0.1,
        z=0.01,
        red=red,
        valid=valid,
    )
    assert_close(v.detach(), v0.detach(), **TOL)
    for g, g0 in zip(gs, torch.autograd.grad(1.7 * v0, ins), strict=True):
        assert_close(g, g0, **TOL)
    with _config.generic_only():

        def f(*t):
            return infoloss.linear_cross_entropy(
                t[0], t[1], y, bias=t[2] if bias else None, ignore_index=IGN, chunk_size=8
            )

        assert torch.autograd.gradcheck(f, ins)
        assert torch.autograd.gradgradcheck(f, ins)


_LIN_CHILD = textwrap.dedent(
    """
    import torch, infoloss
    from infoloss import _config
    n, hd, v, chunk = 1024, 64, 32000, 128
    h = torch.randn(n, hd).requires_grad_()
    w = (torch.randn(v, hd) / 8).requires_grad_()
    y = torch.randint(0, v, (n,))
    def hwm():  # this process's high-water mark (ru_maxrss is inherited across fork+exec)
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
    with _config.generic_only():
        infoloss.linear_cross_entropy(h[:4], w[:50], y[:4] % 50).backward()
        h.grad = w.grad = None
        base = hwm()
        infoloss.linear_cross_entropy(h, w, y, chunk_size=chunk).backward()
    print(hwm() - base)
    """
)


@torch_cases
def test_torch_lean_linear_peak_memory_in_a_child_process():
    """1024 × 64 → 32000, chunks of 128 rows: peak RSS above the inputs and the returned gradients
    stays below 1/8 of the unfused logits + their gradient."""
    out = subprocess.run(
        [sys.executable, "-c", _LIN_CHILD], capture_output=True, text=True, check=True
    )
    peak = int(out.stdout.split()[-1])
    grads = (1024 * 64 + 32000 * 64) * 4
    unfused = 2 * 1024 * 32000 * 4
    assert peak - grads <= unfused / 8, (peak, grads, unfused)


@jax_cases
@pytest.mark.filterwarnings("ignore:Explicitly requested dtype")
@pytest.mark.parametrize("red", ["sum", "mean"])
def test_jax_linear_custom_vjp_equals_grad_of_the_unfused_textbook(red):
    """``linear_cross_entropy`` under ``jax.jit(jax.grad)``: the scan over chunks computing the
    three gradients in the forward sweep; class weights differentiated fall back to the
    definition's VJP."""
    import jax

    jnp = jax.numpy
    rng = np.random.default_rng(8)
    h, w, b = (jnp.asarray(rng.standard_normal(s)) for s in ((37, 8), (11, 8), (11,)))
    y = rng.integers(0, 11, 37)
    y[::5] = IGN
    y = jnp.asarray(y)
    cw = jnp.asarray(rng.random(11) + 0.5)
    valid = y != IGN

    def mine(h, w, b, cw):
        return infoloss.linear_cross_entropy(
            h,
            w,
            y,
            bias=b,
            class_weights=cw,
            ignore_index=IGN,
            label_smoothing=0.1,
            z_loss=0.01,
            reduction=red,
            chunk_size=8,
        )

    def text(h, w, b, cw):
        t = _sparse_target(jnp, y, 11, valid)
        return text_softmax_ce(
            jnp, h @ w.T + b, t, sparse=True, cw=cw, eps=0.1, z=0.01, red=red, valid=valid
        )

    assert "custom_vjp" in str(jax.make_jaxpr(mine)(h, w, b, cw))
    for argnums in ((0, 1, 2), (0, 1, 2, 3)):
        v, g = jax.jit(jax.value_and_grad(mine, argnums=argnums))(h, w, b, cw)
        v0, g0 = jax.value_and_grad(text, argnums=argnums)(h, w, b, cw)
        assert_close(v, v0, **TOL)
        for a, e in zip(g, g0, strict=True):
            assert_close(a, e, **TOL)
