"""A removal: its roots, what is refused, the order of ``last``, and passes until done.

What :mod:`._tree`'s engine removes and in which order, for every removal in the
library (:func:`~linkstrategy.remove`, :func:`~linkstrategy.gc`, the trash, the
journals, :func:`rmtree_at` for place()'s rollback and the probe's clean-up):

* a path argument is split into the parent as given (opened as the kernel resolves
  it) and its last component (:func:`split`); ``''``, ``.``, ``..``, ``/``, the home
  directory and its ancestors (by ``(st_dev, st_ino)``) and a mount point are refused
  before anything is touched (:func:`refuse`);
* ``last`` entries are protected from the first phase and removed after it, in order
  (:func:`plan_last`, :func:`remove_roots`);
* roots are removed in whole passes with one backoff inside the run's budget
  (:func:`passes`); what still cannot go is handed to the run's ``defer`` (the trash).

:func:`rmtree_at` removes one tree this run made, all or an error; :func:`reap_stale`
removes, in one directory, the temporaries whose maker is gone, and only those.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterable, Sequence

from ._errors import REMOVE_IS_DIR, InvalidArgument, RemoveError, remove_action
from ._log import log
from ._owner import TMP_PREFIX, is_tmp_name, judge, owner
from ._pool import Backoff
from ._sys import StatxResult, statx
from ._tree import (
    O_DIR,
    Defer,
    Deferred,
    Outcome,
    Parent,
    ParentChanged,
    Protect,
    RemoveFailure,
    RemoveReport,
    Run,
    chmod_nofollow_dir,
    why,
)

__all__ = [
    "MAX_FDS",
    "Root",
    "TreeChanged",
    "by_parent",
    "check_relative",
    "each_in_its_parent",
    "open_roots",
    "parent_at",
    "passes",
    "preset_parent",
    "reap_stale",
    "remove_entry",
    "remove_roots",
    "rmtree_at",
    "root_for",
    "split",
]

#: Directory fds one :func:`rmtree_at` holds at most, whatever the depth.
MAX_FDS = 16


# -- roots, refusals -------------------------------------------------------------


#: The ``prot`` of a root with no ``last`` entries below it, and the ``outcome`` of one
#: no pass has tried (or that went cleanly): shared, never changed (:meth:`Root.protect`;
#: :func:`passes` gives each root a new Outcome for each pass).
_NO_PROTECT = Protect()
_UNTRIED = Outcome()


class Root:
    """One entry to remove: its name in a :class:`._tree.Parent` directory (shared by
    the roots in that directory), what its check found, how its last pass went.  A
    run may hold a RECORD's 200,000 of them: no path string of its own, nothing
    allocated for the common case."""

    __slots__ = ("dir", "done", "leaf", "name", "outcome", "prot", "st", "strict")

    def __init__(self, dir: Parent, name: str, *, strict: bool = False, leaf: bool = False) -> None:
        self.dir = dir
        self.name = name  # the last component, never "", "." or ".."
        self.prot = _NO_PROTECT
        self.st: StatxResult | None = None  # None: does not exist
        self.outcome = _UNTRIED
        self.done = False
        self.strict = strict  # gc, last=: act only on the inode in `st`; anything else stays
        # A files= entry: unlinked, never walked; a directory there (swapped in since it
        # was checked) stays and is an error (EISDIR).
        self.leaf = leaf

    @property
    def path(self) -> str:
        """As reported: the real path of the parent (once opened) + the name."""
        return os.path.join(self.dir.path, self.name)

    @property
    def parent(self) -> str:
        return self.dir.path

    @property
    def parent_st(self) -> StatxResult | None:
        return self.dir.st

    def protect(self) -> Protect:
        """This root's own :class:`Protect`, to add ``last`` entries to."""
        if self.prot is _NO_PROTECT:
            self.prot = Protect()
        return self.prot

    def __repr__(self) -> str:
        return f"Root({self.path!r}, done={self.done})"


