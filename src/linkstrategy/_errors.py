"""Errors, and every errno decision the library makes, named and kept together.

Any errno not named in a set below propagates untouched.  Public exceptions
subclass :class:`OSError`, carry the path(s) in ``filename``/``filename2`` and
pickle (``OSError.__reduce__`` passes ``(errno, strerror, filename, winerror,
filename2)`` back to ``__init__``, so subclasses keep that signature).
"""

from __future__ import annotations

import errno

TYPE_CHECKING = False  # mypy treats any name TYPE_CHECKING as true; typing stays unloaded
if TYPE_CHECKING:
    from typing import Literal, TypeAlias

__all__ = [
    "InvalidArgument",
    "LinkStrategyError",
    "PlaceError",
    "RemoveError",
    "StrategyUnavailable",
    "TransactionBusy",
]

# Lustre and old kernels can leak the kernel-internal ENOTSUPP (524) to user space
# (hpc/mpifileutils#644); treat it like EOPNOTSUPP.
ENOTSUPP_KERNEL = 524

# -- placing files (place.py) -------------------------------------------------

#: A clone (FICLONE / clonefile) failed because this pair cannot clone: stop
#: trying clones for the pair for the rest of the run.
CLONE_UNSUPPORTED = frozenset(
    {
        errno.EXDEV,  # different superblocks (before Linux 5.18 also different vfsmounts)
        errno.EOPNOTSUPP,  # fs has no remap_file_range: ext4, tmpfs, xfs reflink=0, FUSE, NFS<4.2
        errno.ENOTSUP,  # == EOPNOTSUPP on Linux; distinct on macOS (45 vs 102)
        ENOTSUPP_KERNEL,
        errno.ENOTTY,  # the ioctl is unknown to this filesystem driver
        errno.ENOSYS,  # no such call (old kernel, seccomp)
        errno.EINVAL,  # btrfs NOCOW source into COW destination; unaligned ranges
        errno.EPERM,  # seccomp filters; immutable destinations
    }
)

#: link() failed because this pair cannot hardlink: stop linking for the pair.
LINK_UNSUPPORTED = frozenset(
    {
        errno.EXDEV,  # different mounts (even of one filesystem), btrfs subvolumes
        errno.EPERM,  # fs.protected_hardlinks, filesystems without hardlinks (exFAT, some FUSE)
        errno.EACCES,  # protected_hardlinks on some kernels, Android
        errno.EOPNOTSUPP,  # FUSE filesystems without a link op
        errno.ENOTSUP,
        errno.ENOSYS,
    }
)

#: This one file cannot be linked; the next file may be: fall back for this file only.
PER_FILE_LIMIT = frozenset(
    {
        errno.EMLINK,  # too many links: ext4 65000, btrfs 65535, EFS 177, NTFS ~1024
    }
)

#: Worth another try after a short pause: retry a bounded number of times.
TRANSIENT = frozenset(
    {
        errno.EAGAIN,  # ZFS block cloning on freshly written (dirty) files; openzfs#17485
        errno.EINTR,  # interrupted by a signal
    }
)

#: symlink(2) failed because this destination cannot hold symlinks (vfat, exFAT,
#: some FUSE and SMB mounts): stop making symlinks for the pair.
SYMLINK_UNSUPPORTED = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS})

#: copy_file_range/sendfile: "this copy primitive is not available for this pair", try
#: the next one (only before the first byte).  copy_file_range(2): EXDEV across
#: filesystems (5.19+), EOPNOTSUPP/ENOSYS where not implemented, EPERM under seccomp,
#: EINVAL on special files; sendfile(2): EINVAL, ENOSYS.  The C loop has the same set
#: (``_speedups.GIVEUP``; a test keeps them equal).
COPY_GIVEUP = frozenset(
    {
        errno.EXDEV,
        errno.EOPNOTSUPP,
        errno.ENOSYS,
        errno.EPERM,
        errno.EINVAL,
        errno.ENOTSUP,
        ENOTSUPP_KERNEL,
    }
)

#: What place() does about an error of one strategy on one file.
if TYPE_CHECKING:
    PlaceAction: TypeAlias = Literal["retry", "next_for_file", "next_for_pair", "fail"]


def place_action(code: int | None, strategy: str) -> PlaceAction:
    """The decision for ``errno`` ``code`` from ``strategy``: ``retry`` (a bounded number of
    times, then ``next_for_file``), ``next_for_file`` (this file falls back: a per-file
    limit), ``next_for_pair`` (the pair cannot do this strategy: drop it for the run),
    or ``fail`` (a real error: stop and roll back)."""
    if code in TRANSIENT:
        return "retry"
    if code in PER_FILE_LIMIT:
        return "next_for_file"
    if code in _capability(strategy):
        return "next_for_pair"
    return "fail"


def _capability(strategy: str) -> frozenset[int]:
    if strategy == "reflink":
        return CLONE_UNSUPPORTED
    if strategy == "hardlink":
        return LINK_UNSUPPORTED
    if strategy == "symlink":
        return SYMLINK_UNSUPPORTED
    return frozenset()


#: Extended attributes: the filesystem has none (EFS, some FUSE): stop trying for the run.
XATTR_UNSUPPORTED = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP})

#: Extended attributes: this one name may not be set here (``security.*``, ``trusted.*``
#: without privileges): skip it, keep the others.
XATTR_DENIED = frozenset({errno.EPERM, errno.EACCES})


# Anything else (ENOSPC, EDQUOT, EIO, EROFS, ENAMETOOLONG, EMFILE, ...) is never
# fallen back on: falling back would hide the problem or make it worse.


if TYPE_CHECKING:
    XattrAction: TypeAlias = Literal["unsupported", "denied", "fail"]


