"""`make rollback` on the public host: back to the release live before, without rebuilding.

A reversible migration (v2's nullable field) is reversed: v1 serves, the column is gone, every row
is kept, and drift says the live release differs from the declared one. An irreversible one
(the fixture's `irreversible` tag) refuses the rollback naming the migration; with BACKUP=1 the
backup taken before it migrated is restored instead.
"""

from __future__ import annotations

import json
import subprocess

from tests.integration.conftest import REPO, SANDBOX_INVENTORY, TIMINGS, Run, Sandbox, failure_excerpt
from tests.integration.load import Load

APP = "chip_dashboard"
DB = "sqlite3 -cmd '.timeout 10000' /var/lib/chip_dashboard/db.sqlite3"


def _at(revision: str) -> str:
    return json.dumps({"public": {"apps": {APP: {"source": {"revision": revision}}}}})


def _page(sandbox: Sandbox) -> str:
    ip = sandbox.world.host_ip("public")
    return subprocess.run(["curl", "-sSk", "--max-time", "20", "--resolve", f"pravoo.in:443:{ip}",
                           "https://pravoo.in/"], capture_output=True, text=True, check=False).stdout


def _sql(sandbox: Sandbox, query: str) -> str:
    return sandbox.ssh("public", f"{DB} {json.dumps(query)}").stdout.strip()


def _deployed(sandbox: Sandbox) -> dict:
    return json.loads(sandbox.ssh("public", f"cat /var/lib/iac/releases/{APP}/deployed.json").stdout)


def _rollback(sandbox: Sandbox, label: str, *extra: str) -> Run:
    return sandbox.command(label, ["make", "-s", "rollback", f"APP={APP}", *extra], cwd=REPO)


def _drift(sandbox: Sandbox, label: str) -> Run:
    return sandbox.command(label, [str(REPO / ".venv/bin/python"), "-m", "cli.drift", SANDBOX_INVENTORY,
                                   "--limit", "public"])


def test_rollback_reverses_a_reversible_migration_and_keeps_every_row(sandbox: Sandbox, converged: Run) -> None:
    # v1 (one migration), then v2 (adds chip.note): the release live before v2 is v1
    for label, overrides in (("rollback-v1", _at("v1")), ("rollback-v2", _at("v2"))):
        run = sandbox.converge(label, "--limit", "public", SANDBOX_OVERRIDES=overrides)
        assert run.returncode == 0, failure_excerpt(run)
    if "note" not in _sql(sandbox, "select name from pragma_table_info('core_chip')"):
        # v1 went live on a v2 schema (Django keeps a newer schema): put 0002 back as a release would
        sandbox.ssh("public", f"/usr/local/sbin/iac-manage {APP} migrate core 0002")
    rows = _sql(sandbox, "select count(*) from core_chip")
    v2 = _deployed(sandbox)["commit"]
    # two clients ask through nginx while it rolls back: none may be refused or see an error
    with Load(sandbox.world.host_ip("public"), 443, "pravoo.in", tls=True) as load:
        run = _rollback(sandbox, "make-rollback")
    assert run.returncode == 0, run.output[-3000:]
    TIMINGS["public: make rollback (one migration reversed)"] = run.seconds
    TIMINGS["public: make rollback under load, longest gap"] = load.result.longest_gap
    assert load.result.failures == [], load.result.summary()
    assert "migrations reversed: core -> 0001_initial" in run.stdout, run.stdout
    assert "chip_dashboard v1" in _page(sandbox)
    assert "note" not in _sql(sandbox, "select name from pragma_table_info('core_chip')")
    assert "0002_v2_change" not in _sql(sandbox, "select name from django_migrations where app='core'")
    assert _sql(sandbox, "select count(*) from core_chip") == rows
    record = _deployed(sandbox)
    assert record["rolled_back_from"] == v2 and record["commit"] != v2
    assert f"apps['{APP}']['source']['revision'] = '{record['commit']}'" in run.stdout
    # the declared revision (main = v2) is not what is live: the gate says so
    drift = _drift(sandbox, "drift-after-rollback")
    assert drift.returncode == 2 and f"srv1178562: {APP}: release main live" in drift.stdout, drift.output


def test_irreversible_migration_refuses_the_rollback_and_the_backup_brings_the_old_state_back(
        sandbox: Sandbox, converged: Run) -> None:
    # the declared release (main = v2) again, then the irreversible one on top of it
    run = sandbox.converge("declared-release", "--limit", "public")
    assert run.returncode == 0, failure_excerpt(run)
    assert "chip_dashboard v2" in _page(sandbox)
    run = sandbox.converge("irreversible-release", "--limit", "public", SANDBOX_OVERRIDES=_at("irreversible"))
    assert run.returncode == 0, failure_excerpt(run)
    assert "0003_irreversible" in _sql(sandbox, "select name from django_migrations where app='core'")
    live = _deployed(sandbox)["commit"]
    refused = _rollback(sandbox, "make-rollback-irreversible")
    assert refused.returncode != 0
    assert "refused: core.0003_irreversible cannot be reversed" in refused.output, refused.output[-3000:]
    assert "BACKUP=1" in refused.output and "is lost" in refused.output
    assert _deployed(sandbox)["commit"] == live  # nothing changed
    restored = _rollback(sandbox, "make-rollback-from-backup", "BACKUP=1")
    assert restored.returncode == 0, restored.output[-3000:]
    assert "restored from the pre-migrate backup" in restored.stdout
    assert "0003_irreversible" not in _sql(sandbox, "select name from django_migrations where app='core'")
    assert "chip_dashboard v2" in _page(sandbox)
    # back to what the stack declares: one run, then in sync
    back = sandbox.converge("after-rollbacks", "--limit", "public")
    assert back.returncode == 0, failure_excerpt(back)
    assert _drift(sandbox, "drift-after-rollbacks").returncode == 0
