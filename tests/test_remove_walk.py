"""remove()'s two walks on a local filesystem: the C pass (``_speedups.clear_tree``)
that removes what goes plainly, and the Python walk that decides everything it
leaves.  Every test runs with both (``remove_walk``): the same trees must give the
same result and report, and what the C pass cannot do (errors, permissions, mounts,
depth, names swapped mid-walk) must reach the Python walk intact."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
from support import killshim, mountutil, swapshim
from support.caps import DROP_DAC

from linkstrategy import _tree, remove


def build(root: Path, outside: Path) -> int:
    """A tree with every kind of entry; the number of entries remove() counts."""
    (outside / "dir").mkdir(parents=True)
    (outside / "file").write_text("outside")
    (outside / "dir" / "inner").write_text("inner")
    root.mkdir()
    for i in range(40):
        (root / f"f{i:02}").write_text("x" * i)
    (root / "empty").touch()
    os.link(root / "f01", root / "hardlink")
    os.symlink(outside / "file", root / "to-file")
    os.symlink(outside / "dir", root / "to-dir")
    os.symlink("nowhere", root / "dangling")
    os.mkfifo(root / "fifo")
    os.mknod(root / "socket", stat.S_IFSOCK | 0o600)
    for odd in ("new\nline", "sp ace", os.fsdecode(b"\xff\xfe-bytes"), "-dash"):
        (root / odd).write_text("o")
        (root / f"d{odd}").mkdir()
        (root / f"d{odd}" / odd).write_text("o")
    wide = root / "wide"  # more names than one read buffer holds
    wide.mkdir()
    for i in range(1500):
        (wide / f"entry-with-a-long-name-{i:05}").touch()
    deep = root
    for i in range(40):  # deeper than the C pass goes
        deep = deep / f"l{i}"
        deep.mkdir()
        (deep / "f").write_text(str(i))
    (root / "empty-dir").mkdir()
    for d in ("read-only", "closed"):  # their modes: restrict()
        (root / d / "sub").mkdir(parents=True)
        (root / d / "f").write_text(d)
    n = sum(len(dirs) + len(files) for _, dirs, files in os.walk(root))
    # Silly-renamed names (an NFS or FUSE client's, not held open here) go too, uncounted.
    (root / ".nfs0123456789abcdef01234567").write_text("s")
    (wide / ".fuse_hidden0123456789abcdef").write_text("s")
    return n + 1  # and the root itself


def restrict(root: Path) -> None:
    (root / "read-only").chmod(0o555)
    (root / "closed").chmod(0o000)


def test_every_kind_of_entry_goes_with_either_walk(
    tmp_path: Path, remove_walk: str, outside_unchanged: Any
) -> None:
    root = tmp_path / "tree"
    n = build(root, tmp_path / "outside")
    restrict(root)
    outside = outside_unchanged(tmp_path, root)
    r = remove(root)
    assert r.ok and not os.path.lexists(root), r
    assert r.removed == n and r.errors == () and r.deferred == ()
    outside.check()


FAULT_CHILD = textwrap.dedent(
    """
    import json, sys, linkstrategy
    r = linkstrategy.remove(sys.argv[1], budget=float(sys.argv[2]))
    print(json.dumps(r.to_json()))
    """
)


def run_faulted(root: Path, walk: str, spec: str, budget: float) -> dict[str, Any]:
    extra = {"KILLSHIM_FAULT": spec}
    if walk == "python":
        extra["LINKSTRATEGY_NO_SPEEDUPS"] = "1"
    res = subprocess.run(
        [sys.executable, "-c", FAULT_CHILD, str(root), str(budget)],
        capture_output=True,
        text=True,
        env=killshim.env(**extra),
    )
    assert res.returncode == 0, res.stderr
    report: dict[str, Any] = json.loads(res.stdout)
    return report


def small_tree(root: Path, *, wide: bool = False) -> None:
    """26 entries with the root (``wide``: 16 empty directories more, under ``z``, so
    the C pass goes on threads: one job a subdirectory of the root)."""
    for d in ("a", "a/b", "a/b/c", "z"):
        (root / d).mkdir(parents=True)
        for i in range(5):
            (root / d / f"f{i}").write_text(d)
    (root / "a" / "b" / "c" / "victim").write_text("v")
    for i in range(_tree._C_THREADS_BELOW if wide else 0):
        (root / "z" / f"w{i:02}").mkdir()


@pytest.mark.parametrize("code", [errno.EBUSY, errno.EAGAIN, errno.EINTR])
def test_a_busy_file_deep_in_the_tree_is_retried(
    tmp_path: Path, remove_walk: str, code: int
) -> None:
    """The C pass leaves a busy file (and the directories above it) to the Python
    walk, which retries it in its passes."""
    root = tmp_path / "tree"
    small_tree(root)
    r = run_faulted(root, remove_walk, f"victim:{code}:3", 5.0)
    assert not r["errors"] and not r["deferred"] and r["retries"] >= 1, r
    assert not root.exists() and r["removed"] == 26


@pytest.mark.parametrize("where", ["deep", "top"])
def test_a_real_error_is_reported_with_its_path_and_the_rest_goes(
    tmp_path: Path, remove_walk: str, where: str
) -> None:
    root = tmp_path / "tree"
    small_tree(root)
    victim = root / "a" / "b" / "c" / "victim"
    if where == "top":
        victim = victim.rename(root / "victim")
    r = run_faulted(root, remove_walk, f"victim:{errno.EIO}:1000000", 0.2)
    assert [(e["path"], e["errno"]) for e in r["errors"]] == [(str(victim), errno.EIO)], r
    assert "Input/output error" in r["errors"][0]["reason"]
    left = {"deep": ["a", "b", "c", "victim"], "top": ["victim"]}[where]
    assert victim.exists() and sorted(p.name for p in root.rglob("*")) == left
    assert r["removed"] == 26 - len(left) - 1  # nor the root


SWAP_CHILD = textwrap.dedent(
    """
    import json, os, sys, linkstrategy
    import linkstrategy._tree as T
    fd = os.open(sys.argv[1], os.O_RDONLY)  # this filesystem counts as one in memory:
    T._MEMORY_MAGIC = frozenset({T.fs_magic(fd)})  # the C pass goes on threads here too
    os.close(fd)
    r = linkstrategy.remove(sys.argv[1], budget=0.2)
    print(json.dumps(r.to_json()))
    """
)


def threads_here(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """Let the C pass go on threads on ``path``'s filesystem (tmpfs only, else)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        monkeypatch.setattr(_tree, "_MEMORY_MAGIC", frozenset({_tree.fs_magic(fd)}))
    finally:
        os.close(fd)


