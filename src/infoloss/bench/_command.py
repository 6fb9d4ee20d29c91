"""The command line shared by ``infoloss bench`` and ``python -m infoloss.bench.linear``.

The package (:mod:`infoloss.bench`) and :mod:`.linear` both call :func:`run_command` with their own
name and docstring; this module imports neither of them, and :mod:`._run` only when it runs.
"""

from __future__ import annotations

import re
import sys

__all__ = ["run_command"]


def run_command(argv: list[str], prog: str, doc: str | None) -> int:
    """Parse and check ``argv``, run the benchmark, write the JSON file; the exit code.

    ``prog`` names the command in messages; ``doc``, the calling entry point's module docstring,
    becomes the ``--help`` description (reST roles and literals stripped).
    """
    from ._options import UsageError, build_parser, options
    from ._run import run, write_json

    description = re.sub(r":\w+:`~?([^`]+)`", r"\1", doc or "").replace("``", "")
    parser = build_parser(prog, description=description)
    try:
        args = parser.parse_args(argv)
        try:
            opts = options(args)
        except UsageError as e:
            parser.error(str(e))
    except SystemExit as e:  # --help and usage errors (already printed)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    if args.framework is not None:
        from ._framework import run_framework

        linear = opts.linear if args.linear is not None else None
        result = run_framework(args.framework, args.device, args.quick, args.repeat, linear)
    else:
        result = run(opts)
    if opts.json_path is not None:
        try:
            write_json(opts.json_path, result)
        except OSError as e:
            print(
                f"{prog}: error: cannot write {opts.json_path}: {e.strerror or e}", file=sys.stderr
            )
            return 1
        print(f"raw figures written to {opts.json_path}")
    return 0
