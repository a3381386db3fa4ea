"""Start-up cost: what a fresh interpreter has to import (issue #11).

Never a timed test: the modules a start pulls in are what costs, so these name the
expensive ones that each entry point must not load.  bench/compare.py --only startup
measures the time.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from linkstrategy import _owner, _txn


def loaded_after(code: str) -> set[str]:
    """Modules a fresh interpreter holds after running ``code`` that it did not at start."""
    prog = f"import sys\n_b = set(sys.modules)\n{code}\nprint(' '.join(set(sys.modules) - _b))"
    cp = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, check=True)
    return set(cp.stdout.split())


def test_import_linkstrategy_is_bare() -> None:
    assert loaded_after("import linkstrategy") <= {"linkstrategy", "__future__"}


VERSION = """
sys.argv = ["linkstrategy", "--version"]
from linkstrategy._cli import main
try:
    main()
except SystemExit:
    pass
"""


@pytest.mark.parametrize("module", ["typing", "logging", "json", "dataclasses", "socket"])
def test_version_does_not_import(module: str) -> None:
    assert module not in loaded_after(VERSION)


@pytest.mark.parametrize(
    "module",
    [
        "socket",
        "linkstrategy._txn",  # planning reads TXN_SUFFIX from _owner
        "json",
        "pathlib",
        "logging",  # _log: imported only when a record can go somewhere
    ],
)
def test_import_place_does_not_import(module: str) -> None:
    assert module not in loaded_after("import linkstrategy._place")


def test_txn_suffix_has_one_value() -> None:
    assert _txn.TXN_SUFFIX == _owner.TXN_SUFFIX


def test_probe_command_does_not_import_logging(tmp_path: object) -> None:
    """The CLI collects the library's warnings itself (_log.Collect)."""
    code = f"""
sys.argv = ["linkstrategy", "probe", {str(tmp_path)!r}]
from linkstrategy._cli import main
try:
    main()
except SystemExit:
    pass
"""
    assert "logging" not in loaded_after(code)
