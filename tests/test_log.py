"""The lazy logger (_log): records reach logging when something can receive them,
name the caller's line, and the CLI's collector takes warnings instead."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from linkstrategy._log import Collect, log


def _here() -> int:
    return sys._getframe(1).f_lineno


def test_records_reach_logging_with_the_callers_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="linkstrategy")
    log.debug("d %s", 1)
    line = _here() - 1
    log.info("i %s", 2)
    log.warning("w %s", 3)
    log.error("e %s", 4)
    got = [(r.levelno, r.getMessage(), r.name) for r in caplog.records]
    assert got == [
        (logging.DEBUG, "d 1", "linkstrategy"),
        (logging.INFO, "i 2", "linkstrategy"),
        (logging.WARNING, "w 3", "linkstrategy"),
        (logging.ERROR, "e 4", "linkstrategy"),
    ]
    first = caplog.records[0]
    assert (first.filename, first.lineno, first.funcName) == (
        "test_log.py",
        line,
        "test_records_reach_logging_with_the_callers_line",
    )


def test_exc_info_is_passed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="linkstrategy")
    try:
        raise OSError(5, "boom")
    except OSError:
        log.debug("failed", exc_info=True)
    assert caplog.records[0].exc_info is not None


def test_collect_takes_warnings_instead_of_logging(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="linkstrategy")
    with Collect() as messages:
        log.warning("a %s on %s", "fallback", "/x")
        log.error("plain")
        log.info("still logged")
    log.warning("after")
    assert messages == ["a fallback on /x", "plain"]
    assert [r.getMessage() for r in caplog.records] == ["still logged", "after"]


PROG = """
import sys
from linkstrategy._log import log
log.debug("not seen")
log.info("not seen either")
print("logging" in sys.modules, flush=True)
log.warning("seen %s", "here")
print("logging" in sys.modules, flush=True)
"""


def test_without_logging_imported_only_warnings_import_it() -> None:
    """No handler can exist before logging is imported: DEBUG/INFO are dropped without
    importing it; a WARNING imports it and reaches logging's last-resort handler."""
    cp = subprocess.run([sys.executable, "-c", PROG], capture_output=True, text=True, check=True)
    assert cp.stdout.split() == ["False", "True"]
    assert cp.stderr.strip() == "seen here"
