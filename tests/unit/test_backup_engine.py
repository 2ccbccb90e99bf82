"""The backup engine's decisions without a host (files/usr/local/lib/iac/backup_engine/): which
dumps exist and which one a restore takes, checksums, retention, the restic forget policy, the
alert text and the schedule interval a staleness check reads. What an app wrote, treated as
hostile: test_backup_engine_hostile.py."""

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
from operations.backups import deploy as ops
from operations.host import HostConfig


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
    app = status.alert_message("gts-server", "gunicorn-shop_scheduler.service", "Result: exit-code.", backup=False)
    assert app.startswith("Unit FAILED (gave up restarting) on gts-server: gunicorn-shop_scheduler.service.")


def test_stamps_are_utc_and_parseable() -> None:
    assert dumps.stamp_of("gts_scheduler_20261123_140501.dump") == datetime(2026, 11, 23, 14, 5, 1, tzinfo=UTC)
    assert dumps.stamp_of("gts_scheduler_20261123_140501.dump.sha256") is None


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


# systemd 257 (Debian 13), as it printed on the sandbox's trixie host
UTC_HOST_257 = """  Original form: hourly
Normalized form: *-*-* *:00:00
    Next elapse: Sat 2026-12-05 21:00:00 UTC
       From now: 8min left
   Iteration #2: Sat 2026-12-05 22:00:00 UTC
       From now: 1h 8min left
"""

ZONED_HOST_257 = """  Original form: Sun 03:00
Normalized form: Sun *-*-* 03:00:00
    Next elapse: Sun 2026-12-06 03:00:00 EST
       (in UTC): Sun 2026-12-06 08:00:00 UTC
       From now: 11h left
   Iteration #2: Sun 2026-12-13 03:00:00 EST
       (in UTC): Sun 2026-12-13 08:00:00 UTC
       From now: 1 week 0 days left
"""


def test_schedule_interval_is_read_on_utc_and_zoned_hosts() -> None:
    """Staleness is "older than twice the schedule": the interval must be read on any host, of
    either release."""
    assert status.elapse_interval(UTC_HOST) == 3600
    assert status.elapse_interval(ZONED_HOST) == 7 * 86400
    assert status.elapse_interval(UTC_HOST_257) == 3600
    assert status.elapse_interval(ZONED_HOST_257) == 7 * 86400
    assert status.elapse_interval("garbage") is None


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd's own output")
def test_schedule_interval_from_this_machines_systemd() -> None:
    assert status.schedule_seconds("hourly") == 3600
    assert status.schedule_seconds("*-*-* 02:30:00") == 86400


def test_restore_points_list_local_and_offsite_dumps_newest_first_with_the_at_that_picks_each(
        lan_config: HostConfig, tmp_path: Path) -> None:
    settings = _local_settings(lan_config, tmp_path)
    settings = replace(settings, local=replace(settings.local, mount=""))  # no dump disk here
    made = _dumps(tmp_path / "db" / "db", ["20261101_010000", "20261102_010000"])
    listing = [{"type": "dir", "name": "db", "path": str(tmp_path / "db" / "db")},
               *({"type": "file", "name": n, "path": str(tmp_path / "db" / "db" / n), "size": 5}
                 for n in ("db_20261030_010000.dump", "db_20261031_010000.dump", "db_20261031_010000.dump.sha256")),
               {"type": "file", "name": "other_20261031_020000.dump", "path": "/elsewhere/other_20261031_020000.dump"}]
    points = restore.restore_points(settings, "db", offsite_listing=listing)
    assert [p["at"] for p in points["local"]] == ["2026-11-02 01:00:00", "2026-11-01 01:00:00"]
    assert [p["file"] for p in points["local"]] == [made[1].name, made[0].name]
    assert [p["at"] for p in points["offsite"]["dumps"]] == ["2026-10-31 01:00:00", "2026-10-30 01:00:00"]
    # each AT given back to restore picks exactly that dump
    local = dumps.dumps_in(tmp_path / "db" / "db")
    for p in points["local"]:
        assert restore.pick_dump(local, restore.parse_at(p["at"])).path.name == p["file"]
    with pytest.raises(proc.BackupError, match="not a backed-up database"):
        restore.restore_points(settings, "nope", offsite_listing=[])


def test_a_repository_restic_keeps_retrying_is_unreachable_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    """restic 0.17 and later (Debian 13's 0.18) retry a missing bucket for minutes instead of
    failing: the engine gives up after 90 s and names what restic was retrying."""
    err = ("Stat(<config/>) returned error, retrying after 941.662358ms: Stat: The specified bucket does not exist\n"
           "Stat(<config/>) returned error, retrying after 2.1s: Stat: The specified bucket does not exist\n")

    def timeout(*args: object, **kwargs: object) -> None:
        raise subprocess.TimeoutExpired(["restic", "cat", "config"], 90, output=b"", stderr=err.encode())

    monkeypatch.setattr(offsite, "restic", timeout)
    assert offsite.repo_state("/nonexistent.env") == (
        "unreachable: no answer within 90 s (restic kept retrying: The specified bucket does not exist); "
        "create the bucket at the provider")
