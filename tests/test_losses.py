"""Classification losses from logits (issue 2, docs/semantics.md "Classification losses")."""

from __future__ import annotations

import itertools

import mpmath
import numpy as np
import pytest
from _helpers import (
    ON_NUMPY,
    as_float64,
    assert_close,
    dtype_name,
    expect,
    one_hot,
    ref_sigmoid_ce,
    ref_softmax_ce,
    ref_softmax_entropy,
    ref_sparse_ce,
)

import infoloss

RNG = np.random.default_rng(1234)
C = 5
BATCH = (2, 3)
X = RNG.normal(size=(*BATCH, C)) * 2  # logits (2, 3, 5)
LABELS = np.array([[0, 4, 2], [3, 1, 4]])  # (2, 3)
SOFT = RNG.random((*BATCH, C))
SOFT = SOFT / SOFT.sum(-1, keepdims=True)
CW = np.array([0.5, 1.0, 2.0, 1.5, 0.25])
SW = np.array([[1.0, 0.5, 2.0], [0.0, 1.5, 3.0]])
IGNORE = -100
LABELS_IGN = np.array([[0, IGNORE, 2], [3, 1, IGNORE]])

SIG_X = RNG.normal(size=(4, 3)) * 3
SIG_Y = (RNG.random((4, 3)) < 0.5).astype(np.float64)
SIG_SOFT = RNG.random((4, 3))
PW = np.array([0.5, 2.0, 3.0])
SIG_SW = np.array([[1.0], [0.5], [2.0], [0.0]])

REDUCTIONS = ["none", "sum", "mean"]


def _opt(backend, cw, sw, dtype="float64"):
    kw = {}
    if cw is not None:
        kw["class_weights"] = backend.asarray(cw, dtype)
    if sw is not None:
        kw["sample_weights"] = backend.asarray(sw, dtype)
    return kw


# ------------------------------------------------------------------------------------------------
# dense one-hot == sparse, for every option combination
# ------------------------------------------------------------------------------------------------

GRID = list(
    itertools.product(
        [None, "cw"],  # class_weights
        [None, "sw"],  # sample_weights
        [None, IGNORE],  # ignore_index
        [0.0, 0.2],  # label_smoothing
        [0.0, 0.01],  # z_loss
        REDUCTIONS,
    )
)


def _grid_id(p):
    cw, sw, ign, eps, z, red = p
    ig = "ign" if ign is not None else "noign"
    return f"{cw or 'nocw'}-{sw or 'nosw'}-{ig}-eps{eps}-z{z}-{red}"


@pytest.mark.parametrize("combo", GRID, ids=[_grid_id(p) for p in GRID])
def test_dense_one_hot_equals_sparse(backend, combo):
    cw, sw, ign, eps, z, red = combo
    cw = CW if cw else None
    sw = SW if sw else None
    labels = LABELS_IGN if ign is not None else LABELS
    keep = labels != IGNORE
    x = backend.asarray(X)
    sparse = infoloss.sparse_softmax_cross_entropy(
        x,
        backend.asarray(labels, "int64"),
        ignore_index=ign,
        label_smoothing=eps,
        z_loss=z,
        reduction=red,
        **_opt(backend, cw, sw),
    )
    # dense equivalent: ignored examples are examples of sample weight 0
    sw_dense = (np.ones(BATCH) if sw is None else sw) * keep
    dense_kw = _opt(backend, cw, sw_dense if (sw is not None or ign is not None) else None)
    dense = infoloss.softmax_cross_entropy(
        x,
        backend.asarray(one_hot(np.where(keep, labels, 0), C)),
        label_smoothing=eps,
        z_loss=z,
        reduction=red,
        **dense_kw,
    )
    assert_close(sparse, dense, rtol=1e-12, atol=1e-14)