def xattr_action(code: int | None) -> XattrAction:
    """What an errno from listing, reading or setting an extended attribute means:
    ``"unsupported"`` (the filesystem has none: stop asking it), ``"denied"`` (this
    name may not be set here, e.g. ``security.*`` as a user: skip it), or ``"fail"``.

    >>> xattr_action(errno.EOPNOTSUPP), xattr_action(errno.EPERM), xattr_action(errno.EIO)
    ('unsupported', 'denied', 'fail')
    """
    if code in XATTR_UNSUPPORTED:
        return "unsupported"
    if code in XATTR_DENIED:
        return "denied"
    return "fail"


#: renameat2(RENAME_EXCHANGE) / renameatx_np(RENAME_SWAP) not available here: the
#: kernel (ENOSYS), the filesystem (EINVAL: NFS, most FUSE) or the volume (ENOTSUP).
EXCHANGE_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP})

#: probe()'s live test could not be made, which says nothing of what the filesystem
#: can do: the process or the filesystem was short of something at that moment (fds,
#: memory, space, quota) or the call was cut short.  The probe is then "untested" and
#: not cached, never "cannot reflink" for the rest of the process.
PROBE_INCONCLUSIVE = frozenset(
    {
        errno.EMFILE,
        errno.ENFILE,
        errno.ENOMEM,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EIO,
        errno.EINTR,
        errno.EAGAIN,
        errno.ETIMEDOUT,
    }
)

#: The mount table file is not there (no /proc mounted, or not this kind of system): the
#: table comes from elsewhere (psutil).  Any other failure to read it (EMFILE, ENOMEM)
#: is raised as it is: it says nothing of where the mounts are.
NO_MOUNT_TABLE_FILE = frozenset({errno.ENOENT, errno.ENOTDIR})

#: A lock (fcntl, flock) cannot be taken on this filesystem at all: no lock manager
#: (ENOLCK: NFS mounted without lockd), no lock operation (EOPNOTSUPP, ENOSYS, EINVAL:
#: some FUSE and network filesystems).  Liveness then goes by age, never by the lock.
LOCK_UNSUPPORTED = frozenset(
    {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL}
)

# -- removing files (remove.py) ----------------------------------------------

#: The entry may go if we wait: retry with bounded backoff inside the budget.
REMOVE_RETRY = frozenset(
    {
        errno.EBUSY,  # NFS silly-renamed file still open; Windows-style sharing violations
        errno.ENOTEMPTY,  # entries appeared, or a .nfs*/.fuse_hidden* file is held open
        errno.EEXIST,  # some systems return EEXIST for a non-empty rmdir (POSIX allows it)
        errno.EAGAIN,
        errno.EINTR,
    }
)

#: Already gone: removing it is not an error.
REMOVE_GONE = frozenset({errno.ENOENT})

#: Permission problems that making the parent directory writable may cure.
REMOVE_PERMISSION = frozenset({errno.EACCES, errno.EPERM})

#: unlink() met a directory: the entry was swapped for a directory mid-walk.
REMOVE_IS_DIR = frozenset(
    {
        errno.EISDIR,  # Linux unlink(2) of a directory (POSIX allows EPERM, Linux says EISDIR)
    }
)

#: A directory was swapped for something else mid-walk: look again, never follow.
REMOVE_SWAPPED = frozenset(
    {
        errno.ELOOP,  # open(O_NOFOLLOW) of a name that is now a symlink
        errno.ENOTDIR,  # open(O_DIRECTORY) or rmdir(2) of a name that is now a file
    }
)


#: What remove() and gc() do about an error of one unlink, rmdir, open or listing.
if TYPE_CHECKING:
    RemoveAction: TypeAlias = Literal["gone", "busy", "retry", "fix_perms", "swapped", "fail"]


def remove_action(code: int | None) -> RemoveAction:
    """The decision for ``errno`` ``code`` met while removing an entry: ``gone`` (already
    removed: not an error), ``busy`` (EBUSY: a mount point, or retried like ``retry``),
    ``retry`` (another pass, within the budget; a silly-renamed name held open defers
    its root instead), ``fix_perms`` (make the
    directory ours writable/searchable and try once more, then ``fail``), ``swapped``
    (the entry changed type mid-walk: look again next pass, never follow it), or
    ``fail`` (a real error, listed in the report: EMFILE, ENFILE, EIO, EROFS, ...)."""
    if code in REMOVE_GONE:
        return "gone"
    if code == errno.EBUSY:
        return "busy"
    if code in REMOVE_RETRY:
        return "retry"
    if code in REMOVE_PERMISSION:
        return "fix_perms"
    if code in REMOVE_SWAPPED or code in REMOVE_IS_DIR:
        return "swapped"
    return "fail"


class LinkStrategyError(OSError):
    """Base class of every error this library raises.  Subclasses :class:`OSError`."""


class PlaceError(LinkStrategyError):
    """Placing ``filename`` (source) at ``filename2`` (destination) failed."""


class InvalidArgument(LinkStrategyError, ValueError):
    """An argument that can never work (a ``files=`` entry with ``..`` that is not
    leading or that climbs out of ``within=``, a directory in a file list, a bad
    ``last=`` entry).  Both an :class:`OSError` (``errno`` EINVAL or
    EISDIR, the path in ``filename``) and a :class:`ValueError`."""


class StrategyUnavailable(PlaceError):
    """A forced strategy cannot work for this (source, destination) pair.

    Raised before anything is written.
    """


class RemoveError(LinkStrategyError):
    """Removing ``filename`` failed (refused, or a real error)."""


class TransactionBusy(LinkStrategyError):
    """A live process is still running a ``replace()`` of ``filename`` (its journal).

    Raised instead of recovering the transaction under that process's feet.
    """
