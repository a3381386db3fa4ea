"""The mount table, and which mount a path lives on.

Reading the mount table never touches the filesystems it lists: a ``stat`` on a
hard-mounted NFS export whose server is gone blocks forever, while
``/proc/self/mountinfo`` is answered by the kernel from memory.

Linux: ``/proc/self/mountinfo`` (proc(5)), parsed here because psutil drops the
mount ID, major:minor and root fields that tell a bind mount from its original.
Other systems: ``psutil.disk_partitions(all=True)`` (``all=False`` drops nfs,
cifs, fuse, tmpfs and overlay: exactly the mounts this library cares about).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ._record import field, record

__all__ = [
    "Mount",
    "MountTableError",
    "find_mount",
    "mount_id_of",
    "parse_mount_table",
    "parse_mountinfo",
    "parse_proc_mounts",
    "read_mount_table",
]

_OCTAL = r"\\([0-7]{3})"  # a regular expression; re is imported on first use


class MountTableError(ValueError):
    """A mount table could not be parsed; names the line that failed."""


@record(frozen=True)
class Mount:
    """One line of the mount table.

    ``mount_id``, ``parent_id``, ``major``, ``minor`` and ``root`` are ``None``
    when the table did not carry them (``/proc/mounts`` format, psutil).
    """

    mount_point: str
    fstype: str
    source: str
    mount_options: tuple[str, ...] = ()
    super_options: tuple[str, ...] = ()
    mount_id: int | None = None
    parent_id: int | None = None
    major: int | None = None
    minor: int | None = None
    root: str | None = None
    optional_fields: tuple[str, ...] = field(default=(), repr=False)

    @property
    def options(self) -> tuple[str, ...]:
        """Per-mount and per-superblock options together, mount options first."""
        return self.mount_options + tuple(
            o for o in self.super_options if o not in self.mount_options
        )

    def option(self, name: str) -> str | None:
        """Value of option ``name`` (``""`` for a flag), or ``None`` if absent."""
        for opt in self.options:
            key, sep, value = opt.partition("=")
            if key == name:
                return value if sep else ""
        return None

    @property
    def read_only(self) -> bool:
        return "ro" in self.mount_options

    @property
    def device(self) -> str | None:
        """``"major:minor"`` as mountinfo gives it, if known."""
        if self.major is None or self.minor is None:
            return None
        return f"{self.major}:{self.minor}"

    @property
    def superblock_key(self) -> tuple[str, str, str]:
        """What identifies the filesystem behind a mount (not the mount itself).

        Two mounts with equal keys are one superblock (a bind mount, a second
        mount of one btrfs): clone and copy_file_range work between them, link
        and rename do not.  For btrfs the subvolume options are left out: one
        filesystem, many subvolumes, one superblock, one major:minor in mountinfo.
        """
        # Without a device number (a /proc/mounts or psutil table) two tmpfs mounts
        # would look alike: never merge filesystems without proof.
        return (self.fstype, self.source, self.device or f"mount:{self.mount_point}")


def _unescape(field_: str) -> str:
    if "\\" not in field_:
        return field_
    import re  # re caches the compiled pattern

    return re.sub(_OCTAL, lambda m: chr(int(m[1], 8)), field_)


def _split_opts(text: str) -> tuple[str, ...]:
    return tuple(o for o in text.split(",") if o) if text else ()


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse ``/proc/<pid>/mountinfo`` text (proc(5)).

    >>> line = "36 35 98:0 /mnt1 /mnt/my\\\\040disk rw,noatime master:1 - ext3 /dev/root rw"
    >>> m = parse_mountinfo(line)[0]
    >>> (m.mount_point, m.fstype, m.root, m.device)
    ('/mnt/my disk', 'ext3', '/mnt1', '98:0')
    """
    mounts = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        head, sep, tail = line.rstrip("\r").partition(" - ")
        fields = head.split()
        # Single spaces: the kernel escapes every literal blank, and an empty
        # SOURCE ("mount -t tmpfs '' /x") must stay an empty field.
        rest = tail.split(" ")
        if not sep or len(fields) < 6 or len(rest) < 2:
            raise MountTableError(f"mountinfo line {lineno} is malformed: {line!r}")
        try:
            major, minor = (int(x) for x in fields[2].split(":", 1))
            mount_id, parent_id = int(fields[0]), int(fields[1])
        except ValueError:
            raise MountTableError(f"mountinfo line {lineno} is malformed: {line!r}") from None
        mounts.append(
            Mount(
                mount_id=mount_id,
                parent_id=parent_id,
                major=major,
                minor=minor,
                root=_unescape(fields[3]),
                mount_point=_unescape(fields[4]),
                mount_options=_split_opts(fields[5]),
                optional_fields=tuple(fields[6:]),
                fstype=rest[0],
                source=_unescape(rest[1]),
                super_options=_split_opts(rest[2]) if len(rest) > 2 else (),
            )
        )
    return mounts


