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
4. After an error the run's :class:`._chain.Chain` decides, by the errno sets
   in :mod:`._errors`: capability errors drop the strategy for the rest of the
   run, per-file limits fall back for one file, transient errors are retried,
   anything else stops the run, removes what this run created, and raises
   :class:`PlaceError` naming both paths.

Every destination directory is reached with ``open_beneath`` (openat2 with
RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS on Linux): a component swapped for a
symlink during the run makes the run fail; it never leads outside ``dst``.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import itertools
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable

from . import _args
from . import _errors as E
from ._chain import Chain, Fallback
from ._cloop import load_speedups
from ._errors import InvalidArgument, LinkStrategyError, PlaceError, StrategyUnavailable
from ._log import log
from ._owner import TMP_PREFIX, Holds, is_tmp_name, lock_file, tmp_name
from ._plan import STRATEGIES, Plan, plan
from ._pool import Abort, Backoff, Group, Tasks, shared
from ._pycache import drop_bytecode_beside
from ._record import field, record
from ._removal import reap_stale, rmtree_at
from ._sys import (
    AT_FDCWD,
    clone_file,
    copy_fd,
    copy_sparse,
    fd_path,
    get_xattr,
    list_xattrs,
    open_beneath,
    rename_new,
    set_xattr,
    statx,
)
from ._trash import collect_trash

TYPE_CHECKING = False  # mypy treats any name TYPE_CHECKING as true; typing stays unloaded
if TYPE_CHECKING:
    from typing import Any, Protocol

    from ._plan import Strategy, StrategyArg

__all__ = ["Fallback", "PlaceReport", "Skipped", "place", "place_many"]


#: Temporary names: ``.lstmp-<owner>-<seq>`` (:mod:`._owner`), unique per process
#: across hosts; a later place() removes the ones whose maker is gone (by lock).
_seq = itertools.count(1)  # one sequence per process: runs in threads never collide

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in for a file since the walk must not block the open
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
#: Directory levels one C walk (_tree_job) descends: it holds two fds per level.
_TREE_DEPTH = 16
_NO_IDENT = (-1, -1)  # an inode nobody needs to know

#: The optional C per-file loop (``_speedups.c``), or None: then every file takes
#: the Python path.  Tests set this to None to run that path.
_fast: Any = load_speedups()


@record(frozen=True)
class Skipped:
    """A source entry that was not placed (special files are never opened)."""

    path: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "reason": self.reason}


@record(frozen=True)
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


@record
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


def _file_rels(files: Iterable[PathLike], src: str) -> list[str]:
    """A caller's file list (e.g. a RECORD) as clean relative paths, each once, in order,
    by name alone: no directory is read and nothing is stat'ed here.  ``.`` components
    are dropped, ``..`` and absolute paths refused (never resolved by string: the
    kernel decides what a symlink means).  An entry that is not a ``str`` (bytes, a
    PathLike) is its :func:`._args.path`: the C list takes only ``str`` ones."""
    rels: list[str] = []
    seen: set[str] = set()
    for raw in files:
        entry = raw if isinstance(raw, str) else _args.path(raw, "files= entry")
        if (
            entry
            and entry[0] != "."  # nor ./, .., a dotfile: the careful path below
            and entry[0] != "/"
            and entry[-1] != "/"
            and "/." not in entry
            and "//" not in entry
            and "\0" not in entry
        ):
            rel = entry  # the common case: already a clean relative path
        else:
            parts = [x for x in entry.split("/") if x not in ("", ".")]
            if not parts or ".." in parts or entry.startswith("/") or "\0" in entry:
                raise _bad_entry(entry, src)
            rel = "/".join(parts)
        if rel in seen:  # listed twice (a RECORD can be sloppy): place it once
            continue
        seen.add(rel)
        rels.append(rel)
    return rels


def _bad_entry(entry: str, src: str) -> InvalidArgument:
    return InvalidArgument(
        errno.EINVAL, f"file list entry {entry!r} is not a relative path inside the source", src
    )


def _sorted_listed(files: list[PathLike], src: str) -> list[bytes]:
    """A file list for the C walk: the paths of :func:`_file_rels`, encoded, sorted, each
    once.  ``_speedups.file_list`` does it in one call; an entry it leaves to Python (not
    a str, not encodable) and a build without it take :func:`_file_rels`, the reference."""
    got = _fast.file_list(files) if _fast is not None else None
    if isinstance(got, list):
        return got
    if isinstance(got, str):  # the first refused entry
        raise _bad_entry(got, src)
    return sorted(map(os.fsencode, _file_rels(files, src)))


def _listings_from_rels(rels: list[str]) -> dict[str, _Listing]:
    """Every directory's listing of a file list (:func:`_file_rels`), for the
    per-directory path."""
    listings: dict[str, _Listing] = {"": _Listing()}
    for rel in rels:
        parent, _, name = rel.rpartition("/")
        listing = listings.get(parent)
        if listing is None:  # a directory not seen yet: it and those above it
            parts = rel.split("/")
            for i in range(len(parts) - 1):
                sub = "/".join(parts[: i + 1])
                if sub not in listings:
                    listings[sub] = _Listing()
                    listings["/".join(parts[:i])].subdirs.append(parts[i])
            listing = listings[parent]
        listing.listed.append(name)
    return listings


if TYPE_CHECKING:

    class _Listings(Protocol):
        """What a per-directory job asks of a file list's listings: a directory's."""

        def __getitem__(self, rel: str, /) -> _Listing: ...


