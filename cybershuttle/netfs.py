"""Is a path on a network filesystem?

SQLite's WAL mode keeps its index in shared memory (the `-shm` file mapped by
every process), which only works when all of them run on one machine; on NFS,
Lustre, GPFS, SMB or a FUSE network mount, writers on two hosts corrupt the
database. The site catalog asks this module before it turns WAL on.

Two sources, both from the kernel: `statfs(2)`'s `f_type` for the path itself
(authoritative, follows every symlink and bind mount) and the mount table
(`/proc/self/mounts`) for a name, and to tell FUSE network mounts (sshfs,
glusterfs, s3fs, ...) from local FUSE ones.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

#: statfs f_type magic numbers of network and cluster filesystems (linux/magic.h and vendors').
NETWORK_MAGIC: dict[int, str] = {
    0x6969: "nfs",
    0x517B: "smb",
    0xFF534D42: "cifs",
    0xFE534D42: "smb2",
    0x0BD00BD0: "lustre",
    0x47504653: "gpfs",
    0x00C36400: "ceph",
    0x5346414F: "afs",
    0x6B414653: "afs",
    0x01021997: "9p",
    0x73757245: "coda",
    0x564C: "ncp",
    0x19830326: "beegfs",
    0xAAD7AAEA: "panfs",
}
FUSE_MAGIC = 0x65735546

#: Mount-table types that are network filesystems (FUSE ones appear as "fuse.NAME").
NETWORK_TYPES = {
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "ceph", "afs", "9p", "coda", "ncpfs",
    "beegfs", "panfs", "glusterfs", "ocfs2", "gfs2", "pvfs2", "orangefs", "davfs",
    "fuse.sshfs", "fuse.glusterfs", "fuse.s3fs", "fuse.rclone", "fuse.ceph-fuse", "fuse.ceph",
    "fuse.gcsfuse", "fuse.juicefs", "fuse.beegfs", "fuse.lustre", "fuse.davfs", "fuse.cvmfs2",
}

MOUNTS = Path("/proc/self/mounts")


def network_filesystem(path: str | os.PathLike[str]) -> str | None:
    """The network filesystem `path` (or its nearest existing parent) lives on, or None if local."""
    target = _existing(Path(path))
    mount_type = mount_type_of(target)
    if mount_type in NETWORK_TYPES:
        return mount_type
    magic = _statfs_type(target)
    if magic in NETWORK_MAGIC:
        return NETWORK_MAGIC[magic]
    # FUSE_MAGIC alone says nothing: sshfs is remote, a local overlay is not (the type above decided).
    return None


def mount_type_of(path: Path, mounts: str | None = None) -> str | None:
    """The mount table's type for the mount holding `path` (the longest matching mount point)."""
    try:
        text = MOUNTS.read_text() if mounts is None else mounts
    except OSError:
        return None
    real = os.path.realpath(path)
    best, best_type = "", None
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        # The mount table escapes spaces and tabs in paths as octal (\040).
        point = fields[1].encode().decode("unicode_escape")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, best_type = point, fields[2]
    return best_type


def _existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class _Statfs(ctypes.Structure):
    # struct statfs on 64-bit Linux: f_type first, which is all this module reads.
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 120)]


def _statfs_type(path: Path) -> int | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        buf = _Statfs()
        if libc.statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
            return None
        return buf.f_type & 0xFFFFFFFF
    except (OSError, AttributeError):  # not Linux/glibc: the mount table alone decides
        return None
