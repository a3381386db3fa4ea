"""remove() within bounded fds and memory, whatever the size and shape of its input
(the resource-limit audit): the parent directories of many listed entries, the
parallel walk under a low ``ulimit -n``, deep trees with long names, long flat lists.

Most users are not root and work under ``ulimit -n 1024`` (or less, inside a build
tool that holds its own files): these limits are the normal case.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import linkstrategy
import linkstrategy._remove as R
from linkstrategy import RemoveError


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@contextlib.contextmanager
def fd_room(room: int) -> Iterator[None]:
    """RLIMIT_NOFILE lowered to the fds open now plus ``room`` (as a small ``ulimit -n``
    leaves a library once its host has its own files open)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_fds() + room, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- the parent directories of listed entries (finding B) --------------------------------

DIRS = 300  # directories holding listed entries: many more than the fds left (ROOM)
ROOM = 64


def package(site: Path, dirs: int = DIRS) -> list[str]:
    """A package of ``dirs`` directories with two files each, and its dist-info; its
    RECORD (the dist-info's files last)."""
    record = []
    for i in range(dirs):
        d = site / "pkg" / f"sub{i:04d}"
        d.mkdir(parents=True)
        for f in ("a.py", "b.py"):
            (d / f).write_text(f)
            record.append(f"pkg/sub{i:04d}/{f}")
    info = site / "pkg-1.0.dist-info"
    info.mkdir()
    (info / "RECORD").write_text("\n".join(record))
    return [*record, "pkg-1.0.dist-info/RECORD"]


def test_an_uninstall_spanning_more_directories_than_fds_left(tmp_path: Path) -> None:
    """remove(files=) of a RECORD over 300 directories with 64 fds to spare: each
    parent is open while its entries are worked on, not for the whole call (it held
    one fd a directory and failed with EMFILE before removing anything)."""
    site = tmp_path / "site"
    record = package(site)
    (site / "other").mkdir()  # another package's: stays
    before = open_fds()
    with fd_room(ROOM):
        r = linkstrategy.remove(files=record, root=site, last=["pkg-1.0.dist-info"])
    assert r.errors == () and r.removed == 2 * DIRS + DIRS + 1 + 2, r
    assert sorted(os.listdir(site)) == ["other"]
    assert open_fds() == before


def test_a_list_of_paths_in_more_directories_than_fds_left(tmp_path: Path) -> None:
    """remove([paths]) of 300 files in 300 directories with 64 fds to spare."""
    site = tmp_path / "site"
    package(site)
    paths = [site / "pkg" / f"sub{i:04d}" / "a.py" for i in range(DIRS)]
    before = open_fds()
    with fd_room(ROOM):
        r = linkstrategy.remove(paths, last=[str(site / "pkg-1.0.dist-info" / "RECORD")])
    assert r.errors == () and r.removed == DIRS + 1, r
    left = sorted(p.name for p in (site / "pkg").rglob("*.py"))
    assert left == ["b.py"] * DIRS and not (site / "pkg-1.0.dist-info" / "RECORD").exists()
    assert open_fds() == before


def test_a_symlink_on_the_way_of_the_last_entry_refuses_the_call_under_few_fds(
    tmp_path: Path,
) -> None:
    """Every entry is still checked before anything is removed when the parents are
    closed between their groups: a symlink on the way of the last of 600 entries (its
    directory the 300th) refuses the call, nothing gone."""
    site = tmp_path / "site"
    record = package(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "b.py").write_text("not the package's")
    last = site / "pkg" / f"sub{DIRS - 1:04d}"
    for f in ("a.py", "b.py"):
        (last / f).unlink()
    last.rmdir()
    last.symlink_to(elsewhere)
    with fd_room(ROOM), pytest.raises(RemoveError) as ei:
        linkstrategy.remove(files=record[:-1], root=site)
    assert ei.value.errno == errno.ELOOP
    assert len(list((site / "pkg").rglob("*.py"))) == 2 * DIRS - 2
    assert (elsewhere / "b.py").read_text() == "not the package's"


def test_a_parent_replaced_after_its_check_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A parent closed after the check (more directories than fds) is reopened by the
    same way and must be the directory checked, by (st_dev, st_ino): one renamed away
    and replaced by another directory with the same names meanwhile is left alone,
    an ESTALE error naming its entries; the rest goes."""
    site = tmp_path / "site"
    record = package(site)
    first = site / "pkg" / "sub0000"
    real_passes = R.passes
    swapped: list[bool] = []

    def passes(run: Any, roots: list[Any]) -> None:
        if not swapped:
            swapped.append(True)
            first.rename(site / "moved")
            first.mkdir()
            for f in ("a.py", "b.py"):
                (first / f).write_text("someone else's")
        real_passes(run, roots)

    monkeypatch.setattr(R, "passes", passes)
    with fd_room(ROOM):
        r = linkstrategy.remove(files=record[:-1], root=site)
    assert swapped
    assert sorted((e.path, e.errno) for e in r.errors) == [
        (str(first / "a.py"), errno.ESTALE),
        (str(first / "b.py"), errno.ESTALE),
    ]
    assert {p.read_text() for p in first.iterdir()} == {"someone else's"}
    assert sorted(os.listdir(site / "moved")) == ["a.py", "b.py"]
    assert len(list((site / "pkg").rglob("*.py"))) == 2
