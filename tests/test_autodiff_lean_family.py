"""Lean autodiff for the focal and poly losses, the sigmoid focal loss and the logit divergences
with their row options: the torch autograd Functions of ``_frameworks/torch_lean_family.py`` and
the ``jax.custom_vjp`` functions of ``_frameworks/jax_family.py``.

References: each framework's own autodiff (torch autograd, ``jax.grad``) of the generic
definition in float64, called directly on the validated spec (so the router's route is not
involved), and ``torch.autograd.gradcheck``/``gradgradcheck`` (finite differences).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from _helpers import assert_close, installed

import infoloss
from infoloss._generic import focal as g_focal
from infoloss._generic import measures as g_measures
from infoloss._validate import softmax_measure_spec
from infoloss._validate_focal import sigmoid_focal_spec, softmax_focal_spec

N, C, IGN = 8, 6, -100
TOL = dict(rtol=1e-10, atol=1e-12, scale="all")
REDS = ["none", "sum", "mean"]


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = 3 * rng.standard_normal((N, C))
    x[1, 2] = -np.inf  # a masked class (no target mass below)
    x[2, 4] = 40.0  # a confident row
    y = rng.integers(0, C, N)
    y[1] = 0
    y[2] = 4
    yi = y.copy()
    yi[::3] = IGN
    yi[2] = 4
    p = rng.dirichlet(np.ones(C), N)
    p[1, 2] = 0.0
    ys = rng.random((N, C))
    ys[0, :3] = [0.0, 1.0, 0.5]
    b = 2 * rng.standard_normal((N, C))
    cw = rng.random(C) + 0.5
    sw = rng.random(N) + 0.5
    mask = np.ones(N, bool)
    mask[3] = False
    return dict(x=x, y=y, yi=yi, p=p, ys=ys, b=b, cw=cw, sw=sw, mask=mask)


def _cases(T, d, weighted, red, param):
    """(public call of the logits, definition of the logits) pairs for one option set; ``T``
    converts the NumPy data to the framework's arrays."""
    cw = T(d["cw"]) if weighted else None
    sw = T(d["sw"]) if weighted else None
    yi, p, ys, b, mask = T(d["yi"]), T(d["p"]), T(d["ys"]), T(d["b"]), T(d["mask"])
    sparse = dict(ignore_index=IGN, class_weights=cw, sample_weights=sw, reduction=red)
    dense = dict(class_weights=cw, sample_weights=sw, reduction=red)
    sig = dict(sample_weights=None if sw is None else sw[:, None] * T(np.ones((1, C))))
    div = dict(temperature=2.0, scale_by_temperature_squared=True, reduction=red)
    if weighted:
        div.update(sample_weights=sw, mask=mask)
    out = []
    for kind, sparse_labels, labels, kw in (
        ("focal", True, yi, sparse),
        ("focal", False, p, dense),
        ("poly", True, yi, sparse),
        ("poly", False, p, dense),
    ):
        name = ("sparse_" if sparse_labels else "") + (
            "softmax_focal_loss" if kind == "focal" else "poly_cross_entropy"
        )
        opt = {"gamma": param} if kind == "focal" else {"epsilon": param}
        fn = getattr(infoloss, name)
        out.append((name, _focal_pair(fn, kind, sparse_labels, labels, {**kw, **opt})))
    skw = dict(sig, alpha=0.25 if weighted else None, gamma=param, reduction=red)
    out.append(("sigmoid_focal_loss", _sigmoid_pair(ys, skw)))
    for op, extra in (("js", {"beta": 0.3}), ("kl", {})):
        out.append((f"softmax_{op}_divergence", _div_pair(op, b, {**div, **extra})))
    return out


def _focal_pair(fn, kind, sparse, labels, kw):
    def mine(u):
        return fn(u, labels, **kw)

    def definition(u):
        spec = softmax_focal_spec(u, labels, kind=kind, sparse=sparse, **kw)
        return g_focal.softmax_focal(spec, False)[0]

    return mine, definition


