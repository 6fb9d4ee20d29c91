"""``torch.compile`` through the ``torch.library`` custom ops (issue 13, ``_frameworks/torch_ops.py``).

While dynamo traces, the router sends the cross-entropies, the softmax measures and the linear
layer to one custom op each: no graph break (``fullgraph=True``), the fused kernels running inside
the compiled graph on CPU. Checked here: ``torch.library.opcheck`` on every op (option grid,
float32/float64, with and without requires_grad), compiled values and gradients equal to eager for
every option (on the fused and the lean implementation), the op in the graph and no graph break,
data-dependent errors raised from inside the op, double backward of the ops, and a compiled
``nn.Module`` training step (inductor) equal to eager.

Compilation is slow: the option grid uses the ``aot_eager`` backend (dynamo, fake tensors,
AOTAutograd and functionalization, no code generation), ``dynamic=False``; one test compiles with
inductor.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import torch
import torch._dynamo
from _helpers import assert_close
from torch.library import opcheck

import infoloss
import infoloss.torch
from infoloss import _config
from infoloss._frameworks import torch_ops  # noqa: F401  (registers the ops)

pytestmark = [
    # inductor's import of torch.utils.mkldnn uses torch.jit.script_method
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
]

N, C = 12, 7
IGN = -100
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-13), torch.float32: dict(rtol=2e-6, atol=1e-7)}
OPS = ("softmax_ce", "sigmoid_ce", "softmax_measure", "linear_ce")


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _x(shape=(N, C), dtype=torch.float64, seed=0, rg=True):
    return (3 * torch.randn(shape, generator=_gen(seed), dtype=dtype)).requires_grad_(rg)


def _y(shape=(N,), c=C, seed=1, ignore=False):
    y = torch.randint(0, c, shape, generator=_gen(seed))
    if ignore:
        y.view(-1)[::4] = IGN
    return y


def _p(shape=(N, C), dtype=torch.float64, seed=2, axis=-1):
    return torch.softmax(torch.randn(shape, generator=_gen(seed), dtype=dtype), axis)


class _Recorder:
    """A dynamo backend that records the ops of each graph and runs it through AOTAutograd."""

    def __init__(self):
        self.graphs = 0
        self.targets: list[str] = []

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        self.targets += [str(n.target) for n in gm.graph.nodes if n.op == "call_function"]
        return torch._dynamo.lookup_backend("aot_eager")(gm, example_inputs)


def _compiled(fn):
    torch._dynamo.reset()
    rec = _Recorder()
    return torch.compile(fn, backend=rec, fullgraph=True, dynamic=False), rec


def _value_and_grads(fn, inputs, seed=3):
    """The value of ``fn(*inputs)`` and the gradients of <value, random cotangent> with respect
    to the inputs that require grad."""
    for t in inputs:
        t.grad = None
    v = fn(*inputs)
    w = torch.rand(v.shape, generator=_gen(seed), dtype=v.dtype) + 0.5
    (v * w).sum().backward()
    grads = [t.grad for t in inputs if t.requires_grad]
    for t in inputs:
        t.grad = None
    return v.detach(), grads


# ------------------------------------------------------------------------------------------------
# compiled == eager, every option, the fused and the lean implementation
# ------------------------------------------------------------------------------------------------

L = infoloss


def _cases():
    cw = torch.rand(C, generator=_gen(5), dtype=torch.float64) + 0.5
    sw = torch.rand(N, generator=_gen(6), dtype=torch.float64) + 0.5
    pw = torch.rand(C, generator=_gen(7), dtype=torch.float64) + 0.5
    yb = (torch.rand(N, C, generator=_gen(8)) > 0.5).double()
    mask = torch.arange(N) % 3 != 0
    # (the labels are made here: a compiled function cannot create a torch.Generator)
    y, yi, y3, y34 = _y(), _y(ignore=True), _y((4, 3)), _y((3, 4))
    p, p3 = _p(), _p((4, C, 3), axis=1)
    x3 = lambda: _x((4, C, 3))  # noqa: E731
    sparse = L.sparse_softmax_cross_entropy
    dense = L.softmax_cross_entropy
    return {
        "sparse-mean": (lambda x: sparse(x, y, reduction="mean"), [_x()], "softmax_ce"),
        "sparse-weights-ignore-smoothing-zloss-mean": (
            lambda x: sparse(
                x,
                yi,
                class_weights=cw,
                ignore_index=IGN,
                label_smoothing=0.1,
                z_loss=1e-3,
                reduction="mean",
            ),
            [_x()],
            "softmax_ce",
        ),
        "sparse-zloss-sum": (
            lambda x: sparse(x, y, z_loss=1e-2, reduction="sum"),
            [_x()],
            "softmax_ce",
        ),
        "sparse-smoothing-none": (
            lambda x: sparse(x, y, label_smoothing=0.2),
            [_x()],
            "softmax_ce",
        ),
        "sparse-axis1-sample-weights": (
            lambda x: sparse(
                x,
                y3,
                axis=1,
                sample_weights=sw[:12].reshape(4, 3),
                label_smoothing=0.1,
                reduction="mean",
            ),
            [x3()],
            "softmax_ce",
        ),
        "sparse-softcap": (
            lambda x: sparse(x, y, softcap=4.0, reduction="mean"),
            [_x()],
            "softmax_ce",
        ),
        "dense-weights-smoothing-mean": (
            lambda x: dense(x, p, class_weights=cw, label_smoothing=0.1, reduction="mean"),
            [_x()],
            "softmax_ce",
        ),
        "dense-axis1-none": (
            lambda x: dense(x, p3, axis=1, z_loss=1e-3),
            [x3()],
            "softmax_ce",
        ),
        "sigmoid-pos-weight-smoothing-mean": (
            lambda x: L.sigmoid_cross_entropy(
                x, yb, pos_weight=pw, label_smoothing=0.1, reduction="mean"
            ),
            [_x()],
            "sigmoid_ce",
        ),
        "sigmoid-sample-weights-none": (
            lambda x: L.sigmoid_cross_entropy(x, yb, sample_weights=sw[:, None]),
            [_x()],
            "sigmoid_ce",
        ),
        "sigmoid-softcap-sum": (
            lambda x: L.sigmoid_cross_entropy(x, yb, softcap=3.0, reduction="sum"),
            [_x()],
            "sigmoid_ce",
        ),
        "entropy": (lambda x: L.softmax_entropy(x), [_x()], "softmax_measure"),
        "entropy-axis0-keepdims-base2": (
            lambda x: L.softmax_entropy(x, axis=0, keepdims=True, base=2.0),
            [_x()],
            "softmax_measure",
        ),
        "kl-none": (
            lambda p, q: L.softmax_kl_divergence(p, q),
            [_x(), _x(seed=9, rg=False)],
            "softmax_measure",
        ),
        "kl-both-grads-temperature-weights-mask-mean": (
            lambda p, q: L.softmax_kl_divergence(
                p,
                q,
                temperature=2.0,
                scale_by_temperature_squared=True,
                sample_weights=sw,
                mask=mask,
                reduction="mean",
            ),
            [_x(), _x(seed=9)],
            "softmax_measure",
        ),
        "js-beta-sum": (
            lambda p, q: L.softmax_js_divergence(p, q, beta=0.3, reduction="sum"),
            [_x(), _x(seed=9)],
            "softmax_measure",
        ),
        "linear-bias-weights-ignore-smoothing-zloss-mean": (
            lambda h, w, b: L.linear_cross_entropy(
                h,
                w,
                yi,
                bias=b,
                class_weights=cw,
                ignore_index=IGN,
                label_smoothing=0.1,
                z_loss=1e-3,
                chunk_size=5,
            ),
            [_x((N, 5)), _x((C, 5), seed=10), _x((C,), seed=11)],
            "linear_ce",
        ),
        "linear-sum-3d": (
            lambda h, w: L.linear_cross_entropy(h, w, y34, reduction="sum"),
            [_x((3, 4, 5)), _x((C, 5), seed=10)],
            "linear_ce",
        ),
        "linear-sample-weights-softcap": (
            lambda h, w: L.linear_cross_entropy(h, w, y, sample_weights=sw, softcap=5.0),
            [_x((N, 5)), _x((C, 5), seed=10)],
            "linear_ce",
        ),
    }


CASES = _cases()


@pytest.mark.parametrize("name", list(CASES))
def test_compiled_equals_eager(name):
    """One compilation per case, run on the fused kernels and on the lean code (the switch is
    read when the op runs, not while tracing)."""
    fn, inputs, op = CASES[name]
    cfn, rec = _compiled(fn)
    for switch in (_config.always_fast, _config.generic_only):
        with switch():
            v, grads = _value_and_grads(fn, inputs)
            vc, grads_c = _value_and_grads(cfn, inputs)
        assert_close(vc, v, **TOL[torch.float64])
        assert len(grads_c) == len(grads) > 0
        for gc, g in zip(grads_c, grads, strict=True):
            assert_close(gc, g, **TOL[torch.float64])
    assert rec.graphs == 1  # fullgraph, and no recompilation for the switch
    assert any(f"infoloss.{op}" in t for t in rec.targets), rec.targets


def test_fused_kernels_run_inside_the_compiled_graph(monkeypatch):
    import infoloss._fast.losses as fast_losses

    calls = []
    real = fast_losses.softmax_ce
    monkeypatch.setattr(fast_losses, "softmax_ce", lambda *a: calls.append(1) or real(*a))
    x, y = _x(dtype=torch.float32), _y()
    fn = lambda t: L.sparse_softmax_cross_entropy(t, y, label_smoothing=0.1, reduction="mean")  # noqa: E731
    cfn, _ = _compiled(fn)
    with _config.always_fast():
        cfn(x).backward()
    assert len(calls) == 1  # value and gradient in one fused sweep, none in the backward
    g = x.grad.clone()
    x.grad = None
    with _config.generic_only():
        cfn(x).backward()  # the switch is read when the op runs: the lean code
    assert len(calls) == 1
    assert_close(x.grad, g, **TOL[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_half_precision_compiled(dtype):
    """float16/bfloat16 logits: computed in float32 inside the op, value and gradient returned in
    the logits' dtype, as eager."""
    x, y = _x(dtype=dtype), _y()
    fn = lambda t: L.sparse_softmax_cross_entropy(t, y, label_smoothing=0.1, reduction="mean")  # noqa: E731
    cfn, _ = _compiled(fn)
    for switch in (_config.always_fast, _config.generic_only):
        with switch():
            v, grads = _value_and_grads(fn, [x])
            vc, grads_c = _value_and_grads(cfn, [x])
        assert_close(vc, v, rtol=0, atol=0)
        assert_close(grads_c[0], grads[0], rtol=0, atol=0)


