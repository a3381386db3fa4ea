"""What the public functions accept as arguments (:mod:`linkstrategy._args`).

Every path argument takes what :mod:`os` takes -- ``str``, ``bytes``, an
``os.PathLike`` of either -- and does exactly what the ``str`` path
``os.fsdecode(p)`` does, on real files; anything else is a ``TypeError`` naming
the argument, raised before anything is touched.  A lone path where a list of paths
belongs is refused (a ``str`` iterates as its characters); thread counts are at
least 1; seconds are never NaN.
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import linkstrategy as ls
from linkstrategy import InvalidArgument


class BytesPathLike:
    """An ``os.PathLike[bytes]`` (``__fspath__`` returns bytes), as some VFS
    libraries and ``os.DirEntry`` of a bytes ``scandir`` are."""

    def __init__(self, p: str | os.PathLike[str]) -> None:
        self.p = os.fsencode(p)

    def __fspath__(self) -> bytes:
        return self.p


class StrPathLike:
    """An ``os.PathLike[str]`` that is not a :class:`pathlib.Path`."""

    def __init__(self, p: str | os.PathLike[str]) -> None:
        self.p = os.fspath(p)

    def __fspath__(self) -> str:
        return self.p


Conv = Callable[[Any], Any]

#: Each way of giving a path; "str" is the reference the others must match.
KINDS: dict[str, Conv] = {
    "str": lambda p: os.fspath(p),
    "bytes": lambda p: os.fsencode(p),
    "pathlib": Path,
    "pathlike-bytes": BytesPathLike,
    "pathlike-str": StrPathLike,
}
OTHER_KINDS = [k for k in KINDS if k != "str"]

#: Values that are not paths, and the type name the error must give.
NOT_PATHS = [(5, "int"), (2.5, "float"), (None, "NoneType"), (object(), "object")]


# -- helpers ----------------------------------------------------------------------------


def tree(root: Path) -> dict[str, Any]:
    """Names, types, modes and contents of everything below ``root``."""
    out: dict[str, Any] = {}
    if not os.path.lexists(root):
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            else:
                with open(p, "rb") as f:
                    out[rel] = ("file", hashlib.sha256(f.read()).hexdigest())
    return out


def write(p: Path, text: str) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def package(root: Path, tag: str) -> Path:
    """A small package tree: two modules, a subpackage, a symlink."""
    write(root / "pkg" / "__init__.py", f"# {tag}\n")
    write(root / "pkg" / "a.py", f"A = {tag!r}\n")
    write(root / "pkg" / "sub" / "b.py", f"B = {tag!r}\n")
    os.symlink("a.py", root / "pkg" / "link.py")
    return root


def norm(value: Any, base: Path) -> Any:
    """``value`` with ``base`` taken out of every string in it (for comparing runs in
    different directories), timings dropped; a path that is not a ``str`` fails."""
    if isinstance(value, dict):
        return {k: norm(v, base) for k, v in value.items() if k not in ("seconds", "test_ms", "ms")}
    if isinstance(value, (list, tuple)):
        return [norm(v, base) for v in value]
    assert not isinstance(value, bytes), f"a report gives bytes: {value!r}"
    if isinstance(value, str):
        return value.replace(str(base), "<base>")
    return value


# -- the same result for every kind of path -----------------------------------------------
#
# Each scenario makes its files under ``base``, calls one public function with every path
# (and every entry of a list of paths) given by ``conv``, and returns what came of it,
# with ``base`` taken out.


def sc_probe(base: Path, conv: Conv) -> Any:
    base.mkdir()
    return norm(ls.probe(conv(base)).to_json(), base)


def sc_plan(base: Path, conv: Conv) -> Any:
    package(base / "cache", "1")
    return norm(ls.plan(conv(base / "cache"), conv(base / "site" / "x")).to_json(), base)


def sc_place(base: Path, conv: Conv) -> Any:
    src = package(base / "cache", "1")
    r = ls.place(conv(src), conv(base / "site"))
    return norm(r.to_json(), base), tree(base / "site")


def sc_place_file(base: Path, conv: Conv) -> Any:
    src = write(base / "cache" / "one.py", "x = 1\n")
    r = ls.place(conv(src), conv(base / "site" / "deep" / "one.py"))
    return norm(r.to_json(), base), tree(base / "site")


def sc_place_files(base: Path, conv: Conv) -> Any:
    src = package(base / "cache", "1")
    rels = ["pkg/a.py", "pkg/sub/b.py", "pkg/link.py"]
    r = ls.place(conv(src), conv(base / "site"), files=[conv(x) for x in rels])
    return norm(r.to_json(), base), tree(base / "site")


def sc_place_many(base: Path, conv: Conv) -> Any:
    a, b = package(base / "cache" / "a", "a"), package(base / "cache" / "b", "b")
    jobs = [
        (conv(a), conv(base / "site" / "a")),
        (conv(b), conv(base / "site" / "b"), [conv("pkg/a.py"), conv("pkg/sub/b.py")]),
    ]
    rs = ls.place_many(jobs)
    return [norm(r.to_json(), base) for r in rs], tree(base / "site")


def sc_replace(base: Path, conv: Conv) -> Any:
    src = package(base / "cache", "2")
    package(base / "site", "1")
    write(base / "site" / "old.txt", "old\n")
    r = ls.replace(conv(src), conv(base / "site"), files=[conv("pkg/a.py"), conv("pkg/link.py")])
    return norm(r.to_json(), base), tree(base / "site")


def sc_upgrade(base: Path, conv: Conv) -> Any:
    site = base / "site"
    package(site / "lib", "1")
    write(site / "lib-1.dist-info" / "RECORD", "1\n")
    write(site / "gone" / "x.py", "gone\n")
    package(base / "new" / "lib", "2")
    write(base / "new" / "lib-2.dist-info" / "RECORD", "2\n")
    changes = {
        conv("lib"): conv(base / "new" / "lib"),
        conv("lib-2.dist-info"): conv(base / "new" / "lib-2.dist-info"),
        conv("gone"): None,
    }
    rs = ls.upgrade(conv(site), changes, renamed={conv("lib-1.dist-info"): conv("lib-2.dist-info")})
    assert all(type(k) is str for k in rs)
    return {k: norm(v.to_json(), base) for k, v in rs.items()}, tree(site)


def sc_remove_one(base: Path, conv: Conv) -> Any:
    package(base / "site", "1")
    r = ls.remove(conv(base / "site" / "pkg"))
    return norm(r.to_json(), base), tree(base / "site")


def sc_remove_list(base: Path, conv: Conv) -> Any:
    package(base / "site", "1")
    write(base / "site" / "keep.txt", "keep\n")
    r = ls.remove([conv(base / "site" / "pkg" / "sub"), conv(base / "site" / "pkg" / "a.py")])
    return norm(r.to_json(), base), tree(base / "site")


def sc_remove_last(base: Path, conv: Conv) -> Any:
    package(base / "site", "1")
    r = ls.remove(conv(base / "site"), last=[conv("pkg/a.py"), conv(base / "site" / "pkg")])
    return norm(r.to_json(), base), tree(base)


def sc_remove_files(base: Path, conv: Conv) -> Any:
    env = base / "env"
    site = env / "lib" / "site"
    package(site, "1")
    write(site / "pkg-1.dist-info" / "RECORD", "r\n")
    write(env / "bin" / "tool", "#!/bin/sh\n")
    write(site / "other" / "keep.py", "keep\n")
    rels = ["pkg/__init__.py", "pkg/a.py", "pkg/sub/b.py", "pkg/link.py", "../../bin/tool"]
    r = ls.remove(
        files=[conv(x) for x in rels],
        root=conv(site),
        within=conv(env),
        last=[conv("pkg-1.dist-info")],
    )
    return norm(r.to_json(), base), tree(env)


def sc_gc(base: Path, conv: Conv) -> Any:
    package(base / "site", "1")
    r = ls.gc(conv(base / "site"), recursive=True)
    return norm(r.to_json(), base), tree(base / "site")


def sc_staging_dir(base: Path, conv: Conv) -> Any:
    base.mkdir()
    with ls.staging_dir(conv(base / "site" / "pkg")) as tmp:
        assert isinstance(tmp, Path)
        write(tmp / "f", "staged\n")
        os.rename(tmp / "f", base / "f")
    return tree(base)


SCENARIOS = {
    f.__name__[3:]: f
    for f in (
        sc_probe,
        sc_plan,
        sc_place,
        sc_place_file,
        sc_place_files,
        sc_place_many,
        sc_replace,
        sc_upgrade,
        sc_remove_one,
        sc_remove_list,
        sc_remove_last,
        sc_remove_files,
        sc_gc,
        sc_staging_dir,
    )
}


@pytest.mark.parametrize("kind", OTHER_KINDS)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_kind_of_path_does_what_the_str_path_does(
    tmp_path: Path, scenario: str, kind: str
) -> None:
    run = SCENARIOS[scenario]
    want = run(tmp_path / "str", KINDS["str"])
    got = run(tmp_path / kind, KINDS[kind])
    assert got == want


@pytest.mark.parametrize("kind", ["bytes", "pathlike-bytes"])
def test_an_undecodable_bytes_path_is_its_fsdecode(tmp_path: Path, kind: str) -> None:
    """Bytes that are not UTF-8 (a name from another locale) reach the same file as the
    ``str`` os.fsdecode makes of them (surrogate escapes), and back."""
    name = b"caf\xe9"  # latin-1: not decodable as UTF-8
    src = tmp_path / os.fsdecode(b"cache-" + name)
    package(src, "1")
    dst = os.path.join(os.fsencode(tmp_path), b"site-" + name)
    conv = KINDS[kind]
    r = ls.place(conv(os.fsencode(src)), conv(dst), files=[conv(b"pkg/a.py")])
    assert r.dst == os.fsdecode(dst) and isinstance(r.src, str)
    assert os.listdir(os.path.join(dst, b"pkg")) == [b"a.py"]
    rr = ls.remove(conv(dst))
    assert rr.errors == () and not os.path.lexists(dst)


# -- what is not a path -----------------------------------------------------------------


def _site(base: Path) -> tuple[Path, Path]:
    src = package(base / "cache", "1")
    package(base / "site", "0")
    return src, base / "site"


#: ``(name, what, call(src, site, bad), optional)``: every path argument of every public
#: function, given the value ``bad`` where a path belongs; ``what`` must be in the
#: TypeError.  ``optional``: None is the argument's default (or a removal), not an error.
BAD_PATH_CALLS: list[tuple[str, str, Callable[[Path, Path, Any], Any], bool]] = [
    ("probe", "probe(): path", lambda s, d, x: ls.probe(x), False),
    ("plan-src", "plan(): src", lambda s, d, x: ls.plan(x, d), False),
    ("plan-dst", "plan(): dst", lambda s, d, x: ls.plan(s, x), False),
    ("place-src", "place(): src", lambda s, d, x: ls.place(x, d), False),
    ("place-dst", "place(): dst", lambda s, d, x: ls.place(s, x), False),
    (
        "place-files-entry",
        "files= entry",
        lambda s, d, x: ls.place(s, d, files=["pkg/a.py", x]),
        False,
    ),
    ("place_many-src", "place_many(): src", lambda s, d, x: ls.place_many([(x, d)]), False),
    ("place_many-dst", "place_many(): dst", lambda s, d, x: ls.place_many([(s, x)]), False),
    (
        "place_many-files-entry",
        "files= entry",
        lambda s, d, x: ls.place_many([(s, d, ["pkg/a.py", x])]),
        False,
    ),
    ("replace-src", "replace(): src", lambda s, d, x: ls.replace(x, d), False),
    ("replace-dst", "replace(): dst", lambda s, d, x: ls.replace(s, x), False),
    (
        "replace-files-entry",
        "files= entry",
        lambda s, d, x: ls.replace(s, d, files=["pkg/a.py", x]),
        False,
    ),
    (
        "upgrade-parent",
        "upgrade(): parent",
        lambda s, d, x: ls.upgrade(x, {"pkg": s / "pkg"}),
        False,
    ),
    (
        "upgrade-source",
        "upgrade(): changes['pkg']",
        lambda s, d, x: ls.upgrade(d, {"pkg": x}),
        True,
    ),
    (
        "upgrade-name",
        "upgrade(): a name in changes",
        lambda s, d, x: ls.upgrade(d, {x: s / "pkg"}),
        False,
    ),
    (
        "upgrade-renamed-name",
        "upgrade(): a name in renamed",
        lambda s, d, x: ls.upgrade(d, {"pkg2": s / "pkg"}, renamed={x: "pkg2"}),
        False,
    ),
    (
        "upgrade-renamed-target",
        "upgrade(): renamed['pkg']",
        lambda s, d, x: ls.upgrade(d, {"pkg2": s / "pkg"}, renamed={"pkg": x}),
        False,
    ),
    ("remove-paths", "remove(): paths", lambda s, d, x: ls.remove(x), False),
    (
        "remove-paths-entry",
        "remove(): paths entry",
        lambda s, d, x: ls.remove([d / "pkg", x]),
        False,
    ),
    (
        "remove-files-entry",
        "files= entry",
        lambda s, d, x: ls.remove(files=["pkg/a.py", x], root=d),
        False,
    ),
    ("remove-root", "remove(): root=", lambda s, d, x: ls.remove(files=["pkg/a.py"], root=x), True),
    (
        "remove-within",
        "remove(): within=",
        lambda s, d, x: ls.remove(files=["pkg/a.py"], root=d, within=x),
        True,
    ),
    (
        "remove-last-entry",
        "last= entry",
        lambda s, d, x: ls.remove(d / "pkg", last=["a.py", x]),
        False,
    ),
    ("gc", "gc(): path", lambda s, d, x: ls.gc(x), False),
    ("staging_dir", "staging_dir(): dst", lambda s, d, x: ls.staging_dir(x).__enter__(), False),
]

_BAD_PATH_CASES = [
    pytest.param(what, call, value, type_name, id=f"{name}-{type_name}")
    for name, what, call, optional in BAD_PATH_CALLS
    for value, type_name in NOT_PATHS
    if not (optional and value is None)
]


@pytest.mark.parametrize(("what", "call", "value", "type_name"), _BAD_PATH_CASES)
def test_what_is_not_a_path_is_a_type_error_naming_the_argument(
    tmp_path: Path,
    what: str,
    call: Callable[[Path, Path, Any], Any],
    value: Any,
    type_name: str,
) -> None:
    src, site = _site(tmp_path)
    before = tree(tmp_path)
    with pytest.raises(TypeError) as info:
        call(src, site, value)
    msg = str(info.value)
    assert what in msg and f"not {type_name}" in msg and "a path (str, bytes or os.PathLike)" in msg
    assert tree(tmp_path) == before  # refused before anything was touched


# -- one path where a list of paths belongs ---------------------------------------------

#: ``(name, call(src, site, one))``: a list-of-paths argument given one path.
LONE_PATH_CALLS: list[tuple[str, Callable[[Path, Path, Any], Any]]] = [
    ("place-files", lambda s, d, x: ls.place(s, d, files=x)),
    ("place_many-job-files", lambda s, d, x: ls.place_many([(s, d, x)])),
    ("replace-files", lambda s, d, x: ls.replace(s, d, files=x)),
    ("remove-files", lambda s, d, x: ls.remove(files=x, root=d)),
    ("remove-last", lambda s, d, x: ls.remove(d / "pkg", last=x)),
]
LONE = {
    "str": "pkg/a.py",
    "bytes": b"pkg/a.py",
    "pathlib": Path("pkg/a.py"),
    "pathlike-bytes": BytesPathLike("pkg/a.py"),
}


@pytest.mark.parametrize("kind", list(LONE))
@pytest.mark.parametrize(("name", "call"), LONE_PATH_CALLS, ids=[n for n, _ in LONE_PATH_CALLS])
def test_one_path_given_for_a_list_of_paths_is_refused(
    tmp_path: Path, name: str, call: Callable[[Path, Path, Any], Any], kind: str
) -> None:
    """A str iterates as its characters: ``files="pkg/a.py"`` would be ``p``, ``k``, ...,
    ``/``; ``last="pkg-1.dist-info"`` one letter after another."""
    src, site = _site(tmp_path)
    before = tree(tmp_path)
    with pytest.raises(TypeError, match=r"an iterable of paths.*not one"):
        call(src, site, LONE[kind])
    assert tree(tmp_path) == before


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("place-files", lambda s, d: ls.place(s, d, files=5)),
        ("remove-files", lambda s, d: ls.remove(files=5, root=d)),
        ("remove-last", lambda s, d: ls.remove(d / "pkg", last=5)),
        ("remove-paths", lambda s, d: ls.remove(5)),
        ("place_many-jobs", lambda s, d: ls.place_many(5)),
    ],
)
def test_a_list_of_paths_that_is_not_iterable_is_a_type_error(
    tmp_path: Path, name: str, call: Callable[[Path, Path], Any]
) -> None:
    src, site = _site(tmp_path)
    before = tree(tmp_path)
    with pytest.raises(TypeError, match="iterable of paths, not int"):
        call(src, site)
    assert tree(tmp_path) == before


@pytest.mark.parametrize("kind", list(LONE))
def test_remove_takes_one_path_of_any_kind_as_one_path(tmp_path: Path, kind: str) -> None:
    """``remove(paths)`` takes one path or a list: bytes is one path, not a list of ints."""
    src, site = _site(tmp_path)
    one = {"str": str, "bytes": os.fsencode, "pathlib": Path, "pathlike-bytes": BytesPathLike}
    r = ls.remove(one[kind](site / "pkg"))
    assert r.errors == () and not (site / "pkg").exists() and src.exists()


@pytest.mark.parametrize(
    "job",
    [
        pytest.param(lambda s, d: str(s), id="str"),
        pytest.param(lambda s, d: os.fsencode(s), id="bytes"),
        pytest.param(lambda s, d: s, id="pathlib"),
        pytest.param(lambda s, d: (s,), id="one-item"),
        pytest.param(lambda s, d: (s, d, None, None), id="four-items"),
    ],
)
def test_a_place_many_job_is_a_pair_or_a_triple(
    tmp_path: Path, job: Callable[[Path, Path], Any]
) -> None:
    """A job given as one str (or a tuple of the wrong size) would be indexed as its
    characters: ``"ab"`` placed ``a`` at ``b``."""
    src, site = _site(tmp_path)
    before = tree(tmp_path)
    with pytest.raises(TypeError, match=r"a job is \(src, dst\) or \(src, dst, files\)"):
        ls.place_many([job(src, site / "new")])
    assert tree(tmp_path) == before


def test_a_lone_job_given_as_the_jobs_is_refused(tmp_path: Path) -> None:
    src, site = _site(tmp_path)
    with pytest.raises(TypeError, match="a job is"):
        ls.place_many((str(src), str(site / "new")))  # type: ignore[arg-type]
    assert not (site / "new").exists()


# -- thread counts and seconds ------------------------------------------------------------

#: ``(name, call(src, site, workers))``: every public function that takes ``workers=``.
WORKERS_CALLS: list[tuple[str, Callable[[Path, Path, Any], Any]]] = [
    ("place", lambda s, d, w: ls.place(s, d / "new", workers=w)),
    ("place_many", lambda s, d, w: ls.place_many([(s, d / "new")], workers=w)),
    ("replace", lambda s, d, w: ls.replace(s, d, workers=w)),
    ("upgrade", lambda s, d, w: ls.upgrade(d, {"pkg": s / "pkg"}, workers=w)),
    ("remove", lambda s, d, w: ls.remove(d / "pkg", workers=w)),
    ("remove-files", lambda s, d, w: ls.remove(files=["pkg/a.py"], root=d, workers=w)),
]
_WIDS = [n for n, _ in WORKERS_CALLS]


@pytest.mark.parametrize("workers", [0, -1, -100])
@pytest.mark.parametrize(("name", "call"), WORKERS_CALLS, ids=_WIDS)
def test_workers_below_one_is_invalid(
    tmp_path: Path, name: str, call: Callable[[Path, Path, Any], Any], workers: int
) -> None:
    """No thread could do the work: refused, not quietly made one."""
    src, site = _site(tmp_path)
    before = tree(tmp_path)
    fn = name.split("-")[0]  # named by the function called, not by one it calls later
    with pytest.raises(InvalidArgument, match=rf"^.*{fn}\(\): workers= must be at least 1") as info:
        call(src, site, workers)
    assert isinstance(info.value, ValueError) and info.value.errno == errno.EINVAL
    assert tree(tmp_path) == before


@pytest.mark.parametrize(("workers", "type_name"), [(2.0, "float"), ("2", "str"), (True, "bool")])
@pytest.mark.parametrize(("name", "call"), WORKERS_CALLS, ids=_WIDS)
def test_workers_that_is_not_an_int_is_a_type_error(
    tmp_path: Path,
    name: str,
    call: Callable[[Path, Path, Any], Any],
    workers: Any,
    type_name: str,
) -> None:
    src, site = _site(tmp_path)
    before = tree(tmp_path)
    fn = name.split("-")[0]
    with pytest.raises(TypeError, match=rf"^{fn}\(\): workers= must be an int.*not {type_name}"):
        call(src, site, workers)
    assert tree(tmp_path) == before


@pytest.mark.parametrize(("name", "call"), WORKERS_CALLS, ids=_WIDS)
def test_workers_one_and_none_work(
    tmp_path: Path, name: str, call: Callable[[Path, Path, Any], Any]
) -> None:
    for w in (1, None):
        base = tmp_path / str(w)
        src, site = _site(base)
        call(src, site, w)


SECONDS_CALLS: list[tuple[str, Callable[[Path, Any], Any]]] = [
    ("remove-budget", lambda d, t: ls.remove(d / "pkg", budget=t)),
    ("gc-budget", lambda d, t: ls.gc(d, budget=t)),
    ("gc-min_age", lambda d, t: ls.gc(d, min_age=t)),
]
_SIDS = [n for n, _ in SECONDS_CALLS]


@pytest.mark.parametrize(("name", "call"), SECONDS_CALLS, ids=_SIDS)
def test_seconds_that_are_nan_are_invalid(
    tmp_path: Path, name: str, call: Callable[[Path, Any], Any]
) -> None:
    """NaN compares false with everything: a NaN min_age would keep every trash entry."""
    _, site = _site(tmp_path)
    before = tree(tmp_path)
    with pytest.raises(InvalidArgument, match="not NaN"):
        call(site, math.nan)
    assert tree(tmp_path) == before


@pytest.mark.parametrize(("value", "type_name"), [("1", "str"), (None, "NoneType")])
@pytest.mark.parametrize(("name", "call"), SECONDS_CALLS, ids=_SIDS)
def test_seconds_that_are_not_a_number_are_a_type_error(
    tmp_path: Path, name: str, call: Callable[[Path, Any], Any], value: Any, type_name: str
) -> None:
    _, site = _site(tmp_path)
    before = tree(tmp_path)
    with pytest.raises(TypeError, match=f"number of seconds, not {type_name}"):
        call(site, value)
    assert tree(tmp_path) == before


@pytest.mark.parametrize("budget", [-1, -0.5, 0, 2])
def test_a_negative_budget_is_no_time_left(tmp_path: Path, budget: float) -> None:
    """A caller's remaining time may have run out: a negative budget is one pass."""
    _, site = _site(tmp_path)
    r = ls.remove(site / "pkg", budget=budget)
    assert r.errors == () and not (site / "pkg").exists()


