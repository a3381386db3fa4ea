"""All-or-nothing change of several entries of one directory (a package upgrade).

:func:`upgrade` ``(parent, changes, renamed=...)`` places, replaces and removes
several entries of ONE directory ``parent`` (site-packages: ``numpy/``,
``numpy.libs/``, the dist-info) as one transaction: after a ``kill -9`` at any
point the next :func:`upgrade`, :func:`~linkstrategy.gc` of ``parent``,
:func:`~linkstrategy.remove` of an entry it changes (:func:`settle_before_remove`)
or :func:`recover_dir` of the journal leaves either every old
entry or every new one, never a mix.  One journal per transaction, in ``parent``;
every move a ``rename`` within one filesystem.  Other directories of that
filesystem (the scripts in ``bin/``) join the transaction with ``also=``: the
journal records each by its real path and ``(st_dev, st_ino)``, and a recovery
opens it again by that path and acts only if it is still that directory.

The journal is ``<parent>/.linkstrategy-upgrade.linkstrategy-txn/``, made, locked
and written exactly like :func:`~linkstrategy.replace`'s (module :mod:`._txn`):
``lock``, ``state`` (JSON with ``"kind": "upgrade"``, the phase and one entry per
change: its final name, the name it comes from, the ``[dev, ino]`` of the old and
of the new tree, their top-directory modes), ``new-<i>`` (the new trees) and
``old-<i>`` (the old ones once swapped out).  One such journal per parent at a
time: a second upgrade of the same parent gets :class:`TransactionBusy`.

1. ``building``: every new tree is placed into the journal.  Nothing in
   ``parent`` changes; any failure or kill rolls back (the journal is deleted).
2. ``swapping`` (written once every new tree is complete): the entries are
   swapped in, each one step, in this order:

   a. **code additions** (names that did not exist): ``rename`` into place.  A
      reader sees new code that no metadata refers to yet.
   b. **code replacements**: ``RENAME_EXCHANGE`` (the name never disappears).
   c. **metadata** (``*.dist-info``, ``*.egg-info``, ``*.data``): added by rename,
      replaced by exchange; a renamed dist-info (``renamed={"numpy-1.26.dist-info":
      "numpy-2.0.dist-info"}``) by exchanging the new tree with the OLD name, then
      renaming that name to the new one, so exactly one dist-info exists at every
      instant (first old content under the old name, then new content under the
      old name, then new content under the new name).  A dist-info removed and
      another added WITHOUT ``renamed`` are two dist-infos for a moment: pass
      ``renamed`` for a version change.
   d. **removals**: ``rename`` out into the journal, code first, metadata last:
      what the new metadata no longer lists disappears last, and an uninstalled
      package's metadata outlives its code by one rename, never the reverse.

   So a reader never sees a package without its metadata or two dist-infos; it
   may see new code under old metadata for the few renames in between (that is
   what "atomic per step" means: no filesystem offers one rename of several names).
   Without RENAME_EXCHANGE (NFS, most FUSE) each exchange is two renames and the
   name is missing between them, as with :func:`~linkstrategy.replace`.
3. ``committing``: the journal (holding the old trees) is deleted with
   :func:`~linkstrategy.remove` (busy files deferred to the trash).

Recovery finds every tree by the inode recorded in ``state``, whatever name the
interrupted step left it under.  ``building``: roll back.  ``swapping``: roll
forward as a whole when every new tree is still found, else back as a whole
(every step is undone in reverse order).  ``committing``: finish the removal.
Before touching anything it checks that each affected name holds the recorded old
tree, the recorded new tree, or nothing; if a name holds anything else (someone
changed it since), the journal is left alone and reported
(:class:`~linkstrategy.RemoveError`, EPERM).  Ownership is checked as for
replace() journals (:func:`._owner.may_act`).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable, Mapping

from . import _args, _txn
from ._errors import InvalidArgument, LinkStrategyError, PlaceError, RemoveError
from ._log import log
from ._owner import may_act, owner
from ._pycache import drop_bytecode_beside
from ._sys import fd_path
from ._trash import collect_trash_at as _collect_trash_at
from ._tree import StrPath

TYPE_CHECKING = False  # mypy treats any name TYPE_CHECKING as true; typing stays unloaded
if TYPE_CHECKING:
    from typing import Any

    from ._place import PlaceReport
    from ._plan import StrategyArg

__all__ = ["upgrade"]


UPGRADE_JOURNAL = ".linkstrategy-upgrade" + _txn.TXN_SUFFIX
KIND = "upgrade"
_META_SUFFIXES = (".dist-info", ".egg-info", ".data")

Ident = tuple[int, int]


def _is_meta(name: str) -> bool:
    return name.endswith(_META_SUFFIXES)


class _Entry:
    """One change: the tree ``old`` at ``src_name`` becomes ``new`` at ``name``."""

    def __init__(self, d: Mapping[str, Any]) -> None:
        self.name: str = d["name"]
        self.src_name: str = d["from"]
        self.slot: str = d["slot"]  # new-<i> in the journal; old-<i> for the old tree
        self.old: Ident | None = _txn._as_ident(d.get("old"))
        self.new: Ident | None = _txn._as_ident(d.get("new"))
        self.old_mode: Any = d.get("old_mode")
        self.new_mode: Any = d.get("new_mode")
        # None: an entry of the parent; k: of the k-th other directory (``also=``)
        self.dir: int | None = d.get("dir")

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "from": self.src_name,
            "slot": self.slot,
            "old": self.old,
            "new": self.new,
            "old_mode": self.old_mode,
            "new_mode": self.new_mode,
            "dir": self.dir,
        }

    @property
    def old_slot(self) -> str:
        return "old-" + self.slot.removeprefix("new-")


def _order(e: _Entry) -> int:
    """Swap order (module docstring): code before metadata, removals last."""
    meta = _is_meta(e.name) or _is_meta(e.src_name)
    if e.new is None:
        return 4 if meta else 3  # removals: code, then its metadata
    if meta:
        return 2  # metadata: added, replaced or renamed
    return 0 if e.old is None else 1  # code: added, then replaced


class _Upgrade(_txn._Journal):
    def __init__(self, parent_fd: int, parent: str) -> None:
        super().__init__(parent_fd, parent, UPGRADE_JOURNAL)
        self.entries: list[_Entry] = []
        # the other directories (``also=``): open fds, real paths, (st_dev, st_ino)
        self.dir_fds: list[int] = []
        self.dir_paths: list[str] = []
        self.dir_idents: list[Ident] = []

    def pfd(self, e: _Entry) -> int:
        """The fd of the directory ``e`` is an entry of."""
        return self.parent_fd if e.dir is None else self.dir_fds[e.dir]

    def ppath(self, e: _Entry) -> str:
        return self.parent if e.dir is None else self.dir_paths[e.dir]

    def fsync_dirs(self) -> None:
        for fd in (self.parent_fd, *self.dir_fds):
            _txn._fsync(fd)

    def add_dir(self, fd: int, real: str, ident: Ident) -> int:
        """Another directory of the transaction, open at ``fd`` (taken); its index."""
        self.dir_fds.append(fd)
        self.dir_paths.append(real)
        self.dir_idents.append(ident)
        return len(self.dir_fds) - 1

    def open_dir(self, path: str, ident: Ident | None) -> None:
        """In a recovery: open the other directory recorded as ``path``, which must
        still be the inode ``ident`` (else someone moved things: the journal is left
        alone, :class:`RemoveError` EPERM)."""
        try:
            fd = os.open(path, _txn._O_DIR)
        except OSError as e:
            raise _txn._leave(self.path, f"cannot open {path}: {e.strerror}") from None
        st = os.fstat(fd)
        if ident is None or (st.st_dev, st.st_ino) != ident:
            os.close(fd)
            raise _txn._leave(self.path, f"{path} is no longer the directory it changed")
        self.add_dir(fd, path, ident)

    def close(self) -> None:
        while self.dir_fds:
            os.close(self.dir_fds.pop())
        super().close()

    # -- journal --------------------------------------------------------------------

    def begin(self, **first: Any) -> None:
        super().begin(phase="building")

    def stamp(self, **kw: Any) -> None:
        self.state.update(kw)
        self.state.update(
            version=1,
            kind=KIND,
            entries=[e.as_dict() for e in self.entries],
            dirs=[
                {"path": p, "ident": i}
                for p, i in zip(self.dir_paths, self.dir_idents, strict=True)
            ],
            owner=owner(),
            time=time.time(),
        )

    def finish(self) -> None:
        """Delete the journal (old trees, leftovers, bookkeeping; ``state`` last)."""
        self.delete()

    def drop_bytecode(self) -> None:
        """Once the new entries are in: the bytecode of the top-level modules replaced or
        removed (``six.py``: its ``__pycache__/six.*.pyc`` is in ``parent``, outside the
        entry), which the interpreter would trust for a new file of the old one's size
        and mtime (see :mod:`._pycache`).  A tree takes its own ``__pycache__`` along.
        Best effort: what cannot go is only a cache."""
        by_dir: dict[int, set[str]] = {}
        for e in self.entries:
            names = by_dir.setdefault(self.pfd(e), set())
            names.update(n for n in (e.name, e.src_name) if n.endswith(".py"))
        for fd, names in by_dir.items():
            drop_bytecode_beside(fd, names)

    # -- finding trees by inode -----------------------------------------------------

    def _find(self, e: _Entry, ident: Ident | None) -> tuple[int, str] | None:
        if ident is None:
            return None
        pfd = self.pfd(e)
        for n in dict.fromkeys((e.name, e.src_name)):
            if _txn._ident_at(pfd, n) == ident:
                return (pfd, n)
        for n in self._slots(e):
            if _txn._ident_at(self.jfd, n) == ident:
                return (self.jfd, n)
        return None

    def _slots(self, e: _Entry) -> list[str]:
        """The journal's names for this entry's trees: ``new-<i>``, ``old-<i>``, and
        ``<either>-<hex>`` when the first was taken."""
        try:
            names = os.listdir(self.jfd)
        except OSError:
            return [e.slot, e.old_slot]
        return [
            n
            for n in names
            if n in (e.slot, e.old_slot) or n.startswith((e.slot + "-", e.old_slot + "-"))
        ]

    def _free(self, base: str) -> str:
        if not _txn._lexists_at(self.jfd, base):
            return base
        return f"{base}-{os.urandom(4).hex()}"

    def check(self) -> None:
        """Every affected name holds the old tree, the new one, or nothing."""
        for e in self.entries:
            for n in dict.fromkeys((e.name, e.src_name)):
                here = _txn._ident_at(self.pfd(e), n)
                if here is not None and here not in (e.old, e.new):
                    raise _txn._leave(
                        os.path.join(self.ppath(e), n),
                        "changed by someone else since the upgrade began",
                    )

    def _swap(self, a: tuple[int, str], b: tuple[int, str], gap: str) -> None:
        """Exchange two entries, or (no RENAME_EXCHANGE) ``b`` -> ``gap`` in the
        journal then ``a`` -> ``b``'s place, leaving ``b``'s tree at ``gap``."""
        if _txn._exchange(a[0], a[1], b[0], b[1]):
            return
        _txn._rename(b[0], b[1], self.jfd, gap)
        _txn._step("upgrade-moved-old")
        _txn._rename(a[0], a[1], b[0], b[1])

    # -- the two directions, per entry; each idempotent -----------------------------

    def forward(self, e: _Entry) -> None:
        new, pfd = self._find(e, e.new), self.pfd(e)
        if e.new is not None:
            if new is None:
                raise LinkStrategyError(errno.ENOENT, "new tree vanished", self.path)
            if new != (pfd, e.name):
                old = self._find(e, e.old)
                if old == (pfd, e.name):  # a replacement
                    self._swap(new, old, self._free(e.old_slot))
                elif e.src_name != e.name and old == (pfd, e.src_name):
                    # a renamed entry, before its exchange
                    self._swap(new, old, self._free(e.old_slot))
                    _txn._step(f"upgrade-exchanged:{e.name}")
                    _txn._rename(pfd, e.src_name, pfd, e.name)
                else:  # an addition, or a renamed entry after its exchange
                    if _txn._lexists_at(pfd, e.name):
                        raise _txn._leave(os.path.join(self.ppath(e), e.name), "appeared meanwhile")
                    _txn._rename(new[0], new[1], pfd, e.name)
            _txn._restore_mode(pfd, e.name, e.new, e.new_mode)
        old = self._find(e, e.old)
        if old is not None and old[0] == pfd and old[1] in (e.name, e.src_name):
            _txn._step(f"upgrade-removing:{e.name}")
            _txn._rename(pfd, old[1], self.jfd, self._free(e.old_slot))  # a removal

    def backward(self, e: _Entry) -> None:
        pfd = self.pfd(e)
        new = self._find(e, e.new)
        if e.old is not None:
            old = self._find(e, e.old)
            if old is None:
                raise LinkStrategyError(errno.ENOENT, "old tree vanished", self.path)
            if old != (pfd, e.src_name):
                if new == (pfd, e.name) and e.name != e.src_name:
                    if _txn._lexists_at(pfd, e.src_name):
                        raise _txn._leave(
                            os.path.join(self.ppath(e), e.src_name), "appeared meanwhile"
                        )
                    _txn._rename(pfd, e.name, pfd, e.src_name)
                    new = (pfd, e.src_name)
                if new == (pfd, e.src_name):
                    self._swap(old, new, self._free(e.slot))
                else:
                    if _txn._lexists_at(pfd, e.src_name):
                        raise _txn._leave(
                            os.path.join(self.ppath(e), e.src_name), "appeared meanwhile"
                        )
                    _txn._rename(old[0], old[1], pfd, e.src_name)
            _txn._restore_mode(pfd, e.src_name, e.old, e.old_mode)
        new = self._find(e, e.new)
        if new is not None and new[0] == pfd:
            _txn._rename(pfd, new[1], self.jfd, self._free(e.slot))  # an addition taken back

    def roll_forward(self) -> None:
        if any(e.new is not None and self._find(e, e.new) is None for e in self.entries):
            self.rollback()
            return
        self.check()
        for e in sorted(self.entries, key=_order):
            self.forward(e)
        self.fsync_dirs()
        self.write(phase="committing")
        self.drop_bytecode()
        self.finish()

    def rollback(self) -> None:
        if self.state.get("phase") == "building":
            for e in self.entries:  # modes made writable just before "swapping"
                _txn._restore_mode(self.pfd(e), e.src_name, e.old, e.old_mode)
        else:
            self.check()
            for e in sorted(self.entries, key=_order, reverse=True):
                self.backward(e)
            self.fsync_dirs()
        self.finish()


def recover_upgrade_at(
    parent_fd: int,
    parent: str,
    jname: str,
    jfd: int,
    lock_fd: int | None,
    state: dict[str, Any],
) -> None:
    """Finish or undo the upgrade whose journal (open at ``jfd``, locked by us, with
    ``state`` read) is in the directory open at ``parent_fd``; takes both fds.
    Called by :func:`._txn.recover_journal_at` for a journal of kind ``upgrade`` (see
    :func:`recover_journal_at`)."""
    up = _Upgrade(parent_fd, parent)
    up.jfd, up.lock_fd, up.state = jfd, lock_fd, state
    try:
        raw = state.get("entries")
        try:
            if jname != UPGRADE_JOURNAL or not isinstance(raw, list):
                raise TypeError
            up.entries = [_Entry(d) for d in raw]
            dirs = state.get("dirs", [])
            if not isinstance(dirs, list):
                raise TypeError
            for e in up.entries:
                for n in (e.name, e.src_name):
                    _check_name(n)
                if not e.slot.startswith("new-") or "/" in e.slot:
                    raise ValueError(e.slot)
                if e.dir is not None and (
                    type(e.dir) is not int or not 0 <= e.dir < len(dirs) or e.name != e.src_name
                ):
                    raise ValueError(e.dir)
            paths = [str(d["path"]) for d in dirs]
            idents = [_txn._as_ident(d["ident"]) for d in dirs]
        except (TypeError, KeyError, ValueError, AttributeError):
            raise _txn._leave(up.path, "its state is not an upgrade's") from None
        for path, ident in zip(paths, idents, strict=True):
            up.open_dir(path, ident)
        phase = state.get("phase")
        log.info("recovering interrupted upgrade of %s (phase %s)", parent, phase)
        if phase == "swapping":
            up.roll_forward()
        elif phase == "committing":
            up.finish()
        else:
            up.rollback()
    finally:
        up.close()


def recover_journal_at(parent_fd: int, parent: str, jname: str) -> bool:
    """:func:`._txn.recover_journal_at` for a journal of either kind, replace()'s or
    upgrade()'s: what gc(), remove() and upgrade() call."""
    return _txn.recover_journal_at(parent_fd, parent, jname, kinds={KIND: recover_upgrade_at})


