"""Backups on both sandbox hosts: declared timers, validated dumps on the LAN host's own disk,
restic copies on the S3 stand-in, retention, one alert per failure, restore and the restore drill.

The module shares one converged state: `make backup-now` once, then each failure is made, checked
and undone in place. Drift is checked once, for all three backup edits together.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import legacy_backups
from tests.integration.conftest import REPO, SANDBOX_INVENTORY, TIMINGS, Run, Sandbox, repo_copy

LAN_UNITS = {"pg-backup-gts": "hourly", "restic-postgres": "*-*-* 02:30:00",
             "restic-postgres-check": "Sun *-*-* 03:30:00", "restic-system-state-backup": "*-*-* 02:20:00"}
PUBLIC_UNITS = {"chip-dashboard-backup": "*-*-* 03:15:00", "restic-chip-dashboard": "*-*-* 02:30:00",
                "restic-chip-dashboard-check": "Sun *-*-* 03:30:00"}
LAN_DBS = ["gts_scheduler", "gingerich_trailer_rentals", "gts_shop_scheduler", "gingerich_trailer"]
ROOT = "/mnt/pg_backups/postgres"
PG_ENV = "/etc/gts/backup/restic.env"

pytestmark = pytest.mark.usefixtures("converged")


def make(sandbox: Sandbox, label: str, *args: str) -> Run:
    return sandbox.command(label, ["make", "-s", *args])


def alerts(sandbox: Sandbox) -> list[str]:
    """Messages the backup alert webhook (the Discord stand-in) received so far."""
    log = sandbox.world.webhook_log
    if not log.exists():
        return []
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [json.loads(e["body"])["content"] for e in entries if "/api/webhooks/2/" in e["path"]]


def new_alerts(sandbox: Sandbox, before: int, expect: int = 1, timeout: float = 20) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(alerts(sandbox)) < before + expect and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(1.5)  # a second alert for the same failure would arrive now
    return alerts(sandbox)[before:]


def start(sandbox: Sandbox, role: str, unit: str) -> subprocess.CompletedProcess:
    return sandbox.ssh(role, f"systemctl start {unit}.service", check=False)


def lan(sandbox: Sandbox, command: str) -> str:
    return sandbox.ssh("lan", command).stdout


@contextlib.contextmanager
def hourly_dumps_paused(sandbox: Sandbox) -> Iterator[None]:
    """No hourly dump lands while a test picks a dump and restores it (at 02:00:01 once, a restore
    took the timer's new, good dump instead of the one the test had corrupted)."""
    lan(sandbox, "systemctl stop pg-backup-gts.timer")
    try:
        yield
    finally:
        lan(sandbox, "systemctl start pg-backup-gts.timer")


@pytest.fixture(scope="module")
def backed_up(sandbox: Sandbox) -> Run:
    """`make backup-now`: every backup unit of both hosts once, now."""
    run = make(sandbox, "backup-now", "backup-now")
    assert run.returncode == 0, run.output[-3000:]
    TIMINGS["backups: make backup-now (both hosts, all units)"] = run.seconds
    return run


def test_timers_run_on_the_declared_schedules(sandbox: Sandbox) -> None:
    for role, units in (("lan", LAN_UNITS), ("public", PUBLIC_UNITS)):
        for unit, schedule in units.items():
            normalized = subprocess.run(["systemd-analyze", "calendar", schedule], capture_output=True,
                                        text=True, check=True).stdout
            want = next(line.split(":", 1)[1].strip() for line in normalized.splitlines()
                        if "Normalized form" in line)
            shown = sandbox.ssh(role, f"systemctl show -p TimersCalendar --value {unit}.timer").stdout
            assert f"OnCalendar={want} " in shown, (unit, shown)
            state = sandbox.ssh(role, f"systemctl is-enabled {unit}.timer; systemctl is-active {unit}.timer",
                                check=False).stdout.split()
            assert state == ["enabled", "active"], (role, unit, state)


def test_dump_disk_is_declared_by_uuid_and_mounted(sandbox: Sandbox) -> None:
    uuid = sandbox.world.backup_disk_uuid()
    fstab = lan(sandbox, "cat /etc/fstab")
    assert f"UUID={uuid} /mnt/pg_backups ext4 defaults,nofail" in fstab
    assert sandbox.ssh("lan", "mountpoint -q /mnt/pg_backups", check=False).returncode == 0


def test_each_dump_is_validated_checksummed_and_readable_by_the_admin_only(sandbox: Sandbox,
                                                                          backed_up: Run) -> None:
    for db in LAN_DBS:
        d = f"{ROOT}/db/{db}"
        newest = lan(sandbox, f"ls -1t {d}/*.dump | head -n1").strip()
        assert newest.startswith(f"{d}/{db}_"), newest
        # sha256sum -c from the dump's directory, as an operator would
        assert "OK" in lan(sandbox, f"cd {d} && sha256sum -c $(basename {newest}).sha256")
        assert sandbox.ssh("lan", f"pg_restore --list {newest} >/dev/null", check=False).returncode == 0
        assert lan(sandbox, f"stat -c '%U:%G %a' {newest} {newest}.sha256 {d}").split("\n")[:3] == [
            "root:postgres 640", "root:postgres 640", "root:postgres 2750"]
        assert sandbox.ssh("lan", f"runuser -u gts -- head -c1 {newest} >/dev/null", check=False).returncode == 0
        for app_user in ("rental_scheduler", "shop_scheduler"):
            assert sandbox.ssh("lan", f"runuser -u {app_user} -- head -c1 {newest}", check=False).returncode != 0
    globals_ = lan(sandbox, f"ls -1t {ROOT}/globals/*.sql | head -n1").strip()
    assert "CREATE ROLE rental_scheduler_user" in lan(sandbox, f"cat {globals_}")
    assert "OK" in lan(sandbox, f"cd {ROOT}/globals && sha256sum -c $(basename {globals_}).sha256")
    assert "validated, sha256 written" in lan(sandbox, f"cat $(ls -1t {ROOT}/logs/*.log | head -n1)")
    # the public host's SQLite database: an online .backup copy, checked and checksummed the same way
    d = "/var/backups/chip_dashboard/db/chip_dashboard"
    newest = sandbox.ssh("public", f"ls -1t {d}/*.sqlite3 | head -n1").stdout.strip()
    assert sandbox.ssh("public", f"sqlite3 {newest} 'pragma integrity_check'").stdout.strip() == "ok"
    assert "OK" in sandbox.ssh("public", f"cd {d} && sha256sum -c $(basename {newest}).sha256").stdout


def test_offsite_snapshots_and_system_state_lists(sandbox: Sandbox, backed_up: Run) -> None:
    snaps = json.loads(lan(sandbox, f"iac-backup env-exec {PG_ENV} -- restic snapshots --json --tag postgres"))
    assert snaps and f"{ROOT}/db" in snaps[-1]["paths"]
    # the runbook's helper, for an operator's shell
    state = json.loads(lan(sandbox, "restic-system-state-env.sh restic snapshots --json --tag system-state"))
    assert state and state[-1]["hostname"] == "gts-server"
    includes = lan(sandbox, "cat /etc/gts/backup/system-state/includes.txt").split()
    assert includes == ["/etc/gts", "/etc/nginx", "/etc/systemd/system", "/etc/ssh", "/home", "/root",
                        "/etc/fstab", "/usr/local/sbin", "/etc/gts/bootstrap"]
    for name in ("packages.txt", "enabled-services.txt", "mounts.txt", "nginx-T.txt"):
        assert lan(sandbox, f"wc -c < /etc/gts/bootstrap/{name}").strip() != "0", name
    assert "server_name" in lan(sandbox, "cat /etc/gts/bootstrap/nginx-T.txt")
    pub = sandbox.ssh("public", "iac-backup env-exec /etc/iac/backup/restic.env -- "
                                "restic snapshots --json --tag chip-dashboard").stdout
    assert json.loads(pub)
    # the weekly integrity checks, run once
    assert start(sandbox, "lan", "restic-postgres-check").returncode == 0
    assert start(sandbox, "public", "restic-chip-dashboard-check").returncode == 0
    assert "no errors were found" in lan(sandbox, "journalctl -u restic-postgres-check -n 20 --no-pager -o cat")


def test_a_dump_older_than_twice_its_schedule_is_stale(sandbox: Sandbox, backed_up: Run) -> None:
    newest = lan(sandbox, f"ls -1t {ROOT}/db/gts_scheduler/*.dump | head -n1").strip()
    lan(sandbox, f"touch -d '3 hours ago' {newest}")  # hourly: stale after 2 h
    status = make(sandbox, "backup-status-stale", "backup-status")
    assert status.returncode == 2 and "gts_scheduler: newest dump is 3.0 h old" in status.stdout
    assert start(sandbox, "lan", "pg-backup-gts").returncode == 0
    assert make(sandbox, "backup-status-fresh", "backup-status").returncode == 0


def test_secrets_live_only_in_root_only_env_files(sandbox: Sandbox, backed_up: Run) -> None:
    secrets = sandbox.world.secret_values()
    password = secrets["lan"]["backups"]["offsite"]["postgres"]["password"]
    # the canary passphrase is hostile on purpose; systemd (backup units) and the engine's parser
    # (env-exec, drill) read it alike, or restic could not open the same repository with both
    assert "$(touch /tmp/pwned)" in password and "`id`" in password and "#" in password
    assert sandbox.ssh("lan", "test -e /tmp/pwned", check=False).returncode != 0
    for f in (PG_ENV, "/etc/gts/backup/restic-system-state.env", "/etc/iac/backup-alert.env"):
        assert lan(sandbox, f"stat -c '%U:%G %a' {f}").strip() == "root:root 600", f
    units = lan(sandbox, "cat /etc/systemd/system/pg-backup-gts.* /etc/systemd/system/restic-* "
                         "/etc/iac/backup.json /usr/local/sbin/*.sh")
    token = password.split()[0]
    assert token not in units and "EnvironmentFile=/etc/gts/backup/restic.env" in units
    webhook = secrets["lan"]["backups"]["alerts"]["webhook_url"].rsplit("/", 1)[1]
    journal = lan(sandbox, "journalctl --no-pager -o cat")
    assert token not in journal and webhook not in journal


def test_retention_prunes_exactly_by_the_declared_limits(sandbox: Sandbox, backed_up: Run) -> None:
    d = f"{ROOT}/db/gts_scheduler"
    aged = {f"{d}/gts_scheduler_20200101_000000.dump": "8 days ago",
            f"{d}/gts_scheduler_20200102_000000.dump": "6 days ago",
            f"{ROOT}/globals/globals_20200101_000000.sql": "31 days ago",
            f"{ROOT}/globals/globals_20200102_000000.sql": "29 days ago",
            f"{ROOT}/logs/pg_backup_20200101_000000.log": "31 days ago",
            f"{ROOT}/logs/pg_backup_20200102_000000.log": "29 days ago"}
    for path, age in aged.items():
        files = [path] if path.endswith(".log") else [path, f"{path}.sha256"]
        for f in files:
            lan(sandbox, f"echo aged > {f} && touch -d '{age}' {f}")
    assert start(sandbox, "lan", "pg-backup-gts").returncode == 0
    present = {p: sandbox.ssh("lan", f"test -e {p}", check=False).returncode == 0 for p in aged}
    assert present == {p: not age.startswith(("8", "31")) for p, age in aged.items()}
    assert sandbox.ssh("lan", f"test -e {d}/gts_scheduler_20200101_000000.dump.sha256",
                       check=False).returncode != 0
    lan(sandbox, f"rm -f {d}/gts_scheduler_20200102_* {ROOT}/globals/globals_20200102_* "
                 f"{ROOT}/logs/pg_backup_20200102_*")


def test_restic_forget_applies_the_declared_policy(sandbox: Sandbox, backed_up: Run) -> None:
    """Two snapshots in one hour long ago: every rule (48 hourly, 30 daily, 12 weekly, 12 monthly)
    keeps only the newer one of them; everything else is kept."""
    run = f"iac-backup env-exec {PG_ENV} -- iac-backup offsite postgres"
    lan(sandbox, f"{run} --time '2026-01-05 10:00:00'")
    out = sandbox.ssh("lan", f"{run} --time '2026-01-05 10:10:00'").stderr
    assert "keep 48 hourly, 30 daily, 12 weekly, 12 monthly snapshots" in out
    times = [s["time"][:19] for s in json.loads(lan(
        sandbox, f"iac-backup env-exec {PG_ENV} -- restic snapshots --json --tag postgres"))]
    assert "2026-01-05T10:10:00" in times and "2026-01-05T10:00:00" not in times
    assert len([t for t in times if not t.startswith("2026-01-05")]) >= 1


def test_unmounted_disk_fails_with_one_alert_and_writes_nothing(sandbox: Sandbox, backed_up: Run) -> None:
    before = len(alerts(sandbox))
    sandbox.world.detach_backup_disk()
    try:
        assert sandbox.ssh("lan", "mountpoint -q /mnt/pg_backups", check=False).returncode != 0
        assert start(sandbox, "lan", "pg-backup-gts").returncode != 0
        got = new_alerts(sandbox, before)
        assert len(got) == 1 and "gts-server" in got[0] and "pg-backup-gts.service" in got[0], got
        assert "not a mount point" in got[0]
        assert lan(sandbox, "ls -A /mnt/pg_backups").strip() == ""  # nothing on the root filesystem
        status = make(sandbox, "backup-status-unmounted", "backup-status")
        assert status.returncode == 2 and "/mnt/pg_backups is not mounted" in status.stdout
    finally:
        sandbox.world.attach_backup_disk()
    assert start(sandbox, "lan", "pg-backup-gts").returncode == 0


def test_full_disk_fails_with_one_alert_and_leaves_no_partial_file(sandbox: Sandbox, backed_up: Run) -> None:
    before = len(alerts(sandbox))
    lan(sandbox, "dd if=/dev/zero of=/mnt/pg_backups/filler bs=4M status=none || true; sync")
    try:
        assert start(sandbox, "lan", "pg-backup-gts").returncode != 0
        got = new_alerts(sandbox, before)
        assert len(got) == 1 and "pg-backup-gts.service" in got[0], got
        assert lan(sandbox, f"find {ROOT} -name '*.partial'").strip() == ""
        assert make(sandbox, "backup-status-full", "backup-status").returncode == 2
    finally:
        lan(sandbox, "rm -f /mnt/pg_backups/filler")
    assert start(sandbox, "lan", "pg-backup-gts").returncode == 0


def test_unreachable_s3_fails_with_one_alert(sandbox: Sandbox, backed_up: Run) -> None:
    before = len(alerts(sandbox))
    route = f"blackhole {sandbox.world.s3_ip}/32"  # S3 only: the webhook stays reachable
    lan(sandbox, f"ip route add {route}")
    try:
        assert start(sandbox, "lan", "restic-postgres").returncode != 0
        got = new_alerts(sandbox, before)
        assert len(got) == 1 and "gts-server" in got[0] and "restic-postgres.service" in got[0], got
        status = make(sandbox, "backup-status-s3-down", "backup-status")
        assert status.returncode == 2 and "offsite postgres" in status.stdout
    finally:
        lan(sandbox, f"ip route del {route}")
    assert start(sandbox, "lan", "restic-postgres").returncode == 0


def test_dump_that_fails_validation_is_never_published(sandbox: Sandbox, backed_up: Run) -> None:
    """A pg_dump that writes garbage (fault injected for this unit only, through a runtime drop-in
    that puts a broken pg_dump first on its PATH): pg_restore --list refuses it, the run fails with
    one alert, and no file of that run is left under the dump directories."""
    before = len(alerts(sandbox))
    lan(sandbox, "mkdir -p /run/iac-fault /run/systemd/system/pg-backup-gts.service.d && "
                 "printf '#!/bin/sh\necho not-a-dump\n' > /run/iac-fault/pg_dump && "
                 "chmod 755 /run/iac-fault/pg_dump && "
                 "printf '[Service]\nEnvironment=PATH=/run/iac-fault:/usr/sbin:/usr/bin:/sbin:/bin\n' "
                 "> /run/systemd/system/pg-backup-gts.service.d/fault.conf && systemctl daemon-reload")
    newest = {db: lan(sandbox, f"ls -1t {ROOT}/db/{db}/*.dump | head -n1").strip() for db in LAN_DBS}
    try:
        assert start(sandbox, "lan", "pg-backup-gts").returncode != 0
        got = new_alerts(sandbox, before)
        assert len(got) == 1 and "pg-backup-gts.service" in got[0] and "dumps failed" in got[0], got
        log = lan(sandbox, f"cat $(ls -1t {ROOT}/logs/*.log | head -n1)")
        assert "FAILED gts_scheduler: pg_restore --list" in log
        assert lan(sandbox, f"find {ROOT}/db -name '*.partial'").strip() == ""
        for db, path in newest.items():  # nothing newer was published
            assert lan(sandbox, f"ls -1t {ROOT}/db/{db}/*.dump | head -n1").strip() == path
        assert make(sandbox, "backup-status-invalid", "backup-status").returncode == 2
    finally:
        lan(sandbox, "rm -rf /run/systemd/system/pg-backup-gts.service.d /run/iac-fault && systemctl daemon-reload")
    assert start(sandbox, "lan", "pg-backup-gts").returncode == 0


def test_corrupted_dump_is_reported_and_never_restored(sandbox: Sandbox, backed_up: Run) -> None:
    d = f"{ROOT}/db/gingerich_trailer"
    with hourly_dumps_paused(sandbox):
        newest = lan(sandbox, f"ls -1t {d}/*.dump | head -n1").strip()
        lan(sandbox, f"printf x >> {newest}")
        status = make(sandbox, "backup-status-corrupt", "backup-status", "FORMAT=json")
        assert status.returncode == 2
        lan_report = next(h for h in json.loads(status.stdout)["hosts"] if h["host"] == "gts-server")
        assert lan_report["databases"]["gingerich_trailer"]["sha256_ok"] is False
        refused = make(sandbox, "restore-corrupt", "restore", "DB=gingerich_trailer")
        assert refused.returncode != 0 and "does not match its .sha256" in refused.output
    assert start(sandbox, "lan", "pg-backup-gts").returncode == 0
    assert make(sandbox, "backup-status-after-corrupt", "backup-status").returncode == 0


def test_restore_brings_back_deleted_rows_while_the_other_app_serves(sandbox: Sandbox, backed_up: Run) -> None:
    psql = "runuser -u postgres -- psql -d gts_shop_scheduler -tAc"
    with hourly_dumps_paused(sandbox):  # no hourly dump of the emptied table
        lan(sandbox, f"cd /tmp && {psql} \"insert into shop_workorder (title, created) "
                     "select 'order ' || g, now() from generate_series(1, 25) g\"")
        assert start(sandbox, "lan", "pg-backup-gts").returncode == 0
        count = lan(sandbox, f"cd /tmp && {psql} 'select count(*) from shop_workorder'").strip()
        lan(sandbox, f"cd /tmp && {psql} 'delete from shop_workorder'")

        codes: list[str] = []
        stop = threading.Event()

        def poll_rental() -> None:
            url = f"http://{sandbox.world.host_ip('lan')}:8001/"
            while not stop.is_set():
                codes.append(subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                                             url], capture_output=True, text=True, check=False).stdout)
                time.sleep(0.2)

        poller = threading.Thread(target=poll_rental)
        poller.start()
        try:
            run = make(sandbox, "restore", "restore", "DB=gts_shop_scheduler")
        finally:
            stop.set()
            poller.join()
    assert run.returncode == 0, run.output[-3000:]
    TIMINGS["backups: make restore DB=gts_shop_scheduler"] = run.seconds
    assert "shop_scheduler through nginx (gts-server.lan:8002) answers HTTP 200" in run.stdout
    assert int(count) >= 25
    assert lan(sandbox, f"cd /tmp && {psql} 'select count(*) from shop_workorder'").strip() == count
    assert codes and set(codes) == {"200"}, f"rental_scheduler answered {sorted(set(codes))} during the restore"
    assert "pre-restore" in lan(sandbox, f"ls {ROOT}")  # the replaced database was kept


