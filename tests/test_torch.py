"""infoloss on PyTorch tensors (issue 6): the fused kernels under autograd, and the drop-in modules.

References: PyTorch's own ``F.cross_entropy`` / ``F.binary_cross_entropy_with_logits`` (values and
autograd gradients) and infoloss's generic array-API path (``_config.generic_only()``), which the
fast path must match to rtol 2e-6 (float32) / 1e-12 (float64). Tests without such a comparison of
their own run on both torch variants of the ``backend`` fixture (``ON_TORCH``: the fused kernels
under autograd, and the generic code CUDA users run).
"""

from __future__ import annotations

import contextlib
import itertools

import numpy as np
import pytest
from _helpers import ON_TORCH, assert_close

torch = pytest.importorskip("torch")
F = torch.nn.functional

import infoloss  # noqa: E402
from infoloss import _config  # noqa: E402
from infoloss.torch import BCEWithLogitsLoss, CrossEntropyLoss, uses_fast_path  # noqa: E402

FAST = uses_fast_path(torch.zeros(1, 2))
needs_fast = pytest.mark.skipif(not FAST, reason="numba kernels unavailable or fast path disabled")
# assert_close(..., scale="all"): the absolute part of a tolerance scales with max|expected|
# (entries of a gradient that cancel, e.g. (p y + 1 - y) σ(x) - p y, keep only absolute accuracy)
TOL = {
    torch.float32: dict(rtol=2e-6, atol=2e-7, scale="all"),
    torch.float64: dict(rtol=1e-12, atol=1e-14, scale="all"),
}
TORCH_TOL = {
    torch.float32: dict(rtol=2e-5, atol=2e-6, scale="all"),
    torch.float64: dict(rtol=1e-10, atol=1e-12, scale="all"),
}
N, C = 12, 7
IGN = -100


def _logits(dtype, layout="contiguous", shape=(N, C), seed=0):
    g = torch.Generator().manual_seed(seed)
    if layout == "contiguous":
        x = 3 * torch.randn(*shape, generator=g, dtype=dtype)
    else:  # the transpose of a contiguous (C, N) tensor: classes are strided
        x = (3 * torch.randn(*shape[::-1], generator=g, dtype=dtype)).T
        assert not x.is_contiguous()
    return x.requires_grad_()


def _labels(ignore=False, n=N, c=C, seed=1):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=g)
    if ignore:
        y[::4] = IGN
    return y


def _probs(dtype, shape=(N, C), seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(*shape, generator=g, dtype=dtype), dim=-1)


def _grad_out(value, seed=3):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(value.shape, generator=g, dtype=value.dtype) + 0.5


def value_and_autograd(fn, x, seed=3):
    """``fn(x)`` and d(<fn(x), r>)/dx for a random positive ``r`` (checks per-example scaling)."""
    x.grad = None
    v = fn(x)
    v.backward(_grad_out(v, seed))
    g = x.grad.clone()
    x.grad = None
    return v.detach(), g


def generic(fn, x):
    with _config.generic_only():
        return value_and_autograd(fn, x)


# ------------------------------------------------------------------------------------------------
# dispatch
# ------------------------------------------------------------------------------------------------


@needs_fast
def test_uses_fast_path_predicate():
    x = torch.zeros(3, 4)
    assert uses_fast_path(x) and uses_fast_path(x.double()) and uses_fast_path(x.half())
    assert uses_fast_path(x.bfloat16()) and uses_fast_path(x.T)  # non-contiguous too
    assert uses_fast_path(torch.nn.Parameter(x), torch.zeros(3, dtype=torch.int64))
    assert not uses_fast_path(x.int())
    assert not uses_fast_path(torch.zeros(3, 4, device="meta"))  # other devices: generic
    assert not uses_fast_path(x, torch.zeros(3, 4, requires_grad=True))  # soft labels need grad
    assert not uses_fast_path(x, np.zeros(3))  # mixed libraries: generic path reports it
    with _config.generic_only():
        assert not uses_fast_path(x)


@needs_fast
def test_fast_path_is_taken(monkeypatch):
    import infoloss._frameworks.torch as it

    calls = []
    real = it._FusedLoss.apply
    monkeypatch.setattr(it._FusedLoss, "apply", lambda *a: calls.append(1) or real(*a))
    x = _logits(torch.float32)
    infoloss.sparse_softmax_cross_entropy(x, _labels())
    infoloss.softmax_cross_entropy(x, _probs(torch.float32))
    infoloss.sigmoid_cross_entropy(x, torch.rand(N, C))
    assert len(calls) == 3


