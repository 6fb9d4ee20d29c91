"""Tests of the ``infoloss`` command (issue 5).

Each subcommand runs once through the real entry point in a subprocess (``python -m infoloss.cli``,
the module the console script calls); the rest runs in-process through ``main([...])``. Printed
numbers are checked against the library, ``--json`` output is parsed, bad input must exit 2 with
one line on stderr and nothing on stdout, and ``--plot`` must write a PNG that matplotlib reads.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
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
    fake.main = lambda argv: seen.append(argv) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "infoloss.bench", fake)
    assert call(capsys, "bench", "--quick", "--json")[0] == 0
    assert seen == [["--quick", "--json"]]
