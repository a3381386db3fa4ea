"""The examples in the package's docstrings, run against the linkstrategy that is imported.

Not ``--doctest-modules`` on ``src/linkstrategy``: that makes pytest import the files
under src/ by module name, which under tox (a non-editable install) finds the
installed copy instead and stops with "import file mismatch".  Here the modules are
found from the imported package itself, so the examples test what is installed: the
installed wheel under tox and in the sdist check, src/ in an editable install.
"""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil

import pytest

import linkstrategy

# __main__ runs the CLI; _speedups is C (no docstring examples).
_SKIP = {"linkstrategy.__main__", "linkstrategy._speedups"}
_SUBMODULES = pkgutil.iter_modules(linkstrategy.__path__, "linkstrategy.")
MODULES = ["linkstrategy", *sorted(m.name for m in _SUBMODULES if m.name not in _SKIP)]


def _tests(name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(name)
    return doctest.DocTestFinder(exclude_empty=True).find(module, name)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    out = io.StringIO()
    for test in _tests(name):
        runner.run(test, out=out.write)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, out.getvalue()


def test_examples_are_found() -> None:
    """The finder sees the examples (a broken lookup would pass every test above)."""
    counts = {name: sum(len(t.examples) for t in _tests(name)) for name in MODULES}
    assert counts["linkstrategy"] >= 1
    assert counts["linkstrategy._txn"] >= 5
    assert sum(counts.values()) >= 30, counts
