"""Issue #9: remove(), gc(), the trash, journals and staging under hostile or
exhausted conditions: paths the kernel resolves differently from a string,
shared sticky directories, another user's trash or journal, symlinks swapped in
for a trash directory, 2,000-deep trees under ``ulimit -n 1024``, no threads
under ``ulimit -u``.

Every test that removes something digests the whole sandbox before and after and
asserts that nothing outside the target changed.  Tests that need a second user
run a child process as ``nobody`` (``setresuid``); they skip when not root.
"""

from __future__ import annotations

import atexit
import errno
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.trash import make_trash

import linkstrategy
import linkstrategy._remove as R
import linkstrategy._trash as TR
import linkstrategy._tree as RT
import linkstrategy._txn as TX
from linkstrategy._cli import main
from linkstrategy._errors import RemoveError
from linkstrategy._gc import gc
from linkstrategy._mounts import find_mount
from linkstrategy._owner import LOCK_NAME, owner
from linkstrategy._remove import remove
from linkstrategy._trash import TRASH_NAME, collect_trash
from linkstrategy._txn import journal_name, replace

NOBODY = 65534
ROOT = os.geteuid() == 0


_nobody_skip: list[str | None] = []


def need_root() -> None:
    """Skip unless a child process can run this interpreter as ``nobody``."""
    if not ROOT:
        pytest.skip("needs root: a second user (nobody) acts in the sandbox")
    if not _nobody_skip:
        res = run_child("import linkstrategy._remove; print(linkstrategy.__file__)", uid=NOBODY)
        why = (res.stderr.strip().splitlines() or ["?"])[-1]
        if res.returncode == 0 and not res.stdout.startswith(_package_copy()):
            why = f"the child imported {res.stdout.strip()}, not the copy of the code under test"
            res = subprocess.CompletedProcess(res.args, 1)
        _nobody_skip.append(None if res.returncode == 0 else why)
    if _nobody_skip[0] is not None:
        pytest.skip(f"nobody cannot run {sys.executable}: {_nobody_skip[0]}")


def digest(root: Path, skip: Path | None = None) -> dict[str, Any]:
    """Every entry under ``root`` (types, modes, owners, contents, link targets),
    except those under ``skip``."""
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            if skip is not None and (p == str(skip) or p.startswith(f"{skip}/")):
                continue
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", st.st_mode, st.st_uid)
            else:
                with open(p, "rb") as f:
                    out[rel] = ("file", st.st_mode, st.st_uid, hashlib.sha256(f.read()).digest())
    return out


