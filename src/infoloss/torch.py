"""PyTorch integration: the fused CPU kernels under autograd, and drop-in loss modules.

Two things live here.

- The fast path for CPU torch tensors. :func:`infoloss.softmax_cross_entropy`,
  :func:`infoloss.sparse_softmax_cross_entropy` and :func:`infoloss.sigmoid_cross_entropy` hand
  CPU float32/float64 tensors (float16/bfloat16 computed in float32) to the numba kernels through
  zero-copy NumPy views (``t.detach().numpy()``), inside a :class:`torch.autograd.Function`. Its
  forward computes the value and, only when the logits require grad (and grad mode is on), the
  gradient in the same sweep over the logits; its backward returns that gradient scaled by the
  incoming one. The choice is made by :func:`infoloss._dispatch.torch_enabled`; everything else
  (CUDA, other devices, tensor subclasses, ``torch.func`` transforms, weights or soft labels that
  require grad, tracing under ``torch.compile``) runs the generic array-API code unchanged.
- :class:`CrossEntropyLoss` and :class:`BCEWithLogitsLoss`, ``torch.nn.Module`` s whose arguments
  mirror PyTorch's, so switching is a one-line change (``docs/torch.md`` lists the differences).

Copies: a C-contiguous tensor is read in place; a non-contiguous tensor, or a class axis that is
not the last one, costs one contiguous copy of the logits (the gradient is then returned in the
caller's layout as a view); float16/bfloat16 cost one float32 copy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from . import _dispatch
from .losses import (
    _sigmoid_ce,
    _softmax_ce,
    sigmoid_cross_entropy,
    softmax_cross_entropy,
    sparse_softmax_cross_entropy,
)

__all__ = ["BCEWithLogitsLoss", "CrossEntropyLoss"]

_HALF = (torch.float16, torch.bfloat16)


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


# --------------------------------------------------------------------------- autograd


class _FusedLoss(torch.autograd.Function):
    """Value (and gradient, in the same sweep) from the NumPy fast path; backward reuses it."""

    @staticmethod
    def forward(
        ctx: Any, logits: torch.Tensor, compute: Any, need_grad: bool, out: list[Any]
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
        ctx.shape = tuple(x.shape)
        if need_grad:
            ctx.save_for_backward(logits)  # for a retained second backward; version checks
        return value_t

    @staticmethod
    def backward(ctx: Any, grad_value: torch.Tensor) -> tuple[Any, ...]:
        (logits,) = ctx.saved_tensors
        g, owned = ctx.grad, ctx.owned
        ctx.grad = None  # hand the buffer over to autograd: no clone in AccumulateGrad
        if torch.is_grad_enabled():
            # create_graph=True (double backward): a differentiable gradient from the generic
            # torch code, which autograd can differentiate again
            g, ax = ctx.compute.generic(logits), ctx.compute.axis
            gv = grad_value if grad_value.ndim == 0 or ax is None else grad_value.unsqueeze(ax)
            return g * gv, None, None, None
        if g is None:  # second backward through a retained graph: recompute the gradient
            x = logits.detach()
            xc = x.float() if x.dtype in _HALF else x
            g, owned = _tensor(ctx.compute(xc.resolve_neg().numpy(), True)[1]), True
        g = _scale(g, grad_value, ctx.compute.axis, owned)
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
    """The computation of one call: on NumPy views (fast), re-runnable, or generic on tensors."""

    def __init__(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], axis: int | None):
        self.fn, self.axis = fn, axis
        self.targs, self.tkwargs = args, kwargs
        self.args = tuple(_np(a) for a in args)
        self.kwargs = {k: _np(v) for k, v in kwargs.items()}

    def __call__(self, x: Any, want_grad: bool) -> tuple[Any, Any]:
        """Value and (optionally) gradient from the NumPy fast path, ``x`` a NumPy view."""
        return self.fn(x, *self.args, **self.kwargs, want_grad=want_grad)

    def generic(self, logits: torch.Tensor) -> torch.Tensor:
        """The gradient from the generic torch code (differentiable by autograd)."""
        with _dispatch.disabled():
            return self.fn(logits, *self.targs, **self.tkwargs, want_grad=True)[1]


def _run(logits: torch.Tensor, compute: _Compute, want_grad: bool) -> tuple[Any, Any]:
    need_grad = torch.is_grad_enabled() and logits.requires_grad
    out: list[Any] | None = [] if want_grad else None
    value = _FusedLoss.apply(logits, compute, need_grad, out)
    return value, (out[0] if out else None)


@torch.compiler.disable
def _softmax_ce_torch(
    logits: torch.Tensor,
    labels: Any,
    *,
    axis: int,
    class_weights: Any,
    sample_weights: Any,
    label_smoothing: Any,
    z_loss: Any,
    reduction: Any,
    sparse: bool,
    ignore_index: int | None = None,
    want_grad: bool = False,
) -> tuple[Any, Any]:
    """:func:`infoloss.losses._softmax_ce` for CPU tensors: fused kernels under autograd.

    A graph break under ``torch.compile`` (this runs eagerly, with the fused kernels).
    """
    if not _dispatch.torch_enabled(logits, labels, class_weights, sample_weights):
        with _dispatch.disabled():  # reached from a compiled graph with no kernels available
            return _softmax_ce(
                logits,
                labels,
                axis=axis,
                class_weights=class_weights,
                sample_weights=sample_weights,
                label_smoothing=label_smoothing,
                z_loss=z_loss,
                reduction=reduction,
                sparse=sparse,
                ignore_index=ignore_index,
                want_grad=want_grad,
            )
    # the class axis, for broadcasting a per-example incoming gradient ("none"); a bad axis is
    # reported by the validation inside the NumPy call
    nd = logits.ndim
    ax = axis % nd if isinstance(axis, int) and nd and -nd <= axis < nd else None
    compute = _Compute(
        _softmax_ce,
        (labels,),
        dict(
            axis=axis,
            class_weights=class_weights,
            sample_weights=sample_weights,
            label_smoothing=label_smoothing,
            z_loss=z_loss,
            reduction=reduction,
            sparse=sparse,
            ignore_index=ignore_index,
        ),
        ax,
    )
    return _run(logits, compute, want_grad)


@torch.compiler.disable
def _sigmoid_ce_torch(
    logits: torch.Tensor,
    labels: Any,
    *,
    pos_weight: Any,
    sample_weights: Any,
    label_smoothing: Any,
    reduction: Any,
    want_grad: bool = False,
) -> tuple[Any, Any]:
    """:func:`infoloss.losses._sigmoid_ce` for CPU tensors: fused kernels under autograd.

    A graph break under ``torch.compile`` (this runs eagerly, with the fused kernels).
    """
    if not _dispatch.torch_enabled(logits, labels, pos_weight, sample_weights):
        with _dispatch.disabled():  # reached from a compiled graph with no kernels available
            return _sigmoid_ce(
                logits,
                labels,
                pos_weight=pos_weight,
                sample_weights=sample_weights,
                label_smoothing=label_smoothing,
                reduction=reduction,
                want_grad=want_grad,
            )
    compute = _Compute(
        _sigmoid_ce,
        (labels,),
        dict(
            pos_weight=pos_weight,
            sample_weights=sample_weights,
            label_smoothing=label_smoothing,
            reduction=reduction,
        ),
        None,
    )
    return _run(logits, compute, want_grad)


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
def _linear_ce_torch(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: Any,
    *,
    bias: Any,
    want_grad: bool,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """``linear_cross_entropy`` of CPU tensors through the NumPy fast path (not for "none")."""
    from .linear import _linear_ce

    def call(want: bool) -> tuple[Any, Any]:
        k = {key: _np(v) for key, v in kwargs.items()}
        return _linear_ce(
            _np(hidden), _np(weight), _np(labels), bias=_np(bias), want_grad=want, **k
        )

    if want_grad:  # value_and_grad: plain tensors, no autograd graph
        value, grads = call(True)
        dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        tgrads = tuple(
            None if g is None else _tensor(g).to(dt) for g, dt in zip(grads, dtypes, strict=True)
        )
        return _tensor(value).to(hidden.dtype), tgrads
    return _FusedLinearCE.apply(hidden, weight, bias, call), None


def uses_fast_path(logits: Any, *others: Any) -> bool:
    """Whether a call with these tensors runs the fused kernels (else the generic array-API code).

    Parameters
    ----------
    logits : torch.Tensor
        The logits of the call.
    *others : torch.Tensor or None
        The other tensor arguments (labels, weights).

    Returns
    -------
    bool
        True for CPU float16/bfloat16/float32/float64 logits when the numba kernels are available
        and not disabled, the other tensors are CPU tensors that do not require grad, and no
        ``torch.compile`` tracing is under way.

    Examples
    --------
    >>> import torch
    >>> from infoloss.torch import uses_fast_path
    >>> uses_fast_path(torch.zeros(2, 3, dtype=torch.int64))
    False
    """
    return _dispatch.torch_enabled(logits, *others)


# --------------------------------------------------------------------------- nn.Module wrappers


def _legacy_reduction(size_average: Any, reduce: Any, reduction: str) -> str:
    if size_average is None and reduce is None:
        return reduction
    from torch.nn import _reduction

    return _reduction.legacy_get_string(size_average, reduce)


class CrossEntropyLoss(nn.Module):
    r"""Softmax cross-entropy between logits and class indices or class probabilities.

    A drop-in for :class:`torch.nn.CrossEntropyLoss`: the same arguments with the same meaning
    (``weight``, ``ignore_index``, ``reduction``, ``label_smoothing``; the deprecated
    ``size_average``/``reduce`` are accepted as in PyTorch), plus ``z_loss``. CPU float tensors
    run the fused infoloss kernels; anything else runs the generic code.

    .. math::

        \ell_i = (1 - \varepsilon)\, w_{y_i} \big(\operatorname{lse}(x_i) - x_{i y_i}\big)
                 + \frac{\varepsilon}{C} \sum_c w_c \big(\operatorname{lse}(x_i) - x_{ic}\big)
                 + z\,\operatorname{lse}(x_i)^2

    for class-index targets, and :math:`\sum_c w_c t_{ic}(\operatorname{lse}(x_i) - x_{ic}) +
    z\operatorname{lse}(x_i)^2` with :math:`t = (1-\varepsilon) y + \varepsilon / C` for
    probability targets.

    Parameters
    ----------
    weight : torch.Tensor, shape (C,), optional
        Weight of each class (a buffer, moved by ``.to()``).
    size_average, reduce : bool, optional
        Deprecated in PyTorch; mapped to ``reduction`` exactly as PyTorch does.
    ignore_index : int, default -100
        Class-index targets equal to it contribute nothing (loss, weight, gradient, z-loss).
        Ignored for probability targets, as in PyTorch.
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"`` with class indices is :math:`\sum_i \ell_i / \sum_i w_{y_i}` over targets not
        ignored (as PyTorch); with probabilities it is :math:`\sum_i \ell_i / N`, also with
        ``weight`` (as PyTorch, unlike :func:`infoloss.softmax_cross_entropy`). A mean over no
        example is 0.0 (PyTorch gives nan).
    label_smoothing : float in [0, 1], default 0
        :math:`\varepsilon`.
    z_loss : float ≥ 0, default 0
        :math:`z`, the coefficient of PaLM's auxiliary :math:`\operatorname{lse}^2` loss (not in
        PyTorch). Keyword-only.

    Notes
    -----
    Shapes as PyTorch: ``input`` is (C,), (N, C) or (N, C, d1, ...), the class axis being axis 1
    (axis 0 for a 1-D input); ``target`` holds integer class indices of the input's shape without
    the class axis, or floating probabilities of the input's shape. Unlike PyTorch, a ``-inf``
    logit of a class with no target mass gives 0, not nan, and out-of-range class indices raise
    :class:`infoloss.InfolossError`.

    Examples
    --------
    >>> import torch
    >>> from infoloss.torch import CrossEntropyLoss
    >>> logits = torch.tensor([[2.0, 1.0, 0.1], [0.0, 5.0, 0.0]], requires_grad=True)
    >>> target = torch.tensor([2, 1])
    >>> loss = CrossEntropyLoss()(logits, target)
    >>> round(loss.item(), 5)
    1.16521
    >>> torch.allclose(loss, torch.nn.CrossEntropyLoss()(logits, target))
    True
    >>> loss.backward()
    >>> logits.grad.shape
    torch.Size([2, 3])
    """

    __constants__ = ("ignore_index", "reduction", "label_smoothing", "z_loss")

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        size_average: bool | None = None,
        ignore_index: int = -100,
        reduce: bool | None = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        *,
        z_loss: float = 0.0,
    ) -> None:
        super().__init__()
        self.reduction = _legacy_reduction(size_average, reduce, reduction)
        self.register_buffer("weight", weight)
        self.weight: torch.Tensor | None
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss

    def extra_repr(self) -> str:
        parts = [f"reduction={self.reduction!r}", f"ignore_index={self.ignore_index}"]
        if self.label_smoothing:
            parts.append(f"label_smoothing={self.label_smoothing}")
        if self.z_loss:
            parts.append(f"z_loss={self.z_loss}")
        return ", ".join(parts)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of ``input`` (logits) against ``target`` (class indices or probabilities)."""
        axis = 1 if input.ndim >= 2 else 0
        if isinstance(target, torch.Tensor) and target.is_floating_point():
            reduction, sw = self.reduction, None
            if reduction == "mean" and self.weight is not None:
                # PyTorch divides the weighted sum by the number of examples N
                n = input.numel() // max(int(input.shape[axis]), 1) if input.ndim else 1
                batch = tuple(input.shape[:axis]) + tuple(input.shape[axis + 1 :])
                sw = torch.full(batch, 1.0 / max(n, 1), dtype=input.dtype, device=input.device)
                reduction = "sum"
            return softmax_cross_entropy(
                input,
                target,
                axis=axis,
                class_weights=self.weight,
                sample_weights=sw,
                label_smoothing=self.label_smoothing,
                z_loss=self.z_loss,
                reduction=reduction,
            )
        return sparse_softmax_cross_entropy(
            input,
            target,
            axis=axis,
            class_weights=self.weight,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            z_loss=self.z_loss,
            reduction=self.reduction,
        )


