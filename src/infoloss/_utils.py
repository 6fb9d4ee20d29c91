"""Private helpers shared by every public module: namespaces, validation, dtypes, reductions."""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from array_api_compat import (
    array_namespace,
    is_array_api_obj,
    is_jax_array,
    is_lazy_array,
    is_torch_array,
)

from .errors import InfolossError, InfolossTypeError

Array = Any
Namespace = Any

REDUCTIONS = ("none", "sum", "mean")

F = TypeVar("F", bound=Callable[..., Any])


def quiet_overflow(fn: F) -> F:
    """Run ``fn`` with NumPy's overflow and invalid-operation warnings off.

    Differences such as ``x - max(x)`` of logits near the dtype's maximum round to ``±inf``,
    which is the correctly rounded result and leads to the right answer (``exp(-inf) = 0``);
    NumPy (and array-api-strict, built on it) would warn about it. Invalid operations only
    happen on non-finite input (``inf - inf`` for a ``+inf`` logit), whose documented result is
    nan: the docs promise nan there, not a warning. Divisions by zero still warn: the code never
    performs them on purpose.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        torch = sys.modules.get("torch")
        if torch is not None and torch.compiler.is_compiling():  # dynamo cannot trace errstate
            return fn(*args, **kwargs)
        with np.errstate(over="ignore", invalid="ignore"):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# --------------------------------------------------------------------------- namespaces


def namespace(*named: tuple[str, Any], optional: Sequence[str] = ()) -> tuple[Namespace, list[Any]]:
    """Resolve one array namespace for ``(name, value)`` pairs and convert the non-arrays.

    Values that are ``None`` stay ``None`` when their name is in ``optional`` and are an error
    otherwise. Python scalars, lists and NumPy scalars are converted with the namespace of the
    array arguments (NumPy when there are none), on their device. Arrays from two different
    libraries, or torch tensors on two devices, raise an error naming both arguments.
    """
    for n, v in named:
        if v is None and n not in optional:
            raise InfolossTypeError(f"`{n}` must be an array; got None")
    tf = sys.modules.get("tensorflow")
    if tf is not None and any(isinstance(v, (tf.Tensor, tf.Variable)) for _, v in named):
        from . import _tf_namespace  # imported only once the caller has passed a TF tensor

        return _tf_namespace.namespace_of(named)
    torch = sys.modules.get("torch")
    if torch is not None and all(v is None or isinstance(v, torch.Tensor) for _, v in named):
        # all torch (the common case, and the one torch.compile traces): resolved without
        # array_api_compat's type checks, which dynamo does not trace cleanly
        return _torch_namespace(named)
    arrays = [(n, v) for n, v in named if v is not None and is_array_api_obj(v)]
    if arrays:
        try:
            xp = array_namespace(*(v for _, v in arrays))
        except TypeError:
            kinds = ", ".join(
                f"`{n}` is {type(v).__module__}.{type(v).__name__}" for n, v in arrays
            )
            raise InfolossTypeError(
                f"all arrays must come from one array library; got {kinds}"
            ) from None
        dev = _device(arrays[0][1])
        if is_torch_array(arrays[0][1]):
            for n, v in arrays[1:]:
                if v.device != arrays[0][1].device:
                    raise InfolossError(
                        f"all tensors must be on one device; `{arrays[0][0]}` is on "
                        f"{arrays[0][1].device} and `{n}` on {v.device}"
                    )
    else:
        xp = array_namespace(np.empty(0))
        dev = None
    out = []
    for name, v in named:
        if v is None or is_array_api_obj(v):
            out.append(v)
            continue
        try:
            out.append(xp.asarray(v, device=dev) if dev is not None else xp.asarray(v))
        except (TypeError, ValueError, RuntimeError, OverflowError) as e:
            raise InfolossError(
                f"`{name}` must be an array or a nested sequence of numbers; got {_short(v)} ({e})"
            ) from None
    return xp, out


def _torch_namespace(named: Sequence[tuple[str, Any]]) -> tuple[Namespace, list[Any]]:
    import array_api_compat.torch as xp

    arrays = [(n, v) for n, v in named if v is not None]
    for n, v in arrays[1:]:
        if v.device != arrays[0][1].device:
            raise InfolossError(
                f"all tensors must be on one device; `{arrays[0][0]}` is on "
                f"{arrays[0][1].device} and `{n}` on {v.device}"
            )
    return xp, [v for _, v in named]


def _device(x: Array) -> Any:
    from array_api_compat import device

    try:
        return device(x)
    except Exception:  # pragma: no cover - exotic arrays
        return None


def size(x: Array) -> int | None:
    """The number of elements of ``x`` (``None`` when a dimension is unknown while tracing);
    also for TensorFlow tensors, which have no ``size`` attribute."""
    n = 1
    for s in tuple(x.shape):
        if s is None:
            return None
        n *= int(s)
    return n


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def is_concrete(x: Array) -> bool:
    """True when the values of ``x`` can be read now: not a tracer under ``jax.jit``, not a
    tensor under ``torch.func`` transforms or ``torch.compile`` tracing, not a symbolic
    TensorFlow tensor (inside ``tf.function``)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        if torch.compiler.is_compiling():
            return False
        return not torch._C._functorch.is_functorch_wrapped_tensor(x)
    if isinstance(x, np.ndarray):
        return True
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(x, (tf.Tensor, tf.Variable)):
        # inside tf.function (with or without XLA) tensors are symbolic: nothing to read
        return tf.executing_eagerly() and not tf.is_symbolic_tensor(x)
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(x, jax.Array):
        return not isinstance(x, jax.core.Tracer)
    return not is_lazy_array(x)


