"""Real mounts for tests: loop-image filesystems, tmpfs, bind mounts, FUSE.

FUSE daemons: ``FaultFS`` (tests/support/faultfs.py, Python: latency and fault
injection) and ``LatencyFS`` (tests/latencyfs.c, compiled on first use into
tests/.build/: latency only, cheap enough for benchmarks).

Everything here mounts only under a directory the caller gives, and every
context manager unmounts (``umount``, then lazy ``umount -l``) and detaches its
loop device (``losetup -d``) on the way out, also after exceptions.  No pytest
dependency: the ``*_skip_reason`` functions return a string the caller can pass
to ``pytest.skip``.

Command-line use (for stale state after a killed test run)::

    python tests/support/mountutil.py --cleanup
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "FaultFS",
    "LatencyFS",
    "LatencyFSBuildError",
    "MountError",
    "bind_mount",
    "btrfs_subvolume",
    "cleanup_stale",
    "fuse_skip_reason",
    "is_mounted",
    "latencyfs_binary",
    "latencyfs_skip_reason",
    "loop_fs",
    "mount_info",
    "mount_skip_reason",
    "readonly_remount",
    "tmpfs_mount",
]

TESTS_DIR = Path(__file__).resolve().parent.parent
FAULTFS_SCRIPT = Path(__file__).with_name("faultfs.py")
LATENCYFS_SOURCE = TESTS_DIR / "latencyfs.c"
BUILD_DIR = TESTS_DIR / ".build"  # in .gitignore
IMAGE_PREFIX = "linkstrategy-test-"

# Smallest sizes that mkfs accepts here (xfsprogs >= 5.19 refuses < 300 MB;
# btrfs-progs wants ~109 MiB per device).  Images are sparse: mkfs writes only
# a few MB, so these cost little in /dev/shm.
DEFAULT_SIZE_MB = {"xfs-reflink": 300, "xfs-noreflink": 300, "btrfs": 128, "ext4": 32}
_MKFS = {
    "xfs-reflink": ["mkfs.xfs", "-q", "-f", "-K", "-m", "reflink=1"],
    "xfs-noreflink": ["mkfs.xfs", "-q", "-f", "-K", "-m", "reflink=0"],
    "btrfs": ["mkfs.btrfs", "-q", "-f", "-K"],
    "ext4": ["mkfs.ext4", "-q", "-F", "-E", "nodiscard", "-O", "^has_journal"],
}
_FSTYPE = {"xfs-reflink": "xfs", "xfs-noreflink": "xfs", "btrfs": "btrfs", "ext4": "ext4"}
_LABEL_MAX = {"xfs-reflink": 12, "xfs-noreflink": 12, "btrfs": 255, "ext4": 16}


class MountError(RuntimeError):
    """A mount/umount/losetup/mkfs command failed; carries its output."""


# --------------------------------------------------------------------- probing
def _run(
    cmd: list[str], *, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as e:
        raise MountError(f"{cmd[0]}: not found") from e
    if check and res.returncode != 0:
        raise MountError(
            f"{' '.join(map(str, cmd))} failed ({res.returncode}): "
            f"{(res.stderr or res.stdout).strip()}"
        )
    return res


def _missing_tools(tools: list[str]) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


def mount_skip_reason(kind: str | None = None) -> str | None:
    """None if this process can make and mount loop images (of ``kind``, or all kinds).

    ``kind`` may also be "tmpfs" or "bind": those need root and mount(8) only.
    """
    if os.geteuid() != 0:
        return f"not root (euid {os.geteuid()}); mounting needs root"
    if kind in ("tmpfs", "bind"):
        missing = _missing_tools(["mount", "umount"])
        return f"missing tools: {', '.join(missing)}" if missing else None
    kinds = [kind] if kind else list(_MKFS)
    tools = ["mount", "umount", "losetup", *{_MKFS[k][0] for k in kinds}]
    if "btrfs" in kinds:
        tools.append("btrfs")
    missing = _missing_tools(tools)
    if missing:
        return f"missing tools: {', '.join(sorted(set(missing)))}"
    if not os.path.exists("/dev/loop-control"):
        res = subprocess.run(["losetup", "-f"], capture_output=True, text=True)
        if res.returncode != 0:
            return f"no loop devices (/dev/loop-control absent, losetup -f: {res.stderr.strip()})"
    return None


def _fuse_device_skip_reason() -> str | None:
    """None if this process can mount (and unmount) a FUSE filesystem."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is absent"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not read/writable by this user"
    if shutil.which("fusermount3") is None:
        if os.geteuid() != 0:
            return "fusermount3 not found and not root"
        return "fusermount3 not found (needed to unmount; Debian package fuse3)"
    return None