@pytest.fixture
def sandbox() -> Iterator[Path]:
    """A directory every user can reach (pytest's tmp_path is root's 0700)."""
    d = Path(tempfile.mkdtemp(prefix="ls-safety-", dir="/tmp"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        # rm (fts) copes with read-only and 2,000-deep trees a failure may leave, where
        # shutil.rmtree (recursive) and pytest's own tmp_path cleanup do not.
        subprocess.run(["chmod", "-R", "u+rwx", str(d)], check=False)
        subprocess.run(["rm", "-rf", "--one-file-system", str(d)], check=True)


_copy: list[str] = []


def _package_copy() -> str:
    """A copy of the very ``linkstrategy`` this process imported, where every user can
    read it: a child (as ``nobody``, too) then runs the code under test, not another
    install that a path it cannot read would make it fall back to."""
    if not _copy:
        d = tempfile.mkdtemp(prefix="ls-safety-pkg-", dir="/tmp")
        os.chmod(d, 0o755)
        pkg = os.path.dirname(linkstrategy.__file__)
        shutil.copytree(
            pkg, os.path.join(d, "linkstrategy"), ignore=shutil.ignore_patterns("__pycache__")
        )
        subprocess.run(["chmod", "-R", "a+rX", d], check=True)
        atexit.register(shutil.rmtree, d, True)
        _copy.append(d)
    return _copy[0]


def run_child(
    code: str,
    *args: str,
    uid: int | None = None,
    nofile: int | None = None,
    nproc: int | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter, as ``uid`` and under the given limits."""
    pre = ["import os, resource, sys"]
    if nofile is not None:
        pre.append(f"resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile}, {nofile}))")
    if uid is not None:
        pre.append(f"os.setgroups([]); os.setresgid({uid}, {uid}, {uid})")
        pre.append(f"os.setresuid({uid}, {uid}, {uid})")
    if nproc is not None:
        pre.append(f"resource.setrlimit(resource.RLIMIT_NPROC, ({nproc}, {nproc}))")
    script = "\n".join(pre) + "\n" + textwrap.dedent(code)
    env = {**os.environ, "PYTHONPATH": _package_copy(), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=timeout,
        env=env,
    )


# -- 1. paths mean what the kernel says they mean -------------------------------------------


@pytest.mark.parametrize("arg", ["", ".", "..", "sub/.", "sub/..", "sub/./", "sub/../"])
def test_dot_dotdot_and_empty_are_refused_and_nothing_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arg: str
) -> None:
    work = tmp_path / "work"
    (work / "sub" / "f").parent.mkdir(parents=True)
    (work / "sub" / "f").write_text("f")
    (tmp_path / "sibling").write_text("s")
    monkeypatch.chdir(work)
    before = digest(tmp_path)
    with pytest.raises(RemoveError) as ei:
        remove(arg)
    assert ei.value.errno in (errno.EINVAL, errno.ENOENT)
    assert "refusing" in str(ei.value)
    assert digest(tmp_path) == before


@pytest.mark.parametrize("arg", [".", "..", ""])
def test_cli_refuses_dot_dotdot_and_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any, arg: str
) -> None:
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    before = digest(tmp_path)
    assert main(["remove", arg]) == 1
    err = capsys.readouterr().err
    assert err.startswith("linkstrategy: error: ") and "refusing" in err
    assert digest(tmp_path) == before


def kernel_vs_lexical(root: Path) -> tuple[Path, Path]:
    """``keep/link -> ../other/sub``: ``keep/link/..`` is ``other`` to the kernel."""
    (root / "keep").mkdir()
    (root / "keep" / "victim").write_text("lexical: must stay")
    (root / "other" / "sub").mkdir(parents=True)
    (root / "other" / "victim").mkdir()
    (root / "other" / "victim" / "f").write_text("kernel: the one named")
    os.symlink("../other/sub", root / "keep" / "link")
    return root / "keep" / "victim", root / "other" / "victim"


def test_dotdot_after_a_symlink_means_what_the_kernel_means(tmp_path: Path) -> None:
    lexical, meant = kernel_vs_lexical(tmp_path)
    before = digest(tmp_path, skip=meant)
    r = remove(tmp_path / "keep" / "link" / ".." / "victim")  # pathlib keeps ".."
    assert r.ok and r.removed == 2
    assert not meant.exists() and lexical.read_text() == "lexical: must stay"
    assert digest(tmp_path) == before
    with pytest.raises(RemoveError, match=r"refusing to remove '\.' or '\.\.'"):
        remove(f"{tmp_path}/keep/link/..")  # the final "..": refused, as rm does
    assert digest(tmp_path) == before


def test_replace_through_symlink_and_dotdot_lands_where_the_kernel_means(tmp_path: Path) -> None:
    _lexical, meant = kernel_vs_lexical(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    (src / "new").write_text("new")
    before = digest(tmp_path, skip=meant)
    replace(src, f"{tmp_path}/keep/link/../victim")
    assert (meant / "new").read_text() == "new" and not (meant / "f").exists()
    assert digest(tmp_path, skip=meant) == before  # keep/victim and the rest untouched
    with pytest.raises(OSError, match="refusing"):
        replace(src, f"{tmp_path}/keep/link/..")
    with pytest.raises(OSError, match="refusing"):
        replace(src, "")


def test_home_is_refused_by_identity_through_a_symlink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "users" / "alice"
    home.mkdir(parents=True)
    (home / ".bashrc").write_text("x")
    os.symlink(tmp_path / "users", tmp_path / "link")  # link -> parent of HOME
    os.mkdir(tmp_path / "bind")
    monkeypatch.setenv("HOME", str(home))
    before = digest(tmp_path)
    for victim in (tmp_path / "link" / "alice", f"{tmp_path}/link/alice/"):
        with pytest.raises(RemoveError, match="home directory"):
            remove(victim)
    with pytest.raises(RemoveError, match="ancestor of the home"):
        remove(tmp_path / "bind" / ".." / "users")
    assert digest(tmp_path) == before
    assert remove(tmp_path / "link").ok  # the symlink itself is not the home directory
    assert home.is_dir()


# -- 3./4. trash and gc through fds, per-user trash, never another user's state ------------------


DEFER_CHILD = """
import errno, json
import linkstrategy._remove as R
import linkstrategy._tree as T
T._fast = None  # the fault below is at a Python call site: no C pass
from linkstrategy._remove import remove
real = R.os.rmdir
def busy(name, *a, **kw):
    if name == "busy":
        raise OSError(errno.EBUSY, "busy", name)
    return real(name, *a, **kw)
R.os.rmdir = busy
r = remove(sys.argv[1], budget=0.02)
print(json.dumps(r.to_json()))
"""


def test_shared_sticky_directory_each_user_defers_to_a_trash_of_their_own(sandbox: Path) -> None:
    need_root()
    shared = sandbox / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    mine = shared / "root-tree"
    (mine / "busy").mkdir(parents=True)
    theirs = shared / "nobody-tree"
    res = run_child(
        "import os, sys; os.makedirs(os.path.join(sys.argv[1], 'busy'))", str(theirs), uid=NOBODY
    )
    assert res.returncode == 0, res.stderr
    keep = shared / "keep"
    keep.write_text("k")
    before = digest(sandbox, skip=shared)
    # root defers first: its trash must not stand in nobody's way (it did: 0700, exit 1)
    res = run_child(DEFER_CHILD, str(mine))
    assert res.returncode == 0, res.stderr
    r0 = json.loads(res.stdout)
    assert not r0["errors"] and len(r0["deferred"]) == 1
    assert r0["deferred"][0]["trash"].startswith(f"{shared}/{TRASH_NAME}-0/")
    res = run_child(DEFER_CHILD, str(theirs), uid=NOBODY)
    assert res.returncode == 0, res.stderr
    r1 = json.loads(res.stdout)
    assert not r1["errors"] and len(r1["deferred"]) == 1, r1
    assert r1["deferred"][0]["trash"].startswith(f"{shared}/{TRASH_NAME}-{NOBODY}/")
    t1 = shared / f"{TRASH_NAME}-{NOBODY}"
    assert os.lstat(t1).st_uid == NOBODY and stat.S_IMODE(os.lstat(t1).st_mode) == 0o700
    assert not mine.exists() and not theirs.exists() and keep.read_text() == "k"
    # root's gc of the shared directory: its own trash goes, nobody's is left, reported
    g = gc(shared)
    assert not (shared / f"{TRASH_NAME}-0").exists() and t1.exists()
    assert [f for f in g.foreign if f.startswith(str(t1))], g
    # nobody's own gc empties nobody's trash
    res = run_child(
        "from linkstrategy import gc; r = gc(sys.argv[1]); print(r.ok)", str(shared), uid=NOBODY
    )
    assert res.returncode == 0 and res.stdout.strip() == "True", res.stderr
    assert sorted(os.listdir(shared)) == ["keep"]
    assert digest(sandbox, skip=shared) == before


def root_only(sandbox: Path) -> tuple[Path, dict[str, Any]]:
    secret = sandbox / "root-only"
    secret.mkdir(mode=0o700)
    (secret / "1000-1-abc-precious").write_text("p")  # named like a trash entry
    (secret / "data").write_text("d")
    return secret, digest(secret)


def test_gc_never_empties_a_symlink_swapped_in_for_the_trash(sandbox: Path) -> None:
    need_root()
    secret, want = root_only(sandbox)
    shared = sandbox / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    for name in (TRASH_NAME, f"{TRASH_NAME}-0"):
        res = run_child(
            "import os, sys; os.symlink(sys.argv[1], sys.argv[2])",
            str(secret),
            str(shared / name),
            uid=NOBODY,
        )
        assert res.returncode == 0, res.stderr
    before = digest(sandbox)
    g = gc(shared, recursive=True)
    assert digest(sandbox) == before and digest(secret) == want
    assert sorted(f.split(":")[0] for f in g.foreign) == sorted(
        str(shared / n) for n in (TRASH_NAME, f"{TRASH_NAME}-0")
    )
    collect_trash(shared, min_age=0)
    assert digest(sandbox) == before


@pytest.mark.python_walk
@pytest.mark.parametrize("swap_in", ["symlink", "directory", "trash"])
def test_a_remembered_trash_swapped_for_a_symlink_is_not_followed(
    sandbox: Path, monkeypatch: pytest.MonkeyPatch, swap_in: str
) -> None:
    """The long-running process case: a trash remembered by path, then the parent's
    owner renames it away and puts in its place a symlink to a root-only directory, or
    another directory of the caller's that happens to stand in the parent -- even one
    that is a trash of the caller's itself (made for another directory): it is not the
    one remembered."""
    # Only this test's trash: one an earlier test left on a filesystem since unmounted
    # is forgotten only when a later remove() meets its device number again.
    # (cleared, not monkeypatched: the monkeypatch.undo() below would undo that too)
    TR._known.clear()
    parent = sandbox / "users-dir"
    parent.mkdir()
    secret, want = root_only(parent if swap_in == "directory" else sandbox)
    if swap_in == "trash":  # (its entry is named like a trash entry: old enough)
        (parent / "other").mkdir()
        secret = make_trash(parent / "other")
        (secret / "1000-1-abcdef-precious").mkdir()
        want = digest(secret)
    (parent / "t" / "busy").mkdir(parents=True)
    real = R.os.rmdir

    def busy(name: Any, *a: Any, **kw: Any) -> None:
        if name == "busy":
            raise OSError(errno.EBUSY, "busy", name)
        real(name, *a, **kw)

    monkeypatch.setattr(R.os, "rmdir", busy)
    r = remove(parent / "t", budget=0.02)
    monkeypatch.undo()
    assert len(r.deferred) == 1
    trash = Path(r.deferred[0].trash).parent
    os.rename(trash, parent / "moved-away")  # what the directory's owner can do
    if swap_in == "symlink":
        os.symlink(secret, trash)
    else:
        os.rename(secret, trash)  # (a rename within one filesystem: the inode, its marker)
        secret = trash
    elsewhere = sandbox / "elsewhere"  # same filesystem: remembered trash is looked at
    elsewhere.mkdir()
    before = digest(sandbox)
    collect_trash(elsewhere, min_age=0)
    gc(elsewhere)
    assert digest(sandbox) == before and digest(secret) == want
    assert not TR._known, "a trash that is no longer the inode it was is forgotten"


def test_gc_as_root_leaves_another_users_trash_alone(sandbox: Path) -> None:
    need_root()
    shared = sandbox / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    res = run_child(
        "import os, sys; os.makedirs(os.path.join(sys.argv[1], '1000-1-abc-x', 'd'))",
        str(shared / TRASH_NAME),
        uid=NOBODY,
    )
    assert res.returncode == 0, res.stderr
    before = digest(sandbox)
    g = gc(shared)
    assert digest(sandbox) == before and g.foreign and g.ok


def make_foreign_journal(shared: Path, name: str, uid: int) -> None:
    """As ``uid``: a journal for ``name`` that says "swapping" with a new/ tree."""
    code = """
    import json, os, sys
    shared, name, jname = sys.argv[1:4]
    j = os.path.join(shared, jname)
    os.makedirs(os.path.join(j, "new", "evil"))
    open(os.path.join(j, "lock"), "w").close()  # as a real journal has, free
    st = os.lstat(os.path.join(j, "new"))
    old = os.lstat(os.path.join(shared, name))
    state = {"version": 1, "dst": name, "phase": "swapping",
             "old": [old.st_dev, old.st_ino], "new": [st.st_dev, st.st_ino]}
    with open(os.path.join(j, "state"), "w") as f:
        json.dump(state, f)
    """
    res = run_child(code, str(shared), name, journal_name(name), uid=uid)
    assert res.returncode == 0, res.stderr


def test_foreign_journal_in_a_sticky_directory_is_left_alone(sandbox: Path) -> None:
    need_root()
    shared = sandbox / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    third = shared / "NAME"  # a third user's tree
    (third / "d").mkdir(parents=True)
    (third / "d" / "f").write_text("third party")
    for p in (third, third / "d", third / "d" / "f"):
        os.lchown(p, 12345, 12345)
    make_foreign_journal(shared, "NAME", NOBODY)
    before = digest(sandbox)
    g = gc(shared)
    assert digest(sandbox) == before
    assert [f for f in g.foreign if journal_name("NAME") in f], g
    g = gc(third)  # gc DST: the journal of DST is its sibling
    assert digest(sandbox) == before and g.foreign
    # remove() of something else in the directory goes on; the journal stays
    (shared / "other").write_text("o")
    assert remove(shared / "other").ok
    assert digest(sandbox) == before


def test_journal_whose_state_names_another_destination_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "victim").write_text("v")
    j = tmp_path / journal_name("pkg")
    (j / "new").mkdir(parents=True)
    (j / "lock").write_text("")  # free, as a real journal's is once its maker is gone
    st = os.lstat(j / "new")
    v = os.lstat(tmp_path / "victim")
    state = {"phase": "swapping", "dst": "victim", "old": [v.st_dev, v.st_ino]}
    (j / "state").write_text(json.dumps({**state, "new": [st.st_dev, st.st_ino]}))
    before = digest(tmp_path)
    g = gc(tmp_path)
    assert digest(tmp_path) == before and g.foreign


# -- gc: cost, dead temporaries, busy trash ---------------------------------------------------


def test_gc_looks_at_the_path_its_entries_and_its_parent_unless_recursive(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (make_trash(deep) / "1000-1-abcdef-x").mkdir()
    (make_trash(tmp_path) / "1000-1-abcdef-y").mkdir()  # the parent's
    (make_trash(tmp_path / "a") / "1000-1-abcdef-z").mkdir()  # an entry's
    g = gc(tmp_path / "a")
    assert g.ok and g.removed == 4
    assert not (tmp_path / TRASH_NAME).exists() and not (tmp_path / "a" / TRASH_NAME).exists()
    assert (deep / TRASH_NAME).exists(), "not walked without recursive=True"
    g = gc(tmp_path / "a", recursive=True)
    assert g.ok and not (deep / TRASH_NAME).exists() and deep.is_dir()


def dead_temporary(d: Path, kind: str) -> Path:
    """A temporary named by an owner ID, its lock file present and free: dead."""
    if kind == "lstmp":
        p = d / f".lstmp-{'a' * 16}-7"
    else:
        p = d / f".pkg.linkstrategy-stage-{'b' * 16}-3"
    (p / "tree" / "x").mkdir(parents=True)
    (p / LOCK_NAME).write_text("")
    return p


@pytest.mark.parametrize("kind", ["lstmp", "stage"])
def test_gc_removes_dead_temporaries_and_leaves_live_ones(tmp_path: Path, kind: str) -> None:
    dead = dead_temporary(tmp_path, kind)
    live = tmp_path / f".lstmp-{owner()}-1"  # no lock file: never judged dead
    live.mkdir()
    (tmp_path / "keep").write_text("k")
    before = digest(tmp_path, skip=dead)
    g = gc(tmp_path)
    assert g.ok and not dead.exists() and live.exists()
    assert digest(tmp_path) == before


def test_gc_retries_a_busy_trash_directory_within_its_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (make_trash(tmp_path) / "1000-1-abcdef-x").mkdir()
    left = [3]
    real = R.os.rmdir

    def busy(name: Any, *a: Any, **kw: Any) -> None:
        if name == TRASH_NAME and left[0]:
            left[0] -= 1
            raise OSError(errno.EBUSY, "busy", name)
        real(name, *a, **kw)

    monkeypatch.setattr(R.os, "rmdir", busy)
    g = gc(tmp_path)
    assert left == [0] and g.ok and g.retries >= 3
    assert os.listdir(tmp_path) == []


def test_cli_gc_recursive(tmp_path: Path, capsys: Any) -> None:
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    (make_trash(deep) / "1000-1-abcdef-x").mkdir()
    assert main(["gc", str(tmp_path)]) == 0
    assert (deep / TRASH_NAME).exists()
    assert main(["gc", "--recursive", str(tmp_path)]) == 0
    assert not (deep / TRASH_NAME).exists()


# -- 5. replace() of a read-only tree --------------------------------------------------------


REPLACE_RO = """
import os, stat
from linkstrategy import replace
base = sys.argv[1]
for tree, tag in (("src", "new"), ("dst", "old")):
    os.makedirs(os.path.join(base, tree, "sub"))
    with open(os.path.join(base, tree, "sub", "f"), "w") as f:
        f.write(tag)
    os.chmod(os.path.join(base, tree, "sub"), 0o555)
    os.chmod(os.path.join(base, tree), 0o555)
replace(os.path.join(base, "src"), os.path.join(base, "dst"))
dst = os.path.join(base, "dst")
print(oct(stat.S_IMODE(os.stat(dst).st_mode)), open(os.path.join(dst, "sub", "f")).read())
print(sorted(os.listdir(base)))
"""


def test_replace_of_read_only_trees_as_their_owner(sandbox: Path) -> None:
    need_root()  # root ignores the permission that made this fail: run as nobody
    base = sandbox / "ro"
    base.mkdir()
    os.chown(base, NOBODY, NOBODY)
    res = run_child(REPLACE_RO, str(base), uid=NOBODY)
    assert res.returncode == 0, res.stderr
    mode, content, listing = res.stdout.replace("\n", " ", 1).split(" ", 2)
    assert (mode, content) == ("0o555", "new")
    assert listing.strip() == "['dst', 'src']"


# -- 6. limits ----------------------------------------------------------------------------------


DEEP = """
import json, os
from linkstrategy._gc import gc
from linkstrategy._remove import remove
base, mode, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
fd = os.open(base, os.O_RDONLY)
os.mkdir("top", dir_fd=fd)
cur = os.open("top", os.O_RDONLY, dir_fd=fd)
for i in range(2000):
    os.mkdir("d", dir_fd=cur)
    with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=cur), "w") as f:
        f.write(str(i))
    nxt = os.open("d", os.O_RDONLY, dir_fd=cur)
    os.close(cur)
    cur = nxt
if mode == "gc":  # a trash as the library makes it (with its marker)
    from linkstrategy._trash import _make_trash
    os.mkdir("1000-1-abcdef-x", dir_fd=_make_trash(cur, ".linkstrategy-trash", "t"))
os.close(cur)
os.close(fd)
if mode == "gc":
    r = gc(os.path.join(base, "top"), recursive=True)
else:
    r = remove(os.path.join(base, "top"), workers=workers or None)
print(json.dumps(r.to_json()))
"""


@pytest.mark.parametrize(
    ("mode", "workers"), [("remove", 0), ("remove", 1), ("remove", 4), ("gc", 0)]
)
def test_2000_deep_tree_under_ulimit_n_1024(sandbox: Path, mode: str, workers: int) -> None:
    tmp_path = sandbox  # never pytest's tmp_path: its cleanup recurses and fails at 2,000
    (tmp_path / "keep").write_text("k")
    before = digest(tmp_path)
    res = run_child(DEEP, str(tmp_path), mode, str(workers), nofile=1024)
    assert res.returncode == 0, res.stderr[-2000:]
    r = json.loads(res.stdout)
    assert not r["errors"] and not r["deferred"], r
    if mode == "remove":
        assert r["removed"] == 4001 and not (tmp_path / "top").exists()
        assert digest(tmp_path) == before
    else:
        assert r["removed"] == 2  # the trash entry and the trash, 2,000 levels down
        assert (tmp_path / "top").is_dir()


def test_process_limit_remove_goes_on_with_the_threads_it_has(sandbox: Path) -> None:
    need_root()  # RLIMIT_NPROC does not bind root (CAP_SYS_RESOURCE): run as nobody
    base = sandbox / "np"
    base.mkdir()
    os.chown(base, NOBODY, NOBODY)
    code = """
    import json, threading
    from linkstrategy._remove import remove
    base = sys.argv[1]
    for i in range(40):
        os.makedirs(os.path.join(base, "t", f"d{i}", "e"))
        open(os.path.join(base, "t", f"d{i}", "e", "f"), "w").close()
    try:
        threading.Thread(target=lambda: None).start()
        print("threads can start", file=sys.stderr)
    except RuntimeError:
        pass
    r = remove(os.path.join(base, "t"), workers=32)
    print(json.dumps(r.to_json()))
    """
    res = run_child(code, str(base), uid=NOBODY, nproc=1)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "threads can start" not in res.stderr, "the limit did not bind"
    r = json.loads(res.stdout)
    assert not r["errors"] and r["removed"] == 121 and os.listdir(base) == []


def test_network_override_gets_the_parallel_walk(
    tmpfs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fd = os.open(tmpfs_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        monkeypatch.delenv("LINKSTRATEGY_NETWORK_MOUNTS", raising=False)
        assert RT._network_workers(fd) == 1
        mount_point = find_mount(str(tmpfs_dir)).mount_point
        monkeypatch.setenv("LINKSTRATEGY_NETWORK_MOUNTS", mount_point)
        assert RT._network_workers(fd) == RT._NETWORK_WORKERS
    finally:
        os.close(fd)
    (tmpfs_dir / "t" / "d").mkdir(parents=True)
    assert remove(tmpfs_dir / "t").ok


def test_trash_name_is_per_user_where_the_directory_is_shared(tmp_path: Path) -> None:
    st = os.stat(tmp_path)
    assert TR.trash_name_for(st) == TRASH_NAME
    os.chmod(tmp_path, 0o1777)
    assert TR.trash_name_for(os.stat(tmp_path)) == f"{TRASH_NAME}-{os.geteuid()}"
    os.chmod(tmp_path, 0o755)
    assert TR.is_trash_name(TRASH_NAME) and TR.is_trash_name(f"{TRASH_NAME}-0")
    assert not TR.is_trash_name(f"{TRASH_NAME}-x") and not TR.is_trash_name(f"{TRASH_NAME}-")


# -- the same as an unprivileged user -----------------------------------------------------


NOBODY_PATHS = """
import json
from linkstrategy._errors import RemoveError
from linkstrategy._remove import remove
os.chdir(sys.argv[1])
out = {}
for arg in ("", ".", ".."):
    try:
        remove(arg)
        out[arg] = "removed"
    except RemoveError as e:
        out[arg] = e.strerror
os.makedirs("keep")
open("keep/victim", "w").write("lexical")
os.makedirs("other/sub")
os.makedirs("other/victim/d")
os.symlink("../other/sub", "keep/link")
r = remove("keep/link/../victim")
out["kernel"] = [r.ok, os.path.exists("keep/victim"), os.path.exists("other/victim")]
print(json.dumps(out))
"""


def test_paths_as_an_unprivileged_user(sandbox: Path) -> None:
    need_root()
    base = sandbox / "u"
    base.mkdir()
    os.chown(base, NOBODY, NOBODY)
    res = run_child(NOBODY_PATHS, str(base), uid=NOBODY)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out[""] == "refusing to remove an empty path"
    assert out["."] == out[".."] == "refusing to remove '.' or '..'"
    assert out["kernel"] == [True, True, False]
    assert base.is_dir() and sandbox.is_dir()


@pytest.mark.parametrize("workers", [1, 4])
def test_2000_deep_tree_under_ulimit_n_1024_as_an_unprivileged_user(
    sandbox: Path, workers: int
) -> None:
    need_root()
    base = sandbox / "u"
    base.mkdir()
    os.chown(base, NOBODY, NOBODY)
    res = run_child(DEEP, str(base), "remove", str(workers), uid=NOBODY, nofile=1024)
    assert res.returncode == 0, res.stderr[-2000:]
    r = json.loads(res.stdout)
    assert not r["errors"] and not r["deferred"] and r["removed"] == 4001, r
    assert os.listdir(base) == []


def test_replace_places_through_the_journal_fd_not_a_path_swapped_meanwhile(
    sandbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent's owner swaps the journal for a symlink to a root-only directory
    while replace() builds: nothing is written there."""
    import linkstrategy._txn as T

    secret, want = root_only(sandbox)
    parent = sandbox / "users-dir"
    (parent / "pkg").mkdir(parents=True)
    (parent / "pkg" / "old").write_text("old")
    src = sandbox / "src"
    src.mkdir()
    (src / "new").write_text("new")
    jname = journal_name("pkg")

    def swap(step: str) -> None:
        if step == "building":
            os.rename(parent / jname, parent / "moved-away")
            os.symlink(secret, parent / jname)

    monkeypatch.setattr(T, "step_hook", swap)
    replace(src, parent / "pkg")
    assert digest(secret) == want
    assert (parent / "pkg" / "new").read_text() == "new"


def test_trailing_slash_on_a_symlink_removes_the_link_never_its_target(tmp_path: Path) -> None:
    (tmp_path / "target" / "d").mkdir(parents=True)
    (tmp_path / "target" / "d" / "f").write_text("f")
    os.symlink("target", tmp_path / "link")
    before = digest(tmp_path, skip=tmp_path / "link")
    r = remove(f"{tmp_path}/link/")
    assert r.ok and r.removed == 1 and not os.path.lexists(tmp_path / "link")
    assert digest(tmp_path) == before


def test_gc_retries_a_busy_trash_directory_on_a_real_fuse_mount(fusefs: Any) -> None:
    d = Path(fusefs.mountpoint) / "d"
    d.mkdir()
    tname = TR.trash_name_for(os.stat(d))
    (make_trash(d) / "1000-1-abcdef-x" / "e").mkdir(parents=True)
    (d / "keep").write_text("k")
    fusefs.inject("rmdir", errno.EBUSY, count=3, path=f"/d/{tname}")
    g = gc(d)
    assert fusefs.consumed("rmdir") == 3 and g.ok and g.retries >= 3
    assert os.listdir(d) == ["keep"]


def test_gc_parent_removes_what_a_place_killed_with_sigkill_left(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    for i in range(30):
        (src / "a" / f"f{i}").write_text(str(i))
        (src / "a" / "b" / f"g{i}").write_text(str(i))
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "keep").write_text("k")
    code = """
    import linkstrategy
    kill = lambda done, total: done >= 5 and os.kill(os.getpid(), 9)
    linkstrategy.place(sys.argv[1], sys.argv[2], workers=1, strategy="copy", progress=kill)
    """
    res = run_child(code, str(src), str(dst / "pkg"))
    assert res.returncode == -9, res.stderr
    left = [n for n in os.listdir(dst) if n.startswith(".lstmp-")]
    assert left, "the killed place() left its temporary behind"
    before = digest(tmp_path, skip=dst / left[0])
    g = gc(dst)
    assert g.ok and g.removed > 0
    assert sorted(os.listdir(dst)) == ["keep"] and digest(tmp_path) == before


def test_open_trash_never_follows_a_symlink(tmp_path: Path) -> None:
    """The last guard when a trash is swapped for a symlink between a look and the open."""
    (tmp_path / "target").mkdir()
    os.symlink("target", tmp_path / TRASH_NAME)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError) as ei:
            TR.open_trash(fd, TRASH_NAME, str(tmp_path / TRASH_NAME))
        assert ei.value.errno in (errno.ELOOP, errno.ENOTDIR)
    finally:
        os.close(fd)


