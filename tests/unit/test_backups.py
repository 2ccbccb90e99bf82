"""Backups without a host: the model refuses bad values before any connection, the engine's
decisions (retention, which dump to restore, forget policy, env-file quoting) are right, and the
files the converge writes for the host are what systemd and shellcheck accept."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backup_engine import dumps, offsite, proc, restore, status
from backup_engine.settings import BackupSettings, Database
from engine_common import envfile
from iac.engines import ENGINE_DIR
from iac.errors import ConfigError
from iac.render import render
from operations.backups import deploy as ops
from operations.host import HostConfig
from stack.load import build_host_config

REPO = Path(__file__).resolve().parents[2]

HOSTILE = ["plain", "with space", "$(touch /tmp/pwned)", "`id`", "a'b\"c", "semi;colon & amp", "#hash",
           "back\\slash\\", "%percent%n", "trailing\\", '"quoted"', "${HOME}", "tab\there", "=equals="]


def _lan_with(group_data: Path, text: str) -> str:
    (group_data / "lan.py").write_text((group_data / "lan.py").read_text() + "\n" + text + "\n")
    with pytest.raises(ConfigError) as err:
        build_host_config("lan", "gts-server", group_data=group_data)
    return str(err.value)


# ---- the model -------------------------------------------------------------------------------

def test_production_backups_follow_the_runbook(lan_config: HostConfig, public_config: HostConfig) -> None:
    lan = lan_config
    b = lan.backups
    assert (b.local.unit, b.local.script, b.local.schedule) == (
        "pg-backup-gts", "/usr/local/sbin/pg_backup_gts_databases.sh", "hourly")
    assert (b.local.mount, b.local.root) == ("/mnt/pg_backups", "/mnt/pg_backups/postgres")
    assert (b.local.keep_dump_days, b.local.keep_globals_days, b.local.keep_log_days) == (7, 30, 30)
    pg, ss = b.offsite.postgres, b.offsite.system_state
    assert (pg.unit, pg.schedule, pg.check_unit, pg.check_schedule) == (
        "restic-postgres", "*-*-* 02:30:00", "restic-postgres-check", "Sun *-*-* 03:30:00")
    assert (pg.keep_hourly, pg.keep_daily, pg.keep_weekly, pg.keep_monthly) == (48, 30, 12, 12)
    assert pg.env_file == "/etc/gts/backup/restic.env"
    assert pg.repository.endswith("rocksolid-storage/backups/gts-server/postgres")
    assert (ss.unit, ss.schedule, ss.tag, ss.env_file) == (
        "restic-system-state-backup", "*-*-* 02:20:00", "system-state", "/etc/gts/backup/restic-system-state.env")
    assert (ss.keep_hourly, ss.keep_daily, ss.keep_weekly, ss.keep_monthly) == (0, 30, 12, 12)
    assert ss.includes == ["/etc/gts", "/etc/nginx", "/etc/systemd/system", "/etc/ssh", "/home", "/root",
                           "/etc/fstab", "/usr/local/sbin", "/etc/gts/bootstrap"]
    for excluded in ["/mnt/pg_backups", "/var/lib/postgresql", "/var/log", "/tmp", "/srv/apps", "/srv/venvs",
                     "**/.venv", "**/venv"]:
        assert excluded in ss.excludes
    assert sorted(lan.backup_databases()) == ["gingerich_trailer", "gingerich_trailer_rentals",
                                               "gts_scheduler", "gts_shop_scheduler"]
    public = public_config
    assert public.backup_databases() == {"chip_dashboard": {
        "engine": "sqlite", "path": "/var/lib/chip_dashboard/db.sqlite3", "owner": "chip_dashboard"}}
    assert public.backups.offsite.postgres is None  # off until production has a bucket


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd's own parser checks OnCalendar")
def test_invalid_calendar_expression_is_refused_with_file_and_option(group_data: Path) -> None:
    msg = _lan_with(group_data, 'backups["local"]["schedule"] = "every hour"')
    assert "group_data/lan.py: option 'backups.local.schedule'" in msg
    assert "'every hour' is not a systemd calendar expression" in msg and "example" in msg


def test_zero_or_negative_retention_is_refused(group_data: Path) -> None:
    msg = _lan_with(group_data, 'backups["local"]["keep_dump_days"] = 0')
    assert "option 'backups.local.keep_dump_days'" in msg and "greater than or equal to 1" in msg
    msg = _lan_with(group_data, 'backups["offsite"]["postgres"]["keep_weekly"] = -1')
    assert "option 'backups.offsite.postgres.keep_weekly'" in msg


def test_forget_policy_that_keeps_nothing_is_refused(group_data: Path) -> None:
    msg = _lan_with(group_data, 'backups["offsite"]["system_state"].update(keep_daily=0, keep_weekly=0, '
                                'keep_monthly=0)')
    assert "backups.offsite.system_state.keep_daily" in msg and "would delete every snapshot" in msg


@pytest.mark.parametrize("path", ["backups", "mnt/pg_backups/postgres", "/mnt/pg_backups/../etc",
                                  "/mnt/pg_backups/post gres", "/mnt/pg_backups/$(id)"])
def test_relative_or_unnormalised_backup_path_is_refused(group_data: Path, path: str) -> None:
    msg = _lan_with(group_data, f'backups["local"]["root"] = {path!r}')
    assert "group_data/lan.py: option 'backups.local.root'" in msg


def test_backup_root_off_the_dump_disk_is_refused(group_data: Path) -> None:
    msg = _lan_with(group_data, 'backups["local"]["root"] = "/var/backups/pg"')
    assert "backups.local.root" in msg and "not on the dump disk mounted at '/mnt/pg_backups'" in msg


def test_undeclared_database_is_refused(group_data: Path) -> None:
    msg = _lan_with(group_data, 'backups["local"]["databases"] = ["gts_scheduler", "gts_shedule"]')
    assert "option 'backups.local.databases'" in msg and "'gts_shedule' is not a database of this host" in msg


def test_bad_repository_url_is_refused(group_data: Path) -> None:
    msg = _lan_with(group_data, 'backups["offsite"]["postgres"]["repository"] = "s3:https://x/$(id)"')
    assert "option 'backups.offsite.postgres.repository'" in msg and "example" in msg


def test_restic_and_webhook_secrets_are_required_secrets(lan_config: HostConfig) -> None:
    from stack.load import secret_paths

    lan = lan_config.model_dump()
    paths = {".".join(p) for p in secret_paths(data=lan, required_only=True)}
    for target in ("postgres", "system_state"):
        for key in ("password", "access_key_id", "secret_access_key"):
            assert f"backups.offsite.{target}.{key}" in paths
    assert "backups.alerts.webhook_url" in paths


# ---- the engine ------------------------------------------------------------------------------

@pytest.mark.parametrize("value", HOSTILE)
def test_env_file_values_round_trip_byte_exact(value: str) -> None:
    text = ops.env_file_text({"RESTIC_PASSWORD": value, "OTHER": "x"})
    assert envfile.parse_env_file(text) == {"RESTIC_PASSWORD": value, "OTHER": "x"}
    assert "\n" not in text.splitlines()[1]


@pytest.mark.skipif(not shutil.which("bash"), reason="needs bash")
@pytest.mark.parametrize("value", HOSTILE)
def test_env_exec_passes_values_without_any_shell_reading_them(tmp_path: Path, value: str) -> None:
    env_file = tmp_path / "x.env"
    env_file.write_text(ops.env_file_text({"SECRET": value}))
    out = subprocess.run(["python3", str(ENGINE_DIR / "iac_backup.py"), "env-exec", str(env_file), "--",
                          "python3", "-c", "import os,sys; sys.stdout.write(os.environ['SECRET'])"],
                         capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout == value
    assert not Path("/tmp/pwned").exists()


def test_env_values_with_newlines_are_refused() -> None:
    with pytest.raises(ValueError, match="newline"):
        ops.env_file_text({"A": "one\ntwo"})


def _dumps(directory: Path, stamps: list[str], ext: str = "dump") -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for s in stamps:
        p = directory / f"db_{s}.{ext}"
        p.write_text(s)
        (directory / f"{p.name}.sha256").write_text(f"{dumps.sha256_of(p)}  {p.name}\n")
        out.append(p)
    return out


def test_dumps_are_listed_newest_first_and_temporary_files_ignored(tmp_path: Path) -> None:
    _dumps(tmp_path, ["20261101_010000", "20261103_010000", "20261102_010000"])
    (tmp_path / ".db_20261104_010000.dump.partial").write_text("half")
    names = [d.path.name for d in dumps.dumps_in(tmp_path)]
    assert names == ["db_20261103_010000.dump", "db_20261102_010000.dump", "db_20261101_010000.dump"]


def test_restore_picks_newest_or_newest_at_or_before_the_time(tmp_path: Path) -> None:
    _dumps(tmp_path, ["20261101_010000", "20261103_010000", "20261102_010000"])
    found = dumps.dumps_in(tmp_path)
    assert restore.pick_dump(found, None).path.name == "db_20261103_010000.dump"
    at = restore.parse_at("2026-11-02 12:00:00")
    assert restore.pick_dump(found, at).path.name == "db_20261102_010000.dump"
    with pytest.raises(proc.BackupError, match="no dump taken at or before 2026-10-01"):
        restore.pick_dump(found, restore.parse_at("2026-10-01"))
    with pytest.raises(proc.BackupError, match="give a UTC time"):
        restore.parse_at("yesterday")


def test_checksum_mismatch_is_detected(tmp_path: Path) -> None:
    (p,) = _dumps(tmp_path, ["20261101_010000"])
    assert dumps.checksum_ok(dumps.dumps_in(tmp_path)[0])
    p.write_text("corrupted")
    assert not dumps.checksum_ok(dumps.dumps_in(tmp_path)[0])


def _local_settings(lan_config: HostConfig, tmp_path: Path) -> BackupSettings:
    """The LAN host's settings as the converge writes them, with the dumps under ``tmp_path`` and one
    database ``db``, kept 7 days (globals and logs 30)."""
    settings = ops.backup_settings(lan_config)
    local = replace(settings.local, root=str(tmp_path), databases={"db": Database("postgresql", owner="db_user")},
                    keep_dump_days=7, keep_globals_days=30, keep_log_days=30)
    return replace(settings, local=local)


def test_retention_prunes_exactly_what_is_older_than_the_limits(lan_config: HostConfig, tmp_path: Path) -> None:
    settings = _local_settings(lan_config, tmp_path)
    now = time.time()
    day = 86400
    made = _dumps(tmp_path / "db" / "db", ["20261101_010000", "20261102_010000", "20261103_010000"])
    globals_ = _dumps(tmp_path / "globals", ["20261001_010000", "20261002_010000"], "sql")
    (tmp_path / "logs").mkdir()
    logs = [tmp_path / "logs" / "old.log", tmp_path / "logs" / "new.log"]
    for p in logs:
        p.write_text("x")
    ages = {made[0]: 8, made[1]: 6.9, made[2]: 0.1, globals_[0]: 31, globals_[1]: 29,
            logs[0]: 30.5, logs[1]: 29.5}
    for p, age in ages.items():
        for f in (p, p.with_name(p.name + ".sha256")) if p.suffix != ".log" else (p,):
            os.utime(f, (now - age * day, now - age * day))
    removed = dumps.prune(settings, now)
    gone = {p for p in ages if not p.exists()}
    assert gone == {made[0], globals_[0], logs[0]}
    assert made[0].with_name(made[0].name + ".sha256") in removed


def test_newest_dump_is_never_pruned(lan_config: HostConfig, tmp_path: Path) -> None:
    settings = _local_settings(lan_config, tmp_path)
    (only,) = _dumps(tmp_path / "db" / "db", ["20261101_010000"])
    old = time.time() - 100 * 86400
    os.utime(only, (old, old))
    dumps.prune(settings, time.time())
    assert only.exists()  # a host whose dumps stopped keeps its last one


def test_forget_arguments_follow_the_declared_policy(lan_config: HostConfig) -> None:
    target = ops.backup_settings(lan_config).offsite["postgres"]  # the runbook's policy, from the model
    assert offsite.forget_args(target) == [
        "forget", "--tag", "postgres", "--group-by", "host,tags", "--prune", "--keep-hourly", "48",
        "--keep-daily", "30", "--keep-weekly", "12", "--keep-monthly", "12"]
    no_hourly = replace(target, keep=replace(target.keep, hourly=0))
    assert "--keep-hourly" not in offsite.forget_args(no_hourly)


def test_alert_message_names_host_and_unit_and_stays_short() -> None:
    msg = status.alert_message("gts-server", "pg-backup-gts.service", "x" * 5000)
    assert msg.startswith("Backup FAILED on gts-server: pg-backup-gts.service.") and len(msg) <= 1900


def test_stamps_are_utc_and_parseable() -> None:
    assert dumps.stamp_of("gts_scheduler_20261123_140501.dump") == datetime(2026, 11, 23, 14, 5, 1, tzinfo=UTC)
    assert dumps.stamp_of("gts_scheduler_20261123_140501.dump.sha256") is None


# ---- what the converge writes ------------------------------------------------------------------

def test_settings_file_derives_every_path_from_the_model(lan_config: HostConfig) -> None:
    settings = ops.backup_settings(lan_config)
    assert settings.local.root == "/mnt/pg_backups/postgres" and settings.local.globals is True
    assert settings.units == ["pg-backup-gts", "restic-postgres", "restic-postgres-check",
                                 "restic-system-state-backup"]
    assert settings.app_units["gunicorn-rental_scheduler"] == ["gts_scheduler", "gingerich_trailer_rentals"]
    assert settings.offsite["system_state"].includes_file == "/etc/gts/backup/system-state/includes.txt"
    assert "password" not in str(settings).lower()


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck is installed by sandbox/install-deps.sh")
def test_command_wrappers_pass_shellcheck(lan_config: HostConfig, tmp_path: Path) -> None:
    config = lan_config
    for spec in ops.unit_specs(config):
        if not spec["script"]:
            continue
        path = tmp_path / Path(spec["script"]).name
        path.write_text(render("usr/local/sbin/iac-backup-command.sh.j2", args=spec["args"], purpose="x",
                               settings_file="/etc/iac/backup.json"))
        subprocess.run(["shellcheck", str(path)], check=True)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd's own parser")
def test_rendered_units_carry_the_declared_schedules_and_alert(lan_config: HostConfig) -> None:
    config = lan_config
    specs = {s["unit"]: s for s in ops.unit_specs(config)}
    timer = render("etc/systemd/system/iac-backup.timer.j2", **specs["restic-postgres"])
    assert "OnCalendar=*-*-* 02:30:00" in timer and "Persistent=true" in timer
    service = render("etc/systemd/system/iac-backup.service.j2", **specs["pg-backup-gts"])
    assert "OnFailure=iac-backup-alert@%n.service" in service
    assert "ExecStart=/usr/local/sbin/pg_backup_gts_databases.sh" in service
    check = render("etc/systemd/system/iac-backup.timer.j2", **specs["restic-postgres-check"])
    assert "OnCalendar=Sun *-*-* 03:30:00" in check


def test_iac_never_imports_the_sandbox() -> None:
    """The stack code works without the sandbox: nothing under iac/ imports sandbox/."""
    import ast

    offenders = []
    for path in (REPO / "iac").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "sandbox"]
    assert offenders == []


UTC_HOST = """  Original form: hourly
Normalized form: *-*-* *:00:00
    Next elapse: Mon 2026-11-23 22:00:00 UTC
       From now: 52min left
       Iter. #2: Mon 2026-11-23 23:00:00 UTC
       From now: 1h 52min left
"""
ZONED_HOST = """Normalized form: Sun *-*-* 03:30:00
    Next elapse: Sun 2026-11-29 03:30:00 EST
       (in UTC): Sun 2026-11-29 08:30:00 UTC
       From now: 5 days left
       Iter. #2: Sun 2026-12-06 03:30:00 EST
       (in UTC): Sun 2026-12-06 08:30:00 UTC
"""


def test_schedule_interval_is_read_on_utc_and_zoned_hosts() -> None:
    """Staleness is "older than twice the schedule": the interval must be read on any host."""
    assert status.elapse_interval(UTC_HOST) == 3600
    assert status.elapse_interval(ZONED_HOST) == 7 * 86400
    assert status.elapse_interval("garbage") is None


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd's own output")
def test_schedule_interval_from_this_machines_systemd() -> None:
    assert status.schedule_seconds("hourly") == 3600
    assert status.schedule_seconds("*-*-* 02:30:00") == 86400
