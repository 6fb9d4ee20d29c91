"""Fused numba kernels for the NumPy fast path (rows × classes).

Every public function here takes 2-D ``(N, C)`` NumPy arrays (rows = examples, classes along the
last axis) of dtype float32 or float64 and returns NumPy arrays. They implement exactly the
definitions of ``docs/semantics.md`` (natural log; the caller applies ``base``, reductions and
dtype casts). :mod:`infoloss._dispatch` decides when they are used.

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
- numba has no vector ``exp`` (no SVML), so ``exp`` is a polynomial (Cody–Waite range reduction
  to ``2^k · e^r``, ``2^k`` added to the exponent bits): a degree-6 near-minimax polynomial in
  float32 (≤ 1.05 ulp: 1.044 measured), a degree-13 Taylor polynomial in float64 (≤ 1 ulp). Both
  vectorize. Results below about 2^-125.5 (float32) / 2^-1021.5 (float64) are flushed to 0, as is
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

import math
import os
import sys
import threading
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from ._fast import pool as _pool
from .errors import InfolossError

__all__ = [
    "log_softmax_rows",
    "logsumexp_rows",
    "sigmoid_ce",
    "softmax_ce",
    "softmax_entropy_rows",
    "softmax_kl_rows",
    "softmax_rows",
    "sparse_softmax_ce",
]

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


def _pool_threads() -> int:
    """Size of numba's thread pool (``NUMBA_NUM_THREADS`` at import): every thread id of a
    parallel region is below it."""
    return int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]


def num_threads() -> int:
    """The number of threads the kernels run on (``numba.get_num_threads()``)."""
    return int(numba.get_num_threads())


# --------------------------------------------------------------------------- LLVM intrinsics


def _float_suffix(t: ir.Type) -> str:
    return ".f32" if isinstance(t, ir.FloatType) else ".f64"


@intrinsic
def _fmaximum(typingctx, a, b):
    """``llvm.maximum``: IEEE maximum that propagates NaN; vectorizes as a reduction (vmaxps)."""
    if not (isinstance(a, types.Float) and a == b):
        return None
    sig = a(a, b)

    def codegen(context, builder, signature, args):
        t = args[0].type
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(t, [t, t]), "llvm.maximum" + _float_suffix(t)
        )
        return builder.call(fn, args)

    return sig, codegen


@intrinsic
def _where(typingctx, cond, a, b):
    """``a if cond else b`` as one LLVM ``select`` (a Python conditional expression becomes
    branches, which can keep a loop from vectorizing)."""
    if not (isinstance(cond, types.Boolean) and a == b):
        return None
    sig = a(cond, a, b)

    def codegen(context, builder, signature, args):
        return builder.select(args[0], args[1], args[2])

    return sig, codegen


@intrinsic
def _rint(typingctx, a):
    """``llvm.rint`` (round half to even in the default mode; vroundps)."""
    if not isinstance(a, types.Float):
        return None
    sig = a(a)

    def codegen(context, builder, signature, args):
        t = args[0].type
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(t, [t]), "llvm.rint" + _float_suffix(t)
        )
        return builder.call(fn, args)

    return sig, codegen


def _prefetch_intrinsic(write: int) -> Any:
    """An intrinsic ``f(array_1d, index)`` issuing ``llvm.prefetch`` for ``&array[index]``
    (``write`` = 1: the line will be written). A hint only: it never faults and changes no value."""

    @intrinsic
    def prefetch(typingctx, ary, idx):
        if not (isinstance(ary, types.Array) and ary.ndim == 1 and isinstance(idx, types.Integer)):
            return None
        sig = types.void(ary, idx)

        def codegen(context, builder, signature, args):
            aryty = signature.args[0]
            a = context.make_array(aryty)(context, builder, args[0])
            ptr = cgutils.get_item_pointer(
                context, builder, aryty, a, [args[1]], wraparound=False, boundscheck=False
            )
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fn = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                "llvm.prefetch.p0",
            )
            # (address, read/write, locality 3 = keep in all cache levels, data cache)
            builder.call(
                fn,
                [builder.bitcast(ptr, i8p), i32(write), i32(3), i32(1)],
            )
            return context.get_dummy_value()

        return sig, codegen

    return prefetch


_prefetch_read = _prefetch_intrinsic(0)
_prefetch_write = _prefetch_intrinsic(1)


def _stream_intrinsic(scaled: bool) -> Any:
    """An intrinsic ``f(src, dst)`` (``scaled``: ``f(src, dst, a)``) doing ``dst[:] = src[:]``
    (times the scalar ``a``) for 1-D contiguous float arrays of one dtype and length, with
    non-temporal ("streaming") vector stores: the written lines go to memory without first
    being read into the cache (a normal store reads each line before writing it: 1.5× the
    traffic). Elements before ``dst``'s first 32-byte boundary and after its last one use plain
    stores. Streaming stores are weakly ordered: the writer calls :func:`_fence` before the
    data is used by another thread."""

    def typer(src: Any, dst: Any, *rest: Any) -> Any:
        ok = (
            isinstance(src, types.Array)
            and isinstance(dst, types.Array)
            and src.ndim == dst.ndim == 1
            and src.layout == dst.layout == "C"
            and src.dtype == dst.dtype
            and src.dtype in (types.float32, types.float64)
            and (not scaled or rest[0] == src.dtype)
        )
        return types.void(src, dst, *rest) if ok else None

    def codegen(context, builder, signature, args):
        sty, dty = signature.args[:2]
        s = context.make_array(sty)(context, builder, args[0])
        d = context.make_array(dty)(context, builder, args[1])
        esz = 4 if sty.dtype == types.float32 else 8
        width = 32 // esz
        vt = ir.VectorType(ir.FloatType() if esz == 4 else ir.DoubleType(), width)
        i64 = ir.IntType(64)
        n = builder.extract_value(d.shape, 0)
        sp, dp = s.data, d.data
        if scaled:
            av = args[2]
            avv = ir.Constant(vt, ir.Undefined)
            for k in range(width):
                avv = builder.insert_element(avv, av, ir.IntType(32)(k))

        def plain(j):
            v = builder.load(builder.gep(sp, [j]))
            builder.store(builder.fmul(v, av) if scaled else v, builder.gep(dp, [j]))

        # plain stores up to dst's first 32-byte boundary
        mis = builder.and_(builder.sub(i64(0), builder.ptrtoint(dp, i64)), i64(31))
        head = builder.udiv(mis, i64(esz))
        head = builder.select(builder.icmp_unsigned("<", head, n), head, n)
        with cgutils.for_range(builder, head) as loop:
            plain(loop.index)
        nvec = builder.udiv(builder.sub(n, head), i64(width))
        md = builder.module.add_metadata([ir.IntType(32)(1)])
        with cgutils.for_range(builder, nvec) as loop:
            j = builder.add(head, builder.mul(loop.index, i64(width)))
            v = builder.load(builder.bitcast(builder.gep(sp, [j]), vt.as_pointer()), align=esz)
            if scaled:
                v = builder.fmul(v, avv)
            st = builder.store(v, builder.bitcast(builder.gep(dp, [j]), vt.as_pointer()), align=32)
            st.set_metadata("nontemporal", md)
        start = builder.add(head, builder.mul(nvec, i64(width)))
        with cgutils.for_range(builder, builder.sub(n, start)) as loop:
            plain(builder.add(start, loop.index))
        return context.get_dummy_value()

    if scaled:

        def stream(typingctx, src, dst, a):
            return typer(src, dst, a), codegen

    else:

        def stream(typingctx, src, dst):  # type: ignore[misc]
            return typer(src, dst), codegen

    return intrinsic(stream)


_stream_copy = _stream_intrinsic(scaled=False)
_stream_scale = _stream_intrinsic(scaled=True)


@intrinsic
def _fence(typingctx):
    """A full memory fence (``mfence`` on x86): the streaming stores issued before it are
    ordered ahead of every later memory operation (portable LLVM ``fence seq_cst``)."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _bits_f32(typingctx, k):
    """Reinterpret the low 32 bits of an integer as a float32."""
    if not isinstance(k, types.Integer):
        return None
    sig = types.float32(k)

    def codegen(context, builder, signature, args):
        v = args[0]
        if v.type.width > 32:
            v = builder.trunc(v, ir.IntType(32))
        elif v.type.width < 32:
            v = builder.sext(v, ir.IntType(32))
        return builder.bitcast(v, ir.FloatType())

    return sig, codegen


@intrinsic
def _bits_f64(typingctx, k):
    """Reinterpret a 64-bit integer as a float64."""
    if not isinstance(k, types.Integer):
        return None
    sig = types.float64(k)

    def codegen(context, builder, signature, args):
        v = args[0]
        if v.type.width < 64:
            v = builder.sext(v, ir.IntType(64))
        return builder.bitcast(v, ir.DoubleType())

    return sig, codegen


# --------------------------------------------------------------------------- polynomials


@intrinsic
def _f32_bits(typingctx, v):
    """Reinterpret a float32 as an int32."""
    if v != types.float32:
        return None
    sig = types.int32(v)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


