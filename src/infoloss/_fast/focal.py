"""NumPy glue of the focal and poly losses (sparse and dense labels, and sigmoid).

Sparse: the target-probability kernel for the loss, the sparse cross-entropy kernel (per-row
weights) for the gradient. Dense (probability labels): one kernel (:mod:`.kernels.dense_focal`).
Sigmoid: one elementwise kernel.

ℓ_i = a_i φ(q_{iy}) with a_i = s_i w_{y_i}; the gradient is B_i (q_i − e_{y_i}) with
B_i = a_i (1 − q)^γ (1 + γ q h) (focal) or a_i (1 + ε q) (poly), h = −log q / (1 − q): the
sparse cross-entropy's gradient with sample weights B_i. The per-row scalars are float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _reduce
from .._specs import SigmoidFocal, SoftmaxFocal
from .._utils import check_label_counts
from . import get_kernels, rows, unrows
from .losses import kernel_out

__all__ = ["dense_focal", "sigmoid_focal", "sparse_focal"]


def sparse_focal(spec: SoftmaxFocal, want_grad: bool, out: Any = None) -> tuple[Any, Any]:
    """``sparse_softmax_focal_loss`` / ``sparse_poly_cross_entropy`` of NumPy float32/float64
    logits (value in the compute dtype)."""
    k = get_kernels()
    assert k is not None
    ce = spec.ce
    o = ce.options
    x = ce.logits
    if x.dtype != ce.compute_dtype:
        x = x.astype(ce.compute_dtype)
    ax = ce.axis
    x2 = rows(x, ax)
    n, c = x2.shape
    batch = tuple(x.shape[:ax]) + tuple(x.shape[ax + 1 :])
    lab = np.array(ce.labels, dtype=np.int64, copy=True).reshape(n)
    ii = o.ignore_index
    lq, l1m = k.target_logs(x2, lab, ii)  # checks its own copy of the labels
    valid = None if ii is None else lab != ii
    safe = lab if valid is None else np.where(valid, lab, 0)
    safe = np.clip(safe, 0, max(c - 1, 0))
    cw, sw = ce.class_weights, ce.sample_weights
    a = np.ones(n) if cw is None else np.asarray(cw, dtype=np.float64)[safe]
    if sw is not None:
        a = a * np.asarray(sw, dtype=np.float64).reshape(n)
    if valid is not None:
        a = np.where(valid, a, 0.0)
    total = float(np.sum(a))
    p = spec.param
    x_y = x2[np.arange(n), safe].astype(np.float64) if n and c else np.zeros(n)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        lq0 = np.where((x_y == -np.inf) & (a == 0), 0.0, lq)  # a masked target: 0, not 0·inf
        q = np.exp(lq)
        s = np.exp(l1m)  # 1 − q, exact near q = 1
        if spec.kind == "focal":
            f = np.exp(p * l1m)
            loss = a * (f * -lq0)
            lqz = np.where(lq == -np.inf, 0.0, lq)
            h = np.where(s > 0, -lqz / np.where(s > 0, s, 1.0), 1.0)
            big_b = a * (f * (1.0 + p * q * h))
        else:
            loss = a * (-lq0 + p * s)
            big_b = a * (1.0 + p * q)
    value = _reduce.reduce_rows(loss, total, ce.reduction, x.dtype, batch)
    if not want_grad:
        return value, None
    scale = _reduce.grad_scale(total, ce.reduction)
    kout = None
    if ax == x.ndim - 1:
        kout = kernel_out(out, x2, (ce.labels, cw, sw), in_place_ok=True)
    _, g = k.sparse_softmax_ce(x2, lab, None, big_b, ii, 0.0, 0.0, scale, out=kout)
    return value, unrows(g, tuple(x.shape), ax)


def dense_focal(spec: SoftmaxFocal, want_grad: bool, out: Any = None) -> tuple[Any, Any]:
    """``softmax_focal_loss`` / ``poly_cross_entropy`` (probability labels) of NumPy
    float32/float64 logits on the dense kernel (value in the compute dtype)."""
    k = get_kernels()
    assert k is not None
    ce = spec.ce
    x = ce.logits
    if x.dtype != ce.compute_dtype:
        x = x.astype(ce.compute_dtype)
    ax = ce.axis
    x2 = rows(x, ax)
    n = x2.shape[0]
    batch = tuple(x.shape[:ax]) + tuple(x.shape[ax + 1 :])
    cw, sw = ce.class_weights, ce.sample_weights
    cw64 = None if cw is None else np.asarray(cw, dtype=np.float64)
    sw64 = None if sw is None else np.ascontiguousarray(sw, dtype=np.float64).reshape(n)
    y2 = rows(np.asarray(ce.labels, dtype=x.dtype), ax)
    w = np.ones(n) if cw64 is None else y2 @ cw64.astype(x.dtype)
    if sw64 is not None:
        w = w * sw64
    total = float(np.sum(w, dtype=np.float64))
    scale = _reduce.grad_scale(total, ce.reduction) if want_grad else None
    kout = None
    if want_grad and ax == x.ndim - 1:
        kout = kernel_out(out, x2, (ce.labels, cw, sw), in_place_ok=False)
    bad = np.empty(n, np.float64)
    loss, g = k.dense_focal(
        x2, y2, cw64, sw64, spec.kind, spec.param, scale, out=kout, bad_labels=bad
    )
    check_label_counts(bad, ce.labels, None)
    value = _reduce.reduce_rows(loss, total, ce.reduction, x.dtype, batch)
    return value, (None if g is None else unrows(g, tuple(x.shape), ax))


def sigmoid_focal(spec: SigmoidFocal, want_grad: bool, out: Any = None) -> tuple[Any, Any]:
    """``sigmoid_focal_loss`` of NumPy float32/float64 logits on the elementwise kernel."""
    k = get_kernels()
    assert k is not None
    ce = spec.ce
    x = ce.logits
    if x.dtype != ce.compute_dtype:
        x = x.astype(ce.compute_dtype)
    shape = tuple(x.shape)
    c = shape[-1] if x.ndim else 1
    x2 = np.ascontiguousarray(x).reshape(-1, c)
    y2 = np.ascontiguousarray(ce.labels, dtype=x.dtype).reshape(-1, c)
    sw = ce.sample_weights
    sw2 = None
    if sw is not None:
        sw2 = np.broadcast_to(np.asarray(sw, dtype=np.float64), shape).reshape(-1, c)
    total = float(x2.size) if sw2 is None else float(np.sum(sw2, dtype=np.float64))
    scale = _reduce.grad_scale(total, ce.reduction) if want_grad else None
    kout = kernel_out(out, x2, (ce.labels, sw), in_place_ok=True) if want_grad else None
    loss, g = k.sigmoid_focal(
        x2, y2, sw2, spec.alpha, spec.gamma, scale, ce.reduction == "none", out=kout
    )
    value = _reduce.reduce_rows(loss, total, ce.reduction, x.dtype, shape)
    return value, (None if g is None else g.reshape(shape))