def swap_run(
    tmp_path: Path, walk: str, how: str, where: str, guard: Any = None
) -> tuple[Path, dict[str, Any]]:
    """Remove a tree whose directory "victim" (``where``: "top", a subdirectory of the
    root: the parallel C pass's jobs open it; "deep": below one) the shim swaps."""
    shim = swapshim.build(tmp_path)
    outside = tmp_path / "outside"
    (outside / "inner").mkdir(parents=True)
    (outside / "inner" / "f").write_text("precious")
    root = tmp_path / "tree"
    small_tree(root, wide=True)
    victim = root / "victim" if where == "top" else root / "a" / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "sub" / "f").write_text("v")
    (victim / "f").write_text("v")
    check = None if guard is None else guard(tmp_path, root)
    env = {**os.environ, "LD_PRELOAD": str(shim), "OUTSIDE": str(outside), "SWAP": how}
    if walk == "python":
        env["LINKSTRATEGY_NO_SPEEDUPS"] = "1"
    res = subprocess.run(
        [sys.executable, "-c", SWAP_CHILD, str(root)], capture_output=True, text=True, env=env
    )
    assert res.returncode == 0, res.stderr
    if check is not None:
        check.check()  # nothing outside the tree changed: the symlink was not followed
    return root, json.loads(res.stdout)


@pytest.mark.parametrize("where", ["deep", "top"])
def test_a_directory_swapped_for_a_symlink_mid_walk_is_not_followed(
    tmp_path: Path, remove_walk: str, outside_unchanged: Any, where: str
) -> None:
    root, r = swap_run(tmp_path, remove_walk, "symlink", where, outside_unchanged)
    assert r["errors"] == [] and not root.exists(), r
    assert (tmp_path / "outside" / "inner" / "f").read_text() == "precious"


@pytest.mark.root
@pytest.mark.parametrize("where", ["deep", "top"])
def test_a_mount_made_between_the_check_and_the_open_is_not_entered(
    tmp_path: Path, remove_walk: str, where: str
) -> None:
    """The C pass checks the directory it opened is the one it looked at (device and
    inode): a tmpfs mounted on it in between is left, and reported."""
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    victim = tmp_path / "tree" / ("victim" if where == "top" else "a/victim")
    try:
        root, r = swap_run(tmp_path, remove_walk, "mount", where)
        assert os.path.ismount(victim), "the shim did not mount"
        assert r["mounts_skipped"] == [str(victim)] and r["errors"] == [], r
        assert (victim / "precious").read_text() == "p"
        if where == "top":
            assert os.listdir(root) == ["victim"]
        else:
            assert os.listdir(root) == ["a"] and os.listdir(root / "a") == ["victim"]
    finally:
        subprocess.run(["umount", "-l", str(victim)], capture_output=True)


