"""Requests per file on a network filesystem (issue #11): what each placed or removed
file costs in round trips, counted by the FUSE daemon (``cachedfs``: the kernel caches
attributes and entries as an NFS client does).  Counted as the difference between a
tree of many files and one of few in one directory, so only what each further file
costs is compared, against ``cp`` and ``rm`` on the same mount.  Counts, not times."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import linkstrategy

FEW, MANY = 10, 50


def source(base: Path, n: int) -> Path:
    src = base / f"src{n}"
    (src / "pkg").mkdir(parents=True)
    for i in range(n):
        (src / "pkg" / f"m{i:03}.py").write_text("x" * 3000)
    return src


def per_file(
    fs: Any, tmp_path: Path, run: Callable[[Path, Path], object], *, src_on_mount: bool = False
) -> dict[str, float]:
    """Requests each further file costs ``run(src, dst)``, by operation (the source on
    the local disk, or on the mount itself)."""
    counts = []
    mnt = Path(fs.mountpoint)
    linkstrategy.probe(mnt)  # once per mount and process: not a cost of each file
    for n in (FEW, MANY):
        src = source(mnt / tmp_path.name if src_on_mount else tmp_path, n)
        before = fs.calls()
        run(src, mnt / f"dst-{tmp_path.name}-{n}")
        after = fs.calls()
        counts.append({op: after.get(op, 0) - before.get(op, 0) for op in after})
    ops = set(counts[0]) | set(counts[1])
    marginal = {op: (counts[1].get(op, 0) - counts[0].get(op, 0)) / (MANY - FEW) for op in ops}
    return {op: v for op, v in marginal.items() if v}


def no_more(ours: dict[str, float], peer: dict[str, float]) -> None:
    """No kind of request more often a file than the peer's (give or take one request in
    the whole difference: the kernel's own revalidation timing)."""
    slack = 1 / (MANY - FEW) + 1e-9
    extra = {op: n - peer.get(op, 0.0) for op, n in ours.items()}
    assert all(n <= slack for n in extra.values()), (ours, peer)


def cp(*args: str) -> Callable[[Path, Path], object]:
    return lambda src, dst: subprocess.run(["cp", *args, str(src), str(dst)], check=True)


def test_a_copy_without_times_costs_no_more_requests_a_file_than_cp(
    cachedfs: Any, tmp_path: Path
) -> None:
    """``times=False, xattrs=False`` (``--no-times --no-xattrs``): per file, the requests
    `cp -r` makes and no other; with times (the default), those of `cp -p`.
    One worker, as `cp`: with several, files of one directory are created in parallel
    and the kernel revalidates the directory between them (a GETATTR more for some)."""
    peer = per_file(cachedfs, tmp_path / "a", cp("-r", "--reflink=never"))
    bare = per_file(
        cachedfs,
        tmp_path / "b",
        lambda s, d: linkstrategy.place(
            s, d, strategy="copy", times=False, xattrs=False, workers=1
        ),
    )
    full = per_file(
        cachedfs,
        tmp_path / "c",
        lambda s, d: linkstrategy.place(s, d, strategy="copy", workers=1),
    )
    no_more(bare, peer)
    # With times: as `cp -p` (which also sets the mode with a request of its own where
    # place() creates the file with it).  (libfuse's high-level API answers a SETATTR
    # with a getattr of its own, counted here though it is no request on the wire.)
    keep = per_file(cachedfs, tmp_path / "d", cp("-r", "--preserve=mode,timestamps"))
    no_more(full, keep)
    assert full["utimens"] == 1.0


def test_a_hardlink_costs_no_more_requests_a_file_than_cp_al(cachedfs: Any, tmp_path: Path) -> None:
    peer = per_file(cachedfs, tmp_path / "a", cp("-al"), src_on_mount=True)
    ours = per_file(
        cachedfs,
        tmp_path / "b",
        lambda s, d: linkstrategy.place(s, d, strategy="hardlink", workers=1),
        src_on_mount=True,
    )
    assert sum(ours.values()) <= sum(peer.values()), (ours, peer)


def test_remove_costs_no_more_requests_a_file_than_rm(cachedfs: Any, tmp_path: Path) -> None:
    def removal(run: Callable[[Path], object], tag: str) -> dict[str, float]:
        def go(src: Path, dst: Path) -> None:
            subprocess.run(["cp", "-r", str(src), str(dst)], check=True)
            run(dst)

        # the copy's requests cancel out in the difference only if they are the same
        # for both: count the copy alone too
        copy = per_file(cachedfs, tmp_path / f"{tag}-copy", cp("-r"))
        both = per_file(cachedfs, tmp_path / tag, go)
        ops = set(both) | set(copy)
        return {op: both.get(op, 0) - copy.get(op, 0) for op in ops}

    peer = removal(lambda p: subprocess.run(["rm", "-rf", str(p)], check=True), "rm")
    ours = removal(lambda p: linkstrategy.remove(p, workers=1), "ours")
    assert sum(ours.values()) <= sum(peer.values()), (ours, peer)
