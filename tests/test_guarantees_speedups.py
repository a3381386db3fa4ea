"""The C per-file loop's own guards (src/linkstrategy/_speedups.c), called directly.

place() reaches these only in races; here each is set up deterministically.
Each test was seen to fail with its guard broken (tests/mutation/mutations.py).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from linkstrategy import _place

sp = _place._fast
_REQUIRED = os.environ.get("LINKSTRATEGY_REQUIRE_SPEEDUPS", "") not in ("", "0")

pytestmark = pytest.mark.skipif(
    sp is None and not _REQUIRED, reason="linkstrategy._speedups is not built or switched off"
)

_DIR = os.O_RDONLY | os.O_DIRECTORY


def place_files(strategy: int, src: Path, dst: Path, names: list[str]) -> tuple[int, int, bool]:
    sfd, dfd = os.open(src, _DIR), os.open(dst, _DIR)
    try:
        umask = os.umask(0)
        os.umask(umask)
        nxt, nbytes, cfr, _linked = sp.place_files(
            strategy, sfd, dfd, names, 0, umask, False, False, True
        )
        return nxt, nbytes, cfr
    finally:
        os.close(sfd)
        os.close(dfd)


def test_copy_never_opens_a_source_symlink(tmp_path: Path) -> None:
    """A source name that is (by now) a symlink is handed back, never followed."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    secret = tmp_path / "secret"
    secret.write_bytes(b"secret")
    os.symlink(secret, src / "f")
    (src / "g").write_bytes(b"g")
    nxt, nbytes, _ = place_files(sp.COPY, src, dst, ["f", "g"])
    assert (nxt, nbytes) == (0, 0)
    assert os.listdir(dst) == []


@pytest.mark.root
@pytest.mark.parametrize("op", ["flush", "write"])
def test_failed_close_leaves_nothing_under_the_final_name(fusefs: Any, op: str) -> None:
    """close() is where NFS (and FUSE) report write-back errors: a file whose close
    failed is not placed -- removed, and handed back to the Python path."""
    mnt = Path(fusefs.mountpoint)
    src, dst = mnt / "src", mnt / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "f").write_bytes(b"x" * 100_000)
    (src / "g").write_bytes(b"g")
    fusefs.inject(op, errno.EIO, count=1, path="/dst/f" if op == "flush" else "*")
    nxt, nbytes, _ = place_files(sp.COPY, src, dst, ["f", "g"])
    assert fusefs.consumed(op) == 1
    assert nxt == 0 and nbytes == 0
    assert os.listdir(dst) == []
