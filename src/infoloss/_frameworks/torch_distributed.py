"""The ``torch.distributed`` adapter: vocabulary-parallel cross-entropy under autograd.

The definition is :mod:`infoloss._generic.sharded` (Array API code on one shard); this module
runs it on torch tensors inside :class:`torch.autograd.Function` s and moves the per-row values
between the ranks with ``torch.distributed`` collectives (any backend: gloo, NCCL, ...):

- one ``all_gather`` of a few integers per rank (shard widths, dtypes, options, a label checksum:
  :mod:`infoloss._validate_sharded` checks them), once per call;
- forward: one ``all_reduce(MAX)`` of ``N`` values and one ``all_reduce(SUM)`` of ``3N`` to ``6N``
  values (``N`` the number of rows); never anything of size ``N × V``;
- backward: nothing for :class:`VocabParallelCE` (the global class weights' gradient, ``V``
  values, when they require grad; the SUM of the statistics again under ``create_graph=True``);
  one ``all_reduce(SUM)`` of ``d_hidden``
  (``N × H``) for the linear layer, whose input is replicated over the group.

A group of one rank (or no initialised process group with ``group=None``) runs no collective.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from array_api_compat import array_namespace

from .. import _config, _reduce
from .._generic import sharded
from .._specs import VocabParallelCE

__all__ = ["Group", "all_reduce_sum", "vocab_parallel_ce", "vocab_parallel_linear_ce"]

_HALF = (torch.float16, torch.bfloat16)


class Group:
    """The ranks of one ``torch.distributed`` process group (``None``: the default group; a
    world of one rank when ``torch.distributed`` is not initialised)."""

    def __init__(self, group: Any = None):
        self.handle = group
        if group is None and not (dist.is_available() and dist.is_initialized()):
            self.rank, self.size, self.active = 0, 1, False
            return
        if not (dist.is_available() and dist.is_initialized()):
            from ..errors import InfolossError

            raise InfolossError(
                "`group` was given but torch.distributed is not initialised "
                "(call torch.distributed.init_process_group first)"
            )
        self.rank = dist.get_rank(group)
        self.size = dist.get_world_size(group)
        self.active = self.size > 1
        if self.rank < 0:
            from ..errors import InfolossError

            raise InfolossError("`group` must contain this process; its rank in it is -1")

    def gather_ints(self, values: list[int], device: Any = None) -> list[list[int]]:
        """Every rank's ``values`` (one small ``all_gather``, on ``device``: NCCL needs the
        GPU), in group-rank order."""
        if not self.active:
            return [list(values)]
        t = torch.tensor(values, dtype=torch.int64, device=device)
        out = [torch.empty_like(t) for _ in range(self.size)]
        dist.all_gather(out, t, group=self.handle)
        return [o.tolist() for o in out]

    def all_reduce(self, t: torch.Tensor, op: str) -> torch.Tensor:
        """``t`` reduced in place over the group (``op`` "max" or "sum")."""
        if self.active:
            dist.all_reduce(
                t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM, group=self.handle
            )
        return t


def all_reduce_sum(value: torch.Tensor, group: Group) -> torch.Tensor:
    """A copy of ``value`` summed over the group."""
    return group.all_reduce(value.detach().clone(), "sum")


# --------------------------------------------------------------------------- the shared sweep


def _detach(t: torch.Tensor) -> torch.Tensor:
    return t.detach()


def _stats(
    xp: Any, spec: VocabParallelCE, x: torch.Tensor, y: torch.Tensor, cw: Any = False
) -> Any:
    """``cw`` False: the spec's class weights, as constants (inside the autograd Functions);
    otherwise the (differentiable) weights to use, with the row maxima as constants."""
    assert spec.vocab_start is not None
    if cw is False and _fast_ok(spec, x):
        return _fast_stats(spec, x, y)
    return sharded.shard_stats(
        xp,
        x,
        y,
        start=spec.vocab_start,
        class_weights=spec.class_weights if cw is False else cw,
        sharded_weights=spec.sharded_weights,
        options=spec.options,
        **({} if cw is False else {"constant": _detach}),
    )


def _combine(
    xp: Any,
    spec: VocabParallelCE,
    stats: Any,
    y: torch.Tensor,
    sw: Any,
    *,
    m: Any = None,
    total: Callable[[torch.Tensor, Group], torch.Tensor] | None = None,
    cw: Any = False,
) -> Any:
    """The two forward all-reduces and the per-row results. ``m``: the global row maxima when
    known (no MAX then); ``total``: a differentiable SUM (the autograd paths); ``cw`` as in
    :func:`_stats`."""
    if m is None:
        m_all = spec.group.all_reduce(stats.m_loc.detach().clone(), "max")
        m = sharded.global_max(xp, m_all)
    parts = sharded.shift(xp, stats, m)
    summed = spec.group.all_reduce(parts, "sum") if total is None else total(parts, spec.group)
    return sharded.finish(
        xp,
        summed,
        m,
        y,
        num_classes=spec.num_classes,
        class_weights=spec.class_weights if cw is False else cw,
        sharded_weights=spec.sharded_weights,
        sample_weights=sw,
        options=spec.options,
    )


def _value(xp: Any, spec: VocabParallelCE, loss: torch.Tensor, weight: torch.Tensor) -> Any:
    total = xp.sum(weight) if spec.reduction == "mean" else None
    return _reduce.reduce(xp, loss, total, spec.reduction), total


def _row_scale(spec: VocabParallelCE, grad_value: torch.Tensor, total: Any) -> Any:
    """The factor of each row's gradient: the incoming gradient times the reduction's 1 / Σ W
    (differentiable with respect to ``grad_value`` when grad mode is on)."""
    gv = grad_value if torch.is_grad_enabled() else grad_value.detach()
    gv = gv.to(spec.compute_dtype)
    if spec.reduction == "none":
        return gv.reshape(-1)
    if spec.reduction == "mean":
        return _reduce.safe_divide(torch, gv, total)
    return gv


def _grad(xp: Any, spec: VocabParallelCE, x: Any, y: Any, f: Any, scale: Any, sw: Any) -> Any:
    assert spec.vocab_start is not None
    if not torch.is_grad_enabled() and _fast_ok(spec, x):
        return _fast_grad(spec, x, y, f, scale, sw)
    return sharded.shard_grad(
        xp,
        x,
        y,
        f,
        start=spec.vocab_start,
        num_classes=spec.num_classes,
        class_weights=spec.class_weights,
        sharded_weights=spec.sharded_weights,
        sample_weights=sw,
        options=spec.options,
        row_scale=scale,
    )


# --------------------------------------------------------------------------- fused kernels
# CPU float32/float64 shards with the fast path on: the statistics and the gradient in one
# numba sweep each (kernels/sharded_ce.py); the O(N) combination stays in the definition.


def _fast_ok(spec: VocabParallelCE, x: torch.Tensor) -> bool:
    if not (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)):
        return False
    if x.shape[0] == 0 or spec.width == 0 or not _config.fast_allowed():
        return False
    from .._fast import sharded as fast

    return fast.available()


def _np(t: torch.Tensor) -> Any:
    return t.detach().resolve_neg().resolve_conj().numpy()


def _local_weights(spec: VocabParallelCE) -> Any:
    cw = spec.class_weights
    if cw is None:
        return None
    assert spec.vocab_start is not None
    return cw if spec.sharded_weights else cw[spec.vocab_start : spec.vocab_start + spec.width]


def _targets(spec: VocabParallelCE, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(owned, local column or −1) of each row's target."""
    assert spec.vocab_start is not None
    ii = spec.options.ignore_index
    valid = None if ii is None else y != ii
    owned = sharded.local_index(torch, y, spec.vocab_start, spec.width, valid)
    idx = torch.where(owned, y - spec.vocab_start, torch.full_like(y, -1)).to(torch.int64)
    return owned, idx


