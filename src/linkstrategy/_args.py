"""What the public functions accept, checked once where they are called.

Paths are what :mod:`os` takes: ``str``, ``bytes``, or an :class:`os.PathLike` of
either.  A path becomes the ``str`` :func:`os.fsdecode` makes of it (undecodable
bytes as surrogate escapes, so every name on disk stays reachable), and the code
below the public functions sees only ``str`` -- the bytes path would otherwise meet
``str`` constants deep inside and fail there with an error that names neither the
argument nor the path.

A list of paths (``files=``, ``last=``) is never one path: a ``str`` iterates as its
characters, so one given there is refused instead of placing or removing ``"/"``,
``"p"``, ``"k"``, ...  Thread counts are whole numbers of at least one; seconds are
numbers, never NaN (every comparison with NaN is false: a NaN ``min_age`` would keep
everything, silently).

Only :mod:`os`, :mod:`errno` and :mod:`._errors` are imported here: the public
modules import this one, and ``import linkstrategy`` stays cheap.
"""

from __future__ import annotations

import errno
import os

from ._errors import InvalidArgument

TYPE_CHECKING = False  # mypy treats any name TYPE_CHECKING as true; typing stays unloaded
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import TypeVar

    T = TypeVar("T")

#: A path argument of a public function, as :mod:`os` takes one.
AnyPath = str | bytes | os.PathLike[str] | os.PathLike[bytes]

_WHAT_A_PATH_IS = "a path (str, bytes or os.PathLike)"


def path(value: object, what: str) -> str:
    """``value`` as a ``str`` path (:func:`os.fsdecode` of it); :class:`TypeError`
    naming ``what`` (``"place(): src"``) and the type when it is not a path."""
    if isinstance(value, str):  # the common case first: nothing to do
        return value
    if isinstance(value, (bytes, os.PathLike)):
        try:
            got = os.fspath(value)
        except TypeError:  # an __fspath__ that returns something else
            pass
        else:
            return got if isinstance(got, str) else os.fsdecode(got)
    raise TypeError(f"{what} must be {_WHAT_A_PATH_IS}, not {type(value).__name__}")


def optional_path(value: object, what: str) -> str | None:
    """:func:`path`, or None for None (an argument whose default is None)."""
    return None if value is None else path(value, what)


def is_one_path(value: object) -> bool:
    """Whether ``value`` is one path (not a list of them): ``str``, ``bytes``, PathLike."""
    return isinstance(value, (str, bytes, os.PathLike))


def many(value: T, what: str) -> T:
    """``value`` itself, once it is known to be an iterable of paths and not one path
    (its entries are left to :func:`path` where they are used: a ``files=`` list of
    thousands of ``str`` is not copied or walked here).  ``what``: ``"files="``."""
    if is_one_path(value):
        raise TypeError(
            f"{what} takes an iterable of paths (e.g. a RECORD's), not one "
            f"{type(value).__name__}: put it in a list"
        )
    try:
        iter(value)  # type: ignore[call-overload]  # any object may come from a caller
    except TypeError:
        raise TypeError(f"{what} takes an iterable of paths, not {type(value).__name__}") from None
    return value


def path_list(value: Iterable[object], what: str) -> list[str]:
    """Every entry of the iterable ``value`` (:func:`many`) as a ``str`` path."""
    return [x if isinstance(x, str) else path(x, f"{what} entry") for x in many(value, what)]


def paths(value: Iterable[object], what: str) -> Iterator[str]:
    """:func:`path_list`, lazily, for a list consumed once entry by entry (the check
    that it is a list is not lazy: it is made here, before anything is done)."""
    return (x if isinstance(x, str) else path(x, f"{what} entry") for x in many(value, what))


def workers(value: object, what: str) -> int | None:
    """A thread count: None (the default: chosen by filesystem) or an int of at least 1.
    0 or less is :class:`InvalidArgument` (a :class:`ValueError`): no thread could run
    the work, and clamping it to 1 would hide the caller's mistake."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int (at least 1) or None, not {type(value).__name__}")
    if value < 1:
        raise InvalidArgument(errno.EINVAL, f"{what} must be at least 1 (or None), not {value}")
    return value


def seconds(value: object, what: str) -> float:
    """A time in seconds (``budget=``, ``min_age=``): an int or a float, not NaN.  A
    negative time counts as none, so a caller's remaining time can be passed as it is."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{what} must be a number of seconds, not {type(value).__name__}")
    if value != value:  # NaN: every comparison with it is false
        raise InvalidArgument(errno.EINVAL, f"{what} must be a number of seconds, not NaN")
    return float(value)
