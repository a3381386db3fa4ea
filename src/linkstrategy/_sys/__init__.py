"""The operating system, chosen once: clone, copy, xattrs, statx, open beneath,
exchange, filesystem magic, the path of an fd and the mount table.

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
    "rename_noreplace",
    "select_xattr_impl",
    "set_xattr",
    "statx",
]