# -- upgrade()'s mappings ------------------------------------------------------------------


@pytest.mark.parametrize("other", [b"pkg", Path("pkg"), BytesPathLike("pkg")])
def test_an_entry_named_twice_in_changes_is_refused(tmp_path: Path, other: Any) -> None:
    """``"pkg"`` and ``b"pkg"`` are one entry: which source would win is not the
    caller's to guess."""
    src, site = _site(tmp_path)
    before = tree(tmp_path)
    with pytest.raises(InvalidArgument, match="entry named twice in changes"):
        ls.upgrade(site, {"pkg": src / "pkg", other: None})
    assert tree(tmp_path) == before


@pytest.mark.parametrize(
    ("changes", "type_name"),
    [([("pkg", None)], "list"), ("pkg", "str"), (None, "NoneType")],
)
def test_changes_that_are_not_a_mapping_are_a_type_error(
    tmp_path: Path, changes: Any, type_name: str
) -> None:
    _, site = _site(tmp_path)
    before = tree(tmp_path)
    want = f"changes must be a mapping of entry names, not {type_name}"
    with pytest.raises(TypeError, match=want):
        ls.upgrade(site, changes)
    assert tree(tmp_path) == before


# -- what type checkers see ------------------------------------------------------------------

EVERY_KIND_TYPED = """\
from pathlib import Path
import linkstrategy

new: dict[str, Path] = {"pkg": Path("x")}
ren: dict[str, str] = {"a": "pkg"}
rec: list[str] = ["a"]
jobs: list[tuple[str, str]] = [("a", "b")]
linkstrategy.upgrade(Path("site"), new, renamed=ren)
linkstrategy.upgrade(b"site", {b"pkg": b"x", b"gone": None}, renamed={b"a": b"b"})
linkstrategy.place(b"a", b"b", files=[b"x", "y", Path("z")], workers=2)
linkstrategy.place("a", "b", files=rec)
linkstrategy.place_many([(b"a", b"b"), ("a", "b", [b"x"])])
linkstrategy.place_many(jobs)
linkstrategy.remove(b"x", last=[b"y"])
linkstrategy.remove([Path("x"), b"y"])
linkstrategy.remove(files=rec, root=b"r", within=Path("w"), last=("a",))
linkstrategy.replace(b"a", Path("b"), files=[b"x"])
linkstrategy.gc(b"x")
linkstrategy.probe(b"x")
linkstrategy.plan(b"x", Path("y"))
with linkstrategy.staging_dir(b"x") as t:
    pass
linkstrategy.place(5, "b")
"""


def test_mypy_accepts_every_kind_of_path_and_no_other(tmp_path: Path) -> None:
    """The hints say what the functions take: a typed caller's bytes and PathLike paths
    check, an int does not (and a caller's ``dict[str, Path]`` still fits upgrade())."""
    pytest.importorskip("mypy", reason="mypy is in the dev extra")
    from test_typing import mypy

    r = mypy(tmp_path, EVERY_KIND_TYPED)
    errors = [ln for ln in r.stdout.splitlines() if ": error:" in ln]
    assert [int(ln.split(":")[1]) for ln in errors] == [23], r.stdout
