"""The cluster's roles, databases and access, read in one psql session and made as declared.

``PostgresState`` is the one fact: every role (its attributes and what it is a member of), every
database and its owner, and the answers PostgreSQL itself gives (``has_database_privilege``,
``has_schema_privilege``) for the pairs the declaration names, all in one ``psql`` run as the
postgres user (about 40 ms of host CPU each: seven of them were the drift check's costliest
facts after the baseline). Names reach the session only as psql variables (``:'name'`` a
literal, ``:"name"`` an identifier), never in the SQL text, and each answer comes back as one JSON
line, so a role or database with any name on the host cannot be read as another.

The operations that use it:

* ``login_role``: the role exists, may log in, and holds no power beyond its own objects
  (NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS, a member of no other role): an
  app role made superuser by hand runs any program as postgres (``COPY ... TO PROGRAM``);
* ``owned_database``: the database exists and belongs to its declared owner;
* ``database_connect``: PUBLIC may not connect to a database, its owner may;
* ``schema_access``: a role that uses a database another role owns may connect and create in
  its public schema.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field

from pyinfra import host
from pyinfra.api import FactBase, StringCommand, operation

# what a login role of this repository never has (PostgreSQL's own attribute names)
POWERS = ("superuser", "createrole", "createdb", "replication", "bypassrls")


@dataclass(frozen=True)
class Checks:
    """The (database, role) pairs the access operations ask about, the same for each of them, so
    that one fact call answers all. Derived from the model in one place (operations/postgres/deploy.py)."""

    connect: tuple[tuple[str, str], ...] = field(default=())  # (database, owner)
    schema: tuple[tuple[str, str], ...] = field(default=())  # (database, role that is not its owner)

    def fact_args(self) -> dict[str, list[list[str]]]:
        return {"connect": [list(p) for p in self.connect], "schema": [list(p) for p in self.schema]}


def psql_stdin(sql: str, database: str, variables: dict[str, str], *psql_args: str) -> str:
    """A shell command that runs ``sql`` (from stdin) as postgres; names reach it only as psql
    variables (``:"name"`` quoted as an identifier, ``:'name'`` as a literal)."""
    args = " ".join(f"-v {shlex.quote(f'{k}={v}')}" for k, v in variables.items())
    return (f"printf '%s\\n' {shlex.quote(sql)} | runuser -u postgres -- psql -X {' '.join(psql_args)} "
            f"-d {shlex.quote(database)} {args} -f -")


_CLUSTER_SQL = (
    "select json_build_object("
    "'roles', coalesce((select json_object_agg(r.rolname, json_build_object("
    "'login', r.rolcanlogin, 'superuser', r.rolsuper, 'createrole', r.rolcreaterole, "
    "'createdb', r.rolcreatedb, 'replication', r.rolreplication, 'bypassrls', r.rolbypassrls, "
    "'member_of', coalesce((select json_agg(g.rolname order by g.rolname) from pg_auth_members m "
    "join pg_roles g on g.oid = m.roleid where m.member = r.oid), '[]'::json))) "
    "from pg_roles r where r.rolname !~ '^pg_'), '{}'::json), "
    "'databases', coalesce((select json_object_agg(datname, json_build_object("
    "'owner', pg_get_userbyid(datdba))) from pg_database where not datistemplate), '{}'::json));"
)


class PostgresState(FactBase):
    """
    The cluster as ``{"roles": {name: {"login": bool, "superuser": bool, ..., "member_of": [...]}},
    "databases": {name: {"owner": role}}, "connect": {"db owner": bool}, "schema": {"db role": bool}}``,
    read in one psql session. ``connect``: PUBLIC may not connect to the database and the owner
    may; ``schema``: the role may connect to the database and create in its public schema. A pair
    whose database or role does not exist answers False. Without psql (a fresh host) everything
    is empty; a server that does not answer fails the fact (an error, never "nothing there").
    """

    requires_command = "psql"

    @staticmethod
    def default() -> dict:
        return {"roles": {}, "databases": {}, "connect": {}, "schema": {}}

    def command(self, connect: list[list[str]], schema: list[list[str]]) -> str:
        lines, variables = [_CLUSTER_SQL], {}
        for i, (database, owner) in enumerate(connect):
            variables |= {f"cd{i}": database, f"co{i}": owner}
            lines.append(f"select json_build_object('connect', :'cd{i}' || ' ' || :'co{i}', 'ok', "
                         f"not has_database_privilege('public', :'cd{i}', 'CONNECT') "
                         f"and has_database_privilege(:'co{i}', :'cd{i}', 'CONNECT'));")
        for i, (database, role) in enumerate(schema):
            variables |= {f"sd{i}": database, f"sr{i}": role}
            # into the database only when it exists and takes connections: the answers after a
            # failed \connect would be errors, not False
            lines += [f"select exists(select 1 from pg_database where datname = :'sd{i}' and datallowconn) "
                      f"as sd{i}_here \\gset",
                      f"\\if :sd{i}_here",
                      f"\\connect :sd{i}",
                      f"select json_build_object('schema', :'sd{i}' || ' ' || :'sr{i}', 'ok', "
                      f"has_database_privilege(:'sr{i}', current_database(), 'CONNECT') "
                      f"and has_schema_privilege(:'sr{i}', 'public', 'CREATE'));",
                      "\\endif"]
        return "cd / && " + psql_stdin("\n".join(lines), "postgres", variables, "-q", "-tA")

    def process(self, output: list[str]) -> dict:
        state, found = self.default(), False
        for line in output:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if not isinstance(item, dict):
                continue
            if "roles" in item and "databases" in item:
                state["roles"], state["databases"] = item["roles"], item["databases"]
                found = True
            elif isinstance(item.get("connect"), str):
                state["connect"][item["connect"]] = item.get("ok") is True
            elif isinstance(item.get("schema"), str):
                state["schema"][item["schema"]] = item.get("ok") is True
        if not found:
            raise ValueError("PostgreSQL answered without its roles and databases: see `journalctl -u postgresql`")
        return state


def _state(checks: Checks) -> dict:
    return host.get_fact(PostgresState, **checks.fact_args())


def _sql(sql: str, variables: dict[str, str], database: str = "postgres") -> StringCommand:
    return StringCommand("cd / &&", psql_stdin(sql, database, variables, "-q", "-v ON_ERROR_STOP=1"))


@operation()
def login_role(role: str, checks: Checks):
    """
    Ensure ``role`` exists, may log in, and has no power beyond its own objects: not a superuser,
    cannot create roles or databases, replicate or bypass row security, and is a member of no
    other role (a membership in ``pg_execute_server_program`` runs programs as postgres).

    + role: the role
    + checks: the cluster's access pairs (``Checks``: one fact answers every operation here)

    **Example:**

    .. code:: python

        login_role(name="PostgreSQL role rental_scheduler_user", role="rental_scheduler_user", checks=Checks())
    """
    current = _state(checks)["roles"].get(role)
    if current is None:
        host.noop(f"+ create role {role} (LOGIN)")
        yield _sql('CREATE ROLE :"role" LOGIN;', {"role": role})
        return
    wrong = [p for p in POWERS if current.get(p) is not False] + ([] if current.get("login") is True else ["nologin"])
    members = [g for g in current.get("member_of") or [] if isinstance(g, str)]
    if not wrong and not members:
        host.noop(f"postgresql role {role} may log in and holds no other power")
        return
    host.noop(f"~ role {role}: " + ", ".join(
        [w.upper() for w in wrong] + [f"member of {g}" for g in members]) + " (declared: LOGIN, nothing more)")
    sql = 'ALTER ROLE :"role" LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS;'
    variables = {"role": role}
    for i, group in enumerate(members):
        sql += f' REVOKE :"g{i}" FROM :"role";'
        variables[f"g{i}"] = group
    yield _sql(sql, variables)


@operation()
def owned_database(database: str, owner: str, checks: Checks):
    """
    Ensure ``database`` exists and ``owner`` owns it.

    + database: the database
    + owner: its owner role
    + checks: the cluster's access pairs (``Checks``)

    **Example:**

    .. code:: python

        owned_database(name="PostgreSQL database gts_scheduler", database="gts_scheduler",
                       owner="rental_scheduler_user", checks=Checks())
    """
    current = _state(checks)["databases"].get(database)
    if current is None:
        host.noop(f"+ create database {database} (owner {owner})")
        yield _sql('CREATE DATABASE :"db" OWNER :"owner";', {"db": database, "owner": owner})
    elif current.get("owner") != owner:
        host.noop(f"~ database {database}: owner {current.get('owner')}, declared {owner}")
        yield _sql('ALTER DATABASE :"db" OWNER TO :"owner";', {"db": database, "owner": owner})
    else:
        host.noop(f"postgresql database {database} exists, owned by {owner}")


@operation()
def database_connect(database: str, owner: str, checks: Checks):
    """
    Ensure PUBLIC cannot connect to ``database`` and its owner can (other roles: ``schema_access``).

    + database: the database
    + owner: its owner role (the pair is one of ``checks.connect``)
    + checks: the cluster's access pairs (``Checks``)

    **Example:**

    .. code:: python

        database_connect(name="only its roles connect to gts_scheduler", database="gts_scheduler",
                         owner="rental_scheduler_user",
                         checks=Checks(connect=(("gts_scheduler", "rental_scheduler_user"),)))
    """
    if _state(checks)["connect"].get(f"{database} {owner}"):
        return
    host.noop(f"~ database {database}: PUBLIC may connect or its owner {owner} may not")
    yield _sql('REVOKE CONNECT ON DATABASE :"db" FROM PUBLIC; GRANT CONNECT ON DATABASE :"db" TO :"owner";',
               {"db": database, "owner": owner})


@operation()
def schema_access(database: str, role: str, checks: Checks):
    """
    Ensure ``role`` can connect to ``database`` (owned by another role) and create tables in it.

    + database: the database
    + role: the role that needs access (the pair is one of ``checks.schema``)
    + checks: the cluster's access pairs (``Checks``)

    **Example:**

    .. code:: python

        schema_access(name="rental app in accounting", database="gingerich_trailer_rentals",
                      role="rental_scheduler_user",
                      checks=Checks(schema=(("gingerich_trailer_rentals", "rental_scheduler_user"),)))
    """
    if _state(checks)["schema"].get(f"{database} {role}"):
        return
    host.noop(f"~ database {database}: {role} may not connect or create in its public schema")
    yield _sql('GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"role"; '
               'GRANT USAGE, CREATE ON SCHEMA public TO :"role";', {"db": database, "role": role}, database=database)
