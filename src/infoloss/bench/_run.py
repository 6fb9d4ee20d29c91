"""Running a checked :class:`~._options.Options`: timing, the tables, the JSON file."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ._common import FAST, FAST_OUT, GENERIC, Fn
from ._options import Options
from ._peers import fast_path, fast_path_available, rows_of

Log = Callable[[str], None]

CASES = {"sparse": "sparse_softmax_ce", "sigmoid": "sigmoid_ce"}


# --------------------------------------------------------------------------- timing


def time_call(fn: Fn, repeat: int, budget_s: float) -> tuple[float, int]:
    """Minimum wall time in seconds over up to ``repeat`` calls after one warm-up call, and the
    number of timed calls: slow peers get fewer (at least 2, or ``repeat`` if smaller) so that
    one measurement takes about ``budget_s``."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    n = repeat
    if first * repeat > budget_s:
        n = min(repeat, max(2, int(budget_s / max(first, 1e-9))))
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best, n


def _inputs(kind: str, n: int, c: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((n, c), dtype=np.float32)
    if kind == "sparse":
        return x, rng.integers(0, c, n).astype(np.int64)
    return x, (rng.random((n, c)) < 0.1).astype(np.float32)


def time_losses(opts: Options, log: Log) -> list[dict[str, Any]]:
    """Time every contender on every shape: one record per (case, shape, row, op)."""
    rng = np.random.default_rng(0)
    records: list[dict[str, Any]] = []
    cases = [("sparse", s) for s in opts.shapes] + [("sigmoid", s) for s in opts.sigmoid_shapes]
    for kind, (n, c) in cases:
        x, y = _inputs(kind, n, c, rng)
        log(f"# {CASES[kind]} {n}x{c} float32 ({x.nbytes / 1e6:.0f} MB of logits)")
        # Each contender is set up right before it is timed, and dropped after, so that no
        # contender's setup (JAX's asynchronous device_put, say) overlaps another's timing.
        for peer in opts.peers:
            for row, ops in rows_of(peer)(kind, x, y).items():
                for op, fn in ops.items():
                    best, reps = time_call(fn, opts.repeat, opts.budget_s)
                    records.append(
                        {
                            "case": CASES[kind],
                            "shape": [n, c],
                            "op": op,
                            "peer": row,
                            "ms": best * 1e3,
                            "gb_per_s": x.nbytes / best / 1e9,
                            "repeats": reps,
                        }
                    )
                    log(f"  {row:24s} {op:8s} {best * 1e3:10.3f} ms")
        del x, y
    return records


# --------------------------------------------------------------------------- tables


def _groups(records: list[dict[str, Any]]) -> list[tuple[str, tuple[int, int]]]:
    seen: dict[tuple[str, tuple[int, int]], None] = {}
    for r in records:
        seen[(r["case"], (r["shape"][0], r["shape"][1]))] = None
    return list(seen)


def _ms(rs: list[dict[str, Any]], peer: str, op: str) -> float | None:
    return next((r["ms"] for r in rs if r["peer"] == peer and r["op"] == op), None)


def _ours(rs: list[dict[str, Any]]) -> str:
    """The infoloss row the ratios refer to: the fused path, or the generic one without it."""
    return FAST if any(r["peer"] == FAST for r in rs) else GENERIC


def format_table(records: list[dict[str, Any]]) -> str:
    """Per case and operation: ms, GB/s of logits, and the two ratio columns."""
    ours = _ours(records)
    hdr = (
        f"{'case':18s} {'shape':>12s} {'op':8s} {'peer':24s} {'ms':>10s} {'GB/s':>7s} "
        f"{'peer / infoloss':>15s} {'/ copy':>7s}"
    )
    lines = [hdr, "-" * len(hdr)]
    for case, shape in _groups(records):
        rs = [r for r in records if r["case"] == case and tuple(r["shape"]) == shape]
        copy = _ms(rs, "copy", "copy")
        for op in ("copy", "fwd", "fwd+bwd"):
            base = _ms(rs, ours, op)
            for r in (r for r in rs if r["op"] == op):
                vs = f"{r['ms'] / base:.2f}" if base and r["peer"] not in (ours, "copy") else ""
                xcopy = f"{r['ms'] / copy:.2f}" if copy and r["peer"] != "copy" else ""
                lines.append(
                    f"{case:18s} {f'{shape[0]}x{shape[1]}':>12s} {op:8s} {r['peer']:24s} "
                    f"{r['ms']:10.3f} {r['gb_per_s']:7.2f} {vs:>15s} {xcopy:>7s}"
                )
        lines.append("")
    lines.append(
        f"peer / infoloss = the row's ms / '{ours}' ms (above 1: infoloss is faster); "
        "/ copy = the row's ms / np.copyto ms of the same logits (the memory-speed bound)."
    )
    return "\n".join(lines)


def format_ratios(records: list[dict[str, Any]]) -> str:
    """Per case and operation: infoloss's time over the copy's, and each peer's over infoloss's."""
    ours = _ours(records)
    lines = []
    for case, shape in _groups(records):
        rs = [r for r in records if r["case"] == case and tuple(r["shape"]) == shape]
        copy = _ms(rs, "copy", "copy")
        for op in ("fwd", "fwd+bwd"):
            base = _ms(rs, ours, op)
            if base is None:
                continue
            parts = []
            if copy:
                parts.append(f"/ copy {base / copy:.2f}")
                out_ms = _ms(rs, FAST_OUT, op) if ours == FAST else None
                if out_ms:
                    parts.append(f"(out=: {out_ms / copy:.2f})")
            for r in rs:
                if r["op"] == op and r["peer"] not in (ours, FAST_OUT, "copy"):
                    parts.append(f"{r['peer']} {r['ms'] / base:.2f}")
            if parts:
                lines.append(f"  {case} {shape[0]}x{shape[1]} {op}: " + ", ".join(parts))
    if not lines:
        return ""
    head = (
        f"ratios (this run): '{ours}' ms / copy ms, then each peer's ms / '{ours}' ms "
        "(above 1: infoloss is faster)"
    )
    return "\n".join([head, *lines])


# --------------------------------------------------------------------------- first calls

_FIRST_CALL = """
import sys, time, numpy as np
t0 = time.perf_counter()
import infoloss as il
t1 = time.perf_counter()
vg = il.value_and_grad
rng = np.random.default_rng(0)
x = rng.standard_normal((64, 100)).astype(np.float32)  # above the router's size threshold
y = np.zeros(64, np.int64)
p = np.exp(x[::-1]) / np.exp(x[::-1]).sum(axis=1, keepdims=True)
yb = (x > 0).astype(np.float32)
families = {
    "sparse_ce": lambda: (vg(il.sparse_softmax_cross_entropy)(x, y, reduction="mean"),
                          il.sparse_softmax_cross_entropy(x, y, reduction="mean")),
    "dense_ce": lambda: (vg(il.softmax_cross_entropy)(x, p, reduction="mean"),
                         il.softmax_cross_entropy(x, p, reduction="mean")),
    "sigmoid_ce": lambda: (vg(il.sigmoid_cross_entropy)(x, yb, reduction="mean"),
                           il.sigmoid_cross_entropy(x, yb, reduction="mean")),
    "softmax": lambda: (il.softmax(x), il.log_softmax(x), il.logsumexp(x, axis=-1)),
    "entropy_kl": lambda: (vg(il.softmax_entropy)(x), il.softmax_entropy(x),
                           vg(il.softmax_kl_divergence)(x, x[::-1]),
                           il.softmax_kl_divergence(x, x[::-1])),
}
res = {"import_s": t1 - t0}
for name, f in families.items():
    t = time.perf_counter()
    f()
    res[name + "_s"] = time.perf_counter() - t
from infoloss.cli import _demo
t = time.perf_counter()
_demo.render(_demo.compute())
res["demo_s"] = time.perf_counter() - t
print(repr(res))
"""

FAMILIES = ("sparse_ce", "dense_ce", "sigmoid_ce", "softmax", "entropy_kl")
"""The kernel families whose first calls :func:`first_call_times` times (``_fast/kernels/``)."""


def first_call_times() -> dict[str, Any]:
    """First-call times in fresh processes: with an empty numba cache (compilation), then with
    the cache that run filled (what every later process pays). Per kernel family: the first
    value and value-and-gradient calls at 64 × 100 float32 (serial kernels; the parallel ones
    of large problems compile on their own first call); ``demo_s``: ``infoloss demo``'s
    computation after them, ``demo_fresh_s``: the whole ``infoloss demo`` command in a fresh
    process with an empty cache."""
    import ast

    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=d)
        env.pop("INFOLOSS_FAST_MIN_ELEMENTS", None)
        for label in ("cold", "cached"):
            try:
                out = subprocess.run(
                    [sys.executable, "-c", _FIRST_CALL],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=900,
                    check=True,
                ).stdout
                res[label] = ast.literal_eval(out.strip().splitlines()[-1])
            except subprocess.CalledProcessError as e:
                res[label] = {"error": (e.stderr or "").strip().splitlines()[-1:] or [repr(e)]}
                res[label]["error"] = res[label]["error"][0]
            except (subprocess.SubprocessError, OSError, ValueError, IndexError, SyntaxError) as e:
                res[label] = {"error": str(e).strip().splitlines()[0] if str(e) else repr(e)}
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=d)
        env.pop("INFOLOSS_FAST_MIN_ELEMENTS", None)
        t0 = time.perf_counter()
        try:
            subprocess.run(
                [sys.executable, "-m", "infoloss.cli", "demo"],
                env=env,
                capture_output=True,
                timeout=900,
                check=True,
            )
            res["demo_fresh_s"] = time.perf_counter() - t0
        except (subprocess.SubprocessError, OSError) as e:
            res["demo_fresh_s"] = {"error": str(e).strip().splitlines()[0] if str(e) else repr(e)}
    return res


