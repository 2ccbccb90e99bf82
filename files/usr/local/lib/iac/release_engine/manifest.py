"""What a release is made of (its manifest) and what differs from it (``verify``)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from engine_common.safefs import owned_dir

from .records import Records


def _entry(name: str, dir_fd: int) -> str:
    """What a manifest records of one directory entry, read relative to its directory's
    descriptor: sha256 of a regular file (opened without following a link, never blocking on a
    FIFO), '-> target' of a link, the kind of anything else."""
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if stat.S_ISLNK(st.st_mode):
        return "-> " + os.readlink(name, dir_fd=dir_fd)
    if not stat.S_ISREG(st.st_mode):
        return "special: " + ("fifo" if stat.S_ISFIFO(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode)
                              else "device")
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "special: replaced while read"
        digest = hashlib.sha256()
        while chunk := f.read(1 << 20):
            digest.update(chunk)
        return digest.hexdigest()


def release_manifest(release: Path) -> dict[str, str]:
    """Every file of a release by relative path: sha256 of a regular file, '-> target' of a link
    (the virtualenv and node_modules links are not followed), the kind of a FIFO, socket or
    device (never opened). Walked by descriptors (os.fwalk): a directory the app swaps for a link
    meanwhile is not followed. Bytecode caches (written whenever Python imports) are left out."""
    found: dict[str, str] = {}
    for root, dirs, files, root_fd in os.fwalk(release, follow_symlinks=False):
        rel = Path(root).relative_to(release)
        for d in list(dirs):
            if stat.S_ISLNK(os.stat(d, dir_fd=root_fd, follow_symlinks=False).st_mode):
                found[str(rel / d)] = _entry(d, root_fd)
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and str(rel / d) not in found)
        for name in files:
            if not name.endswith(".pyc"):
                found[str(rel / name)] = _entry(name, root_fd)
    return found


def manifest_differences(recorded: dict[str, str], now: dict[str, str], limit: int = 10) -> list[str]:
    """What differs, one line each (at most ``limit`` lines, then a count)."""
    lines = [f"changed: {p}" for p in sorted(recorded) if p in now and now[p] != recorded[p]]
    lines += [f"missing: {p}" for p in sorted(recorded) if p not in now]
    lines += [f"added: {p}" for p in sorted(now) if p not in recorded]
    return lines[:limit] + ([f"... and {len(lines) - limit} more"] if len(lines) > limit else [])


def venv_packages(venv: Path) -> list[str]:
    """The distributions installed in a virtualenv (their .dist-info directories)."""
    return sorted(p.name.removesuffix(".dist-info") for p in venv.glob("lib/python3*/site-packages/*.dist-info"))


def damage(release: Path, records: Records, uid: int) -> list[str]:
    """What differs in a release from what went live: its files (against the manifest root
    recorded then) and its virtualenv's distributions (against those installed when it was
    built). The virtualenv is the one root recorded for the release, never where the release's
    own link points (the manifest holds the link: a changed link is a changed file)."""
    built = records.built(release.name)
    # a release made before root kept records (or whose record is gone) cannot be checked: it is
    # rebuilt once (trusting what is on disk now would take any damage for the truth)
    if not built or built.get("manifest") is None:
        return ["no record of the release's files: it is rebuilt"]
    if not owned_dir(release, uid):
        return [f"release directory missing or replaced: {release}"]
    problems = manifest_differences(built["manifest"], release_manifest(release))
    venv = Path(built["venv"])
    record = records.venv(venv)
    if not owned_dir(venv, uid) or not (venv / "bin/python").exists():
        problems.append(f"virtualenv missing: {venv}")
    elif record is None:
        problems.append("virtualenv: no record of its packages")
    else:
        want, have = record["packages"], venv_packages(venv)
        problems += [f"virtualenv: {d} missing" for d in want if d not in have]
        problems += [f"virtualenv: {d} added" for d in have if d not in want]
    return problems
