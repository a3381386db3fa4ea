"""macOS (and any other non-Linux POSIX system): fclonefileat, fcopyfile, renameatx_np.

Written from Apple's manual pages (clonefile(2), rename(2), copyfile(3), fcntl(2));
not run by the test suite, which runs on Linux, so kept small.  Every macOS-only
call is looked up by name and simply absent elsewhere, so another BSD gets the
portable fallbacks: no clone, read/write copies, two renames instead of a swap,
per-component opens.  Same functions, same signatures as :mod:`._linux`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os

from .._errors import COPY_GIVEUP
from ._common import (
    EXCHANGE_UNSUPPORTED,
    StatxResult,
    open_per_component,
    read_write_copy,
    stat_nofollow,
    unlink_if_same,
)

TYPE_CHECKING = False  # mypy treats any name TYPE_CHECKING as true; typing stays unloaded
if TYPE_CHECKING:
    from typing import Any


#: ``dir_fd`` meaning "the current directory": -2 in macOS's ``<sys/fcntl.h>``.
AT_FDCWD = -2

_libc: Any = None
_ct: Any = None
#: Every libc function this module bound, by name.
BOUND: dict[str, Any] = {}


def _bind(name: str, restype: str, *argtypes: str) -> Any:
    """The C library's function ``name`` with its signature declared (names of ctypes
    types), or None where this libc has no such function."""
    global _libc, _ct
    if _libc is None:
        import ctypes
        from ctypes.util import find_library  # macOS: dyld lookup, no subprocess

        _ct = ctypes
        _libc = ctypes.CDLL(find_library("c"), use_errno=True)
    try:
        fn = getattr(_libc, name)
    except AttributeError:
        return None
    fn.restype = getattr(_ct, restype)
    fn.argtypes = [getattr(_ct, a) for a in argtypes]
    BOUND[name] = fn
    return fn


# -- clone ----------------------------------------------------------------------------

_CLONE_NOFOLLOW = 0x0001  # <sys/clonefile.h>
_CLONE_NOOWNERCOPY = 0x0002  # ownership as if created by this (unprivileged) user
_fclonefileat: Any = None  # None: not looked up; False: unavailable (macOS < 10.12, BSD)


def clone_file(src_fd: int, dir_fd: int, name: str, mode: int) -> int:
    """Create ``name`` in the directory ``dir_fd`` as a clone of the open file
    ``src_fd`` (all of its blocks shared) and return an fd of it open for writing.

    macOS: fclonefileat(2), which fails with EEXIST if ``name`` exists and clears
    setuid/setgid; then the mode is set (the clone has the source's) and the file is
    opened.  On failure after the clone the new file is removed (it is ours).
    """
    global _fclonefileat
    if _fclonefileat is None:
        # int fclonefileat(int srcfd, int dst_dirfd, const char *dst, uint32_t flags)
        fn = _bind("fclonefileat", "c_int", "c_int", "c_int", "c_char_p", "c_uint32")
        _fclonefileat = False if fn is None else fn
    if _fclonefileat is False:
        raise OSError(errno.EOPNOTSUPP, "no clone primitive on this platform", name)
    flags = _CLONE_NOFOLLOW | _CLONE_NOOWNERCOPY
    if _fclonefileat(src_fd, dir_fd, os.fsencode(name), flags) != 0:
        code = _ct.get_errno()
        raise OSError(code, os.strerror(code), name)
    made = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    try:
        # Owner-writable while the caller fills in times and xattrs (a read-only
        # source would make the clone unopenable for writing).
        os.chmod(name, mode, dir_fd=dir_fd, follow_symlinks=False)
        fd = os.open(name, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (made.st_dev, made.st_ino):
            os.close(fd)
            raise OSError(errno.ESTALE, "no longer the clone made here", name)
        return fd
    except BaseException:
        with contextlib.suppress(OSError):
            unlink_if_same(dir_fd, name, made)
        raise


# -- copy -----------------------------------------------------------------------------


def _pick_fcopyfile() -> tuple[Any, int]:
    # fcopyfile(3) through the private binding CPython's shutil uses (absent elsewhere).
    import posix

    return getattr(posix, "_fcopyfile", None), getattr(posix, "_COPYFILE_DATA", 8)


_fcopyfile, _COPYFILE_DATA = _pick_fcopyfile()


def copy_fd(src_fd: int, dst_fd: int, size: int, *, try_cfr: bool = True) -> tuple[int, bool]:
    """Copy the data of ``src_fd`` to ``dst_fd`` (both at offset 0): fcopyfile(3)
    (COPYFILE_DATA), else read/write to EOF.  fcopyfile is abandoned only before its
    first byte (``COPY_GIVEUP``).  Returns (bytes written, False): there is no
    copy_file_range to keep trying (``try_cfr`` is accepted for the same signature)."""
    if _fcopyfile is not None and size:
        try:
            _fcopyfile(src_fd, dst_fd, _COPYFILE_DATA)
            return size, False
        except OSError as e:
            if e.errno not in COPY_GIVEUP or os.lseek(dst_fd, 0, os.SEEK_CUR):
                raise
    return read_write_copy(src_fd, dst_fd), False


# -- opening, stat, exchange ------------------------------------------------------------


def open_beneath(root_fd: int, relpath: str, flags: int) -> int:
    """Open ``relpath`` below the directory ``root_fd`` without following any symlink:
    one O_NOFOLLOW open per component."""
    if not relpath or relpath == ".":
        return os.dup(root_fd)
    return open_per_component(root_fd, relpath, flags)


def statx(dir_fd: int, name: str) -> StatxResult:
    """``lstat`` of ``name`` relative to ``dir_fd`` (``""``: ``dir_fd`` itself); there
    is no mount ID here (``mnt_id`` and ``mount_root`` are None)."""
    return stat_nofollow(dir_fd, name, AT_FDCWD)


_RENAME_SWAP = 0x00000002  # <stdio.h>
_RENAME_EXCL = 0x00000004  # <stdio.h>
_renameatx_np: Any = None  # None: not looked up; False: unavailable (macOS < 10.12, BSD)


def _renamex(a_fd: int, a: str, b_fd: int, b: str, flags: int) -> bool:
    """renameatx_np(2) with ``flags``: True when done, False where the call or the
    volume cannot (:data:`EXCHANGE_UNSUPPORTED`).  Any other error: OSError."""
    global _renameatx_np
    if _renameatx_np is None:
        # int renameatx_np(int fromfd, const char *from, int tofd, const char *to,
        #                  unsigned int flags)
        fn = _bind("renameatx_np", "c_int", "c_int", "c_char_p", "c_int", "c_char_p", "c_uint")
        _renameatx_np = False if fn is None else fn
    if _renameatx_np is False:
        return False
    if _renameatx_np(a_fd, os.fsencode(a), b_fd, os.fsencode(b), flags) == 0:
        return True
    code = _ct.get_errno()
    if code in EXCHANGE_UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), a, None, b)


def exchange(a_fd: int, a: str, b_fd: int, b: str) -> bool:
    """Swap the names ``a`` (in ``a_fd``) and ``b`` (in ``b_fd``) atomically:
    renameatx_np(RENAME_SWAP).  False where the call or the volume cannot
    (:data:`EXCHANGE_UNSUPPORTED`: ENOTSUP without VOL_CAP_INT_RENAME_SWAP)."""
    return _renamex(a_fd, a, b_fd, b, _RENAME_SWAP)


def rename_noreplace(a_fd: int, a: str, b_fd: int, b: str) -> bool:
    """Rename ``a`` to ``b`` only if ``b`` does not exist: renameatx_np(RENAME_EXCL),
    FileExistsError if it does.  False where the call or the volume cannot."""
    return _renamex(a_fd, a, b_fd, b, _RENAME_EXCL)


def fs_magic(fd: int) -> int | None:
    """None: macOS's statfs ``f_type`` is an index that changes between releases, not
    a Linux magic number (the name is in ``f_fstypename``); callers read the mount
    table instead."""
    return None


def fd_path(fd: int, fallback: str) -> str:
    """The path the kernel has for the directory open at ``fd`` (fcntl F_GETPATH), for
    reports and planning, never to act on; ``realpath(fallback)`` where it fails."""
    f_getpath: int | None = getattr(fcntl, "F_GETPATH", None)
    if f_getpath is not None:
        with contextlib.suppress(OSError):
            raw = fcntl.fcntl(fd, f_getpath, bytes(1024))  # MAXPATHLEN
            p = os.fsdecode(raw.split(b"\0", 1)[0])
            if p.startswith("/"):
                return p
    return os.path.realpath(fallback)


def mount_table_text() -> str | None:
    """None: there is no mount table file here; the caller asks psutil."""
    return None
