"""The tree engine: removing entries and trees through directory file descriptors.

One engine for every removal in the library: remove() and gc() (:mod:`._remove`,
:mod:`._gc`), emptying the trash (:mod:`._trash`), replace()'s journals
(:mod:`._txn`), place()'s rollback and the probe's clean-up
(:func:`._removal.rmtree_at`); what to remove and in which order is :mod:`._removal`'s.

* Every directory is opened relative to its parent's fd with ``O_NOFOLLOW``
  (``openat``, ``unlinkat``, ``unlinkat(AT_REMOVEDIR)``): a symlink is unlinked,
  never followed, even when swapped in mid-walk.
* A directory on another mount (``statx`` STATX_MNT_ID) or filesystem (``st_dev``:
  a btrfs subvolume) is never entered: it is left in place and reported.
* The walk is a loop, not recursion, and holds a bounded number of directory fds
  at any depth: deeper, the oldest are closed and reached again through ``..``
  when the walk climbs back, checked by ``(st_dev, st_ino)``, so a directory moved
  away mid-walk stops the walk instead of leading elsewhere.
* Serial, or parallel on the process's one job pool (:mod:`._pool`, newest job
  first so the walk stays deep-first): every directory a job (network and FUSE
  mounts: :data:`_NETWORK_WORKERS`; a big local tree is handed to
  :data:`_LOCAL_WORKERS` threads midway).
* Each errno is sorted by :func:`._errors.remove_action`; retries go in whole
  passes with one :class:`._pool.Backoff` inside a time budget; what still cannot
  go is handed to the run's ``defer`` (the trash, :mod:`._trash`), never lost.
* ``expect``/``strict``: an entry must still be the inode this run judged, or it
  is left alone (what this run made, not whatever has its name now).

"""

from __future__ import annotations

import errno
import functools
import os
import stat
import threading
import time
from collections.abc import Callable, Sequence

from ._args import AnyPath
from ._classify import classify, network_override
from ._cloop import load_speedups
from ._errors import remove_action
from ._log import log
from ._mounts import find_mount
from ._pool import Group, Tasks, shared
from ._record import field, record
from ._sys import StatxResult, fd_path, fs_magic, open_beneath, statx

TYPE_CHECKING = False  # mypy treats any name TYPE_CHECKING as true; typing stays unloaded
if TYPE_CHECKING:
    from typing import Any, NamedTuple

    from ._removal import Root

__all__ = [
    "O_DIR",
    "Deferred",
    "Outcome",
    "Parent",
    "ParentChanged",
    "ParentFds",
    "Protect",
    "RemoveFailure",
    "RemoveReport",
    "Run",
    "WalkStopped",
    "chmod_nofollow_dir",
    "walk_frames",
    "why",
]


#: A path argument of a public function (:mod:`._args` makes it a ``str``).
StrPath = AnyPath


# NFS client silly-rename: ".nfs" + 16 hex fileid + 8 hex counter (fs/nfs/dir.c);
# the macOS client uses ".nfs.%08x.%04x".  libfuse: ".fuse_hidden%08x%08x".
_SILLY = (  # compiled (and re imported) on first use: names like these are rare
    r"^(\.nfs[0-9A-Fa-f]{24}|\.nfs\.[0-9a-f]{8}\.[0-9a-f]{4}|\.fuse_hidden[0-9a-f]{16})$"
)

_NETWORK_WORKERS = 32
# On a local disk: the serial walk hands over to this many threads (at most one per
# CPU) after this many directories.  Measured on 2 cores, a 7.6k-file tree: 2
# threads ~18% faster than serial on XFS and tmpfs, more threads slower again; a
# small tree is faster serially (no thread start, no hand-offs).
_LOCAL_WORKERS = 2
_LOCAL_SERIAL_DIRS = 100

# Directory fds one serial walk holds at most, whatever the depth: deeper, the
# oldest are closed and reached again through ".." (checked by inode) on the way
# back up.  A parallel walk goes at most _PARALLEL_DEPTH levels deep in jobs; below
# that, a job empties its subtree with a serial walk of at most _DEEP_FDS fds, so a
# pool of 32 holds a few hundred fds at most, under the usual `ulimit -n 1024`.
_MAX_FDS = 32
# The C pass (_speedups.clear_tree) holds at most this many directory fds (plus
# one); what lies deeper it leaves to the Python walk.
_C_DEPTH = 16
# ...and goes on threads (one C pass a subdirectory of the root) on a filesystem in
# memory, where removal is CPU work, when the root's subdirectories hold at least this
# many directories: below that, the hand-offs cost more than they save (a small
# package: 0.15 ms serial, 0.25 ms on threads here).  On a disk filesystem one thread:
# measured on XFS, 2 threads were 13 % slower on the 7.6k-file tree and 27 % slower on
# 200k files (real copies: two writers to one journal freeing extents), though 42 %
# faster where the files were hard links (no extents to free); rm -rf is serial too.
_C_THREADS_BELOW = 16
_MEMORY_MAGIC = frozenset({0x01021994, 0x858458F6})  # tmpfs, ramfs
_PARALLEL_DEPTH = 8
_DEEP_FDS = 8
# ...and all of it within the fds the process has (RLIMIT_NOFILE less those open, less a
# reserve for the rest of the process: an eighth of the limit, at least 16): a running job
# holds at most its directory, a serial walk's _DEEP_FDS and 3 passing ones (a listing's
# dup, an O_PATH chmod, a busy rmdir's listing); the directories kept open between jobs
# are counted against what is left, and past that a job empties its subdirectory
# serially.  Threads: at most as many as half the room pays jobs for (fewer than 2:
# the serial walk).  Measured: about 7 fds a thread without a cap.
_JOB_FDS = _DEEP_FDS + 4
# Directories holding a run's roots (remove() of a list of paths, a RECORD's files)
# open at once: each is open while its roots are worked on and closed, least recently
# used first, when others need the fds; a RECORD may span thousands of directories.
_PARENT_FDS = 16

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)

