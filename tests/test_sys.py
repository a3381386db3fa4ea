"""The platform package ``linkstrategy._sys``: one switch, every ctypes binding typed,
and each of its functions on real filesystems.

* No module outside ``_sys`` imports ctypes, tests ``sys.platform`` or picks a
  platform module itself (a source scan).
* Every libc function ``_sys._linux`` binds has its argument and result types
  declared, through the one door ``_bind``; importing the library loads no ctypes.
* ``_linux`` and ``_darwin`` export the same functions with the same signatures.
* fs_magic, exchange, clone_file, statx, open_beneath, copy_fd, fd_path and the mount
  table, each on the filesystems where it matters.
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import errno
import inspect
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from linkstrategy import _sys
from linkstrategy._mounts import parse_mount_table
from linkstrategy._sys import _common, _linux

SRC = Path(__file__).resolve().parent.parent / "src" / "linkstrategy"
SYS = SRC / "_sys"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux _sys")


@pytest.fixture
def dfd(tmp_path: Path) -> Iterator[int]:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield fd
    finally:
        os.close(fd)


def _open_dir(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY)


# -- the shape: one switch, ctypes inside _sys only ----------------------------------------


def _modules_outside_sys() -> list[Path]:
    return [p for p in sorted(SRC.rglob("*.py")) if SYS not in p.parents]


def _platform_uses(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in ("ctypes", "platform")]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if mod.split(".")[0] in ("ctypes", "platform") or mod.startswith(
                ("_sys._linux", "_sys._darwin", "_sys._common")
            ):
                found.append(f"from {'.' * node.level}{mod} import ...")
            if node.level and mod == "_sys":
                found += [
                    f"from ._sys import {a.name}"
                    for a in node.names
                    if a.name in ("_linux", "_darwin", "_common")
                ]
        elif (
            isinstance(node, ast.Attribute)
            and node.attr == "platform"
            and isinstance(node.value, ast.Name)
            and node.value.id == "sys"
        ):
            found.append(f"sys.platform (line {node.lineno})")
    return found


def test_no_module_outside_sys_imports_ctypes_or_tests_the_platform() -> None:
    modules = _modules_outside_sys()
    assert len(modules) > 10 and SRC / "_place.py" in modules
    offences = {
        str(p.relative_to(SRC)): uses
        for p in modules
        if (uses := _platform_uses(ast.parse(p.read_text(), str(p))))
    }
    assert offences == {}


def test_the_scan_sees_what_it_forbids() -> None:
    """The scan itself: each forbidden form is found in a snippet."""
    for code in (
        "import ctypes",
        "import ctypes.util",
        "from ctypes import CDLL",
        "import platform",
        "if sys.platform == 'darwin': pass",
        "from ._sys._linux import statx",
        "from ._sys import _linux",
    ):
        assert _platform_uses(ast.parse(code)), code
    assert not _platform_uses(ast.parse("from ._sys import statx\nimport sys\nsys.argv"))


def test_linux_and_darwin_never_import_each_other() -> None:
    for name, other in (("_linux", "_darwin"), ("_darwin", "_linux")):
        tree = ast.parse((SYS / f"{name}.py").read_text())
        mods = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)] + [
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
        ]
        assert not [m for m in mods if other in m], name


def _bind_everything() -> None:
    """Call each function of _linux that binds a libc function on first use."""
    _linux._load_openat2()
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        _linux.statx(fd, "")
        _linux.fs_magic(fd)
        with contextlib.suppress(FileNotFoundError):
            _linux.exchange(fd, ".linkstrategy-no-such-a", fd, ".linkstrategy-no-such-b")
    finally:
        os.close(fd)


#: libc function -> (restype, argtypes) as the C prototypes say
_SIGNATURES = {
    "syscall": ("c_long", ["c_long", "c_int", "c_char_p", "c_void_p", "c_size_t"]),
    "statx": ("c_int", ["c_int", "c_char_p", "c_int", "c_uint", "c_char_p"]),
    "renameat2": ("c_int", ["c_int", "c_char_p", "c_int", "c_char_p", "c_uint"]),
    "fstatfs": ("c_int", ["c_int", "c_char_p"]),
}


def test_every_linux_binding_declares_argtypes_and_restype() -> None:
    _bind_everything()
    libc = ctypes.CDLL(None)
    assert set(_linux.BOUND) == {n for n in _SIGNATURES if hasattr(libc, n)}  # glibc < 2.28: fewer
    for name, fn in _linux.BOUND.items():
        restype, argtypes = _SIGNATURES[name]
        assert fn.argtypes is not None, name
        assert list(fn.argtypes) == [getattr(ctypes, t) for t in argtypes], name
        assert fn.restype is getattr(ctypes, restype), name
    # every function object the module holds is one of those
    held = [v for v in vars(_linux).values() if isinstance(v, ctypes._CFuncPtr)]
    assert held and all(any(v is b for b in _linux.BOUND.values()) for v in held)


@pytest.mark.parametrize("module", ["_linux", "_darwin"])
def test_the_library_handle_is_touched_by_bind_only(module: str) -> None:
    """ctypes' library handle (``_libc``) and ``CDLL`` appear in ``_bind`` alone, so
    no function can be bound without its signature."""
    tree = ast.parse((SYS / f"{module}.py").read_text())
    bind = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_bind")
    inside = {id(n) for n in ast.walk(bind)}
    outside = [
        node.lineno
        for node in ast.walk(tree)
        if id(node) not in inside
        and (
            (isinstance(node, ast.Name) and node.id == "_libc")
            or (isinstance(node, ast.Attribute) and node.attr in ("CDLL", "PyDLL", "LibraryLoader"))
        )
        and not (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store))
    ]
    # the module-level `_libc: Any = None` is an AnnAssign target (Store): allowed
    assert outside == [], f"{module}.py lines {outside}"


def test_importing_the_library_loads_no_ctypes() -> None:
    code = (
        "import sys\n"
        "import linkstrategy._place, linkstrategy._remove, linkstrategy._txn, linkstrategy._cli\n"
        "import linkstrategy._sys\n"
        "print('ctypes' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_linux_and_darwin_export_the_same_functions() -> None:
    """The names ``_sys`` takes from the platform module exist in both, with the same
    signatures (importing ``_darwin`` here binds nothing: every binding is lazy)."""
    from linkstrategy._sys import _darwin

    tree = ast.parse((SYS / "__init__.py").read_text())
    picked = [
        sorted(a.name for a in n.names)
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module in ("_linux", "_darwin")
    ]
    assert len(picked) == 2 and picked[0] == picked[1]
    for name in picked[0]:
        a, b = getattr(_linux, name), getattr(_darwin, name)
        if callable(a):
            assert inspect.signature(a) == inspect.signature(b), name
        else:
            assert type(a) is type(b), name
    assert not _darwin.BOUND


def test_speedups_status_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from linkstrategy import _cloop

    mod, why = _cloop.speedups_status()
    assert (mod is None) == (why != "in use")
    monkeypatch.setenv("LINKSTRATEGY_NO_SPEEDUPS", "1")
    assert _cloop.speedups_status() == (None, "not in use (LINKSTRATEGY_NO_SPEEDUPS is set)")
    assert _cloop.load_speedups() is None


# -- fs_magic ---------------------------------------------------------------------------------

_MAGIC = {
    "tmpfs_dir": 0x01021994,
    "xfs_reflink": 0x58465342,
    "btrfs": 0x9123683E,
    "ext4": 0xEF53,
}


@pytest.mark.root
@pytest.mark.parametrize("fs", sorted(_MAGIC))
def test_fs_magic_is_the_kernels_number(fs: str, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(fs)
    (path / "f").write_bytes(b"x")
    for p in (path, path / "f"):
        fd = os.open(p, os.O_RDONLY)
        try:
            assert _sys.fs_magic(fd) == _MAGIC[fs], hex(_sys.fs_magic(fd) or 0)
        finally:
            os.close(fd)


def test_fs_magic_of_a_bad_fd_is_none() -> None:
    fd = os.open(".", os.O_RDONLY)
    os.close(fd)
    assert _sys.fs_magic(fd) is None


# -- exchange ---------------------------------------------------------------------------------


def _ident(p: Path) -> tuple[int, int]:
    st = os.lstat(p)
    return st.st_dev, st.st_ino


@pytest.mark.root
@pytest.mark.parametrize("fs", ["tmpfs_dir", "xfs_reflink", "btrfs", "ext4"])
def test_exchange_swaps_two_names(fs: str, request: pytest.FixtureRequest) -> None:
    base: Path = request.getfixturevalue(fs)
    (base / "d1").mkdir()
    (base / "d2").mkdir()
    (base / "d1" / "a").write_text("a")
    (base / "d2" / "b").mkdir()
    a, b = _ident(base / "d1" / "a"), _ident(base / "d2" / "b")
    fd1, fd2 = _open_dir(base / "d1"), _open_dir(base / "d2")
    try:
        # a file and a directory, in two directories
        assert _sys.exchange(fd1, "a", fd2, "b") is True
        assert _ident(base / "d1" / "a") == b and _ident(base / "d2" / "b") == a
        assert (base / "d2" / "b").read_text() == "a"
        assert _sys.exchange(fd1, "a", fd2, "b") is True  # and back
        assert _ident(base / "d1" / "a") == a and _ident(base / "d2" / "b") == b
    finally:
        os.close(fd1)
        os.close(fd2)


def test_exchange_of_a_missing_name_names_both(dfd: int, tmp_path: Path) -> None:
    (tmp_path / "b").write_text("b")
    with pytest.raises(FileNotFoundError) as ei:
        _sys.exchange(dfd, "missing", dfd, "b")
    assert (ei.value.filename, ei.value.filename2) == ("missing", "b")
    assert (tmp_path / "b").read_text() == "b"


@pytest.mark.parametrize("noreplace", [True, False], ids=["renameat2", "look-then-rename"])
def test_rename_new_never_replaces_anything(
    dfd: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, noreplace: bool
) -> None:
    """rename_new: a file, an empty directory or a full one at the target stays, and
    FileExistsError (EEXIST) names both; a free name is renamed to.  Without
    RENAME_NOREPLACE (NFS, most FUSE: the libc call missing here) the same."""
    if not noreplace:
        import linkstrategy._sys._linux as L

        monkeypatch.setattr(L, "_renameat2", False)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_text("a")
    (tmp_path / "file").write_text("f")
    (tmp_path / "empty").mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "g").write_text("g")
    a = _ident(tmp_path / "a")
    for there in ("file", "empty", "full"):
        keep = _ident(tmp_path / there)
        with pytest.raises(FileExistsError) as ei:
            _sys.rename_new(dfd, "a", dfd, there)
        assert ei.value.errno == errno.EEXIST
        assert (ei.value.filename, ei.value.filename2) == ("a", there)
        assert _ident(tmp_path / there) == keep and _ident(tmp_path / "a") == a
    _sys.rename_new(dfd, "a", dfd, "b")
    assert _ident(tmp_path / "b") == a and not (tmp_path / "a").exists()


@pytest.mark.parametrize("code", [errno.EINVAL, errno.EOPNOTSUPP])
def test_exchange_where_the_filesystem_cannot_is_false(fusefs: Any, code: int) -> None:
    """A FUSE daemon (or NFS) without RENAME_EXCHANGE: False, both names untouched; the
    caller renames twice."""
    mnt = Path(fusefs.mountpoint)
    (mnt / "a").write_text("a")
    (mnt / "b").write_text("b")
    fusefs.inject("rename", code, count=1, path="/a")
    fd = _open_dir(mnt)
    try:
        assert _sys.exchange(fd, "a", fd, "b") is False
    finally:
        os.close(fd)
        fusefs.clear()
    assert (mnt / "a").read_text() == "a" and (mnt / "b").read_text() == "b"


def test_exchange_other_errors_raise(fusefs: Any) -> None:
    mnt = Path(fusefs.mountpoint)
    (mnt / "a").write_text("a")
    (mnt / "b").write_text("b")
    fusefs.inject("rename", errno.EIO, count=1, path="/a")
    fd = _open_dir(mnt)
    try:
        with pytest.raises(OSError) as ei:
            _sys.exchange(fd, "a", fd, "b")
    finally:
        os.close(fd)
        fusefs.clear()
    assert ei.value.errno == errno.EIO and (ei.value.filename, ei.value.filename2) == ("a", "b")


def test_exchange_without_renameat2_is_false(
    dfd: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """glibc < 2.28 has no renameat2: False, nothing renamed."""
    monkeypatch.setattr(_linux, "_renameat2", False)
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    assert _sys.exchange(dfd, "a", dfd, "b") is False
    assert (tmp_path / "a").read_text() == "a"


# -- clone_file -------------------------------------------------------------------------------


def _shared_extents(path: Path) -> bool:
    out = subprocess.run(["filefrag", "-v", str(path)], capture_output=True, text=True)
    return "shared" in out.stdout


@pytest.mark.root
@pytest.mark.parametrize("fs", ["xfs_reflink", "btrfs"])
def test_clone_file_shares_the_blocks(fs: str, request: pytest.FixtureRequest) -> None:
    base: Path = request.getfixturevalue(fs)
    data = os.urandom(256 * 1024)
    (base / "src").write_bytes(data)
    sfd = os.open(base / "src", os.O_RDONLY)
    dfd = _open_dir(base)
    try:
        fd = _sys.clone_file(sfd, dfd, "clone", 0o640)
        try:
            os.write(fd, b"w")  # open for writing
            assert os.fstat(fd).st_ino != os.fstat(sfd).st_ino
        finally:
            os.close(fd)
    finally:
        os.close(sfd)
        os.close(dfd)
    got = (base / "clone").read_bytes()
    assert got[:1] == b"w" and got[1:] == data[1:]
    assert stat.S_IMODE(os.stat(base / "clone").st_mode) == 0o640 & ~_umask()
    assert _shared_extents(base / "clone")


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


@pytest.mark.root
def test_clone_file_where_it_cannot_leaves_nothing(ext4: Path) -> None:
    (ext4 / "src").write_bytes(b"x" * 10000)
    sfd = os.open(ext4 / "src", os.O_RDONLY)
    dfd = _open_dir(ext4)
    try:
        with pytest.raises(OSError) as ei:
            _sys.clone_file(sfd, dfd, "clone", 0o600)
    finally:
        os.close(sfd)
        os.close(dfd)
    assert ei.value.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.EXDEV)
    assert sorted(os.listdir(ext4)) == ["src"]


@pytest.mark.root
def test_clone_file_never_touches_an_existing_name(xfs_reflink: Path) -> None:
    (xfs_reflink / "src").write_bytes(b"new" * 1000)
    (xfs_reflink / "there").write_bytes(b"precious")
    (xfs_reflink / "link").symlink_to(xfs_reflink / "there")
    sfd = os.open(xfs_reflink / "src", os.O_RDONLY)
    dfd = _open_dir(xfs_reflink)
    try:
        for name in ("there", "link"):
            with pytest.raises(FileExistsError):
                _sys.clone_file(sfd, dfd, name, 0o600)
    finally:
        os.close(sfd)
        os.close(dfd)
    assert (xfs_reflink / "there").read_bytes() == b"precious"
    assert (xfs_reflink / "link").is_symlink()


# -- statx ------------------------------------------------------------------------------------


def _fdinfo_mnt_id(fd: int) -> int:
    for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines():
        if line.startswith("mnt_id:"):
            return int(line.split()[1])
    raise AssertionError("no mnt_id")


@pytest.mark.root
def test_statx_mount_id_and_mount_root(_xfs_reflink_mount: Path) -> None:
    sub = _xfs_reflink_mount / "statx-sub"
    sub.mkdir()
    (sub / "ln").symlink_to("/")
    fd = _open_dir(_xfs_reflink_mount)
    try:
        here = _sys.statx(fd, "")
        assert here.mount_root is True and here.mnt_id == _fdinfo_mnt_id(fd)
        st = os.fstat(fd)
        assert (here.dev, here.ino, here.mode) == (st.st_dev, st.st_ino, st.st_mode)
        below = _sys.statx(fd, "statx-sub")
        assert below.mount_root is False and below.mnt_id == here.mnt_id
        link = _sys.statx(fd, "statx-sub/ln")  # not followed to /
        assert stat.S_ISLNK(link.mode)
        assert _sys.statx(_sys.AT_FDCWD, str(_xfs_reflink_mount)).mount_root is True
    finally:
        os.close(fd)
        (sub / "ln").unlink()
        sub.rmdir()


def test_statx_without_libc_statx_falls_back(
    dfd: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """glibc < 2.28: lstat by dir fd, no mount ID; ``""`` is the directory itself."""
    (tmp_path / "ln").symlink_to("/")
    real = {n: _sys.statx(dfd, n) for n in ("", "ln")}
    monkeypatch.setattr(_linux, "_statx", False)
    for name, want in real.items():
        got = _sys.statx(dfd, name)
        assert (got.mode, got.dev, got.ino) == (want.mode, want.dev, want.ino), name
        assert got.mnt_id is None and got.mount_root is None
    with pytest.raises(FileNotFoundError):
        _sys.statx(dfd, "missing")


def test_statx_of_a_missing_name_raises_with_it(dfd: int) -> None:
    with pytest.raises(FileNotFoundError) as ei:
        _sys.statx(dfd, "missing")
    assert ei.value.filename == "missing"


# -- open_beneath -------------------------------------------------------------------------------


@pytest.fixture(params=["openat2", "per-component"])
def resolve(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "per-component":
        monkeypatch.setattr(_linux, "_openat2", False)
    elif not _linux._load_openat2():
        pytest.skip("no openat2 here (Linux < 5.6)")
    return str(request.param)


def test_open_beneath_refuses_symlinks_and_dotdot(dfd: int, tmp_path: Path, resolve: str) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_text("f")
    (tmp_path / "ln").symlink_to(tmp_path / "a")
    flags = os.O_RDONLY
    fd = _sys.open_beneath(dfd, "a/b/f", flags)
    os.close(fd)
    for bad in ("ln/b/f", "a/../ln/b/f", "ln"):
        with pytest.raises(OSError) as ei:
            os.close(_sys.open_beneath(dfd, bad, flags))
        assert ei.value.errno in (errno.ELOOP, errno.ENOTDIR, errno.EXDEV), bad
    sub = _open_dir(tmp_path / "a")
    try:
        with pytest.raises(OSError) as ei:
            os.close(_sys.open_beneath(sub, "../a/b/f", flags))  # out and back in
        assert ei.value.errno == errno.EXDEV
    finally:
        os.close(sub)


def test_open_beneath_of_nothing_is_the_root(dfd: int) -> None:
    for rel in ("", "."):
        fd = _sys.open_beneath(dfd, rel, os.O_RDONLY)
        try:
            assert os.fstat(fd).st_ino == os.fstat(dfd).st_ino
        finally:
            os.close(fd)


# -- copy_fd, fd_path, mount table -------------------------------------------------------------


def test_copy_fd_reads_past_a_lying_size(tmp_path: Path) -> None:
    """/proc files say st_size 0: the copy still reads to EOF."""
    sfd = os.open("/proc/self/mountinfo", os.O_RDONLY)
    dfd = os.open(tmp_path / "c", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        n, _ = _sys.copy_fd(sfd, dfd, os.fstat(sfd).st_size)
    finally:
        os.close(sfd)
        os.close(dfd)
    got = (tmp_path / "c").read_bytes()
    assert n == len(got) > 0 and b" / " in got


@pytest.mark.root
def test_copy_fd_between_filesystems(xfs_reflink: Path, ext4: Path) -> None:
    data = os.urandom(300_000)
    (xfs_reflink / "s").write_bytes(data)
    sfd = os.open(xfs_reflink / "s", os.O_RDONLY)
    dfd = os.open(ext4 / "d", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        n, _ = _sys.copy_fd(sfd, dfd, len(data))
    finally:
        os.close(sfd)
        os.close(dfd)
    assert n == len(data) and (ext4 / "d").read_bytes() == data


def test_copy_sparse_keeps_holes(tmp_path: Path) -> None:
    src = tmp_path / "s"
    with open(src, "wb") as f:
        f.seek(8 << 20)
        f.write(b"end")
    sfd = os.open(src, os.O_RDONLY)
    dfd = os.open(tmp_path / "d", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        _sys.copy_sparse(sfd, dfd, os.fstat(sfd).st_size)
    finally:
        os.close(sfd)
        os.close(dfd)
    assert (tmp_path / "d").read_bytes() == src.read_bytes()
    if os.stat(src).st_blocks * 512 < 1 << 20:  # this filesystem keeps holes
        assert os.stat(tmp_path / "d").st_blocks * 512 < 1 << 20


def test_fd_path_is_the_kernels_path(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "via").symlink_to(tmp_path / "real")
    fd = os.open(tmp_path / "via", os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert _sys.fd_path(fd, str(tmp_path / "via")) == os.path.realpath(tmp_path / "real")
        os.rmdir(tmp_path / "real")  # gone: the fallback, made real
        assert _sys.fd_path(fd, str(tmp_path / "via")) == os.path.realpath(tmp_path / "via")
    finally:
        os.close(fd)


def test_mount_table_text_is_this_namespaces() -> None:
    text = _sys.mount_table_text()
    assert text is not None
    assert any(m.mount_point == "/" for m in parse_mount_table(text))


_OUT_OF_FDS = """
import errno, os, resource, sys
import linkstrategy
linkstrategy.probe  # its module imported, as by a caller's earlier use
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
fds = []
try:
    while True:
        fds.append(os.open("/dev/null", os.O_RDONLY))
