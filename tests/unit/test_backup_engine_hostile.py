"""The backup engine treats what an app wrote as data, never as code or as a path to follow:
table names are quoted (SQLite in Python, read-only; PostgreSQL by the server), PostgreSQL work
runs in a session of the database's owner, a restored file is written into a file root created
exclusively and renamed into place, and the lock lives in a directory only root can write
(issue 20, findings 4-6)."""

from __future__ import annotations

import json
import os
import pwd
import shlex
import sqlite3
import subprocess
from functools import partial
from pathlib import Path

import pytest

from backup_engine import cli, drill, dumps, lock, proc, restore, sqlite
from backup_engine.settings import Database
from engine_common import safefs
from iac.render import render
from operations.backups import deploy as ops
from operations.host import HostConfig
from operations.postgres.cluster import Checks, PostgresState

REPO = Path(__file__).resolve().parents[2]

ME = pwd.getpwuid(os.getuid()).pw_name

HOSTILE_NAMES = [
    "a",
    "a\";VACUUM/**/INTO'pwned-vacuum.db';--",
    "x\"; ATTACH DATABASE 'pwned-attach.db' AS p; CREATE TABLE p.t(a); --",
    "it's", "with space", "quote\"in\"middle", "tab\tand\nnewline", "sqlite", "select", "%percent%",
]


def _db(path: Path, tables: dict[str, int]) -> Path:
    con = sqlite3.connect(path)
    for name, rows in tables.items():
        q = sqlite.quote_sqlite_ident(name)
        con.execute(f"create table {q} (a)")
        con.executemany(f"insert into {q} values (?)", [(i,) for i in range(rows)])
    con.commit()
    con.close()
    return path


@pytest.fixture
def hostile_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, int]]:
    monkeypatch.chdir(tmp_path)  # a relative ATTACH or VACUUM INTO would land here
    tables = {name: i + 1 for i, name in enumerate(HOSTILE_NAMES)}
    return _db(tmp_path / "app.sqlite3", tables), tables


# ---- SQLite ----------------------------------------------------------------------------------

def test_hostile_sqlite_table_names_are_counted_and_run_nothing(hostile_db, tmp_path: Path) -> None:
    path, tables = hostile_db
    before = sorted(p.name for p in tmp_path.iterdir())
    assert sqlite.sqlite_row_counts(str(path)) == tables
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no file created, no journal left


def test_counting_skips_virtual_tables_and_internal_ones(tmp_path: Path) -> None:
    path = _db(tmp_path / "v.sqlite3", {"plain": 2})
    con = sqlite3.connect(path)
    con.execute("create virtual table ft using fts5(body)")  # Debian's sqlite has fts5
    con.execute("insert into ft values ('x')")
    con.execute("create table auto (id integer primary key autoincrement)")  # makes sqlite_sequence
    con.execute("insert into auto default values")
    con.commit()
    con.close()
    counts = sqlite.sqlite_row_counts(str(path))
    assert counts["plain"] == 2 and counts["auto"] == 1 and "ft" not in counts
    assert not [n for n in counts if n.startswith("sqlite_")]
    assert counts["ft_data"] >= 1  # the rows live in its shadow tables, which are counted


def test_sqlite_connection_is_read_only_and_ignores_the_schemas_functions(tmp_path: Path) -> None:
    path = _db(tmp_path / "ro.sqlite3", {"t": 1})
    con = sqlite3.connect(path)
    con.execute("create view v as select load_extension('/tmp/x.so') as x")
    con.commit()
    con.close()
    ro = sqlite.sqlite_open(str(path))
    try:
        with pytest.raises(sqlite3.OperationalError):
            ro.execute("insert into t values (2)")
        with pytest.raises(sqlite3.OperationalError):
            ro.execute("select * from v").fetchall()
    finally:
        ro.close()
    assert sqlite.sqlite_row_counts(str(path)) == {"t": 1}  # views are not tables


def test_sqlite_uri_escapes_what_a_uri_would_read_as_parameters(tmp_path: Path) -> None:
    odd = tmp_path / "we?ird#name%20.sqlite3"
    _db(odd, {"t": 3})
    assert sqlite.sqlite_uri(str(odd)).endswith("we%3fird%23name%2520.sqlite3?mode=ro")
    assert sqlite.sqlite_row_counts(str(odd)) == {"t": 3}
    with pytest.raises(sqlite3.OperationalError):  # mode=ro never creates a missing file
        sqlite.sqlite_row_counts(str(tmp_path / "missing.sqlite3"))
    assert not (tmp_path / "missing.sqlite3").exists()


