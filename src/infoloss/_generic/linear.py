"""Generic linear layer + sparse softmax cross-entropy, one chunk of rows at a time."""

from __future__ import annotations

from typing import Any

from array_api_compat import is_torch_namespace

from .. import _reduce
from .._specs import LinearCE
from .._utils import Array, Namespace
from .activations import lse, softcap
from .losses import softmax_ce_rows

__all__ = ["linear_aux", "linear_ce", "weight_total"]

Grads = tuple[Array, Array, Array | None]


def weight_total(
    xp: Namespace,
    y: Array,
    cw: Array | None,
    ignore_index: int | None,
    dtype: Any,
    sw: Array | None = None,
) -> Array:
    """Σ W over the examples: the sample weight times the class weight of each target (1
    without weights), 0 for an ignored example."""
    valid = None if ignore_index is None else (y != ignore_index)
    if cw is None:
        wy = xp.ones(y.shape, dtype=dtype)
    else:
        safe = y if valid is None else xp.where(valid, y, xp.zeros_like(y))
        wy = xp.take(cw, xp.astype(safe, xp.int64) if is_torch_namespace(xp) else safe)
    if sw is not None:
        wy = wy * sw
    return xp.sum(wy if valid is None else xp.where(valid, wy, xp.zeros_like(wy)))


def linear_ce(spec: LinearCE, want_grad: bool) -> tuple[Array, Grads | None, Array | None]:
    """Value, (d_hidden, d_weight, d_bias) in the compute dtype, flattened rows, and the
    per-row log-sum-exp of the (soft-capped) logits when ``spec.want_lse``."""
    xp, h, w, y, b, cw, sw = (
        spec.xp,
        spec.hidden,
        spec.weight,
        spec.labels,
        spec.bias,
        spec.class_weights,
        spec.sample_weights,
    )
    n, chunk = int(h.shape[0]), spec.chunk_rows
    mean = spec.reduction == "mean"
    total = weight_total(xp, y, cw, spec.options.ignore_index, h.dtype, sw) if mean else None
    wt = xp.matrix_transpose(w)
    losses, dhs, lses = [], [], []
    dw = db = None
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)  # array-api-strict refuses slices past the end
        hk, yk = h[start:stop, ...], y[start:stop]
        logits = hk @ wt if b is None else hk @ wt + b
        if spec.want_lse:
            capped = logits
            if spec.options.softcap is not None:
                capped = softcap(xp, logits, spec.options.softcap)[0]
            lses.append(lse(xp, capped, -1)[..., 0])
        loss_k, _, g = softmax_ce_rows(
            xp,
            logits,
            yk,
            class_weights=cw,
            sample_weights=None if sw is None else sw[start:stop],
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
    lse_rows = None
    if spec.want_lse:
        lse_rows = xp.concat(lses) if len(lses) > 1 else lses[0]
    if not want_grad:
        return value, None, lse_rows
    return value, (xp.concat(dhs, axis=0) if len(dhs) > 1 else dhs[0], dw, db), lse_rows


def linear_aux(spec: LinearCE, lse_rows: Array) -> tuple[Array, Array]:
    """``(z-loss term reduced as the loss, per-row lse with 0 for ignored rows)``."""
    xp, o, sw = spec.xp, spec.options, spec.sample_weights
    y = spec.labels
    valid = None if o.ignore_index is None else (y != o.ignore_index)
    total = None
    if spec.reduction == "mean":
        total = weight_total(xp, y, spec.class_weights, o.ignore_index, lse_rows.dtype, sw)
    l0 = xp.where(lse_rows > -float("inf"), lse_rows, xp.zeros_like(lse_rows))
    zt = o.z_loss * (l0 * l0)
    if sw is not None:
        zt = zt * sw
    if valid is not None:
        zt = xp.where(valid, zt, xp.zeros_like(zt))
        lse_rows = xp.where(valid, lse_rows, xp.zeros_like(lse_rows))
    return _reduce.reduce(xp, zt, total, spec.reduction), lse_rows
