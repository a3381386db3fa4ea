"""remove() within bounded fds and memory, whatever the size and shape of its input
(the resource-limit audit): the parent directories of many listed entries, the
parallel walk under a low ``ulimit -n``, deep trees with long names, long flat lists.

Most users are not root and work under ``ulimit -n 1024`` (or less, inside a build
tool that holds its own files): these limits are the normal case.
"""

from __future__ import annotations

import contextlib
import errno
import functools
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


@pytest.mark.parametrize("kind", ["files=", "paths"])
def test_a_parent_replaced_after_its_check_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A parent closed after the check (more directories than fds) is reopened by the
    same way and must be the directory checked, by (st_dev, st_ino): one renamed away
    and replaced by another directory with the same names meanwhile is left alone,
    an ESTALE error naming each of its entries once; the rest goes."""
    site = tmp_path / "site"
    record = package(site)
    first = site / "pkg" / "sub0000"

    def swap() -> None:
        first.rename(site / "moved")
        first.mkdir()
        for f in ("a.py", "b.py"):
            (first / f).write_text("someone else's")

    if kind == "files=":
        real_passes = R.passes

        def passes(run: Any, roots: list[Any]) -> None:
            if not (site / "moved").exists():
                swap()
            real_passes(run, roots)

        monkeypatch.setattr(R, "passes", passes)
        call = functools.partial(linkstrategy.remove, files=record[:-1], root=site)
    else:  # before the trash, journals and upgrades next to the roots are looked at
        real_prepare = R._prepare

        def prepare(run: Any, *, strict: bool) -> None:
            swap()
            real_prepare(run, strict=strict)

        monkeypatch.setattr(R, "_prepare", prepare)
        call = functools.partial(linkstrategy.remove, [site / p for p in record[:-1]])
    with fd_room(ROOM):
        r = call()
    assert sorted((e.path, e.errno) for e in r.errors) == [
        (str(first / "a.py"), errno.ESTALE),
        (str(first / "b.py"), errno.ESTALE),
    ]
    assert {p.read_text() for p in first.iterdir()} == {"someone else's"}
    assert sorted(os.listdir(site / "moved")) == ["a.py", "b.py"]
    assert len(list((site / "pkg").rglob("*.py"))) == 2


# -- the parallel walk under a low fd limit (finding I) ----------------------------------


def packages(root: Path, n: int = 120, files: int = 30, depth: int = 12) -> int:
    """``n`` packages, each ``files`` files and a chain ``depth`` directories deep; how
    many entries remove() counts (with ``root``)."""
    for i in range(n):
        d = root / f"d{i:03d}"
        (d / "/".join("abcdefghijklmnopqrstuvwxyz"[:depth])).mkdir(parents=True)
        for j in range(files):
            (d / f"f{j}").write_text("")
    return n * (1 + files + depth) + 1


@pytest.mark.parametrize("mode", ["network", "workers=64"])
def test_the_parallel_walk_fits_a_low_fd_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """With 100 fds to spare (a ``ulimit -n`` of about 110), the parallel walk -- 32
    threads on a network mount, or ``workers=64`` -- takes no more fds than there are:
    its threads and the directories it holds open are fitted to the limit (it held
    about 7 fds a thread whatever the limit, and left thousands of entries with
    EMFILE errors)."""
    root = tmp_path / "tree"
    n = packages(root)
    workers = None
    if mode == "network":
        from linkstrategy._mounts import find_mount

        monkeypatch.setenv("LINKSTRATEGY_NETWORK_MOUNTS", find_mount(str(tmp_path)).mount_point)
    else:
        workers = 64
    before = open_fds()
    with fd_room(100):
        r = linkstrategy.remove(root, workers=workers)
    assert r.errors == () and r.deferred == (), r.errors[:3]
    assert r.removed == n and not root.exists()
    assert open_fds() == before


def test_the_parallel_walk_holds_at_most_its_share_of_directories_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The directories a parallel walk keeps open between its jobs are counted against
    what its fds allow (here 3, with 4 threads): past that a job empties its
    subdirectory serially, so the walk's fds stay within frames + jobs x their share."""
    from linkstrategy import _tree

    root = tmp_path / "tree"

    def grow(d: Path, depth: int) -> int:
        d.mkdir(parents=True)
        (d / "f").write_text("")
        return 2 + (sum(grow(d / f"s{k}", depth - 1) for k in range(3)) if depth else 0)

    n = sum(grow(root / f"d{i:02d}", 4) for i in range(12)) + 1
    monkeypatch.setattr(_tree, "fit_threads", lambda workers: (4, 3))
    held: list[int] = []
    fds: list[int] = []
    real = _tree._ParallelWalk.take_frame

    def take_frame(self: Any) -> bool:
        ok: bool = real(self)
        held.append(self.frames)
        fds.append(open_fds())
        return ok

    monkeypatch.setattr(_tree._ParallelWalk, "take_frame", take_frame)
    before = open_fds()
    r = linkstrategy.remove(root, workers=4)
    assert r.errors == () and r.removed == n and not root.exists()
    assert held and max(held) <= 3
    assert max(fds) - before <= 3 + 5 * _tree._JOB_FDS