def _fast_stats(spec: VocabParallelCE, x: torch.Tensor, y: torch.Tensor) -> Any:
    from .._fast import sharded as fast

    owned, idx = _targets(spec, y)
    w = _local_weights(spec)
    eps = spec.options.label_smoothing
    out = fast.shard_stats(_np(x), _np(idx), None if w is None else _np(w), eps > 0)
    t = torch.from_numpy(out).to(x.dtype)
    cw_y = None
    if spec.sharded_weights and w is not None:
        cw_y = torch.where(owned, w.detach()[idx.clamp(min=0)], torch.zeros_like(t[0]))
    w_sum: Any = float(spec.width) if w is None else w.detach().sum()
    return sharded.LocalStats(
        t[0], t[1], t[2], t[3], t[4], owned, t[5] if eps > 0 else None, w_sum, cw_y
    )


def _fast_grad(
    spec: VocabParallelCE, x: torch.Tensor, y: torch.Tensor, f: Any, scale: Any, sw: Any
) -> torch.Tensor:
    from .._fast import sharded as fast

    n = int(x.shape[0])
    _, idx = _targets(spec, y)
    sc = torch.as_tensor(scale).to(torch.float64)
    if sw is not None:
        sc = sw.to(torch.float64) * sc
    sc = sc.expand(n)
    rowf = f.rowf.to(torch.float64)
    a = rowf * sc
    b = sc * (spec.options.label_smoothing / spec.num_classes)
    gy = (rowf * torch.expm1((f.x_y - f.m) - f.ls) + (f.rowf - f.cy)) * sc
    keep = torch.ones(n, dtype=torch.bool) if f.valid is None else f.valid
    w = _local_weights(spec)
    rows = tuple(_np(r) for r in (f.m.to(torch.float64), f.ls.to(torch.float64), a, b, gy))
    g = fast.shard_grad(_np(x), _np(idx), rows, _np(keep), None if w is None else _np(w))
    return torch.from_numpy(g)


