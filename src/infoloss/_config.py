"""Run-time switches of the router (read by :mod:`infoloss._router` only).

The fast path (the numba kernels for NumPy arrays and CPU torch tensors) is skipped

- when the environment variable ``INFOLOSS_DISABLE_FAST`` is set to a non-empty value other
  than ``0`` (read at each call, so a test can set it);
- inside ``with infoloss._config.generic_only():`` — for tests and benchmarks, which compare the
  two paths. The switch is a :class:`contextvars.ContextVar`: it holds for the enclosed code in
  this thread (or asyncio task) only, never for other threads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["fast_allowed", "generic_only"]

_generic_only: ContextVar[bool] = ContextVar("infoloss_generic_only", default=False)


def fast_allowed() -> bool:
    """False inside :func:`generic_only` or when ``INFOLOSS_DISABLE_FAST`` is set."""
    if _generic_only.get():
        return False
    return os.environ.get("INFOLOSS_DISABLE_FAST", "") in ("", "0")


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
