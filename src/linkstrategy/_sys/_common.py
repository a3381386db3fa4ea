"""What :mod:`._linux` and :mod:`._darwin` share: portable POSIX code, no ctypes.

The read/write copy loop, the hole-keeping copy, the per-component open, ``lstat``
where there is no statx, and the extended-attribute functions (chosen once by
feature: the ``os`` module's, else the ``xattr`` package's).
"""

from __future__ import annotations

import errno
import os

from .._errors import EXCHANGE_UNSUPPORTED
from .._record import record

TYPE_CHECKING = False  # mypy treats any name TYPE_CHECKING as true; typing stays unloaded
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


__all__ = [
    "EXCHANGE_UNSUPPORTED",
    "StatxResult",
    "copy_sparse",
    "get_xattr",
    "list_xattrs",
    "open_chain",
    "open_per_component",
    "read_write_copy",
    "select_xattr_impl",
    "set_xattr",
    "stat_nofollow",
    "unlink_if_same",
]


RW_CHUNK = 1 << 20


@record(frozen=True)
class StatxResult:
    """What :func:`statx` tells (``None``: the kernel did not say, e.g. no statx, Linux
    < 5.8, macOS)."""

    mode: int
    dev: int
    ino: int
    mnt_id: int | None
    mount_root: bool | None


def stat_nofollow(dir_fd: int, name: str, at_fdcwd: int) -> StatxResult:
    """``statx`` where there is no statx: ``fstat`` of ``dir_fd`` for ``""``, else
    ``fstatat(AT_SYMLINK_NOFOLLOW)``; no mount ID."""
    if not name:
        st = os.fstat(dir_fd)
    else:
        d = None if dir_fd == at_fdcwd else dir_fd
        st = os.stat(name, dir_fd=d, follow_symlinks=False)
    return StatxResult(st.st_mode, st.st_dev, st.st_ino, None, None)


def read_write_copy(src_fd: int, dst_fd: int) -> int:
    """Copy from the current offsets to EOF with read/write; the bytes written."""
    done = 0
    while True:
        buf = os.read(src_fd, RW_CHUNK)
        if not buf:
            return done
        done += len(buf)
        view = memoryview(buf)
        while view:
            view = view[os.write(dst_fd, view) :]


def copy_sparse(src_fd: int, dst_fd: int, size: int) -> None:
    """Copy a file that has holes, keeping them holes: only the data ranges that
    SEEK_DATA/SEEK_HOLE report are copied, then the length is set.  Where the
    filesystem does not report holes, this is a plain copy."""
    seek_data = getattr(os, "SEEK_DATA", None)
    seek_hole = getattr(os, "SEEK_HOLE", None)
    if seek_data is None or seek_hole is None:  # pragma: no cover - no hole support
        read_write_copy(src_fd, dst_fd)
        return
    pos = 0
    while pos < size:
        try:
            start = os.lseek(src_fd, pos, seek_data)
        except OSError as e:
            if e.errno == errno.ENXIO:  # only a hole remains
                break
            raise
        end = os.lseek(src_fd, start, seek_hole)
        os.lseek(src_fd, start, os.SEEK_SET)
        os.lseek(dst_fd, start, os.SEEK_SET)
        remaining = end - start
        while remaining > 0:
            buf = os.read(src_fd, min(RW_CHUNK, remaining))
            if not buf:
                break
            view = memoryview(buf)
            while view:
                view = view[os.write(dst_fd, view) :]
            remaining -= len(buf)
        pos = end
    os.ftruncate(dst_fd, size)


def open_per_component(root_fd: int, relpath: str, flags: int) -> int:
    """Open ``relpath`` below ``root_fd`` one O_NOFOLLOW component at a time: a
    symlink anywhere on the way fails with ELOOP (or ENOTDIR) instead of being
    followed, and a ``..`` component with EXDEV (as openat2's RESOLVE_BENEATH does
    when it would leave ``root_fd``; never normalised away)."""
    parts = relpath.split("/")
    if ".." in parts:
        raise OSError(errno.EXDEV, "'..' in a path opened beneath a directory", relpath)
    nofollow = os.O_NOFOLLOW | os.O_CLOEXEC
    return open_chain(
        root_fd, parts, flags, lambda fd, part, fl: os.open(part, fl | nofollow, dir_fd=fd)
    )


def open_chain(
    root_fd: int, steps: list[str], flags: int, open_step: Callable[[int, str, int], int]
) -> int:
    """Open each of ``steps`` from the directory the one before opened, starting at
    ``root_fd``: ``open_step(dir_fd, step, flags)``, with ``flags`` for the last step
    and ``O_RDONLY | O_DIRECTORY`` for the others.  Only the last fd is left open."""
    fd = root_fd
    try:
        for i, step in enumerate(steps):
            fl = flags if i == len(steps) - 1 else os.O_RDONLY | os.O_DIRECTORY
            nfd = open_step(fd, step, fl)
            if fd != root_fd:
                os.close(fd)
            fd = nfd
    except BaseException:
        if fd != root_fd:
            os.close(fd)
        raise
    return fd


# -- extended attributes of an open file --------------------------------------------
# Linux: os.listxattr/getxattr/setxattr.  macOS: the os module has none of them, so the
# `xattr` package's (a dependency there) does the same on an fd.  Neither: "not supported".


@record(frozen=True)
class _XattrOps:
    name: str  # "os", "xattr" (the package) or "none"
    list: Callable[[int], list[str]]
    get: Callable[[int, str], bytes]
    set: Callable[[int, str, bytes], None]


def _xattrs_unsupported(*_args: object) -> Any:
    raise OSError(errno.ENOTSUP, "extended attributes are not supported on this platform")


def _pick_xattr_ops() -> _XattrOps:
    listx: Any = getattr(os, "listxattr", None)
    getx: Any = getattr(os, "getxattr", None)
    setx: Any = getattr(os, "setxattr", None)
    if listx and getx and setx:
        return _XattrOps("os", listx, getx, setx)
    try:
        import xattr  # macOS
    except ImportError:
        return _XattrOps("none", _xattrs_unsupported, _xattrs_unsupported, _xattrs_unsupported)

    def list_fd(fd: int) -> list[str]:
        return list(xattr.listxattr(fd))

    return _XattrOps("xattr", list_fd, xattr.getxattr, xattr.setxattr)


_xattr_ops = _pick_xattr_ops()


def select_xattr_impl() -> str:
    """Choose the xattr functions again (done once at import; tests call it after
    hiding ``os.listxattr``) and return which: ``"os"``, ``"xattr"`` or ``"none"``."""
    global _xattr_ops
    _xattr_ops = _pick_xattr_ops()
    return _xattr_ops.name


def list_xattrs(fd: int) -> list[str]:
    """Names of the extended attributes of the open file ``fd``.  OSError ENOTSUP where
    the platform (or the filesystem) has none."""
    return _xattr_ops.list(fd)


def get_xattr(fd: int, name: str) -> bytes:
    """The value of extended attribute ``name`` of the open file ``fd``."""
    return _xattr_ops.get(fd, name)


def set_xattr(fd: int, name: str, value: bytes) -> None:
    """Set extended attribute ``name`` of the open file ``fd`` to ``value``."""
    _xattr_ops.set(fd, name, value)


def unlink_if_same(dir_fd: int, name: str, made: os.stat_result) -> None:
    """Unlink ``name`` only if it is still the file ``made`` (whoever may rename in the
    directory could have put another file of the caller's at that name meanwhile)."""
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if (st.st_dev, st.st_ino) == (made.st_dev, made.st_ino):
        os.unlink(name, dir_fd=dir_fd)
