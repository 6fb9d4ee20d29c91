"""Benchmark of the fused CPU kernels against the peers (issue 3).

Run ``python -m infoloss.bench`` (or ``infoloss bench``). In one run it times, on float32 logits,
sparse softmax cross-entropy at (4096, 32000), (1024, 131072) and (65536, 10) and sigmoid
cross-entropy at (4096, 1000), forward ("fwd": the mean loss) and forward + backward ("fwd+bwd":
the mean loss and its gradient with respect to the logits), for

- ``infoloss fast``: the public API on NumPy inputs (the numba fast path),
- ``infoloss generic``: the same calls forced onto the generic array-API path,
- ``numpy``: plain NumPy textbook code,
- ``torch``: PyTorch CPU ``F.cross_entropy`` / ``F.binary_cross_entropy_with_logits``, backward by
  autograd (when installed),
- ``jax``: ``jax.jit`` of optax's losses, or of a hand-written log-softmax loss when optax is not
  installed, gradient by ``jax.value_and_grad`` (when installed),
- ``copy``: ``np.copyto`` of the logits into a preallocated array, the memory-speed bound.

``infoloss fast, out=`` is fwd+bwd with the gradient written into one preallocated buffer
(``value_and_grad(f)(x, y, out=buf)``), as a training loop that reuses its buffer would; the
plain ``infoloss fast`` row returns a new gradient array each call, like the peers.

Each time is the minimum over ``--repeat`` runs after one warm-up call. The table shows
milliseconds, GB/s of logits processed, and how many times faster infoloss is than each peer and
how far it is from the copy bound. ``--json PATH`` writes the raw figures. The first-call time of
the fast path (numba compilation, or loading the on-disk cache) is measured in fresh
subprocesses, with an empty cache directory and then with that warm cache.
"""

from __future__ import annotations

import argparse
import functools
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

DEFAULT_SHAPES = [(4096, 32000), (1024, 131072), (65536, 10)]
DEFAULT_SIGMOID_SHAPES = [(4096, 1000)]
QUICK_SHAPES = [(256, 2000), (64, 8192), (4096, 10)]
QUICK_SIGMOID_SHAPES = [(256, 100)]

Fn = Callable[[], Any]


# --------------------------------------------------------------------------- timing


