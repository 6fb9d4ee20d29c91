"""Reuse of large gradient buffers between calls (a small caching allocator for the fast path).

Why: a gradient as large as the logits (524 MB at 4096 × 32000 float32) is fresh memory on
every call, and the operating system zeroes each new page on first touch: measured here, that
costs 25–45 ms on top of a 60 ms fused forward+backward. A training loop drops the previous
step's gradient before it asks for the next one, so the same memory can serve again.

How: gradients of at least :data:`MIN_BYTES` are views of a buffer owned by this module. A
buffer is free again when nothing but the pool refers to it: every NumPy view of a gradient
(and every tensor made from one with ``torch.from_numpy``) keeps a reference to the buffer that
owns the memory, so CPython's reference count says exactly when the last of them is gone. At
most :data:`MAX_BUFFERS` buffers are kept; a buffer of another size replaces the oldest free one.

Cost: after the last gradient is dropped, its memory stays allocated for the next call (like
PyTorch's CUDA caching allocator). :func:`infoloss.empty_gradient_cache` releases it;
:func:`infoloss.set_gradient_cache` (or the environment variable ``INFOLOSS_GRAD_CACHE=0``)
turns the cache off.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from typing import Any

import numpy as np

__all__ = ["empty", "empty_gradient_cache", "set_gradient_cache"]

#: Smallest gradient (bytes) served from the cache; smaller ones are plain ``np.empty``.
MIN_BYTES = 1 << 24
#: Buffers the cache keeps (in use or free).
MAX_BUFFERS = 2

_lock = threading.Lock()
_buffers: list[np.ndarray] = []  # owners (1-D uint8), oldest first
_enabled = os.environ.get("INFOLOSS_GRAD_CACHE", "1").strip().lower() not in ("0", "false", "no")
# sys.getrefcount(buf) of a free buffer inside _take's loop: the list, the loop variable and
# getrefcount's own argument.
_FREE_REFS = 3


def _take(nbytes: int) -> np.ndarray | None:
    """A free buffer of exactly ``nbytes``, moved to the end of the list (most recent), or None."""
    for i in range(len(_buffers)):  # not enumerate: its cached tuple would hold a reference
        buf = _buffers[i]
        if buf.nbytes == nbytes and sys.getrefcount(buf) == _FREE_REFS:
            _buffers.append(_buffers.pop(i))
            return buf
    return None


def _make_room() -> bool:
    """Drop the oldest free buffer if the cache is full; False if every buffer is in use."""
    if len(_buffers) < MAX_BUFFERS:
        return True
    for i in range(len(_buffers)):
        buf = _buffers[i]
        if sys.getrefcount(buf) == _FREE_REFS:
            del _buffers[i]
            return True
    return False


def empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised C-contiguous array, from the cache when it is large (see module doc)."""
    dt = np.dtype(dtype)
    nbytes = math.prod(shape) * dt.itemsize
    if not _enabled or nbytes < MIN_BYTES:
        return np.empty(shape, dt)
    with _lock:
        buf = _take(nbytes)
        if buf is None:
            if not _make_room():
                return np.empty(shape, dt)
            buf = np.empty(nbytes, np.uint8)
            _buffers.append(buf)
        # the view refers to `buf`, so `buf` counts as in use before the lock is released
        return buf.view(dt).reshape(shape)


def empty_gradient_cache() -> int:
    """Release the cached gradient buffers that are no longer in use.

    Returns
    -------
    int
        The number of bytes released (buffers still referenced by a live gradient are kept
        until the next call finds them free).

    Examples
    --------
    >>> import infoloss
    >>> infoloss.empty_gradient_cache() >= 0
    True
    """
    with _lock:
        freed = 0
        for i in range(len(_buffers) - 1, -1, -1):
            if sys.getrefcount(_buffers[i]) == _FREE_REFS - 1:  # no loop variable here
                freed += _buffers[i].nbytes
                del _buffers[i]
        return freed


def set_gradient_cache(enabled: bool) -> bool:
    """Turn the reuse of large gradient buffers on or off; returns the previous setting.

    With the cache on (the default), gradients of at least 16 MiB returned by the fused NumPy
    kernels (and by the CPU PyTorch route) are carved from buffers that infoloss keeps for the
    next call once every view of them is gone, saving the first-touch cost of fresh memory.
    Turning it off also releases the free buffers. The environment variable
    ``INFOLOSS_GRAD_CACHE=0`` turns it off at import.

    Parameters
    ----------
    enabled : bool
        The new setting.

    Returns
    -------
    bool
        The previous setting.

    Examples
    --------
    >>> import infoloss
    >>> previous = infoloss.set_gradient_cache(False)
    >>> _ = infoloss.set_gradient_cache(previous)
    """
    global _enabled
    if not isinstance(enabled, bool):
        from .errors import InfolossTypeError

        raise InfolossTypeError(f"`enabled` must be True or False; got {enabled!r}")
    previous, _enabled = _enabled, enabled
    if not enabled:
        empty_gradient_cache()
    return previous