def test_dynamic_batch_size():
    """The default automatic dynamic shapes: the second batch size recompiles with a symbolic
    one (the fake implementations take symbolic sizes), the third reuses that graph."""
    torch._dynamo.reset()
    rec = _Recorder()
    fn = lambda t, y: L.sparse_softmax_cross_entropy(t, y, axis=1, label_smoothing=0.1)  # noqa: E731
    cfn = torch.compile(fn, backend=rec, fullgraph=True)
    for n in (5, 9, 13):
        x, y = _x((n, C, 3)), _y((n, 3), seed=n)
        v, grads = _value_and_grads(lambda t, y=y: fn(t, y), [x])
        vc, grads_c = _value_and_grads(lambda t, y=y: cfn(t, y), [x])
        assert_close(vc, v, **TOL[torch.float64])
        assert_close(grads_c[0], grads[0], **TOL[torch.float64])
    assert rec.graphs == 2


@pytest.mark.parametrize(
    "name, fn",
    [
        (
            "sparse",
            lambda t, y: L.sparse_softmax_cross_entropy(t, y, label_smoothing=0.1, z_loss=1e-3),
        ),
        (
            "sigmoid",
            lambda t, y: L.sigmoid_cross_entropy(
                t, (torch.arange(t.shape[1]) == y[:, None]).to(t.dtype), label_smoothing=0.1
            ),
        ),
    ],
)
def test_dynamic_true(name, fn):
    """``dynamic=True``: sizes and float options are symbolic; the option checks compare them
    instead of calling ``math.isinf`` (which a symbolic float refuses), and the compiled value
    and gradient equal eager at two batch sizes."""
    torch._dynamo.reset()
    rec = _Recorder()
    cfn = torch.compile(fn, backend=rec, fullgraph=True, dynamic=True)
    for n in (5, 9):
        x, y = _x((n, C)), _y((n,), seed=n)
        v, grads = _value_and_grads(lambda t, y=y: fn(t, y), [x])
        vc, grads_c = _value_and_grads(lambda t, y=y: cfn(t, y), [x])
        assert_close(vc, v, **TOL[torch.float64])
        assert_close(grads_c[0], grads[0], **TOL[torch.float64])
    assert rec.graphs >= 1


