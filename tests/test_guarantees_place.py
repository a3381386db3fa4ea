"""place(): the safety guarantees of issue #14, one test each, on both per-file loops.

Each test was seen to fail with its guard broken (tests/mutation/mutations.py lists
the breakages; ``tox -e mutation`` applies them one by one to a copy of the repo).
Every test runs with the C loop and with the Python one (``place_loop``), with a
strategy and a tree that reach the code under test in both.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import linkstrategy
from linkstrategy import PlaceError, _owner, _probe
from linkstrategy._place import TMP_PREFIX
from linkstrategy._sys import _linux

SECRET = b"secret outside the source tree\n"


@pytest.fixture(autouse=True)
def _both_loops(monkeypatch: pytest.MonkeyPatch, place_loop: str) -> None:
    """Every test here runs with the C per-file loop and with the Python one."""
    _probe.clear_cache()
    if place_loop == "python":
        monkeypatch.setenv("LINKSTRATEGY_NO_SPEEDUPS", "1")
    else:
        monkeypatch.delenv("LINKSTRATEGY_NO_SPEEDUPS", raising=False)
    monkeypatch.delenv("LINKSTRATEGY_STRATEGY", raising=False)
    monkeypatch.delenv("LINKSTRATEGY_NETWORK_MOUNTS", raising=False)


def write(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def temporaries(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob(f"{TMP_PREFIX}*"))


def files_holding(root: Path, data: bytes) -> list[str]:
    """Regular files under ``root`` (symlinks not followed) whose content is ``data``."""
    hits = []
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            if stat.S_ISREG(os.lstat(p).st_mode) and Path(p).read_bytes() == data:
                hits.append(p)
    return hits


def hidden_or_final(parent: Path, dst: Path) -> Path:
    """Where place() is building ``dst`` right now: ``dst`` itself when it existed,
    else the hidden temporary beside it."""
    if dst.exists():
        return dst
    (hidden,) = parent.glob(f"{TMP_PREFIX}*")
    return hidden


# -- a symlink swapped in for a middle component of the destination -------------------


@pytest.mark.parametrize("resolve", ["openat2", "per-component"])
@pytest.mark.parametrize("existing", [True, False], ids=["merge", "fresh"])
def test_symlink_swapped_for_a_middle_component_never_leads_outside(
    tmp_path: Path,
    existing: bool,
    resolve: str,
    outside_unchanged: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``a`` is swapped for a symlink after its own job ran, while the job of ``a/b``
    (which opens ``a/b`` below the root: ``a`` is a middle component) is still queued.
    ``per-component``: the path taken without openat2 (Linux < 5.6, macOS)."""
    if resolve == "per-component":
        monkeypatch.setattr(_linux, "_openat2", False)
    src, dst, outside = tmp_path / "src", tmp_path / "dst", tmp_path / "outside"
    write(src, {"a/fa": b"a", "a/b/fb": b"b", "a/b/c/fc": b"c"})
    (outside / "b").mkdir(parents=True)  # what a/b would resolve to through the symlink
    if existing:
        (dst / "a" / "b" / "c").mkdir(parents=True)
    guard = outside_unchanged(tmp_path, dst, exclude=[tmp_path / "moved"])
    swapped: list[Path] = []

    def swap(done: int, total: int) -> None:
        root = hidden_or_final(tmp_path, dst)
        if swapped or not (root / "a" / "fa").exists():
            return
        os.rename(root / "a", tmp_path / "moved")
        os.symlink(outside, root / "a")
        swapped.append(root)

    with pytest.raises(PlaceError):
        linkstrategy.place(src, dst, workers=1, progress=swap, strategy="copy")
    assert swapped, "the swap never happened: the test did not reach the code under test"
    assert os.listdir(outside / "b") == []
    guard.check()
    assert temporaries(tmp_path) == [] or existing


# -- temporaries of others -------------------------------------------------------------