def test_a_deep_tree_keeps_few_directories_open_in_the_parallel_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jobs go _PARALLEL_DEPTH levels deep, then empty their subtree serially: a 300-deep
    chain (with a file a level) holds a few directories open a thread, not one a level
    up to what the fds allow."""
    from linkstrategy import _tree

    root = tmp_path / "tree"
    d = root
    for i in range(300):
        d = d / "d"
        d.mkdir(parents=True)
        (d / "f").write_text(str(i))
    held: list[int] = []
    real = _tree._ParallelWalk.take_frame

    def take_frame(self: Any) -> bool:
        ok: bool = real(self)
        held.append(self.frames)
        return ok

    monkeypatch.setattr(_tree._ParallelWalk, "take_frame", take_frame)
    r = linkstrategy.remove(root, workers=4)
    assert r.errors == () and r.removed == 601 and not root.exists()
    assert held and max(held) <= 8  # _PARALLEL_DEPTH (not read from it: a mutant changes it)


# -- memory of deep trees (finding E) ----------------------------------------------------

NAME = "n" * 200


def deep_tree(top: Path, depth: int) -> None:
    """``top`` and a chain ``depth`` directories deep below it, 200-byte names, a file in
    each: made through fds (the paths are far longer than PATH_MAX)."""
    top.mkdir()
    cur = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(NAME, dir_fd=cur)
            os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=cur))
            nxt = os.open(NAME, os.O_RDONLY | os.O_DIRECTORY, dir_fd=cur)
            os.close(cur)
            cur = nxt
    finally:
        os.close(cur)


def traced_peak(fn: Any) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("call", ["remove", "gc"])
def test_memory_of_a_deep_tree_grows_with_its_depth_not_its_square(
    tmp_path: Path, remove_walk: str, call: str
) -> None:
    """A frame of the walk keeps its name and its parent, not its whole path: a chain
    twice as deep (200-byte names) takes about twice the memory, not four times (it took
    900 MB at 3,000 levels)."""
    peaks = []
    for depth in (500, 1000):
        top = tmp_path / f"t{depth}"
        deep_tree(top, depth)
        if call == "remove":
            peaks.append(traced_peak(functools.partial(linkstrategy.remove, top, check=True)))
        else:
            peaks.append(traced_peak(functools.partial(linkstrategy.gc, top, recursive=True)))
            linkstrategy.remove(top, check=True)
        assert not top.exists()
    assert peaks[1] < 3 * peaks[0], peaks
    assert peaks[1] < 8 << 20, peaks  # quadratic: 100 MB at 1,000 levels


# -- long flat lists (finding F) ---------------------------------------------------------

ENTRIES = 20_000


@pytest.mark.parametrize("kind", ["files=", "paths"])
def test_a_long_list_costs_a_few_hundred_bytes_an_entry(tmp_path: Path, kind: str) -> None:
    """remove(files=) or remove([paths]) of 20,000 entries: the memory traced while it
    runs stays under 480 bytes an entry (it was about 1.7 KiB: a full root each, with its
    own path strings, statx result, Protect and Outcome, kept to the end; now about
    320)."""
    site = tmp_path / "site"
    site.mkdir()
    for i in range(ENTRIES):
        (site / f"f{i:06d}").touch()
    if kind == "files=":
        names = [f"f{i:06d}" for i in range(ENTRIES)]
        call = functools.partial(linkstrategy.remove, files=names, root=site, check=True)
    else:
        paths = [str(site / f"f{i:06d}") for i in range(ENTRIES)]
        call = functools.partial(linkstrategy.remove, paths, check=True)
    peak = traced_peak(call)
    assert os.listdir(site) == []
    assert peak / ENTRIES < 480, f"{peak / ENTRIES:.0f} bytes an entry"


def test_a_path_checked_as_a_file_and_a_tree_by_its_turn_goes_as_a_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A root checked as a file is unlinked without a statx first; if it has become a
    directory meanwhile (EISDIR), it is looked at afresh and removed as a tree in the
    same pass -- as remove() of a path does with whatever is there -- not retried as a
    busy file until the budget ends and then moved into the trash."""
    import linkstrategy._removal as RM

    target = tmp_path / "x"
    target.write_text("a file when checked")
    real = RM.passes

    def passes(run: Any, roots: list[Any]) -> None:
        if target.is_file():
            target.unlink()
            (target / "sub").mkdir(parents=True)
            (target / "sub" / "f").write_text("a tree by its turn")
        real(run, roots)

    monkeypatch.setattr(RM, "passes", passes)
    r = linkstrategy.remove(target, budget=0.2)
    assert r.errors == () and r.deferred == () and r.removed == 3, r
    assert not target.exists() and os.listdir(tmp_path) == []
