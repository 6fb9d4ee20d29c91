"""NumPy glue of the fused linear + cross-entropy: chunked matrix products around the kernel."""

from __future__ import annotations

import numpy as np

from .. import _reduce
from .._specs import LinearCE
from . import get_kernels, softcap

__all__ = ["linear_ce"]

#: vocabulary rows of d_weight accumulated per matrix product
_DW_BLOCK = 4096


def linear_ce(
    spec: LinearCE, want_grad: bool
) -> tuple[np.ndarray, tuple | None, np.ndarray | None]:
    """Value, (d_hidden, d_weight, d_bias) of flattened float32/float64 NumPy inputs and, with
    ``spec.want_lse``, the per-row log-sum-exp of the (soft-capped) logits (0 for ignored rows).

    Each chunk's logits go into one preallocated buffer (``matmul(..., out=)``), the fused kernel
    turns them into their gradient in place, then ``d_hidden`` for the chunk and the
    ``d_weight`` accumulation follow; ignored rows never reach the matrix products.
    """
    k = get_kernels()
    assert k is not None
    h, w, y, b, cw = spec.hidden, spec.weight, spec.labels, spec.bias, spec.class_weights
    sw = spec.sample_weights
    o, reduction, chunk = spec.options, spec.reduction, spec.chunk_rows
    cap = o.softcap
    ignore_index, eps, z = o.ignore_index, o.label_smoothing, float(o.z_loss)
    dtype = h.dtype
    n, hdim = h.shape
    v = w.shape[0]
    labels = np.array(y, dtype=np.int64, copy=True)  # a private copy: see _fast.losses
    cw64 = None if cw is None else np.asarray(cw, dtype=np.float64)
    keep = None if ignore_index is None else labels != ignore_index
    rows = np.arange(n) if keep is None else np.flatnonzero(keep)
    if keep is not None and keep.all():
        keep = None
    hk_all = h if keep is None else h[rows]  # ignored rows never reach the matrix product
    lab_all = labels if keep is None else labels[rows]
    sw_all = None
    if sw is not None:
        sw64 = np.asarray(sw, dtype=np.float64)
        sw_all = np.ascontiguousarray(sw64 if keep is None else sw64[rows])
    m_all = hk_all.shape[0]
    wy = np.ones(m_all) if cw64 is None else cw64[lab_all]
    if sw_all is not None:
        wy = wy * sw_all
    total = float(np.sum(wy, dtype=np.float64))
    scale = _reduce.grad_scale(total, reduction) if want_grad else None
    wt = w.T
    buf = np.empty((min(chunk, max(m_all, 1)), v), dtype=dtype)
    row_loss = np.zeros(n, dtype=np.float64)
    dh = dw = db = None
    if want_grad:
        dh = np.zeros((n, hdim), dtype=dtype)
        dw = np.zeros((v, hdim), dtype=dtype)
        # the d_weight block: at most a third of the chunk's logits (so that the working memory
        # scales with the chunk: 4/3 of it), at most _DW_BLOCK vocabulary rows
        blk_rows = max(1, min(_DW_BLOCK, v, (buf.shape[0] * v) // (3 * max(hdim, 1))))
        tmp = np.empty((blk_rows, hdim), dtype=dtype)
        db = None if b is None else np.zeros(v, dtype=np.float64)
        ones = np.ones(buf.shape[0], dtype=dtype)
    losses = np.empty(m_all, dtype=np.float64)
    lse_all = np.empty(m_all, dtype=dtype) if spec.want_lse else None
    for start in range(0, m_all, chunk):
        stop = min(start + chunk, m_all)
        hk = hk_all[start:stop]
        logits = buf[: stop - start]
        np.matmul(hk, wt, out=logits)
        if b is not None:
            logits += b
        d_cap = None
        if cap is not None:  # capped in place; the derivative kept for the chain rule
            d_cap = softcap(logits, cap, out=logits)
        if lse_all is not None:
            lse_all[start:stop] = k.logsumexp_rows(logits)
        # the fused kernel turns the chunk's logits into their gradient in place
        loss_k, g = k.sparse_softmax_ce(
            logits,
            lab_all[start:stop],
            cw64,
            None if sw_all is None else sw_all[start:stop],
            None,
            eps,
            z,
            scale,
            out=logits if want_grad else None,
        )
        losses[start:stop] = loss_k
        if want_grad:
            assert dh is not None and dw is not None
            if d_cap is not None:
                g *= d_cap
            if keep is None:
                np.matmul(g, w, out=dh[start:stop])
            else:
                dh[rows[start:stop]] = g @ w
            # d_weight += g.T @ hk, a block of vocabulary rows at a time through one
            # preallocated block (no fresh pages per product)
            for vs in range(0, v, blk_rows):
                ve = min(vs + blk_rows, v)
                blk = tmp[: ve - vs]
                np.matmul(g[:, vs:ve].T, hk, out=blk)
                np.add(dw[vs:ve], blk, out=dw[vs:ve])
            if db is not None:
                db += np.matmul(ones[: stop - start], g)  # column sums by BLAS (GEMV)
    row_loss[rows] = losses
    value = _reduce.reduce_rows(row_loss, total, reduction, dtype, (n,))
    lse_rows = None
    if lse_all is not None:
        lse_rows = np.zeros(n, dtype=dtype)
        lse_rows[rows] = lse_all
    if not want_grad:
        return value, None, lse_rows
    return value, (dh, dw, None if db is None else db.astype(dtype)), lse_rows
