"""Measurement behind the JAX decision: numba kernels via ``jax.pure_callback`` vs XLA on CPU.

Run as ``python -m infoloss._bench_jax [N C [REPEAT]]``. Times ``jax.jit(jax.value_and_grad(f))``
of the mean sparse softmax cross-entropy at (N, C) float32, where ``f`` is either infoloss's
generic array-API code compiled by XLA, or the fused numba kernel bound with ``jax.custom_vjp``
and ``jax.pure_callback`` (forward computes value and gradient in one sweep; the VJP scales the
saved gradient). The binding is a prototype kept here only for this measurement: infoloss does
not route JAX arrays to the kernels (see docs/torch.md for the figures and the decision).
"""

from __future__ import annotations

import sys
import time
from typing import Any


def _callback_loss() -> Any:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from . import _dispatch
    from .losses import _softmax_ce

    def host(x: Any, y: Any) -> tuple[Any, Any]:
        v, g = _softmax_ce(
            np.asarray(x),
            np.asarray(y),
            axis=-1,
            class_weights=None,
            sample_weights=None,
            label_smoothing=0.0,
            z_loss=0.0,
            reduction="mean",
            sparse=True,
            want_grad=True,
        )
        return np.asarray(v, np.float32), np.asarray(g, np.float32)

    def fused(x: Any, y: Any) -> tuple[Any, Any]:
        shapes = (jax.ShapeDtypeStruct((), jnp.float32), jax.ShapeDtypeStruct(x.shape, jnp.float32))
        return jax.pure_callback(host, shapes, x, y)

    @jax.custom_vjp
    def loss(x: Any, y: Any) -> Any:
        return fused(x, y)[0]

    def fwd(x: Any, y: Any) -> tuple[Any, Any]:
        v, g = fused(x, y)
        return v, (g, y)

    def bwd(res: Any, ct: Any) -> tuple[Any, Any]:
        g, y = res
        return g * ct, np.zeros(y.shape, dtype=jax.dtypes.float0)

    loss.defvjp(fwd, bwd)
    assert _dispatch.kernels() is not None
    return loss


def time_jax_callback(n: int, c: int, repeat: int) -> dict[str, Any]:
    """Minimum times (ms) of jitted value-and-grad: XLA (generic code) vs numba via callback.

    Returns ``{"shape", "repeat", "xla_ms", "callback_ms", "speedup" (xla / callback),
    "max_abs_grad_diff"}``. Run with ``JAX_ENABLE_X64=1`` or int64 labels warn in JAX.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from . import sparse_softmax_cross_entropy

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((n, c), dtype=np.float32))
    y = jnp.asarray(rng.integers(0, c, n, dtype=np.int32))
    xla = jax.jit(
        jax.value_and_grad(lambda x, y: sparse_softmax_cross_entropy(x, y, reduction="mean"))
    )
    cb = jax.jit(jax.value_and_grad(_callback_loss()))
    outs = {}
    times: dict[str, list[float]] = {"xla": [], "callback": []}
    for name, fn in (("xla", xla), ("callback", cb)):
        outs[name] = jax.block_until_ready(fn(x, y))  # compile + warm-up
    for _ in range(max(int(repeat), 1)):
        for name, fn in (("xla", xla), ("callback", cb)):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(x, y))
            times[name].append(time.perf_counter() - t0)
    diff = float(np.max(np.abs(np.asarray(outs["xla"][1]) - np.asarray(outs["callback"][1]))))
    xla_ms, cb_ms = 1e3 * min(times["xla"]), 1e3 * min(times["callback"])
    return {
        "shape": [n, c],
        "repeat": int(repeat),
        "xla_ms": xla_ms,
        "callback_ms": cb_ms,
        "speedup": xla_ms / cb_ms,
        "max_abs_grad_diff": diff,
    }


def main(argv: list[str] | None = None) -> int:
    """Print both timings and the ratio for (4096, 32000) float32 (or the given shape)."""
    args = [int(a) for a in (sys.argv[1:] if argv is None else argv)]
    n, c = (args[0], args[1]) if len(args) >= 2 else (4096, 32000)
    r = time_jax_callback(n, c, args[2] if len(args) >= 3 else 5)
    print(
        f"JAX value_and_grad, sparse softmax CE mean, ({n}, {c}) float32: "
        f"XLA {r['xla_ms']:.1f} ms, "
        f"numba via pure_callback {r['callback_ms']:.1f} ms, speedup {r['speedup']:.2f}x"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
