"""replace(), its recovery after kill -9, and staging_dir(), on real filesystems."""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from support import killshim, mountutil

import linkstrategy._txn as T
from linkstrategy._errors import LinkStrategyError, TransactionBusy
from linkstrategy._gc import gc
from linkstrategy._mounts import mount_id_of
from linkstrategy._remove import remove
from linkstrategy._trash import TRASH_NAME
from linkstrategy._txn import recover_for, replace, staging_dir


def build(root: Path, tag: str, n: int = 12, size: int = 100) -> None:
    for i in range(n):
        d = root / f"d{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{tag}-{i}.txt").write_bytes((f"{tag}:{i}:" * size).encode())
    (root / "METADATA").write_text(f"version {tag}\n")
    os.symlink("METADATA", root / "link")
    os.chmod(root / "d0", 0o750)


def snapshot(root: Path) -> dict[str, Any]:
    """Everything that makes a tree: names, types, modes, contents, link targets."""
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                with open(p, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                out[rel] = ("file", stat.S_IMODE(st.st_mode), digest)
    return out


def begin_txn(dst: Path) -> tuple[Any, int]:
    """A journal for ``dst`` as a running replace() makes it: (txn, parent fd)."""
    fd = os.open(dst.parent, os.O_RDONLY | os.O_DIRECTORY)
    txn = T._Txn(fd, str(dst.parent), dst.name)
    txn.begin()
    return txn, fd


def leftovers(parent: Path) -> list[str]:
    return sorted(n for n in os.listdir(parent) if "linkstrategy" in n)


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path, dict[str, Any], dict[str, Any]]:
    new, dst = tmp_path / "new", tmp_path / "site" / "pkg"
    build(new, "new")
    build(dst, "old", n=7)
    return new, dst, snapshot(new), snapshot(dst)


def test_replace_swaps_in_the_new_tree_and_leaves_nothing(trees: Any) -> None:
    new, dst, want, _old = trees
    report = replace(new, dst)
    assert snapshot(dst) == want
    assert report.dst == str(dst) and report.files == 13
    assert leftovers(dst.parent) == []


def test_replace_creates_a_missing_destination(tmp_path: Path) -> None:
    src = tmp_path / "src"
    build(src, "x")
    replace(src, tmp_path / "a" / "b")
    assert snapshot(tmp_path / "a" / "b") == snapshot(src)
    assert leftovers(tmp_path / "a") == []


def test_replace_a_file(tmp_path: Path) -> None:
    (tmp_path / "new.bin").write_bytes(b"new")
    (tmp_path / "dst.bin").write_bytes(b"old")
    replace(tmp_path / "new.bin", tmp_path / "dst.bin")
    assert (tmp_path / "dst.bin").read_bytes() == b"new"
    assert leftovers(tmp_path) == []


@pytest.mark.root
def test_real_enospc_rolls_back_and_old_tree_is_intact_byte_for_byte(tmp_path: Path) -> None:
    reason = mountutil.mount_skip_reason("tmpfs")
    if reason:
        pytest.skip(reason)
    src = tmp_path / "big"
    build(src, "big", n=40, size=20000)  # ~40 files of ~200 KB: more than the tmpfs holds
    with mountutil.tmpfs_mount(tmp_path, size="2m", name="small") as mp:
        dst = mp / "pkg"
        build(dst, "old", n=7)
        before = snapshot(dst)
        with pytest.raises(OSError) as ei:
            replace(src, dst)
        assert ei.value.errno == errno.ENOSPC
        assert snapshot(dst) == before
        assert leftovers(mp) == []
        assert os.statvfs(mp).f_bfree > 0.9 * os.statvfs(mp).f_blocks - 64  # space given back


@pytest.mark.parametrize("exchange", [True, False])
def test_failure_during_swap_rolls_back(
    trees: Any, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    new, dst, _want, old = trees
    if exchange:

        def boom(afd: int, a: str, bfd: int, b: str) -> bool:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), a, None, b)

        monkeypatch.setattr(T, "_exchange", boom)
    else:
        monkeypatch.setattr(T, "_exchange", lambda afd, a, bfd, b: False)
        real = T.os.rename

        def second_rename_fails(a: Any, b: Any, *args: Any, **kw: Any) -> None:
            if os.fspath(b) == dst.name and os.fspath(a) == "new":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), a, None, b)
            real(a, b, *args, **kw)

        monkeypatch.setattr(T.os, "rename", second_rename_fails)
    with pytest.raises(OSError) as ei:
        replace(new, dst)
    assert ei.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert snapshot(dst) == old
    assert leftovers(dst.parent) == []


