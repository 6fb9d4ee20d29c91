"""The PyTorch adapter: the fused CPU kernels under autograd.

CPU float32/float64 tensors (float16/bfloat16 computed in float32) reach the numba kernels
through zero-copy NumPy views (``t.detach().numpy()``), inside a :class:`torch.autograd.Function`.
Its forward computes the value and, only when the logits require grad (and grad mode is on), the
gradient in the same sweep over the logits; its backward returns that gradient scaled by the
incoming one. A double backward (``create_graph=True``) differentiates the generic torch code
instead. :mod:`infoloss._router` decides when this runs (:func:`infoloss._router.fast_torch`);
other devices and CPU with the fast path off run :mod:`infoloss._frameworks.torch_lean`; tensor
subclasses, ``torch.func`` transforms and weights or soft labels that require grad run the generic
code unchanged.

Copies: a C-contiguous tensor is read in place; a non-contiguous tensor, or a class axis that is
not the last one, costs one contiguous copy of the logits (the gradient is then returned in the
caller's layout as a view); float16/bfloat16 cost one float32 copy.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from array_api_compat import array_namespace

from .._fast import linear as fast_linear
from .._fast import losses as fast_losses
from .._generic import losses as generic_losses
from .._specs import LinearCE, SigmoidCE, SoftmaxCE

__all__ = ["linear_ce", "sigmoid_ce", "softmax_ce"]

_HALF = (torch.float16, torch.bfloat16)
_NP = array_namespace(np.empty(0))


# --------------------------------------------------------------------------- tensor <-> NumPy


def _np(t: Any) -> Any:
    """A zero-copy NumPy view of a CPU tensor (bfloat16, which NumPy lacks, as float32)."""
    if not isinstance(t, torch.Tensor):
        return t
    t = t.detach()
    if t.dtype in _HALF:
        t = t.float()
    return t.resolve_conj().resolve_neg().numpy()


def _tensor(a: Any) -> torch.Tensor:
    a = np.asarray(a)
    if not a.flags.writeable:  # torch warns on read-only arrays
        a = a.copy()
    return torch.from_numpy(a)


def _np_dtype(dt: Any) -> Any:
    return np.float32 if dt in (torch.float32, *_HALF) else np.float64


def _numpy_spec(spec: Any, **arrays: Any) -> Any:
    """``spec`` on NumPy views of its tensors (``arrays`` replaces fields, e.g. the logits)."""
    fields = {
        f.name: _np(getattr(spec, f.name))
        for f in dataclasses.fields(spec)
        if isinstance(getattr(spec, f.name), torch.Tensor)
    }
    fields.update(arrays)
    if hasattr(spec, "compute_dtype"):
        fields["compute_dtype"] = np.dtype(_np_dtype(spec.compute_dtype))
    return dataclasses.replace(spec, xp=_NP, **fields)


# --------------------------------------------------------------------------- autograd


class _FusedLoss(torch.autograd.Function):
    """Value (and gradient, in the same sweep) from the NumPy fast path; backward reuses it."""

    @staticmethod
    def forward(
        ctx: Any, logits: torch.Tensor, compute: Any, need_grad: bool, out: list[Any] | None
    ) -> torch.Tensor:
        x = logits.detach()
        xc = x.float() if x.dtype in _HALF else x
        want = need_grad or out is not None
        value, grad = compute(xc.resolve_neg().numpy(), want)
        value_t = _tensor(value).to(x.dtype)
        grad_t = None if grad is None else _tensor(grad)
        if out is not None:  # value_and_grad: the gradient is handed out as well
            assert grad_t is not None
            out.append(grad_t.to(x.dtype))
        ctx.dtype = x.dtype
        ctx.compute = compute
        ctx.grad = grad_t if need_grad else None
        ctx.owned = out is None or (grad_t is not None and grad_t.dtype != x.dtype)
        if need_grad:
            ctx.save_for_backward(logits)  # for a retained second backward; version checks
        return value_t

    @staticmethod
    def backward(ctx: Any, grad_value: torch.Tensor) -> tuple[Any, ...]:
        (logits,) = ctx.saved_tensors
        g, owned = ctx.grad, ctx.owned
        ctx.grad = None  # hand the buffer over to autograd: no clone in AccumulateGrad
        ax = ctx.compute.axis
        if torch.is_grad_enabled():
            # create_graph=True (double backward): a differentiable gradient from the generic
            # torch code, which autograd can differentiate again
            g = ctx.compute.generic(logits)
            gv = grad_value if grad_value.ndim == 0 or ax is None else grad_value.unsqueeze(ax)
            return g * gv, None, None, None
        if g is None:  # second backward through a retained graph: recompute the gradient
            x = logits.detach()
            xc = x.float() if x.dtype in _HALF else x
            g, owned = _tensor(ctx.compute(xc.resolve_neg().numpy(), True)[1]), True
        g = _scale(g, grad_value, ax, owned)
        if g.dtype != ctx.dtype:
            g = g.to(ctx.dtype)
        return g, None, None, None


def _scale(g: torch.Tensor, gv: torch.Tensor, axis: int | None, owned: bool) -> torch.Tensor:
    """``g`` times the incoming gradient ``gv`` (a scalar, or one value per example/element)."""
    gv = gv.detach()
    if gv.ndim == 0:
        s = float(gv)
        if s == 1.0:
            return g
        return g.mul_(s) if owned else g * s
    if bool(torch.all(gv == 1)):
        return g
    if axis is not None:  # softmax "none": one value per example, broadcast along the class axis
        gv = gv.unsqueeze(axis)
    gv = gv.to(g.dtype)
    return g.mul_(gv) if owned else g * gv


class _Compute:
    """One call's computation: on NumPy views (fast, re-runnable), or generic on the tensors."""

    def __init__(self, spec: Any, fast: Any, generic: Any, axis: int | None):
        self.spec, self.fast, self.generic_fn, self.axis = spec, fast, generic, axis
        self.np_spec = _numpy_spec(spec)

    def __call__(self, x: np.ndarray, want_grad: bool) -> tuple[Any, Any]:
        """Value and (optionally) gradient from the fused kernels, ``x`` a NumPy view."""
        spec = dataclasses.replace(self.np_spec, logits=x)
        return self.fast(spec, want_grad)

    def generic(self, logits: torch.Tensor) -> torch.Tensor:
        """The gradient from the generic torch code (differentiable by autograd)."""
        spec = dataclasses.replace(self.spec, logits=logits)
        return self.generic_fn(spec, True)[1].to(logits.dtype)


