#!/usr/bin/env python3
"""A FUSE passthrough filesystem with injectable latency and faults.

Run in its own process (the test helper ``mountutil.FaultFS`` does this)::

    python tests/support/faultfs.py BACKING_DIR MOUNTPOINT [--latency-ms F] [--control FILE]
                            [--stats FILE] [--nfs] [--cache-s F] [--max-threads N]

It stays in the foreground until unmounted (``fusermount3 -u MOUNTPOINT``) or
sent SIGTERM/SIGINT (libfuse unmounts on those).

Control file (JSON, re-read whenever its inode/mtime/size changes)::

    {"generation": 3, "latency_ms": 1.0,
     "faults": [{"op": "rmdir", "errno": 16, "count": 3, "path": "/a/*"}]}

The first ``count`` calls of ``op`` whose path matches the fnmatch glob ``path``
(default ``*``; the path inside the filesystem, starting with ``/``; for
rename/link/symlink either path may match) fail with ``errno``.  ``op`` may be
``*`` for every operation.  Loading a new control file resets the consumed
counts.  Consumption is written (atomically, before the failing call returns)
to the stats file as ``{"generation": G, "consumed": [n0, n1, ...], "calls": {op: n}}``
(``calls``: the requests the daemon has had, by operation, since it was mounted, as of
that write; a new control file makes the next request write them).

``--nfs`` imitates the Linux NFS client's "silly rename": unlinking (or renaming
over) a regular file that is still open renames it to
``.nfs<16 hex fileid><8 hex counter>`` in the same directory; unlinking such a
name while it is still open fails with EBUSY; rmdir of its directory therefore
fails with ENOTEMPTY; when the last handle is closed the ``.nfs`` file is
deleted (at the FLUSH of the last open handle, so it is gone when close()
returns, and again at RELEASE as a fallback).  libfuse's own hiding
(``.fuse_hidden*``) is switched off with ``hard_remove`` in that mode.

``$FAULTFS_TRACE`` (non-empty, in the daemon's environment) prints each request's
operation and paths to its stderr.

Kernel attribute/entry caching is off by default (``--cache-s 0``) so that
every syscall reaches the daemon: latency and faults are then deterministic.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import errno as errno_mod
import fnmatch
import functools
import json
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import mfusepy
from mfusepy import FUSE, FuseOSError, Operations

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_AT_FDCWD = -100
_UTIME_NOW = (1 << 30) - 1
_UTIME_OMIT = (1 << 30) - 2
_PR_SET_PDEATHSIG = 1


def _renameat2(old: str, new: str, flags: int) -> None:
    if flags == 0:
        os.rename(old, new)
        return
    res = _libc.renameat2(
        _AT_FDCWD, os.fsencode(old), _AT_FDCWD, os.fsencode(new), ctypes.c_uint(flags)
    )
    if res != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), old)


class _Fault:
    __slots__ = ("consumed", "count", "errno", "op", "path")

    def __init__(self, spec: dict[str, Any]) -> None:
        self.op = str(spec.get("op", "*"))
        self.errno = int(spec["errno"])
        self.count = int(spec.get("count", 1))
        self.path = str(spec.get("path", "*"))
        self.consumed = 0

    def matches(self, op: str, paths: tuple[str | None, ...]) -> bool:
        if self.consumed >= self.count:
            return False
        if self.op not in ("*", op):
            return False
        if self.path == "*":
            return True
        return any(p is not None and fnmatch.fnmatchcase(p, self.path) for p in paths)


def _op(name: str, npaths: int = 1) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Wrap an operation: latency, then fault injection, then the real call."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(self: FaultFS, *args: Any) -> Any:
            self._before(name, args[:npaths])
            try:
                return fn(self, *args)
            except OSError as e:
                if isinstance(e, FuseOSError) or not e.errno:
                    raise
                raise FuseOSError(e.errno) from None

        return wrapper

    return deco


class FaultFS(Operations):
    use_ns = True

    def __init__(
        self,
        backing: str,
        *,
        latency_ms: float = 0.0,
        control: str | None = None,
        stats: str | None = None,
        nfs: bool = False,
    ) -> None:
        self.root = os.path.realpath(backing)
        self.latency = latency_ms / 1000.0
        self.control = control
        self.stats = stats or (control + ".stats" if control else None)
        self.nfs = nfs
        self._lock = threading.Lock()
        self._control_key: tuple[int, int, int] | None = None
        self._generation = 0
        self._faults: list[_Fault] = []
        # fh -> inode number; inode -> set of fhs; inode -> silly-renamed path
        self._fh_ino: dict[int, int] = {}
        self._ino_fhs: dict[int, set[int]] = {}
        self._silly: dict[int, str] = {}
        self._silly_counter = 0
        self._am_root = os.geteuid() == 0
        self._calls: dict[str, int] = {}  # requests by operation, since the mount
        self._trace = bool(os.environ.get("FAULTFS_TRACE"))

    # ----------------------------------------------------------- control
    def _reload_control(self) -> None:
        if self.control is None:
            return
        try:
            st = os.stat(self.control)
        except FileNotFoundError:
            return
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key == self._control_key:
            return
        with self._lock:
            if key == self._control_key:
                return
            try:
                with open(self.control, encoding="utf-8") as f:
                    data = json.load(f)
            except (OSError, ValueError):
                return  # half-written by a non-atomic writer: retry next op
            self._control_key = key
            self._generation = int(data.get("generation", self._generation + 1))
            if "latency_ms" in data and data["latency_ms"] is not None:
                self.latency = float(data["latency_ms"]) / 1000.0
            self._faults = [_Fault(s) for s in data.get("faults", [])]
            self._write_stats()

    def _write_stats(self) -> None:
        if self.stats is None:
            return
        tmp = f"{self.stats}.tmp.{threading.get_ident()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "generation": self._generation,
                    "consumed": [x.consumed for x in self._faults],
                    "calls": dict(self._calls),
                    "faults": [
                        {"op": x.op, "errno": x.errno, "count": x.count, "path": x.path}
                        for x in self._faults
                    ],
                },
                f,
            )
        os.replace(tmp, self.stats)

    def _before(self, op: str, paths: tuple[Any, ...]) -> None:
        with self._lock:
            self._calls[op] = self._calls.get(op, 0) + 1
            if self._trace:
                print(op, *paths, file=sys.stderr)
        self._reload_control()
        if self.latency > 0:
            time.sleep(self.latency)
        if not self._faults:
            return
        strpaths = tuple(p if isinstance(p, str) else None for p in paths)
        with self._lock:
            for fault in self._faults:
                if fault.matches(op, strpaths):
                    fault.consumed += 1
                    self._write_stats()
                    raise FuseOSError(fault.errno)

    # ----------------------------------------------------------- helpers
    def _full(self, path: str) -> str:
        return self.root + path if path != "/" else self.root

    def _own(self, full: str) -> None:
        if not self._am_root:
            return
        uid, gid, _pid = mfusepy.fuse_get_context()
        if uid != 0 or gid != 0:
            os.lchown(full, uid, gid)

    def _track_open(self, fd: int) -> int:
        ino = os.fstat(fd).st_ino
        with self._lock:
            self._fh_ino[fd] = ino
            self._ino_fhs.setdefault(ino, set()).add(fd)
        return fd

    def _silly_rename(self, full: str) -> bool:
        """NFS client behaviour for unlink/rename-over of an open file. Lock held."""
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(st.st_mode) or not self._ino_fhs.get(st.st_ino):
            return False
        base = os.path.basename(full)
        if base.startswith(".nfs"):
            raise FuseOSError(errno_mod.EBUSY)
        if st.st_nlink > 1:
            return False  # other names keep the data alive; a plain unlink is safe
        self._silly_counter += 1
        new = os.path.join(os.path.dirname(full), f".nfs{st.st_ino:016x}{self._silly_counter:08x}")
        os.rename(full, new)
        self._silly[st.st_ino] = new
        return True

    def _drop_silly(self, ino: int) -> None:
        """Delete the .nfs file of ``ino`` if nothing holds it open. Lock held."""
        if self._ino_fhs.get(ino):
            return
        path = self._silly.pop(ino, None)
        if path is None:
            return
        try:
            if os.lstat(path).st_ino == ino:
                os.unlink(path)
        except OSError:
            pass

    # ----------------------------------------------------------- metadata
    @_op("getattr")
    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        if fh is not None and fh in self._fh_ino:
            st = os.fstat(fh)
        elif path is None:
            raise FuseOSError(errno_mod.ENOENT)
        else:
            st = os.lstat(self._full(path))
        return {
            "st_mode": st.st_mode,
            "st_ino": st.st_ino,
            "st_nlink": st.st_nlink,
            "st_uid": st.st_uid,
            "st_gid": st.st_gid,
            "st_size": st.st_size,
            "st_blocks": st.st_blocks,
            "st_blksize": st.st_blksize,
            "st_rdev": st.st_rdev,
            "st_atime": st.st_atime_ns,
            "st_mtime": st.st_mtime_ns,
            "st_ctime": st.st_ctime_ns,
        }

    @_op("access")
    def access(self, path: str, amode: int) -> int:
        if not os.access(self._full(path), amode, follow_symlinks=False):
            raise FuseOSError(errno_mod.EACCES)
        return 0

    @_op("statfs")
    def statfs(self, path: str) -> dict[str, int]:
        sv = os.statvfs(self._full(path))
        return {
            k: getattr(sv, k)
            for k in (
                "f_bsize",
                "f_frsize",
                "f_blocks",
                "f_bfree",
                "f_bavail",
                "f_files",
                "f_ffree",
                "f_favail",
                "f_flag",
                "f_namemax",
            )
        }

    @_op("chmod")
    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._full(path), mode)
        return 0

    @_op("chown")
    def chown(self, path: str, uid: int, gid: int) -> int:
        os.lchown(self._full(path), uid, gid)
        return 0

    @_op("utimens")
    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        full = self._full(path)
        if times is None:
            os.utime(full, follow_symlinks=False)
            return 0
        now = time.time_ns()
        atime, mtime = times
        if _UTIME_OMIT in (atime, mtime):
            st = os.lstat(full)
            atime = st.st_atime_ns if atime == _UTIME_OMIT else atime
            mtime = st.st_mtime_ns if mtime == _UTIME_OMIT else mtime
        atime = now if atime == _UTIME_NOW else atime
        mtime = now if mtime == _UTIME_NOW else mtime
        os.utime(full, ns=(atime, mtime), follow_symlinks=False)
        return 0

    @_op("readlink")
    def readlink(self, path: str) -> str:
        return os.readlink(self._full(path))

    # ----------------------------------------------------------- directories
    @_op("opendir")
    def opendir(self, path: str) -> int:
        if not os.path.isdir(self._full(path)):
            raise FuseOSError(errno_mod.ENOTDIR)
        return 0

    @_op("readdir")
    def readdir(self, path: str, fh: int) -> list[tuple[str, dict[str, int], int]]:
        # With use_ino an entry needs a non-zero st_ino: glibc's readdir skips d_ino == 0.
        full = self._full(path)
        st = os.lstat(full)
        out = [
            (".", {"st_ino": st.st_ino, "st_mode": stat.S_IFDIR}, 0),
            ("..", {"st_ino": 1, "st_mode": stat.S_IFDIR}, 0),
        ]
        with os.scandir(full) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    mode = stat.S_IFDIR
                elif e.is_symlink():
                    mode = stat.S_IFLNK
                elif e.is_file(follow_symlinks=False):
                    mode = stat.S_IFREG
                else:
                    mode = stat.S_IFMT(os.lstat(e.path).st_mode)
                out.append((e.name, {"st_ino": e.inode(), "st_mode": mode}, 0))
        return out

    @_op("releasedir")
    def releasedir(self, path: str | None, fh: int) -> int:
        return 0

    @_op("mkdir")
    def mkdir(self, path: str, mode: int) -> int:
        full = self._full(path)
        os.mkdir(full, mode)
        self._own(full)
        return 0

    @_op("rmdir")
    def rmdir(self, path: str) -> int:
        os.rmdir(self._full(path))
        return 0

    # ----------------------------------------------------------- names
    @_op("unlink")
    def unlink(self, path: str) -> int:
        full = self._full(path)
        if self.nfs:
            with self._lock:
                if self._silly_rename(full):
                    return 0
                os.unlink(full)
            return 0
        os.unlink(full)
        return 0

    @_op("rename", 2)
    def rename(self, old: str, new: str, flags: int = 0) -> int:
        fold, fnew = self._full(old), self._full(new)
        if self.nfs and not flags:
            with self._lock:
                if os.path.lexists(fnew) and not os.path.samefile(fold, fnew):
                    self._silly_rename(fnew)
                _renameat2(fold, fnew, flags)
            return 0
        _renameat2(fold, fnew, flags)
        return 0

    @_op("link", 2)
    def link(self, target: str, source: str) -> int:
        # mfusepy passes (new name, existing name)
        os.link(self._full(source), self._full(target))
        return 0

    @_op("symlink", 1)
    def symlink(self, target: str, source: str) -> int:
        # mfusepy passes (link path, link contents)
        full = self._full(target)
        os.symlink(source, full)
        self._own(full)
        return 0

    @_op("mknod")
    def mknod(self, path: str, mode: int, dev: int) -> int:
        full = self._full(path)
        os.mknod(full, mode, dev)
        self._own(full)
        return 0

    # ----------------------------------------------------------- files
    @_op("create")
    def create(self, path: str, mode: int, flags: int) -> int:
        full = self._full(path)
        fd = os.open(full, flags | os.O_CREAT, mode)
        try:
            self._own(full)
        except OSError:
            os.close(fd)
            raise
        return self._track_open(fd)

    @_op("open")
    def open(self, path: str, flags: int) -> int:
        return self._track_open(os.open(self._full(path), flags))

    @_op("read")
    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        return os.pread(fh, size, offset)

    @_op("write")
    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        return os.pwrite(fh, data, offset)

    @_op("truncate")
    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        if fh is not None and fh in self._fh_ino:
            os.ftruncate(fh, length)
        elif path is None:
            raise FuseOSError(errno_mod.EBADF)
        else:
            os.truncate(self._full(path), length)
        return 0

    @_op("flush")
    def flush(self, path: str | None, fh: int) -> int:
        if self.nfs:
            with self._lock:
                ino = self._fh_ino.get(fh)
                if ino is not None and ino in self._silly and self._ino_fhs.get(ino) == {fh}:
                    # last open handle is being closed: delete now, so the
                    # .nfs file is gone when close() returns.
                    path_ = self._silly.pop(ino)
                    try:
                        if os.lstat(path_).st_ino == ino:
                            os.unlink(path_)
                    except OSError:
                        pass
        return 0

    @_op("fsync")
    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        if datasync:
            os.fdatasync(fh)
        else:
            os.fsync(fh)
        return 0

    @_op("release")
    def release(self, path: str | None, fh: int) -> int:
        with self._lock:
            ino = self._fh_ino.pop(fh, None)
            if ino is not None:
                fhs = self._ino_fhs.get(ino)
                if fhs is not None:
                    fhs.discard(fh)
                    if not fhs:
                        del self._ino_fhs[ino]
                if self.nfs:
                    self._drop_silly(ino)
        os.close(fh)
        return 0

    # ----------------------------------------------------------- xattrs
    @_op("setxattr")
    def setxattr(self, path: str, name: str, value: bytes, options: int, position: int = 0) -> int:
        os.setxattr(self._full(path), name, value, options, follow_symlinks=False)
        return 0

    @_op("getxattr")
    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        return os.getxattr(self._full(path), name, follow_symlinks=False)

    @_op("listxattr")
    def listxattr(self, path: str) -> list[str]:
        return os.listxattr(self._full(path), follow_symlinks=False)

    @_op("removexattr")
    def removexattr(self, path: str, name: str) -> int:
        os.removexattr(self._full(path), name, follow_symlinks=False)
        return 0


class _FUSE(FUSE):  # type: ignore[misc]
    """mfusepy drops rename flags and the truncate file handle; pass them on."""

    def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
        return self.operations.rename(  # type: ignore[no-any-return]
            old.decode(self.encoding, self.errors), new.decode(self.encoding, self.errors), flags
        )

    def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
        fh = fip.contents.fh if fip else None
        return self.operations.truncate(  # type: ignore[no-any-return]
            None if path is None else path.decode(self.encoding, self.errors), length, fh
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("backing")
    ap.add_argument("mountpoint")
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--control", default=None, help="JSON control file")
    ap.add_argument("--stats", default=None, help="stats JSON (default CONTROL.stats)")
    ap.add_argument("--nfs", action="store_true", help="imitate NFS silly rename")
    ap.add_argument("--cache-s", type=float, default=0.0, help="entry/attr/negative cache timeout")
    ap.add_argument(
        "--max-threads",
        type=int,
        default=64,
        help="libfuse worker threads (-o max_threads, libfuse >= 3.12; 0: its default, 10)",
    )
    ap.add_argument(
        "--die-with-parent", action="store_true", help="SIGTERM self when the parent dies"
    )
    args = ap.parse_args(argv)

    if args.die_with_parent:
        parent = os.getppid()
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            return 1

    os.umask(0)
    ops = FaultFS(
        args.backing,
        latency_ms=args.latency_ms,
        control=args.control,
        stats=args.stats,
        nfs=args.nfs,
    )
    opts: dict[str, Any] = {
        "foreground": True,
        "nothreads": False,
        "fsname": "faultfs",
        "subtype": "faultfs",
        "default_permissions": True,
        "entry_timeout": args.cache_s,
        "attr_timeout": args.cache_s,
        "negative_timeout": args.cache_s,
        "use_ino": True,
        # libfuse's default is 10 worker threads, far fewer requests in flight than
        # a real NFS client keeps (64+ RPC slots); 0 keeps libfuse's default.
        "max_threads": args.max_threads,
    }
    if not args.max_threads or (mfusepy.fuse_version_major, mfusepy.fuse_version_minor) < (3, 12):
        del opts["max_threads"]  # older libfuse refuses the option
    if os.geteuid() == 0:
        opts["allow_other"] = True
    if args.nfs:
        opts["hard_remove"] = True
    _FUSE(ops, args.mountpoint, **opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
