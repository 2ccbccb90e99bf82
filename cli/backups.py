"""Backup commands for an operator or CI: status, run now, restore, restore drill.

Each command loads an inventory (validated, as a run would), finds the hosts that declare backups
and runs the host engine (``/usr/local/sbin/iac-backup``, files/usr/local/lib/iac/iac_backup.py)
over SSH with the inventory's connection details. Output is the engine's JSON, or a short text
summary of it.

Usage: python -m cli.backups INVENTORY status [--format text|json] [--limit GROUP]
       python -m cli.backups INVENTORY now [--what dumps|offsite|system-state|all]
       python -m cli.backups INVENTORY restore --db NAME [--from local|offsite] [--at TIME] [--yes]
       python -m cli.backups INVENTORY drill [--format text|json]

Exit codes (status and drill): 0 all fresh / equal, 2 something stale, failed or different,
1 error (invalid configuration, unreachable host).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.validate import load_inventory
from iac.errors import ConfigError
from iac.host_run import held
from iac.ssh import run_as_root
from operations.app.context import app_context
from operations.app.facts import http_check_command
from operations.backups.deploy import OPERATOR_COMMAND, offsite_targets
from operations.host import HostConfig

OK, ERROR, STALE = 0, 1, 2


@dataclass
class Target:
    group: str
    name: str
    data: dict[str, Any]

    @property
    def config(self) -> HostConfig:
        return self.data["config"]

    @property
    def production(self) -> bool:
        return self.data.get("stack") == "production"

    def ssh(self, command: str, timeout: float = 3600, stream: bool = False,
            input: str = "") -> subprocess.CompletedProcess:  # noqa: A002
        """Run ``command`` on the host as root (through sudo where the inventory says so), reading
        ``input`` on its stdin."""
        return run_as_root(self.data, command, timeout, stream, input=input)


def targets(inventory: str, limit: str | None = None) -> list[Target]:
    groups = load_inventory(Path(inventory))
    found = [Target(g, name, data) for g, hosts in groups.items() for name, data in hosts
             if data["config"].backups is not None]
    if limit:
        found = [t for t in found if limit in (t.group, t.name)]
    if not found:
        raise ConfigError(f"{inventory}: no host{' ' + limit if limit else ''} declares backups")
    return found


def target_of_db(inventory: str, db: str) -> Target:
    """The host that backs up database ``db`` (restore, list), or an error naming the known ones."""
    found = targets(inventory)
    hosts = [t for t in found if db in t.config.backup_databases()]
    if not hosts:
        known = sorted({d for t in found for d in t.config.backup_databases()})
        raise ConfigError(f"DB={db!r} is not a backed-up database of {inventory}; known: {', '.join(known)}")
    return hosts[0]


def engine_json(target: Target, args: str) -> tuple[int, dict | None, str]:
    proc = target.ssh(f"{OPERATOR_COMMAND} {args}")
    if proc.returncode == 255:
        raise ConfigError(f"{target.name}: cannot connect ({proc.stderr.strip()[-200:]})")
    try:
        return proc.returncode, json.loads(proc.stdout), proc.stderr
    except json.JSONDecodeError:
        return proc.returncode, None, proc.stderr


# ---- status ----------------------------------------------------------------------------------

def status_text(report: dict) -> str:
    lines = [f"{report['host']}: {'OK' if report['ok'] else 'PROBLEMS'}"]
    for db, e in report["databases"].items():
        if e.get("newest"):
            lines.append(f"  dump  {db:<28} {e['age_seconds'] / 3600:6.1f} h old  {e['size']:>10} bytes  "
                         f"sha256 {'ok' if e['sha256_ok'] else 'MISMATCH'}  ({e['count']} kept)")
        else:
            lines.append(f"  dump  {db:<28} none")
    for name, e in report["repositories"].items():
        when = f"{e['age_seconds'] / 3600:6.1f} h old" if e.get("age_seconds") is not None else e.get("error", "none")
        lines.append(f"  restic {name:<27} {when}  {e['repository']}")
    for unit, u in report["units"].items():
        lines.append(f"  unit  {unit:<28} last result {u['result']}, timer "
                     f"{'active' if u['timer_active'] else 'INACTIVE'}")
    lines += [f"  ! {p}" for p in report["problems"]]
    return "\n".join(lines)


def cmd_status(inventory: str, fmt: str, limit: str | None) -> int:
    reports, worst = [], OK
    for t in targets(inventory, limit):
        code, report, err = engine_json(t, "status")
        if report is None:
            print(f"{t.name}: backup status unavailable: {err.strip()[-300:]}", file=sys.stderr)
            return ERROR
        reports.append(report)
        worst = max(worst, STALE if code != 0 else OK)
    if fmt == "json":
        print(json.dumps({"ok": worst == OK, "hosts": reports}, indent=2))
    else:
        print("\n".join(status_text(r) for r in reports))
    return worst


# ---- now -------------------------------------------------------------------------------------

def units_for(config: HostConfig, what: str) -> list[str]:
    b = config.backups
    assert b is not None
    units = []
    if what in ("dumps", "all"):
        units.append(b.local.unit)
    for name, t in offsite_targets(b).items():
        if (what in ("offsite", "all") and name == "postgres") or (
                what in ("system-state", "all") and name == "system_state"):
            units.append(t.unit)
    return units


def cmd_now(inventory: str, what: str, limit: str | None) -> int:
    failed = []
    for t in targets(inventory, limit):
        for unit in units_for(t.config, what):
            started = time.monotonic()
            # a oneshot service: start waits for the run to end and fails with it
            proc = t.ssh(f"systemctl start {shlex.quote(unit + '.service')}")
            took = time.monotonic() - started
            if proc.returncode == 0:
                print(f"{t.name}: {unit} succeeded in {took:.1f}s")
            else:
                failed.append(f"{t.name}: {unit}")
                log = t.ssh(f"journalctl -u {shlex.quote(unit + '.service')} -n 5 --no-pager -o cat").stdout
                print(f"{t.name}: {unit} FAILED after {took:.1f}s\n{log}", file=sys.stderr)
    return STALE if failed else OK


# ---- restore ---------------------------------------------------------------------------------

def app_answers(target: Target, units: list[str]) -> list[str]:
    """The apps whose unit was restarted, asked through nginx as users ask: failures."""
    bad = []
    for name, app in target.config.apps.items():
        if app.unit not in units:
            continue
        header = app_context(target.config, name, app)["host_header"]
        port = 443 if app.nginx.tls else app.nginx.port
        code = target.ssh(http_check_command("/", header, port, app.nginx.tls, attempts=30)).stdout.strip()
        print(f"{target.name}: {name} through nginx ({header}:{port}) answers HTTP {code}")
        if code[:1] not in ("2", "3"):
            bad.append(name)
    return bad


def cmd_restore(inventory: str, db: str, source: str, at: str | None, yes: bool) -> int:
    t = target_of_db(inventory, db)
    if t.production and not yes:
        if not sys.stdin.isatty():
            print("restore on production: confirm interactively or pass --yes (CONFIRM=yes)", file=sys.stderr)
            return ERROR
        print(f"Restore {db} on {t.name} from the {source} dump {'taken at or before ' + at if at else '(newest)'}. "
              "Rows written since that dump are lost (a safety dump is taken first).")
        if input("Type the database name to go on: ").strip() != db:
            print("not confirmed; nothing changed", file=sys.stderr)
            return ERROR
    args = f"restore {shlex.quote(db)} --from {source}" + (f" --at {shlex.quote(at)}" if at else "")
    started = time.monotonic()
    with held(t.name, t.data, f"restore {db} from {source}" + (f" at {at}" if at else "")) as run:
        code, result, err = engine_json(t, args)
        if code != 0 or result is None:
            run.result = "failed"
    sys.stderr.write(err)
    if code != 0 or result is None:
        print(f"{t.name}: restore of {db} FAILED", file=sys.stderr)
        return ERROR
    print(f"{t.name}: {db} restored from {result['dump']} in {time.monotonic() - started:.1f}s")
    bad = app_answers(t, result["units"])
    return ERROR if bad else OK


# ---- list ------------------------------------------------------------------------------------

def points_text(target: Target, points: dict) -> str:
    db = points["database"]
    lines = [f"{target.name}: restore points of {db}, newest first (make restore DB={db} [FROM=offsite] AT='...')"]
    if points.get("local_error"):
        lines.append(f"  local: {points['local_error']}")
    for p in points["local"]:
        lines.append(f"  local    AT='{p['at']}'  {p['file']}  {p['bytes']} bytes")
    off = points.get("offsite")
    if off is None:
        lines.append("  offsite: none declared for this host's dumps, or no snapshot yet")
    else:
        for p in off["dumps"]:
            lines.append(f"  offsite  AT='{p['at']}'  {p['file']}  (snapshot {off['snapshot']}, {off['time'][:19]})")
    return "\n".join(lines)


def cmd_list(inventory: str, db: str, fmt: str) -> int:
    t = target_of_db(inventory, db)
    code, points, err = engine_json(t, f"points {shlex.quote(db)}")
    if code != 0 or points is None:
        sys.stderr.write(err)
        print(f"{t.name}: cannot list the restore points of {db}", file=sys.stderr)
        return ERROR
    print(json.dumps(dict(points, host=t.name), indent=2) if fmt == "json" else points_text(t, points))
    return OK


# ---- drill -----------------------------------------------------------------------------------

def drill_text(report: dict) -> str:
    lines = [f"{report['host']}: restore drill {'PASSED' if report['ok'] else 'FAILED'}"]
    for db, sources in report["databases"].items():
        for source, e in sources.items():
            if not e.get("ok"):
                lines.append(f"  {db:<28} {source:<8} FAILED: {e.get('error')}")
            else:
                same = "rows equal" if e["rows_equal"] else f"DIFFERENT {e['differing']}"
                lines.append(f"  {db:<28} {source:<8} {e['tables']:>3} tables {e['rows']:>8} rows  {same}  "
                             f"({e['dump']}, {e['seconds']}s)")
    if report.get("system_state") is not None:
        s = report["system_state"]
        lines.append(f"  system-state snapshot restored to staging: {'paths present' if s['ok'] else s}")
    return "\n".join(lines)


def cmd_drill(inventory: str, fmt: str, limit: str | None) -> int:
    reports, worst = [], OK
    for t in targets(inventory, limit):
        started = time.monotonic()
        code, report, err = engine_json(t, "drill")
        if report is None:
            print(f"{t.name}: drill failed: {err.strip()[-500:]}", file=sys.stderr)
            return ERROR
        report["seconds"] = round(time.monotonic() - started, 1)
        reports.append(report)
        worst = max(worst, STALE if code != 0 else OK)
    if fmt == "json":
        print(json.dumps({"ok": worst == OK, "hosts": reports}, indent=2))
    else:
        print("\n".join(f"{drill_text(r)}\n  ({r['seconds']}s)" for r in reports))
    return worst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cli.backups", description=__doc__.splitlines()[0])
    p.add_argument("inventory")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("status", "drill"):
        s = sub.add_parser(name)
        s.add_argument("--format", choices=["text", "json"], default="text")
        s.add_argument("--limit")
    n = sub.add_parser("now")
    n.add_argument("--what", choices=["dumps", "offsite", "system-state", "all"], default="all")
    n.add_argument("--limit")
    r = sub.add_parser("restore")
    r.add_argument("--db", required=True)
    r.add_argument("--from", dest="source", choices=["local", "offsite"], default="local")
    r.add_argument("--at")
    r.add_argument("--yes", action="store_true")
    ls = sub.add_parser("list")
    ls.add_argument("--db", required=True)
    ls.add_argument("--format", choices=["text", "json"], default="text")
    args = p.parse_args(argv)
    try:
        if args.cmd == "status":
            return cmd_status(args.inventory, args.format, args.limit)
        if args.cmd == "now":
            return cmd_now(args.inventory, args.what, args.limit)
        if args.cmd == "restore":
            return cmd_restore(args.inventory, args.db, args.source, args.at, args.yes)
        if args.cmd == "list":
            return cmd_list(args.inventory, args.db, args.format)
        return cmd_drill(args.inventory, args.format, args.limit)
    except (ConfigError, subprocess.TimeoutExpired) as exc:
        print(f"backups: error: {exc}", file=sys.stderr)
        return ERROR


if __name__ == "__main__":
    sys.exit(main())
