"""Filesystem classification from real (and a few constructed) mount tables.

Corpus: tests/data/mounttables/ (sources in each file's header or SOURCES.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from linkstrategy._classify import Traits, classify
from linkstrategy._mounts import (
    Mount,
    MountTableError,
    find_mount,
    parse_mount_table,
    parse_mountinfo,
    parse_proc_mounts,
)

DATA = Path(__file__).parent / "data" / "mounttables"


def _table(name: str) -> list[Mount]:
    return parse_mount_table((DATA / name).read_text(encoding="utf-8"))


def _at(name: str, mount_point: str) -> Mount:
    matches = [m for m in _table(name) if m.mount_point == mount_point]
    assert matches, f"{mount_point} not in {name}"
    return matches[-1]


def test_every_corpus_file_parses_and_classifies() -> None:
    files = sorted(DATA.glob("*.txt"))
    assert len(files) >= 14
    for f in files:
        table = _table(f.name)
        assert table, f.name
        for m in table:
            assert isinstance(classify(m), Traits)


# (file, mount point, kind, network, fuse, reflink, hardlink, xattr, max_links)
CASES = [
    ("nfs.txt", "/mnt/nfs3", "nfs", True, False, "no", "yes", "no", None),
    ("nfs.txt", "/mnt/nfs40", "nfs", True, False, "no", "yes", "no", None),
    ("nfs.txt", "/mnt/nfs41", "nfs", True, False, "no", "yes", "no", None),
    ("nfs.txt", "/mnt/nfs42", "nfs", True, False, "maybe", "yes", "maybe", None),
    ("nfs.txt", "/mnt/nfs4minor", "nfs", True, False, "maybe", "yes", "maybe", None),
    ("nfs.txt", "/mnt/nfs", "nfs", True, False, "no", "yes", "no", None),
    ("efs.txt", "/mnt/efs", "efs", True, False, "no", "yes", "no", 177),
    ("efs.txt", "/mnt/efs-az", "efs", True, False, "no", "yes", "no", 177),
    ("efs.txt", "/mnt/efs-cn", "efs", True, False, "no", "yes", "no", 177),
    ("efs.txt", "/mnt/efs-tls", "efs", True, False, "no", "yes", "no", 177),
    ("efs.txt", "/mnt/local-nfs", "nfs", True, False, "maybe", "yes", "maybe", None),
    ("efs.txt", "/mnt/efs-redacted", "nfs", True, False, "no", "yes", "no", None),
    ("smb.txt", "/mnt/ultimo", "cifs", True, False, "maybe", "maybe", "maybe", None),
    ("smb.txt", "/mnt/smb3", "cifs", True, False, "maybe", "maybe", "maybe", None),
    ("lustre.txt", "/lustre", "lustre", True, False, "no", "yes", "maybe", None),
    ("lustre.txt", "/pylon5", "lustre", True, False, "no", "yes", "yes", None),
    ("hpc.txt", "/lustre/scratch", "lustre", True, False, "no", "yes", "maybe", None),
    ("hpc.txt", "/gpfs/project", "gpfs", True, False, "no", "yes", "maybe", None),
    ("hpc.txt", "/mnt/beegfs", "beegfs", True, False, "no", "maybe", "maybe", None),
    ("hpc.txt", "/data disk", "xfs", False, False, "maybe", "yes", "yes", 2**31 - 1),
    ("hpc.txt", "/home", "nfs", True, False, "maybe", "yes", "maybe", None),
    ("gpfs_beegfs.txt", "/mnt/nobackup", "gpfs", True, False, "no", "yes", "maybe", None),
    ("gpfs_beegfs.txt", "/soft", "gpfs", True, False, "no", "yes", "maybe", None),
    ("gpfs_beegfs.txt", "/mnt/beegfs", "beegfs", True, False, "no", "maybe", "maybe", None),
    ("ceph.txt", "/mnt/cephfs", "cephfs", True, False, "no", "yes", "yes", None),
    ("ceph.txt", "/cephfs-share", "fuse-network", True, True, "no", "yes", "yes", None),
    ("fuse.txt", "/mnt/s3", "fuse-network", True, True, "no", "no", "maybe", None),
    ("fuse.txt", "/foo/bar/AA", "fuse-network", True, True, "no", "no", "no", None),
    ("fuse.txt", "/mnt/gluster", "glusterfs", True, True, "no", "yes", "maybe", None),
    (
        "fuse.txt",
        "/home/adrian/sshfs-grimlock",
        "fuse-network",
        True,
        True,
        "no",
        "maybe",
        "maybe",
        None,
    ),
    (
        "fuse.txt",
        "/home/jupyter/workspace/phonefm-data",
        "fuse-network",
        True,
        True,
        "no",
        "no",
        "no",
        None,
    ),
    ("fuse.txt", "/run/user/1000/gvfs", "fuse-network", True, True, "no", "no", "maybe", None),
    (
        "fuse.txt",
        "/home/u/.local/share/containers/storage/overlay/0f1e/merged",
        "fuse-local",
        False,
        True,
        "no",
        "maybe",
        "maybe",
        None,
    ),
    ("fuse.txt", "/media/Music", "fuse-local", False, True, "no", "maybe", "maybe", None),
    ("fuse.txt", "/var/lib/lxcfs", "fuse-local", False, True, "no", "no", "no", None),
    ("fuse.txt", "/mnt/mystery", "fuse-network", True, True, "no", "maybe", "maybe", None),
    ("wsl2.txt", "/mnt/c", "9p", True, False, "no", "maybe", "maybe", None),
    ("wsl2.txt", "/mnt/d", "9p", True, False, "no", "maybe", "maybe", None),
    ("wsl2.txt", "/mnt", "9p", True, False, "no", "maybe", "maybe", None),
    ("wsl2.txt", "/mnt/e", "virtiofs", True, False, "no", "yes", "maybe", None),
    (
        "wsl2.txt",
        "/mnt/wslg/versions.txt",
        "overlay",
        False,
        False,
        "maybe",
        "maybe",
        "maybe",
        None,
    ),
    ("wsl2.txt", "/var/lib/docker", "ext4", False, False, "no", "yes", "yes", 65000),
    ("wsl2.mountinfo.txt", "/mnt/my disk", "9p", True, False, "no", "maybe", "maybe", None),
    ("local.txt", "/", "ext4", False, False, "no", "yes", "yes", 65000),
    ("local.txt", "/tmp", "tmpfs", False, False, "no", "yes", "maybe", None),
    ("local.txt", "/data", "zfs", False, False, "maybe", "yes", "yes", None),
    ("local.txt", "/srv/xfs", "xfs", False, False, "maybe", "yes", "yes", 2**31 - 1),
    ("local.txt", "/boot/efi", "vfat", False, False, "no", "no", "no", None),
    ("local.txt", "/media/card", "exfat", False, False, "no", "no", "no", None),
    ("local.txt", "/srv/bcachefs", "bcachefs", False, False, "yes", "yes", "yes", None),
    ("local.txt", "/srv/ext3", "ext3", False, False, "no", "yes", "yes", None),
    ("local.txt", "/srv/noxattr", "ext4", False, False, "no", "yes", "no", 65000),
    (
        "docker_container.mountinfo.txt",
        "/",
        "overlay",
        False,
        False,
        "maybe",
        "maybe",
        "maybe",
        None,
    ),
    ("docker_container.mountinfo.txt", "/dev", "tmpfs", False, False, "no", "yes", "maybe", None),
    ("docker_container.mountinfo.txt", "/proc", "proc", False, False, "no", "no", "no", None),
    ("host_btrfs_autofs.mountinfo.txt", "/", "btrfs", False, False, "yes", "yes", "yes", 65535),
    (
        "host_btrfs_autofs.mountinfo.txt",
        "/proc/sys/fs/binfmt_misc",
        "autofs",
        False,
        False,
        "maybe",
        "maybe",
        "maybe",
        None,
    ),
    ("proc5_example.mountinfo.txt", "/mnt2", "ext3", False, False, "no", "yes", "yes", None),
]


@pytest.mark.parametrize(
    ("name", "point", "kind", "network", "fuse", "reflink", "hardlink", "xattr", "max_links"),
    CASES,
    ids=[f"{c[0]}:{c[1]}" for c in CASES],
)
def test_classify_corpus(
    name: str,
    point: str,
    kind: str,
    network: bool,
    fuse: bool,
    reflink: str,
    hardlink: str,
    xattr: str,
    max_links: int | None,
) -> None:
    t = classify(_at(name, point))
    got = (t.kind, t.network, t.fuse, t.reflink, t.hardlink, t.xattr, t.max_links)
    assert got == (kind, network, fuse, reflink, hardlink, xattr, max_links), t.notes


def test_efs_notes_name_the_limits() -> None:
    t = classify(_at("efs.txt", "/mnt/efs"))
    assert any("177" in n and "xattr" in n for n in t.notes)
    tls = classify(_at("efs.txt", "/mnt/efs-tls"))
    assert any("likely" in n and "20242" in n for n in tls.notes)


def test_efs_utils_port_outside_range_is_plain_nfs() -> None:
    m = Mount("/x", "nfs4", "127.0.0.1:/", mount_options=("vers=4.1", "port=21050"))
    assert classify(m).kind == "nfs"
    m = Mount("/x", "nfs4", "127.0.0.1:/", mount_options=("vers=4.1", "port=20049"))
    assert classify(m).kind == "efs"


def test_wsl_drvfs_note_and_unknown_fuse_note() -> None:
    assert any("WSL2 drvfs" in n for n in classify(_at("wsl2.txt", "/mnt/c")).notes)
    assert not any("drvfs" in n for n in classify(_at("wsl2.txt", "/mnt")).notes)
    assert any("somethingnew" in n for n in classify(_at("fuse.txt", "/mnt/mystery")).notes)


def test_old_style_fuse_source_names_the_subtype() -> None:
    t = classify(Mount("/mnt/r", "fuse", "sshfs#alice@host:/srv"))
    assert (t.kind, t.fuse, t.hardlink) == ("fuse-network", True, "maybe")
    assert classify(Mount("/mnt/r", "fuse", "s3fs")).hardlink == "no"


def test_unknown_kernel_fstype_is_all_maybe() -> None:
    t = classify(Mount("/mnt/x", "shinyfs", "/dev/sdz1"))
    assert (t.kind, t.network, t.reflink, t.hardlink, t.xattr) == (
        "shinyfs",
        False,
        "maybe",
        "maybe",
        "maybe",
    )


def test_read_only_mount_is_noted() -> None:
    assert "mounted read-only" in classify(_at("wsl2.txt", "/mnt/wslg/.X11-unix")).notes


# -- parser ---------------------------------------------------------------------


def test_octal_escapes_are_decoded() -> None:
    line = r"1 0 8:1 /a\134b /mnt/sp\040ace\011tab\012nl rw - ext4 /dev/x\040y rw"
    m = parse_mountinfo(line)[0]
    assert m.root == "/a\\b"
    assert m.mount_point == "/mnt/sp ace\ttab\nnl"
    assert m.source == "/dev/x y"
    m = parse_proc_mounts(r"/dev/x /mnt/a\040b ext4 rw 0 0")[0]
    assert m.mount_point == "/mnt/a b"


def test_optional_fields_present_and_absent() -> None:
    with_opt = parse_mountinfo("36 35 98:0 / /a rw shared:1 master:2 - ext4 /dev/r rw")[0]
    assert with_opt.optional_fields == ("shared:1", "master:2")
    assert (with_opt.fstype, with_opt.source, with_opt.super_options) == ("ext4", "/dev/r", ("rw",))
    without = parse_mountinfo("36 35 98:0 / /a rw - ext4 /dev/r rw")[0]
    assert without.optional_fields == ()
    assert without.fstype == "ext4"


def test_format_detection() -> None:
    assert _table("docker_container.mountinfo.txt")[0].mount_id == 473
    assert _table("nfs.txt")[0].mount_id is None
    assert parse_mount_table("") == []


def test_malformed_line_names_the_line() -> None:
    text = "36 35 98:0 / /a rw - ext4 /dev/r rw\n37 36 98:0 / /b rw no-separator-here\n"
    with pytest.raises(MountTableError, match=r"line 2.*no-separator-here"):
        parse_mountinfo(text)
    with pytest.raises(MountTableError, match="line 2"):
        parse_mountinfo("36 35 98:0 / /a rw - ext4 /dev/r rw\nx 36 98:0 / /b rw - ext4 /dev/r rw")
    with pytest.raises(MountTableError, match=r"line 1.*onlytwo"):
        parse_proc_mounts("onlytwo fields")


def test_non_utf8_bytes_survive_via_surrogateescape() -> None:
    raw = b"36 35 98:0 / /mnt/caf\xe9 rw - ext4 /dev/r rw\n"
    m = parse_mount_table(raw.decode("utf-8", "surrogateescape"))[0]
    assert m.mount_point.encode("utf-8", "surrogateescape") == b"/mnt/caf\xe9"


def test_stacked_mounts_last_one_wins() -> None:
    table = parse_mountinfo(
        "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
        "40 1 0:40 / /net rw - autofs systemd-1 rw,fd=5\n"
        "41 40 0:41 / /net rw - nfs4 srv:/net rw,vers=4.2\n"
    )
    assert find_mount("/net/a/b", table, local=False).fstype == "nfs4"


def test_longest_prefix_respects_component_boundaries() -> None:
    table = [Mount("/", "ext4", "/dev/sda1"), Mount("/mnt/a", "tmpfs", "tmpfs")]
    assert find_mount("/mnt/ab/file", table, local=False).fstype == "ext4"
    assert find_mount("/mnt/a/file", table, local=False).fstype == "tmpfs"
    assert find_mount("/mnt/a", table, local=False).fstype == "tmpfs"
    assert find_mount("/mnt/a/../ab", table, local=False).fstype == "ext4"


def test_corpus_space_mount_point_is_found() -> None:
    assert find_mount("/data disk/x", _table("hpc.txt"), local=False).fstype == "xfs"
    assert find_mount("/mnt/my disk/f", _table("wsl2.mountinfo.txt"), local=False).source == "D:\\"


# -- _mounts.py edge cases found while writing these tests (bugs, now fixed).


def test_empty_source_field_mountinfo() -> None:
    # `mount -t tmpfs "" /mnt/x`: the kernel prints an empty SOURCE (two spaces).
    m = parse_mountinfo("50 1 0:50 / /mnt/x rw,relatime - tmpfs  rw,size=1024k")[0]
    assert (m.source, m.super_options) == ("", ("rw", "size=1024k"))


def test_empty_source_field_proc_mounts() -> None:
    m = parse_proc_mounts(" /mnt/x tmpfs rw,relatime 0 0")[0]
    assert (m.source, m.mount_point, m.fstype) == ("", "/mnt/x", "tmpfs")


def test_leading_double_slash_path() -> None:
    table = [Mount("/", "ext4", "/dev/sda1"), Mount("/mnt/a", "tmpfs", "tmpfs")]
    assert find_mount("//mnt/a/f", table, local=False).fstype == "tmpfs"


def test_superblock_key_distinct_tmpfs_in_proc_mounts() -> None:
    a, b = parse_proc_mounts("tmpfs /run tmpfs rw 0 0\ntmpfs /tmp tmpfs rw 0 0")
    assert a.superblock_key != b.superblock_key