def format_first_calls(first: dict[str, Any]) -> list[str]:
    """The lines of :func:`first_call_times`'s figures."""
    lines = []
    for label in ("cold", "cached"):
        ci = first.get(label, {})
        cache = "empty numba cache" if label == "cold" else "numba cache filled"
        if "error" in ci:
            lines.append(f"first call, {cache}: failed ({ci['error']})")
            continue
        fams = ", ".join(f"{f} {ci[f + '_s']:.2f} s" for f in FAMILIES if f + "_s" in ci)
        lines.append(
            f"first call, {cache}: import {ci.get('import_s', 0.0):.2f} s; per kernel "
            f"family {fams}; then the demo's computation {ci.get('demo_s', 0.0):.2f} s"
        )
    demo = first.get("demo_fresh_s")
    if isinstance(demo, float):
        lines.append(
            f"'infoloss demo' in a fresh process, empty numba cache: {demo:.2f} s (bound 3 s)"
        )
    elif isinstance(demo, dict):
        lines.append(f"'infoloss demo' in a fresh process: failed ({demo['error']})")
    return lines


def first_call_here() -> float:
    """Seconds for the first fused calls in this process (compilation or loading the cache)."""
    import infoloss

    x = np.zeros((8, 16), np.float32)
    t0 = time.perf_counter()
    with fast_path():
        infoloss.value_and_grad(infoloss.sparse_softmax_cross_entropy)(x, np.zeros(8, np.int64))
        infoloss.sparse_softmax_cross_entropy(x, np.zeros(8, np.int64), reduction="mean")
        infoloss.value_and_grad(infoloss.sigmoid_cross_entropy)(x, x)
        infoloss.sigmoid_cross_entropy(x, x, reduction="mean")
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- environment, JSON


