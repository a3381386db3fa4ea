"""place() on real filesystems: strategies proven by extents and inodes, fallbacks, safety."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from support import mountutil

import linkstrategy
from linkstrategy import PlaceError, StrategyUnavailable, _chain, _place, _probe
from linkstrategy._place import TMP_PREFIX


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch: pytest.MonkeyPatch, place_loop: str) -> None:
    """Every test here runs with the C per-file loop and with the Python one
    (``place_loop``, see conftest); subprocesses are told through the environment."""
    _probe.clear_cache()
    if place_loop == "python":
        monkeypatch.setenv("LINKSTRATEGY_NO_SPEEDUPS", "1")
    else:
        monkeypatch.delenv("LINKSTRATEGY_NO_SPEEDUPS", raising=False)
    monkeypatch.delenv("LINKSTRATEGY_STRATEGY", raising=False)
    monkeypatch.delenv("LINKSTRATEGY_NETWORK_MOUNTS", raising=False)


def make_tree(root: Path, *, big: int = 256 * 1024) -> dict[str, bytes]:
    """A small package-like tree; returns relative path -> content of regular files."""
    files = {
        "pkg/__init__.py": b"x = 1\n",
        "pkg/big.bin": os.urandom(big),
        "pkg/sub/data.txt": b"data\n" * 100,
        "pkg/sub/deeper/empty": b"",
        "bin/tool": b"#!/bin/sh\necho hi\n",
        "pkg-1.0.dist-info/RECORD": b"pkg/__init__.py,,\n",
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    os.chmod(root / "bin/tool", 0o751)
    os.chmod(root / "pkg/sub/data.txt", 0o444)
    os.utime(root / "pkg/big.bin", ns=(1_600_000_000_123_456_789, 1_600_000_000_987_654_321))
    os.symlink("../pkg/__init__.py", root / "bin/link")
    os.symlink("/nonexistent/target", root / "bin/dangling")
    return files


def shared_extents(path: Path) -> bool:
    """FIEMAP_EXTENT_SHARED on any extent, as `filefrag -v` shows it."""
    out = subprocess.run(
        ["filefrag", "-v", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return "shared" in out


def no_temporaries(root: Path) -> list[str]:
    return [str(p) for p in root.rglob(f"{TMP_PREFIX}*")]


def assert_same_tree(src: Path, dst: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        s, d = src / rel, dst / rel
        assert d.read_bytes() == data, rel
        assert stat.S_IMODE(d.stat().st_mode) == stat.S_IMODE(s.stat().st_mode), rel
    assert os.readlink(dst / "bin/link") == "../pkg/__init__.py"
    assert os.readlink(dst / "bin/dangling") == "/nonexistent/target"
    assert not no_temporaries(dst)


# -- strategies, proven ------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["xfs_reflink", "btrfs"])
def test_reflink_shares_extents_and_keeps_mode_and_mtime(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    d: Path = request.getfixturevalue(fixture)
    files = make_tree(d / "src")
    r = linkstrategy.place(d / "src", d / "dst")
    assert r.by_strategy["reflink"] == len(files)
    assert r.files == len(files) and r.symlinks == 2
    assert_same_tree(d / "src", d / "dst", files)
    assert shared_extents(d / "dst/pkg/big.bin")
    assert os.stat(d / "dst/pkg/big.bin").st_ino != os.stat(d / "src/pkg/big.bin").st_ino
    st = os.stat(d / "dst/pkg/big.bin")
    assert st.st_mtime_ns == 1_600_000_000_987_654_321
    assert stat.S_IMODE(os.stat(d / "dst/bin/tool").st_mode) == 0o751  # FICLONE keeps no mode


def test_hardlink_on_ext4_shares_the_inode(ext4: Path) -> None:
    files = make_tree(ext4 / "src")
    r = linkstrategy.place(ext4 / "src", ext4 / "dst")
    assert r.chain == ("hardlink", "copy")
    assert r.by_strategy["hardlink"] == len(files)
    assert r.bytes == 0  # a hardlink writes no data
    for rel in files:
        assert os.stat(ext4 / "dst" / rel).st_ino == os.stat(ext4 / "src" / rel).st_ino
    assert_same_tree(ext4 / "src", ext4 / "dst", files)


def test_copy_across_filesystems_keeps_content_mode_mtime_xattrs(ext4: Path, ext4_b: Path) -> None:
    files = make_tree(ext4 / "src")
    os.setxattr(ext4 / "src/pkg/big.bin", "user.origin", b"cache")
    r = linkstrategy.place(ext4 / "src", ext4_b / "dst")
    assert r.chain == ("copy",)
    assert r.by_strategy["copy"] == len(files)
    assert r.bytes == sum(len(v) for v in files.values())  # copied data, all of it
    assert_same_tree(ext4 / "src", ext4_b / "dst", files)
    big = ext4_b / "dst/pkg/big.bin"
    assert os.getxattr(big, "user.origin") == b"cache"
    assert big.stat().st_mtime_ns == 1_600_000_000_987_654_321
    assert not shared_extents(big)


def test_copy_keeps_holes_in_sparse_files(ext4: Path, ext4_b: Path) -> None:
    src = ext4 / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.write(b"head")
        f.seek(32 * 1024 * 1024)
        f.write(b"tail")
    r = linkstrategy.place(src, ext4_b / "dst")
    out = ext4_b / "dst" / "sparse"
    assert r.by_strategy["copy"] == 1
    assert out.stat().st_size == (src / "sparse").stat().st_size
    assert out.stat().st_blocks * 512 < 1024 * 1024, "the 32 MiB hole was filled in"
    with open(out, "rb") as f:
        assert f.read(4) == b"head"
        f.seek(32 * 1024 * 1024)
        assert f.read() == b"tail"
        f.seek(1024 * 1024)
        assert f.read(16) == bytes(16)


def test_bind_mount_of_same_xfs_clones_but_never_hardlinks(xfs_bind: tuple[Path, Path]) -> None:
    orig, bound = xfs_bind
    files = make_tree(orig / "src")
    r = linkstrategy.place(orig / "src", bound / "dst")
    assert r.chain == ("reflink", "copy")
    assert r.by_strategy["reflink"] == len(files)
    assert shared_extents(bound / "dst/pkg/big.bin")


def test_forced_hardlink_across_bind_mount_fails_before_writing(
    xfs_bind: tuple[Path, Path],
) -> None:
    orig, bound = xfs_bind
    make_tree(orig / "src")
    with pytest.raises(StrategyUnavailable) as ei:
        linkstrategy.place(orig / "src", bound / "dst", strategy="hardlink")
    assert ei.value.errno == errno.EXDEV  # what link(2) gives across mounts: the step's errno
    assert ei.value.filename == str(orig / "src")
    assert ei.value.filename2 == str(bound / "dst")
    assert "mounts" in str(ei.value)
    assert not (bound / "dst").exists()


def test_forced_reflink_on_ext4_fails_before_writing(ext4: Path) -> None:
    make_tree(ext4 / "src")
    with pytest.raises(StrategyUnavailable) as ei:
        linkstrategy.place(ext4 / "src", ext4 / "dst", strategy="reflink")
    assert ei.value.errno == errno.EOPNOTSUPP  # ext4 cannot clone: the step's errno
    (step,) = [s for s in linkstrategy.plan(ext4 / "src", ext4 / "dst").steps if s.impossible]
    assert (step.strategy, step.errno) == ("reflink", errno.EOPNOTSUPP)
    assert not (ext4 / "dst").exists()


def test_forced_copy_on_xfs_really_copies(xfs_reflink: Path) -> None:
    files = make_tree(xfs_reflink / "src")
    r = linkstrategy.place(xfs_reflink / "src", xfs_reflink / "dst", strategy="copy")
    assert r.by_strategy == {"reflink": 0, "hardlink": 0, "copy": len(files), "symlink": 0}
    assert_same_tree(xfs_reflink / "src", xfs_reflink / "dst", files)


def test_single_file_under_another_name(xfs_reflink: Path) -> None:
    src = xfs_reflink / "a.bin"
    src.write_bytes(os.urandom(100_000))
    os.chmod(src, 0o640)
    r = linkstrategy.place(src, xfs_reflink / "x" / "y" / "b.bin")
    assert r.files == 1 and r.by_strategy["reflink"] == 1
    out = xfs_reflink / "x/y/b.bin"
    assert out.read_bytes() == src.read_bytes()
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert not no_temporaries(xfs_reflink)


# -- fallback by errno class (fault injection at the call site) ----------------------------


@pytest.mark.python_loop
def test_clone_capability_error_downgrades_the_pair_and_warns_once(
    xfs_reflink: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    files = make_tree(xfs_reflink / "src")
    calls = []

    def no_clone(src_fd: int, dir_fd: int, name: str, mode: int) -> int:
        calls.append(1)
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(_place, "clone_file", no_clone)
    _chain._warned.clear()
    with caplog.at_level(logging.WARNING, logger="linkstrategy"):
        r = linkstrategy.place(xfs_reflink / "src", xfs_reflink / "dst", workers=1)
    assert r.by_strategy["hardlink"] == len(files) and r.by_strategy["reflink"] == 0
    assert len(calls) == 1, "a capability error must stop clone attempts for the pair"
    assert [f.to_json()["errno"] for f in r.fallbacks] in (["EOPNOTSUPP"], ["ENOTSUP"])
    warnings = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "LINKSTRATEGY_STRATEGY" in warnings[0].getMessage()
    assert [w for w in r.warnings if "cannot reflink" in w] == [warnings[0].getMessage()]
    assert xfs_reflink.as_posix().split("/")[1] in warnings[0].getMessage()


@pytest.mark.python_loop
def test_concurrent_capability_errors_give_one_warning(
    xfs_reflink: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several workers meet the same capability error before the chain is downgraded:
    the report still holds one warning for it."""
    src = xfs_reflink / "src"
    for d in range(8):
        (src / f"d{d}").mkdir(parents=True)
        for i in range(4):
            (src / f"d{d}" / f"f{i}").write_text("x")
    calls = []
    barrier = __import__("threading").Barrier(2, timeout=30)

    def no_clone(src_fd: int, dir_fd: int, name: str, mode: int) -> int:
        calls.append(1)
        if len(calls) <= 2:
            with contextlib.suppress(__import__("threading").BrokenBarrierError):
                barrier.wait()  # two workers fail at once
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(_place, "clone_file", no_clone)
    r = linkstrategy.place(src, xfs_reflink / "dst", workers=4)
    assert len(calls) >= 2, "two workers met the error before the downgrade"
    assert len([w for w in r.warnings if "cannot reflink" in w]) == 1
    assert r.files == 32


