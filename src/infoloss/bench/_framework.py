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
    def status(key):
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key + ":"))
    def peak():
        if cuda:
            return torch.cuda.max_memory_allocated()
        return status("VmHWM")
    def now():
        if cuda:
            torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
            return torch.cuda.memory_allocated()
        # reset this process's high-water mark to its current size (Linux: clear_refs 5)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return status("VmRSS")
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
                infoloss.linear_cross_entropy(hid, w, y, chunk_size=chunk or None).backward()
    # a first step compiles or loads the kernels and warms the allocator; the second one's
    # peak above what the process then holds (inputs, interpreter) is the step's memory
    step()
    for a in args:
        a.grad = None
    import gc; gc.collect()
    base = now()
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
        # a fixed mmap threshold: glibc returns every large block to the system when it is
        # freed (its default threshold grows after frees, and the warm-up's freed blocks would
        # then be reused below the measured peak)
        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"},
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


def _torch(
    device: str,
    quick: bool,
    repeat: int,
    linear: tuple[tuple[int, int, int], ...],
    log: Callable[[str], None],
) -> dict:
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
    # linear layer + CE, each shape
    res["linear"] = [_torch_linear(device, shape, repeat, sync, log) for shape in linear]
    return res


def _extra(peak: Any, grads: int) -> Any:
    """Peak memory above the inputs *and* the returned gradients (``None`` when not measured)."""
    return None if peak is None else peak - grads


def _linear_header(log: Callable[[str], None], n: int, hdim: int, v: int, what: str) -> int:
    unfused = 2 * n * v * 4
    log(
        f"linear_cross_entropy fwd+bwd N={n} H={hdim} V={v} float32, {what}; unfused logits + "
        f"gradient {unfused / 2**20:.0f} MiB (bound for the extra memory: 1/8 of it, "
        f"{unfused / 8 / 2**20:.0f} MiB)"
    )
    return unfused


