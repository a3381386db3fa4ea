"""All-or-nothing replacement of a file or tree, and staging next to a destination.

:func:`replace` ``(src, dst)`` keeps ``dst`` at every moment either the complete
old tree or the complete new one, also across ``kill -9``.  The journal is a
hidden directory next to ``dst``, ``<parent>/.<name>.linkstrategy-txn/``:

``lock``
    A file the running transaction holds ``flock(LOCK_EX)`` on, from before the
    journal has a state (made as ``lock.new``, locked, then renamed).  The kernel
    drops the lock when the process dies, so a lock that can be taken means nobody
    is working on this transaction any more and it may be recovered.  (The Linux NFS
    client turns flock into a POSIX lock on the server, so this holds across
    clients too.)  Where the filesystem has no locks (ENOLCK, EOPNOTSUPP), a journal
    is recovered only once its lock file is older than an hour
    (:data:`._owner.GRACE_NO_LOCK`).
``state``
    JSON, replaced atomically (a new ``state.tmp``, made ``O_EXCL`` after any
    leftover of that name is unlinked -- never written into an inode that was
    there -- fsync, rename, fsync the directory): ``{"version": 1, "dst": name,
    "phase": ..., "old": [dev, ino] | null, "new": [dev, ino] | null, "owner":
    <owner id>, "time": ...}``, plus
    ``new_mode``/``old_mode`` when a read-only top directory was made writable for
    the swap.  Removed last when the journal is deleted, so a journal cut short
    while being deleted still says what it is.
``new``
    The new tree while it is being placed (same directory as ``dst``, so the same
    mount and btrfs subvolume: every move below is one ``rename``).
``old``
    The old tree once it has been moved aside (only without RENAME_EXCHANGE).

The journal directory is built under a temporary name (``....linkstrategy-txn-<random>``)
with the lock taken and the first state written, then renamed into place, so a
journal is never seen half made.  The steps:

1. phase ``building``: ``place(src, txn/new)``.  ``dst`` is untouched.  Any failure
   (ENOSPC, EIO, a kill) is rolled back by deleting the journal.
2. phase ``swapping`` (records the inode of the new tree): ``dst`` must still be
   the tree recorded as ``old`` when the transaction began (or still be absent);
   anything else there was put there by someone else meanwhile, and the call fails
   (:class:`~linkstrategy.PlaceError`, EBUSY or EEXIST, naming ``dst``) and rolls
   back without touching it, as :func:`~linkstrategy.upgrade` does.  Then
   ``renameat2(txn/new, dst, RENAME_EXCHANGE)`` where the filesystem has it (ext4,
   XFS, btrfs, tmpfs): one atomic step, ``dst`` is never missing (checked again
   after it: a tree swapped in between goes straight back).  Elsewhere (NFS, many
   FUSE filesystems): ``rename(dst, txn/old)`` then ``rename(txn/new, dst)``; a
   kill between the two leaves ``dst`` missing until the next call rolls forward.
   The new tree never goes over anything: ``RENAME_NOREPLACE`` where there is one
   (:func:`._sys.rename_new`).
3. phase ``committing``: the old tree is removed with :func:`remove` (busy files
   deferred to the trash), then the journal.

Recovery (:func:`recover_for`, :func:`recover_dir`), run by the next
:func:`replace` or :func:`~linkstrategy.remove` on that ``dst`` and by ``gc``:
the trees are found by the inodes recorded in ``state`` (whatever names they have
after an exchange or half a pair of renames).  ``building``: roll back (the old
tree is put back at ``dst`` if needed, the journal deleted).  ``swapping``: roll
forward when the new tree is intact (it was complete before this phase was
written), else back.  ``committing``: finish the removal.  Either way only the
journal's own trees are moved: something else at ``dst`` stops the recovery
(:class:`~linkstrategy.RemoveError`, EPERM, the journal kept).  The journal itself
is removed as the inode it is (:func:`._trash.remove_own`), never by its name.

This order (build aside, then swap) deliberately differs from "move the old tree
aside, then place": readers of ``dst`` never see it missing while a tree is
being placed, and a failed placement has nothing to undo at ``dst``.

**Paths and trust.**  ``dst`` is split into its parent, opened once as the kernel
resolves it (``a/link/..`` is the parent of ``link``'s target, never ``a``), and
its last component (never empty, ``.`` or ``..``); from then on every step works
relative to that fd and to an fd of the journal opened with ``O_NOFOLLOW``.  A
name proves nothing: a user who may rename in the directory can give any
directory of the caller's a journal's name.  So a journal is recovered only when it
is a real directory of the caller's (not "of the directory's owner": root must not
carry out a journal a user planted in the user's own directory), holds its
``lock``, a regular file of the caller's, free, and its ``state`` (a regular file of
the caller's, read ``O_NONBLOCK`` and bounded) names the very destination its name
is made from; anything else is left alone and reported
(:class:`~linkstrategy.RemoveError`, EPERM).  A journal without a lock file is left
alone (it is being made, or is no journal), unless it is an empty directory.

**Read-only trees.**  Moving a directory to another parent rewrites its ``..``
entry, which needs write permission on the directory itself (rename(2),
EACCES).  A tree placed from a read-only source has a 0555 top directory, so the
top directories of the new and the old tree get ``u+w`` for the swap (their modes
are kept in ``state``) and the new tree's mode is restored once it is at ``dst``
(also by a recovery after a kill).  A top directory the caller does not own cannot
be swapped: :class:`~linkstrategy.PlaceError` naming both paths, before anything
moves.

:func:`staging_dir` ``(dst)`` yields an empty directory on the same mount as
``dst`` for unpacking, so that the result can be renamed or hardlinked into
place: inside ``$TMPDIR`` when it is on the same mount (mount ID) and btrfs
subvolume (``st_dev``) as ``dst``'s parent, else inside a hidden sibling
``<parent>/.<name>.linkstrategy-stage-<owner>-<n>`` (:func:`._owner.owner`).  The
hidden directory holds the lock file (:func:`._owner.hold`) that tells ``gc`` its
maker lives, and the yielded directory ``tree``; all removed on exit.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import stat
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping

from . import _args
from ._errors import (
    LOCK_UNSUPPORTED,
    REMOVE_GONE,
    REMOVE_PERMISSION,
    REMOVE_RETRY,
    LinkStrategyError,
    PlaceError,
    RemoveError,
    TransactionBusy,
)
from ._log import log
from ._mounts import mount_id_of
from ._owner import GRACE_FILE, GRACE_NO_LOCK, LOCK_NAME, hold, is_tmp_name, may_act, owner
from ._pool import Backoff
from ._pycache import drop_bytecode_beside
from ._record import replace as record_replace
from ._removal import split as _split
from ._sys import exchange, fd_path, rename_new
from ._trash import collect_trash_at as _collect_trash_at
from ._trash import remove_own
from ._tree import RemoveReport, StrPath

TYPE_CHECKING = False  # mypy treats any name TYPE_CHECKING as true; typing stays unloaded
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from ._place import PlaceReport
    from ._plan import StrategyArg

__all__ = ["recover_dir", "recover_for", "replace", "staging_dir"]


TXN_SUFFIX = ".linkstrategy-txn"
STAGE_MARK = ".linkstrategy-stage-"
_COMMIT_BUDGET = 2.0
_RENAME_BUDGET = 2.0

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

#: Called with the name of each step of replace() as it is reached, when set.  A
#: seam for the kill -9 tests (their child process sets it); None in normal use.
step_hook: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if step_hook is not None:
        step_hook(name)


# -- names ------------------------------------------------------------------------------


def journal_name(name: str) -> str:
    """The journal's name for a destination called ``name``."""
    full = f".{name}{TXN_SUFFIX}"
    if len(os.fsencode(full)) <= 200:
        return full
    digest = f"{zlib.crc32(os.fsencode(name)):08x}"
    short = os.fsdecode(os.fsencode(name)[:150])
    return f".{short}-{digest}{TXN_SUFFIX}"


