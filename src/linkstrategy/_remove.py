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
import ctypes
import errno
import functools
import logging
import os
import re
import secrets
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Union

from ._errors import (
    REMOVE_GONE,
    REMOVE_IS_DIR,
    REMOVE_PERMISSION,
    REMOVE_RETRY,
    REMOVE_SWAPPED,
    RemoveError,
)
from ._mounts import find_mount
from ._syscalls import StatxResult, libc, statx

__all__ = [
    "TRASH_NAME",
    "Deferred",
    "RemoveFailure",
    "RemoveReport",
    "collect_trash",
    "gc",
    "remove",
]

log = logging.getLogger("linkstrategy")

StrPath = Union[str, "os.PathLike[str]"]

#: Name of the hidden trash directory made next to a removed root.
TRASH_NAME = ".linkstrategy-trash"

# NFS client silly-rename: ".nfs" + 16 hex fileid + 8 hex counter (fs/nfs/dir.c);
# the macOS client uses ".nfs.%08x.%04x".  libfuse: ".fuse_hidden%08x%08x".
_SILLY = re.compile(
    r"^(\.nfs[0-9A-Fa-f]{24}|\.nfs\.[0-9a-f]{8}\.[0-9a-f]{4}|\.fuse_hidden[0-9a-f]{16})$"
)

# Mounts where a thread pool pays: every unlink is a round trip to a server.
_NETWORK_FSTYPES = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "beegfs",
        "afs",
        "virtiofs",
        "davfs",
        "sshfs",
    }
)
_NETWORK_WORKERS = 32
# On a local disk: the serial walk hands over to this many threads (at most one per
# CPU) after this many directories.  Measured on 2 cores, a 7.6k-file tree: 2
# threads ~18% faster than serial on XFS and tmpfs, more threads slower again; a
# small tree is faster serially (no thread start, no hand-offs).
_LOCAL_WORKERS = 2
_LOCAL_SERIAL_DIRS = 100

_NO_FDS = (errno.EMFILE, errno.ENFILE)  # retried: threads may hold many directory fds

_BACKOFF_START = 0.01
_BACKOFF_MAX = 0.5

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)

#: Called with the running count after each successful unlink, when set.  A seam for
#: the kill -9 tests (their child process sets it); None in normal use.
unlink_hook: Callable[[int], None] | None = None


def _is_silly(name: str) -> bool:
    return name.startswith((".nfs", ".fuse_hidden")) and _SILLY.match(name) is not None


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


class _Statfs:
    """``fstatfs(2)`` f_type through ctypes (``os.fstatvfs`` does not give it)."""

    def __init__(self) -> None:
        self.fn: Any = None
        if sys.platform.startswith("linux"):
            try:
                fn = libc().fstatfs
            except (OSError, AttributeError):
                return
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p]
            fn.restype = ctypes.c_int
            self.fn = fn

    def __call__(self, fd: int) -> int | None:
        if self.fn is None:
            return None
        buf = ctypes.create_string_buffer(512)
        if self.fn(fd, buf) != 0:
            return None
        # f_type is the first field, a (signed) long.
        return int.from_bytes(buf.raw[: ctypes.sizeof(ctypes.c_long)], sys.byteorder) & 0xFFFFFFFF


