"""remove(files=..., root=...): an uninstall from a RECORD, and check=True."""

from __future__ import annotations

import errno
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import linkstrategy
import linkstrategy._remove as R
from linkstrategy import InvalidArgument, RemoveError


def venv(tmp_path: Path) -> tuple[Path, list[str]]:
    """A site-packages with package a (its namespace dir shared with b), a script in
    bin/ and a dist-info; returns site and a's RECORD paths."""
    site = tmp_path / "lib" / "site-packages"
    files = {
        "google/a/__init__.py": "a",
        "google/a/sub/mod.py": "a",
        "a-1.0.dist-info/METADATA": "a",
        "a-1.0.dist-info/RECORD": "a",
        "google/b/__init__.py": "b",
        "b-1.0.dist-info/RECORD": "b",
    }
    for rel, text in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "a-tool").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "b-tool").write_text("#!/bin/sh\n")
    (site / "google" / "a" / "link").symlink_to("__init__.py")
    record = [
        "google/a/__init__.py",
        "google/a/sub/mod.py",
        "google/a/link",
        "./google/a/__init__.py",  # sloppy duplicate
        "a-1.0.dist-info/METADATA",
        "a-1.0.dist-info/RECORD",
        "../../bin/a-tool",
    ]
    return site, record


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_uninstall_by_record(tmp_path: Path) -> None:
    site, record = venv(tmp_path)
    r = linkstrategy.remove(
        files=record, root=site, within=tmp_path, last=["a-1.0.dist-info"], check=True
    )
    assert r.ok
    assert tree(tmp_path) == {
        "lib", "lib/site-packages", "lib/site-packages/google", "lib/site-packages/google/b",
        "lib/site-packages/google/b/__init__.py", "lib/site-packages/b-1.0.dist-info",
        "lib/site-packages/b-1.0.dist-info/RECORD", "bin", "bin/b-tool",
    }  # fmt: skip


