"""The platform's clone, copy and extended-attribute primitives, chosen once, here.

Every other module calls :func:`clone_fd`, :func:`copy_fd` and :func:`list_xattrs` &
co. and never asks which operating system it runs on.  Capabilities are found by
feature detection at import (as CPython's shutil does with ``_USE_CP_COPY_FILE_RANGE``)
and switched off for the process when the kernel says the call itself does not exist.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._errors import COPY_GIVEUP

__all__ = [
    "AT_FDCWD",
    "CLONE_SUPPORTED",
    "StatxResult",
    "clone_fd",
    "copy_fd",
    "copy_sparse",
    "get_xattr",
    "libc",
    "list_xattrs",
    "load_speedups",
    "open_beneath",
    "select_xattr_impl",
    "set_xattr",
    "statx",
]

_LINUX = sys.platform.startswith("linux")
_DARWIN = sys.platform == "darwin"

# FICLONE = _IOW(0x94, 9, int): ioctl_ficlone(2).  The old BTRFS_IOC_CLONE number,
# generic since Linux 4.5.
_FICLONE = 0x40049409

_use_copy_file_range = hasattr(os, "copy_file_range")
# macOS: fcopyfile(3) through the private binding CPython's shutil uses (feature-detected
# the same way, so it is simply absent elsewhere).
_fcopyfile: Any = None
if _DARWIN:  # pragma: no cover - exercised on macOS only
    import posix

    _fcopyfile = getattr(posix, "_fcopyfile", None)
    _COPYFILE_DATA = getattr(posix, "_COPYFILE_DATA", 8)
_use_sendfile = hasattr(os, "sendfile") and _LINUX

_COPY_CHUNK = 1 << 30  # copy_file_range/sendfile request size; the kernel caps it anyway
_RW_CHUNK = 1 << 20


def libc() -> Any:
    """A fresh handle on the C library (its own function objects, so callers can set
    ``argtypes`` without stepping on each other).  Linux: the process's own symbols
    (``dlopen(NULL)``), found without ``find_library``'s subprocess."""

    if _LINUX:
        return ctypes.CDLL(None, use_errno=True)

    from ctypes.util import find_library  # not on Linux: it loads subprocess & co

    return ctypes.CDLL(find_library("c"), use_errno=True)


if _DARWIN:  # pragma: no cover - exercised on macOS only
    _libc = libc()
    _fclonefileat = getattr(_libc, "fclonefileat", None)
    if _fclonefileat is not None:
        _fclonefileat.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        _fclonefileat.restype = ctypes.c_int
    _CLONE_NOFOLLOW = 0x1
    _CLONE_NOOWNERCOPY = 0x2

#: Whether this platform has a clone primitive at all.
CLONE_SUPPORTED = _LINUX or (_DARWIN and _fclonefileat is not None)

#: On macOS a clone creates its destination (fclonefileat); on Linux it fills an
#: already-created, empty file (FICLONE).
CLONE_CREATES = _DARWIN


def clone_fd(src_fd: int, dst_fd: int) -> None:
    """Make the empty file ``dst_fd`` share all of ``src_fd``'s blocks (Linux FICLONE).

    All or nothing; raises OSError with the kernel's errno.  FICLONE copies data,
    not metadata: the caller sets mode and times.
    """
    if not _LINUX:
        raise OSError(errno.EOPNOTSUPP, "FICLONE is Linux-only")
    import fcntl

    fcntl.ioctl(dst_fd, _FICLONE, src_fd)


