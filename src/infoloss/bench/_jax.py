"""JAX in the benchmark: optax (or a hand-written loss) under ``jax.jit``, and infoloss on JAX.

JAX arrays take infoloss's generic array-API code, which XLA compiles; infoloss does not route
them to the numba kernels (docs/torch.md has the measurement behind that decision). The loss
table therefore has two JAX rows, both ``jax.jit`` of the mean loss and of
``jax.value_and_grad`` of it, on the same float32 logits:

- ``jax (jit, optax)``: ``optax.softmax_cross_entropy_with_integer_labels`` /
  ``optax.sigmoid_binary_cross_entropy`` (``jax (jit, hand-written)``: a log-softmax loss
  written with ``jax.nn``, when optax is not installed);
- ``infoloss on jax (jit)``: :func:`infoloss.sparse_softmax_cross_entropy` /
  :func:`infoloss.sigmoid_cross_entropy` called on JAX arrays, what a JAX user of infoloss gets.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ._common import Fn, Rows


def _reference_losses() -> tuple[Callable[..., Any], Callable[..., Any], str]:
    import jax
    import jax.numpy as jnp

    try:
        import optax
    except ImportError:

        def sparse_ce(logits: Any, labels: Any) -> Any:
            logp = jax.nn.log_softmax(logits, axis=-1)
            return -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]

        def sigmoid_ce(logits: Any, labels: Any) -> Any:
            return jax.nn.softplus(logits) - logits * labels

        return sparse_ce, sigmoid_ce, "jax (jit, hand-written)"
    return (
        optax.softmax_cross_entropy_with_integer_labels,
        optax.sigmoid_binary_cross_entropy,
        "jax (jit, optax)",
    )


def _quiet(fn: Fn) -> Fn:
    """``fn`` with warnings silenced: infoloss casts class indices to int64, which JAX truncates
    (with a ``UserWarning`` at trace time) unless ``jax_enable_x64`` is set."""

    def call() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return fn()

    return call


def jax_rows(kind: str, x: np.ndarray, y: np.ndarray) -> Rows:
    """Both JAX rows; the inputs are on the device (and ready) when this returns."""
    import jax
    import jax.numpy as jnp

    import infoloss

    sparse_ce, sigmoid_ce, label = _reference_losses()
    ref = sparse_ce if kind == "sparse" else sigmoid_ce
    ours: Callable[..., Any] = (
        infoloss.sparse_softmax_cross_entropy
        if kind == "sparse"
        else infoloss.sigmoid_cross_entropy
    )

    def ref_loss(logits: Any, labels: Any) -> Any:
        return jnp.mean(ref(logits, labels))

    def our_loss(logits: Any, labels: Any) -> Any:
        return ours(logits, labels, reduction="mean")

    xj = jax.device_put(x)
    yj = jax.device_put(y.astype(np.int32) if kind == "sparse" else y)
    jax.block_until_ready((xj, yj))

    def jitted(loss: Callable[..., Any]) -> dict[str, Fn]:
        f = jax.jit(loss)
        vg = jax.jit(jax.value_and_grad(loss))
        return {
            "fwd": _quiet(lambda: jax.block_until_ready(f(xj, yj))),
            "fwd+bwd": _quiet(lambda: jax.block_until_ready(vg(xj, yj))),
        }

    return {label: jitted(ref_loss), "infoloss on jax (jit)": jitted(our_loss)}