def _sigmoid_pair(ys, kw):
    def mine(u):
        return infoloss.sigmoid_focal_loss(u, ys, **kw)

    def definition(u):
        return g_focal.sigmoid_focal(sigmoid_focal_spec(u, ys, **kw), False)[0]

    return mine, definition


def _div_pair(op, b, kw):
    fn = getattr(infoloss, f"softmax_{op}_divergence")

    def mine(u, v=b):
        return fn(u, v, **kw)

    def definition(u, v=b):
        spec = softmax_measure_spec(u, v, op=op, **kw)
        return g_measures.softmax_measure(spec, False)[0]

    return mine, definition


GRID = list(itertools.product([False, True], REDS, [0.5, 2.0]))

# ------------------------------------------------------------------------------------------------
# PyTorch
# ------------------------------------------------------------------------------------------------

torch_cases = pytest.mark.skipif(not installed("torch"), reason="torch not installed")


def _torch_vg(fn, x, *more, seed=5):
    import torch

    ins = [t.detach().clone().requires_grad_() for t in (x, *more)]
    v = fn(*ins)
    r = torch.rand(v.shape, generator=torch.Generator().manual_seed(seed), dtype=v.dtype) + 0.5
    return v.detach(), torch.autograd.grad(v, ins, r), v


@torch_cases
@pytest.mark.parametrize("weighted, red, param", GRID)
def test_torch_family_equals_autograd_of_the_definition(weighted, red, param):
    import torch

    d = _data()

    def T(a):
        return torch.tensor(a)

    x = T(d["x"])
    for name, (mine, definition) in _cases(T, d, weighted, red, param):
        v, g, out = _torch_vg(mine, x)
        assert type(out.grad_fn).__name__ == "_SavedGradBackward", name
        v0, g0, _ = _torch_vg(definition, x)
        assert_close(v, v0, **TOL, err_msg=name)
        assert_close(g[0], g0[0], **TOL, err_msg=name)
    # both logits of a divergence requiring grad
    for op in ("js", "kl"):
        kw = dict(temperature=1.5, reduction=red)
        if weighted:
            kw.update(sample_weights=T(d["sw"]), mask=T(d["mask"]))
        mine, definition = _div_pair(op, None, kw)
        v, g, out = _torch_vg(mine, x, T(d["b"]))
        assert type(out.grad_fn).__name__ == "_SavedGradBackward"
        v0, g0, _ = _torch_vg(definition, x, T(d["b"]))
        assert_close(v, v0, **TOL)
        for a, e in zip(g, g0, strict=True):
            assert_close(a, e, **TOL)


@torch_cases
@pytest.mark.parametrize("red", ["none", "mean"])
def test_torch_family_gradcheck_and_gradgradcheck(red):
    import torch

    d = _data()
    d["x"][1, 2] = 0.0  # finite differences need finite logits

    def T(a):
        return torch.tensor(a)

    x = T(d["x"]).requires_grad_()
    for name, (mine, _) in _cases(T, d, True, red, 2.0):
        assert torch.autograd.gradcheck(mine, (x,)), name
        assert torch.autograd.gradgradcheck(mine, (x,)), name
    b = T(d["b"]).requires_grad_()
    js = lambda u, w: infoloss.softmax_js_divergence(u, w, beta=0.3, reduction=red)  # noqa: E731
    assert torch.autograd.gradcheck(js, (x, b))
    assert torch.autograd.gradgradcheck(js, (x, b))