def parent_at(run: Run, given: str, base: Parent | None = None, rel: str = "") -> Parent:
    """The run's :class:`Parent` for the directory ``given`` (as the kernel resolves
    it), or ``rel`` beneath ``base`` (never through a symlink; ``given``, its path for
    reports, may then be ``""``: ``base``'s path and ``rel``): one for all the roots
    reached the same way."""
    key: object = given if base is None else (base, rel)
    p = run.parents.get(key)
    if p is None:
        if base is not None and not given:
            given = os.path.join(base.path, rel)
        p = run.parents[key] = Parent(given, base, rel)
    return p


def preset_parent(dir_fd: int, path: str) -> Parent:
    """A :class:`Parent` for a directory the caller holds open at ``dir_fd``."""
    return Parent(path, fd=dir_fd, st=statx(dir_fd, ""))


def split(s: str) -> tuple[str, str]:
    """``(parent, name)`` of a path argument, refusing what ``rm`` refuses.

    Nothing is normalised: the parent is opened later exactly as the kernel
    resolves it (``keep/link/..`` means the parent of ``link``'s target), and the
    last component is acted on relative to that directory's fd.
    """
    if not s:
        raise RemoveError(errno.ENOENT, "refusing to remove an empty path", s)
    stripped = s.rstrip("/")
    if not stripped:
        raise RemoveError(errno.EPERM, "refusing to remove the root directory", s)
    parent, name = os.path.split(stripped)
    if name in (".", ".."):
        raise RemoveError(errno.EINVAL, "refusing to remove '.' or '..'", s)
    return parent or ".", name


def root_for(run: Run, p: str) -> Root:
    parent, name = split(p)
    return Root(parent_at(run, parent), name)


def protected_dirs() -> dict[tuple[int, int], str]:
    """``(st_dev, st_ino)`` of the directories never removed: ``/``, the home
    directory and its ancestors.  By identity, not by name: a path through a
    symlink, a bind mount or ``..`` still names the same inode."""
    out: dict[tuple[int, int], str] = {}
    try:
        home = os.path.expanduser("~")
    except Exception:
        home = "~"
    if home and home != "~":
        p = os.path.realpath(home)
        what = "the home directory"
        while True:
            with contextlib.suppress(OSError):
                st = os.stat(p)
                out.setdefault((st.st_dev, st.st_ino), what)
            up = os.path.dirname(p)
            if up == p:
                break
            p, what = up, "an ancestor of the home directory"
    with contextlib.suppress(OSError):
        st = os.stat("/")
        out[(st.st_dev, st.st_ino)] = "the root directory"
    return out


def refuse(root: Root, protected: dict[tuple[int, int], str]) -> None:
    st = root.st
    if st is None:
        return
    what = protected.get((st.dev, st.ino)) if stat.S_ISDIR(st.mode) else None
    if what is not None:
        raise RemoveError(errno.EPERM, f"refusing to remove {what}", root.path)
    pst = root.parent_st
    if pst is None:
        return
    if st.mount_root or (
        st.mnt_id is not None and pst.mnt_id is not None and st.mnt_id != pst.mnt_id
    ):
        raise RemoveError(errno.EBUSY, "refusing to remove a mount point", root.path)