def test_functorch_transforms_use_the_generic_path():
    x = _logits(torch.float64).detach()
    y = _labels()
    g = torch.func.grad(lambda t: infoloss.sparse_softmax_cross_entropy(t, y, reduction="sum"))(x)
    ref = torch.func.grad(lambda t: F.cross_entropy(t, y, reduction="sum"))(x)
    assert_close(g, ref, **TORCH_TOL[torch.float64])


# ------------------------------------------------------------------------------------------------
# the option grid against F.cross_entropy and the generic path
# ------------------------------------------------------------------------------------------------

GRID = list(
    itertools.product(
        [torch.float32, torch.float64],
        ["contiguous", "strided"],
        [False, True],
        [False, True],
        [0.0, 0.1],
        ["none", "sum", "mean"],
    )
)


@pytest.mark.parametrize("dtype,layout,weighted,ignore,eps,red", GRID)
def test_sparse_grid(dtype, layout, weighted, ignore, eps, red):
    x = _logits(dtype, layout)
    y = _labels(ignore)
    w = torch.rand(C, dtype=dtype) + 0.5 if weighted else None

    def ours(t):
        return infoloss.sparse_softmax_cross_entropy(
            t,
            y,
            class_weights=w,
            ignore_index=IGN if ignore else None,
            label_smoothing=eps,
            reduction=red,
        )

    def theirs(t):
        return F.cross_entropy(t, y, weight=w, ignore_index=IGN, label_smoothing=eps, reduction=red)

    v, g = value_and_autograd(ours, x)
    vt, gt = value_and_autograd(theirs, x)
    assert_close(v, vt, **TORCH_TOL[dtype])
    assert_close(g, gt, **TORCH_TOL[dtype])
    vg, gg = generic(ours, x)
    assert_close(v, vg, **TOL[dtype])
    assert_close(g, gg, **TOL[dtype])


@pytest.mark.parametrize("dtype,layout,weighted,ignore,eps,red", GRID[::3])
@ON_TORCH
def test_cross_entropy_module_matches_torch(backend, dtype, layout, weighted, ignore, eps, red):
    x = _logits(dtype, layout)
    y = _labels(ignore)
    w = torch.rand(C, dtype=dtype) + 0.5 if weighted else None
    kw = dict(weight=w, ignore_index=IGN, label_smoothing=eps, reduction=red)
    ours, theirs = CrossEntropyLoss(**kw), torch.nn.CrossEntropyLoss(**kw)
    v, g = value_and_autograd(lambda t: ours(t, y), x)
    vt, gt = value_and_autograd(lambda t: theirs(t, y), x)
    assert_close(v, vt, **TORCH_TOL[dtype])
    assert_close(g, gt, **TORCH_TOL[dtype])


@pytest.mark.parametrize(
    "dtype,layout,weighted,eps,red",
    sorted({(d, lay, w, e, r) for d, lay, w, _, e, r in GRID}, key=str),
)
def test_dense_grid(dtype, layout, weighted, eps, red):
    x = _logits(dtype, layout)
    p = _probs(dtype)
    w = torch.rand(C, dtype=dtype) + 0.5 if weighted else None
    kw = dict(weight=w, label_smoothing=eps, reduction=red)
    # the module mirrors PyTorch, also its weighted soft-label mean (divided by N)
    v, g = value_and_autograd(lambda t: CrossEntropyLoss(**kw)(t, p), x)
    vt, gt = value_and_autograd(lambda t: F.cross_entropy(t, p, **kw), x)
    assert_close(v, vt, **TORCH_TOL[dtype])
    assert_close(g, gt, **TORCH_TOL[dtype])

    def ours(t):
        return infoloss.softmax_cross_entropy(
            t, p, class_weights=w, label_smoothing=eps, z_loss=0.01, reduction=red
        )

    v, g = value_and_autograd(ours, x)
    vg, gg = generic(ours, x)
    assert_close(v, vg, **TOL[dtype])
    assert_close(g, gg, **TOL[dtype])


