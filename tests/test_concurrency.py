"""The fast path under fork, Python threads and label races (issue 11, items 7 and 8).

Each scenario is a function of this module. The ones that could kill or hang a process (a forked
child of a GNU OpenMP parent, the workqueue layer, a kernel reading out of bounds) run in a fresh
Python process that imports this module (:func:`_run`), so that a crash or a hang is a test
failure with the child's output, not a dead or blocked pytest. Sizes are small enough for a few
seconds per scenario once numba's disk cache is warm (the pytest process warms it).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

import numpy as np
import pytest
from _helpers import installed, run_in_threads

import infoloss

# No kernel import at module level: a child process imports this module with an invalid
# NUMBA_NUM_THREADS (see test_invalid_numba_num_threads_is_an_infoloss_error).
pytestmark = pytest.mark.skipif(not installed("numba"), reason="numba unavailable")

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
# generous: a child whose numba cache is cold compiles for tens of seconds; a hang fails after it
CHILD_TIMEOUT = 300.0
WAIT = 120.0  # a pool's answer

vg_sparse = infoloss.value_and_grad(infoloss.sparse_softmax_cross_entropy)
vg_sigmoid = infoloss.value_and_grad(infoloss.sigmoid_cross_entropy)

# (rows, classes): under the parallel threshold (serial twin of the kernel); over it (parallel
# rows); over it with short rows (tiles, per-thread scratch by thread id)
SHAPES = [(8, 10), (300, 1000), (20000, 10)]


def _data(k: int) -> tuple[np.ndarray, np.ndarray]:
    n, c = SHAPES[k]
    rng = np.random.default_rng(100 + k)
    return rng.standard_normal((n, c)).astype(np.float32), rng.integers(0, c, n)


def _digest(k: int) -> tuple[float, str]:
    """The fast path's mean loss and gradient for ``SHAPES[k]``: (value, sha256 of the gradient)."""
    x, y = _data(k)
    v, g = vg_sparse(x, y, reduction="mean")
    return float(v), hashlib.sha256(np.ascontiguousarray(g).tobytes()).hexdigest()


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh Python process (this directory on its path, ``env`` added)."""
    e = dict(os.environ)
    e.pop("PYTEST_CURRENT_TEST", None)
    e.update(env)
    prelude = f"import sys\nsys.path.insert(0, {TESTS_DIR!r})\n"
    try:
        return subprocess.run(
            [sys.executable, "-c", prelude + textwrap.dedent(code)],
            env=e,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired as ex:
        pytest.fail(f"child process hung ({CHILD_TIMEOUT} s): {ex.stdout!r} {ex.stderr!r}")


def _check(r: subprocess.CompletedProcess[str], marker: str) -> None:
    assert r.returncode == 0, f"exit code {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert marker in r.stdout, r.stdout + r.stderr


def _layer_unavailable(r: subprocess.CompletedProcess[str]) -> bool:
    return r.returncode != 0 and "could not start its thread pool" in r.stderr


# --------------------------------------------------------------------------- scenarios


def _child_small_call_with_the_guard_off(conn: Any) -> None:
    from infoloss._fast import kernels as K

    K._launch._serial_only = (
        False  # what must keep a small call out of any parallel region is _launch
    )
    conn.send(_digest(0))


def fork_scenario() -> None:
    """Fast-path calls here (the parent), then the same calls in children forked by
    ``multiprocessing.Pool``, ``ProcessPoolExecutor`` and ``Process``: equal results, no hang."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from infoloss._fast import kernels as K

    expected = [_digest(k) for k in range(len(SHAPES))]
    ks = list(range(len(SHAPES))) * 2
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        got = pool.map_async(_digest, ks).get(WAIT)
    assert got == [expected[k] for k in ks], "multiprocessing.Pool"
    with ProcessPoolExecutor(2, mp_context=ctx) as ex:
        got = list(ex.map(_digest, ks, timeout=WAIT))
    assert got == [expected[k] for k in ks], "ProcessPoolExecutor"
    # a small problem enters no parallel region even where the layer is not fork-safe
    a, b = ctx.Pipe()
    p = ctx.Process(target=_child_small_call_with_the_guard_off, args=(b,))
    p.start()
    assert a.poll(WAIT), "Process: no answer"
    assert a.recv() == expected[0]
    p.join(WAIT)
    assert p.exitcode == 0, p.exitcode
    print("fork ok", K.threading_layer())