@intrinsic
def _f64_bits(typingctx, v):
    """Reinterpret a float64 as an int64."""
    if v != types.float64:
        return None
    sig = types.int64(v)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


# exp(x) = 2^k e^r with k = round(x / ln 2) and |r| <= ln2/2 (Cody–Waite: ln 2 = hi + lo, hi
# with trailing zero bits so that k*hi is exact). k is rounded with the 1.5*2^p "magic number"
# (x*log2e + M has k in its low mantissa bits; NaN and ±inf stay well-defined, unlike a
# float->int conversion), e^r is a polynomial and 2^k is added to the exponent field of e^r.
# Results with k < -125 (float32: x < −87.0, exp(x) < 2^-125.5) / k < -1021 (float64: x < −708.1)
# are flushed to +0, as is exp(-inf). The flush is an integer mask on k (an integer compare
# leaves the two FMA pipes, which the polynomial keeps busy, free: 5% faster than a float
# compare on AVX2). These polynomials are only called with x <= 0 (x − max, or −|x|). A NaN x
# gives NaN or 0 (k is then meaningless): callers that can see NaN use `_vexp_nan`.
_M32 = 12582912.0  # 1.5 * 2^23
_M64 = 6755399441055744.0  # 1.5 * 2^52


@njit(cache=True, fastmath=_FP, error_model="numpy")
def _exp32(x):
    mg = np.float32(_M32)
    kb = x * np.float32(1.44269504088896341) + mg
    kf = kb - mg
    r = x - kf * np.float32(0.693359375)
    r = r - kf * np.float32(-2.12194440e-4)
    # degree-6 near-minimax polynomial for e^r on |r| <= ln2/2 (error 2e-9 < 1/30 ulp), p(0) = 1
    p = np.float32(0.0013843650231137872)
    p = p * r + np.float32(0.008374156430363655)
    p = p * r + np.float32(0.04166800156235695)
    p = p * r + np.float32(0.16666431725025177)
    p = p * r + np.float32(0.4999999403953552)
    p = p * r + np.float32(1.0)
    p = p * r + np.float32(1.0)
    k = _f32_bits(kb) - _f32_bits(mg)  # (-inf: kb = -inf has negative bits, k < -125)
    return _bits_f32((_f32_bits(p) + (k << np.int32(23))) & -np.int32(k >= np.int32(-125)))


@njit(cache=True, fastmath=_FP, error_model="numpy")
def _exp64_neg(x):
    mg = _M64
    kb = x * 1.4426950408889634074 + mg
    kf = kb - mg
    r = x - kf * 6.93145751953125e-1
    r = r - kf * 1.42860682030941723212e-6
    # Taylor series to degree 13: |r|^14/14! < 4e-18 on |r| <= ln2/2
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * (r * r) + r + 1.0
    k = _f64_bits(kb) - _f64_bits(mg)
    res = _f64_bits(p) + (k << 52)
    return _bits_f64(res & -np.int64(k >= -1021))


@njit(cache=True, fastmath=_FP, error_model="numpy")
def _exp32_nan(x):
    """:func:`_exp32` that also maps NaN to NaN."""
    return _where(x != x, x, _exp32(x))


@njit(cache=True, fastmath=_FP, error_model="numpy")
def _exp64_neg_nan(x):
    """:func:`_exp64_neg` that also maps NaN to NaN."""
    return _where(x != x, x, _exp64_neg(x))


@njit(cache=True, fastmath=_FP, error_model="numpy")
def _log1p_unit32(t):
    # log1p(t) for t in [0, 1]: 2 atanh(s), s = t/(2+t) in [0, 1/3]; full relative accuracy
    # for tiny t. Series in w = s^2 to w^6: truncation < 1.5e-8 relative.
    s = t / (np.float32(2.0) + t)
    w = s * s
    p = np.float32(1.0 / 13.0)
    p = p * w + np.float32(1.0 / 11.0)
    p = p * w + np.float32(1.0 / 9.0)
    p = p * w + np.float32(1.0 / 7.0)
    p = p * w + np.float32(1.0 / 5.0)
    p = p * w + np.float32(1.0 / 3.0)
    return (s + s) + (s + s) * (w * p)


@njit(cache=True, fastmath=_FP, error_model="numpy")
def _log1p_unit64(t):
    s = t / (2.0 + t)
    w = s * s  # series to w^16: truncation < 2e-17 relative
    p = 1.0 / 33.0
    p = p * w + 1.0 / 31.0
    p = p * w + 1.0 / 29.0
    p = p * w + 1.0 / 27.0
    p = p * w + 1.0 / 25.0
    p = p * w + 1.0 / 23.0
    p = p * w + 1.0 / 21.0
    p = p * w + 1.0 / 19.0
    p = p * w + 1.0 / 17.0
    p = p * w + 1.0 / 15.0
    p = p * w + 1.0 / 13.0
    p = p * w + 1.0 / 11.0
    p = p * w + 1.0 / 9.0
    p = p * w + 1.0 / 7.0
    p = p * w + 1.0 / 5.0
    p = p * w + 1.0 / 3.0
    return (s + s) + (s + s) * (w * p)


_LN2 = 0.6931471805599453


@njit(cache=True, fastmath=_FP, error_model="numpy")
def _log1p_pos64(d):
    """log1p(d) for finite d ≥ 0, branch-free (vectorizable): the series of
    :func:`_log1p_unit64` on [0, 1]; above 1, 1 + d = 2^k f with f in [1, 2) read from the
    exponent bits, log1p(d) = k ln 2 + log1p(f − 1)."""
    small = _log1p_unit64(_where(d < 1.0, d, 1.0))
    bits = _f64_bits(1.0 + d)
    k = (bits >> 52) - 1023
    f = _bits_f64((bits & 0xFFFFFFFFFFFFF) | 0x3FF0000000000000)
    big = np.float64(k) * _LN2 + _log1p_unit64(f - 1.0)
    return _where(d <= 1.0, small, big)


def _by_dtype(f32: Any, f64: Any, doc: str) -> Any:
    """A jit-callable ``f(x)`` that runs ``f32`` for a float32 and ``f64`` for a float64 ``x``
    (chosen at compile time; the vectorizable polynomials below)."""

    def stub(x):  # pragma: no cover - replaced by the overload
        raise NotImplementedError

    stub.__doc__ = doc

    @overload(stub, jit_options={"fastmath": _FP, "error_model": "numpy"})
    def _ov(x):
        if x == types.float32:
            return lambda x: f32(x)
        if x == types.float64:
            return lambda x: f64(x)
        return None

    return stub


_vexp = _by_dtype(_exp32, _exp64_neg, "exp(x) for x <= 0 and not NaN, in the dtype of x.")
_vexp_nan = _by_dtype(_exp32_nan, _exp64_neg_nan, ":func:`_vexp` that maps NaN to NaN.")
_vlog1p_unit = _by_dtype(_log1p_unit32, _log1p_unit64, "log1p(x) for x in [0, 1].")


def _like(v, ref):  # pragma: no cover
    raise NotImplementedError


@overload(_like, inline="always")
def _like_ov(v, ref):
    """``v`` converted to the float type of the scalar ``ref``."""
    if ref == types.float32:
        return lambda v, ref: np.float32(v)
    return lambda v, ref: np.float64(v)


# --------------------------------------------------------------------------- row helpers
# `xr` is one row (1-D, C-contiguous). Each helper is one vectorizable inner loop.


@njit(**_JIT)
def _row_max(xr):
    m = xr[0]
    for j in range(xr.shape[0]):
        m = _fmaximum(m, xr[j])
    return m


# Sums of exponentials S = Σ_j exp(x_j − m). Blocks of _BLK elements are summed in the row's
# dtype (8 float32 lanes, a few interleaved accumulators, so each partial sum has only a few
# dozen terms) and the block sums are added in float64; this keeps the loop at the full float32
# vector width. The maxima (x_j == m, whose exponential is exactly 1) are counted instead of
# summed, so that d = S − 1 = (count − 1) + Σ_{x_j < m} e_j is accurate even when it is tiny
# (a confident prediction: loss = log1p(d) keeps full relative accuracy in float32). Counting
# costs four vector operations per element, so it is done only in the blocks that can hold a
# maximum: the max pass also returns the first and last block whose own maximum equals the
# row's (every other block is summed plainly; the results are identical, since there the
# indicator is 0).
_BLK = 512
# Rows this short never reach the vector loops (16 float32 per iteration); they take a plain
# scalar loop (18% less time per row at C = 10).
_SHORT = 16


@njit(**_JIT)
def _row_max_span(xr):
    """(m, lo, hi): the row's maximum (NaN if any element is NaN) and the first and last block
    (of _BLK elements) whose maximum equals m."""
    n = xr.shape[0]
    m = xr[0]
    if n <= _SHORT:
        for j in range(n):
            m = _fmaximum(m, xr[j])
        return m, 0, 0
    lo = 0
    hi = 0
    b = 0
    for b0 in range(0, n, _BLK):
        mb = xr[b0]
        for j in range(b0, min(b0 + _BLK, n)):
            mb = _fmaximum(mb, xr[j])
        if mb > m:
            m = mb
            lo = b
            hi = b
        elif mb == m:
            hi = b
        else:
            m = _fmaximum(m, mb)  # NaN propagates
        b += 1
    return m, lo, hi


