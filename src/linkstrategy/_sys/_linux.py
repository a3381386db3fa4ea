"""Linux: FICLONE, copy_file_range, openat2, statx, renameat2, fstatfs.

The calls the ``os`` module lacks are bound through ctypes by :func:`_bind` alone,
lazily (``import linkstrategy`` loads no ctypes), each with its C signature declared.
Capabilities are found by feature detection (as CPython's shutil does with
``_USE_CP_COPY_FILE_RANGE``) and switched off for the process when the kernel says
the call itself does not exist (ENOSYS).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys

from .._errors import COPY_GIVEUP, NO_MOUNT_TABLE_FILE
from ._common import (
    EXCHANGE_UNSUPPORTED,
    StatxResult,
    open_chain,
    open_per_component,
    read_write_copy,
    stat_nofollow,
    unlink_if_same,
)

TYPE_CHECKING = False  # mypy treats any name TYPE_CHECKING as true; typing stays unloaded
if TYPE_CHECKING:
    from typing import Any


#: ``dir_fd`` meaning "the current directory" (``<fcntl.h>``).
AT_FDCWD = -100

# -- the C library, through one door --------------------------------------------------

_libc: Any = None
_ct: Any = None  # the ctypes module, once a binding needed it
#: Every libc function this module bound, by name (tests check their signatures).
BOUND: dict[str, Any] = {}


def _bind(name: str, restype: str, *argtypes: str) -> Any:
    """The C library's function ``name`` with ``restype`` and ``argtypes`` (names of
    ctypes types, e.g. ``"c_int"``) declared, or None where this libc has no such
    function.  The only place this module touches ctypes' library handle."""
    global _libc, _ct
    if _libc is None:
        import ctypes

        _ct = ctypes
        # dlopen(NULL): the process's own symbols, without find_library's subprocess.
        _libc = ctypes.CDLL(None, use_errno=True)
    try:
        fn = getattr(_libc, name)
    except AttributeError:
        return None
    fn.restype = getattr(_ct, restype)
    fn.argtypes = [getattr(_ct, a) for a in argtypes]
    BOUND[name] = fn
    return fn


def _raise_errno(*filenames: str) -> None:
    code = _ct.get_errno()
    raise OSError(code, os.strerror(code), *filenames)


# -- clone ----------------------------------------------------------------------------

