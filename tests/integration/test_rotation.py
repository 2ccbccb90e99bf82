"""Rotations under load: `make rotate-restic` on the LAN host's offsite repository while two
clients ask both apps through nginx: no request fails, the oldest and the newest snapshot restore
with the new password, the old password opens nothing, the stack holds the new one, and the next
drift check is in sync (the env file on the host is the declared one)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time

from tests.integration.conftest import REPO, Run, Sandbox
from tests.integration.load import Load

ENV_FILE = "/etc/gts/backup/restic.env"
ENGINE = "/usr/local/sbin/iac-backup"


def restic_on_lan(sandbox: Sandbox, args: str, password: str | None = None) -> subprocess.CompletedProcess:
    """restic on the LAN host with the env file's settings; ``password`` (on stdin) instead of its own."""
    if password is None:  # the repository's own helper (operations/backups: env_helper)
        return sandbox.world.ssh("lan", f"cd / && /usr/local/sbin/restic-postgres-env.sh restic {args}", check=False)
    inner = f'IFS= read -r p; RESTIC_PASSWORD="$p" exec restic {args}'
    return sandbox.world.ssh("lan", f"cd / && {ENGINE} env-exec {ENV_FILE} -- sh -c {shlex.quote(inner)}",
                             check=False, input=password + "\n")


def test_a_restic_password_rotation_under_load_loses_nothing(sandbox: Sandbox, converged: Run) -> None:
    old = sandbox.world.secret_values()["lan"]["backups"]["offsite"]["postgres"]["password"]
    sandbox.ssh("lan", f"{ENGINE} dump >/dev/null")  # dumps to copy offsite, whatever ran before
    for _ in range(2):  # at least two snapshots (through the unit, with its env file): oldest and newest differ
        sandbox.ssh("lan", "systemctl start restic-postgres.service")
    snapshots = sorted(json.loads(restic_on_lan(sandbox, "snapshots --json").stdout), key=lambda s: s["time"])
    assert len(snapshots) >= 2
    ip = sandbox.world.host_ip("lan")
    started = time.monotonic()
    with Load(ip, 8001, "gts-server.lan") as rental, Load(ip, 8002, "gts-server.lan") as shop:
        proc = subprocess.run(["make", "-s", "rotate-restic", "TARGET=postgres", "HOST=lan"], cwd=REPO,
                              capture_output=True, text=True, timeout=900, check=False,
                              env={k: v for k, v in os.environ.items() if k != "PYINFRA_YES"})
        run = sandbox.keep("rotate-restic", Run(["make", "rotate-restic"], proc.returncode, proc.stdout,
                                                proc.stderr, time.monotonic() - started))
    assert run.returncode == 0, run.output[-3000:]
    assert rental.result.failures == [] and shop.result.failures == [], (rental.result.summary(),
                                                                          shop.result.summary())
    assert rental.result.answered > 10 and shop.result.answered > 10
    new = sandbox.world.secret_values()["lan"]["backups"]["offsite"]["postgres"]["password"]
    assert new != old and len(new) >= 32 and new not in run.output and old not in run.output
    assert "wrong password" in restic_on_lan(sandbox, "cat config", password=old).stderr
    for snap in (snapshots[0], snapshots[-1]):
        target = f"/var/tmp/iac-rotation-restore-{snap['short_id']}"
        restored = restic_on_lan(sandbox, f"restore {snap['id']} --target {target}")
        try:
            assert restored.returncode == 0, restored.stderr[-1000:]
            assert sandbox.ssh("lan", f"find {target} -name '*.dump' | wc -l").stdout.strip() != "0"
        finally:
            sandbox.ssh("lan", f"rm -rf {target}")
    assert restic_on_lan(sandbox, "key list --json").stdout.count('"id"') == 1  # only the new key is left
    assert sandbox.drift("drift-after-restic-rotation", "--limit", "lan").returncode == 0