class BCEWithLogitsLoss(nn.Module):
    r"""Sigmoid (binary) cross-entropy from logits, elementwise: the multi-label loss.

    A drop-in for :class:`torch.nn.BCEWithLogitsLoss`: the same arguments with the same meaning
    (``weight``, ``reduction``, ``pos_weight``; the deprecated ``size_average``/``reduce`` as in
    PyTorch), plus ``label_smoothing``. CPU float tensors run the fused infoloss kernels.

    .. math::

        \ell = w\,\big[p\,y' \operatorname{softplus}(-x) + (1 - y') \operatorname{softplus}(x)\big],
        \qquad y' = (1 - \varepsilon)\, y + \varepsilon / 2

    Parameters
    ----------
    weight : torch.Tensor, optional
        Rescaling weight broadcast against the input (a buffer).
    size_average, reduce : bool, optional
        Deprecated in PyTorch; mapped to ``reduction`` exactly as PyTorch does.
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"`` divides by the number of elements, also with ``weight`` (as PyTorch; unlike
        :func:`infoloss.sigmoid_cross_entropy`, which divides by the sum of the weights).
    pos_weight : torch.Tensor, optional
        Weight :math:`p` of the positive term, broadcast along the last (class) axis.
    label_smoothing : float in [0, 1], default 0
        :math:`\varepsilon` (not in PyTorch). Keyword-only.

    Examples
    --------
    >>> import torch
    >>> from infoloss.torch import BCEWithLogitsLoss
    >>> logits = torch.tensor([[2.0, -1.0, 0.5]], requires_grad=True)
    >>> target = torch.tensor([[1.0, 0.0, 1.0]])
    >>> loss = BCEWithLogitsLoss(pos_weight=torch.tensor([1.0, 2.0, 3.0]))(logits, target)
    >>> round(loss.item(), 5)
    0.62081
    >>> loss.backward()
    >>> logits.grad.shape
    torch.Size([1, 3])
    """

    __constants__ = ("reduction", "label_smoothing")

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: str = "mean",
        pos_weight: torch.Tensor | None = None,
        *,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.reduction = _legacy_reduction(size_average, reduce, reduction)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)
        self.weight: torch.Tensor | None
        self.pos_weight: torch.Tensor | None
        self.label_smoothing = label_smoothing

    def extra_repr(self) -> str:
        parts = [f"reduction={self.reduction!r}"]
        if self.label_smoothing:
            parts.append(f"label_smoothing={self.label_smoothing}")
        return ", ".join(parts)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The elementwise loss of ``input`` (logits) against ``target``, reduced."""
        reduction, sw = self.reduction, self.weight
        if reduction == "mean" and sw is not None:
            # PyTorch divides the weighted sum by the element count, not by the sum of weights
            sw = sw / max(input.numel(), 1)
            reduction = "sum"
        return sigmoid_cross_entropy(
            input,
            target,
            pos_weight=self.pos_weight,
            sample_weights=sw,
            label_smoothing=self.label_smoothing,
            reduction=reduction,
        )