# -- a name proves nothing: trash, journals and temporaries (audit: races.md 1, 2, 5) ------
#
# A user who may rename in a directory (any shared directory that is not sticky; the
# owner of a directory root works in) may rename another user's directory there, though
# not delete what is in it.  Renamed to a trash, journal or temporary name, the victim's
# own next call must still leave it alone.

ATTACKER = 12345  # a third user (no passwd entry needed: root setresuid()s to it)

#: Names a victim's directory is renamed to; ``{uid}`` is the victim's.
PLANTED = {
    "trash": f"{TRASH_NAME}-{{uid}}",
    "lstmp": f".lstmp-{'0' * 16}-1",
    "stage": f".x.linkstrategy-stage-{'1' * 16}-2",
    "probe": f".linkstrategy-probe-{'2' * 16}-3",
    "journal-tmp": ".x.linkstrategy-txn-00000000",
    "journal": ".x.linkstrategy-txn",
    "upgrade": ".linkstrategy-upgrade.linkstrategy-txn",
}

#: The victim's next calls in the shared directory: every one that collects trash,
#: recovers journals or reaps temporaries there.  An hour is made to pass first (the
#: temporaries' grace), as the audit did by shifting the clock.
VICTIM_CALLS = """
import json
import linkstrategy
from linkstrategy import _owner
_owner.GRACE_NO_LOCK = _owner.GRACE_FILE = -1.0  # "an hour later"
shared, src = sys.argv[1], sys.argv[2]
foreign = []
linkstrategy.place(src, os.path.join(shared, "newpkg"))
linkstrategy.remove(os.path.join(shared, "unrelated"))
for call in (lambda: linkstrategy.replace(src, os.path.join(shared, "x")),
             lambda: linkstrategy.remove(os.path.join(shared, "x")),
             lambda: linkstrategy.upgrade(shared, {"y": src})):
    try:
        call()
    except OSError as e:  # a journal left alone is reported as an error here
        foreign.append(str(e))
for kw in ({}, {"recursive": True}):
    foreign += list(linkstrategy.gc(shared, **kw).foreign)
print(json.dumps(foreign))
"""


