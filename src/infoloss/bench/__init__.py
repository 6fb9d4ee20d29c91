"""Benchmarks of infoloss's fused CPU kernels against their peers (``infoloss bench``).

Run ``infoloss bench`` (or ``python -m infoloss.bench``; the linear part alone:
``python -m infoloss.bench.linear``). The core library never imports this package. In one run it
times, on float32 logits, sparse softmax cross-entropy at (4096, 32000), (1024, 131072) and
(65536, 10) and sigmoid cross-entropy at (4096, 1000), forward ("fwd": the mean loss) and
forward + backward ("fwd+bwd": the mean loss and its gradient with respect to the logits), for

- ``infoloss fast``: the public API on NumPy inputs (the numba kernels),
- ``infoloss fast, out=``: fwd+bwd with the gradient written into one reused buffer
  (``value_and_grad(f)(x, y, out=buf)``), as a training loop that keeps its buffer would; the
  other rows return a new gradient array each call,
- ``infoloss generic``: the same calls on the generic array-API code,
- ``numpy``: plain NumPy textbook code,
- ``torch``: PyTorch CPU ``F.cross_entropy`` / ``F.binary_cross_entropy_with_logits``, backward
  by autograd,
- ``jax (jit, optax)`` and ``infoloss on jax (jit)``: ``jax.jit`` of optax's losses and of
  infoloss's on JAX arrays, gradients by ``jax.value_and_grad``,
- ``copy``: ``np.copyto`` of the logits into a preallocated array, the memory-speed bound.

Each time is the minimum over ``--repeat`` runs after one warm-up call. The table shows
milliseconds, GB/s of logits, each row's time over infoloss's (how many times faster infoloss is)
and over the copy's; a summary repeats those ratios per case. Unless ``--no-compile-time`` or
``--quick``, the first-call time of the fused path (numba compilation, or loading the on-disk
cache) is measured in fresh processes, with an empty cache and then with that warm cache.

Two more parts: infoloss on torch tensors through autograd against ``F.cross_entropy``
(``--torch-autograd``, on by default when PyTorch is installed, off with ``--quick``), and
:func:`infoloss.linear_cross_entropy` against unfused computations, time and peak memory, each in
a child process (``--linear N,H,V``). ``--json PATH`` writes every figure (atomically).

Exit codes: 0 on success; 2 with a one-line message for a bad command line, before anything is
timed; 1 when the figures cannot be written after the run.
"""

from __future__ import annotations

import sys

from ._command import run_command

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run ``infoloss bench`` with ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Examples
    --------
    >>> main(["--peers", "bogus"])
    2
    """
    return run_command(
        list(sys.argv[1:] if argv is None else argv), prog="infoloss bench", doc=__doc__
    )
