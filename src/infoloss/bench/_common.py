"""What every contender module shares: the call and row types, and the infoloss row names.

:mod:`._peers`, :mod:`._torch`, :mod:`._jax` and :mod:`._run` import these from here (and from
nothing else in the package), so that the contender modules do not import each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Fn = Callable[[], Any]
Rows = dict[str, dict[str, Fn]]
"""``{row name: {op: call}}``, e.g. ``{"numpy": {"fwd": f, "fwd+bwd": g}}``."""

FAST = "infoloss fast"
FAST_OUT = "infoloss fast, out="
GENERIC = "infoloss generic"
