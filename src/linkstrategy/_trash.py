"""The trash: where :func:`~linkstrategy.remove` puts a root it could not remove in time,
and how it is emptied later (:func:`collect_trash`, by ``remove()``, ``place()`` and ``gc()``).

A deferred root is moved with one ``rename`` into a trash directory that is a
sibling of the root (same mount, same btrfs subvolume: the rename cannot give
EXDEV) and named ``<unix time>-<pid>-<random>-<name>`` there.

**Whose trash.**  The trash directory is made by the user who defers, mode 0700,
and used only while it belongs to that user:

* ``.linkstrategy-trash`` where the parent directory is the caller's own and not
  sticky (a project tree, a virtualenv, a private cache);
* ``.linkstrategy-trash-<euid>`` where the parent is shared: owned by someone else
  or sticky (``/tmp``, a group cache, root working in a user's directory).  Each
  user has their own, so one user's 0700 trash never makes another user's
  deferral fail, and no user can prepare a trash for another: a trash directory
  whose owner is not the caller is never used, only reported.

**Through file descriptors.**  A trash directory is always opened relative to an
fd of its parent with ``O_NOFOLLOW | O_DIRECTORY`` and checked (a directory owned
by the expected user) on that fd before anything is renamed into it or removed
from it; a symlink swapped in for it fails the open.  The trash directories this
process made are remembered (to collect them again later, on the same
filesystem) by path *and* by ``(st_dev, st_ino)`` of both the parent and the
trash; a remembered trash is used again only when both still are those inodes
and the trash is still ours.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections.abc import Sequence

from ._errors import RemoveError, remove_action
from ._log import log
from ._record import record
from ._removal import entry_root, passes, remove_entry, rmdir_busy
from ._sys import fd_path
from ._tree import Deferred, RemoveFailure, RemoveReport, Run, StrPath

__all__ = [
    "TRASH_NAME",
    "KnownTrash",
    "collect_trash",
    "collect_trash_at",
    "empty_trash",
    "forget",
    "is_trash_name",
    "known_on",
    "move_to_trash",
    "open_trash",
    "remember",
    "remove_at",
    "reopen_known",
    "trash_age",
    "trash_name_for",
]


#: Name of the trash directory in a directory of the caller's own.
TRASH_NAME = ".linkstrategy-trash"

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def trash_name_for(parent: os.stat_result) -> str:
    """The trash directory's name in a directory with stat ``parent`` (docstring)."""
    euid = os.geteuid()
    if parent.st_uid == euid and not parent.st_mode & stat.S_ISVTX:
        return TRASH_NAME
    return f"{TRASH_NAME}-{euid}"


def is_trash_name(name: str) -> bool:
    """Whether ``name`` is a trash directory's name (anyone's)."""
    if name == TRASH_NAME:
        return True
    tail = name[len(TRASH_NAME) + 1 :]
    return name.startswith(TRASH_NAME + "-") and tail.isdigit() and tail.isascii()


def trash_age(name: str, now: float) -> float:
    """Seconds since the entry ``name`` was moved into a trash (inf: not our format)."""
    head = name.split("-", 1)[0]
    return now - int(head) if head.isdigit() and head.isascii() else float("inf")


def _entry_name(name: str) -> str:
    prefix = f"{int(time.time())}-{os.getpid()}-{os.urandom(3).hex()}-"
    raw = os.fsencode(name)[: 255 - len(prefix)]
    return prefix + os.fsdecode(raw)