#: The C pass of local removals (``_speedups.clear_tree``), or None: the Python walk
#: alone (no extension, or ``$LINKSTRATEGY_NO_SPEEDUPS``).
_fast: Any = load_speedups()


def _is_silly(name: str) -> bool:
    if not name.startswith((".nfs", ".fuse_hidden")):
        return False
    import re  # re caches the compiled pattern

    return re.match(_SILLY, name) is not None


def fd_room() -> int:
    """The fds this process may still open for a walk: its soft ``RLIMIT_NOFILE`` less
    those open now, less a reserve for the rest of the process (an eighth, at least 16)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):  # pragma: no cover - not POSIX
        return 1 << 16
    if soft == resource.RLIM_INFINITY:
        return 1 << 16
    try:
        used = len(os.listdir("/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"))
    except OSError:  # EMFILE itself, no /proc: only the limit is known
        used = soft // 2
    return soft - used - max(16, soft // 8)


def fit_threads(workers: int) -> tuple[int, int]:
    """``(threads, frames)`` for a parallel walk that asks for ``workers`` threads,
    within :func:`fd_room`: ``threads`` running jobs at most (``1``: walk serially) and
    ``frames`` directories held open between its jobs."""
    room = fd_room()
    threads = min(workers, room // 2 // _JOB_FDS - 1)
    if threads < 2:
        return 1, 0
    return threads, room - (threads + 1) * _JOB_FDS  # +1: the calling thread works jobs too


def why(code: int) -> str:
    """The reason for an errno, with its name: "Too many open files (EMFILE)"."""
    return f"{os.strerror(code)} ({errno.errorcode.get(code, code)})"


# statfs f_type of filesystems that are surely local: their removals need not read

_LOCAL_MAGIC = frozenset(
    {
        0x58465342,  # xfs
        0xEF53,  # ext2/3/4
        0x9123683E,  # btrfs
        0x01021994,  # tmpfs
        0x2FC12FC1,  # zfs
        0xF2F52010,  # f2fs
        0x794C7630,  # overlayfs
    }
)


# -- the report ---------------------------------------------------------------


# The bases of the two report tuples below: typing.NamedTuple for type checkers,
# collections.namedtuple at run time (the same fields; typing is not imported for them).
if TYPE_CHECKING:

    class _Deferred(NamedTuple):
        path: str  # where it was
        trash: str  # where it is now (inside a .linkstrategy-trash directory)
        reason: str

    class _RemoveFailure(NamedTuple):
        path: str
        errno: int
        reason: str

else:
    from collections import namedtuple

    _Deferred = namedtuple("Deferred", ("path", "trash", "reason"))
    _RemoveFailure = namedtuple("RemoveFailure", ("path", "errno", "reason"))


class Deferred(_Deferred):
    """A root that could not be removed in time and was moved into the trash.

    A tuple ``(path, trash, reason)``.
    """

    __slots__ = ()

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "trash": self.trash, "reason": self.reason}


class RemoveFailure(_RemoveFailure):
    """Something that could neither be removed nor deferred: ``(path, errno, reason)``."""

    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "errno": self.errno, "reason": self.reason}


@record(frozen=True)
class RemoveReport:
    """What :func:`remove` or :func:`gc` did.

    ``removed`` counts entries (files, symlinks, directories) unlinked or rmdir'ed;
    ``retries`` the retryable failures that were tried again.
    """

    removed: int = 0
    retries: int = 0
    deferred: tuple[Deferred, ...] = ()
    errors: tuple[RemoveFailure, ...] = ()
    mounts_skipped: tuple[str, ...] = ()
    seconds: float = 0.0
    #: gc(): what it found but left alone, as ``"<path>: <why>"`` (another user's
    #: trash, journal or temporary; a symlink where a trash directory should be).
    foreign: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Nothing failed and nothing was left behind because of a mount."""
        return not self.errors and not self.mounts_skipped

    def to_json(self) -> dict[str, Any]:
        return {
            "removed": self.removed,
            "retries": self.retries,
            "deferred": [d.to_json() for d in self.deferred],
            "errors": [e.to_json() for e in self.errors],
            "mounts_skipped": list(self.mounts_skipped),
            "foreign": list(self.foreign),
            "seconds": round(self.seconds, 6),
        }


# -- the walker -----------------------------------------------------------------


class Protect:
    """The ``last`` entries below one root, as a tree of path components."""

    __slots__ = ("children", "leaf")

    def __init__(self) -> None:
        self.children: dict[str, Protect] = {}
        self.leaf = False

    def add(self, parts: Sequence[str]) -> None:
        node = self
        for p in parts:
            node = node.children.setdefault(p, Protect())
        node.leaf = True


_EMPTY_PROTECT = Protect()


