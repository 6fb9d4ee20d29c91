"""Measures of a joint table (issue 16): mutual information and conditional entropy, and
``infoloss measure --joint``.

References: ``sklearn.metrics.mutual_info_score`` on contingency tables of counts,
``scipy.stats.entropy`` of the marginals and of the flattened table, mpmath (50 digits) near
independence; properties with hypothesis (I = H(X) + H(Y) − H(X,Y) ≥ 0, H(Y) = H(Y|X) + I).
"""

from __future__ import annotations

import json
import math

import mpmath
import numpy as np
import pytest
from _helpers import assert_close, expect
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import entropy

import infoloss as il
from infoloss import InfolossError, InfolossTypeError
from infoloss.cli import main

RNG = np.random.default_rng(4242)
COUNTS = RNG.integers(0, 20, size=(3, 5, 4)).astype(np.float64)  # three tables of 5 x 4
COUNTS[0, 1, :] = 0  # a value of X that never occurs
COUNTS[2, :, 3] = 0  # a value of Y that never occurs
JOINT = COUNTS / COUNTS.sum(axis=(-2, -1), keepdims=True)


def ref_parts(j, base=None):
    """H(X), H(Y), H(X,Y) of one 2-D table with SciPy."""
    hx = entropy(j.sum(axis=1), base=base)
    hy = entropy(j.sum(axis=0), base=base)
    hxy = entropy(j.reshape(-1), base=base)
    return hx, hy, hxy


def test_mutual_information_vs_sklearn_counts():
    from sklearn.metrics import mutual_info_score

    for counts, joint in zip(COUNTS, JOINT, strict=True):
        want = mutual_info_score(None, None, contingency=counts)
        assert float(il.mutual_information(joint)) == pytest.approx(want, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("base", [None, 2])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_joint_measures_vs_scipy(backend, base, dtype):
    j = backend.asarray(JOINT, dtype)
    parts = [ref_parts(t, base) for t in JOINT]
    mi = [hx + hy - hxy for hx, hy, hxy in parts]
    h_y_x = [hxy - hx for hx, _, hxy in parts]
    h_x_y = [hxy - hy for _, hy, hxy in parts]
    tol = {"atol": 1e-6} if dtype == "float32" else {}
    assert_close(il.mutual_information(j, base=base), expect(backend, mi, like=j), **tol)
    assert_close(il.conditional_entropy(j, base=base), expect(backend, h_y_x, like=j), **tol)
    assert_close(
        il.conditional_entropy(j, given=1, base=base), expect(backend, h_x_y, like=j), **tol
    )


def test_joint_axis_and_keepdims(backend):
    moved = np.moveaxis(JOINT, 0, -1)  # (X, Y, batch)
    j = backend.asarray(moved, "float64")
    want = il.mutual_information(backend.asarray(JOINT, "float64"))
    assert_close(il.mutual_information(j, axis=(0, 1)), want)
    # swapping the axes swaps the conditional entropies
    assert_close(
        il.conditional_entropy(j, axis=(1, 0), given=0),
        il.conditional_entropy(backend.asarray(JOINT, "float64"), given=1),
    )
    kd = il.mutual_information(backend.asarray(JOINT, "float64"), keepdims=True)
    assert tuple(kd.shape) == (3, 1, 1)


def test_mutual_information_near_independence():
    """A table a relative 1e-6 from independence: the textbook H(X)+H(Y)-H(X,Y) keeps no
    digit, the divergence form keeps full precision (50-digit reference)."""
    px, py = np.array([0.3, 0.7]), np.array([0.6, 0.4])
    d = 2.0**-20
    j = np.outer(px, py) + np.array([[d, -d], [-d, d]])
    mp_j = [[mpmath.mpf(float(v)) for v in row] for row in j]
    with mpmath.workdps(50):
        rx = [sum(r) for r in mp_j]
        ry = [sum(mp_j[i][k] for i in range(2)) for k in range(2)]
        want = sum(
            mp_j[i][k] * mpmath.log(mp_j[i][k] / (rx[i] * ry[k]))
            for i in range(2)
            for k in range(2)
        )
    got = float(il.mutual_information(j))
    assert got == pytest.approx(float(want), rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.data())
def test_joint_identities(nx, ny, data):
    cells = data.draw(
        st.lists(st.integers(0, 1000), min_size=nx * ny, max_size=nx * ny).filter(
            lambda c: sum(c) > 0
        )
    )
    j = np.array(cells, dtype=np.float64).reshape(nx, ny)
    j = j / j.sum()
    hx, hy, hxy = ref_parts(j)
    mi = float(il.mutual_information(j))
    assert mi >= 0.0
    assert mi == pytest.approx(hx + hy - hxy, abs=1e-12)
    assert mi <= min(hx, hy) + 1e-12
    h_y_x = float(il.conditional_entropy(j))
    h_x_y = float(il.conditional_entropy(j, given=1))
    assert h_y_x >= 0.0 and h_x_y >= 0.0
    assert hy == pytest.approx(h_y_x + mi, abs=1e-12)
    assert hx == pytest.approx(h_x_y + mi, abs=1e-12)


def test_joint_nan_and_jit():
    j = JOINT.copy()
    j[1, 2, 2] = np.nan
    mi = il.mutual_information(j)
    assert np.isnan(mi[1]) and np.all(np.isfinite(mi[[0, 2]]))
    jax = pytest.importorskip("jax")
    bad = JOINT.copy()
    bad[0, 0, 0] = -0.1
    got = jax.jit(lambda t: il.mutual_information(t))(jax.numpy.asarray(bad))
    assert np.isnan(np.asarray(got)[0]) and np.all(np.isfinite(np.asarray(got)[1:]))


@pytest.mark.variants("torch-generic", "jax", reason="the library's autodiff")
def test_mutual_information_is_differentiable(backend):
    if backend.name == "torch":
        import torch

        j = torch.tensor(JOINT[2], requires_grad=True)
        il.mutual_information(j).backward()
        g = j.grad.numpy()
    else:
        import jax

        g = np.asarray(jax.grad(lambda t: il.mutual_information(t))(backend.asarray(JOINT[2])))
    px, py = JOINT[2].sum(1, keepdims=True), JOINT[2].sum(0, keepdims=True)
    live = JOINT[2] > 0
    # d/dp(a,b) of Σ p log(p/r) - p + r, r = p(x) p(y): log(p/r) directly, and through r
    # Σ_y (1 - p(a,y)/r(a,y)) p(y) + Σ_x (1 - p(x,b)/r(x,b)) p(x) = 0 for a table summing to 1
    want = np.log(JOINT[2][live] / (px * py)[live])
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g[live], want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "joint, kwargs, err, match",
    [
        ([0.5, 0.5], {}, InfolossError, r"`joint` must be a table of at least 2 dimensions"),
        ([[0.5, -0.1], [0.6, 0.0]], {}, InfolossError, r"`joint` must hold probabilities"),
        ([[0.5, np.inf], [0.5, 0.0]], {}, InfolossError, r"`joint` must hold probabilities"),
        ([["a", "b"]], {}, InfolossTypeError, r"`joint` must hold real probabilities"),
        (JOINT, {"axis": (1, 1)}, InfolossError, r"`axis` must name two different axes"),
        (JOINT, {"axis": 1}, InfolossError, r"`axis` must be a pair of axes"),
        (JOINT, {"axis": (0, 3)}, InfolossError, r"`axis` must be in \[-3, 3\)"),
        (JOINT, {"base": 1}, InfolossError, r"`base` must be positive, finite and different"),
    ],
)
def test_joint_errors(joint, kwargs, err, match):
    for fn in (il.mutual_information, il.conditional_entropy):
        with pytest.raises(err, match=match):
            fn(joint, **kwargs)


