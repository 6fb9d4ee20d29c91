"""PyTorch in the benchmark: the ``torch`` row of the loss table, and infoloss on torch tensors.

The loss table times ``F.cross_entropy`` / ``F.binary_cross_entropy_with_logits`` on CPU,
backward by autograd. The torch-autograd part (:func:`time_torch_autograd`) times infoloss's
public functions called on torch tensors, ``loss.backward()`` included, against
``F.cross_entropy``: both contenders alternate in one process on the same float32 logits and
sparse labels (so that load from other processes hits both alike), with ``logits.grad`` reset
before each call as ``optimizer.zero_grad()`` does, after one warm-up call each (which also
compiles the kernels or loads them from the cache).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ._common import Rows


def torch_rows(kind: str, x: np.ndarray, y: np.ndarray) -> Rows:
    """``{"torch": {"fwd": ..., "fwd+bwd": ...}}`` on zero-copy tensors of ``x`` and ``y``."""
    import torch
    import torch.nn.functional as F

    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y)
    loss_fn = F.cross_entropy if kind == "sparse" else F.binary_cross_entropy_with_logits

    def fwd() -> Any:
        with torch.no_grad():
            return loss_fn(xt, yt)

    def fwdbwd() -> Any:
        xg = xt.detach().requires_grad_(True)
        loss = loss_fn(xg, yt)
        loss.backward()
        return loss, xg.grad

    return {"torch": {"fwd": fwd, "fwd+bwd": fwdbwd}}


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
        ``fast_path`` says whether the fused kernels ran (else infoloss ran its generic torch
        code).

    Examples
    --------
    >>> r = time_torch_autograd(64, 100, repeat=2)
    >>> sorted(r)
    ... # doctest: +NORMALIZE_WHITESPACE
    ['dtype', 'fast_path', 'infoloss_torch_ms', 'repeat', 'shape', 'speedup',
     'torch_cross_entropy_ms']
    """
    import torch
    import torch.nn.functional as F

    from infoloss import sparse_softmax_cross_entropy
    from infoloss.torch import uses_fast_path

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


def format_torch_autograd(r: dict[str, Any]) -> str:
    """One line: both times and their ratio."""
    n, c = r["shape"]
    route = "fused kernels" if r["fast_path"] else "generic torch code (fast path off)"
    return (
        f"infoloss on torch tensors, sparse softmax CE forward+backward through autograd, "
        f"{n}x{c} float32: {r['infoloss_torch_ms']:.2f} ms ({route}) vs F.cross_entropy "
        f"{r['torch_cross_entropy_ms']:.2f} ms: F.cross_entropy / infoloss = {r['speedup']:.2f}"
    )
