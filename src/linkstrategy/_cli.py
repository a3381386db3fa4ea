"""The command line: ``linkstrategy probe|place|replace|remove|gc``.

``main(argv) -> int`` is the whole contract: 0 on success; 1 on an error (one
line on stderr, ``linkstrategy: error: <path>[ -> <path>]: <reason>``, never a
traceback); 2 on a usage error (a bad option, a bad ``$LINKSTRATEGY_STRATEGY``);
130 when interrupted (Ctrl-C).  ``--json`` prints exactly one JSON object on
stdout for every outcome, errors included, with ``"schema": 1``; the schemas
are in the repository's ``schemas/`` directory.

Output is the CLI's alone: the library logs its warnings (``logging``), and
the CLI collects them during a command and prints each one once, on stderr,
after the command's own output (``-q`` drops them).  Paths holding control
characters are shown in shell ANSI-C quoting, ``$'a\\nb'``, so every message
stays one line and can be pasted back into a shell.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys
import threading
import time

from . import __version__

# Start-up matters here (``linkstrategy --version`` should cost little more than the
# interpreter): typing, json, logging and shutil are imported where they are used.
# mypy treats any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import IO, Any, NoReturn

    from ._mounts import Mount
    from ._place import PlaceReport
    from ._plan import Plan, StrategyArg
    from ._tree import RemoveReport

__all__ = ["main"]

PROG = "linkstrategy"
#: Version of the JSON output; bumped when a documented key changes meaning.
SCHEMA = 1

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


# -- words ---------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\udc80-\udcff]")
_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\", "'": "\\'"}


def _escape_char(c: str) -> str:
    if c in _ESCAPES:
        return _ESCAPES[c]
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def quote(path: str) -> str:
    """``path`` as shown to a person: unchanged, unless it holds a control character
    (or bytes that are not UTF-8): then bash's ANSI-C quoting, ``$'a\\nb'``.

    >>> quote("/tmp/a b"), quote("/tmp/a\\nb")
    ('/tmp/a b', "$'/tmp/a\\\\nb'")
    """
    if not _CONTROL.search(path):
        return path
    return (
        "$'"
        + "".join(_escape_char(c) if c in _ESCAPES or _CONTROL.match(c) else c for c in path)
        + "'"
    )


def _one_line(text: str) -> str:
    """Free text (a reason that may embed a path) kept on one line: control
    characters written as backslash escapes."""
    return _CONTROL.sub(lambda m: _escape_char(m.group()), text)


def _n(count: int, noun: str, plural: str | None = None) -> str:
    """``1 file``, ``2 files``, ``1,234 directories``."""
    word = noun if count == 1 else (plural or noun + "s")
    return f"{count:,} {word}"


def _size(n: int) -> str:
    size, unit = float(n), "bytes"
    for bigger in ("kB", "MB", "GB", "TB"):
        if size < 1000:
            break
        size, unit = size / 1000, bigger
    if unit == "bytes":
        return "1 byte" if n == 1 else f"{n:,} bytes"
    return f"{size:.1f} {unit}"


#: errno names the library reports, said in words.
_ERRNO_WORDS = {
    "EOPNOTSUPP": "the filesystem does not support it",
    "ENOTSUP": "the filesystem does not support it",
    "ENOTTY": "the filesystem has no clone operation",
    "ENOSYS": "the kernel does not have this call",
    "EXDEV": "not possible across filesystems or mounts",
    "EPERM": "not permitted",
    "EACCES": "permission denied",
    "EINVAL": "the filesystem refused it as invalid",
    "EMLINK": "the file has too many links",
    "EROFS": "read-only filesystem",
    "ENOSPC": "no space left",
    "EDQUOT": "disk quota exceeded",
    "EIO": "input/output error",
    "ENOENT": "no such file or directory",
}
_ERRNO_TOKEN = re.compile(r"\bE[A-Z0-9]{2,}\b")


def _errno_name(code: int | str | None) -> str | None:
    if code is None or isinstance(code, str):
        return code
    return errno.errorcode.get(code, str(code))


def _explain_errnos(text: str) -> str:
    """``EXDEV`` -> ``EXDEV, not possible across filesystems or mounts``, once each."""
    seen: set[str] = set()

    def words(m: re.Match[str]) -> str:
        name = m.group()
        code = getattr(errno, name, None)
        if name in seen or not isinstance(code, int):
            return name
        seen.add(name)
        return f"{name}, {_ERRNO_WORDS.get(name) or os.strerror(code).lower()}"

    return _ERRNO_TOKEN.sub(words, text)


_VERBS = {
    "reflink": "reflinked",
    "hardlink": "hardlinked",
    "copy": "copied",
    "symlink": "symlinked",
}


# -- output --------------------------------------------------------------------------


class _Usage(Exception):
    """A usage error (exit 2): argparse's, or a bad environment variable."""

    def __init__(
        self, message: str, prog: str = PROG, parser: argparse.ArgumentParser | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.prog = prog
        self.parser = parser  # whose usage line to show


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _Usage(message, self.prog, self)


class _Out:
    """Where a command's results go: text or one JSON object; warnings on stderr."""

    def __init__(self, command: str, *, json_mode: bool, quiet: bool, verbose: bool) -> None:
        self.command = command
        self.json = json_mode
        self.quiet = quiet
        self.verbose = verbose
        self.warned: set[str] = set()

    def print(self, text: str = "") -> None:
        if not self.json and not self.quiet:
            print(text)

    def detail(self, text: str) -> None:
        if self.verbose and not self.json:
            print(text)

    def warn(self, message: str) -> None:
        message = _one_line(message)
        if self.quiet or message in self.warned:
            return
        self.warned.add(message)
        print(f"{PROG}: warning: {message}", file=sys.stderr)

    def emit(self, payload: dict[str, Any], *, ok: bool = True) -> None:
        if self.json:
            _print_json({"schema": SCHEMA, "command": self.command, "ok": ok, **payload})

    def fail(
        self,
        reason: str,
        *,
        path: str | None = None,
        path2: str | None = None,
        code: int | None = None,
        kind: str = "error",
        rc: int = EXIT_ERROR,
        prog: str = PROG,
    ) -> int:
        where = ""
        if path is not None:
            where = quote(path) + (f" -> {quote(path2)}" if path2 is not None else "") + ": "
        print(f"{prog}: error: {where}{_one_line(reason)}", file=sys.stderr)
        self.emit(
            {
                "error": {
                    "kind": kind,
                    "path": path,
                    "path2": path2,
                    "errno": _errno_name(code),
                    "reason": reason,
                }
            },
            ok=False,
        )
        return rc

    def fail_os(self, e: OSError) -> int:
        path = None if e.filename is None else os.fsdecode(e.filename)
        path2 = None if e.filename2 is None else os.fsdecode(e.filename2)
        if path is None and path2 is not None:
            path, path2 = path2, None
        reason = e.strerror or str(e)
        return self.fail(reason, path=path, path2=path2, code=e.errno)


def _print_json(obj: dict[str, Any]) -> None:
    import json

    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


# -- progress ------------------------------------------------------------------------


class Progress:
    """One status line on a terminal, redrawn in place and ended once by :meth:`finish`.

    ``place()`` calls it with ``(done, total)``; ``total`` grows while the source
    is being walked, so until it has stayed the same for ``settle`` seconds only a
    count and a rate are shown; then a bar, percentage, rate and ETA, as pip, uv
    and tqdm draw them.  Nothing is drawn for runs shorter than ``delay``.
    """

    def __init__(
        self,
        stream: IO[str],
        *,
        delay: float = 0.5,
        interval: float = 0.1,
        settle: float = 0.3,
        clock: Callable[[], float] = time.monotonic,
        width: int | None = None,
    ) -> None:
        self.stream = stream
        self.delay, self.interval, self.settle = delay, interval, settle
        self.clock = clock
        self.width = width
        self.start = clock()
        self.last_draw = float("-inf")
        self.total = 0
        self.total_since = self.start
        self.done = 0
        self.drawn = False
        self.lock = threading.Lock()

    def __call__(self, done: int, total: int) -> None:
        with self.lock:
            now = self.clock()
            if total != self.total:
                self.total, self.total_since = total, now
            self.done = max(self.done, done)
            if now - self.start < self.delay or now - self.last_draw < self.interval:
                return
            self._draw(now)

    def finish(self) -> None:
        """End the line (once), with the final count, if anything was drawn."""
        with self.lock:
            if self.drawn:
                self.total_since = float("-inf")  # settled: the run is over
                self._draw(self.clock(), final=True)
                self.stream.write("\n")
                self.stream.flush()
                self.drawn = False

    def _draw(self, now: float, final: bool = False) -> None:
        self.last_draw = now
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        rate_text = f"{_rate(rate)} files/s"
        settled = final or now - self.total_since >= self.settle
        if settled and self.total > 0:
            frac = min(1.0, self.done / self.total)
            tail = f"{self.done:,}/{self.total:,} files  {rate_text}"
            if final:
                tail += f"  in {_clock(elapsed)}"
            elif rate > 0:
                tail += f"  ETA {_clock((self.total - self.done) / rate)}"
            if self.width:
                cols = self.width
            else:
                import shutil

                cols = shutil.get_terminal_size((80, 24)).columns
            bar = max(10, min(30, cols - len(tail) - 10))
            filled = int(bar * frac)
            line = f"[{'#' * filled}{'.' * (bar - filled)}] {frac:4.0%}  {tail}"
        else:
            line = f"{self.done:,} files placed, {self.total:,} found so far  {rate_text}"
        self.stream.write("\r" + line + "\x1b[K")
        self.stream.flush()
        self.drawn = True


def _rate(r: float) -> str:
    return f"{r / 1000:.1f}k" if r >= 1000 else f"{r:.0f}"


def _clock(seconds: float) -> str:
    s = int(seconds + 0.5)
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


# -- probe ---------------------------------------------------------------------------


def _table(rows: Sequence[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


def _notable_links(max_links: int | None) -> bool:
    return max_links is not None and max_links < 1 << 20


def _probe_text(p: dict[str, Any], verbose: bool) -> str:
    tested = "yes" if p["tested"] else f"no ({p['untested_reason']})"
    if p["tested"] and p.get("test_ms") is not None:
        tested += f", {p['test_ms']:.1f} ms"
    errs = p.get("test_errors") or {}

    def cap(name: str) -> str:
        v: str = p[name]
        if name in errs:
            v += f" ({errs[name]})"
        elif v == "maybe":
            v += " (not tested)"
        if name == "hardlink" and v.startswith("yes") and _notable_links(p.get("max_links")):
            v += f", at most {p['max_links']:,} links per file"
        return _explain_errnos(v)

    rows = [
        ("mount point", quote(p["mount_point"])),
        ("filesystem", f"{p['fstype']}" + (f" ({p['kind']})" if p["kind"] != p["fstype"] else "")),
        ("source", quote(p["source"])),
        ("network", "yes" if p["network"] else "no"),
        ("reflink", cap("reflink")),
        ("hardlink", cap("hardlink")),
        ("xattr", cap("xattr")),
        ("tested", tested),
    ]
    if verbose:
        rows[3:3] = [("device", str(p["device"] or "-")), ("options", ",".join(p["options"]))]
    out = f"{quote(p['path'])}\n{_table(rows)}"
    for note in p.get("notes") or []:
        # A static note the live test has settled ("reflink only if created with
        # mkfs -m reflink=1" after a clone worked) only confuses.
        if p["tested"] and not verbose and ("reflink only" in note or "xattrs only" in note):
            continue
        out += f"\n  note: {note}"
    return out


def _best_here(p: dict[str, Any]) -> str:
    for name in ("reflink", "hardlink"):
        if p[name] == "yes":
            return name
    for name in ("reflink", "hardlink"):
        if p[name] == "maybe":
            return f"{name} if it works (not tested), else copy"
    return "copy"


def _plan_verdict(pl: dict[str, Any], dst: dict[str, Any]) -> str:
    first = pl["chain"][0] if pl["chain"] else None
    where = f"to {quote(dst['mount_point'])} ({dst['fstype']})"
    if first is None:
        return f"{where}: nothing, because {pl['unavailable']}"
    dropped = [s for s in pl["steps"] if not s["kept"] and s["reason"] != "not requested"]
    order = [s["strategy"] for s in pl["steps"]]
    before = [s for s in dropped if order.index(s["strategy"]) < order.index(first)]
    because = f", because {before[0]['reason']}" if before and first != "symlink" else ""
    return _explain_errnos(f"{where}: {first}{because}")


def _plan_text(pl: dict[str, Any]) -> str:
    lines = [
        f"plan {quote(pl['src'])} -> {quote(pl['dst'])}",
        f"  chain: {' -> '.join(pl['chain']) or '(none)'}",
    ]
    for step in pl["steps"]:
        mark = "+" if step["kept"] else "-"
        lines.append(f"  {mark} {step['strategy']}: {_explain_errnos(step['reason'])}")
    for a in pl["advice"]:
        lines.append(f"  advice: {_explain_errnos(a)}")
    return "\n".join(lines)


def _cmd_probe(args: argparse.Namespace, out: _Out) -> int:
    from ._mounts import MountTableError, parse_mount_table
    from ._plan import plan
    from ._probe import probe

    table = None
    if args.mount_table is not None:
        try:
            with open(args.mount_table, "rb") as f:
                table = parse_mount_table(f.read().decode("utf-8", "surrogateescape"))
        except OSError as e:
            return out.fail(e.strerror or str(e), path=args.mount_table, code=e.errno)
        except MountTableError as e:
            return out.fail(str(e), path=args.mount_table, code=errno.EINVAL)
    if args.all:
        return _probe_all(args, out, table)
    live = not args.no_live
    try:
        probes = [probe(p, live=live, table=table) for p in args.paths]
        pl = (
            plan(args.paths[0], args.paths[1], live=live, table=table)
            if len(args.paths) == 2
            else None
        )
    except MountTableError as e:
        return out.fail(str(e), code=errno.ENOENT)
    except OSError as e:
        return out.fail_os(e)
    probe_json = [p.to_json() for p in probes]
    plan_json = pl.to_json() if pl else None
    out.emit({"probes": probe_json, "plan": plan_json})
    here: dict[str, Any] = dict(probe_json[0])
    verdict = f"within {quote(here['mount_point'])} ({here['fstype']}): {_best_here(here)}"
    if plan_json is not None:
        verdict += (
            f"; from {quote(here['path'])} {_plan_verdict(dict(plan_json), dict(probe_json[1]))}"
        )
    parts = [verdict]
    parts += [_probe_text(dict(p), out.verbose) for p in probe_json]
    if plan_json is not None:
        parts.append(_plan_text(dict(plan_json)))
        for w in plan_json["warnings"]:
            out.warn(w)
    out.print("\n\n".join(parts))
    return EXIT_OK


def _mount_row(m: Mount, override: frozenset[str]) -> dict[str, Any]:
    from ._classify import classify

    t = classify(m)
    return {
        "mount_point": m.mount_point,
        "fstype": m.fstype,
        "source": m.source,
        "mount_id": m.mount_id,
        "read_only": m.read_only,
        "kind": t.kind,
        "network": t.network or m.mount_point in override,
        "fuse": t.fuse,
        "reflink": t.reflink,
        "hardlink": t.hardlink,
        "xattr": t.xattr,
        "max_links": t.max_links,
        "notes": list(t.notes),
    }


def _probe_all(args: argparse.Namespace, out: _Out, table: list[Mount] | None) -> int:
    """Every mount, from the mount table alone: no filesystem is touched (a stat on a
    hard NFS mount whose server is gone never returns)."""
    from ._mounts import read_mount_table
    from ._probe import NETWORK_ENV

    if table is None:
        try:
            table = read_mount_table()
        except OSError as e:
            return out.fail_os(e)
        raw = os.environ.get(NETWORK_ENV, "")
        # lexical on purpose: realpath() would touch the filesystems
        override = frozenset(os.path.normpath(p) for p in raw.split(os.pathsep) if p)
    else:
        override = frozenset()
    rows = [_mount_row(m, override) for m in table]
    out.emit({"mounts": rows})
    header = ("MOUNT POINT", "TYPE", "KIND", "NETWORK", "REFLINK", "HARDLINK")
    cells = [
        (
            quote(r["mount_point"]),
            r["fstype"],
            r["kind"],
            "yes" if r["network"] else "no",
            r["reflink"],
            r["hardlink"],
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *cells]
    ]
    lines.append(
        "(from the mount table alone: 'maybe' is what the kind allows; "
        "`linkstrategy probe PATH` tests a mount for real)"
    )
    out.print("\n".join(lines))
    return EXIT_OK


# -- place and replace ---------------------------------------------------------------


def _strategy_arg(text: str) -> StrategyArg:
    from ._plan import parse_strategies

    try:
        parsed = parse_strategies(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return "auto" if parsed is None else parsed


def _strategy_options(args: argparse.Namespace) -> tuple[StrategyArg, bool | None]:
    """``--strategy`` is a preference like the variable (falls back to a copy with one
    warning); ``--strict`` makes either an error instead."""
    strategy: StrategyArg = args.strategy if args.strategy is not None else "auto"
    if args.strict:
        return strategy, True
    return strategy, (False if args.strategy is not None else None)


def _fallback_lines(data: dict[str, Any], verbose: bool) -> list[str]:
    groups: dict[tuple[str, str, str, str], list[str]] = {}
    for f in data["fallbacks"]:
        groups.setdefault((f["from"], f["to"], f["errno"], f["reason"]), []).append(f["path"])
    lines = []
    for (frm, to, name, reason), paths in groups.items():
        line = _explain_errnos(
            f"{_n(len(paths), 'file')} fell back from {frm} to {to} ({reason}: {name})"
        )
        if not verbose:
            line += f", first: {quote(paths[0])}"
        lines.append(line)
        if verbose:
            lines += [f"  {quote(p)}" for p in paths]
    return lines


def _report_text(verb: str, data: dict[str, Any], verbose: bool) -> list[str]:
    by = [f"{n:,} {_VERBS.get(s, s)}" for s, n in data["by_strategy"].items() if n]
    lines = [
        f"{verb} {_n(data['files'], 'file')}, {_n(data['dirs'], 'directory', 'directories')} "
        f"and {_n(data['symlinks'], 'symlink')} in {data['seconds']:.3f} s"
        + (f": {', '.join(by)}" if by else "")
        + (f"; {_size(data['bytes'])} cloned or copied" if data["bytes"] else "")
    ]
    if verbose:
        lines.append(f"chain: {' -> '.join(data['chain'])}, {_n(data['workers'], 'worker')}")
    lines += _fallback_lines(data, verbose)
    lines += [f"skipped {quote(s['path'])}: {s['reason']}" for s in data["skipped"]]
    return lines


def _run_place(args: argparse.Namespace, out: _Out, *, replace: bool) -> int:
    strategy, strict = _strategy_options(args)
    if not replace and args.dry_run:
        return _dry_run(args, out, strategy, strict)
    progress = None if args.json or args.quiet or not sys.stderr.isatty() else Progress(sys.stderr)
    try:
        if replace:
            from ._txn import replace as run

            report: PlaceReport = run(
                args.src,
                args.dst,
                strategy=strategy,
                strict=strict,
                workers=args.workers,
                progress=progress,
                xattrs=not args.no_xattrs,
                times=not args.no_times,
                fsync=args.fsync,
            )
        else:
            from ._place import place

            report = place(
                args.src,
                args.dst,
                strategy=strategy,
                strict=strict,
                workers=args.workers,
                progress=progress,
                xattrs=not args.no_xattrs,
                times=not args.no_times,
                fsync=args.fsync,
            )
    except OSError as e:
        return out.fail_os(e)
    finally:
        if progress is not None:
            progress.finish()
    data = dict(report.to_json())
    out.emit({**data, "dry_run": False} if not replace else data)
    for line in _report_text("replaced with" if replace else "placed", data, out.verbose):
        out.print(line)
    for w in report.warnings:
        out.warn(w)
    return EXIT_OK


def _dry_run(
    args: argparse.Namespace, out: _Out, strategy: StrategyArg, strict: bool | None
) -> int:
    from ._plan import estimate, plan

    try:
        if not os.path.lexists(args.src):
            raise FileNotFoundError(
                errno.ENOENT, "cannot read source: No such file or directory", args.src
            )
        pl: Plan = plan(args.src, args.dst, strategy=strategy, strict=strict, live=not args.no_live)
        if pl.unavailable is not None:
            code, why = pl.unavailable
            return out.fail(why, path=args.src, path2=args.dst, code=code)
        est = estimate(pl)
    except OSError as e:
        return out.fail_os(e)
    plan_json = pl.to_json()
    est_json = est.to_json()
    out.emit(
        {"dry_run": True, "src": args.src, "dst": args.dst, "plan": plan_json, "estimate": est_json}
    )
    by = [f"{n:,} by {s}" for s, n in est_json["by_strategy"].items() if n]
    out.print(f"dry run, nothing placed: {quote(args.src)} -> {quote(args.dst)}")
    out.print(f"  chain: {' -> '.join(pl.chain)}")
    out.print(
        f"  {_n(est.files, 'file')}, {_n(est.dirs, 'directory', 'directories')} and "
        f"{_n(est.symlinks, 'symlink')}" + (f": {', '.join(by)}" if by else "")
    )
    out.print(f"  {_size(est.bytes)} to clone or copy, {_size(est.bytes_written)} to write")
    for s in est.skipped:
        out.print(f"  skipped {quote(s)}: special file, not placed")
    for a in pl.advice:
        out.print(f"  advice: {_explain_errnos(a)}")
    for w in pl.warnings:
        out.warn(w)
    return EXIT_OK


def _cmd_place(args: argparse.Namespace, out: _Out) -> int:
    return _run_place(args, out, replace=False)


def _cmd_replace(args: argparse.Namespace, out: _Out) -> int:
    return _run_place(args, out, replace=True)


# -- remove and gc -------------------------------------------------------------------


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0: {text!r}")
    return v


def _finish_remove(out: _Out, report: RemoveReport, verb: str) -> int:
    for e in report.errors:
        print(f"{PROG}: error: {quote(e.path)}: {_one_line(e.reason)}", file=sys.stderr)
    for m in report.mounts_skipped:
        print(
            f"{PROG}: error: {quote(m)}: mount point (or btrfs subvolume) inside the tree: "
            "left alone",
            file=sys.stderr,
        )
    for f in report.foreign:
        print(f"{PROG}: left alone: {_one_line(f)}", file=sys.stderr)
    data = report.to_json()
    for err in data["errors"]:
        err["errno"] = _errno_name(err["errno"])
    out.emit(data, ok=report.ok)
    line = f"{verb} {_n(report.removed, 'entry', 'entries')} in {report.seconds:.3f} s"
    if report.retries:
        line += f" ({_n(report.retries, 'retry', 'retries')})"
    out.print(line)
    for d in report.deferred:
        if d.path == d.trash:
            out.print(f"still busy, kept in trash: {quote(d.trash)} ({d.reason})")
        else:
            out.print(f"deferred: {quote(d.path)} -> {quote(d.trash)} ({d.reason})")
    return EXIT_OK if report.ok else EXIT_ERROR


def _cmd_remove(args: argparse.Namespace, out: _Out) -> int:
    from ._remove import remove

    try:
        report = remove(args.paths, budget=args.budget, last=tuple(args.last))
    except ValueError as e:  # a malformed --last entry
        raise _Usage(str(e), f"{PROG} remove") from None
    except OSError as e:
        return out.fail_os(e)
    return _finish_remove(out, report, "removed")


def _cmd_gc(args: argparse.Namespace, out: _Out) -> int:
    from ._gc import gc

    try:
        report = gc(args.path, min_age=args.min_age, recursive=args.recursive)
    except OSError as e:
        return out.fail_os(e)
    return _finish_remove(out, report, "collected")


# -- the parser ----------------------------------------------------------------------


def speedups_status() -> str:
    """Whether place() runs its C loop here, and why not where it does not."""
    from ._cloop import speedups_status as status

    return status()[1]


class _VersionAction(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help=kw.get("help"))

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        py = ".".join(map(str, sys.version_info[:3]))
        print(f"{PROG} {__version__} (Python {py}; C loop: {speedups_status()})")
        parser.exit()


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object on stdout (errors included) instead of text",
    )
    noise = p.add_mutually_exclusive_group()
    noise.add_argument(
        "-q", "--quiet", action="store_true", help="print nothing but errors (no warnings)"
    )
    noise.add_argument("-v", "--verbose", action="store_true", help="print more detail")


def _placing_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", metavar="SRC", help="the file or directory to place")
    p.add_argument(
        "dst", metavar="DST", help="where it goes (an existing directory is merged into)"
    )
    p.add_argument(
        "--strategy",
        type=_strategy_arg,
        default=None,
        metavar="LIST",
        help="auto, or an ordered comma-separated list of reflink, hardlink, copy, symlink "
        "(e.g. reflink,copy: never a hardlink); a preference, as LINKSTRATEGY_STRATEGY is: "
        "files are copied, with one warning, when the pair can do none of it "
        "(default: LINKSTRATEGY_STRATEGY, else auto)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail, before writing anything, when the pair can do none of the strategies "
        "asked for (by --strategy or LINKSTRATEGY_STRATEGY) instead of copying",
    )
    p.add_argument(
        "--workers",
        type=_workers,
        default=None,
        metavar="N",
        help="threads (default: one per core up to 4 locally, 48 on a network filesystem)",
    )
    p.add_argument(
        "--no-xattrs",
        action="store_true",
        help="do not copy extended attributes to clones and copies",
    )
    p.add_argument(
        "--no-times",
        action="store_true",
        help="do not give clones and copies the source's times (like cp without -p: "
        "one request less per file on a network filesystem)",
    )
    p.add_argument("--fsync", action="store_true", help="flush every file before it gets its name")
    _common(p)


def _workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Place files by reflink, hardlink or copy, chosen per pair of filesystems; "
        "remove trees reliably on network filesystems.",
        allow_abbrev=False,
        epilog="Exit status: 0 success, 1 error, 2 usage error, 130 interrupted.",
    )
    parser.add_argument(
        "--version",
        action=_VersionAction,
        help="show the version, and whether place()'s C loop is in use, and exit",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name: str, **kw: Any) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, allow_abbrev=False, **kw)
        _SUBPARSERS[name] = p
        return p

    pr = add(
        "probe",
        help="what the filesystem under PATH can do; the plan for placing PATH at DST",
        description="What the filesystem under PATH is and can do (tested live, in a hidden "
        "directory that is removed again); with DST, the plan for placing PATH at DST. "
        "With --all, every mount, from the mount table alone.",
    )
    pr.add_argument("paths", nargs="*", metavar="PATH", help="PATH [DST]; PATH need not exist yet")
    pr.add_argument(
        "--all",
        action="store_true",
        help="every mount in one table, from the mount table alone (touches no filesystem)",
    )
    pr.add_argument(
        "--no-live", action="store_true", help="answer from the mount table only (write nothing)"
    )
    pr.add_argument(
        "--mount-table",
        metavar="FILE",
        help="classify against a saved mount table (mountinfo or /proc/mounts format); "
        "nothing local is touched",
    )
    _common(pr)
    pr.set_defaults(func=_cmd_probe)

    pl = add(
        "place",
        help="place the file or tree SRC at DST",
        description="Place the file or tree SRC at DST by reflink, hardlink or copy, "
        "as the pair of filesystems allows.",
    )
    _placing_options(pl)
    pl.add_argument(
        "--dry-run",
        action="store_true",
        help="write nothing: show the chain, how many files each strategy would take, "
        "and the bytes to clone, copy or write",
    )
    pl.add_argument(
        "--no-live",
        action="store_true",
        help="with --dry-run: do not live-test the destination's filesystem",
    )
    pl.set_defaults(func=_cmd_place)

    rp = add(
        "replace",
        help="replace DST with SRC, all or nothing",
        description="Place SRC beside DST and swap it in with one rename: DST is always "
        "either the complete old tree or the complete new one, even after kill -9.",
    )
    _placing_options(rp)
    rp.set_defaults(func=_cmd_replace)

    rm = add(
        "remove",
        help="remove files and trees; retries busy entries, defers held-open files to a trash",
        description="Remove files, symlinks and trees without crossing mounts or following "
        "symlinks.  Busy entries are retried within the budget; what is still held "
        "open is moved to a hidden .linkstrategy-trash next to it (shown, exit 0).",
    )
    rm.add_argument("paths", nargs="+", metavar="PATH", help="files, symlinks or directories")
    rm.add_argument(
        "--budget",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="total time to spend retrying busy entries (default 5)",
    )
    rm.add_argument(
        "--last",
        action="append",
        default=[],
        metavar="NAME",
        help="remove NAME (relative to each directory PATH, or absolute) after everything "
        "else, in the order given; repeatable (e.g. --last METADATA --last RECORD)",
    )
    _common(rm)
    rm.set_defaults(func=_cmd_remove)

    g = add(
        "gc",
        help="empty linkstrategy trash and finish interrupted replace calls under PATH",
        description="Empty linkstrategy trash, finish or roll back interrupted replace calls, "
        "and remove the temporaries of dead processes, at PATH, in its entries and in its "
        "parent (--recursive: in every directory below PATH).  Another user's trash or "
        "journal is left alone and reported.",
    )
    g.add_argument("path", metavar="PATH", help="the directory to clean up under")
    g.add_argument(
        "--min-age",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="keep trash entries younger than this (default 0)",
    )
    g.add_argument(
        "--recursive",
        action="store_true",
        help="look in every directory below PATH too (default: PATH, its entries and its "
        "parent only, so gc costs what there is to collect, not the size of the tree)",
    )
    _common(g)
    g.set_defaults(func=_cmd_gc)
    return parser


def _check(args: argparse.Namespace) -> None:
    """What argparse cannot say: raises _Usage."""
    prog = f"{PROG} {args.command}"
    sub = _subparser(args.command)
    for name in ("src", "dst", "path"):
        value = getattr(args, name, None)
        if value == []:  # Python < 3.12 turns a literal "--" operand into []
            setattr(args, name, "--")
        elif value == "":
            raise _Usage(f"{name.upper()} must not be empty", prog, sub)
    if args.command == "probe":
        if args.all and args.paths:
            raise _Usage("--all takes no PATH", prog, sub)
        if not args.all and not 1 <= len(args.paths) <= 2:
            n = _n(len(args.paths), "path")
            raise _Usage(f"takes PATH [DST] (or --all), got {n}", prog, sub)
    if args.command in ("probe", "place", "replace"):
        from ._plan import strategies_from_env

        try:
            strategies_from_env()
        except ValueError as e:
            raise _Usage(str(e)) from None


_SUBPARSERS: dict[str, argparse.ArgumentParser] = {}


def _subparser(command: str) -> argparse.ArgumentParser | None:
    return _SUBPARSERS.get(command)


def _wants_json(argv: Sequence[str]) -> tuple[bool, str]:
    """For a usage error: was --json asked for, and for which command?"""
    head = list(argv[: argv.index("--")] if "--" in argv else argv)
    commands = ("probe", "place", "replace", "remove", "gc")
    command = next((a for a in head if a in commands), "")
    return "--json" in head, command


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _check(args)
    except SystemExit as e:  # --help, --version
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    except _Usage as e:
        json_mode, command = _wants_json(argv)
        if e.parser is not None:
            e.parser.print_usage(sys.stderr)
        out = _Out(command, json_mode=json_mode, quiet=False, verbose=False)
        return out.fail(e.message, kind="usage", rc=EXIT_USAGE, prog=e.prog)
    except Exception as e:  # a bug: still one line, never a traceback
        json_mode, command = _wants_json(argv)
        out = _Out(command, json_mode=json_mode, quiet=False, verbose=False)
        return out.fail(f"internal error: {type(e).__name__}: {e}", kind="internal")
    out = _Out(args.command, json_mode=args.json, quiet=args.quiet, verbose=args.verbose)
    return _run(args, out)


def _run(args: argparse.Namespace, out: _Out) -> int:
    from ._log import Collect

    # The library's warnings are printed once, at the end, in the CLI's own format
    # (and nothing behind its back): collected, not logged.
    with Collect() as messages:
        try:
            rc: int = args.func(args, out)
        except _Usage as e:
            return out.fail(e.message, kind="usage", rc=EXIT_USAGE, prog=e.prog)
        except KeyboardInterrupt:
            return out.fail("interrupted", kind="interrupted", rc=EXIT_INTERRUPTED)
        except BrokenPipeError:
            _quiet_stdout()
            return EXIT_ERROR
        except OSError as e:
            return out.fail_os(e)
        except Exception as e:  # a bug: still one line, never a traceback
            return out.fail(f"internal error: {type(e).__name__}: {e}", kind="internal")
        for message in messages:
            out.warn(message)
        return rc


def _quiet_stdout() -> None:
    """After EPIPE (``linkstrategy ... | head``): no second error when Python flushes."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
