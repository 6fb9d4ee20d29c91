"""Tests of the ``infoloss`` command (issue 5).

Each subcommand runs once through the real entry point in a subprocess (``python -m infoloss.cli``,
the module the console script calls); the rest runs in-process through ``main([...])``. Printed
numbers are checked against the library, ``--json`` output is parsed, bad input must exit 2 with
one line on stderr and nothing on stdout, and ``--plot`` must write a PNG that matplotlib reads.

Issue 11: bad, truncated, huge or endless input files and out-of-range sizes are refused with one
line and exit 2 before any work; a bug in infoloss is a traceback with exit 1, never a "user
error"; ``--plot`` replaces its target atomically (a failed or interrupted save leaves the old
file and no temporary behind).
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import select
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import infoloss
from infoloss.cli import main
from infoloss.cli._demo import network

SRC = str(Path(infoloss.__file__).resolve().parents[1])


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the command in a fresh interpreter, as a user would."""
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "infoloss.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def call(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``main(args)`` in-process; return (exit code, stdout, stderr)."""
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, out: str, err: str, *fragments: str) -> None:
    assert rc == 2
    assert out == "", "nothing may be printed on stdout when the input is bad"
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.?\d*(?:e[-+]?\d+)?", text)]


def assert_png(path: Path) -> None:
    import matplotlib.image as mpimg

    assert path.is_file() and path.stat().st_size > 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


# --------------------------------------------------------------------------- the command itself


def test_help_lists_every_subcommand_subprocess():
    r = run_cli("--help")
    assert r.returncode == 0, r.stderr
    for cmd in ("demo", "measure", "train", "bench"):
        assert re.search(rf"^\s+{cmd}\s", r.stdout, re.M), cmd
    assert 'pip install "infoloss[cli]"' in r.stdout


@pytest.mark.parametrize("command", ["demo", "measure", "train"])
def test_subcommand_help(capsys, command):
    rc, out, _ = call(capsys, command, "--help")
    assert rc == 0
    assert out.startswith(f"usage: infoloss {command}")
    assert "--json" in out


def test_unknown_command_and_missing_command(capsys):
    assert_one_line_error(*call(capsys, "frobnicate"), "infoloss: error:", "invalid choice")
    assert_one_line_error(*call(capsys), "infoloss: error:")


def test_version(capsys):
    rc, out, _ = call(capsys, "--version")
    assert rc == 0 and out.startswith("infoloss ")


def test_usage_error_is_one_line(capsys):
    assert_one_line_error(
        *call(capsys, "demo", "--seed", "x"), "infoloss demo: error:", "--seed", "invalid int"
    )


# --------------------------------------------------------------------------- demo


def test_demo_subprocess_prints_the_tutorial():
    r = run_cli("demo")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for label in (
        "output before softmax activation",
        "after the softmax mapping",
        "cross-entropy loss",
        "the sun will not explode tomorrow",
        "the sun will explode tomorrow",
        "softmax_cross_entropy(labels=label, logits=h0)",
        "sigmoid_cross_entropy(labels=label, logits=h0)",
        "value_and_grad(softmax_cross_entropy)",
    ):
        assert label in out, label
    # The numbers printed are the library's, for the default seed 1.
    h0 = network(1)["h0"]
    label = np.array([[0.0, 0.0, 1.0]])
    loss = float(infoloss.softmax_cross_entropy(labels=label, logits=h0)[0])
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("cross-entropy loss:"))
    assert numbers(line)[-1] == pytest.approx(loss, rel=1e-7)
    line = next(ln for ln in out.splitlines() if "output before softmax" in ln)
    np.testing.assert_allclose(numbers(line.split(":", 1)[1]), h0[0], rtol=1e-5)
    line = next(ln for ln in out.splitlines() if "after the softmax mapping" in ln)
    np.testing.assert_allclose(numbers(line.split(":", 1)[1]), infoloss.softmax(h0)[0], rtol=1e-5)
    line = next(ln for ln in out.splitlines() if "I(B)" in ln)
    assert numbers(line)[0] == pytest.approx(float(infoloss.information(1e-6, base=2)), rel=1e-5)


def test_docs_show_the_real_demo_output(capsys):
    """docs/cli.md pastes the output of `infoloss demo`; it must stay the command's output."""
    doc = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
    if not doc.is_file():
        pytest.skip("docs/cli.md is not beside the tests")
    block = doc.read_text(encoding="utf-8").split("$ infoloss demo\n", 1)[1].split("```", 1)[0]
    rc, out, _ = call(capsys, "demo")
    assert rc == 0

    def stable(text: str) -> list[str]:  # the last-digit rounding differences may vary
        return [ln for ln in text.strip().splitlines() if "difference" not in ln]

    assert stable(block) == stable(out)


