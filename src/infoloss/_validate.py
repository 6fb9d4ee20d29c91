"""Validation of the losses' arguments into specs (:mod:`infoloss._specs`), done once per call.

Each ``*_spec`` function checks every argument of one public function (in a fixed order, so the
first problem is the one reported), converts lists and scalars, resolves the axis, the compute
dtype and the weights' broadcasting, and returns the frozen spec the router takes. Checks that
read data (label ranges, non-negative weights) run only on concrete arrays (see
:func:`infoloss._utils.any_true`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._specs import CEOptions, LinearCE, ProbMeasure, RowOp, SigmoidCE, SoftmaxCE, SoftmaxMeasure
from ._utils import (
    Array,
    Namespace,
    _dtype_name,
    _is_ml_float,
    any_true,
    as_float,
    broadcast_pair,
    check_bool,
    check_data,
    check_index,
    check_nonnegative,
    check_probabilities,
    check_reduction,
    check_unit_interval,
    compute_dtype,
    first_position,
    is_concrete,
    log_base,
    namespace,
    normalize_axis,
    pow2_scale,
    require_floating,
    upcast,
)
from .errors import InfolossError, InfolossTypeError

__all__ = [
    "check_grad_out",
    "linear_ce_spec",
    "prob_spec",
    "row_spec",
    "sigmoid_ce_spec",
    "softmax_ce_spec",
    "softmax_measure_spec",
]

_INF = float("inf")


# --------------------------------------------------------------------------- pieces


def _nonnegative(xp: Namespace, w: Array | None, name: str) -> None:
    """Weights must not be negative (nan passes: it gives a nan result). Reads data."""
    check_data(xp, w, lambda a: a < 0, name, "non-negative weights")


def _class_weights(xp: Namespace, cw: Array | None, c: int, dtype: Any) -> Array | None:
    if cw is None:
        return None
    cw = as_float(xp, cw, "class_weights", dtype)
    if tuple(cw.shape) != (c,):
        raise InfolossError(
            f"`class_weights` must have shape ({c},), one weight per class; got shape {tuple(cw.shape)}"
        )
    _nonnegative(xp, cw, "class_weights")
    return cw


def _broadcast_weights(
    xp: Namespace, w: Array | None, shape: tuple[int, ...], name: str, dtype: Any, what: str
) -> Array | None:
    if w is None:
        return None
    w = as_float(xp, w, name, dtype)
    if tuple(w.shape) != shape:
        try:
            w = xp.broadcast_to(w, shape)
        except (ValueError, RuntimeError, TypeError):
            raise InfolossError(
                f"`{name}` must broadcast to {what} {shape}; got shape {tuple(w.shape)}"
            ) from None
    _nonnegative(xp, w, name)
    return w


def _ignore_index(ignore_index: int | None, labels_dtype: Any, xp: Namespace) -> int | None:
    """``ignore_index`` as an int, or None when no label of ``labels_dtype`` can equal it."""
    if ignore_index is None:
        return None
    info = xp.iinfo(labels_dtype)
    return ignore_index if info.min <= ignore_index <= info.max else None


def _label_range(xp: Namespace, labels: Array, c: int, ignore_index: int | None) -> None:
    if not is_concrete(labels) or labels.size == 0:  # checks that read data skip tracers
        return
    bad = (labels < 0) | (labels >= c)
    if ignore_index is not None:
        bad = bad & (labels != ignore_index)
    if any_true(xp, bad):
        pos = first_position(xp, bad)
        extra = f" or `ignore_index`={ignore_index}" if ignore_index is not None else ""
        raise InfolossError(
            f"`labels` must hold class indices in [0, {c}){extra}; found {int(labels[pos])} at position {pos}"
        )


def _mean_scales(
    xp: Namespace, reduction: str, cw: Array | None, sw: Array | None, z: Any
) -> tuple[Array | None, Array | None, Any]:
    """Weights of a "mean" divided by powers of two (exact; the mean does not change) so that
    their sums neither overflow nor underflow. The z-loss coefficient, which class weights do
    not multiply, is divided by the class weights' factor too."""
    if reduction != "mean":
        return cw, sw, z
    if sw is not None:
        sw = sw / pow2_scale(xp, sw)
    if cw is not None:
        kc = pow2_scale(xp, cw)
        cw = cw / kc
        if z:
            z = z / float(kc) if is_concrete(kc) else z / kc
    return cw, sw, z


