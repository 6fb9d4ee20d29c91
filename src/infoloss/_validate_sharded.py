"""Validation of the vocabulary-parallel losses (:mod:`infoloss.distributed`), in two steps.

1. :func:`local_spec` checks what one rank can check alone, with the same checks and messages
   as :func:`infoloss._validate.softmax_ce_spec` (options, types, shapes, weights).
2. Every rank then sends :func:`group_meta` — a few integers: its error flag, ``vocab_start``,
   shard width, dtype, row count, label range and checksum, an options code — to every other
   (one small ``all_gather``), and :func:`check_group` checks the table: the shards must tile
   ``[0, V)``, dtypes, options and labels must agree, labels must lie in ``[0, V)``. The table
   is the same on every rank, so every rank raises (or none does): a bad input on one rank never
   leaves the others waiting in a collective.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from typing import Any

from . import _reduce
from ._specs import CEOptions, VocabParallelCE
from ._utils import (
    as_float,
    check_bool,
    check_index,
    check_nonnegative,
    check_reduction,
    check_unit_interval,
    compute_dtype,
    moveaxis_last,
    namespace,
    normalize_axis,
    require_floating,
)
from ._validate import _broadcast_weights, _ignore_index, _label_range, _nonnegative, chunk_rows
from .errors import InfolossError, InfolossTypeError

__all__ = [
    "WEIGHT_KINDS",
    "check_group",
    "group_meta",
    "local_spec",
    "weight_total_args",
    "weight_total_of",
]

_DTYPES = ("float16", "bfloat16", "float32", "float64")
_NO_LABEL = 2**62
# fields of the table
_ERR, _START, _WIDTH, _DTYPE, _ROWS, _LMIN, _LMAX, _LSUM, _OPTS, _CWLEN, _HDIM = range(11)


def _dtype_code(dt: Any) -> int:
    name = str(dt).replace("torch.", "")
    return _DTYPES.index(name) if name in _DTYPES else -1


def _vocab_start(v: Any) -> int | None:
    s = check_index(v, "vocab_start")
    if s is not None and s < 0:
        raise InfolossError(f"`vocab_start` must be a non-negative integer or None; got {s}")
    return s


def local_spec(
    logits: Any,
    labels: Any,
    *,
    group: Any,
    hidden: Any = None,
    weight: Any = None,
    bias: Any = None,
    vocab_start: Any = None,
    class_weights: Any = None,
    sample_weights: Any = None,
    ignore_index: Any = None,
    label_smoothing: Any = 0.0,
    z_loss: Any = 0.0,
    reduction: Any = "mean",
    chunk_size: Any = None,
    chunk_budget: int = 64 * 2**20,
    reduce_hidden_grad: Any = True,
) -> VocabParallelCE:
    """The checks one rank makes alone (``logits`` is None for the linear layer)."""
    import torch

    reduction = check_reduction(reduction)
    eps = check_unit_interval(label_smoothing, "label_smoothing")
    z = check_nonnegative(z_loss, "z_loss")
    ii = check_index(ignore_index, "ignore_index")
    start = _vocab_start(vocab_start)
    linear = logits is None
    first = ("hidden", hidden) if linear else ("logits_shard", logits)
    named = [first, ("labels", labels)]
    if linear:
        named += [("weight_shard", weight), ("bias_shard", bias)]
    named += [("class_weights", class_weights), ("sample_weights", sample_weights)]
    xp, arrays = namespace(*named, optional=("bias_shard", "class_weights", "sample_weights"))
    for (name, _), a in zip(named, arrays, strict=True):
        if a is not None and not isinstance(a, torch.Tensor):
            raise InfolossTypeError(
                f"`{name}` must be a torch.Tensor (infoloss.distributed runs on torch.distributed); "
                f"got {type(a).__module__}.{type(a).__name__}"
            )
    x, y = arrays[0], arrays[1]
    cw, sw = arrays[-2], arrays[-1]
    w = b = None
    require_floating(xp, x, first[0])
    if x.ndim < 1:
        raise InfolossError(f"`{first[0]}` must have at least one axis; got a 0-d tensor")
    batch = tuple(x.shape[:-1])
    if linear:
        w, b = arrays[2], arrays[3]
        require_floating(xp, w, "weight_shard")
        if w.ndim != 2 or int(w.shape[1]) != int(x.shape[-1]):
            raise InfolossError(
                f"`weight_shard` must have shape (V_local, {int(x.shape[-1])}) to match `hidden` "
                f"of shape {tuple(x.shape)}; got {tuple(w.shape)}"
            )
        width = int(w.shape[0])
        if b is not None:
            require_floating(xp, b, "bias_shard")
            if tuple(b.shape) != (width,):
                raise InfolossError(
                    f"`bias_shard` must have shape ({width},); got {tuple(b.shape)}"
                )
        cd = compute_dtype(xp, xp.result_type(x, w) if b is None else xp.result_type(x, w, b))
    else:
        width = int(x.shape[-1])
        cd = compute_dtype(xp, x.dtype)
    if not xp.isdtype(y.dtype, "integral"):
        raise InfolossTypeError(
            f"`labels` must hold integer class indices; got dtype {str(y.dtype).replace('torch.', '')}"
        )
    if tuple(y.shape) != batch:
        raise InfolossError(
            f"`labels` must have the shape {batch} of `{first[0]}` without its last axis; got {tuple(y.shape)}"
        )
    if cw is not None:
        cw = as_float(xp, cw, "class_weights", cd)
        if cw.ndim != 1:
            raise InfolossError(
                f"`class_weights` must have shape (V_local,) or (V,), one weight per class; got shape {tuple(cw.shape)}"
            )
        _nonnegative(xp, cw, "class_weights")
    sw = _broadcast_weights(xp, sw, batch, "sample_weights", cd, "the batch shape")
    ii = _ignore_index(ii, y.dtype, xp)
    n = 1
    for s in batch:
        n *= int(s)
    itemsize = 4 if cd == xp.float32 else 8
    return VocabParallelCE(
        xp=xp,
        labels=xp.reshape(y, (n,)),
        class_weights=cw,  # kept attached: their gradient when they require one
        sample_weights=None if sw is None else xp.reshape(sw, (n,)).detach(),
        options=CEOptions(sparse=True, label_smoothing=eps, z_loss=z, ignore_index=ii),
        reduction=reduction,
        compute_dtype=cd,
        width=width,
        batch_shape=batch,
        group=group,
        logits=None if linear else x,
        hidden=x if linear else None,
        weight=w,
        bias=b,
        hidden_shape=tuple(x.shape) if linear else (),
        chunk_rows=chunk_rows(chunk_size, n, max(width, 1), itemsize, chunk_budget)
        if linear
        else 0,
        reduce_hidden_grad=check_bool(reduce_hidden_grad, "reduce_hidden_grad"),
        vocab_start=start,
    )


def _options_code(spec: VocabParallelCE) -> int:
    o = spec.options
    grads: tuple[bool, ...] = ()
    if spec.hidden is not None:
        grads = tuple(
            bool(t is not None and t.requires_grad) for t in (spec.hidden, spec.weight, spec.bias)
        )
    key = (
        struct.pack("<dd", o.label_smoothing, float(o.z_loss)),
        o.ignore_index,
        spec.reduction,
        spec.class_weights is None,
        bool(spec.class_weights is not None and spec.class_weights.requires_grad),
        spec.sample_weights is None,
        spec.hidden is None,
        spec.reduce_hidden_grad,
        grads,
    )
    return zlib.crc32(repr(key).encode())


def group_meta(spec: VocabParallelCE | None) -> list[int]:
    """This rank's row of the group's table (``spec`` None: its local checks failed)."""
    if spec is None:
        return [1] + [-1] * (_HDIM)
    xp, y = spec.xp, spec.labels
    valid = y != spec.options.ignore_index if spec.options.ignore_index is not None else None
    yl = xp.astype(y, xp.int64)
    if int(y.shape[0]) == 0 or (valid is not None and not bool(xp.any(valid))):
        lmin, lmax = _NO_LABEL, -1
    elif valid is None:
        lmin, lmax = int(xp.min(yl)), int(xp.max(yl))
    else:
        lmin = int(xp.min(xp.where(valid, yl, xp.full_like(yl, _NO_LABEL))))
        lmax = int(xp.max(xp.where(valid, yl, xp.full_like(yl, -1))))
    pos = xp.arange(int(y.shape[0]), dtype=xp.int64) % 1021 + 1
    checksum = int(xp.sum(yl * pos))
    first: Any = spec.logits if spec.logits is not None else spec.hidden
    return [
        0,
        -1 if spec.vocab_start is None else spec.vocab_start,
        spec.width,
        _dtype_code(first.dtype),
        int(y.shape[0]),
        lmin,
        lmax,
        checksum,
        _options_code(spec),
        -1 if spec.class_weights is None else int(spec.class_weights.shape[0]),
        int(spec.hidden.shape[-1]) if spec.hidden is not None else 0,
    ]


def _ranks(table: list[list[int]], field: int) -> str:
    return ", ".join(f"{row[field]} on rank {r}" for r, row in enumerate(table))


def check_group(
    spec: VocabParallelCE | None, error: Exception | None, table: list[list[int]], rank: int
) -> VocabParallelCE:
    """The checks of the whole group's table; the spec with the layout filled in."""
    if error is not None:
        raise error
    failed = [r for r, row in enumerate(table) if row[_ERR]]
    if failed:
        raise InfolossError(
            f"invalid input on rank(s) {failed} of the group (see the error raised there); "
            "every rank stops"
        )
    assert spec is not None
    name = "logits_shard" if spec.logits is not None else "hidden"
    if len({row[_DTYPE] for row in table}) > 1:
        names = {
            r: _DTYPES[row[_DTYPE]] if row[_DTYPE] >= 0 else "?" for r, row in enumerate(table)
        }
        raise InfolossTypeError(
            f"`{name}` must have the same dtype on every rank of the group; got "
            + ", ".join(f"{d} on rank {r}" for r, d in names.items())
        )
    if len({row[_ROWS] for row in table}) > 1:
        raise InfolossError(
            "`labels` must be the same on every rank (the examples are replicated over the "
            f"vocabulary shards); got {_ranks(table, _ROWS)} examples"
        )
    if len({row[_HDIM] for row in table}) > 1:
        raise InfolossError(
            f"`hidden` must have the same width on every rank; got {_ranks(table, _HDIM)}"
        )
    if len({row[_OPTS] for row in table}) > 1:
        raise InfolossError(
            "the options (ignore_index, label_smoothing, z_loss, reduction, weights given or not, "
            "which inputs require grad) must be the same on every rank of the group"
        )
    if len({(row[_LMIN], row[_LMAX], row[_LSUM]) for row in table}) > 1:
        raise InfolossError(
            "`labels` must be the same on every rank of the group (the examples are replicated "
            "over the vocabulary shards); their checksums differ"
        )
    widths = [row[_WIDTH] for row in table]
    starts_given = [row[_START] for row in table]
    if all(s == -1 for s in starts_given):
        starts = [sum(widths[:r]) for r in range(len(widths))]
    elif any(s == -1 for s in starts_given):
        missing = [r for r, s in enumerate(starts_given) if s == -1]
        raise InfolossError(
            f"`vocab_start` must be given on every rank or on none; it is None on rank(s) {missing}"
        )
    else:
        starts = starts_given
        pos = 0
        for s, w in sorted(zip(starts, widths, strict=True)):
            if s != pos:
                shards = ", ".join(
                    f"rank {r}: [{s0}, {s0 + w0})"
                    for r, (s0, w0) in enumerate(zip(starts, widths, strict=True))
                )
                raise InfolossError(
                    "`vocab_start` and the shard widths must tile [0, V) without gap or overlap; "
                    f"got {shards}"
                )
            pos = s + w
    v = sum(widths)
    if v == 0:
        raise InfolossError(
            f"`{name}` must have at least one class over the group; all shards are empty"
        )
    lmin, lmax = table[0][_LMIN], table[0][_LMAX]
    if lmin < 0 or (lmax >= v and lmin != _NO_LABEL):
        xp, y = spec.xp, spec.labels
        bad = (y < 0) | (y >= v)
        if spec.options.ignore_index is not None:
            bad = bad & (y != spec.options.ignore_index)
        at = int(xp.nonzero(bad)[0][0])
        p = tuple(int(i) for i in _unravel(at, spec.batch_shape))
        ii = spec.options.ignore_index
        extra = f" or `ignore_index`={ii}" if ii is not None else ""
        raise InfolossError(
            f"`labels` must hold class indices in [0, {v}){extra} (the global vocabulary); "
            f"found {int(y[at])} at position {p}"
        )
    sharded_w = False
    cw_lens = [row[_CWLEN] for row in table]
    if cw_lens[0] != -1:
        if all(c == v for c in cw_lens):
            sharded_w = False
        elif all(c == w for c, w in zip(cw_lens, widths, strict=True)):
            sharded_w = True
        else:
            raise InfolossError(
                f"`class_weights` must have shape (V,) = ({v},) on every rank, or (V_local,) "
                f"sharded like the logits on every rank; got lengths {_ranks(table, _CWLEN)} for "
                f"shard widths {widths}"
            )
    return dataclasses.replace(
        spec, vocab_start=starts[rank], num_classes=v, sharded_weights=sharded_w
    )