def recover_dir(txn_path: str | os.PathLike[str]) -> bool:
    """Finish or undo the replace() or upgrade() whose journal is ``txn_path``; True if
    there was one.  Raises :class:`TransactionBusy` while a live process holds it."""
    return _txn.recover_dir(txn_path, kinds={KIND: recover_upgrade_at})


def pending_names(parent_fd: int) -> tuple[str, frozenset[str]] | None:
    """``(phase, the entry names it changes)`` of the upgrade journal in the directory
    open at ``parent_fd``; None if there is none.  Read without its lock (``state`` is
    replaced by rename, so it is whole): for :func:`~linkstrategy.remove`, which must
    not remove an entry that a later recovery would bring back.  Another user's
    journal, or a ``state`` that is not a regular file of the caller's (a FIFO in a
    sticky ``/tmp`` must not block every remove() there), is no journal: None."""
    st = _txn._stat_at(parent_fd, UPGRADE_JOURNAL)
    if st is None or not stat.S_ISDIR(st.st_mode) or not may_act(st):
        return None
    try:
        jfd = os.open(UPGRADE_JOURNAL, _txn._O_DIR, dir_fd=parent_fd)
    except OSError:
        return None
    try:
        fst = os.fstat(jfd)
        if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
            return None
        state = _txn._read_state(jfd)
    finally:
        os.close(jfd)
    names: set[str] = set()
    raw = state.get("entries")
    for d in raw if isinstance(raw, list) else ():
        if isinstance(d, dict) and d.get("dir") is None:  # an entry of this directory
            names.update(v for v in (d.get("name"), d.get("from")) if isinstance(v, str))
    phase = state.get("phase")
    return (phase if isinstance(phase, str) else ""), frozenset(names)


