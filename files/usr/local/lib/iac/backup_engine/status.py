"""How fresh the backups are (dumps, snapshots, units) and the one alert about a failed unit.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from datetime import datetime

from engine_common import alerts

from . import proc
from .dumps import checksum_ok, dumps_in, layout
from .offsite import latest_snapshot
from .proc import BackupError, log
from .settings import BackupSettings


def unit_state(unit: str) -> dict:
    props = "Result,ActiveState,ExecMainStatus,ExecMainExitTimestamp,UnitFileState"
    out = proc.run(["systemctl", "show", "-p", props, f"{unit}.service"]).stdout
    timer = proc.run(["systemctl", "show", "-p", "ActiveState,UnitFileState,LastTriggerUSec",
                 f"{unit}.timer"]).stdout
    svc = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    tmr = dict(line.split("=", 1) for line in timer.splitlines() if "=" in line)
    return {"unit": unit, "result": svc.get("Result"), "exit_status": svc.get("ExecMainStatus"),
            "last_run": svc.get("ExecMainExitTimestamp") or None,
            "timer_enabled": tmr.get("UnitFileState") == "enabled",
            "timer_active": tmr.get("ActiveState") == "active",
            "ok": svc.get("Result") == "success" and tmr.get("ActiveState") == "active"}


def elapse_interval(analyze_output: str) -> float | None:
    """Seconds between the first two elapses in `systemd-analyze calendar --iterations=2` output
    (the UTC lines when the host's zone is not UTC, else the elapse lines themselves). systemd 252
    (Debian 12) labels the second one "Iter. #2", systemd 257 (Debian 13) "Iteration #2"."""
    utc = re.findall(r"\(in UTC\): \w+ (\S+ \S+) UTC", analyze_output)
    local = re.findall(r"(?:Next elapse|Iter(?:\.|ation) #\d+): \w+ (\S+ \S+) \S+", analyze_output)
    times = utc if len(utc) >= 2 else local
    if len(times) < 2:
        return None
    a, b = (datetime.strptime(t, "%Y-%m-%d %H:%M:%S") for t in times[:2])
    return (b - a).total_seconds()


def schedule_seconds(expr: str) -> float:
    """Interval between the next two elapses of an OnCalendar= expression."""
    interval = elapse_interval(proc.run(["systemd-analyze", "calendar", "--iterations=2", expr]).stdout)
    if interval is None:
        raise BackupError(f"cannot read the schedule {expr!r} with systemd-analyze calendar")
    return interval


def status(settings: BackupSettings, now: float | None = None) -> dict:
    """Everything `make backup-status` reports; ``stale`` is older than twice the schedule."""
    now = now or time.time()
    local, lay = settings.local, layout(settings)
    limit = 2 * schedule_seconds(local.schedule)
    mounted = not local.mount or os.path.ismount(local.mount)
    report: dict = {"host": settings.host, "mount": local.mount, "mounted": mounted,
                    "databases": {}, "repositories": {}, "units": {}}
    problems: list[str] = []
    if not mounted:
        problems.append(f"{local.mount} is not mounted")
    names = list(local.databases) + (["globals"] if local.globals else [])
    for name in names:
        dumps = dumps_in(lay["globals"] if name == "globals" else lay["db"] / name) if mounted else []
        entry: dict = {"newest": None}
        if dumps:
            d = dumps[0]
            age = now - d.path.stat().st_mtime
            entry = {"newest": str(d.path), "age_seconds": round(age), "size": d.path.stat().st_size,
                     "sha256_ok": checksum_ok(d), "count": len(dumps),
                     "stale": age > (limit if name != "globals" else max(limit, 86400 * 2))}
            if not entry["sha256_ok"]:
                problems.append(f"{name}: newest dump fails its sha256 check")
            if entry["stale"]:
                problems.append(f"{name}: newest dump is {age / 3600:.1f} h old")
        else:
            problems.append(f"{name}: no dump")
        report["databases"][name] = entry
    for name, target in settings.offsite.items():
        entry = {"repository": target.repository, "tag": target.tag}
        try:
            snap = latest_snapshot(target)
        except (BackupError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
            entry["error"] = str(exc)
            problems.append(f"offsite {name}: {exc}")
        else:
            entry["newest"] = snap["time"] if snap else None
            if snap is None:
                problems.append(f"offsite {name}: no snapshot")
            else:
                taken = datetime.fromisoformat(re.sub(r"\.\d+", "", snap["time"]).replace("Z", "+00:00"))
                age = now - taken.timestamp()
                entry["age_seconds"] = round(age)
                entry["stale"] = age > 2 * schedule_seconds(target.schedule)
                if entry["stale"]:
                    problems.append(f"offsite {name}: newest snapshot is {age / 3600:.1f} h old")
        report["repositories"][name] = entry
    for unit in settings.units:
        st = unit_state(unit)
        report["units"][unit] = st
        if st["result"] not in ("success", None) or not st["timer_active"]:
            timer = "active" if st["timer_active"] else "INACTIVE"
            problems.append(f"unit {unit}: result {st['result']}, timer {timer}")
    report["problems"] = problems
    report["ok"] = not problems
    return report


# what a unit's failure means, for the units that are not an app's (whose failure is a crash loop)
FAILED = {"certbot.service": "Certificate renewal FAILED", "iac-watch.service": "Watch FAILED (an alert may be lost)"}


def alert_message(host: str, unit: str, detail: str, backup: bool = True) -> str:
    """One message about a failed unit: a backup unit's, or another unit's that names the alert
    unit in OnFailure= (an app's gunicorn after a crash loop, certbot's renewal, the watch)."""
    what = "Backup FAILED" if backup else FAILED.get(unit, "Unit FAILED (gave up restarting)")
    return (f"{what} on {host}: {unit}. {detail}".strip()
            + f"\nSee: journalctl -u {unit} -n 50 --no-pager")[:1900]


def cmd_alert(settings: BackupSettings, unit: str) -> int:
    url = os.environ.get("IAC_ALERT_WEBHOOK_URL")
    if not url:
        log("no webhook configured (backups.alerts); the failure is in the journal only")
        return 0
    result = proc.run(["systemctl", "show", "-p", "Result", "--value", unit]).stdout.strip()
    lines = proc.run(["journalctl", "-u", unit, "-n", "200", "--no-pager", "-o", "cat"]).stdout.splitlines()
    reason = next((line for line in reversed(lines) if line.startswith(("[iac-backup] ", "[iac-watch] "))), "")
    detail = f"Result: {result or 'failed'}. {reason.split('] ', 1)[-1] if reason else ''}"
    backup = unit.removesuffix(".service") in {u.removesuffix(".service") for u in settings.units}
    try:  # the repository's one alert client: retried after a rate limit or a server error
        alerts.post(url, alert_message(settings.host, unit, detail, backup), user_agent="iac-backup")
    except alerts.AlertFailed as e:  # the URL is a secret: the reason never carries it
        raise BackupError(f"alert for {unit} not sent: {e}") from None
    log(f"alert sent for {unit}")
    return 0
