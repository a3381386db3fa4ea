"""place(): what it must never do -- land elsewhere than the kernel says, remove or
overwrite what this run did not create, trip over its own temporaries -- and the
limits it must live within.  Every test runs with the C and the Python loop."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import linkstrategy
from linkstrategy import PlaceError, _owner, _place, _pool, _probe, _removal

ROOT = os.geteuid() == 0
NOT_AS_ROOT = pytest.mark.skipif(
    ROOT, reason="root bypasses permission checks; runs in the unprivileged pass of tests/run.sh"
)


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch, place_loop: str) -> None:
    _probe.clear_cache()
    if place_loop == "python":
        monkeypatch.setenv("LINKSTRATEGY_NO_SPEEDUPS", "1")
    monkeypatch.delenv("LINKSTRATEGY_STRATEGY", raising=False)


def digest(root: Path, skip: Path | None = None) -> dict[str, object]:
    """Type, mode, content or target of everything under ``root`` except ``skip``."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if skip is not None:
            dirnames[:] = [d for d in dirnames if Path(dirpath, d) != skip]
        for n in dirnames + filenames:
            p = Path(dirpath, n)
            if skip is not None and p == skip:
                continue
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                v: object = ("l", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                v = ("d", st.st_mode)
            else:
                v = ("f", st.st_mode, p.read_bytes())
            out[str(p.relative_to(root))] = v
    return out


def tree(root: Path, n: int = 3) -> None:
    (root / "pkg" / "sub").mkdir(parents=True)
    for i in range(n):
        (root / "pkg" / f"m{i}.py").write_text(f"# {i}\n")
    (root / "pkg" / "sub" / "data").write_text("data\n")


# -- 1. paths mean what the kernel says ---------------------------------------------------


def test_dotdot_after_a_symlink_lands_where_the_kernel_says(tmp_path: Path) -> None:
    """keep/link/../p with link -> ../other/sub: the kernel means other/p, not keep/p."""
    tree(tmp_path / "src")
    (tmp_path / "keep").mkdir()
    (tmp_path / "other" / "sub").mkdir(parents=True)
    (tmp_path / "keep" / "link").symlink_to("../other/sub")
    linkstrategy.place(tmp_path / "src", str(tmp_path / "keep/link/../p"))
    assert (tmp_path / "other" / "p" / "pkg" / "sub" / "data").read_text() == "data\n"
    assert not (tmp_path / "keep" / "p").exists()


@pytest.mark.parametrize("bad", ["", ".", "..", "d/.", "d/..", "/"])
def test_dot_dotdot_empty_and_root_are_refused(tmp_path: Path, bad: str) -> None:
    tree(tmp_path / "src")
    (tmp_path / "d").mkdir()
    os.chdir(tmp_path / "d")
    before = digest(tmp_path)
    with pytest.raises(PlaceError) as ei:
        linkstrategy.place(tmp_path / "src", bad)
    assert ei.value.errno == errno.EINVAL
    assert digest(tmp_path) == before


def test_empty_source_is_refused(tmp_path: Path) -> None:
    os.chdir(tmp_path)
    with pytest.raises(PlaceError, match="empty"):
        linkstrategy.place("", tmp_path / "x")


@pytest.mark.root
@pytest.mark.skipif(not ROOT, reason="needs root for a bind mount")
def test_destination_inside_a_bind_mount_of_the_source_is_refused(tmp_path: Path) -> None:
    tree(tmp_path / "src")
    bind = tmp_path / "bind"
    bind.mkdir()
    subprocess.run(["mount", "--bind", str(tmp_path / "src"), str(bind)], check=True)
    try:
        before = digest(tmp_path / "src")
        with pytest.raises(PlaceError, match="inside the source"):
            linkstrategy.place(tmp_path / "src", bind / "pkg" / "inner")
        assert digest(tmp_path / "src") == before
    finally:
        subprocess.run(["umount", str(bind)], check=True)


def test_destination_inside_the_source_through_a_symlink_is_refused(tmp_path: Path) -> None:
    tree(tmp_path / "src")
    (tmp_path / "alias").symlink_to(tmp_path / "src" / "pkg")
    before = digest(tmp_path / "src")
    with pytest.raises(PlaceError, match="inside the source"):
        linkstrategy.place(tmp_path / "src", tmp_path / "alias" / "copy")
    assert digest(tmp_path / "src") == before


# -- 2. remove only what this run made ----------------------------------------------------


@pytest.mark.python_loop
def test_rollback_keeps_a_file_someone_else_placed_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing run rolls back by inode: a name it created, since replaced by another
    process's file, stays; its own new names go; what was there before stays."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    for n in ("a", "b", "z"):
        (src / n).write_text(f"ours {n}")
    dst.mkdir()
    (dst / "before").write_text("before")
    real = _place._write_file
    placed: list[str] = []

    def write_file(run, strategy, sdir, ddir, sname, tmp, locked):  # type: ignore[no-untyped-def]
        if len(placed) == 2:
            # another process places its own file at the first name we created,
            # then our run fails on its third file
            (dst / "theirs.tmp").write_text("theirs")
            os.replace(dst / "theirs.tmp", dst / placed[0])
            raise OSError(errno.EIO, "injected")
        placed.append(sname)
        return real(run, strategy, sdir, ddir, sname, tmp, locked)

    monkeypatch.setattr(_place, "_write_file", write_file)
    with pytest.raises(PlaceError):
        linkstrategy.place(src, dst, strategy="copy", workers=1)
    assert (dst / placed[0]).read_text() == "theirs"
    assert sorted(os.listdir(dst)) == sorted([placed[0], "before"])


def test_threads_placing_files_into_one_directory(tmp_path: Path) -> None:
    """Four threads, one place() each per file, six rounds into one directory: no
    collision of temporaries, and every file has its own content."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(24):
        (src / f"f{i}").write_bytes(os.urandom(3000) + str(i).encode())
    for rnd in range(6):
        dst = tmp_path / f"dst{rnd}"
        dst.mkdir()
        (dst / "f0").write_text("old")  # some names exist: tmp + rename
        errors: list[BaseException] = []

        def work(k: int, dst: Path = dst, errors: list[BaseException] = errors) -> None:
            try:
                for i in range(k, 24, 4):
                    linkstrategy.place(src / f"f{i}", dst / f"f{i}", strategy="copy")
            except BaseException as e:
                errors.append(e)

        ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert errors == []
        for i in range(24):
            assert (dst / f"f{i}").read_bytes() == (src / f"f{i}").read_bytes()
        assert not [n for n in os.listdir(dst) if n.startswith(_owner.TMP_PREFIX)]


_SLOW_PLACER = """
import os, sys, time
import linkstrategy
def slow(done, total):
    time.sleep(0.02)
print(os.uname().nodename, os.getpid(), flush=True)
linkstrategy.place(sys.argv[1], sys.argv[2], strategy="copy", workers=1, progress=slow)
print("done", flush=True)
"""


def _unshare(hostname: str) -> list[str]:
    return ["unshare", "--uts", "--pid", "--fork", "--kill-child", "--mount-proc", "sh", "-c",
            f'hostname {hostname} && exec "$@"', "sh"]  # fmt: skip


@pytest.mark.root
@pytest.mark.skipif(not ROOT, reason="needs root for unshare --uts --pid")
@pytest.mark.parametrize("names", [("same", "same"), ("hosta", "hostb")])
def test_two_hosts_never_judge_each_others_live_work(
    tmp_path: Path, names: tuple[str, str]
) -> None:
    """Two 'hosts' (UTS + PID namespaces, same or different hostnames; both see
    themselves as PID 1's child) place into one parent: the second's reaping of
    stale temporaries leaves the first's live hidden tree alone, and the first
    completes.  A killed first host's temporary is reaped by the next run."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(60):
        (src / f"f{i}").write_text(str(i))
    parent = tmp_path / "site"
    parent.mkdir()
    env = dict(os.environ, LINKSTRATEGY_NO_SPEEDUPS="1")
    a = subprocess.Popen(
        [*_unshare(names[0]), sys.executable, "-c", _SLOW_PLACER, str(src), str(parent / "a")],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert a.stdout is not None
        a.stdout.readline()
        deadline = time.time() + 10
        while not [n for n in os.listdir(parent) if _owner.is_tmp_name(n)]:
            assert time.time() < deadline
            time.sleep(0.01)
        b = subprocess.run(
            [*_unshare(names[1]), sys.executable, "-c",
             "import sys, linkstrategy; linkstrategy.place(sys.argv[1], sys.argv[2])",
             str(src), str(parent / "b")],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert b.returncode == 0, b.stderr
        assert a.stdout.readline().strip() == b"done"
        assert a.wait(timeout=30) == 0
        assert sorted(os.listdir(parent / "a")) == sorted(os.listdir(src))
    finally:
        a.kill()
        a.wait()
    # killed -9 mid-run: its temporary is dead at once, and the next run removes it
    a = subprocess.Popen(
        [*_unshare(names[0]), sys.executable, "-c", _SLOW_PLACER, str(src), str(parent / "c")],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert a.stdout is not None
    a.stdout.readline()
    deadline = time.time() + 10
    while not [p for p in parent.glob(f"{_owner.TMP_PREFIX}*/{_owner.LOCK_NAME}")]:
        assert time.time() < deadline
        time.sleep(0.01)
    a.kill()
    a.wait()  # --kill-child: the placer inside the namespace dies with it
    (tmp,) = [n for n in os.listdir(parent) if _owner.is_tmp_name(n)]
    pfd = os.open(parent, os.O_RDONLY)
    try:  # its lock goes when the kernel has closed its files
        deadline = time.time() + 20
        while _owner.judge(pfd, tmp, os.stat(tmp, dir_fd=pfd)) != "dead":
            assert time.time() < deadline, "a killed placer's lock was never released"
            time.sleep(0.05)
    finally:
        os.close(pfd)
    linkstrategy.place(src, parent / "d")
    assert sorted(os.listdir(parent)) == ["a", "b", "d"]


# -- 5. permissions -------------------------------------------------------------------------


@NOT_AS_ROOT
def test_read_only_cache_placed_twice(tmp_path: Path) -> None:
    """0555 directories and 0444 files, copied twice into the user's own destination:
    the second run merges (the directories made writable meanwhile, modes back)."""
    src = tmp_path / "cache"
    tree(src)
    for p in sorted(src.rglob("*"), reverse=True):
        p.chmod(0o555 if p.is_dir() else 0o444)
    src.chmod(0o555)
    try:
        for _ in range(2):
            linkstrategy.place(src, tmp_path / "site", strategy="copy")
        assert (tmp_path / "site" / "pkg" / "sub" / "data").read_text() == "data\n"
        assert stat.S_IMODE((tmp_path / "site" / "pkg").stat().st_mode) == 0o555
        # a read-only tree new inside the existing one: built hidden, revealed read-only
        src2 = tmp_path / "cache2"
        (src2 / "pkg" / "newdir").mkdir(parents=True)
        (src2 / "pkg" / "newdir" / "f").write_text("n")
        for p in (src2 / "pkg" / "newdir", src2 / "pkg", src2):
            p.chmod(0o555)
        linkstrategy.place(src2, tmp_path / "site", strategy="copy")
        assert (tmp_path / "site" / "pkg" / "newdir" / "f").read_text() == "n"
        # no lock file left behind in a read-only directory, fresh or new in an old one
        assert not [p for p in (tmp_path / "site").rglob("*") if ".linkstrategy" in p.name]
    finally:
        for p in [tmp_path / "site", src, tmp_path / "cache2"]:
            for q in [p, *p.rglob("*")] if p.exists() else []:
                if q.is_dir():
                    q.chmod(0o755)


@NOT_AS_ROOT
def test_xattrs_of_a_read_only_source_file_are_kept(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        f = src / f"f{i}"
        f.write_text("x")
        try:
            os.setxattr(f, "user.origin", b"cache")
        except OSError as e:
            pytest.skip(f"no user xattrs on {tmp_path}: {e}")
        f.chmod(0o444)
    r = linkstrategy.place(src, tmp_path / "dst", strategy="copy")
    for i in range(5):
        assert os.getxattr(tmp_path / "dst" / f"f{i}", "user.origin") == b"cache"
        assert stat.S_IMODE((tmp_path / "dst" / f"f{i}").stat().st_mode) == 0o444
    assert not r.warnings


@NOT_AS_ROOT
def test_errors_name_the_users_path_not_a_temporary(tmp_path: Path) -> None:
    tree(tmp_path / "src")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(PlaceError) as ei:
            linkstrategy.place(tmp_path / "src", ro / "site")
        assert ei.value.errno == errno.EACCES
        assert _owner.TMP_PREFIX not in str(ei.value)
        assert str(ro / "site") in str(ei.value)
    finally:
        ro.chmod(0o755)


@pytest.mark.root
@pytest.mark.skipif(not ROOT, reason="needs root to own a file as another user")
@pytest.mark.parametrize("strategy", ["copy", "reflink"])
def test_root_copying_a_users_setuid_file_clears_setuid(
    tmp_path: Path, xfs_reflink: Path, strategy: str
) -> None:
    base = xfs_reflink if strategy == "reflink" else tmp_path
    src = base / "src"
    src.mkdir()
    for name in ("tool", "other"):
        f = src / name
        f.write_text("#!/bin/sh\n")
        os.chown(f, 65534, 65534)
        f.chmod(0o6755)
    r = linkstrategy.place(src, base / "dst", strategy=strategy)
    assert r.by_strategy[strategy] == 2
    for name in ("tool", "other"):
        st = (base / "dst" / name).stat()
        assert st.st_uid == 0
        assert stat.S_IMODE(st.st_mode) == 0o755, oct(st.st_mode)
    # the owner's own copy keeps them (same owner and group)
    (base / "mine").write_text("x")
    (base / "mine").chmod(0o6755)
    linkstrategy.place(base / "mine", base / "mine2", strategy=strategy)
    assert stat.S_IMODE((base / "mine2").stat().st_mode) == 0o6755


# -- 6. limits ------------------------------------------------------------------------------


def test_deep_tree_rolls_back_without_recursion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 1,200-deep source whose deepest file fails: the rollback removes the hidden
    tree iteratively (no RecursionError), leaving nothing behind."""
    fd = os.open(tmp_path, os.O_RDONLY)
    for name in ["src"] + ["d"] * 1200:
        os.mkdir(name, dir_fd=fd)
        nfd = os.open(name, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    f = os.open("bad", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.close(f)
    # setuid: the C loop hands it to the Python path, where the failure is injected
    os.chmod("bad", 0o4755, dir_fd=fd)
    os.close(fd)
    real = _place._write_file

    def write_file(run, strategy, sdir, ddir, sname, tmp, locked):  # type: ignore[no-untyped-def]
        if sname == "bad":
            raise OSError(errno.EIO, "injected")
        return real(run, strategy, sdir, ddir, sname, tmp, locked)

    monkeypatch.setattr(_place, "_write_file", write_file)
    try:
        with pytest.raises(PlaceError) as ei:
            linkstrategy.place(tmp_path / "src", tmp_path / "dst", strategy="copy")
        assert ei.value.errno == errno.EIO
        assert sorted(os.listdir(tmp_path)) == ["src"]
    finally:  # too deep for pytest's own (recursive) clean-up
        pfd = os.open(tmp_path, os.O_RDONLY)
        try:
            _removal.rmtree_at(pfd, "src")
        finally:
            os.close(pfd)


def test_fewer_threads_than_asked_still_places_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a thread limit (ulimit -u), start what can be started and go on."""
    tree(tmp_path / "src", n=200)
    real_start = threading.Thread.start
    started = []

    def start(self: threading.Thread) -> None:
        if self.name.startswith("linkstrategy") and len(started) >= 1:
            raise RuntimeError("can't start new thread")
        started.append(self)
        real_start(self)

    monkeypatch.setattr(_pool, "_shared", None)  # a fresh pool: its threads start now
    monkeypatch.setattr(threading.Thread, "start", start)
    r = linkstrategy.place(tmp_path / "src", tmp_path / "dst", workers=48)
    assert r.files == 201
    started.clear()
    monkeypatch.setattr(_pool, "_shared", None)
    monkeypatch.setattr(
        threading.Thread, "start", lambda self: (_ for _ in ()).throw(RuntimeError("no threads"))
    )
    r = linkstrategy.place(tmp_path / "src", tmp_path / "dst2", workers=8)
    assert r.files == 201


@pytest.mark.parametrize("strategy", ["copy", "reflink"])
def test_hard_links_inside_the_tree_stay_links(
    xfs_reflink: Path, strategy: str, place_loop: str
) -> None:
    """One 1 MB file with 20 names: placed as one inode with 20 names, as cp -a does."""
    src = xfs_reflink / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "one").write_bytes(os.urandom(1 << 20))
    for i in range(19):
        os.link(src / "one", src / ("a" if i % 2 else "a/b") / f"n{i}")
    r = linkstrategy.place(src, xfs_reflink / "dst", strategy=strategy)
    inodes = {p.stat().st_ino for p in (xfs_reflink / "dst").rglob("*") if p.is_file()}
    assert len(inodes) == 1
    assert (xfs_reflink / "dst" / "one").stat().st_nlink == 20
    assert r.files == 20
    if place_loop == "python":  # links before writing; the C loop writes, then links
        assert r.bytes == 1 << 20


def test_bytes_counts_what_was_written_not_st_size(tmp_path: Path) -> None:
    """/proc files say st_size 0; their content is copied and counted."""
    src = Path("/proc/sys/fs/inotify")
    r = linkstrategy.place(src, tmp_path / "dst", strategy="copy")
    total = 0
    for f in src.iterdir():
        data = (tmp_path / "dst" / f.name).read_bytes()
        assert data == f.read_bytes() and data
        total += len(data)
    assert r.bytes == total
    r = linkstrategy.place("/proc/self/limits", tmp_path / "limits", strategy="copy")
    assert r.bytes == len((tmp_path / "limits").read_bytes()) > 0


@pytest.mark.python_loop
def test_a_failing_run_stops_its_other_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first error stops the run's other jobs (they are not all run before the
    rollback): few files are tried after it."""
    src = tmp_path / "src"
    for d in range(40):
        (src / f"d{d:02}").mkdir(parents=True)
        for i in range(5):
            (src / f"d{d:02}" / f"f{i}").write_text("x")
    tried: list[str] = []
    real = _place._write_file

    def write_file(run, strategy, sdir, ddir, sname, tmp, locked):  # type: ignore[no-untyped-def]
        tried.append(sname)
        if len(tried) == 3:
            raise OSError(errno.EIO, "injected")
        return real(run, strategy, sdir, ddir, sname, tmp, locked)

    monkeypatch.setattr(_place, "_write_file", write_file)
    with pytest.raises(PlaceError):
        linkstrategy.place(src, tmp_path / "dst", strategy="copy", workers=2)
    assert len(tried) < 50, f"{len(tried)} files tried after the first error"
    assert sorted(os.listdir(tmp_path)) == ["src"]


@pytest.mark.parametrize("where", ["new-subdir", "new-root"])
def test_a_hidden_directory_whose_lock_cannot_be_made_goes_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """ENOSPC (or EDQUOT) making a new directory's lock file, just after the directory
    itself: the directory is not yet in the run's books, so it must go at once --
    the destination is left as it was (found as a .lstmp- leftover on a full tmpfs)."""
    from linkstrategy import _owner

    src = tmp_path / "src"
    (src / "pkg" / "sub").mkdir(parents=True)
    (src / "pkg" / "sub" / "m.py").write_text("m")
    site = tmp_path / "site"
    site.mkdir()
    (site / "other.py").write_text("other")
    real = _owner.hold

    def full(dir_fd: int) -> int | None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_owner, "hold", full)
    dst = site if where == "new-subdir" else site / "new"
    with pytest.raises(OSError) as ei:
        linkstrategy.place(src, dst)
    assert ei.value.errno == errno.ENOSPC
    assert sorted(os.listdir(site)) == ["other.py"]
    monkeypatch.setattr(_owner, "hold", real)
    linkstrategy.place(src, dst)  # and nothing in the way afterwards
    assert (dst / "pkg" / "sub" / "m.py").read_text() == "m"


_MKDIR = __import__("re").compile(
    r'mkdir(?:at)?\((?:[^,]+, )?"([^"]+)", (0[0-7]*)'
)  # (or <unfinished

_PLACE_CHILD = """
import sys, types
from linkstrategy import _place
loop, src, dst = sys.argv[1:4]
if loop == "python":
    _place._fast = None
elif loop == "c-files":
    names = {n: getattr(_place._fast, n) for n in dir(_place._fast) if not n.startswith("__")}
    del names["place_tree"]
    _place._fast = types.SimpleNamespace(**names)
import linkstrategy
linkstrategy.place(src, dst, strategy="copy")
"""


@pytest.mark.parametrize("into", ["new", "existing"])
def test_a_private_directory_is_private_from_its_mkdir(
    tmp_path: Path, place_loop: str, into: str
) -> None:
    """A 0700 source directory's copy is made 0700 (mode | 0700, the umask applied), not
    0777 and given its mode later: another user who opened it in between could list
    the names placed in it through that fd after the run.  The modes mkdir is asked
    for are read from strace (the C walk's mkdirat too)."""
    import shutil

    if shutil.which("strace") is None:
        pytest.skip("needs strace to read the modes mkdir is given (tests/run.sh installs it)")
    src = tmp_path / "src"
    private = ["a", "a/deep", "b", "b/c", "pub/priv"]
    for d in ["pub", *private]:
        (src / d).mkdir(parents=True)
        (src / d / "f.txt").write_text(d)
    for d in private:
        (src / d).chmod(0o700)
    src.chmod(0o700)
    dst = tmp_path / "dst"
    if into == "existing":
        dst.mkdir()
        (dst / "other").write_text("x")
    log = tmp_path / "strace.log"
    r = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=mkdir,mkdirat", "-o", str(log),
         sys.executable, "-c", _PLACE_CHILD, place_loop, str(src), str(dst)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    made = [(m.group(1), int(m.group(2), 8)) for m in _MKDIR.finditer(log.read_text())]
    mine = [(n, mode) for n, mode in made if not n.startswith("/")]  # (not Python's own)
    names = {os.path.basename(d) for d in private}
    for name, mode in mine:
        if name in names:
            assert mode & 0o077 == 0, (name, oct(mode), mine)
    # the hidden ones: the new root (src is private) or the new tops a, b and pub
    hidden = sorted(mode for n, mode in mine if n.startswith(".lstmp-"))
    assert hidden == ([0o700] if into == "new" else [0o700, 0o700, 0o755]), mine
    assert {n for n, _ in mine} >= {"deep", "c", "priv"}, mine
    for d in private:
        assert stat.S_IMODE((dst / d).stat().st_mode) == 0o700
    assert stat.S_IMODE((dst / "pub").stat().st_mode) == stat.S_IMODE((src / "pub").stat().st_mode)


def _before_reveal(monkeypatch: pytest.MonkeyPatch, action: object) -> None:
    """Run ``action()`` once, just before place() renames its first hidden directory to
    its final name (another process at work in the destination meanwhile)."""
    real = _place._unhold  # (called just before the renames)
    done: list[bool] = []

    def unhold(*args: Any) -> None:
        if not done:
            done.append(True)
            action()  # type: ignore[operator]
        real(*args)

    monkeypatch.setattr(_place, "_unhold", unhold)


@pytest.mark.parametrize("into", ["new", "existing"])
def test_a_merge_never_follows_a_symlink_swapped_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, into: str
) -> None:
    """The final name appears (non-empty) while the tree is built hidden, and the
    directory holding it is swapped for a symlink to someone else's installation:
    the merge goes into the directory the run opened, never through the symlink (a
    merge by path overwrote the other installation's files)."""
    src = tmp_path / "src"
    tree(src)
    (src / "pkg" / "m0.py").write_text("new")
    home, other = tmp_path / "home", tmp_path / "othersite"
    (other / "x" / "pkg").mkdir(parents=True)
    (other / "x" / "pkg" / "m0.py").write_text("the other installation's")
    before = digest(other)
    dst = home / "proj" / "x"
    dst.parent.mkdir(parents=True)
    if into == "existing":
        dst.mkdir()  # then pkg/ is the new directory, built hidden in x/

    def race() -> None:
        target = dst / "pkg" if into == "existing" else dst
        target.mkdir(parents=True, exist_ok=True)
        (target / "keep").write_text("theirs")  # non-empty: no rename over it
        (home / "proj").rename(home / "proj_old")
        (home / "proj").symlink_to(other)

    _before_reveal(monkeypatch, race)
    linkstrategy.place(src, dst)
    assert digest(other) == before, "nothing placed through the symlink"
    got = home / "proj_old" / "x"
    assert (got / "pkg" / "m0.py").read_text() == "new"
    keep = got / "pkg" / "keep" if into == "existing" else got / "keep"
    assert keep.read_text() == "theirs"
    assert not [p for p in home.rglob(".lstmp-*")]


@pytest.mark.parametrize("into", ["new", "existing"])
def test_an_empty_directory_made_meanwhile_is_merged_into_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, into: str
) -> None:
    """Another process makes the final name, empty, while the tree is built (about to
    fill it): the run merges into that directory; a plain rename(2) replaced it,
    deleting it under the other process's feet."""
    src = tmp_path / "src"
    tree(src)
    dst = tmp_path / "dst"
    if into == "existing":
        dst.mkdir()
    target = dst / "pkg" if into == "existing" else dst
    made: list[int] = []

    def race() -> None:
        target.mkdir()
        made.append(target.stat().st_ino)

    _before_reveal(monkeypatch, race)
    linkstrategy.place(src, dst)
    assert target.stat().st_ino == made[0]
    assert (dst / "pkg" / "sub" / "data").read_text() == "data\n"


def test_a_merge_that_fails_takes_back_what_it_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merge failing part-way (here its third move): the entries it moved to new names
    go again, what was there stays, and nothing of the run is left."""
    src = tmp_path / "src"
    (src / "pkg" / "a").mkdir(parents=True)
    for n in ("m1.py", "m2.py", "m3.py", "m4.py"):
        (src / "pkg" / n).write_text(n)
    (src / "pkg" / "a" / "x.py").write_text("x")
    dst = tmp_path / "dst"
    dst.mkdir()

    def race() -> None:
        (dst / "pkg").mkdir()
        (dst / "pkg" / "theirs.py").write_text("theirs")

    _before_reveal(monkeypatch, race)
    real, moves = os.rename, []

    def rename(a: str, b: str, **kw: object) -> None:
        if kw.get("src_dir_fd") is not None and kw.get("src_dir_fd") != kw.get("dst_dir_fd"):
            moves.append(a)  # a move between two directories: the merge's
            if len(moves) == 3:
                raise OSError(errno.EIO, "injected")
        real(a, b, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError):
        linkstrategy.place(src, dst)
    monkeypatch.setattr(os, "rename", real)
    assert sorted(os.listdir(dst)) == ["pkg"]
    assert sorted(os.listdir(dst / "pkg")) == ["theirs.py"]


def test_a_mode_is_given_back_only_to_the_directory_that_was_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A read-only directory of the caller's is made writable while it is merged into,
    and gets 0555 back at the end -- by path, that was whatever directory stood there
    by then: the caller's private 0700 one, swapped in, became 0555 for all to list.
    Now only the directory that was changed gets its mode back."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "m.py").write_text("m")
    site = tmp_path / "site"
    (site / "sub").mkdir(parents=True)
    (site / "private").mkdir()
    (site / "private" / "secret-names").write_text("s")
    (site / "private").chmod(0o700)
    (site / "sub").chmod(0o555)
    real = _place._reveal

    def reveal(run: Any, fd: int) -> None:
        real(run, fd)
        (site / "sub").rename(site / "sub_old")
        (site / "private").rename(site / "sub")

    monkeypatch.setattr(_place, "_reveal", reveal)
    try:
        linkstrategy.place(src, site)
        assert stat.S_IMODE((site / "sub").stat().st_mode) == 0o700
        assert "no longer the directory" in caplog.text
    finally:
        for d in ("sub", "sub_old"):
            (site / d).chmod(0o755)


def _acl_denying(uid: int) -> bytes:
    """A POSIX access ACL (the kernel's xattr form): owner rwx, ``uid`` nothing, group
    and others r-x -- the usual way to keep one user out of a 0755 directory."""
    import struct

    u = 0xFFFFFFFF
    entries = [(0x01, 7, u), (0x02, 0, uid), (0x04, 5, u), (0x10, 5, u), (0x20, 5, u)]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, i) for t, p, i in entries)


@pytest.mark.parametrize("into", ["new", "existing"])
def test_a_directory_keeps_the_acl_that_guards_its_files(
    tmp_path: Path, place_loop: str, into: str
) -> None:
    """A source directory whose ACL denies one user the 0644 files in it: its placed
    copy gets the ACL too (directories got only their mode, and the files became
    readable by that user)."""
    src = tmp_path / "src"
    (src / "priv" / "deeper").mkdir(parents=True)
    (src / "priv" / "notes.txt").write_text("not for nobody")
    acl = _acl_denying(65534)
    try:
        os.setxattr(src / "priv", "system.posix_acl_access", acl)
    except OSError as e:
        pytest.skip(f"no POSIX ACLs on {tmp_path}: {e}")
    dst = tmp_path / "dst"
    if into == "existing":
        dst.mkdir()
    linkstrategy.place(src, dst)
    assert os.getxattr(dst / "priv", "system.posix_acl_access") == acl
    assert "system.posix_acl_access" not in os.listxattr(dst / "priv" / "deeper")
    assert stat.S_IMODE((dst / "priv").stat().st_mode) == stat.S_IMODE(
        (src / "priv").stat().st_mode
    )
    if ROOT:  # and nobody is kept out, as from the source
        for p in [dst, *dst.parents]:  # (pytest's temporary directories are 0700)
            if p.stat().st_uid == 0 and p != Path("/"):
                p.chmod(stat.S_IMODE(p.stat().st_mode) | 0o011)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.setgid(65534)
                os.setuid(65534)
                os.listdir(dst)  # (it gets this far)
            except BaseException:
                os._exit(3)
            try:
                os.listdir(dst / "priv")
                os._exit(1)
            except PermissionError:
                os._exit(0)
            except BaseException:
                os._exit(2)
        assert os.waitpid(pid, 0)[1] == 0


@pytest.mark.python_loop
def test_a_network_placement_of_many_directories_needs_few_fds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, place_loop: str
) -> None:
    """On a network filesystem a directory's files go in chunks of 8, each a job holding
    the directory's two fds: queued behind every sibling directory's job, every
    sibling's pair was open at once -- 300 directories of 9 files needed 600 fds."""
    import resource

    src = tmp_path / "src"
    for i in range(300):
        (src / f"d{i:03d}").mkdir(parents=True)
        for j in range(9):
            (src / f"d{i:03d}" / f"f{j}").write_text(f"{i} {j}")
    monkeypatch.setenv(
        "LINKSTRATEGY_NETWORK_MOUNTS", linkstrategy.probe(tmp_path).mount.mount_point
    )
    _probe.clear_cache()
    before = len(os.listdir("/proc/self/fd"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (before + 120, hard))
    try:
        r = linkstrategy.place(src, tmp_path / "dst", workers=1)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        _probe.clear_cache()
    assert r.files == 2700 and r.workers == 1
    assert len(os.listdir("/proc/self/fd")) == before


@pytest.mark.parametrize("where", ["new-subdir", "new-root"])
def test_out_of_fds_making_a_hidden_directory_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """The fd table full just as a new directory's lock file is made: the clean-up of
    that directory must need no fd of its own (it needed one, failed with EMFILE too,
    and left a lock-less .lstmp- directory that gc() leaves alone for an hour)."""
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "m.py").write_text("m")
    site = tmp_path / "site"
    site.mkdir()
    (site / "other.py").write_text("other")
    real = _owner.hold
    filler: list[int] = []

    def full(dir_fd: int) -> int | None:
        try:
            while True:
                filler.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        return real(dir_fd)

    monkeypatch.setattr(_owner, "hold", full)
    dst = site if where == "new-subdir" else site / "new"
    try:
        with pytest.raises(OSError) as ei:
            linkstrategy.place(src, dst)
    finally:
        for fd in filler:
            os.close(fd)
    assert ei.value.errno == errno.EMFILE
    assert sorted(os.listdir(site)) == ["other.py"]


def test_a_tree_deeper_than_path_max_is_placed_on_every_path(
    tmp_path: Path, place_loop: str
) -> None:
    """17 levels of 250-byte names: relative paths past PATH_MAX (4096 bytes).  The C
    walk goes directory by directory; the Python path opened each directory beneath the
    root by its whole relative path and failed with ENAMETOOLONG."""
    src = tmp_path / "src"
    names = [f"{i:02d}" + "n" * 248 for i in range(17)]
    deep = src.joinpath(*names)
    os.makedirs(os.path.join(src, *names[:8]))  # (in two steps: mkdir takes PATH_MAX too)
    fd = os.open(os.path.join(src, *names[:8]), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.makedirs(os.path.join(f"/proc/self/fd/{fd}", *names[8:]))
        with open(os.path.join(f"/proc/self/fd/{fd}", *names[8:], "leaf.txt"), "w") as f:
            f.write("deep")
    finally:
        os.close(fd)
    dst = tmp_path / "dst"
    r = linkstrategy.place(
        src, dst, observer=(lambda p, how: None) if place_loop == "python" else None
    )
    assert r.files == 1
    rel = os.path.relpath(deep, src)
    fd = os.open(dst, os.O_RDONLY | os.O_DIRECTORY)
    try:
        from linkstrategy._sys import open_beneath

        leaf = open_beneath(fd, rel + "/leaf.txt", os.O_RDONLY)
        try:
            assert os.read(leaf, 10) == b"deep"
        finally:
            os.close(leaf)
    finally:
        os.close(fd)
    subprocess.run(["rm", "-rf", str(src), str(dst)], check=True)  # (pytest's own is recursive)
