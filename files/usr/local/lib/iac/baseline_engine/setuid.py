"""Set-user-ID and set-group-ID files no package owns: a way back to root left behind.

Fast without trusting a file's own word: a directory's ``ctime`` moves whenever an entry in it is
made, removed or renamed (and only the kernel sets it), so a directory whose ``(inode, ctime,
mtime)`` is the one the last check recorded holds the same entries. The walk reads again only the
directories that moved; elsewhere it ``lstat``s the directories and, in each, the regular files no
package owns (a ``chmod u+s`` moves only the file's own ``ctime``, never its directory's). A
package's own files are the package check's (dpkg's checksums), as before. The record is root's
own (0600, in the baseline's 0700 state directory); one that cannot be read is a cold walk.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from engine_common.safefs import read_record, write_record

from .findings import Finding
from .owners import owned
from .settings import BaselineSettings

# the trees an executable can be run from; the apps' release and virtualenv trees are theirs (a
# file there runs as the app at most: its units have RestrictSUIDSGID and NoNewPrivileges) and
# the database's and the caches' are data
ROOTS = ("/usr", "/etc", "/opt", "/root", "/home", "/srv", "/var", "/tmp", "/boot")
SKIP = frozenset({"/var/lib/postgresql", "/var/cache", "/var/log", "/srv/releases", "/srv/venvs",
                  "/var/lib/iac/quarantine"})
RECORD_VERSION = 1


def _record_of(settings: BaselineSettings) -> Path:
    return Path(settings.state) / "setuid-walk.json"


def _load(path: Path) -> dict[str, list]:
    try:
        data = read_record(path)
    except (OSError, ValueError):
        return {}
    if not data or data.get("version") != RECORD_VERSION or not isinstance(data.get("dirs"), dict):
        return {}
    return data["dirs"]


def candidates(record: Path, roots: tuple[str, ...] = ROOTS, skip: frozenset[str] = SKIP) -> list[str]:
    """Regular files with a set-ID bit under ``roots`` (each on its own filesystem, as ``find -xdev``)
    that no package owns, walking again only the directories that moved since the last walk."""
    old, new = _load(record), {}
    found: list[str] = []
    for root in roots:
        try:
            device = os.lstat(root).st_dev
        except OSError:
            continue
        stack = [root]
        while stack:
            directory = stack.pop()
            try:
                st = os.lstat(directory)
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode) or st.st_dev != device:
                continue
            key = [st.st_ino, st.st_ctime_ns, st.st_mtime_ns]
            cached = old.get(directory)
            if cached is not None and cached[:3] == key:
                subdirs, files = cached[3], cached[4]
            else:
                subdirs, files = _read(directory, skip)
                if cached is not None and cached[3:] == [subdirs, files]:
                    key = cached[:3]  # moved, same entries (a temporary file came and went): read again next time
            new[directory] = [*key, subdirs, files]
            prefix = directory if directory.endswith("/") else directory + "/"  # (os.path.join: a third of the time)
            stack.extend(prefix + name for name in subdirs)
            for name in files:
                path = prefix + name
                try:
                    mode = os.lstat(path).st_mode
                except OSError:
                    continue
                if stat.S_ISREG(mode) and mode & 0o6000:
                    found.append(path)
    if new != old:  # only when entries changed: a busy directory is read again instead of the record written
        write_record(record, {"version": RECORD_VERSION, "dirs": new})
    return found


def _read(directory: str, skip: frozenset[str]) -> tuple[list[str], list[str]]:
    """A directory's subdirectories (not ``skip``) and the entries in it no package owns."""
    subdirs, files = [], []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return [], []
    for entry in entries:
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            continue
        if is_dir:
            if entry.path not in skip:
                subdirs.append(entry.name)
        elif entry.is_file(follow_symlinks=False) and not owned(entry.path):
            files.append(entry.name)  # a link or a device made a file later is a rename: its directory moves
    return sorted(subdirs), sorted(files)


def check(settings: BaselineSettings) -> list[Finding]:
    allowed = {a.path for a in settings.allowed}
    found = []
    # the baseline's own state directory (root's, 0700) changes on every check: never walked
    for path in candidates(_record_of(settings), skip=SKIP | {settings.state}):
        if owned(path) or path in allowed:
            continue
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            continue
        kind = "set-user-ID" if mode & 0o4000 else "set-group-ID"
        found.append(Finding("setuid", path, "+", f"{kind} file no package owns", "quarantine"))
    return found