def _time(fn: Fn, repeat: int, budget_s: float) -> tuple[float, int]:
    """Minimum wall time in seconds over up to ``repeat`` calls after one warm-up call; slow
    peers get fewer repeats (at least 2) so the whole run stays within about ``budget_s``."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    n = repeat if first * repeat <= budget_s else max(2, int(budget_s / max(first, 1e-9)))
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best, n


# --------------------------------------------------------------------------- peers


def _infoloss_fns(kind: str, x: np.ndarray, y: np.ndarray) -> dict[str, tuple[Fn | None, Fn]]:
    """``{"infoloss fast": (fwd, fwdbwd), "infoloss fast, out=": (None, fwdbwd), ...}``."""
    out: dict[str, tuple[Fn | None, Fn]] = {}
    try:
        import infoloss
        from infoloss import _dispatch
    except ImportError:  # pragma: no cover
        return out
    f: Callable[..., Any] = (
        infoloss.sparse_softmax_cross_entropy
        if kind == "sparse"
        else infoloss.sigmoid_cross_entropy
    )
    vg = infoloss.value_and_grad(f)

    def fwd() -> Any:
        return f(x, y, reduction="mean")

    def fwdbwd() -> Any:
        return vg(x, y, reduction="mean")

    if _dispatch.enabled(x):
        out["infoloss fast"] = (fwd, fwdbwd)
        buf = np.empty_like(x)

        def fwdbwd_out() -> Any:
            return vg(x, y, reduction="mean", out=buf)

        out["infoloss fast, out="] = (None, fwdbwd_out)
    else:  # numba missing or disabled: time the kernels directly if possible
        k = _dispatch.kernels() if not _dispatch._env_disabled() else None
        if k is not None:
            out["infoloss fast"] = _kernel_fns(k, kind, x, y)

    def gfwd() -> Any:
        with _dispatch.disabled():
            return fwd()

    def gfwdbwd() -> Any:
        with _dispatch.disabled():
            return fwdbwd()

    out["infoloss generic"] = (gfwd, gfwdbwd)
    return out


def _kernel_fns(k: Any, kind: str, x: np.ndarray, y: np.ndarray) -> tuple[Fn, Fn]:
    n = x.shape[0]
    if kind == "sparse":
        return (
            lambda: k.sparse_softmax_ce(x, y, None, None, None, 0.0, 0.0, None)[0].sum() / n,
            lambda: k.sparse_softmax_ce(x, y, None, None, None, 0.0, 0.0, 1.0 / n),
        )
    return (
        lambda: k.sigmoid_ce(x, y, None, None, 0.0, None, False)[0].sum() / x.size,
        lambda: k.sigmoid_ce(x, y, None, None, 0.0, 1.0 / x.size, False),
    )


def _numpy_fns(kind: str, x: np.ndarray, y: np.ndarray) -> tuple[Fn, Fn]:
    n = x.shape[0]
    rows = np.arange(n)
    if kind == "sparse":

        def fwd() -> Any:
            m = x.max(axis=1, keepdims=True)
            lse = np.log(np.exp(x - m).sum(axis=1)) + m[:, 0]
            return np.mean(lse - x[rows, y])

        def fwdbwd() -> Any:
            m = x.max(axis=1, keepdims=True)
            e = np.exp(x - m)
            s = e.sum(axis=1, keepdims=True)
            loss = np.mean(np.log(s[:, 0]) + m[:, 0] - x[rows, y])
            g = e / s
            g[rows, y] -= 1.0
            g /= n
            return loss, g

        return fwd, fwdbwd

    def sfwd() -> Any:
        return np.mean(np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x))))

    def sfwdbwd() -> Any:
        e = np.exp(-np.abs(x))
        loss = np.mean(np.maximum(x, 0) - x * y + np.log1p(e))
        sig = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        return loss, (sig - y) / x.size

    return sfwd, sfwdbwd


def _torch_fns(kind: str, x: np.ndarray, y: np.ndarray) -> tuple[Fn, Fn] | None:
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
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

    return fwd, fwdbwd


def _jax_fns(kind: str, x: np.ndarray, y: np.ndarray) -> tuple[tuple[Fn, Fn], str] | None:
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    try:
        import optax

        sparse_ce = optax.softmax_cross_entropy_with_integer_labels
        sig_ce = optax.sigmoid_binary_cross_entropy
        label = "jax (jit, optax)"
    except ImportError:

        def sparse_ce(logits: Any, labels: Any) -> Any:
            logp = jax.nn.log_softmax(logits, axis=-1)
            return -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]

        def sig_ce(logits: Any, labels: Any) -> Any:
            return jax.nn.softplus(logits) - logits * labels

        label = "jax (jit, hand-written)"
    ce = sparse_ce if kind == "sparse" else sig_ce

    def loss(logits: Any, labels: Any) -> Any:
        return jnp.mean(ce(logits, labels))

    f = jax.jit(loss)
    vg = jax.jit(jax.value_and_grad(loss))
    xj = jax.device_put(x)
    yj = jax.device_put(y.astype(np.int32) if kind == "sparse" else y)
    return (
        (lambda: f(xj, yj).block_until_ready(), lambda: jax.block_until_ready(vg(xj, yj))),
        label,
    )


# --------------------------------------------------------------------------- compile time

_COMPILE_SNIPPET = """
import time, numpy as np
t0 = time.perf_counter()
import infoloss
from infoloss import _dispatch
x = np.random.default_rng(0).standard_normal((64, 100)).astype(np.float32)
y = np.zeros(64, np.int64)
t1 = time.perf_counter()
infoloss.value_and_grad(infoloss.sparse_softmax_cross_entropy)(x, y, reduction="mean")
infoloss.sparse_softmax_cross_entropy(x, y, reduction="mean")
t2 = time.perf_counter()
yb = (x > 0).astype(np.float32)
infoloss.value_and_grad(infoloss.sigmoid_cross_entropy)(x, yb, reduction="mean")
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, _dispatch.enabled(x))
"""


def _compile_times() -> dict[str, Any]:
    """First-call times in fresh processes: with an empty numba cache (compilation) and with
    the cache that run filled (what every later process pays)."""
    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=d)
        for label in ("cold", "cached"):
            try:
                out = subprocess.run(
                    [sys.executable, "-c", _COMPILE_SNIPPET],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=900,
                    check=True,
                ).stdout.split()
            except (subprocess.SubprocessError, OSError) as e:  # pragma: no cover
                res[label] = {"error": str(e)}
                continue
            res[label] = {
                "import_s": float(out[0]),
                "sparse_ce_first_call_s": float(out[1]),
                "sigmoid_ce_first_call_s": float(out[2]),
                "fast_path": out[3] == "True",
            }
    return res


# --------------------------------------------------------------------------- main


def _parse_shapes(s: str) -> list[tuple[int, int]]:
    out = []
    for part in s.split(","):
        a, b = part.lower().strip().split("x")
        out.append((int(a), int(b)))
    return out


def _threads() -> dict[str, Any]:
    info: dict[str, Any] = {"cpu_count": os.cpu_count()}
    try:
        import numba

        info["numba_threads"] = numba.get_num_threads()
        info["NUMBA_NUM_THREADS"] = os.environ.get("NUMBA_NUM_THREADS")
    except ImportError:  # pragma: no cover
        pass
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def run(
    shapes: list[tuple[int, int]],
    sigmoid_shapes: list[tuple[int, int]],
    repeat: int,
    budget_s: float,
    peers: set[str] | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Time every peer on every shape; returns one record per (case, op, peer)."""
    rng = np.random.default_rng(0)
    records: list[dict[str, Any]] = []
    cases = [("sparse_softmax_ce", "sparse", s) for s in shapes]
    cases += [("sigmoid_ce", "sigmoid", s) for s in sigmoid_shapes]
    for case, kind, (n, c) in cases:
        x = rng.standard_normal((n, c), dtype=np.float32)
        if kind == "sparse":
            y = rng.integers(0, c, n).astype(np.int64)
        else:
            y = (rng.random((n, c)) < 0.1).astype(np.float32)
        nbytes = x.nbytes
        # Peers are set up right before they are timed (and torch/JAX only then), so that no
        # peer's setup (e.g. JAX's asynchronous device_put) overlaps another peer's timing.
        dst = np.empty_like(x)

        def want(name: str) -> bool:
            return peers is None or name in peers

        def copy_fns(d: np.ndarray = dst, s: np.ndarray = x) -> dict[str, tuple[Fn | None, Fn]]:
            def f() -> None:
                np.copyto(d, s)

            return {"copy": (f, f)}

        def single(
            name: str, make: Callable[[], Any]
        ) -> Callable[[], dict[str, tuple[Fn | None, Fn]]]:
            def build() -> dict[str, tuple[Fn | None, Fn]]:
                r = make()
                if r is None:
                    return {}
                if isinstance(r[1], str):  # (fns, label)
                    return {r[1]: r[0]}
                return {name: r}

            return build

        factories: list[Callable[[], dict[str, tuple[Fn | None, Fn]]]] = []
        if want("infoloss"):
            factories.append(functools.partial(_infoloss_fns, kind, x, y))
        if want("copy"):
            factories.append(copy_fns)
        if want("numpy"):
            factories.append(single("numpy", functools.partial(_numpy_fns, kind, x, y)))
        if want("torch"):
            factories.append(single("torch", functools.partial(_torch_fns, kind, x, y)))
        if want("jax"):
            factories.append(single("jax", functools.partial(_jax_fns, kind, x, y)))
        log(f"# {case} {n}x{c} float32 ({nbytes / 1e6:.0f} MB of logits)")
        for factory in factories:
            for peer, fns in factory().items():
                for op, fn in zip(("fwd", "fwd+bwd"), fns, strict=False):
                    if fn is None or (peer == "copy" and op == "fwd+bwd"):
                        continue
                    best, reps = _time(fn, repeat, budget_s)
                    records.append(
                        {
                            "case": case,
                            "shape": [n, c],
                            "op": op,
                            "peer": peer,
                            "ms": best * 1e3,
                            "gb_per_s": nbytes / best / 1e9,
                            "repeats": reps,
                        }
                    )
                    log(f"  {peer:28s} {op:8s} {best * 1e3:10.2f} ms")
        del x, y, dst, factories
    return records


