"""replace(), its recovery after kill -9, and staging_dir(), on real filesystems."""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
from support import killshim, mountutil

import linkstrategy._txn as T
from linkstrategy._errors import LinkStrategyError, PlaceError, RemoveError, TransactionBusy
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
        real_new = T.rename_new  # (the new tree goes in without replacing anything)

        def second_rename_new_fails(afd: int, a: str, bfd: int, b: str) -> None:
            if b == dst.name and a == "new":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), a, None, b)
            real_new(afd, a, bfd, b)

        monkeypatch.setattr(T, "rename_new", second_rename_new_fails)
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


# -- what is not the transaction's is never touched (audit: races.md 2b, 6, 7) ------------


def _other_tree(p: Path, tag: str = "theirs") -> None:
    p.mkdir()
    (p / "work").write_text(f"{tag}'s file\n")


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
@pytest.mark.parametrize("when", ["placed", "swapping"])
@pytest.mark.parametrize("had", ["absent", "old"])
def test_replace_fails_when_dst_changed_meanwhile_and_leaves_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool, when: str, had: str
) -> None:
    """races.md 6: while replace() builds (or between its check and its swap), another
    process creates dst, or puts another tree there.  That tree is not the one the
    journal recorded: PlaceError (EEXIST or EBUSY) naming dst, and it stays as it is --
    never exchanged out and deleted with the journal."""
    new, dst = tmp_path / "new", tmp_path / "site" / "pkg"
    build(new, "new")
    dst.parent.mkdir()
    if had == "old":
        build(dst, "old", n=5)
    if not exchange:
        monkeypatch.setattr(T, "_exchange", lambda afd, a, bfd, b: False)
        import linkstrategy._sys._linux as L

        monkeypatch.setattr(L, "_renameat2", False)  # no RENAME_NOREPLACE either (NFS)

    def hook(step: str) -> None:
        if step == when:
            if dst.exists():
                os.rename(dst, tmp_path / "moved-away")
            _other_tree(dst)

    monkeypatch.setattr(T, "step_hook", hook)
    with pytest.raises(PlaceError) as ei:
        replace(new, dst)
    assert ei.value.errno == (errno.EEXIST if had == "absent" else errno.EBUSY)
    assert ei.value.filename2 == str(dst)
    assert (dst / "work").read_text() == "theirs's file\n" and os.listdir(dst) == ["work"]
    assert leftovers(dst.parent) == []
    if had == "old":
        assert (tmp_path / "moved-away" / "METADATA").read_text() == "version old\n"


@pytest.mark.root
def test_replace_leaves_a_tree_another_user_made_at_dst_meanwhile(tmp_path: Path) -> None:
    """races.md 6 as the audit ran it: root replaces D/x (absent) in a sticky 1777
    directory; nobody creates D/x while the new tree is built."""
    if os.geteuid() != 0:
        pytest.skip("needs root: a second user (nobody) creates dst")
    base = Path(tempfile.mkdtemp(prefix="ls-txn-", dir="/tmp"))  # (tmp_path: root's 0700)
    os.chmod(base, 0o755)
    d = base / "D"
    d.mkdir()
    os.chmod(d, 0o1777)
    new = tmp_path / "new"
    build(new, "new")

    def as_nobody(step: str) -> None:
        if step != "placed":
            return
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.setgroups([])
                os.setresgid(65534, 65534, 65534)
                os.setresuid(65534, 65534, 65534)
                _other_tree(d / "x", "nobody")
            finally:
                os._exit(0)
        os.waitpid(pid, 0)

    T.step_hook = as_nobody
    try:
        with pytest.raises(PlaceError) as ei:
            replace(new, d / "x")
    finally:
        T.step_hook = None
    try:
        assert ei.value.errno == errno.EEXIST
        assert os.lstat(d / "x").st_uid == 65534
        assert (d / "x" / "work").read_text() == "nobody's file\n"
        assert leftovers(d) == []
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=True)


@pytest.mark.parametrize("when", ["after-mkdir", "before-flock"])
def test_gc_during_replaces_begin_leaves_the_journal_being_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """races.md 2b: a gc of dst's directory while replace() makes its journal -- right
    after its mkdir, or between creating its lock file and locking it (the moments the
    audit's concurrent gc loops hit) -- must leave it: no lock file yet, or only the
    pending one, held or new, means "being made", never "dead"."""
    import fcntl

    new, dst = tmp_path / "new", tmp_path / "pkg"
    build(new, "new")
    build(dst, "old", n=5)
    reports = []
    if when == "after-mkdir":
        real_open = T._open_own_dir

        def then_gc(*a: Any) -> int:
            fd = real_open(*a)
            reports.append(gc(tmp_path))
            return fd

        monkeypatch.setattr(T, "_open_own_dir", then_gc)
    else:
        real_flock = fcntl.flock
        first = [True]

        def gc_first(fd: int, op: int) -> None:
            if first[0]:  # the maker's first flock: its lock file is made, not locked
                first[0] = False
                reports.append(gc(tmp_path))  # (whose own flocks go straight through)
            real_flock(fd, op)

        monkeypatch.setattr(fcntl, "flock", gc_first)
    replace(new, dst)
    assert snapshot(dst) == snapshot(new) and leftovers(tmp_path) == []
    assert len(reports) == 1 and reports[0].ok and reports[0].removed == 0
    assert reports[0].foreign == ()  # (being made: not even reported)


