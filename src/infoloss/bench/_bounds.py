"""The memory-bound rows: each fused kernel's time over a copy of its logits, beside its bound.

Every call is timed in rounds: one round calls ``np.copyto`` of the logits and then every case
once, in the same order, so that all of them share the machine's load of that moment; each case's
ratio is taken per round (its time over that round's copy) and the median over the rounds is
printed, with the minimum times. The bounds are those of issue 17 (float32, 2 threads,
4096 × 32000; sigmoid CE at 4096 × 1000 against PyTorch).

A last column divides the case's best time by the copy's best time over the same rounds: a
round whose copy alone was slowed (this machine's copies ranged from 26 to over 60 ms within a
run) moves the per-round median, not this.

Two floors are printed beside them. A fresh copy (``x.copy()``): a case that returns a new N × C
array pays, as it does, for the kernel mapping the new pages at their first write, which the
preallocated copy does not (with glibc, arrays this large are fresh mmaps each call). And for the
sigmoid row, ``np.add(x, y, out=g)``: the reads and the write that any sigmoid CE kernel must do,
so PyTorch's time over it is the largest ratio to PyTorch a kernel could reach.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ._peers import fast_path

Log = Callable[[str], None]

#: (case, bound on the time over the copy's)
COPY_BOUNDS = (
    ("sparse softmax CE fwd+bwd", 1.3),
    ("dense softmax CE fwd+bwd", 2.0),
    ("softmax", 1.3),
    ("log_softmax", 1.3),
    ("softmax_entropy value", 0.8),
    ("softmax_entropy value+grad", 1.5),
    ("softmax_kl_divergence value", 1.3),
    ("softmax_kl_divergence value+both grads", 2.6),
)
#: PyTorch's sigmoid CE fwd+bwd time over infoloss's: at least this
SIGMOID_TORCH_BOUND = 8.0


def _cases(n: int, c: int) -> dict[str, Callable[[], Any]]:
    import infoloss as il

    vg = il.value_and_grad
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c), dtype=np.float32)
    x2 = rng.standard_normal((n, c), dtype=np.float32)
    y = rng.integers(0, c, n)
    p = il.softmax(x2)
    return {
        "sparse softmax CE fwd+bwd": lambda: vg(il.sparse_softmax_cross_entropy)(
            x, y, reduction="mean"
        ),
        "dense softmax CE fwd+bwd": lambda: vg(il.softmax_cross_entropy)(x, p, reduction="mean"),
        "softmax": lambda: il.softmax(x),
        "log_softmax": lambda: il.log_softmax(x),
        "softmax_entropy value": lambda: il.softmax_entropy(x),
        "softmax_entropy value+grad": lambda: vg(il.softmax_entropy)(x),
        "softmax_kl_divergence value": lambda: il.softmax_kl_divergence(x, x2),
        "softmax_kl_divergence value+both grads": lambda: vg(il.softmax_kl_divergence)(x, x2),
    }


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    r = fn()
    dt = time.perf_counter() - t0
    del r
    return dt


def time_bounds(
    n: int, c: int, sigmoid_shape: tuple[int, int], rounds: int, with_torch: bool
) -> dict[str, Any]:
    """Per case: minimum ms, per-round ratios to the copy (or PyTorch over infoloss), median."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, c), dtype=np.float32)
    dst = np.empty_like(x)
    cases = _cases(n, c)
    times: dict[str, list[float]] = {"copy": [], "fresh": [], **{k: [] for k in cases}}
    with fast_path():
        for f in cases.values():  # warm up: compile or load, first touch of the buffers
            f()
        for _ in range(rounds):
            times["copy"].append(_timed(lambda: np.copyto(dst, x)))
            times["fresh"].append(_timed(x.copy))
            for k, f in cases.items():
                times[k].append(_timed(f))
    res: dict[str, Any] = {"shape": [n, c], "rounds": rounds, "cases": {}}
    copy = times["copy"]
    res["copy_ms"] = 1e3 * min(copy)
    res["fresh_copy_ms"] = 1e3 * min(times["fresh"])
    res["fresh_over_copy"] = statistics.median(
        [f / cp for f, cp in zip(times["fresh"], copy, strict=True)]
    )
    for k, bound in COPY_BOUNDS:
        ratios = [t / cp for t, cp in zip(times[k], copy, strict=True)]
        res["cases"][k] = {
            "ms": 1e3 * min(times[k]),
            "median_ratio": statistics.median(ratios),
            "ratios": ratios,
            "bound": bound,
            "min_over_min_copy": min(times[k]) / min(copy),
            "over_fresh_copy": statistics.median(
                [t / f for t, f in zip(times[k], times["fresh"], strict=True)]
            ),
        }
    cases.clear()
    if with_torch:
        res["sigmoid"] = _time_sigmoid(sigmoid_shape, rounds)
    return res


