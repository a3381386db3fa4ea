"""gc(): collect what linkstrategy left behind at a path.

Trash (:mod:`._trash`), the journals of interrupted ``replace()`` calls
(:mod:`._txn`, rolled forward or back) and the temporaries of place(), staging
and the probe whose maker is gone (:func:`._owner.judge`); everything removed with
the tree engine (:mod:`._tree`), only what the caller may act on.
"""

from __future__ import annotations

import errno
import os
import stat

from . import _args
from ._errors import RemoveError, TransactionBusy, remove_action
from ._log import log
from ._owner import is_tmp_name, judge
from ._probe import PROBE_PREFIX
from ._record import replace as record_replace
from ._removal import entry_root, passes
from ._sys import fd_path, statx
from ._trash import empty_trash, is_trash_name, known_on, open_trash, reopen_known
from ._tree import (
    Frame,
    Protect,
    RemoveFailure,
    RemoveReport,
    Run,
    StrPath,
    WalkStopped,
    walk_frames,
    why,
)
from ._txn import (
    is_journal_name,
    is_stage_name,
    journal_name,
    stage_prefix,
)
from ._upgrade import recover_journal_at  # replace()'s journals and upgrade()'s

__all__ = ["gc"]


_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _collected(name: str) -> bool:
    """Is ``name`` what gc() looks at: a trash, a journal, a temporary?"""
    return (
        is_trash_name(name)
        or is_journal_name(name)
        or is_stage_name(name)
        or is_tmp_name(name)
        or is_tmp_name(name, PROBE_PREFIX)
    )


class _Gc:
    """One gc() call: what it found and did."""

    def __init__(self, run: Run, min_age: float) -> None:
        self.run = run
        self.min_age = min_age
        self.foreign: list[str] = []

    def leave(self, path: str, why: str) -> None:
        log.info("gc: left alone %s: %s", path, why)  # in the report; the CLI prints it
        self.foreign.append(f"{path}: {why}")

    def trash(self, dir_fd: int, dir_path: str, name: str) -> None:
        path = os.path.join(dir_path, name)
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            return
        if not stat.S_ISDIR(st.st_mode):
            self.leave(path, "named like a trash directory but not a directory")
            return
        try:  # (the caller's, mode 0700, with its marker: else not a trash of ours)
            tfd = open_trash(dir_fd, name, path)
        except RemoveError as e:  # not (provably) a trash directory: a name proves nothing
            self.leave(path, str(e.strerror))
            return
        except OSError as e:
            self.leave(path, f"cannot open: {why(e.errno or 0)}")
            return
        try:
            fst = os.fstat(tfd)
            if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
                self.leave(path, "replaced while opening")
                return
            empty_trash(self.run, dir_fd, name, tfd, path, self.min_age)
        finally:
            os.close(tfd)

    def temporary(self, dir_fd: int, dir_path: str, name: str) -> None:
        """A temporary of place(), staging or the probe: removed when its maker is gone."""
        path = os.path.join(dir_path, name)
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            return
        verdict = judge(dir_fd, name, st)
        if verdict == "foreign":
            self.leave(path, f"belongs to uid {st.st_uid}, not the caller")
            return
        if verdict != "dead":
            return
        r = entry_root(self.run, dir_fd, dir_path, name, strict=True)
        if r is None or r.st is None or (r.st.dev, r.st.ino) != (st.st_dev, st.st_ino):
            return
        passes(self.run, [r])

    def journal(self, dir_fd: int, dir_path: str, name: str) -> None:
        path = os.path.join(dir_path, name)
        try:
            if recover_journal_at(dir_fd, dir_path, name):
                self.run.removed += 1
        except TransactionBusy:
            log.info("gc: %s is a live replace(); left to it", path)
        except RemoveError as e:
            if e.errno == errno.EPERM:
                self.leave(path, str(e.strerror))
            else:
                self.run.errors.append(
                    RemoveFailure(path, e.errno or 0, f"cannot recover: {e.strerror}")
                )
        except OSError as e:
            self.run.errors.append(RemoveFailure(path, e.errno or 0, f"cannot recover: {e}"))

    def directory(self, dir_fd: int, where: str | Frame, only: str | None = None) -> list[str]:
        """Collect what linkstrategy left in one directory (only what concerns the
        entry ``only``, when given, besides the trash); returns its other entries.
        ``where``: its path, or its frame in a recursive walk (the path is built only
        where something is found: a deep walk must not hold depth x path length)."""
        try:
            names = os.listdir(dir_fd)
        except OSError as e:
            if remove_action(e.errno) != "gone":
                path = where if isinstance(where, str) else where.path
                self.run.errors.append(
                    RemoveFailure(path, e.errno or 0, f"cannot list: {why(e.errno or 0)}")
                )
            return []
        rest: list[str] = []
        jname = journal_name(only) if only is not None else None
        sprefix = stage_prefix(only) if only is not None else None
        found: list[str] = []
        for n in names:
            (found if only is not None or _collected(n) else rest).append(n)
        if not found:
            return rest
        dir_path = where if isinstance(where, str) else where.path
        for n in found:
            if is_trash_name(n):
                self.trash(dir_fd, dir_path, n)
            elif only is not None:
                if n == jname or n.startswith(f"{jname}-"):
                    self.journal(dir_fd, dir_path, n)
                elif sprefix is not None and n.startswith(sprefix) and is_stage_name(n):
                    self.temporary(dir_fd, dir_path, n)
            elif is_journal_name(n):
                self.journal(dir_fd, dir_path, n)
            else:  # a temporary of place(), staging or the probe
                self.temporary(dir_fd, dir_path, n)
        return rest

    def walk(self, top_fd: int, top_path: str, names: list[str]) -> None:
        """``recursive=True``: every directory below, with the engine's walk
        (:func:`._tree.walk_frames`: iterative, bounded fds, a closed frame reopened
        from its child through ``..`` and checked by inode); one mount only, no
        symlinks followed."""
        top = statx(top_fd, "")
        tst = os.fstat(top_fd)
        first = Frame(top_fd, top_path, Protect(), list(names), ident=(tst.st_dev, tst.st_ino))

        def enter(fr: Frame, n: str) -> Frame | None:
            try:
                st = statx(fr.fd, n)
            except OSError:
                return None
            if (
                not stat.S_ISDIR(st.mode)
                or st.dev != top.dev
                or st.mount_root
                or (st.mnt_id is not None and st.mnt_id != top.mnt_id)
            ):
                return None
            try:
                fd = os.open(n, _O_DIR, dir_fd=fr.fd)
            except OSError as e:
                if remove_action(e.errno) not in ("gone", "swapped"):
                    path = os.path.join(fr.path, n)
                    self.run.errors.append(
                        RemoveFailure(path, e.errno or 0, f"cannot open: {why(e.errno or 0)}")
                    )
                return None
            try:
                fst = os.fstat(fd)
                if (fst.st_dev, fst.st_ino) != (st.dev, st.ino):
                    os.close(fd)
                    return None
                child = Frame(fd, n, Protect(), ident=(st.dev, st.ino), parent=fr)
                child.subdirs = self.directory(fd, child)
            except BaseException:
                os.close(fd)
                raise
            return child

        def leave(fr: Frame, parent: Frame) -> None:
            pass

        try:
            walk_frames(first, self.run.max_fds, enter, leave, doing="gc")
        except WalkStopped as e:
            self.run.errors.append(RemoveFailure(e.path, e.cause.errno or 0, e.what))


