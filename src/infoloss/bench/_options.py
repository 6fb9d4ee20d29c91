"""The benchmark's command line: parsed and checked in full before anything is timed.

Every usage error is one line, ``infoloss bench: error: ...``, and exit code 2. The result of a
successful parse is one :class:`Options` object that the runner carries whole.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from dataclasses import dataclass
from typing import NoReturn

from ._peers import PEERS, installed

PROG = "infoloss bench"

PARTS = ("losses", "bounds", "torch-autograd", "linear")
"""The parts of a run: the loss table, the memory-bound rows (each kernel's time over a copy of
its logits, beside its bound), infoloss on torch tensors through autograd, and
:func:`infoloss.linear_cross_entropy` in child processes."""

DEFAULT_SHAPES = ((4096, 32000), (1024, 131072), (65536, 10))
DEFAULT_SIGMOID_SHAPES = ((4096, 1000),)
DEFAULT_TORCH_AUTOGRAD = (4096, 32000)
DEFAULT_LINEAR = ((8192, 1024, 32768),)
QUICK_SHAPES = ((256, 2000), (64, 8192), (4096, 10))
QUICK_SIGMOID_SHAPES = ((256, 100),)
QUICK_TORCH_AUTOGRAD = (256, 2000)
QUICK_LINEAR = ((256, 64, 2048),)
BOUNDS_SHAPE = (4096, 32000)
QUICK_BOUNDS_SHAPE = (256, 2000)

LINEAR_VARIANTS = {
    "fused": "infoloss",
    "unfused": "infoloss",
    "torch": "torch",
    "torch-chunked": "torch",
    "jax": "jax",
}
"""Each variant of the linear benchmark and the peer it belongs to."""


@dataclass(frozen=True)
class Options:
    """One validated benchmark request."""

    parts: frozenset[str]
    peers: tuple[str, ...]  # in timing order, installed ones only
    shapes: tuple[tuple[int, int], ...]
    sigmoid_shapes: tuple[tuple[int, int], ...]
    torch_autograd: tuple[int, int]
    linear: tuple[tuple[int, int, int], ...]
    linear_variants: tuple[str, ...]
    bounds_shape: tuple[int, int]
    repeat: int
    budget_s: float
    compile_time: bool
    json_path: str | None
    skipped_peers: tuple[str, ...] = ()  # not installed, left out of a default run


class UsageError(ValueError):
    """A bad command line; the message is the one line shown after ``error:``."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line: ``infoloss bench: error: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(prog: str = PROG, description: str | None = None) -> argparse.ArgumentParser:
    """The benchmark's argument parser (its ``error`` prints one line and exits with 2)."""
    p = _Parser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="small shapes and 2 repeats (for tests)")
    p.add_argument(
        "--only",
        metavar="PART[,PART]",
        help=f"run only these parts: {', '.join(PARTS)} (default: losses, plus bounds and "
        "torch-autograd (when PyTorch is installed) unless --quick, plus linear with --linear)",
    )
    p.add_argument(
        "--peers",
        metavar="NAME[,NAME]",
        help=f"time only these contenders: {', '.join(PEERS)} (default: all that are installed)",
    )
    p.add_argument(
        "--shapes",
        metavar="NxC[,NxC]",
        help="sparse softmax CE shapes (default 4096x32000,1024x131072,65536x10)",
    )
    p.add_argument(
        "--sigmoid-shapes", metavar="NxC[,NxC]", help="sigmoid CE shapes (default 4096x1000)"
    )
    p.add_argument(
        "--repeat", type=int, help="timed runs per measurement (default 7; 2 with --quick)"
    )
    p.add_argument(
        "--budget",
        type=float,
        default=10.0,
        help="seconds per measurement after which slow peers get fewer repeats (default 10)",
    )
    p.add_argument(
        "--no-compile-time",
        action="store_true",
        help="skip the first-call (compile) times in fresh processes (skipped with --quick)",
    )
    p.add_argument(
        "--torch-autograd",
        metavar="NxC",
        help="shape of the torch-autograd part (default 4096x32000), or 'off'",
    )
    p.add_argument(
        "--linear",
        metavar="N,H,V[;N,H,V]",
        help="also benchmark linear_cross_entropy at these sizes, each variant in a child "
        "process (slow: minutes), e.g. '8192,1024,32768;2048,1024,131072'",
    )
    p.add_argument(
        "--framework",
        choices=("torch", "jax"),
        help="time the framework paths under autodiff instead (fwd+bwd against F.cross_entropy / "
        "F.linear_cross_entropy or optax; INFOLOSS_DISABLE_FAST=1 times the generic code on CPU)",
    )
    p.add_argument("--device", help="device of --framework (cpu, cuda, ...; default cpu)")
    p.add_argument("--json", metavar="PATH", help="write the raw figures to this file")
    return p


