"""What a mount's filesystem is, and what it can be expected to do, from the mount table alone.

Nothing here touches a filesystem: ``classify`` reads one :class:`Mount` (fstype,
source, options) and returns static expectations.  ``"maybe"`` means "only a live
probe can tell"; the placer probes those once per (source, destination) pair.

Facts and their sources: ``/work/shared/research/fsfacts.md`` (cited as fsfacts §N).
"""

from __future__ import annotations

import os

from ._mounts import Mount
from ._record import record, replace

TYPE_CHECKING = False  # mypy treats any name TYPE_CHECKING as true; typing stays unloaded
if TYPE_CHECKING:
    from typing import Literal, TypeAlias


__all__ = ["NETWORK_ENV", "Traits", "classify", "network_override"]

#: Environment variable naming mount points to treat as network filesystems
#: (``os.pathsep``-separated).  For tests and benchmarks on an emulated
#: high-latency FUSE filesystem, and for users whose network filesystem the
#: table cannot recognise.  Read by place() (the probe) and remove() alike.
NETWORK_ENV = "LINKSTRATEGY_NETWORK_MOUNTS"


def network_override() -> frozenset[str]:
    """Mount points named in ``$LINKSTRATEGY_NETWORK_MOUNTS``, normalised."""
    raw = os.environ.get(NETWORK_ENV, "")
    return frozenset(os.path.realpath(p) for p in raw.split(os.pathsep) if p)


if TYPE_CHECKING:
    Tri: TypeAlias = Literal["yes", "no", "maybe"]


@record(frozen=True)
class Traits:
    """Static expectations for one mount, before any live test.

    >>> from linkstrategy._mounts import Mount
    >>> t = classify(Mount("/efs", "nfs4", "fs-0123abcd.efs.us-east-1.amazonaws.com:/"))
    >>> (t.kind, t.network, t.reflink, t.hardlink, t.xattr, t.max_links)
    ('efs', True, 'no', 'yes', 'no', 177)
    """

    kind: str
    network: bool
    fuse: bool
    reflink: Tri
    hardlink: Tri
    xattr: Tri
    max_links: int | None = None
    notes: tuple[str, ...] = ()


def _t(
    kind: str,
    network: bool,
    reflink: Tri,
    hardlink: Tri,
    xattr: Tri,
    max_links: int | None = None,
    *notes: str,
    fuse: bool = False,
) -> Traits:
    return Traits(kind, network, fuse, reflink, hardlink, xattr, max_links, tuple(notes))


# -- kernel filesystems, by fstype ---------------------------------------------
_SMB = _t(
    "cifs",
    True,
    "maybe",
    "maybe",
    "maybe",
    None,
    "SMB: reflink only if the server supports FSCTL_DUPLICATE_EXTENTS (ReFS)",
)

