"""Classification losses computed stably from raw logits.

- :func:`softmax_cross_entropy`: single-label (or soft-label) classification, ``labels`` are
  probabilities of the logits' shape (one-hot or soft), like TensorFlow's
  ``softmax_cross_entropy_with_logits``;
- :func:`sparse_softmax_cross_entropy`: the same with integer class indices;
- :func:`sigmoid_cross_entropy`: multi-label classification, one independent binary
  cross-entropy per class, like ``sigmoid_cross_entropy_with_logits``.

The exact definitions (smoothing, weights, z-loss, reductions, masked classes) are in
``docs/semantics.md``; each docstring states them. Gradients come from
:func:`infoloss.value_and_grad`. NumPy float32/float64 inputs take a compiled fast path that
computes the value and the gradient in one sweep over the logits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _router
from ._specs import CrossEntropyAux
from ._utils import Array, check_bool, quiet_overflow
from ._validate import check_grad_out, check_temperature, sigmoid_ce_spec, softmax_ce_spec, tempered
from ._validate_sharded import weight_total_args, weight_total_of

__all__ = [
    "CrossEntropyAux",
    "sigmoid_cross_entropy",
    "softmax_cross_entropy",
    "sparse_softmax_cross_entropy",
    "weight_total",
]


# --------------------------------------------------------------------------- value and gradient


@quiet_overflow
def _softmax_ce(
    logits: Any,
    labels: Any,
    *,
    sparse: bool,
    want_grad: bool = False,
    grad_out: Any = None,
    temperature: Any = 1.0,
    scale_by_temperature_squared: Any = False,
    return_aux: Any = False,
    **options: Any,
) -> tuple[Any, Any]:
    """Value (a :class:`CrossEntropyAux` with ``return_aux``) and, with ``want_grad``,
    d loss / d logits of either softmax cross-entropy (written into ``grad_out`` when given:
    see :func:`~infoloss.value_and_grad`).

    A temperature ``T`` divides the logits before the spec goes to the router (the fused
    kernels see tempered logits); the value (and its z-loss part) is multiplied by ``k``
    (``T**2`` or 1) and the gradient with respect to the caller's logits by ``k / T``."""
    aux = check_bool(return_aux, "return_aux")
    if grad_out is not None:
        check_grad_out(grad_out, logits)
    t, k = check_temperature(temperature, scale_by_temperature_squared)
    spec = softmax_ce_spec(logits, labels, sparse=sparse, **options)
    if t != 1.0:
        spec = tempered(spec, t)
    value, grad = _router.softmax_ce(spec, want_grad, grad_out)
    if t != 1.0 or k != 1.0:
        value, grad = _scaled(value, k), _scaled(grad, k / t)
    if aux:
        z, lse = _router.softmax_ce_aux(spec)
        value = CrossEntropyAux(value, _scaled(z, k), lse)
    return value, grad


def _scaled(x: Any, factor: float) -> Any:
    """``x * factor`` in ``x``'s dtype; a NumPy array stays an array (a gradient buffer given
    as ``out`` is scaled in place)."""
    if x is None or factor == 1.0:
        return x
    if isinstance(x, np.ndarray):
        if x.ndim and x.flags.writeable:
            np.multiply(x, x.dtype.type(factor), out=x)
            return x
        return np.asarray(x * x.dtype.type(factor))
    return x * factor


@quiet_overflow
def _sigmoid_ce(
    logits: Any, labels: Any, *, want_grad: bool = False, grad_out: Any = None, **options: Any
) -> tuple[Array, Any]:
    """Value and, with ``want_grad``, d value / d logits of the sigmoid cross-entropy."""
    if grad_out is not None:
        check_grad_out(grad_out, logits)
    return _router.sigmoid_ce(sigmoid_ce_spec(logits, labels, **options), want_grad, grad_out)


# --------------------------------------------------------------------------- public functions