# --------------------------------------------------------------------------- dtypes


def _is_ml_float(dtype: Any) -> bool:
    """NumPy extension floats from ml_dtypes (bfloat16, float8_*), which NumPy's isdtype rejects."""
    return isinstance(dtype, np.dtype) and dtype.kind == "V" and "float" in str(dtype)


def require_floating(xp: Namespace, x: Array, name: str) -> None:
    try:
        ok = xp.isdtype(x.dtype, "real floating")
    except TypeError:
        ok = _is_ml_float(x.dtype)
    if not ok:
        raise InfolossTypeError(
            f"`{name}` must have a real floating dtype; got {_dtype_name(x.dtype)}"
        )


def _dtype_name(dt: Any) -> str:
    return str(dt).replace("torch.", "")


def compute_dtype(xp: Namespace, dtype: Any) -> Any:
    """float16/bfloat16 are computed in float32; float32/float64 as they are."""
    try:
        bits = xp.finfo(dtype).bits
    except (TypeError, ValueError, AttributeError):  # ml_dtypes' bfloat16 & co. in NumPy arrays
        return xp.float32
    return xp.float32 if bits < 32 else dtype


def upcast(xp: Namespace, x: Any, dtype: Any) -> Any:
    if x is None:
        return None
    if x.dtype == dtype:
        return x
    return xp.astype(x, dtype)


def as_float(xp: Namespace, x: Any, name: str, dtype: Any) -> Any:
    """Convert a weight-like array to ``dtype`` (it must be real: bool, integer or floating)."""
    if x is None:
        return None
    if not (
        xp.isdtype(x.dtype, "real floating")
        or xp.isdtype(x.dtype, "integral")
        or xp.isdtype(x.dtype, "bool")
    ):
        raise InfolossTypeError(f"`{name}` must hold real numbers; got {_dtype_name(x.dtype)}")
    return xp.astype(x, dtype) if x.dtype != dtype else x


# --------------------------------------------------------------------------- options


def normalize_axis(axis: Any, ndim: int, name: str = "axis") -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise InfolossError(f"`{name}` must be an integer; got {_short(axis)}")
    if ndim == 0:
        raise InfolossError(
            f"`{name}`={axis} needs an array with at least one dimension; got a 0-d array"
        )
    if not -ndim <= axis < ndim:
        raise InfolossError(
            f"`{name}` must be in [{-ndim}, {ndim}) for an array of {ndim} dimensions; got {axis}"
        )
    return int(axis) % ndim


def check_reduction(reduction: Any) -> str:
    if reduction not in REDUCTIONS:
        raise InfolossError(
            f"`reduction` must be one of 'none', 'sum', 'mean'; got {_short(reduction)}"
        )
    return str(reduction)