def test_demo_json_matches_the_library(capsys):
    rc, out, _ = call(capsys, "demo", "--json")
    assert rc == 0
    d = json.loads(out)
    assert d["seed"] == 1
    net = network(1)
    X, W = np.array(d["network"]["X"]), np.array(d["network"]["W"])
    np.testing.assert_array_equal(X, net["X"])
    np.testing.assert_array_equal(W, net["W"])
    assert X.shape == (1, 16) and W.shape == (16, 3) and d["network"]["b"] == [1.0, 1.0, 1.0]
    h0 = X @ W + 1.0

    p1 = d["part1"]
    p, q = np.array(p1["p_real"]), np.array(p1["q_pred"])
    assert p1["entropy_p_bits"] == pytest.approx(float(infoloss.entropy(p, base=2)))
    assert p1["kl_divergence_bits"] == pytest.approx(float(infoloss.kl_divergence(p, q, base=2)))
    assert p1["cross_entropy_bits"] == pytest.approx(float(infoloss.cross_entropy(p, q, base=2)))
    assert abs(p1["identity_difference"]) < 1e-12
    np.testing.assert_allclose(p1["information_bits"], -np.log2(p))
    np.testing.assert_allclose(p1["information_nats"], -np.log(p))

    p2 = d["part2"]
    assert p2["label"] == [[0.0, 0.0, 1.0]]
    np.testing.assert_allclose(p2["logits"], h0)
    sm = np.exp(h0 - h0.max()) / np.exp(h0 - h0.max()).sum()
    np.testing.assert_allclose(p2["softmax"], sm, rtol=1e-12)
    np.testing.assert_allclose(p2["loss"], -np.log(sm[:, 2]), rtol=1e-10)
    np.testing.assert_allclose(p2["loss"], p2["loss_from_definition"], rtol=1e-10)

    p3 = d["part3"]
    assert p3["label"] == [[1.0, 0.0, 1.0]]
    sg = 1 / (1 + np.exp(-h0))
    np.testing.assert_allclose(p3["sigmoid"], sg, rtol=1e-12)
    y = np.array(p3["label"])
    textbook = -(y * np.log(sg) + (1 - y) * np.log(1 - sg))
    np.testing.assert_allclose(p3["loss"], textbook, rtol=1e-6)
    np.testing.assert_allclose(p3["loss"], p3["loss_from_definition"], rtol=1e-6)

    g = d["gradients"]
    np.testing.assert_allclose(g["softmax_cross_entropy"], sm - np.array(p2["label"]), atol=1e-12)
    np.testing.assert_allclose(g["sigmoid_cross_entropy"], sg - y, atol=1e-12)
    assert g["softmax_max_abs_difference"] < 1e-12
    assert g["sigmoid_max_abs_difference"] < 1e-12


def test_demo_seed_and_dtype(capsys):
    _, out1, _ = call(capsys, "demo", "--json", "--seed", "7")
    _, out2, _ = call(capsys, "demo", "--json", "--seed", "7")
    _, out3, _ = call(capsys, "demo", "--json", "--seed", "8")
    assert out1 == out2 and out1 != out3
    d = json.loads(out1)
    np.testing.assert_allclose(d["part2"]["logits"], network(7)["h0"])
    rc, out, _ = call(capsys, "demo", "--dtype", "float32")
    assert rc == 0 and "float32" in out


def test_demo_plot_writes_png(capsys, tmp_path):
    path = tmp_path / "demo.png"
    rc, out, _ = call(capsys, "demo", "--plot", str(path))
    assert rc == 0
    assert f"wrote {path}" in out
    assert_png(path)


def test_demo_plot_bad_path(capsys, tmp_path):
    missing = tmp_path / "no" / "such" / "dir.png"
    assert_one_line_error(*call(capsys, "demo", "--plot", str(missing)), "does not exist")
    assert_one_line_error(
        *call(capsys, "demo", "--plot", str(tmp_path / "x.docx")), "unknown image format"
    )


def test_demo_needs_only_numpy_but_plot_needs_matplotlib(capsys, monkeypatch, tmp_path):
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    rc, out, _ = call(capsys, "demo")
    assert rc == 0 and "after the softmax mapping" in out
    rc, out, err = call(capsys, "demo", "--plot", str(tmp_path / "d.png"))
    assert_one_line_error(rc, out, err, "matplotlib", 'pip install "infoloss[cli]"')
    assert not (tmp_path / "d.png").exists()


# --------------------------------------------------------------------------- measure


def test_measure_inline_subprocess():
    r = run_cli("measure", "--p", "0.5,0.5", "--q", "0.9,0.1")
    assert r.returncode == 0, r.stderr
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    row = next(ln for ln in r.stdout.splitlines() if ln.strip().startswith("1 "))
    expected = [
        1,
        infoloss.entropy(p, base=2),
        infoloss.entropy(q, base=2),
        infoloss.cross_entropy(p, q, base=2),
        infoloss.kl_divergence(p, q, base=2),
        infoloss.js_divergence(p, q, base=2),
    ]
    np.testing.assert_allclose(numbers(row), np.array(expected, dtype=float), rtol=1e-5)
    assert "D_KL(P||Q)" in r.stdout and "bits" in r.stdout


@pytest.fixture
def files(tmp_path):
    p = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [0.1, 0.1, 0.8]])
    q = np.array([[0.25, 0.25, 0.5], [0.2, 0.3, 0.5], [0.6, 0.2, 0.2], [0.3, 0.3, 0.4]])
    csv = tmp_path / "p.csv"
    csv.write_text(
        "# P, one distribution per row\n" + "\n".join(",".join(map(str, r)) for r in p) + "\n\n"
    )
    txt = tmp_path / "q.txt"
    txt.write_text("\n".join("  ".join(map(str, r)) for r in q) + "\n")
    npy = tmp_path / "q.npy"
    np.save(npy, q)
    return {"p": p, "q": q, "csv": csv, "txt": txt, "npy": npy, "dir": tmp_path}


