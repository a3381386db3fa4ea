"""place()'s C tree walk (``_speedups.place_tree``, ``_place._tree_job``): new subtrees in
one C call, what is not plain handed back to the Python path.

The walk must change nothing but speed: the same tree and the same report as the C
per-file loop and the pure-Python path, for every kind of entry the walk hands back.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import swapshim

import linkstrategy
from linkstrategy import _place

fast = _place._fast
needs_c = pytest.mark.skipif(
    fast is None or not hasattr(fast, "place_tree"), reason="the C extension is not built"
)
ROOT = os.geteuid() == 0


def rich_tree(root: Path) -> None:
    """Every kind of entry the walk must hand back, at several depths, and plain ones."""
    deep = root / "pkg"
    for i in range(20):  # deeper than one walk descends (_TREE_DEPTH)
        deep = deep / f"d{i}"
    deep.mkdir(parents=True)
    (deep / "bottom.py").write_text("bottom\n")
    os.symlink("bottom.py", deep / "link-to-bottom")
    for d in (root / "pkg", root / "pkg" / "d0" / "d1"):
        (d / "mod.py").write_text(f"{d.name}\n")
        os.symlink("mod.py", d / "link")
        os.symlink("missing", d / "dangling")
        os.symlink("..", d / "up")  # a symlink to a directory: never followed
        os.mkfifo(d / "fifo")
        (d / "empty").mkdir()
        (d / "hard-a").write_text("one inode, two names\n")
        os.link(d / "hard-a", d / "hard-b")
        (d / "exec.sh").write_text("#!/bin/sh\n")
        os.chmod(d / "exec.sh", 0o755)
        xa = d / "with-xattr"
        xa.write_text("x\n")
        try:
            os.setxattr(xa, "user.test", b"kept")
        except OSError:
            pass  # a filesystem without user xattrs: a plain file then
        (d / "sparse").write_bytes(b"")
        with open(d / "sparse", "r+b") as f:
            f.truncate(1 << 20)
            f.write(b"head")
    os.link(root / "pkg" / "mod.py", root / "pkg" / "d0" / "mod-link-across")
    ro = root / "pkg" / "readonly"
    ro.mkdir()
    (ro / "inside.txt").write_text("in a read-only dir\n")
    os.chmod(ro, 0o555)
    (root / "pkg" / "private").mkdir(mode=0o700)
    (root / "pkg" / "setgid-dir").mkdir()
    os.chmod(root / "pkg" / "setgid-dir", 0o2775)
    (root / "pkg" / "non-utf8-\udcff.py").write_text("bytes\n")
    (root / "pkg" / ("n" * 255)).write_text("long name\n")
    if ROOT:
        su = root / "pkg" / "setuid"
        su.write_text("#!/bin/sh\n")
        os.chmod(su, 0o4755)


def snapshot(root: Path) -> dict[str, Any]:
    """Names, types, modes, contents, link targets, xattrs, and which names share an inode."""
    out: dict[str, Any] = {}
    inodes: dict[tuple[int, int], list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            elif not stat.S_ISREG(st.st_mode):
                out[rel] = ("special", stat.S_IFMT(st.st_mode))  # never opened
            else:
                with open(p, "rb") as f:
                    data = f.read()
                try:
                    xattrs = sorted((k, os.getxattr(p, k)) for k in os.listxattr(p))
                except OSError:
                    xattrs = []
                out[rel] = ("file", stat.S_IMODE(st.st_mode), data, xattrs)
                inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
    out["<hard links>"] = sorted(sorted(v) for v in inodes.values() if len(v) > 1)
    return out


def report_view(r: linkstrategy.PlaceReport) -> dict[str, Any]:
    return {
        "files": r.files,
        "dirs": r.dirs,
        "symlinks": r.symlinks,
        "bytes": r.bytes,
        "by_strategy": r.by_strategy,
        "skipped": sorted((s.path, s.reason) for s in r.skipped),
        "fallbacks": sorted((f.path, f.from_strategy, f.to_strategy) for f in r.fallbacks),
    }


@pytest.fixture
def rich(tmp_path: Path) -> Iterator[Path]:
    src = tmp_path / "src"
    rich_tree(src)
    yield src
    subprocess.run(["chmod", "-R", "u+rwx", str(tmp_path)], check=False)


class Spy:
    """The real extension, counting place_tree calls (the work is real)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def place_tree(self, *args: Any) -> Any:
        self.calls += 1
        return self.real.place_tree(*args)