@ON_TORCH
def test_dense_one_hot_equals_sparse_under_autograd(backend):
    x = _logits(torch.float64)
    y = _labels(ignore=False)
    w = torch.rand(C, dtype=torch.float64) + 0.5
    oh = F.one_hot(y, C).double()
    a = value_and_autograd(
        lambda t: infoloss.softmax_cross_entropy(
            t, oh, class_weights=w, label_smoothing=0.1, reduction="mean"
        ),
        x,
    )
    b = value_and_autograd(
        lambda t: infoloss.sparse_softmax_cross_entropy(
            t, y, class_weights=w, label_smoothing=0.1, reduction="mean"
        ),
        x,
    )
    assert_close(a[0], b[0], **TOL[torch.float64])
    assert_close(a[1], b[1], **TOL[torch.float64])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("target", ["sparse", "dense"])
@ON_TORCH
def test_nd_input_class_axis_1(backend, dtype, target):
    x = _logits(dtype, shape=(4, C, 3, 2))
    if target == "sparse":
        y = torch.randint(0, C, (4, 3, 2), generator=torch.Generator().manual_seed(5))
        y[0, 0, 0] = IGN
    else:
        y = torch.softmax(torch.randn(4, C, 3, 2, dtype=dtype), dim=1)
    w = torch.rand(C, dtype=dtype) + 0.5
    for red in ("none", "mean"):
        kw = dict(weight=w, label_smoothing=0.05, reduction=red)
        v, g = value_and_autograd(lambda t, kw=kw: CrossEntropyLoss(**kw)(t, y), x)
        vt, gt = value_and_autograd(lambda t, kw=kw: torch.nn.CrossEntropyLoss(**kw)(t, y), x)
        assert_close(v, vt, **TORCH_TOL[dtype])
        assert_close(g, gt, **TORCH_TOL[dtype])


@ON_TORCH
def test_1d_input(backend):
    x = _logits(torch.float64, shape=(C,))
    y = torch.tensor(3)
    v, g = value_and_autograd(lambda t: CrossEntropyLoss()(t, y), x)
    vt, gt = value_and_autograd(lambda t: F.cross_entropy(t, y), x)
    assert_close(v, vt, **TORCH_TOL[torch.float64])
    assert_close(g, gt, **TORCH_TOL[torch.float64])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_z_loss_matches_generic(dtype):
    x = _logits(dtype, "strided")
    y = _labels(ignore=True)
    for red in ("none", "mean"):

        def fn(t, red=red):
            return CrossEntropyLoss(z_loss=1e-2, label_smoothing=0.1, reduction=red)(t, y)

        a, b = value_and_autograd(fn, x), generic(fn, x)
        assert_close(a[0], b[0], **TOL[dtype])
        assert_close(a[1], b[1], **TOL[dtype])


# ------------------------------------------------------------------------------------------------
# sigmoid
# ------------------------------------------------------------------------------------------------

BCE_GRID = list(
    itertools.product(
        [torch.float32, torch.float64],
        ["contiguous", "strided"],
        [None, "class", "example"],
        [False, True],
        ["none", "sum", "mean"],
    )
)


@pytest.mark.parametrize("dtype,layout,weight,pos,red", BCE_GRID)
def test_bce_grid(dtype, layout, weight, pos, red):
    x = _logits(dtype, layout)
    y = (torch.rand(N, C, generator=torch.Generator().manual_seed(4)) > 0.6).to(dtype)
    w = {
        None: None,
        "class": torch.rand(C, dtype=dtype) + 0.5,
        "example": torch.rand(N, 1, dtype=dtype) + 0.5,
    }[weight]
    pw = torch.rand(C, dtype=dtype) * 3 if pos else None
    kw = dict(weight=w, pos_weight=pw, reduction=red)
    v, g = value_and_autograd(lambda t: BCEWithLogitsLoss(**kw)(t, y), x)
    vt, gt = value_and_autograd(lambda t: F.binary_cross_entropy_with_logits(t, y, **kw), x)
    assert_close(v, vt, **TORCH_TOL[dtype])
    assert_close(g, gt, **TORCH_TOL[dtype])

    def ours(t):
        return infoloss.sigmoid_cross_entropy(
            t, y, pos_weight=pw, sample_weights=w, label_smoothing=0.1, reduction=red
        )

    a, b = value_and_autograd(ours, x), generic(ours, x)
    assert_close(a[0], b[0], **TOL[dtype])
    assert_close(a[1], b[1], **TOL[dtype])


