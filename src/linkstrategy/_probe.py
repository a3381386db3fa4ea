"""``probe(path)``: the mount a path lives on, what kind it is, and what it can do.

Two layers:

* the **static** answer from the mount table alone (:mod:`._classify`): free, and
  never touches the filesystem, so it is safe on a hard NFS mount whose server is
  gone;
* the **live** answer: in a hidden temporary directory on the filesystem itself,
  try a clone, a hardlink and a user xattr, then remove everything.  Cached per
  mount for the life of the process.  On a network mount the test runs in a
  worker thread with a timeout, so a dead server cannot hang the caller.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import stat
import threading
import time

from . import _args
from ._classify import NETWORK_ENV, Traits, classify, network_override
from ._errors import PROBE_INCONCLUSIVE
from ._mounts import (
    Mount,
    by_prefix,
    existing_ancestor,
    find_mount,
    mount_id_of,
    read_mount_table,
)
from ._owner import hold, release, tmp_name
from ._record import field, record, replace
from ._removal import reap_stale, rmtree_at
from ._sys import clone_file, get_xattr, set_xattr

TYPE_CHECKING = False  # mypy treats any name TYPE_CHECKING as true; typing stays unloaded
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypedDict, TypeVar

    from ._args import AnyPath
    from ._classify import Tri

    T = TypeVar("T")

__all__ = ["NETWORK_ENV", "Probe", "clear_cache", "network_override", "probe"]

#: Prefix of live-test directories: ``<prefix><owner>-<n>`` (:func:`._owner.tmp_name`),
#: holding a lock file while in use, so a later probe or gc tells a stale one (its
#: lock free) from a running one.
PROBE_PREFIX = ".linkstrategy-probe-"

_LIVE_TIMEOUT = 10.0  # seconds a live test on a network mount may take
_RESOLVE_TIMEOUT = 2.0  # seconds resolving a path on a network mount may take


if TYPE_CHECKING:

    class ProbeJSON(TypedDict):
        path: str
        mount_point: str
        fstype: str
        source: str
        device: str | None
        mount_id: int | None
        root: str | None
        options: list[str]
        read_only: bool
        kind: str
        network: bool
        fuse: bool
        reflink: Tri
        hardlink: Tri
        xattr: Tri
        max_links: int | None
        tested: bool
        untested_reason: str | None
        test_ms: float | None
        test_errors: dict[str, str]
        notes: list[str]


@record(frozen=True)
class Probe:
    """What :func:`probe` found out about the filesystem under ``path``.

    ``reflink``, ``hardlink`` and ``xattr`` are ``"yes"``/``"no"`` after a live
    test (``tested`` is true) and the static expectation (``"maybe"`` where it
    depends) otherwise; ``untested_reason`` then says why.
    """

    path: str
    mount: Mount
    traits: Traits
    network: bool
    reflink: Tri
    hardlink: Tri
    xattr: Tri
    tested: bool
    untested_reason: str | None = None
    test_seconds: float | None = None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.traits.kind

    @property
    def mount_point(self) -> str:
        return self.mount.mount_point

    def to_json(self) -> ProbeJSON:
        """The stable JSON form (keys documented in docs/cli.md)."""
        m = self.mount
        return {
            "path": self.path,
            "mount_point": m.mount_point,
            "fstype": m.fstype,
            "source": m.source,
            "device": m.device,
            "mount_id": m.mount_id,
            "root": m.root,
            "options": list(m.options),
            "read_only": m.read_only,
            "kind": self.traits.kind,
            "network": self.network,
            "fuse": self.traits.fuse,
            "reflink": self.reflink,
            "hardlink": self.hardlink,
            "xattr": self.xattr,
            "max_links": self.traits.max_links,
            "tested": self.tested,
            "untested_reason": self.untested_reason,
            "test_ms": None if self.test_seconds is None else round(self.test_seconds * 1e3, 3),
            "test_errors": dict(self.errors),
            "notes": list(self.traits.notes),
        }


@record(frozen=True)
class _Live:
    reflink: Tri
    hardlink: Tri
    xattr: Tri
    seconds: float
    errors: dict[str, str]


_lock = threading.Lock()
_table: dict[int, Mount] = {}  # mount ID -> Mount, from the last read of the table
_table_list: list[Mount] = []
_live: dict[tuple[Any, ...], _Live] = {}


def clear_cache() -> None:
    """Forget cached mount tables and live-test results (after mounts change).

    ``probe()`` tests each mount once per process; call this after mounting,
    unmounting or remounting something so the next probe looks again.

    >>> import linkstrategy
    >>> linkstrategy.clear_cache()
    """
    with _lock:
        _table.clear()
        _table_list.clear()
        _live.clear()


def _cached_mount(real: str) -> Mount:
    """The mount for an existing real path, via mount ID and a cached table."""
    mid = mount_id_of(real)
    if mid is not None:
        m = _table.get(mid)
        if m is not None and (real == m.mount_point or _under(real, m.mount_point)):
            return m
    return find_mount(real, _refresh_table())


def _refresh_table() -> list[Mount]:
    table = read_mount_table()
    with _lock:
        _table_list[:] = table
        _table.clear()
        for m in table:
            if m.mount_id is not None:
                _table[m.mount_id] = m  # later lines win: the visible mount on a point
    return table


def _under(path: str, mount_point: str) -> bool:
    return mount_point == "/" or path.startswith(mount_point.rstrip("/") + "/")


def _live_key(m: Mount) -> tuple[Any, ...]:
    return (m.mount_id, m.mount_point, m.fstype, m.source, m.root)


def probe(
    path: AnyPath,
    *,
    live: bool = True,
    table: list[Mount] | None = None,
) -> Probe:
    """Probe the filesystem that ``path`` lives on (``path`` need not exist yet).

    ``live=True`` tests reflink, hardlink and xattrs for real in a hidden
    temporary directory next to ``path`` (once per mount per process).  With a
    ``table`` (a mount table saved on another machine), nothing local is touched
    and the answer is the static expectation.

    >>> import linkstrategy
    >>> p = linkstrategy.probe("/tmp")
    >>> p.hardlink in ("yes", "no", "maybe")
    True
    """
    spath = _args.path(path, "probe(): path")
    if table is not None:
        mount = find_mount(spath, table, local=False)
        where = os.path.normpath(os.path.join("/", spath))
        live = False
    else:
        where, mount, unreachable = _locate(spath)
        if unreachable is not None:
            live = False
    traits = classify(mount)
    network = traits.network or (table is None and mount.mount_point in network_override())
    base = Probe(
        path=spath,
        mount=mount,
        traits=traits,
        network=network,
        reflink=traits.reflink,
        hardlink=traits.hardlink,
        xattr=traits.xattr,
        tested=False,
        untested_reason=(
            "saved mount table" if table is not None else unreachable or "live test not requested"
        ),
    )
    if not live:
        return base
    if mount.read_only:
        return replace(base, untested_reason="read-only mount")
    if mount.fstype == "autofs":
        return replace(base, untested_reason="automount point (not triggered)")
    key = _live_key(mount)
    result = _live.get(key)
    if result is None:
        testdir = where if os.path.isdir(where) else os.path.dirname(where)
        try:
            result = _run_live(testdir, timeout=_LIVE_TIMEOUT if network else None)
        except OSError as e:
            return replace(base, untested_reason=f"cannot test in {testdir}: {e.strerror}")
        except TimeoutError:
            return replace(base, untested_reason=f"live test timed out after {_LIVE_TIMEOUT:g} s")
        with _lock:
            _live[key] = result
    return replace(
        base,
        reflink=result.reflink,
        hardlink=result.hardlink,
        xattr=result.xattr,
        tested=True,
        untested_reason=None,
        test_seconds=result.seconds,
        errors=dict(result.errors),
    )


def _locate(spath: str) -> tuple[str, Mount, str | None]:
    """(nearest existing ancestor, its mount, why it could not be reached or None).

    A path that lies, by its name alone, under a network mount is resolved in a
    worker thread with a timeout: a stat on a hard NFS mount whose server is gone
    never returns.  If it times out, the mount found by name is the answer.
    """
    lexical = os.path.normpath(os.path.abspath(spath))
    table = _table_list or _refresh_table()
    guess = by_prefix(lexical, table)
    if guess is not None and (classify(guess).network or guess.mount_point in network_override()):
        try:
            where = _with_timeout(lambda: existing_ancestor(spath), _RESOLVE_TIMEOUT)
        except TimeoutError:
            return (
                lexical,
                guess,
                (f"{guess.mount_point} did not answer within {_RESOLVE_TIMEOUT:g} s"),
            )
        return where, _cached_mount(where), None
    where = existing_ancestor(spath)
    return where, _cached_mount(where), None


def _with_timeout(fn: Callable[[], T], timeout: float | None) -> T:
    """``fn()`` in a daemon thread; TimeoutError if it has not returned in time (it is
    left blocked in the kernel; nothing else waits for it)."""
    if timeout is None:
        return fn()
    box: list[Any] = []

    def run() -> None:
        try:
            box.append((True, fn()))
        except BaseException as e:  # handed to the caller below
            box.append((False, e))

    t = threading.Thread(target=run, name="linkstrategy-probe", daemon=True)
    t.start()
    t.join(timeout)
    if not box:
        raise TimeoutError(timeout)
    ok, value = box[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def _run_live(directory: str, timeout: float | None) -> _Live:
    return _with_timeout(lambda: _live_test(directory), timeout)


def _errname(e: OSError) -> str:
    return errno.errorcode.get(e.errno or 0, str(e.errno))


def remove_stale_probes(directory: str) -> None:
    """Remove live-test directories left in ``directory`` by processes that died
    (their lock is free, :func:`._owner.judge`); never another user's."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        reap_stale(fd, prefixes=(PROBE_PREFIX,))
    except OSError:
        pass
    finally:
        os.close(fd)


