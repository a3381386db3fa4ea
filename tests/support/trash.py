"""A trash directory as linkstrategy makes one, for tests that put entries in it.

A directory is a trash only when it holds the marker that names it (``_trash``'s
module docstring): a test that made ``.linkstrategy-trash/`` with ``mkdir`` would
make a directory the library rightly leaves alone.
"""

from __future__ import annotations

import os
from pathlib import Path

from linkstrategy import _trash


def make_trash(parent: Path, name: str | None = None) -> Path:
    """The caller's trash directory in ``parent`` (``name``: the one
    :func:`~linkstrategy._trash.trash_name_for` picks), made by the library's own code
    (0700, its marker inside) if it is not there yet."""
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        name = name or _trash.trash_name_for(os.fstat(fd))
        tfd = _trash._make_trash(fd, name, str(parent / name))
        if tfd is not None:
            os.close(tfd)
        os.close(_trash.open_trash(fd, name, str(parent / name)))  # it is one
    finally:
        os.close(fd)
    return parent / name


def entry(trash: Path, name: str, age: float = 3600.0) -> Path:
    """The path of a trash entry called ``name`` moved in ``age`` seconds ago."""
    import time

    return trash / f"{int(time.time() - age)}-1-abcdef-{name}"
