"""Numerically stable activations: log-sum-exp, softmax, log-softmax, sigmoid, log-sigmoid.

Every function accepts an array of any Array API library (NumPy, PyTorch, JAX, CuPy,
array-api-strict; Python scalars and lists are treated as NumPy) and returns the same kind of
array on the same device. float16 and bfloat16 inputs are computed in float32 and returned in
their own dtype. None of them overflows or produces nan for finite inputs, however large; a nan
input gives nan (see each function for ``±inf``).
"""

from __future__ import annotations

from typing import Any

from array_api_compat import device

from . import _dispatch
from ._utils import (
    Array,
    Namespace,
    check_bool,
    compute_dtype,
    namespace,
    normalize_axis,
    quiet_overflow,
    require_floating,
    upcast,
)
from .errors import InfolossError

__all__ = ["log_sigmoid", "log_softmax", "logsumexp", "sigmoid", "softmax"]

_INF = float("inf")
_NAN = float("nan")


# --------------------------------------------------------------------------- generic kernels


def _lse_parts(xp: Namespace, x: Array, axis: int) -> tuple[Array, Array, Array]:
    """``(m, log s, has_mass)`` with keepdims, where logsumexp(x) = m + log s.

    ``m`` is the maximum and ``s = Σ exp(x - m)``. Keeping the two parts apart lets callers form
    ``(x - m) - log s`` rather than ``x - lse``: with logits of 1e30 in float32,
    ``lse = m + log 2`` rounds to ``m`` and the ``log 2`` would be lost.

    ``log s`` is ``log1p((k - 1) + r)`` with ``k`` the number of entries equal to the maximum and
    ``r`` the sum of the other exponentials, so that tiny terms survive (logsumexp([0, -40]) is
    4.25e-18, not 0) and so does the target gradient ``q_y - 1`` of a confident prediction.

    Special values: a slice with no distribution (all ``-inf``) has ``m = 0``, ``log s = 0`` and
    ``has_mass`` False (never a warning); a slice holding nan or ``+inf`` has ``m = nan``, so that
    everything computed from it is nan (a diverging model must see nan). :func:`_lse` turns the
    ``+inf`` case back into ``+inf``, which is the log-sum-exp's true value there.
    """
    m = xp.max(x, axis=axis, keepdims=True)
    m = xp.where(m == -_INF, xp.zeros_like(m), xp.where(m == _INF, xp.full_like(m, _NAN), m))
    at_max = x == m
    k = xp.sum(xp.astype(at_max, x.dtype), axis=axis, keepdims=True)
    r = xp.sum(xp.where(at_max, xp.zeros_like(x), xp.exp(x - m)), axis=axis, keepdims=True)
    empty = (k == 0) & (r == 0)
    ls = xp.where(empty, xp.zeros_like(r), xp.log1p(xp.where(empty, xp.zeros_like(r), (k - 1) + r)))
    return m, ls, ~empty


def _lse(xp: Namespace, x: Array, axis: int) -> Array:
    """log Σ exp(x) along ``axis`` with keepdims: −inf for an all −inf slice, +inf for a slice
    with a +inf entry, nan for a slice with a nan; no warnings."""
    m, ls, has_mass = _lse_parts(xp, x, axis)
    lse = xp.where(has_mass, m + ls, xp.full_like(ls, -_INF))
    has_inf = xp.any(x == _INF, axis=axis, keepdims=True)
    has_nan = xp.any(xp.isnan(x), axis=axis, keepdims=True)
    return xp.where(has_inf & ~has_nan, xp.full_like(lse, _INF), lse)


def _log_softmax(xp: Namespace, x: Array, axis: int) -> tuple[Array, Array]:
    """``(lse, log_softmax)``, lse with keepdims. An all −inf slice gives −inf log-probabilities;
    a slice with nan or +inf gives nan log-probabilities."""
    m, ls, has_mass = _lse_parts(xp, x, axis)
    return xp.where(has_mass, m + ls, xp.full_like(ls, -_INF)), (x - m) - ls


def _softplus(xp: Namespace, x: Array) -> Array:
    """log(1 + exp(x)) without overflow; differentiable everywhere (also at 0 and ±inf)."""
    pos = x > 0
    t = xp.log1p(xp.exp(xp.where(pos, -x, x)))  # exp of a non-positive number: never overflows
    return xp.where(pos, x + t, t)


