"""``infoloss bench --framework torch|jax [--device DEV]``: the framework paths under autodiff.

Each figure is fwd+bwd of a mean loss, float32, timed in one process with the contenders
alternating (best of ``repeat``), and its peak memory measured in a fresh child process per
contender:

- **torch**: sparse softmax CE with label smoothing 0.1 through ``loss.backward()`` —
  ``F.cross_entropy`` against infoloss (on a CPU device the fused path, and the lean autograd
  Function with ``INFOLOSS_DISABLE_FAST=1``, which is what CUDA/MPS run); and
  ``linear_cross_entropy`` against the unfused ``F.cross_entropy(h @ W.T, y)`` and, where torch
  has it, ``F.linear_cross_entropy``. Peak memory: peak RSS above the inputs on CPU,
  ``torch.cuda.max_memory_allocated`` above the inputs on CUDA.
- **jax**: ``jax.jit(jax.value_and_grad(...))`` of infoloss against optax (smoothed one-hot
  targets), with the XLA temporary bytes of each compiled function.

Nothing is claimed for a device until it is measured there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

__all__ = ["run_framework"]

_CHILD_TORCH = textwrap.dedent(
    """
    import json, sys, torch, infoloss
    import torch.nn.functional as F
    kind, who, dev, n, c, h, chunk = sys.argv[1:8]
    n, c, h, chunk = int(n), int(c), int(h), int(chunk)
    cuda = dev.startswith("cuda")
    def peak():
        if cuda:
            return torch.cuda.max_memory_allocated()
        # VmHWM: this process's own high-water mark (ru_maxrss is inherited across fork+exec)
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
    torch.manual_seed(0)
    y = torch.randint(0, c, (n,), device=dev)
    if kind == "ce":
        x = torch.randn(n, c, device=dev).requires_grad_()
        args = (x,)
        def step():
            if who == "torch":
                F.cross_entropy(x, y, label_smoothing=0.1).backward()
            else:
                infoloss.sparse_softmax_cross_entropy(
                    x, y, label_smoothing=0.1, reduction="mean").backward()
    else:
        hid = torch.randn(n, h, device=dev).requires_grad_()
        w = torch.randn(c, h, device=dev).div_(h ** 0.5).requires_grad_()
        args = (hid, w)
        def step():
            if who == "torch":
                F.cross_entropy(hid @ w.T, y).backward()
            elif who == "torch-linear":
                F.linear_cross_entropy(hid, w, y).backward()
            else:
                infoloss.linear_cross_entropy(hid, w, y, chunk_size=chunk).backward()
    # one fwd+bwd: the peak above what the inputs (and the interpreter) already hold
    if cuda:
        torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    base = peak()
    step()
    if cuda:
        torch.cuda.synchronize()
    print(json.dumps({"peak": peak() - base}))
    """
)


def _child_peak(kind: str, who: str, device: str, n: int, c: int, h: int, chunk: int) -> Any:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD_TORCH, kind, who, device, str(n), str(c), str(h), str(chunk)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
    )
    if out.returncode != 0:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])["peak"]


def _best(fns: dict[str, Callable[[], Any]], repeat: int, sync: Callable[[], None]) -> dict:
    for f in fns.values():
        f()
    sync()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            sync()
            times[k].append(time.perf_counter() - t)
    return {k: min(v) for k, v in times.items()}


def _mib(b: Any) -> str:
    return "   n/a" if b is None else f"{b / 2**20:7.1f}"


def _torch(device: str, quick: bool, repeat: int, log: Callable[[str], None]) -> dict:
    import torch
    import torch.nn.functional as F

    import infoloss
    import infoloss.torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    n, c = (256, 4000) if quick else (2048, 32000)
    torch.manual_seed(0)
    x = torch.randn(n, c, device=device).requires_grad_()
    y = torch.randint(0, c, (n,), device=device)

    def ce_torch() -> None:
        x.grad = None
        F.cross_entropy(x, y, label_smoothing=0.1).backward()

    def ce_ours() -> None:
        x.grad = None
        infoloss.sparse_softmax_cross_entropy(
            x, y, label_smoothing=0.1, reduction="mean"
        ).backward()

    path = "fast" if infoloss.torch.uses_fast_path(x) else "lean autograd"
    t = _best({"torch": ce_torch, "infoloss": ce_ours}, repeat, sync)
    peaks = {k: _child_peak("ce", k, device, n, c, 0, 0) for k in ("torch", "infoloss")}
    log(f"sparse CE fwd+bwd {n}x{c} float32, smoothing 0.1, device {device}, infoloss path: {path}")
    log(f"  {'contender':<22}{'ms':>9}{'ratio':>8}{'peak MiB':>10}")
    for k in ("torch", "infoloss"):
        log(f"  {k:<22}{t[k] * 1e3:9.1f}{t[k] / t['torch']:8.2f}{_mib(peaks[k]):>10}")
    res: dict[str, Any] = {"ce": {"shape": [n, c], "path": path, "time": t, "peak": peaks}}
    # linear layer + CE
    n, hdim, v = (512, 64, 4000) if quick else (2048, 512, 32768)
    chunk = 256 if not quick else 128
    hid = torch.randn(n, hdim, device=device).requires_grad_()
    w = (torch.randn(v, hdim, device=device) / hdim**0.5).requires_grad_()
    yl = torch.randint(0, v, (n,), device=device)

    def lin(kind: str) -> Callable[[], None]:
        def f() -> None:
            hid.grad = w.grad = None
            if kind == "torch":
                F.cross_entropy(hid @ w.T, yl).backward()
            elif kind == "torch-linear":
                F.linear_cross_entropy(hid, w, yl).backward()
            else:
                infoloss.linear_cross_entropy(hid, w, yl, chunk_size=chunk).backward()

        return f

    kinds = ["torch", "infoloss"] + (["torch-linear"] if hasattr(F, "linear_cross_entropy") else [])
    t = _best({k: lin(k) for k in kinds}, max(2, repeat // 2), sync)
    peaks = {k: _child_peak("linear", k, device, n, v, hdim, chunk) for k in kinds}
    unfused = 2 * n * v * 4
    log(
        f"linear_cross_entropy fwd+bwd N={n} H={hdim} V={v} float32 (chunk {chunk}); unfused "
        f"logits + gradient {unfused / 2**20:.0f} MiB"
    )
    log(f"  {'contender':<22}{'ms':>9}{'ratio':>8}{'peak MiB':>10}")
    for k in kinds:
        log(f"  {k:<22}{t[k] * 1e3:9.1f}{t[k] / t['torch']:8.2f}{_mib(peaks[k]):>10}")
    res["linear"] = {"shape": [n, hdim, v], "chunk": chunk, "time": t, "peak": peaks}
    return res


def _jax(device: str, quick: bool, repeat: int, log: Callable[[str], None]) -> dict:
    import warnings

    import jax
    import jax.numpy as jnp

    import infoloss
    import infoloss.torch

    n, c = (256, 4000) if quick else (2048, 32000)
    dev = jax.devices(device)[0]
    x = jax.device_put(jax.random.normal(jax.random.PRNGKey(0), (n, c), jnp.float32), dev)
    y = jax.device_put(jax.random.randint(jax.random.PRNGKey(1), (n,), 0, c), dev)

    def ours(x: Any, y: Any) -> Any:
        return infoloss.sparse_softmax_cross_entropy(x, y, label_smoothing=0.1, reduction="mean")

    fns: dict[str, Callable[..., Any]] = {"infoloss": ours}
    try:
        import optax

        def theirs(x: Any, y: Any) -> Any:
            t = optax.smooth_labels(jax.nn.one_hot(y, c), 0.1)
            return optax.softmax_cross_entropy(x, t).mean()

        fns = {"optax": theirs, "infoloss": ours}
    except ImportError:
        log("optax not installed: infoloss alone")
    compiled, temps = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for k, f in fns.items():
            cf = jax.jit(jax.value_and_grad(f)).lower(x, y).compile()
            compiled[k] = cf
            ma = cf.memory_analysis()
            temps[k] = None if ma is None else ma.temp_size_in_bytes

    def call(cf: Any) -> Callable[[], Any]:
        return lambda: jax.block_until_ready(cf(x, y))

    calls = {k: call(cf) for k, cf in compiled.items()}
    t = _best(calls, repeat, lambda: None)
    ref = next(iter(fns))
    log(f"jit(value_and_grad) sparse CE {n}x{c} float32, smoothing 0.1, device {dev}")
    log(f"  {'contender':<22}{'ms':>9}{'ratio':>8}{'XLA temp MiB':>14}")
    for k in fns:
        log(f"  {k:<22}{t[k] * 1e3:9.1f}{t[k] / t[ref]:8.2f}{_mib(temps[k]):>14}")
    return {"ce": {"shape": [n, c], "time": t, "temp": temps}}


def run_framework(
    framework: str, device: str | None, quick: bool, repeat: int | None, log: Callable = print
) -> dict:
    """Run the framework benchmark; the figures as a dict (also printed through ``log``)."""
    repeat = repeat or (2 if quick else 5)
    if framework == "torch":
        return {"torch": _torch(device or "cpu", quick, repeat, log)}
    return {"jax": _jax(device or "cpu", quick, repeat, log)}
