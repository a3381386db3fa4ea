"""All-or-nothing replacement of a file or tree, and staging next to a destination.

:func:`replace` ``(src, dst)`` keeps ``dst`` at every moment either the complete
old tree or the complete new one, also across ``kill -9``.  The journal is a
hidden directory next to ``dst``, ``<parent>/.<name>.linkstrategy-txn/``:

``lock``
    A file the running transaction holds ``flock(LOCK_EX)`` on.  The kernel drops
    the lock when the process dies, so a lock that can be taken means nobody is
    working on this transaction any more and it may be recovered.  (The Linux NFS
    client turns flock into a POSIX lock on the server, so this holds across
    clients too.)
``state``
    JSON, replaced atomically (write ``state.tmp``, fsync, rename, fsync the
    directory): ``{"version": 1, "dst": name, "phase": ..., "old": [dev, ino] |
    null, "new": [dev, ino] | null, "pid": ..., "time": ...}``.
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
2. phase ``swapping`` (records the inode of the new tree): ``renameat2(txn/new,
   dst, RENAME_EXCHANGE)`` where the filesystem has it (ext4, XFS, btrfs, tmpfs):
   one atomic step, ``dst`` is never missing.  Elsewhere (NFS, many FUSE
   filesystems): ``rename(dst, txn/old)`` then ``rename(txn/new, dst)``; a kill
   between the two leaves ``dst`` missing until the next call rolls forward.
3. phase ``committing``: the old tree is removed with :func:`remove` (busy files
   deferred to the trash), then the journal.

Recovery (:func:`recover_for`, :func:`recover_dir`), run by the next
:func:`replace` or :func:`~linkstrategy.remove` on that ``dst`` and by ``gc``:
the trees are found by the inodes recorded in ``state`` (whatever names they have
after an exchange or half a pair of renames).  ``building``: roll back (the old
tree is put back at ``dst`` if needed, the journal deleted).  ``swapping``: roll
forward when the new tree is intact (it was complete before this phase was
written), else back.  ``committing``: finish the removal.

This order (build aside, then swap) deliberately differs from "move the old tree
aside, then place": readers of ``dst`` never see it missing while a tree is
being placed, and a failed placement has nothing to undo at ``dst``.

:func:`staging_dir` ``(dst)`` yields an empty directory on the same mount as
``dst`` for unpacking, so that the result can be renamed or hardlinked into
place: ``$TMPDIR`` when it is on the same mount (mount ID) and btrfs subvolume
(``st_dev``) as ``dst``'s parent, else a hidden sibling
``<parent>/.<name>.linkstrategy-stage-<host>-<pid>-<random>``; removed on exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import secrets
import stat
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace as _dc_replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import REMOVE_GONE, REMOVE_RETRY, LinkStrategyError, TransactionBusy
from ._mounts import mount_id_of
from ._owner import HOST, pid_alive
from ._remove import RemoveReport, StrPath, collect_trash, remove
from ._syscalls import libc

if TYPE_CHECKING:
    from ._place import PlaceReport
    from ._plan import StrategyArg

__all__ = ["recover_dir", "recover_for", "replace", "staging_dir"]

log = logging.getLogger("linkstrategy")

TXN_SUFFIX = ".linkstrategy-txn"
STAGE_MARK = ".linkstrategy-stage-"
_STALE_FOREIGN_STAGE = 86400.0  # another host's staging dirs: removed after a day
_COMMIT_BUDGET = 2.0
_RENAME_BUDGET = 2.0

#: Called with the name of each step of replace() as it is reached, when set.  A
#: seam for the kill -9 tests (their child process sets it); None in normal use.
step_hook: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if step_hook is not None:
        step_hook(name)


# -- renameat2 ----------------------------------------------------------------------

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_renameat2_fn: Any = None  # None: not looked up; False: unavailable


def _exchange(a: str, b: str) -> bool:
    """Swap ``a`` and ``b`` atomically; False where the kernel or filesystem cannot."""
    global _renameat2_fn
    if _renameat2_fn is None:
        _renameat2_fn = False
        if sys.platform.startswith("linux"):
            try:
                fn = libc().renameat2
                fn.argtypes = [
                    ctypes.c_int,
                    ctypes.c_char_p,
                    ctypes.c_int,
                    ctypes.c_char_p,
                    ctypes.c_uint,
                ]
                fn.restype = ctypes.c_int
                _renameat2_fn = fn
            except (OSError, AttributeError):
                pass
    if _renameat2_fn is False:
        return False
    delay, deadline = 0.01, time.monotonic() + _RENAME_BUDGET
    while True:
        rc = _renameat2_fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
        if rc == 0:
            return True
        code = ctypes.get_errno()
        # EINVAL: the filesystem has no RENAME_EXCHANGE (NFS, FUSE without it);
        # ENOSYS: kernel < 3.15 or seccomp; EOPNOTSUPP: some FUSE daemons.
        if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            return False
        if code not in REMOVE_RETRY or time.monotonic() + delay > deadline:
            raise OSError(code, os.strerror(code), a, None, b)
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def _rename(a: str, b: str) -> None:
    """rename(2), retrying busy errors (NFS, Windows-style sharing) with backoff."""
    delay, deadline = 0.01, time.monotonic() + _RENAME_BUDGET
    while True:
        try:
            os.rename(a, b)
            return
        except OSError as e:
            if e.errno not in REMOVE_RETRY or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


# -- journal ----------------------------------------------------------------------


def journal_name(name: str) -> str:
    """The journal's name for a destination called ``name``."""
    full = f".{name}{TXN_SUFFIX}"
    if len(os.fsencode(full)) <= 200:
        return full
    digest = f"{zlib.crc32(os.fsencode(name)):08x}"
    short = os.fsdecode(os.fsencode(name)[:150])
    return f".{short}-{digest}{TXN_SUFFIX}"


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_state(txn: str, state: dict[str, Any]) -> None:
    tmp = os.path.join(txn, "state.tmp")
    data = json.dumps(state).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, os.path.join(txn, "state"))
    _fsync_dir(txn)


