"""Generic linear layer + sparse softmax cross-entropy, one chunk of rows at a time."""

from __future__ import annotations

from typing import Any

from array_api_compat import is_torch_namespace

from .. import _reduce
from .._specs import LinearCE
from .._utils import Array, Namespace
from .losses import softmax_ce_rows

__all__ = ["linear_ce", "weight_total"]

Grads = tuple[Array, Array, Array | None]


def weight_total(
    xp: Namespace, y: Array, cw: Array | None, ignore_index: int | None, dtype: Any
) -> Array:
    """Σ W over the examples: the class weight of each target (1 without class weights), 0 for
    an ignored example."""
    valid = None if ignore_index is None else (y != ignore_index)
    if cw is None:
        ones = xp.ones(y.shape, dtype=dtype)
        return xp.sum(ones if valid is None else xp.where(valid, ones, xp.zeros_like(ones)))
    safe = y if valid is None else xp.where(valid, y, xp.zeros_like(y))
    wy = xp.take(cw, xp.astype(safe, xp.int64) if is_torch_namespace(xp) else safe)
    return xp.sum(wy if valid is None else xp.where(valid, wy, xp.zeros_like(wy)))


def linear_ce(spec: LinearCE, want_grad: bool) -> tuple[Array, Grads | None]:
    """Value and (d_hidden, d_weight, d_bias) in the compute dtype, flattened rows."""
    xp, h, w, y, b, cw = (
        spec.xp,
        spec.hidden,
        spec.weight,
        spec.labels,
        spec.bias,
        spec.class_weights,
    )
    n, chunk = int(h.shape[0]), spec.chunk_rows
    mean = spec.reduction == "mean"
    total = weight_total(xp, y, cw, spec.options.ignore_index, h.dtype) if mean else None
    wt = xp.matrix_transpose(w)
    losses, dhs = [], []
    dw = db = None
    for start in range(0, n, chunk):
        hk, yk = h[start : start + chunk, ...], y[start : start + chunk]
        logits = hk @ wt if b is None else hk @ wt + b
        loss_k, _, g = softmax_ce_rows(
            xp,
            logits,
            yk,
            class_weights=cw,
            sample_weights=None,
            options=spec.options,
            want_grad=want_grad,
        )
        losses.append(loss_k)
        if g is not None:
            g = _reduce.scale_gradient(xp, g, total, spec.reduction)
            dhs.append(g @ w)
            gw = xp.matrix_transpose(g) @ hk
            dw = gw if dw is None else dw + gw
            if b is not None:
                gb = xp.sum(g, axis=0)
                db = gb if db is None else db + gb
    loss = xp.concat(losses) if len(losses) > 1 else losses[0]
    value = _reduce.reduce(xp, loss, total, spec.reduction)
    if not want_grad:
        return value, None
    return value, (xp.concat(dhs, axis=0) if len(dhs) > 1 else dhs[0], dw, db)