def check_grad_out(out: Any, logits: Any) -> None:
    """Validate ``value_and_grad(...)(..., out=...)``: a writeable NumPy array like the logits."""
    if not isinstance(logits, np.ndarray):
        raise InfolossTypeError(
            f"`out` is supported for NumPy logits only; got logits of type {type(logits).__name__}"
        )
    if not isinstance(out, np.ndarray):
        raise InfolossTypeError(f"`out` must be a NumPy array; got {type(out).__name__}")
    if out.shape != logits.shape or out.dtype != logits.dtype:
        raise InfolossError(
            f"`out` must have the logits' shape {logits.shape} and dtype {logits.dtype}; "
            f"got shape {out.shape} and dtype {out.dtype}"
        )
    if not out.flags.writeable:
        raise InfolossError("`out` must be writeable; got a read-only array")


# --------------------------------------------------------------------------- specs


def softmax_ce_spec(
    logits: Any,
    labels: Any,
    *,
    sparse: bool,
    axis: Any = -1,
    class_weights: Any = None,
    sample_weights: Any = None,
    ignore_index: Any = None,
    label_smoothing: Any = 0.0,
    z_loss: Any = 0.0,
    reduction: Any = "none",
) -> SoftmaxCE:
    """The spec of :func:`infoloss.softmax_cross_entropy` (``sparse=False``) or
    :func:`infoloss.sparse_softmax_cross_entropy` (``sparse=True``)."""
    reduction = check_reduction(reduction)
    eps = check_unit_interval(label_smoothing, "label_smoothing")
    z = check_nonnegative(z_loss, "z_loss")
    ii = check_index(ignore_index, "ignore_index")
    xp, (x, y, cw, sw) = namespace(
        ("logits", logits),
        ("labels", labels),
        ("class_weights", class_weights),
        ("sample_weights", sample_weights),
        optional=("class_weights", "sample_weights"),
    )
    require_floating(xp, x, "logits")
    ax = normalize_axis(axis, x.ndim)
    c = int(x.shape[ax])
    if c == 0:
        raise InfolossError(
            f"`logits` must have at least one class along `axis`={axis}; got shape {tuple(x.shape)}"
        )
    batch = tuple(x.shape[:ax]) + tuple(x.shape[ax + 1 :])
    if sparse:
        if not xp.isdtype(y.dtype, "integral"):
            raise InfolossTypeError(
                f"`labels` must hold integer class indices; got dtype {str(y.dtype).replace('torch.', '')}"
                " (for probabilities use softmax_cross_entropy)"
            )
        if tuple(y.shape) != batch:
            raise InfolossError(
                f"`labels` must have the logits' shape without `axis`, {batch}; got {tuple(y.shape)}"
            )
    elif tuple(y.shape) != tuple(x.shape):
        raise InfolossError(
            f"`labels` must have the logits' shape {tuple(x.shape)}; got {tuple(y.shape)}"
            " (for class indices use sparse_softmax_cross_entropy)"
        )
    cd = compute_dtype(xp, x.dtype)
    cw = _class_weights(xp, cw, c, cd)
    sw = _broadcast_weights(xp, sw, batch, "sample_weights", cd, "the batch shape")
    if sparse:
        ii = _ignore_index(ii, y.dtype, xp)
        _label_range(xp, y, c, ii)
    else:
        ii = None
        y = as_float(xp, y, "labels", cd)  # values are checked where they are read (router)
    cw, sw, z = _mean_scales(xp, reduction, cw, sw, z)
    return SoftmaxCE(
        xp=xp,
        logits=x,
        labels=y,
        class_weights=cw,
        sample_weights=sw,
        axis=ax,
        options=CEOptions(sparse=sparse, label_smoothing=eps, z_loss=z, ignore_index=ii),
        reduction=reduction,
        compute_dtype=cd,
    )