_MAKER = """
import os, sys, time
from linkstrategy import _owner
where = sys.argv[1]
pfd = os.open(where, os.O_RDONLY | os.O_DIRECTORY)
d = _owner.tmp_name(1)
os.mkdir(d, dir_fd=pfd)
dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY, dir_fd=pfd)
with open(os.path.join(where, d, "inner"), "wb") as f:
    f.write(b"theirs")
lock = _owner.hold(dfd)
f = _owner.tmp_name(2)
ffd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=pfd)
os.write(ffd, b"theirs")
_owner.lock_file(ffd)
print(d, f, flush=True)
if sys.argv[2] == "live":
    time.sleep(120)
"""


def _temporaries(where: Path, live: bool) -> tuple[subprocess.Popen[bytes], str, str]:
    """Another process's temporary directory (locked lock file inside) and temporary
    file (locked), made through linkstrategy._owner; the process stays alive or exits."""
    p = subprocess.Popen(
        [sys.executable, "-c", _MAKER, str(where), "live" if live else "dead"],
        stdout=subprocess.PIPE,
    )
    assert p.stdout is not None
    d, f = p.stdout.readline().decode().split()
    if not live:
        p.wait()
    return p, d, f


@pytest.mark.parametrize("existing", [True, False], ids=["merge", "fresh"])
def test_fresh_temporaries_of_other_writers_survive(tmp_path: Path, existing: bool) -> None:
    """Temporaries another live process is working on (locked), and a fresh one with no
    lock to test (another host's, made a moment ago), are not stale: place() leaves
    them alone, in an existing destination and beside a fresh one."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src, {"f": b"new", "d/g": b"new"})
    where = dst if existing else tmp_path  # fresh dst: temporaries beside it are scanned
    where.mkdir(exist_ok=True)
    p, d, f = _temporaries(where, live=True)
    lockless = f"{TMP_PREFIX}{'e' * 16}-9"
    (where / lockless).mkdir()
    (where / lockless / "inner").write_bytes(b"theirs")
    try:
        linkstrategy.place(src, dst)
        for name in (d, lockless):
            assert (where / name / "inner").read_bytes() == b"theirs", f"{name} was removed"
        assert (where / f).read_bytes() == b"theirs", f"{f} was removed"
        assert (dst / "f").read_bytes() == b"new"
    finally:
        p.kill()
        p.wait()


def test_temporary_of_a_dead_process_of_this_host_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other side of the rule above: what a killed run left is cleaned up -- a
    directory at once (its lock is free), a file once GRACE_FILE has passed since its
    last change (the moment between its create and its lock)."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src, {"f": b"new"})
    dst.mkdir()
    _, d, f = _temporaries(dst, live=False)
    linkstrategy.place(src, dst)
    assert not (dst / d).exists()
    assert (dst / f).exists(), "a fresh unlocked file is given GRACE_FILE"
    monkeypatch.setattr(_owner, "GRACE_FILE", -1.0)
    linkstrategy.place(src, dst)
    assert not (dst / f).exists()


# -- the source side: never follow a symlink swapped in ------------------------------


def test_source_file_swapped_for_a_symlink_is_never_followed(tmp_path: Path) -> None:
    """COPY into a new directory: the C loop takes the files, hands the sparse one
    back to Python, and the victim is swapped for a symlink to a secret while that
    happens.  Neither loop may open the victim following the symlink."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    with open(src / "a-sparse", "wb") as f:  # the C loop hands sparse files back
        f.truncate(1 << 20)
    (src / "b-victim").write_bytes(b"plain")
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    swapped = []

    def swap(done: int, total: int) -> None:
        if not swapped:
            os.unlink(src / "b-victim")
            os.symlink(secret, src / "b-victim")
            swapped.append(done)

    try:
        linkstrategy.place(
            src, dst, strategy="copy", workers=1, files=["a-sparse", "b-victim"], progress=swap
        )
    except PlaceError as e:
        assert e.errno in (errno.ELOOP, errno.EINVAL, errno.ENOTDIR), e
    assert swapped
    assert files_holding(tmp_path, SECRET) == [str(secret)]


# -- merge mode: nothing partial ever has a final name ------------------------------


