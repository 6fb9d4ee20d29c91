"""The vocabulary-parallel loss on a gloo group against the single-process loss.

``python -m infoloss.bench.distributed [--nproc 2] [--n 2048] [--v 32768] [--repeat 5]`` times,
forward + backward of the mean sparse cross-entropy on float32 logits ``(N, V)``:

- ``single fused``: :func:`infoloss.sparse_softmax_cross_entropy` of the full logits in one
  process (CPU torch tensor: the numba kernels under autograd);
- ``single torch``: ``F.cross_entropy`` of the full logits;
- ``world of 1``: :func:`infoloss.distributed.vocab_parallel_cross_entropy` without a process
  group (no collective): the per-shard numba kernels, and (``generic``) inside
  :func:`infoloss._config.generic_only` the definition in torch ops (what CUDA tensors run);
- ``gloo xP``: the same on ``P`` processes (``torch.multiprocessing.spawn``, gloo on 127.0.0.1),
  each holding ``(N, V / P)``; the time is the slowest rank's, after a barrier;

and prints the bytes handed to ``all_reduce`` per call (counted by wrapping it). Each time is the
median of ``--repeat`` calls after one warm-up. On a machine with fewer free cores than ranks the
ranks share them, so the gloo time there measures the overhead, not a speed-up.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from typing import Any

__all__ = ["main"]


def _median_time(fn: Any, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _data(n: int, v: int) -> tuple[Any, Any]:
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, v, generator=g)
    y = torch.randint(0, v, (n,), generator=g)
    y[: n // 8] = -100
    return x, y


def _rank(rank: int, world: int, port: int, n: int, v: int, repeat: int, out: Any) -> None:
    import torch
    import torch.distributed as dist

    import infoloss
    from infoloss.distributed import vocab_parallel_cross_entropy

    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    x, y = _data(n, v)
    width = v // world
    shard = x[:, rank * width : (rank + 1) * width].clone().requires_grad_()
    sent = [0]
    orig = dist.all_reduce

    def counting(t: Any, *a: Any, **k: Any) -> Any:
        sent[0] += t.numel() * t.element_size()
        return orig(t, *a, **k)

    def step() -> None:
        shard.grad = None
        dist.barrier()
        vocab_parallel_cross_entropy(shard, y, ignore_index=-100).backward()
        dist.barrier()

    t = _median_time(step, repeat)
    with infoloss._config.generic_only():
        t_generic = _median_time(step, repeat)
    dist.all_reduce = counting  # type: ignore[assignment]
    vocab_parallel_cross_entropy(shard, y, ignore_index=-100).backward()
    dist.all_reduce = orig
    times = [torch.zeros(2, dtype=torch.float64) for _ in range(world)]
    dist.all_gather(times, torch.tensor([t, t_generic], dtype=torch.float64))
    if rank == 0:
        slowest = torch.stack(times).max(0).values.tolist()
        out.put((slowest[0], slowest[1], sent[0]))
    dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table; return 0."""
    p = argparse.ArgumentParser(prog="python -m infoloss.bench.distributed", description=__doc__)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--v", type=int, default=32768)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    import torch
    import torch.multiprocessing as mp
    import torch.nn.functional as F

    import infoloss
    from infoloss import sparse_softmax_cross_entropy
    from infoloss.distributed import vocab_parallel_cross_entropy

    torch.set_num_threads(1)
    x, y = _data(a.n, a.v)
    xg = x.clone().requires_grad_()

    def run(fn: Any) -> Any:
        def call() -> None:
            xg.grad = None
            fn(xg).backward()

        return call

    rows = [
        (
            "single fused",
            _median_time(
                run(
                    lambda t: sparse_softmax_cross_entropy(
                        t, y, ignore_index=-100, reduction="mean"
                    )
                ),
                a.repeat,
            ),
        ),
        (
            "single torch",
            _median_time(run(lambda t: F.cross_entropy(t, y, ignore_index=-100)), a.repeat),
        ),
        (
            "world of 1",
            _median_time(
                run(lambda t: vocab_parallel_cross_entropy(t, y, ignore_index=-100)), a.repeat
            ),
        ),
    ]
    with infoloss._config.generic_only():
        vp = run(lambda t: vocab_parallel_cross_entropy(t, y, ignore_index=-100))
        rows.append(("world of 1, generic", _median_time(vp, a.repeat)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    q = ctx.SimpleQueue()
    mp.spawn(_rank, args=(a.nproc, port, a.n, a.v, a.repeat, q), nprocs=a.nproc, join=True)
    t, t_generic, sent = q.get()
    rows.append((f"gloo x{a.nproc}", t))
    rows.append((f"gloo x{a.nproc}, generic", t_generic))
    base = rows[0][1]
    print(f"sparse CE fwd+bwd, float32 ({a.n}, {a.v}), 1 thread per process, median of {a.repeat}")
    torch_t = rows[1][1]
    print(f"{'variant':<22} {'ms':>9} {'/ single fused':>15} {'/ F.cross_entropy':>18}")
    for name, sec in rows:
        print(f"{name:<22} {sec * 1e3:9.2f} {sec / base:15.2f} {sec / torch_t:18.2f}")
    print(
        f"all_reduce per call and rank: {sent} bytes = {sent / a.n:.1f} bytes per row "
        f"(the logits shard is {a.n * (a.v // a.nproc) * 4} bytes)"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
