"""``python -m infoloss.cli``: the same as the ``infoloss`` command."""

from infoloss.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
