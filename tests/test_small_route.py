"""The router's size threshold (issue 17): NumPy problems below ``_config.FAST_MIN_ELEMENTS``
elements take the generic code, so that a first call on a tiny input never waits for a kernel to
compile; ``_config.always_fast()`` and ``INFOLOSS_FAST_MIN_ELEMENTS`` send them to the kernels.

The rest of the suite runs with ``INFOLOSS_FAST_MIN_ELEMENTS=0`` (tests/conftest.py); these
tests remove it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _helpers import assert_close

import infoloss
from infoloss import _config, _fast, _router

pytestmark = pytest.mark.skipif(_fast.get_kernels() is None, reason="numba unavailable")

SRC = str(Path(infoloss.__file__).resolve().parents[1])


@pytest.fixture
def threshold(monkeypatch):
    """The default threshold (the session's override removed); its value."""
    monkeypatch.delenv("INFOLOSS_FAST_MIN_ELEMENTS", raising=False)
    return _config.FAST_MIN_ELEMENTS


@pytest.fixture
def kernel_checks(monkeypatch):
    """Counts how often the router asks whether the kernels are there (after the size test)."""
    calls = []
    real = _router._kernels_available

    def counting():
        calls.append(1)
        return real()

    monkeypatch.setattr(_router, "_kernels_available", counting)
    return calls


def test_threshold_is_read_from_the_first_array(threshold, kernel_checks):
    small = np.zeros((1, threshold - 1), np.float32)
    large = np.zeros((1, threshold), np.float32)
    assert not _router.fast_numpy(small)
    assert kernel_checks == []  # numba is not even asked for
    assert _router.fast_numpy(large)
    assert _router.fast_numpy(small, large) is False  # the first array's size decides
    with _config.always_fast():
        assert _router.fast_numpy(small)
        with _config.generic_only():  # the switch off still wins
            assert not _router.fast_numpy(small)
    assert not _router.fast_numpy(small)  # the context is left


@pytest.mark.parametrize(("env", "small_fast"), [("0", True), ("3", True), ("junk", False)])
def test_threshold_from_the_environment(monkeypatch, env, small_fast):
    monkeypatch.setenv("INFOLOSS_FAST_MIN_ELEMENTS", env)
    assert _router.fast_numpy(np.zeros((1, 3))) is small_fast
    assert _router.fast_numpy(np.zeros((1, 2))) is (env == "0")


def test_always_fast_is_per_thread(threshold):
    from _helpers import run_in_threads

    seen = []
    with _config.always_fast():
        run_in_threads(lambda i: seen.append(_router.fast_numpy(np.zeros(3))), 2)
        assert _router.fast_numpy(np.zeros(3))
    assert seen == [False, False]


def _demo_calls(x, p, yb, y):
    vg = infoloss.value_and_grad
    return [
        infoloss.softmax(x),
        infoloss.log_softmax(x),
        infoloss.logsumexp(x, axis=-1),
        *vg(infoloss.softmax_cross_entropy)(x, p, reduction="mean"),
        *vg(infoloss.sparse_softmax_cross_entropy)(x, y),
        *vg(infoloss.sigmoid_cross_entropy)(x, yb),
        *vg(infoloss.softmax_entropy)(x),
        infoloss.softmax_kl_divergence(x, x[::-1]),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_inputs_give_the_kernels_results(threshold, kernel_checks, dtype):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((4, 3)) * 10).astype(dtype)
    x[1, 0] = -np.inf  # a masked class
    p = rng.random((4, 3)).astype(dtype)
    p[1, 0] = 0
    p /= p.sum(axis=1, keepdims=True)
    yb = (rng.random((4, 3)) < 0.5).astype(dtype)
    y = np.array([2, 1, 0, 2])
    generic = _demo_calls(x, p, yb, y)
    assert kernel_checks == []  # every call took the generic code
    with _config.always_fast():
        fast = _demo_calls(x, p, yb, y)
    assert len(kernel_checks) > 0
    for g, f in zip(generic, fast, strict=True):
        assert_close(g, f)


def test_the_demo_does_not_import_numba(tmp_path):
    """``infoloss demo``'s problems are 1 x 3: in a fresh process with an empty numba cache,
    nothing is compiled (numba is never imported) and the numbers are those of the kernels."""
    script = (
        "import json, sys\n"
        "from infoloss.cli._demo import compute\n"
        "from infoloss.cli._common import dumps_json\n"
        "r = compute(1)\n"
        "print(json.dumps({'numba': 'numba' in sys.modules, 'r': json.loads(dumps_json(r))}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "INFOLOSS_FAST_MIN_ELEMENTS"}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["NUMBA_CACHE_DIR"] = str(tmp_path)

    def run(extra):
        out = subprocess.run(
            [sys.executable, "-c", script],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        ).stdout
        return json.loads(out)

    small = run({})
    assert small["numba"] is False
    kernels = run({"INFOLOSS_FAST_MIN_ELEMENTS": "0"})
    assert kernels["numba"] is True
    for part in ("part2", "part3", "gradients"):
        for key, value in small["r"][part].items():
            if isinstance(value, list) or isinstance(value, float):
                assert_close(
                    np.asarray(value, dtype=float),
                    np.asarray(kernels["r"][part][key], dtype=float),
                    atol=1e-15,
                    err_msg=f"{part}.{key}",
                )
