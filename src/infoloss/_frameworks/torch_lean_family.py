"""Lean PyTorch autograd for the rest of the cross-entropy family: the focal and poly losses
(sparse and dense labels), the sigmoid focal loss and the logit divergences with their row
options (``softmax_js_divergence``, ``softmax_kl_divergence``).

The machinery is :mod:`infoloss._frameworks.torch_lean`'s (imported, not repeated): one
:class:`~infoloss._frameworks.torch_lean._SavedGrad` call whose forward computes the value and the
analytic gradient(s) once, with the generic definition's formulas (:mod:`infoloss._generic`)
evaluated on detached tensors, and keeps only the gradient(s) — the N × C temporaries of the
formula are freed when the forward returns, where autograd through the definition keeps every
one of them until the backward. The backward scales the kept gradient by the incoming one;
double backward (``create_graph=True``) differentiates the definition, as there.

Labels, class/sample weights or masks that require grad never come here (the router sends such
calls to the generic definition, which autograd differentiates).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from .. import _reduce
from .._generic import focal as g_focal
from .._generic import measures as g_measures
from .._specs import SigmoidFocal, SoftmaxFocal, SoftmaxMeasure
from .torch_lean import _apply, _rows, _Run, _xp, softmax_ce_rows

_LOG_HALF = -0.6931471805599453

__all__ = ["sigmoid_focal", "softmax_focal", "softmax_measure"]


def _single(
    definition: Callable[[Any, bool], tuple[Any, Any]],
    with_logits: Callable[[torch.Tensor], Any],
    x: torch.Tensor,
    axis: int | None,
    want_grad: bool,
) -> tuple[Any, Any]:
    """One differentiable input ``x``: ``definition(with_logits(x), want)`` gives the value and
    the gradient with respect to the logits."""

    def compute(want: tuple[bool, ...]) -> tuple[torch.Tensor, tuple[Any, ...]]:
        value, g = definition(with_logits(x.detach()), want[0])
        return value.to(x.dtype), (g,)

    def generic(logits: torch.Tensor) -> tuple[Any, ...]:
        return (definition(with_logits(logits), True)[1],)

    return _apply(_Run(compute, generic, axis), (x,), want_grad)


def softmax_focal(spec: SoftmaxFocal, want_grad: bool = False) -> tuple[Any, Any]:
    """``softmax_focal_loss``, ``sparse_softmax_focal_loss`` and the two poly losses of torch
    tensors on any device (lean autograd)."""
    ce = spec.ce

    def with_logits(t: torch.Tensor) -> SoftmaxFocal:
        return dataclasses.replace(spec, ce=dataclasses.replace(ce, logits=t))

    ax = ce.axis if ce.reduction == "none" else None
    definition = _sparse_focal if ce.options.sparse else g_focal.softmax_focal
    return _single(definition, with_logits, ce.logits, ax, want_grad)


def _sparse_focal(spec: SoftmaxFocal, want_grad: bool) -> tuple[Any, Any]:
    """The sparse focal / poly loss (value, gradient) with O(N) temporaries besides the gradient:
    ℓ_i = a_i φ(q_{iy}) needs only log q_y and log(1 − q_y) per row (the latter from the other
    logits where q_y > ½, on those rows only), and the gradient is B_i (q_i − e_{y_i}), the
    sparse cross-entropy's with per-row weights B_i (:func:`torch_lean.softmax_ce_rows`, one
    N × C buffer). Rows with a nan, +inf or all −inf logits take the definition on the subset.
    Under autograd (double backward) the definition runs instead."""
    ce = spec.ce
    if torch.is_grad_enabled() and ce.logits.requires_grad:
        return g_focal.softmax_focal(spec, want_grad)
    o, cw, kind, p = ce.options, ce.class_weights, spec.kind, spec.param
    x, y, sw, shape = _rows(ce, ce.logits)
    n, c = x.shape
    valid = None if o.ignore_index is None else y != o.ignore_index
    idx = (y if valid is None else torch.where(valid, y, torch.zeros_like(y))).long()
    x_y = x.gather(1, idx[:, None])[:, 0]
    m = x.amax(-1) if c else x.new_zeros(n)
    special = ~torch.isfinite(m)
    lse = torch.logsumexp(x, -1)
    lq = x_y - lse
    near = (lq > _LOG_HALF) & ~special
    l1m = torch.log(-torch.expm1(torch.where(near, torch.full_like(lq, -1.0), lq)))
    ni = near.nonzero()[:, 0]
    if ni.numel():  # the target is the maximum: from t = log(1/q_y − 1), the other logits'
        # log-sum-exp minus x_y, log q_y = −log1p(e^t) and log(1 − q_y) = t + log q_y stay
        # exact when 1 − q_y is tiny
        others = x[ni].scatter_(1, idx[ni, None], -float("inf"))
        t = torch.logsumexp(others, -1) - x_y[ni]
        lq_n = -torch.log1p(torch.exp(t))
        lq[ni] = lq_n
        l1m[ni] = t + lq_n
    a = torch.ones_like(lq) if cw is None else cw[idx]
    if sw is not None:
        a = a * sw
    if valid is not None:
        a = torch.where(valid, a, torch.zeros_like(a))
    total = a.sum() if ce.reduction == "mean" else None
    lq0 = torch.where((x_y == -float("inf")) & (a == 0), torch.zeros_like(lq), lq)
    q, s = torch.exp(lq), torch.exp(l1m)
    if kind == "focal":
        f = torch.exp(p * l1m)
        loss = a * (f * -lq0)
        lqz = torch.where(lq == -float("inf"), torch.zeros_like(lq), lq)
        h = torch.where(s > 0, -lqz / torch.where(s > 0, s, torch.ones_like(s)), torch.ones_like(s))
        big_b = a * (f * (1 + p * q * h))
    else:
        loss = a * (-lq0 + p * s)
        big_b = a * (1 + p * q)
    si = special.nonzero()[:, 0]
    gs: Any = None
    if si.numel():  # nan, +inf and all −inf rows: the definition's values (and gradients)
        sub = dataclasses.replace(
            ce,
            logits=x[si],
            labels=y[si],
            sample_weights=None if sw is None else sw[si],
            axis=1,
            reduction="none",
        )
        ls, gs = g_focal.softmax_focal(dataclasses.replace(spec, ce=sub), want_grad)
        loss = loss.index_put((si,), ls)
        big_b = big_b.index_put((si,), torch.zeros_like(ls))
    value = _reduce.reduce(_xp(), loss, total, ce.reduction)
    if ce.reduction == "none":
        value = value.reshape(shape[:-1])
    if not want_grad:
        return value, None
    opts = dataclasses.replace(o, label_smoothing=0.0, z_loss=0.0)
    _, g = softmax_ce_rows(
        x,
        y,
        class_weights=None,
        sample_weights=big_b,
        options=opts,
        reduction="sum",
        want_grad=True,
    )
    assert g is not None
    if gs is not None:
        g[si] = gs
    if total is not None:  # the mean's 1 / Σ a, in place (0 for a mean over nothing)
        g.mul_(torch.where(total == 0, torch.zeros_like(total), 1 / total).to(g.dtype))
    return value, g.reshape(shape).movedim(-1, ce.axis)


def sigmoid_focal(spec: SigmoidFocal, want_grad: bool = False) -> tuple[Any, Any]:
    """``sigmoid_focal_loss`` of torch tensors on any device (lean autograd)."""
    ce = spec.ce

    def with_logits(t: torch.Tensor) -> SigmoidFocal:
        return dataclasses.replace(spec, ce=dataclasses.replace(ce, logits=t))

    return _single(g_focal.sigmoid_focal, with_logits, ce.logits, None, want_grad)


def softmax_measure(spec: SoftmaxMeasure, want_grad: bool = False) -> tuple[Any, Any]:
    """The two logit divergences of torch tensors (``b`` not None), either or both arguments
    requiring grad, with their row options (temperature, sample weights, mask, reduction)."""
    assert spec.b is not None
    inputs = (spec.a, spec.b)

    def replaced(a: torch.Tensor, b: torch.Tensor) -> SoftmaxMeasure:
        return dataclasses.replace(spec, a=a, b=b)

    def compute(want: tuple[bool, ...]) -> tuple[torch.Tensor, tuple[Any, ...]]:
        a, b = (t.detach() for t in inputs)
        value, grads = g_measures.softmax_measure(replaced(a, b), any(want))
        if grads is None:
            return value, (None, None)
        pair: Any = grads
        return value, tuple(g if w else None for g, w in zip(pair, want, strict=True))

    def generic(a: torch.Tensor, b: torch.Tensor) -> tuple[Any, ...]:
        pair: Any = g_measures.softmax_measure(replaced(a, b), True)[1]
        return tuple(pair)

    ax = None if spec.keepdims or spec.reduction != "none" else spec.axis
    return _apply(_Run(compute, generic, ax), inputs, want_grad)
