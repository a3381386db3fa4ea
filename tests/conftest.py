"""Fixtures on real filesystems (loop images, tmpfs, bind mounts, FUSE).

Filesystems are mounted once per session under ``mounts_base`` and unmounted at
session end; the function-scoped fixtures hand each test a fresh empty
directory on them.  Each is registered with ``@mount_fixture`` (tests/support/registry.py): tests
using one are marked ``root`` at collection, so ``pytest -m "not root"``
deselects them.  Without the needed privileges they
skip with the reason; set ``LINKSTRATEGY_REQUIRE_MOUNTS=1`` (CI) to turn those
skips into failures.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import shutil
import sys
import tempfile
import threading
import types
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from support import mountutil
from support.guard import outside_unchanged  # noqa: F401  (a fixture)
from support.mountutil import FaultFS
from support.registry import mark_root, mount_fixture, skip_or_fail

_REQUIRE_SPEEDUPS = os.environ.get("LINKSTRATEGY_REQUIRE_SPEEDUPS", "") not in ("", "0")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests using ``place_loop`` run with each of place()'s paths: "c" (new subtrees in
    one C walk, other files by the C per-file loop), "c-files" (the C per-file loop
    only) and "python"; those marked ``python_loop`` (faults injected at a Python
    call site, which C does not go through) run with the Python loop only."""
    if "place_loop" in metafunc.fixturenames:
        only_python = metafunc.definition.get_closest_marker("python_loop") is not None
        params = ["python"] if only_python else ["c", "c-files", "python"]
        metafunc.parametrize("place_loop", params, indirect=True)


def _no_speedups() -> None:
    msg = "the C extension linkstrategy._speedups is not built or is switched off"
    if _REQUIRE_SPEEDUPS:
        pytest.fail(f"{msg} (LINKSTRATEGY_REQUIRE_SPEEDUPS is set)", pytrace=False)
    pytest.skip(msg)