def test_restore_drill_restores_every_database_local_and_offsite(sandbox: Sandbox, backed_up: Run) -> None:
    assert make(sandbox, "backup-now-before-drill", "backup-now").returncode == 0
    run = make(sandbox, "restore-drill", "restore-drill", "FORMAT=json")
    assert run.returncode == 0, run.output[-3000:]
    TIMINGS["backups: make restore-drill (both hosts)"] = run.seconds
    hosts = {h["host"]: h for h in json.loads(run.stdout)["hosts"]}
    assert set(hosts["gts-server"]["databases"]) == set(LAN_DBS)
    assert set(hosts["srv1178562"]["databases"]) == {"chip_dashboard"}
    for report in hosts.values():
        for db, sources in report["databases"].items():
            assert set(sources) == {"local", "offsite"}, db
            for source, e in sources.items():
                assert e["ok"] and e["rows_equal"], (db, source, e)
    assert hosts["gts-server"]["databases"]["gts_shop_scheduler"]["offsite"]["rows"] > 25
    assert hosts["gts-server"]["system_state"] == {"ok": True, "missing": [], "error": None}


def test_hand_made_backup_units_are_replaced_in_place(sandbox: Sandbox, backed_up: Run) -> None:
    """The real host runs hand-made versions under the runbook's names: the converge replaces
    them where they are. One timer per name, the next dump within the hour, old dumps and
    snapshots kept."""
    handmade = legacy_backups.install(sandbox.world)
    assert handmade, "the hand-made script made dumps"
    snapshots_before = lan(sandbox, f"iac-backup env-exec {PG_ENV} -- restic snapshots --json --tag postgres")
    run = sandbox.converge("adopt-lan-backups", "--limit", "lan")
    assert run.returncode == 0, run.output[-3000:]
    for unit in LAN_UNITS:
        assert "Managed by this repo" in lan(sandbox, f"cat /etc/systemd/system/{unit}.service")
    timers = lan(sandbox, "systemctl list-timers --all --no-legend --output=json")
    names = [t["unit"] for t in json.loads(timers)]
    assert sorted(n for n in names if n.removesuffix(".timer") in LAN_UNITS) == sorted(
        f"{u}.timer" for u in LAN_UNITS)
    pg_timer = next(t for t in json.loads(timers) if t["unit"] == "pg-backup-gts.timer")
    assert 0 < pg_timer["next"] / 1e6 - time.time() <= 3600, pg_timer
    assert lan(sandbox, "ls /etc/systemd/system/timers.target.wants/ | grep -c pg-backup").strip() == "1"
    assert "Managed by this repo" in lan(sandbox, "cat /usr/local/sbin/pg_backup_gts_databases.sh")
    assert start(sandbox, "lan", "pg-backup-gts").returncode == 0
    for f in handmade:
        assert sandbox.ssh("lan", f"test -f {f}", check=False).returncode == 0, f"{f} was deleted"
    after = lan(sandbox, f"iac-backup env-exec {PG_ENV} -- restic snapshots --json --tag postgres")
    assert {s["id"] for s in json.loads(snapshots_before)} <= {s["id"] for s in json.loads(after)}


