"""Benchmark of :func:`infoloss.linear_cross_entropy` against unfused computations.

Each variant runs in its own child process so that its peak resident memory can be measured
(``VmHWM`` after resetting it with ``/proc/self/clear_refs``); NumPy variants also report the
peak of ``tracemalloc``. Extra memory is counted above what the process held just before the
call (inputs and compiled kernels included there). Run ``python -m infoloss._bench_linear``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

VARIANTS = ("fused", "unfused", "torch", "jax")

_CHILD = r"""
import json, os, sys, time, tracemalloc
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
    vg_lin(H[:8], W[:64], Y[:8] % 64, bias=B[:64]); vg_ce(np.zeros((4, 8), np.float32), np.zeros(4, np.int64))
elif variant == "torch":
    import torch, torch.nn.functional as F
    th, tw, tb, ty = (torch.from_numpy(a) for a in (H, W, B, Y))
    def run():
        hh = th.clone().requires_grad_(); ww = tw.clone().requires_grad_(); bb = tb.clone().requires_grad_()
        loss = F.cross_entropy(F.linear(hh, ww, bb), ty)
        loss.backward()
        return float(loss)
    F.cross_entropy(F.linear(th[:8], tw[:64], tb[:64]), ty[:8] % 64)
elif variant == "jax":
    import jax, jax.numpy as jnp
    def f(hh, ww, bb, yy):
        logits = hh @ ww.T + bb
        lse = jax.nn.logsumexp(logits, axis=-1)
        return jnp.mean(lse - jnp.take_along_axis(logits, yy[:, None], axis=-1)[:, 0])
    g = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))
    jh, jw, jb, jy = (jnp.asarray(a) for a in (H, W, B, Y))
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


def available(variant: str) -> bool:
    import importlib.util

    mod = {"torch": "torch", "jax": "jax"}.get(variant, "numpy")
    return importlib.util.find_spec(mod) is not None


def run_variant(variant: str, n: int, h: int, v: int, repeat: int) -> dict[str, Any]:
    """Time one variant in a child process; returns its figures (or an ``error`` entry)."""
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, variant, str(n), str(h), str(v), str(repeat)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        return {"variant": variant, "error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(
    n: int, h: int, v: int, repeat: int, variants: tuple[str, ...] = VARIANTS
) -> dict[str, Any]:
    """Run every available variant at (n, h, v) float32 and compute the ratios to the fused one."""
    rows = {}
    for name in variants:
        if available(name):
            rows[name] = run_variant(name, n, h, v, repeat)
    logits_mb = 2 * n * v * 4 / 2**20  # logits + their gradient, float32
    return {
        "n": n,
        "h": h,
        "v": v,
        "repeat": repeat,
        "logits_plus_grad_mb": logits_mb,
        "rows": rows,
    }


def format_table(result: dict[str, Any]) -> str:
    n, h, v = result["n"], result["h"], result["v"]
    lines = [
        f"linear + cross-entropy, forward+backward, float32, N={n} H={h} V={v} "
        f"(logits + gradient = {result['logits_plus_grad_mb']:.0f} MiB)",
        f"{'variant':<10}{'ms':>10}{'peak RSS MiB':>14}{'traced MiB':>12}{'fused is':>12}",
    ]
    fused = result["rows"].get("fused", {})
    for name, r in result["rows"].items():
        if "error" in r:
            lines.append(f"{name:<10} error: {r['error']}")
            continue
        ratio = r["ms"] / fused["ms"] if fused.get("ms") else float("nan")
        traced = f"{r['peak_traced_mb']:.0f}" if name in ("fused", "unfused") else "-"
        lines.append(
            f"{name:<10}{r['ms']:>10.0f}{r['peak_rss_mb']:>14.0f}{traced:>12}{ratio:>11.2f}x"
        )
    if "fused" in result["rows"] and "unfused" in result["rows"]:
        f, u = result["rows"]["fused"], result["rows"]["unfused"]
        if "error" not in f and "error" not in u:
            lines.append(
                f"fused peak extra (RSS) = {f['peak_rss_mb']:.0f} MiB = 1/{result['logits_plus_grad_mb'] / max(f['peak_rss_mb'], 1e-9):.1f}"
                f" of logits+gradient; time = {f['ms'] / u['ms']:.2f}x the unfused infoloss path"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infoloss._bench_linear", description=__doc__)
    parser.add_argument("--shape", default="8192,1024,32768", help="N,H,V (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args(argv)
    n, h, v = (int(s) for s in args.shape.split(","))
    t0 = time.perf_counter()
    result = bench(n, h, v, args.repeat, tuple(args.variants.split(",")))
    print(format_table(result))
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
