"""What Debian's packages put on the host: every path a package owns (dpkg's .list files) and the
unit links packages enable (deb-systemd-helper's record), read once per check."""

from __future__ import annotations

import functools
import os
from pathlib import Path

DPKG_INFO = Path(os.environ.get("IAC_DPKG_INFO", "/var/lib/dpkg/info"))
DIVERSIONS = Path(os.environ.get("IAC_DPKG_DIVERSIONS", "/var/lib/dpkg/diversions"))
DSH_ENABLED = Path(os.environ.get("IAC_DSH_ENABLED", "/var/lib/systemd/deb-systemd-helper-enabled"))


@functools.cache
def package_paths(info: Path = DPKG_INFO) -> frozenset[str]:
    """Every path an installed package owns (files, directories, links), diversions included."""
    found: set[str] = set()
    for entry in os.scandir(info):
        if entry.name.endswith(".list"):
            with open(entry.path, "rb") as f:  # one decode and split per file: 4x faster than line by line
                found.update(f.read().decode("utf-8", "replace").split("\n"))
    found.discard("")
    found.discard("/.")
    try:  # three lines per diversion: the path, where it was diverted to, the package
        lines = DIVERSIONS.read_text().splitlines()
        found.update(lines[i + 1] for i in range(0, len(lines) - 2, 3))
    except OSError:
        pass
    return frozenset(found)


def owned(path: str) -> bool:
    """Whether a package owns ``path`` (its /usr-merged twin counts: /lib is /usr/lib on Debian 12)."""
    paths = package_paths()
    if path in paths:
        return True
    for short, long in (("/lib/", "/usr/lib/"), ("/bin/", "/usr/bin/"), ("/sbin/", "/usr/sbin/")):
        if path.startswith(short) and long + path[len(short):] in paths:
            return True
        if path.startswith(long) and short + path[len(long):] in paths:
            return True
    return False


@functools.cache
def package_enabled(root: Path = DSH_ENABLED) -> frozenset[str]:
    """The unit links packages made (``<target>.wants/<unit>``, and aliases by name), as
    deb-systemd-helper records them when a package's maintainer script enables a unit."""
    found: set[str] = set()
    if not root.is_dir():
        return frozenset()
    for dirpath, _dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in files:
            if name.endswith(".dsh-also"):
                # what enabling the unit also made: one path per line (links under /etc/systemd/system)
                try:
                    for line in Path(dirpath, name).read_text().splitlines():
                        if line.startswith("/etc/systemd/system/"):
                            found.add(line.removeprefix("/etc/systemd/system/"))
                except OSError:
                    pass
            else:
                found.add(name if rel == "." else f"{rel}/{name}")
    return frozenset(found)
