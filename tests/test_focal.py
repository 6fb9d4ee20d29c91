"""Focal and poly losses (issue 16): against optax, Keras's and torchvision's formulas written out
in float64, torch autograd of the textbook formulas, float64 finite differences, extremes and
hypothesis properties."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sp
from _helpers import (
    ON_NUMPY,
    Backend,
    as_float64,
    assert_close,
    available_variants,
    expect,
    installed,
    one_hot,
    to_numpy,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import infoloss
from infoloss import (
    poly_cross_entropy,
    sigmoid_cross_entropy,
    sigmoid_focal_loss,
    softmax_cross_entropy,
    softmax_focal_loss,
    sparse_poly_cross_entropy,
    sparse_softmax_cross_entropy,
    sparse_softmax_focal_loss,
    value_and_grad,
)

RNG = np.random.default_rng(16)
C = 5
X = RNG.normal(size=(2, 3, C)) * 3
LABELS = np.array([[0, 4, 2], [3, 1, 4]])
SOFT = RNG.random((2, 3, C))
SOFT /= SOFT.sum(-1, keepdims=True)
CW = np.array([0.5, 1.0, 2.0, 1.5, 0.25])
SW = np.array([[1.0, 0.5, 2.0], [0.0, 1.5, 3.0]])
SIG_X = RNG.normal(size=(4, 3)) * 3
SIG_Y = (RNG.random((4, 3)) < 0.5).astype(np.float64)
SIG_SOFT = RNG.random((4, 3))
GAMMAS = [0.0, 0.5, 2.0, 5.0]


# ------------------------------------------------------------------------------------------------
# float64 references, written from the peers' documented definitions (never calling infoloss)
# ------------------------------------------------------------------------------------------------


def ref_categorical_focal(x, y, gamma, alpha=None, axis=-1):
    """Keras CategoricalFocalCrossentropy(from_logits=True): −Σ α y (1 − q)^γ log q."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    q = sp.softmax(x, axis=axis)
    a = 1.0
    if alpha is not None:  # one weight per class, along the class axis
        a = np.reshape(alpha, [-1 if i == axis % x.ndim else 1 for i in range(x.ndim)])
    return -np.sum(a * y * (1 - q) ** gamma * sp.log_softmax(x, axis=axis), axis=axis)