def without_tree_walk(real: Any) -> types.SimpleNamespace:
    names = {n: getattr(real, n) for n in dir(real) if not n.startswith("__")}
    del names["place_tree"]
    return types.SimpleNamespace(**names)


@needs_c
@pytest.mark.parametrize("strategy", ["hardlink", "copy"])
def test_same_tree_and_report_as_the_other_paths(
    rich: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strategy: str
) -> None:
    results = {}
    for mode, ext in (("tree", Spy(fast)), ("files", without_tree_walk(fast)), ("python", None)):
        monkeypatch.setattr(_place, "_fast", ext)
        dst = tmp_path / f"dst-{mode}"
        r = linkstrategy.place(rich, dst / "site", strategy=strategy)
        if mode == "tree":
            assert ext.calls >= 2  # pkg, and again below the depth limit
        snap = snapshot(dst / "site")
        results[mode] = (snap, report_view(r))
    assert results["tree"] == results["files"] == results["python"]
    snap, rep = results["tree"]
    assert snap == {k: v for k, v in snapshot(rich).items() if not k.endswith("fifo")}
    assert ("pkg/d0/d1/fifo", "FIFO: not placed") in rep["skipped"]
    assert snap["pkg/readonly"] == ("dir", 0o555) and snap["pkg/private"] == ("dir", 0o700)
    assert snap["pkg/setgid-dir"][1] & 0o2000
    deep = "/".join(["pkg", *(f"d{i}" for i in range(20))])
    assert snap[f"{deep}/link-to-bottom"] == ("link", "bottom.py")
    assert snap["pkg/d0/d1/up"] == ("link", "..")