@pytest.mark.parametrize("base", ["2", "e", "10"])
def test_measure_files_json(capsys, files, base):
    p, q = files["p"], files["q"]
    lib_base = {"2": 2, "e": None, "10": 10}[base]
    for qfile in (files["txt"], files["npy"]):
        rc, out, err = call(
            capsys,
            "measure",
            "--p",
            str(files["csv"]),
            "--q",
            str(qfile),
            "--base",
            base,
            "--json",
        )
        assert rc == 0, err
        d = json.loads(out)
        assert d["unit"] == {"2": "bits", "e": "nats", "10": "hartleys"}[base]
        assert [r["row"] for r in d["rows"]] == [1, 2, 3, 4]
        for key, fn in [
            ("cross_entropy", infoloss.cross_entropy),
            ("kl_divergence", infoloss.kl_divergence),
            ("js_divergence", infoloss.js_divergence),
        ]:
            np.testing.assert_allclose(
                [r[key] for r in d["rows"]], fn(p, q, base=lib_base), rtol=1e-12
            )
        np.testing.assert_allclose(
            [r["entropy_p"] for r in d["rows"]], infoloss.entropy(p, base=lib_base), rtol=1e-12
        )
        np.testing.assert_allclose(
            [r["entropy_q"] for r in d["rows"]], infoloss.entropy(q, base=lib_base), rtol=1e-12
        )
    # Row 2 is the same distribution in both files.
    assert d["rows"][1]["kl_divergence"] == 0.0


def test_measure_table_and_entropy_only(capsys, files):
    rc, out, _ = call(capsys, "measure", "--p", str(files["csv"]))
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split() == ["row", "H(P)"]
    values = [numbers(ln)[1] for ln in lines[2:6]]
    np.testing.assert_allclose(values, infoloss.entropy(files["p"], base=2), rtol=1e-5)


def test_measure_single_q_row_broadcasts(capsys, files):
    rc, out, _ = call(capsys, "measure", "--p", str(files["csv"]), "--q", "0.2,0.3,0.5", "--json")
    assert rc == 0
    d = json.loads(out)
    q = np.array([0.2, 0.3, 0.5])
    np.testing.assert_allclose(
        [r["kl_divergence"] for r in d["rows"]],
        infoloss.kl_divergence(files["p"], q, base=2),
    )


def test_measure_infinite_kl_is_reported(capsys):
    rc, out, _ = call(capsys, "measure", "--p", "0.5,0.5", "--q", "1,0", "--json")
    assert rc == 0
    row = json.loads(out)["rows"][0]
    assert row["kl_divergence"] == "inf" and row["cross_entropy"] == "inf"
    assert row["js_divergence"] == pytest.approx(
        float(infoloss.js_divergence([0.5, 0.5], [1, 0], base=2))
    )
    rc, out, _ = call(capsys, "measure", "--p", "0.5,0.5", "--q", "1,0")
    assert rc == 0 and "inf" in out


def test_measure_axis_and_normalize(capsys, files):
    counts = files["dir"] / "counts.npy"
    np.save(counts, (files["p"] * 10).T)  # columns are distributions, unnormalised
    rc, out, err = call(capsys, "measure", "--p", str(counts), "--axis", "0")
    assert_one_line_error(rc, out, err, "counts.npy", "column 1", "sums to 10", "--normalize")
    rc, out, _ = call(capsys, "measure", "--p", str(counts), "--axis", "0", "--normalize", "--json")
    assert rc == 0
    np.testing.assert_allclose(
        [r["entropy_p"] for r in json.loads(out)["rows"]], infoloss.entropy(files["p"], base=2)
    )


def test_measure_higher_dimensional_npy(capsys, tmp_path):
    rng = np.random.default_rng(0)
    a = rng.random((2, 3, 4))
    a /= a.sum(axis=1, keepdims=True)  # distributions along axis 1
    path = tmp_path / "a.npy"
    np.save(path, a)
    rc, out, _ = call(capsys, "measure", "--p", str(path), "--axis", "1", "--json")
    assert rc == 0
    rows = json.loads(out)["rows"]
    assert [r["index"] for r in rows][:2] == [[0, 0], [0, 1]] and len(rows) == 8
    expected = infoloss.entropy(a, axis=1, base=2).ravel()
    np.testing.assert_allclose([r["entropy_p"] for r in rows], expected)
    rc, out, _ = call(capsys, "measure", "--p", str(path), "--axis", "1")
    assert rc == 0 and out.splitlines()[0].split()[0] == "index"


def test_measure_inline_rows(capsys):
    rc, out, _ = call(capsys, "measure", "--p", "0.9 0.1; 0.5 0.5", "--json")
    assert rc == 0
    rows = json.loads(out)["rows"]
    np.testing.assert_allclose(
        [r["entropy_p"] for r in rows], infoloss.entropy([[0.9, 0.1], [0.5, 0.5]], base=2)
    )


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ("0.5,0.5\n0.2,0.3,0.5\n", ["row 2", "ragged"]),
        ("0.5,0.5\n\n0.5,abc\n", ["row 2 (line 3)", "'abc'", "not a number"]),
        ("0.5,0.5\n1.5,-0.5\n", ["row 2", "-0.5", "negative"]),
        ("0.5,0.5\n0.5,nan\n", ["row 2", "not finite"]),
        ("0.5,,0.5\n", ["row 1", "empty field"]),
        ("0.5,0.5\n0.6,0.6\n", ["row 2", "sums to 1.2"]),
        ("0.5,0.5\n0,0\n", ["row 2", "all entries are 0"]),
        ("# nothing\n\n", ["no numbers"]),
    ],
)
def test_measure_bad_text_file(capsys, tmp_path, content, fragments):
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    rc, out, err = call(capsys, "measure", "--p", str(bad), "--q", "0.5,0.5")
    assert_one_line_error(rc, out, err, "infoloss measure: error:", str(bad), *fragments)