def fuse_skip_reason() -> str | None:
    """None if this process can mount tests/support/faultfs.py."""
    reason = _fuse_device_skip_reason()
    if reason:
        return reason
    try:
        import mfusepy  # noqa: F401
    except Exception as e:  # OSError when libfuse is missing, ImportError without mfusepy
        return f"mfusepy not importable: {e}"
    return None


def latencyfs_skip_reason() -> str | None:
    """None if this process can build and mount tests/latencyfs.c (builds it if needed)."""
    reason = _fuse_device_skip_reason()
    if reason:
        return reason
    try:
        latencyfs_binary()
    except MountError as e:
        return str(e)
    return None


# --------------------------------------------------------------------- mount table
def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_info() -> list[dict[str, str]]:
    """/proc/self/mountinfo as dicts: mount_point, fstype, source, root, options."""
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            left, _, right = line.rstrip("\n").partition(" - ")
            lf, rf = left.split(" "), right.split(" ")
            out.append(
                {
                    "mount_point": _unescape(lf[4]),
                    "root": _unescape(lf[3]),
                    "options": lf[5],
                    "fstype": rf[0],
                    "source": _unescape(rf[1]) if len(rf) > 1 else "",
                    "super_options": rf[2] if len(rf) > 2 else "",
                }
            )
    return out


def mount_entry(mount_point: str | os.PathLike[str]) -> dict[str, str] | None:
    """The topmost mountinfo entry mounted exactly at ``mount_point`` (or None)."""
    mp = os.path.abspath(os.fspath(mount_point))
    found = None
    for m in mount_info():
        if m["mount_point"] == mp:
            found = m
    return found


def is_mounted(mount_point: str | os.PathLike[str]) -> bool:
    return mount_entry(mount_point) is not None


def _unmount(mp: Path, errors: list[str]) -> None:
    """umount (retrying briefly), then lazy umount; record failures in ``errors``."""
    for attempt in range(5):
        if not is_mounted(mp):
            return
        res = _run(["umount", str(mp)], check=False)
        if res.returncode == 0 and not is_mounted(mp):
            return
        time.sleep(0.05 * (attempt + 1))
    res = _run(["umount", "-l", str(mp)], check=False)
    if is_mounted(mp):
        errors.append(f"could not unmount {mp}: {res.stderr.strip()}")


def _detach(loopdev: str, errors: list[str]) -> None:
    res = _run(["losetup", "-d", loopdev], check=False)
    if res.returncode != 0:
        errors.append(f"losetup -d {loopdev}: {res.stderr.strip()}")


def _finish(errors: list[str]) -> None:
    """Raise cleanup errors unless an exception is already propagating."""
    if errors and sys.exc_info()[0] is None:
        raise MountError("; ".join(errors))


def _mount_dir(base_dir: str | os.PathLike[str], name: str) -> Path:
    base = Path(base_dir).absolute()
    mp = base / name
    if mp.exists() and (is_mounted(mp) or any(mp.iterdir())):
        mp = base / f"{name}-{uuid.uuid4().hex[:6]}"
    mp.mkdir(parents=True, exist_ok=True)
    return mp


def _image_dir(base_dir: Path) -> Path:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm
    d = base_dir / ".images"
    d.mkdir(exist_ok=True)
    return d