def _is_journal_tmp(name: str) -> bool:
    head, sep, tail = name.rpartition("-")
    return (
        bool(sep)
        and head.endswith(TXN_SUFFIX)
        and len(tail) == 8
        and all(c in "0123456789abcdef" for c in tail)
    )


def is_journal_name(name: str) -> bool:
    """A journal (``.<name>.linkstrategy-txn``) or one being made (``...-<8 hex>``)."""
    return name.startswith(".") and (name.endswith(TXN_SUFFIX) or _is_journal_tmp(name))


def stage_prefix(name: str) -> str:
    """The start of the name of a staging directory made for ``name``."""
    return f".{os.fsdecode(os.fsencode(name)[:100])}{STAGE_MARK}"


def is_stage_name(name: str) -> bool:
    """``[.<name>].linkstrategy-stage-<owner>-<n>``, as :func:`staging_dir` names them."""
    head, mark, tail = name.rpartition(STAGE_MARK)
    return bool(mark) and (not head or head.startswith(".")) and is_tmp_name(mark + tail, mark)


# -- renames through directory fds ------------------------------------------------------


def _exchange(a_fd: int, a: str, b_fd: int, b: str) -> bool:
    """Swap ``a`` and ``b`` atomically (:func:`._sys.exchange`), retrying busy errors
    with backoff; False where the kernel or filesystem cannot."""
    backoff = Backoff(deadline=time.monotonic() + _RENAME_BUDGET)
    while True:
        try:
            return exchange(a_fd, a, b_fd, b)
        except OSError as e:
            if e.errno not in REMOVE_RETRY or not backoff.wait():
                raise


def _rename(a_fd: int, a: str, b_fd: int, b: str, *, new: bool = False) -> None:
    """renameat(2), retrying busy errors (NFS, Windows-style sharing) with backoff.
    ``new``: never over anything at ``b`` (:func:`._sys.rename_new`: FileExistsError)."""
    backoff = Backoff(deadline=time.monotonic() + _RENAME_BUDGET)
    while True:
        try:
            if new:
                rename_new(a_fd, a, b_fd, b)
            else:
                os.rename(a, b, src_dir_fd=a_fd, dst_dir_fd=b_fd)
            return
        except OSError as e:
            if e.errno not in REMOVE_RETRY or not backoff.wait():
                raise


