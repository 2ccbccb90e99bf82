"""Restores: a database from its newest (or chosen) local or offsite dump, in the owner's own session.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import stat
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from engine_common.envfile import env_with
from engine_common.safefs import install_file

from . import proc
from .dumps import Dump, checksum_ok, dump_one, dumps_in, layout, require_mount, stamp_of
from .offsite import latest_snapshot, restic
from .proc import PSQL, SQLITE_SIDECARS, STAMP_FORMAT, SUPERUSER, BackupError, log
from .settings import BackupSettings, Database


def pick_dump(dumps: list[Dump], at: datetime | None) -> Dump:
    """The newest dump, or the newest taken at or before ``at``."""
    for d in dumps:
        if at is None or d.stamp <= at:
            return d
    raise BackupError("no dump" + (f" taken at or before {at:%Y-%m-%d %H:%M:%S} UTC" if at else ""))


def parse_at(text: str | None) -> datetime | None:
    if not text:
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d", STAMP_FORMAT):
        with contextlib.suppress(ValueError):
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
    raise BackupError(f"AT={text!r}: give a UTC time like '2026-11-23 14:00:00'")


@contextlib.contextmanager
def offsite_dumps(settings: BackupSettings, db: str):
    """The db's dumps from the newest offsite snapshot, restored into a temporary directory."""
    target = settings.offsite.get("postgres")
    if not target:
        raise BackupError("FROM=offsite: this host declares no offsite repository for its dumps")
    snap = latest_snapshot(target)
    if snap is None:
        raise BackupError(f"no snapshot in {target.repository}")
    with tempfile.TemporaryDirectory(prefix="iac-restore-", dir="/var/tmp") as tmp:
        sub = layout(settings)["db"] / db
        proc.must(["restic", "restore", snap["short_id"], "--target", tmp, "--include", str(sub)],
             "restic restore", env=env_with(target.env_file))
        yield dumps_in(Path(tmp + str(sub))), snap


AT_FORMAT = "%Y-%m-%d %H:%M:%S"


def restore_points(settings: BackupSettings, db: str, offsite_listing: list[dict] | None = None) -> dict:
    """Where a restore of ``db`` can start, newest first, each with the ``AT=`` value that picks it
    (``restore DB --at``): every local dump, and every dump in the newest offsite snapshot (what
    ``restore --from offsite`` restores from). ``offsite_listing``: that snapshot's ``restic ls``
    nodes (read here when None)."""
    if db not in settings.local.databases:
        raise BackupError(f"{db} is not a backed-up database of this host "
                          f"({', '.join(sorted(settings.local.databases))})")
    local: list[dict] = []
    local_error = None
    try:
        require_mount(settings)
        local = [{"at": d.stamp.strftime(AT_FORMAT), "file": d.path.name, "bytes": d.path.stat().st_size}
                 for d in dumps_in(layout(settings)["db"] / db)]
    except (BackupError, OSError) as exc:
        local_error = str(exc)
    offsite: dict | None = None
    target = settings.offsite.get("postgres")
    if target:
        snap = latest_snapshot(target) if offsite_listing is None else {"short_id": "given", "time": ""}
        if snap is not None:
            sub = str(layout(settings)["db"] / db)
            if offsite_listing is None:
                done = restic(["ls", "--json", snap["short_id"], sub], env_file=target.env_file, timeout=300)
                if done.returncode != 0:
                    raise BackupError((done.stderr.strip().splitlines() or ["restic ls failed"])[-1])
                offsite_listing = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
            dumps = sorted(((stamp_of(n.get("name", "")), n) for n in offsite_listing
                            if n.get("type") == "file" and str(n.get("path", "")).startswith(sub + "/")),
                           key=lambda pair: pair[0] or datetime.min.replace(tzinfo=UTC), reverse=True)
            offsite = {"snapshot": snap["short_id"], "time": snap["time"],
                       "dumps": [{"at": st.strftime(AT_FORMAT), "file": n["name"], "bytes": n.get("size", 0)}
                                 for st, n in dumps if st is not None]}
    return {"database": db, "local": local, "local_error": local_error, "offsite": offsite}


