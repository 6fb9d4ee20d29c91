"""Thread pool, launches and buffers: the threading layer, serial twins of small problems,
row views, scratch rows and gradient buffers."""

from __future__ import annotations

import math
import os
import sys
import threading
from typing import Any

import numba
import numpy as np
from numba import njit

from ...errors import InfolossError
from .. import pool as _pool
from . import _tunables
from ._tunables import _PJIT


def _pool_threads() -> int:
    """Size of numba's thread pool (``NUMBA_NUM_THREADS`` at import): every thread id of a
    parallel region is below it."""
    return int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]


def num_threads() -> int:
    """The number of threads the kernels run on (``numba.get_num_threads()``)."""
    return int(numba.get_num_threads())


# --------------------------------------------------------------------------- threads
#
# numba runs parallel regions on one of three threading layers, chosen once per process:
#
# - tbb (Intel oneTBB): fork-safe (numba joins the workers before a fork(), and the child starts
#   its own) and thread-safe (parallel regions launched from several Python threads at once).
#   numba prefers it, but only finds the `tbb` wheel's libtbb.so.12 when it is on the loader's
#   path, which a wheel's <prefix>/lib is not (numba issues 6108, 7148): without help a pip
#   install silently falls back to
# - omp (GNU OpenMP on Linux): thread-safe, not fork-safe. A forked child's first parallel
#   region kills it ("fork() called from a process already using GNU OpenMP"); multiprocessing
#   pools then hang, PyTorch DataLoader workers die;
# - workqueue: fork-safe, not thread-safe (two parallel regions at once abort the process).
#
# So: the `tbb` dependency's library is loaded before the pool starts (:func:`_make_tbb_loadable`)
# and numba's choice is kept (an explicit NUMBA_THREADING_LAYER or a layer already running in the
# process is respected). Whatever the layer, every launch goes through :func:`_launch`, which keeps
# the other two safe: small problems never enter a parallel region; in a child forked from an
# omp process every kernel runs serially; workqueue regions take a process-wide lock.

# The name numba loads the TBB runtime by (numba.np.ufunc.parallel._check_tbb_version_compatible).
_TBB_NAMES = {"linux": "libtbb.so.12", "darwin": "libtbb.12.dylib", "win32": "tbb12.dll"}


def _tbb_wheel_library() -> str | None:
    """Path of the TBB runtime installed by the ``tbb`` wheel, or None."""
    name = _TBB_NAMES.get(sys.platform)
    if name is None:
        return None
    from importlib import metadata

    try:
        files = metadata.distribution("tbb").files or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == name:
            path = str(f.locate())
            return path if os.path.exists(path) else None
    return None


def _make_tbb_loadable() -> bool:
    """Load the ``tbb`` wheel's runtime into the process, so that numba's ``dlopen`` by name
    finds it (a library already loaded under that name is returned). Nothing is loaded when a TBB
    runtime is already in the process or the wheel is not installed. Returns whether a TBB
    runtime is now loaded or loadable by name (numba still checks its version)."""
    import ctypes

    name = _TBB_NAMES.get(sys.platform)
    if name is None:
        return False
    noload = getattr(os, "RTLD_NOLOAD", None)
    if noload is not None:
        try:
            ctypes.CDLL(name, mode=noload)  # already loaded (never loads it)
            return True
        except OSError:
            pass
    path = _tbb_wheel_library()
    try:
        if path is None:  # a runtime the loader finds by itself (system, conda), if any
            ctypes.CDLL(name)
        else:
            ctypes.CDLL(path, mode=getattr(os, "RTLD_GLOBAL", 0))
    except OSError:
        return False
    return True


def _start_thread_pool() -> str:
    """Start numba's thread pool (if no parallel code has yet) and return its threading layer."""
    try:
        return str(numba.threading_layer())  # already running: the user's numba code chose
    except ValueError:  # "Threading layer is not initialized."
        pass
    _make_tbb_loadable()
    try:
        numba.get_num_threads()  # launches the pool on the layer numba selects
    except ValueError as e:  # e.g. NUMBA_THREADING_LAYER=tbb without a usable TBB
        layer = numba.config.THREADING_LAYER  # type: ignore[attr-defined]
        raise InfolossError(
            f"numba could not start its thread pool (NUMBA_THREADING_LAYER={layer!r}): {e}"
        ) from None
    return str(numba.threading_layer())


_LAYER = _start_thread_pool()
# Set in a process forked from one whose layer is not fork-safe: every kernel runs serially.
_serial_only = False
# One workqueue parallel region at a time in the process (None on the thread-safe layers).
_region_lock = threading.Lock() if _LAYER == "workqueue" else None


def _forked_child() -> None:
    global _serial_only
    _serial_only = True