def sigmoid_ce_spec(
    logits: Any,
    labels: Any,
    *,
    pos_weight: Any = None,
    sample_weights: Any = None,
    label_smoothing: Any = 0.0,
    reduction: Any = "none",
) -> SigmoidCE:
    """The spec of :func:`infoloss.sigmoid_cross_entropy`."""
    reduction = check_reduction(reduction)
    eps = check_unit_interval(label_smoothing, "label_smoothing")
    xp, (x, y, pw, sw) = namespace(
        ("logits", logits),
        ("labels", labels),
        ("pos_weight", pos_weight),
        ("sample_weights", sample_weights),
        optional=("pos_weight", "sample_weights"),
    )
    require_floating(xp, x, "logits")
    if tuple(y.shape) != tuple(x.shape):
        raise InfolossError(
            f"`labels` must have the logits' shape {tuple(x.shape)}; got {tuple(y.shape)}"
        )
    cd = compute_dtype(xp, x.dtype)
    shape = tuple(x.shape)
    y = as_float(xp, y, "labels", cd)  # values are checked where they are read (router)
    if pw is not None:
        pw = as_float(xp, pw, "pos_weight", cd)
        _nonnegative(xp, pw, "pos_weight")
        try:
            xp.broadcast_to(pw, shape)
        except (ValueError, RuntimeError, TypeError):
            raise InfolossError(
                f"`pos_weight` must broadcast against the logits' shape {shape} (one weight per class "
                f"on the last axis); got shape {tuple(pw.shape)}"
            ) from None
    sw = _broadcast_weights(xp, sw, shape, "sample_weights", cd, "the logits' shape")
    _, sw, _ = _mean_scales(xp, reduction, None, sw, 0.0)
    return SigmoidCE(
        xp=xp,
        logits=x,
        labels=y,
        pos_weight=pw,
        sample_weights=sw,
        label_smoothing=eps,
        reduction=reduction,
        compute_dtype=cd,
    )


#: Memory budget of one chunk of logits (bytes) when ``chunk_size=None`` (see :mod:`infoloss.linear`).
CHUNK_BUDGET_BYTES = 64 * 2**20
# The floor keeps the matrix products efficient at large vocabularies: each chunk's d_weight
# product re-reads and re-writes all of d_weight (V × H), so at V = 131072 128-row chunks cost
# 1.3x the unfused time and 256-row chunks 0.95–1.05x (measured, N = 2048, H = 1024).
MIN_CHUNK = 256
# ... but never more than a sixth of the rows (at least 64): the chunk's logits (a sixth of the
# logits) and the d_weight block (at most a third of the chunk, see _fast/linear.py) stay within
# 1/8 of the unfused logits + gradient from N = 1024 up (issue 17; at N = 2048, V = 32768 the
# 64 MiB budget alone was a quarter of the logits).
CHUNK_FRACTION = 6
MIN_FRACTION_CHUNK = 64


