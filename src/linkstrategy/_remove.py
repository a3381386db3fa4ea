"""Robust removal of files and trees, built for network filesystems.

This module is remove()'s front: its arguments (``files=``, ``last``), the interrupted
``replace()`` next to a root, the stale trash; the walk, the retries and the
refusals are the tree engine's (:mod:`._tree`), the deferral the trash's
(:mod:`._trash`), gc() is :mod:`._gc`.

:func:`remove` walks each tree with directory file descriptors (``openat`` with
``O_NOFOLLOW``, ``unlinkat``, ``unlinkat(AT_REMOVEDIR)``), like the safe path of
``shutil.rmtree``: it never follows a symlink and never leaves the tree, even if a
component is swapped for a symlink mid-walk (the swapped-in link is removed, not
followed).

Policies (the reasons are in fsfacts.md §8 and peers.md §5, §11):

* **Retry.** ``EBUSY``/``ENOTEMPTY``/``EAGAIN``/``EINTR`` (:data:`REMOVE_RETRY`)
  are retried by whole passes over what is left, with exponential backoff from
  10 ms (doubling, at most 0.5 s a step) inside one time ``budget`` for the
  whole call.
* **Silly-renamed files.** An NFS ``.nfs<16hex><8hex>`` file held open gives
  EBUSY on unlink and makes rmdir of its directory give ENOTEMPTY until the holder
  closes it; FUSE re-hides ``.fuse_hidden*`` under a new name when it is unlinked.
  The holder is often the calling process itself (an imported ``.so``), so waiting
  cannot help: as soon as a pass finds nothing left but such names, the root is
  *deferred* at once (below) instead of spending the budget.
* **Deferral.** A root that still cannot go (held open, or busy past the budget)
  is moved with one ``rename`` into ``<parent>/.linkstrategy-trash/`` as
  ``<unix time>-<pid>-<random>-<name>``.  The trash directory is a sibling of
  the removed root, so it is on the same mount and (being a plain directory made
  in the root's parent) in the same btrfs subvolume: the rename cannot give EXDEV.
  The destination looks clean at once; the entry is listed in
  :attr:`RemoveReport.deferred`.  The next :func:`remove` with a root in that
  directory, a ``place()`` calling :func:`collect_trash`, or :func:`gc` empties it.
* **Mounts are never crossed.** Each directory's mount ID (``statx`` STATX_MNT_ID,
  which tells a bind mount of the same filesystem apart) and ``st_dev`` are
  compared with the root's before it is opened.  A mount point inside the tree is
  left alone, untouched, and reported in :attr:`RemoveReport.mounts_skipped`; its
  ancestors stay too (they are not empty) and are *not* deferred, since renaming
  them would carry the mount into the trash.  A btrfs subvolume inside the tree
  (different ``st_dev``, same mount) is treated the same way, as
  ``rm --one-file-system`` does: deleting a subvolume (often a snapshot) is an
  administrative act (``btrfs subvolume delete``), not part of removing a tree.
  A subvolume named *as a root* is emptied and rmdir'ed like any directory.
* **Permissions.** EACCES/EPERM on an unlink or rmdir makes the containing
  directory writable (``fchmod`` of the directory fd) and tries once more; a
  directory that cannot be opened is made readable and searchable first.  The
  directory *holding* a root is outside the tree and is never chmod'ed.
* **Parallelism.** On network and FUSE mounts (``workers=None``: 32 threads) the
  walk itself is parallel: every directory is a job that opens it (relative to
  its parent's fd, with the same checks), submits its subdirectories as jobs and
  unlinks its files; a directory is rmdir'ed, deepest first, by whichever job
  finishes the last of its children.  Unlinks in one directory stay one after
  another (the kernel holds the directory's lock for each round trip); many
  directories are in flight at once.  On a local disk the walk is serial, and a
  big tree (more than ``_LOCAL_SERIAL_DIRS`` directories) is handed to 2 threads
  midway (measured on 2 cores, a 7.6k-file tree: ~15% faster on XFS and tmpfs;
  threads do not pay for a small tree).  ``workers=N > 1`` makes every walk
  parallel with N threads; ``workers=1`` keeps it serial.
* **Interrupted replace().** A journal ``.<name>.linkstrategy-txn`` next to a root
  is recovered (rolled forward or back, see :mod:`._txn`) before the root is removed.
* **Refusals** (raise :class:`RemoveError` before anything is touched): ``/``,
  the user's home directory or any ancestor of it, and a mount point itself.
* A missing path is not an error.

``last`` (metadata goes last): entries removed after everything else, in the
order given.  An absolute entry names one path (it need not be among ``paths``).
A relative entry (no ``..``) is taken relative to *each directory root* in
``paths``; entries that do not exist are skipped.  Example for uninstalling a
wheel: ``remove([pkg_dir, dist_info_dir], last=("METADATA", "RECORD"))``.  The
other files go while the metadata still lists them; the metadata goes only when
every other file is gone.  If anything else could not be removed (an error, or a
mount left alone), the ``last`` entries are kept, so files are never left behind
without the metadata that lists them.  (uv repairs a dist-info that lacks
METADATA by deleting it, but only warns about one that lacks RECORD, so
``("METADATA", "RECORD")`` is the friendlier order for uv.)

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp()) / "tree"
>>> (d / "sub").mkdir(parents=True); _ = (d / "sub" / "f").write_text("x")
>>> r = remove(d)
>>> (r.removed, d.exists(), r.deferred)
(3, False, ())
"""