@ON_TORCH
def test_bce_label_smoothing_is_smoothed_targets(backend):
    x = _logits(torch.float64)
    y = (torch.rand(N, C) > 0.5).double()
    v, g = value_and_autograd(lambda t: BCEWithLogitsLoss(label_smoothing=0.2)(t, y), x)
    vt, gt = value_and_autograd(lambda t: F.binary_cross_entropy_with_logits(t, y * 0.8 + 0.1), x)
    assert_close(v, vt, **TORCH_TOL[torch.float64])
    assert_close(g, gt, **TORCH_TOL[torch.float64])


# ------------------------------------------------------------------------------------------------
# autograd behaviour
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("red", ["none", "mean"])
@ON_TORCH
def test_no_grad_and_no_requires_grad(backend, red, monkeypatch):
    import infoloss._frameworks.torch as it

    wants = []
    real = it._Compute.__call__
    monkeypatch.setattr(
        it._Compute, "__call__", lambda self, x, want: wants.append(want) or real(self, x, want)
    )
    x = _logits(torch.float32)
    y = _labels()
    ref = F.cross_entropy(x.detach(), y, reduction=red)
    with torch.no_grad():
        v = infoloss.sparse_softmax_cross_entropy(x, y, reduction=red)
    assert v.grad_fn is None and not v.requires_grad
    assert_close(v, ref, **TORCH_TOL[torch.float32])
    v = infoloss.sparse_softmax_cross_entropy(x.detach(), y, reduction=red)
    assert not v.requires_grad
    with torch.inference_mode():
        assert_close(
            infoloss.sparse_softmax_cross_entropy(x, y, reduction=red),
            ref,
            **TORCH_TOL[torch.float32],
        )
    if backend.fast:
        assert wants == [False, False, False]  # no gradient work when none is needed
        infoloss.sparse_softmax_cross_entropy(x, y, reduction=red)
        assert wants[-1] is True


@ON_TORCH
def test_backward_through_a_model_and_nonleaf(backend):
    torch.manual_seed(0)
    lin = torch.nn.Linear(5, C).double()
    h = torch.randn(N, 5, dtype=torch.float64)
    y = _labels(ignore=True)
    loss = CrossEntropyLoss(label_smoothing=0.1)(lin(h), y) * 3.0
    loss.backward()
    g = lin.weight.grad.clone()
    lin.zero_grad()
    (torch.nn.CrossEntropyLoss(label_smoothing=0.1)(lin(h), y) * 3.0).backward()
    assert_close(g, lin.weight.grad, **TORCH_TOL[torch.float64])


@ON_TORCH
def test_retain_graph_second_backward_accumulates(backend):
    x = _logits(torch.float64)
    y = _labels()
    loss = infoloss.sparse_softmax_cross_entropy(x, y, reduction="mean")
    loss.backward(retain_graph=True)
    g1 = x.grad.clone()
    loss.backward()
    assert_close(x.grad, 2 * g1, **TOL[torch.float64])
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        loss.backward()  # the graph was not retained this time: PyTorch's usual error


@ON_TORCH
def test_in_place_change_after_forward_is_detected(backend):
    x = _logits(torch.float64).detach().clone().requires_grad_()
    h = x * 1.0
    loss = infoloss.sparse_softmax_cross_entropy(h, _labels(), reduction="sum")
    with torch.no_grad():
        h.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


