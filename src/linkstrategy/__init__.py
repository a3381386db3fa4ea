"""linkstrategy: put files where installers need them by reflink, hardlink or copy.

The strategy is chosen per (source, destination) pair from what the filesystems
really support, tested live and cached; trees are removed reliably on network
filesystems (NFS, EFS, SMB, FUSE).

>>> import linkstrategy
>>> linkstrategy.probe("/tmp").mount_point.startswith("/")
True

The public names are loaded on first use, so ``import linkstrategy`` stays cheap
for the package managers that embed it.
"""

from __future__ import annotations

# Not ``from typing import TYPE_CHECKING``: typing costs milliseconds to import, and
# ``import linkstrategy`` must not.  mypy treats any name TYPE_CHECKING as true.
TYPE_CHECKING = False

__version__ = "0.1.0"

__all__ = [
    "Fallback",
    "InvalidArgument",
    "LinkStrategyError",
    "Mount",
    "MountTableError",
    "PlaceError",
    "PlaceReport",
    "Plan",
    "Probe",
    "RemoveError",
    "RemoveReport",
    "Skipped",
    "Step",
    "Strategy",
    "StrategyUnavailable",
    "Traits",
    "__version__",
    "clear_cache",
    "gc",
    "parse_mount_table",
    "place",
    "place_many",
    "plan",
    "probe",
    "remove",
    "replace",
    "staging_dir",
    "upgrade",
]

_LAZY = {
    "Fallback": "._place",
    "PlaceReport": "._place",
    "Skipped": "._place",
    "place": "._place",
    "place_many": "._place",
    "Plan": "._plan",
    "Step": "._plan",
    "Strategy": "._plan",
    "plan": "._plan",
    "Probe": "._probe",
    "clear_cache": "._probe",
    "probe": "._probe",
    "Mount": "._mounts",
    "MountTableError": "._mounts",
    "parse_mount_table": "._mounts",
    "Traits": "._classify",
    "InvalidArgument": "._errors",
    "LinkStrategyError": "._errors",
    "PlaceError": "._errors",
    "RemoveError": "._errors",
    "StrategyUnavailable": "._errors",
    "RemoveReport": "._tree",
    "gc": "._gc",
    "remove": "._remove",
    "replace": "._txn",
    "staging_dir": "._txn",
    "upgrade": "._upgrade",
}

if TYPE_CHECKING:
    # Type checkers see the real names (so ``linkstrategy.plcae`` and
    # ``strategy="hardlnk"`` are errors); the runtime loads them on first use.
    from typing import Any

    from ._classify import Traits
    from ._errors import (
        InvalidArgument,
        LinkStrategyError,
        PlaceError,
        RemoveError,
        StrategyUnavailable,
    )
    from ._gc import gc
    from ._mounts import Mount, MountTableError, parse_mount_table
    from ._place import Fallback, PlaceReport, Skipped, place, place_many
    from ._plan import Plan, Step, Strategy, plan
    from ._probe import Probe, clear_cache, probe
    from ._remove import remove
    from ._tree import RemoveReport
    from ._txn import replace, staging_dir
    from ._upgrade import upgrade
else:
    # Hidden from type checkers: a module ``__getattr__`` would make every
    # misspelt name ``Any`` for them.

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'linkstrategy' has no attribute {name!r}")
        # __import__, not importlib.import_module: the importlib package (with warnings)
        # is not loaded at start and need not be
        import sys

        full = __name__ + module
        __import__(full)
        value = getattr(sys.modules[full], name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(__all__))
