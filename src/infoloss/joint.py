"""Measures of a joint distribution: mutual information and conditional entropy.

The next step of the theory after entropy and divergence: for two random variables X and Y
with joint probabilities ``p(x, y)`` given as a table (X along the first of ``axis``, Y along
the second), how much knowing one tells about the other. Tables are probabilities: finite,
non-negative, **not** renormalised (pass a table that sums to one; counts divided by their
total, for example). Batches of tables are measured at once (the other axes). ``base=None``
measures in nats, ``base=2`` in bits; 0·log 0 = 0.

The identities :math:`I(X;Y) = H(X) + H(Y) - H(X,Y) = H(Y) - H(Y|X)` and
:math:`H(Y|X) = H(X,Y) - H(X)` hold; each measure is computed directly (never as a difference
of entropies, which cancels when X and Y are nearly independent).
"""

from __future__ import annotations

from typing import Any

from . import _router
from ._utils import Array, quiet_overflow
from ._validate import joint_spec

__all__ = ["conditional_entropy", "mutual_information"]


@quiet_overflow
def mutual_information(
    joint: Any,
    *,
    base: float | None = None,
    axis: tuple[int, int] = (-2, -1),
    keepdims: bool = False,
) -> Array:
    r"""Mutual information :math:`I(X;Y)` of a joint probability table.

    .. math::

        I(X;Y) = \sum_{x,y} p(x,y) \log \frac{p(x,y)}{p(x)\,p(y)}
               = D_{KL}\big(P_{XY} \,\|\, P_X \otimes P_Y\big),
        \qquad p(x) = \sum_y p(x,y),\; p(y) = \sum_x p(x,y)

    Parameters
    ----------
    joint : array, shape (..., X, Y, ...)
        Joint probabilities :math:`p(x, y)` (finite, non-negative, summing to 1 over the two
        axes; not renormalised). Integers and bools are taken as floats.
    base : float, optional
        ``None`` for nats, ``2`` for bits.
    axis : pair of int, default (-2, -1)
        The axes of X and of Y.
    keepdims : bool, default False
        Keep the two reduced axes with length 1 (placed last).

    Returns
    -------
    array, the table's shape without the two axes
        :math:`0 \le I \le \min(H(X), H(Y))`; 0 exactly when the table is the product of its
        marginals. nan where the table holds a nan.

    Raises
    ------
    InfolossError
        If ``joint`` has fewer than 2 dimensions, holds a negative number or ``±inf`` (checked
        when the values can be read; under ``jax.jit`` such a table gives nan), or ``axis`` is
        not two different axes.

    Notes
    -----
    Computed as the generalized KL divergence of :func:`infoloss.kl_divergence` between the
    table and the product of its marginals, term by term :math:`p \log(p/r) - p + r \ge 0`
    (:math:`r = p(x)p(y)`; the mass terms cancel for a table summing to 1): never negative, and a
    nearly independent table keeps its relative accuracy (the textbook sum cancels there).
    ``sklearn.metrics.mutual_info_score`` on a contingency table of counts gives the same value
    in nats (for the counts divided by their total).

    Examples
    --------
    >>> import numpy as np
    >>> from infoloss.joint import mutual_information
    >>> float(mutual_information([[0.5, 0.0], [0.0, 0.5]], base=2))  # Y = X: one bit
    1.0
    >>> float(mutual_information(np.outer([0.3, 0.7], [0.6, 0.4])))  # independent
    0.0
    >>> float(mutual_information([[0.4, 0.1], [0.1, 0.4]]))
    0.19274...
    """
    return _router.joint_measure(
        joint_spec("mutual_information", joint, axis=axis, base=base, keepdims=keepdims)
    )


@quiet_overflow
def conditional_entropy(
    joint: Any,
    *,
    given: int = 0,
    base: float | None = None,
    axis: tuple[int, int] = (-2, -1),
    keepdims: bool = False,
) -> Array:
    r"""Conditional entropy of one variable of a joint table given the other.

    .. math::

        H(Y \mid X) = -\sum_{x,y} p(x,y) \log \frac{p(x,y)}{p(x)} = H(X, Y) - H(X)
        \quad(\texttt{given=0}), \qquad
        H(X \mid Y) = -\sum_{x,y} p(x,y) \log \frac{p(x,y)}{p(y)} \quad(\texttt{given=1})

    Parameters
    ----------
    joint : array, shape (..., X, Y, ...)
        Joint probabilities (see :func:`mutual_information`).
    given : {0, 1}, default 0
        Which variable is known: ``0`` the first of ``axis`` (X), giving :math:`H(Y|X)`;
        ``1`` the second (Y), giving :math:`H(X|Y)`.
    base : float, optional
        ``None`` for nats, ``2`` for bits.
    axis : pair of int, default (-2, -1)
        The axes of X and of Y.
    keepdims : bool, default False
        Keep the two reduced axes with length 1 (placed last).

    Returns
    -------
    array, the table's shape without the two axes
        :math:`0 \le H(Y|X) \le H(Y)`; 0 when Y is a function of X. nan where the table holds a
        nan.

    Raises
    ------
    InfolossError
        As :func:`mutual_information`, and if ``given`` is not 0 or 1.

    Notes
    -----
    Each term is :math:`\ge 0` because :math:`p(x,y) \le p(x)`; a row with :math:`p(x) = 0`
    contributes 0. With the mutual information,
    :math:`H(Y) = H(Y|X) + I(X;Y)` (the information about Y that X carries plus what is left).

    Examples
    --------
    >>> from infoloss.joint import conditional_entropy
    >>> table = [[0.25, 0.25], [0.5, 0.0]]  # X = 0: Y is a coin flip; X = 1: Y = 0
    >>> float(conditional_entropy(table, base=2))  # H(Y|X) = 0.5 * 1 bit
    0.5
    >>> float(conditional_entropy(table, given=1, base=2))
    0.6887...
    """
    return _router.joint_measure(
        joint_spec(
            "conditional_entropy", joint, axis=axis, given=given, base=base, keepdims=keepdims
        )
    )
