"""The command line: ``linkstrategy probe|place|remove|gc``.

``main(argv) -> int`` is the whole contract: 0 on success, 1 on an error (one
line on stderr naming the path and the reason, no traceback), 2 on a usage
error.  ``--json`` prints exactly one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__

__all__ = ["main"]

PROG = "linkstrategy"


def _error(msg: str) -> int:
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    return 1


def _describe_error(e: OSError) -> str:
    where = e.filename if e.filename is not None else ""
    if e.filename2 is not None:
        where = f"{where} -> {e.filename2}"
    reason = e.strerror or str(e)
    return f"{where}: {reason}" if where else reason


def _print_json(obj: dict[str, Any]) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


# -- probe ---------------------------------------------------------------------------


def _table(rows: Sequence[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


def _probe_text(p: dict[str, Any]) -> str:
    tested = "yes" if p["tested"] else f"no ({p['untested_reason']})"
    if p["tested"] and p.get("test_ms") is not None:
        tested += f", {p['test_ms']:.1f} ms"
    errs = p.get("test_errors") or {}

    def cap(name: str) -> str:
        v: str = p[name]
        return f"{v} ({errs[name]})" if name in errs else v

    rows = [
        ("mount point", p["mount_point"]),
        ("fstype", p["fstype"]),
        ("source", p["source"]),
        ("device", str(p["device"] or "-")),
        ("kind", p["kind"]),
        ("network", "yes" if p["network"] else "no"),
        ("reflink", cap("reflink")),
        ("hardlink", cap("hardlink")),
        ("xattr", cap("xattr")),
        ("tested", tested),
    ]
    if p.get("max_links"):
        rows.append(("max links", str(p["max_links"])))
    out = f"{p['path']}\n{_table(rows)}"
    for note in p.get("notes") or []:
        out += f"\n  note: {note}"
    return out


def _plan_text(pl: dict[str, Any]) -> str:
    lines = [f"plan {pl['src']} -> {pl['dst']}", f"  chain: {' -> '.join(pl['chain'])}"]
    for step in pl["steps"]:
        mark = "+" if step["kept"] else "-"
        lines.append(f"  {mark} {step['strategy']}: {step['reason']}")
    for a in pl["advice"]:
        lines.append(f"  advice: {a}")
    return "\n".join(lines)


def _cmd_probe(args: argparse.Namespace) -> int:
    from ._mounts import MountTableError, parse_mount_table
    from ._plan import plan
    from ._probe import probe

    table = None
    if args.mount_table is not None:
        try:
            with open(args.mount_table, "rb") as f:
                table = parse_mount_table(f.read().decode("utf-8", "surrogateescape"))
        except OSError as e:
            return _error(f"{args.mount_table}: {e.strerror}")
        except MountTableError as e:
            return _error(f"{args.mount_table}: {e}")
    live = not args.no_live
    try:
        probes = [probe(p, live=live, table=table) for p in args.paths]
        pl = (
            plan(args.paths[0], args.paths[1], live=live, table=table)
            if len(args.paths) == 2
            else None
        )
    except MountTableError as e:
        return _error(str(e))
    except OSError as e:
        return _error(_describe_error(e))
    probe_json = [p.to_json() for p in probes]
    if args.json:
        _print_json({"probes": probe_json, "plan": pl.to_json() if pl else None})
    else:
        parts = [_probe_text(p) for p in probe_json]
        if pl is not None:
            parts.append(_plan_text(pl.to_json()))
        print("\n\n".join(parts))
    return 0


# -- place ---------------------------------------------------------------------------


def _progress_printer() -> Callable[[int, int], None] | None:
    if not sys.stderr.isatty():
        return None
    start = time.monotonic()
    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if now - start < 0.5 or (now - last[0] < 0.1 and done < total):
            return
        last[0] = now
        width = 30
        filled = width * done // max(total, 1)
        end = "\n" if done >= total else ""
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} files{end}")
        sys.stderr.flush()

    return show


def _size(n: int) -> str:
    size, unit = float(n), "bytes"
    for bigger in ("kB", "MB", "GB"):
        if size < 1000:
            break
        size, unit = size / 1000, bigger
    return f"{n} bytes" if unit == "bytes" else f"{size:.1f} {unit}"


def _cmd_place(args: argparse.Namespace) -> int:
    from ._place import place

    try:
        report = place(
            args.src,
            args.dst,
            strategy=args.strategy,
            workers=args.workers,
            progress=None if args.json else _progress_printer(),
            xattrs=not args.no_xattrs,
            fsync=args.fsync,
        )
    except OSError as e:
        return _error(_describe_error(e))
    data = report.to_json()
    if args.json:
        _print_json(data)
        return 0
    by = ", ".join(f"{k} {v}" for k, v in data["by_strategy"].items() if v) or "nothing"
    print(
        f"placed {data['files']} files, {data['dirs']} dirs, {data['symlinks']} symlinks "
        f"({_size(data['bytes'])} cloned or copied) in {data['seconds']:.3f} s: {by}"
    )
    for w in data["warnings"]:
        print(f"warning: {w}")
    if data["fallbacks"]:
        print(f"{len(data['fallbacks'])} fallbacks, first: {data['fallbacks'][0]}")
    for s in data["skipped"]:
        print(f"skipped {s['path']}: {s['reason']}")
    return 0


# -- main ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Place files by reflink, hardlink or copy, chosen per pair of filesystems; "
        "remove trees reliably on network filesystems.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    pr = sub.add_parser(
        "probe", help="what the filesystem under PATH can do; the plan for PATH DST"
    )
    pr.add_argument("paths", nargs="+", metavar="PATH", help="PATH [DST]")
    pr.add_argument("--json", action="store_true", help="print one JSON object")
    pr.add_argument("--no-live", action="store_true", help="static answer from the mount table")
    pr.add_argument(
        "--mount-table",
        metavar="FILE",
        help="classify against a saved mount table (mountinfo or /proc/mounts format); "
        "nothing local is touched",
    )
    pr.set_defaults(func=_cmd_probe)

    pl = sub.add_parser("place", help="place the file or tree SRC at DST")
    pl.add_argument("src", metavar="SRC")
    pl.add_argument("dst", metavar="DST")
    pl.add_argument("--strategy", default="auto", choices=["auto", "reflink", "hardlink", "copy"])
    pl.add_argument("--workers", type=int, default=None, metavar="N")
    pl.add_argument("--json", action="store_true", help="print one JSON object")
    pl.add_argument("--no-xattrs", action="store_true", help="do not copy extended attributes")
    pl.add_argument("--fsync", action="store_true", help="flush every file before renaming it")
    pl.set_defaults(func=_cmd_place)

    try:
        from ._cli_remove import add_remove_commands
    except ImportError:  # pragma: no cover - the remove module is part of the package
        pass
    else:
        add_remove_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: usage errors exit 2, --help/--version exit 0
        return int(e.code) if isinstance(e.code, int) else 2
    if args.command == "probe" and len(args.paths) > 2:
        print(
            f"{PROG} probe: error: takes PATH [DST], got {len(args.paths)} paths", file=sys.stderr
        )
        return 2
    if getattr(args, "workers", None) is not None and args.workers < 1:
        print(f"{PROG} place: error: --workers must be at least 1", file=sys.stderr)
        return 2
    try:
        rc: int = args.func(args)
    except KeyboardInterrupt:
        return _error("interrupted")
    except BrokenPipeError:
        return 1
    return rc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
