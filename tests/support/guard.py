"""What a test may not touch: a digest of a tree, and a fixture asserting that
everything outside a target stayed the same.

``tree_digest(root, exclude=...)`` maps every path under ``root`` (relative,
``"."`` for root itself) to what it is: type, permission bits, owner, and the
sha256 of a file's content or a symlink's target.  Symlinks are never followed;
mounts below ``root`` are walked into (a write through a mount is a write).
Times and link counts are left out: reading is not a change, and hard-linking
a file from outside into the target is what place() does.

``outside_unchanged`` (a pytest fixture, registered in tests/conftest.py)::

    def test_x(tmp_path, outside_unchanged):
        outside = outside_unchanged(tmp_path, tmp_path / "dst")  # digest now
        ... run the code under test, which may write only below tmp_path/dst ...
        outside.check()  # or left to teardown

The digest of ``sandbox`` minus ``target`` must be equal before and after.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

Entry = tuple[str, int, int, int, str]  # (type, mode bits, uid, gid, sha256 or link target)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "dir"),
        (stat.S_ISREG, "file"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "chardev"),
        (stat.S_ISBLK, "blockdev"),
    ):
        if test(mode):
            return name
    return "other"


def _file_hash(path: str) -> str:
    h = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except PermissionError:
        return "<unreadable>"
    with os.fdopen(fd, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _entry(path: str, st: os.stat_result) -> Entry:
    kind = _kind(st.st_mode)
    if kind == "file":
        extra = _file_hash(path)
    elif kind == "symlink":
        extra = os.readlink(path)
    elif kind in ("chardev", "blockdev"):
        extra = str(st.st_rdev)
    else:
        extra = ""
    return (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, extra)


def _walk(root: str, skip: frozenset[str]) -> Iterator[tuple[str, os.stat_result]]:
    st = os.lstat(root)
    yield root, st
    if not stat.S_ISDIR(st.st_mode):
        return
    try:
        names = sorted(os.listdir(root))
    except PermissionError:
        return
    for name in names:
        p = os.path.join(root, name)
        if p in skip:
            continue
        try:
            yield from _walk(p, skip)
        except FileNotFoundError:  # gone between listdir and lstat: not there
            continue


def tree_digest(
    root: str | os.PathLike[str], exclude: Iterable[str | os.PathLike[str]] = ()
) -> dict[str, Entry]:
    """``{relative path: (type, mode bits, uid, gid, sha256 | link target)}`` for
    everything under ``root`` except the subtrees ``exclude`` (paths as given, not
    resolved: a symlink in ``exclude`` hides only the link)."""
    top = os.path.abspath(root)
    skip = frozenset(os.path.abspath(p) for p in exclude)
    out: dict[str, Entry] = {}
    if top in skip or not os.path.lexists(top):
        return out
    for path, st in _walk(top, skip):
        out[os.path.relpath(path, top)] = _entry(path, st)
    return out


def diff(before: dict[str, Entry], after: dict[str, Entry]) -> list[str]:
    """Human-readable differences between two digests (empty if equal)."""
    lines = []
    for p in sorted(before.keys() | after.keys()):
        a, b = before.get(p), after.get(p)
        if a == b:
            continue
        if a is None:
            lines.append(f"created: {p} {b}")
        elif b is None:
            lines.append(f"removed: {p} {a}")
        else:
            lines.append(f"changed: {p} {a} -> {b}")
    return lines


class OutsideGuard:
    """The digest of ``sandbox`` minus ``target`` taken at creation; ``check()`` compares."""

    def __init__(
        self, sandbox: Path, target: Path, exclude: Iterable[str | os.PathLike[str]] = ()
    ) -> None:
        self.sandbox, self.target = Path(sandbox), Path(target)
        self.exclude = [self.target, *(Path(p) for p in exclude)]
        self.before = tree_digest(self.sandbox, exclude=self.exclude)
        self.checked = False

    def check(self) -> None:
        self.checked = True
        after = tree_digest(self.sandbox, exclude=self.exclude)
        changes = diff(self.before, after)
        assert not changes, f"changed outside {self.target} (under {self.sandbox}):\n" + "\n".join(
            changes
        )


@pytest.fixture
def outside_unchanged() -> Iterator[type[OutsideGuard]]:
    """``outside_unchanged(sandbox, target, exclude=())`` takes the digest of everything
    under ``sandbox`` but outside ``target``; at ``.check()`` (or teardown, for the guards
    not checked yet) it must be the same."""
    made: list[OutsideGuard] = []

    class _Guard(OutsideGuard):
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, **kw)  # type: ignore[arg-type]
            made.append(self)

    yield _Guard
    for g in made:
        if not g.checked:
            g.check()
