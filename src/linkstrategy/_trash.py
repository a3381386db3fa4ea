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

**Proven, not named.**  A directory is a trash directory only if it provably is
one, never because of its name: another user who may rename in the parent (any
shared directory that is not sticky; the owner of a directory root works in) can
give any directory of the caller's the trash's name.  So the library makes a trash
directory under a name of its own, puts in it a marker :data:`MARKER_NAME`
(created ``O_EXCL | O_NOFOLLOW``, so the caller's) that names the trash
directory's own ``(st_dev, st_ino)``, and only then renames it to the trash name
(``RENAME_NOREPLACE`` where the filesystem has it).  :func:`open_trash` uses a
directory only when it is the caller's, has mode 0700 and holds that marker naming
it; anything else under a trash name is left alone (``gc`` lists it in
``foreign``).  And only entries named in the trash-entry format
(:func:`is_trash_entry`) are ever removed from a trash directory.  Trash
directories of versions before the marker are left alone, like any other directory.

**Through file descriptors.**  A trash directory is always opened relative to an
fd of its parent with ``O_NOFOLLOW | O_DIRECTORY`` and checked (above) on that fd
before anything is renamed into it or removed from it; a symlink swapped in for it
fails the open.  The trash directories this
process made are remembered (to collect them again later, on the same
filesystem) by path *and* by ``(st_dev, st_ino)`` of both the parent and the
trash; a remembered trash is used again only when both still are those inodes
and the trash is still ours.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import stat
import threading
import time
from collections.abc import Callable, Sequence

from ._errors import RemoveError, remove_action
from ._log import log
from ._owner import owner
from ._record import record
from ._removal import entry_root, passes, remove_entry, rmdir_busy
from ._sys import fd_path, rename_new
from ._tree import Deferred, RemoveFailure, RemoveReport, Run

__all__ = [
    "MARKER_NAME",
    "TRASH_NAME",
    "KnownTrash",
    "collect_trash",
    "collect_trash_at",
    "empty_trash",
    "forget",
    "is_trash_entry",
    "is_trash_name",
    "known_on",
    "move_to_trash",
    "open_trash",
    "remember",
    "remove_at",
    "remove_own",
    "reopen_known",
    "trash_age",
    "trash_name_for",
]


#: Name of the trash directory in a directory of the caller's own.
TRASH_NAME = ".linkstrategy-trash"
#: The file in a trash directory that proves it is one: ``linkstrategy-trash <st_dev>
#: <st_ino>`` of the trash directory itself, made by its owner (module docstring).
MARKER_NAME = ".linkstrategy-trash-marker"
#: The mode of a trash directory.
TRASH_MODE = 0o700

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_MARKER_TAG = "linkstrategy-trash"


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


def is_trash_entry(name: str) -> bool:
    """Whether ``name`` has the format of an entry :func:`move_to_trash` made:
    ``<unix time>-<pid>-<6 hex>-<name>``."""
    parts = name.split("-", 3)
    return (
        len(parts) == 4
        and all(p.isdigit() and p.isascii() for p in parts[:2])
        and len(parts[2]) == 6
        and all(c in "0123456789abcdef" for c in parts[2])
    )


def trash_age(name: str, now: float) -> float | None:
    """Seconds since the entry ``name`` was moved into a trash; None for a name not in
    the trash-entry format (:func:`is_trash_entry`), which is never old: not ours."""
    return now - int(name.split("-", 1)[0]) if is_trash_entry(name) else None


def _entry_name(name: str) -> str:
    prefix = f"{int(time.time())}-{os.getpid()}-{os.urandom(3).hex()}-"
    raw = os.fsencode(name)[: 255 - len(prefix)]
    return prefix + os.fsdecode(raw)


def _not_trash(path: str, why: str, code: int = errno.EPERM) -> RemoveError:
    return RemoveError(code, f"not a linkstrategy trash directory ({why}): left alone", path)


def open_trash(parent_fd: int, name: str, path: str) -> int:
    """Open the trash directory ``name`` in the directory open at ``parent_fd``.

    Never follows a symlink; the directory must be the caller's, have mode 0700 and
    hold the marker naming it (module docstring).  Raises :class:`OSError` (ELOOP,
    ENOTDIR, ENOENT...) or :class:`RemoveError` (EPERM: not a trash directory of the
    caller's, left alone) with ``path`` named.
    """
    fd = os.open(name, _O_DIR, dir_fd=parent_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            raise RemoveError(errno.EPERM, f"belongs to uid {st.st_uid}: not used", path)
        if stat.S_IMODE(st.st_mode) != TRASH_MODE:
            raise _not_trash(path, f"mode {stat.S_IMODE(st.st_mode):o}")
        if _read_marker(fd, st.st_uid) != (st.st_dev, st.st_ino):
            # EAGAIN: one of ours might be between its marker's unlink and its rmdir
            # (emptied by another process just now); a caller may look again.
            raise _not_trash(path, "no marker naming it", errno.EAGAIN)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_marker(trash_fd: int, uid: int) -> tuple[int, int] | None:
    """The ``(st_dev, st_ino)`` the marker in the directory open at ``trash_fd``
    names; None if there is none that is a small regular file of ``uid``'s (the
    trash directory's owner)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(MARKER_NAME, flags, dir_fd=trash_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != uid or st.st_size > 256:
            return None
        words = os.read(fd, 256).split()
    except OSError:
        return None
    finally:
        os.close(fd)
    if (
        len(words) != 3
        or words[0] != _MARKER_TAG.encode()
        or not all(w.isdigit() for w in words[1:])
    ):
        return None
    return int(words[1]), int(words[2])


def _write_marker(trash_fd: int, st: os.stat_result) -> None:
    """Prove the directory open at ``trash_fd`` (stat ``st``), just made, a trash."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(MARKER_NAME, flags, 0o400, dir_fd=trash_fd)
    try:
        os.write(fd, f"{_MARKER_TAG} {st.st_dev} {st.st_ino}\n".encode())
    finally:
        os.close(fd)


_make_seq = itertools.count()


def _make_trash(parent_fd: int, name: str, path: str) -> int | None:
    """Make the trash directory ``name`` in the directory open at ``parent_fd``: made
    under a name of this process's, checked, given its marker and renamed to
    ``name`` without replacing anything.  Returns its fd; None when something is at
    ``name`` already (the caller opens that, or finds it foreign)."""
    build = f"{name}.{owner()}-{next(_make_seq)}"
    os.mkdir(build, TRASH_MODE, dir_fd=parent_fd)
    fd = os.open(build, _O_DIR, dir_fd=parent_fd)
    st = os.fstat(fd)
    try:
        if st.st_uid != os.geteuid() or os.listdir(fd):
            os.close(fd)
            raise _not_trash(os.path.join(os.path.dirname(path), build), "replaced meanwhile")
        os.fchmod(fd, TRASH_MODE)  # whatever the umask
        _write_marker(fd, st)
        rename_new(parent_fd, build, parent_fd, name)
        return fd
    except FileExistsError:
        _unmake(parent_fd, build, fd, st)  # another process made it first
        return None
    except RemoveError:
        raise
    except BaseException:
        _unmake(parent_fd, build, fd, st)
        raise


def _unmake(parent_fd: int, build: str, fd: int, st: os.stat_result) -> None:
    """Remove a trash directory :func:`_make_trash` made and did not use (only that
    inode: its marker through its fd, itself by rmdir), and close its fd."""
    try:
        with contextlib.suppress(OSError):
            os.unlink(MARKER_NAME, dir_fd=fd)
        with contextlib.suppress(OSError):
            now = os.stat(build, dir_fd=parent_fd, follow_symlinks=False)
            if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                os.rmdir(build, dir_fd=parent_fd)
    finally:
        os.close(fd)


def move_to_trash(
    parent_fd: int, parent: str, name: str, *, expect: tuple[int, int] | None = None
) -> str:
    """Rename ``name`` (in the directory open at ``parent_fd``, whose path is
    ``parent``) into the caller's trash there; returns its new path.  ``expect``:
    the ``(st_dev, st_ino)`` it must be -- anything else renamed in in the meantime is
    put back (:class:`RemoveError` ESTALE), never left in the trash."""
    tname_dir = trash_name_for(os.fstat(parent_fd))
    tpath = os.path.join(parent, tname_dir)
    last: OSError | None = None
    for attempt in range(3):
        try:
            try:
                tfd = open_trash(parent_fd, tname_dir, tpath)
            except FileNotFoundError:
                made = _make_trash(parent_fd, tname_dir, tpath)
                if made is None:  # another process made it meanwhile: open that one
                    raise FileExistsError(errno.EEXIST, "made meanwhile", tpath) from None
                tfd = made
        except (FileNotFoundError, FileExistsError) as e:  # (emptied and removed meanwhile)
            last = e
            continue
        except OSError as e:
            if e.errno == errno.EAGAIN:  # being emptied by another process just now
                last = e
                time.sleep(0.002 * 4**attempt)
                continue
            raise RemoveError(
                e.errno or 0, f"cannot use trash directory: {e.strerror}", tpath
            ) from None
        try:
            tname = _entry_name(name)
            os.rename(name, tname, src_dir_fd=parent_fd, dst_dir_fd=tfd)
            if expect is not None:
                _check_moved(parent_fd, name, tfd, tname, expect, os.path.join(parent, name))
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


def _check_moved(
    parent_fd: int, name: str, tfd: int, tname: str, expect: tuple[int, int], path: str
) -> None:
    """The entry just renamed into the trash as ``tname`` is ``expect``, or it goes back
    out (to ``name``, else beside it: never over anything, never left under a name the
    trash is emptied of) and RemoveError ESTALE is raised."""
    st = os.stat(tname, dir_fd=tfd, follow_symlinks=False)
    if (st.st_dev, st.st_ino) == expect:
        return
    for back in (name, f"{name}.linkstrategy-put-back-{os.urandom(3).hex()}"):
        try:
            rename_new(tfd, tname, parent_fd, back)
            break
        except FileExistsError:
            continue
    raise RemoveError(errno.ESTALE, "replaced by another entry meanwhile; not deferred", path)


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
    trash there (:func:`move_to_trash`)."""
    return remove_entry(parent_fd, parent, name, budget=budget, last=last, defer=move_to_trash)


def remove_own(
    parent_fd: int,
    parent: str,
    name: str,
    ident: tuple[int, int],
    *,
    budget: float = 5.0,
    last: Sequence[str] = (),
    release: Callable[[], None] | None = None,
) -> RemoveReport:
    """Remove the directory ``name`` in the directory open at ``parent_fd`` (real path
    ``parent``) only while it is the inode ``ident`` this run made (a journal, a
    staging directory): its entries through an fd of it (``last``, names in it, after
    the others, in order), itself by ``rmdir`` with the inode checked again.  What is
    still busy after ``budget`` seconds: the whole directory is moved into the trash
    there, checked by inode there too.  Anything else at ``name`` is left alone (an
    empty report).  ``release`` is called right before the final entry of ``last`` is
    removed, and in any case before returning: the directory's lock file comes last,
    and its fd must be closed before its unlink (on NFS and FUSE an open file's
    unlink leaves a hidden name in its place, and the rmdir would fail)."""
    path = os.path.join(parent, name)
    run = Run(budget, None)
    try:
        cleared = _clear_own_at(run, parent_fd, name, path, ident, last, release)
        if cleared:
            rmdir_busy(run, parent_fd, name, path, ident)
        elif cleared is not None and not run.errors and not run.mounts:
            _defer_own(run, parent_fd, parent, name, ident)
    finally:
        if release is not None:
            release()
        run.close()
    return run.report()


def _clear_own_at(
    run: Run,
    parent_fd: int,
    name: str,
    path: str,
    ident: tuple[int, int],
    last: Sequence[str],
    release: Callable[[], None] | None,
) -> bool | None:
    """:func:`_clear_own` of the directory ``name``, opened and checked to be ``ident``;
    None when it is not there or not that inode (nothing done)."""
    try:
        fd = os.open(name, _O_DIR, dir_fd=parent_fd)
    except OSError as e:
        if remove_action(e.errno) not in ("gone", "swapped"):
            run.errors.append(RemoveFailure(path, e.errno or 0, "cannot open directory"))
        return None
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != ident:
            log.warning("%s is no longer the directory this run made; not removed", path)
            return None
        return _clear_own(run, fd, path, last, release)
    finally:
        os.close(fd)


def _clear_own(
    run: Run, fd: int, path: str, last: Sequence[str], release: Callable[[], None] | None
) -> bool:
    """Remove every entry of the directory open at ``fd`` (``last`` ones after the
    others, one at a time); whether all went."""
    try:
        names = os.listdir(fd)
    except OSError as e:
        run.errors.append(RemoveFailure(path, e.errno or 0, "cannot list directory"))
        return False
    first = [r for n in names if n not in last and (r := entry_root(run, fd, path, n, strict=True))]
    passes(run, first)
    if run.errors or not all(r.done for r in first):
        return False
    for i, n in enumerate(last):
        if i == len(last) - 1 and release is not None:
            release()
        r = entry_root(run, fd, path, n, strict=True) if n in names else None
        if r is not None:
            passes(run, [r])
            if run.errors or not r.done:
                return False
    return True


def _defer_own(run: Run, parent_fd: int, parent: str, name: str, ident: tuple[int, int]) -> None:
    """Move the busy directory ``name``, still the inode ``ident``, into the trash."""
    path = os.path.join(parent, name)
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        if (st.st_dev, st.st_ino) != ident:
            return
        trash = move_to_trash(parent_fd, parent, name, expect=ident)
    except OSError as e:
        run.errors.append(
            RemoveFailure(path, e.errno or 0, f"still busy, and not moved to trash: {e.strerror}")
        )
        return
    log.info("deferred %s to %s (still busy)", path, trash)
    run.deferred.append(Deferred(path, trash, "still busy"))


# -- emptying the trash -----------------------------------------------------------------


def empty_trash(
    run: Run, parent_fd: int, name: str, trash_fd: int, trash: str, min_age: float
) -> None:
    """Remove entries older than ``min_age`` from the trash directory open at
    ``trash_fd`` (``name`` in ``parent_fd``), then the trash directory if empty."""
    try:
        names = [n for n in os.listdir(trash_fd) if n != MARKER_NAME]
        tst = os.fstat(trash_fd)
    except OSError as e:
        if remove_action(e.errno) != "gone":
            run.errors.append(RemoveFailure(trash, e.errno or 0, "cannot list trash"))
        return
    now = time.time()
    old = [n for n in names if (age := trash_age(n, now)) is not None and age >= min_age]
    roots = [r for n in old if (r := entry_root(run, trash_fd, trash, n, strict=False))]
    passes(run, roots)
    for r in roots:
        if not r.done and not r.outcome.error and (r.outcome.silly or r.outcome.retry):
            reason = "still held open" if r.outcome.silly else "still busy"
            run.deferred.append(Deferred(r.path, r.path, reason))
    ident = (tst.st_dev, tst.st_ino)
    if len(old) == len(names) and all(r.done for r in roots) and _unmark(trash_fd):
        if rmdir_busy(run, parent_fd, name, trash, ident):
            forget(trash)
        else:
            with contextlib.suppress(OSError):  # refilled meanwhile: a trash still
                _write_marker(trash_fd, tst)


def _unmark(trash_fd: int) -> bool:
    """Unlink the marker of an emptied trash before its rmdir."""
    try:
        os.unlink(MARKER_NAME, dir_fd=trash_fd)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


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
            try:
                candidates.append((-1, open_trash(dir_fd, name, tpath), name, tpath))
            except RemoveError as e:  # not a trash of ours: left alone
                log.info("%s: %s", tpath, e.strerror)
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


def collect_trash(directory: str | os.PathLike[str], *, min_age: float = 5.0) -> None:
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