def _fmt_table(records: list[dict[str, Any]]) -> str:
    lines = []
    hdr = (
        f"{'case':18s} {'shape':>12s} {'op':8s} {'peer':26s} {'ms':>10s} {'GB/s':>7s} "
        f"{'infoloss x faster':>18s} {'x copy':>7s}"
    )
    lines.append(hdr)
    lines.append("-" * len(hdr))
    keys = sorted(
        {(r["case"], tuple(r["shape"])) for r in records},
        key=lambda k: (k[0] != "sparse_softmax_ce", k),
    )
    for case, shape in keys:
        rs = [r for r in records if r["case"] == case and tuple(r["shape"]) == shape]
        copy = next((r["ms"] for r in rs if r["peer"] == "copy"), None)
        for op in ("fwd", "fwd+bwd"):
            fast = next(
                (r["ms"] for r in rs if r["peer"] == "infoloss fast" and r["op"] == op), None
            )
            for r in rs:
                if r["op"] != op and not (r["peer"] == "copy" and op == "fwd"):
                    continue
                if r["peer"] == "copy" and op != "fwd":
                    continue
                speed = (
                    f"{r['ms'] / fast:.2f}"
                    if fast and r["peer"] not in ("infoloss fast", "copy")
                    else ""
                )
                xcopy = f"{r['ms'] / copy:.2f}" if copy else ""
                sh = f"{shape[0]}x{shape[1]}"
                opname = op if r["peer"] != "copy" else "copy"
                lines.append(
                    f"{case:18s} {sh:>12s} {opname:8s} {r['peer']:26s} "
                    f"{r['ms']:10.2f} {r['gb_per_s']:7.2f} {speed:>18s} {xcopy:>7s}"
                )
        lines.append("")
    return "\n".join(lines)


