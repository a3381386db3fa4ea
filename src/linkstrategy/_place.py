"""``place(src, dst)``: put a file or a tree at ``dst`` by reflink, hardlink or copy.

How it works:

1. ``plan(src, dst)`` gives the strategy chain for the pair (the destination's
   filesystem live-tested, cached per mount).
2. One pass of per-directory jobs on a thread pool: a job lists its source
   directory with ``scandir`` (entry types without a stat; symlinks never
   followed), makes the destination subdirectories and submits a job for each,
   and places its files, big directories split into chunks for other workers.
3. A directory that did not exist (a fresh ``dst``, or a directory new inside an
   existing one) is built under a hidden temporary name beside its final name and
   renamed into place when the run is complete: it appears whole or not at all,
   and the files inside are written under their final names straight away.  In a
   directory that existed, a clone or copy goes to a temporary name and is renamed
   over the final one; a hardlink is made under the final name (link(2) is atomic)
   or, if the name exists, under a temporary name renamed over it.  Nothing
   partial ever has a final name; a killed run leaves only ``.lstmp-`` names,
   which the next run there removes.
   Files going into a new directory are placed by the optional C loop
   (``_speedups.c``, no GIL held) when it is built; it hands any file that does
   not go plainly back to the Python path below, which owns every decision.
4. Errors are sorted by the named errno sets in :mod:`._errors`: capability
   errors drop the strategy for the rest of the run, per-file limits fall back
   for one file, transient errors are retried, anything else stops the run,
   removes what this run created, and raises :class:`PlaceError` naming both
   paths.

Every destination directory is reached with ``open_beneath`` (openat2 with
RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS on Linux): a component swapped for a
symlink during the run makes the run fail; it never leads outside ``dst``.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import _errors as E
from ._errors import InvalidArgument, LinkStrategyError, PlaceError, StrategyUnavailable
from ._owner import TMP_PREFIX, hold, is_tmp_name, lock_file, release, tmp_name
from ._plan import STRATEGIES, Plan, Strategy, StrategyArg, plan
from ._pool import Abort, Backoff, Group, Tasks, shared
from ._syscalls import (
    CLONE_CREATES,
    clone_at,
    clone_fd,
    copy_fd,
    copy_sparse,
    fd_path,
    get_xattr,
    list_xattrs,
    load_speedups,
    open_beneath,
    set_xattr,
)
from ._trash import collect_trash
from ._tree import reap_stale, rmtree_at

__all__ = ["Fallback", "PlaceReport", "Skipped", "place", "place_many"]

log = logging.getLogger("linkstrategy")

#: Temporary names: ``.lstmp-<owner>-<seq>`` (:mod:`._owner`), unique per process
#: across hosts; a later place() removes the ones whose maker is gone (by lock).
_seq = itertools.count(1)  # one sequence per process: runs in threads never collide

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in for a file since the walk must not block the open
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_TRANSIENT_TRIES = 4
_NO_IDENT = (-1, -1)  # an inode nobody needs to know

#: The optional C per-file loop (``_speedups.c``), or None: then every file takes
#: the Python path.  Tests set this to None to run that path.
_fast: Any = load_speedups()

_warned: set[tuple[Any, ...]] = set()
_warned_lock = threading.Lock()


@dataclass(frozen=True)
class Fallback:
    """One file that could not use a strategy, and what it used instead."""

    path: str
    from_strategy: Strategy
    to_strategy: Strategy
    errno: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "from": self.from_strategy,
            "to": self.to_strategy,
            "errno": errno.errorcode.get(self.errno, str(self.errno)),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Skipped:
    """A source entry that was not placed (special files are never opened)."""

    path: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class PlaceReport:
    """What :func:`place` did.

    ``files`` counts regular files, ``by_strategy`` splits them by strategy, and
    ``bytes`` is the data cloned or copied (a hardlink shares its data and adds
    nothing).  ``fallbacks`` lists every file that could not use a strategy;
    ``skipped`` the special files that were not placed.
    """

    src: str
    dst: str
    files: int
    dirs: int
    symlinks: int
    bytes: int
    by_strategy: dict[str, int]
    fallbacks: tuple[Fallback, ...]
    skipped: tuple[Skipped, ...]
    seconds: float
    chain: tuple[Strategy, ...]
    workers: int
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The stable JSON form (keys documented in docs/cli.md)."""
        return {
            "src": self.src,
            "dst": self.dst,
            "files": self.files,
            "dirs": self.dirs,
            "symlinks": self.symlinks,
            "bytes": self.bytes,
            "by_strategy": {s: self.by_strategy.get(s, 0) for s in STRATEGIES},
            "fallbacks": [f.to_json() for f in self.fallbacks],
            "skipped": [s.to_json() for s in self.skipped],
            "seconds": round(self.seconds, 6),
            "chain": list(self.chain),
            "workers": self.workers,
            "warnings": list(self.warnings),
        }


# -- the source ----------------------------------------------------------------------


def _join(d: str, name: str) -> str:
    return f"{d}/{name}" if d else name


