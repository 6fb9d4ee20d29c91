"""The one place that decides whether a call takes the numba fast path.

The generic array-API code in the public modules is the definition of every quantity. For NumPy
inputs of dtype float32 or float64 on the CPU, the public functions hand their (validated, 2-D)
arrays to the kernels in :mod:`infoloss._numba_kernels`, which must agree with the generic code.
float16 inputs are upcast to float32 by the caller before they get here.

The fast path is skipped when

- numba cannot be imported (a single :class:`RuntimeWarning` says so, the generic path runs);
- the environment variable ``INFOLOSS_DISABLE_FAST`` is set to a non-empty value other than ``0``;
- inside ``with infoloss._dispatch.disabled():`` (used by the tests and the benchmark).

CPU torch tensors take the same kernels through :mod:`infoloss.torch` (zero-copy NumPy views
inside a ``torch.autograd.Function``) when :func:`torch_enabled` says so.

``NUMBA_NUM_THREADS``, when set, must be a positive integer: anything else raises
:class:`~infoloss.InfolossError` on first fast-path use, before numba is imported (numba itself
would warn and ignore a non-number, and fail with a traceback on its import for 0 or a negative
count). Importing the kernel module starts numba's thread pool (its "Threads" section chooses a
fork- and thread-safe threading layer).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import numpy as np

_kernels: ModuleType | None = None
_tried = False
_disabled_depth = 0


def _check_num_threads_env() -> None:
    """Raise :class:`~infoloss.InfolossError` for a ``NUMBA_NUM_THREADS`` that is set but not a
    positive integer (numba reads it once, at its import)."""
    value = os.environ.get("NUMBA_NUM_THREADS")
    if value is None:
        return
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        from .errors import InfolossError

        raise InfolossError(
            "the environment variable `NUMBA_NUM_THREADS` (the size of numba's thread pool) must "
            f"be a positive integer; got {value!r}"
        )


def kernels() -> ModuleType | None:
    """The kernel module, imported on first use; ``None`` when numba is unavailable.

    Raises :class:`~infoloss.InfolossError` for an invalid ``NUMBA_NUM_THREADS`` (on every
    call until it is fixed, since numba reads it at import).
    """
    global _kernels, _tried
    if not _tried:
        _check_num_threads_env()
        _tried = True
        try:
            import numba  # noqa: F401
        except ImportError as e:
            warnings.warn(
                f"infoloss: numba could not be imported ({e}); the slower generic NumPy path is used",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        from . import _numba_kernels  # starts numba's thread pool (its "Threads" section)

        _kernels = _numba_kernels
    return _kernels


def _env_disabled() -> bool:
    v = os.environ.get("INFOLOSS_DISABLE_FAST", "")
    return v not in ("", "0")


def enabled(*arrays: Any) -> bool:
    """True when every given array (``None`` ignored) is a NumPy float32/float64 ndarray and the
    fast path is available and not disabled."""
    if _disabled_depth or _env_disabled():
        return False
    dtype = None
    for a in arrays:
        if a is None:
            continue
        if type(a) is not np.ndarray or a.dtype not in (np.float32, np.float64):
            return False
        dtype = a.dtype if dtype is None else dtype
    if dtype is None:
        return False
    return kernels() is not None


def torch_enabled(logits: Any, *others: Any) -> bool:
    """True when ``logits`` can take the fused kernels through :mod:`infoloss.torch`.

    ``logits`` must be a plain (not subclassed, not functorch-wrapped) strided CPU torch tensor
    of a floating dtype (float16/bfloat16 are computed in float32); every other argument must be
    ``None``, a non-array value (scalar, list) or such a CPU tensor that does not require grad
    (so autograd needs no gradient with respect to it). While ``torch.compile`` traces, only the
    static properties (type, device, dtype, requires_grad) are checked: the call then becomes a
    graph break that runs the fused path eagerly (``infoloss.torch`` is
    ``torch.compiler.disable``d).
    """
    if _disabled_depth or _env_disabled():
        return False
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(logits, torch.Tensor):
        return False
    if logits.device.type != "cpu" or logits.dtype not in (
        torch.float32,
        torch.float64,
        torch.float16,
        torch.bfloat16,
    ):
        return False
    for t in others:
        if t is None:
            continue
        if isinstance(t, torch.Tensor):
            if t.device.type != "cpu" or t.requires_grad:
                return False
        elif hasattr(t, "__array_namespace__") or isinstance(t, np.ndarray):
            return False  # another array library: the generic path reports the mix
    if torch.compiler.is_compiling():
        return True
    for t in (logits, *others):
        if isinstance(t, torch.Tensor) and not _plain_cpu_tensor(torch, t):
            return False
    return kernels() is not None


def _plain_cpu_tensor(torch: Any, t: Any) -> bool:
    if type(t) is not torch.Tensor and type(t) is not torch.nn.Parameter:
        return False
    if t.layout is not torch.strided:
        return False
    return not torch._C._functorch.is_functorch_wrapped_tensor(t)


def disabled() -> Any:  # TODO(merge): the tests' old name for _config.generic_only
    from ._config import generic_only

    return generic_only()


def rows(x: np.ndarray, axis: int) -> np.ndarray:
    """``x`` with ``axis`` moved last, as a 2-D (rows, classes) array.

    A view when ``axis`` is already last and ``x`` is C-contiguous; otherwise NumPy copies once
    (documented cost: a non-last class axis costs one copy of the input).
    """
    if axis != x.ndim - 1:
        x = np.moveaxis(x, axis, -1)
    c = x.shape[-1] if x.ndim else 1
    n = int(np.prod(x.shape[:-1])) if x.ndim > 1 else 1
    return np.ascontiguousarray(x).reshape(n, c)


def unrows(x2: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray:
    """Inverse of :func:`rows`: back to ``shape`` (the moved-axis order undone, as a view)."""
    moved = shape[:axis] + shape[axis + 1 :] + (shape[axis],)
    out = x2.reshape(moved)
    if axis != len(shape) - 1:
        out = np.moveaxis(out, -1, axis)
    return out
