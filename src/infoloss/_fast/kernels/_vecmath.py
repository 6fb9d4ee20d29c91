"""Vector math for the kernels: LLVM intrinsics (fmaximum, select, prefetch, streaming stores,
bit casts) and the exp/log1p polynomials that vectorize without SVML."""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from ._tunables import _FP

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


def _stream_intrinsic(scaled: bool, shift: bool = False) -> Any:
    """An intrinsic ``f(src, dst)`` (``scaled``: ``f(src, dst, a)``; ``shift``:
    ``f(src, dst, a, b)``) doing ``dst[:] = src[:]`` (times the scalar ``a``; or
    ``(src[:] − a) − b``) for 1-D contiguous float arrays of one dtype and length, with
    non-temporal ("streaming") vector stores: the written lines go to memory without first
    being read into the cache (a normal store reads each line before writing it: 1.5× the
    traffic). Elements before ``dst``'s first 64-byte boundary and after its last one use plain
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
            and all(r == src.dtype for r in rest)
        )
        return types.void(src, dst, *rest) if ok else None

    def codegen(context, builder, signature, args):
        sty, dty = signature.args[:2]
        s = context.make_array(sty)(context, builder, args[0])
        d = context.make_array(dty)(context, builder, args[1])
        esz = 4 if sty.dtype == types.float32 else 8
        width = 64 // esz  # one 64-byte line per store (a zmm register)
        vt = ir.VectorType(ir.FloatType() if esz == 4 else ir.DoubleType(), width)
        i64 = ir.IntType(64)
        n = builder.extract_value(d.shape, 0)
        sp, dp = s.data, d.data
        av = bv = avv = bvv = None

        def splat(a):
            av = ir.Constant(vt, ir.Undefined)
            for k in range(width):
                av = builder.insert_element(av, a, ir.IntType(32)(k))
            return av

        if scaled or shift:
            av = args[2]
            avv = splat(av)
        if shift:
            bv = args[3]
            bvv = splat(bv)

        def op(v, a, b):
            if shift:
                return builder.fsub(builder.fsub(v, a), b)
            return builder.fmul(v, a) if scaled else v

        def plain(j):
            v = builder.load(builder.gep(sp, [j]))
            builder.store(op(v, av, bv), builder.gep(dp, [j]))

        # plain stores up to dst's first 64-byte boundary
        mis = builder.and_(builder.sub(i64(0), builder.ptrtoint(dp, i64)), i64(63))
        head = builder.udiv(mis, i64(esz))
        head = builder.select(builder.icmp_unsigned("<", head, n), head, n)
        with cgutils.for_range(builder, head) as loop:
            plain(loop.index)
        nvec = builder.udiv(builder.sub(n, head), i64(width))
        md = builder.module.add_metadata([ir.IntType(32)(1)])
        with cgutils.for_range(builder, nvec) as loop:
            j = builder.add(head, builder.mul(loop.index, i64(width)))
            v = builder.load(builder.bitcast(builder.gep(sp, [j]), vt.as_pointer()), align=esz)
            v = op(v, avv, bvv)
            st = builder.store(v, builder.bitcast(builder.gep(dp, [j]), vt.as_pointer()), align=64)
            st.set_metadata("nontemporal", md)
        start = builder.add(head, builder.mul(nvec, i64(width)))
        with cgutils.for_range(builder, builder.sub(n, start)) as loop:
            plain(builder.add(start, loop.index))
        return context.get_dummy_value()

    if shift:

        def stream(typingctx, src, dst, a, b):
            return typer(src, dst, a, b), codegen

    elif scaled:

        def stream(typingctx, src, dst, a):  # type: ignore[misc]
            return typer(src, dst, a), codegen

    else:

        def stream(typingctx, src, dst):  # type: ignore[misc]
            return typer(src, dst), codegen

    return intrinsic(stream)


_stream_copy = _stream_intrinsic(scaled=False)
_stream_scale = _stream_intrinsic(scaled=True)
_stream_shift = _stream_intrinsic(scaled=False, shift=True)


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


@intrinsic
def _fkey(typingctx, v):
    """A float's bits as a signed integer that orders like the float (int32 for float32, int64
    for float64): ``b ^ ((b >> (w − 1)) & max_int)``. Max and min reductions over these keys
    are integer ``vpmaxsd``/``vpminsd`` (``vpmaxsq``), which vectorize and interleave freely,
    where a NaN-propagating float maximum (``llvm.maximum``) reduction ran about 7× slower.
    A NaN key lies above the key of +inf (sign bit clear) or below that of −inf (sign bit set);
    −0 sorts below +0. :func:`_funkey` inverts it."""
    if v not in (types.float32, types.float64):
        return None
    it = types.int32 if v == types.float32 else types.int64
    sig = it(v)

    def codegen(context, builder, signature, args):
        w = 32 if signature.args[0] == types.float32 else 64
        ity = ir.IntType(w)
        b = builder.bitcast(args[0], ity)
        mask = builder.and_(builder.ashr(b, ity(w - 1)), ity((1 << (w - 1)) - 1))
        return builder.xor(b, mask)

    return sig, codegen


@intrinsic
def _funkey(typingctx, k):
    """The float (float32 for an int32, float64 for an int64) whose :func:`_fkey` is ``k``."""
    if k not in (types.int32, types.int64):
        return None
    ft = types.float32 if k == types.int32 else types.float64
    sig = ft(k)

    def codegen(context, builder, signature, args):
        w = 32 if signature.args[0] == types.int32 else 64
        ity = ir.IntType(w)
        b = args[0]
        mask = builder.and_(builder.ashr(b, ity(w - 1)), ity((1 << (w - 1)) - 1))
        fty = ir.FloatType() if w == 32 else ir.DoubleType()
        return builder.bitcast(builder.xor(b, mask), fty)

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


@njit(cache=True, fastmath=_FP, error_model="numpy", inline="always")
def _exp32_reduce(x):
    """(kb, r) of the float32 exps: k = round(x / ln2) in the low bits of kb, r = x − k ln2."""
    mg = np.float32(_M32)
    kb = x * np.float32(1.44269504088896341) + mg
    kf = kb - mg
    r = x - kf * np.float32(0.693359375)
    return kb, r - kf * np.float32(-2.12194440e-4)


@njit(cache=True, fastmath=_FP, error_model="numpy", inline="always")
def _exp32_scale(kb, r):
    """2^k e^r from :func:`_exp32_reduce`'s kb and r, with the flush below 2^-125.5."""
    # degree-6 near-minimax polynomial for e^r on |r| <= ln2/2 (error 2e-9 < 1/30 ulp), p(0) = 1
    p = np.float32(0.0013843650231137872)
    p = p * r + np.float32(0.008374156430363655)
    p = p * r + np.float32(0.04166800156235695)
    p = p * r + np.float32(0.16666431725025177)
    p = p * r + np.float32(0.4999999403953552)
    p = p * r + np.float32(1.0)
    p = p * r + np.float32(1.0)
    k = _f32_bits(kb) - _f32_bits(np.float32(_M32))  # (-inf: kb = -inf has negative bits, k < -125)
    return _bits_f32((_f32_bits(p) + (k << np.int32(23))) & -np.int32(k >= np.int32(-125)))


