"""Sparse softmax cross-entropy of logits sharded along the class axis (``docs/distributed.md``).

The definition of :func:`infoloss.sparse_softmax_cross_entropy` split into what one shard can
compute from its own columns ``[start, start + V_local)`` and what needs the whole row, so that a
transport (``torch.distributed``, ``jax.lax.pmax``/``psum``) only ever moves per-row values:

1. :func:`shard_stats` — local per-row statistics: the local maximum, and relative to a local
   reference ``m_ref`` the count ``k`` of entries equal to it and the sum ``r`` of the other
   exponentials (the two parts of :func:`~infoloss._generic.activations.lse_parts`), the target
   logit when this shard owns the target (else 0), and for label smoothing
   ``T = Σ_c w_c (m_ref - x_c)``;
2. **MAX** of the local maxima over the shards (``nan`` is sent as ``+inf`` so that every
   transport propagates it);
3. :func:`shift` — the local statistics rebased on the global maximum ``m``, stacked into one
   ``(P, N)`` array; 4. **SUM** of it over the shards;
5. :func:`finish` — per-row losses, their weights in a mean and the gradient's row coefficients;
6. :func:`shard_grad` — the gradient of the sum with respect to this shard's logits (no
   communication).

All of it is Array API code on ``(N, V_local)`` rows (classes last), any namespace.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from array_api_compat import device, is_torch_namespace

from .._specs import CEOptions
from .._utils import Array, Namespace

__all__ = ["Finished", "LocalStats", "finish", "shard_grad", "shard_stats", "shift"]

_INF = float("inf")
_NAN = float("nan")


def _identity(a: Array) -> Array:
    return a


@dataclass(frozen=True)
class LocalStats:
    """One shard's per-row statistics (see the module docstring); ``(N,)`` arrays."""

    m_loc: Array  # local maximum, nan/+inf rows as +inf, empty shard -inf: what MAX reduces
    m_ref: Array  # the finite reference the other statistics are relative to
    k: Array  # number of entries equal to m_ref
    r: Array  # Σ exp(x - m_ref) over the other entries
    x_y: Array  # the target logit where this shard owns it, else 0
    owned: Array  # bool: this shard holds the target (and the example is not ignored)
    t: Array | None  # Σ_c w_c (m_ref - x_c) with label smoothing, else None
    w_sum: Any  # Σ_c w_c over this shard's classes (w = 1 without class weights)
    cw_y: Array | None  # the target's class weight where owned (sharded class weights), else None


def _unmasked(xp: Namespace, x: Array, coef: Array) -> Array:
    return xp.where((x == -_INF) & (coef == 0), xp.zeros_like(x), x)


def _columns(xp: Namespace, cw: Array, start: Any, width: int) -> Array:
    """``cw[start : start + width]``, also for a traced ``start`` (``jax.lax.axis_index``)."""
    if isinstance(start, int):
        return cw[start : start + width]
    return xp.take(cw, xp.arange(width) + start)  # (on the default device: traced code)


def local_index(xp: Namespace, y: Array, start: Any, width: int, valid: Array | None) -> Array:
    """Whether each (global) label falls in ``[start, start + width)``, not ignored."""
    owned = (y >= start) & (y < start + width)
    return owned if valid is None else owned & valid