# --------------------------------------------------------------------------- value parsers


def _names(flag: str, text: str, valid: tuple[str, ...]) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise UsageError(f"{flag}: give at least one of {', '.join(valid)}")
    bad = [s for s in names if s not in valid]
    if bad:
        raise UsageError(
            f"{flag}: unknown {', '.join(map(repr, bad))}; choose from {', '.join(valid)}"
        )
    return names


def _ints(flag: str, item: str, sep: str, count: int, example: str) -> tuple[int, ...]:
    fields = item.lower().strip().split(sep)
    try:
        values = tuple(int(f) for f in fields)
    except ValueError:
        values = ()
    if len(values) != count:
        raise UsageError(f"{flag}: {item.strip()!r} is not of the form {example}")
    if min(values) < 1:
        raise UsageError(f"{flag}: sizes must be at least 1, got {item.strip()!r}")
    return values


def parse_shapes(flag: str, text: str) -> tuple[tuple[int, int], ...]:
    """``"4096x32000,65536x10"`` as ``((4096, 32000), (65536, 10))``.

    Examples
    --------
    >>> parse_shapes("--shapes", "4096x32000, 65536X10")
    ((4096, 32000), (65536, 10))
    """
    items = [s for s in text.split(",") if s.strip()]
    if not items:
        raise UsageError(f"{flag}: give shapes like 4096x32000,65536x10")
    out = []
    for item in items:
        n, c = _ints(flag, item, "x", 2, "NxC, e.g. 4096x32000")
        out.append((n, c))
    return tuple(out)


def parse_linear(text: str) -> tuple[tuple[int, int, int], ...]:
    """``"8192,1024,32768;2048,1024,131072"`` as a tuple of (N, H, V).

    Examples
    --------
    >>> parse_linear("8192,1024,32768; 2048,1024,131072")
    ((8192, 1024, 32768), (2048, 1024, 131072))
    """
    items = [s for s in text.split(";") if s.strip()]
    if not items:
        raise UsageError("--linear: give sizes like 8192,1024,32768")
    out = []
    for item in items:
        n, h, v = _ints("--linear", item, ",", 3, "N,H,V, e.g. 8192,1024,32768")
        out.append((n, h, v))
    return tuple(out)


def _memory_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return None


def _check_fits(flag: str, what: str, need: int) -> None:
    have = _memory_bytes()
    if have is not None and need > have:
        raise UsageError(
            f"{flag}: {what} needs about {need / 2**30:.1f} GiB, more than this machine's "
            f"{have / 2**30:.1f} GiB of memory"
        )