@njit(cache=True, fastmath=_FP, error_model="numpy")
def _exp32(x):
    kb, r = _exp32_reduce(x)
    return _exp32_scale(kb, r)


@njit(cache=True, fastmath=_FP, error_model="numpy", inline="always")
def _exp64_reduce(x):
    """(kb, r) of the float64 exps: k = round(x / ln2) in the low bits of kb, r = x − k ln2."""
    mg = _M64
    kb = x * 1.4426950408889634074 + mg
    kf = kb - mg
    r = x - kf * 6.93145751953125e-1
    return kb, r - kf * 1.42860682030941723212e-6


@njit(cache=True, fastmath=_FP, error_model="numpy", inline="always")
def _exp64_scale(kb, r, p):
    """2^k (1 + r + r^2 p) from :func:`_exp64_reduce`'s kb, with the flush below 2^-1021.5."""
    q = p * (r * r) + r + 1.0
    k = _f64_bits(kb) - _f64_bits(_M64)
    res = _f64_bits(q) + (k << 52)
    return _bits_f64(res & -np.int64(k >= -1021))


@njit(cache=True, fastmath=_FP, error_model="numpy")
def _exp64_neg(x):
    kb, r = _exp64_reduce(x)
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
    return _exp64_scale(kb, r, p)


@njit(cache=True, fastmath=_FP, error_model="numpy")
def _exp64_neg_short(x):
    """:func:`_exp64_neg` with a degree-9 polynomial (1 + r + r^2 Q(r), Q fitted by
    relative-weighted least squares on 400 Chebyshev nodes of |r| <= ln2/2 in mpmath):
    relative error <= 2e-14 (truncation 1.9e-14), 40 percent fewer cycles. For float32 inputs
    whose results are read to float32 accuracy (the softmax KL kernel), where the float64
    exponent range and the error far below float32's ulp are what the float64 exp is for."""
    kb, r = _exp64_reduce(x)
    p = 2.752928333313164e-06
    p = p * r + 2.4882131852520926e-05
    p = p * r + 0.00019841446550492974
    p = p * r + 0.0013888807852387543
    p = p * r + 0.008333333169671884
    p = p * r + 0.041666666987834285
    p = p * r + 0.1666666666707956
    p = p * r + 0.49999999999603967
    return _exp64_scale(kb, r, p)


