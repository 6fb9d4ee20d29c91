"""Linear layer + softmax cross-entropy without materialising the logits.

In language models the last layer maps hidden states ``(N, H)`` to vocabulary logits ``(N, V)``
with ``V`` of 32k–256k; the logits and their gradient are the largest memory cost of training.
:func:`linear_cross_entropy` computes ``sparse_softmax_cross_entropy(hidden @ weight.T + bias,
labels)`` and, through :func:`infoloss.value_and_grad`, its gradients with respect to ``hidden``,
``weight`` and ``bias``, one chunk of rows at a time, so that at most one ``chunk × V`` block of
logits exists at any moment.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from array_api_compat import is_torch_namespace

from . import _dispatch
from ._utils import (
    Array,
    Namespace,
    check_index,
    compute_dtype,
    is_concrete,
    namespace,
    quiet_overflow,
    reduce_loss,
    require_floating,
    upcast,
)
from .errors import InfolossError, InfolossTypeError
from .gradients import register
from .losses import (
    _check_class_weights,
    _check_ignore_index,
    _check_label_range,
    _check_options,
    _mean_scales,
    _softmax_ce_generic,
)

__all__ = ["CHUNK_BUDGET_BYTES", "linear_cross_entropy"]

#: Memory budget of one chunk of logits (bytes) when ``chunk_size=None``: the chunk has
#: ``max(256, CHUNK_BUDGET_BYTES // (V * itemsize))`` rows (at most N). Assign a new value to change it.
CHUNK_BUDGET_BYTES = 64 * 2**20
# The floor keeps the matrix products efficient at large vocabularies: each chunk's d_weight
# product re-reads and re-writes all of d_weight (V × H), so at V = 131072 128-row chunks cost
# 1.3x the unfused time and 256-row chunks 0.95–1.05x (measured, N = 2048, H = 1024).
_MIN_CHUNK = 256

Grads = tuple[Array, Array, Array | None]


def _chunk_rows(chunk_size: Any, n: int, v: int, itemsize: int) -> int:
    if chunk_size is None:
        rows = max(_MIN_CHUNK, CHUNK_BUDGET_BYTES // max(1, v * itemsize))
    else:
        if (
            isinstance(chunk_size, (bool, np.bool_))
            or not isinstance(chunk_size, (int, np.integer))
            or chunk_size < 1
        ):
            raise InfolossError(
                f"`chunk_size` must be a positive integer or None; got {chunk_size!r}"
            )
        rows = int(chunk_size)
    return max(1, min(rows, n))


def _prepare(
    hidden: Any, weight: Any, labels: Any, bias: Any, class_weights: Any, ignore_index: Any
) -> tuple[
    Namespace, Array, Array, Array, Array | None, Array | None, tuple[Any, ...], tuple[int, ...]
]:
    xp, (h, w, y, b, cw) = namespace(
        ("hidden", hidden),
        ("weight", weight),
        ("labels", labels),
        ("bias", bias),
        ("class_weights", class_weights),
        optional=("bias", "class_weights"),
    )
    require_floating(xp, h, "hidden")
    require_floating(xp, w, "weight")
    if w.ndim != 2:
        raise InfolossError(
            f"`weight` must have shape (V, H), as torch.nn.Linear; got {tuple(w.shape)}"
        )
    v, hdim = (int(s) for s in w.shape)
    if h.ndim < 1 or int(h.shape[-1]) != hdim:
        raise InfolossError(
            f"`hidden` must have shape (..., {hdim}) to match `weight` of shape {tuple(w.shape)}; got {tuple(h.shape)}"
        )
    batch = tuple(h.shape[:-1])
    if not xp.isdtype(y.dtype, "integral"):
        raise InfolossTypeError(f"`labels` must hold integer class indices; got dtype {y.dtype}")
    if tuple(y.shape) != batch:
        raise InfolossError(
            f"`labels` must have shape {batch} (hidden's without the last axis); got {tuple(y.shape)}"
        )
    if b is not None:
        require_floating(xp, b, "bias")
        if tuple(b.shape) != (v,):
            raise InfolossError(f"`bias` must have shape ({v},); got {tuple(b.shape)}")
    ignore_index = _check_ignore_index(ignore_index, y.dtype, xp)
    cd = compute_dtype(xp, xp.result_type(h, w) if b is None else xp.result_type(h, w, b))
    cw = _check_class_weights(xp, cw, v, cd)
    _check_label_range(xp, y, v, ignore_index)
    n = 1
    for s in batch:
        n *= int(s)
    h2 = xp.reshape(upcast(xp, h, cd), (n, hdim))
    y2 = xp.reshape(y, (n,))
    dtypes = (h.dtype, w.dtype, None if b is None else b.dtype, tuple(h.shape), ignore_index)
    return xp, h2, upcast(xp, w, cd), y2, upcast(xp, b, cd), cw, dtypes, batch


def _weight_total(
    xp: Namespace, y: Array, cw: Array | None, ignore_index: int | None, dtype: Any
) -> Array:
    valid = None if ignore_index is None else (y != ignore_index)
    if cw is None:
        ones = xp.ones(y.shape, dtype=dtype)
        return xp.sum(ones if valid is None else xp.where(valid, ones, xp.zeros_like(ones)))
    safe = y if valid is None else xp.where(valid, y, xp.zeros_like(y))
    wy = xp.take(cw, xp.astype(safe, xp.int64) if is_torch_namespace(xp) else safe)
    return xp.sum(wy if valid is None else xp.where(valid, wy, xp.zeros_like(wy)))


@quiet_overflow
def _linear_ce(
    hidden: Any,
    weight: Any,
    labels: Any,
    *,
    bias: Any = None,
    class_weights: Any = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    reduction: str = "mean",
    chunk_size: int | None = None,
    want_grad: bool = False,
) -> tuple[Array, Grads | None]:
    if (
        reduction in ("sum", "mean")
        and _dispatch.torch_enabled(hidden, labels, class_weights)
        and _dispatch.torch_enabled(weight)
        and (bias is None or _dispatch.torch_enabled(bias))
    ):
        from .torch import _linear_ce_torch  # CPU torch tensors: the fused NumPy path

        return _linear_ce_torch(
            hidden,
            weight,
            labels,
            bias=bias,
            class_weights=class_weights,
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
            z_loss=z_loss,
            reduction=reduction,
            chunk_size=chunk_size,
            want_grad=want_grad,
        )
    reduction, eps, z = _check_options(reduction, label_smoothing, z_loss)
    check_index(ignore_index, "ignore_index")
    xp, h, w, y, b, cw, dtypes, batch = _prepare(
        hidden, weight, labels, bias, class_weights, ignore_index
    )
    h_dtype, w_dtype, b_dtype, h_shape, ignore_index = dtypes
    cw, _, kc = _mean_scales(xp, reduction, cw, None)
    if kc is not None and z:
        z = z / float(kc) if is_concrete(kc) else z / kc
    n, v = int(h.shape[0]), int(w.shape[0])
    chunk = _chunk_rows(chunk_size, n, v, 4 if h.dtype == xp.float32 else 8)
    if _dispatch.enabled(h, w, b):
        value, grads = _linear_ce_fast(
            h, w, y, b, cw, ignore_index, eps, z, reduction, chunk, want_grad
        )
    else:
        value, grads = _linear_ce_generic(
            xp, h, w, y, b, cw, ignore_index, eps, z, reduction, chunk, want_grad
        )
    if reduction == "none":
        value = xp.reshape(value, batch)
    value = upcast(xp, value, h_dtype)
    if grads is not None:
        dh, dw, db = grads
        dh = upcast(xp, xp.reshape(dh, h_shape), h_dtype)
        dw = upcast(xp, dw, w_dtype)
        db = None if db is None else upcast(xp, db, b_dtype)
        grads = (dh, dw, db)
    return value, grads


def _linear_ce_generic(
    xp: Namespace,
    h: Array,
    w: Array,
    y: Array,
    b: Array | None,
    cw: Array | None,
    ignore_index: int | None,
    eps: float,
    z: float,
    reduction: str,
    chunk: int,
    want_grad: bool,
) -> tuple[Array, Grads | None]:
    n = int(h.shape[0])
    total = _weight_total(xp, y, cw, ignore_index, h.dtype) if reduction == "mean" else None
    wt = xp.matrix_transpose(w)
    losses, dhs = [], []
    dw = db = None
    for start in range(0, n, chunk):
        hk, yk = h[start : start + chunk, ...], y[start : start + chunk]
        logits = hk @ wt if b is None else hk @ wt + b
        loss_k, g = _softmax_ce_generic(
            xp, logits, yk, cw, None, 1, eps, z, "none", True, ignore_index, want_grad
        )
        losses.append(loss_k)
        if want_grad:
            if reduction == "mean":
                assert total is not None
                g = g / xp.where(total == 0, xp.ones_like(total), total)
            dhs.append(g @ w)
            gw = xp.matrix_transpose(g) @ hk
            dw = gw if dw is None else dw + gw
            if b is not None:
                gb = xp.sum(g, axis=0)
                db = gb if db is None else db + gb
    loss = xp.concat(losses) if len(losses) > 1 else losses[0]
    value = reduce_loss(xp, loss, total, reduction)
    if not want_grad:
        return value, None
    return value, (xp.concat(dhs, axis=0) if len(dhs) > 1 else dhs[0], dw, db)


_DW_BLOCK = 4096  # vocabulary rows of d_weight accumulated per matrix product


def _linear_ce_fast(
    h: Any,
    w: Any,
    y: Any,
    b: Any,
    cw: Any,
    ignore_index: int | None,
    eps: float,
    z: float,
    reduction: str,
    chunk: int,
    want_grad: bool,
) -> tuple[Array, Grads | None]:
    import numpy as np

    k = _dispatch.kernels()
    assert k is not None
    dtype = h.dtype
    n, hdim = h.shape
    v = w.shape[0]
    labels = np.ascontiguousarray(y, dtype=np.int64)
    cw64 = None if cw is None else np.asarray(cw, dtype=np.float64)
    keep = None if ignore_index is None else labels != ignore_index
    rows = np.arange(n) if keep is None else np.flatnonzero(keep)
    if keep is not None and keep.all():
        keep = None
    hk_all = h if keep is None else h[rows]  # ignored rows never reach the matrix product
    lab_all = labels if keep is None else labels[rows]
    m_all = hk_all.shape[0]
    if cw64 is None:
        total = float(m_all)
    else:
        total = float(np.sum(cw64[lab_all]))
    scale = None
    if want_grad:
        scale = (1.0 / total if total != 0 else 0.0) if reduction == "mean" else 1.0
    wt = w.T
    buf = np.empty((min(chunk, max(m_all, 1)), v), dtype=dtype)
    row_loss = np.zeros(n, dtype=np.float64)
    dh = dw = db = None
    if want_grad:
        dh = np.zeros((n, hdim), dtype=dtype)
        dw = np.zeros((v, hdim), dtype=dtype)
        tmp = np.empty((min(_DW_BLOCK, v), hdim), dtype=dtype)
        db = None if b is None else np.zeros(v, dtype=np.float64)
        ones = np.ones(buf.shape[0], dtype=dtype)
    losses = np.empty(m_all, dtype=np.float64)
    for start in range(0, m_all, chunk):
        stop = min(start + chunk, m_all)
        hk = hk_all[start:stop]
        logits = buf[: stop - start]
        np.matmul(hk, wt, out=logits)
        if b is not None:
            logits += b
        # the fused kernel turns the chunk's logits into their gradient in place
        loss_k, g = k.sparse_softmax_ce(
            logits,
            lab_all[start:stop],
            cw64,
            None,
            None,
            eps,
            z,
            scale,
            out=logits if want_grad else None,
        )
        losses[start:stop] = loss_k
        if want_grad:
            assert dh is not None and dw is not None
            if keep is None:
                np.matmul(g, w, out=dh[start:stop])
            else:
                dh[rows[start:stop]] = g @ w
            # d_weight += g.T @ hk, a block of vocabulary rows at a time through one
            # preallocated block (no fresh pages per product)
            for vs in range(0, v, _DW_BLOCK):
                ve = min(vs + _DW_BLOCK, v)
                blk = tmp[: ve - vs]
                np.matmul(g[:, vs:ve].T, hk, out=blk)
                np.add(dw[vs:ve], blk, out=dw[vs:ve])
            if db is not None:
                db += np.matmul(ones[: stop - start], g)  # column sums by BLAS (GEMV)
    row_loss[rows] = losses
    if reduction == "none":
        value = row_loss.astype(dtype)
    else:
        s = float(np.sum(losses))
        if reduction == "mean":
            s = s / total if total != 0 else 0.0
        value = np.asarray(s, dtype=dtype)
    if not want_grad:
        return value, None
    return value, (dh, dw, None if db is None else db.astype(dtype))


def linear_cross_entropy(
    hidden: Any,
    weight: Any,
    labels: Any,
    *,
    bias: Any = None,
    class_weights: Any = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    reduction: str = "mean",
    chunk_size: int | None = None,
) -> Array:
    r"""Sparse softmax cross-entropy of a linear layer's output, without holding its logits.

    .. math::

        \ell_i = \operatorname{CE}\big(h_i W^\top + b,\; y_i\big)

    exactly as :func:`infoloss.sparse_softmax_cross_entropy` of ``hidden @ weight.T + bias``
    (same smoothing, class weights, ``ignore_index``, z-loss and reductions), computed chunk by
    chunk of rows so that only one ``chunk × V`` block of logits exists at a time.

    Parameters
    ----------
    hidden : array, shape (..., H)
        Hidden states (the last layer's input).
    weight : array, shape (V, H)
        The output layer's weight, laid out as ``torch.nn.Linear.weight``.
    labels : integer array, shape (...)
        Target indices in ``[0, V)`` or ``ignore_index``.
    bias : array, shape (V,), optional
        The output layer's bias.
    class_weights, ignore_index, label_smoothing, z_loss
        As in :func:`infoloss.sparse_softmax_cross_entropy`. Ignored rows are dropped before the
        matrix product.
    reduction : {"none", "sum", "mean"}, default "mean"
        ``"none"`` returns the per-example losses, shape ``(...)``, at the same cost as ``"sum"``.
    chunk_size : int, optional
        Rows per chunk. ``None`` picks ``CHUNK_BUDGET_BYTES // (V · itemsize)`` rows (64 MiB of
        logits by default, at least 256 rows: 128 MiB at V = 131072 float32).

    Returns
    -------
    array
        The loss (0-d, or shape ``(...)`` for ``"none"``), the array type of ``hidden``.

    Notes
    -----
    With :func:`infoloss.value_and_grad`, the gradients ``(d_hidden, d_weight, d_bias)`` are
    formed in the same sweep: each chunk's logits are turned into the loss gradient in place by the
    fused kernel, then ``d_hidden`` for the chunk and the ``d_weight`` accumulation follow, so no
    second pass over the vocabulary is needed (``d_bias`` is ``None`` without ``bias``). For
    ``reduction="none"`` the gradients are those of the sum. float16/bfloat16 inputs are computed
    (and ``d_weight`` accumulated) in float32 and returned in their own dtype.

    On NumPy the chunk buffer is allocated once and filled by ``matmul(..., out=)``;
    ``d_weight`` is accumulated in blocks of 4096 vocabulary rows (a ``4096 × H`` temporary). On other backends the generic array-API code runs the same
    chunked loop; it stays differentiable by PyTorch autograd and ``jax.grad`` (which then keep
    each chunk's logits for their backward pass, so the memory saving needs ``value_and_grad``).

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss import linear_cross_entropy, sparse_softmax_cross_entropy, value_and_grad
    >>> rng = np.random.default_rng(0)
    >>> h, w = rng.normal(size=(6, 4)), rng.normal(size=(10, 4))
    >>> y = np.array([1, 2, 3, 4, 5, 9])
    >>> a = linear_cross_entropy(h, w, y, chunk_size=4)
    >>> b = sparse_softmax_cross_entropy(h @ w.T, y, reduction="mean")
    >>> bool(np.isclose(a, b))
    True
    >>> loss, (dh, dw, db) = value_and_grad(linear_cross_entropy)(h, w, y)
    >>> dh.shape, dw.shape, db is None
    ((6, 4), (10, 4), True)
    """
    return _linear_ce(
        hidden,
        weight,
        labels,
        bias=bias,
        class_weights=class_weights,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        reduction=reduction,
        chunk_size=chunk_size,
    )[0]


register(linear_cross_entropy, functools.partial(_linear_ce, want_grad=True))
