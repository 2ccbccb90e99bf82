"""Backups in the model and what the converge writes for them (operations/backups/), without a
host: the model refuses bad values before any connection, and the settings, units and command
wrappers the converge writes are what the engine, systemd and shellcheck accept. The engine's own
decisions: test_backup_engine.py; env-file quoting: test_env_files.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from iac.errors import ConfigError
from iac.render import render
from operations.backups import deploy as ops
from operations.host import HostConfig
from stack.load import build_host_config


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