from __future__ import annotations

import errno
import functools
import os
import stat
from collections.abc import Iterable, Sequence

from . import _args
from ._errors import InvalidArgument, RemoveError
from ._log import log
from ._pycache import PYCACHE, bytecode_in
from ._removal import (
    Root,
    by_parent,
    check_relative,
    each_in_its_parent,
    open_roots,
    parent_at,
    passes,
    preset_parent,
    remove_entry,
    remove_roots,
    root_for,
)
from ._sys import fd_path, open_beneath, statx
from ._trash import collect_trash_at, move_to_trash
from ._tree import Parent, RemoveFailure, RemoveReport, Run, StrPath, why
from ._txn import journal_name, recover_at
from ._upgrade import pending_names, settle_before_remove

__all__ = ["remove", "remove_at"]


def _as_list(paths: object) -> list[str]:
    """``remove(paths)``: one path or an iterable of paths (``bytes`` is one path)."""
    if _args.is_one_path(paths):
        return [_args.path(paths, "remove(): paths")]
    try:
        iter(paths)  # type: ignore[call-overload]  # any object may come from a caller
    except TypeError:
        raise TypeError(
            "remove(): paths must be a path (str, bytes or os.PathLike) or an iterable "
            f"of paths, not {type(paths).__name__}"
        ) from None
    return _args.path_list(paths, "remove(): paths")  # type: ignore[arg-type]


