"""Who made a temporary, and whether its maker is still at work.

Every temporary this library makes (place()'s hidden directories and files,
probe directories, staging directories) is named with :func:`owner`: 16 random
hex digits drawn once per process (and again in a forked child).  Unlike a host
name and a PID, that is unique across hosts sharing a network filesystem and
across containers with the same PIDs.

Liveness is a lock, which NFSv4 and most cluster filesystems honour across
hosts, never a PID:

* a temporary **file** is locked (an open-file-description write lock) by its
  maker from creation until it is renamed into place or removed;
* a temporary **directory** holds a lock file :data:`LOCK_NAME` that its maker
  keeps locked for the directory's life (:func:`hold`, :func:`release`); the
  directories of one run share one, hard-linked into each (:class:`Holds`).

:func:`judge` tests that lock: held means live; a lock file that is present but
free means its maker is gone.  Where there is no lock to test (the moment
between a ``mkdir`` and its lock, a filesystem without locks, a hardlink
temporary) the entry is judged by its ctime, the last resort, with a grace long
enough for any such moment.  Open-file-description locks (``F_OFD_*``) are used
because classic POSIX locks do not conflict within one process: another thread
of the maker would see its own live temporary as free.

A temporary is acted on only if it belongs to the caller or to the owner of
the directory it stands in (:func:`may_act`); anything else is "foreign".
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import time

TYPE_CHECKING = False  # mypy treats any name TYPE_CHECKING as true; typing stays unloaded
if TYPE_CHECKING:
    from typing import Literal, TypeAlias

__all__ = [
    "LOCK_NAME",
    "TMP_PREFIX",
    "TXN_SUFFIX",
    "Holds",
    "hold",
    "is_tmp_name",
    "judge",
    "lock_file",
    "may_act",
    "owner",
    "release",
    "tmp_name",
]

#: Temporary names: ``.lstmp-<owner>-<seq>``.  Short and independent of the final
#: name, so 255-byte names still fit.
TMP_PREFIX = ".lstmp-"

#: replace()'s transaction directory is ``<parent>/.<name><TXN_SUFFIX>``.  Here, with
#: the other names this library makes, so that planning (which must see through it)
#: does not import the transaction module and everything it needs.
TXN_SUFFIX = ".linkstrategy-txn"

#: The lock file inside a temporary directory.
LOCK_NAME = ".linkstrategy-lock"
#: ... while it is being made (created, locked, then renamed to LOCK_NAME).
_PENDING = LOCK_NAME + ".new"

#: An entry with no lock to test is left alone for this long after its last change
#: (ctime): longer than any gap between creating a temporary and locking it.
GRACE_NO_LOCK = 3600.0
#: A temporary *file* without a lock (a hardlink being renamed into place, or the
#: microseconds between create and lock) is left alone for this long.
GRACE_FILE = 120.0

if TYPE_CHECKING:
    Verdict: TypeAlias = Literal["live", "dead", "foreign"]

_OWNER = os.urandom(8).hex()


def _redraw() -> None:
    global _OWNER
    _OWNER = os.urandom(8).hex()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_redraw)


def owner() -> str:
    """This process's owner ID: 16 random hex digits (new in a forked child)."""
    return _OWNER


def tmp_name(seq: int, prefix: str = TMP_PREFIX) -> str:
    """``<prefix><owner>-<seq>``: a temporary name no other process can choose."""
    return f"{prefix}{_OWNER}-{seq}"


def is_tmp_name(name: str, prefix: str = TMP_PREFIX) -> bool:
    """Whether ``name`` is exactly ``<prefix><16 hex>-<digits>``."""
    if not name.startswith(prefix):
        return False
    tail = name[len(prefix) :]
    oid, sep, seq = tail.partition("-")
    return (
        sep == "-"
        and len(oid) == 16
        and all(c in "0123456789abcdef" for c in oid)
        and seq.isdigit()
        and seq.isascii()
    )


# -- locks --------------------------------------------------------------------------------

import fcntl  # noqa: E402  (POSIX only; this module is not used on Windows)

_F_OFD_GETLK: int | None = getattr(fcntl, "F_OFD_GETLK", None)
_F_OFD_SETLK: int | None = getattr(fcntl, "F_OFD_SETLK", None)
# struct flock on Linux (x86_64, aarch64): short l_type, short l_whence, off_t l_start,
# off_t l_len, pid_t l_pid (+ padding); l_pid must be 0 for OFD locks.
_FLOCK = "hhqqi4x"


def _flock(kind: int) -> bytes:
    return struct.pack(_FLOCK, kind, os.SEEK_SET, 0, 0, 0)