# --------------------------------------------------------------------- loop images
@contextlib.contextmanager
def loop_fs(
    kind: str,
    base_dir: str | os.PathLike[str],
    size_mb: int | None = None,
    label: str | None = None,
    name: str | None = None,
) -> Iterator[Path]:
    """Make a ``kind`` filesystem on a sparse image, mount it at base_dir/name.

    kind: "xfs-reflink", "xfs-noreflink", "btrfs" or "ext4".  ``name`` (default:
    ``label`` or ``kind``) may contain spaces.  Yields the mount point.
    """
    if kind not in _MKFS:
        raise ValueError(f"unknown kind {kind!r}; one of {sorted(_MKFS)}")
    base = Path(base_dir).absolute()
    size = size_mb or DEFAULT_SIZE_MB[kind]
    img = _image_dir(base) / f"{IMAGE_PREFIX}{os.getpid()}-{kind}-{uuid.uuid4().hex[:8]}.img"
    loopdev: str | None = None
    mp: Path | None = None
    mounted = False
    errors: list[str] = []
    try:
        with open(img, "wb") as f:
            f.truncate(size * 1024 * 1024)
        cmd = list(_MKFS[kind])
        if label:
            cmd += ["-L", label[: _LABEL_MAX[kind]]]
        _run([*cmd, str(img)])
        loopdev = _run(["losetup", "--find", "--show", str(img)]).stdout.strip()
        mp = _mount_dir(base, name or label or kind)
        _run(["mount", "-t", _FSTYPE[kind], loopdev, str(mp)])
        mounted = True
        yield mp
    finally:
        if mounted and mp is not None:
            _unmount(mp, errors)
        if loopdev:
            _detach(loopdev, errors)
        with contextlib.suppress(OSError):
            img.unlink()
        if mp is not None and not is_mounted(mp):
            with contextlib.suppress(OSError):
                mp.rmdir()
        _finish(errors)


def btrfs_subvolume(mount_point: str | os.PathLike[str], name: str) -> Path:
    """Create subvolume ``name`` directly under a btrfs mount; returns its Path."""
    path = Path(mount_point) / name
    _run(["btrfs", "subvolume", "create", str(path)])
    return path


# --------------------------------------------------------------------- tmpfs, bind
@contextlib.contextmanager
def tmpfs_mount(
    base_dir: str | os.PathLike[str], size: str = "16m", name: str = "tmpfs"
) -> Iterator[Path]:
    """Mount a tmpfs at base_dir/name (name may contain spaces)."""
    mp = _mount_dir(base_dir, name)
    opts = f"size={size},mode=0755"
    with _mounted(mp, ["mount", "-t", "tmpfs", "-o", opts, "linkstrategy-test", str(mp)]):
        yield mp


@contextlib.contextmanager
def bind_mount(
    src_dir: str | os.PathLike[str],
    base_dir: str | os.PathLike[str],
    name: str = "bind",
    readonly: bool = False,
) -> Iterator[Path]:
    """Bind-mount ``src_dir`` at base_dir/name (read-only if asked)."""
    mp = _mount_dir(base_dir, name)
    then = [["mount", "-o", "remount,ro,bind", str(mp)]] if readonly else []
    with _mounted(mp, ["mount", "--bind", str(src_dir), str(mp)], *then):
        yield mp


@contextlib.contextmanager
def _mounted(mp: Path, mount: list[str], *then: list[str]) -> Iterator[None]:
    """Run ``mount`` (which mounts at ``mp``), then ``then``; on the way out unmount and
    remove the mount point, reporting what could not be cleaned up."""
    errors: list[str] = []
    mounted = False
    try:
        _run(mount)
        mounted = True
        for cmd in then:
            _run(cmd)
        yield
    finally:
        if mounted:
            _unmount(mp, errors)
        if not is_mounted(mp):
            with contextlib.suppress(OSError):
                mp.rmdir()
        _finish(errors)


@contextlib.contextmanager
def readonly_remount(mount_point: str | os.PathLike[str]) -> Iterator[Path]:
    """Make an existing bind mount point read-only for the duration (per-mount flag)."""
    mp = Path(mount_point)
    _run(["mount", "-o", "remount,ro,bind", str(mp)])
    try:
        yield mp
    finally:
        _run(["mount", "-o", "remount,rw,bind", str(mp)], check=False)


