"""A minimal wheel installer built on linkstrategy: the way to adopt the library.

    python examples/wheel_installer.py install VENV WHEEL... [--cache DIR]
    python examples/wheel_installer.py uninstall VENV NAME...

What it shows, step by step:

1. **Unpack once into a cache** (``cache/<wheel file name>/``), atomically: unpacked
   into a temporary directory beside the entry and renamed into place, so a killed
   unpack never leaves a half entry that later installs would trust.
2. **Install every wheel in one call**, :func:`linkstrategy.place_many`: one pool of
   workers and one plan for all packages; each package's files come from its
   RECORD (``files=``), so no cache directory is walked.  The jobs come from a
   generator: each RECORD is read while the wheels before it are placed.  The
   strategy is chosen per (cache, venv) pair: hardlinks when both are on one mount,
   reflinks where the filesystem clones, else copies.
3. **Never link what the installer rewrites**:
   ``copy=["*.dist-info/RECORD", "*.dist-info/INSTALLER"]`` (a wheel may ship an
   INSTALLER).  RECORD is rewritten with the installed paths (and INSTALLER written)
   *last*, after every file is in place, each by a new file renamed over the name:
   a package is complete when its RECORD says so.
4. **Console scripts** are written to ``bin/`` with a temporary name and renamed.
5. **Uninstall** is ``remove(files=<RECORD>, root=site, within=venv,
   last=[dist-info])``: the files RECORD lists, then the directories they leave
   empty (a namespace directory shared with another package stays), the
   ``dist-info`` directory last: an interrupted uninstall never leaves a package
   without its metadata, and files held open on NFS are dealt with
   (:func:`linkstrategy.remove`).  ``within=venv`` lets the scripts RECORD lists as
   ``../../../bin/x`` go, and nothing outside the venv: a RECORD is the wheel's
   data, and ``../../../../etc/x`` is refused before anything is removed.

6. **Upgrade** (a wheel of a project already installed, in another version or the
   same): :func:`linkstrategy.upgrade`, one transaction over the project's
   top-level entries of ``site-packages`` -- its code trees and modules replaced,
   the ones the new version no longer has removed, the old dist-info renamed to the
   new one -- so a reader never sees two dist-infos or code without metadata, and a
   kill -9 at any point is rolled forward or back as a whole by the next call.  A
   top-level directory another installed project also has files in (a namespace
   package such as ``google/``) is never swapped as a whole: the old version's files
   there are removed and the new ones placed, by RECORD.  The scripts in ``bin/``
   (console scripts, ``.data/scripts``; the old ones the new version lacks removed)
   change in the same transaction (``also=``).  Each run first calls
   :func:`linkstrategy.gc` on site-packages: a transaction a killed run left is
   settled (forward or back) before anything installed is read.

It is deliberately small: no dependency resolution, no ``.data`` schemes other
than ``scripts``, ``purelib`` and ``platlib``, no bytecode compilation.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import os
import re
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import linkstrategy

INSTALLER = "linkstrategy-example"
_NAME = re.compile(r"^([A-Za-z0-9_.]+)-([^-]+)-")


def site_packages(venv: Path) -> Path:
    """The venv's purelib directory, asked of the venv's own layout."""
    paths = sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})
    return Path(paths["purelib"])


def unpack(wheel: Path, cache: Path) -> Path:
    """The wheel unpacked in the cache (unpacked now if it is not there yet)."""
    entry = cache / wheel.name
    if entry.is_dir():
        return entry
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{wheel.name}.", dir=cache))
    try:
        with zipfile.ZipFile(wheel) as z:
            for info in z.infolist():
                target = (tmp / info.filename).resolve()
                if not str(target).startswith(str(tmp.resolve()) + os.sep):
                    raise ValueError(f"{wheel}: entry {info.filename!r} leaves the wheel")
                z.extract(info, tmp)
                mode = (info.external_attr >> 16) & 0o777
                head, _, rest = info.filename.partition("/")
                if head.endswith(".data") and rest.startswith("scripts/"):
                    mode |= 0o755  # a script runs, whatever mode the wheel recorded (as pip)
                if mode and not info.is_dir():
                    os.chmod(target, mode | 0o444)
        try:
            os.rename(tmp, entry)  # the whole entry appears at once
        except OSError:
            if not entry.is_dir():  # not another installer winning the race
                raise
    finally:
        if tmp.exists():
            linkstrategy.remove(tmp)
    return entry


def dist_info(entry: Path) -> Path:
    (info,) = [p for p in entry.iterdir() if p.name.endswith(".dist-info")]
    return info


def record_paths(entry: Path) -> list[str]:
    """The files RECORD lists (RECORD itself included), relative to the wheel root."""
    info = dist_info(entry)
    with open(info / "RECORD", newline="") as f:
        return [row[0] for row in csv.reader(f) if row and row[0]]


def install(venv: Path, wheels: list[Path], cache: Path) -> None:
    site = site_packages(venv)
    site.mkdir(parents=True, exist_ok=True)
    # What a killed run left (an upgrade half swapped, deferred removals) is settled
    # first, rolled forward or back as a whole: then what is installed can be read.
    linkstrategy.gc(site)
    entries = [unpack(w, cache) for w in wheels]
    olds = {entry: installed_info(site, entry) for entry in entries}
    fresh = [entry for entry in entries if olds[entry] is None]

    def jobs() -> Iterator[tuple[Path, Path, list[str]]]:
        # drawn one by one: each RECORD is read while the wheels before it are placed
        for entry in fresh:
            files = record_paths(entry)
            main = [f for f in files if not f.split("/", 1)[0].endswith(".data")]
            yield (entry, site, main)
            for f in files:  # <name>.data/<scheme>/...
                head, _, rest = f.partition("/")
                if head.endswith(".data") and rest:
                    scheme, _, path = rest.partition("/")
                    target = {"purelib": site, "platlib": site, "scripts": venv / "bin"}.get(scheme)
                    if target is None:
                        raise ValueError(f"{entry.name}: scheme {scheme!r} is not supported here")
                    yield (entry / head / scheme, target, [path])

    # RECORD and INSTALLER (a wheel may ship one) are rewritten below: copied, never
    # linked into the cache, and replaced by rename, never written through whatever
    # is at the name.  A ValueError from jobs() rolls back the wheels under way.
    reports = linkstrategy.place_many(jobs(), copy=["*.dist-info/RECORD", "*.dist-info/INSTALLER"])
    for entry in fresh:
        scripts = write_scripts(entry, venv)
        finish_record(entry, site, venv, scripts)
    placed = sum(r.files for r in reports if isinstance(r, linkstrategy.PlaceReport))
    print(f"installed {len(fresh)} wheel(s), {placed} file(s) into {site}")
    for entry in entries:
        old = olds[entry]
        if old is not None:
            upgrade(site, venv, entry, old)
            print(f"upgraded {old.name} to {dist_info(entry).name}")


def project(info_name: str) -> str:
    """The normalized project name of a ``<name>-<version>.dist-info`` (or wheel entry)."""
    m = _NAME.match(info_name + "-")
    return m.group(1).lower().replace("-", "_").replace(".", "_") if m else info_name


def installed_info(site: Path, entry: Path) -> Path | None:
    """The dist-info of the project ``entry`` is a wheel of, if one is installed."""
    want = project(dist_info(entry).name)
    found = [p for p in site.glob("*.dist-info") if project(p.name) == want]
    return found[0] if found else None


def _top(rel: str) -> str:
    return rel.split("/", 1)[0]


def _sources(entry: Path) -> dict[str, str]:
    """Each file of the wheel that goes to site-packages (its path in RECORD) -> its
    path there (``<name>.data/purelib/x`` -> ``x``; ``.data/scripts`` go to ``bin/``)."""
    out: dict[str, str] = {}
    for rel in record_paths(entry):
        head, _, rest = rel.partition("/")
        if head.endswith(".data"):
            scheme, _, path = rest.partition("/")
            if scheme in ("purelib", "platlib"):
                out[rel] = path
        else:
            out[rel] = rel
    return out


def upgrade(site: Path, venv: Path, entry: Path, old_info: Path) -> None:
    """Replace the installed ``old_info``'s project by the wheel unpacked at ``entry``."""
    new_info = dist_info(entry).name
    with open(old_info / "RECORD", newline="") as f:
        old_rows = [row[0] for row in csv.reader(f) if row and row[0]]
    old_files = [r for r in old_rows if not r.startswith("../")]
    sources = _sources(entry)  # wheel path -> site path
    # the top-level entries of site-packages other installed projects have files in
    others: set[str] = set()
    for info in site.glob("*.dist-info"):
        if info != old_info and project(info.name) != project(new_info):
            with open(info / "RECORD", newline="") as f:
                others |= {
                    _top(r[0]) for r in csv.reader(f) if r and r[0] and not r[0].startswith("../")
                }
    new_tops: dict[str, set[Path]] = {}  # top-level entry -> where the new version has it
    for rel, at in sources.items():
        new_tops.setdefault(_top(at), set()).add(entry / rel[: len(rel) - len(at)] / _top(at))
    # (a RECORD an interrupted install left as the wheel's lists <name>.data/...: only
    # what is there is the old version's)
    old_tops = {t for t in map(_top, old_files) if os.path.lexists(site / t)}
    # file by file: entries other projects share, one the wheel has in two places (its
    # root and <name>.data/purelib), which no single tree holds, and site-packages' own
    # __pycache__ (a RECORD written by pip lists the bytecode of top-level modules)
    shared = (set(new_tops) | old_tops) & (others | {"__pycache__"}) | {
        t for t, at in new_tops.items() if len(at) > 1
    }
    changes: dict[str, Path | None] = {
        t: next(iter(at)) for t, at in new_tops.items() if t not in shared and t != new_info
    }
    changes |= {t: None for t in old_tops - set(new_tops) - shared - {old_info.name}}
    changes[new_info] = entry / new_info
    renamed = {old_info.name: new_info} if old_info.name != new_info else None
    # The scripts in bin/ change in the same transaction (also=): console scripts are
    # written into a directory beside bin/ first, .data/scripts come from the cache,
    # and the old version's scripts the new one lacks are removed.
    bindir = venv / "bin"
    staged = Path(tempfile.mkdtemp(prefix=".scripts-", dir=venv))
    try:
        scripts = write_scripts(entry, venv, into=staged)
        bin_changes: dict[str, Path | None] = {s.name: staged / s.name for s in scripts}
        for rel in record_paths(entry):  # <name>.data/scripts/...
            head, _, rest = rel.partition("/")
            scheme, _, path = rest.partition("/")
            if head.endswith(".data") and scheme == "scripts" and "/" not in path:
                bin_changes[path] = entry / rel
        for r in old_rows:  # (its directory as the kernel resolves it, never by string)
            p = site / r
            stale = r.startswith("../") and p.name not in bin_changes and _is_dir(p.parent, bindir)
            if stale and os.path.lexists(p):
                bin_changes[p.name] = None
        # one transaction: code and scripts first, the dist-info renamed, removals last
        linkstrategy.upgrade(site, changes, renamed=renamed, also={bindir: bin_changes})
    finally:
        linkstrategy.remove(staged)
    if shared:  # namespace directories: the old version's files out, the new ones in
        new_shared = {at for at in sources.values() if _top(at) in shared}
        gone = [r for r in old_files if _top(r) in shared and r not in new_shared]
        if gone:
            linkstrategy.remove(files=gone, root=site, check=True)
        for rel, at in sources.items():
            if _top(at) in shared:
                linkstrategy.place(entry / rel, site / at)
    finish_record(entry, site, venv, scripts)