@record(eq=False)
class Frame:
    """A directory being emptied: its fd and what the walk knows about it.

    It keeps its name and the frame of the directory holding it, not its path: the
    frames of a deep walk would hold depth x path length (900 MB for 3,000 levels of
    200-byte names); :attr:`path` is built only for a report."""

    fd: int  # -1: closed by a deep serial walk (reopened through ".." on the way up)
    name: str  # in ``parent``; the top's: its path
    prot: Protect
    subdirs: list[str] = field(default_factory=list)
    blocked: bool = False  # something in here stays: do not try rmdir
    ident: tuple[int, int] = (0, 0)  # (st_dev, st_ino), to check a reopened fd
    depth: int = 0
    # The directory holding this one (None for the top); the parallel walk's: how many
    # jobs still run for it (its own scan plus one per child directory).
    parent: Frame | None = field(default=None, repr=False)
    pending: int = 0

    @property
    def path(self) -> str:
        """Its path, from the top's: for reports."""
        names = []
        fr: Frame | None = self
        while fr is not None:
            names.append(fr.name)
            fr = fr.parent
        return os.path.join(*reversed(names))


def _at(where: str | Frame, name: str) -> str:
    """The path of ``name`` in ``where`` (a directory's path, or its frame), for a report."""
    return os.path.join(where if isinstance(where, str) else where.path, name)


@record
class Outcome:
    """Per-root result of one pass."""

    retry: bool = False  # a retryable failure: another pass may succeed
    silly: list[str] = field(default_factory=list)  # held-open silly-renamed names
    error: bool = False
    mount: bool = False
    protected: bool = False  # `last` entries remain
    last_retry_error: str = ""
    last_retry_errno: int = 0
    changed: bool = False  # strict root: no longer the inode judged; left alone

    @property
    def clean(self) -> bool:
        return not (self.retry or self.silly or self.error or self.mount or self.protected)

    def again(self, path: str, why: str, code: int = errno.EAGAIN) -> None:
        """A retryable failure at ``path``: another pass may succeed."""
        self.retry = True
        self.last_retry_error = f"{path}: {why}"
        self.last_retry_errno = code


class Parent:
    """A directory holding roots of a run, shared by them: opened when they are
    checked, closed when other parents need the fds (:class:`ParentFds`), and
    reopened the same way -- by its path as given, or beneath ``base``'s fd without
    following a symlink (``rel``) -- where it must be the directory it was when first
    opened (``st``, by ``(st_dev, st_ino)``).  ``preset``: an fd the caller owns."""

    __slots__ = ("base", "fd", "given", "lost", "path", "pins", "preset", "rel", "st")

    def __init__(
        self,
        given: str,
        base: Parent | None = None,
        rel: str = "",
        *,
        fd: int = -1,
        st: StatxResult | None = None,
    ) -> None:
        self.given = given  # as given: what is opened again (no base), and reported until open
        self.base = base
        self.rel = rel
        self.path = given  # the real path once opened (fd_path), for reports
        self.st = st
        self.fd = fd
        self.preset = fd >= 0
        self.pins = 0
        self.lost = False  # could not be reopened as itself: its roots are left, reported once

    def __repr__(self) -> str:
        return f"Parent({self.path!r}, fd={self.fd})"


class ParentChanged(OSError):
    """A parent closed after its check is not the directory it was when reopened."""


