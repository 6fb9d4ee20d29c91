"""Fused numba kernels for the NumPy fast path (rows × classes).

Layout: :mod:`._tunables` (fast-math flag sets, numba options, block sizes and thresholds),
:mod:`._vecmath` (LLVM intrinsics and the exp/log1p polynomials), :mod:`._rows` (row primitives:
max passes, blocked exp-and-sum, scaling), :mod:`._launch` (threading layer, serial twins,
launches, scratch and gradient buffers), and one module per op family: :mod:`.softmax`,
:mod:`.sparse_ce`, :mod:`.dense_ce`, :mod:`.sigmoid_ce`, :mod:`.entropy`, :mod:`.kl` (with
:mod:`.kl_float32`), :mod:`.js`, :mod:`.focal`, :mod:`.dense_focal`. This package re-exports each
family's NumPy wrapper.

Every public function here takes 2-D ``(N, C)`` NumPy arrays (rows = examples, classes along the
last axis) of dtype float32 or float64 and returns NumPy arrays. They implement exactly the
definitions of ``docs/semantics.md`` (natural log; the caller applies ``base``, reductions and
dtype casts). :mod:`infoloss._router` decides when they are used (through the glue in :mod:`infoloss._fast`).

Design (see issue 3):

- Rows run in parallel with ``prange``. Per row the logits are read from memory once: a max pass
  (which brings the row into L2), then one pass that evaluates ``exp`` once per element, sums it
  in float64 and, when the gradient is wanted, stores it; a last in-cache pass turns the stored
  exponentials into the gradient. Max, exp-and-store and sums are separate inner loops so that
  LLVM vectorizes each of them (AVX2 on this machine).
- Large gradients of sparse cross-entropy (≥ ``_STREAM_MIN_BYTES``, and any written in place)
  take a per-thread two-stage pipeline (:func:`_k_sparse_ce_grad`): the exponentials go to one
  scratch row, and the previous row's gradient is written from it, block by block during the
  exp pass, with streaming (non-temporal) stores. A normal store first reads the line it writes
  (1.5× the traffic of a copy); interleaving spreads the writes over the compute-bound exp pass.
  Large outputs of softmax/log_softmax and the gradient of softmax entropy take the same
  pipeline; the KL kernel writes its gradients in streamed blocks.
- Max passes reduce integer keys of the floats (:func:`._vecmath._fkey`), which vectorize;
  a NaN is seen from the keys' max and min, so the result is that of a NaN-propagating max.
- numba has no vector ``exp`` (no SVML), so ``exp`` is a polynomial (Cody–Waite range reduction
  to ``2^k · e^r``, ``2^k`` added to the exponent bits): a degree-6 near-minimax polynomial in
  float32 (≤ 1.05 ulp: 1.044 measured), a degree-13 Taylor polynomial in float64 (≤ 1 ulp), and for the
  softmax KL's float32 rows that fall back to float64 a degree-9 fitted one (relative error
  ≤ 2e-14). The softmax KL's float32 rows first take a float32 exp whose argument's rounding is
  carried by a two-sum (:func:`._vecmath._exp32_diff`, < 1.1 ulp), under a per-row error
  estimate (:mod:`.kl_float32`). All vectorize. Results below about 2^-125.5 (float32) /
  2^-1021.5 (float64) are flushed to 0, as is
  ``exp(-inf)``; the polynomials are only evaluated at arguments ≤ 0 (``x − max``, ``−|x|``).
- Sums of exponentials: float32 partial sums over blocks of 512 elements, added in float64; the
  row maxima (whose exponential is exactly 1) are counted rather than summed, so that
  ``log S = log1p(S − 1)`` and the label's gradient ``q_y − 1`` keep full relative accuracy for
  confident predictions (tiny losses).
- Loops are compiled with the fast-math flags ``nsz, arcp, contract, afn`` plus ``reassoc`` only
  in the helpers whose loops are reductions (``reassoc`` lets them vectorize). Never
  ``nnan``/``ninf``: ``-inf`` logits (masked classes) and all ``-inf`` rows are part of the
  contract. The polynomials and all per-row scalar arithmetic are compiled *without*
  ``reassoc`` so LLVM cannot fold the two-constant ``ln 2`` split or reorder sums of terms of
  different sizes. Hot loops are branch-free (an LLVM ``select`` intrinsic, or indicators as
  numbers), since numba lowers conditional expressions to branches that block vectorization.
- Per-row results are float64; callers combine them in float64 outside the parallel loop.
- Non-finite logits cost nothing in the vector loops: the max pass (``llvm.maximum``, which
  propagates NaN) already sees every element, so a row's max is NaN if the row has a NaN, +inf if
  it has a +inf, −inf if it is all −inf. The per-row scalar code sends NaN and +inf rows to a NaN
  fill (value and whole gradient row, whatever the options; ignored rows stay 0), as the generic
  path does (issue 11); logsumexp returns the max itself there. −inf stays a masked class.
- Memory: the value alone needs O(N) extra memory; with the gradient, the only N×C array
  allocated is the returned gradient.
- Input layout: a row may start anywhere (any non-negative row stride, e.g. ``x[::2]`` or
  ``x[:, :k]`` are used in place, without a copy) but the classes of one row must be contiguous.
  Arrays whose class stride is not the item size (e.g. Fortran order, ``x.T``) or with a
  negative row stride are copied once to C order (``np.ascontiguousarray``).
- Threads: the kernels use numba's thread pool, sized by the environment variable
  ``NUMBA_NUM_THREADS`` at numba's import (a positive integer; anything else is an
  :class:`~infoloss.InfolossError` on first fast-path use); lower it at run time with
  ``numba.set_num_threads(k)`` (per calling thread). The pool runs on TBB (the ``tbb``
  dependency, whose library is loaded before the pool starts), which is fork-safe and
  thread-safe. An explicit ``NUMBA_THREADING_LAYER`` is respected and kept safe: under ``omp``
  (GNU OpenMP: a forked child's first parallel region kills it) every kernel runs serially in a
  forked child; under ``workqueue`` (two parallel regions at once abort the process) parallel
  regions take a lock. Problems below ``_PARALLEL_MIN_ELEMENTS`` (2^17) elements run a serial
  twin of the kernel on the calling thread and enter no parallel region at all. See the
  "threads" section (:func:`_launch`).
- Compilation happens on first use (a few seconds per kernel and dtype) and is cached on disk
  (``cache=True``), so later processes load the machine code instead of recompiling.
"""

from __future__ import annotations

from ._launch import num_threads, threading_layer  # first: starts numba's thread pool
from .dense_ce import softmax_ce
from .dense_focal import dense_focal
from .entropy import softmax_entropy_rows
from .focal import sigmoid_focal, target_logs
from .js import softmax_js_rows
from .kl import softmax_kl_rows
from .sharded_ce import shard_grad, shard_stats
from .sigmoid_ce import sigmoid_ce
from .softmax import log_softmax_rows, logsumexp_rows, softmax_rows
from .sparse_ce import sparse_softmax_ce

__all__ = [
    "dense_focal",
    "log_softmax_rows",
    "logsumexp_rows",
    "num_threads",
    "shard_grad",
    "shard_stats",
    "sigmoid_ce",
    "sigmoid_focal",
    "softmax_ce",
    "softmax_entropy_rows",
    "softmax_js_rows",
    "softmax_kl_rows",
    "softmax_rows",
    "sparse_softmax_ce",
    "target_logs",
    "threading_layer",
]
