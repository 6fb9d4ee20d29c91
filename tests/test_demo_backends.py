"""``infoloss demo --backend NAME``: the tutorial's experiments on each framework's tensors, beside
the framework's own losses; a one-line error when the framework is missing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _helpers import installed

from infoloss.cli import _replay, main

PEERS = {
    "numpy": ("scipy.special.log_softmax", "scipy.special.log_expit"),
    "torch": ("F.cross_entropy", "F.binary_cross_entropy_with_logits"),
    "jax": (
        "optax.softmax_cross_entropy" if installed("optax") else "jax.nn.log_softmax",
        "optax.sigmoid_binary_cross_entropy" if installed("optax") else "jax.nn.log_sigmoid",
    ),
    "tensorflow": (
        "tf.nn.softmax_cross_entropy_with_logits",
        "tf.nn.sigmoid_cross_entropy_with_logits",
    ),
}


def _call(capsys, *args):
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("backend", list(PEERS))
def test_demo_on_each_framework(capsys, backend):
    pytest.importorskip(_replay.BACKENDS[backend][0])
    rc, out, _ = _call(capsys, "demo", "--json", "--backend", backend)
    assert rc == 0
    r = json.loads(out)["framework"]
    assert r["backend"] == backend
    lib = {"numpy": "numpy", "torch": "torch", "jax": "jax", "tensorflow": "tensorflow"}[backend]
    assert lib in r["tensor_type"] and lib in r["softmax"]["result_type"]
    # the fused losses equal the framework's own (float64) and the NumPy demo's numbers
    base = json.loads(out)
    for key, part in (("softmax", "part2"), ("sigmoid", "part3")):
        e = r[key]
        np.testing.assert_allclose(e["infoloss"], e["framework"], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(e["infoloss"], base[part]["loss"], rtol=1e-12, atol=1e-15)
        assert np.max(np.abs(e["difference"])) < 1e-12
        if backend != "numpy":  # the framework's autodiff through infoloss: the closed form
            np.testing.assert_allclose(e["gradient"], e["closed_form"], rtol=1e-12, atol=1e-15)
    rc, text, _ = _call(capsys, "demo", "--backend", backend)
    assert rc == 0
    _, plain, _ = _call(capsys, "demo")
    assert text.startswith(plain.rstrip("\n"))  # the usual demo, then the replay
    for name in PEERS[backend]:
        assert name in text
    assert f"The tutorial on {backend}" in text


def test_demo_backend_missing_framework_is_one_line(capsys, monkeypatch):
    monkeypatch.setitem(
        _replay.BACKENDS, "tensorflow", ("no_such_framework_xyz", "infoloss[tensorflow]")
    )
    rc, out, err = _call(capsys, "demo", "--backend", "tensorflow")
    assert rc == 2 and out == ""
    assert err.strip().count("\n") == 0
    assert err.startswith("infoloss demo: error: --backend tensorflow needs no_such_framework_xyz")
    assert 'pip install "infoloss[tensorflow]"' in err


def test_demo_backend_choices(capsys):
    rc, _, err = _call(capsys, "demo", "--backend", "mxnet")
    assert rc == 2 and "invalid choice" in err
