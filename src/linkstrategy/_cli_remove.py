"""``linkstrategy remove`` and ``linkstrategy gc``.

Exit codes: 0 when everything named is gone (entries moved to the trash because
they were held open count as gone: they are shown, not errors), 1 when something
could not be removed, a root was refused, or a mount inside a tree was left
alone (the tree is still there), 2 on a usage error.  Errors are one line each on
stderr, ``linkstrategy: error: <path>: <reason>``; ``--json`` prints exactly one
JSON object on stdout in every case (with ``"errors"`` filled in when there are).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from ._errors import LinkStrategyError
from ._remove import RemoveFailure, RemoveReport, gc, remove

__all__ = ["add_remove_commands"]

PROG = "linkstrategy"


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0: {text!r}")
    return v


def add_remove_commands(subparsers: Any) -> None:
    """Register ``remove`` and ``gc`` on an ``argparse`` subparsers object."""
    rm = subparsers.add_parser(
        "remove",
        help="remove files and trees; retries busy entries, defers held-open files to a trash",
        description="Remove files, symlinks and trees without crossing mounts or following "
        "symlinks.  Busy entries are retried within the budget; what is still held "
        "open is moved to a hidden .linkstrategy-trash next to it (shown, exit 0).",
    )
    rm.add_argument("paths", nargs="+", metavar="PATH")
    rm.add_argument("--json", action="store_true", help="print one JSON object")
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
    rm.set_defaults(func=_cmd_remove)

    g = subparsers.add_parser(
        "gc",
        help="empty linkstrategy trash and finish interrupted replace() calls under PATH",
    )
    g.add_argument("path", metavar="PATH")
    g.add_argument("--json", action="store_true", help="print one JSON object")
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
    g.set_defaults(func=_cmd_gc)


def _err(path: str, reason: str) -> None:
    print(f"{PROG}: error: {path}: {reason}", file=sys.stderr)


def _finish(args: argparse.Namespace, report: RemoveReport, verb: str) -> int:
    for e in report.errors:
        _err(e.path, e.reason)
    for m in report.mounts_skipped:
        _err(m, "mount point (or btrfs subvolume) inside the tree: left alone")
    for f in report.foreign:
        print(f"{PROG}: left alone: {f}", file=sys.stderr)
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        line = f"{verb} {report.removed} entries in {report.seconds:.3f} s"
        if report.retries:
            line += f" ({report.retries} retries)"
        print(line)
        for d in report.deferred:
            if d.path == d.trash:
                print(f"still busy, kept in trash: {d.trash} ({d.reason})")
            else:
                print(f"deferred: {d.path} -> {d.trash} ({d.reason})")
    return 0 if report.ok else 1


def _refused(args: argparse.Namespace, e: OSError) -> int:
    path = str(e.filename) if e.filename is not None else "?"
    reason = e.strerror or str(e)
    _err(path, reason)
    if args.json:
        report = RemoveReport(errors=(RemoveFailure(path, e.errno or 0, reason),))
        json.dump(report.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 1


def _cmd_remove(args: argparse.Namespace) -> int:
    try:
        report = remove(args.paths, budget=args.budget, last=tuple(args.last))
    except ValueError as e:  # a malformed --last entry
        print(f"{PROG} remove: error: {e}", file=sys.stderr)
        return 2
    except (LinkStrategyError, OSError) as e:
        return _refused(args, e)
    return _finish(args, report, "removed")


def _cmd_gc(args: argparse.Namespace) -> int:
    try:
        report = gc(args.path, min_age=args.min_age, recursive=args.recursive)
    except (LinkStrategyError, OSError) as e:
        return _refused(args, e)
    return _finish(args, report, "collected")
