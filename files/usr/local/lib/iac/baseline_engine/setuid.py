"""Set-user-ID and set-group-ID files no package owns: a way back to root left behind."""

from __future__ import annotations

import os
import subprocess

from .findings import Finding
from .owners import owned
from .settings import BaselineSettings

# the trees an executable can be run from; the apps' release and virtualenv trees are theirs (a
# file there runs as the app at most: its units have RestrictSUIDSGID and NoNewPrivileges) and
# the database's and the caches' are data
ROOTS = ("/usr", "/etc", "/opt", "/root", "/home", "/srv", "/var", "/tmp", "/boot")
SKIP = ("/var/lib/postgresql", "/var/cache", "/var/log", "/srv/releases", "/srv/venvs", "/var/lib/iac/quarantine")


def start() -> subprocess.Popen:
    """find(1) over ROOTS, started so that it walks while the other checks run (a C walk, several
    times cheaper than Python's for the tens of thousands of files a host has)."""
    prune: list[str] = []
    for path in SKIP:
        prune += ["-path", path, "-o"]
    roots = [r for r in ROOTS if os.path.isdir(r)]
    return subprocess.Popen(["find", *roots, "-xdev", "(", *prune[:-1], ")", "-prune", "-o", "-type", "f",
                             "-perm", "/6000", "-print0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def candidates(walk: subprocess.Popen | None = None) -> list[str]:
    """Regular files with a set-ID bit under ROOTS (from ``walk``, or a walk of its own)."""
    out, _ = (walk or start()).communicate()
    return [p.decode("utf-8", "replace") for p in out.split(b"\0") if p]


def check(settings: BaselineSettings, walk: subprocess.Popen | None = None) -> list[Finding]:
    allowed = {a.path for a in settings.allowed}
    found = []
    for path in candidates(walk):
        if owned(path) or path in allowed:
            continue
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            continue
        kind = "set-user-ID" if mode & 0o4000 else "set-group-ID"
        found.append(Finding("setuid", path, "+", f"{kind} file no package owns", "quarantine"))
    return found
