"""PostgreSQL 15: server, peer authentication map, roles, databases, and the apps' access.

Stages: install -> configure (pg_hba.conf, pg_ident.conf: staged, checked against the server's own
parser before they go live, then reloaded) -> roles -> databases -> access. Roles come before
databases because a database's owner must exist. Access: no database lets PUBLIC connect; its
owner may, and each app role that uses a database another role owns is granted it explicitly.
The postgres system user may connect as each login role (pg_ident.conf): the backup engine
restores and counts an app's database in a session of its owner, never as the superuser.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import FactBase, StringCommand, operation
from pyinfra.facts.deb import DebPackages

from iac.guarded import validated_file
from iac.ops import files, postgres, systemd
from iac.packages import packages_present
from iac.paths import STAGED
from iac.render import render, text_file
from operations.app.options import PostgresDatabase
from operations.host import HostConfig

PG_DIR = "/etc/postgresql/15/main"
AS_POSTGRES = {"_sudo": True, "_sudo_user": "postgres"}


def app_database_roles(config: HostConfig) -> list[tuple[str, str, str]]:
    """(system user, role, database) for every PostgreSQL database an app uses."""
    out = []
    for app in config.apps.values():
        for db in [app.database, *app.extra_databases.values()]:
            if isinstance(db, PostgresDatabase):
                out.append((app.user, db.role, db.name))
    return out


class SchemaAccess(FactBase):
    """Whether ``role`` may connect to ``database`` and create in its public schema."""

    def command(self, database: str, role: str) -> str:
        sql = (f"select has_database_privilege('{role}', '{database}', 'CONNECT') "
               f"and has_schema_privilege('{role}', 'public', 'CREATE')")
        return f"runuser -u postgres -- psql -d {shlex.quote(database)} -tAc {shlex.quote(sql)} 2>/dev/null || echo f"

    def process(self, output: list[str]) -> bool:
        return output[-1].strip() == "t"


def _psql_stdin(sql: str, database: str, variables: dict[str, str], *psql_args: str) -> str:
    """A shell command that runs ``sql`` (from stdin) as postgres; names reach it only as psql
    variables (``:"name"`` quoted as an identifier, ``:'name'`` as a literal)."""
    args = " ".join(f"-v {shlex.quote(f'{k}={v}')}" for k, v in variables.items())
    return (f"printf '%s\\n' {shlex.quote(sql)} | runuser -u postgres -- psql -X {' '.join(psql_args)} "
            f"-d {shlex.quote(database)} {args} -f -")


class DatabaseConnect(FactBase):
    """Whether PUBLIC may not connect to ``database`` and ``owner`` may."""

    def command(self, database: str, owner: str) -> str:
        sql = ("select not has_database_privilege('public', :'db', 'CONNECT') "
               "and has_database_privilege(:'owner', :'db', 'CONNECT');")
        return _psql_stdin(sql, "postgres", {"db": database, "owner": owner}, "-tA") + " 2>/dev/null || echo f"

    def process(self, output: list[str]) -> bool:
        return bool(output) and output[-1].strip() == "t"


@operation()
def database_connect(database: str, owner: str):
    """
    Ensure PUBLIC cannot connect to ``database`` and its owner can (other roles: ``schema_access``).

    + database: the database
    + owner: its owner role

    **Example:**

    .. code:: python

        database_connect(name="only its roles connect to gts_scheduler", database="gts_scheduler",
                         owner="rental_scheduler_user")
    """
    if host.get_fact(DatabaseConnect, database=database, owner=owner):
        return
    sql = 'REVOKE CONNECT ON DATABASE :"db" FROM PUBLIC; GRANT CONNECT ON DATABASE :"db" TO :"owner";'
    yield StringCommand(_psql_stdin(sql, "postgres", {"db": database, "owner": owner}, "-q", "-v ON_ERROR_STOP=1"))


@operation()
def schema_access(database: str, role: str):
    """
    Ensure ``role`` can connect to ``database`` (owned by another role) and create tables in it.

    + database: the database
    + role: the role that needs access

    **Example:**

    .. code:: python

        schema_access(name="rental app in accounting", database="gingerich_trailer_rentals",
                      role="rental_scheduler_user")
    """
    if host.get_fact(SchemaAccess, database=database, role=role):
        return
    sql = (f'GRANT CONNECT, TEMPORARY ON DATABASE "{database}" TO "{role}"; '
           f'GRANT USAGE, CREATE ON SCHEMA public TO "{role}";')
    yield StringCommand(f"runuser -u postgres -- psql -v ON_ERROR_STOP=1 -d {shlex.quote(database)} "
                        f"-c {shlex.quote(sql)}")


def _pg_config_check() -> str:
    return ("test \"$(runuser -u postgres -- psql -tAc "
            "'select (select count(*) from pg_hba_file_rules where error is not null) "
            "+ (select count(*) from pg_ident_file_mappings where error is not null)')\" = 0")


def postgresql(config: HostConfig) -> None:
    """The local PostgreSQL server, if the host declares one."""
    pg = config.postgres
    if pg is None:
        # a server the model no longer declares (an app moved back to SQLite): stopped and
        # disabled, never removed; its clusters and their data stay where they are
        if "postgresql" in (host.get_fact(DebPackages) or {}):
            systemd.service(name="PostgreSQL not declared: stopped and disabled (its data kept)",
                            service="postgresql", running=False, enabled=False)
            systemd.service(name="PostgreSQL's cluster not declared: stopped", service="postgresql@15-main",
                            running=False)
        return
    packages_present(["postgresql", "postgresql-client"], config.base.apt_cache_hours, "PostgreSQL")
    systemd.service(name="PostgreSQL running and enabled", service="postgresql", running=True, enabled=True)

    mappings = sorted({(user, role) for user, role, _ in app_database_roles(config) if user != role})
    files.directory(name="Staging directory for PostgreSQL", path=f"{STAGED}{PG_DIR}", mode="755")
    for name, text in (("pg_ident.conf", render("etc/postgresql/15/main/pg_ident.conf.j2", mappings=mappings,
                                                     engine_roles=sorted(pg.roles))),
                       ("pg_hba.conf", render("etc/postgresql/15/main/pg_hba.conf.j2"))):
        files.put(name=f"PostgreSQL {name} (staged)", src=text_file(text), dest=f"{STAGED}{PG_DIR}/{name}",
                  mode="644")
        validated_file(
            name=f"PostgreSQL {name} (checked by the server, live)", staged=f"{STAGED}{PG_DIR}/{name}",
            dest=f"{PG_DIR}/{name}", validate=_pg_config_check(),
            activate=f"chown postgres:postgres {PG_DIR}/{name} && chmod 640 {PG_DIR}/{name} "
                     "&& systemctl reload postgresql",
        )

    for role in pg.roles:
        postgres.role(name=f"PostgreSQL role {role}", role=role, login=True, **AS_POSTGRES)
    for database, owner in pg.databases.items():
        postgres.database(name=f"PostgreSQL database {database} (owner {owner})", database=database,
                          owner=owner, **AS_POSTGRES)
    for database, owner in pg.databases.items():
        database_connect(name=f"PostgreSQL: PUBLIC may not connect to {database}", database=database, owner=owner)
    for _user, role, database in app_database_roles(config):
        if pg.databases.get(database) != role:
            schema_access(name=f"PostgreSQL: {role} may use {database}", database=database, role=role)