_fs_magic = _Statfs()


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

    fd: int
    path: str
    prot: _Protect
    subdirs: list[str] = field(default_factory=list)
    blocked: bool = False  # something in here stays: do not try rmdir
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
        self.parent_fds: dict[str, tuple[int, StatxResult]] = {}  # shared by roots in one directory
        self._hook = unlink_hook

    # bookkeeping ---------------------------------------------------------

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def close(self) -> None:
        self._close_pool()
        for fd, _st in self.parent_fds.values():
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
        self.errors.append(RemoveFailure(path, code, f"{what}: {os.strerror(code)}"))

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
                out.retry = True
                return False
            if code in REMOVE_PERMISSION and not fixed:
                fixed = True
                if self._make_writable(fd):
                    continue
            if code in REMOVE_RETRY:
                if _is_silly(name):
                    out.silly.append(os.path.join(path, name))
                else:
                    out.retry = True
                    out.last_retry_error = f"{os.path.join(path, name)}: {os.strerror(code)}"
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
                        out.retry = True
                        out.last_retry_error = f"{full}: {os.strerror(code)}"
                        self._retried()
                    return False
                if code in REMOVE_SWAPPED:
                    out.retry = True  # swapped for a file or symlink: next pass unlinks it
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
                if e.errno in REMOVE_SWAPPED or e.errno in _NO_FDS:
                    # Became a symlink (O_NOFOLLOW: ELOOP) or a file (ENOTDIR): remove the
                    # link itself next pass; its target is outside the walk and untouched.
                    # Out of fds (many threads each hold a path of open directories):
                    # next pass, when they are closed.
                    out.retry = True
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
            out.retry = True
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
            elif e.errno in _NO_FDS:  # scandir dup()s the fd
                out.retry = True
                return []
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
        serial_dirs = _LOCAL_SERIAL_DIRS
        top = _Frame(top_fd, top_path, prot)
        self.unlink_files(top, self.scan(top, out), out)
        stack = [top]
        try:
            while stack:
                fr = stack[-1]
                if fr.subdirs:
                    if serial_dirs <= 0 and later > 1:
                        walk = _ParallelWalk(self, self._get_pool(later), root, out)
                        handed, stack = stack, []  # its fds are the walk's to close now
                        return walk.adopt(handed)
                    serial_dirs -= 1
                    name = fr.subdirs.pop()
                    fd = self.open_subdir(fr, name, root, out)
                    if fd is None:
                        continue
                    node = fr.prot.children.get(name, _EMPTY_PROTECT)
                    child = _Frame(fd, os.path.join(fr.path, name), node)
                    stack.append(child)
                    self.unlink_files(child, self.scan(child, out), out)
                    continue
                stack.pop()
                if fr is top:
                    return not fr.blocked
                os.close(fr.fd)
                parent = stack[-1]
                if fr.blocked or not self.rmdir(
                    parent.fd, parent.path, os.path.basename(fr.path), out
                ):
                    parent.blocked = True
            return not top.blocked
        finally:
            for fr in stack:
                if fr is not top:
                    os.close(fr.fd)


