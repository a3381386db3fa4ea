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

import errno
import os
import stat
import threading

from . import _args
from ._log import log
from ._mounts import Mount, existing_ancestor
from ._owner import TXN_SUFFIX
from ._probe import Probe, probe
from ._record import record

TYPE_CHECKING = False  # mypy treats any name TYPE_CHECKING as true; typing stays unloaded
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Literal, TypeAlias, TypedDict

    from ._args import AnyPath
    from ._probe import ProbeJSON

__all__ = [
    "STRATEGIES",
    "STRATEGY_ENV",
    "Estimate",
    "Plan",
    "Step",
    "Strategy",
    "StrategyArg",
    "estimate",
    "parse_strategies",
    "plan",
    "strategies_from_env",
]


if TYPE_CHECKING:
    #: One way of putting a file at its destination.  ``symlink`` is never chosen by
    #: ``auto``: only when asked for.
    Strategy: TypeAlias = Literal["reflink", "hardlink", "copy", "symlink"]
    #: What ``strategy=`` accepts: ``"auto"``, one strategy, or an ordered list of them.
    StrategyArg: TypeAlias = Literal["auto"] | Strategy | Sequence[Strategy]
else:

    def __getattr__(name: str) -> object:
        """``Strategy`` and ``StrategyArg`` for code that reads them at run time
        (``linkstrategy.Strategy``): made on first use, as they need typing."""
        if name not in ("Strategy", "StrategyArg"):  # the import system asks for __path__
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from collections.abc import Sequence
        from typing import Literal

        strategy = Literal[STRATEGIES]
        aliases = {
            "Strategy": strategy,
            "StrategyArg": Literal["auto"] | strategy | Sequence[strategy],
        }
        globals().update(aliases)
        return aliases[name]


STRATEGIES: tuple[Strategy, ...] = ("reflink", "hardlink", "copy", "symlink")
#: What ``auto`` chooses from, in its order of preference.
AUTO_STRATEGIES: tuple[Strategy, ...] = ("reflink", "hardlink", "copy")

#: Environment variable with a *preferred* strategy list for every pair, as
#: UV_LINK_MODE is for uv: ``auto``, a strategy, or a comma-separated list
#: (``reflink,copy``).  A preference: when the pair cannot do any of them, files
#: are copied with one warning (``strict=True`` makes that an error instead).
STRATEGY_ENV = "LINKSTRATEGY_STRATEGY"

#: Worker threads per destination.  Locally the work is kernel-bound metadata
#: updates that scale little with threads (on a 2-core VM, XFS link/clone ran no
#: faster with 4 threads than with 2; bench/README.md): one per core, at most 4.
#: On a network filesystem every create/link/rename is a round trip, and
#: throughput comes from many in flight (EFS serves ~35k ops/s per filesystem).
LOCAL_WORKERS = max(1, min(4, os.cpu_count() or 2))
NETWORK_WORKERS = 48

#: Hardlink limits at or above this are not worth mentioning (XFS: 2**31 - 1).
_NOTABLE_MAX_LINKS = 1 << 20

_SYMLINK_REASON = (
    "a symlink to the source, only when asked for: the source must outlive the "
    "destination, and editing a placed file edits the source"
)

_warned: set[tuple[object, ...]] = set()
_warned_lock = threading.Lock()


if TYPE_CHECKING:

    class StepJSON(TypedDict):
        strategy: Strategy
        kept: bool
        reason: str

    class PlanJSON(TypedDict):
        src: str
        dst: str
        chain: list[Strategy]
        reasons: list[str]
        advice: list[str]
        warnings: list[str]
        steps: list[StepJSON]
        same_filesystem: bool
        same_mount: bool
        network: bool
        workers: int
        forced: Strategy | None
        requested: list[Strategy] | None
        origin: Literal["auto", "argument", "environment"]
        strict: bool
        symlink_targets: Literal["relative", "absolute"]
        unavailable: str | None
        src_probe: ProbeJSON
        dst_probe: ProbeJSON