def open_trash(parent_fd: int, name: str, path: str, *, uid: int | None = None) -> int:
    """Open the trash directory ``name`` in the directory open at ``parent_fd``.

    Never follows a symlink; the directory must belong to ``uid`` (default: the
    caller).  Raises :class:`OSError` (ELOOP, ENOTDIR, ENOENT...) or
    :class:`RemoveError` (EPERM, another user's) with ``path`` named.
    """
    fd = os.open(name, _O_DIR, dir_fd=parent_fd)
    try:
        st = os.fstat(fd)
        want = os.geteuid() if uid is None else uid
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != want:
            raise RemoveError(
                errno.EPERM, f"trash directory belongs to uid {st.st_uid}: not used", path
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def move_to_trash(parent_fd: int, parent: str, name: str) -> str:
    """Rename ``name`` (in the directory open at ``parent_fd``, whose path is
    ``parent``) into the caller's trash there; returns its new path."""
    tname_dir = trash_name_for(os.fstat(parent_fd))
    tpath = os.path.join(parent, tname_dir)
    last: OSError | None = None
    for _ in range(3):
        try:
            os.mkdir(tname_dir, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            pass
        try:
            tfd = open_trash(parent_fd, tname_dir, tpath)
        except FileNotFoundError as e:  # another process emptied and removed it: again
            last = e
            continue
        except OSError as e:
            raise RemoveError(
                e.errno or 0, f"cannot use trash directory: {e.strerror}", tpath
            ) from None
        try:
            tname = _entry_name(name)
            os.rename(name, tname, src_dir_fd=parent_fd, dst_dir_fd=tfd)
            remember(parent_fd, tfd, tpath)
        except FileNotFoundError as e:
            # Either the entry went (fine) or the trash directory did (again).
            os.stat(name, dir_fd=parent_fd, follow_symlinks=False)  # raises if gone
            last = e
            continue
        finally:
            os.close(tfd)
        return os.path.join(tpath, tname)
    assert last is not None
    raise last


# -- the trash directories this process made ---------------------------------------------


@record(frozen=True)
class KnownTrash:
    """A trash directory this process made: where, and which inodes it was."""

    path: str
    parent: tuple[int, int]
    trash: tuple[int, int]


_known: dict[str, KnownTrash] = {}
_known_lock = threading.Lock()


def remember(parent_fd: int, trash_fd: int, path: str) -> None:
    p, t = os.fstat(parent_fd), os.fstat(trash_fd)
    with _known_lock:
        _known[path] = KnownTrash(path, (p.st_dev, p.st_ino), (t.st_dev, t.st_ino))


def forget(path: str) -> None:
    with _known_lock:
        _known.pop(path, None)


def known_on(dev: int) -> list[KnownTrash]:
    """The remembered trash directories on the filesystem ``dev``."""
    with _known_lock:
        return [k for k in _known.values() if k.trash[0] == dev]


def reopen_known(k: KnownTrash) -> tuple[int, int] | None:
    """``(parent_fd, trash_fd)`` of a remembered trash, when its parent and itself are
    still the inodes they were and it is still ours; else forgets it and returns None."""
    parent, name = os.path.split(k.path)
    try:
        pfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        forget(k.path)
        return None
    try:
        pst = os.fstat(pfd)
        if (pst.st_dev, pst.st_ino) != k.parent:
            raise OSError(errno.ESTALE, "parent replaced")
        tfd = open_trash(pfd, name, k.path)
        tst = os.fstat(tfd)
        if (tst.st_dev, tst.st_ino) != k.trash:
            os.close(tfd)
            raise OSError(errno.ESTALE, "trash replaced")
    except OSError:
        os.close(pfd)
        forget(k.path)
        return None
    return pfd, tfd


def remove_at(
    parent_fd: int, parent: str, name: str, *, budget: float = 5.0, last: Sequence[str] = ()
) -> RemoveReport:
    """Remove ``name`` in the directory open at ``parent_fd`` (real path ``parent``)
    with the engine; what is still busy after ``budget`` seconds is moved into the
    trash there (:func:`move_to_trash`).  For replace()'s journals and temporaries."""
    return remove_entry(parent_fd, parent, name, budget=budget, last=last, defer=move_to_trash)


# -- emptying the trash -----------------------------------------------------------------


def empty_trash(
    run: Run, parent_fd: int, name: str, trash_fd: int, trash: str, min_age: float
) -> None:
    """Remove entries older than ``min_age`` from the trash directory open at
    ``trash_fd`` (``name`` in ``parent_fd``), then the trash directory if empty."""
    try:
        names = os.listdir(trash_fd)
        tst = os.fstat(trash_fd)
    except OSError as e:
        if remove_action(e.errno) != "gone":
            run.errors.append(RemoveFailure(trash, e.errno or 0, "cannot list trash"))
        return
    now = time.time()
    old = [n for n in names if trash_age(n, now) >= min_age]
    roots = [r for n in old if (r := entry_root(run, trash_fd, trash, n, strict=False))]
    passes(run, roots)
    for r in roots:
        if not r.done and not r.outcome.error and (r.outcome.silly or r.outcome.retry):
            reason = "still held open" if r.outcome.silly else "still busy"
            run.deferred.append(Deferred(r.path, r.path, reason))
    ident = (tst.st_dev, tst.st_ino)
    if (
        len(old) == len(names)
        and all(r.done for r in roots)
        and rmdir_busy(run, parent_fd, name, trash, ident)
    ):
        forget(trash)


def collect_trash_at(dir_fd: int, directory: str, min_age: float) -> None:
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
    run = Run(0.0, None)
    try:
        for pfd, tfd, name, tpath in candidates:
            empty_trash(run, dir_fd if pfd < 0 else pfd, name, tfd, tpath, min_age)
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
        collect_trash_at(fd, fd_path(fd, d), min_age)
    finally:
        os.close(fd)
