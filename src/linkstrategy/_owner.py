"""Who made a temporary name, and whether that process is gone.

Temporaries (``.lstmp-…``, probe directories, staging directories) carry a host
tag and a pid.  On the same host, a pid that no longer exists means the writer
died (kill -9) and its leftovers may go; a temporary from another host (a shared
network filesystem) is judged by age, since its pid means nothing here.
"""

from __future__ import annotations

import os
import socket
import time
import zlib

__all__ = ["HOST", "is_orphan", "pid_alive", "tag"]

#: A short, stable tag for this machine.
HOST = f"{zlib.crc32(socket.gethostname().encode()) & 0xFFFF:04x}"

#: Another host's temporaries are left alone for this long.
FOREIGN_GRACE = 3600.0


def tag() -> str:
    """``<host>-<pid>``: what a temporary name carries to say whose it is."""
    return f"{HOST}-{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (ours always does)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def is_orphan(host: str, pid: str, mtime: float | None) -> bool:
    """Whether a temporary tagged ``host``/``pid`` (modified at ``mtime``) was left
    by a process that is gone."""
    if host == HOST and pid.isdigit():
        return not pid_alive(int(pid))
    return mtime is not None and time.time() - mtime > FOREIGN_GRACE