@record(frozen=True)
class Step:
    """One strategy considered for the pair: kept in the chain or dropped, and why."""

    strategy: Strategy
    kept: bool
    reason: str
    #: For a dropped step: True when the pair certainly cannot do it (forcing it
    #: is an error before anything is written); False when it was only judged not
    #: worth trying.
    impossible: bool = False
    #: For an impossible step, the errno trying it would give -- EXDEV across
    #: filesystems, mounts or btrfs subvolumes, EOPNOTSUPP where the filesystem
    #: cannot -- which a forced strategy's :class:`StrategyUnavailable` carries; else 0.
    errno: int = 0

    def to_json(self) -> StepJSON:
        return {"strategy": self.strategy, "kept": self.kept, "reason": self.reason}


@record(frozen=True)
class Plan:
    """The strategy chain for one (source, destination) pair.

    ``chain`` is tried in order per file; ``steps`` gives every strategy with the
    reason it was kept or dropped; ``advice`` says what a person can change.
    ``requested`` is the strategy list asked for (``None``: ``auto``), ``origin``
    where it came from, and ``strict`` whether failing it is an error
    (``unavailable`` then says why, before anything is written) or falls back to
    a copy with the warning in ``warnings``.
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
    requested: tuple[Strategy, ...] | None = None
    origin: Literal["auto", "argument", "environment"] = "auto"
    strict: bool = False
    warnings: tuple[str, ...] = ()
    #: With a strict request the pair cannot do: ``(errno, message)``.
    unavailable: tuple[int, str] | None = None
    #: Symlinks (strategy ``symlink``) point to the source by a relative path.
    symlink_relative: bool = False

    @property
    def forced(self) -> Strategy | None:
        """The one strategy demanded strictly (``strategy="copy"``), else None."""
        if self.strict and self.requested is not None and len(self.requested) == 1:
            return self.requested[0]
        return None

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(f"{s.strategy}: {s.reason}" for s in self.steps)

    def symlink_target(self, src_file: str, link_dir: str) -> str:
        """What a symlink in directory ``link_dir`` placing ``src_file`` (absolute)
        holds: relative when source and destination live close together (see
        :func:`plan`), else the absolute path."""
        if self.symlink_relative:
            return os.path.relpath(src_file, _final_location(link_dir))
        return src_file

    def to_json(self) -> PlanJSON:
        """The stable JSON form (keys documented in docs/cli.md)."""
        return {
            "src": self.src,
            "dst": self.dst,
            "chain": list(self.chain),
            "reasons": list(self.reasons),
            "advice": list(self.advice),
            "warnings": list(self.warnings),
            "steps": [s.to_json() for s in self.steps],
            "same_filesystem": self.same_filesystem,
            "same_mount": self.same_mount,
            "network": self.network,
            "workers": self.workers,
            "forced": self.forced,
            "requested": None if self.requested is None else list(self.requested),
            "origin": self.origin,
            "strict": self.strict,
            "symlink_targets": "relative" if self.symlink_relative else "absolute",
            "unavailable": None if self.unavailable is None else self.unavailable[1],
            "src_probe": self.src_probe.to_json(),
            "dst_probe": self.dst_probe.to_json(),
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


def parse_strategies(value: str | Sequence[str]) -> tuple[Strategy, ...] | None:
    """``"auto"`` -> None; ``"reflink,copy"`` or ``("reflink", "copy")`` -> the tuple.

    Raises ValueError for an unknown, repeated or empty entry.

    >>> parse_strategies("reflink, copy")
    ('reflink', 'copy')
    >>> parse_strategies("auto") is None
    True
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [str(x).strip().lower() for x in items]
    if names == ["auto"]:
        return None
    out: list[Strategy] = []
    for name in names:
        match = next((s for s in STRATEGIES if s == name), None)
        if match is None:
            what = "an empty entry" if not name else f"unknown strategy {name!r}"
            raise ValueError(
                f"{what} in {value!r}: expected auto, or one or more (comma-separated) "
                f"of {', '.join(STRATEGIES)}"
            )
        if match in out:
            raise ValueError(f"strategy {name!r} listed twice in {value!r}")
        out.append(match)
    return tuple(out)