def remove(
    paths: StrPath | Iterable[StrPath] = (),
    *,
    budget: float = 5.0,
    last: Iterable[StrPath] = (),
    workers: int | None = None,
    files: Iterable[StrPath] | None = None,
    root: StrPath | None = None,
    within: StrPath | None = None,
    check: bool = False,
) -> RemoveReport:
    """Remove files, symlinks and trees; see the module docstring for the policies.

    ``budget``: total seconds to spend retrying (``0`` or less: one pass, then defer).
    ``last``: entries to remove after everything else, in order (module docstring).
    ``workers``: threads walking each tree (every directory a job); ``None`` picks
    32 on network and FUSE mounts, and locally a serial walk that takes 2 threads
    for a big tree; ``1``: always serial.

    ``files`` with ``root`` (an uninstall from a RECORD): the listed files and
    symlinks, relative to ``root``, then the directories below ``root`` they leave
    empty (one still holding something -- a namespace directory shared with another
    package -- stays), then the ``last`` entries (relative to ``root``:
    ``["pkg-1.0.dist-info"]``), whose files are left for that step even when listed.
    The bytecode imports wrote for a listed ``<stem>.py`` (``__pycache__/<stem>.<tag>[.opt-N].pyc``
    beside it, in no RECORD) goes with it; other bytecode there stays.
    Leading ``..`` components (a RECORD's scripts: ``../../../bin/x``) go up through
    real directories but never out of ``within`` (default: ``root`` itself; an
    installer passes the environment's prefix), which must hold ``root``; an entry
    that would leave it, any other ``..``, an empty or absolute entry, or a
    directory raises :class:`InvalidArgument` before anything is removed.  An entry
    is only ever unlinked: one that has become a directory since it was checked
    stays (an EISDIR error); a ``last`` entry is removed only while it is the inode
    it was when the call began.

    ``check``: raise :class:`RemoveError` for the first error (or a mount left
    inside a tree) instead of only listing it in the report.

    Raises :class:`RemoveError` (nothing touched) when a root is refused; every
    other problem is listed in the returned report.
    """
    # Every argument checked (and every path made a str) before anything is touched.
    given = _as_list(paths)
    entries = None if files is None else _args.paths(files, "files=")
    last_entries = _args.path_list(last, "last=")
    root_s = _args.optional_path(root, "remove(): root=")
    within_s = _args.optional_path(within, "remove(): within=")
    run = Run(
        _args.seconds(budget, "remove(): budget="),
        _args.workers(workers, "remove(): workers="),
        defer=move_to_trash,
    )
    try:
        if entries is not None:
            if root_s is None or given:
                raise InvalidArgument(errno.EINVAL, "files= goes with root= (and no paths)", "")
            report = _remove_files(run, root_s, entries, last_entries, within_s)
        else:
            stray = root_s if root_s is not None else within_s
            if stray is not None:
                raise InvalidArgument(errno.EINVAL, "root= and within= go with files=", stray)
            roots = [root_for(run, p) for p in given]
            report = remove_roots(
                run, roots, last_entries, lambda r: _prepare(r, strict=bool(last_entries))
            )
    finally:
        run.close()
    if check and not report.ok:
        if report.errors:
            first = report.errors[0]
            raise RemoveError(first.errno, first.reason, first.path)
        raise RemoveError(errno.EBUSY, "a mount inside was left alone", report.mounts_skipped[0])
    return report


def _record_parts(entry: str) -> tuple[int, list[str]]:
    """(how many leading ``..``, the components after them) of a ``files=`` entry."""
    parts = [p for p in entry.split("/") if p not in ("", ".")]
    ups = 0
    while ups < len(parts) and parts[ups] == "..":
        ups += 1
    rest = parts[ups:]
    if not rest or ".." in rest or entry.startswith("/"):
        raise InvalidArgument(
            errno.EINVAL,
            f"files= entry {entry!r} must be a relative path (leading '..' only)",
            entry,
        )
    return ups, rest


