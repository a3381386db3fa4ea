"""remove(), gc() and collect_trash() against real filesystems.

Faults the kernel or FUSE can produce are produced there (FaultFS injects
EBUSY on the real rmdir/unlink/rename; ``nfslike`` silly-renames open files);
the others (EAGAIN, EIO, a component swapped mid-walk) are injected where
``linkstrategy._tree`` (the engine) makes the call, scoped to the path under test.
"""

from __future__ import annotations

import errno
import os
import random
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import killshim, mountutil
from support.caps import DROP_DAC
from support.trash import make_trash

import linkstrategy._remove as R
import linkstrategy._trash as TR
import linkstrategy._tree as RT
from linkstrategy._errors import RemoveError
from linkstrategy._gc import gc
from linkstrategy._remove import remove
from linkstrategy._trash import TRASH_NAME, collect_trash


def make_tree(root: Path, files: int = 20, depth: int = 3) -> list[Path]:
    """A tree with nested dirs, files, an empty dir and symlinks; the files made."""
    made = []
    for i in range(files):
        d = root.joinpath(*[f"d{(i + k) % 3}" for k in range(i % (depth + 1))])
        d.mkdir(parents=True, exist_ok=True)
        f = d / f"f{i}.txt"
        f.write_text(f"file {i}\n")
        made.append(f)
    (root / "empty" / "deeper").mkdir(parents=True)
    os.symlink("f0.txt", root / "rel-link")
    os.symlink("/nonexistent/target", root / "dangling")
    return made


def count_entries(root: Path) -> int:
    n = 1
    for _dirpath, dirnames, filenames in os.walk(root):
        n += len(dirnames) + len(filenames)
    return n


def need_root(kind: str = "tmpfs") -> None:
    reason = mountutil.mount_skip_reason(kind)
    if reason:
        pytest.skip(f"needs mounts: {reason}")