@njit(cache=True, fastmath=_FP, error_model="numpy")
def _d_plus(a, b, c):
    """(a − b) + c in exactly this order: compiled without `reassoc`, so LLVM cannot rewrite
    (count − 1) + Σ into (count + Σ) − 1, which would lose the digits of a tiny Σ."""
    return (a - b) + c


@njit(cache=True, fastmath=_FP, error_model="numpy")
def _sub_nr(a, b):
    """a − b, compiled without `reassoc`, so that a reduction Σ (e_j − [x_j = m]) is never split
    into Σ e_j − Σ [x_j = m] (which would put the 1.0 of the maximum back into the sum)."""
    return a - b


# The loops below are written branch-free (the indicator [x_j = m] as a number) so that LLVM
# vectorizes them; a conditional inside a reduction would keep them scalar.
#
# Prefetching: while one row is summed (compute-bound: one exp per element), the same block of
# the *next* row (`xn`, and its gradient row `gn`) is prefetched, so that the next row's max pass
# reads from cache instead of waiting for memory (prange hands each thread a contiguous range
# of rows, so the next row is almost always the same thread's).


@njit(**_JIT)
def _prefetch_block(xn, gn, b0, b1, want_grad):
    for j in range(b0, b1, 16):  # one 64-byte line holds 16 float32 (8 float64: every other)
        _prefetch_read(xn, j)
    if want_grad:
        for j in range(b0, b1, 16):
            _prefetch_write(gn, j)
    if xn.itemsize == 8:
        for j in range(b0 + 8, b1, 16):
            _prefetch_read(xn, j)
        if want_grad:
            for j in range(b0 + 8, b1, 16):
                _prefetch_write(gn, j)


@njit(**_JIT)
def _block_exp_sum(xb, m, count):
    """One block: (Σ (e_j − [x_j = m]), Σ [x_j = m]) when ``count``, else (Σ e_j, 0), with
    e_j = exp(x_j − m) summed in the block's dtype."""
    t = _like(0.0, m)
    k = _like(0.0, m)
    if count:
        for j in range(xb.shape[0]):
            v = xb[j]
            top = _like(v == m, m)
            t += _sub_nr(_vexp(v - m), top)  # the maxima contribute exp(0) − 1 = 0
            k += top
    else:
        for j in range(xb.shape[0]):
            t += _vexp(xb[j] - m)
    return t, k


@njit(**_JIT)
def _block_exp_store_sum(xb, m, count, out):
    """:func:`_block_exp_sum`, also storing e_j into ``out`` (which must not overlap ``xb``:
    LLVM keeps a loop over overlapping arrays scalar)."""
    t = _like(0.0, m)
    k = _like(0.0, m)
    if count:
        for j in range(xb.shape[0]):
            v = xb[j]
            e = _vexp(v - m)
            out[j] = e
            top = _like(v == m, m)
            t += _sub_nr(e, top)
            k += top
    else:
        for j in range(xb.shape[0]):
            e = _vexp(xb[j] - m)
            out[j] = e
            t += e
    return t, k


@njit(**_JIT)
def _exp_sum(xr, m, lo, hi, xn):
    """(S, S − 1) for one row with a finite max m (``lo``, ``hi`` from :func:`_row_max_span`)."""
    n = xr.shape[0]
    if n <= _SHORT:  # one block, no prefetching
        t, k = _block_exp_sum(xr, m, True)
        return np.float64(k) + np.float64(t), _d_plus(np.float64(k), 1.0, np.float64(t))
    s = 0.0
    cnt = 0.0
    b = 0
    for b0 in range(0, n, _BLK):
        b1 = min(b0 + _BLK, n)
        _prefetch_block(xn, xn, b0, b1, False)
        t, k = _block_exp_sum(xr[b0:b1], m, lo <= b <= hi)
        s += t
        cnt += k
        b += 1
    return cnt + s, _d_plus(cnt, 1.0, s)


@njit(**_JIT)
def _exp_store_sum(xr, m, lo, hi, out, xn, gn):
    """Like :func:`_exp_sum`, also storing exp(x_j − m) into ``out``."""
    n = xr.shape[0]
    if n <= _SHORT:
        t, k = _block_exp_store_sum(xr, m, True, out)
        return np.float64(k) + np.float64(t), _d_plus(np.float64(k), 1.0, np.float64(t))
    s = 0.0
    cnt = 0.0
    b = 0
    for b0 in range(0, n, _BLK):
        b1 = min(b0 + _BLK, n)
        _prefetch_block(xn, gn, b0, b1, True)
        t, k = _block_exp_store_sum(xr[b0:b1], m, lo <= b <= hi, out[b0:b1])
        s += t
        cnt += k
        b += 1
    return cnt + s, _d_plus(cnt, 1.0, s)


@njit(**_JIT_NR)
def _scale(out, a):
    for j in range(out.shape[0]):
        out[j] = out[j] * a


@njit(**_JIT_NR)
def _scale_shift(out, a, b):
    for j in range(out.shape[0]):
        out[j] = out[j] * a - b


@njit(**_JIT_NR)
def _scale_shift_w(out, a, b, w):
    # out = a*out - b*w, w float64 (C,) class weights
    for j in range(out.shape[0]):
        out[j] = out[j] * a - _like(b * w[j], a)


@njit(**_JIT)
def _gap_sum(xr, m):
    """Σ_j (m − x_j) in float64 (each term ≥ 0; +inf for a −inf logit)."""
    s = 0.0
    mm = np.float64(m)
    for j in range(xr.shape[0]):
        s += mm - np.float64(xr[j])
    return s


@njit(**_JIT)
def _gap_sum_w(xr, m, w):
    """Σ_{w_j ≠ 0} w_j (m − x_j) in float64 (a zero weight times a −inf logit is 0)."""
    s = 0.0
    mm = np.float64(m)
    for j in range(xr.shape[0]):
        wj = w[j]
        s += wj * (mm - np.float64(xr[j])) if wj != 0.0 else 0.0
    return s


@njit(**_JIT_NR)
def _fill(out, v):
    for j in range(out.shape[0]):
        out[j] = v


@njit(**_JIT_NR)
def _finite(m):
    return m > -np.inf and m < np.inf


# Non-finite logits. The max pass uses llvm.maximum, which propagates NaN, so a row's max is NaN
# if the row holds a NaN, else +inf if it holds a +inf, else −inf for an all −inf row (and finite
# otherwise): the vector loops never test for non-finite values. A NaN or +inf max sends the row
# to a NaN fill in the per-row scalar code (value and gradient row); only an all −inf row (no
# distribution) keeps a meaning of its own.
@njit(**_JIT_NR)
def _bad_max(m):
    """True for a NaN or +inf row max: the row has a NaN or a +inf logit."""
    return m != m or m == np.inf


# --------------------------------------------------------------------------- activations


@njit(**_PJIT)
def _k_lse(xf, rs, n, c, out):
    for i in prange(n):
        xr = xf[i * rs : i * rs + c]
        i1 = min(np.int64(i) + 1, n - 1)
        m, lo, hi = _row_max_span(xr)
        if _finite(m):
            xn = xf[i1 * rs : i1 * rs + c]
            out[i] = np.float64(m) + math.log1p(_exp_sum(xr, m, lo, hi, xn)[1])
        else:
            # the max itself: nan if the row has a nan (llvm.maximum propagates it), else +inf
            # if it has a +inf, else (all −inf) −inf
            out[i] = np.float64(m)


@njit(**_PJIT)
def _k_softmax(xf, rs, n, c, log, out):
    for i in prange(n):
        xr = xf[i * rs : i * rs + c]
        orow = out[i]
        i1 = min(np.int64(i) + 1, n - 1)
        xn = xf[i1 * rs : i1 * rs + c]
        m, lo, hi = _row_max_span(xr)
        if _finite(m):
            if log:
                ls = _like(math.log1p(_exp_sum(xr, m, lo, hi, xn)[1]), m)
                for j in range(c):
                    orow[j] = (xr[j] - m) - ls  # both terms ≤ 0: no cancellation
            else:
                s, _ = _exp_store_sum(xr, m, lo, hi, orow, xn, out[i1])
                _scale(orow, _like(1.0 / s, m))
        elif m == -np.inf:  # all −inf: no distribution (log_softmax −inf, softmax 0)
            _fill(orow, _like(-np.inf if log else 0.0, m))
        else:  # a NaN (m is NaN: llvm.maximum propagates it) or a +inf logit: the row is NaN
            _fill(orow, _like(np.nan, m))


