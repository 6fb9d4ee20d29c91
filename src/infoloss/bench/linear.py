"""The linear part of the benchmark: :func:`infoloss.linear_cross_entropy` against unfused peers.

Forward + backward of the mean sparse cross-entropy of ``hidden @ weight.T + bias`` at float32
(N, H, V), returning the gradients with respect to hidden, weight and bias, for

- ``fused``: ``value_and_grad(infoloss.linear_cross_entropy)`` (the logits never exist whole),
- ``unfused``: the logits by ``@``, then ``value_and_grad(infoloss.sparse_softmax_cross_entropy)``
  and the three products of the backward,
- ``torch``: ``F.cross_entropy(F.linear(...))`` and ``loss.backward()``,
- ``torch-chunked``: ``F.linear_cross_entropy(..., options=LinearCrossEntropyOptions())``
  (PyTorch's chunked implementation, its automatic chunking) and ``loss.backward()``,
- ``jax``: ``jax.jit(jax.value_and_grad(...))`` of a log-sum-exp loss.

Each variant runs in its own child process so that its peak resident memory can be measured
(``VmHWM`` after resetting it with ``/proc/self/clear_refs``, Linux only); the NumPy variants also
report the peak of ``tracemalloc``. Extra memory is counted above what the process held just
before the call (inputs and compiled kernels included there), less the gradients every variant
returns (d_hidden, d_weight, d_bias): the working memory, compared with the unfused logits and
their gradient.

Run ``python -m infoloss.bench.linear`` (the same as ``infoloss bench --only linear``; default
size 8192,1024,32768, ``--linear N,H,V[;N,H,V]`` for others, ``--peers`` to choose variants).
"""

from __future__ import annotations

import sys

from ._linear import bench, format_table, run_variant

__all__ = ["bench", "format_table", "main", "run_variant"]


def main(argv: list[str] | None = None) -> int:
    """``python -m infoloss.bench.linear [OPTIONS]``: ``infoloss bench --only linear [OPTIONS]``."""
    from ._command import run_command

    args = list(sys.argv[1:] if argv is None else argv)
    return run_command(
        ["--only", "linear", *args], prog="python -m infoloss.bench.linear", doc=__doc__
    )


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
