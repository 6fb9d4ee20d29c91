"""Private helpers shared by every public module: namespaces, validation, dtypes, reductions."""

from __future__ import annotations

import functools
import math
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
    """Run ``fn`` with NumPy's overflow warnings off.

    Differences such as ``x - max(x)`` of logits near the dtype's maximum round to ``±inf``,
    which is the correctly rounded result and leads to the right answer (``exp(-inf) = 0``);
    NumPy (and array-api-strict, built on it) would warn about it. Invalid operations and
    divisions by zero still warn: the code never performs them on purpose.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with np.errstate(over="ignore"):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# --------------------------------------------------------------------------- namespaces


def namespace(*named: tuple[str, Any]) -> tuple[Namespace, list[Any]]:
    """Resolve one array namespace for ``(name, value)`` pairs and convert the non-arrays.

    Values that are ``None`` stay ``None``. Python scalars, lists and NumPy scalars are converted
    with the namespace of the array arguments (NumPy when there are none), on their device.
    Arrays from two different libraries raise :class:`InfolossTypeError` naming both arguments.
    """
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
        except (TypeError, ValueError) as e:
            raise InfolossError(
                f"`{name}` must be an array or a nested sequence of numbers; got {_short(v)} ({e})"
            ) from None
    return xp, out


def _device(x: Array) -> Any:
    from array_api_compat import device

    try:
        return device(x)
    except Exception:  # pragma: no cover - exotic arrays
        return None


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def is_concrete(x: Array) -> bool:
    """True when the values of ``x`` can be read now (not a tracer under ``jax.jit``)."""
    if is_jax_array(x):
        import jax

        return not isinstance(x, jax.core.Tracer)
    if is_torch_array(x):
        import torch

        # under torch.func transforms (vmap, grad) values cannot be read either
        return not torch._C._functorch.is_functorch_wrapped_tensor(x)
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


def check_unit_interval(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InfolossError(f"`{name}` must be a number in [0, 1]; got {_short(value)}") from None
    if not 0.0 <= v <= 1.0:
        raise InfolossError(f"`{name}` must be in [0, 1]; got {value}")
    return v


def check_nonnegative(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InfolossError(
            f"`{name}` must be a non-negative number; got {_short(value)}"
        ) from None
    if not v >= 0.0 or math.isinf(v):
        raise InfolossError(f"`{name}` must be a finite non-negative number; got {value}")
    return v


def log_base(base: Any) -> float | None:
    """``log(base)`` to divide by, or ``None`` for nats."""
    if base is None:
        return None
    try:
        b = float(base)
    except (TypeError, ValueError):
        raise InfolossError(
            f"`base` must be a positive number other than 1; got {_short(base)}"
        ) from None
    if not (b > 0.0) or b == 1.0 or math.isinf(b):
        raise InfolossError(f"`base` must be positive and different from 1; got {base}")
    return math.log(b)


def in_base(x: Array, lb: float | None) -> Array:
    return x if lb is None else x / lb


def check_shape(x: Array, expected: Sequence[int], name: str, what: str) -> None:
    if tuple(x.shape) != tuple(expected):
        raise InfolossError(
            f"`{name}` must have shape {tuple(expected)} ({what}); got {tuple(x.shape)}"
        )


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


def check_probabilities(xp: Namespace, p: Array, name: str) -> None:
    """Probabilities must be non-negative and not nan (checked on concrete arrays only)."""
    if not is_concrete(p) or p.size == 0:
        return
    bad = ~(p >= 0)
    if bool(xp.any(bad)):
        pos = first_position(xp, bad)
        raise InfolossError(
            f"`{name}` must hold probabilities (non-negative numbers); found {float(p[pos])} at position {pos}"
        )


# --------------------------------------------------------------------------- reductions


def safe_divide(xp: Namespace, num: Array, den: Array) -> Array:
    """``num / den`` with 0 where ``den == 0`` (a mean over nothing is 0, not nan)."""
    zero = den == 0
    return xp.where(zero, xp.zeros_like(num), num / xp.where(zero, xp.ones_like(den), den))


def reduce_loss(xp: Namespace, loss: Array, weight_total: Array | None, reduction: str) -> Array:
    if reduction == "none":
        return loss
    total = xp.sum(loss)
    if isinstance(total, np.generic):  # NumPy gives a scalar; return a 0-d array on every path
        total = np.asarray(total)
    if reduction == "sum":
        return total
    assert weight_total is not None
    return safe_divide(xp, total, xp.astype(weight_total, total.dtype))


def moveaxis_last(xp: Namespace, x: Array, axis: int) -> Array:
    if axis == x.ndim - 1:
        return x
    return xp.moveaxis(x, axis, -1)


def moveaxis_back(xp: Namespace, x: Array, axis: int) -> Array:
    if axis == x.ndim - 1:
        return x
    return xp.moveaxis(x, -1, axis)


def finite_or_zero(xp: Namespace, m: Array) -> Array:
    return xp.where(xp.isfinite(m), m, xp.zeros_like(m))
