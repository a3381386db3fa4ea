"""The strategy chain of one place() run (``_chain.Chain``): what it drops, what it
learns, what it raises, and how often it warns.

The unit tests drive a :class:`Chain` made from a real plan (of ``tmp_path``) with
``OSError``s as the syscalls give them; the behavioural tests at the end meet the
same decisions through ``place()`` on real filesystems (FUSE with injected faults).
The downgrade, EMLINK, EAGAIN, copy_file_range and ``copy=`` behaviour on XFS/ext4
are in test_place.py, test_guarantees_place.py and test_batch.py.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import linkstrategy
from linkstrategy import PlaceError, StrategyUnavailable, _chain
from linkstrategy._chain import TRANSIENT_TRIES, Chain, Fallback
from linkstrategy._plan import Plan, Strategy
from linkstrategy._record import replace

ENOTSUP = errno.errorcode[errno.EOPNOTSUPP]  # the name Linux gives 95 (ENOTSUP == EOPNOTSUPP)


@pytest.fixture(autouse=True)
def fresh_process_warnings() -> Iterator[None]:
    """The per-process warn-once set, as in a new process."""
    saved = set(_chain._warned)
    _chain._warned.clear()
    yield
    _chain._warned.clear()
    _chain._warned.update(saved)


@pytest.fixture
def base_plan(tmp_path: Path) -> Plan:
    (tmp_path / "src").mkdir()
    return linkstrategy.plan(tmp_path / "src", tmp_path / "dst")


def chain_of(p: Plan, *strategies: Strategy, strict: bool = False, **kw: Any) -> Chain:
    return Chain(replace(p, chain=strategies, strict=strict), **kw)


def err(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def fail(c: Chain, strategy: Strategy, nxt: Strategy | None, code: int, tries: int = 0) -> str:
    return c.failed(strategy, nxt, err(code), tries, "pkg/f.py", "/s/pkg/f.py", "/d/pkg/f.py")


# -- the chain for one file ------------------------------------------------------------------


def test_private_files_never_hardlink(base_plan: Plan) -> None:
    full = chain_of(base_plan, "reflink", "hardlink", "copy")
    assert full.for_file() == ("reflink", "hardlink", "copy")
    assert full.for_file(private=True) == ("reflink", "copy")
    assert chain_of(base_plan, "hardlink", "copy").for_file(private=True) == ("copy",)
    only = chain_of(base_plan, "hardlink", strict=True)
    assert only.for_file(private=True) == ("copy",), "never a hardlink, even when forced"
    assert only.for_file() == ("hardlink",)


# -- after a failure ----------------------------------------------------------------------------


def test_pair_error_drops_the_strategy_for_the_run(base_plan: Plan) -> None:
    c = chain_of(base_plan, "reflink", "hardlink", "copy")
    assert fail(c, "reflink", "hardlink", errno.EOPNOTSUPP) == "next"
    assert c.strategies == ("hardlink", "copy")
    assert c.fallbacks == [
        Fallback("pkg/f.py", "reflink", "hardlink", errno.EOPNOTSUPP, "pair cannot reflink")
    ]
    assert fail(c, "hardlink", "copy", errno.EXDEV) == "next"
    assert c.strategies == ("copy",)
    assert [f.errno for f in c.fallbacks] == [errno.EOPNOTSUPP, errno.EXDEV]


def test_downgrade_never_removes_the_last_strategy(base_plan: Plan) -> None:
    c = chain_of(base_plan, "hardlink")
    c.downgrade("hardlink", err(errno.EXDEV), "pkg/f.py")
    assert c.strategies == ("hardlink",)
    assert len(c.warnings) == 1


def test_per_file_errors_do_not_downgrade(base_plan: Plan) -> None:
    c = chain_of(base_plan, "hardlink", "copy")
    assert fail(c, "hardlink", "copy", errno.EMLINK) == "next"
    assert fail(c, "hardlink", "copy", errno.EAGAIN, tries=TRANSIENT_TRIES) == "next"
    assert c.strategies == ("hardlink", "copy")
    assert [(f.errno, f.to_strategy, f.reason) for f in c.fallbacks] == [
        (errno.EMLINK, "copy", "per-file limit"),
        (errno.EAGAIN, "copy", "per-file limit"),
    ]
    assert c.warnings == []


def test_transient_errors_are_retried_a_bounded_number_of_times(base_plan: Plan) -> None:
    c = chain_of(base_plan, "reflink", "copy")
    for tries in range(TRANSIENT_TRIES):
        assert fail(c, "reflink", "copy", errno.EAGAIN, tries) == "retry"
        assert fail(c, "reflink", "copy", errno.EINTR, tries) == "retry"
    assert c.fallbacks == []
    assert fail(c, "reflink", "copy", errno.EAGAIN, TRANSIENT_TRIES) == "next"
    assert c.strategies == ("reflink", "copy")


def test_real_errors_stop_the_run_even_with_a_strategy_left(base_plan: Plan) -> None:
    c = chain_of(base_plan, "reflink", "hardlink", "copy")
    for code in (errno.ENOSPC, errno.EIO, errno.EMFILE, errno.EROFS):
        with pytest.raises(PlaceError) as ei:
            fail(c, "reflink", "hardlink", code)
        assert type(ei.value) is PlaceError
        assert (ei.value.errno, ei.value.filename, ei.value.filename2) == (
            code,
            "/s/pkg/f.py",
            "/d/pkg/f.py",
        )
        assert str(ei.value.strerror).startswith(f"reflink failed: {os.strerror(code)}")
    assert c.strategies == ("reflink", "hardlink", "copy") and c.fallbacks == []


def test_strict_makes_a_pair_error_at_the_chains_end_fatal(base_plan: Plan) -> None:
    strict = chain_of(base_plan, "reflink", strict=True)
    with pytest.raises(StrategyUnavailable) as ei:
        fail(strict, "reflink", None, errno.EOPNOTSUPP)
    assert ei.value.errno == errno.EOPNOTSUPP
    assert (ei.value.filename, ei.value.filename2) == ("/s/pkg/f.py", "/d/pkg/f.py")
    assert "forced strategy reflink failed" in str(ei.value)
    # not strict: the same error is a plain PlaceError
    with pytest.raises(PlaceError) as ei2:
        fail(chain_of(base_plan, "reflink"), "reflink", None, errno.EOPNOTSUPP)
    assert not isinstance(ei2.value, StrategyUnavailable)
    # strict, but not a capability error: a plain PlaceError
    with pytest.raises(PlaceError) as ei3:
        fail(strict, "reflink", None, errno.ENOSPC)
    assert not isinstance(ei3.value, StrategyUnavailable)
    # strict with a strategy left in the list: that one is tried
    listed = chain_of(base_plan, "reflink", "copy", strict=True)
    assert fail(listed, "reflink", "copy", errno.EOPNOTSUPP) == "next"
    assert listed.strategies == ("copy",)


# -- warn once: per run in the report, per process in the log ------------------------------------


def test_a_downgrade_warns_once_per_run_and_once_per_process(
    base_plan: Plan, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="linkstrategy"):
        first = chain_of(base_plan, "reflink", "hardlink", "copy")
        fail(first, "reflink", "hardlink", errno.EOPNOTSUPP)
        fail(first, "reflink", "hardlink", errno.EOPNOTSUPP)  # a thread that had not seen it
        assert len(first.warnings) == 1, "once per run"
        fail(first, "reflink", "hardlink", errno.EXDEV)  # another reason: its own warning
        assert len(first.warnings) == 2
        second = chain_of(base_plan, "reflink", "hardlink", "copy")  # the next run, same pair
        fail(second, "reflink", "hardlink", errno.EOPNOTSUPP)
        assert second.warnings == first.warnings[:1], "each report has its own"
    logged = [r.getMessage() for r in caplog.records if r.name == "linkstrategy"]
    assert logged == first.warnings, "once per process in the log"
    mp = base_plan.dst_probe.mount
    assert logged[0].startswith(f"cannot reflink from {base_plan.src_probe.mount.mount_point} (")
    assert f"to {mp.mount_point} ({mp.fstype}): {ENOTSUP} (" in logged[0]
    assert "on pkg/f.py; falling back to hardlink for this pair" in logged[0]


# -- learned on the way ------------------------------------------------------------------------


def test_copy_file_range_learned_off_stays_off(base_plan: Plan) -> None:
    c = chain_of(base_plan, "copy")
    c.learn_cfr(True)
    assert c.cfr
    c.learn_cfr(False)
    assert not c.cfr
    c.learn_cfr(True)  # a thread whose copy began before: it cannot turn it back on
    assert not c.cfr


def test_a_destination_without_xattrs_is_asked_once(base_plan: Plan) -> None:
    c = chain_of(base_plan, "copy")
    assert c.xattrs
    assert c.xattr_failed(err(errno.EOPNOTSUPP), "user.a") == "stop"
    assert not c.xattrs, "the run stops copying extended attributes"
    assert c.xattr_failed(err(errno.EOPNOTSUPP), "user.b") == "stop"
    mp = base_plan.dst_probe.mount.mount_point
    assert c.warnings == [f"extended attributes not kept on {mp} ({ENOTSUP} setting user.a)"]
    assert not chain_of(base_plan, "copy", xattrs=False).xattrs, "not asked for"


def test_a_refused_xattr_name_is_skipped_and_warned_once(base_plan: Plan) -> None:
    c = chain_of(base_plan, "copy")
    assert c.xattr_failed(err(errno.EPERM), "security.x") == "next"
    assert c.xattr_failed(err(errno.EPERM), "security.x") == "next"
    assert c.xattr_failed(err(errno.EACCES), "trusted.y") == "next"
    assert c.xattrs, "other names are still copied"
    assert c.warnings == [
        f"extended attribute security.x not kept: EPERM ({os.strerror(errno.EPERM)})",
        f"extended attribute trusted.y not kept: EACCES ({os.strerror(errno.EACCES)})",
    ]
    assert c.xattr_failed(err(errno.EIO), "user.a") == "fail"
    assert c.xattr_failed(err(errno.ENOSPC), "user.a") == "fail"


# -- through place(), on real filesystems --------------------------------------------------------


def _tree_with_xattrs(root: Path, n: int) -> None:
    (root / "src").mkdir()
    for i in range(n):
        f = root / "src" / f"f{i}"
        f.write_bytes(b"x" * (i + 1))
        os.setxattr(f, "user.a", b"1")
        os.setxattr(f, "user.b", b"2")
    linkstrategy.plan(root / "src", root / "dst")  # the live probe (cached) sets an xattr too


def test_xattrs_unsupported_on_the_destination_are_tried_once(fusefs: Any, place_loop: str) -> None:
    """The FUSE daemon says EOPNOTSUPP to every setxattr: the first one teaches the run,
    no other is sent, the files are placed, one warning says so."""
    mnt = Path(fusefs.mountpoint)
    _tree_with_xattrs(mnt, 4)
    fusefs.inject("setxattr", errno.EOPNOTSUPP, count=1000)
    r = linkstrategy.place(mnt / "src", mnt / "dst", strategy="copy", workers=1)
    assert r.files == 4
    assert fusefs.consumed("setxattr") == 1
    assert [w for w in r.warnings if "extended attributes not kept" in w] in (
        [f"extended attributes not kept on {mnt} ({ENOTSUP} setting {name})"]
        for name in ("user.a", "user.b")  # in the order listxattr gives
    )
    for i in range(4):
        assert (mnt / "dst" / f"f{i}").read_bytes() == b"x" * (i + 1)


def test_a_refused_xattr_is_skipped_per_file_and_the_others_kept(
    fusefs: Any, place_loop: str
) -> None:
    """EPERM for one attribute name (as for ``security.*`` as a user): each file still
    gets its other attributes, and the report names the refused one once."""
    mnt = Path(fusefs.mountpoint)
    _tree_with_xattrs(mnt, 3)
    fusefs.inject("setxattr", errno.EPERM, count=1)
    r = linkstrategy.place(mnt / "src", mnt / "dst", strategy="copy", workers=1)
    assert r.files == 3 and fusefs.consumed("setxattr") == 1
    refused = [w for w in r.warnings if w.startswith("extended attribute ")]
    assert len(refused) == 1 and "not kept: EPERM" in refused[0], r.warnings
    name = refused[0].split()[2]
    kept = {str(x) for x in os.listxattr(mnt / "dst" / "f0")} | {
        str(x) for x in os.listxattr(mnt / "dst" / "f1")
    }
    assert {"user.a", "user.b"} <= kept
    missing = [f for f in ("f0", "f1", "f2") if name not in os.listxattr(mnt / "dst" / f)]
    assert len(missing) == 1, "only the one refused setxattr is missing"
    assert os.listxattr(mnt / "dst" / missing[0]) == [n for n in ("user.a", "user.b") if n != name]
