"""Idle workers join the C walk (``_speedups.place_tree``'s ``hungry``/``give``, the
board, ``_place._Walk``): one big package must not keep one thread busy while the
others wait, and the threads of one tree work on neighbouring directories.

A walk that sees the pool's flag ("a thread could take a job and none is queued")
while a subdirectory waits on its board gives the board away: the caller queues a
job whose walk takes from the same board -- the subdirectory found last first; with
nothing to take for a while, a directory another walk is reading, in turns.  Nothing
is handed over whole, so a board whose job never runs loses nothing: the walks on
it do the work.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_tree_walk import report_view, snapshot

import linkstrategy
from linkstrategy import _place

fast = _place._fast
needs_c = pytest.mark.skipif(
    fast is None or not hasattr(fast, "flag"), reason="the C extension is not built"
)


def big_tree(root: Path, dirs: int = 60, files: int = 30) -> list[str]:
    """``big/`` with ``dirs`` subdirectories of ``files`` files (a package far larger
    than the walk's sharing threshold), a small one beside it; the file paths."""
    out = []
    for i in range(dirs):
        d = root / "big" / f"d{i:02}"
        (d / "sub").mkdir(parents=True)
        for j in range(files):
            (d / f"m{j}.py").write_text(f"{i} {j}\n")
            out.append(f"big/d{i:02}/m{j}.py")
        (d / "sub" / "leaf.txt").write_text("leaf\n")
        out.append(f"big/d{i:02}/sub/leaf.txt")
    os.chmod(root / "big" / "d07", 0o555)  # a mode restored after the walks
    (root / "small").mkdir()
    (root / "small" / "one.py").write_text("one\n")
    out.append("small/one.py")
    return out


@pytest.fixture
def gifts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the shared directories taken by another job (the work is real)."""
    taken: list[int] = []
    real = _place._gift_job

    def counted(*args: Any) -> None:
        taken.append(1)
        real(*args)

    monkeypatch.setattr(_place, "_gift_job", counted)
    yield taken


@needs_c
@pytest.mark.parametrize(
    ("strategy", "fsync"), [("hardlink", False), ("copy", False), ("hardlink", True)]
)
def test_a_big_package_is_shared_with_an_idle_worker(
    tmp_path: Path, gifts: list[int], strategy: str, fsync: bool
) -> None:
    src = tmp_path / "src"
    big_tree(src)
    before = _fds()
    try:
        r = linkstrategy.place(src, tmp_path / "dst", strategy=strategy, workers=2, fsync=fsync)
        assert gifts, "no directory was shared: one thread did the big package alone"
        assert _fds() == before  # every shared directory let go by the last of its walks
        assert snapshot(tmp_path / "dst") == snapshot(src)
        assert r.files == 60 * 31 + 1 and r.dirs == 1 + 2 + 60 * 2
        assert r.by_strategy[strategy] == r.files
    finally:
        subprocess.run(["chmod", "-R", "u+rwx", str(tmp_path)], check=False)


@needs_c
def test_shared_walks_report_as_one(
    tmp_path: Path, gifts: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same tree and report as a walk that shares nothing (workers=1)."""
    src = tmp_path / "src"
    big_tree(src)
    (src / "big" / "d03" / "link").symlink_to("m0.py")
    os.mkfifo(src / "big" / "d41" / "fifo")
    try:
        shared = linkstrategy.place(src, tmp_path / "two", strategy="copy", workers=2)
        assert gifts
        alone = linkstrategy.place(src, tmp_path / "one", strategy="copy", workers=1)
        assert report_view(shared) == report_view(alone)
        assert snapshot(tmp_path / "two") == snapshot(tmp_path / "one")
    finally:
        subprocess.run(["chmod", "-R", "u+rwx", str(tmp_path)], check=False)


@needs_c
def test_shared_walks_with_a_file_list(tmp_path: Path, gifts: list[int]) -> None:
    """files=: the listed entries every part of a walk saw are added up before the
    check that none is missing -- no "the source changed" for a walk in parts, and a
    listed file that is not there still fails the call, leaving nothing."""
    src = tmp_path / "src"
    files = big_tree(src)
    (src / "big" / "d05" / "unlisted.py").write_text("not listed\n")
    try:
        listed = [f for f in files if not f.startswith("big/d09/")]
        r = linkstrategy.place(
            src, tmp_path / "dst", strategy="hardlink", workers=2, files=listed,
            copy=["big/d1*/m1.py"],
        )  # fmt: skip
        assert gifts
        assert r.files == len(listed)
        assert not (tmp_path / "dst" / "big" / "d09").exists()
        assert not (tmp_path / "dst" / "big" / "d05" / "unlisted.py").exists()
        copied = tmp_path / "dst" / "big" / "d13" / "m1.py"
        assert os.stat(copied).st_ino != os.stat(src / "big" / "d13" / "m1.py").st_ino
        gifts.clear()
        with pytest.raises(linkstrategy.PlaceError) as e:
            linkstrategy.place(
                src, tmp_path / "bad", strategy="hardlink", workers=2,
                files=[*listed, "big/d58/missing.py"],
            )  # fmt: skip
        assert "big/d58/missing.py" in str(e.value)
        assert not (tmp_path / "bad").exists()
        assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]
    finally:
        subprocess.run(["chmod", "-R", "u+rwx", str(tmp_path)], check=False)


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _walk(
    src: Path,
    dst: Path,
    give: Any,
    frame: Any = None,
    strategy: int | None = None,
    hungry: bool = True,
) -> Any:
    """place_tree by hand, with the hungry flag up (``hungry``: a thread is idle)."""
    flag = fast.flag()
    fast.flag_set(flag, hungry)
    sfd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    dfd = os.open(dst, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return fast.place_tree(
            fast.HARDLINK if strategy is None else strategy, sfd, dfd, 0o022, True, False,
            True, True, 16, None, False, flag, give, frame,
        )  # fmt: skip
    finally:
        os.close(sfd)
        os.close(dfd)


@pytest.fixture
def by_hand(tmp_path: Path) -> Iterator[tuple[Path, Path, int]]:
    """A source tree, an empty destination, and the fds open before a walk."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    big_tree(src)
    dst.mkdir()
    yield src, dst, _fds()
    subprocess.run(["chmod", "-R", "u+rwx", str(tmp_path)], check=False)


@needs_c
def test_a_share_never_taken_loses_nothing_and_closes_its_fds(
    tmp_path: Path, by_hand: tuple[Path, Path, int]
) -> None:
    src, dst, before = by_hand
    frames: list[Any] = []
    files, _b, _cfr, dirs, entries, rest, modes, _l, _p, _pr, _x = _walk(src, dst, frames.append)
    assert frames, "the walk never shared"
    assert (files, dirs, entries, rest) == (60 * 31 + 1, 1 + 2 + 60 * 2, 60 * 31 + 1, [])
    assert modes == [("big/d07", 0o555)]  # the caller gives it its mode at the end
    os.chmod(dst / "big" / "d07", 0o555)
    assert snapshot(dst) == snapshot(src)
    # the walk ended with the board done: a capsule that still holds it holds no fd
    assert _fds() == before
    frames.clear()  # never taken: the board is freed
    (tmp_path / "again").mkdir()
    _walk(src, tmp_path / "again", frames.append)
    # taken after the giver read it to the end: nothing left in it
    out = _walk(src, dst, frames.append, frames[0])
    assert out[0] == out[4] == 0
    with pytest.raises(ValueError, match="taken already"):
        _walk(src, dst, frames.append, frames[0])
    frames.clear()
    assert _fds() == before


@needs_c
def test_give_raising_stops_the_walk_with_its_error(by_hand: tuple[Path, Path, int]) -> None:
    """The walk stops with subdirectories still on its board: they hold their parents
    open until the last holder of the board -- here the capsule give() kept -- lets
    it go."""
    src, dst, before = by_hand
    kept: list[Any] = []

    def give(frame: Any) -> None:
        kept.append(frame)
        raise RuntimeError("no queue")

    with pytest.raises(RuntimeError, match="no queue"):
        _walk(src, dst, give)
    assert kept and _fds() > before
    kept.clear()  # never taken
    assert _fds() == before


@needs_c
def test_a_copy_walk_gives_its_board_as_it_starts(by_hand: tuple[Path, Path, int]) -> None:
    """Cloning or copying, a walk gives its board before it reads anything (so that
    in a batch the next free thread joins it); what give() raises then stops it
    before it places a file."""
    src, dst, before = by_hand
    (src / "top.py").write_text("a file the walk would place first\n")
    kept: list[Any] = []

    def give(frame: Any) -> None:
        kept.append(frame)
        raise RuntimeError("no queue")

    with pytest.raises(RuntimeError, match="no queue"):
        _walk(src, dst, give, strategy=fast.COPY)
    assert len(kept) == 1 and os.listdir(dst) == []
    kept.clear()
    assert _fds() == before


@needs_c
@pytest.mark.skipif(
    os.geteuid() == 0, reason="needs an unprivileged user: root reads any directory"
)
def test_an_error_in_a_shared_part_fails_the_call_and_leaves_nothing(
    tmp_path: Path, gifts: list[int]
) -> None:
    """A directory no walk can read, deep in the package that is shared: the call
    fails naming it, after every part has ended, and the destination is as it was."""
    src = tmp_path / "src"
    big_tree(src)
    locked = src / "big" / "d55" / "sub"
    os.chmod(locked, 0)
    site = tmp_path / "site"
    site.mkdir()
    (site / "other").write_text("not ours\n")
    try:
        with pytest.raises(linkstrategy.PlaceError) as e:
            linkstrategy.place(src, site, strategy="hardlink", workers=2)
        assert "big/d55/sub" in str(e.value)
        assert gifts, "the big package was not shared"
        assert sorted(os.listdir(site)) == ["other"]
        assert (site / "other").read_text() == "not ours\n"
    finally:
        subprocess.run(["chmod", "-R", "u+rwx", str(tmp_path)], check=False)


LIMITED = """
import resource, sys
import linkstrategy
from linkstrategy import _place
resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))
taken = []
real = _place._gift_job
_place._gift_job = lambda *a: (taken.append(1), real(*a))[1]
r = linkstrategy.place(sys.argv[1], sys.argv[2], strategy="hardlink", workers=2)
print(r.files, len(taken) > 0)
"""


@needs_c
def test_shared_deep_walks_stay_within_a_small_fd_limit(tmp_path: Path) -> None:
    """40 chains 14 levels deep under a 96-fd limit, shared between two threads: the
    walks hold two fds a level each, and a shared directory is let go by the last of
    them -- no fd is kept per share."""
    src = tmp_path / "src"
    for c in range(40):
        d = src / "big" / f"c{c}"
        for level in range(14):
            d = d / f"l{level}"
            d.mkdir(parents=True)
            for f in range(3):
                (d / f"f{f}.py").write_text(f"{c} {level} {f}\n")
    (src / "small").mkdir()
    (src / "small" / "one.py").write_text("one\n")
    cp = subprocess.run(
        [sys.executable, "-c", LIMITED, str(src), str(tmp_path / "dst")],
        capture_output=True,
        text=True,
    )
    assert cp.returncode == 0, cp.stderr[-2000:]
    assert cp.stdout.split() == [str(40 * 14 * 3 + 1), "True"]
    assert snapshot(tmp_path / "dst") == snapshot(src)


BOARD = """
import os, resource, sys, threading
from linkstrategy import _place
fast = _place._fast
src, dst, workers, depth = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
flag = fast.flag()
fast.flag_set(flag, True)
joined, parts, errors = [], [], []
def walk(sfd, dfd, cap):
    try:
        parts.append(fast.place_tree(
            fast.HARDLINK, sfd, dfd, 0o022, True, False, True, True, depth, None, False, flag,
            give, cap))
    except BaseException as e:
        errors.append(repr(e))
