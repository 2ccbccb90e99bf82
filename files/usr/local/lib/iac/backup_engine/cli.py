"""iac-backup: the host side of the backups declared in the repo's model (BackupsSection).

Reads one settings file written by the converge (``/etc/iac/backup.json``, no secrets). Secrets
(restic password, S3 keys, webhook) reach it only through the environment, which systemd loads
from root-only ``EnvironmentFile=`` files; the ``env-exec`` command applies the same files for an
operator's shell, with the parser below (never by sourcing them in a shell).

Commands (each a stage function below; exit 0 success, 1 failure, 2 stale/mismatch):
  dump          local dumps of every declared database + globals, validated, then pruned
  offsite NAME  restic backup of the local dumps (NAME=postgres) or of the system state
                (NAME=system_state), then forget --prune with the declared policy
  check NAME    restic check of a repository
  status        JSON: newest dump per database, newest snapshot per repository, units
  restore DB    the runbook's local-first restore, from local or offsite, newest or at a time
  points DB     JSON: where a restore of DB can start (local dumps, the newest offsite snapshot's
                dumps), newest first, each with the --at value that picks it
  drill         restore newest local and offsite dumps into scratch databases, compare rows
  alert UNIT    one message to the webhook about a failed unit (run by OnFailure=)
  counts        JSON: rows per table of every backed-up database (the disaster-recovery drill)
  stage-state DIR   the newest system-state snapshot of this host, restored into DIR (not over
                the live system): what a rebuild takes from it that the model does not declare
  snapshot ENGINE SOURCE DIR NAME   one validated, checksummed dump (a release's pre-migrate
                backup: ENGINE postgresql|sqlite, SOURCE the database name or file); prints its path
  pg-restore DB DUMP --role ROLE [--clean]   restore a dump into an existing database connected
                as ROLE (never a superuser): a release's restore after a failed migration
  sqlite-restore DUMP TARGET --owner USER   a dump put in place of an app's SQLite file, owned by
                USER, through a temporary file root creates exclusively (the release's restore)
  sqlite-counts PATH / sqlite-copy PATH   internal: run as an app's user by the commands above
  env-exec FILE -- CMD...   run CMD with FILE's variables (restic-system-state-env.sh)

Root never works on what an app can write as root: PostgreSQL content is restored and counted in
a session of the database's owner role (never a superuser session: ``SET ROLE`` under a superuser
can be undone by the app's own functions), SQLite files in an app's directory are read by the
app's own user, and a restored file reaches an app's directory only through a file created
exclusively by root and renamed into place.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import socket
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

from engine_common.envfile import env_exec
from engine_common.safefs import UnsafePath, install_file

from . import rekey
from .drill import cmd_drill, row_counts, stage_state
from .dumps import cmd_dump, dump_one
from .offsite import cmd_check, cmd_offsite, ensure_repo, repo_known, repo_state
from .proc import SQLITE_SIDECARS, STAMP_FORMAT, BackupError, log
from .restore import cmd_pg_restore, cmd_restore, restore_points
from .settings import load_settings
from .sqlite import sqlite_copy, sqlite_row_counts
from .status import cmd_alert, status


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="iac-backup", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("dump")
    for name in ("offsite", "check"):
        s = sub.add_parser(name)
        s.add_argument("target", choices=["postgres", "system_state"])
        if name == "offsite":
            s.add_argument("--time", help="snapshot time (tests of the forget policy)")
    sub.add_parser("status")
    r = sub.add_parser("restore")
    r.add_argument("database")
    r.add_argument("--from", dest="source", choices=["local", "offsite"], default="local")
    r.add_argument("--at")
    sub.add_parser("points").add_argument("database")
    sub.add_parser("drill")
    a = sub.add_parser("alert")
    a.add_argument("unit")
    sub.add_parser("counts")
    sub.add_parser("stage-state").add_argument("directory")
    snap = sub.add_parser("snapshot")
    snap.add_argument("engine", choices=["postgresql", "sqlite"])
    snap.add_argument("source")
    snap.add_argument("directory")
    snap.add_argument("name")
    pgr = sub.add_parser("pg-restore")
    pgr.add_argument("database")
    pgr.add_argument("dump")
    pgr.add_argument("--role", required=True)
    pgr.add_argument("--clean", action="store_true")
    sqr = sub.add_parser("sqlite-restore")
    sqr.add_argument("dump")
    sqr.add_argument("target")
    sqr.add_argument("--owner", required=True)
    for name in ("sqlite-counts", "sqlite-copy"):
        sub.add_parser(name).add_argument("path")
    for name in ("repo-state", "ensure-repo"):
        sub.add_parser(name).add_argument("env_file")
    sub.add_parser("repo-known").add_argument("env_file")
    rk = sub.add_parser("rekey", help="a new restic password (stdin) beside the old, then the old removed")
    rk.add_argument("env_file")
    rk.add_argument("stage", choices=["add", "finish", "revert"])
    e = sub.add_parser("env-exec")
    e.add_argument("env_file")
    e.add_argument("argv", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    try:
        if args.cmd == "env-exec":
            cmdline = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
            if not cmdline:
                raise BackupError("env-exec FILE -- COMMAND [ARGS...]")
            return env_exec(args.env_file, cmdline)
        if args.cmd == "repo-state":
            print(repo_state(args.env_file))
            return 0
        if args.cmd == "repo-known":
            print(repo_known(args.env_file))
            return 0
        if args.cmd == "rekey":
            out = rekey.add(args.env_file, sys.stdin.readline().rstrip("\n")) if args.stage == "add" \
                else rekey.finish(args.env_file) if args.stage == "finish" else rekey.revert(args.env_file)
            print(json.dumps(out))
            return 0
        if args.cmd == "ensure-repo":
            return ensure_repo(args.env_file)
        if args.cmd == "sqlite-counts":
            print(json.dumps(sqlite_row_counts(args.path)))
            return 0
        if args.cmd == "sqlite-copy":
            sys.stdout.buffer.write(sqlite_copy(args.path))
            return 0
        if args.cmd == "pg-restore":
            return cmd_pg_restore(args.database, args.dump, args.role, args.clean)
        if args.cmd == "sqlite-restore":
            removed = install_file(Path(args.dump), Path(args.target), args.owner, sidecars=SQLITE_SIDECARS)
            log(f"restored {Path(args.dump).name} to {args.target} (owner {args.owner}; removed: "
                f"{', '.join(removed) or 'nothing'})")
            return 0
        if args.cmd == "snapshot":
            stamp = datetime.now(UTC).strftime(STAMP_FORMAT)
            print(dump_one(args.engine, args.source, Path(args.directory), args.name, stamp, 0))
            return 0
        settings = load_settings()
        if not settings.host:
            settings = dataclasses.replace(settings, host=socket.gethostname())
        if args.cmd == "dump":
            return cmd_dump(settings)
        if args.cmd == "offsite":
            return cmd_offsite(settings, args.target, args.time)
        if args.cmd == "check":
            return cmd_check(settings, args.target)
        if args.cmd == "status":
            rep = status(settings)
            print(json.dumps(rep, indent=2))
            return 0 if rep["ok"] else 2
        if args.cmd == "restore":
            return cmd_restore(settings, args.database, args.source, args.at)
        if args.cmd == "points":
            print(json.dumps(restore_points(settings, args.database)))
            return 0
        if args.cmd == "drill":
            return cmd_drill(settings)
        if args.cmd == "counts":
            print(json.dumps(row_counts(settings), indent=2))
            return 0
        if args.cmd == "stage-state":
            return stage_state(settings, args.directory)
        if args.cmd == "alert":
            return cmd_alert(settings, args.unit)
    except (BackupError, OSError, sqlite3.Error, UnsafePath) as exc:
        log(f"ERROR: {exc}")
        return 1
    return 1
