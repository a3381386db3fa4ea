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

import errno
import logging
import os
import queue
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import _errors as E
from ._errors import PlaceError, StrategyUnavailable
from ._owner import HOST, is_orphan, tag
from ._plan import STRATEGIES, Plan, Strategy, StrategyArg, plan
from ._remove import collect_trash
from ._syscalls import (
    CLONE_CREATES,
    clone_at,
    clone_fd,
    copy_fd,
    copy_sparse,
    load_speedups,
    open_beneath,
)

__all__ = ["Fallback", "PlaceReport", "Skipped", "place"]

log = logging.getLogger("linkstrategy")

#: Temporary names start with this; the host tag and pid say whose they are, so a
#: later place() can remove the ones whose writer is gone.  Short and independent
#: of the final name, so 255-byte names still fit.
TMP_PREFIX = ".lstmp-"
_STALE_FOREIGN_SECONDS = 3600.0  # another host's temporaries: removed after an hour

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in for a file since the walk must not block the open
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_TRANSIENT_TRIES = 4

#: The optional C per-file loop (``_speedups.c``), or None: then every file takes
#: the Python path.  Tests set this to None to run that path.
_fast: Any = load_speedups()
_FAST_CODES: dict[str, int] = {"hardlink": 0, "reflink": 1, "copy": 2}

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
    """What one source directory holds (from scandir, or from the caller's file list)."""

    files: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    subdirs: list[str] = field(default_factory=list)


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


def _listings_from_files(
    src_root_fd: int, files: Iterable[str], skipped: list[Skipped]
) -> dict[str, _Listing]:
    """Listings built from a caller's file list (e.g. a RECORD): no directory is read."""
    listings: dict[str, _Listing] = {"": _Listing()}
    seen: set[str] = set()
    for raw in files:
        rel = os.path.normpath(os.fspath(raw)).strip("/")
        if rel in ("", ".", "..") or rel.startswith("../"):
            raise ValueError(f"file list entry {raw!r} is not a path inside the source")
        if rel in seen:  # listed twice (a RECORD can be sloppy): place it once
            continue
        seen.add(rel)
        d, _, name = rel.rpartition("/")
        st = os.stat(rel, dir_fd=src_root_fd, follow_symlinks=False)
        parts = d.split("/") if d else []
        for i in range(len(parts)):
            sub = "/".join(parts[: i + 1])
            if sub not in listings:
                listings[sub] = _Listing()
                listings["/".join(parts[:i])].subdirs.append(parts[i])
        if stat.S_ISLNK(st.st_mode):
            listings[d].links.append(name)
        elif stat.S_ISREG(st.st_mode):
            listings[d].files.append(name)
        elif stat.S_ISDIR(st.st_mode):
            raise ValueError(f"file list entry {raw!r} is a directory")
        else:
            skipped.append(Skipped(rel, f"{_special(st.st_mode)}: not placed"))
    return listings


# -- the run ---------------------------------------------------------------------------


