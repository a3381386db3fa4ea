"""The test support itself: tree_digest / outside_unchanged, and the mount fixture registry."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from support.guard import OutsideGuard, diff, tree_digest
from support.registry import MOUNT_FIXTURES


def sample(root: Path) -> None:
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_bytes(b"data")
    os.symlink("d/f", root / "link")
    os.mkfifo(root / "fifo")


@pytest.mark.parametrize(
    "change",
    ["content", "mode", "type", "target", "created", "removed", "dir-mode"],
)
def test_tree_digest_sees_every_kind_of_change(tmp_path: Path, change: str) -> None:
    sample(tmp_path)
    before = tree_digest(tmp_path)
    f = tmp_path / "d" / "f"
    if change == "content":
        f.write_bytes(b"datA")  # same size
    elif change == "mode":
        os.chmod(f, 0o600 if (os.stat(f).st_mode & 0o777) != 0o600 else 0o644)
    elif change == "type":
        f.unlink()
        f.mkdir()
    elif change == "target":
        (tmp_path / "link").unlink()
        os.symlink("d/g", tmp_path / "link")
    elif change == "created":
        (tmp_path / "d" / "new").write_bytes(b"")
    elif change == "removed":
        (tmp_path / "fifo").unlink()
    else:
        os.chmod(tmp_path / "d", 0o700 if (os.stat(f).st_mode & 0o777) != 0o700 else 0o755)
    after = tree_digest(tmp_path)
    assert before != after and diff(before, after)


def test_tree_digest_ignores_reads_and_excluded_subtrees(tmp_path: Path) -> None:
    sample(tmp_path)
    before = tree_digest(tmp_path, exclude=[tmp_path / "d"])
    (tmp_path / "d" / "f").read_bytes()
    os.utime(tmp_path / "link", follow_symlinks=False)
    (tmp_path / "d" / "inside").write_bytes(b"excluded")
    assert tree_digest(tmp_path, exclude=[tmp_path / "d"]) == before
    assert "d" not in before and "link" in before


def test_outside_guard_fails_on_a_write_outside_the_target(tmp_path: Path) -> None:
    sample(tmp_path)
    target = tmp_path / "d"
    guard = OutsideGuard(tmp_path, target)
    (target / "ok").write_bytes(b"inside: fine")
    guard.check()
    guard = OutsideGuard(tmp_path, target)
    (tmp_path / "escaped").write_bytes(b"outside")
    with pytest.raises(AssertionError, match="created: escaped"):
        guard.check()


def test_outside_unchanged_fixture_checks_at_teardown(
    tmp_path: Path, outside_unchanged: Any
) -> None:
    sample(tmp_path)
    outside_unchanged(tmp_path, tmp_path / "d")
    (tmp_path / "d" / "x").write_bytes(b"inside only")  # teardown check passes


def test_mount_fixtures_are_registered() -> None:
    for name in ("xfs_reflink", "btrfs", "tmpfs_dir", "fusefs", "nfslike", "clatencyfs"):
        assert name in MOUNT_FIXTURES