def _victims_directory(shared: Path, uid: int, mode: int) -> Path:
    d = shared / "data"
    code = """
    d = sys.argv[1]
    os.makedirs(os.path.join(d, "sub"))
    for p in ("precious", "sub/more"):
        with open(os.path.join(d, p), "w") as f:
            f.write("the victim's")
    os.chmod(d, int(sys.argv[2]))
    """
    res = run_child(code, str(d), str(mode), uid=uid)
    assert res.returncode == 0, res.stderr
    return d


#: With ``forged``, the one who renames first writes into the victim's (0777) directory
#: what would make it look made by the library: a lock file (free), a trash marker
#: naming the directory, a journal state.
FORGE = """
import json
d, kind = sys.argv[1], sys.argv[2]
def put(name, text=""):
    with open(os.path.join(d, name), "w") as f:
        f.write(text)
    os.chmod(os.path.join(d, name), 0o666)  # the victim may open it for writing, too
st = os.stat(d)
if kind == "trash":
    put(".linkstrategy-trash-marker", f"linkstrategy-trash {st.st_dev} {st.st_ino}\\n")
elif kind in ("lstmp", "stage", "probe"):
    put(".linkstrategy-lock")
else:
    put("lock")
    put("state", json.dumps({"version": 1, "dst": "x", "phase": "building", "old": None,
                             "new": None, "kind": "upgrade" if kind == "upgrade" else None,
                             "entries": []}))
"""