def clone_at(src_fd: int, dst_dir_fd: int, name: str | bytes) -> None:  # pragma: no cover
    """macOS: create ``name`` in ``dst_dir_fd`` as a clone of ``src_fd`` (fclonefileat)."""
    if not (_DARWIN and _fclonefileat is not None):
        raise OSError(errno.EOPNOTSUPP, "fclonefileat is unavailable")

    if _fclonefileat(src_fd, dst_dir_fd, os.fsencode(name), _CLONE_NOFOLLOW | _CLONE_NOOWNERCOPY):
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def copy_fd(src_fd: int, dst_fd: int, size: int, *, try_cfr: bool = True) -> tuple[int, bool]:
    """Copy the data of ``src_fd`` to ``dst_fd`` (both at offset 0); ``size`` (the
    source's ``st_size``) is only a hint: /proc files say 0 and /sys files 4096
    whatever they hold, so a short or empty copy ends in read/write to EOF.

    In-kernel first: fcopyfile on macOS; on Linux copy_file_range (which itself
    reflinks within one XFS/btrfs, copies server-side on NFS 4.2 and CIFS), then
    sendfile; then read/write.  A primitive is abandoned only before its first
    byte (``COPY_GIVEUP``), never on ENOSPC or EIO, which propagate.

    Returns (bytes written, copy_file_range still worth trying): the second is
    False when copy_file_range refused this pair of files (EXDEV between
    filesystems, EOPNOTSUPP, ...), so a caller copying many files between the same
    two filesystems passes ``try_cfr=False`` from then on and saves the attempt.
    """
    global _use_copy_file_range, _use_sendfile
    if _fcopyfile is not None and size:  # pragma: no cover - macOS
        try:
            _fcopyfile(src_fd, dst_fd, _COPYFILE_DATA)
            return size, False
        except OSError as e:
            if e.errno not in COPY_GIVEUP or _offset(dst_fd):
                raise
    done = 0
    cfr_ok = try_cfr
    if _use_copy_file_range and try_cfr and size:
        try:
            done = _loop(os.copy_file_range, src_fd, dst_fd, size)
        except OSError as e:
            if e.errno not in COPY_GIVEUP or _offset(dst_fd):
                raise
            cfr_ok = False
            if e.errno == errno.ENOSYS:
                _use_copy_file_range = False
        else:
            if done >= size:
                return done, cfr_ok
    if _use_sendfile and done < size:
        try:
            done += _loop_sendfile(src_fd, dst_fd, size - done)
        except OSError as e:
            if e.errno not in COPY_GIVEUP or _offset(dst_fd):
                raise
            if e.errno == errno.ENOSYS:
                _use_sendfile = False
        else:
            if done >= size and done:
                return done, cfr_ok
    # read/write to EOF (the file may have grown, or st_size may say nothing)
    while True:
        buf = os.read(src_fd, _RW_CHUNK)
        if not buf:
            return done, cfr_ok
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
        copy_fd(src_fd, dst_fd, size)
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
            buf = os.read(src_fd, min(_RW_CHUNK, remaining))
            if not buf:
                break
            view = memoryview(buf)
            while view:
                view = view[os.write(dst_fd, view) :]
            remaining -= len(buf)
        pos = end
    os.ftruncate(dst_fd, size)


def _offset(fd: int) -> int:
    return os.lseek(fd, 0, os.SEEK_CUR)


def _loop(fn: object, src_fd: int, dst_fd: int, size: int) -> int:
    done = 0
    while done < size:
        n = fn(src_fd, dst_fd, min(_COPY_CHUNK, size - done))  # type: ignore[operator]
        if n == 0:  # EOF (file shrank), or procfs-like files: let read/write finish
            break
        done += n
    return done


def _loop_sendfile(src_fd: int, dst_fd: int, size: int) -> int:
    done = 0
    while done < size:
        n = os.sendfile(dst_fd, src_fd, None, min(_COPY_CHUNK, size - done))
        if n == 0:
            break
        done += n
    return done


# -- extended attributes of an open file --------------------------------------------
# Linux: os.listxattr/getxattr/setxattr.  macOS: the os module has none of them, so the
# `xattr` package's (a dependency there) does the same on an fd.  Neither: "not supported".


@dataclass(frozen=True)
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


def load_speedups() -> Any:
    """The optional C extension ``linkstrategy._speedups`` (place()'s per-file loop
    without the GIL), or None: not Linux, not built (no compiler at install), or
    ``$LINKSTRATEGY_NO_SPEEDUPS`` set to a non-empty value."""
    if not _LINUX or os.environ.get("LINKSTRATEGY_NO_SPEEDUPS"):
        return None
    try:
        from . import _speedups
    except ImportError:
        return None
    return _speedups


# -- opening paths beneath a directory without following symlinks ------------------

_RESOLVE_NO_SYMLINKS = 0x04  # openat2(2): fail with ELOOP on any symlink component
_RESOLVE_BENEATH = 0x08  # ... and on any ".." or absolute path escaping dirfd
_SYS_OPENAT2 = 437  # the same number on every Linux architecture (unified table, 5.6+)
_openat2: Any = None  # None: not looked up; False: unavailable


def _load_openat2() -> Any:
    global _openat2
    if _openat2 is None:
        _openat2 = False
        if _LINUX:
            fn = libc().syscall
            fn.restype = ctypes.c_long
            how = (ctypes.c_uint64 * 3)(os.O_RDONLY | os.O_DIRECTORY, 0, _RESOLVE_NO_SYMLINKS)
            fd = fn(_SYS_OPENAT2, -100, b".", ctypes.byref(how), ctypes.sizeof(how))
            if fd >= 0:
                os.close(fd)
                _openat2 = fn
    return _openat2