# --------------------------------------------------------------------- stale state
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale() -> list[str]:
    """Detach loop devices of our images whose creating process is dead.

    Mounts of such devices are lazily unmounted first.  Returns what was done.
    Safe while other test sessions run: live owners are left alone.
    """
    done: list[str] = []
    res = _run(["losetup", "-J", "-l"], check=False)
    if res.returncode != 0 or not res.stdout.strip():
        return done
    pat = re.compile(re.escape(IMAGE_PREFIX) + r"(\d+)-")
    for dev in json.loads(res.stdout).get("loopdevices", []):
        back = dev.get("back-file") or ""
        m = pat.search(back)
        if not m or _pid_alive(int(m.group(1))):
            continue
        for mnt in mount_info():
            if mnt["source"] == dev["name"]:
                _run(["umount", "-l", mnt["mount_point"]], check=False)
                done.append(f"umount -l {mnt['mount_point']}")
        _run(["losetup", "-d", dev["name"]], check=False)
        done.append(f"losetup -d {dev['name']} ({back})")
        with contextlib.suppress(OSError):
            os.unlink(back.removesuffix(" (deleted)"))
    return done


# --------------------------------------------------------------------- FUSE
class _FuseDaemon(Protocol):  # what the helpers below need (FaultFS, LatencyFS)
    mountpoint: Path
    proc: subprocess.Popen[bytes] | None
    timeout: float

    def daemon_log(self) -> str: ...
    def stop(self) -> None: ...


def _wait_for_fuse_mount(fs: _FuseDaemon, subtype: str) -> None:
    """Wait until ``fs.mountpoint`` shows in mountinfo as fuse.<subtype>; stop and
    raise MountError if the daemon exits first or ``fs.timeout`` passes."""
    assert fs.proc is not None
    deadline = time.monotonic() + fs.timeout
    while True:
        ent = mount_entry(fs.mountpoint)
        if ent is not None and ent["fstype"] == f"fuse.{subtype}":
            return
        if fs.proc.poll() is not None:
            raise MountError(
                f"{subtype} exited with {fs.proc.returncode} before mounting "
                f"{fs.mountpoint}: {fs.daemon_log()}"
            )
        if time.monotonic() > deadline:
            log = fs.daemon_log()  # before stop(), which may delete it
            fs.stop()
            raise MountError(f"{subtype} did not mount {fs.mountpoint} within {fs.timeout}s: {log}")
        time.sleep(0.005)


def _stop_fuse_daemon(
    mountpoint: Path, proc: subprocess.Popen[bytes] | None, what: str
) -> list[str]:
    """Unmount (lazily if busy), reap the daemon (SIGTERM, then SIGKILL); return errors."""
    errors: list[str] = []
    mp = str(mountpoint)
    grace = 5.0
    if is_mounted(mp):
        res = _run(["fusermount3", "-u", mp], check=False)
        if res.returncode != 0:
            # Busy (a test left a file open): detach lazily.  The daemon would
            # serve the open files until they close, so stop it soon.
            _run(["fusermount3", "-uz", mp], check=False)
            grace = 0.2
    if proc is not None:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if is_mounted(mp):
        _run(["umount", "-l", mp], check=False)
        if is_mounted(mp):
            errors.append(f"{what} mount {mp} is still mounted")
    return errors


