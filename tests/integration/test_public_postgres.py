"""Switching the public app from SQLite to PostgreSQL in the model moves every row.

An operator's change to group_data/public.py (made here in a copy of the repository): the
database becomes PostgreSQL with `import_sqlite_from` pointing at today's SQLite file, and the
host gets a PostgreSQL server with the app's role and database.
"""

from __future__ import annotations

import re

from engine_common import envfile
from tests.integration.conftest import REPO, TIMINGS, Run, Sandbox, failure_excerpt, repo_copy

TABLES = ["core_chip", "core_customuser"]


def _sqlite_counts(sandbox: Sandbox) -> dict[str, int]:
    return {t: int(sandbox.ssh("public", f"sqlite3 /var/lib/chip_dashboard/db.sqlite3 'select count(*) from {t}'")
                   .stdout) for t in TABLES}


def _pg_counts(sandbox: Sandbox) -> dict[str, int]:
    return {t: int(sandbox.ssh("public", f"runuser -u postgres -- psql -d chip_dashboard -tAc "
                                         f"'select count(*) from {t}'").stdout) for t in TABLES}


def test_switch_to_postgresql_moves_every_row(sandbox: Sandbox, converged: Run, tmp_path) -> None:
    sandbox.converge("before-postgres-switch", "--limit", "public")
    # some data worth moving: rows and a user
    sandbox.ssh("public", "/usr/local/sbin/iac-manage chip_dashboard shell -c "
                          "\"from core.models import Chip, CustomUser; [Chip.objects.create(name=f'pg-{i}') "
                          "for i in range(7)]; CustomUser.objects.create_user('alice', password='x')\"")
    before = _sqlite_counts(sandbox)
    assert before["core_chip"] >= 7 and before["core_customuser"] >= 1

    copy = repo_copy(tmp_path)
    public = copy / "group_data/public.py"
    text = public.read_text()
    text = re.sub(r'"database": \{.*?\},\n', '"database": {"engine": "postgresql", "name": "chip_dashboard", '
                  '"role": "chip_dashboard", "import_sqlite_from": "/var/lib/chip_dashboard/db.sqlite3"},\n',
                  text, flags=re.S)
    text += '\npostgres = {"roles": ["chip_dashboard"], "databases": {"chip_dashboard": "chip_dashboard"}}\n'
    public.write_text(text)

    run = sandbox.converge("switch-to-postgres", "--limit", "public", cwd=copy)
    assert run.returncode == 0, failure_excerpt(run)
    TIMINGS["public: SQLite to PostgreSQL switch"] = run.seconds
    assert _pg_counts(sandbox) == before
    env = envfile.parse_env_file(sandbox.ssh("public", "cat /etc/iac/apps/chip_dashboard.env").stdout)
    assert env["USE_SQLITE"] == "0" and env["POSTGRES_DB"] == "chip_dashboard"
    page = sandbox.command("pg-page", ["curl", "-sS", "-k", "--resolve",
                                       f"pravoo.in:443:{sandbox.world.host_ip('public')}", "https://pravoo.in/"])
    assert f"rows: {before['core_chip']}" in page.stdout
    # the SQLite file is kept, and a second run changes nothing
    assert _sqlite_counts(sandbox) == before
    drift = sandbox.command("drift-postgres", [str(REPO / ".venv/bin/python"), "-m", "cli.drift",
                                               "sandbox/inventory.py", "--limit", "public"], cwd=copy)
    assert drift.returncode == 0, drift.output

    # back to the repository's declaration (SQLite) for the tests that follow
    assert sandbox.converge("back-to-sqlite", "--limit", "public").returncode == 0