@torch_cases
def test_torch_family_value_and_grad_retained_backward_and_fallbacks():
    import torch

    d = _data()
    x = torch.tensor(d["x"]).requires_grad_()
    p = torch.tensor(d["p"])
    v, g = infoloss.value_and_grad(infoloss.softmax_focal_loss)(x, p, reduction="mean")
    loss = infoloss.softmax_focal_loss(x, p, reduction="mean")
    assert_close(v, loss.detach(), rtol=0, atol=0)
    loss.backward(retain_graph=True)
    g1 = x.grad.clone()
    loss.backward()
    assert_close(g1, g, **TOL)
    assert_close(x.grad, 2 * g, **TOL)
    # labels requiring grad: the definition under autograd (every gradient)
    pg = p.clone().requires_grad_()
    out = infoloss.softmax_focal_loss(x, pg, reduction="sum")
    assert type(out.grad_fn).__name__ != "_SavedGradBackward"
    gx, gp = torch.autograd.grad(out, (x, pg))
    spec = softmax_focal_spec(x, pg, kind="focal", sparse=False, reduction="sum")
    e = g_focal.softmax_focal(dataclasses.replace(spec), False)[0]
    ex, ep = torch.autograd.grad(e, (x, pg))
    assert_close(gx, ex, **TOL)
    assert_close(gp, ep, **TOL)
    # float32 logits: value and gradient in float32
    x32 = x.detach().float().requires_grad_()
    out = infoloss.sparse_softmax_focal_loss(x32, torch.tensor(d["y"]), reduction="mean")
    out.backward()
    assert out.dtype == x32.grad.dtype == torch.float32


# ------------------------------------------------------------------------------------------------
# JAX
# ------------------------------------------------------------------------------------------------

jax_cases = pytest.mark.skipif(not installed("jax"), reason="jax not installed")


@jax_cases
@pytest.mark.filterwarnings("ignore:Explicitly requested dtype")
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("weighted, red, param", GRID[::2])
def test_jax_family_equals_jax_grad_of_the_definition(jit, weighted, red, param):
    import jax

    jnp = jax.numpy
    d = _data()
    x = jnp.asarray(d["x"])
    r = jnp.asarray(np.random.default_rng(6).random((N, C)) + 0.5)
    for name, (mine, definition) in _cases(jnp.asarray, d, weighted, red, param):
        assert "custom_vjp" in str(jax.make_jaxpr(mine)(x)), name

        def scalar(fn):
            def f(u):
                v = fn(u)
                return jnp.sum(v * r[: v.shape[0], : v.shape[1]] if v.ndim == 2 else v * r[0, 0])

            return f

        vg = jax.value_and_grad(scalar(mine))
        vg = jax.jit(vg) if jit else vg
        v, g = vg(x)
        v0, g0 = jax.value_and_grad(scalar(definition))(x)
        assert_close(v, v0, **TOL, err_msg=name)
        assert_close(g, g0, **TOL, err_msg=name)


@jax_cases
@pytest.mark.filterwarnings("ignore:Explicitly requested dtype")
def test_jax_family_vmap_of_grad_and_weights_differentiated():
    import jax

    jnp = jax.numpy
    d = _data()
    xs = jnp.asarray(np.stack([d["x"], d["b"]]))
    p = jnp.asarray(d["p"])
    yi = jnp.asarray(d["yi"])
    for mine, definition in (
        _focal_pair(infoloss.softmax_focal_loss, "focal", False, p, {"reduction": "mean"}),
        _focal_pair(
            infoloss.sparse_softmax_focal_loss,
            "focal",
            True,
            yi,
            {"ignore_index": IGN, "reduction": "sum"},
        ),
        _div_pair("js", jnp.asarray(d["b"]), {"reduction": "mean", "mask": jnp.asarray(d["mask"])}),
    ):
        g1 = jax.jit(jax.vmap(jax.grad(mine)))(xs)
        g0 = jax.vmap(jax.grad(definition))(xs)
        assert_close(g1, g0, **TOL)
        g2 = jax.grad(lambda u, mine=mine: jax.vmap(mine)(u).sum())(xs)
        assert_close(g2, g0, **TOL)
    # the divergence's sample weights and the focal loss's labels differentiated: every
    # cotangent is the definition's
    x, b, sw = jnp.asarray(d["x"]), jnp.asarray(d["b"]), jnp.asarray(d["sw"])
    x = x.at[1, 2].set(0.0)

    def js(u, v, w):
        return infoloss.softmax_js_divergence(u, v, sample_weights=w, reduction="sum")

    def js0(u, v, w):
        spec = softmax_measure_spec(u, v, op="js", sample_weights=w, reduction="sum")
        return g_measures.softmax_measure(spec, False)[0]

    for a, e in zip(
        jax.grad(js, argnums=(0, 1, 2))(x, b, sw),
        jax.grad(js0, argnums=(0, 1, 2))(x, b, sw),
        strict=True,
    ):
        assert_close(a, e, **TOL)

    def fl(u, t):
        return infoloss.softmax_focal_loss(u, t, reduction="mean")

    def fl0(u, t):
        spec = softmax_focal_spec(u, t, kind="focal", sparse=False, reduction="mean")
        return g_focal.softmax_focal(spec, False)[0]

    for a, e in zip(
        jax.grad(fl, argnums=(0, 1))(x, p), jax.grad(fl0, argnums=(0, 1))(x, p), strict=True
    ):
        assert_close(a, e, **TOL)