_CHILD = killshim.ARM + textwrap.dedent(
    """
    import os, sys
    import linkstrategy._txn as T
    import linkstrategy._sys._linux as L
    if sys.argv[3] == "noexchange":
        L._renameat2 = False  # as on NFS: two renames
    point = sys.argv[4]  # kill -9 there
    kill = lambda: os.kill(os.getpid(), 9)
    kw = {}
    if point == "mid-place":  # while place() is half way through the new tree
        kw["progress"] = lambda done, total: done >= 6 and kill()
    elif point == "commit-unlink":  # while the old tree is being removed
        T.step_hook = lambda name: name == "committing" and _arm(3)
    else:
        T.step_hook = lambda name: name == point and kill()
    T.replace(sys.argv[1], sys.argv[2], **kw)
    """
)

# kill point -> which tree a later call must leave at dst
_POINTS = [
    ("building", "old", "exchange"),
    ("mid-place", "old", "exchange"),
    ("placed", "old", "exchange"),
    ("swapping", "new", "exchange"),
    ("swapped", "new", "exchange"),
    ("committing", "new", "exchange"),
    ("moved-old", "new", "noexchange"),
    ("swapped", "new", "noexchange"),
    ("commit-unlink", "new", "exchange"),
]


@pytest.mark.parametrize("recover_by", ["replace", "remove", "gc", "recover_for"])
def test_kill_9_during_replace_then_recovery(tmp_path: Path, recover_by: str) -> None:
    for i, (point, expect, mode) in enumerate(_POINTS):
        base = tmp_path / f"{i}-{point}"
        new, dst, other = base / "new", base / "site" / "pkg", base / "third"
        build(new, "new")
        build(dst, "old", n=7)
        build(other, "third", n=2)
        want = {"new": snapshot(new), "old": snapshot(dst)}
        res = subprocess.run(
            [sys.executable, "-c", _CHILD, str(new), str(dst), mode, point],
            capture_output=True,
            env=killshim.env(),
        )
        assert res.returncode == -9, (point, res.stderr)
        # Right after the kill, dst is one complete tree (or, between the two renames
        # of the non-exchange path only, missing until recovery).
        if os.path.lexists(dst):
            assert snapshot(dst) in (want["old"], want["new"]), point
        else:
            assert point == "moved-old"
        if recover_by == "replace":
            replace(other, dst)  # finishes the old transaction first, then its own
            assert snapshot(dst) == snapshot(other), point
        else:
            if recover_by == "remove":
                r = remove(dst)
                assert r.ok and not os.path.lexists(dst), point
            elif recover_by == "gc":
                assert gc(base / "site").ok
                assert snapshot(dst) == want[expect], point
            else:
                assert recover_for(dst)
                assert snapshot(dst) == want[expect], point
        assert leftovers(dst.parent) == [], (point, leftovers(dst.parent))


@pytest.mark.parametrize("n", [1, 3])
def test_busy_renames_of_the_swap_are_retried_on_fuse(fusefs: Any, tmp_path: Path, n: int) -> None:
    dst = Path(fusefs.mountpoint) / "site" / "pkg"
    build(dst, "old", n=4)
    new = tmp_path / "new"
    build(new, "new")
    fusefs.inject("rename", errno.EBUSY, count=n, path="/site/pkg")
    replace(new, dst)
    assert fusefs.consumed("rename") == n
    assert snapshot(dst) == snapshot(new) and leftovers(dst.parent) == []


def test_live_transaction_is_not_recovered_under_its_feet(tmp_path: Path) -> None:
    dst = tmp_path / "pkg"
    build(dst, "old")
    txn, fd = begin_txn(dst)  # holds the journal's lock, like a running replace()
    try:
        with pytest.raises(TransactionBusy):
            recover_for(dst)
        r = remove(dst)
        assert [e.errno for e in r.errors] == [errno.EBUSY] and dst.exists()
    finally:
        txn.close()
        os.close(fd)
    assert recover_for(dst)  # the holder is gone: rolled back
    assert dst.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("nfiles", [2, 12])  # few roots: lstat each; many: one listing
