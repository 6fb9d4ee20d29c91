"""Validation of the losses' arguments into specs (:mod:`infoloss._specs`), done once per call.

Each ``*_spec`` function checks every argument of one public function (in a fixed order, so the
first problem is the one reported), converts lists and scalars, resolves the axis, the compute
dtype and the weights' broadcasting, and returns the frozen spec the router takes. Checks that
read data (label ranges, non-negative weights) run only on concrete arrays (see
:func:`infoloss._utils.any_true`).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from ._specs import (
    CEOptions,
    JointMeasure,
    LinearCE,
    LMMeasure,
    ProbMeasure,
    RowOp,
    SigmoidCE,
    SoftmaxCE,
    SoftmaxMeasure,
)
from ._utils import (
    Array,
    Namespace,
    _dtype_name,
    _is_ml_float,
    _real_option,
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
    size,
    upcast,
)
from .errors import InfolossError, InfolossTypeError

__all__ = [
    "check_grad_out",
    "check_softcap",
    "check_temperature",
    "joint_spec",
    "linear_ce_spec",
    "lm_spec",
    "prob_spec",
    "row_spec",
    "sigmoid_ce_spec",
    "softmax_ce_spec",
    "softmax_measure_spec",
    "tempered",
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
    if not is_concrete(labels) or size(labels) == 0:  # checks that read data skip tracers
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
            k0 = kc.detach() if hasattr(kc, "detach") else kc  # torch weights that require grad
            z = z / float(k0) if is_concrete(kc) else z / kc
    return cw, sw, z


def check_softcap(value: Any) -> float | None:
    """``softcap``: None or a finite positive number."""
    if value is None:
        return None
    v = _real_option(value, "softcap", "a positive number or None")
    if not (v > 0) or v == math.inf:
        raise InfolossError(f"`softcap` must be a finite positive number or None; got {value}")
    return v


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
    softcap: Any = None,
) -> SoftmaxCE:
    """The spec of :func:`infoloss.softmax_cross_entropy` (``sparse=False``) or
    :func:`infoloss.sparse_softmax_cross_entropy` (``sparse=True``)."""
    reduction = check_reduction(reduction)
    eps = check_unit_interval(label_smoothing, "label_smoothing")
    z = check_nonnegative(z_loss, "z_loss")
    ii = check_index(ignore_index, "ignore_index")
    cap = check_softcap(softcap)
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
        options=CEOptions(
            sparse=sparse, label_smoothing=eps, z_loss=z, ignore_index=ii, softcap=cap
        ),
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
    softcap: Any = None,
) -> SigmoidCE:
    """The spec of :func:`infoloss.sigmoid_cross_entropy`."""
    reduction = check_reduction(reduction)
    eps = check_unit_interval(label_smoothing, "label_smoothing")
    cap = check_softcap(softcap)
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
        softcap=cap,
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
    sample_weights: Any = None,
    ignore_index: Any = None,
    label_smoothing: Any = 0.0,
    z_loss: Any = 0.0,
    reduction: Any = "mean",
    chunk_size: Any = None,
    softcap: Any = None,
    return_aux: Any = False,
    chunk_budget: int = CHUNK_BUDGET_BYTES,
) -> LinearCE:
    """The spec of :func:`infoloss.linear_cross_entropy`."""
    reduction = check_reduction(reduction)
    eps = check_unit_interval(label_smoothing, "label_smoothing")
    z = check_nonnegative(z_loss, "z_loss")
    ii = check_index(ignore_index, "ignore_index")
    cap = check_softcap(softcap)
    want_lse = check_bool(return_aux, "return_aux")
    xp, (h, w, y, b, cw, sw) = namespace(
        ("hidden", hidden),
        ("weight", weight),
        ("labels", labels),
        ("bias", bias),
        ("class_weights", class_weights),
        ("sample_weights", sample_weights),
        optional=("bias", "class_weights", "sample_weights"),
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
    sw = _broadcast_weights(xp, sw, batch, "sample_weights", cd, "the labels' shape")
    _label_range(xp, y, v, ii)
    cw, sw, z = _mean_scales(xp, reduction, cw, sw, z)
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
        sample_weights=None if sw is None else xp.reshape(sw, (n,)),
        options=CEOptions(sparse=True, label_smoothing=eps, z_loss=z, ignore_index=ii, softcap=cap),
        reduction=reduction,
        chunk_rows=chunk,
        want_lse=want_lse,
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
    op: str,
    p: Any,
    q: Any = None,
    *,
    axis: Any = None,
    base: Any = None,
    keepdims: Any = False,
    beta: Any = 0.5,
) -> ProbMeasure:
    """The spec of a probability measure: ``information`` (elementwise, ``axis`` unused),
    ``entropy`` (``q`` None) or a two-distribution measure (``beta``: the JS divergence's)."""
    bt = _open_unit(beta, "beta") if op == "js_divergence" else 0.5
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
    shapes = (tuple(p.shape), tuple(q.shape))
    p, q = broadcast_pair(xp, p, q, "p", "q")
    ax = normalize_axis(axis, p.ndim)
    checked = check_probabilities(xp, p, "p") & check_probabilities(xp, q, "q")
    cd = compute_dtype(xp, dtype)
    return ProbMeasure(
        xp, op, upcast(xp, p, cd), upcast(xp, q, cd), ax, kd, lb, dtype, checked, bt, shapes
    )


def check_temperature(temperature: Any, scale_by_temperature_squared: Any) -> tuple[float, float]:
    """``temperature`` (a finite number > 0) and the factor of the value: ``T**2`` with
    ``scale_by_temperature_squared``, else 1."""
    if isinstance(temperature, (bool, np.bool_)) or not isinstance(
        temperature, (int, float, np.integer, np.floating)
    ):
        raise InfolossError(f"`temperature` must be a positive number; got {temperature!r}")
    t = float(temperature)
    if not (0.0 < t < _INF):
        raise InfolossError(f"`temperature` must be a finite positive number; got {temperature}")
    t2 = check_bool(scale_by_temperature_squared, "scale_by_temperature_squared")
    return t, (t * t if t2 else 1.0)


def tempered(spec: SoftmaxCE, temperature: float) -> SoftmaxCE:
    """``spec`` with its logits divided by ``temperature`` (an array operation of the caller's
    library, so that autodiff sees it)."""
    return replace(spec, logits=spec.logits / temperature)


def _open_unit(value: Any, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise InfolossError(f"`{name}` must be a number in (0, 1); got {value!r}")
    v = float(value)
    if not 0.0 < v < 1.0:
        raise InfolossError(f"`{name}` must be in the open interval (0, 1); got {value}")
    return v


def _row_mask(xp: Namespace, mask: Array | None, shape: tuple[int, ...]) -> Array | None:
    """A boolean ``mask`` broadcast to the batch ``shape`` (True: the row counts)."""
    if mask is None:
        return None
    if not xp.isdtype(mask.dtype, "bool"):
        raise InfolossTypeError(
            f"`mask` must be a boolean array (True where a row counts); got dtype {_dtype_name(mask.dtype)}"
        )
    if tuple(mask.shape) != shape:
        try:
            mask = xp.broadcast_to(mask, shape)
        except (ValueError, RuntimeError, TypeError):
            raise InfolossError(
                f"`mask` must broadcast to the batch shape {shape}; got shape {tuple(mask.shape)}"
            ) from None
    return mask


def softmax_measure_spec(
    a: Any,
    b: Any = None,
    *,
    axis: Any = -1,
    base: Any = None,
    keepdims: Any = False,
    op: str = "kl",
    beta: Any = 0.5,
    temperature: Any = 1.0,
    scale_by_temperature_squared: Any = False,
    sample_weights: Any = None,
    mask: Any = None,
    reduction: Any = "none",
) -> SoftmaxMeasure:
    """The spec of :func:`infoloss.softmax_entropy` (``b`` None),
    :func:`infoloss.softmax_kl_divergence` (``op`` "kl") or
    :func:`infoloss.softmax_js_divergence` (``op`` "js")."""
    lb = log_base(base)
    kd = check_bool(keepdims, "keepdims")
    reduction = check_reduction(reduction)
    if kd and reduction != "none":
        raise InfolossError(f"`keepdims=True` needs reduction='none'; got reduction={reduction!r}")
    t, scale = check_temperature(temperature, scale_by_temperature_squared)
    bt = _open_unit(beta, "beta") if op == "js" else 0.5
    named = [("logits", a)] if b is None else [("p_logits", a), ("q_logits", b)]
    if b is not None:
        named += [("sample_weights", sample_weights), ("mask", mask)]
    xp, arrays = namespace(*named, optional=("sample_weights", "mask"))
    sw = mk = None
    if b is not None:
        arrays, sw, mk = arrays[:2], arrays[2], arrays[3]
    for (name, _), x in zip(named, arrays, strict=False):
        require_floating(xp, x, name)
    if len(arrays) == 2 and tuple(arrays[0].shape) != tuple(arrays[1].shape):
        arrays = list(broadcast_pair(xp, arrays[0], arrays[1], named[0][0], named[1][0]))
    dtype = xp.result_type(*arrays)
    ax = normalize_axis(axis, arrays[0].ndim)
    if arrays[0].shape[ax] == 0:
        raise InfolossError(
            f"`{named[0][0]}` must have at least one class along `axis`={axis}; got shape {tuple(arrays[0].shape)}"
        )
    cd = compute_dtype(xp, dtype)
    shape = tuple(arrays[0].shape)
    batch = shape[:ax] + shape[ax + 1 :]
    sw = _broadcast_weights(xp, sw, batch, "sample_weights", cd, "the batch shape")
    mk = _row_mask(xp, mk, batch)
    _, sw, _ = _mean_scales(xp, reduction, None, sw, 0.0)
    return SoftmaxMeasure(
        xp=xp,
        a=arrays[0],
        b=arrays[1] if len(arrays) == 2 else None,
        axis=ax,
        keepdims=kd,
        log_base=lb,
        dtype=dtype,
        compute_dtype=cd,
        op=op,
        beta=bt,
        temperature=t,
        scale=scale,
        sample_weights=sw,
        mask=mk,
        reduction=reduction,
    )


def lm_spec(
    op: str,
    logits: Any,
    labels: Any,
    num_bytes: Any = None,
    *,
    ignore_index: Any = None,
    sample_weights: Any = None,
    axis: Any = -1,
) -> LMMeasure:
    """The spec of :func:`infoloss.perplexity` or :func:`infoloss.bits_per_byte`: the sparse
    cross-entropy's (mean for the perplexity, sum for bits per byte) and the bytes per token.
    ``op="meter"`` (:class:`infoloss.metrics.CrossEntropyMeter`): the sum, bytes optional."""
    ce = softmax_ce_spec(
        logits,
        labels,
        sparse=True,
        axis=axis,
        sample_weights=sample_weights,
        ignore_index=ignore_index,
        reduction="mean" if op == "perplexity" else "sum",
    )
    nb = None
    if op == "bits_per_byte" or num_bytes is not None:
        if num_bytes is None:
            raise InfolossTypeError("`num_bytes` must be an array; got None")
        _, (_, nb) = namespace(("logits", ce.logits), ("num_bytes", num_bytes))
        batch = tuple(ce.labels.shape)
        nb = _broadcast_weights(
            ce.xp, nb, batch, "num_bytes", ce.compute_dtype, "the labels' shape"
        )
    return LMMeasure(op=op, ce=ce, num_bytes=nb)


def joint_spec(
    op: str,
    joint: Any,
    *,
    axis: Any = (-2, -1),
    given: Any = 0,
    base: Any = None,
    keepdims: Any = False,
) -> JointMeasure:
    """The spec of :func:`infoloss.mutual_information` or :func:`infoloss.conditional_entropy`:
    a table of joint probabilities ``p(x, y)`` along the two ``axis`` (X first, then Y)."""
    lb = log_base(base)
    kd = check_bool(keepdims, "keepdims")
    if op == "conditional_entropy" and (isinstance(given, (bool, np.bool_)) or given not in (0, 1)):
        raise InfolossError(
            f"`given` must be 0 (H(Y|X), the first axis given) or 1 (H(X|Y)); got {given!r}"
        )
    if not isinstance(axis, tuple) or len(axis) != 2:
        raise InfolossError(f"`axis` must be a pair of axes (X, Y); got {axis!r}")
    xp, (p,) = namespace(("joint", joint))
    p = _as_prob(xp, p, "joint")
    if p.ndim < 2:
        raise InfolossError(
            f"`joint` must be a table of at least 2 dimensions (X, Y); got shape {tuple(p.shape)}"
        )
    ax = normalize_axis(axis[0], p.ndim), normalize_axis(axis[1], p.ndim)
    if ax[0] == ax[1]:
        raise InfolossError(f"`axis` must name two different axes; got {axis!r}")
    checked = check_probabilities(xp, p, "joint")
    dtype = p.dtype
    p = xp.moveaxis(upcast(xp, p, compute_dtype(xp, dtype)), ax, (-2, -1))
    return JointMeasure(xp, op, p, int(given), kd, lb, dtype, checked)