@njit(cache=True, fastmath=_FP, error_model="numpy")
def _exp32_diff(x, m):
    """exp(x − m) for float32 x <= m (m finite; x may be −inf: 0), with the rounding of x − m
    carried into the reduced argument: d = fl(x − m) and its error e = (x − m) − d are formed
    exactly (Knuth's two-sum, which the flag set without ``reassoc`` keeps), and r = d − k ln2
    + e. The result then has :func:`_exp32`'s error (< 1 ulp) for every x, where exp(fl(x − m))
    is off by up to |x − m| · 2^-24 relative (40 ulps at x − m = −80)."""
    d = x - m
    mb = d - x
    e = (x - (d - mb)) + (-m - mb)
    kb, r = _exp32_reduce(d)
    return _exp32_scale(kb, r + e)  # (x = −inf: e and r are nan, k < -125 flushes them)


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


# log(v) for finite v > 0 (subnormals included), branch-free: v = 2^k f with f in [√½, √2)
# read from the bits (subnormals scaled up first), log v = k ln 2 + log1p(f − 1), the log1p
# series of the unit polynomials (its argument s = t / (2 + t) is at most 0.172 here). Near
# v = 1 (from either side) f − 1 is exact, so log v keeps its relative accuracy.
@njit(cache=True, fastmath=_FP, error_model="numpy")
def _log32(v):
    tiny = v < np.float32(1.1754944e-38)
    w = _where(tiny, v * np.float32(16777216.0), v)
    bits = _f32_bits(w)
    k = ((bits >> np.int32(23)) & np.int32(255)) - _where(tiny, np.int32(151), np.int32(127))
    f = _bits_f32((bits & np.int32(0x7FFFFF)) | np.int32(0x3F800000))
    up = f > np.float32(1.4142135)
    f = _where(up, f * np.float32(0.5), f)
    kf = np.float32(k + _where(up, np.int32(1), np.int32(0)))
    r = _log1p_unit32(f - np.float32(1.0))
    return kf * np.float32(0.693359375) + (r + kf * np.float32(-2.12194440e-4))


@njit(cache=True, fastmath=_FP, error_model="numpy")
def _log64(v):
    tiny = v < 2.2250738585072014e-308
    w = _where(tiny, v * 18014398509481984.0, v)
    bits = _f64_bits(w)
    k = ((bits >> 52) & 2047) - _where(tiny, np.int64(1077), np.int64(1023))
    f = _bits_f64((bits & 0xFFFFFFFFFFFFF) | 0x3FF0000000000000)
    up = f > 1.4142135623730951
    f = _where(up, f * 0.5, f)
    kf = np.float64(k + _where(up, np.int64(1), np.int64(0)))
    r = _log1p_unit64(f - 1.0)
    return kf * 6.93145751953125e-1 + (r + kf * 1.42860682030941723212e-6)


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
_vlog = _by_dtype(_log32, _log64, "log(x) for finite x > 0, in the dtype of x.")


def _like(v, ref):  # pragma: no cover
    raise NotImplementedError


@overload(_like, inline="always")
def _like_ov(v, ref):
    """``v`` converted to the float type of the scalar ``ref``."""
    if ref == types.float32:
        return lambda v, ref: np.float32(v)
    return lambda v, ref: np.float64(v)