@pytest.mark.root
@pytest.mark.parametrize("kind", sorted(PLANTED))
@pytest.mark.parametrize("victim", ["user", "root", "user-forged"])
def test_a_victims_directory_renamed_to_a_linkstrategy_name_is_left_alone(
    sandbox: Path, kind: str, victim: str
) -> None:
    """races.md 1, 2a, 5: "user": nobody's directory in a shared 0777 directory (not
    sticky), renamed by a third user; "root": root's directory in nobody's directory,
    renamed by nobody (root working in a user's directory); "user-forged": nobody's
    directory is itself 0777, and the third user first writes into it a lock file, a
    trash marker or a journal state of its own.  The victim's place(), remove(),
    replace(), upgrade() and gc() there, an hour later, leave it whole."""
    need_root()
    uid = 0 if victim == "root" else NOBODY
    shared = sandbox / "shared"
    shared.mkdir()
    if victim != "root":
        os.chmod(shared, 0o777)
        renamer = ATTACKER
    else:
        os.chown(shared, NOBODY, NOBODY)
        renamer = NOBODY
    src = sandbox / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "m.py").write_text("m")
    subprocess.run(["chmod", "-R", "a+rX", str(src)], check=True)
    data = _victims_directory(shared, uid, 0o777 if victim == "user-forged" else 0o755)
    (shared / "unrelated").write_text("u")
    os.chown(shared / "unrelated", uid, uid)
    if victim == "user-forged":
        res = run_child(FORGE, str(data), kind, uid=renamer)
        assert res.returncode == 0, res.stderr
    want = digest(data)
    planted = shared / PLANTED[kind].format(uid=uid)
    res = run_child("os.rename(sys.argv[1], sys.argv[2])", str(data), str(planted), uid=renamer)
    assert res.returncode == 0, res.stderr
    res = run_child(VICTIM_CALLS, str(shared), str(src), uid=uid if uid else None)
    assert res.returncode == 0, res.stderr
    assert planted.is_dir() and digest(planted) == want, f"{kind}: the victim's tree was touched"
    foreign = json.loads(res.stdout)
    if kind in ("trash", "journal", "upgrade") and victim != "user-forged":  # reported
        assert [f for f in foreign if str(planted) in f], foreign