class FaultFS:
    """Run tests/support/faultfs.py in a subprocess over ``backing``, mounted at ``mountpoint``.

    Use as a context manager.  ``inject``/``set_latency``/``clear`` rewrite the
    control file; the daemon picks the change up at its next operation.
    """

    def __init__(
        self,
        backing: str | os.PathLike[str],
        mountpoint: str | os.PathLike[str],
        *,
        latency_ms: float = 0.0,
        nfs: bool = False,
        cache_s: float = 0.0,
        state_dir: str | os.PathLike[str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.backing = Path(backing).absolute()
        self.mountpoint = Path(mountpoint).absolute()
        self.nfs = nfs
        self.cache_s = cache_s
        self.timeout = timeout
        self._own_state = state_dir is None
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="faultfs-"))
        self.control = self.state_dir / "control.json"
        self.stats = self.state_dir / "stats.json"
        self._stderr_path = self.state_dir / "daemon.log"
        self._lock = threading.Lock()
        self._generation = 0
        self._latency_ms = latency_ms
        self._faults: list[dict[str, Any]] = []
        self.proc: subprocess.Popen[bytes] | None = None

    # -- control
    def _write_control(self) -> None:
        with self._lock:
            self._generation += 1
            data = {
                "generation": self._generation,
                "latency_ms": self._latency_ms,
                "faults": self._faults,
            }
            tmp = self.control.with_name(f"control.{self._generation}.tmp")
            tmp.write_text(json.dumps(data), encoding="utf-8")
            os.replace(tmp, self.control)

    def set_latency(self, ms: float) -> None:
        self._latency_ms = float(ms)
        self._write_control()

    def inject(self, op: str, errno: int, count: int = 1, path: str = "*") -> None:
        """Fail the next ``count`` calls of FUSE op ``op`` on paths matching ``path``.

        ``path`` is an fnmatch glob on the path inside the filesystem ("/a/b");
        ``op`` is a FUSE operation name (rmdir, unlink, rename, link, create,
        open, mkdir, getattr, ...) or "*".  Adds to earlier injections and
        resets all consumed counts.
        """
        self._faults.append({"op": op, "errno": int(errno), "count": int(count), "path": path})
        self._write_control()

    def clear(self) -> None:
        """Remove all injected faults (latency stays)."""
        self._faults = []
        self._write_control()

    def reset(self) -> None:
        """Remove all faults and set latency to 0."""
        self._faults = []
        self._latency_ms = 0.0
        self._write_control()

    def _stats(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.stats.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if data.get("generation") != self._generation:
            return {}  # daemon has not seen the current control file yet
        return data

    def consumed(self, op: str | None = None) -> int:
        """How many injected failures (of ``op``, or all) the daemon has returned."""
        counts = self._stats().get("consumed", [])
        return sum(
            n for f, n in zip(self._faults, counts, strict=False) if op is None or f["op"] == op
        )

    def calls(self) -> dict[str, int]:
        """The requests the daemon has had so far, by FUSE operation (one ``statfs``
        of the mount point, made here to have them written -- the kernel caches no
        statfs --, included)."""
        self._write_control()
        deadline = time.monotonic() + self.timeout
        while True:
            os.statvfs(self.mountpoint)
            data = self._stats()
            if data:
                return dict(data.get("calls", {}))
            if time.monotonic() > deadline:
                raise TimeoutError(f"faultfs at {self.mountpoint} wrote no stats")
            time.sleep(0.01)

    def consumed_per_fault(self) -> list[int]:
        counts = list(self._stats().get("consumed", []))
        return counts + [0] * (len(self._faults) - len(counts))

    # -- lifecycle
    def start(self) -> FaultFS:
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self._write_control()
        cmd = [
            sys.executable,
            str(FAULTFS_SCRIPT),
            str(self.backing),
            str(self.mountpoint),
            "--latency-ms",
            str(self._latency_ms),
            "--control",
            str(self.control),
            "--stats",
            str(self.stats),
            "--cache-s",
            str(self.cache_s),
            "--die-with-parent",
        ]
        if self.nfs:
            cmd.append("--nfs")
        with open(self._stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True
            )
        _wait_for_fuse_mount(self, "faultfs")
        return self

    def daemon_log(self) -> str:
        try:
            return self._stderr_path.read_text(errors="replace").strip()
        except OSError:
            return ""

    def stop(self) -> None:
        errors = _stop_fuse_daemon(self.mountpoint, self.proc, "faultfs")
        if self._own_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        _finish(errors)

    def __enter__(self) -> FaultFS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"FaultFS({str(self.backing)!r}, {str(self.mountpoint)!r}, nfs={self.nfs})"


# --------------------------------------------------------------------- latencyfs
class LatencyFSBuildError(MountError):
    """tests/latencyfs.c cannot be compiled (a tool, libfuse3-dev, or the compile failed)."""


def latencyfs_binary() -> Path:
    """Path of tests/latencyfs.c compiled; builds it (gcc, pkg-config fuse3) if missing.

    Cached as tests/.build/latencyfs-<first 12 hex of the source's sha256>.
    Raises LatencyFSBuildError naming what is missing.
    """
    digest = hashlib.sha256(LATENCYFS_SOURCE.read_bytes()).hexdigest()[:12]
    out = BUILD_DIR / f"latencyfs-{digest}"
    if out.is_file():
        return out
    missing = _missing_tools(["gcc", "pkg-config"])
    if missing:
        raise LatencyFSBuildError(
            f"cannot build latencyfs: {', '.join(missing)} not found (Debian packages "
            f"{' '.join(missing)})"
        )
    res = _run(["pkg-config", "--cflags", "--libs", "fuse3"], check=False)
    if res.returncode != 0:
        raise LatencyFSBuildError(
            "cannot build latencyfs: pkg-config finds no fuse3 (headers: Debian package "
            f"libfuse3-dev): {(res.stderr or res.stdout).strip()}"
        )
    cflags = _run(["pkg-config", "--cflags", "fuse3"]).stdout.split()
    libs = _run(["pkg-config", "--libs", "fuse3"]).stdout.split()
    try:
        BUILD_DIR.mkdir(exist_ok=True)
    except OSError as e:
        raise LatencyFSBuildError(f"cannot build latencyfs: {e}") from e
    tmp = out.with_name(f"{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    cmd = ["gcc", "-O2", "-Wall", "-Wextra", *cflags, "-o", str(tmp), str(LATENCYFS_SOURCE)]
    cmd += [*libs, "-lpthread"]
    try:
        res = _run(cmd, check=False, timeout=300)
        if res.returncode != 0:
            raise LatencyFSBuildError(
                f"cannot build latencyfs: {' '.join(cmd)} failed ({res.returncode}): "
                f"{res.stderr.strip()}"
            )
        os.replace(tmp, out)  # atomic: concurrent builders race harmlessly
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return out


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None]:
    """A preexec_fn: SIGTERM the child when this thread dies (libfuse then unmounts)."""
    prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # died before prctl took effect
            os._exit(1)

    return preexec


class LatencyFS:
    """Run tests/latencyfs.c over ``backing``, mounted at ``mountpoint``.

    Every FUSE request sleeps ``latency_ms`` once in one of up to ``max_threads``
    daemon threads, so concurrent requests overlap as on a network filesystem.
    ``cache_s`` sets libfuse's entry/attr/negative timeouts (0: every syscall
    reaches the daemon).  ``debug`` runs the daemon with -d: each request is then
    logged to ``daemon_log()``.  Use as a context manager.
    """

    def __init__(
        self,
        backing: str | os.PathLike[str],
        mountpoint: str | os.PathLike[str],
        *,
        latency_ms: float = 0.0,
        cache_s: float = 0.0,
        max_threads: int = 64,
        timeout: float = 10.0,
        debug: bool = False,
    ) -> None:
        self.backing = Path(backing).absolute()
        self.mountpoint = Path(mountpoint).absolute()
        self.latency_ms = latency_ms
        self.cache_s = cache_s
        self.max_threads = max_threads
        self.timeout = timeout
        self.debug = debug
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None  # anonymous temp file: the daemon's stderr

    def command(self) -> list[str]:
        opts = [
            f"latency_us={round(self.latency_ms * 1000)}",
            f"entry_timeout={self.cache_s}",
            f"attr_timeout={self.cache_s}",
            f"negative_timeout={self.cache_s}",
            "default_permissions",
            "fsname=latencyfs",
            "subtype=latencyfs",
        ]
        if self.max_threads:
            opts.append(f"max_threads={self.max_threads}")
        if os.geteuid() == 0:
            opts.append("allow_other")
        cmd = [str(latencyfs_binary()), str(self.backing), str(self.mountpoint), "-f"]
        if self.debug:
            cmd.append("-d")
        return [*cmd, "-o", ",".join(opts)]

    def start(self) -> LatencyFS:
        cmd = self.command()  # builds first: a build error raises before anything runs
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        # Append mode: daemon_log() reads with pread while the daemon writes.
        self._log = tempfile.TemporaryFile(mode="a+b", prefix="latencyfs-")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
        try:
            _wait_for_fuse_mount(self, "latencyfs")
        except BaseException:
            self.stop()
            raise
        return self

    def daemon_log(self) -> str:
        if self._log is None:
            return ""
        fd = self._log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace").strip()

    def stop(self) -> None:
        errors = _stop_fuse_daemon(self.mountpoint, self.proc, "latencyfs")
        if self._log is not None:
            self._log.close()
            self._log = None
        _finish(errors)

    def __enter__(self) -> LatencyFS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"LatencyFS({str(self.backing)!r}, {str(self.mountpoint)!r}, "
            f"latency_ms={self.latency_ms}, cache_s={self.cache_s})"
        )


if __name__ == "__main__":
    if sys.argv[1:] == ["--cleanup"]:
        for line in cleanup_stale():
            print(line)
    else:
        print(__doc__)