def _special(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


@dataclass
class _Listing:
    """What one source directory holds (from scandir, or from the caller's file list:
    then ``listed`` holds names whose type the directory's job finds out)."""

    files: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    subdirs: list[str] = field(default_factory=list)
    listed: list[str] = field(default_factory=list)


def _scan_source(sdir: int, rel: str, skipped: list[Skipped]) -> _Listing:
    """List a source directory: scandir's d_type tells file, symlink or directory, no stat."""
    out = _Listing()
    with os.scandir(sdir) as it:
        for e in it:
            if e.is_dir(follow_symlinks=False):
                out.subdirs.append(e.name)
            elif e.is_symlink():
                out.links.append(e.name)
            elif e.is_file(follow_symlinks=False):
                out.files.append(e.name)
            else:  # never opened: opening a FIFO blocks, a device may do anything
                kind = _special(e.stat(follow_symlinks=False).st_mode)
                skipped.append(Skipped(_join(rel, e.name), f"{kind}: not placed"))
    return out


def _classify_listed(run: _Run, sdir: int, rel: str, listing: _Listing) -> _Listing:
    """The types of a file list's names in one directory, found by this directory's job
    (so a long RECORD on a network filesystem is stat'ed in parallel)."""
    out = _Listing(subdirs=listing.subdirs)
    for name in listing.listed:
        try:
            st = os.stat(name, dir_fd=sdir, follow_symlinks=False)
        except OSError as e:
            raise PlaceError(
                e.errno, f"listed file: {e.strerror}", run.src_path(_join(rel, name)), None,
                run.dst_path(_join(rel, name)),
            ) from None  # fmt: skip
        if stat.S_ISLNK(st.st_mode):
            out.links.append(name)
        elif stat.S_ISREG(st.st_mode):
            out.files.append(name)
        elif stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(
                errno.EISDIR, "listed entry is a directory (list its files)",
                run.src_path(_join(rel, name)),
            )  # fmt: skip
        else:
            run.skipped.append(Skipped(_join(rel, name), f"{_special(st.st_mode)}: not placed"))
    return out


def _listings_from_files(files: Iterable[str | os.PathLike[str]], src: str) -> dict[str, _Listing]:
    """Listings built from a caller's file list (e.g. a RECORD), by name alone: no
    directory is read and nothing is stat'ed here.  Entries are relative paths inside
    the source; ``.`` components are dropped, ``..`` and absolute paths refused
    (never resolved by string: the kernel decides what a symlink means)."""
    listings: dict[str, _Listing] = {"": _Listing()}
    seen: set[str] = set()
    for raw in files:
        entry = os.fspath(raw)
        parts = [x for x in entry.split("/") if x not in ("", ".")]
        if not parts or ".." in parts or entry.startswith("/") or "\0" in entry:
            raise InvalidArgument(
                errno.EINVAL, f"file list entry {entry!r} is not a relative path inside the source",
                src,
            )  # fmt: skip
        rel = "/".join(parts)
        if rel in seen:  # listed twice (a RECORD can be sloppy): place it once
            continue
        seen.add(rel)
        for i in range(len(parts) - 1):
            sub = "/".join(parts[: i + 1])
            if sub not in listings:
                listings[sub] = _Listing()
                listings["/".join(parts[:i])].subdirs.append(parts[i])
        listings["/".join(parts[:-1])].listed.append(parts[-1])
    return listings


# -- the run ---------------------------------------------------------------------------


class _Run:
    """State shared by the jobs of one place() call, and the little scheduler they use."""

    def __init__(
        self,
        p: Plan,
        src_root: str,
        dst_root: str,
        *,
        xattrs: bool,
        fsync: bool,
        progress: Callable[[int, int], None] | None,
        workers: int,
        times: bool = True,
        tasks: Tasks | None = None,
        private: Callable[[str], bool] | None = None,
        observer: Callable[[str, str], None] | None = None,
    ) -> None:
        self.plan = p
        self.src_root = src_root
        self.dst_root = dst_root
        self.chain: list[Strategy] = list(p.chain)
        self.forced = p.strict  # a capability error at the chain's end is an error
        self.xattrs = xattrs
        self.times = times
        self.fsync = fsync
        self.progress = progress
        self.private = private
        self.observer = observer
        self.workers = workers
        self.umask = _current_umask()
        self.lock = threading.Lock()
        # results
        self.counts: dict[str, int] = {s: 0 for s in STRATEGIES}
        self.bytes = 0
        self.files = 0
        self.symlinks = 0
        self.dirs = 0
        self.discovered = 0
        self.fallbacks: list[Fallback] = []
        self.skipped: list[Skipped] = []
        self.warnings: list[str] = []
        self.xattr_failed = False
        self.xattr_denied: set[str] = set()
        self.warned: set[tuple[str, int | None]] = set()
        self.dst_root_fd = -1  # set once the destination root is open
        self.drels: dict[str, str] = {"": ""}  # source rel dir -> its destination drel
        self.cfr = True  # copy_file_range still worth trying for this pair
        # What this run changed, for the final renames and for rollback.  New
        # directories are built under temporary names and renamed into place at
        # the end, so files inside them need no temporary names of their own.
        # new directories built hidden: rel, parent drel, tmp, final name, (dev, ino)
        self.hidden_tops: list[tuple[str, str, str, str, tuple[int, int]]] = []
        self.locks: dict[tuple[str, str], int] = {}  # (parent drel, tmp) -> lock fd
        self.restore_modes: list[tuple[str, int]] = []  # drel, mode
        # new names in pre-existing dirs, with the inode this run put there
        self.created_files: list[tuple[str, str, tuple[int, int]]] = []
        self.existing: dict[str, frozenset[str]] = {}  # pre-existing dir -> its names
        # hard-linked sources: (dev, ino) -> (drel dir, name) once placed, or an Event
        # while the first of its names is being written
        self.linked: dict[tuple[int, int], tuple[str, str] | threading.Event] = {}
        # scheduling: this tree's jobs, on a Tasks of the process's shared pool
        self.group = Group(tasks if tasks is not None else Tasks(shared(), workers))
        self.stop = self.group.stop
        self.threaded = False
        self.chunk = 64

    @property
    def error(self) -> BaseException | None:
        return self.group.error

    # scheduling ------------------------------------------------------------------------
    def run_jobs(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` and every job it submits on the pool; return when all are
        done (or, after an error, skipped).  The error is left in ``self.error``."""
        self.start_jobs(fn, *args)
        self.wait_jobs()

    def start_jobs(self, fn: Callable[..., None], *args: Any) -> None:
        self.threaded = True
        self.group.submit(fn, *args)

    def wait_jobs(self) -> None:
        try:
            self.group.wait()
        finally:
            self.threaded = False

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        if not self.threaded:  # single file: run inline
            fn(*args)
            return
        self.group.submit(fn, *args)

    # chain management --------------------------------------------------------------------
    def downgrade(self, strategy: Strategy, err: OSError, path: str) -> None:
        with self.lock:
            if strategy in self.chain and len(self.chain) > 1:
                self.chain.remove(strategy)
        self._warn_once(strategy, err, path)

    def _warn_once(self, strategy: Strategy, err: OSError, path: str) -> None:
        sp, dp = self.plan.src_probe.mount, self.plan.dst_probe.mount
        key = (sp.mount_id, sp.mount_point, dp.mount_id, dp.mount_point, strategy, err.errno)
        msg = (
            f"cannot {strategy} from {sp.mount_point} ({sp.fstype}) to {dp.mount_point} "
            f"({dp.fstype}): {_errname(err.errno)} ({err.strerror}) on {path}; falling back "
            f"to {self.chain[0]} for this pair (choose with LINKSTRATEGY_STRATEGY or --strategy; "
            "strict=True or --strict makes it an error)."
        )
        with self.lock:  # once per run in the report, once per process in the log
            if (strategy, err.errno) in self.warned:
                return
            self.warned.add((strategy, err.errno))
            self.warnings.append(msg)
        with _warned_lock:
            if key in _warned:
                return
            _warned.add(key)
        log.warning("%s", msg)

    def tmpname(self) -> str:
        return tmp_name(next(_seq))

    def merge(self, tally: _Tally) -> None:
        """Add a job's counts to the run's (once per job: one lock, not one per file)."""
        with self.lock:
            for k, v in tally.counts.items():
                self.counts[k] += v
            self.bytes += tally.bytes
            self.files += tally.files
            self.symlinks += tally.symlinks
            done, total = self.files + self.symlinks, self.discovered
        tally.reset()
        if self.progress is not None:
            self.progress(done, total)

    def src_path(self, rel: str) -> str:
        return os.path.join(self.src_root, rel) if rel else self.src_root

    def dst_path(self, rel: str) -> str:
        return os.path.join(self.dst_root, rel) if rel else self.dst_root


class _Tally:
    """What one job placed, merged into the run when the job ends (or per file when
    someone watches progress)."""

    __slots__ = ("bytes", "counts", "files", "symlinks")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(STRATEGIES, 0)
        self.bytes = 0
        self.files = 0
        self.symlinks = 0


def _current_umask() -> int:
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    # Not thread-safe, but place() reads it before starting any thread.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _errname(code: int | None) -> str:
    return errno.errorcode.get(code or 0, str(code))


def _scan_existing(dfd: int) -> frozenset[str]:
    """List a destination directory that existed before: its names, minus the dead
    temporaries (files or whole trees) of runs that were killed, which are removed."""
    names = frozenset(os.listdir(dfd))
    if any(n.startswith(TMP_PREFIX) for n in names):
        removed, _ = reap_stale(dfd, [n for n in names if is_tmp_name(n)])
        names = names.difference(removed)
    return names


# -- one file --------------------------------------------------------------------------


def _copy_xattrs(run: _Run, sfd: int, dfd: int) -> None:
    """Extended attributes of ``sfd`` onto ``dfd``.  A filesystem without them says so
    once and the run stops trying; a name we may not set (``security.*``, ``trusted.*``
    as a user: EPERM/EACCES) is skipped, with one warning, and the rest go on."""
    if not run.xattrs or run.xattr_failed:
        return
    try:
        names = list_xattrs(sfd)
    except OSError as e:
        if e.errno in E.XATTR_UNSUPPORTED:
            return
        raise
    for n in names:
        try:
            set_xattr(dfd, n, get_xattr(sfd, n))
        except OSError as e:
            if e.errno in E.XATTR_UNSUPPORTED:  # e.g. EFS: no user xattrs at all
                with run.lock:
                    if not run.xattr_failed:
                        run.xattr_failed = True
                        run.warnings.append(
                            "extended attributes not kept on "
                            f"{run.plan.dst_probe.mount.mount_point}"
                            f" ({_errname(e.errno)} setting {n})"
                        )
                return
            if e.errno in E.XATTR_DENIED:
                with run.lock:
                    if n not in run.xattr_denied:
                        run.xattr_denied.add(n)
                        run.warnings.append(
                            f"extended attribute {n} not kept: {_errname(e.errno)} ({e.strerror})"
                        )
                continue
            raise


def _write_file(
    run: _Run, strategy: Strategy, sdir: int, ddir: int, sname: str, tmp: str, locked: bool
) -> tuple[int, tuple[int, int]]:
    """Clone or copy ``sname`` into the new file ``tmp``, then times, xattrs and mode, in
    that order (CPython's copystat order: a read-only mode set first would refuse the
    xattrs).  ``locked``: lock it for its life as a temporary (see _owner).  Returns
    (bytes written, (st_dev, st_ino) of the new file).  On failure the new file is
    removed (it is ours: created with O_EXCL) and the error propagates."""
    sfd = os.open(sname, _READ_FLAGS, dir_fd=sdir)
    try:
        st = os.fstat(sfd)
        if not stat.S_ISREG(st.st_mode):  # swapped for something else since the walk
            raise OSError(errno.EINVAL, "no longer a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if strategy == "reflink" and CLONE_CREATES:  # pragma: no cover - macOS
            clone_at(sfd, ddir, tmp)
            dfd = os.open(tmp, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=ddir)
        else:
            # Owner-writable while we fill it (the exact mode comes last); exclusive,
            # so nothing existing is touched.
            dfd = os.open(tmp, _CREATE_FLAGS, mode | 0o200, dir_fd=ddir)
        try:
            if locked:
                lock_file(dfd)
            dst = os.fstat(dfd) if mode & 0o6000 else None
            size = st.st_size
            if strategy == "reflink":
                if not CLONE_CREATES:
                    clone_fd(sfd, dfd)
            elif st.st_blocks * 512 < st.st_size - 65536:  # has holes worth keeping
                copy_sparse(sfd, dfd, st.st_size)
            else:
                size, run.cfr = copy_fd(sfd, dfd, st.st_size, try_cfr=run.cfr)
            if run.times:
                os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))
            _copy_xattrs(run, sfd, dfd)
            if dst is not None:
                # setuid/setgid only where the new file has the source's owner/group
                # (as cp does): root copying a user's 6755 file must not make root's.
                if dst.st_uid != st.st_uid:
                    mode &= ~stat.S_ISUID
                if dst.st_gid != st.st_gid:
                    mode &= ~stat.S_ISGID
            if mode & run.umask or not mode & 0o200 or dst is not None:
                os.fchmod(dfd, mode)
            if run.fsync:
                os.fsync(dfd)
            if dst is None and (locked or st.st_nlink > 1):
                dst = os.fstat(dfd)  # the inode rollback and later links need
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(dfd)
            _unlink_quiet(tmp, ddir)
            raise
        try:
            os.close(dfd)  # NFS reports write-back errors here
        except BaseException:
            _unlink_quiet(tmp, ddir)
            raise
        return size, (dst.st_dev, dst.st_ino) if dst is not None else _NO_IDENT
    finally:
        os.close(sfd)


def _place_file(
    run: _Run,
    rel_dir: str,
    sdir: int,
    ddir: int,
    sname: str,
    dname: str,
    exists: bool,
    tally: _Tally,
    direct: bool = False,
    private: bool = False,
) -> None:
    """Place one regular file through the chain, sorting errors by the errno sets.
    ``private``: the caller's policy says never a hardlink for this one."""
    path = _join(rel_dir, dname)
    chain = list(run.chain)
    if private:
        chain = [x for x in chain if x != "hardlink"] or ["copy"]
    for i, strategy in enumerate(chain):
        nxt = chain[i + 1] if i + 1 < len(chain) else None
        backoff: Backoff | None = None
        while True:
            try:
                size = _attempt(run, strategy, rel_dir, sdir, ddir, sname, dname, exists, direct)
            except OSError as e:
                code = e.errno
                action = E.place_action(code, strategy)
                if action == "retry":
                    if backoff is None:
                        backoff = Backoff(0.01, 1.0, tries=_TRANSIENT_TRIES)
                    if backoff.wait():
                        continue
                    action = "next_for_file"
                if action != "fail" and nxt is not None:
                    per_file = action == "next_for_file"
                    reason = "per-file limit" if per_file else f"pair cannot {strategy}"
                    with run.lock:
                        run.fallbacks.append(Fallback(path, strategy, nxt, code or 0, reason))
                    if not per_file:
                        run.downgrade(strategy, e, path)
                    break
                src, dst = run.src_path(_join(rel_dir, sname)), run.dst_path(path)
                if action == "next_for_pair" and run.forced:
                    raise StrategyUnavailable(
                        code, f"forced strategy {strategy} failed: {e.strerror}", src, None, dst
                    ) from e
                raise PlaceError(code, f"{strategy} failed: {e.strerror}", src, None, dst) from e
            tally.counts[strategy] += 1
            tally.bytes += size
            tally.files += 1
            if run.observer is not None:
                run.observer(path, strategy)
            return


def _attempt(
    run: _Run,
    strategy: Strategy,
    rel_dir: str,
    sdir: int,
    ddir: int,
    sname: str,
    dname: str,
    exists: bool,
    direct: bool,
) -> int:
    """One strategy for one file.  ``direct``: the directory is still hidden under a
    temporary name, so the file is written under its final name straight away."""
    if strategy == "symlink":  # asked for: a link to the source file, never followed
        target = run.plan.symlink_target(run.src_path(_join(rel_dir, sname)), run.dst_path(rel_dir))
        if not exists:
            try:
                os.symlink(target, dname, dir_fd=ddir)
            except FileExistsError:  # another process was faster: replace atomically
                pass
            else:
                _note_created(run, rel_dir, ddir, dname, None)
                return 0
        tmp = run.tmpname()
        os.symlink(target, tmp, dir_fd=ddir)
        st = os.stat(tmp, dir_fd=ddir, follow_symlinks=False)
        _rename_into_place(run, rel_dir, ddir, tmp, dname, (st.st_dev, st.st_ino))
        return 0
    if strategy == "hardlink":
        # A hardlink writes no data: it adds nothing to report.bytes, and needs no
        # stat of the source on the common path.
        if not exists:
            try:  # link(2) is atomic: the final name appears complete or not at all
                os.link(sname, dname, src_dir_fd=sdir, dst_dir_fd=ddir, follow_symlinks=False)
            except FileExistsError:  # another process was faster: replace atomically
                pass
            else:
                _note_created(run, rel_dir, ddir, dname, None)
                return 0
        st = os.stat(sname, dir_fd=sdir, follow_symlinks=False)
        try:
            cur = os.stat(dname, dir_fd=ddir, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:  # rename() onto the same inode would do nothing and leave the temporary
            if (cur.st_ino, cur.st_dev) == (st.st_ino, st.st_dev):
                return 0
        tmp = run.tmpname()
        os.link(sname, tmp, src_dir_fd=sdir, dst_dir_fd=ddir, follow_symlinks=False)
        _rename_into_place(run, rel_dir, ddir, tmp, dname, (st.st_dev, st.st_ino))
        return 0
    tmp = dname if direct else run.tmpname()
    size, ident, key = _write_or_link(run, strategy, rel_dir, sdir, ddir, sname, tmp, not direct)
    if not direct:
        _rename_into_place(run, rel_dir, ddir, tmp, dname, ident)
    elif ident != _NO_IDENT:
        _note_created(run, rel_dir, ddir, dname, ident)
    if key is not None:
        with run.lock:
            claim = run.linked.get(key)
            run.linked[key] = (run.drels.get(rel_dir, rel_dir), dname)
        if isinstance(claim, threading.Event):
            claim.set()
    return size


def _write_or_link(
    run: _Run,
    strategy: Strategy,
    rel_dir: str,
    sdir: int,
    ddir: int,
    sname: str,
    tmp: str,
    locked: bool,
) -> tuple[int, tuple[int, int], tuple[int, int] | None]:
    """Clone or copy ``sname`` to ``tmp`` -- or, for a source with several links whose
    inode this run has placed already, link ``tmp`` to that placed file, keeping
    the tree's hard-link structure as ``cp -a`` does.  Returns (bytes, the new
    file's inode, the source's (dev, ino) when it has several links)."""
    st = os.stat(sname, dir_fd=sdir, follow_symlinks=False)
    key = (st.st_dev, st.st_ino) if st.st_nlink > 1 else None
    if key is None or run.dst_root_fd < 0:
        return (*_write_file(run, strategy, sdir, ddir, sname, tmp, locked), None)
    for _ in range(2):
        with run.lock:
            first = run.linked.get(key)
            if first is None:  # ours to write; the others wait for it
                run.linked[key] = threading.Event()
                break
        if isinstance(first, threading.Event):
            first.wait(30.0)
            continue
        try:
            fd = open_beneath(run.dst_root_fd, first[0], _DIR_FLAGS)
            try:
                os.link(first[1], tmp, src_dir_fd=fd, dst_dir_fd=ddir, follow_symlinks=False)
                lst = os.stat(tmp, dir_fd=ddir, follow_symlinks=False)
            finally:
                os.close(fd)
            return 0, (lst.st_dev, lst.st_ino), None
        except OSError:
            return (*_write_file(run, strategy, sdir, ddir, sname, tmp, locked), None)
    else:  # the first writer is still not done: write a copy of our own
        return (*_write_file(run, strategy, sdir, ddir, sname, tmp, locked), None)
    try:
        size, ident = _write_file(run, strategy, sdir, ddir, sname, tmp, locked)
    except BaseException:
        with run.lock:
            claim = run.linked.pop(key, None)
        if isinstance(claim, threading.Event):
            claim.set()  # let a waiting name write its own
        raise
    return size, ident, key


def _keep_link(run: _Run, rel: str, ddir: int, name: str, key: tuple[int, int]) -> None:
    """The C loop placed ``name``, whose source has other links: the first name of that
    inode in this run is remembered; a later one is replaced by a link to the first
    (so the tree keeps its hard links, as ``cp -a`` does; the C loop wrote its data
    first, which the Python path avoids)."""
    with run.lock:
        first = run.linked.get(key)
        if first is None or isinstance(first, threading.Event):
            run.linked[key] = (run.drels.get(rel, rel), name)
            if first is not None:
                first.set()
            return
    tmp = run.tmpname()
    try:
        fd = open_beneath(run.dst_root_fd, first[0], _DIR_FLAGS)
        try:
            os.link(first[1], tmp, src_dir_fd=fd, dst_dir_fd=ddir, follow_symlinks=False)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=ddir, dst_dir_fd=ddir)  # our own new file
    except OSError:
        _unlink_quiet(tmp, ddir)  # EMLINK and friends: the copy of its own stays


def _rename_into_place(
    run: _Run, rel_dir: str, ddir: int, tmp: str, name: str, ident: tuple[int, int]
) -> None:
    try:
        os.rename(tmp, name, src_dir_fd=ddir, dst_dir_fd=ddir)
    except BaseException:
        _unlink_quiet(tmp, ddir)
        raise
    _note_created(run, rel_dir, ddir, name, ident)


def _note_created(
    run: _Run, rel_dir: str, ddir: int, name: str, ident: tuple[int, int] | None
) -> None:
    """Remember a name this run added to a directory that existed before, with the inode
    it put there: rollback removes it only if that inode is still there."""
    old = run.existing.get(rel_dir)
    if old is not None and name not in old:
        if ident is None or ident == _NO_IDENT:
            try:
                st = os.stat(name, dir_fd=ddir, follow_symlinks=False)
            except OSError:
                return
            ident = (st.st_dev, st.st_ino)
        with run.lock:
            run.created_files.append((rel_dir, name, ident))


def _unlink_quiet(name: str, dfd: int) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except OSError:
        pass


def _place_symlink(
    run: _Run,
    rel_dir: str,
    sdir: int,
    ddir: int,
    sname: str,
    dname: str,
    exists: bool,
    tally: _Tally,
) -> None:
    """Symlinks stay symlinks, with the same target text; never followed."""
    try:
        target = os.readlink(sname, dir_fd=sdir)
        done = False
        if not exists:
            try:
                os.symlink(target, dname, dir_fd=ddir)
                _note_created(run, rel_dir, ddir, dname, None)
                done = True
            except FileExistsError:
                pass
        if not done:
            tmp = run.tmpname()
            os.symlink(target, tmp, dir_fd=ddir)
            st = os.stat(tmp, dir_fd=ddir, follow_symlinks=False)
            _rename_into_place(run, rel_dir, ddir, tmp, dname, (st.st_dev, st.st_ino))
    except OSError as e:
        raise PlaceError(
            e.errno,
            f"symlink failed: {e.strerror}",
            run.src_path(_join(rel_dir, sname)),
            None,
            run.dst_path(_join(rel_dir, dname)),
        ) from e
    tally.symlinks += 1


def _place_entries(
    run: _Run, rel: str, sdir: int, ddir: int, files: list[str], links: list[str], hidden: bool
) -> None:
    existing = None if hidden else run.existing.get(rel)
    tally = _Tally()
    watched = run.progress is not None
    try:
        private: list[str] = []
        if run.private is not None:  # never hardlinked: the caller will rewrite them
            keep = run.private
            private = [n for n in files if keep(_join(rel, n))]
            if private:
                files = [n for n in files if n not in set(private)]
        if hidden and _fast is not None and "symlink" not in run.chain:  # no C symlink path
            _place_new_files(run, rel, sdir, ddir, files, tally)
            files = []
        for names, own in ((files, False), (private, True)):
            for name in names:
                if run.stop.is_set():
                    raise Abort
                exists = existing is not None and name in existing
                _place_file(run, rel, sdir, ddir, name, name, exists, tally, hidden, own)
                if watched:
                    run.merge(tally)
        for name in links:
            exists = existing is not None and name in existing
            _place_symlink(run, rel, sdir, ddir, name, name, exists, tally)
            if run.observer is not None:
                run.observer(_join(rel, name), "symlink")
        if run.fsync:
            os.fsync(ddir)
    finally:
        run.merge(tally)


def _place_new_files(
    run: _Run, rel: str, sdir: int, ddir: int, names: list[str], tally: _Tally
) -> None:
    """Files into a directory this run created, through the C loop of ``_speedups``
    (no GIL, so the workers run in parallel).  It stops at the first file that does
    not go plainly (an error, extended attributes, holes); that file takes the
    Python path, which decides about errors and fallbacks, and the loop goes on."""
    assert _fast is not None
    i, n = 0, len(names)
    while i < n:
        if run.stop.is_set():
            raise Abort
        strategy = run.chain[0]
        code = {"hardlink": _fast.HARDLINK, "reflink": _fast.REFLINK}.get(strategy, _fast.COPY)
        nxt, nbytes, run.cfr, linked = _fast.place_files(
            code,
            sdir,
            ddir,
            names,
            i,
            run.umask,
            run.xattrs and not run.xattr_failed,
            run.fsync,
            run.cfr,
            run.times,
        )
        tally.counts[strategy] += nxt - i
        tally.files += nxt - i
        tally.bytes += nbytes
        for idx, dev, ino in linked:
            _keep_link(run, rel, ddir, names[idx], (dev, ino))
        if run.observer is not None:
            for name in names[i:nxt]:
                run.observer(_join(rel, name), strategy)
        if nxt < n:
            _place_file(run, rel, sdir, ddir, names[nxt], names[nxt], False, tally, True)
            nxt += 1
        i = nxt
        if run.progress is not None:
            run.merge(tally)


# -- directories -------------------------------------------------------------------------


def _open_pair(run: _Run, roots: tuple[int, int], rel: str, drel: str) -> tuple[int, int]:
    sdir = open_beneath(roots[0], rel, _DIR_FLAGS)
    try:
        ddir = open_beneath(roots[1], drel, _DIR_FLAGS)
    except OSError as e:
        os.close(sdir)
        if e.errno in (errno.ENOTDIR, errno.ELOOP):
            why = "destination is not a directory (or was swapped for a symlink)"
        else:
            why = f"cannot open destination directory: {e.strerror}"
        raise PlaceError(e.errno, why, run.src_path(rel), None, run.dst_path(rel)) from e
    return sdir, ddir


def _chunk_job(
    run: _Run, roots: tuple[int, int], rel: str, drel: str, hidden: bool, files: list[str]
) -> None:
    sdir, ddir = _open_pair(run, roots, rel, drel)
    try:
        _place_entries(run, rel, sdir, ddir, files, [], hidden)
    finally:
        os.close(sdir)
        os.close(ddir)


def _dir_job(
    run: _Run,
    roots: tuple[int, int],
    rel: str,
    drel: str,
    hidden: bool,
    listings: dict[str, _Listing] | None,
) -> None:
    """One source directory ``rel``, whose destination is ``drel`` below the destination
    root (``drel`` differs from ``rel`` below a new directory still hidden under a
    temporary name).  Gives the destination the source's mode, makes the subdirectories
    (each a job of its own), and places the files, in chunks on several workers."""
    sdir, ddir = _open_pair(run, roots, rel, drel)
    try:
        mode = stat.S_IMODE(os.fstat(sdir).st_mode)
        existing: frozenset[str] = frozenset()
        if hidden:
            if mode != 0o777 & ~run.umask:
                os.fchmod(ddir, mode | 0o700)  # owner rwx while we fill it
            if mode & 0o700 != 0o700:
                with run.lock:
                    run.restore_modes.append((drel, mode))
        else:
            dst_st = os.fstat(ddir)
            if dst_st.st_mode & 0o300 != 0o300 and dst_st.st_uid == os.geteuid():
                # our own read-only directory (a read-only cache placed before):
                # writable while we fill it, its mode back at the end
                os.fchmod(ddir, stat.S_IMODE(dst_st.st_mode) | 0o700)
                with run.lock:
                    run.restore_modes.append((drel, stat.S_IMODE(dst_st.st_mode)))
            existing = _scan_existing(ddir)
            with run.lock:
                run.existing[rel] = existing
        # (run.skipped is appended to from several threads: list.append is atomic)
        if listings is None:
            listing = _scan_source(sdir, rel, run.skipped)
        else:
            listing = _classify_listed(run, sdir, rel, listings[rel])
        with run.lock:
            run.discovered += len(listing.files) + len(listing.links)
            run.dirs += 1
        for name in listing.subdirs:
            child = _join(rel, name)
            if hidden:
                os.mkdir(name, 0o777, dir_fd=ddir)
                cdrel = _join(drel, name)
                hidden_child = True
            elif name in existing:
                cdrel = _join(drel, name)
                hidden_child = False
            else:  # new here: build it hidden, rename it into place when complete
                tmp = run.tmpname()
                ident = _make_hidden(run, ddir, drel, tmp)
                with run.lock:
                    run.hidden_tops.append((child, drel, tmp, name, ident))
                cdrel = _join(drel, tmp)
                hidden_child = True
            with run.lock:
                run.drels[child] = cdrel
            run.submit(_dir_job, run, roots, child, cdrel, hidden_child, listings)
        files = listing.files
        chunk = run.chunk
        for i in range(chunk, len(files), chunk):
            run.submit(_chunk_job, run, roots, rel, drel, hidden, files[i : i + chunk])
        _place_entries(run, rel, sdir, ddir, files[:chunk], listing.links, hidden)
    finally:
        os.close(sdir)
        os.close(ddir)


def _restore_dir_modes(run: _Run, dst_root_fd: int, *, hidden: bool) -> None:
    """Directories were kept owner-writable while being filled; give them their mode:
    ``hidden=True`` the new ones (before they are revealed, so they appear complete),
    ``hidden=False`` the existing ones made writable for the merge (after the new ones
    were renamed into them, which needed them writable)."""
    todo = [(d, m) for d, m in run.restore_modes if _under_hidden(run, d) == hidden]
    for drel, mode in sorted(todo, key=lambda x: -x[0].count("/")):
        fd = open_beneath(dst_root_fd, drel, _DIR_FLAGS)
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)


def _make_hidden(run: _Run, pfd: int, parent_drel: str, tmp: str) -> tuple[int, int]:
    """Make the hidden directory ``tmp`` and lock it as ours (see _owner); its (dev, ino)."""
    os.mkdir(tmp, 0o777, dir_fd=pfd)
    fd = os.open(tmp, _DIR_FLAGS | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
    try:
        st = os.fstat(fd)
        lk = hold(fd)
        if lk is not None:
            with run.lock:
                run.locks[(parent_drel, tmp)] = lk
        return (st.st_dev, st.st_ino)
    finally:
        os.close(fd)


def _unhold(run: _Run, pfd: int, parent_drel: str, tmp: str) -> None:
    """Drop the lock file of a hidden directory before it gets its final name."""
    with run.lock:
        lk = run.locks.pop((parent_drel, tmp), None)
    if lk is None:
        return
    fd = os.open(tmp, _DIR_FLAGS | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
    try:
        release(fd, lk)
    finally:
        os.close(fd)


def _reveal(run: _Run, dst_root_fd: int) -> None:
    """Rename each new directory from its temporary name to its final one, parents first.

    If another process created the final name meanwhile, merge into it instead (each
    file renamed into place on its own) and drop the hidden copy."""
    tops = sorted(run.hidden_tops, key=lambda t: t[1].count("/"))
    for rel, parent_drel, tmp, name, ident in tops:
        pfd = open_beneath(dst_root_fd, parent_drel, _DIR_FLAGS)
        try:
            _unhold(run, pfd, parent_drel, tmp)
            try:
                os.rename(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                _merge_instead(run, rel, pfd, tmp, ident)
        finally:
            os.close(pfd)


def _merge_instead(run: _Run, rel: str, pfd: int, tmp: str, ident: tuple[int, int]) -> None:
    sub = place(
        run.src_path(rel),
        run.dst_path(rel),
        strategy=run.plan.requested or "auto",
        strict=run.plan.strict,
        xattrs=run.xattrs,
        times=run.times,
        fsync=run.fsync,
        workers=run.workers,
        copy=(lambda p: private(_join(rel, p))) if (private := run.private) else None,
        observer=(lambda p, how: seen(_join(rel, p), how)) if (seen := run.observer) else None,
    )
    with run.lock:
        run.fallbacks.extend(sub.fallbacks)
    rmtree_at(pfd, tmp, expect=ident)


def _close_locks(run: _Run) -> None:
    """Close the locks still held (after a failure: the hidden trees are gone)."""
    with run.lock:
        fds = list(run.locks.values())
        run.locks.clear()
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _rollback(run: _Run, dst_root_fd: int) -> None:
    """Remove what this run added -- hidden new directories, files new in existing ones --
    each only if it is still the inode this run made (another process may have placed
    its own file at that name meanwhile), and give back modes this run changed."""
    for rel_dir, name, ident in run.created_files:
        try:
            dfd = open_beneath(dst_root_fd, run.drels.get(rel_dir, rel_dir), _DIR_FLAGS)
        except OSError:
            continue
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if (st.st_dev, st.st_ino) == ident:
                os.unlink(name, dir_fd=dfd)
        except OSError:
            pass
        finally:
            os.close(dfd)
    for rel, parent_drel, tmp, _name, ident in run.hidden_tops:
        try:
            pfd = open_beneath(dst_root_fd, parent_drel, _DIR_FLAGS)
        except OSError:
            continue
        try:
            rmtree_at(pfd, tmp, expect=ident)
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("could not roll back %s: %s", run.dst_path(rel), e)
        finally:
            os.close(pfd)
    existing_modes = [(d, m) for d, m in run.restore_modes if not _under_hidden(run, d)]
    for drel, mode in existing_modes:
        with contextlib.suppress(OSError):
            fd = open_beneath(dst_root_fd, drel, _DIR_FLAGS)
            try:
                os.fchmod(fd, mode)
            finally:
                os.close(fd)


def _under_hidden(run: _Run, drel: str) -> bool:
    return any(
        drel == _join(p, tmp) or drel.startswith(_join(p, tmp) + "/")
        for _r, p, tmp, *_ in run.hidden_tops
    )


# -- the public call ------------------------------------------------------------------------


def _split_dst(src: str, dst: str) -> tuple[str, str]:
    """(parent as given, last component): never normalised, so ``a/link/../b`` means
    what the kernel says; refuses '', '.', '..' and '/' as the last component."""
    if not src or not dst:
        raise PlaceError(errno.EINVAL, "empty path", src or None, None, dst or None)
    stripped = dst.rstrip("/")
    parent, base = os.path.split(stripped)
    if base in ("", ".", ".."):
        raise PlaceError(
            errno.EINVAL, "refusing to place at '.', '..' or '/': name the entry", src, None, dst
        )
    return parent or ".", base


def _ancestry(pfd: int) -> list[tuple[int, int]]:
    """(st_dev, st_ino) of the directory open at ``pfd`` and of each of its ancestors, as
    the kernel walks ``..`` (through bind mounts and symlinks alike)."""
    out: list[tuple[int, int]] = []
    fd = os.dup(pfd)
    try:
        while True:
            st = os.fstat(fd)
            ident = (st.st_dev, st.st_ino)
            if out and out[-1] == ident:  # "/" is its own parent
                return out
            out.append(ident)
            up = os.open("..", _DIR_FLAGS | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = up
    finally:
        os.close(fd)


def _check_pair(src: str, src_st: os.stat_result, pfd: int, base: str, dst: str) -> None:
    """Refuse a destination that is the source or inside it -- compared by inode, so a
    bind mount or a symlink of the source counts -- before anything is written."""
    src_ident = (src_st.st_dev, src_st.st_ino)
    try:
        dst_st: os.stat_result | None = os.stat(base, dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError:
        dst_st = None
    if dst_st is not None and stat.S_ISLNK(dst_st.st_mode):
        with contextlib.suppress(OSError):  # a symlink to the source is the source too
            if os.path.samestat(os.stat(base, dir_fd=pfd), src_st):
                dst_st = src_st
    if dst_st is not None and (dst_st.st_dev, dst_st.st_ino) == src_ident:
        raise PlaceError(errno.EINVAL, "source and destination are the same", src, None, dst)
    if stat.S_ISDIR(src_st.st_mode) and src_ident in _ancestry(pfd):
        raise PlaceError(errno.EINVAL, "destination is inside the source", src, None, dst)
    if not stat.S_ISDIR(src_st.st_mode) and dst_st is not None and stat.S_ISDIR(dst_st.st_mode):
        raise PlaceError(errno.EISDIR, "source is a file, destination a directory", src, None, dst)


def _open_parent(src: str, parent: str, dst: str) -> int:
    try:
        os.makedirs(parent, exist_ok=True)
        return os.open(parent, _DIR_FLAGS | os.O_CLOEXEC)
    except OSError as e:
        raise PlaceError(
            e.errno, f"cannot create destination parent: {e.strerror}", src, None, dst
        ) from None


PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class _Options:
    strategy: StrategyArg
    strict: bool | None
    workers: int | None
    progress: Callable[[int, int], None] | None
    xattrs: bool
    times: bool
    fsync: bool
    private: Callable[[str], bool] | None
    observer: Callable[[str, str], None] | None


def _policy(copy: Callable[[str], bool] | Iterable[str] | None) -> Callable[[str], bool] | None:
    if copy is None:
        return None
    if callable(copy):
        return copy
    if isinstance(copy, str):
        copy = [copy]
    patterns = tuple(copy)
    if not patterns:
        return None
    import fnmatch

    return lambda rel: any(fnmatch.fnmatchcase(rel, pat) for pat in patterns)


class _Placement:
    """One ``(src, dst)`` placement in three steps -- :meth:`prepare` (checks, plan;
    nothing written), :meth:`start` (the jobs go to the pool) and :meth:`finish`
    (wait, reveal or roll back, the report) -- so that :func:`place_many` can run
    many at once on one pool."""

    def __init__(self, src: PathLike, dst: PathLike, files: Iterable[PathLike] | None) -> None:
        self.s, self.d = os.fspath(src), os.fspath(dst)
        self.files = files
        self.pfd = -1
        self.src_root_fd = -1
        self.dst_root_fd = -1
        self.hidden_root: str | None = None
        self.hidden_ident = _NO_IDENT
        self.base = ""
        self.run: _Run | None = None
        self.started = False
        self.t0 = time.perf_counter()

    # -- prepare: nothing written yet ----------------------------------------------------
    def prepare(
        self, opts: _Options, tasks: Tasks | None, plans: dict[tuple[str, str], Plan]
    ) -> None:
        s, d = self.s, self.d
        parent_arg, self.base = _split_dst(s, d)
        try:
            src_st = os.stat(s)
        except OSError as e:
            raise PlaceError(e.errno, f"cannot read source: {e.strerror}", s, None, d) from None
        real_src = os.path.realpath(s)
        self.pfd = _open_parent(s, parent_arg, d)
        _check_pair(s, src_st, self.pfd, self.base, d)
        parent = fd_path(self.pfd, parent_arg)
        real_dst = os.path.join(parent, self.base)
        is_dir = stat.S_ISDIR(src_st.st_mode)
        key = (real_src if is_dir else os.path.dirname(real_src), parent)
        p = plans.get(key)
        if p is None:
            try:
                p = plan(real_src, real_dst, strategy=opts.strategy, strict=opts.strict)
            except ValueError as e:
                raise PlaceError(errno.EINVAL, str(e), s, None, d) from None
            plans[key] = p
        if p.unavailable is not None:
            raise StrategyUnavailable(p.unavailable[0], p.unavailable[1], s, None, d)
        nworkers = max(1, opts.workers if opts.workers is not None else p.workers)
        collect_trash(parent)  # what an earlier remove() deferred here (one lstat if none)
        self.run = _Run(
            p,
            real_src if is_dir else os.path.dirname(real_src),
            real_dst if is_dir else parent,
            xattrs=opts.xattrs,
            times=opts.times,
            fsync=opts.fsync,
            progress=opts.progress,
            workers=nworkers if is_dir else 1,
            tasks=tasks,
            private=opts.private,
            observer=opts.observer,
        )
        self.sname = None if is_dir else os.path.basename(real_src)
        if is_dir:
            self._open_tree()

    def _open_tree(self) -> None:
        run, pfd, base = self.run, self.pfd, self.base
        assert run is not None
        self.src_root_fd = os.open(run.src_root, _DIR_FLAGS | os.O_CLOEXEC)
        self.listings = None if self.files is None else _listings_from_files(self.files, self.s)
        try:
            os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            _scan_existing(pfd)  # drop temporaries a killed run left beside it
            self.hidden_root = run.tmpname()
            self.hidden_ident = _make_hidden(run, pfd, "..", self.hidden_root)
        try:
            self.dst_root_fd = os.open(
                self.hidden_root or base, _DIR_FLAGS | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd
            )
        except OSError as e:
            raise PlaceError(
                e.errno if e.errno != errno.ELOOP else errno.ENOTDIR,
                "destination exists and is not a directory",
                self.s,
                None,
                self.d,
            ) from None
        run.dst_root_fd = self.dst_root_fd
        total = sum(len(x.listed) for x in self.listings.values()) if self.listings else 0
        run.chunk = _chunk_size(total, run.workers, run.plan.network)

    # -- start and finish ------------------------------------------------------------------
    def start(self) -> None:
        run = self.run
        assert run is not None
        self.started = True
        if self.sname is None:
            roots = (self.src_root_fd, self.dst_root_fd)
            run.start_jobs(
                _dir_job, run, roots, "", "", self.hidden_root is not None, self.listings
            )
        else:
            _place_one(run, self.pfd, self.sname, self.base)

    def finish(self) -> PlaceReport:
        run = self.run
        assert run is not None
        if self.sname is None:
            self._finish_tree(run)
        return PlaceReport(
            src=self.s,
            dst=self.d,
            files=run.files,
            dirs=run.dirs,
            symlinks=run.symlinks,
            bytes=run.bytes,
            by_strategy=dict(run.counts),
            fallbacks=tuple(run.fallbacks),
            skipped=tuple(run.skipped),
            seconds=time.perf_counter() - self.t0,
            chain=run.plan.chain,
            workers=run.workers,
            warnings=(*run.plan.warnings, *run.warnings),
        )

    def _finish_tree(self, run: _Run) -> None:
        pfd, base = self.pfd, self.base
        try:
            run.wait_jobs()
            if run.error is not None:
                raise run.error
            # Lock files go while every hidden directory is still writable: the modes
            # restored next may be read-only (0555), where the unlink would fail and
            # leave the lock file in the finished tree.
            for _rel, parent_drel, tmp, _name, _ident in run.hidden_tops:
                dfd = open_beneath(self.dst_root_fd, parent_drel, _DIR_FLAGS)
                try:
                    _unhold(run, dfd, parent_drel, tmp)
                finally:
                    os.close(dfd)
            if self.hidden_root is not None:
                _unhold(run, pfd, "..", self.hidden_root)
            fresh = self.hidden_root is not None  # then every directory here is new
            _restore_dir_modes(run, self.dst_root_fd, hidden=True)
            if fresh:
                _restore_dir_modes(run, self.dst_root_fd, hidden=False)
            _reveal(run, self.dst_root_fd)
            if self.hidden_root is not None:
                try:
                    os.rename(self.hidden_root, base, src_dir_fd=pfd, dst_dir_fd=pfd)
                except OSError as e:
                    if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                        raise
                    _merge_instead(run, "", pfd, self.hidden_root, self.hidden_ident)
                self.hidden_root = None
            if not fresh:
                _restore_dir_modes(run, self.dst_root_fd, hidden=False)
        except BaseException:
            self.abandon()
            raise

    def abandon(self) -> None:
        """Roll back whatever this placement made (after a failure anywhere)."""
        run = self.run
        if run is None:
            return
        run.stop.set()
        if self.started and self.sname is None:
            with contextlib.suppress(BaseException):
                run.wait_jobs()
        if self.dst_root_fd >= 0:
            _rollback(run, self.dst_root_fd)
        if self.hidden_root is not None:
            if self.dst_root_fd >= 0:
                os.close(self.dst_root_fd)
                self.dst_root_fd = -1
            try:
                rmtree_at(self.pfd, self.hidden_root, expect=self.hidden_ident)
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("could not roll back %s: %s", run.dst_root, e)
            self.hidden_root = None

    def close(self) -> None:
        if self.run is not None:
            _close_locks(self.run)
        for fd in (self.dst_root_fd, self.src_root_fd, self.pfd):
            if fd >= 0:
                os.close(fd)
        self.dst_root_fd = self.src_root_fd = self.pfd = -1

    def error(self, e: OSError) -> LinkStrategyError:
        """A call outside the per-file paths failed: name both paths, never a temporary."""
        if isinstance(e, LinkStrategyError):
            return e
        fn = e.filename if isinstance(e.filename, str) else None
        where = f" ({fn})" if fn and not is_tmp_name(os.path.basename(fn)) else ""
        err = PlaceError(e.errno, f"{e.strerror}{where}", self.s, None, self.d)
        err.__cause__ = e
        return err


def place(
    src: PathLike,
    dst: PathLike,
    *,
    strategy: StrategyArg = "auto",
    strict: bool | None = None,
    workers: int | None = None,
    files: Iterable[PathLike] | None = None,
    progress: Callable[[int, int], None] | None = None,
    xattrs: bool = True,
    times: bool = True,
    fsync: bool = False,
    copy: Callable[[str], bool] | Iterable[str] | None = None,
    observer: Callable[[str, str], None] | None = None,
) -> PlaceReport:
    """Place the file or tree ``src`` at ``dst`` by reflink, hardlink or copy.

    A file: ``dst`` becomes that file.  A directory: ``dst`` gets the same tree;
    an existing ``dst`` directory is merged into (files from ``src`` replace
    same-named files, everything else stays).  Parents of ``dst`` are created.

    ``strategy``: ``"auto"`` follows :func:`plan` (and ``$LINKSTRATEGY_STRATEGY``,
    a preference that falls back to a copy with one warning); a strategy or an
    ordered list (``("reflink", "copy")``; ``"symlink"`` only when listed) is
    strict unless ``strict=False``: when the pair can do none of it,
    :class:`StrategyUnavailable` is raised before anything is written.
    ``strict``: see :func:`plan`.  ``workers``: threads (default from the plan:
    few on a local disk, many on a network filesystem).  ``files``: relative paths of the files and
    symlinks to place (e.g. from a RECORD), so no source directory is listed.
    ``progress(done, total)`` is called as files are placed (after each file, or
    each batch the C loop placed); ``total`` counts the files found so far and
    grows while the source is being walked.  ``xattrs``:
    copy extended attributes on clones and copies.  ``times``: give clones and copies
    the source's atime and mtime (``False``, like ``cp`` without ``-p``, saves a
    request per file on a network filesystem).  ``fsync``: flush each file
    and directory before it is renamed into place.  ``copy``: files the caller
    will rewrite (RECORD, INSTALLER, ...) -- glob patterns matched against the path
    relative to ``src`` (``fnmatch``; ``*`` crosses ``/``), or a callable taking
    that path -- are never hardlinked: cloned where the pair can, else copied,
    so editing them never edits the cache.  ``observer(path, how)`` is called
    from the worker threads for every entry placed (``how``: the strategy, or
    ``"symlink"`` for a symlink recreated); it must be thread-safe and quick.

    Special files (FIFOs, sockets, devices) are never opened: they are skipped
    and listed in ``report.skipped``.  On any real error (ENOSPC, EIO, EROFS,
    EACCES on the destination, ...) the run stops, everything this run created is
    removed again, and :class:`PlaceError` names both paths.  Files that
    replaced existing ones stay replaced; use :func:`replace` for all-or-nothing.

    >>> import linkstrategy, pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "cache").mkdir(), (d / "cache" / "a.txt").write_text("hi")
    >>> r = linkstrategy.place(d / "cache", d / "site")
    >>> (r.files, (d / "site" / "a.txt").read_text())
    (1, 'hi')
    """
    opts = _Options(
        strategy, strict, workers, progress, xattrs, times, fsync, _policy(copy), observer
    )
    job = _Placement(src, dst, files)
    try:
        job.prepare(opts, None, {})
        job.start()
        return job.finish()
    except OSError as e:
        job.abandon()
        raise job.error(e) from e.__cause__
    except BaseException:
        job.abandon()
        raise
    finally:
        job.close()


#: One job of :func:`place_many`: ``(src, dst)`` or ``(src, dst, files)``.
JobSpec = tuple[PathLike, PathLike] | tuple[PathLike, PathLike, Iterable[PathLike] | None]


def place_many(
    jobs: Iterable[JobSpec],
    *,
    strategy: StrategyArg = "auto",
    strict: bool | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    xattrs: bool = True,
    times: bool = True,
    fsync: bool = False,
    copy: Callable[[str], bool] | Iterable[str] | None = None,
    observer: Callable[[str, str], None] | None = None,
    check: bool = True,
) -> list[PlaceReport | LinkStrategyError]:
    """Place many ``(src, dst)`` or ``(src, dst, files)`` at once: the way to install many
    packages.  All run together on one pool of ``workers`` threads (default: the
    largest a plan asks for) with one plan per (cache, destination directory), so a
    small package costs its syscalls, not a call's set-up.  Options as for
    :func:`place`, for every job.

    Returns one :class:`PlaceReport` per job, in order.  A job that fails is rolled
    back on its own (the others go on); with ``check=True`` (the default) the first
    failure is raised once every job has finished, else it stands in the list as a
    :class:`PlaceError`.  Destinations should not overlap (two jobs into one
    directory tree are merged by whichever is second, as two calls would be).

    >>> import linkstrategy, pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("a", "b"):
    ...     (d / "cache" / name).mkdir(parents=True)
    ...     _ = (d / "cache" / name / "m.py").write_text(name)
    >>> rs = linkstrategy.place_many([(d / "cache/a", d / "site/a"), (d / "cache/b", d / "site/b")])
    >>> [r.files for r in rs], (d / "site/b/m.py").read_text()
    ([1, 1], 'b')
    """
    opts = _Options(
        strategy, strict, workers, progress, xattrs, times, fsync, _policy(copy), observer
    )
    placements = [_Placement(j[0], j[1], j[2] if len(j) > 2 else None) for j in jobs]
    results: list[PlaceReport | LinkStrategyError | None] = [None] * len(placements)
    plans: dict[tuple[str, str], Plan] = {}
    # One set of threads for every job: the width the caller asks, else the widest plan's.
    tasks = Tasks(shared(), workers or 1)
    try:
        for i, job in enumerate(placements):
            try:
                job.prepare(opts, tasks, plans)
                if workers is None and job.run is not None:
                    tasks.workers = max(tasks.workers, job.run.plan.workers)
                job.start()
            except OSError as e:
                job.abandon()
                results[i] = job.error(e)
        for i, job in enumerate(placements):
            if results[i] is not None:
                continue
            try:
                results[i] = job.finish()
            except OSError as e:
                results[i] = job.error(e)
    except BaseException:
        for job in placements:
            job.abandon()
        raise
    finally:
        for job in placements:
            job.close()
    out = [r for r in results if r is not None]
    if check:
        for r in out:
            if isinstance(r, LinkStrategyError):
                raise r
    return out


def _place_one(run: _Run, ddir: int, sname: str, dname: str) -> None:
    sdir = os.open(run.src_root, _DIR_FLAGS | os.O_CLOEXEC)
    try:
        run.dst_root_fd = ddir
        run.existing[""] = frozenset()  # a new name in an existing directory: roll back
        st = os.stat(sname, dir_fd=sdir, follow_symlinks=False)
        exists = True
        try:
            os.stat(dname, dir_fd=ddir, follow_symlinks=False)
        except FileNotFoundError:
            exists = False
        run.discovered = 1
        tally = _Tally()
        if stat.S_ISLNK(st.st_mode):
            _place_symlink(run, "", sdir, ddir, sname, dname, exists, tally)
        elif stat.S_ISREG(st.st_mode):
            _place_file(
                run, "", sdir, ddir, sname, dname, exists, tally, False, _private(run, dname)
            )
        else:
            run.skipped.append(Skipped(sname, f"{_special(st.st_mode)}: not placed"))
        run.merge(tally)
    finally:
        os.close(sdir)


def _private(run: _Run, rel: str) -> bool:
    return run.private is not None and run.private(rel)


def _chunk_size(total: int, workers: int, network: bool) -> int:
    """Files per job.  Small on a network filesystem (latency-bound: spread wide), larger
    locally (each job opens two directories)."""
    if network:
        return 8
    return 256 if total == 0 else max(16, min(256, total // (workers * 4) or 16))
