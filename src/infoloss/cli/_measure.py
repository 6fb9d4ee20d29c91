"""``infoloss measure``: entropy, cross-entropy, KL and JS divergence of given distributions,
or (``--joint``) the entropies and mutual information of a joint probability table.

Distributions come inline (``--p 0.5,0.5``, rows separated by ``;``) or from files: CSV or
whitespace-separated text with one distribution per row (blank lines and ``#`` comments are
skipped; a UTF-8 byte-order mark, as Excel writes, is ignored), or NumPy ``.npy``. Everything is
read and checked before anything is printed, and a bad file gives one line naming the file and the
row. Limits: a text file holds at most 16 MiB and 1,000,000 rows, a ``.npy`` file at most
8,388,608 (2**23) numbers, and one run measures at most 1,000,000 distributions; devices such as
/dev/zero are refused.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._common import CLIError, dumps_json, fmt, unit_name
from ._inputs import MAX_ROWS, read_npy, read_text, stat_input

__all__ = [
    "Distributions",
    "compute_joint",
    "parse_base",
    "parse_inline",
    "read_distributions",
    "run",
]

_INLINE = re.compile(r"^[\s0-9eE.+\-,;]*$")
_TOLERANCE = 1e-6


@dataclass
class Distributions:
    """Probabilities read from one source, with what is needed to report on them."""

    name: str  # "--p" or "--q"
    source: str  # "inline" or the file name
    values: np.ndarray  # at least 1-D, float64
    lines: list[int] | None  # for text files, the file line of each row (1-based)

    def label(self) -> str:
        """The source's name for messages: the file, or e.g. ``--p (inline)``."""
        return f"{self.name} (inline)" if self.source == "inline" else self.source

    def where(self, row: int) -> str:
        """Where row ``row`` (0-based) came from, for error messages."""
        if self.source == "inline":
            return f"{self.name} (inline), row {row + 1}"
        if self.lines is not None and self.lines[row] != row + 1:
            return f"{self.source}, row {row + 1} (line {self.lines[row]})"
        return f"{self.source}, row {row + 1}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--p",
        metavar="P",
        help="the distribution(s) P: inline numbers '0.5,0.5' (rows separated by ';') or a "
        "file (.csv, .txt/whitespace, .npy) with one distribution per row",
    )
    source.add_argument(
        "--joint",
        metavar="FILE",
        help="a joint probability table p(x, y) (rows: values of X, columns: values of Y), in "
        "the same forms (a file, or inline rows); shows H(X), H(Y), H(X,Y), H(Y|X), H(X|Y) and "
        "the mutual information I(X;Y)",
    )
    parser.add_argument(
        "--q",
        metavar="Q",
        help="the distribution(s) Q, in the same forms; with Q the cross-entropy H(P,Q), "
        "D_KL(P||Q) and the Jensen-Shannon divergence are shown too. A single Q row is "
        "compared with every P row (and the other way round)",
    )
    parser.add_argument(
        "--base",
        type=parse_base,
        default=2.0,
        help="logarithm base: 2 for bits (default), e for nats, 10 for hartleys, any b > 0, b != 1",
    )
    parser.add_argument(
        "--axis",
        type=int,
        default=-1,
        help="axis holding the probabilities: -1 (default) = each row is a distribution, "
        "0 = each column is one (for 2-D inputs)",
    )
    parser.add_argument(
        "--normalize",
        action="store_true",
        help="rescale each distribution to sum to 1 (by default a distribution whose sum is "
        f"not 1 within {_TOLERANCE:g} is an error; infoloss never renormalises silently)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def parse_base(text: str) -> float:
    """``--base``: a number > 0 and != 1, or ``e``.

    Examples
    --------
    >>> parse_base("2"), parse_base("e") == math.e, parse_base("10")
    (2.0, True, 10.0)
    """
    if text.strip().lower() == "e":
        return math.e
    try:
        base = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or 'e': {text!r}") from None
    if not (base > 0 and base != 1 and math.isfinite(base)):
        raise argparse.ArgumentTypeError(f"must be positive and different from 1; got {text}")
    return base


def _parse_fields(fields: list[str], where: str) -> list[float]:
    out = []
    for col, field in enumerate(fields, start=1):
        if field == "":
            raise CLIError(f"{where}: empty field in column {col}")
        try:
            out.append(float(field))
        except ValueError:
            raise CLIError(f"{where}: {field!r} in column {col} is not a number") from None
    return out


def _split(line: str) -> list[str]:
    if "," in line or ";" in line:
        return [f.strip() for f in re.split(r"[,;]", line)]
    return line.split()


def _rows_to_array(rows: list[list[float]], wheres: list[str]) -> np.ndarray:
    width = len(rows[0])
    for row, where in zip(rows, wheres, strict=True):
        if len(row) != width:
            raise CLIError(
                f"{where}: has {len(row)} values but the first row has {width} (ragged rows)"
            )
    return np.array(rows, dtype=np.float64)


def parse_inline(text: str, name: str = "--p") -> np.ndarray:
    """Numbers given on the command line: ``'0.5,0.5'`` or ``'0.9 0.1; 0.5 0.5'``.

    Examples
    --------
    >>> parse_inline("0.5,0.5")
    array([0.5, 0.5])
    >>> parse_inline("0.9,0.1;0.5,0.5")
    array([[0.9, 0.1],
           [0.5, 0.5]])
    """
    chunks = text.split(";")
    if all(not c.strip() for c in chunks):
        raise CLIError(f"{name}: no numbers given")
    rows: list[list[float]] = []
    wheres: list[str] = []
    if len(chunks) > 1 and not chunks[-1].strip():
        chunks.pop()  # a trailing ';'
    for i, chunk in enumerate(chunks, start=1):
        where = f"{name} (inline), row {i}"
        fields = [f.strip() for f in chunk.split(",")] if "," in chunk else chunk.split()
        if not chunk.strip():
            raise CLIError(f"{where}: empty row")
        rows.append(_parse_fields(fields, where))
        wheres.append(where)
    arr = _rows_to_array(rows, wheres)
    return arr[0] if arr.shape[0] == 1 else arr


def _parse_text(text: str, path: str) -> tuple[np.ndarray, list[int]]:
    rows: list[list[float]] = []
    wheres: list[str] = []
    lines: list[int] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        row_no = len(rows) + 1
        if row_no > MAX_ROWS:
            raise CLIError(f"{path}: has more than {MAX_ROWS:,} rows, the limit")
        where = f"{path}, row {row_no}" + (f" (line {lineno})" if lineno != row_no else "")
        rows.append(_parse_fields(_split(line), where))
        wheres.append(where)
        lines.append(lineno)
    if not rows:
        raise CLIError(f"{path}: no numbers found")
    return _rows_to_array(rows, wheres), lines


def read_distributions(spec: str, name: str) -> Distributions:
    """Read ``--p``/``--q``: a file if ``spec`` names one, else inline numbers.

    Files are read within the limits of :mod:`infoloss.cli._inputs` (16 MiB of text, 2**23
    numbers in a ``.npy``); a file that cannot be opened or read is a :class:`CLIError` naming it.
    """
    st = stat_input(spec, name)
    if st is not None:
        if spec.lower().endswith(".npy"):
            return Distributions(name, spec, read_npy(spec, name, st), None)
        values, lines = _parse_text(read_text(spec, name, st), spec)
        return Distributions(name, spec, values, lines)
    if _INLINE.match(spec) and re.search(r"[0-9]", spec):
        return Distributions(name, "inline", parse_inline(spec, name), None)
    raise CLIError(f"{name} {spec}: no such file (and not a list of numbers like 0.5,0.5)")


def _validate(d: Distributions, axis: int, normalize: bool) -> np.ndarray:
    """Check entries and sums; return the values with ``axis`` moved last (rows x classes)."""
    v = d.values
    if not -v.ndim <= axis < v.ndim:
        raise CLIError(f"--axis {axis} is out of range for {d.name} with shape {v.shape}")
    # Entries, in the order of the source (its rows are the last axis).
    source_rows = v.reshape(-1, v.shape[-1])
    bad = ~np.isfinite(source_rows) | (source_rows < 0)
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        value = float(source_rows[i, j])
        what = "is negative" if value < 0 else "is not finite"
        raise CLIError(f"{d.where(i)}: entry {fmt(value)} in column {j + 1} {what}")
    # Sums, one per distribution (a column of the source when --axis 0 on a table).
    moved = np.moveaxis(v, axis, -1)
    totals = moved.reshape(-1, moved.shape[-1]).sum(axis=-1)
    wrong = (totals <= 0) if normalize else (np.abs(totals - 1.0) > _TOLERANCE)
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        transposed = v.ndim == 2 and axis in (0, -2)
        label = f"{d.label()}, column {i + 1}" if transposed else d.where(i)
        total = float(totals[i])
        if total <= 0:
            raise CLIError(f"{label}: all entries are 0; not a distribution")
        raise CLIError(f"{label}: sums to {fmt(total, 8)}, not 1 (pass --normalize to rescale)")
    if normalize:
        moved = moved / moved.sum(axis=-1, keepdims=True)
    return moved


def _count(v: np.ndarray) -> str:
    return str(v.shape[0]) if v.ndim == 2 else "x".join(map(str, v.shape[:-1])) or "1"


def compute(
    p: Distributions, q: Distributions | None, *, base: float, axis: int, normalize: bool
) -> dict[str, Any]:
    """Check the inputs and compute every measure, row by row (the ``--json`` output)."""
    import infoloss

    pv = _validate(p, axis, normalize)
    qv = _validate(q, axis, normalize) if q is not None else None
    lib_base = None if base == math.e else base
    if q is not None and qv is not None:
        if pv.shape[-1] != qv.shape[-1]:
            raise CLIError(
                f"P and Q do not match: {p.label()} has {pv.shape[-1]} classes per "
                f"distribution but {q.label()} has {qv.shape[-1]}"
            )
        try:
            shape = np.broadcast_shapes(pv.shape[:-1], qv.shape[:-1])
        except ValueError:
            raise CLIError(
                f"P and Q do not match: {p.label()} has {_count(pv)} distributions but "
                f"{q.label()} has {_count(qv)} (give as many rows, or a single row)"
            ) from None
        pv = np.broadcast_to(pv, (*shape, pv.shape[-1]))
        qv = np.broadcast_to(qv, (*shape, qv.shape[-1]))
    count = math.prod(pv.shape[:-1])
    if count > MAX_ROWS:
        raise CLIError(
            f"{count:,} distributions to measure (shape {tuple(pv.shape)}, the last axis the "
            f"classes); at most {MAX_ROWS:,} are measured in one run"
        )
    pr = pv.reshape(-1, pv.shape[-1])
    columns: dict[str, np.ndarray] = {"entropy_p": infoloss.entropy(pr, base=lib_base)}
    if qv is not None:
        qr = qv.reshape(-1, qv.shape[-1])
        columns["entropy_q"] = infoloss.entropy(qr, base=lib_base)
        columns["cross_entropy"] = infoloss.cross_entropy(pr, qr, base=lib_base)
        columns["kl_divergence"] = infoloss.kl_divergence(pr, qr, base=lib_base)
        columns["js_divergence"] = infoloss.js_divergence(pr, qr, base=lib_base)
    n = pr.shape[0]
    index = [list(i) for i in np.ndindex(*pv.shape[:-1])] if pv.ndim > 1 else [[]]
    rows = []
    for i in range(n):
        row: dict[str, Any] = {"row": i + 1}
        if pv.ndim > 2:
            row["index"] = index[i]
        row.update({k: float(v[i]) for k, v in columns.items()})
        rows.append(row)
    return {
        "base": base,
        "unit": unit_name(lib_base),
        "axis": axis,
        "normalized": normalize,
        "p": {"source": p.source, "shape": list(p.values.shape)},
        "q": None if q is None else {"source": q.source, "shape": list(q.values.shape)},
        "rows": rows,
    }


_HEADERS = {
    "entropy_p": "H(P)",
    "entropy_q": "H(Q)",
    "cross_entropy": "H(P,Q)",
    "kl_divergence": "D_KL(P||Q)",
    "js_divergence": "JS(P,Q)",
}


def render(result: dict[str, Any]) -> str:
    """An aligned table, one line per distribution."""
    keys = [k for k in _HEADERS if k in result["rows"][0]]
    head = ["index" if "index" in result["rows"][0] else "row"] + [_HEADERS[k] for k in keys]
    body = [
        [str(r["row"]) if "index" not in r else ",".join(map(str, r["index"]))]
        + [fmt(r[k]) for k in keys]
        for r in result["rows"]
    ]
    widths = [max(len(line[c]) for line in [head, *body]) for c in range(len(head))]
    out = [
        "  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    out += ["  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in body]
    src = f"P: {result['p']['source']}"
    if result["q"] is not None:
        src += f", Q: {result['q']['source']}"
    notes = [f"{src}; unit: {result['unit']}"]
    if result["q"] is not None:
        b = result["base"]
        js_max = 1.0 if b == 2 else math.log(2) / math.log(b)
        notes.append(
            f"H(P,Q) = H(P) + D_KL(P||Q); JS(P,Q) is symmetric and at most "
            f"{fmt(js_max)} {result['unit'] if js_max != 1 else 'bit'}"
        )
    return "\n".join([*out, "", *notes])


def compute_joint(table: Distributions, *, base: float, normalize: bool) -> dict[str, Any]:
    """Check a joint table and compute its measures (the ``--joint`` JSON output)."""
    import infoloss

    v = table.values
    if v.ndim != 2:
        raise CLIError(
            f"{table.label()}: a joint table must be 2-D (rows: X, columns: Y); got shape {v.shape}"
        )
    bad = ~np.isfinite(v) | (v < 0)
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        value = float(v[i, j])
        what = "is negative" if value < 0 else "is not finite"
        raise CLIError(f"{table.where(i)}: entry {fmt(value)} in column {j + 1} {what}")
    total = float(v.sum())
    if total <= 0:
        raise CLIError(f"{table.label()}: all entries are 0; not a joint distribution")
    if normalize:
        v = v / total
    elif abs(total - 1.0) > _TOLERANCE:
        raise CLIError(
            f"{table.label()}: the table sums to {fmt(total, 8)}, not 1 (pass --normalize to "
            "rescale, e.g. a table of counts)"
        )
    lb = None if base == math.e else base
    measures = {
        "entropy_x": infoloss.entropy(v.sum(axis=1), base=lb),
        "entropy_y": infoloss.entropy(v.sum(axis=0), base=lb),
        "joint_entropy": infoloss.entropy(v.reshape(-1), base=lb),
        "conditional_entropy_y_given_x": infoloss.conditional_entropy(v, given=0, base=lb),
        "conditional_entropy_x_given_y": infoloss.conditional_entropy(v, given=1, base=lb),
        "mutual_information": infoloss.mutual_information(v, base=lb),
    }
    return {
        "base": base,
        "unit": unit_name(lb),
        "normalized": normalize,
        "joint": {"source": table.source, "shape": list(table.values.shape)},
        "measures": {k: float(x) for k, x in measures.items()},
    }


_JOINT_HEADERS = {
    "entropy_x": "H(X)",
    "entropy_y": "H(Y)",
    "joint_entropy": "H(X,Y)",
    "conditional_entropy_y_given_x": "H(Y|X)",
    "conditional_entropy_x_given_y": "H(X|Y)",
    "mutual_information": "I(X;Y)",
}


def render_joint(result: dict[str, Any]) -> str:
    """One line per measure, then the identities that link them."""
    width = max(len(h) for h in _JOINT_HEADERS.values())
    lines = [f"{_JOINT_HEADERS[k].ljust(width)}  {fmt(v)}" for k, v in result["measures"].items()]
    nx, ny = result["joint"]["shape"]
    lines += [
        "",
        f"joint: {result['joint']['source']} ({nx} values of X x {ny} of Y); "
        f"unit: {result['unit']}",
        "I(X;Y) = H(X) + H(Y) - H(X,Y) = H(Y) - H(Y|X); 0 when X and Y are independent",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.joint is not None:
        if args.q is not None:
            raise CLIError("--q cannot be combined with --joint (a joint table is one input)")
        if args.axis != -1:
            raise CLIError("--axis does not apply to --joint (rows are X, columns are Y)")
        table = read_distributions(args.joint, "--joint")
        result = compute_joint(table, base=args.base, normalize=args.normalize)
        print(dumps_json(result) if args.json else render_joint(result))
        return 0
    p = read_distributions(args.p, "--p")
    q = read_distributions(args.q, "--q") if args.q is not None else None
    result = compute(p, q, base=args.base, axis=args.axis, normalize=args.normalize)
    print(dumps_json(result) if args.json else render(result))
    return 0