def test_value_and_grad_compiled():
    x, y = _x(rg=False), _y(ignore=True)
    vg = infoloss.value_and_grad(infoloss.sparse_softmax_cross_entropy)
    fn = lambda t: vg(t, y, ignore_index=IGN, label_smoothing=0.1, reduction="mean")  # noqa: E731
    v, g = fn(x)
    cfn, rec = _compiled(fn)
    vc, gc = cfn(x)
    assert rec.graphs == 1
    assert_close(vc, v, **TOL[torch.float64])
    assert_close(gc, g, **TOL[torch.float64])


def test_no_graph_break_reported_by_explain():
    lin = torch.nn.Linear(5, C).double()
    h, y = _x((N, 5), rg=False), _y(ignore=True)
    teacher = _x(seed=9, rg=False)
    loss_fn = infoloss.torch.CrossEntropyLoss(label_smoothing=0.1)

    def step(h):
        z = lin(h)
        return (
            loss_fn(z, y)
            + infoloss.softmax_kl_divergence(z, teacher, reduction="mean")
            + infoloss.linear_cross_entropy(h, lin.weight, y.clamp(min=0), bias=lin.bias)
        )

    torch._dynamo.reset()
    ex = torch._dynamo.explain(step)(h)
    assert ex.graph_break_count == 0, ex.break_reasons
    assert ex.graph_count == 1


