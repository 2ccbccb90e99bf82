"""The checks, one stage function each: every condition found now, as a ``Condition`` whose key
stays the same while the condition lasts (the dedup in state.py says each key once).

Everything read here (a certificate, the backup engine's report) is parsed with bounds and never
echoed beyond a short sanitized word."""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import time
from dataclasses import dataclass

from .settings import WatchSettings

TIMEOUT = 120  # seconds for one tool (the backup status asks restic about its snapshots)
_WORD = re.compile(r"[^A-Za-z0-9._:@/+-]")


@dataclass(frozen=True)
class Condition:
    """Something an operator must hear about: ``key`` names it (a new key is a new alert)."""

    key: str
    message: str


def word(text: str, limit: int = 80) -> str:
    """Host-read text as a short, harmless word (no markup, no mention, no newline)."""
    return _WORD.sub("?", str(text))[:limit]


def certificate_end(chain: str) -> tuple[float, str] | None:
    """(notAfter as a Unix time, serial in hex) of the first certificate in ``chain``; None when
    the file is missing or not a certificate."""
    try:
        out = subprocess.run(["openssl", "x509", "-in", chain, "-noout", "-enddate", "-serial"],
                             capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    fields = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    end, serial = fields.get("notAfter", ""), fields.get("serial", "")
    if out.returncode != 0 or not re.fullmatch(r"[0-9A-F]{1,64}", serial):
        return None
    try:
        return float(ssl.cert_time_to_seconds(end)), serial
    except ValueError:
        return None


def certificates(settings: WatchSettings, now: float) -> list[Condition]:
    """A served certificate with fewer than ``cert_days`` days left: certbot's renewal (30 days
    before the end) has not replaced it. Keyed by its serial: told once per certificate."""
    out = []
    for cert in settings.certificates:
        found = certificate_end(cert.chain)
        if found is None:
            out.append(Condition(f"cert:{cert.name}:unreadable",
                                 f"Certificate for {cert.name} on {settings.host}: {cert.chain} cannot be read "
                                 "(nginx serves it). See: certbot certificates"))
            continue
        end, serial = found
        days = (end - now) / 86400
        if days < settings.cert_days:
            state = "EXPIRED" if days < 0 else f"expires in {days:.1f} days"
            out.append(Condition(f"cert:{cert.name}:{serial}",
                                 f"Certificate for {cert.name} on {settings.host} {state} (serial {serial[:16]}, "
                                 f"alert below {settings.cert_days} days): its renewal has not replaced it. "
                                 "See: journalctl -u certbot.service -n 50; certbot renew"))
    return out


def disk_use(path: str) -> float:
    """Percent of ``path``'s file system in use, as df counts it (the root reserve is not free)."""
    st = os.statvfs(path)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    available = st.f_bavail * st.f_frsize
    return 100.0 * used / (used + available) if used + available else 0.0


def disks(settings: WatchSettings) -> list[Condition]:
    """A watched file system above ``disk_percent``: told once until it drops below."""
    out = []
    for path in settings.disks:
        if not os.path.ismount(path):
            continue  # the dump disk unmounted is the backup check's finding, not a full disk
        used = disk_use(path)
        if used > settings.disk_percent:
            out.append(Condition(f"disk:{path}", f"Disk {path} on {settings.host} is {used:.0f}% full "
                                                 f"(alert above {settings.disk_percent}%). See: du -xh {path} "
                                                 "--max-depth=2 | sort -h | tail"))
    return out


def backup_report(engine: str) -> dict:
    """The backup engine's own status report (its exit code 2 means "stale": still a report)."""
    out = subprocess.run(["python3", engine, "status"], capture_output=True, text=True, timeout=TIMEOUT,
                         check=False)
    if out.returncode not in (0, 2):
        raise RuntimeError(f"the backup engine's status failed (exit {out.returncode})")
    report = json.loads(out.stdout)
    if not isinstance(report, dict):
        raise RuntimeError("the backup engine's status is not a report")
    return report


def backups(settings: WatchSettings) -> list[Condition]:
    """Backups that stopped arriving: a database whose newest dump is stale or missing, an offsite
    repository whose newest snapshot is stale, a backup timer that no longer runs. A failed backup
    run has its own alert (its unit's OnFailure=); this catches what fails silently."""
    if not settings.backup_engine:
        return []
    report = backup_report(settings.backup_engine)
    out = []
    host = settings.host
    units = report.get("units") or {}
    # before the backup units' first run (a host just built) no dump is expected yet
    started = any(isinstance(u, dict) and u.get("last_run") for u in units.values())
    if report.get("mounted") is False:
        out.append(Condition("backup:mount", f"Backups on {host}: the dump disk {word(report.get('mount'))} is not "
                                             "mounted. See: findmnt; journalctl -b | grep -i mount"))
    for name, entry in (report.get("databases") or {}).items():
        if not isinstance(entry, dict) or report.get("mounted") is False:
            continue
        if (entry.get("newest") is None and started) or entry.get("stale"):
            age = entry.get("age_seconds")
            what = "has no dump" if entry.get("newest") is None else f"newest dump is {int(age or 0) / 3600:.1f} h old"
            out.append(Condition(f"backup:db:{word(name)}", f"Backups on {host} are STALE: {word(name)} {what}. "
                                                            "See: iac backup-status"))
    for name, entry in (report.get("repositories") or {}).items():
        if not isinstance(entry, dict):
            continue
        if entry.get("error"):  # restic's own words stay in the journal (iac backup-status shows them)
            out.append(Condition(f"backup:offsite:{word(name)}:unreadable",
                                 f"Offsite backups on {host}: the repository {word(name)} cannot be read. "
                                 "See: iac backup-status"))
        elif entry.get("stale") or (entry.get("newest", "") is None and started):
            out.append(Condition(f"backup:offsite:{word(name)}",
                                 f"Offsite backups on {host} are STALE: {word(name)} "
                                 f"{'has no snapshot' if entry.get('newest') is None else 'newest snapshot is old'}. "
                                 "See: iac backup-status"))
    for unit, entry in units.items():
        if isinstance(entry, dict) and not entry.get("timer_active"):
            out.append(Condition(f"backup:timer:{word(unit)}", f"Backups on {host}: the timer {word(unit)}.timer is "
                                                               "not running. See: systemctl status "
                                                               f"{word(unit)}.timer"))
    return out


def all_conditions(settings: WatchSettings, now: float | None = None) -> list[Condition]:
    """Every check, in the order the report lists them."""
    now = time.time() if now is None else now
    return certificates(settings, now) + disks(settings) + backups(settings)
