"""The operating system, chosen once: clone, copy, xattrs, statx, open beneath,
exchange, filesystem magic, and the C loop's loader.

Linux gets :mod:`._linux`; macOS (and any other POSIX system, with the macOS-only
calls absent) gets :mod:`._darwin`.  Both export the same functions with the same
signatures, re-exported here; no other module asks which system it runs on or
touches ctypes.  Nothing here loads ctypes or a C library at import: each binding
is made on first use.

The C loop (``linkstrategy._speedups``) is loaded here too, because whether it
exists is a platform fact (it is built on Linux only).
"""

from __future__ import annotations

import os
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
        C_LOOP_BUILT,
        clone_file,
        copy_fd,
        exchange,
        fd_path,
        fs_magic,
        mount_table_text,
        open_beneath,
        statx,
    )
else:  # pragma: no cover - macOS
    from ._darwin import (
        AT_FDCWD,
        C_LOOP_BUILT,
        clone_file,
        copy_fd,
        exchange,
        fd_path,
        fs_magic,
        mount_table_text,
        open_beneath,
        statx,
    )

TYPE_CHECKING = False  # no `typing` at run time: `linkstrategy --version` loads this package
if TYPE_CHECKING:
    from typing import Any

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
    "load_speedups",
    "mount_table_text",
    "open_beneath",
    "select_xattr_impl",
    "set_xattr",
    "speedups_status",
    "statx",
]


def speedups_status() -> tuple[Any, str]:
    """(the C extension ``linkstrategy._speedups`` or None, why it is or is not in use):
    not built on this platform, ``$LINKSTRATEGY_NO_SPEEDUPS`` set to a non-empty value,
    or not built when installed (no compiler)."""
    if not C_LOOP_BUILT:
        return None, "not in use (built on Linux only)"
    if os.environ.get("LINKSTRATEGY_NO_SPEEDUPS"):
        return None, "not in use (LINKSTRATEGY_NO_SPEEDUPS is set)"
    try:
        from .. import _speedups
    except ImportError as e:
        return None, f"not in use (not built when installed, e.g. no C compiler: {e})"
    return _speedups, "in use"


def load_speedups() -> Any:
    """The optional C extension ``linkstrategy._speedups`` (place()'s per-file loop
    without the GIL), or None (see :func:`speedups_status`)."""
    return speedups_status()[0]