@needs_c
def test_copies_keep_hard_links_xattrs_and_holes(rich: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    linkstrategy.place(rich, dst, strategy="copy")
    snap = snapshot(dst)
    groups = snap["<hard links>"]
    assert ["pkg/d0/d1/hard-a", "pkg/d0/d1/hard-b"] in groups
    assert ["pkg/d0/mod-link-across", "pkg/mod.py"] in groups
    src_sparse = os.stat(rich / "pkg" / "d0" / "d1" / "sparse")
    dst_sparse = os.stat(dst / "pkg" / "d0" / "d1" / "sparse")
    assert dst_sparse.st_blocks <= src_sparse.st_blocks + 8
    with_x = rich / "pkg" / "d0" / "d1" / "with-xattr"
    if os.listxattr(with_x):
        assert os.getxattr(dst / "pkg" / "d0" / "d1" / "with-xattr", "user.test") == b"kept"


@needs_c
def test_only_where_nothing_needs_python_per_file(
    rich: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Callbacks and network filesystems take the per-directory path (a network
    filesystem wants many directories in flight)."""
    spy = Spy(fast)
    monkeypatch.setattr(_place, "_fast", spy)
    linkstrategy.place(rich, tmp_path / "a", strategy="copy")
    assert spy.calls > 0
    for i, kw in enumerate(
        [
            {"progress": lambda done, total: None},
            {"observer": lambda path, strategy: None},
        ]
    ):
        spy.calls = 0
        linkstrategy.place(rich, tmp_path / f"b{i}", strategy="copy", **kw)  # type: ignore[arg-type]
        assert spy.calls == 0, kw
    spy.calls = 0
    monkeypatch.setenv(
        "LINKSTRATEGY_NETWORK_MOUNTS", linkstrategy.probe(tmp_path).mount.mount_point
    )
    linkstrategy.clear_cache()
    try:
        r = linkstrategy.place(rich, tmp_path / "net", strategy="copy")
    finally:
        monkeypatch.delenv("LINKSTRATEGY_NETWORK_MOUNTS")
        linkstrategy.clear_cache()
    assert spy.calls == 0 and r.files > 0 and r.workers > 2  # taken as a network mount


def listed_tree(root: Path) -> list[str]:
    """A source with more than its file list names; the list (RECORD-like)."""
    rich_tree(root)
    (root / "pkg" / "unlisted.py").write_text("not in the list\n")
    (root / "pkg" / "unlisted-dir" / "deep").mkdir(parents=True)
    (root / "pkg" / "unlisted-dir" / "deep" / "x.py").write_text("x\n")
    (root / "pkg-1.0.dist-info").mkdir()
    for n in ("METADATA", "RECORD"):
        (root / "pkg-1.0.dist-info" / n).write_text(n)
    listed = []
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if (p.is_dir() and not p.is_symlink()) or "unlisted" in rel or rel.endswith("fifo"):
            continue
        listed.append(rel)
    return [*listed, "./pkg/mod.py", "pkg//d0/d1/mod.py"]  # sloppy duplicates, as RECORDs have


@needs_c
@pytest.mark.parametrize("strategy", ["hardlink", "copy"])
def test_file_lists_same_tree_and_report_as_the_other_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strategy: str
) -> None:
    """place(files=..., copy=...): the walk places exactly the listed files (nothing
    unlisted, no directory nothing listed is in), hands the copy= files back (never
    hardlinked), and matches the other paths."""
    src = tmp_path / "src"
    files = listed_tree(src)
    results = {}
    for mode, ext in (("tree", Spy(fast)), ("files", without_tree_walk(fast)), ("python", None)):
        monkeypatch.setattr(_place, "_fast", ext)
        dst = tmp_path / f"dst-{mode}"
        (dst / "site").mkdir(parents=True)  # existing: a walk per new top-level directory,
        (dst / "site" / "other.txt").write_text("not ours\n")  # each with its own prefix
        r = linkstrategy.place(
            src, dst / "site", strategy=strategy, files=files, copy=["*.dist-info/RECORD"]
        )
        if mode == "tree":
            assert ext.calls >= 2
        results[mode] = (snapshot(dst / "site"), report_view(r))
        record = dst / "site" / "pkg-1.0.dist-info" / "RECORD"
        assert os.stat(record).st_ino != os.stat(src / "pkg-1.0.dist-info" / "RECORD").st_ino
    subprocess.run(["chmod", "-R", "u+rwx", str(tmp_path)], check=False)
    assert results["tree"] == results["files"] == results["python"]
    snap, rep = results["tree"]
    assert not [k for k in snap if "unlisted" in k]
    assert rep["by_strategy"]["copy"] >= 1  # RECORD, at least
    deep = "/".join(["pkg", *(f"d{i}" for i in range(20))])
    assert snap[f"{deep}/bottom.py"][0] == "file"


@needs_c
def test_copy_policy_without_a_file_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """copy= without files=: the walk places everything, then the files the policy names
    are placed again as copies before their directory is revealed -- never a hardlink
    into the source in the result, the same tree and report as the other paths."""
    src = tmp_path / "src"
    listed_tree(src)
    policy = ["*.dist-info/RECORD", "pkg/d0/d1/*.py"]
    results = {}
    for mode, ext in (("tree", Spy(fast)), ("files", without_tree_walk(fast)), ("python", None)):
        monkeypatch.setattr(_place, "_fast", ext)
        dst = tmp_path / f"dst-{mode}" / "site"
        dst.mkdir(parents=True)  # existing: a walk per new top-level directory, each with
        (dst / "other.txt").write_text("not ours\n")  # its own prefix before its paths
        r = linkstrategy.place(src, dst, strategy="hardlink", copy=policy)
        if mode == "tree":
            assert ext.calls >= 2
        for rel in ("pkg-1.0.dist-info/RECORD", "pkg/d0/d1/mod.py"):
            assert os.stat(dst / rel).st_ino != os.stat(src / rel).st_ino, (mode, rel)
            assert (dst / rel).read_bytes() == (src / rel).read_bytes()
        assert os.stat(dst / "pkg/mod.py").st_ino == os.stat(src / "pkg/mod.py").st_ino
        results[mode] = (snapshot(dst), report_view(r))
    subprocess.run(["chmod", "-R", "u+rwx", str(tmp_path)], check=False)
    assert results["tree"] == results["files"] == results["python"]
    # RECORD, pkg/d0/d1/mod.py and, fnmatch's * crossing "/", the deep bottom.py
    assert results["tree"][1]["by_strategy"]["copy"] == 3


@needs_c
def test_file_list_errors_as_on_the_other_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listed file that is not there, or that is a directory, fails the call and
    leaves nothing behind, whichever path places it."""
    src = tmp_path / "src"
    files = listed_tree(src)
    deep = "/".join(["pkg", *(f"d{i}" for i in range(20))])
    for mode, ext in (("tree", fast), ("python", None)):
        monkeypatch.setattr(_place, "_fast", ext)
        for bad, code in (
            (f"{deep}/not-there.py", errno.ENOENT),
            ("pkg/d0/d1/not-there.py", errno.ENOENT),
            ("pkg/d0/d1/empty", errno.EISDIR),
        ):
            dst = tmp_path / f"dst-{mode}"
            with pytest.raises(OSError) as ei:
                linkstrategy.place(src, dst, files=[*files, bad])
            assert ei.value.errno == code, (mode, bad)
            assert not dst.exists() and not [n for n in os.listdir(tmp_path) if ".lstmp" in n]
    subprocess.run(["chmod", "-R", "u+rwx", str(tmp_path)], check=False)


# -- the C function itself ----------------------------------------------------------------


def _fds(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY)


@needs_c
def test_hands_back_exactly_what_is_not_plain(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "a" / "b" / "c").mkdir(parents=True)
    (src / "a" / "f").write_text("f")
    os.symlink("f", src / "a" / "s")
    os.mkfifo(src / "a" / "b" / "p")
    (src / "a" / "b" / "c" / "g").write_text("g")
    os.chmod(src / "a" / "b", 0o500)
    dst.mkdir()
    sfd, dfd = _fds(src), _fds(dst)
    try:
        files, nbytes, _cfr, dirs, entries, rest, modes, linked, _placed, _pr, _x = fast.place_tree(
            fast.COPY, sfd, dfd, 0o022, True, False, True, True, 3
        )
    finally:
        os.close(sfd)
        os.close(dfd)
        os.chmod(src / "a" / "b", 0o755)
    # depth 3: the walk makes src, a and a/b; a/b/c is handed back, not made
    assert (files, nbytes, dirs, entries) == (1, 1, 3, 3)
    assert sorted(rest) == ["a/b/c", "a/b/p", "a/s"]
    assert modes == [("a/b", 0o500)]
    assert linked == []
    assert sorted(os.listdir(dst / "a")) == ["b", "f"]
    assert os.listdir(dst / "a" / "b") == []
    assert stat.S_IMODE(os.stat(dst / "a" / "b").st_mode) == 0o700  # filled, then restored


@needs_c
@pytest.mark.parametrize("private", ["COPY", "REFLINK", None])
def test_the_files_copy_names_are_placed_by_their_own_strategy(
    tmp_path: Path, private: str | None
) -> None:
    """A listed file flagged "r" (copy= names it): with a private strategy the walk
    places it by that one -- never a hardlink to the source -- and counts it in
    ``privates``; without one, or when that strategy fails (no reflink on this
    filesystem), it is handed back for the chain's fallbacks."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "pkg-1.dist-info").mkdir(parents=True)
    (src / "pkg").mkdir()
    (src / "pkg" / "mod.py").write_text("mod")
    (src / "pkg-1.dist-info" / "RECORD").write_text("record")
    (src / "pkg-1.dist-info" / "METADATA").write_text("meta")
    dst.mkdir()
    blob = b"pkg-1.dist-info/METADATA\0rpkg-1.dist-info/RECORD\0ppkg/mod.py\0"
    code = -1 if private is None else getattr(fast, private)
    sfd, dfd = _fds(src), _fds(dst)
    try:
        out = fast.place_tree(
            fast.HARDLINK, sfd, dfd, 0o022, True, False, True, True, 16, b"p" + blob, False,
            None, None, None, code,
        )  # fmt: skip
    finally:
        os.close(sfd)
        os.close(dfd)
    files, _bytes, _cfr, _dirs, entries, rest, _m, _l, _p, privates, _x = out
    record = dst / "pkg-1.dist-info" / "RECORD"
    if private is None or (private == "REFLINK" and rest):
        assert (files, privates, rest) == (2, 0, ["pkg-1.dist-info/RECORD"])
        assert not record.exists()
    else:
        assert (files, privates, rest) == (3, 1, [])
        assert record.read_text() == "record"
        assert os.stat(record).st_ino != os.stat(src / "pkg-1.dist-info" / "RECORD").st_ino
    assert entries == 3
    assert os.stat(dst / "pkg" / "mod.py").st_ino == os.stat(src / "pkg" / "mod.py").st_ino
    with pytest.raises(ValueError, match="private strategy"):
        fast.place_tree(
            fast.HARDLINK, 0, 0, 0o022, True, False, True, True, 16, None, False, None, None,
            None, fast.HARDLINK,
        )  # fmt: skip


@needs_c
def test_a_directory_error_raises_with_its_relative_path(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "x" / "y").mkdir(parents=True)
    (dst / "x").mkdir(parents=True)  # not new: mkdirat fails, the walk stops
    sfd, dfd = _fds(src), _fds(dst)
    try:
        with pytest.raises(OSError) as ei:
            fast.place_tree(fast.HARDLINK, sfd, dfd, 0o022, True, False, True, True, 16)
        with pytest.raises(ValueError):
            fast.place_tree(fast.HARDLINK, sfd, dfd, 0o022, True, False, True, True, 0)
    finally:
        os.close(sfd)
        os.close(dfd)
    assert ei.value.errno == errno.EEXIST and ei.value.filename == "x"


DEEP = textwrap.dedent(
    """
    import os, resource, sys
    import linkstrategy
    from linkstrategy import _place
    resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))
    handed = []
    real = _place._place_rest
    def rest(run, roots, rel, drel, entries):
        handed.extend(_place._sub(rel, e) for e in entries)
        real(run, roots, rel, drel, entries)
    _place._place_rest = rest
    # one walk a board: two may hand a subdirectory back earlier, at the board's bound
    # (test_tree_share), which would blur what this counts
    r = linkstrategy.place(sys.argv[1], sys.argv[2], strategy="hardlink", workers=1)
    print(r.files, r.dirs)
    print(*sorted(p.count("/") + 1 for p in handed))
    """
)


@needs_c
def test_deep_trees_hold_few_fds(tmp_path: Path) -> None:
    """300 levels under a 96-fd limit, with empty siblings at each level: a walk goes
    into the deep one while siblings wait, so it holds a directory open per level
    (two fds) -- at most 16 levels, and what lies deeper is a new walk."""
    src = tmp_path / "src"
    d = src
    for i in range(300):
        for k in range(5):
            os.makedirs(d / f"s{k}")
        d = d / f"l{i}"
    os.makedirs(d)
    (d / "leaf").write_text("leaf")
    cp = subprocess.run(
        [sys.executable, "-c", DEEP, str(src), str(tmp_path / "dst")],
        capture_output=True,
        text=True,
    )
    try:
        assert cp.returncode == 0, cp.stderr[-2000:]
        placed, depths = cp.stdout.splitlines()
        assert placed.split() == ["1", str(1 + 300 * 6)]
        # only the subdirectories 16 levels below a walk's top (the deep one and its
        # five siblings) went to a walk of their own: nothing shallower (an open
        # refused for want of fds is handed back too)
        assert depths.split() == [str(16 * k) for k in range(1, 300 // 16 + 1) for _ in range(6)]
        assert (tmp_path / "dst" / os.path.relpath(d, src) / "leaf").read_text() == "leaf"
    finally:
        subprocess.run(["rm", "-rf", str(tmp_path / "src"), str(tmp_path / "dst")], check=False)


@needs_c
def test_reflink_shares_extents_through_the_walk(xfs_reflink: Path) -> None:
    src = xfs_reflink / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "big").write_bytes(os.urandom(1 << 20))
    r = linkstrategy.place(src, xfs_reflink / "dst")
    assert r.by_strategy["reflink"] == 1 and r.bytes == 1 << 20
    out = subprocess.run(
        ["filefrag", "-v", str(xfs_reflink / "dst" / "a" / "b" / "big")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "shared" in out


SWAP_PROG = textwrap.dedent(
    """
    import sys, linkstrategy
    r = linkstrategy.place(sys.argv[1], sys.argv[2], strategy="copy")
    print(r.files, r.symlinks)
    """
)


@needs_c
def test_a_directory_swapped_for_a_symlink_is_not_followed(tmp_path: Path) -> None:
    """A source directory swapped for a symlink between the walk's listing and its
    open (an LD_PRELOAD shim does the swap inside openat) is never walked through:
    the new directory goes again and the symlink is placed as a symlink."""
    shim = swapshim.build(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("must not be copied\n")
    src = tmp_path / "src"
    (src / "pkg" / "victim").mkdir(parents=True)
    (src / "pkg" / "victim" / "inner.txt").write_text("inner\n")
    (src / "pkg" / "mod.py").write_text("mod\n")
    env = {**os.environ, "LD_PRELOAD": str(shim), "OUTSIDE": str(outside)}
    cp = subprocess.run(
        [sys.executable, "-c", SWAP_PROG, str(src), str(tmp_path / "dst")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert cp.returncode == 0, cp.stderr[-2000:]
    assert os.path.islink(src / "pkg" / "victim")  # the shim did swap
    victim = tmp_path / "dst" / "pkg" / "victim"
    assert os.path.islink(victim) and os.readlink(victim) == str(outside)
    assert not (tmp_path / "dst" / "pkg" / "secret").exists()
    found = [p.name for p in (tmp_path / "dst").rglob("*") if not p.is_symlink()]
    assert "secret" not in found and "inner.txt" not in found
    assert cp.stdout.split() == ["1", "1"]


REPORT_NAMES = [
    "RECORD",
    "xRECORD",
    "ECORD",
    "INSTALLER",
    "m.pyc",
    "sub/RECORD",
    "sub/INSTALLER",
    "c.dist-info/RECORD",
    "c.dist-info/RECORDx",
    "c.dist-info/sub/RECORD",
    "e/f.dist-info/RECORD",
    "e/.dist-info/RECORD",
    "info/RECORD",
]


@needs_c
@pytest.mark.parametrize("rel", ["", "pkg-1.0.dist-info", "a/b.dist-info", "x", "a.dist-info/sub"])
@pytest.mark.parametrize(
    "patterns",
    [["*.dist-info/RECORD"], ["RECORD"], ["*/INSTALLER", "*.dist-info/RECORD"], ["*.pyc"]],
)
def test_the_placed_report_by_tails_is_what_the_policy_could_want(
    tmp_path: Path, rel: str, patterns: list[str]
) -> None:
    """copy= without files=: the C walk reports only the placed files whose path from the
    source root (``rel/`` in front: a tail may reach back into it) ends in one of the
    policy's literal tails -- exactly the candidates the Python side would pick from
    the report of every file."""
    from linkstrategy._place import _policy, _report_placed

    src = tmp_path / "src"
    for name in REPORT_NAMES:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(name)
    keep = _policy(patterns)
    assert keep is not None and getattr(keep, "tails", None)
    fast = _place._fast

    def placed(dst: Path, report: object) -> list[str]:
        dst.mkdir()
        sfd, dfd = os.open(src, os.O_RDONLY), os.open(dst, os.O_RDONLY)
        try:
            out = fast.place_tree(fast.HARDLINK, sfd, dfd, 0o022, 1, 0, 1, 1, 16, None, report)
        finally:
            os.close(sfd)
            os.close(dfd)
        return sorted(out[8])

    every = placed(tmp_path / "all", True)
    assert every == sorted(REPORT_NAMES)
    prefix, tails = rel + "/" if rel else "", tuple(getattr(keep, "tails"))  # noqa: B009
    could = [p for p in every if (prefix + p).endswith(tails)]
    assert placed(tmp_path / "some", _report_placed(keep, rel)) == could