def environment(with_torch: bool) -> dict[str, Any]:
    """Versions, machine and thread counts (PyTorch's too if ``with_torch``), for the JSON file."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "fast_path": fast_path_available(),
    }
    threads: dict[str, Any] = {"cpu_count": os.cpu_count()}
    try:
        import numba

        threads["numba_threads"] = numba.get_num_threads()
        threads["NUMBA_NUM_THREADS"] = os.environ.get("NUMBA_NUM_THREADS")
    except ImportError:  # pragma: no cover
        pass
    if with_torch:
        import torch

        threads["torch_threads"] = torch.get_num_threads()
    info["threads"] = threads
    return info


def write_json(path: str, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same directory, then
    ``os.replace`` (readers see the old file or the whole new one, never a partial one)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".infoloss-bench-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a normal file is wanted
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# --------------------------------------------------------------------------- the run


def run(opts: Options, log: Log = print) -> dict[str, Any]:
    """Run every selected part, printing as it goes; returns everything measured."""
    env = environment("torch" in opts.peers or "torch-autograd" in opts.parts)
    log(
        f"infoloss bench: Python {env['python']}, NumPy {env['numpy']}, {env['machine']}, "
        f"fast path {'on' if env['fast_path'] else 'off'}, threads {env['threads']}"
    )
    for peer in opts.skipped_peers:
        log(f"({peer} is not installed: not timed)")
    result: dict[str, Any] = {**env, "repeat": opts.repeat, "parts": sorted(opts.parts)}
    if "losses" in opts.parts:
        first: dict[str, Any] = {}
        if opts.compile_time:
            log("first-call times in fresh processes (empty numba cache, then warm cache)...")
            first = first_call_times()
            for line in format_first_calls(first):
                log(line)
        if "infoloss" in opts.peers and env["fast_path"]:
            first["this_process_first_call_s"] = first_call_here()
            log(f"first fused calls in this process: {first['this_process_first_call_s']:.2f} s")
        result["compile"] = first
        records = time_losses(opts, log)
        result["results"] = records
        log("")
        log(format_table(records))
        ratios = format_ratios(records)
        if ratios:
            log(ratios)
    if "bounds" in opts.parts:
        from ._bounds import format_bounds, time_bounds

        n, c = opts.bounds_shape
        sig = (4096, 1000) if (n, c) == (4096, 32000) else (n, max(1, c // 20))
        b = time_bounds(n, c, sig, max(opts.repeat, 5), "torch" in opts.peers)
        result["bounds"] = b
        log("")
        log(format_bounds(b))
    if "torch-autograd" in opts.parts:
        from ._torch import format_torch_autograd, time_torch_autograd

        r = time_torch_autograd(*opts.torch_autograd, opts.repeat)
        result["torch_autograd"] = r
        log("")
        log(format_torch_autograd(r))
    if "linear" in opts.parts:
        from . import _linear as linear

        result["linear"] = []
        for n, h, v in opts.linear:
            res = linear.bench(n, h, v, max(1, min(opts.repeat, 2)), opts.linear_variants)
            result["linear"].append(res)
            log("")
            log(linear.format_table(res))
    return result
