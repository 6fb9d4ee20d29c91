"""Past one device (issue 15): vocabulary-parallel cross-entropy and the global mean.

The torch.distributed tests spawn their own gloo groups of 2 and 3 processes on 127.0.0.1
(``tests/_dist_worker.py``; one spawn per group size runs every scenario, the group of 2 then
the docs' recipes; a 300 s timeout, after which every spawned process is gone)
and compare, in float64, with the single-process full-vocabulary loss. The JAX tests run in a
subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (JAX fixes its device
count when first imported).
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest
from _dist_launch import Launch
from _dist_worker import TOL, scenario_options

torch = pytest.importorskip("torch")

import infoloss  # noqa: E402
from infoloss.distributed import (  # noqa: E402
    global_mean,
    global_weight_total,
    vocab_parallel_cross_entropy,
    vocab_parallel_linear_cross_entropy,
)

SCENARIOS = ["options", "options_generic", "linear", "volume", "errors", "ddp", "second"]
# a hang fails after this long (every spawned process also ends itself just before); generous
# because the machine running CI may be loaded (a run takes 20-60 s of wall time on 2 idle
# cores, most of it importing torch)
TIMEOUT = 300.0


@pytest.fixture(scope="module")
def runs():
    """The spawned runs, started together so that they overlap: a gloo group of 2 processes
    (every scenario, then the docs' torchrun recipes) and one of 3 (every scenario), and the
    JAX script on 4 host devices. Whatever still runs at the end is killed."""
    started: dict[object, Launch] = {2: Launch(2, [*SCENARIOS, "docs"], timeout=TIMEOUT)}
    started[3] = Launch(3, SCENARIOS, timeout=TIMEOUT)
    # the launcher's own test (test_launcher_never_leaves_a_rank_running), overlapping the rest
    started["stuck"] = Launch(2, ["stuck"], timeout=TIMEOUT)
    started["sleep"] = Launch(1, ["sleep"], timeout=TIMEOUT)
    jax = None
    if importlib.util.find_spec("jax") is not None:
        env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
        watchdog = (
            f"import faulthandler\nfaulthandler.dump_traceback_later({TIMEOUT - 5.0}, exit=True)\n"
        )
        # output into files, not pipes: a full pipe would block the script until it is read
        out, log = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        jax = (
            subprocess.Popen(
                [sys.executable, "-c", watchdog + _JAX_SCRIPT], env=env, stdout=out, stderr=log
            ),
            out,
            log,
        )
    try:
        yield started, jax
    finally:
        if jax is not None:
            if jax[0].poll() is None:
                jax[0].kill()
            jax[0].wait()
            jax[1].close()
            jax[2].close()
        for run in started.values():
            run.kill()


@pytest.fixture(params=[2, 3], ids=["2-ranks", "3-ranks"])
def group_run(request, runs):
    """Every scenario on one spawned group; the results of each rank."""
    world = request.param
    return world, runs[0][world].results()


# --------------------------------------------------------------------------- spawned groups


def test_every_option_equals_full_vocabulary_loss(group_run):
    """Uneven shards (one empty with 3 ranks), explicit permuted vocab_start, class weights global
    and sharded, sample weights, ignore_index, smoothing 0/0.1/1, z-loss, all reductions, a row
    of -inf and a masked class: loss and logits gradient to 1e-12 in float64 on every rank."""
    world, results = group_run
    for rank, res in enumerate(results):
        for path in ("options", "options_generic"):  # per-shard kernels; torch ops
            r = res[path]
            assert r["calls"] == 108
            assert r["loss"] <= TOL, (rank, path, r)
            assert r["grad"] <= TOL, (rank, path, r)
            assert r["nan_row_is_nan"]
            assert r["dtype_float32"][0] == "float32" and r["dtype_float32"][1] < 1e-5
            assert r["dtype_bfloat16"][0] == "bfloat16" and r["dtype_bfloat16"][1] < 2e-2
    assert len(results) == world


def test_linear_equals_full_output_layer(group_run):
    _, results = group_run
    for res in results:
        r = res["linear"]
        assert r["calls"] == 36
        for key in ("loss", "d_hidden", "d_weight", "d_bias"):
            assert r[key] <= TOL, (key, r)


def test_all_reduce_volume_is_order_n(group_run):
    """Bytes passed to all_reduce per call: 8 bytes x (4..7) x N in float64, the same for
    V_local = 100 and 400; no collective in the backward of the logits version; the linear
    version's backward reduces d_hidden (N x H) only."""
    _, results = group_run
    vol = results[0]["volume"]
    for n in (64, 256):
        for eps in (0.0, 0.1):
            for sharded in (False, True):
                rows = 4 + (eps > 0) + sharded + (eps > 0 and sharded)
                per_v = [
                    vol[f"ce n={n} v_local={v} eps={eps} sharded_w={sharded}"] for v in (100, 400)
                ]
                for rec in per_v:
                    assert rec["forward"]["all_reduce"] == 8 * rows * n
                    assert rec["forward"]["all_reduce_calls"] == 2
                    assert rec["forward"]["all_gather"] == 8 * 11
                    assert rec["backward"] == {}
        lin = vol[f"linear n={n} h=16"]
        assert lin["forward"]["all_reduce"] == 8 * 4 * n
        assert lin["backward"] == {"all_reduce": 8 * n * 16, "all_reduce_calls": 1}
    # class weights that require grad: the global vector's gradient is summed (V values), a
    # sharded one's is local; create_graph=True recomputes the SUM of the statistics (4N with
    # smoothing) and differentiating the gradient sums its part of it once more
    world = len(results)
    glob = vol["ce weight grad n=64 v_local=100 sharded_w=False"]
    assert glob["forward"]["all_reduce"] == 8 * 5 * 64
    assert glob["backward"] == {"all_reduce": 8 * 100 * world, "all_reduce_calls": 1}
    shard = vol["ce weight grad n=64 v_local=100 sharded_w=True"]
    assert shard["forward"]["all_reduce"] == 8 * 7 * 64 and shard["backward"] == {}
    twice = vol["ce double backward n=64 eps=0.1"]
    assert twice["backward"] == {"all_reduce": 8 * 4 * 64, "all_reduce_calls": 1}
    assert twice["second"] == {"all_reduce": 8 * 4 * 64, "all_reduce_calls": 1}


def test_bad_input_raises_on_every_rank(group_run):
    world, results = group_run
    last = world - 1
    for rank, res in enumerate(results):
        e = res["errors"]
        assert e["overlap"].startswith(
            "InfolossError: `vocab_start` and the shard widths must tile"
        )
        assert "got rank 0: [0, " in e["overlap"]
        assert e["gap"].startswith("InfolossError: `vocab_start` and the shard widths must tile")
        assert "None on rank(s) [1" in e["start_on_some_ranks"]
        assert e["label_outside"] == (
            "InfolossError: `labels` must hold class indices in [0, 11) (the global vocabulary); "
            "found 11 at position (1, 3)"
        )
        assert "found -3 at position (2, 0)" in e["label_negative"]
        assert e["dtype_mismatch"].startswith(
            "InfolossTypeError: `logits_shard` must have the same dtype"
        )
        assert f"float32 on rank {last}" in e["dtype_mismatch"]
        assert "checksums differ" in e["labels_differ"]
        if rank == last:  # the rank with the bad option reports the single-device message
            assert e["local_error"] == e["single_device_error"]
        else:
            assert e["local_error"] == (
                f"InfolossError: invalid input on rank(s) [{last}] of the group "
                "(see the error raised there); every rank stops"
            )
        assert "must be the same on every rank" in e["options_differ"]
        assert e["class_weights_shape"].startswith(
            "InfolossError: `class_weights` must have shape (V,)"
        )
        assert e["after_errors"] <= TOL
        assert e["group_of_one_loss"] <= TOL and e["group_of_one_grad"] <= TOL


def test_ddp_global_mean_equals_full_batch(group_run):
    """DDP, 2 micro-batches per rank (no_sync), uneven ignored tokens per rank and micro-batch,
    3 SGD steps: the global-mean recipe gives the single-process full-batch parameters; the
    usual per-micro-batch mean does not."""
    _, results = group_run
    for res in results:
        assert res["ddp"]["global"] <= TOL
        assert res["ddp"]["naive"] > 1e-3


def test_class_weight_gradients_and_double_backward(group_run):
    """Class weights that require grad (global (V,) and sharded (V_local,)): loss, d_logits and
    d_class_weights equal the single-process loss's to 1e-12 (float64, every reduction,
    smoothing, z-loss, sample weights); create_graph=True then a second backward on every rank:
    the Hessian-vector product of the full-vocabulary loss to 1e-12. What is not supported
    raises an InfolossError on every rank."""
    _, results = group_run
    for res in results:
        r = res["second"]
        assert r["calls"] == 18
        for key in ("loss", "d_logits", "d_class_weights", "hvp"):
            assert r[key] <= TOL, (key, r)
        assert r["double_with_weight_grad"].startswith(
            "InfolossError: vocab_parallel_cross_entropy: a second derivative (create_graph=True) "
            "with class_weights that require grad is not supported"
        )
        assert r["linear_double"].startswith(
            "InfolossError: vocab_parallel_linear_cross_entropy has no second derivative"
        )
        assert r["linear_weight_grad"].startswith(
            "InfolossError: vocab_parallel_linear_cross_entropy: `class_weights` that require grad"
        )


def test_doc_recipes_run_on_two_ranks(runs):
    """The torchrun recipes of docs/distributed.md (each asserts its own result) on 2 ranks."""
    for res in runs[0][2].results():
        assert res["docs"]["blocks"] == 2


def test_launcher_never_leaves_a_rank_running(runs):
    """A rank that fails makes the launcher kill the ranks still running (they would wait for
    it in a collective); a rank that never finishes is ended by its own watchdog (here after
    5 s), with the stacks of its threads in the error."""
    stuck, asleep = runs[0]["stuck"], runs[0]["sleep"]
    with pytest.raises(AssertionError, match=r"rank 1 of 2 failed \(1\) in \['stuck'\]"):
        stuck.results()
    assert stuck.procs[0].returncode == -9  # killed by the launcher
    # "failed", not "timed out": the watchdog ended it long before the launcher's timeout
    with pytest.raises(AssertionError, match=r'(?s)rank 0 of 1 failed \(1\).*File "'):
        asleep.results()
    assert all(p.poll() is not None for p in (*stuck.procs, *asleep.procs))


# --------------------------------------------------------------------------- one process


def test_world_of_one_without_process_group():
    """Without torch.distributed initialised: a world of one process, every option."""
    r = scenario_options(0, 1)
    assert r["loss"] <= TOL and r["grad"] <= TOL


def test_world_of_one_gradgradcheck_and_class_weight_gradients():
    """float64 gradgradcheck (second derivatives by finite differences, every reduction,
    smoothing, z-loss, weights, ignore_index) and the class-weight gradient against the
    single-device loss's autograd."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 6, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 6, (2, 3), generator=g)
    y[0, 1] = -100
    cw = torch.rand(6, generator=g, dtype=torch.float64) + 0.2
    sw = torch.rand(2, 3, generator=g, dtype=torch.float64) + 0.5
    for red, eps, z in (("none", 0.1, 1e-2), ("sum", 0.0, 0.0), ("mean", 0.2, 1e-2)):
        opts = dict(
            ignore_index=-100, label_smoothing=eps, z_loss=z, reduction=red, sample_weights=sw
        )
        assert torch.autograd.gradgradcheck(
            lambda a, o=opts: vocab_parallel_cross_entropy(a, y, class_weights=cw, **o), (x,)
        )
        cwr = cw.clone().requires_grad_()
        out = vocab_parallel_cross_entropy(x, y, class_weights=cwr, **opts)
        got = torch.autograd.grad(out.sum(), (x, cwr))
        cwq = cw.clone().requires_grad_()
        with infoloss._config.generic_only():
            ref = infoloss.sparse_softmax_cross_entropy(x, y, class_weights=cwq, **opts)
        want = torch.autograd.grad(ref.sum(), (x, cwq))
        assert float((out - ref).detach().abs().max()) <= TOL
        for a, b in zip(got, want, strict=True):
            assert float((a - b).abs().max()) <= TOL


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_shard_kernels_equal_the_definition(dtype):
    """The per-shard numba kernels (CPU tensors, fast path on) against the definition in torch
    ops (``generic_only``): every option, a strided shard, rows with -inf, nan and a masked
    class, rows long enough for the blocked sums (600 classes); float64 to 1e-12."""
    from infoloss import _fast

    if _fast.get_kernels() is None:
        pytest.skip("numba unavailable")
    dt = getattr(torch, dtype)
    tol = TOL if dtype == "float64" else 2e-6
    g = torch.Generator().manual_seed(4)
    for v in (11, 600):
        wide = torch.randn(3, 5, v + 3, generator=g, dtype=torch.float64) * 4
        wide[1, 2, :] = -float("inf")
        wide[2, 1, 7] = -float("inf")
        wide[0, 4, 5] = float("nan")
        wide[2, 3, :] = 2.5  # ties everywhere
        x0 = wide[..., 1 : v + 1].to(dt)  # rows with a stride of v + 3
        y = torch.randint(0, v, (3, 5), generator=g)
        y[0, :2] = -100
        cw = torch.rand(v, generator=g, dtype=dt) + 0.1
        cw[7] = 0.0
        sw = torch.rand(3, 5, generator=g, dtype=dt) + 0.5
        for eps, z, red, weights in itertools.product(
            (0.0, 0.1), (0.0, 1e-2), ("none", "sum", "mean"), (False, True)
        ):
            opts = dict(ignore_index=-100, label_smoothing=eps, z_loss=z, reduction=red)
            if weights:
                opts.update(class_weights=cw, sample_weights=sw)
            got, want = [], []
            for dest, generic in ((got, False), (want, True)):
                x = x0.clone().requires_grad_()
                ctx = infoloss._config.generic_only() if generic else contextlib.nullcontext()
                with ctx:
                    out = vocab_parallel_cross_entropy(x, y, **opts)
                    gout = torch.linspace(0.5, 1.5, out.numel(), dtype=dt).reshape(out.shape)
                    (out * gout).sum().backward()
                dest += [out.detach(), x.grad]
            for a, b in zip(got, want, strict=True):
                assert a.dtype == b.dtype
                assert torch.equal(torch.isnan(a), torch.isnan(b)), (v, eps, z, red, weights)
                fin = torch.isfinite(b)
                assert torch.equal(fin, torch.isfinite(a))
                d = (a[fin] - b[fin]).abs() / b[fin].abs().clamp(min=1.0)
                assert (float(d.max()) if d.numel() else 0.0) <= tol, (v, eps, z, red, weights)


def test_linear_world_of_one_against_linear_cross_entropy():
    g = torch.Generator().manual_seed(5)
    h = torch.randn(2, 7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(9, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(9, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 9, (2, 7), generator=g)
    y[0, 0] = -100
    with infoloss._config.generic_only():
        ref = infoloss.linear_cross_entropy(h, w, y, bias=b, ignore_index=-100, label_smoothing=0.2)
    ref.backward()
    grads = [t.grad.clone() for t in (h, w, b)]
    for t in (h, w, b):
        t.grad = None
    out = vocab_parallel_linear_cross_entropy(
        h, w, y, bias_shard=b, ignore_index=-100, label_smoothing=0.2, chunk_size=3
    )
    out.backward()
    assert abs(float(out.detach()) - float(ref.detach())) <= TOL
    for t, gr in zip((h, w, b), grads, strict=True):
        assert float((t.grad - gr).abs().max()) <= TOL


def test_local_errors_match_single_device():
    x = torch.zeros(2, 3, dtype=torch.float64)
    y = torch.tensor([0, 1])
    cases = [
        (dict(reduction="avg"), dict(reduction="avg")),
        (dict(z_loss=-1.0), dict(z_loss=-1.0)),
        (dict(ignore_index=1.5), dict(ignore_index=1.5)),
        (dict(sample_weights=torch.ones(3)), dict(sample_weights=torch.ones(3))),
        (dict(class_weights=-torch.ones(3)), dict(class_weights=-torch.ones(3))),
    ]
    for vp, single in cases:
        with pytest.raises(infoloss.InfolossError) as a:
            vocab_parallel_cross_entropy(x, y, **vp)
        with pytest.raises(infoloss.InfolossError) as b:
            infoloss.sparse_softmax_cross_entropy(x, y, **single)
        assert str(a.value) == str(b.value)
    with pytest.raises(infoloss.InfolossTypeError, match="`labels` must hold integer"):
        vocab_parallel_cross_entropy(x, y.double())
    with pytest.raises(infoloss.InfolossTypeError, match=r"`logits_shard` must be a torch\.Tensor"):
        vocab_parallel_cross_entropy(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(infoloss.InfolossError, match=r"`vocab_start` must be a non-negative"):
        vocab_parallel_cross_entropy(x, y, vocab_start=-1)
    with pytest.raises(infoloss.InfolossError, match=r"tile \[0, V\)"):
        vocab_parallel_cross_entropy(x, y, vocab_start=1)
    with pytest.raises(infoloss.InfolossError, match=r"in \[0, 3\) \(the global vocabulary\)"):
        vocab_parallel_cross_entropy(x, torch.tensor([0, 3]))
    with pytest.raises(infoloss.InfolossError, match="`weight_shard` must have shape"):
        vocab_parallel_linear_cross_entropy(x, torch.zeros(4, 2, dtype=torch.float64), y)


@pytest.mark.parametrize("xp_name", ["numpy", "torch"])
def test_weight_total(xp_name):
    """Σ W against a NumPy float64 reference; "sum" / weight_total == "mean"."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, (4, 6))
    y[0, :4] = -100
    cw = rng.uniform(0.1, 2, 5)
    sw = rng.uniform(0.1, 2, (4, 6))
    valid = y != -100
    expected = float(np.sum(np.where(valid, cw[np.where(valid, y, 0)] * sw, 0.0)))
    if xp_name == "torch":
        conv = torch.as_tensor
    else:
        conv = np.asarray
    got = infoloss.weight_total(
        conv(y), ignore_index=-100, class_weights=conv(cw), sample_weights=conv(sw)
    )
    assert abs(float(got) - expected) <= 1e-12 * expected
    assert float(infoloss.weight_total(conv(y), ignore_index=-100)) == float(valid.sum())
    assert float(infoloss.weight_total(conv(y))) == 24.0
    x = conv(rng.normal(size=(4, 6, 5)))
    opts = dict(ignore_index=-100, class_weights=conv(cw), sample_weights=conv(sw))
    s = infoloss.sparse_softmax_cross_entropy(x, conv(y), reduction="sum", **opts)
    m = infoloss.sparse_softmax_cross_entropy(x, conv(y), reduction="mean", **opts)
    assert abs(float(s) / float(infoloss.weight_total(conv(y), **opts)) - float(m)) <= 1e-12
    with pytest.raises(
        infoloss.InfolossError, match=r"`labels` must hold class indices in \[0, 5\)"
    ):
        infoloss.weight_total(conv(np.array([0, 7])), class_weights=conv(cw))
    with pytest.raises(infoloss.InfolossTypeError, match="`labels` must hold integer"):
        infoloss.weight_total(conv(np.array([0.0, 1.0])))


def test_global_helpers_in_one_process():
    y = [torch.tensor([1, -100, 2]), torch.tensor([-100, -100, 0, 1])]
    assert float(global_weight_total(y, ignore_index=-100)) == 4.0
    sw = [torch.tensor([2.0, 5.0, 1.0]), torch.tensor([1.0, 1.0, 1.0, 0.5])]
    assert float(global_weight_total(y, ignore_index=-100, sample_weights=sw)) == 4.5
    with pytest.raises(infoloss.InfolossError, match="one tensor per micro-batch"):
        global_weight_total(y, sample_weights=sw[:1])
    # probability and sigmoid labels: the rules of softmax_cross_entropy / sigmoid_cross_entropy
    t = [torch.tensor([[0.25, 0.75], [1.0, 0.0]]), torch.tensor([[0.5, 0.5]])]
    cw = torch.tensor([2.0, 4.0])
    assert float(global_weight_total(t, kind="softmax", class_weights=cw)) == 3.5 + 2.0 + 3.0
    assert float(global_weight_total(t, kind="sigmoid")) == 6.0
    with pytest.raises(infoloss.InfolossTypeError, match='pass kind="softmax" or "sigmoid"'):
        global_weight_total(t)
    s = torch.tensor(3.0, requires_grad=True)
    out = global_mean(s, torch.tensor(4.0))
    out.backward()
    assert float(out.detach()) == 0.75 and float(s.grad) == 0.25
    assert float(global_mean(torch.tensor(3.0), 0.0)) == 0.0


# --------------------------------------------------------------------------- JAX

_JAX_SCRIPT = textwrap.dedent(
    r"""
    import json, re
    import numpy as np
    import jax, jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    jax.config.update("jax_enable_x64", True)
    import infoloss
    from infoloss.distributed_jax import vocab_parallel_cross_entropy, global_mean

    assert jax.device_count() == 4, jax.devices()
    n, v = 64, 1024
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, v)) * 3
    y = rng.integers(0, v, n); y[:9] = -100
    cw = rng.uniform(0.1, 2.0, v)
    mesh = Mesh(np.array(jax.devices()), ("d",))
    out = {}
    opts = dict(ignore_index=-100, label_smoothing=0.1, z_loss=1e-3, class_weights=jnp.asarray(cw))

    def loss(a, b):
        return infoloss.sparse_softmax_cross_entropy(a, b, reduction="mean", **opts)

    ref = float(loss(jnp.asarray(x), jnp.asarray(y)))
    gref = np.asarray(jax.grad(loss)(jnp.asarray(x), jnp.asarray(y)))
    def collectives(hlo):
        # (op, largest element count of its result) of every collective in the HLO
        found = []
        for line in hlo.splitlines():
            mm = re.search(r"=\s*(.*?)\s(all-reduce|all-gather|all-to-all|reduce-scatter|collective-permute)(-start)?\(", line)
            if mm:
                sizes = [int(np.prod([int(d) for d in dims.split(",") if d])) for dims in re.findall(r"\[([\d,]*)\]", mm.group(1))]
                found.append((mm.group(2), max(sizes or [1])))
        return found

    # the detector finds a gather of the logits when there is one
    replicate = jax.jit(lambda a: jax.lax.with_sharding_constraint(a, NamedSharding(mesh, P())) * 2)
    xv = jax.device_put(jnp.asarray(x), NamedSharding(mesh, P(None, "d")))
    out["detector"] = collectives(replicate.lower(xv).compile().as_text())
    for name, spec in (("vocab", P(None, "d")), ("batch", P("d", None))):
        xs = jax.device_put(jnp.asarray(x), NamedSharding(mesh, spec))
        ys = jax.device_put(jnp.asarray(y), NamedSharding(mesh, P("d") if name == "batch" else P()))
        for what, f in (("value", jax.jit(loss)), ("grad", jax.jit(jax.grad(loss)))):
            hlo = f.lower(xs, ys).compile().as_text()
            gathers = re.findall(r"all-gather[^\n]*", hlo)
            big = [g for g in gathers if re.search(r"f64\[%d,%d\]" % (n, v), g)]
            got = np.asarray(f(xs, ys))
            want = ref if what == "value" else gref
            found = collectives(hlo)
            out[f"{name}_{what}"] = {
                "err": float(np.max(np.abs(got - want))),
                "big_gathers": len(big),
                "collectives": sorted({op for op, _ in found}),
                "largest_collective": max([size for _, size in found] or [0]),
            }

    # shard_map recipe: explicit vocabulary parallelism (each device a column block)
    width = v // 4

    def local(xl, yl):
        start = jax.lax.axis_index("d") * width
        return vocab_parallel_cross_entropy(
            xl, yl, start, axis_name="d", num_classes=v, reduction="mean", **opts)

    f = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(None, "d"), P()), out_specs=P()))
    xs = jax.device_put(jnp.asarray(x), NamedSharding(mesh, P(None, "d")))
    out["shard_map"] = {"err": abs(float(f(xs, jnp.asarray(y))) - ref)}
    g = jax.jit(jax.grad(lambda a, b: f(a, b)))(xs, jnp.asarray(y))
    out["shard_map_grad"] = {"err": float(np.max(np.abs(np.asarray(g) - gref)))}
    hlo = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(None, "d"), P()), out_specs=P())).lower(xs, jnp.asarray(y)).compile().as_text()
    out["shard_map_collectives"] = collectives(hlo)

    # global mean over a batch-sharded (data-parallel) axis with psum
    def dp(xl, yl):
        s = infoloss.sparse_softmax_cross_entropy(xl, yl, reduction="sum", **opts)
        w = infoloss.weight_total(yl, ignore_index=-100, class_weights=opts["class_weights"])
        return global_mean(s, w, axis_name="d")

    fdp = jax.jit(jax.shard_map(dp, mesh=mesh, in_specs=(P("d"), P("d")), out_specs=P()))
    xb = jax.device_put(jnp.asarray(x), NamedSharding(mesh, P("d", None)))
    yb = jax.device_put(jnp.asarray(y), NamedSharding(mesh, P("d")))
    out["psum_mean"] = {"err": abs(float(fdp(xb, yb)) - ref)}
    gdp = jax.jit(jax.grad(lambda a, b: fdp(a, b)))(xb, yb)
    out["psum_mean_grad"] = {"err": float(np.max(np.abs(np.asarray(gdp) - gref)))}
    print("RESULT" + json.dumps(out))
    """
)


_JAX_RESULT: dict[str, object] = {}


@pytest.fixture
def jax_run(runs):
    if runs[1] is None:
        pytest.skip("jax is not installed")
    proc, out, log = runs[1]
    if not _JAX_RESULT:
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"the JAX script timed out after {TIMEOUT} s") from None
        out.seek(0)
        log.seek(0)
        stdout, stderr = out.read().decode(), log.read().decode(errors="replace")
        assert proc.returncode == 0, stderr[-4000:]
        line = next(ln for ln in stdout.splitlines() if ln.startswith("RESULT"))
        _JAX_RESULT.update(json.loads(line[len("RESULT") :]))
    return _JAX_RESULT


