"""``place(src, dst)``: put a file or a tree at ``dst`` by reflink, hardlink or copy.

How it works:

1. ``plan(src, dst)`` gives the strategy chain for the pair (live-tested, cached).
2. The source tree is walked once with directory file descriptors (``scandir``
   gives each entry's type without a stat); symlinks are never followed.
3. Destination directories are created parents first (in parallel by depth on a
   network filesystem).
4. Files are placed by a thread pool, in chunks per directory.  Each file goes
   through the chain: a clone or copy is written to a temporary name in the
   destination directory and renamed over the final name; a hardlink is made
   under the final name directly (link(2) is atomic) or, if the name exists,
   under a temporary name that is renamed over it.  Nothing partial ever has a
   final name.
5. Errors are sorted by the named errno sets in :mod:`._errors`: capability
   errors drop the strategy for the rest of the run, per-file limits fall back
   for one file, transient errors are retried, anything else stops the run,
   removes what this run created, and raises :class:`PlaceError` naming both
   paths.

Every destination directory is reached with ``open_beneath`` (openat2 with
RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS on Linux): a component swapped for a
symlink during the run makes the run fail; it never leads outside ``dst``.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from . import _errors as E
from ._errors import PlaceError, StrategyUnavailable
from ._plan import STRATEGIES, Plan, Strategy, plan
from ._syscalls import CLONE_CREATES, clone_at, clone_fd, copy_fd, open_beneath

__all__ = ["Fallback", "PlaceReport", "Skipped", "place"]

log = logging.getLogger("linkstrategy")

#: Temporary names start with this; the host tag and pid say whose they are, so a
#: later place() can remove the ones whose writer is gone.  Short and independent
#: of the final name, so 255-byte names still fit.
TMP_PREFIX = ".lstmp-"
_HOST = f"{zlib.crc32(socket.gethostname().encode()) & 0xFFFF:04x}"
_STALE_FOREIGN_SECONDS = 3600.0  # another host's temporaries: removed after an hour

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_TRANSIENT_TRIES = 4

_warned: set[tuple[Any, ...]] = set()
_warned_lock = threading.Lock()


@dataclass(frozen=True)
class Fallback:
    """One file that could not use a strategy, and what it used instead."""

    path: str
    from_strategy: Strategy
    to_strategy: Strategy
    errno: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "from": self.from_strategy,
            "to": self.to_strategy,
            "errno": errno.errorcode.get(self.errno, str(self.errno)),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Skipped:
    """A source entry that was not placed (special files are never opened)."""

    path: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class PlaceReport:
    """What :func:`place` did.  ``by_strategy`` counts regular files by strategy."""

    src: str
    dst: str
    files: int
    dirs: int
    symlinks: int
    bytes: int
    by_strategy: dict[str, int]
    fallbacks: tuple[Fallback, ...]
    skipped: tuple[Skipped, ...]
    seconds: float
    chain: tuple[Strategy, ...]
    workers: int
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The stable JSON form (keys documented in docs/cli.md)."""
        return {
            "src": self.src,
            "dst": self.dst,
            "files": self.files,
            "dirs": self.dirs,
            "symlinks": self.symlinks,
            "bytes": self.bytes,
            "by_strategy": {s: self.by_strategy.get(s, 0) for s in STRATEGIES},
            "fallbacks": [f.to_json() for f in self.fallbacks],
            "skipped": [s.to_json() for s in self.skipped],
            "seconds": round(self.seconds, 6),
            "chain": list(self.chain),
            "workers": self.workers,
            "warnings": list(self.warnings),
        }


# -- the source ----------------------------------------------------------------

_FILE, _LINK = 0, 1


@dataclass
class _Tree:
    dirs: list[str] = field(default_factory=list)  # relative paths, parents first; "" = root
    dir_modes: dict[str, int] = field(default_factory=dict)
    entries: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # dir -> (name, kind)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def nfiles(self) -> int:
        return sum(len(v) for v in self.entries.values())


def _join(d: str, name: str) -> str:
    return f"{d}/{name}" if d else name


