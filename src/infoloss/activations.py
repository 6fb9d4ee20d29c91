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

from . import _router
from ._generic import activations as _generic
from ._utils import (
    Array,
    Namespace,
    compute_dtype,
    namespace,
    quiet_overflow,
    require_floating,
    upcast,
)
from ._validate import row_spec

__all__ = ["log_sigmoid", "log_softmax", "logsumexp", "sigmoid", "softmax"]


def _elementwise(x: Any) -> tuple[Namespace, Array, Any]:
    xp, (x,) = namespace(("x", x))
    require_floating(xp, x, "x")
    return xp, x, compute_dtype(xp, x.dtype)


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
    spec = row_spec(x, "logsumexp", axis, keepdims)
    if spec.x.shape[spec.axis] == 0:  # a sum over nothing is 0: its log is -inf (SciPy, PyTorch)
        x, ax = spec.x, spec.axis
        shape = tuple(x.shape[:ax]) + ((1,) if spec.keepdims else ()) + tuple(x.shape[ax + 1 :])
        return spec.xp.full(shape, -float("inf"), dtype=x.dtype, device=device(x))
    return _router.row_op(spec)


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
    return _router.row_op(row_spec(x, "log_softmax", axis))


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
    return _router.row_op(row_spec(x, "softmax", axis))


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
    xp, x, cd = _elementwise(x)
    return upcast(xp, _generic.sigmoid(xp, upcast(xp, x, cd)), x.dtype)


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
    xp, x, cd = _elementwise(x)
    return upcast(xp, -_generic.softplus(xp, -upcast(xp, x, cd)), x.dtype)