def chunk_rows(chunk_size: Any, n: int, v: int, itemsize: int, budget: int) -> int:
    """Rows per chunk of :func:`infoloss.linear_cross_entropy`: ``chunk_size``, or
    ``min(max(256, budget // (V · itemsize)), max(64, N // 6))``, at most N."""
    if chunk_size is None:
        rows = max(MIN_CHUNK, budget // max(1, v * itemsize))
        rows = min(rows, max(MIN_FRACTION_CHUNK, n // CHUNK_FRACTION))
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


def linear_ce_spec(
    hidden: Any,
    weight: Any,
    labels: Any,
    *,
    bias: Any = None,
    class_weights: Any = None,
    ignore_index: Any = None,
    label_smoothing: Any = 0.0,
    z_loss: Any = 0.0,
    reduction: Any = "mean",
    chunk_size: Any = None,
    chunk_budget: int = CHUNK_BUDGET_BYTES,
) -> LinearCE:
    """The spec of :func:`infoloss.linear_cross_entropy`."""
    reduction = check_reduction(reduction)
    eps = check_unit_interval(label_smoothing, "label_smoothing")
    z = check_nonnegative(z_loss, "z_loss")
    ii = check_index(ignore_index, "ignore_index")
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
    ii = _ignore_index(ii, y.dtype, xp)
    cd = compute_dtype(xp, xp.result_type(h, w) if b is None else xp.result_type(h, w, b))
    cw = _class_weights(xp, cw, v, cd)
    _label_range(xp, y, v, ii)
    cw, _, z = _mean_scales(xp, reduction, cw, None, z)
    n = 1
    for s in batch:
        n *= int(s)
    h2 = xp.reshape(upcast(xp, h, cd), (n, hdim))
    chunk = chunk_rows(chunk_size, n, v, 4 if h2.dtype == xp.float32 else 8, chunk_budget)
    return LinearCE(
        xp=xp,
        hidden=h2,
        weight=upcast(xp, w, cd),
        labels=xp.reshape(y, (n,)),
        bias=upcast(xp, b, cd),
        class_weights=cw,
        options=CEOptions(sparse=True, label_smoothing=eps, z_loss=z, ignore_index=ii),
        reduction=reduction,
        chunk_rows=chunk,
        dtypes=(h.dtype, w.dtype, None if b is None else b.dtype),
        hidden_shape=tuple(h.shape),
        batch_shape=batch,
        originals=(h, w, b),
    )


def row_spec(x: Any, op: str, axis: Any, keepdims: Any = False) -> RowOp:
    """The spec of :func:`infoloss.logsumexp`, :func:`infoloss.softmax` or
    :func:`infoloss.log_softmax` (an empty axis is allowed for logsumexp only)."""
    keepdims = check_bool(keepdims, "keepdims")
    xp, (x,) = namespace(("x", x))
    require_floating(xp, x, "x")
    ax = normalize_axis(axis, x.ndim)
    if x.shape[ax] == 0 and op != "logsumexp":
        raise InfolossError(
            f"`x` must have at least one class along `axis`={axis}; got shape {tuple(x.shape)}"
        )
    return RowOp(
        xp=xp, x=x, op=op, axis=ax, keepdims=keepdims, compute_dtype=compute_dtype(xp, x.dtype)
    )


# --------------------------------------------------------------------------- measures


def _as_prob(xp: Namespace, p: Array, name: str) -> Array:
    """Real floating arrays as they are; integers and bools as the default floating dtype."""
    try:
        if xp.isdtype(p.dtype, "real floating"):
            return p
        if xp.isdtype(p.dtype, "integral") or xp.isdtype(p.dtype, "bool"):
            return xp.astype(p, xp.asarray(0.0).dtype)
    except TypeError:  # NumPy arrays of ml_dtypes' bfloat16 & co.
        if _is_ml_float(p.dtype):
            return p
    raise InfolossTypeError(
        f"`{name}` must hold real probabilities (a real floating, integer or bool dtype); "
        f"got {_dtype_name(p.dtype)}"
    )


def prob_spec(
    op: str, p: Any, q: Any = None, *, axis: Any = None, base: Any = None, keepdims: Any = False
) -> ProbMeasure:
    """The spec of a probability measure: ``information`` (elementwise, ``axis`` unused),
    ``entropy`` (``q`` None) or a two-distribution measure."""
    lb = log_base(base)
    kd = check_bool(keepdims, "keepdims") if op != "information" else False
    if q is None and op in ("information", "entropy"):
        xp, (p,) = namespace(("p", p))
        p = _as_prob(xp, p, "p")
        checked = check_probabilities(xp, p, "p")
        dtype = p.dtype
        ax = None if op == "information" else normalize_axis(axis, p.ndim)
        cd = compute_dtype(xp, dtype)
        return ProbMeasure(xp, op, upcast(xp, p, cd), None, ax, kd, lb, dtype, checked)
    xp, (p, q) = namespace(("p", p), ("q", q))
    p, q = _as_prob(xp, p, "p"), _as_prob(xp, q, "q")
    dtype = xp.result_type(p, q)
    p, q = broadcast_pair(xp, p, q, "p", "q")
    ax = normalize_axis(axis, p.ndim)
    checked = check_probabilities(xp, p, "p") & check_probabilities(xp, q, "q")
    cd = compute_dtype(xp, dtype)
    return ProbMeasure(xp, op, upcast(xp, p, cd), upcast(xp, q, cd), ax, kd, lb, dtype, checked)


def softmax_measure_spec(
    a: Any, b: Any = None, *, axis: Any = -1, base: Any = None, keepdims: Any = False
) -> SoftmaxMeasure:
    """The spec of :func:`infoloss.softmax_entropy` (``b`` None) or
    :func:`infoloss.softmax_kl_divergence`."""
    lb = log_base(base)
    kd = check_bool(keepdims, "keepdims")
    named = [("logits", a)] if b is None else [("p_logits", a), ("q_logits", b)]
    xp, arrays = namespace(*named)
    for (name, _), x in zip(named, arrays, strict=True):
        require_floating(xp, x, name)
    if len(arrays) == 2 and tuple(arrays[0].shape) != tuple(arrays[1].shape):
        arrays = list(broadcast_pair(xp, arrays[0], arrays[1], named[0][0], named[1][0]))
    dtype = xp.result_type(*arrays)
    ax = normalize_axis(axis, arrays[0].ndim)
    if arrays[0].shape[ax] == 0:
        raise InfolossError(
            f"`{named[0][0]}` must have at least one class along `axis`={axis}; got shape {tuple(arrays[0].shape)}"
        )
    return SoftmaxMeasure(
        xp=xp,
        a=arrays[0],
        b=arrays[1] if len(arrays) == 2 else None,
        axis=ax,
        keepdims=kd,
        log_base=lb,
        dtype=dtype,
        compute_dtype=compute_dtype(xp, dtype),
    )
