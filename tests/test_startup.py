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


@pytest.mark.parametrize(
    "module",
    ["typing", "logging", "json", "dataclasses", "inspect", "socket", "linkstrategy._place"],
)
def test_version_does_not_import(module: str) -> None:
    assert module not in loaded_after(VERSION)


#: What ``from linkstrategy import place`` must not load (issue #11: within 30 ms of a
#: bare interpreter).  dataclasses brings inspect, ast, dis and tokenize (the result
#: types are ``_record.record`` classes instead); typing is for type checkers only
#: (``if TYPE_CHECKING:``); re (with enum) is imported where a pattern is first matched.
NOT_FOR_PLACE = [
    "socket",
    "linkstrategy._txn",  # planning reads TXN_SUFFIX from _owner
    "json",
    "pathlib",
    "logging",  # _log: imported only when a record can go somewhere
    "dataclasses",
    "inspect",
    "ast",
    "typing",
    "re",
    "enum",
]


@pytest.mark.parametrize(
    "code",
    # the import statement asks the module for __path__ (a module __getattr__ must not
    # answer it with an import); the package's __getattr__ goes through importlib
    ["import linkstrategy._place", "from linkstrategy import place"],
)
def test_import_place_does_not_import(code: str) -> None:
    loaded = loaded_after(code)
    assert "linkstrategy._place" in loaded
    assert sorted(m for m in NOT_FOR_PLACE if m in loaded) == []


#: What remove() and gc() must not load (``linkstrategy remove`` is timed against
#: ``rm -rf`` with its start-up in it): journals are read and written with json, and a
#: staging directory is a pathlib.Path, only when there is one.
NOT_FOR_REMOVE = ["json", "pathlib", "typing", "re", "enum", "dataclasses", "inspect", "logging"]


def test_import_remove_does_not_import() -> None:
    loaded = loaded_after("from linkstrategy import remove, gc")
    assert "linkstrategy._remove" in loaded and "linkstrategy._txn" in loaded
    assert sorted(m for m in NOT_FOR_REMOVE if m in loaded) == []


def test_txn_suffix_has_one_value() -> None:
    assert _txn.TXN_SUFFIX == _owner.TXN_SUFFIX


@pytest.mark.parametrize(
    "module",
    [
        "logging",  # the CLI collects the library's warnings itself (_log.Collect)
        "dataclasses",
        "inspect",
        "typing",
    ],
)
def test_probe_command_does_not_import(tmp_path: object, module: str) -> None:
    """``linkstrategy probe PATH`` (issue #11: within 40 ms of a bare interpreter)."""
    code = f"""
sys.argv = ["linkstrategy", "probe", {str(tmp_path)!r}]
from linkstrategy._cli import main
try:
    main()
except SystemExit:
    pass
"""
    loaded = loaded_after(code)
    assert "linkstrategy._probe" in loaded
    assert module not in loaded
