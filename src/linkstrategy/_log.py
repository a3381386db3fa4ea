"""The ``linkstrategy`` logger, without importing :mod:`logging` until a record can go somewhere.

``import logging`` costs about 12 ms here (it pulls in traceback, string, weakref,
threading): a third of what importing place() may cost (issue: start-up).  Until
the application has imported :mod:`logging`, no handler can have been configured,
so a DEBUG or INFO record could only be dropped (the last-resort handler prints
WARNING and above): it is dropped without importing logging.  WARNING and above
import logging and go through ``logging.getLogger("linkstrategy")`` as usual.
Records name the caller's line, not this module's (``stacklevel``).

The command line collects WARNING and above itself (:class:`Collect`) to print them
once at its end, so a command never imports logging either.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # mypy treats any name TYPE_CHECKING as true; typing stays unloaded
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Collect", "log"]

NAME = "linkstrategy"

#: While a :class:`Collect` is active: where WARNING and above go instead of logging.
_sink: list[str] | None = None


def _logger() -> Any:
    import logging

    return logging.getLogger(NAME)


class _Log:
    """The few ``logging.Logger`` methods the library calls."""

    __slots__ = ()

    def debug(self, msg: str, *args: object, exc_info: bool = False) -> None:
        if "logging" in sys.modules:
            _logger().debug(msg, *args, exc_info=exc_info, stacklevel=2)

    def info(self, msg: str, *args: object, exc_info: bool = False) -> None:
        if "logging" in sys.modules:
            _logger().info(msg, *args, exc_info=exc_info, stacklevel=2)

    def warning(self, msg: str, *args: object, exc_info: bool = False) -> None:
        if _sink is not None:
            _sink.append(msg % args if args else msg)
            return
        _logger().warning(msg, *args, exc_info=exc_info, stacklevel=2)

    def error(self, msg: str, *args: object, exc_info: bool = False) -> None:
        if _sink is not None:
            _sink.append(msg % args if args else msg)
            return
        _logger().error(msg, *args, exc_info=exc_info, stacklevel=2)


log = _Log()


class Collect:
    """``with Collect() as messages:`` -- WARNING and above, formatted, into the list
    ``messages`` instead of logging, for the block (one command of the CLI: one per
    process, so one at a time)."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self._saved: list[str] | None = None

    def __enter__(self) -> list[str]:
        global _sink
        self._saved, _sink = _sink, self.messages
        return self.messages

    def __exit__(self, *exc: object) -> None:
        global _sink
        _sink = self._saved