def _targets(records: list[dict[str, Any]]) -> list[str]:
    """The issue-3 targets, evaluated on this run's figures (when their shapes were run)."""

    def ms(case: str, shape: tuple[int, int], peer_prefix: str, op: str) -> float | None:
        for r in records:
            if (
                r["case"] == case
                and tuple(r["shape"]) == shape
                and r["op"] == op
                and r["peer"].startswith(peer_prefix)
            ):
                return float(r["ms"])
        return None

    out = []
    big = (4096, 32000)
    fb = ms("sparse_softmax_ce", big, "infoloss fast", "fwd+bwd")
    fbo = ms("sparse_softmax_ce", big, "infoloss fast, out=", "fwd+bwd")
    fw = ms("sparse_softmax_ce", big, "infoloss fast", "fwd")
    cp = ms("sparse_softmax_ce", big, "copy", "fwd")
    jfb = ms("sparse_softmax_ce", big, "jax", "fwd+bwd")
    jfw = ms("sparse_softmax_ce", big, "jax", "fwd")
    tfb = ms("sparse_softmax_ce", big, "torch", "fwd+bwd")

    def line(name: str, val: float | None, goal: str, ok: bool | None) -> None:
        if val is None:
            out.append(f"  {name:58s} not measured")
        else:
            out.append(f"  {name:58s} {val:6.2f}  (target {goal})  {'met' if ok else 'MISSED'}")

    # fwd+bwd twice: returning a new gradient array (what the peers do), and writing it into
    # a reused buffer (value_and_grad(...)(..., out=buf)), which saves the first-touch cost of
    # fresh memory (page faults and zeroing by the operating system).
    for tag, v in (("", fb), (", out=", fbo)):
        if v is None:
            continue
        if cp is not None:
            line(
                f"sparse CE fwd+bwd{tag} 4096x32000: time / copy bound",
                v / cp,
                "<= 1.6",
                v / cp <= 1.6,
            )
        if jfb is not None:
            line(
                f"sparse CE fwd+bwd{tag} 4096x32000: x faster than JAX jit",
                jfb / v,
                ">= 4",
                jfb / v >= 4,
            )
        if tfb is not None:
            line(
                f"sparse CE fwd+bwd{tag} 4096x32000: x faster than PyTorch",
                tfb / v,
                ">= 10",
                tfb / v >= 10,
            )
    if fw is not None and jfw is not None:
        line("sparse CE fwd 4096x32000: x faster than JAX jit", jfw / fw, ">= 1.5", jfw / fw >= 1.5)
    sfb = ms("sigmoid_ce", (4096, 1000), "infoloss fast", "fwd+bwd")
    stfb = ms("sigmoid_ce", (4096, 1000), "torch", "fwd+bwd")
    if sfb is not None and stfb is not None:
        line(
            "sigmoid CE fwd+bwd 4096x1000: x faster than PyTorch",
            stfb / sfb,
            ">= 3",
            stfb / sfb >= 3,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="infoloss bench",
        description=(
            "Time infoloss' fused CPU kernels against NumPy, PyTorch, JAX and the copy bound."
        ),
    )
    p.add_argument("--quick", action="store_true", help="small shapes, a few repeats (for tests)")
    p.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="timed runs per measurement (default 7; 2 with --quick)",
    )
    p.add_argument(
        "--shapes",
        type=str,
        default=None,
        help="sparse softmax CE shapes, e.g. 4096x32000,65536x10",
    )
    p.add_argument(
        "--sigmoid-shapes", type=str, default=None, help="sigmoid CE shapes, e.g. 4096x1000"
    )
    p.add_argument(
        "--peers",
        type=str,
        default=None,
        help="comma-separated subset of: infoloss,numpy,torch,jax,copy",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=10.0,
        help="seconds per measurement after which slow peers get fewer repeats",
    )
    p.add_argument(
        "--no-compile-time",
        action="store_true",
        help="skip measuring the first-call (compile) time in subprocesses",
    )
    p.add_argument(
        "--torch-autograd",
        type=str,
        default=None,
        metavar="NxC",
        help="also time infoloss on torch tensors through autograd against F.cross_entropy "
        "(default 4096x32000; 'off' to skip; skipped with --quick)",
    )
    p.add_argument(
        "--linear",
        type=str,
        default=None,
        metavar="N,H,V[;N,H,V]",
        help="also benchmark linear_cross_entropy (time and peak memory, each peer in a child "
        "process), e.g. '8192,1024,32768;2048,1024,131072' (slow: minutes)",
    )
    p.add_argument("--json", type=str, default=None, metavar="PATH", help="write raw figures here")
    args = p.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        p.error("--repeat must be >= 1")
    try:
        shapes = (
            _parse_shapes(args.shapes)
            if args.shapes
            else (QUICK_SHAPES if args.quick else DEFAULT_SHAPES)
        )
        sshapes = (
            _parse_shapes(args.sigmoid_shapes)
            if args.sigmoid_shapes
            else (QUICK_SIGMOID_SHAPES if args.quick else DEFAULT_SIGMOID_SHAPES)
        )
    except ValueError:
        p.error("shapes look like 4096x32000,65536x10")
    repeat = args.repeat if args.repeat is not None else (2 if args.quick else 7)
    peers = None if args.peers is None else {s.strip() for s in args.peers.split(",")}

    threads = _threads()
    print(
        f"infoloss bench: Python {platform.python_version()}, NumPy {np.__version__}, "
        f"{platform.machine()}, threads {threads}"
    )
    compile_info: dict[str, Any] = {}
    if not args.no_compile_time and not args.quick:
        print(
            "measuring first-call time in fresh processes (empty numba cache, then warm cache)..."
        )
        compile_info = _compile_times()
    # first call in this process (compilation or cache load)
    try:
        from infoloss import _dispatch

        k = _dispatch.kernels()
        if k is not None:
            t0 = time.perf_counter()
            xs = np.zeros((8, 16), np.float32)
            k.sparse_softmax_ce(xs, np.zeros(8, np.int64), None, None, None, 0.0, 0.0, 1.0)
            k.sparse_softmax_ce(xs, np.zeros(8, np.int64), None, None, None, 0.0, 0.0, None)
            k.sigmoid_ce(xs, xs, None, None, 0.0, 1.0, False)
            k.sigmoid_ce(xs, xs, None, None, 0.0, None, False)
            compile_info["this_process_first_call_s"] = time.perf_counter() - t0
    except ImportError:  # pragma: no cover
        pass
    for label in ("cold", "cached"):
        if label in compile_info and "sparse_ce_first_call_s" in compile_info[label]:
            ci = compile_info[label]
            print(
                f"first call, {label} cache: import {ci['import_s']:.2f} s, sparse CE "
                f"{ci['sparse_ce_first_call_s']:.2f} s, "
                f"sigmoid CE {ci['sigmoid_ce_first_call_s']:.2f} s"
            )
    if "this_process_first_call_s" in compile_info:
        print(
            f"first kernel call in this process: {compile_info['this_process_first_call_s']:.2f} s"
        )

    records = run(shapes, sshapes, repeat, args.budget, peers)
    print()
    print(_fmt_table(records))
    print(
        "'infoloss x faster' = peer ms / infoloss fast ms; "
        "'x copy' = ms / np.copyto ms (same shape)."
    )
    tg = _targets(records)
    if tg:
        print("targets (issue 3):")
        print("\n".join(tg))
    extra: dict[str, Any] = {}
    torch_shape = args.torch_autograd or ("off" if args.quick else "4096x32000")
    if torch_shape != "off" and (peers is None or "torch" in peers):
        try:
            import torch  # noqa: F401

            from ._bench_torch import time_torch_autograd
        except ImportError:
            pass
        else:
            ((tn, tc),) = _parse_shapes(torch_shape)
            r = time_torch_autograd(tn, tc, repeat)
            extra["torch_autograd"] = r
            print(
                f"\ninfoloss on torch tensors, forward+backward through autograd, {tn}x{tc} "
                f"float32: {r['infoloss_torch_ms']:.1f} ms vs F.cross_entropy "
                f"{r['torch_cross_entropy_ms']:.1f} ms = {r['speedup']:.1f}x faster "
                f"(target >= 8x, issue 6; fused kernels: {r['fast_path']})"
            )
    if args.linear:
        from . import _bench_linear

        extra["linear"] = []
        for spec in args.linear.split(";"):
            n_, h_, v_ = (int(t) for t in spec.split(","))
            res = _bench_linear.bench(n_, h_, v_, max(1, min(repeat, 2)))
            extra["linear"].append(res)
            print()
            print(_bench_linear.format_table(res))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    **extra,
                    "python": platform.python_version(),
                    "numpy": np.__version__,
                    "machine": platform.machine(),
                    "processor": platform.processor(),
                    "threads": threads,
                    "compile": compile_info,
                    "repeat": repeat,
                    "results": records,
                    "targets": tg,
                },
                fh,
                indent=2,
            )
        print(f"raw figures written to {args.json}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