@pytest.mark.python_walk
def test_a_trash_without_its_marker_is_left_alone_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory named like the caller's trash, the caller's, mode 0700, with entries
    in the trash-entry format -- a trash of a version before the marker, or any
    directory of the caller's renamed -- is not a trash: never emptied, reported by
    gc, and a deferral does not use it (an error naming it)."""
    fake = tmp_path / TRASH_NAME
    (fake / "1000-1-abcdef-x").mkdir(parents=True)
    (fake / "1000-1-abcdef-x" / "f").write_text("kept")
    os.chmod(fake, 0o700)
    before = digest(tmp_path)
    collect_trash(tmp_path, min_age=0)
    g = gc(tmp_path, recursive=True)
    assert digest(tmp_path) == before
    assert [f for f in g.foreign if f.startswith(f"{fake}: ") and "marker" in f], g.foreign
    (tmp_path / "t" / "busy").mkdir(parents=True)
    real = R.os.rmdir

    def busy(name: Any, *a: Any, **kw: Any) -> None:
        if name == "busy":
            raise OSError(errno.EBUSY, "busy", name)
        real(name, *a, **kw)

    monkeypatch.setattr(R.os, "rmdir", busy)
    r = remove(tmp_path / "t", budget=0.02)
    monkeypatch.undo()
    assert not r.deferred and [e for e in r.errors if "nor move to trash" in e.reason], r
    assert digest(tmp_path, skip=tmp_path / "t") == before


@pytest.mark.parametrize(
    "flaw", ["mode", "no-marker", "other-inode", "marker-symlink", "big", "marker-of-another"]
)
def test_open_trash_needs_mode_0700_and_a_marker_naming_it(tmp_path: Path, flaw: str) -> None:
    """What makes a directory a trash, one flaw at a time; the real one passes."""
    if flaw == "marker-of-another" and not ROOT:
        pytest.skip("needs root to give the marker to another user")
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    real = make_trash(tmp_path / "a")
    fd = os.open(tmp_path / "a", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.close(TR.open_trash(fd, real.name, str(real)))
        marker = real / TR.MARKER_NAME
        if flaw == "mode":
            os.chmod(real, 0o755)
        elif flaw == "no-marker":
            marker.unlink()
        elif flaw == "other-inode":  # a marker copied from another trash
            marker.unlink()
            shutil.copy(make_trash(tmp_path / "b") / TR.MARKER_NAME, marker)
        elif flaw == "marker-of-another":
            os.chown(marker, NOBODY, NOBODY)
        elif flaw == "marker-symlink":
            os.rename(marker, tmp_path / "m")
            os.symlink(tmp_path / "m", marker)
        else:
            os.chmod(marker, 0o600)
            marker.write_text(marker.read_text() + " " * 300)
        with pytest.raises(RemoveError) as ei:
            TR.open_trash(fd, real.name, str(real))
        assert ei.value.filename == str(real) and "not a linkstrategy trash" in str(ei.value)
    finally:
        os.close(fd)


def test_trash_entries_not_in_the_entry_format_are_never_old() -> None:
    now = 2_000_000_000.0
    assert TR.trash_age("1000-1-abcdef-pkg", now) == now - 1000
    for name in ("data", "1000", "1000-1-abc-pkg", "1000-x-abcdef-pkg", TR.MARKER_NAME):
        assert TR.trash_age(name, now) is None, name
        assert not TR.is_trash_entry(name)


@pytest.mark.root
def test_root_leaves_the_directory_owners_trash_and_temporaries_alone(sandbox: Path) -> None:
    """In nobody's directory, nobody's own trash (really one) and nobody's dead
    temporary (free lock) are nobody's to collect, not root's: nobody could have moved
    into them a tree of root's it may not delete (root's files in nobody's venv)."""
    need_root()
    site = sandbox / "site"
    site.mkdir()
    os.chown(site, NOBODY, NOBODY)
    code = """
    from linkstrategy import _owner
    tmp = os.path.join(sys.argv[1], _owner.tmp_name(1))
    os.makedirs(os.path.join(tmp, "sub", "busy"))
    open(os.path.join(tmp, _owner.LOCK_NAME), "w").close()  # free: its maker is gone
    """
    res = run_child(code, str(site), uid=NOBODY)
    assert res.returncode == 0, res.stderr
    res = run_child(  # a deferral: nobody's real trash there, with its entry
        "os.makedirs(os.path.join(sys.argv[1], 'busy'))", str(site / "t"), uid=NOBODY
    )
    assert res.returncode == 0, res.stderr
    res = run_child(DEFER_CHILD, str(site / "t"), uid=NOBODY)
    assert res.returncode == 0 and json.loads(res.stdout)["deferred"], res.stderr
    tmp = next(n for n in os.listdir(site) if n.startswith(".lstmp-"))
    os.mkdir(site / tmp / "sub" / "rootpkg")  # root's tree, moved in by nobody
    (site / tmp / "sub" / "rootpkg" / "f").write_text("root's")
    before = digest(sandbox)
    g = gc(site, recursive=True)
    assert digest(sandbox) == before
    assert len(g.foreign) == 2, g.foreign