class _ListedTree:
    """The listings of a file list for the few directories a per-directory job visits
    when the C walk places the rest (it takes the sorted list itself): each found in
    the sorted, encoded list when asked, instead of a listing for every directory."""

    def __init__(self, listed: list[bytes]) -> None:
        self.listed = listed
        self._cache: dict[str, _Listing] = {}

    def __getitem__(self, rel: str) -> _Listing:
        got = self._cache.get(rel)
        if got is not None:
            return got
        prefix = os.fsencode(rel) + b"/" if rel else b""
        lo = bisect.bisect_left(self.listed, prefix)
        hi = bisect.bisect_left(self.listed, prefix[:-1] + b"0") if rel else len(self.listed)
        out = _Listing()
        listed, start, i = self.listed, len(prefix), lo
        while i < hi:
            p = listed[i]
            end = p.find(b"/", start)
            if end < 0:
                out.listed.append(os.fsdecode(p[start:]))
                i += 1
            else:  # a subdirectory: its paths are contiguous, skipped in one bisect
                out.subdirs.append(os.fsdecode(p[start:end]))
                i = bisect.bisect_left(listed, p[:end] + b"0", i + 1, hi)  # "0" follows "/"
        self._cache[rel] = out
        return out


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
        umask: int | None = None,
        holds: Holds | None = None,
        scanned: dict[tuple[int, int], object] | None = None,
    ) -> None:
        self.plan = p
        self.src_root = src_root
        self.dst_root = dst_root
        self.chain = Chain(p, xattrs=xattrs)  # strategies left, and what the run learns
        self.xattrs = xattrs  # as asked (``chain.xattrs``: still worth trying)
        self.times = times
        self.fsync = fsync
        self.progress = progress
        self.private = private
        self.observer = observer
        self.workers = workers
        self.umask = _current_umask() if umask is None else umask
        self.lock = threading.Lock()
        # results
        self.counts: dict[str, int] = {s: 0 for s in STRATEGIES}
        self.bytes = 0
        self.files = 0
        self.symlinks = 0
        self.dirs = 0
        self.discovered = 0
        self.skipped: list[Skipped] = []
        self.dst_root_fd = -1  # set once the destination root is open
        self.drels: dict[str, str] = {"": ""}  # source rel dir -> its destination drel
        # What this run changed, for the final renames and for rollback.  New
        # directories are built under temporary names and renamed into place at
        # the end, so files inside them need no temporary names of their own.
        # new directories built hidden: rel, parent drel, tmp, final name, (dev, ino)
        self.hidden_tops: list[tuple[str, str, str, str, tuple[int, int]]] = []
        self.locks: dict[tuple[str, str], int] = {}  # (parent drel, tmp) -> lock fd
        self.holds = holds if holds is not None else Holds()  # (a place_many's: shared)
        # a place_many's existing destination directories listed so far, by (dev, ino)
        self.scanned = scanned
        # drel, mode, and the (dev, ino) of a directory that existed (None: a new one)
        self.restore_modes: list[tuple[str, int, tuple[int, int] | None]] = []
        # new directories whose source has extended attributes (an ACL): rel, drel
        self.dir_xattrs: list[tuple[str, str]] = []
        # new names in pre-existing dirs, with the inode this run put there
        self.created_files: list[tuple[str, str, tuple[int, int]]] = []
        self.existing: dict[str, frozenset[str]] = {}  # pre-existing dir -> its names
        # *.py files this run put in place of existing ones: their bytecode goes at the end
        self.replaced_modules: list[tuple[str, str]] = []  # rel dir, name
        # hard-linked sources: (dev, ino) -> (drel dir, name) once placed, or an Event
        # while the first of its names is being written
        self.linked: dict[tuple[int, int], tuple[str, str] | threading.Event] = {}
        # scheduling: this tree's jobs, on a Tasks of the process's shared pool
        self.group = Group(tasks if tasks is not None else Tasks(shared(), workers))
        self.stop = self.group.stop
        self.threaded = False
        self.chunk = 64
        self.pairs: set[_Pair] = set()  # directory fds shared by chunk jobs, while open
        self.whole_trees = False  # new subtrees go to the C walk (_tree_job)
        self.hungry: object = None  # the C flag a walk reads to share work (Tasks.hunger)
        # files=: every listed path (encoded, sorted) for the C walk's file lists
        self.listed: list[bytes] | None = None

    @property
    def error(self) -> BaseException | None:
        return self.group.error

    # scheduling ------------------------------------------------------------------------
    def run_jobs(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` and every job it submits on the pool; return when all are
        done (or, after an error, skipped).  The error is left in ``self.error``."""
        self.start_jobs(fn, *args)
        self.wait_jobs()

    def start_jobs(self, fn: Callable[..., None], *args: Any, here: bool = False) -> None:
        """The first job of a tree, and the jobs it submits, on the workers; ``here``:
        that first job in this thread (the jobs it submits still go to the workers)."""
        self.threaded = True
        if here:
            self.group.call(fn, *args)
        else:
            self.group.submit(fn, *args)

    def wait_jobs(self) -> None:
        try:
            self.group.wait()
        finally:
            self.threaded = False
            with self.lock:
                left, self.pairs = self.pairs, set()
            for pair in left:  # chunk jobs skipped after an error never released theirs
                pair.close()

    def submit(self, fn: Callable[..., None], *args: Any, first: bool = False) -> None:
        if not self.threaded:  # single file: run inline
            fn(*args)
            return
        self.group.submit(fn, *args, first=first)

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


#: A source directory of at most this many entries, placed into a destination directory
#: this place_many listed already, has its names looked up one by one there.
_LOOK_UP_AT_MOST = 64


def _existing_names(run: _Run, ddir: int, st: os.stat_result, listing: _Listing) -> frozenset[str]:
    """Which of the source directory's names the existing destination directory ``ddir``
    (``st``: its fstat) holds.  Listed whole (removing dead temporaries on the way: see
    :func:`_scan_existing`) the first time a place() or place_many meets it; after that,
    in one place_many, a small source directory -- a wheel's top: its package, its
    dist-info -- has its few names looked up instead: the second to fiftieth package
    into a site-packages of thousands of entries listed all of it, about 1 ms each."""
    names = [*listing.subdirs, *listing.files, *listing.links]
    key = (st.st_dev, st.st_ino)
    scanned = run.scanned
    if scanned is not None and len(names) <= _LOOK_UP_AT_MOST:
        me = object()  # (setdefault is one step: the first job to come lists it)
        if scanned.setdefault(key, me) is not me:
            return frozenset(n for n in names if _lexists(ddir, n))
    return _scan_existing(ddir)


def _lexists(dfd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _scan_existing(dfd: int) -> frozenset[str]:
    """List a destination directory that existed before: its names, minus the dead
    temporaries (files or whole trees) of runs that were killed, which are removed."""
    names = frozenset(os.listdir(dfd))
    if any(n.startswith(TMP_PREFIX) for n in names):
        removed, _ = reap_stale(dfd, [n for n in names if is_tmp_name(n)])
        names = names.difference(removed)
    return names


# -- one file --------------------------------------------------------------------------


def _copy_xattrs(chain: Chain, sfd: int, dfd: int) -> None:
    """Extended attributes of ``sfd`` onto ``dfd``.  What a refusal means (the filesystem
    has none: stop trying for the run; this name may not be set: skip it) is the
    chain's to learn (:meth:`Chain.xattr_failed`)."""
    if not chain.xattrs:
        return
    try:
        names = list_xattrs(sfd)
    except OSError as e:
        if E.xattr_action(e.errno) == "unsupported":  # the source's filesystem has none
            return
        raise
    for n in names:
        try:
            set_xattr(dfd, n, get_xattr(sfd, n))
        except OSError as e:
            verdict = chain.xattr_failed(e, n)
            if verdict == "stop":
                return
            if verdict == "fail":
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
        # Owner-writable while we fill it (the exact mode comes last); exclusive, so
        # nothing existing is touched.
        if strategy == "reflink":
            dfd = clone_file(sfd, ddir, tmp, mode | 0o200)
        else:
            dfd = os.open(tmp, _CREATE_FLAGS, mode | 0o200, dir_fd=ddir)
        try:
            if locked:
                lock_file(dfd)
            dst = os.fstat(dfd) if mode & 0o6000 else None
            size = st.st_size
            if strategy == "reflink":
                pass  # clone_file() gave it all of the source's data
            elif st.st_blocks * 512 < st.st_size - 65536:  # has holes worth keeping
                copy_sparse(sfd, dfd, st.st_size)
            else:
                size, cfr = copy_fd(sfd, dfd, st.st_size, try_cfr=run.chain.cfr)
                run.chain.learn_cfr(cfr)
            if run.times:
                os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))
            _copy_xattrs(run.chain, sfd, dfd)
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
    """Place one regular file through the chain; after an error the chain decides
    (retry, next strategy, or raise).  ``private``: the caller's policy says never a
    hardlink for this one."""
    path = _join(rel_dir, dname)
    strategies = run.chain.for_file(private)
    for i, strategy in enumerate(strategies):
        nxt = strategies[i + 1] if i + 1 < len(strategies) else None
        tries = 0
        backoff: Backoff | None = None
        while True:
            try:
                size = _attempt(run, strategy, rel_dir, sdir, ddir, sname, dname, exists, direct)
            except OSError as e:
                src, dst = run.src_path(_join(rel_dir, sname)), run.dst_path(path)
                if run.chain.failed(strategy, nxt, e, tries, path, src, dst) == "retry":
                    tries += 1  # the chain bounds the tries; the pause is the one backoff
                    if backoff is None:
                        backoff = Backoff(0.01, 1.0)
                    backoff.wait()
                    continue
                break
            tally.counts[strategy] += 1
            tally.bytes += size
            tally.files += 1
            if exists and dname.endswith(".py"):
                run.replaced_modules.append((rel_dir, dname))
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


def _keep_link(run: _Run, rel: str, ddir: int, name: str, key: tuple[int, int]) -> int:
    """The C loop placed ``name``, whose source has other links: the first name of that
    inode in this run is remembered; a later one is replaced by a link to the first
    (so the tree keeps its hard links, as ``cp -a`` does; the C loop wrote its data
    first, which the Python path avoids).  Returns the bytes that data was, to take
    out of the report again (``bytes`` counts what the tree holds, as the Python
    path does): 0 when ``name`` stays a file of its own."""
    with run.lock:
        first = run.linked.get(key)
        if first is None or isinstance(first, threading.Event):
            run.linked[key] = (run.drels.get(rel, rel), name)
            if first is not None:
                first.set()
            return 0
    tmp = run.tmpname()
    try:
        size = os.stat(name, dir_fd=ddir, follow_symlinks=False).st_size
        fd = open_beneath(run.dst_root_fd, first[0], _DIR_FLAGS)
        try:
            os.link(first[1], tmp, src_dir_fd=fd, dst_dir_fd=ddir, follow_symlinks=False)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=ddir, dst_dir_fd=ddir)  # our own new file
    except OSError:
        _unlink_quiet(tmp, ddir)  # EMLINK and friends: the copy of its own stays
        return 0
    return size


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
        # the C loop has no symlink strategy
        if hidden and _fast is not None and "symlink" not in run.chain.strategies:
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


def _drop_replaced_bytecode(root_fd: int, replaced: list[tuple[str, str]]) -> None:
    """The bytecode of the modules this run replaced (``(rel dir, name.py)`` below the
    directory open at ``root_fd``): the interpreter trusts it while the source's mtime
    and size match, and a new file of the old one's size and mtime (times kept from a
    cache unpacked within one second, reproducible builds' fixed timestamps) would run
    the old code (:mod:`._pycache`).  Each ``__pycache__`` is opened beneath the root,
    never through a symlink; best effort."""
    by_dir: dict[str, set[str]] = {}
    for rel, name in replaced:
        by_dir.setdefault(rel, set()).add(name)
    for rel, names in by_dir.items():
        try:
            fd = open_beneath(root_fd, rel, _DIR_FLAGS)  # "": the root itself, a new fd
        except OSError:
            continue  # gone, or no longer a directory of its own
        try:
            drop_bytecode_beside(fd, names)
        finally:
            os.close(fd)


def _c_strategy(strategy: Strategy) -> int:
    """The C extension's code for ``strategy``."""
    codes: dict[str, int] = {
        "hardlink": _fast.HARDLINK,
        "reflink": _fast.REFLINK,
        "copy": _fast.COPY,
    }
    return codes[strategy]


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
        strategy = run.chain.strategies[0]
        nxt, nbytes, cfr, linked = _fast.place_files(
            _c_strategy(strategy),
            sdir,
            ddir,
            names,
            i,
            run.umask,
            run.chain.xattrs,
            run.fsync,
            run.chain.cfr,
            run.times,
        )
        run.chain.learn_cfr(cfr)
        tally.counts[strategy] += nxt - i
        tally.files += nxt - i
        tally.bytes += nbytes
        for idx, dev, ino in linked:
            tally.bytes -= _keep_link(run, rel, ddir, names[idx], (dev, ino))
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


class _Pair:
    """A source directory and its destination, open, shared by the jobs that place its
    files in chunks, and closed when the last of them is done: no chunk opens the pair
    again (no requests on a network filesystem, no second resolution of its path)."""

    __slots__ = ("ddir", "lock", "run", "sdir", "users")

    def __init__(self, run: _Run, sdir: int, ddir: int) -> None:
        self.run, self.sdir, self.ddir = run, sdir, ddir
        self.users = 1
        self.lock = threading.Lock()
        with run.lock:
            run.pairs.add(self)

    def use(self) -> None:
        with self.lock:
            self.users += 1

    def release(self) -> None:
        with self.lock:
            self.users -= 1
            last = self.users == 0
        if last:
            with self.run.lock:
                self.run.pairs.discard(self)
            self.close()

    def close(self) -> None:
        with self.lock:
            fds, self.sdir, self.ddir = (self.sdir, self.ddir), -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)


def _chunk_job(run: _Run, pair: _Pair, rel: str, hidden: bool, files: list[str]) -> None:
    try:
        _place_entries(run, rel, pair.sdir, pair.ddir, files, [], hidden)
    finally:
        pair.release()


def _dir_job(
    run: _Run,
    roots: tuple[int, int],
    rel: str,
    drel: str,
    hidden: bool,
    listings: _Listings | None,
) -> None:
    """One source directory ``rel``, whose destination is ``drel`` below the destination
    root (``drel`` differs from ``rel`` below a new directory still hidden under a
    temporary name).  Gives the destination the source's mode, makes the subdirectories
    (each a job of its own), and places the files, in chunks on several workers."""
    sdir, ddir = _open_pair(run, roots, rel, drel)
    pair: _Pair | None = None
    try:
        mode = stat.S_IMODE(os.fstat(sdir).st_mode)
        existing: frozenset[str] = frozenset()
        if hidden:
            if mode != 0o777 & ~run.umask:
                os.fchmod(ddir, mode | 0o700)  # owner rwx while we fill it
            if mode & 0o700 != 0o700:
                with run.lock:
                    run.restore_modes.append((drel, mode, None))
            if run.chain.xattrs and _has_xattrs(sdir):
                with run.lock:
                    run.dir_xattrs.append((rel, drel))
        else:
            dst_st = os.fstat(ddir)
            if dst_st.st_mode & 0o300 != 0o300 and dst_st.st_uid == os.geteuid():
                # our own read-only directory (a read-only cache placed before):
                # writable while we fill it, its mode back at the end
                os.fchmod(ddir, stat.S_IMODE(dst_st.st_mode) | 0o700)
                with run.lock:
                    ident = (dst_st.st_dev, dst_st.st_ino)
                    run.restore_modes.append((drel, stat.S_IMODE(dst_st.st_mode), ident))
        # (run.skipped is appended to from several threads: list.append is atomic)
        if listings is None:
            listing = _scan_source(sdir, rel, run.skipped)
        else:
            listing = _classify_listed(run, sdir, rel, listings[rel])
        if not hidden:
            existing = _existing_names(run, ddir, dst_st, listing)
            with run.lock:
                run.existing[rel] = existing
        with run.lock:
            run.discovered += len(listing.files) + len(listing.links)
            run.dirs += 1
        for name in listing.subdirs:
            child = _join(rel, name)
            if hidden:
                os.mkdir(name, _new_dir_mode(sdir, name), dir_fd=ddir)
                cdrel = _join(drel, name)
                hidden_child = True
            elif name in existing:
                cdrel = _join(drel, name)
                hidden_child = False
            else:  # new here: build it hidden, rename it into place when complete
                tmp = run.tmpname()
                ident = _make_hidden(run, ddir, drel, tmp, _new_dir_mode(sdir, name))
                with run.lock:
                    run.hidden_tops.append((child, drel, tmp, name, ident))
                cdrel = _join(drel, tmp)
                hidden_child = True
            with run.lock:
                run.drels[child] = cdrel
            if hidden_child and run.whole_trees:
                run.submit(_tree_job, run, roots, child, cdrel)
            else:
                run.submit(_dir_job, run, roots, child, cdrel, hidden_child, listings)
        files = listing.files
        chunk = run.chunk
        if len(files) > chunk:
            # The chunks go ahead of the jobs queued now (first=True): the pair's two fds
            # are held until its last chunk is done, and behind every sibling directory's
            # job, every sibling's pair was held at once (2 fds a directory: EMFILE).
            pair = _Pair(run, sdir, ddir)
            for i in range(chunk, len(files), chunk):
                pair.use()
                try:
                    run.submit(_chunk_job, run, pair, rel, hidden, files[i : i + chunk], first=True)
                except BaseException:
                    pair.release()
                    raise
        _place_entries(run, rel, sdir, ddir, files[:chunk], listing.links, hidden)
    finally:
        if pair is None:
            os.close(sdir)
            os.close(ddir)
        else:
            pair.release()


class _Walk:
    """One new subtree placed by the C walk (:func:`_tree_job`), in one part or in
    several: while a worker has nothing to do, a walk shares one of its directories
    with it (``give``): another call of the C walk joins it as a part of its own
    (:func:`_gift_job`), and the two take that directory's entries in turns, so that
    one big package does not keep a single thread busy at the end of a run.  Every
    part's paths are relative to ``rel``.  With ``files=``, the listed entries all
    parts saw are added up, and the last part to end checks that none is missing."""

    __slots__ = ("blob", "drel", "entries", "lock", "parts", "policy_after", "private",
                 "pstrategy", "rel", "report", "rest", "span")  # fmt: skip

    def __init__(self, run: _Run, rel: str, drel: str) -> None:
        self.rel, self.drel = rel, drel
        self.span = None if run.listed is None else _listed_span(run, rel)
        self.policy_after = run.private is not None and self.span is None  # copy= alone
        self.blob = None if self.span is None else _file_list(run, *self.span)
        self.report = _report_placed(run.private, rel) if self.policy_after else False
        # the files copy= names (flagged in blob), by the first of their own chain, in C
        self.private: Strategy = run.chain.for_file(True)[0]
        self.pstrategy = -1 if self.blob is None else _c_strategy(self.private)
        self.lock = threading.Lock()
        self.parts = 1  # parts not yet ended
        self.entries = 0  # listed entries the ended parts saw
        self.rest: list[str] = []  # and the directories they handed back


def _tree_job(run: _Run, roots: tuple[int, int], rel: str, drel: str) -> None:
    """A new directory and everything below it in one call of the C walk
    (``_speedups.place_tree``: no Python per directory or file, no GIL).  What it
    hands back -- symlinks, special files, files that did not go plainly, directories
    deeper than it descends -- takes the Python path here, which owns every decision
    about errors and fallbacks."""
    walk = _Walk(run, rel, drel)
    sdir, ddir = _open_pair(run, roots, rel, drel)
    try:
        _walk_part(run, roots, walk, sdir, ddir, None)
    finally:
        os.close(sdir)
        os.close(ddir)


def _gift_job(run: _Run, roots: tuple[int, int], walk: _Walk, frame: object) -> None:
    """A directory another part of ``walk`` shares (a capsule of the C walk; it lets
    the directory go if this job never runs)."""
    _walk_part(run, roots, walk, -1, -1, frame)


def _walk_part(
    run: _Run, roots: tuple[int, int], walk: _Walk, sdir: int, ddir: int, frame: object
) -> None:
    rel, drel, span, policy_after = walk.rel, walk.drel, walk.span, walk.policy_after
    strategy = run.chain.strategies[0]
    give = None
    if run.hungry is not None:

        def give(frame: object) -> None:  # called by the C walk, in its thread
            with walk.lock:
                walk.parts += 1
            run.submit(_gift_job, run, roots, walk, frame, first=True)

    try:
        files, nbytes, cfr, dirs, entries, rest, modes, linked, placed, privates, xdirs = (
        _fast.place_tree(
            _c_strategy(strategy),
            sdir,
            ddir,
            run.umask,
            run.chain.xattrs,
            run.fsync,
            run.chain.cfr,
            run.times,
            _TREE_DEPTH,
            walk.blob,
            walk.report,
            run.hungry,
            give,
            frame,
            walk.pstrategy,
        )
        )  # fmt: skip
    except OSError as e:
        where = _sub(rel, e.filename) if isinstance(e.filename, str) else rel
        raise PlaceError(
            e.errno, f"cannot place directory: {e.strerror}", run.src_path(where), None,
            run.dst_path(where),
        ) from None  # fmt: skip
    run.chain.learn_cfr(cfr)
    tally = _Tally()
    tally.counts[strategy] += files - privates
    if privates:
        tally.counts[walk.private] += privates
    tally.files += files
    tally.bytes += nbytes
    with run.lock:
        run.dirs += dirs
        run.discovered += entries
        run.restore_modes.extend((_sub(drel, r), m, None) for r, m in modes)
        run.dir_xattrs.extend((_sub(rel, r), _sub(drel, r)) for r in xdirs)
    if linked:
        tally.bytes -= _keep_tree_links(run, roots, rel, drel, linked)
    if policy_after:
        _redo_private(run, roots, rel, drel, placed, strategy, tally)
    run.merge(tally)
    if span is not None:
        with walk.lock:
            walk.entries += entries
            walk.rest += rest
            walk.parts -= 1
            last = walk.parts == 0
        if last and walk.entries < _expected(run, rel, span, walk.rest):
            _missing(run, roots, rel, _listed_below(run, rel), walk.rest)
    if rest:
        _place_rest(run, roots, rel, drel, rest)


def _redo_private(
    run: _Run,
    roots: tuple[int, int],
    rel: str,
    drel: str,
    placed: list[str],
    strategy: Strategy,
    tally: _Tally,
) -> None:
    """copy= without files=: the walk placed everything by ``strategy``; the files the
    policy names are placed again, by the policy's chain (never a hardlink), before
    anyone can see them -- their directory is still hidden under a temporary name.
    The walk's file is ours (made in a directory this run made), removed by inode."""
    keep = run.private
    assert keep is not None
    redo = [p for p in placed if keep(_sub(rel, p))]  # (the walk reported candidates only)
    if not redo or strategy != "hardlink":
        return  # a clone or copy is the file's own already
    for d, names in _by_dir(redo).items():
        srel, sdrel = _sub(rel, d), _sub(drel, d)
        sdir, ddir = _open_pair(run, roots, srel, sdrel)
        try:
            for name in names:
                st = os.stat(name, dir_fd=ddir, follow_symlinks=False)
                src = os.stat(name, dir_fd=sdir, follow_symlinks=False)
                if (st.st_dev, st.st_ino) != (src.st_dev, src.st_ino):
                    continue  # not a link to the source: nothing shared to undo
                os.unlink(name, dir_fd=ddir)
                tally.counts[strategy] -= 1
                tally.files -= 1
                _place_file(run, srel, sdir, ddir, name, name, False, tally, True, True)
        finally:
            os.close(sdir)
            os.close(ddir)


def _listed_below(run: _Run, rel: str) -> list[bytes]:
    """The listed paths below the source directory ``rel``, relative to it (sorted)."""
    assert run.listed is not None
    if not rel:
        return run.listed
    prefix = os.fsencode(rel) + b"/"
    lo = bisect.bisect_left(run.listed, prefix)
    hi = bisect.bisect_left(run.listed, prefix[:-1] + b"0")  # "0" follows "/"
    return [p[len(prefix) :] for p in run.listed[lo:hi]]


def _listed_span(run: _Run, rel: str) -> tuple[int, int, int]:
    """Where the listed paths below the source directory ``rel`` are in ``run.listed``
    (``lo``, ``hi``) and the length of the ``rel/`` they start with."""
    assert run.listed is not None
    if not rel:
        return 0, len(run.listed), 0
    prefix = os.fsencode(rel) + b"/"
    lo = bisect.bisect_left(run.listed, prefix)
    return lo, bisect.bisect_left(run.listed, prefix[:-1] + b"0", lo), len(prefix)


def _file_list(run: _Run, lo: int, hi: int, strip: int) -> bytes:
    """``run.listed[lo:hi]`` for the C walk, relative to their directory (``strip``
    bytes off): a flag per path, "r" for a file the copy= policy names (handed back:
    never hardlinked), "p" for the others; the policy asked (with the path from the
    source root, as everywhere) only about paths that end in its literal tails, if
    it has them (see _report_placed)."""
    keep = run.private
    tails: tuple[str, ...] | None = getattr(keep, "tails", None)
    ends = None if tails is None else tuple(map(os.fsencode, tails))
    blob: bytes = _fast.file_blob(run.listed, lo, hi, strip, keep, ends)
    return blob


def _below(listed: list[bytes], path: str) -> int:
    """How many of ``listed`` lie below the directory ``path``."""
    prefix = os.fsencode(path) + b"/"
    return bisect.bisect_left(listed, prefix[:-1] + b"0") - bisect.bisect_left(listed, prefix)


def _expected(run: _Run, rel: str, span: tuple[int, int, int], rest: list[str]) -> int:
    """Listed entries a walk of ``rel`` must have seen: all below it but those below
    the directories it handed back (their own walks see those)."""
    assert run.listed is not None
    listed = run.listed
    return span[1] - span[0] - sum(_below(listed, _sub(rel, r)) for r in rest)


def _missing(
    run: _Run, roots: tuple[int, int], rel: str, listed: list[bytes], rest: list[str]
) -> None:
    """A walk saw fewer listed entries than there are: raise for the first that is not
    there, as the per-directory path does."""
    handed = [os.fsencode(r) + b"/" for r in rest]
    for p in listed:
        if any(p.startswith(h) for h in handed):
            continue
        path = _sub(rel, os.fsdecode(p))
        parent, _, name = path.rpartition("/")
        try:  # the directories on the way opened as the walk does: never a symlink
            pfd = open_beneath(roots[0], parent, _DIR_FLAGS)
            try:
                os.stat(name, dir_fd=pfd, follow_symlinks=False)
            finally:
                os.close(pfd)
        except OSError as e:
            raise PlaceError(
                e.errno, f"listed file: {e.strerror}", run.src_path(path), None,
                run.dst_path(path),
            ) from None  # fmt: skip
    raise PlaceError(  # listed and there, yet not seen: changed during the walk
        errno.EAGAIN, "the source changed while it was placed", run.src_path(rel), None,
        run.dst_path(rel),
    )  # fmt: skip


def _sub(rel: str, sub: str) -> str:
    """``rel`` joined with a path relative to it (``""``: ``rel`` itself)."""
    return _join(rel, sub) if sub else rel


def _by_dir(paths: Iterable[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in paths:
        d, _, name = p.rpartition("/")
        out.setdefault(d, []).append(name)
    return out


def _keep_tree_links(
    run: _Run,
    roots: tuple[int, int],
    rel: str,
    drel: str,
    linked: list[tuple[str, int, int]],
) -> int:
    """:func:`_keep_link` for the files of a C walk whose sources have other links: the
    first name of an inode is remembered (no fd needed); a later one is replaced by a
    link to it, one open of its directory for all such names in it.  Returns the bytes
    no longer in the tree (see :func:`_keep_link`)."""
    later: dict[str, list[tuple[str, tuple[int, int]]]] = {}
    with run.lock:
        for path, dev, ino in linked:
            d, _, name = path.rpartition("/")
            key = (dev, ino)
            first = run.linked.get(key)
            if first is None or isinstance(first, threading.Event):
                run.linked[key] = (_sub(drel, d), name)
                if first is not None:
                    first.set()
            else:
                later.setdefault(d, []).append((name, key))
    freed = 0
    for d, items in later.items():
        with run.lock:
            run.drels[_sub(rel, d)] = _sub(drel, d)
        ddir = open_beneath(roots[1], _sub(drel, d), _DIR_FLAGS)
        try:
            for name, key in items:
                freed += _keep_link(run, _sub(rel, d), ddir, name, key)
        finally:
            os.close(ddir)
    return freed


def _is_listed(run: _Run, path: str) -> bool:
    assert run.listed is not None
    p = os.fsencode(path)
    i = bisect.bisect_left(run.listed, p)
    return i < len(run.listed) and run.listed[i] == p


def _place_rest(run: _Run, roots: tuple[int, int], rel: str, drel: str, rest: list[str]) -> None:
    """What a C walk handed back, by the Python path: looked at again (lstat), then a
    directory made and walked as a job of its own, a symlink or file placed, anything
    else listed as skipped."""
    tally = _Tally()
    try:
        for d, names in _by_dir(rest).items():
            srel, sdrel = _sub(rel, d), _sub(drel, d)
            with run.lock:
                run.drels[srel] = sdrel
            sdir, ddir = _open_pair(run, roots, srel, sdrel)
            try:
                for name in names:
                    if run.stop.is_set():
                        raise Abort
                    try:
                        st = os.stat(name, dir_fd=sdir, follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # gone since the walk listed it
                    if stat.S_ISDIR(st.st_mode):
                        path = _join(srel, name)
                        if run.listed is not None and _is_listed(run, path):
                            raise InvalidArgument(
                                errno.EISDIR, "listed entry is a directory (list its files)",
                                run.src_path(path),
                            )  # fmt: skip
                        os.mkdir(name, (st.st_mode & 0o777) | 0o700, dir_fd=ddir)
                        child, cdrel = _join(srel, name), _join(sdrel, name)
                        with run.lock:
                            run.drels[child] = cdrel
                        run.submit(_tree_job, run, roots, child, cdrel)
                    elif stat.S_ISLNK(st.st_mode):
                        _place_symlink(run, srel, sdir, ddir, name, name, False, tally)
                    elif stat.S_ISREG(st.st_mode):
                        own = run.private is not None and run.private(_join(srel, name))
                        _place_file(run, srel, sdir, ddir, name, name, False, tally, True, own)
                    else:  # never opened: opening a FIFO blocks, a device may do anything
                        kind = _special(st.st_mode)
                        run.skipped.append(Skipped(_join(srel, name), f"{kind}: not placed"))
            finally:
                os.close(sdir)
                os.close(ddir)
    finally:
        run.merge(tally)


def _has_xattrs(fd: int) -> bool:
    """Whether the open file ``fd`` has extended attributes (False where it cannot say)."""
    try:
        return bool(list_xattrs(fd))
    except OSError:
        return False


def _copy_dir_xattrs(run: _Run, src_root_fd: int, dst_root_fd: int) -> None:
    """The new directories get their sources' extended attributes -- a directory's ACL
    guards what is in it: a 0755 directory whose ACL denies a user, placed without it,
    lets that user read its 0644 files.  Once the tree is complete (an ACL may take
    the owner's write), before the modes (CPython's copystat order)."""
    for rel, drel in run.dir_xattrs:
        sfd = open_beneath(src_root_fd, rel, _DIR_FLAGS)
        try:
            dfd = open_beneath(dst_root_fd, drel, _DIR_FLAGS)
            try:
                _copy_xattrs(run.chain, sfd, dfd)
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)


def _restore_dir_modes(run: _Run, dst_root_fd: int, *, hidden: bool) -> None:
    """Directories were kept owner-writable while being filled; give them their mode:
    ``hidden=True`` the new ones (before they are revealed, so they appear complete),
    ``hidden=False`` the existing ones made writable for the merge (after the new ones
    were renamed into them, which needed them writable)."""
    todo = [t for t in run.restore_modes if _under_hidden(run, t[0]) == hidden]
    for drel, mode, ident in sorted(todo, key=lambda x: -x[0].count("/")):
        _give_mode(dst_root_fd, drel, mode, ident)


def _give_mode(dst_root_fd: int, drel: str, mode: int, ident: tuple[int, int] | None) -> None:
    """Give ``mode`` to the directory at ``drel`` -- a directory that existed only if it
    is still the one this run changed (``ident``): by path it might be another of the
    caller's, swapped in meanwhile (a private 0700 one made 0555 for all to list);
    then it is left as it is, with a warning."""
    fd = open_beneath(dst_root_fd, drel, _DIR_FLAGS)
    try:
        if ident is not None:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != ident:
                log.warning(
                    "%s is no longer the directory this run made writable; left as it is", drel
                )
                return
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _new_dir_mode(sdir: int, name: str) -> int:
    """The mode to make the new directory for the source directory ``name`` with: its
    permission bits and owner rwx (to fill it; the umask applies), so that a private
    directory is private from its mkdir on.  Made 0777 (the umask's 0755) and given
    its mode later, another user could open it in between and list the names in it
    through that fd afterwards.  0777 where the source cannot be looked at (its own
    job finds out why, and gives the mode it finds)."""
    try:
        return (os.stat(name, dir_fd=sdir, follow_symlinks=False).st_mode & 0o777) | 0o700
    except OSError:
        return 0o777


def _make_hidden(
    run: _Run, pfd: int, parent_drel: str, tmp: str, mode: int = 0o777
) -> tuple[int, int]:
    """Make the hidden directory ``tmp`` (``mode``: see _new_dir_mode) and lock it as
    ours (see _owner); its (dev, ino).  If it cannot be opened or locked (EMFILE,
    ENOSPC, EDQUOT...), the directory goes again: it is not yet in the run's books,
    so its rollback would not find it.  Out of fds is the usual cause, so that
    clean-up needs none: the directory's own fd is closed first, and the directory,
    still empty, goes by rmdir (checked to be the one made here where that is known)."""
    os.mkdir(tmp, mode, dir_fd=pfd)
    fd = -1
    ident: tuple[int, int] | None = None
    try:
        fd = os.open(tmp, _DIR_FLAGS | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        st = os.fstat(fd)
        ident = (st.st_dev, st.st_ino)
        lk = run.holds.take(fd, st.st_dev)
        with run.lock:
            run.locks[(parent_drel, tmp)] = lk
        return ident
    except BaseException:
        if fd >= 0:
            os.close(fd)
            fd = -1
        with contextlib.suppress(OSError):
            _unmake_hidden(pfd, tmp, ident)
        raise
    finally:
        if fd >= 0:
            os.close(fd)


def _unmake_hidden(pfd: int, tmp: str, ident: tuple[int, int] | None) -> None:
    """Remove the hidden directory ``tmp`` just made (``ident``: its (dev, ino), if it
    was opened): an rmdir where it is empty, as it is unless a lock file was begun."""
    st = os.stat(tmp, dir_fd=pfd, follow_symlinks=False)
    if ident is not None and (st.st_dev, st.st_ino) != ident:
        return
    try:
        os.rmdir(tmp, dir_fd=pfd)
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST) or ident is None:
            raise
        rmtree_at(pfd, tmp, expect=ident)


def _unhold(run: _Run, pfd: int, parent_drel: str, tmp: str) -> None:
    """Drop the lock file of a hidden directory before it gets its final name."""
    with run.lock:
        lk = run.locks.pop((parent_drel, tmp), None)
    if lk is None:
        return
    fd = os.open(tmp, _DIR_FLAGS | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
    try:
        run.holds.give_back(fd, lk)
    finally:
        os.close(fd)


def _reveal(run: _Run, dst_root_fd: int) -> None:
    """Rename each new directory from its temporary name to its final one, parents first.

    If another process created the final name meanwhile, merge into it instead (see
    :func:`_merge_instead`) and drop the hidden copy."""
    tops = sorted(run.hidden_tops, key=lambda t: t[1].count("/"))
    for _rel, parent_drel, tmp, name, ident in tops:
        pfd = open_beneath(dst_root_fd, parent_drel, _DIR_FLAGS)
        try:
            _unhold(run, pfd, parent_drel, tmp)
            _reveal_one(pfd, tmp, name, ident)
        finally:
            os.close(pfd)


def _reveal_one(pfd: int, tmp: str, name: str, ident: tuple[int, int]) -> None:
    """The hidden directory ``tmp`` of ``pfd`` gets its final ``name`` -- or, where
    something is there by now, what it holds is merged into that."""
    try:
        rename_new(pfd, tmp, pfd, name)  # (a plain rename replaces an empty directory)
    except OSError as e:
        if e.errno not in _IN_THE_WAY:
            raise
        _merge_instead(pfd, tmp, name, ident)


#: A rename that found its new name taken (ENOTEMPTY: a directory there, not empty).
_IN_THE_WAY = (errno.EEXIST, errno.ENOTEMPTY)


def _merge_instead(pfd: int, tmp: str, name: str, ident: tuple[int, int]) -> None:
    """The final ``name`` of the hidden tree ``tmp`` (both in ``pfd``) appeared
    meanwhile: another process made that directory.  Move what the hidden tree holds
    into it instead, entry by entry -- a file or symlink replaces what is there (as a
    placement into an existing directory does), a directory goes whole where its name
    is free and is merged in turn where it is not -- then drop the emptied hidden
    tree.  Every directory on both sides is opened from ``pfd`` without following a
    symlink: one swapped in meanwhile fails the run, it never leads elsewhere (a
    merge by path went wherever the path led by then).  If a move fails, the entries
    moved to new names go again (a file replaced stays replaced) and the error goes
    up, for the run's rollback of the rest."""
    tfd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
    moved: list[tuple[str, str, tuple[int, int]]] = []  # target sub-directory, name, inode
    try:
        hfd = os.open(tmp, _DIR_FLAGS | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            st = os.fstat(hfd)
            if (st.st_dev, st.st_ino) != ident:
                raise OSError(errno.ESTALE, "no longer the directory this run made", tmp)
            _merge_dirs(hfd, tfd, moved)
        finally:
            os.close(hfd)
    except BaseException:
        _unmerge(tfd, moved)
        raise
    finally:
        os.close(tfd)
    rmtree_at(pfd, tmp, expect=ident)


def _merge_dirs(hfd_top: int, tfd_top: int, moved: list[tuple[str, str, tuple[int, int]]]) -> None:
    """The merge of :func:`_merge_instead`: directory by directory, each pair opened
    beneath the two tops (a bounded number of fds, whatever the depth)."""
    todo = [""]
    while todo:
        sub = todo.pop()
        hfd = open_beneath(hfd_top, sub, _DIR_FLAGS)
        try:
            tfd = open_beneath(tfd_top, sub, _DIR_FLAGS)
            try:
                hst = os.fstat(hfd)
                if hst.st_mode & 0o300 != 0o300:  # ours, given its mode; emptied and dropped
                    os.fchmod(hfd, stat.S_IMODE(hst.st_mode) | 0o700)
                for entry in os.scandir(hfd):
                    n = entry.name
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        try:
                            rename_new(hfd, n, tfd, n)
                        except OSError as e:
                            if e.errno not in _IN_THE_WAY:
                                raise
                            todo.append(_join(sub, n))
                            continue
                    else:
                        try:
                            os.stat(n, dir_fd=tfd, follow_symlinks=False)
                            new = False
                        except FileNotFoundError:
                            new = True
                        os.rename(n, n, src_dir_fd=hfd, dst_dir_fd=tfd)
                        if not new:
                            continue
                    moved.append((sub, n, (st.st_dev, st.st_ino)))
            finally:
                os.close(tfd)
        finally:
            os.close(hfd)


def _unmerge(tfd_top: int, moved: list[tuple[str, str, tuple[int, int]]]) -> None:
    """Remove what a failed merge moved to new names, each only if it is still the inode
    moved there."""
    for sub, n, ident in reversed(moved):
        with contextlib.suppress(OSError):
            dfd = open_beneath(tfd_top, sub, _DIR_FLAGS)
            try:
                rmtree_at(dfd, n, expect=ident)
            finally:
                os.close(dfd)


def _close_locks(run: _Run) -> None:
    """Let go of the locks still held (after a failure: the hidden trees are gone)."""
    with run.lock:
        fds = list(run.locks.values())
        run.locks.clear()
    for fd in fds:
        with contextlib.suppress(OSError):
            run.holds.forget(fd)


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
    for drel, mode, was in run.restore_modes:
        if not _under_hidden(run, drel):
            with contextlib.suppress(OSError):
                _give_mode(dst_root_fd, drel, mode, was)


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


#: A path argument, as :mod:`os` takes one (:mod:`._args` makes it a ``str``).
PathLike = _args.AnyPath


@record(frozen=True)
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
    #: The process's umask, read once for a place_many's jobs (None: by each)
    umask: int | None = None
    #: The lock files of the hidden directories of a place_many's jobs (None: a run's own)
    holds: Holds | None = None
    #: The existing destination directories a place_many listed (None: place())
    scanned: dict[tuple[int, int], object] | None = None


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
    import re

    # One regex for all patterns (fnmatchcase's own translation): one match per file,
    # after a cheaper test where every pattern ends in literal text ("*/RECORD": a
    # path that does not end in "RECORD" cannot match).
    match = re.compile("|".join(fnmatch.translate(pat) for pat in patterns)).match
    tails = tuple(_literal_tail(pat) for pat in patterns)
    if not all(tails):
        return lambda rel: match(rel) is not None

    def policy(rel: str) -> bool:
        return rel.endswith(tails) and match(rel) is not None

    policy.tails = tails  # type: ignore[attr-defined]  # for the C walk (_report_placed, _file_list)
    return policy


def _report_placed(
    keep: Callable[[str], bool] | None, rel: str
) -> bool | tuple[bytes, tuple[bytes, ...]]:
    """What the C walk of ``rel`` reports of the files it placed, for the copy= policy
    ``keep`` to look at: those ending in its literal tails (seen from the source root:
    ``rel/`` in front), or every one."""
    tails: tuple[str, ...] | None = getattr(keep, "tails", None)
    if tails is None:
        return True
    return os.fsencode(rel + "/" if rel else ""), tuple(map(os.fsencode, tails))


def _literal_tail(pattern: str) -> str:
    """The end of an fnmatch ``pattern`` after its last wildcard (``*``, ``?``, ``[...]``)."""
    i = len(pattern)
    while i and pattern[i - 1] not in "*?[]":
        i -= 1
    return pattern[i:]


class _Placement:
    """One ``(src, dst)`` placement in three steps -- :meth:`prepare` (checks, plan;
    nothing written), :meth:`start` (the jobs go to the pool) and :meth:`finish`
    (wait, reveal or roll back, the report) -- so that :func:`place_many` can run
    many at once on one pool."""

    def __init__(
        self, src: PathLike, dst: PathLike, files: Iterable[PathLike] | None, fn: str = "place"
    ) -> None:
        """``fn``: the public function, named in a :class:`TypeError` for an argument
        that is not a path (its entries are checked as they are read)."""
        self.s, self.d = _args.path(src, f"{fn}(): src"), _args.path(dst, f"{fn}(): dst")
        self.files = None if files is None else _args.many(files, "files=")
        self.pfd = -1
        self.src_root_fd = -1
        self.dst_root_fd = -1
        self.hidden_root: str | None = None
        self.hidden_ident = _NO_IDENT
        self.base = ""
        self.src_mode = 0o777
        self.run: _Run | None = None
        self.started = False
        self.t0 = time.perf_counter()

    # -- prepare: nothing written yet ----------------------------------------------------
    def prepare(
        self, opts: _Options, tasks: Tasks | None, plans: dict[tuple[str, str], Plan] | None
    ) -> None:
        """``plans``: a place_many's plans, to share (None: a plan of its own)."""
        s, d = self.s, self.d
        parent_arg, self.base = _split_dst(s, d)
        try:
            src_st = os.stat(s)
        except OSError as e:
            raise PlaceError(e.errno, f"cannot read source: {e.strerror}", s, None, d) from None
        self.src_mode = src_st.st_mode
        real_src = os.path.realpath(s)
        self.pfd = _open_parent(s, parent_arg, d)
        _check_pair(s, src_st, self.pfd, self.base, d)
        parent = fd_path(self.pfd, parent_arg)
        real_dst = os.path.join(parent, self.base)
        is_dir = stat.S_ISDIR(src_st.st_mode)
        src_dir = real_src if is_dir else os.path.dirname(real_src)
        key = (src_dir, parent)
        shared_key = None if plans is None else _shared_plan_key(src_dir, parent)
        if plans is None:
            plans = {}
        p = plans.get(shared_key) if shared_key is not None else None
        if p is None:
            p = plans.get(key)
        if p is None:
            try:
                p = plan(real_src, real_dst, strategy=opts.strategy, strict=opts.strict)
            except ValueError as e:
                raise PlaceError(errno.EINVAL, str(e), s, None, d) from None
            plans[key] = p
            if shared_key is not None and "symlink" not in p.chain:
                plans[shared_key] = p
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
            umask=opts.umask,
            holds=opts.holds,
            scanned=opts.scanned,
        )
        self.sname = None if is_dir else os.path.basename(real_src)
        if is_dir:
            self._open_tree()

    def _open_tree(self) -> None:
        run, pfd, base = self.run, self.pfd, self.base
        assert run is not None
        self.src_root_fd = os.open(run.src_root, _DIR_FLAGS | os.O_CLOEXEC)
        # New directories below a hidden one in one C call each (_tree_job), locally:
        # on a network filesystem per-directory jobs on many threads hide the latency;
        # callbacks want Python per file.
        run.whole_trees = (
            _fast is not None
            and hasattr(_fast, "place_tree")
            and not run.plan.network
            and run.progress is None
            and run.observer is None
            and "symlink" not in run.chain.strategies
        )
        if run.whole_trees and run.workers > 1 and hasattr(_fast, "flag"):
            run.hungry = run.group.tasks.hunger(_fast.flag, _fast.flag_set)
        total = 0
        self.listings: _Listings | None = None
        if self.files is not None:  # refused entries raise before anything is made
            if run.whole_trees:
                files = self.files if isinstance(self.files, list) else list(self.files)
                run.listed = _sorted_listed(files, self.s)
                total = len(run.listed)
                self.listings = _ListedTree(run.listed)
            else:
                rels = _file_rels(self.files, self.s)
                total = len(rels)
                self.listings = _listings_from_rels(rels)
        try:
            os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            _scan_existing(pfd)  # drop temporaries a killed run left beside it
            tmp = run.tmpname()
            mode = (self.src_mode & 0o777) | 0o700
            # (its name is the placement's only once it exists: a failure in between is
            # _make_hidden's to clean up, and abandon() would not know its inode)
            self.hidden_ident = _make_hidden(run, pfd, "..", tmp, mode)
            self.hidden_root = tmp
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
        run.chunk = _chunk_size(total, run.workers, run.plan.network)

    # -- start and finish ------------------------------------------------------------------
    def start(self) -> None:
        run = self.run
        assert run is not None
        self.started = True
        if self.sname is None:
            roots = (self.src_root_fd, self.dst_root_fd)
            if self.hidden_root is not None and run.whole_trees:
                # all new: one C walk from the top, which the idle workers join (the
                # threads then work on neighbouring directories, not a package each)
                run.start_jobs(_tree_job, run, roots, "", "")
            else:
                # Locally the top directory's Python (a few syscalls, then each new
                # subdirectory a C walk) runs here, at once: on a worker it would wait
                # for the GIL while this thread reads the next job (place_many), and
                # hold up the C walks it starts.  On a network filesystem it is round
                # trips, which the next job's need not wait for.
                run.start_jobs(
                    _dir_job,
                    run,
                    roots,
                    "",
                    "",
                    self.hidden_root is not None,
                    self.listings,
                    here=run.whole_trees,
                )
        else:
            _place_one(run, self.pfd, self.sname, self.base)

    def finish(self) -> PlaceReport:
        run = self.run
        assert run is not None
        if self.sname is None:
            self._finish_tree(run)
        if run.replaced_modules:
            _drop_replaced_bytecode(
                self.pfd if self.sname is not None else self.dst_root_fd, run.replaced_modules
            )
        return PlaceReport(
            src=self.s,
            dst=self.d,
            files=run.files,
            dirs=run.dirs,
            symlinks=run.symlinks,
            bytes=run.bytes,
            by_strategy=dict(run.counts),
            fallbacks=tuple(run.chain.fallbacks),
            skipped=tuple(run.skipped),
            seconds=time.perf_counter() - self.t0,
            chain=run.plan.chain,
            workers=run.workers,
            warnings=(*run.plan.warnings, *run.chain.warnings),
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
            _copy_dir_xattrs(run, self.src_root_fd, self.dst_root_fd)
            _restore_dir_modes(run, self.dst_root_fd, hidden=True)
            if fresh:
                _restore_dir_modes(run, self.dst_root_fd, hidden=False)
            _reveal(run, self.dst_root_fd)
            if self.hidden_root is not None:
                _reveal_one(pfd, self.hidden_root, base, self.hidden_ident)
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
    that path -- are never hardlinked or symlinked: cloned where the pair can, else copied,
    so editing them never edits the cache.  ``observer(path, how)`` is called
    from the worker threads for every entry placed (``how``: the strategy, or
    ``"symlink"`` for a symlink recreated); it must be thread-safe and quick.

    A ``*.py`` file that replaces an existing one takes the old one's bytecode
    (``__pycache__/<stem>.<tag>.pyc`` beside it) with it: the interpreter would trust
    that bytecode for a new file of the old one's size and mtime.

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
        strategy,
        strict,
        _args.workers(workers, "place(): workers="),
        progress,
        xattrs,
        times,
        fsync,
        _policy(copy),
        observer,
    )
    job = _Placement(src, dst, files)
    try:
        job.prepare(opts, None, None)
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
    largest a plan asks for) with one plan per (mount of the sources, destination
    directory), so a small package costs its syscalls, not a call's set-up.  Options as for
    :func:`place`, for every job.

    Each job starts as it is drawn from ``jobs``: a generator that reads each RECORD
    in turn reads the next while the ones before it are placed.  At most a few dozen
    jobs are under way at once (each holds directory fds until it ends: thousands of
    jobs need no more of them than a few): when that many are, the oldest is waited
    for and ended before the next is drawn.  An error raised by the iterable rolls
    back the jobs under way, and goes on up; jobs that ended stay placed.

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
    workers = _args.workers(workers, "place_many(): workers=")
    opts = _Options(
        strategy,
        strict,
        workers,
        progress,
        xattrs,
        times,
        fsync,
        _policy(copy),
        observer,
        _current_umask(),
        Holds(),  # one lock fd for every hidden directory of every job
        {},  # each destination directory listed once
    )
    results: list[PlaceReport | LinkStrategyError | None] = []
    under_way: dict[int, _Placement] = {}  # by index in results, oldest first
    plans: dict[tuple[str, str], Plan] = {}
    # One set of threads for every job: the width the caller asks, else the widest plan's.
    tasks = Tasks(shared(), workers or 1)
    most = _jobs_under_way()

    def end(i: int) -> None:  # a job under way: wait for it, reveal, report
        job = under_way[i]
        try:
            results[i] = job.finish()
        except OSError as e:
            results[i] = job.error(e)
        # (anything else: still under way, rolled back with the others below)
        del under_way[i]
        job.close()

    try:
        # Each job starts as soon as it is drawn: a generator that reads the next RECORD
        # does so while the jobs before it are placed.
        for j in _args.many(jobs, "place_many(): jobs"):
            job = _Placement(*_job(j), fn="place_many")
            results.append(None)
            under_way[len(results) - 1] = job
            try:
                job.prepare(opts, tasks, plans)
                if workers is None and job.run is not None:
                    tasks.workers = max(tasks.workers, job.run.plan.workers)
                job.start()
            except OSError as e:
                del under_way[len(results) - 1]
                job.abandon()
                job.close()
                results[-1] = job.error(e)
            while len(under_way) >= most:
                end(next(iter(under_way)))
        while under_way:
            end(next(iter(under_way)))
    except BaseException:
        for job in under_way.values():
            job.abandon()
        raise
    finally:
        for job in under_way.values():
            job.close()
    out = [r for r in results if r is not None]
    if check:
        for r in out:
            if isinstance(r, LinkStrategyError):
                raise r
    return out


def _job(j: object) -> tuple[PathLike, PathLike, Iterable[PathLike] | None]:
    """``(src, dst, files)`` of a place_many job: a tuple or list of two or three.  A
    ``str`` would be indexed as its characters (``"ab"``: ``a`` placed at ``b``)."""
    if isinstance(j, (tuple, list)) and len(j) in (2, 3):
        return j[0], j[1], j[2] if len(j) == 3 else None
    got = f"{len(j)} items" if isinstance(j, (tuple, list)) else type(j).__name__
    raise TypeError(f"place_many(): a job is (src, dst) or (src, dst, files), not {got}")


def _jobs_under_way() -> int:
    """How many of a place_many's jobs may be under way at once.  Each holds three
    directory fds (source root, destination parent and root) until it ends, beside
    what its walks hold: a 32nd of the fd limit, so that 1024 (the usual soft limit)
    allows 32, and never fewer than 4 (the workers' share of the work stays queued)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft == resource.RLIM_INFINITY:
            soft = 1 << 16
    except (ImportError, OSError, ValueError):  # pragma: no cover - not POSIX
        soft = 1024
    return max(4, min(64, soft // 32))


def _shared_plan_key(src_dir: str, parent: str) -> tuple[str, str] | None:
    """The key under which the sources of a place_many share one plan into ``parent``:
    plan() decides by the source's mount (its mount ID: a bind mount is another one)
    and, on btrfs, its subvolume (st_dev), so the cache entries of one mount and
    subvolume share one -- not when symlinks are in the chain (their relative targets
    depend on the paths), nor without a mount ID (None: a plan per source)."""
    try:
        sx = statx(AT_FDCWD, src_dir)
    except OSError:
        return None
    if sx.mnt_id is None:
        return None
    return (f"mount {sx.mnt_id} dev {sx.dev}", parent)


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