def _read_state(txn: str) -> dict[str, Any]:
    try:
        with open(os.path.join(txn, "state"), "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _ident(path: str) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _lock(txn: str, *, create: bool) -> int | None:
    """Take the journal's lock; its fd, None if there is no lock file.

    Raises :class:`TransactionBusy` when a live process holds it.
    """
    import fcntl

    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(os.path.join(txn, "lock"), flags, 0o600)
    except FileNotFoundError:
        if create:
            raise
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise TransactionBusy(errno.EBUSY, "another process is replacing this path", txn) from None
    except OSError as e:
        # ENOLCK/EOPNOTSUPP: a filesystem without locks; go on unlocked.
        log.debug("no lock for %s: %s", txn, e)
    return fd


class _Txn:
    def __init__(self, dst: str) -> None:
        self.dst = dst
        self.parent, self.name = os.path.split(dst)
        self.path = os.path.join(self.parent, journal_name(self.name))
        self.new = os.path.join(self.path, "new")
        self.old = os.path.join(self.path, "old")
        self.lock_fd: int | None = None
        self.state: dict[str, Any] = {}

    def begin(self) -> None:
        tmp = f"{self.path}-{secrets.token_hex(4)}"
        os.mkdir(tmp, 0o700)
        try:
            self.lock_fd = _lock(tmp, create=True)
            self.set(phase="building", old=_ident(self.dst), new=None)
            _write_state(tmp, self.state)
            os.rename(tmp, self.path)  # fails (ENOTEMPTY/EEXIST) if a journal exists
        except BaseException:
            self.unlock()
            remove(tmp, budget=0.5)
            raise
        _fsync_dir(self.parent)

    def set(self, **kw: Any) -> None:
        self.state.update(kw)
        self.state.update(version=1, dst=self.name, pid=os.getpid(), host=HOST, time=time.time())

    def write(self, **kw: Any) -> None:
        self.set(**kw)
        _write_state(self.path, self.state)

    def unlock(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None

    # -- the end states ---------------------------------------------------------

    def finish(self) -> RemoveReport:
        """Delete the journal (the old tree and the bookkeeping); defers busy files."""
        self.unlock()
        report = remove(self.path, budget=_COMMIT_BUDGET)
        for d in report.deferred:
            log.info("old tree of %s is busy, deferred to %s", self.dst, d.trash)
        return report

    def rollback(self) -> None:
        """Put the old tree back at ``dst`` (if it moved) and delete the journal."""
        old = _as_ident(self.state.get("old"))
        if old is not None and _ident(self.dst) != old:
            where = self._find(old)
            if where is not None and where != self.dst:
                if os.path.lexists(self.dst):
                    self._park(self.dst)
                _rename(where, self.dst)
        self.finish()

    def roll_forward(self) -> None:
        """Bring the new tree to ``dst`` if it is not there yet, then commit."""
        new = _as_ident(self.state.get("new"))
        where = self._find(new) if new is not None else None
        if where is None:
            self.rollback()
            return
        if where != self.dst:
            if os.path.lexists(self.dst):
                self._park(self.dst)
            _rename(where, self.dst)
            _fsync_dir(self.parent)
        self.write(phase="committing")
        self.finish()

    def _find(self, ident: tuple[int, int]) -> str | None:
        for p in (self.dst, self.new, self.old, *self._parked()):
            if _ident(p) == ident:
                return p
        return None

    def _parked(self) -> list[str]:
        try:
            return [
                os.path.join(self.path, n) for n in os.listdir(self.path) if n.startswith("old-")
            ]
        except OSError:
            return []

    def _park(self, path: str) -> None:
        target = (
            self.old
            if not os.path.lexists(self.old)
            else os.path.join(self.path, f"old-{secrets.token_hex(4)}")
        )
        _rename(path, target)


def _as_ident(v: Any) -> tuple[int, int] | None:
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return (v[0], v[1])
    return None


def recover_dir(txn_path: StrPath) -> bool:
    """Finish or undo the transaction whose journal is ``txn_path``; True if there was one.

    Raises :class:`TransactionBusy` if a live process still holds it.
    """
    path = os.path.abspath(os.fspath(txn_path))
    base = os.path.basename(path)
    if not os.path.isdir(path) or os.path.islink(path):
        return False
    lock_fd = _lock(path, create=False)
    try:
        if not base.endswith(TXN_SUFFIX):
            # A journal that was never renamed into place: nothing happened to dst.
            if lock_fd is not None:
                os.close(lock_fd)
                lock_fd = None
            remove(path, budget=0.5)
            return True
        state = _read_state(path)
        name = state.get("dst")
        if not isinstance(name, str) or "/" in name or journal_name(name) != base:
            # Unreadable state: the journal was made with a state, so this is not
            # ours or is damaged; the old tree, if anywhere, is still at dst.
            name = base[1 : -len(TXN_SUFFIX)]
        txn = _Txn(os.path.join(os.path.dirname(path), name))
        txn.path = path
        txn.new = os.path.join(path, "new")
        txn.old = os.path.join(path, "old")
        txn.lock_fd, lock_fd = lock_fd, None
        txn.state = state
        phase = state.get("phase")
        log.info("recovering interrupted replace() of %s (phase %s)", txn.dst, phase)
        if phase == "swapping":
            txn.roll_forward()
        elif phase == "committing":
            txn.finish()
        else:
            txn.rollback()
        return True
    finally:
        if lock_fd is not None:
            os.close(lock_fd)


def recover_for(dst: StrPath) -> bool:
    """Recover an interrupted :func:`replace` of ``dst``, if any (one lstat if none)."""
    d = os.path.abspath(os.fspath(dst))
    parent, name = os.path.split(d)
    if not name:
        return False
    txn = os.path.join(parent, journal_name(name))
    try:
        st = os.lstat(txn)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        return False
    return recover_dir(txn)


# -- replace ----------------------------------------------------------------------


def replace(
    src: StrPath,
    dst: StrPath,
    *,
    strategy: StrategyArg = "auto",
    strict: bool | None = None,
    workers: int | None = None,
    files: Iterable[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    xattrs: bool = True,
    fsync: bool = False,
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

    place_kwargs: dict[str, Any] = {
        "strategy": strategy,
        "strict": strict,
        "workers": workers,
        "files": files,
        "progress": progress,
        "xattrs": xattrs,
        "fsync": fsync,
    }
    d = os.path.abspath(os.fspath(dst))
    parent, name = os.path.split(d)
    if not name:
        raise LinkStrategyError(errno.EINVAL, "cannot replace the root directory", d)
    os.makedirs(parent, exist_ok=True)
    recover_for(d)
    collect_trash(parent)
    txn = _Txn(d)
    try:
        txn.begin()
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        recover_for(d)  # a journal appeared since: TransactionBusy if its owner lives
        txn.begin()
    try:
        _step("building")
        report = place(src, txn.new, **place_kwargs)
        _step("placed")
        new = _ident(txn.new)
        if new is None:
            raise LinkStrategyError(errno.ENOENT, "placed tree vanished", txn.new)
        txn.write(phase="swapping", new=new)
        _step("swapping")
        old = _ident(d)
        if old is not None and _exchange(txn.new, d):
            pass
        else:
            if old is not None:
                _rename(d, txn.old)
                _step("moved-old")
            _rename(txn.new, d)
        _fsync_dir(parent)
        _step("swapped")
        txn.write(phase="committing")
        _step("committing")
    except BaseException:
        try:
            txn.rollback()  # the old tree is found by inode wherever the swap left it
        except Exception:  # rollback never masks the original error
            log.warning("rollback of replace(%s) failed; the next call recovers", d, exc_info=True)
        raise
    txn.finish()
    return _dc_replace(report, dst=os.fspath(dst))


# -- staging ----------------------------------------------------------------------


def _same_place(a: str, b: str) -> bool:
    try:
        if os.stat(a).st_dev != os.stat(b).st_dev:  # also tells btrfs subvolumes apart
            return False
    except OSError:
        return False
    ma, mb = mount_id_of(os.path.realpath(a)), mount_id_of(os.path.realpath(b))
    return ma is not None and ma == mb


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
    d = os.path.abspath(os.fspath(dst))
    parent, name = os.path.split(d)
    os.makedirs(parent, exist_ok=True)
    tmpdir = os.environ.get("TMPDIR")
    if tmpdir and os.path.isdir(tmpdir) and _same_place(tmpdir, parent):
        path = tempfile.mkdtemp(prefix=f"linkstrategy-stage-{HOST}-{os.getpid()}-", dir=tmpdir)
    else:
        short = os.fsdecode(os.fsencode(name)[:100])
        path = tempfile.mkdtemp(prefix=f".{short}{STAGE_MARK}{HOST}-{os.getpid()}-", dir=parent)
    try:
        yield Path(path)
    finally:
        remove(path, budget=1.0)


def reap_stage(path: StrPath) -> bool:
    """Remove a staging directory left by a dead process; True if removed."""
    p = os.fspath(path)
    tail = os.path.basename(p).rpartition(STAGE_MARK)[2]
    host, _, rest = tail.partition("-")
    pid_s = rest.partition("-")[0]
    if host == HOST and pid_s.isdigit():
        if pid_alive(int(pid_s)):
            return False
    else:
        try:
            if time.time() - os.lstat(p).st_mtime < _STALE_FOREIGN_STAGE:
                return False
        except OSError as e:
            if e.errno in REMOVE_GONE:
                return False
            raise
    remove(p, budget=0.5)
    return True
