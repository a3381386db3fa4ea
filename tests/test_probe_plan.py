"""probe() and plan() on real filesystems: live capability tests, pair rules, advice."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Any

import pytest
from support import mountutil

import linkstrategy
from linkstrategy import _probe
from linkstrategy._mounts import parse_mount_table
from linkstrategy._owner import LOCK_NAME, hold, owner, release, tmp_name
from linkstrategy._probe import NETWORK_ENV, PROBE_PREFIX

DATA = Path(__file__).parent / "data" / "mounttables"


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    _probe.clear_cache()
    monkeypatch.delenv("LINKSTRATEGY_STRATEGY", raising=False)
    monkeypatch.delenv(NETWORK_ENV, raising=False)


# -- probe -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "fstype", "reflink", "hardlink"),
    [
        ("xfs_reflink", "xfs", "yes", "yes"),
        ("xfs_noreflink", "xfs", "no", "yes"),
        ("btrfs", "btrfs", "yes", "yes"),
        ("ext4", "ext4", "no", "yes"),
        ("tmpfs_dir", "tmpfs", "no", "yes"),
    ],
)
def test_live_probe_reports_what_the_filesystem_does(
    fixture: str, fstype: str, reflink: str, hardlink: str, request: pytest.FixtureRequest
) -> None:
    d: Path = request.getfixturevalue(fixture)
    p = linkstrategy.probe(d / "not" / "yet")
    assert p.mount.fstype == fstype
    assert p.tested, p.untested_reason
    assert (p.reflink, p.hardlink) == (reflink, hardlink)
    assert str(d).startswith(p.mount_point)
    assert not [n for n in os.listdir(d) if n.startswith(PROBE_PREFIX)], "test dir left behind"


def test_probe_on_xfs_without_reflink_names_the_errno(xfs_noreflink: Path) -> None:
    p = linkstrategy.probe(xfs_noreflink)
    assert p.errors["reflink"] in ("EOPNOTSUPP", "ENOTSUP")


def test_probe_is_cached_per_mount(xfs_reflink: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = _probe._live_test

    def counting(directory: str) -> _probe._Live:
        calls.append(directory)
        return real(directory)

    monkeypatch.setattr(_probe, "_live_test", counting)
    (xfs_reflink / "a").mkdir()
    first = linkstrategy.probe(xfs_reflink)
    second = linkstrategy.probe(xfs_reflink / "a" / "b")
    assert len(calls) == 1
    assert second.reflink == first.reflink == "yes"


def test_probe_removes_stale_test_dirs_of_dead_processes(tmpfs_dir: Path) -> None:
    # Liveness is the lock inside (owner IDs, _owner.judge), not a host tag and a pid.
    dead = tmpfs_dir / tmp_name(1, PROBE_PREFIX).replace(owner(), "0" * 16)
    dead.mkdir()
    (dead / "a").write_text("x")
    (dead / LOCK_NAME).write_text("")  # its maker's lock file, free: the maker is gone
    mine = tmpfs_dir / tmp_name(2, PROBE_PREFIX)
    mine.mkdir()
    fd = os.open(mine, os.O_RDONLY | os.O_DIRECTORY)
    lock = hold(fd)  # a live process's
    fresh = tmpfs_dir / f"{PROBE_PREFIX}{'1' * 16}-3"  # no lock to test, and fresh
    fresh.mkdir()
    try:
        linkstrategy.probe(tmpfs_dir)
        assert not dead.exists()
        assert mine.exists(), "a live process's test directory must be left alone"
        assert fresh.exists(), "without a lock, judged by age"
    finally:
        release(fd, lock)
        os.close(fd)


def test_probe_of_read_only_mount_is_untested_not_an_error(readonly_dir: Path) -> None:
    p = linkstrategy.probe(readonly_dir)
    assert not p.tested
    assert p.untested_reason == "read-only mount"


def test_probe_of_mount_point_with_space(spaced_mount: Path) -> None:
    p = linkstrategy.probe(spaced_mount)
    assert " " in p.mount_point
    assert p.mount.fstype == "tmpfs"
    assert str(spaced_mount).startswith(p.mount_point)


def test_bind_mount_is_another_mount_of_the_same_filesystem(xfs_bind: tuple[Path, Path]) -> None:
    orig, bound = xfs_bind
    a, b = linkstrategy.probe(orig), linkstrategy.probe(bound)
    assert a.mount.mount_id != b.mount.mount_id
    assert a.mount.superblock_key == b.mount.superblock_key
    assert os.stat(orig).st_dev == os.stat(bound).st_dev  # st_dev cannot tell them apart


def test_fuse_mount_is_recognised_and_tested(fusefs: object) -> None:
    mp = Path(fusefs.mountpoint)  # type: ignore[attr-defined]
    p = linkstrategy.probe(mp)
    assert p.mount.fstype.startswith("fuse")
    assert p.traits.fuse
    assert p.tested, p.untested_reason
    assert p.reflink == "no"  # FUSE has no clone opcode


def test_network_env_marks_a_mount_as_network(
    tmpfs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not linkstrategy.probe(tmpfs_dir).network
    mp = linkstrategy.probe(tmpfs_dir).mount_point
    monkeypatch.setenv(NETWORK_ENV, os.pathsep.join(["/nonexistent", mp]))
    assert linkstrategy.probe(tmpfs_dir).network


def test_probe_against_saved_table_touches_nothing() -> None:
    table = parse_mount_table((DATA / "efs.txt").read_text())
    efs = next(m for m in table if "efs" in m.source and "amazonaws" in m.source)
    p = linkstrategy.probe(efs.mount_point + "/venv/lib", table=table)
    assert (p.kind, p.network, p.tested) == ("efs", True, False)
    assert p.reflink == "no" and p.hardlink == "yes"


# -- plan ------------------------------------------------------------------------------


def _kept(pl: linkstrategy.Plan) -> tuple[str, ...]:
    return pl.chain


def test_plan_same_xfs_keeps_reflink_hardlink_copy(xfs_reflink: Path) -> None:
    pl = linkstrategy.plan(xfs_reflink / "cache", xfs_reflink / "venv")
    assert _kept(pl) == ("reflink", "hardlink", "copy")
    assert pl.same_mount and pl.same_filesystem


def test_plan_across_bind_mount_drops_hardlink_keeps_reflink(
    xfs_bind: tuple[Path, Path],
) -> None:
    orig, bound = xfs_bind
    pl = linkstrategy.plan(orig / "cache", bound / "venv")
    assert pl.chain == ("reflink", "copy")
    assert any("EXDEV" in r for r in pl.reasons)
    assert any("bind mount" in a for a in pl.advice)


def test_plan_across_btrfs_subvolumes_reflinks_only(btrfs_subvols: tuple[Path, Path]) -> None:
    a, b = btrfs_subvols
    pl = linkstrategy.plan(a, b / "dst")
    assert pl.chain == ("reflink", "copy")
    assert any("subvolume" in a for a in pl.advice)


def test_plan_across_filesystems_copies_and_says_what_to_do(ext4: Path, ext4_b: Path) -> None:
    pl = linkstrategy.plan(ext4 / "cache", ext4_b / "venv")
    assert pl.chain == ("copy",)
    assert not pl.same_filesystem
    advice = " ".join(pl.advice)
    assert "different filesystems" in advice and "same filesystem" not in advice
    assert str(ext4 / "cache") in advice and str(ext4_b / "venv") in advice


def test_plan_xfs_without_reflink_advises_mkfs(xfs_noreflink: Path) -> None:
    pl = linkstrategy.plan(xfs_noreflink / "a", xfs_noreflink / "b")
    assert pl.chain == ("hardlink", "copy")
    assert any("reflink=1" in a for a in pl.advice)


def test_plan_strategy_env_is_a_preference(
    xfs_reflink: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LINKSTRATEGY_STRATEGY", "copy")
    pl = linkstrategy.plan(xfs_reflink / "a", xfs_reflink / "b")
    assert pl.chain == ("copy",) and (pl.origin, pl.strict, pl.forced) == (
        "environment",
        False,
        None,
    )
    monkeypatch.setenv("LINKSTRATEGY_STRATEGY", "reflink")
    pl = linkstrategy.plan(xfs_reflink / "a", xfs_reflink / "b")
    assert pl.chain == ("reflink", "copy")  # copy ends a preference: never a hardlink
    pl = linkstrategy.plan(xfs_reflink / "a", xfs_reflink / "b", strict=True)
    assert pl.chain == ("reflink",) and pl.strict and pl.forced == "reflink"


def test_plan_env_preference_the_pair_cannot_do_warns_once_and_copies(
    ext4: Path, ext4_b: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LINKSTRATEGY_STRATEGY", "hardlink")
    pl = linkstrategy.plan(ext4 / "a", ext4_b / "b")
    assert pl.chain == ("copy",) and pl.unavailable is None
    (w,) = pl.warnings
    assert w.startswith("LINKSTRATEGY_STRATEGY=hardlink: cannot hardlink: ") and "copying" in w
    strict = linkstrategy.plan(ext4 / "a", ext4_b / "b", strict=True)
    assert strict.chain == () and strict.unavailable is not None
    assert strict.unavailable[0] == errno.EXDEV
    # an explicit argument is strict unless told otherwise
    assert linkstrategy.plan(ext4 / "a", ext4_b / "b", strategy="hardlink").unavailable
    lenient = linkstrategy.plan(ext4 / "a", ext4_b / "b", strategy="hardlink", strict=False)
    assert lenient.chain == ("copy",) and lenient.warnings


def test_plan_strategy_list_keeps_its_order_and_drops_the_impossible(ext4: Path) -> None:
    pl = linkstrategy.plan(ext4 / "a", ext4 / "b", strategy=("reflink", "copy"))
    assert pl.chain == ("copy",) and pl.unavailable is None and pl.warnings == ()
    pl = linkstrategy.plan(ext4 / "a", ext4 / "b", strategy=("copy", "hardlink"))
    assert pl.chain == ("copy", "hardlink")
    pl = linkstrategy.plan(ext4 / "a", ext4 / "b", strategy=("symlink", "copy"))
    assert pl.chain == ("symlink", "copy")
    assert "symlink" not in linkstrategy.plan(ext4 / "a", ext4 / "b").chain
    kept = {s.strategy: s.kept for s in pl.steps}
    assert kept == {"reflink": False, "hardlink": False, "copy": True, "symlink": True}


def test_plan_rejects_unknown_strategy(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown strategy"):
        linkstrategy.plan(tmp_path, tmp_path / "x", strategy="hardlnk")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="twice"):
        linkstrategy.plan(tmp_path, tmp_path / "x", strategy=("copy", "copy"))


@pytest.mark.parametrize(
    ("src", "dst", "home", "relative"),
    [
        ("/data/proj/cache/a", "/data/proj/env/a", "/home/u", True),  # one project, close by
        ("/home/u/proj/cache/a", "/home/u/proj/env/a", "/home/u", True),
        ("/home/u/.cache/uv/a", "/home/u/proj/.venv/a", "/home/u", False),  # shared only ~
        ("/data/a", "/srv/b", "/home/u", False),  # only / in common
        ("/mnt/nfs/p/cache/a", "/mnt/nfs/p/venv/a", "/home/u", True),
        ("/mnt/nfs/a", "/mnt/nfs/b", "/home/u", False),  # only the mount point in common
    ],
)
def test_symlink_targets_relative_only_close_by(
    src: str, dst: str, home: str, relative: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", home)
    table = parse_mount_table("/dev/sda1 / ext4 rw 0 0\nsrv:/x /mnt/nfs nfs4 rw 0 0\n")
    pl = linkstrategy.plan(src, dst, strategy="symlink", table=table)
    assert pl.symlink_relative is relative
    target = pl.symlink_target(src + "/f", dst)
    assert target == (os.path.relpath(src + "/f", dst) if relative else src + "/f")


def test_plan_network_destination_uses_many_workers_and_prefers_hardlink(
    xfs_reflink: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = linkstrategy.plan(xfs_reflink / "a", xfs_reflink / "b")
    mp = local.dst_probe.mount_point
    monkeypatch.setenv(NETWORK_ENV, mp)
    _probe.clear_cache()
    pl = linkstrategy.plan(xfs_reflink / "a", xfs_reflink / "b")
    assert pl.network and pl.workers > local.workers
    # Tested live, so the clone stays; but one LINK round trip beats create+CLONE+setattr.
    assert pl.chain == ("hardlink", "reflink", "copy")
    assert any("round trip" in a for a in pl.advice)
    assert any("network filesystem" in a for a in pl.advice)


def test_plan_from_saved_table_explains_efs_case() -> None:
    # The case: the installer's cache on the root ext4, the venv on EFS.
    saved = "/dev/nvme0n1p1 / ext4 rw,relatime 0 0\n" + (DATA / "efs.txt").read_text()
    table = parse_mount_table(saved)
    efs = next(m for m in table if "amazonaws" in m.source)
    pl = linkstrategy.plan("/tmp/uv-cache", efs.mount_point + "/.venv", table=table)
    assert pl.chain == ("copy",)
    text = " ".join(pl.advice)
    assert "over the network" in text and "EFS" in text
    assert "/ (ext4, local)" in text


def test_plan_never_assumes_an_untested_clone_on_a_network_filesystem() -> None:
    nfs42 = "srv:/export /mnt/nfs nfs4 rw,vers=4.2,addr=10.0.0.1 0 0\n"
    table = parse_mount_table("/dev/sda1 / ext4 rw 0 0\n" + nfs42)
    pl = linkstrategy.plan("/mnt/nfs/cache/a", "/mnt/nfs/venv/a", table=table)
    assert pl.dst_probe.reflink == "maybe"
    assert pl.chain == ("hardlink", "copy")
    assert any("untested clone" in r for r in pl.reasons)


def test_probe_of_unresponsive_network_mount_does_not_hang(
    latencyfs: mountutil.FaultFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    mp = Path(latencyfs.mountpoint)
    (mp / "venv").mkdir()
    monkeypatch.setenv(NETWORK_ENV, str(mp))
    monkeypatch.setattr(_probe, "_RESOLVE_TIMEOUT", 0.3)
    latencyfs.set_latency(3000)  # a server that takes 3 s per request: as good as gone
    t0 = time.monotonic()
    p = linkstrategy.probe(mp / "venv" / "lib")
    took = time.monotonic() - t0
    latencyfs.set_latency(0)
    assert p.mount_point == str(mp) and p.network
    assert not p.tested and "did not answer" in (p.untested_reason or "")
    assert took < 2.5, "the probe must not wait for the filesystem"


def _fake_link(kind: str):  # type: ignore[no-untyped-def]
    real_link = os.link

    def link(src: str, dst: str, *args: object, **kw: object) -> None:
        sfd, dfd = kw.get("src_dir_fd"), kw.get("dst_dir_fd")
        if (src, dst) != ("a", "l") or not isinstance(dfd, int):  # not the probe's
            real_link(src, dst, *args, **kw)  # type: ignore[arg-type]
        elif kind == "sshfs":  # the server links, the client shows another inode, nlink 1
            assert isinstance(sfd, int)
            data = Path(f"/proc/self/fd/{sfd}/{src}").read_bytes()
            Path(f"/proc/self/fd/{dfd}/{dst}").write_bytes(data)
        else:  # BeeGFS before 7.4 across directories: a symlink comes back
            os.symlink(src, dst, dir_fd=dfd)

    return link


@pytest.mark.parametrize("kind", ["sshfs", "beegfs"])
def test_probe_trusts_only_a_shared_inode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, kind: str
) -> None:
    # The faked answer is cached for tmp_path's mount: no later test may get it (a
    # test that hardlinks in /tmp once found "link() made a symlink" here).
    linkstrategy.clear_cache()
    request.addfinalizer(linkstrategy.clear_cache)
    monkeypatch.setattr(os, "link", _fake_link(kind))
    p = linkstrategy.probe(tmp_path)
    assert p.tested and p.hardlink == "no"
    assert (
        "symlink" in p.errors["hardlink"] if kind == "beegfs" else "inode" in p.errors["hardlink"]
    )
    pl = linkstrategy.plan(tmp_path / "a", tmp_path / "b")
    assert "hardlink" not in pl.chain


def test_the_probe_removes_only_its_own_test_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Whoever may rename in the probed directory swaps the probe's test directory for
    another of the caller's while the probe works in it: the probe works through its
    fd and removes its directory only if it is still the one it made (by name, the
    swapped-in directory was deleted)."""
    linkstrategy.clear_cache()
    request.addfinalizer(linkstrategy.clear_cache)
    (tmp_path / "X").mkdir()
    (tmp_path / "X" / "keep").write_text("mine")
    real = _probe._test_xattr

    def swap(tfd: int, errors: dict[str, str]) -> str:
        (name,) = [n for n in os.listdir(tmp_path) if n.startswith(PROBE_PREFIX)]
        os.rename(tmp_path / name, tmp_path / "moved-probe")
        os.rename(tmp_path / "X", tmp_path / name)
        return real(tfd, errors)  # type: ignore[no-any-return]

    monkeypatch.setattr(_probe, "_test_xattr", swap)
    p = linkstrategy.probe(tmp_path)
    assert p.tested
    (name,) = [n for n in os.listdir(tmp_path) if n.startswith(PROBE_PREFIX)]
    assert (tmp_path / name / "keep").read_text() == "mine"
    assert sorted(os.listdir(tmp_path / "moved-probe")) in (["a", "c", "l"], ["a", "l"])


@pytest.mark.parametrize("err", [errno.EMFILE, errno.ENOSPC])
def test_a_live_test_that_could_not_be_made_is_untested_not_no(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, err: int
) -> None:
    """Out of fds (or space) during the clone test says nothing of the filesystem: the
    probe is untested and not cached -- an EMFILE once made "cannot reflink" stick for
    the rest of the process (auto hardlinked into the cache, reflink was refused)."""
    linkstrategy.clear_cache()
    request.addfinalizer(linkstrategy.clear_cache)
    real = _probe.clone_file

    def short(*args: Any) -> int:
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(_probe, "clone_file", short)
    p = linkstrategy.probe(tmp_path)
    assert not p.tested and os.strerror(err) in (p.untested_reason or "")
    assert not [n for n in os.listdir(tmp_path) if n.startswith(PROBE_PREFIX)]
    monkeypatch.setattr(_probe, "clone_file", real)
    again = linkstrategy.probe(tmp_path)
    assert (again.tested and "reflink" not in again.errors) or again.errors[
        "reflink"
    ] != errno.errorcode[err]
