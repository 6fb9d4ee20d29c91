"""Information measures: information content, entropy, cross-entropy, KL and JS divergence.

Two families live here:

- measures of probability arrays (:func:`information`, :func:`entropy`, :func:`cross_entropy`,
  :func:`kl_divergence`, :func:`js_divergence`): inputs are probabilities along ``axis``; they are
  **not** renormalised, so pass distributions that sum to one;
- measures of distributions given by logits (:func:`softmax_entropy`,
  :func:`softmax_kl_divergence`), computed stably without forming probabilities first.

Every function accepts arrays of any Array API library and returns the caller's array type.
``base=None`` measures in nats, ``base=2`` in bits. The convention 0·log 0 = 0 holds throughout.
"""

from __future__ import annotations

from typing import Any

from . import _dispatch
from ._utils import (
    Array,
    Namespace,
    broadcast_pair,
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
from .errors import InfolossError

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


# --------------------------------------------------------------------------- helpers


def _as_prob(xp: Namespace, p: Array, name: str) -> Array:
    if xp.isdtype(p.dtype, "real floating"):
        return p
    if xp.isdtype(p.dtype, "integral") or xp.isdtype(p.dtype, "bool"):
        return xp.astype(p, xp.asarray(0.0).dtype)
    raise InfolossError(f"`{name}` must hold real probabilities; got dtype {p.dtype}")


def _one(p: Any, axis: int | None) -> tuple[Namespace, Array, Any, int | None]:
    xp, (p,) = namespace(("p", p))
    p = _as_prob(xp, p, "p")
    ax = None if axis is None else normalize_axis(axis, p.ndim)
    check_probabilities(xp, p, "p")
    return xp, p, p.dtype, ax


def _two(p: Any, q: Any, axis: int) -> tuple[Namespace, Array, Array, Any, int]:
    xp, (p, q) = namespace(("p", p), ("q", q))
    p, q = _as_prob(xp, p, "p"), _as_prob(xp, q, "q")
    dtype = xp.result_type(p, q)
    p, q = broadcast_pair(xp, p, q, "p", "q")
    ax = normalize_axis(axis, p.ndim)
    check_probabilities(xp, p, "p")
    check_probabilities(xp, q, "q")
    cd = compute_dtype(xp, dtype)
    return xp, upcast(xp, p, cd), upcast(xp, q, cd), dtype, ax


def _safe_log(xp: Namespace, p: Array) -> Array:
    """log p where p > 0, and 0 elsewhere (to be masked by the caller); no warnings."""
    pos = p > 0
    return xp.log(xp.where(pos, p, xp.ones_like(p)))


# Coefficients of f(u) = (1 + u) log1p(u) - u = Σ_{k≥2} (-1)^k u^k / (k (k - 1)), |u| < 0.05.
_SERIES = [(-1) ** k / (k * (k - 1)) for k in range(2, 14)]
_SMALL = 0.05


def _kl_parts(
    xp: Namespace, p: Array, q: Array, axis: int, keepdims: bool, clip: bool = True
) -> Array:
    """Σ p log(p/q) along ``axis``, accurate when p ≈ q.

    Where q > 0 and u = (p - q)/q is small, p log(p/q) = q f(u) + (p - q) with f from the series
    above; the tiny q f(u) and the (cancelling) p - q parts are summed separately so that neither
    swamps the other. Elsewhere the term is p (log p - log q), 0 where p = 0, +inf where q = 0 < p.
    """
    pos_p, pos_q = p > 0, q > 0
    qs = xp.where(pos_q, q, xp.ones_like(q))
    u = (p - q) / qs
    small = pos_q & (xp.abs(u) < _SMALL)
    us = xp.where(small, u, xp.zeros_like(u))
    f = xp.zeros_like(us) + _SERIES[-1]
    for c in reversed(_SERIES[:-1]):
        f = f * us + c
    f = f * us * us
    both = pos_p & pos_q
    direct = p * xp.where(both, _safe_log(xp, p) - _safe_log(xp, q), xp.zeros_like(p))
    big = xp.where(both, direct, xp.where(pos_p, xp.full_like(p, _INF), xp.zeros_like(p)))
    a = xp.sum(xp.where(small, q * f, big), axis=axis, keepdims=keepdims)
    # Σ (p - q) over the near-equal terms: each p - q is exact, and their sum is the (possibly
    # tiny) difference in mass that the exact Σ p log(p/q) of the given numbers includes.
    b = xp.sum(xp.where(small, p - q, xp.zeros_like(p)), axis=axis, keepdims=keepdims)
    total = a + b
    if not clip:
        return total
    return xp.where(total > 0, total, xp.zeros_like(total))  # rounding never makes KL negative


# --------------------------------------------------------------------------- probability measures


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
        information), with no warning.

    Notes
    -----
    The less likely an event, the more information its occurrence carries: "the sun will not
    explode tomorrow" (p ≈ 1) carries almost none, "the sun will explode tomorrow" (p tiny) a lot.
    Entropy is the expected information content, :math:`H(P) = \sum_x p(x) I(x)`.

    Examples
    --------
    >>> from infoloss import information
    >>> information([0.5, 0.25, 1.0], base=2)
    array([1., 2., 0.])
    >>> float(information(0.0))
    inf
    """
    lb = log_base(base)
    xp, p, dtype, _ = _one(p, None)
    pc = upcast(xp, p, compute_dtype(xp, dtype))
    out = xp.where(pc > 0, -_safe_log(xp, pc), xp.full_like(pc, _INF)) + 0.0  # no -0.0
    return upcast(xp, in_base(out, lb), dtype)


def entropy(p: Any, *, axis: int = -1, base: float | None = None, keepdims: bool = False) -> Array:
    r"""Shannon entropy of the distributions in ``p`` along ``axis``.

    .. math::

        H(P) = -\sum_c p_c \log p_c, \qquad 0 \log 0 = 0

    Parameters
    ----------
    p : array, shape (..., C, ...)
        Probabilities along ``axis``. They are not renormalised.
    axis : int, default -1
        The axis holding the outcomes.
    base : float, optional
        ``None`` for nats, ``2`` for bits.
    keepdims : bool, default False
        Keep the reduced axis with length 1.

    Returns
    -------
    array, shape of ``p`` without ``axis``
        ``H ≥ 0`` for probabilities; ``H ≤ log C`` with equality for the uniform distribution.

    Notes
    -----
    :math:`H(P) = \sum_c p_c I(c)` is the expected information content. With cross-entropy and
    KL divergence it satisfies :math:`H(P, Q) = H(P) + D_{KL}(P \| Q)`.

    References
    ----------
    C. E. Shannon, "A Mathematical Theory of Communication", 1948.

    Examples
    --------
    >>> from infoloss import entropy
    >>> entropy([0.5, 0.5], base=2)
    np.float64(1.0)
    >>> entropy([[1.0, 0.0], [0.25, 0.75]])
    array([0.        , 0.56233514])
    """
    lb = log_base(base)
    xp, p, dtype, ax = _one(p, axis)
    assert ax is not None
    pc = upcast(xp, p, compute_dtype(xp, dtype))
    out = -xp.sum(
        pc * xp.where(pc > 0, _safe_log(xp, pc), xp.zeros_like(pc)), axis=ax, keepdims=keepdims
    )
    out = out + 0.0  # -0.0 -> 0.0
    return upcast(xp, in_base(out, lb), dtype)


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
        ``+inf`` where some ``p_c > 0`` has ``q_c = 0``.

    Notes
    -----
    :math:`H(P, Q) = H(P) + D_{KL}(P \| Q)`: as :math:`H(P)` does not depend on the model,
    minimising cross-entropy over ``q`` minimises the KL divergence. For losses computed from
    logits use :func:`infoloss.softmax_cross_entropy`, which never forms ``log q`` from ``q``.

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
    xp, p, q, dtype, ax = _two(p, q, axis)
    pos = p > 0
    logq = xp.where(q > 0, _safe_log(xp, q), xp.full_like(q, -_INF))
    terms = p * xp.where(pos, logq, xp.zeros_like(logq))
    out = -xp.sum(terms, axis=ax, keepdims=keepdims) + 0.0
    return upcast(xp, in_base(out, lb), dtype)


def kl_divergence(
    p: Any, q: Any, *, axis: int = -1, base: float | None = None, keepdims: bool = False
) -> Array:
    r"""Kullback–Leibler divergence (relative entropy) of ``q`` from ``p`` along ``axis``.

    .. math::

        D_{KL}(P \| Q) = \sum_c p_c \log \frac{p_c}{q_c} = -H(P) - \sum_c p_c \log q_c

    with :math:`0 \log(0/q) = 0` (also for :math:`q = 0`) and :math:`p \log(p/0) = +\infty`.

    Parameters
    ----------
    p, q : arrays, broadcastable, shape (..., C, ...)
        Distributions along ``axis``. Not renormalised.
    axis : int, default -1
        The axis holding the outcomes (after broadcasting).
    base : float, optional
        ``None`` for nats, ``2`` for bits.
    keepdims : bool, default False
        Keep the reduced axis with length 1.

    Returns
    -------
    array, broadcast shape without ``axis``
        Never negative (rounding is clipped at 0); ``+inf`` where ``q`` misses mass of ``p``.

    Notes
    -----
    Accurate when ``p ≈ q``: each term is split as
    :math:`p \log(p/q) = q f(u) + (p - q)` with :math:`u = (p - q)/q` and
    :math:`f(u) = (1+u)\log(1+u) - u` evaluated by its series, and the two parts are summed
    separately, so the result keeps full relative precision where the textbook formula loses every
    digit to cancellation: the result is the divergence of the numbers given, to a relative
    error of about 1e-15 in float64. The second part, :math:`\sum (p - q)`, is the difference of
    the total masses: 0 for exact distributions, but arrays normalised in floating point can
    differ in mass by a few ulps, which then shows in a divergence of the same size. Not symmetric; :math:`H(P, Q) = H(P) + D_{KL}(P \| Q)`.

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
    """
    lb = log_base(base)
    xp, p, q, dtype, ax = _two(p, q, axis)
    out = _kl_parts(xp, p, q, ax, keepdims)
    return upcast(xp, in_base(out, lb), dtype)


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
        Jensen–Shannon distance, as in :func:`scipy.spatial.distance.jensenshannon`).

    Examples
    --------
    >>> from infoloss import js_divergence
    >>> float(js_divergence([1.0, 0.0], [0.0, 1.0], base=2))
    1.0
    >>> float(js_divergence([0.5, 0.5], [0.9, 0.1]))
    0.1017...
    """
    lb = log_base(base)
    xp, p, q, dtype, ax = _two(p, q, axis)
    m = (p + q) / 2
    out = (_kl_parts(xp, p, m, ax, keepdims, False) + _kl_parts(xp, q, m, ax, keepdims, False)) / 2
    out = xp.where(out > 0, out, xp.zeros_like(out))
    return upcast(xp, in_base(out, lb), dtype)


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
    xp, (x,), dtype, ax = _logits_prepare([("logits", logits)], axis)
    cd = compute_dtype(xp, dtype)
    if _dispatch.enabled(x):
        return _softmax_entropy_fast(x, ax, lb, keepdims, want_grad)
    x = upcast(xp, x, cd)
    _, logq = _log_softmax(xp, x, ax)
    q = xp.exp(logq)
    logq_s = xp.where(q > 0, logq, xp.zeros_like(logq))
    h = -xp.sum(q * logq_s, axis=ax, keepdims=True) + 0.0
    grad = None
    if want_grad:
        grad = upcast(xp, in_base(-q * (logq_s + h), lb), dtype)
    if not keepdims:
        h = xp.squeeze(h, axis=ax)
    return upcast(xp, in_base(h, lb), dtype), grad


