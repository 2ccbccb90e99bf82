"""The databases' side of the boundary between each app and root (issue 20, findings 4-6 and
PUBLIC CONNECT): each test acts as an app's own user on the converged sandbox (its system user,
peer-authenticated as its role, or writing its own SQLite file), plants what a takeover of the app
could plant, then runs the root path that used to follow it (dump, drill, counts, restore, the
release's pg-restore). The planted function never runs as a superuser, no file appears outside,
the restore still brings every row back, and the restored file belongs to the app.

Each test plants, checks and removes its own objects and the dumps it made (the sandbox is shared
with the other test files; no test depends on another's order).
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
from collections.abc import Iterator

import pytest

from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.usefixtures("converged")

LAN_ROOT = "/mnt/pg_backups/postgres"
RENTAL = ("rental_scheduler", "rental_scheduler_user", "gts_scheduler")  # system user, role, database
MARKER = "/var/lib/postgresql/iac-boundary-marker"  # what postgres would write if the app's code ran as it
SQLITE = "/var/lib/chip_dashboard/db.sqlite3"
PUBLIC_ROOT = "/var/backups/chip_dashboard"
APP = "chip_dashboard"


def sh(sandbox: Sandbox, role: str, command: str, check: bool = True,
       stdin: str | None = None) -> subprocess.CompletedProcess:
    """A root shell command on a sandbox host (from / : runuser keeps the working directory)."""
    return sandbox.world.ssh(role, f"cd / && {command}", check=check, input=stdin)


def as_app_psql(sandbox: Sandbox, sql: str, check: bool = True) -> subprocess.CompletedProcess:
    """SQL as the rental app connects: its system user, peer-authenticated as its role."""
    user, role, db = RENTAL
    return sh(sandbox, "lan", f"runuser -u {user} -- psql -X -q -tA -v ON_ERROR_STOP=1 -U {role} -d {db} -f -",
              check=check, stdin=sql)


def superuser_roles(sandbox: Sandbox) -> list[str]:
    out = sh(sandbox, "lan", "runuser -u postgres -- psql -X -tAc "
                             "'select rolname from pg_roles where rolsuper order by 1'").stdout
    return out.split()


def listing(sandbox: Sandbox, role: str, dirs: list[str]) -> set[str]:
    out = sh(sandbox, role, f"find {' '.join(dirs)} -maxdepth 1 -type f 2>/dev/null || true").stdout
    return set(out.split())


@contextlib.contextmanager
def made_files(sandbox: Sandbox, role: str, dirs: list[str]) -> Iterator[None]:
    """Every file that appears in ``dirs`` meanwhile (the test's dumps) is removed afterwards."""
    before = listing(sandbox, role, dirs)
    try:
        yield
    finally:
        new = sorted(listing(sandbox, role, dirs) - before)
        if new:
            sh(sandbox, role, "rm -f -- " + " ".join(new))


def drill(sandbox: Sandbox, role: str) -> dict:
    """`make restore-drill`'s engine command on one host (exit 2 when offsite has nothing yet)."""
    run = sh(sandbox, role, "/usr/local/lib/iac/iac_backup.py drill", check=False)
    assert run.returncode in (0, 2), run.stderr[-2000:]
    return json.loads(run.stdout)


def snapshot_lan(sandbox: Sandbox) -> None:
    """A fresh validated dump of gts_scheduler where the drill and restore look for the newest (the
    dump directories are made by the dump engine on a host whose timer has not fired yet)."""
    sh(sandbox, "lan", f"test -d {LAN_ROOT}/db/gts_scheduler || iac-backup dump >/dev/null 2>&1; "
                       f"iac-backup snapshot postgresql gts_scheduler {LAN_ROOT}/db/gts_scheduler gts_scheduler")


def counts(sandbox: Sandbox, role: str) -> dict:
    return json.loads(sh(sandbox, role, "iac-backup counts").stdout)


def assert_no_escalation(sandbox: Sandbox, after: str) -> None:
    """The app's role is no superuser and postgres wrote no marker."""
    assert superuser_roles(sandbox) == ["postgres"], f"the app's role became superuser during {after}"
    assert sh(sandbox, "lan", f"test -e {MARKER}", check=False).returncode != 0, f"postgres ran app code ({after})"


def undo_escalation(sandbox: Sandbox) -> None:
    """Puts the shared sandbox back even when a test failed: no app superuser, no marker."""
    sh(sandbox, "lan", f"runuser -u postgres -- psql -X -q -c 'alter role {RENTAL[1]} nosuperuser'; rm -f {MARKER}",
       check=False)


# ---- finding 4: row counts build no SQL from table names -------------------------------------

PWN = """create function public.iac_pwn() returns text language plpgsql as $f$
begin
  begin execute 'alter role rental_scheduler_user superuser'; exception when others then null; end;
  begin execute $c$copy (select 1) to '""" + MARKER + """'$c$; exception when others then null; end;
  return '';
end $f$;
create table public."t'||public.iac_pwn()||'" (a int);
insert into public."t'||public.iac_pwn()||'" select generate_series(1, 3);
"""


def test_pg_table_name_never_runs_the_apps_function_as_postgres(sandbox: Sandbox) -> None:
    """A table named `t'||public.iac_pwn()||'`: the drill's and counts' SQL used to paste it into
    a string literal run by postgres, so the app's function made its role superuser."""
    assert RENTAL[1] not in superuser_roles(sandbox)
    try:
        with made_files(sandbox, "lan", [f"{LAN_ROOT}/db/gts_scheduler"]):
            as_app_psql(sandbox, PWN)
            snapshot_lan(sandbox)
            report = drill(sandbox, "lan")["databases"]["gts_scheduler"]["local"]
            assert_no_escalation(sandbox, "the drill")
            assert report["ok"] and report["rows_equal"], report
            live = counts(sandbox, "lan")["gts_scheduler"]
            assert_no_escalation(sandbox, "counts")
            assert live["public.\"t'||public.iac_pwn()||'\""] == 3, live
    finally:
        undo_escalation(sandbox)
        as_app_psql(sandbox, "drop table if exists public.\"t'||public.iac_pwn()||'\";\n"
                             "drop function if exists public.iac_pwn();\n", check=False)


# ---- finding 5: a dump's functions run as the owner, never as postgres ---------------------

ESCALATE = """create function public.iac_escalate(v int) returns boolean language plpgsql as $f$
begin
  -- a superuser session with SET ROLE (pg_restore --role) would be reset here
  begin perform pg_catalog.set_config('role', 'none', false); exception when others then null; end;
  begin execute 'alter role rental_scheduler_user superuser'; exception when others then null; end;
  begin execute $c$copy (select 1) to program 'touch """ + MARKER + """'$c$; exception when others then null; end;
  return true;
end $f$;
create function public.iac_generated(v int) returns int language plpgsql immutable as $f$
begin
  perform public.iac_escalate(v);
  return v;
end $f$;
create table public.iac_checked (
  a int check (public.iac_escalate(a)),
  b int generated always as (public.iac_generated(a)) stored,
  c int default 1 check (public.iac_escalate(c)));
insert into public.iac_checked (a) select generate_series(1, 5);
"""


def test_check_constraint_in_a_dump_never_runs_as_postgres(sandbox: Sandbox) -> None:
    """A CHECK constraint and a generated column call the app's function, which tries to become
    superuser, to run a program as postgres and to reset a SET ROLE: the drill, the runbook's
    restore and the release's restore (pg-restore --clean) evaluate them in the owner's session."""
    try:
        with made_files(sandbox, "lan", [f"{LAN_ROOT}/db/gts_scheduler", f"{LAN_ROOT}/pre-restore"]):
            as_app_psql(sandbox, ESCALATE)
            snapshot_lan(sandbox)
            newest = sh(sandbox, "lan", f"ls -1t {LAN_ROOT}/db/gts_scheduler/*.dump | head -n1").stdout.strip()

            report = drill(sandbox, "lan")["databases"]["gts_scheduler"]["local"]
            assert_no_escalation(sandbox, "the drill")
            assert report["ok"] and report["rows_equal"], report
            restore = sh(sandbox, "lan", "iac-backup restore gts_scheduler", check=False)
            assert_no_escalation(sandbox, "the restore")
            assert restore.returncode == 0, restore.stderr[-2000:]
            release = sh(sandbox, "lan", f"iac-backup pg-restore gts_scheduler {newest} --role {RENTAL[1]} --clean",
                         check=False)
            assert_no_escalation(sandbox, "the release's restore")
            assert release.returncode == 0, release.stderr[-2000:]

            assert as_app_psql(sandbox, "select count(*), sum(b) from public.iac_checked;").stdout.split() == ["5|15"]
            owner = sh(sandbox, "lan", "runuser -u postgres -- psql -X -tA -d gts_scheduler -c "
                                       "\"select tableowner from pg_tables where tablename = 'iac_checked'\"").stdout
            assert owner.strip() == RENTAL[1]
    finally:
        undo_escalation(sandbox)
        as_app_psql(sandbox, "drop table if exists public.iac_checked;\n"
                             "drop function if exists public.iac_generated(int);\n"
                             "drop function if exists public.iac_escalate(int);\n", check=False)


def test_release_restore_refuses_a_superuser_role(sandbox: Sandbox) -> None:
    """The release engine's restore after a failed migration goes through `iac-backup pg-restore`,
    which restores as the app's role and refuses to run as a superuser."""
    with made_files(sandbox, "lan", [f"{LAN_ROOT}/db/gts_scheduler"]):
        snapshot_lan(sandbox)
        newest = sh(sandbox, "lan", f"ls -1t {LAN_ROOT}/db/gts_scheduler/*.dump | head -n1").stdout.strip()
        refused = sh(sandbox, "lan", f"iac-backup pg-restore gts_scheduler {newest} --role postgres --clean",
                     check=False)
        assert refused.returncode == 1 and "postgres is a superuser" in refused.stderr


# ---- PUBLIC CONNECT --------------------------------------------------------------------------

def test_public_cannot_connect_to_app_databases(sandbox: Sandbox) -> None:
    """After the converge only a database's owner and the roles granted it may connect: the shop
    app's role cannot open the rental app's databases (and the other way round)."""
    dbs = ["gts_scheduler", "gingerich_trailer_rentals", "gts_shop_scheduler", "gingerich_trailer"]
    sql = ("select datname, has_database_privilege('public', datname, 'CONNECT') from pg_database "
           f"where datname in ({', '.join(repr(d) for d in dbs)}) order by 1")
    out = sh(sandbox, "lan", f"runuser -u postgres -- psql -X -tA -F' ' -c \"{sql}\"").stdout.split("\n")
    assert sorted(line for line in out if line) == sorted(f"{d} f" for d in dbs)

    def connects(user: str, role: str, db: str) -> subprocess.CompletedProcess:
        return sh(sandbox, "lan", f"runuser -u {user} -- psql -X -tA -U {role} -d {db} -c 'select 1'", check=False)

    denied = connects("shop_scheduler", "shop_scheduler_user", "gts_scheduler")
    assert denied.returncode != 0 and "permission denied for database" in denied.stderr
    assert connects("rental_scheduler", "rental_scheduler_user", "gts_shop_scheduler").returncode != 0
    for user, role, db in [("rental_scheduler", "rental_scheduler_user", "gts_scheduler"),
                           ("rental_scheduler", "rental_scheduler_user", "gingerich_trailer_rentals"),
                           ("shop_scheduler", "shop_scheduler_user", "gts_shop_scheduler")]:
        assert connects(user, role, db).stdout.strip() == "1", (user, db)


# ---- SQLite (the public host's chip_dashboard): counts and restore -------------------------

HOSTILE_TABLES = [
    "a",  # what the next name's first statement reads: the old sqlite3 -readonly then wrote a file as root
    "a\";VACUUM/**/INTO'/tmp/iac-attach-marker';--",
    "b\"; ATTACH DATABASE '/tmp/iac-attach-marker2' AS q; CREATE TABLE q.t(a); --",
    "it's", "with space", "quote\"in\"middle",
]
AS_APP_SQLITE = """import json, sqlite3, sys
names, rows, drop = json.loads(sys.stdin.readline()), int(sys.argv[1]), sys.argv[2] == "drop"
con = sqlite3.connect(sys.argv[3])
for i, name in enumerate(names):
    q = '"' + name.replace('"', '""') + '"'
    con.execute(f"drop table if exists {q}")
    if not drop:
        con.execute(f"create table {q} (a)")
        con.executemany(f"insert into {q} values (?)", [(n,) for n in range(rows + i)])
con.commit()
"""


def as_app_sqlite(sandbox: Sandbox, names: list[str], rows: int = 0, drop: bool = False) -> None:
    """Tables written by the app's own user into its own SQLite file (``rows + i`` rows in the i-th)."""
    sh(sandbox, "public", f"runuser -u {APP} -- python3 -c {shlex.quote(AS_APP_SQLITE)} {rows} "
                          f"{'drop' if drop else 'keep'} {SQLITE}", stdin=json.dumps(names) + "\n")


def sqlite_dump(sandbox: Sandbox) -> None:
    """`iac-backup dump` on the public host: the SQLite file read by the app's user, validated."""
    sh(sandbox, "public", "iac-backup dump")


def test_sqlite_table_names_never_reach_sql(sandbox: Sandbox) -> None:
    """Table names holding a quote and an ATTACH used to be pasted into root's sqlite3 (an ATTACH
    creates any file as root): now they are counted as quoted identifiers, read-only."""
    dirs = [f"{PUBLIC_ROOT}/db/{APP}", f"{PUBLIC_ROOT}/logs"]
    try:
        with made_files(sandbox, "public", dirs):
            as_app_sqlite(sandbox, HOSTILE_TABLES, rows=2)
            sqlite_dump(sandbox)
            report = drill(sandbox, "public")["databases"][APP]["local"]
            live = json.loads(sh(sandbox, "public", "iac-backup counts", check=False).stdout or "{}").get(APP, {})
            for marker in ("/tmp/iac-attach-marker", "/tmp/iac-attach-marker2"):
                assert sh(sandbox, "public", f"test -e {marker}", check=False).returncode != 0, f"root wrote {marker}"
            assert report["ok"] and report["rows_equal"], report
            assert {name: live.get(name) for name in HOSTILE_TABLES} == {
                name: 2 + i for i, name in enumerate(HOSTILE_TABLES)}
    finally:
        as_app_sqlite(sandbox, HOSTILE_TABLES, drop=True)
        sh(sandbox, "public", "rm -f /tmp/iac-attach-marker /tmp/iac-attach-marker2", check=False)


OUTSIDE = "/etc/iac-boundary-outside"
DANGLING = "/etc/iac-boundary-dangling"
PLANTED = "/var/lib/chip_dashboard/.db.sqlite3.restore"  # the temporary name the old restore wrote through


def sqlite_state(sandbox: Sandbox) -> str:
    """Type, owner and mode of the live file (never followed)."""
    return sh(sandbox, "public", f"stat -c '%F %U:%G %a' {SQLITE}").stdout.strip()


def probe_rows(sandbox: Sandbox) -> str:
    return sh(sandbox, "public", f"runuser -u {APP} -- sqlite3 -readonly {SQLITE} "
                                 "'select count(*) from iac_restore_probe'").stdout.strip()


@pytest.mark.parametrize("plant", ["restore-link", "dangling-restore-link", "dangling-database-link"])
def test_sqlite_restore_follows_nothing_the_app_planted(sandbox: Sandbox, plant: str) -> None:
    """Before `restore`, the app plants the old temporary name `.db.sqlite3.restore` as a link to
    a root file or to a file that does not exist yet in /etc, or replaces its database by such a
    dangling link: the restore writes through none of them, the root file keeps its content and
    owner, nothing appears in /etc, and the database comes back as the app's own regular file
    with every row."""
    state = sqlite_state(sandbox)
    assert state.startswith(f"regular file {APP}:{APP} "), state
    aside = f"{SQLITE}.iac-test-aside"
    dirs = [f"{PUBLIC_ROOT}/db/{APP}", f"{PUBLIC_ROOT}/logs", f"{PUBLIC_ROOT}/pre-restore"]
    keep = sh(sandbox, "public", f"iac-backup snapshot sqlite {SQLITE} /root iac-test-keep").stdout.strip()
    try:
        with made_files(sandbox, "public", dirs):
            as_app_sqlite(sandbox, ["iac_restore_probe"], rows=7)
            sqlite_dump(sandbox)
            sh(sandbox, "public", f"printf 'root only\\n' > {OUTSIDE} && chmod 600 {OUTSIDE}")
            if plant == "restore-link":
                sh(sandbox, "public", f"runuser -u {APP} -- ln -s {OUTSIDE} {PLANTED}")
            elif plant == "dangling-restore-link":
                sh(sandbox, "public", f"runuser -u {APP} -- ln -s {DANGLING} {PLANTED}")
            else:
                sh(sandbox, "public", f"runuser -u {APP} -- sh -c 'mv {SQLITE} {aside} && ln -s {DANGLING} {SQLITE}'")
            run = sh(sandbox, "public", f"iac-backup restore {APP}", check=False)
            assert run.returncode == 0, run.stderr[-2000:]

            outside = sh(sandbox, "public", f"stat -c '%U:%G %a' {OUTSIDE}; printf 'root only\\n' | cmp - {OUTSIDE}",
                         check=False)
            assert (outside.returncode, outside.stdout) == (0, "root:root 600\n"), outside.stdout + outside.stderr
            assert sh(sandbox, "public", f"test -e {DANGLING} || test -L {DANGLING}", check=False).returncode != 0
            assert sqlite_state(sandbox) == f"regular file {APP}:{APP} 640"
            assert probe_rows(sandbox) == "7"
            leftovers = sh(sandbox, "public", "ls -A /var/lib/chip_dashboard").stdout.split()
            assert not [f for f in leftovers if ".restore-" in f], leftovers
    finally:
        sh(sandbox, "public", f"rm -f {PLANTED} {OUTSIDE} {DANGLING} {aside}", check=False)
        if not sqlite_state(sandbox).startswith(f"regular file {APP}:{APP} "):  # a failed restore
            sh(sandbox, "public", f"rm -f {SQLITE} && install -o {APP} -g {APP} -m 640 {keep} {SQLITE}")
        sh(sandbox, "public", f"rm -f {keep} {keep}.sha256", check=False)
        as_app_sqlite(sandbox, ["iac_restore_probe"], drop=True)
