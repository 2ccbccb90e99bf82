"""Configuration files a package's maintainer script installs through ucf (sshd_config,
unattended-upgrades' 20auto-upgrades and 50unattended-upgrades, ...): no package's file list
names them, but ucf records which package each belongs to and the md5 of the version the package
shipped. A file that no longer has that md5 was changed on the host: drift, unless this
repository writes it (its own operation holds the content) or allows it."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from .findings import Finding

UCF = Path(os.environ.get("IAC_UCF_DIR", "/var/lib/ucf"))


@functools.cache
def registry(root: Path = UCF) -> dict[str, str]:
    """path -> the package that installed it through ucf."""
    out = {}
    try:
        for line in (root / "registry").read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].startswith("/"):
                out[parts[1]] = parts[0]
    except OSError:
        pass
    return out


@functools.cache
def hashes(root: Path = UCF) -> dict[str, str]:
    """path -> md5 of the version its package shipped (ucf's hashfile)."""
    out = {}
    try:
        for line in (root / "hashfile").read_text().splitlines():
            digest, _, path = line.partition("  ")
            if len(digest) == 32 and path.startswith("/"):
                out[path] = digest
    except OSError:
        pass
    return out


def check(declared: set[str]) -> list[Finding]:
    found = []
    for path, package in sorted(registry().items()):
        want = hashes().get(path)
        if path in declared or want is None:
            continue
        try:
            with open(path, "rb") as f:
                got = hashlib.md5(f.read()).hexdigest()  # noqa: S324 (ucf's own digest)
        except FileNotFoundError:
            found.append(Finding("packages", path, "-", f"missing (package {package}, through ucf)", "reinstall",
                                 package))
            continue
        except OSError:
            got = ""
        if got != want:
            found.append(Finding("packages", path, "~", f"differs from package {package}'s (ucf)", "reinstall",
                                 package))
    return found
