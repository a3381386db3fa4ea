"""The operating system, chosen once: clone, copy, xattrs, statx, open beneath,
exchange, rename without replacing, filesystem magic, the path of an fd and the mount table.

Linux gets :mod:`._linux`; macOS (and any other POSIX system, with the macOS-only
calls absent) gets :mod:`._darwin`.  Both export the same functions with the same
signatures, re-exported here; no other module asks which system it runs on or
touches ctypes.  Nothing here loads ctypes or a C library at import: each binding
is made on first use.
"""

from __future__ import annotations

import sys

from ._common import (
    EXCHANGE_UNSUPPORTED,
    StatxResult,
    copy_sparse,
    get_xattr,
    list_xattrs,
    select_xattr_impl,
    set_xattr,
)

if sys.platform.startswith("linux"):
    from ._linux import (
        AT_FDCWD,
        clone_file,
        copy_fd,
        exchange,
        fd_path,
        fs_magic,
        mount_table_text,
        open_beneath,
        rename_noreplace,
        statx,
    )
else:  # pragma: no cover - macOS
    from ._darwin import (
        AT_FDCWD,
        clone_file,
        copy_fd,
        exchange,
        fd_path,
        fs_magic,
        mount_table_text,
        open_beneath,
        rename_noreplace,
        statx,
    )

__all__ = [
    "AT_FDCWD",
    "EXCHANGE_UNSUPPORTED",
    "StatxResult",
    "clone_file",
    "copy_fd",
    "copy_sparse",
    "exchange",
    "fd_path",
    "fs_magic",
    "get_xattr",
    "list_xattrs",
    "mount_table_text",
    "open_beneath",
    "rename_new",
    "rename_noreplace",
    "select_xattr_impl",
    "set_xattr",
    "statx",
]


def rename_new(a_fd: int, a: str, b_fd: int, b: str) -> None:
    """Rename ``a`` (in ``a_fd``) to ``b`` (in ``b_fd``), never over anything:
    :class:`FileExistsError` (EEXIST, naming both) when something is at ``b``.
    ``RENAME_NOREPLACE`` (:func:`rename_noreplace`) where the filesystem has it; else
    (NFS, many FUSE filesystems) ``b`` is looked at first and then renamed to, so
    only what appears in between can be replaced -- and of a directory only an empty
    one, since rename(2) fails on any other."""
    import errno
    import os

    if rename_noreplace(a_fd, a, b_fd, b):
        return
    try:
        os.stat(b, dir_fd=b_fd, follow_symlinks=False)
    except FileNotFoundError:
        pass
    else:
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), a, None, b)
    try:
        os.rename(a, b, src_dir_fd=a_fd, dst_dir_fd=b_fd)
    except OSError as e:
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), a, None, b) from None
        raise
