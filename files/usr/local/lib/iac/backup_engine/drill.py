"""The restore drill (scratch databases, rows compared) and the system state staged for a rebuild.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from engine_common.envfile import env_with

from . import proc
from .dumps import Dump, checksum_ok
from .proc import PSQL, BackupError, log
from .restore import choose, pg_restore_as, psql_as, recreate_database, restore_role
from .settings import BackupSettings, Database
from .sqlite import live_sqlite_counts, sqlite_row_counts

COUNT_SQL = """select coalesce(pg_catalog.json_object_agg(t.name, t.n), '{}')
from (select pg_catalog.format('%I.%I', s.schemaname, s.relname) as name,
             (pg_catalog.xpath('/row/n/text()', pg_catalog.query_to_xml(pg_catalog.format(
                 'select pg_catalog.count(*) as n from %I.%I', s.schemaname, s.relname), false, true, '')))[1]
             ::text::bigint as n
      from pg_catalog.pg_stat_user_tables s) t"""


def pg_row_counts(db: str, role: str) -> dict[str, int]:
    """Rows per table of ``db``, counted in a session of ``role``: every name is quoted by the
    server (``format('%I')``), the result comes back as one JSON object."""
    out = proc.must(psql_as(role, db, "-tA", "-c", "SET search_path = pg_catalog", "-c", COUNT_SQL),
               f"counting rows of {db} as {role}", cwd="/").stdout
    try:
        counts = json.loads(out.strip() or "{}")
    except json.JSONDecodeError as exc:
        raise BackupError(f"counting rows of {db}: not JSON ({exc})") from None
    if not isinstance(counts, dict):
        raise BackupError(f"counting rows of {db}: not a table -> rows object")
    return {str(name): int(n) for name, n in counts.items()}


def drill_one(db: str, info: Database, dump: Dump) -> dict:
    if not checksum_ok(dump):
        return {"dump": dump.path.name, "ok": False, "error": "sha256 mismatch"}
    if info.engine == "postgresql":
        role = restore_role(db, info)
        scratch = f"iac_drill_{db}"[:63]
        try:
            recreate_database(scratch, info)
            pg_restore_as(scratch, role, dump.path)
            restored, live = pg_row_counts(scratch, role), pg_row_counts(db, role)
        finally:
            proc.run([*PSQL, "dropdb", "--if-exists", scratch], cwd="/")
    else:
        with tempfile.TemporaryDirectory(prefix="iac-drill-", dir="/var/tmp") as tmp:
            copy = Path(tmp) / "db.sqlite3"
            shutil.copyfile(dump.path, copy)
            restored = sqlite_row_counts(str(copy), immutable=True)
        live = live_sqlite_counts(info.path, info.owner)
    differing = {t: [restored.get(t), live.get(t)] for t in sorted(set(restored) | set(live))
                 if restored.get(t) != live.get(t)}
    return {"dump": dump.path.name, "taken": dump.stamp.isoformat(), "ok": True, "tables": len(restored),
            "rows": sum(restored.values()), "rows_equal": not differing, "differing": differing}


def cmd_drill(settings: BackupSettings) -> int:
    report: dict = {"host": settings.host, "databases": {}, "system_state": None}
    failed = False
    dbs = settings.local.databases
    for db, info in dbs.items():
        entry: dict = {}
        with contextlib.ExitStack() as stack:
            for source in ["local"] + (["offsite"] if settings.offsite.get("postgres") else []):
                started = time.monotonic()
                try:
                    entry[source] = drill_one(db, info, choose(settings, db, source, None, stack))
                except BackupError as exc:
                    entry[source] = {"ok": False, "error": str(exc)}
                entry[source]["seconds"] = round(time.monotonic() - started, 1)
                failed |= not (entry[source]["ok"] and entry[source].get("rows_equal"))
        report["databases"][db] = entry
    target = settings.offsite.get("system_state")
    if target:
        with tempfile.TemporaryDirectory(prefix="iac-drill-state-", dir="/var/tmp") as tmp:
            env = env_with(target.env_file)
            done = proc.run(["restic", "restore", "latest", "--tag", target.tag, "--target", tmp], env=env)
            wanted = [p for p in target.includes if "*" not in p]
            missing = [p for p in wanted if not Path(tmp + p).exists()]
            report["system_state"] = {"ok": done.returncode == 0 and not missing, "missing": missing,
                                      "error": done.stderr.strip()[-300:] if done.returncode else None}
            failed |= not report["system_state"]["ok"]
    report["ok"] = not failed
    print(json.dumps(report, indent=2))
    return 2 if failed else 0


def row_counts(settings: BackupSettings) -> dict[str, dict[str, int]]:
    """Rows per table of every backed-up database, each counted as its owner (``counts``)."""
    return {db: (pg_row_counts(db, restore_role(db, info)) if info.engine == "postgresql"
                 else live_sqlite_counts(info.path, info.owner))
            for db, info in settings.local.databases.items()}


def stage_state(settings: BackupSettings, directory: str) -> int:
    """Restore the newest system-state snapshot of this host (by its declared name) into a
    staging directory, marked complete only when restic succeeded."""
    target = settings.offsite.get("system_state")
    if not target:
        raise BackupError("no system-state repository is declared for this host")
    staging = Path(directory)
    if (staging / ".iac-complete").exists():
        log(f"system state already staged in {staging}")
        return 0
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True, mode=0o700)
    env = env_with(target.env_file)
    proc.must(["restic", "restore", "latest", "--tag", target.tag, "--host", settings.host,
          "--target", str(staging)], "restic restore of the system state", env=env)
    (staging / ".iac-complete").write_text(datetime.now(UTC).isoformat() + "\n")
    log(f"system state of {settings.host} staged in {staging}")
    return 0
