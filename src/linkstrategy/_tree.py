"""Removing a tree through file descriptors: iterative, bounded, never leaving it.

:func:`rmtree_at` removes ``name`` below an open directory the way the safe path
of ``shutil.rmtree`` does, with the limits a package manager meets:

* every directory is opened relative to its parent's fd with ``O_NOFOLLOW``: a
  symlink is unlinked, never followed, even when swapped in mid-walk;
* a directory on another mount or filesystem (a bind mount, a btrfs subvolume)
  is never entered; the tree is then left in place and the call fails;
* the walk is a loop, not recursion, and holds at most :data:`MAX_FDS`
  directory fds at any depth: deeper, the oldest are closed and reached again
  through ``..`` when the walk climbs back, checked by ``(st_dev, st_ino)``, so a
  directory moved away mid-walk stops the walk instead of leading elsewhere;
* ``expect=(st_dev, st_ino)``: the entry must still be that inode, or nothing is
  removed (what this run made, not whatever has its name now).

:func:`reap_stale` removes, in one directory, the temporaries whose maker is gone
(:func:`._owner.judge`), and only those.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable

from ._owner import TMP_PREFIX, is_tmp_name, judge, owner
from ._sys import statx

__all__ = ["MAX_FDS", "TreeChanged", "reap_stale", "rmtree_at"]

#: Directory fds one walk holds at most, whatever the depth.
MAX_FDS = 16

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class TreeChanged(OSError):
    """The tree was changed under the walk (an entry swapped or moved): stopped."""


class _Frame:
    __slots__ = ("fd", "ident", "name", "subdirs")

    def __init__(self, fd: int, ident: tuple[int, int], name: str, subdirs: list[str]) -> None:
        self.fd: int | None = fd
        self.ident = ident
        self.name = name
        self.subdirs = subdirs


def _ident(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def _mnt_id(fd: int) -> int | None:
    try:
        return statx(fd, "").mnt_id
    except OSError:
        return None


def _open_dir(parent_fd: int, name: str) -> int:
    """Open a directory we are about to empty; make it writable if it is ours."""
    try:
        fd = os.open(name, _O_DIR, dir_fd=parent_fd)
    except PermissionError:
        _chmod_owned(parent_fd, name)
        fd = os.open(name, _O_DIR, dir_fd=parent_fd)
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o700 != 0o700 and st.st_uid == os.geteuid():
            os.fchmod(fd, stat.S_IMODE(st.st_mode) | 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _chmod_owned(parent_fd: int, name: str) -> None:
    """Give a directory we cannot open (mode 0000, say) its owner's rwx, without
    following a symlink (through an O_PATH fd), if it is ours."""
    o_path = getattr(os, "O_PATH", 0)
    if not o_path:  # pragma: no cover - not Linux
        return
    fd = os.open(name, o_path | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
            os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(st.st_mode) | 0o700)
    finally:
        os.close(fd)


def _list(fd: int) -> tuple[list[str], list[str]]:
    files: list[str] = []
    dirs: list[str] = []
    with os.scandir(fd) as it:
        for e in it:
            try:
                (dirs if e.is_dir(follow_symlinks=False) else files).append(e.name)
            except OSError:
                files.append(e.name)
    return files, dirs


def _unlink_files(fd: int, names: Iterable[str], dirs: list[str]) -> None:
    for n in names:
        try:
            os.unlink(n, dir_fd=fd)
        except FileNotFoundError:
            pass
        except IsADirectoryError:  # swapped for a directory since the listing
            dirs.append(n)
        except PermissionError:
            _make_writable(fd)
            os.unlink(n, dir_fd=fd)


def _make_writable(fd: int) -> None:
    st = os.fstat(fd)
    if st.st_uid != os.geteuid():
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    os.fchmod(fd, stat.S_IMODE(st.st_mode) | 0o700)


def rmtree_at(parent_fd: int, name: str, *, expect: tuple[int, int] | None = None) -> None:
    """Remove ``name`` (a file, symlink or whole tree) from the directory open at
    ``parent_fd``; see the module docstring.  Raises :class:`OSError` (with the
    relative path of the entry that failed) on anything it cannot remove."""
    st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    if expect is not None and _ident(st) != expect:
        raise TreeChanged(errno.ESTALE, "no longer the entry this run made", name)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=parent_fd)
        return
    fd = _open_dir(parent_fd, name)
    top = _ident(os.fstat(fd))
    if top != _ident(st):
        os.close(fd)
        raise TreeChanged(errno.ESTALE, "swapped during removal", name)
    root_dev, root_mnt = top[0], _mnt_id(fd)
    stack: list[_Frame] = []
    path: list[str] = [name]
    try:
        files, dirs = _list(fd)
        _unlink_files(fd, files, dirs)
        stack.append(_Frame(fd, top, name, dirs))
        while stack:
            fr = stack[-1]
            assert fr.fd is not None  # only frames below the top are ever closed
            if fr.subdirs:
                sub = fr.subdirs.pop()
                try:
                    cfd = _open_dir(fr.fd, sub)
                except FileNotFoundError:
                    continue
                except OSError as e:
                    if e.errno in (errno.ELOOP, errno.ENOTDIR):  # swapped for a non-directory
                        _unlink_files(fr.fd, [sub], [])
                        continue
                    raise OSError(e.errno, e.strerror, "/".join([*path, sub])) from None
                cst = os.fstat(cfd)
                if cst.st_dev != root_dev or (root_mnt is not None and _mnt_id(cfd) != root_mnt):
                    os.close(cfd)
                    raise OSError(
                        errno.EXDEV, "another mount inside: not entered", "/".join([*path, sub])
                    )
                try:
                    cfiles, cdirs = _list(cfd)
                    _unlink_files(cfd, cfiles, cdirs)
                except BaseException:
                    os.close(cfd)
                    raise
                stack.append(_Frame(cfd, _ident(cst), sub, cdirs))
                path.append(sub)
                if len(stack) > MAX_FDS:
                    old = stack[-MAX_FDS - 1]
                    if old.fd is not None:
                        os.close(old.fd)
                        old.fd = None
                continue
            # fr is empty now: remove it from its parent
            stack.pop()
            path.pop()
            child_fd = fr.fd
            if stack:
                parent = stack[-1]
                if parent.fd is None:
                    pfd = os.open("..", _O_DIR, dir_fd=child_fd)
                    if _ident(os.fstat(pfd)) != parent.ident:
                        os.close(pfd)
                        raise TreeChanged(errno.ESTALE, "moved during removal", "/".join([*path]))
                    parent.fd = pfd
                os.close(child_fd)
                fr.fd = None
                try:
                    os.rmdir(fr.name, dir_fd=parent.fd)
                except OSError as e:
                    raise OSError(e.errno, e.strerror, "/".join([*path, fr.name])) from None
            else:
                os.close(child_fd)
                fr.fd = None
                os.rmdir(name, dir_fd=parent_fd)
    finally:
        for f in stack:
            if f.fd is not None:
                os.close(f.fd)


def reap_stale(
    dir_fd: int, names: Iterable[str] | None = None, *, prefixes: Iterable[str] = (TMP_PREFIX,)
) -> tuple[list[str], list[str]]:
    """Remove the dead temporaries (named ``<prefix><owner>-<seq>``) in the directory
    open at ``dir_fd``.  ``names``: its entries, if the caller listed it already.
    Returns (removed, left alone as another user's); errors leave an entry as it is."""
    pre = tuple(prefixes)
    if names is None:
        names = os.listdir(dir_fd)
    removed: list[str] = []
    foreign: list[str] = []
    ours = tuple(f"{p}{owner()}-" for p in pre)  # this process lives: never debris
    for n in names:
        if n.startswith(ours) or not any(is_tmp_name(n, p) for p in pre):
            continue
        try:
            st = os.stat(n, dir_fd=dir_fd, follow_symlinks=False)
            verdict = judge(dir_fd, n, st)
            if verdict == "foreign":
                foreign.append(n)
            elif verdict == "dead":
                rmtree_at(dir_fd, n, expect=_ident(st))
                removed.append(n)
        except OSError:
            continue
    return removed, foreign
