"""replace()'s journal: the safety guarantees of issue #14, one test each.

Each test was seen to fail with its guard broken (tests/mutation/mutations.py).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from linkstrategy import _txn
from linkstrategy._txn import journal_name, recover_for, replace


def tree(root: Path, tag: str) -> dict[str, bytes]:
    files = {"METADATA": f"version {tag}\n".encode(), f"pkg/{tag}.py": tag.encode() * 50}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def same(root: Path, files: dict[str, bytes]) -> bool:
    found = {
        os.path.relpath(os.path.join(d, n), root): Path(d, n).read_bytes()
        for d, _dirs, names in os.walk(root)
        for n in names
    }
    return found == files


_KILL_AFTER_MOVING_OLD = textwrap.dedent(
    """
    import os, sys
    from linkstrategy import _txn as T
    T._exchange = lambda *args: False  # the two-rename path (NFS, FUSE)
    T.step_hook = lambda name: name == "moved-old" and os._exit(9)
    T.replace(sys.argv[1], sys.argv[2])
    """
)


def test_swapping_journal_whose_new_tree_is_missing_brings_the_old_tree_back(
    tmp_path: Path,
) -> None:
    """Killed between the two renames of the swap (old tree moved into the journal),
    and then the new tree is gone too (lost, or removed by hand): recovery cannot
    roll forward, so the old tree must come back to dst -- not be deleted with the
    journal."""
    new, dst = tmp_path / "new", tmp_path / "site" / "pkg"
    tree(new, "new")
    old = tree(dst, "old")
    res = subprocess.run(
        [sys.executable, "-c", _KILL_AFTER_MOVING_OLD, str(new), str(dst)], capture_output=True
    )
    assert res.returncode == 9, res.stderr
    journal = dst.parent / journal_name(dst.name)
    assert not dst.exists() and (journal / "new").is_dir()
    subprocess.run(["rm", "-rf", str(journal / "new")], check=True)
    assert recover_for(dst)
    assert same(dst, old)
    assert not journal.exists()


def test_journal_state_is_fsynced_renamed_then_its_directory_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every state write: fsync(state.tmp), rename(state.tmp, state), fsync(journal
    dir), in that order and back to back -- else a crash can leave a state that
    names a phase whose data is not on disk, or lose the rename."""
    events: list[tuple[str, str]] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(a: Any, b: Any, *args: Any, **kw: Any) -> None:
        real_rename(a, b, *args, **kw)

        def full(p: Any, fd: int | None) -> str:  # renames are relative to directory fds
            if fd is None:
                return str(os.fspath(p))
            return os.path.join(os.readlink(f"/proc/self/fd/{fd}"), os.fspath(p))

        src, dst = full(a, kw.get("src_dir_fd")), full(b, kw.get("dst_dir_fd"))
        events.append(("rename", f"{src} -> {dst}"))

    new, dst = tmp_path / "new", tmp_path / "site" / "pkg"
    tree(new, "new")
    tree(dst, "old")
    monkeypatch.setattr(_txn.os, "fsync", fsync)
    monkeypatch.setattr(_txn.os, "rename", rename)
    replace(new, dst)
    monkeypatch.undo()
    state_renames = [
        i for i, (kind, what) in enumerate(events) if kind == "rename" and what.endswith("/state")
    ]
    assert len(state_renames) >= 3, events  # building, swapping, committing
    for i in state_renames:
        tmp, _, final = events[i][1].partition(" -> ")
        assert events[i - 1] == ("fsync", tmp), (events[i - 1], events[i])
        assert events[i + 1] == ("fsync", os.path.dirname(final)), (events[i], events[i + 1])


@pytest.mark.root
@pytest.mark.timeout(60)
@pytest.mark.parametrize("swap", ["exchange", "two-renames"])
def test_rename_busy_forever_is_an_error_within_the_budget(
    fusefs: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, swap: str
) -> None:
    """The swap's renames retry EBUSY with backoff inside a budget; a busy that never
    ends is an error after it (and the old tree stays), never an endless loop.  Both
    ways of swapping: RENAME_EXCHANGE, and the two renames used where it is missing."""
    if swap == "two-renames":
        monkeypatch.setattr(_txn, "_exchange", lambda *args: False)
    dst = Path(fusefs.mountpoint) / "site" / "pkg"
    old = tree(dst, "old")
    new = tmp_path / "new"
    tree(new, "new")
    fusefs.inject("rename", errno.EBUSY, count=10**6, path="/site/pkg")
    t0 = time.monotonic()
    with pytest.raises(OSError) as ei:
        replace(new, dst)
    took = time.monotonic() - t0
    fusefs.clear()
    assert ei.value.errno == errno.EBUSY
    assert took < 30, took
    assert same(dst, old)