def shard_stats(
    xp: Namespace,
    x: Array,
    y: Array,
    *,
    start: Any,
    class_weights: Array | None,
    sharded_weights: bool,
    options: CEOptions,
    constant: Callable[[Array], Array] = _identity,
) -> LocalStats:
    """Local statistics of the shard ``x`` ``(N, V_local)`` for global labels ``y`` ``(N,)``.

    ``class_weights`` are this shard's slice ``(V_local,)`` (``sharded_weights``: the target's
    weight then comes from the owner through the SUM) or the global vector. ``constant`` marks
    the row maximum as a constant for automatic differentiation (``jax.lax.stop_gradient``):
    every statistic is exactly invariant to the reference it is taken against, so the
    derivative of the loss is then the analytic one.
    """
    n, width = int(x.shape[0]), int(x.shape[-1])
    valid = (y != options.ignore_index) if options.ignore_index is not None else None
    owned = local_index(xp, y, start, width, valid)
    eps = options.label_smoothing
    cw = class_weights
    cw_loc = None
    if cw is not None:
        cw_loc = cw if sharded_weights else _columns(xp, cw, start, width)
    if width == 0:
        zeros = xp.zeros((n,), dtype=x.dtype, device=device(x))
        return LocalStats(
            m_loc=zeros - _INF,
            m_ref=zeros,
            k=zeros,
            r=zeros,
            x_y=zeros,
            owned=owned,
            t=zeros if eps > 0 else None,
            w_sum=0.0,
            cw_y=zeros if sharded_weights and cw is not None else None,
        )
    m = constant(xp.max(x, axis=-1))
    m_loc = xp.where(xp.isnan(m), xp.full_like(m, _INF), m)  # max propagates nan (Array API)
    m_ref = xp.where((m_loc == -_INF) | (m_loc == _INF), xp.zeros_like(m), m_loc)
    mr = m_ref[:, None]
    at = x == mr
    e = xp.exp(x - mr)
    if constant is _identity:  # no automatic differentiation: a count
        k = xp.sum(xp.astype(at, x.dtype), axis=-1)
    else:  # Σ exp(0) = k exactly, and automatic differentiation sees every exponential
        k = xp.sum(xp.where(at, e, 0.0), axis=-1)
    r = xp.sum(xp.where(at, 0.0, e), axis=-1)
    idx = xp.where(owned, y - start, xp.zeros_like(y))
    if is_torch_namespace(xp) and idx.dtype != xp.int64:
        idx = xp.astype(idx, xp.int64)
    x_y = xp.where(owned, xp.take_along_axis(x, idx[:, None], axis=-1)[:, 0], xp.zeros_like(m))
    cw_y = None
    if sharded_weights and cw_loc is not None:
        cw_y = xp.where(owned, xp.take(cw_loc, idx), xp.zeros_like(m))
    t = None
    if eps > 0:
        if cw_loc is None:
            t = xp.sum(mr - x, axis=-1)
        else:
            t = xp.sum(cw_loc * (mr - _unmasked(xp, x, cw_loc)), axis=-1)
    w_sum: Any = float(width) if cw_loc is None else xp.sum(cw_loc)
    return LocalStats(m_loc, m_ref, k, r, x_y, owned, t, w_sum, cw_y)


def global_max(xp: Namespace, m_all: Array) -> Array:
    """The reduced maximum as the reference of the row: 0 for a row with no distribution (all
    -inf), nan for a row holding nan or +inf (as :func:`lse_parts`)."""
    return xp.where(
        m_all == -_INF,
        xp.zeros_like(m_all),
        xp.where(m_all == _INF, xp.full_like(m_all, _NAN), m_all),
    )


def shift(xp: Namespace, s: LocalStats, m: Array) -> Array:
    """The local statistics rebased on the global reference ``m`` (from :func:`global_max`),
    stacked as rows ``[k, r, x_y, (T), (cw_y), (Σw)]`` for one SUM over the shards: ``T`` with
    label smoothing, ``cw_y`` with sharded class weights, ``Σw`` with both."""
    same = s.m_ref == m
    none = (s.k == 0) & (s.r == 0)
    # entries below the global maximum: all of them go into r, scaled by exp(m_ref - m) <= 1
    scaled = xp.where(
        none, xp.zeros_like(s.r), (s.k + s.r) * xp.exp(xp.where(none, m, s.m_ref) - m)
    )
    k = xp.where(same, s.k, xp.zeros_like(s.k))
    r = xp.where(same, s.r, scaled)
    rows = [k, r, s.x_y]
    if s.t is not None:
        rows.append(s.t + (m - s.m_ref) * s.w_sum)
    if s.cw_y is not None:
        rows.append(s.cw_y)
        if s.t is not None:  # Σ_c w_c over the global vocabulary, for the smoothing term
            rows.append(xp.zeros_like(m) + s.w_sum)
    return xp.stack(rows)


@dataclass(frozen=True)
class Finished:
    """Per-row results once the SUM is known; ``(N,)`` arrays."""

    loss: Array  # ℓ_i, 0 for ignored examples
    weight: Array  # W_i, the example's weight in a mean
    m: Array
    ls: Array  # log Σ exp(x - m)
    x_y: Array
    rowf: Array  # the row's total target mass plus 2 z lse: the factor of softmax in the gradient
    cy: Array  # (1 - eps) w_y: the target's coefficient in the gradient
    valid: Array | None


