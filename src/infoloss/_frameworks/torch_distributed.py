"""The ``torch.distributed`` adapter: vocabulary-parallel cross-entropy under autograd.

The definition is :mod:`infoloss._generic.sharded` (Array API code on one shard); this module
runs it on torch tensors inside :class:`torch.autograd.Function` s and moves the per-row values
between the ranks with ``torch.distributed`` collectives (any backend: gloo, NCCL, ...):

- one ``all_gather`` of a few integers per rank (shard widths, dtypes, options, a label checksum:
  :mod:`infoloss._validate_sharded` checks them), once per call;
- forward: one ``all_reduce(MAX)`` of ``N`` values and one ``all_reduce(SUM)`` of ``3N`` to ``6N``
  values (``N`` the number of rows); never anything of size ``N × V``;
- backward: nothing for :class:`VocabParallelCE`; one ``all_reduce(SUM)`` of ``d_hidden``
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

from .. import _reduce
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


def _stats(xp: Any, spec: VocabParallelCE, x: torch.Tensor, y: torch.Tensor) -> Any:
    assert spec.vocab_start is not None
    return sharded.shard_stats(
        xp,
        x,
        y,
        start=spec.vocab_start,
        class_weights=spec.class_weights,
        sharded_weights=spec.sharded_weights,
        options=spec.options,
    )


def _combine(xp: Any, spec: VocabParallelCE, stats: Any, y: torch.Tensor, sw: Any) -> Any:
    """The two forward all-reduces and the per-row results."""
    m_all = spec.group.all_reduce(stats.m_loc.clone(), "max")
    m = sharded.global_max(xp, m_all)
    summed = spec.group.all_reduce(sharded.shift(xp, stats, m), "sum")
    return sharded.finish(
        xp,
        summed,
        m,
        y,
        num_classes=spec.num_classes,
        class_weights=spec.class_weights,
        sharded_weights=spec.sharded_weights,
        sample_weights=sw,
        options=spec.options,
    )


def _value(xp: Any, spec: VocabParallelCE, loss: torch.Tensor, weight: torch.Tensor) -> Any:
    total = xp.sum(weight) if spec.reduction == "mean" else None
    return _reduce.reduce(xp, loss, total, spec.reduction), total


def _row_scale(spec: VocabParallelCE, grad_value: torch.Tensor, total: Any) -> Any:
    """The factor of each row's gradient: the incoming gradient times the reduction's 1 / Σ W."""
    gv = grad_value.detach().to(spec.compute_dtype)
    if spec.reduction == "none":
        return gv.reshape(-1)
    if spec.reduction == "mean":
        return _reduce.safe_divide(torch, gv, total)
    return gv


def _grad(xp: Any, spec: VocabParallelCE, x: Any, y: Any, f: Any, scale: Any, sw: Any) -> Any:
    assert spec.vocab_start is not None
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
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_value: torch.Tensor) -> tuple[Any, None]:
        (logits,) = ctx.saved_tensors
        spec: VocabParallelCE = ctx.spec
        xp = array_namespace(logits)
        x = logits.detach()
        x = x.to(spec.compute_dtype) if x.dtype != spec.compute_dtype else x
        x = x.reshape(int(spec.labels.shape[0]), spec.width)
        scale = _row_scale(spec, grad_value, ctx.total)
        g = _grad(xp, spec, x, spec.labels, ctx.f, scale, spec.sample_weights)
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
    return _VocabParallelCE.apply(spec.logits, spec)


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
        return value.to(hidden.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_value: torch.Tensor) -> tuple[Any, ...]:
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


def _apply_linear(spec: VocabParallelCE) -> torch.Tensor:
    return _VocabParallelLinearCE.apply(spec.hidden, spec.weight, spec.bias, spec)


def vocab_parallel_linear_ce(spec: VocabParallelCE) -> torch.Tensor:
    """The vocabulary-parallel loss of ``hidden @ weight_shard.T + bias_shard`` (differentiable
    with respect to all three)."""
    return _run_eagerly(_apply_linear, spec)