def test_soft_targets_requiring_grad_trace_the_definition():
    """Labels that require grad (no custom op takes their gradient): dynamo traces the generic
    definition, still in one graph."""
    x, p = _x(), _p().requires_grad_()
    fn = lambda a, b: L.softmax_cross_entropy(a, b, reduction="sum")  # noqa: E731
    v, grads = _value_and_grads(fn, [x, p])
    cfn, rec = _compiled(fn)
    vc, grads_c = _value_and_grads(cfn, [x, p])
    assert rec.graphs == 1 and not any("infoloss" in t for t in rec.targets)
    assert_close(vc, v, **TOL[torch.float64])
    for gc, g in zip(grads_c, grads, strict=True):
        assert_close(gc, g, **TOL[torch.float64])


# ------------------------------------------------------------------------------------------------
# data-dependent checks run inside the op
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fast", [True, False], ids=["fused", "lean"])
def test_data_errors_raised_inside_the_op(fast):
    x = _x()
    y = _y()
    y[5] = C + 3
    bad_p = _p()
    bad_p[2, 1] = -0.5
    bad_b = torch.zeros(N, C, dtype=torch.float64)
    bad_b[0, 3] = 1.5
    h, w = _x((N, 5)), _x((C, 5), seed=10)
    cases = [
        (lambda: L.sparse_softmax_cross_entropy(x, y), f"found {C + 3} at position \\(5,\\)"),
        (lambda: L.softmax_cross_entropy(x, bad_p), "found -0.5 at position \\(2, 1\\)"),
        (lambda: L.sigmoid_cross_entropy(x, bad_b), "targets in \\[0, 1\\]; found 1.5"),
        (lambda: L.linear_cross_entropy(h, w, y), f"found {C + 3} at position \\(5,\\)"),
    ]
    with _config.always_fast() if fast else _config.generic_only():
        for call, msg in cases:
            cfn, _ = _compiled(call)
            with pytest.raises(infoloss.InfolossError, match=msg):
                cfn()


# ------------------------------------------------------------------------------------------------
# opcheck, double backward
# ------------------------------------------------------------------------------------------------


def _op_args(op, dtype, rg):
    x = _x((6, 5), dtype=dtype, rg=rg)
    y = _y((6,), c=5)
    cw = torch.rand(5, generator=_gen(5), dtype=dtype) + 0.5
    sw = torch.rand(6, generator=_gen(6), dtype=dtype) + 0.5
    if op == "softmax_ce":
        p = _p((6, 5), dtype=dtype)
        x3 = _x((2, 5, 3), dtype=dtype, rg=rg)
        z = torch.tensor(2e-3, dtype=dtype)
        return [
            (x, y, None, None, None, True, 0.1, 0.0, None, None, 1, "mean", rg),
            (x, y, cw, sw, z, True, 0.0, 0.0, 2, None, 1, "none", rg),
            (x, p, cw, None, None, False, 0.1, 1e-3, None, None, 1, "sum", rg),
            (x3, _y((2, 3), c=5), None, None, None, True, 0.1, 0.0, None, None, 1, "none", rg),
            (x, y, None, None, None, True, 0.0, 1e-3, None, 3.0, 1, "mean", rg),
        ]
    if op == "sigmoid_ce":
        yb = torch.rand(6, 5, generator=_gen(8), dtype=dtype)
        return [
            (x, yb, cw, None, 0.1, None, "mean", rg),
            (x, yb, None, sw[:, None].expand(6, 5), 0.0, 2.0, "none", rg),
        ]
    if op == "softmax_measure":
        q = _x((6, 5), dtype=dtype, seed=9, rg=rg)
        mask = torch.arange(6) % 2 == 0
        return [
            (x, None, None, None, "kl", 1, False, None, 0.5, 1.0, 1.0, "none", dtype, rg, False),
            (x, q, None, None, "kl", 1, True, 0.69, 0.5, 1.0, 1.0, "none", dtype, rg, rg),
            (
                x,
                q.detach(),
                sw,
                mask,
                "kl",
                1,
                False,
                None,
                0.5,
                2.0,
                4.0,
                "mean",
                dtype,
                rg,
                False,
            ),
            (
                x.detach(),
                q,
                None,
                None,
                "js",
                0,
                False,
                None,
                0.3,
                1.0,
                1.0,
                "sum",
                dtype,
                False,
                rg,
            ),
        ]
    h = _x((6, 4), dtype=dtype, rg=rg)
    w = _x((5, 4), dtype=dtype, seed=10, rg=rg)
    b = _x((5,), dtype=dtype, seed=11, rg=rg)
    yi = y.clone()
    yi[0] = IGN
    return [
        (h, w, b, y, None, None, None, 0.1, 0.0, None, None, "mean", 4, rg, rg, rg),
        (h, w, None, yi, cw, None, None, 0.0, 1e-3, IGN, None, "sum", 6, rg, rg, False),
        (h, w.detach(), b, y, None, sw, None, 0.0, 0.0, None, 5.0, "mean", 3, rg, False, rg),
    ]


