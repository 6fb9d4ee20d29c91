"""Information measures: information content, entropy, cross-entropy, KL and JS divergence.

Two families live here:

- measures of probability arrays (:func:`information`, :func:`entropy`, :func:`cross_entropy`,
  :func:`kl_divergence`, :func:`js_divergence`): inputs are probabilities along ``axis``; they are
  **not** renormalised, so pass distributions that sum to one;
- measures of distributions given by logits (:func:`softmax_entropy`,
  :func:`softmax_kl_divergence`), computed stably without forming probabilities first.

Every function accepts arrays of any Array API library and returns the caller's array type (a
0-d result is a 0-d array, also for NumPy). ``base=None`` measures in nats, ``base=2`` in bits.
The convention 0·log 0 = 0 holds throughout; nan in gives nan out.

Edges (docs/semantics.md, "Probability measures"): the masks that keep ``0·log 0`` out of a value
are applied to the *inputs* of the logarithms ("double where"), so that autodiff (torch autograd,
``jax.grad``) through these functions gives the true derivative wherever it is finite, also at
exact zeros: ``∂H(P,Q)/∂p_c = −log q_c`` and ``∂KL/∂q_c = 1`` at ``p_c = 0``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from array_api_compat import device

from . import _dispatch, _router
from ._utils import (
    Array,
    Namespace,
    _dtype_name,
    _is_ml_float,
    broadcast_pair,
    check_bool,
    check_probabilities,
    compute_dtype,
    in_base,
    log_base,
    namespace,
    normalize_axis,
    quiet_overflow,
    require_floating,
    upcast,
)
from .activations import _log_softmax
from .errors import InfolossError, InfolossTypeError

__all__ = [
    "cross_entropy",
    "entropy",
    "information",
    "js_divergence",
    "kl_divergence",
    "softmax_entropy",
    "softmax_kl_divergence",
]

_INF = float("inf")
_NAN = float("nan")


# --------------------------------------------------------------------------- helpers


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


def _result(xp: Namespace, out: Array, lb: float | None, dtype: Any) -> Array:
    """``out`` in ``base``, cast to ``dtype``; a NumPy scalar becomes a 0-d array."""
    out = upcast(xp, in_base(out, lb), dtype)
    if isinstance(out, np.generic):
        out = np.asarray(out)
    return out


def _invalid(p: Array) -> Array:
    """Entries that are not probabilities (negative, ±inf), elementwise; nan is not flagged."""
    return (p < 0) | (p == _INF)


def _one(p: Any) -> tuple[Namespace, Array, Any, bool]:
    xp, (p,) = namespace(("p", p))
    p = _as_prob(xp, p, "p")
    checked = check_probabilities(xp, p, "p")
    return xp, p, p.dtype, checked


def _two(p: Any, q: Any, axis: Any) -> tuple[Namespace, Array, Array, Any, int, bool]:
    xp, (p, q) = namespace(("p", p), ("q", q))
    p, q = _as_prob(xp, p, "p"), _as_prob(xp, q, "q")
    dtype = xp.result_type(p, q)
    p, q = broadcast_pair(xp, p, q, "p", "q")
    ax = normalize_axis(axis, p.ndim)
    checked = check_probabilities(xp, p, "p") & check_probabilities(xp, q, "q")
    cd = compute_dtype(xp, dtype)
    return xp, upcast(xp, p, cd), upcast(xp, q, cd), dtype, ax, checked


def _log_or_zero(xp: Namespace, p: Array) -> Array:
    """log p, with 0 where p = 0 (masked input: no warning, and a zero derivative there)."""
    return xp.log(xp.where(p == 0, xp.ones_like(p), p))


def _log_q(xp: Namespace, p: Array, q: Array) -> Array:
    """log q_c as the cross-entropy and KL terms use it: ``-inf`` where ``q_c = 0 < p_c``, 0 where
    ``p_c = q_c = 0`` (so that ``p_c · log q_c`` is 0 there) and nan where ``p_c`` is nan.

    Only the input of the logarithm is masked: the derivative of ``p · _log_q`` with respect to
    ``p`` is ``log q_c`` wherever that is finite, also at ``p_c = 0``, and with respect to ``q``
    it is ``p_c / q_c`` (0 at ``p_c = 0``) — never ``0 · inf``.
    """
    qz = q == 0
    at_zero = xp.where(p == 0, xp.zeros_like(q), xp.full_like(q, -_INF))
    return xp.where(qz, at_zero, xp.log(xp.where(qz, xp.ones_like(q), q)))


# Coefficients of f(u) = (1 + u) log1p(u) - u = Σ_{k≥2} (-1)^k u^k / (k (k - 1)), |u| < 0.05.
_SERIES = [(-1) ** k / (k * (k - 1)) for k in range(2, 14)]
_SMALL = 0.05


def _gen_kl_terms(xp: Namespace, p: Array, q: Array) -> Array:
    """Generalized KL terms ``p log(p/q) − p + q`` (``scipy.special.kl_div``), elementwise.

    Each term is mathematically ≥ 0 for any non-negative ``p``, ``q``; computed terms below 0
    (rounding) are set to 0, nan stays nan. Where ``q > 0`` and ``u = (p − q)/q`` is small the
    term is exactly ``q f(u)`` with ``f(u) = (1+u) log1p(u) − u`` from its series, so ``p ≈ q``
    keeps full relative accuracy (the textbook ``p log(p/q)`` loses every digit there).
    Elsewhere it is ``p log(p/q) + (q − p)``: ``q`` where ``p = 0``, ``+inf`` where
    ``q = 0 < p``; ``log(p/q)`` is the log of the quotient where that is a normal number (so tiny
    ``p`` and ``q`` keep full accuracy) and ``log p − log q`` where it would overflow. Only logarithm inputs are masked (see :func:`_log_q`), so autodiff gives
    ``∂/∂q = 1 − p/q`` (1 at ``p = 0``) and ``∂/∂p = log(p/q)`` where finite; at ``p = 0`` the
    derivative of ``p log p`` (``−inf``) is returned as 0, so ``∂/∂p = −log q − 1`` there.
    """
    pz, qz = p == 0, q == 0
    small = ~pz & ~qz & (xp.abs(p - q) < _SMALL * q)  # nan is never small
    zero, one = xp.zeros_like(p), xp.ones_like(q)
    us = xp.where(small, p - q, zero) / xp.where(small, q, one)  # u where small, else 0
    f = xp.zeros_like(us) + _SERIES[-1]
    for c in reversed(_SERIES[:-1]):
        f = f * us + c
    series = q * (f * us * us)
    log_ratio = _log_or_zero(xp, p) - _log_q(xp, p, q)  # +inf where q = 0 < p
    # where p/q is a normal number, log(p/q) of the (correctly rounded) quotient is accurate to an
    # ulp, while log p - log q of tiny numbers carries errors of ulp(log p); both inputs of the
    # division are masked, so no overflow and no inf in its derivative
    bound = 0.9 * math.log(float(xp.finfo(p.dtype).max))
    fair = ~pz & ~qz & (xp.abs(log_ratio) < bound)  # nan: not fair
    quotient = xp.where(fair, p, one) / xp.where(fair, q, one)
    log_ratio = xp.where(fair, xp.log(quotient), log_ratio)
    direct = p * log_ratio + (q - p)
    t = xp.where(small, series, direct)
    return xp.where(t < 0, xp.zeros_like(t), t)  # each term is >= 0: only rounding is clipped


def _nan_if_invalid(
    xp: Namespace, out: Array, arrays: tuple[Array, ...], axis: int | None, keepdims: bool
) -> Array:
    """nan for the slices holding a value that is not a probability (used when the values could
    not be checked, under tracing, where raising is impossible)."""
    bad = _invalid(arrays[0])
    for a in arrays[1:]:
        bad = bad | _invalid(a)
    if axis is not None:
        bad = xp.any(bad, axis=axis, keepdims=keepdims)
    return xp.where(bad, xp.full_like(out, _NAN), out)


# --------------------------------------------------------------------------- probability measures


@quiet_overflow
def information(p: Any, *, base: float | None = None) -> Array:
    r"""Information content (surprisal) of events with probability ``p``, elementwise.

    .. math::

        I(x) = -\log p(x)

    Parameters
    ----------
    p : array, any shape
        Probabilities in [0, 1].
    base : float, optional
        Logarithm base: ``None`` for nats, ``2`` for bits, ``10`` for hartleys.

    Returns
    -------
    array, same shape as ``p``
        ``I ≥ 0`` for ``p ≤ 1``; ``p = 0`` gives ``+inf`` (an impossible event carries unbounded
        information), with no warning; nan gives nan.

    Raises
    ------
    InfolossError
        If ``p`` holds a negative number or ``±inf`` (checked when the values can be read).

    Notes
    -----
    The less likely an event, the more information its occurrence carries: "the sun will not
    explode tomorrow" (p ≈ 1) carries almost none, "the sun will explode tomorrow" (p tiny) a lot.
    Entropy is the expected information content, :math:`H(P) = \sum_x p(x) I(x)`.

    Gradient (autodiff): :math:`-1/p`; at ``p = 0`` (value ``+inf``, derivative ``-inf``) it is
    returned as 0.

    Examples
    --------
    >>> from infoloss import information
    >>> information([0.5, 0.25, 1.0], base=2)
    array([1., 2., 0.])
    >>> float(information(0.0))
    inf
    """
    lb = log_base(base)
    xp, p, dtype, checked = _one(p)
    pc = upcast(xp, p, compute_dtype(xp, dtype))
    pz = pc == 0
    out = xp.where(pz, xp.full_like(pc, _INF), -_log_or_zero(xp, pc)) + 0.0  # no -0.0
    if not checked:
        out = _nan_if_invalid(xp, out, (pc,), None, False)
    return _result(xp, out, lb, dtype)


@quiet_overflow
def entropy(p: Any, *, axis: int = -1, base: float | None = None, keepdims: bool = False) -> Array:
    r"""Shannon entropy of the distributions in ``p`` along ``axis``.

    .. math::

        H(P) = -\sum_c p_c \log p_c, \qquad 0 \log 0 = 0

    Parameters
    ----------
    p : array, shape (..., C, ...)
        Probabilities along ``axis`` (finite, non-negative). They are not renormalised.
    axis : int, default -1
        The axis holding the outcomes (one integer; ``None`` and tuples are refused).
    base : float, optional
        ``None`` for nats, ``2`` for bits.
    keepdims : bool, default False
        Keep the reduced axis with length 1.

    Returns
    -------
    array, shape of ``p`` without ``axis``
        ``H ≥ 0`` for probabilities; ``H ≤ log C`` with equality for the uniform distribution.
        A nan in a distribution gives nan for it.

    Raises
    ------
    InfolossError
        If ``p`` holds a negative number or ``±inf`` (checked when the values can be read; under
        ``jax.jit`` such a distribution gives nan instead), or ``axis`` is not an integer in
        range.

    Notes
    -----
    :math:`H(P) = \sum_c p_c I(c)` is the expected information content. With cross-entropy and
    KL divergence it satisfies :math:`H(P, Q) = H(P) + D_{KL}(P \| Q)`.

    Gradient (autodiff): :math:`-(\log p_c + 1)`; at ``p_c = 0``, where it is ``+inf``, it is
    returned as 0.

    References
    ----------
    C. E. Shannon, "A Mathematical Theory of Communication", 1948.

    Examples
    --------
    >>> from infoloss import entropy
    >>> entropy([0.5, 0.5], base=2)
    array(1.)
    >>> entropy([[1.0, 0.0], [0.25, 0.75]])
    array([0.        , 0.56233514])
    """
    lb = log_base(base)
    kd = check_bool(keepdims, "keepdims")
    xp, p, dtype, checked = _one(p)
    ax = normalize_axis(axis, p.ndim)
    pc = upcast(xp, p, compute_dtype(xp, dtype))
    out = xp.sum(-pc * _log_or_zero(xp, pc), axis=ax, keepdims=kd) + 0.0  # -0.0 -> 0.0
    if not checked:
        out = _nan_if_invalid(xp, out, (pc,), ax, kd)
    return _result(xp, out, lb, dtype)


@quiet_overflow
def cross_entropy(
    p: Any, q: Any, *, axis: int = -1, base: float | None = None, keepdims: bool = False
) -> Array:
    r"""Cross-entropy of ``q`` relative to ``p`` along ``axis``.

    .. math::

        H(P, Q) = -\sum_c p_c \log q_c, \qquad 0 \log q = 0 \text{ (also for } q = 0)

    Parameters
    ----------
    p : array, shape (..., C, ...)
        The true distribution(s). Not renormalised.
    q : array, broadcastable with ``p``
        The predicted distribution(s). Not renormalised.
    axis : int, default -1
        The axis holding the outcomes (after broadcasting).
    base : float, optional
        ``None`` for nats, ``2`` for bits.
    keepdims : bool, default False
        Keep the reduced axis with length 1.

    Returns
    -------
    array, broadcast shape without ``axis``
        ``+inf`` where some ``p_c > 0`` has ``q_c = 0``; nan where ``p`` or ``q`` holds a nan.

    Raises
    ------
    InfolossError
        If ``p`` or ``q`` holds a negative number or ``±inf`` (see :func:`entropy`).

    Notes
    -----
    :math:`H(P, Q) = H(P) + D_{KL}(P \| Q)` for distributions: as :math:`H(P)` does not depend on
    the model, minimising cross-entropy over ``q`` minimises the KL divergence. For losses
    computed from logits use :func:`infoloss.softmax_cross_entropy`, which never forms ``log q``
    from ``q``.

    Gradients (autodiff): :math:`\partial/\partial p_c = -\log q_c` (also at ``p_c = 0``) and
    :math:`\partial/\partial q_c = -p_c/q_c` (0 at ``p_c = 0``). Where ``q_c = 0``: ``+inf``
    and 0 for ``p_c > 0`` (the value is ``+inf``), 0 and 0 for ``p_c = 0``.

    Examples
    --------
    >>> from infoloss import cross_entropy, entropy, kl_divergence
    >>> p, q = [0.5, 0.5], [0.9, 0.1]
    >>> float(cross_entropy(p, q, base=2))
    1.73696559416620
    >>> float(entropy(p, base=2) + kl_divergence(p, q, base=2))
    1.73696559416620
    """
    lb = log_base(base)
    kd = check_bool(keepdims, "keepdims")
    xp, p, q, dtype, ax, checked = _two(p, q, axis)
    out = xp.sum(-p * _log_q(xp, p, q), axis=ax, keepdims=kd) + 0.0
    if not checked:
        out = _nan_if_invalid(xp, out, (p, q), ax, kd)
    return _result(xp, out, lb, dtype)


@quiet_overflow
def kl_divergence(
    p: Any, q: Any, *, axis: int = -1, base: float | None = None, keepdims: bool = False
) -> Array:
    r"""Kullback–Leibler divergence (relative entropy) of ``q`` from ``p`` along ``axis``.

    .. math::

        D_{KL}(P \| Q) = \sum_c \Big( p_c \log \frac{p_c}{q_c} - p_c + q_c \Big)

    with :math:`0 \log(0/q) = 0` (also for :math:`q = 0`) and :math:`p \log(p/0) = +\infty`.
    This is the *generalized* KL divergence (``scipy.special.kl_div`` summed): for distributions
    (:math:`\sum p = \sum q = 1`) the mass terms cancel and it is the KL divergence
    :math:`\sum_c p_c \log(p_c/q_c)`; for other non-negative arrays (unnormalised measures,
    Keras-style elementwise targets) every term is still :math:`\ge 0`, so the result is a true
    divergence rather than a possibly negative number.

    Parameters
    ----------
    p, q : arrays, broadcastable, shape (..., C, ...)
        Distributions (or non-negative measures) along ``axis``. Not renormalised.
    axis : int, default -1
        The axis holding the outcomes (after broadcasting).
    base : float, optional
        ``None`` for nats, ``2`` for bits.
    keepdims : bool, default False
        Keep the reduced axis with length 1.

    Returns
    -------
    array, broadcast shape without ``axis``
        Never negative (each term is :math:`\ge 0`; only rounding below 0 is clipped);
        ``+inf`` where ``q`` misses mass of ``p``; nan where ``p`` or ``q`` holds a nan.

    Raises
    ------
    InfolossError
        If ``p`` or ``q`` holds a negative number or ``±inf`` (see :func:`entropy`).

    Notes
    -----
    Accurate when ``p ≈ q``: with :math:`u = (p - q)/q` each term equals :math:`q f(u)`,
    :math:`f(u) = (1+u)\log(1+u) - u`, which is evaluated by its series for :math:`|u| < 0.05`,
    so the result keeps full relative precision where the textbook formula loses every digit to
    cancellation (relative error about 1e-15 in float64). Because each term is non-negative, the
    sum never cancels, and arrays normalised in floating point (masses a few ulps from 1) do not
    shift the result by their mass difference. Not symmetric;
    :math:`H(P, Q) = H(P) + D_{KL}(P \| Q) + \sum p - \sum q`.

    Gradients (autodiff): :math:`\partial/\partial p_c = \log(p_c/q_c)` and
    :math:`\partial/\partial q_c = 1 - p_c/q_c`; at ``p_c = 0`` the latter is exactly 1 and the
    former (``-inf``) is returned as :math:`-\log q_c - 1` (the derivative of
    :math:`p \log p` counted as 0, as in :func:`entropy`).

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss import kl_divergence
    >>> float(kl_divergence([0.5, 0.5], [0.9, 0.1]))
    0.51082562376599
    >>> d = 2.0**-30  # q differs from p by 1e-9, both sum to exactly 1
    >>> p = np.array([0.25, 0.75]); q = np.array([0.25 + d, 0.75 - d])
    >>> float(kl_divergence(p, q))  # ≈ d² (1/0.25 + 1/0.75) / 2; the textbook formula gives 0.0
    2.312964630806203e-18
    >>> float(kl_divergence([1.0, 0.0], [0.0, 1.0]))
    inf
    >>> float(kl_divergence([0.8], [0.9]))  # not distributions: 0.8 log(0.8/0.9) - 0.8 + 0.9
    0.00577357147489...
    """
    lb = log_base(base)
    kd = check_bool(keepdims, "keepdims")
    xp, p, q, dtype, ax, checked = _two(p, q, axis)
    out = xp.sum(_gen_kl_terms(xp, p, q), axis=ax, keepdims=kd)
    if not checked:
        out = _nan_if_invalid(xp, out, (p, q), ax, kd)
    return _result(xp, out, lb, dtype)


@quiet_overflow
def js_divergence(
    p: Any, q: Any, *, axis: int = -1, base: float | None = None, keepdims: bool = False
) -> Array:
    r"""Jensen–Shannon divergence between ``p`` and ``q`` along ``axis``.

    .. math::

        D_{JS}(P, Q) = \tfrac12 D_{KL}(P \| M) + \tfrac12 D_{KL}(Q \| M), \qquad M = \tfrac12 (P + Q)

    Parameters
    ----------
    p, q : arrays, broadcastable, shape (..., C, ...)
        Distributions along ``axis``. Not renormalised.
    axis : int, default -1
        The axis holding the outcomes (after broadcasting).
    base : float, optional
        ``None`` for nats, ``2`` for bits (then ``0 ≤ D_JS ≤ 1``).
    keepdims : bool, default False
        Keep the reduced axis with length 1.

    Returns
    -------
    array, broadcast shape without ``axis``
        Symmetric, finite, between 0 and ``log 2``. Its square root is a metric (the
        Jensen–Shannon distance, as in :func:`scipy.spatial.distance.jensenshannon`). nan
        where ``p`` or ``q`` holds a nan.

    Raises
    ------
    InfolossError
        If ``p`` or ``q`` holds a negative number or ``±inf`` (see :func:`entropy`).

    Notes
    -----
    The two divergences are the generalized ones of :func:`kl_divergence`; their mass terms
    :math:`\sum (m - p) + \sum (m - q)` cancel exactly, so this is the usual JS divergence for
    any non-negative arrays. Each term is non-negative, and the mass terms also absorb, to first
    order, the rounding of :math:`M`.

    Examples
    --------
    >>> from infoloss import js_divergence
    >>> float(js_divergence([1.0, 0.0], [0.0, 1.0], base=2))
    1.0
    >>> float(js_divergence([0.5, 0.5], [0.9, 0.1]))
    0.1017...
    """
    lb = log_base(base)
    kd = check_bool(keepdims, "keepdims")
    xp, p, q, dtype, ax, checked = _two(p, q, axis)
    m = (p + q) / 2
    terms = _gen_kl_terms(xp, p, m) + _gen_kl_terms(xp, q, m)
    out = xp.sum(terms, axis=ax, keepdims=kd) / 2
    if not checked:
        out = _nan_if_invalid(xp, out, (p, q), ax, kd)
    return _result(xp, out, lb, dtype)


# --------------------------------------------------------------------------- measures from logits


def _logits_prepare(
    named: list[tuple[str, Any]], axis: int
) -> tuple[Namespace, list[Array], Any, int]:
    xp, arrays = namespace(*named)
    for (name, _), a in zip(named, arrays, strict=True):
        require_floating(xp, a, name)
    if len(arrays) == 2:
        a, b = arrays
        if tuple(a.shape) != tuple(b.shape):
            arrays = list(broadcast_pair(xp, a, b, named[0][0], named[1][0]))
    dtype = xp.result_type(*arrays)
    ax = normalize_axis(axis, arrays[0].ndim)
    if arrays[0].shape[ax] == 0:
        raise InfolossError(
            f"`{named[0][0]}` must have at least one class along `axis`={axis}; got shape {tuple(arrays[0].shape)}"
        )
    return xp, arrays, dtype, ax


@quiet_overflow
def _softmax_entropy(
    logits: Any,
    *,
    axis: int = -1,
    base: float | None = None,
    keepdims: bool = False,
    want_grad: bool = False,
) -> tuple[Array, Array | None]:
    lb = log_base(base)
    kd = check_bool(keepdims, "keepdims")
    xp, (x,), dtype, ax = _logits_prepare([("logits", logits)], axis)
    cd = compute_dtype(xp, dtype)
    if _router.fast_numpy(x):  # the one switch (_config.generic_only, INFOLOSS_DISABLE_FAST)
        return _softmax_entropy_fast(x, ax, lb, kd, want_grad)
    x = upcast(xp, x, cd)
    # a row with nan or +inf has nan log-probabilities (activations._lse_parts): nan value and
    # gradient; the masks below keep nan (q == 0 is False for nan)
    _, logq = _log_softmax(xp, x, ax)
    q = xp.exp(logq)
    logq_s = xp.where(q == 0, xp.zeros_like(logq), logq)
    h = -xp.sum(q * logq_s, axis=ax, keepdims=True) + 0.0
    grad = None
    if want_grad:
        grad = upcast(xp, in_base(-q * (logq_s + h), lb), dtype)
    if not kd:
        h = xp.squeeze(h, axis=ax)
    return _result(xp, h, lb, dtype), grad


def _softmax_entropy_fast(
    x: Any, ax: int, lb: float | None, keepdims: bool, want_grad: bool
) -> tuple[Array, Array | None]:
    k = _dispatch.kernels()
    assert k is not None
    scale = 1.0 if lb is None else 1.0 / lb
    h, g = k.softmax_entropy_rows(_dispatch.rows(x, ax), scale if want_grad else None)
    shape = tuple(x.shape[:ax]) + ((1,) if keepdims else ()) + tuple(x.shape[ax + 1 :])
    value = (np.asarray(h) * scale).astype(x.dtype).reshape(shape)
    grad = None if g is None else _dispatch.unrows(g, tuple(x.shape), ax)
    return value, grad  # a 0-d result stays a 0-d array, as on the generic path


def softmax_entropy(
    logits: Any, *, axis: int = -1, base: float | None = None, keepdims: bool = False
) -> Array:
    r"""Entropy of the softmax distribution of ``logits``, computed stably from the logits.

    .. math::

        H(\operatorname{softmax}(x)) = -\sum_c q_c \log q_c
        = \operatorname{logsumexp}(x) - \sum_c q_c x_c, \qquad q = \operatorname{softmax}(x)

    Parameters
    ----------
    logits : array, shape (..., C, ...)
        Logits; ``-inf`` marks a masked class (probability 0, contributes 0).
    axis : int, default -1
        The class axis.
    base : float, optional
        ``None`` for nats, ``2`` for bits.
    keepdims : bool, default False
        Keep the reduced axis with length 1.

    Returns
    -------
    array, shape of ``logits`` without ``axis``
        Between 0 and ``log C``. An all ``-inf`` row gives 0.

    Notes
    -----
    The gradient (see :func:`infoloss.value_and_grad`) is
    :math:`\partial H / \partial x_j = -q_j (\log q_j + H)`. Used for uncertainty estimates and
    entropy regularisation.

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss import softmax_entropy
    >>> float(softmax_entropy(np.zeros(4), base=2))  # uniform over 4 classes: 2 bits
    2.0
    >>> float(softmax_entropy(np.array([0.0, -np.inf])))
    0.0
    """
    return _softmax_entropy(logits, axis=axis, base=base, keepdims=keepdims)[0]


@quiet_overflow
def _softmax_kl_divergence(
    p_logits: Any,
    q_logits: Any,
    *,
    axis: int = -1,
    base: float | None = None,
    keepdims: bool = False,
    want_grad: bool = False,
) -> tuple[Array, tuple[Array, Array] | None]:
    lb = log_base(base)
    kd = check_bool(keepdims, "keepdims")
    xp, (a, b), dtype, ax = _logits_prepare([("p_logits", p_logits), ("q_logits", q_logits)], axis)
    cd = compute_dtype(xp, dtype)
    if _router.fast_numpy(a, b) and a.dtype == b.dtype:
        return _softmax_kl_fast(a, b, ax, lb, kd, want_grad)
    kl, grads = _softmax_kl_generic(xp, upcast(xp, a, cd), upcast(xp, b, cd), ax, want_grad)
    if grads is not None:
        grads = (upcast(xp, in_base(grads[0], lb), dtype), upcast(xp, in_base(grads[1], lb), dtype))
    if not kd:
        kl = xp.squeeze(kl, axis=ax)
    return _result(xp, kl, lb, dtype), grads


def _first_argmax(xp: Namespace, x: Array, ax: int) -> Array:
    """Boolean mask of the first maximum of ``x`` along ``ax`` (one True per slice)."""
    idx = xp.argmax(x, axis=ax, keepdims=True)
    shape = [1] * x.ndim
    shape[ax] = x.shape[ax]
    pos = xp.reshape(xp.arange(x.shape[ax], device=device(x)), tuple(shape))
    return pos == idx


def _at(xp: Namespace, hot: Array, v: Array, ax: int) -> Array:
    """``v`` at the True position of ``hot`` (keepdims), by a masked sum (differentiable)."""
    return xp.sum(xp.where(hot, v, xp.zeros_like(v)), axis=ax, keepdims=True)


def _softmax_kl_generic(
    xp: Namespace, a: Array, b: Array, ax: int, want_grad: bool
) -> tuple[Array, tuple[Array, Array] | None]:
    """KL(softmax(a) ‖ softmax(b)) with keepdims, and optionally its gradients.

    With ``d = log p − log q`` and ``*`` the most probable class of ``p`` (the first maximum of
    ``a``), ``KL = Σ p d = d* + Σ p (d − d*)`` (as Σ p = 1) and ``∂KL/∂a = p (d − KL) =
    p ((d − d*) − Σ p (d − d*))``. The differences ``d_c − d* = (a_c − a*) − (b_c − b*)`` are
    formed from the logits, never from log-probabilities: with logits spread over 1e4 in float32,
    log-probabilities of size 1e4 carry absolute errors of 1e-3, and ``d − KL`` for the dominant
    class (where p ≈ 1 and d ≈ KL) would keep only those errors (the former ``p (d − raw)`` was
    2% off). Here ``d* − d*`` is exactly 0 and the other differences are accurate to a few ulps
    of the logit differences.

    Special values: a row with nan or ``+inf`` in ``a`` or ``b`` has nan log-probabilities
    (contract of ``activations._log_softmax``), so nan flows into the value; a zero-valued
    carrier term makes the autodiff gradients of such a row nan for every logit of ``a`` and
    ``b``, and the analytic gradients are set to nan there. ``q_c = 0 < p_c`` gives ``+inf``
    (the ``a`` gradient of such a row is nan, ``b``'s is ``q − p``). Classes with ``p_c = 0``
    contribute 0; a row with no distribution in ``a`` gives 0. Only masked inputs enter the
    arithmetic: no ``inf − inf``, no warnings, no ``0 · inf`` in autodiff.
    """
    _, lp = _log_softmax(xp, a, ax)
    _, lq = _log_softmax(xp, b, ax)
    p = xp.exp(lp)
    zero = xp.zeros_like(a)
    bad = xp.any(~(a < _INF), axis=ax, keepdims=True) | xp.any(~(b < _INF), axis=ax, keepdims=True)
    a0, b0 = xp.where(bad, zero, a), xp.where(bad, zero, b)  # finite or -inf from here on
    hot = _first_argmax(xp, a0, ax)
    a_star = xp.max(a0, axis=ax, keepdims=True)
    a_star = xp.where(a_star == -_INF, xp.zeros_like(a_star), a_star)  # no distribution in a
    b_star = _at(xp, hot, b0, ax)
    b_star = xp.where(b_star == -_INF, xp.zeros_like(b_star), b_star)  # then d* = +inf below
    live = p > 0  # False for nan (bad rows)
    da = xp.where(live, a0, a_star) - a_star  # a_c - a*, 0 where p_c = 0
    db = xp.where(live, b0, b_star) - b_star  # b_c - b*, -inf where q_c = 0 < p_c
    dd = da - db  # d_c - d*: finite, or +inf where q_c = 0 < p_c
    rest = xp.sum(p * dd, axis=ax, keepdims=True)  # Σ p (d - d*): >= 0 or +inf (nan in bad rows)
    lp_star, lq_star = _at(xp, hot, lp, ax), _at(xp, hot, lq, ax)
    has_p = ~(xp.exp(lp_star) == 0)  # p* > 0, or nan
    d_star = xp.where(has_p, lp_star, xp.zeros_like(lp_star)) - xp.where(
        has_p, lq_star, xp.zeros_like(lq_star)
    )  # +inf where q* = 0 < p*; 0 for a row with no distribution in a
    kl = d_star + rest
    # 0 in good rows, nan in bad ones, with a nan derivative with respect to every logit of a bad
    # row: the sanitising where() above cut the bad rows out of autodiff, this puts them back
    carrier = xp.where(bad, xp.full_like(kl, _NAN), xp.zeros_like(kl))
    a_f = xp.where((a == -_INF) & ~bad, zero, a)  # masked classes of good rows: 0 * 0
    b_f = xp.where((b == -_INF) & ~bad, zero, b)
    kl = kl + xp.sum((a_f + b_f) * carrier, axis=ax, keepdims=True)
    kl = xp.where(kl < 0, xp.zeros_like(kl), kl)  # rounding only; nan stays nan
    if not want_grad:
        return kl, None
    inf_row = (d_star == _INF) | (rest == _INF)
    no_a = inf_row | bad
    dd_s = xp.where(no_a, zero, dd)
    rest_s = xp.where(no_a, xp.zeros_like(rest), rest)
    ga = xp.where(no_a, xp.full_like(a, _NAN), p * (dd_s - rest_s))
    # q - p; where either is >= 1/2 as (q - 1) - (p - 1) = expm1(log q) - expm1(log p), so that
    # p ≈ q ≈ 1 does not cancel to the rounding of p and q (float32: 600 ulps of a 1e-3 gradient)
    q = xp.exp(lq)
    big = (p >= 0.5) | (q >= 0.5)
    lp_b = xp.where(big, lp, zero)
    lq_b = xp.where(big, lq, zero)
    gb = xp.where(big, xp.expm1(lq_b) - xp.expm1(lp_b), q - p)
    gb = xp.where(bad, xp.full_like(b, _NAN), gb)
    return kl, (ga, gb)


def _softmax_kl_fast(
    a: Any, b: Any, ax: int, lb: float | None, keepdims: bool, want_grad: bool
) -> tuple[Array, tuple[Array, Array] | None]:
    k = _dispatch.kernels()
    assert k is not None
    scale = 1.0 if lb is None else 1.0 / lb
    kl, ga, gb = k.softmax_kl_rows(
        _dispatch.rows(a, ax), _dispatch.rows(b, ax), scale if want_grad else None
    )
    shape = tuple(a.shape[:ax]) + ((1,) if keepdims else ()) + tuple(a.shape[ax + 1 :])
    value = (np.asarray(kl) * scale).astype(a.dtype).reshape(shape)
    grads = None
    if want_grad:
        grads = (_dispatch.unrows(ga, tuple(a.shape), ax), _dispatch.unrows(gb, tuple(a.shape), ax))
    return value, grads  # a 0-d result stays a 0-d array, as on the generic path


def softmax_kl_divergence(
    p_logits: Any,
    q_logits: Any,
    *,
    axis: int = -1,
    base: float | None = None,
    keepdims: bool = False,
) -> Array:
    r"""KL divergence between the softmax distributions of two sets of logits.

    .. math::

        D_{KL}(P \| Q) = \sum_c p_c (\log p_c - \log q_c), \qquad
        p = \operatorname{softmax}(a), \; q = \operatorname{softmax}(b)

    computed from log-softmaxes, never from probabilities.

    Parameters
    ----------
    p_logits : array, shape (..., C, ...)
        Logits ``a`` of the reference distribution P (the teacher in distillation).
    q_logits : array, broadcastable with ``p_logits``
        Logits ``b`` of the approximating distribution Q (the student being fitted).
    axis : int, default -1
        The class axis.
    base : float, optional
        ``None`` for nats, ``2`` for bits.
    keepdims : bool, default False
        Keep the reduced axis with length 1.

    Returns
    -------
    array, broadcast shape without ``axis``
        Never negative. Classes with ``p_c = 0`` (``a_c = -inf``) contribute 0; ``p_c > 0`` with
        ``b_c = -inf`` gives ``+inf``.

    Notes
    -----
    Gradients (see :func:`infoloss.value_and_grad`):
    :math:`\partial D / \partial a_j = p_j(\log p_j - \log q_j - D)` and
    :math:`\partial D / \partial b_j = q_j - p_j`.

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss import softmax_kl_divergence, kl_divergence, softmax
    >>> a, b = np.array([2.0, 0.0, -1.0]), np.array([0.0, 1.0, 0.0])
    >>> float(softmax_kl_divergence(a, b))
    0.91298289781978
    >>> float(kl_divergence(softmax(a), softmax(b)))
    0.91298289781978
    """
    return _softmax_kl_divergence(p_logits, q_logits, axis=axis, base=base, keepdims=keepdims)[0]