def strategies_from_env() -> tuple[Strategy, ...] | None:
    """The preference in ``$LINKSTRATEGY_STRATEGY`` (None: unset, empty or ``auto``).

    Raises ValueError naming the variable when it holds something else.
    """
    raw = os.environ.get(STRATEGY_ENV, "").strip()
    if not raw:
        return None
    try:
        return parse_strategies(raw)
    except ValueError as e:
        raise ValueError(f"{STRATEGY_ENV}={raw!r}: {e}") from None


def _resolve_request(
    strategy: StrategyArg, strict: bool | None
) -> tuple[tuple[Strategy, ...] | None, Literal["auto", "argument", "environment"], bool]:
    if isinstance(strategy, str) and strategy.strip().lower() == "auto":
        env = strategies_from_env()
        if env is None:
            return None, "auto", False
        return env, "environment", bool(strict)
    requested = parse_strategies(strategy)
    if requested is None:  # ("auto",)
        return None, "auto", False
    return requested, "argument", True if strict is None else strict


def _final_location(path: str) -> str:
    """Where a tree that replace() builds in ``<parent>/.<name>.linkstrategy-txn/new``
    will live, as far as relative paths go: the transaction directory is a sibling of
    the final name, so it stands in for it (same depth, same ancestors)."""
    parts = path.split("/")
    for i in range(len(parts) - 1):
        if parts[i].endswith(TXN_SUFFIX) and parts[i + 1] == "new":
            return "/".join(parts[: i + 1] + parts[i + 2 :])
    return path


def _symlink_relative(s: str, d: str, same_mount: bool, mount_point: str) -> bool:
    """Relative symlinks when source and destination share an ancestor close by: on
    one mount, below the mount point, and below the home directory (a project that
    holds both moves as a whole).  Otherwise (a cache in ``~/.cache`` or on another
    filesystem) absolute, so moving the destination does not break its links."""
    if not same_mount:
        return False
    a, b = os.path.abspath(s), _final_location(os.path.abspath(d))
    try:
        common = os.path.commonpath([a, b])
    except ValueError:
        return False
    home = os.path.abspath(os.path.expanduser("~"))
    too_high = {"/", mount_point.rstrip("/") or "/"}
    if common in too_high:
        return False
    return not (home == common or home.startswith(common.rstrip("/") + "/"))


def _warn_once(key: tuple[object, ...], msg: str) -> None:
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning("%s", msg)


def plan(
    src: AnyPath,
    dst: AnyPath,
    *,
    strategy: StrategyArg = "auto",
    strict: bool | None = None,
    live: bool = True,
    table: list[Mount] | None = None,
) -> Plan:
    """The ordered strategy chain for placing ``src`` at ``dst``, with reasons and advice.

    ``strategy``: ``"auto"`` (reflink, hardlink, copy: what the pair can do), or
    one strategy or an ordered list of them (``("reflink", "copy")``); ``symlink``
    is used only when listed.  Strategies the pair certainly cannot do are
    dropped from a list.

    ``strict``: whether a list the pair cannot do is an error.  An explicit
    ``strategy`` argument is strict by default: the chain is the list (what
    remains of it), and :func:`place` raises :class:`StrategyUnavailable` before
    writing anything when nothing remains.  ``$LINKSTRATEGY_STRATEGY``, read when
    ``strategy="auto"``, is a preference (as ``UV_LINK_MODE`` is for uv): ``copy``
    ends the chain, and when none of the list can work the files are copied with
    one warning (in ``warnings``, and logged); ``strict=True`` makes it strict.

    ``table`` plans against a saved mount table without touching anything local.

    >>> import linkstrategy
    >>> p = linkstrategy.plan("/tmp/cache/pkg", "/tmp/venv/pkg")
    >>> p.chain[-1]
    'copy'
    """
    s, d = _args.path(src, "plan(): src"), _args.path(dst, "plan(): dst")
    requested, origin, is_strict = _resolve_request(strategy, strict)
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
    auto_steps: tuple[Step, ...] = (
        _reflink_step(sp, dp, same_fs, network),
        _hardlink_step(sp, dp, same_fs, same_mount, same_subvol),
        Step("copy", True, "always possible" + (" (over the network)" if network else "")),
    )
    warnings: tuple[str, ...] = ()
    unavailable: tuple[int, str] | None = None
    if requested is None:
        steps = auto_steps
        chain = tuple(st.strategy for st in steps if st.kept)
        if network and "hardlink" in chain:
            # On a network filesystem a hardlink is one round trip (LINK), a clone at
            # least three (create, CLONE, setattr): prefer the link.
            chain = ("hardlink", *(c for c in chain if c != "hardlink"))
    else:
        steps, chain, warnings, unavailable = _requested_chain(
            auto_steps, requested, origin, is_strict, sp, dp
        )
    for w in warnings:
        _warn_once((sp.mount.superblock_key, dp.mount.superblock_key, requested, w), w)
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
        requested=requested,
        origin=origin,
        strict=is_strict,
        warnings=warnings,
        unavailable=unavailable,
        symlink_relative=_symlink_relative(s, d, same_mount, dp.mount.mount_point),
    )