def _softmax_entropy_fast(
    x: Any, ax: int, lb: float | None, keepdims: bool, want_grad: bool
) -> tuple[Array, Array | None]:
    import numpy as np

    k = _dispatch.kernels()
    assert k is not None
    scale = 1.0 if lb is None else 1.0 / lb
    h, g = k.softmax_entropy_rows(_dispatch.rows(x, ax), scale if want_grad else None)
    shape = tuple(x.shape[:ax]) + ((1,) if keepdims else ()) + tuple(x.shape[ax + 1 :])
    value = (np.asarray(h) * scale).astype(x.dtype).reshape(shape)
    grad = None if g is None else _dispatch.unrows(g, tuple(x.shape), ax)
    return (value if value.ndim else value[()]), grad


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
    xp, (a, b), dtype, ax = _logits_prepare([("p_logits", p_logits), ("q_logits", q_logits)], axis)
    cd = compute_dtype(xp, dtype)
    if _dispatch.enabled(a, b) and a.dtype == b.dtype:
        return _softmax_kl_fast(a, b, ax, lb, keepdims, want_grad)
    a, b = upcast(xp, a, cd), upcast(xp, b, cd)
    _, lp = _log_softmax(xp, a, ax)
    _, lq = _log_softmax(xp, b, ax)
    p = xp.exp(lp)
    pos = p > 0
    zero = xp.zeros_like(lp)
    d = xp.where(pos, lp, zero) - xp.where(pos, lq, zero)
    raw = xp.sum(p * d, axis=ax, keepdims=True)
    grads = None
    if want_grad:
        ga = p * (d - raw)
        gb = xp.exp(lq) - p
        grads = (upcast(xp, in_base(ga, lb), dtype), upcast(xp, in_base(gb, lb), dtype))
    kl = xp.where(raw > 0, raw, xp.zeros_like(raw))
    if not keepdims:
        kl = xp.squeeze(kl, axis=ax)
    return upcast(xp, in_base(kl, lb), dtype), grads


def _softmax_kl_fast(
    a: Any, b: Any, ax: int, lb: float | None, keepdims: bool, want_grad: bool
) -> tuple[Array, tuple[Array, Array] | None]:
    import numpy as np

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
    return (value if value.ndim else value[()]), grads


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