def softmax_cross_entropy(
    logits: Any,
    labels: Any,
    *,
    axis: int = -1,
    class_weights: Any = None,
    sample_weights: Any = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    reduction: str = "none",
    temperature: float = 1.0,
    scale_by_temperature_squared: bool = False,
    softcap: float | None = None,
    return_aux: bool = False,
) -> Any:
    r"""Softmax cross-entropy between target distributions and the softmax of ``logits``.

    .. math::

        \ell_i = s_i \Big[\sum_c w_c\, t_{ic}\,\big(\operatorname{lse}(x_i) - x_{ic}\big)
                 + z\,\operatorname{lse}(x_i)^2\Big],
        \qquad t_{ic} = (1 - \varepsilon)\, y_{ic} + \varepsilon / C

    which is :math:`-\sum_c t_c \log \operatorname{softmax}(x)_c` (the cross-entropy
    :math:`H(T, Q)`) without ever forming probabilities.

    Parameters
    ----------
    logits : array, shape (..., C, ...)
        Unnormalised log-probabilities (real floating). ``-inf`` masks a class.
    labels : array, same shape as ``logits``
        Target probabilities along ``axis``: one-hot or soft. Not renormalised.
    axis : int, default -1
        The class axis.
    class_weights : array, shape (C,), optional
        Weight :math:`w_c` of each class (as PyTorch's ``weight``).
    sample_weights : array, shape broadcastable to (...), optional
        Weight :math:`s_i` of each example.
    label_smoothing : float in [0, 1], default 0
        :math:`\varepsilon`: the target becomes :math:`(1-\varepsilon) y + \varepsilon / C`.
    z_loss : float ≥ 0, default 0
        :math:`z`: adds :math:`z \operatorname{lse}(x)^2` per example (PaLM's auxiliary loss that
        keeps the log-partition near 0).
    reduction : {"none", "sum", "mean"}, default "none"
        ``"none"`` returns :math:`\ell_i` per example, ``"sum"`` their sum, ``"mean"``
        :math:`\sum_i \ell_i / \sum_i W_i` with :math:`W_i = s_i \sum_c w_c y_{ic}` when
        ``class_weights`` is given and :math:`W_i = s_i` otherwise (0.0 when the denominator is 0).
    temperature : float > 0, default 1
        :math:`T`: the loss is computed on ``logits / T`` (distillation with soft targets,
        Hinton et al. 2015). ``labels`` are probabilities and are not divided: pass the
        teacher's tempered distribution, ``softmax(teacher_logits / T)``. The gradient with
        respect to ``logits`` carries the factor :math:`1/T`.
    scale_by_temperature_squared : bool, default False
        Multiply the loss by :math:`T^2` (and so the gradient by :math:`T`), which keeps the soft
        loss's gradients the same size as a hard-label loss's when :math:`T` changes.
    softcap : float > 0, optional
        :math:`c`: the logits are soft-capped first, :math:`x \to c \tanh(x / c)` (Gemma 2);
        ``±inf`` logits are kept (``-inf`` still masks a class). The gradient includes the
        factor :math:`1 - \tanh^2(x / c)`.
    return_aux : bool, default False
        Return a :class:`CrossEntropyAux` ``(loss, z_loss, lse)``: the loss as without it, its
        z-loss part (weighted and reduced the same way, so ``loss - z_loss`` is the
        cross-entropy alone) and the per-example log-sum-exp of the (capped) logits, shape
        ``(...)`` (one more read of the logits), for training logs.

    Returns
    -------
    array or CrossEntropyAux
        Shape ``logits.shape`` without ``axis`` for ``"none"``, else a 0-d array; the logits'
        array type, device and dtype (float16/bfloat16 are computed in float32).

    Notes
    -----
    Conventions: a class whose weighted target :math:`w_c t_{ic}` is 0 contributes exactly 0, so a
    ``-inf`` (masked) logit with no target mass is harmless; a ``-inf`` logit with target mass gives
    ``+inf``. With ``label_smoothing > 0`` every class gets target mass :math:`\varepsilon/C`, so a
    ``-inf`` logit then gives ``+inf`` (as in PyTorch). A row of all ``-inf`` logits has no
    distribution: its log-partition is taken as 0 (only its target terms count).

    For one-hot labels the result equals :func:`sparse_softmax_cross_entropy` for every option.
    Unlike PyTorch, the weighted mean of soft labels uses the same denominator as for hard labels.
    The gradient with respect to ``logits`` (:func:`infoloss.value_and_grad`) is
    :math:`s_i[(\sum_k w_k t_{ik} + 2z\operatorname{lse}_i)\operatorname{softmax}(x_i)_c - w_c t_{ic}]`.

    References
    ----------
    A. Chowdhery et al., "PaLM: Scaling Language Modeling with Pathways", 2022 (z-loss).
    C. Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", 2016
    (label smoothing).

    Examples
    --------
    The tutorial's call, TensorFlow-style keywords:

    >>> import numpy as np
    >>> from infoloss import softmax_cross_entropy
    >>> h0 = np.array([[2.0, 1.0, 0.1]])
    >>> label = np.array([[0.0, 0.0, 1.0]])
    >>> softmax_cross_entropy(labels=label, logits=h0)
    array([2.31703002])
    >>> float(softmax_cross_entropy(h0, label, label_smoothing=0.1, reduction="mean"))
    2.2236966...

    Soft targets from a teacher at temperature 2:

    >>> from infoloss import softmax
    >>> teacher = np.array([[3.0, 0.0, 1.0]])
    >>> softmax_cross_entropy(h0, softmax(teacher / 2), temperature=2.0,
    ...                       scale_by_temperature_squared=True)
    array([3.91824898])

    Soft-capped logits, and the z-loss term and log-partition returned for a training log:

    >>> softmax_cross_entropy(h0, label, softcap=1.0)
    array([1.66996996])
    >>> out = softmax_cross_entropy(h0, label, z_loss=1e-4, return_aux=True)
    >>> out.z_loss, out.lse
    (array([0.0005842]), array([2.41703002]))
    """
    return _softmax_ce(
        logits,
        labels,
        sparse=False,
        axis=axis,
        class_weights=class_weights,
        sample_weights=sample_weights,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        reduction=reduction,
        temperature=temperature,
        scale_by_temperature_squared=scale_by_temperature_squared,
        softcap=softcap,
        return_aux=return_aux,
    )[0]