def test_remove_of_many_files_finds_a_dead_journal_among_them(tmp_path: Path, nfiles: int) -> None:
    files = [tmp_path / f"f{i}" for i in range(nfiles)]
    for f in files:
        f.write_text(f.name)
    txn, fd = begin_txn(files[1])
    txn.close()  # as if its process died while building
    os.close(fd)
    assert leftovers(tmp_path) == [".f1.linkstrategy-txn"]
    r = remove(files)
    assert r.ok and r.removed == nfiles
    assert os.listdir(tmp_path) == []


def test_transaction_busy_pickles() -> None:
    e = TransactionBusy(errno.EBUSY, "busy", "/x/.p.linkstrategy-txn")
    e2 = pickle.loads(pickle.dumps(e))
    assert isinstance(e2, TransactionBusy) and isinstance(e2, LinkStrategyError)
    assert (e2.errno, e2.strerror, e2.filename) == (errno.EBUSY, "busy", e.filename)


def test_replace_on_nfs_defers_the_busy_old_tree(nfslike: Any, tmp_path: Path) -> None:
    mnt = Path(nfslike.mountpoint)
    dst = mnt / "site" / "pkg"
    build(dst, "old", n=4)
    new = tmp_path / "new"
    build(new, "new")
    with open(dst / "d1" / "old-1.txt", "rb"):
        replace(new, dst)
        assert snapshot(dst) == snapshot(new)
        assert leftovers(dst.parent) == [TRASH_NAME]
    assert gc(mnt / "site").ok
    assert leftovers(dst.parent) == []


# -- staging_dir -------------------------------------------------------------------------


def test_staging_dir_is_adjacent_hidden_and_on_the_same_mount(
    tmpfs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # another filesystem: not used
    dst = tmpfs_dir / "site" / "pkg"
    with staging_dir(dst) as st:
        stage = st.parent  # holds the lock file; the yielded directory is its "tree"
        assert st.name == "tree" and list(st.iterdir()) == []
        assert stage.parent == dst.parent and stage.name.startswith(".pkg.linkstrategy-stage-")
        assert os.stat(st).st_dev == os.stat(dst.parent).st_dev
        assert mount_id_of(str(st)) == mount_id_of(str(dst.parent))
        (st / "f").write_text("x")
        os.rename(st / "f", dst.parent / "f")  # a rename, not a copy across filesystems
    assert not stage.exists() and (dst.parent / "f").read_text() == "x"


def test_staging_dir_uses_tmpdir_on_the_same_mount(
    tmpfs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp = tmpfs_dir / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    with staging_dir(tmpfs_dir / "pkg") as st:
        assert st.parent.parent == tmp
    assert not st.parent.exists()


def test_staging_dir_avoids_tmpdir_in_another_btrfs_subvolume(
    btrfs_subvols: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = btrfs_subvols
    monkeypatch.setenv("TMPDIR", str(a))  # same mount, other subvolume: rename gives EXDEV
    with staging_dir(b / "pkg") as st:
        assert st.parent.parent == b
        (st / "f").write_text("x")
        os.rename(st / "f", b / "f")


def test_gc_removes_staging_dirs_of_dead_processes(tmp_path: Path) -> None:
    # A child opens a staging dir and dies with it open (kill -9): its lock is free.
    code = textwrap.dedent(
        """
        import os, sys
        from linkstrategy._txn import staging_dir
        with staging_dir(sys.argv[1]) as st:
            (st / "x").mkdir()
            print(st, flush=True)
            os.kill(os.getpid(), 9)
        """
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "pkg")], capture_output=True, text=True
    )
    assert res.returncode == -9, res.stderr
    stale = Path(res.stdout.strip()).parent
    assert stale.exists() and T.is_stage_name(stale.name)
    with staging_dir(tmp_path / "pkg") as live:
        assert gc(tmp_path).ok
        assert not stale.exists() and live.exists()
    assert leftovers(tmp_path) == []
