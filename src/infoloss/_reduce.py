"""The reductions of every loss, defined once.

``"none"`` returns the per-example losses ℓᵢ, ``"sum"`` returns Σᵢ ℓᵢ and ``"mean"`` returns
Σᵢ ℓᵢ / Σᵢ Wᵢ, where Wᵢ is the example's weight in the mean (its sample weight times the class
weight of its target; 0 for an ignored example) and a mean over zero total weight is 0.0. The
gradient of a reduction scales each example's gradient by 1 ("none", "sum") or 1 / Σ W ("mean").

Two forms: array-API functions for the generic code (any backend, traceable), and float
functions for the fused kernels' callers, which sum per-row results in float64 on the host.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._utils import REDUCTIONS, Array, Namespace

__all__ = [
    "REDUCTIONS",
    "grad_scale",
    "reduce",
    "reduce_rows",
    "safe_divide",
    "scale_gradient",
    "weigh_rows",
    "weight_total",
    "weight_total_dense",
    "weight_total_elementwise",
]


def safe_divide(xp: Namespace, num: Array, den: Array) -> Array:
    """``num / den`` with 0 where ``den == 0`` (a mean over nothing is 0, not nan)."""
    zero = den == 0
    return xp.where(zero, xp.zeros_like(num), num / xp.where(zero, xp.ones_like(den), den))


def reduce(xp: Namespace, loss: Array, weight_total: Array | None, reduction: str) -> Array:
    """The reduction of per-example losses (generic code); ``weight_total`` = Σ W for "mean"."""
    if reduction == "none":
        return loss
    total = xp.sum(loss)
    if isinstance(total, np.generic):  # NumPy gives a scalar; return a 0-d array on every path
        total = np.asarray(total)
    if reduction == "sum":
        return total
    if weight_total is None:
        raise AssertionError("a mean needs its weight total")  # pragma: no cover
    return safe_divide(xp, total, xp.astype(weight_total, total.dtype))


def scale_gradient(xp: Namespace, g: Array, weight_total: Array | None, reduction: str) -> Array:
    """The per-example gradient ``g`` of the sum turned into that of the reduction."""
    if reduction != "mean":
        return g
    if weight_total is None:
        raise AssertionError("a mean needs its weight total")  # pragma: no cover
    return safe_divide(xp, g, xp.broadcast_to(weight_total, g.shape))


def weight_total(
    xp: Namespace,
    y: Array,
    cw: Array | None,
    sw: Array | None,
    ignore_index: int | None,
    dtype: Any,
) -> Array:
    """Σ W of integer labels ``y``: Wᵢ = sᵢ · w_{yᵢ} (1 for an absent factor), 0 where
    ``yᵢ == ignore_index`` — the denominator of every sparse loss's "mean"."""
    from array_api_compat import device, is_torch_namespace

    valid = None if ignore_index is None else (y != ignore_index)
    if cw is None:
        w = xp.ones(tuple(y.shape), dtype=dtype, device=device(y))
    else:
        idx = y if valid is None else xp.where(valid, y, xp.zeros_like(y))
        if is_torch_namespace(xp) and idx.dtype != xp.int64:
            idx = xp.astype(idx, xp.int64)
        w = xp.reshape(xp.take(cw, xp.reshape(idx, (-1,))), tuple(y.shape))
    if sw is not None:
        w = w * sw
    if valid is not None:
        w = xp.where(valid, w, xp.zeros_like(w))
    total = xp.sum(w)
    return np.asarray(total) if isinstance(total, np.generic) else total


def weight_total_dense(
    xp: Namespace, y: Array, cw: Array | None, sw: Array | None, dtype: Any
) -> Array:
    """Σ W of probability labels ``y`` ``(..., C)`` (classes last): Wᵢ = sᵢ · Σ_c w_c y_ic,
    or sᵢ without class weights — the denominator of every dense softmax loss's "mean"."""
    from array_api_compat import device

    batch = tuple(y.shape[:-1])
    w = xp.ones(batch, dtype=dtype, device=device(y)) if cw is None else xp.sum(y * cw, axis=-1)
    if sw is not None:
        w = w * sw
    total = xp.sum(w)
    return np.asarray(total) if isinstance(total, np.generic) else total


def weight_total_elementwise(xp: Namespace, y: Array, sw: Array | None, dtype: Any) -> Array:
    """Σ s over every element of ``y`` (``sw`` broadcast to its shape), or the element count:
    the denominator of the sigmoid losses' "mean"."""
    from array_api_compat import device

    if sw is not None:
        total = xp.sum(sw)
    else:
        total = xp.sum(xp.ones(tuple(y.shape), dtype=dtype, device=device(y)))
    return np.asarray(total) if isinstance(total, np.generic) else total