def _torch_linear(
    device: str,
    shape: tuple[int, int, int],
    repeat: int,
    sync: Callable[[], None],
    log: Callable[[str], None],
) -> dict:
    import torch
    import torch.nn.functional as F

    import infoloss

    n, hdim, v = shape
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
            else:  # the adaptive chunk
                infoloss.linear_cross_entropy(hid, w, yl).backward()

        return f

    kinds = ["torch", "infoloss"] + (["torch-linear"] if hasattr(F, "linear_cross_entropy") else [])
    t = _best({k: lin(k) for k in kinds}, max(2, repeat // 2), sync)
    peaks = {k: _child_peak("linear", k, device, n, v, hdim, 0) for k in kinds}
    grads = 4 * (n * hdim + v * hdim)
    unfused = _linear_header(log, n, hdim, v, f"loss.backward() on {device}")
    log(f"  {'contender':<22}{'ms':>9}{'ratio':>8}{'extra MiB':>11}{'/ unfused':>11}")
    for k in kinds:
        extra = _extra(peaks[k], grads)
        frac = "n/a" if extra is None else f"{extra / unfused:.3f}"
        log(f"  {k:<22}{t[k] * 1e3:9.1f}{t[k] / t['torch']:8.2f}{_mib(extra):>11}{frac:>11}")
    log("  (extra: peak RSS (CUDA: max allocated) above the inputs and the returned gradients)")
    return {"shape": [n, hdim, v], "time": t, "peak": peaks, "gradients": grads}


def _compile(f: Any, *args: Any) -> tuple[Any, Any]:
    """``f`` lowered and compiled for ``args``, and its XLA temporary bytes (``None``: unknown)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cf = f.lower(*args).compile()
    ma = cf.memory_analysis()
    return cf, None if ma is None else ma.temp_size_in_bytes


def _jax_linear(dev: Any, shape: tuple[int, int, int], repeat: int, log: Callable) -> dict:
    import jax
    import jax.numpy as jnp

    import infoloss

    n, hdim, v = shape
    key = jax.random.split(jax.random.PRNGKey(2), 3)
    hid = jax.device_put(jax.random.normal(key[0], (n, hdim), jnp.float32), dev)
    w = jax.device_put(jax.random.normal(key[1], (v, hdim), jnp.float32) / hdim**0.5, dev)
    y = jax.device_put(jax.random.randint(key[2], (n,), 0, v), dev)

    def unfused(h: Any, w: Any, y: Any) -> Any:
        logits = h @ w.T
        lse = jax.nn.logsumexp(logits, axis=-1)
        return jnp.mean(lse - jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0])

    def ours(h: Any, w: Any, y: Any) -> Any:
        return infoloss.linear_cross_entropy(h, w, y, reduction="mean")

    fns = {"unfused (jnp)": unfused, "infoloss": ours}
    compiled, temps = {}, {}
    for k, f in fns.items():
        compiled[k], temps[k] = _compile(jax.jit(jax.value_and_grad(f, argnums=(0, 1))), hid, w, y)

    def call(cf: Any) -> Callable[[], Any]:
        return lambda: jax.block_until_ready(cf(hid, w, y))

    t = _best(
        {k: call(cf) for k, cf in compiled.items()},
        max(2, repeat // 2),
        lambda: None,
    )
    whole = _linear_header(log, n, hdim, v, f"jit(value_and_grad) on {dev}")
    log(f"  {'contender':<22}{'ms':>9}{'ratio':>8}{'XLA temp MiB':>14}{'/ unfused':>11}")
    ref = next(iter(fns))
    for k in fns:
        frac = "n/a" if temps[k] is None else f"{temps[k] / whole:.3f}"
        log(f"  {k:<22}{t[k] * 1e3:9.1f}{t[k] / t[ref]:8.2f}{_mib(temps[k]):>14}{frac:>11}")
    return {"shape": [n, hdim, v], "time": t, "temp": temps}


def _jax(
    device: str,
    quick: bool,
    repeat: int,
    linear: tuple[tuple[int, int, int], ...],
    log: Callable[[str], None],
) -> dict:

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
    for k, f in fns.items():
        compiled[k], temps[k] = _compile(jax.jit(jax.value_and_grad(f)), x, y)

    def call(cf: Any) -> Callable[[], Any]:
        return lambda: jax.block_until_ready(cf(x, y))

    calls = {k: call(cf) for k, cf in compiled.items()}
    t = _best(calls, repeat, lambda: None)
    ref = next(iter(fns))
    log(f"jit(value_and_grad) sparse CE {n}x{c} float32, smoothing 0.1, device {dev}")
    log(f"  {'contender':<22}{'ms':>9}{'ratio':>8}{'XLA temp MiB':>14}")
    for k in fns:
        log(f"  {k:<22}{t[k] * 1e3:9.1f}{t[k] / t[ref]:8.2f}{_mib(temps[k]):>14}")
    res: dict[str, Any] = {"ce": {"shape": [n, c], "time": t, "temp": temps}}
    res["linear"] = [_jax_linear(dev, shape, repeat, log) for shape in linear]
    return res


def run_framework(
    framework: str,
    device: str | None,
    quick: bool,
    repeat: int | None,
    linear: tuple[tuple[int, int, int], ...] | None = None,
    log: Callable = print,
) -> dict:
    """Run the framework benchmark; the figures as a dict (also printed through ``log``).

    ``linear``: the (N, H, V) shapes of the linear part (default (2048, 512, 32768); with
    ``quick`` (512, 64, 4000)).
    """
    repeat = repeat or (2 if quick else 5)
    shapes = linear or (((512, 64, 4000),) if quick else ((2048, 512, 32768),))
    if framework == "torch":
        return {"torch": _torch(device or "cpu", quick, repeat, shapes, log)}
    return {"jax": _jax(device or "cpu", quick, repeat, shapes, log)}