# --------------------------------------------------------------------------- logits shards


class _VocabParallelCE(torch.autograd.Function):
    """Forward: two O(N) all-reduces; backward: the analytic gradient of this rank's shard,
    no communication."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, spec: VocabParallelCE) -> torch.Tensor:
        xp = array_namespace(logits)
        x = logits.detach()
        x = x.to(spec.compute_dtype) if x.dtype != spec.compute_dtype else x
        x = x.reshape(int(spec.labels.shape[0]), spec.width)
        y = spec.labels
        f = _combine(xp, spec, _stats(xp, spec, x, y), y, spec.sample_weights)
        value, total = _value(xp, spec, f.loss, f.weight)
        ctx.spec, ctx.f, ctx.total = spec, f, total
        ctx.save_for_backward(logits)
        if spec.reduction == "none":
            value = value.reshape(spec.batch_shape)
        return value.to(logits.dtype)

    @staticmethod
    def backward(ctx: Any, grad_value: torch.Tensor) -> tuple[Any, None]:
        (logits,) = ctx.saved_tensors
        spec: VocabParallelCE = ctx.spec
        xp = array_namespace(logits)
        twice = torch.is_grad_enabled()  # create_graph=True: a differentiable gradient
        x = logits if twice else logits.detach()
        x = x.to(spec.compute_dtype) if x.dtype != spec.compute_dtype else x
        x = x.reshape(int(spec.labels.shape[0]), spec.width)
        f = ctx.f
        if twice:
            # the per-row statistics recomputed from this shard under autograd, summed over the
            # ranks by a SUM whose backward sums too: the second derivative of Σ_r (objective
            # of rank r) reaches every shard (an O(N) all-reduce per differentiation)
            stats = _stats(xp, spec, x, spec.labels, cw=spec.class_weights)
            f = _combine(
                xp,
                spec,
                stats,
                spec.labels,
                spec.sample_weights,
                m=f.m,
                total=lambda t, group: _sum_parts(t + _tie(x), group),
            )
        scale = _row_scale(spec, grad_value, ctx.total)
        g = _grad(xp, spec, x, spec.labels, f, scale, spec.sample_weights)
        if twice:
            g = g + _tie(f.ls)
        return g.reshape(logits.shape).to(logits.dtype), None


@functools.cache
def _eager(fn: Callable[..., Any]) -> Callable[..., Any]:
    return torch.compiler.disable(fn)


def _run_eagerly(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` as a graph break under ``torch.compile`` (collectives and data-dependent
    checks run eagerly). Without dynamo imported nothing can be compiling, and importing it
    (seconds) is skipped."""
    if "torch._dynamo" in sys.modules:
        return _eager(fn)(*args)
    return fn(*args)