_probe_seq = itertools.count()


def _live_test(directory: str) -> _Live:
    """Try clone, link and xattr in a fresh hidden directory inside ``directory``."""
    t0 = time.perf_counter()
    remove_stale_probes(directory)
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        name = tmp_name(next(_probe_seq), PROBE_PREFIX)
        os.mkdir(name, 0o700, dir_fd=dfd)  # OSError (EACCES, EROFS, ...) -> "untested"
        errors: dict[str, str] = {}
        tfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        tst = os.fstat(tfd)
        lock: int | None = None
        # Everything inside is reached from tfd, and the directory goes only if it is
        # still the one made here: whoever may rename in ``directory`` could swap another
        # directory of the caller's in under that name meanwhile.
        try:
            lock = hold(tfd)  # tells a concurrent probe this directory is in use
            fd = os.open("a", _NEW_FILE, 0o600, dir_fd=tfd)
            try:
                os.write(fd, b"linkstrategy" * 342)  # 4104 bytes: more than one block
            finally:
                os.close(fd)
            reflink = _test_clone(tfd, errors)
            hardlink = _test_link(tfd, errors)
            xattr = _test_xattr(tfd, errors)
        finally:
            with contextlib.suppress(OSError):
                release(tfd, lock)
            os.close(tfd)
            with contextlib.suppress(OSError):
                rmtree_at(dfd, name, expect=(tst.st_dev, tst.st_ino))
    finally:
        os.close(dfd)
    return _Live(reflink, hardlink, xattr, time.perf_counter() - t0, errors)


