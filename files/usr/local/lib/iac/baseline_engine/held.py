"""Files Debian's installer or a maintainer script writes (no package lists them, this repository
does not write them): held as the first converge found them. A later change is drift; a converge
puts the held copy back (the changed one goes to the quarantine). Its mode and owner are held too:
a held copy is kept root-only, and the file is put back as it was, never as the copy is kept."""

from __future__ import annotations

import difflib
import functools
import hashlib
import os
import pwd
import re
import shutil
import stat
import time
from pathlib import Path

from engine_common.safefs import install_file, read_record, root_dir, write_record

from . import ucf
from .findings import Finding
from .owners import owned
from .settings import BaselineSettings

# made by Debian's installer, debootstrap or a maintainer script (pam-auth-update, postgresql-common's
# pg_updateaptconfig, the kernel's postinst), listed by no package
CANDIDATES = ("/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf", "/etc/apt/sources.list",
              "/etc/apt/apt.conf.d/01autoremove-kernels", "/etc/apt/apt.conf.d/02autoremove-postgresql",
              "/etc/fstab", "/etc/environment", "/etc/pam.d/common-account",
              "/etc/pam.d/common-auth", "/etc/pam.d/common-password", "/etc/pam.d/common-session",
              "/etc/pam.d/common-session-noninteractive", "/etc/ld.so.conf.d/x86_64-linux-gnu.conf")


def held_paths(settings: BaselineSettings) -> list[str]:
    """The candidates present on the host that neither a package nor this repository declares."""
    declared = set(settings.files) | {a.path for a in settings.allowed}
    return [p for p in CANDIDATES if os.path.lexists(p) and p not in declared and not owned(p)
            and p not in ucf.registry()]


def category(path: str) -> str:
    """The place a held file belongs to, as the report names it."""
    if path in ("/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf"):
        return "resolver"
    for prefix, name in (("/etc/pam.d/", "login"), ("/etc/apt/", "apt"), ("/etc/ld.so", "libraries")):
        if path.startswith(prefix):
            return name
    return "held"


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def record_of(settings: BaselineSettings, path: str) -> Path:
    return Path(settings.state) / "held" / path.lstrip("/")


def _meta_of(record: Path) -> Path:
    return record.with_name(record.name + ".iac-stat")


