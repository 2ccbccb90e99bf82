"""Configuration files a package's maintainer script installs through ucf (sshd_config,
unattended-upgrades' 20auto-upgrades and 50unattended-upgrades, ...): no package's file list
names them, but ucf records which package each belongs to and the md5 of the version the package
shipped, and keeps that version in its cache. A file that no longer has that md5 was changed on
the host: drift, unless this repository writes it (its own operation holds the content) or allows
it. The repair puts the cached version back (``restore``), after checking it still has that md5;
reinstalling the package would not (its maintainer script keeps a changed file, and fails on a
missing one)."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from .findings import Finding

UCF = Path(os.environ.get("IAC_UCF_DIR", "/var/lib/ucf"))


@functools.cache
def registry(root: Path | None = None) -> dict[str, str]:
    """path -> the package that installed it through ucf."""
    root = root or UCF
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
def hashes(root: Path | None = None) -> dict[str, str]:
    """path -> md5 of the version its package shipped (ucf's hashfile)."""
    root = root or UCF
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
            found.append(Finding("packages", path, "-", f"missing (package {package}, through ucf)", "restore",
                                 "ucf"))
            continue
        except OSError:
            got = ""
        if got != want:
            found.append(Finding("packages", path, "~", f"differs from package {package}'s (ucf)", "restore",
                                 "ucf"))
    return found


def cached(path: str, root: Path | None = None) -> Path:
    """ucf's copy of the version the package shipped (``/etc/ssh/sshd_config`` ->
    ``cache/:etc:ssh:sshd_config``)."""
    return (root or UCF) / "cache" / path.replace("/", ":")


def restore(path: str) -> None:
    """The package's version put back from ucf's cache, refused unless it has ucf's md5."""
    source = cached(path)
    data = source.read_bytes()
    if hashlib.md5(data).hexdigest() != hashes().get(path):  # noqa: S324
        raise RuntimeError(f"ucf's cached {path} is not the version ucf recorded: not restored")
    tmp = f"{path}.iac-new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
