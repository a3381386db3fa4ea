"""Robust removal of files and trees, built for network filesystems.

:func:`remove` walks each tree with directory file descriptors (``openat`` with
``O_NOFOLLOW``, ``unlinkat``, ``unlinkat(AT_REMOVEDIR)``), like the safe path of
``shutil.rmtree``: it never follows a symlink and never leaves the tree, even if a
component is swapped for a symlink mid-walk (the swapped-in link is removed, not
followed).

Policies (the reasons are in fsfacts.md §8 and peers.md §5, §11):

* **Retry.** ``EBUSY``/``ENOTEMPTY``/``EAGAIN``/``EINTR`` (:data:`REMOVE_RETRY`)
  are retried by whole passes over what is left, with exponential backoff from
  10 ms (doubling, at most 0.5 s a step) inside one time ``budget`` for the
  whole call.
* **Silly-renamed files.** An NFS ``.nfs<16hex><8hex>`` file held open gives
  EBUSY on unlink and makes rmdir of its directory give ENOTEMPTY until the holder
  closes it; FUSE re-hides ``.fuse_hidden*`` under a new name when it is unlinked.
  The holder is often the calling process itself (an imported ``.so``), so waiting
  cannot help: as soon as a pass finds nothing left but such names, the root is
  *deferred* at once (below) instead of spending the budget.
* **Deferral.** A root that still cannot go (held open, or busy past the budget)
  is moved with one ``rename`` into ``<parent>/.linkstrategy-trash/`` as
  ``<unix time>-<pid>-<random>-<name>``.  The trash directory is a sibling of
  the removed root, so it is on the same mount and (being a plain directory made
  in the root's parent) in the same btrfs subvolume: the rename cannot give EXDEV.
  The destination looks clean at once; the entry is listed in
  :attr:`RemoveReport.deferred`.  The next :func:`remove` with a root in that
  directory, a ``place()`` calling :func:`collect_trash`, or :func:`gc` empties it.
* **Mounts are never crossed.** Each directory's mount ID (``statx`` STATX_MNT_ID,
  which tells a bind mount of the same filesystem apart) and ``st_dev`` are
  compared with the root's before it is opened.  A mount point inside the tree is
  left alone, untouched, and reported in :attr:`RemoveReport.mounts_skipped`; its
  ancestors stay too (they are not empty) and are *not* deferred, since renaming
  them would carry the mount into the trash.  A btrfs subvolume inside the tree
  (different ``st_dev``, same mount) is treated the same way, as
  ``rm --one-file-system`` does: deleting a subvolume (often a snapshot) is an
  administrative act (``btrfs subvolume delete``), not part of removing a tree.
  A subvolume named *as a root* is emptied and rmdir'ed like any directory.
* **Permissions.** EACCES/EPERM on an unlink or rmdir makes the containing
  directory writable (``fchmod`` of the directory fd) and tries once more; a
  directory that cannot be opened is made readable and searchable first.  The
  directory *holding* a root is outside the tree and is never chmod'ed.
* **Parallelism.** On network and FUSE mounts (``workers=None``: 32 threads) the
  walk itself is parallel: every directory is a job that opens it (relative to
  its parent's fd, with the same checks), submits its subdirectories as jobs and
  unlinks its files; a directory is rmdir'ed, deepest first, by whichever job
  finishes the last of its children.  Unlinks in one directory stay one after
  another (the kernel holds the directory's lock for each round trip); many
  directories are in flight at once.  On a local disk the walk is serial, and a
  big tree (more than ``_LOCAL_SERIAL_DIRS`` directories) is handed to 2 threads
  midway (measured on 2 cores, a 7.6k-file tree: ~15% faster on XFS and tmpfs;
  threads do not pay for a small tree).  ``workers=N > 1`` makes every walk
  parallel with N threads; ``workers=1`` keeps it serial.
* **Interrupted replace().** A journal ``.<name>.linkstrategy-txn`` next to a root
  is recovered (rolled forward or back, see :mod:`._txn`) before the root is removed.
* **Refusals** (raise :class:`RemoveError` before anything is touched): ``/``,
  the user's home directory or any ancestor of it, and a mount point itself.
* A missing path is not an error.

``last`` (metadata goes last): entries removed after everything else, in the
order given.  An absolute entry names one path (it need not be among ``paths``).
A relative entry (no ``..``) is taken relative to *each directory root* in
``paths``; entries that do not exist are skipped.  Example for uninstalling a
wheel: ``remove([pkg_dir, dist_info_dir], last=("METADATA", "RECORD"))``.  The
other files go while the metadata still lists them; the metadata goes only when
every other file is gone.  If anything else could not be removed (an error, or a
mount left alone), the ``last`` entries are kept, so files are never left behind
without the metadata that lists them.  (uv repairs a dist-info that lacks
METADATA by deleting it, but only warns about one that lacks RECORD, so
``("METADATA", "RECORD")`` is the friendlier order for uv.)

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp()) / "tree"
>>> (d / "sub").mkdir(parents=True); _ = (d / "sub" / "f").write_text("x")
>>> r = remove(d)
>>> (r.removed, d.exists(), r.deferred)
(3, False, ())
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from dataclasses import replace as dc_replace
from typing import Any, NamedTuple, Union

from ._classify import classify
from ._errors import (
    REMOVE_GONE,
    REMOVE_IS_DIR,
    REMOVE_PERMISSION,
    REMOVE_RETRY,
    REMOVE_SWAPPED,
    InvalidArgument,
    RemoveError,
    TransactionBusy,
)
from ._log import log
from ._mounts import find_mount
from ._owner import is_tmp_name, judge, may_act
from ._probe import PROBE_PREFIX, network_override
from ._sys import StatxResult, fd_path, open_beneath, statx
from ._sys import fs_magic as _fs_magic
from ._trash import (
    TRASH_NAME,
    forget,
    is_trash_name,
    known_on,
    move_to_trash,
    open_trash,
    reopen_known,
    trash_age,
    trash_name_for,
)

__all__ = [
    "TRASH_NAME",
    "Deferred",
    "RemoveFailure",
    "RemoveReport",
    "collect_trash",
    "gc",
    "remove",
]


StrPath = Union[str, "os.PathLike[str]"]

# NFS client silly-rename: ".nfs" + 16 hex fileid + 8 hex counter (fs/nfs/dir.c);
# the macOS client uses ".nfs.%08x.%04x".  libfuse: ".fuse_hidden%08x%08x".
_SILLY = re.compile(
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
_PARALLEL_DEPTH = 8
_DEEP_FDS = 8

_BACKOFF_START = 0.01
_BACKOFF_MAX = 0.5

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)

#: Called with the running count after each successful unlink, when set.  A seam for
#: the kill -9 tests (their child process sets it); None in normal use.
unlink_hook: Callable[[int], None] | None = None


def _is_silly(name: str) -> bool:
    return name.startswith((".nfs", ".fuse_hidden")) and _SILLY.match(name) is not None


def _why(code: int) -> str:
    """The reason for an errno, with its name: "Too many open files (EMFILE)"."""
    return f"{os.strerror(code)} ({errno.errorcode.get(code, code)})"


# statfs f_type of filesystems that are surely local: their removals need not read
# the mount table to find out (fuse, nfs, cifs, ... are not in here).
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


class Deferred(NamedTuple):
    """A root that could not be removed in time and was moved into the trash.

    A tuple ``(path, trash, reason)``.
    """

    path: str  # where it was
    trash: str  # where it is now (inside a .linkstrategy-trash directory)
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "trash": self.trash, "reason": self.reason}


class RemoveFailure(NamedTuple):
    """Something that could neither be removed nor deferred: ``(path, errno, reason)``."""

    path: str
    errno: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "errno": self.errno, "reason": self.reason}


@dataclass(frozen=True)
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


class _Protect:
    """The ``last`` entries below one root, as a tree of path components."""

    __slots__ = ("children", "leaf")

    def __init__(self) -> None:
        self.children: dict[str, _Protect] = {}
        self.leaf = False

    def add(self, parts: Sequence[str]) -> None:
        node = self
        for p in parts:
            node = node.children.setdefault(p, _Protect())
        node.leaf = True


_EMPTY_PROTECT = _Protect()


@dataclass(eq=False)
class _Frame:
    """A directory being emptied: its fd and what the walk knows about it."""

    fd: int  # -1: closed by a deep serial walk (reopened through ".." on the way up)
    path: str
    prot: _Protect
    subdirs: list[str] = field(default_factory=list)
    blocked: bool = False  # something in here stays: do not try rmdir
    ident: tuple[int, int] = (0, 0)  # (st_dev, st_ino), to check a reopened fd
    depth: int = 0
    # Parallel walk only: the directory holding this one (None for the top), and
    # how many jobs still run for it (its own scan plus one per child directory).
    parent: _Frame | None = None
    pending: int = 0


@dataclass
class _Outcome:
    """Per-root result of one pass."""

    retry: bool = False  # a retryable failure: another pass may succeed
    silly: list[str] = field(default_factory=list)  # held-open silly-renamed names
    error: bool = False
    mount: bool = False
    protected: bool = False  # `last` entries remain
    last_retry_error: str = ""

    @property
    def clean(self) -> bool:
        return not (self.retry or self.silly or self.error or self.mount or self.protected)

    def again(self, path: str, why: str) -> None:
        """A retryable failure at ``path``: another pass may succeed."""
        self.retry = True
        self.last_retry_error = f"{path}: {why}"


class _Run:
    def __init__(self, budget: float, workers: int | None, *, defer: bool = True) -> None:
        self.start = time.monotonic()
        self.deadline = self.start + max(0.0, budget)
        self.workers = workers
        self.defer = defer
        self.removed = 0
        self.retries = 0
        self.errors: list[RemoveFailure] = []
        self.mounts: list[str] = []
        self.deferred: list[Deferred] = []
        self._pool: _Workers | None = None
        self._lock = threading.RLock()
        self.opened: list[_Root] = []
        self._workers_by_dev: dict[int, int] = {}
        # Parent directories, shared by roots in one directory: (fd, statx, real path).
        self.parent_fds: dict[str, tuple[int, StatxResult, str]] = {}
        self._hook = unlink_hook

    # bookkeeping ---------------------------------------------------------

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def close(self) -> None:
        self._close_pool()
        for fd, _st, _real in self.parent_fds.values():
            os.close(fd)
        self.parent_fds.clear()
        for r in self.opened:
            r.parent_fd = -1

    def report(self) -> RemoveReport:
        return RemoveReport(
            removed=self.removed,
            retries=self.retries,
            deferred=tuple(self.deferred),
            errors=tuple(self.errors),
            mounts_skipped=tuple(dict.fromkeys(self.mounts)),
            seconds=time.monotonic() - self.start,
        )

    def fail(self, out: _Outcome, path: str, exc: OSError, what: str) -> None:
        out.error = True
        code = exc.errno or 0
        with self._lock:
            self.errors.append(RemoveFailure(path, code, f"{what}: {_why(code)}"))

    def _count(self, n: int = 1) -> None:
        with self._lock:
            self.removed += n
        if self._hook is not None:
            self._hook(self.removed)

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
        try:
            mode = os.fstat(fd).st_mode
            want = stat.S_IMODE(mode) | stat.S_IRWXU
            if want == stat.S_IMODE(mode):
                return False
            os.chmod(fd, want)
        except OSError:
            return False
        return True

    def unlink(
        self,
        fd: int,
        path: str,
        name: str,
        out: _Outcome,
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
            if code in REMOVE_GONE:
                return True
            if code in REMOVE_IS_DIR:
                # It is (now) a directory: swapped mid-walk; the next pass walks it.
                out.again(os.path.join(path, name), "became a directory")
                return False
            if code in REMOVE_PERMISSION and not fixed:
                fixed = True
                if self._make_writable(fd):
                    continue
            if code in REMOVE_RETRY:
                if _is_silly(name):
                    out.silly.append(os.path.join(path, name))
                else:
                    out.again(os.path.join(path, name), _why(code))
                    self._retried()
                return False
            self.fail(out, os.path.join(path, name), exc, "cannot unlink")
            return False

    def rmdir(
        self, fd: int, path: str, name: str, out: _Outcome, *, fix_perms: bool = True
    ) -> bool:
        full = os.path.join(path, name)
        fixed = not fix_perms
        while True:
            try:
                os.rmdir(name, dir_fd=fd)
            except OSError as e:
                code = e.errno
                if code in REMOVE_GONE:
                    return True
                if code in REMOVE_PERMISSION and not fixed:
                    fixed = True
                    if self._make_writable(fd):
                        continue
                if code == errno.EBUSY and self._is_mount(fd, name):
                    out.mount = True
                    self.mounts.append(full)
                    return False
                if code in REMOVE_RETRY:
                    left = self._listing(fd, name)
                    if left and all(_is_silly(n) for n in left):
                        out.silly.extend(os.path.join(full, n) for n in left)
                    else:
                        out.again(full, _why(code))
                        self._retried()
                    return False
                if code in REMOVE_SWAPPED:
                    out.again(full, "swapped for a non-directory")  # next pass unlinks it
                    return False
                self.fail(out, full, e, "cannot remove directory")
                return False
            self._count()
            return True

    def _listing(self, fd: int, name: str) -> list[str]:
        try:
            sub = os.open(name, _O_DIR, dir_fd=fd)
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

    def open_subdir(self, fr: _Frame, name: str, root: StatxResult, out: _Outcome) -> int | None:
        """Open ``name`` under ``fr`` for walking, or deal with it and return None."""
        full = os.path.join(fr.path, name)
        try:
            st = statx(fr.fd, name)
        except OSError as e:
            if e.errno in REMOVE_GONE:
                return None
            fr.blocked = True
            self.fail(out, full, e, "cannot stat")
            return None
        if not stat.S_ISDIR(st.mode):
            # d_type said directory but it is not (any more): a swap; unlink, never follow.
            if not self.unlink(fr.fd, fr.path, name, out):
                fr.blocked = True
            return None
        if (
            st.dev != root.dev
            or (st.mnt_id is not None and root.mnt_id is not None and st.mnt_id != root.mnt_id)
            or st.mount_root
        ):
            fr.blocked = True
            out.mount = True
            self.mounts.append(full)
            return None
        fixed = False
        while True:
            try:
                fd = os.open(name, _O_DIR, dir_fd=fr.fd)
                break
            except OSError as e:
                if e.errno in REMOVE_GONE:
                    return None
                if e.errno in REMOVE_SWAPPED:
                    # Became a symlink (O_NOFOLLOW: ELOOP) or a file (ENOTDIR): remove the
                    # link itself next pass; its target is outside the walk and untouched.
                    out.again(full, "swapped for a non-directory")
                    fr.blocked = True
                    return None
                if e.errno in REMOVE_PERMISSION and not fixed:
                    fixed = True
                    if _chmod_nofollow_dir(fr.fd, name):
                        continue
                fr.blocked = True
                self.fail(out, full, e, "cannot open directory")
                return None
        try:
            fst = os.fstat(fd)
        except OSError as e:
            os.close(fd)
            fr.blocked = True
            self.fail(out, full, e, "cannot stat")
            return None
        if (fst.st_dev, fst.st_ino) != (st.dev, st.ino):
            os.close(fd)  # replaced between the stat and the open: look again next pass
            fr.blocked = True
            out.again(full, "replaced while opening")
            return None
        return fd

    def scan(self, fr: _Frame, out: _Outcome) -> list[str]:
        """List ``fr``: its non-directories are returned, its directories queued."""
        try:
            with os.scandir(fr.fd) as it:
                entries = list(it)
        except OSError as e:
            fr.blocked = True
            if e.errno in REMOVE_PERMISSION and self._make_writable(fr.fd):
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

    def unlink_files(self, fr: _Frame, files: list[str], out: _Outcome) -> None:
        """Unlink ``files`` (non-directories of ``fr``), one after another."""
        if not files:
            return
        if self._hook is not None:  # one file at a time, so the hook sees each
            for name in files:
                if not self.unlink(fr.fd, fr.path, name, out):
                    fr.blocked = True
            return
        # The hot loop: one unlinkat per file, the slow path only on an error.
        fd = fr.fd
        unlink = os.unlink
        gone = 0
        for name in files:
            try:
                unlink(name, dir_fd=fd)
            except OSError as e:
                if not self.unlink(fd, fr.path, name, out, e):
                    fr.blocked = True
            else:
                gone += 1
                if name[0] == "." and _is_silly(name):
                    gone -= 1
        if gone:
            self._count(gone)

    def _get_pool(self, workers: int) -> _Workers:
        if self._pool is None or self._pool.size < workers:
            self._close_pool()
            self._pool = _Workers(workers)
        return self._pool

    def clear_tree(
        self, top_fd: int, top_path: str, prot: _Protect, root: StatxResult, out: _Outcome
    ) -> bool:
        """Empty the directory open at ``top_fd``; True if it is now empty."""
        workers = self._workers_for(top_fd)
        if workers > 1:
            walk = _ParallelWalk(self, self._get_pool(workers), root, out)
            return walk.clear(top_fd, top_path, prot)
        # Serial; on a local disk a big tree is handed to the parallel walk after a
        # while (threads do not pay for a small one).
        later = _local_workers() if self.workers is None else 1
        return self.serial_clear(top_fd, top_path, prot, root, out, _MAX_FDS, later)

    def serial_clear(
        self,
        top_fd: int,
        top_path: str,
        prot: _Protect,
        root: StatxResult,
        out: _Outcome,
        max_fds: int,
        later: int = 1,
    ) -> bool:
        """Empty the directory open at ``top_fd`` depth first, in a loop, holding at
        most ``max_fds`` directory fds (besides ``top_fd``) at any depth: deeper, the
        oldest open frame is closed and reached again from its child through ``..``,
        checked by ``(st_dev, st_ino)``; a directory moved away mid-walk stops the walk
        (an error) instead of leading elsewhere.  ``later > 1``: after
        ``_LOCAL_SERIAL_DIRS`` directories, hand the rest to that many threads."""
        serial_dirs = _LOCAL_SERIAL_DIRS
        top_st = os.fstat(top_fd)
        top = _Frame(top_fd, top_path, prot, ident=(top_st.st_dev, top_st.st_ino))
        self.unlink_files(top, self.scan(top, out), out)
        stack = [top]
        opened = 0  # open fds in stack, top excluded
        closed = 0  # frames in stack whose fd was closed to stay within max_fds
        try:
            while stack:
                fr = stack[-1]
                if fr.subdirs:
                    if serial_dirs <= 0 and later > 1 and not closed:
                        walk = _ParallelWalk(self, self._get_pool(later), root, out)
                        handed, stack = stack, []  # its fds are the walk's to close now
                        return walk.adopt(handed)
                    serial_dirs -= 1
                    name = fr.subdirs.pop()
                    fd = self.open_subdir(fr, name, root, out)
                    if fd is None:
                        continue
                    fst = os.fstat(fd)
                    node = fr.prot.children.get(name, _EMPTY_PROTECT)
                    child = _Frame(
                        fd,
                        os.path.join(fr.path, name),
                        node,
                        ident=(fst.st_dev, fst.st_ino),
                        depth=fr.depth + 1,
                    )
                    stack.append(child)
                    opened += 1
                    if opened > max_fds:
                        old = next(f for f in stack[1:] if f.fd >= 0)
                        os.close(old.fd)
                        old.fd = -1
                        opened -= 1
                        closed += 1
                    self.unlink_files(child, self.scan(child, out), out)
                    continue
                stack.pop()
                if fr is top:
                    return not fr.blocked
                parent = stack[-1]
                if parent.fd < 0:
                    try:
                        pfd = os.open("..", _O_DIR, dir_fd=fr.fd)
                    except OSError as e:
                        self.fail(out, parent.path, e, "cannot reopen directory")
                        return False
                    pst = os.fstat(pfd)
                    if (pst.st_dev, pst.st_ino) != parent.ident:
                        os.close(pfd)
                        self.fail(
                            out,
                            parent.path,
                            OSError(errno.ESTALE, "moved"),
                            "moved during removal, walk stopped",
                        )
                        return False
                    parent.fd = pfd
                    opened += 1
                    closed -= 1
                os.close(fr.fd)
                fr.fd = -1
                opened -= 1
                if fr.blocked or not self.rmdir(
                    parent.fd, parent.path, os.path.basename(fr.path), out
                ):
                    parent.blocked = True
            return not top.blocked
        finally:
            for fr in stack:
                if fr is not top and fr.fd >= 0:
                    os.close(fr.fd)


class _Workers:
    """Worker threads serving a stack of jobs, newest first.

    Newest first: the subdirectories a job submits are taken before their
    parent's siblings, so the walk goes deep first and only about ``size`` times
    the tree's depth directories are open at a time (a queue would open a whole
    level of a wide tree at once).  Threads start as jobs wait for them; where no
    more can start (``ulimit -u``, a container's pids limit) the pool goes on with
    the threads it has, and the caller works jobs too while it waits
    (:meth:`work_until`), so even a pool without a single thread finishes.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._cv = threading.Condition(threading.Lock())
        self._jobs: list[Callable[[], object]] = []
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False

    def submit(self, job: Callable[[], object]) -> None:
        with self._cv:
            if self._closed:
                raise RuntimeError("the worker pool is shut down")
            if len(self._jobs) >= self._idle and len(self._threads) < self.size:
                t = threading.Thread(
                    target=self._work, name=f"linkstrategy-rm-{len(self._threads)}", daemon=True
                )
                try:
                    t.start()
                except RuntimeError:  # cannot start a thread: go on with fewer
                    self.size = len(self._threads)
                    log.debug("remove: cannot start more threads; %d work", self.size)
                else:
                    self._threads.append(t)
            self._jobs.append(job)
            self._cv.notify()

    def _work(self) -> None:
        cv = self._cv
        jobs = self._jobs
        while True:
            with cv:
                while not jobs:
                    if self._closed:
                        return
                    self._idle += 1
                    cv.wait()
                    self._idle -= 1
                job = jobs.pop()
            try:
                job()
            except BaseException:  # jobs report their own failures; keep the thread
                log.debug("remove worker job failed", exc_info=True)

    def work_until(self, done: threading.Event) -> None:
        """Work jobs in the calling thread until ``done`` is set (see :meth:`wake`)."""
        cv = self._cv
        jobs = self._jobs
        while True:
            with cv:
                while not jobs and not done.is_set():
                    cv.wait()
                if done.is_set():
                    return
                job = jobs.pop()
            try:
                job()
            except BaseException:  # jobs report their own failures
                log.debug("remove job failed", exc_info=True)

    def wake(self) -> None:
        """Wake :meth:`work_until` callers to look at their event again."""
        with self._cv:
            self._cv.notify_all()

    def shutdown(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        for t in self._threads:
            t.join()
        self._threads.clear()


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
    """

    def __init__(self, run: _Run, pool: _Workers, root: StatxResult, out: _Outcome) -> None:
        self.run = run
        self.pool = pool
        self.root = root
        self.out = out
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.cancelled = False  # after an unexpected exception: wind down, touch nothing
        self.exc: BaseException | None = None

    def clear(self, top_fd: int, top_path: str, prot: _Protect) -> bool:
        top = _Frame(top_fd, top_path, prot, pending=1)
        try:
            self.scan(top)  # the top in this thread; its subdirectories in the pool
            self.pool.work_until(self.done)
        except BaseException:
            self.cancelled = True
            self.pool.work_until(self.done)  # never return while a job may use an fd
            raise
        if self.exc is not None:
            raise self.exc
        return not top.blocked

    def failed(self, exc: BaseException, fr: _Frame) -> None:
        with self.lock:
            if self.exc is None:
                self.exc = exc
            self.cancelled = True
        fr.blocked = True

    def adopt(self, stack: list[_Frame]) -> bool:
        """Take over a serial walk: ``stack`` (top first) is open, its files are gone."""
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
            self.pool.work_until(self.done)
        except BaseException:
            self.cancelled = True
            while left:
                left -= 1
                self.release(stack[left])
            self.pool.work_until(self.done)  # never return while a job may use an fd
            raise
        if self.exc is not None:
            raise self.exc
        return not stack[0].blocked

    def submit_subdirs(self, fr: _Frame) -> None:
        subdirs, fr.subdirs = fr.subdirs, []
        if not subdirs:
            return
        with self.lock:
            fr.pending += len(subdirs)
        for i, name in enumerate(subdirs):
            try:
                self.pool.submit(functools.partial(self.subdir, fr, name))
            except BaseException:
                with self.lock:
                    fr.pending -= len(subdirs) - i
                raise

    def scan(self, fr: _Frame) -> None:
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

    def subdir(self, parent: _Frame, name: str) -> None:
        """Job: open ``name`` in ``parent`` and empty it."""
        child: _Frame | None = None
        try:
            if not self.cancelled:
                fd = self.run.open_subdir(parent, name, self.root, self.out)
                if fd is not None:
                    node = parent.prot.children.get(name, _EMPTY_PROTECT)
                    path = os.path.join(parent.path, name)
                    if parent.depth + 1 >= _PARALLEL_DEPTH:
                        self.deep(parent, name, fd, path, node)
                    else:
                        child = _Frame(
                            fd, path, node, parent=parent, pending=1, depth=parent.depth + 1
                        )
        except BaseException as e:
            self.failed(e, parent)
        if child is None:
            self.release(parent)
        else:
            self.scan(child)

    def deep(self, parent: _Frame, name: str, fd: int, path: str, node: _Protect) -> None:
        """Empty and rmdir a subtree below the parallel depth with a serial walk in this
        job (bounded fds whatever its depth)."""
        try:
            ok = self.run.serial_clear(fd, path, node, self.root, self.out, _DEEP_FDS)
        finally:
            os.close(fd)
        if not ok or self.cancelled or not self.run.rmdir(parent.fd, parent.path, name, self.out):
            parent.blocked = True

    def release(self, fr: _Frame) -> None:
        """One job for ``fr`` is done; the last one finishes it (and maybe its parents)."""
        while True:
            with self.lock:
                fr.pending -= 1
                if fr.pending > 0:
                    return
            parent = fr.parent
            if parent is None:  # the top: its fd and its rmdir belong to the caller
                self.done.set()
                self.pool.wake()
                return
            try:
                os.close(fr.fd)
                if (
                    fr.blocked
                    or self.cancelled
                    or not self.run.rmdir(
                        parent.fd, parent.path, os.path.basename(fr.path), self.out
                    )
                ):
                    parent.blocked = True
            except BaseException as e:
                self.failed(e, parent)
            fr = parent


def _chmod_nofollow_dir(dir_fd: int, name: str) -> bool:
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
    if not override and _fs_magic(fd) in _LOCAL_MAGIC:
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


# -- roots, refusals -------------------------------------------------------------


@dataclass
class _Root:
    path: str  # as reported: the real path of the parent + name (set when opened)
    parent: str  # as given (opened as the kernel resolves it), then its real path
    name: str  # the last component, never "", "." or ".."
    prot: _Protect = field(default_factory=_Protect)
    parent_fd: int = -1  # owned by _Run.parent_fds (or by the caller, when preset)
    parent_st: StatxResult | None = None
    st: StatxResult | None = None  # None: does not exist
    outcome: _Outcome = field(default_factory=_Outcome)
    done: bool = False
    # Open the parent beneath this directory fd, never following a symlink (a
    # `last` entry below a root): (fd, relative path).
    anchor: tuple[int, str] | None = None
    strict: bool = False  # gc: act only on the inode in `st`; anything else stays


def _split(p: StrPath) -> tuple[str, str]:
    """``(parent, name)`` of a path argument, refusing what ``rm`` refuses.

    Nothing is normalised: the parent is opened later exactly as the kernel
    resolves it (``keep/link/..`` means the parent of ``link``'s target), and the
    last component is acted on relative to that directory's fd.
    """
    s = os.fspath(p)
    if not s:
        raise RemoveError(errno.ENOENT, "refusing to remove an empty path", s)
    stripped = s.rstrip("/")
    if not stripped:
        raise RemoveError(errno.EPERM, "refusing to remove the root directory", s)
    parent, name = os.path.split(stripped)
    if name in (".", ".."):
        raise RemoveError(errno.EINVAL, "refusing to remove '.' or '..'", s)
    return parent or ".", name


def _root_for(p: StrPath) -> _Root:
    parent, name = _split(p)
    return _Root(os.path.join(parent, name), parent, name)


def _protected() -> dict[tuple[int, int], str]:
    """``(st_dev, st_ino)`` of the directories never removed: ``/``, the home
    directory and its ancestors.  By identity, not by name: a path through a
    symlink, a bind mount or ``..`` still names the same inode."""
    out: dict[tuple[int, int], str] = {}
    try:
        home = os.path.expanduser("~")
    except Exception:
        home = "~"
    if home and home != "~":
        p = os.path.realpath(home)
        what = "the home directory"
        while True:
            with contextlib.suppress(OSError):
                st = os.stat(p)
                out.setdefault((st.st_dev, st.st_ino), what)
            up = os.path.dirname(p)
            if up == p:
                break
            p, what = up, "an ancestor of the home directory"
    with contextlib.suppress(OSError):
        st = os.stat("/")
        out[(st.st_dev, st.st_ino)] = "the root directory"
    return out


def _refuse(root: _Root, protected: dict[tuple[int, int], str]) -> None:
    st = root.st
    if st is None:
        return
    what = protected.get((st.dev, st.ino)) if stat.S_ISDIR(st.mode) else None
    if what is not None:
        raise RemoveError(errno.EPERM, f"refusing to remove {what}", root.path)
    pst = root.parent_st
    if pst is None:
        return
    if st.mount_root or (
        st.mnt_id is not None and pst.mnt_id is not None and st.mnt_id != pst.mnt_id
    ):
        raise RemoveError(errno.EBUSY, "refusing to remove a mount point", root.path)


# -- public functions -------------------------------------------------------------


def _as_list(paths: StrPath | Iterable[StrPath]) -> list[StrPath]:
    if isinstance(paths, (str, os.PathLike)):
        return [paths]
    return list(paths)


def _check_relative(entry: str) -> list[str]:
    parts = [p for p in entry.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise InvalidArgument(
            errno.EINVAL,
            f"last entry {entry!r} must be a relative path below a root, "
            "without '..', or an absolute path",
            entry,
        )
    return parts


def remove(
    paths: StrPath | Iterable[StrPath] = (),
    *,
    budget: float = 5.0,
    last: Sequence[str] = (),
    workers: int | None = None,
    files: Iterable[str] | None = None,
    root: StrPath | None = None,
    check: bool = False,
) -> RemoveReport:
    """Remove files, symlinks and trees; see the module docstring for the policies.

    ``budget``: total seconds to spend retrying (``0``: one pass, then defer).
    ``last``: entries to remove after everything else, in order (module docstring).
    ``workers``: threads walking each tree (every directory a job); ``None`` picks
    32 on network and FUSE mounts, and locally a serial walk that takes 2 threads
    for a big tree; ``1``: always serial.

    ``files`` with ``root`` (an uninstall from a RECORD): the listed files and
    symlinks, relative to ``root`` (leading ``..`` components, as a RECORD has for
    scripts, are followed up through real directories; any other ``..``, an empty or
    absolute entry, or a directory raises :class:`InvalidArgument`), then the
    directories below ``root`` they leave empty (one still holding something -- a
    namespace directory shared with another package -- stays), then the ``last``
    entries (relative to ``root``: ``["pkg-1.0.dist-info"]``), whose files are left
    for that step even when listed.

    ``check``: raise :class:`RemoveError` for the first error (or a mount left
    inside a tree) instead of only listing it in the report.

    Raises :class:`RemoveError` (nothing touched) when a root is refused; every
    other problem is listed in the returned report.
    """
    run = _Run(budget, workers)
    try:
        if files is not None:
            if root is None or _as_list(paths):
                raise InvalidArgument(errno.EINVAL, "files= goes with root= (and no paths)", "")
            report = _remove_files(run, root, files, last)
        else:
            if root is not None:
                raise InvalidArgument(errno.EINVAL, "root= goes with files=", os.fspath(root))
            report = _remove(run, [_root_for(p) for p in _as_list(paths)], last)
    finally:
        run.close()
    if check and not report.ok:
        if report.errors:
            first = report.errors[0]
            raise RemoveError(first.errno, first.reason, first.path)
        raise RemoveError(errno.EBUSY, "a mount inside was left alone", report.mounts_skipped[0])
    return report


def _record_parts(entry: str) -> tuple[int, list[str]]:
    """(how many leading ``..``, the components after them) of a ``files=`` entry."""
    parts = [p for p in entry.split("/") if p not in ("", ".")]
    ups = 0
    while ups < len(parts) and parts[ups] == "..":
        ups += 1
    rest = parts[ups:]
    if not rest or ".." in rest or entry.startswith("/"):
        raise InvalidArgument(
            errno.EINVAL,
            f"files= entry {entry!r} must be a relative path (leading '..' only)",
            entry,
        )
    return ups, rest


def _remove_files(
    run: _Run, root: StrPath, files: Iterable[str], last: Sequence[str]
) -> RemoveReport:
    """remove(files=..., root=...): see :func:`remove`."""
    try:
        rfd = os.open(os.fspath(root), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise RemoveError(e.errno or 0, f"cannot open root: {_why(e.errno or 0)}", root) from None
    ups_fds: dict[int, int] = {0: rfd}
    try:
        root_real = fd_path(rfd, os.fspath(root))
        last_parts = [_check_relative(x) for x in last]
        skip = {"/".join(p) for p in last_parts}
        roots: list[_Root] = []
        seen: set[str] = set()
        tops = {p[0] for p in last_parts}  # the entries of root this package has
        for entry in files:
            ups, rest = _record_parts(os.fspath(entry))
            if not ups:
                tops.add(rest[0])
            key = "../" * ups + "/".join(rest)
            if key in seen or (not ups and any(key == x or key.startswith(x + "/") for x in skip)):
                continue
            seen.add(key)
            if ups not in ups_fds:  # up through real directories ("..": never a symlink)
                fd = ups_fds[max(ups_fds)]
                for _ in range(ups - max(ups_fds)):
                    fd = os.open("..", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
                ups_fds[ups] = fd
            anchor_fd = ups_fds[ups]
            base = fd_path(anchor_fd, root_real)
            parent_rel = "/".join(rest[:-1])
            parent = os.path.join(base, parent_rel) if parent_rel else base
            roots.append(
                _Root(
                    os.path.join(parent, rest[-1]), parent, rest[-1], anchor=(anchor_fd, parent_rel)
                )
            )
        _settle_upgrade_of_root(rfd, root_real, tops)
        _open_roots(run, roots)
        for r in roots:
            if r.st is not None and stat.S_ISDIR(r.st.mode):
                raise InvalidArgument(
                    errno.EISDIR, "files= entry is a directory (list its files)", r.path
                )
        _passes(run, [r for r in roots if not r.done])
        if run.errors or run.mounts:
            return run.report()  # keep the metadata: some files it lists remain
        _remove_emptied(run, rfd, roots)
        for parts in last_parts:
            sub = _Root(
                os.path.join(root_real, *parts),
                os.path.join(root_real, *parts[:-1]),
                parts[-1],
                anchor=(rfd, "/".join(parts[:-1])),
            )
            try:
                _open_roots(run, [sub])
            except RemoveError as e:
                run.errors.append(RemoveFailure(sub.path, e.errno or 0, str(e.strerror)))
                continue
            if not sub.done:
                _passes(run, [sub])
        return run.report()
    finally:
        for fd in ups_fds.values():
            os.close(fd)


def _settle_upgrade_of_root(rfd: int, root: str, tops: set[str]) -> None:
    """remove(files=...) describes one package by its RECORD: an interrupted upgrade of
    ``root`` that changes its entries is recovered first and then raises (the list may
    be stale), a running one raises; nothing of the package is touched either way."""
    from ._upgrade import settle_before_remove  # lazy: _upgrade imports this module

    try:
        settle_before_remove(rfd, root, tops, strict=True)
    except RemoveError as e:
        if e.errno == errno.EAGAIN:
            raise
        log.warning("%s: %s; removed all the same", e.filename, e.strerror)
    except OSError as e:
        why = f"interrupted or running upgrade() of {root} not recovered: {e.strerror}"
        raise RemoveError(e.errno or errno.EBUSY, why, root) from None


def _remove_emptied(run: _Run, rfd: int, roots: list[_Root]) -> None:
    """rmdir the directories below the root that the removed files left empty, deepest
    first; a directory that still holds anything (or changed meanwhile) stays."""
    dirs: set[str] = set()
    for r in roots:
        if r.anchor is None or r.anchor[0] != rfd or not r.anchor[1]:
            continue  # beside or above the root (scripts): never pruned
        parts = r.anchor[1].split("/")
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    for d in sorted(dirs, key=lambda x: -x.count("/")):
        parent_rel, _, name = d.rpartition("/")
        try:
            pfd = open_beneath(rfd, parent_rel, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            os.rmdir(name, dir_fd=pfd)
        except OSError:
            continue  # not empty (shared), gone, busy: it stays
        else:
            run._count()
        finally:
            os.close(pfd)


def remove_at(
    parent_fd: int, parent: str, name: str, *, budget: float = 5.0, last: Sequence[str] = ()
) -> RemoveReport:
    """:func:`remove` of ``name`` in the directory open at ``parent_fd`` (whose real
    path is ``parent``, for reports): for callers that hold the parent open."""
    if name in ("", ".", "..") or "/" in name:
        raise RemoveError(errno.EINVAL, "refusing to remove '.' or '..'", name)
    run = _Run(budget, None)
    r = _Root(os.path.join(parent, name), parent, name)
    r.parent_fd = parent_fd
    try:
        r.parent_st = statx(parent_fd, "")
        return _remove(run, [r], last)
    finally:
        run.close()


def _open_parent(run: _Run, r: _Root) -> bool:
    """Open ``r``'s parent (cached per run); False when it does not exist."""
    key = r.parent if r.anchor is None else f"{r.anchor[0]}:{r.anchor[1]}"
    cached = run.parent_fds.get(key)
    if cached is None:
        try:
            if r.anchor is None:
                fd = os.open(r.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            else:
                fd = open_beneath(r.anchor[0], r.anchor[1], os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            if e.errno in REMOVE_GONE or e.errno == errno.ENOTDIR:
                return False  # missing path: not an error
            raise RemoveError(
                e.errno or 0, f"cannot open parent directory: {_why(e.errno or 0)}", r.path
            ) from None
        try:
            cached = (fd, statx(fd, ""), fd_path(fd, r.parent))
        except OSError as e:
            os.close(fd)
            raise RemoveError(e.errno or 0, f"cannot stat: {e.strerror}", r.parent) from None
        run.parent_fds[key] = cached
    r.parent_fd, r.parent_st, r.parent = cached
    r.path = os.path.join(r.parent, r.name)
    return True


def _open_roots(run: _Run, roots: list[_Root]) -> None:
    protected = _protected()
    for r in roots:
        if r.parent_fd < 0 and not _open_parent(run, r):
            r.done = True
            continue
        run.opened.append(r)
        try:
            r.st = statx(r.parent_fd, r.name)
        except OSError as e:
            if e.errno not in REMOVE_GONE:
                raise RemoveError(e.errno or 0, f"cannot stat: {e.strerror}", r.path) from None
            r.st = None
        _refuse(r, protected)
        if r.st is None:
            r.done = True


def _plan_last(
    run: _Run, roots: list[_Root], last: Sequence[str]
) -> list[_Root | tuple[_Root, list[str]]]:
    """Protect the `last` entries from phase 1; the phase-2 work list, in order."""
    phase2: list[_Root | tuple[_Root, list[str]]] = []
    by_path = {r.path: r for r in roots}
    for entry in last:
        if os.path.isabs(entry):
            ep, en = _split(entry)
            p = os.path.join(os.path.realpath(ep), en)
            hit = by_path.get(p)
            if hit is not None:
                hit.prot.leaf = True
                phase2.append(hit)
                continue
            owner = next((r for r in roots if p.startswith(r.path.rstrip("/") + "/")), None)
            if owner is None:
                extra = _root_for(entry)
                _open_roots(run, [extra])
                by_path[p] = extra
                phase2.append(extra)
                continue
            parts = _check_relative(os.path.relpath(p, owner.path))
            owner.prot.add(parts)
            phase2.append((owner, parts))
        else:
            parts = _check_relative(entry)
            for r in roots:
                if r.st is not None and stat.S_ISDIR(r.st.mode):
                    r.prot.add(parts)
                    phase2.append((r, parts))
    return phase2


_LIST_PARENT_AT = 8  # this many roots in one directory: list it once instead of lstat each


def _journal_candidates(roots: list[_Root]) -> list[_Root]:
    """Roots that may have a replace() journal next to them.

    One ``lstat`` per root (done by recover_for) for a few roots; for many roots in
    one directory (a RECORD's files), one listing of that directory instead: on
    NFS every lookup is a round trip.
    """
    by_parent: dict[str, list[_Root]] = {}
    for r in roots:
        by_parent.setdefault(r.parent, []).append(r)
    out: list[_Root] = []
    for group in by_parent.values():
        if len(group) < _LIST_PARENT_AT:
            out.extend(group)
            continue
        try:
            names = {n for n in os.listdir(group[0].parent_fd) if n.endswith(".linkstrategy-txn")}
        except OSError:
            out.extend(group)
            continue
        if names:
            from ._txn import journal_name

            out.extend(r for r in group if journal_name(r.name) in names)
    return out


def _remove(run: _Run, roots: list[_Root], last: Sequence[str]) -> RemoveReport:
    # Refusals first, for every root and `last` entry, before anything is touched.
    _open_roots(run, roots)
    phase2 = _plan_last(run, roots, last)

    seen: set[int] = set()
    for r in run.opened:
        if r.parent_fd not in seen:
            seen.add(r.parent_fd)
            _collect_trash_at(r.parent_fd, r.parent, 5.0)
    # Finish or undo a replace() that was interrupted on any of these paths.
    from ._txn import recover_at  # lazy: _txn imports this module

    for r in _journal_candidates(run.opened):
        try:
            if not recover_at(r.parent_fd, r.parent, r.name):
                continue
        except RemoveError as e:
            # Not ours to act on (another user's, or not made for this name): the
            # journal is left alone and the root removed like any other.
            log.warning("%s: %s; %s is removed all the same", e.filename, e.strerror, r.path)
            continue
        except OSError as e:
            run.errors.append(
                RemoveFailure(r.path, e.errno or 0, f"interrupted replace() not recovered: {e}")
            )
            r.done = True
            continue
        try:
            r.st = statx(r.parent_fd, r.name)
            r.done = False
        except OSError:
            r.st = None
            r.done = True

    _settle_upgrades(run, run.opened, strict=bool(last))

    # Phase 1: everything but the `last` entries.
    _passes(run, [r for r in roots if not r.done and not r.prot.leaf])
    if run.errors or run.mounts:
        return run.report()  # keep the metadata: some files it lists remain
    # Phase 2: the `last` entries, in order.
    for item in phase2:
        if isinstance(item, _Root):
            item.prot = _Protect()
            _passes(run, [item])
            continue
        owner, parts = item
        path = os.path.join(owner.path, *parts)
        # Opened beneath the root, never through a symlink inside the tree.
        anchor = (owner.parent_fd, "/".join([owner.name, *parts[:-1]]))
        sub = _Root(path, os.path.dirname(path), parts[-1], anchor=anchor)
        try:
            _open_roots(run, [sub])
        except RemoveError as e:
            run.errors.append(RemoveFailure(sub.path, e.errno or 0, str(e.strerror)))
            continue
        _passes(run, [sub])
    # Phase 3: the directories that held the `last` entries.
    rest = [r for r in roots if not r.done and r.prot.children]
    for r in rest:
        r.prot = _Protect()
    _passes(run, rest)
    return run.report()


def _settle_upgrades(run: _Run, roots: list[_Root], *, strict: bool) -> None:
    """Finish or undo, first, an interrupted upgrade() of a directory that changes any
    of ``roots`` (see :func:`._upgrade.settle_before_remove`): removing an entry and
    recovering later would bring it back from the journal.  One lstat per directory.
    A live upgrade of an entry, or one that cannot be recovered, fails that entry
    (raises, when ``strict``); another user's journal is left alone."""
    from ._upgrade import pending_names, settle_before_remove  # lazy: _upgrade imports us

    groups: dict[int, list[_Root]] = {}
    for r in roots:
        if not r.done or r.st is None:  # absent now: a recovery may bring it back
            groups.setdefault(r.parent_fd, []).append(r)
    for pfd, group in groups.items():
        parent = group[0].parent
        try:
            if not settle_before_remove(pfd, parent, {r.name for r in group}, strict=strict):
                continue
        except RemoveError as e:
            if e.errno == errno.EAGAIN:
                raise
            log.warning("%s: %s; removed all the same", e.filename, e.strerror)
            continue
        except OSError as e:
            why = f"interrupted or running upgrade() of {parent} not recovered: {e.strerror}"
            if strict:
                raise RemoveError(e.errno or errno.EBUSY, why, parent) from None
            pending = pending_names(pfd)
            for r in group:
                if pending is None or r.name in pending[1]:
                    run.errors.append(RemoveFailure(r.path, e.errno or 0, why))
                    r.done = True
            continue
        for r in group:
            try:
                r.st = statx(r.parent_fd, r.name)
                r.done = False
            except OSError:
                r.st = None
                r.done = True


def _passes(run: _Run, roots: list[_Root]) -> None:
    """Remove ``roots`` in passes with backoff until done, out of budget, or stuck."""
    delay = _BACKOFF_START
    pending = [r for r in roots if not r.done]
    while pending:
        for r in pending:
            r.outcome = _Outcome()
            _one_pass(run, r)
        retry = [r for r in pending if not r.done and r.outcome.retry]
        if not retry:
            break
        now = time.monotonic()
        if now >= run.deadline:
            break
        time.sleep(min(delay, run.deadline - now))
        delay = min(delay * 2, _BACKOFF_MAX)
        pending = retry
    for r in roots:
        o = r.outcome
        if r.done or o.error or o.mount or o.protected or not run.defer:
            continue
        if o.retry or o.silly:
            reason = (
                f"held open (silly-renamed): {', '.join(o.silly[:3])}"
                if o.silly and not o.retry
                else f"still busy after {run.deadline - run.start:.3g} s budget: "
                f"{o.last_retry_error}"
            )
            try:
                trash = move_to_trash(r.parent_fd, r.parent, r.name)
            except FileNotFoundError:
                r.done = True
                continue
            except OSError as e:
                run.errors.append(
                    RemoveFailure(
                        r.path,
                        e.errno or 0,
                        f"could not remove ({reason}) nor move to trash: "
                        f"{os.strerror(e.errno or 0)}",
                    )
                )
                continue
            log.info("deferred %s to %s (%s)", r.path, trash, reason)
            run.deferred.append(Deferred(r.path, trash, reason))
            r.done = True


def _one_pass(run: _Run, r: _Root) -> None:
    out = r.outcome
    try:
        st = statx(r.parent_fd, r.name)
    except OSError as e:
        if e.errno in REMOVE_GONE:
            r.done = True
        else:
            run.fail(out, r.path, e, "cannot stat")
        return
    if r.strict and r.st is not None and (st.dev, st.ino) != (r.st.dev, r.st.ino):
        r.done = True  # gc: no longer the entry judged dead; whatever is there now stays
        return
    if not stat.S_ISDIR(st.mode):
        if run.unlink(r.parent_fd, r.parent, r.name, out, fix_perms=False):
            r.done = True
        return
    if r.st is not None and st.ino != r.st.ino:
        r.st = st  # replaced since we looked: walk whatever directory is there now
    try:
        fd = os.open(r.name, _O_DIR, dir_fd=r.parent_fd)
    except OSError as e:
        if e.errno in REMOVE_GONE:
            r.done = True
        elif e.errno in REMOVE_SWAPPED:
            out.again(r.path, "swapped for a non-directory")
        elif e.errno in REMOVE_PERMISSION and _chmod_nofollow_dir(r.parent_fd, r.name):
            out.again(r.path, "made readable")
            run.retries += 1
        else:
            run.fail(out, r.path, e, "cannot open directory")
        return
    try:
        fst = os.fstat(fd)
        if (fst.st_dev, fst.st_ino) != (st.dev, st.ino):
            out.again(r.path, "replaced while opening")
            return
        if not run.clear_tree(fd, r.path, r.prot, st, out):
            return
    finally:
        os.close(fd)
    if run.rmdir(r.parent_fd, r.parent, r.name, out, fix_perms=False):
        r.done = True


# -- trash collection and gc --------------------------------------------------------


def _entry_root(run: _Run, dir_fd: int, dir_path: str, name: str, *, strict: bool) -> _Root | None:
    """A root for the entry ``name`` of a directory we hold open (trash, gc)."""
    r = _Root(os.path.join(dir_path, name), dir_path, name, strict=strict)
    r.parent_fd = dir_fd
    try:
        r.parent_st = statx(dir_fd, "")
        r.st = statx(dir_fd, name)
    except OSError as e:
        if e.errno not in REMOVE_GONE:
            run.errors.append(
                RemoveFailure(r.path, e.errno or 0, f"cannot stat: {_why(e.errno or 0)}")
            )
        return None
    try:
        _refuse(r, {})
    except RemoveError as e:
        run.errors.append(RemoveFailure(r.path, e.errno or 0, str(e.strerror)))
        return None
    return r


def _rmdir_busy(run: _Run, dir_fd: int, name: str, path: str, ident: tuple[int, int]) -> bool:
    """rmdir an emptied directory of ours, retrying busy errors within the budget."""
    delay = _BACKOFF_START
    while True:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if (st.st_dev, st.st_ino) != ident:
                return False  # replaced meanwhile: not ours to remove
            os.rmdir(name, dir_fd=dir_fd)
            run._count()
            return True
        except OSError as e:
            code = e.errno or 0
            if code in REMOVE_GONE:
                return True
            if code == errno.EBUSY:
                now = time.monotonic()
                if now + delay <= run.deadline:
                    run._retried()
                    time.sleep(delay)
                    delay = min(delay * 2, _BACKOFF_MAX)
                    continue
            if code in REMOVE_RETRY and code != errno.EBUSY:
                return False  # refilled meanwhile
            run.errors.append(RemoveFailure(path, code, f"cannot remove directory: {_why(code)}"))
            return False


def _empty_trash(
    run: _Run, parent_fd: int, name: str, trash_fd: int, trash: str, min_age: float
) -> None:
    """Remove entries older than ``min_age`` from the trash directory open at
    ``trash_fd`` (``name`` in ``parent_fd``), then the trash directory if empty."""
    try:
        names = os.listdir(trash_fd)
        tst = os.fstat(trash_fd)
    except OSError as e:
        if e.errno not in REMOVE_GONE:
            run.errors.append(RemoveFailure(trash, e.errno or 0, "cannot list trash"))
        return
    now = time.time()
    old = [n for n in names if trash_age(n, now) >= min_age]
    roots = [r for n in old if (r := _entry_root(run, trash_fd, trash, n, strict=False))]
    _passes(run, roots)
    for r in roots:
        if not r.done and not r.outcome.error and (r.outcome.silly or r.outcome.retry):
            reason = "still held open" if r.outcome.silly else "still busy"
            run.deferred.append(Deferred(r.path, r.path, reason))
    ident = (tst.st_dev, tst.st_ino)
    if (
        len(old) == len(names)
        and all(r.done for r in roots)
        and _rmdir_busy(run, parent_fd, name, trash, ident)
    ):
        forget(trash)


def _collect_trash_at(dir_fd: int, directory: str, min_age: float) -> None:
    """collect_trash() for a directory we hold open."""
    candidates: list[tuple[int, int, str, str]] = []  # (parent fd, trash fd, name, path)
    try:
        name = trash_name_for(os.fstat(dir_fd))
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            tpath = os.path.join(directory, name)
            candidates.append((-1, open_trash(dir_fd, name, tpath), name, tpath))
        for k in known_on(os.fstat(dir_fd).st_dev):
            if k.path != os.path.join(directory, name):
                fds = reopen_known(k)
                if fds is not None:
                    candidates.append((fds[0], fds[1], os.path.basename(k.path), k.path))
    except OSError:
        log.debug("collecting trash for %s failed", directory, exc_info=True)
    if not candidates:
        return
    run = _Run(0.0, None, defer=False)
    try:
        for pfd, tfd, name, tpath in candidates:
            _empty_trash(run, dir_fd if pfd < 0 else pfd, name, tfd, tpath, min_age)
    except Exception:  # opportunistic; the caller's operation matters more
        log.debug("collecting trash for %s failed", directory, exc_info=True)
    finally:
        run.close()
        for pfd, tfd, _n, _p in candidates:
            os.close(tfd)
            if pfd >= 0:
                os.close(pfd)


def collect_trash(directory: StrPath, *, min_age: float = 5.0) -> None:
    """Empty stale linkstrategy trash of the caller's kept for ``directory`` (cheap
    when there is none: one ``stat`` and one ``lstat``).

    Looks at the caller's trash in ``directory`` (:mod:`._trash`) and at trash
    directories this process made on the same filesystem (re-opened and checked by
    inode).  Busy entries are tried once and left; never raises.
    """
    d = os.fspath(directory)
    try:
        name = trash_name_for(os.stat(d))
        if not stat.S_ISDIR(os.lstat(os.path.join(d, name)).st_mode):
            return
    except OSError:
        return
    try:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        _collect_trash_at(fd, fd_path(fd, d), min_age)
    finally:
        os.close(fd)


class _Gc:
    """One gc() call: what it found and did."""

    def __init__(self, run: _Run, min_age: float) -> None:
        self.run = run
        self.min_age = min_age
        self.foreign: list[str] = []

    def leave(self, path: str, why: str) -> None:
        log.info("gc: left alone %s: %s", path, why)  # in the report; the CLI prints it
        self.foreign.append(f"{path}: {why}")

    def trash(self, dir_fd: int, dir_path: str, name: str) -> None:
        path = os.path.join(dir_path, name)
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            return
        if not stat.S_ISDIR(st.st_mode):
            self.leave(path, "named like a trash directory but not a directory")
            return
        if not may_act(dir_fd, st):
            self.leave(
                path, f"belongs to uid {st.st_uid}, neither the caller nor the directory's owner"
            )
            return
        try:
            tfd = open_trash(dir_fd, name, path, uid=st.st_uid)
        except OSError as e:
            self.leave(path, f"cannot open: {_why(e.errno or 0)}")
            return
        try:
            fst = os.fstat(tfd)
            if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
                self.leave(path, "replaced while opening")
                return
            _empty_trash(self.run, dir_fd, name, tfd, path, self.min_age)
        finally:
            os.close(tfd)

    def temporary(self, dir_fd: int, dir_path: str, name: str) -> None:
        """A temporary of place(), staging or the probe: removed when its maker is gone."""
        path = os.path.join(dir_path, name)
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            return
        verdict = judge(dir_fd, name, st)
        if verdict == "foreign":
            self.leave(
                path, f"belongs to uid {st.st_uid}, neither the caller nor the directory's owner"
            )
            return
        if verdict != "dead":
            return
        r = _entry_root(self.run, dir_fd, dir_path, name, strict=True)
        if r is None or r.st is None or (r.st.dev, r.st.ino) != (st.st_dev, st.st_ino):
            return
        _passes(self.run, [r])

    def journal(self, dir_fd: int, dir_path: str, name: str) -> None:
        from ._txn import recover_journal_at  # lazy: _txn imports this module

        path = os.path.join(dir_path, name)
        try:
            if recover_journal_at(dir_fd, dir_path, name):
                self.run.removed += 1
        except TransactionBusy:
            log.info("gc: %s is a live replace(); left to it", path)
        except RemoveError as e:
            if e.errno == errno.EPERM:
                self.leave(path, str(e.strerror))
            else:
                self.run.errors.append(
                    RemoveFailure(path, e.errno or 0, f"cannot recover: {e.strerror}")
                )
        except OSError as e:
            self.run.errors.append(RemoveFailure(path, e.errno or 0, f"cannot recover: {e}"))

    def directory(self, dir_fd: int, dir_path: str, only: str | None = None) -> list[str]:
        """Collect what linkstrategy left in one directory (only what concerns the
        entry ``only``, when given, besides the trash); returns its other entries."""
        from ._txn import is_journal_name, is_stage_name, journal_name, stage_prefix

        try:
            names = os.listdir(dir_fd)
        except OSError as e:
            if e.errno not in REMOVE_GONE:
                self.run.errors.append(
                    RemoveFailure(dir_path, e.errno or 0, f"cannot list: {_why(e.errno or 0)}")
                )
            return []
        rest: list[str] = []
        jname = journal_name(only) if only is not None else None
        sprefix = stage_prefix(only) if only is not None else None
        for n in names:
            if is_trash_name(n):
                self.trash(dir_fd, dir_path, n)
            elif only is not None:
                if n == jname or n.startswith(f"{jname}-"):
                    self.journal(dir_fd, dir_path, n)
                elif sprefix is not None and n.startswith(sprefix) and is_stage_name(n):
                    self.temporary(dir_fd, dir_path, n)
            elif is_journal_name(n):
                self.journal(dir_fd, dir_path, n)
            elif is_stage_name(n) or is_tmp_name(n) or is_tmp_name(n, PROBE_PREFIX):
                self.temporary(dir_fd, dir_path, n)
            else:
                rest.append(n)
        return rest

    def walk(self, top_fd: int, top_path: str, names: list[str]) -> None:
        """``recursive=True``: every directory below, one mount only, no symlinks
        followed, iterative with bounded fds (a closed frame is reopened from its
        child through ``..`` and checked by inode)."""
        top = statx(top_fd, "")
        tst = os.fstat(top_fd)
        # (fd or -1, ident, path, subdirectory names still to visit)
        stack: list[list[Any]] = [[top_fd, (tst.st_dev, tst.st_ino), top_path, list(names)]]
        opened = 0
        try:
            while stack:
                fr = stack[-1]
                if fr[3]:
                    n = fr[3].pop()
                    try:
                        st = statx(fr[0], n)
                    except OSError:
                        continue
                    if (
                        not stat.S_ISDIR(st.mode)
                        or st.dev != top.dev
                        or st.mount_root
                        or (st.mnt_id is not None and st.mnt_id != top.mnt_id)
                    ):
                        continue
                    try:
                        fd = os.open(n, _O_DIR, dir_fd=fr[0])
                    except OSError as e:
                        if e.errno not in REMOVE_GONE and e.errno not in REMOVE_SWAPPED:
                            p = os.path.join(fr[2], n)
                            self.run.errors.append(
                                RemoveFailure(p, e.errno or 0, f"cannot open: {_why(e.errno or 0)}")
                            )
                        continue
                    fst = os.fstat(fd)
                    if (fst.st_dev, fst.st_ino) != (st.dev, st.ino):
                        os.close(fd)
                        continue
                    path = os.path.join(fr[2], n)
                    rest = self.directory(fd, path)
                    stack.append([fd, (st.dev, st.ino), path, rest])
                    opened += 1
                    if opened > _MAX_FDS:
                        old = next(f for f in stack[1:] if f[0] >= 0)
                        os.close(old[0])
                        old[0] = -1
                        opened -= 1
                    continue
                stack.pop()
                if not stack:
                    break
                parent = stack[-1]
                if parent[0] < 0:
                    pfd = os.open("..", _O_DIR, dir_fd=fr[0])
                    pst = os.fstat(pfd)
                    if (pst.st_dev, pst.st_ino) != parent[1]:
                        os.close(pfd)
                        self.run.errors.append(
                            RemoveFailure(parent[2], errno.ESTALE, "moved during gc, walk stopped")
                        )
                        return
                    parent[0] = pfd
                    opened += 1
                os.close(fr[0])
                fr[0] = -1
                opened -= 1
        finally:
            for f in stack[1:]:
                if f[0] >= 0:
                    os.close(f[0])


def gc(
    path: StrPath, *, min_age: float = 0.0, budget: float = 1.0, recursive: bool = False
) -> RemoveReport:
    """Empty linkstrategy trash, finish interrupted ``replace()`` calls and remove the
    temporaries of dead processes at ``path``.

    Costs what there is to collect, not the size of the tree: looks at ``path``
    itself, its entries, and its parent (the trash there, and the journal and
    staging directories of ``path``); ``recursive=True`` looks in every directory
    below ``path`` too (same mount only, no symlinks followed).  Also empties the
    trash directories this process made on the same filesystem.

    Acts only on what belongs to the caller or to the owner of the directory it
    stands in (anything else is listed in :attr:`RemoveReport.foreign` and left
    alone), and on temporaries only when their maker is gone (:func:`._owner.judge`).
    Trash entries younger than ``min_age`` seconds are kept; entries still busy
    after ``budget`` seconds of retries are listed as deferred (their trash path
    twice) and kept for the next gc.
    """
    s = os.fspath(path)
    if not s:
        raise RemoveError(errno.ENOENT, "empty path", s)
    run = _Run(budget, None, defer=False)
    g = _Gc(run, min_age)
    fds: list[int] = []
    try:
        stripped = s.rstrip("/") or "/"
        name: str | None = os.path.basename(stripped)
        if name in ("", ".", ".."):  # the directory itself, as the kernel resolves it
            try:
                bfd = os.open(s, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as e:
                raise RemoveError(e.errno or 0, f"cannot open: {_why(e.errno or 0)}", s) from None
            fds.append(bfd)
            real = fd_path(bfd, s)
            parent_arg, name = os.path.split(real)
            if not name:
                name = None
                parent_arg = "/"
        else:
            parent_arg = os.path.dirname(stripped) or "."
        try:
            pfd = os.open(parent_arg, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            if e.errno in REMOVE_GONE or e.errno == errno.ENOTDIR:
                return run.report()
            raise RemoveError(
                e.errno or 0, f"cannot open: {_why(e.errno or 0)}", parent_arg
            ) from None
        fds.append(pfd)
        parent = fd_path(pfd, parent_arg)
        if name is not None:
            g.directory(pfd, parent, only=name)
            try:
                st = statx(pfd, name)
            except OSError:
                st = None
            if st is not None and stat.S_ISDIR(st.mode):
                try:
                    bfd = os.open(name, _O_DIR, dir_fd=pfd)
                except OSError:
                    bfd = -1
                if bfd >= 0:
                    fds.append(bfd)
                    base = os.path.join(parent, name)
                    rest = g.directory(bfd, base)
                    if recursive:
                        g.walk(bfd, base, rest)
        else:
            rest = g.directory(pfd, parent)
            if recursive:
                g.walk(pfd, parent, rest)
        for k in known_on(os.fstat(pfd).st_dev):
            kfds = reopen_known(k)
            if kfds is not None:
                try:
                    _empty_trash(run, kfds[0], os.path.basename(k.path), kfds[1], k.path, min_age)
                finally:
                    os.close(kfds[0])
                    os.close(kfds[1])
    finally:
        run.close()
        for fd in fds:
            os.close(fd)
    return dc_replace(run.report(), foreign=tuple(g.foreign))
