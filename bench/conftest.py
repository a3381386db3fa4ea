"""Fixtures for the pytest-benchmark suite in bench/ (``pytest bench/ --benchmark-only``).

Not part of the main test run: ``testpaths`` in pyproject.toml is ``tests``.
The XFS loop image and its mount come from ``tests/support/mountutil.py`` (owned
by the test suite; importable as ``support`` through ``pythonpath`` in
pyproject.toml).  Set ``LINKSTRATEGY_BENCH_SUBSET=N`` to use the first N
packages of the work tree only (quicker runs).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import wheeltree  # bench/ is on sys.path: pytest inserts a conftest's directory


def _subset() -> tuple[str, ...]:
    raw = os.environ.get("LINKSTRATEGY_BENCH_SUBSET")
    return wheeltree.subset(int(raw) if raw else None)


def _mount_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to mount a loop image"
    if not os.path.exists("/dev/loop-control"):
        return "no loop devices (/dev/loop-control missing)"
    if shutil.which("mkfs.xfs") is None:
        return "mkfs.xfs not installed"
    try:
        from support import mountutil  # noqa: F401
    except ImportError as e:
        return f"tests/support/mountutil.py not importable: {e}"
    return None


def rm_tree(path: Path) -> None:
    if path.exists() or path.is_symlink():
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


@pytest.fixture(scope="session")
def linkstrategy_api():  # type: ignore[no-untyped-def]
    try:
        import linkstrategy
    except ImportError as e:
        pytest.skip(f"linkstrategy not importable: {e}")
    if not hasattr(linkstrategy, "place"):
        pytest.skip("linkstrategy.place() does not exist yet")
    return linkstrategy


@pytest.fixture(scope="session")
def xfs() -> Iterator[Path]:
    """Mount point of a fresh XFS ``reflink=1`` loop image backed by /dev/shm."""
    reason = _mount_skip_reason()
    if reason:
        pytest.skip(reason)
    from support import mountutil

    base = Path(tempfile.mkdtemp(prefix="lsbench-pytest-", dir="/dev/shm"))
    try:
        with mountutil.loop_fs("xfs-reflink", base, size_mb=4096) as m:
            yield Path(getattr(m, "mountpoint", m))
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def src_tree(xfs: Path) -> Path:
    """The unpacked-wheels work tree on the XFS image."""
    wheeltree.ensure_wheels(_subset())
    return wheeltree.unpack_tree(xfs / "src", _subset())


@pytest.fixture(scope="session")
def wheels_on_xfs(xfs: Path) -> list[Path]:
    d = xfs / "wheels"
    d.mkdir(exist_ok=True)
    return [Path(shutil.copy2(w, d)) for w in wheeltree.ensure_wheels(_subset())]


@pytest.fixture
def fresh_dst(xfs: Path) -> Iterator[Callable[[], Path]]:
    """``fresh()`` removes (untimed) and returns this test's destination on the XFS image."""
    dst = (
        xfs
        / "out"
        / os.environ.get("PYTEST_CURRENT_TEST", "t")
        .split(" ")[0]
        .replace("/", "_")
        .replace(":", "_")
    )
    dst.parent.mkdir(exist_ok=True)

    def fresh() -> Path:
        rm_tree(dst)
        os.sync()
        return dst

    yield fresh
    rm_tree(dst)