def _requested_chain(
    auto_steps: tuple[Step, ...],
    requested: tuple[Strategy, ...],
    origin: str,
    strict: bool,
    sp: Probe,
    dp: Probe,
) -> tuple[tuple[Step, ...], tuple[Strategy, ...], tuple[str, ...], tuple[int, str] | None]:
    """The chain for a strategy list: the listed strategies the pair can do, in the
    list's order; a preference (not strict) always ends in ``copy``."""
    known = {st.strategy: st for st in auto_steps}
    known["symlink"] = Step("symlink", True, _SYMLINK_REASON)
    chain = [s for s in requested if not known[s].impossible]
    fallback = not strict and "copy" not in chain
    if fallback:
        chain.append("copy")
    steps = []
    for name in (*AUTO_STRATEGIES, "symlink"):
        st = known[name]
        if name in chain:
            reason = st.reason
            if fallback and name == "copy":
                reason += "; the fallback for a preferred list"
            steps.append(Step(name, True, reason))
        elif name in requested:
            steps.append(st)  # asked for, but the pair certainly cannot
        elif name != "symlink":
            steps.append(Step(name, False, "not requested"))
    impossible = [known[s] for s in requested if known[s].impossible]
    why = "; ".join(f"cannot {st.strategy}: {st.reason}" for st in impossible)
    warnings: tuple[str, ...] = ()
    unavailable: tuple[int, str] | None = None
    if not any(s in chain for s in requested):
        if strict:
            code = impossible[0].errno
            chain = []
            unavailable = (code, why)
        else:
            where = f"{sp.mount.mount_point} to {dp.mount.mount_point}"
            asked = ",".join(requested)
            via = f"{STRATEGY_ENV}={asked}" if origin == "environment" else f"strategy {asked}"
            warnings = (
                f"{via}: {why} (from {where}); copying instead (strict mode makes this an error)",
            )
    return tuple(steps), tuple(chain), warnings, unavailable