def test_metadata_stays_when_a_listed_file_cannot_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure in the files keeps the dist-info (it still describes what is left);
    check=True raises it."""
    site, record = venv(tmp_path)
    real = os.unlink

    def unlink(path: str, *, dir_fd: int | None = None) -> None:
        if path == "mod.py":
            raise OSError(errno.EIO, "injected")
        real(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", unlink)
    r = linkstrategy.remove(files=record, root=site, within=tmp_path, last=["a-1.0.dist-info"])
    assert not r.ok and (site / "a-1.0.dist-info" / "RECORD").exists()
    with pytest.raises(RemoveError) as ei:
        linkstrategy.remove(
            files=record, root=site, within=tmp_path, last=["a-1.0.dist-info"], check=True
        )
    assert ei.value.errno == errno.EIO and "mod.py" in str(ei.value)
    assert (site / "a-1.0.dist-info" / "RECORD").exists()


@pytest.mark.parametrize("entry", ["google/../../x", "/etc/passwd", "", "a/../b"])
def test_entries_that_leave_the_record_shape_are_refused(tmp_path: Path, entry: str) -> None:
    site, record = venv(tmp_path)
    before = tree(tmp_path)
    with pytest.raises(InvalidArgument):
        linkstrategy.remove(files=[*record, entry], root=site, within=tmp_path)
    assert tree(tmp_path) == before


def test_a_directory_in_the_list_is_refused_before_anything_goes(tmp_path: Path) -> None:
    site, record = venv(tmp_path)
    before = tree(tmp_path)
    with pytest.raises(InvalidArgument) as ei:
        linkstrategy.remove(files=[*record, "google"], root=site, within=tmp_path)
    assert ei.value.errno == errno.EISDIR
    assert tree(tmp_path) == before


def test_a_symlinked_directory_in_an_entry_is_not_followed(tmp_path: Path) -> None:
    """google/a swapped for a symlink to elsewhere: refused (ELOOP) before anything is
    removed; the names there stay."""
    site, record = venv(tmp_path)
    other = tmp_path / "other"
    (other / "sub").mkdir(parents=True)
    (other / "__init__.py").write_text("keep")
    (other / "sub" / "mod.py").write_text("keep")
    import shutil

    shutil.rmtree(site / "google" / "a")
    (site / "google" / "a").symlink_to(other)
    before = tree(tmp_path)
    with pytest.raises(RemoveError) as ei:  # refused before anything is touched
        linkstrategy.remove(files=record, root=site, within=tmp_path, last=["a-1.0.dist-info"])
    assert ei.value.errno == errno.ELOOP
    assert tree(tmp_path) == before
    assert (other / "__init__.py").read_text() == "keep"
    assert (other / "sub" / "mod.py").read_text() == "keep"


def test_files_needs_root_and_no_paths(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        linkstrategy.remove(files=["x"])
    with pytest.raises(InvalidArgument):
        linkstrategy.remove(tmp_path / "x", files=["x"], root=tmp_path)
    with pytest.raises(InvalidArgument):
        linkstrategy.remove(tmp_path / "x", root=tmp_path)


# -- entries climb no higher than within= (the environment) ----------------------------------


def real_venv(tmp_path: Path) -> tuple[Path, Path]:
    """A venv's layout: (venv, site) with site = venv/lib/python3.X/site-packages, a
    package with a script in venv/bin, and a victim file beside the venv."""
    venv = tmp_path / "venv"
    site = venv / "lib" / "python3.12" / "site-packages"
    (site / "pkg").mkdir(parents=True)
    (site / "pkg" / "__init__.py").write_text("p")
    (venv / "bin").mkdir()
    (venv / "bin" / "tool").write_text("#!/bin/sh\n")
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "important").write_text("keep")
    return venv, site


@pytest.mark.parametrize("within", ["default", "venv"])
def test_an_entry_climbing_out_of_within_is_refused_before_anything_goes(
    tmp_path: Path, within: str
) -> None:
    """A RECORD is a wheel's data: ``../../../../victim/important`` must not delete a file
    outside the environment (by default outside ``root`` itself)."""
    venv, site = real_venv(tmp_path)
    kw = {"within": venv} if within == "venv" else {}
    escape = "../../../../victim/important" if within == "venv" else "../../../bin/tool"
    before = tree(tmp_path)
    with pytest.raises(InvalidArgument) as ei:
        linkstrategy.remove(files=["pkg/__init__.py", escape], root=site, **kw)  # type: ignore[arg-type]
    assert ei.value.errno == errno.EINVAL and ei.value.filename == escape
    assert tree(tmp_path) == before


def test_scripts_in_bin_go_with_within_the_venv(tmp_path: Path) -> None:
    venv, site = real_venv(tmp_path)
    record = ["pkg/__init__.py", "../../../bin/tool", "../site-packages/pkg/gone.py"]
    r = linkstrategy.remove(files=record, root=site, within=venv, check=True)
    assert r.ok and r.removed == 3  # __init__.py, bin/tool and the emptied pkg/
    assert not (venv / "bin" / "tool").exists() and not (site / "pkg").exists()
    assert (venv / "bin").is_dir() and (tmp_path / "victim" / "important").read_text() == "keep"


def test_a_symlinked_directory_on_the_way_to_a_script_is_refused(tmp_path: Path) -> None:
    """venv/bin a symlink to a directory outside: the script is not looked for there, and
    the call is refused (ELOOP) before anything is removed."""
    venv, site = real_venv(tmp_path)
    (venv / "bin" / "tool").unlink()
    (venv / "bin").rmdir()
    (tmp_path / "victim" / "tool").write_text("keep")
    (venv / "bin").symlink_to(tmp_path / "victim")
    before = tree(tmp_path)
    with pytest.raises(RemoveError) as ei:
        linkstrategy.remove(files=["pkg/__init__.py", "../../../bin/tool"], root=site, within=venv)
    assert ei.value.errno == errno.ELOOP
    assert tree(tmp_path) == before


def test_root_must_be_inside_within_as_the_kernel_resolves_it(tmp_path: Path) -> None:
    """``root`` reached through a symlink that leads out of ``within``: refused, though
    the path as written is below ``within``; nothing removed."""
    venv, site = real_venv(tmp_path)
    outside = tmp_path / "victim" / "site"
    outside.mkdir()
    (outside / "x.py").write_text("keep")
    (venv / "lib" / "elsewhere").symlink_to(outside)
    before = tree(tmp_path)
    with pytest.raises(InvalidArgument) as ei:
        linkstrategy.remove(files=["x.py"], root=venv / "lib" / "elsewhere", within=venv)
    assert ei.value.errno == errno.EINVAL and "within" in str(ei.value)
    with pytest.raises(InvalidArgument):
        linkstrategy.remove(files=["pkg/__init__.py"], root=site, within=site / "pkg")
    assert tree(tmp_path) == before


def test_root_moved_out_of_within_while_it_is_checked_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right after root's real path is read, root is moved out of ``within`` and another
    directory takes its name: the path is inside, root is not -- told by its inode."""
    venv, site = real_venv(tmp_path)
    real = R.fd_path

    def fd_path(fd: int, fallback: str) -> str:
        p = real(fd, fallback)
        if p == str(site):
            os.rename(site, tmp_path / "victim" / "site")
            (site / "pkg").mkdir(parents=True)
        return p

    monkeypatch.setattr(R, "fd_path", fd_path)
    with pytest.raises(InvalidArgument) as ei:
        linkstrategy.remove(files=["pkg/__init__.py"], root=site, within=venv)
    assert "within" in str(ei.value)
    assert (tmp_path / "victim" / "site" / "pkg" / "__init__.py").read_text() == "p"