@pytest.mark.root
def test_failed_copy_over_an_existing_file_leaves_the_old_one_intact(fusefs: Any) -> None:
    mnt = Path(fusefs.mountpoint)
    src, dst = mnt / "src", mnt / "dst"
    write(src, {"f": os.urandom(512 * 1024)})
    write(dst, {"f": b"old content\n", "keep": b"k"})
    linkstrategy.plan(src, dst)  # the live probe writes too: done (and cached) first
    fusefs.inject("write", errno.EIO, count=1)  # WRITE requests carry no path
    with pytest.raises(PlaceError) as ei:
        linkstrategy.place(src, dst, strategy="copy", workers=1)
    assert ei.value.errno == errno.EIO
    assert (dst / "f").read_bytes() == b"old content\n"
    assert sorted(os.listdir(dst)) == ["f", "keep"]


@pytest.mark.root
@pytest.mark.parametrize("existing_name", [False, True], ids=["new-name", "replaced-name"])
def test_merge_copy_never_shows_a_partial_file_under_its_final_name(
    latencyfs: Any, existing_name: bool
) -> None:
    """Written through a FUSE filesystem with 1 ms per request; a watcher polls the
    backing directory (no latency) for the final name while place() runs."""
    mnt = Path(latencyfs.mountpoint)
    data = os.urandom(4 << 20)
    write(mnt / "src", {"big": data})
    (mnt / "dst").mkdir()
    if existing_name:
        (mnt / "dst" / "big").write_bytes(b"old")
    final = latencyfs.backing / "dst" / "big"
    seen: set[int] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                seen.add(os.stat(final).st_size)
            except FileNotFoundError:
                pass

    t = threading.Thread(target=watch)
    t.start()
    try:
        linkstrategy.place(mnt / "src", mnt / "dst", strategy="copy", workers=1)
    finally:
        stop.set()
        t.join()
    assert (mnt / "dst" / "big").read_bytes() == data
    partial = sorted(s for s in seen if s not in (len(data), 3 if existing_name else -1))
    assert partial == [], f"the final name showed partial sizes {partial[:5]}"


# -- rollback of files new at the top level of an existing directory ----------------


@pytest.mark.parametrize("before", [{}, {"keep": b"k"}], ids=["empty", "with-a-file"])
def test_rollback_removes_files_created_at_the_top_of_an_existing_dir(
    tmp_path: Path, before: dict[str, bytes]
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src, {"new1": b"1", "new2": b"2", "zbad": b"z"})
    dst.mkdir()
    write(dst, before)
    swapped = []

    def fail_later(done: int, total: int) -> None:
        if not swapped:  # the last file becomes a FIFO: "no longer a regular file"
            os.unlink(src / "zbad")
            os.mkfifo(src / "zbad")
            swapped.append(done)

    with pytest.raises(PlaceError):
        linkstrategy.place(
            src,
            dst,
            strategy="copy",
            workers=1,
            files=["new1", "new2", "zbad"],
            progress=fail_later,
        )
    assert swapped
    assert sorted(os.listdir(dst)) == sorted(before)
    for n, data in before.items():
        assert (dst / n).read_bytes() == data


# -- trees as they come ----------------------------------------------------------------


@pytest.mark.parametrize("existing", [True, False], ids=["merge", "fresh"])
def test_symlink_to_a_directory_stays_a_symlink(tmp_path: Path, existing: bool) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src, {"lib/libc.so": b"elf", "lib/sub/x": b"x", "bin/sh": b"sh"})
    os.symlink("lib", src / "lib64")
    if existing:
        (dst / "lib").mkdir(parents=True)
    r = linkstrategy.place(src, dst)
    assert os.readlink(dst / "lib64") == "lib"
    assert stat.S_ISDIR(os.lstat(dst / "lib").st_mode)
    assert (dst / "lib/libc.so").read_bytes() == b"elf"
    assert r.symlinks == 1 and r.files == 3