def test_measure_bad_inputs(capsys, files, tmp_path):
    csv = str(files["csv"])
    assert_one_line_error(
        *call(capsys, "measure", "--p", csv, "--q", "0.5,0.5"),
        "do not match",
        "3 classes",
        "has 2",
    )
    two = tmp_path / "two.csv"
    two.write_text("0.5,0.5,0\n0.5,0,0.5\n")
    assert_one_line_error(
        *call(capsys, "measure", "--p", csv, "--q", str(two)),
        "do not match",
        "4 distributions",
        "has 2",
    )
    assert_one_line_error(
        *call(capsys, "measure", "--p", str(tmp_path / "missing.csv")),
        "missing.csv",
        "no such file",
    )
    assert_one_line_error(*call(capsys, "measure", "--p", csv, "--axis", "2"), "--axis 2")
    assert_one_line_error(*call(capsys, "measure", "--p", "0.5,0.5", "--base", "1"), "--base")
    assert_one_line_error(*call(capsys, "measure", "--p", "0.5,0.5", "--base", "-2"), "--base")
    assert_one_line_error(*call(capsys, "measure"), "--p")
    npy = tmp_path / "neg.npy"
    np.save(npy, np.array([[0.5, 0.5], [1.2, -0.2]]))
    assert_one_line_error(*call(capsys, "measure", "--p", str(npy)), "neg.npy", "row 2", "negative")
    broken = tmp_path / "broken.npy"
    broken.write_bytes(b"not an npy file")
    assert_one_line_error(*call(capsys, "measure", "--p", str(broken)), "broken.npy")
    strings = tmp_path / "strings.npy"
    np.save(strings, np.array(["a", "b"]))
    assert_one_line_error(*call(capsys, "measure", "--p", str(strings)), "strings.npy")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    assert_one_line_error(*call(capsys, "measure", "--p", str(binary)), "binary.csv")


# --------------------------------------------------------------------------- train