def parse_proc_mounts(text: str) -> list[Mount]:
    """Parse ``/proc/mounts`` (fstab(5) format: source, mount point, type, options, 0, 0).

    >>> mounts = parse_proc_mounts("fs-1.efs.us-east-1.amazonaws.com:/ /efs nfs4 rw 0 0")
    >>> mounts[0].fstype
    'nfs4'
    """
    mounts = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.rstrip("\r").split(" ")
        if len(fields) < 3:
            raise MountTableError(f"mounts line {lineno} is malformed: {line!r}")
        mounts.append(
            Mount(
                source=_unescape(fields[0]),
                mount_point=_unescape(fields[1]),
                fstype=fields[2],
                mount_options=_split_opts(fields[3]) if len(fields) > 3 else (),
            )
        )
    return mounts


def _looks_like_mountinfo(line: str) -> bool:
    fields = line.split()
    return (
        len(fields) >= 6
        and fields[0].isdigit()
        and fields[1].isdigit()
        and ":" in fields[2]
        and " - " in line
    )


def parse_mount_table(text: str) -> list[Mount]:
    """Parse a mount table in either mountinfo or ``/proc/mounts`` format (detected).

    For a table saved on another machine (``cat /proc/self/mountinfo``), to pass
    as ``table=`` to :func:`~linkstrategy.probe` and :func:`~linkstrategy.plan`:
    nothing local is touched.  Raises :class:`MountTableError` (a ValueError)
    naming the line it cannot read.

    >>> import linkstrategy
    >>> t = linkstrategy.parse_mount_table("srv:/export /mnt/nfs nfs4 rw,vers=4.2 0 0\\n")
    >>> (t[0].mount_point, t[0].fstype)
    ('/mnt/nfs', 'nfs4')
    """
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if _looks_like_mountinfo(first):
        return parse_mountinfo(text)
    return parse_proc_mounts(text)


def read_mount_table() -> list[Mount]:
    """The mounts of this process's namespace, read without touching any of them."""
    from ._sys import mount_table_text

    text = mount_table_text()
    if text is not None:
        return parse_mount_table(text)
    import psutil  # lazy: only where there is no mount table file (macOS)

    return [
        Mount(
            source=p.device,
            mount_point=p.mountpoint,
            fstype=p.fstype,
            mount_options=_split_opts(p.opts),
        )
        for p in psutil.disk_partitions(all=True)
    ]


# -- path -> mount ------------------------------------------------------------


def _fdinfo_mnt_id(path: str) -> int | None:
    o_path = getattr(os, "O_PATH", None)
    if o_path is None:
        return None
    try:
        fd = os.open(path, o_path | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        with open(f"/proc/self/fdinfo/{fd}", "rb") as f:
            for line in f:
                if line.startswith(b"mnt_id:"):
                    return int(line.split()[1])
    except OSError:
        return None
    finally:
        os.close(fd)
    return None


def mount_id_of(path: str) -> int | None:
    """The kernel's mount ID for an existing ``path`` (not following a final symlink).

    statx(STATX_MNT_ID) since Linux 5.8, else ``mnt_id`` from /proc/self/fdinfo of an
    O_PATH descriptor (Linux 3.15+); ``None`` where neither is available.
    """
    from ._sys import AT_FDCWD, statx

    try:
        mid = statx(AT_FDCWD, path).mnt_id
    except OSError:
        mid = None
    return mid if mid is not None else _fdinfo_mnt_id(path)


def existing_ancestor(path: str) -> str:
    """``path`` made absolute and real, walked up to the nearest component that exists."""
    p = os.path.abspath(path)
    while not os.path.lexists(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    return os.path.realpath(p)


def by_prefix(path: str, table: Sequence[Mount]) -> Mount | None:
    best: Mount | None = None
    best_len = -1
    for m in table:  # later lines win ties: the last mount on a point is the visible one
        mp = m.mount_point.rstrip("/") or "/"
        if (path == mp or mp == "/" or path.startswith(mp + "/")) and len(mp) >= best_len:
            best, best_len = m, len(mp)
    return best


def find_mount(path: str, table: Sequence[Mount] | None = None, *, local: bool = True) -> Mount:
    """The mount that ``path`` (which need not exist yet) lives on.

    With ``local=True`` the path is resolved on this machine (realpath, nearest
    existing ancestor) and identified by mount ID where the kernel gives one.
    With ``local=False`` (a mount table saved on another machine) the path is
    matched lexically by the longest mount-point prefix and nothing is touched.

    >>> find_mount("/", local=False, table=[Mount("/", "ext4", "/dev/sda1")]).fstype
    'ext4'
    """
    if table is None:
        table = read_mount_table()
    if not table:
        raise MountTableError("the mount table is empty")
    if local:
        real = existing_ancestor(path)
        mid = mount_id_of(real)
        if mid is not None:
            for m in reversed(table):
                if m.mount_id == mid:
                    return m
    else:
        real = "/" + os.path.normpath(os.path.join("/", path)).lstrip("/")
    found = by_prefix(real, table)
    if found is None:
        raise MountTableError(f"no mount in the table contains {path!r}")
    return found