def _covering(factors, cycled):
    """Every combination of ``factors``; the ``cycled`` options rotate through theirs."""
    rows = []
    cyc = list(itertools.product(*cycled))
    for i, combo in enumerate(itertools.product(*factors)):
        rows.append(combo + cyc[(i + i // len(cyc)) % len(cyc)])
    return rows


# (cw, sw, ignore, eps, z, reduction): weights x ignore x reduction in full, eps/z rotating
REF_GRID = [
    (cw, sw, ign, eps, z, red)
    for cw, sw, ign, red, eps, z in _covering(
        [[None, "cw"], [None, "sw"], [None, IGNORE], REDUCTIONS], [[0.0, 0.2], [0.0, 0.01]]
    )
]


@pytest.mark.parametrize("combo", REF_GRID, ids=[_grid_id(p) for p in REF_GRID])
def test_sparse_matches_reference(backend, combo):
    cw, sw, ign, eps, z, red = combo
    cw = CW if cw else None
    sw = SW if sw else None
    labels = LABELS_IGN if ign is not None else LABELS
    got = infoloss.sparse_softmax_cross_entropy(
        backend.asarray(X),
        backend.asarray(labels, "int64"),
        ignore_index=ign,
        label_smoothing=eps,
        z_loss=z,
        reduction=red,
        **_opt(backend, cw, sw),
    )
    ref = ref_sparse_ce(
        X,
        labels,
        class_weights=cw,
        sample_weights=sw,
        ignore_index=ign,
        label_smoothing=eps,
        z_loss=z,
        reduction=red,
    )
    assert_close(got, expect(backend, ref))


DENSE_GRID = [c for c in REF_GRID if c[2] is None]


@pytest.mark.parametrize("combo", DENSE_GRID, ids=[_grid_id(p) for p in DENSE_GRID])
def test_dense_soft_labels_match_reference(backend, combo):
    cw, sw, _, eps, z, red = combo
    cw = CW if cw else None
    sw = SW if sw else None
    got = infoloss.softmax_cross_entropy(
        backend.asarray(X),
        backend.asarray(SOFT),
        label_smoothing=eps,
        z_loss=z,
        reduction=red,
        **_opt(backend, cw, sw),
    )
    ref = ref_softmax_ce(
        X, SOFT, class_weights=cw, sample_weights=sw, label_smoothing=eps, z_loss=z, reduction=red
    )
    assert_close(got, expect(backend, ref))


def test_dense_mean_with_class_weights_divides_by_unsmoothed_weight(backend):
    # hand-computed: w_i = sw_i * sum_c cw_c y_ic with the *unsmoothed* labels
    x = np.array([[0.0, 0.0], [1.0, -1.0]])
    y = np.array([[1.0, 0.0], [0.25, 0.75]])
    cw = np.array([2.0, 4.0])
    eps = 0.5
    t = (1 - eps) * y + eps / 2
    lse = np.log(np.exp(x).sum(-1))
    ce = (cw * t * (lse[:, None] - x)).sum(-1)
    w = y @ cw  # [2.0, 3.5]
    got = infoloss.softmax_cross_entropy(
        backend.asarray(x),
        backend.asarray(y),
        class_weights=backend.asarray(cw),
        label_smoothing=eps,
        reduction="mean",
    )
    assert_close(got, expect(backend, ce.sum() / w.sum()))


# ------------------------------------------------------------------------------------------------
# against PyTorch where the semantics coincide
# ------------------------------------------------------------------------------------------------

TORCH_SPARSE = _covering([[None, "cw"], [None, IGNORE, 1], REDUCTIONS], [[0.0, 0.2]])


@pytest.mark.parametrize("combo", TORCH_SPARSE)
def test_sparse_matches_torch(backend, combo):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    cw, ign, red, eps = combo
    cw = CW if cw else None
    labels = LABELS_IGN if ign == IGNORE else LABELS
    xt = torch.tensor(X).permute(0, 2, 1)  # torch wants classes on dim 1
    ref = F.cross_entropy(
        xt,
        torch.tensor(labels),
        weight=None if cw is None else torch.tensor(cw),
        ignore_index=-12345 if ign is None else ign,
        label_smoothing=eps,
        reduction=red,
    )
    got = infoloss.sparse_softmax_cross_entropy(
        backend.asarray(X),
        backend.asarray(labels, "int64"),
        ignore_index=ign,
        label_smoothing=eps,
        reduction=red,
        **_opt(backend, cw, None),
    )
    assert_close(got, expect(backend, ref.numpy()))


TORCH_DENSE = [
    c
    for c in itertools.product([None, "cw"], [0.0, 0.2], REDUCTIONS)
    if not (c[0] and c[2] == "mean")
]  # torch divides a weighted soft mean by N


@pytest.mark.parametrize("combo", TORCH_DENSE)
def test_dense_matches_torch(backend, combo):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    cw, eps, red = combo
    cw = CW if cw else None
    ref = F.cross_entropy(
        torch.tensor(X).permute(0, 2, 1),
        torch.tensor(SOFT).permute(0, 2, 1),
        weight=None if cw is None else torch.tensor(cw),
        label_smoothing=eps,
        reduction=red,
    )
    got = infoloss.softmax_cross_entropy(
        backend.asarray(X),
        backend.asarray(SOFT),
        label_smoothing=eps,
        reduction=red,
        **_opt(backend, cw, None),
    )
    assert_close(got, expect(backend, ref.numpy()))


TORCH_SIGMOID = [
    c
    for c in itertools.product([None, "pw"], [None, "sw"], [0.0, 0.1], REDUCTIONS)
    if not (c[1] and c[3] == "mean")
]  # torch divides a weighted mean by numel


@pytest.mark.parametrize("combo", TORCH_SIGMOID)
def test_sigmoid_matches_torch(backend, combo):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    pw, sw, eps, red = combo
    pw = PW if pw else None
    sw = SIG_SW if sw else None
    y_smooth = SIG_SOFT * (1 - eps) + eps / 2
    ref = F.binary_cross_entropy_with_logits(
        torch.tensor(SIG_X),
        torch.tensor(y_smooth),
        weight=None if sw is None else torch.tensor(sw),
        pos_weight=None if pw is None else torch.tensor(pw),
        reduction=red,
    )
    kw = {}
    if pw is not None:
        kw["pos_weight"] = backend.asarray(pw)
    if sw is not None:
        kw["sample_weights"] = backend.asarray(sw)
    got = infoloss.sigmoid_cross_entropy(
        backend.asarray(SIG_X), backend.asarray(SIG_SOFT), label_smoothing=eps, reduction=red, **kw
    )
    assert_close(got, expect(backend, ref.numpy()))


SIGMOID_GRID = list(itertools.product([None, "pw"], [None, "sw"], [0.0, 0.1], REDUCTIONS))


@pytest.mark.parametrize("combo", SIGMOID_GRID)
def test_sigmoid_matches_reference(backend, combo):
    pw, sw, eps, red = combo
    pw = PW if pw else None
    sw = SIG_SW if sw else None
    kw = {}
    if pw is not None:
        kw["pos_weight"] = backend.asarray(pw)
    if sw is not None:
        kw["sample_weights"] = backend.asarray(sw)
    got = infoloss.sigmoid_cross_entropy(
        backend.asarray(SIG_X), backend.asarray(SIG_Y), label_smoothing=eps, reduction=red, **kw
    )
    ref = ref_sigmoid_ce(
        SIG_X, SIG_Y, pos_weight=pw, sample_weights=sw, label_smoothing=eps, reduction=red
    )
    assert_close(got, expect(backend, ref))


def test_sigmoid_weighted_mean_divides_by_sum_of_broadcast_weights(backend):
    x = np.array([[0.0, 1.0], [2.0, -1.0]])
    y = np.array([[1.0, 0.0], [0.0, 1.0]])
    sw = np.array([[2.0], [0.0]])  # broadcast to (2, 2): sum 4
    loss = np.logaddexp(0, -x) * y + np.logaddexp(0, x) * (1 - y)
    ref = (loss * sw).sum() / 4.0
    got = infoloss.sigmoid_cross_entropy(
        backend.asarray(x), backend.asarray(y), sample_weights=backend.asarray(sw), reduction="mean"
    )
    assert_close(got, expect(backend, ref))


# ------------------------------------------------------------------------------------------------
# the per-loss template: scalar, batched, axis, keywords, reductions, masking, extremes, dtypes
# ------------------------------------------------------------------------------------------------


def test_softmax_ce_1d(backend):
    x = backend.asarray([2.0, 1.0, 0.1])
    y = backend.asarray([1.0, 0.0, 0.0])
    ref = np.log(np.exp([2.0, 1.0, 0.1]).sum()) - 2.0
    assert_close(infoloss.softmax_cross_entropy(x, y), expect(backend, ref))
    assert_close(
        infoloss.sparse_softmax_cross_entropy(x, backend.asarray(0, "int64")), expect(backend, ref)
    )


def test_tutorial_keyword_call(backend):
    # TF-style: softmax_cross_entropy(labels=label, logits=h0)
    h0 = backend.asarray([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]])
    label = backend.asarray([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    got = infoloss.softmax_cross_entropy(labels=label, logits=h0)
    ref = ref_softmax_ce(as_float64(h0), as_float64(label))
    assert_close(got, expect(backend, ref))
    got = infoloss.sparse_softmax_cross_entropy(labels=backend.asarray([0, 1], "int64"), logits=h0)
    assert_close(got, expect(backend, ref))
    got = infoloss.sigmoid_cross_entropy(labels=label, logits=h0)
    assert_close(got, expect(backend, ref_sigmoid_ce(as_float64(h0), as_float64(label))))


@pytest.mark.parametrize("axis", [0, 1, -2, 2, -1])
def test_softmax_ce_axis_equals_moveaxis(backend, axis):
    x3 = np.moveaxis(X, -1, axis)
    y3 = np.moveaxis(SOFT, -1, axis)
    got = infoloss.softmax_cross_entropy(
        backend.asarray(x3),
        backend.asarray(y3),
        axis=axis,
        label_smoothing=0.1,
        z_loss=0.01,
        **_opt(backend, CW, SW),
    )
    ref = infoloss.softmax_cross_entropy(
        backend.asarray(X),
        backend.asarray(SOFT),
        label_smoothing=0.1,
        z_loss=0.01,
        **_opt(backend, CW, SW),
    )
    assert_close(got, ref)
    assert_close(
        got,
        expect(
            backend,
            ref_softmax_ce(
                X, SOFT, class_weights=CW, sample_weights=SW, label_smoothing=0.1, z_loss=0.01
            ),
        ),
    )


@pytest.mark.parametrize("axis", [0, 1, -2, 2, -1])
def test_sparse_ce_axis_equals_moveaxis(backend, axis):
    x3 = np.moveaxis(X, -1, axis)
    got = infoloss.sparse_softmax_cross_entropy(
        backend.asarray(x3),
        backend.asarray(LABELS_IGN, "int64"),
        axis=axis,
        ignore_index=IGNORE,
        label_smoothing=0.1,
        z_loss=0.01,
        **_opt(backend, CW, SW),
    )
    ref = ref_sparse_ce(
        X,
        LABELS_IGN,
        ignore_index=IGNORE,
        label_smoothing=0.1,
        z_loss=0.01,
        class_weights=CW,
        sample_weights=SW,
    )
    assert_close(got, expect(backend, ref))


@pytest.mark.parametrize("red", REDUCTIONS)
def test_reduction_shapes(backend, red):
    x = backend.asarray(X)
    shape = BATCH if red == "none" else ()
    out = infoloss.softmax_cross_entropy(x, backend.asarray(SOFT), reduction=red)
    assert tuple(out.shape) == shape
    out = infoloss.sparse_softmax_cross_entropy(x, backend.asarray(LABELS, "int64"), reduction=red)
    assert tuple(out.shape) == shape
    out = infoloss.sigmoid_cross_entropy(x, backend.asarray(SOFT), reduction=red)
    assert tuple(out.shape) == (X.shape if red == "none" else ())


def test_z_loss_known_value(backend):
    x = backend.asarray(np.zeros((2, 4)))
    got = infoloss.sparse_softmax_cross_entropy(x, backend.asarray([1, 3], "int64"), z_loss=1.0)
    assert_close(got, expect(backend, [np.log(4) + np.log(4) ** 2] * 2))


def test_ignore_index_equal_to_a_valid_class(backend):
    got = infoloss.sparse_softmax_cross_entropy(
        backend.asarray(X),
        backend.asarray(LABELS, "int64"),
        ignore_index=4,
        z_loss=0.1,
        label_smoothing=0.1,
        reduction="none",
    )
    ref = ref_sparse_ce(X, LABELS, ignore_index=4, z_loss=0.1, label_smoothing=0.1)
    assert as_float64(got)[0, 1] == 0.0 and as_float64(got)[1, 2] == 0.0
    assert_close(got, expect(backend, ref))


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_sparse_label_integer_dtypes(backend, dtype):
    got = infoloss.sparse_softmax_cross_entropy(backend.asarray(X), backend.asarray(LABELS, dtype))
    assert_close(got, expect(backend, ref_sparse_ce(X, LABELS)))


def test_sparse_class_weights_with_ignored_negative_label(backend):
    # the ignored label -100 must not be used to index class_weights
    got = infoloss.sparse_softmax_cross_entropy(
        backend.asarray(X),
        backend.asarray(LABELS_IGN, "int64"),
        ignore_index=IGNORE,
        class_weights=backend.asarray(CW),
        reduction="mean",
    )
    assert_close(
        got,
        expect(
            backend,
            ref_sparse_ce(X, LABELS_IGN, ignore_index=IGNORE, class_weights=CW, reduction="mean"),
        ),
    )


# -- mean over nothing ----------------------------------------------------------------------------


@pytest.mark.parametrize("z", [0.0, 0.1])
def test_mean_over_all_ignored_is_zero(backend, z):
    labels = backend.asarray(np.full(BATCH, IGNORE), "int64")
    got = infoloss.sparse_softmax_cross_entropy(
        backend.asarray(X),
        labels,
        ignore_index=IGNORE,
        z_loss=z,
        label_smoothing=0.1,
        reduction="mean",
    )
    assert_close(got, expect(backend, 0.0), atol=0)
    val, grad = infoloss.value_and_grad(infoloss.sparse_softmax_cross_entropy)(
        backend.asarray(X),
        labels,
        ignore_index=IGNORE,
        z_loss=z,
        label_smoothing=0.1,
        reduction="mean",
    )
    assert_close(val, expect(backend, 0.0), atol=0)
    assert_close(grad, expect(backend, np.zeros_like(X)), atol=0)


def test_mean_over_zero_sample_weights_is_zero(backend):
    zero = backend.asarray(np.zeros(BATCH))
    got = infoloss.softmax_cross_entropy(
        backend.asarray(X), backend.asarray(SOFT), sample_weights=zero, reduction="mean"
    )
    assert_close(got, expect(backend, 0.0), atol=0)
    got = infoloss.sparse_softmax_cross_entropy(
        backend.asarray(X), backend.asarray(LABELS, "int64"), sample_weights=zero, reduction="mean"
    )
    assert_close(got, expect(backend, 0.0), atol=0)
    got = infoloss.sigmoid_cross_entropy(
        backend.asarray(SIG_X),
        backend.asarray(SIG_Y),
        sample_weights=backend.asarray(np.zeros((4, 1))),
        reduction="mean",
    )
    assert_close(got, expect(backend, 0.0), atol=0)


def test_mean_over_nothing_autograd_gradient_is_zero(backend):
    # the generic path itself (not only value_and_grad) must give a zero, finite gradient
    if backend.name == "torch":
        import torch

        x = torch.tensor(X, requires_grad=True)
        infoloss.sparse_softmax_cross_entropy(
            x, torch.full(BATCH, IGNORE), ignore_index=IGNORE, z_loss=0.1, reduction="mean"
        ).backward()
        g = x.grad.numpy()
    elif backend.name == "jax":
        import jax
        import jax.numpy as jnp

        g = np.asarray(
            jax.grad(
                lambda x: infoloss.sparse_softmax_cross_entropy(
                    x, jnp.full(BATCH, IGNORE), ignore_index=IGNORE, z_loss=0.1, reduction="mean"
                )
            )(jnp.asarray(X))
        )
    else:
        pytest.skip("autodiff backends only")
    np.testing.assert_array_equal(g, np.zeros_like(X))


# -- masking and extremes --------------------------------------------------------------------------


def test_masked_neg_inf_logits(backend):
    x = backend.asarray([[0.0, -np.inf, 0.0, 1.0], [-np.inf, 2.0, -np.inf, 0.0]])
    y = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.5, 0.0, 0.5]])
    ref = [np.log(2 + np.e), np.log(np.exp(2.0) + 1) - 0.5 * 2.0]
    got = infoloss.softmax_cross_entropy(x, backend.asarray(y))
    assert_close(got, expect(backend, ref))
    got = infoloss.sparse_softmax_cross_entropy(x, backend.asarray([0, 1], "int64"))
    assert_close(got, expect(backend, [np.log(2 + np.e), np.log(np.exp(2.0) + 1) - 2.0]))
    # class weights and z-loss keep the masked term at exactly 0
    got = infoloss.sparse_softmax_cross_entropy(
        x,
        backend.asarray([0, 1], "int64"),
        class_weights=backend.asarray([1.0, 2, 3, 4]),
        z_loss=0.5,
    )
    ref = ref_sparse_ce(as_float64(x), [0, 1], class_weights=[1.0, 2, 3, 4], z_loss=0.5)
    assert np.all(np.isfinite(ref))
    assert_close(got, expect(backend, ref))


def test_neg_inf_on_target_or_with_smoothing_is_inf(backend):
    x = backend.asarray([[0.0, -np.inf, 0.0], [0.0, -np.inf, 0.0]])
    got = infoloss.sparse_softmax_cross_entropy(x, backend.asarray([1, 0], "int64"))
    assert_close(got, expect(backend, [np.inf, np.log(2)]))
    got = infoloss.softmax_cross_entropy(x, backend.asarray([[0.0, 1, 0], [1.0, 0, 0]]))
    assert_close(got, expect(backend, [np.inf, np.log(2)]))
    # semantics.md: with label smoothing every class has target mass, so a -inf logit gives +inf
    got = infoloss.sparse_softmax_cross_entropy(
        x, backend.asarray([0, 2], "int64"), label_smoothing=0.1
    )
    assert_close(got, expect(backend, [np.inf, np.inf]))


def test_masked_ignored_example_contributes_nothing(backend):
    # an ignored example whose logits are -inf/huge must not poison the reduction
    x = np.array([[0.0, 1.0, 2.0], [5.0, -np.inf, 3.0]])
    got = infoloss.sparse_softmax_cross_entropy(
        backend.asarray(x),
        backend.asarray([2, IGNORE], "int64"),
        ignore_index=IGNORE,
        z_loss=0.1,
        reduction="mean",
    )
    lse = np.log(np.exp([0.0, 1.0, 2.0]).sum())
    assert_close(got, expect(backend, (lse - 2.0) + 0.1 * lse**2))


def test_extreme_logits_float32(backend):
    data = np.array([[1e30, -1e30, 0.0], [-1e30, 1e30, 1e30], [1e30, 1e30, -1e30]])
    x = backend.asarray(data, "float32")
    got = infoloss.sparse_softmax_cross_entropy(x, backend.asarray([0, 0, 2], "int64"))
    x64 = as_float64(x)
    ref = [0.0, x64[1, 1] - x64[1, 0], x64[2, 0] - x64[2, 2]]
    assert np.all(np.isfinite(as_float64(got)))
    assert_close(got, expect(backend, ref, like=x))
    y = backend.asarray([[1.0, 0, 0], [0, 0.5, 0.5], [0, 0, 1.0]], "float32")
    got = infoloss.softmax_cross_entropy(x, y, label_smoothing=0.0)
    ref = [0.0, np.log(2), x64[2, 0] - x64[2, 2] + np.log(2)]
    assert_close(got, expect(backend, ref, like=x))
    for fn, lab in [
        (infoloss.sparse_softmax_cross_entropy, backend.asarray([0, 0, 2], "int64")),
        (infoloss.softmax_cross_entropy, y),
    ]:
        val, grad = infoloss.value_and_grad(fn)(x, lab, reduction="mean")
        assert np.all(np.isfinite(as_float64(val))) and np.all(np.isfinite(as_float64(grad)))


def test_sigmoid_extreme_and_masked(backend):
    data = [1e30, -1e30, 1e30, -1e30, np.inf, -np.inf, -np.inf, 40.0]
    y = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    x = backend.asarray(data, "float32")
    got = infoloss.sigmoid_cross_entropy(x, backend.asarray(y, "float32"))
    x64 = as_float64(x)
    ref = [0.0, 0.0, x64[2], -x64[3], 0.0, 0.0, np.inf, np.exp(-40.0)]
    assert_close(got, expect(backend, ref, like=x), atol=1e-20)
    _val, grad = infoloss.value_and_grad(infoloss.sigmoid_cross_entropy)(
        x[:4], backend.asarray(y[:4], "float32")
    )
    assert_close(grad, expect(backend, [0.0, 0.0, 1.0, -1.0], like=x))


def test_sigmoid_pos_weight_broadcasts_over_last_axis(backend):
    x = backend.asarray(SIG_X)
    got = infoloss.sigmoid_cross_entropy(x, backend.asarray(SIG_Y), pos_weight=backend.asarray(PW))
    ref = PW * SIG_Y * np.logaddexp(0, -SIG_X) + (1 - SIG_Y) * np.logaddexp(0, SIG_X)
    assert_close(got, expect(backend, ref))


def test_sigmoid_1d_and_scalar(backend):
    got = infoloss.sigmoid_cross_entropy(backend.asarray(0.0), backend.asarray(1.0))
    assert_close(got, expect(backend, np.log(2)))
    got = infoloss.sigmoid_cross_entropy(
        backend.asarray([3.0, -2.0]), backend.asarray([0.0, 0.3]), label_smoothing=0.2
    )
    assert_close(got, expect(backend, ref_sigmoid_ce([3.0, -2.0], [0.0, 0.3], label_smoothing=0.2)))


# -- known values in high precision (mpmath) ---------------------------------------------

MP_SOFTMAX_TABLE = [
    ([1000.0, 0.0, -1000.0], 2),
    ([1000.0, 0.0, -1000.0], 0),
    ([-745.0, -745.0], 1),
    ([1e-20, 0.0, 0.0], 0),
    ([30.0, -30.0, 5.0, 5.0], 3),
]


@pytest.mark.parametrize("row,label", MP_SOFTMAX_TABLE)
def test_sparse_ce_known_values(backend, row, label):
    with mpmath.workdps(50):
        xs = [mpmath.mpf(v) for v in row]
        ref = float(mpmath.log(sum(mpmath.exp(v) for v in xs)) - xs[label])
    got = infoloss.sparse_softmax_cross_entropy(
        backend.asarray(row), backend.asarray(label, "int64")
    )
    assert_close(got, expect(backend, ref), rtol=1e-13, atol=1e-300)


MP_SIGMOID_TABLE = [
    (40.0, 1.0),
    (40.0, 0.0),
    (-40.0, 1.0),
    (-700.0, 0.0),
    (1e-12, 1.0),
    (800.0, 0.25),
    (-30.0, 0.5),
]


@pytest.mark.parametrize("x,y", MP_SIGMOID_TABLE)
def test_sigmoid_ce_known_values(backend, x, y):
    with mpmath.workdps(50):
        xm, ym = mpmath.mpf(x), mpmath.mpf(y)
        sp_pos = mpmath.log1p(mpmath.exp(-xm))  # softplus(-x) = -log sigmoid(x)
        sp_neg = mpmath.log1p(mpmath.exp(xm))  # softplus(x)
        ref = float(ym * sp_pos + (1 - ym) * sp_neg)
    got = infoloss.sigmoid_cross_entropy(backend.asarray(x), backend.asarray(y))
    assert_close(got, expect(backend, ref), rtol=1e-12, atol=0)


# -- dtypes and types --------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_losses(backend, dtype):
    if not backend.supports(dtype):
        pytest.skip(f"{backend.name} has no {dtype}")
    x = backend.asarray(X * 5, dtype)  # values up to ~30: exp overflows float16 if not upcast
    y = backend.asarray(SOFT, dtype)
    x64, y64 = as_float64(x), as_float64(y)
    kw = dict(label_smoothing=0.1, z_loss=0.01)
    for red in REDUCTIONS:
        got = infoloss.softmax_cross_entropy(x, y, reduction=red, **kw)
        assert dtype_name(got) == dtype
        assert_close(got, expect(backend, ref_softmax_ce(x64, y64, reduction=red, **kw), like=x))
        got = infoloss.sparse_softmax_cross_entropy(
            x, backend.asarray(LABELS, "int64"), reduction=red, **kw
        )
        assert_close(got, expect(backend, ref_sparse_ce(x64, LABELS, reduction=red, **kw), like=x))
        got = infoloss.sigmoid_cross_entropy(x, y, reduction=red, label_smoothing=0.1)
        assert_close(
            got,
            expect(backend, ref_sigmoid_ce(x64, y64, reduction=red, label_smoothing=0.1), like=x),
        )
    # large logits: lse would overflow in float16 arithmetic (exp(12) > 65504 is fine, 60000 not)
    big = backend.asarray([[60000.0, 0.0, -60000.0]], dtype)
    got = infoloss.sparse_softmax_cross_entropy(big, backend.asarray([1], "int64"))
    assert_close(got, expect(backend, [as_float64(big)[0, 0]], like=big))


def test_float32_stays_float32(backend):
    x = backend.asarray(X, "float32")
    for red in REDUCTIONS:
        for out in (
            infoloss.softmax_cross_entropy(x, backend.asarray(SOFT, "float32"), reduction=red),
            infoloss.sparse_softmax_cross_entropy(
                x, backend.asarray(LABELS, "int64"), reduction=red
            ),
            infoloss.sigmoid_cross_entropy(x, backend.asarray(SOFT, "float32"), reduction=red),
        ):
            assert backend.is_native(out), type(out)
            assert dtype_name(out) == "float32"


@ON_NUMPY
def test_lists_are_numpy(backend):
    out = infoloss.softmax_cross_entropy([[1.0, 2.0]], [[0.0, 1.0]])
    assert isinstance(out, (np.ndarray, np.generic))
    np.testing.assert_allclose(out, [np.log1p(np.exp(-1.0))], rtol=1e-12)
    out = infoloss.sparse_softmax_cross_entropy([[1.0, 2.0]], [1], reduction="sum")
    assert isinstance(out, (np.ndarray, np.generic))
    np.testing.assert_allclose(out, np.log1p(np.exp(-1.0)), rtol=1e-12)
    out = infoloss.sigmoid_cross_entropy([0.0], [1.0])
    assert isinstance(out, (np.ndarray, np.generic))


@pytest.mark.parametrize(
    "fn",
    [
        "sparse_softmax_cross_entropy",
        "softmax_cross_entropy",
        "softmax_entropy",
        "log_softmax",
        "softmax",
    ],
)
def test_shift_invariance_float32(backend, fn):
    # softmax quantities depend on logit differences only; a common offset of 1e4 (float32 ulp
    # ~1e-3) must not cost more than float32 rounding of the result
    base = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, -2.0, 0.5, 3.0]])
    shifted = backend.asarray(base + 1e4, "float32")
    x64 = as_float64(shifted) - 1e4  # exact: the offsets are representable
    f = getattr(infoloss, fn)
    if fn == "sparse_softmax_cross_entropy":
        got = f(shifted, backend.asarray([1, 3], "int64"))
        ref = ref_sparse_ce(x64, [1, 3])
    elif fn == "softmax_cross_entropy":
        y = np.array([[0.25, 0.25, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4]])
        got = f(shifted, backend.asarray(y, "float32"))
        ref = ref_softmax_ce(x64, y)
    elif fn == "softmax_entropy":
        got = f(shifted)
        ref = ref_softmax_entropy(x64)
    elif fn == "log_softmax":
        got = f(shifted)
        ref = x64 - np.log(np.exp(x64).sum(-1, keepdims=True))
    else:
        got = f(shifted)
        ref = np.exp(x64) / np.exp(x64).sum(-1, keepdims=True)
    assert_close(got, expect(backend, ref, like=shifted), rtol=1e-5, atol=1e-6)


@ON_NUMPY
def test_numpy_ml_dtypes_bfloat16(backend):
    # NumPy arrays of ml_dtypes.bfloat16 (the type JAX uses) are bfloat16 inputs too: computed in
    # float32 and returned as bfloat16
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = (X * 3).astype(ml_dtypes.bfloat16)
    x64 = x.astype(np.float64)
    out = infoloss.sparse_softmax_cross_entropy(x, LABELS, label_smoothing=0.1)
    assert out.dtype == np.dtype(ml_dtypes.bfloat16)
    np.testing.assert_allclose(
        out.astype(np.float64), ref_sparse_ce(x64, LABELS, label_smoothing=0.1), rtol=2e-2
    )
    out = infoloss.logsumexp(x)
    assert out.dtype == np.dtype(ml_dtypes.bfloat16)
    np.testing.assert_allclose(out.astype(np.float64), np.log(np.exp(x64).sum(-1)), rtol=2e-2)
    out = infoloss.softmax_entropy(x)
    assert out.dtype == np.dtype(ml_dtypes.bfloat16)
    np.testing.assert_allclose(
        out.astype(np.float64), ref_softmax_entropy(x64), rtol=2e-2, atol=1e-2
    )