@pytest.mark.parametrize("layout", ["vocab", "batch"])
@pytest.mark.parametrize("what", ["value", "grad"])
def test_jax_sharded_equals_unsharded_without_gathering_logits(jax_run, layout, what):
    """jax.jit of the generic loss (and of its gradient) on 4 CPU devices, logits (64, 1024)
    sharded along the vocabulary or the batch: the unsharded result, and no collective in the
    compiled HLO moves more than a row vector (64 values; a gather of the logits would move
    65536, which the detector sees in an explicitly replicated array)."""
    r = jax_run[f"{layout}_{what}"]
    assert r["err"] <= 1e-12, r
    assert r["big_gathers"] == 0, r
    assert r["largest_collective"] <= 64 * 4, r
    assert ("all-gather", 64 * 1024) in [tuple(c) for c in jax_run["detector"]]


def test_jax_shard_map_recipe(jax_run):
    assert jax_run["shard_map"]["err"] <= 1e-12
    assert jax_run["shard_map_grad"]["err"] <= 1e-12
    # the explicit recipe's collectives: the pmax of (64,) and the psum of the stacked (4, 64)
    ops = sorted({tuple(c) for c in jax_run["shard_map_collectives"]})
    assert ops == [("all-reduce", 64), ("all-reduce", 4 * 64)], ops


def test_jax_psum_global_mean(jax_run):
    assert jax_run["psum_mean"]["err"] <= 1e-12
    assert jax_run["psum_mean_grad"]["err"] <= 1e-12