def _thread_cases() -> list[Callable[[], tuple[np.ndarray, ...]]]:
    """Fast-path calls over every route (serial twin, parallel rows, short-row tiles, the
    streaming in-place gradient kernel, sigmoid's per-thread scratch, softmax)."""
    cases: list[Callable[[], tuple[np.ndarray, ...]]] = []
    for k in range(len(SHAPES)):
        x, y = _data(k)
        cases.append(lambda x=x, y=y: vg_sparse(x, y, reduction="mean"))
    x, y = _data(1)

    def in_place(x: np.ndarray = x, y: np.ndarray = y) -> tuple[np.ndarray, ...]:
        buf = x.copy()
        return vg_sparse(buf, y, reduction="sum", out=buf)

    cases.append(in_place)
    t = (np.random.default_rng(7).random(x.shape) < 0.3).astype(np.float32)
    cases.append(lambda x=x, t=t: vg_sigmoid(x, t, reduction="mean"))
    cases.append(lambda x=x: (infoloss.log_softmax(x),))
    return cases


def thread_scenario(threads: int = 4, rounds: int = 6) -> None:
    """Several Python threads run all the cases at once (rotated, so that large and small calls
    overlap): every result equals the one computed serially first."""
    cases = _thread_cases()
    refs = [tuple(np.array(a) for a in case()) for case in cases]
    problems: list[str] = []

    def work(i: int) -> None:
        try:
            for r in range(rounds):
                for j in range(len(cases)):
                    k = (i + j + r) % len(cases)
                    got = cases[k]()
                    if not all(np.array_equal(a, b) for a, b in zip(got, refs[k], strict=True)):
                        problems.append(f"thread {i}, round {r}: case {k} differs")
        except Exception as e:  # pragma: no cover - reported below
            problems.append(f"thread {i}: {e!r}")

    run_in_threads(work, threads)
    assert not problems, problems
    print("threads ok")


def label_race_scenario(seconds: float = 2.0) -> None:
    """A thread keeps flipping labels to huge and negative values and back while this thread
    calls the loss: Python errors are allowed, a crash (out-of-bounds access) is not."""
    sys.setswitchinterval(1e-5)
    rng = np.random.default_rng(5)
    cases = []
    for n, c, kw in [
        (8, 10, {}),
        (300, 1000, {}),
        (20000, 10, {}),
        (300, 1000, {"ignore_index": -100}),
        (2000, 200, {"in_place": True}),
    ]:
        cases.append((rng.standard_normal((n, c)).astype(np.float32), rng.integers(0, c, n), kw))
    stop = threading.Event()

    def flip() -> None:
        i = 0
        while not stop.is_set():
            for _, y, _ in cases:
                j = (i * 7919) % y.size
                y[j::97] = (1 << 40) if i & 1 else -(1 << 40)
                y[j::97] = j % 10
            i += 1

    flipper = threading.Thread(target=flip, daemon=True)
    flipper.start()
    calls = errors = 0
    t0 = time.perf_counter()
    try:
        while time.perf_counter() - t0 < seconds:
            for x, y, kw in cases:
                opts = dict(kw)
                out = x.copy() if opts.pop("in_place", False) else None
                try:
                    if out is None:
                        vg_sparse(x, y, reduction="mean", **opts)
                    else:
                        vg_sparse(out, y, reduction="mean", out=out, **opts)
                except (infoloss.InfolossError, IndexError):
                    errors += 1
                calls += 1
    finally:
        stop.set()
        flipper.join()
    print(f"race ok: {calls} calls, {errors} Python errors")


# --------------------------------------------------------------------------- tests


def test_default_layer_is_tbb_when_the_wheel_is_installed():
    from infoloss._fast import kernels as K

    try:
        metadata.distribution("tbb")
    except metadata.PackageNotFoundError:
        pytest.skip("the tbb wheel is not installed")
    if os.environ.get("NUMBA_THREADING_LAYER", "default") != "default":
        pytest.skip("NUMBA_THREADING_LAYER is set")
    assert K.threading_layer() == "tbb"