def settle_before_remove(parent_fd: int, parent: str, names: set[str], *, strict: bool) -> bool:
    """Before :func:`~linkstrategy.remove` takes ``names`` out of the directory open at
    ``parent_fd``: finish or undo, as a whole, an interrupted upgrade of that directory
    that changes any of them -- removing first and recovering later would bring a
    removed entry back from the journal.  True if one was recovered.

    ``strict`` (the caller describes a package by its metadata: ``files=``, ``last=``):
    if the recovery went past the building phase, the entries may no longer be what
    the caller's list describes, so :class:`RemoveError` (EAGAIN) is raised, nothing
    of the caller's removed: read the metadata again and retry.  Raises
    :class:`TransactionBusy` while a live upgrade holds the journal, and
    :class:`RemoveError` (EPERM) for a journal not ours to act on (both untouched).
    """
    pending = pending_names(parent_fd)
    if pending is None or not names & pending[1]:
        return False
    phase = pending[0]
    if not recover_journal_at(parent_fd, parent, UPGRADE_JOURNAL):
        return False
    if strict and phase != "building":
        raise RemoveError(
            errno.EAGAIN,
            "an interrupted upgrade() of "
            + ", ".join(sorted(names & pending[1]))
            + " was finished first; the file list may describe the old version: "
            "read the metadata (RECORD) again and retry",
            parent,
        )
    return True