# Below this many elements a call runs on the calling thread only, in a serial twin of the kernel
# (:func:`_serial`) that never enters numba's threading layer: waking the thread pool costs more
# than the work (on a loaded machine a sleeping worker can take a scheduler time slice, several
# milliseconds, to start).
_PARALLEL_MIN_ELEMENTS = 1 << 17
# Gradients at least this large are written with streaming stores (they bypass the cache: for a
# gradient that would fit in the last-level cache, the caller's next read would miss instead).
_STREAM_MIN_BYTES = 32 << 20


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
    if elements < _PARALLEL_MIN_ELEMENTS or _serial_only:
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


def logsumexp_rows(x: np.ndarray) -> np.ndarray:
    """log Σ_c exp(x_ic) per row, (N,) of ``x.dtype``; −inf for an all −inf row."""
    _check2d(x)
    n, c = x.shape
    out = np.empty(n, np.float64)
    if n and c:
        xf, rs = _rows_view(x)
        _launch(_k_lse, n * c, xf, rs, n, c, out)
    else:
        out.fill(-np.inf)
    return out.astype(x.dtype)


def log_softmax_rows(x: np.ndarray) -> np.ndarray:
    """x − logsumexp(x) per row, (N, C) of ``x.dtype``; an all −inf row gives −inf."""
    _check2d(x)
    n, c = x.shape
    out = np.empty((n, c), x.dtype)
    if n and c:
        xf, rs = _rows_view(x)
        _launch(_k_softmax, n * c, xf, rs, n, c, True, out)
    return out


def softmax_rows(x: np.ndarray) -> np.ndarray:
    """softmax per row, (N, C) of ``x.dtype``; an all −inf row gives zeros."""
    _check2d(x)
    n, c = x.shape
    out = np.empty((n, c), x.dtype)
    if n and c:
        xf, rs = _rows_view(x)
        _launch(_k_softmax, n * c, xf, rs, n, c, False, out)
    return out


# --------------------------------------------------------------------------- softmax CE


@njit(**_JIT_NR)
def _ce_terms(mf, s, dm, xy, ey, gap, coef, eps, c, sumcw, z, swi, gs):
    """One row's loss and gradient coefficients from its statistics.

    ``mf`` is the row max (float64) and ``s``, ``dm`` = S, S − 1 (see :func:`_exp_sum`); a row
    whose max is not finite passes ``mf = 0``, ``s = 1``, ``dm = 0`` (the generic path's
    lse = 0). ``xy`` is the label's logit, ``ey`` the label's stored exponential, ``gap`` the
    smoothing term Σ_j w_j (m − x_j). Returns ``(loss_i, a, b, gy)``: the gradient row is
    ``a e_j − b w_j`` except the label's entry ``gy − b w_y``.
    """
    logs = math.log1p(dm)
    lse = mf + logs
    ce = coef * ((mf - xy) + logs) if coef != 0.0 else 0.0
    if eps > 0.0:
        ce += (eps / c) * (sumcw * logs + gap)
    inv = 1.0 / s
    f = swi * gs
    a = f * (coef + eps * (sumcw / c) + 2.0 * z * lse) * inv
    b = f * (eps / c)
    # label entry a e_y − b w_y − f coef, with e_y − S = (e_y − 1) − (S − 1) kept exact
    gy = f * (coef * _d_plus(ey, 1.0, -dm) + (eps * (sumcw / c) + 2.0 * z * lse) * ey) * inv
    return swi * (ce + z * lse * lse), a, b, gy


@njit(**_JIT_NR)
def _gap(xr, m, eps, cw, has_cw):
    """The label-smoothing term Σ_j w_j (m − x_j) (0 without smoothing)."""
    if eps > 0.0:
        return _gap_sum_w(xr, m, cw) if has_cw else _gap_sum(xr, m)
    return 0.0


@njit(**_JIT_NR)
def _sparse_row(i, n, xf, rs, c, opts, want_grad, gs, loss, g):
    """Row ``i`` of :func:`_k_sparse_ce`: ``loss[i]`` and (when wanted) the gradient row,
    stored in place of the exponentials. Every read of the row precedes the first store, so the
    gradient row may be the logits' row itself (``out=x``)."""
    lab, cw, has_cw, sumcw, sw, has_sw, ignore, has_ignore, eps, z = opts
    y = lab[i]
    grow = g[i] if want_grad else g[0]
    if has_ignore and y == ignore:
        loss[i] = 0.0
        if want_grad:
            _fill(grow, _like(0.0, xf[0]))
        return
    xr = xf[i * rs : i * rs + c]
    cwy = cw[y] if has_cw else 1.0
    m, lo, hi = _row_max_span(xr)
    if _bad_max(m):  # a nan or +inf logit: nan loss and gradient, whatever the options
        loss[i] = np.nan
        if want_grad:
            _fill(grow, _like(np.nan, m))
        return
    i1 = min(np.int64(i) + 1, n - 1)
    xn = xf[i1 * rs : i1 * rs + c]
    fin = _finite(m)
    mf = np.float64(m) if fin else 0.0  # no distribution (all -inf): generic lse = 0
    xy = np.float64(xr[y])
    gap = _gap(xr, _like(mf, m), eps, cw, has_cw)
    if fin:
        if want_grad:
            s, dm = _exp_store_sum(xr, m, lo, hi, grow, xn, g[i1])
        else:
            s, dm = _exp_sum(xr, m, lo, hi, xn)
    else:
        s, dm = 1.0, 0.0
        if want_grad:
            _fill(grow, _like(0.0, m))  # the exponentials exp(−inf − 0)
    li, a, b, gy = _ce_terms(
        mf,
        s,
        dm,
        xy,
        np.float64(grow[y]) if want_grad else 0.0,
        gap,
        (1.0 - eps) * cwy,  # weight of the label's own term
        eps,
        c,
        sumcw,
        z,
        sw[i] if has_sw else 1.0,
        gs,
    )
    loss[i] = li
    if want_grad:
        mode = (2 if has_cw else 1) if eps > 0.0 else 0
        _grad_from_exp(grow, _like(a, m), b, mode, cw, y, _like(gy - b * cwy, m))


@njit(**_JIT_NR)
def _grad_from_exp(e, a, b, mode, cw, y, gyv):
    """Turn a block of stored exponentials ``e`` into the gradient, in place: ``a e_j``
    (mode 0), ``a e_j − b`` (1), ``a e_j − b w_j`` (2, ``cw`` = this block's weights) or the
    constant ``a`` (3: 0 for an ignored row, nan for a row with a nan or +inf logit); then the
    label's entry ``gyv`` at ``y`` when ``0 ≤ y < len(e)``."""
    if mode == 0:
        _scale(e, a)
    elif mode == 1:
        _scale_shift(e, a, _like(b, a))
    elif mode == 2:
        _scale_shift_w(e, a, b, cw)
    else:
        _fill(e, a)
    if 0 <= y < e.shape[0]:
        e[y] = gyv


@njit(**_JIT_NR)
def _emit_block(buf, prow, b0, b1, a, b, mode, cw, y, gyv, stream):
    """Block [b0, b1) of a finished row: its exponentials (``buf``, scratch) become the
    gradient (:func:`_grad_from_exp`), which is copied to the row's output ``prow``, with
    streaming stores when ``stream``."""
    blk = buf[b0:b1]
    dst = prow[b0:b1]
    if stream and mode == 0:  # the common case in one pass: dst = a·e, then the label's entry
        yb = y - b0
        if 0 <= yb < b1 - b0:
            _stream_scale(blk[:yb], dst[:yb], a)
            dst[yb] = gyv
            _stream_scale(blk[yb + 1 :], dst[yb + 1 :], a)
        else:
            _stream_scale(blk, dst, a)
        return
    _grad_from_exp(blk, a, b, mode, cw[b0:b1] if mode == 2 else cw, y - b0, gyv)
    if stream:
        _stream_copy(blk, dst)
    else:
        for j in range(b1 - b0):
            dst[j] = blk[j]


@njit(**_JIT)
def _exp_store_sum_emit(xr, m, lo, hi, buf, xn, emit, prow, a, b, mode, cw, y, gyv, stream):
    """:func:`_exp_store_sum` into ``buf``, which (when ``emit``) still holds the previous row's
    exponentials: block by block, those are first written out as that row's gradient
    (:func:`_emit_block` into ``prow``), then replaced by this row's. The output's stores are
    thus spread over this row's exp pass, which is compute-bound, instead of coming in one
    burst, and one scratch row serves both rows."""
    n = xr.shape[0]
    s = 0.0
    cnt = 0.0
    blk = 0
    for b0 in range(0, n, _BLK):
        b1 = min(b0 + _BLK, n)
        _prefetch_block(xn, xn, b0, b1, False)
        if emit:
            _emit_block(buf, prow, b0, b1, a, b, mode, cw, y, gyv, stream)
        t, k = _block_exp_store_sum(xr[b0:b1], m, lo <= blk <= hi, buf[b0:b1])
        s += t
        cnt += k
        blk += 1
    return cnt + s, _d_plus(cnt, 1.0, s)


@njit(**_PJIT)
def _k_sparse_ce(xf, rs, n, c, opts, want_grad, gs, loss, g):
    for i in prange(n):
        _sparse_row(i, n, xf, rs, c, opts, want_grad, gs, loss, g)


