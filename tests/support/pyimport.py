"""A real interpreter importing from a directory as a user's does: writing bytecode
(the test runners set PYTHONDONTWRITEBYTECODE, which hid every stale-``__pycache__``
defect from the suite)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: hatchling's fixed timestamp for reproducible builds (2020-02-02): every file of every
#: version of a package built so has this mtime.
FIXED_MTIME = 1_580_601_600


def run_importing(path: Path, code: str, *opts: str) -> str:
    """``code`` run by this interpreter (with ``opts``: ``-O``) with ``path`` first on
    ``sys.path``, bytecode written; its stdout, stripped."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX", "PYTHONPATH")
    }
    env["PYTHONPATH"] = str(path)
    out = subprocess.run(
        [sys.executable, *opts, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return out.stdout.strip()


def same_size_and_mtime(a: Path, b: Path, text_a: str, text_b: str) -> None:
    """Write two versions of a module whose only difference the interpreter's bytecode
    check cannot see: same size, same mtime."""
    assert len(text_a) == len(text_b)
    for p, t in ((a, text_a), (b, text_b)):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(t)
        os.utime(p, (FIXED_MTIME, FIXED_MTIME))
