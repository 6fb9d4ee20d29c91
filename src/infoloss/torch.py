"""PyTorch drop-in loss modules.

:class:`CrossEntropyLoss` and :class:`BCEWithLogitsLoss` are ``torch.nn.Module`` s whose arguments
mirror PyTorch's, so switching is a one-line change (``docs/torch.md`` lists the differences).
They call :func:`infoloss.softmax_cross_entropy`, :func:`infoloss.sparse_softmax_cross_entropy`
and :func:`infoloss.sigmoid_cross_entropy`, which accept torch tensors anyway: CPU tensors run the
fused kernels under autograd (the adapter :mod:`infoloss._frameworks.torch`), every other device
a lean autograd Function with the analytic gradient (:mod:`infoloss._frameworks.torch_lean`).
:func:`uses_fast_path` tells whether the fused kernels run.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import _router
from .losses import sigmoid_cross_entropy, softmax_cross_entropy, sparse_softmax_cross_entropy

__all__ = ["BCEWithLogitsLoss", "CrossEntropyLoss"]


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
    return _router.fast_torch(logits, *others)


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
