"""Shared test helpers: backends and their execution variants, one ``assert_close`` and the
float64 textbook references.

The references here are written from docs/semantics.md with NumPy/SciPy in float64 and never call
infoloss, so that the tests are independent of the implementation.
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import scipy.special as sp

BACKEND_NAMES = ("numpy", "array_api_strict", "torch", "jax")
# every execution path a user can get: the fused kernels and the generic array-API code on NumPy
# and on CPU torch tensors (the generic torch code is what CUDA/MPS users run), array-api-strict
# and JAX (always generic)
VARIANTS = ("numpy-fast", "numpy-generic", "torch-fast", "torch-generic", "array_api_strict", "jax")
_DEFAULT_VARIANT = {"numpy": "numpy-fast", "torch": "torch-fast"}
# the ``backend`` fixture on the two variants of one library (tests about that library's inputs)
ON_NUMPY = pytest.mark.variants(
    "numpy-fast", "numpy-generic", reason="NumPy inputs, on the fused and the generic code"
)
ON_TORCH = pytest.mark.variants(
    "torch-fast", "torch-generic", reason="PyTorch tensors, on the fused and the generic code"
)

_DEFAULT_TOL = {
    # dtype name: (rtol, atol)
    "float64": (1e-10, 1e-12),
    "float32": (2e-5, 1e-6),
    "float16": (5e-3, 1e-3),
    "bfloat16": (2e-2, 1e-2),
}


def run_in_threads(work: Callable[[int], None], count: int) -> None:
    """Run ``work(0)``, …, ``work(count - 1)`` on ``count`` Python threads at once; wait for all."""
    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def available_backends() -> list[str]:
    return [name for name in BACKEND_NAMES if installed(name)]


def available_variants() -> list[str]:
    """The variants whose library is installed."""
    return [v for v in VARIANTS if installed(v.split("-")[0])]


@dataclass(frozen=True)
class Backend:
    """One array library (``name``, what ``asarray``/``xp`` use) on one execution ``variant``.

    ``Backend("numpy")`` / ``Backend("torch")`` mean the library as a caller gets it (the fast
    variant); ``Backend.of("torch-generic")`` names a variant. A generic variant only takes effect
    inside ``with backend.context():`` (the ``backend`` fixture enters it for the whole test).
    """

    name: str
    variant: str = ""

    def __post_init__(self) -> None:
        if self.name not in BACKEND_NAMES:
            raise AssertionError(f"unknown array library {self.name!r}")
        if not self.variant:
            object.__setattr__(self, "variant", _DEFAULT_VARIANT.get(self.name, self.name))
        if self.variant not in VARIANTS or self.variant.split("-")[0] != self.name:
            raise AssertionError(f"variant {self.variant!r} of {self.name!r}")

    @classmethod
    def of(cls, variant: str) -> Backend:
        return cls(variant.split("-")[0], variant)

    def __repr__(self) -> str:
        return f"Backend({self.variant!r})"

    # -- the variant ---------------------------------------------------------------------------
    @property
    def fast(self) -> bool:
        """True for the variants meant to take the fused numba kernels (numpy-fast, torch-fast)."""
        return self.variant.endswith("-fast")

    @property
    def generic(self) -> bool:
        """True for the variants that run the generic array-API code (all but the fast ones)."""
        return not self.fast

    @property
    def autodiff(self) -> bool:
        """True when the library differentiates (torch, JAX)."""
        return self.name in ("torch", "jax")

    def context(self) -> contextlib.AbstractContextManager[None]:
        """The switch of this variant: ``generic_only()`` for numpy-generic / torch-generic,
        ``always_fast()`` for numpy-fast / torch-fast (the kernels also on inputs below the
        router's size threshold), none otherwise (array-api-strict and JAX take the generic code
        anyway)."""
        from infoloss import _config

        if self.variant.endswith("-generic"):
            return _config.generic_only()
        if self.fast:
            return _config.always_fast()
        return contextlib.nullcontext()

    # -- the library -------------------------------------------------------------------------
    @property
    def xp(self) -> Any:
        if self.name == "numpy":
            return np
        if self.name == "array_api_strict":
            import array_api_strict

            return array_api_strict
        if self.name == "torch":
            import torch

            return torch
        if self.name == "jax":
            import jax.numpy as jnp

            return jnp
        raise AssertionError(self.name)

    def supports(self, dtype: str) -> bool:
        """Whether this library has ``dtype`` natively (array-api-strict has neither float16 nor
        bfloat16; NumPy's bfloat16 comes from ml_dtypes and is tested on its own in
        test_losses.py::test_numpy_ml_dtypes_bfloat16)."""
        if dtype == "float16":
            return self.name != "array_api_strict"
        if dtype == "bfloat16":
            return self.name in ("torch", "jax")
        return True

    def dtype(self, name: str) -> Any:
        if name == "bfloat16" and self.name == "numpy":
            import ml_dtypes

            return np.dtype(ml_dtypes.bfloat16)
        return getattr(self.xp, name)

    # -- conversion ----------------------------------------------------------------------------
    def asarray(self, data: Any, dtype: str | None = None) -> Any:
        """Build an array of this library from nested lists / NumPy data (values go via float64)."""
        a = np.asarray(data)
        if dtype is None:
            dtype = str(a.dtype)
        if dtype in ("float16", "bfloat16", "float32", "float64"):
            a = a.astype(np.float64)
        if self.name == "numpy":
            return np.asarray(a.astype(self.dtype(dtype)))
        if self.name == "array_api_strict":
            xs = self.xp
            return xs.asarray(a.astype(np.dtype(dtype)), dtype=getattr(xs, dtype))
        if self.name == "torch":
            import torch

            if dtype in ("float16", "bfloat16", "float32", "float64"):
                return torch.asarray(a.copy(), dtype=torch.float64).to(getattr(torch, dtype))
            return torch.asarray(a.copy(), dtype=getattr(torch, dtype))
        if self.name == "jax":
            import jax.numpy as jnp

            return jnp.asarray(a, dtype=getattr(jnp, dtype))
        raise AssertionError(self.name)

    def is_native(self, x: Any) -> bool:
        """True when ``x`` is an array of this library."""
        return library_of(x) == self.name


def library_of(x: Any) -> str:
    """Name of the array library ``x`` belongs to (NumPy scalars count as NumPy)."""
    mod = type(x).__module__
    if isinstance(x, (np.ndarray, np.generic)):
        return "numpy"
    if mod.startswith("array_api_strict"):
        return "array_api_strict"
    if mod.startswith("torch"):
        return "torch"
    if mod.startswith("jax") or mod.startswith("jaxlib"):
        return "jax"
    if mod.startswith("tensorflow"):
        return "tensorflow"
    return f"<{type(x).__module__}.{type(x).__qualname__}>"


def dtype_name(x: Any) -> str:
    """'float32', 'bfloat16', 'int64', ... for an array of any of the four libraries."""
    dt = x.dtype
    if library_of(x) == "tensorflow":
        return str(dt.name)
    s = str(dt)
    for prefix in ("torch.", "array_api_strict."):
        if s.startswith(prefix):
            s = s[len(prefix) :]
    return s


def to_numpy(x: Any) -> np.ndarray:
    """Copy ``x`` to a NumPy array, keeping its values (bfloat16 goes to float32)."""
    lib = library_of(x)
    if lib == "numpy":
        return np.asarray(x)
    if lib == "torch":
        t = x.detach().cpu()
        if t.dtype == __import__("torch").bfloat16:
            t = t.float()
        return t.numpy()
    if lib == "array_api_strict":
        return np.from_dlpack(x)
    if lib == "jax":
        return np.asarray(x)
    if lib == "tensorflow":
        a = x.numpy()
        return a.astype(np.float32) if str(a.dtype) == "bfloat16" else a
    if isinstance(x, (int, float, bool, list, tuple)):
        return np.asarray(x)
    raise AssertionError(f"cannot convert {type(x)!r}")


def as_float64(x: Any) -> np.ndarray:
    a = to_numpy(x)
    if a.dtype.kind in "fcV" or str(a.dtype) == "bfloat16":
        return a.astype(np.float64)
    return a


def default_tolerance(name: str) -> tuple[float, float]:
    return _DEFAULT_TOL.get(name, (0.0, 0.0))


def magnitude(expected: Any, scale: Any) -> Any:
    """The factor ``assert_close`` multiplies ``atol`` by: 1 for ``None``, the largest finite
    |expected| for ``"all"``, the largest finite |expected| of each row (last axis, kept) for
    ``"row"`` (of the value itself for a 0-d array), or ``scale`` itself (a number or an array)."""
    if scale is None:
        return 1.0
    if isinstance(scale, str):
        e = as_float64(expected)
        a = np.where(np.isfinite(e), np.abs(e), 0.0)
        if scale == "all":
            return float(np.max(a, initial=0.0))
        if scale == "row":
            return np.max(a, axis=-1, keepdims=True, initial=0.0) if a.ndim else a
        raise AssertionError(f"scale {scale!r}")
    return scale


def assert_close(
    actual: Any,
    expected: Any,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    scale: Any = None,
    check_type: bool = True,
    err_msg: str = "",
) -> None:
    """Assert that ``actual`` has the array type, dtype and shape of ``expected`` and close values:
    elementwise ``|actual - expected| <= atol * magnitude(expected, scale) + rtol * |expected|``.

    ``expected`` is an array of the library the caller used (build it with ``expect`` /
    ``Backend.asarray``) holding the expected dtype; the default tolerances depend on that dtype.
    NaNs must be where ``expected`` has NaNs and infinities must match exactly.

    ``scale`` makes the absolute part relative to the size of the quantity, for values that
    cancel (a gradient ``q - y`` keeps only absolute accuracy): ``"all"`` (largest finite
    |expected|), ``"row"`` (per row), or a number / array (see ``magnitude``).
    ``check_type=False`` compares with a reference of another dtype or library (e.g. a kernel's
    float32 rows against a float64 NumPy reference): only shapes and values are checked, with the
    default tolerances of ``actual``'s dtype.
    """
    what = f"{err_msg}: " if err_msg else ""
    da, de = dtype_name(actual), dtype_name(expected)
    if check_type:
        lib_a, lib_e = library_of(actual), library_of(expected)
        assert lib_a == lib_e, f"{what}array type: got {lib_a} ({type(actual)!r}), expected {lib_e}"
        assert da == de, f"{what}dtype: got {da}, expected {de}"
    a, e = as_float64(actual), as_float64(expected)
    assert a.shape == e.shape, f"{what}shape: got {a.shape}, expected {e.shape}"
    r0, a0 = default_tolerance(de if check_type else da)
    rtol = r0 if rtol is None else rtol
    atol = a0 if atol is None else atol
    fin = np.isfinite(e)
    np.testing.assert_array_equal(
        np.isnan(a), np.isnan(e), err_msg=f"{what}nan positions differ", strict=True
    )
    np.testing.assert_array_equal(
        a[np.isinf(e)], e[np.isinf(e)], err_msg=f"{what}infinities differ", strict=True
    )
    bound = np.broadcast_to(atol * np.asarray(magnitude(e, scale), np.float64), e.shape)
    bound = bound + rtol * np.abs(np.where(fin, e, 0.0))
    with np.errstate(invalid="ignore"):
        err = np.abs(np.where(fin, a, 0.0) - np.where(fin, e, 0.0))
        err = np.where(fin & ~np.isfinite(a), np.inf, err)
    bad = fin & ~(err <= bound)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.max(np.where(bad, err / np.abs(e), 0.0))
        raise AssertionError(
            f"{what}{int(bad.sum())} of {bad.size} values not close "
            f"(rtol={rtol}, atol={atol}, scale={scale!r}); max abs error "
            f"{np.max(np.where(bad, err, 0.0))!r}, max rel error {rel!r}; first at {idx}: "
            f"got {a[idx]!r}, expected {e[idx]!r}, allowed {bound[idx]!r}"
        )


def expect(backend: Backend, values: Any, like: Any = None, dtype: str | None = None) -> Any:
    """The expected array: ``values`` (float64 reference) as an array of ``backend`` typed like
    ``like`` (or ``dtype``)."""
    if dtype is None:
        dtype = dtype_name(like) if like is not None else "float64"
    return backend.asarray(np.asarray(values, dtype=np.float64), dtype=dtype)


# ------------------------------------------------------------------------------------------------
# float64 textbook references (docs/semantics.md), NumPy/SciPy only
# ------------------------------------------------------------------------------------------------


def ref_entropy(p, axis=-1):
    return sp.entr(np.asarray(p, np.float64)).sum(axis=axis)


def ref_cross_entropy(p, q, axis=-1):
    p, q = np.broadcast_arrays(np.asarray(p, np.float64), np.asarray(q, np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p == 0, 0.0, -p * np.log(q))
    return terms.sum(axis=axis)


def ref_kl(p, q, axis=-1):
    return sp.rel_entr(np.asarray(p, np.float64), np.asarray(q, np.float64)).sum(axis=axis)


def ref_gen_kl(p, q, axis=-1):
    """Generalized KL Σ p log(p/q) − p + q (scipy.special.kl_div), = ref_kl for distributions."""
    return sp.kl_div(np.asarray(p, np.float64), np.asarray(q, np.float64)).sum(axis=axis)


def ref_js(p, q, axis=-1):
    p, q = np.broadcast_arrays(np.asarray(p, np.float64), np.asarray(q, np.float64))
    m = (p + q) / 2
    return 0.5 * sp.rel_entr(p, m).sum(axis=axis) + 0.5 * sp.rel_entr(q, m).sum(axis=axis)


def ref_softmax_entropy(x, axis=-1):
    x = np.asarray(x, np.float64)
    return sp.entr(sp.softmax(x, axis=axis)).sum(axis=axis)


def ref_softmax_kl(a, b, axis=-1):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return sp.rel_entr(sp.softmax(a, axis=axis), sp.softmax(b, axis=axis)).sum(axis=axis)


def ref_softplus(x):
    x = np.asarray(x, np.float64)
    return np.logaddexp(0.0, x)


def _reduce(loss, w, reduction):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return np.sum(loss)
    if reduction == "mean":
        total = np.sum(w)
        return np.float64(0.0) if total == 0 else np.sum(loss) / total
    raise AssertionError(reduction)


def ref_softmax_ce(
    logits,
    labels,
    *,
    axis=-1,
    class_weights=None,
    sample_weights=None,
    label_smoothing=0.0,
    z_loss=0.0,
    reduction="none",
):
    """Dense-label softmax cross-entropy, float64, straight from semantics.md."""
    x = np.moveaxis(np.asarray(logits, np.float64), axis, -1)
    y = np.moveaxis(np.asarray(labels, np.float64), axis, -1)
    C = x.shape[-1]
    lse = sp.logsumexp(x, axis=-1)
    cw = np.ones(C) if class_weights is None else np.asarray(class_weights, np.float64)
    sw = (
        np.ones(x.shape[:-1])
        if sample_weights is None
        else np.broadcast_to(np.asarray(sample_weights, np.float64), x.shape[:-1])
    )
    t = (1 - label_smoothing) * y + label_smoothing / C
    with np.errstate(invalid="ignore"):
        terms = np.where(t == 0, 0.0, cw * t * (lse[..., None] - x))
    ce = terms.sum(-1)
    loss = sw * (ce + z_loss * lse**2)
    w = sw * (y @ cw) if class_weights is not None else sw
    return _reduce(loss, w, reduction)


def one_hot(labels, C, axis=-1):
    labels = np.asarray(labels)
    oh = (labels[..., None] == np.arange(C)).astype(np.float64)
    return np.moveaxis(oh, -1, axis)


def ref_sparse_ce(
    logits,
    labels,
    *,
    axis=-1,
    class_weights=None,
    sample_weights=None,
    ignore_index=None,
    label_smoothing=0.0,
    z_loss=0.0,
    reduction="none",
):
    """Sparse-label softmax cross-entropy, float64, written with the gather form of semantics.md."""
    x = np.moveaxis(np.asarray(logits, np.float64), axis, -1)
    labels = np.asarray(labels)
    C = x.shape[-1]
    lse = sp.logsumexp(x, axis=-1)
    cw = np.ones(C) if class_weights is None else np.asarray(class_weights, np.float64)
    sw = (
        np.ones(x.shape[:-1])
        if sample_weights is None
        else np.broadcast_to(np.asarray(sample_weights, np.float64), x.shape[:-1])
    )
    keep = np.ones(labels.shape, bool) if ignore_index is None else labels != ignore_index
    safe = np.where(keep, labels, 0)
    x_y = np.take_along_axis(x, safe[..., None], axis=-1)[..., 0]
    eps = label_smoothing
    with np.errstate(invalid="ignore"):
        smooth = np.where(eps == 0, 0.0, (eps / C) * (cw * (lse[..., None] - x)).sum(-1))
    ce = (1 - eps) * cw[safe] * (lse - x_y) + smooth
    loss = np.where(keep, sw * (ce + z_loss * lse**2), 0.0)
    w = np.where(keep, sw * (cw[safe] if class_weights is not None else 1.0), 0.0)
    return _reduce(loss, w, reduction)


def ref_sigmoid_ce(
    logits, labels, *, pos_weight=None, sample_weights=None, label_smoothing=0.0, reduction="none"
):
    x = np.asarray(logits, np.float64)
    y = np.asarray(labels, np.float64)
    eps = label_smoothing
    y = y * (1 - eps) + eps / 2
    pw = 1.0 if pos_weight is None else np.asarray(pos_weight, np.float64)
    sw = (
        np.ones(x.shape)
        if sample_weights is None
        else np.broadcast_to(np.asarray(sample_weights, np.float64), x.shape)
    )
    with np.errstate(invalid="ignore"):
        a = np.where(y == 0, 0.0, pw * y * ref_softplus(-x))
        b = np.where(y == 1, 0.0, (1 - y) * ref_softplus(x))
    loss = sw * (a + b)
    return _reduce(loss, sw, reduction)


def finite_difference(f, x, h=1e-6):
    """Central finite differences of a scalar function of one float64 array."""
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp_, xm = x.copy(), x.copy()
        xp_[idx] += h
        xm[idx] -= h
        g[idx] = (np.sum(f(xp_)) - np.sum(f(xm))) / (2 * h)
    return g
