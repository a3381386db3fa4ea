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
free means its maker is gone.  A temporary *directory* is judged dead only by its
lock file (or the pending one of a maker killed while making it): present, a
regular file of the directory's owner, and free -- or, where the filesystem has no
locks (the maker then leaves its lock file unlocked and says so in it), present
and older than :data:`GRACE_NO_LOCK`.  Without a lock file it is never dead,
whatever its age: a name alone proves nothing (another user who may rename in the
directory can give any directory of the caller's a temporary's name), and a run
killed in the microseconds between its ``mkdir`` and its lock leaves a directory
for a human to remove, which is the better failure.  A temporary *file* (one name,
no tree) with no lock to test goes by its ctime, with a grace.  Open-file-description
locks (``F_OFD_*``) are used because classic POSIX locks do not conflict within
one process: another thread of the maker would see its own live temporary as free.

A temporary is acted on only if it belongs to the caller (:func:`may_act`); anything
else is "foreign", also in a directory the caller does not own: its owner could
have moved into a temporary of its own a tree that only the caller may delete.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import time

from ._errors import LOCK_UNSUPPORTED

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

#: A lock file that cannot be tested (a filesystem without locks) means a live maker
#: for this long after its last change (ctime), and a temporary file without a lock
#: to test likewise.
GRACE_NO_LOCK = 3600.0
#: What a maker writes at the end of its lock file's line when the filesystem would
#: not lock it: a judge then goes by age, not by the (always free) lock.
_NO_LOCK_MARK = b" nolock"
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
        if e.errno in LOCK_UNSUPPORTED:
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


def hold(dir_fd: int) -> int:
    """Lock the directory open at ``dir_fd`` as ours: a lock file :data:`LOCK_NAME`
    inside it, locked before it gets that name (so a judge never sees it free while
    we live).  Returns the lock fd, to keep open for as long as the directory is
    worked on.  Where the filesystem has no locks the file is left all the same,
    unlocked and saying so (:data:`_NO_LOCK_MARK`): without a lock file a directory
    is never judged dead, and with this one it is after :data:`GRACE_NO_LOCK`."""
    tmp = _PENDING
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, 0o600, dir_fd=dir_fd)
    try:
        line = f"{os.uname().nodename} {_boot_id()} {os.getpid()} {_OWNER}".encode()
        os.write(fd, line + (b"" if lock_file(fd) else _NO_LOCK_MARK) + b"\n")
        os.rename(tmp, LOCK_NAME, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        os.close(fd)
        _unlink_if(dir_fd, tmp, None)
        raise
    return fd


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

    def take(self, dir_fd: int, dev: int) -> int:
        """Lock the directory open at ``dir_fd``, on the device ``dev``, as ours: its
        lock file, linked to the one shared there or made (unlocked where the
        filesystem has no locks, see :func:`hold`).  Returns the lock fd, for
        :meth:`give_back`."""
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


def may_act(st: os.stat_result) -> bool:
    """Whether a temporary, trash directory or journal with stat ``st`` may be acted on:
    it belongs to the caller.  Not "or to the owner of the directory it stands in":
    that user may rename the caller's own trees into such a name."""
    return st.st_uid == os.geteuid()


def _old(st: os.stat_result, grace: float) -> bool:
    return time.time() - max(st.st_ctime, st.st_mtime) > grace


_NB = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _lock_verdict(dfd: int, name: str, st: os.stat_result, grace: float | None) -> Verdict | None:
    """The verdict the lock file ``name`` in the temporary directory open at ``dfd``
    (``st``: the directory's stat) gives; None when there is no such file.  Only a
    regular file of the directory's owner counts; anything else there is no proof
    of death ("live").  A free lock means death at once (``grace`` None) or once the
    file is ``grace`` seconds old (the pending file: the create-to-lock gap)."""
    try:
        lfd = os.open(name, _NB, dir_fd=dfd)
    except FileNotFoundError:
        return None
    except OSError:
        return "live"
    try:
        lst = os.fstat(lfd)
        if not stat.S_ISREG(lst.st_mode) or lst.st_uid != st.st_uid:
            return "live"
        locked = _is_locked(lfd)
        if locked is False and os.fstat(lfd).st_nlink == 0:
            # release() unlinks the lock file before it lets go of the lock: a
            # free lock on an unlinked file is a maker that just finished (its
            # directory is being renamed into place), not a dead one.
            locked = True
        if locked is False and _says_no_lock(lfd):
            locked = None  # its maker could not lock it: only its age tells
    finally:
        os.close(lfd)
    if locked:
        return "live"
    if locked is False:
        return "dead" if grace is None or _old(lst, grace) else "live"
    return "dead" if _old(lst, GRACE_NO_LOCK) and _old(st, GRACE_NO_LOCK) else "live"


def _says_no_lock(fd: int) -> bool:
    try:
        return os.pread(fd, 512, 0).rstrip(b"\n").endswith(_NO_LOCK_MARK)
    except OSError:
        return False


def judge(dir_fd: int, name: str, st: os.stat_result) -> Verdict:
    """Whether the temporary ``name`` (``st``: its ``lstat``) in the directory open at
    ``dir_fd`` is still being worked on ("live"), was left by a maker that is gone
    ("dead"), or is not ours to judge ("foreign").  A directory is dead only by its
    lock file, never by its name and age alone (module docstring)."""
    if not may_act(st):
        return "foreign"
    if stat.S_ISDIR(st.st_mode):
        try:
            dfd = os.open(name, _NB | os.O_DIRECTORY, dir_fd=dir_fd)
        except OSError:
            return "live"  # gone or swapped meanwhile: nothing to do now
        try:
            dst = os.fstat(dfd)
            if (dst.st_dev, dst.st_ino) != (st.st_dev, st.st_ino):
                return "live"
            verdict = _lock_verdict(dfd, LOCK_NAME, st, None)
            if verdict is None:
                # A maker killed while making its lock file leaves the pending one.
                verdict = _lock_verdict(dfd, _PENDING, st, GRACE_FILE)
        finally:
            os.close(dfd)
        return "live" if verdict is None else verdict
    if stat.S_ISREG(st.st_mode):
        try:
            fd = os.open(name, _NB, dir_fd=dir_fd)
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