def test_fork_children_after_fast_path_calls():
    """Default settings: Pool(2).map, ProcessPoolExecutor (fork) and Process after fast-path
    calls in the parent (before the fix the children were killed and the Pool hung)."""
    _check(_run("import test_concurrency as t\nt.fork_scenario()"), "fork ok")


@pytest.mark.parametrize("layer", ["omp", "workqueue"])
def test_other_threading_layers_under_threads_and_fork(layer):
    """An explicit NUMBA_THREADING_LAYER is respected and kept safe: GNU OpenMP (not fork-safe:
    forked children run the kernels serially) and workqueue (not thread-safe: one parallel
    region at a time)."""
    r = _run(
        "import test_concurrency as t\nt.thread_scenario()\nt.fork_scenario()",
        NUMBA_THREADING_LAYER=layer,
    )
    if _layer_unavailable(r):
        pytest.skip(f"numba's {layer} layer is unavailable here")
    _check(r, f"fork ok {layer}")
    assert "threads ok" in r.stdout


def test_threads_under_the_default_layer():
    thread_scenario()


def test_pytorch_dataloader_workers():
    if not installed("torch"):
        pytest.skip("torch not installed")
    code = """
    import torch
    from torch.utils.data import DataLoader, Dataset
    import test_concurrency as t

    expected = [t._digest(k) for k in range(len(t.SHAPES))]

    class Calls(Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return t._digest(i % len(t.SHAPES))

    loader = DataLoader(
        Calls(), batch_size=None, num_workers=2, multiprocessing_context="fork", timeout=t.WAIT
    )
    got = [tuple(item) for item in loader]  # (the loader's conversion makes lists)
    assert got == [expected[i % len(t.SHAPES)] for i in range(6)], got
    print("loader ok")
    """
    _check(_run(code), "loader ok")


def test_invalid_numba_num_threads_is_an_infoloss_error():
    code = """
    import os
    import numpy as np
    import infoloss

    x = np.zeros((8, 10), np.float32)
    y = np.zeros(8, np.int64)
    for v in ["abc", "0", "-3", "", "2.5"]:
        os.environ["NUMBA_NUM_THREADS"] = v
        try:
            infoloss.sparse_softmax_cross_entropy(x, y)
        except infoloss.InfolossError as e:
            assert "`NUMBA_NUM_THREADS`" in str(e) and repr(v) in str(e), str(e)
        else:
            raise AssertionError(f"no error for NUMBA_NUM_THREADS={v!r}")
    os.environ["NUMBA_NUM_THREADS"] = "1"  # fixed before numba's import: the fast path runs
    print("value", float(infoloss.sparse_softmax_cross_entropy(x, y, reduction="mean")))
    """
    r = _run(code)
    _check(r, "value 2.302585")


def test_labels_changed_during_calls_never_crash():
    r = _run("import test_concurrency as t\nt.label_race_scenario()")
    assert r.returncode == 0, f"exit code {r.returncode} (-11: segfault)\n{r.stdout}\n{r.stderr}"
    assert "race ok" in r.stdout


@pytest.mark.parametrize("ignore_index", [None, -100, 3])
@pytest.mark.parametrize("bad", ["C", "-1", "huge", "-huge"])
def test_kernel_rechecks_the_labels_it_indexes_with(bad, ignore_index):
    """The sparse kernel wrapper checks its private copy of the labels (here handed out-of-range
    labels directly, as a race would): an error naming the position, no out-of-bounds access."""
    from infoloss._fast import kernels as K

    rng = np.random.default_rng(3)
    for n, c in [(8, 10), (300, 1000)]:
        x = rng.standard_normal((n, c)).astype(np.float32)
        y = rng.integers(0, c, n)
        if ignore_index is not None:
            y[::3] = ignore_index
        y[5] = {"C": c, "-1": -1, "huge": 1 << 40, "-huge": -(1 << 40)}[bad]
        with pytest.raises(infoloss.InfolossError, match=r"found -?\d+ at position \(5,\)"):
            K.sparse_softmax_ce(x, y, None, None, ignore_index, 0.0, 0.0, 1.0)
        y[5] = 0
        loss, _ = K.sparse_softmax_ce(x, y, None, None, ignore_index, 0.0, 0.0, 1.0)
        assert np.isfinite(loss).all()