def _stat_of(path: str) -> dict:
    st = os.lstat(path)
    return {"mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}


def _stat_change(held: dict | None, path: str) -> str:
    """How the file's mode and owner differ from the held ones ("" when they do not)."""
    if held is None:
        return ""
    now = _stat_of(path)
    parts = []
    if now["mode"] != held["mode"]:
        parts.append(f"mode {now['mode']:04o}, held {held['mode']:04o}")
    if (now["uid"], now["gid"]) != (held["uid"], held["gid"]):
        parts.append(f"owner {now['uid']}:{now['gid']}, held {held['uid']}:{held['gid']}")
    return "; ".join(parts)


DPKG_LOGS = (Path("/var/log/dpkg.log.1"), Path("/var/log/dpkg.log"))
_DPKG_LINE = re.compile(rb"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (\S+)")
SLACK = 2  # seconds: dpkg logs whole seconds


@functools.cache
def dpkg_runs(logs: tuple[Path, ...] | None = None) -> list[tuple[float, float]]:
    """(start, end) of each dpkg run its log records (host time, whole seconds): from a
    ``startup`` line to the last line before the next one. A maintainer script (pam-auth-update,
    pg_updateaptconfig) writes inside one."""
    runs: list[list[float]] = []
    for log in DPKG_LOGS if logs is None else logs:
        try:
            data = log.read_bytes()
        except OSError:
            continue
        for line in data.splitlines():
            m = _DPKG_LINE.match(line)
            if not m:
                continue
            try:
                at = time.mktime(time.strptime(m.group(1).decode(), "%Y-%m-%d %H:%M:%S"))
            except ValueError:
                continue
            if m.group(2) == b"startup" or not runs:
                runs.append([at, at])
            else:
                runs[-1][1] = max(runs[-1][1], at)
    return [(start, end) for start, end in runs]


def changed_by_dpkg(path: str, record: Path, runs: list[tuple[float, float]] | None = None) -> bool:
    """Whether the file last changed inside a dpkg run that began after it was held: a package's
    maintainer script rewrote it (an install or an upgrade), which is the host's own life, not drift:
    the check holds it anew (the held copy is the engine's own state, like its caches)."""
    try:
        changed, held_at = os.lstat(path).st_ctime, os.lstat(_meta_of(record)).st_mtime
    except OSError:
        return False
    if changed <= held_at:
        return False
    return any(start - SLACK <= changed <= end + SLACK and end + SLACK >= held_at
               for start, end in (dpkg_runs() if runs is None else runs))


def check(settings: BaselineSettings) -> list[Finding]:
    found = []
    for path in held_paths(settings):
        record = record_of(settings, path)
        if not record.is_file():
            if not os.path.islink(path):
                found.append(Finding(category(path), path, "-", "no held copy yet: the next converge holds it as it "
                                     "is now", "restore"))
        elif os.path.islink(path) or not os.path.isfile(path):
            target = os.readlink(path) if os.path.islink(path) else "something else"
            found.append(Finding(category(path), path, "~", f"replaced by a link to {target} since the converge that "
                                 "held it", "restore"))
        else:
            edited = _digest(path) != _digest(str(record))
            changed = ["changed since the converge that held it"] if edited else []
            meta = read_record(_meta_of(record))
            if meta is None and not edited:
                found.append(Finding(category(path), path, "-", "its mode and owner are not held yet: the next "
                                     "converge holds them as they are now", "restore"))
            elif moved := _stat_change(meta, path):
                changed.append(moved)
            if changed and meta is not None and changed_by_dpkg(path, record):
                _hold(settings, path, record)  # a maintainer script's: held anew as it is now
                continue
            if changed:
                found.append(Finding(category(path), path, "~", "; ".join(changed), "restore",
                                     diff=text_diff(record, Path(path)) if edited else ""))
    return found


def text_diff(old: Path, new: Path, limit: int = 40) -> str:
    """A unified diff of two small text files (at most ``limit`` lines), "" when either is not one.
    A line that looks like it sets a secret shows its name only."""
    try:
        if old.stat().st_size > 65536 or new.stat().st_size > 65536:
            return ""
        a, b = old.read_text().splitlines(), new.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return ""
    lines = [_masked(line) for line in difflib.unified_diff(a, b, "held", "now", n=1, lineterm="")][2:]
    return "\n".join(lines[:limit] + ([f"... {len(lines) - limit} more line(s)"] if len(lines) > limit else []))


_SECRET = re.compile(r"(?i)^([+\- ]\s*[^=:#]*(pass|secret|token|key)[^=:]*[=:])\s*\S.*$")


def _masked(line: str) -> str:
    return _SECRET.sub(r"\1 **********", line)


def record_missing(settings: BaselineSettings) -> list[str]:
    """Hold every candidate not held yet, as it is now (the converge does, after its repairs)."""
    made = []
    for path in held_paths(settings):
        record = record_of(settings, path)
        if not os.path.isfile(path) or os.path.islink(path):
            continue
        if not record.is_file():
            _hold(settings, path, record)
            made.append(path)
    return made


def _hold(settings: BaselineSettings, path: str, record: Path) -> None:
    """The file as it is now becomes the held copy (root's, 0600), its mode and owner beside it."""
    root_dir(Path(settings.state))
    record.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = record.with_name(f".{record.name}.new")
    tmp.unlink(missing_ok=True)
    shutil.copy2(path, tmp)
    os.chmod(tmp, 0o600)  # the copy is root's; the file's own mode and owner are held beside it
    os.replace(tmp, record)
    write_record(_meta_of(record), _stat_of(path))


def restore(settings: BaselineSettings, path: str) -> bool:
    """The held copy put back with its held mode and owner (True); with none yet, or nothing to put
    back, the file is held as it is now (False)."""
    record = record_of(settings, path)
    if not record.is_file():
        record_missing(settings)
        return False
    held = read_record(_meta_of(record))
    if held is None:  # a copy held before modes were: its mode and owner as they are now
        held = _stat_of(path) if os.path.isfile(path) and not os.path.islink(path) else \
            {"mode": 0o644, "uid": 0, "gid": 0}
        write_record(_meta_of(record), held)
    if os.path.isfile(path) and not os.path.islink(path) and _digest(path) == _digest(str(record)) \
            and not _stat_change(held, path):
        return False  # nothing to put back (its mode and owner are held now)
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isfile(path)):
        os.unlink(path)  # a link put in its place: the link goes (the caller kept it), the file comes back
    # written beside it and renamed over it, with the held mode and owner (never the copy's 0600)
    install_file(record, Path(path), pwd.getpwuid(held["uid"]).pw_name, held["mode"])
    os.chown(path, held["uid"], held["gid"], follow_symlinks=False)
    return True
