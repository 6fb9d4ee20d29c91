"""NumPy glue of the softmax entropy and softmax KL kernels."""

from __future__ import annotations

from typing import Any

import numpy as np

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
    kl, ga, gb = k.softmax_kl_rows(rows(a, ax), rows(spec.b, ax), scale if want_grad else None)
    value = (np.asarray(kl) * scale).astype(a.dtype).reshape(shape)
    grads = None
    if want_grad:
        grads = (unrows(ga, tuple(a.shape), ax), unrows(gb, tuple(a.shape), ax))
    return value, grads
