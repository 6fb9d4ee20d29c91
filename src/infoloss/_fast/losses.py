"""NumPy glue of the fused cross-entropy kernels: a spec in, the kernel call, value and gradient out.

``out`` (the caller's gradient buffer of :func:`infoloss.value_and_grad`) is handled here and
only here: the kernel writes into it directly when it can (C-contiguous, the compute dtype, no
overlap with an input other than the logits of a kernel that may run in place); otherwise the
router copies the gradient into it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _reduce
from .._specs import SigmoidCE, SoftmaxCE
from .._utils import check_label_counts
from . import get_kernels, rows, softcap, unrows

__all__ = ["ce_lse", "kernel_out", "sigmoid_ce", "softmax_ce"]


def kernel_out(out: Any, x2: np.ndarray, inputs: tuple[Any, ...], in_place_ok: bool) -> Any:
    """``out`` as the kernel's (N, C) gradient buffer, or None when the kernel cannot write into
    it directly (another dtype or layout, or overlap with an input other than the logits
    themselves in a kernel that reads each logit before storing its gradient)."""
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


def softmax_ce(spec: SoftmaxCE, want_grad: bool, out: Any = None) -> tuple[Any, Any]:
    """Both softmax cross-entropies on the fused kernels (value in the compute dtype)."""
    k = get_kernels()
    assert k is not None
    o = spec.options
    x = spec.logits
    if x.dtype != spec.compute_dtype:
        x = x.astype(spec.compute_dtype)
    ax = spec.axis
    x2 = rows(x, ax)
    d_cap = None
    if o.softcap is not None:  # the kernel sees the capped logits (a copy); chain rule after
        x2 = x2.copy()
        d_cap = softcap(x2, o.softcap, out=x2)
    n = x2.shape[0]
    batch = tuple(x.shape[:ax]) + tuple(x.shape[ax + 1 :])
    cw, sw = spec.class_weights, spec.sample_weights
    cw64 = None if cw is None else np.asarray(cw, dtype=np.float64)
    sw64 = None if sw is None else np.ascontiguousarray(sw, dtype=np.float64).reshape(n)
    if o.sparse:
        # the kernel wrapper indexes only with its own checked copy of the labels (another
        # thread changing them during the call gives an error, never an out-of-bounds read);
        # here they only pick class weights, through a clipped copy
        lab = np.asarray(spec.labels, dtype=np.int64).reshape(n)
        ii = o.ignore_index
        w = np.ones(n) if cw64 is None else cw64[np.clip(lab, 0, max(x2.shape[1] - 1, 0))]
        if ii is not None:
            w = np.where(lab == ii, 0.0, w)
    else:
        y2 = rows(np.asarray(spec.labels, dtype=x.dtype), ax)
        w = np.ones(n) if cw64 is None else y2 @ cw64.astype(x.dtype)
    if sw64 is not None:
        w = w * sw64
    total = float(np.sum(w, dtype=np.float64))
    scale = _reduce.grad_scale(total, spec.reduction) if want_grad else None
    kout = None
    if want_grad and ax == x.ndim - 1:
        kout = kernel_out(out, x2, (spec.labels, cw, sw), in_place_ok=o.sparse)
    if o.sparse:
        rows_loss, g = k.sparse_softmax_ce(
            x2, lab, cw64, sw64, o.ignore_index, o.label_smoothing, float(o.z_loss), scale, out=kout
        )
    else:
        bad = np.empty(n, np.float64)
        rows_loss, g = k.softmax_ce(
            x2,
            y2,
            cw64,
            sw64,
            o.label_smoothing,
            float(o.z_loss),
            scale,
            out=kout,
            bad_labels=bad,
        )
        check_label_counts(bad, spec.labels, None)
    value = _reduce.reduce_rows(rows_loss, total, spec.reduction, x.dtype, batch)
    if g is not None and d_cap is not None:
        g *= d_cap
    grad = None if g is None else unrows(g, tuple(x.shape), ax)
    return value, grad


def sigmoid_ce(spec: SigmoidCE, want_grad: bool, out: Any = None) -> tuple[Any, Any]:
    """Sigmoid cross-entropy on the fused kernel (``pos_weight`` per class or absent)."""
    k = get_kernels()
    assert k is not None
    x = spec.logits
    if x.dtype != spec.compute_dtype:
        x = x.astype(spec.compute_dtype)
    shape = tuple(x.shape)
    c = shape[-1] if x.ndim else 1
    x2 = np.ascontiguousarray(x).reshape(-1, c)
    d_cap = None
    if spec.softcap is not None:
        x2 = np.empty_like(x2)
        d_cap = softcap(np.ascontiguousarray(x).reshape(-1, c), spec.softcap, out=x2)
    y2 = np.ascontiguousarray(spec.labels, dtype=x.dtype).reshape(-1, c)
    pw, sw = spec.pos_weight, spec.sample_weights
    pw64 = None if pw is None else np.asarray(pw, dtype=np.float64).reshape(c)
    sw2 = (
        None
        if sw is None
        else np.broadcast_to(np.asarray(sw, dtype=np.float64), shape).reshape(-1, c)
    )
    total = float(x2.size) if sw2 is None else float(np.sum(sw2, dtype=np.float64))
    scale = _reduce.grad_scale(total, spec.reduction) if want_grad else None
    kout = kernel_out(out, x2, (spec.labels, pw, sw), in_place_ok=False) if want_grad else None
    bad = np.empty(x2.shape[0], np.float64)
    loss, g = k.sigmoid_ce(
        x2,
        y2,
        pw64,
        sw2,
        spec.label_smoothing,
        scale,
        spec.reduction == "none",
        out=kout,
        bad_labels=bad,
    )
    check_label_counts(bad, spec.labels, 1.0)
    value = _reduce.reduce_rows(loss, total, spec.reduction, x.dtype, shape)
    if g is not None and d_cap is not None:
        g *= d_cap
    return value, (None if g is None else g.reshape(shape))


def ce_lse(spec: SoftmaxCE) -> np.ndarray:
    """The log-sum-exp of each example's (soft-capped) logits by the row kernel, the batch
    shape, compute dtype (``return_aux``; one more read of the logits)."""
    k = get_kernels()
    assert k is not None
    x = spec.logits
    if x.dtype != spec.compute_dtype:
        x = x.astype(spec.compute_dtype)
    ax = spec.axis
    x2 = rows(x, ax)
    if spec.options.softcap is not None:
        x2 = x2.copy()
        softcap(x2, spec.options.softcap, out=x2)
    batch = tuple(x.shape[:ax]) + tuple(x.shape[ax + 1 :])
    return np.asarray(k.logsumexp_rows(x2), dtype=x.dtype).reshape(batch)