except OSError as e:
    assert e.errno == errno.EMFILE
try:
    linkstrategy.probe(sys.argv[1])
    outcome = "probed"
except BaseException as e:
    outcome = f"{type(e).__name__} {getattr(e, 'errno', None)} {getattr(e, 'filename', None)}"
for fd in fds:
    os.close(fd)
print(outcome)
"""


def test_out_of_fds_probe_says_emfile_of_the_mount_table(tmp_path: Path) -> None:
    """Out of fds (a real EMFILE, not a mock), the mount table cannot be read: probe()
    says so, naming /proc/self/mountinfo.  It fell back to psutil instead, whose import
    then failed as ``ModuleNotFoundError: No module named 'psutil'`` (installed or not:
    the import system could not list site-packages either)."""
    out = subprocess.run(
        [sys.executable, "-c", _OUT_OF_FDS, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["OSError", str(errno.EMFILE), "/proc/self/mountinfo"]


def test_stat_nofollow_at_fdcwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f").write_text("f")
    st = _common.stat_nofollow(_sys.AT_FDCWD, "f", _sys.AT_FDCWD)
    assert st.ino == os.stat(tmp_path / "f").st_ino and st.mnt_id is None


def test_clone_file_failing_removes_only_the_file_it_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FICLONE refused after the new file was made, and the name swapped for another
    file of the caller's meanwhile: that file stays (the new one was unlinked by name)."""
    import fcntl

    (tmp_path / "src").write_text("data")
    d = tmp_path / "d"
    d.mkdir()

    def ioctl(fd: int, req: int, arg: object = 0) -> None:
        os.rename(d / "clone", d / "made")
        (d / "clone").write_text("someone else's")
        raise OSError(errno.EOPNOTSUPP, "no clone here")

    monkeypatch.setattr(fcntl, "ioctl", ioctl)
    sfd = os.open(tmp_path / "src", os.O_RDONLY)
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError):
            _sys.clone_file(sfd, dfd, "clone", 0o600)
    finally:
        os.close(sfd)
        os.close(dfd)
    assert (d / "clone").read_text() == "someone else's"
