"""Generic log-sum-exp, softmax, log-softmax, sigmoid and softplus (see ``docs/semantics.md``)."""

from __future__ import annotations

from .._specs import RowOp
from .._utils import Array, Namespace, upcast

_INF = float("inf")
_NAN = float("nan")


def lse_parts(xp: Namespace, x: Array, axis: int) -> tuple[Array, Array, Array]:
    """``(m, log s, has_mass)`` with keepdims, where logsumexp(x) = m + log s.

    ``m`` is the maximum and ``s = Σ exp(x - m)``. Keeping the two parts apart lets callers form
    ``(x - m) - log s`` rather than ``x - lse``: with logits of 1e30 in float32,
    ``lse = m + log 2`` rounds to ``m`` and the ``log 2`` would be lost.

    ``log s`` is ``log1p((k - 1) + r)`` with ``k`` the number of entries equal to the maximum and
    ``r`` the sum of the other exponentials, so that tiny terms survive (logsumexp([0, -40]) is
    4.25e-18, not 0) and so does the target gradient ``q_y - 1`` of a confident prediction.

    Special values: a slice with no distribution (all ``-inf``) has ``m = 0``, ``log s = 0`` and
    ``has_mass`` False (never a warning); a slice holding nan or ``+inf`` has ``m = nan``, so that
    everything computed from it is nan (a diverging model must see nan). :func:`lse` turns the
    ``+inf`` case back into ``+inf``, which is the log-sum-exp's true value there.
    """
    m = xp.max(x, axis=axis, keepdims=True)
    m = xp.where(m == -_INF, xp.zeros_like(m), xp.where(m == _INF, xp.full_like(m, _NAN), m))
    at_max = xp.astype(x == m, x.dtype)
    k = xp.sum(at_max, axis=axis, keepdims=True)
    # exp(x − m) − 1 is exactly 0 at a maximum, so r has the same value as the sum over the other
    # entries; written this way every entry keeps its derivative exp(x − m) to all orders (a
    # select would make a tied maximum's term a constant 1: wrong second derivatives at ties)
    r = xp.sum(xp.exp(x - m) - at_max, axis=axis, keepdims=True)
    empty = (k == 0) & (r == 0)
    ls = xp.where(empty, xp.zeros_like(r), xp.log1p(xp.where(empty, xp.zeros_like(r), (k - 1) + r)))
    return m, ls, ~empty


def lse(xp: Namespace, x: Array, axis: int) -> Array:
    """log Σ exp(x) along ``axis`` with keepdims: −inf for an all −inf slice, +inf for a slice
    with a +inf entry, nan for a slice with a nan; no warnings."""
    m, ls, has_mass = lse_parts(xp, x, axis)
    out = xp.where(has_mass, m + ls, xp.full_like(ls, -_INF))
    has_inf = xp.any(x == _INF, axis=axis, keepdims=True)
    has_nan = xp.any(xp.isnan(x), axis=axis, keepdims=True)
    return xp.where(has_inf & ~has_nan, xp.full_like(out, _INF), out)


def log_softmax(xp: Namespace, x: Array, axis: int) -> Array:
    """Log-probabilities: −inf for an all −inf slice, nan for a slice with nan or +inf."""
    m, ls, _ = lse_parts(xp, x, axis)
    return (x - m) - ls


def softplus(xp: Namespace, x: Array) -> Array:
    """log(1 + exp(x)) without overflow; differentiable everywhere (also at 0 and ±inf)."""
    pos = x > 0
    t = xp.log1p(xp.exp(xp.where(pos, -x, x)))  # exp of a non-positive number: never overflows
    return xp.where(pos, x + t, t)


def sigmoid(xp: Namespace, x: Array) -> Array:
    """1 / (1 + exp(-x)) without overflow."""
    e = xp.exp(xp.where(x > 0, -x, x))  # exp(-|x|) in (0, 1]
    return xp.where(x > 0, 1 / (1 + e), e / (1 + e))


def softcap(xp: Namespace, x: Array, c: float) -> tuple[Array, Array]:
    """``c·tanh(x/c)`` (±inf kept: −inf still masks a class, +inf still gives nan) and its
    derivative ``1 − tanh²(x/c) = 4e / (1 + e)²`` with ``e = exp(−2|x|/c)`` (no cancellation)."""
    z = x / c
    inf = xp.isinf(x)
    capped = xp.where(inf, x, c * xp.tanh(xp.where(inf, xp.zeros_like(z), z)))
    e = xp.exp(-2 * xp.abs(z))
    return capped, 4 * e / ((1 + e) * (1 + e))


def row_op(spec: RowOp) -> Array:
    """``spec.op`` along ``spec.axis`` in the compute dtype, returned in the input's dtype."""
    xp, ax = spec.xp, spec.axis
    x = upcast(xp, spec.x, spec.compute_dtype)
    if spec.op == "logsumexp":
        out = lse(xp, x, ax)
        if not spec.keepdims:
            out = xp.squeeze(out, axis=ax)
    elif spec.op == "log_softmax":
        out = log_softmax(xp, x, ax)
    else:
        out = xp.exp(log_softmax(xp, x, ax))
    return upcast(xp, out, spec.x.dtype)
