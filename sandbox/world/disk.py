"""The LAN host's dump disk: an ext4 image loop-mounted on the machine and bound into the host,
detached and attached hot (``move_mount_into``) as a disk is unplugged and plugged in again."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

from .common import _LIBC, REPO, WorldError, run


class BackupDisk:
    """Making and mounting the dump disk, its UUID, and taking it from and giving it back to the host."""

    # The LAN host's dump disk (the runbook's WD Red at /mnt/pg_backups): an ext4 image of its
    # own, loop-mounted on the machine and bound into the host, so "disk missing" is real.
    BACKUP_DISK_MB = 512
    BACKUP_DISK_TARGET = "/mnt/pg_backups"

    @property
    def backup_disk_image(self) -> Path:
        return self.dir / "disks" / "pg_backups.img"

    @property
    def backup_disk_mount(self) -> Path:
        return self.dir / "mnt" / "lan-pg_backups"

    def ensure_backup_disk(self) -> None:
        """Made and formatted once (it holds data: never re-formatted), loop-mounted on the machine.

        The image is formatted under another name and renamed when done, so an image that exists
        is always a formatted one (a crash mid-way leaves only the ``.new`` file, in this
        sandbox's directory)."""
        img, mnt = self.backup_disk_image, self.backup_disk_mount
        if not img.exists():
            self.record("file", path=str(img))
            img.parent.mkdir(parents=True, exist_ok=True)
            new = img.with_name(img.name + ".new")
            with open(new, "wb") as f:
                f.truncate(self.BACKUP_DISK_MB * 1024 * 1024)  # sparse
            run(["mkfs.ext4", "-q", "-F", "-L", "pg_backups", str(new)])
            new.replace(img)
        if not os.path.ismount(mnt):
            self.record("mount", path=str(mnt))
            mnt.mkdir(parents=True, exist_ok=True)
            run(["mount", "-o", "loop", str(img), str(mnt)])

    def backup_disk_uuid(self) -> str:
        """The dump disk's filesystem UUID (what the LAN host's fstab line names)."""
        if not self.backup_disk_image.exists():
            raise WorldError(f"sandbox {self.name} has no dump disk ({self.backup_disk_image}): "
                             "run `make sandbox` (or `make sandbox-up`) first")
        return run(["blkid", "-s", "UUID", "-o", "value", str(self.backup_disk_image)]).stdout.strip()

    def detach_backup_disk(self) -> None:
        """The dump disk goes missing: /mnt/pg_backups in the LAN host is a plain (empty) directory
        again. The disk itself stays mounted on the machine, data intact."""
        t = self.BACKUP_DISK_TARGET
        self.ssh("lan", f"if mountpoint -q {t}; then umount {t}; fi; ! mountpoint -q {t}")

    def attach_backup_disk(self) -> None:
        """The disk is back with its data, hot (as when it is plugged in again): the machine's
        mount is put into the running LAN host's mount namespace at /mnt/pg_backups. A host that is
        not running gets it bound when it boots."""
        self.ensure_backup_disk()
        t = self.BACKUP_DISK_TARGET
        if self.ssh("lan", f"mountpoint -q {t}", check=False).returncode == 0:
            return
        code = ("import sys; from sandbox.world import move_mount_into; "
                "move_mount_into(sys.argv[1], int(sys.argv[2]), sys.argv[3])")
        pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        proc = subprocess.run(
            [sys.executable, "-c", code, str(self.backup_disk_mount), str(self.container_pid("lan")), t],
            capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": pythonpath})
        if proc.returncode != 0:
            raise WorldError(f"could not attach the dump disk to the LAN host: {proc.stderr.strip()}")
        self.ssh("lan", f"mountpoint -q {t}")


# the mount API's syscalls (Linux >= 5.2; the same numbers on every architecture but alpha)
_SYS_OPEN_TREE, _SYS_MOVE_MOUNT = 428, 429
_OPEN_TREE_CLONE, _AT_RECURSIVE, _AT_FDCWD = 1, 0x8000, -100
_MOVE_MOUNT_F_EMPTY_PATH, _CLONE_NEWNS = 0x4, 0x20000


def move_mount_into(source: str, pid: int, target: str) -> None:
    """Put a copy of the machine's mount at ``source`` onto ``target`` in the mount namespace of
    process ``pid`` (a container's init): what plugging a disk in does for the host. Call it in
    a process of its own: it leaves the machine's mount namespace for good."""
    def check(ret: int, what: str) -> int:
        if ret < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")
        return ret

    tree = check(_LIBC.syscall(_SYS_OPEN_TREE, _AT_FDCWD, source.encode(),
                               _OPEN_TREE_CLONE | _AT_RECURSIVE | os.O_CLOEXEC), f"open_tree {source}")
    ns = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    check(_LIBC.setns(ns, _CLONE_NEWNS), f"setns into the mount namespace of {pid}")
    check(_LIBC.syscall(_SYS_MOVE_MOUNT, tree, b"", _AT_FDCWD, target.encode(), _MOVE_MOUNT_F_EMPTY_PATH),
          f"move_mount onto {target}")
