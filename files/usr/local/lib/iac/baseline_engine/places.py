"""The places that decide how the host runs or who gets in, besides systemd's: every file there is
a package's (its content held by the package check), this repository's (held by its own
operation) or a declared local addition; anything else is drift, moved to the quarantine by a
converge."""

from __future__ import annotations

import glob
import os
import subprocess

from . import held, ucf
from .findings import Finding
from .owners import owned
from .settings import BaselineSettings

# category -> directories whose entries are checked (not recursively), and single files
PLACES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "sshd": (("/etc/ssh/sshd_config.d",), ()),
    "sudoers": (("/etc/sudoers.d",), ()),
    "cron": (("/etc/cron.d", "/etc/cron.hourly", "/etc/cron.daily", "/etc/cron.weekly", "/etc/cron.monthly",
              "/etc/cron.yearly", "/var/spool/cron/crontabs"), ("/etc/crontab",)),
    "apt": (("/etc/apt/sources.list.d", "/etc/apt/trusted.gpg.d", "/etc/apt/apt.conf.d", "/etc/apt/preferences.d",
             "/etc/apt/auth.conf.d"), ("/etc/apt/sources.list", "/etc/apt/trusted.gpg")),
    "libraries": (("/etc/ld.so.conf.d",), ("/etc/ld.so.preload",)),
    "login": (("/etc/pam.d", "/etc/profile.d", "/etc/security/limits.d"), ()),
    "resolver": ((), ("/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf")),
}


def _accepted(path: str, declared: set[str]) -> bool:
    """Declared, a package's (its content is the package check's), installed through ucf (ucf's
    check) or made by the installer or a maintainer script (held: a change is the held check's)."""
    return path in declared or owned(path) or path in ucf.registry() or path in held.CANDIDATES


def check(settings: BaselineSettings) -> list[Finding]:
    declared = set(settings.files) | {a.path for a in settings.allowed}
    found: list[Finding] = []
    for category, (dirs, singles) in PLACES.items():
        for d in dirs:
            try:
                entries = sorted(os.scandir(d), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    continue
                if not _accepted(entry.path, declared):
                    found.append(Finding(category, entry.path, "+", "not declared and no package's", "quarantine"))
        for path in singles:
            if os.path.lexists(path) and not _accepted(path, declared):
                found.append(Finding(category, path, "+", "not declared and no package's", "quarantine"))
    return found


def nginx(settings: BaselineSettings) -> list[Finding]:
    """Every file nginx loads (``nginx -T``) is a package's or declared."""
    try:
        out = subprocess.run(["nginx", "-T"], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    declared = set(settings.files) | {a.path for a in settings.allowed}
    loaded = [line.removeprefix("# configuration file ").rstrip(":") for line in out.splitlines()
              if line.startswith("# configuration file ")]
    found = []
    for path in loaded:
        real = os.path.realpath(path)
        if not (_accepted(path, declared) or _accepted(real, declared)):
            found.append(Finding("nginx", path, "+", "loaded by nginx: not declared and no package's",
                                 "quarantine"))
    return found


def postgres(settings: BaselineSettings) -> list[Finding]:
    """The cluster's own drop-ins and ALTER SYSTEM settings: none beyond the declared."""
    declared = set(settings.files) | {a.path for a in settings.allowed}
    found = []
    for path in sorted(glob.glob("/etc/postgresql/*/*/conf.d/*")):
        if not _accepted(path, declared):
            found.append(Finding("postgres", path, "+", "a settings drop-in of the cluster, not declared",
                                 "quarantine"))
    for path in sorted(glob.glob("/var/lib/postgresql/*/*/postgresql.auto.conf")):
        try:
            with open(path, errors="replace") as handle:
                lines = [line for line in handle if line.strip() and not line.startswith("#")]
        except OSError:
            continue
        if lines and path not in declared:
            names = sorted({line.split("=", 1)[0].strip() for line in lines if "=" in line})
            found.append(Finding("postgres", path, "~", f"ALTER SYSTEM settings: {', '.join(names)[:200]}",
                                 "reset-settings"))
    return found


def reset_postgres_settings() -> None:
    """``ALTER SYSTEM RESET ALL``: postgresql.auto.conf empty again (the caller kept a copy; the
    cluster reloads after)."""
    proc = subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-c", "ALTER SYSTEM RESET ALL"],
                          capture_output=True, text=True, check=False, cwd="/")
    if proc.returncode != 0:
        raise RuntimeError(f"ALTER SYSTEM RESET ALL failed: {proc.stderr.strip()[-300:]}")