def check_relative(entry: str) -> list[str]:
    parts = [p for p in entry.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise InvalidArgument(
            errno.EINVAL,
            f"last entry {entry!r} must be a relative path below a root, "
            "without '..', or an absolute path",
            entry,
        )
    return parts


def open_parent(run: Run, r: Root) -> int | None:
    """Pin ``r``'s parent for its check (opened, or reopened and checked: see
    :class:`._tree.ParentFds`; the caller unpins it); None when it does not exist."""
    p = r.dir
    try:
        return run.parent_fds.pin(p)
    except ParentChanged as e:
        raise RemoveError(e.errno, f"cannot open parent directory: {e.strerror}", r.path) from None
    except OSError as e:
        code = e.errno or 0
        if code == errno.ENOTDIR and p.base is not None:
            link = _symlink_below(run, p.base, p.rel)
            if link is not None:  # O_NOFOLLOW|O_DIRECTORY says ENOTDIR for a symlink
                reason = f"cannot open parent directory: {link} is a symlink (not followed)"
                raise RemoveError(errno.ELOOP, reason, r.path) from None
        # A component that is not a directory: the path is missing, as for `rm -f`.
        if remove_action(code) == "gone" or code == errno.ENOTDIR:
            return None  # missing path: not an error
        raise RemoveError(code, f"cannot open parent directory: {why(code)}", r.path) from None


def _symlink_below(run: Run, base: Parent, rel: str) -> str | None:
    bfd = run.parent_fds.pin(base)
    try:
        return symlink_on_the_way(bfd, rel)
    finally:
        run.parent_fds.unpin(base)


def symlink_on_the_way(anchor_fd: int, rel: str) -> str | None:
    """The first component of ``rel`` (below ``anchor_fd``, no ``..``) that is a
    symlink, or None when the first one that is not a directory is something else
    (or is gone): what an ENOTDIR from :func:`open_beneath` meant.  A symlink is
    refused; a file where a directory should be means the path is missing."""
    parts = [p for p in rel.split("/") if p]
    fd = os.dup(anchor_fd)
    try:
        for i, part in enumerate(parts):
            st = os.stat(part, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                return "/".join(parts[: i + 1])
            if not stat.S_ISDIR(st.st_mode):
                return None
            nfd = os.open(part, O_DIR, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except OSError:
        return None  # changed meanwhile: nothing to tell
    finally:
        os.close(fd)
    return None


def by_parent(roots: Iterable[Root]) -> dict[Parent, list[Root]]:
    """``roots`` grouped by their parent directory, in the order of first appearance:
    each parent is then pinned once for its group (bounded fds, few reopenings)."""
    groups: dict[Parent, list[Root]] = {}
    for r in roots:
        g = groups.get(r.dir)
        if g is None:
            groups[r.dir] = [r]
        else:
            g.append(r)
    return groups


def open_roots(run: Run, roots: list[Root]) -> None:
    """Check ``roots`` before anything is removed: each parent opened (pinned while its
    group is checked), each root's ``statx``, the refusals (raise :class:`RemoveError`)."""
    protected = protected_dirs()
    for p, group in by_parent(roots).items():
        pfd = open_parent(run, group[0])
        if pfd is None:
            for r in group:
                r.done = True
            continue
        try:
            for r in group:
                run.opened.append(r)
                check_root(r, pfd, protected)
        finally:
            run.parent_fds.unpin(p)


def check_root(r: Root, pfd: int, protected: dict[tuple[int, int], str]) -> None:
    try:
        r.st = statx(pfd, r.name)
    except OSError as e:
        if remove_action(e.errno) != "gone":
            raise RemoveError(e.errno or 0, f"cannot stat: {e.strerror}", r.path) from None
        r.st = None
    refuse(r, protected)
    if r.st is None:
        r.done = True
    elif not r.strict and not stat.S_ISDIR(r.st.mode):
        r.st = _CHECKED_FILE  # all that is used of it later: not a directory


#: The ``st`` of a root checked as a non-directory and not pinned to its inode: its type
#: is all the passes use, so one shared stand-in instead of each one's statx.
_CHECKED_FILE = StatxResult(stat.S_IFREG, 0, 0, None, None)


def each_in_its_parent(run: Run, roots: Iterable[Root], act: Callable[[Root, int], None]) -> None:
    """``act(root, parent fd)`` for each of ``roots``, group by group, its parent pinned
    meanwhile.  A parent that cannot be reopened as the directory checked (closed
    since, for others' fds) leaves its roots alone: :func:`parent_lost`."""
    fds = run.parent_fds
    for p, group in by_parent(roots).items():
        if p.lost:
            continue  # its roots were reported when it was lost
        try:
            pfd = fds.pin(p)
        except OSError as e:
            p.lost = True
            for r in group:
                parent_lost(run, r, e)
            continue
        try:
            for r in group:
                act(r, pfd)
        finally:
            fds.unpin(p)


def parent_lost(run: Run, r: Root, exc: OSError) -> None:
    """``r``'s parent, reopened after its check, is gone (so is ``r``: done), or is not
    the directory checked (renamed away and replaced, a symlink swapped in on the
    way): ``r`` stays, an error."""
    code = exc.errno or 0
    r.done = True  # nothing more to do with it, whatever comes next
    if remove_action(code) == "gone" or code == errno.ENOTDIR:
        return
    if r.outcome is _UNTRIED:
        r.outcome = Outcome()
    r.outcome.error = True
    reason = f"its directory cannot be reopened as the one checked: {why(code)}; left alone"
    run.errors.append(RemoveFailure(r.path, code, reason))


def plan_last(
    run: Run, roots: list[Root], last: Sequence[str]
) -> list[Root | tuple[Root, list[str]]]:
    """Protect the `last` entries from phase 1; the phase-2 work list, in order."""
    phase2: list[Root | tuple[Root, list[str]]] = []
    by_path = {r.path: r for r in roots}
    for entry in last:
        if os.path.isabs(entry):
            ep, en = split(entry)
            p = os.path.join(os.path.realpath(ep), en)
            hit = by_path.get(p)
            if hit is not None:
                hit.protect().leaf = True
                phase2.append(hit)
                continue
            owner = next((r for r in roots if p.startswith(r.path.rstrip("/") + "/")), None)
            if owner is None:
                extra = root_for(run, entry)
                open_roots(run, [extra])
                by_path[p] = extra
                phase2.append(extra)
                continue
            parts = check_relative(os.path.relpath(p, owner.path))
            owner.protect().add(parts)
            phase2.append((owner, parts))
        else:
            parts = check_relative(entry)
            for r in roots:
                if r.st is not None and stat.S_ISDIR(r.st.mode):
                    r.protect().add(parts)
                    phase2.append((r, parts))
    return phase2


def remove_roots(
    run: Run,
    roots: list[Root],
    last: Sequence[str] = (),
    prepare: Callable[[Run], None] | None = None,
) -> RemoveReport:
    """Remove ``roots``: refusals first (nothing touched if one is refused), then
    ``prepare(run)`` (given the opened roots in ``run.opened``), then everything but
    the ``last`` entries, then those in order (kept if anything else stayed), then the
    directories that held them."""
    # Refusals first, for every root and `last` entry, before anything is touched.
    open_roots(run, roots)
    phase2 = plan_last(run, roots, last)

    if prepare is not None:  # remove(): collect trash, recover interrupted replace()s
        prepare(run)

    # Phase 1: everything but the `last` entries.
    passes(run, [r for r in roots if not r.done and not r.prot.leaf])
    if run.errors or run.mounts:
        return run.report()  # keep the metadata: some files it lists remain
    # Phase 2: the `last` entries, in order.
    for item in phase2:
        if isinstance(item, Root):
            item.prot = _NO_PROTECT
            passes(run, [item])
            continue
        owner, parts = item
        # Opened beneath the root's parent, never through a symlink inside the tree.
        rel = "/".join([owner.name, *parts[:-1]])
        given = os.path.dirname(os.path.join(owner.path, *parts))
        sub = Root(parent_at(run, given, owner.dir, rel), parts[-1])
        try:
            open_roots(run, [sub])
        except RemoveError as e:
            run.errors.append(RemoveFailure(sub.path, e.errno or 0, str(e.strerror)))
            continue
        passes(run, [sub])
    # Phase 3: the directories that held the `last` entries.
    rest = [r for r in roots if not r.done and r.prot.children]
    for r in rest:
        r.prot = _NO_PROTECT
    passes(run, rest)
    return run.report()


def passes(run: Run, roots: list[Root]) -> None:
    """Remove ``roots`` in passes with backoff until done, out of budget, or stuck;
    then hand what is still busy to ``run.defer``."""
    backoff = Backoff(deadline=run.deadline)
    pending = [r for r in roots if not r.done]
    while pending:
        each_in_its_parent(run, pending, lambda r, pfd: pass_of(run, r, pfd))
        retry = [r for r in pending if not r.done and r.outcome.retry]
        if not retry or not backoff.wait():
            break
        pending = retry
    if run.defer is not None:
        busy = [r for r in roots if not r.done and _busy(r.outcome)]
        each_in_its_parent(run, busy, lambda r, pfd: defer_root(run, r, pfd))


def _busy(o: Outcome) -> bool:
    return not (o.error or o.mount or o.protected) and bool(o.retry or o.silly)


def pass_of(run: Run, r: Root, pfd: int) -> None:
    """One pass over ``r``.  A files= entry, or a root checked as a file, is first
    unlinked (no statx first: unlink(2) never removes a directory); that is all most
    of a long list costs.  Anything else gets an Outcome of its own for the pass (the
    shared untried one again when it went cleanly: nothing kept for each root)."""
    err: OSError | None = None
    if r.leaf or _checked_file(r):
        err = _unlink_once(run, r, pfd)
        if err is None:
            r.outcome = _UNTRIED
            return
    out = r.outcome = Outcome()
    one_pass(run, r, pfd, err)
    if r.done and out.clean and not out.changed:
        r.outcome = _UNTRIED


def _checked_file(r: Root) -> bool:
    """Checked as something else than a directory, and not pinned to its inode."""
    return not r.strict and r.st is not None and not stat.S_ISDIR(r.st.mode)


def defer_root(run: Run, r: Root, pfd: int) -> None:
    """Hand ``r``, still busy after the budget, to ``run.defer`` (the trash)."""
    o = r.outcome
    reason = (
        f"held open (silly-renamed): {', '.join(o.silly[:3])}"
        if o.silly and not o.retry
        else f"still busy after {run.deadline - run.start:.3g} s budget: {o.last_retry_error}"
    )
    if r.leaf or r.strict:
        # A rename by name moves whatever is there now, not what was checked;
        # the trash is emptied later: it stays, an error.
        code = o.last_retry_errno or errno.EBUSY
        run.errors.append(RemoveFailure(r.path, code, f"{reason}; left in place"))
        return
    assert run.defer is not None
    try:
        trash = run.defer(pfd, r.parent, r.name)
    except FileNotFoundError:
        r.done = True
        return
    except OSError as e:
        run.errors.append(
            RemoveFailure(
                r.path,
                e.errno or 0,
                f"could not remove ({reason}) nor move to trash: {os.strerror(e.errno or 0)}",
            )
        )
        return
    log.info("deferred %s to %s (%s)", r.path, trash, reason)
    run.deferred.append(Deferred(r.path, trash, reason))
    r.done = True


def one_pass(run: Run, r: Root, pfd: int, err: OSError | None = None) -> None:
    """Remove ``r`` (in the directory open at ``pfd``) as far as one pass goes.
    ``err``: how the unlink :func:`pass_of` tried first failed."""
    out = r.outcome
    if r.leaf:
        unlink_leaf(run, r, pfd, err)
        return
    if err is not None and err.errno not in REMOVE_IS_DIR:
        if run.unlink(pfd, r.parent, r.name, out, err, fix_perms=False):
            r.done = True
        return
    # A directory (or one now: swapped since the check), or a strict root: looked at.
    try:
        st = statx(pfd, r.name)
    except OSError as e:
        if remove_action(e.errno) == "gone":
            r.done = True
        else:
            run.fail(out, r.path, e, "cannot stat")
        return
    if r.strict and r.st is not None and (st.dev, st.ino) != (r.st.dev, r.st.ino):
        r.done = True  # gc: no longer the entry judged dead; whatever is there now stays
        out.changed = True
        return
    if not stat.S_ISDIR(st.mode):
        if run.unlink(pfd, r.parent, r.name, out, fix_perms=False):
            r.done = True
        return
    if r.st is not None and st.ino != r.st.ino:
        r.st = st  # replaced since we looked: walk whatever directory is there now
    try:
        fd = os.open(r.name, O_DIR, dir_fd=pfd)
    except OSError as e:
        action = remove_action(e.errno)  # busy or retry: an error here
        if action == "gone":
            r.done = True
        elif action == "swapped":
            out.again(r.path, "swapped for a non-directory", e.errno or 0)
        elif action == "fix_perms" and chmod_nofollow_dir(pfd, r.name):
            out.again(r.path, "made readable", e.errno or 0)
            run.retries += 1
        else:
            run.fail(out, r.path, e, "cannot open directory")
        return
    try:
        fst = os.fstat(fd)
        if (fst.st_dev, fst.st_ino) != (st.dev, st.ino):
            out.again(r.path, "replaced while opening")
            return
        if not run.clear_tree(fd, r.path, r.prot, st, out):
            return
    finally:
        os.close(fd)
    if run.rmdir(pfd, r.parent, r.name, out, fix_perms=False):
        r.done = True


def unlink_leaf(run: Run, r: Root, pfd: int, err: OSError | None) -> None:
    """A files= entry: only ever unlinked; one that is a directory now stays, an error.
    ``err``: how the first unlink failed (None: not tried yet)."""
    if err is None:
        err = _unlink_once(run, r, pfd)
        if err is None:
            return
    if err.errno in REMOVE_IS_DIR:
        leaf_is_a_directory(run, r)
    elif run.unlink(pfd, r.parent, r.name, r.outcome, err, fix_perms=False):
        r.done = True


def _unlink_once(run: Run, r: Root, pfd: int) -> OSError | None:
    """Unlink ``r`` (never a directory: unlink(2) refuses one); None when it went."""
    try:
        os.unlink(r.name, dir_fd=pfd)
    except OSError as e:
        return e
    run.count_unlinked(r.name)
    r.done = True
    return None


def leaf_is_a_directory(run: Run, r: Root) -> None:
    """A files= entry that is a directory now (it was not when checked: swapped since):
    left alone, never walked -- it may be anyone's tree renamed to this name."""
    r.outcome.error = True
    run.errors.append(
        RemoveFailure(
            r.path,
            errno.EISDIR,
            f"listed as a file but is now a directory: left alone ({why(errno.EISDIR)})",
        )
    )


def entry_root(run: Run, dir_fd: int, dir_path: str, name: str, *, strict: bool) -> Root | None:
    """A root for the entry ``name`` of a directory we hold open (trash, gc)."""
    try:
        r = Root(preset_parent(dir_fd, dir_path), name, strict=strict)
    except OSError as e:
        code = e.errno or 0
        path = os.path.join(dir_path, name)
        run.errors.append(RemoveFailure(path, code, f"cannot stat: {why(code)}"))
        return None
    try:
        r.st = statx(dir_fd, name)
    except OSError as e:
        if remove_action(e.errno) != "gone":
            run.errors.append(
                RemoveFailure(r.path, e.errno or 0, f"cannot stat: {why(e.errno or 0)}")
            )
        return None
    try:
        refuse(r, {})
    except RemoveError as e:
        run.errors.append(RemoveFailure(r.path, e.errno or 0, str(e.strerror)))
        return None
    return r


def rmdir_busy(run: Run, dir_fd: int, name: str, path: str, ident: tuple[int, int]) -> bool:
    """rmdir an emptied directory of ours, retrying busy errors within the budget."""
    backoff = Backoff(deadline=run.deadline)
    while True:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if (st.st_dev, st.st_ino) != ident:
                return False  # replaced meanwhile: not ours to remove
            os.rmdir(name, dir_fd=dir_fd)
            run._count()
            return True
        except OSError as e:
            code = e.errno or 0
            action = remove_action(code)
            if action == "gone":
                return True
            if action == "busy" and backoff.wait():
                run._retried()
                continue
            if action == "retry":
                return False  # refilled meanwhile
            run.errors.append(RemoveFailure(path, code, f"cannot remove directory: {why(code)}"))
            return False


def remove_entry(
    parent_fd: int,
    parent: str,
    name: str,
    *,
    budget: float = 5.0,
    last: Sequence[str] = (),
    defer: Defer | None = None,
    prepare: Callable[[Run], None] | None = None,
) -> RemoveReport:
    """Remove ``name`` in the directory open at ``parent_fd`` (whose real path is
    ``parent``, for reports), with ``last`` entries (relative to it) removed last."""
    if name in ("", ".", "..") or "/" in name:
        raise RemoveError(errno.EINVAL, "refusing to remove '.' or '..'", name)
    run = Run(budget, None, defer=defer)
    try:
        r = Root(preset_parent(parent_fd, parent), name)
        return remove_roots(run, [r], last, prepare)
    finally:
        run.close()


# -- one tree, all or an error: rollback, the probe, reaping ----------------------------


class TreeChanged(OSError):
    """The tree was changed under the walk (an entry swapped or moved): stopped."""


def _ident(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


#: Seconds :func:`rmtree_at` retries what is busy or was swapped mid-walk.
_RMTREE_BUDGET = 0.5


def rmtree_at(parent_fd: int, name: str, *, expect: tuple[int, int] | None = None) -> None:
    """Remove ``name`` (a file, symlink or whole tree) from the directory open at
    ``parent_fd`` with the engine (serial, at most :data:`MAX_FDS` directory fds, no
    deferral), or raise :class:`OSError` (the relative path of the entry that failed;
    ``EXDEV`` for a mount inside, left in place; :class:`TreeChanged` if the entry is
    no longer ``expect`` = ``(st_dev, st_ino)``, nothing removed)."""
    st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    if expect is not None and _ident(st) != expect:
        raise TreeChanged(errno.ESTALE, "no longer the entry this run made", name)
    run = Run(_RMTREE_BUDGET, 1, max_fds=MAX_FDS)
    r = Root(preset_parent(parent_fd, ""), name, strict=True)
    r.st = statx(parent_fd, name)
    if (r.st.dev, r.st.ino) != _ident(st):
        raise TreeChanged(errno.ESTALE, "swapped during removal", name)
    passes(run, [r])
    o = r.outcome
    if o.changed:
        raise TreeChanged(errno.ESTALE, "swapped during removal", name)
    if run.errors:
        e = run.errors[0]
        cls = TreeChanged if e.errno == errno.ESTALE else OSError
        raise cls(e.errno, e.reason, e.path)
    if run.mounts:
        raise OSError(errno.EXDEV, "another mount inside: not entered", run.mounts[0])
    if not r.done:
        code = errno.EBUSY if o.silly and not o.retry else o.last_retry_errno or errno.EBUSY
        raise OSError(code, f"still busy: {o.last_retry_error or ', '.join(o.silly[:3])}", name)


def reap_stale(
    dir_fd: int, names: Iterable[str] | None = None, *, prefixes: Iterable[str] = (TMP_PREFIX,)
) -> tuple[list[str], list[str]]:
    """Remove the dead temporaries (named ``<prefix><owner>-<seq>``) in the directory
    open at ``dir_fd``.  ``names``: its entries, if the caller listed it already.
    Returns (removed, left alone as another user's); errors leave an entry as it is."""
    pre = tuple(prefixes)
    if names is None:
        names = os.listdir(dir_fd)
    removed: list[str] = []
    foreign: list[str] = []
    ours = tuple(f"{p}{owner()}-" for p in pre)  # this process lives: never debris
    for n in names:
        if n.startswith(ours) or not any(is_tmp_name(n, p) for p in pre):
            continue
        try:
            st = os.stat(n, dir_fd=dir_fd, follow_symlinks=False)
            verdict = judge(dir_fd, n, st)
            if verdict == "foreign":
                foreign.append(n)
            elif verdict == "dead":
                rmtree_at(dir_fd, n, expect=_ident(st))
                removed.append(n)
        except OSError:
            continue
    return removed, foreign