def _prepare(
    x: Any, axis: Any, allow_empty: bool = False, elementwise: bool = False
) -> tuple[Namespace, Array, Any, int | None]:
    xp, (x,) = namespace(("x", x))
    require_floating(xp, x, "x")
    ax = None
    if not elementwise:
        ax = normalize_axis(axis, x.ndim)
        if x.shape[ax] == 0 and not allow_empty:
            raise InfolossError(
                f"`x` must have at least one class along `axis`={axis}; got shape {tuple(x.shape)}"
            )
    return xp, x, compute_dtype(xp, x.dtype), ax


# --------------------------------------------------------------------------- public functions


@quiet_overflow
def logsumexp(x: Any, *, axis: int = -1, keepdims: bool = False) -> Array:
    r"""Log of the sum of exponentials along an axis, computed without overflow.

    .. math::

        \operatorname{logsumexp}(x) = m + \log \sum_c e^{x_c - m}, \qquad m = \max_c x_c

    Parameters
    ----------
    x : array, shape (..., C, ...)
        Real floating array (logits).
    axis : int, default -1
        The axis to reduce.
    keepdims : bool, default False
        Keep the reduced axis with length 1.

    Returns
    -------
    array, shape (..., ...)
        Same array type, device and dtype as ``x`` (a 0-d array for a 1-d ``x``). A slice that
        is all ``-inf`` gives ``-inf`` (no warning), and so does an empty axis (the log of an
        empty sum, as in SciPy and PyTorch); a ``+inf`` entry gives ``+inf``; a nan gives nan.

    Notes
    -----
    Subtracting the maximum makes every exponent non-positive, so nothing overflows for finite
    inputs up to the dtype's maximum. The sum is taken as ``log1p`` of the non-maximal terms
    (plus the count of maxima less one), so terms far below the maximum are not lost:
    ``logsumexp([0, -40]) = 4.25e-18``. NumPy float32/float64 inputs use a compiled kernel.
    ``axis`` is one integer (``None`` and tuples of axes raise :class:`infoloss.InfolossError`;
    reshape first to reduce several axes).

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss import logsumexp
    >>> float(logsumexp(np.array([1000.0, 1000.0])))  # log(2 e^1000), no overflow
    1000.6931471805599
    >>> logsumexp(np.array([[0.0, 0.0], [-np.inf, -np.inf]]), axis=1)
    array([0.69314718,       -inf])
    >>> float(logsumexp(np.array([0.0, -40.0])))  # log(1 + e^-40): the small term is kept
    4.248354255291589e-18
    """
    keepdims = check_bool(keepdims, "keepdims")
    xp, x, cd, ax = _prepare(x, axis, allow_empty=True)
    assert ax is not None
    if x.shape[ax] == 0:  # a sum over nothing is 0: its log is -inf (as SciPy and PyTorch)
        shape = tuple(x.shape[:ax]) + ((1,) if keepdims else ()) + tuple(x.shape[ax + 1 :])
        return xp.full(shape, -_INF, dtype=x.dtype, device=device(x))
    if _dispatch.enabled(x):
        import numpy as np

        k = _dispatch.kernels()
        assert k is not None
        r = k.logsumexp_rows(_dispatch.rows(x, ax))
        shape = tuple(x.shape[:ax]) + ((1,) if keepdims else ()) + tuple(x.shape[ax + 1 :])
        return np.asarray(r, dtype=x.dtype).reshape(shape)
    out = _lse(xp, upcast(xp, x, cd), ax)
    if not keepdims:
        out = xp.squeeze(out, axis=ax)
    return upcast(xp, out, x.dtype)