def _reflink_step(sp: Probe, dp: Probe, same_fs: bool, network: bool) -> Step:
    if not same_fs:
        return Step(
            "reflink",
            False,
            "source and destination are different filesystems",
            impossible=True,
            errno=errno.EXDEV,
        )
    if dp.reflink == "no":
        why = dp.errors.get("reflink") if dp.tested else None
        detail = f" (clone test: {why})" if why else ""
        return Step(
            "reflink",
            False,
            f"{dp.mount.fstype} cannot clone here{detail}",
            impossible=True,
            errno=errno.EOPNOTSUPP,
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
            "hardlink",
            False,
            "source and destination are different filesystems",
            impossible=True,
            errno=errno.EXDEV,
        )
    if not same_mount:
        return Step(
            "hardlink",
            False,
            "same filesystem but different mounts (link() gives EXDEV)",
            impossible=True,
            errno=errno.EXDEV,
        )
    if not same_subvol:
        return Step(
            "hardlink",
            False,
            "different btrfs subvolumes (link() gives EXDEV)",
            impossible=True,
            errno=errno.EXDEV,
        )
    if dp.hardlink == "no":
        why = dp.errors.get("hardlink") if dp.tested else None
        detail = f" ({why})" if why else ""
        return Step(
            "hardlink",
            False,
            f"{dp.mount.fstype} does not hardlink{detail}",
            impossible=True,
            errno=errno.EOPNOTSUPP,
        )
    how = "tested" if dp.hardlink == "yes" and dp.tested else "expected"
    limit = f"; at most {dp.traits.max_links} links per file" if _notable_limit(dp) else ""
    return Step("hardlink", True, f"same mount; hardlink {how} to work{limit}")


def _notable_limit(dp: Probe) -> bool:
    m = dp.traits.max_links
    return m is not None and m < _NOTABLE_MAX_LINKS


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
    if _notable_limit(dp) and "hardlink" in chain:
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


# -- a dry run: what place() would do with a whole tree ------------------------------------


if TYPE_CHECKING:

    class EstimateJSON(TypedDict):
        files: int
        dirs: int
        symlinks: int
        bytes: int
        bytes_written: int
        by_strategy: dict[str, int]
        skipped: list[str]


@record(frozen=True)
class Estimate:
    """What :func:`place` would do with the tree: files per strategy (the chain's
    first, except files already at the hardlink limit, which take the next), the
    data cloned or copied (``bytes``, as :attr:`PlaceReport.bytes` counts it) and
    the part of it really written (``bytes_written``: copies only)."""

    files: int
    dirs: int
    symlinks: int
    bytes: int
    bytes_written: int
    by_strategy: dict[str, int]
    skipped: tuple[str, ...]

    def to_json(self) -> EstimateJSON:
        return {
            "files": self.files,
            "dirs": self.dirs,
            "symlinks": self.symlinks,
            "bytes": self.bytes,
            "bytes_written": self.bytes_written,
            "by_strategy": {s: self.by_strategy.get(s, 0) for s in STRATEGIES},
            "skipped": list(self.skipped),
        }


def _walk(root: str) -> Iterable[tuple[str, os.stat_result]]:
    """Every entry below ``root`` with its lstat, never following a symlink."""
    stack = [root]
    while stack:
        d = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                yield e.path, st
                if stat.S_ISDIR(st.st_mode):
                    stack.append(e.path)


def estimate(pl: Plan) -> Estimate:
    """Walk the source of ``pl`` (reading only: nothing is written anywhere) and say
    how :func:`place` would place it.  Raises OSError when the source cannot be read."""
    counts: dict[str, int] = dict.fromkeys(STRATEGIES, 0)
    files = dirs = links = size = written = 0
    skipped: list[str] = []
    root = os.path.realpath(pl.src)  # as place() does: a symlink given as SRC is followed
    top = os.stat(root)
    entries = [(root, top)] if not stat.S_ISDIR(top.st_mode) else list(_walk(root))
    if stat.S_ISDIR(top.st_mode):
        dirs = 1
    limit = pl.dst_probe.traits.max_links
    chain = pl.chain
    for path, st in entries:
        if stat.S_ISDIR(st.st_mode):
            dirs += 1
        elif stat.S_ISLNK(st.st_mode):
            links += 1
        elif stat.S_ISREG(st.st_mode):
            files += 1
            if not chain:
                continue
            strategy = chain[0]
            if strategy == "hardlink" and limit and st.st_nlink >= limit and len(chain) > 1:
                strategy = chain[1]  # EMLINK: this file falls back
            counts[strategy] += 1
            if strategy in ("reflink", "copy"):
                size += st.st_size
            if strategy == "copy":
                written += st.st_size
        else:
            skipped.append(os.path.relpath(path, root))
    return Estimate(files, dirs, links, size, written, counts, tuple(skipped))