@pytest.mark.python_loop
def test_transient_eagain_is_retried_not_downgraded(
    xfs_reflink: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = make_tree(xfs_reflink / "src")
    real = _place.clone_file
    failures = [2]

    def flaky(src_fd: int, dir_fd: int, name: str, mode: int) -> int:
        if failures[0]:
            failures[0] -= 1
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
        return real(src_fd, dir_fd, name, mode)

    monkeypatch.setattr(_place, "clone_file", flaky)
    r = linkstrategy.place(xfs_reflink / "src", xfs_reflink / "dst", workers=1)
    assert r.by_strategy["reflink"] == len(files)
    assert not r.fallbacks


def test_emlink_at_ext4_limit_copies_that_file_only(ext4: Path) -> None:
    src = ext4 / "src"
    files = make_tree(src, big=4096)
    full = src / "pkg/__init__.py"
    spare = ext4 / "links"
    spare.mkdir()
    n = os.stat(full).st_nlink
    fd = os.open(spare, os.O_RDONLY)
    try:
        while n < 65000:
            try:
                os.link(full, f"l{n}", dst_dir_fd=fd)
            except OSError as e:
                assert e.errno == errno.EMLINK
                break
            n += 1
    finally:
        os.close(fd)
    r = linkstrategy.place(src, ext4 / "dst")
    assert r.by_strategy == {"reflink": 0, "hardlink": len(files) - 1, "copy": 1, "symlink": 0}
    (fb,) = r.fallbacks
    assert (fb.path, fb.errno, fb.to_strategy) == ("pkg/__init__.py", errno.EMLINK, "copy")
    assert (ext4 / "dst/pkg/__init__.py").read_bytes() == files["pkg/__init__.py"]
    assert os.stat(ext4 / "dst/pkg/sub/data.txt").st_ino == os.stat(src / "pkg/sub/data.txt").st_ino


# -- errors lose nothing -------------------------------------------------------------------------


def test_enospc_is_a_clear_error_and_leaves_nothing(ext4: Path, mounts_base: Path) -> None:
    src = ext4 / "src"
    make_tree(src, big=3 * 1024 * 1024)
    with mountutil.tmpfs_mount(mounts_base, size="1m", name=f"tiny-{os.getpid()}") as tiny:
        (tiny / "keep").write_text("before")
        with pytest.raises(PlaceError) as ei:
            linkstrategy.place(src, tiny / "dst")
        assert ei.value.errno == errno.ENOSPC
        assert ei.value.filename2 is not None and str(tiny / "dst") in ei.value.filename2
        assert sorted(os.listdir(tiny)) == ["keep"], "rollback must remove the partial tree"


def test_enospc_merging_into_existing_dir_keeps_what_was_there(
    ext4: Path, mounts_base: Path
) -> None:
    src = ext4 / "src"
    make_tree(src, big=3 * 1024 * 1024)
    with mountutil.tmpfs_mount(mounts_base, size="1m", name=f"tiny2-{os.getpid()}") as tiny:
        (tiny / "site").mkdir()
        (tiny / "site/other.py").write_text("other")
        with pytest.raises(PlaceError):
            linkstrategy.place(src, tiny / "site")
        assert sorted(os.listdir(tiny / "site")) == ["other.py"]
        assert (tiny / "site/other.py").read_text() == "other"


def test_read_only_destination_is_erofs(readonly_dir: Path, tmp_path: Path) -> None:
    make_tree(tmp_path / "src")
    with pytest.raises(PlaceError) as ei:
        linkstrategy.place(tmp_path / "src", readonly_dir / "dst")
    assert ei.value.errno == errno.EROFS
    assert str(readonly_dir / "dst") in str(ei.value)


def test_dst_inside_src_and_src_equal_dst_are_refused(tmp_path: Path) -> None:
    make_tree(tmp_path / "src")
    with pytest.raises(PlaceError, match="inside the source"):
        linkstrategy.place(tmp_path / "src", tmp_path / "src/pkg/copy")
    with pytest.raises(PlaceError, match="same"):
        linkstrategy.place(tmp_path / "src", tmp_path / "src")
    os.symlink(tmp_path / "src", tmp_path / "alias")
    with pytest.raises(PlaceError, match="same"):
        linkstrategy.place(tmp_path / "src", tmp_path / "alias")


def test_missing_source_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(PlaceError) as ei:
        linkstrategy.place(tmp_path / "nope", tmp_path / "dst")
    assert ei.value.errno == errno.ENOENT and ei.value.filename == str(tmp_path / "nope")
    assert not (tmp_path / "dst").exists()


@pytest.mark.parametrize("existing", [True, False], ids=["merge", "fresh"])
def test_swapped_in_symlink_never_leads_outside(tmp_path: Path, existing: bool) -> None:
    src = tmp_path / "src"
    for d in ("a", "b"):
        (src / d).mkdir(parents=True)
        for i in range(5):
            (src / d / f"f{i}").write_text(d)
    outside = tmp_path / "outside"
    outside.mkdir()
    dst = tmp_path / "dst"
    if existing:  # merging into an existing tree
        (dst / "a").mkdir(parents=True)
        (dst / "b").mkdir()
    swapped = []

    def swap(done: int, total: int) -> None:
        if swapped:
            return
        swapped.append(1)
        # A fresh destination is built hidden beside dst: attack that copy.
        (root,) = [dst] if existing else list(tmp_path.glob(f"{TMP_PREFIX}*"))
        victim = root / ("b" if (root / "a" / "f0").exists() else "a")
        shutil.rmtree(victim)
        os.symlink(outside, victim)

    with pytest.raises(PlaceError) as ei:
        linkstrategy.place(src, dst, workers=1, progress=swap, strategy="copy")
    assert ei.value.errno in (errno.ELOOP, errno.ENOTDIR)  # openat2 refuses the symlink
    assert os.listdir(outside) == []
    assert swapped
    if not existing:
        assert not dst.exists() and not list(tmp_path.glob(f"{TMP_PREFIX}*"))


def test_special_files_are_skipped_never_opened(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    os.mkfifo(src / "fifo")  # opening it for reading would hang
    r = linkstrategy.place(src, tmp_path / "dst")
    assert [s.path for s in r.skipped] == ["fifo"]
    assert "FIFO" in r.skipped[0].reason
    assert os.listdir(tmp_path / "dst") == ["f"]


def test_non_utf8_and_255_byte_names(tmp_path: Path) -> None:
    src = os.fsencode(tmp_path / "src")
    os.mkdir(src)
    odd = b"caf\xe9-\xff.py"
    longest = b"n" * 255
    for name in (odd, longest):
        with open(os.path.join(src, name), "wb") as f:
            f.write(name)
    r = linkstrategy.place(tmp_path / "src", tmp_path / "dst", strategy="copy")
    assert r.files == 2
    dst = os.fsencode(tmp_path / "dst")
    assert sorted(os.listdir(dst)) == sorted([odd, longest])
    with open(os.path.join(dst, longest), "rb") as f:
        assert f.read() == longest


def test_merge_into_existing_destination(tmp_path: Path) -> None:
    files = make_tree(tmp_path / "src")
    site = tmp_path / "site"
    (site / "pkg").mkdir(parents=True)
    (site / "other.py").write_text("keep me")
    (site / "pkg/__init__.py").write_text("old version")
    (site / "pkg/stale.py").write_text("from an older release")
    r = linkstrategy.place(tmp_path / "src", site, strategy="copy")
    assert r.files == len(files)
    assert (site / "other.py").read_text() == "keep me"
    assert (site / "pkg/__init__.py").read_bytes() == files["pkg/__init__.py"]
    assert (site / "pkg/stale.py").exists()


def test_hardlink_over_existing_destination_file(ext4: Path) -> None:
    files = make_tree(ext4 / "src")
    linkstrategy.place(ext4 / "src", ext4 / "dst", strategy="copy")
    r = linkstrategy.place(ext4 / "src", ext4 / "dst", strategy="hardlink")
    assert r.by_strategy["hardlink"] == len(files)
    for rel in files:
        assert os.stat(ext4 / "dst" / rel).st_ino == os.stat(ext4 / "src" / rel).st_ino
    assert not no_temporaries(ext4 / "dst")


def test_file_list_skips_the_walk(tmp_path: Path) -> None:
    make_tree(tmp_path / "src")
    r = linkstrategy.place(
        tmp_path / "src", tmp_path / "dst", files=["pkg/sub/data.txt", "bin/link"]
    )
    assert (r.files, r.symlinks) == (1, 1)
    assert sorted(
        p.relative_to(tmp_path / "dst").as_posix() for p in (tmp_path / "dst").rglob("*")
    ) == ["bin", "bin/link", "pkg", "pkg/sub", "pkg/sub/data.txt"]
    with pytest.raises(ValueError):
        linkstrategy.place(tmp_path / "src", tmp_path / "dst2", files=["../escape"])


@pytest.mark.parametrize("strategy", ["copy", "hardlink"])
def test_file_list_with_repeated_entries(tmp_path: Path, strategy: str) -> None:
    """A RECORD can list a file twice (or as ./x and x): it is placed once."""
    files = make_tree(tmp_path / "src")
    r = linkstrategy.place(
        tmp_path / "src",
        tmp_path / "dst",
        strategy=strategy,
        files=["pkg/__init__.py", "pkg/__init__.py", "./pkg/__init__.py", "pkg//big.bin"],
    )
    assert r.files == 2
    assert (tmp_path / "dst/pkg/__init__.py").read_bytes() == files["pkg/__init__.py"]


# -- processes ---------------------------------------------------------------------------------

_CHILD_PAUSING = textwrap.dedent(
    """
    import sys, threading, time, linkstrategy
    first = threading.Lock()
    def progress(done, total):
        if done >= 150:  # called per file, or per batch with the C loop
            if first.acquire(blocking=False):
                print("ready", flush=True)
            time.sleep(60)
    linkstrategy.place(sys.argv[1], sys.argv[2], strategy="copy", workers=2, progress=progress)
    """
)

_CHILD = textwrap.dedent(
    """
    import sys, linkstrategy
    linkstrategy.place(sys.argv[1], sys.argv[2], strategy=sys.argv[3], workers=int(sys.argv[4]))
    """
)


def test_four_processes_into_one_destination(xfs_reflink: Path) -> None:
    src = xfs_reflink / "src"
    files = make_tree(src)
    for i in range(200):
        (src / "many" / f"m{i // 50}").mkdir(parents=True, exist_ok=True)
        (src / "many" / f"m{i // 50}" / f"f{i}.py").write_bytes(os.urandom(2000))
    dst = xfs_reflink / "dst"
    procs = [
        subprocess.Popen([sys.executable, "-c", _CHILD, str(src), str(dst), s, "2"])
        for s in ("copy", "reflink", "hardlink", "copy")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    for p in src.rglob("*"):
        if p.is_file() and not p.is_symlink():
            assert (dst / p.relative_to(src)).read_bytes() == p.read_bytes()
    assert_same_tree(src, dst, files)


@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "merge"])
def test_kill_9_mid_run_then_place_again(tmp_path: Path, ext4: Path, existing: bool) -> None:
    src = ext4 / "src"
    for i in range(400):
        (src / f"d{i % 20}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 20}" / f"f{i}").write_bytes(os.urandom(64 * 1024))
    dst = tmp_path / "dst"  # another filesystem: a slow-ish copy we can interrupt
    if existing:
        for i in range(0, 20, 2):
            (dst / f"d{i}").mkdir(parents=True)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD_PAUSING, str(src), str(dst)], stdout=subprocess.PIPE
    )
    assert child.stdout is not None
    assert child.stdout.readline() == b"ready\n"  # 150 files placed, one worker paused
    time.sleep(0.02)  # the other worker keeps going: the kill lands mid-write somewhere
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    # Whatever the kill left, nothing partial has a final name: a fresh destination
    # does not exist yet; in a merged one every final-named file is complete.
    if not existing:
        assert not dst.exists()
    for p in dst.rglob("f*"):
        if not any(part.startswith(TMP_PREFIX) for part in p.relative_to(dst).parts):
            assert p.read_bytes() == (src / p.relative_to(dst)).read_bytes()
    r = linkstrategy.place(src, dst, strategy="copy")
    assert r.files == 400
    assert not list(tmp_path.rglob(f"{TMP_PREFIX}*")), "the next place() removes stale temporaries"
    for p in src.rglob("f*"):
        assert (dst / p.relative_to(src)).read_bytes() == p.read_bytes()