def _apply_ce(spec: VocabParallelCE) -> torch.Tensor:
    cw = spec.class_weights
    if cw is not None and cw.requires_grad and torch.is_grad_enabled():
        return _autograd_ce(spec)
    return _VocabParallelCE.apply(spec.logits, spec)


# --------------------------------------------------------------------------- autograd paths


class _SumReplicated(torch.autograd.Function):
    """All-reduce SUM of the ranks' parts into a value every rank holds; backward: the identity
    (the gradient of an objective every rank holds, the loss)."""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor, group: Group) -> torch.Tensor:
        return group.all_reduce(t.clone(), "sum")

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, None]:
        if torch.is_grad_enabled():
            from ..errors import InfolossError

            raise InfolossError(
                "vocab_parallel_cross_entropy: a second derivative (create_graph=True) with "
                "class_weights that require grad is not supported; detach the class weights "
                "for the double backward"
            )
        return g, None


class _SumParts(torch.autograd.Function):
    """All-reduce SUM whose backward is an all-reduce SUM too (objectives that differ between
    the ranks, as a second derivative's); differentiable any number of times."""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor, group: Group) -> torch.Tensor:
        ctx.group = group
        return group.all_reduce(t.clone(), "sum")

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, None]:
        return _SumParts.apply(g.contiguous(), ctx.group), None


def _tie(t: torch.Tensor) -> torch.Tensor:
    """An exact 0 that autograd sees as depending on ``t`` (the sum of an empty slice): it keeps
    a collective in the graph of every rank, also of one whose shard is empty, so that no rank
    skips an all-reduce the others wait in (never ``0 * t``, which is nan for an infinite ``t``)."""
    return t.reshape(-1)[:0].sum()


def _sum_parts(t: torch.Tensor, group: Group) -> torch.Tensor:
    return _SumParts.apply(t, group)


def _sum_replicated(t: torch.Tensor, group: Group) -> torch.Tensor:
    return _SumReplicated.apply(t, group)


class _CopyReplicated(torch.autograd.Function):
    """The identity on a tensor every rank holds (the global class weights) that each rank uses
    in part (its columns); backward: the ranks' parts summed, one all-reduce of ``V`` values."""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor, group: Group) -> torch.Tensor:
        ctx.group = group
        return t.clone()

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, None]:
        return ctx.group.all_reduce(g.detach().clone(), "sum"), None


