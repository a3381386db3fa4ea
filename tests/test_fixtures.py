"""The mount fixtures are what they claim to be, checked on the real kernel."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from support import mountutil
from support.mountutil import FaultFS

FICLONE = 0x40049409

# Every test here mounts something (loop images, tmpfs, FUSE).
pytestmark = pytest.mark.root


def _fstype(path: Path) -> str:
    """fstype of the mount holding ``path`` (longest mount-point prefix)."""
    p = os.path.realpath(path)
    best = ""
    fstype = ""
    for m in mountutil.mount_info():
        mp = m["mount_point"]
        if (p == mp or p.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best):
            best, fstype = mp, m["fstype"]
    return fstype


def _clone(d: Path) -> None:
    """FICLONE d/src -> d/dst (raises OSError on failure)."""
    src, dst = d / "src", d / "dst"
    src.write_bytes(b"x" * 65536)
    with open(src, "rb") as s, open(dst, "wb") as t:
        fcntl.ioctl(t.fileno(), FICLONE, s.fileno())
    assert dst.read_bytes() == src.read_bytes()


def _losetup_lines() -> list[str]:
    res = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=True)
    return [line for line in res.stdout.splitlines() if mountutil.IMAGE_PREFIX in line]


# ----------------------------------------------------------------- fstypes
@pytest.mark.parametrize(
    ("fixture", "fstype"),
    [
        ("xfs_reflink", "xfs"),
        ("xfs_noreflink", "xfs"),
        ("btrfs", "btrfs"),
        ("ext4", "ext4"),
        ("ext4_b", "ext4"),
        ("tmpfs_dir", "tmpfs"),
        ("spaced_mount", "tmpfs"),
    ],
)
def test_fstype(fixture: str, fstype: str, request: pytest.FixtureRequest) -> None:
    d: Path = request.getfixturevalue(fixture)
    assert d.is_dir()
    assert list(d.iterdir()) == []
    assert _fstype(d) == fstype


def test_fresh_dirs_are_distinct(xfs_reflink: Path, mounts_base: Path) -> None:
    assert str(xfs_reflink).startswith(str(mounts_base))
    (xfs_reflink / "a").write_text("a")


def test_ext4_and_ext4_b_are_distinct(ext4: Path, ext4_b: Path) -> None:
    assert os.stat(ext4).st_dev != os.stat(ext4_b).st_dev
    (ext4 / "f").write_text("x")
    with pytest.raises(OSError) as ei:
        os.link(ext4 / "f", ext4_b / "f")
    assert ei.value.errno == errno.EXDEV


def test_spaced_mount_has_space(spaced_mount: Path) -> None:
    ent = mountutil.mount_entry(spaced_mount.parent)
    assert ent is not None
    assert " " in ent["mount_point"]
    (spaced_mount / "f").write_text("x")


# ----------------------------------------------------------------- reflink
@pytest.mark.parametrize("fixture", ["xfs_reflink", "btrfs"])
def test_ficlone_works(fixture: str, request: pytest.FixtureRequest) -> None:
    _clone(request.getfixturevalue(fixture))


@pytest.mark.parametrize("fixture", ["xfs_noreflink", "ext4", "tmpfs_dir"])
def test_ficlone_unsupported(fixture: str, request: pytest.FixtureRequest) -> None:
    with pytest.raises(OSError) as ei:
        _clone(request.getfixturevalue(fixture))
    assert ei.value.errno == errno.EOPNOTSUPP


def test_ficlone_unsupported_on_fuse(fusefs: FaultFS) -> None:
    with pytest.raises(OSError) as ei:
        _clone(fusefs.mountpoint)
    assert ei.value.errno == errno.EOPNOTSUPP


# ----------------------------------------------------------------- EXDEV / EROFS
def test_xfs_bind_same_dir_two_views(xfs_bind: tuple[Path, Path]) -> None:
    orig, bind = xfs_bind
    assert orig != bind
    assert _fstype(orig) == "xfs"
    assert _fstype(bind) == "xfs"
    (orig / "f").write_text("x")
    assert (bind / "f").read_text() == "x"
    assert os.stat(orig).st_dev == os.stat(bind).st_dev
    with pytest.raises(OSError) as ei:
        os.link(orig / "f", bind / "g")
    assert ei.value.errno == errno.EXDEV
    os.link(orig / "f", orig / "g")  # same mount: fine


def test_btrfs_subvols_exdev(btrfs_subvols: tuple[Path, Path]) -> None:
    a, b = btrfs_subvols
    assert _fstype(a) == _fstype(b) == "btrfs"
    (a / "f").write_text("x")
    with pytest.raises(OSError) as ei:
        os.link(a / "f", b / "f")
    assert ei.value.errno == errno.EXDEV
    with open(a / "f", "rb") as s, open(b / "clone", "wb") as t:
        fcntl.ioctl(t.fileno(), FICLONE, s.fileno())  # reflink across subvolumes works


def test_readonly_dir(readonly_dir: Path) -> None:
    assert (readonly_dir / "f").read_bytes() == b"read-only\n"
    for attempt in (
        lambda: (readonly_dir / "new").write_text("x"),
        lambda: (readonly_dir / "f").unlink(),
        lambda: os.mkdir(readonly_dir / "d"),
    ):
        with pytest.raises(OSError) as ei:
            attempt()
        assert ei.value.errno == errno.EROFS


# ----------------------------------------------------------------- FUSE
def test_fusefs_fstype_and_passthrough(fusefs: FaultFS) -> None:
    mp = fusefs.mountpoint
    ent = mountutil.mount_entry(mp)
    assert ent is not None
    assert ent["fstype"] == "fuse.faultfs"
    (mp / "d").mkdir()
    (mp / "d" / "f").write_bytes(b"hello")
    assert (fusefs.backing / "d" / "f").read_bytes() == b"hello"
    os.link(mp / "d" / "f", mp / "d" / "h")
    assert os.stat(mp / "d" / "f").st_nlink == 2
    os.symlink("f", mp / "d" / "s")
    assert os.readlink(mp / "d" / "s") == "f"
    os.rename(mp / "d" / "h", mp / "d" / "i")
    os.chmod(mp / "d" / "i", 0o600)
    assert os.stat(mp / "d" / "i").st_mode & 0o777 == 0o600
    os.utime(mp / "d" / "i", ns=(1_000_000_001, 2_000_000_002))
    assert os.stat(mp / "d" / "i").st_mtime_ns == 2_000_000_002
    assert sorted(os.listdir(mp / "d")) == ["f", "i", "s"]
    assert os.statvfs(mp).f_bsize > 0
    for name in ("f", "i", "s"):
        os.unlink(mp / "d" / name)
    os.rmdir(mp / "d")
    assert os.listdir(fusefs.backing) == []


def test_fusefs_xattrs(fusefs: FaultFS) -> None:
    p = fusefs.mountpoint / "x"
    p.write_text("x")
    os.setxattr(p, "user.x", b"1")
    assert os.getxattr(p, "user.x") == b"1"
    assert "user.x" in os.listxattr(p)
    os.removexattr(p, "user.x")
    with pytest.raises(OSError) as ei:
        os.getxattr(p, "user.x")
    assert ei.value.errno == errno.ENODATA


def test_fusefs_rename_noreplace(fusefs: FaultFS) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    a, b = fusefs.mountpoint / "a", fusefs.mountpoint / "b"
    a.write_text("a")
    b.write_text("b")
    rc = libc.renameat2(-100, bytes(a), -100, bytes(b), 1)  # RENAME_NOREPLACE
    assert rc == -1
    assert ctypes.get_errno() == errno.EEXIST
    assert b.read_text() == "b"


def test_fault_injection_rmdir(fusefs: FaultFS) -> None:
    d = fusefs.mountpoint / "d"
    d.mkdir()
    fusefs.inject("rmdir", errno.EBUSY, count=2)
    for _ in range(2):
        with pytest.raises(OSError) as ei:
            os.rmdir(d)
        assert ei.value.errno == errno.EBUSY
    os.rmdir(d)
    assert fusefs.consumed() == 2
    assert fusefs.consumed("rmdir") == 2
    assert fusefs.consumed("unlink") == 0


def test_fault_injection_path_glob_and_clear(fusefs: FaultFS) -> None:
    mp = fusefs.mountpoint
    (mp / "keep").write_text("k")
    (mp / "drop").write_text("d")
    fusefs.inject("unlink", errno.EIO, count=5, path="/keep")
    os.unlink(mp / "drop")  # does not match the glob
    with pytest.raises(OSError) as ei:
        os.unlink(mp / "keep")
    assert ei.value.errno == errno.EIO
    assert fusefs.consumed() == 1
    fusefs.clear()
    os.unlink(mp / "keep")
    assert fusefs.consumed() == 0
    stats = json.loads(fusefs.stats.read_text())
    assert stats["faults"] == []


def test_fault_injection_rename_and_link(fusefs: FaultFS) -> None:
    mp = fusefs.mountpoint
    (mp / "a").write_text("a")
    fusefs.inject("rename", errno.EXDEV, count=1)
    fusefs.inject("link", errno.EMLINK, count=1)
    with pytest.raises(OSError) as ei:
        os.rename(mp / "a", mp / "b")
    assert ei.value.errno == errno.EXDEV
    with pytest.raises(OSError) as ei:
        os.link(mp / "a", mp / "c")
    assert ei.value.errno == errno.EMLINK
    os.rename(mp / "a", mp / "b")
    os.link(mp / "b", mp / "c")
    assert fusefs.consumed_per_fault() == [1, 1]


def test_latency(latencyfs: FaultFS) -> None:
    p = latencyfs.mountpoint / "f"
    p.write_text("x")
    t0 = time.perf_counter()
    for _ in range(50):
        os.stat(p)
    assert time.perf_counter() - t0 >= 0.050
    latencyfs.set_latency(0)
    os.stat(p)  # picks up the new control file
    t0 = time.perf_counter()
    for _ in range(50):
        os.stat(p)
    assert time.perf_counter() - t0 < 0.050 * 4  # much faster without latency


def test_requests_overlap(latencyfs: FaultFS) -> None:
    """The daemon is multithreaded: concurrent syscalls wait out their latency together."""
    from concurrent.futures import ThreadPoolExecutor

    p = latencyfs.mountpoint / "f"
    p.write_text("x")
    latencyfs.set_latency(100)
    os.stat(p)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda _: os.stat(p), range(8)))
    # sequential would be >= 8 * 2 ops * 100 ms; overlapping is ~2-3 round trips
    assert time.perf_counter() - t0 < 0.8


def test_fault_injection_create(fusefs: FaultFS) -> None:
    fusefs.inject("create", errno.ENOSPC, count=1, path="/new*")
    with pytest.raises(OSError) as ei:
        (fusefs.mountpoint / "new1").write_text("x")
    assert ei.value.errno == errno.ENOSPC
    (fusefs.mountpoint / "new1").write_text("x")
    assert fusefs.consumed("create") == 1


def test_nfs_silly_rename(nfslike: FaultFS) -> None:
    d = nfslike.mountpoint / "d"
    d.mkdir()
    f = open(d / "x", "w")  # noqa: SIM115
    try:
        f.write("data")
        f.flush()
        os.unlink(d / "x")
        names = os.listdir(d)
        assert len(names) == 1
        silly = names[0]
        assert silly.startswith(".nfs")
        assert len(silly) == 4 + 16 + 8
        int(silly[4:], 16)
        with pytest.raises(OSError) as ei:
            os.unlink(d / silly)
        assert ei.value.errno == errno.EBUSY
        with pytest.raises(OSError) as ei:
            os.rmdir(d)
        assert ei.value.errno == errno.ENOTEMPTY
    finally:
        f.close()
    assert os.listdir(d) == []
    os.rmdir(d)


def test_nfs_silly_rename_on_rename_over(nfslike: FaultFS) -> None:
    mp = nfslike.mountpoint
    (mp / "target").write_text("old")
    (mp / "new").write_text("new")
    with open(mp / "target") as f:
        os.rename(mp / "new", mp / "target")
        assert f.read() == "old"
        assert sorted(n[:4] for n in os.listdir(mp)) == [".nfs", "targ"]
    assert os.listdir(mp) == ["target"]


def test_fuse_hidden_default(fusefs: FaultFS) -> None:
    d = fusefs.mountpoint / "d"
    d.mkdir()
    with open(d / "x", "w") as f:
        f.write("x")
        f.flush()
        os.unlink(d / "x")
        names = os.listdir(d)
        assert len(names) == 1
        assert names[0].startswith(".fuse_hidden")
    deadline = time.monotonic() + 5  # RELEASE is asynchronous in the kernel
    while os.listdir(d) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.rmdir(d)


# ----------------------------------------------------------------- no leaks
@pytest.mark.root
def test_loop_fs_cleans_up(mounts_base: Path) -> None:
    reason = mountutil.mount_skip_reason("ext4")
    if reason:
        pytest.skip(reason)
    before = _losetup_lines()
    with (
        pytest.raises(RuntimeError, match="boom"),
        mountutil.loop_fs("ext4", mounts_base, name="leak check") as mp,
    ):
        assert mountutil.is_mounted(mp)
        ent = mountutil.mount_entry(mp)
        assert ent is not None
        loopdev = ent["source"]
        assert any(loopdev + ":" in line for line in _losetup_lines())
        raise RuntimeError("boom")
    assert not mountutil.is_mounted(mp)
    assert not mp.exists()
    assert not any(loopdev + ":" in line for line in _losetup_lines())
    assert _losetup_lines() == before


@pytest.mark.root
def test_faultfs_handle_unmounts(tmp_path: Path) -> None:
    reason = mountutil.fuse_skip_reason()
    if reason:
        pytest.skip(reason)
    with FaultFS(tmp_path / "b", tmp_path / "m") as fs:
        (fs.mountpoint / "f").write_text("x")
        pid = fs.proc.pid if fs.proc else -1
    assert not mountutil.is_mounted(tmp_path / "m")
    assert (tmp_path / "b" / "f").read_text() == "x"
    assert fs.proc is not None
    assert fs.proc.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.root
def test_faultfs_start_failure_reports_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = mountutil.fuse_skip_reason()
    if reason:
        pytest.skip(reason)
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nsys.stderr.write('no mount for you\\n')\nsys.exit(3)\n")
    monkeypatch.setattr(mountutil, "FAULTFS_SCRIPT", bad)
    with pytest.raises(mountutil.MountError, match="no mount for you"):
        FaultFS(tmp_path / "b", tmp_path / "m", timeout=5).start()
