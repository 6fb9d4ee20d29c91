"""NumPy glue of the row kernels: logsumexp, softmax, log_softmax along an axis."""

from __future__ import annotations

import numpy as np

from .._specs import RowOp
from . import get_kernels, rows, unrows

__all__ = ["row_op"]


def row_op(spec: RowOp) -> np.ndarray:
    """``spec.op`` of a float32/float64 NumPy array (returned in its dtype)."""
    k = get_kernels()
    assert k is not None
    x, ax = spec.x, spec.axis
    x2 = rows(x, ax)
    if spec.op == "logsumexp":
        r = k.logsumexp_rows(x2)
        shape = tuple(x.shape[:ax]) + ((1,) if spec.keepdims else ()) + tuple(x.shape[ax + 1 :])
        return np.asarray(r, dtype=x.dtype).reshape(shape)
    fn = k.log_softmax_rows if spec.op == "log_softmax" else k.softmax_rows
    return unrows(fn(x2), tuple(x.shape), ax)
