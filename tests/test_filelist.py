"""place(files=<RECORD paths>)'s file list for the C walk: ``_speedups.file_list`` (check,
clean, dedupe, sort, encode in one call) and ``_speedups.file_blob`` (the walk's
``listed`` argument, with the copy= policy's flags) against the pure-Python reference
(``_place._file_rels``), on random and adversarial lists: the same paths, the same
errors; and ``_place._ListedTree`` against ``_place._listings_from_rels``."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any
from unittest import mock

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import linkstrategy
from linkstrategy import InvalidArgument, _place

fast = _place._fast
needs_c = pytest.mark.skipif(
    fast is None or not hasattr(fast, "file_list"), reason="the C extension is not built"
)
SRC = "/cache/pkg-1.0"

ADVERSARIAL: list[list[Any]] = [
    ["./a", "a//b", "a/./b", "a/b/", "a", "a/b", "./a"],  # sloppy duplicates: a, a/b
    ["ok.py", "../x"],
    ["ok.py", "/abs/path"],
    ["a/.."],
    ["a/../b"],
    ["a/b/.."],
    ["a\0b"],
    [""],
    ["."],
    ["./"],
    ["//"],
    ["a/b", "a/b", "a/b"],
    [".hidden", "..dots", "a/..b", "a/.b/c", "...", "a./b"],
    ["caf\u00e9/\u00fcber.py", "\u65e5\u672c/x", "bad\udcff/name", "\udc80"],
    ["b", "a", "c/d", "a-1/x", "a/x", "a.libs/y", "a0"],  # sort: "-" < "." < "/" < "0"
    ["ok", "\ud800"],  # not encodable: os.fsencode refuses it after the checks
    ["\ud800", "../x"],  # ... and a refused entry after it still wins
    ["../x", "\ud800"],
    ["ok", PurePosixPath("p/q.py"), Path("r.py")],  # os.PathLike entries
    ["ok", PurePosixPath("/abs")],
    ["ok", b"bytes/entry"],  # not a str: the Python path's own error
    [],
]

# Entries built from the pieces a RECORD (or a hostile one) has.
_piece = st.sampled_from(
    ["a", "b", "pkg", ".", "..", "", "x.py", ".hidden", "\u00e9", "\udcfe", "\0", "RECORD"]
)
_entry = st.lists(_piece, min_size=1, max_size=5).map("/".join)
_entries = st.lists(_entry, max_size=12)


def outcome(fn: Callable[[], object]) -> tuple[str, object]:
    """What ``fn`` gives: its result, or its exception's type and message."""
    try:
        return "ok", fn()
    except Exception as e:  # any error, compared as it is
        errno_ = e.errno if isinstance(e, OSError) else None
        return type(e).__name__, (str(e), errno_)


def python_listed(files: list[Any]) -> tuple[str, object]:
    with mock.patch.object(_place, "_fast", None):
        return outcome(lambda: _place._sorted_listed(files, SRC))


def c_listed(files: list[Any]) -> tuple[str, object]:
    return outcome(lambda: _place._sorted_listed(files, SRC))


def check_same(files: list[Any]) -> None:
    py = python_listed(files)
    assert py == c_listed(files), files
    assert py[0] != "ok" or py[1] == sorted(map(os.fsencode, _place._file_rels(files, SRC)))
    got = fast.file_list(files)
    if got is None:  # left to Python: only what it cannot take itself
        assert any(
            not isinstance(os.fspath(f) if isinstance(f, os.PathLike) else f, str)
            or not _encodable(f)
            for f in files
        ), files
    elif isinstance(got, str):
        assert py[0] == "InvalidArgument" and repr(got) in py[1][0], (files, got, py)  # type: ignore[index]
    else:
        assert py == ("ok", got)


def _encodable(entry: object) -> bool:
    try:
        os.fsencode(entry)  # type: ignore[arg-type]
    except (UnicodeEncodeError, TypeError):
        return False
    return True


@needs_c
@pytest.mark.parametrize("files", ADVERSARIAL, ids=range(len(ADVERSARIAL)))
def test_file_list_same_paths_and_errors_as_python(files: list[Any]) -> None:
    check_same(files)


@needs_c
@settings(max_examples=400, deadline=None)
@given(_entries)
@example(["a/b", "a", "a/b/", "./a/b"])
def test_file_list_same_as_python_on_random_lists(files: list[str]) -> None:
    check_same(files)


@needs_c
def test_file_list_does_the_common_case_itself() -> None:
    """Clean, sloppy and refused str entries: decided in C (not handed to Python)."""
    assert fast.file_list(["b/x.py", "./a", "a//c/", "b/x.py"]) == [b"a", b"a/c", b"b/x.py"]
    assert fast.file_list(["ok", "a/../b", "/abs"]) == "a/../b"
    assert fast.file_list(["bad\udcff", "\u00e9"]) == [b"bad\xff", b"\xc3\xa9"]