def check_json_path(path: str) -> None:
    """The file must be creatable: its directory exists and takes a new file."""
    if os.path.isdir(path):
        raise UsageError(f"--json: {path!r} is a directory")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"--json: directory {directory!r} does not exist")
    try:
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".infoloss-bench-", suffix=".tmp")
    except OSError as e:
        raise UsageError(f"--json: cannot write in {directory!r} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)


# --------------------------------------------------------------------------- the whole request


def options(args: argparse.Namespace) -> Options:
    """Check the parsed arguments together; raises :class:`UsageError` on the first problem."""
    if args.repeat is not None and args.repeat < 1:
        raise UsageError(f"--repeat: must be at least 1, got {args.repeat}")
    if not (math.isfinite(args.budget) and args.budget > 0):
        raise UsageError(f"--budget: must be a positive number of seconds, got {args.budget}")
    repeat = args.repeat if args.repeat is not None else (2 if args.quick else 7)

    if args.peers is None:
        peers = [p for p in PEERS if installed(p)]
        skipped = tuple(p for p in PEERS if not installed(p))
    else:
        wanted = set(_names("--peers", args.peers, PEERS))
        missing = [p for p in PEERS if p in wanted and not installed(p)]
        if missing:
            raise UsageError(f"--peers: {', '.join(missing)} is not installed")
        peers, skipped = [p for p in PEERS if p in wanted], ()

    torch_shape: tuple[int, int] | None = None
    if args.torch_autograd is not None and args.torch_autograd.strip().lower() != "off":
        given = parse_shapes("--torch-autograd", args.torch_autograd)
        if len(given) != 1:
            raise UsageError("--torch-autograd: give one shape NxC, or 'off'")
        torch_shape = given[0]

    if args.only is not None:
        parts = set(_names("--only", args.only, PARTS))
        conflicts = (
            ("--shapes", args.shapes, "losses"),
            ("--sigmoid-shapes", args.sigmoid_shapes, "losses"),
            ("--torch-autograd", torch_shape, "torch-autograd"),
            ("--linear", args.linear, "linear"),
        )
        for flag, value, part in conflicts:
            if value is not None and part not in parts:
                raise UsageError(f"{flag}: has no effect unless --only includes {part}")
        if "torch-autograd" in parts and args.torch_autograd is not None and torch_shape is None:
            raise UsageError("--torch-autograd: 'off' contradicts --only torch-autograd")
    else:
        parts = {"losses"}
        if args.linear is not None:
            parts.add("linear")
        if torch_shape is not None:
            parts.add("torch-autograd")
        elif args.torch_autograd is None and not args.quick and "torch" in peers:
            parts.add("torch-autograd")
        if not args.quick and "infoloss" in peers and "copy" in peers:
            parts.add("bounds")
    if "torch-autograd" in parts and not installed("torch"):
        raise UsageError("torch-autograd: PyTorch is not installed")

    shapes = parse_shapes("--shapes", args.shapes) if args.shapes is not None else None
    sshapes = (
        parse_shapes("--sigmoid-shapes", args.sigmoid_shapes)
        if args.sigmoid_shapes is not None
        else None
    )
    shapes = shapes or (QUICK_SHAPES if args.quick else DEFAULT_SHAPES)
    sshapes = sshapes or (QUICK_SIGMOID_SHAPES if args.quick else DEFAULT_SIGMOID_SHAPES)
    torch_shape = torch_shape or (QUICK_TORCH_AUTOGRAD if args.quick else DEFAULT_TORCH_AUTOGRAD)
    linear = parse_linear(args.linear) if args.linear is not None else None
    linear = linear or (QUICK_LINEAR if args.quick else DEFAULT_LINEAR)

    variants: tuple[str, ...] = ()
    if "linear" in parts:
        variants = tuple(v for v, peer in LINEAR_VARIANTS.items() if peer in peers)
        if not variants:
            raise UsageError(
                "--linear: none of the selected peers has a linear variant (infoloss, torch, jax)"
            )
    if "losses" in parts:
        for flag, shs, arrays in (("--shapes", shapes, 4), ("--sigmoid-shapes", sshapes, 5)):
            n, c = max(shs, key=lambda s: s[0] * s[1])
            _check_fits(flag, f"{n}x{c}", arrays * n * c * 4)
    bounds_shape = QUICK_BOUNDS_SHAPE if args.quick else BOUNDS_SHAPE
    if "bounds" in parts:
        n, c = bounds_shape
        _check_fits("--only bounds", f"{n}x{c}", 7 * n * c * 4)
    if "torch-autograd" in parts:
        n, c = torch_shape
        _check_fits("--torch-autograd", f"{n}x{c}", 3 * n * c * 4)
    if "linear" in parts:
        for n, h, v in linear:
            _check_fits("--linear", f"{n},{h},{v}", 4 * (2 * n * v + 2 * (n * h + v * h)))

    if args.json is not None:
        check_json_path(args.json)
    return Options(
        parts=frozenset(parts),
        peers=tuple(peers),
        shapes=shapes,
        sigmoid_shapes=sshapes,
        torch_autograd=torch_shape,
        linear=linear,
        linear_variants=variants,
        bounds_shape=bounds_shape,
        repeat=repeat,
        budget_s=float(args.budget),
        compile_time=not (args.no_compile_time or args.quick)
        and "losses" in parts
        and "infoloss" in peers,
        json_path=args.json,
        skipped_peers=skipped,
    )
