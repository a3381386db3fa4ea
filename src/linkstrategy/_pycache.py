"""The bytecode CPython writes for a module it imports (PEP 3147, 488): ``<stem>.py``'s
is ``__pycache__/<stem>.<tag>.pyc`` or ``<stem>.<tag>.opt-<n>.pyc`` beside it, the tag
the interpreter's (``cpython-311``, ``pypy310``), without dots.

No RECORD lists these files, and the interpreter trusts one while the source's mtime
and size match what it recorded.  So what removes or replaces a listed module removes
its bytecode too: an uninstall (else the package's directories stay, holding only
``__pycache__``) and an upgrade of a top-level module (else ``six.py`` replaced by a
file of the same size and mtime -- two versions unpacked within one second -- runs
the old version's bytecode).  Only the bytecode of the named sources is touched: a
``__pycache__`` is shared by every module of its directory."""

from __future__ import annotations

import os

PYCACHE = "__pycache__"


def source_of(name: str) -> str | None:
    """The source file name (``<stem>.py``) whose bytecode ``name`` in ``__pycache__``
    is, or None (``a.b.cpython-311.pyc`` is ``a.b.py``'s, never ``a.py``'s)."""
    if not name.endswith(".pyc"):
        return None
    core = name[:-4]
    head, _, opt = core.rpartition(".")
    if opt.startswith("opt-") and opt[4:].isdigit():
        core = head
    stem, dot, tag = core.rpartition(".")
    return f"{stem}.py" if dot and stem and tag else None


def bytecode_in(pycache_fd: int, sources: set[str] | frozenset[str]) -> list[str]:
    """The names in the ``__pycache__`` open at ``pycache_fd`` that are the bytecode of
    one of ``sources`` (``{"six.py"}``)."""
    return [n for n in os.listdir(pycache_fd) if source_of(n) in sources]


def drop_bytecode(pycache_fd: int, sources: set[str] | frozenset[str]) -> None:
    """Unlink the bytecode of ``sources`` in the ``__pycache__`` open at ``pycache_fd``,
    after those sources were replaced or removed.  Best effort: a name gone meanwhile
    or a directory of that name stays (it is only a cache; the interpreter rewrites
    what it finds stale or missing)."""
    try:
        names = bytecode_in(pycache_fd, sources)
    except OSError:
        return
    for n in names:
        try:
            os.unlink(n, dir_fd=pycache_fd)
        except OSError:
            pass


def drop_bytecode_beside(dir_fd: int, sources: set[str] | frozenset[str]) -> None:
    """:func:`drop_bytecode` of ``sources``, entries of the directory open at ``dir_fd``,
    in its ``__pycache__`` (not followed if it is a symlink)."""
    if not sources:
        return
    try:
        fd = os.open(PYCACHE, _DIR_NOFOLLOW, dir_fd=dir_fd)
    except OSError:
        return  # none (never imported), or not a directory of its own
    try:
        drop_bytecode(fd, sources)
    finally:
        os.close(fd)


_DIR_NOFOLLOW = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