def _stat_at(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return None


def _ident_at(dir_fd: int, name: str) -> tuple[int, int] | None:
    st = _stat_at(dir_fd, name)
    return None if st is None else (st.st_dev, st.st_ino)


def _lexists_at(dir_fd: int, name: str) -> bool:
    return _stat_at(dir_fd, name) is not None


# -- journal ----------------------------------------------------------------------


def _write_state(jfd: int, state: dict[str, Any]) -> None:
    """Replace the journal's ``state``: a new ``state.tmp`` (``O_EXCL``: never written
    into an inode that was there, such as a link to a file of someone else's), fsync,
    rename, fsync the directory."""
    import json  # journals are rare: not at import

    data = json.dumps(state).encode()
    with contextlib.suppress(FileNotFoundError):
        os.unlink("state.tmp", dir_fd=jfd)  # a leftover of a kill, in our own journal
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open("state.tmp", flags, 0o600, dir_fd=jfd)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename("state.tmp", "state", src_dir_fd=jfd, dst_dir_fd=jfd)
    with contextlib.suppress(OSError):
        os.fsync(jfd)


#: The most of a ``state`` file read: a journal's is a few hundred bytes (an upgrade's
#: a few per entry).
_STATE_MAX = 1 << 20


def _read_state(jfd: int) -> dict[str, Any]:
    """The journal's ``state``; ``{}`` when it is missing, unreadable, not JSON, or not
    a regular file of the journal's owner (a FIFO there must not block the reader:
    opened ``O_NONBLOCK``, checked before a byte is read, and read only up to a
    bound)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open("state", flags, dir_fd=jfd)
    except OSError:
        return {}
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.fstat(jfd).st_uid:
            return {}
        if st.st_size > _STATE_MAX:
            return {}
        chunks: list[bytes] = []
        size = 0
        while size <= _STATE_MAX and (chunk := os.read(fd, _STATE_MAX + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
        import json

        data = json.loads(b"".join(chunks)) if size <= _STATE_MAX else None
    except (OSError, ValueError):
        return {}
    finally:
        os.close(fd)
    return data if isinstance(data, dict) else {}


_LOCK = "lock"
#: The lock file while it is being made: created, locked, then renamed to ``lock``, so
#: a ``lock`` is never seen free while its maker lives.
_LOCK_PENDING = "lock.new"


def _new_lock(jfd: int, path: str) -> int:
    """Make the journal's lock file, locked before it gets its name; its fd."""
    import fcntl

    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(_LOCK_PENDING, flags, 0o600, dir_fd=jfd)
    backoff = Backoff(deadline=time.monotonic() + _RENAME_BUDGET)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:  # a gc testing it this very moment: it lets go
                if not backoff.wait():
                    raise
            except OSError as e:
                if e.errno not in LOCK_UNSUPPORTED:
                    raise
                log.debug("no lock for %s: %s", path, e)  # a recovery goes by its age
                break
        os.rename(_LOCK_PENDING, _LOCK, src_dir_fd=jfd, dst_dir_fd=jfd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _older(st: os.stat_result, grace: float) -> bool:
    return time.time() - max(st.st_ctime, st.st_mtime) > grace


def _take_lock(jfd: int, path: str, name: str = _LOCK, *, grace: float = 0.0) -> int | None:
    """Lock the journal's lock file ``name`` for a recovery; its fd, or None when there
    is no such file.  Only a regular file of the journal's owner counts (else
    :class:`~linkstrategy.RemoveError` EPERM, left alone).  Raises
    :class:`TransactionBusy` while a live process holds it -- or, where this
    filesystem has no locks, while the file is younger than :data:`GRACE_NO_LOCK` --
    and while it is younger than ``grace`` (the pending one: the create-to-lock gap)."""
    import fcntl

    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=jfd)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise _leave(path, f"its lock file cannot be opened ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.fstat(jfd).st_uid:
            raise _leave(path, "its lock file is not a regular file of the journal's owner")
        busy = TransactionBusy(errno.EBUSY, "another process is replacing this path", path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy from None
        except OSError as e:
            if e.errno not in LOCK_UNSUPPORTED:
                raise
            if not _older(st, GRACE_NO_LOCK):  # no locks here: only its age tells
                raise busy from None
        if grace and not _older(st, grace):
            raise busy
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_own_dir(dir_fd: int, name: str, path: str) -> int:
    """Open a directory we just made (``O_NOFOLLOW``) and check it still is ours: the
    caller's and empty (not a directory of the caller's renamed to its name since)."""
    fd = os.open(name, _O_DIR, dir_fd=dir_fd)
    st = os.fstat(fd)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or os.listdir(fd):
        os.close(fd)
        raise LinkStrategyError(errno.EPERM, "replaced by another directory meanwhile", path)
    return fd


def _fd_ident(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino)


def _fsync(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.fsync(fd)


def _writable_top(dir_fd: int, name: str) -> int | None:
    """Give the directory ``name`` u+w for a swap (rename(2) rewrites its ``..``);
    its mode before, or None when nothing had to change (or it is not a directory).
    Raises PermissionError when it is not the caller's to change."""
    st = _stat_at(dir_fd, name)
    if st is None or not stat.S_ISDIR(st.st_mode) or st.st_mode & stat.S_IWUSR:
        return None
    if os.geteuid() == 0:
        return None  # CAP_DAC_OVERRIDE: root moves it as it is
    if st.st_uid != os.geteuid():
        raise PermissionError(errno.EACCES, "a read-only directory of another user")
    fd = os.open(name, _O_DIR, dir_fd=dir_fd)
    try:
        if (os.fstat(fd).st_dev, os.fstat(fd).st_ino) != (st.st_dev, st.st_ino):
            raise PermissionError(errno.EACCES, "replaced meanwhile")
        os.fchmod(fd, stat.S_IMODE(st.st_mode) | stat.S_IWUSR)
    finally:
        os.close(fd)
    return stat.S_IMODE(st.st_mode)


def _restore_mode(dir_fd: int, name: str, ident: tuple[int, int] | None, mode: Any) -> None:
    """Put back a mode :func:`_writable_top` changed, on that inode only."""
    if not isinstance(mode, int) or ident is None:
        return
    with contextlib.suppress(OSError):
        fd = os.open(name, _O_DIR, dir_fd=dir_fd)
        try:
            fst = os.fstat(fd)
            if (fst.st_dev, fst.st_ino) == ident:
                os.fchmod(fd, mode)
        finally:
            os.close(fd)


class _Journal:
    """A journal directory ``jname`` in the directory open at ``parent_fd`` (not owned),
    replace()'s (:class:`_Txn`) or upgrade()'s (:class:`._upgrade._Upgrade`): made under
    a temporary name, locked, given its first ``state`` and renamed in (:meth:`begin`);
    deleted with ``state`` last (:meth:`delete`)."""

    def __init__(self, parent_fd: int, parent: str, jname: str) -> None:
        self.parent_fd = parent_fd
        self.parent = parent
        self.jname = jname
        self.path = os.path.join(parent, jname)
        self.jfd = -1
        self.ident: tuple[int, int] | None = None  # (st_dev, st_ino) of the journal
        self.lock_fd: int | None = None
        self.state: dict[str, Any] = {}

    def stamp(self, **kw: Any) -> None:
        """``kw`` into ``state``, with what every state of this kind of journal says."""
        raise NotImplementedError

    def begin(self, **first: Any) -> None:
        tmp = f"{self.jname}-{os.urandom(4).hex()}"
        os.mkdir(tmp, 0o700, dir_fd=self.parent_fd)
        jfd = _open_own_dir(self.parent_fd, tmp, os.path.join(self.parent, tmp))
        ident = _fd_ident(jfd)
        try:
            self.lock_fd = _new_lock(jfd, self.path)
            self.stamp(**first)
            _write_state(jfd, self.state)
            # Fails (EEXIST) if a journal exists; never replaces anything.
            rename_new(self.parent_fd, tmp, self.parent_fd, self.jname)
        except BaseException:
            os.close(jfd)
            try:
                remove_own(self.parent_fd, self.parent, tmp, ident, budget=0.5)
            finally:
                self.unlock()
            raise
        self.jfd, self.ident = jfd, ident
        _fsync(self.parent_fd)

    def write(self, **kw: Any) -> None:
        self.stamp(**kw)
        _write_state(self.jfd, self.state)

    def unlock(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None

    def close(self) -> None:
        self.unlock()
        if self.jfd >= 0:
            os.close(self.jfd)
            self.jfd = -1

    def delete(self) -> RemoveReport:
        """Close and delete the journal, only the inode it is (old trees, bookkeeping;
        ``state`` and then ``lock`` last, so a journal killed while being deleted still
        says what it is and can be recovered); defers busy files.  A journal replaced by
        another since is left alone (an empty report)."""
        ident = self.ident if self.jfd < 0 else _fd_ident(self.jfd)
        if self.jfd >= 0:
            os.close(self.jfd)
            self.jfd = -1
        if ident is None:
            self.close()
            return RemoveReport()
        # Locked until everything but the lock file is gone: a gc meanwhile finds it busy.
        report = remove_own(
            self.parent_fd,
            self.parent,
            self.jname,
            ident,
            budget=_COMMIT_BUDGET,
            last=("state", _LOCK),
            release=self.close,
        )
        for d in report.deferred:
            log.info("old tree in %s is busy, deferred to %s", self.parent, d.trash)
        return report


class _Txn(_Journal):
    """One transaction on ``name`` in the directory open at ``parent_fd`` (not owned)."""

    def __init__(self, parent_fd: int, parent: str, name: str) -> None:
        super().__init__(parent_fd, parent, journal_name(name))
        self.name = name
        self.dst = os.path.join(parent, name)
        self.new = os.path.join(self.path, "new")

    def begin(self, **first: Any) -> None:
        super().begin(phase="building", old=_ident_at(self.parent_fd, self.name), new=None)

    def stamp(self, **kw: Any) -> None:
        self.state.update(kw)
        self.state.update(version=1, dst=self.name, owner=owner(), time=time.time())

    # -- the end states ---------------------------------------------------------

    def finish(self) -> RemoveReport:
        """Delete the journal (the old tree and the bookkeeping); defers busy files."""
        return self.delete()

    def rollback(self) -> None:
        """Put the old tree back at ``dst`` (if it moved) and delete the journal.  What
        is at ``dst`` is moved aside only if it is the journal's new tree: anything
        else there is someone else's, left alone (RemoveError EPERM, the journal kept)."""
        old = _as_ident(self.state.get("old"))
        if old is not None and _ident_at(self.parent_fd, self.name) != old:
            where = self._find(old)
            if where is not None and where[1] != self.name:
                self._clear_dst(_as_ident(self.state.get("new")))
                _rename(where[0], where[1], self.parent_fd, self.name, new=True)
        if old is not None:
            _restore_mode(self.parent_fd, self.name, old, self.state.get("old_mode"))
        self.finish()

    def roll_forward(self) -> None:
        """Bring the new tree to ``dst`` if it is not there yet, then commit.  What is
        at ``dst`` is moved aside only if it is the journal's old tree (as rollback)."""
        new = _as_ident(self.state.get("new"))
        where = self._find(new) if new is not None else None
        if where is None:
            self.rollback()
            return
        if where[1] != self.name or where[0] != self.parent_fd:
            self._clear_dst(_as_ident(self.state.get("old")))
            _rename(where[0], where[1], self.parent_fd, self.name, new=True)
            _fsync(self.parent_fd)
        _restore_mode(self.parent_fd, self.name, new, self.state.get("new_mode"))
        self.write(phase="committing")
        self.finish()

    def _find(self, ident: tuple[int, int]) -> tuple[int, str] | None:
        if _ident_at(self.parent_fd, self.name) == ident:
            return (self.parent_fd, self.name)
        for n in ("new", "old", *self._parked()):
            if _ident_at(self.jfd, n) == ident:
                return (self.jfd, n)
        return None

    def _parked(self) -> list[str]:
        try:
            return [n for n in os.listdir(self.jfd) if n.startswith("old-")]
        except OSError:
            return []

    def _clear_dst(self, ours: tuple[int, int] | None) -> None:
        """Move what is at ``dst`` into the journal, when it is ``ours`` (one of this
        journal's trees); nothing there: nothing to do; anything else: left alone."""
        here = _ident_at(self.parent_fd, self.name)
        if here is None:
            return
        if ours is None or here != ours:
            raise _leave(self.dst, "holds neither tree of its replace() journal: someone else's")
        self._park(self.parent_fd, self.name, here)

    def _park(self, dir_fd: int, name: str, ident: tuple[int, int]) -> None:
        """Move ``name``, the inode ``ident``, into the journal (anything renamed there
        in between goes back)."""
        target = "old" if not _lexists_at(self.jfd, "old") else f"old-{os.urandom(4).hex()}"
        _rename(dir_fd, name, self.jfd, target, new=True)
        if _ident_at(self.jfd, target) != ident:
            _rename(self.jfd, target, dir_fd, name, new=True)
            raise _leave(self.dst, "replaced by someone else meanwhile")


def _as_ident(v: Any) -> tuple[int, int] | None:
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return (v[0], v[1])
    return None


def _leave(path: str, why: str) -> RemoveError:
    return RemoveError(errno.EPERM, f"left alone: {why}", path)


#: Recovery of a journal of another kind (``state["kind"]``), made by a module built
#: on this one (:mod:`._upgrade`): ``(parent_fd, parent, jname, jfd, lock_fd, state)``,
#: called with the journal open, locked and read; it takes both fds.
if TYPE_CHECKING:
    Recoverer = Callable[[int, str, str, int, int | None, dict[str, Any]], None]


def recover_journal_at(
    parent_fd: int, parent: str, jname: str, *, kinds: Mapping[str, Recoverer] | None = None
) -> bool:
    """Finish or undo the transaction whose journal is ``jname`` in the directory open
    at ``parent_fd``; True if there was one.  A journal of another kind goes to its
    recoverer in ``kinds`` (:func:`._upgrade.recover_journal_at` passes upgrade()'s);
    without one it is left alone.

    Acts only on a journal that is a directory of the caller's holding its ``lock``, a
    regular file of the caller's, free (module docstring): a name proves nothing.
    Raises :class:`TransactionBusy` if a live process still holds it, and
    :class:`~linkstrategy.RemoveError` (EPERM, nothing touched) for a journal that
    is not ours to act on.
    """
    path = os.path.join(parent, jname)
    st = _stat_at(parent_fd, jname)
    if st is None:
        return False
    if not stat.S_ISDIR(st.st_mode):
        raise _leave(path, "named like a replace() journal but not a directory")
    if not may_act(st):
        raise _leave(path, f"journal of uid {st.st_uid}, not the caller's")
    try:
        jfd = os.open(jname, _O_DIR, dir_fd=parent_fd)
    except OSError as e:
        if e.errno in REMOVE_GONE:
            return False
        raise
    made = not jname.endswith(TXN_SUFFIX)  # never renamed into place: dst untouched
    try:
        if _fd_ident(jfd) != (st.st_dev, st.st_ino):
            raise _leave(path, "replaced while opening")
        lock_name = _LOCK
        lock_fd = _take_lock(jfd, path)
        if lock_fd is None and made:  # killed between its mkdir and its lock's rename?
            lock_name = _LOCK_PENDING
            lock_fd = _take_lock(jfd, path, lock_name, grace=GRACE_FILE)
    except BaseException:
        os.close(jfd)
        raise
    if lock_fd is None or os.fstat(lock_fd).st_nlink == 0:
        # No lock file: not a journal, or one being made (its maker creates the lock
        # before anything else) -- left alone, but for an empty directory under the
        # final name (a journal whose deletion was cut short after its lock file:
        # rmdir takes nothing else).  An unlinked one: its maker just deleted it.
        empty = lock_fd is None and not made and not os.listdir(jfd)
        for fd in (jfd, lock_fd):
            if fd is not None:
                os.close(fd)
        if empty:
            return _rmdir_own(parent_fd, jname, (st.st_dev, st.st_ino))
        if lock_fd is None and not made:
            raise _leave(path, "no lock file: not a journal, or one being made")
        return False
    if made:
        _remove_journal(parent_fd, parent, jname, jfd, lock_fd, lock_name)
        return True
    state = _read_state(jfd)
    if not state and _leftover_only(jfd):
        # Killed while removing a committed journal: `state` goes last, so this is
        # its empty end; nothing is left to recover.
        _remove_journal(parent_fd, parent, jname, jfd, lock_fd, lock_name)
        return True
    kind = state.get("kind")
    if kind is not None:
        other = (kinds or {}).get(kind) if isinstance(kind, str) else None
        if other is None:
            os.close(lock_fd)
            os.close(jfd)
            raise _leave(path, f"a journal of kind {kind!r}, not replace()'s")
        other(parent_fd, parent, jname, jfd, lock_fd, state)  # takes both fds
        return True
    name = state.get("dst")
    if (
        not isinstance(name, str)
        or "/" in name
        or name in ("", ".", "..")
        or (journal_name(name) != jname)
    ):
        os.close(lock_fd)
        os.close(jfd)
        raise _leave(path, "its state does not name the destination its name is made from")
    txn = _Txn(parent_fd, parent, name)
    txn.jfd, txn.lock_fd, txn.state = jfd, lock_fd, state
    try:
        phase = state.get("phase")
        log.info("recovering interrupted replace() of %s (phase %s)", txn.dst, phase)
        if phase == "swapping":
            txn.roll_forward()
        elif phase == "committing":
            txn.finish()
        else:
            txn.rollback()
    finally:
        txn.close()
    return True


def _rmdir_own(parent_fd: int, name: str, ident: tuple[int, int]) -> bool:
    """rmdir the empty directory ``name`` if it still is ``ident``; whether it went."""
    if _ident_at(parent_fd, name) != ident:
        return False
    try:
        os.rmdir(name, dir_fd=parent_fd)
    except OSError:
        return False
    return True


def _remove_journal(
    parent_fd: int, parent: str, jname: str, jfd: int, lock_fd: int, lock_name: str
) -> None:
    """Remove a journal with nothing to recover in it, that inode only, locked until
    its lock file ``lock_name`` goes (last)."""
    ident = _fd_ident(jfd)
    os.close(jfd)
    remove_own(
        parent_fd, parent, jname, ident, budget=0.5, last=(lock_name,), release=_closer(lock_fd)
    )


def _closer(fd: int) -> Callable[[], None]:
    """A function that closes ``fd`` the first time it is called."""
    fds = [fd]

    def close() -> None:
        while fds:
            os.close(fds.pop())

    return close


def _leftover_only(jfd: int) -> bool:
    try:
        return set(os.listdir(jfd)) <= {"lock", "state.tmp"}
    except OSError:
        return False


def recover_at(parent_fd: int, parent: str, name: str) -> bool:
    """Recover an interrupted :func:`replace` of ``name`` in the directory open at
    ``parent_fd``, if any (one lstat if none)."""
    jname = journal_name(name)
    st = _stat_at(parent_fd, jname)
    if st is None:
        return False
    return recover_journal_at(parent_fd, parent, jname)


def _open_parent(p: str | os.PathLike[str], *, create: bool) -> tuple[int, str, str]:
    """``(parent fd, real parent path, name)`` for a path argument (see :func:`_split`)."""
    parent, name = _split(os.fspath(p))
    if create:
        os.makedirs(parent, exist_ok=True)
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return fd, fd_path(fd, parent), name


def recover_for(dst: str | os.PathLike[str]) -> bool:
    """Recover an interrupted :func:`replace` of ``dst``, if any (one lstat if none)."""
    try:
        fd, parent, name = _open_parent(dst, create=False)
    except FileNotFoundError:
        return False
    try:
        return recover_at(fd, parent, name)
    finally:
        os.close(fd)


def recover_dir(
    txn_path: str | os.PathLike[str], *, kinds: Mapping[str, Recoverer] | None = None
) -> bool:
    """Finish or undo the transaction whose journal is ``txn_path``; True if there was one.
    (:func:`._upgrade.recover_dir` takes upgrade() journals too.)

    Raises :class:`TransactionBusy` if a live process still holds it.
    """
    try:
        fd, parent, name = _open_parent(txn_path, create=False)
    except FileNotFoundError:
        return False
    try:
        return recover_journal_at(fd, parent, name, kinds=kinds)
    finally:
        os.close(fd)


# -- replace ----------------------------------------------------------------------


def replace(
    src: StrPath,
    dst: StrPath,
    *,
    strategy: StrategyArg = "auto",
    strict: bool | None = None,
    workers: int | None = None,
    files: Iterable[StrPath] | None = None,
    progress: Callable[[int, int], None] | None = None,
    xattrs: bool = True,
    times: bool = True,
    fsync: bool = False,
    copy: Callable[[str], bool] | Iterable[str] | None = None,
    observer: Callable[[str, str], None] | None = None,
) -> PlaceReport:
    """Replace ``dst`` with a placement of ``src``, all or nothing (module docstring).

    The keyword arguments are :func:`~linkstrategy.place`'s.  On any failure the
    old ``dst`` is left exactly as it was and the error is raised unchanged; busy
    files of the old tree are deferred to the trash.

    >>> import linkstrategy, pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "v2").mkdir(), (d / "v2" / "a").write_text("2")
    >>> _ = (d / "site").mkdir(), (d / "site" / "a").write_text("1")
    >>> _ = replace(d / "v2", d / "site")
    >>> (d / "site" / "a").read_text()
    '2'
    """
    from ._place import place  # lazy: place pulls in planning and probing

    # Checked here, before the transaction begins (place() would check them too late:
    # after the journal is made, a TypeError would be rolled back like a failure).
    s, d = _args.path(src, "replace(): src"), _args.path(dst, "replace(): dst")
    place_kwargs: dict[str, Any] = {
        "strategy": strategy,
        "strict": strict,
        "workers": _args.workers(workers, "replace(): workers="),
        "files": None if files is None else _args.many(files, "files="),
        "progress": progress,
        "xattrs": xattrs,
        "times": times,
        "fsync": fsync,
        "copy": copy,
        "observer": observer,
    }
    try:
        pfd, parent, name = _open_parent(d, create=True)
    except RemoveError as e:
        raise PlaceError(
            e.errno or 0, str(e.strerror).replace("remove", "replace"), s, e.filename
        ) from None
    try:
        recover_at(pfd, parent, name)
        _collect_trash_at(pfd, parent, 5.0)
        txn = _Txn(pfd, parent, name)
        try:
            txn.begin()
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            recover_at(pfd, parent, name)  # a journal appeared since: busy if its owner lives
            txn.begin()
        try:
            report = _swap_in(txn, s, place, place_kwargs)
        except BaseException:
            try:
                txn.rollback()  # the old tree is found by inode wherever the swap left it
            except Exception:  # rollback never masks the original error
                log.warning(
                    "rollback of replace(%s) failed; the next call recovers", txn.dst, exc_info=True
                )
            finally:
                txn.close()
            raise
        try:
            txn.finish()  # still locked: a gc meanwhile leaves it to us
        finally:
            txn.close()
    finally:
        os.close(pfd)
    return record_replace(report, dst=d)


def _swap_in(txn: _Txn, src: str, place: Any, place_kwargs: dict[str, Any]) -> PlaceReport:
    pfd, name = txn.parent_fd, txn.name
    _step("building")
    # Placed through the journal's fd (/proc/self/fd/N/new: the kernel resolves the
    # magic link to the open directory itself), never through the parent's path,
    # which the parent's owner could have pointed elsewhere since it was opened.
    via = f"/proc/self/fd/{txn.jfd}" if os.path.isdir("/proc/self/fd") else txn.path
    try:
        report: PlaceReport = place(src, os.path.join(via, "new"), **place_kwargs)
    except OSError as e:
        for attr in ("filename", "filename2"):
            v = getattr(e, attr)
            if isinstance(v, str) and v.startswith(via + "/"):
                setattr(e, attr, txn.path + v[len(via) :])
        raise
    _step("placed")
    new = _ident_at(txn.jfd, "new")
    if new is None:
        raise LinkStrategyError(errno.ENOENT, "placed tree vanished", txn.new)
    old = _as_ident(txn.state.get("old"))
    if _ident_at(pfd, name) != old:
        raise _changed(txn, old)
    try:
        new_mode = _writable_top(txn.jfd, "new")
        old_mode = _writable_top(pfd, name) if old is not None else None
    except PermissionError as e:
        raise PlaceError(
            errno.EACCES,
            f"cannot swap a read-only directory not owned by you ({e.strerror})",
            txn.new,
            None,
            txn.dst,
        ) from None
    txn.write(phase="swapping", new=new, new_mode=new_mode, old_mode=old_mode)
    _step("swapping")
    try:
        _swap(txn, old)
    except FileExistsError:
        raise _changed(txn, old) from None
    except OSError as e:
        if e.errno in REMOVE_PERMISSION:
            raise PlaceError(
                e.errno or 0, f"cannot swap the new tree in: {e.strerror}", txn.new, None, txn.dst
            ) from None
        raise
    _fsync(pfd)
    _restore_mode(pfd, name, new, new_mode)
    _step("swapped")
    if old is not None and name.endswith(".py"):  # a module replaced: its bytecode
        drop_bytecode_beside(pfd, {name})
    txn.write(phase="committing")
    _step("committing")
    return report


def _swap(txn: _Txn, old: tuple[int, int] | None) -> None:
    """Put the new tree at ``dst`` in place of ``old``, the tree the journal recorded
    there (None: nothing): whatever else is there by then is someone else's, given
    back untouched (:func:`_changed`).  One exchange, or two renames where the
    filesystem cannot exchange; never a rename over anything."""
    pfd, name = txn.parent_fd, txn.name
    if old is None:
        _rename(txn.jfd, "new", pfd, name, new=True)  # FileExistsError: one appeared
    elif _exchange(txn.jfd, "new", pfd, name):
        if _ident_at(txn.jfd, "new") != old:  # replaced between the check and the swap
            _exchange(txn.jfd, "new", pfd, name)
            raise _changed(txn, old)
    else:
        _rename(pfd, name, txn.jfd, "old", new=True)
        _step("moved-old")
        if _ident_at(txn.jfd, "old") != old:
            _rename(txn.jfd, "old", pfd, name, new=True)
            raise _changed(txn, old)
        _rename(txn.jfd, "new", pfd, name, new=True)


def _changed(txn: _Txn, old: tuple[int, int] | None) -> PlaceError:
    """dst is no longer what it was when replace() began: another process's."""
    if old is None:
        code, what = errno.EEXIST, "created by someone else while replace() was building"
    else:
        code, what = errno.EBUSY, "changed by someone else while replace() was building"
    return PlaceError(code, what, txn.new, None, txn.dst)


# -- staging ----------------------------------------------------------------------


def _same_place(a: str, b: str) -> bool:
    try:
        if os.stat(a).st_dev != os.stat(b).st_dev:  # also tells btrfs subvolumes apart
            return False
    except OSError:
        return False
    ma, mb = mount_id_of(os.path.realpath(a)), mount_id_of(os.path.realpath(b))
    return ma is not None and ma == mb


_stage_seq = itertools.count()


@contextlib.contextmanager
def staging_dir(dst: StrPath) -> Iterator[Path]:
    """An empty directory on the same mount (and btrfs subvolume) as ``dst``.

    Unpack there, then rename or hardlink into place instead of copying across
    filesystems.  Removed on exit (busy files deferred to the trash).

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with staging_dir(d / "pkg") as tmp:
    ...     _ = (tmp / "f").write_text("x")
    ...     os.rename(tmp / "f", d / "f")
    >>> (d / "f").read_text(), list(d.iterdir()) == [d / "f"]
    ('x', True)
    """
    pfd, parent, name = _open_parent(_args.path(dst, "staging_dir(): dst"), create=True)
    try:
        tmpdir = os.environ.get("TMPDIR")
        if tmpdir and os.path.isdir(tmpdir) and _same_place(tmpdir, parent):
            hfd = os.open(tmpdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            os.close(pfd)
            pfd, parent, prefix = hfd, fd_path(hfd, tmpdir), STAGE_MARK
        else:
            prefix = stage_prefix(name)
        while True:
            sname = f"{prefix}{owner()}-{next(_stage_seq)}"
            try:
                os.mkdir(sname, 0o700, dir_fd=pfd)
                break
            except FileExistsError:
                continue
        sfd = _open_own_dir(pfd, sname, os.path.join(parent, sname))
        sident = _fd_ident(sfd)
        lock_fd: int | None = None
        try:
            lock_fd = hold(sfd)
            os.mkdir("tree", 0o700, dir_fd=sfd)
            from pathlib import Path  # (pathlib brings re, fnmatch, urllib: not at import)

            yield Path(parent, sname, "tree")
        finally:
            os.close(sfd)
            # That inode only; its lock file last, held until then.
            release = _closer(lock_fd) if lock_fd is not None else None
            remove_own(pfd, parent, sname, sident, budget=1.0, last=(LOCK_NAME,), release=release)
    finally:
        os.close(pfd)