def choose(settings: BackupSettings, db: str, source: str, at: datetime | None, stack: contextlib.ExitStack) -> Dump:
    if source == "offsite":
        dumps, _snap = stack.enter_context(offsite_dumps(settings, db))
    else:
        require_mount(settings)
        dumps = dumps_in(layout(settings)["db"] / db)
    dump = pick_dump(dumps, at)
    if not checksum_ok(dump):
        raise BackupError(f"{dump.path.name} does not match its .sha256: refusing to restore it")
    return dump


def psql_as(role: str, db: str, *args: str) -> list[str]:
    """psql in a session of ``role`` on ``db`` (run as the postgres system user, which the peer map
    lets connect as each owner role; no psqlrc; stop at the first error)."""
    return [*PSQL, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", role, "-d", db, *args]


def psql_script(role: str, database: str, script: str, what: str,
                variables: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``script`` (from stdin) as ``role`` on ``database``; names reach it only as psql
    variables, which it quotes itself (``:"name"`` an identifier, ``:'name'`` a literal)."""
    args = psql_as(role, database)
    for key, value in variables.items():
        args += ["-v", f"{key}={value}"]
    return proc.must([*args, "-f", "-"], what, input=script, cwd="/")


def restore_role(db: str, info: Database) -> str:
    """The role whose session restores and counts ``db``: its owner; for a database the superuser
    owns, the one app role that writes into it (its tables are that role's). Never the superuser
    on content an app wrote: its functions (a CHECK constraint, a generated column) run as the
    session, and ``SET ROLE``/``pg_restore --role`` under a superuser session can be reset by them."""
    owner, users = info.owner, list(info.users)
    if owner != SUPERUSER or not users:
        return owner
    if len(users) == 1:
        return users[0]
    raise BackupError(f"{db} is owned by {SUPERUSER} and written by several roles ({', '.join(users)}): "
                      "no single role can restore it without the superuser; restore it by hand")


GRANTS_SQL = """REVOKE CONNECT ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO :"owner";
"""


USER_GRANTS_SQL = """GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"{v}";
GRANT USAGE, CREATE ON SCHEMA public TO :"{v}";
"""


def grant_access(db: str, info: Database) -> None:
    """What the converge grants on a database (operations/postgres/deploy.py), on a new one: no CONNECT
    for PUBLIC, CONNECT for the owner, and for each app role that writes into another role's
    database CONNECT, TEMPORARY and CREATE in its public schema (run as the superuser: nothing
    from the dump is involved)."""
    users = list(info.users)
    script = GRANTS_SQL + "".join(USER_GRANTS_SQL.format(v=f"u{i}") for i in range(len(users)))
    psql_script(SUPERUSER, db, script, f"grants on {db}",
                {"db": db, "owner": info.owner, **{f"u{i}": u for i, u in enumerate(users)}})


def is_superuser(role: str) -> bool:
    """Whether ``role`` is a superuser (an unknown role is not)."""
    out = psql_script(SUPERUSER, "postgres", "select rolsuper from pg_catalog.pg_roles where rolname = :'role';\n",
                      f"looking up role {role}", {"role": role})
    return "t" in out.stdout.split()


def pg_restore_as(db: str, role: str, dump: Path, clean: bool = False) -> None:
    """Restore ``dump`` into ``db`` in a session of ``role`` (``--no-owner``: every object is
    ``role``'s). ``clean``: into a database that has the objects already, dropped and recreated
    in one transaction (a release's restore after a failed migration)."""
    args = [*PSQL, "pg_restore", "--exit-on-error", "--no-owner", "-U", role, "-d", db]
    if clean:
        args += ["--clean", "--if-exists", "--single-transaction"]
    with open(dump, "rb") as f:
        done = subprocess.run(args, stdin=f, capture_output=True, check=False, cwd="/")
    if done.returncode != 0:
        raise BackupError(f"pg_restore into {db} as {role} failed: "
                          f"{done.stderr.decode(errors='replace').strip()[-300:]}")


def recreate_database(db: str, info: Database) -> None:
    """``db`` dropped (its sessions ended) and created again, empty, owned by its owner, with the
    converge's grants."""
    terminate = ("SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity "
                 "WHERE datname = :'db' AND pid <> pg_catalog.pg_backend_pid();\n")
    psql_script(SUPERUSER, "postgres", terminate, "terminating sessions", {"db": db})
    proc.must([*PSQL, "dropdb", "--if-exists", db], f"dropdb {db}", cwd="/")
    proc.must([*PSQL, "createdb", "-O", info.owner, db], f"createdb {db}", cwd="/")
    grant_access(db, info)


def restore_postgres(db: str, info: Database, dump: Path) -> None:
    """The runbook's restore: the database recreated, then the dump restored as its owner."""
    role = restore_role(db, info)
    recreate_database(db, info)
    pg_restore_as(db, role, dump)


def cmd_pg_restore(db: str, dump: str, role: str, clean: bool) -> int:
    """``pg-restore``: a dump into an existing database, as ``role``, which must not be a superuser."""
    if is_superuser(role):
        raise BackupError(f"{role} is a superuser: a dump an app wrote is restored as the app's role")
    pg_restore_as(db, role, Path(dump), clean)
    log(f"restored {Path(dump).name} into {db} as {role}")
    return 0


def safety_dump(settings: BackupSettings, db: str, info: Database) -> Path | None:
    """The database as it is now, before a restore replaces it (kept under pre-restore/); none
    when the disk is not mounted, or an SQLite path holds no regular file (lost, or a link)."""
    if settings.local.mount and not os.path.ismount(settings.local.mount):
        return None
    if info.engine == "sqlite":
        try:
            regular = stat.S_ISREG(os.lstat(info.path).st_mode)
        except FileNotFoundError:
            regular = False
        if not regular:
            log(f"{info.path} is not a regular file: there is no current copy to keep")
            return None
    directory = layout(settings)["root"] / "pre-restore"
    gid = grp.getgrnam(settings.local.group).gr_gid
    directory.mkdir(parents=True, exist_ok=True)
    os.chown(directory, 0, gid)
    os.chmod(directory, 0o2750)
    stamp = datetime.now(UTC).strftime(STAMP_FORMAT)
    return dump_one(info.engine, info.path or db, directory, db, stamp, gid,
                    info.owner if info.engine == "sqlite" else None)


def cmd_restore(settings: BackupSettings, db: str, source: str, at_text: str | None) -> int:
    dbs = settings.local.databases
    if db not in dbs:
        raise BackupError(f"DB={db!r} is not a backed-up database here; known: {', '.join(dbs)}")
    info, at = dbs[db], parse_at(at_text)
    units = [u for u, used in settings.app_units.items() if db in used]
    with contextlib.ExitStack() as stack:
        dump = choose(settings, db, source, at, stack)
        if info.engine == "postgresql":
            restore_role(db, info)  # refused before anything is stopped
        log(f"restoring {db} from {source} dump {dump.path.name} (taken {dump.stamp:%Y-%m-%d %H:%M:%S} UTC)")
        safety = safety_dump(settings, db, info)
        if safety:
            log(f"the current {db} is kept in {safety}")
        for unit in units:
            log(f"stopping {unit}")
            proc.must(["systemctl", "stop", unit], f"systemctl stop {unit}")
        try:
            if info.engine == "postgresql":
                restore_postgres(db, info, dump.path)
            else:
                removed = install_file(dump.path, Path(info.path), info.owner, sidecars=SQLITE_SIDECARS)
                if removed:
                    log(f"removed the old file's {', '.join(removed)}")
        finally:
            for unit in units:
                log(f"starting {unit}")
                proc.run(["systemctl", "start", unit])
    print(json.dumps({"database": db, "from": source, "dump": dump.path.name,
                      "taken": dump.stamp.isoformat(), "units": units}))
    return 0