def _check_name(n: Any) -> str:
    if (
        not isinstance(n, str)
        or not n
        or "/" in n
        or "\0" in n
        or n in (".", "..")
        or _txn.is_journal_name(n)
        or _txn.is_stage_name(n)
    ):
        raise InvalidArgument(errno.EINVAL, "not a plain entry name", str(n))
    return n


def _names(given: object, what: str) -> list[tuple[str, object]]:
    """The items of ``changes`` or ``renamed``, with ``str`` entry names
    (:func:`_check_name`).  A name given twice (``"a"`` and ``b"a"``) is refused, not
    silently one of them."""
    if not isinstance(given, Mapping):
        got = type(given).__name__
        raise TypeError(f"upgrade(): {what} must be a mapping of entry names, not {got}")
    out: list[tuple[str, object]] = []
    seen: set[str] = set()
    for n, v in given.items():
        name = _check_name(_args.path(n, f"upgrade(): a name in {what}"))
        if name in seen:
            raise InvalidArgument(errno.EINVAL, f"entry named twice in {what}", name)
        seen.add(name)
        out.append((name, v))
    return out


def upgrade(
    parent: StrPath,
    changes: Mapping[str, StrPath | None] | Mapping[bytes, StrPath | None],
    *,
    renamed: Mapping[str, StrPath] | Mapping[bytes, StrPath] | None = None,
    also: Mapping[StrPath, Mapping[str, StrPath | None]] | None = None,
    strategy: StrategyArg = "auto",
    strict: bool | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    xattrs: bool = True,
    fsync: bool = False,
) -> dict[str, PlaceReport]:
    """Change several entries of the directory ``parent`` as one transaction.

    ``changes`` maps entry names of ``parent`` to a source (file or tree) to place
    there, or to None to remove the entry.  ``renamed`` maps an existing entry (a
    dist-info whose name changes with the version) to the name of a new entry in
    ``changes`` that takes its place; the old entry goes away with it.  ``also``
    maps other directories on ``parent``'s filesystem to their changes, in the same
    transaction (the scripts in ``bin/``: ``{venv / "bin": {"f2py": new / "f2py"}}``);
    their entries swap with the code (before the metadata), their removals go with
    the code's.  The other keyword arguments are :func:`~linkstrategy.place`'s.
    Returns the placement report of each placed name (an ``also`` entry's under its
    directory's real path joined with the name).  On failure nothing in ``parent``
    (or an ``also`` directory) changed and the error is raised (module docstring for
    the order and the recovery).

    >>> import linkstrategy, pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for p in ("site/pkg", "site/pkg-1.dist-info", "new/pkg", "new/pkg-2.dist-info"):
    ...     (d / p).mkdir(parents=True)
    >>> new = {"pkg": d / "new/pkg", "pkg-2.dist-info": d / "new/pkg-2.dist-info"}
    >>> _ = upgrade(d / "site", new, renamed={"pkg-1.dist-info": "pkg-2.dist-info"})
    >>> sorted(os.listdir(d / "site"))
    ['pkg', 'pkg-2.dist-info']
    """
    from ._place import place  # lazy: place pulls in planning and probing

    parent_s = _args.path(parent, "upgrade(): parent")
    changes_s = {  # a source path, or None: a removal
        n: None if v is None else _args.path(v, f"upgrade(): changes[{n!r}]")
        for n, v in _names(changes, "changes")
    }
    renamed_s = {
        n: _args.path(v, f"upgrade(): renamed[{n!r}]") for n, v in _names(renamed or {}, "renamed")
    }
    for a, b in renamed_s.items():
        if a in changes_s:
            raise InvalidArgument(errno.EINVAL, "renamed entry also listed in changes", a)
        if changes_s.get(b) is None:
            raise InvalidArgument(errno.EINVAL, "rename target has no source in changes", b)
    if len(set(renamed_s.values())) != len(renamed_s):
        raise InvalidArgument(errno.EINVAL, "two entries renamed to one name", parent_s)
    kw: dict[str, Any] = {
        "strategy": strategy,
        "strict": strict,
        "workers": _args.workers(workers, "upgrade(): workers="),
        "progress": progress,
        "xattrs": xattrs,
        "fsync": fsync,
    }
    others = [
        (_args.path(d, "upgrade(): a directory in also"), _names(ch, "also"))
        for d, ch in (also or {}).items()
    ]
    pfd = os.open(parent_s, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        real = fd_path(pfd, parent_s)
        recover_journal_at(pfd, real, UPGRADE_JOURNAL)
        for n in (*changes_s, *renamed_s):
            _txn.recover_at(pfd, real, n)  # an interrupted replace() of one of them
        _collect_trash_at(pfd, real, 5.0)
        back = {b: a for a, b in renamed_s.items()}
        up = _Upgrade(pfd, real)
        try:
            sources: list[str | None] = []
            for n, src in changes_s.items():
                frm = back.get(n, n)
                old = _txn._ident_at(pfd, frm)
                if frm != n and old is None:
                    raise InvalidArgument(errno.ENOENT, "renamed entry does not exist", frm)
                if frm != n and _txn._lexists_at(pfd, n):
                    raise InvalidArgument(errno.EEXIST, "rename target exists already", n)
                _add(up, None, n, frm, src, old, sources)
            for d, ch in others:
                k = _other_dir(up, pfd, d)
                dfd, dreal = up.dir_fds[k], up.dir_paths[k]
                for n, v in ch:
                    _txn.recover_at(dfd, dreal, n)
                    src = None if v is None else _args.path(v, f"upgrade(): also[{d!r}][{n!r}]")
                    _add(up, k, n, n, src, _txn._ident_at(dfd, n), sources)
            try:
                up.begin()
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                recover_journal_at(pfd, real, UPGRADE_JOURNAL)  # busy if its owner lives
                up.begin()
            try:
                reports = _run(up, sources, place, kw)
            except BaseException:
                try:
                    up.rollback()
                except Exception:  # rollback never masks the original error
                    log.warning("rollback of upgrade(%s) failed; the next call recovers", real)
                raise
        finally:
            up.close()
    finally:
        os.close(pfd)
    return reports


def _add(
    up: _Upgrade,
    k: int | None,
    name: str,
    frm: str,
    src: str | None,
    old: Ident | None,
    sources: list[str | None],
) -> None:
    """One change of the transaction: ``name`` (in the ``k``-th other directory, or the
    parent for None), coming from ``frm``, becomes ``src`` (None: removed)."""
    if src is None and old is None:
        path = name if k is None else os.path.join(up.dir_paths[k], name)
        raise InvalidArgument(errno.ENOENT, "entry to remove does not exist", path)
    slot = f"new-{len(up.entries)}"
    up.entries.append(_Entry({"name": name, "from": frm, "slot": slot, "old": old, "dir": k}))
    sources.append(src)


def _other_dir(up: _Upgrade, pfd: int, path: str) -> int:
    """Open ``path`` (as the kernel resolves it), another directory of the transaction:
    on ``parent``'s filesystem (every move is a rename) and not ``parent`` itself; its
    index in ``up``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise InvalidArgument(e.errno or 0, f"also: {e.strerror}", path) from None
    st, pst = os.fstat(fd), os.fstat(pfd)
    ident = (st.st_dev, st.st_ino)
    if ident in ((pst.st_dev, pst.st_ino), *up.dir_idents):
        os.close(fd)
        raise InvalidArgument(errno.EINVAL, "also: the parent, or a directory given twice", path)
    if st.st_dev != pst.st_dev:
        os.close(fd)
        raise InvalidArgument(errno.EXDEV, "also: not on the parent's filesystem", path)
    return up.add_dir(fd, fd_path(fd, path), ident)


def _run(
    up: _Upgrade, sources: list[str | None], place: Any, kw: dict[str, Any]
) -> dict[str, PlaceReport]:
    via = f"/proc/self/fd/{up.jfd}" if os.path.isdir("/proc/self/fd") else up.path
    reports: dict[str, PlaceReport] = {}
    _txn._step("upgrade-building")
    same: list[_Entry] = []
    for e, src in zip(up.entries, sources, strict=True):
        if src is None:
            continue
        key = e.name if e.dir is None else os.path.join(up.ppath(e), e.name)
        try:
            reports[key] = place(src, os.path.join(via, e.slot), **kw)
        except OSError as err:
            for attr in ("filename", "filename2"):
                v = getattr(err, attr)
                if isinstance(v, str) and v.startswith(via + "/"):
                    setattr(err, attr, up.path + v[len(via) :])
            raise
        e.new = _txn._ident_at(up.jfd, e.slot)
        if e.new is None:
            raise LinkStrategyError(errno.ENOENT, "placed tree vanished", up.path)
        if e.new == e.old:
            # A file hardlinked from the very file installed there (a reinstall from the
            # same cache): nothing to swap, and one inode under two names would make
            # the bookkeeping by inode take the entry for a removal.
            if e.name != e.src_name:
                raise PlaceError(
                    errno.EINVAL,
                    "the new file is the renamed entry itself",
                    os.fspath(src),
                    None,
                    os.path.join(up.parent, e.src_name),
                )
            same.append(e)
        _txn._step(f"upgrade-placed:{e.name}")
    up.entries = [e for e in up.entries if e not in same]  # their slots go with the journal
    for e in up.entries:
        if e.old is not None and _txn._ident_at(up.pfd(e), e.src_name) != e.old:
            raise PlaceError(
                errno.EBUSY,
                "changed by someone else while the upgrade was building",
                os.path.join(up.path, e.slot) if e.new is not None else None,
                None,
                os.path.join(up.ppath(e), e.src_name),
            )
        try:
            e.new_mode = _txn._writable_top(up.jfd, e.slot) if e.new is not None else None
            e.old_mode = _txn._writable_top(up.pfd(e), e.src_name) if e.old is not None else None
        except PermissionError as err:
            raise PlaceError(
                errno.EACCES,
                f"cannot swap a read-only directory not owned by you ({err.strerror})",
                os.path.join(up.path, e.slot),
                None,
                os.path.join(up.ppath(e), e.src_name),
            ) from None
    up.write(phase="swapping")
    _txn._step("upgrade-swapping")
    try:
        for e in sorted(up.entries, key=_order):
            up.forward(e)
            _txn._step(f"upgrade-swapped:{e.name}")
    except OSError as err:
        if err.errno in (errno.EACCES, errno.EPERM):
            raise PlaceError(
                err.errno, f"cannot swap the new trees in: {err.strerror}", up.path, None, up.parent
            ) from None
        raise
    up.fsync_dirs()
    up.write(phase="committing")
    _txn._step("upgrade-committing")
    up.drop_bytecode()
    up.finish()
    return reports