def test_sqlite_copy_is_a_valid_database_with_the_same_rows(hostile_db, tmp_path: Path) -> None:
    path, tables = hostile_db
    copy = tmp_path / "copy.sqlite3"
    copy.write_bytes(sqlite.sqlite_copy(str(path)))
    assert sqlite.sqlite_integrity(str(copy)) == "ok"
    assert sqlite.sqlite_row_counts(str(copy)) == tables
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"SQLite format 3\0" + b"\xff" * 200)
    assert sqlite.sqlite_integrity(str(garbage)) != "ok"


def test_a_copy_of_a_wal_database_is_read_without_files_beside_it(tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    con = sqlite3.connect(live / "db.sqlite3")
    con.execute("pragma journal_mode=wal")
    con.execute("create table t (a)")
    con.executemany("insert into t values (?)", [(i,) for i in range(4)])
    con.commit()
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    (dumps / "copy.sqlite3").write_bytes(sqlite.sqlite_copy(str(live / "db.sqlite3")))
    con.close()
    assert sqlite.sqlite_integrity(str(dumps / "copy.sqlite3")) == "ok"
    assert sqlite.sqlite_row_counts(str(dumps / "copy.sqlite3"), immutable=True) == {"t": 4}
    assert [p.name for p in dumps.iterdir()] == ["copy.sqlite3"]


def test_dump_of_an_sqlite_file_is_validated_and_checksummed(hostile_db, tmp_path: Path) -> None:
    path, tables = hostile_db
    out = tmp_path / "dumps"
    out.mkdir()
    dump = dumps.dump_one("sqlite", str(path), out, "app", "20261101_010000", os.getgid(), owner=None)
    assert dumps.checksum_ok(dumps.Dump(dump, dumps.stamp_of(dump.name)))
    assert sqlite.sqlite_row_counts(str(dump)) == tables


def test_sqlite_user_is_the_declared_owner_or_the_owner_of_the_directory(tmp_path: Path) -> None:
    assert sqlite.sqlite_user(str(tmp_path / "db.sqlite3"), "chip_dashboard") == "chip_dashboard"
    expected = None if os.getuid() == 0 else ME
    assert sqlite.sqlite_user(str(tmp_path / "db.sqlite3")) == expected


def test_live_counts_from_an_app_user_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The app's user could print anything: only a name -> integer object is accepted."""
    calls = []

    def fake_must(cmd, what, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout=fake_must.out, stderr="")

    monkeypatch.setattr(proc, "must", fake_must)
    fake_must.out = json.dumps({"t": 3, "it's": 1})
    assert sqlite.live_sqlite_counts("/var/lib/app/db.sqlite3", "app") == {"t": 3, "it's": 1}
    assert calls[0][:4] == ["runuser", "-u", "app", "--"] and calls[0][-2:] == ["sqlite-counts",
                                                                              "/var/lib/app/db.sqlite3"]
    assert "-I" in calls[0]
    for bad in ("[1, 2]", '{"t": "3"}', '{"t": true}', "not json", '{"t": 1.5}'):
        fake_must.out = bad
        with pytest.raises(proc.BackupError):
            sqlite.live_sqlite_counts("/var/lib/app/db.sqlite3", "app")


# ---- the restored file ------------------------------------------------------------------------

@pytest.fixture
def restore_dir(tmp_path: Path) -> tuple[Path, Path, Path]:
    """An app directory with a database in it, a dump to restore and a root file outside."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    _db(app_dir / "db.sqlite3", {"old": 1})
    dump = _db(tmp_path / "dump.sqlite3", {"restored": 5})
    outside = tmp_path / "outside"
    outside.write_text("root only\n")
    return app_dir, dump, outside


def test_restore_writes_through_no_planted_link(restore_dir) -> None:
    app_dir, dump, outside = restore_dir
    (app_dir / ".db.sqlite3.restore").symlink_to(outside)  # the old temporary name
    (app_dir / "db.sqlite3-journal").symlink_to(outside)  # a stale journal pointing outside
    (app_dir / "db.sqlite3-wal").write_text("stale")
    removed = safefs.install_file(dump, app_dir / "db.sqlite3", ME, sidecars=proc.SQLITE_SIDECARS)
    assert sorted(removed) == ["db.sqlite3-journal", "db.sqlite3-wal"]
    assert outside.read_text() == "root only\n"
    target = app_dir / "db.sqlite3"
    assert not target.is_symlink() and oct(target.stat().st_mode & 0o777) == "0o640"
    assert sqlite.sqlite_row_counts(str(target)) == {"restored": 5}
    leftovers = sorted(p.name for p in app_dir.iterdir())
    assert leftovers == [".db.sqlite3.restore", "db.sqlite3"]  # the planted link is left alone


def test_restore_replaces_a_dangling_link_instead_of_following_it(restore_dir, tmp_path: Path) -> None:
    app_dir, dump, _outside = restore_dir
    target = app_dir / "db.sqlite3"
    target.unlink()
    nowhere = tmp_path / "etc-file-that-does-not-exist"
    target.symlink_to(nowhere)
    safefs.install_file(dump, target, ME)
    assert not nowhere.exists() and not target.is_symlink()
    assert sqlite.sqlite_row_counts(str(target)) == {"restored": 5}


def test_restore_refuses_a_directory_that_is_a_link(restore_dir, tmp_path: Path) -> None:
    app_dir, dump, _outside = restore_dir
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "linked-app"
    link.symlink_to(elsewhere)
    with pytest.raises(OSError):
        safefs.install_file(dump, link / "db.sqlite3", ME)
    assert list(elsewhere.iterdir()) == []


def test_a_failed_restore_leaves_no_temporary_file(restore_dir, tmp_path: Path) -> None:
    app_dir, _dump, _outside = restore_dir
    with pytest.raises(OSError):
        safefs.install_file(tmp_path / "no-such-dump", app_dir / "db.sqlite3", ME)
    assert sorted(p.name for p in app_dir.iterdir()) == ["db.sqlite3"]
    assert sqlite.sqlite_row_counts(str(app_dir / "db.sqlite3")) == {"old": 1}


def test_sqlite_restore_command_for_the_release_engine(restore_dir, capsys) -> None:
    app_dir, dump, outside = restore_dir
    (app_dir / "db.sqlite3-journal").symlink_to(outside)
    assert cli.main(["sqlite-restore", str(dump), str(app_dir / "db.sqlite3"), "--owner", ME]) == 0
    assert sqlite.sqlite_row_counts(str(app_dir / "db.sqlite3")) == {"restored": 5}
    assert outside.read_text() == "root only\n" and not (app_dir / "db.sqlite3-journal").is_symlink()
    assert cli.main(["sqlite-restore", str(dump), str(app_dir / "db.sqlite3"), "--owner", "no-such-user-x"]) == 1
    assert "ERROR" in capsys.readouterr().err


# ---- PostgreSQL ------------------------------------------------------------------------------

def test_restore_role_is_never_the_superuser_on_what_an_app_wrote() -> None:
    role = restore.restore_role
    pg = partial(Database, "postgresql")
    assert role("gts_scheduler", pg(owner="rental_scheduler_user", users=[])) == "rental_scheduler_user"
    assert role("rentals", pg(owner="postgres", users=["rental_scheduler_user"])) == "rental_scheduler_user"
    assert role("unused", pg(owner="postgres", users=[])) == "postgres"  # no app can write there
    assert role("old_settings", pg(owner="shop_user")) == "shop_user"
    with pytest.raises(proc.BackupError, match="several roles"):
        role("shared", pg(owner="postgres", users=["a_user", "b_user"]))


def test_lan_settings_restore_every_app_database_as_an_app_role(lan_config: HostConfig) -> None:
    lan = lan_config
    dbs = ops.backup_settings(lan).local.databases
    assert dbs["gingerich_trailer_rentals"].users == ["rental_scheduler_user"]
    roles = {db: restore.restore_role(db, info) for db, info in dbs.items()}
    assert roles == {"gts_scheduler": "rental_scheduler_user", "gingerich_trailer_rentals": "rental_scheduler_user",
                     "gts_shop_scheduler": "shop_scheduler_user", "gingerich_trailer": "postgres"}


class Recorder:
    """Stands in for ``must``: records each command and its stdin, answers ``out``."""

    def __init__(self, out: str = "") -> None:
        self.out, self.calls = out, []

    def __call__(self, cmd, what, **kw):
        self.calls.append((cmd, kw.get("input")))
        return subprocess.CompletedProcess(cmd, 0, stdout=self.out, stderr="")


def test_postgres_counts_quote_names_on_the_server_as_the_owner(monkeypatch: pytest.MonkeyPatch) -> None:
    names = {"public.\"t'||public.iac_pwn()||'\"": 3, 'public."tab\tnew\nline"': 1, "public.plain": 0}
    rec = Recorder(json.dumps(names) + "\n")
    monkeypatch.setattr(proc, "must", rec)
    assert drill.pg_row_counts("gts_scheduler", "rental_scheduler_user") == names
    (cmd, _stdin), = rec.calls
    assert cmd[:4] == ["runuser", "-u", "postgres", "--"]
    assert cmd[cmd.index("-U") + 1] == "rental_scheduler_user" and cmd[cmd.index("-d") + 1] == "gts_scheduler"
    assert "-X" in cmd and drill.COUNT_SQL in cmd and "SET search_path = pg_catalog" in cmd
    assert "%I.%I" in drill.COUNT_SQL and "'{}'" in drill.COUNT_SQL  # names quoted by format(), never here


def test_grants_and_restore_pass_names_as_psql_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder()
    monkeypatch.setattr(proc, "must", rec)
    restore.grant_access("gingerich_trailer_rentals", Database("postgresql", owner="postgres",
                                                            users=["rental_scheduler_user"]))
    (cmd, script), = rec.calls
    assert cmd[cmd.index("-U") + 1] == "postgres" and cmd[-2:] == ["-f", "-"]
    assert "db=gingerich_trailer_rentals" in cmd and "u0=rental_scheduler_user" in cmd
    assert "REVOKE CONNECT ON DATABASE :\"db\" FROM PUBLIC" in script and "TO :\"u0\"" in script
    assert "gingerich" not in script and "rental" not in script


def test_pg_restore_runs_in_the_owners_session(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = {}

    def fake_run(cmd, **kw):
        seen["cmd"] = cmd
        return subprocess.CompletedProcess(cmd, 0, stdout=b"", stderr=b"")

    monkeypatch.setattr(subprocess, "run", fake_run)
    dump = tmp_path / "x.dump"
    dump.write_bytes(b"PGDMP")
    restore.pg_restore_as("gts_scheduler", "rental_scheduler_user", dump, clean=True)
    cmd = seen["cmd"]
    assert cmd[cmd.index("-U") + 1] == "rental_scheduler_user" and "--no-owner" in cmd
    assert not [a for a in cmd if a.startswith("--role")]  # SET ROLE under a superuser can be reset
    assert {"--clean", "--if-exists", "--single-transaction", "--exit-on-error"} <= set(cmd)


def test_pg_ident_lets_postgres_be_each_login_role() -> None:
    text = render("etc/postgresql/major/main/pg_ident.conf.j2",
                  mappings=[("rental_scheduler", "rental_scheduler_user")],
                  engine_roles=["rental_scheduler_user", "shop_scheduler_user"])
    lines = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
    assert ["iac", "postgres", "shop_scheduler_user"] in lines and ["iac", "postgres", "postgres"] not in lines


def test_the_cluster_fact_takes_names_as_variables_and_reads_only_its_json() -> None:
    checks = Checks(connect=(("gts_scheduler", "rental_scheduler_user"),),
                    schema=(("gingerich_trailer_rentals", "rental_scheduler_user"),))
    cmd = PostgresState().command(**checks.fact_args())
    words = shlex.split(cmd)
    assert {"cd0=gts_scheduler", "co0=rental_scheduler_user", "sd0=gingerich_trailer_rentals"} <= set(words)
    script = next(w for w in words if "json_build_object" in w)
    assert "has_database_privilege('public', :'cd0', 'CONNECT')" in script and "\\connect :sd0" in script
    assert not any(name in script for name in ("gts_scheduler", "rental_scheduler_user", "gingerich"))
    state = PostgresState().process([
        "psql: a warning line", '"just a string"',
        '{"roles": {"x": {"login": true}}, "databases": {"d": {"owner": "x"}}}',
        '{"connect": "gts_scheduler rental_scheduler_user", "ok": true}',
        '{"schema": "gingerich_trailer_rentals rental_scheduler_user", "ok": "t"}'])
    assert state == {"roles": {"x": {"login": True}}, "databases": {"d": {"owner": "x"}},
                     "connect": {"gts_scheduler rental_scheduler_user": True},
                     "schema": {"gingerich_trailer_rentals rental_scheduler_user": False}}  # only JSON true is true
    with pytest.raises(ValueError, match="without its roles and databases"):
        PostgresState().process(['{"connect": "a b", "ok": true}'])


# ---- the lock ------------------------------------------------------------------------------

def test_lock_lives_in_a_directory_only_its_owner_can_write(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lock_dir = tmp_path / "run-iac"
    monkeypatch.setattr(lock, "LOCK_DIR", lock_dir)
    with lock.locked("dump"):
        assert (lock_dir / "iac-backup-dump.lock").exists()
    assert oct(lock_dir.stat().st_mode & 0o777) == "0o700"
    os.chmod(lock_dir, 0o777)
    with pytest.raises(proc.BackupError), lock.locked("dump"):
        pass
    os.chmod(lock_dir, 0o700)
    linked = tmp_path / "linked"
    linked.symlink_to(lock_dir)
    monkeypatch.setattr(lock, "LOCK_DIR", linked)
    with pytest.raises(proc.BackupError), lock.locked("dump"):
        pass