def _real_option(value: Any, name: str, what: str) -> float:
    """A Python/NumPy real number as a float; bools, strings, arrays and the like are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise InfolossError(f"`{name}` must be {what}; got {_short(value)}")
    return float(value)


def check_unit_interval(value: Any, name: str) -> float:
    v = _real_option(value, name, "a number in [0, 1]")
    if not 0.0 <= v <= 1.0:
        raise InfolossError(f"`{name}` must be in [0, 1]; got {value}")
    return v


def check_nonnegative(value: Any, name: str) -> float:
    v = _real_option(value, name, "a non-negative number")
    if not v >= 0.0 or v == math.inf:
        raise InfolossError(f"`{name}` must be a finite non-negative number; got {value}")
    return v


def check_bool(value: Any, name: str) -> bool:
    """``True``/``False`` (Python or NumPy bools); anything else is an error naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise InfolossError(f"`{name}` must be True or False; got {_short(value)}")
    return bool(value)


_INT64 = (-(2**63), 2**63)


def check_index(value: Any, name: str) -> int | None:
    """An optional integer option (``ignore_index``): Python or NumPy integers in the int64 range."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InfolossError(f"`{name}` must be an integer or None; got {_short(value)}")
    v = int(value)
    if not _INT64[0] <= v < _INT64[1]:
        raise InfolossError(f"`{name}` must fit in 64 bits, in [-2**63, 2**63); got {v}")
    return v


def log_base(base: Any) -> float | None:
    """``log(base)`` to divide by, or ``None`` for nats.

    ``base`` must be ``None`` or a real number: a Python ``int``/``float`` or a NumPy integer or
    floating scalar, positive, finite and not 1. Bools, strings and arrays are refused rather
    than coerced by ``float()`` (``base="2"`` or ``base=True`` is almost certainly a mistake).
    """
    if base is None:
        return None
    if isinstance(base, (bool, np.bool_)) or not isinstance(
        base, (int, float, np.integer, np.floating)
    ):
        raise InfolossTypeError(
            f"`base` must be a real number (positive, other than 1) or None; "
            f"got {_short(base)} of type {type(base).__name__}"
        )
    b = float(base)
    if not (b > 0.0) or b == 1.0 or b == math.inf:
        raise InfolossError(f"`base` must be positive, finite and different from 1; got {base}")
    return math.log(b)


def in_base(x: Array, lb: float | None) -> Array:
    return x if lb is None else x / lb


def broadcast_pair(xp: Namespace, a: Array, b: Array, na: str, nb: str) -> tuple[Array, Array]:
    try:
        return tuple(xp.broadcast_arrays(a, b))
    except (ValueError, RuntimeError, TypeError):
        raise InfolossError(
            f"`{na}` and `{nb}` must broadcast together; got shapes {tuple(a.shape)} and {tuple(b.shape)}"
        ) from None


def first_position(xp: Namespace, mask: Array) -> tuple[int, ...]:
    """Index of the first True element of ``mask`` (which must hold at least one)."""
    idx = xp.nonzero(mask)
    return tuple(int(i[0]) for i in idx)


def any_true(xp: Namespace, mask: Array) -> bool:
    """``bool(any(mask))`` when its value can be read now; False while it is being traced.

    Checks that read data use it: under ``jax.jit`` even a concrete array captured by closure
    gives traced comparisons, so the decision is made on the comparison's result, never on the
    inputs. A check must never break a valid traced call.
    """
    if not is_concrete(mask):
        return False
    try:
        return bool(xp.any(mask))
    except Exception as e:  # a tracer that is_concrete did not recognise (JAX, torch.compile)
        if type(e).__module__.startswith(("jax", "torch", "tensorflow")):
            return False
        raise


def check_data(
    xp: Namespace, x: Array, bad: Callable[[Array], Array], name: str, what: str
) -> None:
    """Raise ``InfolossError("`name` must hold what; found v at position i")`` where ``bad(x)``.

    Reads data: skipped for empty arrays and while tracing (see :func:`any_true`).
    """
    if x is None or not is_concrete(x) or size(x) == 0:
        return
    mask = bad(x)
    if any_true(xp, mask):
        pos = first_position(xp, mask)
        v = x[pos]
        shown = int(v) if xp.isdtype(x.dtype, "integral") else float(v)
        raise InfolossError(f"`{name}` must hold {what}; found {shown} at position {pos}")


def check_label_values(xp: Namespace, y: Array, upper: float | None) -> None:
    """Dense labels are finite non-negative target masses (softmax, ``upper`` None) or targets
    in [0, 1] (sigmoid, ``upper`` 1); nan passes (it gives nan). Reads data (see
    :func:`check_data`). The fused kernels count each row's out-of-range labels in their own sweep and
    call :func:`check_label_counts` instead, so that the check costs no pass over the labels."""
    if upper is None:
        check_data(
            xp,
            y,
            lambda a: (a < 0) | (a == float("inf")),
            "labels",
            "finite non-negative target masses",
        )
    else:
        check_data(xp, y, lambda a: (a < 0) | (a > upper), "labels", "targets in [0, 1]")


def check_label_counts(bad: Any, y: Any, upper: float | None) -> None:
    """The same check from the per-row counts of out-of-range NumPy labels ``y`` that a kernel
    returned: when any count is non-zero, :func:`check_label_values` finds the first bad
    position in ``y`` and raises."""
    if np.any(bad):
        check_label_values(array_namespace(np.empty(0)), np.asarray(y), upper)


def check_probabilities(xp: Namespace, p: Array, name: str) -> bool:
    """Probabilities must be finite and non-negative; returns whether the values were checked.

    nan passes (nan in, nan out: the measure of that slice is nan). Negative numbers, ``-inf``
    and ``+inf`` raise :class:`InfolossError` naming ``name``, the first bad value and its
    position. The check reads data, so it runs only when the values can be read: it is skipped
    (and ``False`` returned, so that the caller can turn invalid slices into nan instead) under
    ``jax.jit`` tracing and ``torch.func`` transforms. Under ``jax.jit`` even a concrete array
    captured by closure gives traced comparisons; JAX's concretization errors mean "skip" too, so
    the check never breaks a valid traced call.
    """
    if not is_concrete(p):
        return False
    try:
        bad = (p < 0) | (p == float("inf"))
        found = bool(xp.any(bad))
    except Exception as e:
        if is_jax_array(p):
            import jax

            if isinstance(e, jax.errors.ConcretizationTypeError):
                return False
        raise
    if found:
        pos = first_position(xp, bad)
        raise InfolossError(
            f"`{name}` must hold probabilities (finite non-negative numbers); "
            f"found {float(p[pos])} at position {pos}"
        )
    return True


def pow2_scale(xp: Namespace, w: Array) -> Array:
    """A power of two near ``max(w)`` (0-d, ``w``'s dtype): 1 when the maximum is not a finite
    positive number.

    A weighted mean Σ wᵢℓᵢ / Σ wᵢ does not change when every weight is divided by the same
    number, and dividing by a power of two is exact: the means divide by it first so that
    weights of 1e308 (whose sum overflows) or 5e-324 (whose products underflow) give the same
    mean as weights of 1.
    """
    m = xp.max(xp.reshape(w, (-1,))) if w.ndim else w
    ok = (m > 0) & (m < float("inf"))
    e = xp.floor(xp.log2(xp.where(ok, m, xp.ones_like(m))))
    # at most 2^(emax - 2): XLA may divide by multiplying with the reciprocal, and flushes the
    # subnormal reciprocal of a larger power to zero
    emax = math.floor(math.log2(float(xp.finfo(w.dtype).max))) - 2
    e = xp.where(e > emax, xp.full_like(e, float(emax)), e)
    return xp.where(ok, xp.pow(xp.full_like(m, 2.0), e), xp.ones_like(m))


def moveaxis_last(xp: Namespace, x: Array, axis: int) -> Array:
    if axis == x.ndim - 1:
        return x
    return xp.moveaxis(x, axis, -1)


def moveaxis_back(xp: Namespace, x: Array, axis: int) -> Array:
    if axis == x.ndim - 1:
        return x
    return xp.moveaxis(x, -1, axis)
