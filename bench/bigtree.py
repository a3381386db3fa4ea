"""A generated tree of many small files: the ``bigtree`` case of compare.py.

``make_tree(root, files=200_000, dirs=10_000)`` writes ``dirs`` directories (the
root counted as one: about sqrt(dirs) directories under the root, the rest spread
under them) and ``files`` regular files spread round-robin over all of them.  File
sizes cycle deterministically through 0..2047 bytes (mean about 1 KiB); the content
is a repeated byte pattern.  The same arguments always make the same tree.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

FILES = 200_000
DIRS = 10_000
MAX_SIZE = 2048


def layout(dirs: int) -> list[str]:
    """The relative directory paths, root (``""``) first, parents before children."""
    if dirs < 1:
        raise ValueError(f"dirs must be >= 1, not {dirs}")
    rest = dirs - 1
    top = min(rest, max(1, math.isqrt(rest)))
    out = [""] + [f"d{t:03d}" for t in range(top)]
    for k in range(rest - top):
        out.append(f"d{k % top:03d}/s{k // top:04d}")
    return out


def file_size(i: int) -> int:
    return (i * 7919) % MAX_SIZE


def make_tree(root: Path, files: int = FILES, dirs: int = DIRS) -> tuple[int, int, int]:
    """Write the tree under ``root`` (created; must not exist).  Returns (files, dirs, bytes)."""
    rels = layout(dirs)
    os.mkdir(root)
    for rel in rels[1:]:
        os.mkdir(root / rel)
    pattern = bytes(range(256)) * (MAX_SIZE // 256 + 1)
    total = 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for i in range(files):
        rel = rels[i % len(rels)]
        size = file_size(i)
        fd = os.open(os.path.join(root, rel, f"f{i:06d}.txt"), flags, 0o644)
        try:
            if size:
                os.write(fd, pattern[:size])
        finally:
            os.close(fd)
        total += size
    return files, len(rels), total
