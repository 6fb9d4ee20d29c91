"""NumPy glue of the softmax entropy, softmax KL and softmax JS kernels."""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import numpy as xp_np

from .._reduce import row_grad_factor, row_weights, weigh_rows
from .._specs import SoftmaxMeasure
from . import get_kernels, rows, unrows

__all__ = ["softmax_measure"]


def softmax_measure(spec: SoftmaxMeasure, want_grad: bool) -> tuple[np.ndarray, Any]:
    """softmax_entropy (``spec.b`` None), softmax_kl_divergence or softmax_js_divergence of
    float32/float64 arrays of one dtype, in ``base``; a 0-d result is a 0-d array."""
    k = get_kernels()
    assert k is not None
    a, ax = spec.a, spec.axis
    scale = 1.0 if spec.log_base is None else 1.0 / spec.log_base
    shape = tuple(a.shape[:ax]) + ((1,) if spec.keepdims else ()) + tuple(a.shape[ax + 1 :])
    if spec.b is None:
        h, g = k.softmax_entropy_rows(rows(a, ax), scale if want_grad else None)
        value = (np.asarray(h) * scale).astype(a.dtype).reshape(shape)
        return value, (None if g is None else unrows(g, tuple(a.shape), ax))
    if spec.op == "js" or not spec.plain:
        return _softmax_divergence(spec, want_grad)
    kl, ga, gb = k.softmax_kl_rows(rows(a, ax), rows(spec.b, ax), scale if want_grad else None)
    value = (np.asarray(kl) * scale).astype(a.dtype).reshape(shape)
    grads = None
    if want_grad:
        grads = (unrows(ga, tuple(a.shape), ax), unrows(gb, tuple(a.shape), ax))
    return value, grads


def _softmax_divergence(spec: SoftmaxMeasure, want_grad: bool) -> tuple[np.ndarray, Any]:
    """softmax_js_divergence, or softmax_kl_divergence with a temperature, weights, a mask or a
    reduction: the kernel on the tempered logits, then the rows weighed and reduced as the
    generic definition does (:mod:`infoloss._reduce`). The gradient factor goes into the
    kernel when it is one number; per-row factors and the mask are applied in place."""
    k = get_kernels()
    assert k is not None
    ax, t = spec.axis, spec.temperature
    a, b = spec.a, spec.b
    assert b is not None
    if t != 1.0:
        a, b = a / a.dtype.type(t), b / b.dtype.type(t)
    keep_shape = (*a.shape[:ax], 1, *a.shape[ax + 1 :])
    w, keep, total = row_weights(
        xp_np,
        np.empty(keep_shape, np.float64),
        axis=ax,
        reduction=spec.reduction,
        sample_weights=spec.sample_weights,
        mask=spec.mask,
    )
    lb = spec.log_base
    f: Any = None
    gs = None
    if want_grad:
        f = row_grad_factor(xp_np, w, total, spec.scale / t, a.dtype)
        if lb is not None:
            f = f / lb
        gs = f if isinstance(f, float) else 1.0
    if spec.op == "js":
        d, ga, gb = k.softmax_js_rows(rows(a, ax), rows(b, ax), spec.beta, gs)
    else:
        d, ga, gb = k.softmax_kl_rows(rows(a, ax), rows(b, ax), gs)
    value, _ = weigh_rows(
        xp_np,
        np.asarray(d, dtype=np.float64).reshape(keep_shape),
        None,
        axis=ax,
        keepdims=spec.keepdims,
        reduction=spec.reduction,
        scale=spec.scale,
        sample_weights=spec.sample_weights,
        mask=spec.mask,
    )
    value = np.asarray(value if lb is None else value / lb).astype(spec.a.dtype)
    if not want_grad:
        return value, None
    shape = tuple(a.shape)
    grads = []
    for g2 in (ga, gb):
        if not isinstance(f, float):  # per-row factors, in place on the (N, C) rows
            np.multiply(g2, np.reshape(f, (-1, 1)), out=g2)
        if keep is not None:
            np.copyto(g2, 0, where=~np.reshape(keep, (-1, 1)))
        grads.append(unrows(g2, shape, ax))
    return value, tuple(grads)
