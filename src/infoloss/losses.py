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

import math
from typing import Any

from array_api_compat import is_torch_namespace

from . import _dispatch
from ._utils import (
    Array,
    Namespace,
    any_true,
    as_float,
    check_data,
    check_index,
    check_nonnegative,
    check_reduction,
    check_unit_interval,
    compute_dtype,
    first_position,
    is_concrete,
    moveaxis_back,
    moveaxis_last,
    namespace,
    normalize_axis,
    pow2_scale,
    quiet_overflow,
    reduce_loss,
    require_floating,
    safe_divide,
    upcast,
)
from .activations import _lse_parts, _softplus
from .errors import InfolossError, InfolossTypeError

_INF = float("inf")

__all__ = ["sigmoid_cross_entropy", "softmax_cross_entropy", "sparse_softmax_cross_entropy"]

Grad = Array | None


# --------------------------------------------------------------------------- validation


def _check_options(
    reduction: Any, label_smoothing: Any, z_loss: Any = 0.0
) -> tuple[str, float, float]:
    return (
        check_reduction(reduction),
        check_unit_interval(label_smoothing, "label_smoothing"),
        check_nonnegative(z_loss, "z_loss"),
    )


def _nonnegative(xp: Namespace, w: Array | None, name: str) -> None:
    """Weights must not be negative (nan passes: it gives a nan result). Reads data."""
    check_data(xp, w, lambda a: a < 0, name, "non-negative weights")


def _check_class_weights(xp: Namespace, cw: Array | None, c: int, dtype: Any) -> Array | None:
    if cw is None:
        return None
    cw = as_float(xp, cw, "class_weights", dtype)
    if tuple(cw.shape) != (c,):
        raise InfolossError(
            f"`class_weights` must have shape ({c},), one weight per class; got shape {tuple(cw.shape)}"
        )
    _nonnegative(xp, cw, "class_weights")
    return cw


def _broadcast_weights(
    xp: Namespace, w: Array | None, shape: tuple[int, ...], name: str, dtype: Any, what: str
) -> Array | None:
    if w is None:
        return None
    w = as_float(xp, w, name, dtype)
    if tuple(w.shape) != shape:
        try:
            w = xp.broadcast_to(w, shape)
        except (ValueError, RuntimeError, TypeError):
            raise InfolossError(
                f"`{name}` must broadcast to {what} {shape}; got shape {tuple(w.shape)}"
            ) from None
    _nonnegative(xp, w, name)
    return w


def _check_ignore_index(ignore_index: Any, labels_dtype: Any, xp: Namespace) -> int | None:
    """``ignore_index`` as an int, or None when no label of ``labels_dtype`` can equal it."""
    ii = check_index(ignore_index, "ignore_index")
    if ii is None:
        return None
    info = xp.iinfo(labels_dtype)
    return ii if info.min <= ii <= info.max else None


def _check_label_range(xp: Namespace, labels: Array, c: int, ignore_index: int | None) -> None:
    if not is_concrete(labels) or labels.size == 0:  # checks that read data skip tracers
        return
    bad = (labels < 0) | (labels >= c)
    if ignore_index is not None:
        bad = bad & (labels != ignore_index)
    if any_true(xp, bad):
        pos = first_position(xp, bad)
        extra = f" or `ignore_index`={ignore_index}" if ignore_index is not None else ""
        raise InfolossError(
            f"`labels` must hold class indices in [0, {c}){extra}; found {int(labels[pos])} at position {pos}"
        )


def _check_soft_labels(xp: Namespace, y: Array, upper: float | None) -> None:
    """Dense labels are non-negative and finite (at most ``upper`` when given); nan passes."""
    if upper is None:
        check_data(
            xp, y, lambda a: (a < 0) | (a == _INF), "labels", "finite non-negative target masses"
        )
    else:
        check_data(xp, y, lambda a: (a < 0) | (a > upper), "labels", "targets in [0, 1]")


def _mean_scales(
    xp: Namespace, reduction: str, cw: Array | None, sw: Array | None
) -> tuple[Array | None, Array | None, Any]:
    """Weights of a "mean" divided by powers of two (exact; the mean does not change) so that
    their sums neither overflow nor underflow; also returns the factor the class weights were
    divided by (the z-loss, which class weights do not multiply, is divided by it too)."""
    if reduction != "mean":
        return cw, sw, None
    kc = None
    if sw is not None:
        sw = sw / pow2_scale(xp, sw)
    if cw is not None:
        kc = pow2_scale(xp, cw)
        cw = cw / kc
    return cw, sw, kc