def gc(
    path: StrPath, *, min_age: float = 0.0, budget: float = 1.0, recursive: bool = False
) -> RemoveReport:
    """Empty linkstrategy trash, finish interrupted ``replace()`` calls and remove the
    temporaries of dead processes at ``path``.

    Costs what there is to collect, not the size of the tree: looks at ``path``
    itself, its entries, and its parent (the trash there, and the journal and
    staging directories of ``path``); ``recursive=True`` looks in every directory
    below ``path`` too (same mount only, no symlinks followed).  Also empties the
    trash directories this process made on the same filesystem.

    Acts only on what belongs to the caller and provably is what its name says (a
    trash directory with its marker, a journal or temporary with its lock file, free:
    :mod:`._trash`, :mod:`._txn`, :func:`._owner.judge`); anything else is listed in
    :attr:`RemoveReport.foreign` and left alone.
    Trash entries younger than ``min_age`` seconds are kept; entries still busy
    after ``budget`` seconds of retries are listed as deferred (their trash path
    twice) and kept for the next gc.
    """
    s = _args.path(path, "gc(): path")
    min_age = _args.seconds(min_age, "gc(): min_age=")
    if not s:
        raise RemoveError(errno.ENOENT, "empty path", s)
    run = Run(_args.seconds(budget, "gc(): budget="), None)
    g = _Gc(run, min_age)
    fds: list[int] = []
    try:
        stripped = s.rstrip("/") or "/"
        name: str | None = os.path.basename(stripped)
        if name in ("", ".", ".."):  # the directory itself, as the kernel resolves it
            try:
                bfd = os.open(s, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as e:
                raise RemoveError(e.errno or 0, f"cannot open: {why(e.errno or 0)}", s) from None
            fds.append(bfd)
            real = fd_path(bfd, s)
            parent_arg, name = os.path.split(real)
            if not name:
                name = None
                parent_arg = "/"
        else:
            parent_arg = os.path.dirname(stripped) or "."
        try:
            pfd = os.open(parent_arg, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            if remove_action(e.errno) == "gone" or e.errno == errno.ENOTDIR:
                return run.report()
            raise RemoveError(
                e.errno or 0, f"cannot open: {why(e.errno or 0)}", parent_arg
            ) from None
        fds.append(pfd)
        parent = fd_path(pfd, parent_arg)
        if name is not None:
            g.directory(pfd, parent, only=name)
            try:
                st = statx(pfd, name)
            except OSError:
                st = None
            if st is not None and stat.S_ISDIR(st.mode):
                try:
                    bfd = os.open(name, _O_DIR, dir_fd=pfd)
                except OSError:
                    bfd = -1
                if bfd >= 0:
                    fds.append(bfd)
                    base = os.path.join(parent, name)
                    rest = g.directory(bfd, base)
                    if recursive:
                        g.walk(bfd, base, rest)
        else:
            rest = g.directory(pfd, parent)
            if recursive:
                g.walk(pfd, parent, rest)
        for k in known_on(os.fstat(pfd).st_dev):
            kfds = reopen_known(k)
            if kfds is not None:
                try:
                    empty_trash(run, kfds[0], os.path.basename(k.path), kfds[1], k.path, min_age)
                finally:
                    os.close(kfds[0])
                    os.close(kfds[1])
    finally:
        run.close()
        for fd in fds:
            os.close(fd)
    return record_replace(run.report(), foreign=tuple(g.foreign))
