"""The drift gate: 0 in sync, 2 when a host differs (naming what), 1 on error.

The drift scenarios run the CI workflow's own "Drift check" step (.github/workflows/drift.yml:
its `run:` and `env:` as written, with the sandbox's inventory and webhook in place of
production's), so the job summary, the JSON report and the Discord message are checked too.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import jsonschema
import yaml

from tests.integration.conftest import REPO, SANDBOX_INVENTORY, TIMINGS, Run, Sandbox, repo_copy

WORKFLOW = REPO / ".github/workflows/drift.yml"
SCHEMA = json.loads((REPO / "docs/drift-report.schema.json").read_text())
CI_WEBHOOK_PATH = "/api/webhooks/3/"



def workflow_step(name_starts: str) -> dict:
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["drift"]["steps"]
    return next(s for s in steps if s.get("name", "").startswith(name_starts))


def workflow_drift_step(sandbox: Sandbox, label: str, tmp_path: Path, cwd: Path = REPO,
                        **job_env: str) -> tuple[Run, str, dict]:
    """Run the workflow's drift step against the sandbox (from ``cwd``, a checkout; ``job_env``:
    what earlier steps put in GITHUB_ENV); return the run, the job summary and the JSON report it kept."""
    step = workflow_step("Drift check")
    summary, report = tmp_path / "summary.md", tmp_path / "drift.json"
    env = {k: str(v) for k, v in step["env"].items()}
    assert env["INVENTORY"] == "inventory.py"  # production's, in the workflow: replaced here
    env.update(INVENTORY=SANDBOX_INVENTORY, GITHUB_STEP_SUMMARY=str(summary), DRIFT_JSON=str(report),
               DRIFT_WEBHOOK_URL=f"{sandbox.world.webhook_base}{CI_WEBHOOK_PATH}ci-drift-token")
    run = sandbox.command(label, ["bash", "-c", step["run"]], cwd=cwd, **job_env, **env)
    data = json.loads(report.read_text())
    jsonschema.validate(data, SCHEMA)
    return run, summary.read_text(), data


def iac_drift(sandbox: Sandbox, label: str, *extra: str) -> Run:
    """`iac drift` (the console script, cli/main.py), run from outside the repository."""
    return sandbox.command(label, [str(REPO / ".venv/bin/iac"), "-i", str(REPO / SANDBOX_INVENTORY), "drift",
                                   *extra], cwd=Path("/"))


def test_converged_hosts_are_in_sync(sandbox: Sandbox, converged: Run) -> None:
    sandbox.converge("pre-drift-converge")
    run = sandbox.drift("drift-converged")
    TIMINGS["drift gate on converged hosts"] = run.seconds
    assert run.returncode == 0, run.output
    assert "in sync" in run.stdout


def test_the_jobs_hash_checked_setup_is_all_a_drift_run_needs(sandbox: Sandbox, converged: Run,
                                                               tmp_path: Path) -> None:
    """The workflow's set-up step in a fresh checkout (a copy of the repository): only
    requirements-run.txt, each file checked against its hash; then its drift step, run with that
    virtualenv and nothing else, says in sync. pip reads none of this machine's configuration
    (local wheel directories hold files that are not the index's, so their hashes differ)."""
    copy = repo_copy(tmp_path)
    (copy / ".venv").unlink()  # repo_copy shares the full virtualenv: this checkout gets its own
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    started = time.monotonic()
    setup = subprocess.run(["bash", "-c", workflow_step("Set up the repository")["run"]], cwd=copy, env={
        **env, "PIP_CONFIG_FILE": os.devnull}, capture_output=True, text=True, timeout=900, check=False)
    TIMINGS["drift job set-up (hash-checked)"] = time.monotonic() - started
    assert setup.returncode == 0, setup.stdout[-2000:] + setup.stderr[-3000:]
    assert (copy / ".venv/.stamp-run").exists() and not (copy / ".venv/.stamp").exists()
    python = str(copy / ".venv/bin/python")
    assert subprocess.run([python, "-c", "import pytest"], capture_output=True, check=False).returncode != 0
    run, summary, report = workflow_drift_step(sandbox, "drift-job-own-venv", tmp_path, cwd=copy)
    assert run.returncode == 0, run.output[-3000:]
    assert report["status"] == "in_sync" and summary.startswith("## Drift check: in sync"), summary[:300]
    # make used that virtualenv as it was: nothing installed the full requirements.txt into it
    assert not (copy / ".venv/.stamp").exists()
    assert subprocess.run([python, "-c", "import pytest"], capture_output=True, check=False).returncode != 0


def postgres_sql(sandbox: Sandbox, sql: str) -> str:
    """SQL as the LAN host's superuser (from stdin), its rows unaligned."""
    return sandbox.world.ssh("lan", "cd / && runuser -u postgres -- psql -X -q -tA -v ON_ERROR_STOP=1 -f -",
                             input=sql).stdout


def test_changed_file_and_removed_package_are_drift_and_a_run_restores_them(
        sandbox: Sandbox, converged: Run, tmp_path: Path) -> None:
    """One scenario, one check: each change is named; the check repairs nothing; one run does."""
    sandbox.ssh("lan", "echo Europe/Paris > /etc/timezone")
    sandbox.ssh("public", "sed -i 's/^127.0.1.1.*/127.0.1.1 somethingelse/' /etc/hosts")
    sandbox.ssh("public", "DEBIAN_FRONTEND=noninteractive apt-get -qq remove -y rsync >/dev/null")
    # a site edited, Debian's default site enabled again, an env file's mode changed
    sandbox.ssh("public", "echo '# edited by hand' >> /etc/nginx/sites-available/django; "
                          "ln -sf /etc/nginx/sites-available/default /etc/nginx/sites-enabled/default; "
                          "chmod 644 /etc/iac/apps/chip_dashboard.env")
    # an env value changed (one plain, one secret), a unit stopped
    sandbox.ssh("lan", "sed -i 's/^DJANGO_DEBUG=.*/DJANGO_DEBUG=\"true\"/; "
                       "s/^DJANGO_SECRET_KEY=\"/DJANGO_SECRET_KEY=\"x/' /etc/gts/apps/shop_scheduler.env; "
                       "systemctl stop gunicorn-shop_scheduler.socket gunicorn-shop_scheduler.service")
    # app roles given powers by hand (superuser; a membership that runs programs as postgres), and
    # PUBLIC allowed into an app's database
    postgres_sql(sandbox, "ALTER ROLE shop_scheduler_user SUPERUSER; "
                          "GRANT pg_execute_server_program TO rental_scheduler_user; "
                          "GRANT CONNECT ON DATABASE gts_scheduler TO PUBLIC;")
    posted = len(sandbox.webhook_messages(CI_WEBHOOK_PATH))
    run, summary, report = workflow_drift_step(sandbox, "drift-after-edit", tmp_path)
    assert run.returncode == 2, run.output
    assert iac_drift(sandbox, "iac-drift-after-edit").returncode == 2  # what scripts use: 2 is drift
    drifted = {(i["host"], i["operation"]) for i in report["drift"]}
    assert {("gts-server", "Base system | Time zone name in /etc/timezone"),
            ("srv1178562", "Base system | Local names in /etc/hosts"),
            ("srv1178562", "Base system | Packages for the base system"),
            ("gts-server", "shop_scheduler: gunicorn-shop_scheduler running and enabled")} <= drifted, report
    # under each, what differs: host, path, the difference; never a secret's value
    said = {(i["host"], i["operation"]): i["details"] for i in report["drift"]}
    assert said[("srv1178562", "Base system | Local names in /etc/hosts")][1:] == [
        "- 127.0.1.1 somethingelse", "+ 127.0.1.1\tsrv1178562"]
    assert said[("srv1178562", "nginx site django (checked with nginx -t, live)")] == [
        "~ update /etc/nginx/sites-available/django: differs from the declared site",
        "- delete /etc/nginx/sites-enabled/default (Debian's default site is enabled again)"]
    assert said[("srv1178562", "chip_dashboard: env file (secrets)")] == [
        "~ update /etc/iac/apps/chip_dashboard.env: mode 644, declared 640"]
    assert said[("gts-server", "PostgreSQL role shop_scheduler_user")] == [
        "~ role shop_scheduler_user: SUPERUSER (declared: LOGIN, nothing more)"]
    assert said[("gts-server", "PostgreSQL role rental_scheduler_user")] == [
        "~ role rental_scheduler_user: member of pg_execute_server_program (declared: LOGIN, nothing more)"]
    assert said[("gts-server", "PostgreSQL: PUBLIC may not connect to gts_scheduler")] == [
        "~ database gts_scheduler: PUBLIC may connect or its owner rental_scheduler_user may not"]
    assert said[("gts-server", "shop_scheduler: env file (secrets)")] == [
        "~ update /etc/gts/apps/shop_scheduler.env: DJANGO_DEBUG changed, DJANGO_SECRET_KEY changed "
        "(values not shown)"]
    assert ("| ~ | gts-server | shop_scheduler: env file (secrets) | ~ update /etc/gts/apps/shop_scheduler.env: "
            "DJANGO_DEBUG changed, DJANGO_SECRET_KEY changed (values not shown) |") in summary
    for out in (summary, json.dumps(report), run.output):
        assert "CANARY" not in out
    # the job summary says the same in Markdown
    assert summary.startswith("## Drift check: DRIFT")
    assert "| ~ | gts-server | Base system \\| Time zone name in /etc/timezone |" in summary, summary
    assert "| ~ | srv1178562 | Base system \\| Local names in /etc/hosts |" in summary
    # and exactly one message reached the webhook, naming the hosts and what drifted
    new = sandbox.webhook_messages(CI_WEBHOOK_PATH)[posted:]
    assert len(new) == 1, new
    assert "gts-server, srv1178562" in new[0] and "Time zone name in /etc/timezone" in new[0]
    # the drift check itself must not have repaired anything
    assert sandbox.ssh("lan", "cat /etc/timezone").stdout == "Europe/Paris\n"

    restore = sandbox.converge("restore-after-drift")
    assert restore.returncode == 0, restore.output[-3000:]
    assert sandbox.ssh("lan", "cat /etc/timezone").stdout == "Etc/UTC\n"
    powers = postgres_sql(sandbox, "select string_agg(rolname, ' ' order by rolname) from pg_roles where rolsuper; "
                                   "select count(*) from pg_auth_members m join pg_roles r on r.oid = m.member "
                                   "where r.rolname in ('shop_scheduler_user', 'rental_scheduler_user'); "
                                   "select has_database_privilege('public', 'gts_scheduler', 'CONNECT');")
    assert powers.split() == ["postgres", "0", "f"]
    assert sandbox.drift("drift-after-restore").returncode == 0


def test_unreachable_git_remote_is_an_error_not_drift(sandbox: Sandbox, converged: Run) -> None:
    """The revision's commit cannot be asked: the gate cannot tell, so it says so (exit 1, with
    ssh's reason), instead of reporting a release as pending."""
    forge = sandbox.world.host_ip("forge")
    sandbox.ssh("public", f"ip route add blackhole {forge}/32")
    try:
        run = sandbox.command("drift-forge-down", [str(REPO / ".venv/bin/python"), "-m", "cli.drift",
                                                   SANDBOX_INVENTORY, "--limit", "public"])
    finally:
        sandbox.ssh("public", f"ip route del blackhole {forge}/32", check=False)
    assert run.returncode == 1, run.output
    assert "chip_dashboard: cannot ask" in run.stderr and "ssh: connect to host" in run.stderr, run.stderr


def test_unreachable_host_is_an_error_not_in_sync(sandbox: Sandbox, converged: Run, tmp_path: Path) -> None:
    world = sandbox.world
    world.stop_host("public")
    posted = len(sandbox.webhook_messages(CI_WEBHOOK_PATH))
    try:
        run, summary, report = workflow_drift_step(sandbox, "drift-host-down", tmp_path)
        assert run.returncode == 1, run.output
        assert "srv1178562" in run.stderr and "Could not connect" in run.stderr
        assert report["status"] == "error" and "Could not connect" in report["error"]
        assert summary.startswith("## Drift check: ERROR")
        assert len(sandbox.webhook_messages(CI_WEBHOOK_PATH)) == posted  # an error fails the job; it is not drift
        down = iac_drift(sandbox, "iac-drift-host-down", "--limit", "public")
        assert down.returncode == 1 and "Could not connect" in down.stderr, down.output[-2000:]
    finally:
        world.boot("public")
        world.wait_booted("public")
    assert iac_drift(sandbox, "iac-drift-host-back").returncode == 0
