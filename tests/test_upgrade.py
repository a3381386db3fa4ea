"""upgrade(): several entries of one directory as one transaction, on real filesystems."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support import killshim
from support.pyimport import run_importing, same_size_and_mtime
from test_txn import build, snapshot

import linkstrategy
import linkstrategy._txn as T
import linkstrategy._upgrade as U
from linkstrategy._errors import InvalidArgument, PlaceError, RemoveError, TransactionBusy
from linkstrategy._gc import gc
from linkstrategy._upgrade import UPGRADE_JOURNAL, upgrade

OLD_INFO, NEW_INFO = "numpy-1.26.dist-info", "numpy-2.0.dist-info"
OLD_NAMES = ["numpy", "numpy.libs", OLD_INFO, "numpy-gone"]
NEW_NAMES = ["numpy", "numpy.libs", NEW_INFO, "numpy-added"]
RENAMED = {OLD_INFO: NEW_INFO}


def make(base: Path) -> tuple[Path, Path]:
    """``(site, new)``: site-packages with numpy 1.26 and a bystander; the new trees."""
    site, new = base / "site", base / "new"
    build(site / "numpy", "old-np", n=6)
    build(site / "numpy.libs", "old-libs", n=2)
    build(site / OLD_INFO, "old-info", n=1)
    build(site / "numpy-gone", "gone", n=1)
    build(site / "other", "bystander", n=3)
    (site / "other.pth").write_text("other\n")
    build(new / "numpy", "new-np", n=8)
    build(new / "numpy.libs", "new-libs", n=3)
    build(new / NEW_INFO, "new-info", n=1)
    (new / "numpy-added").write_text("added\n")  # a file entry
    return site, new


def changes(new: Path) -> dict[str, Path | None]:
    return {
        "numpy": new / "numpy",
        "numpy.libs": new / "numpy.libs",
        "numpy-added": new / "numpy-added",
        NEW_INFO: new / NEW_INFO,
        "numpy-gone": None,
    }


def view(site: Path, names: list[str]) -> dict[str, Any]:
    """The named entries of ``site`` (a file entry by content)."""
    out: dict[str, Any] = {}
    for n in names:
        p = site / n
        if not os.path.lexists(p):
            out[n] = None
        elif p.is_dir():
            out[n] = snapshot(p)
        else:
            out[n] = p.read_bytes()
    return out


def expected(site: Path, new: Path) -> dict[str, dict[str, Any]]:
    every = sorted(set(OLD_NAMES) | set(NEW_NAMES))
    old = view(site, every)
    want = {n: None for n in every}
    want.update(view(new, [n for n in NEW_NAMES]))
    return {"old": old, "new": want}


def rest(site: Path) -> dict[str, Any]:
    """Everything in ``site`` the upgrade must not touch."""
    keep = [n for n in os.listdir(site) if n not in set(OLD_NAMES) | set(NEW_NAMES)]
    return {n: view(site, [n])[n] for n in keep if "linkstrategy" not in n}


def leftovers(parent: Path) -> list[str]:
    return sorted(n for n in os.listdir(parent) if "linkstrategy" in n)


def consistent(names: list[str]) -> str | None:
    """What a reader must never see in a listing of site-packages; None if fine."""
    infos = [n for n in names if n.endswith(".dist-info")]
    if len(infos) != 1:
        return f"{len(infos)} dist-infos: {infos}"
    if "numpy" not in names or "numpy.libs" not in names:
        return f"numpy without its trees: {sorted(names)}"
    return None


# -- the plain run --------------------------------------------------------------------


@pytest.mark.parametrize("fs", ["tmp_path", "tmpfs_dir", "xfs_reflink", "ext4"])
def test_upgrade_swaps_every_entry_and_touches_nothing_else(
    request: pytest.FixtureRequest, fs: str
) -> None:
    base: Path = request.getfixturevalue(fs)
    site, new = make(base)
    want, others = expected(site, new), rest(site)
    seen: list[list[str]] = []
    T.step_hook = lambda name: seen.append(os.listdir(site))
    try:
        reports = linkstrategy.upgrade(site, changes(new), renamed=RENAMED)
    finally:
        T.step_hook = None
    assert view(site, sorted(want["new"])) == want["new"]
    assert rest(site) == others and leftovers(site) == []
    assert sorted(reports) == sorted(n for n in NEW_NAMES)
    assert reports["numpy"].files == 9
    # Observed between every two renames: never two dist-infos, never numpy without one.
    assert len(seen) >= 8
    for names in seen:
        assert consistent([n for n in names if "linkstrategy" not in n]) is None, names


def test_step_order_code_first_metadata_late_removals_last(tmp_path: Path) -> None:
    site, new = make(tmp_path)
    steps: list[str] = []
    T.step_hook = steps.append
    try:
        upgrade(site, changes(new), renamed=RENAMED)
    finally:
        T.step_hook = None
    swapped = [s.split(":", 1)[1] for s in steps if s.startswith("upgrade-swapped:")]
    assert swapped == ["numpy-added", "numpy", "numpy.libs", NEW_INFO, "numpy-gone"]
    i = steps.index(f"upgrade-exchanged:{NEW_INFO}")
    assert steps[i + 1] == f"upgrade-swapped:{NEW_INFO}"


def test_concurrent_reader_never_sees_two_dist_infos(tmpfs_dir: Path) -> None:
    site, new = make(tmpfs_dir)
    bad: list[str] = []
    listings = 0
    done = threading.Event()

    def reader() -> None:
        nonlocal listings
        while not done.is_set():
            names = [n for n in os.listdir(site) if "linkstrategy" not in n]
            listings += 1
            why = consistent(names)
            if why:
                bad.append(why)

    t = threading.Thread(target=reader)
    t.start()
    T.step_hook = lambda name: time.sleep(0.02)  # slow: the reader lists between steps
    try:
        upgrade(site, changes(new), renamed=RENAMED)
    finally:
        T.step_hook = None
        done.set()
        t.join()
    assert bad == [] and listings > 20


# -- bad input and refusals -------------------------------------------------------------


@pytest.mark.parametrize(
    ("chg", "ren", "code"),
    [
        ({"a/b": None}, {}, errno.EINVAL),
        ({"..": None}, {}, errno.EINVAL),
        ({UPGRADE_JOURNAL: None}, {}, errno.EINVAL),
        ({"missing": None}, {}, errno.ENOENT),
        ({"x.dist-info": "SRC"}, {"nope.dist-info": "x.dist-info"}, errno.ENOENT),
        ({"x.dist-info": None}, {"numpy": "x.dist-info"}, errno.EINVAL),
        ({"numpy": "SRC"}, {"numpy": "numpy"}, errno.EINVAL),
    ],
)
def test_bad_input_is_refused_before_anything_changes(
    tmp_path: Path, chg: dict[str, Any], ren: dict[str, str], code: int
) -> None:
    site, new = make(tmp_path)
    before = snapshot(site)
    chg = {k: (new / "numpy" if v == "SRC" else v) for k, v in chg.items()}
    with pytest.raises(InvalidArgument) as ei:
        upgrade(site, chg, renamed=ren)
    assert ei.value.errno == code and ei.value.filename
    assert snapshot(site) == before


def test_failure_while_swapping_rolls_back_as_a_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site, new = make(tmp_path)
    want = expected(site, new)

    def fail(name: str) -> None:
        if name == "upgrade-swapped:numpy.libs":
            raise OSError(errno.EIO, "injected", str(site))

    monkeypatch.setattr(T, "step_hook", fail)
    with pytest.raises(OSError) as ei:
        upgrade(site, changes(new), renamed=RENAMED)
    assert ei.value.errno == errno.EIO
    monkeypatch.setattr(T, "step_hook", None)
    assert view(site, sorted(want["old"])) == want["old"]
    assert leftovers(site) == []


def test_second_upgrade_of_a_parent_is_busy_while_one_runs(tmp_path: Path) -> None:
    site, new = make(tmp_path)
    pfd = os.open(site, os.O_RDONLY | os.O_DIRECTORY)
    up = U._Upgrade(pfd, str(site))
    up.begin()  # holds the journal's lock, as a running upgrade does
    try:
        with pytest.raises(TransactionBusy):
            upgrade(site, {"numpy": new / "numpy"})
        assert gc(site).ok and leftovers(site) == [UPGRADE_JOURNAL]  # gc leaves it too
    finally:
        up.close()
        os.close(pfd)
    upgrade(site, {"numpy": new / "numpy"})  # the holder is gone: recovered first
    assert snapshot(site / "numpy") == snapshot(new / "numpy") and leftovers(site) == []


# -- kill -9 at every step --------------------------------------------------------------

_CHILD = killshim.ARM + textwrap.dedent(
    """
    import json, os, sys
    import linkstrategy._txn as T
    import linkstrategy._sys._linux as L
    from linkstrategy._upgrade import upgrade
    site, new, mode, point = sys.argv[1:5]
    if mode == "noexchange":
        L._renameat2 = False  # as on NFS: two renames per exchange
    kill = lambda: os.kill(os.getpid(), 9)
    kw = {}
    if point == "mid-place":
        kw["progress"] = lambda done, total: done >= 4 and kill()
    elif point == "commit-unlink":
        T.step_hook = lambda name: name == "upgrade-committing" and _arm(3)
    else:
        T.step_hook = lambda name: name == point and kill()
    changes = json.loads(sys.argv[5])
    upgrade(site, changes, renamed={sys.argv[6]: sys.argv[7]}, **kw)
    """
)

_BEFORE = ["upgrade-building", "mid-place", "upgrade-placed:numpy", f"upgrade-placed:{NEW_INFO}"]
_AFTER = [
    "upgrade-swapping",
    "upgrade-swapped:numpy-added",
    "upgrade-swapped:numpy",
    "upgrade-swapped:numpy.libs",
    f"upgrade-exchanged:{NEW_INFO}",
    f"upgrade-swapped:{NEW_INFO}",
    "upgrade-swapped:numpy-gone",
    "upgrade-committing",
    "commit-unlink",
]
_POINTS = [(p, "old", "exchange") for p in _BEFORE] + [(p, "new", "exchange") for p in _AFTER]
_POINTS += [
    ("upgrade-moved-old", "new", "noexchange"),
    (f"upgrade-swapped:{NEW_INFO}", "new", "noexchange"),
]


def kill_at(base: Path, point: str, mode: str) -> tuple[Path, Path, dict[str, Any], Any]:
    site, new = make(base)
    want, others = expected(site, new), rest(site)
    chg = {k: (str(v) if v is not None else None) for k, v in changes(new).items()}
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            _CHILD,
            str(site),
            str(new),
            mode,
            point,
            json.dumps(chg),
            OLD_INFO,
            NEW_INFO,
        ],
        capture_output=True,
        env=killshim.env(),
    )
    assert res.returncode == -9, (point, res.stderr)
    return site, new, want, others


def after_kill(site: Path, point: str, mode: str, want: dict[str, Any]) -> None:
    """Right after the kill: no reader-visible mix that breaks the promises."""
    names = [n for n in os.listdir(site) if "linkstrategy" not in n]
    if mode == "exchange":
        assert consistent(names) is None, (point, names)
    now = view(site, sorted(want["old"]))
    for n, v in now.items():  # each entry is whole: its old or its new tree (or absent)
        # (the old dist-info's name holds the new one between its exchange and rename)
        also = want["new"][NEW_INFO] if n == OLD_INFO else None
        assert v in (want["old"][n], want["new"][n], also, None), (point, n)


@pytest.mark.parametrize("recover_by", ["upgrade", "gc", "recover_dir", "remove"])
def test_kill_9_at_every_step_then_recovery(tmpfs_dir: Path, recover_by: str) -> None:
    for i, (point, expect, mode) in enumerate(_POINTS):
        site, _new, want, others = kill_at(tmpfs_dir / f"{i}", point, mode)
        after_kill(site, point, mode, want)
        if recover_by == "remove":
            # Removing an entry of a directory with an interrupted upgrade finishes or
            # undoes that upgrade first, as a whole, then removes what was asked: a
            # later recovery must not bring a removed package back from the journal.
            assert linkstrategy.remove(site / "numpy").ok, point
            assert not os.path.lexists(site / "numpy"), point
            assert gc(site).ok, point
            assert not os.path.lexists(site / "numpy"), (point, "brought back")
            want[expect]["numpy"] = None
        elif recover_by == "upgrade":  # a later upgrade of the same parent finishes it first
            other = tmpfs_dir / f"{i}" / "other-new"
            build(other, "other-2", n=2)
            upgrade(site, {"other": other})
            others["other"] = snapshot(other)
        elif recover_by == "gc":
            assert gc(site).ok, point
        else:
            assert U.recover_dir(site / UPGRADE_JOURNAL), point
        assert view(site, sorted(want[expect])) == want[expect], point
        assert rest(site) == others, point
        assert leftovers(site) == [], (point, leftovers(site))


def record_of(site: Path, names: list[str]) -> list[str]:
    """RECORD-style paths of the files and symlinks of the named entries."""
    out = []
    for n in names:
        if (site / n).is_dir():
            out += [f"{n}/{rel}" for rel, what in snapshot(site / n).items() if what[0] != "dir"]
        else:
            out.append(n)
    return out


_PKG = ["numpy", "numpy.libs", "numpy-gone"]


@pytest.mark.parametrize(
    "point", ["upgrade-swapped:numpy", "upgrade-moved-old", "upgrade-committing"]
)
def test_uninstall_by_record_after_a_kill_past_building_recovers_then_asks_again(
    tmp_path: Path, point: str
) -> None:
    """The caller's RECORD may be the old version's: the upgrade is finished first,
    nothing of the package is removed, and the caller is told to read RECORD again."""
    mode = "noexchange" if point == "upgrade-moved-old" else "exchange"
    site, _new, want, others = kill_at(tmp_path, point, mode)
    record = [
        *record_of(site, [n for n in _PKG if os.path.lexists(site / n)]),
        f"{OLD_INFO}/METADATA",
    ]
    with pytest.raises(RemoveError) as ei:
        linkstrategy.remove(files=record, root=site, last=[OLD_INFO])
    assert ei.value.errno == errno.EAGAIN and "RECORD" in str(ei.value)
    assert view(site, sorted(want["new"])) == want["new"]  # finished, whole, untouched
    assert leftovers(site) == []
    # Read again (the new dist-info), and the uninstall goes through; nothing comes back.
    names = ["numpy", "numpy.libs", "numpy-added"]
    r = linkstrategy.remove(
        files=record_of(site, [*names, NEW_INFO]), root=site, last=[NEW_INFO], check=True
    )
    assert r.ok
    assert gc(site).ok
    assert [n for n in [*names, NEW_INFO, OLD_INFO] if os.path.lexists(site / n)] == []
    assert rest(site) == others and leftovers(site) == []


def test_uninstall_by_record_after_a_kill_while_building_goes_through(tmp_path: Path) -> None:
    """Killed before anything in site changed: the RECORD is current; the journal is
    rolled back and the uninstall done; a later gc has nothing to bring back."""
    site, _new, _want, others = kill_at(tmp_path, "upgrade-placed:numpy", "exchange")
    assert leftovers(site) == [UPGRADE_JOURNAL]
    record = record_of(site, [*_PKG, OLD_INFO])
    assert linkstrategy.remove(files=record, root=site, last=[OLD_INFO], check=True).ok
    assert gc(site).ok
    assert [n for n in [*_PKG, OLD_INFO, NEW_INFO] if os.path.lexists(site / n)] == []
    assert rest(site) == others and leftovers(site) == []


def test_removing_paths_with_last_after_a_kill_past_building_asks_again(tmp_path: Path) -> None:
    site, _new, want, _others = kill_at(tmp_path, "upgrade-swapped:numpy", "exchange")
    with pytest.raises(RemoveError) as ei:
        linkstrategy.remove([site / "numpy", site / OLD_INFO], last=[str(site / OLD_INFO)])
    assert ei.value.errno == errno.EAGAIN
    assert view(site, sorted(want["new"])) == want["new"] and leftovers(site) == []


def test_remove_waits_for_no_running_upgrade_of_other_entries(tmp_path: Path) -> None:
    """A running upgrade (its journal locked) fails the removal of the entries it
    changes, raises for an uninstall by RECORD, and leaves every other entry alone."""
    site, _new = make(tmp_path)
    pfd = os.open(site, os.O_RDONLY | os.O_DIRECTORY)
    up = U._Upgrade(pfd, str(site))
    up.entries = [U._Entry({"name": "numpy", "from": "numpy", "slot": "new-0"})]
    up.begin()  # holds the journal's lock, as a running upgrade does
    try:
        r = linkstrategy.remove([site / "numpy", site / "other"])
        assert [(f.path, f.errno) for f in r.errors] == [(str(site / "numpy"), errno.EBUSY)]
        assert (site / "numpy").is_dir() and not os.path.lexists(site / "other")
        with pytest.raises(RemoveError) as ei:
            linkstrategy.remove(files=record_of(site, ["numpy"]), root=site)
        assert ei.value.errno == errno.EBUSY and ei.value.filename == str(site)
        assert (site / "numpy").is_dir()
        # Entries the upgrade does not change are removed by RECORD as usual.
        assert linkstrategy.remove(files=["other.pth"], root=site, check=True).ok
        assert leftovers(site) == [UPGRADE_JOURNAL]
    finally:
        up.close()
        os.close(pfd)


@pytest.mark.parametrize("fs", ["ext4", "xfs_reflink"])
def test_kill_9_at_every_step_on_disk_filesystems(request: pytest.FixtureRequest, fs: str) -> None:
    base: Path = request.getfixturevalue(fs)
    for i, (point, expect, mode) in enumerate(_POINTS):
        site, _new, want, others = kill_at(base / f"{i}", point, mode)
        after_kill(site, point, mode, want)
        assert gc(site).ok, point
        assert view(site, sorted(want[expect])) == want[expect], point
        assert rest(site) == others and leftovers(site) == [], point


def test_swapping_with_a_new_tree_lost_rolls_back_as_a_whole(tmpfs_dir: Path) -> None:
    # Killed after numpy was swapped in; then the staged dist-info disappears (an
    # admin cleaning up): rolling forward would mix, so every entry goes back.
    site, _new, want, others = kill_at(tmpfs_dir, "upgrade-swapped:numpy.libs", "exchange")
    j = site / UPGRADE_JOURNAL
    slot = next(
        e["slot"]
        for e in T._read_state(os.open(j, os.O_RDONLY)).get("entries", [])
        if e["name"] == NEW_INFO
    )
    shutil.rmtree(j / slot)
    assert gc(site).ok
    assert view(site, sorted(want["old"])) == want["old"]
    assert rest(site) == others and leftovers(site) == []


def test_recovery_leaves_a_journal_whose_names_were_changed_by_someone_else(
    tmpfs_dir: Path,
) -> None:
    site, _new, want, _others = kill_at(tmpfs_dir, "upgrade-swapped:numpy", "exchange")
    shutil.rmtree(site / OLD_INFO)
    (site / OLD_INFO).mkdir()  # not the old tree nor the new one: not ours to move
    with pytest.raises(RemoveError) as ei:
        U.recover_dir(site / UPGRADE_JOURNAL)
    assert ei.value.errno == errno.EPERM and OLD_INFO in str(ei.value.filename)
    assert os.listdir(site / OLD_INFO) == [] and (site / UPGRADE_JOURNAL).is_dir()
    # Checked before anything moves: no entry went further, none came back.
    assert view(site, ["numpy", "numpy.libs", NEW_INFO]) == {
        "numpy": want["new"]["numpy"],
        "numpy.libs": want["old"]["numpy.libs"],
        NEW_INFO: None,
    }


def test_an_entry_changed_while_building_fails_the_upgrade_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site, new = make(tmp_path)

    def meddle(name: str) -> None:
        if name == "upgrade-placed:numpy":
            os.rename(site / "numpy.libs", tmp_path / "moved")
            build(site / "numpy.libs", "someone-else", n=1)

    monkeypatch.setattr(T, "step_hook", meddle)
    theirs = None
    with pytest.raises(PlaceError) as ei:
        try:
            upgrade(site, changes(new), renamed=RENAMED)
        finally:
            theirs = snapshot(site / "numpy.libs")
    assert ei.value.errno == errno.EBUSY and "numpy.libs" in str(ei.value)
    monkeypatch.setattr(T, "step_hook", None)
    assert snapshot(site / "numpy.libs") == theirs and "someone-else-0.txt" in str(theirs)
    assert (site / "numpy-gone").is_dir() and (site / OLD_INFO).is_dir()
    assert not (site / "numpy-added").exists() and leftovers(site) == []


_RECOVER_CHILD = textwrap.dedent(
    """
    import os, sys
    import linkstrategy._txn as T
    import linkstrategy._upgrade as U
    import linkstrategy._sys._linux as L
    if sys.argv[2] == "noexchange":
        L._renameat2 = False
    T.step_hook = lambda name: name == sys.argv[3] and os.kill(os.getpid(), 9)
    U.recover_dir(sys.argv[1])
    """
)


def kill_recovery(site: Path, mode: str, point: str) -> None:
    res = subprocess.run(
        [sys.executable, "-c", _RECOVER_CHILD, str(site / UPGRADE_JOURNAL), mode, point],
        capture_output=True,
    )
    assert res.returncode == -9, res.stderr


def test_kill_9_during_a_roll_forward_then_recovery_again(tmpfs_dir: Path) -> None:
    site, _new, want, others = kill_at(tmpfs_dir, "upgrade-swapped:numpy", "exchange")
    kill_recovery(site, "exchange", f"upgrade-exchanged:{NEW_INFO}")
    after_kill(site, "recovery", "exchange", want)
    assert gc(site).ok
    assert view(site, sorted(want["new"])) == want["new"]
    assert rest(site) == others and leftovers(site) == []


def test_kill_9_during_a_roll_back_then_recovery_again(tmpfs_dir: Path) -> None:
    site, _new, want, others = kill_at(tmpfs_dir, "upgrade-swapped:numpy.libs", "exchange")
    j = site / UPGRADE_JOURNAL
    fd = os.open(j, os.O_RDONLY)
    entries = T._read_state(fd).get("entries", [])
    os.close(fd)
    shutil.rmtree(j / next(e["slot"] for e in entries if e["name"] == NEW_INFO))  # forces back
    kill_recovery(site, "noexchange", "upgrade-moved-old")  # between the two renames of one step
    assert gc(site).ok
    assert view(site, sorted(want["old"])) == want["old"]
    assert rest(site) == others and leftovers(site) == []


def test_read_only_trees_are_swapped_and_keep_their_modes(tmp_path: Path) -> None:
    # As a normal user (the unprivileged pass of tests/run.sh) moving a 0555 directory
    # to another parent needs u+w on it; root moves it as it is.
    site, new = make(tmp_path)
    os.chmod(site / "numpy", 0o555)
    os.chmod(new / "numpy", 0o555)
    want = snapshot(new / "numpy")
    try:
        upgrade(site, changes(new), renamed=RENAMED)
        got = snapshot(site / "numpy")
        # A place() bug, not upgrade()'s: placing a 0555 tree as a normal user leaves
        # place()'s lock file in its top directory (released after the mode is set).
        got.pop(".linkstrategy-lock", None)
        assert got == want
        assert stat.S_IMODE(os.stat(site / "numpy").st_mode) == 0o555
        assert leftovers(site) == []
    finally:
        for p in (site / "numpy", new / "numpy"):
            if p.exists():
                os.chmod(p, 0o755)


def test_a_file_entry_already_hardlinked_to_its_new_source_stays(
    ext4: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reinstalling from the same cache: the placed file IS the installed one (one inode
    # under two names), which inode-based bookkeeping must not take for a removal.
    site, new = make(ext4)
    os.link(new / "numpy-added", site / "numpy-added")
    same: list[bool] = []

    def look(name: str) -> None:
        if name == "upgrade-placed:numpy-added":
            j = site / UPGRADE_JOURNAL
            same.extend(os.path.samefile(j / n, site / "numpy-added") for n in os.listdir(j))

    monkeypatch.setattr(T, "step_hook", look)
    upgrade(site, changes(new), renamed=RENAMED, strategy="hardlink")
    monkeypatch.setattr(T, "step_hook", None)
    assert any(same)  # the premise: the staged file was the installed one
    assert (site / "numpy-added").read_text() == "added\n"
    assert os.path.samefile(site / "numpy-added", new / "numpy-added")
    assert leftovers(site) == []


def test_replace_recovery_leaves_an_upgrade_journal_to_upgrade(tmp_path: Path) -> None:
    """_txn alone does not know upgrade() journals (it never imports _upgrade): given one,
    it leaves it untouched; gc() and upgrade() (through _upgrade) recover it."""
    site, _new, want, _others = kill_at(tmp_path, "upgrade-swapped:numpy", "exchange")
    before = view(site, sorted(want["old"]))
    with pytest.raises(RemoveError) as ei:
        T.recover_dir(site / UPGRADE_JOURNAL)
    assert ei.value.errno == errno.EPERM and "kind 'upgrade'" in str(ei.value)
    assert view(site, sorted(want["old"])) == before and leftovers(site) == [UPGRADE_JOURNAL]
    assert U.recover_dir(site / UPGRADE_JOURNAL)
    assert leftovers(site) == []


# -- the bytecode of a top-level module ------------------------------------------------------


@pytest.mark.parametrize("how", ["replaced", "renamed"])
def test_an_upgraded_top_level_module_never_runs_the_old_bytecode(tmp_path: Path, how: str) -> None:
    """``mod.py`` 1.0 imported (its bytecode in site-packages' own ``__pycache__``, outside
    the entry), then upgraded to 2.0, a file of the same size and mtime (two versions
    unpacked in one second, or reproducible builds' fixed timestamps): the interpreter
    trusts bytecode whose source mtime and size match, and ran 1.0 after the upgrade.
    The upgrade now takes the replaced (or removed) module's bytecode; other modules'
    stays."""
    site, new = tmp_path / "site", tmp_path / "new"
    same_size_and_mtime(site / "mod.py", new / "mod.py", 'VERSION = "1.0"\n', 'VERSION = "2.0"\n')
    (site / "other.py").write_text("X = 1\n")
    assert run_importing(site, "import mod, other; print(mod.VERSION)") == "1.0"
    tag = sys.implementation.cache_tag
    assert (site / "__pycache__" / f"other.{tag}.pyc").exists()
    if how == "replaced":
        upgrade(site, {"mod.py": new / "mod.py"})
        assert run_importing(site, "import mod; print(mod.VERSION)") == "2.0"
    else:  # the module's old name removed, the new one placed: its old bytecode goes too
        (new / "mod2.py").write_text('VERSION = "3.0"\n')
        upgrade(site, {"mod.py": None, "mod2.py": new / "mod2.py"})
        assert not list((site / "__pycache__").glob("mod.*"))
    assert (site / "__pycache__" / f"other.{tag}.pyc").exists()


# -- also=: the scripts in bin/ in the same transaction -------------------------------------


def _venv(base: Path) -> tuple[Path, Path, Path]:
    """``(site, bin, new)``: pkg 1.0 with its scripts ``tool`` and ``oldtool``; the new
    trees of pkg 2.0, whose scripts are ``tool`` (replaced) and ``newtool`` (added)."""
    site, bindir, new = base / "lib" / "site", base / "bin", base / "new"
    build(site / "pkg", "old-pkg", n=4)
    build(site / "pkg-1.0.dist-info", "old-info", n=1)
    bindir.mkdir(parents=True)
    for name in ("tool", "oldtool", "python"):
        (bindir / name).write_text(f"old {name}\n")
    build(new / "pkg", "new-pkg", n=5)
    build(new / "pkg-2.0.dist-info", "new-info", n=1)
    (new / "bin").mkdir()
    for name in ("tool", "newtool"):
        (new / "bin" / name).write_text(f"new {name}\n")
    return site, bindir, new


def _bin_changes(bindir: Path, new: Path) -> dict[str, Any]:
    return {
        str(bindir): {
            "tool": str(new / "bin" / "tool"),
            "newtool": str(new / "bin" / "newtool"),
            "oldtool": None,
        }
    }


def _state(site: Path, bindir: Path) -> tuple[Any, ...]:
    return (
        sorted(n for n in os.listdir(site) if "linkstrategy" not in n),
        snapshot(site / "pkg") if (site / "pkg").exists() else None,
        {n: (bindir / n).read_text() for n in sorted(os.listdir(bindir))},
    )


def test_also_swaps_the_scripts_in_bin_in_the_same_transaction(tmp_path: Path) -> None:
    """``also={bin: {...}}``: the scripts in another directory of the filesystem change in
    the same transaction as the package (#13: an upgrade touches numpy/, numpy.libs/,
    the dist-info and scripts in bin/)."""
    site, bindir, new = _venv(tmp_path)
    reports = upgrade(
        site,
        {"pkg": new / "pkg", "pkg-2.0.dist-info": new / "pkg-2.0.dist-info"},
        renamed={"pkg-1.0.dist-info": "pkg-2.0.dist-info"},
        also={
            bindir: {
                "tool": new / "bin" / "tool",
                "newtool": new / "bin" / "newtool",
                "oldtool": None,
            }
        },
    )
    assert sorted(reports) == sorted(
        ["pkg", "pkg-2.0.dist-info", str(bindir / "tool"), str(bindir / "newtool")]
    )
    assert _state(site, bindir) == (
        ["pkg", "pkg-2.0.dist-info"],
        snapshot(new / "pkg"),
        {"newtool": "new newtool\n", "python": "old python\n", "tool": "new tool\n"},
    )
    assert not [n for n in os.listdir(site) if "linkstrategy" in n]


def test_also_is_refused_before_anything_changes(tmp_path: Path, ext4: Path) -> None:
    """Another filesystem (renames cannot reach it: EXDEV), the parent itself, and a
    removal of what is not there are refused before anything is placed."""
    site, bindir, new = _venv(tmp_path)
    before = _state(site, bindir)
    bad: list[tuple[Any, int]] = [
        ({ext4: {"tool": new / "bin" / "tool"}}, errno.EXDEV),
        ({site: {"x": new / "bin" / "tool"}}, errno.EINVAL),
        ({bindir: {"absent": None}}, errno.ENOENT),
        ({bindir: {"../x": new / "bin" / "tool"}}, errno.EINVAL),
    ]
    for also, code in bad:
        with pytest.raises(InvalidArgument) as ei:
            upgrade(site, {"pkg": new / "pkg"}, also=also)
        assert ei.value.errno == code, also
        assert _state(site, bindir) == before and leftovers(site) == []


_CHILD_ALSO = textwrap.dedent(
    """
    import json, os, sys
    import linkstrategy._txn as T
    from linkstrategy._upgrade import upgrade
    site, point, also = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    T.step_hook = lambda name: name == point and os.kill(os.getpid(), 9)
    new = os.path.join(os.path.dirname(os.path.dirname(site)), "new")
    upgrade(site, {"pkg": new + "/pkg", "pkg-2.0.dist-info": new + "/pkg-2.0.dist-info"},
            renamed={"pkg-1.0.dist-info": "pkg-2.0.dist-info"}, also=also)
    """
)

_ALSO_POINTS = [
    ("upgrade-placed:tool", "old"),
    ("upgrade-placed:newtool", "old"),
    ("upgrade-swapping", "new"),
    ("upgrade-swapped:newtool", "new"),
    ("upgrade-swapped:tool", "new"),
    ("upgrade-swapped:pkg", "new"),
    ("upgrade-exchanged:pkg-2.0.dist-info", "new"),
    ("upgrade-swapped:pkg-2.0.dist-info", "new"),
    ("upgrade-swapped:oldtool", "new"),
    ("upgrade-committing", "new"),
]


@pytest.mark.parametrize("recover_by", ["gc", "upgrade"])
def test_also_kill_9_at_every_step_recovers_both_directories_as_a_whole(
    tmpfs_dir: Path, recover_by: str
) -> None:
    """kill -9 at each step of an upgrade that changes site-packages and bin/: the
    recovery (gc of the parent, or the next upgrade of it) leaves both directories
    old or both new, never new code beside old scripts."""
    for i, (point, expect) in enumerate(_ALSO_POINTS):
        base = tmpfs_dir / f"{i}"
        site, bindir, new = _venv(base)
        old = _state(site, bindir)
        res = subprocess.run(
            [
                sys.executable,
                "-c",
                _CHILD_ALSO,
                str(site),
                point,
                json.dumps(_bin_changes(bindir, new)),
            ],
            capture_output=True,
        )
        assert res.returncode == -9, (point, res.stderr)
        if recover_by == "gc":
            assert gc(site).ok, point
        else:
            build(base / "other-new", "other", n=1)
            upgrade(site, {"other": base / "other-new"})
            (site / "other").rename(base / "other-placed")  # not part of the comparison
        want = (
            old
            if expect == "old"
            else (
                ["pkg", "pkg-2.0.dist-info"],
                snapshot(new / "pkg"),
                {"newtool": "new newtool\n", "python": "old python\n", "tool": "new tool\n"},
            )
        )
        assert _state(site, bindir) == want, point
        assert leftovers(site) == [], point


def test_a_recorded_directory_replaced_since_leaves_the_journal_alone(tmpfs_dir: Path) -> None:
    """The journal names bin/ by path and inode: if bin/ is another directory by the
    recovery (moved away, a new one made), nothing is moved (RemoveError, EPERM)."""
    site, bindir, new = _venv(tmpfs_dir)
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            _CHILD_ALSO,
            str(site),
            "upgrade-swapped:tool",
            json.dumps(_bin_changes(bindir, new)),
        ],
        capture_output=True,
    )
    assert res.returncode == -9, res.stderr
    bindir.rename(tmpfs_dir / "bin-moved")
    bindir.mkdir()  # someone's new, empty bin/: nothing in it contradicts the journal
    with pytest.raises(RemoveError) as ei:
        U.recover_dir(site / UPGRADE_JOURNAL)
    assert ei.value.errno == errno.EPERM
    assert os.listdir(bindir) == []  # nothing moved into it
    assert (site / UPGRADE_JOURNAL).is_dir()


def test_also_takes_every_kind_of_path(tmp_path: Path) -> None:
    """also='s directories, names and sources are paths as everywhere (bytes, PathLike);
    a directory that is not a path is a TypeError naming it, before anything changes."""
    site, bindir, new = _venv(tmp_path)
    upgrade(
        site,
        {"pkg": new / "pkg"},
        also={os.fsencode(bindir): {b"tool": os.fsencode(new / "bin" / "tool")}},
    )
    assert (bindir / "tool").read_text() == "new tool\n"
    with pytest.raises(TypeError, match="also"):
        upgrade(site, {"pkg": new / "pkg"}, also={3: {"tool": new / "bin" / "tool"}})  # type: ignore[dict-item]
    assert leftovers(site) == []