def _special(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def _walk(src_root_fd: int) -> _Tree:
    tree = _Tree()
    stack = [("", os.dup(src_root_fd))]
    tree.dir_modes[""] = stat.S_IMODE(os.fstat(src_root_fd).st_mode)
    while stack:
        rel, fd = stack.pop()
        tree.dirs.append(rel)
        items: list[tuple[str, int]] = []
        subdirs: list[tuple[str, int]] = []
        try:
            with os.scandir(fd) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        cfd = os.open(e.name, _DIR_FLAGS | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                        crel = _join(rel, e.name)
                        tree.dir_modes[crel] = stat.S_IMODE(os.fstat(cfd).st_mode)
                        subdirs.append((crel, cfd))
                    elif e.is_symlink():
                        items.append((e.name, _LINK))
                    elif e.is_file(follow_symlinks=False):
                        items.append((e.name, _FILE))
                    else:
                        kind = _special(e.stat(follow_symlinks=False).st_mode)
                        tree.skipped.append(Skipped(_join(rel, e.name), f"{kind}: not placed"))
        finally:
            os.close(fd)
        tree.entries[rel] = items
        stack.extend(reversed(subdirs))
    return tree


def _tree_from_list(src_root_fd: int, files: Iterable[str]) -> _Tree:
    """A tree from a caller's file list (e.g. a RECORD): no directory listing at all."""
    tree = _Tree()
    seen_dirs: set[str] = {""}
    tree.dirs.append("")
    tree.dir_modes[""] = stat.S_IMODE(os.fstat(src_root_fd).st_mode)
    tree.entries[""] = []
    for raw in files:
        rel = os.path.normpath(os.fspath(raw)).strip("/")
        if rel in ("", ".") or rel == ".." or rel.startswith("../") or "/../" in rel:
            raise ValueError(f"file list entry {raw!r} is not a path inside the source")
        d, _, name = rel.rpartition("/")
        st = os.stat(rel, dir_fd=src_root_fd, follow_symlinks=False)
        parts = d.split("/") if d else []
        for i in range(len(parts)):
            sub = "/".join(parts[: i + 1])
            if sub not in seen_dirs:
                seen_dirs.add(sub)
                tree.dirs.append(sub)
                tree.entries[sub] = []
                tree.dir_modes[sub] = stat.S_IMODE(
                    os.stat(sub, dir_fd=src_root_fd, follow_symlinks=False).st_mode
                )
        if stat.S_ISLNK(st.st_mode):
            tree.entries[d].append((name, _LINK))
        elif stat.S_ISREG(st.st_mode):
            tree.entries[d].append((name, _FILE))
        elif stat.S_ISDIR(st.st_mode):
            raise ValueError(f"file list entry {raw!r} is a directory")
        else:
            tree.skipped.append(Skipped(rel, f"{_special(st.st_mode)}: not placed"))
    tree.dirs.sort(key=lambda p: (p.count("/") + (1 if p else 0), p))
    return tree


# -- the run ---------------------------------------------------------------------


class _Abort(Exception):
    """Another worker failed; stop quietly."""


class _Run:
    """State shared by the workers of one place() call."""

    def __init__(
        self,
        p: Plan,
        src_root: str,
        dst_root: str,
        *,
        xattrs: bool,
        fsync: bool,
        progress: Callable[[int, int], None] | None,
        total: int,
    ) -> None:
        self.plan = p
        self.src_root = src_root
        self.dst_root = dst_root
        self.chain: list[Strategy] = list(p.chain)
        self.forced = p.forced is not None
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.counts: dict[str, int] = {s: 0 for s in STRATEGIES}
        self.bytes = 0
        self.symlinks = 0
        self.fallbacks: list[Fallback] = []
        self.warnings: list[str] = []
        self.xattrs = xattrs
        self.xattr_failed = False
        self.fsync = fsync
        self.umask = _current_umask()
        self.progress = progress
        self.total = total
        self.done = 0
        self.created_files: list[tuple[str, str]] = []  # (dir, name) new in pre-existing dirs
        self.preexisting: set[str] = set()
        self.existing_names: dict[str, set[str]] = {}
        self.tmp_seq = 0

    # chain management -----------------------------------------------------------
    def snapshot(self) -> list[Strategy]:
        return list(self.chain)

    def downgrade(self, strategy: Strategy, err: OSError, path: str) -> None:
        with self.lock:
            if strategy in self.chain and len(self.chain) > 1:
                self.chain.remove(strategy)
        self._warn_once(strategy, err, path)

    def _warn_once(self, strategy: Strategy, err: OSError, path: str) -> None:
        sp, dp = self.plan.src_probe.mount, self.plan.dst_probe.mount
        key = (sp.mount_id, sp.mount_point, dp.mount_id, dp.mount_point, strategy, err.errno)
        name = errno.errorcode.get(err.errno or 0, str(err.errno))
        msg = (
            f"cannot {strategy} from {sp.mount_point} ({sp.fstype}) to {dp.mount_point} "
            f"({dp.fstype}): {name} ({err.strerror}) on {path}; falling back for this pair. "
            f"Set LINKSTRATEGY_STRATEGY to force one strategy."
        )
        with self.lock:
            self.warnings.append(msg)
        with _warned_lock:
            if key in _warned:
                return
            _warned.add(key)
        log.warning("%s", msg)

    def tmpname(self) -> str:
        with self.lock:
            self.tmp_seq += 1
            seq = self.tmp_seq
        return f"{TMP_PREFIX}{_HOST}-{os.getpid()}-{seq}-{os.urandom(3).hex()}"

    def record(self, strategy: Strategy, size: int) -> None:
        with self.lock:
            self.counts[strategy] += 1
            self.bytes += size
            self.done += 1
            done = self.done
        if self.progress is not None:
            self.progress(done, self.total)


def _current_umask() -> int:
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    # Not thread-safe, but place() reads it before starting any thread.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _errname(code: int | None) -> str:
    return errno.errorcode.get(code or 0, str(code))


def _is_stale_tmp(name: str, dfd: int) -> bool:
    parts = name[len(TMP_PREFIX) :].split("-")
    if len(parts) < 2:
        return False
    host, pid = parts[0], parts[1]
    if host == _HOST and pid.isdigit():
        pid_i = int(pid)
        if pid_i == os.getpid():
            return False
        try:
            os.kill(pid_i, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except OSError:
        return False
    return time.time() - st.st_mtime > _STALE_FOREIGN_SECONDS


def _scan_existing(run: _Run, rel: str, dfd: int) -> None:
    """List a destination directory that existed before: know its names, drop stale temps."""
    names: set[str] = set()
    with os.scandir(dfd) as it:
        for e in it:
            if e.name.startswith(TMP_PREFIX) and _is_stale_tmp(e.name, dfd):
                try:
                    os.unlink(e.name, dir_fd=dfd)
                except OSError:
                    pass
                continue
            names.add(e.name)
    with run.lock:
        run.preexisting.add(rel)
        run.existing_names[rel] = names


# -- per-file strategies -------------------------------------------------------------


def _copy_xattrs(run: _Run, sfd: int, dfd: int) -> None:
    if not run.xattrs or run.xattr_failed:
        return
    try:
        names = os.listxattr(sfd)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return
        raise
    for n in names:
        try:
            os.setxattr(dfd, n, os.getxattr(sfd, n))
        except OSError as e:
            if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EACCES):
                # e.g. EFS has no user xattrs, security.* needs privileges: report once
                with run.lock:
                    if not run.xattr_failed:
                        run.xattr_failed = True
                        run.warnings.append(
                            "extended attributes not kept on "
                            f"{run.plan.dst_probe.mount.mount_point}"
                            f" ({_errname(e.errno)} setting {n})"
                        )
                return
            raise


def _write_file(run: _Run, strategy: Strategy, sdir: int, ddir: int, name: str, tmp: str) -> int:
    """Clone or copy ``name`` into ``tmp`` in ``ddir`` with mode, times and xattrs; size."""
    sfd = os.open(name, _READ_FLAGS, dir_fd=sdir)
    try:
        st = os.fstat(sfd)
        if not stat.S_ISREG(st.st_mode):  # swapped for something else since the walk
            raise OSError(errno.EINVAL, "no longer a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if strategy == "reflink" and CLONE_CREATES:  # pragma: no cover - macOS
            clone_at(sfd, ddir, tmp)
            dfd = os.open(tmp, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=ddir)
        else:
            dfd = os.open(tmp, _CREATE_FLAGS, mode, dir_fd=ddir)
        try:
            if strategy == "reflink":
                if not CLONE_CREATES:
                    clone_fd(sfd, dfd)
            else:
                copy_fd(sfd, dfd, st.st_size)
            if mode & run.umask:  # create() applied the umask: set the exact mode
                os.fchmod(dfd, mode)
            os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))
            _copy_xattrs(run, sfd, dfd)
            if run.fsync:
                os.fsync(dfd)
        finally:
            os.close(dfd)
        return st.st_size
    finally:
        os.close(sfd)


def _place_file(run: _Run, rel_dir: str, sdir: int, ddir: int, name: str, exists: bool) -> None:
    path = _join(rel_dir, name)
    chain = run.snapshot()
    i = 0
    while i < len(chain):
        strategy = chain[i]
        tries = 0
        while True:
            try:
                size = _attempt(run, strategy, rel_dir, sdir, ddir, name, exists)
            except OSError as e:
                code = e.errno
                nxt = chain[i + 1] if i + 1 < len(chain) else None
                if code in E.TRANSIENT and tries < _TRANSIENT_TRIES:
                    tries += 1
                    time.sleep(0.005 * 2**tries)
                    continue
                capability = (
                    E.CLONE_UNSUPPORTED
                    if strategy == "reflink"
                    else E.LINK_UNSUPPORTED
                    if strategy == "hardlink"
                    else frozenset()
                )
                per_file = code in E.PER_FILE_LIMIT or code in E.TRANSIENT
                if (code in capability or per_file) and nxt is not None:
                    with run.lock:
                        run.fallbacks.append(
                            Fallback(
                                path,
                                strategy,
                                nxt,
                                code or 0,
                                "per-file limit" if per_file else "pair cannot " + strategy,
                            )
                        )
                    if not per_file:
                        run.downgrade(strategy, e, path)
                    break
                src = os.path.join(run.src_root, path)
                dst = os.path.join(run.dst_root, path)
                if code in capability and run.forced:
                    raise StrategyUnavailable(
                        code, f"forced strategy {strategy} failed: {e.strerror}", src, None, dst
                    ) from e
                raise PlaceError(code, f"{strategy} failed: {e.strerror}", src, None, dst) from e
            else:
                run.record(strategy, size)
                return
        i += 1


def _attempt(
    run: _Run, strategy: Strategy, rel_dir: str, sdir: int, ddir: int, name: str, exists: bool
) -> int:
    if strategy == "hardlink":
        st = os.stat(name, dir_fd=sdir, follow_symlinks=False)
        if not exists:
            try:
                os.link(name, name, src_dir_fd=sdir, dst_dir_fd=ddir, follow_symlinks=False)
                _note_created(run, rel_dir, name)
                return st.st_size
            except FileExistsError:
                pass
        try:
            cur = os.stat(name, dir_fd=ddir, follow_symlinks=False)
            if (cur.st_ino, cur.st_dev) == (st.st_ino, st.st_dev):
                return st.st_size  # already this very file
        except FileNotFoundError:
            pass
        tmp = run.tmpname()
        os.link(name, tmp, src_dir_fd=sdir, dst_dir_fd=ddir, follow_symlinks=False)
        _rename_into_place(run, rel_dir, ddir, tmp, name)
        return st.st_size
    tmp = run.tmpname()
    try:
        size = _write_file(run, strategy, sdir, ddir, name, tmp)
    except BaseException:
        _unlink_quiet(tmp, ddir)
        raise
    _rename_into_place(run, rel_dir, ddir, tmp, name)
    return size


def _rename_into_place(run: _Run, rel_dir: str, ddir: int, tmp: str, name: str) -> None:
    try:
        os.rename(tmp, name, src_dir_fd=ddir, dst_dir_fd=ddir)
    except BaseException:
        _unlink_quiet(tmp, ddir)
        raise
    _note_created(run, rel_dir, name)


def _note_created(run: _Run, rel_dir: str, name: str) -> None:
    if rel_dir in run.preexisting and name not in run.existing_names.get(rel_dir, ()):
        with run.lock:
            run.created_files.append((rel_dir, name))


def _unlink_quiet(name: str, dfd: int) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except OSError:
        pass


def _place_symlink(run: _Run, rel_dir: str, sdir: int, ddir: int, name: str, exists: bool) -> None:
    target = os.readlink(name, dir_fd=sdir)
    path = _join(rel_dir, name)
    try:
        if not exists:
            try:
                os.symlink(target, name, dir_fd=ddir)
                _note_created(run, rel_dir, name)
                return
            except FileExistsError:
                pass
        tmp = run.tmpname()
        os.symlink(target, tmp, dir_fd=ddir)
        _rename_into_place(run, rel_dir, ddir, tmp, name)
    except OSError as e:
        raise PlaceError(
            e.errno,
            f"symlink failed: {e.strerror}",
            os.path.join(run.src_root, path),
            None,
            os.path.join(run.dst_root, path),
        ) from e
    finally:
        with run.lock:
            run.symlinks += 1


def _chunk_job(
    run: _Run, src_root_fd: int, dst_root_fd: int, rel_dir: str, items: list[tuple[str, int]]
) -> None:
    if run.stop.is_set():
        raise _Abort
    sdir = open_beneath(src_root_fd, rel_dir, _DIR_FLAGS)
    try:
        ddir = open_beneath(dst_root_fd, rel_dir, _DIR_FLAGS)
    except OSError as e:
        os.close(sdir)
        raise PlaceError(
            e.errno,
            f"cannot open destination directory: {e.strerror}",
            os.path.join(run.src_root, rel_dir),
            None,
            os.path.join(run.dst_root, rel_dir),
        ) from e
    try:
        existing = run.existing_names.get(rel_dir)
        for name, kind in items:
            if run.stop.is_set():
                raise _Abort
            exists = existing is not None and name in existing
            if kind == _LINK:
                _place_symlink(run, rel_dir, sdir, ddir, name, exists)
            else:
                _place_file(run, rel_dir, sdir, ddir, name, exists)
        if run.fsync:
            os.fsync(ddir)
    finally:
        os.close(sdir)
        os.close(ddir)


def _make_dirs(
    run: _Run, tree: _Tree, dst_root_fd: int, pool: ThreadPoolExecutor | None, created: list[str]
) -> None:
    """Create destination directories parents first; parallel by depth if ``pool``."""
    by_parent: dict[str, list[str]] = {}
    for rel in tree.dirs[1:]:
        parent, _, _ = rel.rpartition("/")
        by_parent.setdefault(parent, []).append(rel)
    depth_groups: dict[int, list[str]] = {}
    for parent in by_parent:
        depth_groups.setdefault(parent.count("/") + (1 if parent else 0), []).append(parent)

    def make_children(parent: str) -> None:
        pfd = open_beneath(dst_root_fd, parent, _DIR_FLAGS)
        try:
            for rel in by_parent[parent]:
                name = rel.rpartition("/")[2]
                mode = tree.dir_modes.get(rel, 0o755)
                try:
                    os.mkdir(name, mode | 0o700, dir_fd=pfd)  # owner rwx while we fill it
                except FileExistsError:
                    try:
                        cfd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
                    except OSError as e:
                        raise PlaceError(
                            e.errno if e.errno != errno.ELOOP else errno.ENOTDIR,
                            "destination exists and is not a directory",
                            os.path.join(run.src_root, rel),
                            None,
                            os.path.join(run.dst_root, rel),
                        ) from e
                    try:
                        _scan_existing(run, rel, cfd)
                    finally:
                        os.close(cfd)
                    continue
                with run.lock:
                    created.append(rel)
                if (mode | 0o700) & run.umask or mode != mode | 0o700:
                    os.chmod(name, mode | 0o700, dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(pfd)

    for depth in sorted(depth_groups):
        parents = depth_groups[depth]
        if pool is None or len(parents) == 1:
            for parent in parents:
                make_children(parent)
        else:
            futures = [pool.submit(make_children, parent) for parent in parents]
            for f in futures:
                f.result()


def _restore_dir_modes(tree: _Tree, dst_root_fd: int, created: list[str]) -> None:
    """Directories were made owner-writable to be filled; give them the source's mode."""
    for rel in reversed(created):
        mode = tree.dir_modes.get(rel, 0o755)
        if mode & 0o700 != 0o700:
            parent, _, name = rel.rpartition("/")
            pfd = open_beneath(dst_root_fd, parent, _DIR_FLAGS)
            try:
                os.chmod(name, mode, dir_fd=pfd, follow_symlinks=False)
            finally:
                os.close(pfd)


def _rollback(run: _Run, dst_root_fd: int, created: list[str]) -> None:
    """Remove what this run added: directories it made, files new in existing directories."""
    created_set = set(created)
    for rel_dir, name in run.created_files:
        try:
            dfd = open_beneath(dst_root_fd, rel_dir, _DIR_FLAGS)
        except OSError:
            continue
        try:
            _unlink_quiet(name, dfd)
        finally:
            os.close(dfd)
    tops = [d for d in created if d.rpartition("/")[0] not in created_set]
    for rel in tops:
        parent, _, name = rel.rpartition("/")
        try:
            pfd = open_beneath(dst_root_fd, parent, _DIR_FLAGS)
        except OSError:
            continue
        try:
            _rmtree_at(pfd, name)
        except OSError as e:
            log.warning("could not roll back %s: %s", os.path.join(run.dst_root, rel), e)
        finally:
            os.close(pfd)


def _rmtree_at(pfd: int, name: str) -> None:
    fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
    try:
        os.fchmod(fd, 0o700)
        with os.scandir(fd) as it:
            entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        for n, is_dir in entries:
            if is_dir:
                _rmtree_at(fd, n)
            else:
                os.unlink(n, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=pfd)


# -- the public call -------------------------------------------------------------------


def _check_pair(src: str, dst: str) -> tuple[str, str]:
    try:
        src_st = os.stat(src)
    except OSError as e:
        raise PlaceError(e.errno, f"cannot read source: {e.strerror}", src, None, dst) from None
    real_src = os.path.realpath(src)
    parent = os.path.dirname(os.path.abspath(dst))
    real_dst = os.path.join(os.path.realpath(parent), os.path.basename(os.path.abspath(dst)))
    if real_dst == real_src or (
        os.path.lexists(real_dst) and os.path.samestat(src_st, os.stat(real_dst))
    ):
        raise PlaceError(errno.EINVAL, "source and destination are the same", src, None, dst)
    if stat.S_ISDIR(src_st.st_mode) and (real_dst + "/").startswith(real_src.rstrip("/") + "/"):
        raise PlaceError(errno.EINVAL, "destination is inside the source", src, None, dst)
    return real_src, real_dst


def place(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    strategy: str = "auto",
    workers: int | None = None,
    files: Iterable[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    xattrs: bool = True,
    fsync: bool = False,
) -> PlaceReport:
    """Place the file or tree ``src`` at ``dst`` by reflink, hardlink or copy.

    A file: ``dst`` becomes that file.  A directory: ``dst`` gets the same tree;
    an existing ``dst`` directory is merged into (files from ``src`` replace
    same-named files, everything else stays).  Parents of ``dst`` are created.

    ``strategy``: ``"auto"`` follows :func:`plan` (and ``$LINKSTRATEGY_STRATEGY``);
    ``"reflink"``, ``"hardlink"`` or ``"copy"`` force one, and a forced strategy
    the pair cannot do raises :class:`StrategyUnavailable` before anything is
    written.  ``workers``: threads (default from the plan: few on a local disk,
    many on a network filesystem).  ``files``: relative paths of the files and
    symlinks to place (e.g. from a RECORD), skipping the source walk.
    ``progress(done, total)`` is called after each file.  ``xattrs``: copy
    extended attributes on clones and copies.  ``fsync``: flush each file and
    directory before it is renamed into place.

    Special files (FIFOs, sockets, devices) are never opened: they are skipped
    and listed in ``report.skipped``.  On any real error (ENOSPC, EIO, EROFS,
    EACCES on the destination, ...) the run stops, everything this run created is
    removed again, and :class:`PlaceError` names both paths.  Files that
    replaced existing ones stay replaced; use :func:`replace` for all-or-nothing.

    >>> import linkstrategy, pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "cache").mkdir(), (d / "cache" / "a.txt").write_text("hi")
    >>> r = linkstrategy.place(d / "cache", d / "site")
    >>> (r.files, (d / "site" / "a.txt").read_text())
    (1, 'hi')
    """
    t0 = time.perf_counter()
    s, d = os.fspath(src), os.fspath(dst)
    real_src, real_dst = _check_pair(s, d)
    try:
        p = plan(real_src, real_dst, strategy=strategy)
    except ValueError as e:
        raise PlaceError(errno.EINVAL, str(e), s, None, d) from None
    if p.forced is not None:
        step = next(st for st in p.steps if st.strategy == p.forced)
        if step.impossible:
            raise StrategyUnavailable(
                errno.EXDEV
                if "filesystems" in step.reason or "mounts" in step.reason
                else errno.EOPNOTSUPP,
                f"cannot {p.forced}: {step.reason}",
                s,
                None,
                d,
            )
    nworkers = max(1, workers if workers is not None else p.workers)
    src_is_dir = os.path.isdir(real_src)
    parent = os.path.dirname(real_dst)
    base = os.path.basename(real_dst)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise PlaceError(
            e.errno, f"cannot create destination parent: {e.strerror}", s, None, parent
        ) from None
    try:
        if src_is_dir:
            return _place_tree(
                p, s, d, real_src, parent, base, nworkers, files, progress, xattrs, fsync, t0
            )
        return _place_one(p, s, d, real_src, parent, base, nworkers, progress, xattrs, fsync, t0)
    except PlaceError:
        raise
    except OSError as e:  # a call outside the per-file paths: still name both paths
        where = f" ({e.filename})" if isinstance(e.filename, str) else ""
        raise PlaceError(e.errno, f"{e.strerror}{where}", s, None, d) from e


def _report(
    run: _Run,
    s: str,
    d: str,
    files: int,
    dirs: int,
    skipped: list[Skipped],
    nworkers: int,
    t0: float,
) -> PlaceReport:
    return PlaceReport(
        src=s,
        dst=d,
        files=files,
        dirs=dirs,
        symlinks=run.symlinks,
        bytes=run.bytes,
        by_strategy=dict(run.counts),
        fallbacks=tuple(run.fallbacks),
        skipped=tuple(skipped),
        seconds=time.perf_counter() - t0,
        chain=tuple(run.plan.chain),
        workers=nworkers,
        warnings=tuple(run.warnings),
    )


def _place_one(
    p: Plan,
    s: str,
    d: str,
    real_src: str,
    parent: str,
    base: str,
    nworkers: int,
    progress: Callable[[int, int], None] | None,
    xattrs: bool,
    fsync: bool,
    t0: float,
) -> PlaceReport:
    sdir_path, sname = os.path.split(real_src)
    run = _Run(p, sdir_path, parent, xattrs=xattrs, fsync=fsync, progress=progress, total=1)
    sdir = os.open(sdir_path, _DIR_FLAGS | os.O_CLOEXEC)
    try:
        ddir = os.open(parent, _DIR_FLAGS | os.O_CLOEXEC)
    except OSError as e:
        os.close(sdir)
        raise PlaceError(e.errno, e.strerror, s, None, d) from None
    try:
        st = os.stat(sname, dir_fd=sdir, follow_symlinks=False)
        if stat.S_ISDIR(
            os.lstat(os.path.join(parent, base)).st_mode
            if os.path.lexists(os.path.join(parent, base))
            else 0
        ):
            raise PlaceError(errno.EISDIR, "destination is a directory", s, None, d)
        exists = os.path.lexists(os.path.join(parent, base))
        if stat.S_ISLNK(st.st_mode):
            _link_as(run, sdir, ddir, sname, base, exists, symlink=True)
            return _report(run, s, d, 0, 0, [], nworkers, t0)
        if not stat.S_ISREG(st.st_mode):
            return _report(
                run, s, d, 0, 0, [Skipped(s, f"{_special(st.st_mode)}: not placed")], nworkers, t0
            )
        _link_as(run, sdir, ddir, sname, base, exists, symlink=False)
        return _report(run, s, d, 1, 0, [], nworkers, t0)
    finally:
        os.close(sdir)
        os.close(ddir)


def _link_as(
    run: _Run, sdir: int, ddir: int, sname: str, dname: str, exists: bool, symlink: bool
) -> None:
    """Place one file whose source and destination names differ (single-file place)."""
    if sname == dname:
        if symlink:
            _place_symlink(run, "", sdir, ddir, sname, exists)
        else:
            _place_file(run, "", sdir, ddir, sname, exists)
        return
    # Give the destination name a directory fd of its own by placing through a
    # temporary name, then renaming: keeps one code path for every strategy.
    tmp = run.tmpname()
    proxy = _NameProxy(sname, tmp)
    try:
        if symlink:
            os.symlink(os.readlink(sname, dir_fd=sdir), tmp, dir_fd=ddir)
            run.symlinks += 1
        else:
            proxy.place(run, sdir, ddir)
        os.rename(tmp, dname, src_dir_fd=ddir, dst_dir_fd=ddir)
    except BaseException:
        _unlink_quiet(tmp, ddir)
        raise


@dataclass
class _NameProxy:
    sname: str
    tmp: str

    def place(self, run: _Run, sdir: int, ddir: int) -> None:
        chain = run.snapshot()
        last: OSError | None = None
        for i, strategy in enumerate(chain):
            try:
                if strategy == "hardlink":
                    st = os.stat(self.sname, dir_fd=sdir, follow_symlinks=False)
                    os.link(
                        self.sname,
                        self.tmp,
                        src_dir_fd=sdir,
                        dst_dir_fd=ddir,
                        follow_symlinks=False,
                    )
                    size = st.st_size
                else:
                    size = _write_file(run, strategy, sdir, ddir, self.sname, self.tmp)
            except OSError as e:
                _unlink_quiet(self.tmp, ddir)
                capability = (
                    E.CLONE_UNSUPPORTED
                    if strategy == "reflink"
                    else E.LINK_UNSUPPORTED
                    if strategy == "hardlink"
                    else frozenset()
                )
                if (e.errno in capability or e.errno in E.PER_FILE_LIMIT) and i + 1 < len(chain):
                    run.fallbacks.append(
                        Fallback(
                            self.sname,
                            strategy,
                            chain[i + 1],
                            e.errno or 0,
                            "pair cannot " + strategy,
                        )
                    )
                    last = e
                    continue
                src = os.path.join(run.src_root, self.sname)
                exc = StrategyUnavailable if (e.errno in capability and run.forced) else PlaceError
                raise exc(
                    e.errno,
                    f"{strategy} failed: {e.strerror}",
                    src,
                    None,
                    os.path.join(run.dst_root, self.tmp),
                ) from e
            run.record(strategy, size)
            return
        raise PlaceError(last.errno if last else errno.EIO, "no strategy worked", self.sname)


def _place_tree(
    p: Plan,
    s: str,
    d: str,
    real_src: str,
    parent: str,
    base: str,
    nworkers: int,
    files: Iterable[str] | None,
    progress: Callable[[int, int], None] | None,
    xattrs: bool,
    fsync: bool,
    t0: float,
) -> PlaceReport:
    src_root_fd = os.open(real_src, _DIR_FLAGS | os.O_CLOEXEC)
    try:
        tree = _walk(src_root_fd) if files is None else _tree_from_list(src_root_fd, files)
        pfd = os.open(parent, _DIR_FLAGS | os.O_CLOEXEC)
        run = _Run(
            p,
            real_src,
            os.path.join(parent, base),
            xattrs=xattrs,
            fsync=fsync,
            progress=progress,
            total=tree.nfiles,
        )
        created: list[str] = []
        root_created = False
        try:
            try:
                os.mkdir(base, tree.dir_modes[""] | 0o700, dir_fd=pfd)
                root_created = True
            except FileExistsError:
                pass
            try:
                dst_root_fd = os.open(base, _DIR_FLAGS | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
            except OSError as e:
                raise PlaceError(
                    e.errno if e.errno != errno.ELOOP else errno.ENOTDIR,
                    "destination exists and is not a directory",
                    s,
                    None,
                    d,
                ) from None
        except OSError:
            os.close(pfd)
            raise
        try:
            if not root_created:
                _scan_existing(run, "", dst_root_fd)
            else:
                created.append("")
            return _run_tree(run, tree, s, d, src_root_fd, dst_root_fd, nworkers, created, t0)
        except BaseException:
            run.stop.set()
            _rollback(run, dst_root_fd, [c for c in created if c])
            if root_created:
                try:
                    os.close(dst_root_fd)
                    dst_root_fd = -1
                    _rmtree_at(pfd, base)
                except OSError:
                    pass
            raise
        finally:
            if dst_root_fd >= 0:
                os.close(dst_root_fd)
            os.close(pfd)
    finally:
        os.close(src_root_fd)


def _run_tree(
    run: _Run,
    tree: _Tree,
    s: str,
    d: str,
    src_root_fd: int,
    dst_root_fd: int,
    nworkers: int,
    created: list[str],
    t0: float,
) -> PlaceReport:
    total = tree.nfiles
    chunk = max(8, min(256, total // (nworkers * 4) or 8))
    with ThreadPoolExecutor(max_workers=nworkers, thread_name_prefix="linkstrategy") as pool:
        _make_dirs(run, tree, dst_root_fd, pool if run.plan.network else None, created)
        futures: list[Future[None]] = []
        for rel in tree.dirs:
            items = tree.entries.get(rel, [])
            for i in range(0, len(items), chunk):
                futures.append(
                    pool.submit(
                        _chunk_job, run, src_root_fd, dst_root_fd, rel, items[i : i + chunk]
                    )
                )
        wait(futures, return_when=FIRST_EXCEPTION)
        first = next(
            (
                f.exception()
                for f in futures
                if f.done() and f.exception() and not isinstance(f.exception(), _Abort)
            ),
            None,
        )
        if first is not None:
            run.stop.set()
            for f in futures:
                f.cancel()
            wait(futures)
            raise first
    _restore_dir_modes(tree, dst_root_fd, [c for c in created if c])
    if "" in created and tree.dir_modes[""] & 0o700 != 0o700:
        os.fchmod(dst_root_fd, tree.dir_modes[""])
    return _report(run, s, d, total - run.symlinks, len(tree.dirs), tree.skipped, nworkers, t0)