@quiet_overflow
def log_softmax(x: Any, *, axis: int = -1) -> Array:
    r"""Logarithm of the softmax, computed stably from logits.

    .. math::

        \log \operatorname{softmax}(x)_c = x_c - \operatorname{logsumexp}(x)

    Parameters
    ----------
    x : array, shape (..., C, ...)
        Logits.
    axis : int, default -1
        The class axis.

    Returns
    -------
    array, same shape as ``x``
        Log-probabilities (≤ 0). A ``-inf`` logit gives ``-inf``; an all ``-inf`` slice gives
        ``-inf`` everywhere (there is no distribution; PyTorch gives nan). A slice holding a
        nan or a ``+inf`` gives nan everywhere.

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss import log_softmax
    >>> log_softmax(np.array([0.0, np.log(3.0)]))
    array([-1.38629436, -0.28768207])
    >>> log_softmax(np.array([1e30, 0.0], dtype=np.float32))
    array([ 0.e+00, -1.e+30], dtype=float32)
    """
    xp, x, cd, ax = _prepare(x, axis)
    assert ax is not None
    if _dispatch.enabled(x):
        k = _dispatch.kernels()
        assert k is not None
        return _dispatch.unrows(k.log_softmax_rows(_dispatch.rows(x, ax)), tuple(x.shape), ax)
    _, out = _log_softmax(xp, upcast(xp, x, cd), ax)
    return upcast(xp, out, x.dtype)


@quiet_overflow
def softmax(x: Any, *, axis: int = -1) -> Array:
    r"""Softmax: exponentials normalised to sum to one along an axis.

    .. math::

        \operatorname{softmax}(x)_c = \frac{e^{x_c}}{\sum_k e^{x_k}} = e^{x_c - \operatorname{logsumexp}(x)}

    Parameters
    ----------
    x : array, shape (..., C, ...)
        Logits.
    axis : int, default -1
        The class axis.

    Returns
    -------
    array, same shape as ``x``
        Probabilities summing to 1 along ``axis``. A ``-inf`` logit gets probability 0 (a masked
        class); an all ``-inf`` slice gives zeros (no distribution, never nan). A slice holding a
        nan or a ``+inf`` gives nan everywhere (as PyTorch and SciPy).

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss import softmax
    >>> softmax(np.array([1.0, 2.0, 3.0]))
    array([0.09003057, 0.24472847, 0.66524096])
    >>> softmax(np.array([0.0, -np.inf]))
    array([1., 0.])
    """
    xp, x, cd, ax = _prepare(x, axis)
    assert ax is not None
    if _dispatch.enabled(x):
        k = _dispatch.kernels()
        assert k is not None
        return _dispatch.unrows(k.softmax_rows(_dispatch.rows(x, ax)), tuple(x.shape), ax)
    _, logq = _log_softmax(xp, upcast(xp, x, cd), ax)
    return upcast(xp, xp.exp(logq), x.dtype)


@quiet_overflow
def sigmoid(x: Any) -> Array:
    r"""The logistic sigmoid, elementwise, without overflow.

    .. math::

        \sigma(x) = \frac{1}{1 + e^{-x}}

    Parameters
    ----------
    x : array, any shape
        Real floating array.

    Returns
    -------
    array, same shape as ``x``
        Values in [0, 1]; ``σ(-inf) = 0``, ``σ(+inf) = 1``.

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss import sigmoid
    >>> sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    array([0. , 0.5, 1. ])
    """
    xp, x, cd, _ = _prepare(x, None, elementwise=True)
    xc = upcast(xp, x, cd)
    e = xp.exp(xp.where(xc > 0, -xc, xc))  # exp(-|x|) in (0, 1]
    out = xp.where(xc > 0, 1 / (1 + e), e / (1 + e))
    return upcast(xp, out, x.dtype)


@quiet_overflow
def log_sigmoid(x: Any) -> Array:
    r"""Logarithm of the sigmoid, elementwise, without overflow or underflow to -inf.

    .. math::

        \log \sigma(x) = -\operatorname{softplus}(-x) = -\log(1 + e^{-x})

    Use ``log_sigmoid(-x)`` for :math:`\log(1 - \sigma(x))`.

    Parameters
    ----------
    x : array, any shape
        Real floating array.

    Returns
    -------
    array, same shape as ``x``
        Values ≤ 0; ``log_sigmoid(-1000) = -1000`` exactly rather than ``-inf``.

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss import log_sigmoid
    >>> log_sigmoid(np.array([-1000.0, 0.0, 40.0]))
    array([-1.00000000e+03, -6.93147181e-01, -4.24835426e-18])
    """
    xp, x, cd, _ = _prepare(x, None, elementwise=True)
    out = -_softplus(xp, -upcast(xp, x, cd))
    return upcast(xp, out, x.dtype)