# The gradient kernel. A row's gradient can only be written once its sum S is known, i.e. after
# the exp pass; writing it straight into the output costs 1.5× the output's size in memory
# traffic (each line is read before it is written) and comes in one burst per row, while the
# exp pass itself leaves the memory bus idle. So each thread works through a contiguous range of
# rows as a two-stage pipeline around one scratch row per thread (cache resident): during row i's
# exp pass, block by block, the scratch still holding row i−1's exponentials is turned into
# row i−1's gradient and copied to the output with streaming stores (no read of the
# destination), then overwritten by row i's exponentials. Row
# i−1's output may be row i−1 of the logits themselves (``out=x``): it is written only after
# that row has been read. Rows that are ignored or whose max is not finite flush the previous
# row at once.


@njit(**_PJIT)
def _k_sparse_ce_grad(xf, rs, n, c, opts, gs, loss, g, scratch, stream):
    lab, cw, has_cw, sumcw, sw, has_sw, ignore, has_ignore, eps, z = opts
    # scratch: (chunks, ≥ C) in the logits' dtype, one scratch row per chunk of rows
    nch = scratch.shape[0]
    per = (n + nch - 1) // nch
    mode = (2 if has_cw else 1) if eps > 0.0 else 0
    for t in prange(nch):
        r0 = t * per
        r1 = min(n, r0 + per)
        zero = _like(0.0, xf[0])
        # the previous row p's pending gradient: a e_j − b w_j (mode), label entry gyv at y
        p = np.int64(-1)
        pa = zero
        pb = 0.0
        pmode = 0
        py = np.int64(-1)
        pgy = zero
        for i in range(r0, r1):
            buf = scratch[t]  # row i's exponentials replace row p's, block by block
            prow = g[max(p, 0)]
            emit = p >= 0
            y = lab[i]
            xr = xf[i * rs : i * rs + c]
            if has_ignore and y == ignore:
                loss[i] = 0.0
                if emit:
                    _emit_block(buf, prow, 0, c, pa, pb, pmode, cw, py, pgy, stream)
                pa, pb, pmode, py, pgy = zero, 0.0, 3, np.int64(-1), zero
                p = i
                continue
            cwy = cw[y] if has_cw else 1.0
            m, lo, hi = _row_max_span(xr)
            if _finite(m):
                mf = np.float64(m)
                i1 = min(i + 1, r1 - 1)
                xn = xf[i1 * rs : i1 * rs + c]
                s, dm = _exp_store_sum_emit(
                    xr, m, lo, hi, buf, xn, emit, prow, pa, pb, pmode, cw, py, pgy, stream
                )
            else:  # a nan or +inf logit (nan row), or no distribution (all -inf: lse = 0)
                if emit:
                    _emit_block(buf, prow, 0, c, pa, pb, pmode, cw, py, pgy, stream)
                if _bad_max(m):  # pending: a fill (mode 3) with nan
                    loss[i] = np.nan
                    pa, pb, pmode, py, pgy = _like(np.nan, zero), 0.0, 3, np.int64(-1), zero
                    p = i
                    continue
                mf, s, dm = 0.0, 1.0, 0.0
                _fill(buf[:c], zero)  # the exponentials exp(−inf − 0)
            li, a, b, gy = _ce_terms(
                mf,
                s,
                dm,
                np.float64(xr[y]),
                np.float64(buf[y]),
                _gap(xr, _like(mf, m), eps, cw, has_cw),
                (1.0 - eps) * cwy,
                eps,
                c,
                sumcw,
                z,
                sw[i] if has_sw else 1.0,
                gs,
            )
            loss[i] = li
            pa, pb, pmode, py, pgy = _like(a, zero), b, mode, y, _like(gy - b * cwy, zero)
            p = i
        if p >= 0:
            _emit_block(scratch[t], g[p], 0, c, pa, pb, pmode, cw, py, pgy, stream)
        _fence()  # the streaming stores are complete before the kernel returns


# Short rows (C ≤ _SHORT): one row per loop iteration leaves the vector units idle (C = 10 is
# shorter than one unrolled vector iteration) and pays the per-row bookkeeping C-fold. Instead a
# tile of _TILE rows is transposed into a per-thread scratch (classes × rows) and every step —
# max, exp and sums, log1p, gradient — runs as a vector loop *across rows*. Rows whose max is not
# finite, and ignored rows, go through the row-by-row code (:func:`_sparse_row`).
_TILE = 64


@njit(**_PJIT)
def _k_sparse_ce_short(xf, rs, n, c, opts, want_grad, gs, loss, g, sx, sd):
    lab, cw, has_cw, sumcw, sw, has_sw, ignore, has_ignore, eps, z = opts
    # sx: (threads, 2C + 3, _TILE) in the logits' dtype: logits^T, exp^T (then gradient^T), and
    # the rows' max, Σ(e − [x = m]) and count of maxima; sd: (threads, 6, _TILE) float64:
    # S − 1, log S, gap, "row done elsewhere" flag, gradient scale a, shift b, label entry.
    ntiles = (n + _TILE - 1) // _TILE
    for t in prange(ntiles):
        tid = numba.get_thread_id()
        X = sx[tid]
        D = sd[tid]
        r0 = t * _TILE
        nr = min(_TILE, n - r0)
        for r in range(nr):
            base = (r0 + r) * rs
            for j in range(c):
                X[j, r] = xf[base + j]
        M = X[2 * c]
        A = X[2 * c + 1]
        K = X[2 * c + 2]
        T0 = X[0]
        for r in range(nr):
            M[r] = T0[r]
        for j in range(1, c):
            tj = X[j]
            for r in range(nr):
                M[r] = _fmaximum(M[r], tj[r])
        z0 = _like(0.0, T0[0])
        for r in range(nr):
            A[r] = z0
            K[r] = z0
        for j in range(c):
            tj = X[j]
            ej = X[c + j]
            for r in range(nr):
                v = tj[r]
                mr = M[r]
                e = _vexp(v - mr)
                ej[r] = e
                top = _like(v == mr, mr)
                A[r] += _sub_nr(e, top)
                K[r] += top
        DM = D[0]
        LG = D[1]
        GP = D[2]
        for r in range(nr):
            DM[r] = _d_plus(np.float64(K[r]), 1.0, np.float64(A[r]))
        for r in range(nr):
            LG[r] = _log1p_pos64(_where(DM[r] >= 0.0, DM[r], 0.0))  # (non-finite rows: redone)
        if eps > 0.0:
            for r in range(nr):
                GP[r] = 0.0
            for j in range(c):
                tj = X[j]
                wj = cw[j] if has_cw else 1.0
                for r in range(nr):
                    gv = wj * (np.float64(M[r]) - np.float64(tj[r]))
                    GP[r] += _where(wj != 0.0, gv, 0.0)
        for r in range(nr):
            i = r0 + r
            y = lab[i]
            m = M[r]
            if (has_ignore and y == ignore) or not _finite(m):
                _sparse_row(i, n, xf, rs, c, opts, want_grad, gs, loss, g)
                D[3, r] = 1.0
                continue
            D[3, r] = 0.0
            swi = sw[i] if has_sw else 1.0
            cwy = cw[y] if has_cw else 1.0
            coef = (1.0 - eps) * cwy
            xy = np.float64(X[y, r])
            dm = DM[r]
            logs = LG[r]
            lse = np.float64(m) + logs
            ce = coef * ((np.float64(m) - xy) + logs) if coef != 0.0 else 0.0
            if eps > 0.0:
                ce += (eps / c) * (sumcw * logs + GP[r])
            loss[i] = swi * (ce + z * lse * lse)
            if want_grad:
                inv = 1.0 / (np.float64(K[r]) + np.float64(A[r]))
                f = swi * gs
                b = f * (eps / c)
                ey = np.float64(X[c + y, r])
                D[4, r] = f * (coef + eps * (sumcw / c) + 2.0 * z * lse) * inv
                D[5, r] = b
                gy = f * (coef * _d_plus(ey, 1.0, -dm) + (eps * (sumcw / c) + 2.0 * z * lse) * ey)
                A[r] = _like(gy * inv - b * cwy, m)  # the label's entry (A is free now)
        if want_grad:
            for j in range(c):
                ej = X[c + j]
                if eps > 0.0:
                    wj = cw[j] if has_cw else 1.0
                    for r in range(nr):
                        ej[r] = ej[r] * _like(D[4, r], z0) - _like(D[5, r] * wj, z0)
                else:
                    for r in range(nr):
                        ej[r] = ej[r] * _like(D[4, r], z0)
            for r in range(nr):
                if D[3, r] != 0.0:
                    continue
                i = r0 + r
                grow = g[i]
                for j in range(c):
                    grow[j] = X[c + j, r]
                grow[lab[i]] = A[r]


