"""The lean torch path (``_frameworks/torch_lean.py``) with soft-capping and, for the linear layer,
per-token sample weights: values and gradients against PyTorch's autodiff of the generic
definition, float64 (the CPU fused kernels are switched off, so the lean Function runs)."""

from __future__ import annotations

import itertools

import pytest

pytest.importorskip("torch")

import torch
from _helpers import assert_close

import infoloss
from infoloss import _config, _validate
from infoloss._generic import linear as g_linear
from infoloss._generic import losses as g_losses

N, C, H = 10, 6, 4
IGN = -100
TOL = dict(rtol=1e-11, atol=1e-12)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _x(shape, seed=0):
    return (4 * torch.randn(shape, generator=_gen(seed), dtype=torch.float64)).requires_grad_()


def _grads(loss, inputs, seed=3):
    w = torch.rand(loss.shape, generator=_gen(seed), dtype=loss.dtype) + 0.5
    return torch.autograd.grad((loss * w).sum(), inputs)


def _lean(value):
    assert "_SavedGrad" in type(value.grad_fn).__name__, value.grad_fn  # the lean Function ran


GRID = list(itertools.product([False, True], [False, True], [0.0, 0.1], [0.0, 1e-3]))


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_softcap_softmax_ce_equals_autodiff_of_the_definition(sparse, reduction):
    y = torch.randint(0, C, (N,), generator=_gen(1))
    y[::3] = IGN
    p = torch.softmax(torch.randn(N, C, generator=_gen(2), dtype=torch.float64), -1)
    cw = torch.rand(C, generator=_gen(4), dtype=torch.float64) + 0.5
    sw = torch.rand(N, generator=_gen(5), dtype=torch.float64) + 0.5
    fn = infoloss.sparse_softmax_cross_entropy if sparse else infoloss.softmax_cross_entropy
    for weighted, ignore, eps, z in GRID:
        kw = dict(
            class_weights=cw if weighted else None,
            sample_weights=sw if weighted else None,
            label_smoothing=eps,
            z_loss=z,
            reduction=reduction,
            softcap=3.0,
        )
        if sparse:
            kw["ignore_index"] = IGN if ignore else None
            labels = y if ignore else y.clamp(min=0)
        else:
            labels = p
        x = _x((N, C))
        with _config.generic_only():
            v = fn(x, labels, **kw)
        _lean(v)
        spec = _validate.softmax_ce_spec(x, labels, sparse=sparse, **kw)
        ref = g_losses.softmax_ce(spec, False)[0]
        assert_close(v.detach(), ref.detach(), **TOL)
        for g, gr in zip(_grads(v, (x,)), _grads(ref, (x,)), strict=True):
            assert_close(g, gr, **TOL)


def test_softcap_saturated_and_nonfinite_rows():
    """Rows the lean formula hands to the definition (nan, +inf, all −inf) and saturated logits:
    the definition's value and its analytic gradient (autodiff of the definition differs at ±inf
    logits, where it differentiates the kept infinity instead of the cap)."""
    x = _x((N, C))
    with torch.no_grad():
        x[0, 2] = float("inf")
        x[1, :] = -float("inf")
        x[2, 1] = float("nan")
        x[3] = torch.tensor([1e6, 1e6 - 1, 0, 0, 0, 0])
        x[4, 3] = -float("inf")
    y = torch.randint(0, C, (N,), generator=_gen(1))
    kw = dict(label_smoothing=0.1, z_loss=1e-3, softcap=5.0)
    with _config.generic_only():
        v = infoloss.sparse_softmax_cross_entropy(x, y, **kw)
        _lean(v)
        (g,) = torch.autograd.grad(v.sum(), x)
    ref, gr = g_losses.softmax_ce(_validate.softmax_ce_spec(x.detach(), y, sparse=True, **kw), True)
    assert_close(v.detach(), ref, **TOL)
    assert_close(g, gr, **TOL)
    assert torch.isnan(v[[0, 2]]).all() and torch.isfinite(v[3])  # (−inf under smoothing: +inf)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("softcap", [None, 4.0], ids=["no-cap", "cap"])
def test_linear_sample_weights_and_softcap_equal_autodiff_of_the_definition(reduction, softcap):
    y = torch.randint(0, C, (N,), generator=_gen(1))
    y[::4] = IGN
    cw = torch.rand(C, generator=_gen(4), dtype=torch.float64) + 0.5
    sw = torch.rand(N, generator=_gen(5), dtype=torch.float64) + 0.5
    for with_sw, bias in itertools.product([False, True], [False, True]):
        h, w = _x((N, H)), _x((C, H), seed=7)
        b = _x((C,), seed=8) if bias else None
        kw = dict(
            bias=b,
            class_weights=cw,
            ignore_index=IGN,
            label_smoothing=0.1,
            z_loss=1e-3,
            reduction=reduction,
            chunk_size=3,
            sample_weights=sw if with_sw else None,
            softcap=softcap,
        )
        if not with_sw and softcap is None:
            continue  # (covered by tests/test_autodiff_lean.py)
        with _config.generic_only():
            v = infoloss.linear_cross_entropy(h, w, y, **kw)
        _lean(v)
        ref = g_linear.linear_ce(_validate.linear_ce_spec(h, w, y, **kw), False)[0]
        inputs = (h, w) if b is None else (h, w, b)
        assert_close(v.detach(), ref.detach(), **TOL)
        for g, gr in zip(_grads(v, inputs), _grads(ref, inputs), strict=True):
            assert_close(g, gr, **TOL)