def test_fresh_destination_appears_complete_or_not_at_all(tmp_path: Path) -> None:
    files = make_tree(tmp_path / "src")
    seen = []

    def look(done: int, total: int) -> None:
        seen.append((tmp_path / "dst").exists())

    linkstrategy.place(tmp_path / "src", tmp_path / "dst", progress=look, workers=1)
    assert seen and not any(seen), "dst must not be visible while it is being filled"
    assert_same_tree(tmp_path / "src", tmp_path / "dst", files)


# -- network policy on an emulated network filesystem ---------------------------------------


def test_place_onto_latency_fuse_fs_in_parallel(
    latencyfs: mountutil.FaultFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    for i in range(60):
        (src / f"d{i % 6}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 6}" / f"f{i}").write_bytes(b"x" * 100)
    mp = Path(latencyfs.mountpoint)
    monkeypatch.setenv("LINKSTRATEGY_NETWORK_MOUNTS", str(mp))
    r = linkstrategy.place(src, mp / "site")
    assert r.workers >= 32
    assert r.by_strategy["copy"] == 60
    for p in src.rglob("f*"):
        assert (mp / "site" / p.relative_to(src)).read_bytes() == p.read_bytes()


def test_place_onto_the_benchmark_latency_fs_keeps_everything(
    clatencyfs: mountutil.LatencyFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The network policy against the C emulator the benchmarks use (48 requests in
    flight really overlap there): content, modes, nanosecond mtimes and symlinks."""
    src = tmp_path / "src"
    files = make_tree(src)
    for i in range(120):
        (src / "many" / f"m{i % 12}").mkdir(parents=True, exist_ok=True)
        p = src / "many" / f"m{i % 12}" / f"f{i}.py"
        p.write_bytes(os.urandom(100 + i))
        os.utime(p, ns=(1_600_000_000_000_000_000 + i, 1_600_000_000_123_456_789 + i))
    mp = Path(clatencyfs.mountpoint)
    monkeypatch.setenv("LINKSTRATEGY_NETWORK_MOUNTS", str(mp))
    r = linkstrategy.place(src, mp / "site")
    assert r.workers >= 32 and r.by_strategy["copy"] == r.files == len(files) + 120
    assert_same_tree(src, mp / "site", files)
    for p in (src / "many").rglob("f*"):
        d = mp / "site" / p.relative_to(src)
        assert d.read_bytes() == p.read_bytes()
        assert d.stat().st_mtime_ns == p.stat().st_mtime_ns
    assert no_temporaries(mp) == []


def test_place_empties_trash_an_earlier_remove_deferred(tmp_path: Path) -> None:
    from support.trash import entry, make_trash

    make_tree(tmp_path / "src")
    stale = entry(make_trash(tmp_path), "old")
    stale.mkdir()
    (stale / "f").write_text("x")
    linkstrategy.place(tmp_path / "src", tmp_path / "dst")
    assert not stale.exists()


@pytest.mark.python_loop
def test_copy_stops_asking_copy_file_range_after_exdev(
    ext4: Path, ext4_b: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = make_tree(ext4 / "src")
    real = os.copy_file_range
    calls: list[int] = []

    def spy(*args: int) -> int:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(os, "copy_file_range", spy)
    r = linkstrategy.place(ext4 / "src", ext4_b / "dst", workers=1)
    assert r.by_strategy["copy"] == len(files)
    assert len(calls) == 1, "EXDEV between two filesystems is learnt once per run"
    assert_same_tree(ext4 / "src", ext4_b / "dst", files)


def test_destination_created_by_someone_else_meanwhile_is_merged_into(tmp_path: Path) -> None:
    files = make_tree(tmp_path / "src")
    dst = tmp_path / "dst"

    def race(done: int, total: int) -> None:
        if not dst.exists():  # another installer got there first
            (dst / "pkg").mkdir(parents=True)
            (dst / "pkg" / "theirs.py").write_text("theirs")

    r = linkstrategy.place(tmp_path / "src", dst, progress=race, workers=1)
    assert r.files == len(files)
    assert (dst / "pkg" / "theirs.py").read_text() == "theirs"
    assert_same_tree(tmp_path / "src", dst, files)
    assert not list(tmp_path.glob(f"{TMP_PREFIX}*")), "the hidden copy is dropped"