#: A new file of the probe's, in its own directory.
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _answer(e: OSError) -> None:
    """A test's error is an answer ("no") unless it says the test could not be made
    (:data:`PROBE_INCONCLUSIVE`: out of fds, memory, space...): then it goes up and the
    probe is "untested", not cached -- an EMFILE once was "this XFS cannot reflink"
    for the rest of the process."""
    if e.errno in PROBE_INCONCLUSIVE:
        raise e


def _test_clone(tfd: int, errors: dict[str, str]) -> Tri:
    """Clone the probe's file ``a`` to ``c`` (both in the directory ``tfd``)."""
    sfd = os.open("a", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=tfd)
    try:
        os.close(clone_file(sfd, tfd, "c", 0o600))
    except OSError as e:
        _answer(e)
        errors["reflink"] = _errname(e)
        return "no"
    finally:
        os.close(sfd)
    return "yes"


def _test_link(tfd: int, errors: dict[str, str]) -> Tri:
    """Hardlink the probe's file ``a`` as ``l`` (both in the directory ``tfd``)."""
    try:
        os.link("a", "l", src_dir_fd=tfd, dst_dir_fd=tfd, follow_symlinks=False)
    except OSError as e:
        _answer(e)
        errors["hardlink"] = _errname(e)
        return "no"
    a = os.stat("a", dir_fd=tfd, follow_symlinks=False)
    b = os.stat("l", dir_fd=tfd, follow_symlinks=False)
    # sshfs links on the server but shows nlink 1 and another inode; a BeeGFS
    # "hardlink" can come back as a symlink.  Only a shared inode is a hardlink.
    if stat.S_ISLNK(b.st_mode):
        errors["hardlink"] = "link() made a symlink"
        return "no"
    if (a.st_ino, a.st_dev) != (b.st_ino, b.st_dev) or a.st_nlink < 2:
        errors["hardlink"] = "link() did not share the inode (nlink/st_ino differ)"
        return "no"
    return "yes"


def _test_xattr(tfd: int, errors: dict[str, str]) -> Tri:
    """Set and read back a user xattr on the probe's file ``a`` (in ``tfd``)."""
    try:
        fd = os.open("a", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=tfd)
        try:
            set_xattr(fd, "user.linkstrategy", b"1")
            ok = get_xattr(fd, "user.linkstrategy") == b"1"
        finally:
            os.close(fd)
    except OSError as e:
        _answer(e)
        errors["xattr"] = _errname(e)
        return "no"
    return "yes" if ok else "no"
