"""The C loop: the optional extension ``linkstrategy._speedups``, if built and wanted.

It runs place()'s per-file loop without the GIL.  It is built at install on Linux
where a C compiler is found (setup.py), so "not built" covers both other systems
and a missing compiler; ``$LINKSTRATEGY_NO_SPEEDUPS`` (non-empty) switches it off.
Its own module, apart from :mod:`._sys`, so that ``linkstrategy --version`` can say
whether it is in use without loading the platform bindings.
"""

from __future__ import annotations

import os
from types import ModuleType

__all__ = ["load_speedups", "speedups_status"]


def speedups_status() -> tuple[ModuleType | None, str]:
    """(the C extension or None, why it is or is not in use)."""
    if os.environ.get("LINKSTRATEGY_NO_SPEEDUPS"):
        return None, "not in use (LINKSTRATEGY_NO_SPEEDUPS is set)"
    try:
        from . import _speedups
    except ImportError as e:
        return None, f"not in use (not built when installed: Linux and a C compiler only; {e})"
    return _speedups, "in use"


def load_speedups() -> ModuleType | None:
    """The C extension ``linkstrategy._speedups``, or None (see :func:`speedups_status`)."""
    return speedups_status()[0]