class _Workers:
    """Worker threads serving a stack of jobs, newest first.

    Newest first: the subdirectories a job submits are taken before their
    parent's siblings, so the walk goes deep first and only about ``size`` times
    the tree's depth directories are open at a time (a queue would open a whole
    level of a wide tree at once).  Threads start as jobs wait for them.
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
                except RuntimeError:  # cannot start a thread: the running ones will do
                    if not self._threads:
                        raise
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
            self.done.wait()
        except BaseException:
            self.cancelled = True
            self.done.wait()  # never return while a job may still use an fd
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
            self.done.wait()
        except BaseException:
            self.cancelled = True
            while left:
                left -= 1
                self.release(stack[left])
            self.done.wait()  # never return while a job may still use an fd
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
                    child = _Frame(fd, path, node, parent=parent, pending=1)
        except BaseException as e:
            self.failed(e, parent)
        if child is None:
            self.release(parent)
        else:
            self.scan(child)

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
    if _fs_magic(fd) in _LOCAL_MAGIC:
        return workers
    try:
        mount = find_mount(f"/proc/self/fd/{fd}" if os.path.isdir("/proc/self/fd") else ".")
        # find_mount resolves the magic link with realpath; fine for a classification.
        fstype = mount.fstype
        if fstype in _NETWORK_FSTYPES or fstype.startswith("fuse"):
            workers = _NETWORK_WORKERS
    except Exception:  # classification is an optimisation; never fail the removal for it
        workers = 1
    return workers


# -- roots, refusals, trash -----------------------------------------------------


@dataclass
class _Root:
    path: str  # absolute, lexically normalised, final component not resolved
    parent: str
    name: str
    prot: _Protect = field(default_factory=_Protect)
    parent_fd: int = -1  # owned by _Run.parent_fds
    parent_st: StatxResult | None = None
    st: StatxResult | None = None  # None: does not exist
    outcome: _Outcome = field(default_factory=_Outcome)
    done: bool = False


def _home() -> str | None:
    try:
        home = os.path.expanduser("~")
    except Exception:
        return None
    return os.path.realpath(home) if home and home != "~" else None


def _norm(p: StrPath) -> str:
    return os.path.abspath(os.fspath(p))


def _refuse(root: _Root) -> None:
    real_parent = os.path.realpath(root.parent)
    full = os.path.join(real_parent, root.name) if root.name else real_parent
    if full == "/" or not root.name:
        raise RemoveError(errno.EPERM, "refusing to remove the root directory", root.path)
    home = _home()
    if home and (full == home or home.startswith(full.rstrip("/") + "/")):
        raise RemoveError(errno.EPERM, "refusing to remove the home directory", root.path)
    st = root.st
    if st is None:
        return
    pst = root.parent_st
    if pst is None:
        return
    if st.mount_root or (
        st.mnt_id is not None and pst.mnt_id is not None and st.mnt_id != pst.mnt_id
    ):
        raise RemoveError(errno.EBUSY, "refusing to remove a mount point", root.path)


def _trash_name(name: str) -> str:
    prefix = f"{int(time.time())}-{os.getpid()}-{secrets.token_hex(3)}-"
    raw = os.fsencode(name)[: 255 - len(prefix)]
    return prefix + os.fsdecode(raw)


_known_trash: set[str] = set()


def _move_to_trash(parent_fd: int, parent: str, name: str) -> str:
    """Rename ``name`` (in the directory open at ``parent_fd``) into the trash; its path."""
    last: OSError | None = None
    for _ in range(3):
        try:
            os.mkdir(TRASH_NAME, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            pass
        try:
            tfd = os.open(TRASH_NAME, _O_DIR, dir_fd=parent_fd)
        except FileNotFoundError as e:  # another process emptied and removed it: again
            last = e
            continue
        try:
            tname = _trash_name(name)
            os.rename(name, tname, src_dir_fd=parent_fd, dst_dir_fd=tfd)
        except FileNotFoundError as e:
            # Either the entry went (fine) or the trash directory did (again).
            try:
                os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            except FileNotFoundError:
                raise
            last = e
            continue
        finally:
            os.close(tfd)
        trash = os.path.join(parent, TRASH_NAME)
        _known_trash.add(trash)
        return os.path.join(trash, tname)
    assert last is not None
    raise last


# -- public functions -------------------------------------------------------------


def _as_list(paths: StrPath | Iterable[StrPath]) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        return [_norm(paths)]
    return [_norm(p) for p in paths]


def _check_relative(entry: str) -> list[str]:
    parts = [p for p in entry.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(
            f"last entry {entry!r} must be a relative path below a root, "
            "without '..', or an absolute path"
        )
    return parts


def remove(
    paths: StrPath | Iterable[StrPath],
    *,
    budget: float = 5.0,
    last: Sequence[str] = (),
    workers: int | None = None,
) -> RemoveReport:
    """Remove files, symlinks and trees; see the module docstring for the policies.

    ``budget``: total seconds to spend retrying (``0``: one pass, then defer).
    ``last``: entries to remove after everything else, in order (module docstring).
    ``workers``: threads walking each tree (every directory a job); ``None`` picks
    32 on network and FUSE mounts, and locally a serial walk that takes 2 threads
    for a big tree; ``1``: always serial.

    Raises :class:`RemoveError` (nothing touched) when a root is refused; every
    other problem is listed in the returned report.
    """
    run = _Run(budget, workers)
    roots = [_Root(p, os.path.dirname(p), os.path.basename(p)) for p in _as_list(paths)]
    try:
        return _remove(run, roots, last)
    finally:
        run.close()


def _open_roots(run: _Run, roots: list[_Root]) -> None:
    for r in roots:
        if not r.name:
            raise RemoveError(errno.EPERM, "refusing to remove the root directory", r.path)
        cached = run.parent_fds.get(r.parent)
        if cached is None:
            try:
                fd = os.open(r.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as e:
                if e.errno in REMOVE_GONE or e.errno == errno.ENOTDIR:
                    r.done = True  # missing path: not an error
                    continue
                raise RemoveError(
                    e.errno or 0, f"cannot open parent directory: {e.strerror}", r.path
                ) from None
            try:
                cached = (fd, statx(fd, ""))
            except OSError as e:
                os.close(fd)
                raise RemoveError(e.errno or 0, f"cannot stat: {e.strerror}", r.parent) from None
            run.parent_fds[r.parent] = cached
        r.parent_fd, r.parent_st = cached
        run.opened.append(r)
        try:
            r.st = statx(r.parent_fd, r.name)
        except OSError as e:
            if e.errno not in REMOVE_GONE:
                raise RemoveError(e.errno or 0, f"cannot stat: {e.strerror}", r.path) from None
            r.st = None
        _refuse(r)
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
            p = _norm(entry)
            hit = by_path.get(p)
            if hit is not None:
                hit.prot.leaf = True
                phase2.append(hit)
                continue
            owner = next((r for r in roots if p.startswith(r.path.rstrip("/") + "/")), None)
            if owner is None:
                extra = _Root(p, os.path.dirname(p), os.path.basename(p))
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

    for parent in dict.fromkeys(r.parent for r in run.opened):
        collect_trash(parent)
    # Finish or undo a replace() that was interrupted on any of these paths.
    from ._txn import recover_for  # lazy: _txn imports this module

    for r in _journal_candidates(run.opened):
        try:
            if not recover_for(r.path):
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
        sub = _Root(path, os.path.dirname(path), parts[-1])
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
                trash = _move_to_trash(r.parent_fd, r.parent, r.name)
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
            out.retry = True
        elif e.errno in REMOVE_PERMISSION and _chmod_nofollow_dir(r.parent_fd, r.name):
            out.retry = True
            run.retries += 1
        else:
            run.fail(out, r.path, e, "cannot open directory")
        return
    try:
        fst = os.fstat(fd)
        if (fst.st_dev, fst.st_ino) != (st.dev, st.ino):
            out.retry = True
            return
        if not run.clear_tree(fd, r.path, r.prot, st, out):
            return
    finally:
        os.close(fd)
    if run.rmdir(r.parent_fd, r.parent, r.name, out, fix_perms=False):
        r.done = True


# -- trash collection ----------------------------------------------------------------


def _trash_age(name: str, now: float) -> float:
    head = name.split("-", 1)[0]
    return now - int(head) if head.isdigit() else float("inf")


def _empty_trash(run: _Run, trash: str, min_age: float) -> None:
    """Remove entries older than ``min_age`` from one trash directory (one pass each)."""
    try:
        names = os.listdir(trash)
    except OSError as e:
        if e.errno not in REMOVE_GONE:
            run.errors.append(RemoveFailure(trash, e.errno or 0, "cannot list trash"))
        return
    now = time.time()
    old = [n for n in names if _trash_age(n, now) >= min_age]
    if old:
        roots = [_Root(os.path.join(trash, n), trash, n) for n in old]
        try:
            for r in roots:
                _open_roots(run, [r])
            _passes(run, [r for r in roots if not r.done])
            for r in roots:
                if not r.done and not r.outcome.error and (r.outcome.silly or r.outcome.retry):
                    reason = "still held open" if r.outcome.silly else "still busy"
                    run.deferred.append(Deferred(r.path, r.path, reason))
        finally:
            fd_st = run.parent_fds.pop(trash, None)  # close before the rmdir below
            if fd_st is not None:
                os.close(fd_st[0])
    if len(old) == len(names):
        try:
            os.rmdir(trash)
        except OSError:
            return  # refilled meanwhile, or still holds busy entries
        _known_trash.discard(trash)


def collect_trash(directory: StrPath, *, min_age: float = 5.0) -> None:
    """Empty stale linkstrategy trash kept for ``directory`` (cheap when there is none).

    Looks at ``directory/.linkstrategy-trash`` (one ``lstat`` when it does not exist)
    and at trash directories this process made on the same filesystem.  Busy entries
    are tried once and left; never raises.
    """
    d = os.fspath(directory)
    candidates = []
    trash = os.path.join(d, TRASH_NAME)
    try:
        if stat.S_ISDIR(os.lstat(trash).st_mode):
            candidates.append(trash)
    except OSError:
        pass
    if _known_trash:
        try:
            dev = os.stat(d).st_dev
            for t in list(_known_trash):
                with contextlib.suppress(OSError):
                    if t != trash and os.lstat(t).st_dev == dev:
                        candidates.append(t)
        except OSError:
            pass
    if not candidates:
        return
    run = _Run(0.0, None, defer=False)
    try:
        for t in candidates:
            _empty_trash(run, t, min_age)
    except Exception:  # opportunistic; the caller's operation matters more
        log.debug("collecting trash for %s failed", d, exc_info=True)
    finally:
        run.close()


def gc(path: StrPath, *, min_age: float = 0.0, budget: float = 1.0) -> RemoveReport:
    """Empty linkstrategy trash and finish interrupted ``replace()`` calls at ``path``.

    Looks in ``path`` and its parent for ``.linkstrategy-trash``, in every directory
    under ``path`` (same mount only, no symlinks followed), and in trash directories
    this process made on the same filesystem.  Entries younger than ``min_age``
    seconds are kept.  Entries still busy are listed as deferred (their trash path
    twice) and kept for the next gc.
    """
    from ._txn import STAGE_MARK, reap_stage, recover_dir, recover_for  # lazy: _txn imports us

    run = _Run(budget, None, defer=False)
    base = _norm(path)
    trashes: list[str] = []
    txns: list[str] = []
    stages: list[str] = []
    try:
        for d in (os.path.dirname(base), base):
            t = os.path.join(d, TRASH_NAME)
            if os.path.isdir(t) and not os.path.islink(t):
                trashes.append(t)
        if os.path.isdir(base) and not os.path.islink(base):
            for dirpath, dirnames, _files, dir_fd in os.fwalk(base, follow_symlinks=False):
                here = statx(dir_fd, "")
                keep = []
                for n in dirnames:
                    full = os.path.join(dirpath, n)
                    if n == TRASH_NAME:
                        trashes.append(full)
                    elif n.startswith(".") and ".linkstrategy-txn" in n:
                        txns.append(full)
                    elif n.startswith(".") and STAGE_MARK in n:
                        stages.append(full)
                    else:
                        try:
                            st = statx(dir_fd, n)
                        except OSError:
                            continue
                        if (
                            st.dev == here.dev
                            and not st.mount_root
                            and (st.mnt_id is None or st.mnt_id == here.mnt_id)
                        ):
                            keep.append(n)
                dirnames[:] = keep
        with contextlib.suppress(OSError):
            dev = os.stat(base if os.path.exists(base) else os.path.dirname(base)).st_dev
            for t in list(_known_trash):
                with contextlib.suppress(OSError):
                    if os.lstat(t).st_dev == dev:
                        trashes.append(t)
        try:  # `gc DST`: the journal of a replace() of DST is DST's sibling
            recover_for(base)
        except OSError as e:
            run.errors.append(RemoveFailure(base, e.errno or 0, f"cannot recover: {e}"))
        for txn in txns:
            try:
                recover_dir(txn)
            except OSError as e:
                run.errors.append(RemoveFailure(txn, e.errno or 0, f"cannot recover: {e}"))
        for s in stages:
            try:
                if reap_stage(s):
                    run.removed += 1
            except OSError as e:
                run.errors.append(RemoveFailure(s, e.errno or 0, f"cannot remove: {e}"))
        for t in dict.fromkeys(trashes):
            _empty_trash(run, t, min_age)
    finally:
        run.close()
    return run.report()