def _autograd_ce(spec: VocabParallelCE) -> torch.Tensor:
    """The loss when the class weights require grad: the sharded definition under autograd
    (row maxima constant), the forward SUM with the identity as backward; gradients with
    respect to the logits shard and the class weights (sharded, or the global vector summed
    over the ranks in the backward)."""
    logits, cw = spec.logits, spec.class_weights
    assert logits is not None and cw is not None
    xp = array_namespace(logits)
    x = logits.to(spec.compute_dtype).reshape(int(spec.labels.shape[0]), spec.width)
    cw_local = cw if spec.sharded_weights else _CopyReplicated.apply(cw, spec.group)
    y, sw = spec.labels, spec.sample_weights
    stats = _stats(xp, spec, x, y, cw=cw_local)
    f = _combine(
        xp,
        spec,
        stats,
        y,
        sw,
        total=lambda t, group: _sum_replicated(t + _tie(cw_local) + _tie(x), group),
        cw=cw,
    )
    value, _ = _value(xp, spec, f.loss, f.weight)
    if spec.reduction == "none":
        value = value.reshape(spec.batch_shape)
    return value.to(logits.dtype)


def vocab_parallel_ce(spec: VocabParallelCE) -> torch.Tensor:
    """The vocabulary-parallel loss of this rank's logits shard (differentiable)."""
    return _run_eagerly(_apply_ce, spec)


# --------------------------------------------------------------------------- linear layer


def _cat_stats(parts: list[Any]) -> Any:
    if len(parts) == 1:
        return parts[0]
    fields = {}
    for fld in dataclasses.fields(parts[0]):
        vals = [getattr(p, fld.name) for p in parts]
        if fld.name == "w_sum" or vals[0] is None:
            fields[fld.name] = vals[0]
        else:
            fields[fld.name] = torch.cat(vals)
    return type(parts[0])(**fields)


def _rows(f: Any, a: int, b: int) -> Any:
    return dataclasses.replace(
        f,
        **{
            fld.name: getattr(f, fld.name)[a:b]
            for fld in dataclasses.fields(f)
            if isinstance(getattr(f, fld.name), torch.Tensor) and getattr(f, fld.name).ndim == 1
        },
    )


def _logits(h: Any, w: Any, b: Any) -> torch.Tensor:
    return h @ w.T if b is None else torch.addmm(b, h, w.T)


