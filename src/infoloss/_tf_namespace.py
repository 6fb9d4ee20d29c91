"""An Array-API-like namespace over TensorFlow: exactly the functions the generic code calls.

TensorFlow is not an Array API library (``tf.experimental.numpy`` follows NumPy's names and,
unless NumPy behaviour is switched on globally, not its type rules), so the generic definitions
(:mod:`infoloss._generic`) get this small namespace instead: each function below is the Array API
function of the same name written with ``tf`` ops, valid eagerly, inside ``tf.function`` and under
XLA (``jit_compile=True``), and tested op by op against NumPy (tests/test_tensorflow.py). The
operators the generic code uses on arrays (``+ - * / @``, comparisons, ``~ & |`` on bools,
``x[..., 0]``, ``x[..., None]``) are TensorFlow's own.

:func:`infoloss._utils.namespace` imports this module only when an argument is a TensorFlow
tensor or variable, so ``import infoloss`` never imports TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import tensorflow as tf

from .errors import InfolossError, InfolossTypeError

__all__ = ["is_tf", "namespace_of", "xp"]

Array = Any

_KINDS = {
    "real floating": lambda d: d.is_floating,
    "integral": lambda d: d.is_integer,
    "bool": lambda d: d == tf.bool,
    "numeric": lambda d: d.is_floating or d.is_integer or d.is_complex,
    "complex floating": lambda d: d.is_complex,
}


def _dt(dtype: Any) -> Any:
    return None if dtype is None else tf.as_dtype(dtype)


class _TFNamespace:
    """The namespace object (one instance, :data:`xp`)."""

    __name__ = "infoloss._tf_namespace"

    float16, bfloat16, float32, float64 = tf.float16, tf.bfloat16, tf.float32, tf.float64
    int32, int64 = tf.int32, tf.int64

    # ------------------------------------------------------------------- creation, dtypes

    @staticmethod
    def asarray(v: Any, dtype: Any = None, device: Any = None, copy: Any = None) -> Array:
        if isinstance(v, tf.Variable):
            v = v.read_value()
        if isinstance(v, tf.Tensor):
            return v if dtype is None or v.dtype == _dt(dtype) else tf.cast(v, dtype)
        return tf.convert_to_tensor(v, dtype=_dt(dtype))

    @staticmethod
    def astype(x: Array, dtype: Any, copy: Any = True) -> Array:
        return tf.cast(x, dtype)

    @staticmethod
    def isdtype(dtype: Any, kind: Any) -> bool:
        d = tf.as_dtype(dtype)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        for k in kinds:
            if isinstance(k, str):
                if _KINDS[k](d):
                    return True
            elif d == tf.as_dtype(k):
                return True
        return False

    @staticmethod
    def finfo(dtype: Any) -> Any:
        d = tf.as_dtype(dtype)
        if not d.is_floating:
            raise TypeError(f"finfo needs a floating dtype; got {d.name}")
        return SimpleNamespace(bits=d.size * 8, max=float(d.max), min=float(d.min), dtype=d)

    @staticmethod
    def iinfo(dtype: Any) -> Any:
        d = tf.as_dtype(dtype)
        return SimpleNamespace(bits=d.size * 8, max=int(d.max), min=int(d.min), dtype=d)

    @staticmethod
    def result_type(*arrays_and_dtypes: Any) -> Any:
        dts = [tf.as_dtype(getattr(a, "dtype", a)) for a in arrays_and_dtypes]
        if all(d == dts[0] for d in dts):
            return dts[0]
        floats = [d for d in dts if d.is_floating]
        if floats:  # the widest float; float16 with bfloat16 has no common 16-bit type
            widest = max(floats, key=lambda d: d.size)
            if widest.size == 2 and len({d for d in floats}) > 1:
                return tf.float32
            return widest
        return tf.as_dtype(np.result_type(*(d.as_numpy_dtype for d in dts)))

    @staticmethod
    def arange(n: int, dtype: Any = None, device: Any = None) -> Array:
        return tf.range(n, dtype=_dt(dtype) or tf.int64)

    @staticmethod
    def ones(shape: Sequence[int], dtype: Any = None, device: Any = None) -> Array:
        return tf.ones(shape, dtype=_dt(dtype) or tf.float32)

    @staticmethod
    def full(shape: Sequence[int], fill_value: Any, dtype: Any = None, device: Any = None) -> Array:
        d = _dt(dtype) or tf.float32
        return tf.fill(shape, tf.constant(fill_value, dtype=d))

    @staticmethod
    def zeros(shape: Sequence[int], dtype: Any = None, device: Any = None) -> Array:
        return tf.zeros(shape, dtype=_dt(dtype) or tf.float32)

    zeros_like = staticmethod(tf.zeros_like)
    ones_like = staticmethod(tf.ones_like)

    @staticmethod
    def full_like(x: Array, fill_value: Any, dtype: Any = None) -> Array:
        d = _dt(dtype) or x.dtype
        return tf.fill(tf.shape(x), tf.constant(fill_value, dtype=d))

    # ------------------------------------------------------------------- elementwise

    exp = staticmethod(tf.math.exp)
    log = staticmethod(tf.math.log)
    log1p = staticmethod(tf.math.log1p)
    expm1 = staticmethod(tf.math.expm1)
    abs = staticmethod(tf.math.abs)
    floor = staticmethod(tf.math.floor)
    isnan = staticmethod(tf.math.is_nan)
    isinf = staticmethod(tf.math.is_inf)
    tanh = staticmethod(tf.math.tanh)
    pow = staticmethod(tf.math.pow)

    @staticmethod
    def maximum(x1: Array, x2: Any) -> Array:
        """Elementwise maximum; nan where either is nan (the Array API's rule)."""
        return _nan_or(tf.math.maximum, x1, x2)

    @staticmethod
    def minimum(x1: Array, x2: Any) -> Array:
        """Elementwise minimum; nan where either is nan (the Array API's rule)."""
        return _nan_or(tf.math.minimum, x1, x2)

    @staticmethod
    def log2(x: Array) -> Array:
        return tf.math.log(x) / tf.constant(math.log(2.0), dtype=x.dtype)

    @staticmethod
    def where(condition: Array, x1: Array, x2: Array) -> Array:
        return tf.where(condition, x1, x2)

    # ------------------------------------------------------------------- reductions

    @staticmethod
    def sum(x: Array, axis: Any = None, keepdims: bool = False, dtype: Any = None) -> Array:
        if dtype is not None:
            x = tf.cast(x, dtype)
        if x.dtype == tf.bool:
            x = tf.cast(x, tf.int64)
        return tf.reduce_sum(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def max(x: Array, axis: Any = None, keepdims: bool = False) -> Array:
        return tf.reduce_max(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def any(x: Array, axis: Any = None, keepdims: bool = False) -> Array:
        return tf.reduce_any(tf.cast(x, tf.bool), axis=axis, keepdims=keepdims)

    @staticmethod
    def argmax(x: Array, axis: int | None = None, keepdims: bool = False) -> Array:
        if axis is None:
            x, axis = tf.reshape(x, (-1,)), 0
        out = tf.math.argmax(x, axis=axis, output_type=tf.int64)
        return tf.expand_dims(out, axis) if keepdims else out

    @staticmethod
    def nonzero(x: Array) -> tuple[Array, ...]:
        idx = tf.where(x)  # (count, ndim) int64
        return tuple(idx[:, k] for k in range(x.shape.rank))

    # ------------------------------------------------------------------- shapes, indexing

    @staticmethod
    def reshape(x: Array, shape: Sequence[int], copy: Any = None) -> Array:
        return tf.reshape(x, shape)

    @staticmethod
    def squeeze(x: Array, axis: Any) -> Array:
        return tf.squeeze(x, axis=axis)

    @staticmethod
    def moveaxis(x: Array, source: Any, destination: Any) -> Array:
        """As ``numpy.moveaxis``: ``source`` and ``destination`` are ints or equal-length tuples."""
        nd = x.shape.rank
        src = [s % nd for s in (source if isinstance(source, (tuple, list)) else (source,))]
        dst = [
            d % nd
            for d in (destination if isinstance(destination, (tuple, list)) else (destination,))
        ]
        perm = [k for k in range(nd) if k not in src]
        for d, s in sorted(zip(dst, src, strict=True)):
            perm.insert(d, s)
        return tf.transpose(x, perm)

    @staticmethod
    def matrix_transpose(x: Array) -> Array:
        return tf.linalg.matrix_transpose(x)

    @staticmethod
    def concat(arrays: Sequence[Array], axis: int = 0) -> Array:
        return tf.concat(list(arrays), axis=axis)

    @staticmethod
    def stack(arrays: Sequence[Array], axis: int = 0) -> Array:
        return tf.stack(list(arrays), axis=axis)

    @staticmethod
    def expand_dims(x: Array, axis: int = 0) -> Array:
        return tf.expand_dims(x, axis)

    @staticmethod
    def take(x: Array, indices: Array, axis: int | None = None) -> Array:
        if axis is None:
            x, axis = tf.reshape(x, (-1,)), 0
        return tf.gather(x, indices, axis=axis)

    @staticmethod
    def take_along_axis(x: Array, indices: Array, axis: int = -1) -> Array:
        nd = x.shape.rank
        if axis % nd != nd - 1:
            raise NotImplementedError("take_along_axis: only the last axis")  # pragma: no cover
        return tf.gather(x, indices, axis=nd - 1, batch_dims=nd - 1)

    @staticmethod
    def broadcast_to(x: Array, shape: Sequence[int | None]) -> Array:
        shape = tuple(shape)
        if tuple(x.shape) == shape:
            return x
        if any(s is None for s in shape):
            raise ValueError(f"cannot broadcast {tuple(x.shape)} to the partly unknown {shape}")
        try:
            tf.broadcast_static_shape(x.shape, tf.TensorShape(shape))
        except ValueError:
            raise ValueError(f"cannot broadcast {tuple(x.shape)} to {shape}") from None
        return tf.broadcast_to(x, shape)

    @staticmethod
    def broadcast_arrays(*arrays: Array) -> list[Array]:
        shape = arrays[0].shape
        for a in arrays[1:]:
            shape = tf.broadcast_static_shape(shape, a.shape)  # ValueError when incompatible
        if not shape.is_fully_defined():
            dyn = tf.shape(arrays[0])
            for a in arrays[1:]:
                dyn = tf.broadcast_dynamic_shape(dyn, tf.shape(a))
            return [tf.broadcast_to(a, dyn) for a in arrays]
        return [a if a.shape == shape else tf.broadcast_to(a, shape) for a in arrays]


def _nan_or(op: Any, x1: Array, x2: Any) -> Array:
    """``op(x1, x2)`` with nan wherever ``x1`` or ``x2`` is nan (``tf.math.maximum`` and
    ``minimum`` may return the other operand there)."""
    x1 = tf.convert_to_tensor(x1)
    x2 = tf.convert_to_tensor(x2, dtype=x1.dtype)
    out = op(x1, x2)
    if not x1.dtype.is_floating:
        return out
    nan = tf.math.is_nan(x1) | tf.math.is_nan(x2)
    return tf.where(nan, tf.constant(float("nan"), x1.dtype), out)


#: The namespace the generic code receives for TensorFlow tensors.
xp = _TFNamespace()


def is_tf(v: Any) -> bool:
    """True for a TensorFlow tensor (eager or symbolic) or variable."""
    return isinstance(v, (tf.Tensor, tf.Variable))


def namespace_of(named: Sequence[tuple[str, Any]]) -> tuple[Any, list[Any]]:
    """The TensorFlow branch of :func:`infoloss._utils.namespace`: variables are read, NumPy
    arrays, lists and scalars converted to tensors (as ``tf.nn`` converts them); an array of
    another library (torch, JAX, ...) is an error naming both arguments."""
    first = next(n for n, v in named if is_tf(v))
    out: list[Any] = []
    for name, v in named:
        if v is None:
            out.append(None)
        elif is_tf(v):
            out.append(xp.asarray(v))
        elif not isinstance(v, (np.ndarray, np.generic)) and (
            hasattr(v, "__array_namespace__")
            or type(v).__module__.split(".")[0] in ("torch", "jax", "jaxlib", "cupy")
        ):
            raise InfolossTypeError(
                "all arrays must come from one array library; got "
                f"`{first}` is a TensorFlow tensor, `{name}` is "
                f"{type(v).__module__}.{type(v).__name__}"
            )
        else:
            try:
                out.append(tf.convert_to_tensor(v))
            except (TypeError, ValueError) as e:
                s = repr(v)
                s = s if len(s) <= 60 else s[:57] + "..."
                raise InfolossError(
                    f"`{name}` must be an array or a nested sequence of numbers; got {s} ({e})"
                ) from None
    return xp, out