def test_broken_backup_unit_never_goes_live(sandbox: Sandbox, tmp_path: Path) -> None:
    """A timer systemd cannot load (its template misspelt): the whole set of backup units is
    refused, the live units stay as they were and the timers keep running."""
    copy = repo_copy(tmp_path)
    tpl = copy / "templates/etc/systemd/system/iac-backup.timer.j2"
    tpl.write_text(tpl.read_text().replace("OnCalendar=", "OnCalender="))
    live_before = lan(sandbox, "sha256sum /etc/systemd/system/pg-backup-gts.* /etc/systemd/system/restic-*")
    run = sandbox.converge("broken-backup-unit", "--limit", "lan", cwd=copy)
    assert run.returncode != 0 and "REFUSED:" in run.output and "failed validation" in run.output
    assert lan(sandbox, "sha256sum /etc/systemd/system/pg-backup-gts.* /etc/systemd/system/restic-*") == live_before
    assert lan(sandbox, "systemctl is-active pg-backup-gts.timer").strip() == "active"


def test_drift_names_a_disabled_timer_an_edited_script_and_a_changed_retention(sandbox: Sandbox) -> None:
    lan(sandbox, "echo '# edited by hand' >> /etc/systemd/system/restic-postgres.timer")
    lan(sandbox, "systemctl disable --now pg-backup-gts.timer")
    lan(sandbox, "echo '# edited by hand' >> /usr/local/sbin/pg_backup_gts_databases.sh")
    lan(sandbox, "sed -i 's/\"keep_dump_days\": 7/\"keep_dump_days\": 3/' /etc/iac/backup.json")
    drift = sandbox.command("drift-backups", [str(REPO / ".venv/bin/python"), "-m", "cli.drift",
                                              SANDBOX_INVENTORY, "--limit", "lan"])
    assert drift.returncode == 2, drift.output[-2000:]
    for name in ("Timer pg-backup-gts.timer enabled and running",
                 "Command /usr/local/sbin/pg_backup_gts_databases.sh", "Backup settings /etc/iac/backup.json",
                 "Backup units (verified by systemd, live): restic-postgres.timer"):
        assert f"gts-server: {name}" in drift.stdout, drift.stdout
    run = sandbox.converge("converge-restores-backups", "--limit", "lan")
    assert run.returncode == 0, run.output[-3000:]
    assert lan(sandbox, "systemctl is-enabled pg-backup-gts.timer; systemctl is-active pg-backup-gts.timer"
               ).split() == ["enabled", "active"]
    assert "edited by hand" not in lan(sandbox, "cat /usr/local/sbin/pg_backup_gts_databases.sh")
    assert '"keep_dump_days": 7' in lan(sandbox, "cat /etc/iac/backup.json")
