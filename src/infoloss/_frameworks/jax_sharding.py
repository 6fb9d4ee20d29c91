"""The JAX adapter of the vocabulary-parallel loss: :mod:`infoloss._generic.sharded` with
``jax.lax.pmax`` / ``jax.lax.psum`` over a named mesh axis (inside ``shard_map`` or ``pmap``).

Forward: one ``pmax`` of ``N`` values and one ``psum`` of ``3N`` to ``5N``; the row maxima are
held constant for automatic differentiation (the loss is exactly invariant to them), so
``jax.grad`` gives the analytic gradient and its only collective is the transpose of the
``psum`` (``O(N)``).
"""

from __future__ import annotations

from typing import Any

import jax
from array_api_compat import array_namespace

from .. import _reduce
from .._generic import sharded
from .._specs import CEOptions

__all__ = ["global_mean_psum", "vocab_parallel_ce"]


def vocab_parallel_ce(
    x: Any,
    y: Any,
    start: Any,
    *,
    axis_name: Any,
    num_classes: int,
    class_weights: Any,
    sample_weights: Any,
    options: CEOptions,
    reduction: str,
) -> Any:
    """The loss of the shard ``x`` ``(N, V_local)`` with labels ``y`` ``(N,)`` (traceable)."""
    xp = array_namespace(x)
    stats = sharded.shard_stats(
        xp,
        x,
        y,
        start=start,
        class_weights=class_weights,
        sharded_weights=False,
        options=options,
        constant=jax.lax.stop_gradient,
    )
    m_all = jax.lax.stop_gradient(jax.lax.pmax(stats.m_loc, axis_name))
    m = sharded.global_max(xp, m_all)
    summed = jax.lax.psum(sharded.shift(xp, stats, m), axis_name)
    f = sharded.finish(
        xp,
        summed,
        m,
        y,
        num_classes=num_classes,
        class_weights=class_weights,
        sharded_weights=False,
        sample_weights=sample_weights,
        options=options,
    )
    total = xp.sum(f.weight) if reduction == "mean" else None
    return _reduce.reduce(xp, f.loss, total, reduction)


def global_mean_psum(loss_sum: Any, weight_total: Any, axis_name: Any) -> Any:
    """Σ over the axis of the losses divided by Σ of the weight totals (0 over nothing)."""
    xp = array_namespace(loss_sum)
    num = jax.lax.psum(loss_sum, axis_name)
    den = jax.lax.psum(jax.lax.stop_gradient(weight_total), axis_name)
    return _reduce.safe_divide(xp, num, xp.astype(den, num.dtype))