def open_beneath(root_fd: int, relpath: str, flags: int) -> int:
    """Open ``relpath`` below the directory ``root_fd`` without following any symlink.

    Linux 5.6+: one openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) call, so a
    component swapped for a symlink mid-run fails with ELOOP instead of leading
    outside the tree.  Elsewhere: one O_NOFOLLOW open per component.
    """
    if not relpath or relpath == ".":
        return os.dup(root_fd)
    fn = _load_openat2()
    if fn:
        how = (ctypes.c_uint64 * 3)(
            flags | os.O_CLOEXEC | os.O_NOFOLLOW, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS
        )
        fd = int(
            fn(_SYS_OPENAT2, root_fd, os.fsencode(relpath), ctypes.byref(how), ctypes.sizeof(how))
        )
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), relpath)
        return fd
    parts = relpath.split("/")
    fd = root_fd
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            fl = (flags if last else os.O_RDONLY | os.O_DIRECTORY) | os.O_NOFOLLOW | os.O_CLOEXEC
            nfd = os.open(part, fl, dir_fd=fd)
            if fd != root_fd:
                os.close(fd)
            fd = nfd
    except BaseException:
        if fd != root_fd:
            os.close(fd)
        raise
    return fd


# -- statx by directory fd (mount ID and "is a mount root", never following) ----------

_AT_SYMLINK_NOFOLLOW = 0x100
_AT_NO_AUTOMOUNT = 0x800
_AT_EMPTY_PATH = 0x1000
_STATX_BASIC = 0x7FF
_STATX_MNT_ID = 0x1000
AT_FDCWD = -100
_STATX_ATTR_MOUNT_ROOT = 0x2000


@dataclass(frozen=True)
class StatxResult:
    mode: int
    dev: int
    ino: int
    mnt_id: int | None
    mount_root: bool | None  # None: the kernel did not say


class _Statx:
    """``statx(2)`` through ctypes (``os.statx`` only arrives in Python 3.15)."""

    def __init__(self) -> None:
        self.fn: Any = None
        self.looked_up = False

    def _lookup(self) -> None:
        self.looked_up = True
        if _LINUX:
            try:
                fn = libc().statx
            except (OSError, AttributeError):
                return
            fn.argtypes = [
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_int,
                ctypes.c_uint,
                ctypes.c_char_p,
            ]
            fn.restype = ctypes.c_int
            self.fn = fn

    def __call__(self, dir_fd: int, name: str) -> StatxResult:
        if not self.looked_up:
            self._lookup()
        if self.fn is None:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            return StatxResult(st.st_mode, st.st_dev, st.st_ino, None, None)
        buf = ctypes.create_string_buffer(256)
        flags = _AT_SYMLINK_NOFOLLOW | _AT_NO_AUTOMOUNT | (_AT_EMPTY_PATH if not name else 0)
        if self.fn(dir_fd, os.fsencode(name), flags, _STATX_BASIC | _STATX_MNT_ID, buf) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e), name)
        raw = buf.raw
        mask = int.from_bytes(raw[0:4], sys.byteorder)
        attrs = int.from_bytes(raw[0x08:0x10], sys.byteorder)
        attrs_mask = int.from_bytes(raw[0x38:0x40], sys.byteorder)
        mode = int.from_bytes(raw[0x1C:0x1E], sys.byteorder)
        ino = int.from_bytes(raw[0x20:0x28], sys.byteorder)
        dev = os.makedev(
            int.from_bytes(raw[0x88:0x8C], sys.byteorder),
            int.from_bytes(raw[0x8C:0x90], sys.byteorder),
        )
        mnt_id = int.from_bytes(raw[0x90:0x98], sys.byteorder) if mask & _STATX_MNT_ID else None
        mount_root = (
            bool(attrs & _STATX_ATTR_MOUNT_ROOT) if attrs_mask & _STATX_ATTR_MOUNT_ROOT else None
        )
        return StatxResult(mode, dev, ino, mnt_id, mount_root)


#: ``statx(dir_fd, name)``: ``name`` relative to ``dir_fd`` (``""``: ``dir_fd`` itself;
#: ``dir_fd`` may be ``AT_FDCWD``), without following a final symlink or triggering
#: an automount.  Falls back to ``os.stat`` (no mount ID) where statx is missing.
statx = _Statx()


def fd_path(fd: int, fallback: str) -> str:
    """The path the kernel has for the directory open at ``fd`` (what ``..`` and symlinks
    in the argument really meant: for reports and planning, never to act on);
    ``realpath(fallback)`` where /proc is missing or the directory was removed."""
    try:
        p = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return os.path.realpath(fallback)
    if p.startswith("/") and not p.endswith(" (deleted)"):
        return p
    return os.path.realpath(fallback)