def _open_dir(path: str, what: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise RemoveError(e.errno or 0, f"cannot open {what}: {why(e.errno or 0)}", path) from None


def _root_below(wfd: int, within: str, rfd: int, root: str) -> list[str]:
    """The components of ``root`` below ``within`` (their real paths), as the kernel
    resolves them: opened beneath ``within``'s fd without following a symlink, the
    result must be ``root``'s inode; else :class:`InvalidArgument`."""
    rel = os.path.relpath(root, within)
    parts = [] if rel == "." else rel.split("/")
    if ".." not in parts:
        try:
            fd = open_beneath(wfd, "/".join(parts), os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            pass
        else:
            try:
                a, b = os.fstat(fd), os.fstat(rfd)
            finally:
                os.close(fd)
            if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino):
                return parts
    raise InvalidArgument(errno.EINVAL, f"root= is not inside within= ({within})", root)


def _entry_below(entry: str, below: list[str], within: str) -> list[str]:
    """A ``files=`` entry's components below ``within`` (``root`` is ``below`` it): its
    leading ``..`` go up from ``root``, never out of ``within``."""
    ups, rest = _record_parts(entry)
    if ups > len(below):
        raise InvalidArgument(
            errno.EINVAL, f"files= entry {entry!r} climbs out of within= ({within})", entry
        )
    return below[: len(below) - ups] + rest


def _remove_files(
    run: Run,
    root: str,
    files: Iterable[str],
    last: Sequence[str],
    within: str | None,
) -> RemoveReport:
    """remove(files=..., root=..., within=...): see :func:`remove`.

    Entries below ``root`` are opened beneath ``root``'s fd, the others (scripts)
    beneath ``within``'s, never following a symlink; every one is checked (and
    refused) before anything is removed."""
    rfd = _open_dir(root, "root")
    fds = [rfd]
    try:
        wfd = os.dup(rfd) if within is None else _open_dir(within, "within")
        fds.append(wfd)
        root_real = fd_path(rfd, root)
        within_real = root_real if within is None else fd_path(wfd, within)
        below = _root_below(wfd, within_real, rfd, root_real)
        last_parts = [check_relative(x) for x in last]
        skip = {"/".join(p) for p in last_parts}
        top = preset_parent(rfd, root_real)
        beside = preset_parent(wfd, within_real)
        roots: list[Root] = []  # one listed twice ("./a", "a") is gone the second time
        tops = {p[0] for p in last_parts}  # the entries of root this package has
        modules: dict[str, set[str]] = {}  # directory below root -> its listed *.py
        for entry in files:
            rel = _entry_below(entry, below, within_real)
            if len(rel) > len(below) and rel[: len(below)] == below:
                rest, base = rel[len(below) :], top
                if skip and _with_last(rest, skip):
                    continue  # removed with its `last` entry
                tops.add(rest[0])
                if rest[-1].endswith(".py"):
                    modules.setdefault("/".join(rest[:-1]), set()).add(rest[-1])
            else:  # beside or above root (a script in bin/)
                rest, base = rel, beside
            roots.append(Root(_entry_parent(run, base, rest), rest[-1], leaf=True))
        subs = [
            Root(_entry_parent(run, top, parts), parts[-1], strict=True) for parts in last_parts
        ]
        _settle_upgrade_of_root(rfd, root_real, tops)
        open_roots(run, roots)
        for r in roots:
            if r.st is not None and stat.S_ISDIR(r.st.mode):
                raise InvalidArgument(
                    errno.EISDIR, "files= entry is a directory (list its files)", r.path
                )
        pycs = _bytecode_roots(run, rfd, top, modules)
        open_roots(run, pycs)
        for r in pycs:
            if r.st is not None and stat.S_ISDIR(r.st.mode):
                r.done = True  # a directory named like bytecode: not an import's, stays
        roots += pycs
        open_roots(run, subs)  # pinned now: removed only while they are these inodes
        passes(run, [r for r in roots if not r.done])
        if run.errors or run.mounts:
            return run.report()  # keep the metadata: some files it lists remain
        _remove_emptied(run, rfd, top, roots)
        for sub in subs:
            if sub.done:
                continue
            passes(run, [sub])
            if sub.outcome.changed:
                reason = "replaced since the call began: left alone"
                run.errors.append(RemoveFailure(sub.path, errno.ESTALE, reason))
        return run.report()
    finally:
        for fd in fds:
            os.close(fd)


def _bytecode_roots(run: Run, rfd: int, top: Parent, modules: dict[str, set[str]]) -> list[Root]:
    """The bytecode of the listed modules, which imports wrote and no RECORD lists: in
    the directory of each listed ``<stem>.py``, ``__pycache__/<stem>.<tag>.pyc`` and
    ``<stem>.<tag>.opt-<n>.pyc`` (PEP 3147, 488; any interpreter's tag).  Left there, they
    kept the package's directories (an empty namespace package that still imports).
    Anything else in ``__pycache__`` (bytecode of a module not listed: another
    package's in a shared directory) stays, and so then does the directory.  A
    ``__pycache__`` that is a symlink is not followed; each name is listed now and
    removed, like a listed file, only as an entry of that directory."""
    out: list[Root] = []
    for d, names in modules.items():
        rel = f"{d}/{PYCACHE}" if d else PYCACHE
        try:
            fd = open_beneath(rfd, rel, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue  # none (never imported), a symlink, not a directory
        try:
            found = bytecode_in(fd, names)
        except OSError:
            continue
        finally:
            os.close(fd)
        if found:
            pdir = parent_at(run, "", top, rel)
            out += [Root(pdir, n, leaf=True) for n in found]
    return out


def _with_last(parts: list[str], skip: set[str]) -> bool:
    """Is the entry ``parts`` (below root) a ``last`` entry or inside one?"""
    key = "/".join(parts)
    return any(key == x or key.startswith(x + "/") for x in skip)


def _entry_parent(run: Run, base: Parent, parts: list[str]) -> Parent:
    """The directory of the entry ``parts`` (below ``base``: root or within): opened
    beneath ``base``'s fd, never through a symlink.  A ``last`` entry is also acted on
    only while it is the inode it was when checked (its Root is ``strict``)."""
    if len(parts) == 1:
        return base
    return parent_at(run, "", base, "/".join(parts[:-1]))


def _settle_upgrade_of_root(rfd: int, root: str, tops: set[str]) -> None:
    """remove(files=...) describes one package by its RECORD: an interrupted upgrade of
    ``root`` that changes its entries is recovered first and then raises (the list may
    be stale), a running one raises; nothing of the package is touched either way."""
    try:
        settle_before_remove(rfd, root, tops, strict=True)
    except RemoveError as e:
        if e.errno == errno.EAGAIN:
            raise
        log.warning("%s: %s; removed all the same", e.filename, e.strerror)
    except OSError as e:
        reason = f"interrupted or running upgrade() of {root} not recovered: {e.strerror}"
        raise RemoveError(e.errno or errno.EBUSY, reason, root) from None


def _remove_emptied(run: Run, rfd: int, top: Parent, roots: list[Root]) -> None:
    """rmdir the directories below the root that the removed files left empty, deepest
    first; a directory that still holds anything (or changed meanwhile) stays."""
    dirs: set[str] = set()
    for p in by_parent(roots):
        if p.base is not top:
            continue  # the root itself, or beside or above it (scripts): never pruned
        parts = p.rel.split("/")
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    for d in sorted(dirs, key=lambda x: -x.count("/")):
        parent_rel, _, name = d.rpartition("/")
        try:
            pfd = open_beneath(rfd, parent_rel, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            os.rmdir(name, dir_fd=pfd)
        except OSError:
            continue  # not empty (shared), gone, busy: it stays
        else:
            run._count()
        finally:
            os.close(pfd)


def remove_at(
    parent_fd: int, parent: str, name: str, *, budget: float = 5.0, last: Sequence[str] = ()
) -> RemoveReport:
    """:func:`remove` of ``name`` in the directory open at ``parent_fd`` (whose real
    path is ``parent``, for reports): for callers that hold the parent open."""
    return remove_entry(
        parent_fd,
        parent,
        name,
        budget=budget,
        last=last,
        defer=move_to_trash,
        prepare=lambda run: _prepare(run, strict=bool(last)),
    )


_LIST_PARENT_AT = 8  # this many roots in one directory: list it once instead of lstat each


def _journal_candidates(run: Run, roots: list[Root]) -> list[Root]:
    """Roots that may have a replace() journal next to them.

    One ``lstat`` per root (done by recover_for) for a few roots; for many roots in
    one directory (a RECORD's files), one listing of that directory instead: on
    NFS every lookup is a round trip.
    """
    out: list[Root] = []

    def listed(r: Root, pfd: int) -> None:
        if listing.get(r.dir) is None:  # first of its group
            try:
                names = {n for n in os.listdir(pfd) if n.endswith(".linkstrategy-txn")}
            except OSError:
                names = None
            listing[r.dir] = names
        names = listing[r.dir]
        if names is None or journal_name(r.name) in names:
            out.append(r)

    listing: dict[Parent, set[str] | None] = {}
    few: list[Root] = []
    many: list[Root] = []
    for group in by_parent(roots).values():
        (few if len(group) < _LIST_PARENT_AT else many).extend(group)
    each_in_its_parent(run, many, listed)
    return few + out


def _prepare(run: Run, *, strict: bool) -> None:
    """Before anything is removed: the stale trash next to the roots, replace()s
    interrupted on any of these paths (finished or undone, see :mod:`._txn`), and
    interrupted upgrade()s of their directories (:func:`_settle_upgrades`)."""
    seen: set[Parent] = set()

    def trash(r: Root, pfd: int) -> None:
        if r.dir not in seen:
            seen.add(r.dir)
            collect_trash_at(pfd, r.parent, 5.0)

    each_in_its_parent(run, run.opened, trash)
    each_in_its_parent(
        run, _journal_candidates(run, run.opened), lambda r, pfd: _recover(run, r, pfd)
    )
    _settle_upgrades(run, run.opened, strict=strict)


def _recover(run: Run, r: Root, pfd: int) -> None:
    """Finish or undo an interrupted replace() of ``r`` (its journal next to it)."""
    try:
        if not recover_at(pfd, r.parent, r.name):
            return
    except RemoveError as e:
        # Not ours to act on (another user's, or not made for this name): the
        # journal is left alone and the root removed like any other.
        log.warning("%s: %s; %s is removed all the same", e.filename, e.strerror, r.path)
        return
    except OSError as e:
        run.errors.append(
            RemoveFailure(r.path, e.errno or 0, f"interrupted replace() not recovered: {e}")
        )
        r.done = True
        return
    _restat(r, pfd)


def _restat(r: Root, pfd: int) -> None:
    """``r`` as it is after a recovery: removed like any other root, or absent."""
    try:
        r.st = statx(pfd, r.name)
        r.done = False
    except OSError:
        r.st = None
        r.done = True


def _settle_upgrades(run: Run, roots: list[Root], *, strict: bool) -> None:
    """Finish or undo, first, an interrupted upgrade() of a directory that changes any
    of ``roots`` (see :func:`._upgrade.settle_before_remove`): removing an entry and
    recovering later would bring it back from the journal.  One lstat per directory.
    A live upgrade of an entry, or one that cannot be recovered, fails that entry
    (raises, when ``strict``); another user's journal is left alone."""
    groups = by_parent(r for r in roots if not r.done or r.st is None)  # absent: may come back
    for group in groups.values():
        # The group's parent pinned meanwhile (one act, by its first root, for all).
        each_in_its_parent(run, group[:1], functools.partial(_settle_group, run, group, strict))


def _settle_group(run: Run, group: list[Root], strict: bool, _first: Root, pfd: int) -> None:
    parent = group[0].parent
    try:
        if not settle_before_remove(pfd, parent, {r.name for r in group}, strict=strict):
            return
    except RemoveError as e:
        if e.errno == errno.EAGAIN:
            raise
        log.warning("%s: %s; removed all the same", e.filename, e.strerror)
        return
    except OSError as e:
        reason = f"interrupted or running upgrade() of {parent} not recovered: {e.strerror}"
        if strict:
            raise RemoveError(e.errno or errno.EBUSY, reason, parent) from None
        pending = pending_names(pfd)
        for r in group:
            if pending is None or r.name in pending[1]:
                run.errors.append(RemoveFailure(r.path, e.errno or 0, reason))
                r.done = True
        return
    for r in group:
        _restat(r, pfd)