def test_within_goes_with_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        linkstrategy.remove(tmp_path / "x", within=tmp_path)


# -- a symlink as an entry's directory is refused, never taken for "missing" -----------------


@pytest.mark.parametrize("resolve", ["openat2", "per-component"])
@pytest.mark.parametrize("entry", ["lnk/x.py", "pkg/lnk/x.py", "lnk/sub/x.py"])
def test_a_symlink_as_an_entrys_directory_refuses_the_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: str, resolve: str
) -> None:
    """``lnk/x.py`` with ``lnk`` a symlink to a directory: O_NOFOLLOW|O_DIRECTORY says
    ENOTDIR for it, as for a file; it is told apart and refused (ELOOP) before anything
    is removed, as the docs promise, on both ways of opening beneath a directory."""
    from linkstrategy._sys import _linux

    if resolve == "per-component":
        monkeypatch.setattr(_linux, "_openat2", False)
    elif not _linux._load_openat2():
        pytest.skip("no openat2 on this kernel")
    site = tmp_path / "site"
    (site / "pkg").mkdir(parents=True)
    (site / "pkg" / "a.py").write_text("a")
    (tmp_path / "outside" / "sub").mkdir(parents=True)
    (tmp_path / "outside" / "x.py").write_text("o")
    (tmp_path / "outside" / "sub" / "x.py").write_text("o")
    (site / "lnk").symlink_to("../outside")
    (site / "pkg" / "lnk").symlink_to("../../outside")
    before = tree(tmp_path)
    with pytest.raises(RemoveError) as ei:
        linkstrategy.remove(files=["pkg/a.py", entry], root=site, check=True)
    assert ei.value.errno == errno.ELOOP
    assert tree(tmp_path) == before


def test_a_file_where_an_entrys_directory_should_be_is_a_missing_entry(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "pkg").mkdir(parents=True)
    (site / "pkg" / "a.py").write_text("a")
    (site / "notadir").write_text("f")
    r = linkstrategy.remove(files=["pkg/a.py", "notadir/x.py"], root=site, check=True)
    assert r.ok and tree(site) == {"notadir"}


# -- a listed file swapped, after its check, for another user's directory ---------------------
# -- bytecode the imports wrote ---------------------------------------------------------

# A package as an installer leaves it after use: every module imported by a real
# interpreter with its bytecode written (PYTHONDONTWRITEBYTECODE unset), plain, -O and
# -OO, so __pycache__ holds <stem>.cpython-3XY.pyc, .opt-1.pyc and .opt-2.pyc.
_PKG_FILES = {
    "pkg/__init__.py": "from . import core\n",
    "pkg/core.py": "X = 1\n",
    "pkg/deep/__init__.py": "",
    "pkg/deep/inner.py": "Y = 2\n",
    "solo.py": "Z = 3\n",  # a top-level module: its bytecode in site-packages/__pycache__
    "nsp/mine.py": "M = 4\n",  # a namespace directory shared with another package
    "pkg-1.0.dist-info/METADATA": "Name: pkg\n",
    "pkg-1.0.dist-info/RECORD": "",
}
_OTHER_FILES = {"nsp/theirs.py": "T = 5\n", "keep.py": "K = 6\n", "pkg2/zz.py": "W = 7\n"}
_IMPORTS = "import pkg, pkg.deep.inner, solo, nsp.mine, nsp.theirs, keep, pkg2.zz"