def _private_labels(labels: Any, n: int, c: int, ignore_index: int | None) -> np.ndarray:
    """A private, read-only int64 copy of ``labels`` (N,), checked: every entry is in [0, C) or
    ``ignore_index``. The sparse kernels index with it and do not check bounds.

    The caller validated its own array, but another thread may change that array during the
    call; the kernels only ever see this copy, checked after it was taken, so such a race
    gives an :class:`~infoloss.InfolossError` (or the other value for a changed row), never an
    out-of-bounds access. Costs about 3 µs at N = 4096 (two reductions; three passes when
    ``ignore_index`` lies outside [0, C)).
    """
    lab = np.array(labels, dtype=np.int64).reshape(n)  # np.array copies
    if n == 0:
        return _ro(lab)
    if ignore_index is None or 0 <= ignore_index < c:
        ok = bool(lab.min() >= 0 and lab.max() < c)
    else:  # out of range (as unsigned: negatives too) only where the label is ignore_index
        out_of_range = np.count_nonzero(lab.view(np.uint64) >= c)
        ok = out_of_range == np.count_nonzero(lab == ignore_index)
    if not ok:
        bad = (lab < 0) | (lab >= c)
        if ignore_index is not None:
            bad &= lab != ignore_index
        i = int(np.flatnonzero(bad)[0])
        also = "" if ignore_index is None else f" or ignore_index ({ignore_index})"
        raise InfolossError(
            f"`labels` must hold class indices in [0, {c}){also}; found {lab[i]} at position "
            f"({i},) when the kernel read them (were they changed during the call?)"
        )
    return _ro(lab)