def give(cap):
    if len(joined) < workers - 1:
        t = threading.Thread(target=walk, args=(-1, -1, cap))
        joined.append(t)
        t.start()
        fast.flag_set(flag, len(joined) < workers - 1)
sfd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
dfd = os.open(dst, os.O_RDONLY | os.O_DIRECTORY)
fds = len(os.listdir("/proc/self/fd")) - 1  # not listdir's own
# the board's directories, and a source and a new file in flight per walk
limit = fds + 2 * depth + 2 * workers
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
walk(sfd, dfd, None)
for t in joined:
    t.join()
print(len(joined) + 1 - len(parts) - len(errors), errors)
print(sum(p[0] for p in parts), sorted(r for p in parts for r in p[5]))
print(*sorted(p[0] for p in parts))  # the files each walk placed
"""


def _board(src: Path, dst: Path, walks: int, depth: int) -> tuple[int, list[str], list[int]]:
    """``walks`` walks on one board by hand (BOARD): the files placed, the entries
    handed back, and the files each walk placed."""
    cp = subprocess.run(
        [sys.executable, "-c", BOARD, str(src), str(dst), str(walks), str(depth)],
        capture_output=True,
        text=True,
    )
    assert cp.returncode == 0, cp.stderr[-2000:]
    first, second, third = cp.stdout.splitlines()
    assert first == "0 []", first  # every walk ended, none failed
    files, handed = second.split(" ", 1)
    return int(files), ast.literal_eval(handed), [int(n) for n in third.split()]


@needs_c
def test_walks_on_one_board_keep_within_its_directory_bound(tmp_path: Path) -> None:
    """Four walks on one board with max_depth=3, under an fd limit that leaves room
    for three open directories and a file in flight per walk: a walk that would open
    one more hands the subdirectory back (the caller places it) instead of running
    out of fds, and nothing is lost."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    total = 0
    for i in range(12):
        a = src / f"a{i:02}"
        for j in range(12):
            b = a / f"b{j:02}"
            b.mkdir(parents=True)
            for k in range(3):
                (b / f"f{k}").write_text(f"{i} {j} {k}\n")
                total += 1
        (a / "top.py").write_text(f"{i}\n")
        total += 1
    dst.mkdir()
    files, handed_back, _each = _board(src, dst, 4, 3)
    assert handed_back, "no walk reached the bound: the test did not test it"
    below = 0
    for r in handed_back:  # directories, not made: every file below them is the caller's
        assert (src / r).is_dir() and not (dst / r).exists(), r
        below += sum(len(fs) for _d, _s, fs in os.walk(src / r))
    assert files + below == total