@pytest.mark.parametrize("strategy", ["auto", "copy"])
def test_read_only_source_directories_keep_their_modes(tmp_path: Path, strategy: str) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src, {"top": b"t", "ro/f": b"f", "ro/inner/g": b"g", "rw/h": b"h"})
    for d in ("ro/inner", "ro", ""):
        os.chmod(src / d, 0o555)
    try:
        linkstrategy.place(src, dst, strategy=strategy)
        for d in ("ro/inner", "ro", ""):
            assert stat.S_IMODE(os.stat(dst / d).st_mode) == 0o555, d or "the root"
        assert (dst / "ro/inner/g").read_bytes() == b"g"
        assert stat.S_IMODE(os.stat(dst / "rw").st_mode) == stat.S_IMODE(
            os.stat(src / "rw").st_mode
        )
    finally:
        for root in (src, dst):
            for d in ("", "ro", "ro/inner"):
                if (root / d).exists():
                    os.chmod(root / d, 0o755)


# -- errno decisions at the call site ----------------------------------------------------


@pytest.mark.root
def test_exdev_from_link_for_one_file_falls_back(fusefs: Any) -> None:
    """A real EXDEV from link(2) (the FUSE daemon returns it) for one file: that
    file is copied, the run goes on.  Injected twice: the C loop's linkat takes the
    first and hands the file to Python, which meets the second."""
    mnt = Path(fusefs.mountpoint)
    src, dst = mnt / "src", mnt / "dst"
    files = {f"f{i}": f"{i}".encode() * 100 for i in range(5)}
    files["victim"] = b"victim data"
    write(src, files)
    plan = linkstrategy.plan(src, dst)
    if plan.chain[0] != "hardlink":
        pytest.skip(f"the FUSE mount's chain does not start with hardlink: {plan.chain}")
    fusefs.inject("link", errno.EXDEV, count=2, path="*/victim")
    r = linkstrategy.place(src, dst, workers=1)
    for n, data in files.items():
        assert (dst / n).read_bytes() == data
    assert [(f.path, f.errno) for f in r.fallbacks] == [("victim", errno.EXDEV)]
    assert os.stat(dst / "victim").st_ino != os.stat(src / "victim").st_ino


@pytest.mark.root
def test_emfile_stops_the_run_instead_of_falling_back(
    xfs_reflink: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of file descriptors is the process's problem, not the pair's: no fallback
    (which would hide it), the run stops and rolls back.  The victim has an extended
    attribute, so the C loop hands it to the Python path, where open() fails."""
    src, dst = xfs_reflink / "src", xfs_reflink / "dst"
    write(src, {"a": b"a", "victim": b"v", "z": b"z"})
    os.setxattr(src / "victim", "user.k", b"v")
    real_open = os.open
    hit = []

    def emfile_once(path: Any, flags: int, *a: Any, **kw: Any) -> int:
        if path == "victim" and not hit:
            hit.append(1)
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", emfile_once)
    with pytest.raises(PlaceError) as ei:
        linkstrategy.place(src, dst, workers=1)
    monkeypatch.undo()
    assert hit and ei.value.errno == errno.EMFILE
    assert not dst.exists() and temporaries(xfs_reflink) == []


@pytest.mark.timeout(30)
def test_transient_errors_are_retried_a_bounded_number_of_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EAGAIN forever: a few retries, then the file falls back; never a loop."""
    from linkstrategy import _place

    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src, {"f": b"data"})
    dst.mkdir()  # an existing directory: the Python path, with either loop
    real_link = os.link
    calls = []

    def eagain(a: Any, b: Any, *args: Any, **kw: Any) -> None:
        if a == "f":
            calls.append(1)
            raise OSError(errno.EAGAIN, "try again")
        real_link(a, b, *args, **kw)

    monkeypatch.setattr(_place.os, "link", eagain)
    t0 = time.monotonic()
    r = linkstrategy.place(src, dst, strategy="auto")
    monkeypatch.undo()
    assert time.monotonic() - t0 < 10
    assert (dst / "f").read_bytes() == b"data"
    if calls:  # the pair's chain had hardlink
        assert 1 < len(calls) <= 10
        assert [f.errno for f in r.fallbacks] == [errno.EAGAIN]