def _swap_for_a_victim(where: Path, name: str) -> Path:
    """Rename ``where/name`` away and put a victim's directory in its place."""
    os.rename(where / name, where / f"{name}.moved")
    victim = where / name
    (victim / "sub").mkdir(parents=True)
    for n in ("state", "lock", "sub/precious"):
        (victim / n).write_text("victim")
    return victim


def test_journal_deletion_removes_only_the_journal_inode(
    trees: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """races.md 7: the journal is swapped for another directory just as its deletion
    starts (the first removal pass): that directory is left whole."""
    import linkstrategy._removal as RM
    import linkstrategy._trash as TR

    new, dst, want, _old = trees
    jname = T.journal_name(dst.name)
    victim: list[Path] = []
    real = RM.passes

    def swap_first(*a: Any, **kw: Any) -> None:
        if not victim and (dst.parent / jname).exists():
            victim.append(_swap_for_a_victim(dst.parent, jname))
        real(*a, **kw)

    monkeypatch.setattr(RM, "passes", swap_first)
    monkeypatch.setattr(TR, "passes", swap_first)
    replace(new, dst)
    monkeypatch.undo()
    assert snapshot(dst) == want and victim
    assert sorted(os.listdir(victim[0])) == ["lock", "state", "sub"]
    assert (victim[0] / "sub" / "precious").read_text() == "victim"


def test_staging_dir_exit_removes_only_the_directory_it_made(tmp_path: Path) -> None:
    """races.md 7: the staging directory swapped for another directory while in use:
    its exit leaves that one whole (and, by its name, nothing of the caller's)."""
    dst = tmp_path / "pkg"
    with staging_dir(dst) as tree:
        stage = tree.parent
        victim = _swap_for_a_victim(tmp_path, stage.name)
    assert (victim / "sub" / "precious").read_text() == "victim"
    assert sorted(os.listdir(victim)) == ["lock", "state", "sub"]


def test_a_failed_begin_removes_only_the_journal_it_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """races.md 7: begin() fails (ENOSPC writing the first state) after its journal was
    swapped for another directory: its clean-up leaves that one whole."""
    new, dst = tmp_path / "new", tmp_path / "pkg"
    build(new, "new")
    victim: list[Path] = []

    def swap_then_fail(jfd: int, state: Any) -> None:
        name = next(n for n in os.listdir(tmp_path) if n.startswith(".pkg.linkstrategy-txn-"))
        victim.append(_swap_for_a_victim(tmp_path, name))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(T, "_write_state", swap_then_fail)
    with pytest.raises(OSError) as ei:
        replace(new, dst)
    assert ei.value.errno == errno.ENOSPC
    assert (victim[0] / "sub" / "precious").read_text() == "victim"


@pytest.mark.parametrize("phase", ["building", "swapping"])
def test_recovery_never_moves_a_tree_that_is_not_the_journals(tmp_path: Path, phase: str) -> None:
    """A replace() killed with its old tree moved into the journal (two renames, no
    exchange); since then another process put its own tree at dst.  Recovery, either
    way, moves only the journal's own trees: that one stays, the journal is kept (its
    trees with it) and the recovery reports it."""
    dst = tmp_path / "pkg"
    build(dst, "old", n=5)
    old = snapshot(dst)
    txn, fd = begin_txn(dst)
    os.rename(dst, tmp_path / txn.jname / "old")  # the swap's first rename
    if phase == "swapping":
        build(tmp_path / txn.jname / "new", "new", n=3)
        st = os.lstat(tmp_path / txn.jname / "new")
        txn.write(phase="swapping", new=[st.st_dev, st.st_ino])
    txn.close()  # killed
    os.close(fd)
    _other_tree(dst)
    with pytest.raises(RemoveError) as ei:
        recover_for(dst)
    assert ei.value.errno == errno.EPERM and ei.value.filename == str(dst)
    assert os.listdir(dst) == ["work"]
    assert snapshot(tmp_path / T.journal_name("pkg") / "old") == old
    assert gc(tmp_path).foreign  # reported, left as it is


def test_without_locks_a_journal_is_recovered_only_after_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where flock gives ENOLCK (NFS without lockd), a journal cannot be told live by
    its lock: it is recovered only once its lock file is older than GRACE_NO_LOCK
    (not "go on unlocked" at once, which a gc would do to a live replace())."""
    import fcntl

    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    dst = tmp_path / "pkg"
    build(dst, "old", n=5)
    txn, fd = begin_txn(dst)  # a replace() at work (unlocked: it cannot lock here)
    try:
        with pytest.raises(TransactionBusy):
            recover_for(dst)
        assert gc(tmp_path).ok and leftovers(tmp_path) == [txn.jname]
        monkeypatch.setattr(T, "GRACE_NO_LOCK", -1.0)  # an hour on: its maker is gone
        assert recover_for(dst)
        assert leftovers(tmp_path) == [] and snapshot(dst)
    finally:
        txn.close()
        os.close(fd)


def test_a_journal_killed_while_locking_goes_after_a_short_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A journal being made whose maker was killed between creating its pending lock
    file and renaming it to ``lock``: its pending lock, free, says so -- after
    GRACE_FILE (the create-to-lock gap), not at once (a maker may be in that gap)."""
    j = tmp_path / ".pkg.linkstrategy-txn-0badcafe"
    j.mkdir(mode=0o700)
    (j / "lock.new").write_text("")
    assert gc(tmp_path).ok and leftovers(tmp_path) == [j.name]
    monkeypatch.setattr(T, "GRACE_FILE", -1.0)
    g = gc(tmp_path)
    assert g.ok and g.removed == 1 and leftovers(tmp_path) == []