def test_a_local_removal_takes_the_c_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the switch, a local removal runs the C pass (its subdirectories as jobs
    on the pool), and the Python walk does nothing more when it leaves nothing (else
    the "c" runs above would test the Python walk twice)."""
    fast = _tree._fast
    if fast is None:
        pytest.skip("the C extension is not built or is switched off")
    calls: list[Any] = []

    def clear_tree(*a: Any) -> Any:
        calls.append(a)
        return fast.clear_tree(*a)

    def no_scan(*a: Any) -> Any:
        raise AssertionError("the Python walk listed a directory the C pass emptied")

    monkeypatch.setattr(_tree, "_fast", types.SimpleNamespace(clear_tree=clear_tree))
    monkeypatch.setattr(_tree.Run, "scan", no_scan)
    root = tmp_path / "tree"
    small_tree(root)
    r = remove(root)
    assert r.ok and not root.exists() and r.removed == 26
    assert len(calls) == 1  # a small tree: one pass, no threads
    calls.clear()
    small_tree(root, wide=True)
    fd = os.open(tmp_path, os.O_RDONLY)
    disk = _tree.fs_magic(fd) not in _tree._MEMORY_MAGIC
    os.close(fd)
    r = remove(root)
    # threads on tmpfs, not on a disk (its journal, not the CPU, is what removal waits for)
    assert r.ok and len(calls) == (1 if disk or _tree._local_workers() < 2 else 3)
    calls.clear()
    threads_here(monkeypatch, tmp_path)
    small_tree(root)
    r = remove(root)
    assert r.ok and len(calls) == 1  # a small tree: one thread, even in memory
    calls.clear()
    small_tree(root, wide=True)
    r = remove(root)
    # one call for each of the root's two subdirectories (on the pool), one for the root
    assert r.ok and not root.exists() and r.removed == 26 + _tree._C_THREADS_BELOW
    assert len(calls) == (3 if _tree._local_workers() > 1 else 1)


@pytest.mark.root
def test_a_mount_among_the_subdirectories_of_the_root_is_not_emptied(
    tmp_path: Path, remove_walk: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parallel C pass gives each subdirectory of the root to a job: one that is a
    bind mount of the same filesystem (same st_dev) is not emptied, and reported."""
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    threads_here(monkeypatch, tmp_path)
    root = tmp_path / "tree"
    small_tree(root, wide=True)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "d").mkdir(parents=True)
    (elsewhere / "keep").write_text("k")
    (elsewhere / "d" / "keep").write_text("k")
    with mountutil.bind_mount(elsewhere, root, name="m") as mp:
        r = remove(root, budget=0.2)
        assert r.mounts_skipped == (str(mp),) and r.errors == (), r
        assert sorted(p.name for p in elsewhere.rglob("*")) == ["d", "keep", "keep"]
        assert os.listdir(root) == ["m"]


READ_ONLY_CHILD = DROP_DAC + textwrap.dedent(
    """
    import json, os, sys
    import linkstrategy

    def build(p, depth):  # 3 subdirectories a directory: 2 threads on siblings at once
        os.mkdir(p)
        for k in range(3 if depth else 0):
            build(os.path.join(p, str(k)), depth - 1)
        os.chmod(p, 0o555)

    root, rounds = sys.argv[1], int(sys.argv[2])
    failed = []
    for _ in range(rounds):
        build(root, 6)  # 1,093 directories: handed to 2 threads after the first 100
        r = linkstrategy.remove(root)
        failed.extend(e.reason for e in r.errors)
        if os.path.lexists(root):
            for dirpath, _dirs, _files in os.walk(root):
                os.chmod(dirpath, 0o755)
            linkstrategy.remove(root, workers=1, check=True)
    print(json.dumps(failed))
    """
)


def test_read_only_directories_go_with_threads_on_siblings(
    tmp_path: Path, remove_walk: str
) -> None:
    """A read-only cache (0555 directories, as ``copy`` keeps them): two threads that
    meet EACCES in one directory at once both go on -- the one that finds it already
    made writable by the other tries again instead of failing (was: an EACCES error in
    about one run in two for such a tree, a file or directory left)."""
    env = dict(os.environ)
    if remove_walk == "python":
        env["LINKSTRATEGY_NO_SPEEDUPS"] = "1"
    res = subprocess.run(
        [sys.executable, "-c", READ_ONLY_CHILD, str(tmp_path / "ro"), "8"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == []
    assert not (tmp_path / "ro").exists()