# FICLONE = _IOW(0x94, 9, int): ioctl_ficlone(2).  The old BTRFS_IOC_CLONE number,
# generic since Linux 4.5.
_FICLONE = 0x40049409
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def clone_file(src_fd: int, dir_fd: int, name: str, mode: int) -> int:
    """Create ``name`` in the directory ``dir_fd`` as a clone of the open file
    ``src_fd`` (all of its blocks shared) and return an fd of it open for writing.

    Exclusive and never following a symlink: nothing existing is touched.  ``mode``
    is the new file's mode (umask applied).  Data only: the caller sets times,
    xattrs and the final mode.  All or nothing: on failure the new file is removed
    (it is ours) and OSError carries the kernel's errno (EXDEV, EOPNOTSUPP, ...).

    Linux: openat(O_CREAT | O_EXCL), then ioctl(FICLONE).
    """
    fd = os.open(name, _CREATE, mode, dir_fd=dir_fd)
    try:
        fcntl.ioctl(fd, _FICLONE, src_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            unlink_if_same(dir_fd, name, os.fstat(fd))
        os.close(fd)
        raise
    return fd


# -- copy -----------------------------------------------------------------------------

_use_copy_file_range = hasattr(os, "copy_file_range")
_use_sendfile = hasattr(os, "sendfile")
_COPY_CHUNK = 1 << 30  # copy_file_range/sendfile request size; the kernel caps it anyway


def copy_fd(src_fd: int, dst_fd: int, size: int, *, try_cfr: bool = True) -> tuple[int, bool]:
    """Copy the data of ``src_fd`` to ``dst_fd`` (both at offset 0); ``size`` (the
    source's ``st_size``) is only a hint: /proc files say 0 and /sys files 4096
    whatever they hold, so a short or empty copy ends in read/write to EOF.

    In-kernel first: copy_file_range (which itself reflinks within one XFS/btrfs,
    copies server-side on NFS 4.2 and CIFS), then sendfile; then read/write.  A
    primitive is abandoned only before its first byte (``COPY_GIVEUP``), never on
    ENOSPC or EIO, which propagate.

    Returns (bytes written, copy_file_range still worth trying): the second is
    False when copy_file_range refused this pair of files (EXDEV between
    filesystems, EOPNOTSUPP, ...), so a caller copying many files between the same
    two filesystems passes ``try_cfr=False`` from then on and saves the attempt.
    """
    global _use_copy_file_range, _use_sendfile
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
    return done + read_write_copy(src_fd, dst_fd), cfr_ok


def _offset(fd: int) -> int:
    return os.lseek(fd, 0, os.SEEK_CUR)


def _loop(fn: Any, src_fd: int, dst_fd: int, size: int) -> int:
    done = 0
    while done < size:
        n: int = fn(src_fd, dst_fd, min(_COPY_CHUNK, size - done))
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


# -- opening paths beneath a directory without following symlinks ------------------

_RESOLVE_NO_SYMLINKS = 0x04  # openat2(2): fail with ELOOP on any symlink component
_RESOLVE_BENEATH = 0x08  # ... and on any ".." or absolute path escaping dirfd
_SYS_OPENAT2 = 437  # the same number on every Linux architecture (unified table, 5.6+)
_openat2: Any = None  # None: not looked up; False: unavailable


def _load_openat2() -> Any:
    global _openat2
    if _openat2 is None:
        _openat2 = False
        # long syscall(long number, int dirfd, const char *path, struct open_how *how,
        # size_t size): variadic in C; on Linux the fixed-argument call is the same.
        fn = _bind("syscall", "c_long", "c_long", "c_int", "c_char_p", "c_void_p", "c_size_t")
        if fn is not None:
            how = (_ct.c_uint64 * 3)(os.O_RDONLY | os.O_DIRECTORY, 0, _RESOLVE_NO_SYMLINKS)
            fd = fn(_SYS_OPENAT2, AT_FDCWD, b".", _ct.byref(how), _ct.sizeof(how))
            if fd >= 0:
                os.close(fd)
                _openat2 = fn
    return _openat2


def open_beneath(root_fd: int, relpath: str, flags: int) -> int:
    """Open ``relpath`` below the directory ``root_fd`` without following any symlink.

    Linux 5.6+: one openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) call, so a
    component swapped for a symlink mid-run fails with ELOOP instead of leading
    outside the tree.  Older kernels: one O_NOFOLLOW open per component.
    """
    if not relpath or relpath == ".":
        return os.dup(root_fd)
    fn = _load_openat2()
    if not fn:
        return open_per_component(root_fd, relpath, flags)
    if len(relpath) * 4 >= _PATH_STEP and len(os.fsencode(relpath)) >= _PATH_STEP:
        return _open_beneath_in_steps(root_fd, relpath, flags)  # (PATH_MAX: 4096 bytes)
    how = (_ct.c_uint64 * 3)(
        flags | os.O_CLOEXEC | os.O_NOFOLLOW, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS
    )
    fd = int(fn(_SYS_OPENAT2, root_fd, os.fsencode(relpath), _ct.byref(how), _ct.sizeof(how)))
    if fd < 0:
        _raise_errno(relpath)
    return fd


#: Longer relative paths are opened in steps of fewer bytes than this, each beneath the
#: directory the step before opened (so beneath ``root_fd`` still): a deep tree of long
#: names passes PATH_MAX, where one openat2 gives ENAMETOOLONG.
_PATH_STEP = 3072


def _open_beneath_in_steps(root_fd: int, relpath: str, flags: int) -> int:
    steps: list[str] = []
    size = 0  # bytes in the last step
    for part in relpath.split("/"):
        n = len(os.fsencode(part))
        if steps and size + 1 + n < _PATH_STEP:
            steps[-1] += "/" + part
            size += 1 + n
        else:
            steps.append(part)
            size = n
    return open_chain(root_fd, steps, flags, open_beneath)


# -- statx by directory fd (mount ID and "is a mount root", never following) ----------

_AT_SYMLINK_NOFOLLOW = 0x100
_AT_NO_AUTOMOUNT = 0x800
_AT_EMPTY_PATH = 0x1000
_STATX_BASIC = 0x7FF
_STATX_MNT_ID = 0x1000
_STATX_ATTR_MOUNT_ROOT = 0x2000
_statx: Any = None  # None: not looked up; False: no statx in this libc (glibc < 2.28)
# struct statx's fields read here, in one unpack (statx(2)): stx_mask (0x00),
# stx_attributes (0x08), stx_mode (0x1C), stx_ino (0x20), stx_attributes_mask (0x38),
# stx_dev_major/minor (0x88, 0x8C), stx_mnt_id (0x90).  A remove(files=) of a long list
# makes one statx an entry: this halved its cost.
_STATX_FIELDS: Any = None
_STATX_BUF: Any = None  # the ctypes type of its buffer (256 bytes: struct statx and room)


def statx(dir_fd: int, name: str) -> StatxResult:
    """``statx(dir_fd, name)``: ``name`` relative to ``dir_fd`` (``""``: ``dir_fd``
    itself; ``dir_fd`` may be :data:`AT_FDCWD`), without following a final symlink or
    triggering an automount.  ``os.stat`` (no mount ID) where statx is missing;
    ``os.statx`` only arrives in Python 3.15."""
    global _statx, _STATX_FIELDS, _STATX_BUF
    if _statx is None:
        # int statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *)
        fn = _bind("statx", "c_int", "c_int", "c_char_p", "c_int", "c_uint", "c_char_p")
        _statx = False if fn is None else fn
        import struct  # ctypes has loaded it

        _STATX_FIELDS = struct.Struct("=I4xQ12xH2xQ16xQ72xIIQ")
        _STATX_BUF = _ct.c_char * 256
    if _statx is False:
        return stat_nofollow(dir_fd, name, AT_FDCWD)
    buf = _STATX_BUF()
    flags = _AT_SYMLINK_NOFOLLOW | _AT_NO_AUTOMOUNT | (_AT_EMPTY_PATH if not name else 0)
    if _statx(dir_fd, os.fsencode(name), flags, _STATX_BASIC | _STATX_MNT_ID, buf) != 0:
        _raise_errno(name)
    mask, attrs, mode, ino, attrs_mask, major, minor, mnt = _STATX_FIELDS.unpack_from(buf)
    dev = os.makedev(major, minor)
    mnt_id = mnt if mask & _STATX_MNT_ID else None
    mount_root = (
        bool(attrs & _STATX_ATTR_MOUNT_ROOT) if attrs_mask & _STATX_ATTR_MOUNT_ROOT else None
    )
    return StatxResult(mode, dev, ino, mnt_id, mount_root)


# -- exchange, and rename without replacing ------------------------------------------------

_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_renameat2: Any = None  # None: not looked up; False: no renameat2 in this libc


def _rename2(a_fd: int, a: str, b_fd: int, b: str, flags: int) -> bool:
    """renameat2(2) with ``flags``: True when done, False where this kernel, libc or
    filesystem cannot (:data:`EXCHANGE_UNSUPPORTED`; glibc < 2.28).  Any other error:
    OSError naming ``a`` and ``b``."""
    global _renameat2
    if _renameat2 is None:
        # int renameat2(int olddirfd, const char *old, int newdirfd, const char *new,
        #               unsigned int flags)
        fn = _bind("renameat2", "c_int", "c_int", "c_char_p", "c_int", "c_char_p", "c_uint")
        _renameat2 = False if fn is None else fn
    if _renameat2 is False:
        return False
    if _renameat2(a_fd, os.fsencode(a), b_fd, os.fsencode(b), flags) == 0:
        return True
    code = _ct.get_errno()
    if code in EXCHANGE_UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), a, None, b)