class _Abort(Exception):
    """Another job failed; stop quietly."""


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
    ) -> None:
        self.plan = p
        self.src_root = src_root
        self.dst_root = dst_root
        self.chain: list[Strategy] = list(p.chain)
        self.forced = p.strict  # a capability error at the chain's end is an error
        self.xattrs = xattrs
        self.fsync = fsync
        self.progress = progress
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
        self.cfr = True  # copy_file_range still worth trying for this pair
        # What this run changed, for the final renames and for rollback.  New
        # directories are built under temporary names and renamed into place at
        # the end, so files inside them need no temporary names of their own.
        self.hidden_tops: list[tuple[str, str, str, str]] = []  # rel, parent drel, tmp, name
        self.restore_modes: list[tuple[str, int]] = []  # drel, mode
        self.created_files: list[tuple[str, str]] = []  # new names in pre-existing dirs
        self.existing: dict[str, frozenset[str]] = {}  # pre-existing dir -> its names
        self.tmp_seq = 0
        # scheduling: a queue, ``workers`` threads, and a count of unfinished jobs
        self.queue: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None]
        self.queue = queue.SimpleQueue()
        self.threaded = False
        self.chunk = 64
        self.pending = 0
        self.error: BaseException | None = None
        self.stop = threading.Event()

    # scheduling ------------------------------------------------------------------------
    def run_jobs(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` and every job it submits on ``workers`` threads; return when
        all are done (or, after an error, skipped).  The error is left in ``self.error``."""
        self.threaded = True
        self.submit(fn, *args)
        threads = [
            threading.Thread(target=self._worker, name=f"linkstrategy-{i}")
            for i in range(self.workers)
        ]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        except BaseException:  # KeyboardInterrupt, or no thread: stop the jobs, then wait
            self.stop.set()
            for t in threads:
                if t.ident is not None:
                    t.join()
            raise
        finally:
            self.threaded = False

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        if not self.threaded:  # single file: run inline
            fn(*args)
            return
        with self.lock:
            self.pending += 1
        self.queue.put((fn, args))

    def _worker(self) -> None:
        get = self.queue.get
        while (job := get()) is not None:
            self._guarded(job[0], job[1])

    def _guarded(self, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        try:
            if not self.stop.is_set():
                fn(*args)
        except _Abort:
            pass
        except BaseException as e:
            with self.lock:
                if self.error is None:
                    self.error = e
            self.stop.set()
        finally:
            with self.lock:
                self.pending -= 1
                last = self.pending == 0
            if last:  # nothing queued or running: let every worker go
                for _ in range(self.workers):
                    self.queue.put(None)

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
            "for this pair. Set LINKSTRATEGY_STRATEGY to force one strategy."
        )
        with self.lock:
            self.warnings.append(msg)
        with _warned_lock:
            if key in _warned:
                return
            _warned.add(key)
        log.warning("%s", msg)

    def tmpname(self) -> str:
        with self.lock:
            self.tmp_seq += 1
            seq = self.tmp_seq
        return f"{TMP_PREFIX}{tag()}-{seq}"

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


def _is_stale_tmp(name: str, dfd: int) -> bool:
    host, _, rest = name[len(TMP_PREFIX) :].partition("-")
    pid = rest.partition("-")[0]
    if host == HOST:
        return is_orphan(host, pid, None)
    try:  # another host's temporary (a shared network filesystem): go by age
        mtime: float | None = os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mtime
    except OSError:
        mtime = None
    return is_orphan(host, pid, mtime)


def _scan_existing(dfd: int) -> frozenset[str]:
    """List a destination directory that existed before: its names, minus stale temporaries
    (files or whole trees) left by a run that was killed."""
    names: set[str] = set()
    with os.scandir(dfd) as it:
        for e in it:
            if e.name.startswith(TMP_PREFIX) and _is_stale_tmp(e.name, dfd):
                try:
                    if e.is_dir(follow_symlinks=False):
                        _rmtree_at(dfd, e.name)
                    else:
                        os.unlink(e.name, dir_fd=dfd)
                except OSError:
                    pass
                continue
            names.add(e.name)
    return frozenset(names)


# -- one file --------------------------------------------------------------------------


def _copy_xattrs(run: _Run, sfd: int, dfd: int) -> None:
    if not run.xattrs or run.xattr_failed:
        return
    try:
        names = os.listxattr(sfd)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return
        raise
    for n in names:
        try:
            os.setxattr(dfd, n, os.getxattr(sfd, n))
        except OSError as e:
            if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EACCES):
                # e.g. EFS has no user xattrs, security.* needs privileges: say so once
                with run.lock:
                    if not run.xattr_failed:
                        run.xattr_failed = True
                        run.warnings.append(
                            "extended attributes not kept on "
                            f"{run.plan.dst_probe.mount.mount_point}"
                            f" ({_errname(e.errno)} setting {n})"
                        )
                return
            raise


def _write_file(run: _Run, strategy: Strategy, sdir: int, ddir: int, sname: str, tmp: str) -> int:
    """Clone or copy ``sname`` into the new file ``tmp``, with mode, times and xattrs."""
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
            # The source's mode at creation (FICLONE carries none: an installer once
            # lost exec bits that way); exclusive, so nothing existing is touched.
            dfd = os.open(tmp, _CREATE_FLAGS, mode, dir_fd=ddir)
        try:
            if strategy == "reflink":
                if not CLONE_CREATES:
                    clone_fd(sfd, dfd)
            elif st.st_blocks * 512 < st.st_size - 65536:  # has holes worth keeping
                copy_sparse(sfd, dfd, st.st_size)
            elif not copy_fd(sfd, dfd, st.st_size, try_cfr=run.cfr):
                run.cfr = False  # EXDEV and friends: not for this pair; stop asking
            if mode & run.umask:  # create() applied the umask: set the exact mode
                os.fchmod(dfd, mode)
            os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))
            _copy_xattrs(run, sfd, dfd)
            if run.fsync:
                os.fsync(dfd)
        finally:
            os.close(dfd)
        return st.st_size
    finally:
        os.close(sfd)


def _capability(strategy: Strategy) -> frozenset[int]:
    if strategy == "reflink":
        return E.CLONE_UNSUPPORTED
    if strategy == "hardlink":
        return E.LINK_UNSUPPORTED
    return frozenset()


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
) -> None:
    """Place one regular file through the chain, sorting errors by the errno sets."""
    path = _join(rel_dir, dname)
    chain = list(run.chain)
    for i, strategy in enumerate(chain):
        nxt = chain[i + 1] if i + 1 < len(chain) else None
        tries = 0
        while True:
            try:
                size = _attempt(run, strategy, rel_dir, sdir, ddir, sname, dname, exists, direct)
            except OSError as e:
                code = e.errno
                if code in E.TRANSIENT and tries < _TRANSIENT_TRIES:
                    tries += 1
                    time.sleep(0.005 * 2**tries)
                    continue
                capability = code in _capability(strategy)
                per_file = code in E.PER_FILE_LIMIT or code in E.TRANSIENT
                if (capability or per_file) and nxt is not None:
                    reason = "per-file limit" if per_file else f"pair cannot {strategy}"
                    with run.lock:
                        run.fallbacks.append(Fallback(path, strategy, nxt, code or 0, reason))
                    if not per_file:
                        run.downgrade(strategy, e, path)
                    break
                src, dst = run.src_path(_join(rel_dir, sname)), run.dst_path(path)
                if capability and run.forced:
                    raise StrategyUnavailable(
                        code, f"forced strategy {strategy} failed: {e.strerror}", src, None, dst
                    ) from e
                raise PlaceError(code, f"{strategy} failed: {e.strerror}", src, None, dst) from e
            tally.counts[strategy] += 1
            tally.bytes += size
            tally.files += 1
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
                _note_created(run, rel_dir, dname)
                return 0
        tmp = run.tmpname()
        os.symlink(target, tmp, dir_fd=ddir)
        _rename_into_place(run, rel_dir, ddir, tmp, dname)
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
                _note_created(run, rel_dir, dname)
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
        _rename_into_place(run, rel_dir, ddir, tmp, dname)
        return 0
    tmp = dname if direct else run.tmpname()
    try:
        size = _write_file(run, strategy, sdir, ddir, sname, tmp)
    except BaseException:
        _unlink_quiet(tmp, ddir)
        raise
    if not direct:
        _rename_into_place(run, rel_dir, ddir, tmp, dname)
    return size


def _rename_into_place(run: _Run, rel_dir: str, ddir: int, tmp: str, name: str) -> None:
    try:
        os.rename(tmp, name, src_dir_fd=ddir, dst_dir_fd=ddir)
    except BaseException:
        _unlink_quiet(tmp, ddir)
        raise
    _note_created(run, rel_dir, name)


def _note_created(run: _Run, rel_dir: str, name: str) -> None:
    old = run.existing.get(rel_dir)
    if old is not None and name not in old:
        with run.lock:
            run.created_files.append((rel_dir, name))


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
                _note_created(run, rel_dir, dname)
                done = True
            except FileExistsError:
                pass
        if not done:
            tmp = run.tmpname()
            os.symlink(target, tmp, dir_fd=ddir)
            _rename_into_place(run, rel_dir, ddir, tmp, dname)
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
        if hidden and _fast is not None and "symlink" not in run.chain:  # no C symlink path
            _place_new_files(run, rel, sdir, ddir, files, tally)
            files = []
        for name in files:
            if run.stop.is_set():
                raise _Abort
            exists = existing is not None and name in existing
            _place_file(run, rel, sdir, ddir, name, name, exists, tally, hidden)
            if watched:
                run.merge(tally)
        for name in links:
            exists = existing is not None and name in existing
            _place_symlink(run, rel, sdir, ddir, name, name, exists, tally)
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
            raise _Abort
        strategy = run.chain[0]
        nxt, nbytes, run.cfr = _fast.place_files(
            _FAST_CODES[strategy],
            sdir,
            ddir,
            names,
            i,
            run.umask,
            run.xattrs and not run.xattr_failed,
            run.fsync,
            run.cfr,
        )
        tally.counts[strategy] += nxt - i
        tally.files += nxt - i
        tally.bytes += nbytes
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
            existing = _scan_existing(ddir)
            with run.lock:
                run.existing[rel] = existing
        # (run.skipped is appended to from several threads: list.append is atomic)
        listing = _scan_source(sdir, rel, run.skipped) if listings is None else listings[rel]
        with run.lock:
            run.discovered += len(listing.files) + len(listing.links)
            run.dirs += 1
        for name in listing.subdirs:
            child = _join(rel, name)
            if hidden:
                os.mkdir(name, 0o777, dir_fd=ddir)
                run.submit(_dir_job, run, roots, child, _join(drel, name), True, listings)
            elif name in existing:
                run.submit(_dir_job, run, roots, child, _join(drel, name), False, listings)
            else:  # new here: build it hidden, rename it into place when complete
                tmp = run.tmpname()
                os.mkdir(tmp, 0o777, dir_fd=ddir)
                with run.lock:
                    run.hidden_tops.append((child, drel, tmp, name))
                run.submit(_dir_job, run, roots, child, _join(drel, tmp), True, listings)
        files = listing.files
        chunk = run.chunk
        for i in range(chunk, len(files), chunk):
            run.submit(_chunk_job, run, roots, rel, drel, hidden, files[i : i + chunk])
        _place_entries(run, rel, sdir, ddir, files[:chunk], listing.links, hidden)
    finally:
        os.close(sdir)
        os.close(ddir)


def _restore_dir_modes(run: _Run, dst_root_fd: int) -> None:
    """Directories were kept owner-writable while being filled; give them the source's mode."""
    for drel, mode in sorted(run.restore_modes, key=lambda x: -x[0].count("/")):
        fd = open_beneath(dst_root_fd, drel, _DIR_FLAGS)
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)


def _reveal(run: _Run, dst_root_fd: int) -> None:
    """Rename each new directory from its temporary name to its final one, parents first.

    If another process created the final name meanwhile, merge into it instead (each
    file renamed into place on its own) and drop the hidden copy."""
    for rel, parent_drel, tmp, name in sorted(run.hidden_tops, key=lambda t: t[1].count("/")):
        pfd = open_beneath(dst_root_fd, parent_drel, _DIR_FLAGS)
        try:
            try:
                os.rename(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                _merge_instead(run, rel, pfd, tmp)
        finally:
            os.close(pfd)


def _merge_instead(run: _Run, rel: str, pfd: int, tmp: str) -> None:
    sub = place(
        run.src_path(rel),
        run.dst_path(rel),
        strategy=run.plan.requested or "auto",
        strict=run.plan.strict,
        xattrs=run.xattrs,
        fsync=run.fsync,
        workers=run.workers,
    )
    with run.lock:
        run.fallbacks.extend(sub.fallbacks)
    _rmtree_at(pfd, tmp)


def _rollback(run: _Run, dst_root_fd: int) -> None:
    """Remove what this run added: hidden new directories, files new in existing ones."""
    for rel_dir, name in run.created_files:
        try:
            dfd = open_beneath(dst_root_fd, rel_dir, _DIR_FLAGS)
        except OSError:
            continue
        try:
            _unlink_quiet(name, dfd)
        finally:
            os.close(dfd)
    for rel, parent_drel, tmp, _name in run.hidden_tops:
        try:
            pfd = open_beneath(dst_root_fd, parent_drel, _DIR_FLAGS)
        except OSError:
            continue
        try:
            _rmtree_at(pfd, tmp)
        except OSError as e:
            log.warning("could not roll back %s: %s", run.dst_path(rel), e)
        finally:
            os.close(pfd)


def _rmtree_at(pfd: int, name: str) -> None:
    fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
    try:
        os.fchmod(fd, 0o700)
        with os.scandir(fd) as it:
            entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        for n, is_dir in entries:
            if is_dir:
                _rmtree_at(fd, n)
            else:
                os.unlink(n, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=pfd)


# -- the public call ------------------------------------------------------------------------


def _check_pair(src: str, dst: str) -> tuple[str, str]:
    try:
        src_st = os.stat(src)
    except OSError as e:
        raise PlaceError(e.errno, f"cannot read source: {e.strerror}", src, None, dst) from None
    real_src = os.path.realpath(src)
    parent = os.path.dirname(os.path.abspath(dst))
    real_dst = os.path.join(os.path.realpath(parent), os.path.basename(os.path.abspath(dst)))
    if real_dst == real_src or (
        os.path.lexists(real_dst) and os.path.samestat(src_st, os.stat(real_dst))
    ):
        raise PlaceError(errno.EINVAL, "source and destination are the same", src, None, dst)
    if stat.S_ISDIR(src_st.st_mode) and (real_dst + "/").startswith(real_src.rstrip("/") + "/"):
        raise PlaceError(errno.EINVAL, "destination is inside the source", src, None, dst)
    if not stat.S_ISDIR(src_st.st_mode) and os.path.isdir(real_dst):
        raise PlaceError(errno.EISDIR, "source is a file, destination a directory", src, None, dst)
    return real_src, real_dst


def place(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    strategy: StrategyArg = "auto",
    strict: bool | None = None,
    workers: int | None = None,
    files: Iterable[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    xattrs: bool = True,
    fsync: bool = False,
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
    copy extended attributes on clones and copies.  ``fsync``: flush each file
    and directory before it is renamed into place.

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
    t0 = time.perf_counter()
    s, d = os.fspath(src), os.fspath(dst)
    real_src, real_dst = _check_pair(s, d)
    try:
        p = plan(real_src, real_dst, strategy=strategy, strict=strict)
    except ValueError as e:
        raise PlaceError(errno.EINVAL, str(e), s, None, d) from None
    if p.unavailable is not None:
        raise StrategyUnavailable(p.unavailable[0], p.unavailable[1], s, None, d)
    nworkers = max(1, workers if workers is not None else p.workers)
    parent, base = os.path.split(real_dst)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise PlaceError(
            e.errno, f"cannot create destination parent: {e.strerror}", s, None, parent
        ) from None
    collect_trash(parent)  # what an earlier remove() deferred here (one lstat if none)
    try:
        if os.path.isdir(real_src):
            run = _Run(
                p,
                real_src,
                real_dst,
                xattrs=xattrs,
                fsync=fsync,
                progress=progress,
                workers=nworkers,
            )
            _place_tree(run, parent, base, files)
        else:
            run = _Run(
                p,
                os.path.dirname(real_src),
                parent,
                xattrs=xattrs,
                fsync=fsync,
                progress=progress,
                workers=1,
            )
            _place_one(run, os.path.basename(real_src), base)
    except PlaceError:
        raise
    except OSError as e:  # a call outside the per-file paths: still name both paths
        where = f" ({e.filename})" if isinstance(e.filename, str) else ""
        raise PlaceError(e.errno, f"{e.strerror}{where}", s, None, d) from e
    return PlaceReport(
        src=s,
        dst=d,
        files=run.files,
        dirs=run.dirs,
        symlinks=run.symlinks,
        bytes=run.bytes,
        by_strategy=dict(run.counts),
        fallbacks=tuple(run.fallbacks),
        skipped=tuple(run.skipped),
        seconds=time.perf_counter() - t0,
        chain=p.chain,
        workers=nworkers,
        warnings=(*p.warnings, *run.warnings),
    )


def _place_one(run: _Run, sname: str, dname: str) -> None:
    sdir = os.open(run.src_root, _DIR_FLAGS | os.O_CLOEXEC)
    try:
        ddir = os.open(run.dst_root, _DIR_FLAGS | os.O_CLOEXEC)
        try:
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
                _place_file(run, "", sdir, ddir, sname, dname, exists, tally)
            else:
                run.skipped.append(Skipped(sname, f"{_special(st.st_mode)}: not placed"))
            run.merge(tally)
        finally:
            os.close(ddir)
    finally:
        os.close(sdir)


def _place_tree(run: _Run, parent: str, base: str, files: Iterable[str] | None) -> None:
    """A fresh destination is built under a temporary name beside it and renamed into
    place at the end: it appears complete or not at all."""
    src_root_fd = os.open(run.src_root, _DIR_FLAGS | os.O_CLOEXEC)
    pfd = -1
    dst_root_fd = -1
    hidden_root: str | None = None
    try:
        listings = None if files is None else _listings_from_files(src_root_fd, files, run.skipped)
        pfd = os.open(parent, _DIR_FLAGS | os.O_CLOEXEC)
        if not os.path.lexists(run.dst_root):
            _scan_existing(pfd)  # drop temporaries a killed run left beside it
            hidden_root = run.tmpname()
            os.mkdir(hidden_root, 0o777, dir_fd=pfd)
        try:
            dst_root_fd = os.open(
                hidden_root or base, _DIR_FLAGS | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd
            )
        except OSError as e:
            raise PlaceError(
                e.errno if e.errno != errno.ELOOP else errno.ENOTDIR,
                "destination exists and is not a directory",
                run.src_root,
                None,
                run.dst_root,
            ) from None
        total = sum(len(x.files) for x in listings.values()) if listings else 0
        run.chunk = _chunk_size(total, run.workers, run.plan.network)
        roots = (src_root_fd, dst_root_fd)
        try:
            run.run_jobs(_dir_job, run, roots, "", "", hidden_root is not None, listings)
            if run.error is not None:
                raise run.error
            _restore_dir_modes(run, dst_root_fd)
            _reveal(run, dst_root_fd)
            if hidden_root is not None:
                try:
                    os.rename(hidden_root, base, src_dir_fd=pfd, dst_dir_fd=pfd)
                except OSError as e:
                    if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                        raise
                    _merge_instead(run, "", pfd, hidden_root)
                hidden_root = None
        except BaseException:
            run.stop.set()
            _rollback(run, dst_root_fd)
            if hidden_root is not None:
                os.close(dst_root_fd)
                dst_root_fd = -1
                try:
                    _rmtree_at(pfd, hidden_root)
                except OSError as e:
                    log.warning("could not roll back %s: %s", run.dst_root, e)
            raise
    finally:
        for fd in (dst_root_fd, pfd, src_root_fd):
            if fd >= 0:
                os.close(fd)


def _chunk_size(total: int, workers: int, network: bool) -> int:
    """Files per job.  Small on a network filesystem (latency-bound: spread wide), larger
    locally (each job opens two directories)."""
    if network:
        return 8
    return 256 if total == 0 else max(16, min(256, total // (workers * 4) or 16))
