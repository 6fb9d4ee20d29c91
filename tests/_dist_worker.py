"""One rank of the torch.distributed tests (tests/test_distributed.py), gloo on 127.0.0.1.

``python tests/_dist_worker.py RANK WORLD PORT OUT SCENARIO [SCENARIO ...]`` joins the group,
runs each scenario and writes ``{scenario: {check: number or message}}`` as JSON to ``OUT``.
The scenarios compute every reference themselves (the full logits are drawn from a seed shared by
the ranks) and report errors as numbers; the test asserts on them. ``tests/_dist_launch.py``
starts the ranks as subprocesses with a timeout, so a hang fails instead of blocking.
"""

from __future__ import annotations

import contextlib
import faulthandler
import itertools
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

TOL = 1e-12


# --------------------------------------------------------------------------- launcher


# --------------------------------------------------------------------------- helpers


def err(a: Any, b: Any) -> float:
    """Largest |a - b| / max(1, |b|) over finite entries; inf when the non-finite entries differ."""
    import torch

    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if a.shape != b.shape:
        return float("inf")
    for f in (torch.isnan, torch.isposinf, torch.isneginf):
        if not torch.equal(f(a), f(b)):
            return float("inf")
    fin = torch.isfinite(b)
    if not bool(fin.any()):
        return 0.0
    d = (a[fin] - b[fin]).abs() / b[fin].abs().clamp(min=1.0)
    return float(d.max())


def _widths(world: int, v: int) -> list[int]:
    return {1: [v], 2: [3, v - 3], 3: [4, 0, v - 4]}[world]


def _permuted_starts(world: int, widths: list[int]) -> list[int]:
    """Explicit ``vocab_start`` s not in rank order: the shards tile [0, V) backwards."""
    starts, pos = [0] * world, 0
    for r in reversed(range(world)):
        starts[r] = pos
        pos += widths[r]
    return starts


def _data(v: int, seed: int = 0) -> tuple[Any, Any, Any, Any]:
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 5, v, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, v, (3, 5), generator=g)
    y[0, :3] = -100  # ignored tokens
    y[2, 4] = 5
    x[1, 2, :] = -float("inf")  # a row with no distribution
    x[2, 1, 6] = -float("inf")  # a masked class (its weight is 0 below)
    cw = torch.rand(v, generator=g, dtype=torch.float64) + 0.1
    cw[6] = 0.0
    sw = torch.rand(3, 5, generator=g, dtype=torch.float64) + 0.5
    return x, y, cw, sw


# --------------------------------------------------------------------------- scenarios


