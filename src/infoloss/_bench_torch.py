"""Benchmark row "infoloss on torch tensors": forward+backward through autograd vs F.cross_entropy.

Run as ``python -m infoloss._bench_torch [N C [REPEAT]]``; the benchmark command calls
:func:`time_torch_autograd`. Both contenders run in the same process, alternately (so that load
from other processes hits both alike), on the same float32 logits and sparse labels; each timing
is ``loss = f(logits, labels); loss.backward()`` with ``logits.grad`` reset before each repeat,
after one warm-up call of each (which also compiles the kernels or loads them from the cache).
"""

from __future__ import annotations

import sys
import time
from typing import Any


def time_torch_autograd(n: int, c: int, repeat: int) -> dict[str, Any]:
    """Minimum times (ms) of forward+backward through autograd, infoloss vs ``F.cross_entropy``.

    Parameters
    ----------
    n, c : int
        Rows (examples) and classes of the float32 logits; labels are random class indices.
    repeat : int
        Timed repeats of each contender (the minimum is reported), after one warm-up each.

    Returns
    -------
    dict
        ``{"shape": [n, c], "dtype": "float32", "repeat": repeat, "infoloss_torch_ms": ...,
        "torch_cross_entropy_ms": ..., "speedup": torch / infoloss, "fast_path": bool}``;
        ``fast_path`` says whether the fused kernels ran (False when numba is unavailable or the
        fast path is disabled, in which case infoloss ran its generic torch code).

    Examples
    --------
    >>> from infoloss._bench_torch import time_torch_autograd
    >>> r = time_torch_autograd(64, 100, repeat=2)
    >>> sorted(r)
    ... # doctest: +NORMALIZE_WHITESPACE
    ['dtype', 'fast_path', 'infoloss_torch_ms', 'repeat', 'shape', 'speedup',
     'torch_cross_entropy_ms']
    """
    import torch
    import torch.nn.functional as F

    from . import sparse_softmax_cross_entropy
    from .torch import uses_fast_path

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(n, c, generator=gen, dtype=torch.float32).requires_grad_()
    labels = torch.randint(0, c, (n,), generator=gen)

    def ours() -> None:
        sparse_softmax_cross_entropy(logits, labels, reduction="mean").backward()

    def theirs() -> None:
        F.cross_entropy(logits, labels).backward()

    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    for fn in (ours, theirs):  # warm-up
        logits.grad = None
        fn()
    for _ in range(max(int(repeat), 1)):
        for name, fn in (("ours", ours), ("theirs", theirs)):
            logits.grad = None
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    logits.grad = None
    ours_ms = 1e3 * min(times["ours"])
    theirs_ms = 1e3 * min(times["theirs"])
    return {
        "shape": [n, c],
        "dtype": "float32",
        "repeat": int(repeat),
        "infoloss_torch_ms": ours_ms,
        "torch_cross_entropy_ms": theirs_ms,
        "speedup": theirs_ms / ours_ms if ours_ms > 0 else float("inf"),
        "fast_path": uses_fast_path(logits, labels),
    }


def main(argv: list[str] | None = None) -> int:
    """Print the row for (N, C) = (4096, 32000) (or the given shape) and the ratio."""
    args = [int(a) for a in (sys.argv[1:] if argv is None else argv)]
    n, c = (args[0], args[1]) if len(args) >= 2 else (4096, 32000)
    repeat = args[2] if len(args) >= 3 else 5
    r = time_torch_autograd(n, c, repeat)
    print(
        f"infoloss on torch tensors, sparse softmax CE forward+backward, ({n}, {c}) float32: "
        f"infoloss {r['infoloss_torch_ms']:.1f} ms, F.cross_entropy "
        f"{r['torch_cross_entropy_ms']:.1f} ms, speedup {r['speedup']:.2f}x"
        + ("" if r["fast_path"] else " (fast path OFF: generic torch code)")
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
