"""remove() and gc(): the safety guarantees of issue #14, one test each.

Each test was seen to fail with its guard broken (tests/mutation/mutations.py).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import mountutil
from support.caps import DROP_DAC
from support.registry import skip_or_fail
from support.trash import make_trash

from linkstrategy import RemoveError, remove
from linkstrategy import _remove as R
from linkstrategy import _tree as RT
from linkstrategy._gc import gc
from linkstrategy._trash import TRASH_NAME


def need_mounts() -> None:
    reason = mountutil.mount_skip_reason("tmpfs")
    if reason:
        skip_or_fail(f"needs mounts: {reason}")


@contextlib.contextmanager
def mounted(cm: contextlib.AbstractContextManager[Path], under: Path) -> Iterator[Path]:
    """A mount that is unmounted at the end even if the code under test moved it
    (a broken guard may carry it into the trash): whatever new mount is left under
    ``under`` is unmounted lazily."""
    before = {m["mount_point"] for m in mountutil.mount_info()}
    prefix = str(under) + os.sep
    try:
        with cm as mp:
            yield mp
    except mountutil.MountError:
        pass  # moved away: the assertions of the test say so
    finally:
        for m in mountutil.mount_info():
            mp_ = m["mount_point"]
            if mp_ not in before and mp_.startswith(prefix):
                subprocess.run(["umount", "-l", mp_], check=False)


def tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def deep_tree(root: Path, dirs: int = 40) -> None:
    for i in range(dirs):
        tree(root / f"d{i:02d}", {"f": "x"})


# -- O_NOFOLLOW on every subdirectory open --------------------------------------------


@pytest.mark.python_walk
@pytest.mark.parametrize("walk", ["serial", "parallel"])
def test_symlink_to_the_moved_original_directory_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, walk: str, outside_unchanged: Any
) -> None:
    """Between remove()'s stat of ``victim`` and its open, ``victim`` is moved out of
    the tree and a symlink to it takes its place.  Following the symlink would open
    the very directory that was stat'ed (same device and inode: the identity check
    passes) and empty it, outside the tree."""
    root = tmp_path / "t"
    if walk == "parallel":
        deep_tree(root)
    tree(root, {"victim/inner/f": "x", "victim/g": "y"})
    moved = tmp_path / "moved"
    guard = outside_unchanged(tmp_path, root, exclude=[moved])
    real = RT.statx
    swapped = []

    def racing(dir_fd: int, name: str) -> Any:
        st = real(dir_fd, name)
        if name == "victim" and not swapped:
            os.rename(root / "victim", moved)
            os.symlink(moved, root / "victim")
            swapped.append(1)
        return st

    monkeypatch.setattr(RT, "statx", racing)
    r = remove(root, workers=8 if walk == "parallel" else 1)
    monkeypatch.undo()
    assert swapped and not os.path.lexists(root), r
    assert (moved / "inner" / "f").read_text() == "x"
    assert (moved / "g").read_text() == "y"
    guard.check()


# -- refusals --------------------------------------------------------------------------


def test_home_is_refused_through_a_symlinked_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "users" / "alice"
    tree(home, {".bashrc": "x"})
    monkeypatch.setenv("HOME", str(home))
    (tmp_path / "link").symlink_to(tmp_path / "users")
    (tmp_path / "up").symlink_to(tmp_path)
    for victim in (tmp_path / "link" / "alice", tmp_path / "up" / "users"):
        with pytest.raises(RemoveError) as ei:
            remove(victim)
        assert ei.value.errno == errno.EPERM and "home" in str(ei.value), victim
    assert (home / ".bashrc").read_text() == "x"


# -- mounts inside the tree ------------------------------------------------------------


@pytest.mark.python_walk
@pytest.mark.root
def test_busy_root_holding_a_mount_is_not_deferred(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A root that is busy past the budget would be renamed into the trash; with a
    mount inside, the mount would go with it.  Nothing may be deferred."""
    need_mounts()
    root = tmp_path / "venv"
    tree(root, {"busy": "b", "other": "o", "sub/x": "x"})
    real_unlink = os.unlink

    def busy(name: Any, *a: Any, **kw: Any) -> None:
        if name == "busy":
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), name)
        real_unlink(name, *a, **kw)

    with mounted(mountutil.tmpfs_mount(root / "sub", size="1m", name="mnt"), tmp_path) as mp:
        (mp / "data").write_text("on the mount")
        monkeypatch.setattr(R.os, "unlink", busy)
        r = remove(root, budget=0.2)
        monkeypatch.undo()
        assert r.deferred == ()
        assert str(mp) in r.mounts_skipped
        assert not os.path.lexists(tmp_path / TRASH_NAME) or not os.listdir(tmp_path / TRASH_NAME)
        assert mountutil.is_mounted(mp) and (mp / "data").read_text() == "on the mount"
        assert (root / "busy").exists()