def test_train_single_subprocess_reaches_accuracy():
    r = run_cli("train", "--epochs", "5", "--lr", "0.03", "--json")
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", "no progress bar when stderr is not a terminal"
    d = json.loads(r.stdout)
    assert d["task"] == "single" and d["epochs"] == 5
    assert d["n_train"] + d["n_test"] == 1797
    assert d["test"]["accuracy"] >= 0.93
    assert d["train"]["accuracy"] >= 0.93
    assert len(d["history"]["test_loss"]) == 6  # before training and after each epoch
    assert d["history"]["train_loss"][-1] < d["history"]["train_loss"][0] / 5
    cm = np.array(d["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == d["n_test"]
    assert np.trace(cm) / cm.sum() == pytest.approx(d["test"]["accuracy"])


def test_train_single_text_output_and_plot(capsys, tmp_path):
    plot = tmp_path / "train.png"
    args = ["--epochs", "2", "--lr", "0.03", "--label-smoothing", "0.1", "--batch-size", "64"]
    rc, out, _ = call(capsys, "train", *args, "--plot", str(plot))
    assert rc == 0
    assert_png(plot)
    assert f"wrote {plot}" in out
    assert "label smoothing 0.1" in out and "batch size 64" in out
    train_line = next(ln for ln in out.splitlines() if ln.strip().startswith("train "))
    test_line = next(ln for ln in out.splitlines() if ln.strip().startswith("test "))
    loss, acc = numbers(test_line)
    assert 0 < loss < 1 and 0.8 < acc <= 1
    assert len(numbers(train_line)) == 2


def test_train_multi_with_plot(capsys, tmp_path):
    plot = tmp_path / "multi.png"
    rc, out, _ = call(
        capsys,
        "train",
        "--task",
        "multi",
        "--hidden",
        "32",
        "--epochs",
        "6",
        "--json",
        "--plot",
        str(plot),
    )
    assert rc == 0
    d = json.loads(out)
    assert d["label_names"] == ["even", "prime", ">=5", "closed loop"]
    per_label = d["test"]["per_label_accuracy"]
    assert len(per_label) == 4 and min(per_label) >= 0.9
    assert 0.8 <= d["test"]["exact_match"] <= min(per_label)
    assert_png(plot)
    rc, out, _ = call(capsys, "train", "--task", "multi", "--epochs", "1")
    assert rc == 0 and "exact match" in out and "closed loop" in out


def test_train_is_reproducible(capsys):
    _, a, _ = call(capsys, "train", "--epochs", "1", "--json", "--seed", "3")
    _, b, _ = call(capsys, "train", "--epochs", "1", "--json", "--seed", "3")
    da, db = json.loads(a), json.loads(b)
    assert da["history"] == db["history"] and da["test"] == db["test"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--epochs", "0"], "--epochs"),
        (["--lr", "-1"], "--lr"),
        (["--batch-size", "0"], "--batch-size"),
        (["--label-smoothing", "1.5"], "--label-smoothing"),
        (["--hidden", "-3"], "--hidden"),
        (["--test-size", "1"], "--test-size"),
        (["--task", "triple"], "--task"),
        (["--plot", "/no/such/dir/t.png"], "does not exist"),
    ],
)
def test_train_bad_options(capsys, args, fragment):
    assert_one_line_error(*call(capsys, "train", *args), "infoloss train: error:", fragment)


def test_train_without_scikit_learn(capsys, monkeypatch):
    for name in list(sys.modules):
        if name == "sklearn" or name.startswith("sklearn."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    assert_one_line_error(
        *call(capsys, "train", "--epochs", "1"), "scikit-learn", 'pip install "infoloss[cli]"'
    )


# --------------------------------------------------------------------------- bench


def _bench_available() -> bool:
    try:
        import infoloss.bench  # noqa: F401
    except ImportError:
        return False
    return True


def test_bench_subprocess_help():
    r = run_cli("bench", "--help")
    if _bench_available():
        assert r.returncode == 0, r.stderr
        assert "usage" in r.stdout.lower()
    else:
        assert r.returncode == 2
        assert "infoloss.bench is not available" in r.stderr


def test_bench_missing_module(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "infoloss.bench", None)
    assert_one_line_error(*call(capsys, "bench"), "infoloss bench: error:", "not available")


def test_bench_delegates_arguments(capsys, monkeypatch):
    import types

    seen = []
    fake = types.ModuleType("infoloss.bench")
    fake.main = lambda argv: seen.append(argv) or 0
    monkeypatch.setitem(sys.modules, "infoloss.bench", fake)
    assert call(capsys, "bench", "--quick", "--json")[0] == 0
    assert seen == [["--quick", "--json"]]


# --------------------------------------------------------------------------- input files (issue 11)


def _npy_header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    """The bytes of a version 1.0 .npy header for an array of ``shape`` (no data)."""
    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def test_measure_empty_npy(capsys, tmp_path):
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    rc, out, err = call(capsys, "measure", "--p", str(empty))
    assert_one_line_error(
        rc, out, err, "infoloss measure: error:", str(empty), "is empty (0 bytes)"
    )


def test_measure_truncated_npy_data(capsys, tmp_path):
    good = tmp_path / "good.npy"
    np.save(good, np.array([[0.5, 0.5], [0.1, 0.9]]))
    cut = tmp_path / "cut.npy"
    cut.write_bytes(good.read_bytes()[:-5])
    rc, out, err = call(capsys, "measure", "--p", str(cut))
    assert_one_line_error(
        rc, out, err, str(cut), "is truncated", "(2, 2) float64", "32 bytes of data", "holds 27"
    )
    extra = tmp_path / "extra.npy"
    extra.write_bytes(good.read_bytes() + b"\0\0")
    rc, out, err = call(capsys, "measure", "--p", str(extra))
    assert_one_line_error(rc, out, err, str(extra), "extra bytes after the data", "holds 34")


def test_measure_truncated_npy_header(capsys, tmp_path):
    good = tmp_path / "good.npy"
    np.save(good, np.array([0.5, 0.5]))
    for n in (6, 9, 20):  # inside the magic string, the header length, the header
        cut = tmp_path / f"cut{n}.npy"
        cut.write_bytes(good.read_bytes()[:n])
        rc, out, err = call(capsys, "measure", "--p", str(cut))
        assert_one_line_error(rc, out, err, str(cut), "is truncated", "EOF")


def test_measure_npy_header_claiming_a_huge_shape(capsys, tmp_path):
    huge = tmp_path / "huge.npy"
    huge.write_bytes(_npy_header((10**12, 10**12)))
    start = time.perf_counter()
    rc, out, err = call(capsys, "measure", "--p", str(huge))
    assert time.perf_counter() - start < 5, "must be refused from the header, not loaded"
    assert_one_line_error(
        rc,
        out,
        err,
        str(huge),
        "is truncated",
        "(1000000000000, 1000000000000) float64",
        "8,000,000,000,000,000,000,000,000 bytes of data",
        "holds 0",
    )


def test_measure_npy_over_the_limit(capsys, tmp_path):
    from infoloss.cli._inputs import MAX_NPY_ENTRIES

    n = MAX_NPY_ENTRIES + 1
    big = tmp_path / "big.npy"
    header = _npy_header((n,))
    with open(big, "wb") as fh:  # a sparse file of the right size: nothing is written
        fh.write(header)
        fh.truncate(len(header) + 8 * n)
    rc, out, err = call(capsys, "measure", "--p", str(big))
    assert_one_line_error(
        rc, out, err, str(big), f"holds {n:,} numbers", f"the limit is {MAX_NPY_ENTRIES:,}"
    )


def test_measure_npy_bad_contents(capsys, tmp_path):
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([1, {}], dtype=object), allow_pickle=True)
    rc, out, err = call(capsys, "measure", "--p", str(objects))
    assert_one_line_error(rc, out, err, str(objects), "Python objects")
    archive = tmp_path / "archive.npy"
    with open(archive, "wb") as fh:
        np.savez(fh, a=np.ones(2))
    rc, out, err = call(capsys, "measure", "--p", str(archive))
    assert_one_line_error(rc, out, err, str(archive), ".npz archive")
    fortran = tmp_path / "fortran.npy"
    a = np.asfortranarray([[0.5, 0.25], [0.5, 0.75]])  # columns are distributions
    np.save(fortran, a)
    rc, out, _ = call(capsys, "measure", "--p", str(fortran), "--axis", "0", "--json")
    assert rc == 0
    np.testing.assert_allclose(
        [r["entropy_p"] for r in json.loads(out)["rows"]], infoloss.entropy(a, axis=0, base=2)
    )


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_measure_dev_zero_is_refused_without_reading(capsys):
    start = time.perf_counter()
    rc, out, err = call(capsys, "measure", "--p", "/dev/zero")
    assert time.perf_counter() - start < 5
    assert_one_line_error(
        rc, out, err, "infoloss measure: error: --p /dev/zero: is a character device"
    )
    rc, out, err = call(capsys, "measure", "--p", "0.5,0.5", "--q", "/dev/zero")
    assert_one_line_error(rc, out, err, "--q /dev/zero: is a character device")


def test_measure_text_file_over_the_limit(capsys, tmp_path):
    from infoloss.cli._inputs import MAX_TEXT_BYTES

    big = tmp_path / "big.csv"
    with open(big, "wb") as fh:  # sparse: the size is refused before anything is read
        fh.truncate(MAX_TEXT_BYTES + 1)
    rc, out, err = call(capsys, "measure", "--p", str(big))
    assert_one_line_error(
        rc, out, err, str(big), f"is {MAX_TEXT_BYTES + 1:,} bytes", "limited to 16 MiB"
    )
    exact = tmp_path / "exact.csv"  # at the limit: read (and rejected only for its contents)
    exact.write_bytes(b"0.5,0.5\n" + b" " * (MAX_TEXT_BYTES - 8))
    rc, out, err = call(capsys, "measure", "--p", str(exact), "--json")
    assert rc == 0, err
    assert json.loads(out)["rows"] == [{"row": 1, "entropy_p": 1.0}]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_measure_pipe_is_read_up_to_the_limit(capsys, tmp_path):
    from infoloss.cli._inputs import MAX_TEXT_BYTES

    fifo = tmp_path / "endless.csv"
    os.mkfifo(fifo)
    written: list[int] = []

    def writer() -> None:  # writes until the reader stops reading
        chunk = b"0.5,0.5\n" * 8192
        try:
            with open(fifo, "wb") as fh:
                while sum(written) < 4 * MAX_TEXT_BYTES:
                    fh.write(chunk)
                    written.append(len(chunk))
        except BrokenPipeError:
            pass

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    rc, out, err = call(capsys, "measure", "--p", str(fifo))
    t.join(timeout=10)
    assert not t.is_alive()
    assert_one_line_error(rc, out, err, str(fifo), "holds more than 16 MiB")
    assert sum(written) < 2 * MAX_TEXT_BYTES, "stops reading just past the limit"


def test_measure_too_many_rows(capsys, tmp_path, monkeypatch):
    from infoloss.cli import _measure

    monkeypatch.setattr(_measure, "MAX_ROWS", 3)
    four = tmp_path / "four.csv"
    four.write_text("1\n1\n1\n1\n")
    rc, out, err = call(capsys, "measure", "--p", str(four))
    assert_one_line_error(rc, out, err, str(four), "more than 3 rows")
    rc, out, err = call(capsys, "measure", "--p", "1;1;1;1")
    assert_one_line_error(rc, out, err, "4 distributions", "at most 3")
    rc, out, _ = call(capsys, "measure", "--p", "1;1;1")
    assert rc == 0


def test_measure_utf8_bom_csv_gives_the_right_numbers(capsys, tmp_path):
    p = np.array([[0.25, 0.75], [0.5, 0.5]])
    q = np.array([[0.125, 0.875], [0.9, 0.1]])
    pfile, qfile = tmp_path / "p.csv", tmp_path / "q.csv"
    # What Excel's "CSV UTF-8" writes: a byte-order mark, then CRLF lines.
    pfile.write_bytes(b"\xef\xbb\xbf0.25,0.75\r\n0.5,0.5\r\n")
    qfile.write_bytes("\ufeff0.125;0.875\r\n0.9;0.1\r\n".encode())
    rc, out, err = call(capsys, "measure", "--p", str(pfile), "--q", str(qfile), "--json")
    assert rc == 0, err
    rows = json.loads(out)["rows"]
    np.testing.assert_allclose([r["entropy_p"] for r in rows], infoloss.entropy(p, base=2))
    np.testing.assert_allclose(
        [r["kl_divergence"] for r in rows], infoloss.kl_divergence(p, q, base=2)
    )
    assert rows[0]["entropy_p"] == pytest.approx(0.8112781244591328, rel=1e-15)


def test_measure_missing_or_unreadable_file_names_the_file(capsys, tmp_path, monkeypatch):
    missing = tmp_path / "missing.csv"
    assert_one_line_error(
        *call(capsys, "measure", "--p", "0.5,0.5", "--q", str(missing)),
        f"--q {missing}: no such file",
    )
    assert_one_line_error(
        *call(capsys, "measure", "--p", str(tmp_path)), f"--p {tmp_path}: is a directory"
    )
    locked = tmp_path / "locked.csv"
    locked.write_text("0.5,0.5\n")
    if os.geteuid() != 0:  # root reads any file; the monkeypatched case below covers it
        locked.chmod(0)
        try:
            assert_one_line_error(
                *call(capsys, "measure", "--p", str(locked)),
                f"--p {locked}: cannot read (Permission denied)",
            )
        finally:
            locked.chmod(0o600)

    import builtins

    from infoloss.cli import _inputs

    denied_paths = {str(tmp_path / "denied.csv"), str(tmp_path / "denied.npy")}

    def open_denied(file: object, *args: object, **kwargs: object) -> object:
        if str(file) in denied_paths:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return builtins.open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(_inputs, "open", open_denied, raising=False)
    for name in sorted(denied_paths):
        Path(name).write_bytes(b"0.5,0.5\n")
        assert_one_line_error(
            *call(capsys, "measure", "--p", "0.5,0.5", "--q", name),
            f"infoloss measure: error: --q {name}: cannot read (Permission denied)",
        )


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="Linux /proc only")
def test_measure_read_error_names_the_file(capsys):
    # /proc/self/mem is a regular file whose first page cannot be read (EIO), even by root.
    rc, out, err = call(capsys, "measure", "--p", "/proc/self/mem")
    assert_one_line_error(rc, out, err, "--p /proc/self/mem: cannot read (Input/output error)")