# (kind, network, reflink, hardlink, xattr, max_links, notes...)
_KERNEL: dict[str, Traits] = {
    # Local filesystems (fsfacts §4, VH = verified on Linux 6.18).
    # ext4: EXT4_LINK_MAX 65000 and FICLONE -> EOPNOTSUPP, both VH.
    "ext4": _t("ext4", False, "no", "yes", "yes", 65000),
    # ext2/ext3 keep their own kind: same behaviour as ext4 (today the ext4 driver serves
    # them), but the old ext2/ext3 drivers capped links at 32000, so no single known limit.
    "ext3": _t(
        "ext3",
        False,
        "no",
        "yes",
        "yes",
        None,
        "ext3: at most 32000 links (old driver) or 65000 (ext4 driver)",
    ),
    "ext2": _t(
        "ext2",
        False,
        "no",
        "yes",
        "yes",
        None,
        "ext2: at most 32000 links (old driver) or 65000 (ext4 driver)",
    ),
    # xfs reflinks only if made with mkfs reflink=1 (the default since xfsprogs 5.1,
    # git-lfs#3792); XFS_MAXLINK = 2^31-1 (fsfacts §4, VH).
    "xfs": _t(
        "xfs",
        False,
        "maybe",
        "yes",
        "yes",
        2**31 - 1,
        "xfs: reflink only if created with mkfs -m reflink=1",
    ),
    # btrfs: 65535 links VH; EXDEV for link/rename across subvolumes, clone works (VH).
    "btrfs": _t(
        "btrfs",
        False,
        "yes",
        "yes",
        "yes",
        65535,
        "btrfs: hardlink/rename fail with EXDEV across subvolumes; clones work",
    ),
    "bcachefs": _t("bcachefs", False, "yes", "yes", "yes"),  # reflink: rmw PR #527
    # ZFS block cloning: 2.2+, pool feature block_cloning and zfs_bclone_enabled; no
    # cross-dataset clones on most Linux versions (openzfs docs, #16837).
    "zfs": _t(
        "zfs",
        False,
        "maybe",
        "yes",
        "yes",
        None,
        "zfs: clones need OpenZFS >= 2.2 with block_cloning; never across datasets",
    ),
    # tmpfs: no remap_file_range (VH); user xattrs only since Linux 6.6, and the
    # table may come from any kernel, so "maybe".
    "tmpfs": _t(
        "tmpfs", False, "no", "yes", "maybe", None, "tmpfs: user xattrs only since Linux 6.6"
    ),
    "devtmpfs": _t("tmpfs", False, "no", "yes", "maybe"),
    "ramfs": _t("ramfs", False, "no", "yes", "no"),
    "f2fs": _t("f2fs", False, "no", "yes", "yes"),
    "ntfs3": _t("ntfs3", False, "no", "yes", "maybe", None, "NTFS: about 1024 links per file"),
    # ocfs2 reflink: kernel commit "ocfs2: implement the VFS clone_range ... features".
    "ocfs2": _t("ocfs2", True, "yes", "yes", "yes", None, "ocfs2: shared-disk cluster filesystem"),
    "gfs2": _t("gfs2", True, "no", "yes", "yes", None, "gfs2: shared-disk cluster filesystem"),
    # No hardlinks at all on FAT-family filesystems (peers.md via fsfacts §4).
    "vfat": _t("vfat", False, "no", "no", "no"),
    "msdos": _t("msdos", False, "no", "no", "no"),
    "exfat": _t("exfat", False, "no", "no", "no"),
    # Read-only images: nothing can be created on them.
    "squashfs": _t("squashfs", False, "no", "no", "no", None, "read-only filesystem"),
    "erofs": _t("erofs", False, "no", "no", "no", None, "read-only filesystem"),
    "iso9660": _t("iso9660", False, "no", "no", "no", None, "read-only filesystem"),
    # overlayfs: clone passes to the real files (works only if both are on one
    # reflink-capable sb, VH); link() of a lower file copies it up first (VH).
    "overlay": _t(
        "overlay",
        False,
        "maybe",
        "maybe",
        "maybe",
        None,
        "overlay: linking a lower-layer file copies it up first",
        "overlay: reflink only when both real files share a reflink-capable fs",
    ),
    # autofs: an automount trigger; walking into it mounts (and may block).  fsfacts §2.4.
    "autofs": _t(
        "autofs",
        False,
        "maybe",
        "maybe",
        "maybe",
        None,
        "autofs: automount trigger; do not walk into it (that mounts and may block)",
    ),
    # -- network and cluster filesystems --
    "cifs": _SMB,
    "smb3": _SMB,  # the same cifs.ko, mounted as smb3 (Linux 4.18+)
    "smbfs": _t("cifs", True, "no", "maybe", "no"),
    # Lustre/CephFS/GPFS/BeeGFS: no FICLONE found (fsfacts §4).  Lustre user xattrs
    # follow the user_xattr mount option (see _refine); GPFS/BeeGFS xattrs are configurable.
    "lustre": _t("lustre", True, "no", "yes", "maybe"),
    "ceph": _t("cephfs", True, "no", "yes", "yes"),
    "gpfs": _t(
        "gpfs",
        True,
        "no",
        "yes",
        "maybe",
        None,
        "GPFS: has its own clone API (mmclone), not FICLONE",
    ),
    # BeeGFS: cross-directory hardlinks only since 7.4.0 (release notes).
    "beegfs": _t(
        "beegfs",
        True,
        "no",
        "maybe",
        "maybe",
        None,
        "BeeGFS: hardlinks across directories only since 7.4.0",
    ),
    "wekafs": _t("wekafs", True, "maybe", "yes", "maybe"),  # capabilities not researched
    # 9p: QEMU virtfs and WSL2 drvfs; no remap support (inference, fsfacts §4).
    "9p": _t("9p", True, "no", "maybe", "maybe"),
    "drvfs": _t(
        "drvfs", True, "no", "maybe", "maybe", None, "WSL1 drvfs: Windows drive; very slow metadata"
    ),
    # virtiofs: FUSE protocol to a host daemon; every metadata op is a round trip to the
    # host, so it counts as network.  No clone opcode in FUSE (fsfacts §1, §4).
    # virtiofsd implements link(); xattrs are off unless virtiofsd runs with --xattr.
    "virtiofs": _t(
        "virtiofs",
        True,
        "no",
        "yes",
        "maybe",
        None,
        "virtiofs: host directory shared into a VM; metadata is a host round trip",
    ),
    # AFS: hardlinks only within one directory.
    "afs": _t("afs", True, "no", "maybe", "no", None, "AFS: hardlinks only within one directory"),
    "pvfs2": _t("orangefs", True, "no", "no", "maybe"),
    "vboxsf": _t("vboxsf", True, "no", "no", "no", None, "VirtualBox shared folder"),
    "vmhgfs": _t("vmhgfs", True, "no", "no", "no", None, "VMware shared folder"),
    "prl_fs": _t("prl_fs", True, "no", "no", "no", None, "Parallels shared folder"),
    "panfs": _t("panfs", True, "no", "yes", "maybe"),
}