if _LAYER == "omp" and sys.platform.startswith("linux"):  # GNU OpenMP (elsewhere fork-safe)
    os.register_at_fork(after_in_child=_forked_child)


def threading_layer() -> str:
    """numba's threading layer in this process (``"tbb"``, ``"omp"`` or ``"workqueue"``)."""
    return _LAYER


_twins: dict[Any, Any] = {}
_twins_lock = threading.Lock()


def _serial(kernel: Any) -> Any:
    """The serial twin of a parallel kernel: the same function compiled without
    ``parallel=True`` (``prange`` is ``range``, ``numba.get_thread_id()`` is 0), so it never
    enters the threading layer. Compiled on first use, cached on disk under its own name."""
    twin = _twins.get(kernel)
    if twin is None:
        with _twins_lock:
            twin = _twins.get(kernel)
            if twin is None:
                f = kernel.py_func
                g = type(f)(
                    f.__code__, f.__globals__, f.__name__ + "_serial", f.__defaults__, f.__closure__
                )
                g.__qualname__ = f.__qualname__ + "_serial"  # the disk cache's file name
                g.__doc__ = f.__doc__
                twin = njit(**dict(_PJIT, parallel=False))(g)
                _twins[kernel] = twin
    return twin


def _launch(kernel: Any, elements: int, *args: Any) -> None:
    """Run a parallel kernel: its serial twin when the problem is small (or in a child forked
    from an OpenMP process), else the parallel kernel (under the workqueue layer, one at a
    time)."""
    if elements < _tunables._PARALLEL_MIN_ELEMENTS or _serial_only:
        _serial(kernel)(*args)
    elif _region_lock is not None:
        with _region_lock:
            kernel(*args)
    else:
        kernel(*args)


def _rows_view(x: np.ndarray) -> tuple[np.ndarray, int]:
    """A read-only 1-D C-contiguous view over ``x`` (N, C) and the row stride in items.

    Row ``i`` is ``flat[i*rs : i*rs + C]``. No copy when the classes of a row are contiguous and
    the row stride is a non-negative multiple of the item size; otherwise one C-order copy.
    """
    n, c = x.shape
    isz = x.itemsize
    s0, s1 = x.strides
    if not ((s1 == isz or c <= 1) and ((s0 >= 0 and s0 % isz == 0) or n <= 1)):
        x = np.ascontiguousarray(x)
        s0 = x.strides[0]
    rs = s0 // isz if n > 1 else c
    length = (n - 1) * rs + c if n > 0 else 0
    flat = np.lib.stride_tricks.as_strided(x, shape=(length,), strides=(isz,), writeable=False)
    return flat, int(rs)


def _gs(grad_scale: float | None) -> float:
    return 0.0 if grad_scale is None else float(grad_scale)


def _zero_unscaled(g: np.ndarray | None, grad_scale: float | None) -> np.ndarray | None:
    """``grad_scale == 0`` (a mean over zero total weight, whose value is the constant 0) gives
    an all-zero gradient, also in rows whose nan or +inf logits or nan labels would make it nan
    (as the generic path's ``safe_divide``). Only then is the gradient written a second time."""
    if g is not None and grad_scale is not None and float(grad_scale) == 0.0:
        g[...] = 0
    return g


def _ro(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


def _scratch(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised C-contiguous array starting on a 64-byte boundary (a cache line).

    NumPy only guarantees 16 bytes; a kernel scratch row that is 16 bytes off a 32-byte boundary
    makes every other AVX2 access split across two cache lines, and the streaming sparse
    cross-entropy kernel, which writes and re-reads its scratch row, then ran 30% slower (4096 ×
    32000: 54 ms against 41 ms with an aligned row) — in about half of all allocations.
    """
    dt = np.dtype(dtype)
    nbytes = math.prod(shape) * dt.itemsize
    raw = np.empty(nbytes + 64, np.uint8)
    off = -raw.ctypes.data % 64
    return raw[off : off + nbytes].view(dt).reshape(shape)


def _grad_buffer(x: np.ndarray, want_grad: bool, out: np.ndarray | None) -> np.ndarray:
    """The gradient's buffer: ``out`` (checked) when given, else a new array ((1, 1) if unused)."""
    n, c = x.shape
    if want_grad and out is not None:
        if out.shape != (n, c) or out.dtype != x.dtype or not out.flags.c_contiguous:
            raise ValueError("`out` must be a C-contiguous array of the logits' shape and dtype")
        return out
    if want_grad:
        return _pool.empty((n, c), x.dtype)  # large gradients reuse a cached buffer
    return np.empty((1, 1), x.dtype)


def _check2d(x: np.ndarray) -> None:
    if x.ndim != 2 or x.dtype not in (np.float32, np.float64):
        raise TypeError(f"expected a 2-D float32/float64 array, got {x.dtype} of shape {x.shape}")


_ONE = _ro(np.ones(1, np.float64))