@needs_c
def test_a_big_flat_directory_is_read_in_turns(tmp_path: Path) -> None:
    """No subdirectory to take: a walk that joins reads the directory the other walk
    is reading, in turns, and each places what it read."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    for i in range(3000):
        (src / f"m{i}.py").write_text(f"{i}\n")
    files, handed_back, each = _board(src, dst, 2, 16)
    assert (files, handed_back) == (3000, [])
    assert len(each) == 2 and min(each) > 0, each
    assert snapshot(dst) == snapshot(src)


@needs_c
@pytest.mark.parametrize("strategy", ["copy", "hardlink"])
def test_a_free_thread_joins_a_walk_before_it_starts_another_package(
    tmp_path: Path, gifts: list[int], strategy: str
) -> None:
    """place_many of six packages on two threads: each walk that clones or copies gives
    its board once, ahead of the queued packages, so the two threads work on one
    package at a time (neighbouring directories).  (A hardlink walk gives only to an
    idle thread, which here depends on timing: see the next test.)"""
    jobs = []
    for p in range(6):
        src = tmp_path / "cache" / f"p{p}"
        for d in range(8):
            (src / f"pkg{p}" / f"d{d}").mkdir(parents=True)
            for f in range(4):
                (src / f"pkg{p}" / f"d{d}" / f"m{f}.py").write_text(f"{p} {d} {f}\n")
        jobs.append((src, tmp_path / "site"))
    (tmp_path / "site").mkdir()
    rs = linkstrategy.place_many(jobs, strategy=strategy, workers=2)
    assert [r.files for r in rs] == [32] * 6
    for p in range(6):
        assert snapshot(tmp_path / "site" / f"pkg{p}") == snapshot(
            tmp_path / "cache" / f"p{p}" / f"pkg{p}"
        )
    if strategy == "copy":
        assert len(gifts) >= 6


@needs_c
@pytest.mark.parametrize("hungry", [False, True])
@pytest.mark.parametrize("strategy", ["copy", "hardlink"])
def test_a_hardlink_walk_gives_only_to_an_idle_thread(
    by_hand: tuple[Path, Path, int], strategy: str, hungry: bool
) -> None:
    """With no thread idle (the flag down), a walk that copies gives its board once as
    it starts (the next free thread joins it before another package), and a hardlink
    walk keeps it: a Python job costs more than linking a directory's files.  With a
    thread idle, both give."""
    src, dst, _before = by_hand
    frames: list[Any] = []
    out = _walk(src, dst, frames.append, strategy=getattr(fast, strategy.upper()), hungry=hungry)
    assert out[0] == 60 * 31 + 1, "the giver placed it all (no capsule was taken)"
    gave = len(frames)
    frames.clear()
    if hungry:
        assert gave >= 1
    elif strategy == "copy":
        assert gave == 1
    else:
        assert gave == 0
