"""``infoloss.value_and_grad``: analytic gradients against finite differences, PyTorch autograd and
``jax.grad`` of the same infoloss call, for every option (issue 2, docs/semantics.md)."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
from _helpers import (
    ON_NUMPY,
    Backend,
    as_float64,
    assert_close,
    dtype_name,
    expect,
    finite_difference,
    ref_sigmoid_ce,
    ref_softmax_ce,
    ref_softmax_entropy,
    ref_softmax_kl,
    ref_sparse_ce,
)

import infoloss

RNG = np.random.default_rng(99)
C = 4
X = RNG.normal(size=(3, C)) * 2
X3 = RNG.normal(size=(2, C, 3)) * 2  # classes on axis 1
LABELS = np.array([0, 3, 2])
LABELS_IGN = np.array([1, -100, 3])
SOFT = RNG.random((3, C))
SOFT /= SOFT.sum(-1, keepdims=True)
CW = np.array([0.5, 2.0, 1.0, 1.5])
SW = np.array([1.0, 0.25, 2.0])
SIG_Y = RNG.random((3, C))
PW = np.array([0.5, 2.0, 1.0, 3.0])
SIG_SW = np.array([[1.0], [0.0], [2.0]])
Q_LOGITS = RNG.normal(size=(3, C))
REDUCTIONS = ["none", "sum", "mean"]


# ------------------------------------------------------------------------------------------------
# cases: (function name, logits, other positional arrays, array keywords, plain keywords, ref)
# ------------------------------------------------------------------------------------------------


def _sparse_case(cw, sw, ign, eps, z, red):
    labels = LABELS_IGN if ign else LABELS
    arrays = {}
    if cw:
        arrays["class_weights"] = CW
    if sw:
        arrays["sample_weights"] = SW
    plain = dict(ignore_index=-100 if ign else None, label_smoothing=eps, z_loss=z, reduction=red)

    def ref(others, arrs):
        return functools.partial(ref_sparse_ce, labels=others[0], **arrs, **plain)

    return "sparse_softmax_cross_entropy", X, [labels.astype(np.int64)], arrays, plain, ref


def _dense_case(cw, sw, eps, z, red):
    arrays = {}
    if cw:
        arrays["class_weights"] = CW
    if sw:
        arrays["sample_weights"] = SW
    plain = dict(label_smoothing=eps, z_loss=z, reduction=red)

    def ref(others, arrs):
        return functools.partial(ref_softmax_ce, labels=others[0], **arrs, **plain)

    return "softmax_cross_entropy", X, [SOFT], arrays, plain, ref


def _sigmoid_case(pw, sw, eps, red):
    arrays = {}
    if pw:
        arrays["pos_weight"] = PW
    if sw:
        arrays["sample_weights"] = SIG_SW
    plain = dict(label_smoothing=eps, reduction=red)

    def ref(others, arrs):
        return functools.partial(ref_sigmoid_ce, labels=others[0], **arrs, **plain)

    return "sigmoid_cross_entropy", X, [SIG_Y], arrays, plain, ref


def _entropy_case(base, axis):
    x = X if axis == -1 else X3
    plain = dict(axis=axis, base=base)
    scale = 1.0 if base is None else np.log(base)

    def ref(others, arrs):
        return lambda v: ref_softmax_entropy(v, axis=axis) / scale

    return "softmax_entropy", x, [], {}, plain, ref


def _covering(factors, cycled):
    """Every combination of ``factors``; the ``cycled`` options rotate through their combinations
    so that each value meets each reduction and each weight setting (keeps the grid small)."""
    rows = []
    cyc = list(itertools.product(*cycled))
    for i, combo in enumerate(itertools.product(*factors)):
        rows.append(combo + cyc[(i + i // len(cyc)) % len(cyc)])
    return rows


CASES = {}
# every combination of weights / ignore with every reduction; smoothing and z-loss rotate
for cw, sw, ign, red, eps, z in _covering(
    [[0, 1], [0, 1], [0, 1], REDUCTIONS], [[0.0, 0.2], [0.0, 0.05]]
):
    CASES[f"sparse-{cw}-{sw}-{ign}-{eps}-{z}-{red}"] = _sparse_case(cw, sw, ign, eps, z, red)
for cw, sw, red, eps, z in _covering([[0, 1], [0, 1], REDUCTIONS], [[0.0, 0.2], [0.0, 0.05]]):
    CASES[f"dense-{cw}-{sw}-{eps}-{z}-{red}"] = _dense_case(cw, sw, eps, z, red)
for pw, sw, red, eps in _covering([[0, 1], [0, 1], REDUCTIONS], [[0.0, 0.1]]):
    CASES[f"sigmoid-{pw}-{sw}-{eps}-{red}"] = _sigmoid_case(pw, sw, eps, red)
for c in itertools.product([None, 2], [-1, 1]):
    CASES["entropy-" + "-".join(map(str, c))] = _entropy_case(*c)
CASE_IDS = sorted(CASES)
# case id legend: sparse-cw-sw-ignore-eps-z-reduction, dense-cw-sw-eps-z-reduction,
# sigmoid-pw-sw-eps-reduction, entropy-base-axis


@functools.cache
def _fd(case_id):
    _, x, others, arrays, _, factory = CASES[case_id]
    ref = factory(others, arrays)
    return ref(x), finite_difference(ref, x)


def _build(backend, case_id, dtype="float64"):
    name, x, others, arrays, plain, _ = CASES[case_id]
    fn = getattr(infoloss, name)
    xb = backend.asarray(x, dtype)
    args = [backend.asarray(o, dtype if o.dtype.kind == "f" else None) for o in others]
    kwargs = {k: backend.asarray(v, dtype) for k, v in arrays.items()}
    kwargs.update(plain)
    return fn, xb, args, kwargs


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_value_and_grad_matches_finite_differences(backend, case_id):
    fn, x, args, kwargs = _build(backend, case_id)
    value, grad = infoloss.value_and_grad(fn)(x, *args, **kwargs)
    ref_value, ref_grad = _fd(case_id)
    assert_close(value, expect(backend, ref_value))
    assert_close(grad, expect(backend, ref_grad), rtol=1e-6, atol=1e-8)
    # the value is the function's own value
    assert_close(value, fn(x, *args, **kwargs), rtol=1e-14, atol=1e-15)


@pytest.mark.variants("torch-fast", "torch-generic", reason="torch autograd of the same call")
@pytest.mark.parametrize("case_id", CASE_IDS)
def test_value_and_grad_matches_torch_autograd(backend, case_id):
    import torch

    fn, x, args, kwargs = _build(backend, case_id)
    _value, grad = infoloss.value_and_grad(fn)(x, *args, **kwargs)
    xg = x.clone().requires_grad_(True)
    torch.sum(fn(xg, *args, **kwargs)).backward()
    assert torch.all(torch.isfinite(xg.grad))
    assert_close(grad, xg.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_value_and_grad_matches_jax_grad(case_id):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    b = Backend("jax")
    fn, x, args, kwargs = _build(b, case_id)
    _value, grad = infoloss.value_and_grad(fn)(x, *args, **kwargs)
    g = jax.grad(lambda v: jnp.sum(fn(v, *args, **kwargs)))(x)
    assert_close(grad, g, rtol=1e-10, atol=1e-12)


JIT_CASES = [
    c
    for c in CASE_IDS
    if c.startswith(("sparse-1-1-1", "dense-1-1", "sigmoid-1-1")) or c == "entropy-2-1"
]


@pytest.mark.parametrize("case_id", JIT_CASES)
def test_generic_path_under_jax_jit(case_id):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    b = Backend("jax")
    fn, x, args, kwargs = _build(b, case_id)
    arrays = {k: v for k, v in kwargs.items() if not isinstance(v, (int, float, str, type(None)))}
    plain = {k: v for k, v in kwargs.items() if k not in arrays}

    def f(v, pos, arr):
        return fn(v, *pos, **arr, **plain)

    eager = f(x, args, arrays)
    jitted = jax.jit(f)(x, args, arrays)
    assert_close(jitted, eager, rtol=1e-13, atol=1e-14)
    g_eager = jax.grad(lambda v: jnp.sum(f(v, args, arrays)))(x)
    g_jit = jax.jit(jax.grad(lambda v, pos, arr: jnp.sum(f(v, pos, arr))))(x, args, arrays)
    assert_close(g_jit, g_eager, rtol=1e-13, atol=1e-14)


def test_value_and_grad_under_jax_jit():
    jax = pytest.importorskip("jax")
    b = Backend("jax")
    fn, x, args, kwargs = _build(b, "sparse-1-1-1-0.2-0.05-sum")
    arrays = {k: v for k, v in kwargs.items() if not isinstance(v, (int, float, str, type(None)))}
    plain = {k: v for k, v in kwargs.items() if k not in arrays}
    vg = infoloss.value_and_grad(fn)
    eager = vg(x, *args, **kwargs)
    jitted = jax.jit(lambda v, pos, arr: vg(v, *pos, **arr, **plain))(x, args, arrays)
    assert_close(jitted[0], eager[0], rtol=1e-13)
    assert_close(jitted[1], eager[1], rtol=1e-13, atol=1e-15)


# ------------------------------------------------------------------------------------------------
# softmax_kl_divergence: (value, (d/dp_logits, d/dq_logits))
# ------------------------------------------------------------------------------------------------

KL_CASES = list(itertools.product([None, 2], [-1, 0]))


def _kl_inputs(axis):
    a, b = X, Q_LOGITS
    if axis == 0:
        a, b = a.T.copy(), b.T.copy()
    return a, b


@pytest.mark.parametrize("base,axis", KL_CASES)
def test_softmax_kl_value_and_grad_finite_differences(backend, base, axis):
    a, b = _kl_inputs(axis)
    scale = 1.0 if base is None else np.log(base)
    value, (ga, gb) = infoloss.value_and_grad(infoloss.softmax_kl_divergence)(
        backend.asarray(a), backend.asarray(b), axis=axis, base=base
    )
    ref = ref_softmax_kl(a, b, axis=axis) / scale
    assert_close(value, expect(backend, ref))
    fd_a = finite_difference(lambda v: ref_softmax_kl(v, b, axis=axis) / scale, a)
    fd_b = finite_difference(lambda v: ref_softmax_kl(a, v, axis=axis) / scale, b)
    assert_close(ga, expect(backend, fd_a), rtol=1e-6, atol=1e-8)
    assert_close(gb, expect(backend, fd_b), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("base,axis", KL_CASES)
def test_softmax_kl_value_and_grad_autodiff(backend, base, axis):
    if backend.name not in ("torch", "jax"):
        pytest.skip("autodiff backends only")
    a, b = backend.asarray(_kl_inputs(axis)[0]), backend.asarray(_kl_inputs(axis)[1])
    fn = infoloss.softmax_kl_divergence
    _, (ga, gb) = infoloss.value_and_grad(fn)(a, b, axis=axis, base=base)
    if backend.name == "torch":
        import torch

        at, bt = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        torch.sum(fn(at, bt, axis=axis, base=base)).backward()
        ra, rb = at.grad, bt.grad
    else:
        import jax
        import jax.numpy as jnp

        ra, rb = jax.grad(lambda u, v: jnp.sum(fn(u, v, axis=axis, base=base)), argnums=(0, 1))(
            a, b
        )
    assert_close(ga, ra, rtol=1e-10, atol=1e-12)
    assert_close(gb, rb, rtol=1e-10, atol=1e-12)


def test_softmax_kl_grad_formula(backend):
    # semantics.md: d/da = p (log p - log q - KL), d/db = q - p
    a, b = X, Q_LOGITS
    p = np.exp(a - np.log(np.exp(a).sum(-1, keepdims=True)))
    q = np.exp(b - np.log(np.exp(b).sum(-1, keepdims=True)))
    kl = (p * np.log(p / q)).sum(-1, keepdims=True)
    _, (ga, gb) = infoloss.value_and_grad(infoloss.softmax_kl_divergence)(
        backend.asarray(a), backend.asarray(b)
    )
    assert_close(ga, expect(backend, p * (np.log(p / q) - kl)))
    assert_close(gb, expect(backend, q - p))


# ------------------------------------------------------------------------------------------------
# closed forms, extremes, masking, dtypes, types
# ------------------------------------------------------------------------------------------------


def test_sparse_grad_is_softmax_minus_one_hot(backend):
    x = backend.asarray(X)
    _, g = infoloss.value_and_grad(infoloss.sparse_softmax_cross_entropy)(
        x, backend.asarray(LABELS, "int64")
    )
    q = np.exp(X) / np.exp(X).sum(-1, keepdims=True)
    assert_close(g, expect(backend, q - np.eye(C)[LABELS]))


def test_softmax_entropy_grad_formula_and_masking(backend):
    x = np.array([[0.0, -np.inf, 1.0, 2.0], [-np.inf, 0.5, -np.inf, -1.0]])
    xb = backend.asarray(x)
    value, g = infoloss.value_and_grad(infoloss.softmax_entropy)(xb)
    with np.errstate(divide="ignore", invalid="ignore"):
        logq = x - np.log(np.exp(x).sum(-1, keepdims=True))
        q = np.exp(logq)
        h = -np.where(q > 0, q * logq, 0).sum(-1, keepdims=True)
        ref = np.where(q > 0, -q * (logq + h), 0.0)
    assert_close(value, expect(backend, h[:, 0]))
    assert_close(g, expect(backend, ref))
    assert np.all(as_float64(g)[np.isinf(x)] == 0)


def test_masked_logit_gets_zero_gradient(backend):
    x = backend.asarray([[0.0, -np.inf, 1.0], [2.0, 0.0, -np.inf]])
    for fn, lab in [
        (infoloss.sparse_softmax_cross_entropy, backend.asarray([0, 1], "int64")),
        (infoloss.softmax_cross_entropy, backend.asarray([[0.5, 0, 0.5], [0, 1.0, 0]])),
    ]:
        for z in (0.0, 0.1):
            _value, g = infoloss.value_and_grad(fn)(x, lab, z_loss=z, reduction="sum")
            g64 = as_float64(g)
            assert np.all(np.isfinite(g64)), g64
            assert g64[0, 1] == 0 and g64[1, 2] == 0


@pytest.mark.parametrize(
    "fn",
    [
        "softmax_cross_entropy",
        "sparse_softmax_cross_entropy",
        "sigmoid_cross_entropy",
        "softmax_entropy",
        "softmax_kl_divergence",
    ],
)
def test_extreme_logits_finite_gradients(backend, fn):
    data = np.array([[1e30, -1e30, 0.0], [-1e30, 1e30, 1e30]])
    x = backend.asarray(data, "float32")
    f = getattr(infoloss, fn)
    if fn == "sparse_softmax_cross_entropy":
        out = infoloss.value_and_grad(f)(x, backend.asarray([0, 2], "int64"))
    elif fn in ("softmax_cross_entropy", "sigmoid_cross_entropy"):
        out = infoloss.value_and_grad(f)(x, backend.asarray([[1.0, 0, 0], [0, 0, 1.0]], "float32"))
    elif fn == "softmax_entropy":
        out = infoloss.value_and_grad(f)(x)
    else:
        out = infoloss.value_and_grad(f)(x, backend.asarray(data[::-1].copy(), "float32"))
    value, grads = out
    grads = grads if isinstance(grads, tuple) else (grads,)
    assert np.all(np.isfinite(as_float64(value)))
    for g in grads:
        assert dtype_name(g) == "float32"
        assert np.all(np.isfinite(as_float64(g)))


def test_extreme_logits_known_gradient(backend):
    x = backend.asarray([[1e30, -1e30, 0.0], [-1e30, 1e30, 1e30]], "float32")
    _, g = infoloss.value_and_grad(infoloss.sparse_softmax_cross_entropy)(
        x, backend.asarray([0, 2], "int64"), reduction="sum"
    )
    assert_close(g, expect(backend, [[0, 0, 0], [0, 0.5, -0.5]], like=x), atol=1e-7)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_gradients(backend, dtype):
    if not backend.supports(dtype):
        pytest.skip(f"{backend.name} has no {dtype}")
    for case_id in [
        "sparse-1-1-1-0.2-0.05-sum",
        "dense-1-1-0.0-0.05-mean",
        "sigmoid-1-1-0.1-sum",
        "entropy-None--1",
    ]:
        fn, x, args, kwargs = _build(backend, case_id, dtype)
        value, grad = infoloss.value_and_grad(fn)(x, *args, **kwargs)
        assert dtype_name(value) == dtype and dtype_name(grad) == dtype
        # reference: float64 finite differences at the rounded inputs
        factory = CASES[case_id][5]
        ref = factory(
            [as_float64(a) for a in args],
            {k: as_float64(v) for k, v in kwargs.items() if k in CASES[case_id][3]},
        )
        ref_grad = finite_difference(ref, as_float64(x))
        assert_close(grad, expect(backend, ref_grad, like=x))


def test_gradient_returns_caller_type(backend):
    x = backend.asarray(X, "float32")
    for fn, lab in [
        (infoloss.sparse_softmax_cross_entropy, backend.asarray(LABELS, "int64")),
        (infoloss.softmax_cross_entropy, backend.asarray(SOFT, "float32")),
        (infoloss.sigmoid_cross_entropy, backend.asarray(SIG_Y, "float32")),
    ]:
        value, g = infoloss.value_and_grad(fn)(x, lab, reduction="mean")
        assert backend.is_native(value) and backend.is_native(g)
        assert dtype_name(g) == "float32" and tuple(g.shape) == X.shape


def test_value_and_grad_keyword_call(backend):
    vg = infoloss.value_and_grad(infoloss.softmax_cross_entropy)
    value, g = vg(labels=backend.asarray(SOFT), logits=backend.asarray(X))
    ref = ref_softmax_ce(X, SOFT)
    assert_close(value, expect(backend, ref))
    assert_close(
        g,
        expect(backend, finite_difference(lambda v: ref_softmax_ce(v, SOFT), X)),
        rtol=1e-6,
        atol=1e-8,
    )


@ON_NUMPY
def test_value_and_grad_list_inputs_are_numpy(backend):
    value, g = infoloss.value_and_grad(infoloss.softmax_entropy)([0.0, 0.0])
    assert isinstance(g, np.ndarray)
    np.testing.assert_allclose(value, np.log(2), rtol=1e-12)
    np.testing.assert_allclose(g, [0.0, 0.0], atol=1e-15)