def grad_scale(weight_total: float, reduction: str) -> float:
    """The factor a kernel multiplies each example's gradient by (host floats)."""
    if reduction != "mean":
        return 1.0
    return 1.0 / weight_total if weight_total != 0 else 0.0


def reduce_rows(
    rows: Any, weight_total: float, reduction: str, dtype: Any, shape: tuple[int, ...]
) -> np.ndarray:
    """The reduction of per-row float64 results from a kernel, as an array of ``dtype``
    (``shape`` for "none", else 0-d)."""
    if reduction == "none":
        return np.asarray(rows, dtype=dtype).reshape(shape)
    s = float(np.sum(rows, dtype=np.float64))
    if reduction == "mean":
        s = s / weight_total if weight_total != 0 else 0.0
    return np.asarray(s, dtype=dtype)


def row_weights(
    xp: Namespace,
    rows: Array,
    *,
    axis: int,
    reduction: str,
    sample_weights: Array | None = None,
    mask: Array | None = None,
) -> tuple[Array | None, Array | None, Array | None]:
    """``(w, keep, total)`` for per-row measures ``rows`` (class ``axis`` kept, length 1): each
    row's weight (its sample weight, 0 where ``mask`` is False; None when neither is given), the
    mask expanded like ``rows`` (or None) and, for "mean", Σ W (the row count without weights)."""
    w = None if sample_weights is None else xp.expand_dims(sample_weights, axis=axis)
    keep = None if mask is None else xp.expand_dims(mask, axis=axis)
    if keep is not None:
        w = xp.astype(keep, rows.dtype) if w is None else xp.where(keep, w, xp.zeros_like(w))
    total = None
    if reduction == "mean":
        if w is None:
            total = xp.asarray(float(math.prod(tuple(rows.shape))), dtype=rows.dtype)
        else:
            total = xp.sum(xp.broadcast_to(w, tuple(rows.shape)))
    return w, keep, total


def row_grad_factor(
    xp: Namespace, w: Array | None, total: Array | None, grad_scale: float, dtype: Any
) -> Any:
    """The factor of each row's gradient: ``grad_scale · w / Σ W`` (a float when there are no
    weights, else an array shaped like the rows), in ``dtype``; 0 for a mean over nothing."""
    if w is None:
        if total is None:
            return grad_scale
        t = total
        if not hasattr(total, "shape") or total.shape == ():
            try:
                t = float(total)
            except TypeError:  # a traced total (jax.jit: ConcretizationTypeError)
                t = total
        if isinstance(t, float):
            return grad_scale / t if t != 0 else 0.0
    f = xp.astype(w, dtype) * grad_scale if w is not None else None
    if total is not None:
        tt = xp.astype(total, dtype)
        one = xp.ones_like(tt)
        inv = xp.where(tt == 0, xp.zeros_like(tt), one / xp.where(tt == 0, one, tt))
        f = inv * grad_scale if f is None else f * inv
    return f


def weigh_rows(
    xp: Namespace,
    rows: Array,
    grads: tuple[Array, ...] | None,
    *,
    axis: int,
    keepdims: bool,
    reduction: str,
    scale: float = 1.0,
    grad_scale: float = 1.0,
    sample_weights: Array | None = None,
    mask: Array | None = None,
) -> tuple[Array, tuple[Array, ...] | None]:
    """Per-row measures (``rows``, with the class ``axis`` kept, length 1) weighted and reduced.

    Each row's value is multiplied by ``scale`` and its sample weight; a row where ``mask`` is
    False gives exactly 0 (also when its value is nan or inf) and has weight 0. The reduction
    follows the module's rule, the weight of a row in a mean being its sample weight (1 without
    weights) times its mask. ``grads`` are the gradients of each row's *unscaled* value with
    respect to the (already tempered) logits; each is multiplied by ``grad_scale`` (for a
    temperature T: ``scale / T``), the row's weight and, for "mean", ``1 / Σ W``
    (:func:`row_grad_factor`), and is 0 in masked rows.
    """
    w, keep, total = row_weights(
        xp, rows, axis=axis, reduction=reduction, sample_weights=sample_weights, mask=mask
    )
    v = rows * scale if scale != 1.0 else rows
    if w is not None:
        v = v * w
    if keep is not None:
        v = xp.where(keep, v, xp.zeros_like(rows))
    if reduction == "none":
        value = v if keepdims else xp.squeeze(v, axis=axis)
    else:
        value = reduce(xp, v, total, reduction)
    if grads is None:
        return value, None
    out = []
    for g in grads:
        f = row_grad_factor(xp, w, total, grad_scale, g.dtype)
        gg = g if isinstance(f, float) and f == 1.0 else g * f
        if keep is not None:
            gg = xp.where(keep, gg, xp.zeros_like(gg))
        out.append(gg)
    return value, tuple(out)
