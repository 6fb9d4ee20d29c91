"""``python -m infoloss.bench``: the same as ``infoloss bench``."""

from __future__ import annotations

if __name__ == "__main__":
    import sys

    from . import main

    sys.exit(main())