@pytest.mark.root
def test_last_entries_stay_when_a_mount_is_left_inside(tmp_path: Path) -> None:
    need_mounts()
    pkg, info = tmp_path / "site" / "pkg", tmp_path / "site" / "pkg-1.0.dist-info"
    tree(pkg, {"__init__.py": "i", "data/x": "x"})
    tree(info, {"METADATA": "m", "RECORD": "r", "WHEEL": "w"})
    with mounted(mountutil.tmpfs_mount(pkg / "data", size="1m", name="mnt"), tmp_path) as mp:
        r = remove([pkg, info], last=("METADATA", "RECORD"))
        assert str(mp) in r.mounts_skipped and not r.ok
        assert (info / "METADATA").read_text() == "m"
        assert (info / "RECORD").read_text() == "r"
        assert mountutil.is_mounted(mp)


@pytest.mark.root
def test_gc_does_not_cross_a_bind_mount(tmp_path: Path) -> None:
    """Trash beyond a bind mount (same filesystem, same st_dev) belongs to another tree."""
    need_mounts()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    old_entry = make_trash(elsewhere) / "1000-1-abcdef-pkg"
    tree(old_entry, {"f": "theirs"})
    base = tmp_path / "base"
    (base / "mine").mkdir(parents=True)
    tree(make_trash(base / "mine") / "1000-1-abcdef-x", {"f": "mine"})
    (base / "d").mkdir()
    with mounted(mountutil.bind_mount(elsewhere, base / "d", name="bm"), tmp_path) as mp:
        r = gc(base, recursive=True)  # (not recursive, gc looks at base's entries only)
        assert (mp / TRASH_NAME / "1000-1-abcdef-pkg" / "f").read_text() == "theirs"
        assert not (base / "mine" / TRASH_NAME).exists(), r  # its own trash is emptied
    assert (old_entry / "f").read_text() == "theirs"


# -- budgets ---------------------------------------------------------------------------


@pytest.mark.python_walk
@pytest.mark.timeout(20)
def test_busy_forever_ends_within_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EBUSY that never ends: remove() retries within its budget, then defers."""
    root = tmp_path / "t"
    tree(root, {"busy": "b", "x/y": "y"})
    real_unlink = os.unlink

    def busy(name: Any, *a: Any, **kw: Any) -> None:
        if name == "busy":
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), name)
        real_unlink(name, *a, **kw)

    monkeypatch.setattr(R.os, "unlink", busy)
    t0 = time.monotonic()
    r = remove(root, budget=0.5)
    took = time.monotonic() - t0
    monkeypatch.undo()
    assert took < 3, took
    assert len(r.deferred) == 1 and not root.exists()


# -- permissions -----------------------------------------------------------------------

_REMOVE_WITHOUT_DAC = DROP_DAC + textwrap.dedent(
    """
    import json, sys
    from linkstrategy import remove
    print(json.dumps(remove(sys.argv[1], budget=0.2).to_json()))
    """
)


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_the_directory_holding_a_root_is_never_chmodded(tmp_path: Path, kind: str) -> None:
    """A root in a read-only directory cannot go: an error, not a chmod of a
    directory that is not part of the tree (it is someone else's)."""
    parent = tmp_path / "theirs"
    root = parent / "victim"
    if kind == "dir":
        tree(root, {"f": "x"})
    else:
        tree(parent, {"victim": "x"})
    os.chmod(parent, 0o555)
    try:
        res = subprocess.run(
            [sys.executable, "-c", _REMOVE_WITHOUT_DAC, str(root)], capture_output=True, text=True
        )
        assert res.returncode == 0, res.stderr
        assert stat.S_IMODE(os.stat(parent).st_mode) == 0o555
        assert os.path.lexists(root)
        report = json.loads(res.stdout)
        assert report["errors"], report
    finally:
        os.chmod(parent, 0o755)
