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

from .._generic import focal as g_focal
from .._generic import measures as g_measures
from .._specs import SigmoidFocal, SoftmaxFocal, SoftmaxMeasure
from .torch_lean import _apply, _Run

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
    return _single(g_focal.softmax_focal, with_logits, ce.logits, ax, want_grad)


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