def sparse_softmax_cross_entropy(
    logits: Any,
    labels: Any,
    *,
    axis: int = -1,
    class_weights: Any = None,
    sample_weights: Any = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    reduction: str = "none",
    softcap: float | None = None,
    return_aux: bool = False,
) -> Any:
    r"""Softmax cross-entropy with integer class labels.

    .. math::

        \ell_i = s_i \Big[(1-\varepsilon)\, w_{y_i} \big(\operatorname{lse}(x_i) - x_{i y_i}\big)
                 + \frac{\varepsilon}{C} \sum_c w_c \big(\operatorname{lse}(x_i) - x_{ic}\big)
                 + z\,\operatorname{lse}(x_i)^2\Big]

    that is :func:`softmax_cross_entropy` with one-hot labels, without forming them.

    Parameters
    ----------
    logits : array, shape (..., C, ...)
        Unnormalised log-probabilities. ``-inf`` masks a class.
    labels : integer array, shape ``logits.shape`` without ``axis``
        Class indices in ``[0, C)``, or ``ignore_index``.
    axis : int, default -1
        The class axis.
    class_weights : array, shape (C,), optional
        Weight :math:`w_c` of each class.
    sample_weights : array, broadcastable to the labels' shape, optional
        Weight :math:`s_i` of each example.
    ignore_index : int, optional
        Label value whose examples contribute nothing (loss 0, weight 0, gradient 0, z-loss
        included), e.g. ``-100`` for padding.
    label_smoothing : float in [0, 1], default 0
        :math:`\varepsilon`.
    z_loss : float ≥ 0, default 0
        Coefficient of the :math:`\operatorname{lse}^2` penalty.
    reduction : {"none", "sum", "mean"}, default "none"
        ``"mean"`` is :math:`\sum_i \ell_i / \sum_i s_i w_{y_i}` over examples not ignored
        (:math:`w = 1` without ``class_weights``); a mean over nothing is 0.0.
    softcap, return_aux
        As in :func:`softmax_cross_entropy` (an ignored example's ``lse`` is 0).

    Returns
    -------
    array or CrossEntropyAux
        The labels' shape for ``"none"``, else 0-d; the logits' array type and dtype.

    Notes
    -----
    Labels outside ``[0, C)`` that are not ``ignore_index`` raise :class:`infoloss.InfolossError`
    on eager backends. Under ``jax.jit`` (and ``torch.func`` transforms) the values cannot be
    read while tracing, so the check is skipped: JAX's gather then fills an out-of-range label's
    logit with nan and that example's loss is nan; validate labels outside ``jit``. The ``-inf`` conventions are those of
    :func:`softmax_cross_entropy`. ``mean`` with class weights matches PyTorch's
    ``F.cross_entropy(weight=...)``.

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss import sparse_softmax_cross_entropy
    >>> logits = np.array([[2.0, 1.0, 0.1], [0.0, 5.0, 0.0]])
    >>> sparse_softmax_cross_entropy(logits, np.array([2, 1]))
    array([2.31703002, 0.0133859 ])
    >>> float(sparse_softmax_cross_entropy(logits, np.array([2, -100]), ignore_index=-100,
    ...                                    reduction="mean"))
    2.317030...
    """
    return _softmax_ce(
        logits,
        labels,
        sparse=True,
        axis=axis,
        class_weights=class_weights,
        sample_weights=sample_weights,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        reduction=reduction,
        softcap=softcap,
        return_aux=return_aux,
    )[0]