def _imported_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    for rel, text in {**_PKG_FILES, **_OTHER_FILES}.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
    }
    env["PYTHONPATH"] = str(site)
    for opt in ([], ["-O"], ["-OO"]):
        subprocess.run([sys.executable, *opt, "-c", _IMPORTS], check=True, env=env, cwd=tmp_path)
    return site


def test_uninstall_removes_the_bytecode_imports_wrote(tmp_path: Path) -> None:
    """After the package was imported, an uninstall by its RECORD leaves nothing of it:
    its modules' bytecode (in no RECORD) goes with them, and so do the directories they
    leave empty.  It left ``pkg/`` holding ``__pycache__`` (which then imports as an
    empty namespace package) and ``pkg/deep/``.  Other modules' bytecode stays: in the
    shared ``nsp/``, in site-packages' own ``__pycache__``, and in a directory whose
    module the RECORD does not list."""
    site = _imported_site(tmp_path)
    tag = sys.implementation.cache_tag
    assert (site / "pkg" / "__pycache__" / f"core.{tag}.opt-2.pyc").is_file()
    before = tree(site)
    record = [rel for rel in _PKG_FILES]
    r = linkstrategy.remove(files=record, root=site, last=["pkg-1.0.dist-info"], check=True)
    left = tree(site)
    assert not [
        p for p in left if p.startswith(("pkg/", "pkg-1.0")) or p in ("pkg", "pkg-1.0.dist-info")
    ]
    theirs = {p for p in before if "theirs" in p or "keep" in p or p.startswith("pkg2")}
    assert len(theirs) == 3 + 3 * 3 + 2  # 3 sources, 3 pycs each, pkg2/ and its __pycache__
    assert theirs <= left
    assert not [p for p in left if "solo" in p or "mine" in p]
    assert {"nsp/__pycache__", "__pycache__"} <= left
    assert r.removed == len(before - left)


def test_bytecode_of_other_names_and_odd_entries_stay(tmp_path: Path) -> None:
    """Only ``<stem>.<tag>[.opt-N].pyc`` of a listed ``<stem>.py`` goes: not the
    bytecode of ``a.b.py`` when ``a.py`` is listed, not a directory named like
    bytecode, and nothing through a ``__pycache__`` that is a symlink (its target's
    files stay; the package directory then stays too, and no error is raised)."""
    site = tmp_path / "site"
    for d in ("p", "q"):
        (site / d).mkdir(parents=True)
        (site / d / "a.py").write_text("")
    (site / "p" / "__pycache__").mkdir()
    for name in (
        "a.cpython-311.pyc",
        "a.pypy310.opt-1.pyc",
        "a.b.cpython-311.pyc",
        "ab.cpython-311.pyc",
        "a.pyc",
    ):
        (site / "p" / "__pycache__" / name).write_text("")
    (site / "p" / "__pycache__" / "a.cpython-312.pyc").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.cpython-311.pyc").write_text("not the package's")
    (site / "q" / "__pycache__").symlink_to(outside)
    r = linkstrategy.remove(files=["p/a.py", "q/a.py"], root=site, check=True)
    assert sorted(os.listdir(site / "p" / "__pycache__")) == [
        "a.b.cpython-311.pyc",
        "a.cpython-312.pyc",
        "a.pyc",
        "ab.cpython-311.pyc",
    ]
    assert (outside / "a.cpython-311.pyc").read_text() == "not the package's"
    assert os.listdir(site / "q") == ["__pycache__"] and r.errors == ()


# The victim (lsuser) uninstalls from a shared, non-sticky 0777 directory; the attacker
# (nobody) may rename there but may not delete lsuser's data.  A hook in the victim's
# process asks the attacker's process for its swap at one exact point and waits for it.


# tests/run.sh creates this user (as root, before either run)
_VICTIM = os.environ.get("LINKSTRATEGY_TEST_USER", "lsuser")