@torch_cases
@pytest.mark.parametrize("kind", ["focal", "poly"])
def test_torch_lean_sparse_special_rows_equal_the_definition(kind):
    """nan, +inf and all −inf rows, a −inf target, an ignored nan row and a target with
    1 − q_y = e^-2000 (the other logits' log-sum-exp): the lean sparse path gives the
    definition's values and gradients."""
    import torch

    x = torch.tensor(np.random.default_rng(4).standard_normal((8, 5)))
    x[0, 1] = float("nan")
    x[1, 3] = float("inf")
    x[2] = float("-inf")
    x[3, 0] = float("-inf")  # the target of row 3
    x[4] = float("nan")  # ignored below
    x[5] = torch.tensor([2000.0, 0.0, -1.0, 3.0, -2.0])  # 1 − q_0 = e^-1997
    x[6] = torch.tensor([50.0, -30.0, -40.0, -45.0, -60.0])
    y = torch.tensor([0, 0, 1, 0, IGN, 0, 0, 2])
    fn = (
        infoloss.sparse_softmax_focal_loss
        if kind == "focal"
        else infoloss.sparse_poly_cross_entropy
    )
    for red in REDS:
        kw = dict(ignore_index=IGN, reduction=red, class_weights=torch.linspace(0.5, 1.5, 5))
        mine, _ = _focal_pair(fn, kind, True, y, kw)
        v, g, out = _torch_vg(mine, x)
        assert type(out.grad_fn).__name__ == "_SavedGradBackward"
        # the definition's analytic value and gradient (autograd of its formula is nan at the
        # −inf target, where the analytic gradient is finite)
        spec = softmax_focal_spec(x, y, kind=kind, sparse=True, **kw)
        v0, g0 = g_focal.softmax_focal(spec, True)
        r = torch.rand(v.shape, generator=torch.Generator().manual_seed(5), dtype=v.dtype) + 0.5
        assert_close(v, v0, rtol=1e-13, atol=0, scale="all")
        assert_close(g[0], g0 * (r[:, None] if r.ndim else r), rtol=1e-12, atol=1e-300)


_MEM_CHILD = """
import sys, torch, infoloss
from infoloss import _router
n, c = 512, 32000
x = torch.randn(n, c).requires_grad_()
y = torch.randint(0, c, (n,))
if sys.argv[1] == "definition":  # autograd through the generic definition (the old route)
    _router.lean_torch = lambda *a: False
small = torch.randn(4, 7, requires_grad=True)
infoloss.sparse_softmax_focal_loss(small, y[:4] % 7, reduction="mean").backward()
def hwm():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
base = hwm()
infoloss.sparse_softmax_focal_loss(x, y, gamma=2.0, reduction="mean").backward()
print(hwm() - base)
"""


@torch_cases
def test_torch_lean_sparse_focal_peak_memory_in_a_child_process():
    """fwd+bwd of the sparse focal loss (512 × 32000 float32): the peak RSS above the inputs is
    the gradient (one N × C buffer), against several for autograd through the definition."""
    import subprocess
    import sys

    peaks = {}
    for who in ("lean", "definition"):
        out = subprocess.run(
            [sys.executable, "-c", _MEM_CHILD, who], capture_output=True, text=True, check=True
        )
        peaks[who] = int(out.stdout.split()[-1])
    nc = 512 * 32000 * 4
    assert peaks["lean"] <= 1.25 * nc, peaks
    assert peaks["definition"] >= 3 * peaks["lean"], peaks