FIFO_STATE = """
import os, stat
j = os.path.join(sys.argv[1], ".linkstrategy-upgrade.linkstrategy-txn")
os.mkdir(j)
os.mkfifo(os.path.join(j, "state"))
"""


@pytest.mark.parametrize("planter", ["self", "other"])
def test_a_fifo_as_upgrade_state_does_not_block_remove(sandbox: Path, planter: str) -> None:
    """races.md, outside the class: remove() reads an upgrade journal's state before it
    removes an entry of that directory.  A FIFO there (planted by anyone in a sticky
    /tmp, or left in the caller's own journal) must not block it: opened O_NONBLOCK,
    checked to be a regular file of the caller's before a byte is read."""
    shared = sandbox / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    if planter == "other":
        need_root()
        res = run_child(FIFO_STATE, str(shared), uid=NOBODY)
    else:
        res = run_child(FIFO_STATE, str(shared))
    assert res.returncode == 0, res.stderr
    (shared / "f").write_text("f")
    code = """
    import linkstrategy
    print(linkstrategy.remove(os.path.join(sys.argv[1], "f")).ok)
    print(linkstrategy.remove(files=["f2"], root=sys.argv[1]).ok)
    """
    (shared / "f2").write_text("f")
    try:
        res = run_child(code, str(shared), timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("remove() blocked on the FIFO")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["True", "True"]
    assert stat.S_ISFIFO(
        os.lstat(shared / ".linkstrategy-upgrade.linkstrategy-txn" / "state").st_mode
    )


STATE_TMP_LINK = """
import json
site = sys.argv[1]
j = os.path.join(site, ".tool.linkstrategy-txn")
os.mkdir(j)
os.rename(os.path.join(site, "tool"), os.path.join(j, "state.tmp"))  # root's cache file
os.mkdir(os.path.join(j, "new"))
open(os.path.join(j, "lock"), "w").close()
st = os.lstat(os.path.join(j, "new"))
with open(os.path.join(j, "state"), "w") as f:
    json.dump({"version": 1, "dst": "tool", "phase": "swapping", "old": None,
               "new": [st.st_dev, st.st_ino]}, f)
"""


@pytest.mark.root
def test_root_never_writes_a_journal_state_into_a_planted_hardlink(sandbox: Path) -> None:
    """races.md 5a: root installs a file by hardlink from its read-only cache into
    nobody's directory; nobody moves that link into a journal it forges, as its
    state.tmp.  Root's gc() or remove() there must not write into the cache file."""
    need_root()
    cache = sandbox / "cache"
    cache.mkdir()
    (cache / "tool").write_text('print("genuine tool")\n')
    os.chmod(cache / "tool", 0o444)
    site = sandbox / "site"
    site.mkdir()
    os.chown(site, NOBODY, NOBODY)
    linkstrategy.place(cache / "tool", site / "tool", strategy="hardlink")
    res = run_child(STATE_TMP_LINK, str(site), uid=NOBODY)
    assert res.returncode == 0, res.stderr
    before = digest(sandbox)
    g = gc(site)
    remove(site / "tool")
    assert (cache / "tool").read_text() == 'print("genuine tool")\n'
    assert digest(sandbox) == before
    assert [f for f in g.foreign if ".tool.linkstrategy-txn" in f], g.foreign


def test_journal_state_is_never_written_into_an_existing_state_tmp(tmp_path: Path) -> None:
    """The same, in a journal of the caller's own: a state.tmp already there (a link to
    another file) is unlinked, never opened for writing."""
    other = tmp_path / "other"
    other.write_text("another file's content")
    j = tmp_path / "j"
    j.mkdir()
    os.link(other, j / "state.tmp")
    jfd = os.open(j, os.O_RDONLY | os.O_DIRECTORY)
    try:
        TX._write_state(jfd, {"version": 1, "phase": "building"})
    finally:
        os.close(jfd)
    assert other.read_text() == "another file's content" and other.stat().st_nlink == 1
    assert json.loads((j / "state").read_text())["phase"] == "building"


FORGED_ROLLBACK = """
import json
site = sys.argv[1]
j = os.path.join(site, ".x.linkstrategy-txn")
os.makedirs(os.path.join(j, "old"))
open(os.path.join(j, "lock"), "w").close()
st = os.lstat(os.path.join(j, "old"))
with open(os.path.join(j, "state"), "w") as f:
    json.dump({"version": 1, "dst": "x", "phase": "building", "old": [st.st_dev, st.st_ino],
               "new": None}, f)
"""


@pytest.mark.root
def test_root_does_not_carry_out_a_journal_forged_by_the_directorys_owner(sandbox: Path) -> None:
    """races.md 5b: nobody (owner of site) forges a "building" journal for root's site/x
    whose "old" is a directory in the journal: carried out, root's x would be parked in
    nobody's journal and deleted with it."""
    need_root()
    site = sandbox / "site"
    site.mkdir()
    os.chown(site, NOBODY, NOBODY)
    (site / "x").mkdir()
    (site / "x" / "data").write_text("root's data")
    res = run_child(FORGED_ROLLBACK, str(site), uid=NOBODY)
    assert res.returncode == 0, res.stderr
    src = sandbox / "src"
    src.mkdir()
    before = digest(sandbox)
    g = gc(site)
    assert digest(sandbox) == before and (site / "x" / "data").read_text() == "root's data"
    assert [f for f in g.foreign if "not the caller's" in f], g.foreign
    with pytest.raises(RemoveError):  # replace() of x recovers x's journal first
        replace(src, site / "x")
    assert digest(sandbox) == before


@pytest.mark.parametrize("name", [".x.linkstrategy-txn", ".x.linkstrategy-txn-0badcafe"])
def test_a_journal_without_its_lock_file_is_left_alone(tmp_path: Path, name: str) -> None:
    """races.md 2a: a directory of the caller's under a journal's name, with no lock
    file, is no journal (or one being made): gc, remove() and replace() leave it."""
    d = tmp_path / name
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "f").write_text("mine")
    (d / "state").write_text("{}")
    before = digest(tmp_path)
    g = gc(tmp_path)
    gc(tmp_path / "x")
    assert digest(tmp_path) == before
    if name.endswith(".linkstrategy-txn"):
        assert [f for f in g.foreign if "no lock file" in f], g.foreign
        assert remove(tmp_path / "x").ok  # (nothing there; the journal stays)
    assert digest(tmp_path) == before


