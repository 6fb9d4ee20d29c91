"""The ``infoloss`` command: the tutorial's experiments, a calculator, a training run, benchmarks.

Subcommands:

``infoloss demo``
    The tutorial, number by number: information content, entropy, KL and cross-entropy of the
    "will the sun explode tomorrow" events, then softmax + cross-entropy and sigmoid +
    cross-entropy on the tutorial's one-layer network, each fused loss beside its textbook
    definition, and the gradients from :func:`infoloss.value_and_grad`. Needs only NumPy.
``infoloss measure``
    Entropy, cross-entropy, KL and JS divergence of distributions given inline or in files.
``infoloss train``
    Softmax or sigmoid cross-entropy training on scikit-learn's 8x8 digits, in plain NumPy.
``infoloss bench``
    The fused-kernel benchmarks (:mod:`infoloss.bench`).

Exit codes: 0 on success; 2 with a one-line message on bad input, before any work is done (and
for a missing optional dependency, with the ``pip install "infoloss[cli]"`` command that provides
it); 130 after Ctrl-C; 1 with a traceback for a bug in infoloss itself.

Examples
--------
>>> from infoloss.cli import main
>>> main(["measure", "--p", "0.5,0.5"])
row  H(P)
---  ----
  1     1
<BLANKLINE>
P: inline; unit: bits
0
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from typing import NoReturn

from ._common import INSTALL_HINT, CLIError

__all__ = ["main"]

PROG = "infoloss"


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line: ``infoloss demo: error: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _version() -> str:
    from infoloss import __version__

    return __version__


def _doc(text: str | None) -> str:
    """A module docstring as plain text for --help (reST markup removed).

    Examples
    --------
    >>> _doc("``infoloss demo`` uses :func:`infoloss.softmax`.")
    'infoloss demo uses infoloss.softmax.'
    """
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text or "")
    return text.replace("``", "").strip()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``infoloss`` command and its subcommands."""
    from . import _demo, _measure, _train

    parser = _Parser(
        prog=PROG,
        description="Information-theoretic losses from the command line: the tutorial's "
        "experiments, a calculator for distributions, a training run on real images.",
        epilog=f"Run '{PROG} COMMAND --help' for a command's options. train and --plot need "
        f"the optional dependencies: {INSTALL_HINT}",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    demo = sub.add_parser(
        "demo",
        help="the tutorial's experiments, number by number",
        description=_doc(_demo.__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _demo.add_arguments(demo)
    demo.set_defaults(run=_demo.run)

    measure = sub.add_parser(
        "measure",
        help="entropy, cross-entropy, KL and JS divergence of given distributions; mutual "
        "information of a joint table",
        description=_doc(_measure.__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        f"  {PROG} measure --p 0.5,0.5 --q 0.9,0.1\n"
        f"  {PROG} measure --p labels.csv --q predictions.csv --base e --json\n"
        f"  {PROG} measure --p counts.npy --axis 0 --normalize\n"
        f"  {PROG} measure --joint table.csv --normalize",
    )
    _measure.add_arguments(measure)
    measure.set_defaults(run=_measure.run)

    train = sub.add_parser(
        "train",
        help="train softmax/sigmoid cross-entropy on the 8x8 digits (plain NumPy)",
        description=_doc(_train.__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        f"  {PROG} train --epochs 20 --plot train.png\n"
        f"  {PROG} train --task multi --hidden 64 --label-smoothing 0.05",
    )
    _train.add_arguments(train)
    train.set_defaults(run=_train.run)

    # Listed here for --help; its arguments are handed to infoloss.bench.main untouched.
    sub.add_parser(
        "bench",
        help="benchmark the fused losses against their peers "
        f"(run '{PROG} bench --help' for its options)",
        add_help=False,
    )
    return parser


def _bench(argv: list[str]) -> int:
    """Hand ``argv`` to ``infoloss.bench.main``, which reports its own usage errors (exit 2)."""
    try:
        bench = importlib.import_module("infoloss.bench")
    except ModuleNotFoundError as e:
        if e.name in ("infoloss.bench", "infoloss"):
            raise CLIError(
                "the benchmark module infoloss.bench is not available in this installation"
            ) from None
        if e.name is not None and e.name.startswith("infoloss."):
            raise  # a module of infoloss itself is missing: a bug, not the user's input
        raise CLIError(
            f"needs {e.name}, which is not installed; install it with: {INSTALL_HINT}"
        ) from None
    rc = bench.main(argv)
    return int(rc) if rc is not None else 0


def main(argv: list[str] | None = None) -> int:
    """Run the ``infoloss`` command on ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Bad input (a :class:`~infoloss.cli._common.CLIError` or an
    :class:`~infoloss.errors.InfolossError`) prints one line, ``infoloss CMD: error: ...``, and
    returns 2; Ctrl-C prints ``infoloss CMD: interrupted`` and returns 130. Any other exception
    is a bug and propagates (the ``infoloss`` script then prints its traceback and exits 1).
    """
    from infoloss.errors import InfolossError

    args_list = list(sys.argv[1:] if argv is None else argv)
    command = args_list[0] if args_list else None
    prog = f"{PROG} {command}" if command in ("demo", "measure", "train", "bench") else PROG
    try:
        if command == "bench":
            return _bench(args_list[1:])
        parser = build_parser()
        try:
            args = parser.parse_args(args_list)
        except SystemExit as e:  # --help, --version and usage errors
            code = e.code
            return code if isinstance(code, int) else (0 if code is None else 2)
        return int(args.run(args))
    except (CLIError, InfolossError) as e:
        _fail(prog, str(e))
        return 2
    except BrokenPipeError:  # pragma: no cover - e.g. `infoloss demo | head -3`
        # Python flushes stdout again at exit; point it at devnull so that does not fail too.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def _fail(prog: str, message: str) -> None:
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"{prog}: error: {first}", file=sys.stderr)