# Kernel pseudo filesystems: nothing to place there.
_PSEUDO = frozenset(
    {
        "proc",
        "sysfs",
        "cgroup",
        "cgroup2",
        "devpts",
        "mqueue",
        "debugfs",
        "tracefs",
        "securityfs",
        "pstore",
        "bpf",
        "configfs",
        "fusectl",
        "binfmt_misc",
        "efivarfs",
        "hugetlbfs",
        "nsfs",
        "rpc_pipefs",
        "selinuxfs",
        "nfsd",
        "rootfs",
    }
)

# -- FUSE subtypes -------------------------------------------------------------
# FICLONE never works through FUSE: the protocol has no clone opcode (fsfacts §4, VH).
# Network FUSE subtype -> (hardlink, xattr, note).  Object-store mounts have no links.
_FUSE_NETWORK: dict[str, tuple[Tri, Tri, str]] = {
    # sshfs creates a real server-side link but shows st_nlink=1 and a new st_ino (VH).
    "sshfs": ("maybe", "maybe", "sshfs: links exist on the server but st_nlink/st_ino are faked"),
    "s3fs": ("no", "maybe", "s3fs: S3 bucket; no hardlinks"),
    "gcsfuse": ("no", "no", "gcsfuse: GCS bucket; no hardlinks"),
    "rclone": ("no", "no", "rclone mount: no hardlinks"),
    "mountpoint-s3": ("no", "no", "mountpoint-s3: S3 bucket; no hardlinks, no renames"),
    "goofys": ("no", "maybe", "goofys: S3 bucket; no hardlinks"),
    "geesefs": ("no", "maybe", "geesefs: S3 bucket; no hardlinks"),
    "blobfuse": ("no", "no", "blobfuse: Azure Blob container; no hardlinks"),
    "blobfuse2": ("no", "no", "blobfuse2: Azure Blob container; no hardlinks"),
    "juicefs": ("yes", "maybe", "JuiceFS"),
    "ceph-fuse": ("yes", "yes", "CephFS through ceph-fuse"),
    "curlftpfs": ("no", "no", "curlftpfs: FTP; no hardlinks"),
    "gvfsd-fuse": ("no", "maybe", "GVFS bridge (may front SMB, SFTP, WebDAV...)"),
    "kio-fuse": ("no", "maybe", "KIO bridge (remote protocols)"),
    "cvmfs2": ("no", "no", "CernVM-FS: read-only"),
    "mfs": ("yes", "maybe", "MooseFS/LizardFS"),
    "quobyte": ("yes", "maybe", "Quobyte"),
    "seaweedfs": ("maybe", "maybe", "SeaweedFS"),
    "vmhgfs-fuse": ("no", "no", "VMware shared folder"),
}
# FUSE subtypes that are network filesystems with a kind of their own.
_FUSE_OWN_KIND = {"glusterfs": "glusterfs"}

