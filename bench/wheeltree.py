"""The benchmark work tree: the unpacked files of five real wheels.

numpy, pandas, scipy, sympy and botocore, unzipped merged into one ``site/``
directory as an installer would lay them into site-packages: about 7.6k files,
1.5k directories and 275 MB, a mix of many small ``.py`` files (sympy,
botocore's JSON models) and a few large shared objects (scipy, numpy).

The wheels are downloaded once with pip into ``bench/.cache/wheels`` (gitignored)
at the versions pinned in :data:`WHEELS`, so runs on different days compare.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
CACHE_DIR = BENCH_DIR / ".cache"
WHEEL_DIR = CACHE_DIR / "wheels"

#: Pinned so that results stay comparable (the versions pip gave on 2026-11-25
#: for CPython 3.11, manylinux x86_64).
WHEELS: dict[str, str] = {
    "numpy": "2.4.6",
    "pandas": "3.1.1",
    "scipy": "1.17.1",
    "sympy": "1.14.0",
    "botocore": "1.44.8",
}

#: Order used by ``--subset N``: the first N packages.  Small and many-file first,
#: so a subset still has the small-file-heavy shape of the whole tree.
SUBSET_ORDER = ("sympy", "botocore", "numpy", "pandas", "scipy")


def _norm(name: str) -> str:
    return name.lower().replace("-", "_")


def _find_wheel(name: str, version: str, wheel_dir: Path) -> Path | None:
    prefix = f"{_norm(name)}-{version}-"
    for p in sorted(wheel_dir.glob("*.whl")):
        if p.name.lower().startswith(prefix):
            return p
    return None


def ensure_wheels(
    packages: tuple[str, ...] | list[str] | None = None, wheel_dir: Path = WHEEL_DIR
) -> list[Path]:
    """Paths of the pinned wheels, downloading those missing (``pip download``)."""
    names = list(packages) if packages is not None else list(WHEELS)
    wheel_dir.mkdir(parents=True, exist_ok=True)
    missing = [n for n in names if _find_wheel(n, WHEELS[n], wheel_dir) is None]
    if missing:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--disable-pip-version-check",
            "-q",
            "-d",
            str(wheel_dir),
            *(f"{n}=={WHEELS[n]}" for n in missing),
        ]
        subprocess.run(cmd, check=True)
    out = []
    for n in names:
        w = _find_wheel(n, WHEELS[n], wheel_dir)
        if w is None:
            raise RuntimeError(f"pip download did not produce a wheel for {n}=={WHEELS[n]}")
        out.append(w)
    return out


def subset(n: int | None) -> tuple[str, ...]:
    """The first ``n`` packages of :data:`SUBSET_ORDER` (all for ``None``)."""
    if n is None or n >= len(SUBSET_ORDER):
        return tuple(SUBSET_ORDER)
    if n < 1:
        raise ValueError("subset must be at least 1")
    return SUBSET_ORDER[:n]


def unpack_tree(dest: Path, packages: tuple[str, ...] | list[str] | None = None) -> Path:
    """Unzip the wheels merged into ``dest/site`` and return that directory.

    File modes recorded in the wheel (the executable bit of scripts and shared
    objects) are applied, as an installer would.  An existing ``site`` is reused
    when it holds a marker for the same package set.
    """
    site = Path(dest) / "site"
    names = tuple(packages) if packages is not None else tuple(WHEELS)
    marker = Path(dest) / ".wheeltree"
    want = ",".join(f"{n}=={WHEELS[n]}" for n in names)
    if site.is_dir() and marker.is_file() and marker.read_text() == want:
        return site
    wheels = ensure_wheels(names)
    site.mkdir(parents=True, exist_ok=True)
    for whl in wheels:
        _unzip(whl, site)
    marker.write_text(want)
    return site


def _unzip(whl: Path, dest: Path) -> None:
    """Extract ``whl`` into ``dest`` with the file modes recorded in the wheel (the
    executable bit of scripts and shared objects), as an installer would."""
    with zipfile.ZipFile(whl) as zf:
        for info in zf.infolist():
            target = zf.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(target, mode | 0o600)


def unpack_entries(dest: Path, packages: tuple[str, ...] | list[str] | None = None) -> list[Path]:
    """Each wheel unzipped into a directory of its own under ``dest`` (an installer's
    cache entry), modes applied as in :func:`unpack_tree`; reused when present."""
    names = tuple(packages) if packages is not None else tuple(WHEELS)
    out = []
    for whl in ensure_wheels(names):
        entry = Path(dest) / whl.stem
        if not entry.is_dir():
            _unzip(whl, entry)
        out.append(entry)
    return out


def read_record(path: Path) -> list[str]:
    """The paths a RECORD lists (its first column), as ``csv.reader`` reads them.  The
    usual RECORD is ASCII with no quoting and no line break but LF or CRLF: then the
    text before each line's first comma, about 3x quicker than the csv module (an
    installer's work on every install, and in the timed region of the installer's
    contender)."""
    with open(path, "rb") as fh:
        data = fh.read()
    if data.isascii() and not any(c in data for c in _NOT_PLAIN):
        # (a lone CR ends a line for both; so do LF and CRLF)
        return [p for line in data.decode().splitlines() if (p := line.partition(",")[0])]
    with open(path, newline="", encoding="utf-8") as fh:  # the csv module decides
        return [row[0] for row in csv.reader(fh) if row and row[0]]


#: What makes a RECORD's text other than plain lines for the quick reader: a quote,
#: or a character that str.splitlines takes for a line break and csv does not (and
#: \x85, \u2028, \u2029, which are not ASCII).
_NOT_PLAIN = (b'"', b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e")


def record_jobs(entries: list[Path], site: Path) -> list[tuple[Path, Path, list[str]]]:
    """``place_many`` jobs as an installer makes them from each entry's RECORD: the
    files of the wheel's root into ``site``, and ``<name>.data/purelib|platlib/...``
    into ``site`` too (scripts are left out: they are written, not placed)."""
    return list(iter_record_jobs(entries, site))


def iter_record_jobs(entries: list[Path], site: Path) -> Iterator[tuple[Path, Path, list[str]]]:
    """:func:`record_jobs` one by one, each RECORD read when its jobs are drawn: given to
    ``place_many``, a RECORD is read while the wheels before it are placed."""
    for entry in entries:
        info = next(n for n in os.listdir(entry) if n.endswith(".dist-info"))
        files = read_record(entry / info / "RECORD")
        data_dir = info[: -len(".dist-info")] + ".data/"  # the wheel's {name}-{version}.data
        if not _any_below(files, data_dir):  # the usual wheel: all at the root
            yield (entry, site, files)
            continue
        yield (entry, site, [p for p in files if not p.startswith(data_dir)])
        data: dict[str, list[str]] = {}
        for p in files:
            if p.startswith(data_dir):
                scheme, _, path = p[len(data_dir) :].partition("/")
                if scheme in ("purelib", "platlib") and path:
                    data.setdefault(data_dir + scheme, []).append(path)
        yield from ((entry / sub, site, paths) for sub, paths in data.items())


def _any_below(paths: list[str], prefix: str) -> bool:
    """Whether a path may start with ``prefix``: one search of the joined text, a fifth
    of the time of a generator over thousands of paths.  Never a miss; a path holding a
    newline may match falsely, which only costs the filtering that follows."""
    return ("\n" + "\n".join(paths)).find("\n" + prefix) >= 0


def tree_stats(path: Path | str) -> tuple[int, int, int]:
    """``(files, dirs, bytes)`` below ``path`` (dirs excludes ``path`` itself; no symlinks)."""
    files = dirs = size = 0
    stack = [os.fspath(path)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    dirs += 1
                    stack.append(e.path)
                else:
                    files += 1
                    size += e.stat(follow_symlinks=False).st_size
    return files, dirs, size


if __name__ == "__main__":
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dest", nargs="?", help="where to unpack (default: a temp dir in /dev/shm)")
    ap.add_argument("--subset", type=int, default=None)
    args = ap.parse_args()
    dest = Path(args.dest or tempfile.mkdtemp(prefix="wheeltree-", dir="/dev/shm"))
    site = unpack_tree(dest, subset(args.subset))
    f, d, b = tree_stats(site)
    print(f"{site}: {f} files, {d} dirs, {b / 1e6:.1f} MB")
