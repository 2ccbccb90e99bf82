"""PostgreSQL (the major of the host's release, iac/debian.py): server, peer authentication map,
roles, databases, and the apps' access.

Stages: install -> configure (pg_hba.conf, pg_ident.conf: staged, checked against the server's own
parser before they go live, then reloaded) -> roles -> databases -> access (operations/postgres/
cluster.py: one psql session reads what all of them need). Roles come before
databases because a database's owner must exist. Access: no database lets PUBLIC connect; its
owner may, and each app role that uses a database another role owns is granted it explicitly.
The postgres system user may connect as each login role (pg_ident.conf): the backup engine
restores and counts an app's database in a session of its owner, never as the superuser.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.facts.deb import DebPackages

from iac.guarded import validated_file
from iac.ops import files, systemd
from iac.packages import packages_present
from iac.paths import STAGED
from iac.render import render, text_file
from operations.app.options import PostgresDatabase
from operations.host import HostConfig
from operations.postgres.cluster import Checks, database_connect, login_role, owned_database, schema_access


def access_checks(config: HostConfig) -> Checks:
    """What the access operations ask the cluster, in one fact: each database with its owner, and
    each app role that uses a database another role owns."""
    pg = config.postgres
    databases = pg.databases if pg is not None else {}
    schema = sorted({(database, role) for _user, role, database in app_database_roles(config)
                     if databases.get(database) != role})
    return Checks(connect=tuple(databases.items()), schema=tuple(schema))


def app_database_roles(config: HostConfig) -> list[tuple[str, str, str]]:
    """(system user, role, database) for every PostgreSQL database an app uses."""
    out = []
    for app in config.apps.values():
        for db in [app.database, *app.extra_databases.values()]:
            if isinstance(db, PostgresDatabase):
                out.append((app.user, db.role, db.name))
    return out


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
            systemd.service(name="PostgreSQL's cluster not declared: stopped",
                            service=config.debian().postgres_cluster_unit, running=False)
        return
    packages_present(["postgresql", "postgresql-client"], config.base.apt_cache_hours, "PostgreSQL")
    systemd.service(name="PostgreSQL running and enabled", service="postgresql", running=True, enabled=True)

    pg_dir = config.debian().postgres_conf_dir
    mappings = sorted({(user, role) for user, role, _ in app_database_roles(config) if user != role})
    files.directory(name="Staging directory for PostgreSQL", path=f"{STAGED}{pg_dir}", mode="755")
    for name, text in (("pg_ident.conf", render("etc/postgresql/major/main/pg_ident.conf.j2", mappings=mappings,
                                                engine_roles=sorted(pg.roles))),
                       ("pg_hba.conf", render("etc/postgresql/major/main/pg_hba.conf.j2"))):
        files.put(name=f"PostgreSQL {name} (staged)", src=text_file(text), dest=f"{STAGED}{pg_dir}/{name}",
                  mode="644")
        validated_file(
            name=f"PostgreSQL {name} (checked by the server, live)", staged=f"{STAGED}{pg_dir}/{name}",
            dest=f"{pg_dir}/{name}", validate=_pg_config_check(),
            activate=f"chown postgres:postgres {pg_dir}/{name} && chmod 640 {pg_dir}/{name} "
                     "&& systemctl reload postgresql",
        )

    checks = access_checks(config)
    for role in pg.roles:
        login_role(name=f"PostgreSQL role {role}", role=role, checks=checks)
    for database, owner in pg.databases.items():
        owned_database(name=f"PostgreSQL database {database} (owner {owner})", database=database, owner=owner,
                       checks=checks)
    for database, owner in checks.connect:
        database_connect(name=f"PostgreSQL: PUBLIC may not connect to {database}", database=database, owner=owner,
                         checks=checks)
    for database, role in checks.schema:
        schema_access(name=f"PostgreSQL: {role} may use {database}", database=database, role=role, checks=checks)
