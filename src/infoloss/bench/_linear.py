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

if variant in ("fused", "unfused"):
    import infoloss as il
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
    # warm up (compile) on a small problem
    m = min(v, 64)
    vg_lin(H[:8], W[:m], Y[:8] % m, bias=B[:m]); vg_ce(np.zeros((4, 8), np.float32), np.zeros(4, np.int64))
elif variant == "torch":
    import torch, torch.nn.functional as F
    th, tw, tb, ty = (torch.from_numpy(a) for a in (H, W, B, Y))
    def run():
        hh = th.clone().requires_grad_(); ww = tw.clone().requires_grad_(); bb = tb.clone().requires_grad_()
        loss = F.cross_entropy(F.linear(hh, ww, bb), ty)
        loss.backward()
        return float(loss)
    m = min(v, 64)
    F.cross_entropy(F.linear(th[:8], tw[:m], tb[:m]), ty[:8] % m)
elif variant == "jax":
    import jax, jax.numpy as jnp
    def f(hh, ww, bb, yy):
        logits = hh @ ww.T + bb
        lse = jax.nn.logsumexp(logits, axis=-1)
        return jnp.mean(lse - jnp.take_along_axis(logits, yy[:, None], axis=-1)[:, 0])
    g = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))
    jh, jw, jb, jy = (jnp.asarray(a) for a in (H, W, B, Y.astype(np.int32)))
    def run():
        loss, grads = g(jh, jw, jb, jy)
        jax.block_until_ready(grads)
        return float(loss)
    run()  # compile at full size (XLA specialises on shapes)
else:
    raise SystemExit(f"unknown variant {variant}")

times = []
peak_rss = peak_traced = 0
for i in range(repeat):
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
                  "peak_traced_mb": peak_traced / 2**20, "loss": loss}))
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
        "rows": {name: run_variant(name, n, h, v, repeat) for name in variants},
    }


def format_table(result: dict[str, Any]) -> str:
    """The variants' times, peak memory and time ratio to the fused variant."""
    n, h, v = result["n"], result["h"], result["v"]
    lines = [
        f"linear + cross-entropy, forward+backward, float32, N={n} H={h} V={v} "
        f"(logits + gradient = {result['logits_plus_grad_mb']:.0f} MiB)",
        f"{'variant':<10}{'ms':>10}{'peak RSS MiB':>14}{'traced MiB':>12}{'x fused':>9}",
    ]
    fused = result["rows"].get("fused", {})
    for name, r in result["rows"].items():
        if "error" in r:
            lines.append(f"{name:<10} error: {r['error']}")
            continue
        ratio = f"{r['ms'] / fused['ms']:.2f}" if fused.get("ms") else ""
        traced = f"{r['peak_traced_mb']:.0f}" if name in ("fused", "unfused") else "-"
        lines.append(f"{name:<10}{r['ms']:>10.1f}{r['peak_rss_mb']:>14.0f}{traced:>12}{ratio:>9}")
    f, u = result["rows"].get("fused", {}), result["rows"].get("unfused", {})
    if f.get("ms") and u.get("ms"):
        share = result["logits_plus_grad_mb"] / max(f["peak_rss_mb"], 1e-9)
        lines.append(
            f"fused: peak extra RSS {f['peak_rss_mb']:.0f} MiB = 1/{share:.1f} of logits + "
            f"gradient; time {f['ms'] / u['ms']:.2f}x the unfused infoloss path"
        )
    return "\n".join(lines)