def _run(logits: torch.Tensor, compute: _Compute, want_grad: bool) -> tuple[Any, Any]:
    need_grad = torch.is_grad_enabled() and logits.requires_grad
    out: list[Any] | None = [] if want_grad else None
    value = _FusedLoss.apply(logits, compute, need_grad, out)
    return value, (out[0] if out else None)


@torch.compiler.disable
def softmax_ce(spec: SoftmaxCE, want_grad: bool = False) -> tuple[Any, Any]:
    """Both softmax cross-entropies of CPU tensors: fused kernels under autograd.

    A graph break under ``torch.compile`` (this runs eagerly, with the fused kernels).
    """
    ax = spec.axis if spec.reduction == "none" else None
    compute = _Compute(spec, fast_losses.softmax_ce, generic_losses.softmax_ce, ax)
    return _run(spec.logits, compute, want_grad)


@torch.compiler.disable
def sigmoid_ce(spec: SigmoidCE, want_grad: bool = False) -> tuple[Any, Any]:
    """Sigmoid cross-entropy of CPU tensors: fused kernels under autograd (a graph break under
    ``torch.compile``)."""
    compute = _Compute(spec, fast_losses.sigmoid_ce, generic_losses.sigmoid_ce, None)
    return _run(spec.logits, compute, want_grad)


class _FusedLinearCE(torch.autograd.Function):
    """linear_cross_entropy on CPU tensors: the chunked NumPy path computes the loss and all
    three gradients in one sweep; backward scales them by the incoming (scalar) gradient."""

    @staticmethod
    def forward(ctx: Any, hidden: Any, weight: Any, bias: Any, call: Any) -> torch.Tensor:
        want = any(ctx.needs_input_grad[:3])
        value, grads = call(want)
        ctx.grads = grads
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        return _tensor(value).to(hidden.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_value: torch.Tensor) -> tuple[Any, ...]:
        s = float(grad_value)
        out: list[Any] = []
        for g, need, dt in zip(ctx.grads, ctx.needs_input_grad[:3], ctx.dtypes, strict=True):
            if g is None or not need:
                out.append(None)
                continue
            t = _tensor(g) if s == 1.0 else _tensor(g * s)
            out.append(t.to(dt))
        return (*out, None)


@torch.compiler.disable
def linear_ce(spec: LinearCE, want_grad: bool = False) -> tuple[Any, Any, Any]:
    """``linear_cross_entropy`` of CPU tensors through the NumPy fast path ("sum" or "mean"),
    results in the caller's shapes and dtypes; the third result is the per-row log-sum-exp
    (a tensor of the compute dtype, ``spec.want_lse`` only) for ``return_aux``."""
    hidden, weight, bias = spec.originals
    np_spec = _numpy_spec(spec, originals=(None, None, None))
    lse: list[Any] = []

    def call(want: bool) -> tuple[Any, Any]:
        value, grads, lse_rows = fast_linear.linear_ce(np_spec, want)
        if lse_rows is not None:
            lse.append(_tensor(lse_rows))
        if grads is not None:
            dh, dw, db = grads
            grads = (dh.reshape(spec.hidden_shape), dw, db)
        return value, grads

    dtypes = spec.dtypes
    if want_grad:  # value_and_grad: plain tensors, no autograd graph
        value, grads = call(True)
        tgrads = tuple(
            None if g is None else _tensor(g).to(dt) for g, dt in zip(grads, dtypes, strict=True)
        )
        return _tensor(value).to(dtypes[0]), tgrads, (lse[0] if lse else None)
    value = _FusedLinearCE.apply(hidden, weight, bias, call)
    return value, None, (lse[0] if lse else None)