@pytest.fixture
def place_loop(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which path place() takes: "c" (the ``_speedups`` extension: its tree walk and its
    per-file loop), "c-files" (the per-file loop only: an extension without
    ``place_tree``) or "python"."""
    from linkstrategy import _place

    if request.param == "python":
        monkeypatch.setattr(_place, "_fast", None)
    elif _place._fast is None:
        _no_speedups()
    elif request.param == "c-files":
        fast = _place._fast
        names = {n: getattr(fast, n) for n in dir(fast) if not n.startswith("__")}
        del names["place_tree"]
        monkeypatch.setattr(_place, "_fast", types.SimpleNamespace(**names))
    return str(request.param)


@pytest.fixture(params=["c", "python"])
def remove_walk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which walk a local removal takes: "c" (the ``_speedups.clear_tree`` pass first,
    the Python walk for what it leaves) or "python" (the Python walk alone)."""
    from linkstrategy import _tree

    if request.param == "python":
        monkeypatch.setattr(_tree, "_fast", None)
    elif _tree._fast is None:
        _no_speedups()
    return str(request.param)


@pytest.fixture(autouse=True)
def _python_walk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests marked ``python_walk`` inject faults at a Python call site of the removal
    walk (``os.unlink``, ``os.rmdir``, ``_tree.statx``), which the C pass does not go
    through: they run with the Python walk alone."""
    if request.node.get_closest_marker("python_walk") is not None:
        from linkstrategy import _tree

        monkeypatch.setattr(_tree, "_fast", None)


@pytest.fixture(scope="session")
def kill_shim() -> Path:
    """The ``LD_PRELOAD`` shim that kills a child after its n-th unlink or rmdir
    (tests/support/killshim.py), built once per session."""
    from support import killshim

    lib = killshim.lib()
    if lib is None:
        pytest.skip("no C compiler to build the kill shim")
    return lib


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mark_root(items)


# ----------------------------------------------------------------- time limits
# pytest-timeout (pyproject.toml: signal method) fails a test that runs too long, by
# name, and its teardowns still unmount.  SIGALRM reaches only the main thread: a
# hang in a worker thread the main thread joins (place() and remove() run pools)
# outlives it.  This backstop then dumps every thread's stack and ends the run,
# naming the test, BACKSTOP_S after the limit.
BACKSTOP_S = float(os.environ.get("LINKSTRATEGY_TEST_BACKSTOP", "30"))


def _limit(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None:  # as pytest-timeout: the marker wins
        value = marker.args[0] if marker.args else marker.kwargs.get("timeout", 0)
    else:
        value = item.config.getoption("timeout", None)
        if value is None:
            value = item.config.getini("timeout")
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


def _hard_exit(item: pytest.Item, limit: float) -> None:
    capman = item.config.pluginmanager.getplugin("capturemanager")
    if capman is not None:  # fd 1 and 2 go to pytest's capture files until this
        with contextlib.suppress(Exception):
            capman.suspend_global_capture(in_=True)
    err = sys.__stderr__ or sys.stderr
    err.write(
        f"\n+++ Timeout: {item.nodeid} still running {BACKSTOP_S:.0f} s after its {limit:.0f} s "
        "limit (a thread SIGALRM cannot stop); stacks of all threads:\n"
    )
    err.flush()
    faulthandler.dump_traceback(file=err, all_threads=True)
    err.flush()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    os._exit(1)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, None, None]:
    limit = _limit(item)
    timer = None
    if limit > 0:
        timer = threading.Timer(limit + BACKSTOP_S, _hard_exit, (item, limit))
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()


def _loop(kind: str | None = None) -> dict[str, object]:
    """``mount_fixture`` arguments: skip unless loop images of ``kind`` can be mounted."""
    return {
        "needs": lambda: mountutil.mount_skip_reason(kind),
        "what": "needs root to mount loop images",
    }


_FUSE = {"needs": mountutil.fuse_skip_reason, "what": "needs FUSE"}


@contextlib.contextmanager
def _or_skip(what: str) -> Iterator[None]:
    """Turn a failed mount into a skip that says why (e.g. kernel lacks btrfs)."""
    try:
        yield
    except mountutil.MountError as e:
        skip_or_fail(f"cannot mount {what}: {e}")


@contextlib.contextmanager
def _fresh_cm(root: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    name = "".join(c if c.isalnum() else "_" for c in request.node.name)[:40]
    d = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _fresh(root: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    with _fresh_cm(root, request) as d:
        yield d


# ----------------------------------------------------------------- session mounts
@mount_fixture(scope="session")
def mounts_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Session directory under which every test mount lives."""
    base = tmp_path_factory.mktemp("mounts")
    try:
        yield base
    finally:
        # Leak check: nothing may stay mounted below base.
        prefix = str(base) + os.sep
        left = [
            m["mount_point"] for m in mountutil.mount_info() if m["mount_point"].startswith(prefix)
        ]
        for mp in reversed(left):
            mountutil._run(["umount", "-l", mp], check=False)
        if left:
            raise mountutil.MountError(f"mounts left behind (now lazily unmounted): {left}")


def _session_mount(cm: contextlib.AbstractContextManager[Path], what: str) -> Iterator[Path]:
    with contextlib.ExitStack() as stack:
        with _or_skip(what):
            mp = stack.enter_context(cm)
        yield mp


def _loop_session(kind: str, base: Path, name: str) -> Iterator[Path]:
    yield from _session_mount(mountutil.loop_fs(kind, base, name=name), kind)


@mount_fixture(scope="session", **_loop("xfs-reflink"))
def _xfs_reflink_mount(mounts_base: Path) -> Iterator[Path]:
    yield from _loop_session("xfs-reflink", mounts_base, "xfs-reflink")


@mount_fixture(scope="session", **_loop("xfs-noreflink"))
def _xfs_noreflink_mount(mounts_base: Path) -> Iterator[Path]:
    yield from _loop_session("xfs-noreflink", mounts_base, "xfs-noreflink")


@mount_fixture(scope="session", **_loop("btrfs"))
def _btrfs_mount(mounts_base: Path) -> Iterator[Path]:
    yield from _loop_session("btrfs", mounts_base, "btrfs")


@mount_fixture(scope="session", **_loop("ext4"))
def _ext4_mount(mounts_base: Path) -> Iterator[Path]:
    yield from _loop_session("ext4", mounts_base, "ext4")


@mount_fixture(scope="session", **_loop("ext4"))
def _ext4_b_mount(mounts_base: Path) -> Iterator[Path]:
    yield from _loop_session("ext4", mounts_base, "ext4-b")


@mount_fixture(scope="session", **_loop("tmpfs"))
def _tmpfs_mount(mounts_base: Path) -> Iterator[Path]:
    yield from _session_mount(mountutil.tmpfs_mount(mounts_base, size="64m", name="tmpfs"), "tmpfs")


@mount_fixture(scope="session", **_loop("tmpfs"))
def _spaced_mount(mounts_base: Path) -> Iterator[Path]:
    yield from _session_mount(
        mountutil.tmpfs_mount(mounts_base, size="16m", name="with space"),
        "tmpfs at a path with a space",
    )


@mount_fixture(scope="session")
def _btrfs_subvol_roots(_btrfs_mount: Path) -> tuple[Path, Path]:
    with _or_skip("btrfs subvolumes"):
        return (
            mountutil.btrfs_subvolume(_btrfs_mount, "subvol-a"),
            mountutil.btrfs_subvolume(_btrfs_mount, "subvol-b"),
        )


@mount_fixture(scope="session")
def _xfs_bind_mount(_xfs_reflink_mount: Path, mounts_base: Path) -> Iterator[tuple[Path, Path]]:
    src = _xfs_reflink_mount / "bind-src"
    src.mkdir(exist_ok=True)
    for mp in _session_mount(
        mountutil.bind_mount(src, mounts_base, name="xfs-bind"), "bind mount of xfs"
    ):
        yield src, mp


@mount_fixture(scope="session")
def _readonly_mount(_tmpfs_mount: Path, mounts_base: Path) -> Iterator[Path]:
    src = _tmpfs_mount / "ro-src"
    src.mkdir(exist_ok=True)
    (src / "f").write_bytes(b"read-only\n")
    yield from _session_mount(
        mountutil.bind_mount(src, mounts_base, name="readonly", readonly=True),
        "read-only bind mount",
    )


# ----------------------------------------------------------------- per-test dirs
@mount_fixture
def xfs_reflink(_xfs_reflink_mount: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """Fresh empty dir on XFS with reflink=1 (FICLONE works)."""
    yield from _fresh(_xfs_reflink_mount, request)


@mount_fixture
def xfs_noreflink(_xfs_noreflink_mount: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """Fresh empty dir on XFS with reflink=0 (FICLONE gives EOPNOTSUPP)."""
    yield from _fresh(_xfs_noreflink_mount, request)


@mount_fixture
def btrfs(_btrfs_mount: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """Fresh empty dir on btrfs (top-level subvolume)."""
    yield from _fresh(_btrfs_mount, request)


@mount_fixture
def ext4(_ext4_mount: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """Fresh empty dir on an ext4 loop filesystem."""
    yield from _fresh(_ext4_mount, request)


@mount_fixture
def ext4_b(_ext4_b_mount: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """Fresh empty dir on a second, distinct ext4 filesystem (link() -> EXDEV vs ext4)."""
    yield from _fresh(_ext4_b_mount, request)


@mount_fixture
def tmpfs_dir(_tmpfs_mount: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """Fresh empty dir on a tmpfs."""
    yield from _fresh(_tmpfs_mount, request)


@mount_fixture
def spaced_mount(_spaced_mount: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """Fresh empty dir on a tmpfs mounted at ".../with space"."""
    yield from _fresh(_spaced_mount, request)


@mount_fixture
def btrfs_subvols(
    _btrfs_subvol_roots: tuple[Path, Path], request: pytest.FixtureRequest
) -> Iterator[tuple[Path, Path]]:
    """Fresh dirs in two different subvolumes of one btrfs mount (link() -> EXDEV)."""
    a, b = _btrfs_subvol_roots
    with contextlib.ExitStack() as stack:
        da = stack.enter_context(_fresh_cm(a, request))
        db = stack.enter_context(_fresh_cm(b, request))
        yield da, db


@mount_fixture
def xfs_bind(
    _xfs_bind_mount: tuple[Path, Path], request: pytest.FixtureRequest
) -> Iterator[tuple[Path, Path]]:
    """(orig_dir, bind_dir): one fresh dir on xfs_reflink, and the same dir via a bind mount."""
    src, mp = _xfs_bind_mount
    with _fresh_cm(src, request) as orig:
        yield orig, mp / orig.name


@mount_fixture
def readonly_dir(_readonly_mount: Path) -> Path:
    """A directory on a read-only mount, holding one file ``f`` (shared, immutable)."""
    return _readonly_mount


# ----------------------------------------------------------------- FUSE
def _faultfs(tmp_path: Path, **kw: object) -> Iterator[FaultFS]:
    fs = FaultFS(tmp_path / "backing", tmp_path / "mnt", state_dir=tmp_path / "faultfs-state", **kw)
    (tmp_path / "faultfs-state").mkdir()
    with _or_skip("faultfs"):
        fs.start()
    try:
        yield fs
    finally:
        fs.stop()


@mount_fixture(**_FUSE)
def fusefs(tmp_path: Path) -> Iterator[FaultFS]:
    """FaultFS passthrough with libfuse defaults (unlinked open files -> .fuse_hidden*)."""
    yield from _faultfs(tmp_path)


@mount_fixture(**_FUSE)
def nfslike(tmp_path: Path) -> Iterator[FaultFS]:
    """FaultFS imitating the NFS client's silly rename (.nfs*, EBUSY, ENOTEMPTY)."""
    yield from _faultfs(tmp_path, nfs=True)


@mount_fixture(**_FUSE)
def cachedfs(tmp_path: Path) -> Iterator[FaultFS]:
    """FaultFS whose attributes and entries the kernel caches for 60 s, as an NFS client
    keeps them for a while (``actimeo``): the requests that reach it are the ones a
    network filesystem would see (``fs.calls()`` counts them)."""
    yield from _faultfs(tmp_path, cache_s=60.0)


@mount_fixture(**_FUSE)
def latencyfs(tmp_path: Path) -> Iterator[FaultFS]:
    """FaultFS with 1 ms latency before every operation."""
    yield from _faultfs(tmp_path, latency_ms=1.0)


@mount_fixture(needs=mountutil.latencyfs_skip_reason, what="needs latencyfs")
def clatencyfs(tmp_path: Path) -> Iterator[mountutil.LatencyFS]:
    """tests/latencyfs.c (the benchmarks' network emulator) with 1 ms per request."""
    # a 3 s kernel entry/attr cache, as in the benchmarks (and the NFS client)
    lfs = mountutil.LatencyFS(tmp_path / "lbacking", tmp_path / "lmnt", latency_ms=1.0, cache_s=3)
    with lfs as fs:
        yield fs