def sparse_softmax_ce(
    x: np.ndarray,
    labels: np.ndarray,
    class_weights: np.ndarray | None,
    sample_weights: np.ndarray | None,
    ignore_index: int | None,
    label_smoothing: float,
    z_loss: float,
    grad_scale: float | None,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Sparse softmax cross-entropy per row (``loss_i`` of docs/semantics.md) and its gradient.

    ``x`` (N, C) float32/float64; ``labels`` (N,) integers in [0, C) or ``ignore_index``
    (validated by the caller; the kernels use a private copy, checked again: see
    :func:`_private_labels`); ``class_weights`` (C,), ``sample_weights`` (N,) float64 or None.
    Returns ``(loss_rows float64 (N,), grad (N, C) x.dtype or None)``; the gradient is
    ``d(Σ_i loss_i)/dx · grad_scale``. Ignored rows: loss 0 and zero gradient. ``out``, a
    C-contiguous (N, C) array of ``x.dtype``, receives the gradient; it may be ``x`` itself
    (the logits are then overwritten by their gradient, with no N × C allocation).
    """
    _check2d(x)
    n, c = x.shape
    loss = np.empty(n, np.float64)
    want_grad = grad_scale is not None
    g = _grad_buffer(x, want_grad, out)
    in_place = False
    if want_grad and out is not None and np.may_share_memory(out, x):
        in_place = (
            out.__array_interface__["data"][0] == x.__array_interface__["data"][0]
            and out.strides == x.strides
        )
        if not in_place:
            raise ValueError("`out` overlaps `x` without being the same array")
    if n == 0 or c == 0:
        loss.fill(0.0)
        return loss, (g if want_grad else None)
    xf, rs = _rows_view(x)
    lab = _private_labels(labels, n, c, ignore_index)
    has_cw = class_weights is not None
    cw = _ro(np.ascontiguousarray(class_weights, dtype=np.float64).reshape(c)) if has_cw else _ONE
    sumcw = float(np.sum(cw)) if has_cw else float(c)
    has_sw = sample_weights is not None
    sw = _ro(np.ascontiguousarray(sample_weights, dtype=np.float64).reshape(n)) if has_sw else _ONE
    # the row options, one tuple for every sparse kernel (unpacked inside)
    opts = (
        lab,
        cw,
        has_cw,
        sumcw,
        sw,
        has_sw,
        0 if ignore_index is None else int(ignore_index),
        ignore_index is not None,
        float(label_smoothing),
        float(z_loss),
    )
    gs = _gs(grad_scale)
    stream = want_grad and g.nbytes >= _STREAM_MIN_BYTES
    if c > _SHORT and (stream or in_place):  # (in cache, a direct store is faster)
        chunks = min(n, 1 if n * c < _PARALLEL_MIN_ELEMENTS else numba.get_num_threads())
        scratch = _scratch((chunks, -(-c // 16) * 16), x.dtype)  # rows on cache lines too
        _launch(_k_sparse_ce_grad, n * c, xf, rs, n, c, opts, gs, loss, g, scratch, stream)
    elif c <= _SHORT:  # short rows: tiles vectorized across rows
        threads = _pool_threads()
        sx = _scratch((threads, 2 * c + 3, _TILE), x.dtype)
        sd = _scratch((threads, 6, _TILE), np.float64)
        _launch(_k_sparse_ce_short, n * c, xf, rs, n, c, opts, want_grad, gs, loss, g, sx, sd)
    else:
        _launch(_k_sparse_ce, n * c, xf, rs, n, c, opts, want_grad, gs, loss, g)
    return loss, _zero_unscaled(g if want_grad else None, grad_scale)


@njit(**_JIT)
def _target_stats(xr, yr, m, onem, epsc, cw, has_cw):
    """mass = Σ_j wt_j and gap = Σ_{wt_j ≠ 0} wt_j (m − x_j), wt_j = cw_j ((1−ε) y_j + ε/C)."""
    mass = 0.0
    gap = 0.0
    mm = np.float64(m)
    if has_cw:
        for j in range(xr.shape[0]):
            wt = (onem * np.float64(yr[j]) + epsc) * cw[j]
            mass += wt
            gap += wt * (mm - np.float64(xr[j])) if wt != 0.0 else 0.0
    else:
        for j in range(xr.shape[0]):
            wt = onem * np.float64(yr[j]) + epsc
            mass += wt
            gap += wt * (mm - np.float64(xr[j])) if wt != 0.0 else 0.0
    return mass, gap


@njit(**_JIT_NR)  # no `reassoc`: keep the order of the terms
def _dense_grad(grow, yr, f, rowf, inv, dm, onem, epsc, cw, has_cw):
    """g_j = f (rowf q_j − wt_j) = f ((rowf e_j − wt_j) − (S − 1) wt_j) / S, in float64 so that
    q_j − t_j ≈ 0 for a confident one-hot target keeps its relative accuracy."""
    for j in range(grow.shape[0]):
        wt = onem * np.float64(yr[j]) + epsc
        if has_cw:
            wt *= cw[j]
        grow[j] = f * (((rowf * np.float64(grow[j]) - wt) - dm * wt) * inv)


@njit(**_PJIT)
def _k_dense_ce(xf, rs, yf, yrs, n, c, cw, has_cw, sw, has_sw, eps, z, want_grad, gs, loss, g):
    onem = 1.0 - eps
    epsc = eps / c
    for i in prange(n):
        xr = xf[i * rs : i * rs + c]
        yr = yf[i * yrs : i * yrs + c]
        grow = g[i] if want_grad else g[0]
        swi = sw[i] if has_sw else 1.0
        m, lo, hi = _row_max_span(xr)
        i1 = min(np.int64(i) + 1, n - 1)
        xn = xf[i1 * rs : i1 * rs + c]
        if _finite(m):
            if want_grad:
                s, dm = _exp_store_sum(xr, m, lo, hi, grow, xn, g[i1])
            else:
                s, dm = _exp_sum(xr, m, lo, hi, xn)
            logs = math.log1p(dm)
            lse = np.float64(m) + logs
            mass, gap = _target_stats(xr, yr, m, onem, epsc, cw, has_cw)
            ce = mass * logs + gap
            inv = 1.0 / s
        elif _bad_max(m):  # a nan or +inf logit: nan loss and gradient row (below)
            lse = 0.0
            mass = gap = ce = inv = dm = np.nan
            if want_grad:
                _fill(grow, _like(np.nan, m))
        else:  # no distribution (all −inf): lse = 0
            lse = 0.0
            mass, gap = _target_stats(xr, yr, _like(0.0, m), onem, epsc, cw, has_cw)
            ce = gap
            if want_grad:
                _fill(grow, _like(0.0, m))  # the exponentials exp(−inf − 0)
            inv = 1.0
            dm = 0.0
        loss[i] = swi * (ce + z * lse * lse)
        if want_grad:  # (a nan row: every entry f (nan ...) = nan)
            f = swi * gs
            _dense_grad(grow, yr, f, mass + 2.0 * z * lse, inv, dm, onem, epsc, cw, has_cw)


def softmax_ce(
    x: np.ndarray,
    y: np.ndarray,
    class_weights: np.ndarray | None,
    sample_weights: np.ndarray | None,
    label_smoothing: float,
    z_loss: float,
    grad_scale: float | None,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Softmax cross-entropy with dense targets ``y`` (N, C) per row, and its gradient.

    Same conventions as :func:`sparse_softmax_ce`, except that ``out`` must not overlap ``x``
    or ``y`` (the targets are read again after the exponentials are stored).
    """
    _check2d(x)
    n, c = x.shape
    loss = np.empty(n, np.float64)
    want_grad = grad_scale is not None
    g = _grad_buffer(x, want_grad, out)
    if n == 0 or c == 0:
        loss.fill(0.0)
        return loss, (g if want_grad else None)
    xf, rs = _rows_view(x)
    yf, yrs = _rows_view(np.asarray(y, dtype=x.dtype).reshape(n, c))
    has_cw = class_weights is not None
    cw = _ro(np.ascontiguousarray(class_weights, dtype=np.float64).reshape(c)) if has_cw else _ONE
    has_sw = sample_weights is not None
    sw = _ro(np.ascontiguousarray(sample_weights, dtype=np.float64).reshape(n)) if has_sw else _ONE
    _launch(
        _k_dense_ce,
        n * c,
        xf,
        rs,
        yf,
        yrs,
        n,
        c,
        cw,
        has_cw,
        sw,
        has_sw,
        float(label_smoothing),
        float(z_loss),
        want_grad,
        _gs(grad_scale),
        loss,
        g,
    )
    return loss, _zero_unscaled(g if want_grad else None, grad_scale)


# --------------------------------------------------------------------------- sigmoid CE


@njit(**_JIT_NR)
def _sig_elem(x, yv, pwj, o, e2):
    """(loss, dloss/dx) of one element, unweighted, in the dtype of x (branch-free)."""
    z0 = _like(0.0, x)
    one = _like(1.0, x)
    yp = yv * o + e2
    a = pwj * yp  # coefficient of softplus(-x)
    b = one - yp  # coefficient of softplus(x)
    pos = x > z0
    t = _vexp_nan(_where(pos, z0 - x, x))  # exp(-|x|)
    l1p = _vlog1p_unit(t)
    sp_pos = _where(pos, x, z0) + l1p  # softplus(x)
    sp_neg = _where(pos, z0, z0 - x) + l1p  # softplus(-x)
    # each product is 0 where its coefficient is 0 (also against an infinite softplus); where
    # both are 0 (y' = 1, pos_weight 0) a nan x must still give nan: l1p · 0 is 0 for every x
    # but nan (l1p = log1p(exp(−|x|)) is finite unless x is nan)
    loss = _where(a != z0, a * sp_neg, l1p * z0) + _where(b != z0, b * sp_pos, z0)
    # (a + b) σ(x) − a with σ = 1/(1+t) (x > 0) or t/(1+t): written as (b − a t)/(1+t) or
    # (b t − a)/(1+t), so the rounding of σ ≈ 1 does not leak into a small result
    num = _where(pos, b - a * t, b * t - a)
    return loss, num / (one + t)


@njit(**_JIT)
def _sig_block(xb, yb, pb, sb, per_elem, rw, fg, o, e2, want_grad, lb, gb):
    """One block of a row: weighted losses into ``lb`` and gradients into ``gb``.

    Weights: ``sb[j]`` (``per_elem``) or the row weight ``rw``; the gradient factor ``fg`` is
    ``gs`` (per element, times ``sb[j]``) or ``rw · gs``. Four loops, so that no branch sits
    inside a loop (each one vectorizes).
    """
    w = xb.shape[0]
    if per_elem:
        if want_grad:
            for j in range(w):
                le, g = _sig_elem(xb[j], yb[j], pb[j], o, e2)
                wj = sb[j]
                lb[j] = le * wj
                gb[j] = g * (wj * fg)
        else:
            for j in range(w):
                le, _ = _sig_elem(xb[j], yb[j], pb[j], o, e2)
                lb[j] = le * sb[j]
    elif want_grad:
        for j in range(w):
            le, g = _sig_elem(xb[j], yb[j], pb[j], o, e2)
            lb[j] = le * rw
            gb[j] = g * fg
    else:
        for j in range(w):
            le, _ = _sig_elem(xb[j], yb[j], pb[j], o, e2)
            lb[j] = le * rw


@njit(**_JIT)
def _sig_row(xr, yr, pw, swr, per_elem, rw, fg, o, e2, want_grad, elementwise, lrow, grow, tmp):
    """One row, block by block: the weighted losses stored into ``lrow`` (``elementwise``) or
    summed in float64 (returned). A reduction inside the element loop kept it from vectorizing,
    so losses go through an L1-resident scratch block ``tmp`` (the calling thread's) and are
    summed by a separate loop."""
    n = xr.shape[0]
    acc = 0.0
    for b0 in range(0, n, _BLK):
        b1 = min(b0 + _BLK, n)
        lb = lrow[b0:b1] if elementwise else tmp[: b1 - b0]
        gb = grow[b0:b1] if want_grad else grow
        sb = swr[b0:b1] if per_elem else swr
        _sig_block(xr[b0:b1], yr[b0:b1], pw[b0:b1], sb, per_elem, rw, fg, o, e2, want_grad, lb, gb)
        if not elementwise:
            for j in range(b1 - b0):
                acc += np.float64(tmp[j])
    return acc


@njit(**_PJIT)
def _k_sigmoid_ce(
    xf,
    rs,
    yf,
    yrs,
    n,
    c,
    pw,
    swf,
    srs,
    sw_per_row,
    eps,
    want_grad,
    gs,
    elementwise,
    lsum,
    lel,
    g,
    scratch,
):
    # scratch: (threads, _BLK), one row per thread of this call (numba.get_thread_id()).
    # pw: (C,) and the weights in the dtype of x (pw ones when absent); per-element weights are
    # read from swf[i*srs : i*srs + C], or one weight per row swf[i*srs] when sw_per_row.
    o = _like(1.0 - eps, xf[0])
    e2 = _like(eps / 2.0, xf[0])
    for i in prange(n):
        xr = xf[i * rs : i * rs + c]
        yr = yf[i * yrs : i * yrs + c]
        if sw_per_row:
            swr = swf[i * srs : i * srs + 1]
            rw = swf[i * srs]
            fg = _like(np.float64(rw) * gs, rw)
        else:
            swr = swf[i * srs : i * srs + c]
            rw = _like(1.0, o)
            fg = _like(gs, o)
        lsum[i] = _sig_row(
            xr,
            yr,
            pw,
            swr,
            not sw_per_row,
            rw,
            fg,
            o,
            e2,
            want_grad,
            elementwise,
            lel[i] if elementwise else lel[0],
            g[i] if want_grad else g[0],
            scratch[numba.get_thread_id()],
        )


def sigmoid_ce(
    x: np.ndarray,
    y: np.ndarray,
    pos_weight: np.ndarray | None,
    sample_weights: np.ndarray | None,
    label_smoothing: float,
    grad_scale: float | None,
    elementwise: bool,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Sigmoid (binary) cross-entropy, elementwise, and its gradient.

    ``x``, ``y`` (N, C); ``pos_weight`` (C,) float64 or None; ``sample_weights`` None or (N, C)
    (a ``np.broadcast_to`` view with zero strides is read in place: per-row weights of shape
    (N, 1) or a scalar broadcast are used as one weight per row; class-wise (C,) broadcasts and
    full arrays are read per element; other stride patterns are copied once).
    Returns ``(loss, grad)``: loss (N, C) of ``x.dtype`` (sample weights included) when
    ``elementwise``, else per-row sums in float64 (N,). ``out`` as in :func:`softmax_ce`
    (an ``out`` overlapping ``x`` gives the right numbers, but LLVM then runs scalar code).
    """
    _check2d(x)
    n, c = x.shape
    want_grad = grad_scale is not None
    g = _grad_buffer(x, want_grad, out)
    lel = np.empty((n, c) if elementwise else (1, 1), x.dtype)
    lsum = np.zeros(n, np.float64)
    if n == 0 or c == 0:
        return (lel if elementwise else lsum), (g if want_grad else None)
    xf, rs = _rows_view(x)
    yf, yrs = _rows_view(np.asarray(y, dtype=x.dtype).reshape(n, c))
    if pos_weight is not None:
        pw = _ro(np.ascontiguousarray(pos_weight, dtype=np.float64).reshape(c).astype(x.dtype))
    else:
        pw = _ro(np.ones(c, x.dtype))
    sw_per_row = True
    swf, srs = _ro(np.ones(1, x.dtype)), 0  # no weights: the row weight 1
    if sample_weights is not None:
        sw = np.broadcast_to(np.asarray(sample_weights, dtype=x.dtype), (n, c))
        s0, s1 = sw.strides
        isz = x.itemsize
        if (s1 == 0 or c == 1) and ((s0 >= 0 and s0 % isz == 0) or n == 1):  # one per row
            srs = s0 // isz if n > 1 else 0
            swf = np.lib.stride_tricks.as_strided(
                sw, shape=((n - 1) * srs + 1,), strides=(isz,), writeable=False
            )
        else:
            sw_per_row = False
            swf, srs = _rows_view(sw)
    _launch(
        _k_sigmoid_ce,
        n * c,
        xf,
        rs,
        yf,
        yrs,
        n,
        c,
        pw,
        swf,
        srs,
        sw_per_row,
        float(label_smoothing),
        want_grad,
        _gs(grad_scale),
        bool(elementwise),
        lsum,
        lel,
        g,
        _scratch((_pool_threads(), _BLK), x.dtype),
    )
    return (lel if elementwise else lsum), _zero_unscaled(g if want_grad else None, grad_scale)


# --------------------------------------------------------------------------- measures from logits


@njit(**_JIT)
def _ent_block(xr, b0, b1, m, grow, want_grad):
    """One block of :func:`_ent_sum`: (Σ (e_j − [x_j = m]), Σ [x_j = m], Σ e_j (m − x_j))."""
    z0 = _like(0.0, m)
    t = z0
    k = z0
    u = 0.0
    mm = np.float64(m)
    if want_grad:
        for j in range(b0, b1):
            v = xr[j]
            e = _vexp(v - m)
            grow[j] = e
            top = _like(v == m, m)
            t += _sub_nr(e, top)
            k += top
            # e = 0 (also for x = −inf, where the gap is +inf) contributes 0; a select, not a
            # branch, so that the loop vectorizes
            u += _where(e > z0, np.float64(e) * (mm - np.float64(v)), 0.0)
    else:
        for j in range(b0, b1):
            v = xr[j]
            e = _vexp(v - m)
            top = _like(v == m, m)
            t += _sub_nr(e, top)
            k += top
            u += _where(e > z0, np.float64(e) * (mm - np.float64(v)), 0.0)
    return t, k, u


@njit(**_JIT)
def _ent_sum(xr, grow, m, want_grad):
    """(S, S − 1, U): S and S − 1 as in :func:`_exp_sum`, U = Σ_{e_j>0} e_j (m − x_j);
    e_j = exp(x_j − m) is stored into ``grow`` when the gradient is wanted."""
    n = xr.shape[0]
    s = 0.0
    cnt = 0.0
    u = 0.0
    for b0 in range(0, n, _BLK):
        t, k, ub = _ent_block(xr, b0, min(b0 + _BLK, n), m, grow, want_grad)
        s += t
        cnt += k
        u += ub
    return cnt + s, _d_plus(cnt, 1.0, s), u


@njit(**_PJIT)
def _k_entropy(xf, rs, n, c, want_grad, gs, h, g):
    for i in prange(n):
        xr = xf[i * rs : i * rs + c]
        grow = g[i] if want_grad else g[0]
        m = _row_max(xr)
        if _finite(m):
            s, dm, u = _ent_sum(xr, grow, m, want_grad)
            inv = 1.0 / s
            ubar = u * inv
            h[i] = math.log1p(dm) + ubar  # lse − Σ q x = log S + Σ q (m − x): both ≥ 0
            if want_grad:  # dH/dx_j = −q_j (log q_j + H) = q_j ((m − x_j) − Ū)
                mm = np.float64(m)
                z0 = _like(0.0, m)
                for j in range(c):
                    e = grow[j]
                    gj = (np.float64(e) * inv) * ((mm - np.float64(xr[j])) - ubar) * gs
                    grow[j] = _where(e > z0, _like(gj, m), z0)  # select: the loop vectorizes
        elif m == -np.inf:  # no distribution: H = 0, zero gradient
            h[i] = 0.0
            if want_grad:
                _fill(grow, _like(0.0, m))
        else:  # a nan or +inf logit (m is nan or +inf): nan entropy and gradient row
            h[i] = np.nan
            if want_grad:
                _fill(grow, _like(np.nan, m))


def softmax_entropy_rows(
    x: np.ndarray, grad_scale: float | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """H(softmax(x)) per row in nats, float64 (N,), and ``dH/dx · grad_scale`` or None.

    An all −inf row has entropy 0 and a zero gradient.
    """
    _check2d(x)
    n, c = x.shape
    h = np.zeros(n, np.float64)
    want_grad = grad_scale is not None
    g = _grad_buffer(x, want_grad, None)
    if n and c:
        xf, rs = _rows_view(x)
        _launch(
            _k_entropy,
            n * c,
            xf,
            rs,
            n,
            c,
            want_grad,
            _gs(grad_scale),
            h,
            g,
        )
    return h, (g if want_grad else None)


@njit(**_JIT)
def _offsets(xr):
    """(off, S, m): log-probabilities are (x_j − off) − log S, probabilities exp(x_j − off)/S,
    m is the row's max (nan if it has a nan). A float64 exp for both dtypes (accuracy of KL when
    p ≈ q). A row without a finite max gets off = 0, S = 1 (the generic path's
    x − finite_or_zero(lse))."""
    m = _row_max(xr)
    if not _finite(m):
        return 0.0, 1.0, m
    mm = np.float64(m)
    s = 0.0
    for j in range(xr.shape[0]):
        s += _exp64_neg(np.float64(xr[j]) - mm)
    return mm, s, m


@njit(**_JIT)
def _kl_sum(ar, br, oa, ob, c0):
    """Σ_{p_j>0} e^(a_j − oa) ((a_j − oa) − (b_j − ob) − c0), row of `a` with a finite max."""
    u = 0.0
    for j in range(ar.shape[0]):
        da = np.float64(ar[j]) - oa
        ea = _exp64_neg(da)
        u += ea * ((da - (np.float64(br[j]) - ob)) - c0) if ea > 0.0 else 0.0
    return u


@njit(**_JIT)
def _kl_sum_slow(ar, br, oa, ob, c0):
    u = 0.0
    for j in range(ar.shape[0]):
        da = np.float64(ar[j]) - oa
        ea = np.exp(da)
        u += ea * ((da - (np.float64(br[j]) - ob)) - c0) if ea > 0.0 else 0.0
    return u


@njit(**_JIT_NR)
def _kl_grad(ar, br, oa, ob, c0, inva, invb, raw, gs, gar, gbr):
    for j in range(ar.shape[0]):
        da = np.float64(ar[j]) - oa
        db = np.float64(br[j]) - ob
        p = _exp64_neg(da) * inva
        q = _exp64_neg(db) * invb
        d = (da - db) - c0 if p > 0.0 else 0.0
        gar[j] = p * (d - raw) * gs
        gbr[j] = (q - p) * gs


@njit(**_JIT_NR)
def _kl_grad_slow(ar, br, oa, ob, c0, inva, invb, raw, gs, gar, gbr):
    for j in range(ar.shape[0]):
        da = np.float64(ar[j]) - oa
        db = np.float64(br[j]) - ob
        p = np.exp(da) * inva
        q = np.exp(db) * invb
        d = (da - db) - c0 if p > 0.0 else 0.0
        gar[j] = p * (d - raw) * gs
        gbr[j] = (q - p) * gs


@njit(**_PJIT)
def _k_kl(af, ars, bf, brs, n, c, want_grad, gs, kl, ga, gb):
    for i in prange(n):
        ar = af[i * ars : i * ars + c]
        br = bf[i * brs : i * brs + c]
        oa, sa, ma = _offsets(ar)
        ob, sb, mb = _offsets(br)
        if _bad_max(ma) or _bad_max(mb):  # a nan or +inf logit in either row: nan row
            kl[i] = np.nan
            if want_grad:
                _fill(ga[i], _like(np.nan, ma))
                _fill(gb[i], _like(np.nan, ma))
            continue
        fa = _finite(ma)
        fb = _finite(mb)
        c0 = math.log(sa) - math.log(sb)
        inva = 1.0 / sa
        if fa:
            raw = _kl_sum(ar, br, oa, ob, c0) * inva
        else:  # rare: no distribution in `a` (libm exp, scalar)
            raw = _kl_sum_slow(ar, br, oa, ob, c0) * inva
        kl[i] = 0.0 if raw < 0.0 else raw  # (clipped at 0; a nan stays nan)
        if want_grad:
            if fa and fb:
                _kl_grad(ar, br, oa, ob, c0, inva, 1.0 / sb, raw, gs, ga[i], gb[i])
            else:
                _kl_grad_slow(ar, br, oa, ob, c0, inva, 1.0 / sb, raw, gs, ga[i], gb[i])


def softmax_kl_rows(
    a: np.ndarray, b: np.ndarray, grad_scale: float | None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """KL(softmax(a) ‖ softmax(b)) per row in nats, float64 (N,), clipped at 0, with gradients.

    Returns ``(kl, d/da · grad_scale, d/db · grad_scale)`` (gradients None when ``grad_scale``
    is None). Computed with a float64 exp for both dtypes (accuracy when p ≈ q).
    """
    _check2d(a)
    _check2d(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        raise ValueError("`a` and `b` must have the same shape and dtype")
    n, c = a.shape
    kl = np.zeros(n, np.float64)
    want_grad = grad_scale is not None
    ga = _grad_buffer(a, want_grad, None)
    gb = _grad_buffer(a, want_grad, None)
    if n and c:
        af, ars = _rows_view(a)
        bf, brs = _rows_view(b)
        _launch(
            _k_kl,
            n * c,
            af,
            ars,
            bf,
            brs,
            n,
            c,
            want_grad,
            _gs(grad_scale),
            kl,
            ga,
            gb,
        )
    if not want_grad:
        return kl, None, None
    return kl, ga, gb


_ONE = _ro(np.ones(1, np.float64))