class _VocabParallelLinearCE(torch.autograd.Function):
    """Forward: the chunked local statistics (each chunk's logits discarded), two O(N)
    all-reduces; backward: the chunks' logits recomputed into the gradients, one all-reduce of
    ``d_hidden`` (N × H)."""

    @staticmethod
    def forward(
        ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: Any, spec: VocabParallelCE
    ) -> torch.Tensor:
        xp = array_namespace(weight)
        cd = spec.compute_dtype
        h = hidden.detach().reshape(-1, hidden.shape[-1]).to(cd)
        w = weight.detach().to(cd)
        b = None if bias is None else bias.detach().to(cd)
        y, sw = spec.labels, spec.sample_weights
        ii = spec.options.ignore_index
        rows = None
        if ii is not None:  # ignored rows are dropped before the matrix products
            keep = y != ii
            if not bool(torch.all(keep)):
                rows = torch.nonzero(keep).reshape(-1)
                h, y = h[rows], y[rows]
                sw = None if sw is None else sw[rows]
        n, chunk = int(h.shape[0]), max(1, spec.chunk_rows)
        parts = [
            _stats(xp, spec, _logits(h[s : s + chunk], w, b), y[s : s + chunk])
            for s in range(0, n, chunk)
        ]
        if n == 0:
            parts = [_stats(xp, spec, h.new_zeros((0, spec.width)), y)]
        f = _combine(xp, spec, _cat_stats(parts), y, sw)
        value, total = _value(xp, spec, f.loss, f.weight)
        if spec.reduction == "none":
            full = torch.zeros(spec.labels.shape, dtype=cd)
            full[rows if rows is not None else slice(None)] = value
            value = full.reshape(spec.batch_shape)
        ctx.spec, ctx.f, ctx.total, ctx.rows = spec, f, total, rows
        ctx.inputs = (h, w, b, y, sw)
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        ctx.hidden_shape = tuple(hidden.shape)
        ctx.save_for_backward(hidden, weight, bias)  # the sources of a second derivative
        return value.to(hidden.dtype)

    @staticmethod
    def backward(ctx: Any, grad_value: torch.Tensor) -> tuple[Any, ...]:
        twice = torch.is_grad_enabled()
        with torch.no_grad():
            grads = _VocabParallelLinearCE.grads(ctx, grad_value)
        if not twice:
            return grads
        # create_graph=True: the gradients carry a node that raises if differentiated
        srcs = [t for t in (*ctx.saved_tensors, grad_value) if t is not None and t.requires_grad]
        return tuple(
            d if d is None or not srcs else _NoSecondDerivative.apply(d, *srcs) for d in grads
        )

    @staticmethod
    def grads(ctx: Any, grad_value: torch.Tensor) -> tuple[Any, ...]:
        spec: VocabParallelCE = ctx.spec
        h, w, b, y, sw = ctx.inputs
        xp = array_namespace(w)
        scale = _row_scale(spec, grad_value, ctx.total)
        if spec.reduction == "none" and ctx.rows is not None:
            scale = scale[ctx.rows]
        n, chunk = int(h.shape[0]), max(1, spec.chunk_rows)
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        dh = torch.zeros_like(h) if need_h else None
        dw = torch.zeros_like(w) if need_w else None
        db = torch.zeros_like(b) if (need_b and b is not None) else None
        for s in range(0, n, chunk):
            hk = h[s : s + chunk]
            sk = scale[s : s + chunk] if getattr(scale, "ndim", 0) == 1 else scale
            swk = None if sw is None else sw[s : s + chunk]
            g = _grad(
                xp, spec, _logits(hk, w, b), y[s : s + chunk], _rows(ctx.f, s, s + chunk), sk, swk
            )
            if dh is not None:
                dh[s : s + chunk] = g @ w
            if dw is not None:
                dw.addmm_(g.T, hk)
            if db is not None:
                db += g.sum(0)
        d_hidden = None
        if dh is not None:
            if ctx.rows is not None:
                full = torch.zeros((spec.labels.shape[0], h.shape[1]), dtype=h.dtype)
                full[ctx.rows] = dh
                dh = full
            if spec.reduce_hidden_grad:  # the hidden states are replicated: sum the shards' parts
                spec.group.all_reduce(dh, "sum")
            d_hidden = dh.reshape(ctx.hidden_shape).to(ctx.dtypes[0])
        return (
            d_hidden,
            None if dw is None else dw.to(ctx.dtypes[1]),
            None if db is None else db.to(ctx.dtypes[2]),
            None,
        )


class _NoSecondDerivative(torch.autograd.Function):
    """The identity on a gradient of the linear layer; differentiating it raises."""

    @staticmethod
    def forward(ctx: Any, d: torch.Tensor, *sources: torch.Tensor) -> torch.Tensor:
        return d.clone()

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:
        from ..errors import InfolossError

        raise InfolossError(
            "vocab_parallel_linear_cross_entropy has no second derivative (its gradients were "
            "taken with create_graph=True and then differentiated); take "
            "vocab_parallel_cross_entropy of the logits for double backward"
        )


def _apply_linear(spec: VocabParallelCE) -> torch.Tensor:
    cw = spec.class_weights
    if cw is not None and cw.requires_grad and torch.is_grad_enabled():
        from ..errors import InfolossError

        raise InfolossError(
            "vocab_parallel_linear_cross_entropy: `class_weights` that require grad are not "
            "supported (the weights are constants here); detach them, or take "
            "vocab_parallel_cross_entropy of the logits"
        )
    return _VocabParallelLinearCE.apply(spec.hidden, spec.weight, spec.bias, spec)


def vocab_parallel_linear_ce(spec: VocabParallelCE) -> torch.Tensor:
    """The vocabulary-parallel loss of ``hidden @ weight_shard.T + bias_shard`` (differentiable
    with respect to all three)."""
    return _run_eagerly(_apply_linear, spec)