def lock_file(fd: int) -> bool:
    """Take an exclusive lock on an open file of ours (open for writing); False where
    the filesystem has no locks.  Held until the fd is closed."""
    try:
        if _F_OFD_SETLK is not None:
            fcntl.fcntl(fd, _F_OFD_SETLK, _flock(fcntl.F_WRLCK))
        else:  # pragma: no cover - macOS: flock is per open file description too
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return False
        raise
    return True


def _is_locked(fd: int) -> bool | None:
    """Whether another open file description holds a lock on ``fd``'s file (None:
    cannot tell here)."""
    try:
        if _F_OFD_GETLK is not None:
            res = fcntl.fcntl(fd, _F_OFD_GETLK, _flock(fcntl.F_WRLCK))
            return bool(struct.unpack(_FLOCK, res)[0] != fcntl.F_UNLCK)
        try:  # pragma: no cover - macOS
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # pragma: no cover
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)  # pragma: no cover
        return False  # pragma: no cover
    except OSError:
        return None


def hold(dir_fd: int) -> int | None:
    """Lock the directory open at ``dir_fd`` as ours: a lock file :data:`LOCK_NAME`
    inside it, locked before it gets that name (so a judge never sees it free while
    we live).  Returns the lock fd, to keep open for as long as the directory is
    worked on; None where the filesystem has no locks (then no lock file is left,
    and :func:`judge` goes by age)."""
    tmp = _PENDING
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, 0o600, dir_fd=dir_fd)
    try:
        if lock_file(fd):
            os.write(fd, f"{os.uname().nodename} {_boot_id()} {os.getpid()} {_OWNER}\n".encode())
            os.rename(tmp, LOCK_NAME, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            return fd
    except BaseException:
        os.close(fd)
        _unlink_if(dir_fd, tmp, None)
        raise
    os.close(fd)
    _unlink_if(dir_fd, tmp, None)
    return None


def release(dir_fd: int, lock_fd: int | None) -> None:
    """Remove the lock file :func:`hold` made (if it is still that file) and close it."""
    if lock_fd is None:
        return
    try:
        _unlink_lock(dir_fd, lock_fd)
    finally:
        os.close(lock_fd)


def _unlink_lock(dir_fd: int, lock_fd: int) -> None:
    """Unlink the lock file in the directory open at ``dir_fd`` if it is ``lock_fd``'s."""
    st = os.fstat(lock_fd)
    _unlink_if(dir_fd, LOCK_NAME, (st.st_dev, st.st_ino))


class Holds:
    """The lock files of many temporary directories, on one fd per filesystem.

    A lock belongs to the file, not to a name of it: the lock file :func:`hold` made
    in one directory is linked into the next ones, and :func:`judge` finds it held
    through any of its names.  A run that makes thousands of new directories (a
    batch of packages into site-packages, a tree of thousands of top-level
    directories into an existing one) then holds one fd for them, not one each:
    ``ulimit -n 1024`` is the usual limit.  A link is also one request where a lock
    file of its own is four (create, lock, write, rename): on a network filesystem,
    round trips.  Where a link cannot be made (a filesystem without hard links, the
    inode's link limit, no ``/proc``), the directory gets a lock file of its own,
    which the next directories share if they can.  Thread-safe."""

    def __init__(self) -> None:
        import threading

        self._mu = threading.Lock()
        self._shared: dict[int, int] = {}  # st_dev -> the lock fd new directories share
        self._names: dict[int, int] = {}  # lock fd -> directories holding it, or linking
        self._unlinkable: set[int] = set()  # st_dev where a link failed but for EMLINK

    def take(self, dir_fd: int, dev: int) -> int | None:
        """Lock the directory open at ``dir_fd``, on the device ``dev``, as ours: its
        lock file, linked to the one shared there or made.  Returns the lock fd, for
        :meth:`give_back`; None where the filesystem has no locks."""
        with self._mu:
            fd = self._shared.get(dev)
            if fd is not None:
                self._names[fd] += 1  # kept open while it is linked
        if fd is not None:
            try:
                os.link(f"/proc/self/fd/{fd}", LOCK_NAME, dst_dir_fd=dir_fd)
                return fd
            except OSError as e:
                with self._mu:
                    if self._shared.get(dev) == fd:
                        del self._shared[dev]
                    if e.errno != errno.EMLINK:
                        self._unlinkable.add(dev)
                self._drop(fd)
        fd = hold(dir_fd)
        if fd is None:
            return None
        with self._mu:
            self._names[fd] = 1
            if dev not in self._unlinkable:
                self._shared.setdefault(dev, fd)
        return fd

    def give_back(self, dir_fd: int, fd: int | None) -> None:
        """Remove the lock file of the directory open at ``dir_fd`` (if it is still
        ours); the lock goes with the last directory that holds it."""
        if fd is None:
            return
        try:
            _unlink_lock(dir_fd, fd)
        finally:
            self._drop(fd)

    def forget(self, fd: int | None) -> None:
        """A directory holding ``fd`` is gone (rolled back, its lock file with it)."""
        if fd is not None:
            self._drop(fd)

    def _drop(self, fd: int) -> None:
        with self._mu:
            self._names[fd] -= 1
            if self._names[fd] > 0:
                return
            del self._names[fd]
            for dev, shared in list(self._shared.items()):
                if shared == fd:
                    del self._shared[dev]
        os.close(fd)

    def __len__(self) -> int:
        """Lock fds open."""
        return len(self._names)


def _unlink_if(dir_fd: int, name: str, ident: tuple[int, int] | None) -> None:
    try:
        if ident is not None:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if (st.st_dev, st.st_ino) != ident:
                return
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


_boot: str | None = None


def _boot_id() -> str:
    global _boot
    if _boot is None:
        try:
            with open("/proc/sys/kernel/random/boot_id", "rb") as f:
                _boot = f.read().decode().strip()
        except OSError:
            _boot = "-"
    return _boot


# -- judging ------------------------------------------------------------------------------


def may_act(dir_fd: int, st: os.stat_result) -> bool:
    """Whether an entry with stat ``st`` in the directory open at ``dir_fd`` may be
    acted on: it belongs to the caller or to the directory's owner."""
    if st.st_uid == os.geteuid():
        return True
    try:
        return st.st_uid == os.fstat(dir_fd).st_uid
    except OSError:
        return False


def _old(st: os.stat_result, grace: float) -> bool:
    return time.time() - max(st.st_ctime, st.st_mtime) > grace


def _judge_pending(dfd: int, st: os.stat_result) -> Verdict:
    """A temporary directory without its lock file: one being made (or whose maker was
    killed while making it) has the pending one; else only its age can tell."""
    nb = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        pfd = os.open(_PENDING, nb, dir_fd=dfd)
    except OSError:
        return "dead" if _old(st, GRACE_NO_LOCK) else "live"
    try:
        pst = os.fstat(pfd)
        locked = _is_locked(pfd) if stat.S_ISREG(pst.st_mode) else None
    finally:
        os.close(pfd)
    if locked:
        return "live"
    return "dead" if _old(pst, GRACE_FILE if locked is False else GRACE_NO_LOCK) else "live"


def judge(dir_fd: int, name: str, st: os.stat_result) -> Verdict:
    """Whether the temporary ``name`` (``st``: its ``lstat``) in the directory open at
    ``dir_fd`` is still being worked on ("live"), was left by a maker that is gone
    ("dead"), or is not ours to judge ("foreign")."""
    if not may_act(dir_fd, st):
        return "foreign"
    nb = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    if stat.S_ISDIR(st.st_mode):
        try:
            dfd = os.open(name, nb | os.O_DIRECTORY, dir_fd=dir_fd)
        except OSError:
            return "live"  # gone or swapped meanwhile: nothing to do now
        try:
            dst = os.fstat(dfd)
            if (dst.st_dev, dst.st_ino) != (st.st_dev, st.st_ino):
                return "live"
            try:
                lfd = os.open(LOCK_NAME, nb, dir_fd=dfd)
            except FileNotFoundError:
                return _judge_pending(dfd, st)
            except OSError:
                return "live"
            try:
                lst = os.fstat(lfd)
                if not stat.S_ISREG(lst.st_mode):
                    return "dead" if _old(st, GRACE_NO_LOCK) else "live"
                locked = _is_locked(lfd)
                if locked is False and os.fstat(lfd).st_nlink == 0:
                    # release() unlinks the lock file before it lets go of the lock: a
                    # free lock on an unlinked file is a maker that just finished (its
                    # directory is being renamed into place), not a dead one.
                    locked = True
            finally:
                os.close(lfd)
        finally:
            os.close(dfd)
        if locked is None:
            return "dead" if _old(st, GRACE_NO_LOCK) else "live"
        return "live" if locked else "dead"
    if stat.S_ISREG(st.st_mode):
        try:
            fd = os.open(name, nb, dir_fd=dir_fd)
        except OSError:
            return "live"
        try:
            fst = os.fstat(fd)
            if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
                return "live"
            locked = _is_locked(fd)
        finally:
            os.close(fd)
        if locked:
            return "live"
        return "dead" if _old(st, GRACE_FILE if locked is False else GRACE_NO_LOCK) else "live"
    return "dead" if _old(st, GRACE_FILE) else "live"