# --------------------------------------------------------------------------- option ranges


def test_train_huge_hidden_exits_2_immediately(capsys, monkeypatch):
    from infoloss.cli import _train

    def no_data(*args: object, **kwargs: object) -> object:
        raise AssertionError("the data were loaded before the options were checked")

    monkeypatch.setattr(_train, "load_digits_task", no_data)
    start = time.perf_counter()
    rc, out, err = call(capsys, "train", "--hidden", "2000000000")
    assert time.perf_counter() - start < 2
    assert_one_line_error(
        rc,
        out,
        err,
        "infoloss train: error: argument --hidden: must be an integer in [0, 4096]; got 2000000000",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "10001"], "argument --epochs: must be an integer in [1, 10000]; got 10001"),
        (["--batch-size", "65537"], "--batch-size: must be an integer in [1, 65536]"),
        (["--seed", "-1"], "argument --seed: must be an integer in [0, 4294967295]; got -1"),
        (["--seed", str(2**32)], "--seed: must be an integer in [0, 4294967295]"),
        (["--test-size", "0.001"], "--test-size: must be a number in [0.01, 0.99]; got 0.001"),
        (["--lr", "inf"], "argument --lr: must be a number in (0, 100]; got inf"),
        (["--lr", "nan"], "argument --lr: must be a number in (0, 100]; got nan"),
        (["--label-smoothing", "nan"], "--label-smoothing: must be a number in [0, 1]"),
        (["--hidden", "1e3"], "argument --hidden: invalid int value: '1e3'"),
    ],
)
def test_train_option_ranges(capsys, args, message):
    assert_one_line_error(*call(capsys, "train", *args), "infoloss train: error:", message)