def _ids(name: str) -> tuple[int, int]:
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        pytest.skip(f"needs the user {name}")
    return pw.pw_uid, pw.pw_gid


def _become(ids: tuple[int, int]) -> None:
    os.setgroups([])
    os.setresgid(ids[1], ids[1], ids[1])
    os.setresuid(ids[0], ids[0], ids[0])


class Attacker:
    """A process running as ``nobody`` that does ``swap`` once when called, and the
    caller waits until it is done (or failed: raised in the caller)."""

    def __init__(self, swap: Callable[[], None]) -> None:
        ids = _ids("nobody")
        self.go_r, self.go_w = os.pipe()
        self.done_r, self.done_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover (the child)
            msg = b"ok"
            try:
                _become(ids)
                if os.read(self.go_r, 2) == b"go":
                    swap()
            except BaseException as e:
                msg = repr(e).encode()
            os.write(self.done_w, msg)
            os._exit(0)
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        os.write(self.go_w, b"go")
        msg = os.read(self.done_r, 4096)
        assert msg == b"ok", f"the attacker's swap failed: {msg!r}"

    def close(self) -> None:
        os.close(self.go_w)
        os.waitpid(self.pid, 0)
        for fd in (self.go_r, self.done_r, self.done_w):
            os.close(fd)


