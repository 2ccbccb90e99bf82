"""An operator's day with `iac` (cli/main.py), each answer checked against the host it came from.
The LAN host is reached as production reaches it: its admin, sudo with a password.

+ `iac releases APP`: the live commit is the one the host's records say is live;
+ `iac logs APP`: a request just made through nginx is in the app's web log (journal on the public
  host, the app's log_dir on the LAN host); `--what release` shows the engine's steps;
+ `iac manage APP check` and `iac shell APP` run in the live release as the app's user;
+ `iac ssh HOST CMD` logs in as the inventory says (the LAN host: as its admin).
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

from tests.integration.conftest import REPO, SANDBOX_INVENTORY, Run, Sandbox

IAC = str(REPO / ".venv/bin/iac")


def iac(sandbox: Sandbox, label: str, *args: str, stdin: str | None = None) -> Run:
    if stdin is None:
        return sandbox.command(label, [IAC, "-i", str(REPO / SANDBOX_INVENTORY), *args], cwd=Path("/"))
    proc = subprocess.run(["bash", "-c", f"{IAC} -i {REPO / SANDBOX_INVENTORY} {' '.join(args)}"], input=stdin,
                          capture_output=True, text=True, timeout=300, check=False, cwd="/")
    return sandbox.keep(label, Run([IAC, *args], proc.returncode, proc.stdout, proc.stderr, 0.0))


def test_releases_names_the_commit_the_host_says_is_live(sandbox: Sandbox, converged: Run) -> None:
    run = iac(sandbox, "iac-releases", "releases", "chip_dashboard", "--format", "json")
    assert run.returncode == 0, run.output[-2000:]
    shown = json.loads(run.stdout)
    live = json.loads(sandbox.ssh("public", "cat /var/lib/iac/releases/chip_dashboard/deployed.json").stdout)
    assert shown["live"]["commit"] == live["commit"] and shown["host"] == "srv1178562"
    assert all(set(h) >= {"commit", "deployed_at", "kept"} for h in shown["before"])


def test_logs_show_a_request_just_made(sandbox: Sandbox, converged: Run) -> None:
    token = f"iac-logs-probe-{secrets.token_hex(6)}"
    public = sandbox.world.host_ip("public")
    subprocess.run(["curl", "-sk", "--max-time", "20", "--resolve", f"pravoo.in:443:{public}",
                    f"https://pravoo.in/{token}"], capture_output=True, check=False)
    run = iac(sandbox, "iac-logs-public", "logs", "chip_dashboard", "--lines", "200")
    assert run.returncode == 0 and token in run.stdout, run.output[-2000:]
    lan = sandbox.world.host_ip("lan")
    subprocess.run(["curl", "-s", "--max-time", "20", f"http://{lan}:8001/{token}"], capture_output=True, check=False)
    run = iac(sandbox, "iac-logs-lan", "logs", "rental_scheduler", "--lines", "200")
    assert run.returncode == 0 and token in run.stdout, run.output[-2000:]
    assert "==> /var/log/gts/rental_scheduler/access.log <==" in run.stdout  # its declared log_dir
    release = iac(sandbox, "iac-logs-release", "logs", "rental_scheduler", "--what", "release", "--lines", "5")
    assert release.returncode == 0 and " rental_scheduler: " in release.stdout, release.output[-2000:]
    bad = iac(sandbox, "iac-logs-bad-since", "logs", "rental_scheduler", "--since", "$(id)")
    assert bad.returncode == 1 and "--since" in bad.stderr


def test_manage_and_shell_run_as_the_app_in_its_live_release(sandbox: Sandbox, converged: Run) -> None:
    check = iac(sandbox, "iac-manage-check", "manage", "rental_scheduler", "check")
    assert check.returncode == 0 and "System check identified no issues" in check.stdout, check.output[-2000:]
    script = "import os, pwd; print('user=' + pwd.getpwuid(os.getuid()).pw_name); print('cwd=' + os.getcwd())\n"
    shell = iac(sandbox, "iac-shell", "shell", "rental_scheduler", stdin=script)
    assert shell.returncode == 0, shell.output[-2000:]
    live = json.loads(sandbox.ssh("lan", "cat /var/lib/iac/releases/rental_scheduler/deployed.json").stdout)
    assert "user=rental_scheduler" in shell.stdout  # the app's user, in the live release
    assert f"cwd=/srv/releases/rental_scheduler/{live['release']}\n" in shell.stdout, shell.stdout


def test_ssh_logs_in_as_the_inventory_says(sandbox: Sandbox, converged: Run) -> None:
    run = iac(sandbox, "iac-ssh-lan", "ssh", "lan", "id", "-un")
    assert run.returncode == 0 and run.stdout.strip() == "gts", run.output[-2000:]
    run = iac(sandbox, "iac-ssh-public", "ssh", "srv1178562", "hostname")
    assert run.returncode == 0 and run.stdout.strip() == "srv1178562", run.output[-2000:]


def test_backup_list_names_the_dumps_on_the_dump_disk_with_the_at_that_picks_each(sandbox: Sandbox,
                                                                                   converged: Run) -> None:
    db = "gts_shop_scheduler"
    run = iac(sandbox, "iac-backup-list", "backup-list", "--db", db, "--format", "json")
    assert run.returncode == 0, run.output[-2000:]
    points = json.loads(run.stdout)
    # the engine's own dumps (<db>_YYYYmmdd_HHMMSS.dump; a dump named otherwise is not one it restores)
    on_disk = sandbox.ssh("lan", f"ls /mnt/pg_backups/postgres/db/{db} | grep -E '_[0-9]{{8}}_[0-9]{{6}}[.]dump$' "
                                 "| sort -r").stdout.split()
    assert [p["file"] for p in points["local"]] == on_disk and on_disk
    for p in points["local"]:  # AT='YYYY-MM-DD HH:MM:SS' is the dump's own UTC stamp
        assert p["file"].endswith(p["at"].replace("-", "").replace(" ", "_").replace(":", "") + ".dump")
    text = iac(sandbox, "iac-backup-list-text", "backup-list", "--db", db)
    assert f"local    AT='{points['local'][0]['at']}'" in text.stdout


def test_status_reads_each_host_and_names_what_needs_attention(sandbox: Sandbox, converged: Run) -> None:
    assert iac(sandbox, "iac-drift-before-status", "drift").returncode == 0
    run = iac(sandbox, "iac-status", "status", "--format", "json")
    assert run.returncode in (0, 2), run.output[-2000:]
    found = {h["host"]: h for h in json.loads(run.stdout)["hosts"]}
    live = json.loads(sandbox.ssh("public", "cat /var/lib/iac/releases/chip_dashboard/deployed.json").stdout)
    app = found["srv1178562"]["apps"]["chip_dashboard"]
    assert (app["commit"], app["since"], app["units"], app["health"]) == (
        live["commit"], live["deployed_at"], ["active", "active"], "200")
    assert found["srv1178562"]["certificates"]["pravoo.in"]["days_left"] > 14
    assert found["gts-server"]["last_drift"]["status"] == "in_sync"
    assert set(found["gts-server"]["backups"]["dumps"]) >= {"gts_shop_scheduler", "gts_scheduler"}
    assert "/mnt/pg_backups" in found["gts-server"]["disk_used_percent"]
    # a unit that is down is named, and the answer is "needs attention" (2)
    sandbox.ssh("lan", "systemctl stop gunicorn-shop_scheduler.socket gunicorn-shop_scheduler.service")
    try:
        down = iac(sandbox, "iac-status-unit-down", "status", "--host", "lan")
    finally:
        sandbox.ssh("lan", "systemctl start gunicorn-shop_scheduler.socket gunicorn-shop_scheduler.service")
    assert down.returncode == 2, down.output[-2000:]
    assert "! shop_scheduler: units inactive inactive" in down.stdout, down.stdout