@pytest.mark.parametrize("red", ["none", "mean"])
@ON_TORCH
def test_double_backward_works(backend, red):
    x = _logits(torch.float64)
    y = _labels(ignore=True)
    p = _probs(torch.float64)
    yb = (torch.rand(N, C) > 0.5).double()
    w = torch.rand(C, dtype=torch.float64) + 0.5
    fns = [
        lambda t: infoloss.sparse_softmax_cross_entropy(
            t, y, class_weights=w, ignore_index=IGN, label_smoothing=0.1, z_loss=0.1, reduction=red
        ),
        lambda t: infoloss.softmax_cross_entropy(t, p, class_weights=w, reduction=red),
        lambda t: infoloss.sigmoid_cross_entropy(t, yb, pos_weight=w, reduction=red),
    ]
    for fn in fns:
        assert torch.autograd.gradgradcheck(fn, (x,))
    # and a Hessian-vector product equals PyTorch's
    v = torch.randn(N, C, dtype=torch.float64)
    hv = []
    for f in (infoloss.sparse_softmax_cross_entropy, F.cross_entropy):
        kw = dict(ignore_index=IGN, label_smoothing=0.1, reduction=red)
        out = f(x, y, **kw, **({"class_weights": w} if f is not F.cross_entropy else {"weight": w}))
        (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        (h,) = torch.autograd.grad((g * v).sum(), x)
        hv.append(h)
    assert_close(hv[0], hv[1], **TORCH_TOL[torch.float64])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_computed_in_float32(dtype):
    x32 = _logits(torch.float32, "strided")
    x = x32.detach().to(dtype).requires_grad_()
    y = _labels(ignore=True)

    def fn(t):
        return infoloss.sparse_softmax_cross_entropy(
            t, y, ignore_index=IGN, reduction="mean", label_smoothing=0.1
        )

    v, g = value_and_autograd(fn, x)
    assert v.dtype == dtype and g.dtype == dtype
    vg, gg = generic(fn, x)
    assert_close(v, vg, rtol=1e-2, atol=1e-3, scale="all")
    assert_close(g, gg, rtol=1e-2, atol=1e-3, scale="all")
    vb, gb = value_and_autograd(lambda t: infoloss.sigmoid_cross_entropy(t, (t > 0).to(dtype)), x)
    assert vb.dtype == dtype and gb.dtype == dtype


def test_value_and_grad_on_tensors_matches_generic():
    x = _logits(torch.float32)
    y = _labels(ignore=True)
    vg = infoloss.value_and_grad(infoloss.sparse_softmax_cross_entropy)
    v, g = vg(x, y, ignore_index=IGN, reduction="mean")
    with _config.generic_only():
        v0, g0 = vg(x, y, ignore_index=IGN, reduction="mean")
    assert_close(v.detach(), v0.detach(), **TOL[torch.float32])
    assert_close(g, g0.detach(), **TOL[torch.float32])
    v.backward()  # the value is still differentiable; the gradient handed out is unaffected
    assert_close(x.grad, g, **TOL[torch.float32])
    assert_close(g, g0.detach(), **TOL[torch.float32])


def test_errors_match_the_generic_path():
    x = _logits(torch.float32)
    y = _labels()
    y[2] = C
    msgs = []
    for ctx in (_config.generic_only, contextlib.nullcontext):
        with ctx(), pytest.raises(infoloss.InfolossError) as e:
            infoloss.sparse_softmax_cross_entropy(x, y)
        msgs.append(str(e.value))
    assert msgs[0] == msgs[1]
    assert "found 7 at position (2,)" in msgs[1]
    with pytest.raises(infoloss.InfolossError, match="`reduction`"):
        infoloss.softmax_cross_entropy(x, _probs(torch.float32), reduction="avg")


@ON_TORCH
def test_masked_classes_give_zero_not_nan(backend):
    x = _logits(torch.float32).detach().clone()
    x[:, 0] = -torch.inf
    x.requires_grad_()
    y = _labels().clamp(min=1)
    v, g = value_and_autograd(lambda t: infoloss.sparse_softmax_cross_entropy(t, y), x)
    assert torch.isfinite(v).all() and torch.isfinite(g).all()
    assert (g[:, 0] == 0).all()


# ------------------------------------------------------------------------------------------------
# torch.compile: tests/test_torch_compile.py (custom ops, no graph break)
# ------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------
# drop-in modules: training gives PyTorch's parameters
# ------------------------------------------------------------------------------------------------


def _train(loss_fn, targets, dtype, steps=5):
    torch.manual_seed(0)
    model = torch.nn.Linear(6, C).to(dtype)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    h = torch.randn(32, 6, dtype=dtype, generator=torch.Generator().manual_seed(7))
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model(h), targets).backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@ON_TORCH
def test_training_matches_pytorch(backend, dtype):
    w = torch.rand(C, dtype=dtype) + 0.5
    y = _labels(ignore=True, n=32)
    p = _probs(dtype, shape=(32, C))
    yb = (torch.rand(32, C, generator=torch.Generator().manual_seed(8)) > 0.5).to(dtype)
    tol = dict(rtol=1e-5, atol=1e-6, scale="all") if dtype == torch.float32 else TORCH_TOL[dtype]
    cases = [
        (
            dict(weight=w, ignore_index=IGN, label_smoothing=0.1),
            y,
            CrossEntropyLoss,
            torch.nn.CrossEntropyLoss,
        ),
        (dict(weight=w, label_smoothing=0.1), p, CrossEntropyLoss, torch.nn.CrossEntropyLoss),
        (dict(weight=w, pos_weight=w * 2), yb, BCEWithLogitsLoss, torch.nn.BCEWithLogitsLoss),
    ]
    for kw, t, ours, theirs in cases:
        a = _train(ours(**kw).to(dtype), t, dtype)
        b = _train(theirs(**kw).to(dtype), t, dtype)
        assert_close(a, b, **tol)