@pytest.mark.parametrize("given_", [2, -1, True, "x", None])
def test_conditional_entropy_given_errors(given_):
    with pytest.raises(InfolossError, match=r"`given` must be 0 \(H\(Y\|X\)"):
        il.conditional_entropy(JOINT, given=given_)


# --------------------------------------------------------------------------- the CLI


def test_cli_measure_joint_counts(capsys, tmp_path):
    f = tmp_path / "counts.csv"
    f.write_text("# counts of (X, Y)\n30,10\n10,50\n", encoding="utf-8")
    assert main(["measure", "--joint", str(f), "--normalize", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    j = np.array([[30.0, 10.0], [10.0, 50.0]]) / 100
    hx, hy, hxy = ref_parts(j, base=2)
    m = out["measures"]
    assert out["unit"] == "bits" and out["joint"]["shape"] == [2, 2]
    assert m["entropy_x"] == pytest.approx(hx, rel=1e-12)
    assert m["entropy_y"] == pytest.approx(hy, rel=1e-12)
    assert m["joint_entropy"] == pytest.approx(hxy, rel=1e-12)
    assert m["mutual_information"] == pytest.approx(hx + hy - hxy, rel=1e-12)
    assert m["conditional_entropy_y_given_x"] == pytest.approx(hxy - hx, rel=1e-12)
    assert m["conditional_entropy_x_given_y"] == pytest.approx(hxy - hy, rel=1e-12)


def test_cli_measure_joint_table(capsys):
    assert main(["measure", "--joint", "0.25,0.25;0.5,0"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:6] == [
        "H(X)    1",
        "H(Y)    0.811278",
        "H(X,Y)  1.5",
        "H(Y|X)  0.5",
        "H(X|Y)  0.688722",
        "I(X;Y)  0.311278",
    ]
    assert "unit: bits" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--joint", "0.2,0.2;0.2,0.2"], "the table sums to 0.8, not 1 (pass --normalize"),
        (["--joint", "0.5,0.5"], "a joint table must be 2-D"),
        (["--joint", "0.5,-0.5;0.5,0.5"], "row 1: entry -0.5 in column 2 is negative"),
        (["--joint", "0,0;0,0", "--normalize"], "all entries are 0"),
        (["--joint", "0.5,0.5;0,0", "--q", "0.5,0.5"], "--q cannot be combined with --joint"),
        (["--joint", "0.5,0.5;0,0", "--axis", "0"], "--axis does not apply to --joint"),
        (["--joint", "0.5,0.5", "--p", "1"], "not allowed with argument"),
        ([], "one of the arguments --p --joint is required"),
    ],
)
def test_cli_measure_joint_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        code = main(["measure", *argv])
        raise SystemExit(code)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_mi_in_bits_matches_nats():
    assert float(il.mutual_information(JOINT[0], base=2)) == pytest.approx(
        float(il.mutual_information(JOINT[0])) / math.log(2), rel=1e-14
    )
