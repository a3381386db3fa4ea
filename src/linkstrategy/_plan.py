"""``plan(src, dst)``: which strategies a (source, destination) pair can use, and why.

The rules, from the kernel (fsfacts.md §5, verified on Linux 6.18):

* a **reflink** (FICLONE, copy_file_range's remap) needs one *superblock* that
  clones: two mounts of one filesystem (a bind mount, a btrfs ``subvol=`` mount)
  may clone between them;
* a **hardlink** (and a rename) needs one *mount*: link(2) across two mounts of
  the same filesystem fails with EXDEV, and so does a link between two btrfs
  subvolumes inside one mount;
* a **copy** always works.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from ._mounts import Mount, existing_ancestor
from ._probe import Probe, probe

__all__ = ["STRATEGIES", "STRATEGY_ENV", "Plan", "Step", "Strategy", "plan"]

Strategy = Literal["reflink", "hardlink", "copy"]
STRATEGIES: tuple[Strategy, ...] = ("reflink", "hardlink", "copy")

#: Environment variable forcing one strategy for every pair, as UV_LINK_MODE does
#: for uv: ``reflink``, ``hardlink``, ``copy`` or ``auto``.
STRATEGY_ENV = "LINKSTRATEGY_STRATEGY"

#: Worker threads per destination.  Locally the work is kernel-bound metadata
#: updates that scale little with threads (on a 2-core VM, XFS link/clone ran no
#: faster with 4 threads than with 2; bench/README.md): one per core, at most 4.
#: On a network filesystem every create/link/rename is a round trip, and
#: throughput comes from many in flight (EFS serves ~35k ops/s per filesystem).
LOCAL_WORKERS = max(1, min(4, os.cpu_count() or 2))
NETWORK_WORKERS = 48


@dataclass(frozen=True)
class Step:
    """One strategy considered for the pair: kept in the chain or dropped, and why."""

    strategy: Strategy
    kept: bool
    reason: str
    #: For a dropped step: True when the pair certainly cannot do it (forcing it
    #: is an error before anything is written); False when it was only judged not
    #: worth trying.
    impossible: bool = False


@dataclass(frozen=True)
class Plan:
    """The strategy chain for one (source, destination) pair.

    ``chain`` is tried in order per file; ``steps`` gives every strategy with the
    reason it was kept or dropped; ``advice`` says what a person can change.
    """

    src: str
    dst: str
    chain: tuple[Strategy, ...]
    steps: tuple[Step, ...]
    advice: tuple[str, ...]
    src_probe: Probe
    dst_probe: Probe
    same_filesystem: bool
    same_mount: bool
    network: bool
    workers: int
    forced: Strategy | None = None

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(f"{s.strategy}: {s.reason}" for s in self.steps)

    def to_json(self) -> dict[str, Any]:
        """The stable JSON form (keys documented in docs/cli.md)."""
        return {
            "src": self.src,
            "dst": self.dst,
            "chain": list(self.chain),
            "reasons": list(self.reasons),
            "advice": list(self.advice),
            "steps": [
                {"strategy": s.strategy, "kept": s.kept, "reason": s.reason} for s in self.steps
            ],
            "same_filesystem": self.same_filesystem,
            "same_mount": self.same_mount,
            "network": self.network,
            "workers": self.workers,
            "forced": self.forced,
        }


def _describe(p: Probe) -> str:
    where = "network" if p.network else "local"
    efs = p.traits.kind == "efs"
    kind = p.mount.fstype + (", EFS" if efs else "")
    return f"{p.mount.mount_point} ({kind}, {where})"


def _same_mount(a: Mount, b: Mount) -> bool:
    if a.mount_id is not None and b.mount_id is not None:
        return a.mount_id == b.mount_id
    return (a.mount_point, a.source, a.fstype) == (b.mount_point, b.source, b.fstype)


def _same_subvolume(src: str, dst: str, m: Mount, local: bool) -> bool:
    """btrfs: link() across subvolumes gives EXDEV; each subvolume has its own st_dev."""
    if m.fstype not in ("btrfs", "bcachefs") or not local:
        return True
    try:
        return os.stat(existing_ancestor(src)).st_dev == os.stat(existing_ancestor(dst)).st_dev
    except OSError:
        return True


def _forced_from_env(strategy: str) -> Strategy | None:
    if strategy == "auto":
        strategy = os.environ.get(STRATEGY_ENV, "auto").strip().lower() or "auto"
    if strategy == "auto":
        return None
    if strategy not in STRATEGIES:
        raise ValueError(
            f"unknown strategy {strategy!r}: expected one of auto, {', '.join(STRATEGIES)}"
        )
    return strategy  # narrowed by the membership test above


def plan(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    strategy: str = "auto",
    live: bool = True,
    table: list[Mount] | None = None,
) -> Plan:
    """The ordered strategy chain for placing ``src`` at ``dst``, with reasons and advice.

    ``strategy="auto"`` honours ``$LINKSTRATEGY_STRATEGY``; a named strategy keeps
    only that one (``place`` then refuses it before writing if the pair certainly
    cannot do it).  ``table`` plans against a saved mount table without touching
    anything local.

    >>> import linkstrategy
    >>> p = linkstrategy.plan("/tmp/cache/pkg", "/tmp/venv/pkg")
    >>> p.chain[-1]
    'copy'
    """
    s, d = os.fspath(src), os.fspath(dst)
    forced = _forced_from_env(strategy)
    # Only the destination is tested live: what the pair can do is decided on the
    # destination's filesystem, and a source (a cache other processes are reading)
    # must not get test files written into it.
    sp = probe(s, live=False, table=table)
    dp = probe(d, live=live, table=table)
    local = table is None
    same_fs = sp.mount.superblock_key == dp.mount.superblock_key
    same_mount = same_fs and _same_mount(sp.mount, dp.mount)
    same_subvol = same_mount and _same_subvolume(s, d, dp.mount, local)
    network = sp.network or dp.network
    steps: tuple[Step, ...] = (
        _reflink_step(sp, dp, same_fs, network),
        _hardlink_step(sp, dp, same_fs, same_mount, same_subvol),
        Step("copy", True, "always possible" + (" (over the network)" if network else "")),
    )
    if forced is not None:
        steps = tuple(
            Step(
                st.strategy,
                st.strategy == forced,
                st.reason if st.strategy == forced else "not forced",
                st.impossible if st.strategy == forced else False,
            )
            for st in steps
        )
        chain: tuple[Strategy, ...] = (forced,)
    else:
        chain = tuple(st.strategy for st in steps if st.kept)
        if network and "hardlink" in chain:
            # On a network filesystem a hardlink is one round trip (LINK), a clone at
            # least three (create, CLONE, setattr): prefer the link.
            chain = ("hardlink", *(c for c in chain if c != "hardlink"))
    return Plan(
        src=s,
        dst=d,
        chain=chain,
        steps=steps,
        advice=_advice(sp, dp, same_fs, same_mount, same_subvol, chain),
        src_probe=sp,
        dst_probe=dp,
        same_filesystem=same_fs,
        same_mount=same_mount,
        network=network,
        workers=NETWORK_WORKERS if network else LOCAL_WORKERS,
        forced=forced,
    )


def _reflink_step(sp: Probe, dp: Probe, same_fs: bool, network: bool) -> Step:
    if not same_fs:
        return Step(
            "reflink", False, "source and destination are different filesystems", impossible=True
        )
    if dp.reflink == "no":
        why = dp.errors.get("reflink") if dp.tested else None
        detail = f" (clone test: {why})" if why else ""
        return Step(
            "reflink", False, f"{dp.mount.fstype} cannot clone here{detail}", impossible=True
        )
    if dp.reflink == "yes":
        how = "tested" if dp.tested else "known"
        return Step("reflink", True, f"one {dp.mount.fstype} filesystem; clone {how} to work")
    if network:
        # Never assume a clone works untested on a network filesystem: every failed
        # attempt is a round trip.
        return Step("reflink", False, "untested clone on a network filesystem")
    return Step("reflink", True, f"one {dp.mount.fstype} filesystem; clone may work (untested)")


def _hardlink_step(
    sp: Probe, dp: Probe, same_fs: bool, same_mount: bool, same_subvol: bool
) -> Step:
    if not same_fs:
        return Step(
            "hardlink", False, "source and destination are different filesystems", impossible=True
        )
    if not same_mount:
        return Step(
            "hardlink",
            False,
            "same filesystem but different mounts (link() gives EXDEV)",
            impossible=True,
        )
    if not same_subvol:
        return Step(
            "hardlink", False, "different btrfs subvolumes (link() gives EXDEV)", impossible=True
        )
    if dp.hardlink == "no":
        why = dp.errors.get("hardlink") if dp.tested else None
        detail = f" ({why})" if why else ""
        return Step(
            "hardlink", False, f"{dp.mount.fstype} does not hardlink{detail}", impossible=True
        )
    how = "tested" if dp.hardlink == "yes" and dp.tested else "expected"
    limit = f"; at most {dp.traits.max_links} links per file" if dp.traits.max_links else ""
    return Step("hardlink", True, f"same mount; hardlink {how} to work{limit}")


def _network_prefers_link(sp: Probe, dp: Probe) -> bool:
    return (sp.network or dp.network) and dp.reflink == "yes"


def _advice(
    sp: Probe,
    dp: Probe,
    same_fs: bool,
    same_mount: bool,
    same_subvol: bool,
    chain: tuple[Strategy, ...],
) -> tuple[str, ...]:
    out: list[str] = []
    if not same_fs:
        cost = "over the network" if sp.network or dp.network else "byte by byte"
        out.append(
            f"source {sp.path} on {_describe(sp)} and destination {dp.path} on "
            f"{_describe(dp)} are on different filesystems: files will be copied {cost}; "
            "put the cache (or TMPDIR, or the staging directory) on the destination's "
            "filesystem to enable hardlinks" + (" and reflinks" if dp.reflink != "no" else "")
        )
    elif not same_mount:
        out.append(
            f"{sp.mount.mount_point} and {dp.mount.mount_point} are two mounts of one "
            f"{dp.mount.fstype} filesystem (a bind mount?): hardlinks fail with EXDEV "
            "across mounts; reach both paths through one mount point to enable hardlinks"
        )
    elif not same_subvol:
        out.append(
            "source and destination are in different btrfs subvolumes: reflinks work, "
            "hardlinks do not; keep the cache in the destination's subvolume to hardlink"
        )
    if same_fs and dp.mount.fstype == "xfs" and dp.reflink == "no":
        out.append(
            f"the XFS at {dp.mount.mount_point} was made without reflink: recreate it with "
            "`mkfs.xfs -m reflink=1` (the default since xfsprogs 5.1) to clone files"
        )
    if dp.network:
        out.append(
            f"destination {dp.mount.mount_point} is a network filesystem ({dp.traits.kind}): "
            f"every file costs round trips; linkstrategy keeps {NETWORK_WORKERS} "
            "operations in flight"
        )
    if dp.traits.max_links and "hardlink" in chain:
        out.append(
            f"{dp.traits.kind} allows at most {dp.traits.max_links} hardlinks per file: "
            "files at the limit are copied (EMLINK), the rest stay hardlinked"
        )
    if chain and chain[0] == "hardlink" and _network_prefers_link(sp, dp):
        out.append(
            "on a network filesystem a hardlink costs one round trip and a clone several: "
            "hardlinks come first; force 'reflink' if destinations are modified in place"
        )
    elif chain and chain[0] == "hardlink":
        out.append(
            "hardlinked files share their inode with the source: editing one in place "
            "changes the other; use strategy 'copy' (or a reflink-capable filesystem) "
            "if destinations are modified"
        )
    if not dp.tested and dp.untested_reason not in (
        None,
        "live test not requested",
        "saved mount table",
    ):
        out.append(f"destination not tested live: {dp.untested_reason}")
    return tuple(out)