# Local FUSE subtype -> (hardlink, xattr, note).
_FUSE_LOCAL: dict[str, tuple[Tri, Tri, str]] = {
    "fuse-overlayfs": ("maybe", "maybe", "fuse-overlayfs (rootless containers): copy-up on link"),
    "ntfs-3g": ("yes", "maybe", "ntfs-3g"),
    "lxcfs": ("no", "no", "lxcfs: virtual /proc files"),
    "mergerfs": ("maybe", "maybe", "mergerfs: links only within one branch"),
    "bindfs": ("yes", "maybe", "bindfs"),
    "squashfuse": ("no", "no", "squashfuse: read-only"),
    "squashfuse_ll": ("no", "no", "squashfuse: read-only"),
    "fuse-zip": ("no", "no", "fuse-zip"),
    "archivemount": ("no", "no", "archivemount"),
    "encfs": ("maybe", "maybe", "encfs: links only with external IV chaining off"),
    "gocryptfs": ("yes", "maybe", "gocryptfs"),
    "cryfs": ("no", "no", "cryfs: no hardlinks"),
    "securefs": ("maybe", "maybe", "securefs"),
    "unionfs": ("maybe", "maybe", "unionfs-fuse"),
    "unionfs-fuse": ("maybe", "maybe", "unionfs-fuse"),
    "portal": ("no", "no", "xdg-document-portal"),
    "dislocker": ("no", "no", "dislocker: BitLocker volume file"),
    "apfs-fuse": ("no", "no", "apfs-fuse: read-only"),
    "fuse-ext2": ("yes", "maybe", "fuse-ext2"),
    "exfat": ("no", "no", "exFAT: no hardlinks"),
}

# -- AWS EFS -------------------------------------------------------------------
# fs-<hex>.efs.<region>.amazonaws.com (or .com.cn), optionally AZ-prefixed (fsfacts §3).
# A regular expression; re is imported on first use.
_EFS_HOST = r"(?:^|\.)fs-[0-9a-f]{8,17}\.efs\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?$"
# efs-utils mounts 127.0.0.1:/ with port=<tlsport>; the default range in efs-utils.conf
# is port_range_lower_bound=20049 .. port_range_upper_bound=21049 (aws/efs-utils).
_EFS_UTILS_PORTS = range(20049, 21050)
_EFS_NOTE = "AWS EFS: at most 177 hardlinks per file, no user xattrs, no reflink"
# EFS: NFSv4.0/4.1 only, 177 links, user xattrs fail with ENOTSUP (fsfacts §9).
_EFS = _t("efs", True, "no", "yes", "no", 177, _EFS_NOTE)

_UNKNOWN_NOTE = "unknown filesystem type: everything must be probed"


def _nfs_version(mount: Mount) -> str | None:
    vers = mount.option("vers") or mount.option("nfsvers")
    minor = mount.option("minorversion")  # old style: vers=4,minorversion=2
    if vers in (None, "4") and minor:
        return f"4.{minor}"
    return vers


def _is_efs(mount: Mount) -> str | None:
    host = mount.source.rpartition(":")[0] if ":" in mount.source else ""
    import re  # on first use, not at import; re caches the compiled pattern

    if re.search(_EFS_HOST, host.lower()):
        return _EFS_NOTE
    port = mount.option("port")
    if (
        host in ("127.0.0.1", "localhost")
        and port
        and port.isdigit()
        and (int(port) in _EFS_UTILS_PORTS)
    ):
        return "AWS EFS (likely): efs-utils local proxy on 127.0.0.1, port " + port
    return None