def _is_dir(a: Path, b: Path) -> bool:
    """Whether ``a`` is the directory ``b``, as the kernel resolves both."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def write_scripts(entry: Path, venv: Path, into: Path | None = None) -> list[Path]:
    """The console scripts of ``entry``, written to ``bin/`` (or, for an upgrade, into
    ``into``, from where the transaction moves them); returns their paths in ``bin/``."""
    ep = dist_info(entry) / "entry_points.txt"
    if not ep.exists():
        return []
    written: list[Path] = []
    section = None
    for line in ep.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and section == "console_scripts":
            name, _, target = (x.strip() for x in line.partition("="))
            module, _, func = target.partition(":")
            script = (into or venv / "bin") / name
            script.parent.mkdir(parents=True, exist_ok=True)
            tmp = script.with_name(f".{name}.tmp{os.getpid()}")
            head = func.split(".")[0]
            tmp.write_text(
                f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom {module} import {head}\n"
                f"sys.exit({func}())\n"
            )
            tmp.chmod(0o755)
            os.replace(tmp, script)
            written.append(venv / "bin" / name)
    return written


def _hash(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def finish_record(entry: Path, site: Path, venv: Path, scripts: list[Path]) -> None:
    """INSTALLER, then RECORD rewritten last (a temporary name, then rename); the
    console scripts are listed too (``../../../bin/x``), so an uninstall removes them."""
    info = site / dist_info(entry).name
    _write_new(info / "INSTALLER", INSTALLER + "\n")
    rows = []
    for rel in record_paths(entry):
        head, _, rest = rel.partition("/")
        if head.endswith(".data"):
            scheme, _, path = rest.partition("/")
            rel = os.path.relpath(venv / "bin" / path, site) if scheme == "scripts" else path
        rows.append(rel)
    rows += [os.path.relpath(s, site) for s in scripts]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    for rel in [*rows, f"{info.name}/INSTALLER"]:
        if rel.endswith("/RECORD"):
            w.writerow([rel, "", ""])
        else:
            p = site / rel
            w.writerow([rel, _hash(p), p.stat().st_size])
    _write_new(info / "RECORD", out.getvalue())


def _write_new(path: Path, text: str) -> None:
    """``path`` replaced by a new file holding ``text`` (a temporary name, then rename):
    never written through a link at that name into the cache."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "x") as f:
        f.write(text)
    os.replace(tmp, path)