def sigmoid_cross_entropy(
    logits: Any,
    labels: Any,
    *,
    pos_weight: Any = None,
    sample_weights: Any = None,
    label_smoothing: float = 0.0,
    reduction: str = "none",
    softcap: float | None = None,
) -> Array:
    r"""Sigmoid (binary) cross-entropy from logits, elementwise: the multi-label loss.

    .. math::

        \ell = s\,\big[-\,p\,y' \log \sigma(x) - (1 - y') \log(1 - \sigma(x))\big]
             = s\,\big[p\,y' \operatorname{softplus}(-x) + (1 - y') \operatorname{softplus}(x)\big],
        \qquad y' = (1 - \varepsilon)\, y + \varepsilon/2

    Each class is an independent yes/no question, so any number of labels can be on at once.

    Parameters
    ----------
    logits : array, any shape (..., C)
        Unnormalised log-odds.
    labels : array, same shape as ``logits``
        Targets in [0, 1] (0/1 for hard labels).
    pos_weight : array, broadcastable to ``logits`` (typically shape (C,)), optional
        Weight :math:`p` of the positive term per class, as PyTorch's ``pos_weight``: values > 1
        raise recall on rare positive labels.
    sample_weights : array, broadcastable to ``logits``, optional
        Weight :math:`s` of each element (or example, with shape (..., 1)).
    label_smoothing : float in [0, 1], default 0
        :math:`\varepsilon`: targets become :math:`y(1-\varepsilon) + \varepsilon/2`.
    reduction : {"none", "sum", "mean"}, default "none"
        ``"none"`` is elementwise; ``"mean"`` is :math:`\sum \ell / \sum s` with ``s`` broadcast to
        the logits' shape (the element count without weights; 0.0 when it is 0). PyTorch divides
        by the element count even with weights; :class:`infoloss.torch.BCEWithLogitsLoss` does too.
    softcap : float > 0, optional
        Soft-capping of the logits first, :math:`x \to c \tanh(x / c)` (±inf kept).

    Returns
    -------
    array
        The logits' shape for ``"none"``, else 0-d; the logits' array type and dtype.

    Notes
    -----
    Computed with a softplus that never overflows, so ``|x|`` up to the dtype's maximum is fine.
    A term whose coefficient (:math:`p y'` or :math:`1 - y'`) is 0 contributes exactly 0, so
    ``x = -inf`` with ``y = 0`` gives 0 and ``x = -inf`` with ``y > 0`` gives ``+inf``; with
    ``label_smoothing > 0`` both coefficients are positive. The gradient is
    :math:`s[(p y' + 1 - y')\sigma(x) - p y']`, i.e. :math:`\sigma(x) - y` in the plain case.

    Examples
    --------
    The tutorial's multi-label call:

    >>> import numpy as np
    >>> from infoloss import sigmoid_cross_entropy
    >>> h0 = np.array([[2.0, -1.0, 0.5]])
    >>> label = np.array([[1.0, 0.0, 1.0]])
    >>> sigmoid_cross_entropy(labels=label, logits=h0)
    array([[0.12692801, 0.31326169, 0.47407698]])
    >>> float(sigmoid_cross_entropy(h0, label, reduction="mean"))
    0.304755...
    """
    return _sigmoid_ce(
        logits,
        labels,
        pos_weight=pos_weight,
        sample_weights=sample_weights,
        label_smoothing=label_smoothing,
        reduction=reduction,
        softcap=softcap,
    )[0]