def scenario_options(rank: int, world: int) -> dict[str, Any]:
    """Every option against the single-process full-vocabulary loss: loss and logits gradient."""
    import torch

    import infoloss
    from infoloss.distributed import vocab_parallel_cross_entropy

    v = 11
    x, y, cw, sw = _data(v)
    widths = _widths(world, v)
    worst = {"loss": 0.0, "grad": 0.0}
    count = 0
    # every combination of the weights, ignore_index, smoothing and reduction; z-loss and the
    # explicit (permuted) vocab_start on alternating combinations
    for i, (cwm, use_sw, ii, eps, red) in enumerate(
        itertools.product(
            (None, "global", "sharded"),
            (False, True),
            (None, -100),
            (0.0, 0.1, 1.0),
            ("none", "sum", "mean"),
        )
    ):
        z = 1e-2 if i % 2 else 0.0
        start_mode = "explicit" if i % 3 == 0 else "default"
        yy = y if ii is not None else torch.where(y < 0, torch.ones_like(y), y)
        if start_mode == "default":
            starts = [sum(widths[:r]) for r in range(world)]
        else:
            starts = _permuted_starts(world, widths)
        s, w = starts[rank], widths[rank]
        opts = dict(ignore_index=ii, label_smoothing=eps, z_loss=z, reduction=red)
        full_cw = None if cwm is None else cw
        my_cw = None if cwm is None else (cw if cwm == "global" else cw[s : s + w])
        swv = sw if use_sw else None
        gout = (
            torch.linspace(0.5, 1.5, 15, dtype=torch.float64).reshape(3, 5)
            if red == "none"
            else torch.tensor(0.7, dtype=torch.float64)
        )
        xr = x.clone().requires_grad_()
        with infoloss._config.generic_only():
            ref = infoloss.sparse_softmax_cross_entropy(
                xr, yy, class_weights=full_cw, sample_weights=swv, **opts
            )
        (ref * gout).sum().backward()
        xs = x[..., s : s + w].clone().requires_grad_()
        out = vocab_parallel_cross_entropy(
            xs,
            yy,
            vocab_start=None if start_mode == "default" else s,
            class_weights=my_cw,
            sample_weights=swv,
            **opts,
        )
        (out * gout).sum().backward()
        worst["loss"] = max(worst["loss"], err(out.detach(), ref.detach()))
        assert xr.grad is not None and xs.grad is not None
        worst["grad"] = max(worst["grad"], err(xs.grad, xr.grad[..., s : s + w]))
        count += 1
    worst["calls"] = count
    # nan in, nan out; float32 and bfloat16 shards
    xn = x.clone()
    xn[0, 4, 7] = float("nan")
    s, w = sum(widths[:rank]), widths[rank]
    out = vocab_parallel_cross_entropy(xn[..., s : s + w], y, ignore_index=-100, reduction="none")
    worst["nan_row_is_nan"] = bool(torch.isnan(out[0, 4])) and not bool(torch.isnan(out[0, 3]))
    for dt in (torch.float32, torch.bfloat16):
        xd = torch.where(torch.isinf(x), torch.zeros_like(x), x).to(dt)
        with infoloss._config.generic_only():
            ref = infoloss.sparse_softmax_cross_entropy(
                xd.float(), y, ignore_index=-100, label_smoothing=0.1, reduction="mean"
            )
        out = vocab_parallel_cross_entropy(
            xd[..., s : s + w].clone(), y, ignore_index=-100, label_smoothing=0.1
        )
        worst[f"dtype_{str(dt)[6:]}"] = [str(out.dtype)[6:], abs(float(out) - float(ref))]
    return worst


def scenario_options_generic(rank: int, world: int) -> dict[str, Any]:
    """:func:`scenario_options` on the definition in torch ops (what CUDA tensors run; the
    default CPU path takes the per-shard kernels)."""
    import infoloss

    with infoloss._config.generic_only():
        return scenario_options(rank, world)


