"""The C per-file loop (``linkstrategy._speedups.place_files``) on its own.

place() uses it for files going into directories it created; every test in
test_place.py runs with it and without it.  These tests pin down its contract:
it places plainly what it can, and stops -- leaving nothing behind for that
file -- at the first file that needs the Python path.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from linkstrategy import _place

sp = _place._fast
_REQUIRED = os.environ.get("LINKSTRATEGY_REQUIRE_SPEEDUPS", "") not in ("", "0")

# CI (LINKSTRATEGY_REQUIRE_SPEEDUPS=1) must build it: there these tests fail instead.
pytestmark = pytest.mark.skipif(
    sp is None and not _REQUIRED, reason="linkstrategy._speedups is not built or switched off"
)

_DIR = os.O_RDONLY | os.O_DIRECTORY


@pytest.fixture
def dirs(tmp_path: Path) -> Iterator[tuple[Path, Path, int, int]]:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    sfd, dfd = os.open(src, _DIR), os.open(dst, _DIR)
    try:
        yield src, dst, sfd, dfd
    finally:
        os.close(sfd)
        os.close(dfd)


def _place(
    strategy: int,
    sfd: int,
    dfd: int,
    names: list[str],
    start: int = 0,
    *,
    umask: int = 0o022,
    xattrs: bool = True,
    cfr: bool = True,
) -> tuple[int, int, bool]:
    assert sp is not None
    nxt, nbytes, cfr_ok, _linked = sp.place_files(
        strategy, sfd, dfd, names, start, umask, xattrs, False, cfr
    )
    return nxt, nbytes, cfr_ok


def _write(path: Path, data: bytes, mode: int = 0o644, mtime_ns: int | None = None) -> None:
    path.write_bytes(data)
    os.chmod(path, mode)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def test_the_extension_is_loaded() -> None:
    assert sp is not None, "linkstrategy._speedups did not build or load"


@pytest.mark.parametrize("strategy", ["copy", "hardlink"])
def test_places_all_with_mode_and_nanosecond_mtime(
    dirs: tuple[Path, Path, int, int], strategy: str
) -> None:
    src, dst, sfd, dfd = dirs
    assert sp is not None
    code = {"copy": sp.COPY, "hardlink": sp.HARDLINK}[strategy]
    _write(src / "a.py", b"a" * 5000, 0o644, 1_600_000_000_123_456_789)
    _write(src / "tool", b"#!/bin/sh\n", 0o777, 1_500_000_000_987_654_321)  # umask strips g/o w
    _write(src / "empty", b"", 0o600)
    names = ["a.py", "tool", "empty"]
    nxt, nbytes, _ = _place(code, sfd, dfd, names)
    assert nxt == 3
    assert nbytes == (5010 if strategy == "copy" else 0), "a hardlink adds no bytes"
    for n in names:
        s, d = os.stat(src / n), os.stat(dst / n)
        assert (dst / n).read_bytes() == (src / n).read_bytes()
        assert stat.S_IMODE(d.st_mode) == stat.S_IMODE(s.st_mode)
        assert d.st_mtime_ns == s.st_mtime_ns
        assert (d.st_ino == s.st_ino) == (strategy == "hardlink")


def test_reflink_shares_extents(xfs_reflink: Path) -> None:
    assert sp is not None
    (xfs_reflink / "s").mkdir()
    (xfs_reflink / "d").mkdir()
    _write(xfs_reflink / "s" / "big", os.urandom(1 << 20), 0o755, 1_234_567_890_123_456_789)
    sfd, dfd = os.open(xfs_reflink / "s", _DIR), os.open(xfs_reflink / "d", _DIR)
    try:
        assert _place(sp.REFLINK, sfd, dfd, ["big"]) == (1, 1 << 20, True)
    finally:
        os.close(sfd)
        os.close(dfd)
    from test_place import shared_extents

    assert shared_extents(xfs_reflink / "d" / "big")
    d = os.stat(xfs_reflink / "d" / "big")
    assert stat.S_IMODE(d.st_mode) == 0o755 and d.st_mtime_ns == 1_234_567_890_123_456_789


def test_reflink_refused_stops_at_the_first_file_leaving_nothing(ext4: Path) -> None:
    assert sp is not None
    (ext4 / "s").mkdir()
    (ext4 / "d").mkdir()
    for n in ("a", "b"):
        _write(ext4 / "s" / n, b"x" * 100)
    sfd, dfd = os.open(ext4 / "s", _DIR), os.open(ext4 / "d", _DIR)
    try:
        assert _place(sp.REFLINK, sfd, dfd, ["a", "b"]) == (0, 0, True)
    finally:
        os.close(sfd)
        os.close(dfd)
    assert os.listdir(ext4 / "d") == [], "the file it created for the failed clone is gone"


def test_stops_at_an_existing_name_and_leaves_it_alone(dirs: tuple[Path, Path, int, int]) -> None:
    src, dst, sfd, dfd = dirs
    assert sp is not None
    for n in ("a", "b", "c"):
        _write(src / n, n.encode() * 10)
    (dst / "b").write_bytes(b"theirs")
    for code in (sp.COPY, sp.HARDLINK):
        nxt, _, _ = _place(code, sfd, dfd, ["a", "b", "c"])
        assert nxt == 1
        assert (dst / "b").read_bytes() == b"theirs"
        (dst / "a").unlink()
    # the caller goes on after the file it handled itself
    assert _place(sp.COPY, sfd, dfd, ["a", "b", "c"], start=2)[0] == 3
    assert (dst / "c").read_bytes() == b"c" * 10


def test_hands_back_sources_with_xattrs_unless_told_not_to_care(
    dirs: tuple[Path, Path, int, int],
) -> None:
    src, dst, sfd, dfd = dirs
    assert sp is not None
    _write(src / "plain", b"p")
    _write(src / "tagged", b"t")
    try:
        os.setxattr(src / "tagged", "user.origin", b"cache")
    except OSError as e:
        pytest.skip(f"no user xattrs on {src}: {e}")
    assert _place(sp.COPY, sfd, dfd, ["plain", "tagged"])[0] == 1
    assert not (dst / "tagged").exists()
    assert _place(sp.COPY, sfd, dfd, ["plain", "tagged"], 1, xattrs=False)[0] == 2
    assert (dst / "tagged").read_bytes() == b"t"


def test_hands_back_sparse_files_on_copy(dirs: tuple[Path, Path, int, int]) -> None:
    src, dst, sfd, dfd = dirs
    assert sp is not None
    with open(src / "sparse", "wb") as f:
        f.truncate(8 << 20)
        f.write(b"head")
    if os.stat(src / "sparse").st_blocks * 512 >= (8 << 20) - 65536:
        pytest.skip("this filesystem does not keep holes")
    assert _place(sp.COPY, sfd, dfd, ["sparse"])[0] == 0
    assert not (dst / "sparse").exists()


def test_a_fifo_swapped_in_is_never_opened_for_reading(dirs: tuple[Path, Path, int, int]) -> None:
    src, dst, sfd, dfd = dirs
    assert sp is not None
    os.mkfifo(src / "pipe")  # with a blocking open this test would hang
    os.symlink("/etc/passwd", src / "link")
    assert _place(sp.COPY, sfd, dfd, ["pipe"])[0] == 0
    assert _place(sp.REFLINK, sfd, dfd, ["link"])[0] == 0, "O_NOFOLLOW: never follows"
    assert os.listdir(dst) == []


def test_non_utf8_and_255_byte_names(dirs: tuple[Path, Path, int, int]) -> None:
    src, dst, sfd, dfd = dirs
    assert sp is not None
    raw = b"caf\xe9-\xff.py"
    long = "n" * 255
    with open(os.path.join(os.fsencode(src), raw), "wb") as f:
        f.write(b"latin-1")
    _write(src / long, b"long")
    names = [os.fsdecode(raw), long]
    assert _place(sp.COPY, sfd, dfd, names)[0] == 2
    with open(os.path.join(os.fsencode(dst), raw), "rb") as f:
        assert f.read() == b"latin-1"
    assert (dst / long).read_bytes() == b"long"


def test_bad_arguments_are_errors_not_writes(dirs: tuple[Path, Path, int, int]) -> None:
    _src, dst, sfd, dfd = dirs
    assert sp is not None
    with pytest.raises(ValueError, match="not a file name"):
        _place(sp.COPY, sfd, dfd, ["ok", "../escape"])
    with pytest.raises(ValueError, match="unknown strategy"):
        _place(7, sfd, dfd, ["a"])
    with pytest.raises(IndexError):
        _place(sp.COPY, sfd, dfd, ["a"], start=2)
    with pytest.raises(TypeError):
        _place(sp.COPY, sfd, dfd, [b"ok", 3])  # type: ignore[list-item]
    assert os.listdir(dst) == []


def test_copy_file_range_refusal_is_reported_and_data_still_copied(
    ext4: Path, ext4_b: Path
) -> None:
    """Between two filesystems copy_file_range says EXDEV (5.19+): the loop copies
    with sendfile instead and tells the caller, who stops asking for the pair."""
    assert sp is not None
    (ext4 / "s").mkdir()
    (ext4_b / "d").mkdir()
    data = os.urandom(300_000)
    _write(ext4 / "s" / "a", data)
    _write(ext4 / "s" / "b", data[::-1])
    sfd, dfd = os.open(ext4 / "s", _DIR), os.open(ext4_b / "d", _DIR)
    try:
        nxt, nbytes, cfr = _place(sp.COPY, sfd, dfd, ["a"])
        assert (nxt, nbytes, cfr) == (1, 300_000, False)
        assert _place(sp.COPY, sfd, dfd, ["b"], cfr=False) == (1, 300_000, False)
    finally:
        os.close(sfd)
        os.close(dfd)
    assert (ext4_b / "d" / "a").read_bytes() == data
    assert (ext4_b / "d" / "b").read_bytes() == data[::-1]


def test_copy_within_one_filesystem_keeps_copy_file_range(
    dirs: tuple[Path, Path, int, int],
) -> None:
    src, dst, sfd, dfd = dirs
    assert sp is not None
    _write(src / "a", b"z" * 70_000)
    assert _place(sp.COPY, sfd, dfd, ["a"]) == (1, 70_000, True)
    assert (dst / "a").read_bytes() == b"z" * 70_000


def test_missing_source_stops_without_creating(dirs: tuple[Path, Path, int, int]) -> None:
    _src, dst, sfd, dfd = dirs
    assert sp is not None
    for code in (sp.COPY, sp.REFLINK, sp.HARDLINK):
        assert _place(code, sfd, dfd, ["gone"])[0] == 0
    assert os.listdir(dst) == []


def test_the_c_loop_gives_up_on_exactly_the_python_errnos() -> None:
    """One copy of the policy: the C loop's "primitive not available" set is the
    library's (_errors.COPY_GIVEUP)."""
    from linkstrategy import _cloop, _errors

    fast = _cloop.load_speedups()
    if fast is None:
        pytest.skip("the C extension is not built")
    assert set(fast.GIVEUP) == _errors.COPY_GIVEUP