class ParentFds:
    """The open :class:`Parent` directories of one run: at most ``cap`` at once (besides
    preset ones), the least recently used one that is not pinned closed first.  An fd is
    used only while pinned (:meth:`pin`/:meth:`unpin`): never after it may have been
    closed and its number reused."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._open: dict[Parent, None] = {}  # least recently used first

    def pin(self, p: Parent) -> int:
        """``p``'s fd, opened (or reopened and checked) if need be; raises OSError
        (:class:`ParentChanged`: ESTALE, not the directory it was)."""
        if p.preset:
            return p.fd
        if p.fd >= 0:
            del self._open[p]
        else:
            p.fd = self._reopen(p)
        self._open[p] = None
        p.pins += 1
        return p.fd

    def unpin(self, p: Parent) -> None:
        if not p.preset:
            p.pins -= 1

    def _reopen(self, p: Parent) -> int:
        base = p.base
        if base is not None:
            bfd = self.pin(base)
        try:
            self._make_room()
            if base is None:
                fd = os.open(p.given, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            else:
                fd = open_beneath(bfd, p.rel, os.O_RDONLY | os.O_DIRECTORY)
        finally:
            if base is not None:
                self.unpin(base)
        try:
            st = statx(fd, "")
            if p.st is None:
                p.st = st
                p.path = fd_path(fd, p.given)
            elif (st.dev, st.ino) != (p.st.dev, p.st.ino):
                raise ParentChanged(
                    errno.ESTALE, "no longer the directory it was when checked", p.path
                )
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _make_room(self) -> None:
        while len(self._open) >= self.cap:
            old = next((q for q in self._open if not q.pins), None)
            if old is None:
                return  # every one in use (nested: an anchor and its child)
            del self._open[old]
            fd, old.fd = old.fd, -1
            os.close(fd)

    def close(self) -> None:
        opened, self._open = self._open, {}
        for p in opened:
            fd, p.fd = p.fd, -1
            os.close(fd)


#: Moves a root that cannot go in time out of the way: ``(parent fd, parent path,
#: name) -> where it is now`` (:func:`._trash.move_to_trash`).
Defer = Callable[[int, str, str], str]


class Run:
    """One removal: its budget, thread policy, deferral, counts and failures.

    ``workers``: ``None`` picks by filesystem (:func:`_network_workers`), ``1`` is
    serial, ``N`` walks every tree with ``N`` threads.  ``defer``: where a root
    that is still busy after the budget goes (``None``: it stays, listed as busy
    by the caller).  ``max_fds``: directory fds one serial walk holds at most."""

    def __init__(
        self,
        budget: float,
        workers: int | None,
        *,
        defer: Defer | None = None,
        max_fds: int = _MAX_FDS,
    ) -> None:
        self.start = time.monotonic()
        self.deadline = self.start + max(0.0, budget)
        self.workers = workers
        self.defer = defer
        self.max_fds = max_fds
        self.removed = 0
        self.retries = 0
        self.errors: list[RemoveFailure] = []
        self.mounts: list[str] = []
        self.deferred: list[Deferred] = []
        self._tasks: dict[int, Tasks] = {}
        self._lock = threading.RLock()
        self.opened: list[Root] = []
        self._workers_by_dev: dict[int, int] = {}
        # The directories holding the roots, by how they are reached (a path as given,
        # or a base and a path beneath it): a bounded number of them open at once.
        self.parents: dict[object, Parent] = {}
        self.parent_fds = ParentFds(_PARENT_FDS)

    # bookkeeping ---------------------------------------------------------

    def close(self) -> None:
        self.parent_fds.close()

    def report(self) -> RemoveReport:
        return RemoveReport(
            removed=self.removed,
            retries=self.retries,
            deferred=tuple(self.deferred),
            errors=tuple(self.errors),
            mounts_skipped=tuple(dict.fromkeys(self.mounts)),
            seconds=time.monotonic() - self.start,
        )

    def fail(self, out: Outcome, path: str, exc: OSError, what: str) -> None:
        out.error = True
        code = exc.errno or 0
        with self._lock:
            self.errors.append(RemoveFailure(path, code, f"{what}: {why(code)}"))

    def count_unlinked(self, name: str) -> None:
        """Count one entry unlinked (not a silly-renamed name: the client's, not ours)."""
        if not _is_silly(name):
            self._count()

    def _count(self, n: int = 1) -> None:
        with self._lock:
            self.removed += n

    def _retried(self) -> None:
        with self._lock:
            self.retries += 1

    def _workers_for(self, fd: int) -> int:
        if self.workers is not None:
            return max(1, self.workers)
        try:
            dev = os.fstat(fd).st_dev
        except OSError:
            return 1
        # Cached per call, not per process: device numbers of unmounted
        # filesystems are reused (a tmpfs may get the number a FUSE mount had).
        n = self._workers_by_dev.get(dev)
        if n is None:
            n = self._workers_by_dev[dev] = _network_workers(fd)
        return n

    # single operations -----------------------------------------------------

    def _make_writable(self, fd: int) -> bool:
        """Give the directory open at ``fd`` u+rwx after an EACCES/EPERM in it; True
        when another try may succeed.  That is also when it is ours and already u+rwx:
        another thread of the walk (a sibling's rmdir, the unlinks of its files) met
        the same error at the same moment and made it writable first."""
        try:
            st = os.fstat(fd)
            mode = stat.S_IMODE(st.st_mode)
            if mode & stat.S_IRWXU == stat.S_IRWXU:
                return st.st_uid == os.geteuid()
            os.chmod(fd, mode | stat.S_IRWXU)
        except OSError:
            return False
        return True

    def unlink(
        self,
        fd: int,
        path: str | Frame,
        name: str,
        out: Outcome,
        err: OSError | None = None,
        *,
        fix_perms: bool = True,
    ) -> bool:
        """Unlink one non-directory; True when it is gone.

        ``err``: the error of an attempt already made (by a fast path); handled
        without trying again at once, so every attempt is one system call.
        """
        fixed = not fix_perms  # never chmod the directory holding a root: not ours
        while True:
            if err is None:
                try:
                    os.unlink(name, dir_fd=fd)
                except OSError as first:
                    err = first
                else:
                    if not _is_silly(name):
                        self._count()
                    return True
            exc, err = err, None
            code = exc.errno
            action = remove_action(code)
            if action == "gone":
                return True
            if action == "swapped":
                # It is (now) a directory: swapped mid-walk; the next pass walks it.
                out.again(_at(path, name), "became a directory", code or 0)
                return False
            if action == "fix_perms" and not fixed:
                fixed = True
                if self._make_writable(fd):
                    continue
            if action in ("busy", "retry"):
                if _is_silly(name):
                    out.silly.append(_at(path, name))
                else:
                    out.again(_at(path, name), why(code or 0), code or 0)
                    self._retried()
                return False
            self.fail(out, _at(path, name), exc, "cannot unlink")
            return False

    def rmdir(
        self, fd: int, path: str | Frame, name: str, out: Outcome, *, fix_perms: bool = True
    ) -> bool:
        fixed = not fix_perms
        while True:
            try:
                os.rmdir(name, dir_fd=fd)
            except OSError as e:
                code = e.errno or 0
                action = remove_action(code)
                if action == "gone":
                    return True
                if action == "fix_perms" and not fixed:
                    fixed = True
                    if self._make_writable(fd):
                        continue
                full = _at(path, name)
                if action == "busy" and self._is_mount(fd, name):
                    out.mount = True
                    self.mounts.append(full)
                    return False
                if action in ("busy", "retry"):
                    left = self._listing(fd, name)
                    if left and all(_is_silly(n) for n in left):
                        out.silly.extend(os.path.join(full, n) for n in left)
                    else:
                        out.again(full, why(code), code)
                        self._retried()
                    return False
                if action == "swapped":  # next pass unlinks it
                    out.again(full, "swapped for a non-directory", code)
                    return False
                self.fail(out, full, e, "cannot remove directory")
                return False
            self._count()
            return True

    def _listing(self, fd: int, name: str) -> list[str]:
        try:
            sub = os.open(name, O_DIR, dir_fd=fd)
        except OSError:
            return []
        try:
            return os.listdir(sub)
        except OSError:
            return []
        finally:
            os.close(sub)

    def _is_mount(self, fd: int, name: str) -> bool:
        try:
            here = statx(fd, "")
            there = statx(fd, name)
        except OSError:
            return False
        if there.mount_root:
            return True
        if here.mnt_id is not None and there.mnt_id is not None:
            return here.mnt_id != there.mnt_id
        return here.dev != there.dev

    def open_subdir(self, fr: Frame, name: str, root: StatxResult, out: Outcome) -> int | None:
        """Open ``name`` under ``fr`` for walking, or deal with it and return None."""
        try:
            st = statx(fr.fd, name)
        except OSError as e:
            if remove_action(e.errno) == "gone":
                return None
            fr.blocked = True
            self.fail(out, _at(fr, name), e, "cannot stat")
            return None
        if not stat.S_ISDIR(st.mode):
            # d_type said directory but it is not (any more): a swap; unlink, never follow.
            if not self.unlink(fr.fd, fr, name, out):
                fr.blocked = True
            return None
        if _other_mount(st, root):
            fr.blocked = True
            out.mount = True
            self.mounts.append(_at(fr, name))
            return None
        fixed = False
        while True:
            try:
                fd = os.open(name, O_DIR, dir_fd=fr.fd)
                break
            except OSError as e:
                action = remove_action(e.errno)  # busy or retry: an error here
                if action == "gone":
                    return None
                if action == "swapped":
                    # Became a symlink (O_NOFOLLOW: ELOOP) or a file (ENOTDIR): remove the
                    # link itself next pass; its target is outside the walk and untouched.
                    out.again(_at(fr, name), "swapped for a non-directory", e.errno or 0)
                    fr.blocked = True
                    return None
                if action == "fix_perms" and not fixed:
                    fixed = True
                    if chmod_nofollow_dir(fr.fd, name):
                        continue
                fr.blocked = True
                self.fail(out, _at(fr, name), e, "cannot open directory")
                return None
        try:
            fst = os.fstat(fd)
        except OSError as e:
            os.close(fd)
            fr.blocked = True
            self.fail(out, _at(fr, name), e, "cannot stat")
            return None
        if (fst.st_dev, fst.st_ino) != (st.dev, st.ino):
            os.close(fd)  # replaced between the stat and the open: look again next pass
            fr.blocked = True
            out.again(_at(fr, name), "replaced while opening")
            return None
        return fd

    def scan(self, fr: Frame, out: Outcome) -> list[str]:
        """List ``fr``: its non-directories are returned, its directories queued."""
        try:
            with os.scandir(fr.fd) as it:
                entries = list(it)
        except OSError as e:
            fr.blocked = True
            if remove_action(e.errno) == "fix_perms" and self._make_writable(fr.fd):
                try:
                    with os.scandir(fr.fd) as it:
                        entries = list(it)
                except OSError as e2:
                    self.fail(out, fr.path, e2, "cannot list directory")
                    return []
                fr.blocked = False
            else:
                self.fail(out, fr.path, e, "cannot list directory")
                return []
        files: list[str] = []
        prot = fr.prot
        for entry in entries:
            name = entry.name
            if prot.children:
                node = prot.children.get(name)
                if node is not None and node.leaf:
                    fr.blocked = True
                    out.protected = True
                    continue
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                fr.subdirs.append(name)
            else:
                files.append(name)
        return files

    def unlink_files(self, fr: Frame, files: list[str], out: Outcome) -> None:
        """Unlink ``files`` (non-directories of ``fr``), one after another."""
        if not files:
            return
        # The hot loop: one unlinkat per file, the slow path only on an error.
        fd = fr.fd
        unlink = os.unlink
        gone = 0
        for name in files:
            try:
                unlink(name, dir_fd=fd)
            except OSError as e:
                if not self.unlink(fd, fr, name, out, e):
                    fr.blocked = True
            else:
                if name[0] == "." and _is_silly(name):
                    continue
                gone += 1
        if gone:
            self._count(gone)

    def tasks(self, workers: int) -> Tasks:
        """This run's queue on the process's pool for ``workers`` threads, newest job
        first (the walk goes deep first, see :class:`._pool.Tasks`)."""
        t = self._tasks.get(workers)
        if t is None:
            t = self._tasks[workers] = Tasks(shared(), workers, order="lifo")
        return t

    def clear_tree(
        self, top_fd: int, top_path: str, prot: Protect, root: StatxResult, out: Outcome
    ) -> bool:
        """Empty the directory open at ``top_fd``; True if it is now empty."""
        workers = self._workers_for(top_fd)
        if workers > 1:
            threads, frames = fit_threads(workers)
            if threads > 1:
                walk = _ParallelWalk(self, self.tasks(threads), root, out, frames)
                return walk.clear(top_fd, top_path, prot)
            # Too few fds for threads: serially, within them.
            max_fds = min(self.max_fds, max(2, fd_room() - 4))
            return self.serial_clear(top_fd, top_path, prot, root, out, max_fds)
        if _fast is not None and not prot.children and not self._c_clear(top_fd, root):
            return True
        # Serial; on a local disk a big tree is handed to the parallel walk after a
        # while (threads do not pay for a small one).
        later = _local_workers() if self.workers is None else 1
        max_fds = min(self.max_fds, max(2, fd_room() - 4))
        return self.serial_clear(top_fd, top_path, prot, root, out, max_fds, later)

    def _c_clear(self, top_fd: int, root: StatxResult) -> int:
        """The C pass (local): remove what goes plainly below ``top_fd`` -- on tmpfs a
        big tree's subdirectories in parallel on the pool, when the run may use
        threads; what it leaves (an error of any kind, a mount, a directory too deep)
        the Python walk decides.  Returns how many entries of ``top_fd`` stay."""
        mnt_id = -1 if root.mnt_id is None else root.mnt_id
        workers = _local_workers() if self.workers is None else 1
        if workers > 1 and fs_magic(top_fd) in _MEMORY_MAGIC:
            try:
                with os.scandir(top_fd) as it:
                    subs = [e.name for e in it if e.is_dir(follow_symlinks=False)]
            except OSError:
                subs = []  # the pass below meets the same error and leaves it
            if len(subs) > 1 and _worth_threads(top_fd, subs):
                group = Group(self.tasks(workers))
                for name in subs:
                    group.submit(self._c_clear_subdir, top_fd, name, root, mnt_id)
                group.wait()
                if group.error is not None:
                    raise group.error
        removed, left = _fast.clear_tree(top_fd, root.dev, mnt_id, _C_DEPTH)
        if removed:
            self._count(removed)
        return int(left)

    def _c_clear_subdir(self, parent_fd: int, name: str, root: StatxResult, mnt_id: int) -> None:
        """One subdirectory's C pass, a job: anything unusual is left for the pass over
        its parent (and the Python walk after it), which decides and reports."""
        try:
            st = statx(parent_fd, name)
            if not stat.S_ISDIR(st.mode) or _other_mount(st, root):
                return
            fd = os.open(name, O_DIR, dir_fd=parent_fd)
        except OSError:
            return
        try:
            fst = os.fstat(fd)
            if (fst.st_dev, fst.st_ino) != (st.dev, st.ino):
                return  # replaced between the look and the open
            removed, left = _fast.clear_tree(fd, root.dev, mnt_id, _C_DEPTH)
        finally:
            os.close(fd)
        if not left:
            try:
                os.rmdir(name, dir_fd=parent_fd)
                removed += 1
            except OSError:
                pass
        if removed:
            self._count(removed)

    def serial_clear(
        self,
        top_fd: int,
        top_path: str,
        prot: Protect,
        root: StatxResult,
        out: Outcome,
        max_fds: int,
        later: int = 1,
        under: Frame | None = None,
    ) -> bool:
        """Empty the directory open at ``top_fd`` with :func:`walk_frames` (depth first,
        at most ``max_fds`` directory fds besides ``top_fd``); True if it is now empty.
        ``top_path``: its path, or its name in ``under`` (the frame of the directory
        holding it).  ``later > 1``: after ``_LOCAL_SERIAL_DIRS`` directories, hand the
        rest to that many threads (fewer, or none, where the fds are few:
        :func:`fit_threads`)."""
        threads, frames = fit_threads(later) if later > 1 else (1, 0)
        top_st = os.fstat(top_fd)
        top = Frame(top_fd, top_path, prot, ident=(top_st.st_dev, top_st.st_ino), parent=under)
        self.unlink_files(top, self.scan(top, out), out)

        def enter(fr: Frame, name: str) -> Frame | None:
            fd = self.open_subdir(fr, name, root, out)
            if fd is None:
                return None
            try:
                fst = os.fstat(fd)
                node = fr.prot.children.get(name, _EMPTY_PROTECT)
                child = Frame(
                    fd, name, node, ident=(fst.st_dev, fst.st_ino), depth=fr.depth + 1, parent=fr
                )
                self.unlink_files(child, self.scan(child, out), out)
            except BaseException:
                os.close(fd)
                raise
            return child

        def leave(fr: Frame, parent: Frame) -> None:
            if fr.blocked or not self.rmdir(parent.fd, parent, fr.name, out):
                parent.blocked = True

        def handoff(stack: list[Frame]) -> bool:
            return _ParallelWalk(self, self.tasks(threads), root, out, frames).adopt(stack)

        try:
            handed = walk_frames(
                top,
                max_fds,
                enter,
                leave,
                handoff=handoff if threads > 1 else None,
                handoff_after=_LOCAL_SERIAL_DIRS,
                doing="removal",
            )
        except WalkStopped as e:
            self.fail(out, e.path, e.cause, e.what)
            return False
        return not top.blocked if handed is None else handed


class WalkStopped(OSError):
    """:func:`walk_frames` stopped: a directory it had closed to stay within its fds
    cannot be reopened, or is no longer the inode it was (moved away mid-walk)."""

    def __init__(self, path: str, cause: OSError, what: str) -> None:
        super().__init__(cause.errno, what, path)
        self.path = path
        self.what = what
        self.cause = cause


def walk_frames(
    top: Frame,
    max_fds: int,
    enter: Callable[[Frame, str], Frame | None],
    leave: Callable[[Frame, Frame], None],
    *,
    handoff: Callable[[list[Frame]], bool] | None = None,
    handoff_after: int = 0,
    doing: str = "the walk",
) -> bool | None:
    """The engine's walk: depth first from ``top`` (open, its ``subdirs`` listed), in a
    loop, holding at most ``max_fds`` directory fds besides ``top.fd`` at any depth:
    deeper, the oldest open frame is closed and reached again from its child through
    ``..``, checked by ``(st_dev, st_ino)``; a directory moved away mid-walk stops the
    walk (:class:`WalkStopped`) instead of leading elsewhere.

    ``enter(frame, name)``: the child ``name`` of ``frame`` opened (``O_NOFOLLOW``,
    same mount, identity checked) and listed, or None to skip it.  ``leave(child,
    parent)``: after the child and everything below it (its fd closed).  ``handoff``:
    after ``handoff_after`` directories, while no frame is closed, the open stack (top
    first) is handed over and its result returned; else None when the walk is done."""
    stack = [top]
    opened = 0  # open fds in stack, top excluded
    closed = 0  # frames in stack whose fd was closed to stay within max_fds
    dirs = handoff_after
    try:
        while stack:
            fr = stack[-1]
            if fr.subdirs:
                if handoff is not None and dirs <= 0 and not closed:
                    handed, stack = stack, []  # its fds are the taker's to close now
                    return handoff(handed)
                dirs -= 1
                child = enter(fr, fr.subdirs.pop())
                if child is None:
                    continue
                stack.append(child)
                opened += 1
                if opened > max_fds:
                    old = next(f for f in stack[1:] if f.fd >= 0)
                    os.close(old.fd)
                    old.fd = -1
                    opened -= 1
                    closed += 1
                continue
            stack.pop()
            if fr is top:
                return None
            parent = stack[-1]
            if parent.fd < 0:
                try:
                    pfd = os.open("..", O_DIR, dir_fd=fr.fd)
                except OSError as e:
                    raise WalkStopped(parent.path, e, "cannot reopen directory") from None
                pst = os.fstat(pfd)
                if (pst.st_dev, pst.st_ino) != parent.ident:
                    os.close(pfd)
                    moved = OSError(errno.ESTALE, "moved")
                    raise WalkStopped(parent.path, moved, f"moved during {doing}, walk stopped")
                parent.fd = pfd
                opened += 1
                closed -= 1
            os.close(fr.fd)
            fr.fd = -1
            opened -= 1
            leave(fr, parent)
        return None
    finally:
        for f in stack:
            if f is not top and f.fd >= 0:
                os.close(f.fd)


class _ParallelWalk:
    """Empty one tree with every directory a job in the pool (network mounts).

    A job opens one directory (relative to its parent's fd, ``O_NOFOLLOW``, mount
    and identity checked, as the serial walk does), submits a job per
    subdirectory, and unlinks the files.  Each directory counts its unfinished
    jobs; the job that brings the count to zero closes it and rmdir's it (unless
    something in it stays), then counts itself off its parent: directories go
    deepest first, and a directory's fd stays open until every job that uses it
    is done.  Unlinks in one directory run one after another (the kernel holds
    the directory's lock for each round trip), different directories in parallel.
    The jobs run on the run's :class:`._pool.Tasks` (newest first: deep first).
    """

    def __init__(
        self, run: Run, tasks: Tasks, root: StatxResult, out: Outcome, frames: int
    ) -> None:
        self.run = run
        self.tasks = tasks
        self.root = root
        self.out = out
        # Directories held open between jobs (the top's is the caller's): at most
        # ``frames``, past that a job empties its subdirectory serially (deep()).
        self.frames = 0
        self.max_frames = frames
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.cancelled = False  # after an unexpected exception: wind down, touch nothing
        self.exc: BaseException | None = None

    def clear(self, top_fd: int, top_path: str, prot: Protect) -> bool:
        top = Frame(top_fd, top_path, prot, pending=1)
        try:
            self.scan(top)  # the top in this thread; its subdirectories in the pool
            self.tasks.help_until(self.done)
        except BaseException:
            self.cancelled = True
            self.tasks.help_until(self.done)  # never return while a job may use an fd
            raise
        if self.exc is not None:
            raise self.exc
        return not top.blocked

    def failed(self, exc: BaseException, fr: Frame) -> None:
        with self.lock:
            if self.exc is None:
                self.exc = exc
            self.cancelled = True
        fr.blocked = True

    def adopt(self, stack: list[Frame]) -> bool:
        """Take over a serial walk: ``stack`` (top first) is open, its files are gone."""
        self.frames = len(stack) - 1  # counted against max_frames: they stay open a while
        for i, fr in enumerate(stack):
            fr.parent = stack[i - 1] if i else None
            fr.pending = 2 if i < len(stack) - 1 else 1  # its own token, the child above
        left = len(stack)
        try:
            while left:
                fr = stack[left - 1]
                try:
                    if not self.cancelled:
                        self.submit_subdirs(fr)
                except Exception as e:
                    self.failed(e, fr)
                left -= 1
                self.release(fr)
            self.tasks.help_until(self.done)
        except BaseException:
            self.cancelled = True
            while left:
                left -= 1
                self.release(stack[left])
            self.tasks.help_until(self.done)  # never return while a job may use an fd
            raise
        if self.exc is not None:
            raise self.exc
        return not stack[0].blocked

    def submit_subdirs(self, fr: Frame) -> None:
        subdirs, fr.subdirs = fr.subdirs, []
        if not subdirs:
            return
        with self.lock:
            fr.pending += len(subdirs)
        for i, name in enumerate(subdirs):
            try:
                self.tasks.submit(_job, functools.partial(self.subdir, fr, name))
            except BaseException:
                with self.lock:
                    fr.pending -= len(subdirs) - i
                raise

    def scan(self, fr: Frame) -> None:
        """List ``fr``, submit its subdirectories, unlink its files; then count off."""
        try:
            if not self.cancelled:
                files = self.run.scan(fr, self.out)
                self.submit_subdirs(fr)
                self.run.unlink_files(fr, files, self.out)
        except BaseException as e:
            self.failed(e, fr)
        finally:
            self.release(fr)

    def subdir(self, parent: Frame, name: str) -> None:
        """Job: open ``name`` in ``parent`` and empty it."""
        child: Frame | None = None
        try:
            if not self.cancelled:
                fd = self.run.open_subdir(parent, name, self.root, self.out)
                if fd is not None:
                    node = parent.prot.children.get(name, _EMPTY_PROTECT)
                    if parent.depth + 1 >= _PARALLEL_DEPTH or not self.take_frame():
                        self.deep(parent, name, fd, node)
                    else:
                        child = Frame(
                            fd, name, node, parent=parent, pending=1, depth=parent.depth + 1
                        )
        except BaseException as e:
            self.failed(e, parent)
        if child is None:
            self.release(parent)
        else:
            self.scan(child)

    def take_frame(self) -> bool:
        """May one more directory stay open between jobs?  (Counted if so.)"""
        with self.lock:
            if self.frames >= self.max_frames:
                return False
            self.frames += 1
            return True

    def deep(self, parent: Frame, name: str, fd: int, node: Protect) -> None:
        """Empty and rmdir a subtree below the parallel depth with a serial walk in this
        job (bounded fds whatever its depth)."""
        try:
            run, root, out = self.run, self.root, self.out
            ok = run.serial_clear(fd, name, node, root, out, _DEEP_FDS, under=parent)
        finally:
            os.close(fd)
        if not ok or self.cancelled or not self.run.rmdir(parent.fd, parent, name, self.out):
            parent.blocked = True

    def release(self, fr: Frame) -> None:
        """One job for ``fr`` is done; the last one finishes it (and maybe its parents)."""
        while True:
            with self.lock:
                fr.pending -= 1
                if fr.pending > 0:
                    return
            parent = fr.parent
            if parent is None:  # the top: its fd and its rmdir belong to the caller
                self.done.set()
                self.tasks.wake()
                return
            try:
                os.close(fr.fd)
                with self.lock:
                    self.frames -= 1
                if (
                    fr.blocked
                    or self.cancelled
                    or not self.run.rmdir(parent.fd, parent, fr.name, self.out)
                ):
                    parent.blocked = True
            except BaseException as e:
                self.failed(e, parent)
            fr = parent


def _worth_threads(dir_fd: int, subs: list[str]) -> bool:
    """Are the subdirectories ``subs`` of ``dir_fd`` big enough to empty on threads?  A
    small package is faster in one (no hand-offs).  A directory's link count is 2 plus
    its subdirectories on ext4, XFS and tmpfs; 1 (btrfs, some FUSE) says nothing: then
    threads."""
    below = 0
    for name in subs:
        try:
            nlink = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_nlink
        except OSError:
            continue
        below += nlink - 2 if nlink >= 2 else _C_THREADS_BELOW
        if below >= _C_THREADS_BELOW:
            return True
    return False


def _other_mount(st: StatxResult, root: StatxResult) -> bool:
    """Is the directory ``st`` on another filesystem or mount than ``root`` (or a mount
    point itself)?  The walk never enters one."""
    return (
        st.dev != root.dev
        or (st.mnt_id is not None and root.mnt_id is not None and st.mnt_id != root.mnt_id)
        or bool(st.mount_root)
    )


def _job(fn: Callable[[], None]) -> None:
    """A walk's job on the shared pool: jobs report their own failures (``failed``);
    anything that escapes is logged, never allowed to end a pool thread."""
    try:
        fn()
    except BaseException:
        log.debug("remove job failed", exc_info=True)


def chmod_nofollow_dir(dir_fd: int, name: str) -> bool:
    """Add u+rwx to directory ``name`` without following a symlink swapped in for it."""
    o_path = getattr(os, "O_PATH", None)
    try:
        if o_path is not None and os.path.isdir("/proc/self/fd"):
            fd = os.open(name, o_path | os.O_NOFOLLOW | os.O_DIRECTORY, dir_fd=dir_fd)
            try:
                proc = f"/proc/self/fd/{fd}"
                mode = os.stat(proc).st_mode
                os.chmod(proc, stat.S_IMODE(mode) | stat.S_IRWXU)
            finally:
                os.close(fd)
            return True
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            return False
        os.chmod(name, stat.S_IMODE(st.st_mode) | stat.S_IRWXU, dir_fd=dir_fd)
        return True
    except (OSError, NotImplementedError):
        return False


def _local_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(_LOCAL_WORKERS, cpus))


def _network_workers(fd: int) -> int:
    """Workers for unlinking in the directory open at ``fd``: many on network mounts."""
    workers = 1
    override = network_override()  # the user's word wins over any classification
    if not override and fs_magic(fd) in _LOCAL_MAGIC:
        return workers
    try:
        mount = find_mount(f"/proc/self/fd/{fd}" if os.path.isdir("/proc/self/fd") else ".")
        # find_mount resolves the magic link with realpath; fine for a classification.
        # The probe's classification, so $LINKSTRATEGY_NETWORK_MOUNTS counts here too.
        if (
            classify(mount).network
            or mount.fstype.startswith("fuse")
            or mount.mount_point in network_override()
        ):
            workers = _NETWORK_WORKERS
    except Exception:  # classification is an optimisation; never fail the removal for it
        workers = 1
    return workers
