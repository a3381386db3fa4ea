"""Fixtures that need mounts, registered where they are defined.

``@mount_fixture`` is ``@pytest.fixture`` that also records the fixture's name:
every test whose fixture closure holds such a name is marked ``root`` at
collection (``pytest -m "not root"`` deselects them), and ``needs=`` (a function
returning a skip reason or None) is checked before the fixture body runs.

Without the privileges a fixture needs, its tests skip with the reason; with
``LINKSTRATEGY_REQUIRE_MOUNTS=1`` (CI) the skip becomes a failure.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Iterable
from typing import Any, NoReturn, TypeVar

import pytest

F = TypeVar("F", bound=Callable[..., Any])

REQUIRE_ENV = "LINKSTRATEGY_REQUIRE_MOUNTS"

#: names of the fixtures registered with ``mount_fixture`` (filled at import time)
MOUNT_FIXTURES: set[str] = set()


def require_mounts() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def skip_or_fail(msg: str) -> NoReturn:
    """Skip with ``msg``, or fail if the run requires mounts (CI)."""
    if require_mounts():
        pytest.fail(f"{msg} ({REQUIRE_ENV} is set)", pytrace=False)
    pytest.skip(msg)


def _check(needs: Callable[[], str | None] | None, what: str) -> None:
    if needs is None:
        return
    reason = needs()
    if reason:
        skip_or_fail(f"{what}: {reason}" if what else reason)


def mount_fixture(
    fn: F | None = None,
    *,
    scope: str = "function",
    needs: Callable[[], str | None] | None = None,
    what: str = "",
) -> Any:
    """``@mount_fixture`` or ``@mount_fixture(scope=..., needs=..., what=...)``."""

    def deco(f: F) -> F:
        MOUNT_FIXTURES.add(f.__name__)
        if inspect.isgeneratorfunction(f):

            @functools.wraps(f)
            def gen_wrapper(*a: Any, **kw: Any) -> Any:
                _check(needs, what)
                yield from f(*a, **kw)

            wrapped: Any = gen_wrapper
        else:

            @functools.wraps(f)
            def wrapper(*a: Any, **kw: Any) -> Any:
                _check(needs, what)
                return f(*a, **kw)

            wrapped = wrapper
        return pytest.fixture(scope=scope)(wrapped)  # type: ignore[call-overload,no-any-return]

    return deco(fn) if fn is not None else deco


def _uses_mount(item: pytest.Item) -> bool:
    if MOUNT_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    # ``@pytest.mark.parametrize("fixture", ["xfs_reflink", ...])`` + getfixturevalue()
    callspec = getattr(item, "callspec", None)
    params = callspec.params.values() if callspec is not None else ()
    return any(isinstance(v, str) and v in MOUNT_FIXTURES for v in params)


def mark_root(items: Iterable[pytest.Item]) -> None:
    """Mark ``root`` every item that uses a mount fixture: directly, through other
    fixtures, or by name as a parameter (for ``request.getfixturevalue``).  Tests
    that mount by hand (``support.mountutil``) carry ``@pytest.mark.root`` themselves."""
    for item in items:
        if _uses_mount(item):
            item.add_marker(pytest.mark.root)