def test_train_range_edges_are_accepted(capsys):
    rc, out, err = call(
        capsys, "train", "--epochs", "1", "--test-size", "0.99", "--seed", str(2**32 - 1), "--json"
    )
    assert rc == 0, err
    d = json.loads(out)
    assert d["n_test"] == 1780 and d["n_train"] == 17


def test_demo_seed_out_of_range(capsys):
    assert_one_line_error(
        *call(capsys, "demo", "--seed", "-1"),
        "infoloss demo: error: argument --seed: must be an integer in [0, 4294967295]; got -1",
    )


# --------------------------------------------------------------------------- bugs are not user errors


def _driver(tmp_path: Path, body: str) -> Path:
    """A small script that patches infoloss and then runs the command like the console script."""
    script = tmp_path / "driver.py"
    script.write_text(
        textwrap.dedent(body)
        + "\nfrom infoloss.cli import main\n\nraise SystemExit(main(sys.argv[1:]))\n"
    )
    return script


def _run_driver(script: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_internal_bug_is_a_traceback_with_exit_1_subprocess(tmp_path):
    script = _driver(
        tmp_path,
        """
        import sys
        import infoloss.cli._measure

        def run(args):
            raise ValueError("an internal bug, not the user's input")

        infoloss.cli._measure.run = run
        """,
    )
    r = _run_driver(script, "measure", "--p", "0.5,0.5")
    assert r.returncode == 1
    assert r.stdout == ""
    assert "Traceback (most recent call last)" in r.stderr
    assert r.stderr.strip().splitlines()[-1] == "ValueError: an internal bug, not the user's input"
    assert "error:" not in r.stderr.replace("ValueError:", "")


@pytest.mark.parametrize(
    "exc",
    [ValueError("a bug"), OSError(errno.EIO, "a bug"), FileNotFoundError(2, "a bug", "x.csv")],
)
def test_internal_bug_propagates_from_main(capsys, monkeypatch, exc):
    from infoloss.cli import _measure

    def run(args: object) -> int:
        raise exc

    monkeypatch.setattr(_measure, "run", run)
    with pytest.raises(type(exc)) as info:
        main(["measure", "--p", "0.5,0.5"])
    assert info.value is exc
    assert capsys.readouterr() == ("", "")


def test_library_error_is_a_user_error(capsys, monkeypatch):
    from infoloss.cli import _measure
    from infoloss.errors import InfolossError

    def run(args: object) -> int:
        raise InfolossError("`base` must be positive\nsecond line")

    monkeypatch.setattr(_measure, "run", run)
    assert_one_line_error(
        *call(capsys, "measure", "--p", "0.5,0.5"),
        "infoloss measure: error: `base` must be positive",
    )


def test_bench_dependency_missing_vs_infoloss_module_missing(capsys, monkeypatch):
    import infoloss.cli as cli

    def missing(name: str) -> object:
        def import_module(module: str) -> object:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

        return import_module

    monkeypatch.setattr(cli.importlib, "import_module", missing("torch"))
    assert_one_line_error(
        *call(capsys, "bench"), "infoloss bench: error: needs torch", 'pip install "infoloss[cli]"'
    )
    monkeypatch.setattr(cli.importlib, "import_module", missing("infoloss.bench._torch"))
    with pytest.raises(ModuleNotFoundError):
        main(["bench"])


# --------------------------------------------------------------------------- atomic --plot


def _others(directory: Path, keep: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p != keep)


@pytest.mark.parametrize("command", ["demo", "train"])
def test_plot_failing_save_keeps_the_old_file(capsys, monkeypatch, tmp_path, command):
    from matplotlib.figure import Figure

    target = tmp_path / "figure.png"
    old = b"\x89PNG\r\n\x1a\n an older, good figure"
    target.write_bytes(old)

    def failing_savefig(self: object, fname: object, **kwargs: object) -> None:
        fname.write(b"\x89PNG\r\n\x1a\n half an image")  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Figure, "savefig", failing_savefig)
    args = ["--epochs", "1"] if command == "train" else []
    rc, out, err = call(capsys, command, *args, "--plot", str(target))
    assert_one_line_error(
        rc, out, err, f"infoloss {command}: error: --plot {target}: cannot write (No space left"
    )
    assert target.read_bytes() == old
    assert _others(tmp_path, target) == [], "the temporary file must be removed"