@needs_c
def test_a_refused_entry_is_named_by_place(tmp_path: Path) -> None:
    root = tmp_path / "cache" / "p"
    (root / "p").mkdir(parents=True)
    (root / "p" / "m.py").write_text("m")
    with pytest.raises(InvalidArgument) as ei:
        linkstrategy.place(root, tmp_path / "site", files=["p/m.py", "p/../../etc/x"])
    assert ei.value.errno == errno.EINVAL
    assert "'p/../../etc/x'" in str(ei.value) and str(root) in str(ei.value)
    assert not (tmp_path / "site").exists()


# -- file_blob: the walk's listed argument ------------------------------------------------


def blob_reference(
    listed: list[bytes], lo: int, hi: int, strip: int, keep: Callable[[str], bool] | None
) -> bytes:
    """Every path asked about, by the whole path: no literal-tail shortcut."""
    out = []
    for p in listed[lo:hi]:
        flag = b"r" if keep is not None and keep(os.fsdecode(p)) else b"p"
        out.append(flag + p[strip:] + b"\0")
    return b"".join(out)


_patterns = st.lists(
    st.sampled_from(["*.dist-info/RECORD", "*/RECORD", "RECORD", "a/*", "*.py", "pkg/?/x.py"]),
    max_size=3,
)
_rel = st.lists(
    st.sampled_from(["a", "b", "pkg", "x.py", "RECORD", "a.dist-info"]), min_size=1, max_size=4
)


@needs_c
@settings(max_examples=300, deadline=None)
@given(st.lists(_rel.map("/".join), max_size=20), _patterns, st.data())
def test_file_blob_same_as_asking_the_policy_about_every_path(
    rels: list[str], patterns: list[str], data: st.DataObject
) -> None:
    listed = fast.file_list(rels)
    assert isinstance(listed, list)
    dirs = sorted({p.rpartition(b"/")[0] for p in listed if b"/" in p})
    d = data.draw(st.sampled_from(["", *map(os.fsdecode, dirs)]))
    run = mock.Mock(listed=listed, private=_place._policy(patterns or None))
    lo, hi, strip = _place._listed_span(run, d)
    assert all(p.startswith(os.fsencode(d) + b"/") for p in listed[lo:hi]) if d else True
    assert hi - lo == sum(1 for p in listed if not d or p.startswith(os.fsencode(d) + b"/"))
    want = blob_reference(listed, lo, hi, strip, run.private)
    assert _place._file_list(run, lo, hi, strip) == want
    tails = getattr(run.private, "tails", None)
    if tails is not None:  # without the shortcut too
        assert fast.file_blob(listed, lo, hi, strip, run.private, None) == want


@needs_c
def test_file_blob_asks_the_policy_with_the_whole_path() -> None:
    listed = fast.file_list(["pkg/m.py", "pkg-1.0.dist-info/RECORD", "pkg-1.0.dist-info/x"])
    asked: list[str] = []

    def keep(path: str) -> bool:
        asked.append(path)
        return path.endswith(".dist-info/RECORD")

    lo, hi, strip = 0, 2, len("pkg-1.0.dist-info/")
    assert fast.file_blob(listed, lo, hi, strip, keep, (b"RECORD",)) == b"rRECORD\0px\0"
    assert asked == ["pkg-1.0.dist-info/RECORD"]  # only a path with the tail
    with pytest.raises(ZeroDivisionError):  # the policy's own error goes through
        fast.file_blob(listed, 0, 3, 0, lambda p: 1 / 0, None)
    with pytest.raises(IndexError):
        fast.file_blob(listed, 0, 4, 0, None, None)


# -- _ListedTree: a directory's listing from the sorted list -----------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(_rel.map("/".join), max_size=25))
@example(["a", "a/b", "a-1/x", "a.dist-info/y", "a/c/d", "a0", "b"])
@example(
    [
        "a/x.py", "a/b/y.py", "a.b/z", "a/b/c/d/e.txt", "top.txt", "./a/x.py", "a//b/w",
        "a-1.0.dist-info/RECORD", "a/b0/q", "a/b/c/f", "non-utf8-\udcff/n", "z/z/z/z",
    ]
)  # fmt: skip
def test_listed_tree_lists_as_the_per_directory_listings(rels: list[str]) -> None:
    rels = _place._file_rels(rels, SRC)
    want = _place._listings_from_rels(rels)
    tree = _place._ListedTree(sorted(map(os.fsencode, rels)))
    for d, listing in want.items():
        got = tree[d]
        assert sorted(got.listed) == sorted(listing.listed), d
        assert sorted(got.subdirs) == sorted(listing.subdirs), d
