"""Reuse of large gradient buffers between calls (a small caching allocator for the fast path).

Why: a gradient as large as the logits (524 MB at 4096 × 32000 float32) is fresh memory on
every call, and the operating system zeroes each new page on first touch: measured here, that
costs 25–45 ms on top of a 60 ms fused forward+backward. A training loop drops the previous
step's gradient before it asks for the next one, so the same memory can serve again.

The fused ``softmax``/``log_softmax`` outputs are served the same way (measured at 4096 × 32000
float32: a fresh output made them 1.7–1.8× a copy into mapped memory, a cached one 1.1–1.2×).

How: gradients of at least :data:`MIN_BYTES` are carved from a buffer owned by this module,
through a fresh small *owner* object per hand-out that exposes the buffer's memory with
``__array_interface__``. The gradient array's ``base`` is that owner, and every NumPy view of
the gradient (and every tensor made from one with ``torch.from_numpy``) keeps the owner alive,
so a weak reference to the owner says when the last of them is gone: its callback marks the
buffer free. This rests on Python's documented object lifetimes, not on reference counts. At
most :data:`MAX_BUFFERS` buffers are kept; a buffer of another size replaces the oldest free one.

Cost: after the last gradient is dropped, its memory stays allocated for the next call (like
PyTorch's CUDA caching allocator). :func:`infoloss.empty_gradient_cache` releases it;
:func:`infoloss.set_gradient_cache` (or the environment variable ``INFOLOSS_GRAD_CACHE=0``)
turns the cache off. By default it is on.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from typing import Any

import numpy as np

__all__ = ["empty", "empty_gradient_cache", "set_gradient_cache"]

#: Smallest gradient (bytes) served from the cache; smaller ones are plain ``np.empty``.
MIN_BYTES = 1 << 24
#: Buffers the cache keeps (in use or free).
MAX_BUFFERS = 2

_lock = threading.Lock()
_enabled = os.environ.get("INFOLOSS_GRAD_CACHE", "1").strip().lower() not in ("0", "false", "no")


class _Slot:
    """One cached buffer and whether a handed-out gradient still uses it."""

    __slots__ = ("buf", "in_use", "ref")

    def __init__(self, nbytes: int) -> None:
        self.buf = np.empty(nbytes, np.uint8)
        self.in_use = False
        self.ref: weakref.ref[_Owner] | None = None  # to the current hand-out's owner

    @property
    def nbytes(self) -> int:
        return int(self.buf.nbytes)

    def release(self, ref: Any) -> None:
        """Weak-reference callback: the last array using the current hand-out is gone."""
        if ref is self.ref:
            self.in_use = False


class _Owner:
    """The ``base`` of one handed-out gradient: exposes the slot's memory as ``shape``/``dtype``."""

    __slots__ = ("__array_interface__", "__weakref__", "slot")

    def __init__(self, slot: _Slot, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.slot = slot  # the buffer stays allocated while any view of it lives
        self.__array_interface__ = {
            "data": (slot.buf.__array_interface__["data"][0], False),
            "shape": shape,
            "typestr": dtype.str,
            "version": 3,
        }


_buffers: list[_Slot] = []  # oldest first


def _take(nbytes: int) -> _Slot | None:
    """A free buffer of exactly ``nbytes``, moved to the end of the list (most recent), or None."""
    for i, slot in enumerate(_buffers):
        if slot.nbytes == nbytes and not slot.in_use:
            _buffers.append(_buffers.pop(i))
            return slot
    return None


def _make_room() -> bool:
    """Drop the oldest free buffer if the cache is full; False if every buffer is in use."""
    if len(_buffers) < MAX_BUFFERS:
        return True
    for i, slot in enumerate(_buffers):
        if not slot.in_use:
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
        slot = _take(nbytes)
        if slot is None:
            if not _make_room():
                return np.empty(shape, dt)
            slot = _Slot(nbytes)
            _buffers.append(slot)
        slot.in_use = True
        owner = _Owner(slot, tuple(shape), dt)
        slot.ref = weakref.ref(owner, slot.release)
        return np.asarray(owner)


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
        for slot in [s for s in _buffers if not s.in_use]:
            freed += slot.nbytes
            _buffers.remove(slot)
        return freed


def set_gradient_cache(enabled: bool) -> bool:
    """Turn the reuse of large gradient buffers on or off; returns the previous setting.

    With the cache on (the default), gradients of at least 16 MiB returned by the fused NumPy
    kernels (and by the CPU PyTorch route), and ``softmax``/``log_softmax`` outputs of that size
    from those kernels, are carved from buffers that infoloss keeps for the
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
        from ..errors import InfolossTypeError

        raise InfolossTypeError(f"`enabled` must be True or False; got {enabled!r}")
    previous, _enabled = _enabled, enabled
    if not enabled:
        empty_gradient_cache()
    return previous
