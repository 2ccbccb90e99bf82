"""`make status [HOST=]`: each host at a glance, read from the host itself.

Per host: each app's live release (commit, revision, since when, who made it live, by the host's
history), the releases kept for a rollback, its units' states and its answer through nginx as users
ask; each certificate's names and days left; the age of the newest dump per database and of the
newest offsite snapshot; the last drift check this machine ran; pending security updates; the use
of ``/`` and of the dump disk.

Usage: python -m cli.status INVENTORY [--host NAME|GROUP] [--format text|json]
Exit codes: 0 all well, 2 something needs attention (listed), 1 error (a host cannot be reached).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from datetime import UTC, datetime
from typing import Any

from cli.backups import Target, engine_json
from cli.history import hosts
from iac import drift_record
from iac.errors import ConfigError
from iac.host_run import read_history
from iac.paths import HOST
from operations.app.context import app_context
from operations.app.facts import http_check_command
from operations.tls.deploy import tls_domains
from operations.watch.deploy import watched_disks

OK, ERROR, ATTENTION = 0, 1, 2
def _section(marker: str, command: str) -> str:
    return f"echo '@@{marker}@@'; {command} 2>/dev/null || true"


def probe_script(target: Target) -> str:
    """One shell run on the host (as root) that prints every section ``parse`` reads."""
    config = target.config
    parts = []
    for name, app in config.apps.items():
        paths = config.app_paths(name)
        q = shlex.quote
        header = app_context(config, name, app)["host_header"]
        port = 443 if app.nginx.tls else app.nginx.port
        parts += [_section(f"deployed {name}", f"cat {q(paths.state_dir + '/deployed.json')}"),
                  _section(f"kept {name}", f"ls {q(paths.state_dir + '/built')}"),
                  _section(f"units {name}", f"systemctl is-active {q(app.unit + '.service')} {q(paths.socket_unit)}"),
                  _section(f"health {name}", http_check_command("/", header, port, app.nginx.tls, attempts=3))]
    for domain in tls_domains(config):
        chain = shlex.quote(HOST.tls_chain(domain))
        parts.append(_section(f"cert {domain}", f"openssl x509 -in {chain} -noout -enddate -ext subjectAltName"))
    parts.append(_section("disk", "df -P " + " ".join(shlex.quote(d) for d in watched_disks(config))))
    parts.append(_section("updates", "apt-get -s -o Debug::NoLocking=1 upgrade | grep -c '^Inst .*-security'"))
    return "; ".join(parts)


def parse(output: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        if line.startswith("@@") and line.endswith("@@"):
            current = line[2:-2]
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return sections


def _days_left(enddate: str, now: datetime) -> int | None:
    try:
        end = datetime.strptime(enddate.split("=", 1)[1].strip(), "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)
    except (IndexError, ValueError):
        return None
    return (end - now).days


def _time(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def made_live_by(history: list[dict[str, Any]], deployed_at: str | None) -> dict[str, Any] | None:
    """The history line of the run during which a release went live (it started before and ended
    after ``deployed_at``), or None (it went live before the history began)."""
    live = _time(deployed_at)
    if live is None:
        return None
    for record in reversed(history):
        start = _time(record.get("when"))
        if start is not None and start.timestamp() - 1 <= live.timestamp() <= start.timestamp() + float(
                record.get("seconds") or 0) + 1:
            return record
    return None


def host_status(target: Target, inventory: str, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    done = target.ssh(probe_script(target), timeout=300)
    if done.returncode == 255:
        raise ConfigError(f"{target.name}: cannot connect ({done.stderr.strip()[-200:]})")
    sections = parse(done.stdout)
    history = read_history(target.data, 200)
    attention: list[str] = []
    apps = {}
    for name in target.config.apps:
        deployed = json.loads("\n".join(sections.get(f"deployed {name}", [])) or "null") or {}
        kept = sorted(n.removesuffix(".json") for n in sections.get(f"kept {name}", []) if n.endswith(".json"))
        units = sections.get(f"units {name}", [])
        health = (sections.get(f"health {name}") or ["000"])[-1].strip()
        by = made_live_by(history, deployed.get("deployed_at"))
        apps[name] = {"commit": deployed.get("commit"), "revision": deployed.get("revision"),
                      "since": deployed.get("deployed_at"), "kept": len(kept), "units": units, "health": health,
                      "by": by and {k: by.get(k) for k in ("who", "when", "what")}}
        if not deployed:
            attention.append(f"{name}: no live release")
        if any(u != "active" for u in units) or len(units) < 2:
            attention.append(f"{name}: units {' '.join(units) or 'unknown'}")
        if health[:1] not in ("2", "3"):
            attention.append(f"{name}: answers HTTP {health} through nginx")
    certs = {}
    for domain in tls_domains(target.config):
        lines = sections.get(f"cert {domain}", [])
        end = next((x for x in lines if x.startswith("notAfter=")), "")
        names = sorted({n.strip().removeprefix("DNS:") for x in lines if "DNS:" in x for n in x.split(",")})
        days = _days_left(end, now)
        certs[domain] = {"names": names, "days_left": days}
        if days is None or days < target.config.watch.cert_days:
            attention.append(f"certificate {domain}: {'unreadable' if days is None else f'{days} days left'}")
    disks = {}
    for line in sections.get("disk", [])[1:]:
        cols = line.split()
        if len(cols) >= 6 and cols[4].endswith("%"):
            disks[cols[5]] = int(cols[4][:-1])
            if disks[cols[5]] > target.config.watch.disk_percent:
                attention.append(f"disk {cols[5]} {cols[4]} used")
    updates = int((sections.get("updates") or ["0"])[-1].strip() or 0)
    if updates:
        attention.append(f"{updates} security update(s) pending")
    backups = None
    if target.config.backups is not None:
        code, report, _ = engine_json(target, "status")
        if report is not None:
            backups = {"ok": report.get("ok"),
                       "dumps": {db: e.get("age_seconds") for db, e in report.get("databases", {}).items()},
                       "offsite": {n: e.get("age_seconds") for n, e in report.get("repositories", {}).items()},
                       "problems": report.get("problems", [])}
            attention += [f"backups: {p}" for p in report.get("problems", [])]
        else:
            attention.append("backups: status unavailable")
    drift = None
    record = drift_record.record_path(inventory)
    if record.exists():
        try:
            last = json.loads(record.read_text())
            drift = {"checked_at": last.get("checked_at"), "status": last.get("status"),
                     "items": sum(1 for d in last.get("drift", []) if d.get("host") == target.name)}
        except (OSError, json.JSONDecodeError):
            drift = None
    return {"host": target.name, "group": target.group, "apps": apps, "certificates": certs, "backups": backups,
            "last_drift": drift, "security_updates": updates, "disk_used_percent": disks, "attention": attention}


def text(s: dict[str, Any]) -> str:
    lines = [f"{s['host']} ({s['group']}): {'OK' if not s['attention'] else 'NEEDS ATTENTION'}"]
    for name, a in s["apps"].items():
        by = f", by {a['by']['who']} ({a['by']['what']})" if a["by"] else ""
        lines.append(f"  app   {name:<20} {str(a['commit'])[:12]} ({a['revision']}) since {a['since']}{by}; "
                     f"{a['kept']} kept; units {'/'.join(a['units'])}; nginx {a['health']}")
    for domain, c in s["certificates"].items():
        lines.append(f"  cert  {domain:<20} {c['days_left']} days left ({', '.join(c['names'])})")
    if s["backups"]:
        b = s["backups"]
        ages = ", ".join(f"{db} {age / 3600:.1f} h" for db, age in b["dumps"].items() if age is not None)
        off = ", ".join(f"{n} {age / 3600:.1f} h" for n, age in b["offsite"].items() if age is not None)
        lines.append(f"  dumps {ages or 'none'}; offsite {off or 'none'}")
    d = s["last_drift"]
    lines.append(f"  drift {d['status']} at {d['checked_at']} ({d['items']} here)" if d else
                 "  drift never checked from this machine (iac drift)")
    lines.append(f"  updates {s['security_updates']} security; disk "
                 + ", ".join(f"{m} {p}%" for m, p in s["disk_used_percent"].items()))
    lines += [f"  ! {a}" for a in s["attention"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.status", description=__doc__.split("\n\n")[0])
    parser.add_argument("inventory")
    parser.add_argument("--host", help="one host or group (default: all)")
    parser.add_argument("--format", choices=["text", "json"], default="text")
    args = parser.parse_args(argv)
    try:
        found = [host_status(Target(group, name, data), args.inventory)
                 for group, name, data in hosts(args.inventory, args.host)]
    except ConfigError as e:
        print(f"status: {e}", file=sys.stderr)
        return ERROR
    print(json.dumps({"hosts": found}, indent=2) if args.format == "json" else "\n".join(text(s) for s in found))
    return ATTENTION if any(s["attention"] for s in found) else OK


if __name__ == "__main__":
    sys.exit(main())
