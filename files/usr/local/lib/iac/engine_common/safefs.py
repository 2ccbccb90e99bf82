"""Root's records and the paths an app can write: root never follows, opens, renames,
removes or chowns a path an app user can create or replace, and never trusts a record the app
can write (the engines' one implementation)."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import stat
from pathlib import Path


class UnsafePath(Exception):
    """A path root was about to act on is not what it must be (a link, someone else's): refused.
    Each engine reports it as a failed step (exit 1)."""

    def __init__(self, path: Path | str, why: str) -> None:
        super().__init__(f"refusing to use {path}: {why} (planted by someone? nothing was done to it)")


def root_dir(path: Path, mode: int = 0o700) -> Path:
    """``path`` as a directory only root writes: made if missing; refused if it is a link, not a
    directory, not root's, or writable by group or others (someone may have planted something in
    it); a mode that is merely more readable is narrowed to ``mode``."""
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise UnsafePath(path, "not a directory of root's own")
    if st.st_mode & 0o022:
        raise UnsafePath(path, "writable by group or others")
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)
    return path


def read_record(path: Path) -> dict | None:
    """A JSON record root wrote into a root-only directory; None when there is none. A record that
    cannot be read is an error, never "nothing recorded"."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    with os.fdopen(fd) as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePath(path, "not a regular file")
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a record")
    return data


def write_record(path: Path, data: dict) -> None:
    """Write a record atomically into its root-only directory (0600, exclusive temporary name)."""
    root_dir(path.parent)
    tmp = path.with_name(f".{path.name}.new")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data, sort_keys=True) + "\n")
    os.replace(tmp, path)


def owned_dir(path: Path, uid: int) -> bool:
    """Whether ``path`` is a real directory (not a link) owned by ``uid``; False when missing."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid


def remove_owned_tree(path: Path, uid: int) -> bool:
    """Remove a directory tree root made for the app (a release, a virtualenv, a cache) only if it
    is a real directory of the app's user: shutil.rmtree walks it by file descriptors and never
    follows a link. Anything else at ``path`` is left alone (False)."""
    if not owned_dir(path, uid):
        return False
    shutil.rmtree(path)
    return True


def read_app_file(directory: Path, name: str) -> bytes | None:
    """A regular file's bytes in an app-writable directory, opened relative to that directory
    without following a link at either level, never a FIFO or a device; None when missing."""
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=dfd)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise UnsafePath(directory / name, f"cannot be opened without following a link ({e.strerror})") from e
    finally:
        os.close(dfd)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePath(directory / name, "not a regular file")
        return f.read()


def regular_file_source(path: str) -> Path:
    """A file root is about to copy from (an adopted or imported SQLite file): a regular file, not
    a link that would make root copy something else."""
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePath(path, "not a regular file")
    return Path(path)


def install_file(src: Path, target: Path, owner: str, mode: int = 0o640, sidecars: tuple[str, ...] = ()) -> list[str]:
    """Put a copy of ``src`` at ``target`` (in a directory its app can write), owned by ``owner``.

    Nothing in that directory is followed: the copy is written into a file root creates there
    exclusively (``O_EXCL|O_NOFOLLOW``, relative to a descriptor of the directory), owned and
    moded through its descriptor, then renamed over ``target`` (a rename replaces a link planted
    there instead of following it). The old file's ``sidecars`` (an SQLite file's journal, WAL and
    shared memory) are unlinked first (unlink removes a link, never its target): they would be
    replayed into the new file. Returns the names it unlinked."""
    try:
        pw = pwd.getpwnam(owner)
    except KeyError:
        raise UnsafePath(target, f"no user {owner!r} to own it") from None
    dfd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    tmp = ""
    try:
        for _ in range(20):
            tmp = f".{target.name}.restore-{os.urandom(6).hex()}"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                             dir_fd=dfd)
                break
            except FileExistsError:
                continue
        else:
            raise UnsafePath(target.parent, "no temporary file could be created in it")
        with open(src, "rb") as source, os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
            out.flush()
            os.fchown(out.fileno(), pw.pw_uid, pw.pw_gid)
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        removed = []
        for suffix in sidecars:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target.name + suffix, dir_fd=dfd)
                removed.append(target.name + suffix)
        os.rename(tmp, target.name, src_dir_fd=dfd, dst_dir_fd=dfd)
        tmp = ""
        os.fsync(dfd)
        return removed
    finally:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
        os.close(dfd)
