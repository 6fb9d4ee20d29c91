"""The benchmark package ``infoloss.bench``: quick runs, its contenders, its command line."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _helpers import installed

from infoloss import bench
from infoloss.bench import _options, _peers, _run, linear

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--quick", "--shapes", "64x300", "--sigmoid-shapes", "32x20", "--repeat", "1"]


def _no_targets(text: str) -> None:
    assert "MISSED" not in text
    assert not re.search(r"\btargets?\b", text, flags=re.I)


# --------------------------------------------------------------------------- quick runs


def test_quick_run_prints_ratios_and_writes_the_figures(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = bench.main(
        ["--quick", "--repeat", "1", "--peers", "infoloss,numpy,copy", "--json", str(out)]
    )
    stdout, stderr = capsys.readouterr()
    assert rc == 0, stderr
    assert "peer / infoloss" in stdout and "/ copy" in stdout  # the ratio columns
    assert "ratios (this run)" in stdout
    assert re.search(r"sparse_softmax_ce 256x2000 fwd\+bwd: / copy \d+\.\d\d", stdout)
    assert re.search(r"numpy \d+\.\d\d", stdout)
    _no_targets(stdout)
    assert f"raw figures written to {out}" in stdout

    data = json.loads(out.read_text())
    assert "targets" not in data
    _no_targets(json.dumps(data))
    peers = {r["peer"] for r in data["results"]}
    assert {"infoloss fast", "infoloss fast, out=", "infoloss generic", "numpy", "copy"} <= peers
    assert {(r["case"], tuple(r["shape"])) for r in data["results"]} == {
        ("sparse_softmax_ce", s) for s in _options.QUICK_SHAPES
    } | {("sigmoid_ce", s) for s in _options.QUICK_SIGMOID_SHAPES}
    assert all(r["ms"] > 0 and r["gb_per_s"] > 0 and r["repeats"] == 1 for r in data["results"])
    assert data["threads"]["numba_threads"] >= 1
    assert data["compile"]["this_process_first_call_s"] > 0
    assert data["repeat"] == 1 and data["parts"] == ["losses"]
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]  # no temporary file left


@pytest.mark.skipif(not (installed("torch") and installed("jax")), reason="needs torch and jax")
def test_quick_run_with_torch_and_jax(capsys):
    assert bench.main([*SMALL, "--peers", "infoloss,copy,torch,jax"]) == 0
    stdout = capsys.readouterr().out
    for row in ("torch", "jax (jit, ", "infoloss on jax (jit)"):
        assert re.search(rf"fwd\+bwd +{re.escape(row)}.* \d+\.\d\d +\d+\.\d\d$", stdout, re.M)
    _no_targets(stdout)


def test_table_and_ratios_without_the_fast_path():
    records = [
        {"case": "c", "shape": [2, 3], "op": op, "peer": peer, "ms": ms, "gb_per_s": 1.0}
        for op, peer, ms in (
            ("copy", "copy", 1.0),
            ("fwd", "infoloss generic", 4.0),
            ("fwd", "numpy", 8.0),
        )
    ]
    table = _run.format_table(records)
    assert re.search(r"fwd +numpy +8\.000 +1\.00 +2\.00 +8\.00$", table, re.M)
    assert "'infoloss generic' ms" in table
    ratios = _run.format_ratios(records)
    assert "c 2x3 fwd: / copy 4.00, numpy 2.00" in ratios


@pytest.mark.skipif(not installed("torch"), reason="needs torch")
def test_torch_autograd_part(tmp_path, capsys):
    out = tmp_path / "t.json"
    assert bench.main(["--quick", "--only", "torch-autograd", "--json", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert re.search(r"F\.cross_entropy / infoloss = \d+\.\d\d", stdout)
    _no_targets(stdout)
    r = json.loads(out.read_text())["torch_autograd"]
    assert r["shape"] == list(_options.QUICK_TORCH_AUTOGRAD)
    assert r["infoloss_torch_ms"] > 0 and r["torch_cross_entropy_ms"] > 0
    assert r["fast_path"] is True


def test_linear_part(tmp_path, capsys):
    out = tmp_path / "lin.json"
    rc = linear.main(["--quick", "--repeat", "1", "--peers", "infoloss", "--json", str(out)])
    stdout = capsys.readouterr().out
    assert rc == 0
    assert "x fused" in stdout and "the unfused infoloss path" in stdout
    (res,) = json.loads(out.read_text())["linear"]
    assert (res["n"], res["h"], res["v"]) == _options.QUICK_LINEAR[0]
    assert set(res["rows"]) == {"fused", "unfused"}
    for row in res["rows"].values():
        assert "error" not in row, row
        assert row["ms"] > 0
    assert res["rows"]["fused"]["loss"] == pytest.approx(res["rows"]["unfused"]["loss"], rel=1e-5)


def test_linear_part_every_variant(tmp_path, capsys):
    """Every variant of the linear part runs (those of the installed peers) and computes the
    same mean loss as the fused one."""
    peers = ["infoloss"] + [p for p in ("torch", "jax") if installed(p)]
    out = tmp_path / "lin.json"
    argv = ["--quick", "--repeat", "1", "--peers", ",".join(peers), "--json", str(out)]
    assert linear.main(argv) == 0
    capsys.readouterr()
    (res,) = json.loads(out.read_text())["linear"]
    want = {v for v, peer in _options.LINEAR_VARIANTS.items() if peer in peers}
    assert set(res["rows"]) == want
    fused = res["rows"]["fused"]["loss"]
    for name, row in res["rows"].items():
        assert "error" not in row, (name, row)
        assert row["ms"] > 0
        assert row["loss"] == pytest.approx(fused, rel=1e-5), name


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_framework_part(framework, tmp_path, capsys):
    """``--framework``: fwd+bwd under the framework's autodiff beside its own loss, with memory;
    infoloss's linear layer keeps less than the unfused logits and gradient."""
    pytest.importorskip(framework)
    if framework == "jax":
        pytest.importorskip("optax")
    out = tmp_path / "f.json"
    argv = ["--framework", framework, "--quick", "--repeat", "1", "--linear", "256,32,2000"]
    assert bench.main([*argv, "--json", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "sparse CE" in stdout and "linear_cross_entropy fwd+bwd N=256 H=32 V=2000" in stdout
    _no_targets(stdout)
    r = json.loads(out.read_text())[framework]
    peer = "torch" if framework == "torch" else "optax"
    assert set(r["ce"]["time"]) == {peer, "infoloss"}
    assert all(t > 0 for t in r["ce"]["time"].values())
    (lin,) = r["linear"]
    assert lin["shape"] == [256, 32, 2000]
    unfused = "torch" if framework == "torch" else "unfused (jnp)"
    assert all(t > 0 for t in lin["time"].values())
    if framework == "torch":  # peak RSS above inputs and returned gradients, in child processes
        extra = {k: p - lin["gradients"] for k, p in lin["peak"].items()}
        assert extra[unfused] >= 2 * 256 * 2000 * 4 * 0.9  # its logits and their gradient
        assert extra["infoloss"] < extra[unfused] / 4
    else:  # XLA's temporaries
        temp = r["ce"]["temp"]
        if None not in temp.values():
            assert temp["infoloss"] < temp["optax"]
        if None not in lin["temp"].values():
            assert lin["temp"]["infoloss"] < lin["temp"][unfused] / 2


def test_bounds_part(tmp_path, capsys):
    """Every kernel's time over a copy of its logits, per round, beside its bound (issue 17)."""
    out = tmp_path / "b.json"
    peers = "infoloss,copy,torch" if installed("torch") else "infoloss,copy"
    rc = bench.main(["--quick", "--only", "bounds", "--peers", peers, "--json", str(out)])
    stdout = capsys.readouterr().out
    assert rc == 0
    _no_targets(stdout)
    res = json.loads(out.read_text())["bounds"]
    assert res["shape"] == list(_options.QUICK_BOUNDS_SHAPE) and res["rounds"] == 5
    from infoloss.bench import _bounds

    assert [k for k, _ in _bounds.COPY_BOUNDS] == list(res["cases"])
    for case, bound in _bounds.COPY_BOUNDS:
        r = res["cases"][case]
        assert len(r["ratios"]) == 5 and r["ms"] > 0 and r["bound"] == bound
        assert r["min_over_min_copy"] == pytest.approx(r["ms"] / res["copy_ms"])
        assert re.search(
            rf"^  {re.escape(case)} +\d+\.\d +{r['median_ratio']:.2f} +{bound:.1f} +"
            rf"{r['over_fresh_copy']:.2f} +{r['min_over_min_copy']:.2f}$",
            stdout,
            re.M,
        )
    assert res["fresh_copy_ms"] > 0 and res["fresh_over_copy"] > 0
    assert f"{res['fresh_over_copy']:.2f}x the copy" in stdout
    if installed("torch"):
        s = res["sigmoid"]
        assert s["torch_ms"] > 0 and s["floor_ms"] > 0
        assert "PyTorch / infoloss (median)" in stdout
        assert f"PyTorch / floor (median) {s['torch_over_floor']:.2f}" in stdout


# --------------------------------------------------------------------------- the contenders


def _reference(kind: str, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    x64 = x.astype(np.float64)
    if kind == "sparse":
        p = np.exp(x64 - x64.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        rows = np.arange(len(y))
        g = p.copy()
        g[rows, y] -= 1.0
        return float(np.mean(-np.log(p[rows, y]))), g / len(y)
    loss = np.maximum(x64, 0) - x64 * y + np.log1p(np.exp(-np.abs(x64)))
    return float(loss.mean()), (1.0 / (1.0 + np.exp(-x64)) - y) / x.size


@pytest.mark.parametrize("kind", ["sparse", "sigmoid"])
@pytest.mark.parametrize("peer", [p for p in _peers.PEERS if p != "copy"])
def test_every_contender_computes_the_same_loss_and_gradient(peer, kind):
    """The table compares like with like: each row's fwd gives the mean loss and its fwd+bwd the
    loss and the gradient with respect to the logits."""
    if not _peers.installed(peer):
        pytest.skip(f"{peer} is not installed")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 7), dtype=np.float32) * 3
    y = rng.integers(0, 7, 16) if kind == "sparse" else (rng.random((16, 7)) < 0.3) * 1.0
    y = y.astype(np.int64 if kind == "sparse" else np.float32)
    ref_loss, ref_grad = _reference(kind, x, y)
    rows = _peers.rows_of(peer)(kind, x, y)
    assert rows
    for name, ops in rows.items():
        assert set(ops) <= {"fwd", "fwd+bwd"}, name
        if "fwd" in ops:
            assert float(ops["fwd"]()) == pytest.approx(ref_loss, rel=1e-5), name
        loss, grad = ops["fwd+bwd"]()
        loss = loss.detach() if hasattr(loss, "detach") else loss  # a torch scalar with grad
        assert float(loss) == pytest.approx(ref_loss, rel=1e-5), name
        np.testing.assert_allclose(np.asarray(grad), ref_grad, rtol=1e-4, atol=1e-7, err_msg=name)


def test_copy_contender_copies():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    (ops,) = _peers.copy_rows("sparse", x, np.zeros(2, np.int64)).values()
    assert list(ops) == ["copy"]
    ops["copy"]()


def test_fast_path_switch(monkeypatch):
    monkeypatch.setenv("INFOLOSS_DISABLE_FAST", "1")
    assert not _peers.fast_path_available()
    x = np.zeros((2, 3), np.float32)
    assert set(_peers.infoloss_rows("sparse", x, np.zeros(2, np.int64))) == {"infoloss generic"}
    monkeypatch.setenv("INFOLOSS_DISABLE_FAST", "0")
    assert _peers.fast_path_available() == installed("numba")


def test_time_call_budget():
    calls = []

    def slow() -> None:
        calls.append(1)
        time.sleep(0.02)

    best, n = _run.time_call(slow, repeat=50, budget_s=0.05)
    assert n == 2 and len(calls) == 3 and best >= 0.02
    assert _run.time_call(lambda: None, repeat=3, budget_s=10)[1] == 3
    assert _run.time_call(slow, repeat=1, budget_s=0.001)[1] == 1


# --------------------------------------------------------------------------- the JSON file


def test_json_is_replaced_atomically(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    _run.write_json(str(path), {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    mode = path.stat().st_mode & 0o777
    assert mode == 0o666 & ~_umask()

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_run.json, "dump", broken)
    with pytest.raises(OSError):
        _run.write_json(str(path), {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_json_write_failure_after_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(_run, "run", lambda opts: {"results": []})

    def broken(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_run, "write_json", broken)
    assert bench.main(["--quick", "--json", str(tmp_path / "x.json")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("infoloss bench: error: cannot write ") and "No space left" in err


# --------------------------------------------------------------------------- usage errors


def _usage_errors(tmp: Path) -> list[tuple[list[str], str]]:
    return [
        (["--peers", "bogus"], "--peers: unknown 'bogus'; choose from infoloss, copy, numpy"),
        (["--peers", "numpy,torch,bogus,jx"], "unknown 'bogus', 'jx'"),
        (["--peers", ","], "--peers: give at least one of"),
        (["--only", "everything"], "--only: unknown 'everything'; choose from losses"),
        (["--repeat", "0"], "--repeat: must be at least 1"),
        (["--repeat", "x"], "argument --repeat: invalid int value"),
        (["--budget", "0"], "--budget: must be a positive number"),
        (["--budget", "nan"], "--budget: must be a positive number"),
        (["--shapes", "4096"], "--shapes: '4096' is not of the form NxC"),
        (["--shapes", "4096x0"], "--shapes: sizes must be at least 1"),
        (["--shapes", ""], "--shapes: give shapes like"),
        (["--sigmoid-shapes", "axb"], "--sigmoid-shapes: 'axb' is not of the form NxC"),
        (["--shapes", "1000000x1000000"], "needs about"),
        (["--torch-autograd", "8x8,9x9"], "--torch-autograd: give one shape"),
        (["--torch-autograd", "big"], "--torch-autograd: 'big' is not of the form NxC"),
        (["--linear", "1,2"], "--linear: '1,2' is not of the form N,H,V"),
        (["--linear", "8,0,16"], "--linear: sizes must be at least 1"),
        (["--linear", "8,16,32;a,b,c"], "--linear: 'a,b,c' is not of the form N,H,V"),
        (["--linear", "100000,100000,100000"], "GiB of memory"),
        (["--linear", "8,16,32", "--peers", "numpy,copy"], "none of the selected peers"),
        (["--only", "linear", "--shapes", "8x8"], "--shapes: has no effect unless --only"),
        (["--only", "losses", "--linear", "8,16,32"], "--linear: has no effect unless --only"),
        (["--only", "torch-autograd", "--torch-autograd", "off"], "contradicts"),
        (["--json", str(tmp / "missing" / "x.json")], "does not exist"),
        (["--json", str(tmp)], "is a directory"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--quick", "extra"], "unrecognized arguments: extra"),
    ]


def _forbid_running(monkeypatch) -> None:
    def ran(*args, **kwargs):
        raise AssertionError("the benchmark ran")

    monkeypatch.setattr(_run, "run", ran)
    monkeypatch.setattr(_run, "time_call", ran)


def _assert_one_line_usage_error(rc: int, out: str, err: str, fragment: str) -> None:
    assert rc == 2
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith("infoloss bench: error: "), err
    assert fragment in err, err


def test_usage_errors_are_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    _forbid_running(monkeypatch)
    for argv, fragment in _usage_errors(tmp_path):
        t0 = time.perf_counter()
        rc = bench.main(argv)
        elapsed = time.perf_counter() - t0
        out, err = capsys.readouterr()
        _assert_one_line_usage_error(rc, out, err, fragment)
        assert elapsed < 2.0, (argv, elapsed)


def test_peers_that_are_not_installed(monkeypatch, capsys):
    _forbid_running(monkeypatch)
    monkeypatch.setattr(_options, "installed", lambda peer: peer not in ("torch", "jax"))
    for argv, fragment in (
        (["--peers", "numpy,torch"], "--peers: torch is not installed"),
        (["--only", "torch-autograd"], "PyTorch is not installed"),
        (["--torch-autograd", "8x8"], "PyTorch is not installed"),
    ):
        _assert_one_line_usage_error(bench.main(argv), *capsys.readouterr(), fragment)


def test_a_default_run_skips_what_is_not_installed(monkeypatch):
    monkeypatch.setattr(_options, "installed", lambda peer: peer not in ("torch", "jax"))
    opts = _options.options(_options.build_parser().parse_args([]))
    assert opts.peers == ("infoloss", "copy", "numpy")
    assert opts.skipped_peers == ("torch", "jax")
    assert opts.parts == {"losses", "bounds"}


def test_option_defaults():
    parse = _options.build_parser().parse_args
    quick = _options.options(parse(["--quick"]))
    assert (quick.repeat, quick.compile_time, quick.json_path) == (2, False, None)
    assert quick.shapes == _options.QUICK_SHAPES and "torch-autograd" not in quick.parts
    full = _options.options(parse(["--linear", "8,16,32;4,8,16", "--peers", "infoloss,jax"]))
    assert full.repeat == 7 and full.compile_time
    assert full.parts == {"losses", "linear"}  # no copy peer: no bounds part
    assert full.linear == ((8, 16, 32), (4, 8, 16))
    assert full.linear_variants == ("fused", "unfused", "jax")
    assert full.shapes == _options.DEFAULT_SHAPES
    if installed("torch"):
        assert "torch-autograd" in _options.options(parse([])).parts
        assert "torch-autograd" not in _options.options(parse(["--torch-autograd", "off"])).parts
        t = _options.options(parse(["--quick", "--torch-autograd", "32x100"]))
        assert "torch-autograd" in t.parts and t.torch_autograd == (32, 100)


def test_json_directory_not_writable(tmp_path, monkeypatch, capsys):
    _forbid_running(monkeypatch)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(_options.tempfile, "mkstemp", refuse)  # what a read-only directory does
    rc = bench.main(["--json", str(tmp_path / "x.json")])
    out, err = capsys.readouterr()
    _assert_one_line_usage_error(rc, out, err, "--json: cannot write in")
    assert "(Permission denied)" in err


def test_help(capsys):
    assert bench.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: infoloss bench")
    for flag in ("--peers", "--only", "--linear", "--json", "--torch-autograd"):
        assert flag in out
    _no_targets(out)


def test_through_the_infoloss_command(capsys):
    from infoloss.cli import main

    _assert_one_line_usage_error(
        main(["bench", "--peers", "bogus"]), *capsys.readouterr(), "unknown 'bogus'"
    )


def test_linear_module_command_line():
    """``python -m infoloss.bench.linear`` runs as a script (no runpy warning) and reports its
    usage errors as one line."""
    r = subprocess.run(
        [sys.executable, "-W", "error", "-m", "infoloss.bench.linear", "--peers", "bogus"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("python -m infoloss.bench.linear: error: --peers: unknown")
    assert r.stderr.count("\n") == 1


def test_linear_module_help_describes_the_linear_part():
    r = subprocess.run(
        [sys.executable, "-W", "error", "-m", "infoloss.bench.linear", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert r.stdout.startswith("usage: python -m infoloss.bench.linear")
    assert "The linear part of the benchmark" in r.stdout and "--linear" in r.stdout


# --------------------------------------------------------------------------- layering


def _bench_imports() -> dict[str, set[str]]:
    """``{module: modules of infoloss.bench it imports}``, imports inside functions included
    (``"__init__"`` is the package)."""
    pkg = ROOT / "src" / "infoloss" / "bench"
    names = {p.stem: p for p in pkg.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for stem, path in names.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (
                node.level == 1 or node.module == "infoloss.bench"
            ):
                mod = node.module if node.level == 1 else None
                if mod:
                    deps.add(mod.split(".")[0])
                else:
                    deps.update(a.name if a.name in names else "__init__" for a in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "infoloss.bench."
            ):
                deps.add(node.module.split(".")[2])
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name == "infoloss.bench":
                        deps.add("__init__")
                    elif a.name.startswith("infoloss.bench."):
                        deps.add(a.name.split(".")[2])
        deps.discard(stem)
        graph[stem] = deps
    return graph


def test_no_import_cycle_inside_the_benchmarks():
    graph = _bench_imports()
    assert graph["_common"] == set()
    assert graph["_torch"] <= {"_common"} and graph["_jax"] <= {"_common"}
    assert (
        "__init__" not in graph["linear"]
    )  # the entry module does not import the package __init__
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            assert state.get(d) != 1, "import cycle: " + " -> ".join([*path, m, d])
            if d not in state:
                visit(d, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_the_core_library_never_imports_the_benchmarks():
    pattern = re.compile(r"^\s*(from|import)\s+\S*bench", re.M)
    src = ROOT / "src" / "infoloss"
    for path in src.rglob("*.py"):
        rel = path.relative_to(src).parts
        if rel[0] in ("bench", "cli"):
            continue
        assert not pattern.search(path.read_text(encoding="utf-8")), path
    code = (
        "import sys, infoloss, infoloss.gradients, infoloss.linear; "
        "print(sorted(m for m in sys.modules if m.startswith('infoloss') and 'bench' in m))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert r.stdout.strip() == "[]"


def test_modules_stay_small():
    for path in (ROOT / "src" / "infoloss" / "bench").glob("*.py"):
        assert len(path.read_text(encoding="utf-8").splitlines()) < 700, path
