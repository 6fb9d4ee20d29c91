"""Tunables of the kernels: fast-math flag sets, numba options, block and size thresholds."""

from __future__ import annotations

from typing import Any

# Fast-math flags: everything except `nnan`/`ninf` (which would break -inf handling) ...
_F = {"nsz", "arcp", "contract", "afn", "reassoc"}
# ... and for the exp/log polynomials also without `reassoc` (keeps the Cody–Waite split exact).
_FP = {"nsz", "arcp", "contract", "afn"}

# Helpers with reductions (max, sums) get `reassoc`; everything else, including the parallel
# kernels' scalar per-row arithmetic (where `reassoc` could turn (m − x_y) + log S into
# m − (x_y − log S) and lose a small loss), is compiled without it.
_JIT: dict[str, Any] = {"cache": True, "fastmath": _F, "error_model": "numpy", "nogil": True}
_JIT_NR: dict[str, Any] = dict(_JIT, fastmath=_FP)
_PJIT: dict[str, Any] = dict(_JIT_NR, parallel=True)


# Below this many elements a call runs on the calling thread only, in a serial twin of the kernel
# (:func:`_serial`) that never enters numba's threading layer: waking the thread pool costs more
# than the work (on a loaded machine a sleeping worker can take a scheduler time slice, several
# milliseconds, to start).
_PARALLEL_MIN_ELEMENTS = 1 << 17
# Gradients at least this large are written with streaming stores (they bypass the cache: for a
# gradient that would fit in the last-level cache, the caller's next read would miss instead).
_STREAM_MIN_BYTES = 32 << 20