@pytest.fixture
def unlink_spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every name remove() unlinks (at its call site), in order."""
    calls: list[str] = []
    real = R.os.unlink
    monkeypatch.setattr(RT, "_fast", None)  # seen at the Python call site: no C pass

    def spy(name: Any, *a: Any, **kw: Any) -> None:
        real(name, *a, **kw)
        calls.append(os.fspath(name))

    monkeypatch.setattr(R.os, "unlink", spy)
    return calls


def fail_first(
    monkeypatch: pytest.MonkeyPatch, fn: str, code: int, count: int, match: Callable[[str], bool]
) -> list[int]:
    """Make ``R.os.<fn>`` fail with ``code`` for the first ``count`` matching names."""
    real = getattr(R.os, fn)
    left = [count]
    monkeypatch.setattr(RT, "_fast", None)  # injected at the Python call site: no C pass

    def fake(name: Any, *a: Any, **kw: Any) -> Any:
        if left[0] > 0 and match(os.fspath(name)):
            left[0] -= 1
            raise OSError(code, os.strerror(code), name)
        return real(name, *a, **kw)

    monkeypatch.setattr(R.os, fn, fake)
    return left


# -- basics --------------------------------------------------------------------------


def test_removes_tree_with_files_symlinks_and_empty_dirs(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    make_tree(root)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    os.symlink(outside, root / "link-to-outside")
    os.mkfifo(root / "fifo")
    expected = count_entries(root)
    r = remove(root)
    assert not os.path.lexists(root)
    assert r.removed == expected
    assert r.ok and r.deferred == () and r.errors == () and r.mounts_skipped == ()
    assert (outside / "keep").read_text() == "keep"  # the symlink was not followed


def test_missing_path_is_not_an_error(tmp_path: Path) -> None:
    r = remove([tmp_path / "nope", tmp_path / "no" / "such" / "dir"])
    assert r.ok and r.removed == 0


def test_file_and_symlink_roots_never_follow(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "x").write_text("x")
    link = tmp_path / "link"
    os.symlink(target, link)
    f = tmp_path / "file"
    f.write_text("f")
    r = remove([link, f])
    assert r.removed == 2
    assert not os.path.lexists(link) and not f.exists()
    assert (target / "x").read_text() == "x"


def test_many_workers_remove_everything(tmp_path: Path) -> None:
    root = tmp_path / "wide"
    for d in range(4):
        (root / f"d{d}").mkdir(parents=True)
        for i in range(100):
            (root / f"d{d}" / f"f{i}").write_bytes(b"x")
    r = remove(root, workers=8)
    assert not root.exists() and r.removed == 405 and r.ok


# -- refusals ------------------------------------------------------------------------


def test_refuses_filesystem_root() -> None:
    with pytest.raises(RemoveError) as ei:
        remove("/")
    assert "root directory" in str(ei.value)


def test_refuses_home_and_its_ancestors_and_touches_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "users" / "alice"
    home.mkdir(parents=True)
    (home / ".bashrc").write_text("x")
    other = tmp_path / "other"
    other.write_text("o")
    monkeypatch.setenv("HOME", str(home))
    for victim in (home, tmp_path / "users", tmp_path / "users" / "alice" / "."):
        with pytest.raises(RemoveError) as ei:
            remove([other, victim])  # refusal comes before anything is removed
        assert ei.value.errno == errno.EPERM
        assert "home directory" in str(ei.value)
    assert other.exists() and (home / ".bashrc").exists()


@pytest.mark.root
def test_refuses_a_mount_point(tmp_path: Path) -> None:
    need_root()
    with mountutil.tmpfs_mount(tmp_path, size="1m", name="mnt") as mp:
        (mp / "data").write_text("d")
        with pytest.raises(RemoveError) as ei:
            remove(mp)
        assert ei.value.errno == errno.EBUSY and ei.value.filename == str(mp)
        assert (mp / "data").read_text() == "d"


# -- mounts inside the tree -----------------------------------------------------------


@pytest.mark.root
def test_tmpfs_inside_tree_is_left_untouched_and_reported(tmp_path: Path, remove_walk: str) -> None:
    need_root()
    root = tmp_path / "tree"
    make_tree(root)
    (root / "sub").mkdir()
    with mountutil.tmpfs_mount(root / "sub", size="1m", name="mnt") as mp:
        (mp / "inside").write_text("precious")
        (mp / "dir").mkdir()
        r = remove(root, budget=0.5)
        assert r.mounts_skipped == (str(mp),)
        assert not r.ok and r.errors == () and r.deferred == ()
        assert (mp / "inside").read_text() == "precious"
        assert (mp / "dir").is_dir()
        # Everything else went; only the path down to the mount is left.
        assert sorted(os.listdir(root)) == ["sub"]
        assert os.listdir(root / "sub") == ["mnt"]
        assert r.seconds < 0.5  # a mount is not retried
    r = remove(root)  # after the unmount it goes
    assert r.ok and not root.exists()


@pytest.mark.root
def test_bind_mount_of_same_filesystem_inside_tree_is_not_crossed(
    tmp_path: Path, remove_walk: str
) -> None:
    need_root("bind")
    root = tmp_path / "tree"
    (root / "a").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("k")
    with mountutil.bind_mount(elsewhere, root / "a", name="bm") as mp:
        assert os.stat(mp).st_dev == os.stat(root).st_dev  # st_dev alone cannot tell
        r = remove(root, budget=0.2)
        assert r.mounts_skipped == (str(mp),)
        assert (elsewhere / "keep").read_text() == "k"


def test_btrfs_subvolume_inside_tree_is_left_and_reported(btrfs: Path, remove_walk: str) -> None:
    root = btrfs / "tree"
    root.mkdir()
    (root / "f").write_text("f")
    sv = mountutil.btrfs_subvolume(root, "sv")
    (sv / "snap-data").write_text("s")
    try:
        r = remove(root, budget=0.2)
        assert r.mounts_skipped == (str(sv),)
        assert (sv / "snap-data").read_text() == "s"
        assert not (root / "f").exists()
    finally:
        subprocess.run(["btrfs", "subvolume", "delete", str(sv)], capture_output=True)


def test_btrfs_subvolume_named_as_the_root_is_removed(btrfs: Path) -> None:
    sv = mountutil.btrfs_subvolume(btrfs, "sv-root")
    (sv / "d").mkdir()
    (sv / "d" / "f").write_text("f")
    assert os.stat(sv).st_dev != os.stat(btrfs).st_dev  # a subvolume, not a mount
    r = remove(sv)
    assert r.ok and r.removed == 3 and not sv.exists()


# -- permissions ---------------------------------------------------------------------

_NO_DAC = DROP_DAC + textwrap.dedent(
    """
    import json, os, sys
    try:
        os.unlink(sys.argv[2])
        raise SystemExit("capabilities were not dropped")
    except PermissionError:
        pass
    from linkstrategy._remove import remove
    r = remove(sys.argv[1], budget=1.0)
    print(json.dumps(r.to_json()))
    """
)


def test_read_only_directories_are_made_writable(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("drops capabilities; as a normal user chmod tests are trivial")
    root = tmp_path / "ro"
    make_tree(root)
    (root / "locked").mkdir()
    (root / "locked" / "f").write_text("x")
    probe = root / "probe"
    probe.write_text("p")
    for dirpath, _dirs, _files in os.walk(root):
        os.chmod(dirpath, 0o555)
    os.chmod(root / "locked", 0o000)
    res = subprocess.run(
        [sys.executable, "-c", _NO_DAC, str(root), str(probe)], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert not root.exists(), res.stdout
    assert '"errors": []' in res.stdout


# -- retries and deferral (injected at the call site) ---------------------------------


def test_eagain_on_unlink_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "t"
    make_tree(root)
    left = fail_first(monkeypatch, "unlink", errno.EAGAIN, 3, lambda n: n == "f1.txt")
    r = remove(root, budget=5)
    assert left == [0] and r.retries == 3 and r.ok and not root.exists()


def test_non_retryable_error_is_reported_and_last_entries_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg, info = dist(tmp_path)
    fail_first(monkeypatch, "unlink", errno.EIO, 1, lambda n: n == "core.py")
    r = remove([pkg, info], last=("METADATA", "RECORD"), budget=1)
    assert [(e.path, e.errno) for e in r.errors] == [(str(pkg / "core.py"), errno.EIO)]
    # A file could not go, so the metadata listing it stays.
    assert (info / "METADATA").exists() and (info / "RECORD").exists()
    assert (pkg / "core.py").exists() and not (pkg / "util.py").exists()


def test_busy_past_budget_is_deferred_to_trash_and_gc_empties_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "venv"
    make_tree(root)
    fail_first(monkeypatch, "rmdir", errno.EBUSY, 10**6, lambda n: n == "d1")
    t0 = time.monotonic()
    r = remove(root, budget=0.3)
    took = time.monotonic() - t0
    assert 0.3 <= took < 2.0
    assert not os.path.lexists(root)  # the destination is clean
    (d,) = r.deferred
    assert d.path == str(root) and "budget" in d.reason
    trash = Path(d.trash)
    assert trash.parent == tmp_path / TRASH_NAME and trash.name.endswith("-venv")
    assert (trash / "d1").is_dir() and r.errors == () and r.retries > 3
    monkeypatch.undo()
    g = gc(tmp_path)
    assert g.ok and g.removed >= 1 and not (tmp_path / TRASH_NAME).exists()


def test_deferral_that_cannot_rename_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "t"
    (root / "d").mkdir(parents=True)
    fail_first(monkeypatch, "rmdir", errno.EBUSY, 10**6, lambda n: n == "d")
    fail_first(monkeypatch, "rename", errno.EXDEV, 10**6, lambda n: n == "t")
    r = remove(root, budget=0.05)
    (e,) = r.errors
    assert e.path == str(root) and e.errno == errno.EXDEV and "trash" in e.reason
    assert r.deferred == () and root.exists()


@pytest.mark.python_walk
@pytest.mark.parametrize("walk", ["serial", "parallel"])
def test_symlink_swapped_in_mid_walk_is_removed_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, walk: str
) -> None:
    root = tmp_path / "t"
    if walk == "parallel":
        deep_tree(root)  # enough directories for the pool to take over
    (root / "victim" / "inner").mkdir(parents=True)
    (root / "victim" / "inner" / "f").write_text("x")
    outside = tmp_path / "outside"
    (outside / "inner").mkdir(parents=True)
    (outside / "inner" / "f").write_text("precious")
    real = RT.statx
    swapped = []

    def racing(dir_fd: int, name: str) -> RT.StatxResult:
        st = real(dir_fd, name)
        if name == "victim" and not swapped:
            # Between the check and the open, the directory becomes a symlink out.
            os.rename(root / "victim", tmp_path / "moved")
            os.symlink(outside, root / "victim")
            swapped.append(1)
        return st

    monkeypatch.setattr(RT, "statx", racing)
    r = remove(root, workers=8 if walk == "parallel" else None)
    assert swapped and r.ok and not os.path.lexists(root)
    assert (outside / "inner" / "f").read_text() == "precious"
    assert (tmp_path / "moved" / "inner" / "f").exists()  # moved out of the tree: not ours


# -- `last` ordering -------------------------------------------------------------------


def dist(base: Path) -> tuple[Path, Path]:
    pkg = base / "site" / "pkg"
    info = base / "site" / "pkg-1.0.dist-info"
    (pkg / "sub").mkdir(parents=True)
    info.mkdir(parents=True)
    for n in ("__init__.py", "core.py", "util.py", "sub/a.py", "sub/b.so"):
        (pkg / n).write_text(n)
    for n in ("INSTALLER", "WHEEL", "top_level.txt", "METADATA", "RECORD"):
        (info / n).write_text(n)
    return pkg, info


def test_last_entries_go_after_everything_else_in_order(
    tmp_path: Path, unlink_spy: list[str]
) -> None:
    pkg, info = dist(tmp_path)
    r = remove([info, pkg], last=("METADATA", "RECORD"))
    assert r.ok and not pkg.exists() and not info.exists()
    assert unlink_spy[-2:] == ["METADATA", "RECORD"]
    assert len(unlink_spy) == 10


def test_last_accepts_absolute_paths(tmp_path: Path, unlink_spy: list[str]) -> None:
    pkg, info = dist(tmp_path)
    files = sorted(p for p in [*pkg.rglob("*"), *info.iterdir()] if p.is_file())
    r = remove(files, last=(str(info / "RECORD"), str(info / "METADATA")))
    assert r.ok and unlink_spy[-2:] == ["RECORD", "METADATA"]
    assert sorted(os.listdir(info)) == []


_KILL_CHILD = killshim.ARM + textwrap.dedent(
    """
    import sys
    from linkstrategy import _remove
    _arm(int(sys.argv[3]))  # kill -9 after the k-th unlink or rmdir
    _remove.remove(sys.argv[1:3], last=("METADATA", "RECORD"))
    """
)


def test_kill_at_random_points_never_orphans_files(
    tmp_path: Path, kill_shim: Path, remove_walk: str
) -> None:
    rng = random.Random(1234)
    total = 5 + 5 + 2 + 2  # files, then dirs (sub, pkg, dist-info): kill anywhere in it
    points = sorted(set(rng.sample(range(1, total + 1), 8)) | {9, 10, 11})
    for k in points:
        base = tmp_path / f"k{k}"
        pkg, info = dist(base)
        env = {**os.environ, "LD_PRELOAD": str(kill_shim)}
        if remove_walk == "python":
            env["LINKSTRATEGY_NO_SPEEDUPS"] = "1"
        res = subprocess.run(
            [sys.executable, "-c", _KILL_CHILD, str(pkg), str(info), str(k)],
            capture_output=True,
            env=env,
        )
        assert res.returncode == -9, (k, res.stderr)
        left = {p.name for p in pkg.rglob("*") if p.is_file()} if pkg.exists() else set()
        meta = {n for n in ("METADATA", "RECORD") if (info / n).exists()}
        others = {p.name for p in info.iterdir()} - meta if info.exists() else set()
        if left or others:
            assert meta == {"METADATA", "RECORD"}, (k, left, others, meta)
        if "METADATA" in meta:
            assert "RECORD" in meta  # gone in the order given
        # A later call finishes the job.
        r = remove([pkg, info], last=("METADATA", "RECORD"))
        assert r.ok and not pkg.exists() and not info.exists(), k


# -- FUSE: real EBUSY, silly renames, latency -------------------------------------------


@pytest.mark.parametrize("op", ["rmdir", "unlink"])
@pytest.mark.parametrize("n", [1, 3, 6])
def test_injected_ebusy_is_retried_within_budget(fusefs: Any, op: str, n: int) -> None:
    root = Path(fusefs.mountpoint) / "tree"
    make_tree(root, files=12)
    fusefs.inject(op, errno.EBUSY, count=n)
    r = remove(root, budget=5.0)
    assert r.ok and r.deferred == () and not os.path.lexists(root)
    assert fusefs.consumed(op) == n and r.retries >= n


def test_injected_ebusy_on_deferral_rename_is_an_error_then_retried(fusefs: Any) -> None:
    root = Path(fusefs.mountpoint) / "tree"
    make_tree(root, files=3)
    fusefs.inject("rmdir", errno.EBUSY, count=10**6, path="/tree")
    fusefs.inject("rename", errno.EBUSY, count=1)
    r = remove(root, budget=0.1)
    assert [e.errno for e in r.errors] == [errno.EBUSY] and root.exists()
    r = remove(root, budget=0.1)  # the rename now works: deferred
    assert len(r.deferred) == 1 and not root.exists()


@pytest.fixture
def held(request: pytest.FixtureRequest) -> Iterator[list[Any]]:
    files: list[Any] = []
    yield files
    for f in files:
        f.close()


@pytest.mark.parametrize("fsname", ["nfslike", "fusefs"])
def test_held_open_file_is_deferred_at_once_and_gc_removes_it_after_close(
    fsname: str, request: pytest.FixtureRequest, held: list[Any]
) -> None:
    fs = request.getfixturevalue(fsname)
    mnt = Path(fs.mountpoint)
    root = mnt / "venv"
    make_tree(root)
    (root / "lib").mkdir()
    (root / "lib" / "ext.so").write_bytes(b"\x7fELF")
    holder = open(root / "lib" / "ext.so", "rb")  # noqa: SIM115
    held.append(holder)
    t0 = time.monotonic()
    r = remove(root, budget=5.0)
    assert time.monotonic() - t0 < 1.0  # not the whole budget: waiting cannot help
    assert not os.path.lexists(root)  # clean at once
    (d,) = r.deferred
    assert d.path == str(root) and "held open" in d.reason, d
    trash = Path(d.trash)
    left = os.listdir(trash / "lib")
    assert len(left) == 1 and left[0].startswith((".nfs", ".fuse_hidden"))
    # While it is held, gc keeps it and says so.
    g = gc(mnt)
    assert trash.exists() and [x.trash for x in g.deferred] == [str(trash)]
    holder.close()
    deadline = time.monotonic() + 3
    while True:  # the silly-renamed name vanishes when the holder closes
        g = gc(mnt)
        if not (mnt / TRASH_NAME).exists() or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert g.ok and g.deferred == () and not (mnt / TRASH_NAME).exists()


def test_latency_mount_uses_a_pool_and_removes_everything(latencyfs: Any) -> None:
    root = Path(latencyfs.mountpoint) / "tree"
    latencyfs.set_latency(0)
    for d in range(2):
        (root / f"d{d}").mkdir(parents=True)
        for i in range(40):
            (root / f"d{d}" / f"f{i}").write_bytes(b"x")
    latencyfs.set_latency(2)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert RT._network_workers(fd) == RT._NETWORK_WORKERS
    finally:
        os.close(fd)
    r = remove(root)
    assert r.ok and r.removed == 83 and not root.exists()


# -- the parallel walk (network mounts; workers > 1; big local trees) --------------------


def deep_tree(root: Path, dirs: int = 12, files: int = 3) -> int:
    """Nested and sibling directories with files; the number of entries (root too)."""
    for d in range(dirs):
        sub = root.joinpath(*[f"l{k}" for k in range(d % 4)], f"d{d}")
        sub.mkdir(parents=True)
        for i in range(files):
            (sub / f"f{i}").write_text("x")
    return count_entries(root)


def test_parallel_walk_keeps_last_entries_for_the_end(
    tmp_path: Path, unlink_spy: list[str]
) -> None:
    pkg, info = dist(tmp_path)
    deep_tree(pkg / "deep")
    r = remove([info, pkg], last=("METADATA", "RECORD"), workers=8)
    assert r.ok and not pkg.exists() and not info.exists()
    assert unlink_spy[-2:] == ["METADATA", "RECORD"]


@pytest.mark.root
def test_parallel_walk_leaves_a_mount_alone(tmp_path: Path) -> None:
    need_root()
    root = tmp_path / "tree"
    deep_tree(root)
    (root / "l0" / "sub").mkdir(parents=True)
    expected = count_entries(root)
    with mountutil.tmpfs_mount(root / "l0" / "sub", size="1m", name="mnt") as mp:
        (mp / "inside").write_text("precious")
        r = remove(root, budget=0.2, workers=8)
        assert r.mounts_skipped == (str(mp),) and r.errors == () and r.deferred == ()
        assert (mp / "inside").read_text() == "precious"
        assert sorted(os.listdir(root)) == ["l0"] and os.listdir(root / "l0") == ["sub"]
        assert r.removed == expected - 3  # all but root, l0 and sub


def test_parallel_walk_retries_busy_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "t"
    expected = deep_tree(root)
    left = fail_first(monkeypatch, "rmdir", errno.EBUSY, 3, lambda n: n == "l1")
    r = remove(root, budget=5, workers=8)
    assert left == [0] and r.ok and r.retries == 3 and r.removed == expected
    assert not root.exists()


def test_big_local_tree_is_handed_to_threads_midway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unlink_spy: list[str]
) -> None:
    monkeypatch.setattr(RT, "_LOCAL_SERIAL_DIRS", 2)
    monkeypatch.setattr(RT, "_local_workers", lambda: 2)
    handed: list[int] = []
    real_adopt = RT._ParallelWalk.adopt

    def adopt(self: Any, stack: list[Any]) -> bool:
        handed.append(len(stack))
        return real_adopt(self, stack)

    monkeypatch.setattr(RT._ParallelWalk, "adopt", adopt)
    pkg, info = dist(tmp_path)
    deep_tree(pkg / "deep", dirs=20)
    expected = count_entries(pkg) + count_entries(info)
    r = remove([pkg, info], last=("METADATA", "RECORD"))
    assert handed and r.ok and r.removed == expected
    assert not pkg.exists() and not info.exists()
    assert unlink_spy[-2:] == ["METADATA", "RECORD"]


@pytest.mark.parametrize("workers", [1, 4])
def test_out_of_fds_is_an_error_with_its_name_not_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    # Changed on purpose (issue #9.6): EMFILE used to be retried as "busy", spent the
    # budget and ended as a deferral with an empty reason and exit 0.
    root = tmp_path / "t"
    deep_tree(root)
    fail_first(monkeypatch, "open", errno.EMFILE, 1, lambda n: n == "d3")
    r = remove(root, budget=5, workers=workers)
    assert not r.ok and not r.deferred and r.seconds < 1
    assert [(e.errno, e.reason) for e in r.errors] == [
        (errno.EMFILE, "cannot open directory: Too many open files (EMFILE)")
    ]
    assert root.exists()


def test_unexpected_error_in_a_job_is_raised_not_hung(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "t"
    deep_tree(root)
    real = RT.Run.scan

    def boom(self: Any, fr: Any, out: Any) -> list[str]:
        if fr.path.endswith("/d5"):
            raise RuntimeError("bug")
        return real(self, fr, out)

    monkeypatch.setattr(RT.Run, "scan", boom)
    with pytest.raises(RuntimeError, match="bug"):
        remove(root, workers=4)
    monkeypatch.undo()
    assert remove(root).ok and not root.exists()


# -- trash collection -----------------------------------------------------------------


def test_collect_trash_costs_one_lstat_when_there_is_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    for fn in ("lstat", "stat", "listdir", "scandir", "open"):
        real = getattr(R.os, fn)

        def spy(*a: Any, _real: Any = real, _fn: str = fn, **kw: Any) -> Any:
            calls.append(_fn)
            return _real(*a, **kw)

        monkeypatch.setattr(R.os, fn, spy)
    monkeypatch.setattr(TR, "_known", {})
    collect_trash(tmp_path)
    # The owner and mode of the directory choose the trash's name (shared or per user).
    assert calls == ["stat", "lstat"]


def test_collect_trash_empties_old_entries_only(tmp_path: Path) -> None:
    trash = make_trash(tmp_path)
    old = trash / f"{int(time.time()) - 100}-1-abcdef-old"
    new = trash / f"{int(time.time())}-1-abcdef-new"
    (old / "x").mkdir(parents=True)
    new.mkdir()
    foreign = trash / "not-an-entry"  # no trash-entry name: never called old
    foreign.mkdir()
    collect_trash(tmp_path, min_age=50)
    assert not old.exists() and new.exists()
    collect_trash(tmp_path, min_age=0)
    assert not new.exists() and foreign.is_dir()
    foreign.rmdir()
    collect_trash(tmp_path, min_age=0)
    assert not trash.exists()


def test_next_remove_in_same_directory_empties_stale_trash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = tmp_path / "a"
    (a / "d").mkdir(parents=True)
    fail_first(monkeypatch, "rmdir", errno.EBUSY, 10**6, lambda n: n == "d")
    r = remove(a, budget=0.02)
    assert len(r.deferred) == 1
    monkeypatch.undo()
    trash_entry = Path(r.deferred[0].trash)
    # Make it look old, then any later remove() next to it collects it.
    os.rename(trash_entry, trash_entry.with_name("1000-1-abcdef-a"))
    b = tmp_path / "b"
    b.write_text("b")
    assert remove(b).ok
    assert not (tmp_path / TRASH_NAME).exists()


# -- speed (a baseline, not a benchmark) ------------------------------------------------


# -- one engine: errno decisions, the kill hook, the network table ----------------------


@pytest.mark.parametrize(
    ("code", "action"),
    [
        (errno.ENOENT, "gone"),
        (errno.EBUSY, "busy"),
        (errno.ENOTEMPTY, "retry"),
        (errno.EEXIST, "retry"),
        (errno.EAGAIN, "retry"),
        (errno.EINTR, "retry"),
        (errno.EACCES, "fix_perms"),
        (errno.EPERM, "fix_perms"),
        (errno.ELOOP, "swapped"),
        (errno.ENOTDIR, "swapped"),
        (errno.EISDIR, "swapped"),
        (errno.EMFILE, "fail"),
        (errno.ENFILE, "fail"),
        (errno.EIO, "fail"),
        (errno.EROFS, "fail"),
        (errno.ENOSPC, "fail"),
        (errno.ESTALE, "fail"),
        (errno.ENAMETOOLONG, "fail"),
        (None, "fail"),
    ],
)
def test_remove_action_table(code: int | None, action: str) -> None:
    from linkstrategy._errors import remove_action

    assert remove_action(code) == action


def test_the_kill_shim_stops_either_walk_mid_tree(
    tmp_path: Path, kill_shim: Path, remove_walk: str
) -> None:
    """The kill -9 tests stop the removal at the libc call, whichever walk runs: the
    C pass and the Python walk both die right after the n-th removal, with the rest
    of the tree still there (so those tests do cut the production loops)."""
    root = tmp_path / "t"
    (root / "sub").mkdir(parents=True)
    for i in range(12):
        (root / f"f{i:02}").write_text("x")
        (root / "sub" / f"g{i:02}").write_text("x")
    env = {**os.environ, "LD_PRELOAD": str(kill_shim)}
    if remove_walk == "python":
        env["LINKSTRATEGY_NO_SPEEDUPS"] = "1"
    child = killshim.ARM + "import sys, linkstrategy\n_arm(5)\nlinkstrategy.remove(sys.argv[1])\n"
    res = subprocess.run([sys.executable, "-c", child, str(root)], capture_output=True, env=env)
    assert res.returncode == -9, res.stderr
    assert sum(1 for p in root.rglob("*") if p.is_file()) == 24 - 5


def test_remove_decides_network_as_place_does(
    tmpfs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine's thread table asks the same classification as the probe (and the
    same $LINKSTRATEGY_NETWORK_MOUNTS): a mount place() calls network gets the
    parallel walk, one it calls local a serial one."""
    from linkstrategy import probe
    from linkstrategy._probe import clear_cache

    mp = find_mount_point(tmpfs_dir)
    fd = os.open(tmpfs_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for env in ("", mp):
            monkeypatch.setenv("LINKSTRATEGY_NETWORK_MOUNTS", env)
            clear_cache()
            network = probe(str(tmpfs_dir)).network
            assert network == bool(env)
            assert RT._network_workers(fd) == (RT._NETWORK_WORKERS if network else 1)
    finally:
        os.close(fd)
        clear_cache()


def find_mount_point(p: Path) -> str:
    from linkstrategy._mounts import find_mount

    return find_mount(str(p)).mount_point
