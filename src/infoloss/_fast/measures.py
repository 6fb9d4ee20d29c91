"""NumPy glue of the softmax entropy and softmax KL kernels."""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import numpy as xp_np

from .._reduce import weigh_rows
from .._specs import SoftmaxMeasure
from . import get_kernels, rows, unrows

__all__ = ["softmax_measure"]


def softmax_measure(spec: SoftmaxMeasure, want_grad: bool) -> tuple[np.ndarray, Any]:
    """softmax_entropy (``spec.b`` None) or softmax_kl_divergence of float32/float64 arrays of
    one dtype, in ``base``; a 0-d result is a 0-d array."""
    k = get_kernels()
    assert k is not None
    a, ax = spec.a, spec.axis
    scale = 1.0 if spec.log_base is None else 1.0 / spec.log_base
    shape = tuple(a.shape[:ax]) + ((1,) if spec.keepdims else ()) + tuple(a.shape[ax + 1 :])
    if spec.b is None:
        h, g = k.softmax_entropy_rows(rows(a, ax), scale if want_grad else None)
        value = (np.asarray(h) * scale).astype(a.dtype).reshape(shape)
        return value, (None if g is None else unrows(g, tuple(a.shape), ax))
    if not spec.plain:
        return _softmax_kl_options(spec, want_grad)
    kl, ga, gb = k.softmax_kl_rows(rows(a, ax), rows(spec.b, ax), scale if want_grad else None)
    value = (np.asarray(kl) * scale).astype(a.dtype).reshape(shape)
    grads = None
    if want_grad:
        grads = (unrows(ga, tuple(a.shape), ax), unrows(gb, tuple(a.shape), ax))
    return value, grads


def _softmax_kl_options(spec: SoftmaxMeasure, want_grad: bool) -> tuple[np.ndarray, Any]:
    """softmax_kl_divergence with a temperature, weights, a mask or a reduction: the kernel on
    the tempered logits, then the rows weighed and reduced as the generic definition does."""
    k = get_kernels()
    assert k is not None
    ax, t = spec.axis, spec.temperature
    a, b = spec.a, spec.b
    assert b is not None
    if t != 1.0:
        a, b = a / a.dtype.type(t), b / b.dtype.type(t)
    kl, ga, gb = k.softmax_kl_rows(rows(a, ax), rows(b, ax), 1.0 if want_grad else None)
    keep_shape = (*tuple(a.shape[:ax]), 1, *tuple(a.shape[ax + 1 :]))
    d = np.asarray(kl, dtype=np.float64).reshape(keep_shape)
    grads: Any = None
    if want_grad:
        grads = (unrows(ga, tuple(a.shape), ax), unrows(gb, tuple(a.shape), ax))
    value, grads = weigh_rows(
        xp_np,
        d,
        grads,
        axis=ax,
        keepdims=spec.keepdims,
        reduction=spec.reduction,
        scale=spec.scale,
        grad_scale=spec.scale / t,
        sample_weights=spec.sample_weights,
        mask=spec.mask,
    )
    lb = spec.log_base
    value = np.asarray(value if lb is None else value / lb).astype(spec.a.dtype)
    if grads is not None:
        grads = tuple(np.asarray(g if lb is None else g / lb, dtype=spec.a.dtype) for g in grads)
    return value, grads