def exchange(a_fd: int, a: str, b_fd: int, b: str) -> bool:
    """Swap the names ``a`` (in the directory ``a_fd``) and ``b`` (in ``b_fd``)
    atomically: renameat2(RENAME_EXCHANGE).  False where this kernel, libc or
    filesystem cannot (:data:`EXCHANGE_UNSUPPORTED`; glibc < 2.28): the caller
    renames twice instead.  Any other error: OSError naming ``a`` and ``b``."""
    return _rename2(a_fd, a, b_fd, b, _RENAME_EXCHANGE)


def rename_noreplace(a_fd: int, a: str, b_fd: int, b: str) -> bool:
    """Rename ``a`` (in ``a_fd``) to ``b`` (in ``b_fd``) only if ``b`` does not exist:
    renameat2(RENAME_NOREPLACE), FileExistsError (EEXIST) if it does -- a plain
    rename(2) would silently replace a file or an empty directory there.  False where
    this kernel, libc or filesystem cannot (NFS, many FUSE filesystems): the caller
    decides what to do instead."""
    return _rename2(a_fd, a, b_fd, b, _RENAME_NOREPLACE)


# -- the filesystem under an fd ---------------------------------------------------------

_fstatfs: Any = None  # None: not looked up; False: unavailable


def fs_magic(fd: int) -> int | None:
    """The statfs ``f_type`` of the filesystem holding the open file ``fd`` (the
    numbers of ``<linux/magic.h>``: 0x58465342 XFS, 0xEF53 ext2/3/4, ...); None where
    fstatfs fails.  ``os.fstatvfs`` does not give it."""
    global _fstatfs
    if _fstatfs is None:
        # int fstatfs(int fd, struct statfs *buf): buf is a buffer larger than the struct
        fn = _bind("fstatfs", "c_int", "c_int", "c_char_p")
        _fstatfs = False if fn is None else fn
    if _fstatfs is False:
        return None
    buf = _ct.create_string_buffer(512)
    if _fstatfs(fd, buf) != 0:
        return None
    # f_type is the first field, a (signed) long.
    return int.from_bytes(buf.raw[: _ct.sizeof(_ct.c_long)], sys.byteorder) & 0xFFFFFFFF


# -- paths and mounts -----------------------------------------------------------------


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


def mount_table_text() -> str | None:
    """This process's mount table as the kernel writes it (``/proc/self/mountinfo``,
    else ``/proc/self/mounts``), read without touching any mount; None without /proc.
    Any other failure (out of fds or memory) is raised, naming the file: it says
    nothing of the mounts, and asking psutil instead failed as a confusing import."""
    for path in ("/proc/self/mountinfo", "/proc/self/mounts"):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            if e.errno in NO_MOUNT_TABLE_FILE:
                continue
            raise
        return data.decode("utf-8", "surrogateescape")
    return None
