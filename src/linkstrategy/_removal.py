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

from ._errors import InvalidArgument, RemoveError, remove_action
from ._log import log
from ._owner import TMP_PREFIX, is_tmp_name, judge, owner
from ._pool import Backoff
from ._record import field, record
from ._sys import StatxResult, fd_path, open_beneath, statx
from ._tree import (
    O_DIR,
    Defer,
    Deferred,
    Outcome,
    Protect,
    RemoveFailure,
    RemoveReport,
    Run,
    StrPath,
    chmod_nofollow_dir,
    why,
)

__all__ = [
    "MAX_FDS",
    "Root",
    "TreeChanged",
    "check_relative",
    "open_roots",
    "passes",
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


@record
class Root:
    path: str  # as reported: the real path of the parent + name (set when opened)
    parent: str  # as given (opened as the kernel resolves it), then its real path
    name: str  # the last component, never "", "." or ".."
    prot: Protect = field(default_factory=Protect)
    parent_fd: int = -1  # owned by Run.parent_fds (or by the caller, when preset)
    parent_st: StatxResult | None = None
    st: StatxResult | None = None  # None: does not exist
    outcome: Outcome = field(default_factory=Outcome)
    done: bool = False
    # Open the parent beneath this directory fd, never following a symlink (a
    # `last` entry below a root, a files= entry): (fd, relative path, no "..").
    anchor: tuple[int, str] | None = None
    strict: bool = False  # gc, last=: act only on the inode in `st`; anything else stays
    # A files= entry: unlinked, never walked; a directory there (swapped in since it
    # was checked) stays and is an error (EISDIR).
    leaf: bool = False


def split(p: StrPath) -> tuple[str, str]:
    """``(parent, name)`` of a path argument, refusing what ``rm`` refuses.

    Nothing is normalised: the parent is opened later exactly as the kernel
    resolves it (``keep/link/..`` means the parent of ``link``'s target), and the
    last component is acted on relative to that directory's fd.
    """
    s = os.fspath(p)
    if not s:
        raise RemoveError(errno.ENOENT, "refusing to remove an empty path", s)
    stripped = s.rstrip("/")
    if not stripped:
        raise RemoveError(errno.EPERM, "refusing to remove the root directory", s)
    parent, name = os.path.split(stripped)
    if name in (".", ".."):
        raise RemoveError(errno.EINVAL, "refusing to remove '.' or '..'", s)
    return parent or ".", name


def root_for(p: StrPath) -> Root:
    parent, name = split(p)
    return Root(os.path.join(parent, name), parent, name)


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


def open_parent(run: Run, r: Root) -> bool:
    """Open ``r``'s parent (cached per run); False when it does not exist."""
    key = r.parent if r.anchor is None else f"{r.anchor[0]}:{r.anchor[1]}"
    cached = run.parent_fds.get(key)
    if cached is None:
        try:
            if r.anchor is None:
                fd = os.open(r.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            else:
                fd = open_beneath(r.anchor[0], r.anchor[1], os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            code = e.errno or 0
            if code == errno.ENOTDIR and r.anchor is not None:
                link = symlink_on_the_way(*r.anchor)
                if link is not None:  # O_NOFOLLOW|O_DIRECTORY says ENOTDIR for a symlink
                    reason = f"cannot open parent directory: {link} is a symlink (not followed)"
                    raise RemoveError(errno.ELOOP, reason, r.path) from None
            # A component that is not a directory: the path is missing, as for `rm -f`.
            if remove_action(code) == "gone" or code == errno.ENOTDIR:
                return False  # missing path: not an error
            raise RemoveError(code, f"cannot open parent directory: {why(code)}", r.path) from None
        try:
            cached = (fd, statx(fd, ""), fd_path(fd, r.parent))
        except OSError as e:
            os.close(fd)
            raise RemoveError(e.errno or 0, f"cannot stat: {e.strerror}", r.parent) from None
        run.parent_fds[key] = cached
    r.parent_fd, r.parent_st, r.parent = cached
    r.path = os.path.join(r.parent, r.name)
    return True


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


def open_roots(run: Run, roots: list[Root]) -> None:
    protected = protected_dirs()
    for r in roots:
        if r.parent_fd < 0 and not open_parent(run, r):
            r.done = True
            continue
        run.opened.append(r)
        try:
            r.st = statx(r.parent_fd, r.name)
        except OSError as e:
            if remove_action(e.errno) != "gone":
                raise RemoveError(e.errno or 0, f"cannot stat: {e.strerror}", r.path) from None
            r.st = None
        refuse(r, protected)
        if r.st is None:
            r.done = True


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
                hit.prot.leaf = True
                phase2.append(hit)
                continue
            owner = next((r for r in roots if p.startswith(r.path.rstrip("/") + "/")), None)
            if owner is None:
                extra = root_for(entry)
                open_roots(run, [extra])
                by_path[p] = extra
                phase2.append(extra)
                continue
            parts = check_relative(os.path.relpath(p, owner.path))
            owner.prot.add(parts)
            phase2.append((owner, parts))
        else:
            parts = check_relative(entry)
            for r in roots:
                if r.st is not None and stat.S_ISDIR(r.st.mode):
                    r.prot.add(parts)
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
            item.prot = Protect()
            passes(run, [item])
            continue
        owner, parts = item
        path = os.path.join(owner.path, *parts)
        # Opened beneath the root, never through a symlink inside the tree.
        anchor = (owner.parent_fd, "/".join([owner.name, *parts[:-1]]))
        sub = Root(path, os.path.dirname(path), parts[-1], anchor=anchor)
        try:
            open_roots(run, [sub])
        except RemoveError as e:
            run.errors.append(RemoveFailure(sub.path, e.errno or 0, str(e.strerror)))
            continue
        passes(run, [sub])
    # Phase 3: the directories that held the `last` entries.
    rest = [r for r in roots if not r.done and r.prot.children]
    for r in rest:
        r.prot = Protect()
    passes(run, rest)
    return run.report()


def passes(run: Run, roots: list[Root]) -> None:
    """Remove ``roots`` in passes with backoff until done, out of budget, or stuck;
    then hand what is still busy to ``run.defer``."""
    backoff = Backoff(deadline=run.deadline)
    pending = [r for r in roots if not r.done]
    while pending:
        for r in pending:
            r.outcome = Outcome()
            one_pass(run, r)
        retry = [r for r in pending if not r.done and r.outcome.retry]
        if not retry or not backoff.wait():
            break
        pending = retry
    for r in roots:
        o = r.outcome
        if r.done or o.error or o.mount or o.protected or run.defer is None:
            continue
        if o.retry or o.silly:
            reason = (
                f"held open (silly-renamed): {', '.join(o.silly[:3])}"
                if o.silly and not o.retry
                else f"still busy after {run.deadline - run.start:.3g} s budget: "
                f"{o.last_retry_error}"
            )
            if r.leaf or r.strict:
                # A rename by name moves whatever is there now, not what was checked;
                # the trash is emptied later: it stays, an error.
                code = o.last_retry_errno or errno.EBUSY
                run.errors.append(RemoveFailure(r.path, code, f"{reason}; left in place"))
                continue
            try:
                trash = run.defer(r.parent_fd, r.parent, r.name)
            except FileNotFoundError:
                r.done = True
                continue
            except OSError as e:
                run.errors.append(
                    RemoveFailure(
                        r.path,
                        e.errno or 0,
                        f"could not remove ({reason}) nor move to trash: "
                        f"{os.strerror(e.errno or 0)}",
                    )
                )
                continue
            log.info("deferred %s to %s (%s)", r.path, trash, reason)
            run.deferred.append(Deferred(r.path, trash, reason))
            r.done = True


def one_pass(run: Run, r: Root) -> None:
    out = r.outcome
    try:
        st = statx(r.parent_fd, r.name)
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
        if run.unlink(r.parent_fd, r.parent, r.name, out, fix_perms=False):
            r.done = True
        return
    if r.leaf:
        leaf_is_a_directory(run, r)
        return
    if r.st is not None and st.ino != r.st.ino:
        r.st = st  # replaced since we looked: walk whatever directory is there now
    try:
        fd = os.open(r.name, O_DIR, dir_fd=r.parent_fd)
    except OSError as e:
        action = remove_action(e.errno)  # busy or retry: an error here
        if action == "gone":
            r.done = True
        elif action == "swapped":
            out.again(r.path, "swapped for a non-directory", e.errno or 0)
        elif action == "fix_perms" and chmod_nofollow_dir(r.parent_fd, r.name):
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
    if run.rmdir(r.parent_fd, r.parent, r.name, out, fix_perms=False):
        r.done = True


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
    r = Root(os.path.join(dir_path, name), dir_path, name, strict=strict)
    r.parent_fd = dir_fd
    try:
        r.parent_st = statx(dir_fd, "")
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
    r = Root(os.path.join(parent, name), parent, name)
    r.parent_fd = parent_fd
    try:
        r.parent_st = statx(parent_fd, "")
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
    r = Root(name, "", name, strict=True)
    r.parent_fd = parent_fd
    r.parent_st = statx(parent_fd, "")
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
