"""The contenders of the loss table: infoloss (fused and generic), NumPy and the copy bound.

PyTorch and JAX live in :mod:`._torch` and :mod:`._jax` and are imported only when timed. Each
contender is a function ``(kind, x, y) -> Rows`` that prepares its inputs and returns, for each
row of the table it contributes, the calls to time per operation (``"fwd"``: the mean loss;
``"fwd+bwd"``: the mean loss and its gradient with respect to the logits; ``"copy"``). The types
and the infoloss row names come from :mod:`._common`, which :mod:`._torch` and :mod:`._jax` import
too (they never import this module).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ._common import FAST, FAST_OUT, GENERIC, Rows

PEERS = ("infoloss", "copy", "numpy", "torch", "jax")
"""The contenders, in the order they are timed."""

_MODULE = {"torch": "torch", "jax": "jax"}


def installed(peer: str) -> bool:
    """Whether the library a contender needs can be imported (without importing it)."""
    mod = _MODULE.get(peer)
    return mod is None or importlib.util.find_spec(mod) is not None


def fast_path_available() -> bool:
    """Whether NumPy float inputs take the numba kernels: numba imports and the documented
    switch ``INFOLOSS_DISABLE_FAST`` is unset (or ``0``)."""
    if os.environ.get("INFOLOSS_DISABLE_FAST", "") not in ("", "0"):
        return False
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def generic_path() -> Iterator[None]:
    """Run the enclosed calls on infoloss's generic array-API code instead of the numba kernels.

    With :func:`fast_path`, the one place where the benchmark uses a private part of infoloss
    (``infoloss._config.generic_only`` / ``always_fast``); keep it that way until there is a
    public switch.
    """
    from infoloss import _config

    with _config.generic_only():
        yield


@contextmanager
def fast_path() -> Iterator[None]:
    """Run the enclosed calls on the numba kernels whatever the problem's size (below the
    router's threshold, ``infoloss._config.FAST_MIN_ELEMENTS``, they would take the generic
    code)."""
    from infoloss import _config

    with _config.always_fast():
        yield


def infoloss_rows(kind: str, x: np.ndarray, y: np.ndarray) -> Rows:
    """The public API on NumPy inputs: fused (when available), fused into a reused gradient
    buffer (``out=``), and forced onto the generic path."""
    import infoloss

    f: Callable[..., Any] = (
        infoloss.sparse_softmax_cross_entropy
        if kind == "sparse"
        else infoloss.sigmoid_cross_entropy
    )
    vg = infoloss.value_and_grad(f)
    buf = np.empty_like(x)

    def fwd() -> Any:
        with fast_path():
            return f(x, y, reduction="mean")

    def fwdbwd() -> Any:
        with fast_path():
            return vg(x, y, reduction="mean")

    def fwdbwd_out() -> Any:
        with fast_path():
            return vg(x, y, reduction="mean", out=buf)

    def generic_fwd() -> Any:
        with generic_path():
            return f(x, y, reduction="mean")

    def generic_fwdbwd() -> Any:
        with generic_path():
            return vg(x, y, reduction="mean")

    rows: Rows = {}
    if fast_path_available():
        rows[FAST] = {"fwd": fwd, "fwd+bwd": fwdbwd}
        rows[FAST_OUT] = {"fwd+bwd": fwdbwd_out}
    rows[GENERIC] = {"fwd": generic_fwd, "fwd+bwd": generic_fwdbwd}
    return rows


def copy_rows(kind: str, x: np.ndarray, y: np.ndarray) -> Rows:
    """``np.copyto`` of the logits into a preallocated array: the memory-speed bound."""
    dst = np.empty_like(x)

    def copy() -> None:
        np.copyto(dst, x)

    return {"copy": {"copy": copy}}


def numpy_rows(kind: str, x: np.ndarray, y: np.ndarray) -> Rows:
    """Plain NumPy textbook code (stable log-sum-exp; the gradient from the saved exponentials)."""
    n = x.shape[0]
    rows = np.arange(n)
    if kind == "sparse":

        def fwd() -> Any:
            m = x.max(axis=1, keepdims=True)
            lse = np.log(np.exp(x - m).sum(axis=1)) + m[:, 0]
            return np.mean(lse - x[rows, y])

        def fwdbwd() -> Any:
            m = x.max(axis=1, keepdims=True)
            e = np.exp(x - m)
            s = e.sum(axis=1, keepdims=True)
            loss = np.mean(np.log(s[:, 0]) + m[:, 0] - x[rows, y])
            g = e / s
            g[rows, y] -= 1.0
            g /= n
            return loss, g

        return {"numpy": {"fwd": fwd, "fwd+bwd": fwdbwd}}

    def sfwd() -> Any:
        return np.mean(np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x))))

    def sfwdbwd() -> Any:
        e = np.exp(-np.abs(x))
        loss = np.mean(np.maximum(x, 0) - x * y + np.log1p(e))
        sig = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        return loss, (sig - y) / x.size

    return {"numpy": {"fwd": sfwd, "fwd+bwd": sfwdbwd}}


def rows_of(peer: str) -> Callable[[str, np.ndarray, np.ndarray], Rows]:
    """The row builder of one contender (importing its module only now)."""
    if peer == "torch":
        from ._torch import torch_rows

        return torch_rows
    if peer == "jax":
        from ._jax import jax_rows

        return jax_rows
    return {"infoloss": infoloss_rows, "copy": copy_rows, "numpy": numpy_rows}[peer]
