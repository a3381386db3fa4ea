"""A user's script under ``mypy --strict`` catches misspelt names and strategies.

The package's lazy ``__getattr__`` is hidden from type checkers, strategies are
``Literal`` types, and ``replace()`` has explicit parameters.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy is in the dev extra")

SRC = Path(__file__).parent.parent / "src"

MISTAKES = """\
import linkstrategy

linkstrategy.plcae("a", "b")
linkstrategy.place("a", "b", strategy="hardlnk")
linkstrategy.place("a", "b", strategy=("reflink", "hardlnk"))
linkstrategy.replace("a", "b", stratgy="copy")
report: int = linkstrategy.plan("a", "b").to_json()["chain"]
linkstrategy.place("a", "b").files = 3
linkstrategy.Skipped("p")
"""

CORRECT = """\
import linkstrategy

r = linkstrategy.place("a", "b", strategy=("reflink", "copy"), strict=True)
n: int = r.files
linkstrategy.replace("a", "b", strategy="symlink", workers=2)
chain: list[linkstrategy.Strategy] = linkstrategy.plan("a", "b").to_json()["chain"]
table = linkstrategy.parse_mount_table("srv:/x /mnt nfs4 rw 0 0\\n")
linkstrategy.clear_cache()
kind: str = linkstrategy.probe("/mnt", table=table).to_json()["kind"]
skipped = linkstrategy.Skipped("p", reason="a FIFO")
"""


def mypy(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "user.py"
    script.write_text(code)
    return subprocess.run(
        # the project's own mypy settings (its overrides for untyped optional imports),
        # as a user's mypy sees an installed, typed package
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--config-file",
            str(SRC.parent / "pyproject.toml"),
            str(script),
        ],
        capture_output=True,
        text=True,
        env={"MYPYPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        check=False,
    )


def test_mypy_catches_a_users_mistakes(tmp_path: Path) -> None:
    r = mypy(tmp_path, MISTAKES)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = {int(ln.split(":")[1]) for ln in r.stdout.splitlines() if ": error:" in ln}
    # 8 and 9: the result types are records (issue #11) that type checkers see as frozen
    # dataclasses (dataclass_transform): assignment and a missing field are errors
    assert lines == {3, 4, 5, 6, 7, 8, 9}, r.stdout
    assert 'Module has no attribute "plcae"' in r.stdout


def test_mypy_accepts_correct_use(tmp_path: Path) -> None:
    r = mypy(tmp_path, CORRECT)
    assert r.returncode == 0, r.stdout + r.stderr