def as_victim(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``fn()`` in a forked child running as lsuser; its JSON-able result."""
    ids = _ids(_VICTIM)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            _become(ids)
            out = json.dumps(fn())
        except BaseException as e:
            out = json.dumps({"raised": repr(e)})
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return dict(json.loads(data))


@pytest.fixture
def shared() -> Iterator[Path]:
    """``<sandbox>/site``: a shared (0777, not sticky) directory holding lsuser's package
    (pkg/a.py, zz_last.py, pkg-1.0.dist-info/RECORD) and lsuser's precious data."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the victim (lsuser) and the attacker (nobody) are users")
    lsuser = _ids(_VICTIM)
    _ids("nobody")
    d = Path(tempfile.mkdtemp(prefix="ls-uninstall-", dir="/tmp"))
    os.chmod(d, 0o755)
    site = d / "site"
    for rel in ("pkg/a.py", "zz_last.py", "pkg-1.0.dist-info/RECORD", "lsdata/precious"):
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text("precious\n" if rel.startswith("lsdata") else "x\n")
    subprocess.run(["chown", "-R", f"{lsuser[0]}:{lsuser[1]}", str(site)], check=True)
    os.chmod(site, 0o777)  # shared, NOT sticky: anyone may rename here
    try:
        yield site
    finally:
        shutil.rmtree(d)


def _swap_in_lsdata(site: Path, name: str) -> Callable[[], None]:
    """The attacker's move: ``name`` out of the way, lsuser's lsdata renamed to it (a
    same-directory rename, allowed in a non-sticky directory it may write)."""

    def swap() -> None:
        target = site / name
        if target.is_dir():
            os.rename(target, site / f"{name}.moved")
        else:
            os.unlink(target)
        os.rename(site / "lsdata", target)

    return swap


def victim_removes(attacker: Attacker, **kw: Any) -> dict[str, Any]:
    """lsuser's ``remove(**kw)`` (a forked child): its report, and how many swaps the
    attacker made on its hook's call (counted in the child)."""
    try:
        rep = as_victim(lambda: {**linkstrategy.remove(**kw).to_json(), "swaps": attacker.calls})
    finally:
        attacker.close()
    assert "raised" not in rep, rep
    assert rep["swaps"] == 1, rep
    return rep


@pytest.mark.root
@pytest.mark.parametrize("when", ["after-the-check", "just-before-the-unlink"])
def test_a_listed_file_swapped_for_another_users_directory_is_not_walked(
    shared: Path, monkeypatch: pytest.MonkeyPatch, remove_walk: str, when: str
) -> None:
    """Finding 3: zz_last.py is checked (a file), then the attacker swaps in lsuser's own
    data directory, which nobody may not delete.  The uninstall unlinks entries only: the
    directory stays, whole, and the report names it (EISDIR)."""
    site = shared
    attacker = Attacker(_swap_in_lsdata(site, "zz_last.py"))
    if when == "after-the-check":  # between open_roots() and the passes
        real_passes = R.passes

        def passes(run: Any, roots: list[Any]) -> None:
            if not attacker.calls:
                attacker()
            real_passes(run, roots)

        monkeypatch.setattr(R, "passes", passes)
    else:  # in the pass, at the unlink itself (no statx before it: unlink never walks)
        real_unlink = os.unlink

        def unlink(name: Any, *a: Any, **kw: Any) -> None:
            if name == "zz_last.py" and not attacker.calls:
                attacker()
            real_unlink(name, *a, **kw)

        monkeypatch.setattr(os, "unlink", unlink)
    rep = victim_removes(attacker, files=["pkg/a.py", "zz_last.py"], root=site)
    assert (site / "zz_last.py" / "precious").read_text() == "precious\n"
    assert os.listdir(site / "pkg") == []  # the rest went (pkg/ stays: an error)
    errs = rep["errors"]
    assert [(e["path"], e["errno"]) for e in errs] == [(str(site / "zz_last.py"), errno.EISDIR)], (
        rep
    )


@pytest.mark.root
@pytest.mark.python_walk
def test_a_busy_listed_file_swapped_for_a_directory_is_not_deferred(
    shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listed file still busy after the budget is not renamed into the trash: the name
    may hold another user's directory by then, and the trash is emptied later."""
    site = shared
    attacker = Attacker(_swap_in_lsdata(site, "zz_last.py"))
    real = os.unlink

    def unlink(name: Any, *a: Any, **kw: Any) -> None:
        if name == "zz_last.py":
            if not attacker.calls:
                attacker()
            raise OSError(errno.EBUSY, "busy", name)
        real(name, *a, **kw)

    monkeypatch.setattr(os, "unlink", unlink)
    rep = victim_removes(attacker, files=["pkg/a.py", "zz_last.py"], root=site, budget=0)
    assert (site / "zz_last.py" / "precious").read_text() == "precious\n"
    assert rep["deferred"] == [] and [e["errno"] for e in rep["errors"]] == [errno.EBUSY], rep


@pytest.mark.root
def test_a_last_entry_swapped_for_another_users_directory_is_left_alone(
    shared: Path, monkeypatch: pytest.MonkeyPatch, remove_walk: str
) -> None:
    """``last=["pkg-1.0.dist-info"]`` is pinned to its inode when the call begins: swapped
    for lsuser's data before its turn, the data stays whole and the report says so."""
    site = shared
    attacker = Attacker(_swap_in_lsdata(site, "pkg-1.0.dist-info"))
    real_passes = R.passes

    def passes(run: Any, roots: list[Any]) -> None:
        if any(r.name == "pkg-1.0.dist-info" for r in roots) and not attacker.calls:
            attacker()
        real_passes(run, roots)

    monkeypatch.setattr(R, "passes", passes)
    record = ["pkg/a.py", "zz_last.py", "pkg-1.0.dist-info/RECORD"]
    rep = victim_removes(attacker, files=record, root=site, last=["pkg-1.0.dist-info"], workers=1)
    assert (site / "pkg-1.0.dist-info" / "precious").read_text() == "precious\n"
    assert (site / "pkg-1.0.dist-info.moved" / "RECORD").exists()
    assert not (site / "pkg").exists() and not (site / "zz_last.py").exists()
    errs = [(e["path"], e["errno"]) for e in rep["errors"]]
    assert errs == [(str(site / "pkg-1.0.dist-info"), errno.ESTALE)], rep


@pytest.mark.root
def test_a_directory_left_empty_is_only_rmdired(
    shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pkg/ (emptied by the uninstall) swapped for lsuser's data before the empty
    directories are pruned: rmdir, never a walk, so the data stays."""
    site = shared
    attacker = Attacker(_swap_in_lsdata(site, "pkg"))
    real = R._remove_emptied

    def remove_emptied(*a: Any) -> None:
        attacker()
        real(*a)

    monkeypatch.setattr(R, "_remove_emptied", remove_emptied)
    rep = victim_removes(attacker, files=["pkg/a.py"], root=site)
    assert (site / "pkg" / "precious").read_text() == "precious\n"
    assert rep["errors"] == [], rep