def _nfs(mount: Mount) -> Traits:
    efs_note = _is_efs(mount)
    if efs_note is not None:
        return replace(_EFS, notes=(_EFS_NOTE,) if efs_note == _EFS_NOTE else (efs_note, _EFS_NOTE))
    vers = _nfs_version(mount)
    if vers is None:
        return _t("nfs", True, "maybe", "yes", "maybe", None, "NFS: version unknown")
    if vers == "4.2":
        # CLONE and xattrs are NFSv4.2 operations; the server must support them.
        return _t(
            "nfs",
            True,
            "maybe",
            "yes",
            "maybe",
            None,
            "NFSv4.2: reflink and user xattrs only if the server supports them",
        )
    # v2/v3/v4.0/v4.1: no CLONE op, FICLONE -> EOPNOTSUPP (fs/nfs/nfs4file.c); no xattrs.
    return _t("nfs", True, "no", "yes", "no", None, f"NFS v{vers}: no reflink, no user xattrs")


def _fuse(mount: Mount) -> Traits:
    fstype = mount.fstype
    if fstype == "fuseblk":
        # Block-device FUSE: ntfs-3g or exfat-fuse; the source is the device.
        return _t(
            "fuse-local",
            False,
            "no",
            "maybe",
            "maybe",
            None,
            "fuseblk: block-device FUSE (ntfs-3g, exfat-fuse)",
            fuse=True,
        )
    subtype = fstype.partition(".")[2]
    if not subtype and "#" in mount.source:  # old style: "sshfs#user@host:/dir"
        subtype = mount.source.partition("#")[0]
    if not subtype and mount.source in _FUSE_NETWORK.keys() | _FUSE_LOCAL.keys():
        subtype = mount.source
    if subtype in _FUSE_OWN_KIND:
        return _t(_FUSE_OWN_KIND[subtype], True, "no", "yes", "maybe", fuse=True)
    if subtype in _FUSE_LOCAL:
        hardlink, xattr, note = _FUSE_LOCAL[subtype]
        return _t("fuse-local", False, "no", hardlink, xattr, None, note, fuse=True)
    if subtype in _FUSE_NETWORK:
        hardlink, xattr, note = _FUSE_NETWORK[subtype]
        return _t("fuse-network", True, "no", hardlink, xattr, None, note, fuse=True)
    # Unknown subtype: assume network (fsfacts §1: "network unless the subtype is known
    # local").  Wrongly assuming local risks per-file probes blocking on a dead remote and
    # trusting faked st_nlink; wrongly assuming network only costs some speed.
    return _t(
        "fuse-network",
        True,
        "no",
        "maybe",
        "maybe",
        None,
        f"unknown FUSE subtype {subtype or '(none)'!r}: treated as a network filesystem",
        fuse=True,
    )


def _refine(mount: Mount, traits: Traits) -> Traits:
    """Adjust for mount options that switch a capability off or on."""
    if mount.option("nouser_xattr") is not None or mount.option("noxattr") is not None:
        traits = replace(traits, xattr="no")
    elif traits.xattr == "maybe" and (
        mount.option("user_xattr") is not None
        or (traits.kind == "zfs" and mount.option("xattr") is not None)
    ):
        traits = replace(traits, xattr="yes")
    if traits.kind == "9p" and (mount.option("aname") or "").startswith("drvfs"):
        traits = replace(
            traits,
            notes=(
                *traits.notes,
                "WSL2 drvfs: Windows drive over 9p; very slow metadata; linking a symlink"
                " to a directory fails with EISDIR",
            ),
        )
    if mount.read_only:
        traits = replace(traits, notes=(*traits.notes, "mounted read-only"))
    return traits


def classify(mount: Mount) -> Traits:
    """Static expectations for ``mount``, from its fstype, source and options only.

    >>> from linkstrategy._mounts import Mount
    >>> classify(Mount("/home", "btrfs", "/dev/sda2")).reflink
    'yes'
    """
    fstype = mount.fstype
    if fstype in ("nfs", "nfs4"):
        traits = _nfs(mount)
    elif fstype == "fuse" or fstype == "fuseblk" or fstype.startswith("fuse."):
        traits = _fuse(mount)
    elif fstype in _KERNEL:
        traits = _KERNEL[fstype]
    elif fstype in _PSEUDO:
        traits = _t(fstype, False, "no", "no", "no", None, "pseudo filesystem")
    else:
        traits = _t(fstype, False, "maybe", "maybe", "maybe", None, _UNKNOWN_NOTE)
    return _refine(mount, traits)
