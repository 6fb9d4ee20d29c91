"""Run-time switches of the router (read by :mod:`infoloss._router` only).

The fast path (the numba kernels for NumPy arrays and CPU torch tensors) is skipped

- when the environment variable ``INFOLOSS_DISABLE_FAST`` is set to a non-empty value other
  than ``0`` (read at each call, so a test can set it);
- inside ``with infoloss._config.generic_only():`` — for tests and benchmarks, which compare the
  two paths. The switch is a :class:`contextvars.ContextVar`: it holds for the enclosed code in
  this thread (or asyncio task) only, never for other threads.

NumPy problems of fewer than :data:`FAST_MIN_ELEMENTS` elements (the first array's size, e.g.
the logits) take the generic code too, unless the fast path is forced: a first call on a tiny
input then never waits for the kernels to compile (a few seconds per kernel with an empty numba
cache; ``infoloss demo`` computes on 1 × 3 logits). The threshold can be changed with the
environment variable ``INFOLOSS_FAST_MIN_ELEMENTS`` (a non-negative integer, read at each call;
``0`` sends every size to the kernels) and is ignored inside ``with infoloss._config.always_fast():``
(the tests' fast variants use it to run the kernels on small inputs).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["FAST_MIN_ELEMENTS", "always_fast", "fast_allowed", "fast_size", "generic_only"]

_generic_only: ContextVar[bool] = ContextVar("infoloss_generic_only", default=False)
_always_fast: ContextVar[bool] = ContextVar("infoloss_always_fast", default=False)

#: NumPy problems smaller than this (elements of the first array) take the generic code.
FAST_MIN_ELEMENTS = 4096


def fast_allowed() -> bool:
    """False inside :func:`generic_only` or when ``INFOLOSS_DISABLE_FAST`` is set."""
    if _generic_only.get():
        return False
    return os.environ.get("INFOLOSS_DISABLE_FAST", "") in ("", "0")


def fast_size(elements: int) -> bool:
    """True when a NumPy problem of ``elements`` elements is large enough for the kernels (always
    inside :func:`always_fast`; the threshold is :data:`FAST_MIN_ELEMENTS` or
    ``INFOLOSS_FAST_MIN_ELEMENTS``; a value of that variable that is not a non-negative integer
    is ignored)."""
    if _always_fast.get():
        return True
    threshold = FAST_MIN_ELEMENTS
    env = os.environ.get("INFOLOSS_FAST_MIN_ELEMENTS")
    if env:
        try:
            threshold = max(0, int(env))
        except ValueError:
            pass
    return elements >= threshold


@contextmanager
def always_fast() -> Iterator[None]:
    """Send NumPy problems of every size to the fused kernels (this thread or task only), as long
    as the fast path is allowed (:func:`generic_only` still wins).

    Examples
    --------
    >>> import numpy as np, infoloss
    >>> from infoloss._config import always_fast
    >>> with always_fast():
    ...     float(infoloss.logsumexp(np.zeros(2)))
    0.6931471805599453
    """
    token = _always_fast.set(True)
    try:
        yield
    finally:
        _always_fast.reset(token)


@contextmanager
def generic_only() -> Iterator[None]:
    """Run the enclosed code on the generic array-API path (this thread or task only).

    Examples
    --------
    >>> import numpy as np, infoloss
    >>> from infoloss._config import generic_only
    >>> with generic_only():
    ...     float(infoloss.logsumexp(np.zeros(2)))
    0.6931471805599453
    """
    token = _generic_only.set(True)
    try:
        yield
    finally:
        _generic_only.reset(token)