def ref_torchvision_focal(x, y, alpha, gamma):
    """torchvision.ops.sigmoid_focal_loss, reduction="none", in float64 (alpha < 0: none)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    p = sp.expit(x)
    ce = np.logaddexp(0, x) - x * y  # binary_cross_entropy_with_logits
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None and alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return loss


def ref_keras_binary_focal(x, y, alpha, gamma):
    """Keras BinaryFocalCrossentropy(from_logits=True, apply_class_balancing=alpha is not None),
    elementwise (before Keras's mean over the last axis)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    p = sp.expit(x)
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    p_t = y * p + (1 - y) * (1 - p)
    loss = (1 - p_t) ** gamma * bce
    if alpha is not None:
        loss = (y * alpha + (1 - y) * (1 - alpha)) * loss
    return loss


def ref_poly(x, y, eps, axis=-1):
    """optax poly_loss_cross_entropy in float64: CE + ε Σ y (1 − q)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    q = sp.softmax(x, axis=axis)
    return -np.sum(y * sp.log_softmax(x, axis=axis), axis=axis) + eps * np.sum(y * (1 - q), axis)


def _torch_textbook_grad(fn, x):
    """d Σ fn(x) / dx by torch autograd in float64."""
    import torch

    t = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    torch.sum(fn(t)).backward()
    return t.grad.numpy()


def _fd_grad(f, x, h=1e-6):
    """Central finite differences of the scalar f at float64 x."""
    x = np.asarray(x, np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def _b(backend, a, dtype=None):
    return backend.asarray(a, dtype)


# ------------------------------------------------------------------------------------------------
# values against the references, every backend
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("alpha", [None, 0.25, 0.8])
def test_sigmoid_focal_matches_torchvision_and_keras(backend, gamma, alpha):
    for y in (SIG_Y, SIG_SOFT):
        x = _b(backend, SIG_X)
        got = sigmoid_focal_loss(x, _b(backend, y), alpha=alpha, gamma=gamma)
        ref = ref_torchvision_focal(SIG_X, y, alpha, gamma)
        np.testing.assert_allclose(ref, ref_keras_binary_focal(SIG_X, y, alpha, gamma), rtol=1e-12)
        assert_close(got, expect(backend, ref, like=x))


@pytest.mark.parametrize("gamma", GAMMAS)
def test_sparse_softmax_focal_matches_keras(backend, gamma):
    x = _b(backend, X)
    got = sparse_softmax_focal_loss(x, _b(backend, LABELS), gamma=gamma)
    assert_close(got, expect(backend, ref_categorical_focal(X, one_hot(LABELS, C), gamma)))
    got = sparse_softmax_focal_loss(
        x, _b(backend, LABELS), gamma=gamma, class_weights=_b(backend, CW)
    )
    ref = ref_categorical_focal(X, one_hot(LABELS, C), gamma, alpha=CW)
    assert_close(got, expect(backend, ref))


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("axis", [-1, 1])
def test_softmax_focal_matches_keras_soft_labels(backend, gamma, axis):
    x, y = np.moveaxis(X, -1, axis), np.moveaxis(SOFT, -1, axis)
    got = softmax_focal_loss(_b(backend, x), _b(backend, y), gamma=gamma, axis=axis)
    assert_close(got, expect(backend, ref_categorical_focal(x, y, gamma, axis=axis)))
    got = softmax_focal_loss(
        _b(backend, x), _b(backend, y), gamma=gamma, axis=axis, class_weights=_b(backend, CW)
    )
    assert_close(got, expect(backend, ref_categorical_focal(x, y, gamma, alpha=CW, axis=axis)))


@pytest.mark.parametrize("eps", [-1.0, 0.0, 1.0, 2.0])
def test_poly_matches_reference(backend, eps):
    x = _b(backend, X)
    assert_close(
        poly_cross_entropy(x, _b(backend, SOFT), epsilon=eps),
        expect(backend, ref_poly(X, SOFT, eps)),
    )
    assert_close(
        sparse_poly_cross_entropy(x, _b(backend, LABELS), epsilon=eps),
        expect(backend, ref_poly(X, one_hot(LABELS, C), eps)),
    )


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("fn", ["focal", "poly"])
def test_weights_ignore_and_reductions(backend, reduction, fn):
    labels = np.where(np.array([[1, 0, 1], [1, 1, 0]]) == 1, LABELS, -100)
    valid = labels != -100
    safe = np.where(valid, labels, 0)
    y1 = one_hot(safe, C)
    if fn == "focal":
        per = ref_categorical_focal(X, y1, 2.0, alpha=CW)
        sparse, dense, kw = sparse_softmax_focal_loss, softmax_focal_loss, {"gamma": 2.0}
    else:
        per = np.sum(CW * y1 * (-sp.log_softmax(X, -1) + 1.5 * (1 - sp.softmax(X, -1))), -1)
        sparse, dense, kw = sparse_poly_cross_entropy, poly_cross_entropy, {"epsilon": 1.5}
    per = np.where(valid, per * SW, 0.0)
    wts = np.where(valid, CW[safe] * SW, 0.0)
    ref = {"none": per, "sum": per.sum(), "mean": per.sum() / wts.sum()}[reduction]
    opts = dict(class_weights=_b(backend, CW), sample_weights=_b(backend, SW), reduction=reduction)
    got = sparse(_b(backend, X), _b(backend, labels), ignore_index=-100, **kw, **opts)
    assert_close(got, expect(backend, ref))
    y_dense = y1 * valid[..., None]
    # dense labels of all zeros for the ignored rows: loss 0 and weight 0, the same mean
    got_d = dense(_b(backend, X), _b(backend, y_dense), **kw, **opts)
    assert_close(got_d, expect(backend, ref))


# ------------------------------------------------------------------------------------------------
# against optax (JAX, float64)
# ------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not installed("optax"), reason="optax not installed")
@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("alpha", [None, 0.25])
def test_sigmoid_focal_matches_optax(gamma, alpha):
    import jax.numpy as jnp
    import optax

    for y in (SIG_Y, SIG_SOFT):
        ref = optax.losses.sigmoid_focal_loss(
            jnp.asarray(SIG_X), jnp.asarray(y), alpha=alpha, gamma=gamma
        )
        got = sigmoid_focal_loss(jnp.asarray(SIG_X), jnp.asarray(y), alpha=alpha, gamma=gamma)
        assert_close(got, ref)
        got_np = sigmoid_focal_loss(SIG_X, y, alpha=alpha, gamma=gamma)
        assert_close(got_np, np.asarray(ref))


@pytest.mark.skipif(not installed("optax"), reason="optax not installed")
@pytest.mark.parametrize("eps", [-1.0, 1.0, 2.0])
def test_poly_matches_optax(eps):
    import jax.numpy as jnp
    import optax

    for y in (one_hot(LABELS, C), SOFT):
        ref = optax.losses.poly_loss_cross_entropy(jnp.asarray(X), jnp.asarray(y), epsilon=eps)
        assert_close(poly_cross_entropy(jnp.asarray(X), jnp.asarray(y), epsilon=eps), ref)
        assert_close(poly_cross_entropy(X, y, epsilon=eps), np.asarray(ref))
    ref = optax.losses.poly_loss_cross_entropy(
        jnp.asarray(X), jnp.asarray(one_hot(LABELS, C)), epsilon=eps
    )
    assert_close(sparse_poly_cross_entropy(X, LABELS, epsilon=eps), np.asarray(ref))


# ------------------------------------------------------------------------------------------------
# γ = 0 is the cross-entropy, exactly; one-hot dense == sparse
# ------------------------------------------------------------------------------------------------


def test_gamma_zero_is_cross_entropy_exactly(backend):
    x, yl, ys = _b(backend, X), _b(backend, LABELS), _b(backend, SOFT)
    for red in ("none", "sum", "mean"):
        kw = dict(class_weights=_b(backend, CW), sample_weights=_b(backend, SW), reduction=red)
        pairs = [
            (
                sparse_softmax_focal_loss(x, yl, gamma=0.0, **kw),
                sparse_softmax_cross_entropy(x, yl, **kw),
            ),
            (softmax_focal_loss(x, ys, gamma=0.0, **kw), softmax_cross_entropy(x, ys, **kw)),
            (
                sparse_poly_cross_entropy(x, yl, epsilon=0.0, **kw),
                sparse_softmax_cross_entropy(x, yl, **kw),
            ),
            (poly_cross_entropy(x, ys, epsilon=0.0, **kw), softmax_cross_entropy(x, ys, **kw)),
        ]
        sx, sy = _b(backend, SIG_X), _b(backend, SIG_SOFT)
        pairs.append(
            (
                sigmoid_focal_loss(sx, sy, alpha=None, gamma=0.0, reduction=red),
                sigmoid_cross_entropy(sx, sy, reduction=red),
            )
        )
        for a, b in pairs:
            assert_close(a, b, rtol=0.0, atol=0.0)
    _, g_f = value_and_grad(sparse_softmax_focal_loss)(x, yl, gamma=0.0)
    _, g_c = value_and_grad(sparse_softmax_cross_entropy)(x, yl)
    assert_close(g_f, g_c, rtol=0.0, atol=0.0)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_dense_one_hot_equals_sparse(backend, gamma):
    x = _b(backend, X)
    a = sparse_softmax_focal_loss(x, _b(backend, LABELS), gamma=gamma)
    b = softmax_focal_loss(x, _b(backend, one_hot(LABELS, C)), gamma=gamma)
    assert_close(a, b)
    _, ga = value_and_grad(sparse_softmax_focal_loss)(x, _b(backend, LABELS), gamma=gamma)
    _, gb = value_and_grad(softmax_focal_loss)(x, _b(backend, one_hot(LABELS, C)), gamma=gamma)
    assert_close(ga, gb, scale="all")


# ------------------------------------------------------------------------------------------------
# gradients: torch autograd of the textbook formulas, finite differences, the backends' autodiff
# ------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not installed("torch"), reason="torch not installed")
@pytest.mark.parametrize("gamma", GAMMAS)
def test_gradients_match_torch_autograd_of_textbook(backend, gamma):
    import torch

    oh = torch.tensor(one_hot(LABELS, C))
    cw = torch.tensor(CW)
    soft = torch.tensor(SOFT)

    def focal(t, y):
        q = torch.softmax(t, -1)
        return -torch.sum(cw * y * (1 - q) ** gamma * torch.log_softmax(t, -1), -1)

    def sig(t):
        y = torch.tensor(SIG_SOFT)
        p = torch.sigmoid(t)
        ce = torch.nn.functional.binary_cross_entropy_with_logits(t, y, reduction="none")
        p_t = p * y + (1 - p) * (1 - y)
        return (0.25 * y + 0.75 * (1 - y)) * ce * (1 - p_t) ** gamma

    x = _b(backend, X)
    _, g = value_and_grad(sparse_softmax_focal_loss)(
        x, _b(backend, LABELS), gamma=gamma, class_weights=_b(backend, CW)
    )
    assert_close(g, expect(backend, _torch_textbook_grad(lambda t: focal(t, oh), X)), scale="all")
    _, g = value_and_grad(softmax_focal_loss)(
        x, _b(backend, SOFT), gamma=gamma, class_weights=_b(backend, CW)
    )
    assert_close(g, expect(backend, _torch_textbook_grad(lambda t: focal(t, soft), X)), scale="all")
    _, g = value_and_grad(sigmoid_focal_loss)(
        _b(backend, SIG_X), _b(backend, SIG_SOFT), gamma=gamma
    )
    assert_close(g, expect(backend, _torch_textbook_grad(sig, SIG_X)), scale="all")
    for fn, y in ((sparse_poly_cross_entropy, LABELS), (poly_cross_entropy, SOFT)):
        _, g = value_and_grad(fn)(x, _b(backend, y), epsilon=gamma)
        yt = oh if y is LABELS else soft

        def poly(t, yt=yt):
            return -torch.sum(yt * torch.log_softmax(t, -1), -1) + gamma * torch.sum(
                yt * (1 - torch.softmax(t, -1)), -1
            )

        assert_close(g, expect(backend, _torch_textbook_grad(poly, X)), scale="all")


@ON_NUMPY
@pytest.mark.parametrize("gamma", [0.5, 2.0, 5.0])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_gradients_match_finite_differences(backend, gamma, reduction):
    kw = dict(class_weights=CW, sample_weights=SW, reduction=reduction)
    labels = np.array([[0, -100, 2], [3, 1, 4]])
    cases = [
        (sparse_softmax_focal_loss, X, labels, dict(gamma=gamma, ignore_index=-100, **kw)),
        (softmax_focal_loss, X, SOFT, dict(gamma=gamma, **kw)),
        (sparse_poly_cross_entropy, X, LABELS, dict(epsilon=gamma, **kw)),
        (poly_cross_entropy, X, SOFT, dict(epsilon=gamma, **kw)),
        (sigmoid_focal_loss, SIG_X, SIG_SOFT, dict(gamma=gamma, reduction=reduction)),
        (sigmoid_focal_loss, SIG_X, SIG_Y, dict(gamma=gamma, alpha=0.7, reduction=reduction)),
    ]
    for fn, x, y, opts in cases:
        _, g = value_and_grad(fn)(x, y, **opts)
        fd = _fd_grad(lambda v, fn=fn, y=y, opts=opts: float(fn(v, y, **opts)), x)
        assert_close(g, fd, rtol=1e-6, atol=1e-8, err_msg=fn.__name__)


def test_autodiff_agrees_with_value_and_grad(backend):
    if not backend.autodiff:
        pytest.skip("autodiff backends only")
    cases = [
        (sparse_softmax_focal_loss, X, LABELS, {"gamma": 2.0, "class_weights": CW}),
        (softmax_focal_loss, X, SOFT, {"gamma": 0.5}),
        (poly_cross_entropy, X, SOFT, {"epsilon": 2.0}),
        (sigmoid_focal_loss, SIG_X, SIG_SOFT, {"gamma": 2.0}),
    ]
    for fn, x0, y0, opts in cases:
        opts = {k: _b(backend, v) if isinstance(v, np.ndarray) else v for k, v in opts.items()}
        x, y = _b(backend, x0), _b(backend, y0)
        _, g = value_and_grad(fn)(x, y, **opts)
        if backend.name == "torch":
            import torch

            t = x.clone().requires_grad_(True)
            torch.sum(fn(t, y, **opts)).backward()
            ref = t.grad
        else:
            import jax
            import jax.numpy as jnp

            ref = jax.grad(lambda v, fn=fn, y=y, opts=opts: jnp.sum(fn(v, y, **opts)))(x)
        assert_close(g, ref, rtol=1e-9, atol=1e-12, err_msg=fn.__name__)


# ------------------------------------------------------------------------------------------------
# extremes: logits of ±100 and ±1e4 in float32, γ ∈ {0, 0.5, 2, 5}
# ------------------------------------------------------------------------------------------------

EXTREME = np.array([[100.0, -100.0, 0.0, 3.0], [1e4, -1e4, 0.0, 1e4 - 1], [-1e4, 1e4, 50, -50]])
EXTREME_LABELS = np.array([0, 1, 0])


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("scale", [1.0, -1.0])
def test_extremes_finite_values_and_gradients(backend, gamma, scale):
    x = _b(backend, EXTREME * scale, "float32")
    finite = []
    for fn, y, opts in (
        (sparse_softmax_focal_loss, _b(backend, EXTREME_LABELS), {"gamma": gamma}),
        (softmax_focal_loss, _b(backend, one_hot(EXTREME_LABELS, 4), "float32"), {"gamma": gamma}),
        (sparse_poly_cross_entropy, _b(backend, EXTREME_LABELS), {"epsilon": gamma}),
        (poly_cross_entropy, _b(backend, np.full((3, 4), 0.25), "float32"), {"epsilon": gamma}),
        (sigmoid_focal_loss, _b(backend, (EXTREME > 0) * 1.0, "float32"), {"gamma": gamma}),
        (sigmoid_focal_loss, _b(backend, (EXTREME < 0) * 1.0, "float32"), {"gamma": gamma}),
        (sigmoid_focal_loss, _b(backend, np.full((3, 4), 0.3), "float32"), {"gamma": gamma}),
    ):
        v, g = value_and_grad(fn)(x, y, **opts)
        finite.append((fn.__name__, v, g))
        if backend.autodiff:
            if backend.name == "torch":
                t = x.clone().requires_grad_(True)
                fn(t, y, **opts).sum().backward()
                finite.append((fn.__name__ + " autograd", v, t.grad))
            else:
                import jax

                ga = jax.grad(lambda u, fn=fn, y=y, opts=opts: fn(u, y, **opts).sum())(x)
                finite.append((fn.__name__ + " jax.grad", v, ga))
    for name, v, g in finite:
        assert np.all(np.isfinite(as_float64(v))), name
        assert np.all(np.isfinite(as_float64(g))), name


def test_extreme_values_are_exact_in_log_space():
    # logits [1e4, -1e4, 0] with label 0: 1 - q_0 = e^-1e4 (1 + e^-1e4), so the focal factor is
    # e^(-γ 1e4), and the loss is 0 in float32/float64 — but the sparse loss with label 2 is
    # (1 - q_2)^γ (1e4) = 1e4 exactly
    x = np.array([[1e4, -1e4, 0.0]], np.float32)
    assert float(sparse_softmax_focal_loss(x, np.array([2]), gamma=5.0)[0]) == 1e4
    # log(1 - q) of a near-certain class from the other logits: 1 - q = e^-30 (at logits 30, 0)
    x = np.array([[30.0, 0.0]], np.float32)
    got = float(sparse_softmax_focal_loss(x, np.array([0]), gamma=1.0)[0])
    ref = float(np.exp(-30.0) * np.log1p(np.exp(-30.0)))  # (1-q) · (-log q)
    assert abs(got - ref) <= 1e-6 * ref


# ------------------------------------------------------------------------------------------------
# torch tensors, NaN, errors
# ------------------------------------------------------------------------------------------------


def test_nan_in_nan_out(backend):
    x = X.copy()
    x[0, 1, 2] = np.nan
    v = sparse_softmax_focal_loss(_b(backend, x), _b(backend, LABELS))
    v = as_float64(v)
    assert np.isnan(v[0, 1]) and np.isfinite(np.delete(v.ravel(), 1)).all()
    s = SIG_X.copy()
    s[1, 1] = np.nan
    v = as_float64(sigmoid_focal_loss(_b(backend, s), _b(backend, SIG_Y)))
    assert np.isnan(v[1, 1]) and np.isnan(v).sum() == 1


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: sigmoid_focal_loss(SIG_X, SIG_Y, gamma=-1.0), "`gamma`"),
        (lambda: sigmoid_focal_loss(SIG_X, SIG_Y, alpha=1.5), "`alpha`"),
        (lambda: sigmoid_focal_loss(SIG_X, SIG_Y * 2), "`labels`"),
        (lambda: softmax_focal_loss(X, SOFT, gamma=float("inf")), "`gamma`"),
        (lambda: sparse_softmax_focal_loss(X, LABELS + 10), r"`labels` must hold class indices"),
        (lambda: sparse_softmax_focal_loss(X, LABELS, gamma="2"), "`gamma`"),
        (lambda: poly_cross_entropy(X, SOFT, epsilon=-2.0), "`epsilon`"),
        (lambda: sparse_poly_cross_entropy(X, LABELS, class_weights=CW[:2]), "`class_weights`"),
        (lambda: softmax_focal_loss(X, -SOFT), "`labels`"),
    ],
)
def test_bad_input_errors(call, match):
    with pytest.raises(infoloss.InfolossError, match=match):
        call()


def test_grad_out_buffer():
    buf = np.empty_like(X)
    _, g = value_and_grad(sparse_softmax_focal_loss)(X, LABELS, out=buf)
    _, ref = value_and_grad(sparse_softmax_focal_loss)(X, LABELS)
    assert g is buf
    np.testing.assert_array_equal(buf, ref)


@pytest.mark.skipif(not installed("torch"), reason="torch not installed")
def test_torch_float16_and_dtype():
    import torch

    x = torch.tensor(X, dtype=torch.float16)
    v = sparse_softmax_focal_loss(x, torch.tensor(LABELS))
    assert v.dtype == torch.float16
    ref = ref_categorical_focal(x.double().numpy(), one_hot(LABELS, C), 2.0)
    np.testing.assert_allclose(v.double().numpy(), ref, rtol=5e-3, atol=1e-3)


# ------------------------------------------------------------------------------------------------
# properties (hypothesis): γ = 0 → CE, 0 ≤ focal ≤ CE, poly ≥ CE for ε ≥ 0
# ------------------------------------------------------------------------------------------------

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
VARIANTS = st.sampled_from([v for v in available_variants() if v != "jax"])


@SETTINGS
@given(
    data=st.data(),
    shape=hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=5),
    variant=VARIANTS,
    gamma=st.sampled_from([0.5, 1.0, 2.0, 5.0]),
)
def test_property_focal_between_zero_and_ce(data, shape, variant, gamma):
    x = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-1e4, 1e4, width=32)))
    labels = data.draw(hnp.arrays(np.int64, shape[:-1], elements=st.integers(0, shape[-1] - 1)))
    y = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(0, 1, width=32)))
    b = Backend.of(variant)
    with b.context():
        xb = b.asarray(x)
        ce = as_float64(sparse_softmax_cross_entropy(xb, b.asarray(labels)))
        fl = as_float64(sparse_softmax_focal_loss(xb, b.asarray(labels), gamma=gamma))
        assert np.all(fl >= 0) and np.all(fl <= ce * (1 + 1e-12) + 1e-300)
        ce0 = as_float64(sparse_softmax_focal_loss(xb, b.asarray(labels), gamma=0.0))
        np.testing.assert_array_equal(ce0, ce)
        pc = as_float64(sparse_poly_cross_entropy(xb, b.asarray(labels), epsilon=gamma))
        assert np.all(pc >= ce)
        sce = as_float64(sigmoid_cross_entropy(xb, b.asarray(y)))
        sfl = as_float64(sigmoid_focal_loss(xb, b.asarray(y), gamma=gamma, alpha=None))
        assert np.all(sfl >= 0) and np.all(sfl <= sce * (1 + 1e-12) + 1e-300)
        for fn, yy in ((sparse_softmax_focal_loss, labels), (sigmoid_focal_loss, y)):
            _, g = value_and_grad(fn)(xb, b.asarray(yy), gamma=gamma)
            assert np.all(np.isfinite(to_numpy(g)))


# ------------------------------------------------------------------------------------------------
# the fused kernels (NumPy, sparse labels) agree with the generic definition
# ------------------------------------------------------------------------------------------------


def _both_paths(fn, x, y, **kw):
    from infoloss import _config

    fast = value_and_grad(fn)(x, y, **kw)
    with _config.generic_only():
        generic = value_and_grad(fn)(x, y, **kw)
    return fast, generic


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(7, 3), (300, 700), (3, 4, 40)])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_fused_sparse_kernels_agree_with_generic(dtype, shape, reduction):
    rng = np.random.default_rng(7)
    x = (rng.normal(size=shape) * 8).astype(dtype)
    x[0, ..., 1] = 60.0  # confident rows: q_y ≈ 1
    y = rng.integers(0, shape[-1], shape[:-1])
    y[0, ...] = 1
    y.reshape(-1)[2] = -100
    cw = rng.random(shape[-1]) + 0.1
    sw = rng.random(shape[:-1])
    tol = dict(rtol=2e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-10, atol=1e-12)
    for fn, kw in (
        (sparse_softmax_focal_loss, {"gamma": 2.0}),
        (sparse_softmax_focal_loss, {"gamma": 0.5}),
        (sparse_poly_cross_entropy, {"epsilon": 1.0}),
    ):
        opts = dict(kw, ignore_index=-100, class_weights=cw, sample_weights=sw, reduction=reduction)
        (v1, g1), (v2, g2) = _both_paths(fn, x, y, **opts)
        assert_close(v1, v2, **tol, scale="all" if reduction == "none" else None)
        assert_close(g1, g2, **tol, scale="all")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_kernel_extremes_agree_with_generic(dtype):
    # rows whose other logits are all more than 745 below the target (exp underflows even in
    # float64: the kernel's second pass), all -inf rows, masked classes, nan and +inf rows
    x = np.array(
        [
            [1e4, -1e4, 0.0, 5.0],
            [2000.0, 0.0, -np.inf, 1.0],
            [-np.inf, -np.inf, -np.inf, -np.inf],
            [3.0, -np.inf, 1.0, 2.0],
            [np.nan, 0.0, 1.0, 2.0],
            [np.inf, 0.0, 1.0, 2.0],
            [-1e4, 1e4, 50.0, -50.0],
        ],
        dtype,
    )
    y = np.array([0, 0, 2, 1, 0, 1, 1])
    cw = np.array([1.0, 0.0, 2.0, 1.0])  # the masked target of row 3 has weight 0
    for gamma in (0.5, 2.0, 5.0):
        (v1, g1), (v2, g2) = _both_paths(
            sparse_softmax_focal_loss, x, y, gamma=gamma, class_weights=cw
        )
        assert_close(v1, v2, scale="all")
        assert_close(g1, g2, scale="all")
    from infoloss._fast.kernels import target_logs

    lq, l1m = target_logs(x[:2], y[:2], None)
    x64 = x[:2].astype(np.float64)
    others = [sp.logsumexp(np.delete(x64[i], y[i])) - sp.logsumexp(x64[i]) for i in range(2)]
    np.testing.assert_allclose(l1m, others, rtol=1e-12)  # -9994.99…, -1998.69…: exact
    np.testing.assert_allclose(lq, [sp.log_softmax(x64[i])[y[i]] for i in range(2)], atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_fused_sigmoid_focal_agrees_with_generic(dtype, reduction):
    rng = np.random.default_rng(8)
    x = (rng.normal(size=(40, 300)) * 10).astype(dtype)
    x[0, :8] = [1e4, -1e4, 100, -100, np.inf, -np.inf, np.nan, 0.0]
    y = (rng.random((40, 300)) < 0.3).astype(dtype)
    y[1] = rng.random(300)  # soft labels
    y[0, :8] = [1, 0, 0, 1, 1, 0, 1, 1]
    sw = rng.random((40, 1))
    tol = dict(rtol=2e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-10, atol=1e-12)
    for kw in ({"gamma": 2.0}, {"gamma": 0.5, "alpha": None}, {"gamma": 5.0, "alpha": 0.9}):
        for w in (None, sw):
            opts = dict(kw, sample_weights=w, reduction=reduction)
            (v1, g1), (v2, g2) = _both_paths(sigmoid_focal_loss, x, y, **opts)
            assert_close(v1, v2, **tol, scale="all" if reduction == "none" else None)
            assert_close(g1, g2, **tol, scale="all")


# --------------------------------------------------------------------------- Keras's own losses


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
@pytest.mark.parametrize("balanced", [True, False])
def test_sigmoid_focal_matches_keras_binary_focal(gamma, balanced):
    """keras.losses.BinaryFocalCrossentropy(from_logits=True) is the per-example mean over the
    last axis of sigmoid_focal_loss (alpha=None without class balancing)."""
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(7)
    x = rng.normal(size=(6, 5)) * 3
    y = (rng.random((6, 5)) < 0.4).astype(np.float64)
    ref = keras.losses.BinaryFocalCrossentropy(
        apply_class_balancing=balanced, alpha=0.25, gamma=gamma, from_logits=True, reduction=None
    )(y, x)
    got = sigmoid_focal_loss(x, y, alpha=0.25 if balanced else None, gamma=gamma)
    np.testing.assert_allclose(np.asarray(got).mean(-1), keras.ops.convert_to_numpy(ref), rtol=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
def test_softmax_focal_matches_keras_categorical_focal(gamma):
    """keras.losses.CategoricalFocalCrossentropy(from_logits=True, alpha=a) is
    softmax_focal_loss with class_weights a (Keras clips probabilities to [1e-7, 1 − 1e-7]:
    moderate logits, so that the clip never acts)."""
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(8)
    x = rng.normal(size=(6, 5)) * 2
    t = rng.dirichlet(np.ones(5), size=6)
    alpha = np.array([0.1, 0.2, 0.3, 0.25, 0.15])
    ref = keras.losses.CategoricalFocalCrossentropy(
        alpha=alpha.tolist(), gamma=gamma, from_logits=True, reduction=None
    )(t, x)
    got = softmax_focal_loss(x, t, gamma=gamma, class_weights=alpha)
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(ref), rtol=1e-6)
    yi = rng.integers(0, 5, size=6)
    got_sparse = sparse_softmax_focal_loss(x, yi, gamma=gamma, class_weights=alpha)
    ref_sparse = keras.losses.CategoricalFocalCrossentropy(
        alpha=alpha.tolist(), gamma=gamma, from_logits=True, reduction=None
    )(np.eye(5)[yi], x)
    np.testing.assert_allclose(got_sparse, keras.ops.convert_to_numpy(ref_sparse), rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("gamma", GAMMAS)
def test_fused_sigmoid_focal_soft_labels_extremes_agree_with_generic(dtype, gamma):
    """The soft-label loop (log-space factor in the logits' dtype) at the extremes: ±1e4, ±100,
    ±inf, nan logits and labels 0, 1, tiny (subnormal in float32), near 1, one half."""
    rng = np.random.default_rng(9)
    ext = np.array([1e4, -1e4, 100.0, -100.0, 30.0, -30.0, 1e-3, 0.0])
    lab = np.array([0.0, 1.0, 0.5, 1e-40, 1 - 1e-7, 0.3, 1e-3, 0.999])
    x = np.concatenate([np.repeat(ext, 8), rng.normal(size=300) * 10]).astype(dtype)
    y = np.concatenate([np.tile(lab, 8), rng.random(300)]).astype(dtype)
    x, y = x[None, :], y[None, :]
    tol = dict(rtol=2e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-10, atol=1e-12)
    for alpha in (0.25, None) if gamma else (0.25,):
        (v1, g1), (v2, g2) = _both_paths(sigmoid_focal_loss, x, y, gamma=gamma, alpha=alpha)
        assert_close(v1, v2, **tol, scale="all")
        assert_close(g1, g2, **tol, scale="all")
        assert np.isfinite(v1).all() and np.isfinite(g1).all()
        # against torchvision's formula in float64 where it is finite (moderate logits)
        ref = ref_torchvision_focal(x, y, -1 if alpha is None else alpha, gamma)
        ok = np.abs(x) <= 100
        np.testing.assert_allclose(v1[ok], ref[ok], **tol)
    xn = x.copy()
    xn[0, ::7] = np.nan
    xn[0, 3::11] = np.inf
    xn[0, 5::13] = -np.inf
    (v1, g1), (v2, g2) = _both_paths(sigmoid_focal_loss, xn, y, gamma=gamma, alpha=0.25)
    assert_close(v1, v2, **tol, scale="all")
    assert_close(g1, g2, **tol, scale="all")
    assert np.isnan(v1[np.isnan(xn)]).all() and not np.isnan(v1[~np.isnan(xn)]).any()
