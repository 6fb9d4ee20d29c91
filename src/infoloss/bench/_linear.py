"""The linear part's timing: each variant of :mod:`.linear` in a child process, and its table.

:mod:`._run` uses this module; :mod:`.linear` is the command-line entry point
(``python -m infoloss.bench.linear``) and re-exports :func:`bench`, :func:`format_table` and
:func:`run_variant`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

_CHILD = r"""
import json, sys, time, tracemalloc
import numpy as np
variant, n, h, v, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0

rng = np.random.default_rng(0)
H = rng.standard_normal((n, h), dtype=np.float32)
W = (rng.standard_normal((v, h), dtype=np.float32) / np.sqrt(h)).astype(np.float32)
B = rng.standard_normal(v, dtype=np.float32) * 0.01
Y = rng.integers(0, v, n)

reset = lambda: None  # noqa: E731 - drops what a run left behind, before the next is measured
if variant in ("fused", "unfused"):
    import infoloss as il
    from infoloss._config import always_fast
    vg_lin = il.value_and_grad(il.linear_cross_entropy)
    vg_ce = il.value_and_grad(il.sparse_softmax_cross_entropy)
    def run():
        if variant == "fused":
            loss, (dh, dw, db) = vg_lin(H, W, Y, bias=B)
        else:
            logits = H @ W.T
            logits += B
            loss, g = vg_ce(logits, Y, reduction="mean")
            del logits
            dh, dw, db = g @ W, g.T @ H, g.sum(axis=0)
        return float(loss)
    # warm up (compile) on a small problem, on the kernels whatever its size
    m = min(v, 64)
    with always_fast():
        vg_lin(H[:8], W[:m], Y[:8] % m, bias=B[:m]); vg_ce(np.zeros((4, 8), np.float32), np.zeros(4, np.int64))
elif variant in ("torch", "torch-chunked"):
    import torch, torch.nn.functional as F
    th, tw, tb = (torch.from_numpy(a).clone().requires_grad_() for a in (H, W, B))
    ty = torch.from_numpy(Y)
    opt = torch.nn.LinearCrossEntropyOptions() if variant == "torch-chunked" else None
    def reset():
        th.grad = tw.grad = tb.grad = None
    def run():
        if opt is None:
            loss = F.cross_entropy(F.linear(th, tw, tb), ty)
        else:
            loss = F.linear_cross_entropy(th, tw, ty, linear_bias=tb, options=opt)
        loss.backward()
        return float(loss)
    m = min(v, 64)
    F.cross_entropy(F.linear(th[:8].detach(), tw[:m].detach(), tb[:m].detach()), ty[:8] % m)
    if opt is not None:
        F.linear_cross_entropy(th.detach()[:8], tw.detach()[:m], ty[:8] % m,
                               linear_bias=tb.detach()[:m], options=opt)
elif variant == "jax":  # the unfused computation under jax.jit(jax.value_and_grad)
    import jax, jax.numpy as jnp
    def loss_fn(h, w, b, y):
        logits = h @ w.T + b
        lse = jax.nn.logsumexp(logits, axis=-1)
        return jnp.mean(lse - jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0])
    vg_jax = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1, 2)))
    jh, jw, jb, jy = (jnp.asarray(a) for a in (H, W, B, Y))
    def run():
        loss, grads = vg_jax(jh, jw, jb, jy)
        jax.block_until_ready(grads)
        return float(loss)
    run()  # compile for this shape
else:
    raise SystemExit(f"unknown variant {variant}")

times = []
peak_rss = peak_traced = 0
for i in range(repeat):
    reset()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    rss0 = status("VmRSS:")
    tracemalloc.start()
    t0 = time.perf_counter()
    loss = run()
    times.append(time.perf_counter() - t0)
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_rss = max(peak_rss, status("VmHWM:") - rss0)
    peak_traced = max(peak_traced, traced)