def _mask_masked(xp: Namespace, x: Array, coef: Array) -> Array:
    """``x`` with 0 where it is ``-inf`` and its coefficient is 0 (a masked class with no target
    mass): keeps 0·inf out of the value without touching the derivative anywhere else (the
    derivative with respect to a zero label or weight stays what the formula says)."""
    return xp.where((x == -_INF) & (coef == 0), xp.zeros_like(x), x)


def _check_grad_out(out: Any, logits: Any) -> None:
    """Validate ``value_and_grad(...)(..., out=...)``: a writeable NumPy array like the logits."""
    import numpy as np

    if not isinstance(logits, np.ndarray):
        raise InfolossTypeError(
            f"`out` is supported for NumPy logits only; got logits of type {type(logits).__name__}"
        )
    if not isinstance(out, np.ndarray):
        raise InfolossTypeError(f"`out` must be a NumPy array; got {type(out).__name__}")
    if out.shape != logits.shape or out.dtype != logits.dtype:
        raise InfolossError(
            f"`out` must have the logits' shape {logits.shape} and dtype {logits.dtype}; "
            f"got shape {out.shape} and dtype {out.dtype}"
        )
    if not out.flags.writeable:
        raise InfolossError("`out` must be writeable; got a read-only array")


def _kernel_out(out: Any, x2: Any, inputs: tuple[Any, ...], in_place_ok: bool) -> Any:
    """``out`` as the kernel's (N, C) gradient buffer, or None when the kernel cannot write into
    it directly (another dtype or layout, or overlap with an input other than the logits
    themselves in a kernel that reads each logit before storing its gradient)."""
    import numpy as np

    if out is None or out.dtype != x2.dtype or not out.flags.c_contiguous:
        return None
    o2 = out.reshape(x2.shape)
    if np.may_share_memory(o2, x2):
        same = (
            in_place_ok
            and o2.__array_interface__["data"][0] == x2.__array_interface__["data"][0]
            and o2.strides == x2.strides
        )
        if not same:
            return None
    if any(a is not None and np.may_share_memory(o2, a) for a in inputs):
        return None
    return o2


def _into_out(out: Any, grad: Any) -> Any:
    """Copy ``grad`` into ``out`` unless the kernel already wrote it there; return ``out``."""
    import numpy as np

    if not (
        grad.__array_interface__["data"][0] == out.__array_interface__["data"][0]
        and grad.strides == out.strides
    ):
        np.copyto(out, grad)
    return out


def _prepare_softmax(
    logits: Any, labels: Any, class_weights: Any, sample_weights: Any, axis: int, sparse: bool
) -> tuple[Namespace, Array, Array, Array | None, Array | None, int, Any]:
    xp, (x, y, cw, sw) = namespace(
        ("logits", logits),
        ("labels", labels),
        ("class_weights", class_weights),
        ("sample_weights", sample_weights),
        optional=("class_weights", "sample_weights"),
    )
    require_floating(xp, x, "logits")
    ax = normalize_axis(axis, x.ndim)
    c = int(x.shape[ax])
    if c == 0:
        raise InfolossError(
            f"`logits` must have at least one class along `axis`={axis}; got shape {tuple(x.shape)}"
        )
    batch = tuple(x.shape[:ax]) + tuple(x.shape[ax + 1 :])
    if sparse:
        if not xp.isdtype(y.dtype, "integral"):
            raise InfolossTypeError(
                f"`labels` must hold integer class indices; got dtype {str(y.dtype).replace('torch.', '')}"
                " (for probabilities use softmax_cross_entropy)"
            )
        if tuple(y.shape) != batch:
            raise InfolossError(
                f"`labels` must have the logits' shape without `axis`, {batch}; got {tuple(y.shape)}"
            )
    else:
        if tuple(y.shape) != tuple(x.shape):
            raise InfolossError(
                f"`labels` must have the logits' shape {tuple(x.shape)}; got {tuple(y.shape)}"
                " (for class indices use sparse_softmax_cross_entropy)"
            )
    cd = compute_dtype(xp, x.dtype)
    cw = _check_class_weights(xp, cw, c, cd)
    sw = _broadcast_weights(xp, sw, batch, "sample_weights", cd, "the batch shape")
    return xp, x, y, cw, sw, ax, cd