def finish(
    xp: Namespace,
    summed: Array,
    m: Array,
    y: Array,
    *,
    num_classes: int,
    class_weights: Array | None,
    sharded_weights: bool,
    sample_weights: Array | None,
    options: CEOptions,
) -> Finished:
    """Per-row loss, weight and gradient coefficients from the summed statistics ``summed``
    (:func:`shift`'s layout) of ``C = num_classes`` global classes."""
    eps, z, c = options.label_smoothing, options.z_loss, num_classes
    valid = (y != options.ignore_index) if options.ignore_index is not None else None
    k, r, x_y = summed[0, ...], summed[1, ...], summed[2, ...]
    nxt = 3
    t = None
    if eps > 0:
        t, nxt = summed[nxt, ...], nxt + 1
    cw = class_weights
    if cw is None:
        cw_y, cw_sum = None, None
    elif sharded_weights:
        cw_y = summed[nxt, ...]
        cw_sum = summed[nxt + 1, ...] if eps > 0 else 0.0
    else:
        idx = y if valid is None else xp.where(valid, y, xp.zeros_like(y))
        if is_torch_namespace(xp) and idx.dtype != xp.int64:
            idx = xp.astype(idx, xp.int64)
        cw_y, cw_sum = xp.take(cw, idx), xp.sum(cw)
    empty = (k == 0) & (r == 0)
    ls = xp.where(empty, xp.zeros_like(r), xp.log1p(xp.where(empty, xp.zeros_like(r), (k - 1) + r)))
    if cw_y is None:
        coef = 1 - eps
        ce = coef * ((m - x_y) + ls) if eps < 1 else 0 * ls
    else:
        coef = (1 - eps) * cw_y
        ce = coef * ((m - _unmasked(xp, x_y, coef)) + ls)
    if t is not None:
        ce = ce + (eps / c) * (t + ls * (float(c) if cw_sum is None else cw_sum))
    w = xp.ones_like(ce) if cw_y is None else cw_y
    mass = (1 - eps) * w + (eps if cw_sum is None else eps / c * cw_sum)
    lse = m + ls
    loss = ce + z * lse * lse if z != 0 else ce
    rowf = mass + 2 * z * lse if z != 0 else mass
    if sample_weights is not None:
        loss, w = loss * sample_weights, w * sample_weights
    if valid is not None:
        loss = xp.where(valid, loss, xp.zeros_like(loss))
        w = xp.where(valid, w, xp.zeros_like(w))
    cy = (1 - eps) * (xp.ones_like(lse) if cw_y is None else cw_y)
    return Finished(loss, w, m, ls, x_y, rowf, cy, valid)


def shard_grad(
    xp: Namespace,
    x: Array,
    y: Array,
    f: Finished,
    *,
    start: Any,
    num_classes: int,
    class_weights: Array | None,
    sharded_weights: bool,
    sample_weights: Array | None,
    options: CEOptions,
    row_scale: Array | float,
) -> Array:
    """d(Σ_i g_i ℓ_i) / d x for this shard's logits ``x`` ``(N, V_local)``, ``g`` = ``row_scale``
    (a number, or one value per row: the reduction's factor times the incoming gradient)."""
    eps, c = options.label_smoothing, num_classes
    width = int(x.shape[-1])
    if width == 0:
        return xp.zeros_like(x)
    # the per-row factor (reduction, incoming gradient, sample weight) folded into the row's
    # coefficients, so that the (N, V_local) array is swept as few times as possible
    sc = row_scale if sample_weights is None else sample_weights * row_scale
    if isinstance(sc, (int, float)):
        sc = xp.full_like(f.m, float(sc))
    elif sc.ndim == 0:
        sc = xp.zeros_like(f.m) + sc
    m, ls = f.m[:, None], f.ls[:, None]
    g = (f.rowf * sc)[:, None] * xp.exp((x - m) - ls)
    owned = local_index(xp, y, start, width, f.valid)
    idx = xp.where(owned, y - start, xp.full_like(y, -1))
    onehot = idx[:, None] == xp.arange(width, device=device(x), dtype=idx.dtype)
    # the target's rowf·q_y − cy as rowf·expm1(log q_y) + (rowf − cy) (accurate when q_y ≈ 1)
    g_y = (f.rowf * xp.expm1((f.x_y - f.m) - f.ls) + (f.rowf - f.cy)) * sc
    g = xp.where(onehot, g_y[:, None], g)
    if eps > 0:
        cw = class_weights
        if cw is None:
            g = g - ((eps / c) * sc)[:, None]
        else:
            w_loc = cw if sharded_weights else _columns(xp, cw, start, width)
            g = g - sc[:, None] * ((eps / c) * w_loc)
    if f.valid is not None:
        g = xp.where(f.valid[:, None], g, 0.0)
    return g
