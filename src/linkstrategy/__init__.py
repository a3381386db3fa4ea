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

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Fallback",
    "InvalidArgument",
    "LinkStrategyError",
    "Mount",
    "PlaceError",
    "PlaceReport",
    "Plan",
    "Probe",
    "RemoveError",
    "RemoveReport",
    "Skipped",
    "Step",
    "StrategyUnavailable",
    "Traits",
    "__version__",
    "gc",
    "place",
    "place_many",
    "plan",
    "probe",
    "remove",
    "replace",
    "staging_dir",
]

_LAZY = {
    "Fallback": "._place",
    "PlaceReport": "._place",
    "Skipped": "._place",
    "place": "._place",
    "place_many": "._place",
    "Plan": "._plan",
    "Step": "._plan",
    "plan": "._plan",
    "Probe": "._probe",
    "probe": "._probe",
    "Mount": "._mounts",
    "Traits": "._classify",
    "InvalidArgument": "._errors",
    "LinkStrategyError": "._errors",
    "PlaceError": "._errors",
    "RemoveError": "._errors",
    "StrategyUnavailable": "._errors",
    "RemoveReport": "._remove",
    "gc": "._remove",
    "remove": "._remove",
    "replace": "._txn",
    "staging_dir": "._txn",
}

if TYPE_CHECKING:
    from ._classify import Traits
    from ._errors import (
        InvalidArgument,
        LinkStrategyError,
        PlaceError,
        RemoveError,
        StrategyUnavailable,
    )
    from ._mounts import Mount
    from ._place import Fallback, PlaceReport, Skipped, place, place_many
    from ._plan import Plan, Step, plan
    from ._probe import Probe, probe
    from ._remove import RemoveReport, gc, remove
    from ._txn import replace, staging_dir


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'linkstrategy' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