def weight_total(
    labels: Any,
    *,
    kind: str | None = None,
    axis: int = -1,
    ignore_index: int | None = None,
    class_weights: Any = None,
    sample_weights: Any = None,
    dtype: Any = None,
) -> Array:
    r"""The denominator of a loss's ``reduction="mean"``: :math:`\sum_i W_i`.

    .. math::

        \text{sparse:}\quad W_i = s_i\, w_{y_i}\ (0 \text{ for } y_i = \text{ignore\_index});
        \qquad \text{softmax:}\quad W_i = s_i \sum_c w_c\, y_{ic};
        \qquad \text{sigmoid:}\quad W_{ic} = s_{ic}

    with :math:`s = 1` without ``sample_weights`` and :math:`w = 1` without ``class_weights``
    (so the softmax total without class weights is :math:`\sum_i s_i`, and the sigmoid total
    the element count). These are the rules of the losses' ``"mean"``, so
    ``loss(..., reduction="sum") / weight_total(...)`` is their ``"mean"``:

    - ``kind="sparse"`` (integer labels): :func:`sparse_softmax_cross_entropy`,
      :func:`infoloss.linear_cross_entropy`, :func:`infoloss.sparse_softmax_focal_loss`,
      :func:`infoloss.sparse_poly_cross_entropy`;
    - ``kind="softmax"`` (target probabilities, classes on ``axis``):
      :func:`softmax_cross_entropy`, :func:`infoloss.softmax_focal_loss`,
      :func:`infoloss.poly_cross_entropy` (label smoothing and temperature do not change it);
    - ``kind="sigmoid"`` (labels of the logits' shape): :func:`sigmoid_cross_entropy`,
      :func:`infoloss.sigmoid_focal_loss` (``pos_weight`` and ``alpha`` do not enter it).

    A mean over several batches, micro-batches or data-parallel ranks is the sum of their
    ``"sum"`` losses divided by the sum of their weight totals (:mod:`infoloss.distributed`
    all-reduces it).

    Parameters
    ----------
    labels : array
        ``kind="sparse"``: integer class indices (or ``ignore_index``), any shape;
        ``"softmax"``: target probabilities, shape ``(..., C, ...)``; ``"sigmoid"``: targets,
        the logits' shape.
    kind : {"sparse", "softmax", "sigmoid"}, optional
        Which losses' denominator; by default ``"sparse"``, and floating labels then raise
        (say which kind they are).
    axis : int, default -1
        The class axis of ``kind="softmax"`` labels.
    ignore_index : int, optional
        Label value of the examples that count for nothing (``kind="sparse"`` only).
    class_weights : array, shape (C,), optional
        Weight of each class (not for ``kind="sigmoid"``); sparse labels must then lie in
        ``[0, C)`` (or be ``ignore_index``).
    sample_weights : array, optional
        Weight of each example: broadcastable to the labels' shape (``"sparse"``,
        ``"sigmoid"``: each element) or to the batch shape (``"softmax"``: the labels' shape
        without ``axis``).
    dtype : floating dtype, optional
        Of the result; by default that of the floating labels and weights (float32 for
        float16/bfloat16), else the array library's default floating dtype (float32 for torch:
        exact counts up to 2**24).

    Returns
    -------
    array
        0-d, the labels' array type and device.

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss import sparse_softmax_cross_entropy, weight_total
    >>> logits = np.array([[2.0, 1.0, 0.1], [0.0, 5.0, 0.0], [1.0, 1.0, 1.0]])
    >>> y = np.array([2, -100, 0])
    >>> float(weight_total(y, ignore_index=-100))
    2.0
    >>> s = sparse_softmax_cross_entropy(logits, y, ignore_index=-100, reduction="sum")
    >>> m = sparse_softmax_cross_entropy(logits, y, ignore_index=-100, reduction="mean")
    >>> bool(np.isclose(s / weight_total(y, ignore_index=-100), m))
    True

    Probability labels with class weights, and sigmoid targets with per-example weights:

    >>> from infoloss import sigmoid_cross_entropy, softmax_cross_entropy
    >>> t = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    >>> cw = np.array([1.0, 3.0, 0.5])
    >>> float(weight_total(t, kind="softmax", class_weights=cw))
    3.5
    >>> s = softmax_cross_entropy(logits, t, class_weights=cw, reduction="sum")
    >>> m = softmax_cross_entropy(logits, t, class_weights=cw, reduction="mean")
    >>> bool(np.isclose(s / weight_total(t, kind="softmax", class_weights=cw), m))
    True
    >>> float(weight_total(t, kind="sigmoid", sample_weights=np.array([[1.0], [2.0], [0.0]])))
    9.0
    """
    return weight_total_of(
        weight_total_args(
            labels, ignore_index, class_weights, sample_weights, dtype, kind=kind, axis=axis
        )
    )