def _time_sigmoid(shape: tuple[int, int], rounds: int) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    import infoloss as il

    n, c = shape
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, c), dtype=np.float32)
    y = (rng.random((n, c)) < 0.1).astype(np.float32)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    vg = il.value_and_grad(il.sigmoid_cross_entropy)

    def ours() -> Any:
        with fast_path():
            return vg(x, y, reduction="mean")

    def theirs() -> Any:
        xx = tx.detach().requires_grad_()
        loss = F.binary_cross_entropy_with_logits(xx, ty)
        loss.backward()
        return loss, xx.grad

    # the traffic floor of any fused kernel: read the logits and the labels, write the gradient
    # (into a buffer that is already mapped)
    g = np.empty_like(x)

    def floor() -> Any:
        return np.add(x, y, out=g)

    ours()
    theirs()
    floor()
    a: list[float] = []
    b: list[float] = []
    f: list[float] = []
    for _ in range(rounds):
        for _ in range(3):  # a few calls per round: each takes milliseconds
            a.append(_timed(ours))
            b.append(_timed(theirs))
            f.append(_timed(floor))
    ratios = [tb / ta for ta, tb in zip(a, b, strict=True)]
    return {
        "shape": [n, c],
        "ms": 1e3 * min(a),
        "torch_ms": 1e3 * min(b),
        "median_ratio": statistics.median(ratios),
        "ratios": ratios,
        "bound": SIGMOID_TORCH_BOUND,
        "floor_ms": 1e3 * min(f),
        "torch_over_floor": statistics.median([tb / tf for tb, tf in zip(b, f, strict=True)]),
    }


def format_bounds(res: dict[str, Any]) -> str:
    """The rows: case, minimum ms, median ratio over the rounds, its bound."""
    n, c = res["shape"]
    lines = [
        f"memory-bound rows, float32 {n}x{c}, {res['rounds']} rounds (np.copyto of the logits: "
        f"{res['copy_ms']:.1f} ms); ratio = median over the rounds of the case's time / the "
        "same round's copy",
        f"  a fresh copy (x.copy(): a new array, its pages mapped by the first write) "
        f"{res['fresh_copy_ms']:.1f} ms, {res['fresh_over_copy']:.2f}x the copy: the floor of "
        "a case that returns a new N x C array",
        f"  {'case':42s} {'ms (min)':>9s} {'/ copy':>7s} {'bound':>6s} {'/ fresh copy':>13s} "
        f"{'min / min copy':>15s}",
    ]
    for k, r in res["cases"].items():
        lines.append(
            f"  {k:42s} {r['ms']:9.1f} {r['median_ratio']:7.2f} {r['bound']:6.1f} "
            f"{r['over_fresh_copy']:13.2f} {r['min_over_min_copy']:15.2f}"
        )
    s = res.get("sigmoid")
    if s:
        sn, sc = s["shape"]
        lines.append(
            f"  sigmoid CE fwd+bwd {sn}x{sc}: infoloss {s['ms']:.2f} ms, PyTorch "
            f"{s['torch_ms']:.2f} ms; PyTorch / infoloss (median) {s['median_ratio']:.2f}, "
            f"bound >= {s['bound']:.1f}"
        )
        lines.append(
            f"  its traffic floor (np.add(x, y, out=g): read logits and labels, write a gradient) "
            f"{s['floor_ms']:.2f} ms: PyTorch / floor (median) {s['torch_over_floor']:.2f}, the "
            "most a kernel at the memory bound could reach"
        )
    return "\n".join(lines)
