"""Exception classes raised by infoloss.

Every error infoloss raises for bad input is an :class:`InfolossError`, which is a
:class:`ValueError`; dtype problems raise :class:`InfolossTypeError`, which is both an
:class:`InfolossError` and a :class:`TypeError`. Messages name the offending argument in
backticks and say what was received.
"""

from __future__ import annotations

__all__ = ["InfolossError", "InfolossTypeError"]


class InfolossError(ValueError):
    """Bad input to an infoloss function (a value, shape or option).

    Examples
    --------
    >>> import infoloss
    >>> try:
    ...     infoloss.entropy([0.5, 0.5], base=1)
    ... except infoloss.InfolossError as e:
    ...     print(e)
    `base` must be positive, finite and different from 1; got 1
    """


class InfolossTypeError(InfolossError, TypeError):
    """Bad dtype or array type given to an infoloss function.

    Examples
    --------
    >>> import numpy as np, infoloss
    >>> try:
    ...     infoloss.softmax(np.array([1, 2, 3]))
    ... except TypeError as e:
    ...     print(e)
    `x` must have a real floating dtype; got int64
    """