def uninstall(venv: Path, names: list[str]) -> None:
    site = site_packages(venv)
    linkstrategy.gc(site)  # as install() does
    wanted = {n.lower().replace("-", "_") for n in names}
    for info in sorted(site.glob("*.dist-info")):
        m = _NAME.match(info.name + "-")
        if not m or m.group(1).lower().replace("-", "_") not in wanted:
            continue
        with open(info / "RECORD", newline="") as f:
            rels = [row[0] for row in csv.reader(f) if row and row[0]]
        # the listed files, then the directories they leave empty (a namespace
        # directory shared with another package stays), the dist-info last; the
        # scripts in bin/ (../../../bin/x) are inside the venv, nothing else may be
        linkstrategy.remove(files=rels, root=site, within=venv, last=[info.name], check=True)
        print(f"uninstalled {info.name}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="wheel_installer", allow_abbrev=False)
    sub = ap.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("install", help="install wheels into a venv")
    i.add_argument("venv", type=Path)
    i.add_argument("wheels", type=Path, nargs="+")
    i.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "ls-example")
    u = sub.add_parser("uninstall", help="uninstall distributions from a venv")
    u.add_argument("venv", type=Path)
    u.add_argument("names", nargs="+")
    args = ap.parse_args(argv)
    if args.cmd == "install":
        install(args.venv, args.wheels, args.cache)
    else:
        uninstall(args.venv, args.names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