print(json.dumps({"variant": variant, "ms": 1e3 * min(times), "peak_rss_mb": peak_rss / 2**20,
                  "peak_traced_mb": peak_traced / 2**20, "loss": loss,
                  "ms_all": [1e3 * t for t in times]}))
"""


def run_variant(variant: str, n: int, h: int, v: int, repeat: int) -> dict[str, Any]:
    """Time one variant in a child process; its figures, or ``{"variant", "error"}``."""
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, variant, str(n), str(h), str(v), str(repeat)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        check=False,
    )
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        return {"variant": variant, "error": last[0]}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def bench(n: int, h: int, v: int, repeat: int, variants: tuple[str, ...]) -> dict[str, Any]:
    """Run the given variants at (n, h, v) float32, one child process each."""
    return {
        "n": n,
        "h": h,
        "v": v,
        "repeat": repeat,
        "logits_plus_grad_mb": 2 * n * v * 4 / 2**20,  # logits + their gradient, float32
        # d_hidden, d_weight and d_bias, which every variant returns (float32)
        "returned_grads_mb": (n * h + v * h + v) * 4 / 2**20,
        "rows": {name: run_variant(name, n, h, v, repeat) for name in variants},
    }


#: The fused path's working memory (peak RSS above the process before the call, less the returned
#: gradients) as a share of the unfused logits + gradient: at most this much (issue 17).
MEMORY_BOUND = 1 / 8


def extra_mb(result: dict[str, Any], row: dict[str, Any]) -> float:
    """A row's working memory: its peak RSS above the process before the call, less the
    gradients every variant returns (d_hidden, d_weight, d_bias)."""
    return float(max(0.0, row["peak_rss_mb"] - result["returned_grads_mb"]))


def format_table(result: dict[str, Any]) -> str:
    """The variants' times, peak memory and time ratio to the fused variant."""
    n, h, v = result["n"], result["h"], result["v"]
    lg = result["logits_plus_grad_mb"]
    lines = [
        f"linear + cross-entropy, forward+backward, float32, N={n} H={h} V={v} "
        f"(logits + gradient = {lg:.0f} MiB; returned gradients "
        f"{result['returned_grads_mb']:.0f} MiB)",
        f"{'variant':<14}{'ms':>10}{'peak RSS MiB':>14}{'extra MiB':>11}"
        f"{'/ (logits+grad)':>17}{'traced MiB':>12}{'x fused':>9}",
    ]
    fused = result["rows"].get("fused", {})
    for name, r in result["rows"].items():
        if "error" in r:
            lines.append(f"{name:<14} error: {r['error']}")
            continue
        ratio = f"{r['ms'] / fused['ms']:.2f}" if fused.get("ms") else ""
        traced = f"{r['peak_traced_mb']:.0f}" if name in ("fused", "unfused") else "-"
        extra = extra_mb(result, r)
        lines.append(
            f"{name:<14}{r['ms']:>10.1f}{r['peak_rss_mb']:>14.0f}{extra:>11.0f}"
            f"{extra / lg:>17.3f}{traced:>12}{ratio:>9}"
        )
    lines.append("extra = peak RSS above the process before the call, less the returned gradients")
    f, u = result["rows"].get("fused", {}), result["rows"].get("unfused", {})
    if f.get("ms") and u.get("ms"):
        share = extra_mb(result, f) / lg
        lines.append(
            f"fused: extra {extra_mb(result, f):.0f} MiB = {share:.3f} of logits + gradient "
            f"(bound {MEMORY_BOUND:.3f}); time {f['ms'] / u['ms']:.2f}x the unfused infoloss path "
            "(bound 1.00)"
        )
    t = result["rows"].get("torch-chunked", {})
    if f.get("ms") and t.get("ms"):
        lines.append(
            f"fused: time {f['ms'] / t['ms']:.2f}x torch's F.linear_cross_entropy, chunked "
            f"(bound 1.00); its extra {extra_mb(result, t):.0f} MiB = "
            f"{extra_mb(result, t) / lg:.3f} of logits + gradient"
        )
    return "\n".join(lines)