def test_plot_bug_in_save_keeps_the_old_file_and_propagates(monkeypatch, tmp_path):
    from matplotlib.figure import Figure

    target = tmp_path / "figure.svg"
    target.write_bytes(b"<svg>old</svg>")

    def buggy_savefig(self: object, fname: object, **kwargs: object) -> None:
        fname.write(b"<svg>")  # type: ignore[attr-defined]
        raise RuntimeError("a bug in the renderer")

    monkeypatch.setattr(Figure, "savefig", buggy_savefig)
    with pytest.raises(RuntimeError, match="a bug in the renderer"):
        main(["demo", "--plot", str(target)])
    assert target.read_bytes() == b"<svg>old</svg>"
    assert _others(tmp_path, target) == []


def test_plot_interrupted_save_keeps_the_old_file_subprocess(tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "demo.png"
    old = b"\x89PNG\r\n\x1a\n an older, good figure"
    target.write_bytes(old)
    script = _driver(
        tmp_path,
        """
        import signal
        import sys
        import time

        from matplotlib.figure import Figure

        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal

        def slow_savefig(self, fname, **kwargs):
            fname.write(b"\\x89PNG\\r\\n\\x1a\\n the first bytes of a new figure")
            fname.flush()
            print("saving", file=sys.stderr, flush=True)
            time.sleep(60)
            raise SystemExit("the save was not interrupted")

        Figure.savefig = slow_savefig
        """,
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, str(script), "demo", "--plot", str(target)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stderr is not None
        ready, _, _ = select.select([proc.stderr], [], [], 60)
        assert ready, "the command never reached the save"
        assert proc.stderr.readline() == b"saving\n"
        # Mid-save: the new bytes are in a temporary file beside the target, not in the target.
        (temp,) = (p for p in out_dir.iterdir() if p != target)
        assert temp.read_bytes().startswith(b"\x89PNG")
        assert target.read_bytes() == old
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert stderr.decode().strip() == "infoloss demo: interrupted"
    assert stdout == b""
    assert target.read_bytes() == old
    assert _others(out_dir, target) == []


def test_plot_replaces_an_existing_file_keeping_its_permissions(capsys, tmp_path):
    target = tmp_path / "demo.png"
    target.write_bytes(b"old")
    target.chmod(0o640)
    rc, _, err = call(capsys, "demo", "--plot", str(target))
    assert rc == 0, err
    assert_png(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert _others(tmp_path, target) == []
    new = tmp_path / "new.png"
    umask = os.umask(0o027)
    try:
        rc, _, err = call(capsys, "demo", "--plot", str(new))
    finally:
        os.umask(umask)
    assert rc == 0, err
    assert stat.S_IMODE(new.stat().st_mode) == 0o640  # 0o666 less the umask, as open() gives


def test_plot_through_a_symlink_replaces_the_file_it_points_to(capsys, tmp_path):
    real = tmp_path / "real.png"
    real.write_bytes(b"old")
    link = tmp_path / "link.png"
    link.symlink_to(real)
    rc, _, err = call(capsys, "demo", "--plot", str(link))
    assert rc == 0, err
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert_png(real)
    assert _others(tmp_path, real) == ["link.png"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_plot_to_a_named_pipe_writes_in_place(capsys, tmp_path):
    fifo = tmp_path / "figure.png"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def reader() -> None:
        with open(fifo, "rb") as fh:
            received.append(fh.read())

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    rc, _, err = call(capsys, "demo", "--plot", str(fifo))
    t.join(timeout=30)
    assert rc == 0, err
    assert stat.S_ISFIFO(fifo.stat().st_mode), "the pipe must not be replaced by a file"
    assert received and received[0][:8] == b"\x89PNG\r\n\x1a\n"
    assert _others(tmp_path, fifo) == []


def test_plot_target_not_writable(capsys, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root may write any file")
    target = tmp_path / "ro.png"
    target.write_bytes(b"old")
    target.chmod(0o444)
    assert_one_line_error(*call(capsys, "demo", "--plot", str(target)), "not writable")
    assert target.read_bytes() == b"old"