@pytest.mark.parametrize("rg", [False, True], ids=["no-grad", "grad"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("op", OPS)
def test_opcheck(op, dtype, rg):
    overload = getattr(torch.ops.infoloss, op).default
    with _config.always_fast():
        for args in _op_args(op, dtype, rg):
            opcheck(overload, args)


@pytest.mark.parametrize("fast", [True, False], ids=["fused", "lean"])
def test_ops_double_backward(fast):
    """Eager double backward through the ops differentiates the definition (gradgradcheck)."""
    with _config.always_fast() if fast else _config.generic_only():
        for op in OPS:
            overload = getattr(torch.ops.infoloss, op).default
            args = _op_args(op, torch.float64, True)[0]
            pos = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.requires_grad]

            def f(*ts, args=args, pos=pos, overload=overload):
                a = list(args)
                for i, t in zip(pos, ts, strict=True):
                    a[i] = t
                return overload(*a)[0]

            inputs = tuple(args[i] for i in pos)
            assert torch.autograd.gradcheck(f, inputs)
            assert torch.autograd.gradgradcheck(f, inputs)


# ------------------------------------------------------------------------------------------------
# a compiled training step (inductor) equals eager
# ------------------------------------------------------------------------------------------------


class _Model(torch.nn.Module):
    """A linear layer and every loss: the cross-entropies (modules and functions), the measures
    and the linear layer + cross-entropy on the same weight."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(6, C)
        self.ce = infoloss.torch.CrossEntropyLoss(label_smoothing=0.1, z_loss=1e-3)
        self.bce = infoloss.torch.BCEWithLogitsLoss(pos_weight=torch.full((C,), 1.5))

    def forward(self, h, y, p, yb, teacher):
        z = self.lin(h)
        return (
            self.ce(z, y)
            + infoloss.softmax_cross_entropy(z, p, reduction="mean")
            + self.bce(z, yb)
            + 0.1 * infoloss.softmax_entropy(z).mean()
            + infoloss.softmax_kl_divergence(z, teacher, reduction="mean")
            + infoloss.linear_cross_entropy(
                h, self.lin.weight, y.clamp(min=0), bias=self.lin.bias, label_smoothing=0.1
            )
        )


def _train(step_fn, model, data, steps=3):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = step_fn(*data)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return torch.stack(losses), torch.cat([q.detach().flatten() for q in model.parameters()])


def test_compiled_training_step_equals_eager():
    data = (
        torch.randn(32, 6, generator=_gen(1)),
        _y((32,), seed=2, ignore=True),
        _p((32, C), dtype=torch.float32),
        (torch.rand(32, C, generator=_gen(3)) > 0.5).float(),
        torch.randn(32, C, generator=_gen(4)),
    )
    torch.manual_seed(0)
    eager = _Model()
    compiled = _Model()
    compiled.load_state_dict(eager.state_dict())
    with _config.always_fast():
        ref_losses, ref_params = _train(eager, eager, data)
        torch._dynamo.reset()
        step = torch.compile(compiled, fullgraph=True, dynamic=False)
        losses, params = _train(step, compiled, data)
    torch._dynamo.reset()
    tol = dict(rtol=1e-5, atol=1e-6)
    assert_close(losses, ref_losses, **tol)
    assert_close(params, ref_params, **tol)