def test_modules_mirror_pytorch_surface():
    import inspect

    for ours, theirs in (
        (CrossEntropyLoss, torch.nn.CrossEntropyLoss),
        (BCEWithLogitsLoss, torch.nn.BCEWithLogitsLoss),
    ):
        po = inspect.signature(ours).parameters
        pt = inspect.signature(theirs).parameters
        # every PyTorch argument exists, in the same position, with the same default
        assert list(po)[: len(pt)] == list(pt)
        for name, p in pt.items():
            assert po[name].default == p.default or (
                isinstance(p.default, float) and po[name].default == p.default
            ), name
    m = CrossEntropyLoss(torch.ones(C), label_smoothing=0.1, z_loss=1e-4)
    assert "weight" in dict(m.named_buffers())
    assert m.double().weight.dtype == torch.float64
    assert "z_loss=0.0001" in repr(m)
    b = BCEWithLogitsLoss(pos_weight=torch.ones(C))
    assert set(dict(b.named_buffers())) == {"pos_weight"}


def test_legacy_reduction_arguments():
    with pytest.warns(UserWarning, match="deprecated"):
        m = CrossEntropyLoss(size_average=False)
    assert m.reduction == "sum"


@pytest.mark.parametrize(
    "name",
    ["logsumexp", "log_softmax", "softmax_entropy", "sparse_ce_weights_require_grad", "dense_ce"],
)
def test_second_derivatives_at_tied_maxima(name):
    """Rows whose maximum is tied (all equal, two of five): autograd through the definition
    (what double backward and weights that require grad run) gives the true Hessian. It used to
    treat a tied maximum's exp(x − m) as the constant 1, and the Hessian-vector product was off
    by up to 0.02."""
    x = torch.zeros(3, 5, dtype=torch.float64)
    x[1] = torch.tensor([1.0, 1.0, 0.0, -1.0, 1.0])
    x[2] = torch.tensor([0.3, 2.0, -0.5, 2.0, 1.0])
    x.requires_grad_()
    y = torch.tensor([0, 1, 2])
    p = torch.softmax(torch.arange(5.0, dtype=torch.float64), -1).expand(3, 5)
    fns = {
        "logsumexp": lambda t: infoloss.logsumexp(t).sum(),
        "log_softmax": lambda t: (infoloss.log_softmax(t) * p).sum(),
        "softmax_entropy": lambda t: infoloss.softmax_entropy(t).sum(),
        "sparse_ce_weights_require_grad": lambda t: infoloss.sparse_softmax_cross_entropy(
            t, y, class_weights=torch.ones(5, dtype=torch.float64, requires_grad=True)
        ).sum(),
        "dense_ce": lambda t: infoloss.softmax_cross_entropy(t, p).sum(),
    }
    fn = fns[name]
    with _config.generic_only():
        assert torch.autograd.gradgradcheck(fn, (x,))
        (g,) = torch.autograd.grad(fn(x), x, create_graph=True)
        v = torch.linspace(-1, 1, 15, dtype=torch.float64).reshape(3, 5)
        (hv,) = torch.autograd.grad((g * v).sum(), x)
    # against the Hessian of the plain float64 formula, whose maxima are not special
    ref = torch.autograd.functional.hvp(lambda t: _textbook(name, t, y, p), x.detach(), v)[1]
    assert_close(hv, ref, rtol=1e-10, atol=1e-12)


def _textbook(name, t, y, p):
    lse = torch.log(torch.exp(t).sum(-1))
    logq = t - lse[:, None]
    if name == "logsumexp":
        return lse.sum()
    if name == "log_softmax":
        return (logq * p).sum()
    if name == "softmax_entropy":
        return -(torch.exp(logq) * logq).sum()
    if name == "dense_ce":
        return -(p * logq).sum()
    return -logq.gather(1, y[:, None]).sum()