def _unravel(i: int, shape: tuple[int, ...]) -> list[int]:
    out = []
    for s in reversed(shape):
        out.append(i % s)
        i //= s
    return list(reversed(out))


#: ``kind`` of :func:`infoloss.weight_total`: which losses' "mean" it is the denominator of
WEIGHT_KINDS = ("sparse", "softmax", "sigmoid")


def weight_total_args(
    labels: Any,
    ignore_index: Any,
    class_weights: Any,
    sample_weights: Any,
    dtype: Any,
    kind: Any = None,
    axis: Any = -1,
) -> tuple[Any, ...]:
    """The checked arguments of :func:`infoloss.weight_total`: ``(kind, xp, labels,
    class_weights, sample_weights, ignore_index, dtype)`` (the checks and messages of the
    losses); probability labels (``kind="softmax"``) come back with the classes last."""
    if kind is not None and kind not in WEIGHT_KINDS:
        raise InfolossError(
            f"`kind` must be one of {', '.join(map(repr, WEIGHT_KINDS))} or None; got {kind!r}"
        )
    ii = check_index(ignore_index, "ignore_index")
    xp, (y, cw, sw) = namespace(
        ("labels", labels),
        ("class_weights", class_weights),
        ("sample_weights", sample_weights),
        optional=("class_weights", "sample_weights"),
    )
    if kind is None or kind == "sparse":
        if not xp.isdtype(y.dtype, "integral"):
            hint = "" if kind else ' (for probability labels pass kind="softmax" or "sigmoid")'
            raise InfolossTypeError(
                "`labels` must hold integer class indices; got dtype "
                f"{str(y.dtype).replace('torch.', '')}{hint}"
            )
        kind = "sparse"
    else:
        if ii is not None:
            raise InfolossError(
                f"`ignore_index` applies to integer labels (kind='sparse') only; got {ii} "
                f"with kind={kind!r}"
            )
        if kind == "sigmoid" and cw is not None:
            raise InfolossError(
                "`class_weights` do not enter the sigmoid losses' mean (pos_weight does not "
                "either); got class_weights with kind='sigmoid'"
            )
    if dtype is None:
        floats = [
            a.dtype for a in (y, cw, sw) if a is not None and xp.isdtype(a.dtype, "real floating")
        ]
        dtype = compute_dtype(xp, xp.result_type(*floats)) if floats else xp.asarray(0.0).dtype
    elif not xp.isdtype(dtype, "real floating"):
        raise InfolossTypeError(f"`dtype` must be a real floating dtype; got {dtype}")
    shape = tuple(y.shape)
    if kind == "softmax":
        y = as_float(xp, y, "labels", dtype)
        ax = normalize_axis(axis, y.ndim)
        c = int(shape[ax])
        y = moveaxis_last(xp, y, ax)
        shape = tuple(y.shape[:-1])
        if cw is not None:
            cw = as_float(xp, cw, "class_weights", dtype)
            if tuple(cw.shape) != (c,):
                raise InfolossError(
                    f"`class_weights` must have shape ({c},), one weight per class; got shape "
                    f"{tuple(cw.shape)}"
                )
            _nonnegative(xp, cw, "class_weights")
        what = "the batch shape"
    elif kind == "sigmoid":
        what = "the labels' shape"
    else:
        ii = _ignore_index(ii, y.dtype, xp)
        if cw is not None:
            cw = as_float(xp, cw, "class_weights", dtype)
            if cw.ndim != 1:
                raise InfolossError(
                    "`class_weights` must have shape (C,), one weight per class; got shape "
                    f"{tuple(cw.shape)}"
                )
            _nonnegative(xp, cw, "class_weights")
            _label_range(xp, y, int(cw.shape[0]), ii)
        what = "the labels' shape"
    sw = _broadcast_weights(xp, sw, shape, "sample_weights", dtype, what)
    return kind, xp, y, cw, sw, ii, dtype


def weight_total_of(args: tuple[Any, ...]) -> Any:
    """Σ W from :func:`weight_total_args`' result."""
    kind, xp, y, cw, sw, ii, dt = args
    if kind == "softmax":
        return _reduce.weight_total_dense(xp, y, cw, sw, dt)
    if kind == "sigmoid":
        return _reduce.weight_total_elementwise(xp, y, sw, dt)
    return _reduce.weight_total(xp, y, cw, sw, ii, dt)