def scenario_linear(rank: int, world: int) -> dict[str, Any]:
    """vocab_parallel_linear_cross_entropy against the full output layer: loss, d_hidden,
    d_weight_shard, d_bias_shard."""
    import torch

    import infoloss
    from infoloss.distributed import vocab_parallel_linear_cross_entropy

    v, hdim = 11, 4
    g = torch.Generator().manual_seed(1)
    h = torch.randn(3, 5, hdim, generator=g, dtype=torch.float64)
    wfull = torch.randn(v, hdim, generator=g, dtype=torch.float64)
    bfull = torch.randn(v, generator=g, dtype=torch.float64)
    _, y, cw, sw = _data(v)
    widths = _widths(world, v)
    s, w = sum(widths[:rank]), widths[rank]
    worst = {"loss": 0.0, "d_hidden": 0.0, "d_weight": 0.0, "d_bias": 0.0}
    # every combination of what the linear layer adds (chunks, bias) with the weights and the
    # reduction; sample weights, smoothing and z-loss cycle through their 8 combinations over
    # them (each collective costs a scheduling round trip on a loaded machine: 36 calls, not 288;
    # the options' own interplay is scenario_options')
    count = 0
    for i, (cwm, red, chunk, bias) in enumerate(
        itertools.product(
            (None, "global", "sharded"), ("none", "sum", "mean"), (None, 4), (False, True)
        )
    ):
        use_sw, eps, z = bool(i % 2), (0.0, 0.1)[(i // 2) % 2], (0.0, 1e-2)[(i // 4) % 2]
        count += 1
        full_cw = None if cwm is None else cw
        my_cw = None if cwm is None else (cw if cwm == "global" else cw[s : s + w])
        swv = sw if use_sw else None
        opts = dict(ignore_index=-100, label_smoothing=eps, z_loss=z, reduction=red)
        gout = (
            torch.linspace(0.5, 1.5, 15, dtype=torch.float64).reshape(3, 5)
            if red == "none"
            else torch.tensor(1.3, dtype=torch.float64)
        )
        hr = h.clone().requires_grad_()
        wr = wfull.clone().requires_grad_()
        br = bfull.clone().requires_grad_() if bias else None
        logits = hr @ wr.T + (br if br is not None else 0)
        with infoloss._config.generic_only():
            ref = infoloss.sparse_softmax_cross_entropy(
                logits, y, class_weights=full_cw, sample_weights=swv, **opts
            )
        (ref * gout).sum().backward()
        hs = h.clone().requires_grad_()
        ws = wfull[s : s + w].clone().requires_grad_()
        bs = bfull[s : s + w].clone().requires_grad_() if bias else None
        out = vocab_parallel_linear_cross_entropy(
            hs,
            ws,
            y,
            bias_shard=bs,
            class_weights=my_cw,
            sample_weights=swv,
            chunk_size=chunk,
            **opts,
        )
        (out * gout).sum().backward()
        worst["loss"] = max(worst["loss"], err(out.detach(), ref.detach()))
        worst["d_hidden"] = max(worst["d_hidden"], err(hs.grad, hr.grad))
        worst["d_weight"] = max(worst["d_weight"], err(ws.grad, wr.grad[s : s + w]))
        if bias:
            worst["d_bias"] = max(worst["d_bias"], err(bs.grad, br.grad[s : s + w]))
    worst["calls"] = count
    return worst


def scenario_volume(rank: int, world: int) -> dict[str, Any]:
    """Bytes handed to all_reduce / all_gather per call, counted by wrapping torch.distributed."""
    import torch
    import torch.distributed as dist

    from infoloss.distributed import (
        vocab_parallel_cross_entropy,
        vocab_parallel_linear_cross_entropy,
    )

    counts: dict[str, int] = {}
    orig_reduce, orig_gather = dist.all_reduce, dist.all_gather

    def reduce(t: Any, *a: Any, **k: Any) -> Any:
        counts["all_reduce"] = counts.get("all_reduce", 0) + t.numel() * t.element_size()
        counts["all_reduce_calls"] = counts.get("all_reduce_calls", 0) + 1
        return orig_reduce(t, *a, **k)

    def gather(out: Any, t: Any, *a: Any, **k: Any) -> Any:
        counts["all_gather"] = counts.get("all_gather", 0) + t.numel() * t.element_size()
        return orig_gather(out, t, *a, **k)

    res: dict[str, Any] = {}
    dist.all_reduce, dist.all_gather = reduce, gather
    try:
        for n, v_local, eps, sharded in itertools.product(
            (64, 256), (100, 400), (0.0, 0.1), (False, True)
        ):
            x = torch.randn(n, v_local, dtype=torch.float64, requires_grad=True)
            y = torch.randint(0, v_local * world, (n,), generator=torch.Generator().manual_seed(n))
            cw = torch.ones(v_local if sharded else v_local * world, dtype=torch.float64)
            counts.clear()
            loss = vocab_parallel_cross_entropy(x, y, label_smoothing=eps, class_weights=cw)
            fwd = dict(counts)
            counts.clear()
            loss.backward()
            res[f"ce n={n} v_local={v_local} eps={eps} sharded_w={sharded}"] = {
                "forward": fwd,
                "backward": dict(counts),
            }
        # class weights that require grad (global: their gradient summed over the ranks), and
        # a second derivative (create_graph=True, then differentiating the gradient)
        n, v_local = 64, 100
        for sharded in (False, True):
            x = torch.randn(n, v_local, dtype=torch.float64, requires_grad=True)
            y = torch.randint(0, v_local * world, (n,), generator=torch.Generator().manual_seed(n))
            cw = torch.ones(v_local if sharded else v_local * world, dtype=torch.float64)
            cw.requires_grad_()
            counts.clear()
            loss = vocab_parallel_cross_entropy(x, y, label_smoothing=0.1, class_weights=cw)
            fwd = dict(counts)
            counts.clear()
            loss.backward()
            res[f"ce weight grad n={n} v_local={v_local} sharded_w={sharded}"] = {
                "forward": fwd,
                "backward": dict(counts),
            }
        x = torch.randn(n, v_local, dtype=torch.float64, requires_grad=True)
        y = torch.randint(0, v_local * world, (n,), generator=torch.Generator().manual_seed(n))
        loss = vocab_parallel_cross_entropy(x, y, label_smoothing=0.1)
        counts.clear()
        (g,) = torch.autograd.grad(loss, x, create_graph=True)
        first = dict(counts)
        counts.clear()
        torch.autograd.grad((g * g).sum(), x)
        res[f"ce double backward n={n} eps=0.1"] = {"backward": first, "second": dict(counts)}
        hdim = 16
        for n in (64, 256):
            h = torch.randn(n, hdim, dtype=torch.float64, requires_grad=True)
            w = torch.randn(500, hdim, dtype=torch.float64, requires_grad=True)
            y = torch.randint(0, 500 * world, (n,), generator=torch.Generator().manual_seed(n))
            counts.clear()
            loss = vocab_parallel_linear_cross_entropy(h, w, y, chunk_size=32)
            fwd = dict(counts)
            counts.clear()
            loss.backward()
            res[f"linear n={n} h={hdim}"] = {"forward": fwd, "backward": dict(counts)}
    finally:
        dist.all_reduce, dist.all_gather = orig_reduce, orig_gather
    return res


def scenario_second(rank: int, world: int) -> dict[str, Any]:
    """Gradients with respect to class weights that require grad (global and sharded), and
    Hessian-vector products (create_graph=True, then a second backward on every rank) against
    the single-process full-vocabulary loss; the explicit errors of what is not supported."""
    import torch

    import infoloss
    from infoloss.distributed import (
        vocab_parallel_cross_entropy,
        vocab_parallel_linear_cross_entropy,
    )

    v = 11
    x, y, cw, sw = _data(v)
    x = torch.where(torch.isinf(x), torch.full_like(x, -30.0), x)  # finite second derivatives
    widths = _widths(world, v)
    s, w = sum(widths[:rank]), widths[rank]
    tangent = torch.randn(x.shape, generator=torch.Generator().manual_seed(7), dtype=x.dtype)
    worst = {"loss": 0.0, "d_logits": 0.0, "d_class_weights": 0.0, "hvp": 0.0}
    count = 0
    for i, (cwm, eps, red) in enumerate(
        itertools.product(("global", "sharded", None), (0.0, 0.1), ("none", "sum", "mean"))
    ):
        opts = dict(
            ignore_index=-100,
            label_smoothing=eps,
            z_loss=1e-2 if i % 2 else 0.0,
            reduction=red,
            sample_weights=sw if i % 3 else None,
        )
        gout = (
            torch.linspace(0.5, 1.5, 15, dtype=torch.float64).reshape(3, 5)
            if red == "none"
            else torch.tensor(0.7, dtype=torch.float64)
        )
        xr = x.clone().requires_grad_()
        cwr = cw.clone().requires_grad_()
        # (constant weights here: the generic definition under plain autograd, which weights
        # that require grad select, differentiates the row maximum of a row of ties twice)
        with infoloss._config.generic_only():
            ref = infoloss.sparse_softmax_cross_entropy(
                xr, y, class_weights=None if cwm is None else cw, **opts
            )
            g_ref = torch.autograd.grad((ref * gout).sum(), xr, create_graph=True)[0]
        hv_ref = torch.autograd.grad((g_ref * tangent).sum(), xr)[0]
        xs = x[..., s : s + w].clone().requires_grad_()
        if cwm is not None:  # the first derivatives, weights included
            with infoloss._config.generic_only():
                ref = infoloss.sparse_softmax_cross_entropy(xr, y, class_weights=cwr, **opts)
            d_ref = torch.autograd.grad((ref * gout).sum(), (xr, cwr))
            cws = (cw if cwm == "global" else cw[s : s + w]).clone().requires_grad_()
            out = vocab_parallel_cross_entropy(xs, y, class_weights=cws, **opts)
            d_x, d_cw = torch.autograd.grad((out * gout).sum(), (xs, cws))
            worst["loss"] = max(worst["loss"], err(out.detach(), ref.detach()))
            worst["d_logits"] = max(worst["d_logits"], err(d_x, d_ref[0][..., s : s + w]))
            want = d_ref[1] if cwm == "global" else d_ref[1][s : s + w]
            worst["d_class_weights"] = max(worst["d_class_weights"], err(d_cw, want))
        cwc = None if cwm is None else (cw if cwm == "global" else cw[s : s + w])
        out = vocab_parallel_cross_entropy(xs, y, class_weights=cwc, **opts)
        g = torch.autograd.grad((out * gout).sum(), xs, create_graph=True)[0]
        hv = torch.autograd.grad((g * tangent[..., s : s + w]).sum(), xs)[0]
        worst["hvp"] = max(worst["hvp"], err(hv, hv_ref[..., s : s + w]))
        count += 1
    worst["calls"] = count
    # not supported: explicit infoloss errors on every rank (no hang)
    cws = cw.clone().requires_grad_()
    xs = x[..., s : s + w].clone().requires_grad_()
    worst["double_with_weight_grad"] = _raises(
        lambda: torch.autograd.grad(
            vocab_parallel_cross_entropy(xs, y, class_weights=cws, ignore_index=-100),
            xs,
            create_graph=True,
        )
    )
    g = torch.Generator().manual_seed(1)
    h = torch.randn(15, 4, generator=g, dtype=torch.float64, requires_grad=True)
    wfull = torch.randn(v, 4, generator=g, dtype=torch.float64)
    ws = wfull[s : s + w].clone().requires_grad_()
    yl = y.reshape(-1)
    d_h = torch.autograd.grad(
        vocab_parallel_linear_cross_entropy(h, ws, yl, ignore_index=-100), h, create_graph=True
    )[0]
    worst["linear_double"] = _raises(lambda: torch.autograd.grad(d_h.sum(), h))
    worst["linear_weight_grad"] = _raises(
        lambda: vocab_parallel_linear_cross_entropy(h, ws, yl, ignore_index=-100, class_weights=cws)
    )
    return worst


def _raises(fn: Any) -> str:
    try:
        fn()
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return "no error"


def scenario_errors(rank: int, world: int) -> dict[str, Any]:
    """Bad input: every rank raises (no hang), and the group stays usable."""
    import torch
    import torch.distributed as dist

    import infoloss
    from infoloss.distributed import vocab_parallel_cross_entropy

    v = 11
    x, y, _, _ = _data(v)
    y = torch.where(y < 0, torch.zeros_like(y), y)
    widths = _widths(world, v)
    s, w = sum(widths[:rank]), widths[rank]
    xs = x[..., s : s + w]
    out: dict[str, Any] = {}
    out["overlap"] = _raises(lambda: vocab_parallel_cross_entropy(xs, y, vocab_start=max(0, s - 1)))
    out["gap"] = _raises(lambda: vocab_parallel_cross_entropy(xs, y, vocab_start=s + rank))
    out["start_on_some_ranks"] = _raises(
        lambda: vocab_parallel_cross_entropy(xs, y, vocab_start=s if rank == 0 else None)
    )
    bad = y.clone()
    bad[1, 3] = v
    out["label_outside"] = _raises(lambda: vocab_parallel_cross_entropy(xs, bad))
    neg = y.clone()
    neg[2, 0] = -3
    out["label_negative"] = _raises(
        lambda: vocab_parallel_cross_entropy(xs, neg, ignore_index=-100)
    )
    xd = xs.float() if rank == world - 1 else xs
    out["dtype_mismatch"] = _raises(lambda: vocab_parallel_cross_entropy(xd, y))
    other = y.clone()
    if rank == 0:
        other[0, 0] = (other[0, 0] + 1) % v
    out["labels_differ"] = _raises(lambda: vocab_parallel_cross_entropy(xs, other))
    eps = 2.0 if rank == world - 1 else 0.1
    out["local_error"] = _raises(lambda: vocab_parallel_cross_entropy(xs, y, label_smoothing=eps))
    out["options_differ"] = _raises(lambda: vocab_parallel_cross_entropy(xs, y, z_loss=0.1 * rank))
    out["class_weights_shape"] = _raises(
        lambda: vocab_parallel_cross_entropy(xs, y, class_weights=torch.ones(w + 1, dtype=x.dtype))
    )
    # the single-device loss's own message for the same bad option
    out["single_device_error"] = _raises(
        lambda: infoloss.sparse_softmax_cross_entropy(x, y, label_smoothing=2.0)
    )
    # after all that the group still works and gives the right value
    ref = infoloss.sparse_softmax_cross_entropy(x, y, reduction="mean")
    out["after_errors"] = err(vocab_parallel_cross_entropy(xs, y), ref)
    # a group of one rank: the single-device loss, with no collective
    groups = [dist.new_group([r]) for r in range(world)]
    xr = x.clone().requires_grad_()
    with infoloss._config.generic_only():
        ref = infoloss.sparse_softmax_cross_entropy(
            xr, y, label_smoothing=0.1, z_loss=0.01, reduction="mean"
        )
    ref.backward()
    x1 = x.clone().requires_grad_()
    one = vocab_parallel_cross_entropy(x1, y, group=groups[rank], label_smoothing=0.1, z_loss=0.01)
    one.backward()
    out["group_of_one_loss"] = err(one.detach(), ref.detach())
    out["group_of_one_grad"] = err(x1.grad, xr.grad)
    return out


def scenario_ddp(rank: int, world: int) -> dict[str, Any]:
    """DDP + gradient accumulation with the global mean = single-process full-batch training."""
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP

    from infoloss import sparse_softmax_cross_entropy
    from infoloss.distributed import global_mean, global_weight_total

    hdim, v, micro, tokens, steps, lr = 6, 9, 2, 8, 3, 0.5
    g = torch.Generator().manual_seed(3)
    init = torch.nn.Linear(hdim, v, dtype=torch.float64)
    with torch.no_grad():
        init.weight.copy_(torch.randn(v, hdim, generator=g, dtype=torch.float64))
        init.bias.copy_(torch.randn(v, generator=g, dtype=torch.float64))
    # data[step][rank][micro] = (x, y); rank r ignores a different number of tokens
    data = []
    for _ in range(steps):
        per_rank = []
        for r in range(world):
            mbs = []
            for k in range(micro):
                xb = torch.randn(tokens, hdim, generator=g, dtype=torch.float64)
                yb = torch.randint(0, v, (tokens,), generator=g)
                n_ignored = (2 * r + 3 * k) % (tokens - 1)
                yb[:n_ignored] = -100
                mbs.append((xb, yb))
            per_rank.append(mbs)
        data.append(per_rank)

    def clone_model() -> Any:
        m = torch.nn.Linear(hdim, v, dtype=torch.float64)
        m.load_state_dict(init.state_dict())
        return m

    # single process, full batch: the mean over all non-ignored tokens of every rank and micro-batch
    ref = clone_model()
    opt = torch.optim.SGD(ref.parameters(), lr=lr)
    for step in data:
        xs = torch.cat([xb for mbs in step for xb, _ in mbs])
        ys = torch.cat([yb for mbs in step for _, yb in mbs])
        sparse_softmax_cross_entropy(ref(xs), ys, ignore_index=-100, reduction="mean").backward()
        opt.step()
        opt.zero_grad()

    def train(recipe: str) -> Any:
        model = DDP(clone_model())
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        for step in data:
            mbs = step[rank]
            total = global_weight_total([yb for _, yb in mbs], ignore_index=-100)
            for k, (xb, yb) in enumerate(mbs):
                sync = k == len(mbs) - 1
                ctx = contextlib.nullcontext() if sync else model.no_sync()
                with ctx:
                    if recipe == "global":
                        s = sparse_softmax_cross_entropy(
                            model(xb), yb, ignore_index=-100, reduction="sum"
                        )
                        global_mean(s, total).backward()
                    else:  # the usual bug: a mean per micro-batch, averaged again
                        loss = sparse_softmax_cross_entropy(
                            model(xb), yb, ignore_index=-100, reduction="mean"
                        )
                        (loss / len(mbs)).backward()
            opt.step()
            opt.zero_grad()
        return model.module

    out = {}
    for recipe in ("global", "naive"):
        m = train(recipe)
        out[recipe] = max(
            err(m.weight.detach(), ref.weight.detach()), err(m.bias.detach(), ref.bias.detach())
        )
    return out


def scenario_stuck(rank: int, world: int) -> dict[str, Any]:
    """For the launcher's own test: rank 1 fails, every other rank is stuck (as in a
    rendezvous that never completes) until the launcher kills it."""
    if rank == 1:  # exit at once: leaving the process group could wait on the stuck ranks
        print("rank 1 fails on purpose", flush=True)
        os._exit(1)
    while True:
        time.sleep(1.0)


def scenario_sleep(rank: int, world: int) -> dict[str, Any]:
    """For the launcher's own test: never returns; a 5 s watchdog ends the rank."""
    faulthandler.dump_traceback_later(5.0, exit=True, file=sys.stdout)
    while True:
        time.sleep(1.0)


SCENARIOS = {
    "options": scenario_options,
    "options_generic": scenario_options_generic,
    "linear": scenario_linear,
    "volume": scenario_volume,
    "errors": scenario_errors,
    "ddp": scenario_ddp,
    "second": scenario_second,
    "stuck": scenario_stuck,
    "sleep": scenario_sleep,
}


DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "distributed.md")


def doc_recipes() -> list[str]:
    """The ``torchrun`` recipes of docs/distributed.md: the python blocks of its PyTorch section."""
    import re

    with open(DOCS) as f:
        text = f.read()
    section = text[text.index("## PyTorch recipes") : text.index("## JAX")]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def _ordered_destroy(rank: int, world: int, folder: str, real: Any) -> Callable[..., None]:
    """``dist.destroy_process_group`` for the recipes, rank 0 last: rank 0 hosts the env://
    rendezvous store, and destroying its group shuts the store down, so a peer still leaving
    its own group would wait on it forever (a run once hung there). Each peer destroys its group
    and then leaves a marker file; rank 0 waits for every marker (bounded) before its own."""
    calls = [0]

    def destroy(*args: Any, **kwargs: Any) -> None:
        calls[0] += 1
        marker = lambda k: os.path.join(folder, f"destroyed{calls[0]}.rank{k}")  # noqa: E731
        if rank != 0:
            real(*args, **kwargs)
            with open(marker(rank), "w") as f:
                f.write("done")
            return
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline and not all(
            os.path.exists(marker(k)) for k in range(1, world)
        ):
            time.sleep(0.02)
        real(*args, **kwargs)

    return destroy


def run_doc_recipes(rank: int, world: int, folder: str) -> dict[str, Any]:
    """Each recipe as ``torchrun --nproc-per-node WORLD`` would run it (env:// rendezvous)."""
    import torch.distributed as dist

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    blocks = doc_recipes()
    ports = [int(p) for p in os.environ["INFOLOSS_TEST_PORTS"].split(",")]
    assert len(ports) >= len(blocks), (len(ports), len(blocks))
    real = dist.destroy_process_group
    dist.destroy_process_group = _ordered_destroy(rank, world, folder, real)
    try:
        for code, p in zip(blocks, ports, strict=False):  # a fresh rendezvous port per recipe
            os.environ["MASTER_PORT"] = str(p)
            exec(compile(code, DOCS, "exec"), {"__name__": "__main__"})
    finally:
        dist.destroy_process_group = real
    return {"blocks": len(blocks)}


def _wait_for_peers(out: str, world: int, timeout: float) -> None:
    """Wait until every other rank has written its results file (``rank<k>.json`` beside
    ``out``), so that rank 0 does not exit while another rank still talks to its store."""
    folder = os.path.dirname(out)
    deadline = time.monotonic() + timeout
    peers = [os.path.join(folder, f"rank{k}.json") for k in range(1, world)]
    while time.monotonic() < deadline:
        if all(os.path.exists(p) and os.path.getsize(p) > 0 for p in peers):
            return
        time.sleep(0.05)


def _watchdog(seconds: float) -> None:
    """End this process after ``seconds`` whatever it is doing (a collective waiting for a rank
    that died, a rendezvous that never completes), first printing every thread's stack into
    the rank's log (the launcher shows it): no spawned rank outlives its test."""
    sys.stdout.flush()
    faulthandler.dump_traceback_later(seconds, exit=True, file=sys.stdout)


def main(argv: list[str]) -> None:
    rank, world, port, out = int(argv[0]), int(argv[1]), int(argv[2]), argv[3]
    _watchdog(float(os.environ.get("INFOLOSS_TEST_DEADLINE", "600")))
    import torch.distributed as dist

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    names = [a for a in argv[4:] if a != "docs"]
    results: dict[str, Any] = {}
    if names:
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=120))
        try:
            for name in names:
                t0 = time.perf_counter()
                results[name] = SCENARIOS[name](rank, world)
                results[name]["seconds"] = time.perf_counter() - t0
        finally:
            dist.destroy_process_group()
    if "docs" in argv[4:]:  # after the group above is gone: the recipes start their own
        t0 = time.perf_counter()
        results["docs"] = run_doc_recipes(rank, world, os.path.dirname(os.path.abspath(out)))
        results["docs"]["seconds"] = time.perf_counter() - t0
    with open(out, "w") as f:
        json.dump(results, f)
    if "docs" in argv[4:] and rank == 0:
        # the recipes' rendezvous store lives in rank 0: up until every rank is done
        _wait_for_peers(out, world, timeout=120.0)


if __name__ == "__main__":
    main(sys.argv[1:])