def test_an_empty_journal_without_its_lock_file_goes(tmp_path: Path) -> None:
    """A journal whose deletion was cut short between its lock file and its rmdir:
    empty, it blocks no replace() of that name (rmdir takes nothing else)."""
    (tmp_path / ".x.linkstrategy-txn").mkdir()
    (tmp_path / "src").mkdir()
    replace(tmp_path / "src", tmp_path / "x")
    assert sorted(os.listdir(tmp_path)) == ["src", "x"]


@pytest.mark.python_walk
def test_a_busy_directory_is_deferred_only_as_the_inode_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """races.md 7: a journal (or staging directory) still busy is moved into the trash
    whole -- and if another directory was renamed to its name in between, that one goes
    back out at once, never left in the trash to be emptied with it."""
    own = tmp_path / "own"
    (own / "busy").mkdir(parents=True)
    st = os.lstat(own)
    real_rmdir = R.os.rmdir

    def busy(name: Any, *a: Any, **kw: Any) -> None:
        if name == "busy":
            raise OSError(errno.EBUSY, "busy", name)
        real_rmdir(name, *a, **kw)

    real_open = TR.open_trash
    victim: list[Path] = []

    def swap_then_open(*a: Any, **kw: Any) -> int:
        if not victim:  # between the inode check and the rename into the trash
            os.rename(own, tmp_path / "own.moved")
            (own / "sub").mkdir(parents=True)
            (own / "sub" / "precious").write_text("victim")
            victim.append(own)
        return real_open(*a, **kw)

    monkeypatch.setattr(R.os, "rmdir", busy)
    monkeypatch.setattr(TR, "open_trash", swap_then_open)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        r = TR.remove_own(fd, str(tmp_path), "own", (st.st_dev, st.st_ino), budget=0.02)
    finally:
        os.close(fd)
    monkeypatch.undo()
    assert not r.deferred and [e for e in r.errors if e.errno == errno.ESTALE], r
    assert (own / "sub" / "precious").read_text() == "victim"
    trash = tmp_path / TRASH_NAME
    assert not trash.exists() or os.listdir(trash) == [TR.MARKER_NAME]