# --------------------------------------------------------------------------- softmax cross-entropy


@quiet_overflow
def _softmax_ce(
    logits: Any,
    labels: Any,
    *,
    axis: int = -1,
    class_weights: Any = None,
    sample_weights: Any = None,
    label_smoothing: Any = 0.0,
    z_loss: Any = 0.0,
    reduction: Any = "none",
    sparse: bool,
    ignore_index: int | None = None,
    want_grad: bool = False,
    grad_out: Any = None,
) -> tuple[Array, Grad]:
    """Both softmax cross-entropies: value and (optionally) d value / d logits (written into
    ``grad_out`` when given: see :func:`~infoloss.value_and_grad`)."""
    if grad_out is not None:
        _check_grad_out(grad_out, logits)
    if _dispatch.torch_enabled(logits, labels, class_weights, sample_weights):
        from .torch import _softmax_ce_torch  # CPU torch tensors: fused kernels under autograd

        return _softmax_ce_torch(
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
    reduction, eps, z = _check_options(reduction, label_smoothing, z_loss)
    check_index(ignore_index, "ignore_index")
    xp, x, y, cw, sw, ax, cd = _prepare_softmax(
        logits, labels, class_weights, sample_weights, axis, sparse
    )
    c = int(x.shape[ax])
    if sparse:
        ignore_index = _check_ignore_index(ignore_index, y.dtype, xp)
        _check_label_range(xp, y, c, ignore_index)
    else:
        y = as_float(xp, y, "labels", cd)
        _check_soft_labels(xp, y, None)
    cw, sw, kc = _mean_scales(xp, reduction, cw, sw)
    if kc is not None and z:
        z = z / float(kc) if is_concrete(kc) else z / kc
    xc = upcast(xp, x, cd)
    if _dispatch.enabled(xc):
        value, grad = _softmax_ce_fast(
            xc, y, cw, sw, ax, eps, z, reduction, sparse, ignore_index, want_grad, grad_out
        )
    else:
        value, grad = _softmax_ce_generic(
            xp, xc, y, cw, sw, ax, eps, z, reduction, sparse, ignore_index, want_grad
        )
    if grad is not None and grad_out is not None:
        return upcast(xp, value, x.dtype), _into_out(grad_out, grad)
    return upcast(xp, value, x.dtype), (upcast(xp, grad, x.dtype) if grad is not None else None)


def _softmax_ce_generic(
    xp: Namespace,
    x: Array,
    y: Array,
    cw: Array | None,
    sw: Array | None,
    ax: int,
    eps: float,
    z: Any,
    reduction: str,
    sparse: bool,
    ignore_index: int | None,
    want_grad: bool,
) -> tuple[Array, Grad]:
    x = moveaxis_last(xp, x, ax)
    c = int(x.shape[-1])
    # logsumexp = m + ls, kept apart so that (m - x) + ls loses nothing at |x| ~ 1e30;
    # both are 0 for a row with no distribution (all -inf); m is nan for a row with nan or +inf
    m, ls, _ = _lse_parts(xp, x, -1)
    m0, ls0 = m[..., 0], ls[..., 0]
    zero = xp.zeros_like(x)
    valid = None
    if sparse:
        valid = (y != ignore_index) if ignore_index is not None else None
        idx = y if valid is None else xp.where(valid, y, xp.zeros_like(y))
        if is_torch_namespace(xp) and idx.dtype != xp.int64:  # torch's gather wants int64
            idx = xp.astype(idx, xp.int64)
        x_y = xp.take_along_axis(x, idx[..., None], axis=-1)[..., 0]
        cw_y = None if cw is None else xp.reshape(xp.take(cw, xp.reshape(idx, (-1,))), idx.shape)
        coef = (1 - eps) if cw_y is None else (1 - eps) * cw_y
        if cw_y is None:
            ce = coef * ((m0 - x_y) + ls0) if eps < 1 else xp.zeros_like(x_y) + 0 * ls0
        else:  # a zero weight times a -inf logit is 0, not nan
            ce = coef * ((m0 - _mask_masked(xp, x_y, coef)) + ls0)
        if eps > 0:
            if cw is None:
                ce = ce + (eps / c) * xp.sum((m - x) + ls, axis=-1)
            else:
                ce = ce + (eps / c) * xp.sum(cw * ((m - _mask_masked(xp, x, cw)) + ls), axis=-1)
        # weight of each example in the mean, and total target mass Σ_k cw_k t_k for the gradient
        w = xp.ones_like(ce) if cw_y is None else cw_y
        mass = (1 - eps) * w + (eps if cw is None else eps / c * xp.sum(cw))
    else:
        y = moveaxis_last(xp, y, ax)
        t = y if eps == 0 else (1 - eps) * y + eps / c
        wt = t if cw is None else t * cw
        ce = xp.sum(wt * ((m - _mask_masked(xp, x, wt)) + ls), axis=-1)
        w = xp.ones_like(ce) if cw is None else xp.sum(y * cw, axis=-1)
        mass = xp.sum(wt, axis=-1)
    lse0 = m0 + ls0
    loss = ce + z * lse0 * lse0 if _nonzero(z) else ce
    if sw is not None:
        loss, w = loss * sw, w * sw
    if valid is not None:
        loss = xp.where(valid, loss, xp.zeros_like(loss))
        w = xp.where(valid, w, xp.zeros_like(w))
    weight_total = xp.sum(w) if reduction == "mean" else None
    value = reduce_loss(xp, loss, weight_total, reduction)
    if not want_grad:
        return value, None
    lq = (x - m) - ls  # log-probabilities
    q = xp.exp(lq)
    rowf = mass + 2 * z * lse0 if _nonzero(z) else mass
    if sparse:
        onehot = idx[..., None] == xp.arange(c, device=_dev(x))
        cy = xp.ones_like(lse0) if cw_y is None else cw_y
        cy = (1 - eps) * cy
        g = rowf[..., None] * q - xp.astype(onehot, x.dtype) * cy[..., None]
        # the target's rowf·q_y − cy as rowf·(q_y − 1) + (rowf − cy): q_y − 1 = expm1(log q_y)
        # keeps its relative accuracy for a confident prediction (q_y ≈ 1)
        lq_y = (x_y - m0) - ls0
        g_y = rowf * xp.expm1(lq_y) + (rowf - cy)
        g = xp.where(onehot, g_y[..., None], g)
        if eps > 0:
            g = g - (eps / c) * (xp.ones_like(x) if cw is None else cw)
    else:
        # near the mode (q > 1/2) rowf·q − wt = rowf·expm1(lq) + (rowf − wt) keeps full accuracy
        near = lq > -0.6931471805599453
        g = xp.where(
            near,
            rowf[..., None] * xp.expm1(xp.where(near, lq, xp.zeros_like(lq)))
            + (rowf[..., None] - wt),
            rowf[..., None] * q - wt,
        )
    if sw is not None:
        g = g * sw[..., None]
    if valid is not None:
        g = xp.where(valid[..., None], g, zero)
    if reduction == "mean":
        assert weight_total is not None
        g = safe_divide(xp, g, xp.broadcast_to(weight_total, g.shape))
    return value, moveaxis_back(xp, g, ax)


def _nonzero(z: Any) -> bool:
    """True unless ``z`` is the Python number 0 (an array coefficient always counts)."""
    return not (isinstance(z, (int, float)) and z == 0)


def _dev(x: Array) -> Any:
    from array_api_compat import device

    return device(x)


def _softmax_ce_fast(
    x: Any,
    y: Any,
    cw: Any,
    sw: Any,
    ax: int,
    eps: float,
    z: float,
    reduction: str,
    sparse: bool,
    ignore_index: int | None,
    want_grad: bool,
    grad_out: Any = None,
) -> tuple[Array, Grad]:
    import numpy as np

    k = _dispatch.kernels()
    assert k is not None
    x2 = _dispatch.rows(x, ax)
    n = x2.shape[0]
    batch = tuple(x.shape[:ax]) + tuple(x.shape[ax + 1 :])
    cw64 = None if cw is None else np.asarray(cw, dtype=np.float64)
    sw64 = None if sw is None else np.ascontiguousarray(sw, dtype=np.float64).reshape(n)
    if sparse:
        lab = np.ascontiguousarray(y, dtype=np.int64).reshape(n)
        safe = lab if ignore_index is None else np.where(lab == ignore_index, 0, lab)
        w = np.ones(n) if cw64 is None else cw64[safe]
        if ignore_index is not None:
            w = np.where(lab == ignore_index, 0.0, w)
    else:
        y2 = _dispatch.rows(np.asarray(y, dtype=x.dtype), ax)
        w = np.ones(n) if cw64 is None else y2 @ cw64.astype(x.dtype)
    if sw64 is not None:
        w = w * sw64
    total_w = float(np.sum(w, dtype=np.float64))
    scale = None
    if want_grad:
        scale = (1.0 / total_w if total_w != 0 else 0.0) if reduction == "mean" else 1.0
    kout = None
    if want_grad and ax == x.ndim - 1:
        kout = _kernel_out(grad_out, x2, (y, cw, sw), in_place_ok=sparse)
    if sparse:
        rows_loss, g = k.sparse_softmax_ce(
            x2, lab, cw64, sw64, ignore_index, eps, z, scale, out=kout
        )
    else:
        rows_loss, g = k.softmax_ce(x2, y2, cw64, sw64, eps, z, scale, out=kout)
    if reduction == "none":
        value = np.asarray(rows_loss, dtype=x.dtype).reshape(batch)
    else:
        s = float(np.sum(rows_loss, dtype=np.float64))
        if reduction == "mean":
            s = s / total_w if total_w != 0 else 0.0
        value = np.asarray(s, dtype=x.dtype)
    grad = None if g is None else _dispatch.unrows(g, tuple(x.shape), ax)
    return value, grad


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
) -> Array:
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

    Returns
    -------
    array
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
    """
    return _softmax_ce(
        logits,
        labels,
        axis=axis,
        class_weights=class_weights,
        sample_weights=sample_weights,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        reduction=reduction,
        sparse=False,
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
) -> Array:
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

    Returns
    -------
    array
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
        axis=axis,
        class_weights=class_weights,
        sample_weights=sample_weights,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        reduction=reduction,
        sparse=True,
        ignore_index=ignore_index,
    )[0]


# --------------------------------------------------------------------------- sigmoid cross-entropy


@quiet_overflow
def _sigmoid_ce(
    logits: Any,
    labels: Any,
    *,
    pos_weight: Any = None,
    sample_weights: Any = None,
    label_smoothing: Any = 0.0,
    reduction: Any = "none",
    want_grad: bool = False,
    grad_out: Any = None,
) -> tuple[Array, Grad]:
    if grad_out is not None:
        _check_grad_out(grad_out, logits)
    if _dispatch.torch_enabled(logits, labels, pos_weight, sample_weights):
        from .torch import _sigmoid_ce_torch  # CPU torch tensors: fused kernels under autograd

        return _sigmoid_ce_torch(
            logits,
            labels,
            pos_weight=pos_weight,
            sample_weights=sample_weights,
            label_smoothing=label_smoothing,
            reduction=reduction,
            want_grad=want_grad,
        )
    reduction, eps, _ = _check_options(reduction, label_smoothing)
    xp, (x, y, pw, sw) = namespace(
        ("logits", logits),
        ("labels", labels),
        ("pos_weight", pos_weight),
        ("sample_weights", sample_weights),
        optional=("pos_weight", "sample_weights"),
    )
    require_floating(xp, x, "logits")
    if tuple(y.shape) != tuple(x.shape):
        raise InfolossError(
            f"`labels` must have the logits' shape {tuple(x.shape)}; got {tuple(y.shape)}"
        )
    cd = compute_dtype(xp, x.dtype)
    shape = tuple(x.shape)
    y = as_float(xp, y, "labels", cd)
    _check_soft_labels(xp, y, 1.0)
    if pw is not None:
        pw = as_float(xp, pw, "pos_weight", cd)
        _nonnegative(xp, pw, "pos_weight")
        try:
            xp.broadcast_to(pw, shape)
        except (ValueError, RuntimeError, TypeError):
            raise InfolossError(
                f"`pos_weight` must broadcast against the logits' shape {shape} (one weight per class "
                f"on the last axis); got shape {tuple(pw.shape)}"
            ) from None
    sw = _broadcast_weights(xp, sw, shape, "sample_weights", cd, "the logits' shape")
    _, sw, _ = _mean_scales(xp, reduction, None, sw)
    xc = upcast(xp, x, cd)
    per_class = pw is None or (x.ndim >= 1 and tuple(pw.shape) == (shape[-1],))
    if per_class and _dispatch.enabled(xc):
        value, grad = _sigmoid_ce_fast(xc, y, pw, sw, eps, reduction, want_grad, grad_out)
    else:
        value, grad = _sigmoid_ce_generic(xp, xc, y, pw, sw, eps, reduction, want_grad)
    if grad is not None and grad_out is not None:
        return upcast(xp, value, x.dtype), _into_out(grad_out, grad)
    return upcast(xp, value, x.dtype), (upcast(xp, grad, x.dtype) if grad is not None else None)


def _sigmoid_ce_generic(
    xp: Namespace,
    x: Array,
    y: Array,
    pw: Array | None,
    sw: Array | None,
    eps: float,
    reduction: str,
    want_grad: bool,
) -> tuple[Array, Grad]:
    yp = y if eps == 0 else y * (1 - eps) + eps / 2
    a = yp if pw is None else pw * yp  # coefficient of softplus(-x) = -log σ(x)
    b = 1 - yp  # coefficient of softplus(x) = -log(1 - σ(x))
    # keep 0·inf out of the value (x = ∓inf where its term's coefficient is 0) without changing
    # the derivative anywhere else, in particular with respect to a label of exactly 0 or 1
    xa = _mask_masked(xp, x, a)
    xb = -_mask_masked(xp, -x, b)
    loss = a * _softplus(xp, -xa) + b * _softplus(xp, xb)
    if sw is not None:
        loss = loss * sw
    weight_total = None
    if reduction == "mean":
        count = float(math.prod(tuple(loss.shape)))
        weight_total = (
            xp.sum(sw) if sw is not None else xp.asarray(count, dtype=loss.dtype, device=_dev(loss))
        )
    value = reduce_loss(xp, loss, weight_total, reduction)
    if not want_grad:
        return value, None
    e = xp.exp(xp.where(x > 0, -x, x))
    sig = xp.where(x > 0, 1 / (1 + e), e / (1 + e))
    g = (a + b) * sig - a
    if sw is not None:
        g = g * sw
    if reduction == "mean":
        assert weight_total is not None
        g = safe_divide(xp, g, xp.broadcast_to(weight_total, g.shape))
    return value, g


def _sigmoid_ce_fast(
    x: Any,
    y: Any,
    pw: Any,
    sw: Any,
    eps: float,
    reduction: str,
    want_grad: bool,
    grad_out: Any = None,
) -> tuple[Array, Grad]:
    import numpy as np

    k = _dispatch.kernels()
    assert k is not None
    shape = tuple(x.shape)
    c = shape[-1] if x.ndim else 1
    x2 = np.ascontiguousarray(x).reshape(-1, c)
    y2 = np.ascontiguousarray(y, dtype=x.dtype).reshape(-1, c)
    pw64 = None if pw is None else np.asarray(pw, dtype=np.float64).reshape(c)
    sw2 = (
        None
        if sw is None
        else np.broadcast_to(np.asarray(sw, dtype=np.float64), shape).reshape(-1, c)
    )
    total_w = float(x2.size) if sw2 is None else float(np.sum(sw2, dtype=np.float64))
    scale = None
    if want_grad:
        scale = (1.0 / total_w if total_w != 0 else 0.0) if reduction == "mean" else 1.0
    kout = _kernel_out(grad_out, x2, (y, pw, sw), in_place_ok=False) if want_grad else None
    loss, g = k.sigmoid_ce(x2, y2, pw64, sw2, eps, scale, reduction == "none", out=kout)
    if reduction == "none":
        value = np.asarray(loss, dtype=x.dtype).reshape(shape)
    else:
        s = float(np.sum(loss, dtype=np.float64))
        if reduction == "mean":
            s = s / total_w if total_w != 0 else 0.0
        value = np.asarray(s, dtype=x.dtype)
    return value, (None if g is None else g.reshape(shape))


def sigmoid_cross_entropy(
    logits: Any,
    labels: Any,
    *,
    pos_weight: Any = None,
    sample_weights: Any = None,
    label_smoothing: float = 0.0,
    reduction: str = "none",
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
    )[0]
